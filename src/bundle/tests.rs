//! Bundles built here with `vm-fdt` the way `scripts/mkbundle.sh` lays them out (tree, then
//! 4 KiB-aligned images), one made by the script itself, and broken variants of both.

use super::*;
use vm_fdt::FdtWriter;

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Clone, Copy, Default)]
struct VmSpec<'s> {
    name: &'s str,
    cpus: Option<u32>,
    memory_kib: Option<u64>,
    kernel: Option<&'s [u8]>,
    ramdisk: Option<&'s [u8]>,
    kernel_args: Option<&'s str>,
    vm_args: Option<&'s str>,
}

const KERNEL: &[u8] = b"MZ a pretend kernel image, long enough to straddle nothing";
const RAMDISK: &[u8] = b"070701 a pretend cpio archive";

fn vm(name: &str) -> VmSpec<'_> {
    VmSpec {
        name,
        cpus: Some(4),
        memory_kib: Some(512 * 1024),
        kernel: Some(KERNEL),
        ramdisk: Some(RAMDISK),
        kernel_args: Some("console=ttyAMA0"),
        vm_args: None,
    }
}

fn tree(vms: &[VmSpec<'_>], offsets: &[u64], compatible: &str) -> Vec<u8> {
    let mut w = FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_string("compatible", compatible).unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let chosen = w.begin_node("chosen").unwrap();
    let mut next = offsets.iter();
    for spec in vms {
        let node = w.begin_node(spec.name).unwrap();
        w.property_string("compatible", "xen,domain").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        if let Some(cpus) = spec.cpus {
            w.property_u32("cpus", cpus).unwrap();
        }
        if let Some(kib) = spec.memory_kib {
            w.property_u64("memory", kib).unwrap();
        }
        w.property_null("vpl011").unwrap();
        if let Some(args) = spec.vm_args {
            w.property_string("bootargs", args).unwrap();
        }
        let images = [("kernel", spec.kernel), ("ramdisk", spec.ramdisk)];
        for (kind, bytes) in images {
            let Some(bytes) = bytes else { continue };
            let offset = *next.next().unwrap();
            let module = w.begin_node(&format!("module@{offset:x}")).unwrap();
            w.property_string_list(
                "compatible",
                vec![format!("multiboot,{kind}"), "multiboot,module".into()],
            )
            .unwrap();
            w.property_array_u64("reg", &[offset, bytes.len() as u64])
                .unwrap();
            if kind == "kernel"
                && let Some(args) = spec.kernel_args
            {
                w.property_string("bootargs", args).unwrap();
            }
            w.end_node(module).unwrap();
        }
        w.end_node(node).unwrap();
    }
    w.end_node(chosen).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

/// A bundle file: the tree, then each image at the next 4 KiB boundary. Offsets appear in
/// node names, so the tree's size depends on them: iterate until the layout is stable.
fn bundle_with(vms: &[VmSpec<'_>], compatible: &str) -> Vec<u8> {
    let images: Vec<&[u8]> = vms
        .iter()
        .flat_map(|v| [v.kernel, v.ramdisk])
        .flatten()
        .collect();
    let align = |n: u64| n.div_ceil(4096) * 4096;
    let layout = |tree_size: u64| -> Vec<u64> {
        let mut at = align(tree_size);
        images
            .iter()
            .map(|i| {
                let here = at;
                at = align(at + i.len() as u64);
                here
            })
            .collect()
    };
    let mut offsets = layout(0);
    let blob = loop {
        let blob = tree(vms, &offsets, compatible);
        let again = layout(blob.len() as u64);
        if again == offsets {
            break blob;
        }
        offsets = again;
    };
    let mut file = blob;
    for (image, &offset) in images.iter().zip(&offsets) {
        file.resize(offset as usize, 0);
        file.extend_from_slice(image);
    }
    file
}

fn bundle(vms: &[VmSpec<'_>]) -> Vec<u8> {
    bundle_with(vms, COMPATIBLE)
}

fn bytes_of(file: &[u8], span: Span) -> &[u8] {
    &file[span.offset as usize..(span.offset + span.size) as usize]
}

// ---- good bundles -----------------------------------------------------------------------

#[test]
fn one_vm_with_kernel_ramdisk_bootargs_cpus_and_memory() {
    let file = bundle(&[vm("vm0")]);
    let parsed = Bundle::parse(&file).unwrap();
    assert_eq!(parsed.vms.len(), 1);
    let vm = &parsed.vms[0];
    assert_eq!(vm.name, "vm0");
    assert_eq!(vm.vcpus, Some(4));
    assert_eq!(vm.memory_kib, Some(512 * 1024));
    assert_eq!(vm.bootargs, Some("console=ttyAMA0"));
    assert_eq!(bytes_of(&file, vm.kernel), KERNEL);
    assert_eq!(bytes_of(&file, vm.ramdisk.unwrap()), RAMDISK);
    assert_eq!(vm.kernel.offset % 4096, 0);
}

#[test]
fn loaded_bytes_past_the_end_are_ignored() {
    // The Raspberry Pi firmware rounds linux,initrd-end up (raspberrypi/firmware#1395).
    let mut file = bundle(&[vm("vm0")]);
    file.extend_from_slice(&[0; 3]);
    assert!(Bundle::parse(&file).is_ok());
}

#[test]
fn optional_properties_and_bootargs_on_the_vm_node() {
    let spec = VmSpec {
        cpus: None,
        memory_kib: None,
        ramdisk: None,
        kernel_args: None,
        vm_args: Some("console=ttyAMA0 quiet"),
        ..vm("guest")
    };
    let file = bundle(&[spec]);
    let vm = &Bundle::parse(&file).unwrap().vms[0];
    assert_eq!((vm.vcpus, vm.memory_kib, vm.ramdisk), (None, None, None));
    assert_eq!(vm.bootargs, Some("console=ttyAMA0 quiet"));
}

#[test]
fn kernel_module_bootargs_win_over_the_vm_nodes() {
    let spec = VmSpec {
        vm_args: Some("from-the-vm-node"),
        ..vm("vm0")
    };
    let file = bundle(&[spec]);
    assert_eq!(
        Bundle::parse(&file).unwrap().vms[0].bootargs,
        Some("console=ttyAMA0")
    );
}

#[test]
fn every_vm_is_parsed_in_tree_order() {
    let second = VmSpec {
        cpus: Some(1),
        kernel: Some(b"second kernel"),
        ..vm("vm1")
    };
    let file = bundle(&[vm("vm0"), second]);
    let parsed = Bundle::parse(&file).unwrap();
    let names: Vec<&str> = parsed.vms.iter().map(|v| v.name).collect();
    assert_eq!(names, ["vm0", "vm1"]);
    assert_eq!(bytes_of(&file, parsed.vms[1].kernel), b"second kernel");
    assert_eq!(parsed.vms[1].vcpus, Some(1));
}

#[test]
fn the_bundle_scripts_mkbundle_sh_writes_parses() {
    // tests/data/bundle-tiny.bin: scripts/mkbundle.sh --kernel tiny-kernel --initrd
    // tiny-initrd --append "console=ttyAMA0 quiet" --cpus 2 --mem 64M (see tests/data/README.md).
    let file = load("bundle-tiny.bin");
    let parsed = Bundle::parse(&file).unwrap();
    let vm = &parsed.vms[0];
    assert_eq!(vm.vcpus, Some(2));
    assert_eq!(vm.memory_kib, Some(64 * 1024));
    assert_eq!(vm.bootargs, Some("console=ttyAMA0 quiet"));
    assert_eq!(bytes_of(&file, vm.kernel), b"tiny kernel\n");
    assert_eq!(bytes_of(&file, vm.ramdisk.unwrap()), b"tiny initrd\n");
}

#[test]
fn the_two_vm_bundle_scripts_mkbundle_sh_writes_parses() {
    // tests/data/bundle-two-vms.bin: scripts/mkbundle.sh --kernel tiny-kernel --no-initrd
    // --vm --kernel tiny-kernel --initrd tiny-initrd --cpus 1 --name other.
    let file = load("bundle-two-vms.bin");
    let parsed = Bundle::parse(&file).unwrap();
    let [first, other] = &parsed.vms[..] else {
        panic!("{parsed:?}")
    };
    assert_eq!(
        (first.name, first.vcpus, first.ramdisk),
        ("vm0", Some(4), None)
    );
    assert_eq!(bytes_of(&file, first.kernel), b"tiny kernel\n");
    assert_eq!((other.name, other.vcpus), ("other", Some(1)));
    assert_eq!(other.memory_kib, Some(512 * 1024));
    assert_eq!(bytes_of(&file, other.ramdisk.unwrap()), b"tiny initrd\n");
}

// ---- truncated -----------------------------------------------------------------------------

#[test]
fn cut_inside_the_tree_is_truncated() {
    let file = bundle(&[vm("vm0")]);
    let tree_size = dtb::header_total_size(&file).unwrap() as u64;
    let cut = &file[..(tree_size / 2) as usize];
    assert_eq!(
        Bundle::parse(cut),
        Err(BundleError::TreeTruncated {
            tree_size,
            loaded: cut.len() as u64
        })
    );
}

#[test]
fn cut_inside_an_image_names_the_module() {
    let file = bundle(&[vm("vm0")]);
    let cut = &file[..file.len() - 1];
    let err = Bundle::parse(cut).unwrap_err();
    let BundleError::ModuleTruncated {
        module,
        end,
        loaded,
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(module.starts_with("module@"));
    assert_eq!((end, loaded), (file.len() as u64, cut.len() as u64));
    assert!(err.to_string().starts_with("truncated: module module@"));
}

#[test]
fn empty_and_tiny_inputs_are_not_bundles() {
    assert_eq!(Bundle::parse(&[]), Err(BundleError::NotADeviceTree));
    assert_eq!(
        Bundle::parse(&[0xd0, 0x0d]),
        Err(BundleError::NotADeviceTree)
    );
}

// ---- corrupt -------------------------------------------------------------------------------

#[test]
fn a_plain_initramfs_is_not_a_bundle() {
    // gzip magic, as a Linux initramfs would start.
    let mut file = vec![0x1f, 0x8b, 0x08, 0x00];
    file.resize(4096, 0);
    let err = Bundle::parse(&file).unwrap_err();
    assert_eq!(err, BundleError::NotADeviceTree);
    assert!(err.to_string().contains("scripts/mkbundle.sh"));
}

#[test]
fn a_device_tree_that_is_no_bundle_is_refused() {
    assert_eq!(
        Bundle::parse(&load("virt-gicv3.dtb")),
        Err(BundleError::NotABundle)
    );
    let file = bundle_with(&[vm("vm0")], "acme,something-else");
    assert_eq!(Bundle::parse(&file), Err(BundleError::NotABundle));
}

#[test]
fn a_scrambled_structure_block_is_corrupt() {
    let mut file = bundle(&[vm("vm0")]);
    let off_struct = u32::from_be_bytes(file[8..12].try_into().unwrap()) as usize;
    file[off_struct..off_struct + 16].fill(0xff);
    assert_eq!(Bundle::parse(&file), Err(BundleError::CorruptTree));
}

#[test]
fn no_vm_and_no_kernel_are_refused() {
    let file = bundle(&[]);
    assert_eq!(Bundle::parse(&file), Err(BundleError::NoVm));
    let spec = VmSpec {
        kernel: None,
        ..vm("vm0")
    };
    let file = bundle(&[spec]);
    assert_eq!(
        Bundle::parse(&file),
        Err(BundleError::NoKernel { vm: "vm0" })
    );
}

#[test]
fn a_module_pointing_into_the_tree_is_corrupt() {
    let file = tree(&[vm("vm0")], &[0x10, 0x20], COMPATIBLE);
    let err = Bundle::parse(&file).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::ModuleOverlapsTree {
                module: "module@10"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_module_past_the_end_of_any_file_is_truncated() {
    let mut file = bundle(&[vm("vm0")]);
    // Rewrite the kernel's size cell to something huge: find reg = <0 off 0 size>.
    let vm0 = Bundle::parse(&file).unwrap().vms[0].clone();
    let mut needle = Vec::new();
    needle.extend_from_slice(&vm0.kernel.offset.to_be_bytes());
    needle.extend_from_slice(&vm0.kernel.size.to_be_bytes());
    let at = file.windows(16).position(|w| w == needle).unwrap();
    file[at + 8..at + 16].copy_from_slice(&u64::MAX.to_be_bytes());
    let err = Bundle::parse(&file).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::BadProperty {
                property: "reg",
                ..
            }
        ),
        "offset + size overflows: {err:?}"
    );
    file[at + 8..at + 16].copy_from_slice(&(1u64 << 40).to_be_bytes());
    assert!(matches!(
        Bundle::parse(&file),
        Err(BundleError::ModuleTruncated { .. })
    ));
}

#[test]
fn malformed_vm_properties_are_named() {
    let spec = VmSpec {
        cpus: Some(0),
        ..vm("vm0")
    };
    assert_eq!(
        Bundle::parse(&bundle(&[spec])),
        Err(BundleError::BadProperty {
            node: "vm0",
            property: "cpus"
        })
    );
    let spec = VmSpec {
        memory_kib: Some(0),
        ..vm("vm0")
    };
    assert_eq!(
        Bundle::parse(&bundle(&[spec])),
        Err(BundleError::BadProperty {
            node: "vm0",
            property: "memory"
        })
    );
}

#[test]
fn two_kernels_in_one_vm_are_refused() {
    // Build a VM whose ramdisk module claims to be a kernel.
    let mut file = bundle(&[vm("vm0")]);
    let needle = b"multiboot,ramdisk";
    let at = file
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    file[at..at + needle.len()].copy_from_slice(b"multiboot,kernel\0");
    let err = Bundle::parse(&file).unwrap_err();
    assert!(
        matches!(err, BundleError::DuplicateModule { vm: "vm0", .. }),
        "{err:?}"
    );
}

#[test]
fn every_error_is_one_line() {
    let errors = [
        BundleError::NotADeviceTree,
        BundleError::TreeTruncated {
            tree_size: 9,
            loaded: 1,
        },
        BundleError::CorruptTree,
        BundleError::NotABundle,
        BundleError::NoVm,
        BundleError::NoKernel { vm: "vm0" },
    ];
    for e in errors {
        let text = GuestSourceError {
            bundle: PhysRange {
                base: 0x800_0000,
                size: 100,
            },
            error: Ok(e),
        }
        .to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with("guest bundle at 0x8000000 (100 bytes): "),
            "{text}"
        );
        assert!(text.ends_with("; no guest"), "{text}");
    }
}

// ---- where the guest comes from -----------------------------------------------------------

/// Bulkhead at 0x80000 with its 16 MiB heap from 2 MiB, as on QEMU raspi4b.
const HYPERVISOR: PhysRange = PhysRange {
    base: 0x8_0000,
    size: 0x120_0000 - 0x8_0000,
};

/// QEMU raspi4b's DTB for a 1 MiB `-initrd` at 0x8000000 (tests/data/README.md).
fn raspi4b_with_initrd() -> Vec<u8> {
    let mut blob = load("raspi4b-qemu-initrd.dtb");
    dtb::strip_nops(&mut blob).unwrap();
    blob
}

#[test]
fn the_initrd_bundle_gives_modules_at_host_addresses_inside_it() {
    let blob = raspi4b_with_initrd();
    let fdt = dtb::parse(&blob).unwrap();
    let at = dtb::initrd(&fdt).unwrap();
    let mut loaded = bundle(&[vm("vm0")]);
    loaded.resize(at.size as usize, 0);
    let mut asked = None;
    let source = guest_source(&fdt, HYPERVISOR, |r| {
        asked = Some(r);
        &loaded
    })
    .unwrap();
    assert_eq!(asked, Some(at));
    assert_eq!(source.bundle, Some(at));
    assert_eq!(source.vcpu_count, Some(4));
    assert_eq!(source.ram_size, Some(512 << 20));
    let [kernel, ramdisk] = &source.modules[..] else {
        panic!("{:?}", source.modules)
    };
    assert_eq!(kernel.kind, ModuleKind::Kernel);
    assert_eq!(kernel.bootargs, Some("console=ttyAMA0"));
    assert_eq!(ramdisk.kind, ModuleKind::Ramdisk);
    // The ranges are host physical addresses of the images inside the loaded bundle.
    let host = |r: PhysRange| &loaded[(r.base - at.base) as usize..(r.end() - at.base) as usize];
    assert_eq!(host(kernel.range), KERNEL);
    assert_eq!(host(ramdisk.range), RAMDISK);
}

#[test]
fn only_the_first_vm_of_a_bundle_runs() {
    let blob = raspi4b_with_initrd();
    let fdt = dtb::parse(&blob).unwrap();
    let second = VmSpec {
        cpus: Some(1),
        ..vm("vm1")
    };
    let first = VmSpec {
        cpus: Some(3),
        ..vm("vm0")
    };
    let mut loaded = bundle(&[first, second]);
    loaded.resize(dtb::initrd(&fdt).unwrap().size as usize, 0);
    let source = guest_source(&fdt, HYPERVISOR, |_| &loaded).unwrap();
    assert_eq!(source.vcpu_count, Some(3));
    assert_eq!(source.modules.len(), 2);
}

#[test]
fn a_bad_bundle_is_an_error_that_says_where_it_was() {
    let blob = raspi4b_with_initrd();
    let fdt = dtb::parse(&blob).unwrap();
    let loaded = vec![0x1f; dtb::initrd(&fdt).unwrap().size as usize];
    let err = guest_source(&fdt, HYPERVISOR, |_| &loaded).unwrap_err();
    assert_eq!(err.error, Ok(BundleError::NotADeviceTree));
    assert!(
        err.to_string()
            .starts_with("guest bundle at 0x8000000 (1048576 bytes): not a guest bundle")
    );
}

#[test]
fn multiboot_modules_in_the_dtb_win_and_the_initrd_is_not_read() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let source = guest_source(&fdt, HYPERVISOR, |_| panic!("read host RAM")).unwrap();
    assert_eq!(source.modules.len(), 2);
    assert_eq!(source.bundle, None);
    assert_eq!(source.vcpu_count, None);
}

#[test]
fn no_modules_and_no_initrd_means_no_guest() {
    let blob = load("virt-gicv3.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let source = guest_source(&fdt, HYPERVISOR, |_| panic!("read host RAM")).unwrap();
    assert_eq!(source, GuestSource::default());
}

#[test]
fn an_initrd_outside_ram_is_never_read() {
    // Debian's bcm2711 DTB describes no RAM (the firmware fills it in); this copy names an
    // initrd as the firmware would.
    let blob = load("bcm2711-firmware-initrd.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let err = guest_source(&fdt, HYPERVISOR, |_| panic!("read host RAM")).unwrap_err();
    assert_eq!(err.error, Err(Placement::NotInRam));
    assert!(err.to_string().contains("not in RAM"), "{err}");
}

#[test]
fn no_single_corrupted_byte_of_the_tree_makes_parsing_panic() {
    // EL2 must refuse a corrupt bundle with a message, never panic on it.
    let file = bundle(&[vm("vm0")]);
    let tree_size = dtb::header_total_size(&file).unwrap();
    for at in 0..tree_size {
        for value in [0x00, 0xff, file[at] ^ 0x01, file[at] ^ 0x80] {
            let mut bad = file.clone();
            bad[at] = value;
            let outcome = std::panic::catch_unwind(|| Bundle::parse(&bad).map(|_| ()));
            assert!(outcome.is_ok(), "byte {at:#x} = {value:#x} panics");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Several corrupted bytes anywhere in the tree, and any cut: an error or a bundle, never
    /// a panic.
    #[test]
    fn random_corruption_never_panics(
        edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
        cut in 0usize..8192,
    ) {
        let file = bundle(&[vm("vm0"), vm("vm1")]);
        let tree_size = dtb::header_total_size(&file).unwrap();
        let mut bad = file.clone();
        for (at, value) in edits {
            bad[at % tree_size] = value;
        }
        bad.truncate(cut.max(1).min(bad.len()));
        let outcome = std::panic::catch_unwind(|| Bundle::parse(&bad).map(|_| ()));
        proptest::prop_assert!(outcome.is_ok());
    }
}

#[test]
fn a_bundle_under_the_hypervisors_heap_is_never_read() {
    let blob = raspi4b_with_initrd();
    let fdt = dtb::parse(&blob).unwrap();
    // As if the heap reached into the initrd at 0x8000000.
    let hypervisor = PhysRange {
        base: 0x8_0000,
        size: 0x800_1000 - 0x8_0000,
    };
    let err = guest_source(&fdt, hypervisor, |_| panic!("read host RAM")).unwrap_err();
    assert_eq!(err.error, Err(Placement::OverlapsHypervisor(hypervisor)));
    assert!(
        err.to_string()
            .contains("overlaps Bulkhead's image and heap (0x80000..0x8001000)"),
        "{err}"
    );
}
