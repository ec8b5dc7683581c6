//! The rtpengine "ng" control protocol, as Kamailio speaks it, for driving an engine
//! (Debian's `rtpengine`, or rtpark with `--listen-ng`) with the same load: a UDP
//! client (bencode by `rtpark::control::bencode`) that keeps a window of requests in flight
//! (each `<cookie> <bencode dict>`, matched by cookie, sent again on timeout), and the
//! offer / answer / delete exchanges of a bridged call.
//!
//! Per call `i` of a batch named `P`: call-id `P-i`, from-tag `P-i-a`, to-tag `P-i-b`.
//! The offer carries the caller's SDP (its RTP port) and the engine's reply names the
//! address the callee must send to; the answer carries the callee's SDP and its reply
//! names the address the caller must send to.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use rtpark::control::bencode::{self, Value};

/// The flags Kamailio's `rtpengine_offer()` / `rtpengine_answer()` send with a plain
/// RTP/AVP SDP from a public address.
fn kamailio_flags(pairs: &mut Vec<(&str, Value)>) {
    pairs.push(("replace", Value::str_list(["origin", "session-connection"])));
    pairs.push(("ICE", Value::str("remove")));
    pairs.push(("received-from", Value::str_list(["IP4", "127.0.0.1"])));
}

/// The minimal SDP of one G.711 µ-law endpoint.
pub fn sdp(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        addr.port()
    )
}

/// The RTP address of the first audio stream in an SDP body (the media-level `c=`
/// if there is one, else the session-level one, else 127.0.0.1).
pub fn media_address(sdp: &str) -> Option<SocketAddr> {
    let conn = |l: &str| -> Option<IpAddr> {
        let mut f = l.strip_prefix("c=")?.split_whitespace();
        f.next();
        f.next();
        f.next()?.split('/').next()?.parse().ok()
    };
    let mut session_ip = None;
    let mut port = None;
    let mut media_ip = None;
    for l in sdp.lines().map(str::trim_end) {
        if let Some(m) = l.strip_prefix("m=") {
            if port.is_some() {
                break;
            }
            let mut f = m.split_whitespace();
            if f.next() == Some("audio") {
                port = f.next().and_then(|p| p.parse::<u16>().ok());
            }
        } else if l.starts_with("c=") {
            if port.is_some() {
                media_ip = conn(l);
            } else {
                session_ip = conn(l);
            }
        }
    }
    let ip = media_ip
        .or(session_ip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    port.filter(|&p| p != 0).map(|p| SocketAddr::new(ip, p))
}

/// Names of call `i` in batch `prefix`: (call-id, from-tag, to-tag).
fn names(prefix: &str, i: usize) -> (String, String, String) {
    let cid = format!("{prefix}-{i}");
    (cid.clone(), format!("{cid}-a"), format!("{cid}-b"))
}

/// One request waiting for its reply.
struct Pending {
    job: usize,
    step: usize,
    /// The whole datagram, kept to send it again.
    wire: Vec<u8>,
    command: String,
    sent: Instant,
    tries: u32,
}

/// Replies read per `recvmmsg`.
const RX_BATCH: usize = 32;
/// Largest reply accepted (rtpengine's delete replies carry statistics).
const RX_SIZE: usize = 65536;

/// An ng client over one UDP socket connected to the engine's ng port. Replies are
/// read in batches and the requests they release are sent in one `sendmmsg`, so the
/// client wakes the engine (and is woken) once per batch rather than per request: at
/// tens of thousands of requests per second the client must not be the bottleneck.
pub struct NgClient {
    sock: UdpSocket,
    engine: SocketAddr,
    /// Cookie prefix, unique to this process.
    prefix: String,
    next_cookie: u64,
    /// RX_BATCH receive buffers of RX_SIZE bytes.
    rx: Vec<u8>,
    /// Length and truncation of each datagram of the last [`Self::recv_batch`].
    rx_lens: Vec<(usize, bool)>,
    /// Cookies of the requests queued for the next [`Self::flush`].
    outbox: Vec<u64>,
    /// How long a request waits for its reply before it is sent again.
    pub rto: Duration,
    /// Sends of one request before giving up.
    pub max_tries: u32,
    /// Requests sent again since the client was made.
    pub retransmits: u64,
    /// Replies whose cookie matched nothing outstanding (answers to a resend).
    pub stray_replies: u64,
}

impl NgClient {
    /// A client for the ng listener at `engine`.
    pub fn new(engine: SocketAddr) -> io::Result<NgClient> {
        let bind = if engine.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(engine)?;
        // Blocking reads that give up after 5 ms, so the resend timer is checked.
        sock.set_read_timeout(Some(Duration::from_millis(5)))?;
        // Replies to a full window (delete replies carry statistics) must not overflow.
        let size: libc::c_int = 8 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a valid int option value.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
        Ok(NgClient {
            sock,
            engine,
            prefix: format!("L{}_", std::process::id()),
            next_cookie: 1,
            rx: vec![0; RX_BATCH * RX_SIZE],
            rx_lens: Vec::with_capacity(RX_BATCH),
            outbox: Vec::with_capacity(RX_BATCH * 2),
            rto: Duration::from_millis(1000),
            max_tries: 5,
            retransmits: 0,
            stray_replies: 0,
        })
    }

    /// Sends `ping` until the engine answers `pong` or `limit` passes (or `alive`
    /// returns why the engine is gone).
    pub fn wait_ready(
        &mut self,
        limit: Duration,
        alive: &mut dyn FnMut() -> Option<String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let (rto, tries) = (self.rto, self.max_tries);
        self.rto = Duration::from_millis(100);
        self.max_tries = 1;
        let result = loop {
            if let Some(why) = alive() {
                break Err(format!("the engine exited during start-up ({why})"));
            }
            let ping = Value::dict(vec![("command", Value::str("ping"))]);
            match self.request(&ping) {
                Ok(_) => break Ok(()),
                Err(e) if Instant::now() > deadline || crate::sys::stopping() => {
                    break Err(format!(
                        "no ng pong from {} within {:.0} s (last: {e})",
                        self.engine,
                        limit.as_secs_f64()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.rto = rto;
        self.max_tries = tries;
        self.retransmits = 0;
        result
    }

    /// Sends one request and waits for its reply.
    pub fn request(&mut self, msg: &Value) -> Result<Value, String> {
        let mut reply = None;
        self.run(
            1,
            1,
            1,
            |_, _| msg.clone(),
            |_, _, v| {
                reply = Some(v);
                Ok(())
            },
        )?;
        reply.ok_or_else(|| "no reply".to_string())
    }

    /// Runs `jobs` sequences of `steps` requests each, at most `window` sequences in
    /// flight: `make(job, step)` builds a request once the previous step of that job
    /// was answered, `accept(job, step, reply)` takes each successful reply. Returns
    /// the time from the first send to the last reply.
    pub fn run(
        &mut self,
        jobs: usize,
        steps: usize,
        window: usize,
        mut make: impl FnMut(usize, usize) -> Value,
        mut accept: impl FnMut(usize, usize, Value) -> Result<(), String>,
    ) -> Result<Duration, String> {
        let window = window.max(1);
        let mut pending: HashMap<u64, Pending> = HashMap::with_capacity(window * 2);
        let (mut started, mut done) = (0usize, 0usize);
        self.outbox.clear();
        // Drop replies left over from an earlier run (e.g. answers to a resend).
        while let Ok(n) = self.recv_batch(libc::MSG_DONTWAIT) {
            if n == 0 {
                break;
            }
            self.stray_replies += n as u64;
        }
        let t0 = Instant::now();
        let mut next_scan = t0;
        while done < jobs {
            if crate::sys::stopping() {
                return Err("stopped".into());
            }
            while pending.len() < window && started < jobs {
                let msg = make(started, 0);
                self.queue(&mut pending, started, 0, &msg);
                started += 1;
            }
            self.flush(&pending)?;
            let got = self.recv_batch(libc::MSG_WAITFORONE)?;
            for i in 0..got {
                let (len, truncated) = self.rx_len(i);
                let d = &self.rx[i * RX_SIZE..i * RX_SIZE + len];
                let Some((cookie, body)) = split_reply(d, &self.prefix) else {
                    self.stray_replies += 1;
                    continue;
                };
                let Some(p) = pending.remove(&cookie) else {
                    self.stray_replies += 1;
                    continue;
                };
                if truncated {
                    return Err(format!(
                        "the engine's reply to {} (job {}) is longer than {RX_SIZE} bytes",
                        p.command, p.job
                    ));
                }
                let v = bencode::decode(body).map_err(|e| {
                    format!(
                        "ng reply to {} is not bencode ({e}): {:?}",
                        p.command,
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )
                })?;
                match v.get("result").and_then(Value::as_str) {
                    Some("ok") | Some("pong") => {}
                    other => {
                        let reason = v
                            .get("error-reason")
                            .and_then(Value::as_str)
                            .unwrap_or("no error-reason");
                        return Err(format!(
                            "the engine answered {} (job {}) with result {:?}: {reason}",
                            p.command,
                            p.job,
                            other.unwrap_or("(none)")
                        ));
                    }
                }
                accept(p.job, p.step, v)?;
                if p.step + 1 < steps {
                    let msg = make(p.job, p.step + 1);
                    self.queue(&mut pending, p.job, p.step + 1, &msg);
                } else {
                    done += 1;
                }
            }
            let now = Instant::now();
            if now >= next_scan {
                next_scan = now + Duration::from_millis(20);
                for (&cookie, p) in pending.iter_mut() {
                    if now.duration_since(p.sent) < self.rto || self.outbox.contains(&cookie) {
                        continue;
                    }
                    if p.tries >= self.max_tries {
                        return Err(format!(
                            "no ng reply from {} to {} (job {}) after {} sends {:.1} s apart",
                            self.engine,
                            p.command,
                            p.job,
                            p.tries,
                            self.rto.as_secs_f64()
                        ));
                    }
                    p.tries += 1;
                    p.sent = now;
                    self.retransmits += 1;
                    self.outbox.push(cookie);
                }
            }
        }
        self.flush(&pending)?;
        Ok(t0.elapsed())
    }

    /// Encodes `msg` under a fresh cookie and queues it for the next flush.
    fn queue(&mut self, pending: &mut HashMap<u64, Pending>, job: usize, step: usize, msg: &Value) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let mut wire = Vec::with_capacity(512);
        wire.extend_from_slice(self.prefix.as_bytes());
        wire.extend_from_slice(cookie.to_string().as_bytes());
        wire.push(b' ');
        bencode::encode(msg, &mut wire);
        let command = msg
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        pending.insert(
            cookie,
            Pending {
                job,
                step,
                wire,
                command,
                sent: Instant::now(),
                tries: 1,
            },
        );
        self.outbox.push(cookie);
    }

    /// Sends every queued request, as few `sendmmsg` calls as the kernel allows.
    fn flush(&mut self, pending: &HashMap<u64, Pending>) -> Result<(), String> {
        let mut iov: Vec<libc::iovec> = self
            .outbox
            .iter()
            .filter_map(|c| pending.get(c))
            .map(|p| libc::iovec {
                iov_base: p.wire.as_ptr() as *mut libc::c_void,
                iov_len: p.wire.len(),
            })
            .collect();
        self.outbox.clear();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut off = 0;
        while off < hdrs.len() {
            // SAFETY: every header points at an iovec in `iov` and each iovec at a
            // request's bytes in `pending`; both outlive the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs[off..].as_mut_ptr(),
                    (hdrs.len() - off) as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                off += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // Nothing listening yet, or a full buffer: the resend timer covers it.
                io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock => off += 1,
                _ => return Err(format!("cannot send to {}: {e}", self.engine)),
            }
        }
        Ok(())
    }

    /// Reads the replies that are ready (up to RX_BATCH); with MSG_WAITFORONE it first
    /// waits up to the socket's 5 ms timeout for one. Returns how many; see
    /// [`Self::rx_len`].
    fn recv_batch(&mut self, flags: libc::c_int) -> Result<usize, String> {
        let mut iov: Vec<libc::iovec> = self
            .rx
            .chunks_mut(RX_SIZE)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: RX_SIZE,
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: as in `flush`.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        loop {
            // SAFETY: the headers point at iovecs into `self.rx`, alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    RX_BATCH as libc::c_uint,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                self.rx_lens.clear();
                self.rx_lens.extend(hdrs[..n as usize].iter().map(|h| {
                    (
                        (h.msg_len as usize).min(RX_SIZE),
                        h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                    )
                }));
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // An ICMP port unreachable for an earlier send: the engine is not
                // (yet) listening; the resend timer covers it.
                io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused => return Ok(0),
                _ => return Err(format!("cannot read from {}: {e}", self.engine)),
            }
        }
    }

    /// Length and truncation of reply `i` of the last [`Self::recv_batch`].
    fn rx_len(&self, i: usize) -> (usize, bool) {
        self.rx_lens.get(i).copied().unwrap_or((0, false))
    }

    /// Offers and answers one call per endpoint pair (batch `prefix`, `window` calls in
    /// flight); returns per call the engine's address for endpoint A and for B, and
    /// the time it took.
    pub fn setup_calls(
        &mut self,
        prefix: &str,
        remotes: &[(SocketAddr, SocketAddr)],
        window: usize,
    ) -> Result<(Vec<(SocketAddr, SocketAddr)>, Duration), String> {
        let unset = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut relay = vec![(unset, unset); remotes.len()];
        let elapsed = self.run(
            remotes.len(),
            2,
            window,
            |i, step| {
                let (cid, from, to) = names(prefix, i);
                let (a, b) = remotes[i];
                let mut pairs = vec![
                    ("call-id", Value::str(&cid)),
                    ("from-tag", Value::str(&from)),
                ];
                if step == 0 {
                    pairs.push(("command", Value::str("offer")));
                    pairs.push(("sdp", Value::str(&sdp(a))));
                } else {
                    pairs.push(("command", Value::str("answer")));
                    pairs.push(("to-tag", Value::str(&to)));
                    pairs.push(("sdp", Value::str(&sdp(b))));
                }
                kamailio_flags(&mut pairs);
                Value::dict(pairs)
            },
            |i, step, v| {
                let body = v.get("sdp").and_then(Value::as_str).ok_or_else(|| {
                    format!(
                        "{} reply for call {prefix}-{i} has no sdp: {v:?}",
                        ["offer", "answer"][step]
                    )
                })?;
                let addr = media_address(body).ok_or_else(|| {
                    format!("no audio port in the engine's SDP for call {prefix}-{i}: {body:?}")
                })?;
                // The offer's reply goes to the callee (B), the answer's to the caller (A).
                if step == 0 {
                    relay[i].1 = addr;
                } else {
                    relay[i].0 = addr;
                }
                Ok(())
            },
        )?;
        Ok((relay, elapsed))
    }

    /// Deletes calls `0..n` of batch `prefix` (`window` in flight); returns the time.
    pub fn delete_calls(
        &mut self,
        prefix: &str,
        n: usize,
        window: usize,
    ) -> Result<Duration, String> {
        self.run(
            n,
            1,
            window,
            |i, _| {
                let (cid, from, to) = names(prefix, i);
                Value::dict(vec![
                    ("command", Value::str("delete")),
                    ("call-id", Value::str(&cid)),
                    ("from-tag", Value::str(&from)),
                    ("to-tag", Value::str(&to)),
                ])
            },
            |_, _, _| Ok(()),
        )
    }
}

/// Splits `<prefix><n> <body>` into the cookie number and the body.
fn split_reply<'a>(d: &'a [u8], prefix: &str) -> Option<(u64, &'a [u8])> {
    let space = d.iter().position(|&c| c == b' ')?;
    let cookie = std::str::from_utf8(&d[..space]).ok()?;
    let n = cookie.strip_prefix(prefix)?.parse().ok()?;
    Some((n, &d[space + 1..]))
}

/// Checks the codec, the SDP parser and the cookie split on known inputs (the bench
/// has no test harness; `--ng-self-test` runs this).
pub fn self_test() -> Result<(), String> {
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("ng self-test: {what}"))
        }
    };
    let v = Value::dict(vec![
        ("sdp", Value::str("v=0")),
        ("command", Value::str("offer")),
        ("replace", Value::str_list(["origin"])),
    ]);
    let mut out = Vec::new();
    bencode::encode(&v, &mut out);
    check(
        out == b"d7:command5:offer7:replacel6:origine3:sdp3:v=0e",
        "encoding sorts keys",
    )?;
    check(bencode::decode(&out).ok() == Some(v), "round trip")?;
    let s = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 30000 RTP/AVP 0\r\nc=IN IP4 127.0.0.2\r\n";
    check(
        media_address(s) == "127.0.0.2:30000".parse().ok(),
        "media-level c=",
    )?;
    let local = SocketAddr::from(([127, 0, 0, 1], 4000));
    check(media_address(&sdp(local)) == Some(local), "own SDP")?;
    check(
        media_address("v=0\r\nm=audio 0 RTP/AVP 0\r\n").is_none(),
        "port 0",
    )?;
    check(
        split_reply(b"L7_42 d6:result4:ponge", "L7_") == Some((42, &b"d6:result4:ponge"[..])),
        "cookie split",
    )?;
    check(split_reply(b"X1 d", "L7_").is_none(), "foreign cookie")?;
    Ok(())
}
