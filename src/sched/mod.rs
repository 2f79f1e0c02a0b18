//! The vCPU scheduler: which vCPU each shared physical CPU runs, and for how long.
//!
//! Plain Rust with no locks, atomics or hardware access: the run loop keeps one `Scheduler`
//! behind one global lock and calls it with the counter value (`Ticks`) as the clock, so every
//! decision here is unit-tested on the host with a fake clock (`tests.rs`) and model-checked
//! together with the vCPU request word (`loom_models.rs`).
//!
//! Policy, a small relative of Linux's CFS (Documentation/scheduler/sched-design-CFS.rst):
//! - **Virtual run time.** Every vCPU has a `vruntime` that grows by the time it runs (all
//!   vCPUs weigh the same). A CPU that looks for work picks, among the runnable vCPUs it may
//!   run, the one with the least `vruntime`: over time every vCPU gets the same share. One
//!   virtual time serves all CPUs: with few vCPUs and one lock a pick simply compares vCPUs
//!   queued anywhere, so there is no per-CPU normalisation as CFS needs for its per-CPU trees.
//! - **Bounded sleeper credit.** A vCPU that slept keeps its `vruntime`, but when it wakes it
//!   is raised to at least its CPU's `min_vruntime - slice` (CFS's `place_entity`): it gets
//!   served soon after waking, yet cannot monopolise the CPU for the whole time it slept.
//!   A vCPU taken from another CPU's queue is placed the same way on its new CPU.
//! - **Wake-up preemption.** A woken vCPU takes its CPU at once if the running vCPU's virtual
//!   time is ahead of it by more than a granularity (slice / 10, at least one tick; CFS's
//!   `check_preempt_wakeup` with `sched_wakeup_granularity`): interrupts reach a
//!   guest that was waiting for them without waiting for a whole slice.
//! - **Slices expire only when someone waits.** The slice (default 10 ms, bootarg
//!   `bulkhead.sched_slice_ms=`) bounds how long a vCPU keeps a CPU while another vCPU waits
//!   for it; a vCPU alone on its CPU runs with no scheduler timer at all (as Linux's
//!   `nohz_full` stops the tick for a CPU with one runnable task), so it costs what a pinned
//!   vCPU costs.
//! - **Stealing within allowed sets.** Each vCPU has a home CPU (whose queue holds it while it
//!   waits, and whose blocked list holds it while it sleeps) and an allowed set (the
//!   `hard-affinity` of Xen's dom0less bindings, docs/misc/arm/device-tree/booting.txt). A
//!   CPU looking for work also considers the runnable vCPUs waiting behind another, busy,
//!   CPU whose allowed set contains it; if it takes one, that vCPU's home becomes this CPU.
//!   Xen's credit2 balances its runqueues within hard affinity the same way (George Dunlap,
//!   "Credit2: a scheduler for Xen", Xen Summit 2010; xen docs/features/sched_credit2.pandoc).
//!
//! Kicks: the run loop should kick (IPI) the CPU [`Scheduler::wake`] returns, and every CPU in
//! [`Scheduler::take_kicks`] after each lock hold — an idle CPU that can steal a waiting vCPU,
//! or a busy one that must now arm its slice timer because someone started waiting for it.
//!
//! Wake-ups follow the vCPU's request word (`vcpu::request`), the source of truth; the run
//! loop's part, model-checked with a migrating vCPU in `loom_models.rs`:
//! - after `pick`, call `set_pcpu(cpu)` before `take_requests` (a read-modify-write of the
//!   request word), so every later requester kicks the CPU that now holds the vCPU;
//! - a vCPU leaves with `Leave::Block` only if no waking request is pending;
//! - a kicked CPU, under the lock, calls [`Scheduler::wake`] for every vCPU of
//!   [`Scheduler::blocked_on`] it and for the vCPU [`Scheduler::running_on`] it that has a
//!   waking request pending. The latter covers a kick handled between a vCPU's "nothing
//!   pending" check and its `leave(Block)`: the wake is remembered and the block undone.
//!
//! Cost: every call is a pass over the vCPUs (at most `CpuSet::CAPACITY` CPUs, and vCPU counts
//! are small), so there are no trees or per-CPU lists to keep consistent.

use alloc::vec::Vec;

use crate::config::CpuSet;

#[cfg(all(test, loom))]
mod loom_models;
#[cfg(all(test, not(loom)))]
mod tests;

/// Counter ticks (CNTPCT_EL0): the scheduler's clock.
pub type Ticks = u64;

/// A vCPU: `vm` is `Vm::id`, `vcpu` its index in the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VcpuRef {
    pub vm: usize,
    pub vcpu: usize,
}

/// Why a vCPU left its physical CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Its slice ended or a woken vCPU deserved the CPU; it stays runnable.
    Preempted,
    /// It gave the CPU away but stays runnable: the next pick on this CPU takes any other
    /// vCPU that waits before it (CFS's "skip buddy").
    Yield,
    /// It waits (WFI, CPU_SUSPEND, powered off) until woken or, if given, until `until`.
    Block { until: Option<Ticks> },
}

/// What [`Scheduler::pick`] gives a CPU to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// The vCPU to run.
    pub vcpu: VcpuRef,
    /// When to look again (arm the EL2 timer): the slice end if another vCPU waits for this
    /// CPU, or an earlier deadline of a vCPU blocked on it. `None`: never, nobody waits.
    pub until: Option<Ticks>,
}

/// Where a vCPU stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    /// Running on `pcpu` since `since`.
    Running { pcpu: usize, since: Ticks },
    /// Waiting in its home CPU's queue since `since`.
    Runnable { since: Ticks },
    /// Sleeping on its home CPU until woken, or until `until` if given.
    Blocked { until: Option<Ticks> },
}

/// One vCPU's scheduling state.
#[derive(Debug, Clone)]
struct Entry {
    id: VcpuRef,
    /// The CPUs it may run on, as a bitmap (bit n: CPU n).
    allowed: u64,
    /// The CPU whose queue (runnable) or blocked list (blocked) holds it; where it runs when
    /// running.
    home: usize,
    state: VcpuState,
    /// Virtual run time (see the module documentation).
    vruntime: Ticks,
    /// Real run time, for statistics.
    run_time: Ticks,
    /// A wake-up arrived while it was running: its next `Leave::Block` does not block.
    woken_while_running: bool,
}

/// One physical CPU's scheduling state.
#[derive(Debug, Clone, Default)]
struct Cpu {
    /// Index (in `Scheduler::vcpus`) of the vCPU running here.
    running: Option<usize>,
    /// Never decreases: the least virtual time of the vCPUs running or queued here, as last
    /// seen. Wake-ups and migrations place vCPUs relative to it.
    min_vruntime: Ticks,
    /// A vCPU woken for this CPU deserves it now (wake-up preemption).
    preempt_for_wake: bool,
    /// The vCPU that yielded here: the next pick prefers any other.
    yielded: Option<usize>,
    /// Whether this CPU's last look (pick or `should_preempt`) saw someone waiting, so that its
    /// timer is armed for the slice end; if not, it must be kicked when someone starts waiting.
    slice_armed: bool,
}

/// The scheduler of all shared physical CPUs. See the module documentation.
#[derive(Debug, Clone)]
pub struct Scheduler {
    slice: Ticks,
    cpus: Vec<Cpu>,
    vcpus: Vec<Entry>,
    /// CPUs to kick, collected by the calls since the last `take_kicks`.
    kicks: u64,
}

fn bit(cpu: usize) -> u64 {
    if cpu < CpuSet::CAPACITY { 1 << cpu } else { 0 }
}

fn mask_of(set: CpuSet) -> u64 {
    set.bits()
}

fn set_of(mask: u64) -> CpuSet {
    CpuSet::from_bits(mask)
}

impl Scheduler {
    /// A scheduler for `cpu_count` physical CPUs (at most `CpuSet::CAPACITY`) and slices of
    /// `slice` ticks (at least one), with no vCPU yet.
    pub fn new(cpu_count: usize, slice: Ticks) -> Self {
        Self {
            slice: slice.max(1),
            cpus: (0..cpu_count.min(CpuSet::CAPACITY))
                .map(|_| Cpu::default())
                .collect(),
            vcpus: Vec::new(),
            kicks: 0,
        }
    }

    /// The slice length in ticks.
    pub fn slice(&self) -> Ticks {
        self.slice
    }

    /// Wake-up preemption granularity: slice / 10, at least one tick.
    pub fn granularity(&self) -> Ticks {
        (self.slice / 10).max(1)
    }

    /// Adds a vCPU (startup only). Starts `Blocked { until: None }` (off, or waiting for
    /// CPU_ON or its VM's start) unless `runnable`. `allowed` is cut to the CPUs that exist; if
    /// `home` is not in it, the lowest allowed CPU is the home, and an empty set becomes
    /// {`home`}. Adding a vCPU again replaces it.
    pub fn add(&mut self, v: VcpuRef, allowed: CpuSet, home: usize, runnable: bool) {
        let existing = self.cpus_mask();
        let mut allowed = mask_of(allowed) & existing;
        let home = if allowed & bit(home) != 0 {
            home
        } else if allowed != 0 {
            allowed.trailing_zeros() as usize
        } else {
            let home = home.min(self.cpus.len().saturating_sub(1));
            allowed = bit(home);
            home
        };
        let entry = Entry {
            id: v,
            allowed,
            home,
            state: if runnable {
                VcpuState::Runnable { since: 0 }
            } else {
                VcpuState::Blocked { until: None }
            },
            vruntime: self.cpus.get(home).map_or(0, |c| c.min_vruntime),
            run_time: 0,
            woken_while_running: false,
        };
        match self.index(v) {
            Some(i) => self.vcpus[i] = entry,
            None => self.vcpus.push(entry),
        }
    }

    /// The only vCPU that may ever run on `pcpu` if it is dedicated (exactly one vCPU may run
    /// there and its allowed set is exactly {`pcpu`}), else `None`. A dedicated CPU runs its
    /// vCPU without calling the scheduler; no other vCPU can be placed or stolen there.
    pub fn dedicated(&self, pcpu: usize) -> Option<VcpuRef> {
        let mut may_run = self.vcpus.iter().filter(|e| e.allowed & bit(pcpu) != 0);
        let only = may_run.next()?;
        (may_run.next().is_none() && only.allowed == bit(pcpu)).then_some(only.id)
    }

    /// Whether any vCPU may run on `pcpu` (a CPU none may is idle for good).
    pub fn may_run_on(&self, pcpu: usize) -> bool {
        self.vcpus.iter().any(|e| e.allowed & bit(pcpu) != 0)
    }

    /// Next vCPU for `pcpu` at `now`, marked running there (nothing is charged yet): first the
    /// due blocked vCPUs of this CPU become runnable; then the runnable vCPU allowed here with
    /// the least virtual run time is taken: from this CPU's queue, or stolen from the queue of a
    /// busy CPU (its home becomes `pcpu`). On a tie this CPU's own queue wins, then the vCPU
    /// that waited longest; a vCPU that just yielded here comes last. `None`: idle. If a vCPU
    /// is still running on `pcpu` (no `leave` since), that vCPU is returned again.
    pub fn pick(&mut self, pcpu: usize, now: Ticks) -> Option<Slice> {
        if pcpu >= self.cpus.len() {
            return None;
        }
        if let Some(i) = self.cpus[pcpu].running {
            return Some(Slice {
                vcpu: self.vcpus[i].id,
                until: self.next_deadline(pcpu, now),
            });
        }
        self.wake_due(pcpu, now);
        let chosen = self.best_candidate(pcpu, self.cpus[pcpu].yielded);
        let cpu = &mut self.cpus[pcpu];
        cpu.yielded = None;
        cpu.preempt_for_wake = false;
        let (i, key) = chosen?;
        let entry = &mut self.vcpus[i];
        entry.home = pcpu;
        entry.vruntime = key;
        entry.state = VcpuState::Running { pcpu, since: now };
        self.cpus[pcpu].running = Some(i);
        self.update_min_vruntime(pcpu, now);
        self.cpus[pcpu].slice_armed = self.waiters() & bit(pcpu) != 0;
        self.note_kicks(Some(pcpu));
        Some(Slice {
            vcpu: self.vcpus[i].id,
            until: self.next_deadline(pcpu, now),
        })
    }

    /// The vCPU running on `pcpu` leaves it at `now` for `why`; its run time is charged. A
    /// vCPU woken while running (see [`wake`](Self::wake)) becomes runnable instead of blocked.
    /// No-op if nothing runs on `pcpu`.
    pub fn leave(&mut self, pcpu: usize, now: Ticks, why: Leave) {
        let Some(i) = self.cpus.get(pcpu).and_then(|c| c.running) else {
            return;
        };
        let entry = &mut self.vcpus[i];
        if let VcpuState::Running { since, .. } = entry.state {
            let ran = now.saturating_sub(since);
            entry.run_time = entry.run_time.saturating_add(ran);
            entry.vruntime = entry.vruntime.saturating_add(ran);
        }
        let woken = core::mem::take(&mut entry.woken_while_running);
        entry.state = match why {
            Leave::Block { until } if !woken => VcpuState::Blocked { until },
            _ => VcpuState::Runnable { since: now },
        };
        let cpu = &mut self.cpus[pcpu];
        cpu.running = None;
        cpu.preempt_for_wake = false;
        cpu.yielded = (why == Leave::Yield).then_some(i);
        self.update_min_vruntime(pcpu, now);
        self.note_kicks(Some(pcpu));
    }

    /// Makes a blocked vCPU runnable at `now` (no-op for a runnable one, returns `None`) and
    /// returns the CPU that should look again now (kick it): its home CPU if that idles, else
    /// an idle CPU of its allowed set (which will steal it), else its home if the running vCPU
    /// there should be preempted for it. A vCPU woken while still running (about to block: the
    /// lost-wake-up race) is remembered, and its `leave(Block)` makes it runnable instead.
    /// Other CPUs that should look again are added to [`take_kicks`](Self::take_kicks). The
    /// vCPU of a dedicated CPU is left alone (its CPU does not use the scheduler).
    pub fn wake(&mut self, v: VcpuRef, now: Ticks) -> Option<usize> {
        let i = self.index(v)?;
        match self.vcpus[i].state {
            VcpuState::Running { .. } => {
                self.vcpus[i].woken_while_running = true;
                return None;
            }
            VcpuState::Runnable { .. } => return None,
            VcpuState::Blocked { .. } => {}
        }
        // A dedicated CPU runs its vCPU without the scheduler: nothing to do here.
        if self.dedicated(self.vcpus[i].home) == Some(v) {
            return None;
        }
        let home = self.vcpus[i].home;
        self.update_min_vruntime(home, now);
        self.make_runnable(i, now);
        let idle = self.idle_mask();
        let target = if idle & bit(home) != 0 {
            Some(home)
        } else if self.vcpus[i].allowed & idle != 0 {
            Some((self.vcpus[i].allowed & idle).trailing_zeros() as usize)
        } else if self.deserves_cpu(i, home, now) {
            self.cpus[home].preempt_for_wake = true;
            Some(home)
        } else {
            None
        };
        self.note_kicks(None);
        if let Some(cpu) = target {
            self.kicks &= !bit(cpu);
        }
        target
    }

    /// Whether the vCPU running on `pcpu` should leave it now (`leave(Preempted)`): its slice
    /// is over and another vCPU waits for this CPU, or a woken vCPU deserves the CPU. Due
    /// blocked vCPUs of this CPU become runnable first. When it answers false, re-arm the
    /// timer with [`next_deadline`](Self::next_deadline).
    pub fn should_preempt(&mut self, pcpu: usize, now: Ticks) -> bool {
        if pcpu >= self.cpus.len() {
            return false;
        }
        let woken = self.wake_due(pcpu, now);
        let Some(r) = self.cpus[pcpu].running else {
            return false;
        };
        if woken.iter().any(|&i| self.deserves_cpu(i, pcpu, now)) {
            self.cpus[pcpu].preempt_for_wake = true;
        }
        let waits = self.waiters() & bit(pcpu) != 0;
        self.cpus[pcpu].slice_armed = waits;
        self.note_kicks(Some(pcpu));
        let slice_over = match self.vcpus[r].state {
            VcpuState::Running { since, .. } => now.saturating_sub(since) >= self.slice,
            _ => false,
        };
        self.cpus[pcpu].preempt_for_wake || (slice_over && waits)
    }

    /// When `pcpu` must look again (arm the EL2 timer): the running vCPU's slice end if anyone
    /// else waits for this CPU (`now` if a woken vCPU deserves it already), and the earliest
    /// `until` of the vCPUs blocked on it. `None`: no deadline.
    pub fn next_deadline(&self, pcpu: usize, now: Ticks) -> Option<Ticks> {
        let cpu = self.cpus.get(pcpu)?;
        let slice_end = cpu.running.and_then(|r| {
            if cpu.preempt_for_wake {
                return Some(now);
            }
            match self.vcpus[r].state {
                VcpuState::Running { since, .. } if self.waiters() & bit(pcpu) != 0 => {
                    Some(since.saturating_add(self.slice))
                }
                _ => None,
            }
        });
        let blocked_until = self
            .vcpus
            .iter()
            .filter(|e| e.home == pcpu)
            .filter_map(|e| match e.state {
                VcpuState::Blocked { until } => until,
                _ => None,
            })
            .min();
        match (slice_end, blocked_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Wakes (as [`wake`](Self::wake)) every vCPU blocked on `pcpu` for which `has_wake` says
    /// a waking request is pending, and returns the CPUs those wake-ups say should look again.
    /// One pass, no copy of the blocked list: the run loop calls it after every kick.
    pub fn wake_blocked_on(
        &mut self,
        pcpu: usize,
        now: Ticks,
        mut has_wake: impl FnMut(VcpuRef) -> bool,
    ) -> CpuSet {
        let mut look = 0;
        for i in 0..self.vcpus.len() {
            let e = &self.vcpus[i];
            if e.home == pcpu && matches!(e.state, VcpuState::Blocked { .. }) && has_wake(e.id) {
                let id = e.id;
                if let Some(cpu) = self.wake(id, now) {
                    look |= bit(cpu);
                }
            }
        }
        set_of(look)
    }

    /// The vCPUs blocked on `pcpu` (their requests are scanned after a kick).
    pub fn blocked_on(&self, pcpu: usize) -> impl Iterator<Item = VcpuRef> + '_ {
        self.vcpus
            .iter()
            .filter(move |e| e.home == pcpu && matches!(e.state, VcpuState::Blocked { .. }))
            .map(|e| e.id)
    }

    /// CPUs that should look again (kick them) because of the calls since the last
    /// `take_kicks`: an idle CPU that can steal a waiting vCPU, or a busy CPU whose timer is
    /// not armed for its slice end although someone now waits for it. Never holds the CPU
    /// that made the call (it looks anyway).
    pub fn take_kicks(&mut self) -> CpuSet {
        set_of(core::mem::take(&mut self.kicks))
    }

    /// Total run time of a vCPU (0 for one never added).
    pub fn run_time(&self, v: VcpuRef) -> Ticks {
        self.index(v).map_or(0, |i| self.vcpus[i].run_time)
    }

    /// Where a vCPU is now: its CPU if running, else its home (0 for one never added).
    pub fn cpu_of(&self, v: VcpuRef) -> usize {
        self.index(v).map_or(0, |i| match self.vcpus[i].state {
            VcpuState::Running { pcpu, .. } => pcpu,
            _ => self.vcpus[i].home,
        })
    }

    /// The state of a vCPU (`None` for one never added).
    pub fn state(&self, v: VcpuRef) -> Option<VcpuState> {
        self.index(v).map(|i| self.vcpus[i].state)
    }

    /// The vCPU running on `pcpu`.
    pub fn running_on(&self, pcpu: usize) -> Option<VcpuRef> {
        let i = self.cpus.get(pcpu)?.running?;
        Some(self.vcpus[i].id)
    }

    fn index(&self, v: VcpuRef) -> Option<usize> {
        self.vcpus.iter().position(|e| e.id == v)
    }

    fn cpus_mask(&self) -> u64 {
        (0..self.cpus.len()).fold(0, |mask, cpu| mask | bit(cpu))
    }

    /// CPUs running nothing.
    fn idle_mask(&self) -> u64 {
        (0..self.cpus.len())
            .filter(|&cpu| self.cpus[cpu].running.is_none())
            .fold(0, |mask, cpu| mask | bit(cpu))
    }

    /// CPUs some runnable vCPU waits for: its home, and — if its home is busy — every other
    /// CPU it may run on (they may steal it).
    fn waiters(&self) -> u64 {
        let idle = self.idle_mask();
        self.vcpus
            .iter()
            .filter(|e| matches!(e.state, VcpuState::Runnable { .. }))
            .fold(0, |mask, e| {
                let home = bit(e.home);
                mask | home | if idle & home == 0 { e.allowed } else { 0 }
            })
    }

    /// Blocked → runnable at `now`, with bounded sleeper credit on its home CPU (whose
    /// `min_vruntime` the caller brought up to date).
    fn make_runnable(&mut self, i: usize, now: Ticks) {
        let floor = self.cpus[self.vcpus[i].home]
            .min_vruntime
            .saturating_sub(self.slice);
        let entry = &mut self.vcpus[i];
        entry.vruntime = entry.vruntime.max(floor);
        entry.state = VcpuState::Runnable { since: now };
    }

    /// Makes the vCPUs blocked on `pcpu` whose deadline passed runnable; returns them.
    fn wake_due(&mut self, pcpu: usize, now: Ticks) -> Vec<usize> {
        let due: Vec<usize> = (0..self.vcpus.len())
            .filter(|&i| {
                let e = &self.vcpus[i];
                e.home == pcpu
                    && matches!(e.state, VcpuState::Blocked { until: Some(t) } if t <= now)
            })
            .collect();
        if !due.is_empty() {
            self.update_min_vruntime(pcpu, now);
        }
        for &i in &due {
            self.make_runnable(i, now);
        }
        due
    }

    /// Whether runnable vCPU `i` should preempt what runs on `pcpu` now: the running vCPU's
    /// virtual time (counting its current run) is ahead by more than the granularity.
    fn deserves_cpu(&self, i: usize, pcpu: usize, now: Ticks) -> bool {
        let Some(r) = self.cpus[pcpu].running else {
            return false;
        };
        self.current_vruntime(r, now) > self.vcpus[i].vruntime.saturating_add(self.granularity())
    }

    /// The virtual time of vCPU `i` counting its current run, if it is running.
    fn current_vruntime(&self, i: usize, now: Ticks) -> Ticks {
        let e = &self.vcpus[i];
        match e.state {
            VcpuState::Running { since, .. } => {
                e.vruntime.saturating_add(now.saturating_sub(since))
            }
            _ => e.vruntime,
        }
    }

    /// The runnable vCPU `pcpu` should run, with the virtual time it would run with: the
    /// least virtual time among its own queue and the queues of busy CPUs it may steal from.
    /// A stolen vCPU is placed like a woken one on `pcpu` (at least `min_vruntime - slice`).
    fn best_candidate(&self, pcpu: usize, yielded: Option<usize>) -> Option<(usize, Ticks)> {
        let idle = self.idle_mask();
        let floor = self.cpus[pcpu].min_vruntime.saturating_sub(self.slice);
        let candidates = self.vcpus.iter().enumerate().filter_map(|(i, e)| {
            let VcpuState::Runnable { since } = e.state else {
                return None;
            };
            let own = e.home == pcpu;
            let stealable = !own && e.allowed & bit(pcpu) != 0 && idle & bit(e.home) == 0;
            if !own && !stealable {
                return None;
            }
            let key = if own {
                e.vruntime
            } else {
                e.vruntime.max(floor)
            };
            // Order: yielded last, least virtual time, own queue, waited longest, index.
            Some(((yielded == Some(i), key, !own, since, i), key))
        });
        candidates
            .min_by_key(|(order, _)| *order)
            .map(|((_, _, _, _, i), key)| (i, key))
    }

    /// Raises `pcpu`'s `min_vruntime` to the least virtual time at `now` of the vCPUs running
    /// or queued there (it never decreases, as in CFS).
    fn update_min_vruntime(&mut self, pcpu: usize, now: Ticks) {
        let least = (0..self.vcpus.len())
            .filter(|&i| {
                let e = &self.vcpus[i];
                e.home == pcpu
                    && matches!(
                        e.state,
                        VcpuState::Running { .. } | VcpuState::Runnable { .. }
                    )
            })
            .map(|i| self.current_vruntime(i, now))
            .min();
        if let Some(least) = least {
            let cpu = &mut self.cpus[pcpu];
            cpu.min_vruntime = cpu.min_vruntime.max(least);
        }
    }

    /// Records in `kicks` the CPUs (other than `acting`) that should look again: idle ones
    /// some runnable vCPU waits for, and busy ones whose slice timer is not armed although
    /// someone now waits for them.
    fn note_kicks(&mut self, acting: Option<usize>) {
        let waiters = self.waiters();
        for cpu in 0..self.cpus.len() {
            if Some(cpu) == acting || waiters & bit(cpu) == 0 {
                continue;
            }
            let c = &mut self.cpus[cpu];
            if c.running.is_none() || !c.slice_armed {
                c.slice_armed = c.running.is_some();
                self.kicks |= bit(cpu);
            }
        }
    }
}
