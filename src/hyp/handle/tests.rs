//! The exit core end to end on the host: real ESR_EL2 values decoded by `GuestExit::decode`,
//! handled against a real `Vm` model and a recording fake platform. Every test name says
//! `exit`, so `cargo test exit` selects them.

use super::*;
use crate::dtb::PhysRange;
use crate::guest_layout::{GUEST_RAM_BASE, GicVersion, PL011_BASE, PL031_BASE};
use crate::hyp::console::Console;
use crate::hyp::exit::Syndrome;
use crate::hyp::inject::{FSC_ALIGNMENT, FSC_EXTERNAL};
use crate::hyp::platform::fake::FakePlatform;
use crate::hyp::vm::VmConfig;
use crate::mm::stage2::{BLOCK_SIZE, Stage2Map, stage2_geometry};
use crate::vcpu::request::Request;
use alloc::string::String;

const RAM_PA: u64 = 0x8_0000_0000;
const RAM_SIZE: u64 = 64 << 20;
const GICD: u64 = 0x0800_0000;
const GICR: u64 = 0x080a_0000;
/// The test VMs' wall clock starts at 2026-01-01 00:00:00 UTC, counter 0, 1000 ticks/s.
const TEST_EPOCH: u64 = 1_767_225_600;

// ESR_EL2 values, from the Arm ARM's ISS encodings (D24.2.40 ESR_EL2).
/// HVC #0 (EC 0x16, IL).
const ESR_HVC0: u64 = 0x5a00_0000;
/// SMC #0 trapped by HCR_EL2.TSC (EC 0x17, IL).
const ESR_SMC0: u64 = 0x5e00_0000;
/// WFI (EC 0x01, IL, TI = 00).
const ESR_WFI: u64 = 0x0600_0000;
/// WFI as a 16-bit T32 instruction (IL = 0).
const ESR_WFI_16: u64 = 0x0400_0000;
/// WFE (TI = 01).
const ESR_WFE: u64 = 0x0600_0001;
/// MSR ICC_SGI1R_EL1, x1 (EC 0x18: Op0 3, Op2 5, Op1 0, CRn 12, Rt 1, CRm 11, write).
const ESR_MSR_SGI1R_X1: u64 = 0x623a_3036;
/// MRS x1, ICC_SGI1R_EL1 (the same, read: the register is write-only).
const ESR_MRS_SGI1R_X1: u64 = 0x623a_3037;
/// MRS x2, CNTP_CTL_EL0 (Op0 3, Op2 1, Op1 3, CRn 14, Rt 2, CRm 2, read).
const ESR_MRS_CNTP_CTL_X2: u64 = 0x6232_f845;
/// MSR CNTP_CTL_EL0, x2.
const ESR_MSR_CNTP_CTL_X2: u64 = 0x6232_f844;
/// MSR CNTP_CVAL_EL0, x3 (Op2 2).
const ESR_MSR_CNTP_CVAL_X3: u64 = 0x6234_f864;
/// MRS x0, S3_0_C15_C0_0 (an IMPLEMENTATION DEFINED register).
const ESR_MRS_IMPDEF_X0: u64 = 0x6230_3c01;
/// MRS x1, ID_AA64PFR0_EL1 (Op0 3, Op2 0, Op1 0, CRn 0, Rt 1, CRm 4, read).
const ESR_MRS_PFR0_X1: u64 = 0x6230_0029;
/// MSR ID_AA64PFR0_EL1, x1 (the same, write).
const ESR_MSR_PFR0_X1: u64 = 0x6230_0028;
/// MRS x1, S3_0_C0_C4_3 (a reserved encoding of the ID space).
const ESR_MRS_ID_RESERVED_X1: u64 = 0x6236_0029;
/// Data abort, lower EL, ISV, 32-bit store from w1, translation fault level 3.
const ESR_STR_W1_L3: u64 = 0x9381_0047;
/// The same store from wzr (Rt = 31).
const ESR_STR_WZR_L3: u64 = 0x939f_0047;
/// Data abort, 32-bit load into w2, translation fault level 3.
const ESR_LDR_W2_L3: u64 = 0x9382_0007;
/// Data abort, 64-bit load into x2 (SAS = 3, SF = 1), translation fault level 3.
const ESR_LDR_X2_L3: u64 = 0x93c2_8007;
/// Data abort without a syndrome (ISV = 0: LDP, SIMD...), translation fault level 3.
const ESR_NO_ISV_L3: u64 = 0x9200_0007;
/// Data abort, translation fault level 2, a store (WnR), no syndrome.
const ESR_DABT_WRITE_L2: u64 = 0x9200_0046;
/// Data abort, alignment fault.
const ESR_DABT_ALIGNMENT: u64 = 0x9200_0021;
/// Data abort, permission fault level 3.
const ESR_DABT_PERMISSION: u64 = 0x9200_000f;
/// Instruction abort, lower EL, translation fault level 3.
const ESR_IABT_L3: u64 = 0x8200_0007;
/// Trapped FP/SIMD access (EC 0x07): a class Bulkhead does not handle.
const ESR_FP: u64 = 0x1e00_0000;

pub(super) fn vm_with(gic: GicVersion, vcpus: usize) -> Vm {
    let config = VmConfig {
        name: String::from("test"),
        vcpu_count: vcpus,
        pcpus: (0..vcpus).collect(),
        ram_size: RAM_SIZE,
        gic,
        ram_pa: RAM_PA,
        kernel: PhysRange { base: 0, size: 0 },
        format: Default::default(),
        initrd: None,
        bootargs: String::new(),
        gicv_pa: None,
        clock: crate::devices::wall_clock::WallClock::new(TEST_EPOCH, 0, 1000),
        vmid_bits: 8,
        shared: alloc::vec::Vec::new(),
        doorbells_out: alloc::vec::Vec::new(),
        doorbells_in: alloc::vec::Vec::new(),
        lifecycle: crate::config::Lifecycle::default(),
        counter_hz: 62_500_000,
        cntvoff: 0,
        allowed: Vec::new(),
        sve_vl_bytes: None,
    };
    let geometry = stage2_geometry(4, 40).unwrap();
    let stage2 = Stage2Map::new_linear(&geometry, 0);
    let console = alloc::boxed::Box::leak(alloc::boxed::Box::new(Console::new(
        alloc::vec![String::from("test")],
        crate::hyp::console_mux::DEFAULT_ESCAPE,
        1000,
    )));
    Vm::new(0, console, config, geometry.vtcr_el2(false), stage2).unwrap()
}

fn vm() -> Vm {
    vm_with(GicVersion::V3, 2)
}

fn syndrome(esr: u64, ipa: u64) -> GuestExit {
    GuestExit::decode(Syndrome {
        esr,
        far: ipa,
        hpfar: (ipa >> 12) << 4,
    })
}

fn run(vm: &Vm, vcpu: &mut Vcpu, p: &FakePlatform, esr: u64, ipa: u64) -> ExitAction {
    handle_exit(&syndrome(esr, ipa), vm, vcpu, p)
}

pub(super) fn vcpu_at(index: usize, pc: u64) -> Vcpu {
    let mut v = Vcpu::new(index);
    v.regs.pc = pc;
    v.regs.pstate = 0x3c5;
    v
}

fn hvc(vm: &Vm, vcpu: &mut Vcpu, p: &FakePlatform, fid: u64, args: [u64; 3]) -> ExitAction {
    vcpu.regs.x[0] = fid;
    vcpu.regs.x[1..4].copy_from_slice(&args);
    run(vm, vcpu, p, ESR_HVC0, 0)
}

#[test]
fn exit_hvc_psci_version_is_1_1_and_pc_stays() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4008_0004));
    assert_eq!(
        hvc(&vm, &mut v, &p, 0x8400_0000, [0; 3]),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[0], 0x1_0001);
    // HVC's preferred return address is already the next instruction.
    assert_eq!(v.regs.pc, 0x4008_0004);
}

#[test]
fn exit_smc_psci_version_skips_the_smc() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4008_0000));
    v.regs.x[0] = 0x8400_0000;
    assert_eq!(run(&vm, &mut v, &p, ESR_SMC0, 0), ExitAction::Resume);
    assert_eq!(v.regs.x[0], 0x1_0001);
    assert_eq!(v.regs.pc, 0x4008_0004);
}

#[test]
fn exit_hvc_unknown_function_is_not_supported() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x1000));
    assert_eq!(
        hvc(&vm, &mut v, &p, 0xc600_1234, [1, 2, 3]),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[0] as i64, -1);
}

#[test]
fn exit_psci_cpu_on_posts_a_start_request() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x1000));
    let action = hvc(
        &vm,
        &mut v,
        &p,
        0xc400_0003,
        [1, GUEST_RAM_BASE + 0x1000, 42],
    );
    assert_eq!(action, ExitAction::Resume);
    assert_eq!(v.regs.x[0], 0);
    assert!(vm.requests[1].take_requests().contains(Request::CpuOn));
    // Started twice: ALREADY_ON or ON_PENDING, never success.
    hvc(
        &vm,
        &mut v,
        &p,
        0xc400_0003,
        [1, GUEST_RAM_BASE + 0x1000, 42],
    );
    assert_ne!(v.regs.x[0], 0);
}

#[test]
fn exit_psci_cpu_on_outside_ram_is_refused() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x1000));
    hvc(&vm, &mut v, &p, 0xc400_0003, [1, 0x10, 0]);
    assert_eq!(v.regs.x[0] as i64, -2, "INVALID_PARAMETERS");
    assert!(!vm.requests[1].take_requests().contains(Request::CpuOn));
}

#[test]
fn exit_psci_system_off_and_reset_are_actions() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x1000));
    assert_eq!(
        hvc(&vm, &mut v, &p, 0x8400_0008, [0; 3]),
        ExitAction::SystemOff
    );
    let vm = self::vm();
    assert_eq!(
        hvc(&vm, &mut v, &p, 0x8400_0009, [0; 3]),
        ExitAction::SystemReset
    );
}

#[test]
fn exit_psci_cpu_off_and_suspend() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x1000));
    assert_eq!(hvc(&vm, &mut v, &p, 0xc400_0001, [0; 3]), ExitAction::Block);
    assert_eq!(
        hvc(&vm, &mut v, &p, 0x8400_0002, [0; 3]),
        ExitAction::CpuOff
    );
}

#[test]
fn exit_wfi_blocks_after_the_instruction() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x2000));
    assert_eq!(run(&vm, &mut v, &p, ESR_WFI, 0), ExitAction::Block);
    assert_eq!(v.regs.pc, 0x2004);
    assert_eq!(
        vm.exits[0].wfi.load(core::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn exit_wfi_16_bit_skips_two_bytes() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x2000));
    assert_eq!(run(&vm, &mut v, &p, ESR_WFI_16, 0), ExitAction::Block);
    assert_eq!(v.regs.pc, 0x2002);
}

#[test]
fn exit_wfe_yields_after_the_instruction() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x2000));
    assert_eq!(run(&vm, &mut v, &p, ESR_WFE, 0), ExitAction::Yield);
    assert_eq!(v.regs.pc, 0x2004);
}

#[test]
fn exit_wfit_blocks_until_its_timeout_or_resumes_if_it_passed() {
    // WFIT x3 (EC 0x01, IL, RN = 3, RV, TI = 0b10).
    const ESR_WFIT_X3: u64 = 0x0600_0000 | (3 << 5) | (1 << 2) | 0b10;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x2000));
    p.now.set(100);
    v.regs.x[3] = 50;
    assert_eq!(run(&vm, &mut v, &p, ESR_WFIT_X3, 0), ExitAction::Resume);
    assert_eq!((v.regs.pc, v.wake_at), (0x2004, None));
    v.regs.x[3] = 500;
    assert_eq!(run(&vm, &mut v, &p, ESR_WFIT_X3, 0), ExitAction::Block);
    assert_eq!((v.regs.pc, v.wake_at), (0x2008, Some(500)));
    // The EL2 timer is armed for the timeout (no emulated timer deadline).
    crate::hyp::timer::update_ptimer(&vm, &mut v, &p);
    assert_eq!(p.hyp_timer.get(), Some(500));
    assert!(!v.wake_up(499, false), "not before the timeout");
    assert!(v.wake_up(500, false), "at the timeout");
    assert_eq!(v.wake_at, None);
    // An interrupt ends it early; a plain WFI has no timeout.
    v.wake_at = Some(900);
    assert!(v.wake_up(200, true));
    assert!(
        !v.wake_up(u64::MAX, false),
        "WFI waits for an interrupt only"
    );
}

#[test]
fn exit_unknown_sysreg_is_undefined_at_the_instruction() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x3000));
    let action = run(&vm, &mut v, &p, ESR_MRS_IMPDEF_X0, 0);
    assert_eq!(action, ExitAction::Inject(Exception::Undef));
    assert_eq!(v.regs.pc, 0x3000);
}

/// A `-cpu max`-like ID_AA64PFR0_EL1: EL2 (2), GIC sysregs (1), SVE (1), AMU (1), RAS (1).
const HW_PFR0: u64 = 0x1201_1111_1112_2222;

fn platform_with_pfr0() -> FakePlatform {
    let p = FakePlatform::default();
    p.id_registers
        .borrow_mut()
        .push((crate::hyp::exit::SysReg::ID_AA64PFR0_EL1.id(), HW_PFR0));
    p
}

#[test]
fn exit_id_register_read_is_sanitised_for_the_guest() {
    let (vm, p, mut v) = (vm(), platform_with_pfr0(), vcpu_at(0, 0x3000));
    assert_eq!(run(&vm, &mut v, &p, ESR_MRS_PFR0_X1, 0), ExitAction::Resume);
    assert_eq!(v.regs.pc, 0x3004);
    let pfr0 = v.regs.x[1];
    assert_eq!((pfr0 >> 8) & 0xf, 0, "EL2 hidden");
    assert_eq!((pfr0 >> 24) & 0xf, 1, "GICv3 system registers");
    assert_eq!((pfr0 >> 44) & 0xf, 0, "AMU hidden");
    assert_eq!(pfr0 & 0xff, 0x12, "EL0 as the CPU, EL1 AArch64 only");
}

#[test]
fn exit_id_register_gic_field_follows_a_gicv2_guest() {
    let (vm, p, mut v) = (
        vm_with(GicVersion::V2, 1),
        platform_with_pfr0(),
        vcpu_at(0, 0x3000),
    );
    assert_eq!(run(&vm, &mut v, &p, ESR_MRS_PFR0_X1, 0), ExitAction::Resume);
    assert_eq!((v.regs.x[1] >> 24) & 0xf, 0);
}

#[test]
fn exit_id_register_write_is_undefined() {
    let (vm, p, mut v) = (vm(), platform_with_pfr0(), vcpu_at(0, 0x3000));
    v.regs.x[1] = 0x1234;
    let action = run(&vm, &mut v, &p, ESR_MSR_PFR0_X1, 0);
    assert_eq!(action, ExitAction::Inject(Exception::Undef));
    assert_eq!(v.regs.pc, 0x3000);
}

#[test]
fn exit_reserved_id_register_reads_zero() {
    let (vm, p, mut v) = (vm(), platform_with_pfr0(), vcpu_at(0, 0x3000));
    v.regs.x[1] = 0x1234;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_MRS_ID_RESERVED_X1, 0),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[1], 0);
    assert_eq!(v.regs.pc, 0x3004);
}

#[test]
fn exit_sgi1r_write_pends_the_sgi_on_its_target() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x3000));
    // INTID 3 to target list {vCPU 1} in affinity 0.0.0.
    v.regs.x[1] = (3 << 24) | 0b10;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_MSR_SGI1R_X1, 0),
        ExitAction::Resume
    );
    assert_eq!(v.regs.pc, 0x3004);
    // GICR_ISPENDR0 of vCPU 1: redistributor frame 1, SGI page, offset 0x200.
    let pending = vm
        .vgic
        .lock()
        .redist_read(0x2_0000 + 0x1_0200, crate::devices::mmio::AccessSize::Word);
    assert_eq!(pending.unwrap() & (1 << 3), 1 << 3);
}

/// Sending an SGI tells its target through a `Wake` request, not through `Vm::vgic_epoch`:
/// the sender and the other vCPUs keep their "nothing to load" (`Vcpu::quiet_epoch`).
#[test]
fn exit_sgi1r_write_wakes_its_target_and_leaves_the_vgic_epoch_alone() {
    use crate::devices::mmio::AccessSize::Word;
    use crate::vcpu::request::Request;
    use core::sync::atomic::Ordering;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x3000));
    {
        let mut vgic = vm.vgic();
        vgic.dist_write(0, 0, Word, 0b11).unwrap(); // GICD_CTLR: both groups on
        // vCPU 1's SGI 3: Group 1 (GICR_IGROUPR0), enabled (GICR_ISENABLER0).
        vgic.redist_write(0x2_0000 + 0x1_0080, Word, 1 << 3)
            .unwrap();
        vgic.redist_write(0x2_0000 + 0x1_0100, Word, 1 << 3)
            .unwrap();
    }
    let before = vm.vgic_epoch.load(Ordering::Relaxed);
    v.regs.x[1] = (3 << 24) | 0b10;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_MSR_SGI1R_X1, 0),
        ExitAction::Resume
    );
    assert_eq!(vm.vgic_epoch.load(Ordering::Relaxed), before);
    assert!(vm.requests[1].pending().contains(Request::Wake));
    assert!(!vm.requests[0].pending().contains(Request::Wake));
    assert!(vm.vgic.lock().has_deliverable(1));
}

#[test]
fn exit_sgi1r_read_is_undefined() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x3000));
    assert_eq!(
        run(&vm, &mut v, &p, ESR_MRS_SGI1R_X1, 0),
        ExitAction::Inject(Exception::Undef)
    );
    assert_eq!(v.regs.pc, 0x3000);
}

#[test]
fn exit_ptimer_programming_arms_the_el2_timer() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x3000));
    p.now.set(100);
    v.regs.x[3] = 5000;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_MSR_CNTP_CVAL_X3, 0),
        ExitAction::Resume
    );
    v.regs.x[2] = 1; // ENABLE
    assert_eq!(
        run(&vm, &mut v, &p, ESR_MSR_CNTP_CTL_X2, 0),
        ExitAction::Resume
    );
    assert_eq!(p.hyp_timer.get(), Some(5000));
    assert_eq!(v.regs.pc, 0x3008);
    // Read back: ENABLE, not yet ISTATUS.
    v.regs.x[2] = 0xdead;
    run(&vm, &mut v, &p, ESR_MRS_CNTP_CTL_X2, 0);
    assert_eq!(v.regs.x[2], 1);
    // Past the deadline: ISTATUS, PPI 30 pending, EL2 timer stopped.
    p.now.set(6000);
    run(&vm, &mut v, &p, ESR_MRS_CNTP_CTL_X2, 0);
    assert_eq!(v.regs.x[2], 0b101);
    assert_eq!(p.hyp_timer.get(), None);
    assert!(v.timers.ptimer_level);
}

#[test]
fn exit_pl011_store_goes_to_the_console() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    v.regs.x[1] = u64::from(b'A') | 0xffff_ff00;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_STR_W1_L3, PL011_BASE),
        ExitAction::Resume
    );
    assert_eq!(&*p.console_out.borrow(), b"A");
    assert_eq!(v.regs.pc, 0x4004);
}

#[test]
fn exit_pl011_store_from_xzr_writes_zero() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    v.regs.x[30] = u64::from(b'Z');
    run(&vm, &mut v, &p, ESR_STR_WZR_L3, PL011_BASE);
    assert_eq!(&*p.console_out.borrow(), &[0]);
}

#[test]
fn exit_pl011_load_reads_the_flag_register() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    v.regs.x[2] = u64::MAX;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE + 0x18),
        ExitAction::Resume
    );
    // RX FIFO empty (RXFE), TX FIFO empty (TXFE); a W register load clears the top half.
    assert_eq!(v.regs.x[2], 0x90);
    assert_eq!(v.regs.pc, 0x4004);
}

#[test]
fn exit_console_input_reaches_the_guest_pl011() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    p.console_in
        .borrow_mut()
        .extend(b"hi".map(crate::hyp::platform::ConsoleRx::Byte));
    crate::hyp::console_bridge::forward_input(core::slice::from_ref(&vm), &p);
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE);
    assert_eq!(v.regs.x[2], u64::from(b'h'));
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE);
    assert_eq!(v.regs.x[2], u64::from(b'i'));
}

#[test]
fn exit_pl031_counter_reads_the_wall_clock_and_a_load_sets_only_this_vm() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    p.now.set(5_000); // 5 s after the clock's start
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL031_BASE);
    assert_eq!(v.regs.x[2], TEST_EPOCH + 5);
    assert_eq!(v.regs.pc, 0x4004);
    // The guest sets its clock (RTC_LR): it counts on from there; another VM does not.
    v.regs.x[1] = 1_000_000;
    run(&vm, &mut v, &p, ESR_STR_W1_L3, PL031_BASE + 8);
    p.now.set(7_000);
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL031_BASE);
    assert_eq!(v.regs.x[2], 1_000_002);
    let other = self::vm();
    let mut w = vcpu_at(0, 0x4000);
    run(&other, &mut w, &p, ESR_LDR_W2_L3, PL031_BASE);
    assert_eq!(w.regs.x[2], TEST_EPOCH + 7);
}

#[test]
fn exit_pl031_match_fires_at_its_deadline_without_guest_accesses() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    p.now.set(1_500);
    v.regs.x[1] = 1; // RTC_IMSC: unmask the match
    run(&vm, &mut v, &p, ESR_STR_W1_L3, PL031_BASE + 0x10);
    v.regs.x[1] = TEST_EPOCH + 3; // RTC_MR: two seconds ahead of the counter (TEST_EPOCH + 1)
    run(&vm, &mut v, &p, ESR_STR_W1_L3, PL031_BASE + 4);
    // The platform is told when to look: the counter where the clock reaches MR.
    assert_eq!(p.rtc_deadline.get(), Some(3_000));
    assert!(!vm.rtc_line.load(core::sync::atomic::Ordering::Relaxed));
    p.now.set(3_000);
    crate::hyp::rtc::poll_all(core::slice::from_ref(&vm), &p);
    assert!(vm.rtc_line.load(core::sync::atomic::Ordering::Relaxed));
    assert_eq!(p.rtc_deadline.get(), None);
    // RTC_ICR clears it and drops the line.
    run(&vm, &mut v, &p, ESR_STR_W1_L3, PL031_BASE + 0x1c);
    assert!(!vm.rtc_line.load(core::sync::atomic::Ordering::Relaxed));
}

#[test]
fn exit_console_break_reaches_the_guest_pl011_between_its_neighbours() {
    use crate::hyp::platform::ConsoleRx;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    p.console_in.borrow_mut().extend([
        ConsoleRx::Byte(b'x'),
        ConsoleRx::Break,
        ConsoleRx::Byte(b'h'),
    ]);
    // Linux's amba-pl011 keeps its FIFO on (LCR_H.FEN): the three fit.
    v.regs.x[1] = 1 << 4;
    run(&vm, &mut v, &p, ESR_STR_W1_L3, PL011_BASE + 0x2c);
    crate::hyp::console_bridge::forward_input(core::slice::from_ref(&vm), &p);
    let mut dr = || {
        run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE);
        v.regs.x[2]
    };
    // SysRq's sequence as the guest's driver reads it: the break (a 0 flagged DR.BE), the key.
    assert_eq!(
        [dr(), dr(), dr()],
        [u64::from(b'x'), 1 << 10, u64::from(b'h')]
    );
    assert!(p.console_out.borrow().is_empty());
}

#[test]
fn exit_console_statistics_key_prints_live_statistics_and_the_guest_gets_nothing() {
    use crate::hyp::platform::ConsoleRx;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    // One exit: a line end written to the PL011.
    v.regs.x[1] = u64::from(b'\n');
    run(&vm, &mut v, &p, ESR_STR_W1_L3, PL011_BASE);
    let escape = crate::hyp::console_mux::DEFAULT_ESCAPE;
    p.console_in
        .borrow_mut()
        .extend([escape, escape, b's'].map(ConsoleRx::Byte));
    crate::hyp::console_bridge::forward_input(core::slice::from_ref(&vm), &p);
    let out = String::from_utf8(p.console_out.borrow().clone()).unwrap();
    assert_eq!(
        out,
        "\nbulkhead: stats: test running, no VMID yet, 2 vCPUs, 0 stage-2 mapping faults, \
         1 exits (irq 0, hvc/smc 0, wfi 0, sysreg 0, mmio 1, other 0), 0 LR fills\r\n\
         bulkhead: stats: test vcpu 0 on CPU 0: on, \
         1 exits (irq 0, hvc/smc 0, wfi 0, sysreg 0, mmio 1, other 0), 0 LR fills\r\n\
         bulkhead: stats: test vcpu 1 on CPU 1: off, \
         0 exits (irq 0, hvc/smc 0, wfi 0, sysreg 0, mmio 0, other 0), 0 LR fills\r\n"
    );
    // Nothing reached the guest's receive FIFO (FR.RXFE set).
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE + 0x18);
    assert_ne!(v.regs.x[2] & 0x10, 0);
}

#[test]
fn exit_pl011_64_bit_access_is_an_external_abort() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let action = run(&vm, &mut v, &p, ESR_LDR_X2_L3, PL011_BASE);
    assert_eq!(
        action,
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            far: PL011_BASE,
            write: false
        })
    );
    assert_eq!(v.regs.pc, 0x4000);
}

#[test]
fn exit_mmio_without_syndrome_is_an_external_abort() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let action = run(&vm, &mut v, &p, ESR_NO_ISV_L3, PL011_BASE + 4);
    assert_eq!(
        action,
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            far: PL011_BASE + 4,
            write: false
        })
    );
}

#[test]
fn exit_gicd_write_then_read_ctlr() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    v.regs.x[1] = 0x2; // EnableGrp1A
    assert_eq!(
        run(&vm, &mut v, &p, ESR_STR_W1_L3, GICD),
        ExitAction::Resume
    );
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, GICD);
    assert_eq!(v.regs.x[2] & 0x2, 0x2);
    assert_eq!(v.regs.pc, 0x4008);
}

#[test]
fn exit_gicd_typer_reports_the_spis() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, GICD + 4);
    // ITLinesNumber: 32 * (N + 1) interrupt IDs cover the SPIs the VM has.
    assert!(v.regs.x[2] & 0x1f >= 1);
}

#[test]
fn exit_gicr_typer_names_the_vcpu() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    // GICR_TYPER of redistributor 1, upper word: its affinity (vCPU 1 = Aff0 1).
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, GICR + 0x2_0000 + 0xc);
    assert_eq!(v.regs.x[2], 1);
}

#[test]
fn exit_gicv2_distributor_is_emulated_too() {
    let (vm, p, mut v) = (
        vm_with(GicVersion::V2, 1),
        FakePlatform::default(),
        vcpu_at(0, 0x4000),
    );
    assert_eq!(
        run(&vm, &mut v, &p, ESR_LDR_W2_L3, GICD + 4),
        ExitAction::Resume
    );
    assert_eq!(v.regs.pc, 0x4004);
}

/// DC CIVAC on the PL011 (data abort, CM = 1, WnR = 1 as the Arm ARM reports cache
/// maintenance, translation fault level 3, no syndrome).
const ESR_DC_CIVAC_L3: u64 = 0x9200_0147;

#[test]
fn exit_cache_maintenance_on_an_emulated_device_completes() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    assert_eq!(
        run(&vm, &mut v, &p, ESR_DC_CIVAC_L3, PL011_BASE),
        ExitAction::Resume
    );
    assert_eq!(v.regs.pc, 0x4004, "the DC instruction is done");
    assert!(p.console_out.borrow().is_empty(), "and touched nothing");
}

#[test]
fn exit_abort_outside_ram_and_devices_is_an_external_abort() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let ipa = 0x2000_0000;
    let action = run(&vm, &mut v, &p, ESR_DABT_WRITE_L2, ipa);
    assert_eq!(
        action,
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            far: ipa,
            write: true
        })
    );
    assert_eq!(v.regs.pc, 0x4000);
    assert!(p.cleaned.borrow().is_empty());
}

#[test]
fn exit_unaligned_device_access_is_an_alignment_fault() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    // A 32-bit load from PL011 offset 0xfe1 (a guest that mapped the UART as Normal memory).
    assert_eq!(
        run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE + 0xfe1),
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_ALIGNMENT,
            far: PL011_BASE + 0xfe1,
            write: false,
        })
    );
    assert_eq!(v.regs.pc, 0x4000, "taken at the access");
}

#[test]
fn exit_big_endian_guest_reads_device_bytes_reversed() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    p.sctlr_el1.set(1 << 25); // SCTLR_EL1.EE
    assert_eq!(
        run(&vm, &mut v, &p, ESR_LDR_W2_L3, PL011_BASE + 0xfe0),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[2], 0x1100_0000, "UARTPeriphID0 (0x11) big-endian");
}

#[test]
fn exit_stage_1_walk_into_a_hole_is_an_external_abort_on_the_walk_at_its_level() {
    // The guest's level-1 table (4 KiB granule, 39-bit VA) in its RAM: entry 0 points to a
    // level-2 table at 0x2000_0000, where nothing is.
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    *p.ram.borrow_mut() = (RAM_PA, vec![0u8; 0x2000]);
    // The guest wrote its tables: their block was touched (mapped) first.
    assert!(vm.prepare_first_touch(&p, GUEST_RAM_BASE..GUEST_RAM_BASE + BLOCK_SIZE));
    p.ram.borrow_mut().1[..8].copy_from_slice(&(0x2000_0000u64 | 0b11).to_le_bytes());
    p.stage1.set(Some(crate::hyp::walk_level::Stage1Regs {
        tcr_el1: 25,
        ttbr0_el1: GUEST_RAM_BASE,
        ttbr1_el1: 0,
    }));
    // A load from VA 0x0900_0fe0: its level-2 descriptor read (0x2000_0240) faults at stage 2
    // (S1PTW, translation fault level 3, no syndrome).
    let va = 0x0900_0fe0;
    let exit = GuestExit::decode(Syndrome {
        esr: ESR_NO_ISV_L3 | (1 << 7),
        far: va,
        hpfar: (0x2000_0240u64 >> 12) << 4,
    });
    assert_eq!(
        handle_exit(&exit, &vm, &mut v, &p),
        ExitAction::Inject(Exception::DataAbort {
            fsc: 0x16,
            far: va,
            write: false,
        })
    );
}

#[test]
fn exit_abort_past_the_end_of_ram_is_an_external_abort() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let ipa = GUEST_RAM_BASE + RAM_SIZE;
    assert!(matches!(
        run(&vm, &mut v, &p, ESR_LDR_W2_L3, ipa),
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            ..
        })
    ));
}

#[test]
fn exit_first_touch_of_ram_maps_a_zeroed_block_once() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let ipa = GUEST_RAM_BASE + 0x1234;
    assert_eq!(run(&vm, &mut v, &p, ESR_NO_ISV_L3, ipa), ExitAction::Resume);
    assert_eq!(v.regs.pc, 0x4000, "the access is retried, not skipped");
    assert_eq!(
        &*p.zeroed.borrow(),
        &[(RAM_PA, BLOCK_SIZE)],
        "never-used RAM is zeroed (and so cleaned) before the guest sees it"
    );
    assert!(p.cleaned.borrow().is_empty());
    let (pa, size, _) = vm.stage2.lock().lookup(ipa).unwrap();
    assert_eq!((pa, size), (RAM_PA + 0x1234, BLOCK_SIZE));
    // A second vCPU faulting on the same block finds it mapped.
    let mut other = vcpu_at(1, 0x5000);
    assert_eq!(
        run(&vm, &mut other, &p, ESR_NO_ISV_L3, ipa + 8),
        ExitAction::Resume
    );
    assert_eq!(p.zeroed.borrow().len(), 1);
    assert_eq!(
        vm.stage2_faults.load(core::sync::atomic::Ordering::Relaxed),
        1
    );
    // After a reset (stage 2 emptied) the RAM keeps its content: mapped again, cleaned, not
    // zeroed.
    vm.stage2.lock().unmap_all().unwrap();
    assert_eq!(run(&vm, &mut v, &p, ESR_NO_ISV_L3, ipa), ExitAction::Resume);
    assert_eq!(p.zeroed.borrow().len(), 1);
    assert_eq!(&*p.cleaned.borrow(), &[(RAM_PA, BLOCK_SIZE)]);
}

#[test]
fn exit_set_way_sweep_cleans_the_used_ram_once() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    // Two blocks used (first touches), the rest never.
    for ipa in [GUEST_RAM_BASE, GUEST_RAM_BASE + 3 * BLOCK_SIZE] {
        assert_eq!(run(&vm, &mut v, &p, ESR_NO_ISV_L3, ipa), ExitAction::Resume);
    }
    // DC CISW, x1 (Op0 1, Op1 0, CRn 7, CRm 14, Op2 2, write).
    let dc_cisw_x1 =
        (0x18 << 26) | (1 << 25) | (2 << 17) | (7 << 10) | (1 << 5) | (14 << 1) | (1 << 20);
    v.regs.x[1] = 0x2; // level 2, set 0, way 0: the sweep's first operation
    assert_eq!(run(&vm, &mut v, &p, dc_cisw_x1, 0), ExitAction::Resume);
    assert_eq!(v.regs.pc, 0x4004);
    assert_eq!(
        &*p.cleaned.borrow(),
        &[(RAM_PA, BLOCK_SIZE), (RAM_PA + 3 * BLOCK_SIZE, BLOCK_SIZE)]
    );
    v.regs.x[1] = 0x2 | (5 << 6); // another set: completes, nothing more to do
    assert_eq!(run(&vm, &mut v, &p, dc_cisw_x1, 0), ExitAction::Resume);
    assert_eq!(p.cleaned.borrow().len(), 2);
}

#[test]
fn exit_os_lock_and_debug_rom_are_emulated_dcc_raz_wi() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    // MSR/MRS with Op0 2: (op1, crn, crm, op2), Rt 1.
    let sys = |op0: u64, op1: u64, crn: u64, crm: u64, op2: u64, read: bool| {
        (0x18 << 26)
            | (1 << 25)
            | (op0 << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (1 << 5)
            | (crm << 1)
            | u64::from(read)
    };
    let oslar = sys(2, 0, 1, 0, 4, false);
    let oslsr = sys(2, 0, 1, 1, 4, true);
    v.regs.x[1] = 1;
    assert_eq!(run(&vm, &mut v, &p, oslar, 0), ExitAction::Resume);
    assert_eq!(run(&vm, &mut v, &p, oslsr, 0), ExitAction::Resume);
    assert_eq!(v.regs.x[1], 0b1010, "OSLM = 0b10, OSLK = 1");
    assert_eq!(p.os_lock.get(), Some(true), "the CPU's own lock follows");
    v.regs.x[1] = 0;
    run(&vm, &mut v, &p, oslar, 0);
    run(&vm, &mut v, &p, oslsr, 0);
    assert_eq!(v.regs.x[1], 0b1000, "unlocked");
    assert_eq!(p.os_lock.get(), Some(false));
    // OSLSR_EL1 is read-only.
    assert_eq!(
        run(&vm, &mut v, &p, sys(2, 0, 1, 1, 4, false), 0),
        ExitAction::Inject(Exception::Undef)
    );
    // MDRAR_EL1 and MDCCSR_EL0 read as zero.
    for read in [sys(2, 0, 1, 0, 0, true), sys(2, 3, 0, 1, 0, true)] {
        v.regs.x[1] = 0xdead;
        assert_eq!(run(&vm, &mut v, &p, read, 0), ExitAction::Resume);
        assert_eq!(v.regs.x[1], 0);
    }
    // ACTLR_EL1: the core's reset value; writes ignored.
    p.actlr_el1.set(0x1234);
    assert_eq!(
        run(&vm, &mut v, &p, sys(3, 0, 1, 0, 1, false), 0),
        ExitAction::Resume
    );
    assert_eq!(
        run(&vm, &mut v, &p, sys(3, 0, 1, 0, 1, true), 0),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[1], 0x1234);
    // An IMPLEMENTATION DEFINED register (HCR_EL2.TIDCP): UNDEFINED.
    assert_eq!(
        run(&vm, &mut v, &p, sys(3, 1, 11, 0, 2, true), 0),
        ExitAction::Inject(Exception::Undef)
    );
}

#[test]
fn exit_instruction_fetch_from_ram_maps_it() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, GUEST_RAM_BASE));
    assert_eq!(
        run(&vm, &mut v, &p, ESR_IABT_L3, GUEST_RAM_BASE),
        ExitAction::Resume
    );
    assert!(vm.stage2.lock().lookup(GUEST_RAM_BASE).is_some());
}

#[test]
fn exit_instruction_fetch_from_a_device_is_a_prefetch_abort() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, PL011_BASE));
    assert_eq!(
        run(&vm, &mut v, &p, ESR_IABT_L3, PL011_BASE),
        ExitAction::Inject(Exception::InstructionAbort {
            fsc: FSC_EXTERNAL,
            far: PL011_BASE
        })
    );
}

#[test]
fn exit_alignment_fault_is_reflected_as_alignment() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let ipa = GUEST_RAM_BASE + 3;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_DABT_ALIGNMENT, ipa),
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_ALIGNMENT,
            far: ipa,
            write: false
        })
    );
    assert!(
        vm.stage2.lock().lookup(ipa).is_none(),
        "not mapped: never retried"
    );
}

#[test]
fn exit_permission_fault_is_not_retried() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let ipa = GUEST_RAM_BASE;
    assert!(matches!(
        run(&vm, &mut v, &p, ESR_DABT_PERMISSION, ipa),
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            ..
        })
    ));
    assert!(p.cleaned.borrow().is_empty());
}

#[test]
fn exit_unhandled_class_is_undefined() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    assert_eq!(
        run(&vm, &mut v, &p, ESR_FP, 0),
        ExitAction::Inject(Exception::Undef)
    );
    assert_eq!(
        vm.exits[0]
            .other
            .load(core::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn exit_virtual_timer_firing_raises_ppi_27_and_masks_the_physical_one() {
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    p.vtimer_ctl.set(0b101);
    crate::hyp::timer::sample_vtimer(&vm, &mut v, &p);
    assert!(v.timers.vtimer_level);
    assert_eq!(p.vtimer_irq_enabled.get(), Some(false));
    // Masked by the guest (IMASK): the line drops, the physical PPI comes back.
    p.vtimer_ctl.set(0b111);
    crate::hyp::timer::sample_vtimer(&vm, &mut v, &p);
    assert!(!v.timers.vtimer_level);
    assert_eq!(p.vtimer_irq_enabled.get(), Some(true));
}

/// Two VMs, "a" (id 0) with doorbell 0 to "b" (id 1, SPI 5) and a shared region; "b" with none.
fn doorbell_pair() -> &'static [Vm] {
    use crate::hyp::vm::{Doorbell, SharedRegion};
    let console = alloc::boxed::Box::leak(alloc::boxed::Box::new(Console::new(
        alloc::vec![String::from("a"), String::from("b")],
        crate::hyp::console_mux::DEFAULT_ESCAPE,
        1000,
    )));
    let make = |id: usize, out: Vec<Doorbell>| {
        let config = VmConfig {
            name: String::from(if id == 0 { "a" } else { "b" }),
            vcpu_count: 1,
            pcpus: alloc::vec![id],
            ram_size: RAM_SIZE,
            gic: GicVersion::V3,
            ram_pa: RAM_PA + id as u64 * RAM_SIZE,
            kernel: PhysRange { base: 0, size: 0 },
            format: Default::default(),
            initrd: None,
            bootargs: String::new(),
            gicv_pa: None,
            clock: crate::devices::wall_clock::WallClock::new(TEST_EPOCH, 0, 1000),
            vmid_bits: 8,
            shared: alloc::vec![SharedRegion {
                id: String::from("s"),
                ipa: 0x7fe0_0000,
                size: 0x20_0000,
                host_pa: 0x9_0000_0000,
            }],
            doorbells_out: out,
            doorbells_in: Vec::new(),
            lifecycle: crate::config::Lifecycle::default(),
            counter_hz: 62_500_000,
            cntvoff: 0,
            allowed: Vec::new(),
            sve_vl_bytes: None,
        };
        let geometry = stage2_geometry(4, 40).unwrap();
        let stage2 = Stage2Map::new_linear(&geometry, 0);
        Vm::new(id, console, config, geometry.vtcr_el2(false), stage2).unwrap()
    };
    let bell = Doorbell {
        peer: String::from("b"),
        peer_id: 1,
        spi: 5,
    };
    let vms: &'static [Vm] =
        Vec::leak(alloc::vec![make(0, alloc::vec![bell]), make(1, Vec::new())]);
    for vm in vms {
        vm.peers.call_once(|| vms);
    }
    vms
}

#[test]
fn exit_doorbell_ring_pends_the_peers_spi() {
    let vms = doorbell_pair();
    let (p, mut v) = (FakePlatform::default(), vcpu_at(0, 0x1000));
    // The receiver enables SPI 5 (INTID 37) in its distributor: GICD_ISENABLER1 bit 5.
    vms[1]
        .vgic()
        .dist_write(0, 0x104, crate::devices::mmio::AccessSize::Word, 1 << 5)
        .unwrap();
    assert_eq!(
        hvc(&vms[0], &mut v, &p, 0x8600_0001, [0, 0, 0]),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[0], 0);
    // GICD_ISPENDR1 of the receiver: SPI 5 pending.
    let pending = vms[1]
        .vgic
        .lock()
        .dist_read(0, 0x204, crate::devices::mmio::AccessSize::Word)
        .unwrap();
    assert_eq!(pending & (1 << 5), 1 << 5);
    // The ringer's own distributor saw nothing.
    let own = vms[0]
        .vgic
        .lock()
        .dist_read(0, 0x204, crate::devices::mmio::AccessSize::Word)
        .unwrap();
    assert_eq!(own, 0);
}

#[test]
fn exit_doorbell_numbers_not_given_are_refused() {
    let vms = doorbell_pair();
    let (p, mut v) = (FakePlatform::default(), vcpu_at(0, 0x1000));
    hvc(&vms[0], &mut v, &p, 0x8600_0001, [1, 0, 0]);
    assert_eq!(v.regs.x[0] as i64, -3, "INVALID_PARAMETER");
    hvc(&vms[0], &mut v, &p, 0x8600_0001, [u64::MAX, 0, 0]);
    assert_eq!(v.regs.x[0] as i64, -3);
    // A VM without doorbells: NOT_SUPPORTED, also from ARCH_FEATURES.
    hvc(&vms[1], &mut v, &p, 0x8600_0001, [0, 0, 0]);
    assert_eq!(v.regs.x[0] as i64, -1);
    hvc(&vms[1], &mut v, &p, 0x8000_0001, [0x8600_0001, 0, 0]);
    assert_eq!(v.regs.x[0] as i64, -1);
    hvc(&vms[0], &mut v, &p, 0x8000_0001, [0x8600_0001, 0, 0]);
    assert_eq!(v.regs.x[0], 0);
}

#[test]
fn exit_vendor_uid_and_unknown_vendor_calls() {
    let vms = doorbell_pair();
    let (p, mut v) = (FakePlatform::default(), vcpu_at(0, 0x1000));
    hvc(&vms[0], &mut v, &p, 0x8600_ff01, [0; 3]);
    let uid: Vec<u8> = v.regs.x[..4]
        .iter()
        .flat_map(|w| (*w as u32).to_le_bytes())
        .collect();
    assert_eq!(&uid[10..], b"bulkhd");
    hvc(&vms[0], &mut v, &p, 0x8600_0002, [0; 3]);
    assert_eq!(v.regs.x[0] as i64, -1);
}

#[test]
fn exit_shared_region_maps_the_same_host_pages_in_both_vms() {
    let vms = doorbell_pair();
    let p = FakePlatform::default();
    for vm in vms {
        let mut v = vcpu_at(0, 0x1000);
        assert_eq!(
            run(vm, &mut v, &p, ESR_NO_ISV_L3, 0x7fe0_1234),
            ExitAction::Resume
        );
        let (pa, size, _) = vm.stage2.lock().lookup(0x7fe0_1234).unwrap();
        assert_eq!((pa, size), (0x9_0000_1234, BLOCK_SIZE));
    }
    // Just past the region: a hole.
    let mut v = vcpu_at(0, 0x1000);
    assert!(matches!(
        run(&vms[0], &mut v, &p, ESR_LDR_W2_L3, 0x8000_0000),
        ExitAction::Inject(Exception::DataAbort {
            fsc: FSC_EXTERNAL,
            ..
        })
    ));
}

/// Reads of the distributor and redistributors change nothing, so they must not tell the vCPUs
/// to refill their list registers (`Vm::vgic_epoch`); a write does.
#[test]
fn exit_gic_reads_leave_the_vgic_epoch_alone() {
    use core::sync::atomic::Ordering;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4000));
    let before = vm.vgic_epoch.load(Ordering::Relaxed);
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, GICD + 4);
    run(&vm, &mut v, &p, ESR_LDR_W2_L3, GICR + 0x2_0000 + 0xc);
    assert_eq!(vm.vgic_epoch.load(Ordering::Relaxed), before);
    v.regs.x[1] = 0x2;
    run(&vm, &mut v, &p, ESR_STR_W1_L3, GICD);
    assert_ne!(vm.vgic_epoch.load(Ordering::Relaxed), before);
}

// ---- pvpanic ----------------------------------------------------------------------------

/// STRB w1 / LDRB w2, translation fault level 3, with syndrome.
const ESR_STRB_W1_L3: u64 = 0x9301_0047;
const ESR_LDRB_W2_L3: u64 = 0x9302_0007;

#[test]
fn exit_pvpanic_read_offers_panicked_and_crash_loaded() {
    use crate::guest_layout::PVPANIC_BASE;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(0, 0x4008_0000));
    v.regs.x[2] = 0xdead;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_LDRB_W2_L3, PVPANIC_BASE),
        ExitAction::Resume
    );
    assert_eq!(v.regs.x[2], 3);
    assert_eq!(v.regs.pc, 0x4008_0004);
}

#[test]
fn exit_pvpanic_panicked_write_is_a_crash_after_the_store() {
    use crate::guest_layout::PVPANIC_BASE;
    use crate::hyp::handle::CrashCause;
    let (vm, p, mut v) = (vm(), FakePlatform::default(), vcpu_at(1, 0x4008_0000));
    v.regs.x[1] = 1;
    assert_eq!(
        run(&vm, &mut v, &p, ESR_STRB_W1_L3, PVPANIC_BASE),
        ExitAction::Crash(CrashCause::GuestPanic)
    );
    assert_eq!(v.regs.pc, 0x4008_0004, "the store completed");
    // A crash kernel taking over, nothing, or a byte past the register: the guest goes on.
    for (value, ipa) in [(2, PVPANIC_BASE), (0, PVPANIC_BASE), (1, PVPANIC_BASE + 1)] {
        v.regs.x[1] = value;
        assert_eq!(
            run(&vm, &mut v, &p, ESR_STRB_W1_L3, ipa),
            ExitAction::Resume
        );
    }
}
