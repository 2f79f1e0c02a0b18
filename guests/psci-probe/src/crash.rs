//! Crashing on purpose (`probe.crash=`), for Bulkhead's crash handling:
//! - `runaway`: VBAR_EL1 = 0, where the guest has no RAM, then an UNDEFINED instruction. The
//!   CPU takes the exception to VBAR_EL1 + 0x200, whose fetch faults in stage 2; Bulkhead
//!   injects that instruction abort at ... 0x200, and so on forever: the fault loop of a guest
//!   whose vectors are not set up (a kernel image run as the wrong format, say).
//! - `pvpanic`: writes PVPANIC_PANICKED to the pvpanic device the DTB describes, as Linux's
//!   pvpanic driver does on a panic, then waits.
//!
//! Neither returns: Bulkhead stops the VM. If it did not, the probe would loop or wait forever
//! and the test that asked for the crash times out.

use core::arch::asm;

use crate::machine::Machine;
use crate::println;

pub fn run(machine: &Machine, how: &str) -> ! {
    match how {
        "runaway" => {
            println!("PROBE: crash runaway: VBAR_EL1=0, then UDF");
            // SAFETY: deliberately breaks the probe's own exception handling; nothing after
            // this instruction runs.
            unsafe {
                asm!("msr vbar_el1, xzr", "isb", "udf #0", options(noreturn));
            }
        }
        "pvpanic" => match machine.pvpanic {
            Some(register) => {
                println!("PROBE: crash pvpanic at {register:#x}");
                // SAFETY: the pvpanic register the DTB names, a one-byte device register.
                unsafe { (register as *mut u8).write_volatile(1) };
                println!("PROBE: pvpanic write returned");
            }
            None => println!("PROBE: FAIL crash pvpanic: no qemu,pvpanic-mmio node"),
        },
        other => println!("PROBE: FAIL unknown probe.crash={other}"),
    }
    loop {
        // SAFETY: waits for an interrupt; DAIF is masked, so none is taken.
        unsafe { asm!("wfi") };
    }
}
