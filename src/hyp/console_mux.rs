//! The console multiplexer: several VMs and the hypervisor share one physical UART, the way
//! Xen's console shares it between domains. A pure state machine: the caller feeds it what
//! each source writes and each byte typed, and writes what it emits (`out`) to the UART.
//!
//! Output:
//! - With one VM its bytes pass through unchanged and at once, as without a multiplexer.
//! - With several, each VM's lines are held per VM and emitted whole, each screen line
//!   starting with `name: `, so lines of two VMs never mix. A held partial line (a prompt)
//!   is emitted once its oldest byte is `idle` ticks old ([`ConsoleMux::flush_idle`]); the
//!   rest of that line follows it directly if nothing else was printed in between, and starts
//!   a new `name: ` line otherwise. `\n` and `\r\n` end a line (emitted as `\r\n`); a lone
//!   `\r` returns the cursor over the prefix, so the prefix is written again after it. A line
//!   longer than [`LINE_BYTES`] is emitted in pieces, each its own prefixed line.
//! - Hypervisor lines always start at a line start: a VM's unfinished screen line is ended
//!   first, and an escape sequence a VM left open is cancelled (CAN) so it cannot swallow or
//!   alter the line. Other control bytes and escape sequences pass through.
//!
//! Input goes to the VM in focus. With several VMs the escape byte typed three times in a row
//! moves the focus to the next running VM; one or two escapes followed by another byte are
//! all delivered. With one VM every byte is delivered unchanged: there is nothing to switch to.
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
    /// Nothing to deliver: the byte was an escape (held, or it switched the focus), or no VM
    /// is running.
    Consumed,
}

impl Input {
    /// The bytes to deliver (empty for `Consumed`).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Input::Deliver { bytes, len, .. } => &bytes[..*len],
            Input::Consumed => &[],
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
        }
    }

    /// One VM: no prefixes, no holding, no switching.
    pub fn single(&self) -> bool {
        self.vms.len() == 1
    }

    /// The VM that receives console input.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Bytes VM `vm` wrote to its UART at tick `now`.
    pub fn vm_output(&mut self, vm: usize, bytes: &[u8], now: u64, out: &mut dyn FnMut(&[u8])) {
        if self.single() {
            if let Some(&last) = bytes.last() {
                self.term.vm(bytes, out);
                self.term.screen = if last == b'\n' {
                    Screen::LineStart
                } else {
                    Screen::After(vm)
                };
            }
            return;
        }
        for &b in bytes {
            let v = &mut self.vms[vm];
            if v.cr {
                v.cr = false;
                if b == b'\n' {
                    self.emit(vm, End::Line, out);
                    continue;
                }
                self.push(vm, b'\r', now, out);
            }
            match b {
                b'\n' => self.emit(vm, End::Line, out),
                b'\r' => self.vms[vm].cr = true,
                _ => self.push(vm, b, now, out),
            }
        }
    }

    /// Emits the held bytes of VMs whose oldest held byte arrived `idle` ticks or more before
    /// `now`. Returns the tick when the next held bytes are due, if any: the caller arms a
    /// timer for it. Call it after `vm_output` too, to learn the deadline (it emits nothing
    /// early).
    pub fn flush_idle(&mut self, now: u64, idle: u64, out: &mut dyn FnMut(&[u8])) -> Option<u64> {
        let mut next: Option<u64> = None;
        for vm in 0..self.vms.len() {
            let v = &self.vms[vm];
            if v.len == 0 {
                continue;
            }
            let due = v.since.saturating_add(idle);
            if due <= now {
                self.emit(vm, End::Partial, out);
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next
    }

    /// A hypervisor line (`bulkhead: ...`, without the line end), emitted whole at a line
    /// start.
    pub fn hyp_line(&mut self, text: &[u8], out: &mut dyn FnMut(&[u8])) {
        self.begin_hyp_line(out);
        out(text);
        out(CRLF);
    }

    /// A hypervisor line formatted in place (the logger's path: no buffer needed); a `\n`
    /// inside is written as `\r\n`, as the console writer does.
    pub fn hyp_line_fmt(&mut self, args: fmt::Arguments<'_>, out: &mut dyn FnMut(&[u8])) {
        struct Writer<'a>(&'a mut dyn FnMut(&[u8]));
        impl fmt::Write for Writer<'_> {
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
        self.begin_hyp_line(out);
        // Only `out` can fail, and it cannot.
        let _ = fmt::Write::write_fmt(&mut Writer(out), args);
        out(CRLF);
    }

    /// One byte typed on the console: what to deliver, and to which VM.
    pub fn input(&mut self, byte: u8, out: &mut dyn FnMut(&[u8])) -> Input {
        // One VM (or none): nothing to switch to.
        if self.vms.len() > 1 && byte == self.escape {
            self.escapes += 1;
            if self.escapes == SWITCH_ESCAPES {
                self.escapes = 0;
                if let Some(next) = self.next_alive(self.focus) {
                    self.focus = next;
                }
                self.focus_line(None, out);
            }
            return Input::Consumed;
        }
        let held = core::mem::take(&mut self.escapes);
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

    /// The caller's word that VM `vm` started running (`alive`) or stopped. A stopping VM's
    /// held bytes are emitted and its line ended; if it had the focus, the focus moves to the
    /// next running VM. A starting VM takes the focus if no running VM had it.
    pub fn set_alive(&mut self, vm: usize, alive: bool, out: &mut dyn FnMut(&[u8])) {
        if self.vms[vm].alive == alive {
            return;
        }
        if alive {
            self.vms[vm].alive = true;
            if !self.single() && !self.vms[self.focus].alive {
                self.focus = vm;
                self.focus_line(None, out);
            }
            return;
        }
        if self.single() {
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
            self.focus_line(Some(vm), out);
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
    fn focus_line(&mut self, stopped: Option<usize>, out: &mut dyn FnMut(&[u8])) {
        begin_line(&mut self.vms, &mut self.term, out);
        out(b"bulkhead: console input to ");
        out(match self.vms.get(self.focus) {
            Some(focus) if focus.alive => focus.name.as_bytes(),
            _ => b"nobody",
        });
        if let Some(vm) = stopped {
            out(b" (");
            out(self.vms[vm].name.as_bytes());
            out(b" stopped)");
        }
        out(CRLF);
    }

    fn begin_hyp_line(&mut self, out: &mut dyn FnMut(&[u8])) {
        begin_line(&mut self.vms, &mut self.term, out);
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
        let Self { vms, term, .. } = self;
        let continuing = term.screen == Screen::After(vm);
        if !continuing && vms[vm].len == 0 {
            match end {
                // Nothing new to show.
                End::Partial | End::Full | End::Stop => return,
                // The line was already ended on screen; its own end would be an empty line.
                End::Line if vms[vm].broken => {
                    vms[vm].broken = false;
                    return;
                }
                End::Line => {}
            }
        }
        if !continuing {
            begin_line(vms, term, out);
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

/// Ends the screen line a VM left unfinished and any escape sequence it left open, so that
/// whatever comes next starts a line and shows as written.
fn begin_line(vms: &mut [VmConsole], term: &mut Term, out: &mut dyn FnMut(&[u8])) {
    if let Screen::After(vm) = term.screen {
        term.mux(CRLF, out);
        term.screen = Screen::LineStart;
        vms[vm].broken = true;
    }
    term.mux(&[], out);
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
