//! Call park over the native socket, the way a PBX uses it: A talks to B; B
//! parks A; B's leg is free again (B can call D); A hears the lot's music; C,
//! a phone in another call, retrieves the slot and talks to A. Every phone sees
//! one well-formed RTP stream, the parker hears the slot announced, and the
//! events arrive in order: parked, slot busy, retrieved, slot free.
//!
//! Real binary, real sockets, both backends, one worker and two (so retrieval
//! moves the parked leg to the retriever's worker). Which source a packet came
//! from is read from its payload: each phone tags its own, the music is a tone.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

backend_tests!(
    park_and_retrieve_one_worker,
    park_and_retrieve_across_workers
);

/// Once the slot announcement is over, the parker is an ordinary free leg:
/// `idle` like any leg without a peer (`silent` means "its peer is held"), the
/// same as a parker of a lot that announces nothing.
#[test]
fn parker_is_idle_after_the_slot_announcement() {
    let dir = TempDir::new();
    let engine = Engine::start(
        EngineOptions::new(Backend::Epoll)
            .config(&quick_media(&dir))
            .config(&lot_toml("said", "5-5", ""))
            .config(&lot_toml("quiet", "6-6", "announce_slot = false")),
    );
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let phones: Vec<Endpoint> = (0..4).map(|_| Endpoint::new()).collect();
    let mut pacers = Vec::new();
    for (i, (call, leg)) in [("c1", "a1"), ("c1", "b1"), ("c2", "a2"), ("c2", "b2")]
        .into_iter()
        .enumerate()
    {
        let port = ctl.leg_port(call, leg, phones[i].addr());
        pacers.push(phones[i].pace(port, StreamSpec::pcmu(0x1000 + i as u32, *b"\x03xyz")));
    }
    ctl.bridge("a1", "b1");
    ctl.bridge("a2", "b2");
    std::thread::sleep(Duration::from_millis(200));

    assert_eq!(ctl.park("a2", Some("quiet"), None), 6);
    let quiet = ctl.leg_info("c2", "b2");
    assert_eq!(
        (&quiet["peer"], &quiet["state"]),
        (&Value::Null, &json!("idle")),
        "the parker of a lot without announcement: {quiet}"
    );

    assert_eq!(ctl.park("a1", Some("said"), None), 5);
    assert_eq!(
        ctl.leg_info("c1", "b1")["state"],
        json!("playing"),
        "the parker hears the slot announced"
    );
    let (done, _) = ev.wait_event(Duration::from_secs(10), |e| {
        e["event"] == json!("playback_done")
            && e["leg"] == json!("b1")
            && e["announcement"] == json!("digit-5")
    });
    assert!(
        done.is_some(),
        "no playback_done of digit-5 to b1 within 10 s"
    );
    std::thread::sleep(Duration::from_millis(100));
    let said = ctl.leg_info("c1", "b1");
    drop(pacers);
    assert_eq!(
        (&said["peer"], &said["state"]),
        (&Value::Null, &json!("idle")),
        "after the slot announcement the parker is a free, idle leg: {said}"
    );
}

fn park_and_retrieve_one_worker(backend: Backend) {
    park_and_retrieve(backend, 1);
}

fn park_and_retrieve_across_workers(backend: Backend) {
    park_and_retrieve(backend, 2);
}

const TAG_A: [u8; 4] = *b"\x02AAA";
const TAG_B: [u8; 4] = *b"\x02BBB";
const TAG_C: [u8; 4] = *b"\x02CCC";
const TAG_D: [u8; 4] = *b"\x02DDD";

/// How long each phase with media lasts.
const PHASE: Duration = Duration::from_millis(400);
/// A packet relayed just before a switch may still be on its way when the reply
/// arrives (io_uring submits sends at the next turn).
const GRACE: f64 = 0.005;
/// Fewest packets that count as "hears" in a phase: a phone sends 20 in
/// 400 ms, but a starved test thread skips the packets it missed.
const MIN_HEARD: usize = 5;

/// Where a received packet came from, by its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    A,
    B,
    C,
    D,
    /// The `default` class of [`quick_media`] (a 600 Hz tone).
    Moh,
    /// Anything else (at the parker: the spoken slot announcement).
    Other,
}

/// `moh`: whether untagged packets may be the music (else they are `Other`:
/// speech has 600 Hz moments too).
fn classify(p: &RtpView, moh: bool) -> Src {
    for (tag, src) in [
        (TAG_A, Src::A),
        (TAG_B, Src::B),
        (TAG_C, Src::C),
        (TAG_D, Src::D),
    ] {
        if p.payload.starts_with(&tag) {
            return src;
        }
    }
    let freqs = [QUICK_DEFAULT_HZ, 1000.0, 300.0];
    if moh && p.pt == 0 && dominant_tone(&ulaw_samples(&p.payload), 8000, &freqs) == Some(0) {
        return Src::Moh;
    }
    Src::Other
}

/// A phone's received stream: packets with arrival time and source, cut into
/// runs of one source.
struct Heard {
    packets: Vec<(RtpView, f64, Src)>,
    /// (source, first index, length).
    runs: Vec<(Src, usize, usize)>,
}

impl Heard {
    fn new(who: &str, recorded: &[Stamped], moh: bool) -> Heard {
        let packets: Vec<(RtpView, f64, Src)> = recorded
            .iter()
            .map(|s| {
                let p = parse_rtp(&s.data)
                    .unwrap_or_else(|| panic!("{who} received a non-RTP datagram {:02x?}", s.data));
                let src = classify(&p, moh);
                (p, s.at, src)
            })
            .collect();
        let mut runs: Vec<(Src, usize, usize)> = Vec::new();
        for (i, (_, _, src)) in packets.iter().enumerate() {
            match runs.last_mut() {
                Some(r) if r.0 == *src => r.2 += 1,
                _ => runs.push((*src, i, 1)),
            }
        }
        Heard { packets, runs }
    }

    fn sources(&self) -> Vec<Src> {
        self.runs.iter().map(|r| r.0).collect()
    }

    /// Index of the first packet of every run but the first.
    fn switches(&self) -> Vec<usize> {
        self.runs.iter().skip(1).map(|r| r.1).collect()
    }

    fn rtp(&self) -> Vec<RtpView> {
        self.packets.iter().map(|p| p.0.clone()).collect()
    }

    fn run(&self, src: Src) -> &[(RtpView, f64, Src)] {
        let (_, start, len) = self
            .runs
            .iter()
            .find(|r| r.0 == src)
            .copied()
            .unwrap_or((src, 0, 0));
        &self.packets[start..start + len]
    }

    fn describe(&self) -> String {
        let t0 = self.packets.first().map_or(0.0, |p| p.1);
        self.runs
            .iter()
            .map(|&(src, start, len)| {
                let (first, a, _) = &self.packets[start];
                let (last, b, _) = &self.packets[start + len - 1];
                format!(
                    "  {src:?}: {len} packets, seq {}..={}, ssrc {:08x}, marker on first {}, \
                     arrival {:.3}..{:.3} s\n",
                    first.seq,
                    last.seq,
                    first.ssrc,
                    first.marker,
                    a - t0,
                    b - t0
                )
            })
            .collect()
    }
}

/// Asserts `heard` came from `expected` in that order as one continuous stream
/// (one SSRC, no sequence gap or duplicate, marker exactly at each switch).
fn assert_one_stream(who: &str, heard: &Heard, expected: &[Src], engine: &Engine) {
    assert_one_stream_with(who, heard, expected, &[], engine);
}

/// Like [`assert_one_stream`], allowing the marker also at `more`.
fn assert_one_stream_with(
    who: &str,
    heard: &Heard,
    expected: &[Src],
    more: &[usize],
    engine: &Engine,
) {
    let mut switches = heard.switches();
    switches.extend_from_slice(more);
    let problems = continuity_problems(&heard.rtp(), &switches);
    assert!(
        heard.sources() == expected && problems.is_empty(),
        "{who}: expected sources {expected:?}, got {:?}; problems: {problems:?}\nstream:\n{}\
         engine stderr:\n{}",
        heard.sources(),
        heard.describe(),
        engine.stderr()
    );
}

fn park_and_retrieve(backend: Backend, workers: usize) {
    let dir = TempDir::new();
    // The default lot as shipped: 701–720, slot announced to the parker.
    let engine = Engine::start(
        EngineOptions::new(backend)
            .workers(workers)
            .config(&quick_media(&dir)),
    );
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();

    let (a, b, c, d) = (
        Endpoint::new(),
        Endpoint::new(),
        Endpoint::new(),
        Endpoint::new(),
    );
    let a_port = ctl.leg_port("call1", "A", a.addr());
    let b_port = ctl.leg_port("call1", "B", b.addr());
    ctl.bridge("A", "B");
    let c_port = ctl.leg_port("call2", "C", c.addr());
    let d_port = ctl.leg_port("call3", "D", d.addr());

    let (rec_a, rec_b, rec_c, rec_d) = (a.record(), b.record(), c.record(), d.record());
    let pacers = [
        a.pace(a_port, StreamSpec::pcmu(0x0a00_0001, TAG_A)),
        b.pace(b_port, StreamSpec::pcmu(0x0b00_0002, TAG_B)),
        c.pace(c_port, StreamSpec::pcmu(0x0c00_0003, TAG_C)),
        d.pace(d_port, StreamSpec::pcmu(0x0d00_0004, TAG_D)),
    ];
    std::thread::sleep(PHASE);
    assert_eq!(ctl.leg_info("call1", "A")["state"], json!("live"));

    // B parks A: no slot named, so the lot's lowest free slot; the parker is A's former peer.
    let park_at = wall_secs();
    let slot = ctl.park("A", None, None);
    let parked_reply_at = wall_secs();
    assert_eq!(slot, 701, "the default lot starts at 701");
    let b_info = ctl.leg_info("call1", "B");
    assert_eq!(
        b_info["peer"],
        Value::Null,
        "B is free after parking A: {b_info}"
    );
    let a_info = ctl.leg_info("call1", "A");
    assert_eq!(
        a_info["peer"],
        Value::Null,
        "parked A has no peer: {a_info}"
    );
    assert_eq!(
        ctl.list_parked()
            .iter()
            .map(|p| (p["slot"].clone(), p["leg"].clone(), p["parker"].clone()))
            .collect::<Vec<_>>(),
        vec![(json!(701), json!("A"), json!("B"))]
    );

    // The parker hears "parked on slot" and the digits 7, 0, 1, then nothing.
    let (done, mut seen) = ev.wait_event(Duration::from_secs(10), |e| {
        e["event"] == json!("playback_done")
            && e["leg"] == json!("B")
            && e["announcement"] == json!("digit-1")
    });
    assert!(
        done.is_some(),
        "no playback_done for the last digit of slot 701 at the parker B within 10 s; stderr:\n{}",
        engine.stderr()
    );
    let announced_at = wall_secs();
    std::thread::sleep(Duration::from_millis(300));
    let b_after = ctl.leg_info("call1", "B");
    assert_eq!(
        b_after["peer"],
        Value::Null,
        "B after the announcement: {b_after}"
    );

    // B is an ordinary free leg: it can call D.
    let bridged_d_at = wall_secs();
    ctl.bridge("B", "D");

    // C, in another call, retrieves slot 701.
    let retrieve_at = wall_secs();
    let reply = ctl.retrieve("C", None, Some(701));
    assert_eq!(
        reply,
        json!({"ok": true, "lot": "default", "slot": 701, "call": "call1", "parked_leg": "A"}),
        "retrieve reply"
    );
    std::thread::sleep(PHASE);
    let a_after = ctl.leg_info("call1", "A");
    let c_after = ctl.leg_info("call2", "C");
    assert!(
        ctl.list_parked().is_empty(),
        "slot 701 is empty after retrieval"
    );

    for p in pacers {
        p.finish();
    }
    std::thread::sleep(Duration::from_millis(60));
    let heard_a = Heard::new("A", &rec_a.finish(), true);
    let heard_b = Heard::new("B", &rec_b.finish(), false);
    let heard_c = Heard::new("C", &rec_c.finish(), true);
    let heard_d = Heard::new("D", &rec_d.finish(), true);
    eprintln!(
        "[{} ×{workers}] A heard:\n{}B heard:\n{}C heard:\n{}D heard:\n{}",
        backend.as_str(),
        heard_a.describe(),
        heard_b.describe(),
        heard_c.describe(),
        heard_d.describe()
    );

    // A: B live, then the lot's music, then C; one stream throughout.
    assert_one_stream("phone A", &heard_a, &[Src::B, Src::Moh, Src::C], &engine);
    let moh = heard_a.run(Src::Moh);
    assert!(
        moh.len() >= 20,
        "A heard only {} music packets while parked",
        moh.len()
    );
    assert!(
        moh.first().is_some_and(|p| p.1 > park_at)
            && moh.last().is_some_and(|p| p.1 < retrieve_at + 0.1),
        "A's music lies outside the parking"
    );
    assert!(
        heard_a
            .run(Src::B)
            .iter()
            .all(|p| p.1 < parked_reply_at + GRACE),
        "A heard B after being parked:\n{}",
        heard_a.describe()
    );
    assert!(
        heard_a.run(Src::C).len() >= MIN_HEARD,
        "A hears C after the retrieval:\n{}",
        heard_a.describe()
    );
    // At each switch the timestamp advances with the time that passed.
    for i in heard_a.switches() {
        let ((prev, t0, _), (p, t1, _)) = (&heard_a.packets[i - 1], &heard_a.packets[i]);
        let dts = p.ts.wrapping_sub(prev.ts) as i32 as f64 / 8000.0;
        assert!(
            (dts - (t1 - t0)).abs() < 0.040,
            "A's packet {i} (first after a switch): timestamp step {:.1} ms, arrival step \
             {:.1} ms\n{}",
            dts * 1000.0,
            (t1 - t0) * 1000.0,
            heard_a.describe()
        );
    }

    // B: A live, then the slot announcement, silence, then D; one stream throughout.
    // The announcement is four programs ("parked on slot", 7, 0, 1), each of
    // which may start with a marker of its own.
    let spoken: Vec<usize> = heard_b
        .packets
        .iter()
        .enumerate()
        .filter(|(_, p)| p.2 == Src::Other && p.0.marker)
        .map(|(i, _)| i)
        .collect();
    assert!(
        spoken.len() <= 4,
        "B's announcement has {} markers",
        spoken.len()
    );
    assert_one_stream_with(
        "phone B",
        &heard_b,
        &[Src::A, Src::Other, Src::D],
        &spoken,
        &engine,
    );
    assert!(
        heard_b
            .run(Src::A)
            .iter()
            .all(|p| p.1 < parked_reply_at + GRACE),
        "B still heard A after parking it:\n{}",
        heard_b.describe()
    );
    let announcement = heard_b.run(Src::Other);
    assert!(
        announcement.len() >= 100,
        "\"parked on slot 7 0 1\" lasts about 3 s, but B heard {} packets of it",
        announcement.len()
    );
    let silent: Vec<f64> = heard_b
        .packets
        .iter()
        .map(|p| p.1)
        .filter(|&t| t > announced_at + 0.05 && t < bridged_d_at)
        .collect();
    assert!(
        silent.is_empty(),
        "B heard {} packet(s) between the end of the announcement and the bridge to D",
        silent.len()
    );
    assert!(heard_b.run(Src::D).len() >= MIN_HEARD, "B hears D");

    // C: nothing before the retrieval, then A alone, one clean stream.
    assert_one_stream("phone C", &heard_c, &[Src::A], &engine);
    assert!(
        heard_c.packets.iter().all(|p| p.1 > retrieve_at) && heard_c.packets.len() >= MIN_HEARD,
        "C hears A only after retrieving it:\n{}",
        heard_c.describe()
    );
    // D: B only, after the bridge.
    assert_one_stream("phone D", &heard_d, &[Src::B], &engine);
    assert!(heard_d.packets.iter().all(|p| p.1 > bridged_d_at));

    assert_eq!(
        (&a_after["peer"], &a_after["state"]),
        (&json!("C"), &json!("live")),
        "A after retrieval: {a_after}"
    );
    assert_eq!(
        (&c_after["peer"], &c_after["state"]),
        (&json!("A"), &json!("live")),
        "C after retrieval: {c_after}"
    );

    // Events, in order: parked, busy, retrieved (by C), free.
    seen.extend(ev.drain_events(Duration::from_millis(100), Duration::from_secs(2)));
    let events: Vec<Value> = seen.into_iter().filter(is_park_event).collect();
    let kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_owned(),
                e["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [
        ("parked", ""),
        ("slot_state", "busy"),
        ("retrieved", ""),
        ("slot_state", "free"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(kinds, want, "park events: {events:#?}");
    assert_eq!(
        events[0],
        json!({"event": "parked", "lot": "default", "slot": 701, "call": "call1", "leg": "A",
               "parker": "B", "timeout_secs": 45})
    );
    assert_eq!(
        events[1],
        json!({"event": "slot_state", "lot": "default", "slot": 701, "state": "busy"})
    );
    let r = &events[2];
    assert_eq!(
        (
            &r["lot"],
            &r["slot"],
            &r["call"],
            &r["leg"],
            &r["by"],
            &r["parker"]
        ),
        (
            &json!("default"),
            &json!(701),
            &json!("call1"),
            &json!("A"),
            &json!("C"),
            &json!("B")
        ),
        "retrieved: {r}"
    );
    assert!(
        r["waited_secs"].as_u64().is_some_and(|w| w < 30),
        "retrieved: {r}"
    );
    assert_eq!(
        events[3],
        json!({"event": "slot_state", "lot": "default", "slot": 701, "state": "free"})
    );
}

/// A parker named explicitly may be in a call of its own (an attendant's
/// phone, bridged to a colleague): it hears the slot announced, then its own
/// call again, not silence.
#[test]
fn explicit_parker_in_a_call_hears_its_peer_again_after_the_announcement() {
    let dir = TempDir::new();
    let engine = Engine::start(
        EngineOptions::new(Backend::Epoll)
            .config(&quick_media(&dir))
            .config(&lot_toml("said", "5-5", "")),
    );
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let (a, x, y) = (Endpoint::new(), Endpoint::new(), Endpoint::new());
    let a_port = ctl.leg_port("caller", "a", a.addr());
    let x_port = ctl.leg_port("attendant", "x", x.addr());
    let y_port = ctl.leg_port("attendant", "y", y.addr());
    ctl.bridge("x", "y");
    let rec_x = x.record();
    let pacers = [
        a.pace(a_port, StreamSpec::pcmu(0x2001, TAG_A)),
        x.pace(x_port, StreamSpec::pcmu(0x2002, TAG_B)),
        y.pace(y_port, StreamSpec::pcmu(0x2003, TAG_D)),
    ];
    std::thread::sleep(Duration::from_millis(200));
    let reply = ctl.ok(json!({"cmd": "park", "leg": "a", "lot": "said", "parker": "x"}));
    assert_eq!(reply["slot"], json!(5));
    let (done, _) = ev.wait_event(Duration::from_secs(10), |e| {
        e["event"] == json!("playback_done")
            && e["leg"] == json!("x")
            && e["announcement"] == json!("digit-5")
    });
    assert!(
        done.is_some(),
        "no playback_done of digit-5 to x within 10 s"
    );
    let done_at = wall_secs();
    std::thread::sleep(PHASE);
    let info = ctl.leg_info("attendant", "x");
    for p in pacers {
        p.finish();
    }
    std::thread::sleep(Duration::from_millis(60));
    let heard = Heard::new("x", &rec_x.finish(), false);
    let from_y_after = heard
        .packets
        .iter()
        .filter(|p| p.2 == Src::D && p.1 > done_at)
        .count();
    assert!(
        info["state"] == json!("live") && from_y_after >= MIN_HEARD,
        "after the slot announcement the parker x, bridged to y, is {} and heard {from_y_after} \
         packet(s) from y in {PHASE:?}: expected live, hearing y again; x heard:\n{}",
        info["state"],
        heard.describe()
    );
}

/// A phone may park itself (Asterisk's Park() application: the caller dials
/// the park extension): it hears its slot announced, then the lot's music
/// until someone retrieves it, not dead air.
#[test]
fn self_parked_leg_hears_its_slot_then_the_music() {
    let dir = TempDir::new();
    let engine = Engine::start(
        EngineOptions::new(Backend::Epoll)
            .config(&quick_media(&dir))
            .config(&lot_toml("said", "5-5", "")),
    );
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let s = Endpoint::new();
    let port = ctl.leg_port("caller", "s", s.addr());
    let rec = s.record();
    let pacer = s.pace(port, StreamSpec::pcmu(0x3001, TAG_A));
    std::thread::sleep(Duration::from_millis(100));
    let reply = ctl.ok(json!({"cmd": "park", "leg": "s", "lot": "said", "parker": "s"}));
    assert_eq!(reply["slot"], json!(5));
    let (done, _) = ev.wait_event(Duration::from_secs(10), |e| {
        e["event"] == json!("playback_done")
            && e["leg"] == json!("s")
            && e["announcement"] == json!("digit-5")
    });
    assert!(
        done.is_some(),
        "no playback_done of digit-5 to s within 10 s"
    );
    let done_at = wall_secs();
    std::thread::sleep(PHASE);
    let still_parked = parked_slots(&ctl.list_parked());
    pacer.finish();
    std::thread::sleep(Duration::from_millis(60));
    let heard = Heard::new("s", &rec.finish(), true);
    let music_after = heard
        .packets
        .iter()
        .filter(|p| p.1 > done_at && p.2 == Src::Moh)
        .count();
    assert_eq!(still_parked, vec![("said".into(), 5, "s".into())]);
    assert!(
        music_after >= MIN_HEARD,
        "the self-parked leg s, still in slot 5, heard {music_after} music packet(s) in the \
         {PHASE:?} after its slot announcement: expected the lot's music; s heard:\n{}",
        heard.describe()
    );
}

/// With `courtesy_tone = "both"`, the retrieval plays the tone to the parked
/// leg and the retriever, then they hear each other; each stream stays one
/// stream (marker at each switch).
#[test]
fn courtesy_tone_to_both_then_they_talk() {
    let dir = TempDir::new();
    let engine = Engine::start(
        EngineOptions::new(Backend::Epoll)
            .config(&quick_media(&dir))
            .config(&lot_toml(
                "beep",
                "31-32",
                "courtesy_tone = \"both\"\nannounce_slot = false",
            )),
    );
    let mut ctl = engine.control();
    let (a, b, c) = (Endpoint::new(), Endpoint::new(), Endpoint::new());
    let a_port = ctl.leg_port("call1", "A", a.addr());
    let b_port = ctl.leg_port("call1", "B", b.addr());
    let c_port = ctl.leg_port("call2", "C", c.addr());
    ctl.bridge("A", "B");
    let (rec_a, rec_c) = (a.record(), c.record());
    let pacers = [
        a.pace(a_port, StreamSpec::pcmu(0x4001, TAG_A)),
        b.pace(b_port, StreamSpec::pcmu(0x4002, TAG_B)),
        c.pace(c_port, StreamSpec::pcmu(0x4003, TAG_C)),
    ];
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ctl.park("A", Some("beep"), None), 31);
    std::thread::sleep(Duration::from_millis(300));
    let reply = ctl.retrieve("C", Some("beep"), None);
    assert_eq!(reply["parked_leg"], json!("A"), "{reply}");
    // The tone lasts under half a second.
    std::thread::sleep(Duration::from_millis(1000));
    for p in pacers {
        p.finish();
    }
    std::thread::sleep(Duration::from_millis(60));
    let heard_a = Heard::new("A", &rec_a.finish(), true);
    let heard_c = Heard::new("C", &rec_c.finish(), true);
    assert_one_stream(
        "phone A",
        &heard_a,
        &[Src::B, Src::Moh, Src::Other, Src::C],
        &engine,
    );
    assert_one_stream("phone C", &heard_c, &[Src::Other, Src::A], &engine);
    for (who, heard, peer) in [("A", &heard_a, Src::C), ("C", &heard_c, Src::A)] {
        let tone = heard.run(Src::Other).len();
        assert!(
            (MIN_HEARD..=30).contains(&tone) && heard.run(peer).len() >= MIN_HEARD,
            "{who} heard {tone} packets of the 0.44 s courtesy tone, then {} of its peer:\n{}",
            heard.run(peer).len(),
            heard.describe()
        );
    }
}
