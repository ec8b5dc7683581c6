//! rtpproxy control protocol parsing and reply formatting: every command as the
//! Kamailio and OpenSIPS `rtpproxy` modules send it, with and without cookies, the
//! modifier grammar, every error code the parser gives, and the exact reply bytes.

use rtpark::control::rtpproxy::{
    capability_meaning, capability_supported, ecode, format_error, format_feature, format_info,
    format_ok, format_port, format_query, format_reply, format_stats, format_version, parse,
    parse_bytes, CopyTo, Delete, Framing, InfoCounters, Interface, LocalAddr, NoRecord, Notify,
    Play, Query, QueryCounters, Record, Remote, Request, RpCommand, Session, StatValue, Stop, Tag,
    UpdateModifiers, CAPABILITIES, DEFAULT_SUPPORTED, MAX_COMMAND_BYTES, MAX_WORDS,
    PROTOCOL_VERSION, QUERY_COUNTERS,
};
use std::net::{IpAddr, SocketAddr};

const CALL: &str = "1-27141@127.0.0.1";

fn tag(t: &str, medianum: Option<u32>) -> Tag {
    Tag {
        tag: t.into(),
        medianum,
    }
}

fn bare(input: &str) -> RpCommand {
    match parse(input, Framing::Bare) {
        Ok(req) => {
            assert_eq!(req.cookie, None, "{input:?}");
            req.command
        }
        Err(e) => panic!("{input:?} failed: {e}"),
    }
}

fn code(input: &str) -> u32 {
    match parse(input, Framing::Bare) {
        Ok(req) => panic!("{input:?} parsed as {req:?}, expected an error"),
        Err(e) => {
            assert!(!e.message.is_empty(), "{input:?}: empty message");
            e.code
        }
    }
}

fn session(s: &str) -> Session {
    match bare(s) {
        RpCommand::Update(s) | RpCommand::Lookup(s) => s,
        other => panic!("{s:?} is {other:?}, not U/L"),
    }
}

fn modifier_code(m: &str) -> u32 {
    code(&format!("U{m} c 192.0.2.1 4000 ft"))
}

/// The command lines of a Kamailio 5.6 call with music on hold, and what they mean.
fn kamailio_call() -> Vec<(&'static str, RpCommand)> {
    vec![
        ("V", RpCommand::Version),
        ("VF 20050322", RpCommand::VersionFeature("20050322".into())),
        ("VF 20071116", RpCommand::VersionFeature("20071116".into())),
        ("VF 20081102", RpCommand::VersionFeature("20081102".into())),
        (
            "Uc0,101 1-27141@127.0.0.1 127.0.0.1 16000 27141UAC1;1",
            RpCommand::Update(Session {
                modifiers: UpdateModifiers {
                    codecs: vec![0, 101],
                    ..Default::default()
                },
                call_id: CALL.into(),
                addr: "127.0.0.1".into(),
                port: 16000,
                from_tag: tag("27141UAC1", Some(1)),
                to_tag: None,
                notify: None,
            }),
        ),
        (
            "Lc0,101 1-27141@127.0.0.1 127.0.0.1 16100 27141UAC1;1 27133UAS1;1",
            RpCommand::Lookup(Session {
                modifiers: UpdateModifiers {
                    codecs: vec![0, 101],
                    ..Default::default()
                },
                call_id: CALL.into(),
                addr: "127.0.0.1".into(),
                port: 16100,
                from_tag: tag("27141UAC1", Some(1)),
                to_tag: Some(tag("27133UAS1", Some(1))),
                notify: None,
            }),
        ),
        (
            "P-1 1-27141@127.0.0.1 /path/to/moh session 27133UAS1;1 27141UAC1;1",
            RpCommand::Play(Play {
                count: -1,
                call_id: CALL.into(),
                prompt: "/path/to/moh".into(),
                codecs: "session".into(),
                from_tag: tag("27133UAS1", Some(1)),
                to_tag: Some(tag("27141UAC1", Some(1))),
            }),
        ),
        (
            "S 1-27141@127.0.0.1 27133UAS1;1 27141UAC1;1",
            RpCommand::Stop(Stop {
                call_id: CALL.into(),
                from_tag: tag("27133UAS1", Some(1)),
                to_tag: Some(tag("27141UAC1", Some(1))),
            }),
        ),
        (
            "D 1-27141@127.0.0.1 27141UAC1 27133UAS1",
            RpCommand::Delete(Delete {
                weak: false,
                call_id: CALL.into(),
                from_tag: tag("27141UAC1", None),
                to_tag: Some(tag("27133UAS1", None)),
            }),
        ),
    ]
}

#[test]
fn kamailio_call_parses_exactly_and_displays_back_unchanged() {
    for (line, expected) in kamailio_call() {
        let command = bare(line);
        assert_eq!(command, expected, "{line}");
        assert_eq!(command.to_string(), line, "canonical form of {line}");
    }
}

#[test]
fn cookie_framing_takes_the_first_word_and_leaves_the_command_alone() {
    for (line, expected) in kamailio_call() {
        let input = format!("3717741826_17 {line}");
        let req = parse(&input, Framing::Cookie).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(req.cookie.as_deref(), Some("3717741826_17"));
        assert_eq!(req.command, expected);
        assert_eq!(req.to_string(), input);
    }
    // OpenSIPS cookies: pid_random_seq.
    let req = parse("4242_1804289383_0 V", Framing::Cookie).unwrap();
    assert_eq!(
        req,
        Request {
            cookie: Some("4242_1804289383_0".into()),
            command: RpCommand::Version
        }
    );
}

#[test]
fn bare_framing_has_no_cookie_even_when_the_first_word_looks_like_one() {
    assert_eq!(code("3717741826_17 V"), ecode::UNKNOWN_COMMAND);
}

#[test]
fn separators_are_any_run_of_space_tab_cr_lf() {
    let plain = bare("S 1-27141@127.0.0.1 27133UAS1;1 27141UAC1;1");
    for input in [
        "S 1-27141@127.0.0.1 27133UAS1;1 27141UAC1;1\n",
        "S 1-27141@127.0.0.1 27133UAS1;1 27141UAC1;1\r\n",
        "  S\t1-27141@127.0.0.1   27133UAS1;1\r27141UAC1;1 \n\n",
        "S\n1-27141@127.0.0.1\n27133UAS1;1\n27141UAC1;1",
    ] {
        assert_eq!(bare(input), plain, "{input:?}");
    }
    // Kamailio's Q and stream2uac leave a trailing space when there is no to tag.
    assert!(matches!(
        bare("Q c ft;1 "),
        RpCommand::Query(Query { to_tag: None, .. })
    ));
    let req = parse("c1 V\n", Framing::Cookie).unwrap();
    assert_eq!(req.command, RpCommand::Version);
}

#[test]
fn command_letters_and_modifiers_are_accepted_in_either_case() {
    for (upper, lower) in [
        ("V", "v"),
        ("VF 20050322", "vf 20050322"),
        ("VF 20050322", "vF 20050322"),
        ("VF 20050322", "Vf 20050322"),
        ("UC0,101 c 127.0.0.1 1 ft", "uc0,101 c 127.0.0.1 1 ft"),
        ("LAZ20 c 127.0.0.1 1 ft tt", "laz20 c 127.0.0.1 1 ft tt"),
        ("DW c ft tt", "dw c ft tt"),
        ("P-1 c p session ft", "p-1 c p session ft"),
        ("S c ft", "s c ft"),
        ("QV c ft tt", "qv c ft tt"),
        ("IBL", "ibl"),
        ("GV a", "gv a"),
        ("X", "x"),
        ("RS c ft", "rs c ft"),
        ("CSP c t ft", "csp c t ft"),
        ("NA c ft", "na c ft"),
    ] {
        assert_eq!(bare(upper), bare(lower), "{upper} vs {lower}");
    }
}

#[test]
fn version_and_feature_replies_match_rtpproxy() {
    assert_eq!(PROTOCOL_VERSION, 20040107);
    assert_eq!(format_version(None), "20040107\n");
    assert_eq!(format_version(Some("7_1")), "7_1 20040107\n");
    assert_eq!(format_feature(None, true), "1\n");
    assert_eq!(format_feature(Some("7_2"), false), "7_2 0\n");
}

#[test]
fn capability_table_is_complete_and_the_defaults_are_what_rtpark_runs() {
    let dates: Vec<u32> = CAPABILITIES.iter().map(|(d, _)| *d).collect();
    for pair in dates.windows(2) {
        assert!(pair[0] < pair[1], "table not in date order at {pair:?}");
    }
    for d in [
        20040107, 20050322, 20060704, 20071116, 20071218, 20080403, 20081102, 20081224, 20090810,
        20140323, 20140617, 20141004, 20150330, 20150420, 20150617, 20191015, 20200226,
    ] {
        assert!(capability_meaning(d).is_some(), "{d} missing");
    }
    for d in DEFAULT_SUPPORTED {
        assert!(dates.contains(d), "default {d} is not a known date");
    }
    // What Kamailio's start-up asks, and the answers that keep MOH working.
    assert!(capability_supported("20040107", DEFAULT_SUPPORTED));
    assert!(capability_supported("20050322", DEFAULT_SUPPORTED));
    assert!(capability_supported("20081102", DEFAULT_SUPPORTED)); // needed by stream2uac/uas
    assert!(!capability_supported("20071116", DEFAULT_SUPPORTED)); // no re-packetisation
    assert!(!capability_supported("20071218", DEFAULT_SUPPORTED));
    assert!(!capability_supported("20081224", DEFAULT_SUPPORTED));
    assert!(!capability_supported("20191015", DEFAULT_SUPPORTED));
    // rtpproxy compares the exact string.
    assert!(!capability_supported("020050322", DEFAULT_SUPPORTED));
    assert!(!capability_supported("+2005032", &[2005032]));
    assert!(!capability_supported("20050323", &[20050323]));
    assert!(!capability_supported("", DEFAULT_SUPPORTED));
    assert!(capability_supported("20081224", &[20081224]));
}

#[test]
fn error_codes_are_rtpproxys_numbers() {
    for (ours, theirs) in [
        (ecode::UNKNOWN_COMMAND, 0),
        (ecode::ARG_COUNT, 1),
        (ecode::MODIFIERS_NOT_ALLOWED, 2),
        (ecode::SUBCOMMAND, 3),
        (ecode::SYNTAX, 5),
        (ecode::RECORD_MODIFIER_PLACE, 6),
        (ecode::RECORD_MODIFIER, 7),
        (ecode::DELETE_MODIFIER, 8),
        (ecode::STATS_MODIFIER, 9),
        (ecode::NOTIFY_TAG, 10),
        (ecode::EXTERNAL_INTERFACE, 11),
        (ecode::INTERNAL_INTERFACE, 12),
        (ecode::REPACKETIZE, 13),
        (ecode::CODECS, 14),
        (ecode::LOCAL_ADDR_SYNTAX, 15),
        (ecode::REMOTE_ADDR_SYNTAX, 16),
        (ecode::PLAY_COUNT, 17),
        (ecode::INFO_MODIFIER, 18),
        (ecode::QUERY_MODIFIER, 19),
        (ecode::STATS_TOO_BIG, 25),
        (ecode::QUERY_TOO_BIG, 26),
        (ecode::BAD_LOCAL_ADDR, 31),
        (ecode::BAD_ROUTE_ADDR, 32),
        (ecode::INVALID_ARGUMENT, 35),
        (ecode::NO_ADDR_FOR_FAMILY, 36),
        (ecode::BAD_REMOTE_ADDR, 37),
        (ecode::SESSION_NOT_FOUND, 50),
        (ecode::PLAY_FAILED, 60),
        (ecode::QUERY_FAILED, 62),
        (ecode::COPY_FAILED, 65),
        (ecode::STATS_FAILED, 68),
        (ecode::PORT_ALLOCATION_EXISTING, 71),
        (ecode::PORT_ALLOCATION_NEW, 72),
        (ecode::NOTIFY_DISABLED, 75),
        (ecode::INTERNAL, 81),
        (ecode::OVERLOAD, 98),
        (ecode::SHUTTING_DOWN, 99),
    ] {
        assert_eq!(ours, theirs);
    }
}

#[test]
fn update_modifier_grammar() {
    let d = UpdateModifiers::default;
    let cases: Vec<(&str, UpdateModifiers)> = vec![
        ("", d()),
        (
            "a",
            UpdateModifiers {
                asymmetric: true,
                ..d()
            },
        ),
        (
            "as",
            UpdateModifiers {
                symmetric: true,
                ..d()
            },
        ),
        (
            "sa",
            UpdateModifiers {
                asymmetric: true,
                ..d()
            },
        ),
        ("w", UpdateModifiers { weak: true, ..d() }),
        ("6", UpdateModifiers { ipv6: true, ..d() }),
        (
            "n",
            UpdateModifiers {
                new_port: true,
                ..d()
            },
        ),
        (
            "ie",
            UpdateModifiers {
                interfaces: vec![Interface::Internal, Interface::External],
                ..d()
            },
        ),
        (
            "z20",
            UpdateModifiers {
                repacketize: Some(20),
                ..d()
            },
        ),
        (
            "z+30",
            UpdateModifiers {
                repacketize: Some(30),
                ..d()
            },
        ),
        (
            "c0,8,101",
            UpdateModifiers {
                codecs: vec![0, 8, 101],
                ..d()
            },
        ),
        (
            "c0,,8,",
            UpdateModifiers {
                codecs: vec![0, 8],
                ..d()
            },
        ),
        (
            "l192.0.2.7",
            UpdateModifiers {
                local: Some(LocalAddr::Ip("192.0.2.7".parse().unwrap())),
                ..d()
            },
        ),
        (
            "l[2001:db8::7]",
            UpdateModifiers {
                local: Some(LocalAddr::Ip("2001:db8::7".parse().unwrap())),
                ..d()
            },
        ),
        (
            "l{public}",
            UpdateModifiers {
                local: Some(LocalAddr::Label("public".into())),
                ..d()
            },
        ),
        (
            "r198.51.100.1",
            UpdateModifiers {
                local: Some(LocalAddr::ForRemote("198.51.100.1".parse().unwrap())),
                ..d()
            },
        ),
        (
            "l192.0.2.7r198.51.100.1",
            UpdateModifiers {
                local: Some(LocalAddr::ForRemote("198.51.100.1".parse().unwrap())),
                ..d()
            },
        ),
        // Kamailio's order: U/L, then A I E S 6, then Z<ms>, then c<list>.
        (
            "AIEZ20c0,8",
            UpdateModifiers {
                asymmetric: true,
                interfaces: vec![Interface::Internal, Interface::External],
                repacketize: Some(20),
                codecs: vec![0, 8],
                ..d()
            },
        ),
        // Arguments end where their characters end; letters may follow in any order.
        (
            "c0,8wl192.0.2.7a",
            UpdateModifiers {
                asymmetric: true,
                weak: true,
                codecs: vec![0, 8],
                local: Some(LocalAddr::Ip("192.0.2.7".parse().unwrap())),
                ..d()
            },
        ),
        (
            "z20c8l{x}6",
            UpdateModifiers {
                ipv6: true,
                repacketize: Some(20),
                codecs: vec![8],
                local: Some(LocalAddr::Label("x".into())),
                ..d()
            },
        ),
    ];
    for (m, expected) in cases {
        let line = if m.contains('6') {
            format!("U{m} c 2001:db8::1 4000 ft")
        } else {
            format!("U{m} c 192.0.2.1 4000 ft")
        };
        let got = session(&line).modifiers;
        assert_eq!(got, expected, "{m:?}");
        // The canonical form parses back to the same modifiers.
        let again = session(&bare(&line).to_string()).modifiers;
        assert_eq!(again, expected, "{m:?} through {}", bare(&line));
    }
}

#[test]
fn update_modifier_errors_carry_rtpproxys_codes() {
    for (m, expected) in [
        ("eee", ecode::EXTERNAL_INTERFACE),
        ("iie", ecode::EXTERNAL_INTERFACE),
        ("eii", ecode::INTERNAL_INTERFACE),
        ("z", ecode::REPACKETIZE),
        ("z0", ecode::REPACKETIZE),
        ("z1000", ecode::REPACKETIZE),
        ("z-20", ecode::REPACKETIZE),
        ("zc0", ecode::REPACKETIZE),
        ("c", ecode::CODECS),
        ("cw", ecode::CODECS),
        ("c0c8", ecode::CODECS),
        ("c128", ecode::CODECS),
        ("c99999999999", ecode::CODECS),
        ("l", ecode::LOCAL_ADDR_SYNTAX),
        ("lx", ecode::LOCAL_ADDR_SYNTAX),
        ("l{}", ecode::LOCAL_ADDR_SYNTAX),
        ("l{open", ecode::LOCAL_ADDR_SYNTAX),
        ("l[2001:db8::1", ecode::LOCAL_ADDR_SYNTAX),
        ("l[]", ecode::LOCAL_ADDR_SYNTAX),
        ("l[::ffff:1.2.3.4]", ecode::LOCAL_ADDR_SYNTAX),
        ("l1.2.3", ecode::BAD_LOCAL_ADDR),
        ("l999.0.0.1", ecode::BAD_LOCAL_ADDR),
        ("l[1:2:3]", ecode::BAD_LOCAL_ADDR),
        ("r", ecode::REMOTE_ADDR_SYNTAX),
        ("r{x}", ecode::REMOTE_ADDR_SYNTAX),
        ("r1..2", ecode::BAD_ROUTE_ADDR),
        ("x", ecode::INVALID_ARGUMENT),
        ("f", ecode::INVALID_ARGUMENT),
        ("T30", ecode::INVALID_ARGUMENT), // OpenSIPS TTL, not in rtpproxy's table
        ("aé", ecode::INVALID_ARGUMENT),
    ] {
        assert_eq!(modifier_code(m), expected, "U{m}");
    }
    // The first bad modifier decides, as rtpproxy walks them in order.
    assert_eq!(modifier_code("xz0"), ecode::INVALID_ARGUMENT);
    assert_eq!(modifier_code("z0x"), ecode::REPACKETIZE);
    assert_eq!(code("Lx c 192.0.2.1 4000 ft tt"), ecode::INVALID_ARGUMENT);
}

#[test]
fn remote_address_is_interpreted_as_rtpproxy_does() {
    let remote = |line: &str| session(line).remote();
    let sa = |s: &str| Remote::Address(s.parse::<SocketAddr>().unwrap());
    assert_eq!(remote("U c 192.0.2.1 4000 ft"), sa("192.0.2.1:4000"));
    assert_eq!(
        remote("U6 c 2001:db8::5 30000 ft"),
        sa("[2001:db8::5]:30000")
    );
    assert_eq!(remote("U6 c ::1 30000 ft"), sa("[::1]:30000"));
    assert_eq!(remote("U c 0.0.0.0 4000 ft"), Remote::OnHold);
    assert_eq!(remote("U6 c :: 4000 ft"), Remote::OnHold);
    // Shorter or longer than any address of the family: ignored, latching decides.
    assert_eq!(remote("U c ::1 4000 ft"), Remote::Unusable);
    assert_eq!(
        remote("U c media.example.invalid 4000 ft"),
        Remote::Unusable
    );
    assert_eq!(remote("U c - 4000 ft"), Remote::Unusable);
    // Port 0 (a disabled SDP stream) is still an address; the engine decides.
    assert_eq!(remote("U c 192.0.2.1 0 ft"), sa("192.0.2.1:0"));
    // An address-sized word that is not numeric, or of the other family: E37.
    for bad in [
        "U c 2001:db8::5 4000 ft",
        "U c example.com 4000 ft",
        "U c 192.0.2.256 4000 ft",
        "U6 c 192.0.2.1 4000 ft",
        "U6 c not-an-address 4000 ft",
        "U c 192.0.2.1 65536 ft",
        "U c 192.0.2.1 http ft",
        "U c 192.0.2.1 -1 ft",
        "L c 192.0.2.1 x ft tt",
    ] {
        assert_eq!(code(bad), ecode::BAD_REMOTE_ADDR, "{bad}");
    }
}

#[test]
fn update_words_pick_to_tag_and_notify_by_count() {
    let s = session("U c 192.0.2.1 4000 ft;1 tt;1");
    assert_eq!(s.to_tag, Some(tag("tt", Some(1))));
    assert_eq!(s.notify, None);

    let s = session("U c 192.0.2.1 4000 ft;1 unix:/run/kamailio/timeout.sock call%201+x");
    assert_eq!(s.to_tag, None);
    let n = s.notify.expect("notify");
    assert_eq!(
        n,
        Notify {
            socket: "unix:/run/kamailio/timeout.sock".into(),
            tag: "call%201+x".into()
        }
    );
    assert_eq!(n.decoded_tag(), b"call 1 x");

    let s = session("U c 192.0.2.1 4000 ft;1 tt;1 tcp:127.0.0.1:9999 42");
    assert_eq!(s.to_tag, Some(tag("tt", Some(1))));
    assert_eq!(
        s.notify.map(|n| n.socket).as_deref(),
        Some("tcp:127.0.0.1:9999")
    );

    assert_eq!(
        code("U c 192.0.2.1 4000 ft unix:/s bad%zz"),
        ecode::NOTIFY_TAG
    );
    // The notify tag is checked before the modifiers, as rtpproxy does.
    assert_eq!(code("Ux c 192.0.2.1 4000 ft unix:/s %4"), ecode::NOTIFY_TAG);
    // L never takes a notify target.
    assert_eq!(code("L c 192.0.2.1 4000 ft tt unix:/s t"), ecode::ARG_COUNT);
}

#[test]
fn medianum_and_call_id_extras_are_kept() {
    let s = session("U c;z9hG4bK776asdhds 192.0.2.1 4000 ft;2 tt;2");
    assert_eq!(s.call_id, "c;z9hG4bK776asdhds");
    assert_eq!(s.from_tag, tag("ft", Some(2)));
    assert_eq!(s.from_tag.medianum_or_first(), 2);
    assert_eq!(Tag::parse("ft").medianum_or_first(), 1);
    assert_eq!(Tag::parse("ft;x"), tag("ft;x", None));
    assert_eq!(Tag::parse("ft;12").to_string(), "ft;12");
}

#[test]
fn other_commands_parse() {
    let cases: Vec<(&str, RpCommand)> = vec![
        (
            "Dw c ft",
            RpCommand::Delete(Delete {
                weak: true,
                call_id: "c".into(),
                from_tag: tag("ft", None),
                to_tag: None,
            }),
        ),
        (
            "P c moh:default 0,8 ft;1",
            RpCommand::Play(Play {
                count: 1,
                call_id: "c".into(),
                prompt: "moh:default".into(),
                codecs: "0,8".into(),
                from_tag: tag("ft", Some(1)),
                to_tag: None,
            }),
        ),
        (
            "P0 c p session ft",
            RpCommand::Play(Play {
                count: 0,
                call_id: "c".into(),
                prompt: "p".into(),
                codecs: "session".into(),
                from_tag: tag("ft", None),
                to_tag: None,
            }),
        ),
        (
            "Q c ft;1 tt;1",
            RpCommand::Query(Query {
                verbose: false,
                call_id: "c".into(),
                from_tag: tag("ft", Some(1)),
                to_tag: Some(tag("tt", Some(1))),
                stats: vec![],
            }),
        ),
        (
            "Qv c ft tt ttl npkts_ina rtpa_jmax",
            RpCommand::Query(Query {
                verbose: true,
                call_id: "c".into(),
                from_tag: tag("ft", None),
                to_tag: Some(tag("tt", None)),
                stats: vec!["ttl".into(), "npkts_ina".into(), "rtpa_jmax".into()],
            }),
        ),
        (
            "I",
            RpCommand::Info {
                brief: false,
                load: false,
            },
        ),
        (
            "Ib",
            RpCommand::Info {
                brief: true,
                load: false,
            },
        ),
        (
            "Il",
            RpCommand::Info {
                brief: false,
                load: true,
            },
        ),
        (
            "G",
            RpCommand::GetStats {
                verbose: false,
                names: vec![],
            },
        ),
        (
            "Gv nsess_created nsess_destroyed",
            RpCommand::GetStats {
                verbose: true,
                names: vec!["nsess_created".into(), "nsess_destroyed".into()],
            },
        ),
        ("X", RpCommand::DeleteAll),
        (
            "Rs c ft tt",
            RpCommand::Record(Record {
                single_file: true,
                call_id: "c".into(),
                from_tag: tag("ft", None),
                to_tag: Some(tag("tt", None)),
            }),
        ),
        (
            "Cp c udp:192.0.2.9:5000 ft",
            RpCommand::Copy(CopyTo {
                single_file: false,
                reply_port: true,
                call_id: "c".into(),
                target: "udp:192.0.2.9:5000".into(),
                from_tag: tag("ft", None),
                to_tag: None,
            }),
        ),
        (
            "Na c ft tt",
            RpCommand::NoRecord(NoRecord {
                all: true,
                call_id: "c".into(),
                from_tag: tag("ft", None),
                to_tag: Some(tag("tt", None)),
            }),
        ),
    ];
    for (line, expected) in cases {
        let got = bare(line);
        assert_eq!(got, expected, "{line}");
        assert_eq!(bare(&got.to_string()), expected, "{line} through {got}");
    }
    let RpCommand::Play(p) = bare("P c p session ft") else {
        unreachable!()
    };
    assert!(p.uses_session_codecs());
    assert!(p.codec_list().is_empty());
    let RpCommand::Play(p) = bare("P c p 0,8,101 ft") else {
        unreachable!()
    };
    assert_eq!(p.codec_list(), vec![0, 8, 101]);
    assert!(QUERY_COUNTERS.contains(&"npkts_ino"));
}

#[test]
fn word_counts_are_checked_before_modifiers() {
    for (line, expected) in [
        ("U c 192.0.2.1 4000", ecode::ARG_COUNT),
        ("U c 192.0.2.1 4000 ft tt sock tag extra", ecode::ARG_COUNT),
        ("L c 192.0.2.1 4000", ecode::ARG_COUNT),
        ("D c", ecode::ARG_COUNT),
        ("D c ft tt extra", ecode::ARG_COUNT),
        ("P c p session", ecode::ARG_COUNT),
        ("S c", ecode::ARG_COUNT),
        ("Q c", ecode::ARG_COUNT),
        (
            "Q c ft tt a b c d e f g h i j k l",
            ecode::ARG_COUNT, // at most 11 counter names
        ),
        ("R c", ecode::ARG_COUNT),
        ("C c t", ecode::ARG_COUNT),
        ("N c", ecode::ARG_COUNT),
        ("V 1", ecode::ARG_COUNT),
        ("VF", ecode::ARG_COUNT),
        ("VF 20050322 x", ecode::ARG_COUNT),
        ("X all", ecode::ARG_COUNT),
        ("I x", ecode::ARG_COUNT),
        ("Ux c", ecode::ARG_COUNT),
        ("Sx c", ecode::ARG_COUNT),
    ] {
        assert_eq!(code(line), expected, "{line}");
    }
}

#[test]
fn command_modifier_errors() {
    for (line, expected) in [
        ("Sx c ft", ecode::MODIFIERS_NOT_ALLOWED),
        ("Vx", ecode::MODIFIERS_NOT_ALLOWED),
        ("VFx 20050322", ecode::MODIFIERS_NOT_ALLOWED),
        ("Xa", ecode::MODIFIERS_NOT_ALLOWED),
        ("Dx c ft", ecode::DELETE_MODIFIER),
        ("Pabc c p session ft", ecode::PLAY_COUNT),
        ("P- c p session ft", ecode::PLAY_COUNT),
        ("P1x c p session ft", ecode::PLAY_COUNT),
        ("P99999999999 c p session ft", ecode::PLAY_COUNT),
        ("Qx c ft", ecode::QUERY_MODIFIER),
        ("Ix", ecode::INFO_MODIFIER),
        ("Gx", ecode::STATS_MODIFIER),
        ("Rp c ft", ecode::RECORD_MODIFIER_PLACE),
        ("Rx c ft", ecode::RECORD_MODIFIER),
        ("Cx c t ft", ecode::RECORD_MODIFIER),
        ("Nab c ft", ecode::RECORD_MODIFIER_PLACE),
        ("Nx c ft", ecode::RECORD_MODIFIER),
    ] {
        assert_eq!(code(line), expected, "{line}");
    }
}

#[test]
fn unknown_commands_and_garbage() {
    for line in ["Z", "K c ft", "é", "1", "-", "&", "\u{1F600} x"] {
        assert_eq!(code(line), ecode::UNKNOWN_COMMAND, "{line:?}");
    }
    for line in [
        "",
        " ",
        "\r\n",
        "\n\n\t",
        "&& V",
        "V\0",
        "S c\0 ft",
        "U c 192.0.2.1 4000 ft &&",
        "U c 192.0.2.1 4000 ft && && x",
    ] {
        assert_eq!(code(line), ecode::SYNTAX, "{line:?}");
    }
    assert_eq!(
        parse_bytes(b"\xff\xfe V", Framing::Bare).unwrap_err().code,
        ecode::SYNTAX
    );
    let e = parse_bytes(b"c9 S \xff ft", Framing::Cookie).unwrap_err();
    assert_eq!((e.code, e.cookie.as_deref()), (ecode::SYNTAX, Some("c9")));
}

#[test]
fn subcommands_are_refused_after_the_word_count_checks() {
    // OpenSIPS sends "&& M3:1 D..." only after VF 20191015, which rtpark denies.
    assert_eq!(
        code("U c 192.0.2.1 4000 ft tt && M3:1 D 12 dtmf"),
        ecode::SUBCOMMAND
    );
    assert_eq!(code("D c ft && G"), ecode::SUBCOMMAND);
    assert_eq!(code("D c && G"), ecode::ARG_COUNT);
    assert_eq!(code("Sx c ft && G"), ecode::MODIFIERS_NOT_ALLOWED);
    let many = format!("D c ft{}", " && G".repeat(16));
    assert_eq!(code(&many), ecode::SYNTAX);
    let fifteen = format!("D c ft{}", " && G".repeat(15));
    assert_eq!(code(&fifteen), ecode::SUBCOMMAND);
}

#[test]
fn errors_keep_the_cookie_when_there_is_one() {
    let e = parse("77_3 K c", Framing::Cookie).unwrap_err();
    assert_eq!(
        (e.code, e.cookie.as_deref()),
        (ecode::UNKNOWN_COMMAND, Some("77_3"))
    );
    assert_eq!(e.reply(), "77_3 E0\n");

    let e = parse("77_4", Framing::Cookie).unwrap_err();
    assert_eq!((e.code, e.cookie.as_deref()), (ecode::SYNTAX, Some("77_4")));
    assert_eq!(e.reply(), "77_4 E5\n");

    let e = parse(" \n", Framing::Cookie).unwrap_err();
    assert_eq!((e.code, e.cookie.as_deref()), (ecode::SYNTAX, None));
    assert_eq!(e.reply(), "E5\n");

    let e = parse("77_5 U c 192.0.2.1 4000", Framing::Cookie).unwrap_err();
    assert_eq!(e.reply(), "77_5 E1\n");
    assert_eq!(e.to_string().split(':').next(), Some("E1"));
}

#[test]
fn word_and_size_limits() {
    let at_limit = format!("G{}", " n".repeat(MAX_WORDS - 1));
    assert!(parse(&at_limit, Framing::Bare).is_ok());
    let over = format!("G{}", " n".repeat(MAX_WORDS));
    assert_eq!(code(&over), ecode::SYNTAX);

    let long_call = "x".repeat(MAX_COMMAND_BYTES - 20);
    let fits = format!("D {long_call} ft");
    assert!(fits.len() <= MAX_COMMAND_BYTES);
    assert!(parse(&fits, Framing::Bare).is_ok());

    let huge = format!("9_9 D {} ft", "x".repeat(MAX_COMMAND_BYTES));
    let e = parse(&huge, Framing::Cookie).unwrap_err();
    assert_eq!((e.code, e.cookie.as_deref()), (ecode::SYNTAX, Some("9_9")));
    let e = parse_bytes(huge.as_bytes(), Framing::Bare).unwrap_err();
    assert_eq!((e.code, e.cookie), (ecode::SYNTAX, None));
    let e = parse_bytes(&vec![b' '; 1 << 20], Framing::Cookie).unwrap_err();
    assert_eq!(e.code, ecode::SYNTAX);
}

#[test]
fn port_replies_match_rtpproxy() {
    let v4: IpAddr = "192.0.2.10".parse().unwrap();
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    assert_eq!(format_port(None, 35000, v4), "35000 192.0.2.10\n");
    assert_eq!(format_port(None, 35000, v6), "35000 2001:db8::10 6\n");
    assert_eq!(
        format_port(Some("5_1"), 35000, v4),
        "5_1 35000 192.0.2.10\n"
    );
    assert_eq!(
        format_port(Some("5_1"), 35000, v6),
        "5_1 35000 2001:db8::10 6\n"
    );
    // A wildcard bind: rtpproxy sends the port alone and the proxy keeps its address.
    assert_eq!(
        format_port(None, 35000, "0.0.0.0".parse().unwrap()),
        "35000\n"
    );
    assert_eq!(
        format_port(Some("5_2"), 35000, "::".parse().unwrap()),
        "5_2 35000\n"
    );
}

#[test]
fn simple_replies_match_rtpproxy() {
    assert_eq!(format_ok(None), "0\n");
    assert_eq!(format_ok(Some("1_1")), "1_1 0\n");
    assert_eq!(format_error(None, ecode::SESSION_NOT_FOUND), "E50\n");
    assert_eq!(
        format_error(Some("1_2"), ecode::PORT_ALLOCATION_NEW),
        "1_2 E72\n"
    );
    assert_eq!(format_error(None, ecode::UNKNOWN_COMMAND), "E0\n");
    assert_eq!(format_reply(None, "anything"), "anything\n");
    assert_eq!(format_reply(Some("c"), ""), "c \n");
}

#[test]
fn query_and_stats_replies_match_rtpproxy() {
    let c = QueryCounters {
        ttl: 58,
        packets_in_a: 1000,
        packets_in_o: 990,
        relayed: 1985,
        dropped: 5,
    };
    assert_eq!(format_query(None, false, &c), "58 1000 990 1985 5\n");
    assert_eq!(
        format_query(Some("q_1"), true, &c),
        "q_1 ttl=58 npkts_ina=1000 npkts_ino=990 nrelayed=1985 ndropped=5\n"
    );
    let values = [
        ("ttl", StatValue::Int(58)),
        ("rtpa_jmax", StatValue::Float(1.5)),
    ];
    assert_eq!(format_stats(None, false, &values), "58 1.500000\n");
    assert_eq!(
        format_stats(Some("g"), true, &values),
        "g ttl=58 rtpa_jmax=1.500000\n"
    );
    assert_eq!(format_stats(None, true, &[]), "\n");
}

#[test]
fn info_reply_matches_rtpproxy() {
    let mut c = InfoCounters {
        sessions_created: 10,
        sessions_active: 2,
        streams_active: 4,
        packets_received: 500,
        packets_transmitted: 480,
        average_load: None,
    };
    assert_eq!(
        format_info(None, &c),
        "sessions created: 10\nactive sessions: 2\nactive streams: 4\n\
         packets received: 500\npackets transmitted: 480\n"
    );
    c.average_load = Some(0.25);
    assert_eq!(
        format_info(Some("i"), &c),
        "i sessions created: 10\nactive sessions: 2\nactive streams: 4\n\
         packets received: 500\npackets transmitted: 480\naverage load: 0.250000\n"
    );
}

#[test]
fn canonical_form_round_trips_unusual_values() {
    for line in [
        "U6l[::ffff:102:304] c ::ffff:1.2.3.4 1 ft",
        "Ul{a{b} c 192.0.2.1 1 ft",
        "Uc0,,8,e c 192.0.2.1 00080 ft;007 tt;",
        "Uz+5 c x 1 ;1",
        "P+3 c p s f",
        "VF whatever",
        "Csp c t f t2",
    ] {
        let req = parse(line, Framing::Bare).unwrap_or_else(|e| panic!("{line}: {e}"));
        let text = req.to_string();
        assert_eq!(
            parse(&text, Framing::Bare).unwrap(),
            req,
            "{line} -> {text}"
        );
        let with_cookie = format!("k {line}");
        let req = parse(&with_cookie, Framing::Cookie).unwrap();
        assert_eq!(parse(&req.to_string(), Framing::Cookie).unwrap(), req);
    }
}
