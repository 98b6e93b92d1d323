//! The monitor: driver-built tables (stub, being written).

use super::Kernel;
use crate::error::DartError;

impl Kernel<'_> {
    /// [`Dart::write_table_entry`](crate::Dart::write_table_entry).
    pub(crate) fn write_table_entry(&self, table: u64, index: u64, value: u64) -> Result<(), DartError> {
        Err(DartError::BadEntry { table, index, value, reason: "not yet" })
    }

    /// [`Dart::read_table_entry`](crate::Dart::read_table_entry).
    pub(crate) fn read_table_entry(&self, table: u64, index: u64) -> Result<u64, DartError> {
        Err(DartError::BadEntry { table, index, value: 0, reason: "not yet" })
    }

    /// [`Dart::release_table`](crate::Dart::release_table).
    pub(crate) fn release_table(&self, table: u64) -> Result<(), DartError> {
        Err(DartError::NotDriverTable { pa: table, reason: "not yet" })
    }
}
