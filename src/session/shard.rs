//! The legs one worker owns, and the per-packet decision.

use super::leg::{
    EgressContext, Ingress, LastSent, LatchPolicy, Leg, LegConfig, LegCounters, LegUpdate,
};
use super::playback::{After, JoinMode, Playback, Program, Source, Transmit};
use crate::rtp::{self, RtpHeader};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
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
    /// The leg is on hold, or its peer hears other media.
    Held,
    /// The leg's media is blocked (or is a codec that cannot be silenced).
    Blocked,
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
    /// A one-shot program (announcement) finished playing to a leg.
    PlaybackDone {
        /// The leg.
        leg: LegKey,
        /// Its call.
        call: String,
        /// Its name.
        name: String,
        /// The announcement's name.
        program: String,
    },
    /// An RFC 4733 event ended on a held leg (the caller pressed a key on hold).
    Dtmf {
        /// The leg.
        leg: LegKey,
        /// Its call.
        call: String,
        /// Its name.
        name: String,
        /// The digit (`0`–`9`, `*`, `#`, `A`–`D`).
        digit: char,
        /// Its duration in milliseconds.
        duration_ms: u32,
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
    /// The media to play has no frames.
    #[error("the media has no frames")]
    EmptyMedia,
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
    /// Media packets due: (when, slot index, generation, playback serial). One
    /// entry per playing leg; stale entries are skipped by their serial.
    media_due: BinaryHeap<Reverse<(Instant, u32, u32, u32)>>,
    next_serial: u32,
    transmits: VecDeque<Transmit>,
}

/// How early a media packet may leave to share a wake-up with others.
const MEDIA_SLACK: Duration = Duration::from_micros(250);
/// How often a playing leg with no address yet is looked at again.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// A 32-bit FNV-1a hash, to derive a stable SSRC/sequence/timestamp origin for a
/// leg that has not been sent anything yet.
fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for &b in *part {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
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
            media_due: BinaryHeap::new(),
            next_serial: 0,
            transmits: VecDeque::new(),
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

    /// Counts a packet dropped because its leg's peer hears other media.
    #[cold]
    fn held_drop(&mut self, key: LegKey) -> Verdict {
        if let Some(leg) = self.leg_mut(key) {
            leg.counters.dropped_held += 1;
        }
        Verdict::Drop(DropReason::Held)
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
            source: Source::Peer,
            held: false,
            resume: Vec::new(),
            last_dtmf: None,
            ingress: Ingress::Relay,
        };
        self.insert_leg(now, leg)
    }

    /// Adopts a leg removed from another shard, keeping its latch state,
    /// counters and egress context. It arrives unbridged, and its sockets must
    /// be unconnected (the io layer disconnects them when it detaches a leg);
    /// the usual socket ops reconnect them.
    pub fn insert_leg(&mut self, now: Instant, mut leg: Leg) -> LegKey {
        leg.peer = None;
        let playing = matches!(leg.source, Source::Media(_));
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
        if playing {
            let serial = self.bump_serial();
            if let Some(Source::Media(pb)) = self.leg_mut(key).map(|l| &mut l.source) {
                pb.serial = serial;
                let due = pb.due();
                self.media_due
                    .push(Reverse((due, key.index, key.generation, serial)));
            }
        }
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
            wake_waiting_media(&mut self.media_due, key, leg, now);
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
        self.unbridge(a)?;
        self.unbridge(b)?;
        // A source switch for each side: both hear their new peer, continuing
        // the stream they were hearing (DESIGN.md, RTP continuity).
        for (me, peer) in [(a, b), (b, a)] {
            let leg = self.leg_mut(me).ok_or(SessionError::UnknownLeg)?;
            save_resume(leg);
            leg.peer = Some(peer);
            leg.held = false;
            leg.source = Source::Peer;
            leg.egress.resync = leg.egress.last.is_some();
            leg.egress.new_ssrc = leg.config.ssrc_per_source;
        }
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
                        wake_waiting_media(&mut self.media_due, key, leg, now);
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
        if leg.held {
            leg.counters.dropped_held += 1;
            if let Some(event) = held_dtmf(key, leg, &header, buf) {
                self.events.push_back(event);
            }
            return Verdict::Drop(DropReason::Held);
        }
        if leg.ingress != Ingress::Relay && !silence_in_place(leg, &header, buf) {
            leg.counters.dropped_blocked += 1;
            return Verdict::Drop(DropReason::Blocked);
        }
        let Some(peer_key) = leg.peer else {
            leg.counters.dropped_no_route += 1;
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Some(peer) = self.leg_mut(peer_key) else {
            return self.no_route(key);
        };
        if !peer.source.is_peer() {
            return self.held_drop(key);
        }
        let Some(to) = peer.rtp_destination() else {
            return self.no_route(key);
        };
        peer.egress.relay(buf, now);
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
        if leg.held {
            leg.counters.dropped_held += 1;
            return Verdict::Drop(DropReason::Held);
        }
        let Some(peer_key) = leg.peer else {
            leg.counters.dropped_no_route += 1;
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Some(peer) = self.leg_mut(peer_key) else {
            return self.no_route(key);
        };
        // Until the first RTP packet re-anchors the peer's stream after a switch,
        // a sender report would describe it with stale offsets: hold it back.
        if !peer.source.is_peer() || peer.egress.resync {
            return self.held_drop(key);
        }
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
        // Sender reports describe the RTP the peer receives: same SSRC and offsets.
        if !peer.egress.is_identity() {
            let _ = rtp::rtcp::rewrite_compound(buf, peer.egress.ssrc, peer.egress.ts_offset);
        }
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
        self.run_media(now);
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
        let media = self.media_due.peek().map(|Reverse((due, ..))| *due);
        match (self.next_sweep, media) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

/// For a leg whose media is silenced, overwrites a G.711 payload with digital
/// silence; false when the packet must be dropped instead (blocked, another
/// codec, or a DTMF event).
fn silence_in_place(leg: &Leg, header: &RtpHeader, buf: &mut [u8]) -> bool {
    if leg.ingress != Ingress::Silence {
        return false;
    }
    let Some(byte) = leg.silence_byte(header.payload_type) else {
        return false;
    };
    let end = header.payload_offset.saturating_add(header.payload_len);
    if let Some(payload) = buf.get_mut(header.payload_offset..end) {
        payload.fill(byte);
    }
    true
}

impl Shard {
    /// Sets what happens to `key`'s own audio on its way to its peer.
    pub fn set_ingress(&mut self, key: LegKey, ingress: Ingress) -> Result<(), SessionError> {
        self.leg_mut(key).ok_or(SessionError::UnknownLeg)?.ingress = ingress;
        Ok(())
    }
}

/// Hold, announcements and music: the media side of a leg's source.
impl Shard {
    fn bump_serial(&mut self) -> u32 {
        self.next_serial = self.next_serial.wrapping_add(1);
        self.next_serial
    }

    /// Starts playing `program` to `key` now (replacing whatever it heard);
    /// the first packet is due at once and continues the leg's stream.
    pub fn play(
        &mut self,
        now: Instant,
        key: LegKey,
        program: Program,
    ) -> Result<(), SessionError> {
        if program.frames.frame_count() == 0 {
            return Err(SessionError::EmptyMedia);
        }
        let serial = self.bump_serial();
        let leg = self.leg_mut(key).ok_or(SessionError::UnknownLeg)?;
        save_resume(leg);
        let frames = &program.frames;
        leg.egress.clock_rate = frames.clock_rate();
        let origin = leg.egress.continue_at(now).unwrap_or_else(|| {
            let h = fnv1a(&[leg.config.call.as_bytes(), leg.config.name.as_bytes()]);
            LastSent {
                seq: (h >> 16) as u16,
                ts: h.rotate_left(7),
                ssrc: h,
                pt: program.pt,
                at: now,
            }
        });
        let ssrc = if leg.config.ssrc_per_source {
            fnv1a(&[&origin.ssrc.to_be_bytes(), program.name.as_bytes()])
        } else {
            origin.ssrc
        };
        let ptime = frames.ptime().max(Duration::from_millis(1));
        let first_frame = match program.join {
            JoinMode::Shared if program.looping => {
                (now.saturating_duration_since(program.epoch).as_nanos() / ptime.as_nanos()) as u64
            }
            JoinMode::Resume if program.looping => leg
                .resume
                .iter()
                .find(|(n, _)| *n == program.name)
                .map_or(0, |(_, pos)| *pos),
            _ => 0,
        };
        let pb = Playback {
            program,
            started: now,
            first_frame,
            k: 0,
            sent: 0,
            seq0: origin.seq,
            ts0: origin.ts,
            ssrc,
            serial,
        };
        leg.source = Source::Media(Box::new(pb));
        self.media_due
            .push(Reverse((now, key.index, key.generation, serial)));
        Ok(())
    }

    /// Puts `key` on hold: it hears `moh`, its own audio reaches no one, and its
    /// peer hears `peer_hears` (e.g. silence frames) or nothing.
    pub fn hold(
        &mut self,
        now: Instant,
        key: LegKey,
        moh: Program,
        peer_hears: Option<Program>,
    ) -> Result<(), SessionError> {
        self.play(now, key, moh)?;
        let leg = self.leg_mut(key).ok_or(SessionError::UnknownLeg)?;
        leg.held = true;
        let peer = leg.peer;
        // A peer that is itself on hold keeps its music.
        if let Some(peer) = peer.filter(|p| self.leg(*p).is_some_and(|l| !l.held)) {
            match peer_hears {
                Some(p) => self.play(now, peer, p)?,
                None => self.stop_media(peer, Source::Nothing)?,
            }
        }
        Ok(())
    }

    /// Takes `key` off hold: it and its peer hear each other again.
    pub fn unhold(&mut self, key: LegKey) -> Result<(), SessionError> {
        let leg = self.leg_mut(key).ok_or(SessionError::UnknownLeg)?;
        leg.held = false;
        let peer = leg.peer;
        self.stop_media(key, Source::Peer)?;
        if let Some(peer) = peer {
            if self.leg(peer).is_some_and(|p| !p.held) {
                self.stop_media(peer, Source::Peer)?;
            }
        }
        Ok(())
    }

    /// Ends any playback on `key`; it then hears `next`.
    pub fn stop_media(&mut self, key: LegKey, next: Source) -> Result<(), SessionError> {
        let leg = self.leg_mut(key).ok_or(SessionError::UnknownLeg)?;
        save_resume(leg);
        if next.is_peer() && !leg.source.is_peer() {
            leg.egress.resync = leg.egress.last.is_some();
            leg.egress.new_ssrc = leg.config.ssrc_per_source;
        }
        leg.source = next;
        Ok(())
    }

    /// The next pre-encoded packet for the io layer to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Sends every media packet due by `now`.
    fn run_media(&mut self, now: Instant) {
        // Packets due within the slack go out in this wake-up rather than the next:
        // fewer wake-ups with thousands of listeners, at most this much early.
        let horizon = now + MEDIA_SLACK;
        while let Some(&Reverse((due, index, generation, serial))) = self.media_due.peek() {
            if due > horizon {
                break;
            }
            self.media_due.pop();
            let key = LegKey::from_parts(index, generation);
            self.media_tick(now, key, serial);
        }
    }

    fn media_tick(&mut self, now: Instant, key: LegKey, serial: u32) {
        // Borrow the slot table alone, so events and transmits stay reachable.
        let Some(leg) = self
            .slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)
            .and_then(|s| s.leg.as_mut())
        else {
            return;
        };
        let has_destination = leg.rtp_destination().is_some();
        let Source::Media(pb) = &mut leg.source else {
            return;
        };
        if pb.serial != serial {
            return; // superseded by a newer playback
        }
        if !has_destination {
            // Nowhere to send yet: look again later (latching or an update wakes
            // it sooner); the class clock keeps running meanwhile.
            self.media_due.push(Reverse((
                now + IDLE_RECHECK,
                key.index,
                key.generation,
                serial,
            )));
            return;
        }
        let ptime = pb.program.frames.ptime().max(Duration::from_millis(1));
        // A worker late by more than a packet time skips the missed packets:
        // timestamps keep following the clock, sequence numbers stay gapless.
        let behind =
            (now.saturating_duration_since(pb.started).as_nanos() / ptime.as_nanos()) as u64;
        if behind > pb.k + 1 {
            pb.k = behind;
        }
        let Some(index) = pb.frame_index() else {
            let name = pb.program.name.clone();
            let then = pb.program.then.clone();
            let event = SessionEvent::PlaybackDone {
                leg: key,
                call: leg.config.call.clone(),
                name: leg.config.name.clone(),
                program: name,
            };
            self.events.push_back(event);
            let _ = match then {
                After::Play(p) => self.play(now, key, *p),
                // Back to the call, both ways: a held leg comes off hold too.
                After::Live => self.unhold(key),
                After::Peer => self.stop_media(key, Source::Peer),
                After::Nothing => self.stop_media(key, Source::Nothing),
            };
            return;
        };
        let header = pb.header();
        let payload = pb.program.frames.frame(index);
        let due = pb.due();
        pb.sent += 1;
        pb.k += 1;
        let next_due = pb.due();
        let last = LastSent {
            seq: u16::from_be_bytes([header[2], header[3]]),
            ts: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            ssrc: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
            pt: header[1] & 0x7f,
            at: due,
        };
        leg.egress.last = Some(last);
        if let Some(to) = leg.rtp_destination() {
            leg.counters.media_out += 1;
            leg.counters.rtp_out += 1;
            self.transmits.push_back(Transmit {
                leg: key,
                to,
                connected: leg.rtp_connected,
                header,
                payload,
            });
        }
        self.media_due
            .push(Reverse((next_due, key.index, key.generation, serial)));
    }
}

/// The DTMF event a held leg's packet ends, if any (each event reported once).
fn held_dtmf(key: LegKey, leg: &mut Leg, header: &RtpHeader, buf: &[u8]) -> Option<SessionEvent> {
    if leg.dtmf_pt() != Some(header.payload_type) {
        return None;
    }
    let payload = buf.get(header.payload_offset..)?;
    let ev = rtp::dtmf::TelephoneEvent::parse(payload).ok()?;
    if !ev.end || leg.last_dtmf == Some(header.timestamp) {
        return None;
    }
    leg.last_dtmf = Some(header.timestamp);
    let rate = leg.dtmf_rate().unwrap_or(8000).max(1);
    Some(SessionEvent::Dtmf {
        leg: key,
        call: leg.config.call.clone(),
        name: leg.config.name.clone(),
        digit: ev.digit()?,
        duration_ms: ev.duration as u32 * 1000 / rate,
    })
}

/// Media played to a leg with no address waits, rechecked once a second; call
/// this just before the leg gets an address so its media starts at once.
fn wake_waiting_media(
    media_due: &mut BinaryHeap<Reverse<(Instant, u32, u32, u32)>>,
    key: LegKey,
    leg: &Leg,
    now: Instant,
) {
    if leg.rtp_destination().is_some() {
        return;
    }
    if let Source::Media(pb) = &leg.source {
        media_due.push(Reverse((now, key.index, key.generation, pb.serial)));
    }
}

/// Remembers a `Resume` class's position when its playback ends.
fn save_resume(leg: &mut Leg) {
    let Source::Media(pb) = &leg.source else {
        return;
    };
    if pb.program.join != JoinMode::Resume || !pb.program.looping {
        return;
    }
    let pos = pb.position();
    let name = &pb.program.name;
    match leg.resume.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = pos,
        None => leg.resume.push((name.clone(), pos)),
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
            ssrc_per_source: false,
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
