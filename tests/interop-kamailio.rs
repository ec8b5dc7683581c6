//! A stock Kamailio 5.6 drives rtpark: with its `rtpproxy` module over the
//! rtpproxy protocol, and with its `rtpengine` module over the "ng" protocol,
//! each from the configs in examples/kamailio, with sipp as caller and callee.
//!
//! * `*_hold_resume`: sipp calls through Kamailio (examples/sipp/uac-hold.xml:
//!   real PCMU, a 1000 Hz tone), talks, holds the callee with a `sendonly`
//!   re-INVITE (Kamailio asks rtpark for music: `P` / `play media`), resumes
//!   with `sendrecv` (`S` / `stop media`), hangs up (`D` / `delete`). The
//!   callee is sipp for the signalling (tests/interop/uas-test-media.xml) but
//!   its SDP names a UDP socket of the test, which records what rtpark sends
//!   and sends the callee's RTP back to the port it comes from. The callee must
//!   hear the caller, then rtpark's 600 Hz music, then the caller again — one
//!   RTP stream from rtpark's port: one SSRC, no sequence gap, the marker bit
//!   at each switch — and rtpark's counters must show RTP both ways on both
//!   legs, and after the resume the caller hears the callee again. After the
//!   BYE the call is gone and every port pair is free again.
//! * `*_sipp_calls`: examples/sipp/uac.xml and uas.xml, sipp's own RTP both
//!   ways, several calls with two at a time: every call reaches rtpark with
//!   media both ways on both legs, and all of it is released afterwards.
//!
//! Which source a packet came from is read from its audio (the caller's tone
//! or the music's), not from the header fields under test. No assertion is
//! about speed: phases are seconds long and every wait has a generous limit.
//!
//! Needs `kamailio` and `sipp` (Debian: kamailio, sip-tester); a missing one
//! fails the test with how to install it. tests/interop/mod.rs has the harness.

mod interop;
mod support;

use interop::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::{Endpoint, StreamSpec};

/// Length of each phase of uac-hold.xml (talk, hold, resumed) in ms (`-d`).
const PHASE_MS: u64 = 4000;
/// Packets each of caller, music, caller must last at the callee (1 s of 20 ms
/// frames; a phase has 200).
const MIN_RUN: usize = 50;
/// Longest silence the callee may hear during the call, in seconds.
const MAX_GAP_SECS: f64 = 1.5;
/// Generous limit for anything that takes a phase or so.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn rtpproxy_hold_resume() {
    hold_resume(Protocol::Rtpproxy);
}

#[test]
fn ng_hold_resume() {
    hold_resume(Protocol::Ng);
}

#[test]
fn rtpproxy_sipp_calls() {
    sipp_calls(Protocol::Rtpproxy);
}

#[test]
fn ng_sipp_calls() {
    sipp_calls(Protocol::Ng);
}

fn hold_resume(protocol: Protocol) {
    let mut scene = Scene::start(protocol);
    let mut ctl = scene.native();
    let free_before = free_port_pairs(&mut ctl);

    // The callee's media: a socket of the test.
    let callee = Endpoint::new();
    let recorder = callee.record();
    let uas = repo().join("tests/interop/uas-test-media.xml");
    let uas_port = scene.ports.uas;
    scene.sipp(
        "uas",
        &uas,
        uas_port,
        &[
            "-m".into(),
            "1".into(),
            "-key".into(),
            "callee_rtp".into(),
            callee.addr().port().to_string(),
        ],
    );
    let uac = repo().join("examples/sipp/uac-hold.xml");
    let (uac_port, uac_media, kam) = (scene.ports.uac, scene.ports.uac_media, scene.ports.kamailio);
    scene.sipp(
        "uac",
        &uac,
        uac_port,
        &[
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            uac_media.to_string(),
            "-m".into(),
            "1".into(),
            "-d".into(),
            PHASE_MS.to_string(),
            "-s".into(),
            "callee".into(),
            format!("127.0.0.1:{kam}"),
        ],
    );

    // The callee's leg: the one whose signalled address is the callee's socket.
    let deadline = Instant::now() + PATIENCE;
    let (call, leg) = loop {
        if let Some(found) = find_leg(&list_calls(&mut ctl), callee.addr()) {
            break found;
        }
        scene.check_not_failed("uac");
        assert!(
            Instant::now() < deadline,
            "no leg towards the callee {} in rtpark's list_calls within {PATIENCE:?}",
            callee.addr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let call_name = call["call"].clone();
    let rtpark_port = leg["rtp_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("callee leg without rtp_port: {leg}"));
    assert_eq!(
        call["legs"].as_array().map(Vec::len),
        Some(2),
        "the call should have two legs: {call:#}"
    );
    // The callee talks back from the socket rtpark sends to (symmetric RTP).
    let pacer = callee.pace(rtpark_port, StreamSpec::pcmu(0x0ca1_1ee5, *b"CLEE"));

    // Media both ways on both legs, then music, then the caller again.
    let deadline = Instant::now() + Duration::from_millis(3 * PHASE_MS) + PATIENCE;
    let mut both_ways: Option<Value> = None;
    let mut state_on_hold: Option<Value> = None;
    let mut state_resumed: Option<Value> = None;
    let mut caller_out_at_resume = 0;
    loop {
        let calls = list_calls(&mut ctl);
        let this = calls.iter().find(|c| c["call"] == call_name);
        let leg_where = |callee_side: bool| {
            this.and_then(|c| {
                c["legs"].as_array().and_then(|legs| {
                    legs.iter()
                        .find(|l| (l["rtp_port"] == leg["rtp_port"]) == callee_side)
                })
            })
        };
        let (this_callee_leg, this_caller_leg) = (leg_where(true), leg_where(false));
        let caller_out = this_caller_leg.map_or(0, |l| counter(l, "rtp_out"));
        if both_ways.is_none() {
            if let Some(c) = this.filter(|c| media_both_ways(c)) {
                both_ways = Some(c.clone());
            }
        }
        let packets = rtp_packets(&recorder.snapshot());
        let heard: Vec<Heard> = packets.iter().map(heard).collect();
        let runs = runs(&heard);
        let shape: Vec<Heard> = runs.iter().map(|r| r.0).collect();
        let last = runs.last().map_or(0, |r| r.3);
        if shape == [Heard::Caller, Heard::Music] && last >= 10 && state_on_hold.is_none() {
            state_on_hold = this_callee_leg.map(|l| l["state"].clone());
        }
        if shape == [Heard::Caller, Heard::Music, Heard::Caller] && last >= 10 {
            if state_resumed.is_none() {
                state_resumed = this_callee_leg.map(|l| l["state"].clone());
                caller_out_at_resume = caller_out;
            }
            // Resumed both ways: the caller hears the callee again too.
            if last >= MIN_RUN && both_ways.is_some() && caller_out > caller_out_at_resume {
                break;
            }
        }
        if let Some(status) = scene.exited("uac") {
            panic!(
                "the caller finished ({status}) before the callee heard caller, music, caller \
                 (heard so far: {runs:?}); rtpark's view: {calls:#?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "within {:?} the callee heard {runs:?} (want caller, music, caller ≥ {MIN_RUN} \
             each); media both ways on both legs: {}; caller's rtp_out {caller_out} \
             ({caller_out_at_resume} at the resume); rtpark's view: {calls:#?}",
            Duration::from_millis(3 * PHASE_MS) + PATIENCE,
            both_ways.is_some()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    scene.expect_success("uac", Duration::from_millis(2 * PHASE_MS) + PATIENCE);
    scene.expect_success("uas", PATIENCE);
    drop(pacer.finish());
    wait_no_calls(&mut ctl, PATIENCE);
    wait_free_pairs(&mut ctl, free_before, PATIENCE);
    let got = recorder.finish();

    // Everything came from rtpark's port of the callee's leg.
    let foreign: Vec<_> = got
        .iter()
        .filter(|s| s.from.port() != rtpark_port || !s.from.ip().is_loopback())
        .map(|s| s.from)
        .collect();
    assert!(
        foreign.is_empty(),
        "the callee got {} of {} packets from elsewhere than rtpark's port {rtpark_port}: {:?}",
        foreign.len(),
        got.len(),
        &foreign[..foreign.len().min(10)]
    );
    let packets = rtp_packets(&got);
    let heard_runs = runs(&packets.iter().map(heard).collect::<Vec<_>>());
    eprintln!(
        "{protocol:?}: the callee got {} packets from rtpark's port {rtpark_port}: {heard_runs:?} \
         (who, first, last, count); callee leg on hold: {state_on_hold:?}, resumed: {state_resumed:?}",
        packets.len()
    );
    let mut problems = hold_stream_problems(&packets, MIN_RUN);
    // Something every 20 ms the whole call: the music lasts the whole hold (a
    // file played once and then silence leaves a hole). The limit is 75 times
    // the packet interval, so a busy machine does not trip it.
    if let Some((i, gap)) = got
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        if gap > MAX_GAP_SECS {
            problems.push(format!(
                "nothing arrived for {gap:.2} s between packets {i} and {} ({:?} then {:?})",
                i + 1,
                heard(&packets[i]),
                heard(&packets[i + 1])
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the stream the callee heard across live → music → live is not one clean stream:\n  {}",
        problems.join("\n  ")
    );
    let on_hold = state_on_hold.unwrap_or(Value::Null);
    assert!(
        on_hold == "held" || on_hold == "playing",
        "while it heard music the callee's leg was {on_hold} (want held or playing)"
    );
    let resumed = state_resumed.unwrap_or(Value::Null);
    assert_eq!(
        resumed, "live",
        "after the resume the callee's leg was {resumed}"
    );
    let both_ways = both_ways.expect("checked in the loop");
    assert!(media_both_ways(&both_ways), "{both_ways:#}");
}

fn sipp_calls(protocol: Protocol) {
    const CALLS: usize = 4;
    let mut scene = Scene::start(protocol);
    let mut ctl = scene.native();
    let free_before = free_port_pairs(&mut ctl);
    let (uas_port, uas_media) = (scene.ports.uas, scene.ports.uas_media);
    scene.sipp(
        "uas",
        &repo().join("examples/sipp/uas.xml"),
        uas_port,
        &[
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            uas_media.to_string(),
            "-m".into(),
            CALLS.to_string(),
        ],
    );
    let (uac_port, uac_media, kam) = (scene.ports.uac, scene.ports.uac_media, scene.ports.kamailio);
    scene.sipp(
        "uac",
        &repo().join("examples/sipp/uac.xml"),
        uac_port,
        &[
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            uac_media.to_string(),
            "-m".into(),
            CALLS.to_string(),
            "-l".into(),
            "2".into(),
            "-r".into(),
            "2".into(),
            "-d".into(),
            "3000".into(),
            "-s".into(),
            "callee".into(),
            format!("127.0.0.1:{kam}"),
        ],
    );

    // Watch the calls come and go: each must show media both ways on both legs.
    let mut seen: Vec<(Value, bool)> = Vec::new();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(60) + PATIENCE;
    while scene.exited("uac").is_none() {
        let calls = list_calls(&mut ctl);
        most = most.max(calls.len());
        for c in &calls {
            let ok = media_both_ways(c);
            match seen.iter_mut().find(|(name, _)| *name == c["call"]) {
                Some(entry) => entry.1 |= ok,
                None => seen.push((c["call"].clone(), ok)),
            }
        }
        assert!(
            Instant::now() < deadline,
            "sipp's {CALLS} calls did not finish in time; rtpark's view: {calls:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    scene.expect_success("uac", PATIENCE);
    scene.expect_success("uas", PATIENCE);
    wait_no_calls(&mut ctl, PATIENCE);
    wait_free_pairs(&mut ctl, free_before, PATIENCE);

    assert_eq!(
        seen.len(),
        CALLS,
        "rtpark should have seen {CALLS} calls (at most {most} at a time): {seen:?}"
    );
    let silent: Vec<&Value> = seen.iter().filter(|(_, ok)| !ok).map(|(n, _)| n).collect();
    assert!(
        silent.is_empty(),
        "calls without RTP both ways on both legs: {silent:?}"
    );
}
