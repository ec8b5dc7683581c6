//! Chaos on the native control socket of the real binary: a seeded PRNG sends a
//! few thousand JSON lines to an engine with two workers, 48 port pairs, the
//! `default` lot (701–720) and a two-slot lot `tiny`, both with 1–2 s park
//! timeouts so that timeouts and releases happen during the run. Most lines are
//! valid commands on a pool of calls and legs (create, update, bridge, hold with
//! a class, unhold, announcements, media, park in a slot or any, retrieve from
//! another leg, delete); the rest are mutated (fields dropped, nulled, retyped
//! and added, extreme numbers, empty, 60 KiB and unknown names, ids of every
//! JSON type, invalid UTF-8 inside and outside strings, truncated and
//! over-long lines, blank lines, pipelined bursts, requests split over writes,
//! side connections that vanish mid-line). Phones send RTP, RTCP, DTMF and junk
//! to the legs now and then, so relay, hold, music and park paths carry media.
//!
//! What it proves: every request line gets exactly one reply line, in order,
//! that is a JSON object with `ok` true, or false with a documented error
//! `code` and a message, with the request's `id` echoed first when it had one
//! (as the engine reads the line); a valid request gets the reply the docs
//! promise for the engine's state, which the test models (so a refused create,
//! a lost leg or an `ok` on an unknown leg shows); error codes agree with that
//! state; no `internal` error occurs; `stats`, `list_calls`, `list_parked` and
//! `list_lots` agree with the model and with each other (ports, peers, slots);
//! the subscribed event streams stay well-formed, name only legs and calls the
//! test created and keep every slot's busy/free story straight; the phones
//! receive only RTP/RTCP version 2; the process neither dies nor panics; and
//! once every call is deleted, `stats` shows no call, no leg and every port pair
//! free, `list_calls` and `list_parked` are empty and every lot is free.
//!
//! Both backends; the seed is fixed (`RTPARK_NATIVE_CHAOS_SEED` replays another
//! one), and the last requests of a failing run are written to a log under the
//! target directory. The engine bugs it found are pinned by the small tests at
//! the top.

#[macro_use]
mod support;

use rtpark::control::native::COMMANDS;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

backend_tests!(native_chaos_answers_every_line_and_leaks_nothing);

// The engine bugs the chaos found, each pinned by its smallest input (the
// control plane does not depend on the packet backend: epoll only).

/// docs/native-protocol.md, `play_media`: "Errors: `unknown_media` (no such
/// name, or a file that cannot be decoded; the message says why)". A missing
/// file and a file that is no audio must not be `internal` errors.
#[test]
fn play_media_of_a_missing_or_undecodable_file_is_unknown_media() {
    let dir = TempDir::new();
    let engine = Engine::start(EngineOptions::new(Backend::Epoll).config(&quick_media(&dir)));
    let mut ctl = engine.control();
    ctl.ok(json!({"cmd": "create_leg", "call": "c", "leg": "a"}));
    let text = dir.join("not-audio.wav");
    std::fs::write(&text, "this is text, not audio\n").expect("write a text file");
    let missing = dir.join("missing.wav");
    for file in [&text, &missing] {
        let request = json!({"cmd": "play_media", "leg": "a", "file": file.to_str()});
        let (code, message) = ctl.err(request.clone());
        assert_eq!(
            code, "unknown_media",
            "{request} should be refused as unknown_media; got {code}: {message}"
        );
    }
}

/// docs/native-protocol.md: lines up to 65 536 bytes are read, and "bytes that
/// are not valid UTF-8 are read as U+FFFD, so they [...] land in a string". A
/// 30 KB line with 30 000 such bytes in a string must be answered like any
/// other (here: `pong`, with its id), not refused as longer than 64 KiB because
/// each byte became the three bytes of U+FFFD.
#[test]
fn invalid_utf8_in_a_string_does_not_count_thrice_against_the_line_limit() {
    let engine = Engine::on(Backend::Epoll);
    let mut ctl = engine.control();
    let mut line = br#"{"id":"u8","cmd":"ping","pad":""#.to_vec();
    line.extend(std::iter::repeat_n(0xffu8, 30_000));
    line.extend_from_slice(b"\"}\n");
    assert!(line.len() < MAX_LINE, "the line is {} bytes", line.len());
    ctl.send_raw(&line);
    let reply = ctl.reply();
    assert!(
        reply["ok"] == json!(true) && reply["id"] == json!("u8"),
        "a {}-byte ping with invalid UTF-8 in a string was answered {reply}",
        line.len() - 1
    );
}

/// Requests in one run (steps; a pipelined step sends several lines).
const STEPS: usize = 1100;
/// Percentage of requests that are mutated.
const MUTATED_PERCENT: u32 = 40;
/// Port pairs of the engine: small, so that exhaustion is part of the chaos.
const PORT_PAIRS: u16 = 48;
/// Worker threads: two, so bridges and retrievals move legs between workers.
const WORKERS: usize = 2;
/// Steps between two consistency checkpoints.
const CHECK_EVERY: usize = 60;
/// How long a reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request line, not counting its newline (docs: 64 KiB).
const MAX_LINE: usize = 65_536;
/// A long string: big, yet a request holding one fits a line.
const LONG: usize = 60 * 1024;
/// Replies lost before the chaos gives up (each costs [`REPLY_TIMEOUT`]).
const MAX_LOST: usize = 3;
/// Slack around park and media deadlines before the model calls them certain.
const MARGIN: Duration = Duration::from_millis(400);
/// The engine's media timeout for legs that set none (seconds).
const DEFAULT_MEDIA_TIMEOUT: u64 = 60;
/// Phones that send RTP and receive what the engine sends.
const PHONES: usize = 3;

/// A parking lot as configured for the chaos.
struct LotSpec {
    name: &'static str,
    first: u32,
    last: u32,
    /// Park timeout plus final timeout: when a parked leg is released.
    release_after: Duration,
}

/// The lots: `default` (701–720, 1 s + 1 s) and `tiny` (801–802, 2 s + 1 s).
const LOTS: [LotSpec; 2] = [
    LotSpec {
        name: "default",
        first: 701,
        last: 720,
        release_after: Duration::from_secs(2),
    },
    LotSpec {
        name: "tiny",
        first: 801,
        last: 802,
        release_after: Duration::from_secs(3),
    },
];

/// Every error code docs/native-protocol.md lists.
const ERROR_CODES: &[&str] = &[
    "bad_request",
    "unknown_command",
    "missing_field",
    "invalid_field",
    "unknown_leg",
    "unknown_call",
    "leg_exists",
    "ports_exhausted",
    "invalid_state",
    "unknown_media",
    "unknown_lot",
    "slot_taken",
    "lot_full",
    "slot_empty",
    "internal",
];

/// The valid commands the chaos builds, with their weights.
const VALID_COMMANDS: &[(&str, usize)] = &[
    ("create_leg", 12),
    ("delete_leg", 3),
    ("delete_call", 3),
    ("bridge", 8),
    ("unbridge", 2),
    ("hold", 6),
    ("unhold", 4),
    ("stop_play", 1),
    ("play", 4),
    ("play_media", 4),
    ("stop_media", 2),
    ("block_media", 1),
    ("unblock_media", 1),
    ("silence_media", 1),
    ("unsilence_media", 1),
    ("park", 9),
    ("retrieve", 6),
    ("update_leg", 3),
    ("query_call", 2),
    ("list_calls", 1),
    ("stats", 1),
    ("list_parked", 2),
    ("list_lots", 1),
    ("list_media", 1),
    ("ping", 1),
];

/// The announcements the engine has built in.
const ANNOUNCEMENTS: &[&str] = &[
    "please-hold",
    "parked-on-slot",
    "party-returned",
    "courtesy-tone",
    "digit-0",
    "digit-7",
    "digit-9",
];

/// MOH classes of the chaos engine ([`quick_media`]).
const CLASSES: &[&str] = &["default", "calm"];

/// Fields that carry names or other strings.
const STRING_KEYS: &[&str] = &[
    "leg",
    "call",
    "a",
    "b",
    "lot",
    "class",
    "announcement",
    "media",
    "file",
    "parker",
    "remote",
    "remote_rtcp",
    "peer_hears",
    "then",
];

/// Fields that carry numbers.
const NUMBER_KEYS: &[&str] = &["slot", "repeat", "start_ms", "media_timeout", "ptime"];

/// Fields that carry booleans.
const BOOL_KEYS: &[&str] = &[
    "trust_address",
    "rtcp_mux",
    "silent",
    "ssrc_per_source",
    "hold",
];

// ---------------------------------------------------------------------------
// Randomness and the wire.
// ---------------------------------------------------------------------------

/// A raw JSON-lines connection: bytes out, whole lines in.
struct Wire {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    /// Bytes of a line not yet complete (kept across read timeouts).
    partial: Vec<u8>,
}

impl Wire {
    /// Connects to the native socket at `path`.
    fn connect(path: &Path) -> Wire {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .expect("set write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone unix stream"));
        Wire {
            stream,
            reader,
            partial: Vec::new(),
        }
    }

    /// Writes raw bytes.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next whole line without its newline, `Ok(None)` if none came within
    /// `timeout`, `Err` if the engine closed the connection.
    fn line(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match self.reader.read_until(b'\n', &mut self.partial) {
            Ok(0) => Err("rtpark closed the connection".into()),
            Ok(_) if !self.partial.ends_with(b"\n") => {
                Err("rtpark closed the connection mid-line".into())
            }
            Ok(_) => {
                let mut line = std::mem::take(&mut self.partial);
                line.pop();
                Ok(Some(line))
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(format!("reading from rtpark: {e}")),
        }
    }
}

/// Text for a report, long runs clipped.
fn clip(s: &str) -> String {
    const KEEP: usize = 300;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 2 * KEEP {
        return s.to_owned();
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{head}…[{} chars]…{tail}", chars.len())
}

/// JSON equality that allows the last-bit drift of a float's print/parse round trip.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() && (x.fract() != 0.0) => {
                x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// What a line is to the engine, and what a reply must look like.
// ---------------------------------------------------------------------------

/// A request line as the engine reads it (docs: invalid UTF-8 becomes U+FFFD,
/// a trailing `\r` is dropped, lines over 64 KiB are refused).
enum View {
    /// Longer than [`MAX_LINE`] bytes on the wire.
    TooLong,
    /// Not JSON, or JSON but not an object.
    Broken,
    /// A JSON object.
    Object(Map<String, Value>),
}

/// How the engine should read `line` (without its newline).
fn engine_view(line: &[u8]) -> View {
    if line.len() > MAX_LINE {
        return View::TooLong;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => View::Object(m),
        _ => View::Broken,
    }
}

/// Whether a received line is an event (an `event` key and no `ok`).
fn as_event(raw: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    (v.get("event").is_some() && v.get("ok").is_none()).then_some(v)
}

/// Checks one reply line against the docs' reply shape: a JSON object, keys
/// `id` (exactly when `id` is `Some`, echoing it), then `ok`, then the result or
/// an `error` with a documented `code` and a non-empty `message`.
fn reply_shape(raw: &[u8], id: Option<&Value>) -> Result<Value, String> {
    let reply: Value =
        serde_json::from_slice(raw).map_err(|e| format!("reply is not JSON ({e})"))?;
    let obj = reply.as_object().ok_or("reply is not a JSON object")?;
    if obj.contains_key("event") {
        return Err("reply carries an `event` key".into());
    }
    let ok = obj
        .get("ok")
        .and_then(Value::as_bool)
        .ok_or("reply has no boolean `ok`")?;
    match (id, obj.get("id")) {
        (None, None) => {
            if !raw.starts_with(b"{\"ok\":") {
                return Err("`ok` is not the first key".into());
            }
        }
        (Some(Value::Null), None) => {}
        (Some(sent), Some(echoed)) => {
            if !same_json(sent, echoed) {
                return Err(format!("id {sent} echoed as {echoed}"));
            }
            let prefix = format!("{{\"id\":{echoed},\"ok\":");
            if !raw.starts_with(prefix.as_bytes()) {
                return Err("keys do not start with `id`, then `ok`".into());
            }
        }
        (Some(sent), None) => return Err(format!("id {sent} not echoed")),
        (None, Some(echoed)) => return Err(format!("id {echoed} echoed, but none was sent")),
    }
    if ok {
        if obj.contains_key("error") {
            return Err("`ok: true` with an `error`".into());
        }
        return Ok(reply);
    }
    let error = obj
        .get("error")
        .and_then(Value::as_object)
        .ok_or("`ok: false` without an `error` object")?;
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .ok_or("error without a string `code`")?;
    if !ERROR_CODES.contains(&code) {
        return Err(format!("undocumented error code {code:?}"));
    }
    let message = error.get("message").and_then(Value::as_str);
    if message.is_none_or(str::is_empty) {
        return Err("error without a message".into());
    }
    if obj
        .keys()
        .any(|k| !matches!(k.as_str(), "id" | "ok" | "error"))
    {
        return Err("an error reply with result fields".into());
    }
    Ok(reply)
}

/// The error code of a reply, `"ok"` on success.
fn outcome(reply: &Value) -> &str {
    if reply["ok"] == json!(true) {
        "ok"
    } else {
        reply["error"]["code"].as_str().unwrap_or("?")
    }
}

/// What a request may be answered: `"ok"` or error codes.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Exactly this outcome.
    Is(&'static str),
    /// One of these outcomes.
    OneOf(Vec<&'static str>),
    /// Anything well-formed.
    Any,
}

impl Expect {
    /// Whether `got` is allowed.
    fn allows(&self, got: &str) -> bool {
        match self {
            Expect::Is(e) => *e == got,
            Expect::OneOf(set) => set.contains(&got),
            Expect::Any => true,
        }
    }
}

// ---------------------------------------------------------------------------
// The model: the calls, legs and parkings the engine should hold.
// ---------------------------------------------------------------------------

/// A leg the test created.
struct LegState {
    call: String,
    port: u16,
    /// Its media timeout in seconds.
    media_timeout: u64,
    /// When it was created: its media timeout cannot fire before this plus
    /// `media_timeout` (RTP only postpones it, and may be dropped as foreign).
    created: Instant,
}

/// Where a leg is parked, as its `park` reply said.
struct ParkState {
    lot: String,
    slot: u32,
    since: Instant,
}

/// Whether a leg is parked, as far as the model can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parked {
    No,
    Yes,
    /// A timeout may have taken it out of its slot just now.
    Maybe,
}

/// The engine's state as the test's own requests and replies built it.
#[derive(Default)]
struct Model {
    legs: BTreeMap<String, LegState>,
    /// Call → its legs.
    calls: BTreeMap<String, BTreeSet<String>>,
    /// Leg → its parking.
    parked: BTreeMap<String, ParkState>,
    /// Every leg ever created → the calls it belonged to (events may name it late).
    ever_legs: HashMap<String, BTreeSet<String>>,
    ever_calls: BTreeSet<String>,
    /// Calls deleted and then created again (events about them stay legal).
    reborn: BTreeSet<String>,
    deleted_calls: BTreeSet<String>,
    /// Events the successful commands promise: `parked`, `retrieved`,
    /// `call_deleted:command`, `call_deleted:last_leg`.
    promised: BTreeMap<&'static str, usize>,
}

impl Model {
    /// Whether `leg` is parked now.
    fn park_state(&self, leg: &str, now: Instant) -> Parked {
        let Some(p) = self.parked.get(leg) else {
            return Parked::No;
        };
        let release = lot_spec(&p.lot).map_or(Duration::ZERO, |l| l.release_after);
        let mut deadline = p.since + release;
        if let Some(l) = self.legs.get(leg) {
            deadline = deadline.min(l.created + Duration::from_secs(l.media_timeout));
        }
        if now + MARGIN < deadline {
            Parked::Yes
        } else {
            Parked::Maybe
        }
    }

    /// The legs parked (or maybe parked) in `lot`, at `slot` if given.
    fn parked_in(&self, lot: &str, slot: Option<u32>, now: Instant) -> Vec<Parked> {
        self.parked
            .iter()
            .filter(|(_, p)| p.lot == lot && slot.is_none_or(|s| s == p.slot))
            .map(|(leg, _)| self.park_state(leg, now))
            .collect()
    }

    /// Records a leg the engine created.
    fn add_leg(&mut self, call: &str, leg: &str, port: u16, media_timeout: u64) {
        self.legs.insert(
            leg.to_owned(),
            LegState {
                call: call.to_owned(),
                port,
                media_timeout,
                created: Instant::now(),
            },
        );
        self.calls
            .entry(call.to_owned())
            .or_default()
            .insert(leg.to_owned());
        self.ever_legs
            .entry(leg.to_owned())
            .or_default()
            .insert(call.to_owned());
        self.ever_calls.insert(call.to_owned());
        if self.deleted_calls.contains(call) {
            self.reborn.insert(call.to_owned());
        }
    }

    /// Counts an event a successful command promises.
    fn promise(&mut self, event: &'static str) {
        *self.promised.entry(event).or_default() += 1;
    }

    /// Forgets a deleted leg (and its call with its last leg).
    fn remove_leg(&mut self, leg: &str) {
        self.parked.remove(leg);
        if let Some(l) = self.legs.remove(leg) {
            if let Some(legs) = self.calls.get_mut(&l.call) {
                legs.remove(leg);
                if legs.is_empty() {
                    self.calls.remove(&l.call);
                    self.deleted_calls.insert(l.call);
                    self.promise("call_deleted:last_leg");
                }
            }
        }
    }

    /// Forgets a deleted call and its legs.
    fn remove_call(&mut self, call: &str) {
        self.deleted_calls.insert(call.to_owned());
        self.promise("call_deleted:command");
        for leg in self.calls.remove(call).unwrap_or_default() {
            self.parked.remove(&leg);
            self.legs.remove(&leg);
        }
    }
}

/// The configuration of lot `name`.
fn lot_spec(name: &str) -> Option<&'static LotSpec> {
    LOTS.iter().find(|l| l.name == name)
}

/// A string field of a request.
fn field<'a>(req: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    req.get(key).and_then(Value::as_str)
}

/// The slot of a request, if it names a valid one.
fn slot_of(req: &Map<String, Value>) -> Option<u32> {
    req.get("slot")
        .and_then(Value::as_u64)
        .and_then(|s| u32::try_from(s).ok())
}

// ---------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------

/// A field's expected JSON type in an event.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Num,
    StrOrNull,
}

/// The fields each documented event carries.
fn event_fields(kind: &str) -> Option<&'static [(&'static str, Ty)]> {
    use Ty::*;
    Some(match kind {
        "media_timeout" => &[("call", Str), ("leg", Str), ("after_secs", Num)],
        "call_deleted" => &[("call", Str), ("reason", Str)],
        "playback_done" => &[("call", Str), ("leg", Str), ("announcement", Str)],
        "dtmf" => &[
            ("call", Str),
            ("leg", Str),
            ("digit", Str),
            ("duration_ms", Num),
        ],
        "parked" => &[
            ("lot", Str),
            ("slot", Num),
            ("call", Str),
            ("leg", Str),
            ("parker", StrOrNull),
            ("timeout_secs", Num),
        ],
        "retrieved" => &[
            ("lot", Str),
            ("slot", Num),
            ("call", Str),
            ("leg", Str),
            ("by", Str),
            ("parker", StrOrNull),
            ("waited_secs", Num),
        ],
        "park_timeout" | "park_released" => &[
            ("lot", Str),
            ("slot", Num),
            ("call", Str),
            ("leg", Str),
            ("parker", StrOrNull),
            ("waited_secs", Num),
        ],
        "park_give_up" => &[
            ("lot", Str),
            ("slot", Num),
            ("call", Str),
            ("leg", Str),
            ("parker", StrOrNull),
            ("reason", Str),
            ("waited_secs", Num),
        ],
        "slot_state" => &[("lot", Str), ("slot", Num), ("state", Str)],
        _ => return None,
    })
}

/// One subscribed event stream and the slot story it told so far.
#[derive(Default)]
struct EventLog {
    /// (lot, slot) → busy, as `slot_state` events said.
    busy: HashMap<(String, u64), bool>,
    /// Subscribed while slots may have been busy: a slot's story starts with
    /// its first event rather than "free".
    late: bool,
    /// Calls this stream saw deleted.
    deleted: BTreeSet<String>,
    /// Events by kind (`call_deleted`, `park_give_up` and `slot_state` also
    /// by reason or state, as `kind:reason`).
    kinds: BTreeMap<String, usize>,
}

impl EventLog {
    /// Checks one event line; returns what is wrong with it.
    fn check(&mut self, raw: &[u8], model: &Model) -> Result<(), String> {
        let ev: Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON ({e})"))?;
        let obj = ev.as_object().ok_or("not a JSON object")?;
        if obj.contains_key("ok") {
            return Err("an event with an `ok` key".into());
        }
        let kind = obj
            .get("event")
            .and_then(Value::as_str)
            .ok_or("`event` is not a string")?;
        *self.kinds.entry(kind.to_owned()).or_default() += 1;
        for key in ["reason", "state"] {
            if let Some(v) = obj.get(key).and_then(Value::as_str) {
                *self.kinds.entry(format!("{kind}:{v}")).or_default() += 1;
            }
        }
        let Some(fields) = event_fields(kind) else {
            // Later versions may add events; the docs say to ignore them.
            return Ok(());
        };
        for &(name, ty) in fields {
            let v = obj.get(name);
            let fits = match ty {
                Ty::Str => v.is_some_and(Value::is_string),
                Ty::Num => v.is_some_and(Value::is_number),
                Ty::StrOrNull => v.is_some_and(|v| v.is_string() || v.is_null()),
            };
            if !fits {
                return Err(format!("field `{name}` is missing or of the wrong type"));
            }
        }
        let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
        if obj.contains_key("call") && !model.ever_calls.contains(s("call")) {
            return Err(format!(
                "names call {:?}, which the test never created",
                s("call")
            ));
        }
        if obj.contains_key("leg") {
            let calls = model.ever_legs.get(s("leg"));
            if !calls.is_some_and(|c| c.contains(s("call"))) {
                return Err(format!(
                    "names leg {:?} of call {:?}, which the test never created",
                    s("leg"),
                    s("call")
                ));
            }
        }
        // A call the test named itself is never created again, unless the model
        // saw it reborn: nothing may be said about it after its call_deleted.
        let call = s("call");
        let own = ["call-", "flood-", "side-"]
            .iter()
            .any(|p| call.starts_with(p))
            && !call.contains('/')
            && !model.reborn.contains(call);
        if own && self.deleted.contains(call) {
            return Err(format!(
                "an event about call {call:?} after its call_deleted"
            ));
        }
        if kind == "call_deleted" {
            self.deleted.insert(call.to_owned());
        }
        if kind == "retrieved" && !model.ever_legs.contains_key(s("by")) {
            return Err(format!("retrieved by {:?}, a leg never created", s("by")));
        }
        let allowed: &[&str] = match kind {
            "call_deleted" => &["command", "last_leg"],
            "park_give_up" => &["deleted", "media_timeout"],
            "dtmf" => &[
                "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D",
            ],
            "slot_state" => &["busy", "free"],
            _ => &[],
        };
        let key = match kind {
            "call_deleted" | "park_give_up" => "reason",
            "dtmf" => "digit",
            _ => "state",
        };
        if !allowed.is_empty() && !allowed.contains(&s(key)) {
            return Err(format!("`{key}` is {:?}", s(key)));
        }
        if !obj.contains_key("lot") {
            return Ok(());
        }
        let slot = obj["slot"].as_u64().unwrap_or(0);
        let lot = lot_spec(s("lot")).ok_or("names a lot that is not configured")?;
        if !(u64::from(lot.first)..=u64::from(lot.last)).contains(&slot) {
            return Err(format!("slot {slot} is not in lot {}", lot.name));
        }
        let key = (lot.name.to_owned(), slot);
        if self.late && !self.busy.contains_key(&key) {
            self.busy
                .insert(key.clone(), kind != "parked" && s("state") != "busy");
        }
        let busy = self.busy.entry(key).or_default();
        let want_busy = match kind {
            "parked" => false,
            "slot_state" => s("state") == "free",
            _ => true,
        };
        if *busy != want_busy {
            return Err(format!(
                "slot {} {slot} was {} when this came",
                lot.name,
                if *busy { "busy" } else { "free" }
            ));
        }
        if kind == "slot_state" {
            *busy = s("state") == "busy";
        }
        Ok(())
    }

    /// Slots this stream last reported busy.
    fn busy_slots(&self) -> Vec<String> {
        self.busy
            .iter()
            .filter(|(_, b)| **b)
            .map(|((lot, slot), _)| format!("{lot} {slot}"))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------

/// One request line of a step.
struct Line {
    bytes: Vec<u8>,
    /// Valid as built: the reply must be what the model predicts.
    pristine: bool,
    /// Blank: the engine may answer it with a `bad_request` or skip it.
    blank: bool,
}

impl Line {
    /// A request line from a JSON value.
    fn json(v: &Value, pristine: bool) -> Line {
        Line {
            bytes: v.to_string().into_bytes(),
            pristine,
            blank: false,
        }
    }
}

/// An engine under chaos, its clients, its model and what the run has seen.
struct Chaos {
    engine: Engine,
    main: Wire,
    /// A connection that subscribed at start and only reads events.
    events: Wire,
    events_log: EventLog,
    /// Whether `main` subscribed too (its events are checked on their own).
    main_subscribed: bool,
    main_log: EventLog,
    /// A reply read ahead while looking for a blank line's reply.
    peeked: Option<Vec<u8>>,
    phones: Vec<Phone>,
    /// A short WAV the engine can play.
    wav: String,
    rng: Rng,
    model: Model,
    free_before: u64,
    next_id: u64,
    next_name: u64,
    /// The last requests and replies, for the log of a failing run.
    history: VecDeque<String>,
    problems: Vec<String>,
    /// Outcome counts per command, for the summary.
    outcomes: BTreeMap<String, BTreeMap<String, usize>>,
    lost: usize,
    lines: usize,
    mutated: usize,
    datagrams_sent: usize,
    datagrams_heard: usize,
    seq: u16,
}

impl Chaos {
    /// Starts the engine with a small port range, two workers and quick lots.
    fn start(backend: Backend, dir: &TempDir, seed: u64) -> Chaos {
        let engine = Engine::start(
            EngineOptions::new(backend)
                .workers(WORKERS)
                .port_pairs(PORT_PAIRS)
                .config(&quick_media(dir))
                .config(&lot_toml(
                    "default",
                    "701-720",
                    "timeout = 1\nfinal_timeout = 1",
                ))
                .config(&lot_toml(
                    "tiny",
                    "801-802",
                    "policy = \"next_after_last\"\ntimeout = 2\nfinal_timeout = 1\n\
                     moh_class = \"calm\"\nannounce_slot = false\ncourtesy_tone = \"both\"",
                )),
        );
        let wav = dir.join("beep.wav");
        write_wav(&wav, 8000, &tone(8000, 0.3, &[(1000.0, 0.3)]));
        let mut ctl = engine.control();
        let stats = ctl.ok(json!({"cmd": "stats"}));
        let free_before = stats["free_port_pairs"].as_u64().expect("free_port_pairs");
        assert_eq!(free_before, u64::from(PORT_PAIRS), "{stats}");
        let lots = ctl.list_lots();
        for spec in &LOTS {
            let lot = lots.iter().find(|l| l["name"] == json!(spec.name));
            assert!(
                lot.is_some_and(|l| l["slots"] == json!({"start": spec.first, "end": spec.last})),
                "lot {} is not configured as the chaos expects: {lots:?}",
                spec.name
            );
        }
        let mut events = Wire::connect(&engine.socket);
        events
            .write(b"{\"id\":\"sub\",\"cmd\":\"subscribe\"}\n")
            .expect("subscribe");
        let reply = events
            .line(REPLY_TIMEOUT)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(
            serde_json::from_slice::<Value>(&reply).ok(),
            Some(json!({"id": "sub", "ok": true, "subscribed": true})),
            "subscribe reply {}",
            shown(&reply)
        );
        Chaos {
            main: Wire::connect(&engine.socket),
            engine,
            events,
            events_log: EventLog::default(),
            main_subscribed: false,
            main_log: EventLog::default(),
            peeked: None,
            phones: (0..PHONES).map(|_| Phone::new()).collect(),
            wav: wav.to_str().expect("UTF-8 temp path").to_owned(),
            rng: Rng::new(seed),
            model: Model::default(),
            free_before,
            next_id: 0,
            next_name: 0,
            history: VecDeque::new(),
            problems: Vec::new(),
            outcomes: BTreeMap::new(),
            lost: 0,
            lines: 0,
            mutated: 0,
            datagrams_sent: 0,
            datagrams_heard: 0,
            seq: 0,
        }
    }

    /// A request id never used before.
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A name never used before, starting with `prefix`.
    fn fresh(&mut self, prefix: &str) -> String {
        self.next_name += 1;
        format!("{prefix}{}", self.next_name)
    }

    /// Notes a problem (clipped: names may be 60 KiB long).
    fn problem(&mut self, what: String) {
        let what = clip(&what);
        self.history.push_back(format!("PROBLEM: {what}"));
        self.problems.push(what);
    }

    /// Keeps the last few hundred lines of history.
    fn log(&mut self, entry: String) {
        if self.history.len() >= 5000 {
            self.history.pop_front();
        }
        self.history.push_back(entry);
    }

    // -- choosing things ----------------------------------------------------

    /// A leg of the model, preferring unparked ones (`None` if there is none).
    fn pick_leg(&mut self) -> Option<String> {
        let now = Instant::now();
        let legs: Vec<&String> = self.model.legs.keys().collect();
        if legs.is_empty() {
            return None;
        }
        let free: Vec<&String> = legs
            .iter()
            .copied()
            .filter(|l| self.model.park_state(l, now) == Parked::No)
            .collect();
        let pool = if free.is_empty() || self.rng.percent(12) {
            &legs
        } else {
            &free
        };
        Some(pool[self.rng.below(pool.len())].clone())
    }

    /// A parked leg of the model, if any.
    fn pick_parked(&mut self) -> Option<String> {
        let parked: Vec<String> = self.model.parked.keys().cloned().collect();
        (!parked.is_empty()).then(|| self.rng.pick(&parked))
    }

    /// A remote address: mostly a phone's, sometimes one that goes nowhere.
    fn remote(&mut self) -> String {
        match self.rng.below(20) {
            0 => "192.0.2.10:30000".into(),
            1 => "127.0.0.1:9".into(),
            2 => "[::1]:9".into(),
            3 => "0.0.0.0:9".into(),
            _ => {
                let i = self.rng.below(PHONES);
                self.phones[i].addr().to_string()
            }
        }
    }

    /// A codec list in preference order.
    fn codecs(&mut self) -> Value {
        let all = [
            json!({"pt": 0, "name": "PCMU", "rate": 8000}),
            json!({"pt": 8, "name": "PCMA", "rate": 8000}),
            json!({"pt": 9, "name": "G722", "rate": 8000}),
            json!({"pt": 111, "name": "opus", "rate": 48000, "channels": 2}),
            json!({"pt": 96, "name": "AMR", "rate": 8000, "fmtp": "octet-align=1"}),
            json!({"pt": 101, "name": "telephone-event", "rate": 8000}),
        ];
        let mut list: Vec<Value> = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let c = self.rng.pick(&all);
            if !list.contains(&c) {
                list.push(c);
            }
        }
        if self.rng.percent(60) && !list.contains(&all[5]) {
            list.push(all[5].clone());
        }
        Value::Array(list)
    }

    /// A lot name for park and retrieve: absent (the default lot) or named.
    fn lot(&mut self, req: &mut Value) -> &'static LotSpec {
        match self.rng.below(10) {
            0..=3 => &LOTS[0],
            4..=6 => {
                req["lot"] = json!("default");
                &LOTS[0]
            }
            _ => {
                req["lot"] = json!("tiny");
                &LOTS[1]
            }
        }
    }

    // -- building requests --------------------------------------------------

    /// A `create_leg` in a new call or one of the pool's.
    fn create_leg(&mut self, id: u64) -> Value {
        let roomy: Vec<String> = self
            .model
            .calls
            .iter()
            .filter(|(_, legs)| legs.len() < 3)
            .map(|(c, _)| c.clone())
            .collect();
        let call = if roomy.is_empty() || self.rng.percent(30) {
            self.fresh("call-")
        } else {
            self.rng.pick(&roomy)
        };
        let mut req = json!({"id": id, "cmd": "create_leg", "call": call});
        if self.rng.percent(85) {
            req["leg"] = json!(self.fresh(&format!("{call}/leg-")));
        }
        if self.rng.percent(90) {
            req["remote"] = json!(self.remote());
        }
        if self.rng.percent(10) {
            let i = self.rng.below(PHONES);
            req["remote_rtcp"] = json!(self.phones[i].rtcp.addr().to_string());
        }
        for (key, p) in [
            ("rtcp_mux", 15),
            ("trust_address", 20),
            ("silent", 10),
            ("ssrc_per_source", 20),
        ] {
            if self.rng.percent(p) {
                req[key] = json!(self.rng.percent(70));
            }
        }
        if self.rng.percent(60) {
            req["codecs"] = self.codecs();
        }
        if self.rng.percent(15) {
            req["media_timeout"] = json!(1 + self.rng.below(3));
        }
        if self.rng.percent(30) {
            req["ptime"] = json!(self.rng.pick(&[10, 20, 30, 40]));
        }
        req
    }

    /// A valid request on the model's calls and legs.
    fn valid(&mut self) -> Value {
        let id = self.id();
        let mut cmd = self.rng.weighted(VALID_COMMANDS);
        if self.model.legs.len() >= 40 && cmd == "create_leg" {
            cmd = "delete_call";
        }
        let needs_leg = !matches!(
            cmd,
            "create_leg" | "list_calls" | "stats" | "list_parked" | "list_lots" | "list_media"
        ) && cmd != "ping";
        let leg = match self.pick_leg() {
            Some(leg) => leg,
            None if needs_leg => return self.create_leg(id),
            None => String::new(),
        };
        let call = self.model.legs.get(&leg).map(|l| l.call.clone());
        let mut req = json!({"id": id, "cmd": cmd});
        match cmd {
            "create_leg" => return self.create_leg(id),
            "delete_call" | "query_call" => req["call"] = json!(call),
            "bridge" => {
                let legs: Vec<String> = self
                    .model
                    .legs
                    .keys()
                    .filter(|l| **l != leg)
                    .cloned()
                    .collect();
                if legs.is_empty() {
                    return self.create_leg(id);
                }
                let other = self.rng.pick(&legs);
                req["a"] = json!(leg);
                req["b"] = json!(other);
            }
            "hold" => {
                req["leg"] = json!(leg);
                if self.rng.percent(50) {
                    req["class"] = json!(self.rng.pick(&["default", "calm", "no-such-class"]));
                }
                if self.rng.percent(40) {
                    req["peer_hears"] = json!(self.rng.pick(&["nothing", "silence"]));
                }
            }
            "play" => {
                req["leg"] = json!(leg);
                req["announcement"] = json!(self.rng.pick(ANNOUNCEMENTS));
                if self.rng.percent(60) {
                    req["then"] = json!(self.rng.pick(&["live", "moh", "nothing"]));
                }
                if self.rng.percent(30) {
                    req["class"] = json!(self.rng.pick(CLASSES));
                }
            }
            "play_media" => {
                req["leg"] = json!(leg);
                if self.rng.percent(70) {
                    let media = if self.rng.percent(50) {
                        self.rng.pick(CLASSES)
                    } else {
                        self.rng.pick(ANNOUNCEMENTS)
                    };
                    req["media"] = json!(media);
                } else {
                    req["file"] = json!(self.wav);
                }
                if self.rng.percent(50) {
                    req["repeat"] = json!(self.rng.pick(&[1, 2, 3, -1, 1000]));
                }
                if self.rng.percent(30) {
                    req["start_ms"] = json!(self.rng.pick(&[0u64, 100, 5000, 1_000_000_000]));
                }
                if self.rng.percent(30) {
                    req["hold"] = json!(self.rng.percent(50));
                }
            }
            "park" => {
                req["leg"] = json!(leg);
                let lot = self.lot(&mut req);
                if self.rng.percent(40) {
                    let n = lot.last - lot.first + 1;
                    req["slot"] = json!(lot.first + self.rng.below(n as usize) as u32);
                }
                if self.rng.percent(30) {
                    let parker = match self.pick_leg() {
                        Some(p) if self.rng.percent(60) => p,
                        _ => "ext-201".to_owned(),
                    };
                    req["parker"] = json!(parker);
                }
            }
            "retrieve" => {
                req["leg"] = json!(leg);
                let lot = self.lot(&mut req);
                if self.rng.percent(50) {
                    let slots: Vec<u32> = self
                        .model
                        .parked
                        .values()
                        .filter(|p| p.lot == lot.name)
                        .map(|p| p.slot)
                        .collect();
                    let slot = if slots.is_empty() || self.rng.percent(20) {
                        lot.first + self.rng.below((lot.last - lot.first + 1) as usize) as u32
                    } else {
                        self.rng.pick(&slots)
                    };
                    req["slot"] = json!(slot);
                }
            }
            "update_leg" => {
                req["leg"] = json!(leg);
                if self.rng.percent(50) {
                    req["remote"] = json!(self.remote());
                }
                if self.rng.percent(10) {
                    let i = self.rng.below(PHONES);
                    req["remote_rtcp"] = json!(self.phones[i].rtcp.addr().to_string());
                }
                if self.rng.percent(30) {
                    req["codecs"] = if self.rng.percent(20) {
                        json!([])
                    } else {
                        self.codecs()
                    };
                }
                for key in ["rtcp_mux", "silent"] {
                    if self.rng.percent(20) {
                        req[key] = json!(self.rng.percent(50));
                    }
                }
                if self.rng.percent(20) {
                    req["ptime"] = json!(self.rng.pick(&[10, 20, 30, 40]));
                }
            }
            "list_calls" | "stats" | "list_parked" | "list_lots" | "list_media" | "ping" => {}
            _ => req["leg"] = json!(leg),
        }
        req
    }

    /// A string no one should send as a name (or the marker of invalid UTF-8).
    fn weird_string(&mut self) -> String {
        match self.rng.below(14) {
            0 => String::new(),
            1 => "x".repeat(LONG),
            2 => "\u{1f3b5} \u{fc}n\u{ef}c\u{f6}d\u{e9}".into(),
            3 => "nul\0inside\r\nand\ttabs".into(),
            4 => "../../../../etc/passwd".into(),
            5 => " ".into(),
            6 => self.fresh("ghost-"),
            7 => "DEFAULT".into(),
            8 => "192.0.2.1".into(),
            9 => "1.2.3.4:0".into(),
            10 => "[::1]:65536".into(),
            11 => invalid_marker(3),
            12 => invalid_marker(25_000),
            _ => match self.pick_parked().or_else(|| self.pick_leg()) {
                Some(l) => l,
                None => "nobody".into(),
            },
        }
    }

    /// A JSON value of a random kind (`depth` limits nesting).
    fn random_value(&mut self, depth: usize) -> Value {
        let kinds = if depth >= 3 { 5 } else { 7 };
        match self.rng.below(kinds) {
            0 => Value::Null,
            1 => json!(self.rng.percent(50)),
            2 => self.extreme_number(),
            3 => json!(self.weird_string()),
            4 => json!(self.rng.pick(&["701", "30", "true", "1", "-1"])),
            5 => Value::Array(
                (0..self.rng.below(4))
                    .map(|_| self.random_value(depth + 1))
                    .collect(),
            ),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.rng.below(4) {
                    let k = self.rng.pick(&["pt", "name", "rate", "", "leg", "x"]);
                    let v = self.random_value(depth + 1);
                    m.insert(k.to_owned(), v);
                }
                Value::Object(m)
            }
        }
    }

    /// A number at the edges.
    fn extreme_number(&mut self) -> Value {
        match self.rng.below(16) {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(u32::MAX),
            3 => json!(u64::from(u32::MAX) + 1),
            4 => json!(i64::MIN),
            5 => json!(u64::MAX),
            6 => json!(1.5),
            7 => json!(30.0),
            8 => json!(-1e300),
            9 => json!(700),
            10 => json!(721),
            11 => json!(65_536),
            12 => json!(127),
            13 => json!(128),
            14 => json!(-2),
            _ => json!(1_000_000_000_000u64),
        }
    }

    /// An id of any JSON type, or none.
    fn random_id(&mut self) -> Option<Value> {
        Some(match self.rng.below(16) {
            0 => return None,
            1 => Value::Null,
            2 => json!(self.id()),
            3 => json!(-(self.id() as i64)),
            4 => json!(u64::MAX),
            5 => json!(i64::MIN),
            6 => json!(0.25 + self.id() as f64),
            7 => json!(-1.5e300),
            8 => json!(format!("q-{}", self.id())),
            9 => json!(""),
            10 => json!(format!("\u{e9}\u{1f3b5}\"\\/{}", self.id())),
            11 => json!(self.rng.percent(50)),
            12 => json!([self.id(), "a", null, {"k": [1.5, false]}]),
            13 => json!({"n": self.id(), "z": {"y": [true]}, "a": null}),
            14 => (0..100).fold(json!(self.id()), |v, _| json!([v])),
            _ => json!("i".repeat(1000 + self.rng.below(2000))),
        })
    }

    /// Applies one structural mutation to a request object.
    fn mutate_value(&mut self, req: &mut Map<String, Value>) {
        let keys: Vec<String> = req.keys().cloned().collect();
        let key = if keys.is_empty() {
            "cmd".to_owned()
        } else {
            self.rng.pick(&keys)
        };
        match self.rng.below(14) {
            0 | 1 => {
                req.remove(&key);
            }
            2 => {
                req.insert(key, Value::Null);
            }
            3 | 4 => {
                let old = req.get(&key).cloned().unwrap_or(Value::Null);
                let new = loop {
                    let v = self.random_value(1);
                    if std::mem::discriminant(&v) != std::mem::discriminant(&old) {
                        break v;
                    }
                };
                req.insert(key, new);
            }
            5 => {
                let extra = self.rng.pick(&["future_field", "x", "", "cmd2", "ID"]);
                let v = self.random_value(0);
                req.insert(extra.to_owned(), v);
            }
            6 => {
                let k = self.rng.pick(NUMBER_KEYS);
                let v = if self.rng.percent(80) {
                    self.extreme_number()
                } else {
                    json!(self.rng.pick(&["701", "20", "-1", ""]))
                };
                req.insert(k.to_owned(), v);
            }
            7 | 8 => {
                let k = self.rng.pick(STRING_KEYS);
                let v = self.weird_string();
                req.insert(k.to_owned(), json!(v));
            }
            9 => {
                let any = self.rng.pick(COMMANDS);
                let cmd = self.rng.pick(&[
                    json!("PING"),
                    json!("unpark"),
                    json!("park "),
                    json!(""),
                    json!("frobnicate"),
                    json!(7),
                    json!(["ping"]),
                    json!(null),
                    json!(any),
                ]);
                req.insert("cmd".into(), cmd);
            }
            10 => match self.random_id() {
                Some(id) => {
                    req.insert("id".into(), id);
                }
                None => {
                    req.remove("id");
                }
            },
            11 => {
                let codecs = match self.rng.below(6) {
                    0 => json!([{"pt": 128, "name": "PCMU", "rate": 8000}]),
                    1 => json!([{"pt": 0, "name": "", "rate": 8000}]),
                    2 => json!([{"pt": 0, "name": "PCMU", "rate": 0, "channels": 0}]),
                    3 => json!([{"pt": 0, "name": "PCMU", "rate": 8000, "channels": 256}, 5]),
                    4 => Value::Array(
                        (0..300)
                            .map(|i| json!({"pt": i % 128, "name": "X", "rate": 1}))
                            .collect(),
                    ),
                    _ => json!({"pt": 0}),
                };
                req.insert("codecs".into(), codecs);
            }
            12 => {
                // Files that are missing, not regular or not audio.
                let file = self.rng.pick(&[
                    "/etc/passwd",
                    "/nonexistent.wav",
                    "/",
                    "/dev/null",
                    "relative.wav",
                ]);
                req.remove("media");
                req.insert("file".into(), json!(file));
            }
            _ => {
                let k = self.rng.pick(BOOL_KEYS);
                let v = self
                    .rng
                    .pick(&[json!(1), json!("true"), json!(0), json!([])]);
                req.insert(k.to_owned(), v);
            }
        }
    }

    /// Applies one byte-level mutation to an encoded request line.
    fn mutate_bytes(&mut self, line: &mut Vec<u8>) {
        match self.rng.below(8) {
            0 => {
                let cut = 1 + self.rng.below(line.len().max(1));
                line.truncate(cut);
            }
            1 => {
                for _ in 0..1 + self.rng.below(3) {
                    if !line.is_empty() {
                        let at = self.rng.below(line.len());
                        line[at] ^= 1 << self.rng.below(8);
                    }
                }
            }
            2 => {
                // Invalid UTF-8 inside a string value: right after a `":"`.
                let at: Vec<usize> = line
                    .windows(3)
                    .enumerate()
                    .filter(|(_, w)| w == b"\":\"")
                    .map(|(i, _)| i + 3)
                    .collect();
                let bytes = self.rng.pick(&[
                    &[0xffu8][..],
                    &[0xc3, 0x28],
                    &[0x80, 0x80],
                    &[0xed, 0xa0, 0x80],
                    &[0xf8, 0x88, 0x80, 0x80, 0x80],
                ]);
                let pos = if at.is_empty() {
                    self.rng.below(line.len() + 1)
                } else {
                    self.rng.pick(&at)
                };
                line.splice(pos..pos, bytes.iter().copied());
            }
            3 => {
                let tail =
                    self.rng
                        .pick(&[&b"}"[..], b",", b" x", b"{\"cmd\":\"ping\"}", b"\r", b"\t "]);
                line.extend_from_slice(tail);
            }
            4 => {
                let head = self
                    .rng
                    .pick(&[&b"   "[..], b"\xef\xbb\xbf", b"\t", b"\x00"]);
                line.splice(0..0, head.iter().copied());
            }
            5 => {
                // A duplicated key: the engine reads the last one.
                if line.ends_with(b"}") {
                    line.pop();
                    let dup = self.rng.pick(&[
                        &b",\"leg\":\"ghost\"}"[..],
                        b",\"cmd\":\"ping\"}",
                        b",\"id\":\"second\"}",
                        b",\"slot\":0}",
                    ]);
                    line.extend_from_slice(dup);
                }
            }
            6 => {
                let n = 200 + self.rng.below(100);
                *line = [b"[".repeat(n), b"]".repeat(n)].concat();
            }
            _ => {
                *line = self
                    .rng
                    .pick(&[
                        &b"[1]"[..],
                        b"\"ping\"",
                        b"42",
                        b"null",
                        b"{}",
                        b"{\"id\":5}",
                        b"{\"cmd\":\"ping\",}",
                        b"{'cmd':'ping'}",
                        b"{\"cmd\":\"ping\"",
                        b"\xff\xfe{\"cmd\":\"ping\"}",
                        b"{\"id\":1e400,\"cmd\":\"ping\"}",
                        b"NaN",
                    ])
                    .to_vec();
            }
        }
        // A raw newline would split the line in two: the test sends one line.
        for b in line.iter_mut() {
            if *b == b'\n' {
                *b = b'x';
            }
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            line.push(b'{');
        }
    }

    /// One request line: valid, or mutated.
    fn request_line(&mut self) -> Line {
        let mut req = self.valid();
        if !self.rng.percent(MUTATED_PERCENT) {
            // Any JSON value may be an id, or none at all.
            if self.rng.percent(10) {
                match self.random_id() {
                    Some(id) => req["id"] = id,
                    None => {
                        if let Some(m) = req.as_object_mut() {
                            m.remove("id");
                        }
                    }
                }
            }
            return Line::json(&req, true);
        }
        self.mutated += 1;
        let Value::Object(mut map) = req else {
            unreachable!("requests are objects")
        };
        for _ in 0..1 + self.rng.below(3) {
            self.mutate_value(&mut map);
        }
        let mut bytes = expand_invalid(Value::Object(map).to_string().into_bytes());
        if self.rng.percent(25) {
            self.mutate_bytes(&mut bytes);
        }
        Line {
            bytes,
            pristine: false,
            blank: false,
        }
    }

    // -- sending and checking ----------------------------------------------

    /// Sends `lines` (pipelined, maybe split over several writes) and checks
    /// each reply in order.
    fn exchange(&mut self, lines: Vec<Line>) {
        let mut wire = Vec::new();
        for l in &lines {
            wire.extend_from_slice(&l.bytes);
            // CRLF only well within the limit: whether `\r` counts is not documented.
            let crlf = l.bytes.len() < MAX_LINE - 1 && self.rng.percent(10);
            wire.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let written = if wire.len() > 8 && self.rng.percent(5) {
            // In pieces: the engine must join a line across reads.
            let cut = 1 + self.rng.below(wire.len() - 1);
            self.main.write(&wire[..cut]).and_then(|()| {
                std::thread::sleep(Duration::from_millis(2));
                self.main.write(&wire[cut..])
            })
        } else {
            self.main.write(&wire)
        };
        if let Err(e) = written {
            self.problem(format!("cannot write to rtpark: {e}"));
            self.reconnect();
            return;
        }
        for line in &lines {
            self.lines += 1;
            let raw = match self.next_reply() {
                Ok(raw) => raw,
                Err(why) => {
                    self.problem(format!("request {}: {why}", shown(&line.bytes)));
                    self.lost += 1;
                    let running = self.engine.is_running();
                    assert!(
                        running,
                        "rtpark died; problems so far:\n{}\nstderr:\n{}",
                        self.problems.join("\n"),
                        self.engine.stderr()
                    );
                    self.reconnect();
                    return;
                }
            };
            if line.blank {
                // The docs skip blank lines; the engine answers bad_request.
                // Either is fine, as long as it is one line at most.
                let is_blank_reply = serde_json::from_slice::<Value>(&raw).is_ok_and(|v| {
                    v.get("id").is_none() && v["error"]["code"] == json!("bad_request")
                });
                self.log(format!("(blank) -> {}", shown(&raw)));
                if !is_blank_reply {
                    self.peeked = Some(raw);
                }
                continue;
            }
            self.check(line, &raw);
        }
    }

    /// The next reply line on `main`, with the events in between checked.
    fn next_reply(&mut self) -> Result<Vec<u8>, String> {
        if let Some(raw) = self.peeked.take() {
            return Ok(raw);
        }
        loop {
            let raw = self
                .main
                .line(REPLY_TIMEOUT)?
                .ok_or(format!("no reply within {REPLY_TIMEOUT:?}"))?;
            if as_event(&raw).is_none() {
                return Ok(raw);
            }
            if !self.main_subscribed {
                self.problem(format!(
                    "event on a connection that did not subscribe: {}",
                    shown(&raw)
                ));
                continue;
            }
            if let Err(why) = self.main_log.check(&raw, &self.model) {
                self.problem(format!("main event stream: {why}: {}", shown(&raw)));
            }
        }
    }

    /// A new main connection after a lost reply (the old one is out of step).
    fn reconnect(&mut self) {
        self.main = Wire::connect(&self.engine.socket);
        self.main_subscribed = false;
        self.main_log = EventLog::default();
        self.peeked = None;
    }

    /// Checks the reply to one line and brings the model up to date.
    fn check(&mut self, line: &Line, raw: &[u8]) {
        self.log(format!("{} -> {}", shown(&line.bytes), shown(raw)));
        let view = engine_view(&line.bytes);
        let id = match &view {
            View::Object(m) => m.get("id").cloned(),
            _ => None,
        };
        let reply = match reply_shape(raw, id.as_ref()) {
            Ok(reply) => reply,
            Err(why) => {
                self.problem(format!(
                    "request {}: {why}: reply {}",
                    shown(&line.bytes),
                    shown(raw)
                ));
                return;
            }
        };
        let got = outcome(&reply).to_owned();
        let (expect, cmd) = match &view {
            View::TooLong | View::Broken => (Expect::Is("bad_request"), "(not an object)"),
            View::Object(req) => match req.get("cmd") {
                None | Some(Value::Null) => (Expect::Is("missing_field"), "(no cmd)"),
                Some(Value::String(c)) => match COMMANDS.iter().find(|k| **k == c.as_str()) {
                    None => (Expect::Is("unknown_command"), "(unknown cmd)"),
                    Some(c) if line.pristine => (self.expect(c, req), *c),
                    Some(c) => (Expect::Any, *c),
                },
                Some(_) => (Expect::Is("bad_request"), "(cmd not a string)"),
            },
        };
        *self
            .outcomes
            .entry(cmd.to_owned())
            .or_default()
            .entry(got.clone())
            .or_default() += 1;
        if !expect.allows(&got) {
            self.problem(format!(
                "request {}: expected {expect:?}, got {}",
                shown(&line.bytes),
                shown(raw)
            ));
        }
        if got == "internal" {
            self.problem(format!(
                "request {}: internal error {}",
                shown(&line.bytes),
                shown(raw)
            ));
        }
        if let View::Object(req) = &view {
            if COMMANDS.contains(&cmd) {
                self.cross_check(cmd, req, &reply, &got, &line.bytes);
            }
        }
    }

    /// The reply a valid request must get in the model's state.
    fn expect(&self, cmd: &str, req: &Map<String, Value>) -> Expect {
        let now = Instant::now();
        let m = &self.model;
        let leg = field(req, "leg").unwrap_or_default();
        let known = |l: &str| m.legs.contains_key(l);
        let parked = |l: &str| m.park_state(l, now);
        // Commands refused on a parked leg, and allowed otherwise.
        let media = |l: &str| match parked(l) {
            _ if !known(l) => Expect::Is("unknown_leg"),
            Parked::Yes => Expect::Is("invalid_state"),
            Parked::Maybe => Expect::OneOf(vec!["ok", "invalid_state"]),
            Parked::No => Expect::Is("ok"),
        };
        match cmd {
            "create_leg" => {
                if field(req, "leg").is_some_and(known) {
                    Expect::Is("leg_exists")
                } else if m.legs.len() >= usize::from(PORT_PAIRS) {
                    Expect::Is("ports_exhausted")
                } else {
                    Expect::Is("ok")
                }
            }
            "delete_call" | "query_call" => {
                if m.calls.contains_key(field(req, "call").unwrap_or_default()) {
                    Expect::Is("ok")
                } else {
                    Expect::Is("unknown_call")
                }
            }
            "update_leg" | "unbridge" | "delete_leg" | "block_media" | "unblock_media"
            | "silence_media" | "unsilence_media" => {
                if known(leg) {
                    Expect::Is("ok")
                } else {
                    Expect::Is("unknown_leg")
                }
            }
            "hold" | "unhold" | "stop_play" | "play" | "play_media" | "stop_media" => media(leg),
            "bridge" => {
                let pair = [
                    field(req, "a").unwrap_or_default(),
                    field(req, "b").unwrap_or_default(),
                ];
                // The engine refuses a parked leg before it looks for the other.
                let states: Vec<Parked> = pair.iter().map(|l| parked(l)).collect();
                let unknown = pair.iter().any(|l| !known(l));
                let maybe = states.contains(&Parked::Maybe);
                match (states.contains(&Parked::Yes), unknown, maybe) {
                    (true, _, _) => Expect::Is("invalid_state"),
                    (false, true, false) => Expect::Is("unknown_leg"),
                    (false, true, true) => Expect::OneOf(vec!["unknown_leg", "invalid_state"]),
                    (false, false, false) => Expect::Is("ok"),
                    (false, false, true) => Expect::OneOf(vec!["ok", "invalid_state"]),
                }
            }
            "park" => {
                let lot = lot_spec(field(req, "lot").unwrap_or("default")).unwrap_or(&LOTS[0]);
                if !known(leg) {
                    return Expect::Is("unknown_leg");
                }
                match parked(leg) {
                    Parked::Yes => return Expect::Is("invalid_state"),
                    Parked::Maybe => {
                        return Expect::OneOf(vec!["ok", "invalid_state", "slot_taken", "lot_full"])
                    }
                    Parked::No => {}
                }
                let there = m.parked_in(lot.name, slot_of(req), now);
                let size = (lot.last - lot.first + 1) as usize;
                let certain = there.iter().filter(|p| **p == Parked::Yes).count();
                match slot_of(req) {
                    Some(_) if certain > 0 => Expect::Is("slot_taken"),
                    Some(_) if there.is_empty() => Expect::Is("ok"),
                    Some(_) => Expect::OneOf(vec!["ok", "slot_taken"]),
                    None if certain >= size => Expect::Is("lot_full"),
                    None if there.len() < size => Expect::Is("ok"),
                    None => Expect::OneOf(vec!["ok", "lot_full"]),
                }
            }
            "retrieve" => {
                let lot = lot_spec(field(req, "lot").unwrap_or("default")).unwrap_or(&LOTS[0]);
                if !known(leg) {
                    return Expect::Is("unknown_leg");
                }
                match parked(leg) {
                    Parked::Yes => return Expect::Is("invalid_state"),
                    Parked::Maybe => {
                        return Expect::OneOf(vec!["ok", "invalid_state", "slot_empty"])
                    }
                    Parked::No => {}
                }
                let there = m.parked_in(lot.name, slot_of(req), now);
                if there.is_empty() {
                    Expect::Is("slot_empty")
                } else if there.contains(&Parked::Yes) {
                    Expect::Is("ok")
                } else {
                    Expect::OneOf(vec!["ok", "slot_empty"])
                }
            }
            _ => Expect::Is("ok"),
        }
    }

    /// Checks a reply against the request and the model, whatever the request
    /// was, then applies a success to the model.
    fn cross_check(
        &mut self,
        cmd: &str,
        req: &Map<String, Value>,
        reply: &Value,
        got: &str,
        line: &[u8],
    ) {
        let mut why: Vec<String> = Vec::new();
        // The leg names the command reads (others are unknown fields it ignores).
        let keys: &[&str] = match cmd {
            "bridge" => &["a", "b"],
            "ping" | "create_leg" | "delete_call" | "query_call" | "list_calls" | "stats"
            | "subscribe" | "list_media" | "list_parked" | "list_lots" => &[],
            _ => &["leg"],
        };
        let names: Vec<&str> = keys.iter().filter_map(|k| field(req, k)).collect();
        let m = &self.model;
        match got {
            "unknown_leg"
                if cmd != "create_leg" && names.iter().all(|n| m.legs.contains_key(*n)) =>
            {
                why.push(format!("unknown_leg, yet the test created {names:?}"));
            }
            "unknown_call" if m.calls.contains_key(field(req, "call").unwrap_or_default()) => {
                why.push("unknown_call for a call the test created".into());
            }
            "leg_exists" if !m.legs.contains_key(field(req, "leg").unwrap_or_default()) => {
                why.push("leg_exists for a leg that does not exist".into());
            }
            "ports_exhausted" if m.legs.len() < usize::from(PORT_PAIRS) => why.push(format!(
                "ports_exhausted with {} legs on {PORT_PAIRS} pairs",
                m.legs.len()
            )),
            "unknown_lot" if lot_spec(field(req, "lot").unwrap_or("default")).is_some() => {
                why.push("unknown_lot for a configured lot".into());
            }
            "ok" => {
                if let Some(n) = names.iter().find(|n| !m.legs.contains_key(**n)) {
                    why.push(format!("ok, yet leg {n:?} does not exist"));
                }
                if matches!(cmd, "delete_call" | "query_call")
                    && !m.calls.contains_key(field(req, "call").unwrap_or_default())
                {
                    why.push("ok, yet the call does not exist".into());
                }
            }
            _ => {}
        }
        if got == "ok" {
            why.extend(self.apply(cmd, req, reply));
        }
        for w in why {
            self.problem(format!("request {}: {w}: reply {reply}", shown(line)));
        }
    }

    /// Applies a successful command to the model; returns what disagrees with it.
    fn apply(&mut self, cmd: &str, req: &Map<String, Value>, reply: &Value) -> Vec<String> {
        let now = Instant::now();
        let mut why = Vec::new();
        let leg = field(req, "leg").unwrap_or_default().to_owned();
        match cmd {
            "ping" if reply["pong"] != json!("pong") => why.push("ping without pong".into()),
            "create_leg" => {
                let (Some(call), Some(name), Some(port), Some(rtcp)) = (
                    reply["call"].as_str(),
                    reply["leg"].as_str(),
                    reply["rtp_port"].as_u64(),
                    reply["rtcp_port"].as_u64(),
                ) else {
                    why.push("create_leg reply without call, leg or ports".into());
                    return why;
                };
                let port = u16::try_from(port).unwrap_or(0);
                let (lo, hi) = (self.engine.port_min, self.engine.port_max);
                if !(lo..=hi).contains(&port) || port % 2 != 0 || rtcp != u64::from(port) + 1 {
                    why.push(format!(
                        "ports {port}/{rtcp} outside {lo}–{hi} or not a pair"
                    ));
                }
                if reply["ip"].as_str().is_none() {
                    why.push("create_leg reply without ip".into());
                }
                if Some(call) != field(req, "call") || field(req, "leg").is_some_and(|l| l != name)
                {
                    why.push("create_leg reply names another call or leg".into());
                }
                if self.model.legs.contains_key(name) {
                    why.push(format!("created leg {name:?} twice"));
                }
                if let Some((other, _)) = self.model.legs.iter().find(|(_, l)| l.port == port) {
                    why.push(format!(
                        "port {port} handed out again; leg {other:?} holds it"
                    ));
                }
                let timeout = req
                    .get("media_timeout")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_MEDIA_TIMEOUT, |t| t.max(1));
                self.model.add_leg(call, name, port, timeout);
            }
            "delete_leg" => self.model.remove_leg(&leg),
            "delete_call" => self
                .model
                .remove_call(field(req, "call").unwrap_or_default()),
            "park" => {
                self.model.promise("parked");
                let lot = reply["lot"].as_str().unwrap_or_default().to_owned();
                let slot = reply["slot"].as_u64().unwrap_or(0);
                let wanted = field(req, "lot").unwrap_or("default");
                let in_range = lot_spec(&lot)
                    .is_some_and(|l| (u64::from(l.first)..=u64::from(l.last)).contains(&slot));
                if lot != wanted || !in_range || slot_of(req).is_some_and(|s| u64::from(s) != slot)
                {
                    why.push(format!("parked in lot {lot:?} slot {slot}"));
                }
                let taken = self
                    .model
                    .parked
                    .iter()
                    .find(|(_, p)| p.lot == lot && u64::from(p.slot) == slot)
                    .map(|(l, _)| l.clone());
                if let Some(other) = taken {
                    if self.model.park_state(&other, now) == Parked::Yes {
                        why.push(format!("slot {slot} given while {other:?} is parked there"));
                    }
                    self.model.parked.remove(&other);
                }
                let slot = u32::try_from(slot).unwrap_or(0);
                self.model.parked.insert(
                    leg,
                    ParkState {
                        lot,
                        slot,
                        since: now,
                    },
                );
            }
            "retrieve" => {
                self.model.promise("retrieved");
                let parked_leg = reply["parked_leg"].as_str().unwrap_or_default();
                let lot = reply["lot"].as_str().unwrap_or_default();
                let slot = reply["slot"].as_u64().unwrap_or(0);
                match self.model.parked.get(parked_leg) {
                    Some(p) if p.lot == lot && u64::from(p.slot) == slot => {}
                    _ => why.push(format!(
                        "retrieved {parked_leg:?} from {lot} {slot}, which the test did not park there"
                    )),
                }
                let call = self.model.legs.get(parked_leg).map(|l| l.call.as_str());
                if reply["call"].as_str() != call {
                    why.push("retrieve reply names another call".into());
                }
                if field(req, "lot").is_some_and(|l| l != lot)
                    || slot_of(req).is_some_and(|s| u64::from(s) != slot)
                {
                    why.push("retrieved from another lot or slot than asked".into());
                }
                self.model.parked.remove(parked_leg);
            }
            "play_media" if reply["duration_ms"].as_u64().is_none_or(|d| d == 0) => {
                why.push("play_media without a duration".into());
            }
            "query_call" => {
                let legs = legs_of(reply);
                let want = self
                    .model
                    .calls
                    .get(field(req, "call").unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                if legs.keys().cloned().collect::<BTreeSet<_>>() != want {
                    why.push(format!(
                        "query_call shows legs {:?}, the test has {want:?}",
                        legs.keys()
                    ));
                }
            }
            "list_calls" => why.extend(self.check_calls(reply)),
            "stats" => {
                let legs = self.model.legs.len() as i64;
                let want = json!({
                    "calls": self.model.calls.len(),
                    "legs": legs,
                    "free_port_pairs": self.free_before as i64 - legs,
                });
                let got = json!({
                    "calls": reply["calls"],
                    "legs": reply["legs"],
                    "free_port_pairs": reply["free_port_pairs"],
                });
                if got != want {
                    why.push(format!("stats show {got}, the test expects {want}"));
                }
            }
            "list_parked" => why.extend(self.check_parked(reply)),
            "list_lots" => why.extend(self.check_lots(reply)),
            "subscribe" => {
                self.main_subscribed = true;
                self.main_log = EventLog {
                    late: true,
                    ..EventLog::default()
                };
            }
            _ => {}
        }
        why
    }

    /// Compares a `list_calls` reply with the model: the same calls and legs,
    /// the same ports, peers in pairs, parked legs without one.
    fn check_calls(&self, reply: &Value) -> Vec<String> {
        let mut why = Vec::new();
        let Some(calls) = reply["calls"].as_array() else {
            return vec!["list_calls without calls".into()];
        };
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut peers: BTreeMap<String, Option<String>> = BTreeMap::new();
        for c in calls {
            let call = c["call"].as_str().unwrap_or_default().to_owned();
            for (leg, info) in legs_of(c) {
                if let Some(l) = self.model.legs.get(&leg) {
                    if info["rtp_port"].as_u64() != Some(u64::from(l.port)) {
                        why.push(format!("leg {leg:?} moved to port {}", info["rtp_port"]));
                    }
                }
                let state = info["state"].as_str().unwrap_or_default();
                if !["live", "idle", "held", "playing", "silent"].contains(&state) {
                    why.push(format!("leg {leg:?} in undocumented state {state:?}"));
                }
                peers.insert(leg.clone(), info["peer"].as_str().map(str::to_owned));
                seen.entry(call.clone()).or_default().insert(leg);
            }
            seen.entry(call).or_default();
        }
        if seen != self.model.calls {
            let extra: Vec<_> = seen
                .iter()
                .filter(|(c, l)| self.model.calls.get(*c) != Some(l))
                .collect();
            let missing: Vec<_> = self
                .model
                .calls
                .iter()
                .filter(|(c, l)| seen.get(*c) != Some(l))
                .collect();
            why.push(format!(
                "list_calls differs from the model: engine has {extra:?}, test has {missing:?}"
            ));
        }
        let now = Instant::now();
        for (leg, peer) in &peers {
            let Some(peer) = peer else { continue };
            if peers.get(peer) != Some(&Some(leg.clone())) {
                why.push(format!(
                    "leg {leg:?} has peer {peer:?}, whose peer is {:?}",
                    peers.get(peer)
                ));
            }
            if self.model.park_state(leg, now) == Parked::Yes {
                why.push(format!("parked leg {leg:?} is bridged to {peer:?}"));
            }
        }
        why
    }

    /// Compares a `list_parked` reply with the model and takes it as the truth.
    fn check_parked(&mut self, reply: &Value) -> Vec<String> {
        let now = Instant::now();
        let mut why = Vec::new();
        let Some(list) = reply["parked"].as_array() else {
            return vec!["list_parked without parked".into()];
        };
        let mut listed = BTreeSet::new();
        let mut slots = BTreeSet::new();
        for p in list {
            let leg = p["leg"].as_str().unwrap_or_default();
            let lot = p["lot"].as_str().unwrap_or_default();
            let slot = p["slot"].as_u64().unwrap_or(0);
            if !slots.insert((lot.to_owned(), slot)) {
                why.push(format!("two legs in {lot} {slot}"));
            }
            match self.model.parked.get(leg) {
                Some(s) if s.lot == lot && u64::from(s.slot) == slot => {}
                _ => why.push(format!(
                    "list_parked shows {leg:?} in {lot} {slot}, which the test did not park there"
                )),
            }
            let call = self.model.legs.get(leg).map(|l| l.call.as_str());
            if p["call"].as_str() != call {
                why.push(format!("parked leg {leg:?} is not a leg of {}", p["call"]));
            }
            for key in ["since_secs", "time_left_secs", "release_in_secs"] {
                if !p[key].is_number() {
                    why.push(format!("list_parked entry without {key}"));
                }
            }
            if !p["timed_out"].is_boolean() {
                why.push("list_parked entry without timed_out".into());
            }
            listed.insert(leg.to_owned());
        }
        let gone: Vec<String> = self
            .model
            .parked
            .keys()
            .filter(|l| !listed.contains(*l))
            .cloned()
            .collect();
        for leg in gone {
            if self.model.park_state(&leg, now) == Parked::Yes {
                why.push(format!("leg {leg:?} left its slot before any timeout"));
            }
            self.model.parked.remove(&leg);
        }
        why
    }

    /// Checks a `list_lots` reply: the configured lots, busy and free adding up,
    /// busy within what the model allows.
    fn check_lots(&self, reply: &Value) -> Vec<String> {
        let now = Instant::now();
        let mut why = Vec::new();
        let Some(lots) = reply["lots"].as_array() else {
            return vec!["list_lots without lots".into()];
        };
        for spec in &LOTS {
            let Some(lot) = lots.iter().find(|l| l["name"] == json!(spec.name)) else {
                why.push(format!("lot {} missing", spec.name));
                continue;
            };
            let (busy, free) = (lot["busy"].as_u64(), lot["free"].as_u64());
            let size = u64::from(spec.last - spec.first + 1);
            if busy.zip(free).map(|(b, f)| b + f) != Some(size) {
                why.push(format!(
                    "lot {}: busy {busy:?} + free {free:?} ≠ {size}",
                    spec.name
                ));
            }
            let there = self.model.parked_in(spec.name, None, now);
            let certain = there.iter().filter(|p| **p == Parked::Yes).count() as u64;
            let busy = busy.unwrap_or(0);
            if busy < certain || busy > there.len() as u64 {
                why.push(format!(
                    "lot {} has {busy} busy slots; the test parked {} there ({certain} surely still)",
                    spec.name,
                    there.len()
                ));
            }
        }
        why
    }

    /// Checks every event that arrived on the subscribed connection.
    fn drain_events(&mut self) {
        loop {
            match self.events.line(Duration::from_millis(1)) {
                Ok(Some(raw)) => {
                    if let Err(why) = self.events_log.check(&raw, &self.model) {
                        self.problem(format!("event stream: {why}: {}", shown(&raw)));
                    }
                    // Releases reach the model through list_parked: an event
                    // drained late may be about an earlier parking of the leg.
                    if as_event(&raw).is_none() {
                        self.problem(format!("a non-event on the event stream: {}", shown(&raw)));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.problem(format!("event stream: {e}"));
                    return;
                }
            }
        }
    }

    // -- steps --------------------------------------------------------------

    /// One step of the chaos.
    fn step(&mut self) {
        match self.rng.below(200) {
            0..=5 => self.pipeline(),
            6 => self.flood(),
            7..=16 => self.media(),
            17..=18 => self.side_connection(),
            19 => self.boundary_lines(),
            _ => {
                let line = self.request_line();
                self.exchange(vec![line]);
            }
        }
    }

    /// Several requests in one write, blank lines among them.
    fn pipeline(&mut self) {
        let mut lines = Vec::new();
        for _ in 0..2 + self.rng.below(7) {
            lines.push(self.request_line());
            if self.rng.percent(15) {
                lines.push(Line {
                    bytes: self.rng.pick(&[&b""[..], b"   ", b"\t", b"\r"]).to_vec(),
                    pristine: false,
                    blank: true,
                });
                // A blank line is followed by a request with an id of its own.
                let ping = json!({"id": self.id(), "cmd": "ping"});
                lines.push(Line::json(&ping, true));
            }
        }
        self.exchange(lines);
    }

    /// Creates legs in one call until the ports run out, then deletes the call.
    fn flood(&mut self) {
        let call = self.fresh("flood-");
        let n = usize::from(PORT_PAIRS).saturating_sub(self.model.legs.len()) + 2;
        let mut lines = Vec::new();
        for _ in 0..n {
            let req = json!({"id": self.id(), "cmd": "create_leg", "call": call});
            lines.push(Line::json(&req, true));
        }
        self.exchange(lines);
        let del = json!({"id": self.id(), "cmd": "delete_call", "call": call});
        self.exchange(vec![Line::json(&del, true)]);
    }

    /// Phones send RTP, RTCP, DTMF or junk to a leg; then every phone's
    /// receive queue is read.
    fn media(&mut self) {
        if let Some(leg) = self.pick_leg() {
            let port = self.model.legs[&leg].port;
            let i = self.rng.below(PHONES);
            let ssrc = 0x1000_0000 + i as u32;
            let pt = self.rng.pick(&[0u8, 8]);
            let mut packets: Vec<(bool, Vec<u8>)> = Vec::new();
            for _ in 0..3 {
                self.seq = self.seq.wrapping_add(1);
                let ts = u32::from(self.seq).wrapping_mul(160);
                packets.push((true, rtp(self.seq, ts, ssrc, pt, &payload(ts, 160))));
            }
            packets.push((false, rtcp_sr(ssrc, 1 << 32, 0, 3, 480)));
            if self.rng.percent(25) {
                // RFC 4733: key 5, two updates, then three end packets.
                self.seq = self.seq.wrapping_add(1);
                let ts = u32::from(self.seq).wrapping_mul(160);
                for (k, duration) in [(0u16, 160u16), (1, 320), (2, 480), (3, 480), (4, 480)] {
                    let end = if k >= 2 { 0x80 } else { 0 };
                    let body = [5, end | 10, (duration >> 8) as u8, duration as u8];
                    let opts = RtpOpts {
                        marker: k == 0,
                        ..RtpOpts::default()
                    };
                    packets.push((
                        true,
                        rtp_with(self.seq.wrapping_add(k), ts, ssrc, 101, &body, &opts),
                    ));
                }
                self.seq = self.seq.wrapping_add(5);
            }
            if self.rng.percent(15) {
                packets.push((
                    true,
                    self.rng
                        .pick(&[vec![0x80, 0], vec![0x00; 40], vec![0x40; 12]]),
                ));
            }
            for (to_rtp, p) in packets {
                let (sock, to) = if to_rtp {
                    (&self.phones[i].rtp, port)
                } else {
                    (&self.phones[i].rtcp, port + 1)
                };
                sock.send_to_port(&p, to);
                self.datagrams_sent += 1;
            }
        }
        self.drain_phones();
    }

    /// Reads what the phones received; everything must be RTP or RTCP version 2.
    fn drain_phones(&mut self) {
        let mut bad = Vec::new();
        for phone in &self.phones {
            for ep in [&phone.rtp, &phone.rtcp] {
                while let Some((data, from)) = ep.recv_within(Duration::from_millis(1)) {
                    self.datagrams_heard += 1;
                    if data.len() < 8 || data[0] >> 6 != 2 {
                        bad.push(format!(
                            "phone {} got a datagram that is not RTP/RTCP v2 from {from}: {}",
                            ep.addr(),
                            shown(&data)
                        ));
                    }
                }
            }
        }
        for b in bad {
            self.problem(b);
        }
    }

    /// Side connections that misbehave: half a line, a request never read, a
    /// subscriber that leaves, an endless line, a leg created and left behind.
    fn side_connection(&mut self) {
        let mut side = Wire::connect(&self.engine.socket);
        match self.rng.below(5) {
            0 => {
                let _ = side.write(b"{\"id\":\"half\",\"cmd\":\"sta");
            }
            1 => {
                let _ = side.write(b"{\"cmd\":\"list_calls\"}\n{\"cmd\":\"stats\"}\n");
            }
            2 => {
                let _ = side.write(b"{\"cmd\":\"subscribe\"}\n");
                let _ = side.line(REPLY_TIMEOUT);
            }
            3 => {
                let _ = side.write(&vec![b'{'; MAX_LINE + 4096]);
            }
            _ => {
                // Legs belong to the engine, not to the connection that made them.
                let call = self.fresh("side-");
                let req = json!({"id": self.id(), "cmd": "create_leg", "call": call});
                let line = Line::json(&req, true);
                let mut bytes = line.bytes.clone();
                bytes.push(b'\n');
                let raw = side
                    .write(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|()| side.line(REPLY_TIMEOUT));
                match raw {
                    Ok(Some(raw)) => {
                        self.lines += 1;
                        self.check(&line, &raw);
                    }
                    other => self.problem(format!("side create_leg: {other:?}")),
                }
            }
        }
        drop(side);
    }

    /// Lines at the length limit: 64 KiB is read, one byte more is refused, and
    /// the connection goes on.
    fn boundary_lines(&mut self) {
        let id = self.id();
        let sized = |n: usize| {
            let head = format!("{{\"id\":{id},\"cmd\":\"ping\",\"pad\":\"");
            let pad = n - head.len() - 2;
            let mut line = head.into_bytes();
            line.extend(std::iter::repeat_n(b'p', pad));
            line.extend_from_slice(b"\"}");
            line
        };
        let n = self
            .rng
            .pick(&[MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 100 * 1024]);
        let line = Line {
            bytes: sized(n),
            pristine: true,
            blank: false,
        };
        let ping = json!({"id": self.id(), "cmd": "ping"});
        self.exchange(vec![line, Line::json(&ping, true)]);
    }

    /// Consistency: stats, list_calls, list_parked and list_lots against the
    /// model, and the event stream.
    fn checkpoint(&mut self) {
        let lines: Vec<Line> = ["ping", "stats", "list_calls", "list_parked", "list_lots"]
            .iter()
            .map(|cmd| {
                let req = json!({"id": self.id(), "cmd": cmd});
                Line::json(&req, true)
            })
            .collect();
        self.exchange(lines);
        self.drain_events();
        self.drain_phones();
    }

    /// Deletes every call the test knows (pipelined), then waits until the
    /// engine shows nothing left.
    fn delete_everything(&mut self) {
        let calls: Vec<String> = self.model.calls.keys().cloned().collect();
        let lines = calls
            .iter()
            .map(|call| {
                let req = json!({"id": self.id(), "cmd": "delete_call", "call": call});
                Line::json(&req, true)
            })
            .collect();
        self.exchange(lines);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let problems = self.problems.len();
            self.checkpoint();
            let stats = json!({"cmd": "stats"});
            let mut ctl = self.engine.control();
            let stats = ctl.ok(stats);
            let lots = ctl.list_lots();
            let clean = stats["calls"] == json!(0)
                && stats["legs"] == json!(0)
                && stats["free_port_pairs"] == json!(self.free_before)
                && ctl.ok(json!({"cmd": "list_calls"}))["calls"] == json!([])
                && ctl.list_parked().is_empty()
                && lots.iter().all(|l| l["busy"] == json!(0));
            if clean && self.problems.len() == problems {
                return;
            }
            if Instant::now() > deadline {
                self.problem(format!(
                    "every call deleted, yet stats show {stats} (free pairs before: {}), \
                     lots {lots:?}",
                    self.free_before
                ));
                return;
            }
            self.problems.truncate(problems);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Once everything is deleted and quiet: one event per promise, and every
    /// parking ended (retrieved, released or given up) with its slot freed.
    fn check_event_accounting(&mut self) {
        let seen = &self.events_log.kinds;
        let n = |k: &str| seen.get(k).copied().unwrap_or(0);
        let mut why = Vec::new();
        for (event, promised) in &self.model.promised {
            if n(event) != *promised {
                why.push(format!(
                    "{promised} successful commands promise `{event}`, the stream has {}",
                    n(event)
                ));
            }
        }
        let ended = n("retrieved") + n("park_released") + n("park_give_up");
        if ended != n("parked") || n("slot_state:busy") != n("parked") {
            why.push(format!(
                "{} parked, {ended} retrieved, released or given up, slot_state busy {} free {}",
                n("parked"),
                n("slot_state:busy"),
                n("slot_state:free")
            ));
        }
        if n("slot_state:free") != n("slot_state:busy") {
            why.push("slot_state busy and free do not pair up".into());
        }
        for w in why {
            self.problem(format!("event accounting: {w}"));
        }
    }

    /// Writes the last requests and replies to a log; returns its path.
    fn write_log(&self, backend: Backend) -> PathBuf {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("native-chaos-{}.log", backend.as_str()));
        let text: String = self.history.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

/// The marker [`expand_invalid`] turns into `n` bytes of invalid UTF-8.
fn invalid_marker(n: usize) -> String {
    format!("\u{7f}BAD{n}\u{7f}")
}

/// Replaces each [`invalid_marker`] in an encoded line by its invalid bytes.
fn expand_invalid(line: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = &line[..];
    while let Some(start) = rest.windows(4).position(|w| w == b"\x7fBAD") {
        out.extend_from_slice(&rest[..start]);
        let after = &rest[start + 4..];
        let Some(end) = after.iter().position(|&b| b == 0x7f) else {
            out.extend_from_slice(&rest[start..]);
            return out;
        };
        let n: usize = std::str::from_utf8(&after[..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        out.extend(std::iter::repeat_n(0xffu8, n));
        rest = &after[end + 1..];
    }
    out.extend_from_slice(rest);
    out
}

/// The legs of a call object (`query_call` reply or `list_calls` entry) by name.
fn legs_of(call: &Value) -> BTreeMap<String, Value> {
    call["legs"]
        .as_array()
        .map(|legs| {
            legs.iter()
                .map(|l| (l["leg"].as_str().unwrap_or_default().to_owned(), l.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The chaos on one backend: steps with checkpoints, the main connection
/// subscribed half-way, then everything deleted and the engine checked.
fn native_chaos_answers_every_line_and_leaks_nothing(backend: Backend) {
    let started = Instant::now();
    let seed = std::env::var("RTPARK_NATIVE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0a71_7e5e_edc4_a0b5)
        ^ (backend as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let dir = TempDir::new();
    let mut chaos = Chaos::start(backend, &dir, seed);
    for step in 0..STEPS {
        if step == STEPS / 2 {
            let req = json!({"id": chaos.id(), "cmd": "subscribe"});
            chaos.exchange(vec![Line::json(&req, true)]);
        }
        chaos.step();
        if step % CHECK_EVERY == CHECK_EVERY - 1 {
            chaos.checkpoint();
        }
        if chaos.lost >= MAX_LOST {
            break;
        }
    }
    chaos.checkpoint();
    chaos.delete_everything();
    // Late events (the last call_deleted, slot_state free) arrive; then no slot is busy.
    std::thread::sleep(Duration::from_millis(300));
    chaos.drain_events();
    chaos.check_event_accounting();
    let busy = chaos.events_log.busy_slots();
    if !busy.is_empty() {
        chaos.problem(format!("the event stream last reported {busy:?} busy"));
    }
    if chaos.datagrams_heard == 0 {
        chaos.problem(format!(
            "the phones sent {} datagrams but heard nothing back: no relay or music ran",
            chaos.datagrams_sent
        ));
    }
    if !chaos.engine.is_running() {
        chaos.problem("rtpark exited".into());
    }
    if chaos.engine.stderr().contains("panicked") {
        chaos.problem("rtpark's stderr reports a panic".into());
    }
    eprintln!(
        "{}: seed {seed:#x}, {} lines ({} mutated), {} datagrams sent, {} heard, in {:?}\n\
         outcomes: {:?}\nevents: {:?}",
        backend.as_str(),
        chaos.lines,
        chaos.mutated,
        chaos.datagrams_sent,
        chaos.datagrams_heard,
        started.elapsed(),
        chaos.outcomes,
        chaos.events_log.kinds
    );
    if !chaos.problems.is_empty() {
        const SHOWN: usize = 15;
        let log = chaos.write_log(backend);
        let mut distinct: Vec<String> = chaos.problems.clone();
        distinct.dedup();
        panic!(
            "seed {seed:#x}, {} lines ({} mutated): {} problem(s), the first {SHOWN}:\n{}\n\
             last requests: {}\nstderr:\n{}",
            chaos.lines,
            chaos.mutated,
            chaos.problems.len(),
            distinct[..distinct.len().min(SHOWN)].join("\n"),
            log.display(),
            chaos.engine.stderr()
        );
    }
}
