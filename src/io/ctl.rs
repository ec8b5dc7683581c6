//! `rtpark ctl`: a command-line client for the native control protocol
//! (docs/native-protocol.md). Sends one request line, prints the reply, and for
//! `subscribe` keeps printing event lines until the engine closes the connection.

use crate::control::native::COMMANDS;
use serde_json::Value;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How long to wait for a reply unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// Fields whose values are names or addresses: always sent as JSON strings.
const STRING_FIELDS: &[&str] = &[
    "call",
    "leg",
    "a",
    "b",
    "remote",
    "remote_rtcp",
    "class",
    "announcement",
    "lot",
    "parker",
];

/// Exit status: the command succeeded (`"ok":true`).
const EXIT_OK: u8 = 0;
/// Exit status: the engine answered `"ok":false`.
const EXIT_REFUSED: u8 = 1;
/// Exit status: bad usage, no connection, or no usable reply.
const EXIT_TROUBLE: u8 = 2;

const USAGE_HINT: &str =
    "usage: rtpark ctl [--socket PATH] [--timeout SECS] <command> [key=value ...]  (see `rtpark ctl --help`)";

/// Runs `rtpark ctl` with the arguments after `ctl`; `socket` is the default socket path.
pub fn run(socket: &Path, args: &[String]) -> ExitCode {
    let invocation = match parse_args(socket, args) {
        Ok(Invocation::Help) => {
            print!("{}", help_text(socket));
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Send(send)) => send,
        Err(message) => {
            eprintln!("rtpark ctl: {message}\n{USAGE_HINT}");
            return ExitCode::from(EXIT_TROUBLE);
        }
    };
    let stream = match UnixStream::connect(&invocation.socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("rtpark ctl: {}", connect_error(&invocation.socket, &e));
            return ExitCode::from(EXIT_TROUBLE);
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = converse(stream, &invocation, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code)
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Invocation {
    Help,
    Send(Send),
}

/// One request to send, and where.
#[derive(Debug, PartialEq)]
struct Send {
    socket: PathBuf,
    /// The request line, without newline.
    line: String,
    /// How long to wait for the reply; `None` waits forever.
    timeout: Option<Duration>,
}

fn parse_args(default_socket: &Path, args: &[String]) -> Result<Invocation, String> {
    let mut socket = default_socket.to_path_buf();
    let mut timeout = Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    let mut raw: Option<String> = None;
    let mut rest = args;
    while let Some(arg) = rest.first() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        if !name.starts_with('-') || name == "-" {
            break;
        }
        rest = &rest[1..];
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let Some((v, tail)) = rest.split_first() else {
                return Err(format!("{name} needs {what}"));
            };
            rest = tail;
            Ok(v.clone())
        };
        match name {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--socket" => socket = PathBuf::from(value("a socket path")?),
            "--raw" => raw = Some(value("a JSON request, e.g. --raw '{\"cmd\":\"ping\"}'")?),
            "--timeout" => {
                let v = value("a number of seconds")?;
                let secs: u64 = v.parse().map_err(|_| {
                    format!(
                        "--timeout must be a whole number of seconds (0 waits forever), got {v:?}"
                    )
                })?;
                timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let line = match raw {
        Some(raw) => {
            if !rest.is_empty() {
                return Err(format!(
                    "--raw sends its JSON as is; drop the extra arguments {rest:?}"
                ));
            }
            if raw.contains('\n') {
                return Err(
                    "--raw takes a single line; compact the JSON first (e.g. with `jq -c`)".into(),
                );
            }
            raw
        }
        None => {
            let Some((cmd, pairs)) = rest.split_first() else {
                return Err("no command given".into());
            };
            if cmd == "help" {
                return Ok(Invocation::Help);
            }
            build_request(cmd, pairs)?
        }
    };
    Ok(Invocation::Send(Send {
        socket,
        line,
        timeout,
    }))
}

/// Builds `{"cmd":cmd,"key":value,...}` from `key=value` arguments, keeping their order.
///
/// A value is sent as JSON if it parses as JSON (numbers, `true`, arrays, objects),
/// else as a string. Names and addresses (`call`, `leg`, `a`, `b`, `remote`,
/// `remote_rtcp`) are always strings, so `leg=1` sends `"1"`.
fn build_request(cmd: &str, pairs: &[String]) -> Result<String, String> {
    let mut line = String::from("{\"cmd\":");
    line.push_str(&json_string(cmd));
    let mut seen: Vec<&str> = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let split = pair.split_once('=').filter(|_| !pair.starts_with('-'));
        let Some((key, text)) = split else {
            let hint = if pair.starts_with('-') {
                " (options go before the command)"
            } else {
                ""
            };
            return Err(format!(
                "expected key=value after the command, got {pair:?}{hint}"
            ));
        };
        if key.is_empty() {
            return Err(format!("{pair:?} has no key before '='"));
        }
        if key == "cmd" {
            return Err(format!(
                "the command is the first argument; drop {pair:?} or use --raw"
            ));
        }
        if seen.contains(&key) {
            return Err(format!("{key} given twice"));
        }
        seen.push(key);
        line.push(',');
        line.push_str(&json_string(key));
        line.push(':');
        line.push_str(&field_value(key, text));
    }
    line.push('}');
    Ok(line)
}

/// The JSON text for one `key=value` argument.
fn field_value(key: &str, text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::String(_)) => to_json(&v),
        Ok(_) if STRING_FIELDS.contains(&key) => json_string(text),
        Ok(v) => to_json(&v),
        Err(_) => json_string(text),
    }
}

fn json_string(s: &str) -> String {
    to_json(&Value::String(s.to_owned()))
}

fn to_json(v: &Value) -> String {
    // A `Value` always has string keys, so serializing it cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// A connection failure, with what to do about it.
fn connect_error(socket: &Path, e: &std::io::Error) -> String {
    let socket = socket.display();
    let hint = match e.kind() {
        ErrorKind::NotFound => {
            "is rtpark running? (start it with `rtpark`, or pass --socket)"
        }
        ErrorKind::PermissionDenied => {
            "the socket is mode 0660: run as its owner or a member of its group (or with sudo)"
        }
        ErrorKind::ConnectionRefused => {
            "nothing is listening there: rtpark is not running (a stale socket file?) or the path is not a socket; start `rtpark` or pass --socket"
        }
        _ => "check the path, or pass --socket",
    };
    format!("cannot connect to {socket}: {} — {hint}", io_reason(e))
}

/// The OS's reason without Rust's " (os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Sends the request, prints the reply (and events after `subscribe`), returns the exit status.
fn converse(stream: UnixStream, send: &Send, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let socket = send.socket.display();
    if let Err(e) = stream.set_read_timeout(send.timeout) {
        let _ = writeln!(err, "rtpark ctl: cannot set a timeout on {socket}: {e}");
        return EXIT_TROUBLE;
    }
    let mut writer = &stream;
    let mut request = String::with_capacity(send.line.len() + 1);
    request.push_str(&send.line);
    request.push('\n');
    if let Err(e) = writer
        .write_all(request.as_bytes())
        .and_then(|()| writer.flush())
    {
        let _ = writeln!(
            err,
            "rtpark ctl: lost the connection to {socket} while sending: {}",
            io_reason(&e)
        );
        return EXIT_TROUBLE;
    }
    let mut reader = BufReader::new(&stream);
    let mut reply = String::new();
    match reader.read_line(&mut reply) {
        Ok(0) => {
            let _ = writeln!(
                err,
                "rtpark ctl: rtpark closed the connection on {socket} without replying; see its log"
            );
            return EXIT_TROUBLE;
        }
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            let secs = send.timeout.map_or(0, |t| t.as_secs());
            let _ = writeln!(
                err,
                "rtpark ctl: no reply from {socket} within {secs} s; rtpark may be overloaded or stuck (see its log, or raise --timeout)"
            );
            return EXIT_TROUBLE;
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "rtpark ctl: reading the reply from {socket} failed: {}",
                io_reason(&e)
            );
            return EXIT_TROUBLE;
        }
    }
    let reply = reply.trim_end_matches(['\n', '\r']);
    let Ok(value) = serde_json::from_str::<Value>(reply) else {
        let _ = writeln!(out, "{reply}");
        let _ = writeln!(
            err,
            "rtpark ctl: the reply is not JSON; is {socket} the native protocol socket?"
        );
        return EXIT_TROUBLE;
    };
    let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| reply.to_owned());
    if writeln!(out, "{pretty}")
        .and_then(|()| out.flush())
        .is_err()
    {
        return EXIT_OK; // stdout closed (e.g. piped into `head`): nothing left to do
    }
    match value.get("ok") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let error = value.get("error");
            let field = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
            let _ = writeln!(
                err,
                "rtpark ctl: {}: {}",
                field("code").unwrap_or("error"),
                field("message").unwrap_or("(no message)")
            );
            return EXIT_REFUSED;
        }
        _ => {
            let _ = writeln!(
                err,
                "rtpark ctl: the reply has no \"ok\" field; is {socket} the native protocol socket?"
            );
            return EXIT_TROUBLE;
        }
    }
    if value.get("subscribed") != Some(&Value::Bool(true)) {
        return EXIT_OK;
    }
    // Events arrive whenever they happen: wait as long as it takes.
    if let Err(e) = stream.set_read_timeout(None) {
        let _ = writeln!(err, "rtpark ctl: cannot wait for events on {socket}: {e}");
        return EXIT_TROUBLE;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return EXIT_OK,
            Ok(_) => {
                let event = line.trim_end_matches(['\n', '\r']);
                if writeln!(out, "{event}").and_then(|()| out.flush()).is_err() {
                    return EXIT_OK;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "rtpark ctl: the event stream from {socket} broke: {}",
                    io_reason(&e)
                );
                return EXIT_TROUBLE;
            }
        }
    }
}

fn help_text(default_socket: &Path) -> String {
    format!(
        r#"rtpark ctl — send one command to a running rtpark over its native control socket

USAGE
    rtpark ctl [OPTIONS] <command> [key=value ...]
    rtpark ctl [OPTIONS] --raw '<json request>'

OPTIONS
    --socket PATH     control socket (default: {socket})
    --timeout SECS    how long to wait for the reply (default: {DEFAULT_TIMEOUT_SECS}; 0 waits forever)
    --raw JSON        send this JSON line as is, e.g. --raw '{{"id":1,"cmd":"ping"}}'
    -h, --help        this text

COMMANDS ({count})
    ping
    create_leg   call=ID [leg=NAME] [remote=IP:PORT] [remote_rtcp=IP:PORT]
                 [trust_address=true] [rtcp_mux=true] [media_timeout=SECS] [silent=true]
                 [ssrc_per_source=true] [ptime=10|20|30|40]
                 [codecs='[{{"pt":0,"name":"PCMU","rate":8000}}]']
    update_leg   leg=NAME [remote=IP:PORT] [remote_rtcp=IP:PORT] [codecs=[...]]
                 [rtcp_mux=true|false] [silent=true|false] [ptime=MS]
    bridge       a=LEG b=LEG
    unbridge     leg=NAME
    delete_leg   leg=NAME
    delete_call  call=ID
    query_call   call=ID
    list_calls
    stats
    subscribe    (then prints one event per line until rtpark closes; Ctrl-C to stop)
    hold         leg=NAME [class=default] [peer_hears=nothing|silence]
    unhold       leg=NAME
    play         leg=NAME announcement=NAME [then=live|moh|nothing] [class=NAME]
    stop_play    leg=NAME
    play_media   leg=NAME (file=PATH | media=NAME) [repeat=N|-1] [start_ms=MS] [hold=true]
    stop_media   leg=NAME   (ends play_media/play; a hold stays)
    block_media  leg=NAME   (its audio reaches no one; unblock_media undoes it)
    silence_media leg=NAME  (its G.711 audio is relayed as silence; unsilence_media undoes it)
    unblock_media leg=NAME
    unsilence_media leg=NAME
    list_media
    park         leg=NAME [lot=default] [slot=N] [parker=LEG]
    retrieve     leg=NAME [lot=default] [slot=N]   (no slot: the longest-waiting call)
    list_parked
    list_lots

VALUES
    Each value is sent as JSON if it parses as JSON (42, true, [..], {{..}}), else as a
    string. call, leg, a, b, remote and remote_rtcp are always strings (leg=1 sends "1").
    key=value pairs become fields of {{"cmd":<command>, ...}}; add id=... to tag the request.

OUTPUT AND EXIT STATUS
    The reply is printed as indented JSON.
    0  the command succeeded ("ok":true)
    1  rtpark refused it ("ok":false); the error code and message also go to stderr
    2  usage error, no connection, or no usable reply

EXAMPLES
    rtpark ctl ping
    rtpark ctl create_leg call=c1 leg=c1-a remote=192.0.2.10:30000
    rtpark ctl bridge a=c1-a b=c1-b
    rtpark ctl --socket /tmp/rtpark.sock query_call call=c1
    rtpark ctl hold leg=c1-a class=calm
    rtpark ctl unhold leg=c1-a
    rtpark ctl park leg=c1-a
    rtpark ctl retrieve leg=c2-a slot=701
    rtpark ctl subscribe

Full reference: docs/native-protocol.md
"#,
        socket = default_socket.display(),
        count = COMMANDS.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn built(list: &[&str]) -> Value {
        let (cmd, pairs) = list.split_first().unwrap();
        let line = build_request(cmd, &args(pairs)).unwrap();
        assert!(line.starts_with("{\"cmd\":"), "{line}");
        serde_json::from_str(&line).unwrap()
    }

    fn send(list: &[&str]) -> Send {
        match parse_args(Path::new("/default.sock"), &args(list)) {
            Ok(Invocation::Send(s)) => s,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn key_values_become_typed_json() {
        assert_eq!(built(&["ping"]), json!({"cmd": "ping"}));
        assert_eq!(
            built(&[
                "create_leg",
                "call=c1",
                "remote=[::1]:5000",
                "rtcp_mux=true",
                "media_timeout=30",
                r#"codecs=[{"pt":0,"name":"PCMU","rate":8000}]"#,
                "note=hello world",
                "empty=",
                "id={\"n\":1}",
            ]),
            json!({
                "cmd": "create_leg", "call": "c1", "remote": "[::1]:5000", "rtcp_mux": true,
                "media_timeout": 30, "codecs": [{"pt": 0, "name": "PCMU", "rate": 8000}],
                "note": "hello world", "empty": "", "id": {"n": 1}
            })
        );
    }

    #[test]
    fn names_stay_strings_even_when_they_look_like_json() {
        assert_eq!(
            built(&["bridge", "a=1", "b=true", "id=1"]),
            json!({"cmd": "bridge", "a": "1", "b": "true", "id": 1})
        );
        assert_eq!(
            built(&["delete_call", r#"call="quoted""#]),
            json!({"cmd": "delete_call", "call": "quoted"})
        );
        assert_eq!(
            built(&["x", r#"s="7""#, "t=null", "u=a=b"]),
            json!({"cmd": "x", "s": "7", "t": null, "u": "a=b"})
        );
    }

    #[test]
    fn fields_keep_their_order() {
        let line = build_request("bridge", &args(&["b=y", "a=x"])).unwrap();
        assert_eq!(line, r#"{"cmd":"bridge","b":"y","a":"x"}"#);
    }

    #[test]
    fn bad_pairs_are_usage_errors() {
        for pairs in [
            &["call"][..],
            &["=x"],
            &["cmd=ping"],
            &["leg=a", "leg=b"],
            &["--socket=/x"],
        ] {
            assert!(build_request("c", &args(pairs)).is_err(), "{pairs:?}");
        }
        let e = build_request("c", &args(&["--socket", "/x"])).unwrap_err();
        assert!(e.contains("options go before the command"), "{e}");
    }

    #[test]
    fn options() {
        let s = send(&["ping"]);
        assert_eq!(s.socket, Path::new("/default.sock"));
        assert_eq!(s.line, r#"{"cmd":"ping"}"#);
        assert_eq!(s.timeout, Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS)));
        let s = send(&["--socket", "/tmp/a.sock", "--timeout=0", "stats"]);
        assert_eq!(s.socket, Path::new("/tmp/a.sock"));
        assert_eq!(s.timeout, None);
        let s = send(&["--socket=/tmp/b.sock", "--raw", r#"{"id":1,"cmd":"ping"}"#]);
        assert_eq!(s.socket, Path::new("/tmp/b.sock"));
        assert_eq!(s.line, r#"{"id":1,"cmd":"ping"}"#);
        // --raw sends anything, so the engine's own error replies can be tried.
        assert_eq!(send(&["--raw", "not json"]).line, "not json");
    }

    #[test]
    fn usage_errors() {
        let p = Path::new("/d");
        for list in [
            &[][..],
            &["--socket"],
            &["--bogus", "ping"],
            &["--timeout", "soon", "ping"],
            &["--raw", "{}", "extra=1"],
            &["--raw", "{\n}"],
        ] {
            assert!(parse_args(p, &args(list)).is_err(), "{list:?}");
        }
        for list in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["--socket", "/x", "--help"],
        ] {
            assert_eq!(parse_args(p, &args(list)), Ok(Invocation::Help), "{list:?}");
        }
    }

    #[test]
    fn help_lists_every_command() {
        let text = help_text(Path::new("/run/rtpark/native.sock"));
        assert!(text.contains("/run/rtpark/native.sock"));
        for cmd in COMMANDS {
            assert!(
                text.contains(&format!("\n    {cmd}")),
                "{cmd} missing from help"
            );
        }
    }

    #[test]
    fn connect_errors_say_what_to_do() {
        let e = UnixStream::connect("/nonexistent/rtpark-test.sock").unwrap_err();
        let msg = connect_error(Path::new("/nonexistent/rtpark-test.sock"), &e);
        assert_eq!(
            msg,
            "cannot connect to /nonexistent/rtpark-test.sock: No such file or directory — is rtpark running? (start it with `rtpark`, or pass --socket)"
        );
    }

    #[test]
    fn run_against_a_listening_socket() {
        let dir = std::env::temp_dir().join(format!("rtpark-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("native.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let engine = std::thread::spawn(move || {
            for reply in [
                "{\"ok\":true}\n",
                "{\"ok\":false,\"error\":{\"code\":\"unknown_call\",\"message\":\"no call\"}}\n",
            ] {
                let (conn, _) = listener.accept().unwrap();
                let mut got = String::new();
                BufReader::new(&conn).read_line(&mut got).unwrap();
                (&conn).write_all(reply.as_bytes()).unwrap();
            }
        });
        assert_eq!(run(&path, &args(&["stats"])), ExitCode::SUCCESS);
        assert_eq!(
            run(&path, &args(&["query_call", "call=c"])),
            ExitCode::from(EXIT_REFUSED)
        );
        engine.join().unwrap();
        let missing = dir.join("absent.sock");
        assert_eq!(
            run(&missing, &args(&["ping"])),
            ExitCode::from(EXIT_TROUBLE)
        );
        assert_eq!(
            run(&missing, &args(&["--bogus"])),
            ExitCode::from(EXIT_TROUBLE)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs `converse` against a fake engine that answers with `replies`.
    fn talk(line: &str, replies: &'static str) -> (u8, String, String, String) {
        let (client, server) = UnixStream::pair().unwrap();
        let engine = std::thread::spawn(move || {
            let mut got = String::new();
            BufReader::new(&server).read_line(&mut got).unwrap();
            (&server).write_all(replies.as_bytes()).unwrap();
            got
        });
        let send = Send {
            socket: PathBuf::from("/test.sock"),
            line: line.to_owned(),
            timeout: Some(Duration::from_secs(5)),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = converse(client, &send, &mut out, &mut err);
        let got = engine.join().unwrap();
        (
            code,
            got,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn ok_reply_exits_zero_and_pretty_prints() {
        let (code, got, out, err) = talk(r#"{"cmd":"ping"}"#, "{\"ok\":true,\"pong\":\"pong\"}\n");
        assert_eq!(got, "{\"cmd\":\"ping\"}\n");
        assert_eq!(code, EXIT_OK);
        assert_eq!(out, "{\n  \"ok\": true,\n  \"pong\": \"pong\"\n}\n");
        assert_eq!(err, "");
    }

    #[test]
    fn error_reply_exits_one_with_message_on_stderr() {
        let (code, _, out, err) = talk(
            r#"{"cmd":"delete_leg","leg":"x"}"#,
            "{\"ok\":false,\"error\":{\"code\":\"unknown_leg\",\"message\":\"no leg named \\\"x\\\"\"}}\n",
        );
        assert_eq!(code, EXIT_REFUSED);
        assert!(out.contains("\"unknown_leg\""), "{out}");
        assert_eq!(err, "rtpark ctl: unknown_leg: no leg named \"x\"\n");
    }

    #[test]
    fn subscribe_prints_events_until_eof() {
        let (code, _, out, _) = talk(
            r#"{"cmd":"subscribe"}"#,
            "{\"ok\":true,\"subscribed\":true}\n{\"event\":\"call_deleted\",\"call\":\"c\",\"reason\":\"command\"}\n",
        );
        assert_eq!(code, EXIT_OK);
        assert!(
            out.ends_with(
                "}\n{\"event\":\"call_deleted\",\"call\":\"c\",\"reason\":\"command\"}\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn silence_times_out() {
        let (client, _server) = UnixStream::pair().unwrap();
        let send = Send {
            socket: PathBuf::from("/test.sock"),
            line: r#"{"cmd":"ping"}"#.to_owned(),
            timeout: Some(Duration::from_millis(50)),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(converse(client, &send, &mut out, &mut err), EXIT_TROUBLE);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("no reply from /test.sock"), "{err}");
    }

    #[test]
    fn broken_replies_exit_two() {
        let (code, _, _, err) = talk(r#"{"cmd":"ping"}"#, "");
        assert_eq!(code, EXIT_TROUBLE);
        assert!(err.contains("without replying"), "{err}");
        let (code, _, out, err) = talk(r#"{"cmd":"ping"}"#, "+OK\n");
        assert_eq!(code, EXIT_TROUBLE);
        assert_eq!(out, "+OK\n");
        assert!(err.contains("not JSON"), "{err}");
        let (code, _, _, err) = talk(r#"{"cmd":"ping"}"#, "{\"pong\":1}\n");
        assert_eq!(code, EXIT_TROUBLE);
        assert!(err.contains("no \"ok\""), "{err}");
    }
}
