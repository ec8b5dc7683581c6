//! The rtpproxy control protocol (the one the Kamailio and OpenSIPS `rtpproxy`
//! modules speak), so a stock SIP proxy can drive rtpark unchanged.
//!
//! This module is sans-IO: [`parse`] turns one received command into a typed
//! [`Request`], the `format_*` functions build the exact reply bytes. The io layer
//! owns the sockets and runs the commands. Nothing here panics on any input.
//!
//! # Wire format, as rtpproxy implements it
//! * A command is one read from a `unix:` stream socket, one datagram on `udp:`,
//!   `udp6:` or `cunix:`, or one `\n`-terminated line on a `tcp:` stream. Words are
//!   separated by any run of space, tab, CR or LF, so a trailing `\n` or `\r\n` is
//!   just a separator. At most [`MAX_COMMAND_BYTES`] bytes and [`MAX_WORDS`] words.
//! * Datagram sockets ([`Framing::Cookie`]) put a cookie word first; the reply
//!   starts with the same cookie and one space. Stream sockets ([`Framing::Bare`])
//!   have no cookie.
//! * The first letter of the first word is the command, either case; the rest of
//!   that word are its modifiers (`Uc0,101`, `P-1`, `Dw`, `VF`).
//! * Every reply ends with `\n`, on every socket type: a number (`0` success,
//!   `1`/`0` for `VF`, a port), `port address` (`port address 6` for IPv6), `E<code>`
//!   for an error, or the text of `I`, `Q` and `G`.
//! * Tags carry the media number after `;` (`27141UAC1;1`); a tag without one (as in
//!   Kamailio's `D`) means every media stream of that tag.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// Longest command rtpproxy reads (its 8 KiB buffer less the terminating NUL).
pub const MAX_COMMAND_BYTES: usize = 8 * 1024 - 1;

/// Most words in a command (rtpproxy's limit is 24 slots, the last never usable);
/// the cookie is not counted.
pub const MAX_WORDS: usize = 23;

/// The base protocol version `V` answers.
pub const PROTOCOL_VERSION: u32 = 20040107;

/// How a control socket frames commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `unix:` and `tcp:` stream sockets: no cookie.
    Bare,
    /// `udp:`, `udp6:` and `cunix:` datagram sockets: the first word is a cookie to
    /// echo at the start of the reply.
    Cookie,
}

/// One parsed command and the cookie its reply must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The cookie ([`Framing::Cookie`] only).
    pub cookie: Option<String>,
    /// The command.
    pub command: RpCommand,
}

/// An rtpproxy command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpCommand {
    /// `V`: the base protocol version; reply with [`format_version`].
    Version,
    /// `VF <date>`: is a protocol extension supported; reply with [`format_feature`]
    /// and [`capability_supported`]. The word is kept as sent: rtpproxy compares
    /// strings.
    VersionFeature(String),
    /// `U`: create a session or update one side of it (the offer).
    Update(Session),
    /// `L`: update the other side of an existing session (the answer).
    Lookup(Session),
    /// `D`: delete a session, or drop a weak flag.
    Delete(Delete),
    /// `P`: play a prompt to one side.
    Play(Play),
    /// `S`: stop playing to one side.
    Stop(Stop),
    /// `Q`: per-session counters.
    Query(Query),
    /// `I`: engine-wide information.
    Info {
        /// `b` modifier: brief (rtpproxy prints the same either way).
        brief: bool,
        /// `l` modifier: add the average load line.
        load: bool,
    },
    /// `G`: named engine-wide counters.
    GetStats {
        /// `v` modifier: `name=value` pairs.
        verbose: bool,
        /// Counter names, in reply order.
        names: Vec<String>,
    },
    /// `X`: delete every session.
    DeleteAll,
    /// `R`: record a session to disk.
    Record(Record),
    /// `C`: copy (fork) a session's media to a recording target.
    Copy(CopyTo),
    /// `N`: stop recording.
    NoRecord(NoRecord),
}

/// A tag with its media number: `27141UAC1;1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The SIP tag, without `;medianum`.
    pub tag: String,
    /// The media number after the last `;`, if one was sent.
    pub medianum: Option<u32>,
}

impl Tag {
    /// Splits `tag;medianum` at the last `;` when what follows is a decimal number.
    pub fn parse(word: &str) -> Tag {
        if let Some((tag, num)) = word.rsplit_once(';') {
            if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = num.parse() {
                    return Tag {
                        tag: tag.to_owned(),
                        medianum: Some(n),
                    };
                }
            }
        }
        Tag {
            tag: word.to_owned(),
            medianum: None,
        }
    }

    /// The media number, 1 (the first stream) when none was sent.
    pub fn medianum_or_first(&self) -> u32 {
        self.medianum.unwrap_or(1)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag)?;
        if let Some(n) = self.medianum {
            write!(f, ";{n}")?;
        }
        Ok(())
    }
}

/// Arguments of `U` and `L`:
/// `U[modifiers] call_id remote_ip remote_port from_tag [to_tag] [notify_socket notify_tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Modifier letters after `U`/`L`.
    pub modifiers: UpdateModifiers,
    /// Call-ID, possibly with `;via-branch` or an extra id appended by the proxy.
    pub call_id: String,
    /// The endpoint's media address as sent. rtpproxy uses it only when it is a
    /// numeric address of the stream's family; see [`Session::remote`].
    pub addr: String,
    /// The endpoint's RTP port (0 when the SDP disabled the stream).
    pub port: u16,
    /// Tag of the side this command is about (the SDP's sender).
    pub from_tag: Tag,
    /// The other side's tag, once known.
    pub to_tag: Option<Tag>,
    /// Where to report the session's timeout (`U` only, capability 20081224).
    pub notify: Option<Notify>,
}

/// What [`Session::remote`] makes of the address and port, as rtpproxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Send to this address (RTCP to port + 1) until latching learns another.
    Address(SocketAddr),
    /// `0.0.0.0` or `::`: the endpoint is on hold; send nothing until it speaks.
    OnHold,
    /// Not a numeric address of the stream's family: rtpproxy ignores it and waits
    /// to latch on the first packet.
    Unusable,
}

impl Session {
    /// The endpoint address as rtpproxy interprets it (IPv6 only with the `6`
    /// modifier; hostnames are never resolved).
    pub fn remote(&self) -> Remote {
        match remote_ip(&self.addr, self.modifiers.ipv6) {
            RemoteIp::Ip(ip) if ip.is_unspecified() => Remote::OnHold,
            RemoteIp::Ip(ip) => Remote::Address(SocketAddr::new(ip, self.port)),
            RemoteIp::Ignored | RemoteIp::Invalid => Remote::Unusable,
        }
    }
}

/// A timeout notification target given to `U`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Socket to notify, e.g. `unix:/var/run/kamailio/timeout.sock` or `tcp:host:port`.
    pub socket: String,
    /// The tag to send back, URL-encoded as received.
    pub tag: String,
}

impl Notify {
    /// The tag with `%XX` and `+` decoded: what rtpproxy writes to the socket,
    /// followed by `\n`, when the session times out.
    pub fn decoded_tag(&self) -> Vec<u8> {
        url_decode(&self.tag).unwrap_or_default()
    }
}

/// The modifier letters of `U` and `L`, in any order and either case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateModifiers {
    /// `a`: asymmetric; never latch, always send to the signalled address.
    pub asymmetric: bool,
    /// `s`: symmetric; latch onto where packets come from. When neither `a` nor `s`
    /// is given the engine default applies; the later letter wins.
    pub symmetric: bool,
    /// `w`: weak; the session survives a `D` without `w` from the other proxy.
    pub weak: bool,
    /// `6`: the remote address is IPv6 (the reply then ends with ` 6`).
    pub ipv6: bool,
    /// `n`: allocate a new local port even if the stream has one (20150330).
    pub new_port: bool,
    /// `e`/`i`: which interface each side uses in bridging mode, at most two.
    pub interfaces: Vec<Interface>,
    /// `z<ms>`: re-packetise to this packet time, 1..=999 (20071116).
    pub repacketize: Option<u32>,
    /// `c<pt,pt,...>`: the payload types the endpoint accepts (20081102); used by
    /// `P ... session ...`.
    pub codecs: Vec<u8>,
    /// `l`/`r`: which local address to allocate on (the later letter wins).
    pub local: Option<LocalAddr>,
}

/// One `e` or `i` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// `e`: the external interface.
    External,
    /// `i`: the internal interface.
    Internal,
}

/// The `l` and `r` modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    /// `l1.2.3.4` or `l[2001:db8::1]`: allocate on this local address.
    Ip(IpAddr),
    /// `l{name}`: allocate on the address with this configured label (20260306).
    Label(String),
    /// `r1.2.3.4` or `r[2001:db8::1]`: allocate on the local address that routes to
    /// this remote one.
    ForRemote(IpAddr),
}

/// Arguments of `D[w] call_id from_tag [to_tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// `w`: drop only the weak flag of the matched side.
    pub weak: bool,
    /// Call-ID.
    pub call_id: String,
    /// A tag of the session (either side matches).
    pub from_tag: Tag,
    /// The other tag, if sent.
    pub to_tag: Option<Tag>,
}

/// Arguments of `P[count] call_id prompt codecs from_tag [to_tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// Times to play: 1 when absent, 0 only stops what plays, negative loops until `S`.
    pub count: i32,
    /// Call-ID.
    pub call_id: String,
    /// The prompt (a file name for rtpproxy; a MOH class or announcement here).
    pub prompt: String,
    /// `session` (the `c` list of the last `U`/`L`), or payload types `0,8,18`.
    pub codecs: String,
    /// The side that hears the prompt.
    pub from_tag: Tag,
    /// The other side's tag, if sent.
    pub to_tag: Option<Tag>,
}

impl Play {
    /// Whether the codecs word is `session`, i.e. use the `c` list of the session.
    pub fn uses_session_codecs(&self) -> bool {
        self.codecs == "session"
    }

    /// The payload types of an explicit codecs list; empty for `session` or garbage.
    pub fn codec_list(&self) -> Vec<u8> {
        parse_codec_list(&self.codecs).unwrap_or_default()
    }
}

/// Arguments of `S call_id from_tag [to_tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Call-ID.
    pub call_id: String,
    /// The side that stops hearing the prompt.
    pub from_tag: Tag,
    /// The other side's tag, if sent.
    pub to_tag: Option<Tag>,
}

/// Arguments of `Q[v] call_id from_tag [to_tag [counter ...]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// `v`: `name=value` pairs.
    pub verbose: bool,
    /// Call-ID.
    pub call_id: String,
    /// Tag of the side asked about.
    pub from_tag: Tag,
    /// The other side's tag, if sent.
    pub to_tag: Option<Tag>,
    /// Counter names (only after a to tag); empty for the default five. Names rtpproxy
    /// knows are in [`QUERY_COUNTERS`]; an unknown one is answered with
    /// [`ecode::QUERY_FAILED`].
    pub stats: Vec<String>,
}

/// Arguments of `R[s] call_id from_tag [to_tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `s`: both directions into one file.
    pub single_file: bool,
    /// Call-ID.
    pub call_id: String,
    /// A tag of the session.
    pub from_tag: Tag,
    /// The other tag, if sent.
    pub to_tag: Option<Tag>,
}

/// Arguments of `C[s][p] call_id target from_tag [to_tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyTo {
    /// `s`: both directions into one file.
    pub single_file: bool,
    /// `p`: reply with the port the copy is sent from (20250523).
    pub reply_port: bool,
    /// Call-ID.
    pub call_id: String,
    /// Where to copy to (a file name or `udp:host:port`).
    pub target: String,
    /// A tag of the session.
    pub from_tag: Tag,
    /// The other tag, if sent.
    pub to_tag: Option<Tag>,
}

/// Arguments of `N[a] call_id from_tag [to_tag]` (20200226).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRecord {
    /// `a`: stop every recording of the call.
    pub all: bool,
    /// Call-ID.
    pub call_id: String,
    /// A tag of the session.
    pub from_tag: Tag,
    /// The other tag, if sent.
    pub to_tag: Option<Tag>,
}

/// A command rtpproxy would refuse: the `E<code>` to reply, and a sentence for the log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("E{code}: {message}")]
pub struct RpError {
    /// The cookie to echo, when the command had one.
    pub cookie: Option<String>,
    /// The numeric code (see [`ecode`]).
    pub code: u32,
    /// What was wrong and what to send instead.
    pub message: String,
}

impl RpError {
    fn new(cookie: &Option<String>, code: u32, message: impl Into<String>) -> Self {
        RpError {
            cookie: cookie.clone(),
            code,
            message: message.into(),
        }
    }

    /// The reply to send: `[cookie ]E<code>\n`.
    pub fn reply(&self) -> String {
        format_error(self.cookie.as_deref(), self.code)
    }
}

/// rtpproxy's error codes, as sent in `E<code>` replies (its `rtpp_command_ecodes.h`).
pub mod ecode {
    /// The command letter is unknown.
    pub const UNKNOWN_COMMAND: u32 = 0;
    /// Too few or too many arguments for the command.
    pub const ARG_COUNT: u32 = 1;
    /// The command takes no modifiers (`S`, `X`, `V`, `VF`).
    pub const MODIFIERS_NOT_ALLOWED: u32 = 2;
    /// `&&` sub-commands are not accepted here.
    pub const SUBCOMMAND: u32 = 3;
    /// General syntax error: empty, missing cookie, NUL byte, too many words, too long.
    pub const SYNTAX: u32 = 5;
    /// `R` with the `p` modifier, or `N` with letters after `a`.
    pub const RECORD_MODIFIER_PLACE: u32 = 6;
    /// Unknown `R`/`C`/`N` modifier.
    pub const RECORD_MODIFIER: u32 = 7;
    /// Unknown `D` modifier.
    pub const DELETE_MODIFIER: u32 = 8;
    /// Unknown `G` modifier.
    pub const STATS_MODIFIER: u32 = 9;
    /// The notify tag of `U` is not valid URL encoding.
    pub const NOTIFY_TAG: u32 = 10;
    /// A third `e`, or `e` without a second interface configured.
    pub const EXTERNAL_INTERFACE: u32 = 11;
    /// A third `i`, or `i` without a second interface configured.
    pub const INTERNAL_INTERFACE: u32 = 12;
    /// `z` without a packet time in 1..=999.
    pub const REPACKETIZE: u32 = 13;
    /// `c` without payload types, or a second `c`.
    pub const CODECS: u32 = 14;
    /// `l` not followed by an address or `{label}`.
    pub const LOCAL_ADDR_SYNTAX: u32 = 15;
    /// `r` not followed by an address.
    pub const REMOTE_ADDR_SYNTAX: u32 = 16;
    /// `P` count is not a number.
    pub const PLAY_COUNT: u32 = 17;
    /// Unknown `I` modifier.
    pub const INFO_MODIFIER: u32 = 18;
    /// Unknown `Q` modifier.
    pub const QUERY_MODIFIER: u32 = 19;
    /// The `G` reply does not fit the reply buffer.
    pub const STATS_TOO_BIG: u32 = 25;
    /// The `Q` reply does not fit the reply buffer.
    pub const QUERY_TOO_BIG: u32 = 26;
    /// The `l` address is not a local address (or the label is unknown).
    pub const BAD_LOCAL_ADDR: u32 = 31;
    /// No local address routes to the `r` address.
    pub const BAD_ROUTE_ADDR: u32 = 32;
    /// Unknown `U`/`L` modifier; also `P ... session` when `U`/`L` sent no `c` list.
    pub const INVALID_ARGUMENT: u32 = 35;
    /// No local address of the session's family (e.g. `6` without IPv6 configured).
    pub const NO_ADDR_FOR_FAMILY: u32 = 36;
    /// The remote address or port of `U`/`L` does not parse.
    pub const BAD_REMOTE_ADDR: u32 = 37;
    /// No session matches the call-id and tags (`L` replies `0` instead).
    pub const SESSION_NOT_FOUND: u32 = 50;
    /// `P` could not start the prompt (unknown prompt, no common codec).
    pub const PLAY_FAILED: u32 = 60;
    /// `Q` asked for a counter that does not exist.
    pub const QUERY_FAILED: u32 = 62;
    /// `C` could not start the copy.
    pub const COPY_FAILED: u32 = 65;
    /// `G` asked for a counter that does not exist.
    pub const STATS_FAILED: u32 = 68;
    /// No port could be allocated for an existing session.
    pub const PORT_ALLOCATION_EXISTING: u32 = 71;
    /// The session (and its ports) could not be created.
    pub const PORT_ALLOCATION_NEW: u32 = 72;
    /// `U` sent a notify socket but notifications are disabled.
    pub const NOTIFY_DISABLED: u32 = 75;
    /// Out of memory (rtpproxy uses 81..=89 by place; this is the generic one).
    pub const INTERNAL: u32 = 81;
    /// Overloaded: new sessions refused.
    pub const OVERLOAD: u32 = 98;
    /// Shutting down: new sessions refused.
    pub const SHUTTING_DOWN: u32 = 99;
}

/// Protocol extensions by date (what `VF <date>` asks), with what each means.
pub const CAPABILITIES: &[(u32, &str)] = &[
    (20040107, "base protocol: V, U, L, D, X, I; weak sessions"),
    (
        20050322,
        "several media streams per call (;medianum tags); P and S prompts (MOH)",
    ),
    (20060704, "the VF command (feature query) itself"),
    (20071116, "re-packetisation: the z<ms> modifier of U/L"),
    (
        20071218,
        "copying (forking) a session's media: the C command",
    ),
    (20080403, "per-session counters: the Q command"),
    (
        20081102,
        "payload type lists: the c<pt,...> modifier of U/L, used by P ... session",
    ),
    (
        20081224,
        "session timeout notifications: notify_socket notify_tag on U",
    ),
    (
        20090810,
        "automatic IPv4/IPv6 bridging with the e/i modifiers",
    ),
    (20140323, "load tracking: the l modifier of I"),
    (
        20140617,
        "recording when a session became complete, for its counters",
    ),
    (20141004, "named engine counters: the G command"),
    (
        20150330,
        "a fresh local port on request: the n modifier of U/L",
    ),
    (
        20150420,
        "sequence tracking, rtpa_* counters and counter names in Q",
    ),
    (20150617, "the %%CC_SELF%% placeholder as notify target"),
    (20191015, "&& sub-commands after U/L/Q"),
    (20200226, "the N command (stop recording)"),
    (
        20230205,
        "the rtpa_nlost counter; h modifier of the DTMF catcher",
    ),
    (20230314, "G and D combined in one command"),
    (20230424, "longest_ipi and rtpa_jlast/jmax/javg counters"),
    (20250523, "the p modifier of C"),
    (
        20251015,
        "changing a session's TTL / IP TOS with a sub-command",
    ),
    (20260306, "address labels: l{label} in U/L"),
    (20260308, "both legs in one command: U ... && L ..."),
    (20260309, "copying both streams with a C sub-command"),
];

/// What rtpark answers `1` to by default: the ones this parser and an executor
/// without recording, re-packetisation, bridging or notifications support.
pub const DEFAULT_SUPPORTED: &[u32] = &[20040107, 20050322, 20060704, 20080403, 20081102, 20141004];

/// Counter names `Q` accepts, in rtpproxy's spelling.
pub const QUERY_COUNTERS: &[&str] = &[
    "ttl",
    "npkts_ina",
    "npkts_ino",
    "longest_ipi",
    "rtpa_jlast",
    "rtpa_jmax",
    "rtpa_javg",
    "nrelayed",
    "ndropped",
    "rtpa_nsent",
    "rtpa_nrcvd",
    "rtpa_ndups",
    "rtpa_nlost",
    "rtpa_perrs",
];

/// Most counter names after the to tag of `Q`.
const MAX_QUERY_COUNTERS: usize = 11;
/// Most `&&` sub-commands rtpproxy accepts after a command.
const MAX_SUBCOMMANDS: usize = 15;

/// Whether to answer `1` to `VF <date>`: a known date (exact string, as rtpproxy
/// compares) that is in `supported`.
pub fn capability_supported(date: &str, supported: &[u32]) -> bool {
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let known = CAPABILITIES
        .iter()
        .find(|(d, _)| date.parse::<u32>().ok() == Some(*d));
    matches!(known, Some((d, _)) if supported.contains(d))
}

/// What a capability date means, if rtpproxy defines it.
pub fn capability_meaning(date: u32) -> Option<&'static str> {
    CAPABILITIES
        .iter()
        .find(|(d, _)| *d == date)
        .map(|(_, m)| *m)
}

/// Parses received bytes; not UTF-8 is a syntax error. Use this on socket data.
pub fn parse_bytes(input: &[u8], framing: Framing) -> Result<Request, RpError> {
    if input.len() > MAX_COMMAND_BYTES {
        let cookie = first_word_cookie(&input[..MAX_COMMAND_BYTES], framing);
        return Err(RpError::new(
            &cookie,
            ecode::SYNTAX,
            format!(
                "command is {} bytes, longer than the {MAX_COMMAND_BYTES} bytes rtpproxy reads",
                input.len()
            ),
        ));
    }
    match std::str::from_utf8(input) {
        Ok(text) => parse(text, framing),
        Err(_) => Err(RpError::new(
            &first_word_cookie(input, framing),
            ecode::SYNTAX,
            "command is not valid UTF-8; call-ids and tags must be text",
        )),
    }
}

/// Parses one command (a whole read, datagram or line).
pub fn parse(input: &str, framing: Framing) -> Result<Request, RpError> {
    if input.len() > MAX_COMMAND_BYTES {
        return parse_bytes(input.as_bytes(), framing);
    }
    let words = split_words(input, framing)?;
    let cookie = words.cookie;
    let args = &words.main;
    // Invariant: split_words never returns an empty main section.
    let Some(&first) = args.first() else {
        return Err(RpError::new(&cookie, ecode::SYNTAX, "empty command"));
    };
    let letter = first.as_bytes()[0];
    // Only an ASCII letter names a command; slicing after it is then on a boundary.
    let mods = if letter.is_ascii() { &first[1..] } else { "" };
    let spec = match CommandSpec::for_letter(letter, mods) {
        Some(spec) if letter.is_ascii() => spec,
        _ => {
            return Err(RpError::new(
                &cookie,
                ecode::UNKNOWN_COMMAND,
                format!(
                    "unknown command {:?}; rtpproxy commands are V VF U L D P S Q I G X R C N",
                    first.chars().next().unwrap_or('?')
                ),
            ))
        }
    };
    let mods = &mods[spec.mods_skip..];
    if args.len() < spec.min_args || args.len() > spec.max_args {
        return Err(RpError::new(
            &cookie,
            ecode::ARG_COUNT,
            format!(
                "{} takes {} words, got {}: {}",
                spec.name,
                count_range(spec.min_args, spec.max_args),
                args.len(),
                spec.hint
            ),
        ));
    }
    if !spec.has_mods && !mods.is_empty() {
        return Err(RpError::new(
            &cookie,
            ecode::MODIFIERS_NOT_ALLOWED,
            format!(
                "{} takes no modifiers, got {mods:?}: {}",
                spec.name, spec.hint
            ),
        ));
    }
    if words.subcommands > 0 {
        return Err(RpError::new(
            &cookie,
            ecode::SUBCOMMAND,
            format!(
                "{} && sub-commands are not supported (capability 20191015 is off)",
                spec.name
            ),
        ));
    }
    let command = parse_command(spec.kind, mods, args, &cookie)?;
    Ok(Request { cookie, command })
}

/// The reply `[cookie ]body\n`; `body` has no final newline (inner ones, as in `I`,
/// are kept).
pub fn format_reply(cookie: Option<&str>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2 + cookie.map_or(0, |c| c.len() + 1));
    if let Some(c) = cookie {
        out.push_str(c);
        out.push(' ');
    }
    out.push_str(body);
    out.push('\n');
    out
}

/// The reply to `U`/`L`: `port address`, `port address 6` for IPv6, or just `port`
/// when `addr` is unspecified (rtpproxy's answer for a wildcard bind). Pass the
/// advertised address. `L` on an unknown session replies [`format_ok`] (`0`).
pub fn format_port(cookie: Option<&str>, port: u16, addr: IpAddr) -> String {
    let body = if addr.is_unspecified() {
        port.to_string()
    } else if addr.is_ipv4() {
        format!("{port} {addr}")
    } else {
        format!("{port} {addr} 6")
    };
    format_reply(cookie, &body)
}

/// The error reply `[cookie ]E<code>\n`.
pub fn format_error(cookie: Option<&str>, code: u32) -> String {
    format_reply(cookie, &format!("E{code}"))
}

/// The success reply `[cookie ]0\n` (`D`, `P`, `S`, `X`, `R`, `C`, `N`; `L` on an
/// unknown session).
pub fn format_ok(cookie: Option<&str>) -> String {
    format_reply(cookie, "0")
}

/// The reply to `V`: `[cookie ]20040107\n`.
pub fn format_version(cookie: Option<&str>) -> String {
    format_reply(cookie, &PROTOCOL_VERSION.to_string())
}

/// The reply to `VF`: `[cookie ]1\n` when supported, `[cookie ]0\n` otherwise.
pub fn format_feature(cookie: Option<&str>, supported: bool) -> String {
    format_reply(cookie, if supported { "1" } else { "0" })
}

/// The five counters of a plain `Q`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryCounters {
    /// Seconds left before the session times out.
    pub ttl: i64,
    /// Packets received from the side the from tag names.
    pub packets_in_a: u64,
    /// Packets received from the other side.
    pub packets_in_o: u64,
    /// Packets relayed, both directions.
    pub relayed: u64,
    /// Packets dropped, both directions.
    pub dropped: u64,
}

/// The reply to a `Q` without counter names: `ttl in_a in_o relayed dropped`, or
/// with `v`: `ttl=.. npkts_ina=.. npkts_ino=.. nrelayed=.. ndropped=..`.
pub fn format_query(cookie: Option<&str>, verbose: bool, c: &QueryCounters) -> String {
    let body = if verbose {
        format!(
            "ttl={} npkts_ina={} npkts_ino={} nrelayed={} ndropped={}",
            c.ttl, c.packets_in_a, c.packets_in_o, c.relayed, c.dropped
        )
    } else {
        format!(
            "{} {} {} {} {}",
            c.ttl, c.packets_in_a, c.packets_in_o, c.relayed, c.dropped
        )
    };
    format_reply(cookie, &body)
}

/// A counter value in a `Q` or `G` reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatValue {
    /// A count, printed as an integer.
    Int(i64),
    /// A measure, printed with six decimals as C's `%f`.
    Float(f64),
}

impl fmt::Display for StatValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatValue::Int(v) => write!(f, "{v}"),
            StatValue::Float(v) => write!(f, "{v:.6}"),
        }
    }
}

/// The reply to `Q` with counter names, or to `G`: values separated by spaces, in the
/// order asked, or with `v` `name=value` pairs.
pub fn format_stats(cookie: Option<&str>, verbose: bool, values: &[(&str, StatValue)]) -> String {
    let mut body = String::new();
    for (i, (name, value)) in values.iter().enumerate() {
        if i > 0 {
            body.push(' ');
        }
        if verbose {
            body.push_str(name);
            body.push('=');
        }
        // Writing to a String cannot fail.
        let _ = write!(body, "{value}");
    }
    format_reply(cookie, &body)
}

/// What `I` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InfoCounters {
    /// Sessions created since start.
    pub sessions_created: u64,
    /// Sessions now active.
    pub sessions_active: u64,
    /// RTP streams now active.
    pub streams_active: u64,
    /// Packets received since start.
    pub packets_received: u64,
    /// Packets sent (relayed and played) since start.
    pub packets_transmitted: u64,
    /// Average load, printed only for `Il`.
    pub average_load: Option<f64>,
}

/// The reply to `I`: one `name: value` line per counter.
pub fn format_info(cookie: Option<&str>, c: &InfoCounters) -> String {
    let mut body = format!(
        "sessions created: {}\nactive sessions: {}\nactive streams: {}\n\
         packets received: {}\npackets transmitted: {}",
        c.sessions_created,
        c.sessions_active,
        c.streams_active,
        c.packets_received,
        c.packets_transmitted
    );
    if let Some(load) = c.average_load {
        // Writing to a String cannot fail.
        let _ = write!(body, "\naverage load: {load:.6}");
    }
    format_reply(cookie, &body)
}

impl fmt::Display for Request {
    /// The command in canonical form, cookie first, without a newline: parsing it
    /// again with the matching framing gives the same request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.cookie {
            write!(f, "{c} ")?;
        }
        write!(f, "{}", self.command)
    }
}

impl fmt::Display for RpCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpCommand::Version => f.write_str("V"),
            RpCommand::VersionFeature(date) => write!(f, "VF {date}"),
            RpCommand::Update(s) => write_session(f, 'U', s),
            RpCommand::Lookup(s) => write_session(f, 'L', s),
            RpCommand::Delete(d) => {
                write!(f, "D{} {} {}", flag(d.weak, "w"), d.call_id, d.from_tag)?;
                write_opt_tag(f, &d.to_tag)
            }
            RpCommand::Play(p) => {
                write!(
                    f,
                    "P{} {} {} {} {}",
                    p.count, p.call_id, p.prompt, p.codecs, p.from_tag
                )?;
                write_opt_tag(f, &p.to_tag)
            }
            RpCommand::Stop(s) => {
                write!(f, "S {} {}", s.call_id, s.from_tag)?;
                write_opt_tag(f, &s.to_tag)
            }
            RpCommand::Query(q) => {
                write!(f, "Q{} {} {}", flag(q.verbose, "v"), q.call_id, q.from_tag)?;
                write_opt_tag(f, &q.to_tag)?;
                for s in &q.stats {
                    write!(f, " {s}")?;
                }
                Ok(())
            }
            RpCommand::Info { brief, load } => {
                write!(f, "I{}{}", flag(*brief, "b"), flag(*load, "l"))
            }
            RpCommand::GetStats { verbose, names } => {
                write!(f, "G{}", flag(*verbose, "v"))?;
                for n in names {
                    write!(f, " {n}")?;
                }
                Ok(())
            }
            RpCommand::DeleteAll => f.write_str("X"),
            RpCommand::Record(r) => {
                let m = flag(r.single_file, "s");
                write!(f, "R{m} {} {}", r.call_id, r.from_tag)?;
                write_opt_tag(f, &r.to_tag)
            }
            RpCommand::Copy(c) => {
                let (s, p) = (flag(c.single_file, "s"), flag(c.reply_port, "p"));
                write!(f, "C{s}{p} {} {} {}", c.call_id, c.target, c.from_tag)?;
                write_opt_tag(f, &c.to_tag)
            }
            RpCommand::NoRecord(n) => {
                write!(f, "N{} {} {}", flag(n.all, "a"), n.call_id, n.from_tag)?;
                write_opt_tag(f, &n.to_tag)
            }
        }
    }
}

impl fmt::Display for UpdateModifiers {
    /// Canonical order: `6` before the numeric `z`/`c`/`l`/`r` arguments so a digit
    /// never runs into them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.asymmetric {
            f.write_str("a")?;
        }
        if self.symmetric {
            f.write_str("s")?;
        }
        if self.weak {
            f.write_str("w")?;
        }
        if self.ipv6 {
            f.write_str("6")?;
        }
        if self.new_port {
            f.write_str("n")?;
        }
        for i in &self.interfaces {
            f.write_str(match i {
                Interface::External => "e",
                Interface::Internal => "i",
            })?;
        }
        if let Some(ms) = self.repacketize {
            write!(f, "z{ms}")?;
        }
        if !self.codecs.is_empty() {
            f.write_str("c")?;
            for (i, pt) in self.codecs.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{pt}")?;
            }
        }
        match &self.local {
            None => Ok(()),
            Some(LocalAddr::Ip(ip)) => write!(f, "l{}", bracketed(*ip)),
            Some(LocalAddr::Label(l)) => write!(f, "l{{{l}}}"),
            Some(LocalAddr::ForRemote(ip)) => write!(f, "r{}", bracketed(*ip)),
        }
    }
}

/// An address as `l`/`r` take it. An IPv6 address whose usual form ends in dotted
/// IPv4 (which rtpproxy's scan does not accept) is written as eight hex groups.
fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let usual = v6.to_string();
            if !usual.contains('.') {
                return format!("[{usual}]");
            }
            let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
            format!("[{}]", groups.join(":"))
        }
    }
}

fn flag(on: bool, letter: &'static str) -> &'static str {
    if on {
        letter
    } else {
        ""
    }
}

fn write_opt_tag(f: &mut fmt::Formatter<'_>, tag: &Option<Tag>) -> fmt::Result {
    match tag {
        Some(t) => write!(f, " {t}"),
        None => Ok(()),
    }
}

fn write_session(f: &mut fmt::Formatter<'_>, letter: char, s: &Session) -> fmt::Result {
    write!(
        f,
        "{letter}{} {} {} {} {}",
        s.modifiers, s.call_id, s.addr, s.port, s.from_tag
    )?;
    write_opt_tag(f, &s.to_tag)?;
    if let Some(n) = &s.notify {
        write!(f, " {} {}", n.socket, n.tag)?;
    }
    Ok(())
}

/// A command split into words.
struct Words<'a> {
    cookie: Option<String>,
    main: Vec<&'a str>,
    subcommands: usize,
}

fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn first_word_cookie(input: &[u8], framing: Framing) -> Option<String> {
    if framing != Framing::Cookie {
        return None;
    }
    let word = input
        .split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .find(|w| !w.is_empty())?;
    match std::str::from_utf8(word) {
        Ok(w) if !w.contains('\0') => Some(w.to_owned()),
        _ => None,
    }
}

/// Splits as rtpproxy does: runs of separators, the cookie first, `&&` between
/// sections, every limit a syntax error.
fn split_words(input: &str, framing: Framing) -> Result<Words<'_>, RpError> {
    let mut cookie: Option<String> = None;
    let mut main = Vec::new();
    let mut sections = 0usize;
    let mut section_len = 0usize;
    for word in input.split(is_separator).filter(|w| !w.is_empty()) {
        if word.contains('\0') {
            return Err(RpError::new(
                &cookie,
                ecode::SYNTAX,
                "NUL byte inside a word",
            ));
        }
        if framing == Framing::Cookie && cookie.is_none() {
            cookie = Some(word.to_owned());
            continue;
        }
        if word == "&&" {
            if sections == MAX_SUBCOMMANDS {
                return Err(RpError::new(
                    &cookie,
                    ecode::SYNTAX,
                    format!("more than {MAX_SUBCOMMANDS} && sub-commands"),
                ));
            }
            if sections > 0 && section_len == 0 {
                return Err(RpError::new(&cookie, ecode::SYNTAX, "empty && sub-command"));
            }
            sections += 1;
            section_len = 0;
            continue;
        }
        section_len += 1;
        if section_len > MAX_WORDS {
            return Err(RpError::new(
                &cookie,
                ecode::SYNTAX,
                format!("more than {MAX_WORDS} words"),
            ));
        }
        if sections == 0 {
            main.push(word);
        }
    }
    if framing == Framing::Cookie && cookie.is_none() {
        return Err(RpError::new(
            &cookie,
            ecode::SYNTAX,
            "empty datagram: a cookie and a command are expected",
        ));
    }
    if main.is_empty() {
        let what = if cookie.is_some() {
            "a cookie but no command"
        } else {
            "empty command"
        };
        return Err(RpError::new(&cookie, ecode::SYNTAX, what));
    }
    if sections > 0 && section_len == 0 {
        return Err(RpError::new(&cookie, ecode::SYNTAX, "empty && sub-command"));
    }
    Ok(Words {
        cookie,
        main,
        subcommands: sections,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Lookup,
    Delete,
    Play,
    Record,
    Copy,
    Stop,
    NoRecord,
    VersionFeature,
    Version,
    Info,
    Query,
    DeleteAll,
    GetStats,
}

/// Word counts, modifiers and usage of a command, as rtpproxy checks them first.
struct CommandSpec {
    kind: Kind,
    name: &'static str,
    hint: &'static str,
    min_args: usize,
    max_args: usize,
    has_mods: bool,
    /// Letters of the first word after the command letter that name the command (`F`).
    mods_skip: usize,
}

impl CommandSpec {
    fn for_letter(letter: u8, mods: &str) -> Option<CommandSpec> {
        let spec = |kind, name, hint, min_args, max_args, has_mods| CommandSpec {
            kind,
            name,
            hint,
            min_args,
            max_args,
            has_mods,
            mods_skip: 0,
        };
        Some(match letter.to_ascii_uppercase() {
            b'U' => spec(
                Kind::Update,
                "U",
                "U[modifiers] call_id remote_ip remote_port from_tag [to_tag] \
                 [notify_socket notify_tag]",
                5,
                8,
                true,
            ),
            b'L' => spec(
                Kind::Lookup,
                "L",
                "L[modifiers] call_id remote_ip remote_port from_tag [to_tag]",
                5,
                6,
                true,
            ),
            b'D' => spec(
                Kind::Delete,
                "D",
                "D[w] call_id from_tag [to_tag]",
                3,
                4,
                true,
            ),
            b'P' => spec(
                Kind::Play,
                "P",
                "P[count] call_id prompt codecs from_tag [to_tag]",
                5,
                6,
                true,
            ),
            b'R' => spec(
                Kind::Record,
                "R",
                "R[s] call_id from_tag [to_tag]",
                3,
                4,
                true,
            ),
            b'C' => spec(
                Kind::Copy,
                "C",
                "C[s][p] call_id target from_tag [to_tag]",
                4,
                5,
                true,
            ),
            b'S' => spec(Kind::Stop, "S", "S call_id from_tag [to_tag]", 3, 4, false),
            b'N' => spec(
                Kind::NoRecord,
                "N",
                "N[a] call_id from_tag [to_tag]",
                3,
                4,
                true,
            ),
            b'V' if mods.starts_with(['F', 'f']) => CommandSpec {
                mods_skip: 1,
                ..spec(Kind::VersionFeature, "VF", "VF date", 2, 2, false)
            },
            b'V' => spec(Kind::Version, "V", "V", 1, 1, false),
            b'I' => spec(Kind::Info, "I", "I[b][l]", 1, 1, true),
            b'Q' => spec(
                Kind::Query,
                "Q",
                "Q[v] call_id from_tag [to_tag [counter ...]]",
                3,
                4 + MAX_QUERY_COUNTERS,
                true,
            ),
            b'X' => spec(Kind::DeleteAll, "X", "X", 1, 1, false),
            b'G' => spec(
                Kind::GetStats,
                "G",
                "G[v] [counter ...]",
                1,
                MAX_WORDS,
                true,
            ),
            _ => return None,
        })
    }
}

fn count_range(min: usize, max: usize) -> String {
    if min == max {
        format!("exactly {min}")
    } else {
        format!("{min} to {max}")
    }
}

/// The tag at `i`; the word counts checked before make it present.
fn tag_at(args: &[&str], i: usize) -> Tag {
    Tag::parse(args.get(i).copied().unwrap_or_default())
}

fn opt_tag(args: &[&str], i: usize) -> Option<Tag> {
    args.get(i).map(|w| Tag::parse(w))
}

/// Runs the per-command checks in rtpproxy's order; `args[0]` is the command word.
fn parse_command(
    kind: Kind,
    mods: &str,
    args: &[&str],
    cookie: &Option<String>,
) -> Result<RpCommand, RpError> {
    let err = |code, msg: String| Err(RpError::new(cookie, code, msg));
    let word = |i: usize| args.get(i).map_or(String::new(), |w| (*w).to_owned());
    Ok(match kind {
        Kind::Version => RpCommand::Version,
        Kind::VersionFeature => RpCommand::VersionFeature(word(1)),
        Kind::DeleteAll => RpCommand::DeleteAll,
        Kind::Update | Kind::Lookup => {
            let session = parse_session(kind, mods, args, cookie)?;
            if kind == Kind::Update {
                RpCommand::Update(session)
            } else {
                RpCommand::Lookup(session)
            }
        }
        Kind::Delete => {
            let mut weak = false;
            for c in mods.chars() {
                match c {
                    'w' | 'W' => weak = true,
                    _ => {
                        return err(
                            ecode::DELETE_MODIFIER,
                            format!("unknown D modifier {c:?}; only w (weak) exists"),
                        )
                    }
                }
            }
            RpCommand::Delete(Delete {
                weak,
                call_id: word(1),
                from_tag: tag_at(args, 2),
                to_tag: opt_tag(args, 3),
            })
        }
        Kind::Play => {
            let count = if mods.is_empty() {
                1
            } else {
                match parse_c_long(mods) {
                    Some(n) => n,
                    None => {
                        return err(
                            ecode::PLAY_COUNT,
                            format!(
                                "P count {mods:?} is not a number; send P, P<n> or P-1 to loop"
                            ),
                        )
                    }
                }
            };
            RpCommand::Play(Play {
                count,
                call_id: word(1),
                prompt: word(2),
                codecs: word(3),
                from_tag: tag_at(args, 4),
                to_tag: opt_tag(args, 5),
            })
        }
        Kind::Stop => RpCommand::Stop(Stop {
            call_id: word(1),
            from_tag: tag_at(args, 2),
            to_tag: opt_tag(args, 3),
        }),
        Kind::Record | Kind::Copy => {
            let (mut single_file, mut reply_port) = (false, false);
            for c in mods.chars() {
                match c {
                    's' | 'S' => single_file = true,
                    'p' | 'P' if kind == Kind::Copy => reply_port = true,
                    'p' | 'P' => {
                        return err(
                            ecode::RECORD_MODIFIER_PLACE,
                            "the p modifier belongs to C, not R".into(),
                        )
                    }
                    _ => {
                        return err(
                            ecode::RECORD_MODIFIER,
                            format!("unknown R/C modifier {c:?}; s and (for C) p exist"),
                        )
                    }
                }
            }
            if kind == Kind::Record {
                RpCommand::Record(Record {
                    single_file,
                    call_id: word(1),
                    from_tag: tag_at(args, 2),
                    to_tag: opt_tag(args, 3),
                })
            } else {
                RpCommand::Copy(CopyTo {
                    single_file,
                    reply_port,
                    call_id: word(1),
                    target: word(2),
                    from_tag: tag_at(args, 3),
                    to_tag: opt_tag(args, 4),
                })
            }
        }
        Kind::NoRecord => {
            let all = match mods.as_bytes() {
                [] => false,
                [b'a' | b'A'] => true,
                [b'a' | b'A', ..] => {
                    return err(
                        ecode::RECORD_MODIFIER_PLACE,
                        format!("N{mods}: nothing may follow the a modifier"),
                    )
                }
                _ => {
                    return err(
                        ecode::RECORD_MODIFIER,
                        format!("unknown N modifier in {mods:?}; only a (all) exists"),
                    )
                }
            };
            RpCommand::NoRecord(NoRecord {
                all,
                call_id: word(1),
                from_tag: tag_at(args, 2),
                to_tag: opt_tag(args, 3),
            })
        }
        Kind::Info => {
            let (mut brief, mut load) = (false, false);
            for c in mods.chars() {
                match c {
                    'b' | 'B' => brief = true,
                    'l' | 'L' => load = true,
                    _ => {
                        return err(
                            ecode::INFO_MODIFIER,
                            format!("unknown I modifier {c:?}; b and l exist"),
                        )
                    }
                }
            }
            RpCommand::Info { brief, load }
        }
        Kind::GetStats => {
            let verbose = verbose_modifier(mods).map_err(|c| {
                RpError::new(
                    cookie,
                    ecode::STATS_MODIFIER,
                    format!("unknown G modifier {c:?}; only v exists"),
                )
            })?;
            RpCommand::GetStats {
                verbose,
                names: args.iter().skip(1).map(|w| (*w).to_owned()).collect(),
            }
        }
        Kind::Query => {
            let verbose = verbose_modifier(mods).map_err(|c| {
                RpError::new(
                    cookie,
                    ecode::QUERY_MODIFIER,
                    format!("unknown Q modifier {c:?}; only v exists"),
                )
            })?;
            RpCommand::Query(Query {
                verbose,
                call_id: word(1),
                from_tag: tag_at(args, 2),
                to_tag: opt_tag(args, 3),
                stats: args
                    .get(4..)
                    .unwrap_or(&[])
                    .iter()
                    .map(|w| (*w).to_owned())
                    .collect(),
            })
        }
    })
}

fn verbose_modifier(mods: &str) -> Result<bool, char> {
    let mut verbose = false;
    for c in mods.chars() {
        match c {
            'v' | 'V' => verbose = true,
            _ => return Err(c),
        }
    }
    Ok(verbose)
}

/// Like C's `strtol` over the whole string (optional sign, decimal digits), in range.
fn parse_c_long(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_session(
    kind: Kind,
    mods: &str,
    args: &[&str],
    cookie: &Option<String>,
) -> Result<Session, RpError> {
    let err = |code, msg: String| RpError::new(cookie, code, msg);
    // With 7 or 8 words, the last two are the notify socket and tag (U only).
    let (to_tag, notify) = match (kind, args.len()) {
        (_, 5) => (None, None),
        (_, 6) => (opt_tag(args, 5), None),
        (Kind::Update, 7) => (None, Some((args[5], args[6]))),
        (Kind::Update, 8) => (opt_tag(args, 5), Some((args[6], args[7]))),
        // The spec's word counts leave no other case.
        _ => {
            return Err(err(
                ecode::ARG_COUNT,
                format!("wrong number of words ({})", args.len()),
            ))
        }
    };
    let notify = match notify {
        None => None,
        Some((socket, tag)) => {
            if url_decode(tag).is_none() {
                return Err(err(
                    ecode::NOTIFY_TAG,
                    format!("notify tag {tag:?} has a % not followed by two hex digits"),
                ));
            }
            Some(Notify {
                socket: socket.to_owned(),
                tag: tag.to_owned(),
            })
        }
    };
    let modifiers = parse_update_modifiers(mods).map_err(|(code, msg)| err(code, msg))?;
    // The word counts checked before make these present.
    let word = |i: usize| args.get(i).copied().unwrap_or_default();
    let (addr, port_word) = (word(2), word(3));
    if let RemoteIp::Invalid = remote_ip(addr, modifiers.ipv6) {
        let family = if modifiers.ipv6 { "IPv6" } else { "IPv4" };
        return Err(err(
            ecode::BAD_REMOTE_ADDR,
            format!("remote address {addr:?} is not a numeric {family} address"),
        ));
    }
    let Some(port) = parse_port(port_word) else {
        return Err(err(
            ecode::BAD_REMOTE_ADDR,
            format!("remote port {port_word:?} is not a number in 0..=65535"),
        ));
    };
    Ok(Session {
        modifiers,
        call_id: word(1).to_owned(),
        addr: addr.to_owned(),
        port,
        from_tag: tag_at(args, 4),
        to_tag,
        notify,
    })
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

enum RemoteIp {
    Ip(IpAddr),
    /// Outside the length rtpproxy accepts for the family: silently not used.
    Ignored,
    /// The right length but not an address of the family: rtpproxy replies E37.
    Invalid,
}

fn remote_ip(addr: &str, ipv6: bool) -> RemoteIp {
    let in_window = if ipv6 {
        (2..=45).contains(&addr.len())
    } else {
        (7..=15).contains(&addr.len())
    };
    if !in_window {
        return RemoteIp::Ignored;
    }
    let parsed = if ipv6 {
        addr.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    } else {
        addr.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    };
    parsed.map_or(RemoteIp::Invalid, RemoteIp::Ip)
}

fn parse_update_modifiers(mods: &str) -> Result<UpdateModifiers, (u32, String)> {
    let mut m = UpdateModifiers::default();
    let mut seen_codecs = false;
    let b = mods.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        match c.to_ascii_lowercase() {
            b'a' => {
                m.asymmetric = true;
                m.symmetric = false;
            }
            b's' => {
                m.symmetric = true;
                m.asymmetric = false;
            }
            b'w' => m.weak = true,
            b'6' => m.ipv6 = true,
            b'n' => m.new_port = true,
            b'e' | b'i' => {
                let (iface, code) = if c.eq_ignore_ascii_case(&b'e') {
                    (Interface::External, ecode::EXTERNAL_INTERFACE)
                } else {
                    (Interface::Internal, ecode::INTERNAL_INTERFACE)
                };
                if m.interfaces.len() == 2 {
                    return Err((code, "more than two e/i modifiers".into()));
                }
                m.interfaces.push(iface);
            }
            b'z' => {
                let start = i;
                if matches!(b.get(i), Some(b'+')) {
                    i += 1;
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let ms = mods[start..i]
                    .parse::<u32>()
                    .ok()
                    .filter(|ms| (1..1000).contains(ms));
                match ms {
                    Some(ms) => m.repacketize = Some(ms),
                    None => {
                        return Err((
                            ecode::REPACKETIZE,
                            "z needs a packet time in milliseconds, 1 to 999 (z20)".into(),
                        ))
                    }
                }
            }
            b'c' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b',') {
                    i += 1;
                }
                if start == i || seen_codecs {
                    return Err((
                        ecode::CODECS,
                        "c needs one list of payload types (c0,8,101)".into(),
                    ));
                }
                seen_codecs = true;
                match parse_codec_list(&mods[start..i]) {
                    Some(list) => m.codecs = list,
                    None => {
                        return Err((
                            ecode::CODECS,
                            format!("{:?} has a payload type above 127", &mods[start..i]),
                        ))
                    }
                }
            }
            b'l' | b'r' => {
                let local = c.eq_ignore_ascii_case(&b'l');
                if local && b.get(i) == Some(&b'{') {
                    let rest = &mods[i + 1..];
                    match rest.find('}') {
                        Some(end) if end > 0 => {
                            m.local = Some(LocalAddr::Label(rest[..end].to_owned()));
                            i += 1 + end + 1;
                        }
                        _ => {
                            return Err((
                                ecode::LOCAL_ADDR_SYNTAX,
                                "l{ needs a label and a closing }".into(),
                            ))
                        }
                    }
                    continue;
                }
                let (syntax_code, bad_code) = if local {
                    (ecode::LOCAL_ADDR_SYNTAX, ecode::BAD_LOCAL_ADDR)
                } else {
                    (ecode::REMOTE_ADDR_SYNTAX, ecode::BAD_ROUTE_ADDR)
                };
                let Some((text, next)) = extract_addr(b, i) else {
                    return Err((
                        syntax_code,
                        format!("{} needs an address: 192.0.2.1 or [2001:db8::1]", c as char),
                    ));
                };
                let ip = if b[i] == b'[' {
                    text.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
                } else {
                    text.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
                };
                let Some(ip) = ip else {
                    return Err((bad_code, format!("{text:?} is not an IP address")));
                };
                m.local = Some(if local {
                    LocalAddr::Ip(ip)
                } else {
                    LocalAddr::ForRemote(ip)
                });
                i = next;
            }
            _ => {
                let shown = mods.get(i - 1..).and_then(|m| m.chars().next());
                let shown = shown.unwrap_or('?');
                return Err((
                    ecode::INVALID_ARGUMENT,
                    format!("unknown U/L modifier {shown:?}; known: a s w 6 n e i z c l r"),
                ));
            }
        }
    }
    Ok(m)
}

/// rtpproxy's address scan after `l`/`r`: digits and dots, or `[` hex and colons `]`.
/// Returns the address text and the index after it.
fn extract_addr(b: &[u8], start: usize) -> Option<(&str, usize)> {
    let (from, v6) = if b.get(start) == Some(&b'[') {
        (start + 1, true)
    } else {
        (start, false)
    };
    let mut end = from;
    while end < b.len() {
        let ok = if v6 {
            b[end].is_ascii_hexdigit() || b[end] == b':'
        } else {
            b[end].is_ascii_digit() || b[end] == b'.'
        };
        if !ok {
            break;
        }
        end += 1;
    }
    if v6 && b.get(end) != Some(&b']') {
        return None;
    }
    if end == from {
        return None;
    }
    // Only ASCII was scanned, so the slice is on character boundaries.
    let text = std::str::from_utf8(&b[from..end]).ok()?;
    Some((text, if v6 { end + 1 } else { end }))
}

/// Payload types from `0,8,101`; empty items are skipped; `None` above 127.
fn parse_codec_list(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for item in s.split(',').filter(|i| !i.is_empty()) {
        if !item.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let pt = item.parse::<u8>().ok().filter(|pt| *pt < 128)?;
        out.push(pt);
    }
    Some(out)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `%XX` and `+` decoding as rtpproxy applies to notify tags; `None` if malformed.
fn url_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex_value(*b.get(i + 1)?)?;
                let lo = hex_value(*b.get(i + 2)?)?;
                out.push((hi << 4) | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Entry points for the fuzz target and its corpus-replay test.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Codes the parser may produce (the rest come from executing a command).
    const PARSER_CODES: &[u32] = &[
        ecode::UNKNOWN_COMMAND,
        ecode::ARG_COUNT,
        ecode::MODIFIERS_NOT_ALLOWED,
        ecode::SUBCOMMAND,
        ecode::SYNTAX,
        ecode::RECORD_MODIFIER_PLACE,
        ecode::RECORD_MODIFIER,
        ecode::DELETE_MODIFIER,
        ecode::STATS_MODIFIER,
        ecode::NOTIFY_TAG,
        ecode::EXTERNAL_INTERFACE,
        ecode::INTERNAL_INTERFACE,
        ecode::REPACKETIZE,
        ecode::CODECS,
        ecode::LOCAL_ADDR_SYNTAX,
        ecode::REMOTE_ADDR_SYNTAX,
        ecode::PLAY_COUNT,
        ecode::INFO_MODIFIER,
        ecode::QUERY_MODIFIER,
        ecode::BAD_LOCAL_ADDR,
        ecode::BAD_ROUTE_ADDR,
        ecode::INVALID_ARGUMENT,
        ecode::BAD_REMOTE_ADDR,
    ];

    /// Parses `data` with both framings; checks that every success re-serialises to
    /// the same request and every reply is one well-formed line. Panics only on a
    /// broken invariant.
    pub fn check_rtpproxy_command(data: &[u8]) {
        for framing in [Framing::Bare, Framing::Cookie] {
            check(data, framing);
        }
    }

    fn check(data: &[u8], framing: Framing) {
        match parse_bytes(data, framing) {
            Ok(req) => {
                assert_eq!(req.cookie.is_some(), framing == Framing::Cookie);
                let text = req.to_string();
                assert!(
                    !text.contains(['\n', '\r', '\0']),
                    "display spans lines: {text:?}"
                );
                let again = parse(&text, framing)
                    .unwrap_or_else(|e| panic!("{text:?} from {req:?} does not parse: {e}"));
                assert_eq!(again, req, "round trip through {text:?}");
                if let Some(cookie) = &req.cookie {
                    assert_eq!(
                        Some(cookie.as_str()),
                        first_word_cookie(data, framing).as_deref()
                    );
                }
                let cookie = req.cookie.as_deref();
                for reply in [
                    format_ok(cookie),
                    format_version(cookie),
                    format_feature(cookie, true),
                    format_port(cookie, 35000, IpAddr::V6(Ipv6Addr::LOCALHOST)),
                    format_query(cookie, true, &QueryCounters::default()),
                ] {
                    check_reply(&reply, cookie);
                }
                if let RpCommand::Update(s) | RpCommand::Lookup(s) = &req.command {
                    // Must not panic; the value itself is checked by the tests.
                    let _ = s.remote();
                    if let Some(n) = &s.notify {
                        let _ = n.decoded_tag();
                    }
                }
                if let RpCommand::Play(p) = &req.command {
                    let _ = p.codec_list();
                }
            }
            Err(e) => {
                assert!(
                    PARSER_CODES.contains(&e.code),
                    "parser produced an executor code: {e:?}"
                );
                assert!(!e.message.is_empty());
                if framing == Framing::Bare {
                    assert!(e.cookie.is_none());
                }
                check_reply(&e.reply(), e.cookie.as_deref());
            }
        }
    }

    fn check_reply(reply: &str, cookie: Option<&str>) {
        assert!(reply.ends_with('\n'), "reply without newline: {reply:?}");
        assert_eq!(
            reply.matches('\n').count(),
            1,
            "reply spans lines: {reply:?}"
        );
        if let Some(c) = cookie {
            assert!(
                reply.starts_with(&format!("{c} ")),
                "cookie lost: {reply:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_splits_at_the_last_numeric_suffix() {
        let t = Tag::parse("27141UAC1;1");
        assert_eq!((t.tag.as_str(), t.medianum), ("27141UAC1", Some(1)));
        assert_eq!(Tag::parse("abc").medianum, None);
        assert_eq!(Tag::parse("a;b").tag, "a;b");
        assert_eq!(Tag::parse("a;").tag, "a;");
        assert_eq!(Tag::parse("a;99999999999").medianum, None);
        assert_eq!(Tag::parse("x;1;2").tag, "x;1");
        assert_eq!(Tag::parse("abc").medianum_or_first(), 1);
    }

    #[test]
    fn word_limits_follow_rtpproxy() {
        let ok = format!("G{}", " n".repeat(MAX_WORDS - 1));
        assert!(parse(&ok, Framing::Bare).is_ok());
        let too_many = format!("G{}", " n".repeat(MAX_WORDS));
        assert_eq!(
            parse(&too_many, Framing::Bare).unwrap_err().code,
            ecode::SYNTAX
        );
        // The cookie is not a word of the command.
        let with_cookie = format!("c1 {ok}");
        assert!(parse(&with_cookie, Framing::Cookie).is_ok());
    }

    #[test]
    fn url_decoding_matches_rtpproxy() {
        assert_eq!(url_decode("a%20b+c").as_deref(), Some(&b"a b c"[..]));
        assert_eq!(url_decode("%4"), None);
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("%"), None);
    }

    #[test]
    fn c_long_accepts_a_sign() {
        assert_eq!(parse_c_long("-1"), Some(-1));
        assert_eq!(parse_c_long("+3"), Some(3));
        assert_eq!(parse_c_long("-"), None);
        assert_eq!(parse_c_long("1x"), None);
        assert_eq!(parse_c_long("99999999999"), None);
    }

    #[test]
    fn address_scan_stops_at_the_first_other_character() {
        assert_eq!(extract_addr(b"1.2.3.4c0", 0), Some(("1.2.3.4", 7)));
        assert_eq!(extract_addr(b"[::1]w", 0), Some(("::1", 5)));
        assert_eq!(extract_addr(b"[::1", 0), None);
        assert_eq!(extract_addr(b"[]", 0), None);
        assert_eq!(extract_addr(b"", 0), None);
        assert_eq!(extract_addr(b"x", 0), None);
    }

    #[test]
    fn fuzz_check_holds_on_samples() {
        for s in [
            "",
            "V",
            "c V",
            "Uc0,101 1-27141@127.0.0.1 127.0.0.1 16000 27141UAC1;1",
            "U6l[::1]c0 a ::1 1 t",
            "Ll{lab}z20 a 1.2.3.4 1 t u",
            "P-1 c p session f;1 t;1",
            "\0",
            "U\u{e9} a b c d",
            "&& x",
            "U a 1.2.3.4 1 t && x",
        ] {
            fuzzing::check_rtpproxy_command(s.as_bytes());
        }
        fuzzing::check_rtpproxy_command(&[0xff, b' ', b'V']);
        fuzzing::check_rtpproxy_command(&vec![b'V'; MAX_COMMAND_BYTES + 1]);
    }
}
