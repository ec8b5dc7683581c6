//! The codecs rtpark plays media in, and the one-shot encoding of a clip into
//! RTP payloads: resample, quantise, pad the last frame, encode, and keep every
//! frame in one contiguous buffer that listeners slice without copying.

use super::decode::Pcm;
use super::g711;
use super::g722::G722Encoder;
use super::opus::OpusEncoder;
use super::MediaError;
use bytes::Bytes;
use std::time::Duration;

/// Packet times a clip can be encoded at, in ms.
pub const PTIMES: [u32; 4] = [10, 20, 30, 40];

/// An audio codec for pre-encoded media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 at 64 kbit/s.
    G722,
    /// Opus, mono.
    Opus,
}

impl Codec {
    /// Every codec, in order of preference for a new encoding.
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    /// RTP clock rate in Hz (RFC 3551: G.722's is 8000 although it samples at 16000).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
            Codec::Opus => 48000,
        }
    }

    /// Rate the encoder consumes, in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => 16000,
            Codec::Opus => 48000,
        }
    }

    /// Static RTP payload type (RFC 3551), if the codec has one.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// The codec of a static payload type.
    pub fn from_static_pt(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// The codec of an SDP `a=rtpmap` encoding name and clock rate
    /// (`PCMU/8000`, `PCMA/8000`, `G722/8000`, `opus/48000/2`); names are
    /// case-insensitive.
    pub fn from_name(name: &str, clock_rate: u32) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name) && c.clock_rate() == clock_rate)
    }

    /// SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// RTP timestamp units per frame of `ptime_ms`.
    pub fn samples_per_frame(self, ptime_ms: u32) -> u32 {
        samples_per_frame(self, ptime_ms)
    }

    fn id(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 1,
            Codec::G722 => 2,
            Codec::Opus => 3,
        }
    }

    fn from_id(id: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.id() == id)
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// RTP timestamp units in a frame of `ptime_ms` of `codec` (ptime · clock / 1000).
pub fn samples_per_frame(codec: Codec, ptime_ms: u32) -> u32 {
    ptime_ms * codec.clock_rate() / 1000
}

/// A clip encoded once: all frames back to back in `data`, frame `i` at
/// `frames[i] = (offset, len)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedClip {
    /// Codec of the frames.
    pub codec: Codec,
    /// Packet time of each frame, in ms.
    pub ptime_ms: u32,
    /// Number of frames (`frames.len()`).
    pub frame_count: usize,
    /// Every frame, contiguous.
    pub data: Bytes,
    /// (offset, length) of each frame in `data`.
    pub frames: Vec<(u32, u32)>,
}

/// Magic of the on-disk cache format, version 1.
const CACHE_MAGIC: &[u8; 8] = b"RTPKFRM1";

impl EncodedClip {
    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Frame `index`, sharing `data` (no copy); empty if out of range.
    pub fn frame(&self, index: usize) -> Bytes {
        match self.frames.get(index) {
            Some(&(off, len)) => self.data.slice(off as usize..(off + len) as usize),
            None => Bytes::new(),
        }
    }

    /// RTP timestamp units per frame.
    pub fn samples_per_frame(&self) -> u32 {
        samples_per_frame(self.codec, self.ptime_ms)
    }

    /// Playing time of the whole clip.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.ptime_ms as u64 * self.frames.len() as u64)
    }

    /// Serialises the clip for the on-disk cache.
    pub fn to_cache_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.frames.len() * 8 + self.data.len());
        out.extend_from_slice(CACHE_MAGIC);
        out.push(self.codec.id());
        out.extend_from_slice(&self.ptime_ms.to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&super::library::content_hash(&[&self.data]).to_le_bytes());
        for &(_, len) in &self.frames {
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }

    /// Reads a clip written by [`Self::to_cache_bytes`]; `None` if the bytes
    /// are not one (wrong magic, truncated, inconsistent or damaged).
    pub fn from_cache_bytes(bytes: &[u8]) -> Option<EncodedClip> {
        let rest = bytes.strip_prefix(CACHE_MAGIC)?;
        let (&codec, rest) = rest.split_first()?;
        let codec = Codec::from_id(codec)?;
        let (ptime_ms, rest) = take_u32(rest)?;
        let (count, rest) = take_u32(rest)?;
        let (data_len, rest) = rest.split_first_chunk::<8>()?;
        let data_len = u64::from_le_bytes(*data_len);
        let (hash, rest) = rest.split_first_chunk::<8>()?;
        let table_len = (count as usize).checked_mul(4)?;
        if rest.len() as u64 != table_len as u64 + data_len {
            return None;
        }
        let (table, data) = rest.split_at(table_len);
        if super::library::content_hash(&[data]) != u64::from_le_bytes(*hash) {
            return None;
        }
        let mut frames = Vec::with_capacity(count as usize);
        let mut off: u64 = 0;
        for len in table.chunks_exact(4) {
            let len = u32::from_le_bytes(len.try_into().ok()?);
            frames.push((u32::try_from(off).ok()?, len));
            off += len as u64;
        }
        if off != data_len {
            return None;
        }
        Some(EncodedClip {
            codec,
            ptime_ms,
            frame_count: frames.len(),
            data: Bytes::copy_from_slice(data),
            frames,
        })
    }
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (v, rest) = b.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*v), rest))
}

/// Converts to 16-bit with clipping.
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Encodes `pcm` in `codec` at `ptime_ms` (10, 20, 30 or 40): resampled to the
/// codec's rate, clipped to 16 bits, the last frame padded with silence.
/// `opus_bitrate` (bit/s) is used by Opus only.
pub fn encode_clip(
    pcm: &Pcm,
    codec: Codec,
    ptime_ms: u32,
    opus_bitrate: u32,
) -> Result<EncodedClip, MediaError> {
    if !PTIMES.contains(&ptime_ms) {
        return Err(MediaError::BadPtime(ptime_ms));
    }
    let rate = codec.sample_rate();
    let mut samples = if pcm.rate == rate {
        to_i16(&pcm.samples)
    } else {
        to_i16(&super::resample::resample(&pcm.samples, pcm.rate, rate))
    };
    let per_frame = (rate * ptime_ms / 1000) as usize;
    let frame_count = samples.len().div_ceil(per_frame);
    samples.resize(frame_count * per_frame, 0);

    let mut data: Vec<u8> = Vec::new();
    let mut frames = Vec::with_capacity(frame_count);
    match codec {
        Codec::Pcmu | Codec::Pcma | Codec::G722 => {
            let bytes_per_frame = if codec == Codec::G722 {
                per_frame / 2
            } else {
                per_frame
            };
            data.reserve(frame_count * bytes_per_frame);
            match codec {
                Codec::Pcmu => g711::encode_ulaw(&samples, &mut data),
                Codec::Pcma => g711::encode_alaw(&samples, &mut data),
                _ => G722Encoder::new().encode(&samples, &mut data),
            }
            for i in 0..frame_count {
                frames.push(((i * bytes_per_frame) as u32, bytes_per_frame as u32));
            }
        }
        Codec::Opus => {
            let mut enc = OpusEncoder::new(opus_bitrate, ptime_ms)?;
            for frame in samples.chunks_exact(per_frame) {
                let off = data.len();
                let len = enc.encode(frame, &mut data)?;
                frames.push((off as u32, len as u32));
            }
        }
    }
    if data.len() > u32::MAX as usize {
        return Err(MediaError::Codec {
            codec: codec.name().into(),
            reason: format!("{} bytes of frames do not fit one clip", data.len()),
        });
    }
    Ok(EncodedClip {
        codec,
        ptime_ms,
        frame_count,
        data: Bytes::from(data),
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, secs: f64) -> Pcm {
        let n = (rate as f64 * secs) as usize;
        Pcm {
            rate,
            samples: (0..n)
                .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
                .collect(),
        }
    }

    #[test]
    fn codec_table() {
        assert_eq!(Codec::G722.clock_rate(), 8000);
        assert_eq!(Codec::G722.sample_rate(), 16000);
        assert_eq!(Codec::Opus.clock_rate(), 48000);
        assert_eq!(
            Codec::ALL.map(Codec::static_pt),
            [Some(0), Some(8), Some(9), None]
        );
        assert_eq!(Codec::from_name("pcmu", 8000), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("PCMA", 8000), Some(Codec::Pcma));
        assert_eq!(Codec::from_name("g722", 8000), Some(Codec::G722));
        assert_eq!(Codec::from_name("OPUS", 48000), Some(Codec::Opus));
        assert_eq!(Codec::from_name("G722", 16000), None);
        assert_eq!(Codec::from_name("telephone-event", 8000), None);
        for c in Codec::ALL {
            assert_eq!(Codec::from_name(c.name(), c.clock_rate()), Some(c));
            if let Some(pt) = c.static_pt() {
                assert_eq!(Codec::from_static_pt(pt), Some(c));
            }
        }
        assert_eq!(samples_per_frame(Codec::Pcmu, 20), 160);
        assert_eq!(samples_per_frame(Codec::G722, 20), 160);
        assert_eq!(samples_per_frame(Codec::Opus, 30), 1440);
    }

    #[test]
    fn frames_are_sized_and_padded() {
        // 1.01 s: the last 20 ms frame is half audio, half padding.
        let pcm = tone(8000, 1.01);
        let clip = encode_clip(&pcm, Codec::Pcmu, 20, 32000).unwrap();
        assert_eq!(clip.frame_count, 51);
        assert_eq!(clip.frame_count(), 51);
        assert!(clip.frames.iter().all(|&(_, len)| len == 160));
        assert_eq!(clip.data.len(), 51 * 160);
        let last = clip.frame(50);
        assert!(
            last[80..].iter().all(|&b| b == 0xFF),
            "padded with µ-law silence"
        );
        let g = encode_clip(&tone(16000, 1.0), Codec::G722, 20, 32000).unwrap();
        assert_eq!(
            (g.frame_count, g.frames[0].1, g.samples_per_frame()),
            (50, 160, 160)
        );
        assert!(clip.frame(51).is_empty());
    }

    #[test]
    fn frames_share_the_clip_buffer() {
        let clip = encode_clip(&tone(8000, 0.2), Codec::Pcma, 10, 0).unwrap();
        let f = clip.frame(3);
        assert_eq!(f.as_ptr(), clip.data[3 * 80..].as_ptr());
    }

    #[test]
    fn bad_ptime_is_named() {
        let e = encode_clip(&tone(8000, 0.1), Codec::Pcmu, 25, 0).unwrap_err();
        assert_eq!(e, MediaError::BadPtime(25));
        assert!(e.to_string().contains("25 ms"));
    }

    #[test]
    fn clipping_not_wrapping() {
        assert_eq!(
            to_i16(&[2.0, -2.0, 1.0, -1.0, 0.0]),
            [32767, -32768, 32767, -32768, 0]
        );
    }

    #[test]
    fn cache_round_trip_and_damage() {
        let clip = encode_clip(&tone(44100, 0.5), Codec::Opus, 20, 24000).unwrap();
        let bytes = clip.to_cache_bytes();
        assert_eq!(EncodedClip::from_cache_bytes(&bytes), Some(clip.clone()));
        assert_eq!(
            EncodedClip::from_cache_bytes(&bytes[..bytes.len() - 1]),
            None
        );
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(EncodedClip::from_cache_bytes(&bad), None);
        assert_eq!(EncodedClip::from_cache_bytes(b"RTPKFRM1"), None);
        assert_eq!(EncodedClip::from_cache_bytes(&[]), None);
    }

    #[test]
    fn empty_clip_has_no_frames() {
        let clip = encode_clip(
            &Pcm {
                rate: 8000,
                samples: vec![],
            },
            Codec::Pcmu,
            20,
            0,
        )
        .unwrap();
        assert_eq!(clip.frame_count, 0);
    }
}
