//! Bencode, the encoding of rtpengine's "ng" control protocol: a strict decoder and
//! an encoder.
//!
//! The decoder accepts exactly one value filling the whole input and only its
//! canonical spelling (no leading zeros, no `-0`, integers that fit an `i64`), so
//! `encode(decode(x)) == x` for every accepted `x`. Dictionaries keep the order they
//! arrived in: rtpengine and the Kamailio module do not sort their keys. Limits keep
//! a hostile control packet cheap: [`MAX_INPUT`] bytes, [`MAX_DEPTH`] nested
//! containers. Nothing here panics on any input.

use std::collections::HashSet;
use std::fmt;
use thiserror::Error;

/// Largest input [`decode`] accepts, in bytes (1 MiB; a UDP datagram is at most 64 KiB).
pub const MAX_INPUT: usize = 1 << 20;

/// Deepest nesting of lists and dictionaries [`decode`] accepts.
pub const MAX_DEPTH: usize = 32;

/// Dictionaries up to this many keys find duplicates by a scan, not a hash set.
const SCAN_KEYS: usize = 16;

/// One bencode value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<digits>e`.
    Int(i64),
    /// `<len>:<bytes>`, a byte string (not necessarily UTF-8).
    Bytes(Vec<u8>),
    /// `l...e`.
    List(Vec<Value>),
    /// `d...e`: keys with values, in the order given (see [`Value::dict`]).
    Dict(Vec<(Vec<u8>, Value)>),
}

impl Value {
    /// A byte string holding `s`.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A byte string holding `b`.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    /// An integer.
    pub fn int(i: i64) -> Value {
        Value::Int(i)
    }

    /// A list of `items`.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(items)
    }

    /// A list of byte strings.
    pub fn str_list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(items.into_iter().map(|s| Value::str(s.as_ref())).collect())
    }

    /// A dictionary with its keys sorted by their bytes, as the bencode spec asks;
    /// of entries with equal keys the last one is kept. Build `Value::Dict` directly
    /// to keep an order of your own.
    pub fn dict<K: AsRef<[u8]>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        let mut out: Vec<(Vec<u8>, Value)> = Vec::new();
        for (k, v) in entries {
            let k = k.as_ref();
            match out.binary_search_by(|(have, _)| have.as_slice().cmp(k)) {
                Ok(i) => out[i].1 = v,
                Err(i) => out.insert(i, (k.to_vec(), v)),
            }
        }
        Value::Dict(out)
    }

    /// The value under `key` if this is a dictionary (the first match).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.get_bytes(key.as_bytes())
    }

    /// The value under the byte-string `key` if this is a dictionary.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| k.as_slice() == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The bytes of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a byte string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// An integer, or a byte string spelling one in decimal (`"3"`, `"-1"`, `"+7"`):
    /// rtpengine reads integer keys that way, and the Kamailio module sends a
    /// `key=value` flag's value as a string.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bytes(b) => parse_decimal(b),
            _ => None,
        }
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries of a dictionary, in order.
    pub fn as_dict(&self) -> Option<&[(Vec<u8>, Value)]> {
        match self {
            Value::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages: `integer`, `string`, `list`
    /// or `dictionary`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// This value encoded.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode(self, &mut out);
        out
    }
}

/// `[+-]?[0-9]+` fitting an `i64`; anything else (spaces, `0x`, empty) is `None`.
fn parse_decimal(b: &[u8]) -> Option<i64> {
    let digits = match b.first() {
        Some(b'+' | b'-') => &b[1..],
        _ => b,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Why [`decode`] refused an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BencodeErrorKind {
    /// The input is empty.
    Empty,
    /// The input is longer than [`MAX_INPUT`].
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Lists and dictionaries nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The input ends inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte(u8),
    /// A number spelled with a leading zero (`i03e`, `03:abc`).
    LeadingZero,
    /// The integer `-0`.
    NegativeZero,
    /// An integer with no digits (`ie`, `i-e`).
    EmptyInteger,
    /// An integer outside the `i64` range.
    IntegerOverflow,
    /// A string length that runs past the end of the input.
    StringTooLong {
        /// The declared length.
        len: u64,
        /// Bytes left after the colon.
        left: usize,
    },
    /// A dictionary key that is not a byte string.
    KeyNotString(&'static str),
    /// A dictionary key given twice.
    DuplicateKey(String),
    /// Bytes after the one complete value.
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl fmt::Display for BencodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BencodeErrorKind::Empty => f.write_str("the input is empty"),
            BencodeErrorKind::TooLarge { len } => {
                write!(
                    f,
                    "the input is {len} bytes, more than the {MAX_INPUT} allowed"
                )
            }
            BencodeErrorKind::TooDeep => write!(
                f,
                "lists and dictionaries nest deeper than {MAX_DEPTH} levels"
            ),
            BencodeErrorKind::UnexpectedEnd => f.write_str("the input ends inside a value"),
            BencodeErrorKind::UnexpectedByte(b) => write!(
                f,
                "unexpected byte {:?} (expected i, l, d, a digit or e)",
                char::from(*b)
            ),
            BencodeErrorKind::LeadingZero => f.write_str("a number has a leading zero"),
            BencodeErrorKind::NegativeZero => f.write_str("the integer -0 is not allowed"),
            BencodeErrorKind::EmptyInteger => f.write_str("an integer has no digits"),
            BencodeErrorKind::IntegerOverflow => {
                f.write_str("an integer does not fit in 64 signed bits")
            }
            BencodeErrorKind::StringTooLong { len, left } => write!(
                f,
                "a string of {len} bytes runs past the end of the input ({left} bytes left)"
            ),
            BencodeErrorKind::KeyNotString(kind) => {
                write!(f, "a dictionary key is a {kind}, not a string")
            }
            BencodeErrorKind::DuplicateKey(key) => {
                write!(f, "the dictionary key {key:?} appears twice")
            }
            BencodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} bytes follow the complete value")
            }
        }
    }
}

/// A refused input: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid bencode at byte {offset}: {kind}")]
pub struct BencodeError {
    /// Offset of the offending byte in the input.
    pub offset: usize,
    /// What was wrong.
    pub kind: BencodeErrorKind,
}

/// Decodes `input`, which must hold exactly one value and nothing after it.
pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    if input.is_empty() {
        return Err(BencodeError {
            offset: 0,
            kind: BencodeErrorKind::Empty,
        });
    }
    if input.len() > MAX_INPUT {
        return Err(BencodeError {
            offset: MAX_INPUT,
            kind: BencodeErrorKind::TooLarge { len: input.len() },
        });
    }
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(d.err(BencodeErrorKind::TrailingBytes {
            count: input.len() - d.pos,
        }));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, kind: BencodeErrorKind) -> BencodeError {
        BencodeError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(BencodeErrorKind::UnexpectedEnd))
    }

    /// One value; `depth` counts the containers around it.
    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(|b| Value::Bytes(b.to_vec())),
            b'l' => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(BencodeErrorKind::TooDeep));
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(BencodeErrorKind::TooDeep));
                }
                self.pos += 1;
                let mut entries = Vec::new();
                // Keys so far: scanned while the dictionary is small (what
                // signalling sends), hashed beyond that.
                let mut keys: Vec<&'a [u8]> = Vec::new();
                let mut seen: HashSet<&'a [u8]> = HashSet::new();
                loop {
                    let b = self.peek()?;
                    if b == b'e' {
                        break;
                    }
                    let key_at = self.pos;
                    let key = match b {
                        b'0'..=b'9' => self.bytes()?,
                        b'i' => return Err(self.err(BencodeErrorKind::KeyNotString("integer"))),
                        b'l' => return Err(self.err(BencodeErrorKind::KeyNotString("list"))),
                        b'd' => return Err(self.err(BencodeErrorKind::KeyNotString("dictionary"))),
                        other => return Err(self.err(BencodeErrorKind::UnexpectedByte(other))),
                    };
                    let duplicate = if keys.len() < SCAN_KEYS {
                        let found = keys.contains(&key);
                        keys.push(key);
                        found
                    } else {
                        if seen.is_empty() {
                            seen.extend(keys.iter().copied());
                        }
                        !seen.insert(key)
                    };
                    if duplicate {
                        return Err(BencodeError {
                            offset: key_at,
                            kind: BencodeErrorKind::DuplicateKey(
                                String::from_utf8_lossy(key).into_owned(),
                            ),
                        });
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key.to_vec(), v));
                }
                self.pos += 1;
                Ok(Value::Dict(entries))
            }
            other => Err(self.err(BencodeErrorKind::UnexpectedByte(other))),
        }
    }

    /// `i<digits>e` at `pos`.
    fn int(&mut self) -> Result<i64, BencodeError> {
        self.pos += 1; // the 'i'
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let mut n: i64 = 0;
        loop {
            let b = self.peek()?;
            match b {
                b'0'..=b'9' => {
                    if self.pos > start && self.input[start] == b'0' {
                        self.pos = start;
                        return Err(self.err(BencodeErrorKind::LeadingZero));
                    }
                    let d = i64::from(b - b'0');
                    // Accumulate negatively so i64::MIN fits.
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_sub(d))
                        .ok_or_else(|| self.err(BencodeErrorKind::IntegerOverflow))?;
                    self.pos += 1;
                }
                b'e' => break,
                other => return Err(self.err(BencodeErrorKind::UnexpectedByte(other))),
            }
        }
        if self.pos == start {
            return Err(self.err(BencodeErrorKind::EmptyInteger));
        }
        self.pos += 1; // the 'e'
        if negative {
            if n == 0 {
                return Err(BencodeError {
                    offset: start - 1,
                    kind: BencodeErrorKind::NegativeZero,
                });
            }
            Ok(n)
        } else {
            n.checked_neg().ok_or(BencodeError {
                offset: start,
                kind: BencodeErrorKind::IntegerOverflow,
            })
        }
    }

    /// `<len>:<bytes>` at `pos` (which holds a digit).
    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let mut len: u64 = 0;
        loop {
            let b = self.peek()?;
            match b {
                b'0'..=b'9' => {
                    if self.pos > start && self.input[start] == b'0' {
                        self.pos = start;
                        return Err(self.err(BencodeErrorKind::LeadingZero));
                    }
                    // Saturate: any length past the input is refused below anyway.
                    len = len.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                    self.pos += 1;
                }
                b':' => break,
                other => return Err(self.err(BencodeErrorKind::UnexpectedByte(other))),
            }
        }
        self.pos += 1; // the ':'
        let left = self.input.len() - self.pos;
        match usize::try_from(len) {
            Ok(n) if n <= left => {
                let s = &self.input[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(BencodeError {
                offset: start,
                kind: BencodeErrorKind::StringTooLong { len, left },
            }),
        }
    }
}

/// Appends `v`, encoded, to `out`. Dictionary keys are written in the order the
/// `Value::Dict` holds them ([`Value::dict`] sorts them).
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            write_decimal(out, *i);
            out.push(b'e');
        }
        Value::Bytes(b) => encode_bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(entries) => {
            out.push(b'd');
            for (k, v) in entries {
                encode_bytes(k, out);
                encode(v, out);
            }
            out.push(b'e');
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    // A length always fits: no allocation is longer than isize::MAX.
    write_decimal(out, i64::try_from(b.len()).unwrap_or(i64::MAX));
    out.push(b':');
    out.extend_from_slice(b);
}

/// Writes `n` in decimal without allocating.
fn write_decimal(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_edges() {
        for n in [0, 1, -1, 9, 10, -10, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn int_extremes_round_trip() {
        for s in ["i9223372036854775807e", "i-9223372036854775808e"] {
            let v = decode(s.as_bytes()).unwrap();
            assert_eq!(v.to_bytes(), s.as_bytes());
        }
        assert_eq!(
            decode(b"i9223372036854775808e").unwrap_err().kind,
            BencodeErrorKind::IntegerOverflow
        );
        assert_eq!(
            decode(b"i-9223372036854775809e").unwrap_err().kind,
            BencodeErrorKind::IntegerOverflow
        );
    }

    #[test]
    fn as_int_accepts_decimal_strings_only() {
        assert_eq!(Value::str("42").as_int(), Some(42));
        assert_eq!(Value::str("-3").as_int(), Some(-3));
        assert_eq!(Value::str("+3").as_int(), Some(3));
        for bad in ["", "-", "4 ", " 4", "0x10", "1e3", "99999999999999999999"] {
            assert_eq!(Value::str(bad).as_int(), None, "{bad:?}");
        }
    }

    #[test]
    fn dict_builder_sorts_and_keeps_last() {
        let v = Value::dict([
            ("b", Value::int(1)),
            ("a", Value::int(2)),
            ("b", Value::int(3)),
        ]);
        assert_eq!(v.to_bytes(), b"d1:ai2e1:bi3ee");
    }
}
