//! # nmk-sandbox — the confined worker
//!
//! The only crate that links the Python-subset interpreter (`monty` 0.0.23); the trusted crates
//! never do. Its binary, `nmk-sandbox-worker`, confines itself ([`confine`]) and then serves
//! [`nmk_det::sandbox::protocol`] requests on stdin/stdout ([`serve`]): it compiles the program,
//! runs each call on a fresh interpreter heap under a wall-clock, memory and recursion limit,
//! denies every OS call, import and external function (the interpreter's non-iterative mode
//! turns each into an uncatchable error), discards everything the program prints, and writes
//! one reply frame per call with the raw returned value ([`convert`]). It never computes or
//! reports a verdict; the parent (`nmk_det::sandbox`, `nmk_det::gate`) judges.

pub mod channel;
pub mod confine;
pub mod convert;

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monty::MontyRun;
use monty_types::{CompileOptions, MontyObject, PrintWriter, ResourceLimits, ResourceTracker};
use nmk_det::Value;
use nmk_det::sandbox::protocol::{self, Hello, MAX_FRAME, Outcome, Reply, Request, cut_error};

/// The input name the call's argument tuple is bound to.
const ARGS_NAME: &str = "__nmk_args__";

/// Compiled programs kept per worker.
const CACHE_SIZE: usize = 16;

/// Replies are written in groups: a flush per reply costs a system call and a wake-up of the
/// parent per call, most of a fast call's price. A group is flushed after this many replies, ...
const FLUSH_EVERY: usize = 64;

/// ... or once this much time has passed since the last flush, so the parent's per-call watchdog
/// (the call's limit plus a grace of hundreds of milliseconds) always sees progress in time.
const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// The largest per-call memory limit a request may ask for.
const MAX_MEMORY: u64 = 2 << 30;

/// Exit codes of the worker.
pub mod exit {
    /// Confinement failed (after a hello frame saying so).
    pub const UNCONFINED: i32 = 3;
    /// A request frame could not be read or parsed.
    pub const BAD_REQUEST: i32 = 4;
    /// Writing a reply failed.
    pub const WRITE_FAILED: i32 = 5;
}

/// Whether `name` is a plain Python identifier (ASCII).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

type Compiled = Result<Rc<MontyRun>, String>;

/// The request loop. Returns the process exit code: 0 when the parent closes stdin.
pub fn serve(input: &mut impl Read, output: &mut impl Write) -> i32 {
    let mut cache: BTreeMap<(String, String), Compiled> = BTreeMap::new();
    loop {
        let request = match protocol::read_frame(input) {
            Ok(None) => return 0,
            Ok(Some(v)) => match Request::from_value(&v) {
                Ok(r) => r,
                Err(_) => return exit::BAD_REQUEST,
            },
            Err(_) => return exit::BAD_REQUEST,
        };
        let key = (request.code.clone(), request.entry.clone());
        if !cache.contains_key(&key) && cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        let program = cache
            .entry(key)
            .or_insert_with(|| compile(&request.code, &request.entry))
            .clone();
        let memory = request.limits.max_memory.min(MAX_MEMORY);
        let _ = monty_alloc::set_limit(usize::try_from(memory).ok(), false);
        let mut pending = 0usize;
        let mut last_flush = Instant::now();
        for (index, args) in request.calls.iter().enumerate() {
            let outcome = match &program {
                Ok(program) => run_call(program, args, &request),
                Err(e) => Outcome::Err(e.clone()),
            };
            let mut reply = Reply {
                id: request.id,
                index: index as u64,
                outcome,
            };
            let mut body = nmk_det::canonical::encode(&reply.to_value());
            if body.len() > MAX_FRAME {
                reply.outcome =
                    Outcome::Err("OutputTooLarge: the result is over the frame cap".into());
                body = nmk_det::canonical::encode(&reply.to_value());
            }
            if protocol::write_raw_frame(output, body.as_bytes()).is_err() {
                return exit::WRITE_FAILED;
            }
            pending += 1;
            let last = index + 1 == request.calls.len();
            if last || pending >= FLUSH_EVERY || last_flush.elapsed() >= FLUSH_AFTER {
                if output.flush().is_err() {
                    return exit::WRITE_FAILED;
                }
                pending = 0;
                last_flush = Instant::now();
            }
        }
    }
}

fn compile(code: &str, entry: &str) -> Compiled {
    if !is_identifier(entry) {
        return Err("ValueError: the entry is not an identifier".into());
    }
    let text = format!("{code}\n\n{entry}(*{ARGS_NAME})\n");
    MontyRun::new(
        text,
        "candidate.py",
        vec![ARGS_NAME.to_owned()],
        CompileOptions::default(),
    )
    .map(Rc::new)
    .map_err(|e| cut_error(e.summary()))
}

fn run_call(program: &MontyRun, args: &[Value], request: &Request) -> Outcome {
    let args = match args
        .iter()
        .map(convert::to_monty)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(a) => a,
        Err(e) => return Outcome::Err(format!("ValueError: {e}")),
    };
    let mut limits = ResourceLimits::default();
    limits.max_duration = Some(Duration::from_millis(request.limits.max_ms.max(1)));
    limits.max_memory = usize::try_from(request.limits.max_memory.min(MAX_MEMORY)).ok();
    limits.max_recursion_depth = usize::try_from(request.limits.max_recursion)
        .unwrap_or(usize::MAX)
        .clamp(1, 10_000);
    limits.max_suspensions = 0;
    match program.run(
        vec![MontyObject::Tuple(args)],
        ResourceTracker::new(limits),
        PrintWriter::Disabled,
    ) {
        Ok(result) => match convert::from_monty(&result) {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(cut_error(e)),
        },
        Err(e) => Outcome::Err(cut_error(e.summary())),
    }
}

/// The worker's `main`: confine, say hello, serve. `probe` (from argv, never sent by the
/// parent) runs one forbidden action after confinement, for the confinement tests.
pub fn worker_main(probe: Option<&str>) -> i32 {
    let pid = u64::from(std::process::id());
    warm_up();
    channel::make_stdin_nonblocking();
    let confined = confine::confine(&confine::Rlimits::default());
    let stdin = std::io::stdin();
    let mut input = channel::SpinStdin::new(stdin.lock());
    let stdout = std::io::stdout();
    let mut output = BufWriter::with_capacity(1 << 16, stdout.lock());
    let hello = Hello {
        confined: confined.is_ok(),
        detail: match &confined {
            Ok(d) => d.clone(),
            Err(e) => e.to_string(),
        },
        pid,
    };
    if protocol::write_frame(&mut output, &hello.to_value())
        .and_then(|()| output.flush())
        .is_err()
    {
        return exit::WRITE_FAILED;
    }
    if confined.is_err() {
        return exit::UNCONFINED;
    }
    if let Some(what) = probe {
        return run_probe(what);
    }
    serve(&mut input, &mut output)
}

/// Runs one program that touches the interpreter's hashed containers, regular expressions,
/// JSON, big integers and formatting before confinement, so one-time initialisation (hash
/// seeds drawn with `getrandom`, lazily mapped tables) happens while those system calls are
/// still allowed. The seeds it draws never reach a result: the determinism check runs every
/// instance in two worker processes and refuses a program whose outputs differ.
fn warm_up() {
    let code = "import re\nimport json\ndef w(n):\n    d = {str(i): i for i in range(n)}\n    s = set(d)\n    m = re.match(r'(\\d+)', '123abc')\n    j = json.loads(json.dumps({'a': [1, 2.5, None]}))\n    return (len(d), len(s), m.group(1), j, 2 ** 200, f'{1.5:.3f}', sorted(s)[0])\n";
    if let Ok(p) = compile(code, "w") {
        let _ = p.run(
            vec![MontyObject::Tuple(vec![MontyObject::Int(64)])],
            ResourceTracker::new(ResourceLimits::default()),
            PrintWriter::Disabled,
        );
    }
    let _ = std::collections::hash_map::RandomState::new();
}

/// Attempts one forbidden action; returning at all means it was not stopped.
fn run_probe(what: &str) -> i32 {
    let escaped = match what {
        "open" => std::fs::File::open("/etc/passwd").is_ok(),
        "spawn" => std::process::Command::new("/bin/true").status().is_ok(),
        "socket" => std::net::TcpStream::connect("127.0.0.1:9").is_ok(),
        "write-file" => std::fs::write("/tmp/nmk-sandbox-probe", b"x").is_ok(),
        _ => false,
    };
    // Reaching here at all (not killed) is the failure the tests look for.
    let _ = writeln!(
        std::io::stderr(),
        "probe {what} not killed (escaped={escaped})"
    );
    0
}
