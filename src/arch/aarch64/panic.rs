//! A Rust panic in the hypervisor: print message and location, stop the machine.

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::board::console::force_write_fmt(format_args!(
        "bulkhead: PANIC on cpu {}: {info}\n",
        super::percpu::current()
    ));
    crate::board::power::power_off()
}
