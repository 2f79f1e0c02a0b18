//! `probe.pingpong=ping|pong [probe.pingpong_rounds=N]`: the ping-pong exchange with another
//! VM (the protocol is psci_probe::pingpong) over the shared-memory region and the doorbells
//! the DTB describes. The ping times the N round trips with the virtual counter.
//!
//! `probe.pingpong_wait=wfi`: the waiting side sleeps in WFI until the doorbell's SPI reaches
//! its CPU interface (the distributor and CPU interface enabled, the SPI acknowledged and
//! ended there; on GICv2 in Group 0, which GICC_IAR hands out) instead of polling the pending bit with YIELD in between: a vCPU that shares
//! its CPU then gives it to the peer at once. `probe.pingpong_fp=1`: each side executes one
//! FP/SIMD instruction before each ring (for the switch-cost benchmark with FP in use).
//!
//! Lines: `PROBE: pingpong start ...`, PASS/FAIL `pingpong_shared_memory`,
//! `pingpong_doorbells`, `pingpong_receiver_enabled`; then on the ping
//! `PROBE: pingpong rounds=N ticks=T ticks_per_round=X`, `PROBE: pingpong_ns_per_round=Y`
//! and `PASS pingpong_answers_match`, on the pong `PROBE: pingpong pong done rounds=N` and
//! `PASS pingpong_messages_match`; or `PROBE: FAIL pingpong round=I ...` at the first error.

use core::arch::asm;

use psci_probe::peers::SHARED_MEMORY_COMPATIBLE;
use psci_probe::pingpong::{self, Block, Failure, Port, REGION_ID, REGION_MIN_BYTES, Role};

use crate::checks::Tally;
use crate::doorbell::{self, Receiver};
use crate::gic::{self, Gic};
use crate::machine::{self, Machine};
use crate::println;

const WAIT_ARG: &str = "probe.pingpong_wait=";
const FP_ARG: &str = "probe.pingpong_fp=";

/// The exchange's view of the machine.
struct SharedPort {
    base: u64,
    size: u64,
    doorbell: u32,
    receiver: Receiver,
    /// With `probe.pingpong_wait=wfi`: the GIC whose CPU interface takes the doorbell, and its
    /// INTID.
    wfi: Option<(Gic, u32)>,
    /// `probe.pingpong_fp=1`.
    fp: bool,
}

impl SharedPort {
    fn word(&self, index: usize) -> *mut u64 {
        let offset = index as u64 * 8;
        assert!(offset < self.size, "shared word {index} past the region");
        (self.base + offset) as *mut u64
    }
}

impl Port for SharedPort {
    fn read(&mut self, index: usize) -> u64 {
        // SAFETY: an aligned word inside the shared region the DTB names, which `run` checked
        // lies outside guest RAM: no Rust object lives there.
        unsafe { self.word(index).read_volatile() }
    }

    fn write(&mut self, index: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { self.word(index).write_volatile(value) }
    }

    fn barrier(&mut self) {
        // SAFETY: a barrier has no effect beyond ordering; not `nomem`, so the compiler keeps
        // the volatile accesses on their side of it.
        unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
    }

    fn ring(&mut self) -> u64 {
        if self.fp {
            crate::fpcheck::touch();
        }
        doorbell::ring(self.doorbell)
    }

    fn take_doorbell(&mut self) -> bool {
        let Some((gic, intid)) = self.wfi else {
            return self.receiver.take();
        };
        // Edge-triggered: acknowledging it ends its pending state.
        let Some(iar) = gic.try_acknowledge() else {
            return false;
        };
        gic.end(iar);
        iar & 0x3ff == intid
    }

    fn relax(&mut self) {
        if self.wfi.is_some() {
            // A doorbell that arrived since `take_doorbell` looked is pending at the CPU
            // interface, so WFI returns at once.
            gic::wfi();
            return;
        }
        // YIELD: under -icount QEMU runs all CPUs on one thread, round-robin, and ends a
        // CPU's turn early only when it yields or halts; a plain spin would run out its whole
        // slice (~150 M instructions a round trip, measured) before the peer's CPU runs.
        // SAFETY: a hint instruction; no memory or register effects.
        unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
    }

    fn now(&mut self) -> u64 {
        machine::counter()
    }
}

/// Runs the exchange `machine.pingpong` asks for (nothing when it asks for none).
pub fn run(machine: &Machine, tally: &mut Tally) {
    let Some(config) = machine.pingpong else {
        return;
    };
    let role = match config.role {
        Ok(role) => role,
        Err(other) => return tally.fail("pingpong_role", other, "ping|pong"),
    };
    println!(
        "PROBE: pingpong start role={} rounds={}",
        role.name(),
        config.rounds
    );
    let Some(port) = open(machine, tally) else {
        return;
    };
    let mut port = port;
    let timeouts = pingpong::Timeouts::for_frequency(machine::counter_frequency());
    let result = match role {
        Role::Ping => pingpong::ping(&mut port, config.rounds, timeouts),
        Role::Pong => pingpong::pong(&mut port, config.rounds, timeouts),
    };
    let report = match result {
        Ok(report) => report,
        Err(failure) => return report_failure(failure, port.doorbell, tally),
    };
    if report.spurious > 0 {
        println!("PROBE: pingpong spurious_doorbells={}", report.spurious);
    }
    match role {
        Role::Ping => {
            let frequency = machine::counter_frequency();
            let (milli_ticks, ns) = pingpong::per_round(report.ticks, report.rounds, frequency);
            println!(
                "PROBE: pingpong rounds={} ticks={} ticks_per_round={}.{:03}",
                report.rounds,
                report.ticks,
                milli_ticks / 1000,
                milli_ticks % 1000
            );
            println!("PROBE: pingpong_ns_per_round={ns}");
            tally.pass("pingpong_answers_match");
        }
        Role::Pong => {
            println!("PROBE: pingpong pong done rounds={}", report.rounds);
            tally.pass("pingpong_messages_match");
        }
    }
}

/// Finds the region and the doorbells and sets up the receiving SPI; `None` after a FAIL.
fn open(machine: &Machine, tally: &mut Tally) -> Option<SharedPort> {
    let Some(region) = machine.peers.shared_memory(REGION_ID) else {
        tally.fail("pingpong_shared_memory", "none", SHARED_MEMORY_COMPATIBLE);
        return None;
    };
    let end = region.ipa + region.size;
    let in_ram = region.ipa < machine.ram_end() && machine.ram_base < end;
    if region.size < REGION_MIN_BYTES || !region.ipa.is_multiple_of(8) || in_ram {
        tally.fail(
            "pingpong_shared_memory",
            format_args!("{:#x}+{:#x}", region.ipa, region.size),
            format_args!(
                "aligned,size>={REGION_MIN_BYTES:#x},outside_ram={:#x}..{:#x}",
                machine.ram_base,
                machine.ram_end()
            ),
        );
        return None;
    }
    tally.pass("pingpong_shared_memory");
    let Some((out, back)) = machine.peers.link() else {
        tally.fail("pingpong_doorbells", "none", "outgoing+incoming");
        return None;
    };
    tally.pass("pingpong_doorbells");
    println!(
        "PROBE: pingpong region={:#x}+{:#x} id={} ring={} to={} receive_spi={} from={}",
        region.ipa,
        region.size,
        region.id.unwrap_or("-"),
        out.number,
        out.peer.unwrap_or("-"),
        back.spi,
        back.peer.unwrap_or("-"),
    );
    let receiver = match Receiver::enable(machine, back.intid()) {
        Ok(receiver) => receiver,
        Err(error) => {
            tally.fail("pingpong_receiver_enabled", error, "enabled,edge,group1");
            return None;
        }
    };
    tally.pass("pingpong_receiver_enabled");
    let wfi = (psci_probe::bootargs::value(machine.bootargs, WAIT_ARG) == Some("wfi")).then(|| {
        let gic = Gic::new(machine);
        gic.init_cpu(machine::own_mpidr() & 0xff);
        (gic, back.intid())
    });
    if let Some((gic, intid)) = wfi
        && gic.version == 2
        && let Err(error) = receiver.use_group0(intid)
    {
        tally.fail("pingpong_receiver_group0", error, "group0");
        return None;
    }
    let fp = psci_probe::bootargs::number(machine.bootargs, FP_ARG).is_some_and(|v| v != 0);
    if fp {
        crate::fpcheck::enable_fp();
    }
    Some(SharedPort {
        base: region.ipa,
        size: region.size,
        doorbell: out.number,
        receiver,
        wfi,
        fp,
    })
}

fn report_failure(failure: Failure, doorbell: u32, tally: &mut Tally) {
    let block_name = |block| match block {
        Block::Message => "message",
        Block::Answer => "answer",
    };
    match failure {
        Failure::Ring { round, x0 } => println!(
            "PROBE: FAIL pingpong round={round} ring={doorbell} got={:#x} want=0x0",
            x0 as u32
        ),
        Failure::Timeout {
            round,
            waiting_for,
            spurious,
            flag,
        } => println!(
            "PROBE: FAIL pingpong round={round} got=timeout want={}_doorbell spurious={spurious} flag={flag:#x}",
            block_name(waiting_for)
        ),
        Failure::Mismatch {
            round,
            block,
            word,
            got,
            want,
        } => println!(
            "PROBE: FAIL pingpong round={round} block={} word={word} got={got:#x} want={want:#x}",
            block_name(block)
        ),
    }
    tally.fail += 1;
}
