//! Loom models of the vCPU request/kick protocol and of PSCI power state. Built only with
//! `RUSTFLAGS="--cfg loom"`; run by `scripts/test-models.sh`.
//!
//! "The guest uses the memory" is modelled by the vCPU reading a `reused` flag while in guest
//! mode, and "the requester reuses the memory" by storing `true` into it once its request call
//! returned. Loom lets a load return any store not ordered after it, so if a requester could
//! return while the vCPU can still be in the guest without having taken the request, some
//! interleaving makes the in-guest read see `true` and the model fails.

extern crate std;

use std::vec::Vec;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread;

use super::power::{PowerState, VmPower, VmState};
use super::request::{
    GuestMode, Kick, Request, RequestSet, VcpuRequests, make_all_request, make_request,
};
use crate::psci::{self, PsciAction, SUCCESS};
use crate::sync::Ordering;
use smccc::psci::error::{ALREADY_ON, ON_PENDING};
use smccc::psci::{PSCI_CPU_ON_64, PSCI_SYSTEM_OFF, PSCI_SYSTEM_RESET};

/// Counts kicks; the modelled vCPUs exit the guest on their own at every possible point, which
/// covers "the IPI arrives" too.
#[derive(Default)]
struct CountingKick(AtomicUsize);

impl Kick for CountingKick {
    fn kick(&self, _pcpu: usize) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn vcpu_in_guest(pcpu: usize) -> VcpuRequests {
    let vcpu = VcpuRequests::new();
    vcpu.set_pcpu(pcpu);
    vcpu.enter_guest().unwrap();
    vcpu
}

/// A requester's "memory": set once its waiting request returned.
struct Requester {
    request: Request,
    reused: AtomicBool,
}

/// The guest touches every requester's memory it has not been told to stop using.
fn guest_runs(taken: RequestSet, requesters: &[&Requester]) {
    for r in requesters {
        if !taken.contains(r.request) {
            assert!(
                !r.reused.load(Ordering::Acquire),
                "vCPU in the guest, without having taken {:?}, after that requester returned",
                r.request
            );
        }
    }
}

/// The vCPU's run loop, bounded: runs the guest it is in, exits, takes requests, and tries to
/// re-enter `rounds` more times.
fn run_loop(vcpu: &VcpuRequests, requesters: &[&Requester], rounds: usize) {
    let mut taken = RequestSet::EMPTY;
    guest_runs(taken, requesters);
    vcpu.exit_guest();
    for _ in 0..rounds {
        taken = taken.union(vcpu.take_requests());
        if vcpu.enter_guest().is_ok() {
            guest_runs(taken, requesters);
            vcpu.exit_guest();
        }
    }
}

/// Two requests: two requests back to back, the second arriving while the vCPU may
/// already be EXITING because of the first; each requester with `wait` returns only after the
/// vCPU took its request or left guest mode. `waits` says which of the two wait.
fn two_requests_back_to_back(waits: [bool; 2]) {
    let vcpu = Arc::new(vcpu_in_guest(0));
    let kick = Arc::new(CountingKick::default());
    let first = Arc::new(Requester {
        request: Request::TlbFlush,
        reused: AtomicBool::new(false),
    });
    let second = Arc::new(Requester {
        request: Request::Stop,
        reused: AtomicBool::new(false),
    });
    let requesters: Vec<_> = [(first.clone(), waits[0]), (second.clone(), waits[1])]
        .into_iter()
        .map(|(requester, wait)| {
            let (vcpu, kick) = (vcpu.clone(), kick.clone());
            thread::spawn(move || {
                make_request(&vcpu, requester.request, wait, &*kick);
                if wait {
                    requester.reused.store(true, Ordering::Release);
                }
            })
        })
        .collect();
    run_loop(&vcpu, &[&first, &second], 1);
    for requester in requesters {
        requester.join().unwrap();
    }
}

/// The second request waits: the case of the KVM vCPU-request thread (2017) (it finds the vCPU EXITING, sends no IPI, and
/// must still wait).
#[test]
fn loom_kick_second_request_while_exiting_still_waits() {
    loom::model(|| two_requests_back_to_back([false, true]));
}

/// The first request waits while a second one piles on.
#[test]
fn loom_kick_first_waiting_request_unaffected_by_second() {
    loom::model(|| two_requests_back_to_back([true, false]));
}

/// Both requesters wait at the same time. Loom cannot bound a schedule in which two
/// spin-waiting threads keep yielding to each other (tokio-rs/loom#162-style livelock of the
/// checker, not of the protocol: each spinner only reads), so this model is explored with at
/// most one preemption; the two models above cover each waiter at the full bound.
#[test]
fn loom_kick_two_waiting_requests_while_exiting() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| two_requests_back_to_back([true, true]));
}

/// Fan-out: one requester waits on two vCPUs in the guest at once
/// (`make_all_request`), the way SYSTEM_OFF and stage-2 unmapping use it.
#[test]
fn loom_kick_make_all_request_waits_for_every_vcpu() {
    loom::model(|| {
        let vcpus = Arc::new([vcpu_in_guest(0), vcpu_in_guest(1)]);
        let requester = Arc::new(Requester {
            request: Request::TlbFlush,
            reused: AtomicBool::new(false),
        });
        let cpus: Vec<_> = (0..2)
            .map(|index| {
                let (vcpus, requester) = (vcpus.clone(), requester.clone());
                thread::spawn(move || run_loop(&vcpus[index], &[&requester], 1))
            })
            .collect();
        let kick = CountingKick::default();
        make_all_request(vcpus.iter(), Request::TlbFlush, true, &kick);
        requester.reused.store(true, Ordering::Release);
        for cpu in cpus {
            cpu.join().unwrap();
        }
        assert!(kick.0.load(Ordering::Relaxed) <= 2);
    });
}

/// wait=false never blocks, even on a vCPU that stays in the guest until the
/// requester has returned (if it blocked, the model would spin forever and loom would fail).
/// Of two such requests, only the one that found the vCPU in the guest sends the IPI.
#[test]
fn loom_kick_without_wait_never_blocks_and_kicks_once() {
    loom::model(|| {
        let vcpu = Arc::new(vcpu_in_guest(0));
        let kick = Arc::new(CountingKick::default());
        let returned = Arc::new(AtomicUsize::new(0));
        let requesters: Vec<_> = [Request::TlbFlush, Request::TlbFlush]
            .into_iter()
            .map(|request| {
                let (vcpu, kick, returned) = (vcpu.clone(), kick.clone(), returned.clone());
                thread::spawn(move || {
                    make_request(&vcpu, request, false, &*kick);
                    returned.fetch_add(1, Ordering::Release);
                })
            })
            .collect();
        // The guest keeps running until both requesters are back.
        while returned.load(Ordering::Acquire) < 2 {
            thread::yield_now();
        }
        assert_eq!(vcpu.mode(), GuestMode::Exiting);
        vcpu.exit_guest();
        for requester in requesters {
            requester.join().unwrap();
        }
        assert_eq!(
            kick.0.load(Ordering::Relaxed),
            1,
            "exactly one IPI per guest entry"
        );
    });
}

const RAM: core::ops::Range<u64> = 0x4000_0000..0x6000_0000;
const ENTRY: u64 = 0x4008_0000;

/// vCPU 0 calls CPU_ON for vCPU 2 while vCPU 1 calls SYSTEM_OFF (or
/// SYSTEM_RESET); vCPU 2's run loop reacts to its requests. Afterwards no vCPU of the VM can
/// run, and no vCPU is in the guest once the system event's waiting Stop request returned.
fn system_event_races_cpu_on(event_fid: u32) {
    loom::model(move || {
        let vm = Arc::new(VmPower::new(3, 0).unwrap());
        // vCPU 1 was started earlier; vCPUs 0 and 1 are in EL2 handling their HVCs.
        vm.cpu_on(1, ENTRY, 0).unwrap();
        vm.claim_start(1).unwrap();
        let requests = Arc::new([
            VcpuRequests::new(),
            VcpuRequests::new(),
            VcpuRequests::new(),
        ]);
        for (pcpu, vcpu) in requests.iter().enumerate() {
            vcpu.set_pcpu(pcpu);
        }
        let stopped = Arc::new(Requester {
            request: Request::Stop,
            reused: AtomicBool::new(false),
        });
        let kick = Arc::new(CountingKick::default());

        // vCPU 0: CPU_ON(vCPU 2), then back into its guest once.
        let vcpu0 = {
            let (vm, requests, kick, stopped) =
                (vm.clone(), requests.clone(), kick.clone(), stopped.clone());
            thread::spawn(move || {
                let outcome = psci::handle(PSCI_CPU_ON_64, [2, ENTRY, 0], 0, &vm, RAM);
                if let PsciAction::StartVcpu { target } = outcome.action {
                    make_request(&requests[target], Request::CpuOn, false, &*kick);
                }
                requests[0].take_requests();
                if vm.may_run(0) && requests[0].enter_guest().is_ok() {
                    // Whatever it took: a vCPU entering after the Stop wait returned is a bug.
                    guest_runs(RequestSet::EMPTY, &[&stopped]);
                    requests[0].exit_guest();
                }
            })
        };
        // vCPU 1: the system event, then stop every vCPU with wait.
        let vcpu1 = {
            let (vm, requests, kick, stopped) =
                (vm.clone(), requests.clone(), kick.clone(), stopped.clone());
            thread::spawn(move || {
                let outcome = psci::handle(event_fid, [0; 3], 1, &vm, RAM);
                assert!(matches!(
                    outcome.action,
                    PsciAction::SystemOff | PsciAction::SystemReset
                ));
                make_all_request(requests.iter(), Request::Stop, true, &*kick);
                stopped.reused.store(true, Ordering::Release);
            })
        };
        // vCPU 2: powered off, waits for CPU_ON; two rounds of its run loop.
        for _ in 0..2 {
            if requests[2].take_requests().contains(Request::CpuOn) {
                vm.claim_start(2);
            }
            if vm.may_run(2) && requests[2].enter_guest().is_ok() {
                guest_runs(RequestSet::EMPTY, &[&stopped]);
                requests[2].exit_guest();
            } else {
                thread::yield_now();
            }
        }
        vcpu0.join().unwrap();
        vcpu1.join().unwrap();

        for vcpu in 0..3 {
            assert!(
                !vm.may_run(vcpu),
                "vCPU {vcpu} can still run after the system event"
            );
            assert_eq!(vm.power_state(vcpu), Some(PowerState::Off));
            assert_eq!(requests[vcpu].mode(), GuestMode::Outside);
        }
        assert_ne!(vm.vm_state(), VmState::Running);
    });
}

#[test]
fn loom_system_off_racing_cpu_on_leaves_no_vcpu_running() {
    system_event_races_cpu_on(PSCI_SYSTEM_OFF);
}

#[test]
fn loom_system_reset_racing_cpu_on_leaves_no_vcpu_running() {
    system_event_races_cpu_on(PSCI_SYSTEM_RESET);
}

/// CPU_ON racing CPU_ON on one target (while the target may already be starting):
/// exactly one SUCCESS, the others ALREADY_ON or ON_PENDING, and the target starts at the
/// winner's entry point.
#[test]
fn loom_cpu_on_racing_cpu_on_has_exactly_one_success() {
    loom::model(|| {
        let vm = Arc::new(VmPower::new(3, 0).unwrap());
        vm.cpu_on(1, ENTRY, 0).unwrap();
        vm.claim_start(1).unwrap();
        let callers: Vec<_> = [(0usize, ENTRY), (1, ENTRY + 0x1000)]
            .into_iter()
            .map(|(caller, entry)| {
                let vm = vm.clone();
                thread::spawn(move || {
                    let outcome = psci::handle(PSCI_CPU_ON_64, [2, entry, 0], caller, &vm, RAM);
                    (outcome.x0_i32(), entry)
                })
            })
            .collect();
        let started = vm.claim_start(2);
        let results: Vec<(i32, u64)> = callers.into_iter().map(|c| c.join().unwrap()).collect();

        let winners: Vec<u64> = results
            .iter()
            .filter(|(code, _)| *code == SUCCESS)
            .map(|(_, entry)| *entry)
            .collect();
        assert_eq!(winners.len(), 1, "results {results:?}");
        for (code, _) in &results {
            assert!(
                [SUCCESS, ALREADY_ON, ON_PENDING].contains(code),
                "results {results:?}"
            );
        }
        let start = started
            .or_else(|| vm.claim_start(2))
            .expect("the winner's CPU_ON is pending");
        assert_eq!(start.entry, winners[0]);
        assert_eq!(vm.power_state(2), Some(PowerState::On));
    });
}
