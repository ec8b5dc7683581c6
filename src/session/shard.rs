//! The legs one worker owns, and the per-packet decision.

use super::leg::{Leg, LegConfig, LegUpdate};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A handle to a leg inside one [`Shard`]: a slot index plus a generation, so a
/// stale handle (e.g. in a late completion) never reaches a newer leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LegKey {
    index: u32,
    generation: u32,
}

impl LegKey {
    /// Builds a key from its parts (the io layer packs them into tokens).
    pub fn from_parts(index: u32, generation: u32) -> Self {
        LegKey { index, generation }
    }
    /// Slot index.
    pub fn index(self) -> u32 {
        self.index
    }
    /// Generation of the slot when the leg was added.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

/// Engine-wide session settings.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// How long after a control update a leg may re-latch to a new source.
    pub relatch_window: Duration,
    /// `connect()` a leg's sockets to its peer once latched.
    pub connect_latched: bool,
    /// How often timeouts are swept.
    pub sweep_interval: Duration,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            relatch_window: Duration::from_secs(3),
            connect_latched: true,
            sweep_interval: Duration::from_millis(500),
        }
    }
}

/// Which of a leg's two sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// The even port.
    Rtp,
    /// The odd port.
    Rtcp,
}

/// Send the (possibly rewritten) packet from `leg`'s `socket` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The leg whose socket sends (the peer of the receiving leg).
    pub leg: LegKey,
    /// Which of its sockets.
    pub socket: SocketKind,
    /// Destination.
    pub to: SocketAddr,
    /// The socket is connected to `to`, so a plain `send` suffices.
    pub connected: bool,
}

/// What to do with a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it.
    Forward(Forward),
    /// Drop it (already counted).
    Drop(DropReason),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not valid RTP/RTCP.
    Malformed,
    /// From a source other than the latched one.
    Foreign,
    /// Valid, but the leg has no peer or the peer has no destination yet.
    NoRoute,
    /// The leg key is stale (the leg was removed).
    UnknownLeg,
}

/// A socket change the io layer must make before relaying more packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOp {
    /// `connect()` the socket to `to`.
    Connect {
        /// The leg.
        leg: LegKey,
        /// Which socket.
        socket: SocketKind,
        /// The address.
        to: SocketAddr,
    },
    /// Dissolve the socket's association (`connect(AF_UNSPEC)`).
    Disconnect {
        /// The leg.
        leg: LegKey,
        /// Which socket.
        socket: SocketKind,
    },
}

/// Something the control plane should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// No RTP arrived on a leg for its timeout.
    MediaTimeout {
        /// The leg.
        leg: LegKey,
        /// Its call.
        call: String,
        /// Its name.
        name: String,
        /// The timeout that elapsed.
        after: Duration,
    },
}

/// Why a session operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The key names no leg of this shard.
    #[error("no such leg")]
    UnknownLeg,
    /// A leg cannot be bridged to itself.
    #[error("a leg cannot be bridged to itself")]
    SelfBridge,
}

/// The legs one worker owns.
#[derive(Debug)]
pub struct Shard {
    config: ShardConfig,
}

impl Shard {
    /// An empty shard.
    pub fn new(config: ShardConfig) -> Self {
        Shard { config }
    }

    /// Adds a leg whose sockets the io layer has bound.
    pub fn add_leg(&mut self, now: Instant, config: LegConfig) -> LegKey {
        let _ = (now, config, &self.config);
        todo!()
    }

    /// Applies a control update; a new remote opens the re-latch window.
    pub fn update_leg(
        &mut self,
        now: Instant,
        key: LegKey,
        update: LegUpdate,
    ) -> Result<(), SessionError> {
        let _ = (now, key, update);
        todo!()
    }

    /// Bridges `a` and `b` (each leaves any bridge it was in).
    pub fn bridge(&mut self, a: LegKey, b: LegKey) -> Result<(), SessionError> {
        let _ = (a, b);
        todo!()
    }

    /// Takes `a` out of its bridge; returns the former peer.
    pub fn unbridge(&mut self, a: LegKey) -> Result<Option<LegKey>, SessionError> {
        let _ = a;
        todo!()
    }

    /// Removes a leg (unbridging it first) and returns it.
    pub fn remove_leg(&mut self, key: LegKey) -> Result<Leg, SessionError> {
        let _ = key;
        todo!()
    }

    /// The leg behind a key.
    pub fn leg(&self, key: LegKey) -> Option<&Leg> {
        let _ = key;
        todo!()
    }

    /// Number of legs.
    pub fn len(&self) -> usize {
        todo!()
    }

    /// Whether the shard has no legs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A datagram arrived on `key`'s RTP socket from `from`.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        key: LegKey,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Verdict {
        let _ = (now, key, from, buf);
        todo!()
    }

    /// A datagram arrived on `key`'s RTCP socket from `from`.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        key: LegKey,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Verdict {
        let _ = (now, key, from, buf);
        todo!()
    }

    /// Runs due timers (media timeouts, re-latch windows closing).
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When [`Shard::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next event for the control plane.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        todo!()
    }

    /// The next socket change for the io layer.
    pub fn poll_socket_op(&mut self) -> Option<SocketOp> {
        todo!()
    }
}
