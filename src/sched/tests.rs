//! Host tests of the scheduler with a fake clock. Ticks are microseconds here: 10 ms slices
//! are 10 000 ticks and one second is 1 000 000.

use super::*;

const SLICE: Ticks = 10_000;
const SECOND: Ticks = 1_000_000;

fn v(vm: usize, vcpu: usize) -> VcpuRef {
    VcpuRef { vm, vcpu }
}

fn cpus(list: &str) -> CpuSet {
    CpuSet::parse(list).unwrap()
}

fn running(s: &Scheduler, pcpu: usize) -> Option<VcpuRef> {
    s.running_on(pcpu)
}

/// A discrete-event run of CPU-bound vCPUs (they never block): each CPU looks again only when
/// its timer (`next_deadline`) fires or when it is kicked, as the run loop does.
struct Machine {
    s: Scheduler,
    now: Ticks,
    timers: Vec<Option<Ticks>>,
    /// Picks that switched to a different vCPU.
    switches: usize,
}

impl Machine {
    fn new(s: Scheduler, cpu_count: usize) -> Self {
        Self {
            s,
            now: 0,
            timers: vec![None; cpu_count],
            switches: 0,
        }
    }

    /// Starts the CPUs in `order` (the order in which they first take the lock).
    fn start(&mut self, order: &[usize]) {
        for &cpu in order {
            self.look(cpu);
        }
    }

    /// `cpu` looks again: preempts if it should, picks if idle, re-arms its timer; then the
    /// CPUs it kicked look too.
    fn look(&mut self, cpu: usize) {
        let mut todo = vec![cpu];
        while let Some(cpu) = todo.pop() {
            let before = self.s.running_on(cpu);
            if before.is_some() && self.s.should_preempt(cpu, self.now) {
                self.s.leave(cpu, self.now, Leave::Preempted);
            }
            if self.s.running_on(cpu).is_none() {
                self.s.pick(cpu, self.now);
            }
            if self.s.running_on(cpu) != before {
                self.switches += 1;
            }
            self.timers[cpu] = self.s.next_deadline(cpu, self.now);
            todo.extend(self.s.take_kicks().iter());
        }
    }

    /// Runs until `end`, then charges every running vCPU up to `end`.
    fn run_until(&mut self, end: Ticks) {
        loop {
            let next = (0..self.timers.len())
                .filter_map(|cpu| self.timers[cpu].map(|t| (t, cpu)))
                .min();
            match next {
                Some((t, cpu)) if t <= end => {
                    self.now = self.now.max(t);
                    self.timers[cpu] = None;
                    self.look(cpu);
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn charge_all(&mut self) {
        for cpu in 0..self.timers.len() {
            if self.s.running_on(cpu).is_some() {
                self.s.leave(cpu, self.now, Leave::Preempted);
                self.s.pick(cpu, self.now);
            }
        }
    }
}

fn share(s: &Scheduler, vcpu: VcpuRef, of: Ticks) -> f64 {
    s.run_time(vcpu) as f64 / of as f64
}

#[test]
fn two_cpu_bound_vcpus_on_one_cpu_get_half_each_over_a_second() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(1, 0), cpus("0"), 0, true);
    let mut m = Machine::new(s, 2);
    m.start(&[0, 1]);
    m.run_until(SECOND);
    m.charge_all();
    for vm in 0..2 {
        let share = share(&m.s, v(vm, 0), SECOND);
        assert!((0.4..=0.6).contains(&share), "vm {vm}: {share}");
    }
    // Slices, not ping-pong: about one switch per slice.
    assert!(
        m.switches <= (SECOND / SLICE) as usize + 2,
        "{}",
        m.switches
    );
    assert!(
        m.switches >= (SECOND / SLICE) as usize - 2,
        "{}",
        m.switches
    );
}

/// Three free vCPUs on two CPUs: each gets about 2/3 of a CPU, whichever CPU starts first
/// (the one starting second must be kicked to arm its slice timer, or the lone vCPU there
/// would keep its CPU for good and the others would get 1/2 each).
#[test]
fn three_cpu_bound_vcpus_on_two_cpus_get_two_thirds_each() {
    for order in [[0, 1], [1, 0]] {
        let mut s = Scheduler::new(2, SLICE);
        s.add(v(0, 0), cpus("0-1"), 0, true);
        s.add(v(0, 1), cpus("0-1"), 1, true);
        s.add(v(0, 2), cpus("0-1"), 0, true);
        let mut m = Machine::new(s, 2);
        m.start(&order);
        m.run_until(SECOND);
        m.charge_all();
        for vcpu in 0..3 {
            let share = share(&m.s, v(0, vcpu), SECOND);
            assert!(
                (2.0 / 3.0 - 0.1..=2.0 / 3.0 + 0.1).contains(&share),
                "order {order:?} vcpu {vcpu}: {share}"
            );
        }
    }
}

/// A pinned vCPU and two free ones on two CPUs: the pinned one still gets its fair share
/// (2/3 of a CPU), the free ones move to make room.
#[test]
fn pinned_and_free_vcpus_share_fairly() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(1, 0), cpus("0-1"), 0, true);
    s.add(v(1, 1), cpus("0-1"), 1, true);
    let mut m = Machine::new(s, 2);
    m.start(&[0, 1]);
    m.run_until(SECOND);
    m.charge_all();
    for vcpu in [v(0, 0), v(1, 0), v(1, 1)] {
        let share = share(&m.s, vcpu, SECOND);
        assert!(
            (2.0 / 3.0 - 0.1..=2.0 / 3.0 + 0.1).contains(&share),
            "{vcpu:?}: {share}"
        );
    }
}

#[test]
fn run_queue_runs_least_virtual_time_first() {
    let mut s = Scheduler::new(1, SLICE);
    for vcpu in 0..3 {
        s.add(v(0, vcpu), cpus("0"), 0, true);
    }
    // Equal virtual times: the one that waited longest, then the lowest index.
    assert_eq!(s.pick(0, 0).unwrap().vcpu, v(0, 0));
    s.leave(0, 3_000, Leave::Preempted);
    assert_eq!(s.pick(0, 3_000).unwrap().vcpu, v(0, 1));
    s.leave(0, 4_000, Leave::Preempted);
    // vcpu 2 (0) < vcpu 1 (1 000) < vcpu 0 (3 000).
    assert_eq!(s.pick(0, 4_000).unwrap().vcpu, v(0, 2));
    s.leave(0, 6_000, Leave::Preempted);
    assert_eq!(s.pick(0, 6_000).unwrap().vcpu, v(0, 1));
    s.leave(0, 9_000, Leave::Preempted);
    // vcpu 2 (2 000) < vcpu 0 (3 000) < vcpu 1 (4 000).
    assert_eq!(s.pick(0, 9_000).unwrap().vcpu, v(0, 2));
    assert_eq!(s.run_time(v(0, 1)), 4_000);
}

#[test]
fn pinned_vcpu_never_runs_elsewhere() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("1"), 1, true);
    s.add(v(0, 1), cpus("1"), 1, true);
    assert_eq!(s.pick(1, 0).unwrap().vcpu, v(0, 0));
    // CPU 0 idles although vcpu 1 waits behind a busy CPU 1: not allowed here.
    assert_eq!(s.pick(0, 0), None);
    assert_eq!(s.take_kicks(), CpuSet::EMPTY);
    assert_eq!(s.cpu_of(v(0, 1)), 1);
}

#[test]
fn stealing_takes_only_vcpus_allowed_here_and_only_from_busy_cpus() {
    let mut s = Scheduler::new(3, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(0, 1), cpus("0"), 0, true); // pinned, waits behind vcpu 0
    s.add(v(0, 2), cpus("0-1"), 0, true); // may move to CPU 1, not to CPU 2
    s.add(v(1, 0), cpus("0-2"), 2, true); // its home CPU 2 has not looked yet
    assert_eq!(s.pick(0, 0).unwrap().vcpu, v(0, 0));
    // CPU 1 may take vcpu 2 only; vm 1's home (CPU 2) idles: not stolen from it.
    let slice = s.pick(1, 0).unwrap();
    assert_eq!(slice.vcpu, v(0, 2));
    assert_eq!(s.cpu_of(v(0, 2)), 1);
    assert_eq!(s.pick(2, 0).unwrap().vcpu, v(1, 0));
    // Nothing left that CPU 1 may run once its vCPU blocks.
    s.leave(1, 100, Leave::Block { until: None });
    assert_eq!(s.pick(1, 100), None);
    assert_eq!(s.blocked_on(1).collect::<Vec<_>>(), [v(0, 2)]);
}

#[test]
fn a_vcpu_is_never_picked_twice() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("0-1"), 0, true);
    s.add(v(0, 1), cpus("0-1"), 0, true);
    let a = s.pick(0, 0).unwrap().vcpu;
    let b = s.pick(1, 0).unwrap().vcpu;
    assert_ne!(a, b);
    // Nothing else: an idle CPU gets nothing, and a CPU still running gets its own vCPU.
    let mut s2 = s.clone();
    s2.leave(1, 10, Leave::Block { until: None });
    assert_eq!(s2.pick(1, 10), None);
    assert_eq!(s.pick(0, 5).unwrap().vcpu, a);
    assert_eq!(s.running_on(0), Some(a));
    assert_eq!(s.running_on(1), Some(b));
}

#[test]
fn slice_expires_only_when_someone_waits() {
    let mut s = Scheduler::new(1, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(0, 1), cpus("0"), 0, false);
    let slice = s.pick(0, 0).unwrap();
    assert_eq!(
        slice,
        Slice {
            vcpu: v(0, 0),
            until: None
        }
    );
    assert!(!s.should_preempt(0, 10 * SLICE));
    assert_eq!(s.next_deadline(0, 10 * SLICE), None);
    // vcpu 1 wakes while vcpu 0 is 10 slices ahead of it... but it was placed at
    // min_vruntime - slice, so the running vCPU's lead is a whole slice: preempt at once.
    let now = 10 * SLICE;
    assert_eq!(s.wake(v(0, 1), now), Some(0));
    assert!(s.should_preempt(0, now));
    s.leave(0, now, Leave::Preempted);
    let slice = s.pick(0, now).unwrap();
    assert_eq!(slice.vcpu, v(0, 1));
    // Now vcpu 0 waits: the slice ends after `SLICE`.
    assert_eq!(slice.until, Some(now + SLICE));
    assert!(!s.should_preempt(0, now + SLICE - 1));
    assert!(s.should_preempt(0, now + SLICE));
}

#[test]
fn wake_kicks_an_idle_home_then_an_idle_allowed_cpu_then_preempts() {
    let mut s = Scheduler::new(3, SLICE);
    s.add(v(0, 0), cpus("0-1"), 0, false);
    s.add(v(0, 1), cpus("0"), 0, true);
    s.add(v(0, 2), cpus("1"), 1, false);
    // Home idle: kick the home.
    assert_eq!(s.clone().wake(v(0, 0), 0), Some(0));
    // Home busy, CPU 1 (allowed) idle: kick CPU 1, which steals it.
    assert_eq!(s.pick(0, 0).unwrap().vcpu, v(0, 1));
    let mut s1 = s.clone();
    assert_eq!(s1.wake(v(0, 0), 0), Some(1));
    assert_eq!(s1.pick(1, 0).unwrap().vcpu, v(0, 0));
    assert_eq!(s1.cpu_of(v(0, 0)), 1);
    // Both busy; vcpu 1 ran 5 ms (more than the granularity ahead): preempt it.
    assert_eq!(s.wake(v(0, 2), 0), Some(1));
    assert_eq!(s.pick(1, 0).unwrap().vcpu, v(0, 2));
    assert_eq!(s.wake(v(0, 0), 5_000), Some(0));
    assert!(s.should_preempt(0, 5_000));
    s.leave(0, 5_000, Leave::Preempted);
    assert_eq!(s.pick(0, 5_000).unwrap().vcpu, v(0, 0));
}

#[test]
fn wake_within_the_granularity_does_not_preempt_but_arms_the_slice() {
    let mut s = Scheduler::new(1, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(0, 1), cpus("0"), 0, false);
    assert_eq!(s.pick(0, 0).unwrap().until, None);
    // 0.5 ms of run: less than the 1 ms granularity ahead of the woken vCPU.
    assert_eq!(s.wake(v(0, 1), 500), None);
    // ... but CPU 0 must learn that its slice now ends: it is kicked to re-arm its timer.
    assert_eq!(s.take_kicks(), CpuSet::single(0).unwrap());
    assert!(!s.should_preempt(0, 600));
    assert_eq!(s.next_deadline(0, 600), Some(SLICE));
    assert!(s.should_preempt(0, SLICE));
}

#[test]
fn wake_of_a_runnable_vcpu_is_a_no_op() {
    let mut s = Scheduler::new(1, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    assert_eq!(s.wake(v(0, 0), 10), None);
    assert_eq!(s.state(v(0, 0)), Some(VcpuState::Runnable { since: 0 }));
    assert_eq!(s.wake(v(9, 9), 10), None, "unknown vCPU");
}

/// The lost-wake-up race: the wake-up arrives while the vCPU still runs (it decided to block
/// but has not left yet); its `leave(Block)` leaves it runnable, and it runs again.
#[test]
fn wake_while_running_makes_the_next_block_a_no_op() {
    let mut s = Scheduler::new(1, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.pick(0, 0).unwrap();
    assert_eq!(s.wake(v(0, 0), 100), None);
    s.leave(0, 200, Leave::Block { until: None });
    assert_eq!(s.state(v(0, 0)), Some(VcpuState::Runnable { since: 200 }));
    assert_eq!(s.blocked_on(0).count(), 0);
    assert_eq!(s.pick(0, 200).unwrap().vcpu, v(0, 0));
    // Remembered once only: the next block blocks.
    s.leave(0, 300, Leave::Block { until: None });
    assert_eq!(s.blocked_on(0).collect::<Vec<_>>(), [v(0, 0)]);
}

#[test]
fn blocked_vcpu_becomes_runnable_at_its_deadline() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(0, 1), cpus("0"), 0, true);
    s.pick(0, 0).unwrap();
    s.leave(0, 100, Leave::Block { until: Some(5_000) });
    assert_eq!(s.pick(0, 100).unwrap().vcpu, v(0, 1));
    // Nobody waits, but vcpu 0's deadline does.
    assert_eq!(s.next_deadline(0, 100), Some(5_000));
    assert_eq!(s.next_deadline(1, 100), None);
    assert!(!s.should_preempt(0, 4_999));
    assert_eq!(s.blocked_on(0).count(), 1);
    // At the deadline it is runnable; vcpu 1 ran 4.9 ms, vcpu 0 0.1 ms: it preempts.
    assert!(s.should_preempt(0, 5_000));
    assert_eq!(s.blocked_on(0).count(), 0);
    s.leave(0, 5_000, Leave::Preempted);
    assert_eq!(s.pick(0, 5_000).unwrap().vcpu, v(0, 0));
    // An idle CPU picks a due vCPU by itself.
    s.leave(0, 5_100, Leave::Block { until: Some(9_000) });
    s.pick(0, 5_100);
    s.leave(0, 5_200, Leave::Block { until: None });
    assert_eq!(s.pick(0, 8_999), None);
    assert_eq!(s.next_deadline(0, 8_999), Some(9_000));
    assert_eq!(s.pick(0, 9_000).unwrap().vcpu, v(0, 0));
}

/// Bounded sleeper credit: a vCPU that slept for a second does not get the CPU for a second
/// when it wakes, only about a slice more than the vCPU that kept running.
#[test]
fn sleeper_credit_is_bounded_by_a_slice() {
    let mut s = Scheduler::new(1, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(1, 0), cpus("0"), 0, false);
    let mut m = Machine::new(s, 1);
    m.start(&[0]);
    m.run_until(SECOND);
    assert_eq!(m.s.wake(v(1, 0), SECOND), Some(0));
    m.look(0);
    assert_eq!(running(&m.s, 0), Some(v(1, 0)));
    m.run_until(SECOND + 100 * SLICE);
    m.charge_all();
    let sleeper = m.s.run_time(v(1, 0));
    let runner = m.s.run_time(v(0, 0)) - SECOND;
    assert!(sleeper <= runner + 2 * SLICE, "{sleeper} vs {runner}");
    assert!(sleeper + 2 * SLICE >= runner, "{sleeper} vs {runner}");
}

#[test]
fn yield_lets_another_waiting_vcpu_run_first() {
    let mut s = Scheduler::new(1, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(0, 1), cpus("0"), 0, true);
    assert_eq!(s.pick(0, 0).unwrap().vcpu, v(0, 0));
    // Yields after 10 µs: still the least virtual time... yet vcpu 1 goes first.
    s.leave(0, 10, Leave::Yield);
    assert_eq!(s.pick(0, 10).unwrap().vcpu, v(0, 1));
    // Alone, a yielding vCPU gets its CPU back.
    let mut alone = Scheduler::new(1, SLICE);
    alone.add(v(0, 0), cpus("0"), 0, true);
    alone.pick(0, 0);
    alone.leave(0, 10, Leave::Yield);
    assert_eq!(alone.pick(0, 10).unwrap().vcpu, v(0, 0));
}

#[test]
fn a_cpu_is_dedicated_only_to_a_vcpu_pinned_alone_on_it() {
    let mut s = Scheduler::new(4, SLICE);
    s.add(v(0, 0), cpus("0"), 0, true);
    s.add(v(0, 1), cpus("1"), 1, true);
    s.add(v(1, 0), cpus("1"), 1, true);
    s.add(v(1, 1), cpus("2-3"), 2, true);
    assert_eq!(s.dedicated(0), Some(v(0, 0)));
    assert_eq!(s.dedicated(1), None, "two vCPUs");
    assert_eq!(s.dedicated(2), None, "alone, but may move");
    assert_eq!(s.dedicated(3), None);
    // The dedicated vCPU is left to its own CPU's loop: waking it kicks nobody.
    s.add(v(0, 0), cpus("0"), 0, false);
    assert_eq!(s.wake(v(0, 0), 0), None);
    assert_eq!(s.take_kicks(), CpuSet::EMPTY);
}

/// A vCPU left waiting behind a busy CPU while another CPU it may use idles: that CPU is kicked
/// and steals it.
#[test]
fn idle_cpu_is_kicked_to_steal_a_waiting_vcpu() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("0-1"), 0, true);
    s.add(v(0, 1), cpus("0-1"), 0, true);
    // CPU 1 looked first and found nothing of its own, nor a busy CPU to steal from.
    assert_eq!(s.pick(1, 0), None);
    assert_eq!(s.pick(0, 0).unwrap().vcpu, v(0, 0));
    assert_eq!(s.take_kicks(), CpuSet::single(1).unwrap());
    assert_eq!(s.pick(1, 0).unwrap().vcpu, v(0, 1));
    assert_eq!(s.take_kicks(), CpuSet::EMPTY);
}

/// Starting second, CPU 1 saw nobody waiting and armed no timer; when CPU 0 leaves a vCPU
/// waiting that CPU 1 may run, CPU 1 is kicked to arm its slice end.
#[test]
fn busy_cpu_without_a_slice_timer_is_kicked_when_someone_starts_waiting() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("0-1"), 0, true);
    s.add(v(0, 1), cpus("0-1"), 1, true);
    s.add(v(0, 2), cpus("0-1"), 0, true);
    assert_eq!(
        s.pick(1, 0).unwrap(),
        Slice {
            vcpu: v(0, 1),
            until: None
        }
    );
    // CPU 0 idles while its own vCPUs wait: it is kicked (it would look anyway).
    assert_eq!(s.take_kicks(), CpuSet::single(0).unwrap());
    assert_eq!(s.pick(0, 0).unwrap().until, Some(SLICE));
    assert_eq!(s.take_kicks(), CpuSet::single(1).unwrap());
    assert_eq!(s.next_deadline(1, 0), Some(SLICE));
    // Kicked once, not on every call.
    assert!(!s.should_preempt(1, 1));
    assert_eq!(s.take_kicks(), CpuSet::EMPTY);
}

#[test]
fn add_keeps_home_and_allowed_within_the_machine() {
    let mut s = Scheduler::new(2, SLICE);
    s.add(v(0, 0), cpus("1,5"), 0, true); // home 0 not allowed; CPU 5 does not exist
    assert_eq!(s.cpu_of(v(0, 0)), 1);
    s.add(v(0, 1), cpus("7"), 1, true); // nothing that exists: pinned to its home
    assert_eq!(s.cpu_of(v(0, 1)), 1);
    assert_eq!(s.pick(0, 0), None);
    assert!(s.pick(1, 0).is_some());
    assert_eq!(s.pick(5, 0), None);
}

#[test]
fn wake_blocked_on_wakes_only_the_cpus_blocked_vcpus_with_a_pending_wake() {
    let mut s = Scheduler::new(2, 100);
    let v = |vcpu| VcpuRef { vm: 0, vcpu };
    for i in 0..3 {
        s.add(
            v(i),
            CpuSet::parse("0-1").unwrap(),
            if i == 2 { 1 } else { 0 },
            true,
        );
    }
    // Everyone runs once and blocks where it ran.
    for _ in 0..3 {
        for cpu in 0..2 {
            if s.pick(cpu, 10).is_some() {
                s.leave(cpu, 20, Leave::Block { until: None });
            }
        }
    }
    let blocked0: Vec<VcpuRef> = s.blocked_on(0).collect();
    assert!(!blocked0.is_empty());
    let target = blocked0[0];
    let look = s.wake_blocked_on(0, 30, |r| r == target);
    assert!(matches!(s.state(target), Some(VcpuState::Runnable { .. })));
    for other in (0..3).map(v).filter(|&r| r != target) {
        assert!(
            matches!(s.state(other), Some(VcpuState::Blocked { .. })),
            "{other:?}"
        );
    }
    assert!(
        look.contains(0) || look.contains(1),
        "an idle CPU is told to look"
    );
    assert!(s.wake_blocked_on(0, 31, |_| false).is_empty());
}

#[test]
fn may_run_on_names_the_cpus_some_allowed_set_holds() {
    let mut s = Scheduler::new(4, 100);
    s.add(
        VcpuRef { vm: 0, vcpu: 0 },
        CpuSet::parse("1-2").unwrap(),
        1,
        true,
    );
    assert!(!s.may_run_on(0));
    assert!(s.may_run_on(1) && s.may_run_on(2));
    assert!(!s.may_run_on(3));
}
