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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
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
    /// Readies a released pair for keeping: each socket is connected to its own
    /// address `ip`, so the kernel refuses other senders, then emptied. Returns
    /// the datagrams that were still queued (they are dropped).
    pub fn park(&self, ip: IpAddr) -> io::Result<u64> {
        let ip = match ip {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        self.rtp.connect(SocketAddr::new(ip, self.port))?;
        self.rtcp.connect(SocketAddr::new(ip, self.port + 1))?;
        Ok(drain(&self.rtp) + drain(&self.rtcp))
    }

    /// Undoes [`PortPair::park`]: both sockets accept any sender again.
    pub fn unpark(&self) -> io::Result<()> {
        disconnect(&self.rtp)?;
        disconnect(&self.rtcp)
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
    /// Parked sockets of free pairs, by pair index.
    warm: Vec<Option<[UdpSocket; 2]>>,
    warm_count: usize,
    /// Most free pairs kept bound.
    warm_limit: usize,
    /// Most pairs bound at once, in use or warm (the descriptor budget).
    bound_limit: usize,
    /// Datagrams found queued on pairs as they were parked.
    stale: u64,
}

impl PortAllocator {
    /// All even ports `p` in `[min, max]` with `p + 1 <= max`; none kept warm.
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let first = (min as u32 + (min as u32 & 1)) as u16;
        let free: VecDeque<u16> = (first as u32..max as u32)
            .step_by(2)
            .map(|p| p as u16)
            .collect();
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
                self.warm[idx] = Some([pair.rtp, pair.rtcp]);
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
    /// pairs were parked.
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
                Ok(pair) => return Ok(pair),
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
            self.warm[idx] = Some([pair.rtp, pair.rtcp]);
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
        let [rtp, rtcp] = self.warm[idx].take()?;
        self.warm_count -= 1;
        let pair = PortPair { rtp, rtcp, port };
        // A pair that cannot be unparked is closed and bound afresh.
        pair.unpark().ok().map(|()| pair)
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
    loop {
        // SAFETY: valid fd and a one-byte buffer; MSG_TRUNC discards the rest.
        let r = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if r < 0 {
            return n;
        }
        n += 1;
    }
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
    fn wildcard_pairs_park_on_loopback() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut a = PortAllocator::new(any, 41400, 41403);
        assert_eq!(a.prebind(2, 100), 2);
        let pair = a.allocate().unwrap();
        assert_eq!(
            pair.rtp.local_addr().unwrap().ip(),
            any,
            "unparking restores the wildcard"
        );
        send_to(pair.port);
        assert_eq!(received(&pair.rtp), Some(4));
    }
}
