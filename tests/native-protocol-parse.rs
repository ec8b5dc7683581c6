//! Native protocol v1 parsing and formatting, table-driven: every command in its
//! valid forms, every way a line can be wrong, id echo and event lines.

use rtpark::control::native::{format_event, format_reply, parse_request, Request, COMMANDS};
use rtpark::control::{
    CallInfo, Codec, Command, ControlError, CreateLeg, ErrorCode, Event, LegCounters, LegCreated,
    LegInfo, Reply, Stats, UpdateLeg,
};
use serde_json::{json, Value};

fn addr(s: &str) -> Option<std::net::SocketAddr> {
    Some(s.parse().expect("test address"))
}

fn codec(pt: u8, name: &str, rate: u32, channels: u8) -> Codec {
    Codec {
        pt,
        name: name.into(),
        rate,
        channels,
    }
}

fn create(call: &str) -> CreateLeg {
    CreateLeg {
        call: call.into(),
        ..Default::default()
    }
}

fn update(leg: &str) -> UpdateLeg {
    UpdateLeg {
        leg: leg.into(),
        ..Default::default()
    }
}

#[test]
fn valid_commands_parse() {
    let cases: Vec<(&str, Command)> = vec![
        (r#"{"cmd":"ping"}"#, Command::Ping),
        (r#"{"cmd":"ping","extra":{"ignored":true}}"#, Command::Ping),
        (
            r#"{"cmd":"create_leg","call":"c1"}"#,
            Command::CreateLeg(create("c1")),
        ),
        (
            r#"{"cmd":"create_leg","call":"c1","leg":"a","remote":"192.0.2.1:30000"}"#,
            Command::CreateLeg(CreateLeg {
                leg: Some("a".into()),
                remote: addr("192.0.2.1:30000"),
                ..create("c1")
            }),
        ),
        (
            r#"{"cmd":"create_leg","call":"c1","remote":"[::1]:5000","remote_rtcp":"[2001:db8::7]:5001"}"#,
            Command::CreateLeg(CreateLeg {
                remote: addr("[::1]:5000"),
                remote_rtcp: addr("[2001:db8::7]:5001"),
                ..create("c1")
            }),
        ),
        (
            r#"{"cmd":"create_leg","call":"c1","trust_address":true,"rtcp_mux":true,"silent":true,"media_timeout":0}"#,
            Command::CreateLeg(CreateLeg {
                trust_address: true,
                rtcp_mux: true,
                silent: true,
                media_timeout: Some(0),
                ..create("c1")
            }),
        ),
        (
            r#"{"cmd":"create_leg","call":"c1","media_timeout":4294967295,"trust_address":false}"#,
            Command::CreateLeg(CreateLeg {
                media_timeout: Some(u32::MAX),
                ..create("c1")
            }),
        ),
        (
            r#"{"cmd":"create_leg","call":"c1","codecs":[{"pt":0,"name":"PCMU","rate":8000},{"pt":101,"name":"telephone-event","rate":8000,"channels":1,"fmtp":"0-16"},{"pt":111,"name":"opus","rate":48000,"channels":2}]}"#,
            Command::CreateLeg(CreateLeg {
                codecs: vec![
                    codec(0, "PCMU", 8000, 1),
                    codec(101, "telephone-event", 8000, 1),
                    codec(111, "opus", 48000, 2),
                ],
                ..create("c1")
            }),
        ),
        (
            r#"{"cmd":"create_leg","call":"c1","codecs":[],"leg":null}"#,
            Command::CreateLeg(create("c1")),
        ),
        (
            r#"{"cmd":"update_leg","leg":"a"}"#,
            Command::UpdateLeg(update("a")),
        ),
        (
            r#"{"cmd":"update_leg","leg":"a","remote":"10.0.0.2:4000","remote_rtcp":"10.0.0.2:4001","codecs":[{"pt":8,"name":"PCMA","rate":8000}],"rtcp_mux":false,"silent":true}"#,
            Command::UpdateLeg(UpdateLeg {
                remote: addr("10.0.0.2:4000"),
                remote_rtcp: addr("10.0.0.2:4001"),
                codecs: Some(vec![codec(8, "PCMA", 8000, 1)]),
                rtcp_mux: Some(false),
                silent: Some(true),
                ..update("a")
            }),
        ),
        (
            r#"{"cmd":"update_leg","leg":"a","codecs":[]}"#,
            Command::UpdateLeg(UpdateLeg {
                codecs: Some(vec![]),
                ..update("a")
            }),
        ),
        (
            r#"{"cmd":"bridge","a":"x","b":"y"}"#,
            Command::Bridge {
                a: "x".into(),
                b: "y".into(),
            },
        ),
        (
            r#"{"cmd":"unbridge","leg":"x"}"#,
            Command::Unbridge { leg: "x".into() },
        ),
        (
            r#"{"cmd":"delete_leg","leg":"x"}"#,
            Command::DeleteLeg { leg: "x".into() },
        ),
        (
            r#"{"cmd":"delete_call","call":"c1"}"#,
            Command::DeleteCall { call: "c1".into() },
        ),
        (
            r#"{"cmd":"query_call","call":"a84b4c76e66710@pc33.example.com"}"#,
            Command::QueryCall {
                call: "a84b4c76e66710@pc33.example.com".into(),
            },
        ),
        (r#"{"cmd":"list_calls"}"#, Command::ListCalls),
        (r#"{"cmd":"stats"}"#, Command::Stats),
        (r#"{"cmd":"subscribe"}"#, Command::Subscribe),
        (" { \"cmd\" : \"ping\" } \r\n", Command::Ping),
    ];
    for (line, want) in cases {
        match parse_request(line) {
            Ok(Request { id, command }) => {
                assert_eq!(id, None, "{line}");
                assert_eq!(command, want, "{line}");
            }
            Err((_, e)) => panic!("{line}: {e}"),
        }
    }
}

#[test]
fn every_command_has_a_valid_case() {
    // Keeps the table above honest when COMMANDS grows.
    for name in COMMANDS {
        let line = match *name {
            "create_leg" => r#"{"cmd":"create_leg","call":"c"}"#.to_owned(),
            "update_leg" | "unbridge" | "delete_leg" | "hold" | "unhold" | "stop_play"
            | "stop_media" | "block_media" | "unblock_media" | "silence_media"
            | "unsilence_media" => format!(r#"{{"cmd":"{name}","leg":"l"}}"#),
            "play_media" => r#"{"cmd":"play_media","leg":"l","media":"default"}"#.to_owned(),
            "play" => r#"{"cmd":"play","leg":"l","announcement":"please-hold"}"#.to_owned(),
            "park" | "retrieve" => format!(r#"{{"cmd":"{name}","leg":"l"}}"#),
            "bridge" => r#"{"cmd":"bridge","a":"x","b":"y"}"#.to_owned(),
            "delete_call" | "query_call" => format!(r#"{{"cmd":"{name}","call":"c"}}"#),
            _ => format!(r#"{{"cmd":"{name}"}}"#),
        };
        assert!(parse_request(&line).is_ok(), "{line}");
    }
}

/// (line, expected code, fragments the message must contain)
type ErrorCase = (&'static str, ErrorCode, &'static [&'static str]);

fn check_errors(cases: &[ErrorCase]) {
    for (line, code, fragments) in cases {
        let (_, e) = parse_request(line).expect_err(line);
        assert_eq!(e.code, *code, "{line}: {}", e.message);
        for f in *fragments {
            assert!(e.message.contains(f), "{line}: {:?} lacks {f:?}", e.message);
        }
    }
}

#[test]
fn framing_errors() {
    use ErrorCode::*;
    check_errors(&[
        ("", BadRequest, &["empty line"]),
        ("   ", BadRequest, &["empty line"]),
        ("{", BadRequest, &["not valid JSON"]),
        ("{\"cmd\":\"ping\"", BadRequest, &["not valid JSON"]),
        ("ping", BadRequest, &["not valid JSON", r#"{"cmd":"ping"}"#]),
        ("{'cmd':'ping'}", BadRequest, &["not valid JSON"]),
        (
            r#"{"cmd":"ping"} {"cmd":"ping"}"#,
            BadRequest,
            &["not valid JSON"],
        ),
        ("[]", BadRequest, &["JSON object", "an array"]),
        ("42", BadRequest, &["JSON object", "a number"]),
        ("\"ping\"", BadRequest, &["JSON object", "a string"]),
        ("null", BadRequest, &["JSON object", "null"]),
        ("true", BadRequest, &["JSON object", "a boolean"]),
        ("{}", MissingField, &["\"cmd\""]),
        (r#"{"id":1}"#, MissingField, &["\"cmd\""]),
        (r#"{"cmd":null}"#, MissingField, &["\"cmd\""]),
        (
            r#"{"cmd":1}"#,
            BadRequest,
            &["\"cmd\" must be a string", "got 1"],
        ),
        (
            r#"{"cmd":["ping"]}"#,
            BadRequest,
            &["\"cmd\" must be a string"],
        ),
        (
            r#"{"cmd":{"name":"ping"}}"#,
            BadRequest,
            &["\"cmd\" must be a string"],
        ),
    ]);
}

#[test]
fn line_length_limit() {
    let pad = |n: usize| {
        let base = r#"{"cmd":"ping","pad":""}"#.len();
        format!(r#"{{"cmd":"ping","pad":"{}"}}"#, "x".repeat(n - base))
    };
    let at_limit = pad(64 * 1024);
    assert_eq!(at_limit.len(), 65536);
    assert!(parse_request(&at_limit).is_ok());
    assert!(parse_request(&format!("{at_limit}\n")).is_ok());
    let (id, e) = parse_request(&pad(64 * 1024 + 1)).unwrap_err();
    assert_eq!(id, None);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("65537 bytes"), "{}", e.message);
}

#[test]
fn unknown_commands() {
    for cmd in [
        "frobnicate",
        "PING",
        "Ping",
        "",
        "create-leg",
        "unpark",
        "Park",
    ] {
        let line = format!(r#"{{"id":"u","cmd":"{cmd}"}}"#);
        let (id, e) = parse_request(&line).unwrap_err();
        assert_eq!(id, Some(json!("u")));
        assert_eq!(e.code, ErrorCode::UnknownCommand, "{line}");
        assert!(e.message.contains(&format!("\"{cmd}\"")), "{}", e.message);
        for valid in COMMANDS {
            assert!(e.message.contains(valid), "{} lacks {valid}", e.message);
        }
    }
}

#[test]
fn missing_required_fields() {
    use ErrorCode::MissingField;
    check_errors(&[
        (
            r#"{"cmd":"create_leg"}"#,
            MissingField,
            &["\"call\"", "create_leg"],
        ),
        (
            r#"{"cmd":"create_leg","leg":"a"}"#,
            MissingField,
            &["\"call\""],
        ),
        (
            r#"{"cmd":"create_leg","call":null}"#,
            MissingField,
            &["\"call\""],
        ),
        (
            r#"{"cmd":"update_leg","remote":"1.2.3.4:5"}"#,
            MissingField,
            &["\"leg\"", "update_leg"],
        ),
        (
            r#"{"cmd":"bridge","b":"y"}"#,
            MissingField,
            &["\"a\"", "bridge"],
        ),
        (
            r#"{"cmd":"bridge","a":"x"}"#,
            MissingField,
            &["\"b\"", "bridge"],
        ),
        (r#"{"cmd":"bridge"}"#, MissingField, &["\"a\""]),
        (
            r#"{"cmd":"unbridge"}"#,
            MissingField,
            &["\"leg\"", "unbridge"],
        ),
        (
            r#"{"cmd":"delete_leg"}"#,
            MissingField,
            &["\"leg\"", "delete_leg"],
        ),
        (
            r#"{"cmd":"delete_leg","call":"c"}"#,
            MissingField,
            &["\"leg\""],
        ),
        (
            r#"{"cmd":"delete_call"}"#,
            MissingField,
            &["\"call\"", "delete_call"],
        ),
        (
            r#"{"cmd":"delete_call","leg":"a"}"#,
            MissingField,
            &["\"call\""],
        ),
        (
            r#"{"cmd":"query_call"}"#,
            MissingField,
            &["\"call\"", "query_call"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"name":"PCMU","rate":8000}]}"#,
            MissingField,
            &["codecs[0].pt"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"PCMU","rate":8000},{"pt":8,"rate":8000}]}"#,
            MissingField,
            &["codecs[1].name"],
        ),
        (
            r#"{"cmd":"update_leg","leg":"a","codecs":[{"pt":0,"name":"PCMU"}]}"#,
            MissingField,
            &["codecs[0].rate"],
        ),
    ]);
}

#[test]
fn wrong_types() {
    use ErrorCode::InvalidField;
    check_errors(&[
        (
            r#"{"cmd":"create_leg","call":42}"#,
            InvalidField,
            &["call must be a non-empty string", "got 42"],
        ),
        (
            r#"{"cmd":"create_leg","call":""}"#,
            InvalidField,
            &["call must be a non-empty string", r#"got """#],
        ),
        (
            r#"{"cmd":"create_leg","call":["c"]}"#,
            InvalidField,
            &["call must be"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","leg":7}"#,
            InvalidField,
            &["leg must be a non-empty string"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","leg":""}"#,
            InvalidField,
            &["leg must be"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","trust_address":"yes"}"#,
            InvalidField,
            &["trust_address must be true or false", r#"got "yes""#],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","rtcp_mux":1}"#,
            InvalidField,
            &["rtcp_mux must be true or false"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","silent":"false"}"#,
            InvalidField,
            &["silent must be true or false"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","media_timeout":"30"}"#,
            InvalidField,
            &["media_timeout must be a whole number", r#"got "30""#],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","media_timeout":-1}"#,
            InvalidField,
            &["media_timeout", "got -1"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","media_timeout":2.5}"#,
            InvalidField,
            &["media_timeout"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","media_timeout":4294967296}"#,
            InvalidField,
            &["media_timeout"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":"PCMU"}"#,
            InvalidField,
            &["codecs must be an array"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":{"pt":0}}"#,
            InvalidField,
            &["codecs must be an array"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[0]}"#,
            InvalidField,
            &["codecs[0] must be an object"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":128,"name":"x","rate":8000}]}"#,
            InvalidField,
            &["codecs[0].pt", "0..127", "got 128"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":-1,"name":"x","rate":8000}]}"#,
            InvalidField,
            &["codecs[0].pt"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":"0","name":"x","rate":8000}]}"#,
            InvalidField,
            &["codecs[0].pt"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"","rate":8000}]}"#,
            InvalidField,
            &["codecs[0].name"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":0,"rate":8000}]}"#,
            InvalidField,
            &["codecs[0].name"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"PCMU","rate":"8000"}]}"#,
            InvalidField,
            &["codecs[0].rate"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"PCMU","rate":0}]}"#,
            InvalidField,
            &["codecs[0].rate"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"PCMU","rate":8000,"channels":0}]}"#,
            InvalidField,
            &["codecs[0].channels"],
        ),
        (
            r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"PCMU","rate":8000,"channels":256}]}"#,
            InvalidField,
            &["codecs[0].channels"],
        ),
        (
            r#"{"cmd":"update_leg","leg":1}"#,
            InvalidField,
            &["leg must be"],
        ),
        (
            r#"{"cmd":"update_leg","leg":"a","rtcp_mux":"true"}"#,
            InvalidField,
            &["rtcp_mux"],
        ),
        (
            r#"{"cmd":"update_leg","leg":"a","silent":0}"#,
            InvalidField,
            &["silent"],
        ),
        (
            r#"{"cmd":"update_leg","leg":"a","codecs":[{"pt":0,"name":"PCMU","rate":8000},"x"]}"#,
            InvalidField,
            &["codecs[1] must be an object"],
        ),
        (
            r#"{"cmd":"bridge","a":"x","b":2}"#,
            InvalidField,
            &["b must be"],
        ),
        (
            r#"{"cmd":"bridge","a":true,"b":"y"}"#,
            InvalidField,
            &["a must be"],
        ),
        (
            r#"{"cmd":"unbridge","leg":{}}"#,
            InvalidField,
            &["leg must be"],
        ),
        (
            r#"{"cmd":"delete_leg","leg":[]}"#,
            InvalidField,
            &["leg must be"],
        ),
        (
            r#"{"cmd":"delete_call","call":1.5}"#,
            InvalidField,
            &["call must be"],
        ),
        (
            r#"{"cmd":"query_call","call":false}"#,
            InvalidField,
            &["call must be"],
        ),
    ]);
}

#[test]
fn addresses() {
    let good = [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("[::1]:5000", "[::1]:5000"),
        ("[2001:db8::1]:65535", "[2001:db8::1]:65535"),
        ("[fe80::1%2]:5000", "[fe80::1%2]:5000"),
        ("0.0.0.0:9", "0.0.0.0:9"),
    ];
    for (text, want) in good {
        for field in ["remote", "remote_rtcp"] {
            let line = format!(r#"{{"cmd":"create_leg","call":"c","{field}":"{text}"}}"#);
            let Ok(Request {
                command: Command::CreateLeg(c),
                ..
            }) = parse_request(&line)
            else {
                panic!("{line} did not parse");
            };
            let got = if field == "remote" {
                c.remote
            } else {
                c.remote_rtcp
            };
            assert_eq!(got, addr(want), "{line}");
        }
    }
    let bad = [
        r#""foo""#,
        r#""127.0.0.1""#,
        r#""::1:5000""#,
        r#""[::1]""#,
        r#""127.0.0.1:70000""#,
        r#""127.0.0.1:-1""#,
        r#""host.example.com:5000""#,
        r#""127.0.0.1:5000 ""#,
        r#""""#,
        "5000",
        r#"["127.0.0.1",5000]"#,
        r#"{"ip":"127.0.0.1","port":5000}"#,
        "true",
    ];
    for text in bad {
        for (cmd, extra) in [
            ("create_leg", r#""call":"c""#),
            ("update_leg", r#""leg":"a""#),
        ] {
            for field in ["remote", "remote_rtcp"] {
                let line = format!(r#"{{"cmd":"{cmd}",{extra},"{field}":{text}}}"#);
                let (_, e) = parse_request(&line).expect_err(&line);
                assert_eq!(e.code, ErrorCode::InvalidField, "{line}");
                assert!(
                    e.message
                        .starts_with(&format!(r#"{field} must be "ip:port""#)),
                    "{line}: {}",
                    e.message
                );
                assert!(
                    e.message.ends_with(&format!("got {text}")),
                    "{line}: {}",
                    e.message
                );
            }
        }
    }
    let (_, e) =
        parse_request(r#"{"cmd":"create_leg","call":"c","remote":"[::1]:0"}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidField);
    assert!(e.message.contains("port in 1..65535"), "{}", e.message);
}

fn reply_json(id: Option<&Value>, result: &Result<Reply, ControlError>) -> Value {
    let line = format_reply(id, result);
    assert!(!line.contains('\n'), "{line}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn id_is_echoed_in_success_and_error_replies() {
    let ids = [
        r#"1"#,
        r#"-3"#,
        r#"18446744073709551615"#,
        r#"0.5"#,
        r#""req-1""#,
        r#""""#,
        r#"null"#,
        r#"true"#,
        r#"[1,"two",null]"#,
        r#"{"seq":1,"from":"kamailio","nested":{"x":[]}}"#,
    ];
    for id_text in ids {
        let id: Value = serde_json::from_str(id_text).unwrap();
        // Success.
        let req = parse_request(&format!(r#"{{"id":{id_text},"cmd":"ping"}}"#)).unwrap();
        assert_eq!(req.id.as_ref(), Some(&id));
        let v = reply_json(req.id.as_ref(), &Ok(Reply::Pong { pong: "pong" }));
        assert_eq!(v, json!({"id": id, "ok": true, "pong": "pong"}));
        let line = format_reply(req.id.as_ref(), &Ok(Reply::Pong { pong: "pong" }));
        // Byte-identical for scalars and arrays; objects come back with sorted keys.
        if !id.is_object() {
            assert!(
                line.starts_with(&format!(r#"{{"id":{id_text},"ok":true"#)),
                "{line}"
            );
        }
        // Parse error after the id was read.
        let (eid, e) =
            parse_request(&format!(r#"{{"cmd":"bridge","a":"x","id":{id_text}}}"#)).unwrap_err();
        assert_eq!(eid.as_ref(), Some(&id));
        let v = reply_json(eid.as_ref(), &Err(e));
        assert_eq!(v["id"], id);
        assert_eq!(v["ok"], json!(false));
        assert_eq!(v["error"]["code"], json!("missing_field"));
        // Engine-side error.
        let e = ControlError::new(ErrorCode::UnknownLeg, "no leg named \"x\"");
        let v = reply_json(Some(&id), &Err(e));
        assert_eq!(
            v,
            json!({"id": id, "ok": false, "error": {"code": "unknown_leg", "message": "no leg named \"x\""}})
        );
    }
}

#[test]
fn no_id_no_id_key() {
    let v = reply_json(None, &Ok(Reply::Done {}));
    assert_eq!(v, json!({"ok": true}));
    let (id, e) = parse_request("not json").unwrap_err();
    assert_eq!(id, None);
    let v = reply_json(id.as_ref(), &Err(e));
    assert!(v.get("id").is_none());
    assert_eq!(v["error"]["code"], json!("bad_request"));
}

#[test]
fn every_error_code_formats_its_wire_name() {
    use ErrorCode::*;
    let codes = [
        (BadRequest, "bad_request"),
        (UnknownCommand, "unknown_command"),
        (MissingField, "missing_field"),
        (InvalidField, "invalid_field"),
        (UnknownLeg, "unknown_leg"),
        (UnknownCall, "unknown_call"),
        (LegExists, "leg_exists"),
        (PortsExhausted, "ports_exhausted"),
        (InvalidState, "invalid_state"),
        (UnknownMedia, "unknown_media"),
        (UnknownLot, "unknown_lot"),
        (SlotTaken, "slot_taken"),
        (LotFull, "lot_full"),
        (SlotEmpty, "slot_empty"),
        (Internal, "internal"),
    ];
    for (code, name) in codes {
        let v = reply_json(
            Some(&json!(9)),
            &Err(ControlError::new(code, "line one\nline \"two\"")),
        );
        assert_eq!(v["error"]["code"], json!(name));
        assert_eq!(v["error"]["message"], json!("line one\nline \"two\""));
    }
}

#[test]
fn success_replies() {
    let counters = LegCounters {
        rtp_in: 10,
        rtp_out: 9,
        ..Default::default()
    };
    let leg = LegInfo {
        leg: "a".into(),
        rtp_port: 30000,
        rtcp_port: 30001,
        remote: addr("[::1]:5000"),
        latched: None,
        ssrc: Some(0xdead_beef),
        peer: Some("b".into()),
        state: "live",
        media_timed_out: false,
        counters,
    };
    let call = CallInfo {
        call: "c1".into(),
        age_secs: 1.5,
        legs: vec![leg],
    };
    let cases: Vec<(Reply, Value)> = vec![
        (Reply::Done {}, json!({"ok": true})),
        (
            Reply::Pong { pong: "pong" },
            json!({"ok": true, "pong": "pong"}),
        ),
        (
            Reply::Subscribed { subscribed: true },
            json!({"ok": true, "subscribed": true}),
        ),
        (
            Reply::LegCreated(LegCreated {
                call: "c1".into(),
                leg: "a".into(),
                ip: "127.0.0.1".parse().unwrap(),
                rtp_port: 30000,
                rtcp_port: 30001,
            }),
            json!({"ok": true, "call": "c1", "leg": "a", "ip": "127.0.0.1", "rtp_port": 30000, "rtcp_port": 30001}),
        ),
        (
            Reply::Call(call.clone()),
            json!({"ok": true, "call": "c1", "age_secs": 1.5, "legs": [{
                "leg": "a", "rtp_port": 30000, "rtcp_port": 30001, "remote": "[::1]:5000",
                "latched": null, "ssrc": 3735928559u32, "peer": "b", "state": "live",
                "media_timed_out": false,
                "counters": {"rtp_in": 10, "rtp_in_bytes": 0, "rtp_out": 9, "rtcp_in": 0,
                    "rtcp_out": 0, "dropped_foreign": 0, "dropped_malformed": 0, "dropped_no_route": 0,
                    "dropped_held": 0, "dropped_blocked": 0, "media_out": 0}
            }]}),
        ),
        (
            Reply::Calls { calls: vec![] },
            json!({"ok": true, "calls": []}),
        ),
        (
            Reply::Stats(Stats {
                uptime_secs: 2.0,
                backend: "epoll",
                workers: 4,
                calls: 1,
                legs: 2,
                free_port_pairs: 100,
                warm_port_pairs: 90,
                stale_dropped: 5,
                totals: counters,
                send_errors: 3,
            }),
            json!({"ok": true, "uptime_secs": 2.0, "backend": "epoll", "workers": 4, "calls": 1,
                "legs": 2, "free_port_pairs": 100, "warm_port_pairs": 90, "stale_dropped": 5,
                "totals": counters, "send_errors": 3}),
        ),
    ];
    for (reply, want) in cases {
        assert_eq!(reply_json(None, &Ok(reply.clone())), want, "{reply:?}");
        let mut with_id = want.clone();
        with_id["id"] = json!("q");
        assert_eq!(reply_json(Some(&json!("q")), &Ok(reply)), with_id);
    }
    let calls = reply_json(None, &Ok(Reply::Calls { calls: vec![call] }));
    assert_eq!(calls["calls"][0]["legs"][0]["peer"], json!("b"));
}

#[test]
fn events() {
    let cases = [
        (
            Event::MediaTimeout {
                call: "c1".into(),
                leg: "a".into(),
                after_secs: 60,
            },
            r#"{"event":"media_timeout","call":"c1","leg":"a","after_secs":60}"#,
        ),
        (
            Event::CallDeleted {
                call: "c1".into(),
                reason: "command",
            },
            r#"{"event":"call_deleted","call":"c1","reason":"command"}"#,
        ),
        (
            Event::CallDeleted {
                call: "we\"ird\ncall".into(),
                reason: "last_leg",
            },
            r#"{"event":"call_deleted","call":"we\"ird\ncall","reason":"last_leg"}"#,
        ),
    ];
    for (event, want) in cases {
        let line = format_event(&event);
        assert_eq!(line, want);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("event").is_some() && v.get("ok").is_none());
    }
}

#[test]
fn hostile_input_never_panics() {
    let deep = "[".repeat(10_000);
    let deep_obj = format!(
        r#"{{"cmd":"ping","id":{}}}"#,
        "[".repeat(200) + &"]".repeat(200)
    );
    let inputs = [
        deep.as_str(),
        deep_obj.as_str(),
        "\u{0}",
        "{\"cmd\":\"ping\u{0}\"}",
        r#"{"cmd":"\ud800"}"#,
        r#"{"id":1e999,"cmd":"ping"}"#,
        r#"{"cmd":"create_leg","call":"c","media_timeout":1e999}"#,
        r#"{"cmd":"create_leg","call":"c","codecs":[[[[]]]]}"#,
        "\u{feff}{\"cmd\":\"ping\"}",
    ];
    for line in inputs {
        let result = parse_request(line);
        let (id, res) = match result {
            Ok(r) => (r.id, Ok(Reply::Done {})),
            Err((id, e)) => (id, Err(e)),
        };
        reply_json(id.as_ref(), &res);
    }
}

/// Parser errors quoted in docs/native-protocol.md are exactly what the parser says.
#[test]
fn documented_parser_errors_match() {
    let doc = include_str!("../docs/native-protocol.md");
    let lines: Vec<&str> = doc.lines().map(str::trim).collect();
    let mut checked = 0;
    for pair in lines.windows(2) {
        let (request, reply) = (pair[0], pair[1]);
        if !request.starts_with('{') || !request.contains("\"cmd\"") {
            continue;
        }
        let Ok(reply_value) = serde_json::from_str::<Value>(reply) else {
            continue;
        };
        let result = match parse_request(request) {
            Ok(req) if req.command == Command::Ping => (req.id, Ok(Reply::Pong { pong: "pong" })),
            Ok(_) => continue,
            Err((id, e)) => (id, Err(e)),
        };
        let code = reply_value["error"]["code"].as_str().unwrap_or("");
        if !matches!(
            code,
            "" | "bad_request" | "unknown_command" | "missing_field" | "invalid_field"
        ) {
            continue;
        }
        assert_eq!(
            format_reply(result.0.as_ref(), &result.1),
            reply,
            "{request}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} documented exchanges found");
}

#[test]
fn hold_and_playback_commands() {
    use rtpark::control::{PeerHears, Then};
    let req =
        parse_request(r#"{"cmd":"hold","leg":"a","class":"calm","peer_hears":"silence"}"#).unwrap();
    assert_eq!(
        req.command,
        Command::Hold {
            leg: "a".into(),
            class: Some("calm".into()),
            peer_hears: Some(PeerHears::Silence)
        }
    );
    let req = parse_request(r#"{"cmd":"hold","leg":"a"}"#).unwrap();
    assert_eq!(
        req.command,
        Command::Hold {
            leg: "a".into(),
            class: None,
            peer_hears: None
        }
    );
    let req =
        parse_request(r#"{"cmd":"play","leg":"a","announcement":"please-hold","then":"moh"}"#)
            .unwrap();
    assert_eq!(
        req.command,
        Command::Play {
            leg: "a".into(),
            announcement: "please-hold".into(),
            then: Then::Moh,
            class: None
        }
    );
    let req = parse_request(r#"{"cmd":"play","leg":"a","announcement":"x"}"#).unwrap();
    assert!(matches!(
        req.command,
        Command::Play {
            then: Then::Live,
            ..
        }
    ));
    assert_eq!(
        parse_request(r#"{"cmd":"unhold","leg":"a"}"#)
            .unwrap()
            .command,
        Command::Unhold { leg: "a".into() }
    );
    assert_eq!(
        parse_request(r#"{"cmd":"list_media"}"#).unwrap().command,
        Command::ListMedia
    );
    for (line, needle) in [
        (r#"{"cmd":"hold"}"#, "\"leg\""),
        (
            r#"{"cmd":"hold","leg":"a","peer_hears":"music"}"#,
            "peer_hears",
        ),
        (r#"{"cmd":"play","leg":"a"}"#, "\"announcement\""),
        (
            r#"{"cmd":"play","leg":"a","announcement":"x","then":"later"}"#,
            "then",
        ),
        (r#"{"cmd":"create_leg","call":"c","ptime":25}"#, "ptime"),
    ] {
        let (_, e) = parse_request(line).unwrap_err();
        assert!(e.message.contains(needle), "{line}: {}", e.message);
    }
}

#[test]
fn play_media_and_ingress_commands() {
    use rtpark::control::{MediaRef, PlayMedia, Repeat};
    use rtpark::session::Ingress;
    let cmd = |line: &str| parse_request(line).unwrap().command;
    assert_eq!(
        cmd(
            r#"{"cmd":"play_media","leg":"a","file":"/srv/moh.wav","repeat":-1,"start_ms":1500,"hold":true}"#
        ),
        Command::PlayMedia(PlayMedia {
            leg: "a".into(),
            media: MediaRef::File("/srv/moh.wav".into()),
            repeat: Repeat::Forever,
            start_ms: 1500,
            hold: true,
        })
    );
    assert_eq!(
        cmd(r#"{"cmd":"play_media","leg":"a","media":"please-hold","repeat":3}"#),
        Command::PlayMedia(PlayMedia {
            leg: "a".into(),
            media: MediaRef::Named("please-hold".into()),
            repeat: Repeat::Times(3),
            start_ms: 0,
            hold: false,
        })
    );
    assert_eq!(
        cmd(r#"{"cmd":"stop_media","leg":"a"}"#),
        Command::StopMedia { leg: "a".into() }
    );
    for (name, ingress) in [
        ("block_media", Ingress::Block),
        ("unblock_media", Ingress::Relay),
        ("silence_media", Ingress::Silence),
        ("unsilence_media", Ingress::Relay),
    ] {
        assert_eq!(
            cmd(&format!(r#"{{"cmd":"{name}","leg":"a"}}"#)),
            Command::SetIngress {
                leg: "a".into(),
                ingress
            }
        );
    }
    for (line, needle) in [
        (r#"{"cmd":"play_media","leg":"a"}"#, "exactly one of file"),
        (
            r#"{"cmd":"play_media","leg":"a","file":"x","media":"y"}"#,
            "exactly one of file",
        ),
        (
            r#"{"cmd":"play_media","leg":"a","media":"y","repeat":0}"#,
            "repeat",
        ),
        (
            r#"{"cmd":"play_media","leg":"a","media":"y","start_ms":-5}"#,
            "start_ms",
        ),
        (r#"{"cmd":"block_media"}"#, "\"leg\""),
    ] {
        let (_, e) = parse_request(line).unwrap_err();
        assert!(e.message.contains(needle), "{line}: {}", e.message);
    }
}
