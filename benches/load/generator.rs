//! The traffic generator: two UDP endpoints per call, each sending G.711-rate RTP to
//! its relay port, paced evenly over the packet time in small batches, and receiving
//! what the relay forwards. One thread, so its CPU and its lag are easy to account for.
//!
//! Two transports: io_uring (sends queued as SQEs and submitted once per batch,
//! multishot `recvmsg` with a provided-buffer ring, registered files) and epoll with
//! `send` + `recvmmsg`. On loopback the sender pays for the receiver's softirq, so
//! per packet the generator does as much kernel work as the relay it measures; the
//! io_uring transport removes most of the syscall overhead on top of that.

use crate::hist::Histogram;
use crate::sys;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Bytes of RTP header the generator writes (no CSRC, no extension).
const RTP_HEADER: usize = 12;
/// Bytes at the start of the payload carrying the probe fields.
pub const PROBE: usize = 24;
/// Datagrams per recvmmsg call.
const VLEN: usize = 8;
/// Receive buffer per datagram (epoll transport).
const RX_BUF: usize = 2048;
/// Control buffer per datagram, in u64 words (room for one timespec cmsg).
const CTRL_WORDS: usize = 8;
/// Control bytes asked for from multishot recvmsg: CMSG_SPACE(sizeof(timespec)).
const URING_CTRL: usize = 32;
/// Provided buffers in the io_uring receive ring (a power of two).
const URING_BUFS: u16 = 16384;
/// Buffer group id of that ring.
const BGID: u16 = 7;
/// `user_data` bit marking a send.
const SEND_TAG: u64 = 1 << 63;

/// Which kernel interface moves the generator's packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// io_uring: batched sends, multishot receive.
    Uring,
    /// epoll + send + recvmmsg.
    Epoll,
}

/// Pacing and measurement windows, all in ns.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Packet time (20 ms for G.711 at 160 bytes).
    pub ptime_ns: u64,
    /// Pacing granularity: every tick sends the packets that became due.
    pub tick_ns: u64,
    /// io_uring: submit after this many queued sends.
    pub submit_batch: usize,
    /// Traffic before the measurement window.
    pub warmup_ns: u64,
    /// Length of the measurement window.
    pub window_ns: u64,
    /// After the last send, receiving goes on until this long passes without a window
    /// packet arriving (or all came back, or 10 s passed), so late is not lost.
    pub drain_ns: u64,
    /// Print a progress line to stderr this often (0: never).
    pub progress_ns: u64,
}

/// Readings taken at the edges of the measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// CLOCK_MONOTONIC when taken.
    pub at_ns: u64,
    /// Engine on-CPU time, all threads, from schedstat.
    pub engine_cpu_ns: u64,
    /// Engine utime + stime in clock ticks (cross-check of the above).
    pub engine_ticks: u64,
    /// The engine core's counters.
    pub engine_core: sys::CoreTicks,
    /// The generator core's counters.
    pub load_core: sys::CoreTicks,
    /// This process's CPU time.
    pub gen_cpu_ns: u64,
    /// Datagrams received by the generator so far.
    pub received: u64,
    /// Engine VmRSS in KiB.
    pub engine_rss_kib: u64,
    /// Engine voluntary context switches (≈ wake-ups), all threads.
    pub engine_wakeups: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Packets sent, whole run.
    pub sent_total: u64,
    /// Packets received, whole run.
    pub received_total: u64,
    /// Packets sent inside the window.
    pub sent_window: u64,
    /// Packets sent inside the window that came back (whenever they arrived).
    pub received_window: u64,
    /// Received packets whose sequence number was not above the stream's last one.
    pub out_of_order: u64,
    /// Received packets that arrived at the wrong endpoint or did not parse.
    pub misrouted: u64,
    /// Sends that failed (EAGAIN, ENOBUFS, ...).
    pub send_errors: u64,
    /// Sends or receives that reported ECONNREFUSED (an ICMP port unreachable).
    pub refused: u64,
    /// io_uring: multishot receives that ended and were re-armed (e.g. buffers ran out).
    pub rearms: u64,
    /// Latency send → kernel receive timestamp at the far endpoint, µs.
    pub latency_wire: Histogram,
    /// Latency send → generator reading it, µs (includes the generator's own delay).
    pub latency_app: Histogram,
    /// How late each packet was sent against its schedule, µs.
    pub send_lag: Histogram,
    /// How late each pacing tick woke up, µs.
    pub tick_late: Histogram,
    /// Ticks that found the previous tick's work still running past their own slot.
    pub overruns: u64,
    /// Wall time spent in the send loop during the window (ns).
    pub send_busy_ns: u64,
    /// Wall time spent receiving during the window (ns).
    pub recv_busy_ns: u64,
    /// Window packets sent per second of the window.
    pub sent_per_second: Vec<u64>,
    /// Window packets received per second of the window (by send second).
    pub received_per_second: Vec<u64>,
    /// Packets received per second of the window (by arrival second).
    pub arrivals_per_second: Vec<u64>,
    /// Readings at the window start.
    pub start: Sample,
    /// Readings at the window end.
    pub end: Sample,
    /// Why the run ended early, if it did.
    pub aborted: Option<String>,
    /// When the last packet sent inside the window arrived (CLOCK_MONOTONIC).
    pub last_window_arrival_ns: u64,
    /// How long receiving went on after the last send (ns).
    pub drained_ns: u64,
}

/// Per-endpoint state (one RTP stream sent, the opposite one received).
struct Stream {
    /// Index of the socket it sends from and receives on.
    sock: usize,
    seq: u32,
    ssrc: u32,
    last_rx_seq: Option<u32>,
    /// Sequence number of the last packet sent and how much later than its stamp it
    /// actually left (io_uring: its place in the submitted batch), to correct latency.
    tx_seq: u32,
    tx_delay_ns: u64,
}

/// Where the receive paths deliver datagrams: the relay run's [`RxContext`] or the
/// hold mode's per-leg analysis.
pub trait Sink {
    /// Clock readings (CLOCK_MONOTONIC, CLOCK_REALTIME) taken just before the
    /// datagrams that follow were harvested.
    fn set_now(&mut self, mono: u64, real: u64);
    /// One datagram read on socket `sock`, with its kernel receive timestamp.
    fn datagram(&mut self, sock: usize, data: &[u8], kstamp: Option<u64>);
    /// Counters for what the transports see besides datagrams (refusals, re-arms,
    /// unparsable completions, failed sends).
    fn counters(&mut self) -> &mut RunResult;
}

/// What the receive path needs to classify a datagram.
struct RxContext<'a> {
    streams: &'a mut [Stream],
    r: &'a mut RunResult,
    win_start: u64,
    send_end: u64,
    now: u64,
    now_real: u64,
}

impl Sink for RxContext<'_> {
    fn set_now(&mut self, mono: u64, real: u64) {
        self.now = mono;
        self.now_real = real;
    }

    fn counters(&mut self) -> &mut RunResult {
        self.r
    }

    /// Accounts one datagram received on socket `sock`.
    fn datagram(&mut self, sock: usize, data: &[u8], kstamp: Option<u64>) {
        let r = &mut *self.r;
        r.received_total += 1;
        if self.now >= self.win_start {
            let sec = ((self.now - self.win_start) / 1_000_000_000) as usize;
            if let Some(c) = r.arrivals_per_second.get_mut(sec) {
                *c += 1;
            }
        }
        let Some(p) = parse_probe(data) else {
            r.misrouted += 1;
            return;
        };
        // The endpoint this stream's peer is: it must own the socket it arrived on.
        let k = p.stream as usize ^ 1;
        if self.streams.get(k).map(|s| s.sock) != Some(sock) {
            r.misrouted += 1;
            return;
        }
        let s = &mut self.streams[k];
        if let Some(last) = s.last_rx_seq {
            if p.seq <= last {
                r.out_of_order += 1;
            }
        }
        s.last_rx_seq = Some(s.last_rx_seq.map_or(p.seq, |l| l.max(p.seq)));
        if p.mono < self.win_start || p.mono >= self.send_end {
            return;
        }
        r.received_window += 1;
        r.last_window_arrival_ns = self.now;
        let sec = ((p.mono - self.win_start) / 1_000_000_000) as usize;
        if let Some(c) = r.received_per_second.get_mut(sec) {
            *c += 1;
        }
        let sender = &self.streams[p.stream as usize];
        let delay = if sender.tx_seq == p.seq {
            sender.tx_delay_ns
        } else {
            0
        };
        r.latency_app
            .record(self.now.saturating_sub(p.mono + delay) / 1000);
        let at = kstamp.unwrap_or(self.now_real);
        r.latency_wire
            .record(at.saturating_sub(p.real + delay) / 1000);
    }
}

/// The kernel interface in use.
enum Transport {
    Epoll(EpollIo),
    Uring(Box<UringIo>),
}

/// The generator's sockets, packet buffers and transport.
pub struct Generator {
    sockets: Vec<UdpSocket>,
    streams: Vec<Stream>,
    /// Shared-socket mode: each stream's relay address, for sendto (stable memory,
    /// io_uring sends point into it). Empty in per-call mode (sockets are connected).
    dests: Vec<libc::sockaddr_in>,
    /// io_uring: (endpoint, stamp) of the sends queued since the last submit.
    batch: Vec<(usize, u64)>,
    /// One packet buffer per endpoint (stable while io_uring sends are in flight).
    tx: Vec<u8>,
    stride: usize,
    transport: Transport,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Generator {
    /// Binds the endpoints on 127.0.0.1 with receive timestamps enabled: two sockets
    /// per call, or with `shared_sockets` > 0 that many per side, shared round-robin
    /// by the calls (each call still has its own A and B address pair per socket).
    /// With [`TransportKind::Uring`] it falls back to epoll (and says so on stderr) if
    /// io_uring is unavailable.
    pub fn new(
        calls: usize,
        payload: usize,
        kind: TransportKind,
        shared_sockets: usize,
    ) -> io::Result<Generator> {
        let nsock = if shared_sockets > 0 {
            2 * shared_sockets.min(calls)
        } else {
            2 * calls
        };
        let per_side = nsock / 2;
        let mut sockets = Vec::with_capacity(nsock);
        for _ in 0..nsock {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            let fd = s.as_raw_fd();
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
            if shared_sockets > 0 {
                // A shared socket queues many streams: give it room (FORCE needs root).
                for (force, plain) in [
                    (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
                    (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
                ] {
                    if setsockopt_int(fd, libc::SOL_SOCKET, force, 32 << 20).is_err() {
                        let _ = setsockopt_int(fd, libc::SOL_SOCKET, plain, 32 << 20);
                    }
                }
            }
            sockets.push(s);
        }
        let streams: Vec<Stream> = (0..calls * 2)
            .map(|k| Stream {
                // Side (A = even, B = odd) picks the half, the call picks the socket.
                sock: (k & 1) * per_side + (k >> 1) % per_side,
                seq: 0,
                ssrc: 0x5eed_0000 ^ (k as u32).wrapping_mul(0x9e37_79b9),
                last_rx_seq: None,
                tx_seq: u32::MAX,
                tx_delay_ns: 0,
            })
            .collect();
        let stride = RTP_HEADER + payload;
        let mut tx = vec![0xffu8; stride * streams.len()];
        for chunk in tx.chunks_mut(stride) {
            chunk[0] = 0x80;
        }
        let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
        let transport = match kind {
            TransportKind::Uring => match UringIo::new(&fds, stride) {
                Ok(u) => Transport::Uring(u),
                Err(e) => {
                    eprintln!("note: io_uring unavailable ({e}); the generator uses epoll");
                    Transport::Epoll(EpollIo::new(&fds)?)
                }
            },
            TransportKind::Epoll => Transport::Epoll(EpollIo::new(&fds)?),
        };
        Ok(Generator {
            sockets,
            streams,
            dests: Vec::new(),
            batch: Vec::with_capacity(4096),
            tx,
            stride,
            transport,
        })
    }

    /// The transport actually in use.
    pub fn transport(&self) -> TransportKind {
        match self.transport {
            Transport::Epoll(_) => TransportKind::Epoll,
            Transport::Uring(_) => TransportKind::Uring,
        }
    }

    /// Whether sockets are shared between calls.
    fn shared(&self) -> bool {
        self.sockets.len() < self.streams.len()
    }

    /// Per call, the local addresses of endpoints A and B.
    pub fn addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let local: Vec<SocketAddr> = self
            .sockets
            .iter()
            // A bound socket always has a local address.
            .map(|s| s.local_addr().expect("bound socket has an address"))
            .collect();
        self.streams
            .chunks(2)
            .map(|p| (local[p[0].sock], local[p[1].sock]))
            .collect()
    }

    /// Points endpoint A of each call at its relay address A, and B at B: connects
    /// the sockets in per-call mode, records sendto addresses in shared mode.
    pub fn connect(&mut self, relay: &[(SocketAddr, SocketAddr)]) -> io::Result<()> {
        if !self.shared() {
            for (pair, (a, b)) in self.streams.chunks(2).zip(relay) {
                self.sockets[pair[0].sock].connect(a)?;
                self.sockets[pair[1].sock].connect(b)?;
            }
            return Ok(());
        }
        self.dests = relay
            .iter()
            .flat_map(|(a, b)| [a, b])
            .map(|a| {
                let SocketAddr::V4(v4) = a else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "IPv6 relay address",
                    ));
                };
                Ok(libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(())
    }

    /// Sends until the window closes, drains, and returns what it measured.
    /// `sample` is called at the window's start and end; `engine_gone` every 100 ms
    /// returns why the engine is no longer running, if it is not.
    pub fn run(
        &mut self,
        sch: &Schedule,
        sample: &mut dyn FnMut(u64) -> Sample,
        engine_gone: &mut dyn FnMut() -> Option<String>,
    ) -> RunResult {
        let n = self.streams.len() as u64;
        let samples_per_packet = sch.ptime_ns * 8000 / 1_000_000_000;
        let mut r = RunResult::default();
        let window_secs = sch.window_ns.div_ceil(1_000_000_000) as usize;
        r.sent_per_second = vec![0; window_secs];
        r.received_per_second = vec![0; window_secs];
        r.arrivals_per_second = vec![0; window_secs + 1];

        if let Transport::Uring(u) = &mut self.transport {
            u.arm_all(&mut r);
        }
        let t0 = sys::mono_ns() + 20_000_000;
        let win_start = t0 + sch.warmup_ns;
        let send_end = win_start + sch.window_ns;
        let drain_limit = send_end + 10_000_000_000;
        let phase = |k: u64| k * sch.ptime_ns / n;
        let (mut cycle, mut k) = (0u64, 0u64);
        let mut tick_due = t0;
        let mut sending = true;
        let mut in_window = false;
        let mut next_check = t0;
        let mut next_progress = t0 + sch.progress_ns;

        loop {
            let mut now = sys::mono_ns();
            if now < tick_due {
                sys::sleep_until(tick_due);
                now = sys::mono_ns();
            }
            r.tick_late.record(now.saturating_sub(tick_due) / 1000);
            if !in_window && sending && now >= win_start {
                in_window = true;
                r.start = sample(r.received_total);
            }

            let send_started = sys::mono_ns();
            let mut batch = std::mem::take(&mut self.batch);
            while sending {
                let sched = t0 + cycle * sch.ptime_ns + phase(k);
                if sched > now {
                    break;
                }
                if sched >= send_end {
                    sending = false;
                    break;
                }
                let ku = k as usize;
                let s = &mut self.streams[ku];
                let seq = s.seq;
                s.seq = s.seq.wrapping_add(1);
                let pkt = &mut self.tx[ku * self.stride..(ku + 1) * self.stride];
                pkt[1] = if seq == 0 { 0x80 } else { 0x00 };
                pkt[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
                pkt[4..8]
                    .copy_from_slice(&((seq as u64 * samples_per_packet) as u32).to_be_bytes());
                pkt[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                let mono = sys::mono_ns();
                let real = sys::real_ns();
                pkt[12..20].copy_from_slice(&mono.to_be_bytes());
                pkt[20..24].copy_from_slice(&(k as u32).to_be_bytes());
                pkt[24..28].copy_from_slice(&seq.to_be_bytes());
                pkt[28..36].copy_from_slice(&real.to_be_bytes());
                let dest = self.dests.get(ku);
                let sent = match &mut self.transport {
                    Transport::Epoll(e) => send_now(e.fds[s.sock], pkt, dest, &mut r),
                    Transport::Uring(u) => {
                        u.queue_send(s.sock, pkt, dest, &mut r);
                        batch.push((ku, mono));
                        if batch.len() >= sch.submit_batch {
                            submit_batch(u, &mut batch, &mut self.streams, &mut r);
                        }
                        true
                    }
                };
                if sent {
                    r.sent_total += 1;
                    if mono >= win_start && mono < send_end {
                        r.sent_window += 1;
                        let sec = ((mono - win_start) / 1_000_000_000) as usize;
                        if let Some(c) = r.sent_per_second.get_mut(sec) {
                            *c += 1;
                        }
                    }
                }
                r.send_lag.record(mono.saturating_sub(sched) / 1000);
                k += 1;
                if k == n {
                    k = 0;
                    cycle += 1;
                }
            }
            if let Transport::Uring(u) = &mut self.transport {
                if !batch.is_empty() {
                    submit_batch(u, &mut batch, &mut self.streams, &mut r);
                }
            }
            self.batch = batch;

            let recv_started = sys::mono_ns();
            let mut ctx = RxContext {
                streams: &mut self.streams,
                r: &mut r,
                win_start,
                send_end,
                now: recv_started,
                now_real: sys::real_ns(),
            };
            match &mut self.transport {
                Transport::Epoll(e) => e.drain(&mut ctx),
                Transport::Uring(u) => u.drain(&mut ctx),
            }
            let now = sys::mono_ns();
            if in_window {
                r.send_busy_ns += recv_started - send_started;
                r.recv_busy_ns += now - recv_started;
            }
            if !sending && in_window {
                in_window = false;
                r.end = sample(r.received_total);
            }
            if now >= next_check {
                next_check = now + 100_000_000;
                if r.aborted.is_none() {
                    if sys::stopping() {
                        r.aborted = Some("interrupted".into());
                    } else if let Some(why) = engine_gone() {
                        r.aborted = Some(format!("engine exited: {why}"));
                    }
                }
                if r.aborted.is_some() {
                    if in_window {
                        r.end = sample(r.received_total);
                    }
                    break;
                }
            }
            if sch.progress_ns > 0 && now >= next_progress {
                next_progress += sch.progress_ns;
                eprintln!(
                    "  t={:>5.1}s sent {} received {} (window: sent {} received {})",
                    (now - t0) as f64 / 1e9,
                    r.sent_total,
                    r.received_total,
                    r.sent_window,
                    r.received_window
                );
            }
            if !sending {
                let quiet_since = r.last_window_arrival_ns.max(send_end);
                if r.received_window >= r.sent_window
                    || now >= quiet_since + sch.drain_ns
                    || now >= drain_limit
                {
                    r.drained_ns = now.saturating_sub(send_end);
                    break;
                }
            }
            tick_due += sch.tick_ns;
            if tick_due + sch.tick_ns < now {
                // More than a whole tick behind: count it and do not try to catch up
                // with a burst of empty ticks (sends catch up by schedule anyway).
                r.overruns += 1;
                tick_due = now;
            }
        }
        r
    }
}

/// Receive-only endpoints (the hold mode's listeners): one socket per leg on
/// 127.0.0.1 with kernel receive timestamps, read through the same transports as
/// the relay generator.
pub struct Receiver {
    sockets: Vec<UdpSocket>,
    transport: Transport,
}

impl Receiver {
    /// Binds `n` sockets; falls back to epoll (saying so) if io_uring is unavailable.
    pub fn new(n: usize, kind: TransportKind) -> io::Result<Receiver> {
        let mut sockets = Vec::with_capacity(n);
        for _ in 0..n {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            setsockopt_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
            sockets.push(s);
        }
        let fds: Vec<i32> = sockets.iter().map(|s| s.as_raw_fd()).collect();
        let transport = match kind {
            TransportKind::Uring => match UringIo::new(&fds, RTP_HEADER + 256) {
                Ok(u) => Transport::Uring(u),
                Err(e) => {
                    eprintln!("note: io_uring unavailable ({e}); the receiver uses epoll");
                    Transport::Epoll(EpollIo::new(&fds)?)
                }
            },
            TransportKind::Epoll => Transport::Epoll(EpollIo::new(&fds)?),
        };
        Ok(Receiver { sockets, transport })
    }

    /// The local address of every socket, by index.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .map(|s| s.local_addr().expect("bound socket has an address"))
            .collect()
    }

    /// The transport actually in use.
    pub fn transport(&self) -> TransportKind {
        match self.transport {
            Transport::Epoll(_) => TransportKind::Epoll,
            Transport::Uring(_) => TransportKind::Uring,
        }
    }

    /// Starts receiving (io_uring: arms a multishot receive per socket).
    pub fn arm(&mut self, sink: &mut impl Sink) {
        if let Transport::Uring(u) = &mut self.transport {
            u.arm_all(sink.counters());
        }
    }

    /// Reads everything that has arrived and hands it to `sink`.
    pub fn drain(&mut self, sink: &mut impl Sink) {
        match &mut self.transport {
            Transport::Epoll(e) => e.drain(sink),
            Transport::Uring(u) => u.drain(sink),
        }
    }
}

/// Submits the queued sends and records, per packet, how long after its stamp it
/// left: sends run in order inside the submit, so packet j of m leaves at about
/// start + (j + 1) / m of the call.
fn submit_batch(
    u: &mut UringIo,
    batch: &mut Vec<(usize, u64)>,
    streams: &mut [Stream],
    r: &mut RunResult,
) {
    let start = sys::mono_ns();
    u.submit(r);
    let took = sys::mono_ns() - start;
    let m = batch.len() as u64;
    for (j, &(k, stamp)) in batch.iter().enumerate() {
        let left = start + took * (j as u64 + 1) / m;
        let s = &mut streams[k];
        s.tx_seq = s.seq.wrapping_sub(1);
        s.tx_delay_ns = left.saturating_sub(stamp);
    }
    batch.clear();
}

/// Sets an int socket option.
fn setsockopt_int(fd: i32, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd, pointer and length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One `send` (connected socket) or `sendto` (`dest`), retried once after a stale
/// ICMP error.
fn send_now(fd: i32, pkt: &[u8], dest: Option<&libc::sockaddr_in>, r: &mut RunResult) -> bool {
    let (addr, len) = match dest {
        Some(d) => (
            (d as *const libc::sockaddr_in).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ),
        None => (std::ptr::null(), 0),
    };
    for _attempt in 0..2 {
        // SAFETY: `pkt` is a valid buffer of the given length; `addr` is null or a
        // valid sockaddr_in of `len` bytes.
        let rc = unsafe { libc::sendto(fd, pkt.as_ptr().cast(), pkt.len(), 0, addr, len) };
        if rc >= 0 {
            return true;
        }
        if errno() != libc::ECONNREFUSED {
            r.send_errors += 1;
            return false;
        }
        // The error belonged to an earlier datagram; it is now cleared.
        r.refused += 1;
    }
    false
}

/// epoll + recvmmsg receive path.
struct EpollIo {
    epoll: i32,
    fds: Vec<i32>,
    events: Vec<libc::epoll_event>,
    bufs: Vec<u8>,
    ctrl: Vec<u64>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl EpollIo {
    fn new(fds: &[i32]) -> io::Result<EpollIo> {
        // SAFETY: plain syscall.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut e = EpollIo {
            epoll,
            fds: fds.to_vec(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 1024],
            bufs: vec![0; VLEN * RX_BUF],
            ctrl: vec![0; VLEN * CTRL_WORDS],
            iov: Vec::with_capacity(VLEN),
            hdrs: Vec::with_capacity(VLEN),
        };
        for (k, &fd) in fds.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: k as u64,
            };
            // SAFETY: valid epoll fd, socket fd and event.
            if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for i in 0..VLEN {
            let base = e.bufs[i * RX_BUF..].as_mut_ptr();
            e.iov.push(libc::iovec {
                iov_base: base.cast(),
                iov_len: RX_BUF,
            });
        }
        for i in 0..VLEN {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut e.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = e.ctrl[i * CTRL_WORDS..].as_mut_ptr().cast();
            e.hdrs.push(h);
        }
        Ok(e)
    }

    /// One recvmmsg on `fd`; returns the datagram count or the errno.
    fn recv(&mut self, fd: i32) -> Result<usize, i32> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_controllen = CTRL_WORDS * 8;
            h.msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self`, whose heap
        // allocations never move after `new`.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                VLEN as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }

    /// Reads everything that is ready on every endpoint.
    fn drain(&mut self, ctx: &mut impl Sink) {
        loop {
            // SAFETY: `events` is a valid array of the given length.
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll,
                    self.events.as_mut_ptr(),
                    self.events.len() as i32,
                    0,
                )
            };
            if ready <= 0 {
                return;
            }
            for j in 0..ready as usize {
                let k = self.events[j].u64 as usize;
                let fd = self.fds[k];
                loop {
                    let got = match self.recv(fd) {
                        Ok(0) => break,
                        Ok(got) => got,
                        Err(e) if e == libc::ECONNREFUSED => {
                            ctx.counters().refused += 1;
                            continue;
                        }
                        Err(_) => break,
                    };
                    ctx.set_now(sys::mono_ns(), sys::real_ns());
                    for i in 0..got {
                        let h = &self.hdrs[i];
                        let len = (h.msg_len as usize).min(RX_BUF);
                        let stamp = cmsg_timestamp(&h.msg_hdr);
                        ctx.datagram(k, &self.bufs[i * RX_BUF..i * RX_BUF + len], stamp);
                    }
                    if got < VLEN {
                        break;
                    }
                }
            }
            if (ready as usize) < self.events.len() {
                return;
            }
        }
    }
}

impl Drop for EpollIo {
    fn drop(&mut self) {
        // SAFETY: we own the epoll fd and close it once.
        unsafe { libc::close(self.epoll) };
    }
}

/// The SCM_TIMESTAMPNS value of a received message, CLOCK_REALTIME ns.
fn cmsg_timestamp(h: &libc::msghdr) -> Option<u64> {
    let mut stamp = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros stay within
    // msg_controllen, and the timespec is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    stamp
}

/// The SCM_TIMESTAMPNS value in raw control bytes (as multishot recvmsg returns them).
fn raw_cmsg_timestamp(mut ctrl: &[u8]) -> Option<u64> {
    const HDR: usize = 16; // CMSG_ALIGN(sizeof(struct cmsghdr)) on 64-bit
    while ctrl.len() >= HDR {
        let len = usize::from_ne_bytes(ctrl[0..8].try_into().ok()?);
        let level = i32::from_ne_bytes(ctrl[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(ctrl[12..16].try_into().ok()?);
        if len < HDR || len > ctrl.len() {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS && len >= HDR + 16 {
            let sec = i64::from_ne_bytes(ctrl[HDR..HDR + 8].try_into().ok()?);
            let nsec = i64::from_ne_bytes(ctrl[HDR + 8..HDR + 16].try_into().ok()?);
            return Some(sec as u64 * 1_000_000_000 + nsec as u64);
        }
        let next = (len + 7) & !7;
        ctrl = ctrl.get(next..)?;
    }
    None
}

/// io_uring transport: registered files, sends as SQEs (no CQE on success),
/// one multishot recvmsg per endpoint fed by a provided-buffer ring.
struct UringIo {
    ring: IoUring,
    /// Page-aligned memory of the buffer ring (URING_BUFS entries).
    ring_mem: *mut types::BufRingEntry,
    ring_len: usize,
    /// Our copy of the ring tail; published after each harvest.
    tail: u16,
    bufs: Vec<u8>,
    buf_size: usize,
    /// Template for every multishot recvmsg (only namelen/controllen matter).
    msghdr: Box<libc::msghdr>,
    /// Sockets whose multishot receive ended and must be re-armed.
    rearm: Vec<usize>,
    /// Buffers consumed in the current harvest, to put back.
    recycled: Vec<u16>,
    sockets: usize,
}

impl UringIo {
    fn new(fds: &[i32], stride: usize) -> io::Result<Box<UringIo>> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(65536)
            .build(4096)?;
        ring.submitter().register_files(fds)?;
        let ring_len = URING_BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: anonymous private mapping; checked for failure below.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let buf_size = (16 + URING_CTRL + stride).next_power_of_two().max(256);
        let mut u = Box::new(UringIo {
            ring,
            ring_mem: mem.cast(),
            ring_len,
            tail: 0,
            bufs: vec![0; buf_size * URING_BUFS as usize],
            buf_size,
            // SAFETY: msghdr is plain data; all-zero is valid.
            msghdr: Box::new(unsafe { std::mem::zeroed() }),
            rearm: Vec::new(),
            recycled: Vec::with_capacity(URING_BUFS as usize),
            sockets: fds.len(),
        });
        u.msghdr.msg_controllen = URING_CTRL;
        // SAFETY: the ring memory stays mapped until Drop, after the ring is gone.
        unsafe {
            u.ring.submitter().register_buf_ring_with_flags(
                u.ring_mem as u64,
                URING_BUFS,
                BGID,
                0,
            )?;
        }
        for bid in 0..URING_BUFS {
            u.recycle(bid);
        }
        u.publish_tail();
        Ok(u)
    }

    /// Puts buffer `bid` back at the ring's tail (published by [`Self::publish_tail`]).
    fn recycle(&mut self, bid: u16) {
        let idx = (self.tail & (URING_BUFS - 1)) as usize;
        // SAFETY: idx < URING_BUFS, inside the mapping; the kernel only reads entries
        // below the published tail, and this one is above it.
        let e = unsafe { &mut *self.ring_mem.add(idx) };
        e.set_addr(self.bufs[bid as usize * self.buf_size..].as_ptr() as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the tail field lives in the first entry of the mapping; the kernel
        // reads it with acquire ordering.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.ring_mem) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    /// Queues one SQE, submitting first if the queue is full; counts a send error if
    /// it still does not fit.
    fn push(&mut self, sqe: squeue::Entry, r: &mut RunResult) {
        for attempt in 0..2 {
            // SAFETY: every SQE points at memory that outlives the operation: packet
            // buffers and send addresses owned by the generator, the msghdr template
            // owned by `self`.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            if attempt == 0 {
                self.submit(r);
            }
        }
        r.send_errors += 1;
    }

    fn arm(&mut self, k: usize, r: &mut RunResult) {
        let sqe = opcode::RecvMsgMulti::new(types::Fixed(k as u32), &*self.msghdr, BGID)
            .build()
            .user_data(k as u64);
        self.push(sqe, r);
    }

    fn arm_all(&mut self, r: &mut RunResult) {
        for k in 0..self.sockets {
            self.arm(k, r);
        }
        self.submit(r);
    }

    /// Queues a send of `pkt` from endpoint `k`; `pkt` must stay untouched until the
    /// next submit (it does: each endpoint's buffer is rewritten one ptime later).
    fn queue_send(
        &mut self,
        sock: usize,
        pkt: &[u8],
        dest: Option<&libc::sockaddr_in>,
        r: &mut RunResult,
    ) {
        let mut op = opcode::Send::new(types::Fixed(sock as u32), pkt.as_ptr(), pkt.len() as u32);
        if let Some(d) = dest {
            op = op
                .dest_addr((d as *const libc::sockaddr_in).cast())
                .dest_addr_len(std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t);
        }
        let sqe = op
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(SEND_TAG | sock as u64);
        self.push(sqe, r);
    }

    /// Submits queued SQEs (loopback sends complete inside this call).
    fn submit(&mut self, r: &mut RunResult) {
        if let Err(e) = self.ring.submit() {
            if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EAGAIN) {
                r.send_errors += 1;
            }
        }
    }

    /// Runs deferred receive work and accounts every completion.
    fn drain(&mut self, ctx: &mut impl Sink) {
        loop {
            // GETEVENTS with min_complete 0: run the deferred task work (the multishot
            // receives) and return at once.
            // SAFETY: no SQEs are pending here that point at freed memory.
            let _ = unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    0,
                    0,
                    io_uring::EnterFlags::GETEVENTS.bits(),
                    None,
                )
            };
            ctx.set_now(sys::mono_ns(), sys::real_ns());
            let mut seen = 0usize;
            let mut recycled = std::mem::take(&mut self.recycled);
            {
                let mut cq = self.ring.completion();
                cq.sync();
                for cqe in &mut cq {
                    seen += 1;
                    let ud = cqe.user_data();
                    let res = cqe.result();
                    if ud & SEND_TAG != 0 {
                        if res == -libc::ECONNREFUSED {
                            ctx.counters().refused += 1;
                        }
                        ctx.counters().send_errors += 1;
                        continue;
                    }
                    let k = ud as usize;
                    if !cqueue::more(cqe.flags()) {
                        self.rearm.push(k);
                    }
                    let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                        if res == -libc::ECONNREFUSED {
                            ctx.counters().refused += 1;
                        }
                        continue;
                    };
                    recycled.push(bid);
                    if res < 0 {
                        continue;
                    }
                    let start = bid as usize * self.buf_size;
                    let buf = &self.bufs[start..start + (res as usize).min(self.buf_size)];
                    if let Ok(out) = types::RecvMsgOut::parse(buf, &self.msghdr) {
                        let stamp = raw_cmsg_timestamp(out.control_data());
                        ctx.datagram(k, out.payload_data(), stamp);
                    } else {
                        ctx.counters().misrouted += 1;
                    }
                }
            }
            for &bid in &recycled {
                self.recycle(bid);
            }
            recycled.clear();
            self.recycled = recycled;
            self.publish_tail();
            if !self.rearm.is_empty() {
                let rearm = std::mem::take(&mut self.rearm);
                ctx.counters().rearms += rearm.len() as u64;
                for k in rearm {
                    self.arm(k, ctx.counters());
                }
                self.submit(ctx.counters());
            }
            // The kernel runs at most 20 deferred task-work items per enter
            // (IO_LOCAL_TW_DEFAULT_MAX); a full harvest may have left more behind.
            if seen < 20 {
                return;
            }
        }
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        // SAFETY: the buffer ring is unregistered; nothing references the mapping.
        unsafe { libc::munmap(self.ring_mem.cast(), self.ring_len) };
    }
}

struct Probe {
    mono: u64,
    stream: u32,
    seq: u32,
    real: u64,
}

/// The probe fields of a relayed packet, wherever the relay put the payload.
fn parse_probe(d: &[u8]) -> Option<Probe> {
    if d.len() < RTP_HEADER || d[0] >> 6 != 2 {
        return None;
    }
    let mut off = RTP_HEADER + 4 * (d[0] & 0x0f) as usize;
    if d[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*d.get(off + 2)?, *d.get(off + 3)?]) as usize;
        off += 4 + 4 * words;
    }
    let p = d.get(off..off + PROBE)?;
    let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |i: usize| u32::from_be_bytes(p[i..i + 4].try_into().unwrap_or([0; 4]));
    Some(Probe {
        mono: u64_at(0),
        stream: u32_at(8),
        seq: u32_at(12),
        real: u64_at(16),
    })
}
