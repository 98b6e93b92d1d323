//! The mapper service RPC.
pub mod wire;
