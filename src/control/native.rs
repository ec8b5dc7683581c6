//! The native protocol: JSON lines over a Unix stream socket (docs/native-protocol.md).
//!
//! This module is sans-IO: [`parse_request`] turns one received line into a
//! [`Request`], [`format_reply`] and [`format_event`] turn results and events into
//! lines to send. The io layer owns the socket, the framing and the 64 KiB line cap
//! while reading ([`MAX_LINE_BYTES`]); nothing here can panic on any input.
//!
//! Formatted lines carry **no** trailing newline: the writer appends `'\n'`.

use super::{
    Codec, Command, ControlError, CreateLeg, ErrorCode, Event, MediaRef, PeerHears, PlayMedia,
    Repeat, Reply, Then, UpdateLeg,
};
use crate::session::Ingress;
use serde_json::{Map, Value};
use std::net::SocketAddr;

/// Longest request line accepted, in bytes, not counting the terminating newline.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Every command name of protocol v1, in the order the docs list them.
pub const COMMANDS: &[&str] = &[
    "ping",
    "create_leg",
    "update_leg",
    "bridge",
    "unbridge",
    "delete_leg",
    "delete_call",
    "query_call",
    "list_calls",
    "stats",
    "subscribe",
    "hold",
    "unhold",
    "play",
    "stop_play",
    "play_media",
    "stop_media",
    "block_media",
    "unblock_media",
    "silence_media",
    "unsilence_media",
    "list_media",
    "park",
    "retrieve",
    "list_parked",
    "list_lots",
];

/// Names that clients may try before the commands exist; they get a hint.
const LATER_COMMANDS: &[&str] = &["unpark"];

/// One parsed request line: the client's correlation id and the command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The request's `"id"`, any JSON value, to be echoed verbatim in the reply.
    pub id: Option<Value>,
    /// What to do.
    pub command: Command,
}

/// The error for a line the reader cut off at [`MAX_LINE_BYTES`] without seeing its end.
pub fn line_too_long() -> ControlError {
    bad_request(format!(
        "request line is longer than the limit of {MAX_LINE_BYTES} bytes; send one JSON object per line"
    ))
}

/// Parses one request line (a trailing `"\n"` or `"\r\n"` is allowed).
///
/// On failure, returns the request's id when it could be read, so the error reply
/// can still carry it, and an error with code `bad_request`, `unknown_command`,
/// `missing_field` or `invalid_field`.
pub fn parse_request(line: &str) -> Result<Request, (Option<Value>, ControlError)> {
    parse_request_bytes(line.as_bytes())
}

/// Parses one request line as read from a socket: the limit counts the bytes
/// received, and bytes that are not UTF-8 are read as U+FFFD (they can only
/// stand in strings, where they do no harm).
pub fn parse_request_bytes(line: &[u8]) -> Result<Request, (Option<Value>, ControlError)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE_BYTES {
        return Err((
            None,
            bad_request(format!(
                "request line is {} bytes; the limit is {MAX_LINE_BYTES} bytes per line",
                line.len()
            )),
        ));
    }
    let line = String::from_utf8_lossy(line);
    let line = line.as_ref();
    if line.trim().is_empty() {
        return Err((
            None,
            bad_request(r#"empty line: send one JSON object per line, e.g. {"cmd":"ping"}"#),
        ));
    }
    let value: Value = serde_json::from_str(line).map_err(|e| {
        (
            None,
            bad_request(format!(
                r#"request is not valid JSON ({e}): send one JSON object per line, e.g. {{"cmd":"ping"}}"#
            )),
        )
    })?;
    let Value::Object(map) = value else {
        return Err((
            None,
            bad_request(format!(
                r#"request must be a JSON object like {{"cmd":"ping"}}, got {}"#,
                kind(&value)
            )),
        ));
    };
    let id = map.get("id").cloned();
    let cmd = match map.get("cmd") {
        None | Some(Value::Null) => {
            return Err((
                id,
                ControlError::new(
                    ErrorCode::MissingField,
                    r#"missing field "cmd": every request names its command, e.g. {"cmd":"ping"}"#,
                ),
            ))
        }
        Some(Value::String(cmd)) => cmd.as_str(),
        Some(other) => {
            return Err((
                id,
                bad_request(format!(
                    r#""cmd" must be a string naming the command (e.g. "ping"), got {}"#,
                    describe(other)
                )),
            ))
        }
    };
    match parse_command(cmd, &map) {
        Ok(command) => Ok(Request { id, command }),
        Err(e) => Err((id, e)),
    }
}

/// Formats the reply to one request as a single JSON line without trailing newline.
///
/// Success: `{"id":..,"ok":true,...reply fields}`; failure:
/// `{"id":..,"ok":false,"error":{"code":..,"message":..}}`. `"id"` is present only
/// when `id` is `Some` (a JSON `null` id is echoed as `null`).
pub fn format_reply(id: Option<&Value>, result: &Result<Reply, ControlError>) -> String {
    let mut out = String::with_capacity(96);
    out.push('{');
    if let Some(id) = id {
        out.push_str("\"id\":");
        out.push_str(&to_json(id));
        out.push(',');
    }
    match result {
        Ok(reply) => match reply_fields(reply) {
            Some(fields) => {
                out.push_str("\"ok\":true");
                if !fields.is_empty() {
                    out.push(',');
                    out.push_str(&fields);
                }
            }
            None => push_error(
                &mut out,
                &ControlError::new(
                    ErrorCode::Internal,
                    "the reply could not be encoded as JSON (a bug); see the rtpark log",
                ),
            ),
        },
        Err(e) => push_error(&mut out, e),
    }
    out.push('}');
    out
}

/// Formats an event as a single JSON line without trailing newline: `{"event":..,...}`.
pub fn format_event(event: &Event) -> String {
    // Serializing these plain structs cannot fail; the fallback keeps the stream valid JSON.
    serde_json::to_string(event).unwrap_or_else(|_| r#"{"event":"unknown"}"#.to_owned())
}

/// The reply's own fields as `"k":v,...` (no braces), or `None` if it is not an object.
fn reply_fields(reply: &Reply) -> Option<String> {
    let body = serde_json::to_string(reply).ok()?;
    let inner = body.strip_prefix('{')?.strip_suffix('}')?;
    Some(inner.to_owned())
}

fn push_error(out: &mut String, e: &ControlError) {
    out.push_str("\"ok\":false,\"error\":{\"code\":\"");
    out.push_str(e.code.as_str());
    out.push_str("\",\"message\":");
    out.push_str(&to_json(&Value::String(e.message.clone())));
    out.push('}');
}

fn to_json(v: &Value) -> String {
    // A `Value` always has string keys, so serializing it cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn bad_request(message: impl Into<String>) -> ControlError {
    ControlError::new(ErrorCode::BadRequest, message)
}

fn parse_command(cmd: &str, map: &Map<String, Value>) -> Result<Command, ControlError> {
    let f = Fields { cmd, map };
    Ok(match cmd {
        "ping" => Command::Ping,
        "create_leg" => Command::CreateLeg(CreateLeg {
            call: f.required_name("call", "the call id")?,
            leg: f.optional_name("leg")?,
            remote: f.optional_addr("remote")?,
            remote_rtcp: f.optional_addr("remote_rtcp")?,
            trust_address: f.optional_bool("trust_address")?.unwrap_or(false),
            rtcp_mux: f.optional_bool("rtcp_mux")?.unwrap_or(false),
            codecs: f.optional_codecs("codecs")?.unwrap_or_default(),
            media_timeout: f.optional_u32("media_timeout")?,
            silent: f.optional_bool("silent")?.unwrap_or(false),
            ssrc_per_source: f.optional_bool("ssrc_per_source")?.unwrap_or(false),
            ptime: f.optional_ptime("ptime")?,
        }),
        "update_leg" => Command::UpdateLeg(UpdateLeg {
            leg: f.required_name("leg", "the leg's name")?,
            remote: f.optional_addr("remote")?,
            remote_rtcp: f.optional_addr("remote_rtcp")?,
            codecs: f.optional_codecs("codecs")?,
            rtcp_mux: f.optional_bool("rtcp_mux")?,
            silent: f.optional_bool("silent")?,
            ptime: f.optional_ptime("ptime")?,
        }),
        "bridge" => Command::Bridge {
            a: f.required_name("a", "the first leg's name")?,
            b: f.required_name("b", "the second leg's name")?,
        },
        "unbridge" => Command::Unbridge {
            leg: f.required_name("leg", "the leg's name")?,
        },
        "delete_leg" => Command::DeleteLeg {
            leg: f.required_name("leg", "the leg's name")?,
        },
        "delete_call" => Command::DeleteCall {
            call: f.required_name("call", "the call id")?,
        },
        "query_call" => Command::QueryCall {
            call: f.required_name("call", "the call id")?,
        },
        "list_calls" => Command::ListCalls,
        "stats" => Command::Stats,
        "subscribe" => Command::Subscribe,
        "hold" => Command::Hold {
            leg: f.required_name("leg", "the leg's name")?,
            class: f.optional_name("class")?,
            peer_hears: match f.optional_name("peer_hears")?.as_deref() {
                None => None,
                Some("nothing") => Some(PeerHears::Nothing),
                Some("silence") => Some(PeerHears::Silence),
                Some(other) => {
                    return Err(invalid(format!(
                        "peer_hears must be \"nothing\" or \"silence\", got \"{other}\""
                    )))
                }
            },
        },
        "unhold" => Command::Unhold {
            leg: f.required_name("leg", "the leg's name")?,
        },
        "play" => Command::Play {
            leg: f.required_name("leg", "the leg's name")?,
            announcement: f.required_name("announcement", "the announcement's name")?,
            then: match f.optional_name("then")?.as_deref() {
                None | Some("live") => Then::Live,
                Some("moh") => Then::Moh,
                Some("nothing") => Then::Nothing,
                Some(other) => {
                    return Err(invalid(format!(
                        "then must be \"live\", \"moh\" or \"nothing\", got \"{other}\""
                    )))
                }
            },
            class: f.optional_name("class")?,
        },
        "stop_play" => Command::StopPlay {
            leg: f.required_name("leg", "the leg's name")?,
        },
        "play_media" => {
            let leg = f.required_name("leg", "the leg's name")?;
            let media = match (f.optional_name("file")?, f.optional_name("media")?) {
                (Some(path), None) => MediaRef::File(path.into()),
                (None, Some(name)) => MediaRef::Named(name),
                _ => {
                    return Err(invalid(
                        "play_media needs exactly one of file (an audio file's path) or media (a class or announcement name)".into(),
                    ))
                }
            };
            let repeat = match f.get("repeat") {
                None => Repeat::Times(1),
                Some(v) => match v.as_i64() {
                    Some(-1) => Repeat::Forever,
                    Some(n) if n >= 1 && n <= u32::MAX as i64 => Repeat::Times(n as u32),
                    _ => {
                        return Err(invalid(format!(
                            "repeat must be a count of at least 1, or -1 for until stopped, got {}",
                            describe(v)
                        )))
                    }
                },
            };
            let start_ms = match f.get("start_ms") {
                None => 0,
                Some(v) => v.as_u64().ok_or_else(|| {
                    invalid(format!(
                        "start_ms must be a number of milliseconds, got {}",
                        describe(v)
                    ))
                })?,
            };
            Command::PlayMedia(PlayMedia {
                leg,
                media,
                repeat,
                start_ms,
                hold: f.optional_bool("hold")?.unwrap_or(false),
            })
        }
        "stop_media" => Command::StopMedia {
            leg: f.required_name("leg", "the leg's name")?,
        },
        "block_media" | "unblock_media" | "silence_media" | "unsilence_media" => {
            Command::SetIngress {
                leg: f.required_name("leg", "the leg whose audio it is")?,
                ingress: match cmd {
                    "block_media" => Ingress::Block,
                    "silence_media" => Ingress::Silence,
                    _ => Ingress::Relay,
                },
            }
        }
        "list_media" => Command::ListMedia,
        "park" => Command::Park {
            leg: f.required_name("leg", "the leg's name")?,
            lot: f.optional_name("lot")?,
            slot: f.optional_slot("slot")?,
            parker: f.optional_name("parker")?,
        },
        "retrieve" => Command::Retrieve {
            leg: f.required_name("leg", "the retrieving leg's name")?,
            lot: f.optional_name("lot")?,
            slot: f.optional_slot("slot")?,
        },
        "list_parked" => Command::ListParked,
        "list_lots" => Command::ListLots,
        other => {
            let later = if LATER_COMMANDS.contains(&other) {
                " (a parked call leaves its slot by retrieve, delete_leg or the lot's timeouts)"
            } else {
                ""
            };
            return Err(ControlError::new(
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command {}{later}; valid commands: {}",
                    describe(&Value::String(other.to_owned())),
                    COMMANDS.join(", ")
                ),
            ));
        }
    })
}

/// The fields of one request object, read with strict types. `null` counts as absent.
struct Fields<'a> {
    cmd: &'a str,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required_name(&self, key: &str, what: &str) -> Result<String, ControlError> {
        match self.optional_name(key)? {
            Some(name) => Ok(name),
            None => Err(ControlError::new(
                ErrorCode::MissingField,
                format!(
                    "missing field \"{key}\": {} needs {what} as a non-empty string",
                    self.cmd
                ),
            )),
        }
    }

    fn optional_name(&self, key: &str) -> Result<Option<String>, ControlError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(invalid(format!(
                "{key} must be a non-empty string, got {}",
                describe(other)
            ))),
        }
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>, ControlError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(invalid(format!(
                "{key} must be true or false, got {}",
                describe(other)
            ))),
        }
    }

    fn optional_u32(&self, key: &str) -> Result<Option<u32>, ControlError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(invalid(format!(
                    "{key} must be a whole number of seconds (0..4294967295), got {}",
                    describe(v)
                ))),
            },
        }
    }

    fn optional_addr(&self, key: &str) -> Result<Option<SocketAddr>, ControlError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let parsed = v.as_str().and_then(|s| s.parse::<SocketAddr>().ok());
        match parsed {
            Some(addr) if addr.port() != 0 => Ok(Some(addr)),
            Some(_) => Err(invalid(format!(
                "{key} must have a port in 1..65535, got {}",
                describe(v)
            ))),
            None => Err(invalid(format!(
                "{key} must be \"ip:port\" (e.g. \"192.0.2.10:30000\" or \"[2001:db8::1]:30000\"), got {}",
                describe(v)
            ))),
        }
    }

    fn optional_slot(&self, key: &str) -> Result<Option<u32>, ControlError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(invalid(format!(
                    "{key} must be a slot number such as 701, got {}",
                    describe(v)
                ))),
            },
        }
    }

    fn optional_ptime(&self, key: &str) -> Result<Option<u32>, ControlError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n @ (10 | 20 | 30 | 40)) => Ok(Some(n as u32)),
                _ => Err(invalid(format!(
                    "{key} must be 10, 20, 30 or 40 (milliseconds), got {}",
                    describe(v)
                ))),
            },
        }
    }

    fn optional_codecs(&self, key: &str) -> Result<Option<Vec<Codec>>, ControlError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(invalid(format!(
                "{key} must be an array like [{{\"pt\":0,\"name\":\"PCMU\",\"rate\":8000}}], got {}",
                describe(v)
            )));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_codec(&format!("{key}[{i}]"), item))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn parse_codec(at: &str, item: &Value) -> Result<Codec, ControlError> {
    let Value::Object(obj) = item else {
        return Err(invalid(format!(
            "{at} must be an object like {{\"pt\":0,\"name\":\"PCMU\",\"rate\":8000,\"channels\":1}}, got {}",
            describe(item)
        )));
    };
    let field = |key: &str| obj.get(key).filter(|v| !v.is_null());
    let missing = |key: &str, what: &str| {
        ControlError::new(
            ErrorCode::MissingField,
            format!("missing field \"{at}.{key}\": each codec needs {what}"),
        )
    };
    let pt = match field("pt") {
        None => return Err(missing("pt", "its RTP payload type (0..127)")),
        Some(v) => match v.as_u64().filter(|&n| n <= 127) {
            Some(n) => n as u8, // n <= 127 was just checked
            None => {
                return Err(invalid(format!(
                    "{at}.pt must be a payload type number 0..127, got {}",
                    describe(v)
                )))
            }
        },
    };
    let name = match field("name") {
        None => return Err(missing("name", "its encoding name (e.g. \"PCMU\")")),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(v) => {
            return Err(invalid(format!(
                "{at}.name must be a non-empty encoding name like \"PCMU\", got {}",
                describe(v)
            )))
        }
    };
    let rate = match field("rate") {
        None => return Err(missing("rate", "its clock rate in Hz (e.g. 8000)")),
        Some(v) => match v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
        {
            Some(n) => n,
            None => {
                return Err(invalid(format!(
                    "{at}.rate must be a clock rate in Hz (1..4294967295), got {}",
                    describe(v)
                )))
            }
        },
    };
    let channels = match field("channels") {
        None => 1,
        Some(v) => match v
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n > 0)
        {
            Some(n) => n,
            None => {
                return Err(invalid(format!(
                    "{at}.channels must be a channel count 1..255, got {}",
                    describe(v)
                )))
            }
        },
    };
    Ok(Codec {
        pt,
        name,
        rate,
        channels,
    })
}

fn invalid(message: String) -> ControlError {
    ControlError::new(ErrorCode::InvalidField, message)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value as compact JSON for an error message, cut to a readable length.
fn describe(v: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let s = to_json(v);
    if s.chars().count() <= MAX_CHARS {
        return s;
    }
    let cut: String = s.chars().take(MAX_CHARS).collect();
    format!("{cut}… ({})", kind(v))
}

/// Entry points for the fuzz targets and their corpus-replay test.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Parses `data` as request lines the way the listener would and checks every
    /// reply line; panics only on a broken invariant.
    pub fn check_native_request(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        check_line(&text);
        for line in text.split('\n') {
            check_line(line);
        }
    }

    fn check_line(line: &str) {
        let (id, result) = match parse_request(line) {
            Ok(req) => {
                let reply = match req.command {
                    Command::Ping => Reply::Pong { pong: "pong" },
                    Command::Subscribe => Reply::Subscribed { subscribed: true },
                    _ => Reply::Done {},
                };
                (req.id, Ok(reply))
            }
            Err((id, e)) => {
                assert!(
                    matches!(
                        e.code,
                        ErrorCode::BadRequest
                            | ErrorCode::UnknownCommand
                            | ErrorCode::MissingField
                            | ErrorCode::InvalidField
                    ),
                    "parser produced an engine-side code: {e:?}"
                );
                assert!(!e.message.is_empty());
                (id, Err(e))
            }
        };
        let out = format_reply(id.as_ref(), &result);
        assert!(!out.contains('\n'), "reply spans lines: {out}");
        let parsed: Value = serde_json::from_str(&out).expect("reply is valid JSON");
        let obj = parsed.as_object().expect("reply is an object");
        assert_eq!(obj.get("ok"), Some(&Value::Bool(result.is_ok())));
        match (obj.get("id"), id.as_ref()) {
            (None, None) => {}
            (Some(echoed), Some(sent)) => {
                assert!(same_json(echoed, sent), "id {sent} echoed as {echoed}")
            }
            (echoed, sent) => panic!("id {sent:?} echoed as {echoed:?}"),
        }
        if let Err(e) = &result {
            assert_eq!(
                obj.get("error")
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_str),
                Some(e.code.as_str())
            );
        }
    }

    /// JSON equality that allows the last-bit float drift of a print/parse round trip.
    fn same_json(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                    x == y || (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
                }
                _ => x == y,
            },
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
            }
            _ => a == b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{LegCreated, Stats};
    use serde_json::json;

    fn err(line: &str) -> (Option<Value>, ControlError) {
        parse_request(line).expect_err(line)
    }

    #[test]
    fn ping_parses_and_echoes_id() {
        let req = parse_request(r#"{"id":7,"cmd":"ping"}"#).unwrap();
        assert_eq!(req.id, Some(json!(7)));
        assert_eq!(req.command, Command::Ping);
        let line = format_reply(req.id.as_ref(), &Ok(Reply::Pong { pong: "pong" }));
        assert_eq!(line, r#"{"id":7,"ok":true,"pong":"pong"}"#);
    }

    #[test]
    fn trailing_newline_is_accepted() {
        assert_eq!(
            parse_request("{\"cmd\":\"stats\"}\r\n").unwrap().command,
            Command::Stats
        );
    }

    #[test]
    fn create_leg_full_form() {
        let req = parse_request(
            r#"{"cmd":"create_leg","call":"c1","leg":"a","remote":"[::1]:5000",
                "remote_rtcp":"10.0.0.1:5001","trust_address":true,"rtcp_mux":true,
                "codecs":[{"pt":8,"name":"PCMA","rate":8000},{"pt":111,"name":"opus","rate":48000,"channels":2}],
                "media_timeout":60,"silent":true,"future_field":[1,2]}"#,
        )
        .unwrap();
        let Command::CreateLeg(c) = req.command else {
            panic!("not create_leg")
        };
        assert_eq!(c.call, "c1");
        assert_eq!(c.leg.as_deref(), Some("a"));
        assert_eq!(c.remote, Some("[::1]:5000".parse().unwrap()));
        assert_eq!(c.remote_rtcp, Some("10.0.0.1:5001".parse().unwrap()));
        assert!(c.trust_address && c.rtcp_mux && c.silent);
        assert_eq!(c.codecs.len(), 2);
        assert_eq!(c.codecs[0].channels, 1);
        assert_eq!(c.codecs[1].channels, 2);
        assert_eq!(c.media_timeout, Some(60));
    }

    #[test]
    fn null_optional_fields_count_as_absent() {
        let req =
            parse_request(r#"{"cmd":"create_leg","call":"c","leg":null,"remote":null}"#).unwrap();
        assert_eq!(
            req.command,
            Command::CreateLeg(CreateLeg {
                call: "c".into(),
                ..Default::default()
            })
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let (_, e) = err(r#"{"cmd":"create_leg","call":"c","media_timeout":"30"}"#);
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert!(e.message.starts_with("media_timeout "), "{}", e.message);
        let (_, e) =
            err(r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":300,"name":"x","rate":1}]}"#);
        assert!(e.message.starts_with("codecs[0].pt "), "{}", e.message);
        let (_, e) = err(r#"{"cmd":"create_leg","call":"c","codecs":[{"pt":0,"name":"PCMU"}]}"#);
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.message.contains("codecs[0].rate"), "{}", e.message);
    }

    #[test]
    fn bad_remote_says_what_is_expected() {
        let (id, e) = err(r#"{"id":"x","cmd":"update_leg","leg":"a","remote":"foo"}"#);
        assert_eq!(id, Some(json!("x")));
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert!(
            e.message.starts_with(r#"remote must be "ip:port""#)
                && e.message.ends_with(r#"got "foo""#),
            "{}",
            e.message
        );
        let (_, e) = err(r#"{"cmd":"update_leg","leg":"a","remote":"1.2.3.4:0"}"#);
        assert!(e.message.contains("port in 1..65535"), "{}", e.message);
    }

    #[test]
    fn framing_errors_are_bad_request() {
        for line in ["", "nope", "[1]", "\"ping\"", r#"{"cmd":1}"#] {
            assert_eq!(err(line).1.code, ErrorCode::BadRequest, "{line}");
        }
        let long = format!(r#"{{"cmd":"ping","pad":"{}"}}"#, "x".repeat(MAX_LINE_BYTES));
        let (id, e) = err(&long);
        assert_eq!((id, e.code), (None, ErrorCode::BadRequest));
        assert!(e.message.contains("limit"));
        assert_eq!(line_too_long().code, ErrorCode::BadRequest);
    }

    #[test]
    fn missing_cmd_is_missing_field() {
        let (id, e) = err(r#"{"id":[1]}"#);
        assert_eq!(id, Some(json!([1])));
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.message.contains("\"cmd\""));
    }

    #[test]
    fn unknown_command_lists_the_valid_ones() {
        let (_, e) = err(r#"{"cmd":"frobnicate"}"#);
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert!(e.message.contains("\"frobnicate\""));
        for c in COMMANDS {
            assert!(e.message.contains(c), "{c} not listed");
        }
        let (_, e) = err(r#"{"cmd":"unpark"}"#);
        assert!(e.message.contains("retrieve"), "{}", e.message);
    }

    #[test]
    fn error_reply_shape() {
        let e = ControlError::new(ErrorCode::UnknownLeg, "no leg \"a\"");
        let line = format_reply(Some(&json!({"n":1})), &Err(e));
        assert_eq!(
            line,
            r#"{"id":{"n":1},"ok":false,"error":{"code":"unknown_leg","message":"no leg \"a\""}}"#
        );
        let line = format_reply(None, &Ok(Reply::Done {}));
        assert_eq!(line, r#"{"ok":true}"#);
    }

    #[test]
    fn leg_created_and_stats_replies_are_flat() {
        let reply = Reply::LegCreated(LegCreated {
            call: "c".into(),
            leg: "a".into(),
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 30000,
            rtcp_port: 30001,
        });
        assert_eq!(
            format_reply(None, &Ok(reply)),
            r#"{"ok":true,"call":"c","leg":"a","ip":"127.0.0.1","rtp_port":30000,"rtcp_port":30001}"#
        );
        let stats = format_reply(None, &Ok(Reply::Stats(Stats::default())));
        let v: Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(v["ok"], json!(true));
        assert_eq!(v["workers"], json!(0));
        assert_eq!(v["totals"]["rtp_in"], json!(0));
    }

    #[test]
    fn events_have_an_event_key() {
        let line = format_event(&Event::CallDeleted {
            call: "c".into(),
            reason: "last_leg",
        });
        assert_eq!(
            line,
            r#"{"event":"call_deleted","call":"c","reason":"last_leg"}"#
        );
    }

    #[test]
    fn fuzz_check_accepts_odd_input() {
        for data in [
            &b""[..],
            b"\xff\xfe{",
            b"{\"cmd\":\"ping\"}\n{\"cmd\":\"stats\",\"id\":null}\n",
            b"{\"id\":1e400,\"cmd\":\"ping\"}",
            &[b'['; 300],
        ] {
            fuzzing::check_native_request(data);
        }
    }
}
