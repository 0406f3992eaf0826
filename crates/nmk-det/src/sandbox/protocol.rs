//! The wire protocol between the trusted parent and a sandbox worker.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of canonical text
//! ([`crate::canonical`]) of one [`Value::Map`]. Both directions use the same framing; the
//! parent decodes every worker frame strictly ([`crate::canonical::decode`] accepts only what
//! [`crate::canonical::encode`] produces) and refuses anything over [`MAX_FRAME`].
//!
//! Messages:
//!
//! * worker → parent, once at start: [`Hello`] `{"hello":"nmk-sandbox/1","confined":…,"detail":…,"pid":…}`.
//! * parent → worker: [`Request`] `{"id","code","entry","calls":[[args…],…],"limits":{…}}`.
//! * worker → parent, one per call, in order: [`Reply`] `{"id","index","ok":v}` or
//!   `{"id","index","err":"<Type>: message"}`.
//!
//! The worker reports raw values only, never a verdict: everything it sends is the candidate
//! program's own output and is judged by the parent.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use crate::canonical;
use crate::value::{Integer, Value};

/// The protocol name a worker announces in its hello frame.
pub const PROTOCOL: &str = "nmk-sandbox/1";

/// The largest frame either side accepts, in bytes (16 MiB).
pub const MAX_FRAME: usize = 16 << 20;

/// The longest error text a worker sends; longer messages are cut.
pub const MAX_ERROR_TEXT: usize = 2000;

/// Why a frame or message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The stream ended in the middle of a frame.
    #[error("short frame: {0}")]
    Short(io::Error),
    /// The announced length is over the cap.
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte cap")]
    Oversize(usize),
    /// The body is not UTF-8.
    #[error("frame is not UTF-8")]
    NotUtf8,
    /// The body is not canonical text.
    #[error("frame is not canonical: {0}")]
    NotCanonical(#[from] canonical::CanonicalError),
    /// The message does not have the expected shape.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(io::Error),
}

/// Writes one frame holding the canonical text of `message`.
pub fn write_frame(out: &mut impl Write, message: &Value) -> io::Result<()> {
    let body = canonical::encode(message);
    write_raw_frame(out, body.as_bytes())
}

/// Writes one frame around already-encoded canonical text.
pub fn write_raw_frame(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame over the cap"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(body)
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly before a frame began.
pub fn read_frame(input: &mut impl Read) -> Result<Option<Value>, ProtocolError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(ProtocolError::Short(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::Oversize(len));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).map_err(ProtocolError::Short)?;
    let text = std::str::from_utf8(&body).map_err(|_| ProtocolError::NotUtf8)?;
    Ok(Some(canonical::decode(text)?))
}

/// Per-call limits the worker applies inside the interpreter. The parent's watchdog enforces
/// its own deadline on top of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit of one call, in milliseconds.
    pub max_ms: u64,
    /// Heap limit of one call, in bytes.
    pub max_memory: u64,
    /// Maximum call-stack depth.
    pub max_recursion: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ms: 1000,
            max_memory: 256 << 20,
            max_recursion: 200,
        }
    }
}

/// A batch of calls of one program's entry function.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Request id; every reply must carry it.
    pub id: u64,
    /// The program text.
    pub code: String,
    /// The function to call.
    pub entry: String,
    /// One argument list per call.
    pub calls: Vec<Vec<Value>>,
    /// Limits for each call.
    pub limits: Limits,
}

/// What one call produced, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The call returned this value.
    Ok(Value),
    /// The call raised, timed out inside the interpreter, or returned something not
    /// representable: `"<Type>: message"`.
    Err(String),
}

/// One call's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The request id.
    pub id: u64,
    /// The call's position in the request.
    pub index: u64,
    /// What the call produced.
    pub outcome: Outcome,
}

/// The worker's first frame: whether it is confined.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// Whether rlimits, the empty environment and the seccomp filter were all applied.
    pub confined: bool,
    /// What was applied, or what failed.
    pub detail: String,
    /// The worker's process id, as it reports it.
    pub pid: u64,
}

fn int(v: u64) -> Value {
    Value::int(Integer::from(v))
}

fn get_u64(map: &BTreeMap<String, Value>, key: &'static str) -> Result<u64, ProtocolError> {
    match map.get(key) {
        Some(Value::Int(Integer::Small(v))) if *v >= 0 => Ok(*v as u64),
        _ => Err(ProtocolError::Malformed(key)),
    }
}

fn get_str<'a>(
    map: &'a BTreeMap<String, Value>,
    key: &'static str,
) -> Result<&'a str, ProtocolError> {
    match map.get(key) {
        Some(Value::Str(s)) => Ok(s),
        _ => Err(ProtocolError::Malformed(key)),
    }
}

fn as_map(v: &Value) -> Result<&BTreeMap<String, Value>, ProtocolError> {
    match v {
        Value::Map(m) => Ok(m),
        _ => Err(ProtocolError::Malformed("message is not a map")),
    }
}

fn exact_keys(map: &BTreeMap<String, Value>, keys: &[&str]) -> Result<(), ProtocolError> {
    if map.len() == keys.len() && keys.iter().all(|k| map.contains_key(*k)) {
        Ok(())
    } else {
        Err(ProtocolError::Malformed("unexpected key set"))
    }
}

impl Limits {
    /// The wire form.
    pub fn to_value(&self) -> Value {
        Value::map([
            ("max_memory", int(self.max_memory)),
            ("max_ms", int(self.max_ms)),
            ("max_recursion", int(self.max_recursion)),
        ])
    }

    /// Parses the wire form.
    pub fn from_value(v: &Value) -> Result<Limits, ProtocolError> {
        let m = as_map(v)?;
        exact_keys(m, &["max_memory", "max_ms", "max_recursion"])?;
        Ok(Limits {
            max_memory: get_u64(m, "max_memory")?,
            max_ms: get_u64(m, "max_ms")?,
            max_recursion: get_u64(m, "max_recursion")?,
        })
    }
}

impl Request {
    /// The wire form.
    pub fn to_value(&self) -> Value {
        Value::map([
            (
                "calls",
                Value::List(self.calls.iter().map(|c| Value::List(c.clone())).collect()),
            ),
            ("code", Value::str(self.code.clone())),
            ("entry", Value::str(self.entry.clone())),
            ("id", int(self.id)),
            ("limits", self.limits.to_value()),
        ])
    }

    /// Parses the wire form.
    pub fn from_value(v: &Value) -> Result<Request, ProtocolError> {
        let m = as_map(v)?;
        exact_keys(m, &["calls", "code", "entry", "id", "limits"])?;
        let calls = match m.get("calls") {
            Some(Value::List(calls)) => calls
                .iter()
                .map(|c| match c {
                    Value::List(args) => Ok(args.clone()),
                    _ => Err(ProtocolError::Malformed("call is not a list")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(ProtocolError::Malformed("calls")),
        };
        Ok(Request {
            id: get_u64(m, "id")?,
            code: get_str(m, "code")?.to_owned(),
            entry: get_str(m, "entry")?.to_owned(),
            calls,
            limits: Limits::from_value(m.get("limits").unwrap_or(&Value::Null))?,
        })
    }
}

impl Reply {
    /// The wire form.
    pub fn to_value(&self) -> Value {
        let (key, payload) = match &self.outcome {
            Outcome::Ok(v) => ("ok", v.clone()),
            Outcome::Err(e) => ("err", Value::str(e.clone())),
        };
        Value::map([
            ("id", int(self.id)),
            ("index", int(self.index)),
            (key, payload),
        ])
    }

    /// Parses the wire form.
    pub fn from_value(v: Value) -> Result<Reply, ProtocolError> {
        let Value::Map(mut m) = v else {
            return Err(ProtocolError::Malformed("message is not a map"));
        };
        if m.len() != 3 {
            return Err(ProtocolError::Malformed("unexpected key set"));
        }
        let id = get_u64(&m, "id")?;
        let index = get_u64(&m, "index")?;
        let outcome = if let Some(v) = m.remove("ok") {
            Outcome::Ok(v)
        } else {
            match m.remove("err") {
                Some(Value::Str(e)) => Outcome::Err(e),
                _ => return Err(ProtocolError::Malformed("neither ok nor err")),
            }
        };
        Ok(Reply { id, index, outcome })
    }
}

impl Hello {
    /// The wire form.
    pub fn to_value(&self) -> Value {
        Value::map([
            ("confined", Value::Bool(self.confined)),
            ("detail", Value::str(self.detail.clone())),
            ("hello", Value::str(PROTOCOL)),
            ("pid", int(self.pid)),
        ])
    }

    /// Parses the wire form; a different protocol name is an error.
    pub fn from_value(v: &Value) -> Result<Hello, ProtocolError> {
        let m = as_map(v)?;
        exact_keys(m, &["confined", "detail", "hello", "pid"])?;
        if get_str(m, "hello")? != PROTOCOL {
            return Err(ProtocolError::Malformed("unknown protocol"));
        }
        let confined = match m.get("confined") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(ProtocolError::Malformed("confined")),
        };
        Ok(Hello {
            confined,
            detail: get_str(m, "detail")?.to_owned(),
            pid: get_u64(m, "pid")?,
        })
    }
}

/// Cuts `text` to at most [`MAX_ERROR_TEXT`] bytes on a character boundary.
pub fn cut_error(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_round_trip_through_frames() {
        let req = Request {
            id: 7,
            code: "def f(a):\n    return a".into(),
            entry: "f".into(),
            calls: vec![vec![Value::int(1)], vec![Value::Tuple(vec![Value::Null])]],
            limits: Limits::default(),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req.to_value()).unwrap();
        let back = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        assert_eq!(Request::from_value(&back).unwrap(), req);
        let reply = Reply {
            id: 7,
            index: 1,
            outcome: Outcome::Err("ValueError: x".into()),
        };
        assert_eq!(Reply::from_value(reply.to_value()).unwrap(), reply);
    }

    #[test]
    fn garbage_short_and_oversize_frames_are_refused() {
        assert!(read_frame(&mut [0u8, 0].as_slice()).is_err());
        assert!(matches!(
            read_frame(&mut [0xffu8, 0xff, 0xff, 0xff].as_slice()),
            Err(ProtocolError::Oversize(_))
        ));
        let mut buf = Vec::new();
        write_raw_frame(&mut buf, b"{\"b\":1,\"a\":2}").unwrap();
        assert!(matches!(
            read_frame(&mut buf.as_slice()),
            Err(ProtocolError::NotCanonical(_))
        ));
        assert!(read_frame(&mut [].as_slice()).unwrap().is_none());
        let forged = Value::map([("id", Value::int(1)), ("index", Value::int(0))]);
        assert!(Reply::from_value(forged).is_err());
    }
}
