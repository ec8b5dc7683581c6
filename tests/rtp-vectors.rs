//! The seed corpus files are what their names say: each valid seed parses to the
//! expected shape and each edge-case seed fails with the expected error, so the
//! fuzzers start from inputs that reach the branches they are meant to reach.

use std::path::Path;

use rtpark::rtp::rtcp::{RtcpCompound, RtcpError, PT_BYE, PT_RTPFB, PT_SR};
use rtpark::rtp::{is_rtcp, RtpError, RtpHeader, TelephoneEvent};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read seed {}: {e}", path.display()))
}

#[test]
fn rtp_header_seeds_parse_as_named() {
    let ok = |name: &str| {
        RtpHeader::parse(&seed("rtp_header", name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let err = |name: &str| RtpHeader::parse(&seed("rtp_header", name)).unwrap_err();

    let pcmu = ok("pcmu-20ms");
    assert_eq!((pcmu.payload_type, pcmu.payload_len), (0, 160));
    let full = ok("csrc-extension-padding");
    assert_eq!(
        (full.csrc_count, full.extension_profile, full.padding_len),
        (2, Some(0xbede), 3)
    );
    let max = ok("seq-ts-max");
    assert_eq!((max.sequence, max.timestamp), (0xffff, 0xffff_ffff));
    assert_eq!(ok("padding-eats-payload").payload_len, 0);
    assert_eq!(ok("header-only").payload_len, 0);

    let dtmf = seed("rtp_header", "dtmf-end");
    let h = RtpHeader::parse(&dtmf).unwrap();
    let ev = TelephoneEvent::parse(h.payload(&dtmf)).unwrap();
    assert_eq!(
        (h.payload_type, h.marker, ev.digit(), ev.end, ev.duration),
        (101, true, Some('9'), true, 640)
    );
    let two = seed("rtp_header", "dtmf-two-events");
    let h = RtpHeader::parse(&two).unwrap();
    assert_eq!(rtpark::rtp::dtmf::events(h.payload(&two)).count(), 2);

    assert_eq!(err("padding-zero"), RtpError::BadPadding);
    assert_eq!(err("padding-too-long"), RtpError::BadPadding);
    assert_eq!(err("truncated-csrc"), RtpError::TruncatedCsrc);
    assert_eq!(err("truncated-extension"), RtpError::TruncatedExtension);
    assert_eq!(err("extension-preamble-cut"), RtpError::TruncatedExtension);
    assert_eq!(err("bad-version"), RtpError::BadVersion);
    assert_eq!(err("eleven-bytes"), RtpError::TooShort);
    assert_eq!(err("empty"), RtpError::TooShort);

    let mux = seed("rtp_header", "rtcp-sr-on-mux-port");
    assert!(is_rtcp(&mux));
    assert!(!is_rtcp(&seed("rtp_header", "pcmu-20ms")));
}

#[test]
fn rtcp_compound_seeds_walk_as_named() {
    let walk = |name: &str| RtcpCompound::validate(&seed("rtcp_compound", name));

    assert_eq!(walk("sr-sdes"), Ok(2));
    assert_eq!(walk("rr-empty-bye-reason"), Ok(2));
    assert_eq!(walk("nack-pli-app-xr-unknown"), Ok(5));
    assert_eq!(walk("sdes-two-chunks"), Ok(1));
    assert_eq!(walk("bye-padded"), Ok(1));
    assert_eq!(walk("xr-padding-only"), Ok(1));
    assert_eq!(walk("rr-two-blocks-extension"), Ok(1));

    assert_eq!(walk("length-past-end"), Err(RtcpError::LengthPastEnd));
    assert_eq!(
        walk("sr-report-count-overflow"),
        Err(RtcpError::Truncated { packet_type: PT_SR })
    );
    assert_eq!(walk("sdes-item-past-end"), Err(RtcpError::BadSdes));
    assert_eq!(walk("sdes-missing-chunk"), Err(RtcpError::BadSdes));
    assert_eq!(walk("trailing-two-bytes"), Err(RtcpError::TooShort));
    assert_eq!(walk("bad-padding-zero"), Err(RtcpError::BadPadding));
    assert_eq!(
        walk("bye-reason-past-end"),
        Err(RtcpError::Truncated {
            packet_type: PT_BYE
        })
    );
    assert_eq!(
        walk("feedback-too-short"),
        Err(RtcpError::Truncated {
            packet_type: PT_RTPFB
        })
    );
    assert_eq!(walk("empty"), Err(RtcpError::TooShort));
}
