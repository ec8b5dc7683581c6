//! A worker thread: owns a [`Shard`], its legs' sockets and a packet backend,
//! runs control jobs sent over a channel, and relays packets.

use super::backend::{BackendStats, Egress, PacketIo, Token, Waker};
use super::ports::{disconnect, PortPair};
use crate::session::{LegKey, SessionEvent, Shard, SocketKind, SocketOp, Verdict};
use crossbeam_channel::{Receiver, Sender};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A control job, run on the worker thread with exclusive access to its state.
pub type Job = Box<dyn FnOnce(&mut WorkerCtx) + Send>;

/// Everything a worker owns, as control jobs see it.
pub struct WorkerCtx {
    /// The session state.
    pub shard: Shard,
    /// Sockets by leg slot index.
    sockets: Vec<Option<PortPair>>,
    /// The packet backend.
    io: Box<dyn PacketIo>,
    /// Where session events go.
    events: Sender<(usize, SessionEvent)>,
    /// This worker's number.
    pub id: usize,
    /// The backend's counters as of the last loop turn.
    pub backend_stats: BackendStats,
    /// Set by a job to end the loop.
    stop: bool,
}

fn tokens(key: LegKey) -> [Token; 2] {
    [
        Token::new(key.index(), key.generation(), false),
        Token::new(key.index(), key.generation(), true),
    ]
}

impl WorkerCtx {
    /// Adds a leg with its bound sockets and starts receiving on them.
    pub fn add_leg(
        &mut self,
        now: Instant,
        config: crate::session::LegConfig,
        sockets: PortPair,
    ) -> std::io::Result<LegKey> {
        let key = self.shard.add_leg(now, config);
        self.attach_sockets(key, sockets)?;
        Ok(key)
    }

    /// Adopts a leg detached from another worker, keeping its state.
    pub fn adopt_leg(
        &mut self,
        now: Instant,
        leg: crate::session::Leg,
        sockets: PortPair,
    ) -> std::io::Result<LegKey> {
        let key = self.shard.insert_leg(now, leg);
        self.attach_sockets(key, sockets)?;
        Ok(key)
    }

    fn attach_sockets(&mut self, key: LegKey, sockets: PortPair) -> std::io::Result<()> {
        let i = key.index() as usize;
        if self.sockets.len() <= i {
            self.sockets.resize_with(i + 1, || None);
        }
        let [rtp, rtcp] = tokens(key);
        let registered = self
            .io
            .register(rtp, sockets.rtp.as_raw_fd())
            .and_then(|_| self.io.register(rtcp, sockets.rtcp.as_raw_fd()));
        if let Err(e) = registered {
            self.io.deregister(rtp, sockets.rtp.as_raw_fd());
            let _ = self.shard.remove_leg(key);
            return Err(e);
        }
        self.sockets[i] = Some(sockets);
        apply_socket_ops(&mut self.shard, &self.sockets, self.id);
        Ok(())
    }

    /// Removes a leg and stops receiving on its sockets, handing both back
    /// (drop the sockets to close them, or give them to another worker).
    pub fn detach_leg(&mut self, key: LegKey) -> Option<(crate::session::Leg, PortPair)> {
        let leg = self.shard.remove_leg(key).ok()?;
        let sockets = self.sockets.get_mut(key.index() as usize)?.take()?;
        let [rtp, rtcp] = tokens(key);
        self.io.deregister(rtp, sockets.rtp.as_raw_fd());
        self.io.deregister(rtcp, sockets.rtcp.as_raw_fd());
        // Leave the sockets in a known state for a worker that adopts them.
        if leg.rtp_connected {
            let _ = disconnect(&sockets.rtp);
        }
        if leg.rtcp_connected {
            let _ = disconnect(&sockets.rtcp);
        }
        Some((leg, sockets))
    }

    /// Asks the loop to exit after this job.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Performs the socket changes the shard asked for (connect after latching).
    pub fn apply_socket_ops(&mut self) {
        apply_socket_ops(&mut self.shard, &self.sockets, self.id);
    }

    /// Hands every due media packet to the backend.
    fn send_media(&mut self) {
        while let Some(t) = self.shard.poll_transmit() {
            let Some(Some(s)) = self.sockets.get(t.leg.index() as usize) else {
                continue;
            };
            let to = if t.connected { None } else { Some(t.to) };
            self.io
                .send_media(s.rtp.as_raw_fd(), to, t.header, t.payload);
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.shard.poll_event() {
            // The engine outlives its workers; a closed channel means shutdown.
            let _ = self.events.send((self.id, ev));
        }
    }
}

fn apply_socket_ops(shard: &mut Shard, sockets: &[Option<PortPair>], id: usize) {
    while let Some(op) = shard.poll_socket_op() {
        let (key, kind, to) = match op {
            SocketOp::Connect { leg, socket, to } => (leg, socket, Some(to)),
            SocketOp::Disconnect { leg, socket } => (leg, socket, None),
        };
        let Some(Some(s)) = sockets.get(key.index() as usize) else {
            continue;
        };
        let sock = match kind {
            SocketKind::Rtp => &s.rtp,
            SocketKind::Rtcp => &s.rtcp,
        };
        let result = match to {
            Some(addr) => sock.connect(addr),
            None => disconnect(sock),
        };
        if let Err(e) = result {
            log::warn!("worker {id}: cannot (dis)connect port {}: {e}", s.port);
        }
    }
}

/// The per-packet step: the shard decides, the sockets table names the sender.
#[inline]
fn on_packet(
    shard: &mut Shard,
    sockets: &[Option<PortPair>],
    id: usize,
    now: Instant,
    token: Token,
    from: SocketAddr,
    buf: &mut [u8],
) -> Egress {
    let key = LegKey::from_parts(token.index(), token.generation());
    let verdict = if token.is_rtcp() {
        shard.handle_rtcp(now, key, from, buf)
    } else {
        shard.handle_rtp(now, key, from, buf)
    };
    apply_socket_ops(shard, sockets, id);
    match verdict {
        Verdict::Forward(f) => {
            let Some(Some(s)) = sockets.get(f.leg.index() as usize) else {
                return Egress::Drop;
            };
            let fd = match f.socket {
                SocketKind::Rtp => s.rtp.as_raw_fd(),
                SocketKind::Rtcp => s.rtcp.as_raw_fd(),
            };
            Egress::Send {
                fd,
                to: if f.connected { None } else { Some(f.to) },
                len: buf.len(),
            }
        }
        Verdict::Drop(_) => Egress::Drop,
    }
}

/// Where a worker job leaves its result for the control thread waiting on it.
struct ReplySlot<R> {
    value: std::sync::Mutex<Option<R>>,
    done: AtomicBool,
    waiter: std::thread::Thread,
}

/// Owned by a job: marks its slot done and wakes the waiter when dropped,
/// whether the job ran or was discarded unrun.
struct Completer<R>(Arc<ReplySlot<R>>);

impl<R> Drop for Completer<R> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
        self.0.waiter.unpark();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The control plane's handle on a worker.
pub struct WorkerHandle {
    jobs: Sender<Job>,
    waker: Arc<Waker>,
    /// Sequence number of the last job [`WorkerHandle::post`]ed.
    posted: AtomicU64,
    /// Sequence number of the last posted job the worker has run.
    completed: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Worker number.
    pub id: usize,
}

/// The worker thread has gone (it panicked or was stopped).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("worker {0} is not running")]
pub struct WorkerGone(pub usize);

impl WorkerHandle {
    /// Runs `f` on the worker and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut WorkerCtx) -> R + Send + 'static,
    ) -> Result<R, WorkerGone> {
        let slot = Arc::new(ReplySlot {
            value: std::sync::Mutex::new(None),
            done: AtomicBool::new(false),
            waiter: std::thread::current(),
        });
        let completer = Completer(Arc::clone(&slot));
        let job: Job = Box::new(move |ctx| {
            let r = f(ctx);
            *lock(&completer.0.value) = Some(r);
            // Dropping `completer` wakes the caller.
        });
        // A job that never runs (the worker has gone) is dropped, which also wakes us.
        self.jobs.send(job).map_err(|_| WorkerGone(self.id))?;
        self.waker.wake();
        // Block at once rather than spin: on a one-core host the worker needs our CPU.
        while !slot.done.load(Ordering::Acquire) {
            std::thread::park();
        }
        let value = lock(&slot.value).take();
        value.ok_or(WorkerGone(self.id))
    }

    /// Queues `f` on the worker without waiting and returns its sequence number
    /// for [`WorkerHandle::wait_for`]. Callers must serialise their posts (the
    /// engine posts under its directory lock) so that numbers follow queue order.
    pub fn post(&self, f: impl FnOnce(&mut WorkerCtx) + Send + 'static) -> u64 {
        let seq = self.posted.fetch_add(1, Ordering::Relaxed) + 1;
        let completed = Arc::clone(&self.completed);
        let job: Job = Box::new(move |ctx| {
            f(ctx);
            completed.store(seq, Ordering::Release);
        });
        // A closed channel means the worker has gone; `wait_for` reports it.
        if self.jobs.send(job).is_ok() {
            self.waker.wake();
        }
        seq
    }

    /// Waits until the posted job numbered `seq` (and every job before it) has run.
    pub fn wait_for(&self, seq: u64) -> Result<(), WorkerGone> {
        if self.completed.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        // Jobs run in queue order: once an empty job has run, so has `seq`.
        self.call(|_| ())
    }

    /// Stops the worker and waits for its thread.
    pub fn shutdown(&self) {
        let _ = self.call(|ctx| ctx.stop());
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// Starts worker `id` on its own thread with the backend `make_backend` builds
/// there (an io_uring set up with SINGLE_ISSUER belongs to the creating thread).
pub fn spawn<B, F>(
    id: usize,
    make_backend: F,
    waker: Arc<Waker>,
    shard: Shard,
    events: Sender<(usize, SessionEvent)>,
    cpu: Option<usize>,
) -> std::io::Result<WorkerHandle>
where
    B: PacketIo + 'static,
    F: FnOnce() -> std::io::Result<B> + Send + 'static,
{
    let (tx, rx) = crossbeam_channel::unbounded::<Job>();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<std::io::Result<()>>(1);
    let thread = std::thread::Builder::new()
        .name(format!("rtpark-w{id}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                pin_to_cpu(cpu);
            }
            let backend = match make_backend() {
                Ok(b) => {
                    let _ = ready_tx.send(Ok(()));
                    b
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut ctx = WorkerCtx {
                shard,
                sockets: Vec::new(),
                io: Box::new(backend),
                events,
                id,
                backend_stats: BackendStats::default(),
                stop: false,
            };
            run_loop(&mut ctx, &rx);
        })?;
    ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("worker thread exited during start-up"))??;
    Ok(WorkerHandle {
        jobs: tx,
        waker,
        posted: AtomicU64::new(0),
        completed: Arc::new(AtomicU64::new(0)),
        thread: std::sync::Mutex::new(Some(thread)),
        id,
    })
}

fn run_loop(ctx: &mut WorkerCtx, jobs: &Receiver<Job>) {
    loop {
        while let Ok(job) = jobs.try_recv() {
            job(ctx);
        }
        if ctx.stop {
            return;
        }
        let now = Instant::now();
        if ctx.shard.poll_timeout().is_some_and(|t| t <= now) {
            ctx.shard.handle_timeout(now);
            ctx.apply_socket_ops();
        }
        ctx.send_media();
        ctx.drain_events();
        let timeout = ctx
            .shard
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now));
        let WorkerCtx {
            shard,
            sockets,
            io,
            id,
            ..
        } = ctx;
        let id = *id;
        // One clock read per batch: packets of one turn share `now`, which only
        // feeds timeouts measured in seconds.
        let mut turn_now: Option<Instant> = None;
        let result = io.poll(timeout, &mut |token, from, buf| {
            let now = *turn_now.get_or_insert_with(Instant::now);
            on_packet(shard, sockets, id, now, token, from, buf)
        });
        if let Err(e) = result {
            log::error!("worker {}: packet backend failed: {e}; retrying", ctx.id);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        ctx.backend_stats = ctx.io.stats();
        ctx.drain_events();
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) targets this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
