//! Sans-IO harness for session scenarios: a shard, a hand-advanced clock,
//! legs with addresses, and RTP/RTCP packet builders. No sockets.

// Each scenario file uses a different part of the harness.
#![allow(dead_code)]

use bytes::Bytes;
use rtpark::session::playback::FrameList;
use rtpark::session::{
    After, Codec, JoinMode, LatchPolicy, LegConfig, LegKey, Program, SessionEvent, Shard,
    ShardConfig, SocketOp, Transmit, Verdict,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Media timeout of every harness leg.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
/// Silent timeout of every harness leg.
pub const SILENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses an address literal.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address literal")
}

/// A leg config: local ports `local` and `local + 1` on 127.0.0.1, Learn policy.
pub fn leg_config(name: &str, local: u16, remote: Option<&str>) -> LegConfig {
    LegConfig {
        call: "call-1".into(),
        name: name.into(),
        local_rtp: SocketAddr::from(([127, 0, 0, 1], local)),
        local_rtcp: SocketAddr::from(([127, 0, 0, 1], local + 1)),
        remote: remote.map(addr),
        remote_rtcp: None,
        latch: LatchPolicy::Learn,
        rtcp_mux: false,
        codecs: Vec::new(),
        media_timeout: MEDIA_TIMEOUT,
        silent_timeout: SILENT_TIMEOUT,
        silent: false,
        ssrc_per_source: false,
    }
}

/// An RTP packet: V=2, PT 0, the given fields, `payload` after the 12-byte header.
pub fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A 160-byte PCMU packet whose payload encodes `seq`, so copies can be told apart.
pub fn pcmu(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..160u16).map(|i| (i ^ seq) as u8).collect();
    rtp(seq, ts, ssrc, &payload)
}

/// An RTCP receiver report with no report blocks (8 bytes).
pub fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// An RTCP sender report with no report blocks (28 bytes).
pub fn rtcp_sr(ssrc: u32, ntp: u64, rtp_ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&ntp.to_be_bytes());
    p.extend_from_slice(&rtp_ts.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p
}

/// Sequence number, timestamp, SSRC and marker of an RTP packet.
pub fn fields(p: &[u8]) -> (u16, u32, u32, bool) {
    (
        u16::from_be_bytes([p[2], p[3]]),
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        p[1] & 0x80 != 0,
    )
}

/// An RTP packet with payload type `pt` and the marker bit `marker`.
pub fn rtp_with(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = rtp(seq, ts, ssrc, payload);
    p[1] = (pt & 0x7f) | if marker { 0x80 } else { 0 };
    p
}

/// An RFC 4733 telephone-event packet carrying one event block.
pub fn telephone_event(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    event: u8,
    end: bool,
    duration: u16,
) -> Vec<u8> {
    let [d0, d1] = duration.to_be_bytes();
    // Volume 10 dBm0, as phones send.
    let block = [event, if end { 0x80 | 10 } else { 10 }, d0, d1];
    rtp_with(pt, false, seq, ts, ssrc, &block)
}

/// PCMU/8000 as signalled (payload type 0).
pub fn pcmu_codec() -> Codec {
    Codec {
        pt: 0,
        name: "PCMU".into(),
        rate: 8000,
        channels: 1,
    }
}

/// telephone-event/8000 as signalled with payload type `pt`.
pub fn telephone_event_codec(pt: u8) -> Codec {
    Codec {
        pt,
        name: "telephone-event".into(),
        rate: 8000,
        channels: 1,
    }
}

/// Packet time of the harness media.
pub const PTIME: Duration = Duration::from_millis(20);
/// RTP timestamp units per harness media frame (20 ms at 8 kHz).
pub const FRAME_SAMPLES: u32 = 160;

/// `count` distinct 160-byte PCMU frames: frame `i` starts with `i` (big-endian
/// u16), so [`frame_number`] can tell which one a packet carries.
pub fn frame_list(count: usize) -> Arc<FrameList> {
    tagged_frame_list(count, 0)
}

/// Like [`frame_list`], with `tag` in the third byte of every frame, so two
/// programs can be told apart ([`frame_tag`]).
pub fn tagged_frame_list(count: usize, tag: u8) -> Arc<FrameList> {
    let frames = (0..count)
        .map(|i| {
            let mut f = vec![(i & 0xff) as u8 ^ 0x55; 160];
            f[..2].copy_from_slice(&(i as u16).to_be_bytes());
            f[2] = tag;
            Bytes::from(f)
        })
        .collect();
    Arc::new(FrameList {
        frames,
        samples_per_frame: FRAME_SAMPLES,
        ptime: PTIME,
        clock_rate: 8000,
    })
}

/// Which frame of a [`frame_list`] `payload` is.
pub fn frame_number(payload: &[u8]) -> usize {
    u16::from_be_bytes([payload[0], payload[1]]) as usize
}

/// The tag of a [`tagged_frame_list`] frame.
pub fn frame_tag(payload: &[u8]) -> u8 {
    payload[2]
}

/// A looping music class in PCMU whose clock started at `epoch`.
pub fn moh(name: &str, frames: &Arc<FrameList>, join: JoinMode, epoch: Instant) -> Program {
    Program {
        name: name.into(),
        frames: frames.clone(),
        pt: 0,
        join,
        epoch,
        looping: true,
        then: After::Nothing,
    }
}

/// A one-shot announcement in PCMU followed by `then`.
pub fn announcement(name: &str, frames: &Arc<FrameList>, then: After, epoch: Instant) -> Program {
    Program {
        name: name.into(),
        frames: frames.clone(),
        pt: 0,
        join: JoinMode::FromStart,
        epoch,
        looping: false,
        then,
    }
}

/// The instant `ms` milliseconds after `t0`.
pub fn at_ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// A pre-encoded packet as the io layer got it from `poll_transmit`, with the
/// virtual time of the `handle_timeout` that produced it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When it came out.
    pub at: Instant,
    /// The sending leg.
    pub leg: LegKey,
    /// Destination.
    pub to: SocketAddr,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub pt: u8,
    /// The frame, shared with the program.
    pub payload: Bytes,
}

impl Sent {
    fn new(at: Instant, t: Transmit) -> Self {
        let (seq, ts, ssrc, marker) = fields(&t.header);
        assert_eq!(t.header[0], 0x80, "V=2, no padding, extension or CSRC");
        Sent {
            at,
            leg: t.leg,
            to: t.to,
            seq,
            ts,
            ssrc,
            marker,
            pt: t.header[1] & 0x7f,
            payload: t.payload,
        }
    }

    /// Which frame of a [`frame_list`] it carries.
    pub fn frame(&self) -> usize {
        frame_number(&self.payload)
    }

    /// The tag of the [`tagged_frame_list`] it came from.
    pub fn tag(&self) -> u8 {
        frame_tag(&self.payload)
    }
}

/// A shard and the fake clock that drives it.
pub struct Harness {
    /// The shard under test.
    pub shard: Shard,
    /// Virtual now.
    pub now: Instant,
}

impl Harness {
    /// A shard with the default settings.
    pub fn new() -> Self {
        Self::with_config(ShardConfig::default())
    }

    /// A shard with `config`.
    pub fn with_config(config: ShardConfig) -> Self {
        Harness {
            shard: Shard::new(config),
            now: Instant::now(),
        }
    }

    /// Moves virtual time forward.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Moves virtual time forward by `ms` milliseconds.
    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// Moves virtual time forward and runs the shard's timers as the io layer
    /// would: at every deadline `poll_timeout` reports on the way.
    pub fn run_for(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(due) = self.shard.poll_timeout() {
            if due > end {
                break;
            }
            self.now = self.now.max(due);
            self.shard.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// Drains the queued media packets, stamped with the current time.
    pub fn transmits(&mut self) -> Vec<Sent> {
        let now = self.now;
        std::iter::from_fn(|| self.shard.poll_transmit())
            .map(|t| Sent::new(now, t))
            .collect()
    }

    /// Moves virtual time to the shard's next deadline, if any (never backwards),
    /// runs it, and returns the media packets it produced.
    pub fn step(&mut self) -> Option<Vec<Sent>> {
        let due = self.shard.poll_timeout()?;
        self.now = self.now.max(due);
        self.shard.handle_timeout(self.now);
        Some(self.transmits())
    }

    /// Like [`Harness::run_for`], collecting every media packet on the way.
    pub fn run_media_for(&mut self, by: Duration) -> Vec<Sent> {
        let end = self.now + by;
        let mut sent = self.transmits();
        while let Some(due) = self.shard.poll_timeout() {
            if due > end {
                break;
            }
            self.now = self.now.max(due);
            self.shard.handle_timeout(self.now);
            sent.extend(self.transmits());
        }
        self.now = end;
        sent
    }

    /// Like [`Harness::run_media_for`], up to the instant `t` (a no-op for the past).
    pub fn run_media_until(&mut self, t: Instant) -> Vec<Sent> {
        let by = t.saturating_duration_since(self.now);
        self.run_media_for(by)
    }

    /// Steps through deadlines until `n` media packets came out (at most 10 s
    /// of virtual time per packet, so a stalled stream fails the test).
    pub fn next_packets(&mut self, n: usize) -> Vec<Sent> {
        let mut sent = self.transmits();
        let give_up = self.now + Duration::from_secs(10) * (n as u32 + 1);
        while sent.len() < n {
            let due = self
                .shard
                .poll_timeout()
                .expect("a deadline while media is due");
            assert!(due <= give_up, "no media packet for a long time");
            self.now = self.now.max(due);
            self.shard.handle_timeout(self.now);
            sent.extend(self.transmits());
        }
        sent
    }

    /// Adds a leg at the current time.
    pub fn add(&mut self, config: LegConfig) -> LegKey {
        self.shard.add_leg(self.now, config)
    }

    /// Adds a Learn leg.
    pub fn add_learn(&mut self, name: &str, local: u16, remote: Option<&str>) -> LegKey {
        self.add(leg_config(name, local, remote))
    }

    /// Feeds `packet` to `key`'s RTP socket; returns the verdict and the packet as it left.
    pub fn rtp(&mut self, key: LegKey, from: &str, packet: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = packet.to_vec();
        let v = self.shard.handle_rtp(self.now, key, addr(from), &mut buf);
        (v, buf)
    }

    /// Feeds `packet` to `key`'s RTCP socket; returns the verdict and the packet as it left.
    pub fn rtcp(&mut self, key: LegKey, from: &str, packet: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = packet.to_vec();
        let v = self.shard.handle_rtcp(self.now, key, addr(from), &mut buf);
        (v, buf)
    }

    /// Drains the queued socket operations.
    pub fn ops(&mut self) -> Vec<SocketOp> {
        std::iter::from_fn(|| self.shard.poll_socket_op()).collect()
    }

    /// Drains the queued events.
    pub fn events(&mut self) -> Vec<SessionEvent> {
        std::iter::from_fn(|| self.shard.poll_event()).collect()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}
