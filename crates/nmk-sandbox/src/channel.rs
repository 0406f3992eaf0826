//! The worker's request channel: standard input read with a short spin before blocking.
//!
//! A worker blocked in `read` is woken by the scheduler when a request arrives, which on an idle
//! virtual machine costs tens of microseconds — most of a warm call. So fd 0 is switched to
//! non-blocking before confinement, and [`SpinStdin`] polls it for up to [`SPIN`] before it
//! sleeps in `poll` (the only reason `poll`/`ppoll` are on the seccomp allowlist). If the switch
//! fails, reads simply block as before.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// How long a read spins before it sleeps.
pub const SPIN: Duration = Duration::from_micros(200);

/// Makes fd 0 non-blocking. Call before confinement (`fcntl` is not allowed after it).
#[allow(unsafe_code)]
pub fn make_stdin_nonblocking() -> bool {
    // SAFETY: fcntl on fd 0 with F_GETFL/F_SETFL reads and sets that descriptor's status flags
    // only; no memory is passed.
    unsafe {
        let flags = libc::fcntl(0, libc::F_GETFL);
        flags >= 0 && libc::fcntl(0, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    }
}

/// Sleeps until fd 0 is readable (or hung up).
#[allow(unsafe_code)]
fn wait_readable() -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `fd` is one valid, exclusively borrowed pollfd and the count passed is 1.
        let rc = unsafe { libc::poll(&mut fd, 1, -1) };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Standard input that spins for [`SPIN`] on an empty non-blocking fd 0, then sleeps in `poll`.
pub struct SpinStdin<R> {
    inner: R,
}

impl<R: Read> SpinStdin<R> {
    /// Wraps a reader of fd 0.
    pub fn new(inner: R) -> SpinStdin<R> {
        SpinStdin { inner }
    }
}

impl<R: Read> Read for SpinStdin<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = Instant::now();
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() < SPIN {
                        std::hint::spin_loop();
                    } else {
                        wait_readable()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns WouldBlock a few times, then data, then end of input.
    struct Flaky {
        busy: usize,
        data: &'static [u8],
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.busy > 0 {
                self.busy -= 1;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.data.len().min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn would_block_is_retried_until_data_and_end_of_input_pass_through() {
        let mut r = SpinStdin::new(Flaky {
            busy: 3,
            data: b"abc",
        });
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
    }
}
