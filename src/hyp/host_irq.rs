//! Physical interrupts taken while guests run, routed to what they concern: the virtual
//! timer's PPI (forwarded to the vCPU as a level interrupt), the EL2 timer backing the
//! emulated physical timer, the kick SGI (just an exit), the GIC maintenance interrupt (list
//! registers drained or a level interrupt EOIed: the next fill handles it) and the console
//! UART's receive interrupt (bytes into the guest's PL011).

use core::sync::atomic::{AtomicU32, Ordering};

use super::setup;
use super::vcpu::Vcpu;
use super::vm::Vm;
use super::{console_bridge, rtc, timer};
use crate::arch::platform::ArchPlatform;
use crate::arch::{percpu, platform};
use crate::board::{console as host_console, gic};

/// Host INTIDs learned from the DTB (0 = none).
static UART_INTID: AtomicU32 = AtomicU32::new(0);
static MAINTENANCE_INTID: AtomicU32 = AtomicU32::new(25);

pub fn set_host_intids(uart: Option<u32>, maintenance: Option<u32>) {
    UART_INTID.store(uart.unwrap_or(0), Ordering::Relaxed);
    if let Some(m) = maintenance {
        MAINTENANCE_INTID.store(m, Ordering::Relaxed);
    }
}

/// Enables the interrupts a CPU running a vCPU takes.
pub fn enable_vcpu_irqs(pcpu: usize) {
    gic::enable_private(timer::VTIMER_INTID, pcpu);
    gic::enable_private(timer::HYP_TIMER_INTID, pcpu);
    gic::enable_private(gic::KICK_SGI, pcpu);
    gic::enable_private(MAINTENANCE_INTID.load(Ordering::Relaxed), pcpu);
}

/// Enables the console UART's receive interrupt, routed to the boot CPU (CPU 0), which
/// serves console input whether or not it runs a vCPU, and the EL2 timer and kick it shows
/// held partial lines with.
pub fn enable_console_irq() {
    gic::enable_private(timer::HYP_TIMER_INTID, platform::CONSOLE_CPU);
    gic::enable_private(gic::KICK_SGI, platform::CONSOLE_CPU);
    let uart = UART_INTID.load(Ordering::Relaxed);
    if uart >= 32 {
        host_console::enable_rx_irq();
        gic::enable_shared(uart);
    }
}

/// Acknowledges and handles every pending physical interrupt on this CPU; `running` is the
/// vCPU this CPU runs, if any.
pub fn handle_host_irqs(mut running: Option<(&Vm, &mut Vcpu)>) {
    let p = &ArchPlatform;
    let uart = UART_INTID.load(Ordering::Relaxed);
    // Bounded: a device that keeps re-asserting must not wedge this CPU.
    for _ in 0..64 {
        let Some(iar) = gic::ack() else { return };
        // GICv2 reports an SGI's source CPU in IAR bits 12:10; EOIR wants them back.
        let intid = u32::from(iar) & 0x3ff;
        if intid >= 1020 {
            return;
        }
        match (intid, running.as_mut()) {
            (timer::VTIMER_INTID, Some((vm, vcpu))) => timer::sample_vtimer(vm, vcpu, p),
            (timer::HYP_TIMER_INTID, running) => {
                if percpu::current() == platform::CONSOLE_CPU
                    && platform::console_due()
                    && let Some(console) = setup::console()
                {
                    console.flush_idle(p);
                }
                if percpu::current() == platform::CONSOLE_CPU && platform::rtc_due() {
                    rtc::poll_all(setup::vms(), p);
                }
                match running {
                    Some((vm, vcpu)) => timer::update_ptimer(vm, vcpu, p),
                    None => platform::rearm_hyp_timer(),
                }
            }
            // Another CPU changed the console's deadline.
            (gic::KICK_SGI, _)
                if percpu::current() == platform::CONSOLE_CPU
                    && platform::console_deadline_moved() =>
            {
                platform::rearm_hyp_timer()
            }
            (intid, _) if intid == uart && uart != 0 => {
                console_bridge::forward_input(setup::vms(), p)
            }
            _ => {}
        }
        gic::eoi(iar);
    }
}
