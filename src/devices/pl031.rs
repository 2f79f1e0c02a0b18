//! An emulated ARM PL031 real-time clock (PrimeCell RTC, ARM DDI 0224), the one QEMU `virt`
//! has at 0x0901_0000, for Linux's `rtc-pl031` driver (so `date` and `hwclock` work).
//!
//! - The counter is the host's wall-clock seconds (`now`, given by the caller on every access)
//!   plus this RTC's own offset: a write to RTC_LR loads the counter, i.e. sets the offset, and
//!   touches nothing outside this VM. The offset survives a guest reset, as a battery-backed RTC
//!   keeps its time across a reboot.
//! - RTC_CR reads 1: the clock runs from power-on (as in QEMU); per the TRM, once RTCStart is
//!   set further writes have no effect.
//! - The match interrupt: RIS is latched when the counter equals RTC_MR (armed whenever MR or
//!   LR is written; an MR equal to the counter matches at once, as QEMU does), MIS = RIS & IMSC
//!   drives the interrupt line, a 1 written to RTC_ICR clears it. [`EmulatedPl031::deadline`]
//!   tells the caller when to look again so an alarm fires on time without guest accesses.
//! - Registers are 32 bits; sub-word reads see the addressed bytes, sub-word writes at a
//!   non-zero byte offset and writes to read-only registers are ignored, 64-bit accesses are
//!   refused. Unknown offsets read as zero.

use super::MmioError;
use super::mmio::AccessSize;

// Register offsets (ARM DDI 0224, 3.2).
const DR: u64 = 0x000;
const MR: u64 = 0x004;
const LR: u64 = 0x008;
const CR: u64 = 0x00c;
const IMSC: u64 = 0x010;
const RIS: u64 = 0x014;
const MIS: u64 = 0x018;
const ICR: u64 = 0x01c;
const ID_BASE: u64 = 0xfe0;

/// PeriphID0-3 (part 0x031, ARM, revision 1) and PCellID0-3: what the AMBA bus reads to bind
/// `rtc-pl031`; the same bytes as QEMU's model.
const ID_BYTES: [u8; 8] = [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The one interrupt bit (RTCINTR) of IMSC / RIS / MIS / ICR.
const INT_MATCH: u32 = 1;

/// Emulated PL031 state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmulatedPl031 {
    /// Counter minus host seconds, modulo 2^32: 0 until the guest loads RTC_LR.
    offset: u32,
    mr: u32,
    /// The value last loaded (RTC_LR reads it back).
    lr: u32,
    imsc: u32,
    /// The latched match interrupt.
    ris: bool,
    /// Host second at which the counter next equals MR, while a match is pending.
    match_at: Option<u64>,
}

impl EmulatedPl031 {
    /// An RTC showing the host's time, no match armed.
    pub const fn new() -> Self {
        Self {
            offset: 0,
            mr: 0,
            lr: 0,
            imsc: 0,
            ris: false,
            match_at: None,
        }
    }

    /// Guest reset: the time (the loaded offset) stays, the match logic goes back to reset.
    pub fn reset(&mut self) {
        *self = Self {
            offset: self.offset,
            lr: self.lr,
            ..Self::new()
        };
    }

    /// The counter (RTC_DR) at host second `now`.
    pub fn count(&self, now: u64) -> u32 {
        (now as u32).wrapping_add(self.offset)
    }

    /// Latches a match that came due by `now`.
    pub fn poll(&mut self, now: u64) {
        if self.match_at.is_some_and(|at| now >= at) {
            self.ris = true;
            self.match_at = None;
        }
    }

    /// The host second at which a pending match comes due (call [`Self::poll`] then).
    pub fn deadline(&self) -> Option<u64> {
        self.match_at
    }

    /// Level of the RTC's interrupt line (RTCINTR = MIS), after [`Self::poll`].
    pub fn irq_level(&self) -> bool {
        self.ris && self.imsc & INT_MATCH != 0
    }

    /// Arms the match for the next time the counter equals MR (now, if it already does).
    fn arm(&mut self, now: u64) {
        let ticks = self.mr.wrapping_sub(self.count(now));
        self.match_at = Some(now + u64::from(ticks));
        self.poll(now);
    }

    fn check(offset: u64, size: AccessSize) -> Result<(), MmioError> {
        if size == AccessSize::Double {
            return Err(MmioError::BadSize { offset, bytes: 8 });
        }
        if !offset.is_multiple_of(size.bytes()) {
            return Err(MmioError::Unaligned { offset });
        }
        Ok(())
    }

    /// A guest read of `size` at `offset` at host second `now`.
    pub fn read(&mut self, offset: u64, size: AccessSize, now: u64) -> Result<u64, MmioError> {
        Self::check(offset, size)?;
        self.poll(now);
        let register = offset & !3;
        let value = match register {
            DR => self.count(now),
            MR => self.mr,
            LR => self.lr,
            CR => 1,
            IMSC => self.imsc,
            RIS => u32::from(self.ris),
            MIS => u32::from(self.irq_level()),
            ID_BASE..=0xffc => {
                let index = ((register - ID_BASE) / 4) as usize;
                ID_BYTES.get(index).copied().map_or(0, u32::from)
            }
            _ => 0,
        };
        let shift = (offset & 3) * 8;
        Ok((u64::from(value) >> shift) & size.mask())
    }

    /// A guest write of `value` (`size` wide) at `offset` at host second `now`.
    pub fn write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
        now: u64,
    ) -> Result<(), MmioError> {
        Self::check(offset, size)?;
        self.poll(now);
        if offset & 3 != 0 {
            return Ok(());
        }
        let value = (value & size.mask()) as u32;
        match offset {
            MR => {
                self.mr = value;
                self.arm(now);
            }
            LR => {
                self.lr = value;
                self.offset = value.wrapping_sub(now as u32);
                self.arm(now);
            }
            IMSC => self.imsc = value & INT_MATCH,
            ICR if value & INT_MATCH != 0 => self.ris = false,
            // DR, RIS, MIS are read-only; CR's RTCStart is already set.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_767_225_600; // 2026-01-01 00:00:00 UTC

    fn read(rtc: &mut EmulatedPl031, offset: u64, now: u64) -> u32 {
        rtc.read(offset, AccessSize::Word, now).unwrap() as u32
    }

    fn write(rtc: &mut EmulatedPl031, offset: u64, value: u32, now: u64) {
        rtc.write(offset, AccessSize::Word, u64::from(value), now)
            .unwrap()
    }

    #[test]
    fn primecell_ids_match_a_pl031() {
        let mut rtc = EmulatedPl031::new();
        let ids: Vec<u32> = (0..8).map(|i| read(&mut rtc, 0xfe0 + 4 * i, T0)).collect();
        assert_eq!(ids, [0x31, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn counter_follows_the_host_and_is_started() {
        let mut rtc = EmulatedPl031::new();
        assert_eq!(read(&mut rtc, DR, T0), T0 as u32);
        assert_eq!(read(&mut rtc, DR, T0 + 61), (T0 + 61) as u32);
        assert_eq!(read(&mut rtc, CR, T0), 1);
        write(&mut rtc, CR, 0, T0);
        assert_eq!(read(&mut rtc, CR, T0), 1, "RTCStart cannot be cleared");
        // Read-only registers ignore writes.
        write(&mut rtc, DR, 5, T0);
        assert_eq!(read(&mut rtc, DR, T0), T0 as u32);
    }

    #[test]
    fn load_register_sets_this_rtcs_own_time() {
        let mut rtc = EmulatedPl031::new();
        let other = EmulatedPl031::new();
        write(&mut rtc, LR, 1_000, T0);
        assert_eq!(read(&mut rtc, LR, T0), 1_000);
        assert_eq!(read(&mut rtc, DR, T0), 1_000);
        assert_eq!(read(&mut rtc, DR, T0 + 10), 1_010);
        // Another VM's RTC still shows the host's time.
        assert_eq!(other.count(T0 + 10), (T0 + 10) as u32);
        // A reset keeps the time, as a battery-backed RTC does.
        rtc.reset();
        assert_eq!(read(&mut rtc, DR, T0 + 20), 1_020);
        assert_eq!(read(&mut rtc, LR, T0 + 20), 1_000);
    }

    #[test]
    fn match_raises_ris_and_mis_by_imsc_until_cleared() {
        let mut rtc = EmulatedPl031::new();
        write(&mut rtc, MR, (T0 + 5) as u32, T0);
        assert_eq!(rtc.deadline(), Some(T0 + 5));
        assert_eq!(read(&mut rtc, RIS, T0 + 4), 0);
        assert_eq!(read(&mut rtc, RIS, T0 + 5), 1);
        assert_eq!(read(&mut rtc, MIS, T0 + 5), 0, "masked");
        assert!(!rtc.irq_level());
        write(&mut rtc, IMSC, 0xffff_ffff, T0 + 6);
        assert_eq!(read(&mut rtc, IMSC, T0 + 6), 1);
        assert_eq!(read(&mut rtc, MIS, T0 + 6), 1);
        assert!(rtc.irq_level());
        // Writing 0 to ICR clears nothing; 1 clears the interrupt.
        write(&mut rtc, ICR, 0, T0 + 6);
        assert!(rtc.irq_level());
        write(&mut rtc, ICR, 1, T0 + 6);
        assert_eq!(read(&mut rtc, RIS, T0 + 6), 0);
        assert!(!rtc.irq_level());
        // The match fired once: nothing is pending any more.
        assert_eq!(rtc.deadline(), None);
        assert_eq!(read(&mut rtc, RIS, T0 + 100), 0);
    }

    #[test]
    fn match_on_the_current_count_fires_at_once_and_past_match_waits_for_wrap() {
        let mut rtc = EmulatedPl031::new();
        write(&mut rtc, IMSC, 1, T0);
        write(&mut rtc, MR, T0 as u32, T0);
        assert!(rtc.irq_level());
        write(&mut rtc, ICR, 1, T0);
        write(&mut rtc, MR, (T0 - 1) as u32, T0);
        assert_eq!(rtc.deadline(), Some(T0 + u64::from(u32::MAX)));
        assert!(!rtc.irq_level());
    }

    #[test]
    fn match_follows_the_loaded_time() {
        let mut rtc = EmulatedPl031::new();
        write(&mut rtc, LR, 100, T0);
        write(&mut rtc, MR, 103, T0);
        assert_eq!(rtc.deadline(), Some(T0 + 3));
        // Loading the counter moves the match with it.
        write(&mut rtc, LR, 101, T0 + 1);
        assert_eq!(rtc.deadline(), Some(T0 + 3));
        rtc.poll(T0 + 3);
        assert_eq!(read(&mut rtc, RIS, T0 + 3), 1);
    }

    #[test]
    fn sizes_and_alignment() {
        let mut rtc = EmulatedPl031::new();
        assert_eq!(
            rtc.read(DR, AccessSize::Double, T0),
            Err(MmioError::BadSize {
                offset: 0,
                bytes: 8
            })
        );
        assert_eq!(
            rtc.write(0x2, AccessSize::Word, 0, T0),
            Err(MmioError::Unaligned { offset: 2 })
        );
        assert_eq!(
            rtc.read(DR + 3, AccessSize::Byte, T0).unwrap(),
            u64::from((T0 as u32) >> 24)
        );
        assert_eq!(read(&mut rtc, 0x800, T0), 0);
        // A byte write to the top of LR is ignored, not a load.
        rtc.write(LR + 1, AccessSize::Byte, 0xff, T0).unwrap();
        assert_eq!(read(&mut rtc, DR, T0), T0 as u32);
    }
}
