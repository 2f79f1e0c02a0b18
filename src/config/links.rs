//! Links between VMs: static shared memory and doorbells, as sub-nodes of a `xen,domain` node.
//!
//! **Static shared memory** follows Xen's binding (`docs/misc/arm/device-tree/booting.txt`,
//! "Static Shared Memory"):
//!
//! ```text
//! shm@0 {
//!     compatible = "xen,domain-shared-memory-v1";
//!     xen,shm-id = "pingpong";          // at most 15 characters (Xen's MAX_SHM_ID_LENGTH, 16
//!                                       // with the NUL)
//!     role = "owner";                   // optional: "owner" or "borrower" (the default)
//!     xen,shared-mem = <0x0 0x7fe00000 0x0 0x200000>;   // <[host-PA] guest-IPA size>
//! };
//! ```
//!
//! Addresses take the domain node's `#address-cells`, the size its `#size-cells`; three values are
//! always read as `<host guest size>` (Xen 4.17's older `<host size guest>` is not). Without a host
//! address Bulkhead allocates the region (once per id). Every VM naming an id shares one region:
//! the sizes must agree, and so must the host addresses where given (a host address given in one VM
//! only is the region's). At most one VM per id is the owner (booting.txt: "a shared memory region
//! could be explicitly backed by one domain"); with none, Bulkhead owns it, as Xen's DOMID_IO does.
//! Regions of different ids must not overlap in host memory. Sizes and addresses are 4 KiB
//! multiples; the guest range must miss the VM's RAM, the guest's device windows (GIC, PL011) and
//! the VM's other regions, and may sit below RAM elsewhere.
//!
//! **Doorbells** are Bulkhead's own (Xen has none):
//!
//! ```text
//! bell@0 { compatible = "bulkhead,doorbell"; peer = "domU2"; bulkhead,spi = <5>; };
//! ```
//!
//! lets this VM ring doorbell `k` (the node's index among the VM's doorbell nodes, in DT order),
//! and `domU2` then receives SPI 5 (INTID 37). The SPI is spelled `bulkhead,spi`, one cell, not
//! `interrupts`: in a GIC tree `interrupts` is a three-cell specifier of an interrupt the node
//! itself raises, which this is not. Doorbell SPIs are [`DOORBELL_SPI_MIN`] to
//! [`DOORBELL_SPI_MAX`]: SPI 0 is kept free, SPI 1 is the guest PL011's
//! ([`crate::guest_layout::PL011_SPI`]), SPI 2 its PL031's, and the guest GIC has 96 SPIs. Each (peer, SPI) pair
//! has one ringer in the whole configuration, so the peer knows who rang. A doorbell whose peer
//! does not start (refused or disabled) stays in the list, so the numbering does not shift,
//! and rings nothing; a warning says so. (A peer refused by [`super::place`], or powered off,
//! is the same case at run time.)

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use fdt::node::FdtNode;

use super::{ByteSize, ConfigError, VmSpec, raw, str_prop, u32_prop};
use crate::dtb::{PhysRange, be_cells};
use crate::guest_layout::{
    GICC_BASE, GICC_SIZE, GICD_BASE, GICD_SIZE_V3, GICR_BASE, GUEST_RAM_BASE, MAX_VCPUS,
    PL011_BASE, PL011_SIZE, gicr_base,
};

/// The longest `xen,shm-id`: Xen's `MAX_SHM_ID_LENGTH` is 16 bytes with the NUL.
pub const MAX_SHM_ID_LEN: usize = 15;

/// The lowest SPI a doorbell may raise (SPI 0 is kept free, SPI 1 is the guest PL011's, SPI 2
/// its PL031's).
pub const DOORBELL_SPI_MIN: u32 = crate::guest_layout::PL031_SPI + 1;
/// The highest SPI a doorbell may raise: the guest GIC has 96 SPIs.
pub const DOORBELL_SPI_MAX: u32 = 95;

/// Shared regions are mapped in 4 KiB pages at least.
const PAGE: u64 = 4096;

/// The guest address space VM setup asks stage 2 for (40 bits, as for RAM).
const IPA_LIMIT: u64 = 1 << 40;

/// The guest's device windows (all below [`GUEST_RAM_BASE`]); a shared region must miss them.
/// The GIC windows are the largest either GIC version uses.
const GUEST_DEVICES: [(&str, u64, u64); 4] = [
    ("the guest's GIC distributor", GICD_BASE, GICD_SIZE_V3),
    ("the guest's GICv2 CPU interface", GICC_BASE, GICC_SIZE),
    (
        "the guest's GICv3 redistributors",
        GICR_BASE,
        gicr_base(MAX_VCPUS) - GICR_BASE,
    ),
    ("the guest's PL011", PL011_BASE, PL011_SIZE),
];

/// One static shared memory region of a VM (a `xen,domain-shared-memory-v1` sub-node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMemSpec {
    /// `xen,shm-id`: every VM naming it shares one region.
    pub id: String,
    /// Where the VM sees the region.
    pub ipa: u64,
    /// Bytes, a multiple of 4 KiB.
    pub size: u64,
    /// Where the region is in host memory, if the node says; else placement allocates it.
    pub host_pa: Option<u64>,
    /// `role = "owner"`; a missing role is "borrower".
    pub owner: bool,
}

/// One doorbell a VM may ring (a `bulkhead,doorbell` sub-node). Its index in
/// [`VmSpec::doorbells`] is the doorbell number the guest rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorbellSpec {
    /// The VM that receives the interrupt (a `xen,domain` node name; maybe not running).
    pub peer: String,
    /// The SPI number the peer receives (INTID 32 + spi).
    pub spi: u32,
}

/// Warns once for each property of `node` not in `known`.
fn warn_unknown(node: &FdtNode<'_, '_>, known: &[&str], warnings: &mut Vec<String>, vm: &str) {
    for p in node.properties() {
        if !known.contains(&p.name) && p.name != "phandle" && p.name != "linux,phandle" {
            warnings.push(format!(
                "{vm}: {}: unknown property `{}`; ignored",
                node.name, p.name
            ));
        }
    }
}

/// `a..b` in hex.
fn span(base: u64, size: u64) -> String {
    format!("{base:#x}..{:#x}", base.saturating_add(size))
}

/// A `xen,domain-shared-memory-v1` sub-node on its own. Errors name the property.
pub(super) fn shm_node(
    node: &FdtNode<'_, '_>,
    address_cells: usize,
    size_cells: usize,
    warnings: &mut Vec<String>,
    vm: &str,
) -> Result<SharedMemSpec, (&'static str, String)> {
    warn_unknown(
        node,
        &["compatible", "xen,shm-id", "role", "xen,shared-mem"],
        warnings,
        vm,
    );
    let id = str_prop(node, "xen,shm-id")
        .and_then(|id| id.ok_or_else(|| String::from("missing (the region's name)")))
        .and_then(|id| match id.len() {
            0 => Err(String::from("empty")),
            n if n > MAX_SHM_ID_LEN => Err(format!(
                "\"{id}\" is {n} characters; Xen's limit is {MAX_SHM_ID_LEN}"
            )),
            _ => Ok(id),
        })
        .map_err(|r| ("xen,shm-id", r))?;
    let owner = match str_prop(node, "role").map_err(|r| ("role", r))? {
        None | Some("borrower") => false,
        Some("owner") => true,
        Some(other) => {
            return Err((
                "role",
                format!("\"{other}\"; expected \"owner\" or \"borrower\""),
            ));
        }
    };

    let (a, s) = (address_cells, size_cells);
    let v = raw(node, "xen,shared-mem").ok_or_else(|| {
        (
            "xen,shared-mem",
            String::from("missing (<[host-PA] guest-IPA size>)"),
        )
    })?;
    let cell = |at: usize, n: usize| be_cells(&v[at * 4..], n).unwrap_or(0);
    let (host_pa, ipa, size) = if v.len() == (a + s) * 4 {
        (None, cell(0, a), cell(a, s))
    } else if v.len() == (2 * a + s) * 4 {
        (Some(cell(0, a)), cell(a, a), cell(2 * a, s))
    } else {
        return Err((
            "xen,shared-mem",
            format!(
                "{} bytes; expected {} (<guest-IPA size>) or {} (<host-PA guest-IPA size>) with \
                 #address-cells {a} and #size-cells {s}",
                v.len(),
                (a + s) * 4,
                (2 * a + s) * 4
            ),
        ));
    };
    let bad = |r: String| Err(("xen,shared-mem", r));
    if size == 0 {
        return bad(format!("zero size at guest {ipa:#x}"));
    }
    if !size.is_multiple_of(PAGE) {
        return bad(format!("{} is not a multiple of 4 KiB", ByteSize(size)));
    }
    if !ipa.is_multiple_of(PAGE) {
        return bad(format!("guest address {ipa:#x} is not 4 KiB aligned"));
    }
    if ipa.checked_add(size).is_none_or(|end| end > IPA_LIMIT) {
        return bad(format!(
            "guest {} ({}) runs past the {} guest address space",
            span(ipa, size),
            ByteSize(size),
            ByteSize(IPA_LIMIT)
        ));
    }
    if let Some(pa) = host_pa {
        if !pa.is_multiple_of(PAGE) {
            return bad(format!("host address {pa:#x} is not 4 KiB aligned"));
        }
        if pa.checked_add(size).is_none() {
            return bad(format!(
                "host {pa:#x} + {} runs past the end of the address space",
                ByteSize(size)
            ));
        }
    }
    Ok(SharedMemSpec {
        id: id.to_string(),
        ipa,
        size,
        host_pa,
        owner,
    })
}

/// Checks a VM's new region against its RAM (`memory` bytes at [`GUEST_RAM_BASE`]), the guest
/// devices and the VM's earlier regions (`(sub-node, region)`).
pub(super) fn check_shm_ipa(
    shm: &SharedMemSpec,
    memory: u64,
    earlier: &[(&str, SharedMemSpec)],
) -> Result<(), (&'static str, String)> {
    let guest = PhysRange {
        base: shm.ipa,
        size: shm.size,
    };
    let here = span(shm.ipa, shm.size);
    let ram = PhysRange {
        base: GUEST_RAM_BASE,
        size: memory,
    };
    if guest.overlaps(&ram) {
        return Err((
            "xen,shared-mem",
            format!(
                "guest {here} overlaps the VM's RAM at {}",
                span(ram.base, ram.size)
            ),
        ));
    }
    for (what, base, size) in GUEST_DEVICES {
        if guest.overlaps(&PhysRange { base, size }) {
            return Err((
                "xen,shared-mem",
                format!("guest {here} overlaps {what} at {}", span(base, size)),
            ));
        }
    }
    for (sub, other) in earlier {
        if other.id == shm.id {
            return Err((
                "xen,shm-id",
                format!("\"{}\" is already mapped by {sub}", shm.id),
            ));
        }
        let theirs = PhysRange {
            base: other.ipa,
            size: other.size,
        };
        if guest.overlaps(&theirs) {
            return Err((
                "xen,shared-mem",
                format!(
                    "guest {here} overlaps {sub} (\"{}\") at {}",
                    other.id,
                    span(theirs.base, theirs.size)
                ),
            ));
        }
    }
    Ok(())
}

/// A `bulkhead,doorbell` sub-node on its own. Errors name the property.
pub(super) fn doorbell_node(
    node: &FdtNode<'_, '_>,
    warnings: &mut Vec<String>,
    vm: &str,
) -> Result<DoorbellSpec, (&'static str, String)> {
    if raw(node, "interrupts").is_some() {
        return Err((
            "interrupts",
            String::from(
                "a doorbell's SPI is `bulkhead,spi = <N>` (the SPI number the peer receives)",
            ),
        ));
    }
    warn_unknown(node, &["compatible", "peer", "bulkhead,spi"], warnings, vm);
    let peer = str_prop(node, "peer")
        .and_then(|p| p.ok_or_else(|| String::from("missing (the xen,domain node to ring)")))
        .and_then(|p| match p {
            "" => Err(String::from("empty")),
            p if p == vm => Err(String::from("a VM cannot ring itself")),
            p => Ok(p),
        })
        .map_err(|r| ("peer", r))?;
    let spi = u32_prop(node, "bulkhead,spi")
        .and_then(|s| s.ok_or_else(|| String::from("missing (the SPI the peer receives)")))
        .and_then(|spi| {
            if (DOORBELL_SPI_MIN..=DOORBELL_SPI_MAX).contains(&spi) {
                Ok(spi)
            } else {
                Err(format!(
                    "SPI {spi}; doorbells use SPIs {DOORBELL_SPI_MIN} to {DOORBELL_SPI_MAX} (SPI 0 \
                     is kept free, SPI 1 is the guest's PL011, SPI 2 its PL031, the guest GIC \
                     has 96 SPIs)"
                ))
            }
        })
        .map_err(|r| ("bulkhead,spi", r))?;
    Ok(DoorbellSpec {
        peer: peer.to_string(),
        spi,
    })
}

/// A VM as parsed, with the sub-node names of its regions and doorbells (same order as in the
/// spec) for error lines.
pub(super) struct Parsed<'a> {
    pub spec: VmSpec,
    pub shm_nodes: Vec<&'a str>,
    pub bell_nodes: Vec<&'a str>,
}

/// One shared region as the VMs accepted so far define it.
struct Region<'v> {
    id: &'v str,
    size: u64,
    /// Which VM gave the size.
    size_from: &'v str,
    /// The host address and which VM gave it.
    host: Option<(u64, &'v str)>,
    owner: Option<&'v str>,
}

/// The checks across VMs, in DT order: a VM that conflicts with one accepted before it is
/// refused (one line naming both). `domains` are every `xen,domain` node name, started or not.
/// Then a warning for each doorbell whose peer does not start.
pub(super) fn check_across_vms(
    parsed: Vec<Parsed<'_>>,
    domains: &[&str],
    refused: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<VmSpec> {
    let mut accepted: Vec<Parsed<'_>> = Vec::new();
    for vm in parsed {
        match check_vm(&vm, &accepted, domains) {
            Ok(()) => accepted.push(vm),
            Err((property, reason)) => refused.push(ConfigError {
                vm: vm.spec.name.clone(),
                property,
                reason,
            }),
        }
    }
    for vm in &accepted {
        for (k, (bell, sub)) in vm.spec.doorbells.iter().zip(&vm.bell_nodes).enumerate() {
            if !accepted.iter().any(|p| p.spec.name == bell.peer) {
                warnings.push(format!(
                    "{}: {sub}: peer \"{}\" does not start; ringing doorbell {k} does nothing",
                    vm.spec.name, bell.peer
                ));
            }
        }
    }
    accepted.into_iter().map(|p| p.spec).collect()
}

/// `vm` against the VMs accepted before it: `(sub-node/property, reason)`.
fn check_vm(
    vm: &Parsed<'_>,
    accepted: &[Parsed<'_>],
    domains: &[&str],
) -> Result<(), (String, String)> {
    let regions = regions(accepted);
    for (shm, sub) in vm.spec.shared_mem.iter().zip(&vm.shm_nodes) {
        let prop = |p: &str| format!("{sub}/{p}");
        let id = &shm.id;
        if let Some(r) = regions.iter().find(|r| r.id == id) {
            if r.size != shm.size {
                return Err((
                    prop("xen,shared-mem"),
                    format!(
                        "id \"{id}\" is {} in {} but {} here",
                        ByteSize(r.size),
                        r.size_from,
                        ByteSize(shm.size)
                    ),
                ));
            }
            if let (Some((theirs, from)), Some(mine)) = (r.host, shm.host_pa)
                && theirs != mine
            {
                return Err((
                    prop("xen,shared-mem"),
                    format!("id \"{id}\" is at host {theirs:#x} in {from} but {mine:#x} here"),
                ));
            }
            if let Some(owner) = r.owner
                && shm.owner
            {
                return Err((
                    prop("role"),
                    format!("id \"{id}\" already has an owner, {owner}; a region has at most one"),
                ));
            }
        }
        let Some(pa) = shm.host_pa else { continue };
        let mine = PhysRange {
            base: pa,
            size: shm.size,
        };
        for r in regions.iter().filter(|r| r.id != id) {
            let Some((base, from)) = r.host else { continue };
            if mine.overlaps(&PhysRange { base, size: r.size }) {
                return Err((
                    prop("xen,shared-mem"),
                    format!(
                        "host {} overlaps id \"{}\" at {} (from {from}); different ids need \
                         separate memory",
                        span(pa, shm.size),
                        r.id,
                        span(base, r.size)
                    ),
                ));
            }
        }
    }
    // Every doorbell accepted so far, with its ringer and sub-node: the earlier VMs' first.
    let mut rung: Vec<(&DoorbellSpec, &str, &str)> = accepted
        .iter()
        .flat_map(|p| {
            let ringer = p.spec.name.as_str();
            p.spec
                .doorbells
                .iter()
                .zip(&p.bell_nodes)
                .map(move |(b, s)| (b, ringer, *s))
        })
        .collect();
    for (bell, sub) in vm.spec.doorbells.iter().zip(&vm.bell_nodes) {
        if !domains.contains(&bell.peer.as_str()) {
            return Err((
                format!("{sub}/peer"),
                format!("\"{}\": no xen,domain node has this name", bell.peer),
            ));
        }
        if let Some((_, ringer, other)) = rung
            .iter()
            .find(|(b, ..)| b.peer == bell.peer && b.spi == bell.spi)
        {
            return Err((
                format!("{sub}/bulkhead,spi"),
                format!(
                    "SPI {} of {} is already rung by {ringer} ({other}); one ringer per peer \
                     SPI, so the peer knows who rang",
                    bell.spi, bell.peer
                ),
            ));
        }
        rung.push((bell, "this VM", sub));
    }
    Ok(())
}

/// The shared regions the accepted VMs define, one per id.
fn regions<'v>(accepted: &'v [Parsed<'_>]) -> Vec<Region<'v>> {
    let mut regions: Vec<Region<'v>> = Vec::new();
    for vm in accepted {
        let name = vm.spec.name.as_str();
        for shm in &vm.spec.shared_mem {
            let at = match regions.iter().position(|r| r.id == shm.id) {
                Some(at) => at,
                None => {
                    regions.push(Region {
                        id: &shm.id,
                        size: shm.size,
                        size_from: name,
                        host: None,
                        owner: None,
                    });
                    regions.len() - 1
                }
            };
            let r = &mut regions[at];
            if r.host.is_none() {
                r.host = shm.host_pa.map(|pa| (pa, name));
            }
            if shm.owner {
                r.owner = Some(name);
            }
        }
    }
    regions
}
