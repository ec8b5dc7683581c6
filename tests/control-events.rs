//! Events over a real rtpark socket: `media_timeout` once per silence (and again
//! after RTP resumed and stopped), `call_deleted` with reason `command` or
//! `last_leg`, delivered to every subscriber, interleaved with replies.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;

backend_tests!(media_timeout_fires_once_per_silence);

/// Long enough for any event that is due to have arrived.
const EVENT_WAIT: Duration = Duration::from_secs(4);

fn subscribe(engine: &Engine) -> Control {
    let mut ctl = engine.control();
    let reply = ctl.ok(json!({"id": "sub", "cmd": "subscribe"}));
    assert_eq!(reply, json!({"id": "sub", "ok": true, "subscribed": true}));
    ctl
}

fn is_media_timeout(leg: &'static str) -> impl Fn(&Value) -> bool {
    move |ev| ev["event"] == json!("media_timeout") && ev["leg"] == json!(leg)
}

fn media_timeout_fires_once_per_silence(backend: Backend) {
    let engine = Engine::on(backend);
    let mut events = subscribe(&engine);
    let mut ctl = engine.control();
    let phone = Endpoint::new();
    let leg = ctl.ok(json!({"cmd": "create_leg", "call": "quiet", "leg": "q",
        "remote": phone.addr().to_string(), "media_timeout": 1}));
    let port = rtp_port(&leg);
    let send =
        |seq: u16| phone.send_to_port(&rtp(seq, u32::from(seq) * 160, 0x51, 0, &[0xff; 160]), port);

    // RTP every 100 ms for longer than the timeout: no event while media flows.
    let mut seq = 0;
    let flowing_until = Instant::now() + Duration::from_millis(1600);
    while Instant::now() < flowing_until {
        seq += 1;
        send(seq);
        if let Some(ev) = events.next_event(Duration::from_millis(100)) {
            panic!("no event expected while RTP flows, got {ev}");
        }
    }
    assert_eq!(ctl.counter("quiet", "q", "rtp_in"), u64::from(seq));

    // Silence: exactly one media_timeout.
    let silent_since = Instant::now();
    let (ev, other) = events.wait_event(EVENT_WAIT, is_media_timeout("q"));
    let ev = ev.unwrap_or_else(|| {
        panic!("no media_timeout within {EVENT_WAIT:?}; other events: {other:?}")
    });
    assert!(other.is_empty(), "unexpected events: {other:?}");
    assert!(
        silent_since.elapsed() >= Duration::from_millis(500),
        "media_timeout came {:?} after the last packet, before the 1 s timeout",
        silent_since.elapsed()
    );
    assert_eq!(
        ev,
        json!({"event": "media_timeout", "call": "quiet", "leg": "q", "after_secs": 1})
    );
    if let Some(again) = events.next_event(Duration::from_millis(2500)) {
        panic!("media_timeout must be raised once per silence, got another event: {again}");
    }
    // The leg is still there: the SIP core decides what to do.
    let info = ctl.leg_info("quiet", "q");
    assert_eq!(info["counters"]["rtp_in"], json!(seq), "{info}");

    // RTP resumes, then stops again: a new timeout is raised.
    for _ in 0..3 {
        seq += 1;
        send(seq);
    }
    let (ev, _) = events.wait_event(EVENT_WAIT, is_media_timeout("q"));
    assert!(
        ev.is_some(),
        "a second silence should raise media_timeout again"
    );
    assert_eq!(ctl.counter("quiet", "q", "rtp_in"), u64::from(seq));
}

#[test]
fn delete_call_raises_call_deleted_command() {
    let engine = Engine::on(Backend::Epoll);
    let mut first = subscribe(&engine);
    let mut second = subscribe(&engine);
    let mut ctl = engine.control();
    for leg in ["a", "b", "c"] {
        ctl.ok(json!({"cmd": "create_leg", "call": "doomed", "leg": leg}));
    }
    ctl.bridge("a", "b");
    ctl.ok(json!({"cmd": "delete_call", "call": "doomed"}));
    let expected = json!({"event": "call_deleted", "call": "doomed", "reason": "command"});
    for (name, sub) in [("first", &mut first), ("second", &mut second)] {
        let ev = sub.next_event(EVENT_WAIT);
        assert_eq!(ev.as_ref(), Some(&expected), "{name} subscriber");
        // One event for the call, not one per leg.
        assert_eq!(
            sub.next_event(Duration::from_millis(200)),
            None,
            "{name} subscriber"
        );
    }
    assert_eq!(
        ctl.err(json!({"cmd": "query_call", "call": "doomed"})).0,
        "unknown_call"
    );
}

#[test]
fn deleting_the_last_leg_raises_call_deleted_last_leg() {
    let engine = Engine::on(Backend::Epoll);
    let mut events = subscribe(&engine);
    let mut ctl = engine.control();
    ctl.ok(json!({"cmd": "create_leg", "call": "fading", "leg": "x"}));
    ctl.ok(json!({"cmd": "create_leg", "call": "fading", "leg": "y"}));
    ctl.bridge("x", "y");
    // Not the last leg: no event, and the call remains with its other leg.
    ctl.ok(json!({"cmd": "delete_leg", "leg": "x"}));
    let info = ctl.leg_info("fading", "y");
    assert_eq!(info["peer"], json!(null), "{info}");
    assert_eq!(info["state"], json!("idle"), "{info}");
    ctl.ok(json!({"cmd": "delete_leg", "leg": "y"}));
    assert_eq!(
        events.next_event(EVENT_WAIT),
        Some(json!({"event": "call_deleted", "call": "fading", "reason": "last_leg"}))
    );
    assert_eq!(events.next_event(Duration::from_millis(200)), None);
    assert_eq!(
        ctl.err(json!({"cmd": "query_call", "call": "fading"})).0,
        "unknown_call"
    );
}

/// A subscribed connection still answers requests, in order, with events
/// interleaved between the reply lines; a subscriber that hangs up does not
/// disturb the others.
#[test]
fn subscriber_connection_keeps_serving_requests() {
    let engine = Engine::on(Backend::Epoll);
    let mut sub = subscribe(&engine);
    {
        let _gone = subscribe(&engine);
    }
    for i in 0..5 {
        let call = format!("c{i}");
        let created =
            sub.ok(json!({"id": i, "cmd": "create_leg", "call": call, "leg": format!("l{i}")}));
        assert_eq!(created["id"], json!(i));
        let deleted = sub.ok(json!({"id": 100 + i, "cmd": "delete_call", "call": call}));
        assert_eq!(deleted["id"], json!(100 + i));
    }
    // Subscribing twice on one connection does not duplicate events.
    sub.ok(json!({"cmd": "subscribe"}));
    sub.ok(json!({"cmd": "create_leg", "call": "c5", "leg": "l5"}));
    sub.ok(json!({"cmd": "delete_leg", "leg": "l5"}));
    let mut seen = Vec::new();
    while let Some(ev) = sub.next_event(Duration::from_millis(300)) {
        seen.push(ev);
    }
    let mut expected: Vec<Value> = (0..5)
        .map(|i| json!({"event": "call_deleted", "call": format!("c{i}"), "reason": "command"}))
        .collect();
    expected.push(json!({"event": "call_deleted", "call": "c5", "reason": "last_leg"}));
    assert_eq!(seen, expected);
    // The engine is fine after the other subscriber left.
    assert_eq!(
        engine.control().ok(json!({"cmd": "ping"}))["pong"],
        json!("pong")
    );
}
