//! Scenario files (SPEC §6).
