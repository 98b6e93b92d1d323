//! What a DART lets you see of itself: counters ([`stats`]), the event
//! trace ([`events`]) and its Chrome trace-event export ([`trace_event`]).
//! Components report into these; nothing here changes a translation.

pub mod events;
pub mod stats;
pub mod trace_event;
