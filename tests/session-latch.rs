//! Latching: the first valid RTP packet teaches a leg where its endpoint is;
//! other sources are foreign unless a control update opened the re-latch
//! window or they carry the latched stream's SSRC (NAT rebinding).

mod common;

use common::*;
use rtpark::session::{DropReason, LatchPolicy, LegKey, LegUpdate, Verdict};
use std::time::Duration;

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_B: &str = "198.51.100.20:50000";
const ATTACKER: &str = "203.0.113.66:6666";

/// Two bridged Learn legs; B has already latched.
fn call() -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some("10.0.0.1:4000"));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert!(matches!(v, Verdict::Forward(_)));
    (h, a, b)
}

fn forward_to(v: Verdict) -> std::net::SocketAddr {
    match v {
        Verdict::Forward(f) => f.to,
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn first_packet_latches_over_signalled_address() {
    let (mut h, a, b) = call();
    assert_eq!(h.shard.leg(a).unwrap().latched_rtp, None);
    // Before A speaks, B's media goes to A's signalled address.
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(2, 160, 0xb));
    assert_eq!(forward_to(v), addr("10.0.0.1:4000"));

    // A is behind NAT: its packets come from elsewhere, and that is where it hears.
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.latched_rtp, Some(addr(PHONE_A)));
    assert_eq!(leg.ssrc, Some(0xa));
    assert_eq!(leg.counters.rtp_in, 1);
    assert_eq!(leg.counters.rtp_in_bytes, 172);

    let (v, _) = h.rtp(b, PHONE_B, &pcmu(3, 320, 0xb));
    assert_eq!(forward_to(v), addr(PHONE_A));
}

#[test]
fn foreign_source_is_dropped_and_counted() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let (v, out) = h.rtp(a, ATTACKER, &pcmu(2, 160, 0xbad));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
    assert_eq!(
        out,
        pcmu(2, 160, 0xbad),
        "a dropped packet is not rewritten"
    );
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.counters.dropped_foreign, 1);
    assert_eq!(leg.counters.rtp_in, 1);
    assert_eq!(leg.latched_rtp, Some(addr(PHONE_A)));
    assert_eq!(h.shard.leg(b).unwrap().counters.rtp_out, 1);
    // The real endpoint keeps flowing.
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(3, 320, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let (mut h, a, _) = call();
    let (v, _) = h.rtp(a, PHONE_A, &[0x80, 0, 0, 1]);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let mut v1 = pcmu(1, 0, 0xa);
    v1[0] = 0x40;
    let (v, _) = h.rtp(a, PHONE_A, &v1);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let (v, _) = h.rtp(a, PHONE_A, &[]);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.counters.dropped_malformed, 3);
    assert_eq!(leg.latched_rtp, None, "malformed packets never latch");
}

#[test]
fn relatch_allowed_within_window_after_update() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.advance_ms(500);
    h.shard
        .update_leg(
            h.now,
            a,
            LegUpdate {
                remote: Some(addr("192.0.2.99:42000")),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(h.shard.leg(a).unwrap().relatch_until.is_some());
    h.advance_ms(2_000);
    // A new device, a new stream.
    let (v, _) = h.rtp(a, "192.0.2.99:42000", &pcmu(900, 9000, 0xaa));
    assert_eq!(forward_to(v), addr(PHONE_B));
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.latched_rtp, Some(addr("192.0.2.99:42000")));
    assert_eq!(leg.ssrc, Some(0xaa));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(2, 160, 0xb));
    assert_eq!(forward_to(v), addr("192.0.2.99:42000"));
}

#[test]
fn relatch_refused_after_window() {
    let (mut h, a, _) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.shard
        .update_leg(
            h.now,
            a,
            LegUpdate {
                remote: Some(addr("192.0.2.99:42000")),
                ..Default::default()
            },
        )
        .unwrap();
    h.run_for(Duration::from_secs(3) + Duration::from_millis(1));
    let (v, _) = h.rtp(a, "192.0.2.99:42000", &pcmu(900, 9000, 0xaa));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.latched_rtp, Some(addr(PHONE_A)));
    assert_eq!(leg.relatch_until, None, "the sweep closed the window");
}

#[test]
fn window_edge_is_exclusive_even_before_the_sweep() {
    let (mut h, a, _) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let opened = h.now;
    h.shard
        .update_leg(
            opened,
            a,
            LegUpdate {
                remote: Some(addr("192.0.2.99:42000")),
                ..Default::default()
            },
        )
        .unwrap();
    // No sweep ran, but the window is over at exactly `opened + 3 s`.
    h.now = opened + Duration::from_secs(3);
    let (v, _) = h.rtp(a, "192.0.2.99:42000", &pcmu(900, 9000, 0xaa));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
}

#[test]
fn update_with_same_remote_opens_no_window() {
    let (mut h, a, _) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.shard
        .update_leg(
            h.now,
            a,
            LegUpdate {
                remote: Some(addr("10.0.0.1:4000")),
                silent: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(h.shard.leg(a).unwrap().relatch_until, None);
    let (v, _) = h.rtp(a, ATTACKER, &pcmu(2, 160, 0xbad));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
}

#[test]
fn same_ssrc_from_new_port_relatches() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.advance(Duration::from_secs(30));
    // The NAT binding changed: same stream, new public port.
    let rebound = "192.0.2.10:40555";
    let (v, _) = h.rtp(a, rebound, &pcmu(2, 160, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
    assert_eq!(h.shard.leg(a).unwrap().latched_rtp, Some(addr(rebound)));
    assert_eq!(h.shard.leg(a).unwrap().counters.dropped_foreign, 0);
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(2, 160, 0xb));
    assert_eq!(forward_to(v), addr(rebound));
    // The old binding is now the foreign one.
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(3, 320, 0xcafe));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
}

#[test]
fn trust_policy_accepts_only_the_signalled_remote() {
    let mut h = Harness::new();
    let mut cfg = leg_config("a", 30000, Some(PHONE_A));
    cfg.latch = LatchPolicy::Trust;
    let a = h.add(cfg);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();

    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
    assert_eq!(
        h.shard.leg(a).unwrap().latched_rtp,
        None,
        "Trust never learns"
    );
    // Same SSRC from elsewhere is still foreign: no NAT rebinding under Trust.
    let (v, _) = h.rtp(a, "192.0.2.10:40555", &pcmu(2, 160, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));

    // A new signalled address: the old one becomes foreign at once, no window.
    h.shard
        .update_leg(
            h.now,
            a,
            LegUpdate {
                remote: Some(addr("192.0.2.99:42000")),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(h.shard.leg(a).unwrap().relatch_until, None);
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(3, 320, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
    let (v, _) = h.rtp(a, "192.0.2.99:42000", &pcmu(4, 480, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert_eq!(forward_to(v), addr("192.0.2.99:42000"));
    assert_eq!(h.shard.leg(a).unwrap().counters.dropped_foreign, 2);
}

#[test]
fn trust_without_remote_accepts_and_does_not_learn() {
    let mut h = Harness::new();
    let mut cfg = leg_config("a", 30000, None);
    cfg.latch = LatchPolicy::Trust;
    let a = h.add(cfg);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
    assert_eq!(h.shard.leg(a).unwrap().latched_rtp, None);
    // Nowhere to send B's media until A is signalled.
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    assert_eq!(h.shard.leg(b).unwrap().counters.dropped_no_route, 1);
}

#[test]
fn learn_leg_without_any_address_latches_its_first_packet() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, None);
    let b = h.add_learn("b", 30002, None);
    h.shard.bridge(a, b).unwrap();
    // B has no address yet: A's media has no route, but A latches.
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    assert_eq!(h.shard.leg(a).unwrap().latched_rtp, Some(addr(PHONE_A)));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert_eq!(forward_to(v), addr(PHONE_A));
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    assert_eq!(forward_to(v), addr(PHONE_B));
}

#[test]
fn relatch_window_lets_sources_swap_only_while_open() {
    let (mut h, a, _) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.shard
        .update_leg(
            h.now,
            a,
            LegUpdate {
                remote: Some(addr("192.0.2.99:42000")),
                ..Default::default()
            },
        )
        .unwrap();
    // During a re-INVITE both devices may send for a moment; the last one wins.
    h.rtp(a, "192.0.2.99:42000", &pcmu(900, 9000, 0xaa));
    h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    h.rtp(a, "192.0.2.99:42000", &pcmu(901, 9160, 0xaa));
    h.run_for(Duration::from_secs(4));
    assert_eq!(
        h.shard.leg(a).unwrap().latched_rtp,
        Some(addr("192.0.2.99:42000"))
    );
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(3, 320, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
}
