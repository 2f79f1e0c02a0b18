//! Bulkhead's own bootargs (`/chosen/bootargs`, QEMU's `-append`, the Pi's `cmdline.txt`): the
//! one place that knows every `bulkhead.*` key and `loglevel=`, its type and range.
//!
//! Words that are neither (`console=ttyAMA0`, `earlycon`, what a firmware adds) are someone
//! else's and are ignored silently. A `bulkhead.*` key Bulkhead does not know, a value out of
//! range, a key without `=value`, or a key given twice gives one [`Warning`] each, naming the
//! word and what is accepted; the setting then keeps its default (for a repeat: the first value,
//! as [`crate::dtb::bootarg`] always read it). Parsing needs no heap: it runs before there is one.

use core::fmt;

use crate::config::{parse_decimal as decimal, parse_size};
use crate::loader::GuestFormat;

/// The settings in force, from the bootargs (defaults where absent or malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `loglevel=`: error|warn|info|debug|trace, or Linux's 0-8.
    pub log_level: log::LevelFilter,
    /// `bulkhead.vmid_bits=`: at most this many VMID bits (default: the CPU's 8 or 16).
    pub vmid_bits: Option<u8>,
    /// `bulkhead.console_escape=`: the byte that, typed three times, moves console input on.
    pub console_escape: u8,
    /// `bulkhead.console_idle_ms=`: how long a VM's partial line waits for its end.
    pub console_idle_ms: u64,
    /// `bulkhead.sched_slice_ms=`: how long a vCPU may run on a CPU it shares before another
    /// waiting for that CPU gets its turn.
    pub sched_slice_ms: u64,
    /// `bulkhead.guest_mem=`: RAM of the single guest of the legacy form, bytes.
    pub guest_mem: Option<u64>,
    /// `bulkhead.guest_smp=`: vCPUs of the single guest of the legacy form.
    pub guest_smp: Option<usize>,
    /// `bulkhead.hotplug_test=`: cycles of the secondary-CPU off/on self test.
    pub hotplug_test: Option<u32>,
    /// `bulkhead.guest_format=`: `raw` boots the single guest's kernel as raw code; `auto` (the
    /// default) goes by its header.
    pub guest_format: GuestFormat,
    /// `bulkhead.semihosting=1`: the host has Arm semihosting on (QEMU
    /// `-semihosting-config enable=on`, which `run.sh` passes), so a run where no VM can start
    /// may end QEMU with a failure status.
    pub semihosting: bool,
    /// `bulkhead.rtc=`: the guests' clock starts at these Unix seconds (default: the host's
    /// RTC, else the build time; `devices::wall_clock`).
    pub rtc: Option<u64>,
}

/// Ctrl-A, Xen's default console switch character.
pub const DEFAULT_CONSOLE_ESCAPE: u8 = 0x01;

/// How long a VM's partial line (a shell prompt) waits for its end before it is shown anyway:
/// long enough that a line printed byte by byte is rarely cut, short enough that a prompt
/// appears without a keystroke.
pub const DEFAULT_CONSOLE_IDLE_MS: u64 = 200;

/// The time slice of vCPUs sharing a CPU, between Xen's credit scheduler (30 ms,
/// `sched_credit_tslice_ms`) and Linux CFS's 6 ms latency target: switches stay rare, and a
/// runnable vCPU waits at most a few slices for a shared CPU.
pub const DEFAULT_SCHED_SLICE_MS: u64 = 10;

impl Default for Settings {
    fn default() -> Self {
        Self {
            log_level: log::LevelFilter::Info,
            vmid_bits: None,
            console_escape: DEFAULT_CONSOLE_ESCAPE,
            console_idle_ms: DEFAULT_CONSOLE_IDLE_MS,
            sched_slice_ms: DEFAULT_SCHED_SLICE_MS,
            guest_mem: None,
            guest_smp: None,
            hotplug_test: None,
            guest_format: GuestFormat::Detect,
            semihosting: false,
            rtc: None,
        }
    }
}

/// One key Bulkhead knows: its name, what it accepts (for the warning), what is used instead,
/// and how a value is applied (false: the value is malformed).
struct Key {
    name: &'static str,
    accepts: &'static str,
    otherwise: &'static str,
    apply: fn(&mut Settings, &str) -> bool,
}

/// Most VMID bits (VTTBR_EL2.VMID with VTCR_EL2.VS, Arm ARM D8.2.5).
const MAX_VMID_BITS: u8 = 16;
/// Longest console idle wait: beyond a minute a prompt would seem lost.
const MAX_CONSOLE_IDLE_MS: u64 = 60_000;
/// Longest time slice: a second; beyond it a guest sharing a CPU would see its sibling stall
/// for seconds (RCU stall warnings, lost keystrokes). 0 would mean switching on every tick.
const MAX_SCHED_SLICE_MS: u64 = 1000;
/// Most hotplug self-test cycles (each takes milliseconds per CPU).
const MAX_HOTPLUG_CYCLES: u32 = 10_000;

const KEYS: &[Key] = &[
    Key {
        name: "loglevel",
        accepts: "error, warn, info, debug, trace or 0-8",
        otherwise: "info",
        apply: |s, v| {
            s.log_level = match v {
                "error" | "0" | "1" | "2" | "3" => log::LevelFilter::Error,
                "warn" | "4" => log::LevelFilter::Warn,
                "info" | "5" | "6" => log::LevelFilter::Info,
                "debug" | "7" => log::LevelFilter::Debug,
                "trace" | "8" => log::LevelFilter::Trace,
                _ => return false,
            };
            true
        },
    },
    Key {
        name: "bulkhead.vmid_bits",
        accepts: "a number of bits from 1 to 16",
        otherwise: "the CPU's VMID width",
        apply: |s, v| {
            let bits = decimal(v).filter(|b| (1..=u64::from(MAX_VMID_BITS)).contains(b));
            s.vmid_bits = bits.map(|b| b as u8);
            bits.is_some()
        },
    },
    Key {
        name: "bulkhead.console_escape",
        accepts: "^A to ^Z, or a byte value (1 to 255, or 0x01 to 0xff)",
        otherwise: "^A",
        apply: |s, v| {
            let byte = match v.as_bytes() {
                [b'^', letter] if letter.is_ascii_alphabetic() => {
                    Some(u64::from(letter.to_ascii_uppercase() - b'@'))
                }
                _ => v
                    .strip_prefix("0x")
                    .map_or_else(|| decimal(v), |hex| u64::from_str_radix(hex, 16).ok()),
            };
            match byte.filter(|b| (1..=0xff).contains(b)) {
                Some(b) => {
                    s.console_escape = b as u8;
                    true
                }
                None => false,
            }
        },
    },
    Key {
        name: "bulkhead.console_idle_ms",
        accepts: "milliseconds from 0 to 60000",
        otherwise: "200",
        apply: |s, v| match decimal(v).filter(|&ms| ms <= MAX_CONSOLE_IDLE_MS) {
            Some(ms) => {
                s.console_idle_ms = ms;
                true
            }
            None => false,
        },
    },
    Key {
        name: "bulkhead.sched_slice_ms",
        accepts: "milliseconds from 1 to 1000",
        otherwise: "10",
        apply: |s, v| match decimal(v).filter(|ms| (1..=MAX_SCHED_SLICE_MS).contains(ms)) {
            Some(ms) => {
                s.sched_slice_ms = ms;
                true
            }
            None => false,
        },
    },
    Key {
        name: "bulkhead.guest_mem",
        accepts: "a size like 512M or 1G (K, M or G, or bytes)",
        otherwise: "the guest's default",
        apply: |s, v| {
            s.guest_mem = parse_size(v).filter(|&bytes| bytes > 0);
            s.guest_mem.is_some()
        },
    },
    Key {
        name: "bulkhead.guest_smp",
        accepts: "a number of vCPUs",
        otherwise: "as many vCPUs as CPUs",
        apply: |s, v| {
            s.guest_smp = decimal(v).and_then(|n| usize::try_from(n).ok());
            s.guest_smp.is_some()
        },
    },
    Key {
        name: "bulkhead.hotplug_test",
        accepts: "a number of cycles from 0 to 10000",
        otherwise: "no test",
        apply: |s, v| {
            let cycles = decimal(v).filter(|&n| n <= u64::from(MAX_HOTPLUG_CYCLES));
            s.hotplug_test = cycles.map(|n| n as u32);
            cycles.is_some()
        },
    },
    // The life-cycle policies are checked where they are parsed, `config::Lifecycle::
    // from_bootargs`, which warns with the reason a word is refused (e.g. a Xen toolstack action);
    // here they only need to be known.
    Key {
        name: "bulkhead.on_poweroff",
        accepts: "destroy, restart or preserve",
        otherwise: "destroy",
        apply: |_, _| true,
    },
    Key {
        name: "bulkhead.on_reboot",
        accepts: "destroy, restart or preserve",
        otherwise: "restart",
        apply: |_, _| true,
    },
    Key {
        name: "bulkhead.on_crash",
        accepts: "destroy, restart or preserve",
        otherwise: "destroy",
        apply: |_, _| true,
    },
    Key {
        name: "bulkhead.reset_limit",
        accepts: "restarts per minute, or off",
        otherwise: "10",
        apply: |_, _| true,
    },
    Key {
        name: "bulkhead.guest_format",
        accepts: "raw or auto",
        otherwise: "auto (by the kernel's header)",
        apply: |s, v| match GuestFormat::parse(v) {
            Some(format) => {
                s.guest_format = format;
                true
            }
            None => false,
        },
    },
    Key {
        name: "bulkhead.rtc",
        accepts: "Unix seconds from 0 to 4294967295 (the PL031's 32-bit counter)",
        otherwise: "the host's RTC, else the build time",
        apply: |s, v| {
            s.rtc = decimal(v).filter(|&secs| secs <= u64::from(u32::MAX));
            s.rtc.is_some()
        },
    },
    Key {
        name: "bulkhead.semihosting",
        accepts: "0 or 1",
        otherwise: "0 (no semihosting calls)",
        apply: |s, v| {
            s.semihosting = v == "1";
            matches!(v, "0" | "1")
        },
    },
];

/// Whether a key is Bulkhead's to check.
fn is_ours(key: &str) -> bool {
    key == "loglevel" || key.starts_with("bulkhead.")
}

/// What is wrong with one word of the bootargs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A `bulkhead.*` key Bulkhead does not know.
    Unknown,
    /// A known key without `=value`.
    NoValue,
    /// A known key whose value is malformed or out of range.
    Malformed,
    /// A known key given again (the first one counts).
    Repeated,
}

/// One bootarg word Bulkhead cannot use, with what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning<'a> {
    pub word: &'a str,
    pub problem: Problem,
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.word.split('=').next().unwrap_or(self.word);
        let known = KEYS.iter().find(|k| k.name == key);
        match (self.problem, known) {
            (Problem::Repeated, _) => write!(
                f,
                "bootarg {}: {key} was given before; the first one is used",
                self.word
            ),
            (Problem::NoValue, Some(k)) => write!(
                f,
                "bootarg {}: needs ={}; using {}",
                self.word, k.accepts, k.otherwise
            ),
            (Problem::Malformed, Some(k)) => write!(
                f,
                "bootarg {}: not {}; using {}",
                self.word, k.accepts, k.otherwise
            ),
            _ => {
                write!(f, "bootarg {}: unknown; Bulkhead knows ", self.word)?;
                for (i, k) in KEYS.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}=", k.name)?;
                }
                Ok(())
            }
        }
    }
}

/// Walks the bootargs once: applies every good word of ours to `settings` and reports every
/// bad one to `warn`.
fn walk<'a>(cmdline: &'a str, settings: &mut Settings, mut warn: impl FnMut(Warning<'a>)) {
    let mut seen = 0u32;
    for word in cmdline.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        if !is_ours(key) {
            continue;
        }
        let mut report = |problem| warn(Warning { word, problem });
        let Some(index) = KEYS.iter().position(|k| k.name == key) else {
            report(Problem::Unknown);
            continue;
        };
        if seen & (1 << index) != 0 {
            report(Problem::Repeated);
            continue;
        }
        seen |= 1 << index;
        match value {
            None => report(Problem::NoValue),
            Some(v) => {
                if !(KEYS[index].apply)(settings, v) {
                    report(Problem::Malformed);
                }
            }
        }
    }
}

impl Settings {
    /// The settings the bootargs give (defaults where a word is absent or malformed).
    pub fn parse(cmdline: &str) -> Self {
        let mut settings = Self::default();
        walk(cmdline, &mut settings, |_| {});
        settings
    }

    /// The VMID width in force on a CPU whose VMIDs have `hw_bits` bits.
    pub fn vmid_bits_in_force(&self, hw_bits: u8) -> u8 {
        self.vmid_bits.map_or(hw_bits, |b| b.min(hw_bits))
    }

    /// The one-line summary shown at boot (`hw_vmid_bits`: the CPU's VMID width).
    pub fn in_force(&self, hw_vmid_bits: u8) -> InForce<'_> {
        InForce {
            settings: self,
            vmid_bits: self.vmid_bits_in_force(hw_vmid_bits),
        }
    }
}

/// Every bad word of ours in `cmdline`, in order.
pub fn warnings(cmdline: &str, each: impl FnMut(Warning<'_>)) {
    walk(cmdline, &mut Settings::default(), each);
}

/// The settings in force, as `key=value` words (`settings: loglevel=info vmid_bits=16 ...`).
pub struct InForce<'a> {
    settings: &'a Settings,
    vmid_bits: u8,
}

impl fmt::Display for InForce<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.settings;
        let level = match s.log_level {
            log::LevelFilter::Off | log::LevelFilter::Error => "error",
            log::LevelFilter::Warn => "warn",
            log::LevelFilter::Info => "info",
            log::LevelFilter::Debug => "debug",
            log::LevelFilter::Trace => "trace",
        };
        write!(f, "settings: loglevel={level} vmid_bits={}", self.vmid_bits)?;
        match s.console_escape {
            b @ 1..=26 => write!(f, " console_escape=^{}", (b + b'@') as char)?,
            b => write!(f, " console_escape={b:#04x}")?,
        }
        write!(f, " console_idle_ms={}", s.console_idle_ms)?;
        write!(f, " sched_slice_ms={}", s.sched_slice_ms)?;
        match s.guest_mem {
            Some(bytes) if bytes.is_multiple_of(1 << 20) => {
                write!(f, " guest_mem={}M", bytes >> 20)?
            }
            Some(bytes) => write!(f, " guest_mem={bytes}")?,
            None => {}
        }
        if let Some(n) = s.guest_smp {
            write!(f, " guest_smp={n}")?;
        }
        if let Some(n) = s.hotplug_test {
            write!(f, " hotplug_test={n}")?;
        }
        if s.guest_format == GuestFormat::Raw {
            write!(f, " guest_format=raw")?;
        }
        if let Some(secs) = s.rtc {
            write!(f, " rtc={secs}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
