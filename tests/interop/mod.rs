//! Harness for tests/interop-kamailio.rs: a real Kamailio (Debian's 5.6, module
//! `rtpproxy` or `rtpengine`) and real sipp drive a real `rtpark`.
//!
//! A [`Scene`] is one such setup in a private temp dir, on ports of its own (so
//! scenes run in parallel): rtpark listening on a unix control socket for the
//! protocol under test and on its native socket (which the test reads), then
//! Kamailio with `examples/kamailio/<protocol>.cfg`, then sipp callee and caller
//! started by the test. Every process runs in a process group of its own and is
//! stopped when the scene drops — SIGTERM to the group, SIGKILL after 5 s — also
//! when the test panics; if the test process itself dies, each leader gets
//! SIGTERM (`PR_SET_PDEATHSIG`). On a panic the scene prints the tail of every
//! process's log and keeps its temp dir (`RTPARK_INTEROP_KEEP=1` keeps it always).
//!
//! Environment: `RTPARK_INTEROP_ENGINE` runs another engine binary than the one
//! cargo built (it must take the same flags); `RTPARK_INTEROP_LOG` sets rtpark's
//! `--log-level` (default `info`); `RTPARK_KAMAILIO_MODULES` names Kamailio's
//! module directory if it is not in a Debian place.

#![allow(dead_code)]

use crate::support::{
    self, continuity_problems, dominant_tone, parse_rtp, quick_media, ulaw_samples, Control,
    RtpView, Stamped, TempDir,
};
use serde_json::{json, Value};
use std::fs::File;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a missing tool's message tells the reader to do.
pub const INSTALL_HINT: &str = "install with ./dev.sh test (it installs kamailio and sip-tester)";

/// How long rtpark and Kamailio may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of each log shown when a test fails.
const LOG_TAIL: usize = 60;

/// Port slots of the interop tests: below the kernel's ephemeral range and
/// below the 20000–32000 slots of tests/support, so no other test's engine or
/// endpoint takes them.
const PORT_BASE: u16 = 12000;
const PORT_END: u16 = 20000;
const SLOT_PORTS: u16 = 200;
/// Scenes started by this test binary (picks port slots).
static SCENES: AtomicUsize = AtomicUsize::new(0);

/// The repository (examples/ and tests/ are read from it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rtpark control protocol Kamailio speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Kamailio's `rtpproxy` module: the rtpproxy protocol.
    Rtpproxy,
    /// Kamailio's `rtpengine` module: rtpengine's "ng" protocol (bencode).
    Ng,
}

impl Protocol {
    /// The Kamailio config in examples/kamailio.
    pub fn config(self) -> PathBuf {
        let name = match self {
            Protocol::Rtpproxy => "rtpproxy.cfg",
            Protocol::Ng => "rtpengine.cfg",
        };
        repo().join("examples/kamailio").join(name)
    }

    /// The rtpark flag that opens this protocol's listener.
    pub fn listen_flag(self) -> &'static str {
        match self {
            Protocol::Rtpproxy => "--listen-rtpproxy",
            Protocol::Ng => "--listen-ng",
        }
    }

    /// The socket file's name in the scene's dir.
    fn socket_name(self) -> &'static str {
        match self {
            Protocol::Rtpproxy => "rtpp.sock",
            Protocol::Ng => "ng.sock",
        }
    }

    /// The config define that names the socket.
    fn socket_define(self) -> &'static str {
        match self {
            Protocol::Rtpproxy => "RTPP_SOCK",
            Protocol::Ng => "NG_SOCK",
        }
    }

    /// The Kamailio module.
    fn module(self) -> &'static str {
        match self {
            Protocol::Rtpproxy => "rtpproxy",
            Protocol::Ng => "rtpengine",
        }
    }

    /// What the module logs once its first command (`V`/`VF` or `ping`) got
    /// an answer it accepts.
    fn found_line(self) -> &'static str {
        match self {
            Protocol::Rtpproxy => "found, support for it enabled",
            Protocol::Ng => "found, support for it enabled",
        }
    }
}

/// The programs the interop tests run.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `kamailio`.
    pub kamailio: PathBuf,
    /// `sipp`.
    pub sipp: PathBuf,
    /// Kamailio's module directory (holds rtpproxy.so and rtpengine.so).
    pub modules: PathBuf,
}

/// Finds kamailio, sipp and Kamailio's modules; panics with [`INSTALL_HINT`]
/// when something is missing.
pub fn tools() -> Tools {
    let kamailio = find_program("kamailio");
    let sipp = find_program("sipp");
    let modules = modules_dir();
    let mut missing = Vec::new();
    if kamailio.is_none() {
        missing.push("`kamailio` (Debian package kamailio)".to_owned());
    }
    if sipp.is_none() {
        missing.push("`sipp` (Debian package sip-tester)".to_owned());
    }
    if kamailio.is_some() && modules.is_none() {
        missing.push(
            "Kamailio's rtpproxy.so and rtpengine.so (Debian package kamailio; \
             or set RTPARK_KAMAILIO_MODULES to their directory)"
                .to_owned(),
        );
    }
    if !missing.is_empty() {
        panic!(
            "the Kamailio interop tests need {}: {INSTALL_HINT}",
            missing.join(" and ")
        );
    }
    Tools {
        kamailio: kamailio.expect("checked"),
        sipp: sipp.expect("checked"),
        modules: modules.expect("checked"),
    }
}

/// `name` on `PATH` or in an sbin directory (Debian puts kamailio in /usr/sbin,
/// which a non-root `PATH` may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Kamailio's module directory: `RTPARK_KAMAILIO_MODULES`, or the first of the
/// usual places that holds both rtpproxy.so and rtpengine.so.
fn modules_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("rtpproxy.so").is_file() && d.join("rtpengine.so").is_file();
    if let Some(dir) = std::env::var_os("RTPARK_KAMAILIO_MODULES") {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            candidates.push(e.path().join("kamailio/modules"));
        }
    }
    candidates.sort();
    candidates.extend(
        [
            "/usr/lib/kamailio/modules",
            "/usr/lib64/kamailio/modules",
            "/usr/local/lib64/kamailio/modules",
            "/usr/local/lib/kamailio/modules",
        ]
        .map(PathBuf::from),
    );
    candidates.into_iter().find(|d| has_both(d))
}

/// The ports of one scene.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Kamailio's SIP port.
    pub kamailio: u16,
    /// The sipp callee's SIP port.
    pub uas: u16,
    /// The sipp caller's SIP port.
    pub uac: u16,
    /// First RTP port of the sipp caller's media (`-mp`; sipp takes 4 a call).
    pub uac_media: u16,
    /// First RTP port of the sipp callee's media (`-mp`).
    pub uas_media: u16,
    /// rtpark's `--port-min`.
    pub rtp_min: u16,
    /// rtpark's `--port-max`.
    pub rtp_max: u16,
}

/// A slot of [`SLOT_PORTS`] UDP ports on 127.0.0.1 that nobody holds right now.
fn ports() -> Ports {
    let slots = usize::from((PORT_END - PORT_BASE) / SLOT_PORTS);
    let offset = std::process::id() as usize * 7;
    for _ in 0..slots {
        let n = SCENES.fetch_add(1, Ordering::Relaxed);
        let base = PORT_BASE + SLOT_PORTS * ((offset + n) % slots) as u16;
        let all_free = {
            let mut held = Vec::with_capacity(usize::from(SLOT_PORTS));
            (base..base + SLOT_PORTS).all(|p| match UdpSocket::bind(("127.0.0.1", p)) {
                Ok(s) => {
                    held.push(s);
                    true
                }
                Err(_) => false,
            })
        };
        if all_free {
            return Ports {
                kamailio: base,
                uas: base + 1,
                uac: base + 2,
                uac_media: base + 10,
                uas_media: base + 50,
                rtp_min: base + 100,
                rtp_max: base + SLOT_PORTS - 1,
            };
        }
    }
    panic!("no free slot of {SLOT_PORTS} UDP ports in {PORT_BASE}–{PORT_END} on 127.0.0.1");
}

/// A child process in a process group of its own, stopped on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file");
        // SAFETY: setpgid and prctl are async-signal-safe and touch no memory of
        // the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Proc {
            name: name.to_owned(),
            child,
            log,
            status: None,
        }
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t")
    }

    /// Whether the leader has exited, without reaping it (so its pid, the
    /// group's id, cannot be reused while we may still signal the group).
    fn leader_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        // SAFETY: all-zero is a valid siginfo_t; waitid on our own child.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (si_pid stays 0 if nothing exited).
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    fn signal_group(&self, signal: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: the group of our own unreaped child.
            unsafe {
                libc::killpg(self.pid(), signal);
            }
        }
    }

    /// Reaps an exited leader after killing whatever is left of its group.
    fn reap(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        self.signal_group(libc::SIGKILL);
        let status = self.child.wait().expect("wait for child");
        self.status = Some(status);
        status
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.leader_exited().then(|| self.reap())
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to its group, SIGKILL after [`STOP_GRACE`]; returns the status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while !self.leader_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// rtpark, Kamailio and the sipp processes of one test.
pub struct Scene {
    /// The protocol Kamailio speaks to rtpark.
    pub protocol: Protocol,
    /// The programs.
    pub tools: Tools,
    /// Its ports.
    pub ports: Ports,
    /// rtpark's native control socket.
    pub native: PathBuf,
    /// The socket Kamailio talks to.
    pub control: PathBuf,
    /// The music file Kamailio names in `P` / `play media` (a 600 Hz tone, as
    /// is the engine's `default` class).
    pub moh: PathBuf,
    procs: Vec<Proc>,
    dir: Option<TempDir>,
}

/// The tone of the music on hold ([`support::QUICK_DEFAULT_HZ`] and the file
/// the test names).
pub const MUSIC_HZ: f64 = support::QUICK_DEFAULT_HZ;
/// The tone of examples/sipp/tone-1000hz.ulaw, the caller's audio.
pub const CALLER_HZ: f64 = 1000.0;

impl Scene {
    /// Starts rtpark with a listener for `protocol`, then Kamailio with its
    /// config; returns once Kamailio answers SIP and has found rtpark.
    pub fn start(protocol: Protocol) -> Scene {
        let tools = tools();
        let dir = TempDir::new();
        let ports = ports();
        let native = dir.join("native.sock");
        let control = dir.join(protocol.socket_name());
        let config = dir.join("rtpark.toml");
        // cache_dir (shared by this build's tests) and 2 s tone classes; the
        // default class is a 600 Hz tone in default-600hz.wav.
        std::fs::write(&config, quick_media(&dir)).expect("write rtpark config");
        let moh = dir.join("default-600hz.wav");
        assert!(moh.is_file(), "quick_media wrote no {}", moh.display());
        let mut scene = Scene {
            protocol,
            tools,
            ports,
            native,
            control,
            moh,
            procs: Vec::new(),
            dir: Some(dir),
        };
        scene.start_rtpark(&config);
        scene.start_kamailio();
        scene
    }

    /// The scene's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scene dir").path()
    }

    fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no process {name}"))
    }

    fn start_rtpark(&mut self, config: &Path) {
        let engine = std::env::var_os("RTPARK_INTEROP_ENGINE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(support::RTPARK));
        let level = std::env::var("RTPARK_INTEROP_LOG").unwrap_or_else(|_| "info".into());
        let mut cmd = Command::new(&engine);
        cmd.arg("--interface")
            .arg("127.0.0.1")
            .arg("--listen-native")
            .arg(format!("unix:{}", self.native.display()))
            .arg(self.protocol.listen_flag())
            .arg(format!("unix:{}", self.control.display()))
            .arg("--port-min")
            .arg(self.ports.rtp_min.to_string())
            .arg("--port-max")
            .arg(self.ports.rtp_max.to_string())
            .arg("--config")
            .arg(config)
            .arg("--log-level")
            .arg(level);
        let log = self.dir().join("rtpark.log");
        self.procs.push(Proc::spawn("rtpark", &mut cmd, log));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.proc_mut("rtpark").exited() {
                panic!(
                    "rtpark exited during start-up with {status} (does this build take `{} unix:PATH`?)",
                    self.protocol.listen_flag()
                );
            }
            if self.control.exists() && native_ping(&self.native) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rtpark did not answer ping on {} and create {} within {START_TIMEOUT:?}",
                self.native.display(),
                self.control.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_kamailio(&mut self) {
        let dir = self.dir().to_owned();
        let defines = [
            format!("SIP_LISTEN=udp:127.0.0.1:{}", self.ports.kamailio),
            format!(
                "{}=\"unix:{}\"",
                self.protocol.socket_define(),
                self.control.display()
            ),
            format!("UAS_URI=\"sip:127.0.0.1:{}\"", self.ports.uas),
            format!("MOH=\"{}\"", self.moh.display()),
            format!("MODULES_DIR=\"{}/\"", self.tools.modules.display()),
        ];
        let mut cmd = Command::new(&self.tools.kamailio);
        cmd.arg("-DD")
            .arg("-E")
            .arg("-f")
            .arg(self.protocol.config())
            .arg("-Y")
            .arg(&dir)
            .arg("-w")
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-m")
            .arg("64")
            .arg("-M")
            .arg("8");
        for d in &defines {
            cmd.arg("-A").arg(d);
        }
        self.procs
            .push(Proc::spawn("kamailio", &mut cmd, dir.join("kamailio.log")));
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind SIP probe");
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set read timeout");
        let mut n = 0;
        loop {
            let kam = self.proc_mut("kamailio");
            if let Some(status) = kam.exited() {
                panic!("kamailio exited during start-up with {status}");
            }
            let log = kam.log();
            for bad in [
                "does not respond",
                "disabled",
                "can't connect",
                "can't read reply",
            ] {
                if log.contains(bad) {
                    panic!(
                        "kamailio's {} module did not accept rtpark's answer on {} (log says \"{bad}\")",
                        self.protocol.module(),
                        self.control.display()
                    );
                }
            }
            n += 1;
            if log.contains(self.protocol.found_line())
                && sip_options(&probe, self.ports.kamailio, n)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not answer OPTIONS on 127.0.0.1:{} and find rtpark within {START_TIMEOUT:?}",
                self.ports.kamailio
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Copies `files` of examples/sipp into the scene's dir (sipp opens
    /// rtp_stream files relative to its working directory, which is that dir).
    fn sipp_files(&self, files: &[&str]) {
        for f in files {
            let from = repo().join("examples/sipp").join(f);
            std::fs::copy(&from, self.dir().join(f))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
        }
    }

    /// Starts sipp as `name` with `scenario` (a path) and `args`, in the
    /// scene's dir, logging messages and errors there.
    pub fn sipp(&mut self, name: &str, scenario: &Path, local_port: u16, args: &[String]) {
        let dir = self.dir().to_owned();
        self.sipp_files(&["tone-1000hz.ulaw", "tone-440hz.ulaw"]);
        let mut cmd = Command::new(&self.tools.sipp);
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(scenario)
            .arg("-i")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(local_port.to_string())
            .arg("-nostdin")
            .arg("-timeout")
            .arg("180s")
            .arg("-timeout_error")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join(format!("{name}-errors.log")))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join(format!("{name}-messages.log")))
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(dir.join(format!("{name}-screen.log")))
            .args(args);
        self.procs
            .push(Proc::spawn(name, &mut cmd, dir.join(format!("{name}.log"))));
        if name.starts_with("uas") {
            // Ready once it holds its SIP port.
            let deadline = Instant::now() + START_TIMEOUT;
            while UdpSocket::bind(("127.0.0.1", local_port)).is_ok() {
                if let Some(status) = self.proc_mut(name).exited() {
                    panic!("sipp {name} exited during start-up with {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "sipp {name} did not bind 127.0.0.1:{local_port}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The exit status of process `name` if it has exited.
    pub fn exited(&mut self, name: &str) -> Option<ExitStatus> {
        self.proc_mut(name).exited()
    }

    /// Waits up to `timeout` for sipp `name` to finish and asserts it succeeded
    /// (sipp exits 0 when every call succeeded).
    pub fn expect_success(&mut self, name: &str, timeout: Duration) {
        let status = self.proc_mut(name).wait(timeout);
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("sipp {name} failed: {s} (1 = a call failed; see its logs below)"),
            None => panic!("sipp {name} did not finish within {timeout:?}"),
        }
    }

    /// Panics if sipp `name` has already exited with a failure.
    pub fn check_not_failed(&mut self, name: &str) {
        if let Some(s) = self.exited(name) {
            assert!(s.success(), "sipp {name} failed early: {s}");
        }
    }

    /// A native control connection to rtpark.
    pub fn native(&self) -> Control {
        Control::connect(&self.native)
    }

    /// Every log's tail, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            out.push_str(&format!(
                "\n===== {} ({}) =====\n{}\n",
                p.name,
                p.log.display(),
                p.log_tail(LOG_TAIL)
            ));
        }
        let dir = self.dir();
        for f in ["uac-errors.log", "uas-errors.log"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!(
                    "\n===== {f} =====\n{}\n",
                    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
                ));
            }
        }
        out
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let keep = std::thread::panicking() || std::env::var_os("RTPARK_INTEROP_KEEP").is_some();
        if std::thread::panicking() {
            eprintln!(
                "interop scene ({:?}) failed; logs in {}:{}",
                self.protocol,
                self.dir().display(),
                self.logs()
            );
        }
        // sipp first, then Kamailio, then rtpark: callers before what they call.
        while let Some(mut p) = self.procs.pop() {
            p.stop();
        }
        if keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("kept {}", dir.path().display());
                std::mem::forget(dir);
            }
        }
    }
}

/// Whether rtpark answers a native `ping` on `path` right now.
fn native_ping(path: &Path) -> bool {
    let Ok(stream) = UnixStream::connect(path) else {
        return false;
    };
    drop(stream);
    let mut ctl = Control::connect(path);
    ctl.request(json!({"cmd": "ping"}))["ok"] == json!(true)
}

/// Sends one OPTIONS to Kamailio and waits briefly for its 200.
fn sip_options(sock: &UdpSocket, port: u16, n: usize) -> bool {
    let local = sock.local_addr().expect("probe address");
    let msg = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-rtpark-probe-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=probe{n}\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: rtpark-probe-{n}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    if sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => {
                let reply = String::from_utf8_lossy(&buf[..len]);
                if reply.starts_with("SIP/2.0 200") && reply.contains(&format!("probe-{n}@")) {
                    return true;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return false,
        }
    }
}

// ---------------------------------------------------------------------------
// What rtpark reports over its native socket.
// ---------------------------------------------------------------------------

/// The `calls` array of `list_calls`.
pub fn list_calls(ctl: &mut Control) -> Vec<Value> {
    let reply = ctl.ok(json!({"cmd": "list_calls"}));
    reply["calls"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("list_calls without a calls array: {reply}"))
}

/// `stats.free_port_pairs`.
pub fn free_port_pairs(ctl: &mut Control) -> u64 {
    let reply = ctl.ok(json!({"cmd": "stats"}));
    reply["free_port_pairs"]
        .as_u64()
        .unwrap_or_else(|| panic!("stats without free_port_pairs: {reply}"))
}

/// The call holding a leg whose signalled `remote` is `addr`, and that leg.
pub fn find_leg(calls: &[Value], addr: SocketAddr) -> Option<(Value, Value)> {
    let want = json!(addr.to_string());
    calls.iter().find_map(|c| {
        c["legs"]
            .as_array()?
            .iter()
            .find(|l| l["remote"] == want)
            .map(|l| (c.clone(), l.clone()))
    })
}

/// One counter of a leg object (0 if absent).
pub fn counter(leg: &Value, name: &str) -> u64 {
    leg["counters"][name].as_u64().unwrap_or(0)
}

/// Whether every leg of `call` (at least two) has received and sent RTP.
pub fn media_both_ways(call: &Value) -> bool {
    let legs = call["legs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    legs.len() >= 2
        && legs
            .iter()
            .all(|l| counter(l, "rtp_in") > 0 && counter(l, "rtp_out") > 0)
}

/// Polls `list_calls` until no call is left; panics after `timeout`.
pub fn wait_no_calls(ctl: &mut Control, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let calls = list_calls(ctl);
        if calls.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "calls still in rtpark {timeout:?} after the last BYE: {calls:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `stats` until `free_port_pairs` is `want`; panics after `timeout`.
pub fn wait_free_pairs(ctl: &mut Control, want: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let free = free_port_pairs(ctl);
        if free == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "free_port_pairs is {free} {timeout:?} after the calls ended, {want} before them"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// What the callee hears.
// ---------------------------------------------------------------------------

/// Who a packet the callee received came from, judged by its audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The caller's 1000 Hz tone (tone-1000hz.ulaw, relayed).
    Caller,
    /// rtpark's 600 Hz music on hold.
    Music,
    /// Neither clearly (silence, a frame straddling a switch, not PCMU).
    Other,
}

/// Judges one received RTP packet.
pub fn heard(p: &RtpView) -> Heard {
    if p.pt != 0 || p.payload.is_empty() {
        return Heard::Other;
    }
    match dominant_tone(&ulaw_samples(&p.payload), 8000, &[CALLER_HZ, MUSIC_HZ]) {
        Some(0) => Heard::Caller,
        Some(_) => Heard::Music,
        None => Heard::Other,
    }
}

/// Runs of the same [`Heard`] (ignoring `Other`): (who, first index, last index, count).
pub fn runs(heard: &[Heard]) -> Vec<(Heard, usize, usize, usize)> {
    let mut out: Vec<(Heard, usize, usize, usize)> = Vec::new();
    for (i, &h) in heard.iter().enumerate() {
        if h == Heard::Other {
            continue;
        }
        match out.last_mut() {
            Some(run) if run.0 == h => {
                run.2 = i;
                run.3 += 1;
            }
            _ => out.push((h, i, i, 1)),
        }
    }
    out
}

/// Parses what a recorder got (non-RTP datagrams are an error).
pub fn rtp_packets(got: &[Stamped]) -> Vec<RtpView> {
    got.iter()
        .enumerate()
        .map(|(i, s)| {
            parse_rtp(&s.data).unwrap_or_else(|| {
                panic!(
                    "datagram {i} from {} is not RTP: {:02x?}",
                    s.from,
                    &s.data[..s.data.len().min(32)]
                )
            })
        })
        .collect()
}

/// Everything wrong with the stream a callee heard across live → music → live:
/// the runs must be caller, music, caller (at least `min_run` packets each, at
/// most a few unclear frames), and the whole stream one RTP stream with the
/// marker bit on exactly one packet at each of the two switches
/// ([`continuity_problems`]).
pub fn hold_stream_problems(packets: &[RtpView], min_run: usize) -> Vec<String> {
    let heard: Vec<Heard> = packets.iter().map(heard).collect();
    let runs = runs(&heard);
    let shape: Vec<Heard> = runs.iter().map(|r| r.0).collect();
    let mut problems = Vec::new();
    if shape != [Heard::Caller, Heard::Music, Heard::Caller] {
        problems.push(format!(
            "heard {} (who, first, last, count); want caller, music, caller",
            runs.iter()
                .map(|r| format!("{:?} {}..={} ({})", r.0, r.1, r.2, r.3))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return problems;
    }
    for r in &runs {
        if r.3 < min_run {
            problems.push(format!(
                "only {} packets of {:?} (packets {}..={}), want at least {min_run}",
                r.3, r.0, r.1, r.2
            ));
        }
    }
    let unclear = heard.iter().filter(|&&h| h == Heard::Other).count();
    if unclear > 5.max(packets.len() / 20) {
        problems.push(format!(
            "{unclear} of {} packets are neither the caller's tone nor the music",
            packets.len()
        ));
    }
    // Each switch happens somewhere after the last packet of the old source and
    // at or before the first clear packet of the new one; exactly one marker
    // there, none elsewhere (packet 0 may carry one).
    let mut switches = Vec::new();
    for w in runs.windows(2) {
        let (after, upto) = (w[0].2 + 1, w[1].1);
        let marked: Vec<usize> = (after..=upto).filter(|&i| packets[i].marker).collect();
        match marked.as_slice() {
            [one] => switches.push(*one),
            [] => switches.push(upto),
            many => problems.push(format!(
                "{} markers at the switch {:?} → {:?} (packets {many:?})",
                many.len(),
                w[0].0,
                w[1].0
            )),
        }
    }
    problems.extend(continuity_problems(packets, &switches));
    problems
}
