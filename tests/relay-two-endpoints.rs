//! Two phones talk through a real rtpark process: RTP both ways arrives
//! byte-identical and in order, RTCP follows on the odd ports (or on the RTP
//! port with rtcp-mux), and the leg counters add up. Every scenario runs on
//! both packet backends.

#[macro_use]
mod support;

use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

const PACKETS: usize = 200;
/// Packets in flight per direction at once: well inside default socket buffers.
const BATCH: usize = 25;

backend_tests!(
    rtp_both_ways_byte_identical,
    rtcp_relayed_between_odd_ports,
    rtcp_mux_on_both_legs,
    rtcp_mux_on_one_leg,
    calls_on_several_workers,
);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The `i`th packet of a stream: sequence, timestamp and payload advance; some
/// packets carry the marker, CSRCs, a header extension or padding, so the whole
/// header is checked, not only the fixed part.
fn nth_packet(i: usize, ssrc: u32, seq0: u16) -> Vec<u8> {
    let seq = seq0.wrapping_add(i as u16);
    let ts = (i as u32).wrapping_mul(160).wrapping_add(ssrc);
    let opts = RtpOpts {
        marker: i == 0,
        csrcs: if i % 10 == 3 {
            vec![0x1111_0000 | i as u32, 0x2222_0000]
        } else {
            Vec::new()
        },
        extension: (i % 7 == 5).then(|| (0xbede, vec![0x10, i as u8, 0, 0])),
        padding: if i % 11 == 4 { 4 } else { 0 },
    };
    // PCMU mostly, a telephone-event packet now and then.
    let (pt, len) = if i % 50 == 49 { (101, 4) } else { (0, 160) };
    rtp_with(seq, ts, ssrc, pt, &payload(i as u32 ^ ssrc, len), &opts)
}

/// Two bridged legs `a` and `b` of call `call`; returns (A's reply, B's reply).
fn bridged_call(
    ctl: &mut Control,
    call: &str,
    a: &Phone,
    b: &Phone,
    mux: bool,
) -> (serde_json::Value, serde_json::Value) {
    let leg_a = ctl.ok(json!({"cmd": "create_leg", "call": call, "leg": "a",
        "remote": a.addr().to_string(), "rtcp_mux": mux}));
    let leg_b = ctl.ok(json!({"cmd": "create_leg", "call": call, "leg": "b",
        "remote": b.addr().to_string(), "rtcp_mux": mux}));
    ctl.bridge("a", "b");
    (leg_a, leg_b)
}

fn rtp_both_ways_byte_identical(backend: Backend) {
    let engine = Engine::on(backend);
    let mut ctl = engine.control();
    let (pa, pb) = (Phone::new(), Phone::new());
    let (leg_a, leg_b) = bridged_call(&mut ctl, "two-way", &pa, &pb, false);
    let (port_a, port_b) = (rtp_port(&leg_a), rtp_port(&leg_b));

    let from_a: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| nth_packet(i, 0xaaaa_0001, 1000))
        .collect();
    let from_b: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| nth_packet(i, 0xbbbb_0002, 65500))
        .collect();
    for start in (0..PACKETS).step_by(BATCH) {
        let batch = start..(start + BATCH).min(PACKETS);
        for i in batch.clone() {
            pa.rtp.send_to_port(&from_a[i], port_a);
            pb.rtp.send_to_port(&from_b[i], port_b);
        }
        for i in batch {
            let (got, src) = pb.rtp.recv();
            assert_eq!(got, from_a[i], "A→B packet {i} differs");
            assert_eq!(
                src,
                local(port_b),
                "A→B packet {i} must come from B's RTP port"
            );
            let (got, src) = pa.rtp.recv();
            assert_eq!(got, from_b[i], "B→A packet {i} differs");
            assert_eq!(
                src,
                local(port_a),
                "B→A packet {i} must come from A's RTP port"
            );
        }
    }

    let bytes = |ps: &[Vec<u8>]| ps.iter().map(Vec::len).sum::<usize>() as u64;
    for (leg, phone, sent) in [("a", &pa, &from_a), ("b", &pb, &from_b)] {
        let info = ctl.leg_info("two-way", leg);
        let c = &info["counters"];
        assert_eq!(c["rtp_in"], json!(PACKETS), "leg {leg}: {info}");
        assert_eq!(c["rtp_in_bytes"], json!(bytes(sent)), "leg {leg}: {info}");
        assert_eq!(c["rtp_out"], json!(PACKETS), "leg {leg}: {info}");
        assert_eq!(c["rtcp_in"], json!(0), "leg {leg}: {info}");
        assert_eq!(c["rtcp_out"], json!(0), "leg {leg}: {info}");
        for drop in ["dropped_foreign", "dropped_malformed", "dropped_no_route"] {
            assert_eq!(c[drop], json!(0), "leg {leg} {drop}: {info}");
        }
        assert_eq!(
            info["latched"],
            json!(phone.addr().to_string()),
            "leg {leg}: {info}"
        );
        assert_eq!(info["state"], json!("live"), "leg {leg}: {info}");
    }
    assert_eq!(ctl.leg_info("two-way", "a")["ssrc"], json!(0xaaaa_0001u32));
    assert_eq!(ctl.leg_info("two-way", "b")["ssrc"], json!(0xbbbb_0002u32));

    let stats = ctl.ok(json!({"cmd": "stats"}));
    assert_eq!(stats["backend"], json!(backend.as_str()), "{stats}");
    assert_eq!(stats["totals"]["rtp_in"], json!(2 * PACKETS), "{stats}");
    assert_eq!(stats["totals"]["rtp_out"], json!(2 * PACKETS), "{stats}");
    assert_eq!(stats["send_errors"], json!(0), "{stats}");
}

fn rtcp_relayed_between_odd_ports(backend: Backend) {
    let engine = Engine::on(backend);
    let mut ctl = engine.control();
    let (pa, pb) = (Phone::new(), Phone::new());
    let (leg_a, leg_b) = bridged_call(&mut ctl, "rtcp", &pa, &pb, false);
    assert_eq!(rtcp_port(&leg_a), rtp_port(&leg_a) + 1);
    let (rtcp_a, rtcp_b) = (rtcp_port(&leg_a), rtcp_port(&leg_b));

    const REPORTS: u32 = 5;
    for n in 0..REPORTS {
        // A compound packet, as phones send them: SR then SDES CNAME.
        let mut from_a = rtcp_sr(
            0xaaaa_0001,
            0xe000_0000_0000_0000 + u64::from(n),
            160 * n,
            n,
            172 * n,
        );
        from_a.extend(rtcp_sdes_cname(0xaaaa_0001, "phone-a@example.test"));
        let from_b = rtcp_sr(
            0xbbbb_0002,
            0xe100_0000_0000_0000 + u64::from(n),
            320 * n,
            2 * n,
            99 * n,
        );
        pa.rtcp.send_to_port(&from_a, rtcp_a);
        pb.rtcp.send_to_port(&from_b, rtcp_b);
        // The peer's RTCP port is its RTP port + 1 (no remote_rtcp was signalled).
        let (got, src) = pb.rtcp.recv();
        assert_eq!(got, from_a, "A→B report {n} differs");
        assert_eq!(src, local(rtcp_b), "A→B RTCP must come from B's RTCP port");
        let (got, src) = pa.rtcp.recv();
        assert_eq!(got, from_b, "B→A report {n} differs");
        assert_eq!(src, local(rtcp_a), "B→A RTCP must come from A's RTCP port");
    }

    // Nothing leaked onto the RTP sockets: the next thing there is this RTP packet.
    let probe = rtp(1, 0, 0xaaaa_0001, 0, &payload(1, 160));
    pa.rtp.send_to_port(&probe, rtp_port(&leg_a));
    assert_eq!(pb.rtp.recv().0, probe);
    let probe = rtp(1, 0, 0xbbbb_0002, 0, &payload(2, 160));
    pb.rtp.send_to_port(&probe, rtp_port(&leg_b));
    assert_eq!(pa.rtp.recv().0, probe);

    for leg in ["a", "b"] {
        let info = ctl.leg_info("rtcp", leg);
        let c = &info["counters"];
        assert_eq!(c["rtcp_in"], json!(REPORTS), "leg {leg}: {info}");
        assert_eq!(c["rtcp_out"], json!(REPORTS), "leg {leg}: {info}");
        assert_eq!(c["rtp_in"], json!(1), "leg {leg}: {info}");
        assert_eq!(c["rtp_out"], json!(1), "leg {leg}: {info}");
        assert_eq!(c["dropped_malformed"], json!(0), "leg {leg}: {info}");
    }
}

fn rtcp_mux_on_both_legs(backend: Backend) {
    let engine = Engine::on(backend);
    let mut ctl = engine.control();
    let (pa, pb) = (Phone::new(), Phone::new());
    let (leg_a, leg_b) = bridged_call(&mut ctl, "mux", &pa, &pb, true);
    let (port_a, port_b) = (rtp_port(&leg_a), rtp_port(&leg_b));

    // Interleave RTP and RTCP on the one port; order must be kept.
    let stream = |ssrc: u32| -> Vec<Vec<u8>> {
        (0..40)
            .map(|i| {
                if i % 8 == 7 {
                    let mut p =
                        rtcp_sr(ssrc, 0xe000_0000_0000_0000 + i as u64, 160 * i, i, 172 * i);
                    p.extend(rtcp_sdes_cname(ssrc, "mux@example.test"));
                    p
                } else {
                    nth_packet(i as usize, ssrc, 7)
                }
            })
            .collect()
    };
    let (from_a, from_b) = (stream(0xaaaa_0003), stream(0xbbbb_0004));
    for (i, (pkt_a, pkt_b)) in from_a.iter().zip(&from_b).enumerate() {
        pa.rtp.send_to_port(pkt_a, port_a);
        pb.rtp.send_to_port(pkt_b, port_b);
        let (got, src) = pb.rtp.recv();
        assert_eq!(&got, pkt_a, "A→B datagram {i} differs");
        assert_eq!(src, local(port_b));
        let (got, src) = pa.rtp.recv();
        assert_eq!(&got, pkt_b, "B→A datagram {i} differs");
        assert_eq!(src, local(port_a));
    }
    // With rtcp-mux the odd ports carry nothing.
    pa.rtcp.expect_silence(Duration::from_millis(100));
    pb.rtcp.expect_silence(Duration::from_millis(1));

    for leg in ["a", "b"] {
        let info = ctl.leg_info("mux", leg);
        let c = &info["counters"];
        assert_eq!(c["rtp_in"], json!(35), "leg {leg}: {info}");
        assert_eq!(c["rtp_out"], json!(35), "leg {leg}: {info}");
        assert_eq!(c["rtcp_in"], json!(5), "leg {leg}: {info}");
        assert_eq!(c["rtcp_out"], json!(5), "leg {leg}: {info}");
        assert_eq!(c["dropped_malformed"], json!(0), "leg {leg}: {info}");
    }
}

/// A muxes RTCP on its RTP port; B uses the classic odd port. Each side's RTCP
/// must come out where the other side expects it.
fn rtcp_mux_on_one_leg(backend: Backend) {
    let engine = Engine::on(backend);
    let mut ctl = engine.control();
    let (pa, pb) = (Phone::new(), Phone::new());
    let leg_a = ctl.ok(json!({"cmd": "create_leg", "call": "half-mux", "leg": "a",
        "remote": pa.addr().to_string(), "rtcp_mux": true}));
    let leg_b = ctl.create_leg("half-mux", "b", pb.addr());
    ctl.bridge("a", "b");

    let sr_a = rtcp_sr(0xaaaa_0005, 1, 2, 3, 4);
    pa.rtp.send_to_port(&sr_a, rtp_port(&leg_a));
    let (got, src) = pb.rtcp.recv();
    assert_eq!(got, sr_a);
    assert_eq!(src, local(rtcp_port(&leg_b)));

    let sr_b = rtcp_sr(0xbbbb_0006, 5, 6, 7, 8);
    pb.rtcp.send_to_port(&sr_b, rtcp_port(&leg_b));
    let (got, src) = pa.rtp.recv();
    assert_eq!(got, sr_b);
    assert_eq!(src, local(rtp_port(&leg_a)));

    assert_eq!(ctl.counter("half-mux", "a", "rtcp_in"), 1);
    assert_eq!(ctl.counter("half-mux", "a", "rtcp_out"), 1);
    assert_eq!(ctl.counter("half-mux", "b", "rtcp_in"), 1);
    assert_eq!(ctl.counter("half-mux", "b", "rtcp_out"), 1);
}

/// Four calls on an engine with two workers: calls are spread over the workers,
/// and each relays only its own media.
fn calls_on_several_workers(backend: Backend) {
    let engine = Engine::start(EngineOptions::new(backend).workers(2));
    let mut ctl = engine.control();
    assert_eq!(ctl.ok(json!({"cmd": "stats"}))["workers"], json!(2));
    let calls: Vec<(Phone, Phone, u16, u16)> = (0..4)
        .map(|n| {
            let (pa, pb) = (Phone::new(), Phone::new());
            let call = format!("w{n}");
            let (a, b) = (format!("w{n}-a"), format!("w{n}-b"));
            let leg_a = ctl.create_leg(&call, &a, pa.addr());
            let leg_b = ctl.create_leg(&call, &b, pb.addr());
            ctl.bridge(&a, &b);
            (pa, pb, rtp_port(&leg_a), rtp_port(&leg_b))
        })
        .collect();
    for round in 0..10u16 {
        for (n, (pa, pb, port_a, port_b)) in calls.iter().enumerate() {
            let ssrc = 0x1000 + n as u32;
            let p = rtp(round, u32::from(round) * 160, ssrc, 0, &payload(ssrc, 160));
            pa.rtp.send_to_port(&p, *port_a);
            assert_eq!(pb.rtp.recv().0, p, "call {n} A→B round {round}");
            let p = rtp(
                round,
                u32::from(round) * 160,
                !ssrc,
                8,
                &payload(!ssrc, 160),
            );
            pb.rtp.send_to_port(&p, *port_b);
            assert_eq!(pa.rtp.recv().0, p, "call {n} B→A round {round}");
        }
    }
    for n in 0..4 {
        let info = ctl.leg_info(&format!("w{n}"), &format!("w{n}-a"));
        assert_eq!(info["counters"]["rtp_in"], json!(10), "{info}");
        assert_eq!(info["counters"]["rtp_out"], json!(10), "{info}");
    }
    let stats = ctl.ok(json!({"cmd": "stats"}));
    assert_eq!(stats["totals"]["rtp_in"], json!(80), "{stats}");
    assert_eq!(
        (stats["calls"].clone(), stats["legs"].clone()),
        (json!(4), json!(8))
    );
}
