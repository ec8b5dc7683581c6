//! Park timeouts and give-up over the native socket: a lot with a 1 s timeout
//! and a 1 s final timeout raises `park_timeout` once (the leg stays parked on
//! music and can still be retrieved), then releases the slot once
//! (`park_released`, slot free, the leg hears nothing, retrieve finds the slot
//! empty). A parked leg that is deleted or stops sending gives up its slot
//! (`park_give_up` with reason `deleted` or `media_timeout`).
//!
//! Real binary, real sockets, both backends. Which source a packet came from
//! is read from its payload: phones tag theirs, the music is a tone.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

backend_tests!(
    timeout_once_then_release_once,
    deleted_parked_leg_gives_up_its_slot,
    silent_parked_leg_gives_up_its_slot,
);

const TAG_P: [u8; 4] = *b"\x04PPP";
const TAG_R: [u8; 4] = *b"\x04RRR";
/// A packet sent just before a switch may still be on its way when the event or
/// reply arrives.
const GRACE: f64 = 0.05;

/// An engine with lot `quick` (801–805, 1 s timeout, released 1 s later) and lot
/// `long` (901–905, the default timeouts); neither announces the slot.
fn engine(backend: Backend, dir: &TempDir) -> Engine {
    Engine::start(
        EngineOptions::new(backend)
            .config(&quick_media(dir))
            .config(&lot_toml(
                "quick",
                "801-805",
                "timeout = 1\nfinal_timeout = 1\nannounce_slot = false",
            ))
            .config(&lot_toml("long", "901-905", "announce_slot = false")),
    )
}

/// Whether a received packet is the `default` class (600 Hz).
fn is_moh(p: &RtpView) -> bool {
    p.pt == 0
        && dominant_tone(
            &ulaw_samples(&p.payload),
            8000,
            &[QUICK_DEFAULT_HZ, 1000.0, 300.0],
        ) == Some(0)
}

fn packets(recorded: &[Stamped]) -> Vec<(RtpView, f64)> {
    recorded
        .iter()
        .filter_map(|s| parse_rtp(&s.data).map(|p| (p, s.at)))
        .collect()
}

fn of_leg<'a>(events: &'a [Value], kind: &str, leg: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == json!(kind) && e["leg"] == json!(leg))
        .collect()
}

/// The park events of slot `slot`, as `kind` or `slot_state:<state>`.
fn slot_story(events: &[Value], slot: u64) -> Vec<String> {
    events
        .iter()
        .filter(|e| is_park_event(e) && e["slot"] == json!(slot))
        .map(|e| match e["state"].as_str() {
            Some(state) => format!("slot_state:{state}"),
            None => e["event"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn timeout_once_then_release_once(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let (p1, p2, r, r2) = (
        Endpoint::new(),
        Endpoint::new(),
        Endpoint::new(),
        Endpoint::new(),
    );
    let p1_port = ctl.leg_port("call1", "p1", p1.addr());
    let p2_port = ctl.leg_port("call2", "p2", p2.addr());
    let r_port = ctl.leg_port("call3", "r", r.addr());
    ctl.leg_port("call4", "r2", r2.addr());
    let (rec1, rec2) = (p1.record(), p2.record());
    let pacers = [
        p1.pace(p1_port, StreamSpec::pcmu(0x0401, TAG_P)),
        p2.pace(p2_port, StreamSpec::pcmu(0x0402, TAG_P)),
        r.pace(r_port, StreamSpec::pcmu(0x0403, TAG_R)),
    ];
    std::thread::sleep(Duration::from_millis(100));

    let reply = ctl.ok(json!({"cmd": "park", "leg": "p1", "lot": "quick", "parker": "201"}));
    assert_eq!(reply, json!({"ok": true, "lot": "quick", "slot": 801}));
    let reply = ctl.ok(json!({"cmd": "park", "leg": "p2", "lot": "quick", "parker": "202"}));
    assert_eq!(reply, json!({"ok": true, "lot": "quick", "slot": 802}));

    // The first timeout: one park_timeout per leg, after about a second.
    let mut events = Vec::new();
    for leg in ["p1", "p2"] {
        let (got, skipped) = ev.wait_event(Duration::from_secs(5), |e| {
            e["event"] == json!("park_timeout") && e["leg"] == json!(leg)
        });
        events.extend(skipped);
        let got = got.unwrap_or_else(|| {
            panic!(
                "no park_timeout for {leg} within 5 s of parking it in a lot with timeout = 1; \
                 events so far {events:?}; stderr:\n{}",
                engine.stderr()
            )
        });
        events.push(got);
    }
    let timed_out_at = wall_secs();
    let t1 = of_leg(&events, "park_timeout", "p1")[0].clone();
    assert_eq!(
        (&t1["lot"], &t1["slot"], &t1["call"], &t1["parker"]),
        (&json!("quick"), &json!(801), &json!("call1"), &json!("201")),
        "park_timeout: {t1}"
    );
    assert!(
        t1["waited_secs"]
            .as_u64()
            .is_some_and(|w| (1..=3).contains(&w)),
        "park_timeout after a 1 s timeout: {t1}"
    );

    // Still parked, on music, flagged as timed out.
    let listed = ctl.list_parked();
    assert_eq!(
        parked_slots(&listed),
        vec![
            ("quick".into(), 801, "p1".into()),
            ("quick".into(), 802, "p2".into())
        ]
    );
    for p in &listed {
        assert_eq!(
            (&p["timed_out"], &p["time_left_secs"]),
            (&json!(true), &json!(0)),
            "list_parked after the timeout: {p}"
        );
        assert!(
            p["release_in_secs"].as_u64().is_some_and(|s| s <= 1),
            "release due within a second: {p}"
        );
    }

    // Retrievable after the first timeout.
    let got = ctl.retrieve("r", Some("quick"), Some(802));
    assert_eq!(
        got,
        json!({"ok": true, "lot": "quick", "slot": 802, "call": "call2", "parked_leg": "p2"})
    );

    // The final timeout releases p1's slot, once.
    let (released, skipped) = ev.wait_event(Duration::from_secs(5), |e| {
        e["event"] == json!("park_released")
    });
    events.extend(skipped);
    let released = released.unwrap_or_else(|| {
        panic!(
            "no park_released within 5 s of the timeout (final_timeout = 1); events {events:?}; \
             stderr:\n{}",
            engine.stderr()
        )
    });
    let released_at = wall_secs();
    events.push(released.clone());
    assert_eq!(
        (
            &released["lot"],
            &released["slot"],
            &released["call"],
            &released["leg"],
            &released["parker"]
        ),
        (
            &json!("quick"),
            &json!(801),
            &json!("call1"),
            &json!("p1"),
            &json!("201")
        ),
        "park_released: {released}"
    );
    assert!(
        released["waited_secs"]
            .as_u64()
            .is_some_and(|w| (2..=4).contains(&w)),
        "released after 1 s + 1 s: {released}"
    );

    std::thread::sleep(Duration::from_millis(500));
    let (code, _) = ctl.err(json!({"cmd": "retrieve", "leg": "r2", "lot": "quick", "slot": 801}));
    assert_eq!(code, "slot_empty", "a released slot is empty");
    let (code, _) = ctl.err(json!({"cmd": "retrieve", "leg": "r2", "lot": "quick"}));
    assert_eq!(code, "slot_empty", "the lot is empty");
    assert!(ctl.list_parked().is_empty());
    let lot = ctl.lot_info("quick");
    assert_eq!(
        (&lot["busy"], &lot["free"]),
        (&json!(0), &json!(5)),
        "{lot}"
    );
    // Wait past where a second timeout or release would come.
    std::thread::sleep(Duration::from_millis(700));
    for p in pacers {
        p.finish();
    }
    events.extend(ev.drain_events(Duration::from_millis(100), Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(60));
    let (got1, got2) = (packets(&rec1.finish()), packets(&rec2.finish()));

    // Each deadline fired once, in order.
    assert_eq!(
        slot_story(&events, 801),
        [
            "parked",
            "slot_state:busy",
            "park_timeout",
            "park_released",
            "slot_state:free"
        ],
        "slot 801 (released): {events:#?}"
    );
    assert_eq!(
        slot_story(&events, 802),
        [
            "parked",
            "slot_state:busy",
            "park_timeout",
            "retrieved",
            "slot_state:free"
        ],
        "slot 802 (retrieved after its timeout): {events:#?}"
    );

    // p1 heard music after the timeout, up to the release, and nothing after it.
    let moh_after_timeout = got1
        .iter()
        .filter(|(p, at)| *at > timed_out_at && *at < released_at - GRACE && is_moh(p))
        .count();
    assert!(
        moh_after_timeout >= 5,
        "p1 heard {moh_after_timeout} music packets between its timeout and its release"
    );
    let after_release: Vec<f64> = got1
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at > released_at + GRACE)
        .collect();
    assert!(
        after_release.is_empty(),
        "p1 heard {} packet(s) after its slot was released",
        after_release.len()
    );
    assert!(got1.iter().all(|(p, _)| is_moh(p)), "p1 heard only music");
    // p2 heard music, then r.
    let first_r = got2
        .iter()
        .position(|(p, _)| p.payload.starts_with(&TAG_R))
        .expect("p2 hears r after the retrieval");
    assert!(
        got2[..first_r].iter().all(|(p, _)| is_moh(p))
            && got2[first_r..]
                .iter()
                .all(|(p, _)| p.payload.starts_with(&TAG_R)),
        "p2 hears music, then r"
    );
    let p2: Vec<RtpView> = got2.into_iter().map(|(p, _)| p).collect();
    let problems = continuity_problems(&p2, &[first_r]);
    assert!(problems.is_empty(), "p2's stream: {problems:?}");
}

fn deleted_parked_leg_gives_up_its_slot(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let (g, h) = (Endpoint::new(), Endpoint::new());
    ctl.leg_port("call1", "g", g.addr());
    ctl.leg_port("call1", "h", h.addr());
    ctl.bridge("g", "h");
    assert_eq!(ctl.park("g", Some("long"), None), 901);
    assert_eq!(ctl.lot_info("long")["busy"], json!(1));

    ctl.ok(json!({"cmd": "delete_leg", "leg": "g"}));
    let (give_up, mut events) = ev.wait_park_event("park_give_up", Duration::from_secs(3));
    let give_up = give_up.expect("park_give_up after deleting a parked leg");
    assert_eq!(
        give_up,
        json!({"event": "park_give_up", "lot": "long", "slot": 901, "call": "call1", "leg": "g",
               "parker": "h", "reason": "deleted", "waited_secs": 0}),
    );
    events.push(give_up);
    events.extend(ev.drain_events(Duration::from_millis(100), Duration::from_secs(2)));
    assert_eq!(
        slot_story(&events, 901),
        [
            "parked",
            "slot_state:busy",
            "park_give_up",
            "slot_state:free"
        ]
    );
    assert!(ctl.list_parked().is_empty());
    let lot = ctl.lot_info("long");
    assert_eq!(
        (&lot["busy"], &lot["free"]),
        (&json!(0), &json!(5)),
        "{lot}"
    );
    // The slot is usable again, and the parker is still there.
    assert_eq!(ctl.park("h", Some("long"), None), 901);
}

fn silent_parked_leg_gives_up_its_slot(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let m = Endpoint::new();
    let created = ctl.ok(json!({"cmd": "create_leg", "call": "call1", "leg": "m",
        "remote": m.addr().to_string(), "media_timeout": 1}));
    let rec = m.record();
    let pacer = m.pace(rtp_port(&created), StreamSpec::pcmu(0x0405, TAG_P));
    std::thread::sleep(Duration::from_millis(200));
    let reply = ctl.ok(json!({"cmd": "park", "leg": "m", "lot": "long", "parker": "300"}));
    assert_eq!(reply["slot"], json!(901));
    std::thread::sleep(Duration::from_millis(300));
    // The caller hangs up without a BYE: its RTP stops.
    pacer.finish();
    let stopped_at = wall_secs();

    let (give_up, mut events) = ev.wait_park_event("park_give_up", Duration::from_secs(5));
    let give_up = give_up.unwrap_or_else(|| {
        panic!(
            "no park_give_up within 5 s of a parked leg with media_timeout = 1 going silent; \
             events {events:?}; stderr:\n{}",
            engine.stderr()
        )
    });
    let gave_up_at = wall_secs();
    assert_eq!(
        (
            &give_up["lot"],
            &give_up["slot"],
            &give_up["call"],
            &give_up["leg"],
            &give_up["parker"],
            &give_up["reason"]
        ),
        (
            &json!("long"),
            &json!(901),
            &json!("call1"),
            &json!("m"),
            &json!("300"),
            &json!("media_timeout")
        ),
        "park_give_up: {give_up}"
    );
    events.push(give_up);
    std::thread::sleep(Duration::from_millis(400));
    events.extend(ev.drain_events(Duration::from_millis(100), Duration::from_secs(2)));
    let got = packets(&rec.finish());

    assert_eq!(
        slot_story(&events, 901),
        [
            "parked",
            "slot_state:busy",
            "park_give_up",
            "slot_state:free"
        ],
        "{events:#?}"
    );
    assert_eq!(
        of_leg(&events, "media_timeout", "m").len(),
        1,
        "one media_timeout event for m: {events:#?}"
    );
    assert!(ctl.list_parked().is_empty());
    assert_eq!(ctl.lot_info("long")["busy"], json!(0));
    // Music played until the give-up, and stopped there.
    assert!(
        got.iter().filter(|(_, at)| *at > stopped_at).count() >= 5,
        "m heard its music after going silent, until the give-up"
    );
    let late = got
        .iter()
        .filter(|(_, at)| *at > gave_up_at + GRACE)
        .count();
    assert_eq!(late, 0, "m heard {late} packet(s) after giving up its slot");
}
