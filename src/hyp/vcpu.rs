//! The virtual CPU: everything that belongs to one vCPU of a VM — its general registers, PC
//! and PSTATE, the list-register contents it was last given, its timers and whether it is
//! blocked — separate from the physical CPU that happens to run it (`hyp::run`'s per-CPU
//! state). Exit handlers work on it through the accessors below.

use super::context::{FpState, VcpuContext};
use super::runaway::RunawayWatch;
use crate::devices::ptimer::PhysTimer;
use crate::vcpu::request::{Request, RequestSet};
use crate::vgic::{LrEntry, MAX_LIST_REGISTERS};

/// PSTATE a vCPU starts with: EL1h, DAIF masked (Arm ARM D1.9, PE state on reset to EL1).
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;
/// PSTATE.SS, the software-step bit (Arm ARM D2.12, "Software Step exceptions").
const PSTATE_SS: u64 = 1 << 21;
/// PSTATE.BTYPE, the branch type for BTI (Arm ARM D1.5).
const PSTATE_BTYPE: u64 = 0b11 << 10;

/// The guest registers the world switch moves (`arch::switch` relies on this layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub x: [u64; 31],
    /// ELR_EL2: where the guest resumes.
    pub pc: u64,
    /// SPSR_EL2: the guest's PSTATE.
    pub pstate: u64,
}

/// The emulated-timer state of a vCPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuTimers {
    /// The virtual timer's output as last sampled (the timer itself is live in hardware).
    pub vtimer_level: bool,
    /// The emulated EL1 physical timer.
    pub ptimer: PhysTimer,
    /// Its output as last driven into the vGIC.
    pub ptimer_level: bool,
}

/// One virtual CPU.
pub struct Vcpu {
    /// Index within its VM (also its MPIDR affinity, see `vcpu::vcpu_mpidr`).
    pub index: usize,
    pub regs: GuestRegs,
    /// What the list registers were loaded with at the last entry.
    pub lrs: [LrEntry; MAX_LIST_REGISTERS],
    /// How many of `lrs` are loaded.
    pub lrs_loaded: usize,
    /// `Vm::vgic_epoch` at the last fill that loaded nothing (`u64::MAX`: fill next time; a
    /// `Wake` request sets it, [`Vcpu::take_requests_noted`]; the rule is on `Vm::vgic`).
    pub quiet_epoch: u64,
    /// `Vm::generation` this vCPU was last (re)started in.
    pub generation: u64,
    /// Blocked in WFI / CPU_SUSPEND until an interrupt is deliverable.
    pub blocked: bool,
    pub timers: VcpuTimers,
    /// The physical CPU this vCPU last ran on.
    pub last_pcpu: Option<usize>,
    /// The exceptions injected lately, watched for a fault loop at the vector.
    pub runaway: RunawayWatch,
    /// The emulated OS lock (OSLSR_EL1.OSLK), set through OSLAR_EL1 (MDCR_EL2.TDOSA).
    pub os_lock: bool,
    /// Blocked in WFIT: the counter value at which the wait times out.
    pub wake_at: Option<u64>,
    /// Its EL1 system registers, virtual timer and GIC CPU interface while it is off its CPU
    /// (a shared CPU saves them when it leaves; a dedicated CPU holds them for good).
    /// (Boxed: the run loop's hot fields stay together in a small `Vcpu`.)
    pub ctx: alloc::boxed::Box<VcpuContext>,
    /// Its FP/SIMD (or SVE) registers while another vCPU has the CPU's; sized for the CPU's
    /// vector length when its VM is created (`VmConfig::sve_vl_bytes`).
    pub fp: FpState,
    /// The physical CPU whose FP registers its state was last loaded into.
    pub fp_on: Option<usize>,
}

impl Vcpu {
    /// Whether a blocked vCPU may run again at counter value `now` with `deliverable` (an
    /// interrupt is pending for it): an interrupt ends WFI and WFIT, the timeout ends WFIT.
    /// Clears the timeout when the wait ends.
    pub fn wake_up(&mut self, now: u64, deliverable: bool) -> bool {
        let timed_out = self.wake_at.is_some_and(|at| now >= at);
        if deliverable || timed_out {
            self.wake_at = None;
            true
        } else {
            false
        }
    }

    /// Notes what the requests just taken mean for the vCPU's own state: a `Wake` says an
    /// interrupt may have become loadable for it without `Vm::vgic_epoch` moving (an SGI), so
    /// its list registers are filled on the next entry whatever the epoch says.
    pub fn take_requests_noted(&mut self, taken: RequestSet) {
        if taken.contains(Request::Wake) {
            self.quiet_epoch = u64::MAX;
        }
    }

    pub fn new(index: usize) -> Self {
        Self {
            index,
            regs: GuestRegs::default(),
            lrs: [LrEntry::default(); MAX_LIST_REGISTERS],
            lrs_loaded: 0,
            quiet_epoch: u64::MAX,
            generation: 0,
            blocked: false,
            timers: VcpuTimers::default(),
            last_pcpu: None,
            runaway: RunawayWatch::default(),
            os_lock: false,
            wake_at: None,
            ctx: alloc::boxed::Box::new(VcpuContext::reset()),
            fp: FpState::new(None),
            fp_on: None,
        }
    }

    /// General register `n` as an instruction reads it: 31 is XZR (reads 0).
    pub fn reg(&self, n: u8) -> u64 {
        self.regs.x.get(usize::from(n)).copied().unwrap_or(0)
    }

    /// Writes general register `n`; writes to 31 (XZR) are discarded.
    pub fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.regs.x.get_mut(usize::from(n)) {
            *r = value;
        }
    }

    /// Completes the trapped instruction: advances the PC past it (4 bytes, or 2 for a 16-bit
    /// T32 instruction, per ESR_EL2.IL) and moves the software-step state machine on as the
    /// CPU would have (PSTATE.SS cleared, so a pending step exception is taken after it), and
    /// clears PSTATE.BTYPE — as KVM's `kvm_skip_instr`.
    pub fn skip_instruction(&mut self, il32: bool) {
        self.regs.pc = self.regs.pc.wrapping_add(if il32 { 4 } else { 2 });
        self.regs.pstate &= !(PSTATE_SS | PSTATE_BTYPE);
    }

    /// Architectural reset of the registers this type holds, starting at `entry` with `x0`
    /// (PSCI CPU_ON's context id, or the DTB address for the boot vCPU). The caller resets
    /// the EL1 system registers and the GIC virtual CPU interface of the hardware.
    pub fn reset_to(&mut self, entry: u64, x0: u64) {
        self.regs = GuestRegs::default();
        self.regs.x[0] = x0;
        self.regs.pc = entry;
        self.regs.pstate = PSTATE_EL1H_MASKED;
        self.blocked = false;
        self.wake_at = None;
        self.timers.ptimer = PhysTimer::new();
        self.runaway = RunawayWatch::default();
        // Unlocked, as KVM resets OSLSR_EL1 (Linux clears it at boot anyway).
        self.os_lock = false;
    }
}

#[cfg(test)]
mod exit_vcpu_tests {
    use super::*;

    /// A `Wake` request forces the next list-register fill; other requests leave a quiet
    /// vCPU's "nothing to load" standing.
    #[test]
    fn exit_a_wake_request_forces_the_next_fill() {
        let mut v = Vcpu::new(0);
        v.quiet_epoch = 7;
        v.take_requests_noted(Request::TlbFlush.into());
        v.take_requests_noted(RequestSet::EMPTY);
        assert_eq!(v.quiet_epoch, 7);
        v.take_requests_noted(RequestSet::from(Request::Wake).union(Request::Stop.into()));
        assert_eq!(v.quiet_epoch, u64::MAX);
    }

    #[test]
    fn exit_reg_31_reads_as_xzr() {
        let mut v = Vcpu::new(0);
        v.regs.x[30] = 7;
        v.regs.x[0] = 1;
        assert_eq!(v.reg(31), 0);
        assert_eq!(v.reg(30), 7);
        assert_eq!(v.reg(0), 1);
        assert_eq!(v.reg(200), 0);
    }

    #[test]
    fn exit_set_reg_31_is_discarded() {
        let mut v = Vcpu::new(0);
        v.set_reg(31, 5);
        v.set_reg(3, 9);
        assert_eq!(v.regs.x[3], 9);
        assert!(v.regs.x.iter().all(|&r| r == 0 || r == 9));
        assert_eq!(v.reg(31), 0);
    }

    #[test]
    fn exit_skip_32_bit_instruction() {
        let mut v = Vcpu::new(0);
        v.regs.pc = 0x4008_0000;
        v.regs.pstate = 0x3c5;
        v.skip_instruction(true);
        assert_eq!(v.regs.pc, 0x4008_0004);
        assert_eq!(v.regs.pstate, 0x3c5);
    }

    #[test]
    fn exit_skip_16_bit_t32_instruction() {
        let mut v = Vcpu::new(0);
        v.regs.pc = 0x8000;
        v.skip_instruction(false);
        assert_eq!(v.regs.pc, 0x8002);
    }

    #[test]
    fn exit_skip_under_single_step_clears_pstate_ss() {
        let mut v = Vcpu::new(0);
        v.regs.pc = 0x1000;
        v.regs.pstate = 0x3c5 | PSTATE_SS;
        v.skip_instruction(true);
        assert_eq!(v.regs.pc, 0x1004);
        assert_eq!(v.regs.pstate & PSTATE_SS, 0, "the step completed");
        assert_eq!(v.regs.pstate, 0x3c5, "nothing else changes");
    }

    #[test]
    fn exit_skip_clears_btype() {
        let mut v = Vcpu::new(0);
        v.regs.pstate = 0x3c5 | (0b10 << 10);
        v.skip_instruction(true);
        assert_eq!(v.regs.pstate, 0x3c5);
    }

    #[test]
    fn exit_reset_starts_masked_at_el1h() {
        let mut v = Vcpu::new(2);
        v.regs.x[5] = 3;
        v.blocked = true;
        v.reset_to(0x4020_0000, 0x4800_0000);
        assert_eq!(v.regs.pc, 0x4020_0000);
        assert_eq!(v.regs.x[0], 0x4800_0000);
        assert_eq!(v.regs.x[5], 0);
        assert_eq!(v.regs.pstate, PSTATE_EL1H_MASKED);
        assert!(!v.blocked);
    }
}
