//! Pre-encoded media played to a leg: announcements and what follows them,
//! where listeners join a class, pacing by the clock without drift or bursts,
//! and legs that stop, vanish or move to another worker while they play.

mod common;

use common::*;
use rtpark::session::{
    After, DropReason, JoinMode, LegKey, SessionError, SessionEvent, Source, Verdict,
};
use std::time::{Duration, Instant};

const PHONE_A: &str = "192.0.2.10:40000";
const PHONE_B: &str = "198.51.100.20:50000";
const PHONE_C: &str = "198.51.100.30:52000";

/// B's SSRC.
const X: u32 = 0xB0B0_0001;

/// Tags of the programs' frames.
const ANN: u8 = 0xA1;
const MUSIC: u8 = 0x3C;

/// A and B bridged, each with a signalled address.
fn call() -> (Harness, LegKey, LegKey) {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    (h, a, b)
}

/// The frame a shared class with clock origin `epoch` plays at `t`.
fn class_frame(epoch: Instant, t: Instant, count: usize) -> usize {
    ((t - epoch).as_nanos() / PTIME.as_nanos()) as usize % count
}

fn playback_done(leg: LegKey, program: &str) -> SessionEvent {
    SessionEvent::PlaybackDone {
        leg,
        call: "call-1".into(),
        name: "a".into(),
        program: program.into(),
    }
}

/// B's packets 0..=2 (seq 500.., ts 40_000.., SSRC X) relayed to A at 0, 20,
/// 40 ms; then a 5-frame announcement for A at 45 ms, followed by `then`. Runs
/// to 144 ms, checks the five announcement packets, and returns with A's last
/// packet at 125 ms: seq 507, ts 41_000.
fn announced(then: After) -> (Harness, Instant, LegKey, LegKey) {
    let (mut h, a, b) = call();
    let t0 = h.now;
    for i in 0..3u16 {
        h.now = at_ms(t0, 20 * u64::from(i));
        let (v, _) = h.rtp(b, PHONE_B, &pcmu(500 + i, 40_000 + 160 * u32::from(i), X));
        assert!(matches!(v, Verdict::Forward(f) if f.leg == a));
    }
    h.now = at_ms(t0, 45);
    let ann = tagged_frame_list(5, ANN);
    h.shard
        .play(h.now, a, announcement("ann", &ann, then, t0))
        .unwrap();

    // During the announcement A hears only it; A's own audio still reaches B.
    let mut sent = h.run_media_until(at_ms(t0, 50));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(503, 40_480, X));
    assert_eq!(v, Verdict::Drop(DropReason::Held));
    let (v, _) = h.rtp(a, PHONE_A, &pcmu(9, 1000, 0xa));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == b));
    sent.extend(h.run_media_until(at_ms(t0, 144)));

    assert_eq!(sent.len(), 5, "one packet per frame");
    for (k, p) in sent.iter().enumerate() {
        let k32 = k as u32;
        assert_eq!((p.leg, p.to), (a, addr(PHONE_A)));
        assert_eq!(p.at, at_ms(t0, 45 + 20 * k as u64));
        // Continues A's stream: seq 502 + 1, ts 40_320 + 5 ms · 8 kHz.
        assert_eq!(
            (p.seq, p.ts, p.ssrc, p.marker),
            (503 + k as u16, 40_360 + 160 * k32, X, k == 0)
        );
        assert_eq!((p.frame(), p.tag()), (k, ANN), "frames in order, once");
    }
    assert_eq!(
        h.events(),
        vec![],
        "not done before the slot after the last frame"
    );
    assert_eq!(h.shard.leg(b).unwrap().counters.dropped_held, 1);
    (h, t0, a, b)
}

#[test]
fn announcement_then_music_continues_the_stream() {
    let music = tagged_frame_list(10, MUSIC);
    let (mut h, t0, a, _b) = announced(After::Play(Box::new(moh(
        "default",
        &music,
        JoinMode::Shared,
        Instant::now() - Duration::from_secs(10),
    ))));
    let epoch = match &h.shard.leg(a).unwrap().source {
        Source::Media(pb) => match &pb.program.then {
            After::Play(p) => p.epoch,
            other => panic!("then: {other:?}"),
        },
        other => panic!("source: {other:?}"),
    };
    let sent = h.run_media_until(at_ms(t0, 1045));
    assert_eq!(h.events(), vec![playback_done(a, "ann")]);
    // Music from 145 ms, the slot after the last announcement packet.
    assert_eq!(sent.len(), 46);
    for (k, p) in sent.iter().enumerate() {
        let k32 = k as u32;
        assert_eq!(p.at, at_ms(t0, 145 + 20 * k as u64));
        assert_eq!(
            (p.seq, p.ts, p.ssrc, p.marker),
            (508 + k as u16, 41_160 + 160 * k32, X, k == 0),
            "music packet {k}"
        );
        assert_eq!(p.tag(), MUSIC);
        assert_eq!(p.frame(), class_frame(epoch, p.at, 10));
    }
    h.run_media_for(Duration::from_secs(2));
    assert_eq!(h.events(), vec![], "PlaybackDone once");
}

#[test]
fn announcement_then_live_resumes_the_peer() {
    let (mut h, t0, a, b) = announced(After::Live);
    let sent = h.run_media_until(at_ms(t0, 150));
    assert!(sent.is_empty());
    assert_eq!(h.events(), vec![playback_done(a, "ann")]);
    assert!(h.shard.leg(a).unwrap().source.is_peer());

    // B's next packet (seq 504, ts 40_640) at 160 ms: 35 ms after 41_000.
    h.now = at_ms(t0, 160);
    let (v, out) = h.rtp(b, PHONE_B, &pcmu(504, 40_640, X));
    assert!(matches!(v, Verdict::Forward(f) if f.leg == a && f.to == addr(PHONE_A)));
    assert_eq!(fields(&out), (508, 41_280, X, true));
    h.now = at_ms(t0, 180);
    let (_, out) = h.rtp(b, PHONE_B, &pcmu(505, 40_800, X));
    assert_eq!(fields(&out), (509, 41_440, X, false));
    assert!(h.run_media_until(at_ms(t0, 2000)).is_empty());
    assert_eq!(h.events(), vec![], "PlaybackDone once");
}

#[test]
fn announcement_then_nothing_goes_quiet() {
    let (mut h, t0, a, b) = announced(After::Nothing);
    let sent = h.run_media_until(at_ms(t0, 2000));
    assert!(sent.is_empty(), "no packet after the last frame: {sent:?}");
    assert_eq!(h.events(), vec![playback_done(a, "ann")]);
    assert!(matches!(h.shard.leg(a).unwrap().source, Source::Nothing));
    let (v, _) = h.rtp(b, PHONE_B, &pcmu(600, 56_000, X));
    assert_eq!(v, Verdict::Drop(DropReason::Held), "A hears nothing, not B");
    assert_eq!(h.shard.leg(a).unwrap().counters.media_out, 5);
}

/// Three unbridged listeners with signalled addresses.
fn listeners() -> (Harness, [LegKey; 3]) {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    let c = h.add_learn("c", 30004, Some(PHONE_C));
    (h, [a, b, c])
}

#[test]
fn shared_listeners_hear_the_class_clock() {
    let (mut h, [a, b, c]) = listeners();
    let t0 = h.now;
    let frames = frame_list(7);
    let epoch = t0 - Duration::from_millis(3005);
    let class = moh("default", &frames, JoinMode::Shared, epoch);
    h.shard.play(h.now, a, class.clone()).unwrap();
    let mut sent = h.run_media_until(at_ms(t0, 60));
    h.shard.play(h.now, b, class.clone()).unwrap();
    sent.extend(h.run_media_until(at_ms(t0, 73)));
    h.shard.play(h.now, c, class).unwrap();
    sent.extend(h.run_media_until(at_ms(t0, 1000)));

    for p in &sent {
        assert_eq!(
            p.frame(),
            class_frame(epoch, p.at, 7),
            "{:?} at {:?}",
            p.leg,
            p.at - t0
        );
    }
    let first = |leg| sent.iter().find(|p| p.leg == leg).unwrap();
    // 3005 ms into the class: frame 150 mod 7; c joins at 3078 ms: 153 mod 7.
    assert_eq!(first(a).frame(), 3);
    assert_eq!(first(b).frame(), 6, "3065 ms: frame 153 mod 7");
    assert_eq!(first(c).frame(), 6);
    // a and b send at the same instants, and then play the same frame.
    let mut together = 0;
    for pa in sent.iter().filter(|p| p.leg == a) {
        if let Some(pb) = sent.iter().find(|p| p.leg == b && p.at == pa.at) {
            assert_eq!(pa.frame(), pb.frame());
            assert!(
                pa.payload.as_ptr() == pb.payload.as_ptr(),
                "one shared frame"
            );
            together += 1;
        }
    }
    assert_eq!(together, 48);
}

#[test]
fn from_start_listeners_each_begin_at_frame_zero() {
    let (mut h, [a, b, _]) = listeners();
    let t0 = h.now;
    let frames = frame_list(7);
    let class = moh(
        "intro",
        &frames,
        JoinMode::FromStart,
        t0 - Duration::from_secs(5),
    );
    h.shard.play(h.now, a, class.clone()).unwrap();
    let mut sent = h.run_media_until(at_ms(t0, 50));
    h.shard.play(h.now, b, class).unwrap();
    sent.extend(h.run_media_until(at_ms(t0, 1000)));
    for leg in [a, b] {
        let frames: Vec<usize> = sent
            .iter()
            .filter(|p| p.leg == leg)
            .map(Sent::frame)
            .collect();
        assert!(frames.len() > 14);
        let want: Vec<usize> = (0..frames.len()).map(|k| k % 7).collect();
        assert_eq!(frames, want, "{leg:?} loops from frame 0");
    }
}

#[test]
fn resume_listener_continues_where_it_left_off() {
    let (mut h, [a, _, _]) = listeners();
    let frames = frame_list(7);
    let other = tagged_frame_list(3, MUSIC);
    let t0 = h.now;
    let resume = moh("resume", &frames, JoinMode::Resume, t0);
    let frames_of = |sent: &[Sent]| sent.iter().map(Sent::frame).collect::<Vec<_>>();

    h.shard.hold(h.now, a, resume.clone(), None).unwrap();
    assert_eq!(frames_of(&h.next_packets(4)), vec![0, 1, 2, 3]);
    h.advance_ms(10);
    h.shard.unhold(a).unwrap();

    // Another class in between does not disturb the saved position.
    h.advance_ms(500);
    h.shard
        .hold(h.now, a, moh("other", &other, JoinMode::Resume, t0), None)
        .unwrap();
    assert_eq!(frames_of(&h.next_packets(2)), vec![0, 1]);
    h.advance_ms(10);
    h.shard.unhold(a).unwrap();

    h.advance_ms(500);
    h.shard.hold(h.now, a, resume.clone(), None).unwrap();
    assert_eq!(frames_of(&h.next_packets(5)), vec![4, 5, 6, 0, 1]);
    h.advance_ms(10);
    h.shard.unhold(a).unwrap();

    h.advance_ms(500);
    h.shard.hold(h.now, a, resume, None).unwrap();
    assert_eq!(frames_of(&h.next_packets(2)), vec![2, 3]);
    h.advance_ms(10);
    h.shard.unhold(a).unwrap();

    h.advance_ms(500);
    h.shard
        .hold(h.now, a, moh("other", &other, JoinMode::Resume, t0), None)
        .unwrap();
    assert_eq!(frames_of(&h.next_packets(2)), vec![2, 0]);
}

#[test]
fn resume_music_continues_after_an_announcement_interrupts_it() {
    let (mut h, [a, _, _]) = listeners();
    let frames = frame_list(7);
    let ann = tagged_frame_list(2, ANN);
    let t0 = h.now;
    let resume = moh("resume", &frames, JoinMode::Resume, t0);
    h.shard.hold(h.now, a, resume.clone(), None).unwrap();
    assert_eq!(
        h.next_packets(3)
            .iter()
            .map(Sent::frame)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    h.advance_ms(10);
    h.shard
        .play(
            h.now,
            a,
            announcement("ann", &ann, After::Play(Box::new(resume)), t0),
        )
        .unwrap();
    let sent = h.next_packets(5);
    let got: Vec<(u8, usize)> = sent.iter().map(|p| (p.tag(), p.frame())).collect();
    assert_eq!(got, vec![(ANN, 0), (ANN, 1), (0, 3), (0, 4), (0, 5)]);
}

#[test]
fn resume_position_survives_bridge_while_held() {
    let (mut h, [a, b, _]) = listeners();
    h.shard.bridge(a, b).unwrap();
    let frames = frame_list(7);
    let t0 = h.now;
    let resume = moh("resume", &frames, JoinMode::Resume, t0);
    h.shard.hold(h.now, a, resume.clone(), None).unwrap();
    assert_eq!(
        h.next_packets(3)
            .iter()
            .map(Sent::frame)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    h.advance_ms(10);
    // Re-bridging takes A off hold as unhold does; the class position is kept.
    h.shard.bridge(a, b).unwrap();
    h.advance_ms(500);
    h.shard.hold(h.now, a, resume, None).unwrap();
    assert_eq!(
        h.next_packets(1)[0].frame(),
        3,
        "a Resume class must continue where bridge() interrupted it"
    );
}

#[test]
fn ten_thousand_packets_without_drift() {
    let mut h = Harness::new();
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let frames = frame_list(50);
    let start = h.now;
    let epoch = start - Duration::from_millis(3333);
    h.shard
        .play(start, a, moh("default", &frames, JoinMode::Shared, epoch))
        .unwrap();

    let mut sent = Vec::with_capacity(10_000);
    let mut wakeups = 0;
    while sent.len() < 10_000 {
        let due = h.shard.poll_timeout().expect("a deadline while playing");
        assert!(due >= h.now, "deadlines never go backwards");
        h.now = due;
        h.shard.handle_timeout(due);
        sent.extend(h.transmits());
        wakeups += 1;
    }
    // One wake-up per packet plus the 400 sweeps (some of them coincide).
    assert!(wakeups <= 10_000 + 400, "{wakeups} wake-ups");
    assert_eq!(sent.len(), 10_000);
    let (seq0, ts0) = (sent[0].seq, sent[0].ts);
    for (k, p) in sent.iter().enumerate() {
        let k32 = k as u32;
        assert_eq!(p.at, start + PTIME * k32, "packet {k} due on the grid");
        assert_eq!(p.seq, seq0.wrapping_add(k as u16), "packet {k}");
        assert_eq!(p.ts, ts0.wrapping_add(160 * k32), "packet {k}");
        assert_eq!(p.marker, k == 0, "packet {k}");
        // 3333 ms into the class: frame 166, i.e. 16 of 50.
        let index = (16 + k) % 50;
        assert_eq!(p.frame(), index, "packet {k}");
        assert!(
            p.payload.as_ptr() == frames.frames[index].as_ptr(),
            "frames are shared, not copied"
        );
    }
    assert_eq!(sent[9_999].at - start, Duration::from_millis(199_980));

    // The worker wakes up 1 s late: one packet, 50 slots skipped, no burst.
    let due = h.shard.poll_timeout().unwrap();
    assert_eq!(due, start + Duration::from_secs(200));
    h.now = due + Duration::from_secs(1);
    h.shard.handle_timeout(h.now);
    let late = h.transmits();
    assert_eq!(late.len(), 1, "no burst: {late:?}");
    assert_eq!(late[0].seq, seq0.wrapping_add(10_000), "seq still +1");
    assert_eq!(
        late[0].ts,
        ts0.wrapping_add(160 * 10_000 + 8000),
        "ts follows the clock"
    );
    assert!(!late[0].marker);
    assert_eq!(late[0].frame(), class_frame(epoch, h.now, 50));
    let next = h.shard.poll_timeout().unwrap();
    assert_eq!(next, h.now + PTIME, "back on the grid");
    h.now = next;
    h.shard.handle_timeout(next);
    let after = h.transmits();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].seq, after[0].ts),
        (seq0.wrapping_add(10_001), late[0].ts.wrapping_add(160))
    );
}

#[test]
fn removing_a_playing_leg_leaves_no_live_timer() {
    let (mut h, [a, b, _]) = listeners();
    let t0 = h.now;
    let frames = frame_list(10);
    h.shard
        .play(h.now, a, moh("default", &frames, JoinMode::Shared, t0))
        .unwrap();
    assert_eq!(h.next_packets(3).len(), 3);
    h.now = at_ms(t0, 45);
    let removed = h.shard.remove_leg(a).unwrap();
    assert!(matches!(removed.source, Source::Media(_)));

    // The stale entry may still wake the shard once, at the old due time; it
    // sends nothing, and time moves on afterwards.
    let mut last = h.now;
    for _ in 0..5 {
        let out = h.step().expect("b is still there");
        assert!(out.is_empty(), "nothing for a removed leg: {out:?}");
        let next = h.shard.poll_timeout().unwrap();
        assert!(
            next > h.now,
            "poll_timeout does not spin at {:?}",
            h.now - t0
        );
        assert!(h.now >= last);
        last = h.now;
    }
    assert!(h.now >= at_ms(t0, 500), "swept past the old due time");
    assert_eq!(h.shard.leg(b).unwrap().counters.media_out, 0);
    assert!(h.shard.leg(a).is_none());
    assert_eq!(h.shard.unhold(a), Err(SessionError::UnknownLeg));
    assert_eq!(
        h.shard
            .play(h.now, a, moh("default", &frames, JoinMode::Shared, t0)),
        Err(SessionError::UnknownLeg)
    );
}

#[test]
fn reused_slot_does_not_inherit_a_stale_media_timer() {
    let mut h = Harness::new();
    let t0 = h.now;
    let a = h.add_learn("a", 30000, Some(PHONE_A));
    let frames = frame_list(10);
    h.shard
        .play(h.now, a, moh("default", &frames, JoinMode::Shared, t0))
        .unwrap();
    assert_eq!(h.next_packets(3).len(), 3);
    h.shard.remove_leg(a).unwrap();
    assert_eq!(h.shard.poll_timeout(), None, "an empty shard never wakes");

    // A new leg takes the slot at 50 ms and plays: only its own grid (50 + 20k).
    h.now = at_ms(t0, 50);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    assert_eq!(b.index(), a.index());
    h.shard
        .play(h.now, b, moh("default", &frames, JoinMode::Shared, t0))
        .unwrap();
    let sent = h.run_media_until(at_ms(t0, 1000));
    assert_eq!(sent.len(), 48);
    for (k, p) in sent.iter().enumerate() {
        assert_eq!((p.leg, p.to), (b, addr(PHONE_B)));
        assert_eq!(p.at, at_ms(t0, 50 + 20 * k as u64), "packet {k}");
        assert_eq!(p.marker, k == 0);
    }
}

#[test]
fn empty_media_is_refused() {
    let (mut h, [a, _, _]) = listeners();
    let now = h.now;
    let empty = frame_list(0);
    assert_eq!(
        h.shard
            .play(now, a, moh("empty", &empty, JoinMode::Shared, now)),
        Err(SessionError::EmptyMedia)
    );
    assert_eq!(
        h.shard
            .play(now, a, announcement("empty", &empty, After::Live, now)),
        Err(SessionError::EmptyMedia)
    );
    assert!(h.shard.leg(a).unwrap().source.is_peer());
    assert!(h.run_media_for(Duration::from_secs(1)).is_empty());
}

#[test]
fn moved_leg_keeps_playing_without_a_gap() {
    let mut h1 = Harness::new();
    let mut h2 = Harness::new();
    h2.now = h1.now;
    let t0 = h1.now;
    let a = h1.add_learn("a", 30000, Some(PHONE_A));
    let frames = frame_list(10);
    let epoch = t0 - Duration::from_millis(100);
    h1.shard
        .play(h1.now, a, moh("default", &frames, JoinMode::Shared, epoch))
        .unwrap();
    let mut sent = h1.next_packets(5);
    assert_eq!(h1.now, at_ms(t0, 80));

    // Moved between packets: detached at 87 ms, adopted by the other worker.
    h1.now = at_ms(t0, 87);
    h2.now = h1.now;
    let leg = h1.shard.remove_leg(a).unwrap();
    let moved = h2.shard.insert_leg(h2.now, leg);
    assert_eq!(h1.shard.poll_timeout(), None);
    assert_eq!(h2.shard.poll_timeout(), Some(at_ms(t0, 100)));
    let later = h2.next_packets(5);
    assert!(later
        .iter()
        .all(|p| p.leg == moved && p.to == addr(PHONE_A)));
    sent.extend(later);

    let (seq0, ts0, ssrc) = (sent[0].seq, sent[0].ts, sent[0].ssrc);
    for (k, p) in sent.iter().enumerate() {
        let k32 = k as u32;
        assert_eq!(p.at, at_ms(t0, 20 * k as u64), "packet {k}");
        assert_eq!(
            (p.seq, p.ts, p.ssrc, p.marker),
            (
                seq0.wrapping_add(k as u16),
                ts0.wrapping_add(160 * k32),
                ssrc,
                k == 0
            ),
            "packet {k}"
        );
        assert_eq!(p.frame(), (5 + k) % 10, "packet {k}: class clock");
    }
    let counters = h2.shard.leg(moved).unwrap().counters;
    assert_eq!(counters.media_out, 10, "counters move with the leg");
}

#[test]
fn ssrc_per_source_announcement_then_music_changes_ssrc() {
    let mut h = Harness::new();
    let mut ca = leg_config("a", 30000, Some(PHONE_A));
    ca.ssrc_per_source = true;
    let a = h.add(ca);
    let b = h.add_learn("b", 30002, Some(PHONE_B));
    h.shard.bridge(a, b).unwrap();
    let (_, out) = h.rtp(b, PHONE_B, &pcmu(1, 0, X));
    assert_eq!(fields(&out).2, X);
    h.advance_ms(20);
    let ann = tagged_frame_list(2, ANN);
    let music = tagged_frame_list(10, MUSIC);
    let then = After::Play(Box::new(moh("default", &music, JoinMode::Shared, h.now)));
    h.shard
        .play(h.now, a, announcement("ann", &ann, then, h.now))
        .unwrap();
    let sent = h.next_packets(4);
    let tags: Vec<u8> = sent.iter().map(Sent::tag).collect();
    assert_eq!(tags, vec![ANN, ANN, MUSIC, MUSIC]);
    let (s1, s2) = (sent[0].ssrc, sent[2].ssrc);
    assert_ne!(s1, X, "the announcement is a new source");
    assert_ne!(s2, s1, "the music is a new source");
    assert_eq!((sent[1].ssrc, sent[3].ssrc), (s1, s2));
    let markers: Vec<bool> = sent.iter().map(|p| p.marker).collect();
    assert_eq!(markers, vec![true, false, true, false]);
}
