//! What the exit core needs from the machine, as one trait. The target implements it with the
//! arch and board code (`hyp::arch_platform`); host tests implement it with a fake that
//! records what happened — Hafnium's model of a real and a fake architecture behind one
//! interface, so every exit handler runs as a host unit test.

use crate::hyp::exit::SysRegId;
use crate::vcpu::request::Kick;

/// What the console UART received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRx {
    /// A character.
    Byte(u8),
    /// A break: the line held low for longer than a character (SysRq's attention signal).
    Break,
}

/// The hardware operations the exit handlers, the timer and the console bridge use. `kick`
/// (from [`Kick`]) makes a physical CPU leave its guest or wake up.
pub trait Platform: Kick {
    /// The physical counter (CNTPCT_EL0).
    fn counter(&self) -> u64;
    /// CNTV_CTL_EL0 of the vCPU running on this CPU (its virtual timer is live in hardware).
    fn vtimer_ctl(&self) -> u64;
    /// Unmasks (true) or masks this CPU's virtual-timer PPI.
    fn set_vtimer_irq_enabled(&self, enabled: bool);
    /// Arms this CPU's EL2 physical timer at `deadline` (a counter value), or stops it.
    fn set_hyp_timer(&self, deadline: Option<u64>);
    /// Cleans and invalidates host RAM `[pa, pa + size)` to the point of coherency, so a guest
    /// running with its MMU off (non-cacheable) sees what the caches hold. With FEAT_S2FWB
    /// (guest RAM forced Write-Back at stage 2) only what instruction fetches need is done.
    fn clean_ram_to_poc(&self, pa: u64, size: u64);
    /// Zeroes host RAM `[pa, pa + size)` (guest RAM on its first use) and cleans it to the
    /// point of coherency (as `clean_ram_to_poc`), so a guest never sees what the RAM held
    /// before, caches on or off.
    fn zero_ram(&self, pa: u64, size: u64);
    /// SCTLR_EL1 of the vCPU running on this CPU (its EL1 registers are live in hardware):
    /// EE/E0E give its data endianness.
    fn guest_sctlr_el1(&self) -> u64;
    /// Sets (true) or clears this CPU's OS lock (OSLAR_EL1.OSLK), the lock of the vCPU it runs.
    fn set_os_lock(&self, locked: bool);
    /// TCR_EL1, TTBR0_EL1 and TTBR1_EL1 of the vCPU running on this CPU (live in hardware).
    fn guest_stage1_regs(&self) -> crate::hyp::walk_level::Stage1Regs;
    /// The 64-bit word at host PA `pa` of a VM's RAM, if `pa` is in one.
    fn guest_ram_u64(&self, pa: u64) -> Option<u64>;
    /// This CPU's ACTLR_EL1 as it was reset (what a guest reads, as KVM's `reset_actlr`).
    fn host_actlr_el1(&self) -> u64;
    /// Host RAM `[pa, pa + size)` that Bulkhead reserved (guest images), for reading.
    fn host_ram(&self, pa: u64, size: u64) -> &[u8];
    /// Copies `bytes` to host RAM at `pa` (guest RAM) and cleans them to the point of
    /// coherency.
    fn write_ram(&self, pa: u64, bytes: &[u8]);
    /// Calls `f` with host RAM `[pa, pa + size)` (a VM's RAM, while none of its vCPUs runs) as
    /// a mutable slice, without cleaning anything; false (and `f` not called) if that range is
    /// not guest RAM.
    fn with_guest_ram(&self, pa: u64, size: u64, f: &mut dyn FnMut(&mut [u8])) -> bool;
    /// Copies `src` to `dst` with the widest loads and stores the machine has (guest images).
    fn copy_ram(&self, dst: &mut [u8], src: &[u8]);
    /// Writes bytes to the console UART.
    fn console_write(&self, bytes: &[u8]);
    /// One character (or break) received on the console, if any.
    fn console_getc(&self) -> Option<ConsoleRx>;
    /// Whether the console UART holds received bytes.
    fn console_has_input(&self) -> bool;
    /// Unmasks (true) or masks the console UART's receive interrupt.
    fn set_console_rx_irq(&self, enabled: bool);
    /// When the console must next show held partial lines (counter ticks), or never: the
    /// platform calls `Console::flush_idle` then.
    fn set_console_deadline(&self, deadline: Option<u64>);
    /// When the earliest guest RTC match comes due (counter ticks), or never: the platform
    /// calls `hyp::rtc::poll_all` then.
    fn set_rtc_deadline(&self, deadline: Option<u64>);
    /// Fills `out` with random bytes from a CSPRNG seeded with the machine's entropy; false
    /// (and `out` untouched) if the machine offered none.
    fn fill_random(&self, out: &mut [u8]) -> bool;
    /// This CPU's value of ID register `id` (op0 = 3, op1 = 0, CRn = 0, CRm = 1..7), read
    /// only for the registers `cpu_features::reads_hardware` names; 0 for any other.
    fn id_register(&self, id: SysRegId) -> u64;
}

#[cfg(test)]
pub mod fake {
    //! A recording [`Platform`] for host tests.
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use core::cell::{Cell, RefCell};

    /// Guest-visible effects, recorded; inputs, scripted.
    #[derive(Default)]
    pub struct FakePlatform {
        pub now: Cell<u64>,
        pub vtimer_ctl: Cell<u64>,
        pub vtimer_irq_enabled: Cell<Option<bool>>,
        pub hyp_timer: Cell<Option<u64>>,
        pub kicks: RefCell<Vec<usize>>,
        pub cleaned: RefCell<Vec<(u64, u64)>>,
        pub zeroed: RefCell<Vec<(u64, u64)>>,
        pub sctlr_el1: Cell<u64>,
        pub actlr_el1: Cell<u64>,
        pub stage1: Cell<Option<crate::hyp::walk_level::Stage1Regs>>,
        pub os_lock: Cell<Option<bool>>,
        pub console_out: RefCell<Vec<u8>>,
        pub console_in: RefCell<VecDeque<ConsoleRx>>,
        pub console_rx_irq: Cell<Option<bool>>,
        pub console_deadline: Cell<Option<u64>>,
        pub rtc_deadline: Cell<Option<u64>>,
        pub random_counter: Cell<u8>,
        /// Host RAM: `(base PA, bytes)`.
        pub ram: RefCell<(u64, Vec<u8>)>,
        /// The "hardware" ID registers; unlisted ones read 0.
        pub id_registers: RefCell<Vec<(SysRegId, u64)>>,
    }

    impl Kick for FakePlatform {
        fn kick(&self, pcpu: usize) {
            self.kicks.borrow_mut().push(pcpu);
        }
    }

    impl Platform for FakePlatform {
        fn counter(&self) -> u64 {
            self.now.get()
        }
        fn vtimer_ctl(&self) -> u64 {
            self.vtimer_ctl.get()
        }
        fn set_vtimer_irq_enabled(&self, enabled: bool) {
            self.vtimer_irq_enabled.set(Some(enabled));
        }
        fn set_hyp_timer(&self, deadline: Option<u64>) {
            self.hyp_timer.set(deadline);
        }
        fn clean_ram_to_poc(&self, pa: u64, size: u64) {
            self.cleaned.borrow_mut().push((pa, size));
        }
        fn zero_ram(&self, pa: u64, size: u64) {
            self.zeroed.borrow_mut().push((pa, size));
            let mut ram = self.ram.borrow_mut();
            let base = ram.0;
            let len = ram.1.len() as u64;
            // Only the part of the range the fake's RAM holds.
            let start = pa.clamp(base, base + len) - base;
            let end = (pa + size).clamp(base, base + len) - base;
            ram.1[start as usize..end as usize].fill(0);
        }
        fn guest_sctlr_el1(&self) -> u64 {
            self.sctlr_el1.get()
        }
        fn host_actlr_el1(&self) -> u64 {
            self.actlr_el1.get()
        }
        fn set_os_lock(&self, locked: bool) {
            self.os_lock.set(Some(locked));
        }
        fn guest_stage1_regs(&self) -> crate::hyp::walk_level::Stage1Regs {
            self.stage1
                .get()
                .unwrap_or(crate::hyp::walk_level::Stage1Regs {
                    tcr_el1: 0,
                    ttbr0_el1: 0,
                    ttbr1_el1: 0,
                })
        }
        fn guest_ram_u64(&self, pa: u64) -> Option<u64> {
            let ram = self.ram.borrow();
            let start = usize::try_from(pa.checked_sub(ram.0)?).ok()?;
            let bytes = ram.1.get(start..start + 8)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        }
        fn host_ram(&self, pa: u64, size: u64) -> &[u8] {
            let ram = self.ram.borrow();
            let start = (pa - ram.0) as usize;
            let bytes: &[u8] = &ram.1[start..start + size as usize];
            // Tests only: leak a copy so the `RefCell` borrow can end here.
            Vec::leak(bytes.to_vec())
        }
        fn write_ram(&self, pa: u64, bytes: &[u8]) {
            let mut ram = self.ram.borrow_mut();
            let start = (pa - ram.0) as usize;
            ram.1[start..start + bytes.len()].copy_from_slice(bytes);
        }
        fn with_guest_ram(&self, pa: u64, size: u64, f: &mut dyn FnMut(&mut [u8])) -> bool {
            let mut ram = self.ram.borrow_mut();
            let Some(start) = pa.checked_sub(ram.0).map(|s| s as usize) else {
                return false;
            };
            match ram.1.get_mut(start..start + size as usize) {
                Some(slice) => {
                    f(slice);
                    true
                }
                None => false,
            }
        }
        fn copy_ram(&self, dst: &mut [u8], src: &[u8]) {
            dst.copy_from_slice(src);
        }
        fn console_write(&self, bytes: &[u8]) {
            self.console_out.borrow_mut().extend_from_slice(bytes);
        }
        fn console_getc(&self) -> Option<ConsoleRx> {
            self.console_in.borrow_mut().pop_front()
        }
        fn console_has_input(&self) -> bool {
            !self.console_in.borrow().is_empty()
        }
        fn set_console_rx_irq(&self, enabled: bool) {
            self.console_rx_irq.set(Some(enabled));
        }
        fn set_console_deadline(&self, deadline: Option<u64>) {
            self.console_deadline.set(deadline);
        }
        fn set_rtc_deadline(&self, deadline: Option<u64>) {
            self.rtc_deadline.set(deadline);
        }
        fn fill_random(&self, out: &mut [u8]) -> bool {
            // Deterministic and obviously fake: a counter.
            for b in out.iter_mut() {
                let n = self.random_counter.get();
                *b = n;
                self.random_counter.set(n.wrapping_add(1));
            }
            true
        }
        fn id_register(&self, id: SysRegId) -> u64 {
            // The same contract as the hardware's: only the registers the CPU is asked for.
            if !crate::hyp::cpu_features::reads_hardware(id) {
                return 0;
            }
            let regs = self.id_registers.borrow();
            regs.iter().find(|(r, _)| *r == id).map_or(0, |&(_, v)| v)
        }
    }
}
