//! Egress rewriting across the 16-bit sequence and 32-bit timestamp rollover:
//! the offsets add modulo 2^16 / 2^32, the marker goes on exactly one packet,
//! and the payload is never touched.

mod common;

use common::*;
use rtpark::session::{EgressContext, LegKey, Verdict};

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_B: &str = "198.51.100.20:50000";

fn call() -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    (h, a, b)
}

/// Relays `n` consecutive 20 ms PCMU packets from A; returns what B receives.
fn relay(h: &mut Harness, a: LegKey, seq0: u16, ts0: u32, n: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let sent = pcmu(
                seq0.wrapping_add(i),
                ts0.wrapping_add(160 * u32::from(i)),
                0xa,
            );
            let (v, out) = h.rtp(a, PHONE_A, &sent);
            assert!(matches!(v, Verdict::Forward(_)), "{v:?}");
            assert_eq!(out[12..], sent[12..], "payload untouched");
            out
        })
        .collect()
}

#[test]
fn offsets_carry_seq_and_ts_across_rollover() {
    let (mut h, a, b) = call();
    // As if B had heard MOH up to seq 0xFFFD, ts 0xFFFF_FEC0 before A took over.
    *h.shard.egress_mut(b).unwrap() = EgressContext {
        ssrc: Some(0xb0b0_b0b0),
        seq_offset: 0xFFFD - 100,
        ts_offset: 0xFFFF_FEC0u32.wrapping_sub(16_000),
        mark_next: true,
        ..EgressContext::default()
    };
    let out = relay(&mut h, a, 100, 16_000, 5);
    let got: Vec<_> = out.iter().map(|p| fields(p)).collect();
    assert_eq!(
        got,
        vec![
            (0xFFFD, 0xFFFF_FEC0, 0xb0b0_b0b0, true),
            (0xFFFE, 0xFFFF_FF60, 0xb0b0_b0b0, false),
            (0xFFFF, 0x0000_0000, 0xb0b0_b0b0, false),
            (0x0000, 0x0000_00A0, 0xb0b0_b0b0, false),
            (0x0001, 0x0000_0140, 0xb0b0_b0b0, false),
        ]
    );
    let egress = h.shard.leg(b).unwrap().egress;
    assert!(!egress.mark_next, "the marker is spent");
    assert_eq!(egress.seq_offset, 0xFFFD - 100, "offsets persist");
}

#[test]
fn source_rollover_with_offsets() {
    let (mut h, a, b) = call();
    *h.shard.egress_mut(b).unwrap() = EgressContext {
        ssrc: None,
        seq_offset: 5,
        ts_offset: 400,
        mark_next: true,
        ..EgressContext::default()
    };
    // The source itself wraps: 0xFFFE, 0xFFFF, 0, 1.
    let out = relay(&mut h, a, 0xFFFE, 0xFFFF_FF00, 4);
    let got: Vec<_> = out.iter().map(|p| fields(p)).collect();
    assert_eq!(
        got,
        vec![
            (3, 0x90, 0xa, true),
            (4, 0x130, 0xa, false),
            (5, 0x1D0, 0xa, false),
            (6, 0x270, 0xa, false),
        ]
    );
}

#[test]
fn identity_egress_passes_rollover_untouched() {
    let (mut h, a, b) = call();
    assert!(h.shard.leg(b).unwrap().egress.is_identity());
    let out = relay(&mut h, a, 0xFFFE, 0xFFFF_FF60, 3);
    let got: Vec<_> = out.iter().map(|p| fields(p)).collect();
    assert_eq!(
        got,
        vec![
            (0xFFFE, 0xFFFF_FF60, 0xa, false),
            (0xFFFF, 0x0000_0000, 0xa, false),
            (0x0000, 0x0000_00A0, 0xa, false),
        ]
    );
}

#[test]
fn marker_set_again_only_when_asked() {
    let (mut h, a, b) = call();
    h.shard.egress_mut(b).unwrap().mark_next = true;
    let out = relay(&mut h, a, 10, 0, 3);
    let marks: Vec<_> = out.iter().map(|p| fields(p).3).collect();
    assert_eq!(marks, vec![true, false, false]);
    // The next source switch asks again.
    h.shard.egress_mut(b).unwrap().mark_next = true;
    let out = relay(&mut h, a, 13, 480, 2);
    let marks: Vec<_> = out.iter().map(|p| fields(p).3).collect();
    assert_eq!(marks, vec![true, false]);
    // Dropped packets (foreign) do not consume the marker.
    h.shard.egress_mut(b).unwrap().mark_next = true;
    let (v, _) = h.rtp(a, "203.0.113.66:6666", &pcmu(1, 0, 0xbad));
    assert!(matches!(v, Verdict::Drop(_)));
    assert!(h.shard.leg(b).unwrap().egress.mark_next);
}
