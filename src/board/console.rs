//! The hypervisor console: the physical UART `/chosen/stdout-path` names (a PL011, or the
//! Raspberry Pi's BCM2835 mini UART) behind a lock, `print!`/`println!`, and the `log`
//! backend. Hypervisor lines start with `bulkhead:`.

use crate::sync::SpinLock;
use core::fmt::Write;

use super::mini_uart::MiniUartMmio;
use super::pl011::Pl011;
use crate::drivers::mini_uart::MiniUart;
use crate::dtb::{ConsoleUart, UartKind};

/// The console's UART, whichever kind the DTB names.
enum Uart {
    Pl011(Pl011),
    Mini(MiniUart<MiniUartMmio>),
}

fn relax() {
    crate::arch::cpu::yield_hint();
}

impl Uart {
    fn putc(&self, byte: u8) {
        match self {
            Self::Pl011(u) => u.putc(byte),
            Self::Mini(u) => u.putc(byte, &relax),
        }
    }

    fn getc(&self) -> Option<u8> {
        match self {
            Self::Pl011(u) => u.getc(),
            Self::Mini(u) => u.getc(),
        }
    }

    fn has_input(&self) -> bool {
        match self {
            Self::Pl011(u) => u.has_input(),
            Self::Mini(u) => u.has_input(),
        }
    }

    fn enable_rx_irq(&self) {
        match self {
            Self::Pl011(u) => u.enable_rx_irq(),
            Self::Mini(u) => u.enable_rx_irq(),
        }
    }

    fn disable_rx_irq(&self) {
        match self {
            Self::Pl011(u) => u.disable_rx_irq(),
            Self::Mini(u) => u.disable_rx_irq(),
        }
    }

    fn flush(&self) {
        match self {
            Self::Pl011(u) => u.flush(),
            Self::Mini(u) => u.flush(&relax),
        }
    }
}

static CONSOLE: SpinLock<Option<Uart>> = SpinLock::new(None);

/// Installs the console on the UART the DTB names.
pub fn init(uart: ConsoleUart) {
    let Ok(va) = crate::arch::mmu::map_device(uart.regs.base, uart.regs.size.max(0x40)) else {
        return;
    };
    // `map_device` just mapped (or found already mapped) the UART's registers as device
    // memory in the runtime table, which is never unmapped; the console is their only driver.
    let driver = match uart.kind {
        // SAFETY: see above.
        UartKind::Pl011 => Uart::Pl011(unsafe { Pl011::new(va) }),
        // SAFETY: see above.
        UartKind::Bcm2835Aux => Uart::Mini(unsafe { MiniUartMmio::new(va) }),
    };
    *CONSOLE.lock() = Some(driver);
}

struct Writer<'a>(&'a Uart);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.putc(b'\r');
            }
            self.0.putc(b);
        }
        Ok(())
    }
}

pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_ref() {
        let _ = Writer(uart).write_fmt(args);
    }
}

/// Writes raw guest bytes unchanged.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(uart) = CONSOLE.lock().as_ref() {
        for &b in bytes {
            uart.putc(b);
        }
    }
}

/// Writes while the lock may be held by this very CPU (panic / fatal paths).
pub fn force_write_fmt(args: core::fmt::Arguments<'_>) {
    if CONSOLE.is_locked() {
        // SAFETY: only used on the way to stopping the machine, where a CPU that died holding
        // the lock must not silence the report; output may interleave.
        unsafe { CONSOLE.force_unlock() };
    }
    write_fmt(args);
}

/// Waits (bounded) until everything written has left the UART: call before a reset or
/// power-off, which would cut the last line short.
pub fn flush() {
    // Bounded: on a fatal path another CPU may have stopped while holding the lock.
    for _ in 0..1_000_000 {
        if let Some(console) = CONSOLE.try_lock() {
            if let Some(uart) = console.as_ref() {
                uart.flush();
            }
            return;
        }
        relax();
    }
}

pub fn getc() -> Option<u8> {
    CONSOLE.lock().as_ref().and_then(|u| u.getc())
}

pub fn enable_rx_irq() {
    if let Some(uart) = CONSOLE.lock().as_ref() {
        uart.enable_rx_irq();
    }
}

/// Whether console input is waiting in the UART.
pub fn has_input() -> bool {
    CONSOLE.lock().as_ref().is_some_and(|u| u.has_input())
}

/// Masks console input interrupts (flow control while the guest's FIFO is full).
pub fn disable_rx_irq() {
    if let Some(uart) = CONSOLE.lock().as_ref() {
        uart.disable_rx_irq();
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::board::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `log` backend: `bulkhead: <level>: message`.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                log::Level::Info => "",
                log::Level::Debug => "debug: ",
                log::Level::Trace => "trace: ",
            };
            let routed = LINE_ROUTE
                .get()
                .is_some_and(|route| route(format_args!("bulkhead: {level}{}", record.args())));
            if !routed {
                write_fmt(format_args!("bulkhead: {level}{}\n", record.args()));
            }
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Where log lines go once guests share the console (`hyp::console`, which keeps them from
/// landing inside a guest's line): the route takes the line without its end and returns false
/// if it could not take it (the line then goes straight to the UART).
type LineRoute = fn(core::fmt::Arguments<'_>) -> bool;
static LINE_ROUTE: spin::Once<LineRoute> = spin::Once::new();

/// Sends every later log line through `route`.
pub fn route_log_lines(route: LineRoute) {
    LINE_ROUTE.call_once(|| route);
}

/// Starts logging at `filter` (`loglevel=`, read by `crate::bootargs`).
pub fn init_logging(filter: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}
