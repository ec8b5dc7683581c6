//! Kamailio's `rtpengine` module driving rtpark over the ng protocol: offer and
//! answer rewrite only the SDP's address and port, and phones relay through
//! what the rewritten SDP says; retransmissions are answered from the reply
//! cache; `play media`/`stop media` put music into one well-formed stream;
//! `block media` and `silence media` act on one party's audio; a `moh`
//! dictionary turns a later `a=sendonly` re-offer into music for the held
//! party; errors come back as `result: error` with a readable reason. Real
//! binary, real sockets, both backends.
//!
//! Which source a packet came from is read from its payload: the phones tag
//! theirs, the `default` class is a 600 Hz tone.

#[macro_use]
mod support;

use rtpark::control::bencode::{decode, Value};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use support::*;

backend_tests!(
    offer_answer_over_udp_rewrite_only_address_and_port,
    play_and_stop_media_over_unix_keep_one_stream,
    block_and_silence_media_act_on_one_party,
    moh_dictionary_plays_music_while_held,
    errors_list_delete_and_statistics,
    statistics_count_played_packets_apart_from_relayed,
);

/// How long a control reply or an awaited stream condition may take.
const TIMEOUT: Duration = Duration::from_secs(10);

const TAG_CALLER: [u8; 4] = *b"\x03CLR";
const TAG_CALLEE: [u8; 4] = *b"\x03CLE";
const SSRC_CALLER: u32 = 0x5eed_0a11;
const SSRC_CALLEE: u32 = 0x5eed_0b22;

// ---------------------------------------------------------------------------
// The module's side of the sockets.
// ---------------------------------------------------------------------------

/// An ng client: `udp:` sends `cookie dict` datagrams from one socket, `unix:`
/// one bare dictionary per connection.
enum Ng {
    Udp {
        sock: UdpSocket,
        to: SocketAddr,
        next_cookie: u32,
    },
    Unix(PathBuf),
}

impl Ng {
    fn udp(port: u16) -> Ng {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind ng client");
        sock.set_read_timeout(Some(TIMEOUT))
            .expect("set read timeout");
        Ng::Udp {
            sock,
            to: SocketAddr::from(([127, 0, 0, 1], port)),
            next_cookie: 1,
        }
    }

    /// Sends a whole datagram and returns the reply datagram (`udp:` only).
    fn datagram(&self, datagram: &[u8]) -> Vec<u8> {
        let Ng::Udp { sock, to, .. } = self else {
            panic!("datagram() is for udp: clients");
        };
        sock.send_to(datagram, to).expect("send ng datagram");
        let mut buf = vec![0u8; 65536];
        let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no ng reply to {:?} within {TIMEOUT:?}: {e}",
                String::from_utf8_lossy(datagram)
            )
        });
        assert_eq!(from, *to, "reply from another address");
        buf.truncate(n);
        buf
    }

    /// Sends a request body (a cookie is added on `udp:`) and returns the reply body.
    fn raw(&mut self, body: &[u8]) -> Vec<u8> {
        match self {
            Ng::Udp { next_cookie, .. } => {
                let cookie = format!("{}_{}", std::process::id(), next_cookie);
                *next_cookie += 1;
                let mut datagram = format!("{cookie} ").into_bytes();
                datagram.extend_from_slice(body);
                let reply = self.datagram(&datagram);
                reply
                    .strip_prefix(format!("{cookie} ").as_bytes())
                    .unwrap_or_else(|| {
                        panic!(
                            "reply does not start with cookie {cookie}: {:?}",
                            String::from_utf8_lossy(&reply)
                        )
                    })
                    .to_vec()
            }
            Ng::Unix(path) => {
                let mut s = UnixStream::connect(&*path)
                    .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
                s.set_read_timeout(Some(TIMEOUT)).expect("set read timeout");
                s.write_all(body).expect("send ng request");
                let mut reply = Vec::new();
                s.read_to_end(&mut reply)
                    .unwrap_or_else(|e| panic!("no ng reply on {}: {e}", path.display()));
                reply
            }
        }
    }

    /// Sends `request`, returns the decoded reply dictionary.
    fn ask(&mut self, request: &Value) -> Value {
        let reply = self.raw(&request.to_bytes());
        let v = decode(&reply).unwrap_or_else(|e| {
            panic!(
                "reply is not bencode ({e:?}): {:?}",
                String::from_utf8_lossy(&reply)
            )
        });
        assert!(
            v.as_dict().is_some(),
            "reply is not a dictionary: {}",
            show(&v)
        );
        v
    }

    /// Sends `request`, asserts `result: ok`, returns the reply.
    fn ok(&mut self, request: &Value) -> Value {
        let reply = self.ask(request);
        assert_eq!(
            text(&reply, "result"),
            "ok",
            "request {} was refused: {}",
            show(request),
            show(&reply)
        );
        reply
    }

    /// Sends `request`, asserts `result: error`, returns the `error-reason`.
    fn error(&mut self, request: &Value) -> String {
        let reply = self.ask(request);
        error_reason(&reply, &show(request))
    }
}

/// Asserts `reply` is `result: error` with a non-empty reason; returns the reason.
fn error_reason(reply: &Value, request: &str) -> String {
    assert_eq!(
        text(reply, "result"),
        "error",
        "{request} should have failed: {}",
        show(reply)
    );
    let reason = text(reply, "error-reason");
    assert!(
        reason.len() > 10,
        "error-reason too short to help: {}",
        show(reply)
    );
    reason
}

/// A request dictionary with its keys in the order given, as the module sends them.
fn request(command: &str, fields: &[(&str, Value)]) -> Value {
    let mut entries = vec![(b"command".to_vec(), Value::str(command))];
    entries.extend(
        fields
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone())),
    );
    Value::Dict(entries)
}

/// A request, readable in a failure message.
fn show(v: &Value) -> String {
    String::from_utf8_lossy(&v.to_bytes()).into_owned()
}

/// The text under `key`, or panic.
fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text under {key:?} in {}", show(v)))
        .to_owned()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    s.local_addr().expect("probe address").port()
}

/// An engine listening for ng on `listen`, with the quick classes; returns
/// once the ng socket answers.
fn start(backend: Backend, dir: &TempDir, listen: &str) -> Engine {
    let engine = Engine::start(
        EngineOptions::new(backend)
            .config(&format!("listen_ng = [{}]", toml_string(listen)))
            .config(&quick_media(dir)),
    );
    // The native socket answers first; the SIP-core sockets are bound just after.
    let answers = || match listen.split_once(':') {
        Some(("udp", a)) => {
            let probe = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
            let _ = probe.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = probe.send_to(b"ready d7:command4:pinge", a);
            let mut buf = [0u8; 64];
            probe.recv_from(&mut buf).is_ok()
        }
        Some((_, path)) => UnixStream::connect(path).is_ok(),
        None => panic!("bad listen address {listen}"),
    };
    wait_until(
        &format!("rtpark listens on {listen}"),
        &engine,
        TIMEOUT,
        answers,
    );
    engine
}

/// An engine with an ng `unix:` socket and a client for it.
fn start_unix(backend: Backend, dir: &TempDir) -> (Engine, Ng) {
    let path = dir.join("ng.sock");
    let engine = start(backend, dir, &format!("unix:{}", path.display()));
    (engine, Ng::Unix(path))
}

// ---------------------------------------------------------------------------
// SDP.
// ---------------------------------------------------------------------------

/// An offer or answer as Asterisk writes it: session-level c=, PCMU and
/// telephone-event, CRLF line endings.
fn sdp(ip: &str, port: u16, direction: &str) -> String {
    [
        "v=0".to_owned(),
        format!("o=root 1821426934 1821426934 IN IP4 {ip}"),
        "s=Asterisk PBX 18.20.0".to_owned(),
        format!("c=IN IP4 {ip}"),
        "t=0 0".to_owned(),
        format!("m=audio {port} RTP/AVP 0 101"),
        "a=rtpmap:0 PCMU/8000".to_owned(),
        "a=rtpmap:101 telephone-event/8000".to_owned(),
        "a=fmtp:101 0-16".to_owned(),
        "a=ptime:20".to_owned(),
        "a=maxptime:150".to_owned(),
        format!("a={direction}"),
        String::new(),
    ]
    .join("\r\n")
}

/// Checks that `rewritten` is `original` with only the c= address (now
/// 127.0.0.1) and the m= port changed; returns that port.
fn rewritten_port(original: &str, reply: &Value, engine: &Engine) -> u16 {
    let body = reply
        .get("sdp")
        .and_then(Value::as_bytes)
        .unwrap_or_else(|| panic!("no sdp in {}", show(reply)));
    let body = std::str::from_utf8(body).expect("rewritten SDP is text");
    let port = body
        .split("\r\n")
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no m=audio port in {body:?}"));
    assert!(
        (engine.port_min..=engine.port_max).contains(&port),
        "m= port {port} is not rtpark's ({}..={})",
        engine.port_min,
        engine.port_max
    );
    let expected: String = original
        .split_inclusive("\r\n")
        .map(|line| {
            if line.starts_with("c=") {
                "c=IN IP4 127.0.0.1\r\n".to_owned()
            } else if let Some(rest) = line.strip_prefix("m=audio ") {
                let (_, tail) = rest.split_once(' ').expect("m= line has a port");
                format!("m=audio {port} {tail}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(
        body, expected,
        "only c= and the m= port change; every other line stays byte for byte"
    );
    port
}

// ---------------------------------------------------------------------------
// Calls and what phones heard.
// ---------------------------------------------------------------------------

/// A call between two phones on 127.0.0.1, set up by offer and answer.
struct Call {
    id: String,
    caller: Phone,
    callee: Phone,
    /// rtpark's port the caller sends to (from the answer).
    to_caller: u16,
    /// rtpark's port the callee sends to (from the offer).
    to_callee: u16,
}

const FROM_TAG: &str = "as5c0f1ab2";
const TO_TAG: &str = "as6d21e9f0";

/// Offer from the caller (plus `extra` keys), answer from the callee.
fn establish(ng: &mut Ng, engine: &Engine, id: &str, extra: &[(&str, Value)]) -> Call {
    let (caller, callee) = (Phone::new(), Phone::new());
    let offer_sdp = sdp("127.0.0.1", caller.addr().port(), "sendrecv");
    let mut fields = vec![
        ("call-id", Value::str(id)),
        ("from-tag", Value::str(FROM_TAG)),
        ("sdp", Value::str(&offer_sdp)),
    ];
    fields.extend(extra.iter().cloned());
    let reply = ng.ok(&request("offer", &fields));
    let to_callee = rewritten_port(&offer_sdp, &reply, engine);
    let answer_sdp = sdp("127.0.0.1", callee.addr().port(), "sendrecv");
    let reply = ng.ok(&request(
        "answer",
        &[
            ("call-id", Value::str(id)),
            ("from-tag", Value::str(FROM_TAG)),
            ("to-tag", Value::str(TO_TAG)),
            ("sdp", Value::str(&answer_sdp)),
        ],
    ));
    let to_caller = rewritten_port(&answer_sdp, &reply, engine);
    assert_ne!(to_caller, to_callee);
    Call {
        id: id.to_owned(),
        caller,
        callee,
        to_caller,
        to_callee,
    }
}

impl Call {
    /// A media command about one party (`from-tag`).
    fn about(&self, command: &str, tag: &str, extra: &[(&str, Value)]) -> Value {
        let mut fields = vec![
            ("call-id", Value::str(&self.id)),
            ("from-tag", Value::str(tag)),
        ];
        fields.extend(extra.iter().cloned());
        request(command, &fields)
    }
}

/// The native `query_call` entry of the leg a phone sends to (rtpark's `port`).
fn leg_on_port(ctl: &mut Control, call: &str, port: u16) -> serde_json::Value {
    let reply = ctl.ok(json!({"cmd": "query_call", "call": call}));
    reply["legs"]
        .as_array()
        .and_then(|legs| legs.iter().find(|l| l["rtp_port"] == json!(port)))
        .cloned()
        .unwrap_or_else(|| panic!("call {call} has no leg on port {port}: {reply}"))
}

fn counter(ctl: &mut Control, call: &str, port: u16, name: &str) -> u64 {
    let leg = leg_on_port(ctl, call, port);
    leg["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {leg}"))
}

/// Packets recorded from index `from` on that `pred` accepts.
fn count_from(rec: &Recorder, from: usize, pred: impl Fn(&RtpView) -> bool) -> usize {
    parse_all(&rec.snapshot())
        .iter()
        .skip(from)
        .filter(|p| pred(p))
        .count()
}

/// How long to let packets already in flight arrive after a change.
const SETTLE: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------

fn offer_answer_over_udp_rewrite_only_address_and_port(backend: Backend) {
    let dir = TempDir::new();
    let port = free_udp_port();
    let engine = start(backend, &dir, &format!("udp:127.0.0.1:{port}"));
    let mut kamailio = Ng::udp(port);
    let call_id = "3c2a7e9f41d0b5a8@10.20.30.40";
    // The phones sit on other loopback addresses, so the rewrite is visible.
    let caller = Endpoint::on_ip([127, 0, 0, 2]);
    let callee = Endpoint::on_ip([127, 0, 0, 3]);

    let offer_sdp = sdp("127.0.0.2", caller.addr().port(), "sendrecv");
    let offer = request(
        "offer",
        &[
            ("call-id", Value::str(call_id)),
            ("received-from", Value::str_list(["IP4", "127.0.0.2"])),
            ("from-tag", Value::str(FROM_TAG)),
            ("sdp", Value::str(&offer_sdp)),
        ],
    );
    let mut datagram = b"8812_1 ".to_vec();
    datagram.extend_from_slice(&offer.to_bytes());
    let first = kamailio.datagram(&datagram);
    let body = first
        .strip_prefix(b"8812_1 ")
        .unwrap_or_else(|| panic!("cookie lost: {:?}", String::from_utf8_lossy(&first)));
    let reply = decode(body).expect("offer reply is bencode");
    assert_eq!(text(&reply, "result"), "ok", "{}", show(&reply));
    let to_callee = rewritten_port(&offer_sdp, &reply, &engine);
    // The proxy did not hear the reply and sends the offer again.
    assert_eq!(
        kamailio.datagram(&datagram),
        first,
        "a retransmitted offer gets the identical reply"
    );

    let answer_sdp = sdp("127.0.0.3", callee.addr().port(), "sendrecv");
    let reply = kamailio.ok(&request(
        "answer",
        &[
            ("call-id", Value::str(call_id)),
            ("received-from", Value::str_list(["IP4", "127.0.0.3"])),
            ("from-tag", Value::str(FROM_TAG)),
            ("to-tag", Value::str(TO_TAG)),
            ("sdp", Value::str(&answer_sdp)),
        ],
    ));
    let to_caller = rewritten_port(&answer_sdp, &reply, &engine);
    assert_ne!(to_caller, to_callee);

    // Media through the rewritten ports, byte for byte, both ways.
    let engine_at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    for i in 0..5u16 {
        let forth = rtp(
            300 + i,
            160 * u32::from(i),
            SSRC_CALLER,
            0,
            &payload(u32::from(i), 160),
        );
        caller.send_to_port(&forth, to_caller);
        assert_eq!(
            callee.recv(),
            (forth, engine_at(to_callee)),
            "caller → callee {i}"
        );
        let back = rtp(
            900 + i,
            160 * u32::from(i),
            SSRC_CALLEE,
            0,
            &payload(50 + u32::from(i), 160),
        );
        callee.send_to_port(&back, to_callee);
        assert_eq!(
            caller.recv(),
            (back, engine_at(to_caller)),
            "callee → caller {i}"
        );
    }
    // A re-INVITE (new cookie, same SDP) keeps the ports; the old cookie still
    // gets the old reply.
    let reoffer = kamailio.ok(&offer);
    assert_eq!(rewritten_port(&offer_sdp, &reoffer, &engine), to_callee);
    assert_eq!(kamailio.datagram(&datagram), first);
    let list = kamailio.ok(&request("list", &[]));
    assert_eq!(
        list.get("calls"),
        Some(&Value::str_list([call_id])),
        "{}",
        show(&list)
    );
}

fn play_and_stop_media_over_unix_keep_one_stream(backend: Backend) {
    let dir = TempDir::new();
    let (engine, mut ng) = start_unix(backend, &dir);
    // The module's ping, as it sends it.
    assert_eq!(
        ng.raw(b"d7:command4:pinge"),
        b"d6:result4:ponge",
        "ping → pong"
    );
    let call = establish(&mut ng, &engine, "play-1@192.0.2.5", &[]);

    let (rec_callee, rec_caller) = (call.callee.rtp.record(), call.caller.rtp.record());
    let pacer_caller = call
        .caller
        .rtp
        .pace(call.to_caller, StreamSpec::pcmu(SSRC_CALLER, TAG_CALLER));
    let pacer_callee = call
        .callee
        .rtp
        .pace(call.to_callee, StreamSpec::pcmu(SSRC_CALLEE, TAG_CALLEE));
    let live = |rec: &Recorder, tag: [u8; 4]| count_from(rec, 0, |p| heard(p, tag) == Heard::Live);
    wait_until("the callee hears the caller", &engine, TIMEOUT, || {
        live(&rec_callee, TAG_CALLER) >= 15
    });

    // Music to the callee: its tag names the listener.
    let reply = ng.ok(&call.about("play media", TO_TAG, &[("file", Value::str("default"))]));
    let duration = reply
        .get("duration")
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("play media reply without duration: {}", show(&reply)));
    assert!(
        duration > 0 && duration % 20 == 0,
        "duration {duration} ms should be a positive whole number of 20 ms frames"
    );
    wait_until("the callee hears music", &engine, TIMEOUT, || {
        count_from(&rec_callee, 0, |p| heard(p, TAG_CALLER) == Heard::Music) >= 25
    });
    ng.ok(&call.about("stop media", TO_TAG, &[]));
    let live_before = live(&rec_callee, TAG_CALLER);
    wait_until(
        "the callee hears the caller again",
        &engine,
        TIMEOUT,
        || live(&rec_callee, TAG_CALLER) >= live_before + 15,
    );
    drop((pacer_caller, pacer_callee));
    std::thread::sleep(SETTLE);

    assert_live_music_live("the callee", &rec_callee.finish(), TAG_CALLER, &engine);
    let at_caller = parse_all(&rec_caller.finish());
    assert!(
        at_caller.len() >= 40
            && at_caller
                .iter()
                .all(|p| heard(p, TAG_CALLEE) == Heard::Live)
            && continuity_problems(&at_caller, &[]).is_empty(),
        "the caller hears the callee throughout, unaffected: {:?}",
        continuity_problems(&at_caller, &[])
    );
}

fn block_and_silence_media_act_on_one_party(backend: Backend) {
    let dir = TempDir::new();
    let (engine, mut ng) = start_unix(backend, &dir);
    let mut ctl = engine.control();
    let call = establish(&mut ng, &engine, "block-1@192.0.2.5", &[]);
    let rec = call.callee.rtp.record();
    let pacer = call
        .caller
        .rtp
        .pace(call.to_caller, StreamSpec::pcmu(SSRC_CALLER, TAG_CALLER));
    let from_caller = |p: &RtpView| p.payload.starts_with(&TAG_CALLER);
    wait_until("the callee hears the caller", &engine, TIMEOUT, || {
        count_from(&rec, 0, from_caller) >= 10
    });

    // Block the caller: its packets are dropped and counted.
    let blocked_before = counter(&mut ctl, &call.id, call.to_caller, "dropped_blocked");
    assert_eq!(blocked_before, 0);
    ng.ok(&call.about("block media", FROM_TAG, &[]));
    std::thread::sleep(SETTLE);
    let n0 = rec.len();
    wait_until(
        "25 of the caller's packets are blocked",
        &engine,
        TIMEOUT,
        || {
            counter(
                &mut engine.control(),
                &call.id,
                call.to_caller,
                "dropped_blocked",
            ) >= 25
        },
    );
    let n1 = rec.len();
    assert_eq!(
        n1 - n0,
        0,
        "the callee received {} packets while the caller was blocked",
        n1 - n0
    );
    ng.ok(&call.about("unblock media", FROM_TAG, &[]));
    wait_until("the caller is heard again", &engine, TIMEOUT, || {
        count_from(&rec, n1, from_caller) >= 10
    });
    let blocked = counter(&mut ctl, &call.id, call.to_caller, "dropped_blocked");
    std::thread::sleep(SETTLE);
    assert_eq!(
        counter(&mut ctl, &call.id, call.to_caller, "dropped_blocked"),
        blocked,
        "nothing is blocked after unblock media"
    );

    // Silence the caller: same packets, payload 0xff (µ-law silence).
    ng.ok(&call.about("silence media", FROM_TAG, &[]));
    std::thread::sleep(SETTLE);
    let s0 = rec.len();
    wait_until("25 silenced packets arrive", &engine, TIMEOUT, || {
        rec.len() >= s0 + 25
    });
    ng.ok(&call.about("unsilence media", FROM_TAG, &[]));
    let s1 = rec.len();
    std::thread::sleep(SETTLE);
    let u0 = rec.len();
    wait_until(
        "the caller's own audio is heard again",
        &engine,
        TIMEOUT,
        || count_from(&rec, u0, from_caller) >= 10,
    );
    let sent = pacer.finish();
    let packets = parse_all(&rec.finish());
    let silenced = &packets[s0..s1];
    for (i, p) in silenced.iter().enumerate() {
        assert!(
            p.ssrc == SSRC_CALLER && p.pt == 0 && p.payload == [0xffu8; 160],
            "silenced packet {i}: ssrc {:08x} pt {} payload {:02x?}",
            p.ssrc,
            p.pt,
            &p.payload[..p.payload.len().min(8)]
        );
        assert!(
            sent.iter().any(|&(seq, _)| seq == p.seq),
            "silenced packet {i} has sequence number {} the caller never sent",
            p.seq
        );
    }
    assert!(
        continuity_problems(silenced, &[]).is_empty(),
        "silenced packets keep the caller's sequence: {:?}",
        continuity_problems(silenced, &[])
    );
    assert_eq!(
        counter(&mut ctl, &call.id, call.to_caller, "dropped_blocked"),
        blocked,
        "PCMU is silenced in place, not dropped"
    );
    for (i, p) in packets[u0..].iter().enumerate() {
        let mut original = vec![0x55u8; 160];
        original[..4].copy_from_slice(&TAG_CALLER);
        original[4..6].copy_from_slice(&p.seq.to_be_bytes());
        assert_eq!(
            p.payload, original,
            "packet {i} after unsilence carries the caller's own payload"
        );
    }
}

fn moh_dictionary_plays_music_while_held(backend: Backend) {
    let dir = TempDir::new();
    let (engine, mut ng) = start_unix(backend, &dir);
    let mut ctl = engine.control();
    let moh = Value::Dict(vec![(b"file".to_vec(), Value::str("default"))]);
    let call = establish(&mut ng, &engine, "moh-1@192.0.2.5", &[("moh", moh)]);

    let (rec_callee, rec_caller) = (call.callee.rtp.record(), call.caller.rtp.record());
    let pacer_caller = call
        .caller
        .rtp
        .pace(call.to_caller, StreamSpec::pcmu(SSRC_CALLER, TAG_CALLER));
    let pacer_callee = call
        .callee
        .rtp
        .pace(call.to_callee, StreamSpec::pcmu(SSRC_CALLEE, TAG_CALLEE));
    let live = |rec: &Recorder, from: usize, tag: [u8; 4]| {
        count_from(rec, from, |p| heard(p, tag) == Heard::Live)
    };
    wait_until("both phones hear each other", &engine, TIMEOUT, || {
        live(&rec_callee, 0, TAG_CALLER) >= 15 && live(&rec_caller, 0, TAG_CALLEE) >= 15
    });

    // The caller puts the callee on hold: a re-INVITE with a=sendonly.
    let mut reoffer = |direction: &str| {
        let body = sdp("127.0.0.1", call.caller.addr().port(), direction);
        let reply = ng.ok(&request(
            "offer",
            &[
                ("call-id", Value::str(&call.id)),
                ("from-tag", Value::str(FROM_TAG)),
                ("to-tag", Value::str(TO_TAG)),
                ("sdp", Value::str(&body)),
            ],
        ));
        assert_eq!(
            rewritten_port(&body, &reply, &engine),
            call.to_callee,
            "a re-offer keeps the callee's port"
        );
    };
    reoffer("sendonly");
    std::thread::sleep(SETTLE);
    let held_from = rec_caller.len();
    wait_until("the held callee hears music", &engine, TIMEOUT, || {
        count_from(&rec_callee, 0, |p| heard(p, TAG_CALLER) == Heard::Music) >= 25
    });
    let held_until = rec_caller.len();
    assert!(
        counter(&mut ctl, &call.id, call.to_callee, "dropped_held") > 0,
        "the held callee's audio is counted as dropped"
    );
    assert_eq!(
        leg_on_port(&mut ctl, &call.id, call.to_callee)["state"],
        json!("held"),
        "the callee's leg is held"
    );
    let leaked = parse_all(&rec_caller.snapshot()[held_from..held_until])
        .iter()
        .filter(|p| heard(p, TAG_CALLEE) == Heard::Live)
        .count();
    assert_eq!(
        leaked, 0,
        "the held callee's audio must not reach the caller"
    );

    // Resume: a re-INVITE with a=sendrecv.
    reoffer("sendrecv");
    let callee_live = live(&rec_callee, 0, TAG_CALLER);
    let caller_live = live(&rec_caller, 0, TAG_CALLEE);
    wait_until(
        "both phones hear each other again",
        &engine,
        TIMEOUT,
        || {
            live(&rec_callee, 0, TAG_CALLER) >= callee_live + 15
                && live(&rec_caller, 0, TAG_CALLEE) >= caller_live + 15
        },
    );
    assert_eq!(
        leg_on_port(&mut ctl, &call.id, call.to_callee)["state"],
        json!("live"),
        "the callee's leg is live again"
    );
    drop((pacer_caller, pacer_callee));
    std::thread::sleep(SETTLE);
    assert_live_music_live("the callee", &rec_callee.finish(), TAG_CALLER, &engine);
    drop(rec_caller);
}

fn errors_list_delete_and_statistics(backend: Backend) {
    let dir = TempDir::new();
    let port = free_udp_port();
    let engine = start(backend, &dir, &format!("udp:127.0.0.1:{port}"));
    let mut ctl = engine.control();
    let free_before = ctl.ok(json!({"cmd": "stats"}))["free_port_pairs"].clone();
    let mut ng = Ng::udp(port);

    // An answer for a call nobody offered.
    let reason = ng.error(&request(
        "answer",
        &[
            ("call-id", Value::str("never-offered@192.0.2.5")),
            ("from-tag", Value::str(FROM_TAG)),
            ("to-tag", Value::str(TO_TAG)),
            ("sdp", Value::str(&sdp("127.0.0.1", 40000, "sendrecv"))),
        ],
    ));
    assert!(
        reason.contains("never-offered@192.0.2.5"),
        "the reason names the call: {reason}"
    );
    // An offer whose SDP does not parse.
    let reason = ng.error(&request(
        "offer",
        &[
            ("call-id", Value::str("bad-sdp@192.0.2.5")),
            ("from-tag", Value::str(FROM_TAG)),
            ("sdp", Value::str("this is not SDP\r\n")),
        ],
    ));
    assert!(reason.contains("SDP"), "the reason says what: {reason}");
    // Bodies that are not a dictionary.
    for body in [&b"l4:spame"[..], b"i42e", b"{\"command\":\"ping\"}"] {
        let reply = decode(&ng.raw(body)).expect("error reply is bencode");
        error_reason(&reply, &String::from_utf8_lossy(body));
    }
    // Nothing was created by all that.
    let list = ng.ok(&request("list", &[]));
    assert_eq!(
        list.get("calls"),
        Some(&Value::list(Vec::new())),
        "{}",
        show(&list)
    );

    // Two calls, listed; delete one; it is gone, the other stays.
    let call_a = establish(&mut ng, &engine, "list-a@192.0.2.5", &[]);
    let call_b = establish(&mut ng, &engine, "list-b@192.0.2.5", &[]);
    let list = ng.ok(&request("list", &[]));
    assert_eq!(
        list.get("calls"),
        Some(&Value::str_list([call_a.id.as_str(), call_b.id.as_str()])),
        "{}",
        show(&list)
    );
    ng.ok(&request("query", &[("call-id", Value::str(&call_a.id))]));
    ng.ok(&request(
        "delete",
        &[
            ("call-id", Value::str(&call_a.id)),
            ("from-tag", Value::str(FROM_TAG)),
        ],
    ));
    let reason = ng.error(&request("query", &[("call-id", Value::str(&call_a.id))]));
    assert!(reason.contains(&call_a.id), "{reason}");
    let list = ng.ok(&request("list", &[]));
    assert_eq!(
        list.get("calls"),
        Some(&Value::str_list([call_b.id.as_str()])),
        "{}",
        show(&list)
    );
    ng.ok(&request(
        "delete",
        &[
            ("call-id", Value::str(&call_b.id)),
            ("from-tag", Value::str(FROM_TAG)),
        ],
    ));
    let s = ctl.ok(json!({"cmd": "stats"}));
    assert_eq!(
        (&s["calls"], &s["legs"], &s["free_port_pairs"]),
        (&json!(0), &json!(0), &free_before),
        "delete frees every leg and port: {s}"
    );
    let stats = ng.ok(&request("statistics", &[]));
    let current = stats
        .get("statistics")
        .and_then(|s| s.get("currentstatistics"))
        .unwrap_or_else(|| panic!("no currentstatistics: {}", show(&stats)));
    assert_eq!(current.get("sessionsown").and_then(Value::as_int), Some(0));
    let total = stats
        .get("statistics")
        .and_then(|s| s.get("totalstatistics"))
        .unwrap_or_else(|| panic!("no totalstatistics: {}", show(&stats)));
    assert_eq!(
        (
            total.get("managedsessions").and_then(Value::as_int),
            total.get("closedsessions").and_then(Value::as_int)
        ),
        (Some(2), Some(2)),
        "two calls made and closed: {}",
        show(&stats)
    );
}

/// `statistics` tells packets relayed between the phones from packets rtpark
/// played itself: `packetsrelayed` and `mediapackets` do not overlap.
fn statistics_count_played_packets_apart_from_relayed(backend: Backend) {
    let dir = TempDir::new();
    let (engine, mut ng) = start_unix(backend, &dir);
    let call = establish(&mut ng, &engine, "stats-1@192.0.2.5", &[]);
    for i in 0..10u16 {
        let forth = rtp(
            i,
            160 * u32::from(i),
            SSRC_CALLER,
            0,
            &payload(u32::from(i), 160),
        );
        call.caller.rtp.send_to_port(&forth, call.to_caller);
        assert_eq!(call.callee.rtp.recv().0, forth);
        let back = rtp(
            i,
            160 * u32::from(i),
            SSRC_CALLEE,
            0,
            &payload(u32::from(i), 160),
        );
        call.callee.rtp.send_to_port(&back, call.to_callee);
        assert_eq!(call.caller.rtp.recv().0, back);
    }
    // One second of audio from a file: 50 packets nobody sent.
    let wav = dir.join("one-second.wav");
    write_wav(&wav, 8000, &tone(8000, 1.0, &[(1000.0, 0.3)]));
    let rec = call.callee.rtp.record();
    let path = wav.to_str().expect("temp paths are UTF-8");
    let reply = ng.ok(&call.about("play media", TO_TAG, &[("file", Value::str(path))]));
    assert_eq!(
        reply.get("duration").and_then(Value::as_int),
        Some(1000),
        "{}",
        show(&reply)
    );
    wait_until("the file has played", &engine, TIMEOUT, || rec.len() >= 25);
    // The file has ended when nothing new came for 300 ms.
    let mut seen = 0;
    while rec.len() != seen {
        seen = rec.len();
        std::thread::sleep(Duration::from_millis(300));
    }
    // 50 unless a stalled worker skipped some (it never sends them late).
    let played = rec.finish().len() as i64;
    assert!(
        (25..=50).contains(&played),
        "{played} packets from a 1 s file"
    );

    let stats = ng.ok(&request("statistics", &[]));
    let total = stats
        .get("statistics")
        .and_then(|s| s.get("totalstatistics"))
        .unwrap_or_else(|| panic!("no totalstatistics: {}", show(&stats)));
    let get = |key: &str| total.get(key).and_then(Value::as_int);
    assert_eq!(
        (get("packetsrelayed"), get("mediapackets")),
        (Some(20), Some(played)),
        "20 packets relayed between the phones, {played} played from the file: {}",
        show(&stats)
    );
}
