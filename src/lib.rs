//! rtpark: an RTP media plane and music-on-hold engine driven by SIP cores.
//!
//! Dependencies point one way (DESIGN.md): `rtp` uses nothing of ours, `session`
//! uses `rtp`, `control` uses `session`'s types, and `io` wires them together.

pub mod config;
pub mod control;
pub mod io;
pub mod media;
pub mod rtp;
pub mod sdp;
pub mod session;
