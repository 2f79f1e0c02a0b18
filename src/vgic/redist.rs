//! The emulated GICv3 redistributors: one per vCPU, each an RD_base frame (control, TYPER,
//! WAKER) followed by an SGI_base frame (the vCPU's SGI/PPI registers), laid out from
//! `GICR_BASE` every `GICR_STRIDE` bytes. No LPIs, no VLPI frames.

use super::dist::{
    ICACTIVER, ICENABLER, ICFGR, ICPENDR, IGROUPR, IIDR_VALUE, IPRIORITYR, ISACTIVER, ISENABLER,
    ISPENDR, IrqField,
};
use super::{VcpuSet, Vgic, VgicError, check_access};
use crate::devices::mmio::AccessSize;
use crate::guest_layout::{GICR_STRIDE, GicVersion, vcpu_mpidr};

/// Size of one frame; the SGI_base frame follows RD_base.
const FRAME_SIZE: u64 = 0x1_0000;

// RD_base frame.
const GICR_CTLR: u64 = 0x0000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const GICR_PIDR2: u64 = 0xffe8;

/// GICR_TYPER.Last: this is the last redistributor of the region.
const TYPER_LAST: u64 = 1 << 4;
/// GICR_WAKER bits.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// Which frame of which redistributor an offset falls in.
struct RedistOffset {
    vcpu: usize,
    sgi_frame: bool,
    offset: u64,
}

impl Vgic {
    /// Splits an offset from GICR_BASE; None past the last vCPU's redistributor.
    fn locate_redist(&self, offset: u64) -> Option<RedistOffset> {
        let vcpu = usize::try_from(offset / GICR_STRIDE).ok()?;
        if vcpu >= self.vcpu_count || self.version != GicVersion::V3 {
            return None;
        }
        let within = offset % GICR_STRIDE;
        Some(RedistOffset {
            vcpu,
            sgi_frame: within >= FRAME_SIZE,
            offset: within % FRAME_SIZE,
        })
    }

    fn redist_typer(&self, vcpu: usize) -> u64 {
        let mpidr = vcpu_mpidr(vcpu);
        // Affinity_Value [63:32] is Aff3.Aff2.Aff1.Aff0.
        let affinity = (mpidr & 0xff_ffff) | ((mpidr >> 8) & 0xff00_0000);
        let last = if vcpu + 1 == self.vcpu_count {
            TYPER_LAST
        } else {
            0
        };
        (affinity << 32) | ((vcpu as u64) << 8) | last
    }

    fn redist_widths(location: &RedistOffset) -> &'static [AccessSize] {
        if !location.sgi_frame && (GICR_TYPER..GICR_TYPER + 8).contains(&location.offset) {
            &[AccessSize::Word, AccessSize::Double]
        } else if location.sgi_frame && (IPRIORITYR..IPRIORITYR + 32).contains(&location.offset) {
            &[AccessSize::Byte, AccessSize::Word]
        } else {
            &[AccessSize::Word]
        }
    }

    /// A guest read at `offset` from GICR_BASE (any vCPU may read any redistributor).
    pub fn redist_read(&self, offset: u64, size: AccessSize) -> Result<u64, VgicError> {
        let Some(location) = self.locate_redist(offset) else {
            check_access(offset, size, &[AccessSize::Word, AccessSize::Double])?;
            return Ok(0);
        };
        check_access(offset, size, Self::redist_widths(&location))?;
        let vcpu = location.vcpu;
        let value = if location.sgi_frame {
            let row = |field| u64::from(self.read_bit_row(vcpu, 0, field));
            match location.offset {
                IGROUPR => row(IrqField::Group),
                ISENABLER => row(IrqField::SetEnable),
                ICENABLER => row(IrqField::ClearEnable),
                ISPENDR => row(IrqField::SetPending),
                ICPENDR => row(IrqField::ClearPending),
                ISACTIVER => row(IrqField::SetActive),
                ICACTIVER => row(IrqField::ClearActive),
                o if (IPRIORITYR..IPRIORITYR + 32).contains(&o) => {
                    self.read_priorities(vcpu, (o - IPRIORITYR) as u32, size.bytes())
                }
                ICFGR => u64::from(self.read_config(vcpu, 0)),
                o if o == ICFGR + 4 => u64::from(self.read_config(vcpu, 16)),
                _ => 0,
            }
        } else {
            match location.offset {
                GICR_IIDR => u64::from(IIDR_VALUE),
                o if (GICR_TYPER..GICR_TYPER + 8).contains(&o) => {
                    let shift = (o - GICR_TYPER) * 8;
                    (self.redist_typer(vcpu) >> shift) & size.mask()
                }
                GICR_WAKER => {
                    let asleep = self.processor_sleep.get(vcpu).copied().unwrap_or(true);
                    // Nothing to quiesce: ChildrenAsleep follows ProcessorSleep at once.
                    if asleep {
                        u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
                    } else {
                        0
                    }
                }
                GICR_PIDR2 => 0x3b,
                // GICR_CTLR: no LPIs, RWP never set.
                GICR_CTLR => 0,
                _ => 0,
            }
        };
        Ok(value)
    }

    /// A guest write at `offset` from GICR_BASE. Returns the vCPUs to kick.
    pub fn redist_write(
        &mut self,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<VcpuSet, VgicError> {
        let Some(location) = self.locate_redist(offset) else {
            check_access(offset, size, &[AccessSize::Word, AccessSize::Double])?;
            return Ok(VcpuSet::EMPTY);
        };
        check_access(offset, size, Self::redist_widths(&location))?;
        let vcpu = location.vcpu;
        let word = value as u32;
        let mut kicks = VcpuSet::EMPTY;
        if location.sgi_frame {
            let mut row = |vgic: &mut Self, field| kicks = vgic.write_bit_row(vcpu, 0, field, word);
            match location.offset {
                IGROUPR => row(self, IrqField::Group),
                ISENABLER => row(self, IrqField::SetEnable),
                ICENABLER => row(self, IrqField::ClearEnable),
                ISPENDR => row(self, IrqField::SetPending),
                ICPENDR => row(self, IrqField::ClearPending),
                ISACTIVER => row(self, IrqField::SetActive),
                ICACTIVER => row(self, IrqField::ClearActive),
                o if (IPRIORITYR..IPRIORITYR + 32).contains(&o) => {
                    self.write_priorities(vcpu, (o - IPRIORITYR) as u32, size.bytes(), value)
                }
                ICFGR => self.write_config(vcpu, 0, word),
                o if o == ICFGR + 4 => self.write_config(vcpu, 16, word),
                _ => {}
            }
        } else if location.offset == GICR_WAKER
            && let Some(sleep) = self.processor_sleep.get_mut(vcpu)
        {
            *sleep = word & WAKER_PROCESSOR_SLEEP != 0;
        }
        Ok(kicks)
    }

    /// Whether `vcpu`'s redistributor is awake (GICR_WAKER.ProcessorSleep clear).
    pub fn redist_awake(&self, vcpu: usize) -> bool {
        self.processor_sleep.get(vcpu).is_some_and(|sleep| !sleep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::MmioError;

    const SGI: u64 = FRAME_SIZE;

    fn read(vgic: &mut Vgic, offset: u64) -> u32 {
        vgic.redist_read(offset, AccessSize::Word).unwrap() as u32
    }

    fn write(vgic: &mut Vgic, offset: u64, value: u32) -> VcpuSet {
        vgic.redist_write(offset, AccessSize::Word, u64::from(value))
            .unwrap()
    }

    #[test]
    fn typer_has_affinity_number_and_last() {
        let mut vgic = Vgic::new(GicVersion::V3, 4, 64).unwrap();
        for vcpu in 0..4u64 {
            let typer = vgic.redist_read(vcpu * GICR_STRIDE + GICR_TYPER, AccessSize::Double);
            let last = if vcpu == 3 { TYPER_LAST } else { 0 };
            assert_eq!(typer.unwrap(), (vcpu << 32) | (vcpu << 8) | last);
        }
        // 32-bit halves, as a 32-bit guest would read it.
        assert_eq!(read(&mut vgic, 2 * GICR_STRIDE + GICR_TYPER + 4), 2);
        assert_eq!(read(&mut vgic, 2 * GICR_STRIDE + GICR_TYPER), 2 << 8);
        assert_eq!(read(&mut vgic, GICR_PIDR2) & 0xf0, 0x30);
        assert_eq!(read(&mut vgic, GICR_IIDR), 0x43b);
    }

    #[test]
    fn waker_handshake() {
        let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
        let waker = GICR_STRIDE + GICR_WAKER;
        assert_eq!(
            read(&mut vgic, waker),
            WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
        );
        assert!(!vgic.redist_awake(1));
        // Linux: clear ProcessorSleep, then poll until ChildrenAsleep reads 0.
        let value = read(&mut vgic, waker) & !WAKER_PROCESSOR_SLEEP;
        write(&mut vgic, waker, value);
        assert_eq!(read(&mut vgic, waker) & WAKER_CHILDREN_ASLEEP, 0);
        assert!(vgic.redist_awake(1));
        assert!(!vgic.redist_awake(0), "vCPU 0's redistributor is separate");
        write(&mut vgic, waker, WAKER_PROCESSOR_SLEEP);
        assert_ne!(read(&mut vgic, waker) & WAKER_CHILDREN_ASLEEP, 0);
    }

    #[test]
    fn sgi_frame_controls_the_vcpus_private_interrupts() {
        let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
        let frame1 = GICR_STRIDE + SGI;
        write(&mut vgic, 0, 0); // RD frame CTLR: ignored
        write(&mut vgic, frame1 + IGROUPR, u32::MAX);
        write(&mut vgic, frame1 + ISENABLER, 0x0800_ffff);
        assert_eq!(read(&mut vgic, frame1 + ISENABLER), 0x0800_ffff);
        assert_eq!(read(&mut vgic, SGI + ISENABLER), 0, "vCPU 0 untouched");
        write(&mut vgic, frame1 + ICENABLER, 0x0000_0001);
        assert_eq!(read(&mut vgic, frame1 + ICENABLER), 0x0800_fffe);
        vgic.redist_write(frame1 + IPRIORITYR + 27, AccessSize::Byte, 0xa0)
            .unwrap();
        assert_eq!(read(&mut vgic, frame1 + IPRIORITYR + 24), 0xa000_0000);
        assert_eq!(read(&mut vgic, frame1 + ICFGR), 0xaaaa_aaaa);
        write(&mut vgic, frame1 + ICFGR + 4, 0);
        assert_eq!(read(&mut vgic, frame1 + ICFGR + 4), 0);
        write(&mut vgic, frame1 + ISACTIVER, 1 << 27);
        assert_eq!(read(&mut vgic, frame1 + ICACTIVER), 1 << 27);
        // Pending via the frame, kicks vCPU 1 once the distributor forwards Group 1.
        vgic.dist_write(0, 0, AccessSize::Word, 0x12).unwrap();
        assert_eq!(
            write(&mut vgic, frame1 + ISPENDR, 1 << 3),
            VcpuSet::from_bits(0b10)
        );
        assert_eq!(read(&mut vgic, frame1 + ISPENDR), 1 << 3);
        write(&mut vgic, frame1 + ICPENDR, 1 << 3);
        assert_eq!(read(&mut vgic, frame1 + ISPENDR), 0);
    }

    #[test]
    fn sgi1r_sets_pending_on_targets() {
        let mut vgic = Vgic::new(GicVersion::V3, 4, 64).unwrap();
        vgic.dist_write(0, 0, AccessSize::Word, 0x12).unwrap();
        for vcpu in 0..4 {
            let frame = vcpu * GICR_STRIDE + SGI;
            write(&mut vgic, frame + IGROUPR, u32::MAX);
            write(&mut vgic, frame + ISENABLER, 0xffff);
        }
        let kicks = vgic.send_sgi1r(0, (2 << 24) | 0b1100).unwrap();
        assert_eq!(kicks, VcpuSet::from_bits(0b1100));
        assert_eq!(read(&mut vgic, 3 * GICR_STRIDE + SGI + ISPENDR), 1 << 2);
        assert_eq!(read(&mut vgic, GICR_STRIDE + SGI + ISPENDR), 0);
    }

    #[test]
    fn sgi0r_raises_only_group_0_sgis() {
        let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
        vgic.dist_write(0, 0, AccessSize::Word, 0x13).unwrap();
        // vCPU 0: every SGI Group 1 (what Linux configures); vCPU 1: SGI 3 Group 0.
        write(&mut vgic, SGI + IGROUPR, u32::MAX);
        write(&mut vgic, GICR_STRIDE + SGI + IGROUPR, !(1 << 3));
        for vcpu in 0..2 {
            write(&mut vgic, vcpu * GICR_STRIDE + SGI + ISENABLER, 0xffff);
        }
        // SGI 3 to both vCPUs (TargetList Aff0 0 and 1): only the Group 0 one is raised.
        let kicks = vgic.send_sgi0r(0, (3 << 24) | 0b11).unwrap();
        assert_eq!(kicks, VcpuSet::from_bits(0b10));
        assert_eq!(read(&mut vgic, SGI + ISPENDR), 0);
        assert_eq!(read(&mut vgic, GICR_STRIDE + SGI + ISPENDR), 1 << 3);
        // SGI1R generates either group.
        vgic.send_sgi1r(1, (3 << 24) | 0b1).unwrap();
        assert_eq!(read(&mut vgic, SGI + ISPENDR), 1 << 3);
    }

    #[test]
    fn raz_wi_and_bad_sizes() {
        let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
        // Past the last redistributor, and unknown offsets inside one.
        for offset in [
            2 * GICR_STRIDE,
            100 * GICR_STRIDE + 8,
            0x100,
            SGI + 0xd00,
            u64::MAX - 7,
        ] {
            assert_eq!(read(&mut vgic, offset), 0);
            assert_eq!(write(&mut vgic, offset, u32::MAX), VcpuSet::EMPTY);
        }
        assert_eq!(
            vgic.redist_read(GICR_WAKER, AccessSize::Double),
            Err(VgicError::Mmio(MmioError::BadSize {
                offset: GICR_WAKER,
                bytes: 8
            }))
        );
        assert_eq!(
            vgic.redist_read(SGI + ISENABLER + 1, AccessSize::Byte),
            Err(VgicError::Mmio(MmioError::BadSize {
                offset: SGI + ISENABLER + 1,
                bytes: 1
            }))
        );
        assert_eq!(
            vgic.redist_read(GICR_TYPER + 4, AccessSize::Double),
            Err(VgicError::Mmio(MmioError::Unaligned {
                offset: GICR_TYPER + 4
            }))
        );
        // A GICv2 vGIC has no redistributors.
        let mut v2 = Vgic::new(GicVersion::V2, 1, 64).unwrap();
        assert_eq!(read(&mut v2, GICR_TYPER), 0);
    }
}
