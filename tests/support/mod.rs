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
    run_rtpark_within(args, Duration::from_secs(10))
}

// ---------------------------------------------------------------------------
// Media scenarios: audio files, an encoded-media cache shared by the engines of
// one build, timestamped recording, paced RTP streams, reference G.711 decoders
// and a little signal analysis. Used by tests/moh-*.rs and tests/hold-*.rs.
// ---------------------------------------------------------------------------

impl EngineOptions {
    /// Sets `--log-level`.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }
}

/// `s` as a TOML basic string, quotes included.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a TOML string.
pub fn toml_path(p: &Path) -> String {
    toml_string(p.to_str().expect("test paths are UTF-8"))
}

/// The encoded-media cache shared by the engines started by tests against this
/// build of `rtpark` (under `CARGO_TARGET_TMPDIR`). Only the first engine of a
/// build encodes the embedded announcements; the others read them from disk.
/// The directory is named after the binary's size and modification time, so a
/// rebuilt encoder never plays frames cached by an older one (the cache key
/// covers the audio and the settings, not the encoder's version).
pub fn shared_media_cache() -> PathBuf {
    let meta = std::fs::metadata(RTPARK).expect("stat the rtpark binary");
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("media-cache-{:x}-{mtime:x}", meta.len()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Config lines for a quick start: the shared media cache and
/// [`quick_classes`]. Top-level keys (dotted), so put them before any
/// `[table]` header.
pub fn quick_media(dir: &TempDir) -> String {
    format!(
        "cache_dir = {}\n{}",
        toml_path(&shared_media_cache()),
        quick_classes(dir)
    )
}

/// Config lines replacing the embedded `default` and `calm` classes, whose
/// minute of music takes seconds to decode and encode in a debug build, by
/// small generated tones (600 Hz and 800 Hz, 2 s) written into `dir`.
/// Top-level keys (dotted), so put them before any `[table]` header.
pub fn quick_classes(dir: &TempDir) -> String {
    let default = dir.join("default-600hz.wav");
    let calm = dir.join("calm-800hz.wav");
    write_wav(&default, 8000, &tone(8000, 2.0, &[(QUICK_DEFAULT_HZ, 0.3)]));
    write_wav(&calm, 8000, &tone(8000, 2.0, &[(800.0, 0.3)]));
    format!(
        "moh.default.files = [{}]\nmoh.calm.files = [{}]\n",
        toml_path(&default),
        toml_path(&calm)
    )
}

/// The frequency of the `default` class of [`quick_media`].
pub const QUICK_DEFAULT_HZ: f64 = 600.0;

/// `secs` seconds at `rate` Hz of a sum of sines `(frequency, amplitude)`.
pub fn tone(rate: u32, secs: f64, parts: &[(f64, f64)]) -> Vec<f32> {
    let n = (rate as f64 * secs).round() as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            parts
                .iter()
                .map(|&(f, a)| a * (2.0 * std::f64::consts::PI * f * t).sin())
                .sum::<f64>() as f32
        })
        .collect()
}

/// A RIFF/WAVE file: `fmt ` with the given fields, then a `data` chunk of `data`.
pub fn wav_bytes(format: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block_align = channels * bits.div_ceil(8);
    let mut w = Vec::with_capacity(44 + data.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&format.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate.wrapping_mul(block_align as u32)).to_le_bytes());
    w.extend_from_slice(&block_align.to_le_bytes());
    w.extend_from_slice(&bits.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(data);
    w
}

/// Writes mono 16-bit PCM WAV at `rate` Hz (samples in [-1, 1], clipped).
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|&s| ((s * 32767.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
        .collect();
    std::fs::write(path, wav_bytes(1, 1, rate, 16, &data))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// G.711 µ-law to linear, after ITU-T G.711 (written here, independently of rtpark).
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((((u & 0x0f) as i32) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// G.711 A-law to linear, after ITU-T G.711 (written here, independently of rtpark).
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let seg = ((a & 0x70) >> 4) as i32;
    let mut t = ((a & 0x0f) as i32) << 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// µ-law bytes as samples in [-1, 1].
pub fn ulaw_samples(codes: &[u8]) -> Vec<f32> {
    codes
        .iter()
        .map(|&c| ulaw_to_linear(c) as f32 / 32768.0)
        .collect()
}

/// Power of `freq` in `samples` (Goertzel), normalised by the length.
pub fn tone_power(samples: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = samples.len().max(1) as f64;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
}

/// Which of `freqs` clearly dominates `samples` (at least 10× the power of
/// every other), if one does.
pub fn dominant_tone(samples: &[f32], rate: u32, freqs: &[f64]) -> Option<usize> {
    let p: Vec<f64> = freqs
        .iter()
        .map(|&f| tone_power(samples, rate, f))
        .collect();
    let (best, &max) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let clear = max > 1e-6
        && p.iter()
            .enumerate()
            .all(|(i, &x)| i == best || x * 10.0 < max);
    clear.then_some(best)
}

/// A parsed RTP packet (header fields and payload, CSRCs, extension and padding removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpView {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Parses an RTP packet; `None` if it is not one.
pub fn parse_rtp(p: &[u8]) -> Option<RtpView> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut off = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]);
        off += 4 + 4 * usize::from(words);
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*p.last()?))?;
    }
    Some(RtpView {
        marker: p[1] & 0x80 != 0,
        pt: p[1] & 0x7f,
        seq: u16::from_be_bytes([p[2], p[3]]),
        ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        payload: p.get(off..end)?.to_vec(),
    })
}

/// Wall-clock time in seconds since the epoch: the clock of kernel receive
/// timestamps ([`Stamped::at`]).
pub fn wall_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A datagram with the kernel's receive time.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// The datagram.
    pub data: Vec<u8>,
    /// Its source.
    pub from: SocketAddr,
    /// When the kernel received it ([`wall_secs`] clock), so a busy test thread
    /// does not skew arrival times.
    pub at: f64,
}

/// Receives one datagram with its kernel timestamp (`SO_TIMESTAMPNS` must be on).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<Stamped> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid sockaddr_storage and msghdr.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut at = None;
    // SAFETY: the kernel filled msg_control; the CMSG macros walk it in bounds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = if i32::from(addr.ss_family) == libc::AF_INET {
        // SAFETY: the family says the storage holds a sockaddr_in.
        let sin: libc::sockaddr_in =
            unsafe { std::ptr::read((&addr as *const libc::sockaddr_storage).cast()) };
        SocketAddr::from((
            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            u16::from_be(sin.sin_port),
        ))
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    };
    Ok(Stamped {
        data: buf[..n as usize].to_vec(),
        from,
        at: at.unwrap_or_else(wall_secs),
    })
}

/// Records every datagram an [`Endpoint`] receives, on a thread of its own,
/// until [`Recorder::finish`]. Do not receive on the endpoint meanwhile.
pub struct Recorder {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    got: std::sync::Arc<std::sync::Mutex<Vec<Stamped>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    /// Packets recorded so far.
    pub fn len(&self) -> usize {
        self.got.lock().map_or(0, |g| g.len())
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> Vec<Stamped> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits up to `timeout` until at least `n` packets were recorded.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.len() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops recording and returns every packet, in arrival order.
    pub fn finish(mut self) -> Vec<Stamped> {
        self.stop_thread();
        std::mem::take(&mut *self.got.lock().expect("recorder lock"))
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// One RTP stream a [`Pacer`] sends.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub pt: u8,
    /// First sequence number.
    pub seq0: u16,
    /// Timestamp of the first packet.
    pub ts0: u32,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Packet interval.
    pub ptime: Duration,
    /// Payload length (at least 6).
    pub payload_len: usize,
    /// First four payload bytes, to tell this stream's packets from others.
    pub tag: [u8; 4],
}

impl StreamSpec {
    /// A 20 ms PCMU-sized stream (160 bytes at 8 kHz) tagged `tag`.
    pub fn pcmu(ssrc: u32, tag: [u8; 4]) -> StreamSpec {
        StreamSpec {
            ssrc,
            pt: 0,
            seq0: (ssrc >> 7) as u16,
            ts0: ssrc.rotate_left(9),
            clock_rate: 8000,
            ptime: Duration::from_millis(20),
            payload_len: 160,
            tag,
        }
    }

    /// Whether `payload` is one of this stream's.
    pub fn owns(&self, payload: &[u8]) -> bool {
        payload.starts_with(&self.tag)
    }
}

/// Sends an RTP stream from an [`Endpoint`] every `ptime` on a thread of its own,
/// like a phone: sequence numbers count up, timestamps follow the time of sending
/// (so a late test thread does not make the stream jitter), the marker is on the
/// first packet. [`Pacer::finish`] returns when each packet was sent.
pub struct Pacer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<(u16, f64)>>>,
}

impl Pacer {
    /// Stops the stream; returns (sequence number, [`wall_secs`] when sent) of each packet.
    pub fn finish(mut self) -> Vec<(u16, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("pacer thread"))
            .unwrap_or_default()
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Endpoint {
    /// Starts recording what arrives, with kernel receive timestamps.
    pub fn record(&self) -> Recorder {
        let sock = self.sock.try_clone().expect("clone endpoint socket");
        {
            use std::os::fd::AsRawFd;
            let on: libc::c_int = 1;
            // SAFETY: setsockopt with a live fd and an int option value.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
        }
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("set read timeout");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, got) = (stop.clone(), got.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    match recv_stamped(&sock, &mut buf) {
                        Ok(s) => got.lock().expect("recorder lock").push(s),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => panic!("recording endpoint failed: {e}"),
                    }
                }
                // Whatever is still queued arrived before the stop.
                let _ = sock.set_nonblocking(true);
                while let Ok(s) = recv_stamped(&sock, &mut buf) {
                    got.lock().expect("recorder lock").push(s);
                }
            })
        };
        Recorder {
            stop,
            got,
            thread: Some(thread),
        }
    }

    /// Starts sending `spec`'s stream to `port` on 127.0.0.1.
    pub fn pace(&self, port: u16, spec: StreamSpec) -> Pacer {
        assert!(
            spec.payload_len >= 6,
            "payload holds tag and sequence number"
        );
        let sock = self.sock.try_clone().expect("clone endpoint socket");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                let start = Instant::now();
                let mut k: u32 = 0;
                let mut seq = spec.seq0;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    let elapsed = now - start;
                    let ts = spec.ts0.wrapping_add(
                        (elapsed.as_secs_f64() * spec.clock_rate as f64).round() as u32,
                    );
                    let mut body = vec![0x55u8; spec.payload_len];
                    body[..4].copy_from_slice(&spec.tag);
                    body[4..6].copy_from_slice(&seq.to_be_bytes());
                    let packet = rtp_with(
                        seq,
                        ts,
                        spec.ssrc,
                        spec.pt,
                        &body,
                        &RtpOpts {
                            marker: k == 0,
                            ..RtpOpts::default()
                        },
                    );
                    if sock.send_to(&packet, ("127.0.0.1", port)).is_ok() {
                        sent.push((seq, wall_secs()));
                    }
                    seq = seq.wrapping_add(1);
                    // Next packet on the schedule; after a stall, skip to now.
                    k += 1;
                    let behind = (start.elapsed().as_nanos() / spec.ptime.as_nanos()) as u32;
                    k = k.max(behind);
                    let due = start + spec.ptime * k;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                sent
            })
        };
        Pacer {
            stop,
            thread: Some(thread),
        }
    }
}

/// Like [`run_rtpark`], allowing `timeout` instead of 10 s.
pub fn run_rtpark_within(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let dir = TempDir::new();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(RTPARK)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {RTPARK}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rtpark") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`rtpark {}` did not finish within {timeout:?}; stderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, read(&out_path), read(&err_path))
}

// ---------------------------------------------------------------------------
// Parking scenarios (tests/park-*.rs): lot tables, park commands, listings,
// park events, and a continuity check for the stream one phone receives.
// ---------------------------------------------------------------------------

/// The event kinds a parking raises.
pub const PARK_EVENT_KINDS: [&str; 6] = [
    "parked",
    "slot_state",
    "retrieved",
    "park_timeout",
    "park_released",
    "park_give_up",
];

/// Whether `ev` is one of [`PARK_EVENT_KINDS`].
pub fn is_park_event(ev: &Value) -> bool {
    ev["event"]
        .as_str()
        .is_some_and(|k| PARK_EVENT_KINDS.contains(&k))
}

/// A `[lot.NAME]` table with `slots` (e.g. `"801-805"`) and extra `key = value`
/// lines (e.g. `"timeout = 1\nannounce_slot = false"`). A table, so put it after
/// the top-level keys of [`quick_media`].
pub fn lot_toml(name: &str, slots: &str, extra: &str) -> String {
    format!("[lot.{name}]\nslots = {}\n{extra}\n", toml_string(slots))
}

impl Control {
    /// `subscribe`.
    pub fn subscribe(&mut self) {
        self.ok(json!({"cmd": "subscribe"}));
    }

    /// `create_leg` with a remote address; returns the local RTP port.
    pub fn leg_port(&mut self, call: &str, leg: &str, remote: SocketAddr) -> u16 {
        rtp_port(&self.create_leg(call, leg, remote))
    }

    /// `park` of `leg` in `lot` (the default lot if `None`), in `slot` or one the
    /// lot picks; asserts success and returns the slot.
    pub fn park(&mut self, leg: &str, lot: Option<&str>, slot: Option<u32>) -> u32 {
        let mut req = json!({"cmd": "park", "leg": leg});
        if let Some(lot) = lot {
            req["lot"] = json!(lot);
        }
        if let Some(slot) = slot {
            req["slot"] = json!(slot);
        }
        let reply = self.ok(req.clone());
        assert_eq!(
            reply["lot"],
            json!(lot.unwrap_or("default")),
            "{req} → {reply}"
        );
        reply["slot"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or_else(|| panic!("park reply without a slot: {reply}"))
    }

    /// `retrieve` by `leg` from `lot` (default lot if `None`), `slot` or the
    /// longest waiting; returns the reply, whatever it says.
    pub fn retrieve(&mut self, leg: &str, lot: Option<&str>, slot: Option<u32>) -> Value {
        let mut req = json!({"cmd": "retrieve", "leg": leg});
        if let Some(lot) = lot {
            req["lot"] = json!(lot);
        }
        if let Some(slot) = slot {
            req["slot"] = json!(slot);
        }
        self.request(req)
    }

    /// The `parked` array of `list_parked`.
    pub fn list_parked(&mut self) -> Vec<Value> {
        let reply = self.ok(json!({"cmd": "list_parked"}));
        reply["parked"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("list_parked without a parked array: {reply}"))
    }

    /// The `lots` array of `list_lots`.
    pub fn list_lots(&mut self) -> Vec<Value> {
        let reply = self.ok(json!({"cmd": "list_lots"}));
        reply["lots"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("list_lots without a lots array: {reply}"))
    }

    /// The `list_lots` entry of lot `name`.
    pub fn lot_info(&mut self, name: &str) -> Value {
        let lots = self.list_lots();
        lots.iter()
            .find(|l| l["name"] == json!(name))
            .cloned()
            .unwrap_or_else(|| panic!("list_lots has no lot {name}: {lots:?}"))
    }

    /// Every event that arrives until none has for `quiet` (or `limit` passed).
    pub fn drain_events(&mut self, quiet: Duration, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            match self.next_event(quiet) {
                Some(ev) => out.push(ev),
                None => break,
            }
        }
        out
    }

    /// Waits up to `timeout` for the park event `kind` (other events are
    /// returned in order in the second element).
    pub fn wait_park_event(
        &mut self,
        kind: &str,
        timeout: Duration,
    ) -> (Option<Value>, Vec<Value>) {
        self.wait_event(timeout, |ev| ev["event"] == json!(kind))
    }
}

/// The parked legs in a `list_parked` array, as (lot, slot, leg).
pub fn parked_slots(list: &[Value]) -> Vec<(String, u64, String)> {
    list.iter()
        .map(|p| {
            (
                p["lot"].as_str().unwrap_or_default().to_owned(),
                p["slot"].as_u64().unwrap_or_default(),
                p["leg"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Everything wrong with a received RTP stream that should be one stream
/// (DESIGN.md, RTP continuity): more than one SSRC, a sequence gap or
/// duplicate, or a marker bit anywhere but on packet 0 and at `switches`
/// (indices of the first packet of each new source, each of which must carry it).
pub fn continuity_problems(packets: &[RtpView], switches: &[usize]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ssrcs: Vec<u32> = packets.iter().map(|p| p.ssrc).collect();
    ssrcs.sort_unstable();
    ssrcs.dedup();
    if ssrcs.len() > 1 {
        problems.push(format!("{} SSRCs: {ssrcs:08x?}", ssrcs.len()));
    }
    for (i, w) in packets.windows(2).enumerate() {
        if w[1].seq != w[0].seq.wrapping_add(1) {
            problems.push(format!(
                "packet {}: sequence {} after {}",
                i + 1,
                w[1].seq,
                w[0].seq
            ));
        }
    }
    for (i, p) in packets.iter().enumerate().skip(1) {
        let switch = switches.contains(&i);
        if switch && !p.marker {
            problems.push(format!("packet {i} starts a new source but has no marker"));
        }
        if !switch && p.marker {
            problems.push(format!("packet {i} has a marker bit mid-source"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------
// What a phone heard (the SIP-core protocol tests).
// ---------------------------------------------------------------------------

/// Where a received packet came from, judged by its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The other phone, relayed (its payload starts with the peer's tag).
    Live,
    /// The `default` class of [`quick_media`].
    Music,
    /// Anything else.
    Other,
}

/// Judges one packet: the peer's stream, the quick `default` class (a PCMU tone
/// at [`QUICK_DEFAULT_HZ`] rather than the other test tones), or something else.
pub fn heard(p: &RtpView, peer_tag: [u8; 4]) -> Heard {
    if p.payload.starts_with(&peer_tag) {
        return Heard::Live;
    }
    let freqs = [QUICK_DEFAULT_HZ, 800.0, 1000.0];
    if p.pt == 0 && dominant_tone(&ulaw_samples(&p.payload), 8000, &freqs) == Some(0) {
        return Heard::Music;
    }
    Heard::Other
}

/// Parses every recorded datagram as RTP; panics on one that is not.
pub fn parse_all(recorded: &[Stamped]) -> Vec<RtpView> {
    recorded
        .iter()
        .map(|s| parse_rtp(&s.data).unwrap_or_else(|| panic!("not RTP: {:02x?}", s.data)))
        .collect()
}

/// Runs of packets from one source: (source, first index, length).
pub fn runs(kinds: &[Heard]) -> Vec<(Heard, usize, usize)> {
    let mut out: Vec<(Heard, usize, usize)> = Vec::new();
    for (i, &k) in kinds.iter().enumerate() {
        match out.last_mut() {
            Some(r) if r.0 == k => r.2 += 1,
            _ => out.push((k, i, 1)),
        }
    }
    out
}

/// A readable account of a stream, for failure messages.
pub fn describe(packets: &[RtpView], kinds: &[Heard]) -> String {
    runs(kinds)
        .iter()
        .map(|&(k, start, len)| {
            let (first, last) = (&packets[start], &packets[start + len - 1]);
            format!(
                "  {k:?}: {len} packets, seq {}..={}, ssrc {:08x}, pt {}, marker on first {}\n",
                first.seq, last.seq, first.ssrc, first.pt, first.marker
            )
        })
        .collect()
}

/// Asserts a phone heard its peer, then the `default` class, then its peer
/// again, as one stream: one SSRC, sequence numbers without a gap, the marker
/// on the first packet of each switch and nowhere else.
pub fn assert_live_music_live(who: &str, recorded: &[Stamped], peer_tag: [u8; 4], engine: &Engine) {
    let packets = parse_all(recorded);
    let kinds: Vec<Heard> = packets.iter().map(|p| heard(p, peer_tag)).collect();
    let runs = runs(&kinds);
    let sources: Vec<Heard> = runs.iter().map(|r| r.0).collect();
    let switches: Vec<usize> = runs.iter().skip(1).map(|r| r.1).collect();
    let mut problems = continuity_problems(&packets, &switches);
    for (i, p) in packets.iter().enumerate() {
        if kinds[i] == Heard::Music && (p.pt != 0 || p.payload.len() != 160) {
            problems.push(format!(
                "music packet {i} has PT {} and {} bytes, not PCMU 160",
                p.pt,
                p.payload.len()
            ));
        }
    }
    assert!(
        sources == [Heard::Live, Heard::Music, Heard::Live] && problems.is_empty(),
        "{who} should hear live → music → live as one stream; got {sources:?}; problems:\n  {}\n\
         stream:\n{}engine stderr:\n{}",
        problems.join("\n  "),
        describe(&packets, &kinds),
        engine.stderr()
    );
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, engine: &Engine, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting until {what}; stderr:\n{}",
                engine.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts both ports of a free pair are still rtpark's but refuse a sender as
/// closed ports do: the kernel answers port-unreachable, which a connected
/// sender sees as `ConnectionRefused` on its next send.
pub fn assert_pair_kept_and_refusing(port: u16) {
    for port in [port, port + 1] {
        assert!(
            UdpSocket::bind(("127.0.0.1", port)).is_err(),
            "free port {port} should stay bound by rtpark"
        );
        let peer = UdpSocket::bind(("127.0.0.1", 0)).unwrap();
        peer.connect(("127.0.0.1", port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match peer.send(b"late packet") {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(e) => panic!("port {port}: unexpected send error {e}"),
                Ok(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "port {port}: a sender was not refused 2 s after delete"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// xorshift64*: tiny, seeded, the same sequence on every run (chaos tests).
pub struct Rng(pub u64);

impl Rng {
    /// A generator seeded with `seed` (zero is replaced, xorshift sticks at it).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u32) -> bool {
        self.next() % 100 < u64::from(p)
    }

    /// One of `items`.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// A name drawn by weight from `table`.
    pub fn weighted(&mut self, table: &[(&'static str, usize)]) -> &'static str {
        let total: usize = table.iter().map(|(_, w)| w).sum();
        let mut n = self.below(total);
        for (name, w) in table {
            if n < *w {
                return name;
            }
            n -= w;
        }
        table[0].0
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Bytes for a test report: lossy text, long runs clipped.
pub fn shown(b: &[u8]) -> String {
    const KEEP: usize = 240;
    if b.len() <= KEEP {
        return format!("{:?}", String::from_utf8_lossy(b));
    }
    format!(
        "{:?}…[{} bytes]…{:?}",
        String::from_utf8_lossy(&b[..KEEP / 2]),
        b.len(),
        String::from_utf8_lossy(&b[b.len() - KEEP / 2..])
    )
}
