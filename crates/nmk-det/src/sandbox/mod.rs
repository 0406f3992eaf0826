//! The parent side of the sandbox: a small pool of confined worker processes that run
//! model-written programs and hand back raw values.
//!
//! The worker (`nmk-sandbox-worker`, crate `nmk-sandbox`) runs the Python-subset interpreter
//! under rlimits and a seccomp allowlist; this module only spawns it, talks to it through
//! [`protocol`] frames, and watches it. Everything a worker sends is untrusted: every frame is
//! size-capped and strictly decoded, every reply must carry the request id and the expected call
//! index, and anything else discards the worker (it is killed and a fresh one spawned) and
//! reports the call as failed. A watchdog thread SIGKILLs a worker that runs past a call's
//! deadline. A worker that cannot confine itself says so in its hello frame and is refused:
//! nothing ever runs unconfined ([`SandboxError::Unsandboxed`]).
//!
//! The sandbox never computes a verdict; callers (the [`crate::gate`]) compare the returned
//! values with the trusted oracle.

pub mod cases;
pub mod protocol;

use std::io::{BufReader, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::{Hello, Limits, Outcome, Reply, Request};

use crate::value::Value;

/// The environment variable naming the worker binary.
pub const WORKER_ENV: &str = "NMK_SANDBOX_WORKER";

/// The worker binary's file name.
pub const WORKER_NAME: &str = "nmk-sandbox-worker";

/// How long a fresh worker may take to send its hello frame.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the watchdog looks at the deadlines.
const WATCH_PERIOD: Duration = Duration::from_millis(2);

/// The most calls sent in one request frame.
const MAX_CALLS_PER_REQUEST: usize = 4096;

/// Why the sandbox cannot run anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// No worker binary was found.
    #[error("worker_missing: {0}")]
    WorkerMissing(String),
    /// A worker could not confine itself, or could not be started and checked.
    #[error("unsandboxed: {0}")]
    Unsandboxed(String),
}

impl SandboxError {
    /// The short reason code (`worker_missing`, `unsandboxed`).
    pub fn reason(&self) -> &'static str {
        match self {
            SandboxError::WorkerMissing(_) => "worker_missing",
            SandboxError::Unsandboxed(_) => "unsandboxed",
        }
    }
}

/// What one call produced, as the parent sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallResult {
    /// The program returned this value.
    Ok(Value),
    /// The program raised (or returned something not representable): `"<Type>: message"`.
    Raised(String),
    /// The call ran past its limit, inside the interpreter or by the watchdog's kill.
    Timeout,
    /// The worker died during the call (memory ceiling, abort, seccomp kill).
    Crashed(String),
    /// The worker sent something that is not a valid reply; it was discarded.
    Protocol(String),
    /// The call was not run (the batch stopped early).
    NotRun,
}

impl CallResult {
    /// Whether this is a time-limit failure.
    pub fn is_timeout(&self) -> bool {
        match self {
            CallResult::Timeout => true,
            CallResult::Raised(e) => e.starts_with("TimeoutError"),
            _ => false,
        }
    }

    /// The returned value, if the call returned.
    pub fn value(&self) -> Option<&Value> {
        match self {
            CallResult::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// A one-line description of what the program did (its own output or exception), for
    /// feedback.
    pub fn describe(&self) -> String {
        match self {
            CallResult::Ok(v) => format!("returned {}", cut(crate::canonical::encode(v), 400)),
            CallResult::Raised(e) => format!("raised {}", cut(e.clone(), 400)),
            CallResult::Timeout => "ran past its time limit".into(),
            CallResult::Crashed(e) => format!("crashed the worker ({e})"),
            CallResult::Protocol(e) => format!("broke the worker protocol ({e})"),
            CallResult::NotRun => "was not run".into(),
        }
    }
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Limits of one batch of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock limit of each call (the interpreter's own limit; the watchdog kills at
    /// this plus the sandbox's grace).
    pub per_call: Duration,
    /// Heap limit of each call, in bytes.
    pub memory: u64,
    /// Maximum call-stack depth.
    pub recursion: u64,
    /// Wall-clock limit of the whole batch, if any; calls not finished by then are timeouts.
    pub batch: Option<Duration>,
    /// Stop the batch at the first timeout (the rest are [`CallResult::NotRun`]).
    pub stop_on_timeout: bool,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            per_call: Duration::from_secs(1),
            memory: 256 << 20,
            recursion: 200,
            batch: None,
            stop_on_timeout: false,
        }
    }
}

impl CallLimits {
    fn wire(&self) -> Limits {
        Limits {
            max_ms: u64::try_from(self.per_call.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max_memory: self.memory,
            max_recursion: self.recursion,
        }
    }
}

/// How the pool is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The worker binary; else [`WORKER_ENV`]; else next to the current executable.
    pub worker: Option<PathBuf>,
    /// Arguments the worker is started with (a multi-call binary such as `nmk` takes
    /// `sandbox-worker`; the dedicated worker binary takes none).
    pub worker_args: Vec<String>,
    /// Number of warm workers (at least 1; 2 lets the determinism check use two processes
    /// at once).
    pub pool_size: usize,
    /// Time past a call's limit before the watchdog kills the worker.
    pub grace: Duration,
    /// Busy wall time after which a worker is replaced (it must stay under its CPU rlimit).
    pub recycle_after: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            worker: None,
            worker_args: Vec::new(),
            pool_size: 2,
            grace: Duration::from_millis(250),
            recycle_after: Duration::from_secs(60),
        }
    }
}

/// Finds the worker binary: `explicit`, else [`WORKER_ENV`], else next to the current
/// executable (or one directory up, where test binaries live).
pub fn find_worker(explicit: Option<&Path>) -> Result<PathBuf, SandboxError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(SandboxError::WorkerMissing(format!(
                "{} does not exist",
                p.display()
            )))
        };
    }
    if let Some(p) = std::env::var_os(WORKER_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(SandboxError::WorkerMissing(format!(
                "{WORKER_ENV}={} does not exist",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(|e| SandboxError::WorkerMissing(e.to_string()))?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(WORKER_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(SandboxError::WorkerMissing(format!(
        "no {WORKER_NAME} next to {} and {WORKER_ENV} is not set",
        exe.display()
    )))
}

/// How long the parent spins on a non-blocking read before it blocks. A blocked reader is
/// woken by the scheduler, which on an idle virtual machine costs tens of microseconds per
/// round trip; a short spin catches the typical warm reply (a few microseconds) without it.
const SPIN_BEFORE_BLOCKING: Duration = Duration::from_micros(200);

/// The parent's end of a worker's reply channel: each read first polls without blocking for up
/// to [`SPIN_BEFORE_BLOCKING`], then blocks.
struct SpinReader {
    stream: UnixStream,
}

impl SpinReader {
    fn new(stream: UnixStream) -> SpinReader {
        SpinReader { stream }
    }
}

impl std::io::Read for SpinReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stream.set_nonblocking(true).is_ok() {
            let started = Instant::now();
            let polled = loop {
                match self.stream.read(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if started.elapsed() >= SPIN_BEFORE_BLOCKING {
                            break None;
                        }
                        std::hint::spin_loop();
                    }
                    other => break Some(other),
                }
            };
            self.stream.set_nonblocking(false)?;
            if let Some(result) = polled {
                return result;
            }
        }
        self.stream.read(buf)
    }
}

/// What the watchdog and the caller share about one worker.
#[derive(Default)]
struct Watch {
    deadline: Option<Instant>,
    child: Option<Child>,
    fired: bool,
}

struct Conn {
    stdin: BufWriter<UnixStream>,
    stdout: BufReader<SpinReader>,
    busy: Duration,
}

struct Slot {
    conn: Mutex<Option<Conn>>,
    watch: Arc<Mutex<Watch>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool of confined workers.
pub struct Sandbox {
    path: PathBuf,
    config: SandboxConfig,
    slots: Vec<Slot>,
    stop: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    next_id: AtomicU64,
    spawns: AtomicU64,
    spawn_nanos: AtomicU64,
}

impl Sandbox {
    /// Finds the worker, starts `pool_size` warm workers and checks that each is confined.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let path = find_worker(config.worker.as_deref())?;
        let pool = config.pool_size.max(1);
        let slots: Vec<Slot> = (0..pool)
            .map(|_| Slot {
                conn: Mutex::new(None),
                watch: Arc::new(Mutex::new(Watch::default())),
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let watches: Vec<Arc<Mutex<Watch>>> = slots.iter().map(|s| s.watch.clone()).collect();
        let stop2 = stop.clone();
        let watchdog = std::thread::Builder::new()
            .name("nmk-sandbox-watchdog".into())
            .spawn(move || watchdog_loop(&watches, &stop2))
            .map_err(|e| SandboxError::Unsandboxed(format!("no watchdog thread: {e}")))?;
        let sandbox = Sandbox {
            path,
            config,
            slots,
            stop,
            watchdog: Some(watchdog),
            next_id: AtomicU64::new(1),
            spawns: AtomicU64::new(0),
            spawn_nanos: AtomicU64::new(0),
        };
        for slot in &sandbox.slots {
            let conn = sandbox.spawn(slot)?;
            *lock(&slot.conn) = Some(conn);
        }
        Ok(sandbox)
    }

    /// Starts with the default configuration.
    pub fn start() -> Result<Sandbox, SandboxError> {
        Sandbox::new(SandboxConfig::default())
    }

    /// The worker binary in use.
    pub fn worker_path(&self) -> &Path {
        &self.path
    }

    /// Number of workers in the pool.
    pub fn pool_size(&self) -> usize {
        self.slots.len()
    }

    /// Workers spawned so far (the initial pool included).
    pub fn spawns(&self) -> u64 {
        self.spawns.load(Ordering::Relaxed)
    }

    /// Mean time to spawn a worker and receive its hello frame.
    pub fn mean_spawn_time(&self) -> Duration {
        let n = self.spawns().max(1);
        Duration::from_nanos(self.spawn_nanos.load(Ordering::Relaxed) / n)
    }

    /// The process ids of the live workers (for tests: a killed worker is replaced).
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.slots
            .iter()
            .map(|s| lock(&s.watch).child.as_ref().map(Child::id))
            .collect()
    }

    fn spawn(&self, slot: &Slot) -> Result<Conn, SandboxError> {
        let started = Instant::now();
        let channel = |e: std::io::Error| {
            SandboxError::Unsandboxed(format!("cannot create the worker's channel: {e}"))
        };
        // Socket pairs rather than pipes: the parent can switch its end to non-blocking and
        // spin briefly for a reply (see [`SpinReader`]).
        let (request_tx, request_rx) = UnixStream::pair().map_err(channel)?;
        let (reply_tx, reply_rx) = UnixStream::pair().map_err(channel)?;
        let child = Command::new(&self.path)
            .args(&self.config.worker_args)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::from(OwnedFd::from(request_rx)))
            .stdout(Stdio::from(OwnedFd::from(reply_tx)))
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                SandboxError::WorkerMissing(format!("cannot start {}: {e}", self.path.display()))
            })?;
        let pid = child.id();
        let (stdin, stdout) = (request_tx, SpinReader::new(reply_rx));
        {
            let mut w = lock(&slot.watch);
            if let Some(mut old) = w.child.take() {
                let _ = old.kill();
                let _ = old.wait();
            }
            w.child = Some(child);
            w.fired = false;
            w.deadline = Some(started + HELLO_TIMEOUT);
        }
        let mut stdout = BufReader::with_capacity(1 << 16, stdout);
        let hello = protocol::read_frame(&mut stdout);
        lock(&slot.watch).deadline = None;
        let refuse = |why: String| {
            kill_slot(slot);
            Err(SandboxError::Unsandboxed(why))
        };
        let hello = match hello {
            Ok(Some(v)) => match Hello::from_value(&v) {
                Ok(h) => h,
                Err(e) => return refuse(format!("bad hello frame: {e}")),
            },
            Ok(None) => return refuse("worker exited before its hello frame".into()),
            Err(e) => return refuse(format!("bad hello frame: {e}")),
        };
        if !hello.confined {
            return refuse(format!("worker could not confine itself: {}", hello.detail));
        }
        if hello.pid != u64::from(pid) {
            return refuse("worker reported another process id".into());
        }
        self.spawns.fetch_add(1, Ordering::Relaxed);
        self.spawn_nanos.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(Conn {
            stdin: BufWriter::with_capacity(1 << 16, stdin),
            stdout,
            busy: Duration::ZERO,
        })
    }

    /// Calls `entry(*args)` once, on the first worker.
    pub fn call(
        &self,
        code: &str,
        entry: &str,
        args: &[Value],
        limits: &CallLimits,
    ) -> Result<CallResult, SandboxError> {
        let mut out =
            self.run_batch_on(0, code, entry, std::slice::from_ref(&args.to_vec()), limits)?;
        Ok(out.pop().unwrap_or(CallResult::NotRun))
    }

    /// Runs `entry(*args)` for every argument list, in order, on worker `slot` (modulo the
    /// pool size). A worker that dies, overruns or breaks the protocol is replaced and the
    /// batch goes on with the next call.
    pub fn run_batch_on(
        &self,
        slot: usize,
        code: &str,
        entry: &str,
        calls: &[Vec<Value>],
        limits: &CallLimits,
    ) -> Result<Vec<CallResult>, SandboxError> {
        let slot = &self.slots[slot % self.slots.len()];
        let mut conn_guard = lock(&slot.conn);
        let started = Instant::now();
        let batch_deadline = limits.batch.map(|b| started + b);
        let call_budget = limits.per_call + self.config.grace;
        let wire = limits.wire();
        let mut results: Vec<CallResult> = Vec::with_capacity(calls.len());
        while results.len() < calls.len() {
            if batch_deadline.is_some_and(|d| Instant::now() >= d) {
                results.resize(calls.len(), CallResult::Timeout);
                break;
            }
            if conn_guard.is_none() {
                *conn_guard = Some(self.spawn(slot)?);
            }
            let Some(conn) = conn_guard.as_mut() else {
                continue;
            };
            let first = results.len();
            let mut last = (first + MAX_CALLS_PER_REQUEST).min(calls.len());
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let body = loop {
                let request = Request {
                    id,
                    code: code.to_owned(),
                    entry: entry.to_owned(),
                    calls: calls[first..last].to_vec(),
                    limits: wire,
                };
                let body = crate::canonical::encode(&request.to_value());
                if body.len() <= protocol::MAX_FRAME || last - first == 1 {
                    break body;
                }
                last = first + (last - first) / 2;
            };
            if body.len() > protocol::MAX_FRAME {
                results.push(CallResult::Protocol("request over the frame cap".into()));
                continue;
            }
            let deadline = |now: Instant| {
                let d = now + call_budget;
                batch_deadline.map_or(d, |b| d.min(b))
            };
            set_deadline(slot, Some(deadline(Instant::now())));
            let sent = protocol::write_raw_frame(&mut conn.stdin, body.as_bytes())
                .and_then(|()| conn.stdin.flush());
            let mut broken: Option<CallResult> = None;
            if let Err(e) = sent {
                broken = Some(CallResult::Crashed(format!("write failed: {e}")));
            } else {
                for index in 0..(last - first) {
                    match protocol::read_frame(&mut conn.stdout) {
                        Ok(Some(v)) => match Reply::from_value(v) {
                            Ok(r) if r.id == id && r.index == index as u64 => {
                                results.push(match r.outcome {
                                    Outcome::Ok(v) => CallResult::Ok(v),
                                    Outcome::Err(e) => CallResult::Raised(e),
                                });
                                let mut w = lock(&slot.watch);
                                if w.fired {
                                    // Killed just after answering: the answer stands, the
                                    // worker is gone.
                                    broken = Some(CallResult::NotRun);
                                    break;
                                }
                                w.deadline = Some(deadline(Instant::now()));
                            }
                            Ok(_) => {
                                broken = Some(CallResult::Protocol(
                                    "reply with a wrong id or index".into(),
                                ));
                                break;
                            }
                            Err(e) => {
                                broken = Some(CallResult::Protocol(e.to_string()));
                                break;
                            }
                        },
                        Ok(None) => {
                            broken = Some(CallResult::Crashed("worker exited".into()));
                            break;
                        }
                        Err(e) => {
                            broken = Some(CallResult::Crashed(e.to_string()));
                            break;
                        }
                    }
                }
            }
            let fired = {
                let mut w = lock(&slot.watch);
                w.deadline = None;
                std::mem::take(&mut w.fired)
            };
            conn.busy += started.elapsed();
            if let Some(failure) = broken {
                // The worker is discarded whatever went wrong.
                kill_slot(slot);
                *conn_guard = None;
                if failure != CallResult::NotRun {
                    let failure = if fired { CallResult::Timeout } else { failure };
                    let stop = failure.is_timeout() && limits.stop_on_timeout;
                    results.push(failure);
                    if stop {
                        results.resize(calls.len(), CallResult::NotRun);
                    }
                }
            } else if limits.stop_on_timeout && results[first..].iter().any(CallResult::is_timeout)
            {
                // Stop reported by the interpreter itself: cut the batch at the first timeout.
                if let Some(pos) = results[first..].iter().position(CallResult::is_timeout) {
                    results.truncate(first + pos + 1);
                    results.resize(calls.len(), CallResult::NotRun);
                }
            }
        }
        if let Some(conn) = conn_guard.as_ref()
            && conn.busy > self.config.recycle_after
        {
            kill_slot(slot);
            *conn_guard = None;
        }
        Ok(results)
    }

    /// Runs the calls spread over the pool in parallel: contiguous chunks, chunk `j` on worker
    /// `j + rotate`. Results come back in call order.
    pub fn run_parallel(
        &self,
        code: &str,
        entry: &str,
        calls: &[Vec<Value>],
        limits: &CallLimits,
        rotate: usize,
    ) -> Result<Vec<CallResult>, SandboxError> {
        let pool = self.slots.len();
        if pool == 1 || calls.len() < 32 {
            return self.run_batch_on(rotate, code, entry, calls, limits);
        }
        let chunk = calls.len().div_ceil(pool);
        let parts: Vec<Result<Vec<CallResult>, SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = calls
                .chunks(chunk)
                .enumerate()
                .map(|(j, part)| {
                    s.spawn(move || self.run_batch_on(j + rotate, code, entry, part, limits))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SandboxError::Unsandboxed("a batch thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut out = Vec::with_capacity(calls.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    /// Runs every call twice, each time in a different worker process, and returns both runs
    /// (for the determinism check). With one worker, the worker is replaced between the runs.
    pub fn run_twice(
        &self,
        code: &str,
        entry: &str,
        calls: &[Vec<Value>],
        limits: &CallLimits,
    ) -> Result<(Vec<CallResult>, Vec<CallResult>), SandboxError> {
        if self.slots.len() == 1 {
            let a = self.run_batch_on(0, code, entry, calls, limits)?;
            self.replace(0);
            let b = self.run_batch_on(0, code, entry, calls, limits)?;
            return Ok((a, b));
        }
        let half = calls.len() / 2;
        let (h0, h1) = calls.split_at(half);
        let mut job0: Vec<Vec<Value>> = h0.to_vec();
        job0.extend_from_slice(h1);
        let mut job1: Vec<Vec<Value>> = h1.to_vec();
        job1.extend_from_slice(h0);
        let (r0, r1) = std::thread::scope(|s| {
            let a = s.spawn(|| self.run_batch_on(0, code, entry, &job0, limits));
            let b = s.spawn(|| self.run_batch_on(1, code, entry, &job1, limits));
            let join = |h: std::thread::ScopedJoinHandle<'_, _>| {
                h.join().unwrap_or_else(|_| {
                    Err(SandboxError::Unsandboxed("a batch thread panicked".into()))
                })
            };
            (join(a), join(b))
        });
        let (mut r0, mut r1) = (r0?, r1?);
        // r0 = [h0 on w0, h1 on w0]; r1 = [h1 on w1, h0 on w1].
        let r0_h1 = r0.split_off(half);
        let r1_h0 = r1.split_off(h1.len());
        let mut first = r0;
        first.extend(r1);
        let mut second = r1_h0;
        second.extend(r0_h1);
        Ok((first, second))
    }

    /// Kills worker `slot` (for tests and recycling); the next call spawns a fresh one.
    pub fn replace(&self, slot: usize) {
        let slot = &self.slots[slot % self.slots.len()];
        let mut conn = lock(&slot.conn);
        kill_slot(slot);
        *conn = None;
    }
}

fn set_deadline(slot: &Slot, deadline: Option<Instant>) {
    let mut w = lock(&slot.watch);
    w.deadline = deadline;
    w.fired = false;
}

fn kill_slot(slot: &Slot) {
    let mut w = lock(&slot.watch);
    if let Some(mut child) = w.child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    w.deadline = None;
}

fn watchdog_loop(watches: &[Arc<Mutex<Watch>>], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for watch in watches {
            let mut w = lock(watch);
            if w.deadline.is_some_and(|d| now >= d) {
                if let Some(child) = w.child.as_mut() {
                    let _ = child.kill();
                }
                w.fired = true;
                w.deadline = None;
            }
        }
        std::thread::sleep(WATCH_PERIOD);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for slot in &self.slots {
            *lock(&slot.conn) = None;
            kill_slot(slot);
        }
        if let Some(h) = self.watchdog.take() {
            let _ = h.join();
        }
    }
}
