//! Error replies of the native protocol over a real rtpark socket
//! (docs/native-protocol.md): codes, messages that name the field, id echo,
//! line limits, pipelining, and the engine serving other connections throughout.

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::net::UnixStream;
use support::*;

/// One engine per test; the control plane does not depend on the packet backend.
fn engine() -> Engine {
    Engine::on(Backend::Epoll)
}

/// Sends a raw line and returns the reply.
fn raw(ctl: &mut Control, line: &str) -> Value {
    ctl.send_raw(line.as_bytes());
    ctl.send_raw(b"\n");
    ctl.reply()
}

fn code_of(reply: &Value) -> &str {
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

fn message_of(reply: &Value) -> &str {
    reply["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

fn assert_alive(ctl: &mut Control) {
    assert_eq!(ctl.ok(json!({"cmd": "ping"}))["pong"], json!("pong"));
}

#[test]
fn unparsable_lines_are_bad_request() {
    let engine = engine();
    let mut ctl = engine.control();
    let mut bystander = engine.control();
    for line in [
        "{\"cmd\":",
        "not json at all",
        "{\"cmd\":\"ping\"} trailing",
        "[1,2,3]",
        "\"ping\"",
        "42",
        "null",
        "{\"cmd\":5}",
        "{\"cmd\":[\"ping\"]}",
        "{\"id\":7,\"cmd\":true}",
    ] {
        let reply = raw(&mut ctl, line);
        assert_eq!(reply["ok"], json!(false), "{line}: {reply}");
        assert_eq!(code_of(&reply), "bad_request", "{line}: {reply}");
        assert!(!message_of(&reply).is_empty());
        if !line.starts_with("{\"id\"") {
            assert!(reply.get("id").is_none(), "{line}: no id to echo: {reply}");
        }
        // The connection is still usable after each one.
        assert_alive(&mut ctl);
    }
    // A request that is an object but names no command.
    let reply = raw(&mut ctl, "{\"id\":\"x\"}");
    assert_eq!(code_of(&reply), "missing_field", "{reply}");
    assert!(message_of(&reply).contains("cmd"), "{reply}");
    assert_eq!(reply["id"], json!("x"));
    assert_alive(&mut bystander);
}

#[test]
fn unknown_commands_are_named() {
    let engine = engine();
    let mut ctl = engine.control();
    let reply = ctl.request(json!({"id": 1, "cmd": "frobnicate"}));
    assert_eq!(code_of(&reply), "unknown_command", "{reply}");
    assert!(message_of(&reply).contains("frobnicate"), "{reply}");
    assert!(
        message_of(&reply).contains("create_leg"),
        "lists valid commands: {reply}"
    );
    assert_eq!(reply["id"], json!(1));
    // Names operators may guess get a hint; names are case-sensitive.
    let reply = ctl.request(json!({"cmd": "unpark", "leg": "x"}));
    assert_eq!(code_of(&reply), "unknown_command", "{reply}");
    assert!(message_of(&reply).contains("retrieve"), "{reply}");
    let reply = ctl.request(json!({"cmd": "PING"}));
    assert_eq!(code_of(&reply), "unknown_command", "{reply}");
}

#[test]
fn missing_required_fields_are_named() {
    let engine = engine();
    let mut ctl = engine.control();
    ctl.create_leg("c", "a", "127.0.0.1:4000".parse().unwrap());
    let cases: Vec<(Value, &str)> = vec![
        (json!({"cmd": "create_leg", "leg": "x"}), "call"),
        (json!({"cmd": "create_leg", "call": null}), "call"),
        (json!({"cmd": "update_leg", "remote": "127.0.0.1:1"}), "leg"),
        (json!({"cmd": "bridge", "a": "a"}), "b"),
        (json!({"cmd": "bridge", "b": "a"}), "a"),
        (json!({"cmd": "bridge", "a": "a", "b": null}), "b"),
        (json!({"cmd": "unbridge"}), "leg"),
        (json!({"cmd": "delete_leg"}), "leg"),
        (json!({"cmd": "delete_call"}), "call"),
        (json!({"cmd": "query_call"}), "call"),
        (
            json!({"cmd": "create_leg", "call": "c", "codecs": [{"pt": 0, "name": "PCMU"}]}),
            "codecs[0].rate",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "codecs": [{"pt": 0, "rate": 8000}]}),
            "codecs[0].name",
        ),
    ];
    for (request, field) in cases {
        let (code, message) = ctl.err(request.clone());
        assert_eq!(code, "missing_field", "{request}: {message}");
        assert!(
            message.contains(&format!("\"{field}\"")),
            "{request}: message should name \"{field}\": {message}"
        );
    }
    // Nothing was created by the failed requests.
    let calls = ctl.ok(json!({"cmd": "list_calls"}))["calls"].clone();
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
}

#[test]
fn wrong_types_are_invalid_field() {
    let engine = engine();
    let mut ctl = engine.control();
    ctl.create_leg("c", "a", "127.0.0.1:4000".parse().unwrap());
    let cases: Vec<(Value, &str)> = vec![
        (json!({"cmd": "create_leg", "call": 5}), "call"),
        (json!({"cmd": "create_leg", "call": ""}), "call"),
        (json!({"cmd": "create_leg", "call": "c", "leg": ""}), "leg"),
        (
            json!({"cmd": "create_leg", "call": "c", "leg": ["x"]}),
            "leg",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "remote": "foo"}),
            "remote",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "remote": "example.com:4000"}),
            "remote",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "remote": "127.0.0.1:0"}),
            "remote",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "remote": "127.0.0.1:70000"}),
            "remote",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "remote": 4000}),
            "remote",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "remote_rtcp": "1.2.3.4"}),
            "remote_rtcp",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "rtcp_mux": 1}),
            "rtcp_mux",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "trust_address": "true"}),
            "trust_address",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "media_timeout": "30"}),
            "media_timeout",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "media_timeout": 30.5}),
            "media_timeout",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "media_timeout": -1}),
            "media_timeout",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "codecs": "PCMU"}),
            "codecs",
        ),
        (
            json!({"cmd": "create_leg", "call": "c", "codecs": [{"pt": 200, "name": "PCMU", "rate": 8000}]}),
            "codecs[0].pt",
        ),
        (
            json!({"cmd": "update_leg", "leg": "a", "silent": "yes"}),
            "silent",
        ),
        (json!({"cmd": "update_leg", "leg": 3}), "leg"),
        (json!({"cmd": "bridge", "a": "a", "b": 7}), "b"),
        (json!({"cmd": "delete_call", "call": {"id": "c"}}), "call"),
    ];
    for (request, field) in cases {
        let (code, message) = ctl.err(request.clone());
        assert_eq!(code, "invalid_field", "{request}: {message}");
        assert!(
            message.contains(field),
            "{request}: message should name {field}: {message}"
        );
    }
    // The existing leg was not touched by the failed update.
    let info = ctl.leg_info("c", "a");
    assert_eq!(info["remote"], json!("127.0.0.1:4000"), "{info}");
}

#[test]
fn unknown_legs_and_calls() {
    let engine = engine();
    let mut ctl = engine.control();
    ctl.create_leg("c", "a", "127.0.0.1:4000".parse().unwrap());
    for request in [
        json!({"cmd": "update_leg", "leg": "ghost", "remote": "127.0.0.1:5000"}),
        json!({"cmd": "bridge", "a": "ghost", "b": "a"}),
        json!({"cmd": "bridge", "a": "a", "b": "ghost"}),
        json!({"cmd": "unbridge", "leg": "ghost"}),
        json!({"cmd": "delete_leg", "leg": "ghost"}),
        // Names are compared exactly.
        json!({"cmd": "delete_leg", "leg": "A"}),
    ] {
        let (code, message) = ctl.err(request.clone());
        assert_eq!(code, "unknown_leg", "{request}: {message}");
        let name = request.get("leg").or(request.get("a")).unwrap();
        let name = if name == "a" {
            "ghost"
        } else {
            name.as_str().unwrap()
        };
        assert!(
            message.contains(name),
            "{request}: message should name {name}: {message}"
        );
    }
    for request in [
        json!({"cmd": "query_call", "call": "nope"}),
        json!({"cmd": "delete_call", "call": "nope"}),
        // A leg name is not a call id.
        json!({"cmd": "query_call", "call": "a"}),
    ] {
        let (code, message) = ctl.err(request.clone());
        assert_eq!(code, "unknown_call", "{request}: {message}");
        let call = request["call"].as_str().unwrap();
        assert!(message.contains(call), "{request}: {message}");
    }
    // A deleted leg is unknown afterwards; deleting its call's last leg removed the call.
    ctl.ok(json!({"cmd": "delete_leg", "leg": "a"}));
    assert_eq!(
        ctl.err(json!({"cmd": "delete_leg", "leg": "a"})).0,
        "unknown_leg"
    );
    assert_eq!(
        ctl.err(json!({"cmd": "query_call", "call": "c"})).0,
        "unknown_call"
    );
}

#[test]
fn duplicate_leg_names_are_refused() {
    let engine = engine();
    let mut ctl = engine.control();
    let first = ctl.create_leg("c1", "same", "127.0.0.1:4000".parse().unwrap());
    for call in ["c1", "c2"] {
        let (code, message) = ctl.err(json!({"cmd": "create_leg", "call": call, "leg": "same"}));
        assert_eq!(code, "leg_exists", "{message}");
        assert!(message.contains("same"), "{message}");
    }
    // The first leg is unchanged and no call c2 appeared.
    let info = ctl.leg_info("c1", "same");
    assert_eq!(info["rtp_port"], first["rtp_port"], "{info}");
    assert_eq!(
        ctl.err(json!({"cmd": "query_call", "call": "c2"})).0,
        "unknown_call"
    );
    // Generated names never collide with given ones.
    let generated = ctl.ok(json!({"cmd": "create_leg", "call": "c1"}));
    let name = generated["leg"].as_str().unwrap().to_owned();
    assert!(!name.is_empty() && name != "same", "{generated}");
    let (code, _) = ctl.err(json!({"cmd": "create_leg", "call": "c1", "leg": name}));
    assert_eq!(code, "leg_exists");
}

/// docs/native-protocol.md, `bridge`: "`invalid_state` (the legs cannot be bridged
/// in their current state, e.g. `a` and `b` are the same leg)".
#[test]
fn bridging_a_leg_to_itself_is_refused() {
    let engine = engine();
    let mut ctl = engine.control();
    ctl.create_leg("c", "a", "127.0.0.1:4000".parse().unwrap());
    let (code, message) = ctl.err(json!({"cmd": "bridge", "a": "a", "b": "a"}));
    assert!(message.contains("a"), "{message}");
    let info = ctl.leg_info("c", "a");
    assert_eq!(info["peer"], json!(null), "{info}");
    assert_eq!(info["state"], json!("idle"), "{info}");
    assert_eq!(
        code, "invalid_state",
        "documented code for a self-bridge; message: {message}"
    );
}

#[test]
fn ids_are_echoed_on_success_and_error() {
    let engine = engine();
    let mut ctl = engine.control();
    for id in [
        json!(1),
        json!(-3),
        json!(18446744073709551615u64),
        json!("q-1"),
        json!(""),
        json!([1, "two"]),
        json!({"k": [1]}),
        json!(null),
        json!(true),
    ] {
        let reply = ctl.request(json!({"id": id, "cmd": "ping"}));
        assert_eq!(reply["ok"], json!(true), "{reply}");
        assert_eq!(reply.get("id"), Some(&id), "success echoes {id}: {reply}");
        let reply = ctl.request(json!({"id": id, "cmd": "query_call", "call": "none"}));
        assert_eq!(code_of(&reply), "unknown_call", "{reply}");
        assert_eq!(
            reply.get("id"),
            Some(&id),
            "engine error echoes {id}: {reply}"
        );
        let reply = ctl.request(json!({"id": id, "cmd": "bridge", "a": "x"}));
        assert_eq!(code_of(&reply), "missing_field", "{reply}");
        assert_eq!(
            reply.get("id"),
            Some(&id),
            "parse error echoes {id}: {reply}"
        );
    }
    // No id, no id key.
    let reply = ctl.request(json!({"cmd": "ping"}));
    assert!(reply.get("id").is_none(), "{reply}");
    // Strings and integers come back byte for byte, and `id` comes first.
    let reply_line = {
        let mut s = UnixStream::connect(&engine.socket).unwrap();
        s.write_all(b"{\"cmd\":\"ping\",\"id\":12345678901234567890}\n")
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line).unwrap();
        line
    };
    assert!(
        reply_line.starts_with("{\"id\":12345678901234567890,\"ok\":true"),
        "{reply_line}"
    );
}

/// A request line of exactly `len` bytes (before the newline) that is a valid ping.
fn padded_ping(id: u32, len: usize) -> String {
    let head = format!("{{\"id\":{id},\"cmd\":\"ping\"}}");
    assert!(len >= head.len());
    let mut line = String::with_capacity(len);
    line.push_str(&head[..head.len() - 1]);
    line.push_str(&" ".repeat(len - head.len()));
    line.push('}');
    assert_eq!(line.len(), len);
    line
}

#[test]
fn over_long_lines_are_bad_request_and_the_connection_survives() {
    let engine = engine();
    let mut ctl = engine.control();
    let mut bystander = engine.control();
    for len in [65_537, 70_000, 300_000] {
        let line = padded_ping(1, len);
        let reply = raw(&mut ctl, &line);
        assert_eq!(code_of(&reply), "bad_request", "{len} bytes: {reply}");
        assert!(reply.get("id").is_none(), "{reply}");
        assert!(
            message_of(&reply).contains("65536"),
            "message should state the limit: {reply}"
        );
        // The rest of the long line was skipped: the next request is answered normally.
        let next = ctl.ok(json!({"id": 2, "cmd": "ping"}));
        assert_eq!(next["id"], json!(2));
        assert_alive(&mut bystander);
    }
    // Non-JSON garbage over the limit, then a request pipelined right behind it.
    let mut bytes = vec![b'x'; 100_000];
    bytes.extend_from_slice(b"\n{\"id\":3,\"cmd\":\"ping\"}\n");
    ctl.send_raw(&bytes);
    assert_eq!(code_of(&ctl.reply()), "bad_request");
    assert_eq!(ctl.reply()["id"], json!(3));
}

/// The documented limit is 65 536 bytes *not counting the newline*: a line of
/// exactly that length (or with a `\r` before the newline) is accepted.
#[test]
fn line_of_exactly_64_kib_is_accepted() {
    let engine = engine();
    let mut ctl = engine.control();
    let cases = [
        ("65535 bytes", padded_ping(1, 65_535)),
        ("65535 bytes + CR", format!("{}\r", padded_ping(2, 65_535))),
        (
            "65536 bytes (the documented maximum)",
            padded_ping(3, 65_536),
        ),
    ];
    let mut refused = Vec::new();
    for (i, (what, line)) in cases.iter().enumerate() {
        let reply = raw(&mut ctl, line);
        if reply["ok"] != json!(true) || reply["id"] != json!(i + 1) {
            refused.push(format!("{what}: {reply}"));
        }
    }
    assert!(
        refused.is_empty(),
        "lines within the limit were refused:\n{}",
        refused.join("\n")
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let engine = engine();
    let mut ctl = engine.control();
    let mut batch = String::new();
    let mut expect: Vec<(u32, bool)> = Vec::new();
    for i in 0..60u32 {
        let (line, ok) = match i % 6 {
            0 => (json!({"id": i, "cmd": "ping"}), true),
            1 => (
                json!({"id": i, "cmd": "create_leg", "call": format!("p{}", i / 6), "leg": format!("leg{i}")}),
                true,
            ),
            2 => (
                json!({"id": i, "cmd": "query_call", "call": "missing"}),
                false,
            ),
            3 => (json!({"id": i, "cmd": "stats"}), true),
            4 => (
                json!({"id": i, "cmd": "bridge", "a": format!("leg{}", i - 3)}),
                false,
            ),
            _ => (
                json!({"id": i, "cmd": "delete_call", "call": format!("p{}", i / 6)}),
                true,
            ),
        };
        batch.push_str(&line.to_string());
        batch.push('\n');
        expect.push((i, ok));
    }
    // One write, CRLF on one of them for good measure.
    let batch = batch.replacen("\"ping\"}\n", "\"ping\"}\r\n", 1);
    ctl.send_raw(batch.as_bytes());
    for (i, ok) in expect {
        let reply = ctl.reply();
        assert_eq!(reply["id"], json!(i), "reply out of order: {reply}");
        assert_eq!(reply["ok"], json!(ok), "request {i}: {reply}");
    }
    assert_eq!(ctl.ok(json!({"cmd": "list_calls"}))["calls"], json!([]));
}

/// docs/native-protocol.md: "Replies come back in request order, exactly one
/// line per request line (an empty line too gets a `bad_request` reply)."
#[test]
fn empty_lines_get_a_bad_request_reply() {
    let engine = engine();
    let mut ctl = engine.control();
    ctl.send_raw(b"{\"id\":1,\"cmd\":\"ping\"}\n\n   \n{\"id\":2,\"cmd\":\"ping\"}\n");
    let replies: Vec<Value> = (0..2).map(|_| ctl.reply()).collect();
    assert_eq!(replies[0]["id"], json!(1));
    assert_eq!(
        code_of(&replies[1]),
        "bad_request",
        "the empty line after id 1 should get its own reply, got {}",
        replies[1]
    );
    let third = ctl.reply();
    assert_eq!(code_of(&third), "bad_request", "{third}");
    assert_eq!(ctl.reply()["id"], json!(2));
}

#[test]
fn other_connections_are_served_throughout() {
    let engine = engine();
    let mut stalled = engine.control();
    let mut busy = engine.control();
    // One client sends half a line and stops; another sends a huge line slowly.
    stalled.send_raw(b"{\"id\":\"s\",\"cmd\":\"pi");
    busy.send_raw(&vec![b' '; 50_000]);
    // Meanwhile fresh connections come and go and get answers.
    for i in 0..20 {
        let mut c = engine.control();
        assert_eq!(c.ok(json!({"id": i, "cmd": "ping"}))["id"], json!(i));
        if i % 5 == 0 {
            c.create_leg(
                &format!("other{i}"),
                &format!("o{i}"),
                "127.0.0.1:4000".parse().unwrap(),
            );
        }
    }
    // A client that disconnects mid-request does not disturb anyone.
    {
        let mut gone = engine.control();
        gone.send_raw(b"{\"cmd\":\"stats\"");
    }
    // Both slow clients finish their lines and get their answers.
    stalled.send_raw(b"ng\"}\n");
    assert_eq!(stalled.reply()["id"], json!("s"));
    busy.send_raw(b"{\"id\":\"b\",\"cmd\":\"ping\"}\n");
    let reply = busy.reply();
    assert_eq!(
        reply["id"],
        json!("b"),
        "leading spaces are JSON whitespace: {reply}"
    );
    let calls = engine.control().ok(json!({"cmd": "list_calls"}))["calls"].clone();
    assert_eq!(calls.as_array().map(Vec::len), Some(4), "{calls}");
}
