//! `nmk-sandbox-worker`: the confined process that runs model-written programs for the
//! trusted parent (`nmk_det::sandbox`). See the `nmk_sandbox` crate docs.

/// Counts every allocation so the interpreter's memory limit holds (process-wide).
#[global_allocator]
static ALLOCATOR: monty_alloc::LimitedAllocator = monty_alloc::LimitedAllocator;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let probe = match args.as_slice() {
        [_, flag, what] if flag == "--probe" => Some(what.as_str()),
        _ => None,
    };
    std::process::exit(nmk_sandbox::worker_main(probe));
}
