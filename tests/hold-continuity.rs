//! A phone whose call goes live → hold → live → hold (another class) →
//! announcement → live sees one well-formed RTP stream (DESIGN.md, "RTP
//! continuity"): one SSRC, sequence numbers without gap or duplicate, the marker
//! bit on exactly the first packet after each switch, timestamps that follow the
//! wall clock, music every 20 ms. Meanwhile the held phone's own audio reaches
//! no one (and is counted), its key presses become `dtmf` events, its peer hears
//! nothing or silence frames that continue its stream; with `ssrc_per_source`
//! every source gets an SSRC of its own. Real binary, real sockets, both backends.
//!
//! Which source a packet came from is read from its content, not from the
//! header fields under test: the phones tag their payloads, each class and the
//! announcement is a tone of its own frequency, silence is µ-law zero.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

backend_tests!(
    one_stream_across_hold_unhold_and_announcement,
    announcement_then_live_makes_a_held_call_live_both_ways,
    peer_of_held_leg_hears_silence_frames,
    ssrc_per_source_starts_a_new_ssrc_at_each_switch,
);

/// Tones (Hz) of class `one`, class `two`, the announcement `beep` and the
/// `default` class: whole cycles in a 20 ms frame, far apart.
const ONE_HZ: f64 = 400.0;
const TWO_HZ: f64 = 1200.0;
const BEEP_HZ: f64 = 2400.0;
/// The announcement's length.
const BEEP_SECS: f64 = 0.4;
/// Largest allowed difference between a timestamp step and the arrival-time step.
const TS_TOLERANCE: f64 = 0.030;
/// How long each live or held phase lasts.
const PHASE: Duration = Duration::from_millis(400);

const TAG_A: [u8; 4] = *b"\x01AAA";
const TAG_B: [u8; 4] = *b"\x01BBB";

/// Where a packet a phone received came from, judged by its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The other phone, relayed.
    Live,
    /// Class `one`.
    One,
    /// Class `two`.
    Two,
    /// Announcement `beep`.
    Beep,
    /// Class `default`.
    Default,
    /// µ-law silence frames.
    Silence,
    /// Something else.
    Unknown,
}

impl Src {
    fn is_media(self) -> bool {
        !matches!(self, Src::Live)
    }
}

fn classify(p: &RtpView, peer_tag: [u8; 4]) -> Src {
    if p.payload.starts_with(&peer_tag) {
        return Src::Live;
    }
    if p.pt != 0 {
        return Src::Unknown;
    }
    if !p.payload.is_empty() && p.payload.iter().all(|&b| b == 0xff || b == 0x7f) {
        return Src::Silence;
    }
    let freqs = [ONE_HZ, TWO_HZ, BEEP_HZ, QUICK_DEFAULT_HZ];
    match dominant_tone(&ulaw_samples(&p.payload), 8000, &freqs) {
        Some(0) => Src::One,
        Some(1) => Src::Two,
        Some(2) => Src::Beep,
        Some(3) => Src::Default,
        _ => Src::Unknown,
    }
}

/// A run of packets from one source.
#[derive(Debug)]
struct Segment {
    src: Src,
    /// Index of its first packet in the stream.
    start: usize,
    len: usize,
    ssrcs: Vec<u32>,
}

/// What a phone received, cut into segments by source, and every continuity
/// rule it breaks.
struct Stream {
    packets: Vec<(RtpView, f64, Src)>,
    segments: Vec<Segment>,
    problems: Vec<String>,
}

impl Stream {
    fn sources(&self) -> Vec<Src> {
        self.segments.iter().map(|s| s.src).collect()
    }

    /// A readable account of the stream, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            let (first, t0, _) = &self.packets[s.start];
            let (last, t1, _) = &self.packets[s.start + s.len - 1];
            out.push_str(&format!(
                "  {:?}: {} packets, seq {}..={}, ts {}..={}, ssrc {:08x?}, marker on first {}, \
                 arrival {:.3}..{:.3} s\n",
                s.src,
                s.len,
                first.seq,
                last.seq,
                first.ts,
                last.ts,
                s.ssrcs,
                first.marker,
                t0 - self.packets[0].1,
                t1 - self.packets[0].1,
            ));
        }
        out
    }
}

/// Checks a received stream against the continuity rules; `one_ssrc` says
/// whether the SSRC must stay the same across switches (else it must change at
/// each one) and `seq_across` whether sequence numbers must continue across them.
fn analyse(recorded: &[Stamped], peer_tag: [u8; 4], one_ssrc: bool, seq_across: bool) -> Stream {
    let mut problems = Vec::new();
    let packets: Vec<(RtpView, f64, Src)> = recorded
        .iter()
        .filter_map(|s| {
            let p = parse_rtp(&s.data);
            if p.is_none() {
                problems.push(format!("not RTP: {:02x?}", s.data));
            }
            p.map(|p| {
                let src = classify(&p, peer_tag);
                (p, s.at, src)
            })
        })
        .collect();
    let mut segments: Vec<Segment> = Vec::new();
    for (i, (p, _, src)) in packets.iter().enumerate() {
        match segments.last_mut() {
            Some(s) if s.src == *src => {
                s.len += 1;
                if !s.ssrcs.contains(&p.ssrc) {
                    s.ssrcs.push(p.ssrc);
                }
            }
            _ => segments.push(Segment {
                src: *src,
                start: i,
                len: 1,
                ssrcs: vec![p.ssrc],
            }),
        }
    }
    for s in &segments {
        if s.ssrcs.len() != 1 {
            problems.push(format!(
                "{:?} segment at packet {} has several SSRCs {:08x?}",
                s.src, s.start, s.ssrcs
            ));
        }
        if s.src == Src::Unknown {
            problems.push(format!(
                "{} packet(s) at packet {} from no known source",
                s.len, s.start
            ));
        }
    }
    for w in segments.windows(2) {
        let same = w[0].ssrcs[0] == w[1].ssrcs[0];
        if one_ssrc && !same {
            problems.push(format!(
                "SSRC changes from {:08x} to {:08x} at packet {} ({:?} → {:?})",
                w[0].ssrcs[0], w[1].ssrcs[0], w[1].start, w[0].src, w[1].src
            ));
        }
        if !one_ssrc && same {
            problems.push(format!(
                "SSRC {:08x} is kept at packet {} ({:?} → {:?}) despite ssrc_per_source",
                w[1].ssrcs[0], w[1].start, w[0].src, w[1].src
            ));
        }
    }
    let boundary = |i: usize| segments.iter().any(|s| s.start == i);
    for i in 1..packets.len() {
        let ((prev, t_prev, _), (p, t, src)) = (&packets[i - 1], &packets[i]);
        let switch = boundary(i);
        if (seq_across || !switch) && p.seq != prev.seq.wrapping_add(1) {
            problems.push(format!(
                "packet {i} ({src:?}{}): sequence {} after {}",
                if switch { ", first after a switch" } else { "" },
                p.seq,
                prev.seq
            ));
        }
        if switch && !p.marker {
            problems.push(format!(
                "packet {i}, the first {src:?} packet after a switch, has no marker bit"
            ));
        }
        if !switch && p.marker && src.is_media() {
            problems.push(format!("{src:?} packet {i} has a marker bit mid-stream"));
        }
        let dts = p.ts.wrapping_sub(prev.ts) as i32 as f64 / 8000.0;
        let dt = t - t_prev;
        if (dts - dt).abs() > TS_TOLERANCE {
            problems.push(format!(
                "packet {i} ({src:?}{}): timestamp step {:.1} ms but {:.1} ms between arrivals",
                if switch { ", first after a switch" } else { "" },
                dts * 1000.0,
                dt * 1000.0
            ));
        }
    }
    for s in segments.iter().filter(|s| s.src.is_media() && s.len > 5) {
        let mut gaps: Vec<f64> = (s.start + 1..s.start + s.len)
            .map(|i| packets[i].1 - packets[i - 1].1)
            .collect();
        gaps.sort_by(f64::total_cmp);
        let median = gaps[gaps.len() / 2] * 1000.0;
        if !(18.0..=22.0).contains(&median) {
            problems.push(format!(
                "{:?} packets arrive every {median:.1} ms (median), not every 20 ms",
                s.src
            ));
        }
    }
    Stream {
        packets,
        segments,
        problems,
    }
}

/// Asserts the stream checked out and came from `expected`, in that order.
fn assert_stream(who: &str, stream: &Stream, expected: &[Src], engine: &Engine) {
    assert!(
        stream.problems.is_empty() && stream.sources() == expected,
        "{who} expected sources {expected:?}, got {:?}; problems:\n  {}\nstream:\n{}engine stderr:\n{}",
        stream.sources(),
        stream.problems.join("\n  "),
        stream.describe(),
        engine.stderr()
    );
}

/// Runs of packets separated by silences of more than 60 ms: (first index, length).
fn bursts(stream: &Stream) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for i in 0..stream.packets.len() {
        match out.last_mut() {
            Some(b) if stream.packets[i].1 - stream.packets[i - 1].1 <= 0.060 => b.1 += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// Asserts the first packet of every burst but the first carries the marker bit
/// (the stream resumes after a source switch).
fn assert_bursts_marked(who: &str, stream: &Stream, bursts: &[(usize, usize)]) {
    for &(start, _) in bursts.iter().skip(1) {
        assert!(
            stream.packets[start].0.marker,
            "{who}: packet {start} resumes the stream after a pause but has no marker bit; \
             bursts {bursts:?}"
        );
    }
}

/// An engine with classes `one` and `two` and the announcement `beep`, and a
/// call `c` with legs `a` (PCMU and telephone-event 101) and `b` (PCMU), bridged.
struct Rig {
    engine: Engine,
    ctl: Control,
    events: Control,
    a: Phone,
    b: Phone,
    a_port: u16,
    b_port: u16,
    _dir: TempDir,
}

fn rig(backend: Backend, a_extra: Value) -> Rig {
    let dir = TempDir::new();
    let ann = dir.join("announcements");
    std::fs::create_dir_all(&ann).unwrap();
    write_wav(
        &ann.join("beep.wav"),
        8000,
        &tone(8000, BEEP_SECS, &[(BEEP_HZ, 0.3)]),
    );
    let (one, two) = (dir.join("one.wav"), dir.join("two.wav"));
    write_wav(&one, 8000, &tone(8000, 2.0, &[(ONE_HZ, 0.3)]));
    write_wav(&two, 8000, &tone(8000, 2.0, &[(TWO_HZ, 0.3)]));
    let engine = Engine::start(
        EngineOptions::new(backend)
            .config(&quick_media(&dir))
            .config(&format!("announcements_dir = {}", toml_path(&ann)))
            .config(&format!(
                "[moh.one]\nfiles = [{}]\njoin = \"start\"\nnormalize = false",
                toml_path(&one)
            ))
            .config(&format!(
                "[moh.two]\nfiles = [{}]\njoin = \"start\"\nnormalize = false",
                toml_path(&two)
            )),
    );
    let mut ctl = engine.control();
    let mut events = engine.control();
    events.ok(json!({"cmd": "subscribe"}));
    let (a, b) = (Phone::new(), Phone::new());
    let mut create_a = json!({"cmd": "create_leg", "call": "c", "leg": "a",
        "remote": a.addr().to_string(),
        "codecs": [{"pt": 0, "name": "PCMU", "rate": 8000},
                   {"pt": 101, "name": "telephone-event", "rate": 8000}]});
    if let (Some(obj), Some(extra)) = (create_a.as_object_mut(), a_extra.as_object()) {
        obj.extend(extra.clone());
    }
    let ra = ctl.ok(create_a);
    let rb = ctl.ok(json!({"cmd": "create_leg", "call": "c", "leg": "b",
        "remote": b.addr().to_string(), "codecs": [{"pt": 0, "name": "PCMU", "rate": 8000}]}));
    ctl.bridge("a", "b");
    Rig {
        a_port: rtp_port(&ra),
        b_port: rtp_port(&rb),
        engine,
        ctl,
        events,
        a,
        b,
        _dir: dir,
    }
}

/// RFC 4733 packets for one key press of `digit` (0–9): three updates and the
/// end packet three times, all with the event's timestamp.
fn key_press(digit: u8, ssrc: u32, seq0: u16, ts: u32) -> Vec<Vec<u8>> {
    let durations = [160u16, 320, 480, 800, 800, 800];
    durations
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let end = i >= 3;
            let mut ev = vec![digit, if end { 0x80 | 10 } else { 10 }];
            ev.extend_from_slice(&d.to_be_bytes());
            rtp_with(
                seq0.wrapping_add(i as u16),
                ts,
                ssrc,
                101,
                &ev,
                &RtpOpts {
                    marker: i == 0,
                    ..RtpOpts::default()
                },
            )
        })
        .collect()
}

fn is_playback_done(ev: &Value) -> bool {
    ev["event"] == json!("playback_done")
}

fn one_stream_across_hold_unhold_and_announcement(backend: Backend) {
    let mut r = rig(backend, json!({}));
    let (rec_a, rec_b) = (r.a.rtp.record(), r.b.rtp.record());
    let spec_a = StreamSpec::pcmu(0x0a0a_0001, TAG_A);
    let pacer_a = r.a.rtp.pace(r.a_port, spec_a.clone());
    let pacer_b = r.b.rtp.pace(r.b_port, StreamSpec::pcmu(0x0b0b_0002, TAG_B));
    std::thread::sleep(PHASE);

    // Hold with class one; the held phone presses 5 meanwhile.
    let dropped_before = r.ctl.counter("c", "a", "dropped_held");
    r.ctl.ok(json!({"cmd": "hold", "leg": "a", "class": "one"}));
    let held_at = wall_secs();
    assert_eq!(r.ctl.leg_info("c", "a")["state"], json!("held"));
    std::thread::sleep(PHASE / 2);
    for p in key_press(5, spec_a.ssrc, 40000, 0x1234_5678) {
        r.a.rtp.send_to_port(&p, r.a_port);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(PHASE / 2);
    // Count what A sent until now once the engine has surely read it, still held.
    let counted_until = wall_secs();
    std::thread::sleep(Duration::from_millis(50));
    let dropped_after = r.ctl.counter("c", "a", "dropped_held");
    let unhold_at = wall_secs();
    r.ctl.ok(json!({"cmd": "unhold", "leg": "a"}));
    std::thread::sleep(PHASE);

    // Hold again with class two, then an announcement that ends in live.
    r.ctl.ok(json!({"cmd": "hold", "leg": "a", "class": "two"}));
    let held2_at = wall_secs();
    std::thread::sleep(PHASE);
    let play_at = wall_secs();
    r.ctl
        .ok(json!({"cmd": "play", "leg": "a", "announcement": "beep", "then": "live"}));
    let (done, mut events) = r
        .events
        .wait_event(Duration::from_secs(5), is_playback_done);
    let done = done.unwrap_or_else(|| {
        panic!(
            "no playback_done within 5 s of play; stderr:\n{}",
            r.engine.stderr()
        )
    });
    assert_eq!(
        (&done["call"], &done["leg"], &done["announcement"]),
        (&json!("c"), &json!("a"), &json!("beep")),
        "playback_done: {done}"
    );
    std::thread::sleep(PHASE);
    let state_after = r.ctl.leg_info("c", "a")["state"].clone();

    let sent_a = pacer_a.finish();
    pacer_b.finish();
    std::thread::sleep(Duration::from_millis(60));
    let (got_a, got_b) = (rec_a.finish(), rec_b.finish());

    // What A heard.
    let stream = analyse(&got_a, TAG_B, true, true);
    assert_stream(
        "phone A",
        &stream,
        &[
            Src::Live,
            Src::One,
            Src::Live,
            Src::Two,
            Src::Beep,
            Src::Live,
        ],
        &r.engine,
    );
    let music = stream
        .segments
        .iter()
        .filter(|s| s.src.is_media())
        .map(|s| s.len)
        .collect::<Vec<_>>();
    eprintln!(
        "[{}] phone A: {} packets, media packets per segment {music:?}, leg a ends {state_after}\n{}",
        backend.as_str(),
        stream.packets.len(),
        stream.describe()
    );

    // While held, A's audio reached no one and was counted.
    let sent_while_held = sent_a
        .iter()
        .filter(|(_, at)| *at > held_at && *at < counted_until)
        .count() as u64;
    let dropped = dropped_after - dropped_before;
    assert!(
        dropped >= sent_while_held + 6,
        "dropped_held of A grew by {dropped}, but A sent {sent_while_held} audio packets and 6 \
         key-press packets while held"
    );
    let heard_by_b: Vec<(u16, f64)> = got_b
        .iter()
        .filter_map(|s| parse_rtp(&s.data).map(|p| (p.seq, s.at)))
        .collect();
    // A packet relayed just before the hold may still be on its way when the
    // reply arrives (io_uring submits sends at the next turn): 5 ms of grace.
    let held = |at: f64| {
        (at > held_at + 0.005 && at < unhold_at) || (at > held2_at + 0.005 && at < play_at)
    };
    let leaked: Vec<_> = heard_by_b.iter().filter(|(_, at)| held(*at)).collect();
    assert!(
        leaked.is_empty(),
        "phone B heard {} packet(s) while A was on hold (peer_hears defaults to nothing)",
        leaked.len(),
    );
    let b_stream = analyse(&got_b, TAG_A, true, true);
    assert_stream("phone B", &b_stream, &[Src::Live], &r.engine);
    let b_bursts = bursts(&b_stream);
    assert!(
        b_bursts.len() >= 2,
        "phone B should hear A before the first hold and between the holds: {b_bursts:?}"
    );
    assert_bursts_marked("phone B", &b_stream, &b_bursts);

    // The key press became exactly one dtmf event.
    std::thread::sleep(Duration::from_millis(100));
    while let Some(ev) = r.events.next_event(Duration::from_millis(50)) {
        events.push(ev);
    }
    let dtmf: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == json!("dtmf"))
        .collect();
    assert_eq!(
        dtmf.len(),
        1,
        "expected one dtmf event for one key press, got {dtmf:?}"
    );
    let ev = dtmf[0];
    assert_eq!(
        (&ev["call"], &ev["leg"], &ev["digit"]),
        (&json!("c"), &json!("a"), &json!("5")),
        "dtmf event: {ev}"
    );
    assert_eq!(ev["duration_ms"], json!(100), "800 units at 8 kHz: {ev}");
}

fn peer_of_held_leg_hears_silence_frames(backend: Backend) {
    let mut r = rig(backend, json!({}));
    let (rec_a, rec_b) = (r.a.rtp.record(), r.b.rtp.record());
    let pacer_a = r.a.rtp.pace(r.a_port, StreamSpec::pcmu(0x0a0a_0003, TAG_A));
    let pacer_b = r.b.rtp.pace(r.b_port, StreamSpec::pcmu(0x0b0b_0004, TAG_B));
    std::thread::sleep(PHASE);
    r.ctl
        .ok(json!({"cmd": "hold", "leg": "a", "class": "one", "peer_hears": "silence"}));
    std::thread::sleep(PHASE);
    r.ctl.ok(json!({"cmd": "unhold", "leg": "a"}));
    std::thread::sleep(PHASE);
    pacer_a.finish();
    pacer_b.finish();
    std::thread::sleep(Duration::from_millis(60));
    let (got_a, got_b) = (rec_a.finish(), rec_b.finish());

    let b_stream = analyse(&got_b, TAG_A, true, true);
    assert_stream(
        "phone B (peer of the held phone)",
        &b_stream,
        &[Src::Live, Src::Silence, Src::Live],
        &r.engine,
    );
    let silence = &b_stream.segments[1];
    for (p, _, _) in &b_stream.packets[silence.start..silence.start + silence.len] {
        assert_eq!(
            (p.pt, p.payload.len()),
            (0, 160),
            "silence frames are 20 ms of PCMU"
        );
    }
    let a_stream = analyse(&got_a, TAG_B, true, true);
    assert_stream(
        "phone A",
        &a_stream,
        &[Src::Live, Src::One, Src::Live],
        &r.engine,
    );
}

fn ssrc_per_source_starts_a_new_ssrc_at_each_switch(backend: Backend) {
    let mut r = rig(backend, json!({"ssrc_per_source": true}));
    let rec_a = r.a.rtp.record();
    let pacer_a = r.a.rtp.pace(r.a_port, StreamSpec::pcmu(0x0a0a_0005, TAG_A));
    let pacer_b = r.b.rtp.pace(r.b_port, StreamSpec::pcmu(0x0b0b_0006, TAG_B));
    std::thread::sleep(PHASE);
    r.ctl.ok(json!({"cmd": "hold", "leg": "a", "class": "one"}));
    std::thread::sleep(PHASE);
    r.ctl.ok(json!({"cmd": "unhold", "leg": "a"}));
    std::thread::sleep(PHASE);
    r.ctl
        .ok(json!({"cmd": "play", "leg": "a", "announcement": "beep", "then": "live"}));
    let (done, _) = r
        .events
        .wait_event(Duration::from_secs(5), is_playback_done);
    assert!(done.is_some(), "no playback_done within 5 s of play");
    std::thread::sleep(PHASE);
    pacer_a.finish();
    pacer_b.finish();
    std::thread::sleep(Duration::from_millis(60));
    let got_a = rec_a.finish();

    let stream = analyse(&got_a, TAG_B, false, false);
    assert_stream(
        "phone A (ssrc_per_source)",
        &stream,
        &[Src::Live, Src::One, Src::Live, Src::Beep, Src::Live],
        &r.engine,
    );
    let mut ssrcs: Vec<u32> = stream.segments.iter().map(|s| s.ssrcs[0]).collect();
    ssrcs.sort_unstable();
    ssrcs.dedup();
    assert_eq!(
        ssrcs.len(),
        stream.segments.len(),
        "each source should have an SSRC of its own:\n{}",
        stream.describe()
    );
}

/// `play … then: "live"` on a held leg ends in a live call: the leg hears its
/// peer, and its peer hears it again (not one-way audio).
fn announcement_then_live_makes_a_held_call_live_both_ways(backend: Backend) {
    let mut r = rig(backend, json!({}));
    let rec_b = r.b.rtp.record();
    let pacer_a = r.a.rtp.pace(r.a_port, StreamSpec::pcmu(0x0a0a_0007, TAG_A));
    let pacer_b = r.b.rtp.pace(r.b_port, StreamSpec::pcmu(0x0b0b_0008, TAG_B));
    std::thread::sleep(PHASE);
    r.ctl.ok(json!({"cmd": "hold", "leg": "a", "class": "one"}));
    std::thread::sleep(PHASE);
    r.ctl
        .ok(json!({"cmd": "play", "leg": "a", "announcement": "beep", "then": "live"}));
    let (done, _) = r
        .events
        .wait_event(Duration::from_secs(5), is_playback_done);
    assert!(done.is_some(), "no playback_done within 5 s of play");
    let done_at = wall_secs();
    let dropped_at_done = r.ctl.counter("c", "a", "dropped_held");
    std::thread::sleep(PHASE);
    let state = r.ctl.leg_info("c", "a")["state"].clone();
    let dropped_later = r.ctl.counter("c", "a", "dropped_held");
    pacer_a.finish();
    pacer_b.finish();
    std::thread::sleep(Duration::from_millis(60));
    let got_b = rec_b.finish();

    let after = got_b.iter().filter(|s| s.at > done_at).count();
    assert!(
        state == json!("live") && after >= 10 && dropped_later == dropped_at_done,
        "after the announcement ended with then=live, leg a is {state}, phone B heard {after} \
         packet(s) from A in the following {PHASE:?}, and A's dropped_held grew from \
         {dropped_at_done} to {dropped_later}: expected state live, A's audio relayed to B \
         again, nothing more dropped"
    );
    let b_stream = analyse(&got_b, TAG_A, true, true);
    assert_stream("phone B", &b_stream, &[Src::Live], &r.engine);
    let b_bursts = bursts(&b_stream);
    assert_eq!(
        b_bursts.len(),
        2,
        "B hears A before the hold and after the announcement"
    );
    assert_bursts_marked("phone B", &b_stream, &b_bursts);
}
