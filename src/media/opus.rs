//! Opus (RFC 6716) through libopus (`audiopus`): 48 kHz mono, one packet per
//! packet time.
//!
//! libopus encodes 10, 20, 40 and 60 ms frames directly. Opus has no 30 ms
//! frame, so a 30 ms packet is three 10 ms frames in one code-3 packet
//! (RFC 6716 §3.2.5), assembled here. Frames in one packet must share their
//! TOC configuration, so for 30 ms the encoder is pinned to CELT at a fixed
//! bandwidth.

use super::MediaError;
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bandwidth, Bitrate, Channels, SampleRate};

/// Opus's RTP clock and our encoding rate, in Hz.
pub const OPUS_RATE: u32 = 48_000;
/// Default bitrate, in bit/s.
pub const DEFAULT_BITRATE: u32 = 32_000;
/// Lowest and highest bitrates libopus accepts, in bit/s.
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 6_000..=510_000;
/// Packet times the encoder produces, in ms.
pub const PTIMES: [u32; 5] = [10, 20, 30, 40, 60];
/// Largest packet libopus is asked to write.
const MAX_PACKET: usize = 4000;
/// libopus `OPUS_SET_FORCE_MODE` request and its CELT-only value.
const SET_FORCE_MODE: i32 = 11002;
const MODE_CELT_ONLY: i32 = 1002;

fn codec_error(reason: impl std::fmt::Display) -> MediaError {
    MediaError::Codec {
        codec: "opus".into(),
        reason: reason.to_string(),
    }
}

/// An Opus encoder producing one packet per `ptime_ms` of 48 kHz mono audio.
#[derive(Debug)]
pub struct OpusEncoder {
    enc: Encoder,
    ptime_ms: u32,
    buf: Vec<u8>,
}

impl OpusEncoder {
    /// An encoder at `bitrate` bit/s for `ptime_ms` packets (one of [`PTIMES`]).
    pub fn new(bitrate: u32, ptime_ms: u32) -> Result<Self, MediaError> {
        if !PTIMES.contains(&ptime_ms) {
            return Err(codec_error(format!(
                "packet time {ptime_ms} ms is not supported (use 10, 20, 30, 40 or 60)"
            )));
        }
        if !BITRATE_RANGE.contains(&bitrate) {
            return Err(codec_error(format!(
                "bitrate {bitrate} bit/s is out of range ({}..={} bit/s)",
                BITRATE_RANGE.start(),
                BITRATE_RANGE.end()
            )));
        }
        // Music on hold is mostly music; `Audio` keeps it sounding like music.
        let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Audio)
            .map_err(codec_error)?;
        enc.set_bitrate(Bitrate::BitsPerSecond(bitrate as i32))
            .map_err(codec_error)?;
        if ptime_ms == 30 {
            // Three frames in one packet need one mode and one bandwidth.
            enc.set_encoder_ctl_request(SET_FORCE_MODE, MODE_CELT_ONLY)
                .map_err(codec_error)?;
            enc.set_bandwidth(bandwidth_for(bitrate))
                .map_err(codec_error)?;
        }
        Ok(OpusEncoder {
            enc,
            ptime_ms,
            buf: vec![0; MAX_PACKET],
        })
    }

    /// Samples per packet at 48 kHz.
    pub fn frame_samples(&self) -> usize {
        (self.ptime_ms * OPUS_RATE / 1000) as usize
    }

    /// Encodes exactly [`Self::frame_samples`] samples into one packet,
    /// appended to `out`; returns the packet's length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<usize, MediaError> {
        if pcm.len() != self.frame_samples() {
            return Err(codec_error(format!(
                "a {} ms packet needs {} samples, got {}",
                self.ptime_ms,
                self.frame_samples(),
                pcm.len()
            )));
        }
        if self.ptime_ms != 30 {
            let n = self.enc.encode(pcm, &mut self.buf).map_err(codec_error)?;
            out.extend_from_slice(&self.buf[..n]);
            return Ok(n);
        }
        let mut frames: Vec<Vec<u8>> = Vec::with_capacity(3);
        for part in pcm.chunks_exact(480) {
            let n = self.enc.encode(part, &mut self.buf).map_err(codec_error)?;
            frames.push(self.buf[..n].to_vec());
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let packet = join_frames(&refs).map_err(codec_error)?;
        out.extend_from_slice(&packet);
        Ok(packet.len())
    }
}

/// The bandwidth libopus would settle on for CELT at `bitrate`, pinned.
fn bandwidth_for(bitrate: u32) -> Bandwidth {
    match bitrate {
        0..=11_999 => Bandwidth::Narrowband,
        12_000..=15_999 => Bandwidth::Wideband,
        16_000..=23_999 => Bandwidth::Superwideband,
        _ => Bandwidth::Fullband,
    }
}

/// Joins single-frame (code 0) Opus packets with one TOC configuration into
/// one code-3 packet, variable-bitrate framing (RFC 6716 §3.2.5).
pub fn join_frames(packets: &[&[u8]]) -> Result<Vec<u8>, String> {
    let Some(first) = packets.first() else {
        return Err("no frames to join".into());
    };
    if packets.len() > 48 {
        return Err(format!("{} frames do not fit one packet", packets.len()));
    }
    let toc = *first.first().ok_or("empty Opus packet")?;
    let mut out = Vec::with_capacity(packets.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    out.push((toc & !0x03) | 0x03);
    // v = 1 (VBR), p = 0 (no padding), M = frame count.
    out.push(0x80 | packets.len() as u8);
    for (i, p) in packets.iter().enumerate() {
        let t = *p.first().ok_or("empty Opus packet")?;
        if t & 0x03 != 0 {
            return Err(format!("frame {i} is not a single-frame (code 0) packet"));
        }
        if t & !0x03 != toc & !0x03 {
            return Err(format!(
                "frame {i} has TOC configuration {:#04x}, frame 0 has {:#04x}",
                t & !0x03,
                toc & !0x03
            ));
        }
        let len = p.len() - 1;
        if len > 1275 {
            return Err(format!("frame {i} is {len} bytes (max 1275)"));
        }
        // Every frame but the last carries its length (1 or 2 bytes).
        if i + 1 < packets.len() {
            if len < 252 {
                out.push(len as u8);
            } else {
                let b0 = 252 + (len & 3);
                out.push(b0 as u8);
                out.push(((len - b0) / 4) as u8);
            }
        }
    }
    for p in packets {
        out.extend_from_slice(&p[1..]);
    }
    Ok(out)
}

/// An Opus decoder at 48 kHz mono (for tests and tools).
#[derive(Debug)]
pub struct OpusDecoder {
    dec: Decoder,
    buf: Vec<i16>,
}

impl OpusDecoder {
    /// A fresh decoder.
    pub fn new() -> Result<Self, MediaError> {
        Ok(OpusDecoder {
            dec: Decoder::new(SampleRate::Hz48000, Channels::Mono).map_err(codec_error)?,
            // 120 ms, the longest Opus packet.
            buf: vec![0; 5760],
        })
    }

    /// Decodes one packet, appending its samples to `out`; returns how many.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError> {
        let n = self
            .dec
            .decode(Some(packet), &mut self.buf[..], false)
            .map_err(codec_error)?;
        out.extend_from_slice(&self.buf[..n]);
        Ok(n)
    }

    /// The decoder's look-ahead compensation is the encoder's: 6.5 ms.
    pub const DELAY_SAMPLES: usize = 312;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn tones(secs: f64) -> Vec<i16> {
        let n = (48000.0 * secs) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / 48000.0;
                (6000.0 * (2.0 * PI * 440.0 * t).sin() + 4000.0 * (2.0 * PI * 1000.0 * t).sin())
                    as i16
            })
            .collect()
    }

    /// Best normalised cross-correlation of `y` against `x` over delays up to `max`.
    fn best_correlation(x: &[i16], y: &[i16], max: usize) -> (usize, f64) {
        let n = x.len().min(y.len()) - max;
        let start = 4800;
        (0..max)
            .map(|d| {
                let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
                for i in start..n {
                    let (a, b) = (x[i] as f64, y[i + d] as f64);
                    xy += a * b;
                    xx += a * a;
                    yy += b * b;
                }
                (d, xy / (xx * yy).sqrt().max(1e-9))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
    }

    fn round_trip(ptime: u32, bitrate: u32) -> (Vec<i16>, Vec<i16>, Vec<usize>) {
        let x = tones(1.0);
        let mut enc = OpusEncoder::new(bitrate, ptime).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut y = Vec::new();
        let mut sizes = Vec::new();
        for frame in x.chunks_exact(enc.frame_samples()) {
            let mut pkt = Vec::new();
            sizes.push(enc.encode(frame, &mut pkt).unwrap());
            let n = dec.decode(&pkt, &mut y).unwrap();
            assert_eq!(n, frame.len(), "{ptime} ms packet decodes to {n} samples");
        }
        (x, y, sizes)
    }

    #[test]
    fn every_ptime_round_trips() {
        for ptime in PTIMES {
            let (x, y, sizes) = round_trip(ptime, DEFAULT_BITRATE);
            let (d, c) = best_correlation(&x, &y, 1000);
            assert!(c >= 0.9, "{ptime} ms: correlation {c:.3} at delay {d}");
            assert!((300..=330).contains(&d), "{ptime} ms: delay {d}");
            // Roughly the bitrate: 32 kbit/s is 40 bytes per 10 ms.
            let avg = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
            let expect = (DEFAULT_BITRATE * ptime / 8000) as f64;
            assert!(
                avg > expect * 0.5 && avg < expect * 1.5,
                "{ptime} ms: {avg} bytes"
            );
        }
    }

    #[test]
    fn thirty_ms_is_one_code3_packet_of_three_frames() {
        let x = tones(0.3);
        let mut enc = OpusEncoder::new(DEFAULT_BITRATE, 30).unwrap();
        for frame in x.chunks_exact(1440) {
            let mut pkt = Vec::new();
            enc.encode(frame, &mut pkt).unwrap();
            assert_eq!(pkt[0] & 0x03, 3, "code 3");
            assert_eq!(pkt[1] & 0x3F, 3, "three frames");
            assert_eq!(
                audiopus::packet::nb_samples(&pkt[..], SampleRate::Hz48000).unwrap(),
                1440
            );
        }
    }

    #[test]
    fn bitrate_is_configurable() {
        let (_, _, low) = round_trip(20, 16_000);
        let (_, _, high) = round_trip(20, 64_000);
        let avg = |s: &[usize]| s.iter().sum::<usize>() as f64 / s.len() as f64;
        assert!(
            avg(&high) > avg(&low) * 2.0,
            "{} vs {}",
            avg(&high),
            avg(&low)
        );
        let (x, y, _) = round_trip(30, 12_000);
        assert!(best_correlation(&x, &y, 1000).1 > 0.8);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(matches!(
            OpusEncoder::new(1000, 20),
            Err(MediaError::Codec { .. })
        ));
        assert!(matches!(
            OpusEncoder::new(32000, 25),
            Err(MediaError::Codec { .. })
        ));
        let mut enc = OpusEncoder::new(32000, 20).unwrap();
        assert!(enc.encode(&[0; 100], &mut Vec::new()).is_err());
        let mut dec = OpusDecoder::new().unwrap();
        assert!(dec.decode(&[0xFF, 0xFF, 0xFF], &mut Vec::new()).is_err());
    }

    #[test]
    fn join_frames_framing() {
        let a = [0x08u8, 1, 2, 3];
        let b = [0x08u8; 300];
        let joined = join_frames(&[&a, &b, &a]).unwrap();
        assert_eq!(joined[0], 0x0B);
        assert_eq!(joined[1], 0x83);
        assert_eq!(joined[2], 3);
        // 299 = 252 + 3 + 4 · 11.
        assert_eq!(&joined[3..5], &[255, 11]);
        assert_eq!(joined.len(), 5 + 3 + 299 + 3);
        assert!(join_frames(&[&a, &[0x10, 1]]).is_err());
        assert!(join_frames(&[&[0x09, 1]]).is_err());
        assert!(join_frames(&[]).is_err());
    }
}
