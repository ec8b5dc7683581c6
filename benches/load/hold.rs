//! Hold mode (`--mode hold`): N legs, each in its own call, all on hold, so the
//! engine sends one MOH packet per leg per ptime and the generator only receives.
//!
//! * Set-up: `create_leg` per leg (G.711 µ-law, the generator's socket as trusted
//!   remote), then `hold` per leg, both pipelined from a helper thread while the
//!   generator already receives; holds start staggered by set-up time. The window
//!   opens `--warmup` seconds after the last hold was answered.
//! * Pacing jitter: per leg, ideal arrival = the leg's first arrival in the window +
//!   (RTP timestamp − first timestamp) / 8000 s; the deviation of each packet's
//!   kernel receive timestamp (SO_TIMESTAMPNS) from it, over all packets. A skipped
//!   slot therefore shows once, as loss, not twice as jitter. "Lateness" anchors
//!   each leg at its earliest packet instead, so it is never negative.
//! * Loss: packets expected from each leg's timestamp span in the window against
//!   packets received; sequence gaps, duplicates, timestamp jumps, markers and SSRC
//!   changes are counted separately.
//! * Engine CPU: on-CPU time of all its threads over the window, per packet received
//!   in the window (packets are classified by kernel timestamp against the window's
//!   edges, which are the CPU samples' times).
//! * Memory: engine VmRSS before any leg (after its start-up encodings are ready),
//!   after creating the legs, after holding them and at the window's end.
//!
//! The MOH baseline (`--target moh-baseline`) is a minimal sender on the same core
//! sending the same packets at the same rate (see `moh_baseline.rs`); its CPU per
//! packet is the kernel's send cost, and rtpark's minus it the engine's overhead.

use crate::generator::{Receiver, RunResult, Sample, Sink, TransportKind};
use crate::{moh_baseline, rtpark, sys, Opts, Target};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// RTP clock rate of G.711.
const CLOCK_RATE: u64 = 8000;
/// Payload bytes of a 20 ms G.711 packet.
const G711_PAYLOAD: usize = 160;
/// Unit of the stored deviations: 100 ns keeps ±214 s in an i32 (a saturated
/// sender can fall seconds behind).
const DEV_UNIT_NS: i64 = 100;

/// Receive state of one leg (one generator socket).
#[derive(Default)]
struct LegRx {
    /// SSRC of the last packet.
    ssrc: Option<u32>,
    /// SSRC changes over the whole run.
    ssrc_changes: u32,
    /// Sequence number and timestamp of the newest packet.
    last_seq: Option<u16>,
    last_ts: u32,
    /// Markers seen before the window.
    markers_before: u32,
    /// First arrival in the window (realtime ns) and its RTP timestamp.
    anchor: Option<(u64, u32)>,
    /// Lowest and highest timestamp in the window, relative to the anchor's.
    min_rel: i64,
    max_rel: i64,
    /// Packets received in the window.
    count: u64,
    /// Last arrival in the window (realtime ns), for inter-arrival times.
    last_arrival: u64,
    /// Arrival minus ideal arrival of each window packet, in [`DEV_UNIT_NS`].
    devs: Vec<i32>,
    /// Inter-arrival times in the window, ns.
    inter: Vec<u32>,
}

/// The hold mode's receive path: per-leg continuity and timing.
struct HoldSink {
    legs: Vec<LegRx>,
    /// Window edges on CLOCK_REALTIME (the clock of SO_TIMESTAMPNS).
    lo: u64,
    hi: u64,
    now_real: u64,
    r: RunResult,
    samples_per_packet: u32,
    total: u64,
    window: u64,
    bad_format: u64,
    no_stamp: u64,
    markers_in_window: u64,
    gaps: u64,
    gap_events: u64,
    duplicates: u64,
    reordered: u64,
    ts_jumps: u64,
    skipped_slots: u64,
    ssrc_changes_in_window: u64,
    arrivals_per_second: Vec<u64>,
}

impl Sink for HoldSink {
    fn set_now(&mut self, _mono: u64, real: u64) {
        self.now_real = real;
    }

    fn counters(&mut self) -> &mut RunResult {
        &mut self.r
    }

    fn datagram(&mut self, sock: usize, d: &[u8], kstamp: Option<u64>) {
        self.total += 1;
        if d.len() < 12 || d[0] >> 6 != 2 {
            self.bad_format += 1;
            return;
        }
        if d.len() != 12 + G711_PAYLOAD || d[1] & 0x7f != 0 || d[0] & 0x3f != 0 {
            self.bad_format += 1;
        }
        let at = kstamp.unwrap_or_else(|| {
            self.no_stamp += 1;
            self.now_real
        });
        let Some(leg) = self.legs.get_mut(sock) else {
            self.bad_format += 1;
            return;
        };
        let marker = d[1] & 0x80 != 0;
        let seq = u16::from_be_bytes([d[2], d[3]]);
        let ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let in_window = at >= self.lo && at < self.hi;
        if leg.ssrc.is_some_and(|s| s != ssrc) {
            leg.ssrc_changes += 1;
            if in_window {
                self.ssrc_changes_in_window += 1;
            }
        }
        leg.ssrc = Some(ssrc);
        let step = leg.last_seq.map(|last| seq.wrapping_sub(last));
        if in_window {
            if let Some(step) = step {
                match step {
                    1 => {}
                    0 => self.duplicates += 1,
                    2..=0x7fff => {
                        self.gaps += step as u64 - 1;
                        self.gap_events += 1;
                    }
                    _ => self.reordered += 1,
                }
                if (1..0x8000).contains(&step) {
                    let expected = (step as u32).wrapping_mul(self.samples_per_packet);
                    let got = ts.wrapping_sub(leg.last_ts);
                    if got != expected {
                        self.ts_jumps += 1;
                        if got > expected && got - expected < 0x8000_0000 {
                            self.skipped_slots +=
                                ((got - expected) / self.samples_per_packet.max(1)) as u64;
                        }
                    }
                }
            }
        }
        if step.is_none_or(|s| (1..0x8000).contains(&s)) {
            leg.last_seq = Some(seq);
            leg.last_ts = ts;
        }
        if marker {
            if in_window {
                self.markers_in_window += 1;
            } else if at < self.lo {
                leg.markers_before += 1;
            }
        }
        if !in_window {
            return;
        }
        self.window += 1;
        let sec = ((at - self.lo) / 1_000_000_000) as usize;
        if let Some(c) = self.arrivals_per_second.get_mut(sec) {
            *c += 1;
        }
        leg.count += 1;
        match leg.anchor {
            None => {
                leg.anchor = Some((at, ts));
                leg.devs.push(0);
            }
            Some((a0, ts0)) => {
                let rel = ts.wrapping_sub(ts0) as i32 as i64;
                leg.min_rel = leg.min_rel.min(rel);
                leg.max_rel = leg.max_rel.max(rel);
                let ideal = a0 as i64 + rel * 1_000_000_000 / CLOCK_RATE as i64;
                let dev =
                    ((at as i64 - ideal) / DEV_UNIT_NS).clamp(i32::MIN as i64, i32::MAX as i64);
                leg.devs.push(dev as i32);
                leg.inter
                    .push(at.saturating_sub(leg.last_arrival).min(u32::MAX as u64) as u32);
            }
        }
        leg.last_arrival = at;
    }
}

/// What one hold-mode run measured, before it becomes a report.
struct HoldRun {
    sink: HoldSink,
    start: Sample,
    end: Sample,
    aborted: Option<String>,
    tick_late_p99_us: u64,
    tick_late_max_us: u64,
    overruns: u64,
    /// Kernel UDP counters (system-wide) at the window's edges.
    udp_start: sys::UdpCounters,
    udp_end: sys::UdpCounters,
}

/// Set-up facts gathered by the engine-specific part.
#[derive(Default)]
struct SetupInfo {
    create_s: f64,
    hold_s: f64,
    rss_before_kib: u64,
    rss_after_create_kib: u64,
    rss_after_hold_kib: u64,
    /// Seconds rtpark's log says its start-up encodings took (None: not seen).
    media_ready: Option<f64>,
}

/// The engine of a hold-mode run.
struct HoldEngine {
    process: crate::engine::EngineProcess,
    /// Set-up that is still running (rtpark) and hands back the control connection.
    pending: Option<std::thread::JoinHandle<Result<(rtpark::NativeClient, SetupInfo), String>>>,
    control: Option<rtpark::NativeClient>,
    info: SetupInfo,
    log: Option<PathBuf>,
}

fn start_engine(
    t: Target,
    opts: &Opts,
    n: usize,
    remotes: &[SocketAddr],
) -> Result<HoldEngine, String> {
    let prio = crate::priority(opts);
    let max = (opts.hold_warmup() + opts.seconds) as u64 + 300;
    if t == Target::MohBaseline {
        let ports: Vec<u16> = remotes.iter().map(|a| a.port()).collect();
        let (process, _) = moh_baseline::spawn(
            opts.engine_cpu,
            prio,
            &ports,
            max,
            opts.ptime_ms,
            opts.moh_tick_us,
            opts.moh_baseline_io.into(),
        )?;
        let rss = sys::status_kib(process.pid(), "VmRSS");
        return Ok(HoldEngine {
            process,
            pending: None,
            control: None,
            info: SetupInfo {
                rss_before_kib: rss,
                rss_after_create_kib: rss,
                rss_after_hold_kib: rss,
                media_ready: Some(0.0),
                ..Default::default()
            },
            log: None,
        });
    }
    let port_min = opts.port_min;
    let span = n as u64 * 2 + 64;
    let port_max = u16::try_from(port_min as u64 + span - 1)
        .map_err(|_| format!("--port-min {port_min} leaves no room for {span} ports"))?;
    let pid = std::process::id();
    let mut extra = opts.rtpark_arg.clone();
    if !extra.iter().any(|a| a == "--config") {
        extra.push("--config".into());
        extra.push(private_media_cache(opts)?.display().to_string());
    }
    let cfg = rtpark::RtparkConfig {
        binary: &opts.rtpark,
        cpu: opts.engine_cpu,
        priority: prio,
        workers: opts.workers,
        port_min,
        port_max,
        extra_args: &extra,
        socket: PathBuf::from(format!("/tmp/rtpark-load-{pid}.sock")),
        log: PathBuf::from(format!("/tmp/rtpark-load-{pid}.log")),
    };
    let (mut process, mut client) = rtpark::start(&cfg)?;
    if opts.keep_log {
        process.keep_file(&cfg.log);
    }
    let epid = process.pid();
    let media_ready = rtpark::wait_media_ready(&cfg.log, Duration::from_secs(60));
    // Let start-up allocations settle before the "before" reading.
    std::thread::sleep(Duration::from_millis(300));
    let rss_before_kib = sys::status_kib(epid, "VmRSS");
    let remotes = remotes.to_vec();
    let class = opts.moh_class.clone();
    let media_timeout = (opts.hold_media_timeout > 0).then_some(opts.hold_media_timeout);
    let pending = std::thread::Builder::new()
        .name("hold-setup".into())
        .spawn(move || {
            let (_, create) = client.create_moh_legs(&remotes, media_timeout)?;
            let rss_after_create_kib = sys::status_kib(epid, "VmRSS");
            let hold = client.hold_legs(remotes.len(), class.as_deref())?;
            // The worker allocates on its first sends after a hold; give it a ptime.
            std::thread::sleep(Duration::from_millis(50));
            let rss_after_hold_kib = sys::status_kib(epid, "VmRSS");
            Ok((
                client,
                SetupInfo {
                    create_s: create.as_secs_f64(),
                    hold_s: hold.as_secs_f64(),
                    rss_before_kib,
                    rss_after_create_kib,
                    rss_after_hold_kib,
                    media_ready,
                },
            ))
        })
        .map_err(|e| format!("cannot start the set-up thread: {e}"))?;
    Ok(HoldEngine {
        process,
        pending: Some(pending),
        control: None,
        info: SetupInfo::default(),
        log: Some(cfg.log.clone()),
    })
}

/// Writes a config naming a media cache private to the benchmarks and fills that
/// cache (`rtpark media encode`, instant once warm), so every run loads its MOH
/// encodings from disk: the shared default cache may be rebuilt by other runs, and
/// encoding at start-up would leave freed heap that later readings absorb.
fn private_media_cache(opts: &Opts) -> Result<PathBuf, String> {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("bench-moh-cache");
    let cfg = tmp.join("bench-moh.toml");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(
        &cfg,
        format!("cache_dir = {:?}\n", dir.display().to_string()),
    )
    .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let out = std::process::Command::new(&opts.rtpark)
        .args(["media", "encode", "--config"])
        .arg(&cfg)
        .output()
        .map_err(|e| format!("cannot run {} media encode: {e}", opts.rtpark.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} media encode --config {} failed: {}",
            opts.rtpark.display(),
            cfg.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(cfg)
}

/// Runs one hold-mode target with `n` legs; returns its report.
pub fn run_target(t: Target, opts: &Opts, n: usize) -> Result<Value, String> {
    let kind = match opts.io {
        crate::Io::Uring => TransportKind::Uring,
        crate::Io::Epoll => TransportKind::Epoll,
    };
    let mut rx =
        Receiver::new(n, kind).map_err(|e| format!("cannot open the generator's sockets: {e}"))?;
    let remotes = rx.addrs();
    let ptime_ns = opts.ptime_ms * 1_000_000;
    let per_leg = (opts.seconds * 1e9 / ptime_ns as f64) as usize + 16;
    let mut sink = HoldSink {
        legs: (0..n)
            .map(|_| LegRx {
                devs: Vec::with_capacity(per_leg),
                inter: Vec::with_capacity(per_leg),
                ..Default::default()
            })
            .collect(),
        lo: u64::MAX,
        hi: u64::MAX,
        now_real: sys::real_ns(),
        r: RunResult::default(),
        samples_per_packet: (opts.ptime_ms * CLOCK_RATE / 1000) as u32,
        total: 0,
        window: 0,
        bad_format: 0,
        no_stamp: 0,
        markers_in_window: 0,
        gaps: 0,
        gap_events: 0,
        duplicates: 0,
        reordered: 0,
        ts_jumps: 0,
        skipped_slots: 0,
        ssrc_changes_in_window: 0,
        arrivals_per_second: vec![0; opts.seconds.ceil() as usize + 1],
    };
    rx.arm(&mut sink);
    let udp_before = sys::udp_counters();
    if !opts.quiet {
        eprintln!("{}: setting up {n} held legs", crate::name(t));
    }
    let mut engine = start_engine(t, opts, n, &remotes)?;
    let epid = engine.process.pid();
    let (ecpu, lcpu) = (opts.engine_cpu, opts.load_cpu);
    let sample = |received: u64| Sample {
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
    // Not /proc/net/udp's per-socket drops: with 15,000 sockets reading it takes
    // seconds, during which the generator stops harvesting. Drops in the window
    // show as sequence gaps; the system-wide counters are read at its edges.

    let tick_ns = opts.hold_tick_us.max(1) * 1000;
    let warmup_ns = (opts.hold_warmup() * 1e9) as u64;
    let window_ns = (opts.seconds * 1e9) as u64;
    let mut tick_late = crate::hist::Histogram::default();
    let mut overruns = 0u64;
    let mut run = HoldRun {
        sink,
        start: Sample::default(),
        end: Sample::default(),
        aborted: None,
        tick_late_p99_us: 0,
        tick_late_max_us: 0,
        overruns: 0,
        udp_start: sys::UdpCounters::default(),
        udp_end: sys::UdpCounters::default(),
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Phase {
        Setup,
        Warmup(u64),
        Window(u64),
        Tail(u64),
    }
    let mut phase = Phase::Setup;
    let t0 = sys::mono_ns();
    let mut tick_due = t0;
    let mut next_check = t0;
    let mut next_progress = t0 + 10_000_000_000;
    loop {
        let mut now = sys::mono_ns();
        if now < tick_due {
            sys::sleep_until(tick_due);
            now = sys::mono_ns();
        }
        if phase != Phase::Setup {
            tick_late.record(now.saturating_sub(tick_due) / 1000);
        }
        rx.drain(&mut run.sink);
        let now = sys::mono_ns();
        match phase {
            Phase::Setup => {
                let done = match engine.pending.as_ref() {
                    None => true,
                    Some(h) => h.is_finished(),
                };
                if done {
                    if let Some(h) = engine.pending.take() {
                        match h.join() {
                            Ok(Ok((client, info))) => {
                                engine.control = Some(client);
                                engine.info = info;
                            }
                            Ok(Err(e)) => {
                                if let Some(log) = &engine.log {
                                    engine.process.keep_file(log);
                                    run.aborted = Some(format!(
                                        "set-up failed: {e} (rtpark log kept in {})",
                                        log.display()
                                    ));
                                } else {
                                    run.aborted = Some(format!("set-up failed: {e}"));
                                }
                                break;
                            }
                            Err(_) => {
                                run.aborted = Some("the set-up thread panicked".into());
                                break;
                            }
                        }
                    }
                    if !opts.quiet {
                        eprintln!(
                            "{}: {n} legs created in {:.3} s and held in {:.3} s; warming up {} s, then measuring {} s",
                            crate::name(t),
                            engine.info.create_s,
                            engine.info.hold_s,
                            opts.hold_warmup(),
                            opts.seconds
                        );
                    }
                    phase = Phase::Warmup(now + warmup_ns);
                }
            }
            Phase::Warmup(at) if now >= at => {
                run.udp_start = sys::udp_counters();
                run.start = sample(run.sink.window);
                run.sink.lo = sys::real_ns();
                phase = Phase::Window(sys::mono_ns() + window_ns);
            }
            Phase::Window(at) if now >= at => {
                run.end = sample(run.sink.window);
                run.sink.hi = sys::real_ns();
                run.udp_end = sys::udp_counters();
                // Packets stamped before the edge may still be queued: one more
                // harvest after a couple of ticks catches them.
                phase = Phase::Tail(sys::mono_ns() + 50_000_000);
            }
            Phase::Tail(at) if now >= at => break,
            _ => {}
        }
        if now >= next_check {
            next_check = now + 100_000_000;
            let why = if sys::stopping() {
                Some("interrupted".to_string())
            } else {
                engine
                    .process
                    .exited()
                    .map(|s| format!("engine exited: {s}"))
            };
            if let Some(why) = why {
                if let Phase::Window(_) = phase {
                    run.end = sample(run.sink.window);
                    run.sink.hi = sys::real_ns();
                    run.udp_end = sys::udp_counters();
                }
                if let Some(log) = &engine.log {
                    engine.process.keep_file(log);
                }
                run.aborted = Some(why);
                break;
            }
        }
        if !opts.quiet && now >= next_progress {
            next_progress += 10_000_000_000;
            eprintln!(
                "  t={:>5.1}s received {} (window {})",
                (now - t0) as f64 / 1e9,
                run.sink.total,
                run.sink.window
            );
        }
        tick_due += tick_ns;
        if tick_due + tick_ns < now {
            overruns += 1;
            tick_due = now;
        }
    }
    // A set-up still running (aborted run) ends when the engine is stopped.
    let engine_stats = engine
        .control
        .as_mut()
        .and_then(|c| c.request(json!({"cmd": "stats"})).ok());
    let udp = sys::udp_counters().since(&udp_before);
    let exit = engine.process.stop();
    if let Some(h) = engine.pending.take() {
        let _ = h.join();
    }
    run.tick_late_p99_us = tick_late.quantile(0.99);
    run.tick_late_max_us = tick_late.max();
    run.overruns = overruns;
    let mut rep = report(t, opts, n, &engine.info, &mut run, udp, engine_stats, exit);
    rep["generator"]["io"] = json!(match rx.transport() {
        TransportKind::Uring => "uring",
        TransportKind::Epoll => "epoll",
    });
    Ok(rep)
}

/// Exact quantiles of `v` (sorted in place).
fn quantiles(v: &mut [u64], qs: &[f64]) -> Vec<u64> {
    v.sort_unstable();
    qs.iter()
        .map(|&q| {
            if v.is_empty() {
                0
            } else {
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
                v[rank - 1]
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn report(
    t: Target,
    opts: &Opts,
    n: usize,
    info: &SetupInfo,
    run: &mut HoldRun,
    udp: sys::UdpCounters,
    engine_stats: Option<Value>,
    exit: Option<String>,
) -> Value {
    let (s, e) = (&run.start, &run.end);
    let sink = &mut run.sink;
    let window_s = e.at_ns.saturating_sub(s.at_ns) as f64 / 1e9;
    let packets = sink.window;
    let per_s = |x: f64| if window_s > 0.0 { x / window_s } else { 0.0 };
    let per_pkt = |ns: f64| {
        if packets > 0 {
            ns / 1000.0 / packets as f64
        } else {
            0.0
        }
    };
    let tick_ns = 1e9 / sys::clk_tck() as f64;
    let engine_cpu_ns = e.engine_cpu_ns.saturating_sub(s.engine_cpu_ns) as f64;
    let engine_ticks_ns = e.engine_ticks.saturating_sub(s.engine_ticks) as f64 * tick_ns;
    let core = |a: sys::CoreTicks, b: sys::CoreTicks| {
        let busy = b.busy.saturating_sub(a.busy) as f64;
        let steal = b.steal.saturating_sub(a.steal) as f64;
        let all = busy + b.idle.saturating_sub(a.idle) as f64 + steal;
        (
            busy * tick_ns,
            if all > 0.0 { busy / all * 100.0 } else { 0.0 },
            if all > 0.0 { steal / all * 100.0 } else { 0.0 },
        )
    };
    let (ecore_ns, ecore_pct, esteal) = core(s.engine_core, e.engine_core);
    let (_, lcore_pct, lsteal) = core(s.load_core, e.load_core);
    let gen_cpu_ns = e.gen_cpu_ns.saturating_sub(s.gen_cpu_ns) as f64;
    let wakeups = e.engine_wakeups.saturating_sub(s.engine_wakeups);
    let win_udp = run.udp_end.since(&run.udp_start);

    // Per-leg figures.
    let spp = sink.samples_per_packet.max(1) as i64;
    let mut expected = 0u64;
    let mut silent_legs = 0u64;
    let mut legs_ssrc_changed = 0u64;
    let mut legs_one_marker = 0u64;
    let mut markers_before = 0u64;
    let mut ssrcs = HashSet::new();
    let mut dev_abs: Vec<u64> = Vec::with_capacity(packets as usize);
    let mut late: Vec<u64> = Vec::with_capacity(packets as usize);
    let mut inter: Vec<u64> = Vec::with_capacity(packets as usize);
    let (mut early_max, mut late_max) = (0i64, 0i64);
    for leg in &sink.legs {
        markers_before += leg.markers_before as u64;
        if leg.markers_before == 1 {
            legs_one_marker += 1;
        }
        if leg.ssrc_changes > 0 {
            legs_ssrc_changed += 1;
        }
        if let Some(s) = leg.ssrc {
            ssrcs.insert(s);
        }
        if leg.count == 0 {
            silent_legs += 1;
            continue;
        }
        expected += ((leg.max_rel - leg.min_rel) / spp + 1) as u64;
        let min = leg.devs.iter().copied().min().unwrap_or(0) as i64 * DEV_UNIT_NS;
        for &d in &leg.devs {
            let d = d as i64 * DEV_UNIT_NS;
            early_max = early_max.max(-d);
            late_max = late_max.max(d);
            dev_abs.push(d.unsigned_abs() / 1000);
            late.push((d - min) as u64 / 1000);
        }
        inter.extend(leg.inter.iter().map(|&x| x as u64));
    }
    let qs = [0.5, 0.9, 0.99, 0.999, 1.0];
    let j = quantiles(&mut dev_abs, &qs);
    let jmean = if dev_abs.is_empty() {
        0.0
    } else {
        dev_abs.iter().sum::<u64>() as f64 / dev_abs.len() as f64
    };
    let l = quantiles(&mut late, &qs);
    let ia = quantiles(&mut inter, &[0.0, 0.001, 0.01, 0.5, 0.99, 0.999, 1.0]);
    let ia_us = |x: u64| x as f64 / 1000.0;
    let lost = expected as i64 - packets as i64;
    let full_secs = (opts.seconds.floor() as usize).min(sink.arrivals_per_second.len());
    let aps = &sink.arrivals_per_second[..full_secs];
    let hold_delta = info.rss_after_hold_kib as f64 - info.rss_after_create_kib as f64;
    let create_delta = info.rss_after_create_kib as f64 - info.rss_before_kib as f64;
    let nf = n as f64;
    let mut rep = json!({
        "mode": "hold",
        "target": crate::name(t),
        "legs": n,
        "window_s": window_s,
        "warmup_s": opts.hold_warmup(),
        "sched": format!("{:?}", opts.sched).to_lowercase(),
        "setup": {
            "create_s": info.create_s,
            "hold_s": info.hold_s,
            "creates_per_s": if info.create_s > 0.0 { nf / info.create_s } else { 0.0 },
            "holds_per_s": if info.hold_s > 0.0 { nf / info.hold_s } else { 0.0 },
            "media_ready_s": info.media_ready,
        },
        "received": packets,
        "received_per_s": per_s(packets as f64),
        "received_per_s_min_second": aps.iter().copied().min().unwrap_or(0),
        "received_per_s_max_second": aps.iter().copied().max().unwrap_or(0),
        "expected_per_s": nf * 1000.0 / opts.ptime_ms as f64,
        "expected": expected,
        "lost": lost,
        "loss_pct": if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 },
        "silent_legs": silent_legs,
        "jitter_us": {"p50": j[0], "p90": j[1], "p99": j[2], "p999": j[3], "max": j[4], "mean": jmean,
                      "early_max": early_max as f64 / 1000.0, "late_max": late_max as f64 / 1000.0},
        "lateness_us": {"p50": l[0], "p90": l[1], "p99": l[2], "p999": l[3], "max": l[4]},
        "inter_arrival_us": {"min": ia_us(ia[0]), "p001": ia_us(ia[1]), "p01": ia_us(ia[2]), "p50": ia_us(ia[3]),
                             "p99": ia_us(ia[4]), "p999": ia_us(ia[5]), "max": ia_us(ia[6])},
        "seq": {"gaps": sink.gaps, "gap_events": sink.gap_events, "duplicates": sink.duplicates,
                "reordered": sink.reordered, "ts_jumps": sink.ts_jumps, "skipped_slots": sink.skipped_slots},
        "markers_in_window": sink.markers_in_window,
        "markers_before_window": markers_before,
        "legs_with_one_marker_before": legs_one_marker,
        "ssrc": {"changes_in_window": sink.ssrc_changes_in_window, "legs_changed": legs_ssrc_changed,
                 "distinct": ssrcs.len()},
        "bad_packets": sink.bad_format,
        "no_kernel_stamp": sink.no_stamp,
        "received_total": sink.total,
        "engine_cpu_us_per_packet": per_pkt(engine_cpu_ns),
        "engine_cpu_ticks_us_per_packet": per_pkt(engine_ticks_ns),
        "engine_cores": per_s(engine_cpu_ns / 1e9),
        "engine_cpu_pct": per_s(engine_cpu_ns / 1e9) * 100.0,
        "engine_core_busy_us_per_packet": per_pkt(ecore_ns),
        "engine_core_busy_pct": ecore_pct,
        "engine_core_other_pct": (ecore_pct - per_s(engine_cpu_ns / 1e9) * 100.0).max(0.0),
        "engine_core_steal_pct": esteal,
        "engine_wakeups_per_s": per_s(wakeups as f64),
        "packets_per_engine_wakeup": if wakeups > 0 { packets as f64 / wakeups as f64 } else { 0.0 },
        "rss": {
            "before_kib": info.rss_before_kib,
            "after_create_kib": info.rss_after_create_kib,
            "after_hold_kib": info.rss_after_hold_kib,
            "end_kib": e.engine_rss_kib,
            "create_per_leg_kib": create_delta / nf,
            "hold_per_leg_kib": hold_delta / nf,
            "per_held_leg_kib": (info.rss_after_hold_kib as f64 - info.rss_before_kib as f64) / nf,
            "per_held_leg_end_kib": (e.engine_rss_kib as f64 - info.rss_before_kib as f64) / nf,
        },
        "generator": {
            "cpu_pct": per_s(gen_cpu_ns / 1e9) * 100.0,
            "cpu_us_per_packet": per_pkt(gen_cpu_ns),
            "core_busy_pct": lcore_pct,
            "core_steal_pct": lsteal,
            "tick_us": opts.hold_tick_us,
            "tick_late_us": {"p99": run.tick_late_p99_us, "max": run.tick_late_max_us},
            "overruns": run.overruns,
            "uring_rearms": sink.r.rearms,
            "refused": sink.r.refused,
            "unparsed": sink.r.misrouted,
        },
        "kernel": {
            "udp_no_ports": udp.no_ports,
            "udp_in_errors": udp.in_errors,
            "udp_rcvbuf_errors": udp.rcvbuf_errors,
            "udp_sndbuf_errors": udp.sndbuf_errors,
            "window_udp_in_errors": win_udp.in_errors,
            "window_udp_rcvbuf_errors": win_udp.rcvbuf_errors,
            "window_udp_sndbuf_errors": win_udp.sndbuf_errors,
        },
        "engine_stats": engine_stats,
        "engine_exit": exit,
        "aborted": run.aborted,
    });
    if t == Target::MohBaseline {
        rep["baseline_io"] = json!(moh_baseline::SendIo::from(opts.moh_baseline_io).name());
        rep["baseline_tick_us"] = json!(opts.moh_tick_us);
    }
    rep
}

/// Prints a hold-mode report as a table.
pub fn print_report(v: &Value) {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let u = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let target = v["target"].as_str().unwrap_or("?");
    let io = v["baseline_io"]
        .as_str()
        .map(|s| format!(" ({s}, {} µs ticks)", u("/baseline_tick_us")))
        .unwrap_or_default();
    println!(
        "== hold: {target}{io} — {} held legs, {:.1} s window ==",
        u("/legs"),
        f("/window_s")
    );
    if let Some(why) = v["aborted"].as_str() {
        println!("  ABORTED: {why}");
    }
    if target == "rtpark" {
        println!(
            "  setup                create {:.3} s ({:.0}/s), hold {:.3} s ({:.0}/s){}",
            f("/setup/create_s"),
            f("/setup/creates_per_s"),
            f("/setup/hold_s"),
            f("/setup/holds_per_s"),
            match v.pointer("/setup/media_ready_s").and_then(Value::as_f64) {
                None => "; NOTE: start-up encodings not reported ready".to_string(),
                Some(s) if s > 0.5 => format!(
                    "; NOTE: start-up encodings took {s:.1} s (not from the cache): RSS before may hold freed heap"
                ),
                Some(_) => String::new(),
            }
        );
    }
    println!(
        "  received             {:>10.0} pkt/s of {:.0} (per-second min {} max {})",
        f("/received_per_s"),
        f("/expected_per_s"),
        u("/received_per_s_min_second"),
        u("/received_per_s_max_second")
    );
    println!(
        "  loss                 {:>10} of {} expected from timestamps ({:.4} %); legs without packets {}",
        u("/lost"),
        u("/expected"),
        f("/loss_pct"),
        u("/silent_legs")
    );
    println!(
        "  pacing jitter        p50 {} p90 {} p99 {} p99.9 {} max {} µs (|arrival − ideal|; mean {:.1}, earliest {:.0} µs early, latest {:.0} µs late)",
        u("/jitter_us/p50"),
        u("/jitter_us/p90"),
        u("/jitter_us/p99"),
        u("/jitter_us/p999"),
        u("/jitter_us/max"),
        f("/jitter_us/mean"),
        f("/jitter_us/early_max"),
        f("/jitter_us/late_max")
    );
    println!(
        "  lateness vs best     p50 {} p90 {} p99 {} p99.9 {} max {} µs (each leg anchored at its earliest packet)",
        u("/lateness_us/p50"),
        u("/lateness_us/p90"),
        u("/lateness_us/p99"),
        u("/lateness_us/p999"),
        u("/lateness_us/max")
    );
    println!(
        "  inter-arrival        min {:.0} p0.1 {:.0} p1 {:.0} p50 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} µs",
        f("/inter_arrival_us/min"),
        f("/inter_arrival_us/p001"),
        f("/inter_arrival_us/p01"),
        f("/inter_arrival_us/p50"),
        f("/inter_arrival_us/p99"),
        f("/inter_arrival_us/p999"),
        f("/inter_arrival_us/max")
    );
    println!(
        "  continuity           seq gaps {} ({} events), duplicates {}, reordered {}, ts jumps {} ({} skipped slots); bad packets {}",
        u("/seq/gaps"),
        u("/seq/gap_events"),
        u("/seq/duplicates"),
        u("/seq/reordered"),
        u("/seq/ts_jumps"),
        u("/seq/skipped_slots"),
        u("/bad_packets")
    );
    println!(
        "  markers / SSRC       {} markers in window; {} before it ({} legs with exactly one); SSRC changes {} in window, {} legs ever; {} distinct SSRCs",
        u("/markers_in_window"),
        u("/markers_before_window"),
        u("/legs_with_one_marker_before"),
        u("/ssrc/changes_in_window"),
        u("/ssrc/legs_changed"),
        u("/ssrc/distinct")
    );
    println!(
        "  engine CPU           {:>10.3} µs/pkt, {:.3} cores ({:.1} %; ticks say {:.3} µs/pkt)",
        f("/engine_cpu_us_per_packet"),
        f("/engine_cores"),
        f("/engine_cpu_pct"),
        f("/engine_cpu_ticks_us_per_packet")
    );
    println!(
        "  engine core busy     {:>10.3} µs/pkt ({:.1} %, of which other tasks {:.1} %; steal {:.1} %; tick-sampled, rough)",
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
        "  engine RSS           {} → {} → {} → {} KiB (before / legs created / held / window end)",
        u("/rss/before_kib"),
        u("/rss/after_create_kib"),
        u("/rss/after_hold_kib"),
        u("/rss/end_kib")
    );
    println!(
        "  RSS per leg          create {:.2} KiB, hold {:.2} KiB, held leg total {:.2} KiB ({:.2} at window end)",
        f("/rss/create_per_leg_kib"),
        f("/rss/hold_per_leg_kib"),
        f("/rss/per_held_leg_kib"),
        f("/rss/per_held_leg_end_kib")
    );
    println!(
        "  generator ({:<5})    CPU {:.1} % ({:.3} µs/pkt), core busy {:.1} %, steal {:.1} %; tick late p99 {} max {} µs; overruns {}; re-arms {}",
        v.pointer("/generator/io")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        f("/generator/cpu_pct"),
        f("/generator/cpu_us_per_packet"),
        f("/generator/core_busy_pct"),
        f("/generator/core_steal_pct"),
        u("/generator/tick_late_us/p99"),
        u("/generator/tick_late_us/max"),
        u("/generator/overruns"),
        u("/generator/uring_rearms")
    );
    println!(
        "  kernel UDP           in window: rcvbuf-err {} sndbuf-err {} in-err {}; whole run: no-port {} rcvbuf-err {} sndbuf-err {} (system-wide)",
        u("/kernel/window_udp_rcvbuf_errors"),
        u("/kernel/window_udp_sndbuf_errors"),
        u("/kernel/window_udp_in_errors"),
        u("/kernel/udp_no_ports"),
        u("/kernel/udp_rcvbuf_errors"),
        u("/kernel/udp_sndbuf_errors")
    );
    if let Some(st) = v.get("engine_stats").filter(|s| !s.is_null()) {
        println!(
            "  engine stats         media_out {} rtp_out {} send_errors {}",
            st.pointer("/totals/media_out")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            st.pointer("/totals/rtp_out")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            st["send_errors"].as_u64().unwrap_or(0)
        );
    }
    if f("/generator/cpu_pct") > 85.0 {
        println!("  WARNING: the generator may be the bottleneck (CPU > 85 %)");
    }
    if f("/engine_cpu_pct") > 90.0 {
        println!(
            "  WARNING: the engine is saturated ({:.1} % of its core): it falls behind, and CPU per packet \
             is what one core allows{}",
            f("/engine_cpu_pct"),
            if v["sched"] == "fifo" {
                "; above 95 % a SCHED_FIFO task is throttled for 50 ms per second \
                 (kernel.sched_rt_runtime_us): prefer --sched nice"
            } else {
                ""
            }
        );
    }
    if f("/engine_core_other_pct") > 10.0 {
        println!(
            "  NOTE: other tasks used {:.1} % of the engine's core during the window; figures may be noisy",
            f("/engine_core_other_pct")
        );
    }
    if let Some(exit) = v["engine_exit"].as_str() {
        println!("  engine exit          {exit}");
    }
}
