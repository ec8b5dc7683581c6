//! Configuration: embedded defaults, an optional TOML file, command-line overrides.
//!
//! Every key has a default, so `rtpark` runs with no file at all. Unknown keys are
//! errors (a typo must not silently fall back to a default).

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message names the key).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and key.
        message: String,
    },
    /// A key has a value outside what it accepts.
    #[error("invalid value for `{key}`: {problem}")]
    Invalid {
        /// The key, as written in the file or flag.
        key: &'static str,
        /// What is wrong and what is accepted.
        problem: String,
    },
}

/// Which packet backend the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendChoice {
    /// io_uring where the kernel allows it, else epoll.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// epoll.
    Epoll,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "io_uring" | "io-uring" | "uring" => Ok(BackendChoice::IoUring),
            "epoll" => Ok(BackendChoice::Epoll),
            other => Err(format!(
                "unknown backend `{other}`; use auto, io_uring or epoll"
            )),
        }
    }
}

/// An address to listen on for control connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(ListenAddr::Unix(PathBuf::from(path))),
            _ => Err(format!(
                "`{s}` is not a listen address; write unix:/path/to/socket"
            )),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where a SIP-core protocol (rtpproxy or ng) listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlSocket {
    /// A Unix stream socket, one command per connection.
    Unix(PathBuf),
    /// A Unix stream socket carrying newline-framed commands with cookies (rtpproxy only).
    Cunix(PathBuf),
    /// A UDP socket; every command carries a cookie.
    Udp(SocketAddr),
}

impl ControlSocket {
    /// Parses `unix:PATH`, `cunix:PATH` (when `cunix` is allowed) or
    /// `udp:IP:PORT` (also a bare `IP:PORT`, as rtpengine accepts).
    pub fn parse(s: &str, cunix: bool) -> Result<ControlSocket, String> {
        let forms = if cunix {
            "unix:/path, cunix:/path or udp:IP:PORT"
        } else {
            "unix:/path or udp:IP:PORT"
        };
        let bad = || format!("`{s}` is not a control socket; write {forms}");
        if let Some(path) = s.strip_prefix("unix:") {
            return match path {
                "" => Err(bad()),
                p => Ok(ControlSocket::Unix(PathBuf::from(p))),
            };
        }
        if let Some(path) = s.strip_prefix("cunix:") {
            return match path {
                "" => Err(bad()),
                _ if !cunix => Err(bad()),
                p => Ok(ControlSocket::Cunix(PathBuf::from(p))),
            };
        }
        let addr = s.strip_prefix("udp:").unwrap_or(s);
        addr.parse::<SocketAddr>()
            .map(ControlSocket::Udp)
            .map_err(|_| bad())
    }
}

impl std::fmt::Display for ControlSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlSocket::Unix(p) => write!(f, "unix:{}", p.display()),
            ControlSocket::Cunix(p) => write!(f, "cunix:{}", p.display()),
            ControlSocket::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

/// The local media address and the one written into SDP (rtpengine's `IP!ADVERTISED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    /// Address the RTP sockets bind to.
    pub bind: IpAddr,
    /// Address given to peers (e.g. a public address in front of NAT).
    pub advertised: IpAddr,
}

impl std::str::FromStr for Interface {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (bind, adv) = match s.split_once('!') {
            Some((b, a)) => (b, Some(a)),
            None => (s, None),
        };
        let bind: IpAddr = bind
            .parse()
            .map_err(|_| format!("`{bind}` is not an IP address (write IP or IP!ADVERTISED_IP)"))?;
        let advertised = match adv {
            Some(a) => a
                .parse()
                .map_err(|_| format!("advertised address `{a}` is not an IP address"))?,
            None => bind,
        };
        Ok(Interface { bind, advertised })
    }
}

/// The file schema: every field optional, defaults below.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    interface: Option<String>,
    port_min: Option<u32>,
    port_max: Option<u32>,
    workers: Option<usize>,
    listen_native: Option<String>,
    listen_rtpproxy: Option<Vec<String>>,
    listen_ng: Option<Vec<String>>,
    backend: Option<String>,
    log_level: Option<String>,
    media_timeout: Option<u64>,
    silent_timeout: Option<u64>,
    relatch_window_ms: Option<u64>,
    connect_latched: Option<bool>,
    warm_ports: Option<usize>,
    io_uring_entries: Option<u32>,
    io_uring_buffers: Option<u32>,
    opus_bitrate: Option<u32>,
    ptime: Option<u32>,
    hold_peer_hears: Option<String>,
    cache_dir: Option<String>,
    announcements_dir: Option<String>,
    #[serde(default)]
    moh: std::collections::BTreeMap<String, FileClass>,
    #[serde(default)]
    lot: std::collections::BTreeMap<String, FileLot>,
}

/// One `[lot.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLot {
    slots: Option<String>,
    policy: Option<String>,
    timeout: Option<u64>,
    final_timeout: Option<u64>,
    moh_class: Option<String>,
    announce_slot: Option<bool>,
    courtesy_tone: Option<String>,
}

/// One `[moh.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClass {
    directory: Option<String>,
    files: Option<Vec<String>>,
    order: Option<String>,
    join: Option<String>,
    announce: Option<String>,
    announce_every: Option<u64>,
    normalize: Option<bool>,
}

/// Command-line overrides (each `None` keeps the file's or the default value).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--interface IP[!ADVERTISED]`.
    pub interface: Option<String>,
    /// `--port-min N`.
    pub port_min: Option<u32>,
    /// `--port-max N`.
    pub port_max: Option<u32>,
    /// `--workers N`.
    pub workers: Option<usize>,
    /// `--warm-ports N`.
    pub warm_ports: Option<usize>,
    /// `--listen-native unix:PATH`.
    pub listen_native: Option<String>,
    /// `--listen-rtpproxy unix:PATH|cunix:PATH|udp:IP:PORT`, repeatable.
    pub listen_rtpproxy: Vec<String>,
    /// `--listen-ng udp:IP:PORT|unix:PATH`, repeatable.
    pub listen_ng: Vec<String>,
    /// `--backend auto|io_uring|epoll`.
    pub backend: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Media interface.
    pub interface: Interface,
    /// Lowest RTP port (rounded up to even).
    pub port_min: u16,
    /// Highest port usable for RTCP (the last pair is `port_max-1, port_max` or lower).
    pub port_max: u16,
    /// Worker threads (0 in the file means one per core).
    pub workers: usize,
    /// Native control socket.
    pub listen_native: ListenAddr,
    /// rtpproxy-protocol sockets.
    pub listen_rtpproxy: Vec<ControlSocket>,
    /// ng-protocol sockets.
    pub listen_ng: Vec<ControlSocket>,
    /// Packet backend.
    pub backend: BackendChoice,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or an env_logger spec).
    pub log_level: String,
    /// No RTP for this long raises a media-timeout event.
    pub media_timeout: Duration,
    /// The media timeout for legs marked silent (e.g. on hold).
    pub silent_timeout: Duration,
    /// How long after a control update a leg may re-latch to a new source.
    pub relatch_window: Duration,
    /// `connect()` latched sockets (kernel drops foreign sources; see README).
    pub connect_latched: bool,
    /// Free port pairs kept bound between calls (`None`: the whole range, as far
    /// as the descriptor limit allows; 0 closes ports when calls end).
    pub warm_ports: Option<usize>,
    /// io_uring submission queue entries per worker.
    pub io_uring_entries: u32,
    /// io_uring provided receive buffers per worker (a power of two).
    pub io_uring_buffers: u32,
    /// Packet time of media played to legs that do not ask for one (ms).
    pub ptime: u32,
    /// Whether the peer of a held leg hears silence frames (else nothing).
    pub hold_peer_silence: bool,
    /// The media library: classes, announcements, cache.
    pub media: crate::media::library::LibraryConfig,
    /// Parking lots.
    pub lots: Vec<crate::session::park::LotConfig>,
}

/// The default directory of the encoded-media cache.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/rtpark";

/// The default native control socket.
pub const DEFAULT_NATIVE_SOCKET: &str = "/run/rtpark/native.sock";

impl Default for Config {
    fn default() -> Self {
        // unwrap: constant, known-good literals.
        Config {
            interface: "127.0.0.1".parse().unwrap(),
            port_min: 30000,
            port_max: 40000,
            workers: 0,
            listen_native: ListenAddr::Unix(PathBuf::from(DEFAULT_NATIVE_SOCKET)),
            listen_rtpproxy: Vec::new(),
            listen_ng: Vec::new(),
            backend: BackendChoice::Auto,
            log_level: "info".into(),
            media_timeout: Duration::from_secs(60),
            silent_timeout: Duration::from_secs(3600),
            relatch_window: Duration::from_millis(3000),
            connect_latched: true,
            warm_ports: None,
            io_uring_entries: 4096,
            io_uring_buffers: 1024,
            ptime: 20,
            hold_peer_silence: false,
            media: crate::media::library::LibraryConfig {
                classes: crate::media::library::LibraryConfig::embedded_classes(),
                announcements_dir: None,
                cache_dir: Some(PathBuf::from(DEFAULT_CACHE_DIR)),
                opus_bitrate: 32000,
            },
            lots: vec![crate::session::park::LotConfig::default()],
        }
    }
}

impl Config {
    /// Defaults, then the file named by `--config` (if any), then the flags.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::from_parts(file, overrides)
    }

    /// Parses a TOML document (without flags); used by tests and `--config`.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file = parse_toml(text, Path::new("<inline>"))?;
        Self::from_parts(file, &Overrides::default())
    }

    fn from_parts(file: FileConfig, o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(s) = o.interface.as_ref().or(file.interface.as_ref()) {
            c.interface = s.parse().map_err(|problem| ConfigError::Invalid {
                key: "interface (--interface)",
                problem,
            })?;
        }
        let port_min = o.port_min.or(file.port_min).unwrap_or(c.port_min as u32);
        let port_max = o.port_max.or(file.port_max).unwrap_or(c.port_max as u32);
        c.port_min = port(port_min, "port_min (--port-min)")?;
        c.port_max = port(port_max, "port_max (--port-max)")?;
        if c.port_min < 1024 {
            return Err(ConfigError::Invalid {
                key: "port_min (--port-min)",
                problem: format!("{port_min} is a privileged port; use 1024 or above"),
            });
        }
        // Round the start up to even so every pair is (even RTP, odd RTCP).
        let first = u32::from(c.port_min) + u32::from(c.port_min & 1);
        if first + 1 > u32::from(c.port_max) {
            return Err(ConfigError::Invalid {
                key: "port_max (--port-max)",
                problem: format!(
                    "range {port_min}–{port_max} holds no even/odd port pair; make port-max at least port-min + 1"
                ),
            });
        }
        if let Some(w) = o.workers.or(file.workers) {
            if w > 1024 {
                return Err(ConfigError::Invalid {
                    key: "workers (--workers)",
                    problem: format!("{w} workers is more than 1024; use 0 for one per core"),
                });
            }
            c.workers = w;
        }
        if let Some(s) = o.listen_native.as_ref().or(file.listen_native.as_ref()) {
            c.listen_native = s.parse().map_err(|problem| ConfigError::Invalid {
                key: "listen_native (--listen-native)",
                problem,
            })?;
        }
        // Flags replace the file's list rather than adding to it.
        let rtpproxy = match &o.listen_rtpproxy[..] {
            [] => file.listen_rtpproxy.clone().unwrap_or_default(),
            flags => flags.to_vec(),
        };
        for s in &rtpproxy {
            c.listen_rtpproxy
                .push(
                    ControlSocket::parse(s, true).map_err(|problem| ConfigError::Invalid {
                        key: "listen_rtpproxy (--listen-rtpproxy)",
                        problem,
                    })?,
                );
        }
        let ng = match &o.listen_ng[..] {
            [] => file.listen_ng.clone().unwrap_or_default(),
            flags => flags.to_vec(),
        };
        for s in &ng {
            c.listen_ng
                .push(
                    ControlSocket::parse(s, false).map_err(|problem| ConfigError::Invalid {
                        key: "listen_ng (--listen-ng)",
                        problem,
                    })?,
                );
        }
        if let Some(s) = o.backend.as_ref().or(file.backend.as_ref()) {
            c.backend = s.parse().map_err(|problem| ConfigError::Invalid {
                key: "backend (--backend)",
                problem,
            })?;
        }
        if let Some(s) = o.log_level.as_ref().or(file.log_level.as_ref()) {
            c.log_level = s.clone();
        }
        if let Some(s) = file.media_timeout {
            c.media_timeout = secs(s, "media_timeout")?;
        }
        if let Some(s) = file.silent_timeout {
            c.silent_timeout = secs(s, "silent_timeout")?;
        }
        if let Some(ms) = file.relatch_window_ms {
            c.relatch_window = Duration::from_millis(ms);
        }
        if let Some(n) = o.warm_ports.or(file.warm_ports) {
            c.warm_ports = Some(n);
        }
        if let Some(b) = file.connect_latched {
            c.connect_latched = b;
        }
        if let Some(n) = file.io_uring_entries {
            if !(64..=32768).contains(&n) {
                return Err(ConfigError::Invalid {
                    key: "io_uring_entries",
                    problem: format!("{n} is outside 64–32768"),
                });
            }
            c.io_uring_entries = n;
        }
        if let Some(n) = file.io_uring_buffers {
            if !n.is_power_of_two() || !(64..=32768).contains(&n) {
                return Err(ConfigError::Invalid {
                    key: "io_uring_buffers",
                    problem: format!("{n} must be a power of two in 64–32768"),
                });
            }
            c.io_uring_buffers = n;
        }
        if let Some(b) = file.opus_bitrate {
            if !(6000..=510_000).contains(&b) {
                return Err(ConfigError::Invalid {
                    key: "opus_bitrate",
                    problem: format!("{b} bit/s is outside Opus's 6000–510000"),
                });
            }
            c.media.opus_bitrate = b;
        }
        if let Some(p) = file.ptime {
            if !crate::media::library::PTIMES.contains(&p) {
                return Err(ConfigError::Invalid {
                    key: "ptime",
                    problem: format!("{p} ms is not one of 10, 20, 30, 40"),
                });
            }
            c.ptime = p;
        }
        if let Some(h) = file.hold_peer_hears {
            c.hold_peer_silence = match h.as_str() {
                "nothing" => false,
                "silence" => true,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "hold_peer_hears",
                        problem: format!("`{other}` is neither \"nothing\" nor \"silence\""),
                    })
                }
            };
        }
        if let Some(d) = file.cache_dir {
            c.media.cache_dir = (!d.is_empty()).then(|| PathBuf::from(d));
        }
        if let Some(d) = file.announcements_dir {
            c.media.announcements_dir = Some(PathBuf::from(d));
        }
        for (name, fl) in file.lot {
            let lot = parking_lot(&name, fl)?;
            c.lots.retain(|l| l.name != name);
            c.lots.push(lot);
        }
        for (name, fc) in file.moh {
            let class = media_class(&name, fc)?;
            c.media.classes.retain(|k| k.name != name);
            c.media.classes.push(class);
        }
        Ok(c)
    }

    /// The worker count to run: the configured number, or one per core.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The first RTP port (even) of the range.
    pub fn first_rtp_port(&self) -> u16 {
        self.port_min + (self.port_min & 1)
    }
}

fn parking_lot(name: &str, fl: FileLot) -> Result<crate::session::park::LotConfig, ConfigError> {
    use crate::session::park::{CourtesyTone, LotConfig, SlotPolicy};
    let mut lot = LotConfig {
        name: name.to_owned(),
        ..LotConfig::default()
    };
    if let Some(range) = fl.slots {
        let parsed = range.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?))
        });
        let Some((a, b)) = parsed else {
            return Err(ConfigError::Invalid {
                key: "lot.<name>.slots",
                problem: format!("lot `{name}`: `{range}` is not a range like \"701-720\""),
            });
        };
        lot.slots = a..=b;
    }
    lot.policy = match fl.policy.as_deref() {
        None | Some("lowest_free") => SlotPolicy::LowestFree,
        Some("next_after_last") => SlotPolicy::NextAfterLast,
        Some("random") => SlotPolicy::Random,
        Some(p) => {
            return Err(ConfigError::Invalid {
                key: "lot.<name>.policy",
                problem: format!(
                    "lot `{name}`: `{p}` is not lowest_free, next_after_last or random"
                ),
            })
        }
    };
    if let Some(t) = fl.timeout {
        lot.timeout = Duration::from_secs(t);
    }
    if let Some(t) = fl.final_timeout {
        lot.final_timeout = Duration::from_secs(t);
    }
    if let Some(m) = fl.moh_class {
        lot.moh_class = m;
    }
    if let Some(a) = fl.announce_slot {
        lot.announce_slot = a;
    }
    lot.courtesy_tone = match fl.courtesy_tone.as_deref() {
        None | Some("none") => CourtesyTone::None,
        Some("parked") => CourtesyTone::Parked,
        Some("retriever") => CourtesyTone::Retriever,
        Some("both") => CourtesyTone::Both,
        Some(t) => {
            return Err(ConfigError::Invalid {
                key: "lot.<name>.courtesy_tone",
                problem: format!("lot `{name}`: `{t}` is not none, parked, retriever or both"),
            })
        }
    };
    lot.validate().map_err(|e| ConfigError::Invalid {
        key: "lot.<name>",
        problem: e.to_string(),
    })?;
    Ok(lot)
}

fn media_class(
    name: &str,
    fc: FileClass,
) -> Result<crate::media::library::ClassConfig, ConfigError> {
    use crate::media::library::{ClassConfig, FileSet, Order};
    use crate::media::JoinMode;
    let files = match (fc.directory, fc.files) {
        (Some(d), None) => FileSet::Directory(PathBuf::from(d)),
        (None, Some(f)) if !f.is_empty() => {
            FileSet::Files(f.into_iter().map(PathBuf::from).collect())
        }
        (None, None) if name == "default" || name == "calm" => FileSet::Embedded(name.to_owned()),
        _ => {
            return Err(ConfigError::Invalid {
                key: "moh.<class>",
                problem: format!(
                    "class `{name}` needs exactly one of `directory` or a non-empty `files`"
                ),
            })
        }
    };
    let order = match fc.order.as_deref() {
        None | Some("alphabetical") => Order::Alphabetical,
        Some("random") => Order::Random,
        Some("random_start") => Order::RandomStart,
        Some(o) => {
            return Err(ConfigError::Invalid {
                key: "moh.<class>.order",
                problem: format!(
                    "class `{name}`: `{o}` is not alphabetical, random or random_start"
                ),
            })
        }
    };
    let join = match fc.join.as_deref() {
        None | Some("shared") => JoinMode::Shared,
        Some("start") => JoinMode::FromStart,
        Some("resume") => JoinMode::Resume,
        Some(j) => {
            return Err(ConfigError::Invalid {
                key: "moh.<class>.join",
                problem: format!("class `{name}`: `{j}` is not shared, start or resume"),
            })
        }
    };
    let every = fc.announce_every.unwrap_or(30);
    if every == 0 {
        return Err(ConfigError::Invalid {
            key: "moh.<class>.announce_every",
            problem: format!("class `{name}`: the interval must be at least 1 second"),
        });
    }
    Ok(ClassConfig {
        name: name.to_owned(),
        files,
        order,
        join,
        announce: fc.announce,
        announce_every: Duration::from_secs(every),
        normalize: fc.normalize.unwrap_or(true),
    })
}

fn port(v: u32, key: &'static str) -> Result<u16, ConfigError> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ConfigError::Invalid {
            key,
            problem: format!("{v} is not a UDP port (1–65535)"),
        })
}

fn secs(v: u64, key: &'static str) -> Result<Duration, ConfigError> {
    if v == 0 || v > 86_400 * 7 {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("{v} s is outside 1–604800 seconds"),
        });
    }
    Ok(Duration::from_secs(v))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text, path)
}

fn parse_toml(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(&Overrides::default()).unwrap();
        assert_eq!((c.port_min, c.port_max), (30000, 40000));
        assert_eq!(c.listen_native.to_string(), "unix:/run/rtpark/native.sock");
    }

    #[test]
    fn warm_ports_from_file_or_flag() {
        assert_eq!(Config::from_toml("").unwrap().warm_ports, None);
        assert_eq!(
            Config::from_toml("warm_ports = 0").unwrap().warm_ports,
            Some(0)
        );
        let file: FileConfig = toml::from_str("warm_ports = 10").unwrap();
        let o = Overrides {
            warm_ports: Some(20),
            ..Default::default()
        };
        assert_eq!(Config::from_parts(file, &o).unwrap().warm_ports, Some(20));
        let e = Config::from_toml("warm_ports = -1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("warm_ports"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig = toml::from_str("port_min = 20000\nworkers = 3").unwrap();
        let o = Overrides {
            port_min: Some(21001),
            interface: Some("127.0.0.1!203.0.113.7".into()),
            ..Default::default()
        };
        let c = Config::from_parts(file, &o).unwrap();
        assert_eq!(c.port_min, 21001);
        assert_eq!(c.first_rtp_port(), 21002);
        assert_eq!(c.workers, 3);
        assert_eq!(c.interface.advertised.to_string(), "203.0.113.7");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("prot_min = 3").unwrap_err().to_string();
        assert!(e.contains("prot_min"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_toml("port_min = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("port_min"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (toml, key) in [
            ("port_min = 70000", "port_min"),
            ("port_min = 80", "port_min"),
            ("port_min = 30000\nport_max = 30000", "port_max"),
            ("port_min = 65535\nport_max = 65535", "port_max"),
            ("interface = \"nope\"", "interface"),
            ("listen_native = \"tcp:1\"", "listen_native"),
            ("backend = \"kqueue\"", "backend"),
            ("media_timeout = 0", "media_timeout"),
            ("io_uring_buffers = 1000", "io_uring_buffers"),
        ] {
            let e = Config::from_toml(toml).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
