//! Media timeouts: one periodic sweep raises a media-timeout event once per
//! silence, re-armed by RTP; silent legs wait longer; a clock that steps
//! backwards never panics.

mod common;

use common::*;
use rtpark::session::{LegUpdate, SessionEvent, ShardConfig};
use std::time::Duration;

const PHONE_A: &str = "192.0.2.10:40000";

#[test]
fn media_timeout_fires_once() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.run_for(MEDIA_TIMEOUT - Duration::from_millis(600));
    assert_eq!(h.events(), vec![]);
    h.run_for(Duration::from_secs(1));
    assert_eq!(
        h.events(),
        vec![SessionEvent::MediaTimeout {
            leg: a,
            call: "call-1".into(),
            name: "a".into(),
            after: MEDIA_TIMEOUT,
        }]
    );
    assert!(h.shard.leg(a).unwrap().timed_out);
    h.run_for(Duration::from_secs(120));
    assert_eq!(h.events(), vec![], "raised once per silence");
}

#[test]
fn timeout_counts_from_creation_when_no_rtp_ever_arrives() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.run_for(MEDIA_TIMEOUT + Duration::from_millis(500));
    assert!(matches!(h.events()[..], [SessionEvent::MediaTimeout { leg, .. }] if leg == a));
}

#[test]
fn timeout_rearms_after_rtp() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.run_for(Duration::from_secs(11));
    assert_eq!(h.events().len(), 1);
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    assert!(!h.shard.leg(a).unwrap().timed_out);
    h.run_for(Duration::from_secs(9));
    assert_eq!(h.events(), vec![]);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.events().len(), 1, "fires again after the next silence");
}

#[test]
fn rtcp_alone_does_not_keep_a_leg_alive() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    for _ in 0..3 {
        h.rtcp(a, "192.0.2.10:40001", &rtcp_rr(0xa));
        h.run_for(Duration::from_secs(5));
    }
    assert_eq!(h.events().len(), 1);
}

#[test]
fn silent_leg_uses_longer_timeout() {
    let mut h = Harness::new();
    let mut cfg = leg_config("a", 30000, Some(PHONE_A));
    cfg.silent = true;
    let a = h.add(cfg);
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.events(), vec![]);
    h.run_for(Duration::from_secs(31));
    assert!(matches!(
        h.events()[..],
        [SessionEvent::MediaTimeout { leg, after, .. }] if leg == a && after == SILENT_TIMEOUT
    ));
}

#[test]
fn going_silent_and_back_switches_timeout() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    h.run_for(Duration::from_secs(5));
    // Put on hold: the phone may stop sending.
    let hold = LegUpdate {
        silent: Some(true),
        ..Default::default()
    };
    h.shard.update_leg(h.now, a, hold).unwrap();
    h.run_for(Duration::from_secs(20));
    assert_eq!(h.events(), vec![]);
    let last_rtp = h.shard.leg(a).unwrap().last_rtp;
    // Back live: 25 s of silence already exceed the media timeout.
    let unhold = LegUpdate {
        silent: Some(false),
        ..Default::default()
    };
    h.shard.update_leg(h.now, a, unhold).unwrap();
    assert_eq!(
        h.shard.leg(a).unwrap().last_rtp,
        last_rtp,
        "the update resets nothing else"
    );
    h.run_for(Duration::from_secs(1));
    assert!(matches!(
        h.events()[..],
        [SessionEvent::MediaTimeout { after, .. }] if after == MEDIA_TIMEOUT
    ));
}

#[test]
fn zero_timeout_never_fires() {
    let mut h = Harness::new();
    let mut cfg = leg_config("a", 30000, Some(PHONE_A));
    cfg.media_timeout = Duration::ZERO;
    h.add(cfg);
    h.run_for(Duration::from_secs(3600));
    assert_eq!(h.events(), vec![]);
}

#[test]
fn each_leg_times_out_on_its_own() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some("198.51.100.20:50000"));
    h.run_for(Duration::from_secs(6));
    h.rtp(b, "198.51.100.20:50000", &pcmu(1, 0, 0xb));
    h.run_for(Duration::from_secs(5));
    assert!(matches!(h.events()[..], [SessionEvent::MediaTimeout { leg, .. }] if leg == a));
    h.run_for(Duration::from_secs(6));
    assert!(matches!(h.events()[..], [SessionEvent::MediaTimeout { leg, .. }] if leg == b));
}

#[test]
fn poll_timeout_is_one_sweep_and_none_without_legs() {
    let mut h = Harness::with_config(ShardConfig {
        sweep_interval: Duration::from_millis(200),
        ..ShardConfig::default()
    });
    assert_eq!(h.shard.poll_timeout(), None);
    h.shard.handle_timeout(h.now);
    let a = h.add_learn("a", 30000, None);
    let b = h.add_learn("b", 30002, None);
    assert_eq!(
        h.shard.poll_timeout(),
        Some(h.now + Duration::from_millis(200))
    );
    // Early calls do nothing and keep the deadline.
    h.advance_ms(100);
    h.shard.handle_timeout(h.now);
    assert_eq!(
        h.shard.poll_timeout(),
        Some(h.now + Duration::from_millis(100))
    );
    h.advance_ms(150);
    h.shard.handle_timeout(h.now);
    assert_eq!(
        h.shard.poll_timeout(),
        Some(h.now + Duration::from_millis(200))
    );
    h.shard.remove_leg(a).unwrap();
    h.shard.remove_leg(b).unwrap();
    assert_eq!(h.shard.poll_timeout(), None);
    // A new leg after an idle spell gets a fresh deadline, not a stale one.
    h.advance(Duration::from_secs(100));
    h.add_learn("c", 30004, None);
    assert_eq!(
        h.shard.poll_timeout(),
        Some(h.now + Duration::from_millis(200))
    );
}

#[test]
fn time_going_backwards_never_panics() {
    let mut h = Harness::new();
    h.advance(Duration::from_secs(100));
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some("198.51.100.20:50000"));
    h.shard.bridge(a, b).unwrap();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let later = h.now;
    // Step back before the leg's creation and its last packet.
    h.now -= Duration::from_secs(50);
    h.shard.handle_timeout(h.now);
    h.rtp(a, PHONE_A, &pcmu(2, 160, 0xa));
    h.shard
        .update_leg(
            h.now,
            a,
            LegUpdate {
                remote: Some("192.0.2.99:42000".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
    h.shard.handle_timeout(h.now);
    assert_eq!(h.events(), vec![]);
    // Far in the past and far in the future, timers still behave.
    h.shard.handle_timeout(later - Duration::from_secs(99));
    h.now = later + Duration::from_secs(11);
    h.shard.handle_timeout(h.now);
    assert_eq!(
        h.events().len(),
        2,
        "both legs went silent, each raised once"
    );
    h.now = later + Duration::from_secs(5);
    h.shard.handle_timeout(h.now);
    h.rtp(a, PHONE_A, &pcmu(3, 320, 0xa));
    assert!(h.shard.poll_timeout().is_some());
}
