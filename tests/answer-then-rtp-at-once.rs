//! A SIP core's offer creates both parties' legs already bridged, and its answer
//! takes effect before any RTP that follows it: a caller that sends the moment
//! the answer's reply arrives is heard by the callee, call after call. Deleting
//! a call frees its ports before the reply (on io_uring too, where a receive
//! in flight holds its socket until the ring retires it). Real binary, real sockets, both backends.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

backend_tests!(rtp_right_after_the_answer_reaches_the_callee,);

/// How long a control reply may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Calls set up, used and deleted in a row.
const CALLS: u32 = 40;

fn unix_command(path: &Path, command: &str) -> String {
    let mut s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
    s.set_read_timeout(Some(TIMEOUT)).expect("set read timeout");
    s.write_all(command.as_bytes())
        .unwrap_or_else(|e| panic!("cannot send {command:?}: {e}"));
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .unwrap_or_else(|e| panic!("no reply to {command:?}: {e}"));
    String::from_utf8(reply).unwrap_or_else(|e| panic!("reply to {command:?} is not text: {e}"))
}

/// The port of a `U`/`L` reply `PORT 127.0.0.1\n`.
fn port_reply(reply: &str, engine: &Engine) -> u16 {
    reply
        .strip_suffix(" 127.0.0.1\n")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| p % 2 == 0)
        .unwrap_or_else(|| {
            panic!(
                "expected `PORT 127.0.0.1\\n`, got {reply:?}; stderr:\n{}",
                engine.stderr()
            )
        })
}

fn rtp_right_after_the_answer_reaches_the_callee(backend: Backend) {
    let dir = TempDir::new();
    let sock = dir.join("rtpproxy.sock");
    let engine = Engine::start(EngineOptions::new(backend).config(&format!(
        "listen_rtpproxy = [{}]",
        toml_string(&format!("unix:{}", sock.display()))
    )));
    let deadline = Instant::now() + TIMEOUT;
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "rtpproxy socket never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut ctl = engine.control();
    let free_before = ctl.ok(serde_json::json!({"cmd": "stats"}))["free_port_pairs"].clone();
    let (caller, callee) = (Phone::new(), Phone::new());
    for n in 0..CALLS {
        let call = format!("call-{n}@fast-path");
        let u = format!(
            "Uc0,101 {call} 127.0.0.1 {} from{n};1",
            caller.addr().port()
        );
        let to_callee = port_reply(&unix_command(&sock, &u), &engine);
        let l = format!(
            "Lc0,101 {call} 127.0.0.1 {} from{n};1 to{n};1",
            callee.addr().port()
        );
        let to_caller = port_reply(&unix_command(&sock, &l), &engine);
        assert_ne!(to_caller, to_callee, "each party gets a port of its own");

        // No pause: the answer named the callee's address just now.
        let forth = rtp(n as u16, 160 * n, 0xca11_e001, 0, &payload(n, 160));
        caller.rtp.send_to_port(&forth, to_caller);
        let (got, from) = callee.rtp.recv_within(PACKET_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "call {n}: the callee heard nothing sent right after the answer; stderr:\n{}",
                engine.stderr()
            )
        });
        assert_eq!(got, forth, "call {n}: relayed byte for byte");
        assert_eq!(
            from.port(),
            to_callee,
            "call {n}: from the callee's own port"
        );

        let back = rtp(n as u16, 160 * n, 0xca11_e002, 0, &payload(n + 1, 160));
        callee.rtp.send_to_port(&back, to_callee);
        assert_eq!(caller.rtp.recv().0, back, "call {n}: relayed back");

        assert_eq!(unix_command(&sock, &format!("D {call} from{n}")), "0\n");
        // The reply comes after the worker parked the sockets: refusing at once.
        for port in [to_caller, to_callee] {
            assert_pair_kept_and_refusing(port);
        }
    }
    let stats = ctl.ok(serde_json::json!({"cmd": "stats"}));
    assert_eq!(stats["free_port_pairs"], free_before, "{stats}");
    assert_eq!(stats["legs"], serde_json::json!(0), "{stats}");
}
