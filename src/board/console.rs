//! The hypervisor console: the physical PL011 behind a lock, `print!`/`println!`, and the `log`
//! backend. Hypervisor lines start with `bulkhead:`.

use crate::sync::SpinLock as Mutex;
use core::fmt::Write;

use super::pl011::Pl011;

static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);

/// Installs the console on the PL011 at physical address `pa` (the one the DTB names).
pub fn init(pa: u64) {
    let Ok(va) = crate::arch::mmu::map_device(pa, 0x1000) else {
        return;
    };
    // SAFETY: `map_device` just mapped (or found already mapped) the UART page as device
    // memory in the runtime table, which is never unmapped; the console is its only driver.
    *CONSOLE.lock() = Some(unsafe { Pl011::new(va) });
}

struct Writer<'a>(&'a Pl011);

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
            write_fmt(format_args!("bulkhead: {level}{}\n", record.args()));
        }
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Starts logging at the level given by `loglevel=` (error|warn|info|debug|trace or 0-8).
pub fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some("error") | Some("0") | Some("1") | Some("2") | Some("3") => log::LevelFilter::Error,
        Some("warn") | Some("4") => log::LevelFilter::Warn,
        Some("debug") | Some("7") => log::LevelFilter::Debug,
        Some("trace") | Some("8") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    };
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(filter);
}
