//! The hypervisor's top level on every physical CPU: bring-up order on the boot CPU, the
//! secondary CPUs' life (including hotplug), and the no-guest "ready" report.

use core::sync::atomic::Ordering;

use crate::arch::{cpu, entry, firmware::Firmware, heap, mmu, percpu};
use crate::board::{BoardKind, console, gic, power};
use crate::dtb::{self, EnableMethod, PsciConduit};

/// Stops the machine after a fatal error.
pub fn fatal_stop() -> ! {
    power::power_off()
}

fn host_fdt() -> Option<fdt::Fdt<'static>> {
    let params = entry::boot_params();
    let placement = crate::mm::el2_tables::DtbPlacement {
        pa: params.dtb_pa,
        size: params.dtb_size,
    };
    if params.dtb_size == 0 {
        return None;
    }
    crate::arch::entry::dtb_slice(placement.va(), params.dtb_size).and_then(|b| dtb::parse(b).ok())
}

/// The boot CPU, on the runtime table.
pub fn primary_main() -> ! {
    percpu::set_current(0);
    // Console first: the early UART is already mapped in the linear window.
    let fdt = host_fdt();
    let Some(fdt) = fdt else { cpu::halt() };
    if let Some(uart) = dtb::console_uart(&fdt) {
        console::init(uart);
    }
    let bootargs = dtb::bootargs(&fdt);
    console::init_logging(dtb::bootarg(bootargs, "loglevel"));
    let kind = BoardKind::detect(&fdt);
    let psci = dtb::psci_conduit(&fdt);
    log::info!(
        "Bulkhead {} starting on {} (EL2)",
        env!("CARGO_PKG_VERSION"),
        kind.name()
    );

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
    let heap = match heap::init(&ram[..banks]) {
        Ok(heap) => heap,
        Err(e) => {
            log::error!("no heap: {e:?}");
            fatal_stop()
        }
    };

    let cpus: alloc::vec::Vec<dtb::CpuInfo> = match dtb::cpus(&fdt) {
        Ok(it) => it.take(entry::MAX_CPUS).collect(),
        Err(e) => {
            log::error!("{e}");
            fatal_stop()
        }
    };
    let gic_info = match dtb::gic(&fdt) {
        Ok(g) => g,
        Err(e) => {
            log::error!("{e}");
            fatal_stop()
        }
    };
    if let Err(e) = gic::init_primary(&gic_info, cpus.len()) {
        log::error!("GIC init failed: {e:?}");
        fatal_stop()
    }
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

    if let Some(cycles) = dtb::bootarg(bootargs, "bulkhead.hotplug_test") {
        let cycles: u32 = cycles.parse().unwrap_or(0);
        hotplug_test(&mpidrs, psci, cycles);
    }

    if let Some(vm) = crate::hyp::setup::create_vm(&fdt, &gic_info, heap.end(), total) {
        // Release the secondaries into their vCPU loops, then run vCPU 0 here.
        cpu::sev();
        crate::hyp::run::run_vcpu(vm, 0)
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
        if let Some(vm) = crate::hyp::vm::vm() {
            if cpu_index < vm.config.vcpu_count {
                crate::hyp::run::run_vcpu(vm, cpu_index)
            }
            // Not needed by the guest: sleep for good (WFI, unlike a WFE loop, really stops a
            // CPU — and a QEMU vCPU thread).
            cpu::halt()
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
