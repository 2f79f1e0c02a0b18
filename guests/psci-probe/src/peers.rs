//! What the guest DTB says about the other VMs: shared-memory regions, described exactly as
//! Xen describes them to a domU (`/reserved-memory/xen-shmem@..`, `xen,shared-memory-v1`), and
//! Bulkhead's doorbells (`/bulkhead-doorbells`): the ones this VM may ring and the SPIs on
//! which others ring it.
//!
//! Properties are read raw, not through `FdtNode::reg`/`interrupts`, so a malformed node is
//! counted and skipped instead of misread.

use fdt::Fdt;
use fdt::node::FdtNode;

/// Compatible of a shared-memory node (Xen's `docs/misc/arm/device-tree/booting.txt`).
pub const SHARED_MEMORY_COMPATIBLE: &str = "xen,shared-memory-v1";
/// Compatible of a doorbell this VM may ring; `reg` is the number to ring.
pub const DOORBELL_COMPATIBLE: &str = "bulkhead,doorbell";
/// Compatible of a doorbell others ring this VM with; `interrupts` names the SPI.
pub const RECEIVER_COMPATIBLE: &str = "bulkhead,doorbell-receiver";
const RESERVED_MEMORY_PATH: &str = "/reserved-memory";
const DOORBELLS_PATH: &str = "/bulkhead-doorbells";

/// Most nodes of each kind kept; more are counted as malformed.
pub const MAX_NODES: usize = 8;
/// GIC binding, first `interrupts` cell: an SPI.
const GIC_SPI: u32 = 0;
/// GIC binding, third cell: edge, low-to-high.
const GIC_EDGE_RISING: u32 = 1;
/// The last SPI number the GIC architecture has (INTID 1019).
const MAX_SPI: u32 = 987;

/// One `xen,shared-memory-v1` region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedMemory<'a> {
    pub ipa: u64,
    pub size: u64,
    /// `xen,id`, the name both VMs' nodes share.
    pub id: Option<&'a str>,
}

/// A doorbell this VM may ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doorbell<'a> {
    pub number: u32,
    pub peer: Option<&'a str>,
}

/// A doorbell that arrives here as an edge-triggered SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receiver<'a> {
    pub spi: u32,
    pub peer: Option<&'a str>,
}

impl Receiver<'_> {
    /// The GIC INTID of the SPI.
    pub fn intid(&self) -> u32 {
        32 + self.spi
    }
}

/// Everything of the above the DTB holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Peers<'a> {
    shared: [Option<SharedMemory<'a>>; MAX_NODES],
    outgoing: [Option<Doorbell<'a>>; MAX_NODES],
    incoming: [Option<Receiver<'a>>; MAX_NODES],
    /// Nodes with one of the compatibles above that could not be read (or did not fit).
    pub malformed: u32,
}

impl<'a> Peers<'a> {
    pub fn from_fdt(fdt: &Fdt<'a>) -> Self {
        let mut peers = Peers::default();
        if let Some(reserved) = fdt.find_node(RESERVED_MEMORY_PATH) {
            let cells = reserved.cell_sizes();
            for node in reserved.children() {
                if !has_compatible(node, SHARED_MEMORY_COMPATIBLE) {
                    continue;
                }
                let region =
                    reg_pair(node, cells.address_cells, cells.size_cells).map(|(ipa, size)| {
                        SharedMemory {
                            ipa,
                            size,
                            id: string(node, "xen,id"),
                        }
                    });
                peers.malformed += u32::from(!push(&mut peers.shared, region));
            }
        }
        if let Some(doorbells) = fdt.find_node(DOORBELLS_PATH) {
            let cells = doorbells.cell_sizes();
            for node in doorbells.children() {
                let peer = string(node, "peer");
                if has_compatible(node, DOORBELL_COMPATIBLE) {
                    let doorbell = (cells.address_cells == 1)
                        .then(|| node.property("reg"))
                        .flatten()
                        .and_then(|reg| cell(reg.value, 0))
                        .map(|number| Doorbell { number, peer });
                    peers.malformed += u32::from(!push(&mut peers.outgoing, doorbell));
                } else if has_compatible(node, RECEIVER_COMPATIBLE) {
                    let receiver = node
                        .property("interrupts")
                        .and_then(|p| spi_of(p.value))
                        .map(|spi| Receiver { spi, peer });
                    peers.malformed += u32::from(!push(&mut peers.incoming, receiver));
                }
            }
        }
        peers
    }

    /// The region whose `xen,id` is `id`, else the first region.
    pub fn shared_memory(&self, id: &str) -> Option<SharedMemory<'a>> {
        let mut regions = self.shared.iter().flatten();
        regions
            .clone()
            .find(|r| r.id == Some(id))
            .or_else(|| regions.next())
            .copied()
    }

    pub fn outgoing(&self) -> impl Iterator<Item = Doorbell<'a>> + '_ {
        self.outgoing.iter().flatten().copied()
    }

    pub fn incoming(&self) -> impl Iterator<Item = Receiver<'a>> + '_ {
        self.incoming.iter().flatten().copied()
    }

    /// Whether the DTB describes any doorbell for this VM (even a malformed one counts as
    /// "configured": the hypervisor then knows this VM has doorbells).
    pub fn has_doorbell_nodes(&self) -> bool {
        self.outgoing().next().is_some() || self.incoming().next().is_some()
    }

    /// Whether the DTB has any node this module reads.
    pub fn any(&self) -> bool {
        self.has_doorbell_nodes() || self.shared.iter().any(Option::is_some) || self.malformed > 0
    }

    /// The lowest doorbell number this VM was not given.
    pub fn unused_number(&self) -> u32 {
        (0..=u32::MAX)
            .find(|n| self.outgoing().all(|d| d.number != *n))
            .unwrap_or(u32::MAX)
    }

    /// The doorbell to ring and the one to wait on for a two-VM exchange: the first outgoing
    /// doorbell, and the incoming one from the same peer (else the first incoming one).
    pub fn link(&self) -> Option<(Doorbell<'a>, Receiver<'a>)> {
        let out = self.outgoing().next()?;
        let back = self
            .incoming()
            .find(|r| r.peer.is_some() && r.peer == out.peer)
            .or_else(|| self.incoming().next())?;
        Some((out, back))
    }
}

/// Stores `item` in the first free slot; false if it is `None` or there is none.
fn push<T>(slots: &mut [Option<T>], item: Option<T>) -> bool {
    match (item, slots.iter_mut().find(|s| s.is_none())) {
        (Some(item), Some(slot)) => {
            *slot = Some(item);
            true
        }
        _ => false,
    }
}

fn has_compatible(node: FdtNode, compatible: &str) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == compatible))
}

fn string<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    node.property(name)
        .and_then(|p| p.as_str())
        .filter(|s| !s.is_empty())
}

/// The big-endian cell `index` of a property value.
fn cell(value: &[u8], index: usize) -> Option<u32> {
    let bytes = value.get(index * 4..index * 4 + 4)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// A number of `cells` (1 or 2) cells starting at cell `first`.
fn cells_number(value: &[u8], first: usize, cells: usize) -> Option<u64> {
    match cells {
        1 => cell(value, first).map(u64::from),
        2 => Some(u64::from(cell(value, first)?) << 32 | u64::from(cell(value, first + 1)?)),
        _ => None,
    }
}

/// The one (address, size) pair of a `reg` that must hold exactly one.
fn reg_pair(node: FdtNode, address_cells: usize, size_cells: usize) -> Option<(u64, u64)> {
    let value = node.property("reg")?.value;
    if value.len() != (address_cells + size_cells) * 4 {
        return None;
    }
    let address = cells_number(value, 0, address_cells)?;
    let size = cells_number(value, address_cells, size_cells)?;
    (size > 0 && address.checked_add(size).is_some()).then_some((address, size))
}

/// The SPI number of `interrupts = <0 SPI 1>` (GIC binding: SPI, number, edge rising).
pub fn spi_of(value: &[u8]) -> Option<u32> {
    if value.len() != 12 || cell(value, 0)? != GIC_SPI || cell(value, 2)? != GIC_EDGE_RISING {
        return None;
    }
    cell(value, 1).filter(|spi| *spi <= MAX_SPI)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/data/peers.dts`, compiled with `dtc -I dts -O dtb`: a domU of the ping-pong pair
    /// as the contract describes it, plus a second region and malformed nodes.
    const PEERS_DTB: &[u8] = include_bytes!("../tests/data/peers.dtb");
    /// `tests/data/no-peers.dts`: a guest DTB without any of these nodes.
    const NO_PEERS_DTB: &[u8] = include_bytes!("../tests/data/no-peers.dtb");

    fn peers(dtb: &'static [u8]) -> Peers<'static> {
        Peers::from_fdt(&Fdt::new(dtb).unwrap())
    }

    #[test]
    fn finds_the_named_region_before_the_first_one() {
        let peers = peers(PEERS_DTB);
        assert_eq!(
            peers.shared_memory("pingpong"),
            Some(SharedMemory {
                ipa: 0x1_0000_0000,
                size: 0x10_0000,
                id: Some("pingpong"),
            })
        );
        assert_eq!(peers.shared_memory("other").unwrap().ipa, 0xC000_0000);
        // Unknown id: the first region.
        assert_eq!(peers.shared_memory("nope").unwrap().ipa, 0xC000_0000);
    }

    #[test]
    fn reads_outgoing_and_incoming_doorbells_with_their_peers() {
        let peers = peers(PEERS_DTB);
        let out: Vec<_> = peers.outgoing().collect();
        assert_eq!(
            out,
            [
                Doorbell {
                    number: 0,
                    peer: Some("pong")
                },
                Doorbell {
                    number: 2,
                    peer: Some("third")
                },
            ]
        );
        let incoming: Vec<_> = peers.incoming().collect();
        assert_eq!(
            incoming,
            [
                Receiver {
                    spi: 41,
                    peer: Some("third")
                },
                Receiver {
                    spi: 40,
                    peer: Some("pong")
                },
            ]
        );
        assert_eq!(incoming[1].intid(), 72);
        assert!(peers.has_doorbell_nodes());
    }

    #[test]
    fn the_link_waits_on_the_doorbell_of_the_peer_it_rings() {
        let (out, back) = peers(PEERS_DTB).link().unwrap();
        assert_eq!(out.number, 0);
        assert_eq!(back.spi, 40);
    }

    #[test]
    fn malformed_nodes_are_counted_and_skipped() {
        // A region with a short reg, a doorbell without reg, a receiver with a PPI and one
        // with a level trigger.
        assert_eq!(peers(PEERS_DTB).malformed, 4);
    }

    #[test]
    fn the_unused_number_skips_the_given_ones() {
        assert_eq!(peers(PEERS_DTB).unused_number(), 1);
        assert_eq!(peers(NO_PEERS_DTB).unused_number(), 0);
    }

    #[test]
    fn a_dtb_without_the_nodes_has_no_peers() {
        let peers = peers(NO_PEERS_DTB);
        assert!(!peers.any());
        assert!(!peers.has_doorbell_nodes());
        assert_eq!(peers.shared_memory("pingpong"), None);
        assert_eq!(peers.link(), None);
    }

    #[test]
    fn interrupts_must_be_one_rising_edge_spi() {
        let cells = |c: [u32; 3]| c.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>();
        assert_eq!(spi_of(&cells([0, 40, 1])), Some(40));
        assert_eq!(spi_of(&cells([1, 40, 1])), None, "PPI");
        assert_eq!(spi_of(&cells([0, 40, 4])), None, "level high");
        assert_eq!(spi_of(&cells([0, 988, 1])), None, "past INTID 1019");
        assert_eq!(spi_of(&cells([0, 40, 1])[..8]), None, "two cells");
    }
}
