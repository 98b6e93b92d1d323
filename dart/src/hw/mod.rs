//! The hardware's formats: PTE bit layouts ([`pte`]), register layouts and
//! their encodings ([`regs`]), and the packed leaf the IOTLB caches
//! (`tlb_value`). Encode and decode only: no state, no locks, no memory.

pub mod pte;
pub mod regs;
pub(crate) mod tlb_value;
