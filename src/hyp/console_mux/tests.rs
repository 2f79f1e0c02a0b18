//! Console multiplexer tests: the screen a user sees, byte for byte.

use alloc::string::ToString;

use proptest::prelude::*;

use super::*;

const IDLE: u64 = 100;

/// A multiplexer and everything it wrote to the UART.
struct Console {
    mux: ConsoleMux,
    out: Vec<u8>,
    /// The tick of the last output or idle call: hypervisor lines and keys happen then.
    now: u64,
}

impl Console {
    fn new(names: &[&str]) -> Self {
        Self::with_escape(names, DEFAULT_ESCAPE)
    }

    fn with_escape(names: &[&str], escape: u8) -> Self {
        let names = names.iter().map(|n| n.to_string()).collect();
        Console {
            mux: ConsoleMux::new(names, escape),
            out: Vec::new(),
            now: 0,
        }
    }

    fn vm(&mut self, vm: usize, bytes: &[u8], now: u64) {
        self.now = now;
        let out = &mut self.out;
        self.mux
            .vm_output(vm, bytes, now, &mut |b| out.extend_from_slice(b));
    }

    fn idle(&mut self, now: u64) -> Option<u64> {
        self.now = now;
        let out = &mut self.out;
        self.mux
            .flush_idle(now, IDLE, &mut |b| out.extend_from_slice(b))
    }

    fn hyp(&mut self, text: &str) {
        let out = &mut self.out;
        self.mux
            .hyp_line(text, self.now, &mut |b| out.extend_from_slice(b));
    }

    fn key(&mut self, byte: u8) -> Input {
        let out = &mut self.out;
        self.mux
            .input(byte, self.now, &mut |b| out.extend_from_slice(b))
    }

    fn alive(&mut self, vm: usize, alive: bool) {
        let out = &mut self.out;
        self.mux
            .set_alive(vm, alive, self.now, &mut |b| out.extend_from_slice(b));
    }

    /// What was written since the last call, as text.
    fn take(&mut self) -> String {
        String::from_utf8_lossy(&core::mem::take(&mut self.out)).into_owned()
    }
}

fn deliver(vm: usize, bytes: &[u8]) -> Input {
    let mut held = [0; 3];
    held[..bytes.len()].copy_from_slice(bytes);
    // The unused slots hold the escape byte.
    for slot in &mut held[bytes.len()..] {
        *slot = DEFAULT_ESCAPE;
    }
    Input::Deliver {
        vm,
        bytes: held,
        len: bytes.len(),
    }
}

// --- One VM -------------------------------------------------------------------------------

#[test]
fn console_mux_one_vm_passes_every_byte_through_at_once() {
    let mut c = Console::new(&["domU1"]);
    let all: Vec<u8> = (0..=255).collect();
    c.vm(0, b"# ", 0);
    assert_eq!(c.take(), "# ", "a prompt shows without waiting");
    c.vm(0, &all, 1);
    assert_eq!(core::mem::take(&mut c.out), all);
    c.vm(0, b"a\nb\r\nc\r", 2);
    assert_eq!(c.take(), "a\nb\r\nc\r");
    assert_eq!(c.idle(u64::MAX), None, "nothing is ever held");
    assert_eq!(c.take(), "");
}

#[test]
fn console_mux_one_vm_hyp_line_after_a_partial_line_starts_on_a_new_line() {
    let mut c = Console::new(&["domU1"]);
    c.vm(0, b"/ # ", 0);
    c.hyp("bulkhead: hello");
    assert_eq!(
        c.take(),
        "/ # ",
        "the hypervisor line waits for the guest's line"
    );
    assert_eq!(c.idle(1), Some(IDLE), "at most the idle time");
    c.vm(0, b"ls\r\n", 1);
    assert_eq!(
        c.take(),
        "ls\r\nbulkhead: hello\r\n",
        "the guest's line whole, then the hypervisor line"
    );
    assert_eq!(c.idle(2), None);
    c.hyp("bulkhead: again");
    assert_eq!(c.take(), "bulkhead: again\r\n", "at a line start: at once");
    c.vm(0, b"lone cr\r", 2);
    c.hyp("bulkhead: x");
    assert_eq!(c.take(), "lone cr\r", "a lone CR leaves the row dirty");
    assert_eq!(c.idle(2 + IDLE - 1), Some(2 + IDLE));
    c.idle(2 + IDLE);
    assert_eq!(
        c.take(),
        "\r\nbulkhead: x\r\n",
        "a line unfinished for the idle time is ended for the hypervisor line"
    );
}

#[test]
fn console_mux_one_vm_gets_every_typed_byte_including_escapes() {
    let mut c = Console::new(&["domU1"]);
    assert_eq!(c.key(b'a'), deliver(0, b"a"));
    // Escapes wait for the byte that says they are not a command.
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    // Three: nothing to switch to, so the VM gets them.
    assert_eq!(c.key(DEFAULT_ESCAPE), deliver(0, &[DEFAULT_ESCAPE; 3]));
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    assert_eq!(c.key(b'x'), deliver(0, &[DEFAULT_ESCAPE, b'x']));
    assert_eq!(c.mux.focus(), 0);
    assert_eq!(c.take(), "", "no focus lines with one VM");
}

#[test]
fn console_mux_one_vm_open_escape_sequence_is_cancelled_before_a_hyp_line() {
    let mut c = Console::new(&["domU1"]);
    // An OSC string would swallow the hypervisor line into the window title.
    c.vm(0, b"\x1b]0;title", 0);
    c.hyp("bulkhead: seen");
    c.idle(IDLE);
    assert_eq!(c.take(), "\x1b]0;title\x18\r\nbulkhead: seen\r\n");
    // A finished sequence needs nothing.
    c.vm(0, b"\x1b[31mred\x1b[0m\r\n", 1);
    c.hyp("bulkhead: plain");
    assert_eq!(c.take(), "\x1b[31mred\x1b[0m\r\nbulkhead: plain\r\n");
}

// --- Several VMs: output ------------------------------------------------------------------

#[test]
fn console_mux_interleaved_vm_bytes_come_out_as_whole_prefixed_lines() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"GUEST-", 0);
    c.vm(1, b"hel", 1);
    c.vm(0, b"DONE 1", 2);
    c.vm(1, b"lo\r\nwor", 3);
    assert_eq!(c.take(), "domU2: hello\r\n");
    c.vm(0, b"\r\n", 4);
    c.vm(1, b"ld\r\n", 5);
    assert_eq!(c.take(), "domU1: GUEST-DONE 1\r\ndomU2: world\r\n");
}

#[test]
fn console_mux_guest_cannot_print_a_line_that_looks_like_the_hypervisor() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"x\r\nbulkhead: fake\r\n\nbulkhead: fake\r\n", 0);
    assert_eq!(
        c.take(),
        "domU1: x\r\ndomU1: bulkhead: fake\r\ndomU1: \r\ndomU1: bulkhead: fake\r\n"
    );
    // A lone CR would put the cursor back over the prefix: the prefix is written again.
    c.vm(0, b"10%\r20%\rbulkhead: fake\r\n", 1);
    assert_eq!(
        c.take(),
        "domU1: 10%\rdomU1: 20%\rdomU1: bulkhead: fake\r\n"
    );
    // An escape sequence left open cannot eat the next prefix or hypervisor line.
    c.vm(0, b"\x1b[\r\n", 2);
    c.hyp("bulkhead: real");
    assert_eq!(c.take(), "domU1: \x1b[\r\n\x18bulkhead: real\r\n");
    c.vm(0, b"\x1b]0;", 3);
    c.idle(3 + IDLE);
    c.vm(1, b"next\r\n", 4 + IDLE);
    assert_eq!(c.take(), "domU1: \x1b]0;\x18\r\ndomU2: next\r\n");
}

#[test]
fn console_mux_crlf_and_lf_both_end_a_line_even_split_across_writes() {
    let mut c = Console::new(&["a", "b"]);
    c.vm(0, b"one\r", 0);
    assert_eq!(c.take(), "", "a CR alone may still become a line end");
    c.vm(0, b"\ntwo\n", 1);
    assert_eq!(c.take(), "a: one\r\na: two\r\n");
    c.vm(0, b"\r\r\n", 2);
    assert_eq!(c.take(), "a: \ra: \r\n", "a CR before CRLF is content");
    c.vm(0, b"\n", 3);
    assert_eq!(c.take(), "a: \r\n", "an empty line keeps its prefix");
}

#[test]
fn console_mux_long_lines_are_split_into_prefixed_pieces() {
    let mut c = Console::new(&["a", "b"]);
    let line = [b'x'; LINE_BYTES];
    c.vm(0, &line, 0);
    c.vm(0, b"\r\n", 1);
    let exact = c.take();
    assert_eq!(
        exact,
        format!("a: {}\r\n", "x".repeat(LINE_BYTES)),
        "a full piece is one line"
    );

    let long = [b'y'; 2 * LINE_BYTES + 10];
    c.vm(0, &long, 2);
    assert_eq!(
        c.take(),
        format!("a: {y}\r\na: {y}\r\n", y = "y".repeat(LINE_BYTES)),
        "full pieces go out as soon as they are full"
    );
    c.vm(0, b"\r\n", 3);
    assert_eq!(c.take(), format!("a: {}\r\n", "y".repeat(10)));
}

#[test]
fn console_mux_line_split_never_cuts_a_utf8_character() {
    let mut c = Console::new(&["a", "b"]);
    let mut line = vec![b'x'; LINE_BYTES - 1];
    line.extend_from_slice("€z\r\n".as_bytes());
    c.vm(0, &line, 0);
    assert_eq!(
        c.take(),
        format!("a: {}\r\na: €z\r\n", "x".repeat(LINE_BYTES - 1)),
        "the 3-byte character moves whole to the second piece"
    );
}

#[test]
fn console_mux_idle_prompt_is_shown_and_its_continuation_follows_on_the_same_line() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"/ # ", 10);
    assert_eq!(
        c.idle(10),
        Some(10 + IDLE),
        "the caller arms a timer for the deadline"
    );
    assert_eq!(c.idle(10 + IDLE - 1), Some(10 + IDLE));
    assert_eq!(c.take(), "", "not before the deadline");
    assert_eq!(c.idle(10 + IDLE), None);
    assert_eq!(c.take(), "domU1: / # ");
    // The user types; the echo continues the prompt's line.
    c.vm(0, b"l", 200);
    c.vm(0, b"s", 210);
    assert_eq!(
        c.idle(250),
        Some(200 + IDLE),
        "the oldest held byte sets the deadline"
    );
    assert_eq!(c.idle(300), None);
    assert_eq!(c.take(), "ls");
    c.vm(0, b"\r\nbin\r\n/ # ", 400);
    assert_eq!(c.take(), "\r\ndomU1: bin\r\n");
    c.idle(400 + IDLE);
    assert_eq!(c.take(), "domU1: / # ");
}

#[test]
fn console_mux_idle_prompt_interrupted_by_another_vm_continues_on_a_new_prefixed_line() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"login: ", 0);
    c.idle(IDLE);
    c.vm(1, b"booted\r\n", 150);
    c.vm(0, b"root", 160);
    c.idle(160 + IDLE);
    assert_eq!(c.take(), "domU1: login: \r\ndomU2: booted\r\ndomU1: root");
    // Its line end is shown right after it.
    c.vm(0, b"\r\n", 300);
    assert_eq!(c.take(), "\r\n");

    // Interrupted with nothing more on the line: the line end is already on screen.
    c.vm(0, b"# ", 400);
    c.idle(400 + IDLE);
    c.hyp("bulkhead: hi");
    c.vm(0, b"\r\n# ", 600);
    c.idle(600 + IDLE);
    assert_eq!(c.take(), "domU1: # \r\nbulkhead: hi\r\ndomU1: # ");
}

#[test]
fn console_mux_hyp_line_never_lands_inside_a_vm_line() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"half", 0);
    c.hyp("bulkhead: between");
    assert_eq!(c.take(), "bulkhead: between\r\n", "held bytes stay held");
    c.idle(IDLE);
    c.hyp("bulkhead: after");
    c.vm(0, b" more\r\n", 200);
    assert_eq!(
        c.take(),
        "domU1: half more\r\nbulkhead: after\r\n",
        "a hypervisor line waits for the VM's shown partial line to end"
    );
}

#[test]
fn console_mux_hyp_line_fmt_writes_crlf_line_ends() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"x", 0);
    c.idle(IDLE);
    let out = &mut c.out;
    c.mux.hyp_line_fmt(
        format_args!("bulkhead: {} of {}\nbulkhead: second", 1, 2),
        IDLE,
        &mut |b| out.extend_from_slice(b),
    );
    c.idle(2 * IDLE);
    assert_eq!(
        c.take(),
        "domU1: x\r\nbulkhead: 1 of 2\r\nbulkhead: second\r\n"
    );
}

#[test]
fn console_mux_output_of_vms_out_of_focus_is_shown() {
    let mut c = Console::new(&["domU1", "domU2", "domU3"]);
    c.vm(2, b"quiet one\r\n", 0);
    c.vm(1, b"and me\r\n", 0);
    assert_eq!(c.take(), "domU3: quiet one\r\ndomU2: and me\r\n");
}

// --- Several VMs: input and focus ---------------------------------------------------------

#[test]
fn console_mux_three_escapes_switch_focus_in_turn_and_say_so() {
    let mut c = Console::new(&["domU1", "domU2", "domU3"]);
    assert_eq!(c.mux.focus(), 0);
    assert_eq!(c.key(b'a'), deliver(0, b"a"));
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    assert_eq!(c.take(), "");
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    assert_eq!(c.mux.focus(), 1);
    assert_eq!(c.take(), "bulkhead: console input to domU2\r\n");
    assert_eq!(c.key(b'b'), deliver(1, b"b"));
    for _ in 0..3 {
        c.key(DEFAULT_ESCAPE);
    }
    for _ in 0..3 {
        c.key(DEFAULT_ESCAPE);
    }
    assert_eq!(c.mux.focus(), 0, "wraps around");
    assert_eq!(
        c.take(),
        "bulkhead: console input to domU3\r\nbulkhead: console input to domU1\r\n"
    );
}

#[test]
fn console_mux_focus_line_starts_on_a_new_line() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"/ # ", 0);
    c.idle(IDLE);
    for _ in 0..3 {
        c.key(DEFAULT_ESCAPE);
    }
    assert_eq!(
        c.take(),
        "domU1: / # ",
        "the prompt's line is not split at once"
    );
    c.idle(2 * IDLE);
    assert_eq!(
        c.take(),
        "\r\nbulkhead: console input to domU2\r\n",
        "an idle prompt's line is ended for it"
    );
}

#[test]
fn console_mux_one_or_two_escapes_then_a_byte_are_all_delivered() {
    let mut c = Console::new(&["domU1", "domU2"]);
    assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    let one = c.key(b'x');
    assert_eq!(one, deliver(0, &[DEFAULT_ESCAPE, b'x']));
    assert_eq!(one.bytes(), &[DEFAULT_ESCAPE, b'x']);
    c.key(DEFAULT_ESCAPE);
    c.key(DEFAULT_ESCAPE);
    let two = c.key(b'y');
    assert_eq!(two.bytes(), &[DEFAULT_ESCAPE, DEFAULT_ESCAPE, b'y']);
    assert_eq!(c.mux.focus(), 0);
    // The count starts again after a delivery: two more escapes do not switch.
    c.key(DEFAULT_ESCAPE);
    c.key(DEFAULT_ESCAPE);
    assert_eq!(c.key(b'z').bytes(), &[DEFAULT_ESCAPE, DEFAULT_ESCAPE, b'z']);
    assert_eq!(c.mux.focus(), 0);
    assert_eq!(c.take(), "");
}

#[test]
fn console_mux_escape_byte_is_configurable() {
    const CTRL_RIGHT_BRACKET: u8 = 0x1d;
    let mut c = Console::with_escape(&["domU1", "domU2"], CTRL_RIGHT_BRACKET);
    for _ in 0..3 {
        assert_eq!(
            c.key(DEFAULT_ESCAPE).bytes(),
            &[DEFAULT_ESCAPE],
            "Ctrl-A is plain input"
        );
    }
    assert_eq!(c.mux.focus(), 0);
    for _ in 0..3 {
        assert_eq!(c.key(CTRL_RIGHT_BRACKET), Input::Consumed);
    }
    assert_eq!(c.mux.focus(), 1);
    assert_eq!(c.take(), "bulkhead: console input to domU2\r\n");
}

#[test]
fn console_mux_switching_skips_stopped_vms() {
    let mut c = Console::new(&["domU1", "domU2", "domU3"]);
    c.alive(1, false);
    assert_eq!(c.take(), "", "a VM out of focus stops quietly");
    for _ in 0..3 {
        c.key(DEFAULT_ESCAPE);
    }
    assert_eq!(c.mux.focus(), 2);
    assert_eq!(c.take(), "bulkhead: console input to domU3\r\n");
    c.alive(0, false);
    for _ in 0..3 {
        c.key(DEFAULT_ESCAPE);
    }
    assert_eq!(c.mux.focus(), 2, "the only running VM keeps the focus");
    assert_eq!(c.take(), "bulkhead: console input to domU3\r\n");
}

#[test]
fn console_mux_focused_vm_stopping_moves_focus_and_flushes_its_line() {
    let mut c = Console::new(&["domU1", "domU2", "domU3"]);
    c.vm(0, b"reboot: Power down", 0);
    c.alive(0, false);
    assert_eq!(c.mux.focus(), 1);
    assert_eq!(
        c.take(),
        "domU1: reboot: Power down\r\nbulkhead: console input to domU2 (domU1 stopped)\r\n"
    );
    assert_eq!(c.key(b'q'), deliver(1, b"q"));

    c.alive(2, false);
    c.alive(1, false);
    assert_eq!(
        c.take(),
        "bulkhead: console input to nobody (domU2 stopped)\r\n"
    );
    assert_eq!(c.key(b'q'), Input::Consumed, "no VM to take input");

    // A VM starting again takes the focus nobody has.
    c.alive(2, true);
    assert_eq!(c.mux.focus(), 2);
    assert_eq!(c.take(), "bulkhead: console input to domU3\r\n");
    assert_eq!(c.key(b'q'), deliver(2, b"q"));
}

#[test]
fn console_mux_stopping_vm_ends_its_shown_partial_line() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(1, b"# ", 0);
    c.idle(IDLE);
    c.vm(1, b"hal", 150);
    c.alive(1, false);
    c.vm(0, b"next\r\n", 160);
    assert_eq!(c.take(), "domU2: # hal\r\ndomU1: next\r\n");
    // Back again, it starts afresh.
    c.alive(1, true);
    c.vm(1, b"\r\n", 170);
    assert_eq!(c.take(), "domU2: \r\n");
}

#[test]
fn console_mux_start_or_stop_twice_changes_nothing() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"held", 0);
    c.alive(0, true);
    c.vm(0, b"\r\n", 1);
    assert_eq!(c.take(), "domU1: held\r\n", "held bytes survive");
    c.alive(0, false);
    c.alive(0, false);
    assert_eq!(
        c.take(),
        "bulkhead: console input to domU2 (domU1 stopped)\r\n"
    );
}

#[test]
fn console_mux_without_vms_shows_hyp_lines_and_consumes_input() {
    let mut c = Console::new(&[]);
    c.hyp("bulkhead: ready");
    for _ in 0..3 {
        assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
    }
    assert_eq!(c.key(b'x'), Input::Consumed);
    assert_eq!(c.idle(u64::MAX), None);
    assert_eq!(c.take(), "bulkhead: ready\r\n");
}

// --- Property: nothing lost, nothing reordered, no line mixes two VMs ---------------------

const NAMES: [&str; 3] = ["vm0", "vm1", "vm2"];

#[derive(Debug, Clone)]
enum Op {
    Output(usize, Vec<u8>),
    /// Time passes and the idle timer fires.
    Idle(u64),
    Hyp,
}

/// Bytes that exercise line ends, lone CRs, escape sequences and UTF-8 (not CAN or SUB: the
/// parser below takes every CAN for the multiplexer's).
fn vm_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(b"abc :".to_vec()),
        2 => Just(b'\n'),
        2 => Just(b'\r'),
        1 => prop::sample::select(vec![ESC, b'[', b']', BEL, 0xe2, 0x82, 0xac, DEFAULT_ESCAPE]),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES.len(), proptest::collection::vec(vm_byte(), 0..40))
            .prop_map(|(vm, bytes)| Op::Output(vm, bytes)),
        2 => (0..2 * IDLE).prop_map(Op::Idle),
        1 => Just(Op::Hyp),
    ]
}

/// A VM's stream as the multiplexer should show it: `\n` for each line end (`\r\n` or
/// `\n`), a trailing CR still held.
fn expected(written: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    for (i, &b) in written.iter().enumerate() {
        // A CR before LF is part of the line end; a final CR is still held.
        if b == b'\r' && matches!(written.get(i + 1), Some(b'\n') | None) {
            continue;
        }
        s.push(b);
    }
    s
}

/// Splits the UART stream into screen lines and gives back each VM's text, `\n` where its
/// screen lines ended. Fails if a line does not start with a prefix or a hypervisor line, or
/// if a prefix after a CR names another VM.
fn parse(out: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let out: Vec<u8> = out.iter().copied().filter(|&b| b != CAN).collect();
    let mut texts = vec![Vec::new(); NAMES.len()];
    let mut rest = &out[..];
    while !rest.is_empty() {
        if let Some(line) = rest.strip_prefix(b"bulkhead: hyp\r\n") {
            rest = line;
            continue;
        }
        let (vm, prefix) = NAMES
            .iter()
            .enumerate()
            .map(|(vm, name)| (vm, format!("{name}: ")))
            .find(|(_, p)| rest.starts_with(p.as_bytes()))
            .ok_or_else(|| format!("no prefix: {:?}", String::from_utf8_lossy(rest)))?;
        rest = &rest[prefix.len()..];
        loop {
            match rest {
                [] => break,
                [b'\r', b'\n', tail @ ..] => {
                    texts[vm].push(b'\n');
                    rest = tail;
                    break;
                }
                [b'\r', tail @ ..] => {
                    texts[vm].push(b'\r');
                    rest = tail.strip_prefix(prefix.as_bytes()).ok_or_else(|| {
                        format!("CR without {prefix:?}: {:?}", String::from_utf8_lossy(tail))
                    })?;
                }
                [b'\n', ..] => return Err("bare LF".to_string()),
                [b, tail @ ..] => {
                    texts[vm].push(*b);
                    rest = tail;
                }
            }
        }
    }
    Ok(texts)
}

/// Where the line ends of `text` fall, counted in content bytes.
fn line_ends(text: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut ends = Vec::new();
    for &b in text {
        if b == b'\n' {
            ends.push(at);
        } else {
            at += 1;
        }
    }
    ends
}

proptest! {
    #[test]
    fn console_mux_every_vm_byte_comes_out_once_in_order_on_its_own_lines(
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        let mut c = Console::new(&NAMES);
        let mut written = vec![Vec::new(); NAMES.len()];
        let mut now = 0;
        let mut flushed = false;
        for op in &ops {
            match op {
                Op::Output(vm, bytes) => {
                    c.vm(*vm, bytes, now);
                    written[*vm].extend_from_slice(bytes);
                }
                Op::Idle(dt) => {
                    now += dt;
                    c.idle(now);
                    flushed = true;
                }
                Op::Hyp => c.hyp("bulkhead: hyp"),
            }
        }
        c.idle(u64::MAX);
        let texts = parse(&c.out).map_err(TestCaseError::fail)?;
        for vm in 0..NAMES.len() {
            let want = expected(&written[vm]);
            let got = &texts[vm];
            let strip = |s: &[u8]| s.iter().copied().filter(|&b| b != b'\n').collect::<Vec<u8>>();
            prop_assert_eq!(strip(got), strip(&want), "vm{} content", vm);
            // Every line end the VM wrote is on screen; the multiplexer may add breaks.
            let mut extra = line_ends(got);
            for end in line_ends(&want) {
                let i = extra.iter().position(|&e| e == end);
                prop_assert!(i.is_some(), "vm{} line end at {} missing", vm, end);
                extra.remove(i.unwrap());
            }
            // Without idle flushes, lines shorter than a piece are shown exactly as written
            // (the final flush may end a last partial line).
            let short = want.split(|&b| b == b'\n').all(|l| l.len() <= LINE_BYTES);
            if !flushed && short {
                let ended = !want.ends_with(b"\n") && got.strip_suffix(b"\n") == Some(&want[..]);
                prop_assert!(*got == want || ended, "vm{}: {:?} != {:?}", vm, got, want);
            }
        }
    }
}

// --- Forging, waiting hypervisor lines, commands, breaks ----------------------------------

#[test]
fn console_mux_one_vm_line_starting_bulkhead_is_shown_after_its_name() {
    let mut c = Console::new(&["guest"]);
    c.vm(0, b"bulkhead: fake\r\nok bulkhead: inside\nbulky\n", 0);
    assert_eq!(
        c.take(),
        "guest: bulkhead: fake\r\nok bulkhead: inside\nbulky\n",
        "only a line that starts with the tag is marked"
    );
    // Byte by byte, as a guest's UART writes it.
    for &b in b"bulkhead: one at a time\n" {
        c.vm(0, &[b], 1);
    }
    assert_eq!(c.take(), "guest: bulkhead: one at a time\n");
    // A CR starts the row again: the tag after it is marked too.
    c.vm(0, b"10%\rbulkhead: over\n", 2);
    assert_eq!(c.take(), "10%\rguest: bulkhead: over\n");
    // The held start is released unchanged when the line goes elsewhere.
    c.vm(0, b"bulk", 3);
    assert_eq!(c.take(), "", "held while it may become the tag");
    c.vm(0, b"y\n", 4);
    assert_eq!(c.take(), "bulky\n");
}

#[test]
fn console_mux_one_vm_held_tag_start_is_shown_marked_after_the_idle_time() {
    let mut c = Console::new(&["guest"]);
    c.vm(0, b"bul", 10);
    assert_eq!(c.idle(11), Some(10 + IDLE));
    c.idle(10 + IDLE);
    assert_eq!(c.take(), "guest: bul");
    // The rest follows on the same line: a slow guest cannot forge the line either.
    c.vm(0, b"khead: slow\n", 500);
    assert_eq!(c.take(), "khead: slow\n");
    // A hypervisor line while the start is held (nothing shown yet): at once, then the VM's.
    c.vm(0, b"bu", 600);
    c.hyp("bulkhead: real");
    c.vm(0, b"g\n", 601);
    assert_eq!(c.take(), "bulkhead: real\r\nbug\n");
    // A VM stopping shows what it held.
    c.vm(0, b"bulkhea", 700);
    c.alive(0, false);
    assert_eq!(c.take(), "guest: bulkhea");
}

#[test]
fn console_mux_hyp_lines_wait_for_the_line_in_order_and_a_full_queue_ends_it() {
    let mut c = Console::new(&["guest"]);
    c.vm(0, b"abc", 0);
    for i in 0..10 {
        c.hyp(&format!("bulkhead: trace {i}"));
    }
    c.vm(0, b"def\n", 1);
    let want: String = (0..10)
        .map(|i| format!("bulkhead: trace {i}\r\n"))
        .collect();
    assert_eq!(c.take(), format!("abcdef\n{want}"));
    // A storm bigger than the queue: the line is ended once, nothing is lost or reordered.
    c.vm(0, b"ghi", 2);
    let count = HYP_QUEUE_BYTES / "bulkhead: trace 00000\r\n".len() + 100;
    let lines: Vec<String> = (0..count)
        .map(|i| format!("bulkhead: trace {i:05}"))
        .collect();
    for line in &lines {
        c.hyp(line);
    }
    c.vm(0, b"jkl\n", 3);
    let out = c.take();
    let expect_lines: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    assert!(
        out.starts_with("ghi\r\nbulkhead: trace 00000\r\n"),
        "{out:?}"
    );
    assert_eq!(out.replace("jkl\n", ""), format!("ghi\r\n{expect_lines}"));
    assert!(out.ends_with("jkl\n"));
}

#[test]
fn console_mux_several_vms_hyp_line_waits_for_a_shown_partial_line() {
    let mut c = Console::new(&["domU1", "domU2"]);
    c.vm(0, b"login: ", 0);
    c.idle(IDLE);
    c.hyp("bulkhead: waits");
    assert_eq!(c.take(), "domU1: login: ");
    // Another VM's line ends the partial line anyway: the hypervisor line goes first.
    c.vm(1, b"other\r\n", IDLE + 1);
    assert_eq!(
        c.take(),
        "\r\nbulkhead: waits\r\ndomU2: other\r\n",
        "queued before domU2's line, so shown before it"
    );
}

#[test]
fn console_mux_two_escapes_and_s_ask_for_statistics() {
    for names in [&["domU1"][..], &["domU1", "domU2"][..]] {
        let mut c = Console::new(names);
        assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
        assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
        assert_eq!(c.key(STATS_KEY), Input::Stats, "{names:?}");
        // One escape and `s` is the guest's (readline's Ctrl-A, then a letter).
        assert_eq!(c.key(DEFAULT_ESCAPE), Input::Consumed);
        assert_eq!(c.key(STATS_KEY), deliver(0, &[DEFAULT_ESCAPE, STATS_KEY]));
        // `s` alone, and two escapes and another letter, are the guest's too.
        assert_eq!(c.key(STATS_KEY), deliver(0, b"s"));
        c.key(DEFAULT_ESCAPE);
        c.key(DEFAULT_ESCAPE);
        assert_eq!(
            c.key(b't'),
            deliver(0, &[DEFAULT_ESCAPE, DEFAULT_ESCAPE, b't'])
        );
        assert_eq!(c.mux.focus(), 0);
        assert_eq!(c.take(), "");
    }
    // With another escape character the command follows it.
    let mut c = Console::with_escape(&["a", "b"], 0x02);
    c.key(0x02);
    c.key(0x02);
    assert_eq!(c.key(b's'), Input::Stats);
}

#[test]
fn console_mux_break_goes_to_the_vm_in_focus_and_drops_held_escapes() {
    let mut c = Console::new(&["domU1", "domU2"]);
    assert_eq!(c.mux.input_break(), Input::Break { vm: 0 });
    c.key(DEFAULT_ESCAPE);
    assert_eq!(c.mux.input_break(), Input::Break { vm: 0 });
    assert_eq!(c.key(b'x'), deliver(0, b"x"), "the escape was dropped");
    for _ in 0..3 {
        c.key(DEFAULT_ESCAPE);
    }
    assert_eq!(c.mux.input_break(), Input::Break { vm: 1 });
    c.alive(0, false);
    c.alive(1, false);
    assert_eq!(c.mux.input_break(), Input::Consumed, "nobody running");
}

/// One VM, any output, hypervisor lines and idle timer: every guest byte comes out once, in
/// order; a hypervisor line starts only after a line feed; and every screen row that starts
/// with `bulkhead:` (after LF or CR) is a hypervisor line.
fn single_vm_byte() -> impl Strategy<Value = u8> {
    prop::sample::select(b"bulkhead: x\n\r".to_vec())
}

fn single_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(single_vm_byte(), 0..20).prop_map(|b| Op::Output(0, b)),
        2 => (0..2 * IDLE).prop_map(Op::Idle),
        2 => Just(Op::Hyp),
    ]
}

proptest! {
    #[test]
    fn console_mux_one_vm_cannot_forge_and_hyp_lines_start_lines(
        ops in proptest::collection::vec(single_op(), 0..60),
    ) {
        let mut c = Console::new(&["g"]);
        let mut written = Vec::new();
        let mut now = 0;
        let mut hyps = 0;
        for op in &ops {
            match op {
                Op::Output(vm, bytes) => {
                    c.vm(*vm, bytes, now);
                    written.extend_from_slice(bytes);
                }
                Op::Idle(dt) => {
                    now += dt;
                    c.idle(now);
                }
                Op::Hyp => {
                    c.hyp("bulkhead: hyp");
                    hyps += 1;
                }
            }
        }
        c.idle(u64::MAX);
        c.alive(0, false);
        let out = c.out.clone();
        let line = b"bulkhead: hyp\r\n";
        let mut content = Vec::new();
        let mut seen = 0;
        let mut i = 0;
        while i < out.len() {
            let row_start = i == 0 || matches!(out[i - 1], b'\n' | b'\r');
            if row_start && out[i..].starts_with(b"bulkhead:") {
                prop_assert!(out[i..].starts_with(line), "forged at {}: {:?}", i, String::from_utf8_lossy(&out));
                prop_assert!(i == 0 || out[i - 1] == b'\n', "hyp line after a CR: {:?}", String::from_utf8_lossy(&out));
                seen += 1;
                i += line.len();
                continue;
            }
            content.push(out[i]);
            i += 1;
        }
        prop_assert_eq!(seen, hyps);
        // What is left is the guest's bytes, plus the name before its tag lines and the line
        // ends the multiplexer added before hypervisor lines.
        let strip = |s: &[u8]| {
            let text = String::from_utf8_lossy(s).replace("g: ", "");
            text.bytes().filter(|b| !matches!(*b, b'\r' | b'\n' | CAN)).collect::<Vec<u8>>()
        };
        prop_assert_eq!(strip(&content), strip(&written));
    }
}

proptest! {
    /// The exit fast path's one-byte entry shows exactly what `vm_output` of that byte shows,
    /// with one VM or several, between hypervisor lines and idle flushes.
    #[test]
    fn console_mux_byte_entry_is_vm_output_of_one_byte(
        ops in proptest::collection::vec(op(), 0..60),
        several in any::<bool>(),
    ) {
        let names: &[&str] = if several { &NAMES } else { &NAMES[..1] };
        let (mut slices, mut bytes) = (Console::new(names), Console::new(names));
        let mut now = 0;
        for op in &ops {
            match op {
                Op::Output(vm, data) => {
                    let vm = vm % names.len();
                    for &b in data.iter() {
                        slices.vm(vm, &[b], now);
                        let out = &mut bytes.out;
                        bytes.mux.vm_output_byte(vm, b, now, &mut |o| out.extend_from_slice(o));
                    }
                }
                Op::Idle(dt) => {
                    now += dt;
                    slices.idle(now);
                    bytes.idle(now);
                }
                Op::Hyp => {
                    slices.hyp("bulkhead: hyp");
                    bytes.hyp("bulkhead: hyp");
                }
            }
        }
        prop_assert_eq!(&slices.out, &bytes.out);
    }

    /// Escape-sequence tracking: outside a sequence only ESC starts one (the shortcut `step`
    /// takes for plain text), from every state the same as the full table.
    #[test]
    fn console_mux_seq_step_from_ground_leaves_only_on_esc(b in any::<u8>()) {
        let next = Seq::Ground.step(b);
        prop_assert_eq!(next == Seq::Escape, b == ESC);
        prop_assert!(next == Seq::Ground || next == Seq::Escape);
    }
}
