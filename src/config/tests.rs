//! The config room on the host: host DTBs built with `vm_fdt` (or token by token, for the
//! malformed ones), parsed, and placed; plus property tests over mutated DTBs and random
//! placements. Everything here runs under `cargo test config`.

use proptest::prelude::*;
use vm_fdt::FdtWriter;

use super::*;
use crate::dtb::{self, PhysRange};

// ---------------------------------------------------------------------------------------------
// Building host DTBs

/// A device-tree node to write with `vm_fdt`.
#[derive(Clone, Debug)]
struct Node {
    name: String,
    props: Vec<(String, Vec<u8>)>,
    children: Vec<Node>,
}

impl Node {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }
    fn prop(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.set(name, value);
        self
    }
    fn child(mut self, node: Node) -> Self {
        self.children.push(node);
        self
    }
    fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.props.iter_mut().find(|(n, _)| n == name) {
            Some(p) => p.1 = value,
            None => self.props.push((name.to_string(), value)),
        }
    }
    fn remove(&mut self, name: &str) {
        self.props.retain(|(n, _)| n != name);
    }
    fn sub(&mut self, name: &str) -> &mut Node {
        self.children
            .iter_mut()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no sub-node {name}"))
    }
    fn write(&self, w: &mut FdtWriter) {
        let node = w.begin_node(&self.name).unwrap();
        for (name, value) in &self.props {
            w.property(name, value).unwrap();
        }
        for child in &self.children {
            child.write(w);
        }
        w.end_node(node).unwrap();
    }
}

/// Big-endian cells.
fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A NUL-terminated string list.
fn strs(values: &[&str]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|s| [s.as_bytes(), &[0]].concat())
        .collect()
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
fn lo(v: u64) -> u32 {
    v as u32
}

const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 2 << 30;
const RESERVED: PhysRange = PhysRange {
    base: 0x7f00_0000,
    size: 0x10_0000,
};
const MEMRESERVE: PhysRange = PhysRange {
    base: 0x4000_0000,
    size: 0x1_0000,
};

/// A QEMU-virt-like host: 2 GiB of RAM at 1 GiB, an alias, reserved memory, and `chosen`.
fn host(chosen: Node) -> Node {
    Node::new("")
        .prop("compatible", strs(&["linux,dummy-virt"]))
        .prop("#address-cells", cells(&[2]))
        .prop("#size-cells", cells(&[2]))
        .child(
            Node::new("memory@40000000")
                .prop("device_type", strs(&["memory"]))
                .prop(
                    "reg",
                    cells(&[hi(RAM_BASE), lo(RAM_BASE), hi(RAM_SIZE), lo(RAM_SIZE)]),
                ),
        )
        .child(Node::new("aliases").prop("serial0", strs(&["/pl011@9000000"])))
        .child(
            Node::new("reserved-memory")
                .prop("#address-cells", cells(&[2]))
                .prop("#size-cells", cells(&[2]))
                .prop("ranges", Vec::new())
                .child(Node::new("region@7f000000").prop(
                    "reg",
                    cells(&[0, RESERVED.base as u32, 0, RESERVED.size as u32]),
                )),
        )
        .child(
            Node::new("pl011@9000000")
                .prop("compatible", strs(&["arm,pl011", "arm,primecell"]))
                .prop("reg", cells(&[0, 0x0900_0000, 0, 0x1000])),
        )
        .child(chosen)
}

fn chosen(domains: Vec<Node>) -> Node {
    domains.into_iter().fold(
        Node::new("chosen").prop("bootargs", strs(&["loglevel=info"])),
        Node::child,
    )
}

fn blob(root: &Node) -> Vec<u8> {
    let mut w = FdtWriter::new_with_mem_reserv(&[vm_fdt::FdtReserveEntry::new(
        MEMRESERVE.base,
        MEMRESERVE.size,
    )
    .unwrap()])
    .unwrap();
    root.write(&mut w);
    w.finish().unwrap()
}

/// A reg value in `ac` address and `sc` size cells.
fn reg(ac: usize, sc: usize, base: u64, size: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for (value, n) in [(base, ac), (size, sc)] {
        if n == 2 {
            v.extend(cells(&[hi(value), lo(value)]));
        } else {
            v.extend(cells(&[lo(value)]));
        }
    }
    v
}

fn module(kind: &str, ac: usize, sc: usize, base: u64, size: u64) -> Node {
    Node::new(&format!("module@{base:x}"))
        .prop("compatible", strs(&[kind, "multiboot,module"]))
        .prop("reg", reg(ac, sc, base, size))
}

fn vcpu(id: u32, affinity: &str) -> Node {
    Node::new(&format!("vcpu{id}"))
        .prop("compatible", strs(&["xen,vcpu"]))
        .prop("id", cells(&[id]))
        .prop("hard-affinity", strs(&[affinity]))
}

/// A dom0less domain as booting.txt shows it: `ac`/`sc` cells for the module regs, `memory`
/// in two cells, a kernel (with bootargs) and a ramdisk.
fn domain_cells(name: &str, ac: usize, sc: usize, mib: u64, cpus: u32, images: u64) -> Node {
    let kib = mib << 10;
    Node::new(name)
        .prop("compatible", strs(&["xen,domain"]))
        .prop("#address-cells", cells(&[ac as u32]))
        .prop("#size-cells", cells(&[sc as u32]))
        .prop("memory", cells(&[hi(kib), lo(kib)]))
        .prop("cpus", cells(&[cpus]))
        .prop("vpl011", Vec::new())
        .child(
            module("multiboot,kernel", ac, sc, images, 0x200_0000)
                .prop("bootargs", strs(&[&format!("console=ttyAMA0 {name}")])),
        )
        .child(module(
            "multiboot,ramdisk",
            ac,
            sc,
            images + 0x200_0000,
            0x80_0000,
        ))
}

fn domain(name: &str, mib: u64, cpus: u32, images: u64) -> Node {
    domain_cells(name, 2, 2, mib, cpus, images)
}

/// A static shared memory sub-node (booting.txt): `<[host] ipa size>` in `ac`/`sc` cells.
#[allow(clippy::too_many_arguments)]
fn shm(
    name: &str,
    id: &str,
    role: Option<&str>,
    ac: usize,
    sc: usize,
    host: Option<u64>,
    ipa: u64,
    size: u64,
) -> Node {
    let mut value = Vec::new();
    if let Some(host) = host {
        value.extend(if ac == 2 {
            cells(&[hi(host), lo(host)])
        } else {
            cells(&[lo(host)])
        });
    }
    value.extend(reg(ac, sc, ipa, size));
    let node = Node::new(name)
        .prop("compatible", strs(&["xen,domain-shared-memory-v1"]))
        .prop("xen,shm-id", strs(&[id]))
        .prop("xen,shared-mem", value);
    match role {
        Some(role) => node.prop("role", strs(&[role])),
        None => node,
    }
}

/// A region in the domains' 2 + 2 cells.
fn shm22(name: &str, id: &str, host: Option<u64>, ipa: u64, size: u64) -> Node {
    shm(name, id, None, 2, 2, host, ipa, size)
}

/// A doorbell sub-node ringing `peer`'s SPI `spi`.
fn bell(name: &str, peer: &str, spi: u32) -> Node {
    Node::new(name)
        .prop("compatible", strs(&["bulkhead,doorbell"]))
        .prop("peer", strs(&[peer]))
        .prop("bulkhead,spi", cells(&[spi]))
}

/// Three good VMs: domU1 (256 MiB, 1 vCPU), domU2 (128 MiB, 2), domU3 (64 MiB, 1).
fn three_domains() -> Vec<Node> {
    vec![
        domain("domU1", 256, 1, 0x5000_0000),
        domain("domU2", 128, 2, 0x5400_0000),
        domain("domU3", 64, 1, 0x5800_0000),
    ]
}

const CPUS: usize = 4;

fn parse_blob(blob: &[u8], cpu_count: usize) -> ParsedConfig {
    let fdt = dtb::parse(blob).expect("test DTB parses");
    parse(&fdt, dtb::bootargs(&fdt), cpu_count)
}

fn parse_domains(domains: Vec<Node>) -> ParsedConfig {
    parse_blob(&blob(&host(chosen(domains))), CPUS)
}

fn names(cfg: &ParsedConfig) -> Vec<&str> {
    cfg.vms.iter().map(|v| v.name.as_str()).collect()
}

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Robustness: mutated and truncated host DTBs

/// The whole path a host DTB takes, as boot runs it: parse, read the VMs, place them.
fn run_everything(blob: &[u8]) {
    let Ok(fdt) = dtb::parse(blob) else {
        return;
    };
    let cfg = parse(&fdt, dtb::bootargs(&fdt), CPUS);
    let ram: Vec<PhysRange> = dtb::memory_regions(&fdt).collect();
    let avoid: Vec<PhysRange> = dtb::reserved_regions(&fdt).collect();
    let placements = place(&cfg.vms, &ram, &avoid, CPUS);
    assert_eq!(placements.len(), cfg.vms.len());
    let _ = cfg.refused.iter().map(ToString::to_string).count();
}

fn mutation_base() -> Vec<u8> {
    let mut domains = three_domains();
    domains[0] = domains[0]
        .clone()
        .child(vcpu(0, "1"))
        .child(shm(
            "shm@0",
            "pingpong",
            Some("owner"),
            2,
            2,
            Some(0x6000_0000),
            0x1_0000_0000,
            2 * MIB,
        ))
        .child(bell("bell@0", "domU2", 5));
    domains[1] = domains[1]
        .clone()
        .child(vcpu(1, "2-3"))
        .child(shm(
            "shm@0",
            "pingpong",
            None,
            2,
            2,
            None,
            0x7fe0_0000,
            2 * MIB,
        ))
        .child(bell("bell@0", "domU1", 5));
    domains[2] = domain_cells("domU3", 1, 1, 64, 1, 0x5800_0000).prop("direct-map", Vec::new());
    blob(&host(chosen(domains)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Random byte flips and cuts of a valid dom0less DTB give an error or a config, never a
    /// panic (nor endless recursion).
    #[test]
    fn config_survives_mutated_dtbs(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut blob = mutation_base();
        for (at, xor) in flips {
            let i = at.index(blob.len());
            blob[i] ^= xor;
        }
        if truncate {
            let len = cut.index(blob.len());
            blob.truncate(len);
            // Also claim the cut length, so parsing goes past the totalsize check.
            if len >= 8 {
                blob[4..8].copy_from_slice(&(len as u32).to_be_bytes());
            }
        }
        run_everything(&blob);
    }
}

// ---------------------------------------------------------------------------------------------
// The host-DTB guard (`dtb::check_structure`): one case per `fdt` panic the mutation test found

/// A structure-block token for [`assemble`], which writes it verbatim (right or wrong).
enum Tok<'a> {
    Begin(&'a [u8]),
    /// A property: its name offset into the strings block and its value.
    Prop(u32, &'a [u8]),
    /// A property header claiming `len` bytes of value, with none written.
    PropLen(u32, u32),
    EndNode,
    Nop,
    End,
}

/// A DTB from raw tokens and a raw strings block.
fn assemble(tokens: &[Tok<'_>], strings: &[u8]) -> Vec<u8> {
    let mut st = Vec::new();
    let word = |st: &mut Vec<u8>, w: u32| st.extend(w.to_be_bytes());
    let pad = |st: &mut Vec<u8>| st.resize(st.len().next_multiple_of(4), 0);
    for t in tokens {
        match t {
            Tok::Begin(name) => {
                word(&mut st, 1);
                st.extend(*name);
                pad(&mut st);
            }
            Tok::Prop(name, value) => {
                word(&mut st, 3);
                word(&mut st, value.len() as u32);
                word(&mut st, *name);
                st.extend(*value);
                pad(&mut st);
            }
            Tok::PropLen(name, len) => {
                word(&mut st, 3);
                word(&mut st, *len);
                word(&mut st, *name);
            }
            Tok::EndNode => word(&mut st, 2),
            Tok::Nop => word(&mut st, 4),
            Tok::End => word(&mut st, 9),
        }
    }
    let off_struct = 40 + 16;
    let off_strings = off_struct + st.len();
    let total = off_strings + strings.len();
    let header = [
        0xd00d_feed,
        total as u32,
        off_struct as u32,
        off_strings as u32,
        40,
        17,
        16,
        0,
        strings.len() as u32,
        st.len() as u32,
    ];
    let mut blob: Vec<u8> = header.iter().flat_map(|w: &u32| w.to_be_bytes()).collect();
    blob.extend([0u8; 16]);
    blob.extend(st);
    blob.extend(strings);
    blob
}

/// Strings block: "compatible" at 0, "bootargs" at 11.
const STRINGS: &[u8] = b"compatible\0bootargs\0";

fn assert_refused(blob: &[u8], what: &str) {
    assert_eq!(
        dtb::parse(blob).err(),
        Some(dtb::DtbError::Invalid),
        "{what} should be refused"
    );
    run_everything(blob);
}

#[test]
fn dtb_guard_accepts_a_well_formed_tree() {
    let blob = assemble(
        &[
            Tok::Begin(b"\0"),
            Tok::Prop(0, b"x\0"),
            Tok::Begin(b"chosen\0"),
            Tok::Prop(11, b"loglevel=info\0"),
            Tok::EndNode,
            Tok::EndNode,
            Tok::End,
        ],
        STRINGS,
    );
    let fdt = dtb::parse(&blob).unwrap();
    assert_eq!(dtb::bootargs(&fdt), "loglevel=info");
    for name in [
        "virt-gicv3.dtb",
        "virt-gicv2.dtb",
        "virt-gicv3-guest-loader.dtb",
        "bcm2711-rpi-4-b.dtb",
        "no-memory.dtb",
    ] {
        assert!(dtb::check_structure(&load(name)).is_ok(), "{name}");
    }
    assert!(dtb::check_structure(&mutation_base()).is_ok());
}

#[test]
fn dtb_guard_refuses_header_blocks_outside_the_blob() {
    let good = mutation_base();
    let patched = |at: usize, value: u32| {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&value.to_be_bytes());
        b
    };
    let total = good.len() as u32;
    // `fdt` slices the blob with these without checking.
    assert_refused(&patched(8, total), "structure block past totalsize");
    assert_refused(&patched(36, total), "structure block size past totalsize");
    assert_refused(&patched(12, total + 4), "strings block past totalsize");
    assert_refused(&patched(32, total), "strings block size past totalsize");
    assert_refused(&patched(16, total + 8), "reservation map past totalsize");
    assert_refused(&patched(8, 0x3a), "misaligned structure block");
    assert_refused(&patched(4, 16), "totalsize smaller than the header");
}

#[test]
fn dtb_guard_refuses_a_reservation_map_without_terminator() {
    let mut blob = assemble(&[Tok::Begin(b"\0"), Tok::EndNode, Tok::End], STRINGS);
    // Point the map at the structure block, whose words are never all zero.
    blob[16..20].copy_from_slice(&56u32.to_be_bytes());
    assert_refused(&blob, "reservation map without its zero entry");
}

#[test]
fn dtb_guard_refuses_bad_property_names_and_lengths() {
    let root = |p: Tok<'static>| assemble(&[Tok::Begin(b"\0"), p, Tok::EndNode, Tok::End], STRINGS);
    assert_refused(
        &root(Tok::Prop(999, b"")),
        "name offset past the strings block",
    );
    assert_refused(
        &assemble(
            &[Tok::Begin(b"\0"), Tok::Prop(0, b""), Tok::EndNode, Tok::End],
            b"compatible",
        ),
        "name without NUL in the strings block",
    );
    assert_refused(
        &assemble(
            &[Tok::Begin(b"\0"), Tok::Prop(0, b""), Tok::EndNode, Tok::End],
            b"\xff\xfe\0",
        ),
        "non-UTF-8 property name",
    );
    assert_refused(
        &root(Tok::PropLen(0, 0x10_0000)),
        "value past the structure block",
    );
}

#[test]
fn dtb_guard_refuses_malformed_node_structure() {
    let cases: [(&str, Vec<Tok<'static>>); 8] = [
        (
            "property after a child node",
            vec![
                Tok::Begin(b"\0"),
                Tok::Begin(b"a\0"),
                Tok::EndNode,
                Tok::Prop(0, b"x\0"),
                Tok::EndNode,
                Tok::End,
            ],
        ),
        (
            "NOP between properties (strip_nops first)",
            vec![
                Tok::Begin(b"\0"),
                Tok::Prop(0, b"x\0"),
                Tok::Nop,
                Tok::Prop(11, b"y\0"),
                Tok::EndNode,
                Tok::End,
            ],
        ),
        (
            "non-UTF-8 node name",
            vec![
                Tok::Begin(b"\0"),
                Tok::Begin(b"\xc3\0"),
                Tok::EndNode,
                Tok::EndNode,
                Tok::End,
            ],
        ),
        (
            "node name without NUL",
            vec![Tok::Begin(b"\0"), Tok::Begin(b"abcd")],
        ),
        ("unclosed root", vec![Tok::Begin(b"\0"), Tok::End]),
        (
            "two roots",
            vec![
                Tok::Begin(b"\0"),
                Tok::EndNode,
                Tok::Begin(b"\0"),
                Tok::EndNode,
                Tok::End,
            ],
        ),
        (
            "END_NODE without node",
            vec![Tok::Begin(b"\0"), Tok::EndNode, Tok::EndNode, Tok::End],
        ),
        ("no FDT_END", vec![Tok::Begin(b"\0"), Tok::EndNode]),
    ];
    for (what, tokens) in cases {
        assert_refused(&assemble(&tokens, STRINGS), what);
    }
}

#[test]
fn dtb_guard_limits_nesting_depth() {
    let nest = |levels: usize| {
        let mut node = Node::new("n");
        for _ in 2..levels {
            node = Node::new("n").child(node);
        }
        blob(&Node::new("").child(node))
    };
    assert!(dtb::parse(&nest(32)).is_ok());
    assert_refused(&nest(33), "33 levels");
}

#[test]
fn dtb_guard_refuses_aliases_that_would_recurse() {
    // `Fdt::find_node` looks a missing path up in /aliases and recurses on the result: an alias
    // naming itself would never return.
    let with_alias = |name: &str, value: &str| {
        let mut root = host(chosen(Vec::new()));
        root.sub("aliases").set(name, strs(&[value]));
        blob(&root)
    };
    assert!(dtb::parse(&with_alias("serial1", "/pl011@9000000")).is_ok());
    assert_refused(&with_alias("serial0", "serial0"), "relative alias");
    assert_refused(&with_alias("serial0", ""), "empty alias");
    // vm_fdt will not write a property named "/chosen"; write it raw.
    let blob = assemble(
        &[
            Tok::Begin(b"\0"),
            Tok::Begin(b"aliases\0"),
            Tok::Prop(0, b"/chosen\0"),
            Tok::EndNode,
            Tok::EndNode,
            Tok::End,
        ],
        b"/chosen\0",
    );
    assert_refused(&blob, "alias named like a path");
}

// ---------------------------------------------------------------------------------------------
// dom0less: good configurations

#[test]
fn two_vms_with_two_cell_regs() {
    let cfg = parse_domains(three_domains()[..2].to_vec());
    assert_eq!(cfg.refused, []);
    assert_eq!(cfg.warnings, Vec::<String>::new());
    assert_eq!(
        cfg.vms[0],
        VmSpec {
            name: "domU1".into(),
            vcpus: 1,
            memory: 256 << 20,
            kernel: PhysRange {
                base: 0x5000_0000,
                size: 0x200_0000
            },
            format: Default::default(),
            initrd: Some(PhysRange {
                base: 0x5200_0000,
                size: 0x80_0000
            }),
            bootargs: "console=ttyAMA0 domU1".into(),
            affinity: vec![None],
            shared_mem: vec![],
            doorbells: vec![],
            lifecycle: Lifecycle::default(),
        }
    );
    assert_eq!(cfg.vms[1].name, "domU2");
    assert_eq!((cfg.vms[1].vcpus, cfg.vms[1].memory), (2, 128 << 20));
    assert_eq!(cfg.vms[1].affinity, [None, None]);
}

#[test]
fn three_vms_with_one_cell_regs_and_memory() {
    let domains: Vec<Node> = [
        ("domU1", 0x5000_0000),
        ("domU2", 0x5400_0000),
        ("domU3", 0x5800_0000),
    ]
    .iter()
    .map(|&(name, base)| {
        let mut d = domain_cells(name, 1, 1, 64, 1, base);
        d.set("memory", cells(&[64 << 10]));
        d
    })
    .collect();
    let cfg = parse_domains(domains);
    assert_eq!(names(&cfg), ["domU1", "domU2", "domU3"]);
    assert_eq!(cfg.refused, []);
    assert!(cfg.vms.iter().all(|v| v.memory == 64 << 20));
    assert_eq!(cfg.vms[2].kernel.base, 0x5800_0000);
    assert_eq!(cfg.vms[2].initrd.unwrap().size, 0x80_0000);
}

#[test]
fn xen_example_with_two_address_and_one_size_cell() {
    // booting.txt's own example: #address-cells 2, #size-cells 1, reg = <0x0 A 0xffffff>.
    let mut d = domain_cells("domU1", 2, 1, 128, 2, 0x4a00_0000);
    d.sub("module@4a000000")
        .set("reg", cells(&[0, 0x4a00_0000, 0xff_ffff]));
    let cfg = parse_domains(vec![d]);
    assert_eq!(cfg.refused, []);
    assert_eq!(
        cfg.vms[0].kernel,
        PhysRange {
            base: 0x4a00_0000,
            size: 0xff_ffff
        }
    );
}

#[test]
fn vcpu_nodes_give_hard_affinity() {
    let d = domain("domU1", 64, 3, 0x5000_0000)
        .child(vcpu(0, "2"))
        .child(vcpu(2, "0-1,3"));
    let cfg = parse_domains(vec![d]);
    assert_eq!(cfg.refused, []);
    assert_eq!(
        cfg.vms[0].affinity,
        [
            Some(CpuSet::parse("2").unwrap()),
            None,
            Some(CpuSet::parse("0,1,3").unwrap())
        ]
    );
    // A xen,vcpu node without hard-affinity leaves the vCPU free.
    let mut v = vcpu(1, "3");
    v.remove("hard-affinity");
    let cfg = parse_domains(vec![domain("domU1", 64, 2, 0x5000_0000).child(v)]);
    assert_eq!(cfg.vms[0].affinity, [None, None]);
}

#[test]
fn bootargs_come_from_the_kernel_then_the_domain_then_nothing() {
    let mut d = domain("domU1", 64, 1, 0x5000_0000).prop("bootargs", strs(&["from-domain"]));
    assert_eq!(
        parse_domains(vec![d.clone()]).vms[0].bootargs,
        "console=ttyAMA0 domU1"
    );
    d.sub("module@50000000").remove("bootargs");
    assert_eq!(
        parse_domains(vec![d.clone()]).vms[0].bootargs,
        "from-domain"
    );
    d.remove("bootargs");
    assert_eq!(parse_domains(vec![d]).vms[0].bootargs, "");
}

#[test]
fn a_vm_without_ramdisk_has_no_initrd() {
    let mut d = domain("domU1", 64, 1, 0x5000_0000);
    d.children.retain(|c| c.name != "module@52000000");
    let cfg = parse_domains(vec![d]);
    assert_eq!(cfg.vms[0].initrd, None);
}

#[test]
fn dom0less_ignores_bare_chosen_modules_and_legacy_sizes() {
    let node = chosen(vec![domain("domU1", 64, 1, 0x5000_0000)])
        .prop(
            "bootargs",
            strs(&["bulkhead.guest_mem=1G bulkhead.guest_smp=2"]),
        )
        .child(module("multiboot,kernel", 2, 2, 0x4800_0000, 0x100_0000));
    let cfg = parse_blob(&blob(&host(node)), CPUS);
    assert_eq!(names(&cfg), ["domU1"]);
    assert_eq!(cfg.vms[0].memory, 64 << 20);
    assert_eq!(cfg.warnings.len(), 3, "{:#?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("bulkhead.guest_mem="));
    assert!(cfg.warnings[1].starts_with("bulkhead.guest_smp="));
    assert!(cfg.warnings[2].contains("outside any xen,domain"));
}

// ---------------------------------------------------------------------------------------------
// dom0less: malformed nodes refuse only their VM

/// Applies `mutate` to domU2 of three good VMs: domU2 alone is refused, for `property`, with a
/// one-line reason containing `reason`.
fn refuses_only_domu2(mutate: impl FnOnce(&mut Node), property: &str, reason: &str) {
    refuses_only_domu2_on(CPUS, mutate, property, reason);
}

fn refuses_only_domu2_on(
    cpu_count: usize,
    mutate: impl FnOnce(&mut Node),
    property: &str,
    reason: &str,
) {
    refuses_only_domu2_of(cpu_count, |d| mutate(&mut d[1]), property, reason);
}

/// Like [`refuses_only_domu2`], with `mutate` given all three VMs.
fn refuses_only_domu2_of(
    cpu_count: usize,
    mutate: impl FnOnce(&mut [Node]),
    property: &str,
    reason: &str,
) {
    let mut domains = three_domains();
    mutate(&mut domains);
    let cfg = parse_blob(&blob(&host(chosen(domains))), cpu_count);
    assert_eq!(names(&cfg), ["domU1", "domU3"], "{cfg:#?}");
    assert_eq!(cfg.refused.len(), 1, "{cfg:#?}");
    let e = &cfg.refused[0];
    assert_eq!(
        (e.vm.as_str(), e.property.as_str()),
        ("domU2", property),
        "{e}"
    );
    assert!(e.reason.contains(reason), "`{e}` lacks `{reason}`");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn refuses_a_vm_without_kernel() {
    refuses_only_domu2(
        |d| d.children.retain(|c| c.name != "module@54000000"),
        "multiboot,kernel",
        "no kernel module",
    );
}

#[test]
fn refuses_a_vm_with_two_kernels_or_two_ramdisks() {
    refuses_only_domu2(
        |d| {
            d.children
                .push(module("multiboot,kernel", 2, 2, 0x5600_0000, 0x1000))
        },
        "multiboot,kernel",
        "two kernel modules, module@54000000 and module@56000000",
    );
    refuses_only_domu2(
        |d| {
            d.children
                .push(module("multiboot,ramdisk", 2, 2, 0x5600_0000, 0x1000))
        },
        "multiboot,ramdisk",
        "two ramdisk modules",
    );
}

#[test]
fn refuses_bad_memory() {
    let kib = |k: u64| cells(&[hi(k), lo(k)]);
    refuses_only_domu2(|d| d.remove("memory"), "memory", "missing");
    refuses_only_domu2(|d| d.set("memory", kib(0)), "memory", "0 bytes");
    refuses_only_domu2(
        |d| d.set("memory", kib(2050)),
        "memory",
        "2050 KiB is not a multiple of 4 KiB",
    );
    refuses_only_domu2(
        |d| d.set("memory", kib(16)),
        "memory",
        "16 KiB is smaller than the 2 MiB minimum",
    );
    refuses_only_domu2(
        |d| d.set("memory", kib(u64::MAX)),
        "memory",
        "does not fit in 64 bits",
    );
    refuses_only_domu2(
        |d| d.set("memory", kib(2 << 30)),
        "memory",
        "2 TiB is more than the 1023 GiB",
    );
    refuses_only_domu2(
        |d| d.set("memory", vec![0, 1, 0]),
        "memory",
        "3 bytes; expected one or two 32-bit cells",
    );
}

#[test]
fn refuses_bad_cpus() {
    refuses_only_domu2(|d| d.remove("cpus"), "cpus", "missing");
    refuses_only_domu2(|d| d.set("cpus", cells(&[0])), "cpus", "0 vCPUs");
    refuses_only_domu2_on(
        16,
        |d| d.set("cpus", cells(&[9])),
        "cpus",
        "a VM has at most 8",
    );
    refuses_only_domu2(
        |d| d.set("cpus", cells(&[0, 2])),
        "cpus",
        "8 bytes; expected one 32-bit cell",
    );
}

/// vCPUs share physical CPUs: a VM may have more vCPUs than the machine has CPUs, up to the
/// per-VM limit.
#[test]
fn more_vcpus_than_cpus_are_accepted() {
    let cfg = parse_blob(
        &blob(&host(chosen(vec![
            domain("domU1", 64, 8, 0x5000_0000),
            domain("domU2", 64, 3, 0x5400_0000).child(vcpu(2, "1")),
        ]))),
        2,
    );
    assert_eq!(cfg.refused, []);
    assert_eq!(cfg.vms.iter().map(|v| v.vcpus).collect::<Vec<_>>(), [8, 3]);
    assert_eq!(cfg.vms[1].affinity[2], CpuSet::single(1));
    // The hard-affinity still names CPUs the machine has.
    let cfg = parse_blob(
        &blob(&host(chosen(vec![
            domain("domU1", 64, 3, 0x5000_0000).child(vcpu(1, "2")),
        ]))),
        2,
    );
    assert_eq!(
        cfg.refused[0].to_string(),
        "domU1: vcpu1/hard-affinity: \"2\": CPU 2 but the machine has 2 CPUs"
    );
}

#[test]
fn refuses_bad_vcpu_nodes() {
    refuses_only_domu2(
        |d| d.children.push(vcpu(2, "1")),
        "vcpu2/id",
        "vCPU 2 but the VM has 2",
    );
    refuses_only_domu2(
        |d| {
            let mut v = vcpu(0, "1");
            v.remove("id");
            d.children.push(v);
        },
        "vcpu0/id",
        "missing",
    );
    refuses_only_domu2(
        |d| {
            d.children.push(vcpu(1, "1"));
            d.children.push(Node {
                name: "other".into(),
                ..vcpu(1, "2")
            });
        },
        "other/id",
        "vCPU 1 has another xen,vcpu node",
    );
    for bad in ["", "x", "3-1", "1,,2", "0x1", "1-", "99"] {
        refuses_only_domu2(
            |d| d.children.push(vcpu(0, bad)),
            "vcpu0/hard-affinity",
            &format!("\"{bad}\""),
        );
    }
    refuses_only_domu2(
        |d| d.children.push(vcpu(1, "2-4")),
        "vcpu1/hard-affinity",
        "CPU 4 but the machine has 4 CPUs",
    );
}

#[test]
fn refuses_bad_module_regs() {
    let kernel = "module@54000000";
    refuses_only_domu2(
        |d| d.sub(kernel).set("reg", vec![0; 12]),
        "module@54000000/reg",
        "12 bytes; expected 16 (#address-cells 2 + #size-cells 2)",
    );
    refuses_only_domu2(
        |d| d.sub(kernel).set("reg", reg(2, 2, 0x5400_0000, 0)),
        "module@54000000/reg",
        "empty (0 bytes at 0x54000000)",
    );
    refuses_only_domu2(
        |d| {
            d.sub(kernel)
                .set("reg", reg(2, 2, 0xffff_ffff_ffff_f000, 0x2000))
        },
        "module@54000000/reg",
        "8 KiB at 0xfffffffffffff000 runs past the end",
    );
    refuses_only_domu2(
        |d| d.sub(kernel).remove("reg"),
        "module@54000000/reg",
        "missing",
    );
    refuses_only_domu2(
        |d| d.sub("module@56000000").set("reg", vec![0; 4]),
        "module@56000000/reg",
        "4 bytes",
    );
    refuses_only_domu2(
        |d| d.set("#address-cells", cells(&[3])),
        "#address-cells",
        "3; module addresses need 1 or 2",
    );
    refuses_only_domu2(
        |d| d.set("#size-cells", cells(&[0])),
        "#size-cells",
        "0; module addresses need 1 or 2",
    );
    refuses_only_domu2(
        |d| d.sub(kernel).set("bootargs", vec![0xff, 0]),
        "module@54000000/bootargs",
        "not a single UTF-8 string",
    );
}

#[test]
fn refuses_a_vm_named_like_the_hypervisors_console_lines() {
    let mut domains = three_domains();
    domains[1].name = "bulkhead".into();
    let cfg = parse_domains(domains);
    assert_eq!(names(&cfg), ["domU1", "domU3"]);
    assert_eq!(
        cfg.refused[0].to_string(),
        "bulkhead: name: reserved: console lines starting `bulkhead:` are the hypervisor's"
    );
}

#[test]
fn refuses_the_second_vm_of_a_name() {
    let mut domains = three_domains();
    domains[2].name = "domU1".into();
    let cfg = parse_domains(domains);
    assert_eq!(names(&cfg), ["domU1", "domU2"]);
    assert_eq!(
        cfg.refused[0].to_string(),
        "domU1: name: another xen,domain node already has this name"
    );
    assert_eq!(cfg.vms[0].memory, 256 << 20, "the first domU1 is kept");
}

#[test]
fn config_error_is_one_line_naming_vm_and_property() {
    let e = ConfigError {
        vm: "domU1".into(),
        property: "memory".into(),
        reason: "16 KiB is smaller than the 2 MiB minimum".into(),
    };
    assert_eq!(
        e.to_string(),
        "domU1: memory: 16 KiB is smaller than the 2 MiB minimum"
    );
}

// ---------------------------------------------------------------------------------------------
// dom0less: what is ignored, with one warning each

#[test]
fn a_good_config_gives_no_warnings_and_vpl011_is_silent() {
    let cfg = parse_domains(three_domains());
    assert_eq!(cfg.warnings, Vec::<String>::new());
    assert!(three_domains()[0].props.iter().any(|(n, _)| n == "vpl011"));
}

#[test]
fn unknown_and_xen_only_properties_warn_once_each() {
    let d = domain("domU1", 64, 1, 0x5000_0000)
        .prop("frobnicate", cells(&[1]))
        .prop("direct-map", Vec::new())
        .prop("xen,enhanced", strs(&["enabled"]))
        .prop("domain-cpupool", cells(&[1]))
        .prop("max_grant_frames", cells(&[64]))
        .prop("sve", Vec::new());
    let cfg = parse_domains(vec![d]);
    assert_eq!(names(&cfg), ["domU1"]);
    assert_eq!(
        cfg.warnings,
        [
            "domU1: unknown property `frobnicate`; ignored",
            "domU1: `direct-map` is a Xen feature Bulkhead does not have; ignored",
            "domU1: `xen,enhanced` is a Xen feature Bulkhead does not have; ignored",
            "domU1: `domain-cpupool` is a Xen feature Bulkhead does not have; ignored",
            "domU1: `max_grant_frames` is a Xen feature Bulkhead does not have; ignored",
            "domU1: `sve` is a Xen feature Bulkhead does not have; ignored",
        ]
    );
}

#[test]
fn unsupported_sub_nodes_warn_once_each() {
    let d = domain("domU1", 64, 1, 0x5000_0000)
        .child(module("multiboot,device-tree", 2, 2, 0x5300_0000, 0x1000))
        .child(
            Node::new("module@53100000")
                .prop("compatible", strs(&["multiboot,module"]))
                .prop("reg", reg(2, 2, 0x5310_0000, 0x1000)),
        )
        .child(Node::new("gadget"));
    let mut d = d;
    d.sub("module@50000000")
        .set("xen,uefi-binary", strs(&["Image"]));
    d.sub("module@52000000").set("flavour", strs(&["x"]));
    let cfg = parse_domains(vec![d]);
    assert_eq!(names(&cfg), ["domU1"]);
    assert_eq!(
        cfg.warnings,
        [
            "domU1: module@50000000: `xen,uefi-binary` (UEFI loading) is a Xen feature \
             Bulkhead does not have; ignored",
            "domU1: module@52000000: unknown property `flavour`; ignored",
            "domU1: module@53000000: partial device trees (device passthrough) are not \
             supported; ignored",
            "domU1: module@53100000: a multiboot module that is neither kernel nor ramdisk; \
             ignored",
            "domU1: unknown sub-node `gadget`; ignored",
        ]
    );
}

#[test]
fn missing_cells_default_to_two_and_one_with_a_warning() {
    let mut d = domain_cells("domU1", 2, 1, 64, 1, 0x5000_0000);
    d.remove("#address-cells");
    d.remove("#size-cells");
    let cfg = parse_domains(vec![d]);
    assert_eq!(cfg.vms[0].kernel.size, 0x200_0000);
    assert_eq!(
        cfg.warnings,
        ["domU1: #address-cells/#size-cells missing; module regs read as 2 and 1 cells"]
    );
}

#[test]
fn a_disabled_domain_is_not_started() {
    let mut domains = three_domains();
    domains[0].set("status", strs(&["disabled"]));
    let cfg = parse_domains(domains);
    assert_eq!(names(&cfg), ["domU2", "domU3"]);
    assert_eq!(cfg.refused, []);
    assert_eq!(cfg.warnings, ["domU1: status is \"disabled\"; not started"]);
}

// ---------------------------------------------------------------------------------------------
// Legacy form and no guest

#[test]
fn legacy_guest_loader_dtb_makes_one_vm_as_before() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let kernel = dtb::modules(&fdt)
        .find(|m| m.kind == dtb::ModuleKind::Kernel)
        .unwrap();
    let cfg = parse(&fdt, dtb::bootargs(&fdt), 4);
    assert_eq!(cfg.refused, []);
    assert_eq!(cfg.warnings, Vec::<String>::new());
    assert_eq!(
        cfg.vms,
        [VmSpec {
            name: LEGACY_VM_NAME.into(),
            vcpus: 4,
            memory: 512 << 20,
            kernel: kernel.range,
            format: Default::default(),
            initrd: Some(PhysRange {
                base: 0x4c00_0000,
                size: 0xf17fd
            }),
            bootargs: "console=ttyAMA0 bulkhead.test=smoke".into(),
            affinity: vec![None; 4],
            shared_mem: vec![],
            doorbells: vec![],
            lifecycle: Lifecycle::default(),
        }]
    );
    assert_eq!(kernel.range.base, 0x4800_0000);
}

#[test]
fn legacy_sizes_come_from_bulkhead_bootargs() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let cfg = parse(
        &fdt,
        "loglevel=debug bulkhead.guest_mem=256M bulkhead.guest_smp=2",
        4,
    );
    assert_eq!((cfg.vms[0].memory, cfg.vms[0].vcpus), (256 << 20, 2));
    assert_eq!(cfg.vms[0].affinity, [None, None]);
    // The default is every CPU, up to the per-VM limit.
    let cfg = parse(&fdt, "", 16);
    assert_eq!(cfg.vms[0].vcpus, crate::guest_layout::MAX_VCPUS);
}

/// Unreadable sizes fall back to the defaults (`crate::bootargs` says so, once).
#[test]
fn legacy_unreadable_sizes_fall_back() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let cfg = parse(&fdt, "bulkhead.guest_mem=lots bulkhead.guest_smp=two", 4);
    assert_eq!((cfg.vms[0].memory, cfg.vms[0].vcpus), (512 << 20, 4));
    assert_eq!(cfg.warnings, Vec::<String>::new());
}

#[test]
fn legacy_refusals_name_the_bootarg() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    for (args, expected) in [
        (
            "bulkhead.guest_smp=0",
            "guest: bulkhead.guest_smp: 0 vCPUs; a VM needs at least one",
        ),
        (
            "bulkhead.guest_smp=9",
            "guest: bulkhead.guest_smp: 9 vCPUs; a VM has at most 8 (the guest's GIC layout)",
        ),
        (
            "bulkhead.guest_mem=1M",
            "guest: bulkhead.guest_mem: 1 MiB is smaller than the 2 MiB minimum",
        ),
    ] {
        let cfg = parse(&fdt, args, 4);
        assert_eq!(cfg.vms, []);
        let refused: Vec<String> = cfg.refused.iter().map(ToString::to_string).collect();
        assert_eq!(refused, [expected]);
    }
    // More vCPUs than CPUs: they share the CPUs.
    let cfg = parse(&fdt, "bulkhead.guest_smp=5", 4);
    assert_eq!(cfg.refused, []);
    assert_eq!(cfg.vms[0].vcpus, 5);
}

#[test]
fn legacy_modules_use_the_root_cells_and_an_empty_kernel_is_refused() {
    // Modules straight under /chosen use the root's cells (2/2 here), as guest-loader writes.
    let node = chosen(Vec::new())
        .child(
            module("multiboot,kernel", 2, 2, 0x4800_0000, 0x100_0000)
                .prop("bootargs", strs(&["console=ttyAMA0"])),
        )
        .child(module("multiboot,ramdisk", 2, 2, 0x4c00_0000, 0x1000));
    let cfg = parse_blob(&blob(&host(node)), 2);
    assert_eq!(names(&cfg), [LEGACY_VM_NAME]);
    assert_eq!(cfg.vms[0].vcpus, 2);
    assert_eq!(cfg.vms[0].bootargs, "console=ttyAMA0");
    // A zero-size kernel refuses the VM rather than loading nothing.
    let node = chosen(Vec::new()).child(module("multiboot,kernel", 2, 2, 0x4800_0000, 0));
    let cfg = parse_blob(&blob(&host(node)), 2);
    assert_eq!(
        cfg.refused[0].to_string(),
        "guest: multiboot,kernel: empty (0 bytes at 0x48000000)"
    );
}

#[test]
fn legacy_placement_is_where_setup_put_the_guest() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    let cfg = parse(&fdt, "", 4);
    let ram: Vec<PhysRange> = dtb::memory_regions(&fdt).collect();
    let mut avoid = vec![
        PhysRange {
            base: 0x4020_0000,
            size: 0x80_0000,
        },
        PhysRange {
            base: 0x4000_0000,
            size: 0x10_0000,
        },
    ];
    avoid.extend(dtb::modules(&fdt).map(|m| m.range));
    let placed = place(&cfg.vms, &ram, &avoid, 4);
    // The single-VM placement Bulkhead always used: the top of the first bank, 2 MiB aligned.
    let top = ram[0].end() & !0x1f_ffff;
    assert_eq!(
        placed,
        [Ok(Placement {
            ram_pa: top - cfg.vms[0].memory,
            pcpus: vec![0, 1, 2, 3],
            allowed: (0..4).map(|c| CpuSet::single(c).unwrap()).collect(),
            shared: vec![],
        })]
    );
}

#[test]
fn no_kernel_means_no_vm_and_no_error() {
    for name in ["virt-gicv3.dtb", "bcm2711-rpi-4-b.dtb"] {
        let blob = load(name);
        let fdt = dtb::parse(&blob).unwrap();
        assert_eq!(parse(&fdt, "", 4), ParsedConfig::default(), "{name}");
    }
    let ramdisk_only =
        chosen(Vec::new()).child(module("multiboot,ramdisk", 2, 2, 0x4c00_0000, 0x1000));
    assert_eq!(
        parse_blob(&blob(&host(ramdisk_only)), 4),
        ParsedConfig::default()
    );
    let no_chosen = Node::new("").prop("#address-cells", cells(&[2]));
    assert_eq!(parse_blob(&blob(&no_chosen), 4), ParsedConfig::default());
}

// ---------------------------------------------------------------------------------------------
// CpuSet, parse_size, ByteSize

#[test]
fn cpuset_parses_xen_cpu_lists() {
    let set = CpuSet::parse("0-1,3").unwrap();
    assert_eq!(set.iter().collect::<Vec<_>>(), [0, 1, 3]);
    assert!(set.contains(3) && !set.contains(2) && !set.contains(64));
    assert_eq!((set.first(), set.last(), set.len()), (Some(0), Some(3), 3));
    assert_eq!(set.to_string(), "0-1,3");
    assert_eq!(CpuSet::parse(" 1 , 4-7 ").unwrap().to_string(), "1,4-7");
    assert_eq!(CpuSet::parse("63").unwrap().first(), Some(63));
    assert_eq!(CpuSet::parse("2,1,2").unwrap().to_string(), "1-2");
    assert_eq!(CpuSet::parse("5-5").unwrap(), CpuSet::single(5).unwrap());
    assert_eq!(CpuSet::EMPTY.first(), None);
    assert!(CpuSet::EMPTY.is_empty() && CpuSet::single(64).is_none());
    assert_eq!(set.union(CpuSet::parse("2-4").unwrap()).to_string(), "0-4");
}

#[test]
fn cpuset_refuses_malformed_lists() {
    use CpuSetError::*;
    for (text, err) in [
        ("", Empty),
        ("  ", Empty),
        ("a", BadItem),
        ("1,,2", BadItem),
        ("1-", BadItem),
        ("-1", BadItem),
        ("0x1", BadItem),
        ("1-2-3", BadItem),
        ("+1", BadItem),
        ("3-1", Reversed { start: 3, end: 1 }),
        ("64", TooLarge(64)),
        ("0-99999999999999999999999", TooLarge(usize::MAX)),
    ] {
        assert_eq!(CpuSet::parse(text), Err(err), "{text:?}");
    }
    assert_eq!(
        Reversed { start: 3, end: 1 }.to_string(),
        "range 3-1 runs backwards"
    );
}

proptest! {
    #[test]
    fn cpuset_display_parses_back(bits in any::<u64>()) {
        let mut set = CpuSet::EMPTY;
        for cpu in (0..64).filter(|c| bits & (1 << c) != 0) {
            set.insert(cpu);
        }
        if set.is_empty() {
            prop_assert_eq!(CpuSet::parse(&set.to_string()), Err(CpuSetError::Empty));
        } else {
            prop_assert_eq!(CpuSet::parse(&set.to_string()), Ok(set));
        }
    }
}

#[test]
fn parse_size_reads_suffixes_in_any_case() {
    for (text, bytes) in [
        ("512M", 512 << 20),
        ("512m", 512 << 20),
        ("1G", 1 << 30),
        ("1g", 1 << 30),
        ("65536K", 64 << 20),
        ("65536k", 64 << 20),
        ("4096", 4096),
        ("0", 0),
        ("16G", 16 << 30),
    ] {
        assert_eq!(parse_size(text), Some(bytes), "{text}");
    }
}

#[test]
fn parse_size_refuses_garbage_and_overflow() {
    for text in [
        "",
        "M",
        "abc",
        "5MB",
        "5T",
        "+5M",
        "-1",
        " 5M",
        "5 M",
        "1.5G",
        "17179869184G",
        "18446744073709551616",
        "é",
    ] {
        assert_eq!(parse_size(text), None, "{text:?}");
    }
    assert_eq!(parse_size("17179869183G"), Some(17179869183 << 30));
}

#[test]
fn byte_sizes_print_in_the_largest_exact_unit() {
    for (bytes, text) in [
        (0, "0 bytes"),
        (1000, "1000 bytes"),
        (4096, "4 KiB"),
        (0x18_0000, "1536 KiB"),
        (512 << 20, "512 MiB"),
        (3 << 30, "3 GiB"),
        (2 << 40, "2 TiB"),
    ] {
        assert_eq!(ByteSize(bytes).to_string(), text);
    }
}

// ---------------------------------------------------------------------------------------------
// Placement

const MIB: u64 = 1 << 20;
const BANK: PhysRange = PhysRange {
    base: RAM_BASE,
    size: RAM_SIZE,
};

fn spec(name: &str, mib: u64, vcpus: usize) -> VmSpec {
    VmSpec {
        name: name.into(),
        vcpus,
        memory: mib * MIB,
        kernel: PhysRange {
            base: 0x4800_0000,
            size: MIB,
        },
        format: Default::default(),
        initrd: None,
        bootargs: String::new(),
        affinity: vec![None; vcpus],
        shared_mem: vec![],
        doorbells: vec![],
        lifecycle: Lifecycle::default(),
    }
}

fn pinned(mut vm: VmSpec, affinity: &[Option<&str>]) -> VmSpec {
    vm.affinity = affinity
        .iter()
        .map(|a| a.map(|s| CpuSet::parse(s).unwrap()))
        .collect();
    vm
}

/// One set per vCPU, each in `hard-affinity` syntax.
fn cpus(sets: &[&str]) -> Vec<CpuSet> {
    sets.iter().map(|s| CpuSet::parse(s).unwrap()).collect()
}

fn ok(r: &Result<Placement, ConfigError>) -> &Placement {
    r.as_ref().unwrap_or_else(|e| panic!("refused: {e}"))
}

fn err(r: &Result<Placement, ConfigError>) -> String {
    r.as_ref().expect_err("placed").to_string()
}

#[test]
fn place_puts_vms_top_down_first_fit_without_overlap() {
    let cfg = parse_domains(three_domains());
    let avoid = [PhysRange {
        base: RAM_BASE,
        size: 0x100_0000,
    }];
    let placed = place(&cfg.vms, &[BANK], &avoid, CPUS);
    let top = BANK.end();
    assert_eq!(
        placed,
        [
            Ok(Placement {
                ram_pa: top - 256 * MIB,
                pcpus: vec![0],
                allowed: cpus(&["0"]),
                shared: vec![],
            }),
            Ok(Placement {
                ram_pa: top - 384 * MIB,
                pcpus: vec![1, 2],
                allowed: cpus(&["1", "2"]),
                shared: vec![],
            }),
            Ok(Placement {
                ram_pa: top - 448 * MIB,
                pcpus: vec![3],
                allowed: cpus(&["3"]),
                shared: vec![],
            }),
        ]
    );
}

#[test]
fn place_avoids_every_range_and_every_vms_images() {
    let vms = [spec("a", 64, 1), spec("b", 64, 1)];
    // Something at the very top, and b's kernel just below where a lands.
    let top = BANK.end();
    let avoid = [PhysRange {
        base: top - MIB,
        size: MIB,
    }];
    let mut vms = vms.to_vec();
    vms[1].kernel = PhysRange {
        base: top - 70 * MIB,
        size: MIB,
    };
    let placed = place(&vms, &[BANK], &avoid, CPUS);
    // a: below the avoided MiB, 2 MiB aligned.
    assert_eq!(ok(&placed[0]).ram_pa, top - 66 * MIB);
    // b: below b's own kernel.
    assert_eq!(ok(&placed[1]).ram_pa, top - 134 * MIB);
}

#[test]
fn place_uses_the_highest_bank_that_fits() {
    let low = PhysRange {
        base: 0x4000_0000,
        size: 1 << 30,
    };
    let high = PhysRange {
        base: 0x1_0000_0000,
        size: 256 * MIB,
    };
    let vms = [
        spec("small", 128, 1),
        spec("big", 512, 1),
        spec("rest", 128, 1),
    ];
    let placed = place(&vms, &[low, high], &[], CPUS);
    assert_eq!(ok(&placed[0]).ram_pa, high.end() - 128 * MIB);
    assert_eq!(ok(&placed[1]).ram_pa, low.end() - 512 * MIB);
    assert_eq!(ok(&placed[2]).ram_pa, high.base);
}

#[test]
fn place_refuses_what_does_not_fit_and_places_the_rest() {
    let vms = [
        spec("huge", 4096, 2),
        spec("two", 64, 2),
        spec("one", 64, 1),
        spec("also", 64, 1),
    ];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert!(err(&placed[0]).starts_with("huge: memory: no room for 4 GiB of RAM"));
    // The refused VM takes no CPU: the other four vCPUs still get one each, to themselves.
    assert_eq!(ok(&placed[1]).pcpus, [0, 1]);
    assert_eq!(ok(&placed[1]).allowed, cpus(&["0", "1"]));
    assert_eq!(ok(&placed[2]).pcpus, [2]);
    assert_eq!(ok(&placed[3]).allowed, cpus(&["3"]));
}

/// More vCPUs than CPUs: every unpinned vCPU may run anywhere, homes spread evenly in VM
/// order (least-loaded CPU, lowest index on ties).
#[test]
fn place_spreads_overcommitted_vcpus_over_every_cpu() {
    let vms = [spec("a", 64, 4), spec("b", 64, 4)];
    let placed = place(&vms, &[BANK], &[], 2);
    for p in &placed {
        assert_eq!(ok(p).pcpus, [0, 1, 0, 1]);
        assert_eq!(ok(p).allowed, cpus(&["0-1"; 4]));
    }
    // One VM alone with more vCPUs than CPUs (the legacy guest with guest_smp=3 on 2 CPUs).
    let placed = place(&[spec("guest", 64, 3)], &[BANK], &[], 2);
    assert_eq!(ok(&placed[0]).pcpus, [0, 1, 0]);
    assert_eq!(ok(&placed[0]).allowed, cpus(&["0-1"; 3]));
    // Homes stay balanced across VMs of different sizes: 2 + 3 + 2 vCPUs on 3 CPUs.
    let vms = [spec("a", 64, 2), spec("b", 64, 3), spec("c", 64, 2)];
    let placed = place(&vms, &[BANK], &[], 3);
    assert_eq!(ok(&placed[0]).pcpus, [0, 1]);
    assert_eq!(ok(&placed[1]).pcpus, [2, 0, 1]);
    assert_eq!(ok(&placed[2]).pcpus, [2, 0]);
    assert!(
        placed
            .iter()
            .all(|p| ok(p).allowed == cpus(&["0-2"; 3])[..ok(p).pcpus.len()])
    );
}

/// Pinned vCPUs keep their set and choose their homes first; unpinned ones spread over what
/// is left least loaded, and may run anywhere once the CPUs are overcommitted.
#[test]
fn place_mixes_pinned_and_unpinned_vcpus() {
    // 4 CPUs, 5 vCPUs: overcommitted. b's vCPUs are pinned to CPU 0; a and c are free.
    let vms = [
        spec("a", 64, 2),
        pinned(spec("b", 64, 2), &[Some("0"), Some("0")]),
        spec("c", 64, 1),
    ];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert_eq!(ok(&placed[1]).pcpus, [0, 0]);
    assert_eq!(ok(&placed[1]).allowed, cpus(&["0", "0"]));
    assert_eq!(ok(&placed[0]).pcpus, [1, 2]);
    assert_eq!(ok(&placed[0]).allowed, cpus(&["0-3", "0-3"]));
    assert_eq!(ok(&placed[2]).pcpus, [3]);
    assert_eq!(ok(&placed[2]).allowed, cpus(&["0-3"]));
    // Not overcommitted: the unpinned vCPUs get CPUs of their own, those no pinned vCPU may
    // use first, so they stay alone there.
    let vms = [spec("a", 64, 2), pinned(spec("b", 64, 1), &[Some("0-1")])];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert_eq!(ok(&placed[1]).pcpus, [0]);
    assert_eq!(ok(&placed[1]).allowed, cpus(&["0-1"]));
    assert_eq!(ok(&placed[0]).pcpus, [2, 3]);
    assert_eq!(ok(&placed[0]).allowed, cpus(&["2", "3"]));
    // Only when those run out do they take a CPU a pinned vCPU may also use.
    let vms = [spec("a", 64, 3), pinned(spec("b", 64, 1), &[Some("0-1")])];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert_eq!(ok(&placed[0]).pcpus, [2, 3, 1]);
    assert_eq!(ok(&placed[0]).allowed, cpus(&["2", "3", "1"]));
}

/// Three VMs whose sets overlap, on 4 CPUs (6 vCPUs): each vCPU stays in its set, the homes
/// spread over the set's least-loaded CPUs, the most constrained vCPUs choosing first.
#[test]
fn place_three_vms_with_overlapping_affinity_on_4_cpus() {
    let vms = [
        pinned(spec("a", 64, 2), &[Some("0-1"), Some("0-1")]),
        pinned(spec("b", 64, 2), &[Some("1-2"), Some("1-2")]),
        pinned(spec("c", 64, 2), &[Some("1-3"), Some("1")]),
    ];
    let placed = place(&vms, &[BANK], &[], CPUS);
    // c's vCPU 1 (one CPU) first: 1. Then the pairs in VM order: a -> 0, 0 (1 is loaded
    // already, then 0 and 1 tie at 1: lowest); b -> 2, then 1 and 2 tie: 1. c's vCPU 0 -> 3.
    assert_eq!(ok(&placed[2]).pcpus, [3, 1]);
    assert_eq!(ok(&placed[0]).pcpus, [0, 0]);
    assert_eq!(ok(&placed[1]).pcpus, [2, 1]);
    assert_eq!(ok(&placed[0]).allowed, cpus(&["0-1", "0-1"]));
    assert_eq!(ok(&placed[1]).allowed, cpus(&["1-2", "1-2"]));
    assert_eq!(ok(&placed[2]).allowed, cpus(&["1-3", "1"]));
}

#[test]
fn place_honours_hard_affinity() {
    let vms = [
        pinned(spec("a", 64, 2), &[Some("3"), Some("1-2")]),
        pinned(spec("b", 64, 2), &[None, Some("1-2")]),
    ];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert_eq!(ok(&placed[0]).pcpus, [3, 1]);
    assert_eq!(ok(&placed[1]).pcpus, [0, 2]);
}

#[test]
fn place_shares_a_pinned_cpu_and_refuses_a_missing_one() {
    let vms = [
        pinned(spec("a", 64, 1), &[Some("1")]),
        pinned(spec("b", 64, 1), &[Some("1")]),
        pinned(spec("c", 64, 1), &[Some("7")]),
        spec("d", 64, 1),
    ];
    let placed = place(&vms, &[BANK], &[], CPUS);
    // a and b share CPU 1; d, unpinned, gets a CPU of its own.
    assert_eq!(ok(&placed[0]).pcpus, [1]);
    assert_eq!(ok(&placed[1]).pcpus, [1]);
    assert_eq!(ok(&placed[1]).allowed, cpus(&["1"]));
    assert_eq!(
        err(&placed[2]),
        "c: hard-affinity: vCPU 0 is pinned to CPU 7 but the machine has 4 CPUs"
    );
    assert_eq!(ok(&placed[3]).pcpus, [0]);
    assert_eq!(ok(&placed[3]).allowed, cpus(&["0"]));
    // Within a VM too: the set's least-loaded CPU is home, the one-CPU set choosing first.
    let vms = [pinned(
        spec("x", 64, 3),
        &[Some("0-1"), Some("0"), Some("0-1")],
    )];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert_eq!(ok(&placed[0]).pcpus, [1, 0, 0]);
    assert_eq!(ok(&placed[0]).allowed, cpus(&["0-1", "0", "0-1"]));
    // A set with no CPU at all (parse never makes one) is refused, not a panic.
    let mut empty = spec("e", 64, 1);
    empty.affinity = vec![Some(CpuSet::EMPTY)];
    assert_eq!(
        err(&place(&[empty], &[BANK], &[], CPUS)[0]),
        "e: hard-affinity: vCPU 0 may run on no CPU (an empty set)"
    );
}

#[test]
fn place_keeps_cpus_that_later_vms_are_pinned_to() {
    // a has no affinity; b, listed after it, needs CPU 0.
    let vms = [spec("a", 64, 1), pinned(spec("b", 64, 1), &[Some("0")])];
    let placed = place(&vms, &[BANK], &[], CPUS);
    assert_eq!(ok(&placed[0]).pcpus, [1]);
    assert_eq!(ok(&placed[1]).pcpus, [0]);
    // Within a VM, the pinned vCPU chooses first.
    let vms = [pinned(spec("a", 64, 2), &[None, Some("0")])];
    assert_eq!(ok(&place(&vms, &[BANK], &[], CPUS)[0]).pcpus, [1, 0]);
}

#[test]
fn place_refuses_degenerate_specs_without_panicking() {
    let mut no_affinity_list = spec("short", 64, 2);
    no_affinity_list.affinity.clear();
    let vms = [spec("none", 64, 0), spec("empty", 0, 1), no_affinity_list];
    let placed = place(&vms, &[BANK, PhysRange { base: 0, size: 0 }], &[], 2);
    assert_eq!(err(&placed[0]), "none: cpus: 0 vCPUs");
    assert!(err(&placed[1]).starts_with("empty: memory: no room for 0 bytes"));
    assert_eq!(ok(&placed[2]).pcpus, [0, 1]);
    assert_eq!(place(&[], &[BANK], &[], 4), []);
    assert!(place(&[spec("a", 64, 1)], &[], &[], 4)[0].is_err());
    assert_eq!(
        err(&place(&[spec("many", 64, 9)], &[BANK], &[], 4)[0]),
        "many: cpus: 9 vCPUs; a VM has at most 8 (the guest's GIC layout)"
    );
    assert_eq!(
        err(&place(&[spec("a", 64, 1)], &[BANK], &[], 0)[0]),
        "a: cpus: the machine has no CPU"
    );
}

fn arb_vm() -> impl Strategy<Value = VmSpec> {
    (
        1u64..=384,
        1usize..=3,
        prop::collection::vec(prop::option::of(0u64..(1 << 6)), 3),
        0u64..0x100,
        prop::collection::vec((0usize..4, prop::option::weighted(0.3, 0u64..0x800)), 0..3),
    )
        .prop_map(|(mib4k, vcpus, pins, kernel_mib, shared)| {
            let mut vm = spec("vm", 0, vcpus);
            vm.memory = mib4k * 2 * MIB - (mib4k % 3) * 4096;
            vm.kernel.base = RAM_BASE + kernel_mib * 8 * MIB;
            vm.affinity = pins[..vcpus]
                .iter()
                .map(|p| {
                    p.filter(|&b| b != 0).map(|bits| {
                        let mut s = CpuSet::EMPTY;
                        (0..6).filter(|c| bits & (1 << c) != 0).for_each(|c| {
                            s.insert(c);
                        });
                        s
                    })
                })
                .collect();
            // Ids of fixed sizes (parse makes them agree), some with a host address in MiB.
            const SIZES: [u64; 4] = [2 * MIB, 0x3000, 4 * MIB, MIB + 0x1000];
            for (id, pa_mib) in shared {
                let id = ["a", "b", "c", "d"][id];
                if vm.shared_mem.iter().all(|s| s.id != id) {
                    vm.shared_mem.push(SharedMemSpec {
                        id: id.into(),
                        ipa: 0,
                        size: SIZES[id.as_bytes()[0] as usize - b'a' as usize],
                        host_pa: pa_mib.map(|m| RAM_BASE + m * MIB),
                        owner: false,
                    });
                }
            }
            vm
        })
}

fn arb_range(max_mib: u64) -> impl Strategy<Value = PhysRange> {
    (0u64..0x1000, 0u64..max_mib).prop_map(|(base_mib, mib)| PhysRange {
        base: RAM_BASE + base_mib * MIB + 4096 * (base_mib % 5),
        size: mib * MIB,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever is asked, placements never overlap anything, stay in RAM, are 2 MiB aligned.
    /// Every vCPU's home is a CPU of its allowed set: its affinity if pinned, else, when the
    /// placed VMs have no more vCPUs than there are CPUs, its home alone (and no other vCPU
    /// has that home), else every CPU. Without any pin the homes are balanced. A VM is refused
    /// for its affinity exactly when it names a CPU the machine lacks. Shared regions stay in
    /// RAM too, one host range per id, clear of everything but themselves.
    #[test]
    fn config_placement_invariants(
        vms in prop::collection::vec(arb_vm(), 0..6),
        banks in prop::collection::vec(arb_range(2048), 1..4),
        avoid in prop::collection::vec(arb_range(64), 0..5),
        cpu_count in 1usize..8,
    ) {
        let placed = place(&vms, &banks, &avoid, cpu_count);
        prop_assert_eq!(placed.len(), vms.len());
        let every_cpu = CpuSet::parse(&format!("0-{}", cpu_count - 1)).unwrap();
        let placed_vcpus: usize =
            vms.iter().zip(&placed).filter(|(_, p)| p.is_ok()).map(|(vm, _)| vm.vcpus).sum();
        let overcommitted = placed_vcpus > cpu_count;
        let any_pin = vms.iter().flat_map(|vm| &vm.affinity).any(Option::is_some);
        // How many vCPUs have each CPU as home; the homes of unpinned vCPUs alone there.
        let mut load = vec![0usize; cpu_count];
        let mut alone = Vec::new();
        for (vm, p) in vms.iter().zip(&placed) {
            let missing_cpu = vm.affinity.iter().flatten().any(|set| set.last() >= Some(cpu_count));
            let refused_for_affinity = matches!(p, Err(e) if e.property == "hard-affinity");
            prop_assert_eq!(refused_for_affinity, missing_cpu, "{:?}", p);
        }
        let mut regions: Vec<(String, PhysRange)> = Vec::new();
        let mut rams: Vec<PhysRange> = Vec::new();
        let images: Vec<PhysRange> =
            vms.iter().flat_map(|v| [Some(v.kernel), v.initrd]).flatten().collect();
        for (vm, p) in vms.iter().zip(&placed) {
            let Ok(p) = p else { continue };
            let ram = PhysRange { base: p.ram_pa, size: vm.memory };
            prop_assert_eq!(p.ram_pa % (2 * MIB), 0);
            prop_assert!(banks.iter().any(|b| b.base <= ram.base && ram.end() <= b.end()));
            prop_assert!(!avoid.iter().chain(&images).chain(&rams).any(|a| a.overlaps(&ram)));
            rams.push(ram);
            prop_assert_eq!(p.pcpus.len(), vm.vcpus);
            prop_assert_eq!(p.shared.len(), vm.shared_mem.len());
            for (s, &base) in vm.shared_mem.iter().zip(&p.shared) {
                prop_assert!(s.host_pa.is_none_or(|pa| pa == base));
                let range = PhysRange { base, size: s.size };
                prop_assert!(banks.iter().any(|b| b.base <= base && range.end() <= b.end()));
                match regions.iter().find(|(id, _)| *id == s.id) {
                    Some((_, r)) => prop_assert_eq!(*r, range),
                    None => regions.push((s.id.clone(), range)),
                }
            }
            prop_assert_eq!(p.allowed.len(), vm.vcpus);
            for (v, (&home, &allowed)) in p.pcpus.iter().zip(&p.allowed).enumerate() {
                prop_assert!(home < cpu_count);
                prop_assert!(allowed.contains(home));
                load[home] += 1;
                match vm.affinity[v] {
                    Some(set) => prop_assert_eq!(allowed, set),
                    None if overcommitted => prop_assert_eq!(allowed, every_cpu),
                    None => {
                        prop_assert_eq!(Some(allowed), CpuSet::single(home));
                        alone.push(home);
                    }
                }
            }
        }
        for home in alone {
            prop_assert_eq!(load[home], 1, "CPU {} is home to more than its vCPU", home);
        }
        if !any_pin && placed_vcpus > 0 {
            let (most, least) = (load.iter().max().unwrap(), load.iter().min().unwrap());
            prop_assert!(most - least <= 1, "unbalanced homes {:?}", load);
        }
        for (i, (id, r)) in regions.iter().enumerate() {
            prop_assert!(
                !avoid.iter().chain(&images).chain(&rams).any(|a| a.overlaps(r)),
                "region {} at {:x?} overlaps", id, r
            );
            prop_assert!(!regions[i + 1..].iter().any(|(_, o)| o.overlaps(r)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Links between VMs: static shared memory (booting.txt) and doorbells

const GIB: u64 = 1 << 30;

/// domU1 owns "pingpong" at a given host address; domU2 borrows it without one. Both share
/// "auto", which no one places. Doorbells go both ways, and domU1 rings domU3 too.
fn linked_domains() -> Vec<Node> {
    let mut d = three_domains();
    d[0] = d[0]
        .clone()
        .child(shm(
            "shm@0",
            "pingpong",
            Some("owner"),
            2,
            2,
            Some(0x6000_0000),
            4 * GIB,
            2 * MIB,
        ))
        .child(shm22("shm@1", "auto", None, 0x7000_0000, 4 * MIB))
        .child(bell("bell@0", "domU2", 5))
        .child(bell("bell@1", "domU3", 5));
    d[1] = d[1]
        .clone()
        .child(shm(
            "shm@0",
            "pingpong",
            Some("borrower"),
            2,
            2,
            None,
            0x7fe0_0000,
            2 * MIB,
        ))
        .child(shm22("shm@1", "auto", None, 0x8000_0000, 4 * MIB))
        .child(bell("bell@0", "domU1", 5));
    d
}

#[test]
fn two_vms_share_regions_with_and_without_a_host_address() {
    let cfg = parse_domains(linked_domains());
    assert_eq!(cfg.refused, []);
    assert_eq!(cfg.warnings, Vec::<String>::new());
    assert_eq!(
        cfg.vms[0].shared_mem,
        [
            SharedMemSpec {
                id: "pingpong".into(),
                ipa: 4 * GIB,
                size: 2 * MIB,
                host_pa: Some(0x6000_0000),
                owner: true,
            },
            SharedMemSpec {
                id: "auto".into(),
                ipa: 0x7000_0000,
                size: 4 * MIB,
                host_pa: None,
                owner: false,
            },
        ]
    );
    assert_eq!(
        cfg.vms[1].shared_mem[0],
        SharedMemSpec {
            id: "pingpong".into(),
            ipa: 0x7fe0_0000,
            size: 2 * MIB,
            host_pa: None,
            owner: false,
        }
    );
    assert_eq!(cfg.vms[2].shared_mem, []);
}

#[test]
fn doorbells_go_both_ways_numbered_in_dt_order() {
    let cfg = parse_domains(linked_domains());
    let bell = |peer: &str, spi| DoorbellSpec {
        peer: peer.into(),
        spi,
    };
    assert_eq!(cfg.vms[0].doorbells, [bell("domU2", 5), bell("domU3", 5)]);
    assert_eq!(cfg.vms[1].doorbells, [bell("domU1", 5)]);
    assert_eq!(cfg.vms[2].doorbells, []);
}

#[test]
fn shm_takes_the_domain_cells_and_role_defaults_to_borrower() {
    // booting.txt's example: one address and one size cell, host address first.
    let mut d = domain_cells("domU1", 1, 1, 64, 1, 0x5000_0000);
    d = d
        .child(shm(
            "shm@1",
            "my-shared-mem-1",
            None,
            1,
            1,
            Some(0x6000_0000),
            0x6000_0000,
            0x1000_0000,
        ))
        .child(shm(
            "shm@2",
            "my-shared-mem-2",
            Some("owner"),
            1,
            1,
            None,
            0x8000_0000,
            0x1000,
        ));
    let cfg = parse_domains(vec![d]);
    assert_eq!(cfg.refused, []);
    let shared = &cfg.vms[0].shared_mem;
    assert_eq!(
        (
            shared[0].host_pa,
            shared[0].ipa,
            shared[0].size,
            shared[0].owner
        ),
        (Some(0x6000_0000), 0x6000_0000, 0x1000_0000, false)
    );
    assert_eq!(
        (
            shared[1].host_pa,
            shared[1].ipa,
            shared[1].size,
            shared[1].owner
        ),
        (None, 0x8000_0000, 0x1000, true)
    );
}

#[test]
fn shm_may_sit_below_ram_between_the_guest_devices() {
    // 0x0 .. GICD and PL011 .. RAM are free guest address space.
    let d = domain("domU1", 64, 1, 0x5000_0000)
        .child(shm22("shm@0", "low", None, 0, 0x10_0000))
        .child(shm22("shm@1", "gap", None, 0x0a00_0000, 0x10_0000));
    assert_eq!(parse_domains(vec![d]).refused, []);
}

#[test]
fn refuses_malformed_shm_nodes() {
    let with = |node: Node| move |d: &mut Node| d.children.push(node);
    let good = || {
        shm22(
            "shm@0",
            "pingpong",
            Some(0x6000_0000),
            0x1_0000_0000,
            2 * MIB,
        )
    };
    let mut n = good();
    n.remove("xen,shared-mem");
    refuses_only_domu2(with(n), "shm@0/xen,shared-mem", "missing");
    let mut n = good();
    n.set("xen,shared-mem", cells(&[0, 1, 2]));
    refuses_only_domu2(
        with(n),
        "shm@0/xen,shared-mem",
        "12 bytes; expected 16 (<guest-IPA size>) or 24 (<host-PA guest-IPA size>) with \
         #address-cells 2 and #size-cells 2",
    );
    let mut n = good();
    n.remove("xen,shm-id");
    refuses_only_domu2(with(n), "shm@0/xen,shm-id", "missing");
    let mut n = good();
    n.set("xen,shm-id", strs(&[""]));
    refuses_only_domu2(with(n), "shm@0/xen,shm-id", "empty");
    let mut n = good();
    n.set("xen,shm-id", vec![0xff, 0]);
    refuses_only_domu2(with(n), "shm@0/xen,shm-id", "not a single UTF-8 string");
    refuses_only_domu2(
        with(shm22("shm@0", "sixteen-chars-id", None, 4 * GIB, 2 * MIB)),
        "shm@0/xen,shm-id",
        "\"sixteen-chars-id\" is 16 characters; Xen's limit is 15",
    );
    refuses_only_domu2(
        with(shm(
            "shm@0",
            "x",
            Some("lender"),
            2,
            2,
            None,
            4 * GIB,
            2 * MIB,
        )),
        "shm@0/role",
        "\"lender\"; expected \"owner\" or \"borrower\"",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, 4 * GIB, 0)),
        "shm@0/xen,shared-mem",
        "zero size at guest 0x100000000",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, 4 * GIB, 6 * 1024)),
        "shm@0/xen,shared-mem",
        "6 KiB is not a multiple of 4 KiB",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, 4 * GIB + 0x800, 2 * MIB)),
        "shm@0/xen,shared-mem",
        "guest address 0x100000800 is not 4 KiB aligned",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", Some(0x6000_0100), 4 * GIB, 2 * MIB)),
        "shm@0/xen,shared-mem",
        "host address 0x60000100 is not 4 KiB aligned",
    );
    refuses_only_domu2(
        with(shm22(
            "shm@0",
            "x",
            Some(u64::MAX - 0xfff),
            4 * GIB,
            2 * MIB,
        )),
        "shm@0/xen,shared-mem",
        "runs past the end of the address space",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, (1 << 40) - MIB, 2 * MIB)),
        "shm@0/xen,shared-mem",
        "guest 0xfffff00000..0x10000100000 (2 MiB) runs past the 1 TiB guest address space",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, u64::MAX - 0xfff, 2 * MIB)),
        "shm@0/xen,shared-mem",
        "runs past the 1 TiB guest address space",
    );
}

#[test]
fn refuses_shm_over_guest_ram_devices_or_another_region() {
    let with = |node: Node| move |d: &mut Node| d.children.push(node);
    // domU2 has 128 MiB at 0x40000000.
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, 0x47ff_f000, 0x2000)),
        "shm@0/xen,shared-mem",
        "guest 0x47fff000..0x48001000 overlaps the VM's RAM at 0x40000000..0x48000000",
    );
    refuses_only_domu2(
        with(shm22("shm@0", "x", None, 0x3fff_f000, 0x2000)),
        "shm@0/xen,shared-mem",
        "overlaps the VM's RAM",
    );
    for (ipa, what) in [
        (
            0x0800_0000,
            "the guest's GIC distributor at 0x8000000..0x8010000",
        ),
        (
            0x0801_1000,
            "the guest's GICv2 CPU interface at 0x8010000..0x8012000",
        ),
        (
            0x0819_0000,
            "the guest's GICv3 redistributors at 0x80a0000..0x81a0000",
        ),
        (0x0900_0000, "the guest's PL011 at 0x9000000..0x9001000"),
    ] {
        refuses_only_domu2(
            with(shm22("shm@0", "x", None, ipa, 0x1000)),
            "shm@0/xen,shared-mem",
            what,
        );
    }
    refuses_only_domu2(
        |d| {
            d.children.push(shm22("shm@0", "a", None, 4 * GIB, 4 * MIB));
            d.children
                .push(shm22("shm@1", "b", None, 4 * GIB + 2 * MIB, 4 * MIB));
        },
        "shm@1/xen,shared-mem",
        "guest 0x100200000..0x100600000 overlaps shm@0 (\"a\") at 0x100000000..0x100400000",
    );
    refuses_only_domu2(
        |d| {
            d.children.push(shm22("shm@0", "a", None, 4 * GIB, 2 * MIB));
            d.children.push(shm22("shm@1", "a", None, 8 * GIB, 2 * MIB));
        },
        "shm@1/xen,shm-id",
        "\"a\" is already mapped by shm@0",
    );
}

#[test]
fn refuses_a_later_vm_that_disagrees_on_a_shared_id() {
    let region = |d: &mut [Node], i: usize, node: Node| d[i].children.push(node);
    refuses_only_domu2_of(
        CPUS,
        |d| {
            region(d, 0, shm22("shm@0", "pingpong", None, 4 * GIB, 2 * MIB));
            region(d, 1, shm22("shm@0", "pingpong", None, 4 * GIB, 4 * MIB));
            region(d, 2, shm22("shm@0", "pingpong", None, 4 * GIB, 2 * MIB));
        },
        "shm@0/xen,shared-mem",
        "id \"pingpong\" is 2 MiB in domU1 but 4 MiB here",
    );
    refuses_only_domu2_of(
        CPUS,
        |d| {
            region(
                d,
                0,
                shm22("shm@0", "p", Some(0x6000_0000), 4 * GIB, 2 * MIB),
            );
            region(
                d,
                1,
                shm22("shm@0", "p", Some(0x6200_0000), 4 * GIB, 2 * MIB),
            );
        },
        "shm@0/xen,shared-mem",
        "id \"p\" is at host 0x60000000 in domU1 but 0x62000000 here",
    );
    refuses_only_domu2_of(
        CPUS,
        |d| {
            region(
                d,
                0,
                shm("shm@0", "p", Some("owner"), 2, 2, None, 4 * GIB, 2 * MIB),
            );
            region(
                d,
                1,
                shm("shm@0", "p", Some("owner"), 2, 2, None, 4 * GIB, 2 * MIB),
            );
            region(
                d,
                2,
                shm("shm@0", "p", Some("borrower"), 2, 2, None, 4 * GIB, 2 * MIB),
            );
        },
        "shm@0/role",
        "id \"p\" already has an owner, domU1; a region has at most one",
    );
    refuses_only_domu2_of(
        CPUS,
        |d| {
            region(
                d,
                0,
                shm22("shm@0", "p", Some(0x6000_0000), 4 * GIB, 4 * MIB),
            );
            region(
                d,
                1,
                shm22("shm@0", "q", Some(0x6020_0000), 4 * GIB, 2 * MIB),
            );
        },
        "shm@0/xen,shared-mem",
        "host 0x60200000..0x60400000 overlaps id \"p\" at 0x60000000..0x60400000 (from domU1)",
    );
}

#[test]
fn a_host_address_given_by_one_vm_is_the_regions_for_all() {
    let mut d = three_domains();
    d[0].children
        .push(shm22("shm@0", "p", None, 4 * GIB, 2 * MIB));
    d[1].children
        .push(shm22("shm@0", "p", Some(0x6000_0000), 4 * GIB, 2 * MIB));
    d[2].children
        .push(shm22("shm@0", "p", None, 4 * GIB, 2 * MIB));
    let cfg = parse_domains(d);
    assert_eq!(cfg.refused, []);
    let placed = place(&cfg.vms, &[BANK], &[], CPUS);
    for p in &placed {
        assert_eq!(ok(p).shared, [0x6000_0000]);
    }
}

#[test]
fn refuses_bad_doorbells() {
    let with = |node: Node| move |d: &mut Node| d.children.push(node);
    refuses_only_domu2(
        with(bell("bell@0", "domU2", 5)),
        "bell@0/peer",
        "a VM cannot ring itself",
    );
    let mut b = bell("bell@0", "domU1", 5);
    b.remove("peer");
    refuses_only_domu2(with(b), "bell@0/peer", "missing");
    refuses_only_domu2(with(bell("bell@0", "", 5)), "bell@0/peer", "empty");
    for spi in [0, 1, 2, 96, u32::MAX] {
        refuses_only_domu2(
            with(bell("bell@0", "domU1", spi)),
            "bell@0/bulkhead,spi",
            &format!(
                "SPI {spi}; doorbells use SPIs 3 to 95 (SPI 0 is kept free, SPI 1 is the \
                 guest's PL011, SPI 2 its PL031"
            ),
        );
    }
    let mut b = bell("bell@0", "domU1", 5);
    b.remove("bulkhead,spi");
    refuses_only_domu2(with(b), "bell@0/bulkhead,spi", "missing");
    let b = bell("bell@0", "domU1", 5).prop("bulkhead,spi", cells(&[5, 6]));
    refuses_only_domu2(with(b), "bell@0/bulkhead,spi", "8 bytes");
    let b = bell("bell@0", "domU1", 5).prop("interrupts", cells(&[0, 5, 4]));
    refuses_only_domu2(
        with(b),
        "bell@0/interrupts",
        "a doorbell's SPI is `bulkhead,spi = <N>`",
    );
    refuses_only_domu2(
        with(bell("bell@0", "domU9", 5)),
        "bell@0/peer",
        "\"domU9\": no xen,domain node has this name",
    );
}

#[test]
fn refuses_a_second_ringer_of_one_peer_spi() {
    refuses_only_domu2_of(
        CPUS,
        |d| {
            d[0].children.push(bell("bell@0", "domU3", 7));
            d[1].children.push(bell("bell@0", "domU3", 8));
            d[1].children.push(bell("bell@1", "domU3", 7));
        },
        "bell@1/bulkhead,spi",
        "SPI 7 of domU3 is already rung by domU1 (bell@0); one ringer per peer SPI",
    );
    refuses_only_domu2(
        |d| {
            d.children.push(bell("bell@0", "domU3", 7));
            d.children.push(bell("bell@1", "domU3", 7));
        },
        "bell@1/bulkhead,spi",
        "already rung by this VM (bell@0)",
    );
    // One SPI number into different peers, or different SPIs into one peer, is fine.
    let mut d = three_domains();
    d[0].children.push(bell("bell@0", "domU3", 7));
    d[1].children.push(bell("bell@0", "domU1", 7));
    d[1].children.push(bell("bell@1", "domU3", 8));
    assert_eq!(parse_domains(d).refused, []);
}

#[test]
fn a_doorbell_to_a_vm_that_does_not_start_stays_numbered_and_warns() {
    let mut d = three_domains();
    d[0].children.push(bell("bell@0", "domU2", 5));
    d[0].children.push(bell("bell@1", "domU3", 5));
    d[1].remove("cpus");
    d[2].set("status", strs(&["disabled"]));
    let cfg = parse_domains(d);
    assert_eq!(names(&cfg), ["domU1"]);
    assert_eq!(
        cfg.refused[0].to_string(),
        "domU2: cpus: missing (number of vCPUs)"
    );
    assert_eq!(cfg.vms[0].doorbells.len(), 2);
    assert_eq!(
        cfg.warnings,
        [
            "domU3: status is \"disabled\"; not started",
            "domU1: bell@0: peer \"domU2\" does not start; ringing doorbell 0 does nothing",
            "domU1: bell@1: peer \"domU3\" does not start; ringing doorbell 1 does nothing",
        ]
    );
}

#[test]
fn a_vm_refused_across_vms_registers_nothing() {
    // domU2 is refused for its doorbell; its owner claim must not refuse domU3.
    let mut d = three_domains();
    d[1].children.push(shm(
        "shm@0",
        "p",
        Some("owner"),
        2,
        2,
        None,
        4 * GIB,
        2 * MIB,
    ));
    d[1].children.push(bell("bell@0", "nobody", 5));
    d[2].children.push(shm(
        "shm@0",
        "p",
        Some("owner"),
        2,
        2,
        None,
        4 * GIB,
        2 * MIB,
    ));
    let cfg = parse_domains(d);
    assert_eq!(names(&cfg), ["domU1", "domU3"]);
    assert_eq!(cfg.refused.len(), 1);
    assert_eq!(cfg.refused[0].property, "bell@0/peer");
}

#[test]
fn unknown_properties_of_link_nodes_warn_once_each() {
    let d = domain("domU1", 64, 1, 0x5000_0000)
        .child(shm22("shm@0", "p", None, 4 * GIB, 2 * MIB).prop("xen,offset", cells(&[0, 0])))
        .child(bell("bell@0", "domU2", 5).prop("colour", strs(&["red"])));
    let cfg = parse_domains(vec![d, domain("domU2", 64, 1, 0x5400_0000)]);
    assert_eq!(cfg.refused, []);
    assert_eq!(
        cfg.warnings,
        [
            "domU1: shm@0: unknown property `xen,offset`; ignored",
            "domU1: bell@0: unknown property `colour`; ignored",
        ]
    );
}

fn shared_spec(id: &str, size: u64, host_pa: Option<u64>) -> SharedMemSpec {
    SharedMemSpec {
        id: id.into(),
        ipa: 4 * GIB,
        size,
        host_pa,
        owner: false,
    }
}

#[test]
fn place_gives_every_vm_of_an_id_one_host_region_clear_of_everything() {
    let cfg = parse_domains(linked_domains());
    let avoid = [PhysRange {
        base: RAM_BASE,
        size: 0x100_0000,
    }];
    let placed = place(&cfg.vms, &[BANK], &avoid, CPUS);
    let top = BANK.end();
    // "pingpong" is where domU1 says; "auto" is allocated below domU1's RAM, 2 MiB aligned.
    assert_eq!(ok(&placed[0]).ram_pa, top - 256 * MIB);
    assert_eq!(ok(&placed[0]).shared, [0x6000_0000, top - 260 * MIB]);
    assert_eq!(ok(&placed[1]).shared, [0x6000_0000, top - 260 * MIB]);
    assert_eq!(ok(&placed[1]).ram_pa, top - 388 * MIB);
    assert_eq!(ok(&placed[2]).shared, []);
    let mut used: Vec<PhysRange> = avoid.to_vec();
    for (vm, p) in cfg.vms.iter().zip(&placed) {
        used.push(PhysRange {
            base: ok(p).ram_pa,
            size: vm.memory,
        });
    }
    used.push(PhysRange {
        base: 0x6000_0000,
        size: 2 * MIB,
    });
    used.push(PhysRange {
        base: top - 260 * MIB,
        size: 4 * MIB,
    });
    for (i, a) in used.iter().enumerate() {
        assert!(used[i + 1..].iter().all(|b| !a.overlaps(b)), "{used:x?}");
    }
}

#[test]
fn place_aligns_small_regions_to_pages_and_refuses_what_does_not_fit() {
    let mut a = spec("a", 64, 1);
    a.shared_mem = vec![shared_spec("small", 0x3000, None)];
    let mut b = spec("b", 64, 1);
    b.shared_mem = vec![shared_spec("huge", 4 * GIB, None)];
    let mut c = spec("c", 64, 1);
    c.shared_mem = vec![shared_spec("small", 0x3000, None)];
    let placed = place(&[a, b, c], &[BANK], &[], CPUS);
    let top = BANK.end();
    assert_eq!(ok(&placed[0]).shared, [top - 64 * MIB - 0x3000]);
    assert_eq!(
        err(&placed[1]),
        "b: xen,shared-mem: id \"huge\": no room for 4 GiB of shared memory (clear of Bulkhead, \
         the DTB, the modules, reserved memory and the VMs)"
    );
    // The refused VM took nothing: c goes right below a's region.
    assert_eq!(ok(&placed[2]).ram_pa, top - 130 * MIB);
    assert_eq!(ok(&placed[2]).shared, [top - 64 * MIB - 0x3000]);
}

#[test]
fn place_refuses_a_host_address_outside_ram_or_over_the_hypervisor() {
    let hypervisor = PhysRange {
        base: 0x4020_0000,
        size: 0x40_0000,
    };
    let with = |name: &str, id: &str, pa: u64| {
        let mut vm = spec(name, 64, 1);
        vm.shared_mem = vec![shared_spec(id, 2 * MIB, Some(pa))];
        vm
    };
    let vms = [
        with("a", "outside", 0x1_0000_0000),
        with("b", "straddles", BANK.end() - MIB),
        with("c", "over", 0x4040_0000),
        with("d", "over", 0x4040_0000),
        with("e", "image", 0x4800_0000),
        with("f", "fine", 0x6000_0000),
    ];
    let placed = place(&vms, &[BANK], &[hypervisor], CPUS);
    assert_eq!(
        err(&placed[0]),
        "a: xen,shared-mem: id \"outside\": host 0x100000000..0x100200000 is not inside one RAM \
         bank"
    );
    assert!(err(&placed[1]).ends_with("host 0xbff00000..0xc0100000 is not inside one RAM bank"));
    for p in &placed[2..4] {
        assert!(
            err(p).ends_with(
                "host 0x40400000..0x40600000 overlaps 0x40200000..0x40600000 (Bulkhead, the DTB, \
                 a module or reserved memory)"
            ),
            "{}",
            err(p)
        );
    }
    // Over every VM's kernel (spec() puts them at 0x48000000).
    assert!(err(&placed[4]).contains("overlaps 0x48000000..0x48100000"));
    assert_eq!(ok(&placed[5]).shared, [0x6000_0000]);
}

#[test]
fn place_refuses_specs_that_disagree_on_an_id() {
    let mut a = spec("a", 64, 1);
    a.shared_mem = vec![shared_spec("p", 2 * MIB, None)];
    let mut b = spec("b", 64, 1);
    b.shared_mem = vec![shared_spec("p", 4 * MIB, None)];
    let mut c = spec("c", 64, 1);
    c.shared_mem = vec![shared_spec("q", 2 * MIB, Some(0x6000_0000))];
    let mut d = spec("d", 64, 1);
    d.shared_mem = vec![shared_spec("q", 2 * MIB, Some(0x6200_0000))];
    let placed = place(&[a, b, c, d], &[BANK], &[], CPUS);
    assert!(ok(&placed[0]).shared.len() == 1);
    assert!(err(&placed[1]).ends_with("4 MiB here but 2 MiB where it was placed"));
    assert_eq!(ok(&placed[2]).shared, [0x6000_0000]);
    assert!(err(&placed[3]).ends_with("host address differs from the region's, 0x60000000"));
}

// ---------------------------------------------------------------------------------------------
// Life-cycle policies (xl.cfg's on_poweroff / on_reboot / on_crash)

#[test]
fn lifecycle_node_properties_win_over_bootargs_which_win_over_defaults() {
    let mut domains = three_domains();
    domains[0].set("on_crash", strs(&["preserve"]));
    domains[0].set("on_reboot", strs(&["destroy"]));
    domains[1].set("on_poweroff", strs(&["restart"]));
    let root = host(chosen(domains).prop(
        "bootargs",
        strs(&["bulkhead.on_crash=restart bulkhead.reset_limit=4"]),
    ));
    let cfg = parse_blob(&blob(&root), CPUS);
    assert_eq!(cfg.warnings, Vec::<String>::new());
    let l: Vec<Lifecycle> = cfg.vms.iter().map(|v| v.lifecycle).collect();
    let want = |on_poweroff, on_reboot, on_crash| Lifecycle {
        on_poweroff,
        on_reboot,
        on_crash,
        reset_limit: Some(4),
    };
    use Policy::*;
    assert_eq!(
        l,
        [
            want(Destroy, Destroy, Preserve),
            want(Restart, Restart, Restart),
            want(Destroy, Restart, Restart),
        ]
    );
}

#[test]
fn lifecycle_legacy_vm_takes_the_bootargs() {
    let root = host(
        Node::new("chosen")
            .prop(
                "bootargs",
                strs(&["bulkhead.on_reboot=destroy bulkhead.reset_limit=off"]),
            )
            .child(module("multiboot,kernel", 2, 2, 0x5000_0000, 0x10_0000)),
    );
    let cfg = parse_blob(&blob(&root), CPUS);
    assert_eq!(cfg.vms.len(), 1, "{cfg:#?}");
    let l = cfg.vms[0].lifecycle;
    assert_eq!(l.on_reboot, Policy::Destroy);
    assert_eq!(
        (l.on_poweroff, l.on_crash),
        (Policy::Destroy, Policy::Destroy)
    );
    assert_eq!(l.reset_limit, None);
}

#[test]
fn lifecycle_xen_only_words_warn_and_keep_the_default() {
    let mut domains = three_domains();
    domains[1].set("on_crash", strs(&["coredump-restart"]));
    let cfg = parse_domains(domains);
    assert_eq!(names(&cfg), ["domU1", "domU2", "domU3"]);
    assert_eq!(cfg.vms[1].lifecycle.on_crash, Policy::Destroy);
    assert_eq!(
        cfg.warnings,
        [
            "domU2: on_crash = \"coredump-restart\": a Xen toolstack action Bulkhead does not \
          have (accepted: destroy, restart, preserve); using destroy"
        ]
    );
}

#[test]
fn lifecycle_refuses_a_vm_with_a_malformed_policy() {
    refuses_only_domu2(
        |d| d.set("on_reboot", strs(&["reboot"])),
        "on_reboot",
        "\"reboot\": not destroy, restart or preserve",
    );
    refuses_only_domu2(
        |d| d.set("on_crash", cells(&[1])),
        "on_crash",
        "not a single UTF-8 string",
    );
    refuses_only_domu2(
        |d| d.set("on_poweroff", strs(&[""])),
        "on_poweroff",
        "\"\": not destroy, restart or preserve",
    );
}

// ---------------------------------------------------------------------------------------------
// Kernel format requests (raw only when asked)

#[test]
fn kernel_format_defaults_to_detect_and_raw_is_asked_for_per_vm() {
    let mut domains = three_domains();
    domains[1]
        .sub("module@54000000")
        .set(FORMAT_PROPERTY, strs(&["raw"]));
    let cfg = parse_domains(domains);
    assert_eq!(cfg.refused, []);
    let formats: Vec<GuestFormat> = cfg.vms.iter().map(|v| v.format).collect();
    assert_eq!(
        formats,
        [GuestFormat::Detect, GuestFormat::Raw, GuestFormat::Detect]
    );
}

#[test]
fn an_unknown_kernel_format_refuses_the_vm_naming_the_property() {
    let mut domains = three_domains();
    domains[1]
        .sub("module@54000000")
        .set(FORMAT_PROPERTY, strs(&["zImage"]));
    let cfg = parse_domains(domains);
    assert_eq!(cfg.refused.len(), 1, "{:?}", cfg.refused);
    assert_eq!(
        cfg.refused[0].to_string(),
        "domU2: module@54000000/bulkhead,format: \"zImage\"; expected \"raw\" or \"auto\""
    );
}

#[test]
fn legacy_kernel_format_comes_from_a_bootarg() {
    let blob = load("virt-gicv3-guest-loader.dtb");
    let fdt = dtb::parse(&blob).unwrap();
    assert_eq!(parse(&fdt, "", 4).vms[0].format, GuestFormat::Detect);
    let cfg = parse(&fdt, "bulkhead.guest_format=raw", 4);
    assert_eq!(cfg.vms[0].format, GuestFormat::Raw);
    // A malformed value is the bootargs' business (one warning there); the guest's format is
    // then detected.
    let cfg = parse(&fdt, "bulkhead.guest_format=elf", 4);
    assert_eq!(cfg.vms[0].format, GuestFormat::Detect);
}
