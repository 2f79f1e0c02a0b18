//! The guest's EL1 physical timer (CNTP_CTL/CVAL/TVAL_EL0), emulated.
//!
//! The virtual timer is the guest's own hardware; the physical one is shared with the
//! hypervisor, so its registers trap (CNTHCTL_EL2.EL1PCEN = 0) and land here. The hypervisor
//! backs the deadline with its own EL2 physical timer and drives PPI 30 from [`level`].
//! Plain state over `now` (the physical counter), so it is host-tested.
//!
//! [`level`]: PhysTimer::level

/// CNTP_CTL_EL0 bits.
const ENABLE: u64 = 1 << 0;
const IMASK: u64 = 1 << 1;
const ISTATUS: u64 = 1 << 2;

/// Which timer register a trapped access names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerReg {
    /// CNTP_TVAL_EL0 (op2 = 0).
    Tval,
    /// CNTP_CTL_EL0 (op2 = 1).
    Ctl,
    /// CNTP_CVAL_EL0 (op2 = 2).
    Cval,
}

impl TimerReg {
    /// From the `op2` of a trapped `op0=3, op1=3, CRn=14, CRm=2` access.
    pub fn from_op2(op2: u64) -> Option<Self> {
        match op2 {
            0 => Some(Self::Tval),
            1 => Some(Self::Ctl),
            2 => Some(Self::Cval),
            _ => None,
        }
    }
}

/// One vCPU's physical timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhysTimer {
    ctl: u64,
    cval: u64,
}

impl PhysTimer {
    /// The timer at reset: disabled.
    pub const fn new() -> Self {
        Self { ctl: 0, cval: 0 }
    }

    fn condition(&self, now: u64) -> bool {
        now >= self.cval
    }

    /// What the guest reads.
    pub fn read(&self, reg: TimerReg, now: u64) -> u64 {
        match reg {
            TimerReg::Ctl => self.ctl | if self.condition(now) { ISTATUS } else { 0 },
            TimerReg::Cval => self.cval,
            // TVAL is the signed 32-bit distance to CVAL.
            TimerReg::Tval => self.cval.wrapping_sub(now) & 0xffff_ffff,
        }
    }

    /// A guest write.
    pub fn write(&mut self, reg: TimerReg, value: u64, now: u64) {
        match reg {
            TimerReg::Ctl => self.ctl = value & (ENABLE | IMASK),
            TimerReg::Cval => self.cval = value,
            TimerReg::Tval => self.cval = now.wrapping_add(value as u32 as i32 as i64 as u64),
        }
    }

    /// The timer's interrupt output: enabled, unmasked and expired.
    pub fn level(&self, now: u64) -> bool {
        self.ctl & (ENABLE | IMASK) == ENABLE && self.condition(now)
    }

    /// When the output will rise, if it is armed and not yet expired (for the backing timer).
    pub fn deadline(&self, now: u64) -> Option<u64> {
        (self.ctl & (ENABLE | IMASK) == ENABLE && !self.condition(now)).then_some(self.cval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_timer_never_fires() {
        let mut t = PhysTimer::new();
        t.write(TimerReg::Cval, 100, 0);
        assert!(!t.level(200));
        assert_eq!(t.deadline(50), None);
        // ISTATUS still reflects the condition.
        assert_eq!(t.read(TimerReg::Ctl, 200), ISTATUS);
    }

    #[test]
    fn armed_timer_fires_at_cval() {
        let mut t = PhysTimer::new();
        t.write(TimerReg::Cval, 1000, 0);
        t.write(TimerReg::Ctl, ENABLE, 0);
        assert_eq!(t.deadline(10), Some(1000));
        assert!(!t.level(999));
        assert!(t.level(1000));
        assert_eq!(t.deadline(1000), None);
        assert_eq!(t.read(TimerReg::Ctl, 1000), ENABLE | ISTATUS);
    }

    #[test]
    fn imask_silences_the_output() {
        let mut t = PhysTimer::new();
        t.write(TimerReg::Ctl, ENABLE | IMASK, 0);
        assert!(!t.level(5));
        assert_eq!(t.deadline(0), None);
    }

    #[test]
    fn tval_is_signed_and_relative() {
        let mut t = PhysTimer::new();
        t.write(TimerReg::Tval, 500, 1000);
        assert_eq!(t.read(TimerReg::Cval, 0), 1500);
        assert_eq!(t.read(TimerReg::Tval, 1200), 300);
        // Past the deadline TVAL goes negative (as 32 bits).
        assert_eq!(t.read(TimerReg::Tval, 1600), (-100i32) as u32 as u64);
        t.write(TimerReg::Tval, (-10i32) as u32 as u64, 1000);
        assert_eq!(t.read(TimerReg::Cval, 0), 990);
        // Reserved CTL bits (and ISTATUS) are not writable.
        t.write(TimerReg::Ctl, !0, 0);
        assert_eq!(t.read(TimerReg::Ctl, 0) & !ISTATUS, ENABLE | IMASK);
    }

    #[test]
    fn only_three_registers() {
        assert_eq!(TimerReg::from_op2(1), Some(TimerReg::Ctl));
        assert_eq!(TimerReg::from_op2(3), None);
    }
}
