//! The console bridge: the guest's emulated PL011 on one side, the host's console UART on the
//! other. Guest writes go out to the host UART; bytes typed on the host UART go into the
//! PL011's receive FIFO, with flow control (the host UART's receive interrupt is masked while
//! the guest's FIFO is full, so the bytes wait in the host FIFO and a level interrupt cannot
//! storm). Lock order: the VM's UART, then its vGIC.

use core::sync::atomic::Ordering;

use super::platform::Platform;
use super::vm::Vm;
use crate::devices::MmioError;
use crate::devices::mmio::AccessSize;
use crate::devices::pl011::EmulatedPl011;
use crate::guest_layout::PL011_INTID;

/// A guest store to its PL011.
pub fn uart_write(
    vm: &Vm,
    offset: u64,
    size: AccessSize,
    value: u64,
    p: &impl Platform,
) -> Result<(), MmioError> {
    let mut uart = vm.uart.lock();
    let out = uart.write(offset, size, value)?;
    update_uart_line(vm, &uart, p);
    drop(uart);
    if let Some(byte) = out {
        p.console_write(&[byte]);
    }
    Ok(())
}

/// A guest load from its PL011.
pub fn uart_read(
    vm: &Vm,
    offset: u64,
    size: AccessSize,
    p: &impl Platform,
) -> Result<u64, MmioError> {
    let mut uart = vm.uart.lock();
    let value = uart.read(offset, size);
    update_uart_line(vm, &uart, p);
    drop(uart);
    // The guest may have made room in its receive FIFO: resume held-back input.
    if vm.console_throttled.load(Ordering::Relaxed) {
        forward_input(core::slice::from_ref(vm), p);
    }
    value
}

/// Drives the guest PL011's interrupt line from its state; call with the UART locked. Only a
/// change of level touches the vGIC, so the common console write costs no list-register
/// refill.
fn update_uart_line(vm: &Vm, uart: &EmulatedPl011, p: &impl Platform) {
    let level = uart.irq_level();
    if vm.uart_line.swap(level, Ordering::Relaxed) != level
        && let Ok(set) = vm.vgic().set_line_level(0, PL011_INTID, level)
    {
        vm.kick_vcpus(set, p);
    }
}

/// Moves bytes typed on the console into the receive FIFO of the VM in focus (the host UART's
/// receive interrupt, or that guest reading its FIFO, calls this).
pub fn forward_input(vms: &[Vm], p: &impl Platform) {
    let Some(vm) = vms.first() else { return };
    let mut uart = vm.uart.lock();
    // Bounded: at most a few refills of the guest's FIFO per call.
    for _ in 0..4 {
        while uart.rx_space() > 0 {
            match p.console_getc() {
                Some(byte) => {
                    uart.push_rx(byte);
                }
                None => break,
            }
        }
        let full = uart.rx_space() == 0;
        if full != vm.console_throttled.swap(full, Ordering::Relaxed) {
            p.set_console_rx_irq(!full);
        }
        // Bytes that arrived while the interrupt was masked raise nothing new: take them now.
        if full || !p.console_has_input() {
            break;
        }
    }
    update_uart_line(vm, &uart, p);
}
