//! The checks: PSCI/SMCCC return codes for good and bad calls, aborts on IPAs with nothing
//! behind them, secondary vCPU power-up and power-down, and the null-hypercall timing.
//!
//! Each check prints `PROBE: PASS <name>` or `PROBE: FAIL <name> got=.. want=..`. The wanted
//! values are the PSCI 1.1 / SMCCC 1.1 answers of a hypervisor that implements exactly what
//! Bulkhead promises; see the report in the probe's commit for the table.

use core::fmt::Display;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::doorbell::{self, DOORBELL_RING};
use crate::machine::{self, Machine};
use crate::println;
use crate::psci::{self, Conduit, affinity, ret};
use crate::vectors::{self, DFSC_SYNC_EXTERNAL, EC_DATA_ABORT_SAME_EL, Fault};

/// PSCI_VERSION the hypervisor implements (PSCI 1.1).
pub const WANT_PSCI_VERSION: i64 = psci::VERSION_1_1;
/// SMCCC_VERSION the hypervisor implements (SMCCC 1.1).
pub const WANT_SMCCC_VERSION: i64 = psci::VERSION_1_1;

/// CPU_ON's answer for an entry point outside guest RAM.
///
/// Bulkhead's contract is INVALID_PARAMETERS for a bad MPIDR *or* a bad entry point.
/// DEN0022 also defines INVALID_ADDRESS (-9) for an entry "known not to be available to the
/// caller" (TF-A uses it); we follow the product contract, so a guest only has one code to
/// handle. Change both sides together if that contract changes.
pub const WANT_CPU_ON_BAD_ENTRY: i64 = ret::INVALID_PARAMETERS;

/// An MPIDR no virt-like guest has (Aff0 = 255).
const BAD_MPIDR: u64 = 0xFF;
/// An MPIDR with Aff3 set, which no guest vCPU has either.
const BAD_MPIDR_AFF3: u64 = 0x1_0000_0000;
/// PSCI function ids nobody implements: reserved PSCI numbers (SMC32 and SMC64).
const UNKNOWN_PSCI_32: u32 = 0x8400_00FF;
const UNKNOWN_PSCI_64: u32 = 0xC400_0055;
/// Start of the vendor-specific hypervisor service range (OEN 6); Bulkhead offers none.
const VENDOR_HYP_SERVICE: u32 = 0x8600_0000;
/// SMCCC function id with a yielding call in the Arm architecture range, and all-ones.
const YIELDING_ZERO: u32 = 0x0000_0000;
const ALL_ONES: u32 = 0xFFFF_FFFF;
/// Garbage in X0 bits 63:32, which SMCCC says the callee ignores (the id is W0).
const JUNK_UPPER_HALF: u64 = 0xDEAD_BEEF_0000_0000;
/// SYSTEM_RESET2 reset type in the reserved architectural range (bit 31 clear, not 0).
const RESERVED_RESET_TYPE: u64 = 0x7FFF_FFFF;
/// An IPA below RAM with nothing behind it on a virt-like guest (QEMU's PCIe window natively).
const HOLE_BELOW_RAM: u64 = 0x2000_0000;
/// An entry point below RAM (the flash on QEMU virt, nothing on Bulkhead).
const ENTRY_BELOW_RAM: u64 = 0x1000;
/// Context ids handed to the secondary, one per round, so a stale start is noticed.
const SECONDARY_CONTEXTS: [u64; 2] = [0x5EC0_0001, 0x5EC0_0002];
/// How long to wait for the secondary to come up or go down.
const SECONDARY_TIMEOUT_SECONDS: u64 = 2;
/// Calls per timing loop.
const NULL_HYPERCALL_COUNT: u64 = 1000;

/// Pass and fail counts.
#[derive(Default)]
pub struct Tally {
    pub pass: u64,
    pub fail: u64,
}

impl Tally {
    pub fn pass(&mut self, name: impl Display) {
        println!("PROBE: PASS {name}");
        self.pass += 1;
    }

    pub fn fail(&mut self, name: impl Display, got: impl Display, want: impl Display) {
        println!("PROBE: FAIL {name} got={got} want={want}");
        self.fail += 1;
    }

    pub fn expect_eq(&mut self, name: impl Display, got: u64, want: u64) {
        if got == want {
            self.pass(name);
        } else {
            self.fail(name, format_args!("{got:#x}"), format_args!("{want:#x}"));
        }
    }

    /// Checks X0 of a call to `function` against any of `wants`. SMC32 results live in W0,
    /// so only the low 32 bits count for them; SMC64 results must be sign-extended to 64.
    fn expect_ret(
        &mut self,
        name: impl Display,
        function: u32,
        got: Result<u64, Fault>,
        wants: &[i64],
    ) {
        let width_mask = if psci::is_smc64(function) {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let want = wants.first().map_or(0, |w| *w as u64 & width_mask);
        match got {
            Ok(x0)
                if wants
                    .iter()
                    .any(|w| x0 & width_mask == *w as u64 & width_mask) =>
            {
                self.pass(name)
            }
            Ok(x0) => self.fail(
                name,
                format_args!("{:#x}", x0 & width_mask),
                format_args!("{want:#x}"),
            ),
            Err(fault) => self.fail(
                name,
                format_args!("exception(esr={:#x})", fault.esr),
                format_args!("{want:#x}"),
            ),
        }
    }

    /// Makes an HVC call and checks its X0.
    fn call(&mut self, name: impl Display, function: u32, args: [u64; 3], want: i64) {
        let got = vectors::capture(|| psci::hvc(function, args[0], args[1], args[2]));
        self.expect_ret(name, function, got, &[want]);
    }
}

/// Runs every check in an order that keeps one check's failure from spoiling the next.
pub fn run_all(machine: &Machine, tally: &mut Tally) {
    check_dtb(machine, tally);
    check_versions(tally);
    check_features(tally);
    check_cpu_features(machine, tally);
    crate::fidelity::run(machine, tally);
    check_unknown_functions(tally);
    check_doorbells(machine, tally);
    check_misc_calls(tally);
    check_affinity_and_cpu_on_errors(tally);
    check_aborts(machine, tally);
    if let Some(addr) = machine.touch_ipa {
        check_one_abort(tally, "touch_ipa_aborts", addr, false);
    }
    check_physical_timer(tally);
    match machine.other_cpu {
        Some(other) => {
            check_secondary(other, tally);
            crate::fidelity::check_apr_after_cpu_off_on(tally);
        }
        None => println!("PROBE: SKIP secondary (the DTB lists one CPU)"),
    }
    measure_null_hypercall();
    // Last: a PSCI implementation that wrongly accepts a bad entry point starts the
    // secondary on garbage (QEMU's own PSCI does), which must not disturb other checks.
    if let Some(other) = machine.other_cpu {
        check_cpu_on_bad_entry(machine, other, tally);
    }
}

fn check_dtb(machine: &Machine, tally: &mut Tally) {
    println!(
        "PROBE: dtb={:#x} ram={:#x}+{:#x} cpus={} mpidr={:#x}",
        machine.dtb_addr,
        machine.ram_base,
        machine.ram_size,
        machine.cpu_count,
        machine::own_mpidr()
    );
    tally.expect_eq("dtb_valid", u64::from(machine.dtb_valid), 1);
    tally.expect_eq("dtb_ram_base", machine.ram_base, machine::RAM_BASE);
}

fn check_versions(tally: &mut Tally) {
    tally.call(
        "psci_version",
        psci::PSCI_VERSION,
        [0; 3],
        WANT_PSCI_VERSION,
    );
    tally.call(
        "smccc_version",
        psci::SMCCC_VERSION,
        [0; 3],
        WANT_SMCCC_VERSION,
    );
    let junk_x0 = JUNK_UPPER_HALF | u64::from(psci::PSCI_VERSION);
    let got = vectors::capture(|| psci::call(Conduit::Hvc, junk_x0, 0, 0, 0));
    tally.expect_ret(
        "psci_version_x0_upper_junk",
        psci::PSCI_VERSION,
        got,
        &[WANT_PSCI_VERSION],
    );
    let id = u64::from(psci::PSCI_VERSION);
    let got = vectors::capture(|| psci::call(Conduit::Smc, id, 0, 0, 0));
    tally.expect_ret(
        "psci_version_smc",
        psci::PSCI_VERSION,
        got,
        &[WANT_PSCI_VERSION],
    );
}

fn check_features(tally: &mut Tally) {
    let feature = |id: u32| [u64::from(id), 0, 0];
    tally.call(
        "psci_features_cpu_on",
        psci::PSCI_FEATURES,
        feature(psci::CPU_ON_64),
        ret::SUCCESS,
    );
    tally.call(
        "psci_features_smccc_version",
        psci::PSCI_FEATURES,
        feature(psci::SMCCC_VERSION),
        ret::SUCCESS,
    );
    tally.call(
        "psci_features_unknown",
        psci::PSCI_FEATURES,
        feature(UNKNOWN_PSCI_32),
        ret::NOT_SUPPORTED,
    );
    tally.call(
        "smccc_arch_features_unknown",
        psci::SMCCC_ARCH_FEATURES,
        feature(0x8000_00FF),
        ret::NOT_SUPPORTED,
    );
}

/// The CPU the guest sees (Bulkhead's `hyp::cpu_features`): no EL2, the GIC of the guest's
/// machine, no PMU (and PMU accesses UNDEFINED), read-only ID registers, reserved ones RAZ.
fn check_cpu_features(machine: &Machine, tally: &mut Tally) {
    use crate::hostile::{SysReg, run_word};
    const ID_AA64PFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 0);
    const ID_AA64DFR0_EL1: SysReg = SysReg::new(3, 0, 0, 5, 0);
    const ID_RESERVED: SysReg = SysReg::new(3, 0, 0, 4, 3);
    const PMCR_EL0: SysReg = SysReg::new(3, 3, 9, 12, 0);
    let read = |reg: SysReg| vectors::capture(|| run_word(reg.mrs_x0(), 0, 0, 0, 0));
    let field = |value: u64, lsb: u32| (value >> lsb) & 0xf;
    let class = |r: Result<u64, Fault>| r.err().map_or(u64::MAX, |f| f.class());
    match read(ID_AA64PFR0_EL1) {
        Ok(pfr0) => {
            tally.expect_eq("id_aa64pfr0_el2_hidden", field(pfr0, 8), 0);
            let want_gic = u64::from(machine.gic_version == 3);
            tally.expect_eq("id_aa64pfr0_gic_is_the_guests", field(pfr0, 24), want_gic);
        }
        Err(f) => tally.fail("id_aa64pfr0_el2_hidden", f.class(), "a value"),
    }
    match read(ID_AA64DFR0_EL1) {
        Ok(dfr0) => tally.expect_eq("id_aa64dfr0_pmu_hidden", field(dfr0, 8), 0),
        Err(f) => tally.fail("id_aa64dfr0_pmu_hidden", f.class(), "a value"),
    }
    tally.expect_eq(
        "id_reserved_reads_zero",
        read(ID_RESERVED).unwrap_or(u64::MAX),
        0,
    );
    tally.expect_eq(
        "pmcr_el0_read_undefined",
        class(read(PMCR_EL0)),
        vectors::EC_UNKNOWN,
    );
    let write = vectors::capture(|| run_word(ID_AA64PFR0_EL1.msr_x1(), 0, 0, 0, 0));
    tally.expect_eq(
        "id_aa64pfr0_write_undefined",
        class(write),
        vectors::EC_UNKNOWN,
    );
}

fn check_unknown_functions(tally: &mut Tally) {
    let unknown: [(&str, u32); 5] = [
        ("unknown_psci_smc32", UNKNOWN_PSCI_32),
        ("unknown_psci_smc64", UNKNOWN_PSCI_64),
        ("unknown_vendor_hyp", VENDOR_HYP_SERVICE),
        ("unknown_fid_zero", YIELDING_ZERO),
        ("unknown_fid_all_ones", ALL_ONES),
    ];
    for (name, function) in unknown {
        tally.call(name, function, [0; 3], ret::NOT_SUPPORTED);
    }
}

/// The doorbell call's errors, as far as the DTB says what this VM was given: a number it
/// was not given is SMCCC's INVALID_PARAMETER (-3); with no doorbell at all the call is NOT_SUPPORTED
/// (which is also every unknown SMCCC call's answer). None of these rings anything.
fn check_doorbells(machine: &Machine, tally: &mut Tally) {
    let peers = &machine.peers;
    if peers.any() {
        if let Some(region) = peers.shared_memory(psci_probe::pingpong::REGION_ID) {
            println!(
                "PROBE: peer shared_memory id={} ipa={:#x} size={:#x}",
                region.id.unwrap_or("-"),
                region.ipa,
                region.size
            );
        }
        for out in peers.outgoing() {
            println!(
                "PROBE: peer doorbell number={} peer={}",
                out.number,
                out.peer.unwrap_or("-")
            );
        }
        for incoming in peers.incoming() {
            println!(
                "PROBE: peer doorbell_in spi={} peer={}",
                incoming.spi,
                incoming.peer.unwrap_or("-")
            );
        }
        tally.expect_eq("peer_nodes_well_formed", u64::from(peers.malformed), 0);
    }
    let features = [u64::from(DOORBELL_RING), 0, 0];
    let unused = peers.unused_number();
    if peers.outgoing().next().is_some() {
        tally.call(
            "doorbell_arch_features",
            psci::SMCCC_ARCH_FEATURES,
            features,
            ret::SUCCESS,
        );
        tally.call(
            "doorbell_bad_number_refused",
            DOORBELL_RING,
            [u64::from(unused), 0, 0],
            ret::SMCCC_INVALID_PARAMETER,
        );
    } else if peers.has_doorbell_nodes() {
        // Only incoming doorbells: whether that counts as "has doorbells" is the
        // hypervisor's choice; either refusal is fine, success is not.
        let got = vectors::capture(|| doorbell::ring(unused));
        tally.expect_ret(
            "doorbell_bad_number_refused",
            DOORBELL_RING,
            got,
            &[ret::SMCCC_INVALID_PARAMETER, ret::NOT_SUPPORTED],
        );
    } else {
        tally.call(
            "doorbell_not_supported_without_config",
            DOORBELL_RING,
            [0; 3],
            ret::NOT_SUPPORTED,
        );
        tally.call(
            "doorbell_arch_features_without_config",
            psci::SMCCC_ARCH_FEATURES,
            features,
            ret::NOT_SUPPORTED,
        );
    }
}

fn check_misc_calls(tally: &mut Tally) {
    tally.call(
        "migrate_info_type",
        psci::MIGRATE_INFO_TYPE,
        [0; 3],
        psci::MIGRATE_NOT_REQUIRED,
    );
    tally.call(
        "system_reset2_reserved_type",
        psci::SYSTEM_RESET2_64,
        [RESERVED_RESET_TYPE, 0, 0],
        ret::INVALID_PARAMETERS,
    );
}

fn check_affinity_and_cpu_on_errors(tally: &mut Tally) {
    let own = machine::own_mpidr();
    let entry = secondary_entry_address();
    tally.call(
        "affinity_info_self_on",
        psci::AFFINITY_INFO_64,
        [own, 0, 0],
        affinity::ON,
    );
    tally.call(
        "affinity_info_bad_mpidr",
        psci::AFFINITY_INFO_64,
        [BAD_MPIDR, 0, 0],
        ret::INVALID_PARAMETERS,
    );
    tally.call(
        "cpu_on_bad_mpidr",
        psci::CPU_ON_64,
        [BAD_MPIDR, entry, 0],
        ret::INVALID_PARAMETERS,
    );
    tally.call(
        "cpu_on_bad_mpidr_aff3",
        psci::CPU_ON_64,
        [BAD_MPIDR_AFF3, entry, 0],
        ret::INVALID_PARAMETERS,
    );
    tally.call(
        "cpu_on_self",
        psci::CPU_ON_64,
        [own, entry, 0],
        ret::ALREADY_ON,
    );
}

/// Loads and stores to IPAs with neither RAM nor a device behind them must raise a
/// synchronous external abort at EL1, with FAR_EL1 = the address (unless FnV says otherwise).
fn check_aborts(machine: &Machine, tally: &mut Tally) {
    let after_ram = machine.ram_end();
    check_one_abort(tally, "abort_load_after_ram", after_ram, false);
    check_one_abort(tally, "abort_store_after_ram", after_ram, true);
    check_one_abort(tally, "abort_load_hole_below_ram", HOLE_BELOW_RAM, false);
}

fn check_one_abort(tally: &mut Tally, name: &str, addr: u64, write: bool) {
    let outcome = vectors::capture(|| {
        if write {
            vectors::store_u32(addr, 0x5A5A_5A5A);
        } else {
            vectors::load_u32(addr);
        }
    });
    let Err(fault) = outcome else {
        tally.fail(
            name,
            "no exception",
            format_args!("data abort at {addr:#x}"),
        );
        return;
    };
    let far_ok = fault.far_not_valid() || fault.far == addr;
    if fault.class() == EC_DATA_ABORT_SAME_EL
        && fault.status_code() == DFSC_SYNC_EXTERNAL
        && fault.is_write() == write
        && far_ok
    {
        tally.pass(name);
    } else {
        tally.fail(
            name,
            format_args!("esr={:#x},far={:#x}", fault.esr, fault.far),
            format_args!(
                "ec={EC_DATA_ABORT_SAME_EL:#x},dfsc={DFSC_SYNC_EXTERNAL:#x},wnr={},far={addr:#x}",
                u8::from(write)
            ),
        );
    }
}

// Handshake with the secondary. Written by one CPU, read by the other; plain stores only.
/// Context id the secondary found in x0 (0 until it runs).
static SECONDARY_CONTEXT: AtomicU64 = AtomicU64::new(0);
/// Set by the primary when the secondary may call CPU_OFF.
static SECONDARY_RELEASE: AtomicBool = AtomicBool::new(false);
/// X0 of the secondary's CPU_OFF if that call ever returned (0 = it did not).
static SECONDARY_CPU_OFF_RESULT: AtomicU64 = AtomicU64::new(0);

/// Entry of a secondary vCPU after the asm stub set its stack and vectors.
/// `context` is the CPU_ON context id, which PSCI delivers in x0.
#[unsafe(no_mangle)]
extern "C" fn probe_secondary_main(context: u64) -> ! {
    match context {
        crate::bench::SECONDARY_CONTEXT => crate::bench::secondary(),
        crate::fpcheck::SECONDARY_CONTEXT => crate::fpcheck::secondary(),
        crate::memloop::SECONDARY_CONTEXT => crate::memloop::secondary(),
        _ => {}
    }
    println!(
        "PROBE: secondary up mpidr={:#x} context={context:#x}",
        machine::own_mpidr()
    );
    // Round 1 or 2 (SECONDARY_CONTEXTS), for the GIC CPU-interface reset check.
    crate::fidelity::secondary_apr_round((context & 0xf) as usize);
    SECONDARY_CONTEXT.store(context, Ordering::SeqCst);
    wait_for(|| SECONDARY_RELEASE.load(Ordering::SeqCst));
    let result = psci::hvc(psci::CPU_OFF, 0, 0, 0);
    // Only reached if CPU_OFF failed.
    SECONDARY_CPU_OFF_RESULT.store(result | 1 << 63, Ordering::SeqCst);
    psci::park()
}

pub(crate) fn secondary_entry_address() -> u64 {
    unsafe extern "C" {
        fn probe_secondary_entry();
    }
    probe_secondary_entry as *const () as u64
}

/// Spins until `done` or the timeout; returns whether `done` became true.
fn wait_for(done: impl Fn() -> bool) -> bool {
    let limit = SECONDARY_TIMEOUT_SECONDS * machine::counter_frequency();
    let start = machine::counter();
    while machine::counter().wrapping_sub(start) < limit {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// Two rounds of CPU_ON → secondary prints → CPU_OFF → AFFINITY_INFO says OFF, each with a
/// second CPU_ON while the first is pending or running; round 2 shows that a vCPU powered off
/// by CPU_OFF can be started again.
/// The EL1 physical timer must work (a hypervisor may emulate it, not drop it): CVAL/TVAL
/// read back, ISTATUS rises once the deadline passes, TVAL then counts negative.
fn check_physical_timer(tally: &mut Tally) {
    let now = machine::physical_counter();
    machine::write_cntp_ctl(0);
    machine::write_cntp_cval(now + 2000);
    tally.expect_eq(
        "ptimer_cval_reads_back",
        machine::read_cntp_cval(),
        now + 2000,
    );
    machine::write_cntp_ctl(1); // ENABLE, unmasked
    let mut fired = false;
    for _ in 0..2_000_000 {
        if machine::read_cntp_ctl() & 0b100 != 0 {
            fired = true;
            break;
        }
    }
    tally.expect_eq("ptimer_istatus_rises", u64::from(fired), 1);
    let tval = machine::read_cntp_tval() as u32 as i32;
    tally.expect_eq(
        "ptimer_tval_negative_after_deadline",
        u64::from(tval <= 0),
        1,
    );
    let before = machine::physical_counter();
    machine::write_cntp_tval(100_000);
    let cval = machine::read_cntp_cval();
    let after = machine::physical_counter();
    let tval_sets_cval = cval >= before + 100_000 && cval <= after + 100_000;
    tally.expect_eq("ptimer_tval_write_sets_cval", u64::from(tval_sets_cval), 1);
    machine::write_cntp_ctl(0b10); // masked, disabled
    tally.expect_eq(
        "ptimer_ctl_reads_back",
        machine::read_cntp_ctl() & 0b11,
        0b10,
    );
    machine::write_cntp_ctl(0);
}

fn check_secondary(other: u64, tally: &mut Tally) {
    tally.call(
        "affinity_info_secondary_off_at_boot",
        psci::AFFINITY_INFO_64,
        [other, 0, 0],
        affinity::OFF,
    );
    for (round, context) in SECONDARY_CONTEXTS.iter().copied().enumerate() {
        SECONDARY_CONTEXT.store(0, Ordering::SeqCst);
        SECONDARY_RELEASE.store(false, Ordering::SeqCst);
        let args = [other, secondary_entry_address(), context];
        let cpu_on = || vectors::capture(|| psci::hvc(psci::CPU_ON_64, other, args[1], context));
        let first = cpu_on();
        // Immediately, while the secondary is pending or waiting for release: never SUCCESS.
        let again = cpu_on();
        // Nothing is printed until the secondary has finished printing.
        let started = matches!(first, Ok(0));
        let came_up = started && wait_for(|| SECONDARY_CONTEXT.load(Ordering::SeqCst) != 0);

        let named = |check: &'static str| RoundName {
            check,
            round: round + 1,
        };
        tally.expect_ret(
            named("cpu_on_secondary"),
            psci::CPU_ON_64,
            first,
            &[ret::SUCCESS],
        );
        // ALREADY_ON even while the first call's start is still pending, as KVM answers.
        let accepted = [ret::ALREADY_ON];
        tally.expect_ret(
            named("cpu_on_secondary_twice"),
            psci::CPU_ON_64,
            again,
            &accepted,
        );
        tally.expect_eq(
            named("secondary_context_id"),
            SECONDARY_CONTEXT.load(Ordering::SeqCst),
            context,
        );
        if !came_up {
            println!("PROBE: secondary did not come up; skipping its power-down checks");
            continue;
        }
        tally.call(
            named("affinity_info_secondary_on"),
            psci::AFFINITY_INFO_64,
            [other, 0, 0],
            affinity::ON,
        );
        tally.call(
            named("cpu_on_secondary_running"),
            psci::CPU_ON_64,
            args,
            ret::ALREADY_ON,
        );

        SECONDARY_RELEASE.store(true, Ordering::SeqCst);
        let went_off =
            wait_for(|| psci::hvc(psci::AFFINITY_INFO_64, other, 0, 0) == affinity::OFF as u64);
        tally.expect_eq(
            named("affinity_info_secondary_off_after_cpu_off"),
            u64::from(went_off),
            1,
        );
        tally.expect_eq(
            named("secondary_cpu_off_did_not_return"),
            SECONDARY_CPU_OFF_RESULT.load(Ordering::SeqCst),
            0,
        );
    }
}

/// A check name with the secondary round appended, e.g. `secondary_context_id_round2`.
struct RoundName {
    check: &'static str,
    round: usize,
}

impl Display for RoundName {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "{}_round{}", self.check, self.round)
    }
}

fn check_cpu_on_bad_entry(machine: &Machine, other: u64, tally: &mut Tally) {
    tally.call(
        "cpu_on_entry_after_ram",
        psci::CPU_ON_64,
        [other, machine.ram_end(), 0],
        WANT_CPU_ON_BAD_ENTRY,
    );
    tally.call(
        "cpu_on_entry_below_ram",
        psci::CPU_ON_64,
        [other, ENTRY_BELOW_RAM, 0],
        WANT_CPU_ON_BAD_ENTRY,
    );
}

unsafe extern "C" {
    /// `count` iterations of {mov w0, PSCI_VERSION; hvc #0; subs; b.ne} (see main.rs).
    fn probe_hvc_loop(count: u64);
    /// The address just past `probe_hvc_loop`.
    fn probe_hvc_loop_end();
    /// The same loop with NOP in place of HVC: the loop's own cost.
    fn probe_nop_loop(count: u64);
}

/// Times `NULL_HYPERCALL_COUNT` PSCI_VERSION calls against the same loop without the HVC.
/// Informational, not pass/fail. Under QEMU `-icount shift=0` one nanosecond of guest time is
/// one instruction (all exception levels), so `ns_per_call` is the round trip in instructions.
fn measure_null_hypercall() {
    let frequency = machine::counter_frequency().max(1);
    let (hvc_start, hvc_end) = (
        probe_hvc_loop as *const () as usize,
        probe_hvc_loop_end as *const () as usize,
    );
    println!(
        "PROBE: HVC-LOOP-BEGIN calls={NULL_HYPERCALL_COUNT} fid={:#x} loop_pc={hvc_start:#x}..{hvc_end:#x}",
        psci::PSCI_VERSION
    );
    let start = machine::counter();
    // SAFETY: the loop only makes PSCI_VERSION calls and clobbers caller-saved registers.
    unsafe { probe_hvc_loop(NULL_HYPERCALL_COUNT) };
    let hvc_ticks = machine::counter() - start;
    println!("PROBE: HVC-LOOP-END");
    let start = machine::counter();
    // SAFETY: as above, without any call.
    unsafe { probe_nop_loop(NULL_HYPERCALL_COUNT) };
    let nop_ticks = machine::counter() - start;

    let call_ticks = hvc_ticks.saturating_sub(nop_ticks);
    let milli_ticks = call_ticks * 1000 / NULL_HYPERCALL_COUNT;
    let ns = call_ticks * 1_000_000_000 / frequency / NULL_HYPERCALL_COUNT;
    println!("PROBE: hvc_loop_ticks={hvc_ticks} nop_loop_ticks={nop_ticks} cntfrq={frequency}");
    println!(
        "PROBE: hvc_roundtrip_ticks_per_call={}.{:03}",
        milli_ticks / 1000,
        milli_ticks % 1000
    );
    println!("PROBE: hvc_roundtrip_ns_per_call={ns}");
}
