//! Counters (being written).
