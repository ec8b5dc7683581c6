//! SDP bodies as real endpoints send them (sipp, FreeSWITCH/Asterisk/Linphone,
//! a browser), parsed for what the relay needs and rewritten to rtpark's address and
//! ports with every other line kept byte-for-byte.

use std::net::IpAddr;

use rtpark::sdp::fuzzing::check_sdp_rewrite;
use rtpark::sdp::{
    Direction, MediaRewrite, Rewrite, RtcpAttr, Rtpmap, Sdp, SdpError, MAX_BODY_LEN, MAX_MEDIA,
};

const RTPARK: &str = "203.0.113.5";
const RTPARK6: &str = "2001:db8::5";

/// Joins lines with CRLF, ending with one.
fn crlf(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [l.as_bytes(), b"\r\n"].concat())
        .collect()
}

/// Joins lines with LF, ending with one.
fn lf(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [l.as_bytes(), b"\n"].concat())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn stream(addr: &str, rtp_port: u16, rtcp_port: Option<u16>) -> Option<MediaRewrite> {
    Some(MediaRewrite {
        addr: ip(addr),
        rtp_port,
        rtcp_port,
    })
}

fn plan(media: Vec<Option<MediaRewrite>>) -> Rewrite {
    Rewrite {
        media,
        ..Rewrite::default()
    }
}

fn parse(body: &[u8]) -> Sdp {
    Sdp::parse(body).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(body)))
}

/// Rewrites `body`, checks the output against the fuzz properties too, and returns it.
fn rewrite(body: &[u8], plan: &Rewrite) -> Vec<u8> {
    check_sdp_rewrite(body);
    let out = parse(body).rewrite(plan);
    Sdp::parse(&out).expect("rewritten body parses");
    out
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn rtpmap(pt: u8, name: &str, rate: u32, channels: u8) -> Rtpmap {
    Rtpmap {
        pt,
        name: name.into(),
        rate,
        channels,
    }
}

/// Lines (with their endings) that are not `o=`, `c=`, `m=`, `a=rtcp:` or, when
/// `ice` is false, ICE attributes: what no rewrite may change.
fn unowned(body: &[u8], ice: bool) -> Vec<Vec<u8>> {
    const ICE: &[&str] = &[
        "a=ice-ufrag",
        "a=ice-pwd",
        "a=ice-options",
        "a=candidate",
        "a=remote-candidates",
        "a=end-of-candidates",
        "a=ice-lite",
        "a=ice-mismatch",
    ];
    body.split_inclusive(|&b| b == b'\n')
        .filter(|l| {
            let owned = [&b"o="[..], b"c=", b"m=", b"a=rtcp:"]
                .iter()
                .any(|p| l.starts_with(p));
            let is_ice = ICE.iter().any(|p| l.starts_with(p.as_bytes()));
            !owned && (ice || !is_ice)
        })
        .map(<[u8]>::to_vec)
        .collect()
}

fn sipp() -> Vec<u8> {
    crlf(&[
        "v=0",
        "o=user1 53655765 2353687637 IN IP4 127.0.1.1",
        "s=-",
        "c=IN IP4 127.0.1.1",
        "t=0 0",
        "m=audio 6000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
    ])
}

fn freeswitch() -> Vec<u8> {
    crlf(&[
        "v=0",
        "o=FreeSWITCH 1700000000 1700000001 IN IP4 192.0.2.10",
        "s=FreeSWITCH",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 24580 RTP/AVP 102 9 0 8 101 13",
        "b=AS:64",
        "a=rtpmap:102 opus/48000/2",
        "a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
        "a=rtcp:24581 IN IP4 192.0.2.10",
    ])
}

fn webrtc() -> Vec<u8> {
    crlf(&[
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=ice-options:trickle",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:842163049 1 udp 1677729535 198.51.100.7 50211 typ srflx raddr 10.0.0.7 rport 50211 generation 0",
        "a=candidate:1467250027 1 udp 2122260223 10.0.0.7 50211 typ host generation 0",
        "a=ice-ufrag:8hhY",
        "a=ice-pwd:asd88fgpdd777uzjYhagZg",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 D1:2C:BE:AD:EE:BB:8E:14:AF:1D:E0:33:31:0E:10:57:DB:33:9F:3C:C2:3A:93:2A:A8:E6:AB:31:5C:58:B1:FB",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=msid:stream track",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ssrc:3735928559 cname:abcdEFGHijkl",
        "a=end-of-candidates",
    ])
}

fn audio_video() -> Vec<u8> {
    crlf(&[
        "v=0",
        "o=linphone 2140 3541 IN IP4 192.0.2.30",
        "s=Talk",
        "c=IN IP4 192.0.2.30",
        "t=0 0",
        "m=audio 7078 RTP/AVP 96 0 8 101",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:101 telephone-event/8000",
        "m=video 9078/2 RTP/AVP 97 31",
        "i=main camera",
        "b=TIAS:512000",
        "a=rtpmap:97 H264/90000",
        "a=fmtp:97 profile-level-id=42801F",
    ])
}

// ---- parsing: what the relay learns ------------------------------------------

#[test]
fn sipp_default_offer_parses() {
    let sdp = parse(&sipp());
    assert_eq!(sdp.session_connection(), Some(ip("127.0.1.1")));
    assert_eq!(sdp.origin(), Some(ip("127.0.1.1")));
    assert_eq!(sdp.session_direction(), None);
    let [m] = sdp.media() else {
        panic!("one media section")
    };
    assert_eq!(
        (m.kind.as_str(), m.port, m.proto.as_str()),
        ("audio", 6000, "RTP/AVP")
    );
    assert_eq!(m.formats, vec!["0"]);
    assert_eq!(m.connection, Some(ip("127.0.1.1")));
    assert_eq!(m.codecs, vec![rtpmap(0, "PCMU", 8000, 1)]);
    assert_eq!(
        (m.rtcp, m.rtcp_mux, m.ptime, m.has_ice),
        (None, false, None, false)
    );
    assert_eq!(m.direction, Direction::SendRecv);
    assert!(!m.zero_address_hold());
}

#[test]
fn freeswitch_offer_yields_opus_static_codecs_and_telephone_event() {
    let sdp = parse(&freeswitch());
    let m = &sdp.media()[0];
    assert_eq!(
        m.codecs,
        vec![
            rtpmap(102, "opus", 48000, 2),
            rtpmap(9, "G722", 8000, 1),
            rtpmap(0, "PCMU", 8000, 1),
            rtpmap(8, "PCMA", 8000, 1),
            rtpmap(101, "telephone-event", 8000, 1),
            rtpmap(13, "CN", 8000, 1),
        ]
    );
    assert_eq!(m.ptime, Some(20));
    assert_eq!(
        m.rtcp,
        Some(RtcpAttr {
            port: 24581,
            addr: Some(ip("192.0.2.10"))
        })
    );
    assert_eq!(m.direction, Direction::SendRecv);
}

#[test]
fn webrtc_offer_sees_ice_rtcp_mux_and_the_trickle_placeholder() {
    let sdp = parse(&webrtc());
    assert!(sdp.session_has_ice());
    assert_eq!(sdp.session_connection(), None);
    let m = &sdp.media()[0];
    assert!(m.has_ice && m.rtcp_mux);
    assert_eq!(m.connection, Some(ip("0.0.0.0")));
    assert!(
        !m.zero_address_hold(),
        "port 9 + 0.0.0.0 is trickle ICE, not hold"
    );
    assert_eq!(m.codecs.len(), 8);
    assert_eq!(m.codecs[1], rtpmap(63, "red", 48000, 2));
    assert_eq!(m.codecs[6], rtpmap(110, "telephone-event", 48000, 1));
}

#[test]
fn unknown_dynamic_types_are_skipped_and_non_rtp_media_has_no_codecs() {
    let sdp = parse(&crlf(&[
        "v=0",
        "c=IN IP4 192.0.2.1",
        "m=audio 4000 RTP/AVP 18 98 4",
        "m=image 4002 udptl t38",
        "a=T38FaxVersion:0",
        "m=application 4004 UDP/DTLS/SCTP webrtc-datachannel",
    ]));
    let names: Vec<_> = sdp.media()[0]
        .codecs
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["G729", "G723"]);
    assert!(sdp.media()[1].codecs.is_empty());
    assert_eq!(sdp.media()[1].formats, vec!["t38"]);
    assert!(sdp.media()[2].codecs.is_empty());
}

#[test]
fn direction_comes_from_media_then_session_then_sendrecv() {
    let sdp = parse(&crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "a=sendonly",
        "m=audio 4000 RTP/AVP 0",
        "a=recvonly",
        "m=audio 4002 RTP/AVP 0",
        "m=video 4004 RTP/AVP 31",
        "a=inactive",
    ]));
    assert_eq!(sdp.session_direction(), Some(Direction::SendOnly));
    let dirs: Vec<_> = sdp.media().iter().map(|m| m.direction).collect();
    assert_eq!(
        dirs,
        [
            Direction::RecvOnly,
            Direction::SendOnly,
            Direction::Inactive
        ]
    );

    let plain = parse(&sipp());
    assert_eq!(plain.media()[0].direction, Direction::SendRecv);
}

#[test]
fn media_connection_overrides_session_connection() {
    let sdp = parse(&crlf(&[
        "v=0",
        "c=IN IP4 192.0.2.1",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP6 2001:db8::7",
        "m=audio 4002 RTP/AVP 0",
    ]));
    assert_eq!(sdp.media()[0].connection, Some(ip("2001:db8::7")));
    assert_eq!(sdp.media()[1].connection, Some(ip("192.0.2.1")));
}

// ---- rewriting: exact bytes --------------------------------------------------

#[test]
fn sipp_offer_gets_rtpark_address_and_port() {
    let mut p = plan(vec![stream(RTPARK, 40000, Some(40001))]);
    p.origin = Some(ip(RTPARK));
    let out = rewrite(&sipp(), &p);
    assert_eq!(
        show(&out),
        show(&crlf(&[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 203.0.113.5",
            "s=-",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
        ]))
    );
}

#[test]
fn origin_stays_unless_asked() {
    let out = rewrite(&sipp(), &plan(vec![stream(RTPARK, 40000, Some(40001))]));
    assert!(show(&out).contains("o=user1 53655765 2353687637 IN IP4 127.0.1.1\r\n"));
}

#[test]
fn freeswitch_offer_rewrites_rtcp_attribute_with_its_address() {
    let out = rewrite(
        &freeswitch(),
        &plan(vec![stream(RTPARK, 40000, Some(40001))]),
    );
    assert_eq!(
        show(&out),
        show(&crlf(&[
            "v=0",
            "o=FreeSWITCH 1700000000 1700000001 IN IP4 192.0.2.10",
            "s=FreeSWITCH",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 102 9 0 8 101 13",
            "b=AS:64",
            "a=rtpmap:102 opus/48000/2",
            "a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
            "a=rtcp:40001 IN IP4 203.0.113.5",
        ]))
    );
}

#[test]
fn webrtc_offer_loses_ice_and_points_rtcp_at_the_muxed_port() {
    let mut p = plan(vec![stream(RTPARK, 40000, None)]);
    p.remove_ice = true;
    let out = rewrite(&webrtc(), &p);
    let text = show(&out);
    assert!(text.starts_with(&show(&crlf(&[
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS stream",
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 203.0.113.5",
        "a=rtcp:40000 IN IP4 203.0.113.5",
        "a=fingerprint:sha-256 D1:2C:BE:AD:EE:BB:8E:14:AF:1D:E0:33:31:0E:10:57:DB:33:9F:3C:C2:3A:93:2A:A8:E6:AB:31:5C:58:B1:FB",
    ]))));
    assert!(text.ends_with("a=ssrc:3735928559 cname:abcdEFGHijkl\r\n"));
    for gone in ["ice-", "candidate"] {
        assert!(!text.contains(gone), "{gone} survived:\n{text}");
    }
    assert!(text.contains("a=rtcp-mux\r\n"));
    let again = parse(&out);
    assert!(!again.session_has_ice() && !again.media()[0].has_ice);
    assert_eq!(unowned(&webrtc(), false), unowned(&out, false));
}

#[test]
fn ice_stays_without_remove_ice() {
    let out = rewrite(&webrtc(), &plan(vec![stream(RTPARK, 40000, None)]));
    assert_eq!(unowned(&webrtc(), true), unowned(&out, true));
    assert!(parse(&out).media()[0].has_ice);
}

#[test]
fn audio_and_video_to_one_address_share_the_session_connection() {
    let out = rewrite(
        &audio_video(),
        &plan(vec![
            stream(RTPARK, 40000, Some(40001)),
            stream(RTPARK, 40002, Some(40003)),
        ]),
    );
    assert_eq!(
        show(&out),
        show(&crlf(&[
            "v=0",
            "o=linphone 2140 3541 IN IP4 192.0.2.30",
            "s=Talk",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 96 0 8 101",
            "a=rtpmap:96 opus/48000/2",
            "a=rtpmap:101 telephone-event/8000",
            "m=video 40002 RTP/AVP 97 31",
            "i=main camera",
            "b=TIAS:512000",
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 profile-level-id=42801F",
        ]))
    );
}

#[test]
fn a_second_address_gets_its_own_connection_line_after_m_and_i() {
    let out = rewrite(
        &audio_video(),
        &plan(vec![
            stream(RTPARK, 40000, Some(40001)),
            stream(RTPARK6, 40002, Some(40010)),
        ]),
    );
    assert_eq!(
        show(&out),
        show(&crlf(&[
            "v=0",
            "o=linphone 2140 3541 IN IP4 192.0.2.30",
            "s=Talk",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 96 0 8 101",
            "a=rtpmap:96 opus/48000/2",
            "a=rtpmap:101 telephone-event/8000",
            "m=video 40002 RTP/AVP 97 31",
            "i=main camera",
            "c=IN IP6 2001:db8::5",
            "b=TIAS:512000",
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 profile-level-id=42801F",
            "a=rtcp:40010",
        ]))
    );
    let again = parse(&out);
    assert_eq!(again.media()[1].connection, Some(ip(RTPARK6)));
    assert_eq!(again.media()[1].rtcp.map(|r| r.port), Some(40010));
}

#[test]
fn an_untouched_section_keeps_its_address_when_the_session_connection_moves() {
    let out = rewrite(
        &audio_video(),
        &plan(vec![None, stream(RTPARK, 40002, Some(40003))]),
    );
    let text = show(&out);
    assert!(text.contains(
        "c=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 7078 RTP/AVP 96 0 8 101\r\nc=IN IP4 192.0.2.30\r\n"
    ));
    let again = parse(&out);
    assert_eq!(again.media()[0].connection, Some(ip("192.0.2.30")));
    assert_eq!(again.media()[1].connection, Some(ip(RTPARK)));
}

#[test]
fn session_connection_flag_rewrites_it_even_when_media_have_their_own() {
    let body = crlf(&[
        "v=0",
        "c=IN IP4 192.0.2.1",
        "m=audio 4000 RTP/AVP 0",
        "c=IN IP4 192.0.2.2",
    ]);
    let p = plan(vec![stream(RTPARK, 40000, Some(40001))]);
    assert_eq!(
        show(&rewrite(&body, &p)),
        show(&crlf(&[
            "v=0",
            "c=IN IP4 192.0.2.1",
            "m=audio 40000 RTP/AVP 0",
            "c=IN IP4 203.0.113.5",
        ]))
    );
    let mut p = p;
    p.session_connection = true;
    assert_eq!(
        show(&rewrite(&body, &p)),
        show(&crlf(&[
            "v=0",
            "c=IN IP4 203.0.113.5",
            "m=audio 40000 RTP/AVP 0",
            "c=IN IP4 203.0.113.5",
        ]))
    );
}

#[test]
fn zero_address_hold_stays_zero_in_the_new_family() {
    let body = crlf(&[
        "v=0",
        "o=- 1 2 IN IP4 192.0.2.20",
        "s=-",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0 8",
        "a=rtcp:49171 IN IP4 0.0.0.0",
    ]);
    assert!(parse(&body).media()[0].zero_address_hold());
    let out = rewrite(&body, &plan(vec![stream(RTPARK, 40000, Some(40001))]));
    assert_eq!(
        show(&out),
        show(&crlf(&[
            "v=0",
            "o=- 1 2 IN IP4 192.0.2.20",
            "s=-",
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            "m=audio 40000 RTP/AVP 0 8",
            "a=rtcp:40001 IN IP4 0.0.0.0",
        ]))
    );
    let out6 = rewrite(&body, &plan(vec![stream(RTPARK6, 40000, Some(40001))]));
    assert!(show(&out6).contains("\r\nc=IN IP6 ::\r\n"));
    assert!(parse(&out6).media()[0].zero_address_hold());
}

#[test]
fn sendonly_attributes_survive_at_both_levels() {
    let body = crlf(&[
        "v=0",
        "o=- 1 2 IN IP4 192.0.2.20",
        "s=-",
        "c=IN IP4 192.0.2.20",
        "t=0 0",
        "a=sendonly",
        "m=audio 49170 RTP/AVP 0",
        "a=sendonly",
    ]);
    let out = rewrite(&body, &plan(vec![stream(RTPARK, 40000, Some(40001))]));
    let again = parse(&out);
    assert_eq!(again.session_direction(), Some(Direction::SendOnly));
    assert_eq!(again.media()[0].direction, Direction::SendOnly);
    assert_eq!(unowned(&body, true), unowned(&out, true));
}

#[test]
fn rejected_port_zero_stream_is_left_alone() {
    let body = crlf(&[
        "v=0",
        "o=- 1 2 IN IP4 192.0.2.20",
        "s=-",
        "c=IN IP4 192.0.2.20",
        "t=0 0",
        "m=audio 49170 RTP/AVP 0",
        "m=video 0 RTP/AVP 31",
        "a=rtcp:9",
    ]);
    let out = rewrite(
        &body,
        &plan(vec![
            stream(RTPARK, 40000, Some(40001)),
            stream(RTPARK, 40002, Some(40003)),
        ]),
    );
    assert_eq!(
        show(&out),
        show(&crlf(&[
            "v=0",
            "o=- 1 2 IN IP4 192.0.2.20",
            "s=-",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 0",
            "m=video 0 RTP/AVP 31",
            "a=rtcp:9",
        ]))
    );
}

#[test]
fn lf_only_body_gets_lf_on_inserted_lines() {
    let body = lf(&[
        "v=0",
        "o=- 1 2 IN IP4 192.0.2.20",
        "s=-",
        "t=0 0",
        "m=audio 49170 RTP/AVP 8",
        "a=rtpmap:8 PCMA/8000",
    ]);
    let out = rewrite(&body, &plan(vec![stream(RTPARK, 40000, Some(40007))]));
    assert_eq!(
        show(&out),
        show(&lf(&[
            "v=0",
            "o=- 1 2 IN IP4 192.0.2.20",
            "s=-",
            "t=0 0",
            "m=audio 40000 RTP/AVP 8",
            "c=IN IP4 203.0.113.5",
            "a=rtpmap:8 PCMA/8000",
            "a=rtcp:40007",
        ]))
    );
}

#[test]
fn missing_final_newline_stays_missing() {
    let mut body = sipp();
    body.truncate(body.len() - 2);
    assert_eq!(parse(&body).rewrite(&Rewrite::default()), body);
    let out = rewrite(&body, &plan(vec![stream(RTPARK, 40000, Some(50000))]));
    assert!(
        show(&out).ends_with("a=rtpmap:0 PCMU/8000\r\na=rtcp:50000"),
        "{}",
        show(&out)
    );

    let out = rewrite(&body, &plan(vec![stream(RTPARK, 40000, Some(40001))]));
    assert!(show(&out).ends_with("m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000"));
}

#[test]
fn dropping_an_unterminated_last_line_keeps_the_line_before_it() {
    // Found by the fuzzer: the blank line before a dropped last line lost its ending.
    let body = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n\na=end-of-candidates";
    let mut p = plan(vec![stream(RTPARK, 40000, Some(40001))]);
    p.remove_ice = true;
    assert_eq!(
        show(&rewrite(body, &p)),
        "v=0\r\nc=IN IP4 203.0.113.5\r\nm=audio 40000 RTP/AVP 0\r\n\n"
    );
}

#[test]
fn mixed_endings_and_trailing_blank_lines_are_kept() {
    let body = b"v=0\r\no=- 1 2 IN IP4 192.0.2.20\ns=-\r\nc=IN IP4 192.0.2.20\nt=0 0\r\nm=audio 49170 RTP/AVP 0\na=x-unknown:1\r\n\r\n\r\n";
    let out = rewrite(body, &plan(vec![stream(RTPARK, 40000, Some(41000))]));
    assert_eq!(
        show(&out),
        "v=0\r\no=- 1 2 IN IP4 192.0.2.20\ns=-\r\nc=IN IP4 203.0.113.5\nt=0 0\r\nm=audio 40000 RTP/AVP 0\na=x-unknown:1\r\na=rtcp:41000\r\n\r\n\r\n"
    );
}

#[test]
fn ipv6_offer_bridged_to_ipv4_and_back() {
    let body = crlf(&[
        "v=0",
        "o=- 7 7 IN IP6 2001:db8::10",
        "s=-",
        "c=IN IP6 2001:db8::10",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 101",
        "a=rtpmap:101 telephone-event/8000",
        "a=rtcp:30001 IN IP6 2001:db8::10",
    ]);
    let sdp = parse(&body);
    assert_eq!(sdp.session_connection(), Some(ip("2001:db8::10")));
    assert_eq!(sdp.origin(), Some(ip("2001:db8::10")));

    let mut p = plan(vec![stream(RTPARK, 40000, Some(40001))]);
    p.origin = Some(ip(RTPARK));
    assert_eq!(
        show(&rewrite(&body, &p)),
        show(&crlf(&[
            "v=0",
            "o=- 7 7 IN IP4 203.0.113.5",
            "s=-",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 40000 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtcp:40001 IN IP4 203.0.113.5",
        ]))
    );

    let mut p = plan(vec![stream(RTPARK6, 40000, Some(40001))]);
    p.origin = Some(ip(RTPARK6));
    let out = show(&rewrite(&sipp(), &p));
    assert!(out.contains("o=user1 53655765 2353687637 IN IP6 2001:db8::5\r\n"));
    assert!(out.contains("c=IN IP6 2001:db8::5\r\n"));
}

#[test]
fn port_count_is_dropped() {
    let out = rewrite(
        &audio_video(),
        &plan(vec![None, stream(RTPARK, 40002, Some(40003))]),
    );
    assert!(show(&out).contains("m=video 40002 RTP/AVP 97 31\r\n"));
}

#[test]
fn non_utf8_text_and_unknown_lines_pass_through() {
    let mut body = b"v=0\r\no=- 1 2 IN IP4 192.0.2.20\r\ns=Caf\xe9\r\n".to_vec();
    body.extend_from_slice(b"c=IN IP4 192.0.2.20\r\nt=0 0\r\nz=0 -1h\r\nk=clear:x\r\n");
    body.extend_from_slice(b"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\na=x-\xff\r\n");
    let out = rewrite(&body, &plan(vec![stream(RTPARK, 40000, Some(40001))]));
    assert_eq!(unowned(&body, true), unowned(&out, true));
    assert_eq!(
        out.len(),
        body.len() + 2,
        "only the c= address and the m= port changed"
    );
}

#[test]
fn every_unowned_line_survives_byte_for_byte() {
    let samples = [sipp(), freeswitch(), webrtc(), audio_video()];
    for body in &samples {
        let n = parse(body).media().len();
        for remove_ice in [false, true] {
            let p = Rewrite {
                media: (0..n)
                    .map(|i| {
                        stream(
                            if i % 2 == 0 { RTPARK } else { RTPARK6 },
                            40000 + 2 * i as u16,
                            Some(50000),
                        )
                    })
                    .collect(),
                origin: Some(ip(RTPARK)),
                session_connection: true,
                remove_ice,
            };
            let out = rewrite(body, &p);
            assert_eq!(unowned(body, !remove_ice), unowned(&out, !remove_ice));
        }
    }
}

#[test]
fn empty_plan_is_the_identity() {
    for body in [sipp(), freeswitch(), webrtc(), audio_video()] {
        assert_eq!(parse(&body).rewrite(&Rewrite::default()), body);
    }
}

// ---- errors ------------------------------------------------------------------

fn err(body: &[u8]) -> SdpError {
    Sdp::parse(body).expect_err("must be rejected")
}

#[test]
fn bad_port_names_line_and_field() {
    let e = err(&crlf(&[
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "m=audio x RTP/AVP 0",
    ]));
    assert_eq!(
        e.to_string(),
        "SDP line 4 (`m=audio x RTP/AVP 0`): port `x` is not a number"
    );
    let e = err(&crlf(&["v=0", "m=audio 70000 RTP/AVP 0"]));
    assert_eq!(
        e.to_string(),
        "SDP line 2 (`m=audio 70000 RTP/AVP 0`): port `70000` is out of range (0-65535)"
    );
    let e = err(&crlf(&["v=0", "m=audio 4000/0 RTP/AVP 0"]));
    assert!(e.to_string().contains("port count `0`"), "{e}");
    let e = err(&crlf(&["v=0", "m=audio 4000"]));
    assert!(e.to_string().contains("m= needs at least 3 fields"), "{e}");
}

#[test]
fn only_spaces_and_tabs_separate_fields() {
    // Found by the fuzzer: a form feed once split fields for the parser but not the rewrite.
    let e = err(b"v=0\r\nm=audio\x0c4000 RTP/AVP 0\r\n");
    assert!(e.to_string().contains("port `RTP` is not a number"), "{e}");
    let sdp = parse(b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio \t4000\tRTP/AVP  0 8\r\n");
    assert_eq!(sdp.media()[0].formats, vec!["0", "8"]);
    let out = sdp.rewrite(&plan(vec![stream(RTPARK, 40000, Some(40001))]));
    assert!(show(&out).contains("m=audio \t40000\tRTP/AVP  0 8\r\n"));
}

#[test]
fn empty_body_and_missing_version_are_rejected() {
    assert_eq!(err(b""), SdpError::Empty);
    assert_eq!(
        err(b"\r\n").to_string(),
        "SDP must start with a `v=` line, but line 1 is ``"
    );
    assert_eq!(
        err(b"o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n").to_string(),
        "SDP must start with a `v=` line, but line 1 is `o=- 1 1 IN IP4 192.0.2.1`"
    );
    assert!(matches!(
        err(b"INVITE sip:x SIP/2.0\r\n"),
        SdpError::NoVersion { .. }
    ));
}

#[test]
fn lines_not_of_the_x_equals_form_are_rejected() {
    assert_eq!(
        err(b"v=0\r\ns=-\r\nhello world\r\n").to_string(),
        "SDP line 3 (`hello world`): is not of the form `<letter>=<value>`"
    );
    assert!(matches!(
        err(b"v=0\r\n=x\r\n"),
        SdpError::BadLine { line: 2, .. }
    ));
    assert!(matches!(
        err(b"v=0\r\n1=x\r\n"),
        SdpError::BadLine { line: 2, .. }
    ));
    let e = err(b"v=0\rs=-\r\n");
    assert!(e.to_string().contains("carriage return"), "{e}");
    assert!(err(b"v=0\r\ns=a\0b\r\n").to_string().contains("NUL"));
}

#[test]
fn connection_lines_must_be_numeric_and_single() {
    let e = err(&crlf(&["v=0", "c=IN IP4 pbx.example.com"]));
    assert_eq!(
        e.to_string(),
        "SDP line 2 (`c=IN IP4 pbx.example.com`): `pbx.example.com` is not an IPv4 address (rtpark needs a numeric address)"
    );
    let e = err(&crlf(&["v=0", "c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.2"]));
    assert!(
        e.to_string().contains("second c= line at session level"),
        "{e}"
    );
    let e = err(&crlf(&["v=0", "c=IN IP7 192.0.2.1"]));
    assert!(e.to_string().contains("address type `IP7`"), "{e}");
    let e = err(&crlf(&["v=0", "c=ATM NSAP 47.0005"]));
    assert!(e.to_string().contains("network type `ATM`"), "{e}");
    let e = err(&crlf(&["v=0", "m=audio 4000 RTP/AVP 0", "a=rtcp:x"]));
    assert!(
        e.to_string().contains("a=rtcp port `x` is not a number"),
        "{e}"
    );
    let e = err(&crlf(&["v=0", "o=- 1 IN IP4 192.0.2.1"]));
    assert!(e.to_string().contains("o= needs 6 fields"), "{e}");
}

#[test]
fn host_name_in_origin_is_accepted() {
    let sdp = parse(&crlf(&["v=0", "o=- 1 1 IN IP4 pbx.example.com", "s=-"]));
    assert_eq!(sdp.origin(), None);
}

#[test]
fn size_and_media_count_limits() {
    let mut big = b"v=0\r\n".to_vec();
    big.resize(MAX_BODY_LEN + 1, b'\n');
    assert_eq!(
        err(&big),
        SdpError::TooLarge {
            len: MAX_BODY_LEN + 1,
            max: MAX_BODY_LEN
        }
    );
    let mut lines = vec!["v=0".to_owned(), "c=IN IP4 192.0.2.1".to_owned()];
    lines.extend((0..MAX_MEDIA).map(|i| format!("m=audio {} RTP/AVP 0", 4000 + 2 * i)));
    let ok: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(parse(&crlf(&ok)).media().len(), MAX_MEDIA);
    lines.push("m=audio 9000 RTP/AVP 0".to_owned());
    let too_many: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        err(&crlf(&too_many)),
        SdpError::TooManyMedia { max: MAX_MEDIA }
    );
}

#[test]
fn long_lines_are_shortened_in_messages() {
    let line = format!("m=audio {} RTP/AVP 0", "9".repeat(100));
    let e = err(&crlf(&["v=0", &line]));
    let SdpError::BadLine { text, .. } = e else {
        panic!("{e:?}")
    };
    assert!(text.ends_with('…') && text.chars().count() == 61, "{text}");
}
