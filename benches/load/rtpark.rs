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

    /// Creates and bridges one call per endpoint pair (legs `load-<i>-a`/`-b`),
    /// writing every request before reading the replies (in order) to measure setup
    /// throughput rather than round trips.
    pub fn setup_calls(&mut self, remotes: &[(SocketAddr, SocketAddr)]) -> Result<Setup, String> {
        let first_id = self.next_id;
        let mut requests = Vec::with_capacity(remotes.len() * 3);
        for (i, (a, b)) in remotes.iter().enumerate() {
            let id = first_id + 3 * i as u64;
            let (call, la, lb) = (
                format!("load-{i}"),
                format!("load-{i}-a"),
                format!("load-{i}-b"),
            );
            requests.push(json!({"id": id, "cmd": "create_leg", "call": call, "leg": la, "remote": a.to_string()}));
            requests.push(json!({"id": id + 1, "cmd": "create_leg", "call": call, "leg": lb, "remote": b.to_string()}));
            requests.push(json!({"id": id + 2, "cmd": "bridge", "a": la, "b": lb}));
        }
        self.next_id += requests.len() as u64;
        let mut payload = Vec::with_capacity(requests.len() * 120);
        for r in &requests {
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
        let mut relay = Vec::with_capacity(remotes.len());
        let mut result = Ok(());
        for (i, req) in requests.iter().enumerate() {
            let describe = || req.to_string();
            let v = match self.read_reply(&describe) {
                Ok(v) => v,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if v["id"] != req["id"] {
                result = Err(format!("reply out of order: sent {} and got {v}", req));
                break;
            }
            if i % 3 == 2 {
                continue;
            }
            let port = v["rtp_port"].as_u64().unwrap_or(0) as u16;
            let ip: IpAddr = v["ip"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            if port == 0 {
                result = Err(format!("create_leg reply without rtp_port: {v}"));
                break;
            }
            let addr = SocketAddr::new(ip, port);
            if i % 3 == 0 {
                relay.push((addr, addr));
            } else if let Some(last) = relay.last_mut() {
                last.1 = addr;
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
        Ok(Setup { relay, elapsed })
    }
}
