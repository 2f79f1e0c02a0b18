//! Loom models of the request/kick/wake protocol with a vCPU that migrates between two
//! physical CPUs: the real `VcpuRequests` word and the real `Scheduler` behind one lock (the
//! run loop's global scheduler lock). Built only with `RUSTFLAGS="--cfg loom"`; run by
//! `scripts/test-models.sh`.
//!
//! The modelled run loop, which the hypervisor's must follow:
//! - pick under the lock, then, outside it, `set_pcpu(cpu)` BEFORE `take_requests`: the
//!   take is a read-modify-write of the request word, so every later requester that reads
//!   the word also reads the new `pcpu` and kicks the CPU that now holds the vCPU;
//! - `enter_guest` / `exit_guest` around guest code, as on a dedicated CPU;
//! - a vCPU that wants to wait (WFI) blocks unless a waking request is pending, and leaves
//!   the CPU with `leave(Block)` under the lock;
//! - a kicked CPU, under the lock, wakes (`Scheduler::wake`) every vCPU blocked on it — and
//!   the vCPU running on it — that has a waking request pending. The kick may be handled at
//!   any point, also between a vCPU's "nothing pending, block" decision and its
//!   `leave(Block)`: waking the running vCPU then makes that `leave(Block)` leave it runnable.
//!
//! vCPU V may run on CPU 0 or 1 and starts in the guest on CPU 0; vCPU W is pinned to CPU 0,
//! so once V left CPU 0 and W runs there, CPU 1 may steal V (and V's home becomes CPU 1).

extern crate std;

use std::vec::Vec;

use loom::sync::Arc;
use loom::sync::atomic::AtomicBool;
use loom::thread;

use super::{Leave, Scheduler, Ticks, VcpuRef, VcpuState};
use crate::config::CpuSet;
use crate::sync::{Mutex, Ordering};
use crate::vcpu::request::{EntryError, Kick, Request, RequestSet, VcpuRequests, make_request};

const V: VcpuRef = VcpuRef { vm: 0, vcpu: 0 };
const W: VcpuRef = VcpuRef { vm: 1, vcpu: 0 };

/// The scheduler and the clock, under the global lock. The clock moves one tick per lock
/// hold, so time follows the order in which the CPUs take the lock.
struct Locked {
    sched: Scheduler,
    now: Ticks,
}

struct World {
    locked: Mutex<Locked>,
    /// Request words of V and W.
    requests: [VcpuRequests; 2],
    /// The kick IPI pending on each CPU (latched like a GIC SGI until the CPU handles it).
    kicked: [AtomicBool; 2],
    /// V took a TlbFlush request at some point (so it no longer uses the old mappings).
    v_took_flush: AtomicBool,
    /// V took a Wake request at some point after it was posted.
    v_took_wake: AtomicBool,
    /// The TlbFlush requester's call returned: it reuses the memory V must no longer reach.
    reused: AtomicBool,
    /// Whether V executes WFI (wants to block) at the end of its first run (on CPU 0) and of
    /// its later runs.
    v_waits: [bool; 2],
}

impl Kick for World {
    fn kick(&self, pcpu: usize) {
        self.kicked[pcpu].store(true, Ordering::Release);
    }
}

fn index_of(v: VcpuRef) -> usize {
    if v == V { 0 } else { 1 }
}

fn wakes(pending: RequestSet) -> bool {
    pending.iter().any(Request::wakes_blocked_vcpu)
}

impl World {
    fn new(v_waits: [bool; 2]) -> Arc<Self> {
        let mut sched = Scheduler::new(2, 4);
        sched.add(V, CpuSet::parse("0-1").unwrap(), 0, true);
        sched.add(W, CpuSet::parse("0").unwrap(), 0, true);
        // Setup: CPU 0 picks V (lowest index on a tie) and enters the guest with it.
        assert_eq!(sched.pick(0, 0).map(|s| s.vcpu), Some(V));
        let requests = [VcpuRequests::new(), VcpuRequests::new()];
        requests[0].set_pcpu(0);
        requests[1].set_pcpu(0);
        requests[0].enter_guest().unwrap();
        Arc::new(Self {
            locked: Mutex::new(Locked { sched, now: 1 }),
            requests,
            kicked: [AtomicBool::new(false), AtomicBool::new(false)],
            v_took_flush: AtomicBool::new(false),
            v_took_wake: AtomicBool::new(false),
            reused: AtomicBool::new(false),
            v_waits,
        })
    }

    /// The kick handler of `cpu`, under the lock: wakes the vCPUs blocked here, and the one
    /// running here, that have a waking request pending.
    fn handle_kick(&self, cpu: usize, l: &mut Locked) {
        // Acknowledge, then scan: a kick arriving after the acknowledgement stays pending.
        // (Load first and clear only a set flag, as a GIC acknowledge does: an atomic's store
        // history in loom is bounded, and a swap on every pass would overflow it.)
        if !self.kicked[cpu].load(Ordering::Acquire) {
            return;
        }
        self.kicked[cpu].store(false, Ordering::Relaxed);
        let candidates: Vec<VcpuRef> = l
            .sched
            .blocked_on(cpu)
            .chain(l.sched.running_on(cpu))
            .collect();
        for v in candidates {
            if wakes(self.requests[index_of(v)].pending()) {
                // The CPU it returns would be kicked; in this model every CPU looks again
                // on its next pass anyway.
                l.sched.wake(v, l.now);
            }
        }
    }

    /// The guest code of vCPU `index` runs (between `enter_guest` and `exit_guest`).
    fn guest_runs(&self, index: usize) {
        if index == 0 && !self.v_took_flush.load(Ordering::Relaxed) {
            assert!(
                !self.reused.load(Ordering::Acquire),
                "V in the guest with the old mappings after the TlbFlush requester returned"
            );
        }
    }

    /// Everything between a pick and the `leave`: requests, guest entry and exit, and the
    /// decision to block.
    fn run_picked(&self, cpu: usize, index: usize) {
        let requests = &self.requests[index];
        requests.set_pcpu(cpu);
        let taken = requests.take_requests();
        self.note_taken(index, taken);
        match requests.enter_guest() {
            Ok(()) => {
                self.guest_runs(index);
                requests.exit_guest();
            }
            Err(EntryError::RequestsPending(_)) => {}
            Err(e @ EntryError::NotOutside(_)) => panic!("vCPU {index} on two CPUs: {e}"),
        }
        self.leave(cpu, index, false);
    }

    fn note_taken(&self, index: usize, taken: RequestSet) {
        if index == 0 {
            if taken.contains(Request::TlbFlush) {
                self.v_took_flush.store(true, Ordering::Relaxed);
            }
            if taken.contains(Request::Wake) {
                self.v_took_wake.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The vCPU running on `cpu` leaves it: V blocks (WFI) unless it does not wait or a
    /// waking request is pending; W is preempted.
    fn leave(&self, cpu: usize, index: usize, first: bool) {
        let waits = self.v_waits[usize::from(!first)];
        let block = index == 0 && waits && !wakes(self.requests[index].pending());
        let mut l = self.locked.lock();
        l.now += 1;
        // A kick taken between the decision and the `leave` (IRQs unmasked in between).
        self.handle_kick(cpu, &mut l);
        let why = if block {
            Leave::Block { until: None }
        } else {
            Leave::Preempted
        };
        let now = l.now;
        l.sched.leave(cpu, now, why);
    }

    /// One pass of `cpu`'s run loop: handle a kick, pick, run what it picked.
    fn pass(&self, cpu: usize) {
        let picked = {
            let mut l = self.locked.lock();
            l.now += 1;
            self.handle_kick(cpu, &mut l);
            let now = l.now;
            l.sched.pick(cpu, now)
        };
        if let Some(slice) = picked {
            self.run_picked(cpu, index_of(slice.vcpu));
        }
    }

    /// CPU 0: V's guest (entered in setup) exits, V leaves, then `passes` passes.
    fn cpu0(&self, passes: usize) {
        self.guest_runs(0);
        self.requests[0].exit_guest();
        self.leave(0, 0, true);
        for _ in 0..passes {
            self.pass(0);
        }
    }

    /// After the run: every CPU handles the kick still pending on it.
    fn drain_kicks(&self) {
        let mut l = self.locked.lock();
        for cpu in 0..2 {
            self.handle_kick(cpu, &mut l);
        }
    }
}

/// A Wake posted while V decides to block is never lost: once the kicked CPU handled the
/// kick, V has taken the Wake or is not blocked. A kick sent to the wrong CPU (a stale `pcpu`
/// after a migration) would leave V blocked with the Wake pending and fail the model.
fn wake_while_blocking(v_waits: [bool; 2]) {
    loom::model(move || {
        let world = World::new(v_waits);
        let cpu0 = {
            let world = world.clone();
            thread::spawn(move || world.cpu0(2))
        };
        let cpu1 = {
            let world = world.clone();
            thread::spawn(move || (0..2).for_each(|_| world.pass(1)))
        };
        make_request(&world.requests[0], Request::Wake, false, &*world);
        cpu0.join().unwrap();
        cpu1.join().unwrap();
        world.drain_kicks();
        let l = world.locked.lock();
        let state = l.sched.state(V).unwrap();
        assert!(
            world.v_took_wake.load(Ordering::Relaxed)
                || !matches!(state, VcpuState::Blocked { .. }),
            "Wake lost: V {state:?} on CPU {}, pending {:?}",
            l.sched.cpu_of(V),
            world.requests[0].pending()
        );
    });
}

/// V blocks on CPU 0, where it ran; the Wake may also make it runnable and let CPU 1 steal it.
#[test]
fn loom_sched_wake_while_blocking_on_its_cpu_is_never_lost() {
    wake_while_blocking([true, true]);
}

/// V is preempted on CPU 0, stolen by CPU 1 (CPU 0 runs W), and blocks there.
#[test]
fn loom_sched_wake_while_blocking_after_migrating_is_never_lost() {
    wake_while_blocking([false, true]);
}

/// A TlbFlush requester that waits returns only once V cannot be in the guest with the old
/// mappings, while V leaves CPU 0 and may be stolen by CPU 1 at any point of the request.
#[test]
fn loom_sched_tlb_flush_wait_covers_a_migrating_vcpu() {
    loom::model(|| {
        let world = World::new([false, false]);
        let cpu0 = {
            let world = world.clone();
            thread::spawn(move || world.cpu0(2))
        };
        let cpu1 = {
            let world = world.clone();
            thread::spawn(move || (0..2).for_each(|_| world.pass(1)))
        };
        make_request(&world.requests[0], Request::TlbFlush, true, &*world);
        world.reused.store(true, Ordering::Release);
        cpu0.join().unwrap();
        cpu1.join().unwrap();
    });
}
