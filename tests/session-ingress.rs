//! Blocking and silencing a leg's own audio (the ng protocol's `block media`
//! and `silence media`): blocked packets are dropped and counted, silenced
//! G.711 keeps flowing with a silent payload, and relaying comes back intact.
//! Also the `Repeated` frame window behind `repeat-times` and `start-pos`.

mod common;

use common::*;
use rtpark::session::{DropReason, Frames, Ingress, Repeated, Verdict};
use std::sync::Arc;

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_B: &str = "198.51.100.20:50000";

fn bridged() -> (Harness, rtpark::session::LegKey, rtpark::session::LegKey) {
    let mut h = Harness::new();
    let mut ca = leg_config("a", 30000, Some(PHONE_A));
    ca.codecs = vec![pcmu_codec(), telephone_event_codec(101)];
    let a = h.add(ca);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    (h, a, b)
}

#[test]
fn blocked_audio_is_dropped_and_counted_then_flows_again() {
    let (mut h, a, b) = bridged();
    h.shard.set_ingress(a, Ingress::Block).unwrap();
    for i in 0..10u16 {
        let (v, _) = h.rtp(a, PHONE_A, &pcmu(i, u32::from(i) * 160, 0xa));
        assert_eq!(v, Verdict::Drop(DropReason::Blocked));
    }
    let counters = h.shard.leg(a).unwrap().counters;
    assert_eq!(counters.dropped_blocked, 10);
    assert_eq!(
        counters.rtp_in, 10,
        "blocked packets still count as received"
    );
    // The other direction is untouched.
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 160, 0xb));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == a));

    h.shard.set_ingress(a, Ingress::Relay).unwrap();
    let sent = pcmu(10, 1600, 0xa);
    let (v, out) = h.rtp(a, PHONE_A, &sent);
    assert!(matches!(v, Verdict::Forward(f) if f.leg == b));
    assert_eq!(out, sent);
}

#[test]
fn silenced_pcmu_keeps_its_header_with_a_silent_payload() {
    let (mut h, a, b) = bridged();
    h.shard.set_ingress(a, Ingress::Silence).unwrap();
    let sent = pcmu(7, 1120, 0xa);
    let (v, out) = h.rtp(a, PHONE_A, &sent);
    assert!(matches!(v, Verdict::Forward(f) if f.leg == b));
    assert_eq!(out[..12], sent[..12], "header unchanged");
    assert_eq!(out.len(), sent.len());
    assert!(
        out[12..].iter().all(|&x| x == 0xff),
        "µ-law silence is 0xFF"
    );

    // A DTMF event cannot be silenced: it is dropped, not leaked.
    let dtmf = telephone_event(101, 8, 2000, 0xa, 5, false, 160);
    let (v, _) = h.rtp(a, PHONE_A, &dtmf);
    assert_eq!(v, Verdict::Drop(DropReason::Blocked));

    h.shard.set_ingress(a, Ingress::Relay).unwrap();
    let sent = pcmu(9, 1440, 0xa);
    let (_, out) = h.rtp(a, PHONE_A, &sent);
    assert_eq!(out, sent, "unsilenced audio is relayed as received");
}

#[test]
fn silenced_pcma_uses_the_a_law_silence_byte() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    h.shard.set_ingress(a, Ingress::Silence).unwrap();
    let sent = rtp_with(8, false, 1, 160, 0xa, &[0x12; 160]);
    let (_, out) = h.rtp(a, PHONE_A, &sent);
    assert!(
        out[12..].iter().all(|&x| x == 0xd5),
        "A-law silence is 0xD5"
    );
}

#[test]
fn repeated_frames_start_late_and_play_n_times() {
    let frames = frame_list(10);
    let r = Repeated {
        inner: frames.clone() as Arc<dyn Frames>,
        start: 3,
        times: 2,
    };
    assert_eq!(
        r.frame_count(),
        17,
        "7 frames of the first pass, 10 of the second"
    );
    let order: Vec<usize> = (0..r.frame_count())
        .map(|i| frame_number(&r.frame(i)))
        .collect();
    let expected: Vec<usize> = (3..10).chain(0..10).collect();
    assert_eq!(order, expected);
    assert_eq!(r.ptime(), frames.ptime());
    let empty = Repeated {
        inner: frame_list(0) as Arc<dyn Frames>,
        start: 5,
        times: 3,
    };
    assert_eq!(empty.frame_count(), 0);
    assert!(
        empty.frame(0).is_empty(),
        "no frames: an empty payload, no panic"
    );
}
