//! [`Threads`]: how many threads a kernel call may use, backed by a small persistent pool.
//!
//! `Threads::new(n)` starts `n − 1` parked workers once; [`Threads::run`] hands every worker one
//! part index of a job (the calling thread runs part 0) and returns when all parts are done.
//! Workers spin briefly after a job (the next matvec usually follows within microseconds), then
//! sleep on a condition variable, so an idle pool costs nothing. Jobs split work only by
//! output elements, so results never depend on the thread count.
//!
//! The one `unsafe` here erases the lifetime of the borrowed job closure so that long-lived
//! workers can call it; `run` does not return (even when a part panics) before every worker has
//! finished with it.
#![allow(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most threads a [`Threads`] may hold.
pub const MAX_THREADS: usize = 64;

type JobFn = dyn Fn(usize) + Sync;

#[derive(Clone, Copy)]
struct Job {
    f: *const JobFn,
    parts: usize,
}

// SAFETY: the pointer is only dereferenced by workers while `run` keeps the closure alive and
// blocks; the closure is `Sync`, so calling it from another thread through `&` is allowed.
unsafe impl Send for Job {}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Shared {
    epoch: AtomicUsize,
    job: Mutex<Option<Job>>,
    pending: AtomicUsize,
    sleepers: AtomicUsize,
    wake_lock: Mutex<()>,
    wake: Condvar,
    main_waiting: AtomicBool,
    done_lock: Mutex<()>,
    done: Condvar,
    shutdown: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    spin: Duration,
}

struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    dispatch: Mutex<()>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = lock(&self.shared.wake_lock);
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A thread budget for kernel calls: 1 (run inline) or `n` (the caller plus `n − 1` pooled
/// workers). Cloning shares the pool.
#[derive(Clone)]
pub struct Threads {
    n: usize,
    pool: Option<Arc<Pool>>,
}

impl fmt::Debug for Threads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threads").field("n", &self.n).finish()
    }
}

impl Default for Threads {
    fn default() -> Self {
        Threads::single()
    }
}

impl Threads {
    /// One thread: every call runs inline on the caller.
    pub fn single() -> Threads {
        Threads { n: 1, pool: None }
    }

    /// `n` threads (clamped to `1..=MAX_THREADS`), workers spinning 100 µs before sleeping.
    pub fn new(n: usize) -> Threads {
        Threads::with_spin(n, Duration::from_micros(100))
    }

    /// `n` threads whose idle workers spin for `spin` before parking.
    pub fn with_spin(n: usize, spin: Duration) -> Threads {
        let n = n.clamp(1, MAX_THREADS);
        if n == 1 {
            return Threads::single();
        }
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: Mutex::new(None),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
            main_waiting: AtomicBool::new(false),
            done_lock: Mutex::new(()),
            done: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
            spin,
        });
        let mut handles = Vec::with_capacity(n - 1);
        for w in 0..n - 1 {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("nmk-quant-{}", w + 1))
                .spawn(move || worker(&s, w + 1));
            match spawned {
                Ok(h) => handles.push(h),
                Err(_) => break,
            }
        }
        let got = handles.len() + 1;
        if got == 1 {
            return Threads::single();
        }
        Threads {
            n: got,
            pool: Some(Arc::new(Pool {
                shared,
                handles,
                dispatch: Mutex::new(()),
            })),
        }
    }

    /// As many threads as the OS reports available (at least 1).
    pub fn available() -> Threads {
        Threads::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The number of threads (parts) a job is split into.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Runs `f(part)` for every `part` in `0..self.count()`, in parallel, and returns when all
    /// are done. Part 0 runs on the caller. If the pool is busy (another thread is inside `run`
    /// on a clone of this value), all parts run inline on the caller, one after another; a
    /// job whose parts are independent gives the same result either way.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        let Some(pool) = &self.pool else {
            for p in 0..self.n {
                f(p);
            }
            return;
        };
        let Ok(_dispatch) = pool.dispatch.try_lock() else {
            for p in 0..self.n {
                f(p);
            }
            return;
        };
        let sh = &*pool.shared;
        // SAFETY: only the lifetime bound of the trait object changes (same layout). The pointer
        // is published to the workers below and the `Wait` guard blocks (also while unwinding)
        // until every worker has finished calling it and the slot is cleared, so it is never
        // used after `f`'s borrow ends.
        let ptr: *const JobFn =
            unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const JobFn>(f) };
        *lock(&sh.job) = Some(Job {
            f: ptr,
            parts: self.n,
        });
        sh.pending.store(pool.handles.len(), Ordering::SeqCst);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&sh.wake_lock);
            sh.wake.notify_all();
        }
        let wait = Wait(sh);
        f(0);
        drop(wait);
        if let Some(p) = lock(&sh.panic).take() {
            resume_unwind(p);
        }
    }

    /// The half-open range of `0..n` that part `part` of `self.count()` handles, with part
    /// boundaries rounded to multiples of `align` (the last part takes the remainder).
    pub fn split(&self, n: usize, part: usize, align: usize) -> std::ops::Range<usize> {
        split_range(n, self.n, part, align)
    }
}

/// Splits `0..n` into `parts` contiguous ranges aligned to `align`; returns range `part`.
pub(crate) fn split_range(
    n: usize,
    parts: usize,
    part: usize,
    align: usize,
) -> std::ops::Range<usize> {
    let parts = parts.max(1);
    let align = align.max(1);
    let units = n.div_ceil(align);
    let per = units / parts;
    let extra = units % parts;
    let start_u = part * per + part.min(extra);
    let end_u = start_u + per + usize::from(part < extra);
    (start_u * align).min(n)..(end_u * align).min(n)
}

struct Wait<'a>(&'a Shared);

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let sh = self.0;
        let start = Instant::now();
        let mut spins = 0u32;
        while sh.pending.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > sh.spin {
                sh.main_waiting.store(true, Ordering::SeqCst);
                let mut g = lock(&sh.done_lock);
                while sh.pending.load(Ordering::SeqCst) != 0 {
                    g = sh.done.wait(g).unwrap_or_else(PoisonError::into_inner);
                }
                drop(g);
                sh.main_waiting.store(false, Ordering::SeqCst);
                break;
            }
            std::hint::spin_loop();
        }
        *lock(&sh.job) = None;
    }
}

fn worker(sh: &Shared, part: usize) {
    let mut seen = 0usize;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if sh.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = sh.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && start.elapsed() > sh.spin {
                let mut g = lock(&sh.wake_lock);
                sh.sleepers.fetch_add(1, Ordering::SeqCst);
                while sh.epoch.load(Ordering::SeqCst) == seen && !sh.shutdown.load(Ordering::SeqCst)
                {
                    g = sh.wake.wait(g).unwrap_or_else(PoisonError::into_inner);
                }
                sh.sleepers.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            std::hint::spin_loop();
        }
        let job = *lock(&sh.job);
        if let Some(job) = job
            && part < job.parts
        {
            // SAFETY: `run` published this pointer, bumped the epoch and is blocked in `Wait`
            // until `pending` reaches zero, which happens only after this call returns.
            let f: &JobFn = unsafe { &*job.f };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(part))) {
                *lock(&sh.panic) = Some(p);
            }
        }
        if sh.pending.fetch_sub(1, Ordering::SeqCst) == 1 && sh.main_waiting.load(Ordering::SeqCst)
        {
            let _g = lock(&sh.done_lock);
            sh.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once() {
        for n in [0usize, 1, 7, 64, 100, 577] {
            for parts in 1..5 {
                for align in [1usize, 4, 16] {
                    let mut next = 0;
                    for p in 0..parts {
                        let r = split_range(n, parts, p, align);
                        assert_eq!(r.start, next);
                        next = r.end;
                    }
                    assert_eq!(next, n);
                }
            }
        }
    }

    #[test]
    fn run_calls_every_part_once() {
        let t = Threads::new(3);
        for _ in 0..1000 {
            let hits: Vec<AtomicUsize> = (0..t.count()).map(|_| AtomicUsize::new(0)).collect();
            t.run(&|p| {
                hits[p].fetch_add(1, Ordering::SeqCst);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
        }
    }
}
