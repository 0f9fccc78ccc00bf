//! What `get`, `set` and `watch` share: opening a blackboard whatever its
//! types ([`conduit::blackboard::RawBlackboard`]), and turning keys and
//! values into bytes and back.
//!
//! Types handled: byte arrays `[u8; N]` (a value is the argument's bytes,
//! any bytes, zero-padded to N; shown as text with escapes, trailing zero
//! bytes left out) and the integer and float primitives (decimal text,
//! little-endian). `--hex` takes and shows any type as its raw bytes in
//! hex. Other types are refused (exit 4).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use conduit::ShmSafe;
use conduit::blackboard::RawBlackboard;
use conduit::node::Node;
use conduit::service::{ServiceError, TypeLayoutInfo};
use serde_json::json;

use crate::common::{self, Failure, exit};

/// An open blackboard and the node holding it.
pub struct Board {
    /// The CLI's node (kept alive as long as the board).
    pub _node: Node,
    /// The blackboard.
    pub board: RawBlackboard,
    /// How its keys are written.
    pub key: Format,
    /// How its values are written.
    pub value: Format,
}

/// Opens blackboard `name` in `domain`; `hex_key`/`hex_value`: the user
/// gives and reads that side in hex (any type is fine then).
pub fn open(domain: &str, name: &str, hex_key: bool, hex_value: bool) -> Result<Board, Failure> {
    common::service_name(name)?;
    let node = common::node(domain)?;
    let board =
        node.service(name)
            .blackboard_raw()
            .open()
            .map_err(|e| match e {
                ServiceError::NotFound(_) => {
                    common::other_kind(domain, name, conduit::ServiceKind::Blackboard)
                        .unwrap_or_else(|| {
                            Failure::new(
                                exit::NOT_FOUND,
                                format!("no blackboard {name:?} in domain {domain:?}"),
                            )
                        })
                }
                e => common::service_failure(e),
            })?;
    let format = |t: &TypeLayoutInfo, hex: bool, what: &str| -> Result<Format, Failure> {
        match Format::of(t) {
            Some(f) => Ok(f),
            None if hex => Ok(Format::Opaque(t.size as usize)),
            None => Err(Failure::new(
                exit::TYPE_MISMATCH,
                format!(
                    "blackboard {name:?} has {what}s of type {} (size {}); this command handles byte arrays and numbers (or use --{}hex)",
                    t.name,
                    t.size,
                    if what == "key" { "key-" } else { "" }
                ),
            )),
        }
    };
    let key = format(&board.key_type(), hex_key, "key")?;
    let value = format(&board.value_type(), hex_value, "value")?;
    Ok(Board {
        _node: node,
        board,
        key,
        value,
    })
}

/// How the bytes of one type are written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[u8; N]`.
    Bytes(usize),
    /// An unsigned integer of this many bytes.
    Unsigned(usize),
    /// A signed integer of this many bytes.
    Signed(usize),
    /// `f32` or `f64`.
    Float(usize),
    /// Any other type of this size: hex only.
    Opaque(usize),
}

impl Format {
    /// The format of a recorded type, if this tool handles it.
    pub fn of(t: &TypeLayoutInfo) -> Option<Format> {
        if let Some(n) = t.byte_array_len() {
            return Some(Format::Bytes(n));
        }
        let fp = t.fingerprint;
        let is = |l: &conduit::shm::TypeLayout| l.fingerprint == fp && l.size as u64 == t.size;
        let size = t.size as usize;
        if is(&u8::LAYOUT) || is(&u16::LAYOUT) || is(&u32::LAYOUT) || is(&u64::LAYOUT) {
            Some(Format::Unsigned(size))
        } else if is(&i8::LAYOUT) || is(&i16::LAYOUT) || is(&i32::LAYOUT) || is(&i64::LAYOUT) {
            Some(Format::Signed(size))
        } else if is(&f32::LAYOUT) || is(&f64::LAYOUT) {
            Some(Format::Float(size))
        } else {
            None
        }
    }

    fn size(self) -> usize {
        match self {
            Format::Bytes(n)
            | Format::Unsigned(n)
            | Format::Signed(n)
            | Format::Float(n)
            | Format::Opaque(n) => n,
        }
    }

    /// The bytes the argument `arg` stands for (`what`: "key" or "value",
    /// for the error); bad input is exit 2.
    pub fn parse(self, arg: &OsStr, hex: bool, what: &str) -> Result<Vec<u8>, Failure> {
        let size = self.size();
        let bad = |why: String| Failure::new(exit::USAGE, format!("{what} {arg:?}: {why}"));
        if hex {
            let text = arg
                .to_str()
                .ok_or_else(|| bad("hex is not valid UTF-8".into()))?;
            let bytes =
                from_hex(text).ok_or_else(|| bad("not an even number of hex digits".into()))?;
            return match self {
                Format::Bytes(n) if bytes.len() <= n => Ok(padded(bytes, n)),
                _ if bytes.len() == size => Ok(bytes),
                _ => Err(bad(format!(
                    "{} bytes; the {what} type has {size}",
                    bytes.len()
                ))),
            };
        }
        let text = || {
            arg.to_str()
                .map(str::trim)
                .ok_or_else(|| bad("a number must be valid UTF-8".into()))
        };
        match self {
            Format::Bytes(n) => {
                let bytes = arg.as_bytes();
                if bytes.len() > n {
                    return Err(bad(format!(
                        "{} bytes is longer than the {what} type's {n}",
                        bytes.len()
                    )));
                }
                Ok(padded(bytes.to_vec(), n))
            }
            Format::Unsigned(n) => {
                let v: u64 = text()?
                    .parse()
                    .map_err(|_| bad("not a whole number ≥ 0".into()))?;
                if n < 8 && v >> (8 * n) != 0 {
                    return Err(bad(format!("does not fit in {n} bytes")));
                }
                Ok(v.to_le_bytes()[..n].to_vec())
            }
            Format::Signed(n) => {
                let v: i64 = text()?
                    .parse()
                    .map_err(|_| bad("not a whole number".into()))?;
                let bits = 8 * n as u32;
                if n < 8 && (v < -(1i64 << (bits - 1)) || v >= 1i64 << (bits - 1)) {
                    return Err(bad(format!("does not fit in {n} bytes")));
                }
                Ok(v.to_le_bytes()[..n].to_vec())
            }
            Format::Float(4) => {
                let v: f32 = text()?.parse().map_err(|_| bad("not a number".into()))?;
                Ok(v.to_le_bytes().to_vec())
            }
            Format::Float(_) => {
                let v: f64 = text()?.parse().map_err(|_| bad("not a number".into()))?;
                Ok(v.to_le_bytes().to_vec())
            }
            Format::Opaque(_) => Err(bad("this type is given in hex only".into())),
        }
    }

    /// The text of `bytes` (hex, or by type).
    pub fn show(self, bytes: &[u8], hex: bool) -> String {
        if hex {
            return to_hex(bytes);
        }
        match self {
            Format::Bytes(_) => trimmed(bytes).escape_ascii().to_string(),
            Format::Unsigned(_) => le_u64(bytes).to_string(),
            Format::Signed(n) => {
                let shift = 64 - 8 * n as u32;
                ((le_u64(bytes) << shift) as i64 >> shift).to_string()
            }
            Format::Float(4) => f32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])).to_string(),
            Format::Float(_) => f64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])).to_string(),
            Format::Opaque(_) => to_hex(bytes),
        }
    }

    /// The JSON of `bytes`: a number, or for byte arrays the text (as
    /// [`show`](Self::show)); with `hex` a hex string.
    pub fn json(self, bytes: &[u8], hex: bool) -> serde_json::Value {
        match self {
            _ if hex => json!(to_hex(bytes)),
            Format::Unsigned(_) => json!(le_u64(bytes)),
            Format::Signed(_) | Format::Float(_) => {
                serde_json::from_str(&self.show(bytes, false)).unwrap_or(json!(null))
            }
            Format::Bytes(_) | Format::Opaque(_) => json!(self.show(bytes, false)),
        }
    }
}

fn padded(mut bytes: Vec<u8>, n: usize) -> Vec<u8> {
    bytes.resize(n, 0);
    bytes
}

fn trimmed(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    &bytes[..end]
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

/// Lower-case hex, two digits a byte.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let os = |s: &str| OsStr::new(s).to_owned();
        let b = Format::Bytes(6);
        assert_eq!(b.parse(&os("ab"), false, "v").unwrap(), b"ab\0\0\0\0");
        assert_eq!(b.show(b"a\xff\0\0\0\0", false), "a\\xff");
        assert!(b.parse(&os("toolong!"), false, "v").is_err());
        assert_eq!(b.parse(&os("00ff"), true, "v").unwrap(), b"\0\xff\0\0\0\0");
        let u = Format::Unsigned(2);
        assert_eq!(u.parse(&os("513"), false, "k").unwrap(), vec![1, 2]);
        assert!(u.parse(&os("65536"), false, "k").is_err());
        assert!(u.parse(&os("-1"), false, "k").is_err());
        assert_eq!(u.show(&[1, 2], false), "513");
        let s = Format::Signed(2);
        assert_eq!(
            s.show(&s.parse(&os("-300"), false, "k").unwrap(), false),
            "-300"
        );
        assert!(s.parse(&os("40000"), false, "k").is_err());
        let f = Format::Float(8);
        assert_eq!(
            f.show(&f.parse(&os("2.5"), false, "v").unwrap(), false),
            "2.5"
        );
        assert_eq!(f.json(&2.5f64.to_le_bytes(), false), json!(2.5));
        assert!(Format::Opaque(3).parse(&os("1"), false, "v").is_err());
        assert!(u.parse(&os("abc"), true, "k").is_err(), "odd hex");
        assert!(u.parse(&os("zz"), true, "k").is_err(), "not hex");
    }
}
