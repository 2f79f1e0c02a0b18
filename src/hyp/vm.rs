//! A VM: its RAM (one contiguous host range, mapped lazily into stage 2), its emulated
//! devices, vGIC, PSCI power state, vCPU requests and VMID, and the images it boots from.
//! Plain Rust: the hardware it needs (copying images into RAM) comes through [`Platform`].

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use super::console::Console;
use super::context::FpState;
use super::lazy_image::{ImagePiece, LazyImages};
use super::lifecycle::ResetRate;
use super::platform::Platform;
use super::vcpu::Vcpu;
use crate::config::Lifecycle;
use crate::devices::pl011::EmulatedPl011;
use crate::devices::pl031::EmulatedPl031;
use crate::devices::wall_clock::WallClock;
use crate::dtb::PhysRange;
use crate::guest_dtb::{DoorbellNode, GuestDtbConfig, GuestSeeds, SharedMemNode, build_guest_dtb};
use crate::guest_layout::{GUEST_RAM_BASE, GicVersion, PL011_BASE};
use crate::loader::{self, GuestFormat, GuestRam, LoadError};
use crate::mm::stage2::{EmulatedDevice, GuestMemoryMap, Stage2Decision, Stage2Map};
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
    /// The home CPU of each vCPU (index = vCPU id): where it starts; it may move within `allowed`.
    pub pcpus: Vec<usize>,
    pub ram_size: u64,
    pub gic: GicVersion,
    /// Host PA of the guest's RAM.
    pub ram_pa: u64,
    pub kernel: PhysRange,
    /// How to take the kernel file (detected, or raw on request).
    pub format: GuestFormat,
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
    /// What happens when it powers off, reboots or crashes.
    pub lifecycle: Lifecycle,
    /// The counter's frequency: guest time for the reset limit's minute.
    pub counter_hz: u64,
    /// CNTVOFF_EL2 of every vCPU: the counter value at the VM's creation, so its virtual
    /// counter starts near 0 (as KVM and Xen do) and stays put across resets.
    pub cntvoff: u64,
    /// index = vCPU: the physical CPUs it may run on (`config::place`); its home is in `pcpus`.
    pub allowed: Vec<crate::config::CpuSet>,
    /// The largest SVE vector length EL1 may use, in bytes (None: no SVE): the size of each
    /// vCPU's FP state, allocated here rather than on its first FP trap.
    pub sve_vl_bytes: Option<usize>,
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
    Load(LoadError),
    /// The VM's RAM is not in the platform's guest RAM windows.
    RamWindow,
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
            Self::Load(e) => write!(f, "{e}"),
            Self::RamWindow => write!(f, "guest RAM is outside the hypervisor's RAM windows"),
            Self::Dtb(e) => write!(f, "guest DTB: {e}"),
            Self::Vgic(e) => write!(f, "vGIC: {e}"),
            Self::Power(e) => write!(f, "vCPU power state: {e}"),
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
    /// The vGIC model. Lock it through [`Vm::vgic`] (which marks it changed) except to read, to
    /// send SGIs ([`Vm::vgic_to_send_sgis`]), or to fold a vCPU's own SGIs and PPIs back from
    /// its list registers (the run loop). The rule behind the exceptions: a change must either
    /// bump `vgic_epoch` or post a `Wake` request to every vCPU it may give something to load,
    /// or a quiet vCPU skips its list-register fill and misses the interrupt.
    pub vgic: SpinLock<Vgic>,
    /// Bumped whenever the vGIC may have changed: a vCPU whose last list-register fill found
    /// nothing and saw this value since can skip the next fill (the null-exit fast path).
    pub vgic_epoch: AtomicU64,
    /// Stage-2 root table (never changes: reset empties it in place).
    pub stage2_root: u64,
    pub uart: SpinLock<EmulatedPl011>,
    /// The IPA of the PL011's data register when the stage-2 layout emulates the PL011 there
    /// (`GuestMemoryMap::decide`, fixed for the VM's life): the console fast path's address.
    pub uart_data_ipa: Option<u64>,
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
    /// Per vCPU: where it runs and for how long.
    pub run_stats: Vec<RunStats>,
    /// Every VM of the machine (this one too), known once they are all built: doorbells
    /// reach their peers through it.
    pub peers: spin::Once<&'static [Vm]>,
    /// Its recent restarts, for `bulkhead.reset_limit=` (only the vCPU driving a stop takes
    /// it).
    pub resets: SpinLock<ResetRate>,
    /// One bit per [`RAM_ZERO_BLOCK`] of guest RAM: set once the block was zeroed (or written
    /// by the loader, which zeroes it first). Kept across resets: a reset keeps the RAM.
    ram_used: Vec<AtomicU64>,
    /// The kernel Image and initrd parts not copied yet: each RAM block overlapping them is
    /// filled from the modules on its first stage-2 fault after a (re)load.
    images: LazyImages,
}

/// The granule in which guest RAM is zeroed on first use: the stage-2 block size, so the
/// first fault on a block zeroes exactly what it maps.
pub const RAM_ZERO_BLOCK: u64 = 2 << 20;

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

/// Where a vCPU runs and for how long (the statistics key): written by the physical CPU that
/// runs it, read by anyone.
pub struct RunStats {
    /// The physical CPU it runs on now, or ran on last.
    pub cpu: core::sync::atomic::AtomicUsize,
    /// Counter ticks it has spent on a shared CPU (a dedicated CPU does not count: it is all
    /// that vCPU's).
    pub shared_ticks: AtomicU64,
}

impl RunStats {
    fn new(home: usize) -> Self {
        Self {
            cpu: core::sync::atomic::AtomicUsize::new(home),
            shared_ticks: AtomicU64::new(0),
        }
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
            VmState::Stopping => "stopping",
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
        let run = vm.run_stats.get(index);
        write!(
            f,
            "{} vcpu {index} on CPU {}: {state}, ",
            vm.config.name,
            run.map_or(usize::MAX, |r| r.cpu.load(Ordering::Relaxed))
        )?;
        let ticks = run.map_or(0, |r| r.shared_ticks.load(Ordering::Relaxed));
        if ticks != 0 {
            write!(
                f,
                "ran {} ms (shared CPU), ",
                ticks.saturating_mul(1000) / vm.config.counter_hz.max(1)
            )?;
        }
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
        let sve_vl_bytes = config.sve_vl_bytes;
        let run_stats = config
            .pcpus
            .iter()
            .map(|&home| RunStats::new(home))
            .collect();
        let resets = ResetRate::new(config.lifecycle.reset_limit, config.counter_hz);
        let ram_blocks = config.ram_size.div_ceil(RAM_ZERO_BLOCK);
        let config_ram_size = config.ram_size;
        let uart_data_ipa = matches!(
            mem.decide(PL011_BASE),
            Stage2Decision::Emulate {
                device: EmulatedDevice::Pl011,
                offset: 0
            }
        )
        .then_some(PL011_BASE);
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
            uart_data_ipa,
            uart_line: core::sync::atomic::AtomicBool::new(false),
            rtc: SpinLock::new(EmulatedPl031::new()),
            rtc_line: core::sync::atomic::AtomicBool::new(false),
            rtc_deadline: AtomicU64::new(u64::MAX),
            power,
            vcpus: (0..config_vcpus)
                .map(|i| {
                    let mut vcpu = Vcpu::new(i);
                    vcpu.fp = FpState::new(sve_vl_bytes);
                    SpinLock::new(vcpu)
                })
                .collect(),
            requests,
            boot: SpinLock::new(BootInfo::default()),
            generation: AtomicU64::new(1),
            stage2_faults: AtomicU64::new(0),
            exits: (0..config_vcpus).map(|_| ExitStats::default()).collect(),
            run_stats,
            peers: spin::Once::new(),
            resets: SpinLock::new(resets),
            ram_used: (0..ram_blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            images: LazyImages::new(
                GUEST_RAM_BASE..GUEST_RAM_BASE + config_ram_size,
                RAM_ZERO_BLOCK,
            ),
        })
    }

    pub fn ram_ipas(&self) -> Range<u64> {
        GUEST_RAM_BASE..GUEST_RAM_BASE + self.config.ram_size
    }

    /// Loads the kernel into guest RAM and cleans what it wrote to PoC (the guest starts with
    /// its MMU off: its instruction fetches and data reads are non-cacheable). A kernel taken
    /// as it is (an Image, a raw binary) is only placed: its pieces go to `lazy`, copied on
    /// first touch; one that must be decoded (gzip, ELF) is written now.
    fn load_kernel(
        &self,
        p: &impl Platform,
        ram: GuestRam,
        lazy: &mut Vec<ImagePiece>,
    ) -> Result<loader::LoadedKernel, VmError> {
        let kernel = p.host_ram(self.config.kernel.base, self.config.kernel.size);
        if let Some(plan) = loader::plan_in_place(ram, kernel, self.config.format) {
            let loaded = plan.map_err(VmError::Load)?;
            lazy.extend(loaded.written.iter().map(|at| ImagePiece {
                ipas: at.clone(),
                src_pa: self.config.kernel.base,
                clean: true,
            }));
            return Ok(loaded);
        }
        let mut loaded = Err(VmError::RamWindow);
        let copy = |dst: &mut [u8], src: &[u8]| p.copy_ram(dst, src);
        p.with_guest_ram(self.config.ram_pa, ram.size, &mut |bytes| {
            loaded = loader::load_kernel(bytes, ram, kernel, self.config.format, &copy)
                .map_err(VmError::Load);
        });
        let loaded = loaded?;
        for range in &loaded.written {
            let pa = self.config.ram_pa + (range.start - ram.base);
            p.clean_ram_to_poc(pa, range.end - range.start);
        }
        // The rest of the blocks the kernel lands in (and its BSS, and whatever the loader
        // used as scratch below it) must read as zero too; what it wrote stays.
        let first = loaded
            .written
            .iter()
            .map(|r| r.start)
            .min()
            .unwrap_or(ram.base);
        let last = loaded
            .written
            .iter()
            .map(|r| r.end)
            .max()
            .unwrap_or(ram.base);
        self.zero_unused_ram_around(
            p,
            ram.base.min(first)..loaded.end.max(last),
            &loaded.written,
        );
        Ok(loaded)
    }
    /// Host PA behind a guest RAM IPA range, if the whole range is RAM.
    fn ram_host_pa(&self, ipas: &Range<u64>) -> Option<u64> {
        let ram = self.ram_ipas();
        (ipas.start >= ram.start && ipas.end <= ram.end && ipas.start <= ipas.end)
            .then(|| self.config.ram_pa + (ipas.start - ram.start))
    }

    /// Zeroes the guest RAM blocks overlapping `ipas` that were never used, and marks them
    /// used: a VM never sees what its host RAM held before (another VM's data, old host
    /// state). Callers: the loader's copy (no vCPU runs) and the stage-2 fault path (under
    /// the stage-2 lock), so no two callers race on a block. IPAs outside RAM are ignored.
    /// Returns whether it zeroed anything (zeroed RAM is clean to PoC already).
    pub fn zero_unused_ram(&self, p: &impl Platform, ipas: Range<u64>) -> bool {
        self.zero_unused_ram_around(p, ipas, &[])
    }

    /// Like [`Self::zero_unused_ram`] for the blocks overlapping `span`, but keeps the bytes in
    /// `keep` (what the loader just wrote there): only the rest of each never-used block is
    /// zeroed, so loading a 32 MiB kernel does not also zero 32 MiB first. Returns whether it
    /// zeroed any block.
    fn zero_unused_ram_around(
        &self,
        p: &impl Platform,
        span: Range<u64>,
        keep: &[Range<u64>],
    ) -> bool {
        let ram = self.ram_ipas();
        let start = span.start.max(ram.start);
        let end = span.end.min(ram.end);
        if start >= end {
            return false;
        }
        let mut zeroed = false;
        let first = (start - ram.start) / RAM_ZERO_BLOCK;
        let last = (end - 1 - ram.start) / RAM_ZERO_BLOCK;
        for block in first..=last {
            let Some(word) = self.ram_used.get((block / 64) as usize) else {
                break;
            };
            let bit = 1u64 << (block % 64);
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            let block_start = ram.start + block * RAM_ZERO_BLOCK;
            let block_end = (block_start + RAM_ZERO_BLOCK).min(ram.end);
            // The gaps of [block_start, block_end) between the kept ranges, in order.
            let mut kept: Vec<Range<u64>> = keep
                .iter()
                .map(|k| k.start.max(block_start)..k.end.min(block_end))
                .filter(|k| k.start < k.end)
                .collect();
            kept.sort_by_key(|k| k.start);
            let mut at = block_start;
            for k in kept.iter().chain(core::iter::once(&(block_end..block_end))) {
                if k.start > at {
                    p.zero_ram(self.config.ram_pa + (at - ram.start), k.start - at);
                }
                at = at.max(k.end);
            }
            word.fetch_or(bit, Ordering::AcqRel);
            zeroed = true;
        }
        zeroed
    }

    /// Makes guest RAM `ipas` (a stage-2 fault's block or page) ready to be mapped, under the
    /// stage-2 lock. Per 2 MiB block: its image parts are copied from the modules if it waits
    /// for them (the rest zeroed if never used, otherwise the whole block cleaned); a block
    /// never used is zeroed (which cleans to PoC); any other is cleaned to PoC, since the
    /// guest may run with its MMU off and no stale dirty line may hide its memory. False if
    /// `ipas` is not guest RAM (a shared window: the caller cleans it).
    pub fn prepare_first_touch(&self, p: &impl Platform, ipas: Range<u64>) -> bool {
        let Some(pa) = self.ram_host_pa(&ipas) else {
            return false;
        };
        let host_pa = |ipa: u64| pa + (ipa - ipas.start);
        for block in self.images.blocks(&ipas) {
            let pieces = self.images.pieces(block);
            let bit = 1u64 << (block % 64);
            let Some(word) = self.ram_used.get((block / 64) as usize) else {
                break;
            };
            let used = word.load(Ordering::Acquire) & bit != 0;
            let block_ipas = self.images.block_ipas(block);
            if pieces.is_empty() {
                if !used {
                    self.zero_unused_ram(p, block_ipas);
                } else {
                    let start = block_ipas.start.max(ipas.start);
                    let end = block_ipas.end.min(ipas.end);
                    p.clean_ram_to_poc(host_pa(start), end - start);
                }
                continue;
            }
            if !used {
                let keep: Vec<Range<u64>> = pieces.iter().map(|p| p.ipas.clone()).collect();
                self.zero_unused_ram_around(p, block_ipas.clone(), &keep);
            }
            let block_pa = self.config.ram_pa + (block_ipas.start - GUEST_RAM_BASE);
            for piece in &pieces {
                let len = piece.ipas.end - piece.ipas.start;
                let src = p.host_ram(piece.src_pa, len);
                let dst = block_pa + (piece.ipas.start - block_ipas.start);
                if src.len() as u64 != len {
                    // The platform refused the module (it checked them when the VM was
                    // built, so never in practice): zeroes, never what the RAM held.
                    p.zero_ram(dst, len);
                    continue;
                }
                p.with_guest_ram(dst, len, &mut |bytes| p.copy_ram(bytes, src));
                if !used && piece.clean {
                    p.clean_ram_to_poc(dst, len);
                }
            }
            if used {
                // The guest's last life may have left dirty lines anywhere in it.
                p.clean_ram_to_poc(block_pa, block_ipas.end - block_ipas.start);
            }
            // Only now: `read_ram_u64` never sees the block half filled.
            self.images.mark_filled(block);
        }
        true
    }

    /// The 64-bit word at guest RAM IPA `ipa` (a stage-1 descriptor), if `ipa` is RAM.
    /// None for a block the guest never touched (it holds old host RAM or waits for its
    /// image part).
    pub fn read_ram_u64(&self, p: &impl Platform, ipa: u64) -> Option<u64> {
        let pa = self.ram_host_pa(&(ipa..ipa.checked_add(8)?))?;
        let block = (ipa - GUEST_RAM_BASE) / RAM_ZERO_BLOCK;
        let used = self
            .ram_used
            .get((block / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (block % 64)) != 0);
        if !used || self.images.is_pending(block) {
            return None;
        }
        p.guest_ram_u64(pa)
    }

    /// Cleans and invalidates to PoC every block of guest RAM ever used: the whole-cache
    /// effect of a set/way operation, done by VA (KVM's `kvm_set_way_flush` /
    /// `stage2_flush_vm`), since set/way operations only reach the physical CPU's own caches.
    pub fn clean_used_ram(&self, p: &impl Platform) {
        for (index, word) in self.ram_used.iter().enumerate() {
            let mut bits = word.load(Ordering::Acquire);
            while bits != 0 {
                let block = index as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let offset = block * RAM_ZERO_BLOCK;
                let size = RAM_ZERO_BLOCK.min(self.config.ram_size.saturating_sub(offset));
                p.clean_ram_to_poc(self.config.ram_pa + offset, size);
            }
        }
    }

    fn copy_to_guest(&self, p: &impl Platform, ipa: u64, bytes: &[u8]) -> Result<(), VmError> {
        let ipas = ipa..ipa + bytes.len() as u64;
        let pa =
            self.ram_host_pa(&ipas)
                .ok_or(VmError::Load(crate::loader::LoadError::DoesNotFit {
                    what: "DTB",
                    start: ipas.start,
                    end: ipas.end,
                    ram_end: self.ram_ipas().end,
                }))?;
        // The rest of each block the image lands in must read as zero too.
        self.zero_unused_ram(p, ipas);
        // `write_ram` cleans to PoC: the guest starts with its MMU off (non-cacheable reads).
        p.write_ram(pa, bytes);
        Ok(())
    }

    /// (Re)loads kernel, initrd and DTB into guest RAM, QEMU `-kernel` style. The images are
    /// multiboot modules in host RAM that Bulkhead reserved (never given to a guest).
    pub fn load(&self, p: &impl Platform) -> Result<BootInfo, VmError> {
        let initrd_len = self.config.initrd.map(|r| r.size as usize);
        let ram = GuestRam {
            base: GUEST_RAM_BASE,
            size: self.config.ram_size,
        };
        let mut lazy = Vec::new();
        let kernel = self.load_kernel(p, ram, &mut lazy)?;
        let (initrd_at, dtb_at) =
            loader::place_initrd_and_dtb(ram, kernel.end, initrd_len).map_err(VmError::Load)?;
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
            initrd: initrd_at.clone(),
            shared: &shared,
            doorbells_out: &doorbells_out,
            doorbells_in: &doorbells_in,
            seeds: seeds.as_ref(),
        })
        .map_err(VmError::Dtb)?;
        log::debug!(
            "load: {} entry {:#x}, kernel ends {:#x}, initrd {:x?}, dtb at {:#x}",
            kernel.kind,
            kernel.entry,
            kernel.end,
            initrd_at,
            dtb_at.start
        );
        if let (Some(module), Some(range)) = (self.config.initrd, initrd_at.as_ref()) {
            // Copied on first touch, not cleaned: Linux reads its initrd with caches on.
            lazy.push(ImagePiece {
                ipas: range.clone(),
                src_pa: module.base,
                clean: false,
            });
        }
        // No vCPU runs: every block of the images waits for its part again (a reset reloads
        // them from the pristine modules on next touch).
        self.images.plan(lazy);
        // Cleaned to PoC: a guest may read its DTB with the MMU off.
        self.copy_to_guest(p, dtb_at.start, &dtb)?;
        let boot = BootInfo {
            entry: kernel.entry,
            dtb_ipa: dtb_at.start,
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

    /// Locks the vGIC to send SGIs (ICC_SGI*R_EL1, GICv2's GICD_SGIR), a change that can make
    /// an interrupt loadable only for the vCPUs it returns: a quiet vCPU has nothing active,
    /// so a newly pending SGI is loadable there only if deliverable, and then it is in the
    /// returned set. [`Vm::kick_vcpus`] posts each a `Wake` request, which makes it refill its
    /// list registers (`Vcpu::take_requests_noted`). Unlike [`Vm::vgic`], the epoch stays, so
    /// the sender and the other vCPUs do not refill for nothing (the sender of every IPI did).
    pub fn vgic_to_send_sgis(&self) -> SpinGuard<'_, Vgic> {
        self.vgic.lock()
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

#[cfg(test)]
mod load_tests {
    //! `Vm::load` against the recording fake platform: what lands in guest RAM, and what is
    //! cleaned to PoC (the kernel and the DTB, which a guest may read with its MMU off; not the
    //! initrd, which Linux reads with its caches on).
    use super::*;
    use crate::hyp::console_mux::DEFAULT_ESCAPE;
    use crate::hyp::platform::fake::FakePlatform;
    use crate::mm::stage2::stage2_geometry;
    use alloc::boxed::Box;
    use alloc::string::ToString;
    use alloc::vec;

    const RAM_PA: u64 = 0x8_0000_0000;
    const RAM_SIZE: u64 = 64 << 20;
    /// Host PAs of the images, right above the VM's RAM.
    const KERNEL_PA: u64 = RAM_PA + RAM_SIZE;
    const INITRD_PA: u64 = KERNEL_PA + (4 << 20);

    /// A VM whose kernel module holds `kernel` and whose initrd module holds `initrd`.
    fn vm_and_platform(kernel: &[u8], initrd: &[u8]) -> (Vm, FakePlatform) {
        let p = FakePlatform::default();
        let mut host = vec![0u8; (RAM_SIZE + (8 << 20)) as usize];
        let at = |pa: u64| (pa - RAM_PA) as usize;
        host[at(KERNEL_PA)..at(KERNEL_PA) + kernel.len()].copy_from_slice(kernel);
        host[at(INITRD_PA)..at(INITRD_PA) + initrd.len()].copy_from_slice(initrd);
        *p.ram.borrow_mut() = (RAM_PA, host);
        let config = VmConfig {
            name: String::from("domU1"),
            vcpu_count: 1,
            pcpus: vec![0],
            ram_size: RAM_SIZE,
            gic: GicVersion::V3,
            ram_pa: RAM_PA,
            kernel: PhysRange {
                base: KERNEL_PA,
                size: kernel.len() as u64,
            },
            format: GuestFormat::Detect,
            initrd: Some(PhysRange {
                base: INITRD_PA,
                size: initrd.len() as u64,
            }),
            bootargs: String::from("console=ttyAMA0"),
            gicv_pa: None,
            clock: crate::devices::wall_clock::WallClock::new(0, 0, 62_500_000),
            vmid_bits: 8,
            shared: Vec::new(),
            doorbells_out: Vec::new(),
            doorbells_in: Vec::new(),
            lifecycle: Lifecycle::default(),
            counter_hz: 62_500_000,
            cntvoff: 0,
            allowed: Vec::new(),
            sve_vl_bytes: None,
        };
        let geometry = stage2_geometry(4, 40).unwrap();
        let stage2 = Stage2Map::new_linear(&geometry, 0);
        let names = vec![String::from("domU1")];
        let console = Box::leak(Box::new(Console::new(names, DEFAULT_ESCAPE, 1000)));
        let vm = Vm::new(0, console, config, geometry.vtcr_el2(false), stage2).unwrap();
        (vm, p)
    }

    /// An arm64 Image of `len` bytes (text_offset 0, image_size 2 MiB) with varied contents.
    fn image(len: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        bytes[0x08..0x10].copy_from_slice(&0u64.to_le_bytes());
        bytes[0x10..0x18].copy_from_slice(&(2u64 << 20).to_le_bytes());
        bytes[0x18..0x20].copy_from_slice(&0b1010u64.to_le_bytes());
        bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
        bytes
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn vm_load_inflates_a_gzip_image_and_cleans_only_kernel_and_dtb() {
        let kernel = image(100_000);
        let initrd = vec![0x5a; 5000];
        let (vm, p) = vm_and_platform(&gzip(&kernel), &initrd);
        let boot = vm.load(&p).unwrap();
        assert_eq!(boot.entry, GUEST_RAM_BASE);
        // The initrd waits in its module for the guest's first touch.
        touch(&vm, &p, 32 << 20);
        let ram = p.ram.borrow();
        assert_eq!(&ram.1[..kernel.len()], &kernel[..]);
        // RAM 64 MiB: the initrd goes at RAM base + 32 MiB, the DTB at the next 2 MiB.
        let initrd_off = 32 << 20;
        assert_eq!(&ram.1[initrd_off..initrd_off + initrd.len()], &initrd[..]);
        assert_eq!(boot.dtb_ipa, GUEST_RAM_BASE + (34 << 20));
        let dtb_pa = RAM_PA + (34 << 20);
        assert_eq!(&ram.1[34 << 20..(34 << 20) + 4], &[0xd0, 0x0d, 0xfe, 0xed]);
        let cleaned = p.cleaned.borrow();
        assert_eq!(cleaned[0], (RAM_PA, kernel.len() as u64));
        assert_eq!(
            cleaned.len(),
            1,
            "only the kernel via clean_ram_to_poc: {cleaned:x?}"
        );
        // The DTB went through write_ram (copy + clean), the initrd through neither.
        assert!(!cleaned.iter().any(|&(pa, _)| pa == dtb_pa));
    }

    #[test]
    fn vm_load_zeroes_old_host_ram_around_kernel_initrd_and_dtb_but_keeps_them() {
        let kernel = image(100_000);
        let initrd = vec![0x5a; 5000];
        let (vm, p) = vm_and_platform(&gzip(&kernel), &initrd);
        // Whatever the host RAM held before: not the guest's to see.
        p.ram.borrow_mut().1[..RAM_SIZE as usize].fill(0xee);
        let boot = vm.load(&p).unwrap();
        touch(&vm, &p, 32 << 20);
        let ram = p.ram.borrow();
        let ram = &ram.1[..RAM_SIZE as usize];
        assert_eq!(&ram[..kernel.len()], &kernel[..]);
        let initrd_off = 32 << 20;
        assert_eq!(&ram[initrd_off..initrd_off + initrd.len()], &initrd[..]);
        let dtb_off = (boot.dtb_ipa - GUEST_RAM_BASE) as usize;
        assert_eq!(&ram[dtb_off..dtb_off + 4], &[0xd0, 0x0d, 0xfe, 0xed]);
        // The rest of each block that was loaded into reads as zero...
        let zero = |r: core::ops::Range<usize>| ram[r].iter().all(|&b| b == 0);
        assert!(zero(kernel.len()..2 << 20), "after the kernel");
        assert!(
            zero(initrd_off + initrd.len()..initrd_off + (2 << 20)),
            "after the initrd"
        );
        let dtb_end = dtb_off + crate::loader::GUEST_DTB_MAX_SIZE as usize;
        assert!(zero(dtb_end - 16..dtb_off + (2 << 20)), "after the DTB");
        // ... and blocks nobody loaded into wait for their first stage-2 map.
        assert!(ram[4 << 20..6 << 20].iter().all(|&b| b == 0xee));
    }

    /// The guest's first stage-2 fault in the block at RAM offset `offset` (as `handle::abort`
    /// makes it).
    fn touch(vm: &Vm, p: &FakePlatform, offset: u64) {
        let ipa = GUEST_RAM_BASE + offset;
        assert!(vm.prepare_first_touch(p, ipa..ipa + RAM_ZERO_BLOCK));
    }

    const MB: usize = 1 << 20;

    #[test]
    fn vm_load_leaves_an_image_and_initrd_in_their_modules_until_first_touch() {
        // An Image over two blocks and a bit; an initrd not block aligned at its end.
        let kernel = image(2 * MB + 300_000);
        let initrd: Vec<u8> = (0..3 * MB + 5).map(|i| (i % 251) as u8 ^ 0x5a).collect();
        let (vm, p) = vm_and_platform(&kernel, &initrd);
        p.ram.borrow_mut().1[..RAM_SIZE as usize].fill(0xee);
        let boot = vm.load(&p).unwrap();
        assert_eq!(boot.entry, GUEST_RAM_BASE);
        {
            let ram = p.ram.borrow();
            assert!(
                ram.1[..4 * MB].iter().all(|&b| b == 0xee),
                "kernel not copied"
            );
            let initrd_off = 32 * MB;
            assert!(
                ram.1[initrd_off..initrd_off + 4 * MB]
                    .iter()
                    .all(|&b| b == 0xee)
            );
            assert_eq!(
                &ram.1[36 * MB..36 * MB + 4],
                &[0xd0, 0x0d, 0xfe, 0xed],
                "DTB"
            );
        }
        assert!(
            p.cleaned.borrow().is_empty(),
            "nothing cleaned before first touch"
        );
        p.zeroed.borrow_mut().clear();

        // The kernel's first block: all of it kernel, cleaned to PoC, nothing zeroed.
        touch(&vm, &p, 0);
        assert_eq!(&p.ram.borrow().1[..2 * MB], &kernel[..2 * MB]);
        assert_eq!(*p.cleaned.borrow(), vec![(RAM_PA, 2 << 20)]);
        assert!(p.zeroed.borrow().is_empty());
        p.cleaned.borrow_mut().clear();

        // Its second: the rest of the kernel (cleaned: only what was copied), then zeroes.
        touch(&vm, &p, 2 << 20);
        {
            let ram = p.ram.borrow();
            assert_eq!(&ram.1[2 * MB..kernel.len()], &kernel[2 * MB..]);
            assert!(ram.1[kernel.len()..4 * MB].iter().all(|&b| b == 0));
        }
        assert_eq!(
            *p.cleaned.borrow(),
            vec![(RAM_PA + (2 << 20), kernel.len() as u64 - (2 << 20))]
        );
        assert_eq!(
            *p.zeroed.borrow(),
            vec![(
                RAM_PA + kernel.len() as u64,
                (4 << 20) - kernel.len() as u64
            )]
        );
        p.cleaned.borrow_mut().clear();

        // The initrd's last block: its tail, then zeroes; not cleaned (read with caches on).
        touch(&vm, &p, 34 << 20);
        {
            let ram = p.ram.borrow();
            let tail = 34 * MB..32 * MB + initrd.len();
            assert_eq!(&ram.1[tail.clone()], &initrd[2 * MB..]);
            assert!(ram.1[tail.end..36 * MB].iter().all(|&b| b == 0));
        }
        assert!(p.cleaned.borrow().is_empty());

        // A block beyond the images is zeroed as before.
        touch(&vm, &p, 8 << 20);
        assert!(p.ram.borrow().1[8 * MB..10 * MB].iter().all(|&b| b == 0));
        // Never touched: still what the host RAM held, never copied.
        assert!(
            p.ram.borrow().1[32 * MB..34 * MB]
                .iter()
                .all(|&b| b == 0xee)
        );
    }

    #[test]
    fn a_reset_reloads_touched_image_blocks_on_their_next_touch() {
        let kernel = image(2 * MB + 4096);
        let initrd = vec![0x5a; 5000];
        let (vm, p) = vm_and_platform(&kernel, &initrd);
        vm.load(&p).unwrap();
        touch(&vm, &p, 0);
        touch(&vm, &p, 2 << 20);
        // The guest writes over its kernel and the zeroes after it.
        p.ram.borrow_mut().1[..4 * MB].fill(0x77);
        p.cleaned.borrow_mut().clear();
        p.zeroed.borrow_mut().clear();
        // What `Vm::reset` does to the images once stage 2 is emptied.
        vm.load(&p).unwrap();
        assert!(
            p.ram.borrow().1[..4 * MB].iter().all(|&b| b == 0x77),
            "reloaded on touch"
        );
        touch(&vm, &p, 2 << 20);
        {
            let ram = p.ram.borrow();
            assert_eq!(&ram.1[2 * MB..kernel.len()], &kernel[2 * MB..]);
            // The guest's own old data after the kernel stays (it is this VM's), as it did
            // when the whole kernel was copied at reset.
            assert!(ram.1[kernel.len()..4 * MB].iter().all(|&b| b == 0x77));
        }
        // Used before: the whole block is cleaned (dirty lines of the last life), no zeroing.
        assert_eq!(*p.cleaned.borrow(), vec![(RAM_PA + (2 << 20), 2 << 20)]);
        assert!(p.zeroed.borrow().is_empty());
        touch(&vm, &p, 0);
        assert_eq!(&p.ram.borrow().1[..2 * MB], &kernel[..2 * MB]);
        // Touched again in the same life: only cleaned, the guest's writes kept.
        p.ram.borrow_mut().1[..16].fill(0x11);
        touch(&vm, &p, 0);
        assert_eq!(&p.ram.borrow().1[..16], &[0x11; 16]);
        // The module itself is pristine.
        assert_eq!(
            p.host_ram(KERNEL_PA, kernel.len() as u64),
            &kernel[..],
            "module untouched"
        );
    }

    #[test]
    fn a_gzip_kernel_is_still_written_at_load() {
        let kernel = image(100_000);
        let (vm, p) = vm_and_platform(&gzip(&kernel), b"x");
        vm.load(&p).unwrap();
        assert_eq!(&p.ram.borrow().1[..kernel.len()], &kernel[..]);
        p.cleaned.borrow_mut().clear();
        // Its block waits for nothing: a touch only cleans it.
        touch(&vm, &p, 0);
        assert_eq!(&p.ram.borrow().1[..kernel.len()], &kernel[..]);
        assert_eq!(*p.cleaned.borrow(), vec![(RAM_PA, 2 << 20)]);
    }

    #[test]
    fn the_walk_level_reader_sees_no_untouched_block() {
        let kernel = image(2 * MB);
        let (vm, p) = vm_and_platform(&kernel, b"x");
        vm.load(&p).unwrap();
        assert_eq!(vm.read_ram_u64(&p, GUEST_RAM_BASE + 0x40), None);
        assert_eq!(vm.read_ram_u64(&p, GUEST_RAM_BASE + (8 << 20)), None);
        touch(&vm, &p, 0);
        let word = u64::from_le_bytes(kernel[0x40..0x48].try_into().unwrap());
        assert_eq!(vm.read_ram_u64(&p, GUEST_RAM_BASE + 0x40), Some(word));
    }

    #[test]
    fn vm_load_refuses_garbage_in_one_line() {
        let (vm, p) = vm_and_platform(b"\x00\x01\x02\x03 not a kernel", b"x");
        let err = vm.load(&p).unwrap_err().to_string();
        assert_eq!(
            err.split(" (not an").next().unwrap(),
            "kernel is not a bootable image: saw unknown header 00 01 02 03 20 6e 6f 74 in 17 bytes"
        );
    }
}
