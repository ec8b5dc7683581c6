//! Every way park and retrieve can be refused over the native socket, and what
//! the replies and listings show: unknown lot, slot taken, slot out of range,
//! lot full, empty slot or lot, a second (or concurrent) retrieve of one slot,
//! parking a parked leg, bridging to one, a parked leg retrieving; slot
//! policies as the replies show them; `list_parked` and `list_lots` contents.
//! A refused command changes nothing.
//!
//! Real binary, real sockets, both backends.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::sync::Barrier;
use std::time::Duration;
use support::*;

backend_tests!(
    every_refusal_has_its_code_and_changes_nothing,
    slot_policies_show_in_the_replies,
    listings_show_slots_timers_and_parkers,
    concurrent_retrieves_of_one_slot_have_one_winner,
);

/// Lots `small` (1–2), `low` (21–25, lowest free) and `next` (11–14, next after
/// last) next to the shipped `default` (701–720); none of ours announces slots.
fn engine(backend: Backend, dir: &TempDir) -> Engine {
    Engine::start(
        EngineOptions::new(backend)
            .config(&quick_media(dir))
            .config(&lot_toml("small", "1-2", "announce_slot = false"))
            .config(&lot_toml(
                "low",
                "21-25",
                "policy = \"lowest_free\"\nannounce_slot = false",
            ))
            .config(&lot_toml(
                "next",
                "11-14",
                "policy = \"next_after_last\"\nannounce_slot = false\ntimeout = 30\n\
                 final_timeout = 10\nmoh_class = \"calm\"",
            )),
    )
}

/// Creates legs `names`, each alone in a call `call-<name>`, with an endpoint
/// that is kept (returned) so media sent to it lands somewhere.
fn legs(ctl: &mut Control, names: &[&str]) -> Vec<Endpoint> {
    names
        .iter()
        .map(|name| {
            let e = Endpoint::new();
            ctl.leg_port(&format!("call-{name}"), name, e.addr());
            e
        })
        .collect()
}

fn code_of(ctl: &mut Control, request: Value) -> String {
    ctl.err(request).0
}

fn every_refusal_has_its_code_and_changes_nothing(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let _phones = legs(&mut ctl, &["x1", "x2", "s1", "s2", "s3", "r1", "r2", "y"]);

    // Unknown lot, unknown leg.
    assert_eq!(
        code_of(&mut ctl, json!({"cmd": "park", "leg": "x1", "lot": "nope"})),
        "unknown_lot"
    );
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "r1", "lot": "nope"})
        ),
        "unknown_lot"
    );
    assert_eq!(
        code_of(&mut ctl, json!({"cmd": "park", "leg": "ghost"})),
        "unknown_leg"
    );
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "ghost", "slot": 701})
        ),
        "unknown_leg"
    );

    // Slot taken; slot out of range or not a slot number.
    assert_eq!(ctl.park("x1", None, Some(702)), 702);
    let (code, message) = ctl.err(json!({"cmd": "park", "leg": "x2", "slot": 702}));
    assert_eq!(code, "slot_taken", "{message}");
    for bad in [json!(700), json!(721), json!(0)] {
        assert_eq!(
            code_of(&mut ctl, json!({"cmd": "park", "leg": "x2", "slot": bad})),
            "invalid_field",
            "slot {bad} is outside 701–720"
        );
    }
    for bad in [json!("703"), json!(-1), json!(7.5), json!(5_000_000_000u64)] {
        assert_eq!(
            code_of(&mut ctl, json!({"cmd": "park", "leg": "x2", "slot": bad})),
            "invalid_field",
            "slot {bad} is not a slot number"
        );
    }

    // Lot full.
    assert_eq!(ctl.park("s1", Some("small"), None), 1);
    assert_eq!(ctl.park("s2", Some("small"), None), 2);
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "park", "leg": "s3", "lot": "small"})
        ),
        "lot_full"
    );

    // Empty slot, empty lot.
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "r1", "slot": 705})
        ),
        "slot_empty"
    );
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "r1", "lot": "next"})
        ),
        "slot_empty",
        "retrieving the longest waiting of an empty lot"
    );

    // Parking a parked leg, in its lot or another.
    assert_eq!(
        code_of(&mut ctl, json!({"cmd": "park", "leg": "x1"})),
        "invalid_state"
    );
    assert_eq!(
        code_of(&mut ctl, json!({"cmd": "park", "leg": "x1", "lot": "low"})),
        "invalid_state"
    );

    // Bridging to a parked leg, either way round.
    assert_eq!(
        code_of(&mut ctl, json!({"cmd": "bridge", "a": "y", "b": "x1"})),
        "invalid_state"
    );
    assert_eq!(
        code_of(&mut ctl, json!({"cmd": "bridge", "a": "x1", "b": "y"})),
        "invalid_state"
    );

    // A parked leg cannot retrieve, not even its own slot.
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "x1", "lot": "small", "slot": 2})
        ),
        "invalid_state"
    );
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "x1", "slot": 702})
        ),
        "invalid_state"
    );
    assert_eq!(
        code_of(
            &mut ctl,
            json!({"cmd": "retrieve", "leg": "s1", "lot": "small"})
        ),
        "invalid_state"
    );

    // Nothing above changed the lots.
    assert_eq!(
        parked_slots(&ctl.list_parked()),
        vec![
            ("default".into(), 702, "x1".into()),
            ("small".into(), 1, "s1".into()),
            ("small".into(), 2, "s2".into()),
        ]
    );
    for leg in ["x2", "s3", "y", "r1"] {
        let info = ctl.leg_info(&format!("call-{leg}"), leg);
        assert_eq!(
            (&info["peer"], &info["state"]),
            (&Value::Null, &json!("idle")),
            "{leg} was only named in refused commands: {info}"
        );
    }

    // Retrieve twice: the second finds the slot empty.
    let first = ctl.retrieve("r1", Some("small"), Some(1));
    assert_eq!(
        first,
        json!({"ok": true, "lot": "small", "slot": 1, "call": "call-s1", "parked_leg": "s1"})
    );
    let (code, _) = error_of(
        &json!("second retrieve"),
        &ctl.retrieve("r2", Some("small"), Some(1)),
    );
    assert_eq!(code, "slot_empty");
    assert_eq!(ctl.leg_info("call-r1", "r1")["peer"], json!("s1"));
    assert_eq!(ctl.leg_info("call-r2", "r2")["peer"], Value::Null);

    // The legs of refused parks are still parkable, and a freed slot is free.
    assert_eq!(ctl.park("x2", None, Some(703)), 703);
    assert_eq!(ctl.park("s3", Some("small"), None), 1);
    // A retrieved leg is live again, so it can be parked again.
    assert_eq!(ctl.park("s1", Some("low"), None), 21);
}

fn slot_policies_show_in_the_replies(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let _phones = legs(
        &mut ctl,
        &[
            "l1", "l2", "l3", "l4", "l5", "n1", "n2", "n3", "n4", "n5", "n6", "r",
        ],
    );
    let retrieve_ok = |ctl: &mut Control, lot: &str, slot: u32| {
        let r = ctl.retrieve("r", Some(lot), Some(slot));
        assert_eq!(r["ok"], json!(true), "retrieve {lot} {slot}: {r}");
        // Free the retriever for the next retrieval.
        ctl.ok(json!({"cmd": "unbridge", "leg": "r"}));
    };

    // lowest_free fills holes.
    assert_eq!(ctl.park("l1", Some("low"), None), 21);
    assert_eq!(ctl.park("l2", Some("low"), None), 22);
    assert_eq!(ctl.park("l3", Some("low"), None), 23);
    retrieve_ok(&mut ctl, "low", 22);
    assert_eq!(ctl.park("l4", Some("low"), None), 22, "fills the hole");
    assert_eq!(ctl.park("l5", Some("low"), None), 24);

    // next_after_last advances past a freed slot and wraps around.
    assert_eq!(ctl.park("n1", Some("next"), None), 11);
    assert_eq!(ctl.park("n2", Some("next"), None), 12);
    retrieve_ok(&mut ctl, "next", 11);
    assert_eq!(
        ctl.park("n3", Some("next"), None),
        13,
        "does not go back to 11"
    );
    assert_eq!(ctl.park("n4", Some("next"), None), 14);
    assert_eq!(ctl.park("n5", Some("next"), None), 11, "wraps around");
    let (code, _) = ctl.err(json!({"cmd": "park", "leg": "n6", "lot": "next"}));
    assert_eq!(code, "lot_full");
    retrieve_ok(&mut ctl, "next", 13);
    assert_eq!(ctl.park("n6", Some("next"), None), 13, "the only free slot");

    let lots: Vec<(Value, Value, Value)> = ctl
        .list_lots()
        .iter()
        .map(|l| (l["name"].clone(), l["busy"].clone(), l["free"].clone()))
        .collect();
    assert!(
        lots.contains(&(json!("low"), json!(4), json!(1)))
            && lots.contains(&(json!("next"), json!(4), json!(0))),
        "list_lots: {lots:?}"
    );
}

fn listings_show_slots_timers_and_parkers(backend: Backend) {
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let _phones = legs(&mut ctl, &["a", "b", "c", "d"]);
    // One more call with two bridged legs: parking one makes the other the parker.
    let (e, f) = (Endpoint::new(), Endpoint::new());
    ctl.leg_port("call-ef", "e", e.addr());
    ctl.leg_port("call-ef", "f", f.addr());
    ctl.bridge("e", "f");

    assert!(ctl.list_parked().is_empty());
    let lots = ctl.list_lots();
    assert_eq!(
        lots,
        vec![
            json!({"name": "default", "slots": {"start": 701, "end": 720}, "busy": 0, "free": 20,
                   "timeout_secs": 45, "final_timeout_secs": 60, "moh_class": "default"}),
            json!({"name": "low", "slots": {"start": 21, "end": 25}, "busy": 0, "free": 5,
                   "timeout_secs": 45, "final_timeout_secs": 60, "moh_class": "default"}),
            json!({"name": "next", "slots": {"start": 11, "end": 14}, "busy": 0, "free": 4,
                   "timeout_secs": 30, "final_timeout_secs": 10, "moh_class": "calm"}),
            json!({"name": "small", "slots": {"start": 1, "end": 2}, "busy": 0, "free": 2,
                   "timeout_secs": 45, "final_timeout_secs": 60, "moh_class": "default"}),
        ],
        "list_lots, sorted by name"
    );

    ctl.ok(json!({"cmd": "park", "leg": "a", "slot": 715, "parker": "sip:200@pbx"}));
    ctl.ok(json!({"cmd": "park", "leg": "b", "lot": "next"}));
    ctl.ok(json!({"cmd": "park", "leg": "e", "lot": "small", "slot": 2}));
    ctl.ok(json!({"cmd": "park", "leg": "c", "lot": "small", "parker": "201"}));

    let parked = ctl.list_parked();
    assert_eq!(
        parked_slots(&parked),
        vec![
            ("default".into(), 715, "a".into()),
            ("next".into(), 11, "b".into()),
            ("small".into(), 1, "c".into()),
            ("small".into(), 2, "e".into()),
        ],
        "sorted by lot, then slot: {parked:#?}"
    );
    let by_leg = |leg: &str| {
        parked
            .iter()
            .find(|p| p["leg"] == json!(leg))
            .cloned()
            .unwrap_or_default()
    };
    let a = by_leg("a");
    assert_eq!(
        (&a["call"], &a["parker"], &a["timed_out"], &a["since_secs"]),
        (
            &json!("call-a"),
            &json!("sip:200@pbx"),
            &json!(false),
            &json!(0)
        ),
        "{a}"
    );
    // Rounded up: 45 s minus a few milliseconds shows as 45.
    assert_eq!(
        (&a["time_left_secs"], &a["release_in_secs"]),
        (&json!(45), &json!(105)),
        "{a}"
    );
    let b = by_leg("b");
    assert_eq!(
        (&b["parker"], &b["time_left_secs"], &b["release_in_secs"]),
        (&Value::Null, &json!(30), &json!(40)),
        "no parker named and no peer: {b}"
    );
    assert_eq!(
        by_leg("e")["parker"],
        json!("f"),
        "the former peer parked e"
    );
    assert_eq!(by_leg("c")["parker"], json!("201"));

    let lots: Vec<(Value, Value, Value)> = ctl
        .list_lots()
        .iter()
        .map(|l| (l["name"].clone(), l["busy"].clone(), l["free"].clone()))
        .collect();
    assert_eq!(
        lots,
        vec![
            (json!("default"), json!(1), json!(19)),
            (json!("low"), json!(0), json!(5)),
            (json!("next"), json!(1), json!(3)),
            (json!("small"), json!(2), json!(0)),
        ]
    );

    // Retrieval shows in both listings.
    assert_eq!(ctl.retrieve("d", Some("small"), Some(2))["ok"], json!(true));
    assert_eq!(
        parked_slots(&ctl.list_parked()),
        vec![
            ("default".into(), 715, "a".into()),
            ("next".into(), 11, "b".into()),
            ("small".into(), 1, "c".into()),
        ]
    );
    assert_eq!(ctl.lot_info("small")["busy"], json!(1));
    assert_eq!(ctl.lot_info("small")["free"], json!(1));
    // `since_secs` counts up.
    std::thread::sleep(Duration::from_millis(1100));
    let a = ctl
        .list_parked()
        .into_iter()
        .find(|p| p["leg"] == json!("a"))
        .expect("a is still parked");
    assert!(
        a["since_secs"].as_u64().is_some_and(|s| s >= 1)
            && a["time_left_secs"].as_u64().is_some_and(|s| s <= 44),
        "a second later: {a}"
    );
}

fn concurrent_retrieves_of_one_slot_have_one_winner(backend: Backend) {
    const ROUNDS: usize = 10;
    let dir = TempDir::new();
    let engine = engine(backend, &dir);
    let mut ctl = engine.control();
    let mut ev = engine.control();
    ev.subscribe();
    let mut names = Vec::new();
    for i in 0..ROUNDS {
        names.push(format!("t{i}"));
        names.push(format!("u{i}"));
        names.push(format!("v{i}"));
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let _phones = legs(&mut ctl, &refs);
    let mut racers = [engine.control(), engine.control()];

    for i in 0..ROUNDS {
        let parked = format!("t{i}");
        assert_eq!(ctl.park(&parked, None, Some(710)), 710);
        let barrier = Barrier::new(2);
        let replies: Vec<(String, Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = racers
                .iter_mut()
                .zip([format!("u{i}"), format!("v{i}")])
                .map(|(racer, me)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let reply = racer.retrieve(&me, None, Some(710));
                        (me, reply)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("racer thread"))
                .collect()
        });
        let winners: Vec<&(String, Value)> = replies
            .iter()
            .filter(|(_, r)| r["ok"] == json!(true))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {i}: exactly one retrieve wins: {replies:?}"
        );
        let (winner, reply) = winners[0];
        assert_eq!(reply["parked_leg"], json!(parked), "round {i}: {reply}");
        for (me, r) in &replies {
            if me != winner {
                assert_eq!(
                    error_of(&json!("the losing retrieve"), r).0,
                    "slot_empty",
                    "round {i}: {r}"
                );
                assert_eq!(
                    ctl.leg_info(&format!("call-{me}"), me)["peer"],
                    Value::Null,
                    "round {i}: the loser {me} is bridged to nobody"
                );
            }
        }
        assert_eq!(
            ctl.leg_info(&format!("call-{parked}"), &parked)["peer"],
            json!(winner),
            "round {i}: the parked leg is bridged to the winner"
        );
        assert!(ctl.list_parked().is_empty(), "round {i}");
    }
    let events = ev.drain_events(Duration::from_millis(100), Duration::from_secs(2));
    let retrieved = events
        .iter()
        .filter(|e| e["event"] == json!("retrieved"))
        .count();
    assert_eq!(
        retrieved, ROUNDS,
        "one retrieved event per round: {events:#?}"
    );
    assert_eq!(ctl.lot_info("default")["busy"], json!(0));
}

/// A parked leg hears its lot's music for as long as it is in its slot:
/// `unhold`, `stop_play` or an announcement ending in `live` either leave it on
/// music or take it out of the slot, never leave it parked in dead air.
#[test]
fn commands_on_a_parked_leg_never_leave_it_parked_in_silence() {
    let dir = TempDir::new();
    let engine = engine(Backend::Epoll, &dir);
    let mut ctl = engine.control();
    let commands = [
        ("u", json!({"cmd": "unhold", "leg": "u"})),
        ("s", json!({"cmd": "stop_play", "leg": "s"})),
        (
            "p",
            json!({"cmd": "play", "leg": "p", "announcement": "courtesy-tone", "then": "live"}),
        ),
    ];
    let phones: Vec<Endpoint> = commands
        .iter()
        .map(|(leg, _)| {
            let e = Endpoint::new();
            ctl.leg_port(&format!("call-{leg}"), leg, e.addr());
            e
        })
        .collect();
    let recorders: Vec<Recorder> = phones.iter().map(Endpoint::record).collect();
    for (leg, _) in &commands {
        ctl.park(leg, Some("low"), None);
    }
    let mut replies = Vec::new();
    for (_, cmd) in &commands {
        replies.push(ctl.request(cmd.clone()));
    }
    // The courtesy tone lasts under half a second.
    std::thread::sleep(Duration::from_millis(700));
    let window = wall_secs();
    std::thread::sleep(Duration::from_millis(500));
    let parked: Vec<String> = ctl
        .list_parked()
        .iter()
        .map(|p| p["leg"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut problems = Vec::new();
    for (((leg, cmd), reply), rec) in commands.iter().zip(&replies).zip(recorders) {
        let heard = rec.finish().iter().filter(|s| s.at > window).count();
        let state = ctl.leg_info(&format!("call-{leg}"), leg)["state"].clone();
        if parked.iter().any(|p| p == leg) && heard < 5 {
            problems.push(format!(
                "{cmd} → {reply}: {leg} is still parked but heard {heard} packet(s) in 500 ms \
                 (state {state})"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "parked legs in dead air:\n  {}",
        problems.join("\n  ")
    );
}
