//! Socket association: a latched leg's sockets are `connect()`ed to its
//! endpoint, disconnected while a re-latch window is open, reconnected when it
//! closes; trusted legs connect at once; the feature can be switched off.

mod common;

use common::*;
use rtpark::session::{LatchPolicy, LegKey, LegUpdate, ShardConfig, SocketKind, SocketOp, Verdict};
use std::time::Duration;

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_A_RTCP: &str = "192.0.2.10:40001";
const PHONE_B: &str = "198.51.100.20:50000";
const NEW_A: &str = "192.0.2.99:42000";
const NEW_A_RTCP: &str = "192.0.2.99:42001";

fn connect(leg: LegKey, socket: SocketKind, to: &str) -> SocketOp {
    SocketOp::Connect {
        leg,
        socket,
        to: addr(to),
    }
}

fn disconnect(leg: LegKey, socket: SocketKind) -> SocketOp {
    SocketOp::Disconnect { leg, socket }
}

fn move_a(h: &mut Harness, a: LegKey, to: &str) {
    let update = LegUpdate {
        remote: Some(addr(to)),
        ..Default::default()
    };
    h.shard.update_leg(h.now, a, update).unwrap();
}

#[test]
fn learn_leg_connects_on_latch() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    assert_eq!(h.ops(), vec![], "nothing is known before the first packet");

    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(h.ops(), vec![connect(a, SocketKind::Rtp, PHONE_A)]);
    assert!(h.shard.leg(a).unwrap().rtp_connected);
    assert!(!h.shard.leg(a).unwrap().rtcp_connected);
    h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    assert_eq!(h.ops(), vec![], "one connect per latch");

    h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    assert_eq!(h.ops(), vec![connect(a, SocketKind::Rtcp, PHONE_A_RTCP)]);
    assert!(h.shard.leg(a).unwrap().rtcp_connected);

    // B's media to A now uses the connected socket.
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == a && f.connected));
}

#[test]
fn update_disconnects_then_window_close_reconnects() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    h.ops();

    move_a(&mut h, a, NEW_A);
    assert_eq!(
        h.ops(),
        vec![
            disconnect(a, SocketKind::Rtp),
            disconnect(a, SocketKind::Rtcp)
        ]
    );
    let leg = h.shard.leg(a).unwrap();
    assert!(!leg.rtp_connected && !leg.rtcp_connected);

    // The new device latches inside the window, but no connect yet.
    h.advance_ms(1000);
    h.rtp(a, NEW_A, &pcmu(500, 0, 0xaa));
    h.rtcp(a, NEW_A_RTCP, &rtcp_rr(0xaa));
    assert_eq!(h.ops(), vec![]);

    h.run_for(Duration::from_millis(1900));
    assert_eq!(h.ops(), vec![], "window still open");
    h.run_for(Duration::from_millis(700));
    assert_eq!(
        h.ops(),
        vec![
            connect(a, SocketKind::Rtp, NEW_A),
            connect(a, SocketKind::Rtcp, NEW_A_RTCP),
        ]
    );
    let leg = h.shard.leg(a).unwrap();
    assert!(leg.rtp_connected && leg.rtcp_connected);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.ops(), vec![]);
}

#[test]
fn window_closing_with_no_new_source_reconnects_the_old_one() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.ops();
    move_a(&mut h, a, NEW_A);
    assert_eq!(h.ops(), vec![disconnect(a, SocketKind::Rtp)]);
    h.run_for(Duration::from_secs(4));
    assert_eq!(h.ops(), vec![connect(a, SocketKind::Rtp, PHONE_A)]);
}

#[test]
fn update_before_latch_pushes_nothing_and_first_packet_connects_after_window() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, None);
    move_a(&mut h, a, NEW_A);
    assert_eq!(h.ops(), vec![]);
    h.rtp(a, NEW_A, &pcmu(1, 0, 0xa));
    assert_eq!(h.ops(), vec![], "latched inside the window");
    h.run_for(Duration::from_secs(4));
    assert_eq!(h.ops(), vec![connect(a, SocketKind::Rtp, NEW_A)]);
}

#[test]
fn nat_rebinding_retargets_the_connected_socket() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.ops();
    h.rtp(a, "192.0.2.10:40555", &pcmu(2, 160, 0xa));
    assert_eq!(
        h.ops(),
        vec![connect(a, SocketKind::Rtp, "192.0.2.10:40555")]
    );
}

#[test]
fn rtcp_from_another_host_than_rtp_stays_unconnected() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.ops();
    h.rtcp(a, "192.0.2.200:40001", &rtcp_rr(0xa));
    assert_eq!(h.ops(), vec![]);
    assert!(!h.shard.leg(a).unwrap().rtcp_connected);
}

#[test]
fn rtp_moving_host_releases_a_connected_rtcp() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    h.ops();
    // Same stream from another host (e.g. a failover): RTCP must hear the new host.
    h.rtp(a, "192.0.2.77:40000", &pcmu(2, 160, 0xa));
    assert_eq!(
        h.ops(),
        vec![
            connect(a, SocketKind::Rtp, "192.0.2.77:40000"),
            disconnect(a, SocketKind::Rtcp),
        ]
    );
    h.rtcp(a, "192.0.2.77:40001", &rtcp_rr(0xa));
    assert_eq!(
        h.ops(),
        vec![connect(a, SocketKind::Rtcp, "192.0.2.77:40001")]
    );
}

#[test]
fn trust_leg_connects_at_creation_and_on_update() {
    let mut h = Harness::new();
    let mut cfg = leg_config("a", 30000, Some(PHONE_A));
    cfg.latch = LatchPolicy::Trust;
    let a = h.add(cfg);
    assert_eq!(
        h.ops(),
        vec![
            connect(a, SocketKind::Rtp, PHONE_A),
            connect(a, SocketKind::Rtcp, PHONE_A_RTCP),
        ]
    );
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert_eq!(h.ops(), vec![]);
    move_a(&mut h, a, NEW_A);
    assert_eq!(
        h.ops(),
        vec![
            connect(a, SocketKind::Rtp, NEW_A),
            connect(a, SocketKind::Rtcp, NEW_A_RTCP),
        ]
    );
    // Switching to rtcp-mux frees the odd socket.
    let mux = LegUpdate {
        rtcp_mux: Some(true),
        ..Default::default()
    };
    h.shard.update_leg(h.now, a, mux).unwrap();
    assert_eq!(h.ops(), vec![disconnect(a, SocketKind::Rtcp)]);
    assert!(h.shard.leg(a).unwrap().rtp_connected);
    assert!(!h.shard.leg(a).unwrap().rtcp_connected);
}

#[test]
fn trust_leg_without_remote_connects_when_signalled() {
    let mut h = Harness::new();
    let mut cfg = leg_config("a", 30000, None);
    cfg.latch = LatchPolicy::Trust;
    cfg.rtcp_mux = true;
    let a = h.add(cfg);
    assert_eq!(h.ops(), vec![]);
    move_a(&mut h, a, NEW_A);
    assert_eq!(h.ops(), vec![connect(a, SocketKind::Rtp, NEW_A)]);
}

#[test]
fn connect_latched_off_never_touches_sockets() {
    let mut h = Harness::with_config(ShardConfig {
        connect_latched: false,
        ..ShardConfig::default()
    });
    let mut cfg = leg_config("t", 30004, Some(PHONE_A));
    cfg.latch = LatchPolicy::Trust;
    h.add(cfg);
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.rtcp(a, PHONE_A_RTCP, &rtcp_rr(0xa));
    move_a(&mut h, a, NEW_A);
    h.rtp(a, NEW_A, &pcmu(2, 160, 0xaa));
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.ops(), vec![]);
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == a && !f.connected));
    assert!(h
        .shard
        .legs()
        .all(|(_, l)| !l.rtp_connected && !l.rtcp_connected));
}

#[test]
fn removing_a_leg_drops_its_pending_socket_ops() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.rtp(b, PHONE_B, &pcmu(1, 0, 0xb));
    h.shard.remove_leg(a).unwrap();
    assert_eq!(h.ops(), vec![connect(b, SocketKind::Rtp, PHONE_B)]);
}
