//! The packet backends: io_uring and epoll behind one small trait.
//!
//! A backend owns the receive buffers. It hands each datagram to the worker's
//! callback as `&mut [u8]`; the callback rewrites it in place and answers where
//! to send it, and the backend sends that same buffer. No payload is copied.

pub mod epoll;
pub mod uring;

use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// Identifies a socket to the backend: leg slot, generation and which socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

impl Token {
    /// The token of `index`/`generation`'s RTP (`rtcp == false`) or RTCP socket.
    #[inline]
    pub fn new(index: u32, generation: u32, rtcp: bool) -> Token {
        debug_assert!(index < (1 << 27));
        Token((generation as u64) << 32 | (index as u64) << 1 | rtcp as u64)
    }
    /// Leg slot index.
    #[inline]
    pub fn index(self) -> u32 {
        ((self.0 as u32) >> 1) & ((1 << 27) - 1)
    }
    /// Leg generation.
    #[inline]
    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Whether this is the RTCP socket.
    #[inline]
    pub fn is_rtcp(self) -> bool {
        self.0 & 1 == 1
    }
}

/// Where the callback wants a received datagram to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Drop it.
    Drop,
    /// Send the first `len` bytes of the buffer from `fd` (to `to`, or to the
    /// socket's connected peer when `to` is `None`).
    Send {
        /// Sending socket.
        fd: RawFd,
        /// Destination, unless connected.
        to: Option<SocketAddr>,
        /// Bytes to send.
        len: usize,
    },
}

/// Counters a backend keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendStats {
    /// Sends that failed (buffer full, unreachable, ...).
    pub send_errors: u64,
    /// Datagrams truncated because they exceeded the receive buffer.
    pub truncated: u64,
}

/// Wakes a worker blocked in [`PacketIo::poll`] (an eventfd).
#[derive(Debug)]
pub struct Waker {
    fd: std::os::fd::OwnedFd,
}

impl Waker {
    /// A new eventfd-backed waker.
    pub fn new() -> io::Result<Arc<Waker>> {
        // SAFETY: plain syscall; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Arc::new(Waker { fd }))
    }

    /// Wakes the worker.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd; EAGAIN (counter
        // saturated) means a wake-up is already pending, which is all we need.
        unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wake-ups.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN means nothing pending.
        unsafe { libc::read(self.raw(), (&mut v as *mut u64).cast(), 8) };
    }

    /// The eventfd.
    pub fn raw(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

/// What a worker needs from a packet backend.
pub trait PacketIo {
    /// `io_uring` or `epoll`.
    fn name(&self) -> &'static str;
    /// Starts receiving on `fd`, delivering its datagrams under `token`.
    fn register(&mut self, token: Token, fd: RawFd) -> io::Result<()>;
    /// Stops receiving on `fd`; call before closing it.
    fn deregister(&mut self, token: Token, fd: RawFd);
    /// Waits up to `timeout` (forever if `None`) for datagrams or a wake-up and
    /// hands every datagram to `on_packet`, then performs the sends it asks for.
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        on_packet: &mut dyn FnMut(Token, SocketAddr, &mut [u8]) -> Egress,
    ) -> io::Result<()>;
    /// Sends a pre-encoded packet: its own header, then a frame shared with
    /// other listeners (kept alive until the kernel has it).
    fn send_media(&mut self, fd: RawFd, to: Option<SocketAddr>, header: [u8; 12], payload: Bytes);
    /// Counters.
    fn stats(&self) -> BackendStats;
}

/// Sends header + payload with one `sendmsg` (two iovecs, no copy into one buffer).
pub(crate) fn sendmsg_now(
    fd: RawFd,
    to: Option<&SocketAddr>,
    header: &[u8],
    payload: &[u8],
) -> bool {
    let mut iov = [
        libc::iovec {
            iov_base: header.as_ptr() as *mut libc::c_void,
            iov_len: header.len(),
        },
        libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        },
    ];
    // SAFETY: zeroed msghdr/sockaddr_storage are valid values.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    if let Some(addr) = to {
        msg.msg_namelen = std_to_sockaddr(addr, &mut ss);
        msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
    }
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = 2;
    // SAFETY: msg points at live locals for the duration of the call.
    unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) >= 0 }
}

/// Size of one receive buffer: larger than any RTP packet on an Ethernet path.
pub const RECV_BUF_SIZE: usize = 2048;

/// Converts a kernel socket address to a `SocketAddr` (None for other families).
pub(crate) fn sockaddr_to_std(ss: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family and length say this storage holds a sockaddr_in.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family and length say this storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `ss`; returns the length to pass to the kernel.
pub(crate) fn std_to_sockaddr(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> u32 {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            sin.sin_zero = [0; 8];
            std::mem::size_of::<libc::sockaddr_in>() as u32
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as u32
        }
    }
}

/// Sends datagrams, each to its address, with as few `sendmmsg` calls as the
/// kernel allows; returns the ones it refused, with the reason.
pub(crate) fn send_batch(
    fd: RawFd,
    datagrams: &[(&[u8], SocketAddr)],
) -> Vec<(SocketAddr, io::Error)> {
    let mut failed = Vec::new();
    // SAFETY: zeroed sockaddr_storage values are valid, filled in below.
    let mut names: Vec<libc::sockaddr_storage> =
        vec![unsafe { std::mem::zeroed() }; datagrams.len()];
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(buf, _)| libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        })
        .collect();
    let namelens: Vec<u32> = datagrams
        .iter()
        .zip(names.iter_mut())
        .map(|((_, to), ss)| std_to_sockaddr(to, ss))
        .collect();
    // From here on, names and iovs are reached only through these pointers.
    let (name_at, iov_at) = (names.as_mut_ptr(), iovs.as_mut_ptr());
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(datagrams.len());
    for (i, &namelen) in namelens.iter().enumerate() {
        // SAFETY: a zeroed msghdr is a valid value.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        // SAFETY (both): i is in bounds of names and iovs, which live until
        // the sends are done.
        hdr.msg_name = unsafe { name_at.add(i) }.cast();
        hdr.msg_namelen = namelen;
        hdr.msg_iov = unsafe { iov_at.add(i) };
        hdr.msg_iovlen = 1;
        msgs.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    let mut at = 0;
    while at < msgs.len() {
        let left = &mut msgs[at..];
        // SAFETY: every header points at live buffers, names and iovecs above.
        let sent =
            unsafe { libc::sendmmsg(fd, left.as_mut_ptr(), left.len() as u32, libc::MSG_DONTWAIT) };
        if sent > 0 {
            at += sent as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        // The first datagram left failed: note it and go on with the rest.
        failed.push((datagrams[at].1, e));
        at += 1;
    }
    failed
}

/// Sends `buf` from `fd`, to `to` or to the connected peer. Returns false on error.
#[inline]
pub(crate) fn send_now(fd: RawFd, buf: &[u8], to: Option<&SocketAddr>) -> bool {
    let r = match to {
        None => {
            // SAFETY: buf is a valid slice for the duration of the call.
            unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) }
        }
        Some(addr) => {
            // SAFETY: zeroed sockaddr_storage is a valid value.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = std_to_sockaddr(addr, &mut ss);
            // SAFETY: buf and ss are valid for the call; len matches the family.
            unsafe {
                libc::sendto(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&ss as *const libc::sockaddr_storage).cast(),
                    len,
                )
            }
        }
    };
    r >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let t = Token::new((1 << 27) - 1, u32::MAX, true);
        assert_eq!(t.index(), (1 << 27) - 1);
        assert_eq!(t.generation(), u32::MAX);
        assert!(t.is_rtcp());
        let t = Token::new(5, 0, false);
        assert_eq!((t.index(), t.generation(), t.is_rtcp()), (5, 0, false));
    }

    #[test]
    fn sockaddr_round_trips() {
        for a in ["127.0.0.1:4000", "[::1]:5004"] {
            let a: SocketAddr = a.parse().unwrap();
            // SAFETY: zeroed sockaddr_storage is a valid value.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = std_to_sockaddr(&a, &mut ss);
            assert_eq!(sockaddr_to_std(&ss, len as usize), Some(a));
        }
    }

    #[test]
    fn a_batch_reaches_each_address_and_reports_refusals() {
        use std::net::UdpSocket;
        use std::os::fd::AsRawFd;
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // An IPv6 address on an IPv4 socket fails in the middle of the batch.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let batch: Vec<(&[u8], SocketAddr)> =
            vec![(b"one", pa), (b"two", pb), (b"lost", v6), (b"three", pa)];
        let failed = send_batch(sender.as_raw_fd(), &batch);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, v6);
        let mut buf = [0u8; 16];
        for (sock, want) in [(&a, &b"one"[..]), (&b, b"two"), (&a, b"three")] {
            sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (want, sender.local_addr().unwrap()));
        }
        assert!(send_batch(sender.as_raw_fd(), &[]).is_empty());
    }
}
