//! The hold mode's baseline: a minimal MOH sender with no engine around it, run as a
//! child process on the engine's core, so "the kernel's send cost" per packet is
//! measured in the same conditions as rtpark's MOH packets.
//!
//! It sends what rtpark sends to held legs: one connected UDP socket per leg, one
//! 172-byte G.711 packet (12-byte RTP header + 160 bytes) per leg every ptime, the
//! legs spread evenly over the ptime and released in `tick` batches (1 ms): every
//! tick it sends the packets that became due, one `send(2)` each (`--moh-baseline-io
//! send`), or as io_uring send SQEs on registered files submitted once per tick
//! (`--moh-baseline-io uring`). No payload is copied or built per packet beyond the
//! 8 header bytes that change.
//!
//! Protocol with the parent: one generator port per line and an empty line on
//! stdin; the child binds and connects one socket per port, prints `{"ports":[..]}`
//! (its own ports) and sends until stdin closes or `max_seconds` pass.

use crate::engine::{pin_and_tie, EngineProcess};
use crate::sys;
use io_uring::{opcode, squeue, types, IoUring};
use std::io::{self, BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// RTP payload bytes per packet (20 ms of G.711).
const PAYLOAD: usize = 160;
/// RTP header bytes.
const HEADER: usize = 12;

/// How the baseline sender hands packets to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendIo {
    /// One `send(2)` per packet on a connected socket.
    Send,
    /// io_uring send SQEs on registered files, one submit per tick.
    Uring,
}

impl SendIo {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            SendIo::Send => "send",
            SendIo::Uring => "uring",
        }
    }
}

/// Entry point of `--moh-sender-child`; returns the process exit code.
pub fn child_main(max_seconds: u64, ptime_ms: u64, tick_us: u64, io: SendIo) -> i32 {
    sys::set_min_timer_slack();
    match send_loop(max_seconds, ptime_ms, tick_us, io) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("moh baseline sender: {e}");
            1
        }
    }
}

fn send_loop(max_seconds: u64, ptime_ms: u64, tick_us: u64, io: SendIo) -> io::Result<()> {
    let stdin = io::stdin();
    let mut reader = BufReader::new(stdin.lock());
    let mut sockets: Vec<UdpSocket> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, line.clone()))?;
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.connect(("127.0.0.1", port))?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    drop(reader);
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect();
    let mut out = io::stdout().lock();
    writeln!(out, "{}", serde_json::json!({ "ports": ports }))?;
    out.flush()?;
    drop(out);
    if sockets.is_empty() {
        return Ok(());
    }

    let n = sockets.len() as u64;
    let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let stride = HEADER + PAYLOAD;
    // One packet buffer per leg; each is rewritten only one ptime after its send,
    // long after an io_uring submit has completed it (loopback sends complete inline).
    let mut pkts = vec![0xffu8; stride * sockets.len()];
    let mut seqs = vec![0u16; sockets.len()];
    for (k, p) in pkts.chunks_mut(stride).enumerate() {
        p[0] = 0x80;
        let ssrc = 0xba5e_0000u32 ^ (k as u32).wrapping_mul(0x9e37_79b9);
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
    let mut ring = match io {
        SendIo::Uring => {
            let ring: IoUring = IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build(4096)?;
            ring.submitter().register_files(&fds)?;
            Some(ring)
        }
        SendIo::Send => None,
    };
    let ptime_ns = ptime_ms * 1_000_000;
    let tick_ns = tick_us.max(1) * 1000;
    let phase = |k: u64| k * ptime_ns / n;
    let samples = (ptime_ms * 8) as u32;
    let t0 = sys::mono_ns();
    let deadline = t0 + max_seconds * 1_000_000_000;
    let (mut cycle, mut k) = (0u64, 0u64);
    let mut tick_due = t0;
    let mut ticks = 0u64;
    loop {
        sys::sleep_until(tick_due);
        let now = sys::mono_ns();
        loop {
            let due = t0 + cycle * ptime_ns + phase(k);
            if due > now {
                break;
            }
            let ku = k as usize;
            let seq = seqs[ku];
            seqs[ku] = seq.wrapping_add(1);
            let p = &mut pkts[ku * stride..(ku + 1) * stride];
            p[1] = if cycle == 0 { 0x80 } else { 0x00 };
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&(cycle as u32).wrapping_mul(samples).to_be_bytes());
            match ring.as_mut() {
                Some(ring) => {
                    let sqe =
                        opcode::Send::new(types::Fixed(ku as u32), p.as_ptr(), p.len() as u32)
                            .build()
                            .flags(squeue::Flags::SKIP_SUCCESS)
                            .user_data(ku as u64);
                    // SAFETY: the packet buffer outlives the submit below (it is only
                    // rewritten a ptime later).
                    while unsafe { ring.submission().push(&sqe) }.is_err() {
                        ring.submit()?;
                    }
                }
                None => {
                    // SAFETY: valid fd and buffer; errors (ECONNREFUSED from an
                    // earlier ICMP, EAGAIN) are ignored, the generator counts losses.
                    unsafe { libc::send(fds[ku], p.as_ptr().cast(), p.len(), 0) };
                }
            }
            k += 1;
            if k == n {
                k = 0;
                cycle += 1;
            }
        }
        if let Some(ring) = ring.as_mut() {
            ring.submit()?;
            // Failed sends post completions; drop them so the queue never fills.
            ring.completion().for_each(drop);
        }
        ticks += 1;
        if ticks % 100 == 0 && (stdin_closed() || now > deadline) {
            return Ok(());
        }
        // Late wake-ups skip ticks but keep the grid, so every leg keeps its place.
        tick_due += tick_ns;
        if tick_due < now {
            tick_due += (now - tick_due).div_ceil(tick_ns) * tick_ns;
        }
    }
}

/// Whether the parent closed our stdin (or died).
fn stdin_closed() -> bool {
    let mut p = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Starts the baseline sender pinned to `cpu` at `priority`, one socket per
/// generator port; returns the process and its ports.
pub fn spawn(
    cpu: usize,
    priority: sys::Priority,
    gen_ports: &[u16],
    max_seconds: u64,
    ptime_ms: u64,
    tick_us: u64,
    io: SendIo,
) -> Result<(EngineProcess, Vec<u16>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--moh-sender-child")
        .arg("--max-seconds")
        .arg(max_seconds.to_string())
        .arg("--ptime-ms")
        .arg(ptime_ms.to_string())
        .arg("--moh-tick-us")
        .arg(tick_us.to_string())
        .arg("--moh-baseline-io")
        .arg(io.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    pin_and_tie(&mut cmd, cpu, priority);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the MOH baseline {}: {e}", exe.display()))?;
    let mut engine = EngineProcess::new(child, Vec::new());
    let child = engine.child_mut().ok_or("baseline child vanished")?;
    let mut input = String::with_capacity(gen_ports.len() * 6 + 1);
    for p in gen_ports {
        input.push_str(&format!("{p}\n"));
    }
    input.push('\n');
    let v = crate::baseline::child_handshake(child, &input, "MOH baseline")?;
    let ports: Vec<u16> = v["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_u64())
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default();
    if ports.len() != gen_ports.len() {
        return Err(format!(
            "MOH baseline opened {} sockets for {} legs",
            ports.len(),
            gen_ports.len()
        ));
    }
    Ok((engine, ports))
}
