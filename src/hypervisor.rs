//! The hypervisor's top level on every physical CPU: bring-up order on the boot CPU, the
//! secondary CPUs' life (including hotplug), and the no-guest "ready" report.

use core::sync::atomic::Ordering;

use crate::arch::{cpu, entry, firmware::Firmware, heap, mmu, percpu};
use crate::board::{BoardKind, console, gic, power};
use crate::bootargs::{self, Settings};
use crate::dtb::{self, EnableMethod, PsciConduit};
use crate::hyp::setup::Guests;

/// Why the boot CPU cannot bring the machine up. Each is reported once, in one place
/// ([`primary_main`]), which then powers the machine off.
enum BootError {
    NoDtb,
    NoHeap(heap::HeapError),
    Dtb(dtb::DtbError),
    Gic(gic::GicInitError),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoDtb => write!(f, "no usable device tree"),
            Self::NoHeap(e) => write!(f, "no heap: {e:?}"),
            Self::Dtb(e) => write!(f, "device tree: {e}"),
            Self::Gic(e) => write!(f, "GIC init failed: {e:?}"),
        }
    }
}

fn host_fdt() -> Option<fdt::Fdt<'static>> {
    entry::host_dtb().and_then(|b| dtb::parse(b).ok())
}

/// The boot CPU, on the runtime table: brings the machine up, then runs vCPU 0 or, with no
/// guest, reports `ready` and powers off. Every failure ends here, logged once.
pub fn primary_main() -> ! {
    percpu::set_current(0);
    match boot_primary() {
        Ok(never) => match never {},
        Err(e) => {
            log::error!("cannot boot: {e}");
            power::exit_failure()
        }
    }
}

/// The boot spine: DTB → console and logging → power control → RAM and heap → CPUs and GIC →
/// secondaries → the VM (or the `ready` report).
fn boot_primary() -> Result<core::convert::Infallible, BootError> {
    // Console first: the early UART is already mapped in the linear window.
    let fdt = host_fdt().ok_or(BootError::NoDtb)?;
    if let Some(uart) = dtb::console_uart(&fdt) {
        console::init(uart);
    }
    let bootargs = dtb::bootargs(&fdt);
    let settings = Settings::parse(bootargs);
    console::init_logging(settings.log_level);
    if settings.semihosting {
        power::enable_semihosting_exit();
    }
    let kind = BoardKind::detect(&fdt);
    let psci = dtb::psci_conduit(&fdt);
    log::info!(
        "Bulkhead {} starting on {} (EL2)",
        env!("CARGO_PKG_VERSION"),
        kind.name()
    );
    bootargs::warnings(bootargs, |w| log::warn!("{w}"));
    log::info!("{}", settings.in_force(crate::hyp::setup::hw_vmid_bits()));

    // Power control first (no heap needed), so even a failure below can turn the machine off.
    let control = match (kind, psci) {
        (_, Some(conduit)) => power::PowerControl::Psci(Firmware(conduit)),
        (BoardKind::Rpi4, None) => dtb::pm_watchdog(&fdt)
            .and_then(power::map_watchdog)
            .map_or(power::PowerControl::None, |va| {
                power::PowerControl::Bcm2835Watchdog { va }
            }),
        _ => power::PowerControl::None,
    };
    power::init(control);

    // RAM banks, without the heap (which lives in one of them).
    let mut ram = [dtb::PhysRange { base: 0, size: 0 }; 8];
    let mut banks = 0;
    for bank in dtb::memory_regions(&fdt).take(ram.len()) {
        ram[banks] = bank;
        banks += 1;
        if let Err(e) = mmu::map_ram(bank.base, bank.size) {
            log::error!("cannot map RAM {:#x}+{:#x}: {e}", bank.base, bank.size);
        }
    }
    let heap = heap::init(&ram[..banks]).map_err(BootError::NoHeap)?;

    let cpus: alloc::vec::Vec<dtb::CpuInfo> = dtb::cpus(&fdt)
        .map_err(BootError::Dtb)?
        .take(entry::MAX_CPUS)
        .collect();
    let gic_info = dtb::gic(&fdt).map_err(BootError::Dtb)?;
    gic::init_primary(&gic_info, cpus.len()).map_err(BootError::Gic)?;
    mark_online(0);

    // The boot CPU is the one whose MPIDR we run on; order the table so index 0 is us.
    let me = cpu::mpidr();
    let mut mpidrs: alloc::vec::Vec<u64> = cpus.iter().map(|c| c.mpidr).collect();
    if let Some(pos) = mpidrs.iter().position(|&m| m == me) {
        mpidrs.swap(0, pos);
    }
    entry::set_cpu_mpidrs(&mpidrs);
    for (index, &mpidr) in mpidrs.iter().enumerate().skip(1) {
        let method = cpus.iter().find(|c| c.mpidr == mpidr).map(|c| c.enable);
        start_secondary(index, mpidr, method, psci);
    }
    let total = mpidrs.len();
    wait_until(|| percpu::online_count() == total, 2_000_000);

    if let Some(cycles) = settings.hotplug_test {
        hotplug_test(&mpidrs, psci, cycles);
    }

    match crate::hyp::setup::create_vms(&fdt, &gic_info, heap.end(), total) {
        Guests::Running => {
            // Release the secondaries into their vCPU loops, then run this CPU's share here.
            cpu::sev();
            crate::hyp::run::run_cpu(0)
        }
        Guests::NoneCanStart { refused } => {
            log::error!("no VM can start: all {refused} configured were refused (see above)");
            power::exit_failure()
        }
        Guests::None => {}
    }

    crate::println!(
        "bulkhead: ready: cpus={}/{} el=2 mmu={} gic=v{} board={}",
        percpu::online_count(),
        total,
        if mmu::on_runtime_table() {
            "runtime"
        } else {
            "boot"
        },
        gic_info.version(),
        kind.name()
    );
    power::power_off()
}

fn mark_online(cpu: usize) {
    let Some(me) = percpu::get(cpu) else { return };
    let boots = me.boots.fetch_add(1, Ordering::AcqRel) + 1;
    let cookie = 0xb01d_0000_0000_0000 | cpu as u64;
    if boots == 1 {
        me.cookie.store(cookie, Ordering::Release);
    } else if me.cookie.load(Ordering::Acquire) != cookie {
        log::error!("cpu {cpu}: per-CPU state lost across hotplug");
    }
    me.online.store(true, Ordering::Release);
    cpu::sev();
}

fn start_secondary(
    index: usize,
    mpidr: u64,
    method: Option<EnableMethod>,
    psci: Option<PsciConduit>,
) {
    let entry_pa = entry::secondary_entry_pa();
    match (method, psci) {
        (Some(EnableMethod::Psci), Some(conduit)) | (Some(EnableMethod::None), Some(conduit)) => {
            if let Err(e) = Firmware(conduit).cpu_on(mpidr, entry_pa, index as u64) {
                log::error!("cpu {index} (mpidr {mpidr:#x}): CPU_ON failed: {e}");
            }
        }
        (Some(EnableMethod::SpinTable { release_addr }), _) => {
            if let Err(e) = crate::arch::spintable::release(release_addr, entry_pa) {
                log::error!("cpu {index}: spin-table release failed: {e}");
            }
        }
        _ => log::error!("cpu {index} (mpidr {mpidr:#x}): no way to start it"),
    }
}

fn wait_until(mut done: impl FnMut() -> bool, timeout_us: u64) -> bool {
    let freq = cpu::counter_frequency().max(1);
    let end = cpu::counter() + freq * timeout_us / 1_000_000;
    while !done() {
        if cpu::counter() > end {
            return false;
        }
        crate::arch::cpu::yield_hint();
    }
    true
}

/// Cycles every secondary CPU off and on `cycles` times through the firmware, checking each
/// comes back through the trampoline with its per-CPU state intact.
fn hotplug_test(mpidrs: &[u64], psci: Option<PsciConduit>, cycles: u32) {
    let Some(conduit) = psci else {
        crate::println!("bulkhead: hotplug: unavailable on this board (no PSCI)");
        return;
    };
    let fw = Firmware(conduit);
    let mut completed = 0;
    for _ in 0..cycles {
        for (index, &mpidr) in mpidrs.iter().enumerate().skip(1) {
            let Some(pc) = percpu::get(index) else {
                continue;
            };
            let boots_before = pc.boots.load(Ordering::Acquire);
            pc.command.store(percpu::CMD_OFFLINE, Ordering::Release);
            cpu::sev();
            if !wait_until(
                || fw.is_off(mpidr) && !pc.online.load(Ordering::Acquire),
                1_000_000,
            ) {
                log::error!("hotplug: cpu {index} did not go offline");
                return;
            }
            if let Err(e) = fw.cpu_on(mpidr, entry::secondary_entry_pa(), index as u64) {
                log::error!("hotplug: CPU_ON cpu {index}: {e}");
                return;
            }
            if !wait_until(
                || pc.boots.load(Ordering::Acquire) == boots_before + 1,
                1_000_000,
            ) {
                log::error!("hotplug: cpu {index} did not come back");
                return;
            }
        }
        completed += 1;
    }
    crate::println!(
        "bulkhead: hotplug: {completed} cycles of {} secondary cpus off/on ok",
        mpidrs.len().saturating_sub(1)
    );
}

/// A secondary CPU, on the runtime table (first boot or back from hotplug).
pub fn secondary_main(cpu_index: usize) -> ! {
    percpu::set_current(cpu_index);
    gic::init_secondary(cpu_index);
    mark_online(cpu_index);
    let Some(me) = percpu::get(cpu_index) else {
        cpu::halt()
    };
    loop {
        if !crate::hyp::setup::vms().is_empty() {
            crate::hyp::run::run_cpu(cpu_index)
        }
        if me.command.swap(percpu::CMD_NONE, Ordering::AcqRel) == percpu::CMD_OFFLINE {
            me.online.store(false, Ordering::Release);
            if let Some(conduit) = host_fdt().as_ref().and_then(dtb::psci_conduit) {
                let err = Firmware(conduit).cpu_off();
                log::error!("cpu {cpu_index}: CPU_OFF failed: {err}");
            }
        }
        cpu::wfe();
    }
}
