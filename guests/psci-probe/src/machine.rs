//! What the probe learns about its machine: the DTB in x0 (RAM, CPU ids, bootargs), its own
//! MPIDR, the generic counter, and the boot record that survives SYSTEM_RESET.

use core::arch::asm;

use fdt::Fdt;
use psci_probe::bootargs::{number as bootarg_number, parse_number};
use psci_probe::peers::Peers;
use psci_probe::pingpong;

/// Guest RAM base on virt and on Bulkhead's virt-like machine.
pub const RAM_BASE: u64 = 0x4000_0000;
/// RAM size assumed when the DTB gives none (the smallest guest the probe supports).
pub const RAM_SIZE_FALLBACK: u64 = 64 << 20;
/// MPIDR_EL1 affinity fields Aff3 (39:32) and Aff2..Aff0 (23:0), the PSCI target format.
const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;
/// Bootarg asking for that many SYSTEM_RESET cycles before the final SYSTEM_OFF.
const REBOOTS_ARG: &str = "probe.reboots=";
/// Bootarg asking for a check of that many MiB of RAM across resets (see memcheck.rs).
const MEMCHECK_ARG: &str = "probe.memcheck=";
/// Bootarg asking for that many hostile operations before the checks (see chaos.rs).
const CHAOS_ARG: &str = "probe.chaos=";
/// Bootarg seeding the chaos generator (decimal or 0x-hex).
const SEED_ARG: &str = "probe.seed=";
/// Bootarg `probe.chaos_trace=1`: print every hostile operation before doing it.
const CHAOS_TRACE_ARG: &str = "probe.chaos_trace=";
/// Bootarg `probe.chaos_skip=K`: generate but do not perform operations 0..K (to bisect a
/// failing seed down to the operations that matter).
const CHAOS_SKIP_ARG: &str = "probe.chaos_skip=";
/// Bootarg `probe.chaos_only=a,b-c,..`: perform only the operations with these indices or in
/// these inclusive ranges.
const CHAOS_ONLY_ARG: &str = "probe.chaos_only=";
/// Most indices `probe.chaos_only=` takes.
pub const CHAOS_ONLY_MAX: usize = 16;
/// Bootarg `probe.touch_ipa=ADDR`: one load from an IPA that must abort (another VM's RAM,
/// a region not shared with this VM).
const TOUCH_IPA_ARG: &str = "probe.touch_ipa=";
/// Crash on purpose, one of the ways of crash.rs.
const CRASH_ARG: &str = "probe.crash=";
/// Bootarg `probe.zeroed_ram=1`: check that RAM nothing was loaded into reads as zero.
const ZEROED_RAM_ARG: &str = "probe.zeroed_ram=";
/// Seed used when `probe.seed=` is absent.
const DEFAULT_SEED: u64 = 0x5EED_C4A0_5000_0001;
/// PL011 base on QEMU virt, used when the DTB names none.
const PL011_FALLBACK: MmioWindow = MmioWindow {
    kind: WindowKind::Pl011,
    base: 0x0900_0000,
    size: 0x1000,
};

/// Which device an MMIO window belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WindowKind {
    GicDistributor,
    /// GICv3 redistributors: RD + SGI frame (0x20000) per vCPU.
    GicRedistributors,
    /// GICv2 CPU interface.
    GicCpuInterface,
    Pl011,
}

/// One device window from the DTB.
#[derive(Clone, Copy, Debug)]
pub struct MmioWindow {
    pub kind: WindowKind,
    pub base: u64,
    pub size: u64,
}

impl MmioWindow {
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
}

/// The chaos request from /chosen/bootargs.
#[derive(Clone, Copy, Default)]
pub struct ChaosConfig {
    /// `probe.chaos=N`: hostile operations to perform (0 = none).
    pub ops: u64,
    pub seed: u64,
    pub trace: bool,
    /// Operations 0..skip are generated but not performed.
    pub skip: u64,
    /// When `only_count > 0`, only the operations in these inclusive ranges are performed.
    pub only: [(u64, u64); CHAOS_ONLY_MAX],
    pub only_count: usize,
}

/// Facts from the DTB, or fallbacks when x0 held none.
pub struct Machine {
    /// Whether x0 pointed at a valid FDT.
    pub dtb_valid: bool,
    pub dtb_addr: u64,
    pub dtb_size: u64,
    pub ram_base: u64,
    pub ram_size: u64,
    /// Whether `ram_base`/`ram_size` come from the DTB's memory node (not the fallback).
    pub ram_from_dtb: bool,
    /// `[start, end)` of the initrd from /chosen, if the DTB names one.
    pub initrd: Option<(u64, u64)>,
    /// `reg` of a CPU node other than the probe's own, if the DTB lists one.
    pub other_cpu: Option<u64>,
    pub cpu_count: usize,
    /// `probe.reboots=N` from /chosen/bootargs (0 when absent).
    pub reboots: u32,
    /// `probe.memcheck=MIB` from /chosen/bootargs (0 when absent).
    pub memcheck_mib: u64,
    pub chaos: ChaosConfig,
    /// GIC version from the interrupt controller's compatible (0 when unknown).
    pub gic_version: u8,
    /// The device windows the DTB names: GIC frames and the PL011 (`None` = absent).
    pub windows: [Option<MmioWindow>; 4],
    /// Shared memory and doorbells the DTB describes.
    pub peers: Peers<'static>,
    /// `probe.pingpong=` and `probe.pingpong_rounds=`.
    pub pingpong: Option<pingpong::Config<'static>>,
    /// `probe.touch_ipa=ADDR`.
    pub touch_ipa: Option<u64>,
    /// `probe.crash=runaway|pvpanic` (crash.rs).
    pub crash: Option<&'static str>,
    /// The pvpanic register (`qemu,pvpanic-mmio`), if the DTB has one.
    pub pvpanic: Option<u64>,
    /// `probe.zeroed_ram=1`.
    pub zeroed_ram_check: bool,
    /// /chosen/bootargs, whole (empty when absent).
    pub bootargs: &'static str,
}

impl Machine {
    /// Reads the DTB at `dtb_addr` (x0 at entry).
    pub fn probe(dtb_addr: u64) -> Self {
        let mut machine = Machine {
            dtb_valid: false,
            dtb_addr,
            dtb_size: 0,
            ram_base: RAM_BASE,
            ram_size: RAM_SIZE_FALLBACK,
            ram_from_dtb: false,
            initrd: None,
            other_cpu: None,
            cpu_count: 1,
            reboots: 0,
            memcheck_mib: 0,
            chaos: ChaosConfig {
                seed: DEFAULT_SEED,
                ..ChaosConfig::default()
            },
            gic_version: 0,
            windows: [Some(PL011_FALLBACK), None, None, None],
            peers: Peers::default(),
            pingpong: None,
            touch_ipa: None,
            crash: None,
            pvpanic: None,
            zeroed_ram_check: false,
            bootargs: "",
        };
        // The DTB must be in RAM and 8-byte aligned (arm64 boot protocol).
        if dtb_addr < RAM_BASE || !dtb_addr.is_multiple_of(8) {
            return machine;
        }
        // SAFETY: x0 is the loader's DTB pointer; `from_ptr` checks the magic and reads only
        // `totalsize` bytes, and nothing in the probe writes to that range, so borrowing it
        // for 'static is sound.
        let Ok(fdt) = (unsafe { Fdt::<'static>::from_ptr(dtb_addr as *const u8) }) else {
            return machine;
        };
        machine.dtb_valid = true;
        machine.dtb_size = fdt.total_size() as u64;
        // `Fdt::memory()` panics when there is no memory node: look first.
        if fdt.find_node("/memory").is_some()
            && let Some(region) = fdt.memory().regions().next()
        {
            machine.ram_base = region.starting_address as u64;
            machine.ram_size = region.size.unwrap_or(0) as u64;
            machine.ram_from_dtb = true;
        }
        let own = own_mpidr();
        machine.cpu_count = 0;
        for cpu in fdt.cpus() {
            machine.cpu_count += 1;
            let id = cpu.ids().first() as u64;
            if id != own && machine.other_cpu.is_none() {
                machine.other_cpu = Some(id);
            }
        }
        if fdt.find_node("/chosen").is_some()
            && let Some(args) = fdt.chosen().bootargs()
        {
            machine.reboots = parse_reboots(args);
            machine.memcheck_mib = bootarg_number(args, MEMCHECK_ARG).unwrap_or(0);
            machine.chaos = parse_chaos(args);
            machine.pingpong = pingpong::Config::from_bootargs(args);
            machine.touch_ipa = bootarg_number(args, TOUCH_IPA_ARG);
            machine.crash = psci_probe::bootargs::value(args, CRASH_ARG);
            machine.zeroed_ram_check = bootarg_number(args, ZEROED_RAM_ARG).is_some_and(|v| v != 0);
            machine.bootargs = args;
        }
        machine.pvpanic = fdt
            .find_compatible(&["qemu,pvpanic-mmio"])
            .and_then(|n| n.reg()?.next())
            .map(|r| r.starting_address as u64);
        if let Some(chosen) = fdt.find_node("/chosen") {
            let prop = |name| chosen.property(name).and_then(|p| p.as_usize());
            if let (Some(start), Some(end)) = (prop("linux,initrd-start"), prop("linux,initrd-end"))
            {
                machine.initrd = Some((start as u64, end as u64));
            }
        }
        machine.read_windows(&fdt);
        machine.peers = Peers::from_fdt(&fdt);
        machine
    }

    /// The GIC and PL011 windows: `reg` of the GIC node (v3: GICD, GICR; v2: GICD, GICC) and
    /// of the first PL011.
    fn read_windows(&mut self, fdt: &Fdt) {
        let regs = |node: fdt::node::FdtNode| {
            let mut out = [None; 2];
            if let Some(reg) = node.reg() {
                for (slot, region) in out.iter_mut().zip(reg) {
                    *slot = Some((
                        region.starting_address as u64,
                        region.size.unwrap_or(0) as u64,
                    ));
                }
            }
            out
        };
        let window =
            |kind, reg: Option<(u64, u64)>| reg.map(|(base, size)| MmioWindow { kind, base, size });
        if let Some(gic) = fdt.find_compatible(&["arm,gic-v3"]) {
            let [d, r] = regs(gic);
            self.gic_version = 3;
            self.windows[1] = window(WindowKind::GicDistributor, d);
            self.windows[2] = window(WindowKind::GicRedistributors, r);
        } else if let Some(gic) =
            fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic"])
        {
            let [d, c] = regs(gic);
            self.gic_version = 2;
            self.windows[1] = window(WindowKind::GicDistributor, d);
            self.windows[3] = window(WindowKind::GicCpuInterface, c);
        }
        if let Some(uart) = fdt.find_compatible(&["arm,pl011"])
            && let [Some(reg), _] = regs(uart)
        {
            self.windows[0] = window(WindowKind::Pl011, Some(reg));
        }
    }

    /// The device window of `kind`, if the DTB describes one.
    pub fn window(&self, kind: WindowKind) -> Option<MmioWindow> {
        self.windows
            .iter()
            .flatten()
            .find(|w| w.kind == kind)
            .copied()
    }

    /// The PL011's base: the DTB's, else QEMU virt's.
    pub fn uart_base(&self) -> u64 {
        self.window(WindowKind::Pl011)
            .map_or(0x0900_0000, |w| w.base)
    }

    /// The device window holding `addr`, if any.
    pub fn window_at(&self, addr: u64) -> Option<MmioWindow> {
        self.windows
            .iter()
            .flatten()
            .find(|w| w.contains(addr))
            .copied()
    }

    /// Whether `[addr, addr + len)` overlaps the DTB or the probe image (code, data, stacks):
    /// memory the chaos must never write.
    pub fn is_probe_memory(&self, addr: u64, len: u64) -> bool {
        self.overlaps_loaded_data(addr, len)
    }

    pub fn ram_end(&self) -> u64 {
        self.ram_base + self.ram_size
    }

    /// Whether `[addr, addr + len)` overlaps the DTB or the probe image.
    fn overlaps_loaded_data(&self, addr: u64, len: u64) -> bool {
        let (image_start, image_end) = image_range();
        let overlaps = |start: u64, end: u64| addr < end && start < addr.saturating_add(len);
        overlaps(image_start, image_end) || overlaps(self.dtb_addr, self.dtb_addr + self.dtb_size)
    }
}

fn parse_chaos(bootargs: &str) -> ChaosConfig {
    let find = |prefix: &str| bootarg_number(bootargs, prefix);
    let mut config = ChaosConfig {
        ops: find(CHAOS_ARG).unwrap_or(0),
        seed: find(SEED_ARG).unwrap_or(DEFAULT_SEED),
        trace: find(CHAOS_TRACE_ARG).is_some_and(|t| t != 0),
        skip: find(CHAOS_SKIP_ARG).unwrap_or(0),
        ..ChaosConfig::default()
    };
    let only = psci_probe::bootargs::value(bootargs, CHAOS_ONLY_ARG).unwrap_or("");
    for item in only.split(',') {
        let range = match item.split_once('-') {
            Some((first, last)) => parse_number(first).zip(parse_number(last)),
            None => parse_number(item).map(|index| (index, index)),
        };
        if let (Some(range), Some(slot)) = (range, config.only.get_mut(config.only_count)) {
            *slot = range;
            config.only_count += 1;
        }
    }
    config
}

fn parse_reboots(bootargs: &str) -> u32 {
    psci_probe::bootargs::value(bootargs, REBOOTS_ARG)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The probe image's IPA range, from the linker script.
pub fn image_range() -> (u64, u64) {
    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    (
        (&raw const __image_start) as u64,
        (&raw const __image_end) as u64,
    )
}

/// This CPU's MPIDR_EL1 affinity fields, as PSCI takes them.
pub fn own_mpidr() -> u64 {
    let mpidr: u64;
    // SAFETY: reading a system register does not affect memory.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack, preserves_flags)) };
    mpidr & MPIDR_AFFINITY_MASK
}

/// CNTVCT_EL0, after an ISB so earlier instructions are not counted late.
pub fn counter() -> u64 {
    let ticks: u64;
    // SAFETY: ISB and a system register read; no memory effects.
    unsafe {
        asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack, preserves_flags))
    };
    ticks
}

/// CNTFRQ_EL0: counter ticks per second.
pub fn counter_frequency() -> u64 {
    let frequency: u64;
    // SAFETY: reading a system register does not affect memory.
    unsafe {
        asm!("mrs {}, cntfrq_el0", out(reg) frequency, options(nomem, nostack, preserves_flags))
    };
    frequency
}

/// Totals carried across SYSTEM_RESET in a RAM page outside every reloaded image (guest RAM
/// keeps its contents across a reset, as on KVM/QEMU). Only used with `probe.reboots=N`.
#[derive(Clone, Copy, Default)]
pub struct BootRecord {
    /// Boots completed before this one.
    pub boots_done: u64,
    pub pass_total: u64,
    pub fail_total: u64,
    /// The boot (1 = first) whose memcheck pattern is in RAM; 0 = none.
    pub memcheck_boot: u64,
    /// The memcheck seed of this run, drawn on its first boot.
    pub memcheck_seed: u64,
}

/// "PRBBOOTS": marks the page as written by an earlier boot of the probe.
const BOOT_RECORD_MAGIC: u64 = 0x5354_4f4f_4242_5250;
const BOOT_RECORD_BYTES: u64 = 48;

impl BootRecord {
    /// Where the record lives: the last page of RAM, or 1 MiB lower if the DTB or image is
    /// there. The choice depends only on the loader's layout, so every boot picks the same page.
    pub fn address(machine: &Machine) -> Option<u64> {
        [0x1000u64, 0x10_1000]
            .iter()
            .filter_map(|back| machine.ram_end().checked_sub(*back))
            .find(|addr| {
                *addr >= machine.ram_base && !machine.overlaps_loaded_data(*addr, BOOT_RECORD_BYTES)
            })
    }

    pub fn load(addr: u64) -> Self {
        let words = addr as *const u64;
        // SAFETY: `addr` comes from `address`: 8-byte aligned guest RAM that no image,
        // DTB, stack or static uses.
        unsafe {
            if words.read_volatile() != BOOT_RECORD_MAGIC {
                return BootRecord::default();
            }
            BootRecord {
                boots_done: words.add(1).read_volatile(),
                pass_total: words.add(2).read_volatile(),
                fail_total: words.add(3).read_volatile(),
                memcheck_boot: words.add(4).read_volatile(),
                memcheck_seed: words.add(5).read_volatile(),
            }
        }
    }

    pub fn store(self, addr: u64) {
        let words = addr as *mut u64;
        // SAFETY: as in `load`.
        unsafe {
            words.write_volatile(BOOT_RECORD_MAGIC);
            words.add(1).write_volatile(self.boots_done);
            words.add(2).write_volatile(self.pass_total);
            words.add(3).write_volatile(self.fail_total);
            words.add(4).write_volatile(self.memcheck_boot);
            words.add(5).write_volatile(self.memcheck_seed);
        }
    }
}

/// CNTPCT_EL0: the physical counter the EL1 physical timer compares against.
pub fn physical_counter() -> u64 {
    let ticks: u64;
    // SAFETY: reading the physical counter has no side effects.
    unsafe {
        asm!("isb", "mrs {}, cntpct_el0", out(reg) ticks, options(nomem, nostack, preserves_flags))
    };
    ticks
}

macro_rules! timer_reg {
    ($read:ident, $write:ident, $name:literal) => {
        #[doc = concat!("Reads ", $name, ".")]
        pub fn $read() -> u64 {
            let value: u64;
            // SAFETY: reading a timer register has no side effects.
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack)) };
            value
        }
        #[doc = concat!("Writes ", $name, ".")]
        pub fn $write(value: u64) {
            // SAFETY: the probe owns its EL1 physical timer; its interrupt stays disabled in
            // the GIC, so arming it has no effect beyond the timer's own state.
            unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) value, options(nomem, nostack)) };
        }
    };
}

timer_reg!(read_cntp_ctl, write_cntp_ctl, "cntp_ctl_el0");
timer_reg!(read_cntp_cval, write_cntp_cval, "cntp_cval_el0");
timer_reg!(read_cntp_tval, write_cntp_tval, "cntp_tval_el0");
