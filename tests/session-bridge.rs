//! Bridging: two legs relay to each other both ways, payload untouched;
//! bridges can be broken and re-made; removing a leg frees its peer and
//! leaves a key that reaches nothing.

mod common;

use common::*;
use rtpark::session::{DropReason, Forward, LegUpdate, SessionError, SocketKind, Verdict};

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_B: &str = "198.51.100.20:50000";
const PHONE_C: &str = "198.51.100.30:52000";

#[test]
fn relays_both_ways_byte_for_byte() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    assert_eq!(h.shard.leg(a).unwrap().peer, Some(b));
    assert_eq!(h.shard.leg(b).unwrap().peer, Some(a));

    for i in 0..50u16 {
        let sent = pcmu(i, u32::from(i) * 160, 0xa);
        let (v, out) = h.rtp(a, PHONE_A, &sent);
        assert_eq!(
            v,
            Verdict::Forward(Forward {
                leg: b,
                socket: SocketKind::Rtp,
                to: addr(PHONE_B),
                // B's socket is connected once B has latched (its first packet).
                connected: i > 0,
            })
        );
        assert_eq!(out, sent, "identity egress leaves every byte alone");

        let sent = pcmu(1000 + i, 7 + u32::from(i) * 160, 0xb);
        let (v, out) = h.rtp(b, PHONE_B, &sent);
        assert!(matches!(v, Verdict::Forward(f) if f.leg == a && f.to == addr(PHONE_A)));
        assert_eq!(out, sent);
        h.advance_ms(20);
    }
    let (la, lb) = (h.shard.leg(a).unwrap(), h.shard.leg(b).unwrap());
    assert_eq!((la.counters.rtp_in, la.counters.rtp_out), (50, 50));
    assert_eq!((lb.counters.rtp_in, lb.counters.rtp_out), (50, 50));
    assert_eq!(la.counters.rtp_in_bytes, 50 * 172);
    assert_eq!(
        la.counters.dropped_no_route + lb.counters.dropped_no_route,
        0
    );
}

#[test]
fn unbridged_leg_has_no_route() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.counters.dropped_no_route, 1);
    assert_eq!(leg.counters.rtp_in, 1, "accepted, then found nowhere to go");
    assert_eq!(leg.latched_rtp, Some(addr(PHONE_A)));
}

#[test]
fn peer_without_address_has_no_route() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, None);
    h.shard.bridge(a, b).unwrap();
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    assert_eq!(h.shard.leg(a).unwrap().counters.dropped_no_route, 1);
    assert_eq!(h.shard.leg(b).unwrap().counters.rtp_out, 0);
    // The answer arrives with B's address.
    h.shard
        .update_leg(
            h.now,
            b,
            LegUpdate {
                remote: Some(addr(PHONE_B)),
                ..Default::default()
            },
        )
        .unwrap();
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    assert!(matches!(v, Verdict::Forward(f) if f.to == addr(PHONE_B)));
}

#[test]
fn bridge_unbridge_rebridge() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    let c = h.add_learn("c", 30004, Some(PHONE_C));
    h.shard.bridge(a, b).unwrap();

    // A moves to C: B is left alone.
    h.shard.bridge(a, c).unwrap();
    assert_eq!(h.shard.leg(a).unwrap().peer, Some(c));
    assert_eq!(h.shard.leg(c).unwrap().peer, Some(a));
    assert_eq!(h.shard.leg(b).unwrap().peer, None);
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == c && f.to == addr(PHONE_C)));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));

    // B takes C from A: A is left alone.
    h.shard.bridge(c, b).unwrap();
    assert_eq!(h.shard.leg(a).unwrap().peer, None);
    assert_eq!(h.shard.leg(b).unwrap().peer, Some(c));

    assert_eq!(h.shard.unbridge(b), Ok(Some(c)));
    assert_eq!(h.shard.leg(b).unwrap().peer, None);
    assert_eq!(h.shard.leg(c).unwrap().peer, None);
    assert_eq!(
        h.shard.unbridge(b),
        Ok(None),
        "unbridging twice is harmless"
    );

    h.shard.bridge(a, b).unwrap();
    h.shard.bridge(a, b).unwrap();
    assert_eq!(h.shard.leg(a).unwrap().peer, Some(b));
    assert_eq!(h.shard.leg(b).unwrap().peer, Some(a));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(2, 160, 0xb));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == a));
}

#[test]
fn a_leg_cannot_bridge_to_itself() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    assert_eq!(h.shard.bridge(a, a), Err(SessionError::SelfBridge));
    assert_eq!(
        h.shard.leg(a).unwrap().peer,
        Some(b),
        "a refused bridge changes nothing"
    );
}

#[test]
fn remove_clears_peer_and_key_goes_stale() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(h.shard.len(), 2);

    let leg = h.shard.remove_leg(a).unwrap();
    assert_eq!(leg.config.name, "a");
    assert_eq!(leg.counters.rtp_in, 1);
    assert_eq!(leg.peer, None);
    assert_eq!(h.shard.len(), 1);
    assert_eq!(h.shard.leg(b).unwrap().peer, None);
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));

    // Every use of the stale key fails without panicking.
    assert!(h.shard.leg(a).is_none());
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    assert_eq!(v, Verdict::Drop(DropReason::UnknownLeg));
    let (v, _) = h.rtcp(a, "192.0.2.10:40001", &rtcp_rr(0xa));
    assert_eq!(v, Verdict::Drop(DropReason::UnknownLeg));
    assert_eq!(h.shard.remove_leg(a).err(), Some(SessionError::UnknownLeg));
    assert_eq!(h.shard.unbridge(a), Err(SessionError::UnknownLeg));
    assert_eq!(h.shard.bridge(a, b), Err(SessionError::UnknownLeg));
    assert_eq!(h.shard.bridge(b, a), Err(SessionError::UnknownLeg));
    assert_eq!(h.shard.bridge(a, a), Err(SessionError::UnknownLeg));
    assert_eq!(
        h.shard.update_leg(h.now, a, LegUpdate::default()),
        Err(SessionError::UnknownLeg)
    );

    // The slot is reused, but the old key never reaches the new leg.
    let c = h.add_learn("c", 30004, Some(PHONE_C));
    assert_eq!(c.index(), a.index());
    assert_ne!(c, a);
    assert!(h.shard.leg(a).is_none());
    assert_eq!(h.shard.leg(c).unwrap().config.name, "c");
    let (v, _) = h.rtp(a, PHONE_C, &pcmu(1, 0, 0xc));
    assert_eq!(v, Verdict::Drop(DropReason::UnknownLeg));
    assert_eq!(h.shard.leg(c).unwrap().counters.rtp_in, 0);
    h.shard.bridge(b, c).unwrap();
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(2, 160, 0xb));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == c && f.to == addr(PHONE_C)));
}

#[test]
fn legs_lists_every_leg_with_its_key() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, None);
    let b = h.add_learn("b", 30002, None);
    let c = h.add_learn("c", 30004, None);
    h.shard.remove_leg(b).unwrap();
    let listed: Vec<_> = h
        .shard
        .legs()
        .map(|(k, l)| (k, l.config.name.clone()))
        .collect();
    assert_eq!(listed, vec![(a, "a".to_string()), (c, "c".to_string())]);
    h.shard.remove_leg(a).unwrap();
    h.shard.remove_leg(c).unwrap();
    assert!(h.shard.is_empty());
    assert_eq!(h.shard.legs().count(), 0);
}
