//! The baseline: a minimal relay loop (epoll, connected sockets, plain recv/send, no
//! user-space work) run as a child process, so rtpark's cost per packet has a yardstick
//! measured in the same run on the same core.
//!
//! Protocol with the parent: the parent writes one line "PORT_A PORT_B" per call (the
//! generator's two endpoints) and an empty line; the child binds one socket per
//! endpoint, connects it to that endpoint, prints `{"ports":[[a,b],...]}` and relays
//! until its stdin closes or `max_seconds` pass. A datagram read on a call's A socket
//! leaves through its B socket and vice versa, the topology of a bridged call.

use crate::engine::{pin_and_tie, EngineProcess};
use std::io::{self, BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// Marks the stdin entry in the epoll set.
const STDIN_TOKEN: u64 = u64::MAX;

/// Entry point of `--baseline-relay-child`; returns the process exit code.
pub fn child_main(max_seconds: u64) -> i32 {
    match relay(max_seconds) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("baseline relay: {e}");
            1
        }
    }
}

fn relay(max_seconds: u64) -> io::Result<()> {
    let stdin = io::stdin();
    let mut reader = BufReader::new(stdin.lock());
    let mut sockets: Vec<UdpSocket> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        for port in line.split_whitespace() {
            let port: u16 = port
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, line.clone()))?;
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.connect(("127.0.0.1", port))?;
            s.set_nonblocking(true)?;
            sockets.push(s);
        }
    }
    if sockets.len() % 2 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "odd socket count",
        ));
    }
    let ports: Vec<[u16; 2]> = sockets
        .chunks(2)
        .map(|p| {
            let a = p[0].local_addr().map(|a| a.port()).unwrap_or(0);
            let b = p[1].local_addr().map(|a| a.port()).unwrap_or(0);
            [a, b]
        })
        .collect();
    let mut out = io::stdout().lock();
    writeln!(out, "{}", serde_json::json!({ "ports": ports }))?;
    out.flush()?;
    drop(out);

    let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    // SAFETY: plain syscalls on fds we own; the event array outlives every call.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: STDIN_TOKEN,
        };
        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, 0, &mut ev);
        for (i, &fd) in fds.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(max_seconds);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = [0u8; 2048];
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 1000);
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in &events[..n as usize] {
                let token = ev.u64;
                if token == STDIN_TOKEN {
                    // The parent closed our stdin (or died): stop.
                    return Ok(());
                }
                let from = fds[token as usize];
                let to = fds[token as usize ^ 1];
                loop {
                    let r = libc::recv(from, buf.as_mut_ptr().cast(), buf.len(), 0);
                    if r < 0 {
                        // ECONNREFUSED (an ICMP answering an earlier send) is consumed
                        // and the drain goes on; EAGAIN or anything else ends it.
                        if io::Error::last_os_error().raw_os_error() == Some(libc::ECONNREFUSED) {
                            continue;
                        }
                        break;
                    }
                    libc::send(to, buf.as_ptr().cast(), r as usize, 0);
                }
            }
            if n == 0 && std::time::Instant::now() > deadline {
                return Ok(());
            }
        }
    }
}

/// Starts the baseline relay pinned to `cpu` at `priority` for the generator
/// endpoints `gen_ports` (per call: A, B); returns the process and the relay port per
/// endpoint.
pub fn spawn(
    cpu: usize,
    priority: crate::sys::Priority,
    gen_ports: &[(u16, u16)],
    max_seconds: u64,
) -> Result<(EngineProcess, Vec<(u16, u16)>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--baseline-relay-child")
        .arg("--max-seconds")
        .arg(max_seconds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    pin_and_tie(&mut cmd, cpu, priority);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start baseline relay {}: {e}", exe.display()))?;
    let mut engine = EngineProcess::new(child, Vec::new());
    let child = engine.child_mut().ok_or("baseline child vanished")?;
    let mut input = String::with_capacity(gen_ports.len() * 12 + 1);
    for (a, b) in gen_ports {
        input.push_str(&format!("{a} {b}\n"));
    }
    input.push('\n');
    let v = child_handshake(child, &input, "baseline relay")?;
    let ports: Vec<(u16, u16)> = v["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p[0].as_u64()? as u16, p[1].as_u64()? as u16)))
                .collect()
        })
        .unwrap_or_default();
    if ports.len() != gen_ports.len() {
        return Err(format!(
            "baseline relay opened {} port pairs for {} calls",
            ports.len(),
            gen_ports.len()
        ));
    }
    Ok((engine, ports))
}

/// Writes `input` to a baseline child's stdin and reads its one-line JSON answer
/// (the ports it bound) from stdout.
pub fn child_handshake(
    child: &mut std::process::Child,
    input: &str,
    what: &str,
) -> Result<serde_json::Value, String> {
    let stdin = child.stdin.as_mut().ok_or("baseline child has no stdin")?;
    stdin
        .write_all(input.as_bytes())
        .and_then(|_| stdin.flush())
        .map_err(|e| format!("cannot write to the {what}: {e}"))?;
    let stdout = child.stdout.take().ok_or("baseline child has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the {what}'s ports: {e}"))?;
    serde_json::from_str(&line)
        .map_err(|e| format!("{what} said {line:?} instead of its ports: {e}"))
}
