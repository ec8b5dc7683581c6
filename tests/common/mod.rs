//! Sans-IO harness for session scenarios: a shard, a hand-advanced clock,
//! legs with addresses, and RTP/RTCP packet builders. No sockets.

// Each scenario file uses a different part of the harness.
#![allow(dead_code)]

use rtpark::session::{
    LatchPolicy, LegConfig, LegKey, SessionEvent, Shard, ShardConfig, SocketOp, Verdict,
};
use std::net::SocketAddr;
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
