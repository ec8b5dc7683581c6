//! RTP, RTCP and RFC 4733 wire formats: borrowed views over `&[u8]`, in-place
//! rewrites, and sequence/timestamp arithmetic. No IO, no allocation, no panics on
//! any input.

pub mod dtmf;
pub mod header;
pub mod rtcp;
pub mod seq;

pub use dtmf::{DtmfError, TelephoneEvent};
pub use header::{RtpError, RtpHeader};
pub use rtcp::{RtcpCompound, RtcpError, RtcpHeader, RtcpPacket};
pub use seq::{extend_u16, extend_u32, is_newer, seq_distance, ts_diff};

/// Whether a datagram received on an rtcp-mux port is RTCP (RFC 5761 section 4):
/// RTCP packet types 192–223 put 64–95 in the RTP payload-type position.
#[inline]
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (64..=95).contains(&(buf[1] & 0x7f))
}

#[doc(hidden)]
pub mod fuzzing {
    //! Property checks shared by the cargo-fuzz targets (`fuzz/`) and the corpus
    //! replay test (`tests/fuzz-corpus-replay.rs`). They panic on a violated
    //! property, which is the point; they copy the input to test rewrites, so they
    //! allocate, unlike everything else in this module. Not part of the API.

    use super::dtmf::{self, TelephoneEvent};
    use super::header::{self, RtpHeader};
    use super::rtcp::{self, ReportBlock, RtcpCompound, RtcpHeader, RtcpPacket};
    use super::seq;

    /// Parses `data` as RTP; if valid, rewrites seq/ts/SSRC/marker on a copy and
    /// checks the re-parse sees exactly the new values and nothing else changed.
    pub fn check_rtp_header(data: &[u8]) {
        let _ = super::is_rtcp(data);
        check_seq_math(data);
        let Ok(h) = RtpHeader::parse(data) else {
            return;
        };
        assert!(h.payload_offset >= RtpHeader::FIXED_LEN + 4 * usize::from(h.csrc_count));
        assert_eq!(h.payload_offset + h.payload_len + h.padding_len, data.len());
        assert_eq!(h.extension_profile.is_some(), data[0] & 0x10 != 0);
        assert_eq!(h.payload(data).len(), h.payload_len);

        let mut copy = data.to_vec();
        let (sequence, timestamp, ssrc, marker) = (
            !h.sequence,
            h.timestamp.wrapping_add(0x9e37_79b9),
            h.ssrc.rotate_left(7) ^ 0x5a5a_5a5a,
            !h.marker,
        );
        header::set_sequence(&mut copy, sequence);
        header::set_timestamp(&mut copy, timestamp);
        header::set_ssrc(&mut copy, ssrc);
        header::set_marker(&mut copy, marker);
        let after =
            RtpHeader::parse(&copy).expect("rewriting header fields made a valid packet invalid");
        assert_eq!(
            after,
            RtpHeader {
                sequence,
                timestamp,
                ssrc,
                marker,
                ..h
            }
        );
        assert_eq!(copy[RtpHeader::FIXED_LEN..], data[RtpHeader::FIXED_LEN..]);
        assert_eq!(copy[0], data[0]);

        header::set_payload_type(&mut copy, h.payload_type ^ 0x55);
        let pt = RtpHeader::parse(&copy).expect("rewriting the payload type made a packet invalid");
        assert_eq!(
            (pt.payload_type, pt.marker),
            ((h.payload_type ^ 0x55) & 0x7f, marker)
        );

        let payload = h.payload(data);
        if let Ok(ev) = TelephoneEvent::parse(payload) {
            let mut out = [0u8; TelephoneEvent::LEN];
            assert_eq!(ev.write_to(&mut out), Ok(TelephoneEvent::LEN));
            assert_eq!(out[0], payload[0]);
            assert_eq!(
                out[1],
                payload[1] & 0xbf,
                "only the reserved bit may differ"
            );
            assert_eq!(out[2..], payload[2..4]);
            assert_eq!(TelephoneEvent::parse(&out), Ok(ev));
        }
        assert_eq!(
            dtmf::events(payload).count(),
            payload.len() / TelephoneEvent::LEN
        );
    }

    /// Rollover counters on values taken from the input: the result keeps the low
    /// bits and moves by exactly the signed distance unless that leaves `u64`.
    fn check_seq_math(data: &[u8]) {
        let mut word = [0u8; 10];
        for (w, d) in word.iter_mut().zip(data) {
            *w = *d;
        }
        let prev = u64::from_be_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        let s = u16::from_be_bytes([word[8], word[9]]);
        let t = u32::from_be_bytes([word[6], word[7], word[8], word[9]]);

        let ext = seq::extend_u16(Some(prev), s);
        assert_eq!(ext as u16, s);
        let want = i128::from(prev) + i128::from(seq::seq_distance(prev as u16, s));
        if (0..=i128::from(u64::MAX)).contains(&want) {
            assert_eq!(i128::from(ext), want);
        } else {
            assert_eq!(ext >> 16, prev >> 16);
        }

        let ext = seq::extend_u32(Some(prev), t);
        assert_eq!(ext as u32, t);
        let want = i128::from(prev) + i128::from(seq::ts_diff(prev as u32, t));
        if (0..=i128::from(u64::MAX)).contains(&want) {
            assert_eq!(i128::from(ext), want);
        } else {
            assert_eq!(ext >> 32, prev >> 32);
        }
        assert!(!(seq::is_newer(s, prev as u16) && seq::is_newer(prev as u16, s)));
    }

    /// Walks `data` as an RTCP compound, reading every field of every view; then
    /// rewrites a copy and checks the rewrite changed exactly the fields it owns
    /// (or, for a malformed compound, nothing at all).
    pub fn check_rtcp_compound(data: &[u8]) {
        let mut walk = RtcpCompound::new(data);
        let mut packets = 0usize;
        let mut error = None;
        loop {
            let start = walk.offset();
            let Some(item) = walk.next() else { break };
            match item {
                Ok(p) => {
                    packets += 1;
                    assert_eq!(start % 4, 0);
                    assert!(walk.offset() <= data.len());
                    assert!(p.bytes().len() <= walk.offset() - start);
                    assert_eq!(p.bytes(), &data[start..start + p.bytes().len()]);
                    check_view(&p);
                }
                Err(e) => {
                    assert!(error.is_none(), "the walk goes on after an error");
                    error = Some(e);
                }
            }
        }
        assert!(walk.next().is_none(), "the walk is not fused");
        let validated = RtcpCompound::validate(data);
        match error {
            Some(e) => assert_eq!(validated, Err(e)),
            None => assert_eq!(validated, Ok(packets)),
        }

        const SSRC: u32 = 0xa5a5_5a5a;
        const TS_OFFSET: u32 = 0x8123_4567;
        let mut copy = data.to_vec();
        let rewritten = rtcp::rewrite_compound(&mut copy, Some(SSRC), TS_OFFSET);
        assert_eq!(rewritten, validated);
        if validated.is_err() {
            assert_eq!(copy, data, "a malformed compound was modified");
            let mut calls = 0;
            assert!(rtcp::for_each_packet_mut(&mut copy, |_| calls += 1).is_err());
            assert_eq!(calls, 0);
            return;
        }

        let mut changed = vec![false; data.len()];
        let mut before = RtcpCompound::new(data);
        let mut after = RtcpCompound::new(&copy);
        loop {
            let start = before.offset();
            assert_eq!(start, after.offset());
            let (Some(b), Some(a)) = (before.next(), after.next()) else {
                break;
            };
            let (b, a) = (b.expect("validated"), a.expect("rewrite broke a packet"));
            assert_eq!(a.packet_type(), b.packet_type());
            assert_eq!(a.bytes().len(), b.bytes().len());
            if b.sender_ssrc().is_some() {
                assert_eq!(a.sender_ssrc(), Some(SSRC));
                changed[start + 4..start + 8].fill(true);
            } else {
                assert_eq!(a.sender_ssrc(), None);
            }
            if let (RtcpPacket::SenderReport(b), RtcpPacket::SenderReport(a)) = (b, a) {
                assert_eq!(a.rtp_timestamp(), b.rtp_timestamp().wrapping_add(TS_OFFSET));
                assert_eq!(a.ntp_timestamp(), b.ntp_timestamp());
                assert!(a.report_blocks().eq(b.report_blocks()));
                changed[start + 16..start + 20].fill(true);
            }
        }
        for (i, (x, y)) in data.iter().zip(&copy).enumerate() {
            assert!(
                changed[i] || x == y,
                "byte {i} changed outside a rewritten field"
            );
        }

        // Per-packet setters through the mutable walk agree with the compound rewrite.
        let mut per_packet = data.to_vec();
        let n = rtcp::for_each_packet_mut(&mut per_packet, |p| {
            let sr = p.get(1) == Some(&rtcp::PT_SR);
            let wrote = rtcp::set_sender_ssrc(p, SSRC).expect("validated packet");
            let view = RtcpPacket::parse(p).expect("validated packet").0;
            assert_eq!(wrote, view.sender_ssrc().is_some());
            if sr {
                let ts = match view {
                    RtcpPacket::SenderReport(s) => s.rtp_timestamp(),
                    _ => unreachable!("packet type 200 parses as an SR"),
                };
                rtcp::set_sr_rtp_timestamp(p, ts.wrapping_add(TS_OFFSET)).expect("an SR");
            } else {
                assert_eq!(
                    rtcp::set_sr_rtp_timestamp(p, 0),
                    Err(rtcp::RtcpError::NotSenderReport)
                );
            }
        });
        assert_eq!(n, validated);
        assert_eq!(per_packet, copy);
    }

    /// Reads every accessor of one view and checks it against the header's counts.
    fn check_view(p: &RtcpPacket<'_>) {
        let bytes = p.bytes();
        let header = RtcpHeader::parse(bytes).expect("a view starts with its header");
        assert_eq!(header.packet_type, p.packet_type());
        assert!(header.packet_len() >= bytes.len());
        let count = usize::from(header.count);
        match p {
            RtcpPacket::SenderReport(sr) => {
                let _ = (
                    sr.ssrc(),
                    sr.ntp_timestamp(),
                    sr.rtp_timestamp(),
                    sr.packet_count(),
                    sr.octet_count(),
                );
                assert_eq!(sr.report_blocks().len(), count);
                check_blocks(sr.report_blocks());
                assert_eq!(28 + 24 * count + sr.extension().len(), bytes.len());
            }
            RtcpPacket::ReceiverReport(rr) => {
                let _ = rr.ssrc();
                assert_eq!(rr.report_blocks().len(), count);
                check_blocks(rr.report_blocks());
                assert_eq!(8 + 24 * count + rr.extension().len(), bytes.len());
            }
            RtcpPacket::SourceDescription(sdes) => {
                assert_eq!(sdes.chunks().count(), count);
                for chunk in sdes.chunks() {
                    let mut seen = 0;
                    for item in chunk.items {
                        seen += 2 + item.value.len();
                        assert!(seen <= bytes.len());
                    }
                    let _ = sdes.cname_of(chunk.ssrc);
                }
            }
            RtcpPacket::Bye(bye) => {
                assert_eq!(bye.ssrcs().count(), count);
                if let Some(reason) = bye.reason() {
                    assert!(4 + 4 * count + 1 + reason.len() <= bytes.len());
                }
            }
            RtcpPacket::App(app) => {
                let _ = (app.subtype(), app.ssrc(), app.name());
                assert_eq!(12 + app.data().len(), bytes.len());
            }
            RtcpPacket::TransportFeedback(fb) | RtcpPacket::PayloadFeedback(fb) => {
                let _ = (fb.fmt(), fb.sender_ssrc(), fb.media_ssrc());
                assert_eq!(12 + fb.fci().len(), bytes.len());
                assert_eq!(fb.generic_nacks().count(), fb.fci().len() / 4);
            }
            RtcpPacket::Unknown(u) => {
                assert_eq!(usize::from(u.count()), count);
                assert_eq!(4 + u.body().len(), bytes.len());
            }
        }
    }

    fn check_blocks(blocks: rtcp::ReportBlocks<'_>) {
        for block in blocks {
            let mut out = [0u8; ReportBlock::LEN];
            assert_eq!(block.write_to(&mut out), Some(ReportBlock::LEN));
            assert_eq!(ReportBlock::parse(&out), Some(block));
            assert!((-0x80_0000..=0x7f_ffff).contains(&block.cumulative_lost));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_rtp_payload_types_are_not_rtcp() {
        // PCMU, PCMA, G722, dynamic 96..127, with and without the marker bit.
        for pt in [0u8, 8, 9, 18, 63, 96, 101, 111, 127] {
            for marker in [0u8, 0x80] {
                assert!(
                    !is_rtcp(&[0x80, pt | marker, 0, 1]),
                    "PT {pt} marker {marker:#x}"
                );
            }
        }
    }

    #[test]
    fn demux_rtcp_packet_types_are_rtcp() {
        // SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR, and the edges of 192..=223.
        for pt in [200u8, 201, 202, 203, 204, 205, 206, 207, 192, 223] {
            assert!(is_rtcp(&[0x80, pt, 0, 6]), "packet type {pt}");
        }
        assert!(!is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&[0x80, 224]));
    }

    #[test]
    fn demux_needs_two_bytes() {
        assert!(!is_rtcp(&[]));
        assert!(!is_rtcp(&[0x80]));
        assert!(is_rtcp(&[0x80, 200]));
    }

    #[test]
    fn demux_agrees_with_both_parsers() {
        let sr = [
            0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(is_rtcp(&sr));
        assert_eq!(RtcpCompound::validate(&sr), Ok(1));
        let rtp = [0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9, 0xff];
        assert!(!is_rtcp(&rtp));
        assert!(RtpHeader::parse(&rtp).is_ok());
    }
}
