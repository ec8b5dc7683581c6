//! Starting and stopping the real binary: configuration errors exit 2 naming
//! the culprit, SIGTERM exits 0 and removes the socket, `rtpark ctl` and
//! `rtpark check-config` behave as documented.

mod support;

use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;
use support::*;

/// Runs `rtpark` (engine mode) with a config file and returns (status, stderr).
fn run_with_config(
    dir: &TempDir,
    toml: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, String) {
    let config = dir.join("bad.toml");
    std::fs::write(&config, toml).unwrap();
    let socket = format!("unix:{}", dir.join("never.sock").display());
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "--listen-native",
        &socket,
        "--port-min",
        "31900",
        "--port-max",
        "31999",
        "--log-level",
        "warn",
    ];
    args.extend_from_slice(extra);
    let (status, _, stderr) = run_rtpark(&args);
    assert!(
        !dir.join("never.sock").exists(),
        "a refused start must not leave a control socket behind"
    );
    (status, stderr)
}

#[test]
fn unknown_config_key_exits_2_naming_the_key() {
    let dir = TempDir::new();
    let (status, stderr) = run_with_config(&dir, "workers = 1\nprot_min = 30000\n", &[]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("prot_min"),
        "stderr should name the unknown key: {stderr}"
    );
    assert!(
        stderr.contains("bad.toml"),
        "stderr should name the file: {stderr}"
    );
}

#[test]
fn out_of_range_values_exit_2_naming_the_key() {
    let dir = TempDir::new();
    // Values the file gets wrong; the message may use the file key or its flag spelling.
    for (toml, keys) in [
        ("port_min = 70000\n", &["port_min", "port-min"][..]),
        ("media_timeout = 0\n", &["media_timeout"][..]),
        ("io_uring_buffers = 1000\n", &["io_uring_buffers"][..]),
        ("backend = \"kqueue\"\n", &["backend"][..]),
    ] {
        let config = dir.join("ports.toml");
        std::fs::write(&config, toml).unwrap();
        let socket = format!("unix:{}", dir.join("never.sock").display());
        let (status, _, stderr) = run_rtpark(&[
            "--config",
            config.to_str().unwrap(),
            "--listen-native",
            &socket,
        ]);
        assert_eq!(status.code(), Some(2), "{toml}: stderr: {stderr}");
        assert!(
            keys.iter().any(|k| stderr.contains(k)),
            "{toml}: stderr should name the key ({keys:?}): {stderr}"
        );
        if toml.starts_with("port_min") {
            assert!(
                stderr.contains("70000"),
                "stderr should quote the value: {stderr}"
            );
        }
    }
}

#[test]
fn bogus_backend_flag_exits_2_naming_backend() {
    let dir = TempDir::new();
    let (status, stderr) = run_with_config(&dir, "", &["--backend", "bogus"]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("backend"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
    // And it says what would work.
    assert!(stderr.contains("epoll"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2_naming_it() {
    let dir = TempDir::new();
    let missing = dir.join("nope.toml");
    let (status, _, stderr) = run_rtpark(&["--config", missing.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("nope.toml"), "{stderr}");
}

#[test]
fn sigterm_exits_0_and_removes_the_socket() {
    for backend in Backend::ALL {
        let mut engine = Engine::on(backend);
        assert!(engine.socket.exists());
        // Some state to tear down: a bridged call.
        let mut ctl = engine.control();
        ctl.ok(json!({"cmd": "create_leg", "call": "c", "leg": "a", "remote": "127.0.0.1:4000"}));
        ctl.ok(json!({"cmd": "create_leg", "call": "c", "leg": "b", "remote": "127.0.0.1:4002"}));
        ctl.bridge("a", "b");
        let status = engine.stop();
        assert_eq!(
            status.code(),
            Some(0),
            "{backend:?}: exit status {status:?} (signal {:?}); stderr:\n{}",
            status.signal(),
            engine.stderr()
        );
        assert!(
            !engine.socket.exists(),
            "{backend:?}: socket {} left behind after SIGTERM",
            engine.socket.display()
        );
    }
}

#[test]
fn sigint_also_stops_cleanly() {
    let mut engine = Engine::on(Backend::Epoll);
    engine.signal(libc::SIGINT);
    let status = engine
        .wait_timeout(Duration::from_secs(5))
        .expect("exit after SIGINT");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", engine.stderr());
    assert!(!engine.socket.exists());
}

#[test]
fn second_engine_on_the_same_socket_is_refused() {
    let mut engine = Engine::on(Backend::Epoll);
    let socket = format!("unix:{}", engine.socket.display());
    let (status, _, stderr) = run_rtpark(&[
        "--listen-native",
        &socket,
        "--port-min",
        "31900",
        "--port-max",
        "31999",
        "--backend",
        "epoll",
        "--workers",
        "1",
    ]);
    assert!(
        !status.success(),
        "a second engine must not start: {stderr}"
    );
    assert!(
        stderr.contains(&engine.socket.display().to_string()),
        "stderr should name the socket: {stderr}"
    );
    // The first engine still owns its socket and answers.
    assert!(engine.is_running());
    assert_eq!(
        engine.control().ok(json!({"cmd": "ping"}))["pong"],
        json!("pong")
    );
}

#[test]
fn ctl_against_a_missing_socket_exits_2_with_a_hint() {
    let dir = TempDir::new();
    let socket = dir.join("absent.sock");
    let (status, stdout, stderr) =
        run_rtpark(&["ctl", "--socket", socket.to_str().unwrap(), "ping"]);
    assert_eq!(status.code(), Some(2), "stdout: {stdout} stderr: {stderr}");
    assert!(
        stderr.contains("absent.sock"),
        "should name the socket: {stderr}"
    );
    assert!(
        stderr.contains("--socket"),
        "should say how to point elsewhere: {stderr}"
    );
    assert!(
        stderr.contains("running"),
        "should suggest rtpark is not running: {stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn ctl_ping_and_refusals_against_a_running_engine() {
    let engine = Engine::on(Backend::Epoll);
    let socket = engine.socket.to_str().unwrap().to_owned();
    let (status, stdout, stderr) = run_rtpark(&["ctl", "--socket", &socket, "ping"]);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("pong"), "stdout: {stdout}");
    let reply: serde_json::Value =
        serde_json::from_str(&stdout).expect("ctl prints the reply as JSON");
    assert_eq!(reply, json!({"ok": true, "pong": "pong"}));

    // key=value arguments become a request; the engine sees it.
    let (status, stdout, stderr) = run_rtpark(&[
        "ctl",
        "--socket",
        &socket,
        "create_leg",
        "call=c1",
        "leg=1",
        "remote=127.0.0.1:4000",
        "media_timeout=30",
    ]);
    assert_eq!(status.code(), Some(0), "stdout: {stdout} stderr: {stderr}");
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        created["leg"],
        json!("1"),
        "leg=1 is sent as a string: {created}"
    );
    assert_eq!(
        engine.control().leg_info("c1", "1")["remote"],
        json!("127.0.0.1:4000")
    );

    // A refusal exits 1 with the code and message on stderr.
    let (status, _, stderr) = run_rtpark(&["ctl", "--socket", &socket, "bridge", "a=1"]);
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("missing_field"), "{stderr}");
    assert!(stderr.contains("\"b\""), "{stderr}");

    // Usage trouble exits 2.
    let (status, _, stderr) = run_rtpark(&["ctl", "--socket", &socket]);
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
}

#[test]
fn check_config_prints_the_effective_config() {
    let dir = TempDir::new();
    let config = dir.join("rtpark.toml");
    std::fs::write(
        &config,
        "port_min = 21000\nport_max = 21999\nmedia_timeout = 42\nrelatch_window_ms = 750\nconnect_latched = false\n",
    )
    .unwrap();
    let (status, stdout, stderr) = run_rtpark(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--workers",
        "3",
        "--backend",
        "epoll",
    ]);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    for expected in [
        "port_min: 21000",
        "port_max: 21999",
        "workers: 3",
        "Epoll",
        "42s",
        "750ms",
        "connect_latched: false",
        // Defaults show too.
        "127.0.0.1",
        "io_uring_entries: 4096",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Flags override the file.
    let (status, stdout, stderr) = run_rtpark(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--port-min",
        "21100",
    ]);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("port_min: 21100"), "{stdout}");
    // A bad file is reported the same way as at start-up.
    std::fs::write(&config, "prot_min = 1\n").unwrap();
    let (status, stdout, stderr) =
        run_rtpark(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "stdout: {stdout}");
    assert!(stderr.contains("prot_min"), "{stderr}");
}
