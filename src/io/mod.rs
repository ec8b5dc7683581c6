//! The only code with sockets, rings and clocks: workers, the port allocator,
//! control listeners.

pub mod backend;
pub mod ctl;
pub mod engine;
pub mod limits;
pub mod listen;
pub mod listen_sig;
pub mod ng;
pub mod ports;
pub mod rtpproxy;
pub mod signalling;
pub mod worker;

use crate::config::{BackendChoice, Config, ControlSocket, ListenAddr};
use backend::{epoll::Epoll, uring::Uring, Waker};
use engine::Engine;
use std::sync::Arc;
use thiserror::Error;

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum RunError {
    /// A start-up step failed; the message says which and why.
    #[error("{0}")]
    Startup(String),
}

fn startup(msg: impl Into<String>) -> RunError {
    RunError::Startup(msg.into())
}

/// Which backend the workers will use, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chosen {
    Uring,
    Epoll,
}

fn choose_backend(config: &Config) -> Result<Chosen, RunError> {
    if config.backend == BackendChoice::Epoll {
        return Ok(Chosen::Epoll);
    }
    let probe =
        Waker::new().and_then(|w| Uring::new(w, config.io_uring_entries, config.io_uring_buffers));
    match (probe, config.backend) {
        (Ok(_), _) => Ok(Chosen::Uring),
        (Err(e), BackendChoice::IoUring) => Err(startup(format!(
            "backend io_uring was requested but is unavailable: {e}; use --backend epoll or auto"
        ))),
        (Err(e), _) => {
            log::warn!("io_uring unavailable ({e}); falling back to epoll");
            Ok(Chosen::Epoll)
        }
    }
}

/// Runs the engine until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), RunError> {
    let signals = block_stop_signals();
    let limit =
        limits::raise_nofile().map_err(|e| startup(format!("cannot read RLIMIT_NOFILE: {e}")))?;
    let pairs = (config.port_max as u64 + 1).saturating_sub(config.first_rtp_port() as u64) / 2;
    log::info!(
        "file descriptor limit {} (was {}): room for {} legs ({} two-leg calls); port range {}–{} holds {} legs",
        limit.now,
        limit.before,
        limit.leg_capacity(),
        limit.leg_capacity() / 2,
        config.port_min,
        config.port_max,
        pairs
    );
    let library = Arc::new(crate::media::library::Library::load(&config.media));
    {
        let library = library.clone();
        let ptime = config.ptime;
        std::thread::Builder::new()
            .name("rtpark-media".into())
            .spawn(move || library.prewarm(ptime))
            .map_err(|e| startup(format!("cannot start media thread: {e}")))?;
    }
    let chosen = choose_backend(&config)?;
    let n = config.effective_workers();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let shard_config = crate::session::ShardConfig {
        relatch_window: config.relatch_window,
        connect_latched: config.connect_latched,
        ..Default::default()
    };
    let mut workers = Vec::with_capacity(n);
    for id in 0..n {
        let waker = Waker::new().map_err(|e| startup(format!("cannot create eventfd: {e}")))?;
        let shard = crate::session::Shard::new(shard_config.clone());
        let handle = match chosen {
            Chosen::Uring => {
                let (w, entries, bufs) = (
                    waker.clone(),
                    config.io_uring_entries,
                    config.io_uring_buffers,
                );
                worker::spawn(
                    id,
                    move || Uring::new(w, entries, bufs),
                    waker,
                    shard,
                    ev_tx.clone(),
                    None,
                )
            }
            Chosen::Epoll => {
                let w = waker.clone();
                worker::spawn(id, move || Epoll::new(w), waker, shard, ev_tx.clone(), None)
            }
        }
        .map_err(|e| startup(format!("cannot start worker {id}: {e}")))?;
        workers.push(handle);
    }
    drop(ev_tx);
    let backend_name = match chosen {
        Chosen::Uring => "io_uring",
        Chosen::Epoll => "epoll",
    };
    log::info!("{n} worker(s) on {backend_name}");
    log::info!(
        "media on {} (advertised {}), ports {}–{}",
        config.interface.bind,
        config.interface.advertised,
        config.port_min,
        config.port_max
    );
    let engine = Arc::new(Engine::new(config.clone(), workers, backend_name, library));
    let started = std::time::Instant::now();
    let (warm, limit_pairs) = engine.prebind_ports(limit.leg_capacity() as usize);
    if limit_pairs > 0 {
        log::info!(
            "{warm} RTP port pairs bound ahead of calls in {} ms (kept bound between calls, up to {limit_pairs}; --warm-ports 0 closes them instead)",
            started.elapsed().as_millis()
        );
    }
    {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("rtpark-evt".into())
            .spawn(move || {
                for (w, ev) in ev_rx {
                    engine.on_session_event(w, ev);
                }
            })
            .map_err(|e| startup(format!("cannot start event thread: {e}")))?;
    }
    {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("rtpark-park".into())
            .spawn(move || engine.run_park_timer())
            .map_err(|e| startup(format!("cannot start park timer thread: {e}")))?;
    }
    // The SIP-core sockets exist before the native one answers: a harness (or an
    // init system) that waits for the native socket finds the others ready too.
    let _sig_files = serve_sip_cores(&config, &engine)?;
    let ListenAddr::Unix(path) = &config.listen_native;
    let listener = listen::bind_unix(path).map_err(|e| startup(format!("native control: {e}")))?;
    let _socket_file = listen::SocketFile(path.clone());
    log::info!("native control listening on {}", config.listen_native);
    {
        let engine = engine.clone();
        std::thread::Builder::new()
            .name("rtpark-native".into())
            .spawn(move || listen::serve_native(listener, engine))
            .map_err(|e| startup(format!("cannot start control thread: {e}")))?;
    }
    let sig = wait_for_signal(&signals);
    log::info!("received {sig}, stopping");
    engine.shutdown();
    log::info!("stopped");
    Ok(())
}

/// Starts the rtpproxy and ng listeners; returns the socket files to remove at exit.
fn serve_sip_cores(
    config: &Config,
    engine: &Arc<Engine>,
) -> Result<Vec<listen::SocketFile>, RunError> {
    let sig = Arc::new(signalling::Signalling::new(engine.clone()));
    let mut files = Vec::new();
    if !config.listen_rtpproxy.is_empty() || !config.listen_ng.is_empty() {
        let (tx, rx) = crossbeam_channel::unbounded();
        engine.subscribe(tx);
        let sig = sig.clone();
        std::thread::Builder::new()
            .name("rtpark-sigtmo".into())
            .spawn(move || {
                for ev in rx {
                    sig.on_event(&ev);
                }
            })
            .map_err(|e| startup(format!("cannot start the signalling event thread: {e}")))?;
    }
    let protocols: [(&[ControlSocket], &str, &str); 2] = [
        (&config.listen_rtpproxy, "--listen-rtpproxy", "rtpproxy"),
        (&config.listen_ng, "--listen-ng", "ng"),
    ];
    for (addrs, flag, name) in protocols {
        for addr in addrs {
            let bound = listen_sig::bind(addr, flag)
                .map_err(|e| startup(format!("{name} control: {e}")))?;
            if let ControlSocket::Unix(p) | ControlSocket::Cunix(p) = addr {
                files.push(listen::SocketFile(p.clone()));
            }
            let s = sig.clone();
            type Parts = (
                listen_sig::Handler,
                listen_sig::Complete,
                listen_sig::TooBig,
            );
            let (handler, complete, too_big): Parts = if name == "ng" {
                (
                    Arc::new(move |b: &[u8]| ng::handle(&s, b)),
                    ng::complete,
                    ng::reply_too_big,
                )
            } else {
                (
                    Arc::new(move |b: &[u8]| rtpproxy::handle(&s, b)),
                    |b: &[u8]| !b.is_empty(),
                    rtpproxy::reply_too_big,
                )
            };
            let s = sig.clone();
            let flush: listen_sig::Flush = Arc::new(move || s.engine().flush());
            listen_sig::spawn(bound, name, handler, complete, too_big, flush)
                .map_err(|e| startup(format!("cannot start the {name} listener: {e}")))?;
            log::info!("{name} protocol listening on {addr}");
        }
    }
    Ok(files)
}

/// Blocks SIGINT/SIGTERM in this thread and every thread it starts, so that
/// `wait_for_signal` receives them synchronously.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> &'static str {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: set is a valid, initialised sigset; sig is a valid out pointer.
        if unsafe { libc::sigwait(set, &mut sig) } == 0 {
            return match sig {
                libc::SIGINT => "SIGINT",
                _ => "SIGTERM",
            };
        }
    }
}
