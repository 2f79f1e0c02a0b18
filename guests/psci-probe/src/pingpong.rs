//! The ping-pong exchange between two VMs, over a shared-memory region and a doorbell each
//! way (`probe.pingpong=ping|pong`), written against a [`Port`] so that both sides run
//! against each other in host tests; exchange.rs provides the real port.
//!
//! Layout of the region, in 8-byte words (the probe's Device accesses must be aligned):
//! the ping's message at offset 0 (sequence number, then a 64-byte pattern that depends on
//! it) with its flag word at 0x80; the pong's answer at 0x1000 (the same sequence number,
//! every pattern word + 1) with its flag at 0x1080. A writer stores the words, then the flag
//! (= the sequence number), then rings; sequence numbers start at 1, so zeroed memory never
//! looks like a message. A doorbell whose flag does not (yet) say the expected round is
//! counted as spurious and the wait goes on: chaos in another VM may ring any doorbell.

use crate::memplan::mix;

/// Bootarg choosing the side: `probe.pingpong=ping` or `probe.pingpong=pong`.
pub const ROLE_ARG: &str = "probe.pingpong=";
/// Bootarg giving the number of round trips.
pub const ROUNDS_ARG: &str = "probe.pingpong_rounds=";
pub const DEFAULT_ROUNDS: u64 = 1000;
/// `xen,id` of the region the exchange prefers.
pub const REGION_ID: &str = "pingpong";

/// Pattern words after the sequence number (64 bytes).
pub const PAYLOAD_WORDS: usize = 8;
const MESSAGE_WORD: usize = 0;
const MESSAGE_FLAG_WORD: usize = 0x80 / 8;
const ANSWER_WORD: usize = 0x1000 / 8;
const ANSWER_FLAG_WORD: usize = 0x1080 / 8;
/// Bytes of the region the exchange uses.
pub const REGION_MIN_BYTES: u64 = (ANSWER_FLAG_WORD as u64 + 1) * 8;
// The blocks and flags do not overlap, and two pages hold them.
const _: () = assert!(MESSAGE_WORD + 1 + PAYLOAD_WORDS <= MESSAGE_FLAG_WORD);
const _: () = assert!(MESSAGE_FLAG_WORD < ANSWER_WORD);
const _: () = assert!(ANSWER_WORD + 1 + PAYLOAD_WORDS <= ANSWER_FLAG_WORD);
const _: () = assert!(REGION_MIN_BYTES <= 0x2000);

/// Which side this VM plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends each message, waits for the answer, and times the round trips.
    Ping,
    /// Answers each message.
    Pong,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Ping => "ping",
            Role::Pong => "pong",
        }
    }
}

/// The request from /chosen/bootargs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    /// `Err` holds a value that is neither `ping` nor `pong`.
    pub role: Result<Role, &'a str>,
    pub rounds: u64,
}

impl<'a> Config<'a> {
    /// `None` unless `probe.pingpong=` is given.
    pub fn from_bootargs(bootargs: &'a str) -> Option<Self> {
        let role = match crate::bootargs::value(bootargs, ROLE_ARG)? {
            "ping" => Ok(Role::Ping),
            "pong" => Ok(Role::Pong),
            other => Err(other),
        };
        let rounds = crate::bootargs::number(bootargs, ROUNDS_ARG).unwrap_or(DEFAULT_ROUNDS);
        Some(Config { role, rounds })
    }
}

/// What one side needs from the machine.
pub trait Port {
    /// Reads word `index` (8-byte units) of the shared region.
    fn read(&mut self, index: usize) -> u64;
    /// Writes word `index` of the shared region.
    fn write(&mut self, index: usize, value: u64);
    /// Completes every access before it before any access after it (DSB SY on the target).
    fn barrier(&mut self);
    /// Rings the peer's doorbell; returns X0 of the call (SMC32: only W0 counts).
    fn ring(&mut self) -> u64;
    /// Whether this VM's own doorbell rang since the last call; clears it if so.
    fn take_doorbell(&mut self) -> bool;
    /// Called between polls of the doorbell: lets whatever shares this CPU's host thread
    /// (the peer's CPU, under QEMU's single-threaded TCG) run.
    fn relax(&mut self);
    /// The counter, in ticks.
    fn now(&mut self) -> u64;
}

/// How long a side waits for each doorbell, in counter ticks.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// The first round: covers the peer VM booting later than this one.
    pub first_round: u64,
    pub round: u64,
}

impl Timeouts {
    /// 10 s for the first round, 2 s for each later one, at `frequency` ticks per second.
    pub fn for_frequency(frequency: u64) -> Self {
        Timeouts {
            first_round: 10 * frequency,
            round: 2 * frequency,
        }
    }

    fn of(self, round: u64) -> u64 {
        if round == 1 {
            self.first_round
        } else {
            self.round
        }
    }
}

/// Which block of the region a failure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Message,
    Answer,
}

/// Why an exchange stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Ringing the peer returned `x0` instead of SUCCESS.
    Ring { round: u64, x0: u64 },
    /// No doorbell with the expected flag within the timeout.
    Timeout {
        round: u64,
        waiting_for: Block,
        /// Doorbells seen during this wait, all without the expected flag.
        spurious: u64,
        /// The flag word when the wait gave up.
        flag: u64,
    },
    /// Word `word` of the block (0 = sequence number) is not what the round wants.
    Mismatch {
        round: u64,
        block: Block,
        word: usize,
        got: u64,
        want: u64,
    },
}

/// A completed exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub rounds: u64,
    /// Counter ticks from the first message to the last checked answer (ping) or the last
    /// answer rung (pong).
    pub ticks: u64,
    /// Doorbells that came without the expected flag.
    pub spurious: u64,
}

/// Pattern word `index` (0..PAYLOAD_WORDS) of message `round`.
pub fn message_word(round: u64, index: usize) -> u64 {
    mix((round << 8 | index as u64) ^ 0x5049_4E47_0000_0000)
}

/// The answer word for a message word.
pub fn answer_word(message: u64) -> u64 {
    message.wrapping_add(1)
}

/// The ping side: `rounds` messages, each answered before the next is sent.
pub fn ping(port: &mut impl Port, rounds: u64, timeouts: Timeouts) -> Result<Report, Failure> {
    // A flag from an earlier run must not pass for an answer; the pong writes nothing
    // before our first message.
    port.write(ANSWER_FLAG_WORD, 0);
    port.write(MESSAGE_FLAG_WORD, 0);
    port.barrier();
    let start = port.now();
    let mut spurious = 0;
    for round in 1..=rounds {
        port.write(MESSAGE_WORD, round);
        for index in 0..PAYLOAD_WORDS {
            port.write(MESSAGE_WORD + 1 + index, message_word(round, index));
        }
        send(port, MESSAGE_FLAG_WORD, round)?;
        spurious += wait(port, round, Block::Answer, timeouts)?;
        check(port, round, Block::Answer)?;
    }
    Ok(Report {
        rounds,
        ticks: port.now().wrapping_sub(start),
        spurious,
    })
}

/// The pong side: answers `rounds` messages.
pub fn pong(port: &mut impl Port, rounds: u64, timeouts: Timeouts) -> Result<Report, Failure> {
    let start = port.now();
    let mut spurious = 0;
    for round in 1..=rounds {
        spurious += wait(port, round, Block::Message, timeouts)?;
        check(port, round, Block::Message)?;
        port.write(ANSWER_WORD, round);
        for index in 0..PAYLOAD_WORDS {
            // From what arrived (checked equal to what was sent), so the ping checks the
            // words that went through the region both ways.
            let got = port.read(MESSAGE_WORD + 1 + index);
            port.write(ANSWER_WORD + 1 + index, answer_word(got));
        }
        send(port, ANSWER_FLAG_WORD, round)?;
    }
    Ok(Report {
        rounds,
        ticks: port.now().wrapping_sub(start),
        spurious,
    })
}

/// Publishes the words written so far under `flag` and rings the peer.
fn send(port: &mut impl Port, flag: usize, round: u64) -> Result<(), Failure> {
    port.barrier();
    port.write(flag, round);
    port.barrier();
    let x0 = port.ring();
    if x0 as u32 != 0 {
        return Err(Failure::Ring { round, x0 });
    }
    Ok(())
}

/// Waits for a doorbell after which `block`'s flag says `round`; returns the spurious
/// doorbells seen meanwhile.
fn wait(
    port: &mut impl Port,
    round: u64,
    block: Block,
    timeouts: Timeouts,
) -> Result<u64, Failure> {
    let flag_word = match block {
        Block::Message => MESSAGE_FLAG_WORD,
        Block::Answer => ANSWER_FLAG_WORD,
    };
    let limit = timeouts.of(round);
    let start = port.now();
    let mut spurious = 0;
    loop {
        if port.take_doorbell() {
            port.barrier();
            if port.read(flag_word) == round {
                return Ok(spurious);
            }
            spurious += 1;
        } else {
            port.relax();
        }
        if port.now().wrapping_sub(start) >= limit {
            return Err(Failure::Timeout {
                round,
                waiting_for: block,
                spurious,
                flag: port.read(flag_word),
            });
        }
    }
}

/// Compares `block` with what round `round` must have put there.
fn check(port: &mut impl Port, round: u64, block: Block) -> Result<(), Failure> {
    let (first, transform): (usize, fn(u64) -> u64) = match block {
        Block::Message => (MESSAGE_WORD, |w| w),
        Block::Answer => (ANSWER_WORD, answer_word),
    };
    let wants = core::iter::once(round)
        .chain((0..PAYLOAD_WORDS).map(|index| transform(message_word(round, index))));
    for (word, want) in wants.enumerate() {
        let got = port.read(first + word);
        if got != want {
            return Err(Failure::Mismatch {
                round,
                block,
                word,
                got,
                want,
            });
        }
    }
    Ok(())
}

/// Average ticks per round, in thousandths, and nanoseconds per round at `frequency`.
pub fn per_round(ticks: u64, rounds: u64, frequency: u64) -> (u64, u64) {
    let rounds = u128::from(rounds.max(1));
    let milli_ticks = u128::from(ticks) * 1000 / rounds;
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(frequency.max(1)) / rounds;
    (milli_ticks as u64, ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::Instant;

    /// One region and a doorbell each way, shared by two host threads.
    struct Shared {
        words: Vec<AtomicU64>,
        /// [to the ping, to the pong]
        doorbells: [AtomicBool; 2],
    }

    impl Shared {
        fn new() -> Arc<Self> {
            Arc::new(Shared {
                words: (0..REGION_MIN_BYTES / 8)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                doorbells: [AtomicBool::new(false), AtomicBool::new(false)],
            })
        }
    }

    /// A side's port; time is wall-clock microseconds.
    struct ThreadPort {
        shared: Arc<Shared>,
        me: usize,
        epoch: Instant,
        /// Word to corrupt when written (index, xor).
        corrupt: Option<(usize, u64)>,
        rings: u64,
    }

    impl ThreadPort {
        fn new(shared: &Arc<Shared>, role: Role) -> Self {
            ThreadPort {
                shared: shared.clone(),
                me: usize::from(role == Role::Pong),
                epoch: Instant::now(),
                corrupt: None,
                rings: 0,
            }
        }
    }

    impl Port for ThreadPort {
        fn read(&mut self, index: usize) -> u64 {
            self.shared.words[index].load(Ordering::Relaxed)
        }
        fn write(&mut self, index: usize, value: u64) {
            let value = match self.corrupt {
                Some((at, xor)) if at == index => value ^ xor,
                _ => value,
            };
            self.shared.words[index].store(value, Ordering::Relaxed);
        }
        fn barrier(&mut self) {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        fn ring(&mut self) -> u64 {
            self.rings += 1;
            self.shared.doorbells[1 - self.me].store(true, Ordering::SeqCst);
            0
        }
        fn take_doorbell(&mut self) -> bool {
            self.shared.doorbells[self.me].swap(false, Ordering::SeqCst)
        }
        fn relax(&mut self) {
            thread::yield_now();
        }
        fn now(&mut self) -> u64 {
            self.epoch.elapsed().as_micros() as u64
        }
    }

    fn run_pair(
        rounds: u64,
        setup: impl FnOnce(&mut ThreadPort, &mut ThreadPort),
    ) -> (Result<Report, Failure>, Result<Report, Failure>) {
        let shared = Shared::new();
        let (mut ping_port, mut pong_port) = (
            ThreadPort::new(&shared, Role::Ping),
            ThreadPort::new(&shared, Role::Pong),
        );
        setup(&mut ping_port, &mut pong_port);
        // Ticks are microseconds here.
        let short = Timeouts {
            first_round: 1_000_000,
            round: 300_000,
        };
        let start = Arc::new(Barrier::new(2));
        let pong_start = start.clone();
        let pong = thread::spawn(move || {
            pong_start.wait();
            pong(&mut pong_port, rounds, short)
        });
        start.wait();
        let ping = ping(&mut ping_port, rounds, short);
        (ping, pong.join().unwrap())
    }

    #[test]
    fn two_sides_complete_every_round() {
        let (ping, pong) = run_pair(500, |_, _| {});
        let (ping, pong) = (ping.unwrap(), pong.unwrap());
        assert_eq!((ping.rounds, ping.spurious), (500, 0));
        assert_eq!((pong.rounds, pong.spurious), (500, 0));
    }

    #[test]
    fn a_corrupted_message_word_fails_the_pong_at_that_round_and_word() {
        let (ping, pong) = run_pair(3, |ping, _| ping.corrupt = Some((MESSAGE_WORD + 4, 1 << 7)));
        assert_eq!(
            pong.unwrap_err(),
            Failure::Mismatch {
                round: 1,
                block: Block::Message,
                word: 4,
                got: message_word(1, 3) ^ 1 << 7,
                want: message_word(1, 3),
            }
        );
        assert!(matches!(
            ping.unwrap_err(),
            Failure::Timeout {
                round: 1,
                waiting_for: Block::Answer,
                ..
            }
        ));
    }

    #[test]
    fn a_wrong_answer_sequence_fails_the_ping() {
        let (ping, _) = run_pair(2, |_, pong| pong.corrupt = Some((ANSWER_WORD, 0x100)));
        assert_eq!(
            ping.unwrap_err(),
            Failure::Mismatch {
                round: 1,
                block: Block::Answer,
                word: 0,
                got: 0x101,
                want: 1,
            }
        );
    }

    /// A port whose clock advances 1 tick per call and whose peer never answers.
    #[derive(Default)]
    struct Alone {
        words: Vec<u64>,
        clock: u64,
        /// Doorbells to deliver, with nothing written.
        spurious_left: u64,
        ring_result: u64,
    }

    impl Port for Alone {
        fn read(&mut self, index: usize) -> u64 {
            self.words[index]
        }
        fn write(&mut self, index: usize, value: u64) {
            self.words[index] = value;
        }
        fn barrier(&mut self) {}
        fn ring(&mut self) -> u64 {
            self.ring_result
        }
        fn take_doorbell(&mut self) -> bool {
            let ring = self.spurious_left > 0;
            self.spurious_left -= u64::from(ring);
            ring
        }
        fn relax(&mut self) {}
        fn now(&mut self) -> u64 {
            self.clock += 1;
            self.clock
        }
    }

    fn alone() -> Alone {
        Alone {
            words: vec![0; REGION_MIN_BYTES as usize / 8],
            ..Alone::default()
        }
    }

    const TICKS: Timeouts = Timeouts {
        first_round: 1000,
        round: 100,
    };

    #[test]
    fn a_missing_pong_times_the_ping_out_in_round_one_with_spurious_doorbells_counted() {
        let mut port = alone();
        port.spurious_left = 3;
        // A stale answer flag from an earlier run must not count.
        port.words[ANSWER_FLAG_WORD] = 1;
        let failure = ping(&mut port, 10, TICKS).unwrap_err();
        assert_eq!(
            failure,
            Failure::Timeout {
                round: 1,
                waiting_for: Block::Answer,
                spurious: 3,
                flag: 0,
            }
        );
        assert!((1000..1100).contains(&port.clock), "waited {}", port.clock);
    }

    #[test]
    fn a_missing_ping_times_the_pong_out() {
        let mut port = alone();
        let failure = pong(&mut port, 10, TICKS).unwrap_err();
        assert!(matches!(
            failure,
            Failure::Timeout {
                round: 1,
                waiting_for: Block::Message,
                spurious: 0,
                flag: 0
            }
        ));
    }

    #[test]
    fn a_refused_ring_stops_the_exchange() {
        let mut port = alone();
        port.ring_result = (-2i64) as u64;
        assert_eq!(
            ping(&mut port, 10, TICKS).unwrap_err(),
            Failure::Ring {
                round: 1,
                x0: (-2i64) as u64
            }
        );
        // SMC32: bits 63:32 of X0 do not count.
        port.ring_result = 0xFFFF_FFFF_0000_0000;
        assert!(!matches!(
            ping(&mut port, 1, TICKS).unwrap_err(),
            Failure::Ring { .. }
        ));
    }

    #[test]
    fn patterns_differ_between_rounds_and_words_and_never_equal_their_answer() {
        let mut seen = std::collections::BTreeSet::new();
        for round in 1..=1000 {
            for index in 0..PAYLOAD_WORDS {
                let word = message_word(round, index);
                assert!(seen.insert(word), "round {round} word {index} repeats");
                assert_ne!(answer_word(word), word);
            }
        }
    }

    #[test]
    fn config_reads_role_and_rounds() {
        assert_eq!(Config::from_bootargs("console=ttyAMA0"), None);
        assert_eq!(
            Config::from_bootargs("probe.pingpong=ping"),
            Some(Config {
                role: Ok(Role::Ping),
                rounds: DEFAULT_ROUNDS
            })
        );
        assert_eq!(
            Config::from_bootargs("probe.pingpong_rounds=0x10 probe.pingpong=pong"),
            Some(Config {
                role: Ok(Role::Pong),
                rounds: 16
            })
        );
        assert_eq!(
            Config::from_bootargs("probe.pingpong=pang").unwrap().role,
            Err("pang")
        );
    }

    #[test]
    fn per_round_figures_do_not_overflow_or_divide_by_zero() {
        assert_eq!(per_round(62_500, 1000, 62_500_000), (62_500, 1000));
        assert_eq!(per_round(u64::MAX, 1, 1_000_000_000).1, u64::MAX);
        assert_eq!(per_round(5, 0, 0), (5000, 5_000_000_000));
        // A 1 GHz counter: ns = ticks.
        assert_eq!(per_round(123_456, 1, 1_000_000_000), (123_456_000, 123_456));
    }
}
