//! rtpengine "ng" protocol: bencode round trips and every decoder error, and
//! requests exactly as the Kamailio 5.6 `rtpengine` module builds them.

use rtpark::control::bencode::{self, BencodeErrorKind, Value, MAX_DEPTH, MAX_INPUT};
use rtpark::control::ng::{
    self, encode_reply, parse_body, reply_error, reply_ok, reply_pong, split_cookie, IceMode,
    NgCommand, NgError,
};

/// `<len>:<s>`, written by hand so the tests do not lean on the encoder.
fn b(s: &str) -> String {
    format!("{}:{}", s.len(), s)
}

/// A dictionary of already-encoded key/value pairs, in the order given.
fn d(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("d");
    for (k, v) in pairs {
        out.push_str(&b(k));
        out.push_str(v);
    }
    out.push('e');
    out
}

fn l(items: &[&str]) -> String {
    let mut out = String::from("l");
    for i in items {
        out.push_str(&b(i));
    }
    out.push('e');
    out
}

const SDP: &str = "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\nt=0 0\r\nm=audio 2000 RTP/AVP 0 8 101\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn err_kind(input: &[u8]) -> (usize, BencodeErrorKind) {
    let e = bencode::decode(input).expect_err("input must be refused");
    (e.offset, e.kind)
}

// ---------------------------------------------------------------- bencode

#[test]
fn bencode_round_trips_every_kind_of_value() {
    let cases: &[&[u8]] = &[
        b"i0e",
        b"i42e",
        b"i-42e",
        b"i9223372036854775807e",
        b"i-9223372036854775808e",
        b"0:",
        b"4:spam",
        b"3:\x00\xff ",
        b"le",
        b"de",
        b"l4:spami7ee",
        b"d3:cow3:moo4:spaml1:a1:bee",
        // Unsorted keys keep their order: rtpengine and Kamailio do not sort.
        b"d7:command4:ping4:arefi1ee",
        b"lllleeee",
        b"d1:ad1:bd1:cleeee",
    ];
    for &input in cases {
        let v = bencode::decode(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(v.to_bytes(), input, "{input:?}");
        let mut out = b"prefix".to_vec();
        bencode::encode(&v, &mut out);
        assert_eq!(&out[6..], input);
    }
}

#[test]
fn bencode_decoded_values_are_what_they_say() {
    let v =
        bencode::decode(b"d3:inti-7e3:str5:hello3:bin2:\xff\x004:listl1:ai1ee3:num2:12e").unwrap();
    assert_eq!(v.get("int"), Some(&Value::Int(-7)));
    assert_eq!(v.get("str").and_then(Value::as_str), Some("hello"));
    assert_eq!(v.get("bin").and_then(Value::as_str), None, "not UTF-8");
    assert_eq!(
        v.get("bin").and_then(Value::as_bytes),
        Some(&b"\xff\x00"[..])
    );
    assert_eq!(
        v.get("list").and_then(Value::as_list).map(<[_]>::len),
        Some(2)
    );
    assert_eq!(
        v.get("num").and_then(Value::as_int),
        Some(12),
        "int as string"
    );
    assert_eq!(v.get("int").and_then(Value::as_int), Some(-7));
    assert_eq!(v.get("str").and_then(Value::as_int), None);
    assert_eq!(v.get("missing"), None);
    assert_eq!(Value::Int(1).get("x"), None);
    assert_eq!(v.kind(), "dictionary");
}

#[test]
fn bencode_builders_encode_exactly() {
    let v = Value::dict([
        ("sdp", Value::str("v=0")),
        ("result", Value::str("ok")),
        ("n", Value::int(-3)),
        ("l", Value::str_list(["a", "bc"])),
        ("e", Value::list(vec![])),
        ("x", Value::bytes(vec![0u8, 1])),
    ]);
    assert_eq!(
        v.to_bytes(),
        b"d1:ele1:ll1:a2:bce1:ni-3e6:result2:ok3:sdp3:v=01:x2:\x00\x01e".to_vec()
    );
    // Dict built directly keeps its order.
    let raw = Value::Dict(vec![
        (b"z".to_vec(), Value::int(1)),
        (b"a".to_vec(), Value::int(2)),
    ]);
    assert_eq!(raw.to_bytes(), b"d1:zi1e1:ai2ee");
}

#[test]
fn bencode_refuses_empty_and_oversized_input() {
    assert_eq!(err_kind(b""), (0, BencodeErrorKind::Empty));
    let mut big = b"l".to_vec();
    big.resize(MAX_INPUT, b'e');
    // Exactly MAX_INPUT bytes is decoded (and found to have trailing bytes) ...
    assert!(matches!(
        err_kind(&big).1,
        BencodeErrorKind::TrailingBytes { .. }
    ));
    big.push(b'e');
    // ... one more is refused before decoding.
    assert_eq!(
        err_kind(&big),
        (MAX_INPUT, BencodeErrorKind::TooLarge { len: MAX_INPUT + 1 })
    );
    let msg = bencode::decode(&big).unwrap_err().to_string();
    assert!(msg.contains("1048577") && msg.contains("1048576"), "{msg}");
}

#[test]
fn bencode_limits_nesting_depth() {
    let ok = format!("{}{}", "l".repeat(MAX_DEPTH), "e".repeat(MAX_DEPTH));
    assert!(bencode::decode(ok.as_bytes()).is_ok());
    let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 1), "e".repeat(MAX_DEPTH + 1));
    assert_eq!(
        err_kind(deep.as_bytes()),
        (MAX_DEPTH, BencodeErrorKind::TooDeep)
    );
    let deep_dicts = format!(
        "{}i1e{}",
        "d1:a".repeat(MAX_DEPTH + 1),
        "e".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(err_kind(deep_dicts.as_bytes()).1, BencodeErrorKind::TooDeep);
    // A hostile megabyte of openers is refused at the limit, not by the stack.
    let hostile = vec![b'l'; MAX_INPUT];
    assert_eq!(err_kind(&hostile), (MAX_DEPTH, BencodeErrorKind::TooDeep));
}

#[test]
fn bencode_refuses_leading_zeros_and_negative_zero() {
    assert_eq!(err_kind(b"i03e"), (1, BencodeErrorKind::LeadingZero));
    assert_eq!(err_kind(b"i-03e"), (2, BencodeErrorKind::LeadingZero));
    assert_eq!(err_kind(b"i00e"), (1, BencodeErrorKind::LeadingZero));
    assert_eq!(err_kind(b"03:abc"), (0, BencodeErrorKind::LeadingZero));
    assert_eq!(err_kind(b"l00:e"), (1, BencodeErrorKind::LeadingZero));
    assert_eq!(err_kind(b"i-0e"), (1, BencodeErrorKind::NegativeZero));
}

#[test]
fn bencode_refuses_malformed_integers() {
    assert_eq!(err_kind(b"ie"), (1, BencodeErrorKind::EmptyInteger));
    assert_eq!(err_kind(b"i-e"), (2, BencodeErrorKind::EmptyInteger));
    assert_eq!(
        err_kind(b"i1x2e"),
        (2, BencodeErrorKind::UnexpectedByte(b'x'))
    );
    assert_eq!(
        err_kind(b"i+1e"),
        (1, BencodeErrorKind::UnexpectedByte(b'+'))
    );
    assert_eq!(
        err_kind(b"i 1e"),
        (1, BencodeErrorKind::UnexpectedByte(b' '))
    );
    assert_eq!(
        err_kind(b"i9223372036854775808e"),
        (1, BencodeErrorKind::IntegerOverflow)
    );
    assert_eq!(
        err_kind(b"i-99999999999999999999e").1,
        BencodeErrorKind::IntegerOverflow
    );
}

#[test]
fn bencode_refuses_truncated_input_at_every_cut() {
    let doc = d(&[
        ("command", b("offer")),
        ("flags", l(&["trust-address"])),
        ("n", "i123e".to_string()),
    ]);
    let doc = doc.as_bytes();
    for cut in 1..doc.len() {
        let e = bencode::decode(&doc[..cut]).expect_err("a prefix is incomplete");
        assert!(
            matches!(
                e.kind,
                BencodeErrorKind::UnexpectedEnd | BencodeErrorKind::StringTooLong { .. }
            ),
            "cut {cut}: {e}"
        );
        assert!(e.offset <= cut);
    }
    assert_eq!(err_kind(b"l"), (1, BencodeErrorKind::UnexpectedEnd));
    assert_eq!(err_kind(b"i12"), (3, BencodeErrorKind::UnexpectedEnd));
    assert_eq!(err_kind(b"12"), (2, BencodeErrorKind::UnexpectedEnd));
    assert_eq!(
        err_kind(b"5:abc"),
        (0, BencodeErrorKind::StringTooLong { len: 5, left: 3 })
    );
}

#[test]
fn bencode_refuses_huge_string_lengths() {
    assert_eq!(
        err_kind(b"99999999999999999999999999:x"),
        (
            0,
            BencodeErrorKind::StringTooLong {
                len: u64::MAX,
                left: 1
            }
        )
    );
    assert_eq!(
        err_kind(b"l4294967296:e"),
        (
            1,
            BencodeErrorKind::StringTooLong {
                len: 4294967296,
                left: 1
            }
        )
    );
    assert_eq!(
        err_kind(b"3x:abc"),
        (1, BencodeErrorKind::UnexpectedByte(b'x'))
    );
}

#[test]
fn bencode_refuses_trailing_bytes() {
    assert_eq!(
        err_kind(b"d7:command4:pingee"),
        (17, BencodeErrorKind::TrailingBytes { count: 1 })
    );
    assert_eq!(
        err_kind(b"i1ei2e"),
        (3, BencodeErrorKind::TrailingBytes { count: 3 })
    );
    assert_eq!(
        err_kind(b"de\n"),
        (2, BencodeErrorKind::TrailingBytes { count: 1 })
    );
}

#[test]
fn bencode_refuses_non_string_keys() {
    assert_eq!(
        err_kind(b"di1e1:ae"),
        (1, BencodeErrorKind::KeyNotString("integer"))
    );
    assert_eq!(
        err_kind(b"dle1:ae"),
        (1, BencodeErrorKind::KeyNotString("list"))
    );
    assert_eq!(
        err_kind(b"dde1:ae"),
        (1, BencodeErrorKind::KeyNotString("dictionary"))
    );
    assert_eq!(err_kind(b"dx"), (1, BencodeErrorKind::UnexpectedByte(b'x')));
    assert_eq!(
        err_kind(b"d1:ae"),
        (4, BencodeErrorKind::UnexpectedByte(b'e'))
    );
}

#[test]
fn bencode_refuses_duplicate_keys() {
    assert_eq!(
        err_kind(b"d1:ai1e1:bi2e1:ai3ee"),
        (13, BencodeErrorKind::DuplicateKey("a".into()))
    );
    // The same key in different dictionaries is fine.
    assert!(bencode::decode(b"d1:ad1:ai1ee1:bd1:ai1eee").is_ok());
    let msg = bencode::decode(b"d7:call-id1:x7:call-id1:ye")
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "invalid bencode at byte 13: the dictionary key \"call-id\" appears twice"
    );
    // Large dictionaries too: a repeat of the first key, at every size around
    // where the check changes method, and distinct keys still pass.
    for n in [15, 16, 17, 40] {
        let mut doc = b"d".to_vec();
        for i in 0..n {
            doc.extend_from_slice(format!("3:k{i:02}i{i}e").as_bytes());
        }
        let mut distinct = doc.clone();
        distinct.push(b'e');
        assert!(bencode::decode(&distinct).is_ok(), "{n} distinct keys");
        let at = doc.len();
        doc.extend_from_slice(b"3:k00i0ee");
        assert_eq!(
            err_kind(&doc),
            (at, BencodeErrorKind::DuplicateKey("k00".into())),
            "a repeat after {n} keys"
        );
    }
}

#[test]
fn bencode_refuses_stray_bytes() {
    assert_eq!(err_kind(b"e"), (0, BencodeErrorKind::UnexpectedByte(b'e')));
    assert_eq!(err_kind(b"x"), (0, BencodeErrorKind::UnexpectedByte(b'x')));
    assert_eq!(err_kind(b"-1"), (0, BencodeErrorKind::UnexpectedByte(b'-')));
    assert_eq!(
        err_kind(b"lxe"),
        (1, BencodeErrorKind::UnexpectedByte(b'x'))
    );
}

// ---------------------------------------------------------------- framing

#[test]
fn udp_cookie_is_split_at_the_first_space() {
    let (cookie, body) = split_cookie(b"5323_1 d7:command4:pinge").unwrap();
    assert_eq!(cookie, b"5323_1");
    assert_eq!(body, b"d7:command4:pinge");
    // An SDP body is full of spaces; only the first one frames.
    let (cookie, body) = split_cookie(b"1_2_3 d3:sdp5:a b ce").unwrap();
    assert_eq!(cookie, b"1_2_3");
    assert_eq!(body, b"d3:sdp5:a b ce");
    let (cookie, body) = split_cookie(b"abc ").unwrap();
    assert_eq!((cookie, body), (&b"abc"[..], &b""[..]));
    assert_eq!(split_cookie(b"d7:command4:pinge"), Err(NgError::NoCookie));
    assert_eq!(split_cookie(b" d7:command4:pinge"), Err(NgError::NoCookie));
    assert_eq!(split_cookie(b""), Err(NgError::NoCookie));
}

#[test]
fn replies_encode_exactly() {
    assert_eq!(
        encode_reply(Some(b"5323_1"), &reply_pong()),
        b"5323_1 d6:result4:ponge"
    );
    assert_eq!(encode_reply(None, &reply_pong()), b"d6:result4:ponge");
    assert_eq!(
        encode_reply(
            Some(b"7_1234_0"),
            &reply_ok(vec![("sdp", Value::str("v=0\r\n"))])
        ),
        b"7_1234_0 d6:result2:ok3:sdp5:v=0\r\ne"
    );
    assert_eq!(encode_reply(None, &reply_ok(vec![])), b"d6:result2:oke");
    assert_eq!(
        encode_reply(None, &reply_error("No call-id in message")),
        b"d12:error-reason21:No call-id in message6:result5:errore"
    );
    // A caller cannot smuggle a second result in.
    assert_eq!(
        reply_ok(vec![("result", Value::str("error"))]).to_bytes(),
        b"d6:result2:oke"
    );
    assert_eq!(
        NgError::NoSdp.to_reply().to_bytes(),
        b"d12:error-reason22:No SDP body in message6:result5:errore"
    );
}

#[test]
fn empty_and_non_dictionary_bodies_are_refused() {
    assert_eq!(parse_body(b""), Err(NgError::NoPayload));
    assert_eq!(
        parse_body(b"Invalid data (no payload)")
            .unwrap_err()
            .reason(),
        "Invalid NG data format: expected a bencode dictionary, got something that is not bencode"
    );
    assert_eq!(
        parse_body(br#"{"command":"ping"}"#),
        Err(NgError::NotADictionary("a JSON document"))
    );
    assert_eq!(parse_body(b"le"), Err(NgError::NotADictionary("a list")));
    let e = parse_body(b"d7:command4:ping").unwrap_err();
    assert!(matches!(e, NgError::Bencode(_)), "{e:?}");
    assert_eq!(
        e.reason(),
        "Could not decode bencode dictionary: invalid bencode at byte 16: the input ends inside a value"
    );
    assert_eq!(
        ng::parse_request(&Value::int(1)),
        Err(NgError::NotADictionary("an integer"))
    );
}

// ---------------------------------------------------------------- commands

#[test]
fn kamailio_ping() {
    let req = parse_body(b"d7:command4:pinge").unwrap();
    assert_eq!(req.command, NgCommand::Ping);
    assert_eq!(req.call_id, None);
}

#[test]
fn command_names_are_rtpengines() {
    for (name, cmd) in [
        ("play media", NgCommand::PlayMedia),
        ("stop media", NgCommand::StopMedia),
        ("block media", NgCommand::BlockMedia),
        ("unblock media", NgCommand::UnblockMedia),
        ("silence media", NgCommand::SilenceMedia),
        ("unsilence media", NgCommand::UnsilenceMedia),
        ("start recording", NgCommand::StartRecording),
        ("block DTMF", NgCommand::BlockDtmf),
        ("statistics", NgCommand::Statistics),
        ("list", NgCommand::List),
        ("CLI", NgCommand::Cli),
    ] {
        assert_eq!(NgCommand::from_name(name.as_bytes()), Some(cmd), "{name}");
    }
    assert_eq!(NgCommand::PlayMedia.name(), "play media");
    assert_eq!(NgCommand::BlockDtmf.to_string(), "block DTMF");
    assert_eq!(NgCommand::from_name(b"play_media"), None);
    assert_eq!(NgCommand::from_name(b"block dtmf"), None);
}

#[test]
fn unknown_or_missing_command_is_refused() {
    let e = parse_body(d(&[("command", b("foo"))]).as_bytes()).unwrap_err();
    assert_eq!(e, NgError::UnknownCommand("foo".into()));
    assert_eq!(e.reason(), "Unrecognized command \"foo\"");
    let long = "x".repeat(500);
    let e = parse_body(d(&[("command", b(&long))]).as_bytes()).unwrap_err();
    assert!(
        e.reason().len() < 100,
        "client text is clipped: {}",
        e.reason()
    );

    let e = parse_body(d(&[("call-id", b("abc"))]).as_bytes()).unwrap_err();
    assert_eq!(e, NgError::NoCommand);
    assert_eq!(e.reason(), "Dictionary contains no key \"command\"");

    let e = parse_body(b"d7:commandi1ee").unwrap_err();
    assert_eq!(
        e.reason(),
        "Wrong type for key \"command\": expected a string, got a integer"
    );
}

/// The offer from the brief: keys in the order a Kamailio 5.6 script produced them.
#[test]
fn kamailio_offer_with_replace_ice_and_received_from() {
    let body = d(&[
        ("command", b("offer")),
        ("call-id", b("1-27141@127.0.0.1")),
        ("sdp", b(SDP)),
        ("from-tag", b("27141UAC1")),
        ("ICE", b("remove")),
        ("replace", l(&["origin", "session-connection"])),
        ("received-from", l(&["IP4", "127.0.0.1"])),
        ("supports", l(&["load limit"])),
    ]);
    assert!(body.starts_with("d7:command5:offer7:call-id17:1-27141@127.0.0.13:sdp"));
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.command, NgCommand::Offer);
    assert_eq!(req.call_id.as_deref(), Some("1-27141@127.0.0.1"));
    assert_eq!(req.from_tag.as_deref(), Some("27141UAC1"));
    assert_eq!(req.to_tag, None);
    assert_eq!(req.sdp.as_deref(), Some(SDP.as_bytes()));
    assert_eq!(req.ice, Some(IceMode::Remove));
    assert!(req.replace.origin && req.replace.session_connection);
    assert!(req.replace.other.is_empty());
    assert_eq!(
        req.received_from,
        Some(("IP4".to_string(), "127.0.0.1".to_string()))
    );
    assert!(req.supports("load limit"));
    assert_eq!(req.flags, Default::default());
}

/// What `rtpengine_offer("trust-address symmetric replace-origin
/// replace-session-connection ICE=remove rtcp-mux-demux direction=internal
/// direction=external RTP/AVP via-branch=1 codec-strip-G729 media-handover")` puts on
/// the wire, in the module's key order.
#[test]
fn kamailio_offer_with_every_translated_option() {
    let codec = format!("d{}{}e", b("strip"), l(&["G729"]));
    let body = d(&[
        ("supports", l(&["load limit"])),
        ("sdp", b(SDP)),
        ("ICE", b("remove")),
        ("direction", l(&["internal", "external"])),
        (
            "flags",
            l(&["trust-address", "symmetric", "media-handover"]),
        ),
        ("replace", l(&["origin", "session-connection"])),
        ("codec", codec),
        ("transport-protocol", b("RTP/AVP")),
        ("rtcp-mux", l(&["demux"])),
        ("call-id", b("a84b4c76e66710@pc33.atlanta.example.com")),
        ("via-branch", b("z9hG4bK776asdhds")),
        ("received-from", l(&["IP6", "2001:db8::1"])),
        ("from-tag", b("1928301774")),
        ("command", b("offer")),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.command, NgCommand::Offer);
    assert!(req.flags.trust_address && req.flags.symmetric && req.flags.media_handover);
    assert!(!req.flags.asymmetric && !req.flags.strict_source);
    assert_eq!(req.direction, ["internal", "external"]);
    assert_eq!(req.rtcp_mux, ["demux"]);
    assert_eq!(req.codec.strip, ["G729"]);
    assert_eq!(req.transport_protocol.as_deref(), Some("RTP/AVP"));
    assert_eq!(req.via_branch.as_deref(), Some("z9hG4bK776asdhds"));
    assert_eq!(
        req.received_from,
        Some(("IP6".to_string(), "2001:db8::1".to_string()))
    );
}

#[test]
fn generic_key_value_options_arrive_as_strings() {
    // `address-family=IP6 media-address=192.0.2.9 TOS=184 delete-delay=0 label=caller
    // ICE=force-relay record-call=yes all=all` in a Kamailio flag string.
    let body = d(&[
        ("supports", l(&["load limit"])),
        ("sdp", b(SDP)),
        (
            "flags",
            l(&[
                "strict-source",
                "port-latching",
                "loop-protect",
                "no-rtcp-attribute",
            ]),
        ),
        ("address-family", b("IP6")),
        ("media-address", b("192.0.2.9")),
        ("TOS", "i184e".to_string()),
        ("delete delay", "i0e".to_string()),
        ("label", b("caller")),
        ("ICE", b("force-relay")),
        ("record-call", b("yes")),
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("command", b("offer")),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.address_family.as_deref(), Some("IP6"));
    assert_eq!(req.media_address.as_deref(), Some("192.0.2.9"));
    assert_eq!(req.tos, Some(184));
    assert_eq!(req.delete_delay, Some(0));
    assert_eq!(req.label.as_deref(), Some("caller"));
    assert_eq!(req.ice, Some(IceMode::ForceRelay));
    assert!(req.flags.record_call);
    assert!(req.flags.strict_source && req.flags.port_latching && req.flags.loop_protect);
    assert_eq!(
        req.flags.other,
        ["no-rtcp-attribute"],
        "unknown flags pass through"
    );
}

#[test]
fn list_keys_also_take_comma_separated_strings_and_space_spellings() {
    let body = d(&[
        ("command", b("offer")),
        ("call id", b("c1")),
        ("from tag", b("f1")),
        ("SDP", b(SDP)),
        ("flags", b("trust address,asymmetric")),
        ("replace", b("session connection")),
        ("ice", l(&["lite", "force"])),
        ("rtcp mux", b("offer,accept")),
        ("received from", b("203.0.113.5")),
        ("supports", b("load limit")),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.call_id.as_deref(), Some("c1"));
    assert_eq!(req.from_tag.as_deref(), Some("f1"));
    assert!(req.flags.trust_address && req.flags.asymmetric);
    assert!(req.replace.session_connection && !req.replace.origin);
    assert_eq!(
        req.ice,
        Some(IceMode::Force),
        "ICE-lite options are ignored"
    );
    assert_eq!(req.rtcp_mux, ["offer", "accept"]);
    assert_eq!(
        req.received_from,
        Some(("IP4".to_string(), "203.0.113.5".to_string()))
    );
    assert!(req.supports("load limit"));
}

#[test]
fn unknown_keys_are_ignored() {
    let body = d(&[
        ("command", b("offer")),
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("sdp", b(SDP)),
        ("SDES", l(&["off"])),
        ("T.38", l(&["decode"])),
        ("metadata", b("x=1")),
        ("some-future-key", "d1:ai1ee".to_string()),
    ]);
    assert!(parse_body(body.as_bytes()).is_ok());
}

#[test]
fn offer_checks_follow_rtpengines_order() {
    let full = [
        ("command", b("offer")),
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("sdp", b(SDP)),
    ];
    assert!(parse_body(d(&full).as_bytes()).is_ok());
    let without = |skip: &[&str]| {
        let pairs: Vec<_> = full
            .iter()
            .filter(|(k, _)| !skip.contains(k))
            .cloned()
            .collect();
        parse_body(d(&pairs).as_bytes()).unwrap_err()
    };
    assert_eq!(without(&["sdp"]), NgError::NoSdp);
    assert_eq!(without(&["sdp", "call-id"]), NgError::NoSdp);
    assert_eq!(without(&["call-id"]), NgError::NoCallId);
    assert_eq!(without(&["call-id", "from-tag"]), NgError::NoCallId);
    assert_eq!(without(&["from-tag"]), NgError::NoFromTag);
    assert_eq!(NgError::NoSdp.reason(), "No SDP body in message");
    assert_eq!(NgError::NoCallId.reason(), "No call-id in message");
    assert_eq!(NgError::NoFromTag.reason(), "No from-tag in message");
    // An empty SDP is as good as none.
    let mut empty_sdp = full.to_vec();
    empty_sdp[3].1 = b("");
    assert_eq!(parse_body(d(&empty_sdp).as_bytes()), Err(NgError::NoSdp));
}

#[test]
fn kamailio_answer_carries_the_to_tag() {
    let body = d(&[
        ("supports", l(&["load limit"])),
        ("sdp", b(SDP)),
        ("replace", l(&["origin", "session-connection"])),
        ("call-id", b("1-27141@127.0.0.1")),
        ("received-from", l(&["IP4", "127.0.0.1"])),
        ("from-tag", b("27141UAC1")),
        ("to-tag", b("27143UAS1")),
        ("command", b("answer")),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.command, NgCommand::Answer);
    assert_eq!(req.to_tag.as_deref(), Some("27143UAS1"));

    let no_to = d(&[
        ("sdp", b(SDP)),
        ("call-id", b("1-27141@127.0.0.1")),
        ("from-tag", b("27141UAC1")),
        ("command", b("answer")),
    ]);
    let e = parse_body(no_to.as_bytes()).unwrap_err();
    assert_eq!(e, NgError::NoToTag);
    assert_eq!(e.reason(), "No to-tag in message");
}

#[test]
fn kamailio_delete() {
    let body = d(&[
        ("supports", l(&["load limit"])),
        ("call-id", b("1-27141@127.0.0.1")),
        ("received-from", l(&["IP4", "127.0.0.1"])),
        ("from-tag", b("27141UAC1")),
        ("command", b("delete")),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.command, NgCommand::Delete);
    assert_eq!(req.to_tag, None);
    assert!(!req.flags.fatal);

    let with_delay = d(&[
        ("flags", l(&["fatal"])),
        ("delete delay", "i5e".to_string()),
        ("call-id", b("c1")),
        ("command", b("delete")),
    ]);
    let req = parse_body(with_delay.as_bytes()).unwrap();
    assert!(req.flags.fatal);
    assert_eq!(req.delete_delay, Some(5));
    assert_eq!(req.from_tag, None, "from-tag is optional for delete");

    let e = parse_body(d(&[("command", b("delete"))]).as_bytes()).unwrap_err();
    assert_eq!(e.reason(), "No call-id in message");
    let e = parse_body(d(&[("command", b("delete")), ("call-id", b(""))]).as_bytes()).unwrap_err();
    assert_eq!(e, NgError::NoCallId, "an empty call-id is none");
}

#[test]
fn query_and_list() {
    let q = d(&[
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("command", b("query")),
    ]);
    assert_eq!(parse_body(q.as_bytes()).unwrap().command, NgCommand::Query);
    assert_eq!(
        parse_body(d(&[("command", b("query"))]).as_bytes()),
        Err(NgError::NoCallId)
    );
    let list = parse_body(d(&[("command", b("list")), ("limit", b("10"))]).as_bytes()).unwrap();
    assert_eq!(list.limit, Some(10));
    let e =
        parse_body(d(&[("command", b("list")), ("limit", "i-1e".into())]).as_bytes()).unwrap_err();
    assert_eq!(
        e.reason(),
        "Invalid value for key \"limit\": invalid limit, must be >= 0"
    );
    assert_eq!(
        parse_body(b"d7:command10:statisticse").unwrap().command,
        NgCommand::Statistics
    );
}

/// `rtpengine_play_media("file=/var/lib/rtpark/moh.wav repeat-times=3")` in a
/// request route: from-tag, to-tag and the options as strings.
#[test]
fn kamailio_play_media_with_file() {
    let body = d(&[
        ("supports", l(&["load limit"])),
        ("file", b("/var/lib/rtpark/moh.wav")),
        ("repeat-times", b("3")),
        ("call-id", b("1-27141@127.0.0.1")),
        ("received-from", l(&["IP4", "127.0.0.1"])),
        ("from-tag", b("27141UAC1")),
        ("to-tag", b("27143UAS1")),
        ("command", b("play media")),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.command, NgCommand::PlayMedia);
    assert_eq!(req.file.as_deref(), Some("/var/lib/rtpark/moh.wav"));
    assert_eq!(req.repeat_times, Some(3));
    assert_eq!(req.from_tag.as_deref(), Some("27141UAC1"));
}

#[test]
fn play_media_sources_and_party() {
    let base = |extra: &[(&str, String)]| {
        let mut pairs = vec![("command", b("play media")), ("call-id", b("c1"))];
        pairs.extend_from_slice(extra);
        parse_body(d(&pairs).as_bytes())
    };
    let e = base(&[("file", b("a.wav"))]).unwrap_err();
    assert_eq!(e, NgError::NoParty);
    assert!(e.reason().starts_with("No participant party specified"));
    let e = base(&[("from-tag", b("f1"))]).unwrap_err();
    assert_eq!(e, NgError::NoMedia);
    assert!(e.reason().starts_with("No media file specified"));

    let req = base(&[("flags", l(&["all"])), ("db-id", "i12e".into())]).unwrap();
    assert!(req.flags.all);
    assert_eq!(req.db_id, Some(12));
    let req = base(&[("all", b("all")), ("blob", b("RIFF...."))]).unwrap();
    assert!(req.flags.all);
    assert_eq!(req.blob.as_deref(), Some(&b"RIFF...."[..]));
    let req = base(&[("label", b("callee")), ("blob64", b("UklGRg=="))]).unwrap();
    assert_eq!(req.blob.as_deref(), Some(&b"RIFF"[..]));
    let req = base(&[
        ("address", b("192.0.2.1")),
        ("file", b("a.wav")),
        ("start-pos", "i1500e".into()),
        ("duration", b("20000")),
    ])
    .unwrap();
    assert_eq!(req.address.as_deref(), Some("192.0.2.1"));
    assert_eq!((req.start_pos, req.duration), (Some(1500), Some(20000)));
    // db-id 0 is no entry.
    assert_eq!(
        base(&[("from-tag", b("f")), ("db-id", "i0e".into())]),
        Err(NgError::NoMedia)
    );
    let e = base(&[("from-tag", b("f")), ("blob64", b("!!"))]).unwrap_err();
    assert_eq!(
        e.reason(),
        "Invalid value for key \"blob64\": not valid base64"
    );
}

#[test]
fn stop_block_and_silence_media() {
    let stop = d(&[
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("command", b("stop media")),
    ]);
    assert_eq!(
        parse_body(stop.as_bytes()).unwrap().command,
        NgCommand::StopMedia
    );
    assert_eq!(
        parse_body(d(&[("call-id", b("c1")), ("command", b("stop media"))]).as_bytes()),
        Err(NgError::NoParty)
    );
    // Without `directional` Kamailio sends no from-tag: the whole call is meant.
    for cmd in [
        "block media",
        "unblock media",
        "silence media",
        "unsilence media",
    ] {
        let whole = d(&[
            ("supports", l(&["load limit"])),
            ("call-id", b("c1")),
            ("received-from", l(&["IP4", "127.0.0.1"])),
            ("command", b(cmd)),
        ]);
        let req = parse_body(whole.as_bytes()).unwrap();
        assert_eq!(req.command.name(), cmd);
        assert_eq!(req.from_tag, None);
        let directional = d(&[
            ("call-id", b("c1")),
            ("from-tag", b("f1")),
            ("command", b(cmd)),
        ]);
        assert_eq!(
            parse_body(directional.as_bytes())
                .unwrap()
                .from_tag
                .as_deref(),
            Some("f1")
        );
        assert_eq!(
            parse_body(d(&[("command", b(cmd))]).as_bytes()),
            Err(NgError::NoCallId)
        );
    }
}

#[test]
fn offer_with_codec_dict_and_moh() {
    let codec = format!(
        "d{}{}{}{}{}{}e",
        b("strip"),
        l(&["all"]),
        b("offer"),
        l(&["PCMU", "PCMA"]),
        b("transcode"),
        b("opus,G722"),
    );
    let moh = format!(
        "d{}{}{}{}{}{}{}{}e",
        b("file"),
        b("/moh/jazz.wav"),
        b("db-id"),
        b("7"),
        b("mode"),
        b("sendrecv"),
        b("connection"),
        b("zero"),
    );
    let body = d(&[
        ("command", b("offer")),
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("sdp", b(SDP)),
        ("codec", codec),
        ("moh", moh),
    ]);
    let req = parse_body(body.as_bytes()).unwrap();
    assert_eq!(req.codec.strip, ["all"]);
    assert_eq!(req.codec.offer, ["PCMU", "PCMA"]);
    assert_eq!(req.codec.transcode, ["opus", "G722"]);
    let moh = req.moh.unwrap();
    assert_eq!(moh.file.as_deref(), Some("/moh/jazz.wav"));
    assert_eq!(moh.db_id, Some(7));
    assert_eq!(moh.mode.as_deref(), Some("sendrecv"));
    assert_eq!(moh.connection.as_deref(), Some("zero"));
    assert_eq!(moh.blob, None);
}

#[test]
fn wrong_types_name_the_key() {
    let offer = |extra: (&str, String)| {
        let pairs = [
            ("command", b("offer")),
            ("from-tag", b("f1")),
            ("sdp", b(SDP)),
            extra,
        ];
        parse_body(d(&pairs).as_bytes()).unwrap_err().reason()
    };
    assert_eq!(
        offer(("call-id", l(&["c1"]))),
        "Wrong type for key \"call-id\": expected a string, got a list"
    );
    assert_eq!(
        offer(("flags", "d1:ai1ee".into())),
        "Wrong type for key \"flags\": expected a list of strings, got a dictionary"
    );
    assert_eq!(
        offer(("flags", "li1ee".into())),
        "Wrong type for key \"flags\": expected a list of strings, got a integer"
    );
    assert_eq!(
        offer(("codec", l(&["PCMA"]))),
        "Wrong type for key \"codec\": expected a dictionary, got a list"
    );
    assert_eq!(
        offer(("codec", format!("d{}i1ee", b("strip")))),
        "Wrong type for key \"codec.strip\": expected a list of strings, got a integer"
    );
    assert_eq!(
        offer(("moh", format!("d{}{}e", b("db-id"), b("seven")))),
        "Invalid value for key \"moh.db-id\": \"seven\" is not an integer"
    );
    assert_eq!(
        offer(("received-from", l(&["IP4"]))),
        "Invalid value for key \"received-from\": expected a list of an address family and an address, like [\"IP4\", \"192.0.2.1\"], got 1 items"
    );
    assert_eq!(
        offer(("repeat-times", "le".into())),
        "Wrong type for key \"repeat-times\": expected an integer, got a list"
    );
    // Non-UTF-8 text where rtpark needs text.
    let raw = b"d7:command5:offer7:call-id2:\xff\xfe8:from-tag1:f3:sdp3:v=0e";
    assert_eq!(
        parse_body(raw).unwrap_err().reason(),
        "Invalid value for key \"call-id\": not valid UTF-8"
    );
    // The SDP is bytes; it need not be UTF-8.
    let raw = b"d7:command5:offer7:call-id1:c8:from-tag1:f3:sdp3:\xff\xfe\xfde";
    assert_eq!(
        parse_body(raw).unwrap().sdp.as_deref(),
        Some(&b"\xff\xfe\xfd"[..])
    );
}

#[test]
fn integer_keys_accept_decimal_strings_only() {
    let play = |v: String| {
        let pairs = [
            ("command", b("play media")),
            ("call-id", b("c1")),
            ("from-tag", b("f1")),
            ("file", b("a.wav")),
            ("repeat-times", v),
        ];
        parse_body(d(&pairs).as_bytes())
    };
    assert_eq!(play("i4e".into()).unwrap().repeat_times, Some(4));
    assert_eq!(play(b("4")).unwrap().repeat_times, Some(4));
    assert_eq!(play(b("-1")).unwrap().repeat_times, Some(-1));
    assert_eq!(
        play(b("4 times")).unwrap_err().reason(),
        "Invalid value for key \"repeat-times\": \"4 times\" is not an integer"
    );
}

#[test]
fn fuzz_checks_hold_on_these_requests() {
    use rtpark::control::ng::fuzzing::{check_bencode, check_ng_request};
    let offer = d(&[
        ("command", b("offer")),
        ("call-id", b("c1")),
        ("from-tag", b("f1")),
        ("sdp", b(SDP)),
    ]);
    let inputs: Vec<Vec<u8>> = vec![
        b"5323_1 d7:command4:pinge".to_vec(),
        b"d7:command4:pinge".to_vec(),
        format!("7_99_1 {offer}").into_bytes(),
        b" d7:command4:pinge".to_vec(),
        b"x d7:command3:fooe".to_vec(),
        b"1 ".to_vec(),
        b"1 {\"command\":\"ping\"}".to_vec(),
        vec![b'l'; 100],
        vec![],
    ];
    for input in &inputs {
        check_ng_request(input);
        check_bencode(input);
    }
}
