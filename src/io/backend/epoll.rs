//! The epoll backend: level-triggered readiness, `recvmmsg` per ready socket,
//! an immediate `send`/`sendto` per relayed datagram from the receive buffer.

use super::{
    send_now, sendmsg_now, sockaddr_to_std, BackendStats, Egress, PacketIo, Token, Waker,
    RECV_BUF_SIZE,
};
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Datagrams taken from one socket per readiness event; more stay queued and
/// epoll reports the socket again, so one busy socket cannot starve the others.
const BATCH: usize = 8;
const EVENTS: usize = 1024;
const WAKE_TOKEN: u64 = u64::MAX;

/// epoll-based [`PacketIo`].
pub struct Epoll {
    epfd: OwnedFd,
    waker: Arc<Waker>,
    events: Vec<libc::epoll_event>,
    bufs: Box<[[u8; RECV_BUF_SIZE]; BATCH]>,
    names: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    msgs: [libc::mmsghdr; BATCH],
    stats: BackendStats,
    /// Token of each registered fd, indexed by fd (fds are small integers).
    tokens: Vec<Option<Token>>,
}

// SAFETY: the raw pointers inside iovs/msgs point into this struct's own heap
// buffers and are rebuilt before every use; nothing is shared across threads.
unsafe impl Send for Epoll {}

impl Epoll {
    /// A new epoll instance that also watches `waker`.
    pub fn new(waker: Arc<Waker>) -> io::Result<Epoll> {
        // SAFETY: plain syscall, result checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid value for these plain C structs.
        let this = Epoll {
            epfd,
            waker,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            bufs: Box::new([[0; RECV_BUF_SIZE]; BATCH]),
            names: unsafe { std::mem::zeroed() },
            iovs: unsafe { std::mem::zeroed() },
            msgs: unsafe { std::mem::zeroed() },
            stats: BackendStats::default(),
            tokens: Vec::new(),
        };
        let wfd = this.waker.raw();
        this.ctl(libc::EPOLL_CTL_ADD, wfd, WAKE_TOKEN)?;
        Ok(this)
    }

    fn ctl(&self, op: i32, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: valid epoll fd, valid event struct.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn read_socket(
        &mut self,
        token: Token,
        fd: RawFd,
        on_packet: &mut dyn FnMut(Token, SocketAddr, &mut [u8]) -> Egress,
    ) {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUF_SIZE,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: msgs/iovs/names point at buffers owned by self that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            return; // EAGAIN (spurious readiness) or a socket error: nothing to deliver.
        }
        for i in 0..n as usize {
            let len = self.msgs[i].msg_len as usize;
            if self.msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.stats.truncated += 1;
                continue;
            }
            let namelen = self.msgs[i].msg_hdr.msg_namelen as usize;
            let Some(from) = sockaddr_to_std(&self.names[i], namelen) else {
                continue;
            };
            let buf = &mut self.bufs[i][..len];
            if let Egress::Send { fd, to, len } = on_packet(token, from, buf) {
                if !send_now(fd, &buf[..len.min(buf.len())], to.as_ref()) {
                    self.stats.send_errors += 1;
                }
            }
        }
    }
}

impl PacketIo for Epoll {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn register(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        let slot = fd as usize;
        if self.tokens.len() <= slot {
            self.tokens.resize(slot + 1, None);
        }
        self.ctl(libc::EPOLL_CTL_ADD, fd, fd as u64)?;
        self.tokens[slot] = Some(token);
        Ok(())
    }

    fn deregister(&mut self, _token: Token, fd: RawFd) {
        // An error here means the fd was never added or is gone: nothing to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
        if let Some(t) = self.tokens.get_mut(fd as usize) {
            *t = None;
        }
    }

    fn poll(
        &mut self,
        timeout: Option<Duration>,
        on_packet: &mut dyn FnMut(Token, SocketAddr, &mut [u8]) -> Egress,
    ) -> io::Result<()> {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: events buffer is valid for EVENTS entries; tsp is null or valid.
        let n = unsafe {
            libc::epoll_pwait2(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                EVENTS as i32,
                tsp,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for i in 0..n as usize {
            let data = self.events[i].u64;
            if data == WAKE_TOKEN {
                self.waker.drain();
                continue;
            }
            // The event carries the fd; the token for it is looked up here.
            let fd = data as RawFd;
            if let Some(&Some(token)) = self.tokens.get(fd as usize) {
                self.read_socket(token, fd, on_packet);
            }
        }
        Ok(())
    }

    fn send_media(&mut self, fd: RawFd, to: Option<SocketAddr>, header: [u8; 12], payload: Bytes) {
        if !sendmsg_now(fd, to.as_ref(), &header, &payload) {
            self.stats.send_errors += 1;
        }
    }

    fn stats(&self) -> BackendStats {
        self.stats
    }
}
