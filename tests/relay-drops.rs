//! What a real rtpark process refuses to relay, and how it counts it: malformed
//! datagrams, foreign sources after latching (dropped by the kernel on a
//! `connect()`ed socket by default, by rtpark and counted with
//! `connect_latched = false`), packets with no route, and re-latching after
//! `update_leg`. Every scenario runs on both packet backends.
//!
//! Where possible "not relayed" is shown by order rather than by waiting: a
//! dropped datagram sent between two valid ones would otherwise arrive between
//! them, since loopback delivery keeps the order of one socket's queue.

#[macro_use]
mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

const SSRC_A: u32 = 0xaaaa_0001;
const SSRC_B: u32 = 0xbbbb_0002;
const SSRC_INTRUDER: u32 = 0x0bad_0bad;
/// How long a "nothing arrives" check waits, when order cannot show it.
const QUIET: Duration = Duration::from_millis(150);
/// The re-latch window configured for the re-latch scenarios.
const WINDOW_MS: u64 = 300;

backend_tests!(
    malformed_rtp_is_dropped_and_counted,
    malformed_rtcp_is_dropped_and_counted,
    foreign_source_not_relayed_when_connected,
    foreign_source_dropped_and_counted_when_not_connected,
    same_ssrc_from_new_address_relatches_when_not_connected,
    unbridged_leg_counts_no_route,
    update_leg_opens_relatch_window,
    update_leg_opens_relatch_window_not_connected,
);

fn pcmu(seq: u16, ssrc: u32) -> Vec<u8> {
    rtp(
        seq,
        u32::from(seq) * 160,
        ssrc,
        0,
        &payload(u32::from(seq) ^ ssrc, 160),
    )
}

/// A bridged call `call` with legs `a`/`b` on `engine`; both phones have spoken
/// once, so both legs are latched (and, by default, connected).
struct Call {
    ctl: Control,
    call: &'static str,
    pa: Phone,
    pb: Phone,
    port_a: u16,
    port_b: u16,
    rtcp_a: u16,
    seq: u16,
}

impl Call {
    fn new(engine: &Engine, call: &'static str) -> Call {
        let mut ctl = engine.control();
        let (pa, pb) = (Phone::new(), Phone::new());
        let leg_a = ctl.create_leg(call, "a", pa.addr());
        let leg_b = ctl.create_leg(call, "b", pb.addr());
        ctl.bridge("a", "b");
        let mut c = Call {
            ctl,
            call,
            pa,
            pb,
            port_a: rtp_port(&leg_a),
            port_b: rtp_port(&leg_b),
            rtcp_a: rtcp_port(&leg_a),
            seq: 0,
        };
        c.a_to_b();
        c.b_to_a();
        c
    }

    /// Phone A sends one valid packet; asserts phone B gets exactly it next.
    fn a_to_b(&mut self) {
        self.seq += 1;
        let p = pcmu(self.seq, SSRC_A);
        self.pa.rtp.send_to_port(&p, self.port_a);
        assert_eq!(
            self.pb.rtp.recv().0,
            p,
            "A→B packet {} was not relayed as sent",
            self.seq
        );
    }

    /// Phone B sends one valid packet; asserts phone A gets exactly it next.
    fn b_to_a(&mut self) {
        self.seq += 1;
        let p = pcmu(self.seq, SSRC_B);
        self.pb.rtp.send_to_port(&p, self.port_b);
        assert_eq!(
            self.pa.rtp.recv().0,
            p,
            "B→A packet {} was not relayed as sent",
            self.seq
        );
    }

    fn counters(&mut self, leg: &str) -> serde_json::Value {
        self.ctl.leg_info(self.call, leg)["counters"].clone()
    }
}

fn malformed_rtp_is_dropped_and_counted(backend: Backend) {
    let engine = Engine::on(backend);
    let mut c = Call::new(&engine, "malformed");
    let mut truncated_csrc = pcmu(99, SSRC_A)[..12].to_vec();
    truncated_csrc[0] = 0x80 | 3; // claims 3 CSRCs, carries none
    truncated_csrc.extend_from_slice(&[0, 0, 0, 1]);
    let mut truncated_ext = pcmu(99, SSRC_A)[..12].to_vec();
    truncated_ext[0] = 0x90; // X bit: a 10-word extension follows, only one word does
    truncated_ext.extend_from_slice(&[0xbe, 0xde, 0, 10, 1, 2, 3, 4]);
    let mut version0 = pcmu(99, SSRC_A);
    version0[0] &= 0x3f;
    let mut version1 = pcmu(99, SSRC_A);
    version1[0] = (version1[0] & 0x3f) | 0x40;
    let mut zero_padding = pcmu(99, SSRC_A);
    zero_padding[0] |= 0x20; // P bit with a padding count of 0
    *zero_padding.last_mut().unwrap() = 0;
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one byte", vec![0x80]),
        ("11 bytes", pcmu(99, SSRC_A)[..11].to_vec()),
        ("version 0", version0),
        ("version 1", version1),
        ("truncated CSRC list", truncated_csrc),
        ("truncated extension", truncated_ext),
        ("zero padding count", zero_padding),
    ];
    for (what, bad) in &malformed {
        c.a_to_b();
        c.pa.rtp.send_to_port(bad, c.port_a);
        // The next datagram at B is the next valid packet, not the malformed one.
        c.a_to_b();
        let counters = c.counters("a");
        assert!(
            counters["dropped_malformed"].as_u64().unwrap() >= 1,
            "{what}: not counted as malformed: {counters}"
        );
    }
    let counters = c.counters("a");
    assert_eq!(
        counters["dropped_malformed"],
        json!(malformed.len()),
        "{counters}"
    );
    assert_eq!(counters["dropped_foreign"], json!(0), "{counters}");
    // One latching packet plus two valid packets around each malformed one.
    assert_eq!(
        counters["rtp_in"],
        json!(1 + 2 * malformed.len()),
        "{counters}"
    );
    assert_eq!(c.counters("b")["rtp_out"], json!(1 + 2 * malformed.len()));
    // Media still flows the other way.
    c.b_to_a();
}

fn malformed_rtcp_is_dropped_and_counted(backend: Backend) {
    let engine = Engine::on(backend);
    let mut c = Call::new(&engine, "malformed-rtcp");
    let good = |n: u32| rtcp_sr(SSRC_A, u64::from(n), n, n, n);
    let mut length_too_long = good(9);
    length_too_long[3] = 40; // 41 words claimed, 7 present
    let mut not_rtcp_type = good(9);
    not_rtcp_type[1] = 0; // packet type 0
    let mut version0 = good(9);
    version0[0] &= 0x3f;
    let malformed = [vec![0x80, 200, 0], length_too_long, not_rtcp_type, version0];
    let mut sent = 0;
    for bad in &malformed {
        for report in [good(sent), good(sent + 1)] {
            sent += 1;
            c.pa.rtcp.send_to_port(&report, c.rtcp_a);
            if sent % 2 == 1 {
                c.pa.rtcp.send_to_port(bad, c.rtcp_a);
            }
        }
        for n in sent - 2..sent {
            assert_eq!(
                c.pb.rtcp.recv().0,
                good(n),
                "report {n} should follow the previous one"
            );
        }
    }
    let counters = c.counters("a");
    assert_eq!(
        counters["dropped_malformed"],
        json!(malformed.len()),
        "{counters}"
    );
    assert_eq!(counters["rtcp_in"], json!(sent), "{counters}");
    assert_eq!(c.counters("b")["rtcp_out"], json!(sent));
}

/// A third party sends to A's port after A latched: with the default
/// `connect_latched = true` the kernel drops it, so rtpark never even counts it.
fn foreign_source_not_relayed_when_connected(backend: Backend) {
    let engine = Engine::on(backend);
    let mut c = Call::new(&engine, "foreign");
    let intruder = Endpoint::new();
    for seq in 500..505 {
        intruder.send_to_port(&pcmu(seq, SSRC_INTRUDER), c.port_a);
        // B hears the next packet from A, not the intruder's.
        c.a_to_b();
    }
    // B's media still goes to A, not to the intruder.
    c.b_to_a();
    intruder.expect_silence(QUIET);
    let info = c.ctl.leg_info("foreign", "a");
    assert_eq!(info["latched"], json!(c.pa.addr().to_string()), "{info}");
    assert_eq!(info["ssrc"], json!(SSRC_A), "{info}");
    assert_eq!(info["counters"]["rtp_in"], json!(6), "{info}");
    // The connected socket filtered it in the kernel: nothing reached rtpark.
    assert_eq!(info["counters"]["dropped_foreign"], json!(0), "{info}");
}

/// Same as above with `connect_latched = false`: rtpark sees the foreign packets,
/// drops them and counts them.
fn foreign_source_dropped_and_counted_when_not_connected(backend: Backend) {
    let engine = Engine::start(EngineOptions::new(backend).config("connect_latched = false"));
    let mut c = Call::new(&engine, "foreign");
    let intruder = Endpoint::new();
    for seq in 500..505 {
        intruder.send_to_port(&pcmu(seq, SSRC_INTRUDER), c.port_a);
        c.a_to_b();
    }
    // Once RTCP has latched, RTCP from another host is foreign too (RTCP from the
    // RTP host's other ports is accepted, so this intruder sits on 127.0.0.2).
    let sr = rtcp_sr(SSRC_A, 1, 2, 3, 4);
    c.pa.rtcp.send_to_port(&sr, c.rtcp_a);
    assert_eq!(c.pb.rtcp.recv().0, sr);
    let other_host = Endpoint::on_ip([127, 0, 0, 2]);
    other_host.send_to_port(&rtcp_sr(SSRC_INTRUDER, 9, 9, 9, 9), c.rtcp_a);
    let sr = rtcp_sr(SSRC_A, 5, 6, 7, 8);
    c.pa.rtcp.send_to_port(&sr, c.rtcp_a);
    assert_eq!(
        c.pb.rtcp.recv().0,
        sr,
        "the other host's RTCP must not be relayed"
    );
    c.b_to_a();
    intruder.expect_silence(QUIET);
    let info = c.ctl.leg_info("foreign", "a");
    assert_eq!(info["latched"], json!(c.pa.addr().to_string()), "{info}");
    assert_eq!(info["counters"]["dropped_foreign"], json!(6), "{info}");
    assert_eq!(info["counters"]["rtcp_in"], json!(2), "{info}");
    assert_eq!(info["counters"]["rtp_in"], json!(6), "{info}");
    assert_eq!(c.counters("b")["dropped_foreign"], json!(0));
}

/// NAT rebinding: the latched stream's SSRC from a new address moves the latch
/// (possible only when rtpark sees other sources, i.e. without connect()).
fn same_ssrc_from_new_address_relatches_when_not_connected(backend: Backend) {
    let engine = Engine::start(EngineOptions::new(backend).config("connect_latched = false"));
    let mut c = Call::new(&engine, "rebind");
    let rebound = Endpoint::new();
    let p = pcmu(700, SSRC_A);
    rebound.send_to_port(&p, c.port_a);
    assert_eq!(
        c.pb.rtp.recv().0,
        p,
        "same SSRC from a new address is relayed"
    );
    let info = c.ctl.leg_info("rebind", "a");
    assert_eq!(info["latched"], json!(rebound.addr().to_string()), "{info}");
    // B's media now goes to the new address.
    let back = pcmu(701, SSRC_B);
    c.pb.rtp.send_to_port(&back, c.port_b);
    assert_eq!(rebound.recv().0, back);
    c.pa.rtp.expect_silence(QUIET);
    assert_eq!(info["counters"]["dropped_foreign"], json!(0), "{info}");
}

fn unbridged_leg_counts_no_route(backend: Backend) {
    let engine = Engine::on(backend);
    let mut ctl = engine.control();
    let lonely = Phone::new();
    let leg = ctl.create_leg("alone", "solo", lonely.addr());
    for seq in 1..=3 {
        lonely.rtp.send_to_port(&pcmu(seq, SSRC_A), rtp_port(&leg));
    }
    lonely
        .rtcp
        .send_to_port(&rtcp_sr(SSRC_A, 1, 2, 3, 4), rtcp_port(&leg));
    // Wait (bounded) until the engine has seen all four.
    let mut counters = json!(null);
    for _ in 0..200 {
        counters = ctl.leg_info("alone", "solo")["counters"].clone();
        if counters["dropped_no_route"].as_u64() == Some(4) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(counters["dropped_no_route"], json!(4), "{counters}");
    assert_eq!(counters["rtp_in"], json!(3), "{counters}");
    assert_eq!(counters["rtcp_in"], json!(1), "{counters}");
    assert_eq!(counters["rtp_out"], json!(0), "{counters}");
    assert_eq!(ctl.leg_info("alone", "solo")["state"], json!("idle"));

    // A bridge, then unbridge: packets stop flowing and count as no route again.
    let mut c = Call::new(&engine, "was-bridged");
    c.ctl.ok(json!({"cmd": "unbridge", "leg": "a"}));
    for leg in ["a", "b"] {
        let info = c.ctl.leg_info("was-bridged", leg);
        assert_eq!(info["peer"], json!(null), "{info}");
        assert_eq!(info["state"], json!("idle"), "{info}");
    }
    c.pa.rtp.send_to_port(&pcmu(50, SSRC_A), c.port_a);
    c.pb.rtp.send_to_port(&pcmu(51, SSRC_B), c.port_b);
    c.pb.rtp.expect_silence(QUIET);
    c.pa.rtp.expect_silence(Duration::from_millis(1));
    assert_eq!(c.counters("a")["dropped_no_route"], json!(1));
    assert_eq!(c.counters("b")["dropped_no_route"], json!(1));
}

/// After `update_leg` with a new remote, a new source may take over the latch
/// within `relatch_window_ms`; once the window has closed the old source is
/// foreign (not relayed; counted when rtpark sees it).
fn relatch_scenario(backend: Backend, connect_latched: bool) {
    let engine = Engine::start(
        EngineOptions::new(backend)
            .config(&format!("relatch_window_ms = {WINDOW_MS}"))
            .config(&format!("connect_latched = {connect_latched}")),
    );
    let mut c = Call::new(&engine, "moved");
    let moved = Phone::new();

    // Before any update the new address is just another foreign source.
    moved.rtp.send_to_port(&pcmu(100, 0x5eed_0001), c.port_a);
    c.a_to_b();

    // Re-INVITE: A moved. The new address speaks inside the window and takes over.
    c.ctl
        .ok(json!({"cmd": "update_leg", "leg": "a", "remote": moved.addr().to_string()}));
    let p = pcmu(101, 0x5eed_0001);
    moved.rtp.send_to_port(&p, c.port_a);
    assert_eq!(
        c.pb.rtp.recv().0,
        p,
        "the new source is relayed within the window"
    );
    let info = c.ctl.leg_info("moved", "a");
    assert_eq!(info["latched"], json!(moved.addr().to_string()), "{info}");
    assert_eq!(info["remote"], json!(moved.addr().to_string()), "{info}");
    assert_eq!(info["ssrc"], json!(0x5eed_0001u32), "{info}");
    let back = pcmu(102, SSRC_B);
    c.pb.rtp.send_to_port(&back, c.port_b);
    assert_eq!(moved.rtp.recv().0, back, "B's media follows the new latch");

    // Let the window close (and a sweep, every 500 ms, reconnect the socket), then
    // the old address is foreign.
    std::thread::sleep(Duration::from_millis(WINDOW_MS + 1000));
    let foreign_before = c.counters("a")["dropped_foreign"].as_u64().unwrap();
    c.pa.rtp.send_to_port(&pcmu(103, SSRC_A), c.port_a);
    let p = pcmu(104, 0x5eed_0001);
    moved.rtp.send_to_port(&p, c.port_a);
    assert_eq!(
        c.pb.rtp.recv().0,
        p,
        "only the new source is relayed after the window"
    );
    let back = pcmu(105, SSRC_B);
    c.pb.rtp.send_to_port(&back, c.port_b);
    assert_eq!(moved.rtp.recv().0, back);
    c.pa.rtp.expect_silence(QUIET);
    let info = c.ctl.leg_info("moved", "a");
    assert_eq!(info["latched"], json!(moved.addr().to_string()), "{info}");
    let foreign = info["counters"]["dropped_foreign"].as_u64().unwrap();
    if connect_latched {
        // The socket is connected to the new source again: the kernel drops the old one.
        assert_eq!(foreign, foreign_before, "{info}");
    } else {
        assert_eq!(foreign, foreign_before + 1, "{info}");
        // The pre-update probe from the new address was counted too.
        assert_eq!(foreign_before, 1, "{info}");
    }
}

fn update_leg_opens_relatch_window(backend: Backend) {
    relatch_scenario(backend, true);
}

fn update_leg_opens_relatch_window_not_connected(backend: Backend) {
    relatch_scenario(backend, false);
}
