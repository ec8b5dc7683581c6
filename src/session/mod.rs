//! Legs and calls, sans-IO: latching, bridging, counters, timeouts and the
//! egress context, all driven by `now` passed in.
//!
//! A [`Shard`] is the part of the engine one worker owns. The io layer feeds it
//! every datagram with [`Shard::handle_rtp`] / [`Shard::handle_rtcp`] and acts on
//! the returned [`Verdict`]; it calls [`Shard::handle_timeout`] when
//! [`Shard::poll_timeout`] says so, and drains [`Shard::poll_event`] and
//! [`Shard::poll_socket_op`] after every mutation.

mod leg;
pub mod park;
pub mod playback;
mod shard;

pub use leg::{
    g711_silence_byte, Codec, EgressContext, Ingress, LastSent, LatchPolicy, Leg, LegConfig,
    LegCounters, LegUpdate,
};
pub use playback::{After, Frames, JoinMode, Program, Repeated, Source, Transmit};
pub use shard::{
    DropReason, Forward, LegKey, SessionError, SessionEvent, Shard, ShardConfig, SocketKind,
    SocketOp, Verdict,
};
