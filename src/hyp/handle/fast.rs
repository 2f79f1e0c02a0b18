//! The fast path: the two exits guests make most that need no lock of the VM's, handled from
//! the raw syndrome before the general decode ([`GuestExit`](crate::hyp::exit::GuestExit))
//! and dispatch ([`handle_exit`](super::handle_exit)) — what KVM arm64 does in its
//! `fixup_guest_exit` for the exits it answers without leaving the world switch.
//!
//! - **HVC**: the SMCCC/PSCI dispatch (`smccc::handle`) straight away.
//! - **A store to the guest PL011's data register**: every character a guest prints (about
//!   29,000 in a Debian boot). The register holds no state (`EmulatedPl011::write` returns the
//!   byte and changes nothing), so neither the UART is locked nor the stage-2 layout searched
//!   (`Vm::uart_data_ipa` was found once); the byte goes to the console as from the general
//!   path (`console_bridge::uart_write`).
//!
//! Each answers exactly as the general path would, or declines (`None`) and the exit takes
//! the general path: the tests run both on the same exits and compare everything they touch.

use super::{ExitAction, smccc};
use crate::devices::mmio::{AccessSize, guest_big_endian};
use crate::hyp::exit::esr::{ESR_ELx, Esr};
use crate::hyp::exit::{FaultKind, mmio};
use crate::hyp::platform::Platform;
use crate::hyp::vcpu::Vcpu;
use crate::hyp::vm::{ExitStats, Vm};

/// Handles a synchronous exit with syndrome `esr` if it is one of the fast path's; `None`
/// leaves it to the general path untouched. `fault_address` reads FAR_EL2 and HPFAR_EL2 (only
/// an abort needs them); `stats` are the vCPU's counters (`vm.exits[vcpu.index]`, looked up
/// once by the run loop).
#[inline(always)]
pub fn try_handle(
    esr: u64,
    fault_address: impl FnOnce() -> (u64, u64),
    stats: &ExitStats,
    vm: &Vm,
    vcpu: &mut Vcpu,
    p: &impl Platform,
) -> Option<ExitAction> {
    use ESR_ELx::EC::Value as Ec;
    match Esr::new(esr).read_as_enum(ESR_ELx::EC) {
        Some(Ec::Hvc64) => {
            ExitStats::count(&stats.hvc);
            Some(smccc::handle(vm, vcpu, p).into())
        }
        Some(Ec::DataAbortLowerEl) => {
            // The general path's checks, in its order: a missing mapping (the PL011 page is
            // never mapped) at the data register, with a syndrome describing a store the
            // register takes (`EmulatedPl011::check` refuses 64-bit accesses); aligned, since
            // the register is at offset 0.
            let data_register = vm.uart_data_ipa?;
            let access = mmio::decode_data_abort(esr).ok()?;
            if !access.write || access.size == AccessSize::Double {
                return None;
            }
            let (far, hpfar) = fault_address();
            if mmio::fault_ipa(hpfar, far) != data_register
                || !FaultKind::from_fsc(esr as u8).is_missing_mapping()
            {
                return None;
            }
            ExitStats::count(&stats.mmio);
            let big_endian = guest_big_endian(vcpu.regs.pstate, p.guest_sctlr_el1());
            // The data register's low byte is the character (`EmulatedPl011::write`).
            let byte = access.write_low_byte_endian(vcpu.reg(access.reg), big_endian);
            vm.console.vm_output_byte(vm.id, byte, p);
            vcpu.skip_instruction(Esr::new(esr).is_set(ESR_ELx::IL));
            Some(ExitAction::Resume)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::handle_exit;
    use super::super::tests::{vcpu_at, vm_with};
    use super::*;
    use crate::guest_layout::{GicVersion, PL011_BASE};
    use crate::hyp::exit::{GuestExit, Syndrome};
    use crate::hyp::platform::fake::FakePlatform;
    use alloc::vec::Vec;
    use core::sync::atomic::Ordering;

    /// A data abort at `ipa`: ISV, SAS `sas`, SRT `rt`, WnR `write`, FSC `fsc`, plus `extra`
    /// ISS bits (Arm ARM, "ISS encoding for an exception from a Data Abort").
    fn dabt(sas: u64, rt: u64, write: bool, fsc: u64, extra: u64) -> u64 {
        (0x24 << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | (rt << 16)
            | (u64::from(write) << 6)
            | fsc
            | extra
    }

    /// What an exit left behind: the action, the vCPU's registers, the exit counters, the
    /// console's output.
    type Outcome = (ExitAction, [u64; 31], u64, [u64; 6], Vec<u8>);

    fn outcome(a: ExitAction, vm: &Vm, v: &Vcpu, p: &FakePlatform) -> Outcome {
        let s = &vm.exits[v.index];
        let counts = [&s.irq, &s.hvc, &s.wfi, &s.sysreg, &s.mmio, &s.other]
            .map(|c| c.load(Ordering::Relaxed));
        (
            a,
            v.regs.x,
            v.regs.pc,
            counts,
            p.console_out.borrow().clone(),
        )
    }

    /// Runs one exit both ways, on two identical machines: when the fast path takes it, every
    /// effect must be the general path's. Returns whether the fast path took it.
    fn same_as_general(gic: GicVersion, esr: u64, ipa: u64, regs: &[(usize, u64)]) -> bool {
        same_as_general_at(gic, esr, ipa, regs, 0)
    }

    /// [`same_as_general`] with the guest's SCTLR_EL1 at `sctlr_el1` (its EE bit: big-endian).
    fn same_as_general_at(
        gic: GicVersion,
        esr: u64,
        ipa: u64,
        regs: &[(usize, u64)],
        sctlr_el1: u64,
    ) -> bool {
        let (fast_vm, general_vm) = (vm_with(gic, 2), vm_with(gic, 2));
        let (pf, pg) = (FakePlatform::default(), FakePlatform::default());
        pf.sctlr_el1.set(sctlr_el1);
        pg.sctlr_el1.set(sctlr_el1);
        let (mut vf, mut vg) = (vcpu_at(0, 0x8000), vcpu_at(0, 0x8000));
        for &(r, value) in regs {
            vf.regs.x[r] = value;
            vg.regs.x[r] = value;
        }
        let (far, hpfar) = (ipa, (ipa >> 12) << 4);
        let stats = &fast_vm.exits[0];
        let fault = || (far, hpfar);
        let Some(fast) = try_handle(esr, fault, stats, &fast_vm, &mut vf, &pf) else {
            return false;
        };
        let exit = GuestExit::decode(Syndrome { esr, far, hpfar });
        let general = handle_exit(&exit, &general_vm, &mut vg, &pg);
        assert_eq!(
            outcome(fast, &fast_vm, &vf, &pf),
            outcome(general, &general_vm, &vg, &pg),
            "ESR {esr:#x} IPA {ipa:#x}"
        );
        true
    }

    #[test]
    fn exit_fast_path_hypercalls_answer_as_the_general_path() {
        // PSCI_VERSION, SMCCC_VERSION, PSCI_FEATURES(CPU_ON), an unknown call, a vendor call.
        for x0 in [
            0x8400_0000,
            0x8000_0000,
            0x8400_000a,
            0xc600_1234,
            0x8600_ff00,
        ] {
            let regs = [(0, x0), (1, 0xc400_0003), (2, 5), (3, 7)];
            assert!(same_as_general(GicVersion::V3, 0x5a00_0000, 0, &regs));
        }
    }

    #[test]
    fn exit_fast_path_console_stores_print_as_the_general_path() {
        const L3: u64 = 0b00_0111; // translation fault, level 3
        for gic in [GicVersion::V3, GicVersion::V2] {
            for (sas, rt) in [(0, 1), (1, 2), (2, 3), (2, 31)] {
                let regs = [(1, 0x41), (2, 0x142), (3, 0xdead_be43)];
                let esr = dabt(sas, rt, true, L3, 0);
                assert!(same_as_general(gic, esr, PL011_BASE, &regs));
            }
        }
    }

    /// A big-endian guest's store reverses the register's bytes on the bus: the character is
    /// the access's highest byte.
    #[test]
    fn exit_fast_path_big_endian_console_stores_print_as_the_general_path() {
        const L3: u64 = 0b00_0111;
        const SCTLR_EE: u64 = 1 << 25;
        for (sas, rt) in [(0, 1), (1, 2), (2, 3), (2, 31)] {
            let regs = [(1, 0x41), (2, 0x4200), (3, 0x4300_0000)];
            let esr = dabt(sas, rt, true, L3, 0);
            assert!(same_as_general_at(
                GicVersion::V3,
                esr,
                PL011_BASE,
                &regs,
                SCTLR_EE
            ));
        }
    }

    #[test]
    fn exit_fast_path_declines_what_is_not_a_plain_console_store() {
        const L3: u64 = 0b00_0111;
        let regs = [(1, 0x41)];
        let declined = [
            // A load from the data register (reads the receive FIFO: the UART's state).
            (dabt(2, 1, false, L3, 0), PL011_BASE),
            // A 64-bit store (the PL011 refuses it: an abort for the guest).
            (dabt(3, 1, true, L3, 0), PL011_BASE),
            // Another PL011 register, another device, RAM.
            (dabt(2, 1, true, L3, 0), PL011_BASE + 0x18),
            (dabt(2, 1, true, L3, 0), 0x0800_0000),
            (dabt(2, 1, true, L3, 0), 0x4000_0000),
            // No syndrome; a stage-1 walk; cache maintenance; an external abort; a
            // permission fault.
            (dabt(2, 1, true, L3, 0) & !(1 << 24), PL011_BASE),
            (dabt(2, 1, true, L3, 1 << 7), PL011_BASE),
            (dabt(2, 1, true, L3, 1 << 8), PL011_BASE),
            (dabt(2, 1, true, L3, 1 << 9), PL011_BASE),
            (dabt(2, 1, true, 0b00_1111, 0), PL011_BASE),
            // SMC, a trapped system register, WFI.
            (0x5e00_0000, 0),
            (0x623a_3036, 0),
            (0x0600_0000, 0),
        ];
        for (esr, ipa) in declined {
            assert!(
                !same_as_general(GicVersion::V3, esr, ipa, &regs),
                "ESR {esr:#x} IPA {ipa:#x} took the fast path"
            );
        }
        // A VM without an emulated PL011 there (`vpl011` absent): the general path decides.
        let mut vm = vm_with(GicVersion::V3, 1);
        vm.uart_data_ipa = None;
        let (p, mut v) = (FakePlatform::default(), vcpu_at(0, 0x8000));
        let esr = dabt(2, 1, true, L3, 0);
        let hpfar = (PL011_BASE >> 12) << 4;
        let stats = &vm.exits[0];
        let fault = || (PL011_BASE, hpfar);
        assert_eq!(try_handle(esr, fault, stats, &vm, &mut v, &p), None);
    }
}
