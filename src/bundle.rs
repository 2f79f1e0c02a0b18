//! The guest bundle: one file holding a VM's description and images, for boot loaders that
//! can load a single extra file and say where they put it. The Raspberry Pi firmware loads
//! `initramfs FILE followkernel` from config.txt and writes `/chosen/linux,initrd-start/end`;
//! QEMU's `-initrd FILE` does the same. When the host DTB has no multiboot module nodes but
//! names an initrd, Bulkhead reads its guest from there.
//!
//! # Format (version 1)
//!
//! A flattened device tree (Devicetree Specification v0.4, chapter 5) at offset 0 of the
//! file, followed by the images. The tree uses Xen's dom0less binding (Xen,
//! `docs/misc/arm/device-tree/booting.txt`, "Creating Multiple Domains directly from Xen")
//! unchanged, with one difference: a module's `reg` is an *offset into the bundle file*, not a
//! physical address.
//!
//! ```dts
//! / {
//!     compatible = "bulkhead,guest-bundle-v1";
//!     chosen {
//!         vm0 {
//!             compatible = "xen,domain";
//!             #address-cells = <2>;
//!             #size-cells = <2>;
//!             cpus = <4>;                        // vCPUs (optional)
//!             memory = <0 524288>;               // KiB, 64-bit (optional)
//!             vpl011;
//!             module@1000 {
//!                 compatible = "multiboot,kernel", "multiboot,module";
//!                 reg = <0 0x1000 0 0x1f6e200>;  // offset, size in this file
//!                 bootargs = "console=ttyAMA0";
//!             };
//!             module@1f70000 {
//!                 compatible = "multiboot,ramdisk", "multiboot,module";
//!                 reg = <0 0x1f70000 0 0xf18f1>;
//!             };
//!         };
//!     };
//! };
//! ```
//!
//! Rules: the root is `compatible = "bulkhead,guest-bundle-v1"`; every `/chosen` child with
//! `compatible = "xen,domain"` is a VM, in tree order; each VM has exactly one
//! `multiboot,kernel` and at most one `multiboot,ramdisk` module; modules lie after the tree
//! (`totalsize` of its header) and inside the file; the guest's command line is the kernel
//! module's `bootargs` (where Xen's binding puts it), else a `bootargs` on the VM node.
//! `scripts/mkbundle.sh` writes bundles (images 4 KiB aligned). Bulkhead runs one VM today: it
//! takes the first and says that it ignores the others.
//!
//! Module ranges come back as host physical addresses inside the loaded bundle, in the same
//! [`dtb::Module`] shape QEMU's guest-loader nodes give: the hypervisor reads the images in
//! place (and again on every guest reset), so the bundle's RAM must stay out of guest RAM.

use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;
use fdt::node::FdtNode;

use crate::dtb::{self, Module, ModuleKind, PhysRange};

/// The root `compatible` of a version-1 bundle.
pub const COMPATIBLE: &str = "bulkhead,guest-bundle-v1";

/// What is wrong with a guest bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleError<'a> {
    /// It does not start with a device tree header (magic 0xd00dfeed): not a bundle at all
    /// (a plain initramfs, or overwritten).
    NotADeviceTree,
    /// The tree's header claims more bytes than were loaded.
    TreeTruncated { tree_size: u64, loaded: u64 },
    /// The tree's structure is broken.
    CorruptTree,
    /// A valid tree without `compatible = "bulkhead,guest-bundle-v1"` at its root.
    NotABundle,
    /// No `/chosen` child with `compatible = "xen,domain"`.
    NoVm,
    /// A VM node or one of its modules has a missing or malformed property.
    BadProperty {
        node: &'a str,
        property: &'static str,
    },
    /// A VM has no `multiboot,kernel` module.
    NoKernel { vm: &'a str },
    /// A VM has two modules of one kind.
    DuplicateModule { vm: &'a str, module: &'a str },
    /// A module's bytes overlap the tree at the start of the bundle.
    ModuleOverlapsTree { module: &'a str },
    /// A module ends beyond the loaded bundle: the file was cut short.
    ModuleTruncated {
        module: &'a str,
        end: u64,
        loaded: u64,
    },
}

impl fmt::Display for BundleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADeviceTree => write!(
                f,
                "not a guest bundle: no device tree header (bad magic; make one with scripts/mkbundle.sh)"
            ),
            Self::TreeTruncated { tree_size, loaded } => write!(
                f,
                "truncated: its device tree needs {tree_size} bytes, only {loaded} were loaded"
            ),
            Self::CorruptTree => write!(f, "corrupt: its device tree does not parse"),
            Self::NotABundle => write!(
                f,
                "not a guest bundle: the device tree's root is not compatible with \"{COMPATIBLE}\""
            ),
            Self::NoVm => write!(
                f,
                "no VM in it (no /chosen node compatible with \"xen,domain\")"
            ),
            Self::BadProperty { node, property } => {
                write!(f, "corrupt: node {node}: missing or malformed `{property}`")
            }
            Self::NoKernel { vm } => write!(f, "VM {vm} has no multiboot,kernel module"),
            Self::DuplicateModule { vm, module } => {
                write!(f, "VM {vm}: module {module} is a second module of its kind")
            }
            Self::ModuleOverlapsTree { module } => {
                write!(
                    f,
                    "corrupt: module {module} overlaps the bundle's device tree"
                )
            }
            Self::ModuleTruncated {
                module,
                end,
                loaded,
            } => write!(
                f,
                "truncated: module {module} ends at byte {end}, only {loaded} bytes were loaded"
            ),
        }
    }
}

/// Bytes `offset..offset + size` of the bundle file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub size: u64,
}

/// One VM of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleVm<'a> {
    /// The node's name (e.g. `vm0`).
    pub name: &'a str,
    /// `cpus`, if given.
    pub vcpus: Option<u32>,
    /// `memory` in KiB, if given.
    pub memory_kib: Option<u64>,
    pub kernel: Span,
    pub ramdisk: Option<Span>,
    /// The kernel module's `bootargs`, else the VM node's.
    pub bootargs: Option<&'a str>,
}

/// A parsed, checked bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle<'a> {
    /// Every VM, in tree order (at least one).
    pub vms: Vec<BundleVm<'a>>,
}

impl<'a> Bundle<'a> {
    /// Parses and checks a bundle as it was loaded (`bytes` may be longer than the file:
    /// boot loaders round the initrd's end up).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BundleError<'a>> {
        let loaded = bytes.len() as u64;
        let tree_size = dtb::header_total_size(bytes).ok_or(BundleError::NotADeviceTree)? as u64;
        if tree_size > loaded {
            return Err(BundleError::TreeTruncated { tree_size, loaded });
        }
        let tree = &bytes[..tree_size as usize];
        // The `fdt` crate panics on malformed trees: check every token first.
        dtb::check_structure(tree).map_err(|_| BundleError::CorruptTree)?;
        let fdt = Fdt::new(tree).map_err(|_| BundleError::CorruptTree)?;
        let root = fdt.find_node("/").ok_or(BundleError::CorruptTree)?;
        if !dtb::is_compatible(&root, COMPATIBLE) {
            return Err(BundleError::NotABundle);
        }
        let chosen = fdt.find_node("/chosen").ok_or(BundleError::NoVm)?;
        let vms = chosen
            .children()
            .filter(|n| dtb::is_compatible(n, "xen,domain"))
            .map(|node| parse_vm(&node, tree_size, loaded))
            .collect::<Result<Vec<_>, _>>()?;
        if vms.is_empty() {
            return Err(BundleError::NoVm);
        }
        Ok(Self { vms })
    }
}

fn parse_vm<'a>(
    node: &FdtNode<'_, 'a>,
    tree_size: u64,
    loaded: u64,
) -> Result<BundleVm<'a>, BundleError<'a>> {
    let name = node.name;
    let bad = |property| BundleError::BadProperty {
        node: name,
        property,
    };
    let cells = |property| match node.property(property) {
        None => Ok(2),
        Some(_) => match dtb::prop_u32(node, property) {
            Some(n @ 1..=2) => Ok(n as usize),
            _ => Err(bad(property)),
        },
    };
    let (ac, sc) = (cells("#address-cells")?, cells("#size-cells")?);
    let vcpus = match node.property("cpus") {
        None => None,
        Some(_) => Some(
            dtb::prop_u32(node, "cpus")
                .filter(|&n| n > 0)
                .ok_or(bad("cpus"))?,
        ),
    };
    let memory_kib = match node.property("memory") {
        None => None,
        Some(p) => Some(
            [4, 8]
                .contains(&p.value.len())
                .then(|| dtb::be_cells(p.value, p.value.len() / 4))
                .flatten()
                .filter(|&kib| kib > 0 && kib.checked_mul(1024).is_some())
                .ok_or(bad("memory"))?,
        ),
    };

    let (mut kernel, mut ramdisk) = (None, None);
    for module in node.children() {
        if !dtb::is_compatible(&module, "multiboot,module") {
            continue;
        }
        let slot = if dtb::is_compatible(&module, "multiboot,kernel") {
            &mut kernel
        } else if dtb::is_compatible(&module, "multiboot,ramdisk") {
            &mut ramdisk
        } else {
            continue;
        };
        let span = module_span(&module, ac, sc, tree_size, loaded)?;
        if slot.is_some() {
            return Err(BundleError::DuplicateModule {
                vm: name,
                module: module.name,
            });
        }
        *slot = Some((span, dtb::prop_str(&module, "bootargs")));
    }
    let (kernel, kernel_args) = kernel.ok_or(BundleError::NoKernel { vm: name })?;
    Ok(BundleVm {
        name,
        vcpus,
        memory_kib,
        kernel,
        ramdisk: ramdisk.map(|(span, _)| span),
        bootargs: kernel_args.or_else(|| dtb::prop_str(node, "bootargs")),
    })
}

fn module_span<'a>(
    module: &FdtNode<'_, 'a>,
    ac: usize,
    sc: usize,
    tree_size: u64,
    loaded: u64,
) -> Result<Span, BundleError<'a>> {
    let bad = BundleError::BadProperty {
        node: module.name,
        property: "reg",
    };
    let reg = module.property("reg").ok_or(bad)?.value;
    if reg.len() != (ac + sc) * 4 {
        return Err(bad);
    }
    let offset = dtb::be_cells(reg, ac).ok_or(bad)?;
    let size = dtb::be_cells(&reg[ac * 4..], sc).ok_or(bad)?;
    if size == 0 {
        return Err(bad);
    }
    if offset < tree_size {
        return Err(BundleError::ModuleOverlapsTree {
            module: module.name,
        });
    }
    let end = offset.checked_add(size).ok_or(bad)?;
    if end > loaded {
        return Err(BundleError::ModuleTruncated {
            module: module.name,
            end,
            loaded,
        });
    }
    Ok(Span { offset, size })
}

/// Where the guest comes from, and what the source says about the VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestSource<'a> {
    /// The guest's modules (host physical ranges); empty: no guest.
    pub modules: Vec<Module<'a>>,
    /// vCPUs and RAM the bundle asks for (`None`: not said).
    pub vcpu_count: Option<usize>,
    pub ram_size: Option<u64>,
    /// The bundle's host RAM, which must stay out of guest RAM (guest resets re-read it).
    pub bundle: Option<PhysRange>,
}

/// Why the initrd cannot be read as a bundle at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It is not (wholly) inside a `/memory` bank.
    NotInRam,
    /// It overlaps the hypervisor's image or heap, which overwrite it.
    OverlapsHypervisor(PhysRange),
}

/// A bundle that cannot be used, and where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestSourceError<'a> {
    pub bundle: PhysRange,
    pub error: Result<BundleError<'a>, Placement>,
}

impl fmt::Display for GuestSourceError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PhysRange { base, size } = self.bundle;
        write!(f, "guest bundle at {base:#x} ({size} bytes): ")?;
        match &self.error {
            Ok(e) => write!(f, "{e}"),
            Err(Placement::NotInRam) => write!(f, "not in RAM (bad linux,initrd-start/end)"),
            Err(Placement::OverlapsHypervisor(h)) => write!(
                f,
                "overlaps Bulkhead's image and heap ({:#x}..{:#x}); load it above them",
                h.base,
                h.end()
            ),
        }?;
        write!(f, "; no guest")
    }
}

/// The guest from the host DTB: its multiboot module nodes (QEMU guest-loader, U-Boot, ...),
/// else the guest bundle the boot loader put at `/chosen/linux,initrd-start`. `hypervisor` is
/// Bulkhead's own image and heap; `host_ram` gives the bytes of a host RAM range (only called
/// for a range inside a `/memory` bank and clear of `hypervisor`).
pub fn guest_source<'a>(
    fdt: &'a Fdt<'a>,
    hypervisor: PhysRange,
    host_ram: impl FnOnce(PhysRange) -> &'a [u8],
) -> Result<GuestSource<'a>, GuestSourceError<'a>> {
    let modules: Vec<Module<'a>> = dtb::modules(fdt).collect();
    if !modules.is_empty() {
        return Ok(GuestSource {
            modules,
            ..GuestSource::default()
        });
    }
    let Some(at) = dtb::initrd(fdt) else {
        return Ok(GuestSource::default());
    };
    let fail = |error| GuestSourceError { bundle: at, error };
    let in_ram = dtb::memory_regions(fdt).any(|r| r.base <= at.base && at.end() <= r.end());
    if !in_ram {
        return Err(fail(Err(Placement::NotInRam)));
    }
    // The heap right after the image would overwrite it (the Raspberry Pi firmware's
    // `followkernel` loads it high, clear of the kernel: raspberrypi/documentation#829).
    if at.overlaps(&hypervisor) {
        return Err(fail(Err(Placement::OverlapsHypervisor(hypervisor))));
    }
    let bundle = Bundle::parse(host_ram(at)).map_err(|e| fail(Ok(e)))?;
    let vm = &bundle.vms[0];
    if bundle.vms.len() > 1 {
        log::warn!(
            "guest bundle holds {} VMs; Bulkhead runs one: {} (the others are ignored)",
            bundle.vms.len(),
            vm.name
        );
    }
    let module = |kind, span: Span, bootargs| Module {
        kind,
        range: PhysRange {
            base: at.base + span.offset,
            size: span.size,
        },
        bootargs,
    };
    let mut modules = alloc::vec![module(ModuleKind::Kernel, vm.kernel, vm.bootargs)];
    modules.extend(vm.ramdisk.map(|r| module(ModuleKind::Ramdisk, r, None)));
    Ok(GuestSource {
        modules,
        vcpu_count: vm.vcpus.map(|n| n as usize),
        ram_size: vm.memory_kib.map(|kib| kib * 1024),
        bundle: Some(at),
    })
}

#[cfg(test)]
mod tests;
