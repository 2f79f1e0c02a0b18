//! Memory management: the EL2 address layout and stage-1 tables (boot + runtime), and the
//! guests' stage-2 tables.
pub mod el2_pagetable;
pub mod el2_tables;
pub mod layout;
pub mod stage2;
