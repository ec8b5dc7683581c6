//! Chaos on the SIP-core control sockets of the real binary: a few thousand
//! requests modelled on what Kamailio sends (examples/kamailio/CAPTURED.md),
//! most of them mutated by a seeded PRNG (keys dropped, duplicated and retyped,
//! extreme numbers, empty, 60 KiB and non-UTF-8 strings, truncated bencode,
//! garbage SDP, odd rtpproxy modifiers, addresses, ports and media numbers,
//! flipped bytes), interleaved with valid calls over ng and rtpproxy on UDP,
//! and now and then a call or leg deleted on the native socket.
//!
//! What it proves: every request gets a well-formed reply (ng: a dictionary
//! with `result`; rtpproxy: a line behind its cookie), a retransmission gets the
//! same reply, an offer or answer that succeeds carries SDP naming ports of the
//! call's own legs, a refused first offer leaves no call behind, valid dialogs
//! keep working between the chaos, the process neither dies nor panics, and
//! once every call is deleted through the SIP-core protocols the native `stats`
//! shows no call, no leg and every port pair free again. Both backends; the
//! seed is fixed (`RTPARK_CHAOS_SEED` replays another one), and the requests of
//! a failing round are written to a log under the target directory. The engine
//! bugs it found are pinned by the small tests at the top.

#[macro_use]
mod support;

use rtpark::control::bencode::{decode, Value};
use serde_json::json;
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::*;

backend_tests!(mutated_requests_get_replies_and_leak_nothing);

// The engine bugs the chaos found, each pinned by its smallest input (the
// control plane does not depend on the packet backend: epoll only).

/// An ng offer of a new call refused for its `moh` dictionary (no file or
/// blob; or a blob that is no audio, played at once because the SDP holds):
/// the refusal must leave no call and no leg behind.
#[test]
fn refused_first_offer_leaves_no_call() {
    let dir = TempDir::new();
    let mut chaos = Chaos::start(Backend::Epoll, &dir, 1);
    let cases = [
        ("moh-empty", Value::Dict(Vec::new()), "sendrecv"),
        (
            "moh-garbage-blob",
            Value::Dict(vec![kv("blob", Value::str("not audio at all"))]),
            "sendonly",
        ),
    ];
    for (id, moh, direction) in cases {
        let offer = Value::Dict(vec![
            kv("call-id", Value::str(id)),
            kv("sdp", Value::str(&sdp(17100, direction))),
            kv("from-tag", Value::str("a")),
            kv("moh", moh),
            kv("command", Value::str("offer")),
        ])
        .to_bytes();
        let reply = chaos.exchange(Proto::Ng, &offer).expect("a reply");
        let (_, result) = ng_reply(&reply).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(result, "error", "{}", shown(&reply));
        let stats = chaos.ctl.ok(json!({"cmd": "stats"}));
        assert!(
            stats["legs"] == json!(0) && stats["calls"] == json!(0),
            "offer {} was refused ({}), yet stats show {stats}",
            shown(&offer),
            shown(&reply)
        );
    }
}

/// An ng reply too big for one datagram (`query` of a call whose tag is 33 KiB:
/// the tag appears twice) must still be answered, e.g. with an error.
#[test]
fn reply_too_big_for_a_datagram_is_still_answered() {
    let dir = TempDir::new();
    let mut chaos = Chaos::start(Backend::Epoll, &dir, 1);
    let tag = "t".repeat(33 * 1024);
    chaos.ng_ok(vec![
        kv("call-id", Value::str("big-tag")),
        kv("sdp", Value::str(&sdp(17100, "sendrecv"))),
        kv("from-tag", Value::str(&tag)),
        kv("command", Value::str("offer")),
    ]);
    let query = Value::Dict(vec![
        kv("call-id", Value::str("big-tag")),
        kv("command", Value::str("query")),
    ]);
    let reply = chaos.exchange(Proto::Ng, &query.to_bytes());
    let reply = reply.unwrap_or_else(|| {
        panic!(
            "no reply to `query` of a call with a {}-byte tag; stderr:\n{}",
            tag.len(),
            chaos.engine.stderr()
        )
    });
    ng_reply(&reply).unwrap_or_else(|e| panic!("{e}: {}", shown(&reply)));
}

/// Legs deleted on the native socket behind the SIP core's back: a re-offer
/// must succeed and name ports of legs that exist, not the released ones.
#[test]
fn legs_deleted_natively_are_not_offered_again() {
    let dir = TempDir::new();
    let mut chaos = Chaos::start(Backend::Epoll, &dir, 1);
    // rtpproxy: U without codecs, L, the call deleted natively, U again.
    chaos.rp_ok("U native-rp 127.0.0.1 17100 a;1");
    chaos.rp_ok("L native-rp 127.0.0.1 16100 a;1 b;1");
    chaos
        .ctl
        .ok(json!({"cmd": "delete_call", "call": "native-rp"}));
    let u = "U native-rp 127.0.0.1 17100 a;1 b;1";
    let line = chaos.rp_ok(u);
    let port = line.split(' ').next().and_then(|p| p.parse::<u16>().ok());
    chaos.check_ports_owned(
        Proto::Rtpproxy,
        u.as_bytes(),
        "native-rp",
        &[port.unwrap_or(0)],
    );
    // ng: offer, answer, the call deleted natively, the same re-offer twice.
    let offer = |to: bool| {
        let mut e = vec![
            kv("call-id", Value::str("native-ng")),
            kv("sdp", Value::str(&sdp(17100, "sendrecv"))),
            kv("from-tag", Value::str("a")),
        ];
        if to {
            e.push(kv("to-tag", Value::str("b")));
        }
        e.push(kv("command", Value::str("offer")));
        e
    };
    chaos.ng_ok(offer(false));
    let mut answer = offer(true);
    answer.last_mut().expect("command").1 = Value::str("answer");
    chaos.ng_ok(answer);
    chaos
        .ctl
        .ok(json!({"cmd": "delete_call", "call": "native-ng"}));
    for _ in 0..2 {
        let request = Value::Dict(offer(true)).to_bytes();
        let reply = chaos.exchange(Proto::Ng, &request).expect("a reply");
        match ng_reply(&reply) {
            Ok((v, r)) if r == "ok" => {
                let ports = rtp_ports(v.get("sdp").and_then(Value::as_bytes).unwrap_or(b""));
                chaos.check_ports_owned(Proto::Ng, &request, "native-ng", &ports);
            }
            other => chaos.problem(Proto::Ng, &request, format!("re-offer refused: {other:?}")),
        }
    }
    assert!(chaos.problems.is_empty(), "{}", chaos.problems.join("\n"));
}

/// How long a reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds of chaos; each ends by deleting every call and checking for leaks.
const ROUNDS: usize = 10;
/// Requests per round (valid and mutated, both protocols).
const REQUESTS_PER_ROUND: usize = 600;
/// Percentage of chaos requests that are mutated.
const MUTATED_PERCENT: u32 = 70;
/// Port pairs of the engine: small, so that exhaustion is part of the chaos.
const PORT_PAIRS: u16 = 64;
/// Call-IDs the chaos keeps coming back to, shared by both protocols.
const POOL: usize = 8;
/// A long string: big, yet a request holding one still fits a datagram.
const LONG: usize = 60 * 1024;
/// Largest request body sent (UDP over IPv4 carries 65 507 bytes).
const MAX_BODY: usize = 65_000;
/// Replies lost before the chaos gives up (each costs [`REPLY_TIMEOUT`]).
const MAX_LOST: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Ng,
    Rtpproxy,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Ng => "ng",
            Proto::Rtpproxy => "rtpproxy",
        }
    }
}

// ---------------------------------------------------------------------------
// Randomness and the client.
// ---------------------------------------------------------------------------

/// A SIP-core client on UDP: `cookie body` datagrams from one socket, a new
/// cookie for every request but deliberate retransmissions.
struct Udp {
    sock: UdpSocket,
    to: SocketAddr,
    prefix: &'static str,
    next: u64,
}

impl Udp {
    /// A client of the socket on 127.0.0.1:`port`, its cookies starting `prefix`.
    fn new(port: u16, prefix: &'static str) -> Udp {
        Udp {
            sock: UdpSocket::bind("127.0.0.1:0").expect("bind a control client"),
            to: SocketAddr::from(([127, 0, 0, 1], port)),
            prefix,
            next: 0,
        }
    }

    /// A cookie never used before.
    fn cookie(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }

    /// Sends `cookie body`; returns the reply body (cookie removed), or `None`
    /// if no reply with that cookie came within [`REPLY_TIMEOUT`]. Late replies
    /// to earlier requests are skipped.
    fn exchange(&self, cookie: &str, body: &[u8]) -> Option<Vec<u8>> {
        let mut datagram = Vec::with_capacity(cookie.len() + 1 + body.len());
        datagram.extend_from_slice(cookie.as_bytes());
        datagram.push(b' ');
        datagram.extend_from_slice(body);
        self.sock
            .send_to(&datagram, self.to)
            .unwrap_or_else(|e| panic!("cannot send a {}-byte request: {e}", datagram.len()));
        let expected = format!("{cookie} ");
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.to => {
                    if let Some(rest) = buf[..n].strip_prefix(expected.as_bytes()) {
                        return Some(rest.to_vec());
                    }
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("control client receive failed: {e}"),
            }
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    s.local_addr().expect("probe address").port()
}

// ---------------------------------------------------------------------------
// Reply checks.
// ---------------------------------------------------------------------------

/// Checks an ng reply body: one bencoded dictionary whose `result` is `ok`,
/// `pong` or `error` (with an `error-reason`). Returns it and the result.
fn ng_reply(reply: &[u8]) -> Result<(Value, String), String> {
    let v = decode(reply).map_err(|e| format!("reply is not bencode ({e})"))?;
    if v.as_dict().is_none() {
        return Err(format!("reply is a {}, not a dictionary", v.kind()));
    }
    let result = v
        .get("result")
        .and_then(Value::as_str)
        .ok_or("reply has no text `result`")?
        .to_owned();
    match result.as_str() {
        "ok" | "pong" => {}
        "error" => {
            let reason = v.get("error-reason").and_then(Value::as_str);
            if reason.is_none_or(str::is_empty) {
                return Err("`result: error` without an `error-reason`".into());
            }
        }
        other => return Err(format!("`result` is {other:?}")),
    }
    Ok((v, result))
}

/// Checks an rtpproxy reply body: text ending in a newline, `E<code>` for
/// errors. Returns it without the newline. (An empty line is a reply: rtpproxy
/// answers `G` without counter names so.)
fn rp_reply(reply: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(reply).map_err(|_| "reply is not UTF-8".to_owned())?;
    let body = text
        .strip_suffix('\n')
        .ok_or("reply without final newline")?;
    if let Some(code) = body.strip_prefix('E') {
        if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("malformed error code {body:?}"));
        }
    }
    Ok(body.to_owned())
}

// ---------------------------------------------------------------------------
// Valid requests, as Kamailio sends them.
// ---------------------------------------------------------------------------

/// A call-id with its two tags.
#[derive(Clone)]
struct CallIds {
    id: String,
    from: String,
    to: String,
}

/// An audio offer or answer as sipp's in CAPTURED.md, with `direction`.
fn sdp(port: u16, direction: &str) -> String {
    [
        "v=0".to_owned(),
        "o=caller 53655765 1 IN IP4 127.0.0.1".to_owned(),
        "s=-".to_owned(),
        "c=IN IP4 127.0.0.1".to_owned(),
        "t=0 0".to_owned(),
        format!("m=audio {port} RTP/AVP 0 101"),
        "a=rtpmap:0 PCMU/8000".to_owned(),
        "a=rtpmap:101 telephone-event/8000".to_owned(),
        "a=fmtp:101 0-15".to_owned(),
        "a=ptime:20".to_owned(),
        format!("a={direction}"),
        String::new(),
    ]
    .join("\r\n")
}

/// The ng commands the chaos sends, with their weights.
const NG_COMMANDS: &[(&str, usize)] = &[
    ("offer", 4),
    ("answer", 3),
    ("play media", 2),
    ("stop media", 1),
    ("block media", 1),
    ("unblock media", 1),
    ("silence media", 1),
    ("unsilence media", 1),
    ("query", 1),
    ("list", 1),
    ("statistics", 1),
    ("delete", 1),
    ("ping", 1),
];

/// A dictionary entry.
fn kv(key: &str, v: Value) -> (Vec<u8>, Value) {
    (key.as_bytes().to_vec(), v)
}

/// The RTP ports of the RTP media sections of an SDP body (port 0 and
/// non-RTP sections, which rtpark leaves alone, excluded).
fn rtp_ports(body: &[u8]) -> Vec<u16> {
    sdp_lines(body)
        .iter()
        .filter_map(|l| {
            let l = std::str::from_utf8(l).ok()?.strip_prefix("m=")?;
            let words: Vec<&str> = l.split(' ').collect();
            let port = words.get(1)?.parse::<u16>().ok()?;
            (port != 0 && words.get(2)?.contains("RTP")).then_some(port)
        })
        .collect()
}

/// A valid ng request for `command` on call `c`, keys in the module's order
/// (`supports` first, `command` last).
fn ng_valid(rng: &mut Rng, command: &str, c: &CallIds) -> Vec<(Vec<u8>, Value)> {
    let mut e = vec![kv("supports", Value::str_list(["load limit"]))];
    let received = || Value::str_list(["IP4", "127.0.0.1"]);
    match command {
        "offer" | "answer" => {
            let direction = rng.pick(&["sendrecv", "sendrecv", "sendonly", "inactive"]);
            let port = 16000 + 2 * rng.below(1000) as u16;
            e.push(kv("sdp", Value::str(&sdp(port, direction))));
            e.push(kv("ICE", Value::str("remove")));
            e.push(kv(
                "replace",
                Value::str_list(["origin", "session-connection"]),
            ));
            e.push(kv("call-id", Value::str(&c.id)));
            e.push(kv("received-from", received()));
            e.push(kv("from-tag", Value::str(&c.from)));
            if command == "answer" || rng.percent(50) {
                e.push(kv("to-tag", Value::str(&c.to)));
            }
            if rng.percent(20) {
                e.push(kv(
                    "moh",
                    Value::Dict(vec![kv("file", Value::str("/var/lib/rtpark/default.wav"))]),
                ));
            }
        }
        "play media" => {
            if rng.percent(80) {
                e.push(kv("file", Value::str(rng.pick(&["default", "calm"]))));
            } else {
                let tone: Vec<u8> = (0..1600u32).map(|i| (i * 37 % 251) as u8).collect();
                e.push(kv("blob", Value::bytes(wav_bytes(1, 1, 8000, 16, &tone))));
            }
            e.push(kv(
                "repeat-times",
                [Value::str("-1"), Value::int(2), Value::str("1")][rng.below(3)].clone(),
            ));
            e.push(kv("call-id", Value::str(&c.id)));
            e.push(kv("received-from", received()));
            e.push(kv("from-tag", Value::str(&c.to)));
            e.push(kv("to-tag", Value::str(&c.to)));
        }
        "stop media" => {
            e.push(kv("call-id", Value::str(&c.id)));
            e.push(kv("received-from", received()));
            e.push(kv("from-tag", Value::str(&c.to)));
            e.push(kv("to-tag", Value::str(&c.to)));
        }
        "block media" | "unblock media" | "silence media" | "unsilence media" => {
            e.push(kv("call-id", Value::str(&c.id)));
            e.push(kv("received-from", received()));
            if rng.percent(30) {
                e.push(kv("from-tag", Value::str(&c.from)));
            }
        }
        "query" | "delete" => {
            e.push(kv("call-id", Value::str(&c.id)));
            e.push(kv("received-from", received()));
            e.push(kv("from-tag", Value::str(&c.from)));
        }
        "list" if rng.percent(50) => {
            e.push(kv("limit", Value::int(rng.below(40) as i64)));
        }
        _ => {}
    }
    e.push(kv("command", Value::str(command)));
    e
}

/// The rtpproxy commands the chaos sends, with their weights.
const RP_COMMANDS: &[(&str, usize)] = &[
    ("V", 1),
    ("VF", 1),
    ("U", 4),
    ("L", 3),
    ("P", 2),
    ("S", 1),
    ("Q", 1),
    ("I", 1),
    ("G", 1),
    ("D", 1),
];

/// A valid rtpproxy command as words, as the Kamailio module sends it.
fn rp_valid(rng: &mut Rng, command: &str, c: &CallIds) -> Vec<Vec<u8>> {
    let port = (17000 + 2 * rng.below(1000)).to_string();
    let (from, to) = (format!("{};1", c.from), format!("{};1", c.to));
    let words: Vec<String> = match command {
        "V" => vec!["V".into()],
        "VF" => vec![
            "VF".into(),
            rng.pick(&["20050322", "20071116", "20081102", "20141004", "20040107"])
                .to_string(),
        ],
        "U" => {
            let mut w = vec!["Uc0,101".into(), c.id.clone(), "127.0.0.1".into(), port];
            w.push(from);
            if rng.percent(50) {
                w.push(to);
            }
            w
        }
        "L" => vec![
            "Lc0,101".into(),
            c.id.clone(),
            "127.0.0.1".into(),
            port,
            from,
            to,
        ],
        "P" => vec![
            rng.pick(&["P-1", "P1", "P3"]).to_string(),
            c.id.clone(),
            rng.pick(&["default", "calm", "/var/lib/rtpark/moh.wav"])
                .to_string(),
            "session".into(),
            to,
            from,
        ],
        "S" => vec!["S".into(), c.id.clone(), to, from],
        "Q" => {
            if rng.percent(50) {
                vec!["Q".into(), c.id.clone(), from, to]
            } else {
                vec![
                    "Qv".into(),
                    c.id.clone(),
                    from,
                    to,
                    "ttl".into(),
                    "npkts_ina".into(),
                    "nrelayed".into(),
                ]
            }
        }
        "I" => vec![rng.pick(&["I", "Iv"]).to_string()],
        "G" => vec![
            rng.pick(&["G", "Gv"]).to_string(),
            "nsess_created".into(),
            "npkt_rcvd".into(),
            "npkt_discard".into(),
        ],
        "D" => vec!["D".into(), c.id.clone(), c.from.clone(), c.to.clone()],
        other => vec![other.to_owned()],
    };
    words.into_iter().map(String::into_bytes).collect()
}

// ---------------------------------------------------------------------------
// Mutations.
// ---------------------------------------------------------------------------

/// Numbers at the edges.
const EXTREME_INTS: &[i64] = &[
    i64::MIN,
    i64::MIN + 1,
    i64::MAX,
    0,
    -1,
    1,
    i32::MIN as i64,
    u32::MAX as i64,
    u32::MAX as i64 + 1,
    86_400_000_000,
];

/// Numbers spelled as strings, at the edges and beyond.
const EXTREME_NUMBER_TEXTS: &[&str] = &[
    "-9223372036854775808",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999",
    "-1",
    "0",
    "-0",
    "+5",
    " 5",
    "5 ",
    "0x10",
    "1e3",
    "1.5",
    "",
    "-",
];

/// Addresses the SDP and rtpproxy commands carry in chaos.
const ODD_ADDRS: &[&str] = &[
    "0.0.0.0",
    "::",
    "::1",
    "999.1.1.1",
    "127.0.0.1.5",
    "1.2.3",
    "255.255.255.255",
    "224.0.0.1",
    "[::1]",
    "host.example.com",
    "",
    "127.0.0.1:5060",
    "fe80::1%lo",
];

/// Ports the SDP and rtpproxy commands carry in chaos.
const ODD_PORTS: &[&str] = &[
    "0",
    "1",
    "65535",
    "65536",
    "70000",
    "-1",
    "99999999999999999999",
    "abc",
    "017",
    "",
    "1/2",
];

/// Media numbers for rtpproxy tags.
const ODD_MEDIANUMS: &[&str] = &[
    ";0",
    ";1",
    ";2",
    ";64",
    ";65",
    ";4294967295",
    ";4294967296",
    ";99999999999999999999",
    ";-1",
    ";",
    ";1;2",
    ";01",
    ";a",
];

/// A string no one should send.
fn weird_bytes(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => Vec::new(),
        1 => b"x".repeat(LONG),
        2 => vec![0xff, 0xfe, b'x', 0xc3, 0x28, 0x80],
        3 => b"with space\tand tab".to_vec(),
        4 => b"nul\0inside".to_vec(),
        5 => b"crlf\r\ninside".to_vec(),
        6 => "\u{1f3b5} \u{fc}n\u{ef}c\u{f6}d\u{e9}".as_bytes().to_vec(),
        7 => b"../../../../etc/passwd".to_vec(),
        8 => b";1".to_vec(),
        _ => {
            let n = 1 + rng.below(64);
            rng.bytes(n)
        }
    }
}

/// A random value of any bencode kind, small.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth >= 3 { 2 } else { 4 };
    match rng.below(kinds) {
        0 => Value::int(rng.pick(EXTREME_INTS)),
        1 => {
            let mut b = weird_bytes(rng);
            b.truncate(256);
            Value::Bytes(b)
        }
        2 => Value::List(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Dict(
            (0..rng.below(4))
                .map(|_| {
                    let key = rng.pick(&["file", "call-id", "x", "", "from-tag"]);
                    kv(key, random_value(rng, depth + 1))
                })
                .collect(),
        ),
    }
}

/// `value` turned into a different kind of value.
fn retyped(rng: &mut Rng, value: &Value) -> Value {
    loop {
        let v = random_value(rng, 1);
        if v.kind() != value.kind() {
            return v;
        }
    }
}

/// Lists nested `depth` deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::int(1), |v, _| Value::list(vec![v]))
}

/// `body`'s lines, without their endings.
fn sdp_lines(body: &[u8]) -> Vec<Vec<u8>> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A mutation of the SDP `body`.
fn chaos_sdp(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut lines = sdp_lines(body);
    let mut ending: &[u8] = b"\r\n";
    for _ in 0..1 + rng.below(3) {
        match rng.below(12) {
            0 => {
                let addr = rng.pick(ODD_ADDRS);
                let family = if addr.contains(':') { "IP6" } else { "IP4" };
                for l in lines.iter_mut().filter(|l| l.starts_with(b"c=")) {
                    *l = format!("c=IN {family} {addr}").into_bytes();
                }
            }
            1 => {
                let port = rng.pick(ODD_PORTS);
                for l in lines.iter_mut().filter(|l| l.starts_with(b"m=")) {
                    *l = format!("m=audio {port} RTP/AVP 0 101").into_bytes();
                }
            }
            2 => {
                let garbage = rng.pick(&[
                    "garbage",
                    "=",
                    "x=",
                    "m=",
                    "c=IN IP4",
                    "c=IN IP9 1.2.3.4",
                    "a=rtpmap:",
                    "a=rtpmap:999 X/0",
                    "a=rtpmap:96 opus/0/0",
                    "a=rtpmap:0 PCMU/4294967296",
                    "a=rtcp:0",
                    "a=rtcp:70000 IN IP4 999.1.1.1",
                    "a=rtcp:1 IN IP6 ::",
                    "a=ptime:0",
                    "a=ptime:-1",
                    "a=ptime:99999999999",
                    "a=rtcp-mux",
                    "a=candidate:1 1 UDP 2130706431 10.0.0.1 8998 typ host",
                    "a=fmtp:",
                    "b=AS:-5",
                ]);
                let at = rng.below(lines.len() + 1);
                lines.insert(at, garbage.as_bytes().to_vec());
            }
            3 => {
                let n = rng.pick(&[2, 4, 8, 33, 64, 65, 200]);
                for i in 0..n {
                    lines.push(format!("m=audio {} RTP/AVP 0", 30000 + 2 * i).into_bytes());
                }
            }
            4 => lines.push(
                rng.pick(&[
                    "m=video 5004 RTP/AVP 96",
                    "m=image 6000 udptl t38",
                    "m=application 9 UDP/BFCP *",
                    "m=audio 0 RTP/AVP 0",
                    "m=audio 7000 RTP/SAVP 0",
                ])
                .as_bytes()
                .to_vec(),
            ),
            5 => ending = rng.pick(&[&b"\n"[..], b"\r", b"\r\r\n", b"\n\n"]),
            6 => {
                if !lines.is_empty() {
                    let at = rng.below(lines.len());
                    lines.remove(at);
                }
            }
            7 => lines.retain(|l| !l.starts_with(b"m=")),
            8 => {
                if !lines.is_empty() {
                    let at = rng.below(lines.len());
                    let n = 1 + rng.below(16);
                    let junk = rng.bytes(n);
                    lines[at].extend_from_slice(&junk);
                }
            }
            9 => {
                for l in lines.iter_mut().filter(|l| l.starts_with(b"m=")) {
                    let pts = rng.pick(&["", "999", "-1", "0 0 0 0", "96 97 98 99 100 101 102"]);
                    *l = format!("m=audio 16000 RTP/AVP {pts}").into_bytes();
                }
            }
            10 => {
                for _ in 0..2000 {
                    lines.push(b"a=x-padding:0123456789".to_vec());
                }
            }
            _ => {
                let d = rng.pick(&["a=sendonly", "a=inactive", "a=recvonly", "a=sendrecv"]);
                lines.push(d.as_bytes().to_vec());
            }
        }
    }
    let mut out = lines.join(ending);
    out.extend_from_slice(ending);
    if rng.percent(10) {
        let cut = rng.below(out.len() + 1);
        out.truncate(cut);
    }
    out
}

/// Keys ng reads as integers.
const NG_INT_KEYS: &[&str] = &[
    "repeat-times",
    "start-pos",
    "limit",
    "duration",
    "db-id",
    "ptime",
    "TOS",
    "delete-delay",
];

/// Keys ng reads as strings.
const NG_STRING_KEYS: &[&str] = &[
    "call-id",
    "from-tag",
    "to-tag",
    "file",
    "via-branch",
    "label",
    "address",
    "all",
];

/// Sets `key` in `e` (the first entry with it, else a new one before `command`).
fn set_key(e: &mut Vec<(Vec<u8>, Value)>, key: &str, v: Value) {
    match e.iter_mut().find(|(k, _)| k == key.as_bytes()) {
        Some(entry) => entry.1 = v,
        None => {
            let at = e.len().saturating_sub(1);
            e.insert(at, kv(key, v));
        }
    }
}

/// Applies one structural mutation to an ng request dictionary.
fn mutate_ng(rng: &mut Rng, e: &mut Vec<(Vec<u8>, Value)>, fresh: &mut FreshIds) {
    match rng.below(16) {
        0 | 1 => {
            if !e.is_empty() {
                let at = rng.below(e.len());
                e.remove(at);
            }
        }
        2 => {
            if !e.is_empty() {
                let entry = e[rng.below(e.len())].clone();
                let at = rng.below(e.len() + 1);
                e.insert(at, entry);
            }
        }
        3 | 4 => {
            if !e.is_empty() {
                let at = rng.below(e.len());
                e[at].1 = retyped(rng, &e[at].1);
            }
        }
        5 => {
            let key = rng.pick(NG_INT_KEYS);
            let v = if rng.percent(50) {
                Value::int(rng.pick(EXTREME_INTS))
            } else {
                Value::str(rng.pick(EXTREME_NUMBER_TEXTS))
            };
            set_key(e, key, v);
        }
        6 | 7 => {
            let key = rng.pick(NG_STRING_KEYS);
            let v = Value::Bytes(weird_bytes(rng));
            set_key(e, key, v);
        }
        8 | 9 => {
            let body = match e.iter().find(|(k, _)| k == b"sdp") {
                Some((_, Value::Bytes(b))) => b.clone(),
                _ => sdp(16000, "sendrecv").into_bytes(),
            };
            let body = chaos_sdp(rng, &body);
            set_key(e, "sdp", Value::Bytes(body));
        }
        10 => {
            let name = rng.pick(&[
                "",
                "OFFER",
                "offer ",
                "ping\0",
                "start recording",
                "play DTMF",
                "CLI",
                "connect",
                "subscribe request",
                "offer",
                "answer",
                "delete",
                "query",
                "play media",
                "stop media",
                "list",
            ]);
            set_key(e, "command", Value::str(name));
        }
        11 => {
            let v = if rng.percent(30) {
                nested(rng.pick(&[31, 32, 33, 200]))
            } else {
                random_value(rng, 0)
            };
            let key = rng.pick(&["x-unknown", "flags", "replace", "codec", "ICE", "rtcp-mux"]);
            set_key(e, key, v);
        }
        12 => {
            let flags: Vec<Value> = (0..1 + rng.below(4))
                .map(|_| {
                    Value::str(rng.pick(&[
                        "all",
                        "trust-address",
                        "asymmetric",
                        "fatal",
                        "codec-strip-all",
                        "replace-origin",
                        "rtcp-mux-demux",
                        "",
                        "SIP-source-address",
                        "port-latching",
                        "strict-source",
                    ]))
                })
                .collect();
            set_key(e, "flags", Value::List(flags));
        }
        13 => {
            let moh = match rng.below(7) {
                0 => Value::Dict(Vec::new()),
                1 => Value::Dict(vec![kv("file", Value::str("default"))]),
                2 => Value::Dict(vec![kv("blob", Value::bytes(rng.bytes(64)))]),
                3 => Value::Dict(vec![kv("db-id", Value::int(5))]),
                4 => Value::Dict(vec![kv("file", Value::int(7))]),
                5 => Value::str("default"),
                _ => Value::Dict(vec![
                    kv("mode", Value::str("reflect")),
                    kv("connection", Value::str("zero")),
                ]),
            };
            set_key(e, "moh", moh);
        }
        14 => match rng.below(4) {
            0 => set_key(
                e,
                "received-from",
                Value::list(vec![
                    Value::str(rng.pick(&["IP4", "IP6", "IPX", ""])),
                    Value::str(rng.pick(ODD_ADDRS)),
                ]),
            ),
            1 => {
                let blob = match rng.below(4) {
                    0 => Vec::new(),
                    1 => {
                        let n = 1 + rng.below(2000);
                        rng.bytes(n)
                    }
                    2 => wav_bytes(1, 0, 0, 0, &[1, 2, 3, 4]),
                    _ => {
                        let mut w = wav_bytes(
                            rng.pick(&[1, 3, 6, 7, 0xfffe, 0]),
                            rng.pick(&[1, 2, 255, 0]),
                            rng.pick(&[8000, 1, 0, u32::MAX, 48000]),
                            rng.pick(&[16, 8, 0, 1, 64, 255]),
                            &rng.bytes(320),
                        );
                        if rng.percent(50) {
                            let n = w.len();
                            w[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
                            w.truncate(n - rng.below(300));
                        }
                        w
                    }
                };
                set_key(e, "blob", Value::Bytes(blob));
            }
            2 => set_key(
                e,
                "blob64",
                Value::str(rng.pick(&["!!!!", "AAAA", "====", "UklGRg==", "", "A"])),
            ),
            _ => set_key(
                e,
                "file",
                Value::str(rng.pick(&["/dev/zero", "/", "/etc/passwd", "/nonexistent.wav"])),
            ),
        },
        _ => {
            // The same tag on both sides, or a call-id nobody used yet.
            if rng.percent(50) {
                let from = e
                    .iter()
                    .find(|(k, _)| k == b"from-tag")
                    .map(|(_, v)| v.clone());
                if let Some(v) = from {
                    set_key(e, "to-tag", v);
                }
            } else {
                set_key(e, "call-id", Value::str(&fresh.next()));
            }
        }
    }
}

/// Applies one byte-level mutation to an encoded request.
fn mutate_bytes(rng: &mut Rng, body: &mut Vec<u8>) {
    match rng.below(5) {
        0 => {
            let cut = rng.below(body.len() + 1);
            body.truncate(cut);
        }
        1 | 2 => {
            for _ in 0..1 + rng.below(4) {
                if !body.is_empty() {
                    let at = rng.below(body.len());
                    body[at] ^= 1 << rng.below(8);
                }
            }
        }
        3 => {
            let at = rng.below(body.len() + 1);
            let n = 1 + rng.below(8);
            let junk = rng.bytes(n);
            body.splice(at..at, junk);
        }
        _ => {
            let tail = rng.pick(&[&b"e"[..], b"i1e", b"de", b" ", b"\n", b"\0"]);
            body.extend_from_slice(tail);
        }
    }
}

/// Whole ng bodies that are wrong from the first byte.
fn ng_garbage(rng: &mut Rng) -> Vec<u8> {
    match rng.below(14) {
        0 => Vec::new(),
        1 => b"d".to_vec(),
        2 => b"de".to_vec(),
        3 => b"l".to_vec(),
        4 => br#"{"command":"ping"}"#.to_vec(),
        5 => b"i42e".to_vec(),
        6 => b"4:ping".to_vec(),
        7 => b"d7:command4:ping".to_vec(),
        8 => [b"l".repeat(5000), b"e".repeat(5000)].concat(),
        9 => b"d7:command4:pinge trailing".to_vec(),
        10 => b"d99999999999999999999:x7:command4:pinge".to_vec(),
        11 => b"d7:commandi1ee".to_vec(),
        12 => b"d-1:x7:command4:pinge".to_vec(),
        _ => {
            let n = rng.below(200);
            rng.bytes(n)
        }
    }
}

/// Applies one mutation to an rtpproxy command's words.
fn mutate_rp(rng: &mut Rng, w: &mut Vec<Vec<u8>>, fresh: &mut FreshIds) {
    let letter = w.first().and_then(|f| f.first()).copied().unwrap_or(b'V');
    match rng.below(15) {
        0 | 1 => {
            let mods = rng.pick(&[
                "", "a", "s", "w", "6", "c0,8,101", "c", "c999", "c,,", "c-1", "cabc", "z20", "z",
                "e", "i", "ei", "l", "r", "lr", "x", "v", "1", "-", "aw6sc0", "c0,101z0",
            ]);
            w[0] = [&[letter][..], mods.as_bytes()].concat();
        }
        2 | 3 => {
            let tags: Vec<usize> = (1..w.len()).filter(|&i| w[i].contains(&b';')).collect();
            if !tags.is_empty() {
                let i = rng.pick(&tags);
                let base: Vec<u8> = w[i].split(|&b| b == b';').next().unwrap_or(&[]).to_vec();
                w[i] = [base, rng.pick(ODD_MEDIANUMS).as_bytes().to_vec()].concat();
            }
        }
        4 => {
            if w.len() > 3 {
                w[2] = rng.pick(ODD_ADDRS).as_bytes().to_vec();
            }
        }
        5 => {
            if w.len() > 3 {
                w[3] = rng.pick(ODD_PORTS).as_bytes().to_vec();
            }
        }
        6 => {
            if !w.is_empty() {
                let at = rng.below(w.len());
                w.remove(at);
            }
        }
        7 => {
            let at = rng.below(w.len());
            let dup = w[at].clone();
            w.insert(at, dup);
        }
        8 => {
            let extra = rng.pick(&[
                "extra",
                "&&",
                "0",
                "-",
                ";",
                "session",
                "default",
                "ttl",
                "npkt_rcvd",
            ]);
            let at = rng.below(w.len() + 1);
            w.insert(at, extra.as_bytes().to_vec());
        }
        9 => {
            let at = 1 + rng.below(w.len().max(2) - 1);
            let word = weird_bytes(rng)
                .into_iter()
                .filter(|b| !b" \t\r\n".contains(b))
                .collect();
            if at < w.len() {
                w[at] = word;
            } else {
                w.push(word);
            }
        }
        10 => {
            let copy = w.clone();
            w.push(b"&&".to_vec());
            w.extend(copy.into_iter().skip(if rng.percent(50) { 0 } else { 1 }));
        }
        11 => {
            let l = rng.pick(&[
                "V",
                "U",
                "L",
                "D",
                "P",
                "S",
                "Q",
                "I",
                "G",
                "X",
                "R",
                "C",
                "N",
                "K",
                "?",
                "v",
                "u",
                "VF",
                "P0",
                "P-99999",
                "P4294967296",
                "Pabc",
                "P99999999999",
            ]);
            w[0] = l.as_bytes().to_vec();
        }
        12 => {
            if w.len() > 2 && letter == b'P' {
                w[2] = rng
                    .pick(&[
                        "/dev/zero",
                        "/",
                        "../../../etc/passwd",
                        "nonexistent",
                        "-",
                        "",
                    ])
                    .as_bytes()
                    .to_vec();
            } else if w.len() > 1 {
                w[1] = fresh.next().into_bytes();
            }
        }
        13 => {
            if w.len() > 2 {
                // The same tag on both sides.
                let last = w.len() - 1;
                w[last] = w[last - 1].clone();
            }
        }
        _ => {
            if w.len() > 1 {
                w[1] = fresh.next().into_bytes();
            }
        }
    }
}

/// Whole rtpproxy commands that are wrong from the first byte.
fn rp_garbage(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => Vec::new(),
        1 => b"\t\r\n".to_vec(),
        2 => b"&&".to_vec(),
        3 => b"V && V && V && V && V && V && V && V && V && V && V".to_vec(),
        4 => b"U".repeat(LONG),
        5 => vec![b'U', 0xff, b' ', 0xfe],
        6 => b"\0V".to_vec(),
        _ => {
            let n = rng.below(200);
            rng.bytes(n)
        }
    }
}

// ---------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------

/// Call-ids no request has named yet: `fresh-<backend>-<n>@chaos`.
struct FreshIds {
    backend: &'static str,
    n: u64,
}

impl FreshIds {
    /// The next unused call-id.
    fn next(&mut self) -> String {
        self.n += 1;
        format!("fresh-{}-{}@chaos", self.backend, self.n)
    }
}

/// One request of the round in progress, for the log of a failing round.
struct Sent {
    proto: Proto,
    request: Vec<u8>,
    reply: Option<Vec<u8>>,
}

/// An engine under chaos, its clients and what the run has seen.
struct Chaos {
    engine: Engine,
    ctl: Control,
    ng: Udp,
    rp: Udp,
    rng: Rng,
    backend: Backend,
    pool: Vec<CallIds>,
    /// Every call-id a request named (before byte-level mutation).
    named: BTreeSet<Vec<u8>>,
    fresh: FreshIds,
    free_before: u64,
    round: Vec<Sent>,
    problems: Vec<String>,
    lost: usize,
    sent: usize,
    mutated: usize,
}

impl Chaos {
    /// Starts the engine with ng and rtpproxy on UDP and a small port range.
    fn start(backend: Backend, dir: &TempDir, seed: u64) -> Chaos {
        let (ng_port, rp_port) = (free_udp_port(), free_udp_port());
        let engine = Engine::start(
            EngineOptions::new(backend)
                .port_pairs(PORT_PAIRS)
                .config(&format!(
                    "listen_ng = [\"udp:127.0.0.1:{ng_port}\"]\n\
                     listen_rtpproxy = [\"udp:127.0.0.1:{rp_port}\"]"
                ))
                .config(&quick_media(dir)),
        );
        let mut ng = Udp::new(ng_port, "ng");
        let mut rp = Udp::new(rp_port, "rp");
        // The native socket answers first; the SIP-core sockets are bound just after.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = |c: &mut Udp, body: &[u8]| {
                let cookie = c.cookie();
                let probe = UdpSocket::bind("127.0.0.1:0").expect("bind a probe");
                probe
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("set read timeout");
                let _ = probe.send_to(&[cookie.as_bytes(), b" ", body].concat(), c.to);
                probe.recv_from(&mut [0u8; 256]).is_ok()
            };
            if up(&mut ng, b"d7:command4:pinge") && up(&mut rp, b"V") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the SIP-core sockets do not answer; stderr:\n{}",
                engine.stderr()
            );
        }
        let mut ctl = engine.control();
        let stats = ctl.ok(json!({"cmd": "stats"}));
        let free_before = stats["free_port_pairs"].as_u64().expect("free_port_pairs");
        assert_eq!(free_before, u64::from(PORT_PAIRS), "{stats}");
        let tag = backend.as_str();
        let pool = (0..POOL)
            .map(|i| CallIds {
                id: format!("{i}-{tag}-chaos@127.0.0.1"),
                from: format!("{i}SIPpTag001"),
                to: format!("{i}SIPpTag011"),
            })
            .collect();
        Chaos {
            engine,
            ctl,
            ng,
            rp,
            rng: Rng::new(seed),
            backend,
            pool,
            named: BTreeSet::new(),
            fresh: FreshIds {
                backend: backend.as_str(),
                n: 0,
            },
            free_before,
            round: Vec::new(),
            problems: Vec::new(),
            lost: 0,
            sent: 0,
            mutated: 0,
        }
    }

    /// The call a step acts on: a new one like `pool[template]` (`fresh`), or
    /// one of the pool.
    fn pick_call(&mut self, fresh: bool, template: usize) -> CallIds {
        if fresh {
            let id = self.fresh.next();
            CallIds {
                id,
                ..self.pool[template].clone()
            }
        } else {
            self.pool[self.rng.below(POOL)].clone()
        }
    }

    /// Notes a problem with the request just sent.
    fn problem(&mut self, proto: Proto, request: &[u8], what: String) {
        self.problems.push(format!(
            "{} request {}: {what}",
            proto.name(),
            shown(request)
        ));
    }

    /// Sends one request body; returns the reply body, or notes the loss.
    fn exchange(&mut self, proto: Proto, body: &[u8]) -> Option<Vec<u8>> {
        let client = match proto {
            Proto::Ng => &mut self.ng,
            Proto::Rtpproxy => &mut self.rp,
        };
        let cookie = client.cookie();
        let reply = client.exchange(&cookie, body);
        self.sent += 1;
        self.round.push(Sent {
            proto,
            request: body.to_vec(),
            reply: reply.clone(),
        });
        if reply.is_none() {
            self.lost += 1;
            let running = self.engine.is_running();
            self.problem(
                proto,
                body,
                format!("no reply within {REPLY_TIMEOUT:?} (engine running: {running})"),
            );
            assert!(
                running,
                "rtpark died; problems so far:\n{}\nstderr:\n{}",
                self.problems.join("\n"),
                self.engine.stderr()
            );
        } else if self.rng.percent(3) {
            // A retransmission: answered from the reply cache, byte for byte.
            let client = match proto {
                Proto::Ng => &self.ng,
                Proto::Rtpproxy => &self.rp,
            };
            let again = client.exchange(&cookie, body);
            if again != reply {
                self.problem(
                    proto,
                    body,
                    format!(
                        "retransmission answered {:?}, first answer {:?}",
                        again.as_deref().map(shown),
                        reply.as_deref().map(shown)
                    ),
                );
            }
        }
        reply
    }

    /// An ng request that must succeed; returns the reply.
    fn ng_ok(&mut self, entries: Vec<(Vec<u8>, Value)>) -> Value {
        let body = Value::Dict(entries).to_bytes();
        let reply = self.exchange(Proto::Ng, &body);
        let checked = reply.as_deref().map(ng_reply);
        match checked {
            Some(Ok((v, result))) if result != "error" => v,
            other => panic!(
                "valid ng request {} failed: {other:?}\nstderr:\n{}",
                shown(&body),
                self.engine.stderr()
            ),
        }
    }

    /// An rtpproxy command that must succeed; returns the reply line.
    fn rp_ok(&mut self, command: &str) -> String {
        let reply = self.exchange(Proto::Rtpproxy, command.as_bytes());
        match reply.as_deref().map(rp_reply) {
            Some(Ok(line)) if !line.starts_with('E') => line,
            other => panic!(
                "valid rtpproxy command {command:?} failed: {other:?}\nstderr:\n{}",
                self.engine.stderr()
            ),
        }
    }

    /// One ng request, valid or mutated, with its reply checked.
    fn ng_step(&mut self) {
        let command = self.rng.weighted(NG_COMMANDS);
        let fresh_offer = command == "offer" && self.rng.percent(15);
        let call = self.pick_call(fresh_offer, 0);
        let mut entries = ng_valid(&mut self.rng, command, &call);
        let mutate = self.rng.percent(MUTATED_PERCENT);
        let mut byte_level = false;
        let mut body = if mutate && self.rng.percent(8) {
            byte_level = true;
            ng_garbage(&mut self.rng)
        } else {
            if mutate {
                for _ in 0..1 + self.rng.below(3) {
                    mutate_ng(&mut self.rng, &mut entries, &mut self.fresh);
                }
            }
            for (k, v) in &entries {
                if let (b"call-id", Value::Bytes(id)) = (k.as_slice(), v) {
                    self.named.insert(id.clone());
                }
            }
            let mut body = Value::Dict(entries.clone()).to_bytes();
            if mutate && self.rng.percent(25) {
                byte_level = true;
                mutate_bytes(&mut self.rng, &mut body);
            }
            body
        };
        body.truncate(MAX_BODY);
        if mutate {
            self.mutated += 1;
        }
        let Some(reply) = self.exchange(Proto::Ng, &body) else {
            return;
        };
        let (v, result) = match ng_reply(&reply) {
            Ok(r) => r,
            Err(why) => {
                self.problem(Proto::Ng, &body, format!("{why}: {}", shown(&reply)));
                return;
            }
        };
        if byte_level {
            return;
        }
        let sent_command = entries
            .iter()
            .find(|(k, _)| k == b"command")
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("");
        if !mutate && result != "ok" && result != "pong" && command == "ping" {
            self.problem(Proto::Ng, &body, format!("ping answered {}", shown(&reply)));
        }
        if result == "ok" && matches!(sent_command, "offer" | "answer") && v.get("sdp").is_none() {
            self.problem(Proto::Ng, &body, "an ok offer/answer without sdp".into());
        }
        let sent_id = entries
            .iter()
            .find(|(k, _)| k == b"call-id")
            .and_then(|(_, v)| v.as_str());
        if fresh_offer && result == "error" && sent_id == Some(call.id.as_str()) {
            self.check_no_call(Proto::Ng, &body, &call.id);
        }
        if result == "ok" && matches!(sent_command, "offer" | "answer") {
            let ports = v.get("sdp").and_then(Value::as_bytes).map(rtp_ports);
            if let (Some(id), Some(ports)) = (sent_id.map(str::to_owned), ports) {
                self.check_ports_owned(Proto::Ng, &body, &id, &ports);
            }
        }
    }

    /// After an offer or answer (`request`) of call `id` was answered with
    /// `ports`: each must be the RTP port of one of the call's legs now, or the
    /// SIP core would send media to a port no leg (or another call) owns.
    fn check_ports_owned(&mut self, proto: Proto, request: &[u8], id: &str, ports: &[u16]) {
        let info = self.ctl.request(json!({"cmd": "query_call", "call": id}));
        let owned: Vec<u64> = info["legs"]
            .as_array()
            .map(|legs| legs.iter().filter_map(|l| l["rtp_port"].as_u64()).collect())
            .unwrap_or_default();
        let stray: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| !owned.contains(&u64::from(*p)))
            .collect();
        if !stray.is_empty() {
            self.problem(
                proto,
                request,
                format!("the reply names port(s) {stray:?}, which no leg of call {id} owns; native query_call: {info}"),
            );
        }
    }

    /// Deletes a call or one leg behind the SIP core's back, as a PBX core on
    /// the native socket may.
    fn native_step(&mut self) {
        let call = self.pool[self.rng.below(POOL)].id.clone();
        if self.rng.percent(50) {
            self.ctl
                .request(json!({"cmd": "delete_call", "call": call}));
            return;
        }
        let info = self.ctl.request(json!({"cmd": "query_call", "call": call}));
        let legs: Vec<String> = info["legs"]
            .as_array()
            .map(|legs| {
                legs.iter()
                    .filter_map(|l| l["leg"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !legs.is_empty() {
            let leg = legs[self.rng.below(legs.len())].clone();
            self.ctl.request(json!({"cmd": "delete_leg", "leg": leg}));
        }
    }

    /// After a refused first offer (`request`): no call may exist under `id`.
    fn check_no_call(&mut self, proto: Proto, request: &[u8], id: &str) {
        let query = Value::Dict(vec![
            kv("call-id", Value::str(id)),
            kv("command", Value::str("query")),
        ])
        .to_bytes();
        let Some(reply) = self.exchange(Proto::Ng, &query) else {
            return;
        };
        if let Ok((v, result)) = ng_reply(&reply) {
            if result != "error" {
                let legs = self.ctl.request(json!({"cmd": "query_call", "call": id}));
                self.problem(
                    proto,
                    request,
                    format!(
                        "the first offer of {id} was refused, yet the call exists: ng query {}; native {legs}",
                        shown(&v.to_bytes())
                    ),
                );
            }
        }
    }

    /// One rtpproxy command, valid or mutated, with its reply checked.
    fn rp_step(&mut self) {
        let command = self.rng.weighted(RP_COMMANDS);
        let fresh_offer = command == "U" && self.rng.percent(15);
        let call = self.pick_call(fresh_offer, 1);
        let mut words = rp_valid(&mut self.rng, command, &call);
        let mutate = self.rng.percent(MUTATED_PERCENT);
        let mut byte_level = false;
        let mut body = if mutate && self.rng.percent(8) {
            byte_level = true;
            rp_garbage(&mut self.rng)
        } else {
            if mutate {
                for _ in 0..1 + self.rng.below(3) {
                    if words.is_empty() {
                        words.push(b"V".to_vec());
                    }
                    mutate_rp(&mut self.rng, &mut words, &mut self.fresh);
                }
            }
            if let Some(id) = words.get(1) {
                self.named.insert(id.clone());
            }
            let sep: &[u8] = if mutate && self.rng.percent(10) {
                self.rng.pick(&[&b"\t"[..], b"  ", b"\r\n", b" \t "])
            } else {
                b" "
            };
            let mut body = words.join(sep);
            if mutate && self.rng.percent(20) {
                byte_level = true;
                mutate_bytes(&mut self.rng, &mut body);
            }
            body
        };
        body.truncate(MAX_BODY);
        if mutate {
            self.mutated += 1;
        }
        let Some(reply) = self.exchange(Proto::Rtpproxy, &body) else {
            return;
        };
        let line = match rp_reply(&reply) {
            Ok(line) => line,
            Err(why) => {
                self.problem(Proto::Rtpproxy, &body, format!("{why}: {}", shown(&reply)));
                return;
            }
        };
        if byte_level {
            return;
        }
        let first = words.first().cloned().unwrap_or_default();
        if matches!(first.first(), Some(b'U' | b'L')) && !line.starts_with('E') && line != "0" {
            self.check_port_reply(&body, &line);
            // The call-id as rtpproxy reads it: the second word.
            let id = body
                .split(|b| b" \t\r\n".contains(b))
                .filter(|w| !w.is_empty())
                .nth(1)
                .and_then(|w| std::str::from_utf8(w).ok())
                .map(str::to_owned);
            let port = line.split(' ').next().and_then(|p| p.parse::<u16>().ok());
            if let (Some(id), Some(port)) = (id, port) {
                self.check_ports_owned(Proto::Rtpproxy, &body, &id, &[port]);
            }
        }
        if fresh_offer
            && line.starts_with('E')
            && first.first() == Some(&b'U')
            && words.get(1).map(Vec::as_slice) == Some(call.id.as_bytes())
        {
            self.check_no_call(Proto::Rtpproxy, &body, &call.id);
        }
    }

    /// A `U`/`L` reply must name one of the engine's even ports and a real address.
    fn check_port_reply(&mut self, request: &[u8], line: &str) {
        let words: Vec<&str> = line.split(' ').collect();
        let port = words.first().and_then(|p| p.parse::<u16>().ok());
        let in_range = port.is_some_and(|p| {
            (self.engine.port_min..=self.engine.port_max).contains(&p) && p % 2 == 0
        });
        let addr_ok = match words.as_slice() {
            [_, addr] => addr
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| !a.is_unspecified()),
            [_, addr, "6"] => addr
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|a| !a.is_unspecified()),
            _ => false,
        };
        if !in_range || !addr_ok {
            self.problem(
                Proto::Rtpproxy,
                request,
                format!("U/L reply {line:?} is not `PORT ADDRESS` with a port of the engine"),
            );
        }
    }

    /// A whole call over ng as Kamailio runs it, every step checked.
    fn ng_dialog(&mut self) {
        let id = self.fresh.next();
        let c = CallIds {
            id: id.clone(),
            from: "healthSIPpTag001".into(),
            to: "healthSIPpTag011".into(),
        };
        let pong = self.ng_ok(vec![kv("command", Value::str("ping"))]);
        assert_eq!(pong.get("result").and_then(Value::as_str), Some("pong"));
        let mut rng = Rng::new(1);
        for command in [
            "offer",
            "answer",
            "play media",
            "block media",
            "stop media",
            "unblock media",
            "silence media",
            "unsilence media",
            "query",
            "statistics",
            "list",
        ] {
            let mut e = ng_valid(&mut rng, command, &c);
            // Keep the dialog plain: sendrecv, no hold music.
            e.retain(|(k, _)| k != b"moh");
            if let Some((_, v)) = e.iter_mut().find(|(k, _)| k == b"sdp") {
                *v = Value::str(&sdp(16000, "sendrecv"));
            }
            let reply = self.ng_ok(e);
            if matches!(command, "offer" | "answer") {
                assert!(reply.get("sdp").is_some(), "{command} reply without sdp");
            }
        }
        self.ng_ok(ng_valid(&mut rng, "delete", &c));
        let gone = Value::Dict(vec![
            kv("call-id", Value::str(&id)),
            kv("command", Value::str("query")),
        ]);
        let reply = self.exchange(Proto::Ng, &gone.to_bytes());
        let result = reply.as_deref().map(ng_reply).and_then(Result::ok);
        assert_eq!(
            result.map(|(_, r)| r).as_deref(),
            Some("error"),
            "a deleted call is unknown to query"
        );
    }

    /// A whole call over rtpproxy as Kamailio runs it, every step checked.
    fn rp_dialog(&mut self) {
        let id = self.fresh.next();
        let (from, to) = ("healthSIPpTag001", "healthSIPpTag011");
        assert_eq!(self.rp_ok("V"), "20040107");
        assert_eq!(self.rp_ok("VF 20050322"), "1");
        let u = self.rp_ok(&format!("Uc0,101 {id} 127.0.0.1 17100 {from};1"));
        self.check_port_reply(b"U", &u);
        let l = self.rp_ok(&format!("Lc0,101 {id} 127.0.0.1 16100 {from};1 {to};1"));
        self.check_port_reply(b"L", &l);
        assert_eq!(
            self.rp_ok(&format!("P-1 {id} default session {to};1 {from};1")),
            "0"
        );
        assert_eq!(self.rp_ok(&format!("S {id} {to};1 {from};1")), "0");
        let q = self.rp_ok(&format!("Q {id} {from};1 {to};1"));
        assert_eq!(q.split(' ').count(), 5, "Q reply {q:?}");
        self.rp_ok("I");
        self.rp_ok("G nsess_created");
        assert_eq!(self.rp_ok(&format!("D {id} {from} {to}")), "0");
    }

    /// Deletes every call through the SIP-core protocols: each call-id named,
    /// then whatever ng `list` still shows. Returns how many were deleted.
    fn delete_everything(&mut self) -> usize {
        let mut deleted = 0;
        let named = std::mem::take(&mut self.named);
        for (i, id) in named.iter().enumerate() {
            let text = std::str::from_utf8(id).ok().filter(|t| {
                !t.is_empty() && t.len() < 1000 && !t.contains([' ', '\t', '\r', '\n', '\0'])
            });
            match text {
                Some(t) if i % 2 == 0 => {
                    let reply = self.exchange(Proto::Rtpproxy, format!("D {t} x").as_bytes());
                    if reply.as_deref() == Some(b"0\n") {
                        deleted += 1;
                    }
                }
                _ => {
                    let req = Value::Dict(vec![
                        kv("call-id", Value::Bytes(id.clone())),
                        kv("command", Value::str("delete")),
                    ]);
                    let reply = self.exchange(Proto::Ng, &req.to_bytes());
                    if reply
                        .as_deref()
                        .map(ng_reply)
                        .and_then(Result::ok)
                        .is_some_and(|r| r.1 == "ok")
                    {
                        deleted += 1;
                    }
                }
            }
        }
        // Calls whose id a flipped byte changed: ng `list` shows them.
        for _ in 0..200 {
            let req = Value::Dict(vec![
                kv("limit", Value::int(1)),
                kv("command", Value::str("list")),
            ]);
            let body = req.to_bytes();
            let Some(reply) = self.exchange(Proto::Ng, &body) else {
                break;
            };
            let calls: Vec<Value> = ng_reply(&reply)
                .ok()
                .and_then(|(v, _)| {
                    v.get("calls")
                        .and_then(Value::as_list)
                        .map(<[Value]>::to_vec)
                })
                .unwrap_or_default();
            let Some(id) = calls.first().and_then(Value::as_bytes) else {
                return deleted;
            };
            let req = Value::Dict(vec![
                kv("call-id", Value::bytes(id)),
                kv("command", Value::str("delete")),
            ]);
            let reply = self.exchange(Proto::Ng, &req.to_bytes());
            let ok = reply
                .as_deref()
                .map(ng_reply)
                .and_then(Result::ok)
                .is_some_and(|r| r.1 == "ok");
            assert!(
                ok,
                "ng list shows {}, but delete fails: {:?}",
                shown(id),
                reply.as_deref().map(shown)
            );
            deleted += 1;
        }
        panic!("ng list still shows calls after 200 deletes");
    }

    /// Asserts the engine holds no call and no leg and every port pair is free.
    fn assert_nothing_leaked(&mut self, when: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let stats = self.ctl.ok(json!({"cmd": "stats"}));
            let clean = stats["legs"] == json!(0)
                && stats["calls"] == json!(0)
                && stats["free_port_pairs"] == json!(self.free_before);
            if clean {
                return;
            }
            if Instant::now() > deadline {
                let calls = self.ctl.ok(json!({"cmd": "list_calls"}));
                let log = self.write_round_log();
                panic!(
                    "{when}: every call was deleted over ng/rtpproxy, yet stats show {stats} \
                     (free port pairs before: {}); native list_calls: {calls}\n\
                     requests of this round: {}\nproblems:\n{}",
                    self.free_before,
                    log.display(),
                    self.problems.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes the requests of the round in progress to a log; returns its path.
    fn write_round_log(&self) -> PathBuf {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("control-chaos-{}.log", self.backend.as_str()));
        let text: String = self
            .round
            .iter()
            .map(|s| {
                format!(
                    "{} {} -> {}\n",
                    s.proto.name(),
                    shown(&s.request),
                    s.reply.as_deref().map_or("NO REPLY".into(), shown)
                )
            })
            .collect();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

/// Rounds of chaos on both protocols, each ending with every call deleted and
/// the engine checked for leaks, then a last check of liveness and stderr.
fn mutated_requests_get_replies_and_leak_nothing(backend: Backend) {
    let started = Instant::now();
    let seed = std::env::var("RTPARK_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c4a0_5eed_c4a0)
        ^ (backend as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let dir = TempDir::new();
    let mut chaos = Chaos::start(backend, &dir, seed);
    for round in 0..ROUNDS {
        chaos.round.clear();
        chaos.ng_dialog();
        chaos.rp_dialog();
        for _ in 0..REQUESTS_PER_ROUND {
            if chaos.rng.percent(2) {
                chaos.native_step();
            } else if chaos.rng.percent(50) {
                chaos.ng_step();
            } else {
                chaos.rp_step();
            }
            if chaos.lost >= MAX_LOST {
                break;
            }
        }
        if chaos.lost >= MAX_LOST {
            break;
        }
        chaos.delete_everything();
        chaos.assert_nothing_leaked(&format!("after round {round}"));
    }
    if chaos.engine.stderr().contains("panicked") {
        chaos
            .problems
            .push("rtpark's stderr reports a panic".into());
    }
    if !chaos.problems.is_empty() {
        const SHOWN: usize = 12;
        let log = chaos.write_round_log();
        panic!(
            "seed {seed:#x}, {} requests ({} mutated): {} problem(s), the first {SHOWN}:\n{}\n\
             last round's requests: {}\nstderr:\n{}",
            chaos.sent,
            chaos.mutated,
            chaos.problems.len(),
            chaos.problems[..chaos.problems.len().min(SHOWN)].join("\n"),
            log.display(),
            chaos.engine.stderr()
        );
    }
    chaos.ng_dialog();
    chaos.rp_dialog();
    chaos.delete_everything();
    chaos.assert_nothing_leaked("at the end");
    assert!(chaos.engine.is_running(), "rtpark exited");
    let stderr = chaos.engine.stderr();
    assert!(
        !stderr.contains("panicked"),
        "rtpark panicked during the chaos:\n{stderr}"
    );
    eprintln!(
        "{}: {} requests ({} mutated) in {:?}",
        backend.as_str(),
        chaos.sent,
        chaos.mutated,
        started.elapsed()
    );
}
