//! The legs one worker owns, and the per-packet decision.

use super::leg::{EgressContext, LatchPolicy, Leg, LegConfig, LegCounters, LegUpdate};
use crate::rtp::{self, RtpHeader};
use std::collections::VecDeque;
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

/// One slab entry: a leg, or a free slot waiting for reuse.
#[derive(Debug)]
struct Slot {
    /// Bumped every time the slot is freed, so old keys stop matching.
    generation: u32,
    /// The leg, while the slot is in use.
    leg: Option<Leg>,
    /// Where the leg's [RTP, RTCP] sockets are `connect()`ed, as last told to the io layer.
    connected_to: [Option<SocketAddr>; 2],
}

/// The legs one worker owns.
#[derive(Debug)]
pub struct Shard {
    config: ShardConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    next_sweep: Option<Instant>,
    events: VecDeque<SessionEvent>,
    socket_ops: VecDeque<SocketOp>,
}

/// Whether a leg may re-latch to a new source at `now` (after a control update).
#[inline]
fn relatch_open(leg: &Leg, now: Instant) -> bool {
    leg.relatch_until.is_some_and(|until| now < until)
}

/// Minimal check that `buf` starts with an RTCP packet (RFC 3550 section 6.4):
/// version 2, an RTCP packet type, and a first length that fits the datagram.
#[inline]
fn is_plausible_rtcp(buf: &[u8]) -> bool {
    if buf.len() < 8 || buf[0] >> 6 != 2 || !(192..=223).contains(&buf[1]) {
        return false;
    }
    let words = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    (words + 1) * 4 <= buf.len()
}

/// The address the io layer should have the leg's socket `connect()`ed to now.
fn wanted_connection(
    config: &ShardConfig,
    leg: &Leg,
    socket: SocketKind,
    now: Instant,
) -> Option<SocketAddr> {
    if !config.connect_latched {
        return None;
    }
    if socket == SocketKind::Rtcp && leg.config.rtcp_mux {
        // RTCP travels on the RTP socket; the odd socket carries nothing.
        return None;
    }
    match leg.config.latch {
        LatchPolicy::Trust => match socket {
            SocketKind::Rtp => leg.rtp_destination(),
            SocketKind::Rtcp => leg.rtcp_destination(),
        },
        // While the window is open the socket must hear every source.
        LatchPolicy::Learn if relatch_open(leg, now) => None,
        LatchPolicy::Learn => match socket {
            SocketKind::Rtp => leg.latched_rtp,
            // Not while RTCP comes from another host than RTP (e.g. a stale latch after
            // RTP moved): a connected socket would drop the endpoint's new RTCP.
            SocketKind::Rtcp => leg
                .latched_rtcp
                .filter(|rtcp| leg.latched_rtp.is_none_or(|rtp| rtp.ip() == rtcp.ip())),
        },
    }
}

/// Brings a leg's socket associations in line with its latch state, queueing
/// the `connect()`s and disconnects the io layer must make.
fn sync_connections(
    config: &ShardConfig,
    ops: &mut VecDeque<SocketOp>,
    key: LegKey,
    leg: &mut Leg,
    connected_to: &mut [Option<SocketAddr>; 2],
    now: Instant,
) {
    for (i, socket) in [SocketKind::Rtp, SocketKind::Rtcp].into_iter().enumerate() {
        let want = wanted_connection(config, leg, socket, now);
        if want == connected_to[i] {
            continue;
        }
        ops.push_back(match want {
            // connect() on a connected UDP socket re-targets it: no disconnect first.
            Some(to) => SocketOp::Connect {
                leg: key,
                socket,
                to,
            },
            None => SocketOp::Disconnect { leg: key, socket },
        });
        connected_to[i] = want;
        match socket {
            SocketKind::Rtp => leg.rtp_connected = want.is_some(),
            SocketKind::Rtcp => leg.rtcp_connected = want.is_some(),
        }
    }
}

impl SocketOp {
    /// The leg whose socket this operation concerns.
    pub fn leg(&self) -> LegKey {
        match *self {
            SocketOp::Connect { leg, .. } | SocketOp::Disconnect { leg, .. } => leg,
        }
    }
}

impl Shard {
    /// An empty shard.
    pub fn new(config: ShardConfig) -> Self {
        Shard {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            next_sweep: None,
            events: VecDeque::new(),
            socket_ops: VecDeque::new(),
        }
    }

    /// The shard's settings.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    #[inline]
    fn slot_mut(&mut self, key: LegKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation && s.leg.is_some())
    }

    #[inline]
    fn leg_mut(&mut self, key: LegKey) -> Option<&mut Leg> {
        self.slot_mut(key).and_then(|s| s.leg.as_mut())
    }

    /// Counts a packet with nowhere to go on the receiving leg.
    #[cold]
    fn no_route(&mut self, key: LegKey) -> Verdict {
        if let Some(leg) = self.leg_mut(key) {
            leg.counters.dropped_no_route += 1;
        }
        Verdict::Drop(DropReason::NoRoute)
    }

    /// Adds a leg whose sockets the io layer has bound.
    pub fn add_leg(&mut self, now: Instant, config: LegConfig) -> LegKey {
        let leg = Leg {
            config,
            latched_rtp: None,
            latched_rtcp: None,
            ssrc: None,
            relatch_until: None,
            peer: None,
            counters: LegCounters::default(),
            egress: EgressContext::default(),
            created: now,
            last_rtp: now,
            timed_out: false,
            rtp_connected: false,
            rtcp_connected: false,
        };
        self.insert_leg(now, leg)
    }

    /// Adopts a leg removed from another shard, keeping its latch state,
    /// counters and egress context. It arrives unbridged, and its sockets must
    /// be unconnected (the io layer disconnects them when it detaches a leg);
    /// the usual socket ops reconnect them.
    pub fn insert_leg(&mut self, now: Instant, mut leg: Leg) -> LegKey {
        leg.peer = None;
        leg.rtp_connected = false;
        leg.rtcp_connected = false;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index =
                    u32::try_from(self.slots.len()).expect("fewer than 2^32 legs per shard");
                self.slots.push(Slot {
                    generation: 0,
                    leg: None,
                    connected_to: [None; 2],
                });
                index
            }
        };
        if self.len == 0 || self.next_sweep.is_none() {
            self.next_sweep = Some(self.after_sweep_interval(now));
        }
        self.len += 1;
        // The index came from the free list or was just pushed.
        let slot = &mut self.slots[index as usize];
        slot.connected_to = [None; 2];
        let key = LegKey::from_parts(index, slot.generation);
        let leg = slot.leg.insert(leg);
        sync_connections(
            &self.config,
            &mut self.socket_ops,
            key,
            leg,
            &mut slot.connected_to,
            now,
        );
        key
    }

    /// Applies a control update; a new remote opens the re-latch window.
    pub fn update_leg(
        &mut self,
        now: Instant,
        key: LegKey,
        update: LegUpdate,
    ) -> Result<(), SessionError> {
        let window = self.config.relatch_window;
        let slot = self
            .slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)
            .ok_or(SessionError::UnknownLeg)?;
        let leg = slot.leg.as_mut().ok_or(SessionError::UnknownLeg)?;
        let LegUpdate {
            remote,
            remote_rtcp,
            codecs,
            rtcp_mux,
            silent,
        } = update;
        if let Some(remote) = remote.filter(|r| leg.config.remote != Some(*r)) {
            leg.config.remote = Some(remote);
            if leg.config.latch == LatchPolicy::Learn {
                leg.relatch_until = Some(now.checked_add(window).unwrap_or(now));
            }
        }
        if remote_rtcp.is_some() {
            leg.config.remote_rtcp = remote_rtcp;
        }
        if let Some(codecs) = codecs {
            leg.config.codecs = codecs;
        }
        if let Some(rtcp_mux) = rtcp_mux {
            leg.config.rtcp_mux = rtcp_mux;
        }
        if let Some(silent) = silent {
            leg.config.silent = silent;
        }
        sync_connections(
            &self.config,
            &mut self.socket_ops,
            key,
            leg,
            &mut slot.connected_to,
            now,
        );
        Ok(())
    }

    /// Bridges `a` and `b` (each leaves any bridge it was in).
    pub fn bridge(&mut self, a: LegKey, b: LegKey) -> Result<(), SessionError> {
        if self.leg(a).is_none() || self.leg(b).is_none() {
            return Err(SessionError::UnknownLeg);
        }
        if a == b {
            return Err(SessionError::SelfBridge);
        }
        // A source switch for each side: RTP continuity (DESIGN.md) will mark it here.
        self.unbridge(a)?;
        self.unbridge(b)?;
        self.leg_mut(a).ok_or(SessionError::UnknownLeg)?.peer = Some(b);
        self.leg_mut(b).ok_or(SessionError::UnknownLeg)?.peer = Some(a);
        Ok(())
    }

    /// Takes `a` out of its bridge; returns the former peer.
    pub fn unbridge(&mut self, a: LegKey) -> Result<Option<LegKey>, SessionError> {
        let peer = self.leg_mut(a).ok_or(SessionError::UnknownLeg)?.peer.take();
        if let Some(other) = peer.and_then(|p| self.leg_mut(p)) {
            if other.peer == Some(a) {
                other.peer = None;
            }
        }
        Ok(peer)
    }

    /// Removes a leg (unbridging it first) and returns it.
    pub fn remove_leg(&mut self, key: LegKey) -> Result<Leg, SessionError> {
        self.unbridge(key)?;
        let slot = self.slot_mut(key).ok_or(SessionError::UnknownLeg)?;
        let leg = slot.leg.take().ok_or(SessionError::UnknownLeg)?;
        slot.generation = slot.generation.wrapping_add(1);
        slot.connected_to = [None; 2];
        self.free.push(key.index);
        self.len -= 1;
        // The io layer closes the sockets with the leg; pending changes to them are moot.
        self.socket_ops.retain(|op| op.leg() != key);
        Ok(leg)
    }

    /// The leg behind a key.
    #[inline]
    pub fn leg(&self, key: LegKey) -> Option<&Leg> {
        self.slots
            .get(key.index as usize)
            .filter(|s| s.generation == key.generation)
            .and_then(|s| s.leg.as_ref())
    }

    /// The egress rewrite state of a leg, for the code that switches its source.
    pub fn egress_mut(&mut self, key: LegKey) -> Option<&mut EgressContext> {
        self.leg_mut(key).map(|leg| &mut leg.egress)
    }

    /// Every leg with its key, in slot order.
    pub fn legs(&self) -> impl Iterator<Item = (LegKey, &Leg)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let leg = s.leg.as_ref()?;
            // Slot indices fit in u32: add_leg refuses to grow past that.
            Some((LegKey::from_parts(i as u32, s.generation), leg))
        })
    }

    /// Number of legs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the shard has no legs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A datagram arrived on `key`'s RTP socket from `from`.
    #[inline]
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        key: LegKey,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Verdict {
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return Verdict::Drop(DropReason::UnknownLeg);
        };
        let Some(leg) = slot
            .leg
            .as_mut()
            .filter(|_| slot.generation == key.generation)
        else {
            return Verdict::Drop(DropReason::UnknownLeg);
        };
        if leg.config.rtcp_mux && rtp::is_rtcp(buf) {
            return self.handle_rtcp(now, key, from, buf);
        }
        let Ok(header) = RtpHeader::parse(buf) else {
            leg.counters.dropped_malformed += 1;
            return Verdict::Drop(DropReason::Malformed);
        };
        match leg.config.latch {
            LatchPolicy::Learn => {
                if leg.latched_rtp != Some(from) {
                    // First packet, the window after an update, or NAT rebinding of the same stream.
                    if leg.latched_rtp.is_none()
                        || relatch_open(leg, now)
                        || leg.ssrc == Some(header.ssrc)
                    {
                        leg.latched_rtp = Some(from);
                        sync_connections(
                            &self.config,
                            &mut self.socket_ops,
                            key,
                            leg,
                            &mut slot.connected_to,
                            now,
                        );
                    } else {
                        leg.counters.dropped_foreign += 1;
                        return Verdict::Drop(DropReason::Foreign);
                    }
                }
            }
            LatchPolicy::Trust => {
                if leg.config.remote.is_some_and(|remote| remote != from) {
                    leg.counters.dropped_foreign += 1;
                    return Verdict::Drop(DropReason::Foreign);
                }
            }
        }
        leg.ssrc = Some(header.ssrc);
        leg.counters.rtp_in += 1;
        leg.counters.rtp_in_bytes += buf.len() as u64;
        leg.last_rtp = now;
        leg.timed_out = false;
        let Some(peer_key) = leg.peer else {
            leg.counters.dropped_no_route += 1;
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Some(peer) = self.leg_mut(peer_key) else {
            return self.no_route(key);
        };
        let Some(to) = peer.rtp_destination() else {
            return self.no_route(key);
        };
        peer.egress.apply(buf);
        peer.counters.rtp_out += 1;
        Verdict::Forward(Forward {
            leg: peer_key,
            socket: SocketKind::Rtp,
            to,
            connected: peer.rtp_connected,
        })
    }

    /// A datagram arrived on `key`'s RTCP socket from `from`.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        key: LegKey,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Verdict {
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return Verdict::Drop(DropReason::UnknownLeg);
        };
        let Some(leg) = slot
            .leg
            .as_mut()
            .filter(|_| slot.generation == key.generation)
        else {
            return Verdict::Drop(DropReason::UnknownLeg);
        };
        if !is_plausible_rtcp(buf) {
            leg.counters.dropped_malformed += 1;
            return Verdict::Drop(DropReason::Malformed);
        }
        match leg.config.latch {
            LatchPolicy::Learn => {
                if leg.latched_rtcp != Some(from) {
                    // RTCP from the latched RTP host is the same endpoint on another port.
                    if leg.latched_rtcp.is_none()
                        || relatch_open(leg, now)
                        || leg.latched_rtp.is_some_and(|rtp| rtp.ip() == from.ip())
                    {
                        leg.latched_rtcp = Some(from);
                        sync_connections(
                            &self.config,
                            &mut self.socket_ops,
                            key,
                            leg,
                            &mut slot.connected_to,
                            now,
                        );
                    } else {
                        leg.counters.dropped_foreign += 1;
                        return Verdict::Drop(DropReason::Foreign);
                    }
                }
            }
            LatchPolicy::Trust => {
                let expected = if leg.config.rtcp_mux {
                    leg.config.remote
                } else {
                    leg.rtcp_destination()
                };
                if expected.is_some_and(|expected| expected != from) {
                    leg.counters.dropped_foreign += 1;
                    return Verdict::Drop(DropReason::Foreign);
                }
            }
        }
        leg.counters.rtcp_in += 1;
        let Some(peer_key) = leg.peer else {
            leg.counters.dropped_no_route += 1;
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Some(peer) = self.leg_mut(peer_key) else {
            return self.no_route(key);
        };
        let (socket, to, connected) = if peer.config.rtcp_mux {
            (SocketKind::Rtp, peer.rtp_destination(), peer.rtp_connected)
        } else {
            (
                SocketKind::Rtcp,
                peer.rtcp_destination(),
                peer.rtcp_connected,
            )
        };
        let Some(to) = to else {
            return self.no_route(key);
        };
        // Sender reports will be rewritten here with the peer's egress offsets (hold).
        peer.counters.rtcp_out += 1;
        Verdict::Forward(Forward {
            leg: peer_key,
            socket,
            to,
            connected,
        })
    }

    /// Runs due timers (media timeouts, re-latch windows closing).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.next_sweep {
            Some(due) if self.len > 0 && now >= due => {}
            _ => return,
        }
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(leg) = slot.leg.as_mut() else {
                continue;
            };
            // Slot indices fit in u32: add_leg refuses to grow past that.
            let key = LegKey::from_parts(index as u32, slot.generation);
            let after = if leg.config.silent {
                leg.config.silent_timeout
            } else {
                leg.config.media_timeout
            };
            if !leg.timed_out
                && !after.is_zero()
                && now.saturating_duration_since(leg.last_rtp) >= after
            {
                leg.timed_out = true;
                self.events.push_back(SessionEvent::MediaTimeout {
                    leg: key,
                    call: leg.config.call.clone(),
                    name: leg.config.name.clone(),
                    after,
                });
            }
            if leg.relatch_until.is_some_and(|until| now >= until) {
                leg.relatch_until = None;
                sync_connections(
                    &self.config,
                    &mut self.socket_ops,
                    key,
                    leg,
                    &mut slot.connected_to,
                    now,
                );
            }
        }
        self.next_sweep = Some(self.after_sweep_interval(now));
    }

    /// When the sweep after one at `now` is due (at least a millisecond later).
    fn after_sweep_interval(&self, now: Instant) -> Instant {
        let interval = self.config.sweep_interval.max(Duration::from_millis(1));
        now.checked_add(interval).unwrap_or(now)
    }

    /// When [`Shard::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        self.next_sweep
    }

    /// The next event for the control plane.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next socket change for the io layer.
    pub fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.socket_ops.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::LatchPolicy;

    fn config(name: &str) -> LegConfig {
        LegConfig {
            call: "c".into(),
            name: name.into(),
            local_rtp: "127.0.0.1:30000".parse().unwrap(),
            local_rtcp: "127.0.0.1:30001".parse().unwrap(),
            remote: None,
            remote_rtcp: None,
            latch: LatchPolicy::Learn,
            rtcp_mux: false,
            codecs: Vec::new(),
            media_timeout: Duration::from_secs(10),
            silent_timeout: Duration::from_secs(60),
            silent: false,
        }
    }

    #[test]
    fn rtcp_plausibility() {
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(is_plausible_rtcp(&rr));
        assert!(is_plausible_rtcp(&[
            0x80, 200, 0, 1, 0, 0, 0, 1, 0xff, 0xff
        ]));
        assert!(!is_plausible_rtcp(&rr[..7]));
        assert!(!is_plausible_rtcp(&[0x40, 201, 0, 1, 0, 0, 0, 1]));
        assert!(!is_plausible_rtcp(&[0x80, 191, 0, 1, 0, 0, 0, 1]));
        assert!(!is_plausible_rtcp(&[0x80, 224, 0, 1, 0, 0, 0, 1]));
        assert!(!is_plausible_rtcp(&[0x80, 201, 0, 2, 0, 0, 0, 1]));
        assert!(!is_plausible_rtcp(&[0x80, 201, 0xff, 0xff, 0, 0, 0, 1]));
    }

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let now = Instant::now();
        let mut shard = Shard::new(ShardConfig::default());
        let a = shard.add_leg(now, config("a"));
        let b = shard.add_leg(now, config("b"));
        assert_eq!((a.index(), b.index()), (0, 1));
        let mut stale = a;
        for round in 1..=5u32 {
            shard.remove_leg(stale).unwrap();
            let fresh = shard.add_leg(now, config("a"));
            assert_eq!(fresh.index(), 0, "the free slot is reused");
            assert_eq!(fresh.generation(), round);
            assert!(shard.leg(stale).is_none());
            stale = fresh;
        }
        assert_eq!(shard.len(), 2);
        assert_eq!(shard.slots.len(), 2, "no growth while slots are free");
    }

    #[test]
    fn keys_from_nowhere_are_unknown() {
        let now = Instant::now();
        let mut shard = Shard::new(ShardConfig::default());
        let a = shard.add_leg(now, config("a"));
        let from = "192.0.2.1:4000".parse().unwrap();
        for key in [
            LegKey::from_parts(7, 0),
            LegKey::from_parts(u32::MAX, u32::MAX),
            LegKey::from_parts(0, 1),
        ] {
            let mut buf = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
            assert_eq!(
                shard.handle_rtp(now, key, from, &mut buf),
                Verdict::Drop(DropReason::UnknownLeg)
            );
            assert_eq!(
                shard.handle_rtcp(now, key, from, &mut buf),
                Verdict::Drop(DropReason::UnknownLeg)
            );
            assert!(shard.leg(key).is_none());
            assert!(shard.egress_mut(key).is_none());
            assert_eq!(shard.bridge(a, key), Err(SessionError::UnknownLeg));
            assert_eq!(shard.unbridge(key), Err(SessionError::UnknownLeg));
            assert_eq!(shard.remove_leg(key).err(), Some(SessionError::UnknownLeg));
        }
        assert_eq!(shard.len(), 1);
    }

    #[test]
    fn zero_sweep_interval_still_advances() {
        let now = Instant::now();
        let mut shard = Shard::new(ShardConfig {
            sweep_interval: Duration::ZERO,
            ..ShardConfig::default()
        });
        shard.add_leg(now, config("a"));
        let due = shard.poll_timeout().unwrap();
        assert!(due > now);
        shard.handle_timeout(due);
        assert!(shard.poll_timeout().unwrap() > due);
    }

    #[test]
    fn sweep_on_empty_shard_is_a_no_op() {
        let mut shard = Shard::new(ShardConfig::default());
        shard.handle_timeout(Instant::now());
        assert_eq!(shard.poll_timeout(), None);
        assert_eq!(shard.poll_event(), None);
        assert_eq!(shard.poll_socket_op(), None);
        assert!(shard.is_empty());
    }

    #[test]
    fn socket_op_names_its_leg() {
        let leg = LegKey::from_parts(3, 4);
        let to = "192.0.2.1:4000".parse().unwrap();
        let connect = SocketOp::Connect {
            leg,
            socket: SocketKind::Rtp,
            to,
        };
        let disconnect = SocketOp::Disconnect {
            leg,
            socket: SocketKind::Rtcp,
        };
        assert_eq!((connect.leg(), disconnect.leg()), (leg, leg));
    }
}
