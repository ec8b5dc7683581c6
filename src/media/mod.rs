//! Media: decode audio files, resample them, and pre-encode them once into RTP
//! frames (G.711, G.722, Opus) that every listener on every worker shares.
//!
//! Nothing here touches a socket or a clock; [`decode::decode_file`] is the only
//! function that reads a file.

pub mod codec;
pub mod decode;
pub mod g711;
pub mod g722;
pub mod library;
pub mod opus;
pub mod resample;

pub use codec::{encode_clip, Codec, EncodedClip};
pub use decode::{decode_bytes, decode_file, Pcm};

use std::path::Path;

/// Where a listener joins a looping MOH class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinMode {
    /// Every listener hears the same live position: a pure function of time.
    #[default]
    Shared,
    /// Each listener starts at the beginning.
    FromStart,
    /// Each listener resumes where it left off when it was last on this class.
    Resume,
}

/// Why a media file could not be used or a clip could not be encoded. Every
/// variant names the file (or codec) and says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The file could not be read.
    #[error("{file}: cannot read the file: {reason}")]
    Io {
        /// File name.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// Not a format or codec rtpark decodes.
    #[error("{file}: unsupported format: {reason} (use WAV, FLAC, MP3 or Ogg/Vorbis)")]
    Unsupported {
        /// File name.
        file: String,
        /// What was not recognised.
        reason: String,
    },
    /// The file is damaged: nothing in it could be decoded.
    #[error("{file}: corrupt audio: {reason}")]
    Corrupt {
        /// File name.
        file: String,
        /// What the decoder found.
        reason: String,
    },
    /// The file decodes to zero samples.
    #[error("{file}: contains no audio")]
    Empty {
        /// File name.
        file: String,
    },
    /// The sample rate is zero or above [`decode::MAX_RATE`].
    #[error("{file}: sample rate {rate} Hz is not supported (max 384 kHz)")]
    BadRate {
        /// File name.
        file: String,
        /// The rate the file declares.
        rate: u32,
    },
    /// More than [`decode::MAX_SECONDS`] of audio.
    #[error("{file}: audio is longer than 1 hour ({secs} s or more); split or trim it")]
    TooLong {
        /// File name.
        file: String,
        /// Seconds of audio seen before giving up.
        secs: u64,
    },
    /// An encoder rejected its settings or input.
    #[error("{codec} encoder failed: {reason}")]
    Codec {
        /// Codec name.
        codec: String,
        /// The encoder's reason.
        reason: String,
    },
    /// A packet time other than 10, 20, 30 or 40 ms.
    #[error("packet time {0} ms is not supported (use 10, 20, 30 or 40)")]
    BadPtime(u32),
    /// A class or announcement that does not exist.
    #[error("unknown {what}")]
    NotFound {
        /// What was asked for, e.g. "announcement `please-hold`".
        what: String,
    },
}

impl MediaError {
    /// An [`MediaError::Io`] for `path`.
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        MediaError::Io {
            file: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// The same error, naming `file` instead (for clips decoded from memory).
    pub fn in_file(self, file: &str) -> Self {
        let file = file.to_owned();
        match self {
            MediaError::Io { reason, .. } => MediaError::Io { file, reason },
            MediaError::Unsupported { reason, .. } => MediaError::Unsupported { file, reason },
            MediaError::Corrupt { reason, .. } => MediaError::Corrupt { file, reason },
            MediaError::Empty { .. } => MediaError::Empty { file },
            MediaError::BadRate { rate, .. } => MediaError::BadRate { file, rate },
            MediaError::TooLong { secs, .. } => MediaError::TooLong { file, secs },
            other => other,
        }
    }

    /// The file the error is about, if it is about one.
    pub fn file(&self) -> Option<&str> {
        match self {
            MediaError::Io { file, .. }
            | MediaError::Unsupported { file, .. }
            | MediaError::Corrupt { file, .. }
            | MediaError::Empty { file }
            | MediaError::BadRate { file, .. }
            | MediaError::TooLong { file, .. } => Some(file),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_file_renames_file_errors_only() {
        let e = MediaError::BadRate {
            file: "(memory)".into(),
            rate: 1_000_000,
        };
        let e = e.in_file("moh/a.wav");
        assert_eq!(
            e.to_string(),
            "moh/a.wav: sample rate 1000000 Hz is not supported (max 384 kHz)"
        );
        assert_eq!(e.file(), Some("moh/a.wav"));
        assert_eq!(
            MediaError::BadPtime(25).in_file("x"),
            MediaError::BadPtime(25)
        );
    }

    #[test]
    fn io_error_names_path() {
        let e = MediaError::io(
            Path::new("/no/such.wav"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(
            e.to_string()
                .starts_with("/no/such.wav: cannot read the file: "),
            "{e}"
        );
    }
}
