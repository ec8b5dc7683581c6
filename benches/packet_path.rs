//! Criterion benches for the per-packet path: what the worker does to every RTP and
//! RTCP datagram in user space. Each bench checks its round trip once before timing.
//!
//! Run with `cargo bench --bench packet_path` (add `-- --quick` for a fast pass).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtpark::rtp::header::{set_marker, set_sequence, set_ssrc, set_timestamp};
use rtpark::rtp::rtcp::{self, RtcpCompound, RtcpPacket};
use rtpark::rtp::{is_rtcp, RtpHeader};
use rtpark::session::{EgressContext, LatchPolicy, LegConfig, LegKey, Shard, ShardConfig, Verdict};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A 20 ms PCMU packet as a phone sends it: 12-byte header, 160 bytes of payload.
fn pcmu_packet() -> [u8; 172] {
    let mut p = [0xffu8; 172];
    p[..12].copy_from_slice(&[
        0x80, 0x00, 0x12, 0x34, 0x00, 0x01, 0xf4, 0x00, 0x1c, 0x2d, 0x3e, 0x4f,
    ]);
    p
}

/// The usual compound a phone sends every few seconds: SR with one report block
/// (52 bytes) followed by SDES with a CNAME (28 bytes).
fn sr_sdes_compound() -> [u8; 80] {
    let mut c = [0u8; 80];
    c[..28].copy_from_slice(&[
        0x81, 0xc8, 0x00, 0x0c, 0x1c, 0x2d, 0x3e, 0x4f, 0xe4, 0x1b, 0x2c, 0x3d, 0x80, 0x00, 0x00,
        0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x3e, 0x80,
    ]);
    c[28..52].copy_from_slice(&[
        0x12, 0x34, 0x56, 0x78, 0x19, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00,
        0x20, 0x2c, 0x3d, 0x80, 0x00, 0x00, 0x01, 0x80, 0x00,
    ]);
    c[52..60].copy_from_slice(&[0x81, 0xca, 0x00, 0x06, 0x1c, 0x2d, 0x3e, 0x4f]);
    c[60] = 1;
    c[61] = 16;
    c[62..78].copy_from_slice(b"user@example.com");
    c
}

/// The egress context of a leg after a source switch: new SSRC, offsets, no marker
/// pending. Built from `Default` so fields the session adds later keep their defaults.
// The session may have no other fields yet; the update is there for when it does.
#[allow(clippy::needless_update)]
fn switched() -> EgressContext {
    EgressContext {
        ssrc: Some(0x5eed_0001),
        seq_offset: 0x8001,
        ts_offset: 0x0010_0000,
        mark_next: false,
        ..EgressContext::default()
    }
}

fn rtp_header(c: &mut Criterion) {
    let packet = pcmu_packet();
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));

    let h = RtpHeader::parse(&packet).expect("bench packet is valid RTP");
    assert_eq!(
        (h.sequence, h.timestamp, h.payload_len),
        (0x1234, 0x0001_f400, 160)
    );
    // Every bench reads the same few fields a worker uses, so the figures compare.
    g.bench_function("parse", |b| {
        b.iter(|| {
            let h = RtpHeader::parse(black_box(&packet)).ok()?;
            Some((h.ssrc, h.sequence, h.payload_len))
        })
    });

    g.bench_function("demux_then_parse", |b| {
        b.iter(|| {
            let p = black_box(&packet);
            if is_rtcp(p) {
                return None;
            }
            let h = RtpHeader::parse(p).ok()?;
            Some((h.ssrc, h.sequence, h.payload_len))
        })
    });

    // Round trip through the leg's egress context, marker included, before timing.
    {
        let mut buf = packet;
        let mut ctx = EgressContext {
            mark_next: true,
            ..switched()
        };
        ctx.apply(&mut buf);
        let after = RtpHeader::parse(&buf).expect("rewritten packet is valid RTP");
        assert_eq!(after.sequence, 0x1234u16.wrapping_add(0x8001));
        assert_eq!(after.timestamp, 0x0001_f400 + 0x0010_0000);
        assert_eq!(after.ssrc, 0x5eed_0001);
        assert!(after.marker);
        assert!(!ctx.mark_next, "the marker is set once");
        assert_eq!(buf[12..], packet[12..], "payload untouched");
    }
    g.bench_function("parse_egress_rewrite", |b| {
        let mut buf = packet;
        let mut ctx = switched();
        b.iter(|| {
            let buf = black_box(&mut buf);
            let h = RtpHeader::parse(buf).ok()?;
            ctx.apply(buf);
            Some((h.ssrc, h.sequence, h.payload_len))
        })
    });

    g.bench_function("parse_egress_identity", |b| {
        let mut buf = packet;
        let mut ctx = EgressContext::default();
        b.iter(|| {
            let buf = black_box(&mut buf);
            let h = RtpHeader::parse(buf).ok()?;
            ctx.apply(buf);
            Some((h.ssrc, h.sequence, h.payload_len))
        })
    });

    {
        let mut buf = packet;
        set_sequence(&mut buf, 7);
        set_timestamp(&mut buf, 8);
        set_ssrc(&mut buf, 9);
        set_marker(&mut buf, true);
        let after = RtpHeader::parse(&buf).expect("rewritten packet is valid RTP");
        assert_eq!(
            (after.sequence, after.timestamp, after.ssrc, after.marker),
            (7, 8, 9, true)
        );
    }
    g.bench_function("parse_setters_rewrite", |b| {
        let mut buf = packet;
        let mut n = 0u16;
        b.iter(|| {
            let buf = black_box(&mut buf);
            let h = RtpHeader::parse(buf).ok()?;
            n = n.wrapping_add(1);
            set_sequence(buf, h.sequence.wrapping_add(n));
            set_timestamp(buf, h.timestamp.wrapping_add(160));
            set_ssrc(buf, 0x5eed_0001);
            set_marker(buf, false);
            Some((h.ssrc, h.sequence, h.payload_len))
        })
    });
    g.finish();
}

fn rtcp_compound(c: &mut Criterion) {
    let compound = sr_sdes_compound();
    let mut g = c.benchmark_group("rtcp");
    g.throughput(Throughput::Elements(1));

    assert_eq!(RtcpCompound::validate(&compound), Ok(2));
    g.bench_function("walk_sr_sdes", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for packet in RtcpCompound::new(black_box(&compound)) {
                match packet {
                    Ok(RtcpPacket::SenderReport(sr)) => {
                        acc ^= sr.ntp_timestamp() ^ u64::from(sr.rtp_timestamp());
                        for block in sr.report_blocks() {
                            acc ^= u64::from(block.extended_highest_seq);
                        }
                    }
                    Ok(RtcpPacket::SourceDescription(sdes)) => {
                        for chunk in sdes.chunks() {
                            for item in chunk.items {
                                acc ^= item.value.len() as u64;
                            }
                        }
                    }
                    Ok(other) => acc ^= u64::from(other.packet_type()),
                    Err(_) => return None,
                }
            }
            Some(acc)
        })
    });

    {
        let mut buf = compound;
        assert_eq!(
            rtcp::rewrite_compound(&mut buf, Some(0x5eed_0001), 0x0010_0000),
            Ok(2)
        );
        let mut walk = RtcpCompound::new(&buf);
        let Some(Ok(RtcpPacket::SenderReport(sr))) = walk.next() else {
            panic!("rewritten compound lost its SR");
        };
        assert_eq!(
            (sr.ssrc(), sr.rtp_timestamp()),
            (0x5eed_0001, 0x0003_e800 + 0x0010_0000)
        );
        let Some(Ok(sdes)) = walk.next() else {
            panic!("rewritten compound lost its SDES");
        };
        assert_eq!(sdes.sender_ssrc(), Some(0x5eed_0001));
    }
    g.bench_function("rewrite_compound", |b| {
        let mut buf = compound;
        b.iter(|| rtcp::rewrite_compound(black_box(&mut buf), Some(0x5eed_0001), 160))
    });
    g.finish();
}

// --- Full session decision -------------------------------------------------------

/// A shard with `pairs` bridged, latched leg pairs (as in a loaded engine), and
/// the key of the first A leg plus its phone's address.
fn loaded_shard(pairs: u16) -> (Shard, LegKey, SocketAddr) {
    let now = Instant::now();
    let mut shard = Shard::new(ShardConfig::default());
    let mut first = None;
    for i in 0..pairs {
        let leg = |side: u16| LegConfig {
            call: format!("c{i}"),
            name: format!("c{i}-{side}"),
            local_rtp: SocketAddr::from(([127, 0, 0, 1], 30000 + 4 * i + 2 * side)),
            local_rtcp: SocketAddr::from(([127, 0, 0, 1], 30001 + 4 * i + 2 * side)),
            remote: Some(SocketAddr::from(([127, 0, 0, 1], 40000 + 2 * i + side))),
            remote_rtcp: None,
            latch: LatchPolicy::Learn,
            rtcp_mux: false,
            codecs: Vec::new(),
            media_timeout: Duration::from_secs(60),
            silent_timeout: Duration::from_secs(3600),
            silent: false,
            ssrc_per_source: false,
        };
        let a = shard.add_leg(now, leg(0));
        let b = shard.add_leg(now, leg(1));
        shard.bridge(a, b).expect("fresh legs bridge");
        let phone_a = SocketAddr::from(([127, 0, 0, 1], 40000 + 2 * i));
        let phone_b = SocketAddr::from(([127, 0, 0, 1], 40001 + 2 * i));
        // Latch both sides, as the first packets of a call do.
        let mut p = pcmu_packet();
        shard.handle_rtp(now, a, phone_a, &mut p);
        let mut p = pcmu_packet();
        shard.handle_rtp(now, b, phone_b, &mut p);
        while shard.poll_socket_op().is_some() {}
        first.get_or_insert((a, phone_a));
    }
    let (a, phone_a) = first.expect("at least one pair");
    (shard, a, phone_a)
}

/// Shard::handle_rtp on a latched, bridged leg: validation, latch check,
/// counters, egress (identity and after a hold/unhold re-anchoring), verdict.
fn session_decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    let (mut shard, a, phone_a) = loaded_shard(1000);
    let now = Instant::now();
    let mut pkt = pcmu_packet();
    let verdict = shard.handle_rtp(now, a, phone_a, &mut pkt);
    assert!(matches!(verdict, Verdict::Forward(_)), "{verdict:?}");
    assert_eq!(
        pkt,
        pcmu_packet(),
        "identity egress leaves the packet alone"
    );
    g.bench_function("handle_rtp_relay", |bench| {
        bench.iter(|| {
            let mut p = pcmu_packet();
            black_box(shard.handle_rtp(now, a, phone_a, black_box(&mut p)))
        })
    });
    // After a source switch the peer's egress rewrites seq/ts/ssrc on every packet.
    let peer = match verdict {
        Verdict::Forward(f) => f.leg,
        Verdict::Drop(_) => unreachable!("asserted above"),
    };
    if let Some(e) = shard.egress_mut(peer) {
        e.ssrc = Some(0xdead_beef);
        e.seq_offset = 7;
        e.ts_offset = 1600;
    }
    let mut p = pcmu_packet();
    shard.handle_rtp(now, a, phone_a, &mut p);
    assert_eq!(RtpHeader::parse(&p).map(|h| h.ssrc), Ok(0xdead_beef));
    g.bench_function("handle_rtp_relay_rewrite", |bench| {
        bench.iter(|| {
            let mut p = pcmu_packet();
            black_box(shard.handle_rtp(now, a, phone_a, black_box(&mut p)))
        })
    });
    g.finish();
}

criterion_group!(packet_path, rtp_header, rtcp_compound, session_decision);
criterion_main!(packet_path);
