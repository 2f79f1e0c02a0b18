//! Reading the host device tree: everything Bulkhead learns about the machine (RAM, CPUs, UART,
//! GIC, PSCI, boot arguments, guest modules) comes from here, not from constants.
//!
//! Only panic-free parts of the `fdt` crate are used (`find_node`, raw properties, children):
//! its convenience helpers (`memory()`, `cpus()`, `chosen()`, `bootargs()`, `cell_sizes()`)
//! panic on missing or malformed nodes, and a bad DTB must give a clear error instead.
//! Nothing here allocates, so it also runs before the heap exists.

use fdt::Fdt;
use fdt::node::FdtNode;

/// What is wrong with a device tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtbError {
    /// The blob is not a valid flattened device tree (bad magic, truncated, bad offsets).
    Invalid,
    /// A node Bulkhead needs is absent.
    MissingNode(&'static str),
    /// A node is present but a property it needs is absent or malformed.
    BadProperty {
        node: &'static str,
        property: &'static str,
    },
    /// No interrupt controller Bulkhead supports.
    NoSupportedGic,
}

impl core::fmt::Display for DtbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Invalid => write!(f, "not a valid device tree blob"),
            Self::MissingNode(n) => write!(f, "device tree has no {n} node"),
            Self::BadProperty { node, property } => {
                write!(
                    f,
                    "device tree node {node}: missing or malformed `{property}`"
                )
            }
            Self::NoSupportedGic => {
                write!(f, "device tree has no GICv2/GICv3 interrupt controller")
            }
        }
    }
}

/// Reads the `totalsize` field of a DTB header; `None` if the magic is wrong.
pub fn header_total_size(header: &[u8]) -> Option<usize> {
    let word = |i: usize| {
        header
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    (word(0)? == 0xd00d_feed).then_some(word(4)? as usize)
}

/// Parses a blob, turning every failure into `DtbError::Invalid`. The blob must pass
/// [`check_structure`] (so NOPs must have been stripped first, see [`strip_nops`]).
pub fn parse(blob: &[u8]) -> Result<Fdt<'_>, DtbError> {
    check_structure(blob)?;
    Fdt::new(blob).map_err(|_| DtbError::Invalid)
}

/// Nesting deeper than this is refused: the `fdt` crate recurses per level and keeps a 64-entry
/// parent stack; real trees are under 10 deep.
const MAX_DEPTH: usize = 32;

/// Checks everything the `fdt` crate takes for granted, so that no later use of it can panic
/// or recurse forever on a malformed blob. The crate slices the blob with the header's
/// offsets, reads property values and names (string offsets, NUL, UTF-8) and node names
/// without bounds checks, asserts that every node is `BEGIN_NODE name props* children*
/// END_NODE`, and looks up a path that is not found as an `/aliases` entry, again and again.
/// Checked here, per the devicetree specification (v0.4, chapter 5):
/// - the header's blocks lie inside `totalsize`, the reservation map ends with its zero entry;
/// - the structure block is one root node followed by `FDT_END`, properties before child
///   nodes, at most [`MAX_DEPTH`] deep, no `FDT_NOP` (strip them with [`strip_nops`]);
/// - node names and property names (NUL-terminated inside their block) are UTF-8, and every
///   property value lies inside the structure block;
/// - in `/aliases`, names do not start with `/` and string values are absolute paths, so an
///   alias lookup ends after one step.
///
/// Only aligned 32-bit word reads and byte reads: this runs with the MMU off too.
pub fn check_structure(blob: &[u8]) -> Result<(), DtbError> {
    const BEGIN_NODE: u32 = 1;
    const END_NODE: u32 = 2;
    const PROP: u32 = 3;
    const END: u32 = 9;
    const HEADER_SIZE: usize = 40;
    let bad = DtbError::Invalid;
    let word = |i: usize| -> Option<u32> {
        blob.get(i..i.checked_add(4)?)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    // A block [offset, offset + size) inside the first `total` bytes.
    let block = |offset: usize, size: usize, total: usize| -> Option<(usize, usize)> {
        let end = offset.checked_add(size)?;
        (offset >= HEADER_SIZE && end <= total).then_some((offset, end))
    };
    // A NUL-terminated UTF-8 string starting at `at`, ending before `end`.
    let c_str = |at: usize, end: usize| -> Option<&str> {
        let bytes = blob.get(at..end)?;
        let nul = bytes.iter().position(|&b| b == 0)?;
        core::str::from_utf8(&bytes[..nul]).ok()
    };

    let total = header_total_size(blob).ok_or(bad)?;
    if total > blob.len() || total < HEADER_SIZE {
        return Err(bad);
    }
    let header = |i: usize| word(i).map(|w| w as usize).ok_or(bad);
    let (off_struct, off_strings, off_rsvmap) = (header(8)?, header(12)?, header(16)?);
    let (size_strings, size_struct) = (header(32)?, header(36)?);
    let (start, end) = block(off_struct, size_struct, total).ok_or(bad)?;
    let (strings, strings_end) = block(off_strings, size_strings, total).ok_or(bad)?;
    if !off_struct.is_multiple_of(4) || !off_rsvmap.is_multiple_of(8) || off_rsvmap < HEADER_SIZE {
        return Err(bad);
    }
    // Reservation entries are (address, size) pairs of 64-bit values up to an all-zero one.
    let mut entry = off_rsvmap;
    loop {
        if entry.checked_add(16).is_none_or(|e| e > total) {
            return Err(bad);
        }
        if [0, 4, 8, 12].iter().all(|i| word(entry + i) == Some(0)) {
            break;
        }
        entry += 16;
    }

    let token = |at: usize| if at + 4 <= end { word(at) } else { None };
    let (mut at, mut depth) = (start, 0usize);
    let mut root_done = false;
    // Whether the current node has had a child: no property may follow.
    let mut after_child = false;
    // Whether we are among the properties of an `/aliases` node.
    let mut in_aliases = false;
    loop {
        match token(at).ok_or(bad)? {
            BEGIN_NODE => {
                if root_done || depth == MAX_DEPTH {
                    return Err(bad);
                }
                let name = c_str(at + 4, end).ok_or(bad)?;
                // `find_node("/aliases")` matches `aliases` and `aliases@...` under the root.
                in_aliases = depth == 1 && name.split('@').next() == Some("aliases");
                depth += 1;
                after_child = false;
                at += 4 + (name.len() + 1).next_multiple_of(4);
            }
            PROP => {
                if depth == 0 || after_child {
                    return Err(bad);
                }
                let len = token(at + 4).ok_or(bad)? as usize;
                let name_off = token(at + 8).ok_or(bad)? as usize;
                let value_at = at + 12;
                let value_end = value_at.checked_add(len).filter(|&e| e <= end).ok_or(bad)?;
                let name = c_str(strings.checked_add(name_off).ok_or(bad)?, strings_end);
                let name = name.ok_or(bad)?;
                if in_aliases {
                    let value = core::str::from_utf8(&blob[value_at..value_end])
                        .map(|s| s.trim_end_matches('\0'));
                    if name.starts_with('/') || value.is_ok_and(|v| !v.starts_with('/')) {
                        return Err(bad);
                    }
                }
                at = value_at + len.next_multiple_of(4);
            }
            END_NODE => {
                depth = depth.checked_sub(1).ok_or(bad)?;
                root_done = depth == 0;
                after_child = true;
                in_aliases = false;
                at += 4;
            }
            END if root_done => return Ok(()),
            _ => return Err(bad),
        }
    }
}

/// Removes `FDT_NOP` tokens from the structure block in place (shrinking `size_dt_struct`).
///
/// Why: QEMU deletes nodes from the DTBs it patches (raspi4b) by overwriting them with NOPs,
/// and the `fdt` crate's node skipping asserts on NOPs between properties. Compacting first
/// keeps every later parse panic-free. Only aligned 32-bit accesses: this runs with the MMU off.
/// Returns the number of NOP words removed.
pub fn strip_nops(blob: &mut [u8]) -> Result<usize, DtbError> {
    const BEGIN_NODE: u32 = 1;
    const END_NODE: u32 = 2;
    const PROP: u32 = 3;
    const NOP: u32 = 4;
    const END: u32 = 9;
    let word = |b: &[u8], i: usize| -> Option<u32> {
        b.get(i..i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let total = header_total_size(blob).ok_or(DtbError::Invalid)?;
    let off_struct = word(blob, 8).ok_or(DtbError::Invalid)? as usize;
    let size_struct = word(blob, 36).ok_or(DtbError::Invalid)? as usize;
    let end = off_struct
        .checked_add(size_struct)
        .ok_or(DtbError::Invalid)?;
    if total > blob.len()
        || end > total
        || !off_struct.is_multiple_of(4)
        || !size_struct.is_multiple_of(4)
    {
        return Err(DtbError::Invalid);
    }
    let (mut read, mut write, mut removed) = (off_struct, off_struct, 0);
    while read < end {
        let token = word(blob, read).ok_or(DtbError::Invalid)?;
        let len = match token {
            NOP => {
                read += 4;
                removed += 1;
                continue;
            }
            BEGIN_NODE => {
                let name = blob.get(read + 4..end).ok_or(DtbError::Invalid)?;
                let nul = name.iter().position(|&b| b == 0).ok_or(DtbError::Invalid)?;
                4 + (nul + 1).div_ceil(4) * 4
            }
            PROP => {
                let value_len = word(blob, read + 4).ok_or(DtbError::Invalid)? as usize;
                12 + value_len.div_ceil(4) * 4
            }
            END_NODE | END => 4,
            _ => return Err(DtbError::Invalid),
        };
        if read + len > end {
            return Err(DtbError::Invalid);
        }
        if write != read {
            blob.copy_within(read..read + len, write);
        }
        read += len;
        write += len;
        if token == END {
            break;
        }
    }
    let new_size = ((write - off_struct) as u32).to_be_bytes();
    blob[36..40].copy_from_slice(&new_size);
    Ok(removed)
}

/// A contiguous range of physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysRange {
    pub base: u64,
    pub size: u64,
}

impl PhysRange {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

/// A big-endian value of `cells` (1 or 2) 32-bit cells at the start of `bytes`.
pub(crate) fn be_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    if cells == 0 || cells > 2 || bytes.len() < cells * 4 {
        return None;
    }
    Some(bytes[..cells * 4].chunks_exact(4).fold(0u64, |acc, c| {
        (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }))
}

pub(crate) fn prop_u32(node: &FdtNode<'_, '_>, name: &str) -> Option<u32> {
    let v = node.property(name)?.value;
    (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// A property's value as a string, without its NUL terminator.
pub fn prop_str<'a>(node: &FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let v = node.property(name)?.value;
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    core::str::from_utf8(v.split(|&b| b == 0).next()?).ok()
}

/// Whether `compatible` of `node` lists `what`.
pub fn is_compatible(node: &FdtNode<'_, '_>, what: &str) -> bool {
    node.property("compatible")
        .map(|p| p.value.split(|&b| b == 0).any(|s| s == what.as_bytes()))
        .unwrap_or(false)
}

fn is_enabled(node: &FdtNode<'_, '_>) -> bool {
    prop_str(node, "status").is_none_or(|s| s == "okay" || s == "ok")
}

fn parent_path(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// (#address-cells, #size-cells) a node declares for its children (defaults 2, 1).
fn child_cells(fdt: &Fdt<'_>, path: &str) -> (usize, usize) {
    let node = fdt.find_node(path);
    let a = node
        .as_ref()
        .and_then(|n| prop_u32(n, "#address-cells"))
        .unwrap_or(2);
    let s = node
        .as_ref()
        .and_then(|n| prop_u32(n, "#size-cells"))
        .unwrap_or(1);
    (a as usize, s as usize)
}

/// Translates a bus address seen by children of `bus` to a CPU physical address by walking
/// `ranges` up to the root.
fn translate(fdt: &Fdt<'_>, bus: &str, mut addr: u64) -> Option<u64> {
    let mut bus = bus;
    while bus != "/" {
        let node = fdt.find_node(bus)?;
        let parent = parent_path(bus);
        if let Some(ranges) = node.property("ranges")
            && !ranges.value.is_empty()
        {
            let (child_ac, child_sc) = child_cells(fdt, bus);
            let (parent_ac, _) = child_cells(fdt, parent);
            let entry = (child_ac + parent_ac + child_sc) * 4;
            let hit = ranges.value.chunks_exact(entry).find_map(|e| {
                let child = be_cells(&e[..child_ac * 4], child_ac)?;
                let paddr = be_cells(&e[child_ac * 4..], parent_ac)?;
                let len = be_cells(&e[(child_ac + parent_ac) * 4..], child_sc)?;
                (addr >= child && addr - child < len).then(|| paddr + (addr - child))
            });
            addr = hit?;
        }
        bus = parent;
    }
    Some(addr)
}

/// The `index`-th `reg` entry of the node at `path`, translated to a CPU physical address.
pub fn reg(fdt: &Fdt<'_>, path: &str, index: usize) -> Option<PhysRange> {
    let node = fdt.find_node(path)?;
    let parent = parent_path(path);
    let (ac, sc) = child_cells(fdt, parent);
    let entry = (ac + sc) * 4;
    if entry == 0 {
        return None;
    }
    let raw = node.property("reg")?.value.chunks_exact(entry).nth(index)?;
    let bus_addr = be_cells(&raw[..ac * 4], ac)?;
    let size = if sc == 0 {
        0
    } else {
        be_cells(&raw[ac * 4..], sc)?
    };
    Some(PhysRange {
        base: translate(fdt, parent, bus_addr)?,
        size,
    })
}

/// Resolves an alias or path (options after ':' stripped) to a node path.
fn resolve_path<'a>(fdt: &Fdt<'a>, name: &'a str) -> Option<&'a str> {
    let name = name.split(':').next()?;
    if name.starts_with('/') {
        return Some(name);
    }
    let aliases = fdt.find_node("/aliases")?;
    prop_str(&aliases, name)
}

/// The UARTs Bulkhead can drive as its console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011 (`arm,pl011`): QEMU `virt`, the Raspberry Pi 4's `serial0`.
    Pl011,
    /// The BCM2835 auxiliary mini UART (`brcm,bcm2835-aux-uart`): the Raspberry Pi 4's
    /// `serial1`, which the firmware routes to GPIO 14/15 with `enable_uart=1`.
    Bcm2835Aux,
}

impl UartKind {
    fn of(node: &FdtNode<'_, '_>) -> Option<Self> {
        if is_compatible(node, "arm,pl011") {
            Some(Self::Pl011)
        } else if is_compatible(node, "brcm,bcm2835-aux-uart") {
            Some(Self::Bcm2835Aux)
        } else {
            None
        }
    }
}

/// The console UART: which driver, and where its registers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleUart {
    pub kind: UartKind,
    pub regs: PhysRange,
}

/// The console UART's node path and kind: the UART `/chosen/stdout-path` names (the Linux
/// rule, Documentation/devicetree/bindings/chosen.txt), else the one aliased `serial0`.
fn console_uart_node<'a>(fdt: &Fdt<'a>) -> Option<(&'a str, UartKind)> {
    let chosen = fdt.find_node("/chosen");
    let candidates = [
        chosen.and_then(|c| prop_str(&c, "stdout-path")),
        Some("serial0"),
    ];
    candidates.into_iter().flatten().find_map(|name| {
        let path = resolve_path(fdt, name)?;
        let node = fdt.find_node(path)?;
        let kind = UartKind::of(&node)?;
        is_enabled(&node).then_some((path, kind))
    })
}

/// The console UART.
pub fn console_uart(fdt: &Fdt<'_>) -> Option<ConsoleUart> {
    let (path, kind) = console_uart_node(fdt)?;
    Some(ConsoleUart {
        kind,
        regs: reg(fdt, path, 0)?,
    })
}

/// The console UART's interrupt (INTID). For the mini UART this is the AUX block's interrupt,
/// which it shares with the two auxiliary SPI masters.
pub fn console_uart_intid(fdt: &Fdt<'_>) -> Option<u32> {
    gic_interrupt(fdt, console_uart_node(fdt)?.0)
}

/// `/chosen/rng-seed`: random bytes the boot loader left (empty when there are none).
pub fn rng_seed<'a>(fdt: &Fdt<'a>) -> &'a [u8] {
    fdt.find_node("/chosen")
        .and_then(|c| c.property("rng-seed"))
        .map_or(&[], |p| p.value)
}

/// Where the boot loader put the initrd: `/chosen/linux,initrd-start` and `linux,initrd-end`
/// (one or two cells each; the Raspberry Pi firmware writes them for `initramfs FILE` in
/// config.txt, QEMU for `-initrd`). `None` if absent, empty or inverted.
pub fn initrd(fdt: &Fdt<'_>) -> Option<PhysRange> {
    let chosen = fdt.find_node("/chosen")?;
    let cell = |name: &str| {
        let v = chosen.property(name)?.value;
        be_cells(v, v.len() / 4)
    };
    let (start, end) = (cell("linux,initrd-start")?, cell("linux,initrd-end")?);
    (end > start).then(|| PhysRange {
        base: start,
        size: end - start,
    })
}

/// RAM regions from every `/memory*` node (with `device_type = "memory"`).
pub fn memory_regions<'a>(fdt: &'a Fdt<'a>) -> impl Iterator<Item = PhysRange> + 'a {
    let root = fdt.find_node("/");
    let (ac, sc) = child_cells(fdt, "/");
    root.into_iter()
        .flat_map(|r| r.children())
        .flat_map(move |node| {
            let is_memory = prop_str(&node, "device_type") == Some("memory") && is_enabled(&node);
            let value = node
                .property("reg")
                .filter(|_| is_memory)
                .map(|p| p.value)
                .unwrap_or(&[]);
            value
                .chunks_exact((ac + sc).max(1) * 4)
                .filter_map(move |e| {
                    let base = be_cells(e, ac)?;
                    let size = be_cells(&e[ac * 4..], sc)?;
                    (size > 0).then_some(PhysRange { base, size })
                })
        })
}

/// Physical ranges that must not be used: /memreserve/ entries and `/reserved-memory` children.
pub fn reserved_regions<'a>(fdt: &'a Fdt<'a>) -> impl Iterator<Item = PhysRange> + 'a {
    let memreserve = fdt.memory_reservations().map(|r| PhysRange {
        base: r.address() as u64,
        size: r.size() as u64,
    });
    let (ac, sc) = child_cells(fdt, "/reserved-memory");
    let nodes = fdt
        .find_node("/reserved-memory")
        .into_iter()
        .flat_map(|n| n.children());
    let reserved = nodes.filter_map(move |node| {
        let v = node.property("reg")?.value;
        let base = be_cells(v, ac)?;
        let size = be_cells(v.get(ac * 4..)?, sc)?;
        Some(PhysRange { base, size })
    });
    memreserve.chain(reserved)
}

/// How secondary CPUs are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI CPU_ON through the firmware, SMC or HVC conduit.
    Psci,
    /// Write the entry address to `cpu-release-addr` and `sev`.
    SpinTable { release_addr: u64 },
    /// The boot CPU, or no method given.
    None,
}

/// One CPU from `/cpus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuInfo {
    /// MPIDR affinity bits (Aff3..Aff0) as in `reg`.
    pub mpidr: u64,
    pub enable: EnableMethod,
}

/// The CPUs listed in `/cpus`, in DT order.
pub fn cpus<'a>(fdt: &'a Fdt<'a>) -> Result<impl Iterator<Item = CpuInfo> + 'a, DtbError> {
    let node = fdt
        .find_node("/cpus")
        .ok_or(DtbError::MissingNode("/cpus"))?;
    let (ac, _) = child_cells(fdt, "/cpus");
    Ok(node.children().filter_map(move |cpu| {
        if prop_str(&cpu, "device_type") != Some("cpu") || !is_enabled(&cpu) {
            return None;
        }
        let mpidr = be_cells(cpu.property("reg")?.value, ac)?;
        let enable = match prop_str(&cpu, "enable-method") {
            Some("psci") => EnableMethod::Psci,
            Some("spin-table") => match cpu.property("cpu-release-addr") {
                Some(p) => EnableMethod::SpinTable {
                    release_addr: be_cells(p.value, p.value.len() / 4)?,
                },
                None => EnableMethod::None,
            },
            _ => EnableMethod::None,
        };
        Some(CpuInfo { mpidr, enable })
    }))
}

/// The firmware's PSCI conduit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsciConduit {
    Smc,
    Hvc,
}

/// The PSCI conduit from `/psci`, if the machine has PSCI.
pub fn psci_conduit(fdt: &Fdt<'_>) -> Option<PsciConduit> {
    let node = fdt.find_node("/psci")?;
    match prop_str(&node, "method")? {
        "smc" => Some(PsciConduit::Smc),
        "hvc" => Some(PsciConduit::Hvc),
        _ => None,
    }
}

/// The host interrupt controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicInfo {
    V2 {
        gicd: PhysRange,
        gicc: PhysRange,
        /// Virtual interface control (GICH) and virtual CPU interface (GICV), if virtualization
        /// is available.
        gich: Option<PhysRange>,
        gicv: Option<PhysRange>,
        /// The maintenance interrupt (PPI number + 16), if given.
        maintenance_intid: Option<u32>,
    },
    V3 {
        gicd: PhysRange,
        gicr: PhysRange,
        maintenance_intid: Option<u32>,
    },
}

impl GicInfo {
    pub fn version(&self) -> u8 {
        match self {
            Self::V2 { .. } => 2,
            Self::V3 { .. } => 3,
        }
    }
}

/// Walks every node depth-first, calling `f(path, node)`; `path` is built in `buf`.
fn walk<'a>(
    node: FdtNode<'_, 'a>,
    buf: &mut [u8],
    len: usize,
    f: &mut dyn FnMut(&str, &FdtNode<'_, 'a>) -> bool,
) -> bool {
    for child in node.children() {
        let name = child.name.as_bytes();
        let new_len = len + 1 + name.len();
        if new_len > buf.len() {
            continue;
        }
        buf[len] = b'/';
        buf[len + 1..new_len].copy_from_slice(name);
        let Ok(path) = core::str::from_utf8(&buf[..new_len]) else {
            continue;
        };
        if f(path, &child) || walk(child, buf, new_len, f) {
            return true;
        }
    }
    false
}

/// Calls `f(path)` with the path of the first enabled node compatible with any of `compat`.
pub fn with_compatible_path<R>(
    fdt: &Fdt<'_>,
    compat: &[&str],
    f: impl FnOnce(&str) -> R,
) -> Option<R> {
    let mut buf = [0u8; 256];
    let mut found_len = None;
    let root = fdt.find_node("/")?;
    walk(root, &mut buf, 0, &mut |path, node| {
        let hit = compat.iter().any(|c| is_compatible(node, c)) && is_enabled(node);
        if hit {
            found_len = Some(path.len());
        }
        hit
    });
    let len = found_len?;
    Some(f(core::str::from_utf8(&buf[..len]).ok()?))
}

/// First interrupt of a GIC-style `interrupts` property (3 cells: type, number, flags) as an
/// INTID.
fn gic_interrupt(fdt: &Fdt<'_>, path: &str) -> Option<u32> {
    let v = fdt.find_node(path)?.property("interrupts")?.value;
    let kind = be_cells(v.get(0..4)?, 1)?;
    let num = be_cells(v.get(4..8)?, 1)? as u32;
    Some(if kind == 1 { num + 16 } else { num + 32 })
}

/// The GIC from the DT: `arm,gic-v3`, or a GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`).
pub fn gic(fdt: &Fdt<'_>) -> Result<GicInfo, DtbError> {
    if let Some(found) = with_compatible_path(fdt, &["arm,gic-v3"], |path| {
        Some(GicInfo::V3 {
            gicd: reg(fdt, path, 0)?,
            gicr: reg(fdt, path, 1)?,
            maintenance_intid: gic_interrupt(fdt, path),
        })
    }) {
        return found.ok_or(DtbError::BadProperty {
            node: "gic-v3",
            property: "reg",
        });
    }
    let v2 = ["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a7-gic"];
    with_compatible_path(fdt, &v2, |path| {
        Some(GicInfo::V2 {
            gicd: reg(fdt, path, 0)?,
            gicc: reg(fdt, path, 1)?,
            gich: reg(fdt, path, 2),
            gicv: reg(fdt, path, 3),
            maintenance_intid: gic_interrupt(fdt, path),
        })
    })
    .ok_or(DtbError::NoSupportedGic)?
    .ok_or(DtbError::BadProperty {
        node: "gic-v2",
        property: "reg",
    })
}

/// The BCM2835/2711 power-management block (its watchdog resets and powers off a RPi4).
pub fn pm_watchdog(fdt: &Fdt<'_>) -> Option<PhysRange> {
    let compat = ["brcm,bcm2711-pm", "brcm,bcm2835-pm", "brcm,bcm2835-pm-wdt"];
    with_compatible_path(fdt, &compat, |path| reg(fdt, path, 0)).flatten()
}

/// `/chosen/bootargs`, empty if absent.
pub fn bootargs<'a>(fdt: &Fdt<'a>) -> &'a str {
    fdt.find_node("/chosen")
        .and_then(|c| prop_str(&c, "bootargs"))
        .unwrap_or("")
}

/// The value of the first `key=` in a kernel-style command line. Bulkhead's own keys are read
/// (and checked) by `crate::bootargs`, which must know each of them.
pub fn bootarg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// A Xen-style multiboot module in `/chosen` (what QEMU's `-device guest-loader` writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub kind: ModuleKind,
    pub range: PhysRange,
    pub bootargs: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
}

/// The `multiboot,module` children of `/chosen`.
pub fn modules<'a>(fdt: &'a Fdt<'a>) -> impl Iterator<Item = Module<'a>> + 'a {
    // QEMU's guest-loader (like Xen's bootloaders) writes module `reg`s with the root's cell
    // sizes and leaves `/chosen` without #address-cells/#size-cells; honour them if present.
    let chosen_declares = fdt
        .find_node("/chosen")
        .is_some_and(|c| c.property("#address-cells").is_some());
    let (ac, sc) = child_cells(fdt, if chosen_declares { "/chosen" } else { "/" });
    let chosen = fdt.find_node("/chosen");
    chosen
        .into_iter()
        .flat_map(|c| c.children())
        .filter_map(move |node| {
            if !is_compatible(&node, "multiboot,module") {
                return None;
            }
            let kind = if is_compatible(&node, "multiboot,kernel") {
                ModuleKind::Kernel
            } else if is_compatible(&node, "multiboot,ramdisk") {
                ModuleKind::Ramdisk
            } else {
                return None;
            };
            let v = node.property("reg")?.value;
            let base = be_cells(v, ac)?;
            let size = be_cells(v.get(ac * 4..)?, sc)?;
            Some(Module {
                kind,
                range: PhysRange { base, size },
                bootargs: prop_str(&node, "bootargs"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/make-test-dtbs.sh)"))
    }

    #[test]
    fn virt_gicv3() {
        let blob = load("virt-gicv3.dtb");
        let fdt = parse(&blob).unwrap();
        let uart = console_uart(&fdt).unwrap();
        assert_eq!(uart.kind, UartKind::Pl011);
        assert_eq!(uart.regs.base, 0x0900_0000);
        assert_eq!(console_uart_intid(&fdt), Some(33));
        assert_eq!(initrd(&fdt), None);
        let mem: Vec<_> = memory_regions(&fdt).collect();
        assert_eq!(
            mem,
            [PhysRange {
                base: 0x4000_0000,
                size: 1 << 30
            }]
        );
        let cpus: Vec<_> = cpus(&fdt).unwrap().collect();
        assert_eq!(cpus.len(), 4);
        assert_eq!(cpus[3].mpidr, 3);
        assert!(cpus.iter().all(|c| c.enable == EnableMethod::Psci));
        assert_eq!(psci_conduit(&fdt), Some(PsciConduit::Smc));
        match gic(&fdt).unwrap() {
            GicInfo::V3 {
                gicd,
                gicr,
                maintenance_intid,
            } => {
                assert_eq!(gicd.base, 0x0800_0000);
                assert_eq!(gicr.base, 0x080a_0000);
                assert_eq!(maintenance_intid, Some(25));
            }
            other => panic!("expected v3, got {other:?}"),
        }
    }

    #[test]
    fn virt_gicv2() {
        let blob = load("virt-gicv2.dtb");
        let fdt = parse(&blob).unwrap();
        match gic(&fdt).unwrap() {
            GicInfo::V2 {
                gicd,
                gicc,
                gich,
                gicv,
                ..
            } => {
                assert_eq!(gicd.base, 0x0800_0000);
                assert_eq!(gicc.base, 0x0801_0000);
                assert_eq!(gich.unwrap().base, 0x0803_0000);
                assert_eq!(gicv.unwrap().base, 0x0804_0000);
            }
            other => panic!("expected v2, got {other:?}"),
        }
    }

    #[test]
    fn rpi4_translates_soc_ranges() {
        let blob = load("bcm2711-rpi-4-b.dtb");
        let fdt = parse(&blob).unwrap();
        match gic(&fdt).unwrap() {
            GicInfo::V2 {
                gicd, gicc, gich, ..
            } => {
                assert_eq!(gicd.base, 0xff84_1000);
                assert_eq!(gicc.base, 0xff84_2000);
                assert_eq!(gich.unwrap().base, 0xff84_4000);
            }
            other => panic!("expected v2, got {other:?}"),
        }
        let cpus: Vec<_> = cpus(&fdt).unwrap().collect();
        assert_eq!(cpus.len(), 4);
        assert_eq!(
            cpus[1].enable,
            EnableMethod::SpinTable { release_addr: 0xe0 }
        );
        assert_eq!(psci_conduit(&fdt), None);
    }

    #[test]
    fn qemu_raspi4b_dtb_with_nops_parses_after_strip() {
        let mut blob = load("raspi4b-qemu.dtb");
        let removed = strip_nops(&mut blob).unwrap();
        assert!(
            removed > 0,
            "fixture should contain NOPs (QEMU-deleted nodes)"
        );
        assert_eq!(strip_nops(&mut blob).unwrap(), 0);
        let fdt = parse(&blob).unwrap();
        assert_eq!(
            console_uart(&fdt).unwrap().regs.base,
            0xfe21_5040,
            "stdout-path serial1 is the mini UART"
        );
        assert!(gic(&fdt).is_ok());
        assert_eq!(cpus(&fdt).unwrap().count(), 4);
        assert!(memory_regions(&fdt).count() >= 1);
        assert_eq!(pm_watchdog(&fdt).unwrap().base, 0xfe10_0000);
    }

    #[test]
    fn rpi4_console_is_the_mini_uart_stdout_path_names() {
        let blob = load("bcm2711-rpi-4-b.dtb");
        let fdt = parse(&blob).unwrap();
        // stdout-path = "serial1:115200n8"; serial1 = /soc/serial@7e215040 (bus address).
        assert_eq!(
            console_uart(&fdt),
            Some(ConsoleUart {
                kind: UartKind::Bcm2835Aux,
                regs: PhysRange {
                    base: 0xfe21_5040,
                    size: 0x40
                },
            })
        );
        // interrupts = <GIC_SPI 93 IRQ_TYPE_LEVEL_HIGH>: the shared AUX interrupt.
        assert_eq!(console_uart_intid(&fdt), Some(32 + 93));
        assert_eq!(initrd(&fdt), None);
    }

    #[test]
    fn console_falls_back_to_serial0_when_stdout_path_names_no_uart() {
        let mut blob = load("bcm2711-rpi-4-b.dtb");
        // Point the serial1 alias at a node that does not exist (same length keeps the blob
        // valid).
        let needle = b"/soc/serial@7e215040";
        let hits: Vec<usize> = (0..blob.len() - needle.len())
            .filter(|&i| &blob[i..i + needle.len()] == needle)
            .collect();
        assert!(!hits.is_empty());
        for at in hits {
            blob[at..at + needle.len()].copy_from_slice(b"/soc/serial@7e215999");
        }
        let fdt = parse(&blob).unwrap();
        let uart = console_uart(&fdt).unwrap();
        assert_eq!(uart.kind, UartKind::Pl011);
        assert_eq!(uart.regs.base, 0xfe20_1000);
    }

    #[test]
    fn initrd_from_qemu_two_cells_and_from_firmware_one_cell() {
        // A QEMU dump: QEMU's fixups leave NOPs, which boot strips before parsing.
        let mut blob = load("raspi4b-qemu-initrd.dtb");
        strip_nops(&mut blob).unwrap();
        let fdt = parse(&blob).unwrap();
        assert_eq!(
            initrd(&fdt),
            Some(PhysRange {
                base: 0x0800_0000,
                size: 0x10_0000
            })
        );
        assert_eq!(bootargs(&fdt), "loglevel=info");
        let blob = load("bcm2711-firmware-initrd.dtb");
        let fdt = parse(&blob).unwrap();
        assert_eq!(
            initrd(&fdt),
            Some(PhysRange {
                base: 0x2eff_0000,
                size: 0x2f10_f8f4 - 0x2eff_0000
            })
        );
    }

    /// A hand-made blob: header, empty reservation map, `tokens` (big-endian words) as the
    /// structure block, `strings` as the strings block.
    fn hand_made(tokens: &[u32], strings: &[u8]) -> Vec<u8> {
        let structure: Vec<u8> = tokens.iter().flat_map(|t| t.to_be_bytes()).collect();
        let (off_struct, off_strings) = (56u32, 56 + structure.len() as u32);
        let total = off_strings + strings.len() as u32;
        let header = [
            0xd00d_feed,
            total,
            off_struct,
            off_strings,
            40,
            17,
            16,
            0,
            strings.len() as u32,
            structure.len() as u32,
        ];
        let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
        blob.extend_from_slice(&[0; 16]);
        blob.extend_from_slice(&structure);
        blob.extend_from_slice(strings);
        blob
    }

    // Tokens (Devicetree Specification 5.4.1) and a node named "a" (padded to a word).
    const BEGIN: u32 = 1;
    const END_NODE: u32 = 2;
    const PROP: u32 = 3;
    const NOP: u32 = 4;
    const END: u32 = 9;
    const ROOT_NAME: u32 = 0;
    const NAME_A: u32 = 0x6100_0000;

    #[test]
    fn check_structure_accepts_real_trees() {
        for name in [
            "virt-gicv3.dtb",
            "virt-gicv2.dtb",
            "virt-gicv3-guest-loader.dtb",
            "bcm2711-rpi-4-b.dtb",
            "bcm2711-firmware-initrd.dtb",
            "no-memory.dtb",
        ] {
            assert_eq!(check_structure(&load(name)), Ok(()), "{name}");
        }
        let mut qemu = load("raspi4b-qemu.dtb");
        assert!(check_structure(&qemu).is_err(), "QEMU's NOPs are refused");
        strip_nops(&mut qemu).unwrap();
        assert_eq!(check_structure(&qemu), Ok(()));
        let props_then_child = [
            BEGIN, ROOT_NAME, PROP, 0, 0, BEGIN, NAME_A, END_NODE, END_NODE, END,
        ];
        assert_eq!(
            check_structure(&hand_made(&props_then_child, b"x\0")),
            Ok(())
        );
    }

    #[test]
    fn check_structure_refuses_what_the_fdt_crate_would_panic_on() {
        assert!(check_structure(&load("truncated.dtb")).is_err());
        let bad: [&[u32]; 7] = [
            // A property after a child node (the crate asserts "bad node").
            &[
                BEGIN, ROOT_NAME, BEGIN, NAME_A, END_NODE, PROP, 0, 0, END_NODE, END,
            ],
            // A property name offset past the strings block.
            &[BEGIN, ROOT_NAME, PROP, 0, 99, END_NODE, END],
            // A NOP between properties.
            &[BEGIN, ROOT_NAME, PROP, 0, 0, NOP, PROP, 0, 0, END_NODE, END],
            // An unknown token, unbalanced nodes, a second root, no END.
            &[BEGIN, ROOT_NAME, 7, END_NODE, END],
            &[BEGIN, ROOT_NAME, END_NODE, END_NODE, END],
            &[BEGIN, ROOT_NAME, END_NODE, BEGIN, ROOT_NAME, END_NODE, END],
            &[BEGIN, ROOT_NAME, END_NODE],
        ];
        for tokens in bad {
            assert!(
                check_structure(&hand_made(tokens, b"x\0")).is_err(),
                "{tokens:x?}"
            );
        }
        // A property name that is not NUL-terminated inside the strings block.
        let tokens = [BEGIN, ROOT_NAME, PROP, 0, 0, END_NODE, END];
        assert!(check_structure(&hand_made(&tokens, b"xy")).is_err());
        assert_eq!(check_structure(&hand_made(&tokens, b"xy\0")), Ok(()));
    }

    #[test]
    fn strip_nops_rejects_garbage() {
        let mut blob = load("virt-gicv3.dtb");
        blob[40..44].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert!(strip_nops(&mut blob[..64]).is_err());
        assert!(strip_nops(&mut [0u8; 16]).is_err());
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let blob = load("virt-gicv3.dtb");
        assert_eq!(
            parse(&blob[..blob.len() / 2]).err(),
            Some(DtbError::Invalid)
        );
        assert_eq!(parse(&blob[..8]).err(), Some(DtbError::Invalid));
        assert_eq!(parse(&[0u8; 64]).err(), Some(DtbError::Invalid));
        let truncated = load("truncated.dtb");
        assert!(parse(&truncated).is_err());
    }

    #[test]
    fn missing_memory_node_gives_no_regions() {
        let blob = load("no-memory.dtb");
        let fdt = parse(&blob).unwrap();
        assert_eq!(memory_regions(&fdt).count(), 0);
    }

    #[test]
    fn guest_loader_modules() {
        let blob = load("virt-gicv3-guest-loader.dtb");
        let fdt = parse(&blob).unwrap();
        let mods: Vec<_> = modules(&fdt).collect();
        let kernel = mods.iter().find(|m| m.kind == ModuleKind::Kernel).unwrap();
        let ramdisk = mods.iter().find(|m| m.kind == ModuleKind::Ramdisk).unwrap();
        assert_eq!(kernel.range.base, 0x4800_0000);
        assert!(
            kernel.range.size > 1 << 20,
            "kernel size {:#x}",
            kernel.range.size
        );
        assert!(kernel.bootargs.is_some());
        assert_eq!(
            ramdisk.range,
            PhysRange {
                base: 0x4c00_0000,
                size: 0xf17fd
            }
        );
    }

    #[test]
    fn bootarg_lookup() {
        let cmd = "console=ttyAMA0 bulkhead.vmid_bits=2 loglevel=debug";
        assert_eq!(bootarg(cmd, "bulkhead.vmid_bits"), Some("2"));
        assert_eq!(bootarg(cmd, "loglevel"), Some("debug"));
        assert_eq!(bootarg(cmd, "missing"), None);
    }
}
