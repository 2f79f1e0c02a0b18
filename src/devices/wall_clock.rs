//! Wall-clock time for the guests' RTCs: a start time read once at boot, advanced by the
//! generic counter (CNTPCT_EL0 at CNTFRQ_EL0), so no RTC is read again after boot.
//!
//! The start time comes, in this order, from `bulkhead.rtc=<unix seconds>` (an explicit
//! setting beats a guess), the host's own PL031 (QEMU `virt` has one, its time the host's), or
//! the time the image was built (the Raspberry Pi 4 has no RTC): never 1970.

/// Where the start time came from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TimeSource {
    /// `bulkhead.rtc=`.
    Bootarg,
    /// The host's PL031.
    HostRtc,
    /// The image's build time.
    BuildTime,
}

impl TimeSource {
    /// For the boot line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bootarg => "bulkhead.rtc=",
            Self::HostRtc => "the host's PL031",
            Self::BuildTime => "the build time",
        }
    }
}

/// Picks the start time: `bootarg` (`bulkhead.rtc=`, checked by `crate::bootargs`), else
/// `host_rtc`, else `build`.
pub fn pick_start(bootarg: Option<u64>, host_rtc: Option<u64>, build: u64) -> (u64, TimeSource) {
    match (bootarg, host_rtc) {
        (Some(secs), _) => (secs, TimeSource::Bootarg),
        (None, Some(secs)) => (secs, TimeSource::HostRtc),
        (None, None) => (build, TimeSource::BuildTime),
    }
}

/// Seconds since the Unix epoch as a function of the counter.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct WallClock {
    start_secs: u64,
    start_counter: u64,
    /// Counter ticks per second (never 0).
    freq: u64,
}

impl WallClock {
    /// `start_secs` was the time when the counter read `start_counter`; it ticks at `freq` Hz.
    pub fn new(start_secs: u64, start_counter: u64, freq: u64) -> Self {
        Self {
            start_secs,
            start_counter,
            freq: freq.max(1),
        }
    }

    /// Whole seconds at counter value `counter`.
    pub fn seconds(&self, counter: u64) -> u64 {
        self.start_secs + counter.saturating_sub(self.start_counter) / self.freq
    }

    /// The first counter value at which [`Self::seconds`] reaches `secs`.
    pub fn counter_at(&self, secs: u64) -> u64 {
        let ahead = secs.saturating_sub(self.start_secs);
        self.start_counter
            .saturating_add(ahead.saturating_mul(self.freq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_advance_with_the_counter() {
        let clock = WallClock::new(1_767_225_600, 5_000, 62_500_000);
        assert_eq!(clock.seconds(5_000), 1_767_225_600);
        assert_eq!(clock.seconds(5_000 + 62_499_999), 1_767_225_600);
        assert_eq!(clock.seconds(5_000 + 62_500_000), 1_767_225_601);
        assert_eq!(clock.seconds(0), 1_767_225_600, "never before the start");
        assert_eq!(clock.counter_at(1_767_225_601), 5_000 + 62_500_000);
        assert_eq!(
            clock.seconds(clock.counter_at(1_767_225_700)),
            1_767_225_700
        );
        assert_eq!(clock.counter_at(0), 5_000);
        assert_eq!(WallClock::new(7, 0, 0).seconds(100), 107);
    }

    #[test]
    fn bootarg_then_host_rtc_then_build_time() {
        assert_eq!(
            pick_start(Some(1_893_456_000), Some(1), 2),
            (1_893_456_000, TimeSource::Bootarg)
        );
        assert_eq!(pick_start(None, Some(1), 2), (1, TimeSource::HostRtc));
        assert_eq!(pick_start(None, None, 2), (2, TimeSource::BuildTime));
    }
}
