//! Runaway vCPUs: a guest whose exception handler cannot run. Its VBAR_EL1 points at nothing
//! (0 after reset, or an address with no RAM behind it), or the handler's first instructions
//! fault: every fault Bulkhead reflects into the guest sends it to the vector, where the same
//! fault happens again, forever — a loop of exits that never reaches guest code that could
//! get it out.
//!
//! The sign is precise: an injected exception whose ELR_EL1 (where the fault happened) lies
//! inside the 0x80-byte vector entry it is about to enter again (Arm ARM D1.10.2, "Exception
//! vectors": 32 instructions per entry). The guest faulted before its handler got anywhere.
//! Taking that exception again with identical ESR, FAR and ELR [`REPEATS`] times in a row is
//! a loop: exception entry masks interrupts and leaves the general registers alone, so nothing
//! changes from one round to the next. A guest that legitimately takes many faults — stage-2
//! page faults (mapped, never injected), MMIO, an external abort its handler recovers from,
//! an EL0 task refaulting at its own PC — never has ELR inside the vector it enters, so it is
//! never stopped; a guest that faults at different places never repeats.

use super::inject::El1Entry;

/// Size of one exception vector entry.
const VECTOR_ENTRY_BYTES: u64 = 0x80;

/// Identical faults at the vector in a row that make a runaway. A loop round is one exit and
/// one injection (a few microseconds), so this is far under a millisecond of guest time.
pub const REPEATS: u32 = 16;

/// A vCPU found looping on a fault at its own exception vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runaway {
    /// ESR_EL1, FAR_EL1 (0 when the exception sets none) and ELR_EL1 of the repeated exception.
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
    /// The vector it kept entering.
    pub vector: u64,
    /// Counter ticks from the first of the repeats to the last.
    pub ticks: u64,
}

/// Watches one vCPU's injected exceptions for a runaway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunawayWatch {
    /// The last injected exception that faulted inside its own vector: (ESR, FAR, ELR,
    /// vector, counter value at its first occurrence).
    last: Option<(u64, u64, u64, u64, u64)>,
    repeats: u32,
}

impl RunawayWatch {
    /// Looks at one exception about to be injected at counter value `now`; `Some` once it is
    /// the [`REPEATS`]th identical fault inside the vector it enters.
    pub fn observe(&mut self, entry: &El1Entry, now: u64) -> Option<Runaway> {
        let in_vector = entry.elr_el1.wrapping_sub(entry.pc) < VECTOR_ENTRY_BYTES;
        if !in_vector {
            *self = Self::default();
            return None;
        }
        let far = entry.far_el1.unwrap_or(0);
        let this = (entry.esr_el1, far, entry.elr_el1, entry.pc);
        match self.last {
            Some((esr, far, elr, vector, _)) if (esr, far, elr, vector) == this => {
                self.repeats += 1;
            }
            _ => {
                self.last = Some((this.0, this.1, this.2, this.3, now));
                self.repeats = 1;
            }
        }
        let (esr, far, elr, vector, first) = self.last?;
        (self.repeats >= REPEATS).then(|| {
            *self = Self::default();
            Runaway {
                esr,
                far,
                elr,
                vector,
                ticks: now.wrapping_sub(first),
            }
        })
    }
}

#[cfg(test)]
mod exit_runaway_tests {
    use super::*;
    use crate::hyp::inject::{Exception, FSC_EXTERNAL, GuestState, exception_entry};

    const EL1H: u64 = 0x3c5;
    const EL0T: u64 = 0x0;

    fn entry(exception: Exception, pc: u64, pstate: u64, vbar: u64) -> El1Entry {
        exception_entry(
            exception,
            GuestState {
                pc,
                pstate,
                vbar_el1: vbar,
                sctlr_el1: 0x30d0_0800,
            },
        )
    }

    /// Feeds `rounds` injections made by `next(round)`; the round that reported a runaway.
    fn first_runaway(rounds: u32, mut next: impl FnMut(u32) -> El1Entry) -> Option<(u32, Runaway)> {
        let mut watch = RunawayWatch::default();
        (0..rounds).find_map(|round| {
            watch
                .observe(&next(round), 1000 + u64::from(round) * 10)
                .map(|r| (round, r))
        })
    }

    #[test]
    fn exit_runaway_vbar_zero_instruction_abort_loop_is_caught() {
        // A raw binary that takes an exception with VBAR_EL1 = 0: the fetch at 0x200 has no
        // RAM behind it, the abort is injected at ... 0x200.
        let exc = Exception::InstructionAbort {
            fsc: FSC_EXTERNAL,
            far: 0x200,
        };
        let first = entry(exc, 0x4008_1234, EL1H, 0);
        assert_eq!(first.pc, 0x200);
        let (round, r) = first_runaway(100, |round| {
            if round == 0 {
                first
            } else {
                entry(exc, 0x200, EL1H, 0)
            }
        })
        .expect("caught");
        assert_eq!(round, REPEATS, "the first injection is outside the vector");
        assert_eq!((r.elr, r.far, r.vector), (0x200, 0x200, 0x200));
        assert_eq!(r.esr >> 26, 0x21, "instruction abort, current EL");
        assert_eq!(r.ticks, u64::from(REPEATS - 1) * 10);
    }

    #[test]
    fn exit_runaway_handler_faulting_a_few_instructions_in_is_caught() {
        // The handler's third instruction loads from an IPA with nothing behind it.
        let vbar = 0x4010_0000;
        let exc = Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            far: 0x1000,
            write: false,
        };
        let r = first_runaway(100, |_| entry(exc, vbar + 0x208, EL1H, vbar));
        assert_eq!(
            r.map(|(round, r)| (round, r.elr)),
            Some((REPEATS - 1, vbar + 0x208))
        );
        // Undefined instruction at the vector itself (VBAR on zeroed RAM: UDF #0).
        let r = first_runaway(100, |_| entry(Exception::Undef, vbar + 0x200, EL1H, vbar));
        assert_eq!(r.map(|(round, r)| (round, r.far)), Some((REPEATS - 1, 0)));
    }

    #[test]
    fn exit_runaway_never_stops_a_guest_whose_faults_land_outside_the_vector() {
        let vbar = 0x4010_0000;
        // A kernel touching an unbacked IPA and recovering (the probe's chaos mode, Linux's
        // external-abort fixups): the same fault over and over, never inside the vector.
        let exc = Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            far: 0x0a00_0000,
            write: true,
        };
        assert_eq!(
            first_runaway(10_000, |_| entry(exc, 0x4008_0040, EL1H, vbar)),
            None
        );
        // An EL0 task retrying a faulting load forever (a SIGBUS handler that returns).
        assert_eq!(
            first_runaway(10_000, |_| entry(exc, 0x40_0000, EL0T, vbar)),
            None
        );
        // The instruction just past the vector entry is outside it.
        assert_eq!(
            first_runaway(10_000, |_| entry(exc, vbar + 0x280, EL1H, vbar)),
            None
        );
        // A fault before the vector base (wrapping arithmetic) is outside it too.
        assert_eq!(
            first_runaway(10_000, |_| entry(exc, vbar - 4, EL1H, vbar)),
            None
        );
    }

    #[test]
    fn exit_runaway_needs_identical_faults_in_a_row() {
        let vbar = 0x4010_0000;
        // A handler at the vector that walks memory: the FAR differs each time.
        let r = first_runaway(10_000, |round| {
            entry(
                Exception::DataAbort {
                    fsc: FSC_EXTERNAL,
                    far: 0x1000 + u64::from(round) * 8,
                    write: false,
                },
                vbar + 0x200,
                EL1H,
                vbar,
            )
        });
        assert_eq!(r, None);
        // Every other injection elsewhere breaks the run of repeats.
        let r = first_runaway(10_000, |round| {
            if round % (REPEATS - 1) == 0 {
                entry(Exception::Undef, 0x4008_0000, EL1H, vbar)
            } else {
                entry(Exception::Undef, vbar + 0x200, EL1H, vbar)
            }
        });
        assert_eq!(r, None);
    }
}

#[cfg(test)]
mod exit_inject_runaway_tests {
    use super::REPEATS;
    use crate::hyp::inject::{Exception, FSC_EXTERNAL, inject};
    use crate::hyp::vcpu::Vcpu;

    #[test]
    fn exit_inject_stops_a_vcpu_looping_at_vbar_zero_and_leaves_it_as_it_was() {
        let mut v = Vcpu::new(0);
        v.reset_to(0x4008_0000, 0);
        let exc = |far| Exception::InstructionAbort {
            fsc: FSC_EXTERNAL,
            far,
        };
        // The first fault, in the kernel, sends the vCPU to VBAR_EL1 (0) + 0x200.
        let first = inject(&mut v, exc(0x4008_0000), 0, 0x30d0_0800, 0).unwrap();
        assert_eq!((first.elr_el1, v.regs.pc), (0x4008_0000, 0x200));
        for round in 1..REPEATS {
            let e = inject(&mut v, exc(0x200), 0, 0x30d0_0800, u64::from(round)).unwrap();
            assert_eq!((e.elr_el1, v.regs.pc), (0x200, 0x200));
        }
        let regs = v.regs;
        let r = inject(&mut v, exc(0x200), 0, 0x30d0_0800, 100).unwrap_err();
        assert_eq!((r.elr, r.far, r.vector, r.ticks), (0x200, 0x200, 0x200, 99));
        assert_eq!(
            r.esr, 0x8600_0010,
            "instruction abort, current EL, external"
        );
        assert_eq!(v.regs, regs, "stopped where it faulted");
        // A reset forgets the history.
        v.reset_to(0x4008_0000, 0);
        assert!(inject(&mut v, exc(0x200), 0, 0x30d0_0800, 101).is_ok());
    }
}
