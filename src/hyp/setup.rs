//! Building the VM from what the host DTB describes: the guest images are Xen-style multiboot
//! modules in `/chosen` (QEMU's `-device guest-loader`), sizes come from Bulkhead's bootargs
//! (`bulkhead.guest_mem=`, `bulkhead.guest_smp=`, `bulkhead.vmid_bits=`).

use alloc::string::String;
use alloc::vec::Vec;

use fdt::Fdt;

use super::irq;
use super::vm::{self, Vm, VmConfig};
use crate::arch::{entry, mmu, vgic_hw};
use crate::bundle;
use crate::dtb::{self, GicInfo, ModuleKind, PhysRange};
use crate::guest_layout::GicVersion;
use crate::mm::layout::phys_to_linear;

/// Parses `512M`, `1G`, `65536K` or plain bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// Creates the VM if the DTB carries a guest kernel; `None` means run without a guest.
pub fn create_vm(
    fdt: &Fdt<'_>,
    gic: &GicInfo,
    hypervisor_end: u64,
    cpu_count: usize,
) -> Option<&'static Vm> {
    // Multiboot module nodes, else a guest bundle the boot loader put at linux,initrd-start.
    let host_ram = |r: PhysRange| entry::linear_slice(phys_to_linear(r.base), r.size as usize);
    let hypervisor = PhysRange {
        base: entry::image().pa,
        size: hypervisor_end - entry::image().pa,
    };
    let guest = bundle::guest_source(fdt, hypervisor, host_ram)
        .map_err(|e| log::error!("{e}"))
        .ok()?;
    let modules = &guest.modules;
    let kernel = modules.iter().find(|m| m.kind == ModuleKind::Kernel)?;
    let initrd = modules
        .iter()
        .find(|m| m.kind == ModuleKind::Ramdisk)
        .map(|m| m.range);
    let args = dtb::bootargs(fdt);
    let ram_size = dtb::bootarg(args, "bulkhead.guest_mem")
        .and_then(parse_size)
        .or(guest.ram_size)
        .unwrap_or(512 << 20);
    let vcpu_count = dtb::bootarg(args, "bulkhead.guest_smp")
        .and_then(|s| s.parse().ok())
        .or(guest.vcpu_count)
        .unwrap_or(cpu_count);
    if vcpu_count == 0 || vcpu_count > cpu_count {
        log::error!(
            "guest wants {vcpu_count} vCPUs; this machine runs at most {cpu_count} (one per CPU)"
        );
        return None;
    }

    let image = entry::image();
    let params = entry::boot_params();
    let mut avoid = alloc::vec![
        PhysRange {
            base: image.pa,
            size: hypervisor_end - image.pa
        },
        PhysRange {
            base: params.dtb_pa,
            size: params.dtb_size
        },
    ];
    avoid.extend(modules.iter().map(|m| m.range).chain(guest.bundle));
    avoid.extend(dtb::reserved_regions(fdt));
    let ram: Vec<PhysRange> = dtb::memory_regions(fdt).collect();
    let Some(ram_pa) = vm::place_guest_ram(&ram, ram_size, &avoid) else {
        log::error!("no room for {} MiB of guest RAM", ram_size >> 20);
        return None;
    };

    let (version, gicv_pa) = match *gic {
        GicInfo::V3 {
            maintenance_intid, ..
        } => {
            vgic_hw::init(vgic_hw::VgicHw::V3);
            irq::set_host_intids(dtb::console_uart_intid(fdt), maintenance_intid);
            (GicVersion::V3, None)
        }
        GicInfo::V2 {
            gich,
            gicv,
            maintenance_intid,
            ..
        } => {
            let (Some(gich), Some(gicv)) = (gich, gicv) else {
                log::error!("GICv2 without virtualization extensions: cannot run guests");
                return None;
            };
            let Ok(gich_va) = mmu::map_device(gich.base, gich.size.max(0x1000)) else {
                log::error!("cannot map GICH");
                return None;
            };
            vgic_hw::init(vgic_hw::VgicHw::V2 { gich: gich_va });
            irq::set_host_intids(dtb::console_uart_intid(fdt), maintenance_intid);
            (GicVersion::V2, Some(gicv.base))
        }
    };
    let vmid_bits = dtb::bootarg(args, "bulkhead.vmid_bits").and_then(|b| b.parse().ok());
    vm::init_vmids(vmid_bits, cpu_count);

    let config = VmConfig {
        vcpu_count,
        ram_size,
        gic: version,
        ram_pa,
        kernel: kernel.range,
        initrd,
        bootargs: String::from(kernel.bootargs.unwrap_or("")),
        gicv_pa,
    };
    log::info!(
        "guest: {vcpu_count} vCPUs, {} MiB RAM at {ram_pa:#x}, GICv{}, kernel {} KiB{}",
        ram_size >> 20,
        if version == GicVersion::V3 { 3 } else { 2 },
        kernel.range.size >> 10,
        initrd.map_or(String::new(), |r| alloc::format!(
            ", initrd {} KiB",
            r.size >> 10
        ))
    );
    match vm::create(config) {
        Ok(vm) => Some(vm),
        Err(e) => {
            log::error!("cannot create the guest: {e}");
            None
        }
    }
}
