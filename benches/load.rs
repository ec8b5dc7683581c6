//! Load generator: sets up N calls on an engine, sends G.711-rate RTP both ways and
//! reports relayed packets/s, loss, latency, the engine's CPU per relayed packet and
//! its RSS per call, next to the same figures for a minimal relay loop (the baseline)
//! measured in the same run.
//!
//! Run with `cargo bench --bench load -- [options]`; `--help` lists them
//! (`scripts/bench-load.sh` runs the standard set). The engine is pinned to
//! `--engine-cpu` and the generator to `--load-cpu`, both SCHED_FIFO by default so
//! builds on the same machine delay them less; all traffic stays on 127.0.0.1 and the
//! run stops by itself.
//!
//! How the figures are taken:
//! * Traffic: two endpoints per call, one 20 ms G.711 packet each per ptime, spread
//!   evenly over the ptime and sent in `--tick-us` batches. Every payload carries its
//!   send time, stream and sequence number.
//! * Loss counts the packets sent inside the window that had not come back 200 ms
//!   after the last send. Latency is send time to the kernel's receive timestamp
//!   (SO_TIMESTAMPNS) at the far endpoint, so the generator's own delay in reading
//!   does not count ("app read" latency, which includes it, is shown too).
//! * Engine CPU is the on-CPU time of all its threads (`/proc/<pid>/task/*/schedstat`)
//!   over the window, divided by the packets relayed in it. On loopback a sender also
//!   pays the receiver's softirq, so this includes delivering into the generator's
//!   sockets, and the generator does as much kernel work per packet as the relay.
//! * RSS per call is the engine's VmRSS growth over call setup divided by the calls.
//!
//! `--engine rtpengine|both` drives Debian's `rtpengine` (userspace, `--table=-1`)
//! with the same load over its ng protocol (`load/ng.rs`, `load/rtpengine.rs`), the
//! two engines one after the other, and ends with one table side by side;
//! `--control ng` drives rtpark over ng too (its `--listen-ng udp:IP:PORT`), and
//! `--setup-calls N` adds a phase measuring offer+answer pairs per second.
//! `scripts/bench-vs-rtpengine.sh` runs the standard comparison.
//!
//! `--mode hold` measures music on hold instead: `--legs` held legs (a comma list
//! runs several sizes), the generator only receiving, against a minimal sender of
//! the same packets (`--target moh-baseline`); see `load/hold.rs`.

#![recursion_limit = "256"]

#[path = "load/baseline.rs"]
mod baseline;
#[path = "load/engine.rs"]
mod engine;
#[path = "load/generator.rs"]
mod generator;
#[path = "load/hist.rs"]
mod hist;
#[path = "load/hold.rs"]
mod hold;
#[path = "load/moh_baseline.rs"]
mod moh_baseline;
#[path = "load/ng.rs"]
mod ng;
#[path = "load/rtpark.rs"]
mod rtpark;
#[path = "load/rtpengine.rs"]
mod rtpengine;
#[path = "load/sys.rs"]
mod sys;

use clap::{Parser, ValueEnum};
use generator::{Generator, RunResult, Sample, Schedule};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Bridged calls, RTP sent both ways and relayed.
    Relay,
    /// Held legs: the engine sends music on hold, the generator only receives.
    Hold,
}

/// Which engine(s) to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// rtpark itself.
    Rtpark,
    /// The minimal epoll relay loop (hold mode: the minimal MOH sender).
    Baseline,
    /// Hold mode: the minimal MOH sender (same packets, same rate, same core).
    MohBaseline,
    /// The baseline first, then rtpark, and their ratio (hold mode: difference).
    Both,
    /// Debian's rtpengine over ng (chosen with `--engine`, not `--target`).
    #[value(skip)]
    Rtpengine,
}

/// Which media engine(s) a relay run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineChoice {
    /// rtpark (and the minimal relay, as `--target` says).
    Rtpark,
    /// Debian's rtpengine in userspace, over ng.
    Rtpengine,
    /// rtpark, then rtpengine, with the same load, and a table side by side.
    Both,
}

/// The control protocol rtpark is driven with (rtpengine always speaks ng).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Control {
    /// rtpark's JSON-lines socket, fully pipelined.
    Native,
    /// The rtpengine ng protocol over UDP (`--listen-ng udp:127.0.0.1:PORT`).
    Ng,
}

/// How the MOH baseline sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MohIo {
    /// One send(2) per packet on connected sockets.
    Send,
    /// io_uring send SQEs on registered files, one submit per tick.
    Uring,
}

impl From<MohIo> for moh_baseline::SendIo {
    fn from(m: MohIo) -> Self {
        match m {
            MohIo::Send => moh_baseline::SendIo::Send,
            MohIo::Uring => moh_baseline::SendIo::Uring,
        }
    }
}

/// Scheduling class for the engine and the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sched {
    /// SCHED_FIFO at `--rt-priority`.
    Fifo,
    /// SCHED_OTHER at `--nice`.
    Nice,
    /// Unchanged.
    Normal,
}

/// The generator's kernel interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Io {
    /// io_uring, falling back to epoll if unavailable.
    Uring,
    /// epoll, send and recvmmsg.
    Epoll,
}

/// Load generator for rtpark (see the module docs).
#[derive(Debug, Parser)]
#[command(
    name = "load",
    about = "RTP relay load generator: rtpark against a minimal relay loop"
)]
struct Opts {
    /// relay (bridged calls, traffic both ways) or hold (held legs, MOH only).
    #[arg(long, value_enum, default_value_t = Mode::Relay)]
    mode: Mode,
    /// Hold mode: held legs, each in its own call; a comma list runs each size.
    #[arg(long, value_delimiter = ',', default_values_t = [5000])]
    legs: Vec<usize>,
    /// Hold mode: MOH class to hold with (rtpark's default when absent).
    #[arg(long)]
    moh_class: Option<String>,
    /// Hold mode: the generator harvests its sockets every this many µs (arrival
    /// times are kernel timestamps, so this does not blur them).
    #[arg(long, default_value_t = 1000)]
    hold_tick_us: u64,
    /// Hold mode: `media_timeout` (s) given to each leg, so legs that never send do
    /// not all time out together inside the window; 0 leaves rtpark's default (60 s).
    #[arg(long, default_value_t = 3600)]
    hold_media_timeout: u32,
    /// Hold mode: how the MOH baseline sends.
    #[arg(long, value_enum, default_value_t = MohIo::Send)]
    moh_baseline_io: MohIo,
    /// Hold mode: the MOH baseline's pacing tick in µs.
    #[arg(long, default_value_t = 1000)]
    moh_tick_us: u64,
    /// Calls (two RTP streams each, one per direction).
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Length of the measurement window in seconds.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Traffic before the window, in seconds (default 3 in relay mode, 5 in hold
    /// mode, counted from the last hold).
    #[arg(long)]
    warmup: Option<f64>,
    /// rtpark or the minimal relay or both (the default with `--engine rtpark`);
    /// with `--engine rtpengine|both`, `baseline` or `both` adds the minimal relay.
    #[arg(long, value_enum)]
    target: Option<Target>,
    /// Relay mode: the media engine(s): rtpark, rtpengine (Debian's, userspace, over
    /// ng) or both, one after the other with the same load.
    #[arg(long, value_enum, default_value_t = EngineChoice::Rtpark)]
    engine: EngineChoice,
    /// Relay mode: how rtpark is controlled: native (JSON lines) or ng (rtpengine's
    /// protocol, rtpark started with `--listen-ng udp:127.0.0.1:PORT`).
    #[arg(long, value_enum, default_value_t = Control::Native)]
    control: Control,
    /// Relay mode: after the traffic run and its teardown, set up this many more calls
    /// (no media) as fast as the engine answers, then delete them; 0 = no such phase.
    #[arg(long, default_value_t = 0)]
    setup_calls: usize,
    /// Times the setup phase runs (set up, then delete, each time); its rate is
    /// the median round's, since one round lasts a fraction of a second.
    #[arg(long, default_value_t = 5)]
    setup_rounds: usize,
    /// Calls in flight during ng setup and teardown (each has one request
    /// outstanding at a time; rtpark's native socket is pipelined in full).
    #[arg(long, default_value_t = 32)]
    setup_window: usize,
    /// The rtpengine binary (package rtpengine-daemon).
    #[arg(long, default_value = "rtpengine")]
    rtpengine: PathBuf,
    /// Extra argument for rtpengine (repeatable; a later option overrides ours).
    #[arg(long, allow_hyphen_values = true)]
    rtpengine_arg: Vec<String>,
    /// rtpengine `--log-level` (5 logs every new call, 6 every command).
    #[arg(long, default_value_t = 4)]
    rtpengine_log_level: u8,
    /// Run the target(s) this many times, alternating, and summarise the ratio (so
    /// other load on the machine spreads over both engines).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// CPU the engine is pinned to.
    #[arg(long, default_value_t = 0)]
    engine_cpu: usize,
    /// CPU the generator is pinned to.
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Packet time in ms.
    #[arg(long, default_value_t = 20)]
    ptime_ms: u64,
    /// RTP payload bytes (at least 24: the probe fields).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// Pacing tick in µs: each tick sends the packets that became due.
    #[arg(long, default_value_t = 100)]
    tick_us: u64,
    /// After the last send, keep receiving until this many ms pass with no packet of
    /// the window arriving (at most 10 s); what has not arrived by then is lost.
    #[arg(long, default_value_t = 200)]
    drain_ms: u64,
    /// Scheduling of the engine and the generator, so other jobs on the machine
    /// (builds) delay their wake-ups less: fifo (SCHED_FIFO), nice, or normal.
    #[arg(long, value_enum, default_value_t = Sched::Fifo)]
    sched: Sched,
    /// SCHED_FIFO priority with `--sched fifo`.
    #[arg(long, default_value_t = 10)]
    rt_priority: i32,
    /// Nice value with `--sched nice`.
    #[arg(long, default_value_t = -20, allow_hyphen_values = true)]
    nice: i32,
    /// How the generator moves packets: uring (batched sends, multishot receive) or
    /// epoll (send + recvmmsg).
    #[arg(long, value_enum, default_value_t = Io::Uring)]
    io: Io,
    /// Share this many generator sockets per side between all calls (sendto, one
    /// hot receive socket per side) instead of two sockets per call; 0 = per call.
    /// Cuts the generator's own cost; legs then share remote addresses (N per side).
    #[arg(long, default_value_t = 0)]
    shared_sockets: usize,
    /// io_uring: submit after this many queued sends (latency is corrected for each
    /// packet's place in its batch).
    #[arg(long, default_value_t = 16)]
    submit_batch: usize,
    /// rtpark `--workers`.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// First port of rtpark's media range (below the ephemeral range the generator uses).
    #[arg(long, default_value_t = 20000)]
    port_min: u16,
    /// The rtpark binary.
    #[arg(long, default_value = env!("CARGO_BIN_EXE_rtpark"))]
    rtpark: PathBuf,
    /// Extra argument for rtpark (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    rtpark_arg: Vec<String>,
    /// Keep rtpark's log file even when the run succeeds.
    #[arg(long)]
    keep_log: bool,
    /// Also print one JSON line per target.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the baseline relay child.
    #[arg(long, hide = true)]
    baseline_relay_child: bool,
    /// Internal: run as the MOH baseline sender child.
    #[arg(long, hide = true)]
    moh_sender_child: bool,
    /// Internal: check the ng codec and SDP parser, then exit.
    #[arg(long, hide = true)]
    ng_self_test: bool,
    /// Internal: lifetime bound of the baseline relay child.
    #[arg(long, hide = true, default_value_t = 600)]
    max_seconds: u64,
}

impl Opts {
    /// `--warmup` in relay mode.
    fn relay_warmup(&self) -> f64 {
        self.warmup.unwrap_or(3.0)
    }

    /// `--warmup` in hold mode.
    fn hold_warmup(&self) -> f64 {
        self.warmup.unwrap_or(5.0)
    }

    /// `--target`, defaulting to both.
    fn target(&self) -> Target {
        self.target.unwrap_or(Target::Both)
    }

    /// Relay mode: the targets of one round, in order.
    fn relay_targets(&self) -> Vec<Target> {
        let with_baseline = matches!(self.target, Some(Target::Baseline | Target::Both));
        let mut v = Vec::new();
        match self.engine {
            EngineChoice::Rtpark => match self.target() {
                Target::Both => v.extend([Target::Baseline, Target::Rtpark]),
                Target::Baseline => v.push(Target::Baseline),
                Target::Rtpark => v.push(Target::Rtpark),
                Target::MohBaseline | Target::Rtpengine => {}
            },
            EngineChoice::Rtpengine => {
                if with_baseline {
                    v.push(Target::Baseline);
                }
                v.push(Target::Rtpengine);
            }
            EngineChoice::Both => {
                if with_baseline {
                    v.push(Target::Baseline);
                }
                v.extend([Target::Rtpark, Target::Rtpengine]);
            }
        }
        v
    }

    /// The media port range an engine gets: room for the larger of the traffic run
    /// and the setup phase (their calls are never up at the same time).
    fn port_range(&self) -> Result<(u16, u16), String> {
        let port_min = self.port_min;
        let span = self.calls.max(self.setup_calls) as u64 * 4 + 64;
        let port_max = u16::try_from(port_min as u64 + span - 1).map_err(|_| {
            format!("--port-min {port_min} leaves no room for {span} ports; lower it or use fewer calls")
        })?;
        Ok((port_min, port_max))
    }
}

/// The engine being measured, with what the report needs to know about it.
struct Engine {
    process: engine::EngineProcess,
    /// Ports the engine receives media on (for the per-socket drop count).
    ports: HashSet<u16>,
    /// VmRSS before any call was set up.
    rss_before_kib: u64,
    /// VmRSS once every call was set up.
    rss_after_setup_kib: u64,
    /// Seconds spent setting calls up.
    setup_secs: f64,
    /// Control connection, for a final `stats` (rtpark only).
    control: Option<rtpark::NativeClient>,
    /// ng client, when the calls were set up over ng.
    ng: Option<ng::NgClient>,
    /// The command line it was started with (rtpengine), for the report.
    command: Option<String>,
}

/// Names the traffic run's calls (ng call-ids and native call names) start with.
const RELAY_CALLS: &str = "load";
/// Names the setup-rate phase's calls start with.
const RATE_CALLS: &str = "rate";

fn main() -> ExitCode {
    let opts = Opts::parse();
    if opts.baseline_relay_child {
        return ExitCode::from(baseline::child_main(opts.max_seconds) as u8);
    }
    if opts.moh_sender_child {
        return ExitCode::from(moh_baseline::child_main(
            opts.max_seconds,
            opts.ptime_ms,
            opts.moh_tick_us,
            opts.moh_baseline_io.into(),
        ) as u8);
    }
    if opts.ng_self_test {
        return match ng::self_test() {
            Ok(()) => {
                println!("ng self-test passed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if opts.mode == Mode::Hold {
        if opts.engine != EngineChoice::Rtpark || opts.setup_calls > 0 {
            eprintln!("--engine and --setup-calls belong to --mode relay (hold mode measures rtpark's MOH only)");
            return ExitCode::FAILURE;
        }
        return hold_main(&opts);
    }
    if opts.target == Some(Target::MohBaseline) {
        eprintln!("--target moh-baseline belongs to --mode hold");
        return ExitCode::FAILURE;
    }
    if opts.payload < generator::PROBE {
        eprintln!(
            "--payload must be at least {} bytes (the probe fields)",
            generator::PROBE
        );
        return ExitCode::FAILURE;
    }
    if opts.calls == 0 || opts.seconds <= 0.0 || opts.ptime_ms == 0 || opts.tick_us == 0 {
        eprintln!("--calls, --seconds, --ptime-ms and --tick-us must be positive");
        return ExitCode::FAILURE;
    }
    let need = opts.calls as u64 * 4 + 64;
    if let Err(e) = prepare_process(&opts, need, &format!("{} calls", opts.calls)) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // Engines inherit the limit and hold about four sockets per call.
    let engine_need = opts.calls.max(opts.setup_calls) as u64 * 4 + 256;
    let limit = sys::raise_fd_hard_limit(engine_need);
    if limit < engine_need {
        eprintln!(
            "the open-file limit is {limit}; an engine needs about {engine_need} for {} calls; \
             raise the hard limit (ulimit -Hn) or pass fewer --calls / --setup-calls",
            opts.calls.max(opts.setup_calls)
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = opts.port_range() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let targets = opts.relay_targets();
    let mut failed = false;
    let mut ratios: Vec<f64> = Vec::new();
    let mut all_reports: Vec<Value> = Vec::new();
    'rounds: for round in 0..opts.repeat.max(1) {
        let mut reports: Vec<Value> = Vec::new();
        for &t in &targets {
            if sys::stopping() {
                break 'rounds;
            }
            if round > 0 || !reports.is_empty() {
                std::thread::sleep(Duration::from_secs(1));
            }
            match run_target(t, &opts) {
                Ok(mut rep) => {
                    rep["round"] = json!(round + 1);
                    print_report(&rep);
                    if opts.json {
                        println!("{rep}");
                    }
                    failed |= rep["aborted"].is_string();
                    reports.push(rep);
                }
                Err(e) => {
                    eprintln!("{}: {e}", name(t));
                    failed = true;
                }
            }
        }
        all_reports.extend(reports.iter().cloned());
        let find = |t: &str| reports.iter().find(|r| r["target"] == t);
        if let (Some(base), Some(rt)) = (find("baseline"), find("rtpark")) {
            let b = base["engine_cpu_us_per_packet"].as_f64().unwrap_or(0.0);
            let r = rt["engine_cpu_us_per_packet"].as_f64().unwrap_or(0.0);
            if b > 0.0 {
                let ratio = r / b;
                ratios.push(ratio);
                println!(
                    "rtpark/baseline engine CPU per relayed packet: {r:.3} / {b:.3} µs = {ratio:.3}x"
                );
                if opts.json {
                    println!(
                        "{}",
                        json!({"target": "ratio", "round": round + 1, "calls": opts.calls, "cpu_per_packet_ratio": ratio})
                    );
                }
            }
        }
    }
    if ratios.len() > 1 {
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        println!(
            "rtpark/baseline CPU per packet over {} rounds: median {median:.3}x (min {:.3}x, max {:.3}x)",
            sorted.len(),
            sorted[0],
            sorted[sorted.len() - 1]
        );
        if opts.json {
            println!(
                "{}",
                json!({"target": "ratio_summary", "calls": opts.calls, "rounds": sorted.len(), "median": median, "min": sorted[0], "max": sorted[sorted.len() - 1]})
            );
        }
    }
    if targets.contains(&Target::Rtpengine) {
        print_comparison(&all_reports, opts.json);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn priority(opts: &Opts) -> sys::Priority {
    match opts.sched {
        Sched::Fifo => sys::Priority::Fifo(opts.rt_priority),
        Sched::Nice => sys::Priority::Nice(opts.nice),
        Sched::Normal => sys::Priority::Normal,
    }
}

fn name(t: Target) -> &'static str {
    match t {
        Target::Rtpark => "rtpark",
        Target::Baseline => "baseline",
        Target::MohBaseline => "moh-baseline",
        Target::Both => "both",
        Target::Rtpengine => "rtpengine",
    }
}

/// Process set-up shared by both modes: stop handler, descriptor limit (at least
/// `need`), timer slack, scheduling and the generator's CPU.
fn prepare_process(opts: &Opts, need: u64, what: &str) -> Result<(), String> {
    sys::install_stop_handler();
    let fd_limit = sys::raise_fd_limit();
    if fd_limit < need {
        return Err(format!(
            "open-file limit is {fd_limit}, {need} needed for {what}; raise the hard limit (ulimit -Hn) or use fewer"
        ));
    }
    sys::set_min_timer_slack();
    sys::set_priority(priority(opts)).map_err(|e| {
        format!(
            "cannot apply --sched {:?} ({e}); run as root, or pass --sched normal",
            opts.sched
        )
    })?;
    sys::pin_to_cpu(0, opts.load_cpu)
        .map_err(|e| format!("cannot pin the generator to CPU {}: {e}", opts.load_cpu))?;
    Ok(())
}

/// `--mode hold`: every size in `--legs`, each with the target(s), then the engine
/// overhead per packet and how memory grows with the number of held legs.
fn hold_main(opts: &Opts) -> ExitCode {
    let max_legs = opts.legs.iter().copied().max().unwrap_or(0);
    if max_legs == 0 || opts.legs.contains(&0) || opts.seconds <= 0.0 || opts.ptime_ms == 0 {
        eprintln!("--legs, --seconds and --ptime-ms must be positive");
        return ExitCode::FAILURE;
    }
    if opts.ptime_ms != 20 {
        eprintln!("note: rtpark plays MOH at its configured ptime (20 ms by default); --ptime-ms only changes the baseline and the expected rate");
    }
    if let Err(e) = prepare_process(opts, max_legs as u64 + 64, &format!("{max_legs} legs")) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    // rtpark needs two sockets per leg under the same hard limit.
    let engine_need = 2 * max_legs as u64 + 64;
    if sys::raise_fd_limit() < engine_need {
        eprintln!(
            "warning: rtpark needs about {engine_need} descriptors for {max_legs} legs; the limit is {}",
            sys::raise_fd_limit()
        );
    }
    let targets: &[Target] = match opts.target() {
        Target::Both => &[Target::MohBaseline, Target::Rtpark],
        Target::Baseline | Target::MohBaseline => &[Target::MohBaseline],
        Target::Rtpark => &[Target::Rtpark],
        Target::Rtpengine => &[],
    };
    let mut failed = false;
    let mut memory: Vec<(usize, f64, f64)> = Vec::new();
    'rounds: for round in 0..opts.repeat.max(1) {
        for &n in &opts.legs {
            let mut reports: Vec<Value> = Vec::new();
            for &t in targets {
                if sys::stopping() {
                    break 'rounds;
                }
                if round > 0 || n != opts.legs[0] || !reports.is_empty() {
                    std::thread::sleep(Duration::from_secs(1));
                }
                match hold::run_target(t, opts, n) {
                    Ok(mut rep) => {
                        rep["round"] = json!(round + 1);
                        hold::print_report(&rep);
                        if opts.json {
                            println!("{rep}");
                        }
                        failed |= rep["aborted"].is_string();
                        if t == Target::Rtpark && !rep["aborted"].is_string() {
                            let kib =
                                |p: &str| rep.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
                            memory.push((
                                n,
                                kib("/rss/after_hold_kib") - kib("/rss/before_kib"),
                                kib("/rss/end_kib") - kib("/rss/before_kib"),
                            ));
                        }
                        reports.push(rep);
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", name(t));
                        failed = true;
                    }
                }
            }
            let find = |t: &str| reports.iter().find(|r| r["target"] == t);
            if let (Some(base), Some(rt)) = (find("moh-baseline"), find("rtpark")) {
                let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
                let (b, r) = (
                    f(base, "/engine_cpu_us_per_packet"),
                    f(rt, "/engine_cpu_us_per_packet"),
                );
                let (bc, rc) = (
                    f(base, "/engine_core_busy_us_per_packet"),
                    f(rt, "/engine_core_busy_us_per_packet"),
                );
                println!(
                    "engine overhead per MOH packet ({n} legs): rtpark {r:.3} − kernel send cost (baseline, {}) {b:.3} = {:.3} µs/pkt; cores {:.3} vs {:.3}",
                    moh_baseline::SendIo::from(opts.moh_baseline_io).name(),
                    r - b,
                    f(rt, "/engine_cores"),
                    f(base, "/engine_cores")
                );
                if opts.json {
                    println!(
                        "{}",
                        json!({"mode": "hold", "target": "moh_overhead", "round": round + 1, "legs": n,
                               "baseline_io": moh_baseline::SendIo::from(opts.moh_baseline_io).name(),
                               "rtpark_us_per_packet": r, "baseline_us_per_packet": b,
                               "overhead_us_per_packet": r - b,
                               "rtpark_core_busy_us_per_packet": rc, "baseline_core_busy_us_per_packet": bc,
                               "overhead_core_busy_us_per_packet": rc - bc})
                    );
                }
            }
        }
    }
    let sizes: HashSet<usize> = memory.iter().map(|m| m.0).collect();
    if sizes.len() > 1 {
        // Least-squares line through (legs, RSS growth): the slope is the memory per
        // held leg, the intercept what does not depend on the number of listeners.
        let fit = |pick: &dyn Fn(&(usize, f64, f64)) -> f64| {
            let k = memory.len() as f64;
            let mx = memory.iter().map(|m| m.0 as f64).sum::<f64>() / k;
            let my = memory.iter().map(pick).sum::<f64>() / k;
            let sxy: f64 = memory
                .iter()
                .map(|m| (m.0 as f64 - mx) * (pick(m) - my))
                .sum();
            let sxx: f64 = memory.iter().map(|m| (m.0 as f64 - mx).powi(2)).sum();
            let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
            (slope, my - slope * mx)
        };
        let (slope, icpt) = fit(&|m| m.1);
        let (slope_end, icpt_end) = fit(&|m| m.2);
        for m in &memory {
            println!(
                "memory: {} held legs: RSS +{:.0} KiB after hold ({:.2} KiB/leg), +{:.0} KiB at window end ({:.2} KiB/leg)",
                m.0,
                m.1,
                m.1 / m.0 as f64,
                m.2,
                m.2 / m.0 as f64
            );
        }
        println!(
            "memory fit: RSS growth ≈ {icpt:.0} KiB + {slope:.3} KiB × legs after hold; {icpt_end:.0} KiB + {slope_end:.3} KiB × legs at window end"
        );
        if opts.json {
            println!(
                "{}",
                json!({"mode": "hold", "target": "memory_fit",
                       "points": memory.iter().map(|m| json!({"legs": m.0, "rss_growth_after_hold_kib": m.1, "rss_growth_end_kib": m.2})).collect::<Vec<_>>(),
                       "per_leg_kib": slope, "fixed_kib": icpt, "per_leg_end_kib": slope_end, "fixed_end_kib": icpt_end})
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Starts the engine and sets the calls up on it.
fn start_engine(
    t: Target,
    opts: &Opts,
    gen: &Generator,
) -> Result<(Engine, Vec<(SocketAddr, SocketAddr)>), String> {
    let addrs = gen.addrs();
    match t {
        Target::Baseline => {
            let gen_ports: Vec<(u16, u16)> =
                addrs.iter().map(|(a, b)| (a.port(), b.port())).collect();
            let max = (opts.relay_warmup() + opts.seconds) as u64 + 120;
            let t0 = std::time::Instant::now();
            let (process, relay_ports) =
                baseline::spawn(opts.engine_cpu, priority(opts), &gen_ports, max)?;
            let setup_secs = t0.elapsed().as_secs_f64();
            let pid = process.pid();
            let relay: Vec<(SocketAddr, SocketAddr)> = relay_ports
                .iter()
                .map(|&(a, b)| {
                    (
                        SocketAddr::from(([127, 0, 0, 1], a)),
                        SocketAddr::from(([127, 0, 0, 1], b)),
                    )
                })
                .collect();
            let rss = sys::status_kib(pid, "VmRSS");
            let engine = Engine {
                process,
                ports: relay_ports.iter().flat_map(|&(a, b)| [a, b]).collect(),
                // The relay binds its sockets before it answers, so its size at that
                // point is the per-call cost; heap for the fd table is all it adds.
                rss_before_kib: rss,
                rss_after_setup_kib: rss,
                setup_secs,
                control: None,
                ng: None,
                command: None,
            };
            Ok((engine, relay))
        }
        Target::Rtpengine => {
            let (port_min, port_max) = opts.port_range()?;
            let pid = std::process::id();
            let log = PathBuf::from(format!("/tmp/rtpengine-load-{pid}.log"));
            let cfg = rtpengine::RtpengineConfig {
                binary: &opts.rtpengine,
                cpu: opts.engine_cpu,
                priority: priority(opts),
                threads: opts.workers,
                port_min,
                port_max,
                log_level: opts.rtpengine_log_level,
                extra_args: &opts.rtpengine_arg,
                log: log.clone(),
            };
            let (mut process, mut client, command) = rtpengine::start(&cfg)?;
            if !opts.quiet {
                eprintln!("rtpengine: started as {command}");
            }
            if opts.keep_log {
                process.keep_file(&log);
            }
            let epid = process.pid();
            std::thread::sleep(Duration::from_millis(200));
            let rss_before_kib = sys::status_kib(epid, "VmRSS");
            let (relay, elapsed) = match client.setup_calls(RELAY_CALLS, &addrs, opts.setup_window)
            {
                Ok(s) => s,
                Err(e) => {
                    process.keep_file(&log);
                    return Err(format!(
                        "{e}\n(rtpengine log kept in {}:\n{})",
                        log.display(),
                        rtpark::tail(&log)
                    ));
                }
            };
            let rss_after_setup_kib = sys::status_kib(epid, "VmRSS");
            let engine = Engine {
                process,
                ports: (port_min..=port_max).collect(),
                rss_before_kib,
                rss_after_setup_kib,
                setup_secs: elapsed.as_secs_f64(),
                control: None,
                ng: Some(client),
                command: Some(command),
            };
            Ok((engine, relay))
        }
        Target::Rtpark | Target::Both | Target::MohBaseline => {
            let (port_min, port_max) = opts.port_range()?;
            let pid = std::process::id();
            let mut extra_args = opts.rtpark_arg.clone();
            let ng_addr = if opts.control == Control::Ng {
                let port = rtpengine::free_udp_port()?;
                let a = SocketAddr::from(([127, 0, 0, 1], port));
                extra_args.extend(["--listen-ng".to_string(), format!("udp:{a}")]);
                Some(a)
            } else {
                None
            };
            let cfg = rtpark::RtparkConfig {
                binary: &opts.rtpark,
                cpu: opts.engine_cpu,
                priority: priority(opts),
                workers: opts.workers,
                port_min,
                port_max,
                extra_args: &extra_args,
                socket: PathBuf::from(format!("/tmp/rtpark-load-{pid}.sock")),
                log: PathBuf::from(format!("/tmp/rtpark-load-{pid}.log")),
            };
            let (mut process, mut client) = rtpark::start(&cfg).map_err(|e| {
                if ng_addr.is_some() {
                    format!("{e}\n(--control ng starts rtpark with `--listen-ng udp:IP:PORT`; an rtpark without it cannot be driven over ng: pass --control native)")
                } else {
                    e
                }
            })?;
            if opts.keep_log {
                process.keep_file(&cfg.log);
            }
            let mut ng_client = match ng_addr {
                Some(a) => {
                    let mut c = ng::NgClient::new(a)
                        .map_err(|e| format!("cannot open the ng client socket: {e}"))?;
                    let mut gone = || process.exited();
                    if let Err(e) = c.wait_ready(Duration::from_secs(5), &mut gone) {
                        process.keep_file(&cfg.log);
                        return Err(format!(
                            "rtpark over ng: {e}\n(rtpark log kept in {})",
                            cfg.log.display()
                        ));
                    }
                    Some(c)
                }
                None => None,
            };
            let epid = process.pid();
            // Let start-up allocations settle before the "before" reading.
            std::thread::sleep(Duration::from_millis(200));
            let rss_before_kib = sys::status_kib(epid, "VmRSS");
            let setup = match &mut ng_client {
                Some(c) => c
                    .setup_calls(RELAY_CALLS, &addrs, opts.setup_window)
                    .map(|(relay, elapsed)| rtpark::Setup { relay, elapsed }),
                None => client.setup_calls(RELAY_CALLS, &addrs),
            };
            let setup = match setup {
                Ok(s) => s,
                Err(e) => {
                    process.keep_file(&cfg.log);
                    return Err(format!("{e}\n(rtpark log kept in {})", cfg.log.display()));
                }
            };
            let rss_after_setup_kib = sys::status_kib(epid, "VmRSS");
            let engine = Engine {
                process,
                ports: (port_min..=port_max).collect(),
                rss_before_kib,
                rss_after_setup_kib,
                setup_secs: setup.elapsed.as_secs_f64(),
                control: Some(client),
                ng: ng_client,
                command: None,
            };
            Ok((engine, setup.relay))
        }
    }
}

/// Deletes the traffic run's calls (over ng, or rtpark's native socket); returns the
/// seconds it took. The baseline has nothing to delete.
fn delete_relay_calls(opts: &Opts, engine: &mut Engine) -> Result<Option<f64>, String> {
    let took = if let Some(c) = engine.ng.as_mut() {
        c.delete_calls(RELAY_CALLS, opts.calls, opts.setup_window)?
    } else if let Some(c) = engine.control.as_mut() {
        c.delete_calls(RELAY_CALLS, opts.calls)?
    } else {
        return Ok(None);
    };
    Ok(Some(took.as_secs_f64()))
}

/// The setup-rate phase: `--setup-calls` offer+answer pairs (native: create, create,
/// bridge) as fast as the engine answers, then as many deletes; no media.
fn setup_rate(opts: &Opts, engine: &mut Engine) -> Result<Value, String> {
    let n = opts.setup_calls;
    // Addresses nobody listens on: these calls never carry media.
    let remotes: Vec<(SocketAddr, SocketAddr)> = (0..n)
        .map(|i| {
            let p = 40000 + 2 * (i % 10000) as u16;
            (
                SocketAddr::from(([127, 0, 0, 1], p)),
                SocketAddr::from(([127, 0, 0, 1], p + 1)),
            )
        })
        .collect();
    let epid = engine.process.pid();
    let rss0 = sys::status_kib(epid, "VmRSS");
    let (ecpu0, gcpu0, t0) = (
        sys::task_cpu_ns(epid),
        sys::process_cpu_ns(),
        sys::mono_ns(),
    );
    let rounds = opts.setup_rounds.max(1);
    let (mut setups, mut deletes) = (Vec::new(), Vec::new());
    let (mut control, mut window, mut retransmits) = ("ng", json!(opts.setup_window), 0);
    for round in 0..rounds {
        let prefix = format!("{RATE_CALLS}{round}-");
        let (setup, delete) = if let Some(c) = engine.ng.as_mut() {
            let before = c.retransmits;
            let (_, setup) = c.setup_calls(&prefix, &remotes, opts.setup_window)?;
            let delete = c.delete_calls(&prefix, n, opts.setup_window)?;
            retransmits += c.retransmits - before;
            (setup, delete)
        } else if let Some(c) = engine.control.as_mut() {
            let setup = c.setup_calls(&prefix, &remotes)?.elapsed;
            let delete = c.delete_calls(&prefix, n)?;
            (control, window) = ("native", json!("all"));
            (setup, delete)
        } else {
            return Err("the baseline has no call setup".into());
        };
        setups.push(setup);
        deletes.push(delete);
    }
    // The median round by setup time, and its delete time likewise.
    setups.sort();
    deletes.sort();
    let (setup, delete) = (setups[rounds / 2], deletes[rounds / 2]);
    let rss1 = sys::status_kib(epid, "VmRSS");
    let wall = sys::mono_ns().saturating_sub(t0).max(1) as f64;
    let engine_pct = sys::task_cpu_ns(epid).saturating_sub(ecpu0) as f64 / wall * 100.0;
    let gen_ns = sys::process_cpu_ns().saturating_sub(gcpu0) as f64;
    let gen_pct = gen_ns / wall * 100.0;
    // ng: offer, answer, delete per call; native: create, create, bridge, delete.
    let requests = (n * rounds) as f64 * if control == "ng" { 3.0 } else { 4.0 };
    let rate = |d: Duration| {
        if d.as_secs_f64() > 0.0 {
            n as f64 / d.as_secs_f64()
        } else {
            0.0
        }
    };
    Ok(json!({
        "calls": n,
        "control": control,
        "window": window,
        "rounds": rounds,
        "setup_s": setup.as_secs_f64(),
        "setups_per_s": rate(setup),
        "setups_per_s_rounds": setups.iter().map(|&d| rate(d)).collect::<Vec<_>>(),
        "delete_s": delete.as_secs_f64(),
        "deletes_per_s": rate(delete),
        "ng_retransmits": retransmits,
        "rss_growth_kib": rss1 as i64 - rss0 as i64,
        "engine_cpu_pct": engine_pct,
        "generator_cpu_pct": gen_pct,
        "generator_us_per_request": if requests > 0.0 { gen_ns / 1000.0 / requests } else { 0.0 },
    }))
}

/// Runs one engine through setup, traffic and teardown; returns its report.
fn run_target(t: Target, opts: &Opts) -> Result<Value, String> {
    let kind = match opts.io {
        Io::Uring => generator::TransportKind::Uring,
        Io::Epoll => generator::TransportKind::Epoll,
    };
    let mut gen = Generator::new(opts.calls, opts.payload, kind, opts.shared_sockets)
        .map_err(|e| format!("cannot open the generator's sockets: {e}"))?;
    let gen_ports: HashSet<u16> = gen
        .addrs()
        .iter()
        .flat_map(|(a, b)| [a.port(), b.port()])
        .collect();
    let udp_before = sys::udp_counters();
    if !opts.quiet {
        eprintln!("{}: setting up {} calls", name(t), opts.calls);
    }
    let (mut engine, relay) = start_engine(t, opts, &gen)?;
    gen.connect(&relay)
        .map_err(|e| format!("cannot connect the generator's sockets: {e}"))?;
    if !opts.quiet {
        eprintln!(
            "{}: {} calls up in {:.3} s; sending for {} + {} s",
            name(t),
            opts.calls,
            engine.setup_secs,
            opts.relay_warmup(),
            opts.seconds
        );
    }

    let sch = Schedule {
        ptime_ns: opts.ptime_ms * 1_000_000,
        tick_ns: opts.tick_us * 1000,
        submit_batch: opts.submit_batch.max(1),
        warmup_ns: (opts.relay_warmup() * 1e9) as u64,
        window_ns: (opts.seconds * 1e9) as u64,
        drain_ns: opts.drain_ms * 1_000_000,
        progress_ns: if opts.quiet { 0 } else { 10_000_000_000 },
    };
    let epid = engine.process.pid();
    let (ecpu, lcpu) = (opts.engine_cpu, opts.load_cpu);
    let mut sample = |received: u64| Sample {
        at_ns: sys::mono_ns(),
        engine_cpu_ns: sys::task_cpu_ns(epid),
        engine_ticks: sys::stat_ticks(epid),
        engine_core: sys::core_ticks(ecpu),
        load_core: sys::core_ticks(lcpu),
        gen_cpu_ns: sys::process_cpu_ns(),
        received,
        engine_rss_kib: sys::status_kib(epid, "VmRSS"),
        engine_wakeups: sys::task_wakeups(epid),
    };
    let process = &mut engine.process;
    let mut gone = || process.exited();
    let res = gen.run(&sch, &mut sample, &mut gone);

    let engine_stats = engine
        .control
        .as_mut()
        .and_then(|c| c.request(json!({"cmd": "stats"})).ok());
    let udp = sys::udp_counters().since(&udp_before);
    let gen_drops = sys::socket_drops(|p| gen_ports.contains(&p));
    let engine_drops = sys::socket_drops(|p| engine.ports.contains(&p));
    let gen_io = match gen.transport() {
        generator::TransportKind::Uring => "uring",
        generator::TransportKind::Epoll => "epoll",
    };
    // The generator's sockets are done; closing them frees their ports for the
    // setup phase's engine ports.
    drop(gen);
    let teardown = if res.aborted.is_none() && engine.process.exited().is_none() {
        if !opts.quiet && t != Target::Baseline {
            eprintln!("{}: deleting {} calls", name(t), opts.calls);
        }
        delete_relay_calls(opts, &mut engine)
    } else {
        Ok(None)
    };
    let phase = if opts.setup_calls > 0
        && t != Target::Baseline
        && teardown.is_ok()
        && engine.process.exited().is_none()
        && !sys::stopping()
    {
        if !opts.quiet {
            eprintln!(
                "{}: setup phase, {} calls ({} control)",
                name(t),
                opts.setup_calls,
                if engine.ng.is_some() { "ng" } else { "native" }
            );
        }
        Some(setup_rate(opts, &mut engine).unwrap_or_else(|e| json!({"error": e})))
    } else {
        None
    };
    let exit = engine.process.stop();
    let mut rep = report(
        t,
        opts,
        &engine,
        &res,
        udp,
        gen_drops,
        engine_drops,
        engine_stats,
        exit,
    );
    rep["generator"]["io"] = json!(gen_io);
    rep["generator"]["uring_rearms"] = json!(res.rearms);
    rep["control"] = json!(match (&engine.ng, &engine.control) {
        (Some(_), _) => "ng",
        (None, Some(_)) => "native",
        (None, None) => "stdin",
    });
    rep["setup_window"] = json!(engine.ng.as_ref().map(|_| opts.setup_window));
    rep["engine_command"] = json!(engine.command);
    rep["ng_retransmits"] = json!(engine.ng.as_ref().map(|c| c.retransmits));
    match teardown {
        Ok(secs) => rep["teardown_s"] = json!(secs),
        Err(e) => rep["teardown_error"] = json!(e),
    }
    rep["setup_rate"] = json!(phase);
    Ok(rep)
}

fn pct(h: &hist::Histogram, q: f64) -> u64 {
    h.quantile(q)
}

#[allow(clippy::too_many_arguments)]
fn report(
    t: Target,
    opts: &Opts,
    engine: &Engine,
    r: &RunResult,
    udp: sys::UdpCounters,
    gen_drops: u64,
    engine_drops: u64,
    engine_stats: Option<Value>,
    exit: Option<String>,
) -> Value {
    let (s, e) = (&r.start, &r.end);
    let window_s = e.at_ns.saturating_sub(s.at_ns) as f64 / 1e9;
    let relayed = e.received.saturating_sub(s.received);
    let per_pkt = |ns: f64| {
        if relayed > 0 {
            ns / 1000.0 / relayed as f64
        } else {
            0.0
        }
    };
    let tck = sys::clk_tck() as f64;
    let tick_ns = 1e9 / tck;
    let engine_cpu_ns = e.engine_cpu_ns.saturating_sub(s.engine_cpu_ns) as f64;
    let engine_ticks_ns = e.engine_ticks.saturating_sub(s.engine_ticks) as f64 * tick_ns;
    let core = |a: sys::CoreTicks, b: sys::CoreTicks| {
        let busy = b.busy.saturating_sub(a.busy) as f64;
        let all =
            busy + b.idle.saturating_sub(a.idle) as f64 + b.steal.saturating_sub(a.steal) as f64;
        let steal = b.steal.saturating_sub(a.steal) as f64;
        (
            busy * tick_ns,
            if all > 0.0 { busy / all * 100.0 } else { 0.0 },
            if all > 0.0 { steal / all * 100.0 } else { 0.0 },
        )
    };
    let (ecore_ns, ecore_pct, esteal) = core(s.engine_core, e.engine_core);
    let (_, lcore_pct, lsteal) = core(s.load_core, e.load_core);
    let gen_cpu_ns = e.gen_cpu_ns.saturating_sub(s.gen_cpu_ns) as f64;
    let lost = r.sent_window as i64 - r.received_window as i64;
    let loss_pct = if r.sent_window > 0 {
        lost as f64 * 100.0 / r.sent_window as f64
    } else {
        0.0
    };
    let calls = opts.calls as f64;
    let worst_second_loss = r
        .sent_per_second
        .iter()
        .zip(&r.received_per_second)
        .map(|(s, r)| s.saturating_sub(*r))
        .max()
        .unwrap_or(0);
    let full_secs = (opts.seconds.floor() as usize).min(r.arrivals_per_second.len());
    let arrivals = &r.arrivals_per_second[..full_secs];
    let min_pps = arrivals.iter().copied().min().unwrap_or(0);
    let max_pps = arrivals.iter().copied().max().unwrap_or(0);
    let gen_cpu_pct = if window_s > 0.0 {
        gen_cpu_ns / 1e9 / window_s * 100.0
    } else {
        0.0
    };
    json!({
        "target": name(t),
        "calls": opts.calls,
        "streams": opts.calls * 2,
        "window_s": window_s,
        "warmup_s": opts.relay_warmup(),
        "tick_us": opts.tick_us,
        "setup_s": engine.setup_secs,
        "setups_per_s": if engine.setup_secs > 0.0 { calls / engine.setup_secs } else { 0.0 },
        "sent": r.sent_window,
        "received": r.received_window,
        "lost": lost,
        "drained_ms": r.drained_ns as f64 / 1e6,
        "loss_pct": loss_pct,
        "worst_second_lost": worst_second_loss,
        "sent_total": r.sent_total,
        "received_total": r.received_total,
        "out_of_order": r.out_of_order,
        "misrouted": r.misrouted,
        "send_errors": r.send_errors,
        "refused": r.refused,
        "relayed_per_s": if window_s > 0.0 { relayed as f64 / window_s } else { 0.0 },
        "relayed_per_s_min_second": min_pps,
        "relayed_per_s_max_second": max_pps,
        "latency_us": {
            "p50": pct(&r.latency_wire, 0.5), "p90": pct(&r.latency_wire, 0.9),
            "p99": pct(&r.latency_wire, 0.99), "p999": pct(&r.latency_wire, 0.999),
            "max": r.latency_wire.max(), "mean": r.latency_wire.mean(),
        },
        "latency_app_us": {
            "p50": pct(&r.latency_app, 0.5), "p99": pct(&r.latency_app, 0.99), "max": r.latency_app.max(),
        },
        "engine_cpu_us_per_packet": per_pkt(engine_cpu_ns),
        "engine_cpu_ticks_us_per_packet": per_pkt(engine_ticks_ns),
        "engine_cpu_pct": if window_s > 0.0 { engine_cpu_ns / 1e9 / window_s * 100.0 } else { 0.0 },
        "engine_core_busy_us_per_packet": per_pkt(ecore_ns),
        "engine_core_other_pct": (ecore_pct - if window_s > 0.0 { engine_cpu_ns / 1e9 / window_s * 100.0 } else { 0.0 }).max(0.0),
        "engine_wakeups_per_s": if window_s > 0.0 { e.engine_wakeups.saturating_sub(s.engine_wakeups) as f64 / window_s } else { 0.0 },
        "packets_per_engine_wakeup": if e.engine_wakeups > s.engine_wakeups { relayed as f64 / (e.engine_wakeups - s.engine_wakeups) as f64 } else { 0.0 },
        "sched": format!("{:?}", opts.sched).to_lowercase(),
        "engine_core_busy_pct": ecore_pct,
        "engine_core_steal_pct": esteal,
        "rss_before_kib": engine.rss_before_kib,
        "rss_after_setup_kib": engine.rss_after_setup_kib,
        "rss_end_kib": e.engine_rss_kib,
        "rss_per_call_kib": engine.rss_after_setup_kib.saturating_sub(engine.rss_before_kib) as f64 / calls,
        "rss_per_call_with_traffic_kib": e.engine_rss_kib.saturating_sub(engine.rss_before_kib) as f64 / calls,
        "generator": {
            "cpu_pct": gen_cpu_pct,
            "cpu_us_per_packet": if r.sent_window + relayed > 0 { gen_cpu_ns / 1000.0 / (r.sent_window + relayed) as f64 } else { 0.0 },
            "core_busy_pct": lcore_pct,
            "core_steal_pct": lsteal,
            "send_lag_us": {"p50": pct(&r.send_lag, 0.5), "p99": pct(&r.send_lag, 0.99), "max": r.send_lag.max()},
            "tick_late_us": {"p50": pct(&r.tick_late, 0.5), "p99": pct(&r.tick_late, 0.99), "max": r.tick_late.max()},
            "overruns": r.overruns,
            "send_us_per_packet": if r.sent_window > 0 { r.send_busy_ns as f64 / 1000.0 / r.sent_window as f64 } else { 0.0 },
            "recv_us_per_packet": if relayed > 0 { r.recv_busy_ns as f64 / 1000.0 / relayed as f64 } else { 0.0 },
        },
        "kernel": {
            "udp_no_ports": udp.no_ports,
            "udp_in_errors": udp.in_errors,
            "udp_rcvbuf_errors": udp.rcvbuf_errors,
            "udp_sndbuf_errors": udp.sndbuf_errors,
            "generator_socket_drops": gen_drops,
            "engine_socket_drops": engine_drops,
        },
        "engine_stats": engine_stats,
        "engine_exit": exit,
        "aborted": r.aborted,
    })
}

fn print_report(v: &Value) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let u = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    println!(
        "== {} — {} calls, {:.1} s window ==",
        v["target"].as_str().unwrap_or("?"),
        u("/calls"),
        f("/window_s")
    );
    if let Some(why) = v["aborted"].as_str() {
        println!("  ABORTED: {why}");
    }
    println!(
        "  setup                {:>10.3} s ({:.0} calls/s over {}{})",
        f("/setup_s"),
        f("/setups_per_s"),
        v["control"].as_str().unwrap_or("?"),
        match v["setup_window"].as_u64() {
            Some(w) => format!(", {w} calls in flight"),
            None => String::new(),
        }
    );
    println!(
        "  relayed              {:>10.0} pkt/s (per-second min {} max {})",
        f("/relayed_per_s"),
        u("/relayed_per_s_min_second"),
        u("/relayed_per_s_max_second")
    );
    println!(
        "  loss                 {:>10} of {} ({:.4} %), worst second {}, drained {:.0} ms; out-of-order {}, misrouted {}, send errors {}, refused {}",
        u("/lost"),
        u("/sent"),
        f("/loss_pct"),
        u("/worst_second_lost"),
        f("/drained_ms"),
        u("/out_of_order"),
        u("/misrouted"),
        u("/send_errors"),
        u("/refused")
    );
    println!(
        "  latency (kernel rx)  p50 {} p90 {} p99 {} p99.9 {} max {} µs",
        u("/latency_us/p50"),
        u("/latency_us/p90"),
        u("/latency_us/p99"),
        u("/latency_us/p999"),
        u("/latency_us/max")
    );
    println!(
        "  latency (app read)   p50 {} p99 {} max {} µs",
        u("/latency_app_us/p50"),
        u("/latency_app_us/p99"),
        u("/latency_app_us/max")
    );
    println!(
        "  engine CPU           {:>10.3} µs/pkt ({:.1} % of a core; ticks say {:.3} µs/pkt)",
        f("/engine_cpu_us_per_packet"),
        f("/engine_cpu_pct"),
        f("/engine_cpu_ticks_us_per_packet")
    );
    println!(
        "  engine core busy     {:>10.3} µs/pkt ({:.1} %, of which other tasks {:.1} %; steal {:.1} %)",
        f("/engine_core_busy_us_per_packet"),
        f("/engine_core_busy_pct"),
        f("/engine_core_other_pct"),
        f("/engine_core_steal_pct")
    );
    println!(
        "  engine wake-ups      {:>10.0} /s ({:.1} packets per wake-up)",
        f("/engine_wakeups_per_s"),
        f("/packets_per_engine_wakeup")
    );
    println!(
        "  engine RSS           {:>10.2} KiB/call after setup, {:.2} with traffic ({} → {} → {} KiB)",
        f("/rss_per_call_kib"),
        f("/rss_per_call_with_traffic_kib"),
        u("/rss_before_kib"),
        u("/rss_after_setup_kib"),
        u("/rss_end_kib")
    );
    println!(
        "  generator ({:<5})    CPU {:.1} % ({:.3} µs/pkt), core busy {:.1} %, steal {:.1} %",
        v.pointer("/generator/io")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        f("/generator/cpu_pct"),
        f("/generator/cpu_us_per_packet"),
        f("/generator/core_busy_pct"),
        f("/generator/core_steal_pct")
    );
    println!(
        "  generator split      send {:.3} µs/pkt, receive {:.3} µs/pkt (wall time in each loop)",
        f("/generator/send_us_per_packet"),
        f("/generator/recv_us_per_packet")
    );
    println!(
        "  generator lag        send p50 {} p99 {} max {} µs; tick wake p99 {} max {} µs; overruns {}",
        u("/generator/send_lag_us/p50"),
        u("/generator/send_lag_us/p99"),
        u("/generator/send_lag_us/max"),
        u("/generator/tick_late_us/p99"),
        u("/generator/tick_late_us/max"),
        u("/generator/overruns")
    );
    println!(
        "  kernel UDP           no-port {} rcvbuf-err {} sndbuf-err {}; socket drops: generator {} engine {}",
        u("/kernel/udp_no_ports"),
        u("/kernel/udp_rcvbuf_errors"),
        u("/kernel/udp_sndbuf_errors"),
        u("/kernel/generator_socket_drops"),
        u("/kernel/engine_socket_drops")
    );
    if f("/generator/cpu_pct") > 85.0 || u("/generator/send_lag_us/p99") > 2000 {
        println!(
            "  WARNING: the generator may be the bottleneck (CPU > 85 % or send lag p99 > 2 ms)"
        );
    }
    if v["sched"] == "fifo" && (f("/engine_cpu_pct") > 90.0 || f("/generator/cpu_pct") > 90.0) {
        println!(
            "  WARNING: above 95 % CPU a SCHED_FIFO task is throttled for 50 ms per second \
             (kernel.sched_rt_runtime_us); for saturation runs prefer --sched nice"
        );
    }
    if f("/engine_core_other_pct") > 10.0 {
        println!(
            "  NOTE: other tasks used {:.1} % of the engine's core during the window; \
             figures may be noisy",
            f("/engine_core_other_pct")
        );
    }
    if let Some(t) = v["teardown_s"].as_f64() {
        println!(
            "  teardown             {t:>10.3} s ({:.0} deletes/s)",
            if t > 0.0 { f("/calls") / t } else { 0.0 }
        );
    }
    if let Some(e) = v["teardown_error"].as_str() {
        println!("  teardown             FAILED: {e}");
    }
    let sr = &v["setup_rate"];
    if let Some(e) = sr["error"].as_str() {
        println!("  setup phase          FAILED: {e}");
    } else if sr.is_object() {
        println!(
            "  setup phase          {:>10.0} calls/s (median of {} rounds: {}; {} calls over {}, window {}; {:.3} s), deletes {:.0}/s, ng resends {}; CPU engine {:.0} %, generator {:.0} % ({:.1} µs/request)",
            f("/setup_rate/setups_per_s"),
            u("/setup_rate/rounds"),
            sr["setups_per_s_rounds"]
                .as_array()
                .map(|r| r
                    .iter()
                    .map(|x| format!("{:.0}", x.as_f64().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default(),
            u("/setup_rate/calls"),
            sr["control"].as_str().unwrap_or("?"),
            sr["window"],
            f("/setup_rate/setup_s"),
            f("/setup_rate/deletes_per_s"),
            u("/setup_rate/ng_retransmits"),
            f("/setup_rate/engine_cpu_pct"),
            f("/setup_rate/generator_cpu_pct"),
            f("/setup_rate/generator_us_per_request")
        );
        if f("/setup_rate/generator_cpu_pct") > 85.0 {
            println!("  WARNING: the generator may limit the setup rate (CPU > 85 %)");
        }
    }
    if let Some(cmd) = v["engine_command"].as_str() {
        println!("  engine command       {cmd}");
    }
    if let Some(exit) = v["engine_exit"].as_str() {
        println!("  engine exit          {exit}");
    }
}

/// Calls set up per second: the setup phase's figure when it ran, else the traffic
/// run's own setup; the flag says which.
fn setups_per_s(v: &Value) -> (f64, bool) {
    match v
        .pointer("/setup_rate/setups_per_s")
        .and_then(Value::as_f64)
    {
        Some(r) => (r, true),
        None => (v["setups_per_s"].as_f64().unwrap_or(0.0), false),
    }
}

/// The side-by-side table of an `--engine rtpengine|both` run: one row per engine
/// and round, ratios against rtpengine of the same round, then the targets
/// (printed, not asserted).
fn print_comparison(reports: &[Value], json_lines: bool) {
    let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let rounds = reports
        .iter()
        .filter_map(|r| r["round"].as_u64())
        .max()
        .unwrap_or(1);
    println!();
    println!(
        "== side by side: {} calls, {:.0} s window ==",
        reports.first().map(|r| f(r, "/calls")).unwrap_or(0.0),
        reports.first().map(|r| f(r, "/window_s")).unwrap_or(0.0)
    );
    println!(
        "| {:<10} | {:>5} | {:>7} | {:>12} | {:>13} | {:>8} | {:>15} | {:>19} | {:>10} |",
        "engine",
        "round",
        "control",
        "CPU µs/pkt",
        "× rtpengine",
        "loss %",
        "p50 / p99 µs",
        "RSS/call KiB",
        "setups/s"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        "-".repeat(12),
        "-".repeat(7),
        "-".repeat(9),
        "-".repeat(14),
        "-".repeat(15),
        "-".repeat(10),
        "-".repeat(17),
        "-".repeat(21),
        "-".repeat(12)
    );
    let mut partial_setup = false;
    for round in 1..=rounds {
        let of_round: Vec<&Value> = reports
            .iter()
            .filter(|r| r["round"].as_u64() == Some(round))
            .collect();
        let rte = of_round.iter().find(|r| r["target"] == "rtpengine");
        let rte_cpu = rte.map(|r| f(r, "/engine_cpu_us_per_packet"));
        for r in &of_round {
            let cpu = f(r, "/engine_cpu_us_per_packet");
            let ratio = match rte_cpu {
                Some(b) if b > 0.0 && cpu > 0.0 => format!("{:.2}×", cpu / b),
                _ => "—".into(),
            };
            let (rate, from_phase) = setups_per_s(r);
            partial_setup |= !from_phase && r["target"] != "baseline";
            let rate = if r["target"] == "baseline" {
                "—".to_string()
            } else {
                format!("{rate:.0}{}", if from_phase { "" } else { "*" })
            };
            let rss = if r["target"] == "baseline" {
                "—".to_string()
            } else {
                format!(
                    "{:.1} / {:.1}",
                    f(r, "/rss_per_call_kib"),
                    f(r, "/rss_per_call_with_traffic_kib")
                )
            };
            println!(
                "| {:<10} | {:>5} | {:>7} | {:>12.3} | {:>13} | {:>8.4} | {:>15} | {:>19} | {:>10} |{}",
                r["target"].as_str().unwrap_or("?"),
                round,
                r["control"].as_str().unwrap_or("?"),
                cpu,
                ratio,
                f(r, "/loss_pct"),
                format!("{} / {}", f(r, "/latency_us/p50"), f(r, "/latency_us/p99")),
                rss,
                rate,
                if r["aborted"].is_string() { " ABORTED" } else { "" }
            );
        }
        let rtp = of_round.iter().find(|r| r["target"] == "rtpark");
        if let (Some(a), Some(b)) = (rtp, rte) {
            let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
            let cpu = ratio(
                f(a, "/engine_cpu_us_per_packet"),
                f(b, "/engine_cpu_us_per_packet"),
            );
            let p99 = ratio(f(a, "/latency_us/p99"), f(b, "/latency_us/p99"));
            let setups = ratio(setups_per_s(a).0, setups_per_s(b).0);
            println!(
                "  round {round}, rtpark against rtpengine (targets, not asserted): CPU per relayed packet {cpu:.2}× (target ≤ 0.65×), p99 latency {p99:.2}× (≤ 0.10×), setups/s {setups:.2}× (≥ 4×)"
            );
            if json_lines {
                println!(
                    "{}",
                    json!({"target": "vs_rtpengine", "round": round, "calls": a["calls"],
                           "rtpark_control": a["control"],
                           "cpu_per_packet_ratio": cpu, "p99_ratio": p99, "setups_per_s_ratio": setups,
                           "rtpark_setups_from_setup_phase": setups_per_s(a).1,
                           "rtpengine_setups_from_setup_phase": setups_per_s(b).1})
                );
            }
        }
    }
    println!(
        "CPU: engine on-CPU time, all threads, over the window / packets relayed in it. \
         Latency: send to kernel receive timestamp. RSS/call: after setup / with traffic."
    );
    if partial_setup {
        println!("* setups/s of the traffic run's own setup (no --setup-calls phase)");
    }
}
