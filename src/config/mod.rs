//! The VM configuration: what the host DTB asks Bulkhead to run, turned into [`VmSpec`]s, and
//! where each VM goes ([`place`]).
//!
//! Two forms are read, both from `/chosen`:
//! - **dom0less** (Xen's `docs/misc/arm/device-tree/booting.txt`, "Creating Multiple Domains
//!   directly from Xen"): one `compatible = "xen,domain"` child per VM, with `memory` (KiB),
//!   `cpus`, its own `multiboot,kernel` / `multiboot,ramdisk` module sub-nodes and optional
//!   `xen,vcpu` sub-nodes carrying `hard-affinity`. The VM's name is its node name.
//! - **legacy**: no `xen,domain` node; the bare `/chosen` multiboot modules (QEMU's
//!   `-device guest-loader`) make one VM named [`LEGACY_VM_NAME`], sized by Bulkhead's own
//!   bootargs `bulkhead.guest_mem=` and `bulkhead.guest_smp=`.
//!
//! Every VM has life-cycle policies (`lifecycle`: xl.cfg's `on_poweroff`, `on_reboot`,
//! `on_crash`), from Bulkhead's bootargs and, per VM, from its `xen,domain` node.
//!
//! Each `xen,domain` node may also carry links to other VMs (`links`): Xen's static shared
//! memory sub-nodes and Bulkhead's doorbells. [`parse`] checks them across VMs too, so what
//! it returns is consistent: every shared id has one size (and at most one host address and
//! one owner), every doorbell names a `xen,domain` node and rings a (peer, SPI) no other does.
//!
//! Errors are per VM: a malformed `xen,domain` node refuses that VM (a [`ConfigError`] naming
//! the node and the property) and the others still run. What Bulkhead does not implement is
//! ignored with one warning line each, returned for the caller to log. Nothing here touches
//! hardware; it is host-tested, including against mutated DTBs.

mod cpuset;
mod lifecycle;
mod links;
mod place;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;
use fdt::node::FdtNode;

use crate::bootargs::Settings;
use crate::dtb::{self, ModuleKind, PhysRange, be_cells, is_compatible};
use crate::guest_layout::{GUEST_RAM_BASE, MAX_VCPUS};
use crate::loader::GuestFormat;

pub use cpuset::{CpuSet, CpuSetError};
pub use lifecycle::{
    DEFAULT_RESET_LIMIT, Lifecycle, MAX_RESET_LIMIT, POLICY_KEYS, Policy, PolicyError, StopCause,
};
pub use links::{DOORBELL_SPI_MAX, DOORBELL_SPI_MIN, DoorbellSpec, MAX_SHM_ID_LEN, SharedMemSpec};
pub use place::{Placement, place};

/// The name of the one VM of the legacy form.
pub const LEGACY_VM_NAME: &str = "guest";

/// Guest RAM of the legacy VM when `bulkhead.guest_mem=` is absent.
pub const DEFAULT_GUEST_MEM: u64 = 512 << 20;

/// The least guest RAM accepted. The loader needs room for the kernel image, the guest DTB and
/// the initrd side by side; below 2 MiB not even a minimal kernel fits. Whether the actual
/// images fit is checked later, by the loader, when it knows their sizes.
pub const MIN_GUEST_RAM: u64 = 2 << 20;

/// The most guest RAM accepted: what fits above [`GUEST_RAM_BASE`] in the 40-bit IPA space
/// VM setup asks stage 2 for (an upper bound: a CPU with a small PA range grants 39 bits).
/// Anything larger is a typo or a unit mix-up; whether the host has that much RAM is for
/// placement to find out.
pub const MAX_GUEST_RAM: u64 = (1 << 40) - GUEST_RAM_BASE;

/// One VM to run, as the host DTB describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub name: String,
    pub vcpus: usize,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub kernel: PhysRange,
    /// How to take the kernel file: detected by its header, or raw when the user said so
    /// (`bulkhead.guest_format=raw`; a dom0less kernel module's `bulkhead,format = "raw"`).
    pub format: GuestFormat,
    pub initrd: Option<PhysRange>,
    pub bootargs: String,
    /// Per vCPU (index = vCPU id): the physical CPUs it may run on; None = any.
    pub affinity: Vec<Option<CpuSet>>,
    /// Static shared memory regions, in DT order ([`Placement::shared`] follows this order).
    pub shared_mem: Vec<SharedMemSpec>,
    /// Doorbells this VM may ring; the index is the doorbell number the guest rings.
    pub doorbells: Vec<DoorbellSpec>,
    /// What happens when it powers off, reboots or crashes (`lifecycle`).
    pub lifecycle: Lifecycle,
}

/// One refused VM: names the node and the property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The VM's name (its node name; [`LEGACY_VM_NAME`] for the legacy form).
    pub vm: String,
    /// The property at fault; `sub-node/property` for a property of a sub-node.
    pub property: String,
    /// What is wrong, in human units (KiB/MiB/GiB) and hex addresses.
    pub reason: String,
}

/// One line, e.g. `domU1: memory: 16 KiB is smaller than the 2 MiB minimum`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.vm, self.property, self.reason)
    }
}

/// Everything [`parse`] found: the VMs to run, the ones refused, and one line per thing
/// ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedConfig {
    pub vms: Vec<VmSpec>,
    pub refused: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

pub use crate::units::ByteSize;

/// A plain decimal number (digits only: no sign, no spaces, not empty), if it fits a `u64`.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a size with an optional binary suffix: `512M`, `1g`, `65536K` or plain bytes.
/// `None` for anything else (signs, other suffixes, empty) and for sizes above `u64::MAX`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    parse_decimal(digits)?.checked_mul(1 << shift)
}

/// Host DTB → VM descriptions (both forms). `bootargs` are Bulkhead's own (`/chosen/bootargs`);
/// `cpu_count` is the number of physical CPUs Bulkhead runs on.
pub fn parse(fdt: &Fdt<'_>, bootargs: &str, cpu_count: usize) -> ParsedConfig {
    let mut out = ParsedConfig::default();
    let Some(chosen) = fdt.find_node("/chosen") else {
        return out;
    };
    let lifecycle = Lifecycle::from_bootargs(bootargs, &mut out.warnings);
    let domains: Vec<FdtNode<'_, '_>> = chosen
        .children()
        .filter(|n| is_compatible(n, "xen,domain"))
        .collect();
    if domains.is_empty() {
        let modules: Vec<dtb::Module<'_>> = dtb::modules(fdt).collect();
        match parse_legacy(&modules, bootargs, cpu_count, None) {
            Ok(vm) => out.vms.extend(vm.map(|vm| VmSpec { lifecycle, ..vm })),
            Err(e) => out.refused.push(e),
        }
        return out;
    }

    let settings = Settings::parse(bootargs);
    for (key, given) in [
        (GUEST_MEM_ARG, settings.guest_mem.is_some()),
        (GUEST_SMP_ARG, settings.guest_smp.is_some()),
    ] {
        if given {
            out.warnings.push(format!(
                "{key}= sizes only the single guest of the legacy form; the xen,domain nodes \
                 say what each VM gets; ignored"
            ));
        }
    }
    if dtb::modules(fdt).next().is_some() {
        out.warnings.push(String::from(
            "/chosen: multiboot modules outside any xen,domain node belong to no VM; ignored",
        ));
    }
    let all_names: Vec<&str> = domains.iter().map(|n| n.name).collect();
    let mut names: Vec<&str> = Vec::new();
    let mut parsed = Vec::new();
    for node in domains {
        if let Some(status) = dtb::prop_str(&node, "status")
            && status != "okay"
            && status != "ok"
        {
            out.warnings.push(format!(
                "{}: status is \"{status}\"; not started",
                node.name
            ));
            continue;
        }
        // Console lines starting `bulkhead:` are the hypervisor's (`hyp::console_mux`); a VM
        // of that name would print its lines under that prefix.
        if node.name == "bulkhead" {
            out.refused.push(ConfigError {
                vm: node.name.to_string(),
                property: String::from("name"),
                reason: String::from(
                    "reserved: console lines starting `bulkhead:` are the hypervisor's",
                ),
            });
            continue;
        }
        if names.contains(&node.name) {
            out.refused.push(ConfigError {
                vm: node.name.to_string(),
                property: String::from("name"),
                reason: String::from("another xen,domain node already has this name"),
            });
            continue;
        }
        names.push(node.name);
        match parse_domain(node, cpu_count, lifecycle, &mut out.warnings) {
            Ok(vm) => parsed.push(vm),
            Err(e) => out.refused.push(e),
        }
    }
    out.vms = links::check_across_vms(parsed, &all_names, &mut out.refused, &mut out.warnings);
    out
}

const GUEST_MEM_ARG: &str = "bulkhead.guest_mem";
/// How to take one dom0less VM's kernel (`raw`, or `auto`: by its header), as
/// `bulkhead.guest_format=` does for the single VM: a string property of its `multiboot,kernel` module node.
pub const FORMAT_PROPERTY: &str = "bulkhead,format";
const GUEST_SMP_ARG: &str = "bulkhead.guest_smp";

/// What a guest bundle (the Raspberry Pi firmware's `initramfs` file, `crate::bundle`) asks
/// for; Bulkhead's own `bulkhead.guest_*=` bootargs still win.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BundleSizes {
    pub vcpus: Option<usize>,
    pub memory: Option<u64>,
}

/// The one VM of a guest bundle's modules, by the rules of the legacy form.
pub fn parse_bundle(
    modules: &[dtb::Module<'_>],
    sizes: BundleSizes,
    bootargs: &str,
    cpu_count: usize,
) -> ParsedConfig {
    let mut out = ParsedConfig::default();
    let lifecycle = Lifecycle::from_bootargs(bootargs, &mut out.warnings);
    match parse_legacy(modules, bootargs, cpu_count, Some(sizes)) {
        Ok(vm) => out.vms.extend(vm.map(|vm| VmSpec { lifecycle, ..vm })),
        Err(e) => out.refused.push(e),
    }
    out
}

/// The legacy form: one VM from the bare `/chosen` multiboot modules (what `-device
/// guest-loader` writes), sized by `bulkhead.guest_mem=` (default [`DEFAULT_GUEST_MEM`]) and
/// `bulkhead.guest_smp=` (default: every CPU, up to [`MAX_VCPUS`]). No kernel: no VM. An
/// unreadable size falls back to its default (`crate::bootargs` warns about it).
fn parse_legacy(
    modules: &[dtb::Module<'_>],
    bootargs: &str,
    cpu_count: usize,
    bundle: Option<BundleSizes>,
) -> Result<Option<VmSpec>, ConfigError> {
    let bundle = bundle.unwrap_or_default();
    let Some(kernel) = modules.iter().find(|m| m.kind == ModuleKind::Kernel) else {
        return Ok(None);
    };
    let initrd = modules.iter().find(|m| m.kind == ModuleKind::Ramdisk);
    let refuse = |property: &str, reason: String| ConfigError {
        vm: String::from(LEGACY_VM_NAME),
        property: String::from(property),
        reason,
    };

    let settings = Settings::parse(bootargs);
    let memory = settings
        .guest_mem
        .unwrap_or(bundle.memory.unwrap_or(DEFAULT_GUEST_MEM));
    let vcpus = settings
        .guest_smp
        .unwrap_or(bundle.vcpus.unwrap_or(cpu_count.min(MAX_VCPUS)));
    let format = settings.guest_format;
    let memory = check_memory(memory).map_err(|r| refuse(GUEST_MEM_ARG, r))?;
    let vcpus = check_vcpus(vcpus).map_err(|r| refuse(GUEST_SMP_ARG, r))?;
    let kernel_range = check_module(kernel.range).map_err(|r| refuse("multiboot,kernel", r))?;
    let initrd = initrd
        .map(|m| check_module(m.range).map_err(|r| refuse("multiboot,ramdisk", r)))
        .transpose()?;
    Ok(Some(VmSpec {
        name: String::from(LEGACY_VM_NAME),
        vcpus,
        memory,
        kernel: kernel_range,
        format,
        initrd,
        bootargs: String::from(kernel.bootargs.unwrap_or("")),
        affinity: alloc::vec![None; vcpus],
        shared_mem: Vec::new(),
        doorbells: Vec::new(),
        lifecycle: Lifecycle::default(),
    }))
}

/// Properties of a `xen,domain` node that Xen's booting.txt defines but that mean nothing to
/// Bulkhead (no PV interfaces, grant tables, cpupools, static memory, SVE or passthrough):
/// each is ignored with a warning.
const XEN_ONLY_DOMAIN_PROPERTIES: &[&str] = &[
    "direct-map",
    "xen,enhanced",
    "domain-cpupool",
    "max_grant_frames",
    "max_grant_version",
    "max_maptrack_frames",
    "sve",
    "nr_spis",
    "llc-colors",
    "capabilities",
    "trap-unmapped-accesses",
    "xen,domain-p2m-mem-mb",
    "passthrough",
    "xen,sci_type",
    "v8r_el1_msa",
    "xen,static-mem",
    "#xen,static-mem-address-cells",
    "#xen,static-mem-size-cells",
];

/// What a sub-node of a `xen,domain` node is.
enum SubNode {
    Kernel,
    Ramdisk,
    Vcpu,
    /// `multiboot,device-tree`: a partial DTB for device passthrough.
    PartialDtb,
    /// `multiboot,module` of no kind Bulkhead knows.
    OtherModule,
    /// `xen,domain-shared-memory-v1`: static shared memory.
    SharedMemory,
    /// `bulkhead,doorbell`: an interrupt this VM may raise in another.
    Doorbell,
    Unknown,
}

impl SubNode {
    fn of(node: &FdtNode<'_, '_>) -> Self {
        // Xen's kernel_probe() looks only at the specific compatible, so do we.
        if is_compatible(node, "multiboot,kernel") {
            Self::Kernel
        } else if is_compatible(node, "multiboot,ramdisk") {
            Self::Ramdisk
        } else if is_compatible(node, "multiboot,device-tree") {
            Self::PartialDtb
        } else if is_compatible(node, "multiboot,module") {
            Self::OtherModule
        } else if is_compatible(node, "xen,vcpu") {
            Self::Vcpu
        } else if is_compatible(node, "xen,domain-shared-memory-v1") {
            Self::SharedMemory
        } else if is_compatible(node, "bulkhead,doorbell") {
            Self::Doorbell
        } else {
            Self::Unknown
        }
    }
}

/// A property's raw value; `None` if absent.
fn raw<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Option<&'a [u8]> {
    node.property(name).map(|p| p.value)
}

/// A one-cell property: `Ok(None)` if absent, `Err` if it is not exactly one cell.
fn u32_prop(node: &FdtNode<'_, '_>, name: &str) -> Result<Option<u32>, String> {
    match raw(node, name) {
        None => Ok(None),
        Some(v) if v.len() == 4 => Ok(be_cells(v, 1).map(|n| n as u32)),
        Some(v) => Err(format!("{} bytes; expected one 32-bit cell", v.len())),
    }
}

/// A string property (one NUL-terminated UTF-8 string): `Ok(None)` if absent.
fn str_prop<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Result<Option<&'a str>, String> {
    let Some(v) = raw(node, name) else {
        return Ok(None);
    };
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    match core::str::from_utf8(v) {
        Ok(s) if !s.contains('\0') => Ok(Some(s)),
        _ => Err(String::from("not a single UTF-8 string")),
    }
}

/// Checks a guest RAM size in bytes.
fn check_memory(bytes: u64) -> Result<u64, String> {
    if bytes == 0 {
        Err(String::from("0 bytes; a VM needs RAM"))
    } else if !bytes.is_multiple_of(4096) {
        Err(format!("{} is not a multiple of 4 KiB", ByteSize(bytes)))
    } else if bytes < MIN_GUEST_RAM {
        Err(format!(
            "{} is smaller than the {} minimum",
            ByteSize(bytes),
            ByteSize(MIN_GUEST_RAM)
        ))
    } else if bytes > MAX_GUEST_RAM {
        Err(format!(
            "{} is more than the {} a guest address space holds",
            ByteSize(bytes),
            ByteSize(MAX_GUEST_RAM)
        ))
    } else {
        Ok(bytes)
    }
}

/// Checks a vCPU count: at least one, at most [`MAX_VCPUS`] per VM. More vCPUs than physical
/// CPUs is fine: vCPUs share CPUs (`place`).
fn check_vcpus(vcpus: usize) -> Result<usize, String> {
    if vcpus == 0 {
        Err(String::from("0 vCPUs; a VM needs at least one"))
    } else if vcpus > MAX_VCPUS {
        Err(format!(
            "{vcpus} vCPUs; a VM has at most {MAX_VCPUS} (the guest's GIC layout)"
        ))
    } else {
        Ok(vcpus)
    }
}

/// Checks a module's range: not empty, not wrapping past the end of the address space.
fn check_module(range: PhysRange) -> Result<PhysRange, String> {
    if range.size == 0 {
        Err(format!("empty (0 bytes at {:#x})", range.base))
    } else if range.base.checked_add(range.size).is_none() {
        Err(format!(
            "{} at {:#x} runs past the end of the address space",
            ByteSize(range.size),
            range.base
        ))
    } else {
        Ok(range)
    }
}

/// One `xen,domain` node → one VM, or the first thing wrong with it. Warnings (one line each)
/// go to `warnings`.
fn parse_domain<'a>(
    node: FdtNode<'_, 'a>,
    cpu_count: usize,
    mut lifecycle: Lifecycle,
    warnings: &mut Vec<String>,
) -> Result<links::Parsed<'a>, ConfigError> {
    let vm = node.name;
    let refuse = |property: &str, reason: String| ConfigError {
        vm: vm.to_string(),
        property: property.to_string(),
        reason,
    };

    for p in node.properties() {
        match p.name {
            "compatible" | "memory" | "cpus" | "#address-cells" | "#size-cells" | "bootargs"
            | "status" | "phandle" | "linux,phandle" => {}
            // Every Bulkhead guest has an emulated PL011: asking for one is a no-op.
            "vpl011" => {}
            // xl.cfg's life-cycle keys, as properties (`lifecycle`).
            key if POLICY_KEYS.contains(&key) => {
                let word = str_prop(&node, key)
                    .map_err(|r| refuse(key, r))?
                    .unwrap_or("");
                if let Some(warning) = lifecycle
                    .set_from_node(key, word)
                    .map_err(|r| refuse(key, r))?
                {
                    warnings.push(format!("{vm}: {warning}"));
                }
            }
            name if XEN_ONLY_DOMAIN_PROPERTIES.contains(&name) => warnings.push(format!(
                "{vm}: `{name}` is a Xen feature Bulkhead does not have; ignored"
            )),
            name => warnings.push(format!("{vm}: unknown property `{name}`; ignored")),
        }
    }

    // booting.txt: "A 64-bit integer specifying the amount of kilobytes of RAM"; one cell is
    // accepted too.
    let memory_kib = match raw(&node, "memory") {
        None => return Err(refuse("memory", String::from("missing (KiB of guest RAM)"))),
        Some(v) if v.len() == 4 || v.len() == 8 => be_cells(v, v.len() / 4).unwrap_or(0),
        Some(v) => {
            return Err(refuse(
                "memory",
                format!("{} bytes; expected one or two 32-bit cells", v.len()),
            ));
        }
    };
    let memory = memory_kib
        .checked_mul(1024)
        .ok_or_else(|| format!("{memory_kib} KiB does not fit in 64 bits"))
        .and_then(check_memory)
        .map_err(|r| refuse("memory", r))?;

    let vcpus = u32_prop(&node, "cpus")
        .and_then(|c| c.ok_or_else(|| String::from("missing (number of vCPUs)")))
        .and_then(|c| check_vcpus(c as usize))
        .map_err(|r| refuse("cpus", r))?;

    // booting.txt says both must be given (the module `reg`s use them); Xen itself falls back
    // to the devicetree defaults, 2 and 1, and so do we, with a warning.
    let mut cells = [("#address-cells", 2u32), ("#size-cells", 1u32)];
    let mut defaulted = false;
    for (name, value) in &mut cells {
        match u32_prop(&node, name).map_err(|r| refuse(name, r))? {
            Some(v @ (1 | 2)) => *value = v,
            Some(v) => return Err(refuse(name, format!("{v}; module addresses need 1 or 2"))),
            None => defaulted = true,
        }
    }
    let (address_cells, size_cells) = (cells[0].1 as usize, cells[1].1 as usize);
    if defaulted {
        warnings.push(format!(
            "{vm}: #address-cells/#size-cells missing; module regs read as {address_cells} and \
             {size_cells} cells"
        ));
    }

    let mut kernel: Option<(&str, PhysRange, Option<&str>)> = None;
    let mut format = GuestFormat::Detect;
    let mut initrd: Option<(&str, PhysRange)> = None;
    let mut affinity: Vec<Option<CpuSet>> = alloc::vec![None; vcpus];
    let mut vcpu_node_seen = alloc::vec![false; vcpus];
    let mut shared: Vec<(&str, SharedMemSpec)> = Vec::new();
    let mut bells: Vec<(&str, DoorbellSpec)> = Vec::new();
    for child in node.children() {
        let sub = child.name;
        match SubNode::of(&child) {
            kind @ (SubNode::Kernel | SubNode::Ramdisk) => {
                let range = module_reg(&child, address_cells, size_cells, warnings, vm)
                    .map_err(|r| refuse(&format!("{sub}/reg"), r))?;
                if matches!(kind, SubNode::Kernel) {
                    let bootargs = str_prop(&child, "bootargs")
                        .map_err(|r| refuse(&format!("{sub}/bootargs"), r))?;
                    if let Some((first, ..)) = kernel {
                        return Err(refuse(
                            "multiboot,kernel",
                            format!("two kernel modules, {first} and {sub}"),
                        ));
                    }
                    kernel = Some((sub, range, bootargs));
                    if let Some(value) = str_prop(&child, FORMAT_PROPERTY)
                        .map_err(|r| refuse(&format!("{sub}/{FORMAT_PROPERTY}"), r))?
                    {
                        format = GuestFormat::parse(value).ok_or_else(|| {
                            refuse(
                                &format!("{sub}/{FORMAT_PROPERTY}"),
                                format!("\"{value}\"; expected \"raw\" or \"auto\""),
                            )
                        })?;
                    }
                } else {
                    if let Some((first, _)) = initrd {
                        return Err(refuse(
                            "multiboot,ramdisk",
                            format!("two ramdisk modules, {first} and {sub}"),
                        ));
                    }
                    initrd = Some((sub, range));
                }
            }
            SubNode::Vcpu => {
                let (id, set) = vcpu_node(&child, vcpus, cpu_count, warnings, vm)
                    .map_err(|(prop, r)| refuse(&format!("{sub}/{prop}"), r))?;
                if core::mem::replace(&mut vcpu_node_seen[id], true) {
                    return Err(refuse(
                        &format!("{sub}/id"),
                        format!("vCPU {id} has another xen,vcpu node already"),
                    ));
                }
                affinity[id] = set;
            }
            SubNode::PartialDtb => warnings.push(format!(
                "{vm}: {sub}: partial device trees (device passthrough) are not supported; \
                 ignored"
            )),
            SubNode::OtherModule => warnings.push(format!(
                "{vm}: {sub}: a multiboot module that is neither kernel nor ramdisk; ignored"
            )),
            SubNode::SharedMemory => {
                let shm = links::shm_node(&child, address_cells, size_cells, warnings, vm)
                    .and_then(|shm| links::check_shm_ipa(&shm, memory, &shared).map(|()| shm))
                    .map_err(|(prop, r)| refuse(&format!("{sub}/{prop}"), r))?;
                shared.push((sub, shm));
            }
            SubNode::Doorbell => {
                let bell = links::doorbell_node(&child, warnings, vm)
                    .map_err(|(prop, r)| refuse(&format!("{sub}/{prop}"), r))?;
                bells.push((sub, bell));
            }
            SubNode::Unknown => warnings.push(format!("{vm}: unknown sub-node `{sub}`; ignored")),
        }
    }

    let Some((_, kernel, kernel_bootargs)) = kernel else {
        return Err(refuse(
            "multiboot,kernel",
            String::from("no kernel module (a sub-node compatible with \"multiboot,kernel\")"),
        ));
    };
    let bootargs = match kernel_bootargs {
        Some(b) => b,
        None => str_prop(&node, "bootargs")
            .map_err(|r| refuse("bootargs", r))?
            .unwrap_or(""),
    };
    let (shm_nodes, shared_mem) = shared.into_iter().unzip();
    let (bell_nodes, doorbells) = bells.into_iter().unzip();
    Ok(links::Parsed {
        spec: VmSpec {
            name: vm.to_string(),
            vcpus,
            memory,
            kernel,
            format,
            initrd: initrd.map(|(_, r)| r),
            bootargs: bootargs.to_string(),
            affinity,
            shared_mem,
            doorbells,
            lifecycle,
        },
        shm_nodes,
        bell_nodes,
    })
}

/// A module sub-node's `reg`: exactly one (address, size) entry in the domain node's cells.
fn module_reg(
    node: &FdtNode<'_, '_>,
    address_cells: usize,
    size_cells: usize,
    warnings: &mut Vec<String>,
    vm: &str,
) -> Result<PhysRange, String> {
    for p in node.properties() {
        match p.name {
            "compatible" | "reg" | "bootargs" | "phandle" | "linux,phandle" => {}
            "xen,uefi-binary" => warnings.push(format!(
                "{vm}: {}: `xen,uefi-binary` (UEFI loading) is a Xen feature Bulkhead does \
                 not have; ignored",
                node.name
            )),
            name => warnings.push(format!(
                "{vm}: {}: unknown property `{name}`; ignored",
                node.name
            )),
        }
    }
    let entry = (address_cells + size_cells) * 4;
    let v = raw(node, "reg").ok_or_else(|| String::from("missing (module address and size)"))?;
    if v.len() != entry {
        return Err(format!(
            "{} bytes; expected {entry} (#address-cells {address_cells} + #size-cells \
             {size_cells})",
            v.len()
        ));
    }
    let range = PhysRange {
        base: be_cells(v, address_cells).unwrap_or(0),
        size: be_cells(&v[address_cells * 4..], size_cells).unwrap_or(0),
    };
    check_module(range)
}

/// A `xen,vcpu` sub-node: its `id` (below `vcpus`) and optional `hard-affinity` (CPUs below
/// `cpu_count`). Errors name the property.
fn vcpu_node(
    node: &FdtNode<'_, '_>,
    vcpus: usize,
    cpu_count: usize,
    warnings: &mut Vec<String>,
    vm: &str,
) -> Result<(usize, Option<CpuSet>), (&'static str, String)> {
    for p in node.properties() {
        match p.name {
            "compatible" | "id" | "hard-affinity" | "phandle" | "linux,phandle" => {}
            name => warnings.push(format!(
                "{vm}: {}: unknown property `{name}`; ignored",
                node.name
            )),
        }
    }
    let id = u32_prop(node, "id")
        .and_then(|id| id.ok_or_else(|| String::from("missing (the vCPU number)")))
        .map_err(|r| ("id", r))? as usize;
    if id >= vcpus {
        return Err((
            "id",
            format!("vCPU {id} but the VM has {vcpus} (cpus), numbered from 0"),
        ));
    }
    let Some(text) = str_prop(node, "hard-affinity").map_err(|r| ("hard-affinity", r))? else {
        return Ok((id, None));
    };
    let set = CpuSet::parse(text).map_err(|e| ("hard-affinity", format!("\"{text}\": {e}")))?;
    match set.last() {
        Some(cpu) if cpu >= cpu_count => Err((
            "hard-affinity",
            format!("\"{text}\": CPU {cpu} but the machine has {cpu_count} CPUs"),
        )),
        _ => Ok((id, Some(set))),
    }
}
