//! Debian's `rtpengine` (package rtpengine-daemon) as the engine under test, for a
//! side-by-side run: started in the foreground, userspace only (`--table=-1`, no
//! kernel module), without its config file, on loopback, controlled over ng.

use crate::engine::{pin_and_tie, EngineProcess};
use crate::ng::NgClient;
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How to start rtpengine.
pub struct RtpengineConfig<'a> {
    /// The binary (`rtpengine` from rtpengine-daemon).
    pub binary: &'a Path,
    /// CPU it is pinned to.
    pub cpu: usize,
    /// How it is scheduled.
    pub priority: crate::sys::Priority,
    /// `--num-threads`.
    pub threads: usize,
    /// First port of its media range.
    pub port_min: u16,
    /// Last port of its media range.
    pub port_max: u16,
    /// `--log-level` (syslog levels: 4 warning, 5 notice logs every call, 6 info
    /// every command).
    pub log_level: u8,
    /// Extra arguments appended verbatim (a later option overrides an earlier one).
    pub extra_args: &'a [String],
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// A free UDP port on 127.0.0.1 (bound and released; another process could take it
/// in between, which start-up would then report).
pub fn free_udp_port() -> Result<u16, String> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free UDP port for the ng listener: {e}"))
}

/// The command line [`start`] runs, for the report and for running it by hand.
pub fn command_line(cfg: &RtpengineConfig, ng: SocketAddr) -> Vec<String> {
    let mut args: Vec<String> = vec![
        cfg.binary.display().to_string(),
        // Not /etc/rtpengine/rtpengine.conf: its interface, ports and table are the
        // package's, not the run's.
        "--config-file=none".into(),
        "--foreground".into(),
        "--log-stderr".into(),
        format!("--log-level={}", cfg.log_level),
        // Userspace forwarding only: no xt_RTPENGINE kernel table.
        "--table=-1".into(),
        "--interface=127.0.0.1".into(),
        format!("--listen-ng={ng}"),
        format!("--port-min={}", cfg.port_min),
        format!("--port-max={}", cfg.port_max),
        format!("--num-threads={}", cfg.threads.max(1)),
        // Free a deleted call's ports at once (default: 30 s later), so the
        // setup-rate phase can reuse them.
        "--delete-delay=0".into(),
        // No RTP timeout inside a run (calls of the setup phase carry no media).
        "--timeout=3600".into(),
    ];
    args.extend(cfg.extra_args.iter().cloned());
    args
}

/// Starts rtpengine and waits (up to 10 s) until it answers an ng ping.
pub fn start(cfg: &RtpengineConfig) -> Result<(EngineProcess, NgClient, String), String> {
    let port = free_udp_port()?;
    let ng = SocketAddr::from(([127, 0, 0, 1], port));
    let args = command_line(cfg, ng);
    let shown = args.join(" ");
    let log = File::create(&cfg.log)
        .map_err(|e| format!("cannot create log {}: {e}", cfg.log.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot dup log handle: {e}"))?;
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..])
        .current_dir("/tmp")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    pin_and_tie(&mut cmd, cfg.cpu, cfg.priority);
    let child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e}; install it with `apt-get install rtpengine-daemon` \
             (Debian 12) or pass --rtpengine PATH",
            cfg.binary.display()
        )
    })?;
    let mut engine = EngineProcess::new(child, vec![cfg.log.clone()]);
    let mut client =
        NgClient::new(ng).map_err(|e| format!("cannot open the ng client socket: {e}"))?;
    let mut gone = || engine.exited();
    if let Err(e) = client.wait_ready(Duration::from_secs(10), &mut gone) {
        engine.keep_file(&cfg.log);
        return Err(format!(
            "{e}\ncommand: {shown}\nits output is in {}:\n{}",
            cfg.log.display(),
            crate::rtpark::tail(&cfg.log)
        ));
    }
    Ok((engine, client, shown))
}
