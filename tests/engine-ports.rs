//! The port range of a real rtpark process: even RTP / odd RTCP pairs inside
//! the configured range, a clear `ports_exhausted` error when it is full, and
//! pairs coming back with `delete_leg` and `delete_call`: kept bound and
//! refusing every sender while free (the default), or closed (`warm_ports = 0`).
//! Runs on both backends (ending a socket's receive in flight differs between them).

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use support::*;

backend_tests!(
    three_pairs_then_exhausted_then_freed,
    freed_pair_is_reusable_at_once,
    without_warm_ports_freed_pairs_are_closed,
);

fn create(ctl: &mut Control, call: &str, leg: &str) -> Value {
    ctl.request(json!({"cmd": "create_leg", "call": call, "leg": leg, "remote": "127.0.0.1:9"}))
}

fn stats(ctl: &mut Control) -> Value {
    ctl.ok(json!({"cmd": "stats"}))
}

/// Asserts a created leg's ports are a fresh even/odd pair inside the range.
fn check_pair(engine: &Engine, reply: &Value, in_use: &mut BTreeSet<u16>) -> u16 {
    assert_eq!(reply["ok"], json!(true), "{reply}");
    let (rtp, rtcp) = (rtp_port(reply), rtcp_port(reply));
    assert_eq!(rtp % 2, 0, "RTP port must be even: {reply}");
    assert_eq!(rtcp, rtp + 1, "RTCP port must be RTP + 1: {reply}");
    assert!(
        rtp >= engine.port_min && rtcp <= engine.port_max,
        "ports outside {}–{}: {reply}",
        engine.port_min,
        engine.port_max
    );
    assert!(in_use.insert(rtp), "port {rtp} handed out twice: {reply}");
    assert_eq!(reply["ip"], json!("127.0.0.1"), "{reply}");
    // rtpark really holds both ports.
    for port in [rtp, rtcp] {
        assert!(
            UdpSocket::bind(("127.0.0.1", port)).is_err(),
            "port {port} should be bound by rtpark"
        );
    }
    rtp
}

fn assert_exhausted(engine: &Engine, reply: &Value) {
    let (code, message) = error_of(&json!("create_leg"), reply);
    assert_eq!(code, "ports_exhausted", "{reply}");
    let range = format!("{}–{}", engine.port_min, engine.port_max);
    assert!(
        message.contains(&range),
        "message should name the range {range}: {message}"
    );
}

/// Waits (bounded) until both ports of the pair can be bound again.
fn wait_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok();
        if free {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ports {port}/{} still bound 2 s after delete",
            port + 1
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn three_pairs_then_exhausted_then_freed(backend: Backend) {
    let engine = Engine::start(EngineOptions::new(backend).port_pairs(3));
    let mut ctl = engine.control();
    assert_eq!(stats(&mut ctl)["free_port_pairs"], json!(3));

    let mut in_use = BTreeSet::new();
    let p1 = check_pair(&engine, &create(&mut ctl, "c1", "l1"), &mut in_use);
    let _p2 = check_pair(&engine, &create(&mut ctl, "c1", "l2"), &mut in_use);
    let p3 = check_pair(&engine, &create(&mut ctl, "c2", "l3"), &mut in_use);
    assert_eq!(stats(&mut ctl)["free_port_pairs"], json!(0));

    // The fourth leg finds no pair, in an existing call or a new one.
    assert_exhausted(&engine, &create(&mut ctl, "c3", "l4"));
    assert_exhausted(&engine, &create(&mut ctl, "c1", "l4"));
    // The failed create left nothing behind.
    assert_eq!(
        ctl.err(json!({"cmd": "query_call", "call": "c3"})).0,
        "unknown_call"
    );
    assert_eq!(
        ctl.err(json!({"cmd": "delete_leg", "leg": "l4"})).0,
        "unknown_leg"
    );
    let s = stats(&mut ctl);
    assert_eq!(
        (s["calls"].clone(), s["legs"].clone()),
        (json!(2), json!(3)),
        "{s}"
    );

    // delete_leg gives one pair back; the next create_leg gets it.
    ctl.ok(json!({"cmd": "delete_leg", "leg": "l3"}));
    in_use.remove(&p3);
    assert_eq!(stats(&mut ctl)["free_port_pairs"], json!(1));
    let p4 = check_pair(&engine, &create(&mut ctl, "c3", "l4"), &mut in_use);
    assert_eq!(p4, p3, "the only free pair is the one just released");
    assert_exhausted(&engine, &create(&mut ctl, "c3", "l5"));

    // delete_call gives back every pair of the call.
    ctl.ok(json!({"cmd": "delete_call", "call": "c1"}));
    let s = stats(&mut ctl);
    assert_eq!(s["free_port_pairs"], json!(2), "{s}");
    assert_eq!(
        (s["calls"].clone(), s["legs"].clone()),
        (json!(1), json!(1)),
        "{s}"
    );
    in_use.retain(|p| *p == p4);
    let p5 = check_pair(&engine, &create(&mut ctl, "c4", "l5"), &mut in_use);
    let p6 = check_pair(&engine, &create(&mut ctl, "c4", "l6"), &mut in_use);
    assert!(
        [p5, p6].contains(&p1),
        "the freed pairs are handed out again: {p1} not in [{p5}, {p6}]"
    );
    assert_exhausted(&engine, &create(&mut ctl, "c4", "l7"));

    // Delete everything: all pairs free, kept bound, refusing every sender.
    ctl.ok(json!({"cmd": "delete_call", "call": "c3"}));
    ctl.ok(json!({"cmd": "delete_call", "call": "c4"}));
    let s = stats(&mut ctl);
    assert_eq!(s["free_port_pairs"], json!(3), "{s}");
    assert_eq!(s["warm_port_pairs"], json!(3), "{s}");
    assert_eq!(
        (s["calls"].clone(), s["legs"].clone()),
        (json!(0), json!(0)),
        "{s}"
    );
    assert_eq!(ctl.ok(json!({"cmd": "list_calls"}))["calls"], json!([]));
    for port in in_use {
        assert_pair_kept_and_refusing(port);
    }
}

/// With `warm_ports = 0` nothing is bound ahead, and a deleted leg's sockets
/// are closed: the ports can be bound by anyone again.
fn without_warm_ports_freed_pairs_are_closed(backend: Backend) {
    let engine = Engine::start(
        EngineOptions::new(backend)
            .port_pairs(2)
            .config("warm_ports = 0"),
    );
    let mut ctl = engine.control();
    let s = stats(&mut ctl);
    assert_eq!(
        (s["free_port_pairs"].clone(), s["warm_port_pairs"].clone()),
        (json!(2), json!(0)),
        "{s}"
    );
    wait_closed(engine.port_min);
    let mut in_use = BTreeSet::new();
    let p1 = check_pair(&engine, &create(&mut ctl, "c1", "l1"), &mut in_use);
    let p2 = check_pair(&engine, &create(&mut ctl, "c1", "l2"), &mut in_use);
    ctl.ok(json!({"cmd": "delete_call", "call": "c1"}));
    let s = stats(&mut ctl);
    assert_eq!(
        (s["free_port_pairs"].clone(), s["warm_port_pairs"].clone()),
        (json!(2), json!(0)),
        "{s}"
    );
    wait_closed(p1);
    wait_closed(p2);
}

/// A single-pair range: delete the leg and create another right away, many
/// times. The released pair must be handed out again by the next create_leg.
fn freed_pair_is_reusable_at_once(backend: Backend) {
    let engine = Engine::start(EngineOptions::new(backend).port_pairs(1));
    let mut ctl = engine.control();
    for round in 0..20 {
        let leg = format!("l{round}");
        let reply = create(&mut ctl, "c", &leg);
        assert_eq!(reply["ok"], json!(true), "round {round}: {reply}");
        assert_eq!(rtp_port(&reply), engine.port_min, "round {round}");
        ctl.ok(json!({"cmd": "delete_leg", "leg": leg}));
    }
    assert_eq!(stats(&mut ctl)["free_port_pairs"], json!(1));
}
