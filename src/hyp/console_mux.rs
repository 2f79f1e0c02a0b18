//! The console multiplexer: several VMs and the hypervisor share one physical UART, the way
//! Xen's console shares it between domains. A pure state machine: the caller feeds it what
//! each source writes and each byte typed, and writes what it emits (`out`) to the UART.
//!
//! Output:
//! - With one VM its bytes pass through unchanged and at once, as without a multiplexer, with
//!   one exception (below: lines starting `bulkhead:`).
//! - With several, each VM's lines are held per VM and emitted whole, each screen line
//!   starting with `name: `, so lines of two VMs never mix. A held partial line (a prompt)
//!   is emitted once its oldest byte is `idle` ticks old ([`ConsoleMux::flush_idle`]); the
//!   rest of that line follows it directly if nothing else was printed in between, and starts
//!   a new `name: ` line otherwise. `\n` and `\r\n` end a line (emitted as `\r\n`); a lone
//!   `\r` returns the cursor over the prefix, so the prefix is written again after it. A line
//!   longer than [`LINE_BYTES`] is emitted in pieces, each its own prefixed line.
//! - Hypervisor lines (log lines, focus and statistics lines) always start at a line start and
//!   never split a VM's line: while a VM's unfinished line is on screen, they wait (in a
//!   [`HYP_QUEUE_BYTES`] queue) until that line ends. A line that stays unfinished for `idle`
//!   ticks (a prompt waiting for input) is ended by the multiplexer, as is one whose waiting
//!   hypervisor lines no longer fit the queue. An escape sequence a VM left open is cancelled
//!   (CAN) first so it cannot swallow or alter a hypervisor line. Other control bytes and
//!   escape sequences pass through.
//!
//! Forging: a screen line whose bytes start with [`HYP_TAG`] (`bulkhead:`) is the
//! hypervisor's, and only the hypervisor's. With several VMs every VM line starts with its
//! name (and no VM may be named `bulkhead`, `crate::config`). With one VM, a line of its own
//! that starts with `bulkhead:` (after a line feed or a carriage return) is shown with its
//! name in front, `guest: bulkhead: ...`, the way it would be with several VMs; every other
//! byte passes unchanged. To decide, the first bytes of a VM's line are held while they spell
//! the start of `bulkhead:` (at most 9 bytes; shown, prefixed, after `idle` ticks if the line
//! stops there). This protects the byte stream (serial logs, anything reading the console
//! line by line); a terminal's rendering is not: cursor-moving escape sequences can paint any
//! text anywhere, which only a terminal emulator in the hypervisor could prevent.
//!
//! Input goes to the VM in focus. The escape byte (Ctrl-A by default) starts a command:
//! - three escapes in a row move the focus to the next running VM (with one VM the three are
//!   delivered: there is nothing to switch to);
//! - two escapes and `s` print live statistics (the caller prints them: [`Input::Stats`]);
//! - one or two escapes followed by any other byte are all delivered, so a guest still gets
//!   its Ctrl-A (readline's beginning-of-line). A single escape and a letter is too common in
//!   shells to take for a command.
//!
//! Escapes are held until the byte after them says what they were.
//! A serial break goes to the VM in focus (and drops held escapes).
//!
//! Nothing allocates after [`ConsoleMux::new`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The longest piece of one VM line held before it is emitted (Xen holds 200).
pub const LINE_BYTES: usize = 256;
/// Ctrl-A, Xen's default console switch character (`bulkhead.console_escape=` changes it).
pub const DEFAULT_ESCAPE: u8 = crate::bootargs::DEFAULT_CONSOLE_ESCAPE;
/// How many escape bytes in a row switch the focus.
const SWITCH_ESCAPES: usize = 3;
/// How many escape bytes before [`STATS_KEY`] ask for the statistics.
const STATS_ESCAPES: usize = 2;
/// The key that, after [`STATS_ESCAPES`] escapes, prints live statistics.
pub const STATS_KEY: u8 = b's';
/// What every hypervisor line starts with.
pub const HYP_TAG: &[u8] = b"bulkhead:";
/// Room for hypervisor lines waiting for a VM's line to end (a burst of trace lines).
pub const HYP_QUEUE_BYTES: usize = 64 << 10;

const CRLF: &[u8] = b"\r\n";
/// CAN: aborts an escape or control sequence in any state of a DEC/ECMA-48 terminal parser.
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// What to do with a byte typed on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Deliver `bytes[..len]` (1 to 3 bytes: held escapes and the byte) to VM `vm`.
    Deliver {
        vm: usize,
        bytes: [u8; 3],
        len: usize,
    },
    /// A serial break for VM `vm`.
    Break { vm: usize },
    /// The statistics key: the caller prints live statistics (as hypervisor lines).
    Stats,
    /// Nothing to deliver: the byte was an escape (held, or it switched the focus), or no VM
    /// is running.
    Consumed,
}

impl Input {
    /// The bytes to deliver (empty but for `Deliver`).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Input::Deliver { bytes, len, .. } => &bytes[..*len],
            _ => &[],
        }
    }
}

/// Where the terminal's cursor is, as far as the multiplexer's output put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    /// At the start of an empty line.
    LineStart,
    /// Right after text of this VM: its next bytes continue the line; anyone else's output
    /// needs a line end first.
    After(usize),
}

/// The terminal's escape-sequence parser state (the DEC VT parser, simplified to what
/// matters here: is a sequence still open that would eat bytes written after it?).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seq {
    Ground,
    /// After ESC (and any intermediates).
    Escape,
    /// Inside a CSI sequence (`ESC [`).
    Csi,
    /// Inside an OSC, DCS, SOS, PM or APC string: it runs to BEL or ST (`ESC \`).
    Str,
}

impl Seq {
    fn step(self, b: u8) -> Seq {
        match (self, b) {
            // Outside a sequence only ESC starts one: the common case (plain text), first.
            (Seq::Ground, b) if b != ESC => Seq::Ground,
            (_, CAN | SUB) => Seq::Ground,
            (Seq::Str, BEL) => Seq::Ground,
            (_, ESC) => Seq::Escape,
            (Seq::Str, _) => Seq::Str,
            (Seq::Escape, b'[') => Seq::Csi,
            (Seq::Escape, b']' | b'P' | b'X' | b'^' | b'_') => Seq::Str,
            (Seq::Escape, 0x30..=0x7e) => Seq::Ground,
            (Seq::Csi, 0x40..=0x7e) => Seq::Ground,
            (state, _) => state,
        }
    }
}

/// The physical UART as the multiplexer's output left it.
struct Term {
    screen: Screen,
    seq: Seq,
}

impl Term {
    /// Bytes the multiplexer itself writes (prefixes, line breaks, hypervisor lines): an
    /// escape sequence a VM left open is cancelled first, so it cannot consume them.
    fn mux(&mut self, bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
        if self.seq != Seq::Ground {
            out(&[CAN]);
            self.seq = Seq::Ground;
        }
        if !bytes.is_empty() {
            out(bytes);
        }
    }

    /// Bytes a VM wrote.
    fn vm(&mut self, bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
        self.seq = bytes.iter().fold(self.seq, |s, &b| s.step(b));
        out(bytes);
    }
}

/// One VM's side of the console.
struct VmConsole {
    name: String,
    /// `name: `.
    prefix: Vec<u8>,
    alive: bool,
    /// The held part of the current line (line ends are not held).
    buf: [u8; LINE_BYTES],
    len: usize,
    /// When the oldest held byte arrived.
    since: u64,
    /// The last byte was `\r`: a line end if `\n` follows, content otherwise.
    cr: bool,
    /// This VM's current line was ended on screen by the multiplexer (another source printed,
    /// or the piece was full) and nothing of it was emitted since: its own line end is then
    /// already on screen, and an empty line would be noise.
    broken: bool,
}

impl VmConsole {
    fn reset(&mut self) {
        self.len = 0;
        self.cr = false;
        self.broken = false;
    }
}

/// How a VM's held bytes are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Held bytes only; the line stays open for more.
    Partial,
    /// The VM ended the line.
    Line,
    /// The piece is full: the multiplexer ends the line, the rest follows on a new one.
    Full,
    /// The VM stopped: the multiplexer ends the line.
    Stop,
}

/// The console multiplexer. See the module documentation.
pub struct ConsoleMux {
    vms: Vec<VmConsole>,
    term: Term,
    escape: u8,
    /// Escape bytes typed in a row, held until we know whether they switch.
    escapes: usize,
    focus: usize,
    /// Hypervisor lines (each ending in CRLF) waiting for the VM line on screen to end.
    queue: Vec<u8>,
    /// When the oldest queued line arrived.
    queue_since: u64,
    /// One VM: how many bytes of [`HYP_TAG`] its current line started with (held, not shown).
    tag_held: usize,
    /// When the first held tag byte arrived.
    tag_since: u64,
    /// One VM: its last byte was a CR, so its next one starts the screen row again.
    row_start_cr: bool,
}

impl ConsoleMux {
    /// A multiplexer for the VMs `names` (in switching order), all running, the first in
    /// focus; `escape` is the switch byte ([`DEFAULT_ESCAPE`]). With no VMs only hypervisor
    /// lines are shown and input is consumed. Methods taking a `vm` index panic if it is not
    /// one of these.
    pub fn new(names: Vec<String>, escape: u8) -> Self {
        let vms = names
            .into_iter()
            .map(|name| {
                let mut prefix = Vec::with_capacity(name.len() + 2);
                prefix.extend_from_slice(name.as_bytes());
                prefix.extend_from_slice(b": ");
                VmConsole {
                    name,
                    prefix,
                    alive: true,
                    buf: [0; LINE_BYTES],
                    len: 0,
                    since: 0,
                    cr: false,
                    broken: false,
                }
            })
            .collect();
        ConsoleMux {
            vms,
            term: Term {
                screen: Screen::LineStart,
                seq: Seq::Ground,
            },
            escape,
            escapes: 0,
            focus: 0,
            queue: Vec::with_capacity(HYP_QUEUE_BYTES),
            queue_since: 0,
            tag_held: 0,
            tag_since: 0,
            row_start_cr: false,
        }
    }

    /// One VM: no prefixes, no switching, nothing held but a line's `bulkhead:`.
    pub fn single(&self) -> bool {
        self.vms.len() == 1
    }

    /// The VM that receives console input.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Bytes VM `vm` wrote to its UART at tick `now`.
    pub fn vm_output(&mut self, vm: usize, bytes: &[u8], now: u64, out: &mut dyn FnMut(&[u8])) {
        for &b in bytes {
            self.vm_byte(vm, b, now, out);
        }
        self.flush_queue_at_line_start(out);
    }

    /// One byte VM `vm` wrote (a guest's store to its UART's data register): `vm_output` of
    /// that byte, without the loop (every character a guest prints comes this way).
    pub fn vm_output_byte(&mut self, vm: usize, b: u8, now: u64, out: &mut dyn FnMut(&[u8])) {
        self.vm_byte(vm, b, now, out);
        self.flush_queue_at_line_start(out);
    }

    #[inline(always)]
    fn vm_byte(&mut self, vm: usize, b: u8, now: u64, out: &mut dyn FnMut(&[u8])) {
        if self.single() {
            self.single_byte(vm, b, now, out);
        } else {
            self.shared_byte(vm, b, now, out);
        }
    }

    /// One byte of one of several VMs: held until its line ends (or waited too long). Out of
    /// line, as are the rarer steps of a lone VM's byte (`show_tag`), so the pass-through path
    /// of every character keeps few registers to save.
    #[inline(never)]
    fn shared_byte(&mut self, vm: usize, b: u8, now: u64, out: &mut dyn FnMut(&[u8])) {
        let v = &mut self.vms[vm];
        if v.cr {
            v.cr = false;
            if b == b'\n' {
                self.emit(vm, End::Line, out);
                return;
            }
            self.push(vm, b'\r', now, out);
        }
        match b {
            b'\n' => self.emit(vm, End::Line, out),
            b'\r' => self.vms[vm].cr = true,
            _ => self.push(vm, b, now, out),
        }
    }

    /// One byte of the only VM: passed through, except a line's start that spells
    /// [`HYP_TAG`], which is held and, complete, shown after the VM's name.
    fn single_byte(&mut self, vm: usize, b: u8, now: u64, out: &mut dyn FnMut(&[u8])) {
        let row_start = self.term.screen == Screen::LineStart || self.row_start_cr;
        if row_start && HYP_TAG.get(self.tag_held) == Some(&b) {
            if self.tag_held == 0 {
                self.tag_since = now;
            }
            self.tag_held += 1;
            if self.tag_held == HYP_TAG.len() {
                self.show_tag(vm, true, out);
            }
            return;
        }
        if self.tag_held > 0 {
            self.show_tag(vm, false, out);
        }
        self.row_start_cr = b == b'\r';
        self.term.vm(&[b], out);
        self.term.screen = if b == b'\n' {
            Screen::LineStart
        } else {
            Screen::After(vm)
        };
    }

    /// Shows the held start of [`HYP_TAG`], after the VM's name if `prefixed`.
    #[inline(never)]
    fn show_tag(&mut self, vm: usize, prefixed: bool, out: &mut dyn FnMut(&[u8])) {
        let held = core::mem::take(&mut self.tag_held);
        if prefixed {
            // The queued hypervisor lines go first: the row is about to hold this VM's text.
            self.flush_queue_at_line_start(out);
            self.term.mux(&self.vms[vm].prefix, out);
        }
        self.term.vm(&HYP_TAG[..held], out);
        self.term.screen = Screen::After(vm);
        self.row_start_cr = false;
    }

    /// Emits the queued hypervisor lines if the screen is at a line start.
    fn flush_queue_at_line_start(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.term.screen == Screen::LineStart && !self.queue.is_empty() {
            self.term.mux(&self.queue, out);
            self.queue.clear();
        }
    }

    /// Emits the held bytes of VMs whose oldest held byte arrived `idle` ticks or more before
    /// `now`. Returns the tick when the next held bytes are due, if any: the caller arms a
    /// timer for it. Call it after `vm_output` too, to learn the deadline (it emits nothing
    /// early).
    #[inline]
    pub fn flush_idle(&mut self, now: u64, idle: u64, out: &mut dyn FnMut(&[u8])) -> Option<u64> {
        // Nothing held, the common case after every guest write (a lone VM's bytes pass
        // through; several VMs' whole lines go out at once): nothing is due, nothing waits.
        // Checked inline, as the walk below costs about 50 instructions per console write. A
        // lone VM's bytes are never held in its line (`single_byte`; only `shared_byte`
        // holds): no walk over the VMs then.
        if self.queue.is_empty()
            && self.tag_held == 0
            && (self.single() || self.vms.iter().all(|v| v.len == 0))
        {
            return None;
        }
        self.flush_held(now, idle, out)
    }

    /// `flush_idle` when something is held.
    #[inline(never)]
    fn flush_held(&mut self, now: u64, idle: u64, out: &mut dyn FnMut(&[u8])) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut later = |due: u64| next = Some(next.map_or(due, |n: u64| n.min(due)));
        // Hypervisor lines waited long enough for the VM's line: end it.
        if !self.queue.is_empty() {
            let due = self.queue_since.saturating_add(idle);
            if due <= now {
                self.begin_line(out);
            } else {
                later(due);
            }
        }
        // The only VM's line started like `bulkhead:` and stopped there.
        if self.tag_held > 0 {
            let due = self.tag_since.saturating_add(idle);
            if due <= now {
                self.show_tag(0, true, out);
            } else {
                later(due);
            }
        }
        for vm in 0..self.vms.len() {
            let v = &self.vms[vm];
            if v.len == 0 {
                continue;
            }
            let due = v.since.saturating_add(idle);
            if due <= now {
                self.emit(vm, End::Partial, out);
            } else {
                later(due);
            }
        }
        next
    }

    /// A hypervisor line (`bulkhead: ...`, without the line end) at tick `now`.
    pub fn hyp_line(&mut self, text: &str, now: u64, out: &mut dyn FnMut(&[u8])) {
        self.hyp_line_fmt(format_args!("{text}"), now, out);
    }

    /// A hypervisor line formatted in place (no buffer needed when it can go out at once) at
    /// tick `now`; a `\n` inside is written as `\r\n`, as the console writer does. Shown
    /// at once at a line start; queued while a VM's line is unfinished on screen (see the
    /// module documentation).
    pub fn hyp_line_fmt(&mut self, args: fmt::Arguments<'_>, now: u64, out: &mut dyn FnMut(&[u8])) {
        // With no room left, the VM's line is ended now rather than the line lost.
        if matches!(self.term.screen, Screen::After(_)) && self.enqueue(args, now) {
            return;
        }
        self.begin_line(out);
        // Only `out` can fail, and it cannot.
        let _ = fmt::Write::write_fmt(&mut CrlfWriter(|b: &[u8]| out(b)), args);
        out(CRLF);
    }

    /// Queues a hypervisor line; false (and nothing queued) if it does not fit.
    fn enqueue(&mut self, args: fmt::Arguments<'_>, now: u64) -> bool {
        let start = self.queue.len();
        let queue = &mut self.queue;
        let mut full = false;
        let mut push = |b: &[u8]| {
            if queue.len() + b.len() <= HYP_QUEUE_BYTES && !full {
                queue.extend_from_slice(b);
            } else {
                full = true;
            }
        };
        let _ = fmt::Write::write_fmt(&mut CrlfWriter(&mut push), args);
        push(CRLF);
        if full {
            self.queue.truncate(start);
            return false;
        }
        if start == 0 {
            self.queue_since = now;
        }
        true
    }

    /// One byte typed on the console at tick `now`: what to deliver, and to which VM.
    pub fn input(&mut self, byte: u8, now: u64, out: &mut dyn FnMut(&[u8])) -> Input {
        if byte == self.escape {
            self.escapes += 1;
            if self.escapes < SWITCH_ESCAPES {
                return Input::Consumed;
            }
            self.escapes = 0;
            if self.vms.len() > 1 {
                if let Some(next) = self.next_alive(self.focus) {
                    self.focus = next;
                }
                self.focus_line(None, now, out);
                return Input::Consumed;
            }
            // One VM: nothing to switch to; it gets its three escapes.
            return match self.vms.first() {
                Some(v) if v.alive => Input::Deliver {
                    vm: 0,
                    bytes: [self.escape; 3],
                    len: SWITCH_ESCAPES,
                },
                _ => Input::Consumed,
            };
        }
        let held = core::mem::take(&mut self.escapes);
        if held == STATS_ESCAPES && byte == STATS_KEY {
            return Input::Stats;
        }
        if !self.vms.get(self.focus).is_some_and(|v| v.alive) {
            return Input::Consumed;
        }
        let mut bytes = [self.escape; 3];
        bytes[held] = byte;
        Input::Deliver {
            vm: self.focus,
            bytes,
            len: held + 1,
        }
    }

    /// A serial break arrived on the console: it goes to the VM in focus; escapes typed before
    /// it are dropped (it ends whatever command they started).
    pub fn input_break(&mut self) -> Input {
        self.escapes = 0;
        match self.vms.get(self.focus) {
            Some(v) if v.alive => Input::Break { vm: self.focus },
            _ => Input::Consumed,
        }
    }

    /// The caller's word that VM `vm` started running (`alive`) or stopped. A stopping VM's
    /// held bytes are emitted and its line ended; if it had the focus, the focus moves to the
    /// next running VM. A starting VM takes the focus if no running VM had it.
    pub fn set_alive(&mut self, vm: usize, alive: bool, now: u64, out: &mut dyn FnMut(&[u8])) {
        if self.vms[vm].alive == alive {
            return;
        }
        if alive {
            self.vms[vm].alive = true;
            if !self.single() && !self.vms[self.focus].alive {
                self.focus = vm;
                self.focus_line(None, now, out);
            }
            return;
        }
        if self.single() {
            if self.tag_held > 0 {
                self.show_tag(vm, true, out);
            }
            self.vms[vm].alive = false;
            return;
        }
        self.vms[vm].cr = false;
        if self.vms[vm].len > 0 || self.term.screen == Screen::After(vm) {
            self.emit(vm, End::Stop, out);
        }
        self.vms[vm].reset();
        self.vms[vm].alive = false;
        if vm == self.focus {
            if let Some(next) = self.next_alive(vm) {
                self.focus = next;
            }
            self.focus_line(Some(vm), now, out);
        }
    }

    /// The next running VM after `from` in switching order, wrapping (`from` itself last).
    fn next_alive(&self, from: usize) -> Option<usize> {
        let n = self.vms.len();
        (1..=n)
            .map(|i| (from + i) % n)
            .find(|&vm| self.vms[vm].alive)
    }

    /// `bulkhead: console input to NAME`, with the VM that stopped, if that is why.
    fn focus_line(&mut self, stopped: Option<usize>, now: u64, out: &mut dyn FnMut(&[u8])) {
        let to = match self.vms.get(self.focus) {
            Some(focus) if focus.alive => focus.name.clone(),
            _ => String::from("nobody"),
        };
        match stopped {
            Some(vm) => {
                let stopped = self.vms[vm].name.clone();
                self.hyp_line_fmt(
                    format_args!("bulkhead: console input to {to} ({stopped} stopped)"),
                    now,
                    out,
                )
            }
            None => self.hyp_line_fmt(format_args!("bulkhead: console input to {to}"), now, out),
        }
    }

    /// Ends the screen line a VM left unfinished and any escape sequence it left open, then
    /// shows the hypervisor lines that waited for it, so that whatever comes next starts a
    /// line and shows as written.
    fn begin_line(&mut self, out: &mut dyn FnMut(&[u8])) {
        if let Screen::After(vm) = self.term.screen {
            self.term.mux(CRLF, out);
            self.term.screen = Screen::LineStart;
            self.vms[vm].broken = true;
            self.row_start_cr = false;
        }
        self.term.mux(&[], out);
        self.flush_queue_at_line_start(out);
    }

    /// Holds one content byte of VM `vm`, emitting a full piece first.
    fn push(&mut self, vm: usize, b: u8, now: u64, out: &mut dyn FnMut(&[u8])) {
        if self.vms[vm].len == LINE_BYTES {
            self.emit(vm, End::Full, out);
        }
        let v = &mut self.vms[vm];
        if v.len == 0 {
            v.since = now;
        }
        v.buf[v.len] = b;
        v.len += 1;
    }

    /// Emits VM `vm`'s held bytes, prefixed unless they continue its text on screen.
    fn emit(&mut self, vm: usize, end: End, out: &mut dyn FnMut(&[u8])) {
        let continuing = self.term.screen == Screen::After(vm);
        if !continuing && self.vms[vm].len == 0 {
            match end {
                // Nothing new to show.
                End::Partial | End::Full | End::Stop => return,
                // The line was already ended on screen; its own end would be an empty line.
                End::Line if self.vms[vm].broken => {
                    self.vms[vm].broken = false;
                    return;
                }
                End::Line => {}
            }
        }
        if !continuing {
            self.begin_line(out);
        }
        let Self { vms, term, .. } = self;
        if !continuing {
            term.mux(&vms[vm].prefix, out);
        }
        let v = &mut vms[vm];
        // A multi-byte UTF-8 character cut by a full piece waits for the next piece.
        let keep = if end == End::Full {
            utf8_incomplete_tail(&v.buf[..v.len])
        } else {
            0
        };
        let shown = v.len - keep;
        for chunk in v.buf[..shown].split_inclusive(|&b| b == b'\r') {
            term.vm(chunk, out);
            // The cursor went back over the prefix: put it back.
            if chunk.last() == Some(&b'\r') {
                term.mux(&v.prefix, out);
            }
        }
        v.buf.copy_within(shown..v.len, 0);
        v.len = keep;
        match end {
            End::Partial => {
                term.screen = Screen::After(vm);
                v.broken = false;
            }
            End::Line => {
                term.vm(CRLF, out);
                term.screen = Screen::LineStart;
                v.broken = false;
            }
            End::Full | End::Stop => {
                term.mux(CRLF, out);
                term.screen = Screen::LineStart;
                v.broken = true;
            }
        }
    }
}

/// Writes formatted text through its function, each `\n` as `\r\n`.
struct CrlfWriter<F: FnMut(&[u8])>(F);

impl<F: FnMut(&[u8])> fmt::Write for CrlfWriter<F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                (self.0)(CRLF);
            }
            if !part.is_empty() {
                (self.0)(part.as_bytes());
            }
        }
        Ok(())
    }
}

/// How many bytes at the end of `bytes` are an unfinished UTF-8 character (0 to 3).
fn utf8_incomplete_tail(bytes: &[u8]) -> usize {
    for (i, &b) in bytes.iter().rev().take(3).enumerate() {
        let need = match b {
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return 0,
        };
        return if i + 1 < need { i + 1 } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests;
