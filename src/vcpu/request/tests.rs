//! Unit tests of the request/kick state machine; all have `kick` in their name
//! (`cargo test kick`). The exhaustive interleavings are in `vcpu::loom_models`.

extern crate std;

use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::vec::Vec;

use super::*;

/// Records the physical CPUs kicked.
#[derive(Default)]
struct RecordingKick(StdMutex<Vec<usize>>);

impl Kick for RecordingKick {
    fn kick(&self, pcpu: usize) {
        self.0.lock().unwrap().push(pcpu);
    }
}

impl RecordingKick {
    fn kicked(&self) -> Vec<usize> {
        self.0.lock().unwrap().clone()
    }
}

fn vcpu_on(pcpu: usize) -> VcpuRequests {
    let vcpu = VcpuRequests::new();
    vcpu.set_pcpu(pcpu);
    vcpu
}

#[test]
fn kick_is_sent_once_and_the_target_becomes_exiting() {
    let kick = RecordingKick::default();
    let vcpu = vcpu_on(3);
    vcpu.enter_guest().unwrap();
    assert_eq!(vcpu.mode(), GuestMode::InGuest);
    assert!(make_request(&vcpu, Request::TlbFlush, false, &kick));
    assert_eq!(vcpu.mode(), GuestMode::Exiting);
    // A second request while exiting sends no second IPI (avoiding it is the point
    // of the exiting state) ...
    assert!(!make_request(&vcpu, Request::Stop, false, &kick));
    assert_eq!(kick.kicked(), [3]);
    assert_eq!(vcpu.mode(), GuestMode::Exiting);
    vcpu.exit_guest();
    assert_eq!(vcpu.mode(), GuestMode::Outside);
    let taken = vcpu.take_requests();
    assert!(taken.contains(Request::TlbFlush) && taken.contains(Request::Stop));
}

#[test]
fn kick_is_not_sent_for_a_tlb_flush_outside_the_guest() {
    let kick = RecordingKick::default();
    let vcpu = vcpu_on(1);
    assert!(!make_request(&vcpu, Request::TlbFlush, true, &kick));
    assert!(kick.kicked().is_empty());
    assert!(vcpu.pending().contains(Request::TlbFlush));
}

#[test]
fn kick_wakes_a_blocked_vcpu_for_wake_stop_reset_and_cpu_on() {
    for request in [Request::Wake, Request::Stop, Request::Reset, Request::CpuOn] {
        let kick = RecordingKick::default();
        let vcpu = vcpu_on(2);
        assert!(make_request(&vcpu, request, false, &kick), "{request:?}");
        assert_eq!(kick.kicked(), [2]);
        assert_eq!(vcpu.mode(), GuestMode::Outside);
    }
}

#[test]
fn kick_is_not_sent_to_a_vcpu_never_loaded_on_a_cpu() {
    let kick = RecordingKick::default();
    let vcpu = VcpuRequests::new();
    assert!(!make_request(&vcpu, Request::Wake, false, &kick));
    assert!(kick.kicked().is_empty());
    assert!(vcpu.pending().contains(Request::Wake));
}

#[test]
fn kick_request_pending_aborts_guest_entry_until_taken() {
    let kick = RecordingKick::default();
    let vcpu = vcpu_on(0);
    make_request(&vcpu, Request::Reset, false, &kick);
    assert_eq!(
        vcpu.enter_guest(),
        Err(EntryError::RequestsPending(Request::Reset.into()))
    );
    assert_eq!(vcpu.mode(), GuestMode::Outside);
    assert_eq!(vcpu.take_requests(), RequestSet::from(Request::Reset));
    assert_eq!(vcpu.take_requests(), RequestSet::EMPTY);
    assert_eq!(vcpu.enter_guest(), Ok(()));
}

#[test]
fn kick_state_rejects_entering_twice() {
    let vcpu = vcpu_on(0);
    vcpu.enter_guest().unwrap();
    assert_eq!(
        vcpu.enter_guest(),
        Err(EntryError::NotOutside(GuestMode::InGuest))
    );
}

#[test]
fn kick_exit_keeps_requests_and_take_returns_each_kind() {
    let kick = RecordingKick::default();
    let vcpu = vcpu_on(0);
    vcpu.enter_guest().unwrap();
    for request in Request::ALL {
        make_request(&vcpu, request, false, &kick);
    }
    vcpu.exit_guest();
    let taken = vcpu.take_requests();
    assert_eq!(taken.iter().collect::<Vec<_>>(), Request::ALL);
    assert!(vcpu.pending().is_empty());
}

#[test]
fn kick_without_wait_returns_while_the_target_stays_in_the_guest() {
    let kick = RecordingKick::default();
    let vcpus = [vcpu_on(0), vcpu_on(1)];
    for vcpu in &vcpus {
        vcpu.enter_guest().unwrap();
    }
    assert_eq!(make_all_request(&vcpus, Request::TlbFlush, false, &kick), 2);
    assert!(vcpus.iter().all(|v| v.mode() == GuestMode::Exiting));
}

#[test]
fn kick_make_all_request_kicks_only_vcpus_in_the_guest() {
    let kick = RecordingKick::default();
    let vcpus = [vcpu_on(0), vcpu_on(1), vcpu_on(2)];
    vcpus[1].enter_guest().unwrap();
    assert_eq!(make_all_request(&vcpus, Request::TlbFlush, false, &kick), 1);
    assert_eq!(kick.kicked(), [1]);
    assert!(
        vcpus
            .iter()
            .all(|v| v.pending().contains(Request::TlbFlush))
    );
}

/// A physical CPU that runs the vCPU in the guest until kicked, then exits, takes its requests
/// and (if `reenter`) enters again. Returns when told to stop.
fn guest_cpu(
    vcpu: Arc<VcpuRequests>,
    kicked: Arc<AtomicBool>,
    reenter: bool,
) -> thread::JoinHandle<()> {
    vcpu.enter_guest().unwrap();
    thread::spawn(move || {
        while !kicked.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        vcpu.exit_guest();
        vcpu.take_requests();
        if reenter {
            vcpu.enter_guest().unwrap();
        }
    })
}

struct FlagKick(Arc<AtomicBool>);

impl Kick for FlagKick {
    fn kick(&self, _pcpu: usize) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn kick_with_wait_returns_only_after_the_target_left_the_guest() {
    for reenter in [false, true] {
        let vcpu = Arc::new(vcpu_on(0));
        let kicked = Arc::new(AtomicBool::new(false));
        let cpu = guest_cpu(vcpu.clone(), kicked.clone(), reenter);
        make_request(&vcpu, Request::Stop, true, &FlagKick(kicked.clone()));
        // Returned: the vCPU is outside, or re-entered having taken the request.
        assert!(
            vcpu.mode() == GuestMode::Outside || !vcpu.pending().contains(Request::Stop),
            "requester returned while the vCPU could run the guest without the request"
        );
        assert!(kicked.load(Ordering::Acquire));
        cpu.join().unwrap();
    }
}

#[test]
fn kick_second_waiting_request_while_exiting_still_waits() {
    let vcpu = Arc::new(vcpu_on(0));
    vcpu.enter_guest().unwrap();
    let first_kick = Arc::new(AtomicBool::new(false));
    // First requester: kicks, does not wait. The vCPU is now exiting but still in the guest.
    make_request(
        &vcpu,
        Request::TlbFlush,
        false,
        &FlagKick(first_kick.clone()),
    );
    assert!(first_kick.load(Ordering::Acquire));
    assert_eq!(vcpu.mode(), GuestMode::Exiting);
    // Second requester waits; no kick of its own. The vCPU exits a little later.
    let exited = Arc::new(AtomicBool::new(false));
    let cpu = {
        let (vcpu, exited) = (vcpu.clone(), exited.clone());
        thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(20));
            exited.store(true, Ordering::Release);
            vcpu.exit_guest();
        })
    };
    let second_kick = Arc::new(AtomicBool::new(false));
    make_request(&vcpu, Request::Stop, true, &FlagKick(second_kick.clone()));
    assert!(
        exited.load(Ordering::Acquire),
        "second requester did not wait"
    );
    assert!(!second_kick.load(Ordering::Acquire));
    cpu.join().unwrap();
}
