//! One call leg: its addresses, latch state, counters and egress context.

use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a leg learns where to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatchPolicy {
    /// Learn the remote from the first valid RTP packet (symmetric RTP, NAT friendly).
    #[default]
    Learn,
    /// Send to the signalled address only; packets from elsewhere are foreign.
    Trust,
}

/// Everything needed to create a leg; the io layer has already bound its sockets.
#[derive(Debug, Clone)]
pub struct LegConfig {
    /// Call id.
    pub call: String,
    /// Leg name, unique in the engine.
    pub name: String,
    /// Local RTP address (even port).
    pub local_rtp: SocketAddr,
    /// Local RTCP address (RTP + 1).
    pub local_rtcp: SocketAddr,
    /// Signalled RTP address.
    pub remote: Option<SocketAddr>,
    /// Signalled RTCP address (defaults to RTP port + 1 when absent).
    pub remote_rtcp: Option<SocketAddr>,
    /// Latch policy.
    pub latch: LatchPolicy,
    /// RTCP multiplexed on the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Codecs signalled for the leg.
    pub codecs: Vec<Codec>,
    /// No RTP for this long raises a media-timeout event (zero: never).
    pub media_timeout: Duration,
    /// The timeout used instead while the leg is expected to be silent (zero: never).
    pub silent_timeout: Duration,
    /// The leg is expected to be silent.
    pub silent: bool,
    /// Start a new SSRC at every source switch instead of keeping one stream.
    pub ssrc_per_source: bool,
}

/// A change to a leg from the control plane; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct LegUpdate {
    /// New signalled RTP address; opens the re-latch window.
    pub remote: Option<SocketAddr>,
    /// New signalled RTCP address.
    pub remote_rtcp: Option<SocketAddr>,
    /// New codecs.
    pub codecs: Option<Vec<Codec>>,
    /// New rtcp-mux flag.
    pub rtcp_mux: Option<bool>,
    /// New silent flag.
    pub silent: Option<bool>,
}

/// The last RTP packet sent to a leg's endpoint, whatever its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSent {
    /// Its sequence number, as sent.
    pub seq: u16,
    /// Its timestamp, as sent.
    pub ts: u32,
    /// Its SSRC, as sent.
    pub ssrc: u32,
    /// Its payload type.
    pub pt: u8,
    /// When it was sent.
    pub at: Instant,
}

/// Per-leg rewrite state for packets sent *to* the leg's endpoint, so the
/// endpoint sees one continuous stream whatever the source (DESIGN.md, RTP
/// continuity). With no source switch yet it is the identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressContext {
    /// SSRC to put on every packet, if rewriting.
    pub ssrc: Option<u32>,
    /// Added (wrapping) to the source's sequence numbers.
    pub seq_offset: u16,
    /// Added (wrapping) to the source's timestamps.
    pub ts_offset: u32,
    /// Set the marker bit on the next packet sent.
    pub mark_next: bool,
    /// The next relayed packet starts a new source: re-anchor the offsets on it.
    pub resync: bool,
    /// The last packet sent, the anchor for the next source switch.
    pub last: Option<LastSent>,
    /// RTP clock rate of the stream (Hz), to turn elapsed time into timestamp units.
    pub clock_rate: u32,
    /// The re-anchored stream takes a new SSRC (per-source SSRC option).
    pub new_ssrc: bool,
}

impl EgressContext {
    /// Whether rewriting is a no-op (the relay fast path skips it).
    #[inline]
    pub fn is_identity(&self) -> bool {
        self.ssrc.is_none() && self.seq_offset == 0 && self.ts_offset == 0 && !self.mark_next
    }

    /// Rewrites the RTP packet in `buf` (already validated) in place.
    #[inline]
    pub fn apply(&mut self, buf: &mut [u8]) {
        use crate::rtp::header::{set_marker, set_sequence, set_ssrc, set_timestamp};
        if self.is_identity() {
            return;
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]).wrapping_add(self.seq_offset);
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]).wrapping_add(self.ts_offset);
        set_sequence(buf, seq);
        set_timestamp(buf, ts);
        if let Some(ssrc) = self.ssrc {
            set_ssrc(buf, ssrc);
        }
        if self.mark_next {
            set_marker(buf, true);
            self.mark_next = false;
        }
    }

    /// The relay path: re-anchors after a source switch, rewrites, and records
    /// what was sent (`buf` is a validated RTP packet).
    #[inline]
    pub fn relay(&mut self, buf: &mut [u8], now: Instant) {
        if self.resync {
            self.resync = false;
            if let Some(next) = self.continue_at(now) {
                let in_seq = u16::from_be_bytes([buf[2], buf[3]]);
                let in_ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                self.seq_offset = next.seq.wrapping_sub(in_seq);
                self.ts_offset = next.ts.wrapping_sub(in_ts);
                self.ssrc = Some(if self.new_ssrc {
                    next.ssrc.wrapping_mul(0x9e37_79b1).rotate_left(11) ^ 0x5bd1_e995
                } else {
                    next.ssrc
                });
                self.new_ssrc = false;
                self.mark_next = true;
            }
        }
        self.apply(buf);
        self.last = Some(LastSent {
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            pt: buf[1] & 0x7f,
            at: now,
        });
    }

    /// Where a new source continues the stream at `now`: the next sequence
    /// number, the timestamp advanced by the wall-clock time since the last
    /// packet, the same SSRC. `None` if nothing was sent yet.
    pub fn continue_at(&self, now: Instant) -> Option<LastSent> {
        let last = self.last?;
        let elapsed = now.saturating_duration_since(last.at);
        let rate = if self.clock_rate == 0 {
            8000
        } else {
            self.clock_rate
        };
        let ticks = (elapsed.as_nanos() * rate as u128 / 1_000_000_000) as u32;
        Some(LastSent {
            seq: last.seq.wrapping_add(1),
            ts: last.ts.wrapping_add(ticks.max(1)),
            ssrc: last.ssrc,
            pt: last.pt,
            at: now,
        })
    }
}

/// One call leg.
#[derive(Debug, Clone)]
pub struct Leg {
    /// How it was created (updated by [`LegUpdate`]).
    pub config: LegConfig,
    /// Address learned from RTP, once latched.
    pub latched_rtp: Option<SocketAddr>,
    /// Address learned from RTCP, once latched.
    pub latched_rtcp: Option<SocketAddr>,
    /// SSRC of the endpoint's stream, once seen.
    pub ssrc: Option<u32>,
    /// Re-latching to a new source is allowed until then (after a control update).
    pub relatch_until: Option<Instant>,
    /// The bridged leg, if any.
    pub peer: Option<super::LegKey>,
    /// Counters.
    pub counters: LegCounters,
    /// Egress rewrite state.
    pub egress: EgressContext,
    /// When the leg was created.
    pub created: Instant,
    /// Last accepted RTP packet (or creation time).
    pub last_rtp: Instant,
    /// A media-timeout event was raised and no RTP arrived since.
    pub timed_out: bool,
    /// The RTP socket is `connect()`ed to `latched_rtp` (or the trusted remote).
    pub rtp_connected: bool,
    /// The RTCP socket is `connect()`ed.
    pub rtcp_connected: bool,
    /// What the endpoint hears: its peer, pre-encoded media, or nothing.
    pub source: super::playback::Source,
    /// The leg is on hold: its own audio reaches no one.
    pub held: bool,
    /// Saved positions of classes in `Resume` mode, by class name.
    pub resume: Vec<(String, u64)>,
    /// Timestamp of the last DTMF event reported, to report each event once.
    pub last_dtmf: Option<u32>,
    /// What happens to the endpoint's own audio on its way to the peer.
    pub ingress: Ingress,
}

/// What happens to a leg's own audio on its way to its peer (the ng protocol's
/// `block media` and `silence media`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ingress {
    /// Relayed as received.
    #[default]
    Relay,
    /// Dropped and counted: the peer hears nothing from this leg.
    Block,
    /// Relayed with a silent payload, keeping the peer's stream and timing
    /// (G.711 in place; packets of other codecs and DTMF events are dropped).
    Silence,
}

/// The payload byte of digital silence in a G.711 codec, if `name` is one.
pub fn g711_silence_byte(name: &str) -> Option<u8> {
    if name.eq_ignore_ascii_case("PCMU") {
        Some(0xff)
    } else if name.eq_ignore_ascii_case("PCMA") {
        Some(0xd5)
    } else {
        None
    }
}

impl Leg {
    /// Where RTP for this leg's endpoint goes now: the latched source, else the signalled address.
    #[inline]
    pub fn rtp_destination(&self) -> Option<SocketAddr> {
        self.latched_rtp.or(self.config.remote)
    }

    /// The payload type the endpoint uses for RFC 4733 events, if signalled.
    pub fn dtmf_pt(&self) -> Option<u8> {
        self.dtmf_codec().map(|c| c.pt)
    }

    /// The clock rate of the endpoint's RFC 4733 events, if signalled.
    pub fn dtmf_rate(&self) -> Option<u32> {
        self.dtmf_codec().map(|c| c.rate)
    }

    /// The silence byte for G.711 payload type `pt` as signalled (or static).
    pub fn silence_byte(&self, pt: u8) -> Option<u8> {
        match self.config.codecs.iter().find(|c| c.pt == pt) {
            Some(c) => g711_silence_byte(&c.name),
            None => match pt {
                0 => Some(0xff),
                8 => Some(0xd5),
                _ => None,
            },
        }
    }

    fn dtmf_codec(&self) -> Option<&Codec> {
        self.config
            .codecs
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case("telephone-event"))
    }

    /// Where RTCP for this leg's endpoint goes now (the RTP destination with rtcp-mux).
    pub fn rtcp_destination(&self) -> Option<SocketAddr> {
        if self.config.rtcp_mux {
            return self.rtp_destination();
        }
        self.latched_rtcp.or(self.config.remote_rtcp).or_else(|| {
            self.config.remote.map(|mut a| {
                a.set_port(a.port().wrapping_add(1));
                a
            })
        })
    }
}

/// A codec as signalled in SDP: payload type, encoding name, clock rate, channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Codec {
    /// RTP payload type.
    pub pt: u8,
    /// Encoding name as in `a=rtpmap` (e.g. `PCMU`, `opus`, `telephone-event`).
    pub name: String,
    /// Clock rate in Hz.
    pub rate: u32,
    /// Channel count.
    pub channels: u8,
}

/// Per-leg packet counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LegCounters {
    /// RTP packets received from the endpoint and accepted.
    pub rtp_in: u64,
    /// RTP bytes received and accepted.
    pub rtp_in_bytes: u64,
    /// RTP packets sent to the endpoint.
    pub rtp_out: u64,
    /// RTCP packets received and accepted.
    pub rtcp_in: u64,
    /// RTCP packets sent to the endpoint.
    pub rtcp_out: u64,
    /// Packets from a source other than the latched one.
    pub dropped_foreign: u64,
    /// Packets that are not valid RTP/RTCP.
    pub dropped_malformed: u64,
    /// Valid packets with nowhere to go (no peer, or the peer has no address yet).
    pub dropped_no_route: u64,
    /// Packets dropped because the leg or its peer is on hold or hearing media.
    pub dropped_held: u64,
    /// Packets dropped because the leg's media is blocked (or cannot be silenced).
    pub dropped_blocked: u64,
    /// Pre-encoded media packets sent to the endpoint.
    pub media_out: u64,
}

impl LegCounters {
    /// Packets relayed to the endpoint from its peer (`rtp_out` also counts
    /// played music and announcements).
    pub fn relayed(&self) -> u64 {
        self.rtp_out.saturating_sub(self.media_out)
    }

    /// Packets the leg received and dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_foreign
            + self.dropped_malformed
            + self.dropped_no_route
            + self.dropped_held
            + self.dropped_blocked
    }

    /// Adds every counter of `other` to this one (totals over legs).
    pub fn add(&mut self, other: &LegCounters) {
        self.rtp_in += other.rtp_in;
        self.rtp_in_bytes += other.rtp_in_bytes;
        self.rtp_out += other.rtp_out;
        self.rtcp_in += other.rtcp_in;
        self.rtcp_out += other.rtcp_out;
        self.dropped_foreign += other.dropped_foreign;
        self.dropped_malformed += other.dropped_malformed;
        self.dropped_no_route += other.dropped_no_route;
        self.dropped_held += other.dropped_held;
        self.dropped_blocked += other.dropped_blocked;
        self.media_out += other.media_out;
    }
}
