//! What parking state survives and what it does not: deleting a parked call
//! frees its slot (give-up); a parking outlives the control connection that
//! made it; with two workers, parking and retrieving across workers (the parked
//! leg moves to each retriever's worker) keeps one clean stream and never
//! leaves a slot pointing at a leg that is gone; retrieve without a slot takes
//! the call that has waited longest.
//!
//! Real binary, real sockets, both backends.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

backend_tests!(
    deleting_a_parked_call_frees_its_slot,
    parking_outlives_the_connection_that_made_it,
    park_and_retrieve_across_workers_leaves_no_dead_slot,
    retrieve_without_slot_takes_the_longest_waiting,
);

const TAG_A: [u8; 4] = *b"\x05AAA";
const TAG_B: [u8; 4] = *b"\x05BBB";
const TAG_C: [u8; 4] = *b"\x05CCC";
const TAG_E: [u8; 4] = *b"\x05EEE";
const TAG_F: [u8; 4] = *b"\x05FFF";

/// How long each phase with media lasts.
const PHASE: Duration = Duration::from_millis(250);

/// An engine with a lot `quiet` (501–510) that announces nothing, besides the
/// shipped `default`.
fn engine(backend: Backend, workers: usize, dir: &TempDir) -> Engine {
    Engine::start(
        EngineOptions::new(backend)
            .workers(workers)
            .config(&quick_media(dir))
            .config(&lot_toml("quiet", "501-510", "announce_slot = false")),
    )
}

/// Where a packet came from: a phone's tag (its second byte), `M` for the
/// `default` class, `?` for anything else.
fn source(p: &RtpView) -> char {
    for tag in [TAG_A, TAG_B, TAG_C, TAG_E, TAG_F] {
        if p.payload.starts_with(&tag) {
            return char::from(tag[1]);
        }
    }
    let tones = [QUICK_DEFAULT_HZ, 1000.0, 300.0];
    if p.pt == 0 && dominant_tone(&ulaw_samples(&p.payload), 8000, &tones) == Some(0) {
        'M'
    } else {
        '?'
    }
}

/// The sources of a received stream, one letter per run, and the index of the
/// first packet of each run after the first.
fn runs(packets: &[RtpView]) -> (String, Vec<usize>) {
    let mut letters = String::new();
    let mut switches = Vec::new();
    let mut last = None;
    for (i, p) in packets.iter().enumerate() {
        let s = source(p);
        if last != Some(s) {
            if last.is_some() {
                switches.push(i);
            }
            letters.push(s);
            last = Some(s);
        }
    }
    (letters, switches)
}

fn rtp_of(recorded: &[Stamped]) -> Vec<RtpView> {
    recorded.iter().filter_map(|s| parse_rtp(&s.data)).collect()
}

fn stats(ctl: &mut Control) -> Value {
    ctl.ok(json!({"cmd": "stats"}))
}

fn deleting_a_parked_call_frees_its_slot(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, 1, &dir);
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let free_pairs = stats(&mut ctl)["free_port_pairs"].clone();
    let (a, b) = (Endpoint::new(), Endpoint::new());
    ctl.leg_port("call1", "A", a.addr());
    ctl.leg_port("call1", "B", b.addr());
    ctl.bridge("A", "B");
    assert_eq!(ctl.park("A", Some("quiet"), None), 501);

    ctl.ok(json!({"cmd": "delete_call", "call": "call1"}));
    let (deleted, mut events) = ev.wait_event(Duration::from_secs(3), |e| {
        e["event"] == json!("call_deleted")
    });
    assert!(deleted.is_some(), "no call_deleted: {events:?}");
    events.extend(deleted);
    events.extend(ev.drain_events(Duration::from_millis(100), Duration::from_secs(1)));
    // The parker's slot announcement may end (playback_done) on a slow machine.
    events.retain(|e| e["event"] != json!("playback_done"));
    let story: Vec<(Value, Value)> = events
        .iter()
        .map(|e| (e["event"].clone(), e["state"].clone()))
        .collect();
    assert_eq!(
        story,
        vec![
            (json!("parked"), Value::Null),
            (json!("slot_state"), json!("busy")),
            (json!("park_give_up"), Value::Null),
            (json!("slot_state"), json!("free")),
            (json!("call_deleted"), Value::Null),
        ],
        "{events:#?}"
    );
    assert_eq!(
        events[2],
        json!({"event": "park_give_up", "lot": "quiet", "slot": 501, "call": "call1", "leg": "A",
               "parker": "B", "reason": "deleted", "waited_secs": 0})
    );
    assert!(ctl.list_parked().is_empty());
    assert_eq!(ctl.lot_info("quiet")["busy"], json!(0));
    let after = stats(&mut ctl);
    assert_eq!(
        (&after["calls"], &after["legs"], &after["free_port_pairs"]),
        (&json!(0), &json!(0), &free_pairs),
        "{after}"
    );
    // The slot takes the next parking.
    let c = Endpoint::new();
    ctl.leg_port("call2", "C", c.addr());
    assert_eq!(ctl.park("C", Some("quiet"), None), 501);
}

fn parking_outlives_the_connection_that_made_it(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, 1, &dir);
    let mut watcher = engine.control();
    watcher.subscribe();
    let (a, b) = (Endpoint::new(), Endpoint::new());
    let rec_a = a.record();
    let (a_port, b_port);
    {
        // The connection that sets up the call and parks A, subscribed too, then gone.
        let mut first = engine.control();
        first.subscribe();
        a_port = first.leg_port("call1", "A", a.addr());
        b_port = first.leg_port("call1", "B", b.addr());
        first.bridge("A", "B");
        assert_eq!(first.park("A", Some("quiet"), Some(507)), 507);
    }
    let pacers = [
        a.pace(a_port, StreamSpec::pcmu(0x0501, TAG_A)),
        b.pace(b_port, StreamSpec::pcmu(0x0502, TAG_B)),
    ];
    std::thread::sleep(PHASE);

    let mut second = engine.control();
    let parked = second.list_parked();
    assert_eq!(
        parked_slots(&parked),
        vec![("quiet".into(), 507, "A".into())],
        "the parking outlives its connection: {parked:?}"
    );
    assert_eq!(parked[0]["parker"], json!("B"));
    // The parker picks the call back up, from another connection.
    let reply = second.retrieve("B", Some("quiet"), None);
    assert_eq!(
        reply,
        json!({"ok": true, "lot": "quiet", "slot": 507, "call": "call1", "parked_leg": "A"})
    );
    std::thread::sleep(PHASE);
    for p in pacers {
        p.finish();
    }
    std::thread::sleep(Duration::from_millis(60));
    let got = rtp_of(&rec_a.finish());
    let (letters, switches) = runs(&got);
    assert_eq!(letters, "MB", "A hears music, then B again");
    let problems = continuity_problems(&got, &switches);
    assert!(problems.is_empty(), "A's stream: {problems:?}");
    assert!(second.list_parked().is_empty());

    let events = watcher.drain_events(Duration::from_millis(100), Duration::from_secs(1));
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| is_park_event(e))
        .map(|e| e["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["parked", "slot_state", "retrieved", "slot_state"],
        "{events:#?}"
    );
}

fn park_and_retrieve_across_workers_leaves_no_dead_slot(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, 2, &dir);
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let free_pairs = stats(&mut ctl)["free_port_pairs"].clone();
    // Calls go to the worker with fewer legs: call1 (A, B) to one worker,
    // call2 (C) and call3 (E) to the other, call4 (F) back to the first.
    let phones: Vec<Endpoint> = (0..5).map(|_| Endpoint::new()).collect();
    let rec_a = phones[0].record();
    let mut pacers = Vec::new();
    for (i, (call, leg, tag)) in [
        ("call1", "A", TAG_A),
        ("call1", "B", TAG_B),
        ("call2", "C", TAG_C),
        ("call3", "E", TAG_E),
        ("call4", "F", TAG_F),
    ]
    .into_iter()
    .enumerate()
    {
        let port = ctl.leg_port(call, leg, phones[i].addr());
        if i == 1 {
            ctl.bridge("A", "B");
        }
        pacers.push(phones[i].pace(port, StreamSpec::pcmu(0x0510 + i as u32, tag)));
    }
    std::thread::sleep(PHASE);

    // B parks A; C (other worker) retrieves; C parks A; F (first worker)
    // retrieves; F parks A; E (other worker) retrieves.
    for (parker, retriever, call) in [
        ("B", "C", "call2"),
        ("C", "F", "call4"),
        ("F", "E", "call3"),
    ] {
        let slot = ctl.park("A", Some("quiet"), None);
        assert_eq!(slot, 501);
        assert_eq!(ctl.list_parked()[0]["parker"], json!(parker));
        std::thread::sleep(PHASE);
        let reply = ctl.retrieve(retriever, Some("quiet"), None);
        assert_eq!(reply["parked_leg"], json!("A"), "{reply}");
        let info = ctl.leg_info(call, retriever);
        assert_eq!(
            (&info["peer"], &info["state"]),
            (&json!("A"), &json!("live")),
            "{info}"
        );
        std::thread::sleep(PHASE);
    }

    // The retriever's call goes away: A is alone, nothing is parked.
    ctl.ok(json!({"cmd": "delete_call", "call": "call3"}));
    assert!(ctl.list_parked().is_empty());
    assert!(
        ctl.list_lots().iter().all(|l| l["busy"] == json!(0)),
        "no slot is busy: {:?}",
        ctl.list_lots()
    );
    let a_info = ctl.leg_info("call1", "A");
    assert_eq!(
        (&a_info["peer"], &a_info["state"]),
        (&Value::Null, &json!("idle")),
        "{a_info}"
    );
    let b_info = ctl.leg_info("call1", "B");
    assert_eq!(b_info["peer"], Value::Null, "{b_info}");

    // A, now on the other worker than its call, parks again; its call is deleted.
    assert_eq!(ctl.park("A", Some("quiet"), None), 501);
    std::thread::sleep(PHASE);
    ctl.ok(json!({"cmd": "delete_call", "call": "call1"}));
    let deleted_at = wall_secs();
    assert!(
        ctl.list_parked().is_empty(),
        "no slot points at the deleted A: {:?}",
        ctl.list_parked()
    );
    assert_eq!(ctl.lot_info("quiet")["busy"], json!(0));
    assert_eq!(
        error_of(&json!("retrieve"), &ctl.retrieve("C", Some("quiet"), None)).0,
        "slot_empty"
    );
    std::thread::sleep(Duration::from_millis(100));
    for p in pacers {
        p.finish();
    }
    std::thread::sleep(Duration::from_millis(60));
    let recorded = rec_a.finish();
    let late = recorded.iter().filter(|s| s.at > deleted_at + 0.05).count();
    assert_eq!(late, 0, "deleted A still received {late} packet(s)");
    let got = rtp_of(&recorded);

    // One stream for A across every move: B, music, C, music, F, music, E, music.
    let (letters, switches) = runs(&got);
    assert_eq!(letters, "BMCMFMEM", "A's sources");
    let problems = continuity_problems(&got, &switches);
    assert!(problems.is_empty(), "A's stream: {problems:?}");

    // Each parking ended once: three retrievals and one give-up.
    let events = ev.drain_events(Duration::from_millis(100), Duration::from_secs(2));
    let count = |kind: &str| events.iter().filter(|e| e["event"] == json!(kind)).count();
    assert_eq!(
        (count("parked"), count("retrieved"), count("park_give_up")),
        (4, 3, 1),
        "{events:#?}"
    );
    let busy = events
        .iter()
        .filter(|e| e["state"] == json!("busy"))
        .count();
    let free = events
        .iter()
        .filter(|e| e["state"] == json!("free"))
        .count();
    assert_eq!((busy, free), (4, 4), "every busy slot went free again");

    // The remaining legs are intact, the deleted ones' ports are back.
    ctl.ok(json!({"cmd": "delete_call", "call": "call2"}));
    ctl.ok(json!({"cmd": "delete_call", "call": "call4"}));
    let after = stats(&mut ctl);
    assert_eq!(
        (&after["calls"], &after["legs"], &after["free_port_pairs"]),
        (&json!(0), &json!(0), &free_pairs),
        "{after}"
    );
}

fn retrieve_without_slot_takes_the_longest_waiting(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, 1, &dir);
    let mut ctl = engine.control();
    let names = ["L1", "L2", "L3", "R1", "R2", "R3", "R4", "R5"];
    let _phones: Vec<Endpoint> = names
        .iter()
        .map(|n| {
            let e = Endpoint::new();
            ctl.leg_port(&format!("call-{n}"), n, e.addr());
            e
        })
        .collect();
    // Parked in this order, into slots in another order.
    assert_eq!(ctl.park("L1", Some("quiet"), Some(505)), 505);
    assert_eq!(ctl.park("L2", Some("quiet"), Some(501)), 501);
    assert_eq!(ctl.park("L3", Some("quiet"), Some(503)), 503);

    let take = |ctl: &mut Control, by: &str| -> (Value, Value) {
        let r = ctl.retrieve(by, Some("quiet"), None);
        assert_eq!(r["ok"], json!(true), "{r}");
        (r["parked_leg"].clone(), r["slot"].clone())
    };
    assert_eq!(take(&mut ctl, "R1"), (json!("L1"), json!(505)));
    // L1 parks again: it now waits behind L2 and L3.
    ctl.ok(json!({"cmd": "unbridge", "leg": "L1"}));
    assert_eq!(ctl.park("L1", Some("quiet"), None), 502);
    assert_eq!(take(&mut ctl, "R2"), (json!("L2"), json!(501)));
    assert_eq!(take(&mut ctl, "R3"), (json!("L3"), json!(503)));
    assert_eq!(take(&mut ctl, "R4"), (json!("L1"), json!(502)));
    assert_eq!(
        error_of(&json!("retrieve"), &ctl.retrieve("R5", Some("quiet"), None)).0,
        "slot_empty"
    );
}
