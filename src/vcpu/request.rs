//! vCPU requests and kicks (KVM's `kvm_make_request` / `kvm_vcpu_kick` /
//! `kvm_make_all_cpus_request`).
//!
//! Another physical CPU asks a vCPU to do something before it next runs guest code (stop,
//! reset, flush its TLB, wake up, start at a CPU_ON entry point) by setting a request bit. If
//! the vCPU is in the guest, the requester also moves it to "exiting" and *kicks* its physical
//! CPU (an IPI, routed to EL2 so the guest cannot mask it), which makes it leave the guest.
//!
//! Request bits and the guest mode share ONE atomic word, so every step is a single atomic
//! read-modify-write on one location and needs no fences:
//! - the vCPU enters the guest only by a compare-and-swap from "outside, no request" to
//!   "in guest": a request posted at any earlier point makes the entry fail;
//! - the requester sets its bit and reads the mode in the same compare-and-swap, so it knows
//!   whether the vCPU could be in the guest without having seen the request.
//!
//! A requester that waits (`wait = true`) returns only once every target has taken the request
//! or is outside guest mode — also when the target is already "exiting" because of an earlier
//! request, the case the 2017 KVM thread found wrong (that requester sent no IPI and did not wait either,
//! then reused memory the guest could still reach). It spins with `sync::spin_wait`; the wait
//! ends because a kicked vCPU always leaves the guest.

use core::fmt;

use crate::sync::{AtomicU32, AtomicUsize, Ordering, spin_wait};

/// Something a vCPU must do before it next runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Request {
    /// Stop running: the VM was powered off (PSCI SYSTEM_OFF) or this vCPU was halted.
    Stop = 1 << 0,
    /// The VM is being reset (PSCI SYSTEM_RESET/RESET2): stop, the reset path reinitialises.
    Reset = 1 << 1,
    /// Invalidate this VM's stage-2 TLB entries on this physical CPU before re-entering.
    TlbFlush = 1 << 2,
    /// Wake up from WFI / PSCI CPU_SUSPEND (an interrupt became pending for the vCPU).
    Wake = 1 << 3,
    /// A PSCI CPU_ON is pending for this vCPU: claim its entry point and start.
    CpuOn = 1 << 4,
}

impl Request {
    /// Every request, lowest bit first.
    pub const ALL: [Request; 5] = [
        Request::Stop,
        Request::Reset,
        Request::TlbFlush,
        Request::Wake,
        Request::CpuOn,
    ];

    const fn bit(self) -> u32 {
        self as u32
    }

    /// True if a vCPU that is blocked in the hypervisor (WFI, powered off) must be woken for
    /// this request; a TLB flush can wait until the vCPU runs anyway.
    pub const fn wakes_blocked_vcpu(self) -> bool {
        !matches!(self, Request::TlbFlush)
    }
}

/// A set of [`Request`]s, as taken by [`VcpuRequests::take_requests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestSet(u32);

impl RequestSet {
    /// No request.
    pub const EMPTY: RequestSet = RequestSet(0);

    /// True if `request` is in the set.
    pub const fn contains(self, request: Request) -> bool {
        self.0 & request.bit() != 0
    }

    /// True if the set holds no request.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The requests in either set.
    pub const fn union(self, other: RequestSet) -> RequestSet {
        RequestSet(self.0 | other.0)
    }

    /// The requests in the set, lowest bit first.
    pub fn iter(self) -> impl Iterator<Item = Request> {
        Request::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl From<Request> for RequestSet {
    fn from(request: Request) -> Self {
        RequestSet(request.bit())
    }
}

/// Where a vCPU is with respect to guest execution (KVM's `vcpu->mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// Running hypervisor code for the vCPU, blocked, or not loaded: not in the guest.
    Outside,
    /// About to enter, or running, guest code.
    InGuest,
    /// Was in the guest and has been kicked; it may still run guest code until it exits.
    Exiting,
}

/// The interface to the hardware that makes a physical CPU notice a request.
pub trait Kick {
    /// Sends the kick IPI to physical CPU `pcpu`: it leaves the guest if it is in one, or wakes
    /// up if it is waiting (`wfi`) in the hypervisor.
    fn kick(&self, pcpu: usize);
}

/// Why [`VcpuRequests::enter_guest`] refused to enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// Requests are pending: take and handle them, then try again.
    RequestsPending(RequestSet),
    /// The vCPU is not outside guest mode (a run-loop bug: entered twice without exiting).
    NotOutside(GuestMode),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestsPending(set) => {
                write!(f, "guest entry aborted: requests {set:?} pending")
            }
            Self::NotOutside(mode) => write!(f, "guest entry while the vCPU is {mode:?}"),
        }
    }
}

/// The two top bits of the state word hold the guest mode; the rest are request bits.
const MODE_SHIFT: u32 = 30;
const MODE_MASK: u32 = 0b11 << MODE_SHIFT;
const MODE_OUTSIDE: u32 = 0;
const MODE_IN_GUEST: u32 = 1 << MODE_SHIFT;
const MODE_EXITING: u32 = 2 << MODE_SHIFT;

/// `pcpu` value before the vCPU was ever loaded on a physical CPU.
const NO_PCPU: usize = usize::MAX;

fn mode_of(state: u32) -> GuestMode {
    match state & MODE_MASK {
        MODE_OUTSIDE => GuestMode::Outside,
        MODE_IN_GUEST => GuestMode::InGuest,
        _ => GuestMode::Exiting,
    }
}

/// One vCPU's pending requests and guest mode, shared between its physical CPU and
/// requesters on other physical CPUs.
pub struct VcpuRequests {
    /// Request bits | guest mode (top two bits).
    state: AtomicU32,
    /// The physical CPU the vCPU is loaded on, where kicks go.
    pcpu: AtomicUsize,
}

impl VcpuRequests {
    /// A vCPU outside guest mode, with no request and no physical CPU yet.
    pub fn new() -> Self {
        Self {
            state: AtomicU32::new(MODE_OUTSIDE),
            pcpu: AtomicUsize::new(NO_PCPU),
        }
    }

    /// Records that the vCPU now runs on physical CPU `pcpu`. Call on that CPU, outside guest
    /// mode, before [`enter_guest`](Self::enter_guest).
    pub fn set_pcpu(&self, pcpu: usize) {
        self.pcpu.store(pcpu, Ordering::Relaxed);
    }

    /// The current guest mode.
    pub fn mode(&self) -> GuestMode {
        mode_of(self.state.load(Ordering::Acquire))
    }

    /// The requests pending now (without taking them).
    pub fn pending(&self) -> RequestSet {
        RequestSet(self.state.load(Ordering::Acquire) & !MODE_MASK)
    }

    /// vCPU side, last step before the world switch: moves to guest mode if no request is
    /// pending. On `Err(RequestsPending)` do not enter: take and handle the requests first.
    pub fn enter_guest(&self) -> Result<(), EntryError> {
        match self.state.compare_exchange(
            MODE_OUTSIDE,
            MODE_IN_GUEST,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(state) if state & !MODE_MASK != 0 => {
                Err(EntryError::RequestsPending(RequestSet(state & !MODE_MASK)))
            }
            Err(state) => Err(EntryError::NotOutside(mode_of(state))),
        }
    }

    /// vCPU side, first step after the world switch back: leaves guest mode (from "in guest"
    /// or "exiting"), keeping the pending requests. After this a waiting requester may reuse
    /// whatever it asked the vCPU to stop using.
    pub fn exit_guest(&self) {
        self.state.fetch_and(!MODE_MASK, Ordering::AcqRel);
    }

    /// vCPU side, outside guest mode: takes (clears and returns) all pending requests.
    pub fn take_requests(&self) -> RequestSet {
        RequestSet(self.state.fetch_and(MODE_MASK, Ordering::AcqRel) & !MODE_MASK)
    }

    /// Requester side: sets `request`, moves an in-guest vCPU to "exiting" and kicks it (or
    /// wakes it if it is blocked and the request needs that). Returns true if it kicked.
    fn post(&self, request: Request, kick: &impl Kick) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        let was = loop {
            let mut new = state | request.bit();
            if state & MODE_MASK == MODE_IN_GUEST {
                new = (new & !MODE_MASK) | MODE_EXITING;
            }
            match self
                .state
                .compare_exchange(state, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(was) => break was,
                Err(now) => state = now,
            }
        };
        let must_kick = match mode_of(was) {
            // Only the requester that moved it to "exiting" sends the IPI.
            GuestMode::InGuest => true,
            GuestMode::Exiting => false,
            GuestMode::Outside => request.wakes_blocked_vcpu(),
        };
        // The vCPU stored `pcpu` before its entry; our acquire of the state orders the read.
        let pcpu = self.pcpu.load(Ordering::Relaxed);
        if must_kick && pcpu != NO_PCPU {
            kick.kick(pcpu);
            return true;
        }
        false
    }

    /// Requester side: returns once the vCPU has taken `request` or is outside guest mode.
    fn wait_observed(&self, request: Request) {
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state & MODE_MASK == MODE_OUTSIDE || state & request.bit() == 0 {
                return;
            }
            spin_wait();
        }
    }
}

impl Default for VcpuRequests {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes `request` on `vcpu` and kicks it if needed. With `wait`, returns only once the vCPU
/// has taken the request or is outside guest mode (so it can no longer use what the request
/// is about); without, never blocks. Returns true if a kick was sent.
///
/// Must not be called with `wait` by the vCPU's own physical CPU while that vCPU is in guest
/// mode (it cannot be: the caller is running hypervisor code for it).
pub fn make_request(vcpu: &VcpuRequests, request: Request, wait: bool, kick: &impl Kick) -> bool {
    let kicked = vcpu.post(request, kick);
    if wait {
        vcpu.wait_observed(request);
    }
    kicked
}

/// Makes `request` on every vCPU in `vcpus` (kicking all first, so they exit in parallel), and
/// with `wait` returns only once each has taken it or is outside guest mode. Returns the
/// number of kicks sent. Used by SYSTEM_OFF/RESET (`Stop`/`Reset`, wait), stage-2 unmapping
/// (`TlbFlush`, wait) and wake-ups (no wait).
pub fn make_all_request<'a, I>(vcpus: I, request: Request, wait: bool, kick: &impl Kick) -> usize
where
    I: IntoIterator<Item = &'a VcpuRequests>,
    I::IntoIter: Clone,
{
    let vcpus = vcpus.into_iter();
    let kicks = vcpus
        .clone()
        .filter(|vcpu| vcpu.post(request, kick))
        .count();
    if wait {
        for vcpu in vcpus {
            vcpu.wait_observed(request);
        }
    }
    kicks
}

#[cfg(all(test, not(loom)))]
mod tests;
