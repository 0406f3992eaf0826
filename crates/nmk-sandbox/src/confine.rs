//! Self-confinement of the worker process: rlimits, an empty environment, `/` as the working
//! directory, no inherited descriptors past stdin/stdout/stderr, `PR_SET_NO_NEW_PRIVS`, and a
//! seccomp allowlist.
//!
//! The allowlist was measured with `strace -f` on the worker running the hostile corpus: once
//! the filter is in place the interpreter only needs memory management (`brk`, `mmap`,
//! `munmap`, `mremap`, `mprotect`, `madvise`), `futex`, the clock (normally served by the vDSO
//! without a system call), `read` on fd 0, `write` on fds 1 and 2, and the exit calls
//! (`sigaltstack`, `rt_sigprocmask`, `rt_sigreturn` for signal delivery and abort). Every other
//! system call kills the process (`SECCOMP_RET_KILL_PROCESS`), so a program that somehow
//! reached `open`, `socket`, `clone` or `execve` dies instead of succeeding. Calls from another
//! architecture's table (the x32 ABI) are killed too.

/// Limits the worker applies to itself.
#[derive(Debug, Clone, Copy)]
pub struct Rlimits {
    /// RLIMIT_AS, bytes.
    pub address_space: u64,
    /// RLIMIT_CPU, seconds (the parent replaces a worker long before).
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
}

impl Default for Rlimits {
    fn default() -> Self {
        Rlimits {
            address_space: 4 << 30,
            cpu_seconds: 600,
            open_files: 4,
        }
    }
}

/// Why confinement failed; the worker then reports itself unconfined and runs nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// A `setrlimit` call failed.
    #[error("setrlimit({0}) failed: {1}")]
    Rlimit(&'static str, std::io::Error),
    /// `chdir("/")` failed.
    #[error("chdir(/) failed: {0}")]
    Chdir(std::io::Error),
    /// A `prctl` call failed.
    #[error("prctl({0}) failed: {1}")]
    Prctl(&'static str, std::io::Error),
    /// Seccomp filters are not available on this architecture.
    #[error("no seccomp filter for this architecture")]
    Arch,
    /// The filter program is malformed (a jump out of range).
    #[error("seccomp filter assembly failed")]
    Assembly,
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// The system calls allowed without argument checks.
fn allowed_syscalls() -> Vec<u32> {
    let list: &[libc::c_long] = &[
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_futex,
        libc::SYS_clock_gettime,
        libc::SYS_sigaltstack,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_exit,
        libc::SYS_exit_group,
        // Sleeping until a request arrives on fd 0 (see `channel`); polling opens nothing.
        libc::SYS_ppoll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
    ];
    list.iter().filter_map(|&n| u32::try_from(n).ok()).collect()
}

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
/// BPF_LD | BPF_W | BPF_ABS.
const BPF_LD_W_ABS: u16 = 0x20;
/// BPF_JMP | BPF_JEQ | BPF_K.
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LOW: u32 = 16;

#[derive(Clone, Copy)]
enum Target {
    Next,
    Allow,
    Kill,
    Label(usize),
}

enum Insn {
    Load(u32),
    JumpEq(u32, Target, Target),
    Ret(u32),
}

/// Assembles the filter: arch check, then the allowlist, then `read` only on fd 0 and
/// `write` only on fds 1 and 2; everything else is killed.
pub fn build_filter() -> Result<Vec<libc::sock_filter>, ConfineError> {
    let arch = AUDIT_ARCH.ok_or(ConfineError::Arch)?;
    let read = u32::try_from(libc::SYS_read).map_err(|_| ConfineError::Assembly)?;
    let write = u32::try_from(libc::SYS_write).map_err(|_| ConfineError::Assembly)?;
    let mut prog = vec![
        Insn::Load(OFF_ARCH),
        Insn::JumpEq(arch, Target::Next, Target::Kill),
        Insn::Load(OFF_NR),
    ];
    for nr in allowed_syscalls() {
        prog.push(Insn::JumpEq(nr, Target::Allow, Target::Next));
    }
    // Labels are resolved below: 0 = read check, 1 = write check.
    prog.push(Insn::JumpEq(read, Target::Label(0), Target::Next));
    prog.push(Insn::JumpEq(write, Target::Label(1), Target::Next));
    prog.push(Insn::Ret(RET_KILL_PROCESS));
    let read_check = prog.len();
    prog.push(Insn::Load(OFF_ARG0_LOW));
    prog.push(Insn::JumpEq(0, Target::Allow, Target::Kill));
    let write_check = prog.len();
    prog.push(Insn::Load(OFF_ARG0_LOW));
    prog.push(Insn::JumpEq(1, Target::Allow, Target::Next));
    prog.push(Insn::JumpEq(2, Target::Allow, Target::Kill));
    let kill = prog.len();
    prog.push(Insn::Ret(RET_KILL_PROCESS));
    let allow = prog.len();
    prog.push(Insn::Ret(RET_ALLOW));
    let labels = [read_check, write_check];
    let resolve = |at: usize, t: Target| -> Result<u8, ConfineError> {
        let to = match t {
            Target::Next => at + 1,
            Target::Allow => allow,
            Target::Kill => kill,
            Target::Label(l) => *labels.get(l).ok_or(ConfineError::Assembly)?,
        };
        to.checked_sub(at + 1)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(ConfineError::Assembly)
    };
    prog.iter()
        .enumerate()
        .map(|(i, insn)| {
            Ok(match *insn {
                Insn::Load(off) => libc::sock_filter {
                    code: BPF_LD_W_ABS,
                    jt: 0,
                    jf: 0,
                    k: off,
                },
                Insn::JumpEq(k, t, f) => libc::sock_filter {
                    code: BPF_JMP_JEQ_K,
                    jt: resolve(i, t)?,
                    jf: resolve(i, f)?,
                    k,
                },
                Insn::Ret(k) => libc::sock_filter {
                    code: BPF_RET_K,
                    jt: 0,
                    jf: 0,
                    k,
                },
            })
        })
        .collect()
}

/// Sets one rlimit (soft = hard = `value`).
#[allow(unsafe_code)]
fn set_rlimit(
    name: &'static str,
    resource: libc::__rlimit_resource_t,
    value: u64,
) -> Result<(), ConfineError> {
    let lim = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: `setrlimit` reads one valid, initialised `rlimit` through the pointer, which
    // lives for the whole call; it has no other memory effects.
    let rc = unsafe { libc::setrlimit(resource, &lim) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ConfineError::Rlimit(name, std::io::Error::last_os_error()))
    }
}

/// Applies every restriction, in an order that keeps each step possible: rlimits, environment,
/// working directory, descriptors, `no_new_privs`, then the seccomp filter last. Must be called
/// while the process has a single thread.
#[allow(unsafe_code)]
pub fn confine(limits: &Rlimits) -> Result<String, ConfineError> {
    set_rlimit("AS", libc::RLIMIT_AS, limits.address_space)?;
    set_rlimit("CPU", libc::RLIMIT_CPU, limits.cpu_seconds)?;
    set_rlimit("NOFILE", libc::RLIMIT_NOFILE, limits.open_files)?;
    set_rlimit("FSIZE", libc::RLIMIT_FSIZE, 0)?;
    set_rlimit("NPROC", libc::RLIMIT_NPROC, 0)?;
    set_rlimit("CORE", libc::RLIMIT_CORE, 0)?;
    set_rlimit("MEMLOCK", libc::RLIMIT_MEMLOCK, 0)?;
    // SAFETY: the worker is single-threaded here (confine runs first thing in main), so no
    // other thread can read the environment while `clearenv` frees it.
    unsafe {
        libc::clearenv();
    }
    std::env::set_current_dir("/").map_err(ConfineError::Chdir)?;
    // SAFETY: `close_range` takes plain integers and only closes descriptors >= 3, none of
    // which the worker uses (its pipes are 0, 1, 2).
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    // SAFETY: prctl with integer arguments only; it changes process flags, no memory.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(ConfineError::Prctl(
            "PR_SET_DUMPABLE",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ConfineError::Prctl(
            "PR_SET_NO_NEW_PRIVS",
            std::io::Error::last_os_error(),
        ));
    }
    let mut filter = build_filter()?;
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| ConfineError::Assembly)?,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, a live, initialised array of `prog.len` BPF
    // instructions; the kernel copies it during the call and keeps no pointer to it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(ConfineError::Prctl(
            "PR_SET_SECCOMP",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(format!(
        "rlimits AS={} CPU={}s NOFILE={} FSIZE=0 NPROC=0 CORE=0; env cleared; cwd /; no_new_privs; seccomp allowlist of {} instructions (kill on anything else)",
        limits.address_space,
        limits.cpu_seconds,
        limits.open_files,
        filter.len()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_filter_assembles_with_forward_jumps_that_land_on_returns() {
        let f = build_filter().unwrap();
        let last = f.len() - 1;
        assert_eq!(f[last].code, BPF_RET_K);
        assert_eq!(f[last].k, RET_ALLOW);
        for (i, insn) in f.iter().enumerate() {
            if insn.code == BPF_JMP_JEQ_K {
                assert!(i + 1 + usize::from(insn.jt) <= last);
                assert!(i + 1 + usize::from(insn.jf) <= last);
            }
        }
        // Nothing besides read/write and the list is allowed: open/openat/socket/clone never
        // appear as compared constants.
        let compared: Vec<u32> = f
            .iter()
            .filter(|i| i.code == BPF_JMP_JEQ_K)
            .map(|i| i.k)
            .collect();
        for forbidden in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_clone,
            libc::SYS_execve,
            libc::SYS_getrandom,
        ] {
            assert!(!compared.contains(&(forbidden as u32)), "{forbidden}");
        }
    }
}
