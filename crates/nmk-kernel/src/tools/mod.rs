//! Syscall-tier tools the kernel registers itself: today the sandboxed case runner
//! ([`sandbox_exec`]), which is also the commit trap's code checker.

pub mod sandbox_exec;

pub use sandbox_exec::{SANDBOX_EXEC_OP, SandboxCodeChecker, SandboxExec, register_sandbox_exec};
