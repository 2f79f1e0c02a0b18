//! Physical interrupts while guests run: the virtual timer's PPI (forwarded to the vCPU as a
//! level interrupt), the kick SGI (just an exit), the GIC maintenance interrupt (list
//! registers drained or a level interrupt EOIed), and the console UART's receive interrupt
//! (bytes forwarded to the guest's PL011).

use core::sync::atomic::{AtomicU32, Ordering};

use aarch64_cpu::registers::{CNTV_CTL_EL0, Readable};

use super::exit::kick_set;
use super::run::VcpuLocal;
use super::vm::Vm;
use crate::board::{console, gic};
use crate::guest_layout::PL011_INTID;

/// The virtual timer PPI (INTID 27), the same physical and virtual.
pub const VTIMER_INTID: u32 = crate::guest_layout::VTIMER_INTID;

/// The EL1 physical timer PPI (INTID 30), emulated for the guest.
pub const PTIMER_INTID: u32 = 30;
/// The EL2 physical timer PPI (INTID 26), backing the emulated one.
pub const HYP_TIMER_INTID: u32 = 26;

/// Host INTIDs learned from the DTB (0 = none).
static UART_INTID: AtomicU32 = AtomicU32::new(0);
static MAINTENANCE_INTID: AtomicU32 = AtomicU32::new(25);

pub fn set_host_intids(uart: Option<u32>, maintenance: Option<u32>) {
    UART_INTID.store(uart.unwrap_or(0), Ordering::Relaxed);
    if let Some(m) = maintenance {
        MAINTENANCE_INTID.store(m, Ordering::Relaxed);
    }
}

/// Enables the interrupts a CPU running a vCPU takes. vCPU 0's CPU also owns the console.
pub fn enable_vcpu_irqs(index: usize) {
    gic::enable_private(VTIMER_INTID, index);
    gic::enable_private(HYP_TIMER_INTID, index);
    gic::enable_private(gic::KICK_SGI, index);
    gic::enable_private(MAINTENANCE_INTID.load(Ordering::Relaxed), index);
    let uart = UART_INTID.load(Ordering::Relaxed);
    if index == 0 && uart >= 32 {
        console::enable_rx_irq();
        gic::enable_shared(uart);
    }
}

/// Samples the guest's virtual timer output: ENABLE and ISTATUS set, IMASK clear.
pub fn sample_timer(vm: &Vm, me: &mut VcpuLocal) {
    let ctl = CNTV_CTL_EL0.get();
    let level = ctl & 0b111 == 0b101;
    if level != me.timer_level {
        if let Ok(set) = vm.vgic().set_line_level(me.index, VTIMER_INTID, level) {
            kick_set(vm, set);
        }
        me.set_timer_level(level);
    }
}

/// Re-evaluates the emulated physical timer: drives PPI 30 and arms (or stops) the EL2 timer
/// that wakes us at its deadline.
pub fn update_ptimer(vm: &Vm, me: &mut VcpuLocal) {
    let now = crate::arch::cpu::counter();
    let level = me.ptimer.level(now);
    if level != me.ptimer_level {
        me.ptimer_level = level;
        if let Ok(set) = vm.vgic().set_line_level(me.index, PTIMER_INTID, level) {
            kick_set(vm, set);
        }
    }
    crate::arch::sysregs::set_hyp_timer(me.ptimer.deadline(now));
}

/// Drives the guest PL011's interrupt line from its state; call with the UART locked (lock
/// order: UART, then vGIC). Only a change of level touches the vGIC, so the common console
/// write costs no list-register refill.
pub fn update_uart_line(vm: &Vm, uart: &crate::devices::pl011::Pl011) {
    let level = uart.irq_level();
    if vm.uart_line.swap(level, Ordering::Relaxed) != level
        && let Ok(set) = vm.vgic().set_line_level(0, PL011_INTID, level)
    {
        kick_set(vm, set);
    }
}

/// Moves bytes typed on the console into the guest's PL011 receive FIFO.
/// When the guest's FIFO fills up, the host UART's receive interrupt is masked (the bytes
/// wait in its FIFO, and the level-triggered interrupt cannot storm) until the guest reads.
pub fn forward_console_input(vm: &Vm) {
    let mut uart = vm.uart.lock();
    // Bounded: at most a few refills of the guest's FIFO per call.
    for _ in 0..4 {
        while uart.rx_space() > 0 {
            match console::getc() {
                Some(byte) => {
                    uart.push_rx(byte);
                }
                None => break,
            }
        }
        let full = uart.rx_space() == 0;
        if full != vm.console_throttled.swap(full, Ordering::Relaxed) {
            if full {
                console::disable_rx_irq();
            } else {
                console::enable_rx_irq();
            }
        }
        // Bytes that arrived while the interrupt was masked raise nothing new: take them now.
        if full || !console::has_input() {
            break;
        }
    }
    update_uart_line(vm, &uart);
}

/// After the guest read from its PL011: resume console input if it was held back.
pub fn console_input_drained(vm: &Vm) {
    if vm.console_throttled.load(Ordering::Relaxed) {
        forward_console_input(vm);
    }
}

/// Acknowledges and handles every pending physical interrupt on this CPU.
pub fn handle_host_irqs(vm: &Vm, me: &mut VcpuLocal) {
    let uart = UART_INTID.load(Ordering::Relaxed);
    // Bounded: a device that keeps re-asserting must not wedge this CPU.
    for _ in 0..64 {
        let Some(iar) = gic::ack() else { return };
        // GICv2 reports an SGI's source CPU in IAR bits 12:10; EOIR wants them back.
        let intid = u32::from(iar) & 0x3ff;
        if intid >= 1020 {
            return;
        }
        if intid == VTIMER_INTID {
            sample_timer(vm, me);
        } else if intid == HYP_TIMER_INTID {
            update_ptimer(vm, me);
        } else if intid == uart && uart != 0 {
            forward_console_input(vm);
        }
        gic::eoi(iar);
    }
}
