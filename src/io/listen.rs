//! Control listeners: the native protocol on a Unix stream socket.

use super::engine::Engine;
use crate::control::native::{
    format_event, format_reply, line_too_long, parse_request_bytes, MAX_LINE_BYTES as MAX_LINE,
};
use crate::control::{Command, Event};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Binds the native control socket at `path` with mode 0660, replacing a stale
/// socket file but refusing to steal one another process is listening on.
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    bind_unix_as(path, "--listen-native")
}

/// [`bind_unix`] for the socket configured by `flag` (named in error messages).
pub fn bind_unix_as(path: &Path, flag: &str) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create directory {} for the control socket: {e}; pass {flag} unix:/some/writable/path.sock", dir.display()),
                )
            })?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another process is listening on {}; stop it or choose another {flag} path",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Accepts native-protocol connections forever, one thread per connection.
pub fn serve_native(listener: UnixListener, engine: Arc<Engine>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let engine = engine.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("rtpark-ctl".into())
                        .spawn(move || {
                            if let Err(e) = handle_native(stream, &engine) {
                                log::debug!("control connection ended: {e}");
                            }
                        });
                if let Err(e) = spawned {
                    log::error!("cannot start a control connection thread: {e}");
                }
            }
            Err(e) => {
                log::warn!("control socket accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

fn handle_native(stream: UnixStream, engine: &Engine) -> io::Result<()> {
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    let mut subscribed = false;
    loop {
        line.clear();
        // A line of MAX_LINE bytes plus its newline is still fine.
        let n = read_line_limited(&mut reader, &mut line, MAX_LINE + 1)?;
        if n == 0 {
            return Ok(());
        }
        let reply = if !line.ends_with(b"\n") && line.len() > MAX_LINE {
            // Skip the rest of the oversized line before answering.
            while !line.ends_with(b"\n") {
                line.clear();
                if read_line_limited(&mut reader, &mut line, MAX_LINE)? == 0 {
                    return Ok(());
                }
            }
            format_reply(None, &Err(line_too_long()))
        } else {
            match parse_request_bytes(&line) {
                Ok(req) => {
                    let is_sub = req.command == Command::Subscribe;
                    let result = engine.execute(req.command);
                    let reply = format_reply(req.id.as_ref(), &result);
                    if is_sub && result.is_ok() && !subscribed {
                        subscribed = true;
                        // Reply first, then events, all through one locked writer.
                        write_line(&writer, &reply)?;
                        start_event_pump(engine, writer.clone());
                        continue;
                    }
                    reply
                }
                Err((id, err)) => format_reply(id.as_ref(), &Err(err)),
            }
        };
        write_line(&writer, &reply)?;
    }
}

fn start_event_pump(engine: &Engine, writer: Arc<Mutex<UnixStream>>) {
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    engine.subscribe(tx);
    let _ = std::thread::Builder::new()
        .name("rtpark-events".into())
        .spawn(move || {
            for ev in rx {
                if write_line(&writer, &format_event(&ev)).is_err() {
                    // Client gone: dropping rx unsubscribes on the next publish.
                    return;
                }
            }
        });
}

fn write_line(writer: &Mutex<UnixStream>, line: &str) -> io::Result<()> {
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    w.write_all(&buf)
}

/// Reads up to and including `\n`, but at most `limit` bytes.
fn read_line_limited<R: BufRead>(r: &mut R, out: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        let room = limit - out.len();
        let chunk = &available[..available.len().min(room)];
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), out.len() + chunk.len() >= limit),
        };
        out.extend_from_slice(&chunk[..take]);
        r.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

/// Removes the socket file when dropped (clean shutdown).
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
