//! Harness for tests that run the real `rtpark` binary: an [`Engine`] process
//! with its own control socket and port range, a [`Control`] client for the
//! native protocol, and UDP [`Endpoint`]s that play phones on 127.0.0.1.
//!
//! Every engine is killed when its [`Engine`] drops (SIGTERM, then SIGKILL), so a
//! failing test never leaves a process behind.

// Each scenario file uses a different part of the harness.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const RTPARK: &str = env!("CARGO_BIN_EXE_rtpark");

/// How long an engine may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a control reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an endpoint waits for a packet it expects.
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(3);

/// Port ranges handed to engines: slots of `SLOT_PORTS` inside `PORT_BASE..PORT_END`
/// (below the kernel's ephemeral range, where the test endpoints bind).
const PORT_BASE: u16 = 20000;
const PORT_END: u16 = 32000;
const SLOT_PORTS: u16 = 200;

/// Engines started by this test binary (names temp dirs and picks port slots).
static ENGINES: AtomicUsize = AtomicUsize::new(0);

/// A packet backend to run the engine on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring.
    IoUring,
    /// epoll.
    Epoll,
}

impl Backend {
    /// Both backends, for scenarios that must pass on each.
    pub const ALL: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

    /// The name `--backend` takes and `stats` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

/// Generates one `#[test]` per backend for each named scenario `fn name(Backend)`:
/// `io_uring::name` and `epoll::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod io_uring {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::support::Backend::IoUring)
                }
            )*
        }
        mod epoll {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::support::Backend::Epoll)
                }
            )*
        }
    };
}

/// How to start an engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Packet backend.
    pub backend: Backend,
    /// Worker threads.
    pub workers: usize,
    /// Extra TOML written to the config file (`--config`).
    pub config: String,
    /// Size the port range to hold exactly this many RTP/RTCP pairs.
    pub port_pairs: Option<u16>,
    /// `--log-level`.
    pub log_level: String,
}

impl EngineOptions {
    /// One worker on `backend`, no extra config, a 200-port range.
    pub fn new(backend: Backend) -> Self {
        EngineOptions {
            backend,
            workers: 1,
            config: String::new(),
            port_pairs: None,
            log_level: "warn".into(),
        }
    }

    /// Sets the worker count.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Appends TOML lines to the config file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }

    /// Limits the port range to `n` pairs.
    pub fn port_pairs(mut self, n: u16) -> Self {
        assert!(
            (1..=SLOT_PORTS / 2).contains(&n),
            "port_pairs must be 1..={}",
            SLOT_PORTS / 2
        );
        self.port_pairs = Some(n);
        self
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions::new(Backend::Epoll)
    }
}

/// A private temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/rtpark-test-<pid>-<n>`.
    pub fn new() -> Self {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("rtpark-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether every UDP port in `lo..=hi` on 127.0.0.1 can be bound right now.
fn ports_free(lo: u16, hi: u16) -> bool {
    let mut held = Vec::with_capacity(usize::from(hi - lo) + 1);
    for p in lo..=hi {
        match UdpSocket::bind(("127.0.0.1", p)) {
            Ok(s) => held.push(s),
            Err(_) => return false,
        }
    }
    true
}

/// A port range of `len` ports nobody uses at the moment, distinct from every
/// other engine of this test binary (a pid-dependent start spreads concurrent
/// test binaries over different slots).
fn port_range(len: u16) -> (u16, u16) {
    let slots = usize::from((PORT_END - PORT_BASE) / SLOT_PORTS);
    let offset = std::process::id() as usize * 7;
    for _ in 0..slots {
        let n = ENGINES.fetch_add(1, Ordering::Relaxed);
        let lo = PORT_BASE + SLOT_PORTS * ((offset + n) % slots) as u16;
        let hi = lo + len - 1;
        if ports_free(lo, hi) {
            return (lo, hi);
        }
    }
    panic!("no free port range of {len} ports in {PORT_BASE}–{PORT_END}");
}

/// A running `rtpark` process.
pub struct Engine {
    child: Child,
    exited: Option<ExitStatus>,
    /// The native control socket.
    pub socket: PathBuf,
    /// `--port-min`.
    pub port_min: u16,
    /// `--port-max`.
    pub port_max: u16,
    /// How it was started.
    pub options: EngineOptions,
    stderr: PathBuf,
    dir: TempDir,
}

impl Engine {
    /// Starts an engine and waits until its control socket answers `ping`.
    pub fn start(options: EngineOptions) -> Engine {
        let dir = TempDir::new();
        let socket = dir.join("native.sock");
        let config = dir.join("rtpark.toml");
        let stderr = dir.join("stderr.log");
        std::fs::write(&config, &options.config).expect("write config file");
        let len = options.port_pairs.map_or(SLOT_PORTS, |n| 2 * n);
        let (port_min, port_max) = port_range(len);
        let err_file = std::fs::File::create(&stderr).expect("create stderr log");
        let mut command = Command::new(RTPARK);
        // If the test process dies without unwinding (SIGKILL, abort), the engine
        // gets SIGTERM instead of living on. (Linux sends it when the spawning
        // *thread* exits, so an Engine must not outlive the thread that started it.)
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .arg("--listen-native")
            .arg(format!("unix:{}", socket.display()))
            .arg("--port-min")
            .arg(port_min.to_string())
            .arg("--port-max")
            .arg(port_max.to_string())
            .arg("--backend")
            .arg(options.backend.as_str())
            .arg("--workers")
            .arg(options.workers.to_string())
            .arg("--log-level")
            .arg(&options.log_level)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {RTPARK}: {e}"));
        let mut engine = Engine {
            child,
            exited: None,
            socket,
            port_min,
            port_max,
            options,
            stderr,
            dir,
        };
        engine.wait_ready();
        engine
    }

    /// Starts an engine with default options on `backend`.
    pub fn on(backend: Backend) -> Engine {
        Engine::start(EngineOptions::new(backend))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                panic!(
                    "rtpark ({} backend) exited during start-up with {status}; stderr:\n{}",
                    self.options.backend.as_str(),
                    self.stderr()
                );
            }
            if let Ok(stream) = UnixStream::connect(&self.socket) {
                let mut ctl = Control::from_stream(stream, Duration::from_secs(2));
                if let Ok(reply) = ctl.try_request(&json!({"cmd": "ping"})) {
                    if reply["ok"] == json!(true) {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "rtpark did not answer ping on {} within {START_TIMEOUT:?}; stderr:\n{}",
                    self.socket.display(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A new control connection.
    pub fn control(&self) -> Control {
        Control::connect(&self.socket)
    }

    /// Everything the engine wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The engine's private temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Sends `signal` to the engine.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child, which we have not reaped yet.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited {
            return Some(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits for the exit status (SIGKILL after 5 s, then panics).
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        self.signal(libc::SIGTERM);
        match self.wait_timeout(Duration::from_secs(5)) {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait for rtpark");
                self.exited = Some(status);
                panic!(
                    "rtpark did not exit within 5 s of SIGTERM (killed it); stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait_timeout(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A native-protocol client. Events that arrive while waiting for a reply are
/// queued for [`Control::next_event`].
pub struct Control {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    /// Bytes of a line not yet complete (kept across read timeouts).
    partial: Vec<u8>,
    events: VecDeque<Value>,
    timeout: Duration,
}

impl Control {
    /// Connects to a control socket.
    pub fn connect(path: &Path) -> Control {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        Control::from_stream(stream, REPLY_TIMEOUT)
    }

    fn from_stream(stream: UnixStream, timeout: Duration) -> Control {
        stream
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .expect("set write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone unix stream"));
        Control {
            stream,
            reader,
            partial: Vec::new(),
            events: VecDeque::new(),
            timeout,
        }
    }

    /// Writes raw bytes (no newline added).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("write to control socket");
    }

    /// Writes one request line.
    pub fn send(&mut self, request: &Value) {
        let mut line = request.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
    }

    /// Reads one line within `timeout` and parses it; `Ok(None)` on timeout.
    fn read_line(&mut self, timeout: Duration) -> std::io::Result<Option<Value>> {
        let timeout = timeout.max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(timeout))?;
        match self.reader.read_until(b'\n', &mut self.partial) {
            Ok(0) => Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "rtpark closed the control connection",
            )),
            Ok(_) if !self.partial.ends_with(b"\n") => Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "rtpark closed the control connection mid-line",
            )),
            Ok(_) => {
                let line = std::mem::take(&mut self.partial);
                let value = serde_json::from_slice(&line).map_err(|e| {
                    std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "reply is not JSON ({e}): {}",
                            String::from_utf8_lossy(&line)
                        ),
                    )
                })?;
                Ok(Some(value))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next reply line (one with `"ok"`), queueing events read on the way.
    pub fn try_reply(&mut self) -> std::io::Result<Value> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!("no reply within {:?}", self.timeout),
                ));
            }
            match self.read_line(left)? {
                Some(v) if v.get("event").is_some() && v.get("ok").is_none() => {
                    self.events.push_back(v)
                }
                Some(v) => return Ok(v),
                None => {}
            }
        }
    }

    /// The next reply line; panics if none arrives.
    pub fn reply(&mut self) -> Value {
        self.try_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    fn try_request(&mut self, request: &Value) -> std::io::Result<Value> {
        let mut line = request.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes())?;
        self.try_reply()
    }

    /// Sends a request and returns its reply, whatever it says.
    pub fn request(&mut self, request: Value) -> Value {
        self.send(&request);
        self.reply()
    }

    /// Sends a request, asserts `"ok":true`, returns the reply.
    pub fn ok(&mut self, request: Value) -> Value {
        let reply = self.request(request.clone());
        assert_eq!(
            reply["ok"],
            json!(true),
            "request {request} was refused: {reply}"
        );
        reply
    }

    /// Sends a request, asserts `"ok":false`, returns the error's code and message.
    pub fn err(&mut self, request: Value) -> (String, String) {
        let reply = self.request(request.clone());
        error_of(&request, &reply)
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        if timeout.is_zero() {
            return None;
        }
        match self.read_line(timeout) {
            Ok(Some(v)) if v.get("event").is_some() => Some(v),
            Ok(Some(v)) => panic!("unexpected reply while waiting for an event: {v}"),
            Ok(None) => None,
            Err(e) => panic!("waiting for an event: {e}"),
        }
    }

    /// Waits up to `timeout` for an event matching `pred`; other events are kept
    /// in `skipped` order and returned with it.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Option<Value>, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(ev) if pred(&ev) => return (Some(ev), skipped),
                Some(ev) => skipped.push(ev),
                None => return (None, skipped),
            }
        }
    }

    // -- engine commands --

    /// `create_leg` with a remote address; returns the reply.
    pub fn create_leg(&mut self, call: &str, leg: &str, remote: SocketAddr) -> Value {
        self.ok(
            json!({"cmd": "create_leg", "call": call, "leg": leg, "remote": remote.to_string()}),
        )
    }

    /// `bridge`.
    pub fn bridge(&mut self, a: &str, b: &str) {
        self.ok(json!({"cmd": "bridge", "a": a, "b": b}));
    }

    /// The `query_call` entry of `leg`.
    pub fn leg_info(&mut self, call: &str, leg: &str) -> Value {
        let reply = self.ok(json!({"cmd": "query_call", "call": call}));
        reply["legs"]
            .as_array()
            .and_then(|legs| legs.iter().find(|l| l["leg"] == json!(leg)))
            .cloned()
            .unwrap_or_else(|| panic!("query_call {call} has no leg {leg}: {reply}"))
    }

    /// One counter of `leg`.
    pub fn counter(&mut self, call: &str, leg: &str, name: &str) -> u64 {
        let info = self.leg_info(call, leg);
        info["counters"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("leg {leg} has no counter {name}: {info}"))
    }
}

/// Asserts `reply` is an error reply to `request`; returns its code and message.
pub fn error_of(request: &Value, reply: &Value) -> (String, String) {
    assert_eq!(
        reply["ok"],
        json!(false),
        "request {request} should have failed: {reply}"
    );
    let code = reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("error reply without code: {reply}"));
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error reply without message: {reply}"));
    assert!(!message.is_empty(), "empty error message: {reply}");
    (code.to_owned(), message.to_owned())
}

/// The local RTP port in a `create_leg` reply.
pub fn rtp_port(created: &Value) -> u16 {
    port_field(created, "rtp_port")
}

/// The local RTCP port in a `create_leg` reply.
pub fn rtcp_port(created: &Value) -> u16 {
    port_field(created, "rtcp_port")
}

fn port_field(v: &Value, key: &str) -> u16 {
    v[key]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// A UDP socket on 127.0.0.1 playing one side of a phone.
#[derive(Debug)]
pub struct Endpoint {
    sock: UdpSocket,
}

impl Endpoint {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub fn new() -> Endpoint {
        Endpoint::on_ip([127, 0, 0, 1])
    }

    /// Binds another loopback address (e.g. 127.0.0.2: a different host to rtpark).
    pub fn on_ip(ip: [u8; 4]) -> Endpoint {
        let sock = UdpSocket::bind((std::net::Ipv4Addr::from(ip), 0))
            .unwrap_or_else(|e| panic!("bind endpoint on {ip:?}: {e}"));
        Endpoint::from_socket(sock)
    }

    fn from_socket(sock: UdpSocket) -> Endpoint {
        sock.set_read_timeout(Some(PACKET_TIMEOUT))
            .expect("set read timeout");
        Endpoint { sock }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("endpoint address")
    }

    /// Sends `packet` to `port` on 127.0.0.1.
    pub fn send_to_port(&self, packet: &[u8], port: u16) {
        let n = self
            .sock
            .send_to(packet, ("127.0.0.1", port))
            .expect("send from endpoint");
        assert_eq!(n, packet.len());
    }

    /// The next datagram and its source within `timeout`, or `None`.
    pub fn recv_within(&self, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set read timeout");
        let mut buf = vec![0u8; 2048];
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                buf.truncate(n);
                Some((buf, from))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("endpoint {} receive failed: {e}", self.addr()),
        }
    }

    /// The next datagram and its source; panics after [`PACKET_TIMEOUT`].
    pub fn recv(&self) -> (Vec<u8>, SocketAddr) {
        self.recv_within(PACKET_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "endpoint {} received nothing within {PACKET_TIMEOUT:?}",
                self.addr()
            )
        })
    }

    /// Asserts that nothing arrives within `timeout`.
    pub fn expect_silence(&self, timeout: Duration) {
        if let Some((p, from)) = self.recv_within(timeout) {
            panic!(
                "endpoint {} expected nothing but got {} bytes from {from}: {p:02x?}",
                self.addr(),
                p.len()
            );
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::new()
    }
}

/// A phone: an RTP endpoint on an even port and its RTCP endpoint on the next port,
/// so the engine's default "RTCP at RTP + 1" reaches it.
#[derive(Debug)]
pub struct Phone {
    /// RTP socket (even port).
    pub rtp: Endpoint,
    /// RTCP socket (RTP port + 1).
    pub rtcp: Endpoint,
}

impl Phone {
    /// Binds an adjacent even/odd pair of ephemeral ports on 127.0.0.1.
    pub fn new() -> Phone {
        for _ in 0..200 {
            let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind phone RTP");
            let port = rtp.local_addr().expect("local addr").port();
            if port % 2 != 0 || port == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                return Phone {
                    rtp: Endpoint::from_socket(rtp),
                    rtcp: Endpoint::from_socket(rtcp),
                };
            }
        }
        panic!("cannot bind an adjacent even/odd UDP port pair on 127.0.0.1");
    }

    /// The RTP address (what goes into `remote`).
    pub fn addr(&self) -> SocketAddr {
        self.rtp.addr()
    }
}

impl Default for Phone {
    fn default() -> Self {
        Self::new()
    }
}

/// Options of an RTP packet beyond the fixed header fields.
#[derive(Debug, Clone, Default)]
pub struct RtpOpts {
    /// Marker bit.
    pub marker: bool,
    /// CSRC identifiers.
    pub csrcs: Vec<u32>,
    /// Header extension: profile and body (a multiple of 4 bytes).
    pub extension: Option<(u16, Vec<u8>)>,
    /// Padding bytes to append (the last one holds the count).
    pub padding: u8,
}

/// An RTP packet (V=2) with the given header fields and payload.
pub fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
    rtp_with(seq, ts, ssrc, pt, payload, &RtpOpts::default())
}

/// An RTP packet with CSRCs, an extension, padding or the marker bit.
pub fn rtp_with(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8], o: &RtpOpts) -> Vec<u8> {
    assert!(o.csrcs.len() <= 15 && pt <= 127);
    let mut b0 = 0x80 | o.csrcs.len() as u8;
    if o.padding > 0 {
        b0 |= 0x20;
    }
    if o.extension.is_some() {
        b0 |= 0x10;
    }
    let mut p = vec![b0, pt | if o.marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for c in &o.csrcs {
        p.extend_from_slice(&c.to_be_bytes());
    }
    if let Some((profile, body)) = &o.extension {
        assert_eq!(body.len() % 4, 0, "extension body is whole words");
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
    }
    p.extend_from_slice(payload);
    if o.padding > 0 {
        p.extend(std::iter::repeat_n(0u8, usize::from(o.padding) - 1));
        p.push(o.padding);
    }
    p
}

/// A 160-byte PCMU payload whose bytes depend on `seed` (so packets differ).
pub fn payload(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u32 * 7) & 0xff) as u8)
        .collect()
}

/// An RTCP sender report (PT 200, no report blocks).
pub fn rtcp_sr(ssrc: u32, ntp: u64, rtp_ts: u32, packets: u32, octets: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&ntp.to_be_bytes());
    p.extend_from_slice(&rtp_ts.to_be_bytes());
    p.extend_from_slice(&packets.to_be_bytes());
    p.extend_from_slice(&octets.to_be_bytes());
    p
}

/// An RTCP SDES packet with one CNAME chunk (PT 202), for compound packets.
pub fn rtcp_sdes_cname(ssrc: u32, cname: &str) -> Vec<u8> {
    assert!(cname.len() <= 255);
    let mut chunk = ssrc.to_be_bytes().to_vec();
    chunk.push(1); // CNAME
    chunk.push(cname.len() as u8);
    chunk.extend_from_slice(cname.as_bytes());
    chunk.push(0); // end of items
    while chunk.len() % 4 != 0 {
        chunk.push(0);
    }
    let words = (chunk.len() / 4) as u16;
    let mut p = vec![0x81, 202];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&chunk);
    p
}

/// Runs `rtpark` with `args` to completion (killing it after 10 s, then
/// panicking), returning its status, stdout and stderr.
pub fn run_rtpark(args: &[&str]) -> (ExitStatus, String, String) {
    let dir = TempDir::new();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(RTPARK)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {RTPARK}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rtpark") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`rtpark {}` did not finish within 10 s; stderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, read(&out_path), read(&err_path))
}
