//! Transports of the SIP-core protocols (rtpproxy and ng): Unix sockets with
//! one command per connection, newline-framed Unix streams, and UDP with
//! cookies and a reply cache that answers retransmissions without running a
//! command twice.

use super::listen::bind_unix_as;
use crate::config::ControlSocket;
use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest command accepted on any SIP-core socket (an ng offer carries SDP).
pub const MAX_COMMAND_BYTES: usize = 256 * 1024;

/// How long a UDP reply is kept to answer retransmissions of its command.
pub const REPLY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Runs one command: the bare command in, the bare reply out (no cookie).
pub type Handler = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Waits until the workers have run every job the handler left queued on this
/// thread; runs before any reply leaves.
pub type Flush = Arc<dyn Fn() + Send + Sync>;

/// Says whether the bytes read so far on a one-command connection hold the
/// whole command (`unix:` sockets have no framing of their own).
pub type Complete = fn(&[u8]) -> bool;

/// The protocol's error reply (bare, no cookie) for a reply of this many bytes
/// that does not fit in a UDP datagram.
pub type TooBig = fn(usize) -> Vec<u8>;

/// A bound SIP-core socket, ready to serve.
pub enum Bound {
    /// `unix:`: one command per connection.
    Unix(UnixListener),
    /// `cunix:`: newline-framed commands with cookies on a persistent connection.
    Cunix(UnixListener),
    /// `udp:`: a cookie per datagram.
    Udp(UdpSocket),
}

/// Binds `addr` (for the protocol named `what`, used in messages).
pub fn bind(addr: &ControlSocket, what: &str) -> io::Result<Bound> {
    match addr {
        ControlSocket::Unix(p) => Ok(Bound::Unix(bind_unix_as(p, what)?)),
        ControlSocket::Cunix(p) => Ok(Bound::Cunix(bind_unix_as(p, what)?)),
        ControlSocket::Udp(a) => UdpSocket::bind(a).map(Bound::Udp).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{what}: cannot listen on udp:{a}: {e}; is another rtpark or rtpengine running?"),
            )
        }),
    }
}

/// Threads accepting on one `unix:` socket: a client that connects and stalls
/// holds one of them, not the socket (the modules wait without a timeout).
const UNIX_ACCEPTORS: usize = 4;

/// Serves a bound socket on its own thread(s) until the process ends.
pub fn spawn(
    bound: Bound,
    name: &str,
    handler: Handler,
    complete: Complete,
    too_big: TooBig,
    flush: Flush,
) -> io::Result<()> {
    let thread = std::thread::Builder::new().name(format!("rtpark-{name}"));
    // Stream transports answer one command at a time: flush after each.
    let flushed = |handler: Handler, flush: Flush| -> Handler {
        Arc::new(move |command: &[u8]| {
            let reply = handler(command);
            flush();
            reply
        })
    };
    match bound {
        Bound::Unix(l) => {
            let handler = flushed(handler, flush);
            for _ in 1..UNIX_ACCEPTORS {
                let (l, handler) = (l.try_clone()?, handler.clone());
                std::thread::Builder::new()
                    .name(format!("rtpark-{name}"))
                    .spawn(move || serve_unix(l, handler, complete))?;
            }
            thread.spawn(move || serve_unix(l, handler, complete))
        }
        Bound::Cunix(l) => {
            let handler = flushed(handler, flush);
            thread.spawn(move || serve_cunix(l, handler))
        }
        Bound::Udp(s) => thread.spawn(move || serve_udp(s, handler, too_big, flush)),
    }
    .map(|_| ())
}

/// Splits `cookie SP command`. A datagram without a space is all cookie.
pub fn split_cookie(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b' ') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[]),
    }
}

fn with_cookie(cookie: &[u8], reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 1 + reply.len());
    out.extend_from_slice(cookie);
    out.push(b' ');
    out.extend_from_slice(reply);
    out
}

fn serve_unix(listener: UnixListener, handler: Handler, complete: Complete) {
    for conn in listener.incoming() {
        match conn {
            // Connections are short and the engine serialises commands anyway:
            // a few acceptors serving in turn keep a flood from spawning threads.
            Ok(stream) => {
                if let Err(e) = one_command(stream, &handler, complete) {
                    log::debug!("control connection: {e}");
                }
            }
            Err(e) => {
                log::warn!("control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one command (until it is complete or the client closes its side),
/// answers it and closes.
fn one_command(mut stream: UnixStream, handler: &Handler, complete: Complete) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16384];
    loop {
        let n = stream.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || complete(&buf) || buf.len() > MAX_COMMAND_BYTES {
            break;
        }
    }
    if buf.is_empty() {
        return Ok(());
    }
    let reply = handler(&buf);
    stream.write_all(&reply)
}

fn serve_cunix(listener: UnixListener, handler: Handler) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let handler = handler.clone();
                let spawned = std::thread::Builder::new()
                    .name("rtpark-cunix".into())
                    .spawn(move || {
                        if let Err(e) = cookie_lines(stream, &handler) {
                            log::debug!("control connection ended: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    log::error!("cannot start a control connection thread: {e}");
                }
            }
            Err(e) => {
                log::warn!("control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Newline-framed `cookie command` lines; each reply is `cookie reply`.
fn cookie_lines(stream: UnixStream, handler: &Handler) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_COMMAND_BYTES as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let (cookie, command) = split_cookie(&line);
        let reply = handler(command);
        writer.write_all(&with_cookie(cookie, &reply))?;
    }
}

/// Most bytes of replies the cache holds; the oldest go first beyond it.
const REPLY_CACHE_BYTES: usize = 64 << 20;

/// A reply with its cookie, shared by the cache and the batch being sent.
type Reply = Rc<[u8]>;

/// Replies kept for retransmissions, by sender and cookie, oldest first.
struct ReplyCache {
    map: HashMap<(SocketAddr, Vec<u8>), Reply>,
    order: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    bytes: usize,
}

impl ReplyCache {
    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.order.front() {
            if now.duration_since(*at) < REPLY_CACHE_TTL && self.bytes <= REPLY_CACHE_BYTES {
                break;
            }
            if let Some((_, from, cookie)) = self.order.pop_front() {
                if let Some(r) = self.map.remove(&(from, cookie)) {
                    self.bytes -= r.len();
                }
            }
        }
    }

    fn insert(&mut self, now: Instant, from: SocketAddr, cookie: Vec<u8>, reply: Reply) {
        self.bytes += reply.len();
        if let Some(old) = self.map.insert((from, cookie.clone()), reply) {
            self.bytes -= old.len();
        }
        self.order.push_back((now, from, cookie));
    }
}

/// Most datagrams handled before their replies go out together.
const UDP_BATCH: usize = 32;

/// The largest UDP payload to an address of this family.
fn max_datagram(to: &SocketAddr) -> usize {
    match to {
        SocketAddr::V4(_) => 65_507,
        SocketAddr::V6(_) => 65_527,
    }
}

fn serve_udp(socket: UdpSocket, handler: Handler, too_big: TooBig, flush: Flush) {
    let mut cache = ReplyCache {
        map: HashMap::new(),
        order: VecDeque::new(),
        bytes: 0,
    };
    // Non-blocking, so that every queued command is handled before one flush
    // waits for the workers and the replies go out.
    if let Err(e) = socket.set_nonblocking(true) {
        log::warn!("control socket: cannot make it non-blocking: {e}");
    }
    let mut buf = vec![0u8; 65536];
    let mut replies: Vec<(Reply, SocketAddr)> = Vec::with_capacity(UDP_BATCH);
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if replies.is_empty() {
                    wait_readable(&socket);
                } else {
                    send_replies(&socket, &flush, &mut replies);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("control socket receive failed: {e}");
                send_replies(&socket, &flush, &mut replies);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let now = Instant::now();
        cache.expire(now);
        let (cookie, command) = split_cookie(&buf[..n]);
        let key = (from, cookie.to_vec());
        let reply = match cache.map.get(&key) {
            Some(r) => r.clone(),
            None => {
                let body = handler(command);
                let mut reply = with_cookie(cookie, &body);
                if reply.len() > max_datagram(&from) {
                    log::info!(
                        "a {}-byte reply to {from} does not fit in a UDP datagram; answering with an error",
                        body.len()
                    );
                    reply = with_cookie(cookie, &too_big(body.len()));
                }
                let reply: Reply = reply.into();
                cache.insert(now, key.0, key.1, reply.clone());
                reply
            }
        };
        replies.push((reply, from));
        if replies.len() >= UDP_BATCH {
            send_replies(&socket, &flush, &mut replies);
        }
    }
}

/// Flushes the workers, then sends every reply of the batch in one system call
/// (a client waiting on many replies then wakes once for them).
fn send_replies(socket: &UdpSocket, flush: &Flush, replies: &mut Vec<(Reply, SocketAddr)>) {
    if replies.is_empty() {
        return;
    }
    flush();
    let batch: Vec<(&[u8], SocketAddr)> = replies.iter().map(|(r, to)| (&r[..], *to)).collect();
    for (to, e) in super::backend::send_batch(socket.as_raw_fd(), &batch) {
        log::debug!("control reply to {to} failed: {e}");
    }
    replies.clear();
}

/// Blocks until the socket has a datagram (or a signal interrupts the wait).
fn wait_readable(socket: &UdpSocket) {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, -1) };
}
