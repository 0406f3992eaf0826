//! What the `nmk serve` acceptance tests share: starting the server on a kernel home, plain
//! HTTP/1.1 over a std `TcpStream` (so status codes, headers and the event stream are read
//! exactly as sent, with the time each part arrived), and reading the ledger the server left
//! on disk through the `nmk` command line. It speaks only the HTTP contract and the CLI; it
//! knows nothing of the server's internals.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{json as cli_json, nmk, nmk_command};

/// The model every acceptance test serves (fetched into the cache by the binary if needed).
pub const MODEL: &str = "smollm2-135m-instruct";

/// A running `nmk serve`; killed on drop unless it already exited.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `nmk serve --port 0 --model MODEL extra…` on `home` and waits for its address.
    pub fn start(home: &Path, extra: &[&str]) -> Server {
        let mut child = nmk_command(home)
            .args(["serve", "--port", "0", "--model", MODEL])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line of nmk serve: {line:?}"))
            .to_owned();
        Server { child, addr }
    }

    /// Sends `signal` (a `kill` name such as `TERM` or `KILL`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid} failed");
    }

    /// SIGTERM, then waits for the exit (the server finishes what it accepted first).
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// The body of a response as it arrives: de-chunked when `Transfer-Encoding: chunked`, else
/// everything up to the close (requests ask for `Connection: close`).
struct BodyReader<R> {
    inner: R,
    chunked: bool,
    left_in_chunk: usize,
    finished: bool,
}

impl<R: BufRead> BodyReader<R> {
    fn next_chunk_size(&mut self) -> io::Result<usize> {
        let mut line = String::new();
        if self.inner.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the last chunk",
            ));
        }
        let size = line.trim().split(';').next().unwrap_or_default();
        usize::from_str_radix(size, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size line {line:?}"),
            )
        })
    }
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished || buf.is_empty() {
            return Ok(0);
        }
        if !self.chunked {
            return self.inner.read(buf);
        }
        if self.left_in_chunk == 0 {
            let size = self.next_chunk_size()?;
            if size == 0 {
                self.finished = true;
                return Ok(0);
            }
            self.left_in_chunk = size;
        }
        let want = buf.len().min(self.left_in_chunk);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
        self.left_in_chunk -= n;
        if self.left_in_chunk == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

/// A response whose head has been read; the body is read by the caller as it arrives.
pub struct Open {
    pub status: u16,
    pub headers: HashMap<String, String>,
    body: BufReader<BodyReader<BufReader<TcpStream>>>,
}

impl Open {
    /// The rest of the body.
    pub fn finish(mut self) -> io::Result<Resp> {
        let mut raw = Vec::new();
        self.body.read_to_end(&mut raw)?;
        Ok(Resp {
            status: self.status,
            headers: self.headers,
            body: String::from_utf8(raw).map_err(|e| io::Error::other(e.to_string()))?,
        })
    }

    /// The next server-sent event's data (`None` at the end of the body).
    pub fn next_event(&mut self) -> io::Result<Option<String>> {
        let mut data: Option<String> = None;
        loop {
            let mut line = String::new();
            if self.body.read_line(&mut line)? == 0 {
                return Ok(data);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_some() {
                    return Ok(data);
                }
                continue;
            }
            if let Some(d) = line.strip_prefix("data:") {
                let d = d.strip_prefix(' ').unwrap_or(d);
                match &mut data {
                    Some(prev) => {
                        prev.push('\n');
                        prev.push_str(d);
                    }
                    None => data = Some(d.to_owned()),
                }
            }
        }
    }
}

/// Sends one request and reads the response head.
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> io::Result<Open> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // The server may answer (413) before reading a body it refuses: the answer is still read.
    let _ = s.write_all(body.as_bytes());
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a status line",
        ));
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the head",
            ));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    Ok(Open {
        status,
        headers,
        body: BufReader::new(BodyReader {
            inner: reader,
            chunked,
            left_in_chunk: 0,
            finished: false,
        }),
    })
}

/// Sends a chat request and reads the response head; a transport error is returned as text
/// (under load or a kill it is an outcome to count, not a test failure by itself).
pub fn post_chat(addr: &str, body: &Value, timeout: Duration) -> Result<Open, String> {
    send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &body.to_string(),
        timeout,
    )
    .map_err(|e| format!("transport: {e}"))
}

/// One whole request (the test fails on a transport error).
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    send(addr, method, path, headers, body, Duration::from_secs(170))
        .and_then(Open::finish)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A chat request body with one user message.
pub fn user(text: &str, max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{ "role": "user", "content": text }],
    })
}

/// What one streamed chat request came to, as a client saw it.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// Time to the first `data:` chunk (none for an empty stream).
    pub first_chunk: Option<Duration>,
    /// Time to the end of the body.
    pub total: Duration,
    /// The text of the delta chunks, concatenated.
    pub text: String,
    /// The final chunk (the one carrying `usage` and `nmk`).
    pub last: Value,
}

/// Reads a streamed chat response to its end. A stream is complete only when it ends with a
/// final chunk carrying `nmk` and `usage`, then `[DONE]`; anything else is an error naming
/// what was wrong (an error object, a broken or truncated stream).
pub fn read_chat_stream(mut open: Open, t0: Instant) -> Result<StreamOutcome, String> {
    let mut first_chunk = None;
    let mut text = String::new();
    let mut last: Option<Value> = None;
    let mut done = false;
    loop {
        let event = open
            .next_event()
            .map_err(|e| format!("broken stream: {e}"))?;
        let Some(data) = event else { break };
        if first_chunk.is_none() {
            first_chunk = Some(t0.elapsed());
        }
        if done {
            return Err(format!("data after [DONE]: {data:?}"));
        }
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value =
            serde_json::from_str(&data).map_err(|e| format!("chunk not JSON ({e}): {data:?}"))?;
        if chunk.get("error").is_some() {
            return Err(format!("error in stream: {chunk}"));
        }
        if last.is_some() {
            return Err(format!("a chunk after the final chunk: {chunk}"));
        }
        if chunk["object"] != "chat.completion.chunk" {
            return Err(format!("not a chat chunk: {chunk}"));
        }
        if chunk.get("nmk").is_some() {
            last = Some(chunk);
        } else {
            match chunk["choices"][0]["delta"]["content"].as_str() {
                Some(piece) => text.push_str(piece),
                None => return Err(format!("a delta chunk without text: {chunk}")),
            }
        }
    }
    if !done {
        return Err("stream ended without [DONE]".into());
    }
    let last = last.ok_or("stream ended without a final chunk carrying nmk")?;
    if !last["nmk"].is_object() || !last["usage"]["completion_tokens"].is_u64() {
        return Err(format!("final chunk lacks nmk or usage: {last}"));
    }
    Ok(StreamOutcome {
        first_chunk,
        total: t0.elapsed(),
        text,
        last,
    })
}

/// Every ledger entry hash of a kernel home the server is no longer running on, read through
/// `nmk ledger show --json` (the whole chain, however long).
pub fn ledger_hashes_on_disk(home: &Path) -> HashSet<String> {
    let entries = verify_on_disk(home)["entries"].as_u64().unwrap();
    let limit = (entries + 1).to_string();
    let out = nmk(home, &["ledger", "show", "--json", "--limit", &limit]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = cli_json(&out);
    let list = shown.as_array().unwrap();
    assert_eq!(
        list.len() as u64,
        entries,
        "ledger show returned a partial chain"
    );
    list.iter()
        .map(|e| e["hash"].as_str().unwrap().to_owned())
        .collect()
}

/// `nmk ledger verify --json` on the home; the test fails unless it passes.
pub fn verify_on_disk(home: &Path) -> Value {
    let out = nmk(home, &["ledger", "verify", "--json"]);
    let report = cli_json(&out);
    assert_eq!(out.status.code(), Some(0), "ledger verify failed: {report}");
    assert_eq!(report["ok"], true, "{report}");
    report
}

/// The acknowledged entries the ledger does not hold (empty when every one is there).
pub fn missing_entries<'a>(
    ledger: &HashSet<String>,
    acknowledged: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    acknowledged
        .into_iter()
        .filter(|h| !ledger.contains(*h))
        .cloned()
        .collect()
}

/// A well-formed entry hash no ledger ever wrote (the contrast for a presence check).
pub fn never_written_hash() -> String {
    "5e".repeat(32)
}

/// The `p`-quantile (0..=1) of `xs` by the nearest-rank rule (`None` when empty).
pub fn quantile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}
