//! The RTP port allocator: even RTP ports with the odd RTCP port above, both bound.
//!
//! Free pairs are handed out round-robin, so a released pair is not reused until
//! the rest of the range has been (late packets of an old call must not reach a
//! new one). Up to a limit, free pairs keep their sockets bound ("warm"): bound
//! at start-up and kept when a call ends, they spare call setup the kernel's
//! socket creation and bind, the largest share of its cost. A warm socket is
//! connected to itself while it waits, so the kernel refuses every other sender
//! as it would for a closed port, and nothing queues for the next call.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// A bound RTP/RTCP socket pair.
#[derive(Debug)]
pub struct PortPair {
    /// RTP socket on the even port.
    pub rtp: UdpSocket,
    /// RTCP socket on the odd port.
    pub rtcp: UdpSocket,
    /// The even port.
    pub port: u16,
}

impl PortPair {
    /// Readies a released pair for keeping, so that nothing reaches it until
    /// it is [unparked](PortPair::unpark), then empties it. Returns the
    /// datagrams that were still queued (they are dropped).
    ///
    /// A socket bound to address `ip` is connected to itself: the kernel then
    /// refuses every other sender with port-unreachable, as for a closed port.
    /// A socket bound to the wildcard address gets a filter that drops all
    /// instead (connecting would narrow its address to loopback, leaving the
    /// port's other addresses free for another program to bind).
    pub fn park(&self, ip: IpAddr) -> io::Result<u64> {
        if ip.is_unspecified() {
            drop_all(&self.rtp, true)?;
            drop_all(&self.rtcp, true)?;
        } else {
            self.rtp.connect(SocketAddr::new(ip, self.port))?;
            self.rtcp.connect(SocketAddr::new(ip, self.port + 1))?;
        }
        Ok(drain(&self.rtp) + drain(&self.rtcp))
    }

    /// Undoes [`PortPair::park`] for a pair bound to `ip`: both sockets accept
    /// any sender again, with nothing queued (a send still in flight when the
    /// pair was parked may have looped back to it). Returns what was dropped.
    pub fn unpark(&self, ip: IpAddr) -> io::Result<u64> {
        for sock in [&self.rtp, &self.rtcp] {
            if ip.is_unspecified() {
                drop_all(sock, false)?;
            } else {
                disconnect(sock)?;
            }
        }
        Ok(drain(&self.rtp) + drain(&self.rtcp))
    }
}

/// Why no pair could be allocated.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every pair in the range is in use (by us or by another program).
    #[error(
        "no free RTP port pair in {min}–{max} ({pairs} pairs, all in use); widen --port-min/--port-max or delete idle calls"
    )]
    Exhausted {
        /// Range start.
        min: u16,
        /// Range end.
        max: u16,
        /// Pairs in the range.
        pairs: usize,
    },
    /// The OS refused to create a socket (e.g. out of file descriptors).
    #[error("cannot create RTP sockets: {0}")]
    Socket(#[source] io::Error),
}

/// Hands out port pairs round-robin so a released pair is not reused at once
/// (late packets of an old call must not reach a new one), keeping free pairs
/// bound up to a limit.
#[derive(Debug)]
pub struct PortAllocator {
    ip: IpAddr,
    min: u16,
    max: u16,
    first: u16,
    free: VecDeque<u16>,
    pairs: usize,
    /// Parked free pairs, by pair index.
    warm: Vec<Option<PortPair>>,
    warm_count: usize,
    /// Most free pairs kept bound.
    warm_limit: usize,
    /// Most pairs bound at once, in use or warm (the descriptor budget).
    bound_limit: usize,
    /// Datagrams found queued on pairs as they were parked or handed out again.
    stale: u64,
}

impl PortAllocator {
    /// All even ports `p` in `[min, max]` with `p + 1 <= max`; none kept warm.
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let first = u32::from(min) + u32::from(min & 1);
        // Empty when no pair fits (first + 1 > max), including min = 65535.
        let free: VecDeque<u16> = (first..u32::from(max))
            .step_by(2)
            .map(|p| p as u16)
            .collect();
        let first = first.min(u32::from(u16::MAX)) as u16;
        let mut warm = Vec::new();
        warm.resize_with(free.len(), || None);
        PortAllocator {
            ip,
            min,
            max,
            first,
            pairs: free.len(),
            free,
            warm,
            warm_count: 0,
            warm_limit: 0,
            bound_limit: 0,
            stale: 0,
        }
    }

    /// Keeps up to `limit` free pairs bound, never holding more than
    /// `bound_limit` pairs bound at once, and binds the next `limit` free pairs
    /// now. Returns how many it bound (pairs another program holds are skipped).
    pub fn prebind(&mut self, limit: usize, bound_limit: usize) -> usize {
        self.warm_limit = limit;
        self.bound_limit = bound_limit;
        let mut bound = 0;
        for i in 0..self.free.len() {
            if self.warm_count >= self.keepable() {
                break;
            }
            let port = self.free[i];
            let idx = self.index(port);
            if self.warm[idx].is_some() {
                continue;
            }
            let Ok(pair) = bind_pair(self.ip, port) else {
                continue;
            };
            if pair.park(self.ip).is_ok() {
                self.warm[idx] = Some(pair);
                self.warm_count += 1;
                bound += 1;
            }
        }
        bound
    }

    /// Pairs not currently allocated.
    pub fn free_pairs(&self) -> usize {
        self.free.len()
    }

    /// Free pairs whose sockets are kept bound.
    pub fn warm_pairs(&self) -> usize {
        self.warm_count
    }

    /// Datagrams that had reached pairs after their call ended, dropped as the
    /// pairs were parked or handed out again.
    pub fn stale_dropped(&self) -> u64 {
        self.stale
    }

    /// Pairs in the range.
    pub fn total_pairs(&self) -> usize {
        self.pairs
    }

    /// Hands out the next free pair: its kept sockets, else freshly bound ones.
    /// Pairs another program holds are skipped.
    pub fn allocate(&mut self) -> Result<PortPair, PortError> {
        for _ in 0..self.free.len() {
            let Some(port) = self.free.pop_front() else {
                break;
            };
            if let Some(pair) = self.take_warm(port) {
                return Ok(pair);
            }
            match bind_pair(self.ip, port) {
                Ok(pair) => {
                    // A fresh pair counts against the budget: kept pairs give way.
                    while self.warm_count > self.keepable() && self.close_one_warm() {}
                    return Ok(pair);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // Someone else has it; try it again later.
                    self.free.push_back(port);
                }
                Err(e) if out_of_descriptors(&e) && self.close_one_warm() => {
                    // Kept sockets gave way to this call; try the pair again.
                    self.free.push_front(port);
                }
                Err(e) => {
                    self.free.push_front(port);
                    return Err(PortError::Socket(e));
                }
            }
        }
        Err(PortError::Exhausted {
            min: self.min,
            max: self.max,
            pairs: self.pairs,
        })
    }

    /// Returns a pair's port to the pool (its sockets are closed by their owner).
    pub fn release(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port), "port {port} released twice");
        self.free.push_back(port);
    }

    /// Returns a pair with its sockets, already [parked](PortPair::park) by
    /// their owner with `stale` datagrams dropped; the sockets are kept bound
    /// if the limits allow, else closed.
    pub fn release_pair(&mut self, pair: PortPair, stale: u64) {
        self.stale += stale;
        self.release(pair.port);
        let idx = self.index(pair.port);
        if self.warm_count < self.keepable() && self.warm[idx].is_none() {
            self.warm[idx] = Some(pair);
            self.warm_count += 1;
        }
    }

    /// How many free pairs may be kept bound now.
    fn keepable(&self) -> usize {
        let in_use = self.pairs - self.free.len();
        self.warm_limit.min(self.bound_limit.saturating_sub(in_use))
    }

    fn index(&self, port: u16) -> usize {
        usize::from((port - self.first) / 2)
    }

    fn take_warm(&mut self, port: u16) -> Option<PortPair> {
        let idx = self.index(port);
        let pair = self.warm[idx].take()?;
        self.warm_count -= 1;
        match pair.unpark(self.ip) {
            Ok(stale) => {
                self.stale += stale;
                Some(pair)
            }
            Err(e) => {
                // Closed here, so the caller binds the pair afresh.
                log::warn!("port {port}: cannot reuse the kept sockets ({e}); binding new ones");
                None
            }
        }
    }

    /// Whether released pairs may be kept at all (else their owner closes them).
    pub fn keeps_pairs(&self) -> bool {
        self.warm_limit > 0
    }

    /// Closes the kept pair that would be reused last; false if none is kept.
    fn close_one_warm(&mut self) -> bool {
        let Some(i) = (0..self.free.len())
            .rev()
            .map(|i| self.index(self.free[i]))
            .find(|&idx| self.warm[idx].is_some())
        else {
            return false;
        };
        self.warm[i] = None;
        self.warm_count -= 1;
        true
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Reads and drops every queued datagram; returns how many there were.
fn drain(sock: &UdpSocket) -> u64 {
    let mut n = 0;
    let mut byte = [0u8; 1];
    // Bounded: a flood cannot keep us here (the rest is dropped next time).
    for _ in 0..DRAIN_MAX {
        // SAFETY: valid fd and a one-byte buffer; MSG_TRUNC discards the rest.
        let r = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if r >= 0 {
            n += 1;
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => break,
            // A pending error (an ICMP error for an earlier send) is reported
            // before the queue; reading it clears it, so read on.
            Some(libc::EINTR)
            | Some(libc::ECONNREFUSED)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::ENETUNREACH)
            | Some(libc::EMSGSIZE) => continue,
            _ => break,
        }
    }
    n
}

/// Most datagrams one [`drain`] reads.
const DRAIN_MAX: usize = 4096;

/// Attaches (`on`) or removes a socket filter that drops every datagram.
fn drop_all(sock: &UdpSocket, on: bool) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    let r = if on {
        let mut code = [libc::sock_filter {
            // BPF_RET | BPF_K with k = 0: accept zero bytes, i.e. drop.
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: code.as_mut_ptr(),
        };
        // SAFETY: prog points at `code`, alive for the call; the kernel copies it.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        }
    } else {
        let zero: libc::c_int = 0;
        // SAFETY: a valid int option value for the call.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                (&zero as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Dissolves a UDP socket's connection: it accepts any sender again.
pub fn disconnect(sock: &UdpSocket) -> io::Result<()> {
    // SAFETY: zeroed sockaddr with family AF_UNSPEC is the documented way to disconnect.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: valid fd and sockaddr for the call.
    let r = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            &sa,
            std::mem::size_of::<libc::sockaddr>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind_pair(ip: IpAddr, port: u16) -> io::Result<PortPair> {
    let rtp = bind_nonblocking(SocketAddr::new(ip, port))?;
    let rtcp = bind_nonblocking(SocketAddr::new(ip, port + 1))?;
    Ok(PortPair { rtp, rtcp, port })
}

/// A UDP socket bound to `addr`, non-blocking and close-on-exec from its
/// creation: two system calls, where std's bind plus `set_nonblocking` take three.
fn bind_nonblocking(addr: SocketAddr) -> io::Result<UdpSocket> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let kind = libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall; the result is checked below.
    let fd = unsafe { libc::socket(family, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own; dropping the socket closes it.
    let socket = unsafe { <UdpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_storage is plain data, filled in below.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = super::backend::std_to_sockaddr(&addr, &mut ss);
    // SAFETY: valid fd, and `ss` holds a sockaddr of `len` bytes.
    let r = unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn pairs_are_even_odd_and_exhaust_clearly() {
        // A small odd-started range: 41001..=41006 holds pairs 41002 and 41004.
        let mut a = PortAllocator::new(IP, 41001, 41006);
        assert_eq!(a.total_pairs(), 2);
        let p1 = a.allocate().unwrap();
        let p2 = a.allocate().unwrap();
        assert_eq!(p1.port % 2, 0);
        assert_eq!(p1.rtcp.local_addr().unwrap().port(), p1.port + 1);
        assert_ne!(p1.port, p2.port);
        let e = a.allocate().unwrap_err().to_string();
        assert!(e.contains("no free RTP port pair in 41001–41006"), "{e}");
        a.release(p1.port);
        drop(p1);
        assert_eq!(a.allocate().unwrap().port % 2, 0);
    }

    /// Sends one datagram from a fresh socket to `port`.
    fn send_to(port: u16) -> UdpSocket {
        let s = UdpSocket::bind((IP, 0)).unwrap();
        s.send_to(b"late", (IP, port)).unwrap();
        s
    }

    fn received(sock: &UdpSocket) -> Option<usize> {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        sock.recv_from(&mut buf).ok().map(|(n, _)| n)
    }

    #[test]
    fn kept_pairs_refuse_senders_and_serve_the_next_call() {
        let mut a = PortAllocator::new(IP, 41100, 41107);
        assert_eq!(a.prebind(4, 100), 4);
        assert_eq!(a.warm_pairs(), 4);
        // A kept pair is bound: nobody else can take its ports.
        assert!(UdpSocket::bind((IP, 41100)).is_err());
        // Nothing sent to a kept pair queues for the next call.
        let probe = UdpSocket::bind((IP, 0)).unwrap();
        probe.send_to(b"probe!", (IP, 41100)).unwrap();
        let pair = a.allocate().unwrap();
        assert_eq!((pair.port, a.warm_pairs()), (41100, 3));
        // Handed out, it hears any sender again.
        send_to(pair.port);
        assert_eq!(
            received(&pair.rtp),
            Some(4),
            "the new call hears only the new sender"
        );
        probe.send_to(b"x", (IP, 41101)).unwrap();
        assert_eq!(received(&pair.rtcp), Some(1));

        // A datagram queued when the call ends is dropped and counted.
        send_to(pair.port);
        std::thread::sleep(Duration::from_millis(20));
        let stale = pair.park(IP).unwrap();
        assert_eq!(stale, 1);
        let port = pair.port;
        a.release_pair(pair, stale);
        assert_eq!((a.stale_dropped(), a.warm_pairs()), (1, 4));
        // Parked, the port refuses a connected sender as a closed port would.
        let peer = UdpSocket::bind((IP, 0)).unwrap();
        peer.connect((IP, port)).unwrap();
        peer.send(b"late").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let e = peer.send(b"late").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

        // Round-robin: the released pair comes back last.
        let order: Vec<u16> = (0..4).map(|_| a.allocate().unwrap().port).collect();
        assert_eq!(order, [41102, 41104, 41106, 41100]);
        assert_eq!(a.warm_pairs(), 0);
    }

    #[test]
    fn kept_pairs_stay_within_both_limits() {
        let mut a = PortAllocator::new(IP, 41200, 41219);
        // The descriptor budget allows 3 pairs bound at once.
        assert_eq!(a.prebind(10, 3), 3);
        let p = [a.allocate().unwrap(), a.allocate().unwrap()];
        assert_eq!(a.warm_pairs(), 1);
        for pair in p {
            let stale = pair.park(IP).unwrap();
            a.release_pair(pair, stale);
        }
        assert_eq!(a.warm_pairs(), 3);
        // With the warm limit at 1, releases beyond it close their sockets.
        let mut b = PortAllocator::new(IP, 41220, 41239);
        assert_eq!(b.prebind(1, 100), 1);
        let p = [b.allocate().unwrap(), b.allocate().unwrap()];
        for pair in p {
            b.release_pair(pair, 0);
        }
        assert_eq!(b.warm_pairs(), 1);
        // Zero keeps nothing: the old behaviour.
        let mut c = PortAllocator::new(IP, 41240, 41243);
        assert_eq!(c.prebind(0, 100), 0);
        let pair = c.allocate().unwrap();
        let port = pair.port;
        c.release_pair(pair, 0);
        assert_eq!(c.warm_pairs(), 0);
        assert!(UdpSocket::bind((IP, port)).is_ok(), "the port was closed");
    }

    #[test]
    fn out_of_descriptors_closes_the_pair_reused_last() {
        let mut a = PortAllocator::new(IP, 41300, 41307);
        assert_eq!(a.prebind(4, 100), 4);
        assert!(a.close_one_warm());
        assert_eq!(a.warm_pairs(), 3);
        // The pair closed is the one the round-robin would reach last.
        assert!(UdpSocket::bind((IP, 41306)).is_ok());
        assert!(UdpSocket::bind((IP, 41300)).is_err());
        while a.close_one_warm() {}
        assert_eq!(a.warm_pairs(), 0);
    }

    #[test]
    fn wildcard_pairs_park_behind_a_filter_and_keep_every_address() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut a = PortAllocator::new(any, 41400, 41403);
        assert_eq!(a.prebind(2, 100), 2);
        // Parked, the port stays rtpark's on every local address.
        assert!(UdpSocket::bind(("127.0.0.2", 41400)).is_err());
        // What arrives while parked is dropped, not kept for the next call.
        let probe = UdpSocket::bind((IP, 0)).unwrap();
        probe.send_to(b"probe!", (IP, 41400)).unwrap();
        let pair = a.allocate().unwrap();
        assert_eq!(
            pair.rtp.local_addr().unwrap().ip(),
            any,
            "still bound to the wildcard"
        );
        send_to(pair.port);
        assert_eq!(received(&pair.rtp), Some(4), "only the new sender is heard");
        // Parking again drops what is queued.
        send_to(pair.port);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pair.park(any).unwrap(), 1);
        assert!(UdpSocket::bind(("127.0.0.2", pair.port)).is_err());
    }

    #[test]
    fn fresh_pairs_make_kept_ones_give_way_within_the_budget() {
        let mut a = PortAllocator::new(IP, 41500, 41511);
        // Six pairs in the range, a budget of three bound at once.
        assert_eq!(a.prebind(10, 3), 3);
        let used: Vec<PortPair> = (0..3).map(|_| a.allocate().unwrap()).collect();
        for pair in used {
            let stale = pair.park(IP).unwrap();
            a.release_pair(pair, stale);
        }
        assert_eq!(a.warm_pairs(), 3);
        // The next pairs in turn are not kept: binding them closes kept ones.
        let fresh = [a.allocate().unwrap(), a.allocate().unwrap()];
        assert_eq!([fresh[0].port, fresh[1].port], [41506, 41508]);
        assert_eq!(a.warm_pairs(), 1, "two in use and one kept make the budget");
    }

    #[test]
    fn parking_drops_the_queue_behind_a_pending_error() {
        let mut a = PortAllocator::new(IP, 41600, 41601);
        let pair = a.allocate().unwrap();
        send_to(pair.port);
        // An ICMP error for an earlier send is reported before the queue.
        let gone = UdpSocket::bind((IP, 0)).unwrap();
        let gone_at = gone.local_addr().unwrap();
        drop(gone);
        pair.rtp.connect(gone_at).unwrap();
        pair.rtp.send(b"to nobody").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pair.park(IP).unwrap(), 1, "the queued datagram was dropped");
    }
}
