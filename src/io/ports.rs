//! The RTP port allocator: even RTP ports with the odd RTCP port above, both bound.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

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
/// (late packets of an old call must not reach a new one).
#[derive(Debug)]
pub struct PortAllocator {
    ip: IpAddr,
    min: u16,
    max: u16,
    free: VecDeque<u16>,
    pairs: usize,
}

impl PortAllocator {
    /// All even ports `p` in `[min, max]` with `p + 1 <= max`.
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let first = min as u32 + (min as u32 & 1);
        let free: VecDeque<u16> = (first..max as u32).step_by(2).map(|p| p as u16).collect();
        PortAllocator {
            ip,
            min,
            max,
            pairs: free.len(),
            free,
        }
    }

    /// Pairs not currently allocated.
    pub fn free_pairs(&self) -> usize {
        self.free.len()
    }

    /// Pairs in the range.
    pub fn total_pairs(&self) -> usize {
        self.pairs
    }

    /// Binds the next free pair; pairs another program holds are skipped.
    pub fn allocate(&mut self) -> Result<PortPair, PortError> {
        for _ in 0..self.free.len() {
            let Some(port) = self.free.pop_front() else {
                break;
            };
            match bind_pair(self.ip, port) {
                Ok(pair) => return Ok(pair),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    // Someone else has it; try it again later.
                    self.free.push_back(port);
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

    #[test]
    fn pairs_are_even_odd_and_exhaust_clearly() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // A small odd-started range: 41001..=41006 holds pairs 41002 and 41004.
        let mut a = PortAllocator::new(ip, 41001, 41006);
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
}
