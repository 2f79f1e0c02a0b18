//! A VM: its RAM (one contiguous host range, mapped lazily into stage 2), its emulated
//! devices, vGIC, PSCI power state, vCPU requests and VMID, and the images it boots from.
//! Plain Rust: the hardware it needs (copying images into RAM) comes through [`Platform`].

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use super::console::Console;
use super::platform::Platform;
use super::vcpu::Vcpu;
use crate::devices::pl011::EmulatedPl011;
use crate::devices::pl031::EmulatedPl031;
use crate::devices::wall_clock::WallClock;
use crate::dtb::PhysRange;
use crate::guest_dtb::{DoorbellNode, GuestDtbConfig, GuestSeeds, SharedMemNode, build_guest_dtb};
use crate::guest_layout::{GUEST_RAM_BASE, GicVersion};
use crate::loader::{GuestRam, plan_load};
use crate::mm::stage2::{GuestMemoryMap, Stage2Map};
use crate::sync::{SpinGuard, SpinLock};
use crate::vcpu::power::{PowerState, VmPower, VmState};
use crate::vcpu::request::{Kick, Request, VcpuRequests, make_request};
use crate::vgic::{VcpuSet, Vgic};
use crate::vmid::VmVmid;

/// How a VM is described (from the host DTB's multiboot modules and Bulkhead's bootargs).
pub struct VmConfig {
    /// The VM's name (its dom0less node name), used in console prefixes and logs.
    pub name: String,
    pub vcpu_count: usize,
    /// The physical CPU each vCPU runs on (index = vCPU id).
    pub pcpus: Vec<usize>,
    pub ram_size: u64,
    pub gic: GicVersion,
    /// Host PA of the guest's RAM.
    pub ram_pa: u64,
    pub kernel: PhysRange,
    pub initrd: Option<PhysRange>,
    pub bootargs: String,
    /// Host GICV (GICv2 only), passed through at the guest's GICC.
    pub gicv_pa: Option<u64>,
    /// The wall-clock time behind the VM's PL031 (the same for every VM).
    pub clock: WallClock,
    /// Width of the VMIDs the allocator hands out (for the statistics: VMID = low bits).
    pub vmid_bits: u8,
    /// Static shared memory (Xen's `xen,domain-shared-memory-v1`).
    pub shared: Vec<SharedRegion>,
    /// Doorbells this VM may ring (index = the number it rings).
    pub doorbells_out: Vec<Doorbell>,
    /// Doorbells other VMs ring into this one.
    pub doorbells_in: Vec<Doorbell>,
}

/// Host RAM mapped into this VM and others at `ipa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRegion {
    pub id: String,
    pub ipa: u64,
    pub size: u64,
    pub host_pa: u64,
}

/// One doorbell: the VM at the other end, and the SPI it raises in the receiving VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doorbell {
    pub peer: String,
    /// The peer's VM id (`Vm::id`).
    pub peer_id: usize,
    pub spi: u32,
}

/// SPIs the guest's interrupt controller has (the PL011, the PL031 and doorbells use them; a
/// GIC has multiples of 32).
const GUEST_SPI_COUNT: u32 = 96;

/// Where the boot vCPU starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootInfo {
    pub entry: u64,
    pub dtb_ipa: u64,
}

/// Why a VM could not be built or loaded.
#[derive(Debug)]
pub enum VmError {
    Layout(crate::mm::stage2::Stage2Error),
    Load(crate::loader::LoadError),
    Dtb(crate::guest_dtb::GuestDtbError),
    Vgic(crate::vgic::VgicError),
    Power(crate::vcpu::power::PowerError),
    /// Not one physical CPU per vCPU.
    Placement,
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Layout(e) => write!(f, "guest memory layout: {e}"),
            Self::Load(e) => write!(f, "guest image: {e:?}"),
            Self::Dtb(e) => write!(f, "guest DTB: {e:?}"),
            Self::Vgic(e) => write!(f, "vGIC: {e}"),
            Self::Power(e) => write!(f, "vCPU power state: {e:?}"),
            Self::Placement => write!(f, "not one physical CPU per vCPU"),
        }
    }
}

pub struct Vm {
    /// Index among the VMs (0 = the first configured); also its index on the console.
    pub id: usize,
    /// The console the VM's PL011 prints on.
    pub console: &'static Console,
    pub config: VmConfig,
    pub mem: GuestMemoryMap,
    pub stage2: SpinLock<Stage2Map>,
    pub vtcr: u64,
    pub vmid: VmVmid,
    /// The vGIC model. Lock it through [`Vm::vgic`] (which marks it changed) except to read.
    pub vgic: SpinLock<Vgic>,
    /// Bumped whenever the vGIC may have changed: a vCPU whose last list-register fill found
    /// nothing and saw this value since can skip the next fill (the null-exit fast path).
    pub vgic_epoch: AtomicU64,
    /// Stage-2 root table (never changes: reset empties it in place).
    pub stage2_root: u64,
    pub uart: SpinLock<EmulatedPl011>,
    /// The level last driven on the PL011's interrupt line (changed under the `uart` lock).
    pub uart_line: core::sync::atomic::AtomicBool,
    /// The PL031 RTC (its own time offset: a guest setting its clock changes only its own).
    pub rtc: SpinLock<EmulatedPl031>,
    /// The level last driven on the PL031's interrupt line (changed under the `rtc` lock).
    pub rtc_line: core::sync::atomic::AtomicBool,
    /// When the PL031's pending match comes due (counter ticks; `u64::MAX`: none).
    pub rtc_deadline: AtomicU64,
    pub power: VmPower,
    /// The vCPUs; a physical CPU locks the one it runs.
    pub vcpus: Vec<SpinLock<Vcpu>>,
    pub requests: Vec<VcpuRequests>,
    pub boot: SpinLock<BootInfo>,
    /// Bumped at every reset: a vCPU whose loop saw an older value reinitialises itself.
    pub generation: AtomicU64,
    /// Stage-2 faults that mapped memory (RAM is mapped lazily), for the statistics.
    pub stage2_faults: AtomicU64,
    /// Guest exits of every kind, per vCPU, for the statistics (`Vm::exit_totals`).
    pub exits: Vec<ExitStats>,
    /// Every VM of the machine (this one too), known once they are all built: doorbells
    /// reach their peers through it.
    pub peers: spin::Once<&'static [Vm]>,
}

/// Exit counters by cause (reported when the guest powers off).
#[derive(Default)]
pub struct ExitStats {
    pub irq: AtomicU64,
    pub hvc: AtomicU64,
    pub wfi: AtomicU64,
    pub sysreg: AtomicU64,
    pub mmio: AtomicU64,
    pub other: AtomicU64,
    /// List-register fills that scanned the vGIC model.
    pub lr_fills: AtomicU64,
}

impl ExitStats {
    /// Counts one. Each vCPU has its own counters and only the CPU running it writes them, so
    /// a plain load and store do (no atomic read-modify-write on the exit path); readers may
    /// see a count a moment old.
    #[inline(always)]
    pub fn count(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        [
            &self.irq,
            &self.hvc,
            &self.wfi,
            &self.sysreg,
            &self.mmio,
            &self.other,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

impl ExitStats {
    /// The sum of several vCPUs' counters.
    pub fn sum(all: &[ExitStats]) -> ExitStats {
        let total = ExitStats::default();
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.store(
                to.load(Ordering::Relaxed) + from.load(Ordering::Relaxed),
                Ordering::Relaxed,
            )
        };
        for s in all {
            add(&total.irq, &s.irq);
            add(&total.hvc, &s.hvc);
            add(&total.wfi, &s.wfi);
            add(&total.sysreg, &s.sysreg);
            add(&total.mmio, &s.mmio);
            add(&total.other, &s.other);
            add(&total.lr_fills, &s.lr_fills);
        }
        total
    }
}

impl core::fmt::Display for ExitStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "{} exits (irq {}, hvc/smc {}, wfi {}, sysreg {}, mmio {}, other {}), {} LR fills",
            self.total(),
            get(&self.irq),
            get(&self.hvc),
            get(&self.wfi),
            get(&self.sysreg),
            get(&self.mmio),
            get(&self.other),
            get(&self.lr_fills)
        )
    }
}

/// A VM's live statistics line (the console's statistics key), without `bulkhead: `.
pub struct LiveStats<'a>(&'a Vm);

impl core::fmt::Display for LiveStats<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let vm = self.0;
        let state = match vm.power.vm_state() {
            VmState::Running => "running",
            VmState::Off => "off",
            VmState::Resetting => "resetting",
        };
        write!(f, "{} {state}, ", vm.config.name)?;
        match vm.vmid.raw() {
            0 => write!(f, "no VMID yet")?,
            raw => {
                let mask = (1u64 << vm.config.vmid_bits) - 1;
                write!(
                    f,
                    "VMID {} (generation {})",
                    raw & mask,
                    raw >> vm.config.vmid_bits
                )?
            }
        }
        write!(
            f,
            ", {} vCPUs, {} stage-2 mapping faults, {}",
            vm.vcpus.len(),
            vm.stage2_faults.load(Ordering::Relaxed),
            ExitStats::sum(&vm.exits)
        )
    }
}

/// One vCPU's live statistics line: where it runs, its PSCI state, its exits.
pub struct LiveVcpuStats<'a>(&'a Vm, usize);

impl core::fmt::Display for LiveVcpuStats<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (vm, index) = (self.0, self.1);
        let state = match vm.power.power_state(index) {
            Some(PowerState::On) => "on",
            Some(PowerState::OnPending) => "starting",
            Some(PowerState::Off) | None => "off",
        };
        write!(
            f,
            "{} vcpu {index} on CPU {}: {state}, ",
            vm.config.name,
            vm.config.pcpus.get(index).copied().unwrap_or(usize::MAX)
        )?;
        match vm.exits.get(index) {
            Some(exits) => write!(f, "{exits}"),
            None => Ok(()),
        }
    }
}

impl Vm {
    /// Live statistics of the VM, for one console line.
    pub fn live_stats(&self) -> LiveStats<'_> {
        LiveStats(self)
    }

    /// Live statistics of vCPU `index`, for one console line.
    pub fn live_vcpu_stats(&self, index: usize) -> LiveVcpuStats<'_> {
        LiveVcpuStats(self, index)
    }
}

impl Vm {
    /// Builds a VM around an empty stage-2 table (`vtcr` is the VTCR_EL2 for its geometry).
    /// The table is marked live from the start — any vCPU may load it — so aarch64-paging
    /// checks break-before-make on every later update and invalidates what it replaces.
    pub fn new(
        id: usize,
        console: &'static Console,
        config: VmConfig,
        vtcr: u64,
        stage2: Stage2Map,
    ) -> Result<Self, VmError> {
        let mut mem = GuestMemoryMap::virt_guest(
            config.ram_size,
            config.ram_pa,
            config.gic,
            config.vcpu_count,
            config.gicv_pa,
        )
        .map_err(VmError::Layout)?;
        for region in &config.shared {
            mem.add_shared(region.ipa..region.ipa + region.size, region.host_pa)
                .map_err(VmError::Layout)?;
        }
        let vgic =
            Vgic::new(config.gic, config.vcpu_count, GUEST_SPI_COUNT).map_err(VmError::Vgic)?;
        let power = VmPower::new(config.vcpu_count, 0).map_err(VmError::Power)?;
        if config.pcpus.len() != config.vcpu_count {
            return Err(VmError::Placement);
        }
        let requests = config
            .pcpus
            .iter()
            .map(|&pcpu| {
                let r = VcpuRequests::new();
                r.set_pcpu(pcpu);
                r
            })
            .collect();
        let stage2_root = stage2.root_pa();
        stage2.mark_live();
        let config_vcpus = config.vcpu_count;
        Ok(Vm {
            id,
            console,
            config,
            mem,
            stage2: SpinLock::new(stage2),
            stage2_root,
            vgic_epoch: AtomicU64::new(0),
            vtcr,
            vmid: VmVmid::new(),
            vgic: SpinLock::new(vgic),
            uart: SpinLock::new(EmulatedPl011::new()),
            uart_line: core::sync::atomic::AtomicBool::new(false),
            rtc: SpinLock::new(EmulatedPl031::new()),
            rtc_line: core::sync::atomic::AtomicBool::new(false),
            rtc_deadline: AtomicU64::new(u64::MAX),
            power,
            vcpus: (0..config_vcpus)
                .map(|i| SpinLock::new(Vcpu::new(i)))
                .collect(),
            requests,
            boot: SpinLock::new(BootInfo::default()),
            generation: AtomicU64::new(1),
            stage2_faults: AtomicU64::new(0),
            exits: (0..config_vcpus).map(|_| ExitStats::default()).collect(),
            peers: spin::Once::new(),
        })
    }

    pub fn ram_ipas(&self) -> Range<u64> {
        GUEST_RAM_BASE..GUEST_RAM_BASE + self.config.ram_size
    }

    /// Host PA behind a guest RAM IPA range, if the whole range is RAM.
    fn ram_host_pa(&self, ipas: &Range<u64>) -> Option<u64> {
        let ram = self.ram_ipas();
        (ipas.start >= ram.start && ipas.end <= ram.end && ipas.start <= ipas.end)
            .then(|| self.config.ram_pa + (ipas.start - ram.start))
    }

    fn copy_to_guest(&self, p: &impl Platform, ipa: u64, bytes: &[u8]) -> Result<(), VmError> {
        let ipas = ipa..ipa + bytes.len() as u64;
        let pa =
            self.ram_host_pa(&ipas)
                .ok_or(VmError::Load(crate::loader::LoadError::DoesNotFit {
                    what: "image",
                    end: ipas.end,
                    ram_end: self.ram_ipas().end,
                }))?;
        // `write_ram` cleans to PoC: the guest starts with its MMU off (non-cacheable reads).
        p.write_ram(pa, bytes);
        Ok(())
    }

    /// (Re)loads kernel, initrd and DTB into guest RAM, QEMU `-kernel` style. The images are
    /// multiboot modules in host RAM that Bulkhead reserved (never given to a guest).
    pub fn load(&self, p: &impl Platform) -> Result<BootInfo, VmError> {
        let host_bytes = |range: PhysRange| p.host_ram(range.base, range.size);
        let kernel = host_bytes(self.config.kernel);
        let initrd = self.config.initrd.map(host_bytes);
        let ram = GuestRam {
            base: GUEST_RAM_BASE,
            size: self.config.ram_size,
        };
        let plan = plan_load(ram, kernel, initrd.map(|i| i.len())).map_err(VmError::Load)?;
        let shared: Vec<SharedMemNode<'_>> = self
            .config
            .shared
            .iter()
            .map(|r| SharedMemNode {
                id: &r.id,
                ipa: r.ipa,
                size: r.size,
            })
            .collect();
        let doorbells_out = doorbell_nodes(&self.config.doorbells_out);
        let doorbells_in = doorbell_nodes(&self.config.doorbells_in);
        // Fresh seeds every boot: a VM's RNG and KASLR never repeat across VMs or resets.
        let mut seed_bytes = [0u8; 72];
        let seeds = p.fill_random(&mut seed_bytes).then(|| {
            let mut rng_seed = [0u8; 64];
            rng_seed.copy_from_slice(&seed_bytes[..64]);
            let mut kaslr = [0u8; 8];
            kaslr.copy_from_slice(&seed_bytes[64..]);
            GuestSeeds {
                rng_seed,
                kaslr_seed: u64::from_le_bytes(kaslr),
            }
        });
        let dtb = build_guest_dtb(&GuestDtbConfig {
            vcpu_count: self.config.vcpu_count,
            ram_size: self.config.ram_size,
            gic: self.config.gic,
            bootargs: &self.config.bootargs,
            initrd: plan.initrd.clone(),
            shared: &shared,
            doorbells_out: &doorbells_out,
            doorbells_in: &doorbells_in,
            seeds: seeds.as_ref(),
        })
        .map_err(VmError::Dtb)?;
        log::debug!(
            "load: kernel at {:#x} ({} bytes), entry {:#x}, initrd {:x?}, dtb at {:#x}",
            plan.kernel.start,
            kernel.len(),
            plan.entry,
            plan.initrd,
            plan.dtb.start
        );
        self.copy_to_guest(p, plan.kernel.start, kernel)?;
        if let (Some(bytes), Some(range)) = (initrd, plan.initrd.as_ref()) {
            self.copy_to_guest(p, range.start, bytes)?;
        }
        self.copy_to_guest(p, plan.dtb.start, &dtb)?;
        let boot = BootInfo {
            entry: plan.entry,
            dtb_ipa: plan.dtb.start,
        };
        *self.boot.lock() = boot;
        Ok(boot)
    }

    /// Resets the VM after every vCPU stopped: stage 2 emptied, a fresh VMID (so no TLB entry
    /// of the old life can match; the old VMID is only reused after a rollover's broadcast
    /// invalidation), devices reset, images reloaded, the boot vCPU on and the others off
    /// (KVM/ARM: turn off vCPUs and flush stage 2 on system events, 2014).
    pub fn reset(&self, p: &impl Platform) -> Result<(), VmError> {
        self.stage2.lock().unmap_all().map_err(VmError::Layout)?;
        self.vmid.retire();
        self.vgic().reset();
        {
            let mut uart = self.uart.lock();
            uart.reset();
            self.uart_line.store(false, Ordering::Relaxed);
        }
        // The RTC keeps its time; its match interrupt goes back to reset (the vGIC reset
        // above dropped the line).
        self.rtc.lock().reset();
        self.rtc_line.store(false, Ordering::Relaxed);
        self.rtc_deadline.store(u64::MAX, Ordering::Relaxed);
        self.load(p)?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.power.restart(0).map_err(VmError::Power)?;
        Ok(())
    }

    /// Locks the vGIC for a change.
    pub fn vgic(&self) -> SpinGuard<'_, Vgic> {
        let guard = self.vgic.lock();
        self.vgic_epoch.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// Makes the vCPUs in `set` (that have a newly deliverable interrupt) notice it.
    pub fn kick_vcpus(&self, set: VcpuSet, kick: &impl Kick) {
        for target in set.iter() {
            if let Some(req) = self.requests.get(target) {
                make_request(req, Request::Wake, false, kick);
            }
        }
    }
}

fn doorbell_nodes(list: &[Doorbell]) -> Vec<DoorbellNode<'_>> {
    list.iter()
        .map(|d| DoorbellNode {
            peer: &d.peer,
            spi: d.spi,
        })
        .collect()
}
