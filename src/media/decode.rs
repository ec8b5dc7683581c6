//! Decodes WAV, FLAC, MP3 and Ogg/Vorbis (symphonia) into mono `f32` PCM.
//!
//! Untrusted files: every failure is a [`MediaError`] naming the file and the
//! reason, never a panic. A damaged packet in the middle of a file is skipped
//! (one glitch beats no music); a file in which nothing decodes is an error.

use super::MediaError;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;

/// Highest sample rate accepted, in Hz.
pub const MAX_RATE: u32 = 384_000;
/// Longest clip accepted, in seconds.
pub const MAX_SECONDS: u64 = 3600;
/// Consecutive demuxer errors after which a file is taken to end there.
const MAX_DEMUX_ERRORS: u32 = 16;

/// Mono PCM at `rate` Hz, samples in [-1, 1].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pcm {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Samples, one channel.
    pub samples: Vec<f32>,
}

impl Pcm {
    /// Length in seconds (0 for a rate of 0).
    pub fn duration_secs(&self) -> f64 {
        if self.rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / self.rate as f64
    }

    /// The same audio at `rate` Hz, band-limited (see [`super::resample`]).
    pub fn resampled(&self, rate: u32) -> Pcm {
        Pcm {
            rate,
            samples: super::resample::resample(&self.samples, self.rate, rate),
        }
    }
}

/// Decodes the audio file at `path` to mono PCM at its own sample rate.
pub fn decode_file(path: &Path) -> Result<Pcm, MediaError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| MediaError::io(path, e))?;
    let len = f.metadata().map_err(|e| MediaError::io(path, e))?.len();
    if len == 0 {
        return Err(MediaError::Empty { file });
    }
    if path.is_dir() {
        return Err(MediaError::Io {
            file,
            reason: "is a directory".into(),
        });
    }
    let ext = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(f), ext, &file)
}

/// Decodes an audio file held in memory; `hint_ext` (e.g. `"flac"`) speeds up
/// format detection but a wrong one does no harm. Errors name the file
/// `(memory)`; [`MediaError::in_file`] renames it.
pub fn decode_bytes(bytes: &[u8], hint_ext: Option<&str>) -> Result<Pcm, MediaError> {
    let file = "(memory)";
    if bytes.is_empty() {
        return Err(MediaError::Empty { file: file.into() });
    }
    decode_source(Box::new(Cursor::new(bytes.to_vec())), hint_ext, file)
}

fn decode_source(
    source: Box<dyn MediaSource>,
    ext: Option<&str>,
    file: &str,
) -> Result<Pcm, MediaError> {
    // A decoder bug on hostile input must not take the engine down.
    match catch_unwind(AssertUnwindSafe(|| decode_inner(source, ext, file))) {
        Ok(result) => result,
        Err(_) => Err(MediaError::Corrupt {
            file: file.into(),
            reason: "the decoder failed on malformed data".into(),
        }),
    }
}

fn corrupt(file: &str, reason: impl Into<String>) -> MediaError {
    MediaError::Corrupt {
        file: file.into(),
        reason: reason.into(),
    }
}

/// Maps an error met while opening the file.
fn open_error(file: &str, e: SymError) -> MediaError {
    match e {
        SymError::Unsupported(what) if what.contains("no suitable") => MediaError::Unsupported {
            file: file.into(),
            reason: "not a recognised audio file".into(),
        },
        SymError::Unsupported(what) => MediaError::Unsupported {
            file: file.into(),
            reason: what.into(),
        },
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt(file, "the file ends inside its header (truncated?)")
        }
        SymError::IoError(e) => MediaError::Io {
            file: file.into(),
            reason: e.to_string(),
        },
        SymError::DecodeError(what) => corrupt(file, format!("malformed header: {what}")),
        SymError::LimitError(what) => corrupt(file, format!("a limit was exceeded: {what}")),
        other => corrupt(file, other.to_string()),
    }
}

fn decode_inner(
    source: Box<dyn MediaSource>,
    ext: Option<&str>,
    file: &str,
) -> Result<Pcm, MediaError> {
    let mss = MediaSourceStream::new(source, MediaSourceStreamOptions::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let mut reader = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| open_error(file, e))?;

    let track = reader
        .default_track(TrackType::Audio)
        .or_else(|| reader.first_track(TrackType::Audio))
        .ok_or_else(|| MediaError::Unsupported {
            file: file.into(),
            reason: "no audio track".into(),
        })?;
    let track_id = track.id;
    let num_frames = track.num_frames;
    let Some(CodecParameters::Audio(params)) = track.codec_params.clone() else {
        return Err(MediaError::Unsupported {
            file: file.into(),
            reason: "the audio track's codec is unknown".into(),
        });
    };
    let mut rate = params.sample_rate.unwrap_or(0);
    if params.sample_rate.is_some() {
        check_rate(file, rate)?;
        if let Some(n) = num_frames {
            if n / rate as u64 > MAX_SECONDS {
                return Err(MediaError::TooLong {
                    file: file.into(),
                    secs: n / rate as u64,
                });
            }
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(_) => MediaError::Unsupported {
                file: file.into(),
                reason: format!("no decoder for codec {}", params.codec),
            },
            other => open_error(file, other),
        })?;

    let mut samples: Vec<f32> = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut decoded = 0u64;
    let mut failed = 0u64;
    let mut first_failure: Option<String> = None;
    let mut demux_errors = 0u32;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A truncated file: keep what was decoded so far.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                demux_errors += 1;
                failed += 1;
                first_failure.get_or_insert_with(|| e.to_string());
                if demux_errors >= MAX_DEMUX_ERRORS {
                    break;
                }
                continue;
            }
        };
        demux_errors = 0;
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymError::DecodeError(e)) => {
                failed += 1;
                first_failure.get_or_insert_with(|| format!("malformed stream: {e}"));
                continue;
            }
            Err(SymError::IoError(e)) => {
                failed += 1;
                first_failure.get_or_insert_with(|| e.to_string());
                continue;
            }
            Err(e) => {
                failed += 1;
                first_failure.get_or_insert_with(|| e.to_string());
                break;
            }
        };
        let spec = buf.spec();
        if rate == 0 {
            rate = spec.rate();
            check_rate(file, rate)?;
        } else if spec.rate() != rate {
            return Err(MediaError::Unsupported {
                file: file.into(),
                reason: format!(
                    "the sample rate changes mid-stream ({rate} Hz to {} Hz)",
                    spec.rate()
                ),
            });
        }
        let channels = spec.channels().count().max(1);
        decoded += 1;
        buf.copy_to_vec_interleaved(&mut interleaved);
        downmix_into(&interleaved, channels, &mut samples);
        if samples.len() as u64 > MAX_SECONDS * rate as u64 {
            return Err(MediaError::TooLong {
                file: file.into(),
                secs: samples.len() as u64 / rate as u64,
            });
        }
    }

    if decoded == 0 && failed > 0 {
        return Err(corrupt(
            file,
            format!(
                "none of its {failed} audio packet(s) could be decoded (first error: {})",
                first_failure.unwrap_or_default()
            ),
        ));
    }
    if samples.is_empty() {
        return Err(MediaError::Empty { file: file.into() });
    }
    if failed > 0 {
        log::warn!(
            "media: {file}: skipped {failed} damaged packet(s) of {} (first: {})",
            failed + decoded,
            first_failure.unwrap_or_default()
        );
    }
    Ok(Pcm { rate, samples })
}

fn check_rate(file: &str, rate: u32) -> Result<(), MediaError> {
    if rate == 0 || rate > MAX_RATE {
        return Err(MediaError::BadRate {
            file: file.into(),
            rate,
        });
    }
    Ok(())
}

/// Appends the average of each frame's channels to `out`.
fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A canonical 16-bit PCM WAV.
    fn wav(rate: u32, channels: u16, frames: &[i16]) -> Vec<u8> {
        let data_len = (frames.len() * 2) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
        v.extend_from_slice(&(channels * 2).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for s in frames {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        // Left 0.5, right -0.25 → 0.125.
        let frames: Vec<i16> = (0..100).flat_map(|_| [16384i16, -8192]).collect();
        let pcm = decode_bytes(&wav(8000, 2, &frames), Some("wav")).unwrap();
        assert_eq!(pcm.rate, 8000);
        assert_eq!(pcm.samples.len(), 100);
        for s in &pcm.samples {
            assert!((s - 0.125).abs() < 1e-4, "{s}");
        }
    }

    #[test]
    fn mono_wav_keeps_samples() {
        let frames: Vec<i16> = (0..1000).map(|i| (i * 30) as i16).collect();
        let pcm = decode_bytes(&wav(44100, 1, &frames), None).unwrap();
        assert_eq!(pcm.rate, 44100);
        assert_eq!(pcm.samples.len(), 1000);
        assert!((pcm.samples[500] - 15000.0 / 32768.0).abs() < 1e-4);
        assert!((pcm.duration_secs() - 1000.0 / 44100.0).abs() < 1e-9);
    }

    #[test]
    fn rates_are_checked() {
        let e = decode_bytes(&wav(1_000_000, 1, &[0; 100]), Some("wav")).unwrap_err();
        assert!(
            matches!(
                e,
                MediaError::BadRate {
                    rate: 1_000_000,
                    ..
                }
            ),
            "{e}"
        );
        let e = decode_bytes(&wav(0, 1, &[0; 100]), Some("wav")).unwrap_err();
        assert!(matches!(e, MediaError::BadRate { rate: 0, .. }), "{e}");
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(
            decode_bytes(&[], None).unwrap_err(),
            MediaError::Empty {
                file: "(memory)".into()
            }
        );
        let e = decode_bytes(&wav(8000, 1, &[]), Some("wav")).unwrap_err();
        assert!(matches!(e, MediaError::Empty { .. }), "{e}");
    }

    #[test]
    fn missing_file_is_io_error() {
        let e = decode_file(Path::new("/nonexistent/dir/moh.wav")).unwrap_err();
        assert!(matches!(e, MediaError::Io { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/dir/moh.wav"));
    }

    #[test]
    fn downmix_three_channels() {
        let mut out = Vec::new();
        downmix_into(&[0.3, 0.6, 0.9, 0.0, 0.0, 0.3], 3, &mut out);
        assert!((out[0] - 0.6).abs() < 1e-6 && (out[1] - 0.1).abs() < 1e-6);
    }
}
