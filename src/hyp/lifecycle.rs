//! What becomes of a VM that stopped (powered off, rebooted, crashed): its policy
//! (`config::Lifecycle`, xl.cfg's `on_poweroff` / `on_reboot` / `on_crash`), and the limit on
//! restarts per minute of guest time, so a guest that dies early in every boot (Linux with
//! `panic=1`, a kernel that cannot find its root) is stopped instead of rebooting forever.
//! Plain decisions; `hyp::run` carries them out.

use alloc::collections::VecDeque;

use crate::config::{Lifecycle, Policy, StopCause};

/// Restarts of one VM within the last minute of guest time.
pub struct ResetRate {
    limit: Option<u32>,
    /// Counter ticks in a minute.
    window: u64,
    /// Counter values of the restarts within the window, oldest first (at most `limit`).
    times: VecDeque<u64>,
}

impl ResetRate {
    /// At most `limit` restarts (None: any number) in any minute of a counter running at
    /// `counter_hz`. Allocates its whole history now, so restarts do not grow the heap.
    pub fn new(limit: Option<u32>, counter_hz: u64) -> Self {
        Self {
            limit,
            window: counter_hz.saturating_mul(60),
            times: VecDeque::with_capacity(limit.unwrap_or(0) as usize),
        }
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }

    /// Counts a restart at counter value `now`, if it is allowed: false when `limit` restarts
    /// already happened in the minute before `now`.
    pub fn allow(&mut self, now: u64) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        while let Some(&oldest) = self.times.front() {
            if now.wrapping_sub(oldest) >= self.window {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() >= limit as usize {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

/// What to do with a stopped VM, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The cause whose policy applies (a restart over the limit counts as a crash).
    pub cause: StopCause,
    pub policy: Policy,
    /// Set when the VM was to restart but restarted `limit` times in the last minute already.
    pub over_reset_limit: Option<u32>,
}

/// The VM stopped for `cause` at counter value `now`: what its policies say. A restart over
/// the reset limit becomes a crash; if `on_crash` says restart too, the VM is destroyed
/// (restarting it again would only continue the loop).
pub fn decide(lifecycle: &Lifecycle, cause: StopCause, rate: &mut ResetRate, now: u64) -> Decision {
    let policy = lifecycle.policy(cause);
    if policy != Policy::Restart || rate.allow(now) {
        return Decision {
            cause,
            policy,
            over_reset_limit: None,
        };
    }
    let policy = match lifecycle.on_crash {
        Policy::Restart => Policy::Destroy,
        other => other,
    };
    Decision {
        cause: StopCause::Crash,
        policy,
        over_reset_limit: rate.limit(),
    }
}

#[cfg(test)]
mod exit_lifecycle_tests {
    use super::*;

    /// A 1 kHz counter: a minute is 60 000 ticks.
    const HZ: u64 = 1000;
    const MINUTE: u64 = 60 * HZ;

    #[test]
    fn exit_reset_rate_allows_the_limit_within_a_minute_and_no_more() {
        let mut rate = ResetRate::new(Some(3), HZ);
        assert!(rate.allow(0));
        assert!(rate.allow(1000));
        assert!(rate.allow(2000));
        assert!(!rate.allow(3000), "a fourth within the minute");
        assert!(
            !rate.allow(MINUTE - 1),
            "still within a minute of the first"
        );
        assert!(rate.allow(MINUTE), "the first is a minute old now");
        assert!(!rate.allow(MINUTE + 999));
        assert!(rate.allow(MINUTE + 1000));
    }

    #[test]
    fn exit_reset_rate_spread_out_restarts_are_never_refused() {
        // A guest that reboots every 7 s (a real Linux reboot cycle) with the default limit.
        let mut rate = ResetRate::new(Some(crate::config::DEFAULT_RESET_LIMIT), HZ);
        for i in 0..1000 {
            assert!(rate.allow(i * 7 * HZ), "restart {i}");
        }
        // A `panic=1` loop of a guest that dies 1 s into each boot: the 11th is refused.
        let mut rate = ResetRate::new(Some(crate::config::DEFAULT_RESET_LIMIT), HZ);
        let refused = (1..=20).find(|&i| !rate.allow(i * 2 * HZ));
        assert_eq!(refused, Some(11));
    }

    #[test]
    fn exit_reset_rate_limits_of_zero_and_none() {
        let mut rate = ResetRate::new(Some(0), HZ);
        assert!(!rate.allow(0));
        let mut rate = ResetRate::new(None, HZ);
        assert!((0..10_000).all(|t| rate.allow(t)));
        assert_eq!(rate.times.capacity(), 0, "no history kept without a limit");
    }

    #[test]
    fn exit_reset_rate_keeps_its_allocation() {
        let mut rate = ResetRate::new(Some(4), HZ);
        let capacity = rate.times.capacity();
        for t in 0..1000 {
            rate.allow(t * 20 * HZ);
        }
        assert_eq!(rate.times.capacity(), capacity);
    }

    #[test]
    fn exit_decide_follows_the_policy_of_the_cause() {
        let lifecycle = Lifecycle {
            on_poweroff: Policy::Preserve,
            on_reboot: Policy::Destroy,
            on_crash: Policy::Restart,
            reset_limit: Some(1),
        };
        let mut rate = ResetRate::new(lifecycle.reset_limit, HZ);
        let d = |cause, rate: &mut ResetRate, now| decide(&lifecycle, cause, rate, now);
        assert_eq!(
            d(StopCause::PowerOff, &mut rate, 0),
            Decision {
                cause: StopCause::PowerOff,
                policy: Policy::Preserve,
                over_reset_limit: None
            }
        );
        assert_eq!(d(StopCause::Reboot, &mut rate, 0).policy, Policy::Destroy);
        // Destroy and preserve do not count as restarts: the crash may restart once.
        assert_eq!(d(StopCause::Crash, &mut rate, 0).policy, Policy::Restart);
        // The second crash within the minute: over the limit, and on_crash = restart would
        // loop, so the VM is destroyed.
        assert_eq!(
            d(StopCause::Crash, &mut rate, 10),
            Decision {
                cause: StopCause::Crash,
                policy: Policy::Destroy,
                over_reset_limit: Some(1)
            }
        );
    }

    #[test]
    fn exit_decide_a_reboot_loop_becomes_a_crash_under_on_crash() {
        let mut lifecycle = Lifecycle {
            reset_limit: Some(2),
            ..Lifecycle::default()
        };
        let mut rate = ResetRate::new(lifecycle.reset_limit, HZ);
        for now in [0, 1] {
            assert_eq!(
                decide(&lifecycle, StopCause::Reboot, &mut rate, now).policy,
                Policy::Restart
            );
        }
        lifecycle.on_crash = Policy::Preserve;
        assert_eq!(
            decide(&lifecycle, StopCause::Reboot, &mut rate, 2),
            Decision {
                cause: StopCause::Crash,
                policy: Policy::Preserve,
                over_reset_limit: Some(2)
            }
        );
    }
}
