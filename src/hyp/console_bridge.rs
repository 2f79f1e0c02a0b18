//! The console bridge: the guests' emulated PL011s on one side, the shared host console
//! (`hyp::console`) on the other. Guest output goes to the console's multiplexer; bytes typed
//! on the host UART go to the receive FIFO of the VM in focus, with flow control (the host
//! UART's receive interrupt is masked while that FIFO is full, so the bytes wait in the host
//! FIFO and a level interrupt cannot storm). Lock order: a VM's UART, then the console, then
//! the VM's vGIC.

use core::sync::atomic::Ordering;

use super::console_mux::Input;
use super::platform::{ConsoleRx, Platform};
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
    // A data-register write (`Some`) changes no UART state (`EmulatedPl011::write`), so the
    // line keeps the level the last access left it at: every change of the state updates it
    // under this lock. Skipping the update saves ~45 instructions per character printed.
    if out.is_none() {
        update_uart_line(vm, &uart, p);
    }
    drop(uart);
    if let Some(byte) = out {
        vm.console.vm_output(vm.id, &[byte], p);
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
    // The guest may have made room in its receive FIFO: resume held-back input. Input may
    // move the focus to another VM (or ask for every VM's statistics), so all the VMs the
    // console serves are passed, as the host UART's interrupt does.
    if vm.console.throttled.load(Ordering::Relaxed) && vm.console.focus() == vm.id {
        let all = vm.peers.get().copied().unwrap_or(core::slice::from_ref(vm));
        forward_input(all, p);
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
/// receive interrupt, or that guest reading its FIFO, calls this). A break goes there as a
/// break; the statistics key prints every VM's statistics. `vms` are the VMs the console
/// serves (indexed by VM id).
pub fn forward_input(vms: &[Vm], p: &impl Platform) {
    let Some(console) = vms.first().map(|vm| vm.console) else {
        return;
    };
    // Bounded: at most a FIFO's worth of bytes per VM, a few times over, per call.
    for _ in 0..128 {
        let focus = console.focus();
        let Some(vm) = vms.iter().find(|vm| vm.id == focus) else {
            // Nobody to type to (every VM is off): drain (a FIFO's worth) and drop.
            for _ in 0..64 {
                if p.console_getc().is_none() {
                    break;
                }
            }
            return;
        };
        let mut uart = vm.uart.lock();
        let full = uart.rx_space() == 0;
        if full != console.throttled.swap(full, Ordering::Relaxed) {
            p.set_console_rx_irq(!full);
        }
        if full {
            update_uart_line(vm, &uart, p);
            return;
        }
        let Some(received) = p.console_getc() else {
            update_uart_line(vm, &uart, p);
            return;
        };
        let input = match received {
            ConsoleRx::Byte(byte) => console.input(byte, p),
            ConsoleRx::Break => console.input_break(),
        };
        let target = match input {
            Input::Deliver { vm, .. } | Input::Break { vm } => vm,
            Input::Stats => {
                drop(uart);
                print_stats(vms, p);
                continue;
            }
            Input::Consumed => continue,
        };
        let deliver = |uart: &mut EmulatedPl011| {
            if input == (Input::Break { vm: target }) {
                uart.push_break();
            }
            for &b in input.bytes() {
                uart.push_rx(b);
            }
        };
        if target == vm.id {
            deliver(&mut uart);
            update_uart_line(vm, &uart, p);
        } else if let Some(other) = vms.iter().find(|v| v.id == target) {
            drop(uart);
            let mut uart = other.uart.lock();
            deliver(&mut uart);
            update_uart_line(other, &uart, p);
        }
    }
}

/// The statistics key: every VM's live statistics as hypervisor lines, nothing stopped (the
/// counters are read as they are, a moment old at most).
pub fn print_stats(vms: &[Vm], p: &impl Platform) {
    for vm in vms {
        let console = vm.console;
        console.hyp_line(format_args!("bulkhead: stats: {}", vm.live_stats()), p);
        for index in 0..vm.vcpus.len() {
            console.hyp_line(
                format_args!("bulkhead: stats: {}", vm.live_vcpu_stats(index)),
                p,
            );
        }
    }
}
