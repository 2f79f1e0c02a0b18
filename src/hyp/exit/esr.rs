//! Field layouts of ESR_ELx and of the ISS encodings Bulkhead decodes, declared once with
//! `tock-registers` and read through [`LocalRegisterCopy`].
//!
//! Source: the Arm ARM (DDI 0487), chapter D24 "AArch64 System Register Descriptions":
//! "ESR_EL2, Exception Syndrome Register (EL2)" and its ISS encodings; cross-checked with Linux
//! `arch/arm64/include/asm/esr.h` and QEMU `target/arm/syndrome.h`. ESR_EL1 has the same
//! layout, so [`inject`](crate::hyp::inject) builds the guest's syndrome from these fields too.
//!
//! Every ISS layout is declared at its position inside the whole 64-bit ESR value (the ISS is
//! bits [24:0]), so any of them reads straight from the raw register value.

use tock_registers::{LocalRegisterCopy, register_bitfields};

register_bitfields! [u64,
    /// ESR_ELx: exception class, instruction length and syndrome.
    pub ESR_ELx [
        /// ISS2 (FEAT_LS64 and later; not decoded).
        ISS2 OFFSET(32) NUMBITS(24) [],
        /// Exception class.
        EC OFFSET(26) NUMBITS(6) [
            Unknown = 0x00,
            WfxTrap = 0x01,
            FpAccess = 0x07,
            Hvc64 = 0x16,
            Smc64 = 0x17,
            SysReg64 = 0x18,
            SveAccess = 0x19,
            InstrAbortLowerEl = 0x20,
            InstrAbortCurrentEl = 0x21,
            DataAbortLowerEl = 0x24,
            DataAbortCurrentEl = 0x25
        ],
        /// Instruction length: 1 = 32-bit, 0 = 16-bit T32.
        IL OFFSET(25) NUMBITS(1) [],
        /// Instruction specific syndrome.
        ISS OFFSET(0) NUMBITS(25) []
    ],

    /// ISS of EC 0x01, "ISS encoding for an exception from a WF* instruction".
    pub WFX_ISS [
        /// Condition code valid (1 for anything trapped from AArch64, with COND = 0b1110).
        CV OFFSET(24) NUMBITS(1) [],
        COND OFFSET(20) NUMBITS(4) [],
        /// WFIT/WFET: the register holding the timeout (valid when RV = 1).
        RN OFFSET(5) NUMBITS(5) [],
        /// Register field valid (RES0 unless TI[1] = 1).
        RV OFFSET(2) NUMBITS(1) [],
        /// Trapped instruction.
        TI OFFSET(0) NUMBITS(2) [
            Wfi = 0b00,
            Wfe = 0b01,
            Wfit = 0b10,
            Wfet = 0b11
        ]
    ],

    /// ISS of EC 0x16/0x17, "ISS encoding for an exception from HVC or SVC instruction
    /// execution" / "... from SMC instruction execution in AArch64 state".
    pub XVC_ISS [
        /// The immediate of `HVC #imm16` / `SMC #imm16`.
        IMM16 OFFSET(0) NUMBITS(16) []
    ],

    /// ISS of EC 0x18, "ISS encoding for an exception from MSR, MRS, or System instruction
    /// execution in AArch64 state".
    pub SYS64_ISS [
        OP0 OFFSET(20) NUMBITS(2) [],
        OP2 OFFSET(17) NUMBITS(3) [],
        OP1 OFFSET(14) NUMBITS(3) [],
        CRN OFFSET(10) NUMBITS(4) [],
        /// Transfer register (31 = XZR).
        RT OFFSET(5) NUMBITS(5) [],
        CRM OFFSET(1) NUMBITS(4) [],
        DIRECTION OFFSET(0) NUMBITS(1) [
            // MSR (a write to the system register) or SYS.
            Write = 0,
            // MRS (a read from the system register) or SYSL.
            Read = 1
        ]
    ],

    /// ISS of EC 0x20..0x25, "ISS encoding for an exception from an Instruction Abort" and
    /// "... from a Data Abort". The bits above FnV are data-abort only (RES0 for instruction
    /// aborts).
    pub ABORT_ISS [
        /// Instruction syndrome valid: SAS/SSE/SRT/SF/AR describe the access.
        ISV OFFSET(24) NUMBITS(1) [],
        SAS OFFSET(22) NUMBITS(2) [],
        SSE OFFSET(21) NUMBITS(1) [],
        SRT OFFSET(16) NUMBITS(5) [],
        SF OFFSET(15) NUMBITS(1) [],
        AR OFFSET(14) NUMBITS(1) [],
        VNCR OFFSET(13) NUMBITS(1) [],
        SET OFFSET(11) NUMBITS(2) [],
        /// FAR is not valid.
        FNV OFFSET(10) NUMBITS(1) [],
        /// External abort type.
        EA OFFSET(9) NUMBITS(1) [],
        /// Cache maintenance or address translation instruction.
        CM OFFSET(8) NUMBITS(1) [],
        /// Stage-2 fault on a stage-1 translation table walk.
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Write not read.
        WNR OFFSET(6) NUMBITS(1) [],
        /// Fault status code (DFSC / IFSC).
        FSC OFFSET(0) NUMBITS(6) []
    ],

    /// HPFAR_EL2: the faulting IPA of a stage-2 abort (Arm ARM D24.2, "HPFAR_EL2").
    pub HPFAR [
        /// Faulting IPA bits [51:12] (up to 52-bit IPAs with FEAT_LPA).
        FIPA OFFSET(4) NUMBITS(40) []
    ]
];

/// A saved ESR_ELx value, read field by field.
pub type Esr = LocalRegisterCopy<u64, ESR_ELx::Register>;
/// An ESR_ELx value read with the WF* ISS layout.
pub type WfxIss = LocalRegisterCopy<u64, WFX_ISS::Register>;
/// An ESR_ELx value read with the HVC/SMC ISS layout.
pub type XvcIss = LocalRegisterCopy<u64, XVC_ISS::Register>;
/// An ESR_ELx value read with the MSR/MRS/SYS ISS layout.
pub type Sys64Iss = LocalRegisterCopy<u64, SYS64_ISS::Register>;
/// An ESR_ELx value read with the instruction/data abort ISS layout.
pub type AbortIss = LocalRegisterCopy<u64, ABORT_ISS::Register>;
/// HPFAR_EL2, read.
pub type Hpfar = LocalRegisterCopy<u64, HPFAR::Register>;
