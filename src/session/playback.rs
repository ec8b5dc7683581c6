//! Pre-encoded media played to a leg: what to play, which frame is due, and the
//! RTP header of each packet. Frames are shared by every listener on every
//! worker; a leg adds only its 12-byte header.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A sequence of pre-encoded frames in one codec and packet time.
pub trait Frames: Send + Sync + fmt::Debug {
    /// Number of frames.
    fn frame_count(&self) -> usize;
    /// Frame `index` (< `frame_count`), shared, not copied.
    fn frame(&self, index: usize) -> Bytes;
    /// RTP timestamp units per frame.
    fn samples_per_frame(&self) -> u32;
    /// Packet time.
    fn ptime(&self) -> Duration;
    /// RTP clock rate in Hz.
    fn clock_rate(&self) -> u32;
}

pub use crate::media::JoinMode;

impl Frames for crate::media::EncodedClip {
    fn frame_count(&self) -> usize {
        self.frames.len()
    }
    fn frame(&self, index: usize) -> Bytes {
        crate::media::EncodedClip::frame(self, index)
    }
    fn samples_per_frame(&self) -> u32 {
        crate::media::EncodedClip::samples_per_frame(self)
    }
    fn ptime(&self) -> Duration {
        Duration::from_millis(self.ptime_ms as u64)
    }
    fn clock_rate(&self) -> u32 {
        self.codec.clock_rate()
    }
}

/// What follows a one-shot playback.
#[derive(Debug, Clone)]
pub enum After {
    /// Another program: music on hold, or the next announcement of a sequence.
    Play(Box<Program>),
    /// The leg's peer again, both ways: a held leg comes off hold.
    Live,
    /// Whatever the leg heard from its peer before (nothing if it has none);
    /// its hold state is left alone.
    Peer,
    /// Nothing.
    Nothing,
}

/// Something to play to a leg.
#[derive(Debug, Clone)]
pub struct Program {
    /// Class or announcement name, for events and resume positions.
    pub name: String,
    /// The encoded frames, in the leg's codec.
    pub frames: Arc<dyn Frames>,
    /// Payload type to send them with (the leg's, for that codec).
    pub pt: u8,
    /// Where a listener starts.
    pub join: JoinMode,
    /// The class clock's origin for [`JoinMode::Shared`].
    pub epoch: Instant,
    /// Loop forever (music) or play once (announcement).
    pub looping: bool,
    /// What comes after a one-shot program.
    pub then: After,
}

/// What a leg's endpoint hears.
#[derive(Debug, Clone, Default)]
pub enum Source {
    /// Its peer's media, relayed.
    #[default]
    Peer,
    /// Pre-encoded media.
    Media(Box<Playback>),
    /// Nothing (e.g. the holding party, when silence frames are off).
    Nothing,
}

impl Source {
    /// Whether the endpoint hears its peer.
    #[inline]
    pub fn is_peer(&self) -> bool {
        matches!(self, Source::Peer)
    }
}

/// A program being played to one leg.
#[derive(Debug, Clone)]
pub struct Playback {
    /// What is played.
    pub program: Program,
    /// When packet 0 was due.
    pub started: Instant,
    /// Index (before wrapping) of the frame of packet 0.
    pub first_frame: u64,
    /// Index of the next packet in time (packet `k` is due at `started + k·ptime`).
    pub k: u64,
    /// Packets sent so far.
    pub sent: u64,
    /// Sequence number of the first packet.
    pub seq0: u16,
    /// Timestamp of packet 0.
    pub ts0: u32,
    /// SSRC of the stream.
    pub ssrc: u32,
    /// Identifies this playback to its timer entries.
    pub serial: u32,
}

impl Playback {
    /// When packet `k` is due.
    pub fn due(&self) -> Instant {
        let ptime = self.program.frames.ptime();
        // k·ptime stays far below Duration's range for any realistic call length.
        self.started + ptime.saturating_mul(self.k.min(u32::MAX as u64) as u32)
    }

    /// The frame index of packet `k`, or `None` when a one-shot program is over.
    pub fn frame_index(&self) -> Option<usize> {
        let count = self.program.frames.frame_count() as u64;
        if count == 0 {
            return None;
        }
        let abs = self.first_frame.wrapping_add(self.k);
        if self.program.looping {
            Some((abs % count) as usize)
        } else if abs < count {
            Some(abs as usize)
        } else {
            None
        }
    }

    /// The frame position to remember for [`JoinMode::Resume`].
    pub fn position(&self) -> u64 {
        let count = self.program.frames.frame_count().max(1) as u64;
        self.first_frame.wrapping_add(self.k) % count
    }

    /// Writes packet `k`'s RTP header (marker on the first packet).
    pub fn header(&self) -> [u8; 12] {
        let seq = self.seq0.wrapping_add(self.sent as u16);
        let ts = self
            .ts0
            .wrapping_add((self.k as u32).wrapping_mul(self.program.frames.samples_per_frame()));
        let mut h = [0u8; 12];
        h[0] = 0x80;
        h[1] = (self.program.pt & 0x7f) | if self.sent == 0 { 0x80 } else { 0 };
        h[2..4].copy_from_slice(&seq.to_be_bytes());
        h[4..8].copy_from_slice(&ts.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        h
    }
}

/// One pre-encoded packet for the io layer to send: a header of its own and a
/// frame shared with every other listener.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The leg whose RTP socket sends it.
    pub leg: super::LegKey,
    /// Destination.
    pub to: std::net::SocketAddr,
    /// The socket is connected to `to`.
    pub connected: bool,
    /// RTP header.
    pub header: [u8; 12],
    /// Encoded frame.
    pub payload: Bytes,
}

/// Frames held in memory, for tests and generated media (silence, tones).
#[derive(Debug, Clone)]
pub struct FrameList {
    /// The frames.
    pub frames: Vec<Bytes>,
    /// RTP timestamp units per frame.
    pub samples_per_frame: u32,
    /// Packet time.
    pub ptime: Duration,
    /// RTP clock rate.
    pub clock_rate: u32,
}

impl Frames for FrameList {
    fn frame_count(&self) -> usize {
        self.frames.len()
    }
    fn frame(&self, index: usize) -> Bytes {
        self.frames.get(index).cloned().unwrap_or_default()
    }
    fn samples_per_frame(&self) -> u32 {
        self.samples_per_frame
    }
    fn ptime(&self) -> Duration {
        self.ptime
    }
    fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
}

/// Another program's frames from a start frame, a fixed number of times
/// (the ng protocol's `start-pos` and `repeat-times`).
#[derive(Debug, Clone)]
pub struct Repeated {
    /// The frames repeated.
    pub inner: Arc<dyn Frames>,
    /// Frame the first pass starts at (later passes start at 0).
    pub start: usize,
    /// Number of passes (at least one).
    pub times: usize,
}

impl Frames for Repeated {
    fn frame_count(&self) -> usize {
        let n = self.inner.frame_count();
        n.saturating_mul(self.times.max(1))
            .saturating_sub(self.start.min(n))
    }
    fn frame(&self, index: usize) -> Bytes {
        let n = self.inner.frame_count();
        if n == 0 {
            return Bytes::new();
        }
        self.inner
            .frame(index.saturating_add(self.start.min(n)) % n)
    }
    fn samples_per_frame(&self) -> u32 {
        self.inner.samples_per_frame()
    }
    fn ptime(&self) -> Duration {
        self.inner.ptime()
    }
    fn clock_rate(&self) -> u32 {
        self.inner.clock_rate()
    }
}
