//! `probe.memcheck=MIB`: guest RAM must read back what this VM last wrote there, across
//! SYSTEM_RESET (stage 2 emptied, a fresh VMID, VMID rollovers). Every boot first verifies the
//! pattern the previous boot wrote, then writes its own; memplan.rs picks the pages (one in
//! every 2 MiB block, the rest as whole blocks) and the word at each address.
//!
//! The probe runs with its MMU off, so these are Device accesses that go straight to RAM: what
//! they see is whatever stage 2 maps the IPA to. A stale stage-2 TLB entry (an older VMID
//! generation, another VM) shows up as another address's, boot's or seed's word.
//!
//! Prints `PROBE: memcheck boot=N verified=PAGES`, or on a mismatch up to
//! `MISMATCHES_SHOWN` lines `PROBE: FAIL memcheck boot=N addr=.. want=.. got=..` and a
//! `PROBE: FAIL memcheck boot=N mismatches=WORDS pages=BAD/VERIFIED` summary; each failing
//! boot counts once in `fail=`.

use psci_probe::memplan::{MAX_EXCLUDED, PAGE_BYTES, Pattern, Plan, PlanError, Span, mix};

use crate::checks::Tally;
use crate::machine::{self, BootRecord, Machine};
use crate::println;

/// Mismatching words printed one per line before the summary.
const MISMATCHES_SHOWN: u64 = 4;

/// Verifies the previous boot's pattern and writes this boot's; `record` says which boot's
/// pattern is in RAM and carries the run's seed to the next boot.
pub fn run(machine: &Machine, record: &mut BootRecord, tally: &mut Tally) {
    let boot = record.boots_done + 1;
    let Some(plan) = plan(machine, boot) else {
        tally.fail += 1;
        record.memcheck_boot = 0;
        return;
    };
    let verified = match record.memcheck_boot {
        0 => Some(0),
        written => verify(&plan, Pattern::new(record.memcheck_seed, written), boot),
    };
    match verified {
        Some(pages) => println!("PROBE: memcheck boot={boot} verified={pages}"),
        None => tally.fail += 1,
    }

    if record.boots_done == 0 {
        // VMs start at different counter values, so another VM's page (same IPA, same
        // boot number) still holds other words.
        record.memcheck_seed =
            mix(machine::physical_counter() ^ machine::counter().rotate_left(32));
    }
    write(&plan, Pattern::new(record.memcheck_seed, boot));
    record.memcheck_boot = boot;
}

/// The pages to use, or `None` after printing why there are none.
pub(crate) fn plan(machine: &Machine, boot: u64) -> Option<Plan> {
    let mib = machine.memcheck_mib;
    if !machine.ram_from_dtb {
        println!("PROBE: FAIL memcheck boot={boot} mib={mib} got=no_memory_node want=ram_size");
        return None;
    }
    let (image_start, image_end) = machine::image_range();
    let mut excluded = [Span::default(); MAX_EXCLUDED];
    let mut count = 0;
    let mut exclude = |span: Span| {
        excluded[count] = span;
        count += 1;
    };
    // The stacks are in the image's .bss, which link.ld keeps inside the file.
    exclude(Span::new(image_start, image_end));
    if machine.dtb_valid {
        exclude(Span::new(
            machine.dtb_addr,
            machine.dtb_addr + machine.dtb_size,
        ));
    }
    if let Some((start, end)) = machine.initrd {
        exclude(Span::new(start, end));
    }
    // Same page on every boot, whether or not `probe.reboots` uses it.
    if let Some(addr) = BootRecord::address(machine) {
        let page = addr & !(PAGE_BYTES - 1);
        exclude(Span::new(page, page + PAGE_BYTES));
    }
    let ram = Span::new(machine.ram_base, machine.ram_end());
    match Plan::new(ram, &excluded[..count], mib) {
        Ok(plan) => Some(plan),
        Err(PlanError::DoesNotFit { usable_pages, .. }) => {
            println!(
                "PROBE: FAIL memcheck boot={boot} got=mib={mib} want=mib<={} ram={:#x}+{:#x}",
                (usable_pages * PAGE_BYTES) >> 20,
                machine.ram_base,
                machine.ram_size,
            );
            None
        }
        Err(PlanError::TooManyExclusions) => {
            println!("PROBE: FAIL memcheck boot={boot} got=too_many_exclusions");
            None
        }
    }
}

/// Compares every word of the plan with `pattern`; returns the pages verified, or `None`
/// after printing the mismatches.
fn verify(plan: &Plan, pattern: Pattern, boot: u64) -> Option<u64> {
    let (mut pages, mut bad_pages, mut mismatches) = (0u64, 0u64, 0u64);
    for page in plan.pages() {
        let before = mismatches;
        for addr in (page..page + PAGE_BYTES).step_by(8) {
            // SAFETY: the plan's pages are guest RAM per the DTB, outside the image (code,
            // statics, stacks), the DTB, the initrd and the boot record: no Rust object lives
            // there. 8-byte aligned, as Device memory needs.
            let got = unsafe { (addr as *const u64).read_volatile() };
            let want = pattern.word(addr);
            if got != want {
                if mismatches < MISMATCHES_SHOWN {
                    println!(
                        "PROBE: FAIL memcheck boot={boot} addr={addr:#x} want={want:#x} got={got:#x}"
                    );
                }
                mismatches += 1;
            }
        }
        pages += 1;
        bad_pages += u64::from(mismatches != before);
    }
    if mismatches > 0 {
        println!(
            "PROBE: FAIL memcheck boot={boot} mismatches={mismatches} pages={bad_pages}/{pages}"
        );
        return None;
    }
    Some(pages)
}

fn write(plan: &Plan, pattern: Pattern) {
    for page in plan.pages() {
        for addr in (page..page + PAGE_BYTES).step_by(8) {
            // SAFETY: as in `verify`.
            unsafe { (addr as *mut u64).write_volatile(pattern.word(addr)) };
        }
    }
}
