//! What happens to a VM when it stops: Xen's `xl.cfg` life-cycle policies `on_poweroff`,
//! `on_reboot` and `on_crash` (xl.cfg(5), "Event Actions"), in Xen's words, and the limit on
//! how often a VM may restart.
//!
//! Read from Bulkhead's bootargs (`bulkhead.on_poweroff=`, `bulkhead.on_reboot=`,
//! `bulkhead.on_crash=`, `bulkhead.reset_limit=`), which apply to every VM, and per VM from its
//! `xen,domain` node (`on_poweroff = "destroy";` ...), which wins over the bootargs.
//!
//! Accepted: `destroy`, `restart`, `preserve`. Xen's other words need what Bulkhead does not
//! have — `rename-restart` a toolstack that keeps the old domain under a new name,
//! `coredump-destroy` / `coredump-restart` somewhere to write a core dump, `soft-reset` a PV
//! interface — so they are refused with a warning and the default stays.

use alloc::format;
use alloc::string::String;
use core::fmt;

use crate::dtb;

/// What to do with a VM that stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The VM stays off; when every VM is off the machine powers off.
    Destroy,
    /// The VM is reset and boots again (within the reset limit).
    Restart,
    /// The VM stays stopped with its memory and registers as they were, and the machine stays
    /// up while it is (for a debugger: QEMU's gdbstub, a JTAG probe).
    Preserve,
}

impl Policy {
    /// Xen's word for it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Destroy => "destroy",
            Self::Restart => "restart",
            Self::Preserve => "preserve",
        }
    }

    /// One of Xen's words. The error says why the word is not taken.
    pub fn parse(word: &str) -> Result<Self, PolicyError> {
        match word {
            "destroy" => Ok(Self::Destroy),
            "restart" => Ok(Self::Restart),
            "preserve" => Ok(Self::Preserve),
            "rename-restart" | "coredump-destroy" | "coredump-restart" | "soft-reset" => {
                Err(PolicyError::XenOnly)
            }
            _ => Err(PolicyError::Unknown),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// Why a policy word is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// A word of Xen's that needs what Bulkhead does not have (a toolstack, a dump target).
    XenOnly,
    /// Not a policy word at all.
    Unknown,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::XenOnly => {
                "a Xen toolstack action Bulkhead does not have (accepted: destroy, restart, preserve)"
            }
            Self::Unknown => "not destroy, restart or preserve",
        })
    }
}

/// Why a VM stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// PSCI SYSTEM_OFF.
    PowerOff,
    /// PSCI SYSTEM_RESET / SYSTEM_RESET2.
    Reboot,
    /// The guest crashed: it said so (pvpanic) or Bulkhead found a vCPU looping on a fault,
    /// or it restarted too often.
    Crash,
}

impl StopCause {
    /// The xl.cfg key whose policy applies.
    pub fn key(self) -> &'static str {
        match self {
            Self::PowerOff => "on_poweroff",
            Self::Reboot => "on_reboot",
            Self::Crash => "on_crash",
        }
    }
}

/// Restarts allowed per minute of guest time when `bulkhead.reset_limit=` is absent: far
/// more than a real guest's reboots (a Linux boot takes seconds), far fewer than a `panic=1`
/// loop of a guest that dies early in boot makes.
pub const DEFAULT_RESET_LIMIT: u32 = 10;

/// The largest `bulkhead.reset_limit=` accepted (the VM keeps one counter value per allowed
/// restart).
pub const MAX_RESET_LIMIT: u32 = 1000;

/// A VM's life-cycle policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub on_poweroff: Policy,
    pub on_reboot: Policy,
    pub on_crash: Policy,
    /// At most this many restarts in any minute of guest time (None: no limit).
    pub reset_limit: Option<u32>,
}

/// Today's behaviour for power-off and reboot (as xl.cfg's defaults), and Xen's default for a
/// crash: `destroy`.
impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            on_poweroff: Policy::Destroy,
            on_reboot: Policy::Restart,
            on_crash: Policy::Destroy,
            reset_limit: Some(DEFAULT_RESET_LIMIT),
        }
    }
}

impl Lifecycle {
    /// The policy for `cause`.
    pub fn policy(&self, cause: StopCause) -> Policy {
        match cause {
            StopCause::PowerOff => self.on_poweroff,
            StopCause::Reboot => self.on_reboot,
            StopCause::Crash => self.on_crash,
        }
    }

    fn slot(&mut self, key: &str) -> Option<&mut Policy> {
        match key {
            "on_poweroff" => Some(&mut self.on_poweroff),
            "on_reboot" => Some(&mut self.on_reboot),
            "on_crash" => Some(&mut self.on_crash),
            _ => None,
        }
    }

    /// The policies every VM starts from: the defaults, changed by the bootargs
    /// `bulkhead.on_poweroff=` / `bulkhead.on_reboot=` / `bulkhead.on_crash=` and
    /// `bulkhead.reset_limit=N|off`. A word not taken keeps the default, with a warning.
    pub fn from_bootargs(bootargs: &str, warnings: &mut alloc::vec::Vec<String>) -> Self {
        let mut out = Self::default();
        for key in POLICY_KEYS {
            let arg = format!("bulkhead.{key}");
            let Some(word) = dtb::bootarg(bootargs, &arg) else {
                continue;
            };
            match Policy::parse(word) {
                Ok(policy) => {
                    if let Some(slot) = out.slot(key) {
                        *slot = policy;
                    }
                }
                Err(e) => warnings.push(format!(
                    "{arg}={word}: {e}; using {}",
                    out.policy(cause_of(key))
                )),
            }
        }
        if let Some(word) = dtb::bootarg(bootargs, RESET_LIMIT_ARG) {
            match parse_reset_limit(word) {
                Some(limit) => out.reset_limit = limit,
                None => warnings.push(format!(
                    "{RESET_LIMIT_ARG}={word}: not a number from 0 to {MAX_RESET_LIMIT} or \
                     `off`; using {DEFAULT_RESET_LIMIT}"
                )),
            }
        }
        out
    }

    /// Applies a `xen,domain` node's policy property `key` (`on_poweroff`, `on_reboot`,
    /// `on_crash`) with value `word`. `Ok(Some(warning))` for a Xen word not taken (the
    /// policy stays), `Err` for anything else (the node is malformed).
    pub fn set_from_node(&mut self, key: &str, word: &str) -> Result<Option<String>, String> {
        let current = self.policy(cause_of(key));
        match Policy::parse(word) {
            Ok(policy) => {
                if let Some(slot) = self.slot(key) {
                    *slot = policy;
                }
                Ok(None)
            }
            Err(e @ PolicyError::XenOnly) => {
                Ok(Some(format!("{key} = \"{word}\": {e}; using {current}")))
            }
            Err(e) => Err(format!("\"{word}\": {e}")),
        }
    }
}

/// The xl.cfg keys, which are also the `xen,domain` property names.
pub const POLICY_KEYS: [&str; 3] = ["on_poweroff", "on_reboot", "on_crash"];

const RESET_LIMIT_ARG: &str = "bulkhead.reset_limit";

fn cause_of(key: &str) -> StopCause {
    match key {
        "on_poweroff" => StopCause::PowerOff,
        "on_reboot" => StopCause::Reboot,
        _ => StopCause::Crash,
    }
}

/// `N` (0 ..= [`MAX_RESET_LIMIT`]) → `Some(Some(N))`, `off` → `Some(None)`, else `None`.
fn parse_reset_limit(word: &str) -> Option<Option<u32>> {
    if word == "off" {
        return Some(None);
    }
    super::parse_decimal(word)
        .filter(|&n| n <= u64::from(MAX_RESET_LIMIT))
        .map(|n| Some(n as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn config_policy_words_are_xens() {
        assert_eq!(Policy::parse("destroy"), Ok(Policy::Destroy));
        assert_eq!(Policy::parse("restart"), Ok(Policy::Restart));
        assert_eq!(Policy::parse("preserve"), Ok(Policy::Preserve));
        for word in [
            "rename-restart",
            "coredump-destroy",
            "coredump-restart",
            "soft-reset",
        ] {
            assert_eq!(Policy::parse(word), Err(PolicyError::XenOnly), "{word}");
        }
        for word in ["", "Destroy", "reboot", "destroy ", "poweroff"] {
            assert_eq!(Policy::parse(word), Err(PolicyError::Unknown), "{word:?}");
        }
        for p in [Policy::Destroy, Policy::Restart, Policy::Preserve] {
            assert_eq!(Policy::parse(p.word()), Ok(p));
        }
    }

    #[test]
    fn config_lifecycle_defaults_keep_poweroff_and_reboot_as_they_were() {
        let l = Lifecycle::default();
        assert_eq!(l.policy(StopCause::PowerOff), Policy::Destroy);
        assert_eq!(l.policy(StopCause::Reboot), Policy::Restart);
        assert_eq!(l.policy(StopCause::Crash), Policy::Destroy);
        assert_eq!(l.reset_limit, Some(10));
        let mut w = Vec::new();
        assert_eq!(
            Lifecycle::from_bootargs("console=ttyAMA0 loglevel=info", &mut w),
            l
        );
        assert!(w.is_empty());
    }

    #[test]
    fn config_lifecycle_from_bootargs() {
        let mut w = Vec::new();
        let l = Lifecycle::from_bootargs(
            "loglevel=info bulkhead.on_crash=preserve bulkhead.on_reboot=destroy \
             bulkhead.on_poweroff=restart bulkhead.reset_limit=3",
            &mut w,
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(l.on_crash, Policy::Preserve);
        assert_eq!(l.on_reboot, Policy::Destroy);
        assert_eq!(l.on_poweroff, Policy::Restart);
        assert_eq!(l.reset_limit, Some(3));
        let l = Lifecycle::from_bootargs("bulkhead.reset_limit=off", &mut w);
        assert_eq!(l.reset_limit, None);
        let l = Lifecycle::from_bootargs("bulkhead.reset_limit=0", &mut w);
        assert_eq!(l.reset_limit, Some(0));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn config_lifecycle_bootargs_not_taken_warn_and_keep_the_default() {
        let mut w = Vec::new();
        let l = Lifecycle::from_bootargs(
            "bulkhead.on_crash=coredump-destroy bulkhead.on_reboot=rename-restart \
             bulkhead.on_poweroff=off bulkhead.reset_limit=1001",
            &mut w,
        );
        assert_eq!(l, Lifecycle::default());
        assert_eq!(
            w,
            [
                "bulkhead.on_poweroff=off: not destroy, restart or preserve; using destroy",
                "bulkhead.on_reboot=rename-restart: a Xen toolstack action Bulkhead does not \
                 have (accepted: destroy, restart, preserve); using restart",
                "bulkhead.on_crash=coredump-destroy: a Xen toolstack action Bulkhead does not \
                 have (accepted: destroy, restart, preserve); using destroy",
                "bulkhead.reset_limit=1001: not a number from 0 to 1000 or `off`; using 10",
            ]
        );
        w.clear();
        for bad in ["-1", "", "ten", "0x10", "1e3"] {
            Lifecycle::from_bootargs(&format!("bulkhead.reset_limit={bad}"), &mut w);
        }
        assert_eq!(w.len(), 5, "{w:?}");
    }

    #[test]
    fn config_lifecycle_node_properties() {
        let mut l = Lifecycle::default();
        assert_eq!(l.set_from_node("on_crash", "restart"), Ok(None));
        assert_eq!(l.on_crash, Policy::Restart);
        assert_eq!(
            l.set_from_node("on_reboot", "coredump-restart"),
            Ok(Some(String::from(
                "on_reboot = \"coredump-restart\": a Xen toolstack action Bulkhead does not \
                 have (accepted: destroy, restart, preserve); using restart"
            )))
        );
        assert_eq!(l.on_reboot, Policy::Restart);
        assert_eq!(
            l.set_from_node("on_poweroff", "halt"),
            Err(String::from("\"halt\": not destroy, restart or preserve"))
        );
        assert_eq!(l.on_poweroff, Policy::Destroy);
    }
}
