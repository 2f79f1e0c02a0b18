//! Building the VMs from what the host DTB describes (`crate::config`: Xen's dom0less
//! `xen,domain` nodes, or the multiboot modules of QEMU's `-device guest-loader` as one VM),
//! placing them (`config::place`: RAM and physical CPUs), and the VMID allocator
//! (`bulkhead.vmid_bits=`).

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use fdt::Fdt;
use spin::Once;

use super::console::Console;
use super::host_irq;
use super::vm::{Doorbell, SharedRegion, Vm, VmConfig, VmError};
use crate::arch::platform::{self, ArchPlatform};
use crate::arch::{entry, mmu, stage2_hw, vgic_hw};
use crate::bootargs::Settings;
use crate::bundle;
use crate::config;
use crate::config::CpuSet;
use crate::devices::wall_clock::{self, WallClock};
use crate::dtb::{self, GicInfo, PhysRange};
use crate::guest_layout::GicVersion;
use crate::hyp::platform::Platform;
use crate::mm::layout::phys_to_linear;
use crate::mm::stage2::{Stage2Map, stage2_geometry};
use crate::sched::{Scheduler, VcpuRef};
use crate::sync::SpinLock;
use crate::units::{ApproxSize, ByteSize};
use crate::vmid::VmidAllocator;

/// The GIC virtualization hardware, set up once for all VMs: the guest-visible GIC version and
/// (GICv2) the host GICV passed through at the guests' GICC.
fn init_virtual_gic(fdt: &Fdt<'_>, gic: &GicInfo) -> Option<(GicVersion, Option<u64>)> {
    match *gic {
        GicInfo::V3 {
            maintenance_intid, ..
        } => {
            vgic_hw::init(vgic_hw::VgicHw::V3);
            host_irq::set_host_intids(dtb::console_uart_intid(fdt), maintenance_intid);
            Some((GicVersion::V3, None))
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
            host_irq::set_host_intids(dtb::console_uart_intid(fdt), maintenance_intid);
            Some((GicVersion::V2, Some(gicv.base)))
        }
    }
}

/// What [`create_vms`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guests {
    /// No VM configured: Bulkhead runs without a guest (a valid demo mode).
    None,
    /// At least one VM was created and loaded and will run.
    Running,
    /// VMs were configured but every one was refused (each said why in one line).
    NoneCanStart {
        /// How many were configured.
        refused: usize,
    },
}

/// Builds every VM the host DTB describes (Xen dom0less `xen,domain` nodes, or the bare
/// multiboot modules of QEMU's guest-loader as one VM), refusing bad ones with one line each,
/// and loads their images. A VM that cannot be created or loaded is not started.
pub fn create_vms(fdt: &Fdt<'_>, gic: &GicInfo, hypervisor_end: u64, cpu_count: usize) -> Guests {
    let args = dtb::bootargs(fdt);
    let settings = Settings::parse(args);
    let image = entry::image();
    let hypervisor = PhysRange {
        base: image.pa,
        size: hypervisor_end - image.pa,
    };
    let mut parsed = config::parse(fdt, args, cpu_count);
    // Neither form: maybe a guest bundle the boot loader put at /chosen/linux,initrd-start
    // (the Raspberry Pi firmware's `initramfs`).
    let mut bundle_range = None;
    if parsed.vms.is_empty() && parsed.refused.is_empty() {
        let read = |r: PhysRange| {
            platform::allow_reading(r);
            ArchPlatform.host_ram(r.base, r.size)
        };
        match bundle::guest_source(fdt, hypervisor, read) {
            Ok(guest) if !guest.modules.is_empty() => {
                let sizes = config::BundleSizes {
                    vcpus: guest.vcpu_count,
                    memory: guest.ram_size,
                };
                parsed = config::parse_bundle(&guest.modules, sizes, args, cpu_count);
                bundle_range = guest.bundle;
            }
            Ok(_) => {}
            Err(e) => {
                // A guest was meant to run (the boot loader handed over a file), but none can.
                log::error!("{e}");
                return Guests::NoneCanStart { refused: 1 };
            }
        }
    }
    for warning in &parsed.warnings {
        log::warn!("{warning}");
    }
    for refused in &parsed.refused {
        log::error!("VM refused: {refused}");
    }
    let configured = parsed.vms.len() + parsed.refused.len();
    let none_can_start = Guests::NoneCanStart {
        refused: configured,
    };
    if parsed.vms.is_empty() {
        return if configured == 0 {
            Guests::None
        } else {
            none_can_start
        };
    }
    let Some((version, gicv_pa)) = init_virtual_gic(fdt, gic) else {
        return none_can_start;
    };
    init_vmids(&settings, cpu_count);
    log::info!(
        "stage 2: guest RAM {}",
        if stage2_hw::has_fwb() {
            "forced Write-Back (FEAT_S2FWB), no cleaning to PoC"
        } else {
            "cleaned to PoC when first mapped"
        }
    );
    if !platform::seed_entropy(dtb::rng_seed(fdt)) {
        log::warn!(
            "no entropy (no /chosen/rng-seed, no RNDR): guests get no rng-seed or kaslr-seed"
        );
    }

    // Host RAM no VM may have: the hypervisor and its heap, the host DTB, the images.
    let params = entry::boot_params();
    let mut avoid = alloc::vec![
        hypervisor,
        PhysRange {
            base: params.dtb_pa,
            size: params.dtb_size
        },
    ];
    avoid.extend(bundle_range);
    for spec in &parsed.vms {
        avoid.push(spec.kernel);
        avoid.extend(spec.initrd);
    }
    avoid.extend(dtb::reserved_regions(fdt));
    let ram: Vec<PhysRange> = dtb::memory_regions(fdt).collect();
    let placements = config::place(&parsed.vms, &ram, &avoid, cpu_count);
    let placed: Vec<(&config::VmSpec, config::Placement)> = parsed
        .vms
        .iter()
        .zip(placements)
        .filter_map(|(spec, placement)| match placement {
            Ok(p) => Some((spec, p)),
            Err(e) => {
                log::error!("VM refused: {e}");
                None
            }
        })
        .collect();
    if placed.is_empty() {
        return none_can_start;
    }
    let clock = guest_clock(fdt, &settings);
    let console: &'static Console = CONSOLE.call_once(|| {
        // A partial line (a prompt) shows after this long without its end.
        let idle =
            crate::arch::cpu::counter_frequency().saturating_mul(settings.console_idle_ms) / 1000;
        Console::new(
            placed.iter().map(|(s, _)| s.name.clone()).collect(),
            settings.console_escape,
            idle,
        )
    });

    crate::board::console::route_log_lines(|line| {
        CONSOLE
            .get()
            .is_some_and(|console| console.try_hyp_line(line, &ArchPlatform))
    });

    // Doorbells: by peer name, to the id the peer gets (its index among the placed VMs); a
    // doorbell whose peer does not run stays (its number must not shift) and rings nobody.
    let id_of = |name: &str| placed.iter().position(|(s, _)| s.name == name);
    let incoming: Vec<Vec<Doorbell>> = placed
        .iter()
        .map(|(receiver, _)| {
            placed
                .iter()
                .enumerate()
                .flat_map(|(ringer_id, (ringer, _))| {
                    ringer
                        .doorbells
                        .iter()
                        .filter(|bell| bell.peer == receiver.name)
                        .map(move |bell| Doorbell {
                            peer: ringer.name.clone(),
                            peer_id: ringer_id,
                            spi: bell.spi,
                        })
                })
                .collect()
        })
        .collect();

    let mut vms = Vec::new();
    for (id, (spec, placement)) in placed.iter().enumerate() {
        let config = VmConfig {
            name: spec.name.clone(),
            vcpu_count: spec.vcpus,
            pcpus: placement.pcpus.clone(),
            ram_size: spec.memory,
            gic: version,
            ram_pa: placement.ram_pa,
            kernel: spec.kernel,
            format: spec.format,
            initrd: spec.initrd,
            bootargs: spec.bootargs.clone(),
            gicv_pa,
            clock,
            vmid_bits: vmids().map_or(16, |v| v.bits()),
            shared: spec
                .shared_mem
                .iter()
                .zip(&placement.shared)
                .map(|(shm, &host_pa)| SharedRegion {
                    id: shm.id.clone(),
                    ipa: shm.ipa,
                    size: shm.size,
                    host_pa,
                })
                .collect(),
            doorbells_out: spec
                .doorbells
                .iter()
                .map(|bell| Doorbell {
                    peer: bell.peer.clone(),
                    peer_id: id_of(&bell.peer).unwrap_or(usize::MAX),
                    spi: bell.spi,
                })
                .collect(),
            doorbells_in: incoming[id].clone(),
            lifecycle: spec.lifecycle,
            counter_hz: crate::arch::cpu::counter_frequency(),
            cntvoff: crate::arch::cpu::counter(),
            allowed: placement.allowed.clone(),
            sve_vl_bytes: crate::arch::context::sve_vl_bytes(),
        };
        log::info!(
            "{}: {} vCPUs on CPUs {:?}, {} RAM at {:#x}, GICv{}, kernel {}{}",
            spec.name,
            spec.vcpus,
            placement.pcpus,
            ByteSize(spec.memory),
            placement.ram_pa,
            if version == GicVersion::V3 { 3 } else { 2 },
            ApproxSize(spec.kernel.size),
            spec.initrd.map_or(String::new(), |r| alloc::format!(
                ", initrd {}",
                ApproxSize(r.size)
            ))
        );
        let l = spec.lifecycle;
        if l != config::Lifecycle::default() {
            log::info!(
                "{}: on_poweroff={}, on_reboot={}, on_crash={}, restarts {}",
                spec.name,
                l.on_poweroff,
                l.on_reboot,
                l.on_crash,
                l.reset_limit
                    .map_or(String::from("unlimited"), |n| alloc::format!(
                        "at most {n} a minute"
                    )),
            );
        }
        match build(id, console, config) {
            Ok(vm) => vms.push(vm),
            Err(e) => {
                log::error!("{}: VM not created: {e}", spec.name);
                console.set_alive(id, false, &ArchPlatform);
            }
        }
    }
    // Load each VM's images; a VM that cannot be loaded is off from the start.
    let mut running = 0;
    let mut loaded = Vec::with_capacity(vms.len());
    for vm in &vms {
        let result = vm.load(&ArchPlatform);
        loaded.push(result.is_ok());
        match result {
            Ok(_) => running += 1,
            Err(e) => {
                log::error!("{}: {e}", vm.config.name);
                vm.power.force_off();
                console.set_alive(vm.id, false, &ArchPlatform);
                STOPPED_VMS.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
    let sched = scheduler_for(&vms, cpu_count, &settings, &loaded);
    let roles = core::array::from_fn(|pcpu| {
        if pcpu >= cpu_count {
            return Role::Idle;
        }
        match sched.dedicated(pcpu) {
            Some(v) => Role::Dedicated(v.vm, v.vcpu),
            None if sched.may_run_on(pcpu) => Role::Shared,
            None => Role::Idle,
        }
    });
    let mut shared = CpuSet::EMPTY;
    for cpu in (0..cpu_count).filter(|&c| roles[c] == Role::Shared) {
        shared.insert(cpu);
    }
    if !shared.is_empty() {
        log::info!(
            "scheduler: CPUs {} shared, {} ms slices",
            shared,
            settings.sched_slice_ms
        );
    }
    SCHEDULER.call_once(|| SpinLock::new(sched));
    // Published last, complete: the other CPUs start running as soon as they see it.
    let machine = MACHINE.call_once(|| Machine { vms, roles });
    for vm in &machine.vms {
        vm.peers.call_once(|| &machine.vms);
    }
    if running > 0 {
        Guests::Running
    } else {
        none_can_start
    }
}

/// The scheduler over every vCPU of `vms` (`loaded[i]`: VM `i` of `vms` can run; the vCPUs of
/// one that cannot stay blocked for good).
fn scheduler_for(vms: &[Vm], cpu_count: usize, settings: &Settings, loaded: &[bool]) -> Scheduler {
    let slice =
        crate::arch::cpu::counter_frequency().saturating_mul(settings.sched_slice_ms) / 1000;
    let mut sched = Scheduler::new(cpu_count, slice.max(1));
    for (vm, &runs) in vms.iter().zip(loaded) {
        for vcpu in 0..vm.config.vcpu_count {
            let home = vm.config.pcpus.get(vcpu).copied().unwrap_or(0);
            let allowed = vm
                .config
                .allowed
                .get(vcpu)
                .copied()
                .unwrap_or_else(|| CpuSet::single(home).unwrap_or(CpuSet::EMPTY));
            sched.add(VcpuRef { vm: vm.id, vcpu }, allowed, home, runs);
        }
    }
    sched
}

/// What a physical CPU does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Runs nothing (CPU 0 still serves the console).
    Idle,
    /// Runs this one vCPU (VM id, vCPU), the only one allowed on it, for good.
    Dedicated(usize, usize),
    /// Takes turns between the vCPUs the scheduler gives it.
    Shared,
}

/// What a physical CPU does, with the VM a dedicated CPU runs.
pub enum CpuRole {
    Idle,
    Dedicated(&'static Vm, usize),
    Shared,
}

/// The VMs and what each physical CPU does, published once everything is loaded.
struct Machine {
    vms: Vec<Vm>,
    roles: [Role; entry::MAX_CPUS],
}

static MACHINE: Once<Machine> = Once::new();

/// The scheduler of the shared CPUs (every vCPU is in it; dedicated CPUs never ask it).
static SCHEDULER: Once<SpinLock<Scheduler>> = Once::new();

/// The VMs, once created and loaded (empty before, and when there are none).
pub fn vms() -> &'static [Vm] {
    MACHINE.get().map_or(&[], |m| m.vms.as_slice())
}

/// What physical CPU `pcpu` does.
pub fn role(pcpu: usize) -> CpuRole {
    let Some(machine) = MACHINE.get() else {
        return CpuRole::Idle;
    };
    match machine.roles.get(pcpu) {
        Some(&Role::Dedicated(vm, vcpu)) => match machine.vms.iter().find(|v| v.id == vm) {
            Some(vm) => CpuRole::Dedicated(vm, vcpu),
            None => CpuRole::Idle,
        },
        Some(Role::Shared) => CpuRole::Shared,
        _ => CpuRole::Idle,
    }
}

/// The scheduler (only shared CPUs use it, after the VMs are published).
pub fn scheduler() -> &'static SpinLock<Scheduler> {
    SCHEDULER.call_once(|| SpinLock::new(Scheduler::new(0, 1)))
}

/// VMs that are off for good and finished saying so.
static STOPPED_VMS: AtomicUsize = AtomicUsize::new(0);

/// Counts one more VM off for good; true for the last one.
pub fn count_stopped_vm() -> bool {
    STOPPED_VMS.fetch_add(1, Ordering::AcqRel) + 1 >= vms().len()
}

/// The console the VMs share, once there are VMs.
pub fn console() -> Option<&'static Console> {
    CONSOLE.get()
}

static CONSOLE: Once<Console> = Once::new();

/// The wall clock behind every guest's PL031, its start read once (`devices::wall_clock`).
fn guest_clock(fdt: &Fdt<'_>, settings: &Settings) -> WallClock {
    let host_rtc = dtb::host_rtc(fdt).and_then(crate::board::rtc::read_seconds);
    let build = env!("BULKHEAD_BUILD_EPOCH").parse().unwrap_or(0);
    let (secs, source) = wall_clock::pick_start(settings.rtc, host_rtc, build);
    log::info!(
        "guest clock: {secs} s since 1970-01-01 UTC, from {}",
        source.name()
    );
    WallClock::new(
        secs,
        crate::arch::cpu::counter(),
        crate::arch::cpu::counter_frequency(),
    )
}

static VMIDS: Once<VmidAllocator<stage2_hw::BroadcastTlb>> = Once::new();

/// The VMID allocator, once set up.
pub fn vmids() -> Option<&'static VmidAllocator<stage2_hw::BroadcastTlb>> {
    VMIDS.get()
}

/// The CPU's VMID width (VTCR_EL2.VS is available with 16-bit VMIDs).
pub fn hw_vmid_bits() -> u8 {
    if stage2_hw::has_16bit_vmid() { 16 } else { 8 }
}

/// Sets up the VMID allocator: at most `bulkhead.vmid_bits=`, at most the CPU's width.
fn init_vmids(settings: &Settings, cpu_count: usize) {
    let hw_bits = hw_vmid_bits();
    let bits = settings.vmid_bits_in_force(hw_bits);
    match VmidAllocator::new(bits, cpu_count, stage2_hw::BroadcastTlb) {
        Ok(a) => {
            log::info!("VMIDs: {bits} bits");
            VMIDS.call_once(|| a);
        }
        Err(e) => {
            log::error!(
                "VMID allocator with {bits} bits for {cpu_count} CPUs: {e}; using {hw_bits}"
            );
            if let Ok(a) = VmidAllocator::new(hw_bits, cpu_count, stage2_hw::BroadcastTlb) {
                VMIDS.call_once(|| a);
            }
        }
    }
}

/// Builds a VM (stage-2 geometry from this CPU); its images are loaded once it has its place.
fn build(id: usize, console: &'static Console, config: VmConfig) -> Result<Vm, VmError> {
    let geometry = stage2_geometry(stage2_hw::pa_range(), 40).map_err(VmError::Layout)?;
    let vtcr = geometry.vtcr_el2(stage2_hw::has_16bit_vmid());
    // Stage-2 tables come from the heap, which lives in the linear window.
    let mut stage2 = Stage2Map::new_linear(&geometry, -(phys_to_linear(0) as i64) as isize);
    // Every CPU sets HCR_EL2.FWB when it has FEAT_S2FWB (`El2Controls`); CPUs of one machine
    // agree on it (Linux, too, takes it as a system-wide capability).
    if stage2_hw::has_fwb() {
        stage2.use_forced_write_back();
    }
    let ram = PhysRange {
        base: config.ram_pa,
        size: config.ram_size,
    };
    let images = [Some(config.kernel), config.initrd];
    let shared = config.shared.iter().map(|r| PhysRange {
        base: r.host_pa,
        size: r.size,
    });
    if !platform::allow_writing(ram)
        || !shared.into_iter().all(platform::allow_writing)
        || !images.into_iter().flatten().all(platform::allow_reading)
    {
        log::error!("too many host RAM windows");
    }
    Vm::new(id, console, config, vtcr, stage2)
}
