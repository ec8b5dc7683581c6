//! The media library: MOH classes and announcements, decoded once, encoded once
//! per codec and packet time, and shared by every listener on every worker.
//!
//! A class is a timeline: its files in the configured order, optionally with an
//! announcement every N seconds, concatenated and encoded as one clip. The frame
//! a listener hears is then a pure function of time (DESIGN.md), whatever worker
//! it is on. Encodings live in memory and in an on-disk cache keyed by the
//! content of the files, the codec and the packet time.

use super::codec::{encode_clip, Codec, EncodedClip};
use super::decode::{decode_bytes, decode_file, Pcm};
use super::JoinMode;
use super::MediaError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_media.rs"));
}

/// Bumped whenever an encoder's output changes, so stale cache files are not used.
pub const ENCODER_VERSION: u32 = 1;

/// Packet times every codec is encoded at.
pub const PTIMES: [u32; 4] = [10, 20, 30, 40];

/// The order of a class's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// By file name.
    #[default]
    Alphabetical,
    /// Shuffled once at start-up.
    Random,
    /// Alphabetical, but the class clock starts at a random point.
    RandomStart,
}

/// How a class is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassConfig {
    /// Class name (`default` is used when none is named).
    pub name: String,
    /// Its files: a directory's audio files, or a list.
    pub files: FileSet,
    /// File order.
    pub order: Order,
    /// Where listeners join.
    pub join: JoinMode,
    /// An announcement played every `announce_every`.
    pub announce: Option<String>,
    /// Interval of the announcement.
    pub announce_every: Duration,
    /// Normalise every file to the same loudness.
    pub normalize: bool,
}

/// Where a class's audio comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum FileSet {
    /// The media embedded in the binary under `moh/<name>/`.
    Embedded(String),
    /// Every audio file in a directory.
    Directory(PathBuf),
    /// These files.
    Files(Vec<PathBuf>),
}

/// The library's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LibraryConfig {
    /// MOH classes.
    pub classes: Vec<ClassConfig>,
    /// Extra announcements (files named `<name>.<ext>`), overriding embedded ones.
    pub announcements_dir: Option<PathBuf>,
    /// On-disk cache of encoded frames; `None` disables it.
    pub cache_dir: Option<PathBuf>,
    /// Opus bitrate in bit/s.
    pub opus_bitrate: u32,
}

impl LibraryConfig {
    /// The embedded classes with their default settings.
    pub fn embedded_classes() -> Vec<ClassConfig> {
        let mut names: Vec<String> = embedded::EMBEDDED
            .iter()
            .filter_map(|(path, _)| path.strip_prefix("moh/"))
            .filter_map(|rest| rest.split_once('/').map(|(class, _)| class.to_owned()))
            .collect();
        names.dedup();
        names
            .into_iter()
            .map(|name| ClassConfig {
                files: FileSet::Embedded(name.clone()),
                name,
                order: Order::Alphabetical,
                join: JoinMode::Shared,
                announce: None,
                announce_every: Duration::from_secs(30),
                normalize: true,
            })
            .collect()
    }
}

/// One audio file, decoded once.
#[derive(Debug)]
struct Clip {
    label: String,
    hash: u64,
    pcm: Arc<Pcm>,
}

/// A class ready to play.
#[derive(Debug)]
struct Class {
    config: ClassConfig,
    clips: Vec<Arc<Clip>>,
    announce: Option<Arc<Clip>>,
    /// Identifies the timeline's content and settings (cache key).
    key: u64,
    /// Frames to shift the class clock by (random start).
    start_offset: u64,
}

/// Describes a class or an announcement for `media list`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MediaInfo {
    /// `class` or `announcement`.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Files (or embedded paths).
    pub files: Vec<String>,
    /// Duration of the timeline in seconds.
    pub duration_secs: f64,
    /// Encodings in memory or on disk, as `codec/ptime`.
    pub encoded: Vec<String>,
}

/// The media library.
#[derive(Debug)]
pub struct Library {
    classes: BTreeMap<String, Class>,
    announcements: BTreeMap<String, Arc<Clip>>,
    encoded: Mutex<HashMap<(u64, Codec, u32), Arc<EncodedClip>>>,
    /// Audio files played by path (the rtpproxy and ng protocols), decoded once
    /// and kept while their size and modification time stay the same.
    files: Mutex<HashMap<PathBuf, (FileStamp, Arc<Clip>)>>,
    cache_dir: Option<PathBuf>,
    opus_bitrate: u32,
}

/// What identifies a version of a file played by path.
type FileStamp = (u64, Option<std::time::SystemTime>);

/// Largest file or blob played by path or sent in a control message.
pub const MAX_PLAY_FILE_BYTES: u64 = 64 << 20;

fn file_stamp(path: &Path) -> Result<FileStamp, MediaError> {
    let meta = std::fs::metadata(path).map_err(|e| MediaError::io(path, e))?;
    if !meta.is_file() {
        return Err(MediaError::Io {
            file: path.display().to_string(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() > MAX_PLAY_FILE_BYTES {
        return Err(MediaError::Unsupported {
            file: path.display().to_string(),
            reason: format!(
                "{} bytes is larger than the {} MiB limit for files played by path",
                meta.len(),
                MAX_PLAY_FILE_BYTES >> 20
            ),
        });
    }
    Ok((meta.len(), meta.modified().ok()))
}

/// A class's frames in one codec with what a listener needs to join it.
#[derive(Debug, Clone)]
pub struct ClassFrames {
    /// The encoded timeline.
    pub frames: Arc<EncodedClip>,
    /// Join mode.
    pub join: JoinMode,
    /// Frames to shift the class clock by.
    pub start_offset: u64,
    /// The class actually used (after a fallback to `default`).
    pub class: String,
}

/// FNV-1a, 64-bit: a stable content hash for cache keys (not for security).
pub fn content_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn is_audio(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("wav" | "flac" | "mp3" | "ogg" | "oga")
    )
}

fn load_file(path: &Path) -> Result<Clip, MediaError> {
    let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    let pcm = decode_file(path)?;
    Ok(Clip {
        label: path.display().to_string(),
        hash: content_hash(&[&bytes]),
        pcm: Arc::new(pcm),
    })
}

fn load_embedded(rel: &str, bytes: &[u8]) -> Result<Clip, MediaError> {
    let ext = Path::new(rel).extension().and_then(|e| e.to_str());
    let pcm = decode_bytes(bytes, ext).map_err(|e| e.in_file(&format!("(embedded) {rel}")))?;
    Ok(Clip {
        label: format!("(embedded) {rel}"),
        hash: content_hash(&[bytes]),
        pcm: Arc::new(pcm),
    })
}

/// A small deterministic generator for shuffles (seeded from the content).
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

impl Library {
    /// Loads every class and announcement. Bad files are logged with the reason
    /// and left out; a class with no playable file is disabled (holds fall back
    /// to `default`). Never fails as a whole.
    pub fn load(config: &LibraryConfig) -> Library {
        let mut announcements = BTreeMap::new();
        for (rel, bytes) in embedded::EMBEDDED {
            let Some(name) = rel.strip_prefix("announcements/") else {
                continue;
            };
            let name = announcement_name(name);
            match load_embedded(rel, bytes) {
                Ok(clip) => {
                    announcements.insert(name, Arc::new(clip));
                }
                Err(e) => log::error!("media: {e}"),
            }
        }
        if let Some(dir) = &config.announcements_dir {
            for path in list_dir(dir) {
                let Some(rel) = path
                    .strip_prefix(dir)
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
                else {
                    continue;
                };
                match load_file(&path) {
                    Ok(clip) => {
                        announcements.insert(announcement_name(&rel), Arc::new(clip));
                    }
                    Err(e) => log::error!("media: announcement skipped: {e}"),
                }
            }
        }
        let mut classes = BTreeMap::new();
        for cc in &config.classes {
            let mut clips: Vec<Arc<Clip>> = Vec::new();
            match &cc.files {
                FileSet::Embedded(class) => {
                    let prefix = format!("moh/{class}/");
                    for (rel, bytes) in embedded::EMBEDDED
                        .iter()
                        .filter(|(r, _)| r.starts_with(&prefix))
                    {
                        match load_embedded(rel, bytes) {
                            Ok(c) => clips.push(Arc::new(c)),
                            Err(e) => log::error!("media: class {}: file skipped: {e}", cc.name),
                        }
                    }
                }
                FileSet::Directory(dir) => {
                    let files = list_dir(dir);
                    if files.is_empty() {
                        log::error!(
                            "media: class {}: no audio files (wav, flac, mp3, ogg) in {}",
                            cc.name,
                            dir.display()
                        );
                    }
                    for path in files {
                        match load_file(&path) {
                            Ok(c) => clips.push(Arc::new(c)),
                            Err(e) => log::error!("media: class {}: file skipped: {e}", cc.name),
                        }
                    }
                }
                FileSet::Files(files) => {
                    for path in files {
                        match load_file(path) {
                            Ok(c) => clips.push(Arc::new(c)),
                            Err(e) => log::error!("media: class {}: file skipped: {e}", cc.name),
                        }
                    }
                }
            }
            if clips.is_empty() {
                log::error!(
                    "media: class {} has no playable file and is disabled",
                    cc.name
                );
                continue;
            }
            let mut seed = content_hash(&[cc.name.as_bytes()]) | 1;
            match cc.order {
                Order::Alphabetical | Order::RandomStart => {
                    clips.sort_by(|a, b| a.label.cmp(&b.label))
                }
                Order::Random => {
                    clips.sort_by(|a, b| a.label.cmp(&b.label));
                    // Seeded by the clock so each start shuffles anew.
                    seed ^= std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.as_nanos() as u64);
                    for i in (1..clips.len()).rev() {
                        let j = (xorshift(&mut seed) % (i as u64 + 1)) as usize;
                        clips.swap(i, j);
                    }
                }
            }
            let announce = cc
                .announce
                .as_ref()
                .and_then(|name| match announcements.get(name) {
                    Some(a) => Some(a.clone()),
                    None => {
                        log::error!(
                            "media: class {}: announcement {name} not found; playing without it",
                            cc.name
                        );
                        None
                    }
                });
            let mut key_parts: Vec<Vec<u8>> = clips
                .iter()
                .map(|c| c.hash.to_le_bytes().to_vec())
                .collect();
            key_parts.push(
                announce
                    .as_ref()
                    .map_or(0, |a| a.hash)
                    .to_le_bytes()
                    .to_vec(),
            );
            key_parts.push(cc.announce_every.as_millis().to_le_bytes().to_vec());
            key_parts.push(vec![cc.normalize as u8]);
            let refs: Vec<&[u8]> = key_parts.iter().map(|v| v.as_slice()).collect();
            let key = content_hash(&refs);
            let start_offset = if cc.order == Order::RandomStart {
                let mut s = seed
                    ^ std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(7, |d| d.as_nanos() as u64);
                xorshift(&mut s)
            } else {
                0
            };
            let duration: f64 = clips
                .iter()
                .map(|c| c.pcm.samples.len() as f64 / c.pcm.rate.max(1) as f64)
                .sum();
            log::info!(
                "media: class {} ready: {} file(s), {duration:.1} s",
                cc.name,
                clips.len()
            );
            classes.insert(
                cc.name.clone(),
                Class {
                    config: cc.clone(),
                    clips,
                    announce,
                    key,
                    start_offset,
                },
            );
        }
        log::info!("media: {} announcement(s) ready", announcements.len());
        Library {
            classes,
            announcements,
            encoded: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            cache_dir: config.cache_dir.clone(),
            opus_bitrate: config.opus_bitrate,
        }
    }

    /// An audio file's frames in `codec` at `ptime`: decoded once (again only
    /// when the file changes), encoded once, cached like any MOH file.
    pub fn file(
        &self,
        path: &Path,
        codec: Codec,
        ptime: u32,
    ) -> Result<Arc<EncodedClip>, MediaError> {
        let stamp = file_stamp(path)?;
        let known = self.files.lock().ok().and_then(|m| {
            m.get(path)
                .filter(|(s, _)| *s == stamp)
                .map(|(_, c)| c.clone())
        });
        let clip = match known {
            Some(c) => c,
            None => {
                let clip = Arc::new(load_file(path)?);
                if let Ok(mut m) = self.files.lock() {
                    m.insert(path.to_owned(), (stamp, clip.clone()));
                }
                clip
            }
        };
        self.encoded(clip.hash, codec, ptime, || Ok(clip.pcm.as_ref().clone()))
    }

    /// Audio sent in a control message (the ng protocol's `blob`), in `codec` at `ptime`.
    pub fn blob(
        &self,
        bytes: &[u8],
        codec: Codec,
        ptime: u32,
    ) -> Result<Arc<EncodedClip>, MediaError> {
        if bytes.len() as u64 > MAX_PLAY_FILE_BYTES {
            return Err(MediaError::Unsupported {
                file: "(blob)".into(),
                reason: format!("larger than the {} MiB limit", MAX_PLAY_FILE_BYTES >> 20),
            });
        }
        let hash = content_hash(&[b"blob", bytes]);
        self.encoded(hash, codec, ptime, || decode_bytes(bytes, None))
    }

    /// A prompt pre-encoded in rtpproxy's raw layout: `<base>.<pt>` holds bare
    /// G.711 or G.722 payload, packetised here at `ptime`. `None` when there is
    /// no such file for `codec`.
    pub fn raw_prompt(
        &self,
        base: &Path,
        codec: Codec,
        ptime: u32,
    ) -> Option<Result<Arc<EncodedClip>, MediaError>> {
        let pt = match codec {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
            Codec::Opus => return None,
        };
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{pt}"));
        let path = PathBuf::from(name);
        if !path.is_file() {
            return None;
        }
        Some(self.raw_file(&path, codec, ptime))
    }

    fn raw_file(
        &self,
        path: &Path,
        codec: Codec,
        ptime: u32,
    ) -> Result<Arc<EncodedClip>, MediaError> {
        file_stamp(path)?;
        let bytes = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
        // 64 kbit/s for all three codecs: 8 bytes per millisecond.
        let frame = 8 * ptime as usize;
        if bytes.len() < frame {
            return Err(MediaError::Empty {
                file: path.display().to_string(),
            });
        }
        let hash = content_hash(&[b"raw", &bytes]);
        let key = (hash, codec, ptime);
        if let Some(hit) = self.encoded.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(hit);
        }
        let count = bytes.len() / frame;
        let frames = (0..count)
            .map(|i| ((i * frame) as u32, frame as u32))
            .collect();
        let clip = Arc::new(EncodedClip {
            codec,
            ptime_ms: ptime,
            frame_count: count,
            data: bytes::Bytes::from(bytes),
            frames,
        });
        if let Ok(mut m) = self.encoded.lock() {
            m.insert(key, clip.clone());
        }
        Ok(clip)
    }

    /// Whether a class is loaded and playable.
    pub fn has_class(&self, name: &str) -> bool {
        self.classes.contains_key(name)
    }

    /// Whether an announcement exists.
    pub fn has_announcement(&self, name: &str) -> bool {
        self.announcements.contains_key(name)
    }

    /// A class's frames in `codec` at `ptime`, encoding (or reading the cache) on
    /// first use. An unknown or disabled class falls back to `default`.
    pub fn class(&self, name: &str, codec: Codec, ptime: u32) -> Result<ClassFrames, MediaError> {
        let class = match self.classes.get(name) {
            Some(c) => c,
            None => {
                let fallback = self
                    .classes
                    .get("default")
                    .ok_or_else(|| MediaError::NotFound {
                        what: format!("MOH class `{name}` (and no `default` class is playable)"),
                    })?;
                log::warn!("media: class {name} is not available; using default");
                fallback
            }
        };
        let frames = self.encoded(class.key, codec, ptime, || self.timeline(class, codec))?;
        Ok(ClassFrames {
            frames,
            join: class.config.join,
            start_offset: class.start_offset,
            class: class.config.name.clone(),
        })
    }

    /// An announcement's frames in `codec` at `ptime`.
    pub fn announcement(
        &self,
        name: &str,
        codec: Codec,
        ptime: u32,
    ) -> Result<Arc<EncodedClip>, MediaError> {
        let clip = self
            .announcements
            .get(name)
            .ok_or_else(|| MediaError::NotFound {
                what: format!("announcement `{name}`"),
            })?;
        self.encoded(clip.hash, codec, ptime, || Ok(clip.pcm.as_ref().clone()))
    }

    /// One second of silence in `codec` at `ptime` (for the peer of a held leg).
    pub fn silence(&self, codec: Codec, ptime: u32) -> Result<Arc<EncodedClip>, MediaError> {
        self.encoded(0x5117_3ace, codec, ptime, || {
            Ok(Pcm {
                rate: 8000,
                samples: vec![0.0; 8000],
            })
        })
    }

    /// Encodes every class and announcement at `ptime` in every codec, logging
    /// failures; run at start-up so the first hold does not wait for an encoder.
    pub fn prewarm(&self, ptime: u32) {
        let started = std::time::Instant::now();
        for codec in Codec::ALL {
            for name in self.classes.keys() {
                if let Err(e) = self.class(name, codec, ptime) {
                    log::error!("media: class {name} in {}: {e}", codec.name());
                }
            }
            for name in self.announcements.keys() {
                if let Err(e) = self.announcement(name, codec, ptime) {
                    log::error!("media: announcement {name} in {}: {e}", codec.name());
                }
            }
        }
        log::info!(
            "media: encodings at {ptime} ms ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    /// Encodes every class and announcement in every codec and packet time
    /// (fills the disk cache); returns how many encodings exist.
    pub fn encode_all(&self) -> Result<usize, MediaError> {
        let mut n = 0;
        for codec in Codec::ALL {
            for ptime in PTIMES {
                for name in self.classes.keys() {
                    self.class(name, codec, ptime)?;
                    n += 1;
                }
                for name in self.announcements.keys() {
                    self.announcement(name, codec, ptime)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Classes and announcements with their files, durations and encodings.
    pub fn list(&self) -> Vec<MediaInfo> {
        let encodings = |key: u64| -> Vec<String> {
            let mut v = Vec::new();
            for codec in Codec::ALL {
                for ptime in PTIMES {
                    let in_memory = self
                        .encoded
                        .lock()
                        .map(|m| m.contains_key(&(key, codec, ptime)))
                        .unwrap_or(false);
                    let on_disk = self
                        .cache_path(key, codec, ptime)
                        .is_some_and(|p| p.exists());
                    if in_memory || on_disk {
                        v.push(format!("{}/{ptime}", codec.name()));
                    }
                }
            }
            v
        };
        let mut out = Vec::new();
        for class in self.classes.values() {
            out.push(MediaInfo {
                kind: "class",
                name: class.config.name.clone(),
                files: class.clips.iter().map(|c| c.label.clone()).collect(),
                duration_secs: class.clips.iter().map(|c| c.pcm.duration_secs()).sum(),
                encoded: encodings(class.key),
            });
        }
        for (name, clip) in &self.announcements {
            out.push(MediaInfo {
                kind: "announcement",
                name: name.clone(),
                files: vec![clip.label.clone()],
                duration_secs: clip.pcm.duration_secs(),
                encoded: encodings(clip.hash),
            });
        }
        out
    }

    /// The class's whole timeline as one PCM signal at the codec's sample rate.
    fn timeline(&self, class: &Class, codec: Codec) -> Result<Pcm, MediaError> {
        let rate = codec.sample_rate();
        let mut music: Vec<f32> = Vec::new();
        for clip in &class.clips {
            let mut pcm = clip.pcm.resampled(rate);
            if class.config.normalize {
                normalize(&mut pcm.samples);
            }
            music.extend_from_slice(&pcm.samples);
        }
        let Some(announce) = &class.announce else {
            return Ok(Pcm {
                rate,
                samples: music,
            });
        };
        let mut ann = announce.pcm.resampled(rate).samples;
        if class.config.normalize {
            normalize(&mut ann);
        }
        let chunk = (class.config.announce_every.as_secs_f64() * rate as f64) as usize;
        let mut samples =
            Vec::with_capacity(music.len() + ann.len() * (music.len() / chunk.max(1) + 1));
        for part in music.chunks(chunk.max(rate as usize)) {
            samples.extend_from_slice(part);
            samples.extend_from_slice(&ann);
        }
        Ok(Pcm { rate, samples })
    }

    fn encoded(
        &self,
        key: u64,
        codec: Codec,
        ptime: u32,
        source: impl FnOnce() -> Result<Pcm, MediaError>,
    ) -> Result<Arc<EncodedClip>, MediaError> {
        if !PTIMES.contains(&ptime) {
            return Err(MediaError::BadPtime(ptime));
        }
        let map_key = (key, codec, ptime);
        if let Some(hit) = self
            .encoded
            .lock()
            .ok()
            .and_then(|m| m.get(&map_key).cloned())
        {
            return Ok(hit);
        }
        let path = self.cache_path(key, codec, ptime);
        let from_disk = path.as_deref().and_then(|p| match std::fs::read(p) {
            Ok(bytes) => match EncodedClip::from_cache_bytes(&bytes) {
                Some(clip) if clip.codec == codec && clip.ptime_ms == ptime => Some(clip),
                _ => {
                    log::warn!(
                        "media: cache file {} is unreadable; re-encoding",
                        p.display()
                    );
                    None
                }
            },
            Err(_) => None,
        });
        let clip = match from_disk {
            Some(c) => c,
            None => {
                let pcm = source()?;
                let clip = encode_clip(&pcm, codec, ptime, self.opus_bitrate)?;
                if let Some(p) = &path {
                    if let Err(e) = write_atomic(p, &clip.to_cache_bytes()) {
                        log::warn!("media: cannot write cache file {}: {e}", p.display());
                    }
                }
                clip
            }
        };
        let clip = Arc::new(clip);
        if let Ok(mut m) = self.encoded.lock() {
            m.insert(map_key, clip.clone());
        }
        Ok(clip)
    }

    fn cache_path(&self, key: u64, codec: Codec, ptime: u32) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let bitrate = if codec == Codec::Opus {
            self.opus_bitrate
        } else {
            0
        };
        Some(dir.join(format!(
            "{key:016x}-{}-{ptime}ms-{bitrate}-v{ENCODER_VERSION}.frames",
            codec.name()
        )))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// Scales to an RMS of −20 dBFS, never past a −1 dBFS peak.
fn normalize(samples: &mut [f32]) {
    if samples.is_empty() {
        return;
    }
    let (sum, peak) = samples.iter().fold((0f64, 0f32), |(s, p), &x| {
        (s + (x as f64) * (x as f64), p.max(x.abs()))
    });
    let rms = (sum / samples.len() as f64).sqrt() as f32;
    if rms < 1e-6 || peak < 1e-6 {
        return;
    }
    let gain = (0.1 / rms).min(0.891 / peak);
    for s in samples {
        *s *= gain;
    }
}

/// `digits/7.flac` → `digit-7`; `please-hold.flac` → `please-hold`.
fn announcement_name(rel: &str) -> String {
    let p = Path::new(rel);
    let stem = p
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(rel)
        .to_owned();
    match p
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|d| d.to_str())
    {
        Some("digits") => format!("digit-{stem}"),
        _ => stem,
    }
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        log::error!("media: cannot read directory {}", dir.display());
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(list_dir(&p));
        } else if is_audio(&p) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_names() {
        assert_eq!(announcement_name("digits/7.flac"), "digit-7");
        assert_eq!(announcement_name("please-hold.flac"), "please-hold");
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(content_hash(&[b"abc"]), content_hash(&[b"abc"]));
        assert_ne!(content_hash(&[b"ab", b"c"]), content_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn normalize_limits_peak() {
        let mut s = vec![0.0, 0.9, -0.9, 0.0];
        normalize(&mut s);
        assert!(s.iter().all(|x| x.abs() <= 0.8911));
    }
}
