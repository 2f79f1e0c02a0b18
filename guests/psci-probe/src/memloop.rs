//! `probe.memloop=MS` (with `probe.memcheck=MIB`): guest RAM must keep reading back what this
//! VM wrote while it runs on several physical CPUs and the hypervisor rolls VMIDs over under
//! it (the KVM/ARM world-switch review's scenario: a VM with vCPUs on two CPUs while another
//! VM's allocation starts a new VMID generation).
//!
//! Every vCPU of the VM (the primary, and the secondary started with CPU_ON when the DTB lists
//! two CPUs) takes its share of memcheck's pages (page k goes to vCPU k mod 2) and, for MS
//! milliseconds of virtual time, passes over them again and again: it verifies the words of
//! its previous pass, then writes the words of this one (memplan's pattern, keyed by a seed
//! drawn at start, the vCPU and the pass). A stale stage-2 TLB entry (an older VMID
//! generation, another VM's translation) shows up as a word of another address, pass or VM.
//! The secondary then powers itself off (CPU_OFF), so the normal checks run after this as
//! on any boot. The pages hold memloop's words afterwards: not for a VM that also resets
//! (`probe.reboots=`, whose memcheck would see them).
//!
//! Lines: `PROBE: memloop start ms=MS cpus=C`, per vCPU
//! `PROBE: memloop cpu=K passes=P pages=N` and `PROBE: PASS memloop_cpuK`, or
//! `PROBE: FAIL memloop_cpuK got=mismatches=M,pass=P,addr=A want=0`.

use core::sync::atomic::{AtomicU64, Ordering};

use psci_probe::bootargs;
use psci_probe::memplan::{PAGE_BYTES, Pattern, Plan, mix};

use crate::checks::Tally;
use crate::machine::{self, Machine};
use crate::{memcheck, println, psci};

const MEMLOOP_ARG: &str = "probe.memloop=";
/// CPU_ON context id that sends the secondary into `secondary`.
pub const SECONDARY_CONTEXT: u64 = 0x3E31_00F0_0000_0001;
/// How long the primary waits for the secondary to finish and power off, beyond MS.
const SECONDARY_GRACE_S: u64 = 60;

/// What one vCPU's passes found.
#[derive(Clone, Copy, Default)]
struct Outcome {
    passes: u64,
    pages: u64,
    mismatches: u64,
    /// The pass and address of the first mismatching word.
    first_pass: u64,
    first_addr: u64,
}

// The secondary's inputs and result; plain loads and stores only (vectors.rs says why).
static DTB: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);
static SECONDARY_DONE: AtomicU64 = AtomicU64::new(0);
static SECONDARY_OUTCOME: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Runs the loop on every vCPU when `probe.memloop=` asks for it, and reports.
pub fn run(machine: &Machine, tally: &mut Tally) {
    let Some(ms) = bootargs::number(machine.bootargs, MEMLOOP_ARG) else {
        return;
    };
    if machine.reboots > 0 || machine.memcheck_mib == 0 {
        tally.fail(
            "memloop_config",
            format_args!(
                "reboots={},memcheck={}",
                machine.reboots, machine.memcheck_mib
            ),
            "reboots=0,memcheck>0",
        );
        return;
    }
    let Some(plan) = memcheck::plan(machine, 1) else {
        tally.fail += 1;
        return;
    };
    let cpus = if machine.other_cpu.is_some() { 2 } else { 1 };
    println!("PROBE: memloop start ms={ms} cpus={cpus}");
    let frequency = machine::counter_frequency();
    let end = machine::counter() + ms * frequency / 1000;
    DTB.store(machine.dtb_addr, Ordering::SeqCst);
    SEED.store(
        mix(machine::physical_counter() ^ machine::counter().rotate_left(32)),
        Ordering::SeqCst,
    );
    END.store(end, Ordering::SeqCst);
    if let Some(other) = machine.other_cpu {
        let entry = crate::checks::secondary_entry_address();
        let result = psci::hvc(psci::CPU_ON_64, other, entry, SECONDARY_CONTEXT);
        if result != 0 {
            tally.fail("memloop_cpu1_on", format_args!("{result:#x}"), "0x0");
        }
    }
    let own = passes(&plan, 0, cpus);
    report(0, own, tally);
    let Some(other) = machine.other_cpu else {
        return;
    };
    // The secondary finishes its pass after END, then powers itself off.
    let limit = end + SECONDARY_GRACE_S * frequency;
    let off = || {
        SECONDARY_DONE.load(Ordering::SeqCst) != 0
            && psci::hvc(psci::AFFINITY_INFO_64, other, 0, 0) == psci::affinity::OFF as u64
    };
    while !off() && machine::counter() < limit {
        core::hint::spin_loop();
    }
    if off() {
        report(1, published_outcome(), tally);
    } else {
        tally.fail("memloop_cpu1", "timeout", "result,cpu_off");
    }
}

/// The secondary's side: its passes, its result published, then CPU_OFF.
pub fn secondary() -> ! {
    let machine = Machine::probe(DTB.load(Ordering::SeqCst));
    let outcome = match memcheck::plan(&machine, 1) {
        Some(plan) => passes(&plan, 1, 2),
        None => Outcome {
            mismatches: u64::MAX,
            ..Outcome::default()
        },
    };
    let words = [
        outcome.passes,
        outcome.pages,
        outcome.mismatches,
        outcome.first_pass,
        outcome.first_addr,
    ];
    for (slot, word) in SECONDARY_OUTCOME.iter().zip(words) {
        slot.store(word, Ordering::SeqCst);
    }
    SECONDARY_DONE.store(1, Ordering::SeqCst);
    psci::hvc(psci::CPU_OFF, 0, 0, 0);
    psci::park()
}

fn published_outcome() -> Outcome {
    let word = |i: usize| SECONDARY_OUTCOME[i].load(Ordering::SeqCst);
    Outcome {
        passes: word(0),
        pages: word(1),
        mismatches: word(2),
        first_pass: word(3),
        first_addr: word(4),
    }
}

fn report(cpu: usize, outcome: Outcome, tally: &mut Tally) {
    println!(
        "PROBE: memloop cpu={cpu} passes={} pages={}",
        outcome.passes, outcome.pages
    );
    if outcome.mismatches == 0 && outcome.passes >= 2 {
        tally.pass(format_args!("memloop_cpu{cpu}"));
    } else {
        tally.fail(
            format_args!("memloop_cpu{cpu}"),
            format_args!(
                "mismatches={},pass={},addr={:#x},passes={}",
                outcome.mismatches, outcome.first_pass, outcome.first_addr, outcome.passes
            ),
            "mismatches=0,passes>=2",
        );
    }
}

/// Passes over vCPU `cpu`'s pages (every `cpus`-th of the plan) until END; the last pass
/// that starts before END is verified too.
fn passes(plan: &Plan, cpu: u64, cpus: u64) -> Outcome {
    let seed = SEED.load(Ordering::SeqCst) ^ (cpu << 56);
    let end = END.load(Ordering::SeqCst);
    let mine = || {
        plan.pages()
            .enumerate()
            .filter(move |(index, _)| *index as u64 % cpus == cpu)
            .map(|(_, page)| page)
    };
    let mut outcome = Outcome::default();
    let mut pass = 0;
    loop {
        if pass > 0 {
            let pattern = Pattern::new(seed, pass);
            for page in mine() {
                for addr in (page..page + PAGE_BYTES).step_by(8) {
                    // SAFETY: the plan's pages are guest RAM outside the image, the DTB, the
                    // initrd and the boot record (memcheck.rs); each vCPU has its own pages.
                    let got = unsafe { (addr as *const u64).read_volatile() };
                    if got != pattern.word(addr) {
                        if outcome.mismatches == 0 {
                            outcome.first_pass = pass;
                            outcome.first_addr = addr;
                        }
                        outcome.mismatches += 1;
                    }
                }
            }
            outcome.passes = pass;
            if machine::counter() >= end {
                return outcome;
            }
        }
        pass += 1;
        let pattern = Pattern::new(seed, pass);
        let mut pages = 0;
        for page in mine() {
            for addr in (page..page + PAGE_BYTES).step_by(8) {
                // SAFETY: as above.
                unsafe { (addr as *mut u64).write_volatile(pattern.word(addr)) };
            }
            pages += 1;
        }
        outcome.pages = pages;
    }
}
