//! Hold and unhold (DESIGN.md, RTP continuity): the held leg's endpoint sees one
//! stream from live to music and back, its own audio reaches no one, its key
//! presses are reported, RTCP follows the rewritten RTP, and the per-leg
//! "new SSRC per source" option changes the SSRC at every switch.

mod common;

use common::*;
use rtpark::rtp::rtcp::RtcpPacket;
use rtpark::session::{
    DropReason, Forward, JoinMode, LegKey, SessionEvent, SocketKind, Source, Verdict,
};
use std::time::{Duration, Instant};

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_A_RTCP: &str = "192.0.2.10:40001";
const PHONE_B: &str = "198.51.100.20:50000";
const PHONE_B_RTCP: &str = "198.51.100.20:50001";

/// B's SSRC.
const X: u32 = 0xB0B0_0001;

/// A and B bridged, each with a signalled address.
fn call() -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    (h, a, b)
}

/// B's `n`-th packet: B numbers from 65400 (so it wraps soon) and stamps 160 per packet.
fn b_packet(n: u16) -> Vec<u8> {
    pcmu(65400u16.wrapping_add(n), 1_000_000 + 160 * u32::from(n), X)
}

/// The frame a shared class with clock origin `epoch` plays at `t`.
fn class_frame(epoch: Instant, t: Instant, count: usize) -> usize {
    ((t - epoch).as_nanos() / PTIME.as_nanos()) as usize % count
}

fn forwarded_to(v: Verdict, leg: LegKey, to: &str) -> bool {
    matches!(v, Verdict::Forward(f) if f.leg == leg && f.to == addr(to) && f.socket == SocketKind::Rtp)
}

#[test]
fn live_hold_unhold_keeps_one_stream_at_the_held_leg() {
    let (mut h, a, b) = call();
    let t0 = h.now;
    let classes = frame_list(50);
    let epoch = t0 - Duration::from_secs(1);
    // Everything A's endpoint receives, in order: (seq, ts, ssrc, marker).
    let mut heard = Vec::new();

    // Live: B's packets 0..=9, every 20 ms, reach A untouched.
    for n in 0..10u16 {
        h.now = at_ms(t0, 20 * u64::from(n));
        let sent = b_packet(n);
        let (v, out) = h.rtp(b, PHONE_B, &sent);
        assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
        assert_eq!(out, sent, "no switch yet: identity");
        heard.push(fields(&out));
    }
    assert_eq!(heard[9], (65409, 1_001_440, X, false));

    // Hold 7 ms after the last relayed packet.
    h.now = at_ms(t0, 187);
    h.shard
        .hold(
            h.now,
            a,
            moh("default", &classes, JoinMode::Shared, epoch),
            None,
        )
        .unwrap();
    assert!(h.shard.leg(a).unwrap().held);
    assert!(matches!(h.shard.leg(b).unwrap().source, Source::Nothing));

    // B keeps talking through the hold (packets 10..=109); none of it reaches A.
    let mut music = Vec::new();
    for n in 10..110u16 {
        music.extend(h.run_media_until(at_ms(t0, 20 * u64::from(n))));
        let (v, _) = h.rtp(b, PHONE_B, &b_packet(n));
        assert_eq!(v, Verdict::Drop(DropReason::Held));
    }
    music.extend(h.run_media_until(at_ms(t0, 2190)));

    // 101 packets at 187 + 20k ms (k = 0..=100).
    assert_eq!(music.len(), 101);
    for (k, p) in music.iter().enumerate() {
        let k32 = k as u32;
        assert_eq!(p.leg, a);
        assert_eq!(p.to, addr(PHONE_A));
        assert_eq!(p.at, at_ms(t0, 187 + 20 * k as u64), "packet {k} on time");
        assert_eq!(
            (p.seq, p.ts, p.ssrc, p.marker),
            (
                65410u16.wrapping_add(k as u16),
                // 1_001_440 + 7 ms · 8 kHz = 1_001_496, then 160 per packet.
                1_001_496 + 160 * k32,
                X,
                k == 0,
            ),
            "packet {k}"
        );
        assert_eq!(p.pt, 0);
        assert_eq!(p.frame(), (59 + k) % 50, "packet {k}: class clock");
        assert_eq!(p.frame(), class_frame(epoch, p.at, 50));
        heard.push((p.seq, p.ts, p.ssrc, p.marker));
    }
    let last = music.last().unwrap();
    assert_eq!((last.seq, last.ts), (65510, 1_017_496));

    h.shard.unhold(a).unwrap();
    assert!(!h.shard.leg(a).unwrap().held);
    assert!(h.shard.leg(a).unwrap().source.is_peer());
    assert!(h.shard.leg(b).unwrap().source.is_peer());

    // B's next packet arrives 3 ms late (2203 ms): 16 ms after the last music
    // packet, so the timestamp advances by 128, and the marker is set.
    h.now = at_ms(t0, 2203);
    assert!(h.transmits().is_empty());
    let (v, out) = h.rtp(b, PHONE_B, &b_packet(110));
    assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
    assert_eq!(fields(&out), (65511, 1_017_624, X, true));
    assert_eq!(out[12..], b_packet(110)[12..], "payload untouched");
    heard.push(fields(&out));
    // Later packets keep the offsets (seq +1, ts +24) across B's wrap 0xFFFF → 0.
    for n in 111..160u16 {
        assert!(
            h.run_media_until(at_ms(t0, 20 * u64::from(n))).is_empty(),
            "no music after unhold"
        );
        let sent = b_packet(n);
        let (v, out) = h.rtp(b, PHONE_B, &sent);
        assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
        let (in_seq, in_ts, _, _) = fields(&sent);
        assert_eq!(
            fields(&out),
            (in_seq.wrapping_add(1), in_ts + 24, X, false),
            "B's packet {n}"
        );
        heard.push(fields(&out));
    }
    assert!(
        heard.iter().any(|&(seq, ..)| seq == 0),
        "the run crosses the wrap"
    );

    // One stream: one SSRC, no sequence gap, markers exactly at the two switches.
    for w in heard.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "no gap after {:?}", w[0]);
        assert!(w[1].1.wrapping_sub(w[0].1) >= 1, "timestamps move forward");
    }
    assert!(heard.iter().all(|&(_, _, ssrc, _)| ssrc == X));
    let markers: Vec<usize> = (0..heard.len()).filter(|&i| heard[i].3).collect();
    assert_eq!(markers, vec![10, 111]);

    let (la, lb) = (h.shard.leg(a).unwrap(), h.shard.leg(b).unwrap());
    assert_eq!(la.counters.media_out, 101);
    assert_eq!(la.counters.rtp_out, 10 + 101 + 50);
    assert_eq!(lb.counters.dropped_held, 100);
    assert_eq!(lb.counters.rtp_in, 160);
}

#[test]
fn held_leg_is_muted_both_ways_and_its_peer_hears_nothing() {
    let (mut h, a, b) = call();
    let t0 = h.now;
    let classes = frame_list(10);
    // A talks (seq 10.., ts 5000.., SSRC 0xA) and B talks, at 0, 20, 40 ms.
    for i in 0..3u16 {
        h.now = at_ms(t0, 20 * u64::from(i));
        let (v, _) = h.rtp(a, PHONE_A, &pcmu(10 + i, 5000 + 160 * u32::from(i), 0xa));
        assert!(forwarded_to(v, b, PHONE_B));
        let (v, _) = h.rtp(b, PHONE_B, &pcmu(700 + i, 90_000 + 160 * u32::from(i), X));
        assert!(forwarded_to(v, a, PHONE_A));
    }
    h.now = at_ms(t0, 50);
    h.shard
        .hold(
            h.now,
            a,
            moh("default", &classes, JoinMode::Shared, t0),
            None,
        )
        .unwrap();

    let mut music = Vec::new();
    for i in 3..53u16 {
        music.extend(h.run_media_until(at_ms(t0, 20 * u64::from(i))));
        let (v, _) = h.rtp(a, PHONE_A, &pcmu(10 + i, 5000 + 160 * u32::from(i), 0xa));
        assert_eq!(
            v,
            Verdict::Drop(DropReason::Held),
            "A's audio reaches no one"
        );
        let (v, _) = h.rtp(b, PHONE_B, &pcmu(700 + i, 90_000 + 160 * u32::from(i), X));
        assert_eq!(
            v,
            Verdict::Drop(DropReason::Held),
            "B's audio does not reach A"
        );
    }
    music.extend(h.run_media_until(at_ms(t0, 1050)));
    assert!(!music.is_empty());
    assert!(
        music.iter().all(|p| p.leg == a && p.to == addr(PHONE_A)),
        "B hears nothing"
    );
    let (la, lb) = (h.shard.leg(a).unwrap(), h.shard.leg(b).unwrap());
    assert_eq!(la.counters.dropped_held, 50);
    assert_eq!(lb.counters.dropped_held, 50);
    assert_eq!((la.counters.rtp_in, lb.counters.rtp_in), (53, 53));
    assert_eq!(lb.counters.rtp_out, 3);
    assert_eq!(lb.counters.media_out, 0);
    assert!(matches!(lb.source, Source::Nothing));

    // Unhold: A's next packet continues the stream B heard, marked.
    h.shard.unhold(a).unwrap();
    h.now = at_ms(t0, 1060);
    let (v, out) = h.rtp(a, PHONE_A, &pcmu(63, 13_480, 0xa));
    assert!(forwarded_to(v, b, PHONE_B), "{v:?}");
    // Last packet B heard: seq 12, ts 5320 at 40 ms; 1020 ms later → +8160.
    assert_eq!(fields(&out), (13, 13_480, 0xa, true));
    h.now = at_ms(t0, 1080);
    let (_, out) = h.rtp(a, PHONE_A, &pcmu(64, 13_640, 0xa));
    assert_eq!(fields(&out), (14, 13_640, 0xa, false));
}

#[test]
fn peer_hears_its_own_continuous_stream_while_held() {
    let (mut h, a, b) = call();
    let t0 = h.now;
    let classes = frame_list(10);
    let silence = frame_list(1);
    for i in 0..3u16 {
        h.now = at_ms(t0, 20 * u64::from(i));
        h.rtp(a, PHONE_A, &pcmu(10 + i, 5000 + 160 * u32::from(i), 0xa));
        h.rtp(b, PHONE_B, &pcmu(700 + i, 90_000 + 160 * u32::from(i), X));
    }
    h.now = at_ms(t0, 50);
    h.shard
        .hold(
            h.now,
            a,
            moh("default", &classes, JoinMode::Shared, t0),
            Some(moh("silence", &silence, JoinMode::FromStart, t0)),
        )
        .unwrap();
    let sent = h.run_media_until(at_ms(t0, 1050));
    let to_a: Vec<&Sent> = sent.iter().filter(|p| p.leg == a).collect();
    let to_b: Vec<&Sent> = sent.iter().filter(|p| p.leg == b).collect();
    assert_eq!((to_a.len(), to_b.len()), (51, 51));
    for (k, (pa, pb)) in to_a.iter().zip(&to_b).enumerate() {
        let k32 = k as u32;
        let due = at_ms(t0, 50 + 20 * k as u64);
        assert_eq!((pa.at, pb.at), (due, due));
        assert_eq!(pa.to, addr(PHONE_A));
        assert_eq!(pb.to, addr(PHONE_B));
        // A's stream: last relayed seq 702, ts 90_320 at 40 ms; +10 ms → +80.
        assert_eq!(
            (pa.seq, pa.ts, pa.ssrc, pa.marker),
            (703 + k as u16, 90_400 + 160 * k32, X, k == 0)
        );
        // B's stream: last relayed seq 12, ts 5320 at 40 ms.
        assert_eq!(
            (pb.seq, pb.ts, pb.ssrc, pb.marker),
            (13 + k as u16, 5400 + 160 * k32, 0xa, k == 0)
        );
        assert_eq!(pb.frame(), 0, "B hears the silence program");
    }
    let lb = h.shard.leg(b).unwrap();
    assert_eq!(lb.counters.media_out, 51);

    // Unhold at 1050: both stop; A's next packet continues B's stream.
    h.shard.unhold(a).unwrap();
    assert!(h.shard.leg(b).unwrap().source.is_peer());
    h.now = at_ms(t0, 1060);
    let (v, out) = h.rtp(a, PHONE_A, &pcmu(63, 13_480, 0xa));
    assert!(forwarded_to(v, b, PHONE_B), "{v:?}");
    // Last silence packet: seq 63, ts 13_400 at 1050 ms; +10 ms → +80.
    assert_eq!(fields(&out), (64, 13_480, 0xa, true));
    assert!(
        h.run_media_until(at_ms(t0, 2000)).is_empty(),
        "no media after unhold"
    );
}

/// A leg whose codecs include telephone-event/8000 as payload type 101.
fn dtmf_call() -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let mut ca = leg_config("a", 30000, Some(PHONE_A));
    ca.codecs = vec![pcmu_codec(), telephone_event_codec(101)];
    let a = h.add(ca);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    (h, a, b)
}

#[test]
fn dtmf_pressed_on_hold_is_reported_once_per_event() {
    let (mut h, a, _b) = dtmf_call();
    let classes = frame_list(10);
    let now = h.now;
    h.shard
        .hold(
            now,
            a,
            moh("default", &classes, JoinMode::Shared, now),
            None,
        )
        .unwrap();
    let mut seq = 100;
    let mut send = |h: &mut Harness, pt: u8, ts: u32, event: u8, end: bool, duration: u16| {
        seq += 1;
        h.advance_ms(20);
        let (v, _) = h.rtp(
            a,
            PHONE_A,
            &telephone_event(pt, seq, ts, 0xa, event, end, duration),
        );
        assert_eq!(
            v,
            Verdict::Drop(DropReason::Held),
            "key presses reach no one"
        );
    };

    // '5': progress packets, then the end packet three times (RFC 4733 2.5.1.4).
    for d in [160, 320, 480, 640] {
        send(&mut h, 101, 8000, 5, false, d);
    }
    assert_eq!(h.events(), vec![], "no event before the end bit");
    for _ in 0..3 {
        send(&mut h, 101, 8000, 5, true, 800);
    }
    assert_eq!(
        h.events(),
        vec![SessionEvent::Dtmf {
            leg: a,
            call: "call-1".into(),
            name: "a".into(),
            digit: '5',
            duration_ms: 100,
        }]
    );

    // '#' (event 11), a new event timestamp, 1000 units = 125 ms.
    for d in [160, 320] {
        send(&mut h, 101, 9600, 11, false, d);
    }
    for _ in 0..3 {
        send(&mut h, 101, 9600, 11, true, 1000);
    }
    assert_eq!(
        h.events(),
        vec![SessionEvent::Dtmf {
            leg: a,
            call: "call-1".into(),
            name: "a".into(),
            digit: '#',
            duration_ms: 125,
        }]
    );

    // The same bytes under a payload type that is not telephone-event: audio.
    for _ in 0..3 {
        send(&mut h, 96, 11_200, 1, true, 800);
    }
    assert_eq!(h.events(), vec![]);
    assert_eq!(
        h.shard.leg(a).unwrap().counters.dropped_held,
        4 + 3 + 2 + 3 + 3
    );
}

#[test]
fn dtmf_while_not_held_is_relayed_and_not_reported() {
    let (mut h, a, b) = dtmf_call();
    for (seq, end, duration) in [
        (2, false, 160),
        (3, true, 800),
        (4, true, 800),
        (5, true, 800),
    ] {
        h.advance_ms(20);
        let sent = telephone_event(101, seq, 8000, 0xa, 7, end, duration);
        let (v, out) = h.rtp(a, PHONE_A, &sent);
        assert!(forwarded_to(v, b, PHONE_B), "{v:?}");
        assert_eq!(out, sent);
    }
    assert_eq!(h.events(), vec![]);
}

#[test]
fn dtmf_without_a_signalled_telephone_event_is_not_reported() {
    let (mut h, a, _b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let classes = frame_list(10);
    let now = h.now;
    h.shard
        .hold(
            now,
            a,
            moh("default", &classes, JoinMode::Shared, now),
            None,
        )
        .unwrap();
    for seq in 2..5 {
        h.advance_ms(20);
        let (v, _) = h.rtp(
            a,
            PHONE_A,
            &telephone_event(101, seq, 8000, 0xa, 5, true, 800),
        );
        assert_eq!(v, Verdict::Drop(DropReason::Held));
    }
    assert_eq!(h.events(), vec![]);
}

/// A held then resumed with no packet relayed to A before the hold, so A's
/// stream gets an SSRC of its own. Returns A's SSRC and the offsets the first
/// resumed packet (B's seq 300, ts 777_000) was rewritten with.
fn resumed_with_own_ssrc(h: &mut Harness, a: LegKey, b: LegKey) -> (u32, u16, u32) {
    let classes = frame_list(10);
    let t0 = h.now;
    h.shard
        .hold(t0, a, moh("default", &classes, JoinMode::Shared, t0), None)
        .unwrap();
    let music = h.next_packets(10);
    let ssrc = music[0].ssrc;
    assert!(music.iter().all(|p| p.ssrc == ssrc));
    assert_ne!(ssrc, X);
    h.advance_ms(5);
    h.shard.unhold(a).unwrap();
    h.advance_ms(10);
    let (v, out) = h.rtp(b, PHONE_B, &pcmu(300, 777_000, X));
    assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
    let (seq, ts, out_ssrc, marker) = fields(&out);
    let last = music.last().unwrap();
    assert_eq!(
        (seq, out_ssrc, marker),
        (last.seq.wrapping_add(1), ssrc, true)
    );
    // 15 ms after the last music packet.
    assert_eq!(ts, last.ts.wrapping_add(120));
    (ssrc, seq.wrapping_sub(300), ts.wrapping_sub(777_000))
}

/// B's SR + SDES (CNAME "b@x") compound.
fn sr_sdes(ssrc: u32, ntp: u64, rtp_ts: u32) -> Vec<u8> {
    let mut p = rtcp_sr(ssrc, ntp, rtp_ts);
    // SDES, one chunk: SSRC, CNAME item (type 1, length 3, "b@x"), end, padding to 4.
    p.extend_from_slice(&[0x81, 202, 0, 3]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[1, 3, b'b', b'@', b'x', 0, 0, 0]);
    p
}

#[test]
fn sender_report_after_resume_matches_the_rewritten_rtp() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let (ssrc, _, ts_offset) = resumed_with_own_ssrc(&mut h, a, b);
    assert_ne!(ts_offset, 0, "the test needs a real shift");

    h.advance_ms(10);
    let ntp = 0xE000_0000_8000_0000;
    let sent = sr_sdes(X, ntp, 777_160);
    let (v, out) = h.rtcp(b, PHONE_B_RTCP, &sent);
    assert_eq!(
        v,
        Verdict::Forward(Forward {
            leg: a,
            socket: SocketKind::Rtcp,
            to: addr(PHONE_A_RTCP),
            connected: false,
        })
    );
    assert_eq!(out.len(), sent.len());
    let (sr, len) = RtcpPacket::parse(&out).unwrap();
    let RtcpPacket::SenderReport(sr) = sr else {
        panic!("not an SR: {sr:?}")
    };
    assert_eq!(sr.ssrc(), ssrc, "the SSRC A receives RTP from");
    assert_eq!(sr.rtp_timestamp(), 777_160u32.wrapping_add(ts_offset));
    assert_eq!(sr.ntp_timestamp(), ntp, "wall clock untouched");
    let (sdes, _) = RtcpPacket::parse(&out[len..]).unwrap();
    assert_eq!(
        sdes.sender_ssrc(),
        Some(ssrc),
        "CNAME belongs to A's stream"
    );
    assert_eq!(out[len + 8..], sent[len + 8..], "CNAME untouched");
}

#[test]
fn sender_report_after_resume_with_the_same_ssrc_is_shifted() {
    // As in the live→hold→unhold scenario, A's stream keeps B's SSRC; B
    // resumes with a timestamp 4000 ahead of the wall clock (it skipped
    // silence), so the resumed RTP, and the SR with it, are shifted by −4000.
    let classes = frame_list(10);
    let (mut h, a, b) = call();
    let t0 = h.now;
    h.rtp(b, PHONE_B, &pcmu(10, 50_000, X));
    h.now = at_ms(t0, 3);
    h.shard
        .hold(
            h.now,
            a,
            moh("default", &classes, JoinMode::Shared, t0),
            None,
        )
        .unwrap();
    h.run_media_until(at_ms(t0, 100));
    h.shard.unhold(a).unwrap();
    h.now = at_ms(t0, 110);
    // Music at 3 + 20k ms up to 83 ms (seq 15, ts 50_664); 27 ms later → 50_880.
    let (_, out) = h.rtp(b, PHONE_B, &pcmu(16, 54_880, X));
    assert_eq!(fields(&out), (16, 50_880, X, true));
    let ts_offset = 50_880u32.wrapping_sub(54_880);
    h.now = at_ms(t0, 120);
    let (v, out) = h.rtcp(b, PHONE_B_RTCP, &rtcp_sr(X, 42, 55_000));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == a && f.to == addr(PHONE_A_RTCP)));
    let (RtcpPacket::SenderReport(sr), _) = RtcpPacket::parse(&out).unwrap() else {
        panic!("not an SR")
    };
    assert_eq!(sr.ssrc(), X);
    assert_eq!(sr.rtp_timestamp(), 55_000u32.wrapping_add(ts_offset));
    assert_eq!(sr.rtp_timestamp(), 51_000);
}

#[test]
fn sender_report_before_the_first_resumed_packet_carries_no_stale_ssrc() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let classes = frame_list(10);
    let t0 = h.now;
    h.shard
        .hold(t0, a, moh("default", &classes, JoinMode::Shared, t0), None)
        .unwrap();
    let music = h.next_packets(10);
    let ssrc = music[0].ssrc;
    assert_ne!(ssrc, X);
    h.shard.unhold(a).unwrap();
    // B's report overtakes B's first resumed RTP packet.
    h.advance_ms(5);
    let (v, out) = h.rtcp(b, PHONE_B_RTCP, &rtcp_sr(X, 42, 777_000));
    // Either withheld until the stream is re-anchored, or relayed under the
    // SSRC A has been receiving; never under an SSRC A has not seen.
    if let Verdict::Forward(_) = v {
        let (RtcpPacket::SenderReport(sr), _) = RtcpPacket::parse(&out).unwrap() else {
            panic!("not an SR")
        };
        assert_eq!(
            sr.ssrc(),
            ssrc,
            "SR relayed to A under B's SSRC {X:#x}, but A's stream has SSRC {ssrc:#x}"
        );
    }
}

#[test]
fn relayed_dtmf_after_resume_uses_the_audio_offsets() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(1, 0, 0xa));
    let (ssrc, seq_offset, ts_offset) = resumed_with_own_ssrc(&mut h, a, b);
    h.advance_ms(20);
    let sent = telephone_event(101, 301, 777_160, X, 3, false, 160);
    let (v, out) = h.rtp(b, PHONE_B, &sent);
    assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
    assert_eq!(
        fields(&out),
        (
            301u16.wrapping_add(seq_offset),
            777_160u32.wrapping_add(ts_offset),
            ssrc,
            false
        )
    );
    assert_eq!(out[1] & 0x7f, 101);
    assert_eq!(out[12..], sent[12..], "event block untouched");
}

/// A bridged to B, A with "new SSRC per source"; B's packets 0..3 relayed to A.
fn ssrc_per_source_call() -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let mut ca = leg_config("a", 30000, Some(PHONE_A));
    ca.ssrc_per_source = true;
    let a = h.add(ca);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    for n in 0..3u16 {
        let (_, out) = h.rtp(b, PHONE_B, &b_packet(n));
        assert_eq!(fields(&out).2, X, "no switch yet");
        h.advance_ms(20);
    }
    (h, a, b)
}

#[test]
fn ssrc_per_source_music_gets_a_new_ssrc() {
    let (mut h, a, _b) = ssrc_per_source_call();
    let classes = frame_list(10);
    let now = h.now;
    h.shard
        .hold(
            now,
            a,
            moh("default", &classes, JoinMode::Shared, now),
            None,
        )
        .unwrap();
    let music = h.next_packets(5);
    let m = music[0].ssrc;
    assert_ne!(m, X, "music is a new source");
    assert!(music[0].marker);
    assert!(music.iter().all(|p| p.ssrc == m));
}

#[test]
fn ssrc_per_source_resumed_peer_gets_a_new_ssrc() {
    let (mut h, a, b) = ssrc_per_source_call();
    let classes = frame_list(10);
    let now = h.now;
    h.shard
        .hold(
            now,
            a,
            moh("default", &classes, JoinMode::Shared, now),
            None,
        )
        .unwrap();
    let m = h.next_packets(5)[0].ssrc;
    h.advance_ms(10);
    h.shard.unhold(a).unwrap();
    h.advance_ms(10);
    let (v, out) = h.rtp(b, PHONE_B, &b_packet(10));
    assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
    let (_, _, r, marker) = fields(&out);
    assert!(marker);
    assert_ne!(
        r, m,
        "with ssrc_per_source the relayed peer after unhold must not reuse the music SSRC {m:#x}"
    );
    // And the next hold starts yet another one.
    h.advance_ms(20);
    let now = h.now;
    h.shard
        .hold(
            now,
            a,
            moh("default", &classes, JoinMode::Shared, now),
            None,
        )
        .unwrap();
    let m2 = h.next_packets(1)[0].ssrc;
    assert_ne!(m2, r);
}

#[test]
fn bridge_while_held_switches_both_legs_to_live() {
    let (mut h, a, b) = call();
    let t0 = h.now;
    h.rtp(a, PHONE_A, &pcmu(10, 5000, 0xa));
    h.rtp(b, PHONE_B, &pcmu(700, 90_000, X));
    let classes = frame_list(10);
    h.now = at_ms(t0, 10);
    h.shard
        .hold(
            h.now,
            a,
            moh("default", &classes, JoinMode::Shared, t0),
            None,
        )
        .unwrap();
    // Music at 10, 30, 50, 70, 90 ms: seq 701..=705, ts 90_080 + 160k.
    let music = h.run_media_until(at_ms(t0, 100));
    assert_eq!(music.len(), 5);
    assert_eq!((music[4].seq, music[4].ts), (705, 90_720));

    h.shard.bridge(a, b).unwrap();
    let (la, lb) = (h.shard.leg(a).unwrap(), h.shard.leg(b).unwrap());
    assert!(!la.held && !lb.held);
    assert!(la.source.is_peer() && lb.source.is_peer());

    h.now = at_ms(t0, 110);
    let (v, out) = h.rtp(b, PHONE_B, &pcmu(711, 91_760, X));
    assert!(forwarded_to(v, a, PHONE_A), "{v:?}");
    // 20 ms after the last music packet.
    assert_eq!(fields(&out), (706, 90_880, X, true));
    let (v, out) = h.rtp(a, PHONE_A, &pcmu(21, 6760, 0xa));
    assert!(forwarded_to(v, b, PHONE_B), "{v:?}");
    // B heard A's seq 10, ts 5000 at 0 ms and nothing since: 110 ms → +880.
    assert_eq!(fields(&out), (11, 5880, 0xa, true));
    assert!(
        h.run_media_until(at_ms(t0, 1000)).is_empty(),
        "no music after the bridge"
    );
}

#[test]
fn hold_with_empty_media_is_refused_and_changes_nothing() {
    let (mut h, a, b) = call();
    let now = h.now;
    let empty = frame_list(0);
    assert_eq!(
        h.shard
            .hold(now, a, moh("empty", &empty, JoinMode::Shared, now), None),
        Err(rtpark::session::SessionError::EmptyMedia)
    );
    let (la, lb) = (h.shard.leg(a).unwrap(), h.shard.leg(b).unwrap());
    assert!(!la.held);
    assert!(la.source.is_peer() && lb.source.is_peer());
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(1, 0, X));
    assert!(forwarded_to(v, a, PHONE_A));
    assert!(h.run_media_until(now + Duration::from_secs(1)).is_empty());
}

#[test]
fn holding_the_other_side_too_keeps_the_first_leg_on_music() {
    // A holds, then B holds as well (both phones pressed hold): each held leg
    // hears music; B's hold must not silence the music A is hearing.
    let (mut h, a, b) = call();
    let t0 = h.now;
    h.rtp(a, PHONE_A, &pcmu(10, 5000, 0xa));
    h.rtp(b, PHONE_B, &pcmu(700, 90_000, X));
    let for_a = tagged_frame_list(10, 0x3C);
    let for_b = tagged_frame_list(10, 0xA1);
    h.now = at_ms(t0, 10);
    h.shard
        .hold(h.now, a, moh("a-class", &for_a, JoinMode::Shared, t0), None)
        .unwrap();
    let before = h.run_media_until(at_ms(t0, 55));
    assert_eq!(before.len(), 3);
    h.shard
        .hold(h.now, b, moh("b-class", &for_b, JoinMode::Shared, t0), None)
        .unwrap();
    let after = h.run_media_until(at_ms(t0, 100));
    let to_a: Vec<&Sent> = after.iter().filter(|p| p.leg == a).collect();
    let to_b: Vec<&Sent> = after.iter().filter(|p| p.leg == b).collect();
    assert_eq!(to_b.len(), 3, "B hears its class at 55, 75, 95 ms");
    assert!(to_b.iter().all(|p| p.tag() == 0xA1));
    let last = before.last().unwrap();
    let got: Vec<(u16, u32, bool, u8)> = to_a
        .iter()
        .map(|p| (p.seq, p.ts, p.marker, p.tag()))
        .collect();
    assert_eq!(
        got,
        vec![
            (last.seq.wrapping_add(1), last.ts.wrapping_add(160), false, 0x3C),
            (last.seq.wrapping_add(2), last.ts.wrapping_add(320), false, 0x3C),
        ],
        "A, still held, must keep hearing its music (at 70 and 90 ms) after B holds; A's source is now {:?}",
        h.shard.leg(a).unwrap().source
    );
}

#[test]
fn changing_the_class_while_held_continues_the_stream() {
    let (mut h, a, b) = call();
    let t0 = h.now;
    h.rtp(b, PHONE_B, &pcmu(700, 90_000, X));
    let first = tagged_frame_list(10, 0x3C);
    let second = tagged_frame_list(10, 0xA1);
    h.shard
        .hold(h.now, a, moh("first", &first, JoinMode::Shared, t0), None)
        .unwrap();
    // 701.. at 0, 20, 40 ms (ts 90_001: at least one tick after the relayed packet).
    let sent = h.run_media_until(at_ms(t0, 50));
    assert_eq!(
        sent.iter()
            .map(|p| (p.seq, p.ts, p.marker))
            .collect::<Vec<_>>(),
        vec![
            (701, 90_001, true),
            (702, 90_161, false),
            (703, 90_321, false)
        ]
    );
    h.shard
        .hold(
            h.now,
            a,
            moh("second", &second, JoinMode::FromStart, t0),
            None,
        )
        .unwrap();
    let sent = h.run_media_until(at_ms(t0, 90));
    // From 50 ms, 10 ms after the last packet: +80, marked, the new class from its start.
    assert_eq!(
        sent.iter()
            .map(|p| (p.at, p.seq, p.ts, p.ssrc, p.marker, p.tag(), p.frame()))
            .collect::<Vec<_>>(),
        vec![
            (at_ms(t0, 50), 704, 90_401, X, true, 0xA1, 0),
            (at_ms(t0, 70), 705, 90_561, X, false, 0xA1, 1),
            (at_ms(t0, 90), 706, 90_721, X, false, 0xA1, 2),
        ]
    );
}

#[test]
fn unhold_of_a_live_call_changes_nothing() {
    let (mut h, a, b) = call();
    h.rtp(a, PHONE_A, &pcmu(10, 5000, 0xa));
    h.rtp(b, PHONE_B, &pcmu(700, 90_000, X));
    h.shard.unhold(a).unwrap();
    h.advance_ms(20);
    let sent = pcmu(701, 90_160, X);
    let (v, out) = h.rtp(b, PHONE_B, &sent);
    assert!(forwarded_to(v, a, PHONE_A));
    assert_eq!(out, sent, "no switch happened: no marker, no offsets");
    let sent = pcmu(11, 5160, 0xa);
    let (_, out) = h.rtp(a, PHONE_A, &sent);
    assert_eq!(out, sent);
    assert!(h.run_media_for(Duration::from_secs(1)).is_empty());
}
