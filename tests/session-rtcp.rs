//! RTCP: relayed from the odd port to the peer's RTCP destination, demuxed
//! from RTP on an rtcp-mux port (RFC 5761), and sent through whichever socket
//! the peer uses for RTCP.

mod common;

use common::*;
use rtpark::session::{DropReason, EgressContext, Forward, LegKey, SocketKind, Verdict};

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_A_RTCP: &str = "192.0.2.10:40001";
const PHONE_B: &str = "198.51.100.20:50000";
const PHONE_B_RTCP: &str = "198.51.100.20:50001";

/// A and B bridged, both latched on RTP; `mux` chooses rtcp-mux per leg.
fn call(a_mux: bool, b_mux: bool) -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let mut ca = leg_config("a", 30000, Some(PHONE_A));
    ca.rtcp_mux = a_mux;
    let mut cb = leg_config("b", 30002, Some(PHONE_B));
    cb.rtcp_mux = b_mux;
    let a = h.add(ca);
    let b = h.add(cb);
    h.shard.bridge(a, b).unwrap();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    (h, a, b)
}

#[test]
fn rtcp_on_odd_port_is_relayed_to_peer_rtcp() {
    let (mut h, a, b) = call(false, false);
    let sr = rtcp_sr(0xa, 0x1122_3344_5566_7788, 160);
    let (v, out) = h.rtcp(a, PHONE_A_RTCP, &sr);
    assert_eq!(
        v,
        Verdict::Forward(Forward {
            leg: b,
            socket: SocketKind::Rtcp,
            to: addr(PHONE_B_RTCP),
            connected: false,
        })
    );
    assert_eq!(out, sr);
    assert_eq!(
        h.shard.leg(a).unwrap().latched_rtcp,
        Some(addr(PHONE_A_RTCP))
    );
    // B's RTCP comes from a NAT port: B latches it, and A's reports follow.
    let (v, _) = h.rtcp(b, "198.51.100.20:61111", &rtcp_rr(0xb));
    assert!(matches!(v, Verdict::Forward(f) if f.to == addr(PHONE_A_RTCP) && f.connected));
    let (v, _) = h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert_eq!(
        v,
        Verdict::Forward(Forward {
            leg: b,
            socket: SocketKind::Rtcp,
            to: addr("198.51.100.20:61111"),
            connected: true,
        })
    );
    let (la, lb) = (h.shard.leg(a).unwrap(), h.shard.leg(b).unwrap());
    assert_eq!((la.counters.rtcp_in, la.counters.rtcp_out), (2, 1));
    assert_eq!((lb.counters.rtcp_in, lb.counters.rtcp_out), (1, 2));
    assert_eq!(la.counters.rtp_in, 1, "RTCP is not counted as RTP");
}

#[test]
fn explicit_remote_rtcp_is_used_until_latched() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let mut cb = leg_config("b", 30002, Some(PHONE_B));
    cb.remote_rtcp = Some(addr("198.51.100.20:50999"));
    let b = h.add(cb);
    h.shard.bridge(a, b).unwrap();
    let (v, _) = h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert!(matches!(v, Verdict::Forward(f) if f.to == addr("198.51.100.20:50999")));
}

#[test]
fn rtcp_mux_is_demuxed_on_the_rtp_port() {
    let (mut h, a, b) = call(true, false);
    // RTCP bound for B describes the RTP B receives: same SSRC and timestamp offset.
    *h.shard.egress_mut(b).unwrap() = EgressContext {
        ssrc: Some(0x5555),
        seq_offset: 1000,
        ts_offset: 80_000,
        mark_next: true,
        ..EgressContext::default()
    };
    let sr = rtcp_sr(0xa, 42, 160);
    let (v, out) = h.rtp(a, PHONE_A, &sr);
    assert_eq!(
        v,
        Verdict::Forward(Forward {
            leg: b,
            socket: SocketKind::Rtcp,
            to: addr(PHONE_B_RTCP),
            connected: false,
        })
    );
    let mut expected = sr.clone();
    rtpark::rtp::rtcp::rewrite_compound(&mut expected, Some(0x5555), 80_000).unwrap();
    assert_eq!(out, expected);
    assert_eq!(u32::from_be_bytes([out[4], out[5], out[6], out[7]]), 0x5555);
    let la = h.shard.leg(a).unwrap();
    assert_eq!((la.counters.rtp_in, la.counters.rtcp_in), (1, 1));
    assert_eq!(la.latched_rtcp, Some(addr(PHONE_A)));
    assert_eq!(h.shard.leg(b).unwrap().egress.seq_offset, 1000);
    assert!(
        h.shard.leg(b).unwrap().egress.mark_next,
        "RTCP consumed no marker"
    );
    // RTP on the same port still flows as RTP.
    let (v, out) = h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    assert!(matches!(v, Verdict::Forward(f) if f.socket == SocketKind::Rtp));
    assert_eq!(fields(&out), (1002, 80_160, 0x5555, true));
}

#[test]
fn rtcp_to_a_mux_peer_goes_out_of_its_rtp_socket() {
    let (mut h, a, b) = call(false, true);
    let (v, _) = h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert_eq!(
        v,
        Verdict::Forward(Forward {
            leg: b,
            socket: SocketKind::Rtp,
            to: addr(PHONE_B),
            connected: true,
        })
    );
    // And back: B's muxed RTCP goes to A's odd port.
    let (v, _) = h.rtp(b, PHONE_B, &rtcp_rr(0xb));
    assert!(matches!(
        v,
        Verdict::Forward(f) if f.leg == a && f.socket == SocketKind::Rtcp && f.to == addr(PHONE_A_RTCP)
    ));
}

#[test]
fn both_mux() {
    let (mut h, a, b) = call(true, true);
    let (v, _) = h.rtp(a, PHONE_A, &rtcp_rr(0xa));
    assert!(matches!(
        v,
        Verdict::Forward(f) if f.leg == b && f.socket == SocketKind::Rtp && f.to == addr(PHONE_B)
    ));
}

#[test]
fn rtcp_looking_packet_on_non_mux_rtp_port_is_not_rtcp() {
    let (mut h, a, _) = call(false, false);
    // An 8-byte RR is too short for RTP.
    let (v, _) = h.rtp(a, PHONE_A, &rtcp_rr(0xa));
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
    assert_eq!(h.shard.leg(a).unwrap().counters.rtcp_in, 0);
}

#[test]
fn malformed_rtcp_is_dropped_and_counted() {
    let (mut h, a, _) = call(false, true);
    let mut bad_version = rtcp_rr(0xa);
    bad_version[0] = 0x40;
    let mut too_long = rtcp_rr(0xa);
    too_long[3] = 2;
    for p in [
        vec![],
        vec![0x80, 201, 0, 1, 0, 0, 0],
        bad_version,
        too_long,
        pcmu(1, 0, 0xa), // RTP on the RTCP port
    ] {
        let (v, _) = h.rtcp(a, PHONE_A_RTCP, &p);
        assert_eq!(v, Verdict::Drop(DropReason::Malformed), "{p:02x?}");
    }
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(leg.counters.dropped_malformed, 5);
    assert_eq!(leg.latched_rtcp, None);
}

#[test]
fn muxed_packet_with_rtcp_range_but_bad_type_is_malformed() {
    let (mut h, a, _) = call(true, false);
    // PT 72 without the marker bit is in the RTCP range but not an RTCP type.
    let mut p = pcmu(1, 0, 0xa);
    p[1] = 72;
    let (v, _) = h.rtp(a, PHONE_A, &p);
    assert_eq!(v, Verdict::Drop(DropReason::Malformed));
}

#[test]
fn rtcp_latch_foreign_and_same_host_relatch() {
    let (mut h, a, _) = call(false, false);
    h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    let (v, _) = h.rtcp(a, "203.0.113.66:6667", &rtcp_rr(0xbad));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
    assert_eq!(h.shard.leg(a).unwrap().counters.dropped_foreign, 1);
    // Same host as the latched RTP, new port: the phone's NAT moved its RTCP.
    let (v, _) = h.rtcp(a, "192.0.2.10:45555", &rtcp_rr(0xa));
    assert!(matches!(v, Verdict::Forward(_)));
    assert_eq!(
        h.shard.leg(a).unwrap().latched_rtcp,
        Some(addr("192.0.2.10:45555"))
    );
}

#[test]
fn rtcp_without_peer_has_no_route() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let (v, _) = h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
    let leg = h.shard.leg(a).unwrap();
    assert_eq!(
        (leg.counters.rtcp_in, leg.counters.dropped_no_route),
        (1, 1)
    );
    let b = h.add_learn("b", 30002, None);
    h.shard.bridge(a, b).unwrap();
    let (v, _) = h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert_eq!(v, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn trust_leg_rtcp_must_come_from_signalled_rtcp_address() {
    let mut h = Harness::new();
    let mut ca = leg_config("a", 30000, Some(PHONE_A));
    ca.latch = rtpark::session::LatchPolicy::Trust;
    let a = h.add(ca);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    let (v, _) = h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert!(matches!(v, Verdict::Forward(_)));
    let (v, _) = h.rtcp(a, "192.0.2.10:45555", &rtcp_rr(0xa));
    assert_eq!(v, Verdict::Drop(DropReason::Foreign));
    assert_eq!(h.shard.leg(a).unwrap().latched_rtcp, None);
}
