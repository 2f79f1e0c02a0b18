//! The guest's device tree, written with `vm-fdt`.
//!
//! It describes the `virt`-like machine of [`crate::guest_layout`] the way QEMU `virt` does
//! (`hw/arm/virt.c`), because that is the machine Linux is known to boot on: memory, vCPUs with
//! PSCI over HVC, the GIC (v2 or v3), the architected timer, a PL011 with its 24 MHz `apb-pclk`
//! clock (Linux's amba-pl011 driver refuses to probe without clocks), `/chosen` and `/aliases`,
//! and a pvpanic device (`qemu,pvpanic-mmio`) through which a guest reports its own crash.
//! Nothing for MSI (no ITS, no v2m) and no virtio: Bulkhead's guests don't have them.

use crate::guest_layout::{
    GICC_BASE, GICC_SIZE, GICD_BASE, GICD_SIZE_V2, GICD_SIZE_V3, GICR_BASE, GICR_STRIDE,
    GUEST_RAM_BASE, GicVersion, MAX_VCPUS, PL011_BASE, PL011_CLOCK_HZ, PL011_SIZE, PL011_SPI,
    PVPANIC_BASE, TIMER_PPI_HYP, TIMER_PPI_NONSECURE_PHYS, TIMER_PPI_SECURE_PHYS, TIMER_PPI_VIRT,
    vcpu_mpidr,
};
use crate::loader::GUEST_DTB_MAX_SIZE;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;
use vm_fdt::FdtWriter;

/// Phandle of the interrupt controller.
const GIC_PHANDLE: u32 = 1;
/// Phandle of the PL011's fixed 24 MHz clock.
const CLOCK_PHANDLE: u32 = 2;

/// GIC DT interrupt specifier: first cell.
const GIC_FDT_IRQ_TYPE_SPI: u32 = 0;
const GIC_FDT_IRQ_TYPE_PPI: u32 = 1;
/// Level-high trigger (third cell).
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// Path of the console node, used by `stdout-path` and `serial0`.
const UART_PATH: &str = "/pl011@9000000";

/// What the guest DTB describes.
#[derive(Clone, Debug)]
pub struct GuestDtbConfig<'a> {
    /// Number of vCPUs (1..=MAX_VCPUS).
    pub vcpu_count: usize,
    /// Bytes of RAM at `GUEST_RAM_BASE`.
    pub ram_size: u64,
    /// GIC kind the guest sees.
    pub gic: GicVersion,
    /// Kernel command line (`/chosen/bootargs`).
    pub bootargs: &'a str,
    /// IPA range of the initrd, if any.
    pub initrd: Option<Range<u64>>,
    /// Static shared memory regions, described as Xen describes them to a domU.
    pub shared: &'a [SharedMemNode<'a>],
    /// Doorbells this VM may ring; index = the number it rings.
    pub doorbells_out: &'a [DoorbellNode<'a>],
    /// Doorbells other VMs ring into this one (`spi` is the SPI it arrives on).
    pub doorbells_in: &'a [DoorbellNode<'a>],
    /// Fresh random bytes for `/chosen/rng-seed` and `kaslr-seed` (Linux's boot protocol:
    /// its RNG is ready at once, KASLR has a seed), if the machine has entropy.
    pub seeds: Option<&'a GuestSeeds>,
}

/// What a guest gets to seed its random number generator and KASLR with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSeeds {
    pub rng_seed: [u8; 64],
    pub kaslr_seed: u64,
}

/// One static shared memory region in the guest's IPA space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedMemNode<'a> {
    /// The region's `xen,shm-id`.
    pub id: &'a str,
    pub ipa: u64,
    pub size: u64,
}

/// One doorbell: the VM at the other end and the SPI it raises (in the receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorbellNode<'a> {
    pub peer: &'a str,
    pub spi: u32,
}

/// Why the guest DTB could not be written.
#[derive(Debug, Eq, PartialEq)]
pub enum GuestDtbError {
    /// vCPU count is 0 or above what the GIC (and `MAX_VCPUS`) allows.
    BadVcpuCount(usize),
    /// `vm-fdt` refused a node or property (e.g. a NUL byte in `bootargs`).
    Writer(vm_fdt::Error),
    /// The DTB is bigger than the slot the loader reserved.
    TooLarge(usize),
}

impl fmt::Display for GuestDtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVcpuCount(count) => write!(f, "unsupported vCPU count {count}"),
            Self::Writer(err) => write!(f, "guest DTB writer: {err}"),
            Self::TooLarge(size) => {
                write!(
                    f,
                    "guest DTB is {}, the slot holds {}",
                    crate::units::ApproxSize(*size as u64),
                    crate::units::ByteSize(GUEST_DTB_MAX_SIZE)
                )
            }
        }
    }
}

impl From<vm_fdt::Error> for GuestDtbError {
    fn from(err: vm_fdt::Error) -> Self {
        Self::Writer(err)
    }
}

type Result<T> = core::result::Result<T, GuestDtbError>;

/// Writes the guest DTB blob for `config`.
pub fn build_guest_dtb(config: &GuestDtbConfig<'_>) -> Result<Vec<u8>> {
    if config.vcpu_count == 0 || config.vcpu_count > MAX_VCPUS {
        return Err(GuestDtbError::BadVcpuCount(config.vcpu_count));
    }
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "Bulkhead virt guest")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    write_chosen(&mut fdt, config)?;
    write_aliases(&mut fdt)?;
    write_memory(&mut fdt, config.ram_size)?;
    write_cpus(&mut fdt, config.vcpu_count)?;
    write_psci(&mut fdt)?;
    write_gic(&mut fdt, config.gic, config.vcpu_count)?;
    write_timer(&mut fdt, config.gic, config.vcpu_count)?;
    write_uart(&mut fdt)?;
    write_pvpanic(&mut fdt)?;
    write_shared_memory(&mut fdt, config.shared)?;
    write_doorbells(&mut fdt, config.doorbells_out, config.doorbells_in)?;

    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > GUEST_DTB_MAX_SIZE {
        return Err(GuestDtbError::TooLarge(blob.len()));
    }
    Ok(blob)
}

/// Static shared memory as Xen shows it to a domU (Xen's booting.txt, "Static Shared Memory"):
/// `/reserved-memory/xen-shmem@IPA { compatible = "xen,shared-memory-v1"; reg; xen,id; }`.
/// The region lies outside `/memory`, so Linux keeps its hands off and `/dev/mem` or a
/// `memremap` driver can map it.
fn write_shared_memory(fdt: &mut FdtWriter, shared: &[SharedMemNode<'_>]) -> Result<()> {
    if shared.is_empty() {
        return Ok(());
    }
    let reserved = fdt.begin_node("reserved-memory")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    for region in shared {
        let node = fdt.begin_node(&format!("xen-shmem@{:x}", region.ipa))?;
        fdt.property_string("compatible", "xen,shared-memory-v1")?;
        fdt.property_array_u64("reg", &[region.ipa, region.size])?;
        fdt.property_string("xen,id", region.id)?;
        fdt.end_node(node)?;
    }
    fdt.end_node(reserved)?;
    Ok(())
}

/// Bulkhead's doorbells: `/bulkhead-doorbells/doorbell@K` for each doorbell this VM may ring
/// (K is the number it passes to the ring call) and `/bulkhead-doorbells/incoming@1XXXX` for
/// each one that rings it (XXXX: the SPI in hex), with the interrupt (edge rising) it arrives on.
fn write_doorbells(
    fdt: &mut FdtWriter,
    out: &[DoorbellNode<'_>],
    incoming: &[DoorbellNode<'_>],
) -> Result<()> {
    if out.is_empty() && incoming.is_empty() {
        return Ok(());
    }
    let node = fdt.begin_node("bulkhead-doorbells")?;
    fdt.property_string("compatible", "bulkhead,doorbells")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for (number, bell) in out.iter().enumerate() {
        let child = fdt.begin_node(&format!("doorbell@{number:x}"))?;
        fdt.property_string("compatible", "bulkhead,doorbell")?;
        fdt.property_u32("reg", number as u32)?;
        fdt.property_string("peer", bell.peer)?;
        fdt.end_node(child)?;
    }
    for bell in incoming {
        // Unit addresses 0x1_0000 + SPI keep them apart from the outgoing doorbells' numbers.
        let reg = 0x1_0000 + bell.spi;
        let child = fdt.begin_node(&format!("incoming@{reg:x}"))?;
        fdt.property_string("compatible", "bulkhead,doorbell-receiver")?;
        fdt.property_u32("reg", reg)?;
        // GIC binding: SPI, its number, edge rising.
        fdt.property_array_u32("interrupts", &[0, bell.spi, 1])?;
        fdt.property_string("peer", bell.peer)?;
        fdt.end_node(child)?;
    }
    fdt.end_node(node)?;
    Ok(())
}

fn write_chosen(fdt: &mut FdtWriter, config: &GuestDtbConfig<'_>) -> Result<()> {
    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", config.bootargs)?;
    fdt.property_string("stdout-path", UART_PATH)?;
    if let Some(initrd) = &config.initrd {
        fdt.property_u64("linux,initrd-start", initrd.start)?;
        fdt.property_u64("linux,initrd-end", initrd.end)?;
    }
    if let Some(seeds) = config.seeds {
        fdt.property("rng-seed", &seeds.rng_seed)?;
        fdt.property_u64("kaslr-seed", seeds.kaslr_seed)?;
    }
    fdt.end_node(chosen)?;
    Ok(())
}

fn write_aliases(fdt: &mut FdtWriter) -> Result<()> {
    let aliases = fdt.begin_node("aliases")?;
    fdt.property_string("serial0", UART_PATH)?;
    fdt.end_node(aliases)?;
    Ok(())
}

fn write_memory(fdt: &mut FdtWriter, ram_size: u64) -> Result<()> {
    let memory = fdt.begin_node(&format!("memory@{GUEST_RAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[GUEST_RAM_BASE, ram_size])?;
    fdt.end_node(memory)?;
    Ok(())
}

fn write_cpus(fdt: &mut FdtWriter, vcpu_count: usize) -> Result<()> {
    let cpus = fdt.begin_node("cpus")?;
    // reg holds MPIDR affinity; our MPIDRs fit Aff0/Aff1, so one cell is enough.
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for index in 0..vcpu_count {
        let mpidr = vcpu_mpidr(index);
        let cpu = fdt.begin_node(&format!("cpu@{mpidr:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u32("reg", mpidr as u32)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;
    Ok(())
}

fn write_psci(fdt: &mut FdtWriter) -> Result<()> {
    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list(
        "compatible",
        vec![String::from("arm,psci-1.0"), String::from("arm,psci-0.2")],
    )?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;
    Ok(())
}

fn write_gic(fdt: &mut FdtWriter, gic: GicVersion, vcpu_count: usize) -> Result<()> {
    let node = fdt.begin_node(&format!("intc@{GICD_BASE:x}"))?;
    match gic {
        GicVersion::V3 => {
            fdt.property_string("compatible", "arm,gic-v3")?;
            fdt.property_u32("#redistributor-regions", 1)?;
            fdt.property_array_u64(
                "reg",
                &[
                    GICD_BASE,
                    GICD_SIZE_V3,
                    GICR_BASE,
                    GICR_STRIDE * vcpu_count as u64,
                ],
            )?;
        }
        GicVersion::V2 => {
            fdt.property_string("compatible", "arm,cortex-a15-gic")?;
            fdt.property_array_u64("reg", &[GICD_BASE, GICD_SIZE_V2, GICC_BASE, GICC_SIZE])?;
        }
    }
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_phandle(GIC_PHANDLE)?;
    fdt.end_node(node)?;
    Ok(())
}

fn write_timer(fdt: &mut FdtWriter, gic: GicVersion, vcpu_count: usize) -> Result<()> {
    // GICv2 PPI specifiers carry a CPU mask in bits [15:8] of the flags cell (QEMU does this).
    let flags = match gic {
        GicVersion::V2 => IRQ_TYPE_LEVEL_HIGH | (((1u32 << vcpu_count) - 1) << 8),
        GicVersion::V3 => IRQ_TYPE_LEVEL_HIGH,
    };
    let timer = fdt.begin_node("timer")?;
    fdt.property_string_list(
        "compatible",
        vec![
            String::from("arm,armv8-timer"),
            String::from("arm,armv7-timer"),
        ],
    )?;
    let mut interrupts = Vec::new();
    for ppi in [
        TIMER_PPI_SECURE_PHYS,
        TIMER_PPI_NONSECURE_PHYS,
        TIMER_PPI_VIRT,
        TIMER_PPI_HYP,
    ] {
        interrupts.extend_from_slice(&[GIC_FDT_IRQ_TYPE_PPI, ppi, flags]);
    }
    fdt.property_array_u32("interrupts", &interrupts)?;
    fdt.end_node(timer)?;
    Ok(())
}

fn write_uart(fdt: &mut FdtWriter) -> Result<()> {
    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", PL011_CLOCK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(CLOCK_PHANDLE)?;
    fdt.end_node(clock)?;

    let uart = fdt.begin_node(&UART_PATH[1..])?;
    fdt.property_string_list(
        "compatible",
        vec![String::from("arm,pl011"), String::from("arm,primecell")],
    )?;
    fdt.property_array_u64("reg", &[PL011_BASE, PL011_SIZE])?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_FDT_IRQ_TYPE_SPI, PL011_SPI, IRQ_TYPE_LEVEL_HIGH],
    )?;
    fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
    fdt.property_string_list(
        "clock-names",
        vec![String::from("uartclk"), String::from("apb_pclk")],
    )?;
    fdt.end_node(uart)?;
    Ok(())
}

/// The pvpanic device as Linux's `pvpanic-mmio` driver matches it; `reg` is the size of QEMU's
/// pvpanic port range.
fn write_pvpanic(fdt: &mut FdtWriter) -> Result<()> {
    let node = fdt.begin_node(&format!("pvpanic@{PVPANIC_BASE:x}"))?;
    fdt.property_string("compatible", "qemu,pvpanic-mmio")?;
    fdt.property_array_u64("reg", &[PVPANIC_BASE, 2])?;
    fdt.end_node(node)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdt::Fdt;

    #[test]
    fn pvpanic_node_for_linux_pvpanic_mmio() {
        let blob = build_guest_dtb(&config(GicVersion::V2, 2)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let node = fdt.find_node("/pvpanic@9060000").unwrap();
        assert_eq!(
            node.compatible().unwrap().all().collect::<Vec<_>>(),
            ["qemu,pvpanic-mmio"]
        );
        let reg = node.reg().unwrap().next().unwrap();
        assert_eq!(
            (reg.starting_address as u64, reg.size),
            (0x0906_0000, Some(2))
        );
        assert!(node.property("interrupts").is_none());
    }

    fn config(gic: GicVersion, vcpu_count: usize) -> GuestDtbConfig<'static> {
        GuestDtbConfig {
            vcpu_count,
            ram_size: 512 << 20,
            gic,
            bootargs: "console=ttyAMA0 earlycon",
            initrd: Some(0x4800_0000..0x4850_0000),
            shared: &[],
            doorbells_out: &[],
            doorbells_in: &[],
            seeds: None,
        }
    }

    fn u32_cells(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn u64_prop(node: fdt::node::FdtNode<'_, '_>, name: &str) -> u64 {
        let value = node.property(name).unwrap().value;
        u64::from_be_bytes(value.try_into().unwrap())
    }

    fn strings(bytes: &[u8]) -> Vec<&str> {
        core::str::from_utf8(bytes)
            .unwrap()
            .split_terminator('\0')
            .collect()
    }

    #[test]
    fn memory_chosen_and_aliases() {
        let blob = build_guest_dtb(&config(GicVersion::V3, 4)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let region = fdt.memory().regions().next().unwrap();
        assert_eq!(region.starting_address as u64, 0x4000_0000);
        assert_eq!(region.size, Some(512 << 20));
        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(chosen.stdout().unwrap().name, "pl011@9000000");
        let chosen_node = fdt.find_node("/chosen").unwrap();
        assert_eq!(u64_prop(chosen_node, "linux,initrd-start"), 0x4800_0000);
        assert_eq!(u64_prop(chosen_node, "linux,initrd-end"), 0x4850_0000);
        assert_eq!(
            fdt.aliases().unwrap().resolve("serial0"),
            Some("/pl011@9000000")
        );
    }

    #[test]
    fn no_initrd_means_no_initrd_properties() {
        let blob = build_guest_dtb(&GuestDtbConfig {
            initrd: None,
            ..config(GicVersion::V3, 1)
        })
        .unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(
            fdt.find_node("/chosen")
                .unwrap()
                .property("linux,initrd-start")
                .is_none()
        );
    }

    #[test]
    fn cpus_use_psci_and_mpidr_reg() {
        let blob = build_guest_dtb(&config(GicVersion::V3, 4)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let cpus: Vec<_> = fdt.cpus().collect();
        assert_eq!(cpus.len(), 4);
        for (index, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu.ids().first(), index);
            assert_eq!(
                cpu.property("enable-method").unwrap().as_str(),
                Some("psci")
            );
            assert_eq!(
                cpu.property("compatible").unwrap().as_str(),
                Some("arm,armv8")
            );
            assert_eq!(cpu.property("device_type").unwrap().as_str(), Some("cpu"));
        }
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(
            psci.compatible().unwrap().all().collect::<Vec<_>>(),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
    }

    #[test]
    fn gic_v3_node_matches_virt() {
        let blob = build_guest_dtb(&config(GicVersion::V3, 4)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<_> = gic
            .reg()
            .unwrap()
            .map(|r| (r.starting_address as u64, r.size))
            .collect();
        assert_eq!(
            regs,
            [
                (0x0800_0000, Some(0x1_0000)),
                (0x080a_0000, Some(4 * 0x2_0000))
            ]
        );
        assert_eq!(
            gic.property("#redistributor-regions").unwrap().as_usize(),
            Some(1)
        );
        assert_eq!(gic.interrupt_cells(), Some(3));
        assert!(gic.property("interrupt-controller").is_some());
        // The root's interrupt-parent names the GIC.
        assert_eq!(
            fdt.root().property("interrupt-parent").unwrap().as_usize(),
            Some(1)
        );
        assert_eq!(gic.property("phandle").unwrap().as_usize(), Some(1));
    }

    #[test]
    fn gic_v2_node_matches_virt() {
        let blob = build_guest_dtb(&config(GicVersion::V2, 2)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        assert!(fdt.find_compatible(&["arm,gic-v3"]).is_none());
        let gic = fdt.find_compatible(&["arm,cortex-a15-gic"]).unwrap();
        let regs: Vec<_> = gic
            .reg()
            .unwrap()
            .map(|r| (r.starting_address as u64, r.size))
            .collect();
        assert_eq!(
            regs,
            [(0x0800_0000, Some(0x1000)), (0x0801_0000, Some(0x2000))]
        );
        // GICv2 PPI flags carry the CPU mask: 2 vCPUs -> 0b11 << 8.
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        let cells = u32_cells(timer.property("interrupts").unwrap().value);
        assert_eq!(cells[2], 0x304);
    }

    #[test]
    fn timer_lists_virt_ppis() {
        let blob = build_guest_dtb(&config(GicVersion::V3, 4)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let timer = fdt.find_node("/timer").unwrap();
        assert_eq!(
            strings(timer.property("compatible").unwrap().value),
            ["arm,armv8-timer", "arm,armv7-timer"]
        );
        let cells = u32_cells(timer.property("interrupts").unwrap().value);
        assert_eq!(cells, [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]);
    }

    #[test]
    fn pl011_has_irq_and_clocks() {
        let blob = build_guest_dtb(&config(GicVersion::V3, 1)).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let uart = fdt.find_node("/pl011@9000000").unwrap();
        assert_eq!(
            uart.compatible().unwrap().all().collect::<Vec<_>>(),
            ["arm,pl011", "arm,primecell"]
        );
        let reg = uart.reg().unwrap().next().unwrap();
        assert_eq!(
            (reg.starting_address as u64, reg.size),
            (0x0900_0000, Some(0x1000))
        );
        assert_eq!(
            u32_cells(uart.property("interrupts").unwrap().value),
            [0, 1, 4]
        );
        assert_eq!(u32_cells(uart.property("clocks").unwrap().value), [2, 2]);
        assert_eq!(
            strings(uart.property("clock-names").unwrap().value),
            ["uartclk", "apb_pclk"]
        );
        let clock = fdt.find_phandle(2).unwrap();
        assert_eq!(clock.name, "apb-pclk");
        assert_eq!(
            clock.property("clock-frequency").unwrap().as_usize(),
            Some(24_000_000)
        );
        assert_eq!(clock.compatible().unwrap().first(), "fixed-clock");
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            build_guest_dtb(&config(GicVersion::V3, 0)),
            Err(GuestDtbError::BadVcpuCount(0))
        );
        assert_eq!(
            build_guest_dtb(&config(GicVersion::V2, 9)),
            Err(GuestDtbError::BadVcpuCount(9))
        );
        let nul = GuestDtbConfig {
            bootargs: "a\0b",
            ..config(GicVersion::V3, 1)
        };
        assert!(matches!(
            build_guest_dtb(&nul),
            Err(GuestDtbError::Writer(_))
        ));
        let huge = "x".repeat(GUEST_DTB_MAX_SIZE as usize);
        let huge = GuestDtbConfig {
            bootargs: &huge,
            ..config(GicVersion::V3, 1)
        };
        assert!(matches!(
            build_guest_dtb(&huge),
            Err(GuestDtbError::TooLarge(_))
        ));
    }

    #[test]
    fn shared_memory_and_doorbells_are_described_as_xen_and_bulkhead_say() {
        let shared = [SharedMemNode {
            id: "pingpong",
            ipa: 0x7fe0_0000,
            size: 0x20_0000,
        }];
        let out = [DoorbellNode {
            peer: "pong",
            spi: 5,
        }];
        let incoming = [DoorbellNode {
            peer: "pong",
            spi: 6,
        }];
        let blob = build_guest_dtb(&GuestDtbConfig {
            shared: &shared,
            doorbells_out: &out,
            doorbells_in: &incoming,
            ..config(GicVersion::V3, 1)
        })
        .unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let shm = fdt
            .find_node("/reserved-memory/xen-shmem@7fe00000")
            .unwrap();
        assert_eq!(
            shm.property("compatible").unwrap().as_str(),
            Some("xen,shared-memory-v1")
        );
        assert_eq!(shm.property("xen,id").unwrap().as_str(), Some("pingpong"));
        let reg: Vec<u8> = shm.property("reg").unwrap().value.to_vec();
        assert_eq!(
            u32_cells(&reg),
            [0, 0x7fe0_0000, 0, 0x20_0000],
            "IPA and size in the root's 2+2 cells"
        );
        let reserved = fdt.find_node("/reserved-memory").unwrap();
        assert!(reserved.property("ranges").is_some());
        // Not RAM: /memory still covers only the guest's RAM.
        let ring = fdt.find_node("/bulkhead-doorbells/doorbell@0").unwrap();
        assert_eq!(ring.property("peer").unwrap().as_str(), Some("pong"));
        assert_eq!(ring.property("reg").unwrap().as_usize(), Some(0));
        let receiver = fdt.find_node("/bulkhead-doorbells/incoming@10006").unwrap();
        assert_eq!(
            u32_cells(receiver.property("interrupts").unwrap().value),
            [0, 6, 1]
        );
        // Without any, no nodes at all.
        let plain = build_guest_dtb(&config(GicVersion::V3, 1)).unwrap();
        let fdt = Fdt::new(&plain).unwrap();
        assert!(fdt.find_node("/reserved-memory").is_none());
        assert!(fdt.find_node("/bulkhead-doorbells").is_none());
    }

    #[test]
    fn seeds_go_to_chosen() {
        let seeds = GuestSeeds {
            rng_seed: [0xa5; 64],
            kaslr_seed: 0x1234_5678_9abc_def0,
        };
        let blob = build_guest_dtb(&GuestDtbConfig {
            seeds: Some(&seeds),
            ..config(GicVersion::V3, 1)
        })
        .unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property("rng-seed").unwrap().value, &[0xa5; 64]);
        assert_eq!(
            chosen.property("kaslr-seed").unwrap().as_usize(),
            Some(0x1234_5678_9abc_def0)
        );
        let plain = build_guest_dtb(&config(GicVersion::V3, 1)).unwrap();
        let fdt = Fdt::new(&plain).unwrap();
        assert!(
            fdt.find_node("/chosen")
                .unwrap()
                .property("rng-seed")
                .is_none()
        );
    }
}
