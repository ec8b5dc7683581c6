//! Kamailio's `rtpproxy` module driving rtpark, command for command: the
//! version checks, the offer and answer of a call (`U`/`L`) with phones that
//! relay through the ports the replies name, the counters of `Q`, music to the
//! callee (`P`/`S`) inside one well-formed RTP stream, and `D`; prompts from
//! raw makeann files, audio files and the library; the datagram transports
//! (`udp:` with cookies and a reply cache, `cunix:` with framed commands); and
//! garbage. Real binary, real sockets, both backends.
//!
//! Which source a packet came from is read from its payload: the phones tag
//! theirs, the `default` class is a 600 Hz tone, `calm` 800 Hz.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

backend_tests!(
    kamailio_call_relays_plays_music_and_deletes,
    query_and_info_count_played_packets_apart_from_relayed,
    prompts_resolve_raw_files_audio_files_and_library,
    play_count_zero_stops_what_plays,
    play_in_session_codecs_needs_the_codec_list,
    udp_cookies_reply_cache_cunix_framing_and_garbage,
    absurd_media_numbers_are_refused,
);

/// How long a control reply or an awaited stream condition may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A Call-ID and tags as a SIP stack makes them.
const CALL_ID: &str = "a84b4c76e66710@pc33.atlanta.example.com";
const FROM_TAG: &str = "1928301774";
const TO_TAG: &str = "a6c85cf";

const TAG_CALLER: [u8; 4] = *b"\x02CLR";
const TAG_CALLEE: [u8; 4] = *b"\x02CLE";

/// Frequency of the `calm` class of [`quick_media`].
const CALM_HZ: f64 = 800.0;
/// Frequency of the WAV prompt.
const WAV_HZ: f64 = 1000.0;

// ---------------------------------------------------------------------------
// The module's side of the sockets.
// ---------------------------------------------------------------------------

/// One command on a `unix:` socket as the module sends it (the bare command,
/// no cookie); the reply is everything until rtpark closes the connection.
fn unix_command(path: &Path, command: &str) -> String {
    let mut s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(TIMEOUT)).expect("set read timeout");
    s.write_all(command.as_bytes())
        .unwrap_or_else(|e| panic!("cannot send {command:?}: {e}"));
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .unwrap_or_else(|e| panic!("no reply to {command:?} on {}: {e}", path.display()));
    String::from_utf8(reply).unwrap_or_else(|e| panic!("reply to {command:?} is not text: {e}"))
}

/// A `udp:` client: `cookie command` datagrams from one socket.
struct UdpClient {
    sock: UdpSocket,
    to: SocketAddr,
}

impl UdpClient {
    fn new(port: u16) -> UdpClient {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind control client");
        sock.set_read_timeout(Some(TIMEOUT))
            .expect("set read timeout");
        UdpClient {
            sock,
            to: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Sends one datagram and returns the reply datagram.
    fn exchange(&self, datagram: &[u8]) -> Vec<u8> {
        self.sock
            .send_to(datagram, self.to)
            .expect("send control datagram");
        let mut buf = vec![0u8; 65536];
        let (n, from) = self.sock.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no reply to {:?} within {TIMEOUT:?}: {e}",
                String::from_utf8_lossy(datagram)
            )
        });
        assert_eq!(from, self.to, "reply from another address");
        buf.truncate(n);
        buf
    }

    /// `cookie command` → the whole reply, as text.
    fn ask(&self, cookie: &str, command: &str) -> String {
        let reply = self.exchange(format!("{cookie} {command}").as_bytes());
        String::from_utf8(reply).expect("reply is text")
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    s.local_addr().expect("probe address").port()
}

/// The port of a `U`/`L` reply `PORT 127.0.0.1\n`, checked against the engine's range.
fn port_reply(reply: &str, engine: &Engine) -> u16 {
    let words: Vec<&str> = reply.strip_suffix('\n').unwrap_or("").split(' ').collect();
    let port = match words.as_slice() {
        [port, "127.0.0.1"] => port.parse::<u16>().ok(),
        _ => None,
    };
    let port = port.unwrap_or_else(|| {
        panic!(
            "expected `PORT 127.0.0.1\\n`, got {reply:?}; stderr:\n{}",
            engine.stderr()
        )
    });
    assert!(
        (engine.port_min..=engine.port_max).contains(&port) && port % 2 == 0,
        "port {port} is not an even port of {}..={}",
        engine.port_min,
        engine.port_max
    );
    port
}

/// The five numbers of a `Q` reply: ttl, in_a, in_o, relayed, dropped.
fn query_reply(reply: &str) -> [i64; 5] {
    let nums: Vec<i64> = reply
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("Q reply without newline: {reply:?}"))
        .split(' ')
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("Q reply {reply:?} has a word that is no number"))
        })
        .collect();
    nums.try_into()
        .unwrap_or_else(|_| panic!("Q reply {reply:?} is not five numbers"))
}

/// The value of `name: value` in an `I` reply.
fn info_value(reply: &str, name: &str) -> u64 {
    reply
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.parse().ok())
        .unwrap_or_else(|| panic!("I reply has no `{name}: N` line: {reply:?}"))
}

/// An engine listening for the rtpproxy protocol on `listen`, with the quick
/// classes; returns once every `listen` socket answers.
fn start(backend: Backend, dir: &TempDir, listen: &[String]) -> Engine {
    let list: Vec<String> = listen.iter().map(|s| toml_string(s)).collect();
    let engine = Engine::start(
        EngineOptions::new(backend)
            .config(&format!("listen_rtpproxy = [{}]", list.join(", ")))
            .config(&quick_media(dir)),
    );
    // The native socket answers first; the SIP-core sockets are bound just after.
    for addr in listen {
        let answers = || match addr.split_once(':') {
            Some(("udp", a)) => {
                let probe = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
                let _ = probe.set_read_timeout(Some(Duration::from_millis(100)));
                let _ = probe.send_to(b"ready V", a);
                let mut buf = [0u8; 64];
                probe.recv_from(&mut buf).is_ok()
            }
            Some((_, path)) => UnixStream::connect(path).is_ok(),
            None => panic!("bad listen address {addr}"),
        };
        wait_until(
            &format!("rtpark listens on {addr}"),
            &engine,
            TIMEOUT,
            answers,
        );
    }
    engine
}

fn stats(ctl: &mut Control) -> Value {
    ctl.ok(json!({"cmd": "stats"}))
}

// ---------------------------------------------------------------------------
// What a phone heard.
// ---------------------------------------------------------------------------

fn count(rec: &Recorder, peer_tag: [u8; 4], kind: Heard) -> usize {
    parse_all(&rec.snapshot())
        .iter()
        .filter(|p| heard(p, peer_tag) == kind)
        .count()
}

/// Waits until `rec` got something and then nothing new for 300 ms (a prompt
/// has ended); panics after [`TIMEOUT`].
fn wait_quiet(what: &str, engine: &Engine, rec: &Recorder) {
    let quiet = Duration::from_millis(300);
    let deadline = Instant::now() + TIMEOUT;
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let n = rec.len();
        if n != seen {
            (seen, since) = (n, Instant::now());
        } else if n > 0 && since.elapsed() >= quiet {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {TIMEOUT:?} waiting until {what} ({n} packets); stderr:\n{}",
                engine.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A call set up as Kamailio does it: `U` with the caller's address on the
/// INVITE, `L` with the callee's on the 200 OK. Returns (port the caller sends
/// to, port the callee sends to).
fn offer_answer(sock: &Path, engine: &Engine, caller: &Phone, callee: &Phone) -> (u16, u16) {
    let u = format!(
        "Uc0,101 {CALL_ID} 127.0.0.1 {} {FROM_TAG};1",
        caller.addr().port()
    );
    let to_callee = port_reply(&unix_command(sock, &u), engine);
    let l = format!(
        "Lc0,101 {CALL_ID} 127.0.0.1 {} {FROM_TAG};1 {TO_TAG};1",
        callee.addr().port()
    );
    let to_caller = port_reply(&unix_command(sock, &l), engine);
    assert_ne!(to_caller, to_callee, "each party gets a port of its own");
    (to_caller, to_callee)
}

// ---------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------

fn kamailio_call_relays_plays_music_and_deletes(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = start(backend, &dir, &[format!("unix:{}", sock.display())]);
    let mut ctl = engine.control();
    let free_before = stats(&mut ctl)["free_port_pairs"].clone();
    let rp = |command: &str| unix_command(&sock, command);

    // rtpproxy_test() when the module starts, then its capability checks.
    assert_eq!(rp("V"), "20040107\n");
    assert_eq!(rp("VF 20050322"), "1\n", "prompts and ;medianum tags");
    assert_eq!(
        rp("VF 20071116"),
        "0\n",
        "re-packetisation is not supported"
    );

    // rtpproxy_offer() on the INVITE, rtpproxy_answer() on the 200 OK.
    let (caller, callee) = (Phone::new(), Phone::new());
    let (to_caller, to_callee) = offer_answer(&sock, &engine, &caller, &callee);
    let (from_to_caller, from_to_callee) = (
        SocketAddr::from(([127, 0, 0, 1], to_caller)),
        SocketAddr::from(([127, 0, 0, 1], to_callee)),
    );

    // Media both ways, byte for byte, from the ports the replies named.
    for i in 0..5u16 {
        let forth = rtp(
            1000 + i,
            8000 + 160 * u32::from(i),
            0xca11_e001,
            0,
            &payload(u32::from(i), 160),
        );
        caller.rtp.send_to_port(&forth, to_caller);
        assert_eq!(
            callee.rtp.recv(),
            (forth, from_to_callee),
            "caller → callee {i}"
        );
        let back = rtp(
            7000 + i,
            90_000 + 160 * u32::from(i),
            0xca11_ee02,
            0,
            &payload(100 + u32::from(i), 160),
        );
        callee.rtp.send_to_port(&back, to_callee);
        assert_eq!(
            caller.rtp.recv(),
            (back, from_to_caller),
            "callee → caller {i}"
        );
    }
    let q = format!("Q {CALL_ID} {FROM_TAG};1 {TO_TAG};1");
    let [ttl, in_a, in_o, relayed, dropped] = query_reply(&rp(&q));
    assert!(ttl > 0, "ttl {ttl}");
    assert_eq!(
        [in_a, in_o, relayed, dropped],
        [5, 5, 10, 0],
        "Q after five packets each way"
    );

    // Both phones talk; rtpproxy_stream2uas("default", "-1") puts music on the callee.
    let (rec_callee, rec_caller) = (callee.rtp.record(), caller.rtp.record());
    let pacer_caller = caller
        .rtp
        .pace(to_caller, StreamSpec::pcmu(0x0ca1_1e00, TAG_CALLER));
    let pacer_callee = callee
        .rtp
        .pace(to_callee, StreamSpec::pcmu(0x0ca1_1ee0, TAG_CALLEE));
    wait_until("the callee hears the caller", &engine, TIMEOUT, || {
        count(&rec_callee, TAG_CALLER, Heard::Live) >= 15
    });
    let p = format!("P-1 {CALL_ID} default session {TO_TAG};1 {FROM_TAG};1");
    assert_eq!(rp(&p), "0\n");
    wait_until("the callee hears music", &engine, TIMEOUT, || {
        count(&rec_callee, TAG_CALLER, Heard::Music) >= 25
    });
    let caller_heard_before_stop = count(&rec_caller, TAG_CALLEE, Heard::Live);
    // rtpproxy_stop_stream2uas().
    assert_eq!(rp(&format!("S {CALL_ID} {TO_TAG};1 {FROM_TAG};1")), "0\n");
    let live_before_stop = count(&rec_callee, TAG_CALLER, Heard::Live);
    wait_until(
        "the callee hears the caller again",
        &engine,
        TIMEOUT,
        || count(&rec_callee, TAG_CALLER, Heard::Live) >= live_before_stop + 15,
    );
    let sent_by_caller = pacer_caller.finish().len() as i64;
    let sent_by_callee = pacer_callee.finish().len() as i64;
    std::thread::sleep(Duration::from_millis(200));
    let (at_callee, at_caller) = (rec_callee.finish(), rec_caller.finish());

    assert_live_music_live("the callee", &at_callee, TAG_CALLER, &engine);
    // Music for the callee does not interrupt what the caller hears.
    let heard_by_caller = parse_all(&at_caller);
    assert!(
        caller_heard_before_stop >= 25
            && heard_by_caller
                .iter()
                .all(|p| heard(p, TAG_CALLEE) == Heard::Live)
            && continuity_problems(&heard_by_caller, &[]).is_empty(),
        "the caller should hear the callee throughout: {:?}\n{}",
        continuity_problems(&heard_by_caller, &[]),
        describe(
            &heard_by_caller,
            &heard_by_caller
                .iter()
                .map(|p| heard(p, TAG_CALLEE))
                .collect::<Vec<_>>()
        )
    );

    let [_, in_a, in_o, _, dropped] = query_reply(&rp(&q));
    assert_eq!(
        (in_a, in_o),
        (5 + sent_by_caller, 5 + sent_by_callee),
        "Q counts every packet each phone sent"
    );
    assert!(
        dropped > 0,
        "the caller's audio was dropped while the callee heard music, but Q says {dropped}"
    );

    // rtpproxy_destroy() on the BYE.
    assert_eq!(rp(&format!("D {CALL_ID} {FROM_TAG} {TO_TAG}")), "0\n");
    let s = stats(&mut ctl);
    assert_eq!(
        (&s["calls"], &s["legs"], &s["free_port_pairs"]),
        (&json!(0), &json!(0), &free_before),
        "D frees every leg and port: {s}"
    );
    assert_eq!(rp(&q), "E50\n", "Q after D: no such session");
    let info = rp("I");
    assert_eq!(info_value(&info, "sessions created"), 1, "{info}");
    assert_eq!(info_value(&info, "active sessions"), 0, "{info}");
}

/// `Q` counts relayed packets and `I` transmitted ones; packets rtpark
/// generates (a prompt) are transmitted once, and are not relayed.
fn query_and_info_count_played_packets_apart_from_relayed(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = start(backend, &dir, &[format!("unix:{}", sock.display())]);
    let rp = |command: &str| unix_command(&sock, command);
    let (caller, callee) = (Phone::new(), Phone::new());
    let (to_caller, to_callee) = offer_answer(&sock, &engine, &caller, &callee);

    // Ten packets each way, relayed.
    for i in 0..10u16 {
        let forth = rtp(i, 160 * u32::from(i), 0xa1, 0, &payload(u32::from(i), 160));
        caller.rtp.send_to_port(&forth, to_caller);
        assert_eq!(callee.rtp.recv().0, forth);
        let back = rtp(i, 160 * u32::from(i), 0xb2, 0, &payload(u32::from(i), 160));
        callee.rtp.send_to_port(&back, to_callee);
        assert_eq!(caller.rtp.recv().0, back);
    }
    // A one-second raw prompt to the callee: 50 packets that nobody sent.
    let prompt = dir.join("count-me");
    std::fs::write(dir.join("count-me.0"), vec![0x55u8; 8000]).expect("write prompt");
    let rec = callee.rtp.record();
    let p = format!(
        "P1 {CALL_ID} {} session {TO_TAG};1 {FROM_TAG};1",
        prompt.display()
    );
    assert_eq!(rp(&p), "0\n");
    wait_quiet("the prompt has played", &engine, &rec);
    let played = rec.finish().len() as i64;
    // 50 unless a stalled worker skipped some (it never sends them late).
    assert!(
        (1..=50).contains(&played),
        "{played} packets from a 50-frame prompt"
    );

    let q = rp(&format!("Q {CALL_ID} {FROM_TAG};1 {TO_TAG};1"));
    let info = rp("I");
    let mut wrong = Vec::new();
    // rtpproxy's nrelayed: each packet received is relayed or dropped.
    if query_reply(&q)[1..] != [10, 10, 20, 0] {
        wrong.push(format!(
            "Q should say `ttl 10 10 20 0` (20 relayed, not counting the {played} prompt \
             packets), says {q:?}"
        ));
    }
    let (received, transmitted) = (
        info_value(&info, "packets received"),
        info_value(&info, "packets transmitted"),
    );
    if (received, transmitted) != (20, 20 + played as u64) {
        wrong.push(format!(
            "I should count 20 packets received and {} transmitted (20 relayed + {played} \
             played, each once), says {received} and {transmitted}",
            20 + played
        ));
    }
    // Named counters: Q after the tags, and G for the engine.
    let named = rp(&format!(
        "Qv {CALL_ID} {FROM_TAG};1 {TO_TAG};1 nrelayed npkts_ina"
    ));
    if named != "nrelayed=20 npkts_ina=10\n" {
        wrong.push(format!("Qv with names: {named:?}"));
    }
    let unknown = rp(&format!("Q {CALL_ID} {FROM_TAG};1 {TO_TAG};1 rtpa_jmax"));
    if unknown != "E62\n" {
        wrong.push(format!("Q with rtpa_jmax should be E62, is {unknown:?}"));
    }
    let g = rp("G nsess_created nsess_destroyed npkt_relayed npkt_played");
    if g != format!("1 0 20 {played}\n") {
        wrong.push(format!("G should say `1 0 20 {played}`, says {g:?}"));
    }
    let g_bad = rp("G nsess_whatever");
    if g_bad != "E68\n" {
        wrong.push(format!(
            "G with an unknown counter should be E68, is {g_bad:?}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn prompts_resolve_raw_files_audio_files_and_library(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = start(backend, &dir, &[format!("unix:{}", sock.display())]);
    let rp = |command: &str| unix_command(&sock, command);
    let (caller, callee) = (Phone::new(), Phone::new());
    let _ = offer_answer(&sock, &engine, &caller, &callee);
    let play = |prompt: &Path| {
        format!(
            "P1 {CALL_ID} {} session {TO_TAG};1 {FROM_TAG};1",
            prompt.display()
        )
    };

    // makeann's layout: <prompt>.0 is bare µ-law, <prompt>.8 A-law. The
    // callee's codec is PCMU, so the .0 file plays, byte for byte.
    let raw = dir.join("welcome");
    std::fs::write(dir.join("welcome.0"), vec![0x55u8; 8000]).expect("write .0 prompt");
    std::fs::write(dir.join("welcome.8"), vec![0xd5u8; 8000]).expect("write .8 prompt");
    let rec = callee.rtp.record();
    assert_eq!(rp(&play(&raw)), "0\n");
    wait_quiet("the raw prompt has played", &engine, &rec);
    let packets = parse_all(&rec.finish());
    // One second is 50 packets; a worker stalled for more than a packet time
    // skips the missed ones (timestamps keep following the clock).
    assert!(
        (25..=50).contains(&packets.len()),
        "one second of prompt should be 50 packets, got {}",
        packets.len()
    );
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.pt, 0, "packet {i} is PCMU");
        assert!(
            p.payload == [0x55u8; 160],
            "packet {i} should carry 160 bytes of the .0 file, got {} bytes {:02x?}",
            p.payload.len(),
            &p.payload[..p.payload.len().min(8)]
        );
    }
    let problems = continuity_problems(&packets, &[]);
    assert!(problems.is_empty(), "prompt stream: {problems:?}");
    let steps: Vec<u32> = packets
        .windows(2)
        .map(|w| w[1].ts.wrapping_sub(w[0].ts))
        .collect();
    let span: u32 = steps.iter().sum();
    assert!(
        steps.iter().all(|&d| d > 0 && d % 160 == 0) && span <= 49 * 160,
        "timestamps should advance 160 (20 ms at 8 kHz) per frame within the prompt's 50 \
         frames: steps {steps:?}"
    );

    // An audio file at a path: a 1 kHz tone.
    let wav = dir.join("tone-1khz.wav");
    write_wav(&wav, 8000, &tone(8000, 1.0, &[(WAV_HZ, 0.3)]));
    let rec = callee.rtp.record();
    assert_eq!(rp(&play(&wav)), "0\n");
    wait_quiet("the WAV prompt has played", &engine, &rec);
    let packets = parse_all(&rec.finish());
    let tone_packets = packets
        .iter()
        .filter(|p| {
            p.pt == 0
                && p.payload.len() == 160
                && dominant_tone(
                    &ulaw_samples(&p.payload),
                    8000,
                    &[WAV_HZ, QUICK_DEFAULT_HZ, CALM_HZ],
                ) == Some(0)
        })
        .count();
    assert!(
        (25..=51).contains(&packets.len()) && tone_packets * 10 >= packets.len() * 9,
        "a one-second 1 kHz WAV should be ~50 PCMU packets of 1 kHz; got {} packets, {tone_packets} \
         of them 1 kHz",
        packets.len()
    );

    // Neither raw file nor audio file: the base name is a library class.
    let rec = callee.rtp.record();
    assert_eq!(rp(&play(&dir.join("no-such-dir").join("calm"))), "0\n");
    let is_calm = |p: &RtpView| {
        dominant_tone(
            &ulaw_samples(&p.payload),
            8000,
            &[CALM_HZ, QUICK_DEFAULT_HZ, WAV_HZ],
        ) == Some(0)
    };
    wait_until("the callee hears class calm", &engine, TIMEOUT, || {
        parse_all(&rec.snapshot())
            .iter()
            .filter(|p| is_calm(p))
            .count()
            >= 10
    });
    assert_eq!(rp(&format!("S {CALL_ID} {TO_TAG};1 {FROM_TAG};1")), "0\n");
    drop(rec);

    // Nothing of that name anywhere: E60. No such call or party: E50.
    assert_eq!(rp(&play(&dir.join("no-such-prompt"))), "E60\n");
    assert_eq!(
        rp(&format!(
            "P1 no-such-call default session {TO_TAG};1 {FROM_TAG};1"
        )),
        "E50\n"
    );
    assert_eq!(
        rp(&format!(
            "P1 {CALL_ID} default session no-such-tag;1 {FROM_TAG};1"
        )),
        "E50\n"
    );
    assert_eq!(
        rp(&format!("S no-such-call {TO_TAG};1 {FROM_TAG};1")),
        "E50\n"
    );
}

/// As in rtpproxy (`rtpp_command_play_handle`): `P0` stops what plays and
/// starts nothing.
fn play_count_zero_stops_what_plays(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = start(backend, &dir, &[format!("unix:{}", sock.display())]);
    let rp = |command: &str| unix_command(&sock, command);
    let (caller, callee) = (Phone::new(), Phone::new());
    let _ = offer_answer(&sock, &engine, &caller, &callee);

    let rec = callee.rtp.record();
    let p = format!("P-1 {CALL_ID} default session {TO_TAG};1 {FROM_TAG};1");
    assert_eq!(rp(&p), "0\n");
    wait_until("the callee hears music", &engine, TIMEOUT, || {
        count(&rec, TAG_CALLER, Heard::Music) >= 10
    });
    let p0 = format!("P0 {CALL_ID} default session {TO_TAG};1 {FROM_TAG};1");
    assert_eq!(rp(&p0), "0\n");
    std::thread::sleep(Duration::from_millis(150));
    let n = rec.len();
    std::thread::sleep(Duration::from_millis(500));
    let after = rec.len() - n;
    assert_eq!(
        after, 0,
        "P0 should stop the music and play nothing, but the callee got {after} packets in the \
         500 ms after it"
    );
}

/// As in rtpproxy (and `ecode::INVALID_ARGUMENT`): `P ... session` on a
/// session whose `U`/`L` sent no `c` list has no codecs to play in: E35.
fn play_in_session_codecs_needs_the_codec_list(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = start(backend, &dir, &[format!("unix:{}", sock.display())]);
    let rp = |command: &str| unix_command(&sock, command);
    let (caller, callee) = (Phone::new(), Phone::new());
    let u = format!(
        "U {CALL_ID} 127.0.0.1 {} {FROM_TAG};1",
        caller.addr().port()
    );
    port_reply(&rp(&u), &engine);
    let l = format!(
        "L {CALL_ID} 127.0.0.1 {} {FROM_TAG};1 {TO_TAG};1",
        callee.addr().port()
    );
    port_reply(&rp(&l), &engine);
    let p = format!("P1 {CALL_ID} default session {TO_TAG};1 {FROM_TAG};1");
    assert_eq!(
        rp(&p),
        "E35\n",
        "no c list on U/L: `session` names no codecs"
    );
    // An explicit codec list works without one.
    let p = format!("P1 {CALL_ID} default 0 {TO_TAG};1 {FROM_TAG};1");
    assert_eq!(rp(&p), "0\n");
}

fn udp_cookies_reply_cache_cunix_framing_and_garbage(backend: Backend) {
    let dir = TempDir::new();
    let port = free_udp_port();
    let cunix = dir.join("rtpproxy-cunix.sock");
    let engine = start(
        backend,
        &dir,
        &[
            format!("udp:127.0.0.1:{port}"),
            format!("cunix:{}", cunix.display()),
        ],
    );
    let mut ctl = engine.control();
    let kamailio = UdpClient::new(port);

    assert_eq!(kamailio.ask("4109_1", "V"), "4109_1 20040107\n");
    assert_eq!(kamailio.ask("4109_2", "VF 20081102"), "4109_2 1\n");

    // An offer, retransmitted with its cookie: the same reply, one call.
    let u = format!("Uc0,8,101 {CALL_ID} 127.0.0.1 40000 {FROM_TAG};1");
    let first = kamailio.ask("4109_3", &u);
    let body = first
        .strip_prefix("4109_3 ")
        .unwrap_or_else(|| panic!("reply without the cookie: {first:?}"));
    let to_callee = port_reply(body, &engine);
    assert_eq!(
        kamailio.ask("4109_3", &u),
        first,
        "a retransmission is answered the same"
    );
    // The same offer with a new cookie (a re-INVITE) keeps the port.
    assert_eq!(kamailio.ask("4109_4", &u), format!("4109_4 {body}"));
    let calls = ctl.ok(json!({"cmd": "list_calls"}))["calls"].clone();
    let calls = calls.as_array().expect("list_calls has calls");
    assert_eq!(calls.len(), 1, "one call, however often offered: {calls:?}");
    assert_eq!(calls[0]["call"], json!(CALL_ID));
    assert_eq!(
        calls[0]["legs"].as_array().map(Vec::len),
        Some(2),
        "{calls:?}"
    );
    let l = format!("Lc0,8,101 {CALL_ID} 127.0.0.1 40002 {FROM_TAG};1 {TO_TAG};1");
    let to_caller = port_reply(
        kamailio
            .ask("4109_5", &l)
            .strip_prefix("4109_5 ")
            .unwrap_or(""),
        &engine,
    );
    assert_ne!(to_caller, to_callee);

    // A retransmitted D is answered from the cache; a new one runs and finds nothing.
    let d = format!("D {CALL_ID} {FROM_TAG} {TO_TAG}");
    assert_eq!(kamailio.ask("4109_6", &d), "4109_6 0\n");
    assert_eq!(
        kamailio.ask("4109_6", &d),
        "4109_6 0\n",
        "retransmission answered from the reply cache"
    );
    assert_eq!(
        kamailio.ask("4109_7", &d),
        "4109_7 E50\n",
        "a new D runs again"
    );
    // The cache is per sender: the same cookie from another proxy is a new command.
    let other_proxy = UdpClient::new(port);
    assert_eq!(other_proxy.ask("4109_6", &d), "4109_6 E50\n");
    let info = kamailio.ask("4109_8", "I");
    let info = info.strip_prefix("4109_8 ").unwrap_or(&info);
    assert_eq!(info_value(info, "sessions created"), 1, "{info}");

    // cunix: newline-framed `cookie command`, several per connection.
    let mut conn = UnixStream::connect(&cunix)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", cunix.display()));
    conn.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    let mut lines = BufReader::new(conn.try_clone().expect("clone unix stream"));
    let mut next_line = || {
        let mut line = String::new();
        lines
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("no reply line on cunix: {e}"));
        line
    };
    conn.write_all(b"k1 V\nk2 VF 20050322\n")
        .expect("write two commands");
    assert_eq!(next_line(), "k1 20040107\n");
    assert_eq!(next_line(), "k2 1\n");
    conn.write_all(b"k3 Uc0 call-2@example.net 127.0.0.1 40100 ft2;1\n")
        .expect("write U");
    let reply = next_line();
    port_reply(
        reply
            .strip_prefix("k3 ")
            .unwrap_or_else(|| panic!("cookie lost: {reply:?}")),
        &engine,
    );
    conn.write_all(b"k4 D call-2@example.net ft2\n")
        .expect("write D");
    assert_eq!(next_line(), "k4 0\n");

    // Garbage gets an error with its cookie, and the engine keeps serving.
    let garbage: [&[u8]; 6] = [
        b"g1 \xff\xfe\x00junk",
        b"g2 Zap call-x 1.2.3.4 1 t",
        b"g3 U call-x",
        b"g4 Uq call-x 127.0.0.1 1 t",
        b"g5 U call-x 127.0.0.1 1 t && L call-x 127.0.0.1 2 t u",
        b"g6 ",
    ];
    for junk in garbage {
        let reply = kamailio.exchange(junk);
        let cookie = &junk[..2];
        let ok = reply.starts_with(cookie)
            && reply.get(2..4) == Some(b" E")
            && reply.ends_with(b"\n")
            && reply[4..reply.len() - 1].iter().all(u8::is_ascii_digit)
            && reply.len() > 5;
        assert!(
            ok,
            "{:?} should get `{} E<n>\\n`, got {:?}",
            String::from_utf8_lossy(junk),
            String::from_utf8_lossy(cookie),
            String::from_utf8_lossy(&reply)
        );
    }
    let huge = format!("V {}", "x".repeat(9000));
    assert_eq!(kamailio.ask("g7", &huge), "g7 E5\n", "longer than 8 KiB");
    conn.write_all(b"k5 \x01\x02\x03\nk6 V\n")
        .expect("write garbage");
    let reply = next_line();
    assert!(reply.starts_with("k5 E"), "cunix garbage: {reply:?}");
    assert_eq!(
        next_line(),
        "k6 20040107\n",
        "the connection survives garbage"
    );
    assert_eq!(kamailio.ask("4109_9", "V"), "4109_9 20040107\n");
    assert_eq!(stats(&mut ctl)["calls"], json!(0));
}

/// A `;medianum` beyond SDP's 64 sections is refused (it would otherwise make
/// the engine size a table by it), and the engine keeps serving.
fn absurd_media_numbers_are_refused(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = start(backend, &dir, &[format!("unix:{}", sock.display())]);
    let rp = |command: &str| unix_command(&sock, command);
    for n in ["0", "65", "4000000000"] {
        let u = format!("U {CALL_ID} 127.0.0.1 5000 {FROM_TAG};{n}");
        assert_eq!(rp(&u), "E35\n", "media number {n}");
    }
    let u = format!("U {CALL_ID} 127.0.0.1 5000 {FROM_TAG};64");
    port_reply(&rp(&u), &engine);
    assert_eq!(rp("V"), "20040107\n");
}
