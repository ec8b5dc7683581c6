//! The io_uring backend: one multishot `recvmsg` per socket selecting buffers
//! from a provided-buffer ring, relayed datagrams sent as SQEs from the same
//! buffer, and one `io_uring_enter` per loop turn that both submits the turn's
//! sends and waits for the next datagrams.

use super::{
    sockaddr_to_std, std_to_sockaddr, BackendStats, Egress, PacketIo, Token, Waker, RECV_BUF_SIZE,
};
use bytes::Bytes;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

/// Operation kinds, stored in bits 28..32 of `user_data` (tokens leave them free).
const OP_SHIFT: u64 = 28;
const OP_MASK: u64 = 0xf << OP_SHIFT;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;
const OP_WAKE: u64 = 3;
const OP_CANCEL: u64 = 4;
const OP_MEDIA: u64 = 5;
/// `io_uring_enter` flag: reap completions (and run deferred task work).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// Registered file table size.
const FIXED_SLOTS: u32 = 65536;
/// Past this many queued sends, submit them before waiting, so their buffers
/// return to the ring before the kernel receives the next burst into it.
const EARLY_SUBMIT: usize = 64;
/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 7;
/// Bytes of each buffer reserved for the source address in a recvmsg result.
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// `struct io_uring_recvmsg_out`: namelen, controllen, payloadlen, flags.
const OUT_HDR: usize = 16;
const PAYLOAD_OFF: usize = OUT_HDR + NAME_LEN;

/// Per-buffer storage for an unconnected send's `sendmsg` arguments, which must
/// stay put until the send completes.
struct SendMeta {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
}

/// A media send in flight: header, shared frame and `sendmsg` arguments, all
/// kept at a stable address (boxed) until the completion arrives.
struct MediaSend {
    header: [u8; 12],
    payload: Bytes,
    iov: [libc::iovec; 2],
    addr: libc::sockaddr_storage,
    hdr: libc::msghdr,
}

/// An anonymous, page-aligned mapping freed on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: anonymous private mapping; result checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from a successful mmap.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// io_uring-based [`PacketIo`].
pub struct Uring {
    // Field order matters: the ring must be dropped (unregistering the buffer
    // ring and cancelling requests) before the memory it points into.
    ring: IoUring,
    ring_mem: Mapping,
    buf_mem: Mapping,
    nbufs: u16,
    /// Our copy of the buffer ring's tail (entries published so far).
    tail: u16,
    /// Buffers returned since the tail was last published.
    unpublished: u16,
    recv_hdr: Box<libc::msghdr>,
    send_meta: Box<[SendMeta]>,
    waker: Arc<Waker>,
    /// Registered sockets by `index << 1 | rtcp`: their token and fd.
    socks: Vec<Option<(Token, RawFd)>>,
    /// Sockets whose multishot receive ended and must be re-armed.
    rearm: Vec<(Token, RawFd)>,
    /// Sends pushed since the last enter.
    queued_sends: usize,
    cqes: Vec<(u64, i32, u32)>,
    wake_armed: bool,
    stats: BackendStats,
    /// Registered-file slot of each fd we watch (fds are small integers), so
    /// SQEs name sockets by fixed slot and the kernel skips an fd lookup.
    fixed_by_fd: Vec<Option<u32>>,
    /// Size of the registered file table (0: fixed files unavailable).
    fixed_slots: u32,
    /// Media sends in flight, by slot; `media_free` lists the empty slots.
    media: Vec<Option<Box<MediaSend>>>,
    media_free: Vec<u32>,
    /// Completed media sends, kept for reuse. Boxed on purpose: an in-flight
    /// send needs a stable address, and reusing the box avoids an allocation.
    #[allow(clippy::vec_box)]
    media_pool: Vec<Box<MediaSend>>,
}

// SAFETY: the raw pointers refer to memory owned by this struct (mappings and
// boxes); the worker moves the backend to its thread once and uses it only there.
unsafe impl Send for Uring {}

/// The soft RLIMIT_NOFILE (0 if it cannot be read).
fn nofile_limit() -> u32 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    u32::try_from(rl.rlim_cur).unwrap_or(u32::MAX)
}

fn user_data(op: u64, low: u64) -> u64 {
    (low & !OP_MASK) | (op << OP_SHIFT)
}

impl Uring {
    /// Sets up a ring; fails where the kernel or a seccomp profile forbids io_uring.
    pub fn new(waker: Arc<Waker>, entries: u32, buffers: u32) -> io::Result<Uring> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(entries * 4)
            .build(entries)
            .or_else(|_| IoUring::builder().setup_cqsize(entries * 4).build(entries))?;
        let nbufs = u16::try_from(buffers.clamp(64, 32768))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many buffers"))?;
        let ring_mem = Mapping::new(nbufs as usize * std::mem::size_of::<types::BufRingEntry>())?;
        let buf_mem = Mapping::new(nbufs as usize * RECV_BUF_SIZE)?;
        // SAFETY: ring_mem is page-aligned, sized for nbufs entries and outlives
        // the ring (field order above).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem.ptr as u64, nbufs, BGID, 0)?;
        }
        // SAFETY: zeroed msghdr is valid; only namelen/controllen matter for the template.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as u32;
        let send_meta = (0..nbufs)
            // SAFETY: all-zero is a valid value for these C structs.
            .map(|_| unsafe { std::mem::zeroed::<SendMeta>() })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let mut this = Uring {
            ring,
            ring_mem,
            buf_mem,
            nbufs,
            tail: 0,
            unpublished: 0,
            recv_hdr,
            send_meta,
            waker,
            socks: Vec::new(),
            rearm: Vec::new(),
            queued_sends: 0,
            cqes: Vec::with_capacity(1024),
            wake_armed: false,
            stats: BackendStats::default(),
            media: Vec::new(),
            media_free: Vec::new(),
            media_pool: Vec::new(),
            fixed_by_fd: Vec::new(),
            fixed_slots: 0,
        };
        // Two sockets per leg; a table of 64 Ki slots covers 32 Ki legs per worker.
        // Without it (old kernels) every SQE names its socket by fd instead.
        // The kernel refuses a table larger than RLIMIT_NOFILE.
        let slots = FIXED_SLOTS.min(nofile_limit());
        if slots > 0 && this.ring.submitter().register_files_sparse(slots).is_ok() {
            this.fixed_slots = slots;
        } else {
            log::warn!("io_uring: no registered-file table; sockets are looked up per request");
        }
        for bid in 0..nbufs {
            this.recycle(bid);
        }
        this.publish();
        this.arm_wake()?;
        Ok(this)
    }

    fn entries(&self) -> *mut types::BufRingEntry {
        self.ring_mem.ptr.cast()
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < nbufs, so the offset stays inside buf_mem.
        unsafe { self.buf_mem.ptr.add(bid as usize * RECV_BUF_SIZE) }
    }

    /// Puts buffer `bid` back in the ring (visible to the kernel after `publish`).
    fn recycle(&mut self, bid: u16) {
        let mask = self.nbufs - 1;
        let idx = self.tail.wrapping_add(self.unpublished) & mask;
        // SAFETY: idx < nbufs, inside ring_mem; we are the only producer.
        let e = unsafe { &mut *self.entries().add(idx as usize) };
        e.set_addr(self.buf_ptr(bid) as u64);
        e.set_len(RECV_BUF_SIZE as u32);
        e.set_bid(bid);
        self.unpublished += 1;
    }

    /// Publishes recycled buffers to the kernel with one release store of the tail.
    fn publish(&mut self) {
        if self.unpublished == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.unpublished);
        self.unpublished = 0;
        // SAFETY: the tail field lives in the first entry of the mapped ring; the
        // kernel reads it with acquire semantics.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.entries()) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer an SQE carries refers to memory this struct
            // keeps alive until the matching completion.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            // Queue full: hand what we have to the kernel and retry.
            self.ring.submit()?;
        }
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let sqe = opcode::PollAdd::new(types::Fd(self.waker.raw()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(OP_WAKE, 0));
        self.push(&sqe)?;
        self.wake_armed = true;
        Ok(())
    }

    fn arm_recv(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        let sqe = match self.fixed(fd) {
            Some(slot) => {
                opcode::RecvMsgMulti::new(types::Fixed(slot), &*self.recv_hdr, BGID).build()
            }
            None => opcode::RecvMsgMulti::new(types::Fd(fd), &*self.recv_hdr, BGID).build(),
        }
        .user_data(user_data(OP_RECV, token.0));
        self.push(&sqe)
    }

    /// The registered-file slot of `fd`, if it has one.
    #[inline]
    fn fixed(&self, fd: RawFd) -> Option<u32> {
        self.fixed_by_fd.get(fd as usize).copied().flatten()
    }

    fn slot(token: Token) -> usize {
        ((token.index() as usize) << 1) | token.is_rtcp() as usize
    }

    fn queue_send(&mut self, bid: u16, fd: RawFd, to: Option<SocketAddr>, off: usize, len: usize) {
        // SAFETY: off + len <= RECV_BUF_SIZE (checked by the caller).
        let ptr = unsafe { self.buf_ptr(bid).add(off) };
        let ud = user_data(OP_SEND, bid as u64);
        let fixed = self.fixed(fd);
        let sqe = match to {
            None => match fixed {
                Some(f) => opcode::Send::new(types::Fixed(f), ptr, len as u32).build(),
                None => opcode::Send::new(types::Fd(fd), ptr, len as u32).build(),
            },
            Some(addr) => {
                let m = &mut self.send_meta[bid as usize];
                let alen = std_to_sockaddr(&addr, &mut m.addr);
                m.iov = libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len,
                };
                m.hdr.msg_name = (&mut m.addr as *mut libc::sockaddr_storage).cast();
                m.hdr.msg_namelen = alen;
                m.hdr.msg_iov = &mut m.iov;
                m.hdr.msg_iovlen = 1;
                match fixed {
                    Some(f) => opcode::SendMsg::new(types::Fixed(f), &m.hdr).build(),
                    None => opcode::SendMsg::new(types::Fd(fd), &m.hdr).build(),
                }
            }
        }
        .user_data(ud);
        if self.push(&sqe).is_err() {
            self.stats.send_errors += 1;
            self.recycle(bid);
        } else {
            self.queued_sends += 1;
        }
    }

    fn on_recv(
        &mut self,
        ud: u64,
        res: i32,
        flags: u32,
        on_packet: &mut dyn FnMut(Token, SocketAddr, &mut [u8]) -> Egress,
    ) {
        let token = Token(ud & !OP_MASK);
        let slot = Self::slot(token);
        let current = self
            .socks
            .get(slot)
            .copied()
            .flatten()
            .filter(|(t, _)| *t == token);
        let bid = cqueue::buffer_select(flags);
        if !cqueue::more(flags) {
            if let Some((t, fd)) = current {
                if res != -libc::ECANCELED {
                    self.rearm.push((t, fd));
                }
            }
        }
        let Some(bid) = bid else {
            return; // an error completion (e.g. ENOBUFS) carries no buffer
        };
        if res < 0 || current.is_none() || bid >= self.nbufs {
            if bid < self.nbufs {
                self.recycle(bid);
            }
            return;
        }
        let total = (res as usize).min(RECV_BUF_SIZE);
        // SAFETY: the kernel wrote `total` bytes into buffer `bid`, which is ours
        // until we recycle it.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.buf_ptr(bid), total) };
        if total < PAYLOAD_OFF {
            self.recycle(bid);
            return;
        }
        let namelen = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let payloadlen = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
        let msg_flags = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as i32;
        if msg_flags & libc::MSG_TRUNC != 0 || PAYLOAD_OFF + payloadlen > total {
            self.stats.truncated += 1;
            self.recycle(bid);
            return;
        }
        // SAFETY: the name area is NAME_LEN bytes at OUT_HDR; sockaddr_storage is larger,
        // so copy into one before reading it as a socket address.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: both regions are valid for NAME_LEN bytes and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.as_ptr().add(OUT_HDR),
                (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                NAME_LEN,
            )
        };
        let Some(from) = sockaddr_to_std(&ss, namelen.min(NAME_LEN)) else {
            self.recycle(bid);
            return;
        };
        let payload = &mut buf[PAYLOAD_OFF..PAYLOAD_OFF + payloadlen];
        match on_packet(token, from, payload) {
            Egress::Send { fd, to, len } => {
                self.queue_send(bid, fd, to, PAYLOAD_OFF, len.min(payloadlen));
            }
            Egress::Drop => self.recycle(bid),
        }
    }

    /// Submits what is queued and runs the ring's deferred completions without
    /// waiting: a cancelled receive then lets go of its socket at once, so a
    /// close right after really frees the port (with DEFER_TASKRUN, only an
    /// enter carrying GETEVENTS runs that work).
    fn retire_now(&mut self) -> io::Result<()> {
        let queued = self.ring.submission().len() as u32;
        // SAFETY: no argument struct is passed; every queued SQE points at memory
        // this struct keeps alive until its completion.
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, IORING_ENTER_GETEVENTS, None)
        }
        .map(|_| ())
    }

    /// Processes every completion in the queue.
    fn reap(&mut self, on_packet: &mut dyn FnMut(Token, SocketAddr, &mut [u8]) -> Egress) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            match (ud & OP_MASK) >> OP_SHIFT {
                OP_RECV => self.on_recv(ud, res, flags, on_packet),
                OP_SEND => {
                    if res < 0 {
                        self.stats.send_errors += 1;
                    }
                    let bid = (ud & 0xffff) as u16;
                    if bid < self.nbufs {
                        self.recycle(bid);
                    }
                }
                OP_MEDIA => {
                    if res < 0 {
                        self.stats.send_errors += 1;
                    }
                    let slot = (ud & 0x0fff_ffff) as usize;
                    if let Some(mut m) = self.media.get_mut(slot).and_then(Option::take) {
                        // Release the shared frame now; keep the box for the next send.
                        m.payload = Bytes::new();
                        self.media_pool.push(m);
                        self.media_free.push(slot as u32);
                    }
                }
                OP_WAKE => {
                    self.waker.drain();
                    if !cqueue::more(flags) {
                        self.wake_armed = false;
                    }
                }
                _ => {}
            }
        }
        self.cqes = cqes;
    }
}

impl PacketIo for Uring {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn register(&mut self, token: Token, fd: RawFd) -> io::Result<()> {
        let slot = Self::slot(token);
        if self.socks.len() <= slot {
            self.socks.resize(slot + 1, None);
        }
        self.socks[slot] = Some((token, fd));
        if (slot as u32) < self.fixed_slots
            && self
                .ring
                .submitter()
                .register_files_update(slot as u32, &[fd])
                .is_ok()
        {
            if self.fixed_by_fd.len() <= fd as usize {
                self.fixed_by_fd.resize(fd as usize + 1, None);
            }
            self.fixed_by_fd[fd as usize] = Some(slot as u32);
        }
        self.arm_recv(token, fd)
    }

    fn deregister(&mut self, token: Token, fd: RawFd) {
        let slot = Self::slot(token);
        if let Some(s) = self.socks.get_mut(slot) {
            *s = None;
        }
        if let Some(f) = self.fixed_by_fd.get_mut(fd as usize).and_then(Option::take) {
            // In-flight requests hold their own reference; the slot can go now.
            let _ = self.ring.submitter().register_files_update(f, &[-1]);
        }
        self.rearm.retain(|(t, _)| *t != token);
        let sqe = opcode::AsyncCancel::new(user_data(OP_RECV, token.0))
            .build()
            .user_data(user_data(OP_CANCEL, 0));
        // Submit now: the socket is closed right after, and the cancellation
        // must reach the kernel before its fd number can be reused.
        if self.push(&sqe).and_then(|_| self.retire_now()).is_err() {
            log::warn!("io_uring: cannot cancel a receive; it ends when the socket closes");
        }
    }

    fn poll(
        &mut self,
        timeout: Option<Duration>,
        on_packet: &mut dyn FnMut(Token, SocketAddr, &mut [u8]) -> Egress,
    ) -> io::Result<()> {
        self.publish();
        for (token, fd) in std::mem::take(&mut self.rearm) {
            self.arm_recv(token, fd)?;
        }
        if !self.wake_armed {
            self.arm_wake()?;
        }
        // Loopback sends complete at once: wait for one completion beyond them,
        // so the enter returns on new work rather than on our own sends.
        let want = self.queued_sends + 1;
        self.queued_sends = 0;
        let result = match timeout {
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submitter().submit_and_wait(want),
        };
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap(on_packet);
        // A burst leaves many sends queued, each holding a receive buffer: hand
        // them to the kernel now (they complete inline) and recycle their buffers,
        // rather than at the next enter, whose receives need those buffers.
        while self.queued_sends > EARLY_SUBMIT {
            self.queued_sends = 0;
            self.ring.submit()?;
            self.reap(on_packet);
        }
        self.publish();
        Ok(())
    }

    fn send_media(&mut self, fd: RawFd, to: Option<SocketAddr>, header: [u8; 12], payload: Bytes) {
        let slot = match self.media_free.pop() {
            Some(s) => s as usize,
            None => {
                self.media.push(None);
                self.media.len() - 1
            }
        };
        // Boxes are reused: no allocation per packet once the pool is warm.
        let mut m = match self.media_pool.pop() {
            Some(mut m) => {
                m.header = header;
                m.payload = payload;
                // SAFETY: all-zero is a valid msghdr.
                m.hdr = unsafe { std::mem::zeroed() };
                m
            }
            // SAFETY: all-zero is a valid value for these C structs.
            None => Box::new(MediaSend {
                header,
                payload,
                iov: unsafe { std::mem::zeroed() },
                addr: unsafe { std::mem::zeroed() },
                hdr: unsafe { std::mem::zeroed() },
            }),
        };
        m.iov = [
            libc::iovec {
                iov_base: m.header.as_mut_ptr().cast(),
                iov_len: 12,
            },
            libc::iovec {
                iov_base: m.payload.as_ptr() as *mut libc::c_void,
                iov_len: m.payload.len(),
            },
        ];
        if let Some(addr) = to {
            m.hdr.msg_namelen = std_to_sockaddr(&addr, &mut m.addr);
            m.hdr.msg_name = (&mut m.addr as *mut libc::sockaddr_storage).cast();
        }
        m.hdr.msg_iov = m.iov.as_mut_ptr();
        m.hdr.msg_iovlen = 2;
        let sqe = match self.fixed(fd) {
            Some(f) => opcode::SendMsg::new(types::Fixed(f), &m.hdr).build(),
            None => opcode::SendMsg::new(types::Fd(fd), &m.hdr).build(),
        }
        .user_data(user_data(OP_MEDIA, slot as u64));
        // The box is stored before the kernel sees the SQE; its heap address is stable.
        self.media[slot] = Some(m);
        if self.push(&sqe).is_err() {
            self.stats.send_errors += 1;
            self.media[slot] = None;
            self.media_free.push(slot as u32);
        } else {
            self.queued_sends += 1;
        }
    }

    fn stats(&self) -> BackendStats {
        self.stats
    }
}
