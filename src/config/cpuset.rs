//! Sets of physical CPUs, as Xen's dom0less `hard-affinity` strings write them ("0-1,3").

use core::fmt;

/// A set of physical CPU indices below [`CpuSet::CAPACITY`].
///
/// 64 is plenty: Bulkhead's boards have 4 CPUs (it runs on at most 8); a bitmap in one `u64`
/// keeps the set `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(u64);

/// Why a CPU list string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSetError {
    /// No CPU at all (empty string or only separators).
    Empty,
    /// An item is neither `N` nor `A-B` with decimal numbers.
    BadItem,
    /// A range whose start is above its end (`3-1`).
    Reversed { start: usize, end: usize },
    /// A CPU index at or above [`CpuSet::CAPACITY`].
    TooLarge(usize),
}

impl fmt::Display for CpuSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "no CPU listed"),
            Self::BadItem => write!(
                f,
                "not a list of CPUs and ranges like \"0-1,3\" (decimal numbers)"
            ),
            Self::Reversed { start, end } => write!(f, "range {start}-{end} runs backwards"),
            Self::TooLarge(cpu) => write!(
                f,
                "CPU {cpu} is beyond the {} CPUs Bulkhead can name",
                CpuSet::CAPACITY
            ),
        }
    }
}

impl CpuSet {
    /// How many CPUs a set can name (indices `0..CAPACITY`).
    pub const CAPACITY: usize = 64;
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// The set holding only `cpu`; `None` if `cpu` is not below [`Self::CAPACITY`].
    pub fn single(cpu: usize) -> Option<Self> {
        (cpu < Self::CAPACITY).then(|| Self(1 << cpu))
    }

    /// Parses a comma-separated list of CPUs and inclusive ranges, the syntax of
    /// `hard-affinity` in Xen's `docs/misc/arm/device-tree/booting.txt` ("0-3", "1,4-7").
    /// Decimal only; spaces around items are allowed; an empty item is an error.
    pub fn parse(s: &str) -> Result<Self, CpuSetError> {
        if s.trim().is_empty() {
            return Err(CpuSetError::Empty);
        }
        let number = |t: &str| -> Result<usize, CpuSetError> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CpuSetError::BadItem);
            }
            // All digits: the only possible failure is overflow, which is "too large" too.
            let n = t.parse::<usize>().unwrap_or(usize::MAX);
            if n >= Self::CAPACITY {
                return Err(CpuSetError::TooLarge(n));
            }
            Ok(n)
        };
        let mut set = Self::EMPTY;
        for item in s.split(',') {
            let (start, end) = match item.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(item)?;
                    (n, n)
                }
            };
            if start > end {
                return Err(CpuSetError::Reversed { start, end });
            }
            for cpu in start..=end {
                set.0 |= 1 << cpu;
            }
        }
        Ok(set)
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < Self::CAPACITY && self.0 & (1 << cpu) != 0
    }

    /// Adds `cpu`; returns false (and changes nothing) if it is not below [`Self::CAPACITY`].
    pub fn insert(&mut self, cpu: usize) -> bool {
        let ok = cpu < Self::CAPACITY;
        if ok {
            self.0 |= 1 << cpu;
        }
        ok
    }

    /// The CPUs in either set.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The CPUs in ascending order (a walk over the set bits: it runs on the scheduler's path).
    pub fn iter(&self) -> impl Iterator<Item = usize> + use<> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            (bits != 0).then(|| {
                let cpu = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                cpu
            })
        })
    }

    /// The set whose bit n is CPU n.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Bit n set for CPU n.
    pub const fn bits(&self) -> u64 {
        self.0
    }

    /// The lowest CPU in the set.
    pub fn first(&self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }

    /// The highest CPU in the set.
    pub fn last(&self) -> Option<usize> {
        (self.0 != 0).then(|| 63 - self.0.leading_zeros() as usize)
    }

    /// How many CPUs the set holds.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// The canonical list form, ranges merged: `{0, 1, 3}` prints as "0-1,3" (and parses back).
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut cpus = self.iter().peekable();
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end += 1;
                cpus.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}
