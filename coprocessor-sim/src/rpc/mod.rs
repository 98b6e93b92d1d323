//! The mapper service RPC: the kernel's service ([`service`]: grants,
//! validation, the rings it serves) and the bytes on the wire ([`wire`]).
pub mod service;
pub mod wire;
