//! The one host console every VM and the hypervisor share: the multiplexer (`console_mux`:
//! one VM's output passed through unchanged; several VMs' output as whole lines with a
//! `name: ` prefix; hypervisor lines at line starts; input to the VM in focus) behind a lock,
//! the flow-control state, and the deadline of held partial and hypervisor lines. `console_bridge` connects it to the guests' PL011s.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::console_mux::{ConsoleMux, Input};
use super::platform::Platform;
use crate::sync::SpinLock;

/// No partial-line flush pending.
const NO_DEADLINE: u64 = u64::MAX;

/// The one physical console every VM and the hypervisor share.
pub struct Console {
    mux: SpinLock<ConsoleMux>,
    /// Console input held back (host UART RX interrupt masked) while the focused VM's receive
    /// FIFO is full.
    pub throttled: AtomicBool,
    /// When the oldest held partial line is due (counter ticks), as last told to the platform.
    flush_at: AtomicU64,
    /// How long a partial line (a shell prompt) may wait for its end, in counter ticks.
    idle_ticks: u64,
}

impl Console {
    /// A console for VMs named `names` (index = VM id); `escape` typed three times switches
    /// input focus; partial lines show after `idle_ticks`.
    pub fn new(names: Vec<String>, escape: u8, idle_ticks: u64) -> Self {
        Self {
            mux: SpinLock::new(ConsoleMux::new(names, escape)),
            throttled: AtomicBool::new(false),
            flush_at: AtomicU64::new(NO_DEADLINE),
            idle_ticks,
        }
    }

    /// Runs `f` on the multiplexer at the counter's `now`, then shows what came due and
    /// tells the platform when to look next (held partial lines, waiting hypervisor lines).
    fn with_mux<R>(
        &self,
        p: &impl Platform,
        f: impl FnOnce(&mut ConsoleMux, u64, &mut dyn FnMut(&[u8])) -> R,
    ) -> R {
        let now = p.counter();
        let mut out = |b: &[u8]| p.console_write(b);
        let mut mux = self.mux.lock();
        let result = f(&mut mux, now, &mut out);
        let due = mux.flush_idle(now, self.idle_ticks, &mut out);
        drop(mux);
        self.note_deadline(due, p);
        result
    }

    /// Bytes VM `vm` printed.
    pub fn vm_output(&self, vm: usize, bytes: &[u8], p: &impl Platform) {
        self.with_mux(p, |mux, now, out| mux.vm_output(vm, bytes, now, out));
    }

    /// One byte VM `vm` printed (the exit fast path's character: `vm_output` without a slice).
    pub fn vm_output_byte(&self, vm: usize, b: u8, p: &impl Platform) {
        self.with_mux(p, |mux, now, out| mux.vm_output_byte(vm, b, now, out));
    }

    /// Shows partial lines (and hypervisor lines waiting for them) that waited long enough
    /// (the platform's console timer fired).
    pub fn flush_idle(&self, p: &impl Platform) {
        self.with_mux(p, |_, _, _| ());
    }

    fn note_deadline(&self, due: Option<u64>, p: &impl Platform) {
        let due = due.unwrap_or(NO_DEADLINE);
        // Read first: after nearly every guest write nothing is due, as before, and the
        // read spares the write (an exclusive pair per character printed).
        if self.flush_at.load(Ordering::Acquire) != due
            && self.flush_at.swap(due, Ordering::AcqRel) != due
        {
            p.set_console_deadline((due != NO_DEADLINE).then_some(due));
        }
    }

    /// A hypervisor line (`bulkhead: ...`), never printed inside a VM's line. False if the
    /// console stayed busy (e.g. a line logged while this CPU holds it): print it directly.
    pub fn try_hyp_line(&self, args: core::fmt::Arguments<'_>, p: &impl Platform) -> bool {
        // Bounded in time, not in tries, and generously: another CPU holds the lock for one
        // guest write or input byte, or while it shows the hypervisor lines that waited (up
        // to the queue's 64 KiB: seconds at 115200 baud), and a line printed past the lock
        // would land inside another line. Nothing logs while holding it, so only a CPU that
        // died holding it (a fatal path) makes this wait the whole bound.
        let give_up = p
            .counter()
            .saturating_add(self.idle_ticks.saturating_mul(50));
        loop {
            if let Some(mut mux) = self.mux.try_lock() {
                let now = p.counter();
                let mut out = |b: &[u8]| p.console_write(b);
                mux.hyp_line_fmt(args, now, &mut out);
                let due = mux.flush_idle(now, self.idle_ticks, &mut out);
                drop(mux);
                self.note_deadline(due, p);
                return true;
            }
            if p.counter() > give_up {
                return false;
            }
            core::hint::spin_loop();
        }
    }

    /// A hypervisor line from a caller that holds no console lock (statistics).
    pub fn hyp_line(&self, args: core::fmt::Arguments<'_>, p: &impl Platform) {
        self.with_mux(p, |mux, now, out| mux.hyp_line_fmt(args, now, out));
    }

    /// A VM stopped (or started again): focus and held output follow.
    pub fn set_alive(&self, vm: usize, alive: bool, p: &impl Platform) {
        self.with_mux(p, |mux, now, out| mux.set_alive(vm, alive, now, out));
    }

    /// The VM console input goes to.
    pub fn focus(&self) -> usize {
        self.mux.lock().focus()
    }

    /// One byte typed on the console: where it goes.
    pub fn input(&self, byte: u8, p: &impl Platform) -> Input {
        self.with_mux(p, |mux, now, out| mux.input(byte, now, out))
    }

    /// A serial break on the console: where it goes.
    pub fn input_break(&self) -> Input {
        self.mux.lock().input_break()
    }
}
