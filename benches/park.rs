//! Call-park benchmark: thousands of parked legs across many lots, with park and
//! retrieve operations driven over the native control socket as fast as the engine
//! answers them.
//!
//! Run with `cargo bench --bench park -- [--legs 5000] [--lots 100] [--seconds 10]
//! [--connections 4] [--json]`; `--help` lists every option
//! (`scripts/bench-park.sh` runs the standard set and keeps the JSON lines).
//!
//! What it does:
//! * Starts the release engine (`--workers 2` by default, log level `warn`) with a
//!   temporary config of `--lots` lots `l0`, `l1`, ... (slots 1000–1099, slot not
//!   announced, 3600 s timeout) and a temporary media cache, waits for `ping` and
//!   for the start-up MOH pre-encoding to finish (`list_media`), so no park pays
//!   for encoding.
//! * Setup: creates `--legs` legs `p<i>` (call `pc<i>`) and `--retrievers` legs
//!   `r<j>` (call `rc<j>`), pipelined. Legs have **no remote address** and
//!   `trust_address: true`: the engine plays MOH to parked legs (its timers run)
//!   but has nowhere to send it and never learns an address, so this measures the
//!   control plane, not packet output.
//! * Phase 1 parks every `p<i>` in lot `l<i % lots>`.
//! * Phase 2 (`--seconds`) keeps them parked under a steady stream of pairs:
//!   `retrieve` (by the slot the park reply named, or `--retrieve longest`) with a
//!   retriever leg, then `park` of the retrieved leg in the same lot (which also
//!   frees the retriever), optionally an explicit `unbridge` of the retriever.
//! * Every connection is a thread with up to `--depth` requests in flight; it owns
//!   the lots `k` with `k % connections == c` and their legs, so no two connections
//!   touch one slot. Latency is from just before a request's batch is written to
//!   its reply, so it includes waiting behind the other requests in flight.
//! * Engine CPU is the on-CPU time of all its threads (`/proc/<pid>/task/*/schedstat`);
//!   RSS is `VmRSS`. At the end `list_parked` must list exactly the legs the replies
//!   said are parked, in the same slots, and `list_lots` must agree.

#[allow(dead_code)]
#[path = "load/engine.rs"]
mod engine;
#[allow(dead_code)]
#[path = "load/sys.rs"]
mod sys;

use clap::{Parser, ValueEnum};
use engine::EngineProcess;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How a retriever picks the parked call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RetrieveBy {
    /// `retrieve` with the slot the park reply named.
    Slot,
    /// `retrieve` without a slot: the lot's longest-waiting call.
    Longest,
}

/// Park/retrieve benchmark over the native socket.
#[derive(Parser, Debug)]
#[command(about)]
struct Opts {
    /// Legs kept parked.
    #[arg(long, default_value_t = 5000)]
    legs: usize,
    /// Parking lots (`l0` ... ); legs are spread round-robin over them.
    #[arg(long, default_value_t = 100)]
    lots: usize,
    /// Slots per lot (numbered from 1000).
    #[arg(long, default_value_t = 100)]
    slots: usize,
    /// Length of the steady park/retrieve phase in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Control connections, each driven by its own thread.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection (pipelining depth).
    #[arg(long, default_value_t = 32)]
    depth: usize,
    /// Retriever legs (spread over the connections).
    #[arg(long, default_value_t = 200)]
    retrievers: usize,
    /// How the steady phase retrieves.
    #[arg(long, value_enum, default_value_t = RetrieveBy::Slot)]
    retrieve: RetrieveBy,
    /// Also send `unbridge` for the retriever after each re-park (park already frees it).
    #[arg(long)]
    unbridge: bool,
    /// Engine worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// `ptime` of the legs (10, 20, 30 or 40 ms): the packet time of their MOH, so the
    /// rate of the engine's MOH timer ticks while they are parked (default: the engine's, 20).
    #[arg(long)]
    ptime: Option<u32>,
    /// Seconds to measure the engine's CPU with every leg parked and no commands.
    #[arg(long, default_value_t = 2.0)]
    idle_seconds: f64,
    /// Engine log level.
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Also print the results as JSON lines.
    #[arg(long)]
    json: bool,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    sys::install_stop_handler();
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("park bench: FAILED verification or saw errors (figures above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("park bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------
// Temporary files

/// A directory removed with everything in it when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write_config(dir: &Path, opts: &Opts) -> Result<PathBuf, String> {
    let cache = dir.join("cache");
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let mut toml = format!("cache_dir = \"{}\"\n", cache.display());
    let (first, last) = (1000, 1000 + opts.slots - 1);
    for k in 0..opts.lots {
        let _ = write!(
            toml,
            "\n[lot.l{k}]\nslots = \"{first}-{last}\"\nannounce_slot = false\ntimeout = 3600\n"
        );
    }
    let path = dir.join("park.toml");
    fs::write(&path, toml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---------------------------------------------------------------------------------
// Engine start-up

fn start_engine(
    opts: &Opts,
    config: &Path,
    socket: &Path,
    log: &Path,
) -> Result<EngineProcess, String> {
    let _ = fs::remove_file(socket);
    let out = fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot dup log: {e}"))?;
    let binary = env!("CARGO_BIN_EXE_rtpark");
    let mut cmd = Command::new(binary);
    cmd.arg("--listen-native")
        .arg(format!("unix:{}", socket.display()))
        .args(["--port-min", "20000", "--port-max", "60000"])
        .arg("--workers")
        .arg(opts.workers.to_string())
        .arg("--config")
        .arg(config)
        .arg("--log-level")
        .arg(&opts.log_level)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: runs between fork and exec and only calls prctl, which is
    // async-signal-safe: the engine dies with this process whatever happens to it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    // The engine removes nothing of ours; the temp dir guard removes the log.
    Ok(EngineProcess::new(child, vec![socket.to_path_buf()]))
}

/// Connects to the engine's socket (waiting up to 10 s for it to appear).
fn connect(engine: &mut EngineProcess, socket: &Path, log: &Path) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = engine.exited() {
            return Err(format!(
                "rtpark exited during start-up ({status}):\n{}",
                log_tail(log)
            ));
        }
        if let Ok(stream) = UnixStream::connect(socket) {
            return Client::new(stream);
        }
        if Instant::now() > deadline || sys::stopping() {
            return Err(format!(
                "rtpark did not open {} within 10 s:\n{}",
                socket.display(),
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every MOH class and announcement is encoded in every codec at 20 ms
/// (the engine's start-up pre-encoding); returns the seconds waited. Gives up with a
/// warning after 60 s (e.g. if one encoding fails) rather than failing the run.
fn wait_media(client: &mut Client) -> Result<f64, String> {
    let started = Instant::now();
    let wanted = ["PCMU/20", "PCMA/20", "G722/20", "opus/20"];
    loop {
        let reply = client.call(r#"{"cmd":"list_media"}"#)?;
        let media = reply["media"].as_array().cloned().unwrap_or_default();
        let ready = !media.is_empty()
            && media.iter().all(|m| {
                let enc = m["encoded"].as_array();
                wanted
                    .iter()
                    .all(|w| enc.is_some_and(|e| e.iter().any(|x| x.as_str() == Some(w))))
            });
        if ready {
            return Ok(started.elapsed().as_secs_f64());
        }
        if sys::stopping() {
            return Err("interrupted".into());
        }
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("warning: not every MOH encoding was listed after 60 s; measuring anyway");
            return Ok(started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------
// A native-protocol connection

/// One connection to the native socket (replies come in request order).
struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: String,
}

impl Client {
    fn new(stream: UnixStream) -> Result<Client, String> {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| format!("set_read_timeout: {e}"))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("cannot clone the control socket: {e}"))?;
        Ok(Client {
            reader: BufReader::with_capacity(256 * 1024, stream),
            writer,
            line: String::new(),
        })
    }

    /// Reads one reply line (skipping events) and parses it.
    fn read_reply(&mut self) -> Result<Value, String> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .map_err(|e| format!("reading a reply: {e}"))?;
            if n == 0 {
                return Err("the engine closed the control connection".into());
            }
            let v: Value = serde_json::from_str(self.line.trim_end())
                .map_err(|e| format!("unparsable reply {:?}: {e}", self.line.trim_end()))?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    /// Whether a whole reply line is already buffered (reading it will not block).
    fn reply_buffered(&self) -> bool {
        self.reader.buffer().contains(&b'\n')
    }

    /// Sends one request and waits for its reply (which must be `ok`).
    fn call(&mut self, request: &str) -> Result<Value, String> {
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .map_err(|e| format!("sending {request}: {e}"))?;
        let v = self.read_reply()?;
        if v["ok"] != Value::Bool(true) {
            return Err(format!("{request} failed: {v}"));
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------
// Operations and their statistics

/// Kinds of request, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Park,
    Retrieve,
    Unbridge,
}

const OPS: [Op; 4] = [Op::Create, Op::Park, Op::Retrieve, Op::Unbridge];

impl Op {
    fn index(self) -> usize {
        self as usize
    }
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create_leg",
            Op::Park => "park",
            Op::Retrieve => "retrieve",
            Op::Unbridge => "unbridge",
        }
    }
}

/// What a request in flight was, to check its reply.
#[derive(Debug, Clone, Copy)]
enum Tag {
    Create,
    /// Parking leg `p<leg>` in lot `l<lot>`.
    Park {
        leg: u32,
        lot: u32,
    },
    /// Retriever `r<retriever>` from lot `l<lot>`; `expect` is (leg, slot) when by slot.
    Retrieve {
        retriever: u32,
        lot: u32,
        expect: Option<(u32, u32)>,
    },
    Unbridge,
}

impl Tag {
    fn op(self) -> Op {
        match self {
            Tag::Create => Op::Create,
            Tag::Park { .. } => Op::Park,
            Tag::Retrieve { .. } => Op::Retrieve,
            Tag::Unbridge => Op::Unbridge,
        }
    }
}

/// Replies counted in one phase on one or all connections.
#[derive(Default)]
struct PhaseStats {
    /// Replies per [`Op`].
    done: [u64; 4],
    /// Failed replies (or wrong results) per [`Op`].
    errors: [u64; 4],
    /// Send→reply latencies in ns per [`Op`].
    lat: [Vec<u64>; 4],
    /// The first few error descriptions.
    first_errors: Vec<String>,
}

impl PhaseStats {
    fn error(&mut self, op: Op, what: String) {
        self.errors[op.index()] += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(format!("{}: {what}", op.name()));
        }
    }

    fn merge(&mut self, other: PhaseStats) {
        for i in 0..4 {
            self.done[i] += other.done[i];
            self.errors[i] += other.errors[i];
        }
        for (a, b) in self.lat.iter_mut().zip(other.lat) {
            a.extend(b);
        }
        for e in other.first_errors {
            if self.first_errors.len() < 10 {
                self.first_errors.push(e);
            }
        }
    }

    fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Percentiles of a latency sample, in µs.
#[derive(Debug, Clone, Copy, Default)]
struct Lat {
    p50: f64,
    p99: f64,
    max: f64,
}

fn latency(sample: &mut [u64]) -> Lat {
    if sample.is_empty() {
        return Lat::default();
    }
    sample.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len());
        sample[rank - 1] as f64 / 1000.0
    };
    Lat {
        p50: at(0.5),
        p99: at(0.99),
        max: sample[sample.len() - 1] as f64 / 1000.0,
    }
}

// ---------------------------------------------------------------------------------
// A connection's share of the work

/// Which phase a connection is driving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Create,
    ParkAll,
    Steady,
}

/// One connection with the legs, lots and retrievers it owns.
struct Conn {
    client: Client,
    /// Leg creations still to send (request lines).
    to_create: VecDeque<String>,
    /// Parks of phase 1 still to send: (leg, lot).
    to_park: VecDeque<(u32, u32)>,
    /// Requests that must follow ones already sent (the park after a retrieve).
    outq: VecDeque<(String, Tag)>,
    /// Parked legs whose slot is known, longest parked first: (leg, lot, slot).
    parked: VecDeque<(u32, u32, u32)>,
    /// Where each parked leg is, per the replies: leg → (lot, slot).
    location: HashMap<u32, (u32, u32)>,
    /// The lots this connection owns.
    lots: Vec<u32>,
    /// Next lot to retrieve from (`--retrieve longest`), index into `lots`.
    next_lot: usize,
    /// Per owned lot: legs parked or being parked and not being retrieved.
    available: HashMap<u32, u32>,
    /// Retrievers free to retrieve.
    free_retrievers: VecDeque<u32>,
    retrieve_by: RetrieveBy,
    unbridge: bool,
}

fn park_line(leg: u32, lot: u32) -> String {
    format!(r#"{{"cmd":"park","leg":"p{leg}","lot":"l{lot}"}}"#)
}

impl Conn {
    /// The next request to send, if any; new work only when `allow_new`.
    fn next_request(&mut self, phase: Phase, allow_new: bool) -> Option<(String, Tag)> {
        if let Some(r) = self.outq.pop_front() {
            return Some(r);
        }
        if !allow_new {
            return None;
        }
        match phase {
            Phase::Create => self.to_create.pop_front().map(|l| (l, Tag::Create)),
            Phase::ParkAll => self
                .to_park
                .pop_front()
                .map(|(leg, lot)| (park_line(leg, lot), Tag::Park { leg, lot })),
            Phase::Steady => match self.retrieve_by {
                RetrieveBy::Slot => self.next_pair_by_slot(),
                RetrieveBy::Longest => self.next_retrieve_longest(),
            },
        }
    }

    /// Retrieve a known slot, and right behind it re-park the leg in that lot.
    fn next_pair_by_slot(&mut self) -> Option<(String, Tag)> {
        let (leg, lot, slot) = self.parked.pop_front()?;
        let r = self.free_retrievers.pop_front()?;
        // The park (processed after the retrieve, same connection) frees `r` again.
        self.free_retrievers.push_back(r);
        self.outq
            .push_back((park_line(leg, lot), Tag::Park { leg, lot }));
        if self.unbridge {
            self.outq.push_back((
                format!(r#"{{"cmd":"unbridge","leg":"r{r}"}}"#),
                Tag::Unbridge,
            ));
        }
        Some((
            format!(r#"{{"cmd":"retrieve","leg":"r{r}","lot":"l{lot}","slot":{slot}}}"#),
            Tag::Retrieve {
                retriever: r,
                lot,
                expect: Some((leg, slot)),
            },
        ))
    }

    /// Retrieve the longest-waiting call of the next owned lot with one available;
    /// its re-park is queued when the reply names the leg.
    fn next_retrieve_longest(&mut self) -> Option<(String, Tag)> {
        if self.free_retrievers.is_empty() {
            return None;
        }
        for _ in 0..self.lots.len() {
            let lot = self.lots[self.next_lot];
            self.next_lot = (self.next_lot + 1) % self.lots.len();
            let avail = self.available.entry(lot).or_default();
            if *avail == 0 {
                continue;
            }
            *avail -= 1;
            let r = self.free_retrievers.pop_front()?;
            return Some((
                format!(r#"{{"cmd":"retrieve","leg":"r{r}","lot":"l{lot}"}}"#),
                Tag::Retrieve {
                    retriever: r,
                    lot,
                    expect: None,
                },
            ));
        }
        None
    }

    /// Checks one reply and queues what follows from it.
    fn on_reply(&mut self, tag: Tag, v: &Value, stats: &mut PhaseStats) {
        let op = tag.op();
        stats.done[op.index()] += 1;
        if v["ok"] != Value::Bool(true) {
            let err = format!("{}", v["error"]);
            stats.error(op, err);
            // Keep the books straight so the run goes on.
            match tag {
                Tag::Retrieve {
                    retriever,
                    lot,
                    expect: None,
                } => {
                    self.free_retrievers.push_back(retriever);
                    *self.available.entry(lot).or_default() += 1;
                }
                Tag::Park { leg, .. } => {
                    self.location.remove(&leg);
                }
                _ => {}
            }
            return;
        }
        match tag {
            Tag::Create | Tag::Unbridge => {}
            Tag::Park { leg, lot } => {
                let slot = v["slot"].as_u64().unwrap_or(0) as u32;
                if v["lot"].as_str() != Some(&format!("l{lot}")) || slot == 0 {
                    stats.error(Op::Park, format!("p{leg}: unexpected reply {v}"));
                    return;
                }
                self.location.insert(leg, (lot, slot));
                if self.retrieve_by == RetrieveBy::Slot {
                    self.parked.push_back((leg, lot, slot));
                }
            }
            Tag::Retrieve {
                retriever,
                lot,
                expect,
            } => {
                let got_leg = v["parked_leg"]
                    .as_str()
                    .and_then(|s| s.strip_prefix('p'))
                    .and_then(|s| s.parse::<u32>().ok());
                let got_slot = v["slot"].as_u64().map(|s| s as u32);
                let Some(leg) = got_leg else {
                    stats.error(Op::Retrieve, format!("unexpected reply {v}"));
                    return;
                };
                match expect {
                    Some((want_leg, want_slot)) => {
                        if (leg, got_slot) != (want_leg, Some(want_slot)) {
                            stats.error(
                                Op::Retrieve,
                                format!("wanted p{want_leg} from slot {want_slot}, got {v}"),
                            );
                        }
                    }
                    None => {
                        if self.location.get(&leg).map(|l| l.0) != Some(lot) {
                            stats.error(
                                Op::Retrieve,
                                format!("got p{leg}, not parked in l{lot} by our count: {v}"),
                            );
                        }
                        // Re-park it right away; the retriever is free after that park.
                        self.outq
                            .push_back((park_line(leg, lot), Tag::Park { leg, lot }));
                        if self.unbridge {
                            self.outq.push_back((
                                format!(r#"{{"cmd":"unbridge","leg":"r{retriever}"}}"#),
                                Tag::Unbridge,
                            ));
                        }
                        self.free_retrievers.push_back(retriever);
                        *self.available.entry(lot).or_default() += 1;
                    }
                }
                self.location.remove(&leg);
            }
        }
    }

    /// Runs `phase` on this connection until its work is done (or, for the steady
    /// phase, `deadline` passes), with up to `depth` requests in flight.
    fn drive(
        &mut self,
        phase: Phase,
        depth: usize,
        deadline: Option<Instant>,
    ) -> Result<PhaseStats, String> {
        let mut stats = PhaseStats::default();
        let mut inflight: VecDeque<(u64, Tag)> = VecDeque::with_capacity(depth);
        let mut batch = String::with_capacity(depth * 80);
        loop {
            let allow_new = !sys::stopping() && deadline.is_none_or(|d| Instant::now() < d);
            let mut added = 0;
            while inflight.len() < depth {
                let Some((line, tag)) = self.next_request(phase, allow_new) else {
                    break;
                };
                batch.push_str(&line);
                batch.push('\n');
                inflight.push_back((0, tag));
                added += 1;
            }
            if added > 0 {
                let now = sys::mono_ns();
                let n = inflight.len();
                for slot in inflight.range_mut(n - added..) {
                    slot.0 = now;
                }
                self.client
                    .writer
                    .write_all(batch.as_bytes())
                    .map_err(|e| format!("sending requests: {e}"))?;
                batch.clear();
            }
            if inflight.is_empty() {
                return Ok(stats);
            }
            // One reply (blocking), then every reply already buffered.
            loop {
                let v = self.client.read_reply()?;
                let now = sys::mono_ns();
                let (sent, tag) = inflight
                    .pop_front()
                    .ok_or_else(|| format!("a reply nobody asked for: {v}"))?;
                stats.lat[tag.op().index()].push(now.saturating_sub(sent));
                self.on_reply(tag, &v, &mut stats);
                if inflight.is_empty() || !self.client.reply_buffered() {
                    break;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Engine measurements

/// CPU and context switches of the engine's threads, by thread name.
#[derive(Debug, Clone, Default)]
struct ThreadCpu {
    /// On-CPU ns per thread name (threads of one name summed).
    by_name: BTreeMap<String, u64>,
    /// Voluntary context switches, all threads.
    wakeups: u64,
}

fn thread_cpu(pid: u32) -> ThreadCpu {
    let mut out = ThreadCpu::default();
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let name = fs::read_to_string(p.join("comm"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let ns = fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        *out.by_name.entry(name).or_default() += ns;
        out.wakeups += fs::read_to_string(p.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
    }
    out
}

impl ThreadCpu {
    fn total(&self) -> u64 {
        self.by_name.values().sum()
    }
    fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            by_name: self
                .by_name
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(*before.by_name.get(k).unwrap_or(&0)),
                    )
                })
                .collect(),
            wakeups: self.wakeups.saturating_sub(before.wakeups),
        }
    }
}

/// Busy time of the whole machine (all CPUs, from `/proc/stat`) in ns.
fn machine_busy_ns() -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ticks: u64 = (0..cpus).map(|c| sys::core_ticks(c).busy).sum();
    ticks * 1_000_000_000 / sys::clk_tck()
}

/// The figures of one phase.
struct PhaseResult {
    name: &'static str,
    secs: f64,
    stats: PhaseStats,
    /// Engine CPU over the phase.
    engine: ThreadCpu,
    /// This benchmark's own CPU over the phase (ns).
    client_cpu_ns: u64,
    /// CPU of everything else on the machine over the phase (ns, 10 ms resolution).
    other_cpu_ns: u64,
}

/// Runs `phase` on every connection in parallel and measures it.
fn run_phase(
    name: &'static str,
    conns: &mut [Conn],
    phase: Phase,
    depth: usize,
    seconds: Option<f64>,
    pid: u32,
) -> Result<PhaseResult, String> {
    let cpu0 = thread_cpu(pid);
    let client0 = sys::process_cpu_ns();
    let machine0 = machine_busy_ns();
    let t0 = Instant::now();
    let deadline = seconds.map(|s| t0 + Duration::from_secs_f64(s));
    let results: Vec<Result<PhaseStats, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .iter_mut()
            .map(|c| s.spawn(move || c.drive(phase, depth, deadline)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a connection thread panicked".into()))
            })
            .collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    let engine = thread_cpu(pid).since(&cpu0);
    let client_cpu_ns = sys::process_cpu_ns().saturating_sub(client0);
    let other_cpu_ns = machine_busy_ns()
        .saturating_sub(machine0)
        .saturating_sub(engine.total() + client_cpu_ns);
    let mut stats = PhaseStats::default();
    for r in results {
        stats.merge(r.map_err(|e| format!("{name}: {e}"))?);
    }
    if sys::stopping() {
        return Err(format!("{name}: interrupted"));
    }
    Ok(PhaseResult {
        name,
        secs,
        stats,
        engine,
        client_cpu_ns,
        other_cpu_ns,
    })
}

// ---------------------------------------------------------------------------------
// Reporting

/// One table row (and JSON line) of a phase, for one op kind or all of them.
struct Row {
    label: String,
    ops: u64,
    secs: f64,
    lat: Lat,
    errors: u64,
}

fn rows(p: &mut PhaseResult) -> Vec<Row> {
    let mut out = Vec::new();
    let used: Vec<Op> = OPS
        .iter()
        .copied()
        .filter(|o| p.stats.done[o.index()] > 0)
        .collect();
    for &op in &used {
        out.push(Row {
            label: format!("{} {}", p.name, op.name()),
            ops: p.stats.done[op.index()],
            secs: p.secs,
            lat: latency(&mut p.stats.lat[op.index()]),
            errors: p.stats.errors[op.index()],
        });
    }
    if used.len() > 1 {
        let mut all: Vec<u64> = p.stats.lat.iter().flatten().copied().collect();
        out.push(Row {
            label: format!("{} all", p.name),
            ops: p.stats.done.iter().sum(),
            secs: p.secs,
            lat: latency(&mut all),
            errors: p.stats.total_errors(),
        });
    }
    out
}

fn print_phase(p: &mut PhaseResult, opts: &Opts, json_lines: &mut Vec<Value>) {
    let ops: u64 = p.stats.done.iter().sum();
    let cpu = p.engine.total();
    for r in rows(p) {
        println!(
            "  {:<28} {:>8} {:>7.2} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>6}",
            r.label,
            r.ops,
            r.secs,
            r.ops as f64 / r.secs.max(1e-9),
            r.lat.p50,
            r.lat.p99,
            r.lat.max,
            r.errors
        );
        if opts.json {
            json_lines.push(json!({
                "bench": "park",
                "phase": p.name,
                "row": r.label,
                "ops": r.ops,
                "secs": r.secs,
                "ops_per_sec": r.ops as f64 / r.secs.max(1e-9),
                "p50_us": r.lat.p50,
                "p99_us": r.lat.p99,
                "max_us": r.lat.max,
                "errors": r.errors,
            }));
        }
    }
    let threads: Vec<String> = p
        .engine
        .by_name
        .iter()
        .filter(|(_, ns)| **ns > 0)
        .map(|(n, ns)| format!("{n} {:.0}%", *ns as f64 / 1e7 / p.secs.max(1e-9)))
        .collect();
    println!(
        "      engine CPU {:.0}% of a core ({:.1} µs/op; {:.1} wake-ups/op) [{}]; bench client {:.0}%; other processes {:.0}%",
        cpu as f64 / 1e7 / p.secs.max(1e-9),
        cpu as f64 / 1e3 / ops.max(1) as f64,
        p.engine.wakeups as f64 / ops.max(1) as f64,
        threads.join(", "),
        p.client_cpu_ns as f64 / 1e7 / p.secs.max(1e-9),
        p.other_cpu_ns as f64 / 1e7 / p.secs.max(1e-9),
    );
    if opts.json {
        json_lines.push(json!({
            "bench": "park",
            "phase": p.name,
            "row": format!("{} engine", p.name),
            "engine_cpu_percent": cpu as f64 / 1e7 / p.secs.max(1e-9),
            "engine_cpu_us_per_op": cpu as f64 / 1e3 / ops.max(1) as f64,
            "engine_wakeups_per_op": p.engine.wakeups as f64 / ops.max(1) as f64,
            "engine_threads_cpu_percent": p.engine.by_name.iter()
                .map(|(n, ns)| (n.clone(), json!(*ns as f64 / 1e7 / p.secs.max(1e-9))))
                .collect::<serde_json::Map<String, Value>>(),
            "client_cpu_percent": p.client_cpu_ns as f64 / 1e7 / p.secs.max(1e-9),
            "other_cpu_percent": p.other_cpu_ns as f64 / 1e7 / p.secs.max(1e-9),
        }));
    }
    for e in &p.stats.first_errors {
        println!("      error: {e}");
    }
}

// ---------------------------------------------------------------------------------
// The run

fn check_opts(opts: &Opts) -> Result<(), String> {
    if opts.legs == 0 || opts.lots == 0 || opts.connections == 0 || opts.retrievers == 0 {
        return Err("--legs, --lots, --connections and --retrievers must be at least 1".into());
    }
    if opts.lots < opts.connections {
        return Err(format!(
            "--lots {} < --connections {}: each connection owns whole lots",
            opts.lots, opts.connections
        ));
    }
    if opts.retrievers < opts.connections {
        return Err("need at least one retriever per connection".into());
    }
    if opts.slots == 0 || opts.slots > 10_000 {
        return Err("--slots must be 1..=10000".into());
    }
    if opts.legs.div_ceil(opts.lots) > opts.slots {
        return Err(format!(
            "{} legs over {} lots is {} per lot, more than --slots {}",
            opts.legs,
            opts.lots,
            opts.legs.div_ceil(opts.lots),
            opts.slots
        ));
    }
    if opts.depth < 3 {
        return Err("--depth must be at least 3 (a retrieve, a park and an unbridge)".into());
    }
    Ok(())
}

fn run(opts: &Opts) -> Result<bool, String> {
    check_opts(opts)?;
    let fd_limit = sys::raise_fd_limit();
    let total_legs = opts.legs + opts.retrievers;
    // Two sockets per leg, plus the engine's own (control, eventfds, rings, files).
    let fds_needed = 2 * total_legs as u64 + 256;
    if fd_limit < fds_needed {
        return Err(format!(
            "RLIMIT_NOFILE is {fd_limit} even raised to the hard limit; {total_legs} legs need about {fds_needed}"
        ));
    }
    let pid = std::process::id();
    let tmp = TempDir(std::env::temp_dir().join(format!("rtpark-park-{pid}")));
    fs::create_dir_all(&tmp.0).map_err(|e| format!("cannot create {}: {e}", tmp.0.display()))?;
    let config = write_config(&tmp.0, opts)?;
    let log = tmp.0.join("engine.log");
    let socket = PathBuf::from(format!("/tmp/rtpark-park-{pid}.sock"));
    let mut engine = start_engine(opts, &config, &socket, &log)?;
    let result = measure(opts, &mut engine, &socket, &log, fd_limit);
    let died = engine.exited();
    if result.is_err() || died.is_some() {
        eprintln!(
            "engine log ({}):\n{}",
            died.map(|s| format!("engine exited: {s}"))
                .unwrap_or_else(|| "engine still running".into()),
            log_tail(&log)
        );
    }
    let stopped = engine.stop();
    drop(engine);
    if let Some(s) = stopped {
        eprintln!("engine {s}");
    }
    result
}

fn measure(
    opts: &Opts,
    engine: &mut EngineProcess,
    socket: &Path,
    log: &Path,
    fd_limit: u64,
) -> Result<bool, String> {
    let epid = engine.pid();
    let total_legs = opts.legs + opts.retrievers;
    let mut control = connect(engine, socket, log)?;
    control.call(r#"{"cmd":"ping"}"#)?;
    let media_wait = wait_media(&mut control)?;
    let stats0 = control.call(r#"{"cmd":"stats"}"#)?;
    eprintln!(
        "engine pid {epid} up ({} backend, {} workers); MOH encodings ready after {media_wait:.1} s more",
        stats0["backend"].as_str().unwrap_or("?"),
        stats0["workers"]
    );
    let rss_base = sys::status_kib(epid, "VmRSS");

    // Partition: connection c owns lots k % conns == c, their legs and retrievers j % conns == c.
    let nconn = opts.connections;
    let mut conns = Vec::with_capacity(nconn);
    for c in 0..nconn {
        let client = connect(engine, socket, log)?;
        let lots: Vec<u32> = (0..opts.lots as u32)
            .filter(|k| *k as usize % nconn == c)
            .collect();
        let legs: Vec<u32> = (0..opts.legs as u32)
            .filter(|i| (*i as usize % opts.lots) % nconn == c)
            .collect();
        let retrievers: VecDeque<u32> = (0..opts.retrievers as u32)
            .filter(|j| *j as usize % nconn == c)
            .collect();
        let ptime = opts
            .ptime
            .map(|p| format!(r#","ptime":{p}"#))
            .unwrap_or_default();
        let mut to_create: VecDeque<String> = legs
            .iter()
            .map(|i| {
                format!(
                    r#"{{"cmd":"create_leg","call":"pc{i}","leg":"p{i}","trust_address":true{ptime}}}"#
                )
            })
            .collect();
        to_create.extend(retrievers.iter().map(|j| {
            format!(
                r#"{{"cmd":"create_leg","call":"rc{j}","leg":"r{j}","trust_address":true{ptime}}}"#
            )
        }));
        conns.push(Conn {
            client,
            to_create,
            to_park: legs
                .iter()
                .map(|&i| (i, (i as usize % opts.lots) as u32))
                .collect(),
            outq: VecDeque::new(),
            parked: VecDeque::new(),
            location: HashMap::new(),
            lots,
            next_lot: 0,
            available: HashMap::new(),
            free_retrievers: retrievers,
            retrieve_by: opts.retrieve,
            unbridge: opts.unbridge,
        });
    }

    println!(
        "rtpark park benchmark: {} legs parked in {} lots ({} slots each, {} per lot), {} retrievers; \
         {} connections x {} requests in flight; engine --workers {}; retrieve by {:?}{}; fd limit {}",
        opts.legs,
        opts.lots,
        opts.slots,
        opts.legs.div_ceil(opts.lots),
        opts.retrievers,
        nconn,
        opts.depth,
        opts.workers,
        opts.retrieve,
        if opts.unbridge { " + unbridge" } else { "" },
        fd_limit
    );
    println!(
        "  {:<28} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>6}",
        "phase / op", "ops", "secs", "ops/s", "p50 µs", "p99 µs", "max µs", "errors"
    );
    let mut json_lines = Vec::new();
    let mut all_errors = 0;

    let mut setup = run_phase("setup", &mut conns, Phase::Create, opts.depth, None, epid)?;
    print_phase(&mut setup, opts, &mut json_lines);
    all_errors += setup.stats.total_errors();
    let rss_setup = sys::status_kib(epid, "VmRSS");

    let mut park_all = run_phase(
        "park-all",
        &mut conns,
        Phase::ParkAll,
        opts.depth,
        None,
        epid,
    )?;
    print_phase(&mut park_all, opts, &mut json_lines);
    all_errors += park_all.stats.total_errors();
    let rss_parked = sys::status_kib(epid, "VmRSS");
    for c in conns.iter_mut() {
        c.available.clear();
        for &(lot, _) in c.location.values() {
            *c.available.entry(lot).or_default() += 1;
        }
    }

    // The engine with every leg parked and no commands: MOH timers (nothing is sent).
    let idle0 = thread_cpu(epid);
    let machine0 = machine_busy_ns();
    let t_idle = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(opts.idle_seconds));
    let idle = thread_cpu(epid).since(&idle0);
    let idle_secs = t_idle.elapsed().as_secs_f64();
    let idle_other = machine_busy_ns()
        .saturating_sub(machine0)
        .saturating_sub(idle.total());
    let idle_pct = idle.total() as f64 / 1e7 / idle_secs;
    let idle_wakeups = idle.wakeups as f64 / idle_secs;
    println!(
        "  idle with {} parked, no commands: engine CPU {idle_pct:.1}% of a core, {idle_wakeups:.0} wake-ups/s \
         (MOH timers; no packets leave); other processes {:.0}%",
        opts.legs,
        idle_other as f64 / 1e7 / idle_secs
    );

    let mut steady = run_phase(
        "steady",
        &mut conns,
        Phase::Steady,
        opts.depth,
        Some(opts.seconds),
        epid,
    )?;
    print_phase(&mut steady, opts, &mut json_lines);
    all_errors += steady.stats.total_errors();
    let rss_end = sys::status_kib(epid, "VmRSS");
    let steady_ops: u64 =
        steady.stats.done[Op::Park.index()] + steady.stats.done[Op::Retrieve.index()];
    let steady_rate = steady_ops as f64 / steady.secs.max(1e-9);

    let per_leg = |a: u64, b: u64, n: usize| a.saturating_sub(b) as f64 / n.max(1) as f64;
    println!(
        "  RSS: {rss_base} KiB idle, {rss_setup} KiB with {total_legs} legs ({:.2} KiB/leg), \
         {rss_parked} KiB with {} parked ({:.2} KiB/parked leg for parking; {:.2} KiB/parked leg all in), {rss_end} KiB at the end",
        per_leg(rss_setup, rss_base, total_legs),
        opts.legs,
        per_leg(rss_parked, rss_setup, opts.legs),
        per_leg(rss_parked, rss_base, opts.legs),
    );

    // Verification: the engine's view against what the replies said.
    let mut expected: HashMap<String, (String, u64)> = HashMap::new();
    let mut per_lot: HashMap<String, u64> = HashMap::new();
    for c in &conns {
        for (leg, (lot, slot)) in &c.location {
            expected.insert(format!("p{leg}"), (format!("l{lot}"), *slot as u64));
            *per_lot.entry(format!("l{lot}")).or_default() += 1;
        }
    }
    let mut problems: Vec<String> = Vec::new();
    if expected.len() != opts.legs {
        problems.push(format!(
            "by the replies {} legs are parked, not {}",
            expected.len(),
            opts.legs
        ));
    }
    let listed = control.call(r#"{"cmd":"list_parked"}"#)?;
    let parked = listed["parked"].as_array().cloned().unwrap_or_default();
    if parked.len() != opts.legs {
        problems.push(format!(
            "list_parked lists {} legs, expected {}",
            parked.len(),
            opts.legs
        ));
    }
    let mut mismatched = 0;
    for p in &parked {
        let leg = p["leg"].as_str().unwrap_or_default();
        let here = (
            p["lot"].as_str().unwrap_or_default().to_owned(),
            p["slot"].as_u64().unwrap_or(0),
        );
        if expected.get(leg) != Some(&here) {
            mismatched += 1;
            if mismatched <= 3 {
                problems.push(format!(
                    "list_parked has {leg} in {here:?}, the replies said {:?}",
                    expected.get(leg)
                ));
            }
        }
    }
    if mismatched > 3 {
        problems.push(format!("... {mismatched} mismatches in all"));
    }
    let lots = control.call(r#"{"cmd":"list_lots"}"#)?;
    let lots = lots["lots"].as_array().cloned().unwrap_or_default();
    let busy_sum: u64 = lots.iter().map(|l| l["busy"].as_u64().unwrap_or(0)).sum();
    if busy_sum != opts.legs as u64 {
        problems.push(format!(
            "list_lots busy counts sum to {busy_sum}, expected {}",
            opts.legs
        ));
    }
    for l in &lots {
        let name = l["name"].as_str().unwrap_or_default();
        let busy = l["busy"].as_u64().unwrap_or(0);
        let want = per_lot.get(name).copied().unwrap_or(0);
        if busy != want {
            problems.push(format!("lot {name}: busy {busy}, expected {want}"));
            break;
        }
    }
    let stats = control.call(r#"{"cmd":"stats"}"#)?;
    if stats["legs"].as_u64() != Some(total_legs as u64) {
        problems.push(format!(
            "stats counts {} legs, expected {total_legs}",
            stats["legs"]
        ));
    }
    let ok = problems.is_empty() && all_errors == 0;
    println!(
        "  verify: list_parked {} legs, list_lots busy sum {busy_sum}, {} errors: {}",
        parked.len(),
        all_errors,
        if ok { "OK" } else { "FAILED" }
    );
    for p in &problems {
        println!("      {p}");
    }
    println!(
        "  steady park+retrieve: {steady_rate:.0} ops/s ({} the 5,000 ops/s goal)",
        if steady_rate >= 5000.0 {
            "meets"
        } else {
            "BELOW"
        }
    );
    if opts.json {
        let setup_ops: u64 = setup.stats.done.iter().sum();
        let park_ops: u64 = park_all.stats.done.iter().sum();
        json_lines.push(json!({
            "bench": "park",
            "row": "summary",
            "legs": opts.legs,
            "lots": opts.lots,
            "slots": opts.slots,
            "retrievers": opts.retrievers,
            "connections": nconn,
            "depth": opts.depth,
            "workers": opts.workers,
            "retrieve_by": format!("{:?}", opts.retrieve).to_lowercase(),
            "unbridge": opts.unbridge,
            "seconds": opts.seconds,
            "setup_legs_per_sec": setup_ops as f64 / setup.secs.max(1e-9),
            "park_all_per_sec": park_ops as f64 / park_all.secs.max(1e-9),
            "steady_park_retrieve_per_sec": steady_rate,
            "steady_engine_cpu_us_per_op": steady.engine.total() as f64 / 1e3 / steady_ops.max(1) as f64,
            "idle_parked_engine_cpu_percent": idle_pct,
            "idle_parked_engine_wakeups_per_sec": idle_wakeups,
            "ptime": opts.ptime,
            "rss_kib": {"idle": rss_base, "legs_created": rss_setup, "parked": rss_parked, "end": rss_end},
            "rss_kib_per_leg_created": per_leg(rss_setup, rss_base, total_legs),
            "rss_kib_per_parked_leg_parking": per_leg(rss_parked, rss_setup, opts.legs),
            "rss_kib_per_parked_leg_all_in": per_leg(rss_parked, rss_base, opts.legs),
            "list_parked": parked.len(),
            "lots_busy_sum": busy_sum,
            "errors": all_errors,
            "verified": ok,
            "problems": problems,
        }));
        for j in &json_lines {
            println!("{j}");
        }
    }
    Ok(ok)
}
