//! A vCPU's timers as the guest sees them. The virtual timer is the guest's own hardware:
//! its output is sampled on exits and forwarded as the level of PPI 27 in the vGIC. The EL1
//! physical timer traps (CNTHCTL_EL2.EL1PCEN = 0) and is emulated (`devices::ptimer`), its
//! deadline backed by the EL2 physical timer, its output driving PPI 30.

use super::platform::Platform;
use super::vcpu::Vcpu;
use super::vm::Vm;
use crate::devices::ptimer::TimerReg;

/// The virtual timer PPI (INTID 27), the same physical and virtual.
pub const VTIMER_INTID: u32 = crate::guest_layout::VTIMER_INTID;
/// The EL1 physical timer PPI (INTID 30), emulated for the guest.
pub const PTIMER_INTID: u32 = 30;
/// The EL2 physical timer PPI (INTID 26), backing the emulated one.
pub const HYP_TIMER_INTID: u32 = 26;

/// CNTV_CTL_EL0: ENABLE, IMASK, ISTATUS.
const CTL_ENABLE_IMASK_ISTATUS: u64 = 0b111;
const CTL_FIRING: u64 = 0b101;

/// Samples the virtual timer's output (ENABLE and ISTATUS set, IMASK clear) and forwards a
/// change to the vGIC. Inline: it runs on every exit, and the output rarely changes.
#[inline(always)]
pub fn sample_vtimer(vm: &Vm, vcpu: &mut Vcpu, p: &impl Platform) {
    let level = p.vtimer_ctl() & CTL_ENABLE_IMASK_ISTATUS == CTL_FIRING;
    if level != vcpu.timers.vtimer_level {
        vtimer_changed(vm, vcpu, level, p);
    }
}

#[inline(never)]
fn vtimer_changed(vm: &Vm, vcpu: &mut Vcpu, level: bool, p: &impl Platform) {
    if let Ok(set) = vm.vgic().set_line_level(vcpu.index, VTIMER_INTID, level) {
        vm.kick_vcpus(set, p);
    }
    set_vtimer_level(vcpu, level, p);
}

/// When a descheduled vCPU's virtual timer (CNTV_CTL_EL0 `ctl`, CNTV_CVAL_EL0 `cval`, saved
/// when it left its CPU) fires, in physical counts: its compare value plus the VM's
/// CNTVOFF_EL2. None when it cannot fire (disabled, masked) or fires with its level already in
/// the vGIC (`level`: what the last sample forwarded). A timer that started firing after the
/// last sample — between the vCPU's last look and its context being saved — is due at once,
/// so its next run samples it.
pub fn vtimer_deadline(ctl: u64, cval: u64, cntvoff: u64, level: bool) -> Option<u64> {
    const ENABLE: u64 = 0b001;
    const IMASK: u64 = 0b010;
    const ISTATUS: u64 = 0b100;
    let firing = ctl & ISTATUS != 0;
    (ctl & (ENABLE | IMASK) == ENABLE && !(firing && level)).then(|| cval.saturating_add(cntvoff))
}

/// Records the virtual timer's level. While the virtual interrupt is pending for the guest
/// the physical PPI stays masked, so it does not fire again and again until the guest handles
/// it.
pub fn set_vtimer_level(vcpu: &mut Vcpu, level: bool, p: &impl Platform) {
    if level != vcpu.timers.vtimer_level {
        vcpu.timers.vtimer_level = level;
        p.set_vtimer_irq_enabled(!level);
    }
}

/// Re-evaluates the emulated physical timer: drives PPI 30 and arms (or stops) the EL2 timer
/// that wakes this CPU at its deadline, or at the vCPU's WFIT timeout if that comes first.
pub fn update_ptimer(vm: &Vm, vcpu: &mut Vcpu, p: &impl Platform) {
    let now = p.counter();
    let level = vcpu.timers.ptimer.level(now);
    if level != vcpu.timers.ptimer_level {
        vcpu.timers.ptimer_level = level;
        if let Ok(set) = vm.vgic().set_line_level(vcpu.index, PTIMER_INTID, level) {
            vm.kick_vcpus(set, p);
        }
    }
    // The earlier of the emulated timer's deadline and a WFIT timeout.
    let deadline = match (vcpu.timers.ptimer.deadline(now), vcpu.wake_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    p.set_hyp_timer(deadline);
}

/// A trapped MRS/MSR of CNTP_TVAL/CTL/CVAL_EL0: returns the value read (for MRS).
pub fn ptimer_access(
    vm: &Vm,
    vcpu: &mut Vcpu,
    reg: TimerReg,
    write: Option<u64>,
    p: &impl Platform,
) -> u64 {
    let now = p.counter();
    let value = match write {
        Some(value) => {
            vcpu.timers.ptimer.write(reg, value, now);
            0
        }
        None => vcpu.timers.ptimer.read(reg, now),
    };
    update_ptimer(vm, vcpu, p);
    value
}

#[cfg(test)]
mod tests {
    use super::vtimer_deadline;

    #[test]
    fn a_descheduled_vtimer_wakes_at_its_compare_value_plus_the_offset() {
        assert_eq!(vtimer_deadline(0b001, 1000, 50, false), Some(1050));
        assert_eq!(vtimer_deadline(0b000, 1000, 50, false), None, "disabled");
        assert_eq!(vtimer_deadline(0b011, 1000, 50, false), None, "masked");
        assert_eq!(
            vtimer_deadline(0b101, 1000, 50, true),
            None,
            "firing, and the vGIC has its level"
        );
        assert_eq!(
            vtimer_deadline(0b101, 1000, 50, false),
            Some(1050),
            "fired after the last sample: due (in the past) so the next run samples it"
        );
        assert_eq!(vtimer_deadline(0b001, u64::MAX, 50, false), Some(u64::MAX));
    }
}
