//! rtpark as the engine under test: start it, wait for its native control socket,
//! and set calls up over the native protocol (JSON lines, pipelined).

use crate::engine::{pin_and_tie, EngineProcess};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to start rtpark.
pub struct RtparkConfig<'a> {
    /// The binary.
    pub binary: &'a Path,
    /// CPU it is pinned to.
    pub cpu: usize,
    /// How it is scheduled.
    pub priority: crate::sys::Priority,
    /// `--workers`.
    pub workers: usize,
    /// First port of its media range.
    pub port_min: u16,
    /// Last port of its media range.
    pub port_max: u16,
    /// Extra arguments appended verbatim.
    pub extra_args: &'a [String],
    /// Path of the native control socket.
    pub socket: PathBuf,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

/// Starts rtpark and waits (up to 10 s) until its native socket accepts a connection.
pub fn start(cfg: &RtparkConfig) -> Result<(EngineProcess, NativeClient), String> {
    let _ = std::fs::remove_file(&cfg.socket);
    let log = File::create(&cfg.log)
        .map_err(|e| format!("cannot create log {}: {e}", cfg.log.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot dup log handle: {e}"))?;
    let mut cmd = Command::new(cfg.binary);
    cmd.arg("--workers")
        .arg(cfg.workers.to_string())
        .arg("--interface")
        .arg("127.0.0.1")
        .arg("--port-min")
        .arg(cfg.port_min.to_string())
        .arg("--port-max")
        .arg(cfg.port_max.to_string())
        .arg("--listen-native")
        .arg(format!("unix:{}", cfg.socket.display()))
        .args(cfg.extra_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    pin_and_tie(&mut cmd, cfg.cpu, cfg.priority);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cfg.binary.display()))?;
    let mut engine = EngineProcess::new(child, vec![cfg.socket.clone(), cfg.log.clone()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = engine.exited() {
            engine.keep_file(&cfg.log);
            return Err(format!(
                "rtpark exited during start-up ({status}); its output is in {}:\n{}",
                cfg.log.display(),
                tail(&cfg.log)
            ));
        }
        if let Ok(stream) = UnixStream::connect(&cfg.socket) {
            let client = NativeClient::new(stream)?;
            return Ok((engine, client));
        }
        if Instant::now() > deadline || crate::sys::stopping() {
            engine.keep_file(&cfg.log);
            return Err(format!(
                "rtpark did not accept on {} within 10 s; its output is in {}:\n{}",
                cfg.socket.display(),
                cfg.log.display(),
                tail(&cfg.log)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A native-protocol connection.
pub struct NativeClient {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

/// What call setup produced.
pub struct Setup {
    /// Per call, rtpark's RTP address for leg A and for leg B.
    pub relay: Vec<(SocketAddr, SocketAddr)>,
    /// Wall time from the first request written to the last reply read.
    pub elapsed: Duration,
}

impl NativeClient {
    fn new(stream: UnixStream) -> Result<Self, String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        Ok(NativeClient {
            stream,
            reader,
            next_id: 1,
        })
    }

    fn read_reply(&mut self, what: &dyn Fn() -> String) -> Result<Value, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => {
                return Err(format!(
                    "rtpark closed the control connection before answering {}",
                    what()
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("no reply from rtpark to {}: {e}", what())),
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("rtpark answered {} with invalid JSON {line:?}: {e}", what()))?;
        if v["ok"] != Value::Bool(true) {
            return Err(format!("rtpark refused {}: {}", what(), line.trim()));
        }
        Ok(v)
    }

    /// Sends one request and waits for its reply.
    pub fn request(&mut self, mut req: Value) -> Result<Value, String> {
        req["id"] = json!(self.next_id);
        self.next_id += 1;
        let text = req.to_string();
        writeln!(self.stream, "{text}").map_err(|e| format!("cannot send {text}: {e}"))?;
        self.read_reply(&|| text.clone())
    }

    /// Writes every request (numbering them) before reading the replies, in order,
    /// so setup throughput is measured rather than round trips. Returns the replies
    /// and the wall time from the first request written to the last reply read.
    pub fn pipeline(&mut self, mut requests: Vec<Value>) -> Result<(Vec<Value>, Duration), String> {
        let mut payload = Vec::with_capacity(requests.len() * 160);
        for r in &mut requests {
            r["id"] = json!(self.next_id);
            self.next_id += 1;
            payload.extend_from_slice(r.to_string().as_bytes());
            payload.push(b'\n');
        }
        let writer_stream = self.stream.try_clone().map_err(|e| e.to_string())?;
        let start = Instant::now();
        // A writer thread so neither side's socket buffer can deadlock the pipeline.
        let writer = std::thread::spawn(move || {
            let mut w = BufWriter::with_capacity(64 * 1024, writer_stream);
            w.write_all(&payload).and_then(|_| w.flush())
        });
        let mut replies = Vec::with_capacity(requests.len());
        let mut result = Ok(());
        for req in &requests {
            let describe = || req.to_string();
            match self.read_reply(&describe) {
                Ok(v) if v["id"] != req["id"] => {
                    result = Err(format!("reply out of order: sent {req} and got {v}"));
                    break;
                }
                Ok(v) => replies.push(v),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let elapsed = start.elapsed();
        if let Err(e) = result {
            // Unblocks the writer if rtpark stopped reading.
            let _ = self.stream.shutdown(Shutdown::Both);
            return Err(e);
        }
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("cannot write requests to rtpark: {e}")),
            Err(_) => return Err("request writer panicked".into()),
        }
        Ok((replies, elapsed))
    }

    /// Creates and bridges one call per endpoint pair (call `<prefix>-<i>`, legs
    /// `<prefix>-<i>-a`/`-b`), pipelined (see [`Self::pipeline`]).
    pub fn setup_calls(
        &mut self,
        prefix: &str,
        remotes: &[(SocketAddr, SocketAddr)],
    ) -> Result<Setup, String> {
        let mut requests = Vec::with_capacity(remotes.len() * 3);
        for (i, (a, b)) in remotes.iter().enumerate() {
            let (call, la, lb) = (
                format!("{prefix}-{i}"),
                format!("{prefix}-{i}-a"),
                format!("{prefix}-{i}-b"),
            );
            requests.push(
                json!({"cmd": "create_leg", "call": call, "leg": la, "remote": a.to_string()}),
            );
            requests.push(
                json!({"cmd": "create_leg", "call": call, "leg": lb, "remote": b.to_string()}),
            );
            requests.push(json!({"cmd": "bridge", "a": la, "b": lb}));
        }
        let (replies, elapsed) = self.pipeline(requests)?;
        let mut relay = Vec::with_capacity(remotes.len());
        for call in replies.chunks(3) {
            let a = leg_address(&call[0])?;
            let b = leg_address(&call[1])?;
            relay.push((a, b));
        }
        Ok(Setup { relay, elapsed })
    }

    /// Deletes calls `<prefix>-0` .. `<prefix>-<n-1>`, pipelined; returns the time.
    pub fn delete_calls(&mut self, prefix: &str, n: usize) -> Result<Duration, String> {
        let requests = (0..n)
            .map(|i| json!({"cmd": "delete_call", "call": format!("{prefix}-{i}")}))
            .collect();
        Ok(self.pipeline(requests)?.1)
    }

    /// Creates one call with one G.711 µ-law leg per remote (call and leg
    /// `moh-<i>`, the remote trusted so it needs no latching), pipelined; returns
    /// rtpark's address per leg and the time it took.
    /// `media_timeout` (seconds) is passed on when given: held legs that never send
    /// would otherwise all time out together, possibly inside the window.
    pub fn create_moh_legs(
        &mut self,
        remotes: &[SocketAddr],
        media_timeout: Option<u32>,
    ) -> Result<(Vec<SocketAddr>, Duration), String> {
        let requests = remotes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut req = json!({"cmd": "create_leg", "call": format!("moh-{i}"), "leg": format!("moh-{i}"),
                       "remote": r.to_string(), "trust_address": true,
                       "codecs": [{"pt": 0, "name": "PCMU", "rate": 8000}]});
                if let Some(t) = media_timeout {
                    req["media_timeout"] = json!(t);
                }
                req
            })
            .collect();
        let (replies, elapsed) = self.pipeline(requests)?;
        let addrs = replies
            .iter()
            .map(leg_address)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((addrs, elapsed))
    }

    /// Puts legs `moh-0` .. `moh-<n-1>` on hold (class `class`, or rtpark's default),
    /// pipelined; returns the time it took.
    pub fn hold_legs(&mut self, n: usize, class: Option<&str>) -> Result<Duration, String> {
        let requests = (0..n)
            .map(|i| {
                let mut r = json!({"cmd": "hold", "leg": format!("moh-{i}")});
                if let Some(c) = class {
                    r["class"] = json!(c);
                }
                r
            })
            .collect();
        Ok(self.pipeline(requests)?.1)
    }
}

/// rtpark's RTP address in a `create_leg` reply.
fn leg_address(v: &Value) -> Result<SocketAddr, String> {
    let port = v["rtp_port"].as_u64().unwrap_or(0) as u16;
    let ip: IpAddr = v["ip"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if port == 0 {
        return Err(format!("create_leg reply without rtp_port: {v}"));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Waits (up to `limit`) until rtpark's log says its start-up media encodings are
/// ready, so memory readings taken afterwards do not include them growing; returns
/// the seconds the log says they took (`None`: not seen in time).
pub fn wait_media_ready(log: &Path, limit: Duration) -> Option<f64> {
    const NEEDLE: &str = "media: encodings at";
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(NEEDLE)) {
            // "... media: encodings at 20 ms ready in 0.0 s"
            let secs = line
                .rsplit(" in ")
                .next()
                .and_then(|t| t.trim().trim_end_matches('s').trim().parse().ok());
            return Some(secs.unwrap_or(0.0));
        }
        if Instant::now() > deadline || crate::sys::stopping() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
