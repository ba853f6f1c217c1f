//! Thin wrappers over the few OS facilities connbench needs outside mio: the file-descriptor
//! limit, per-thread CPU time, peak RSS, Ctrl-C, and whether stderr is a terminal.
//!
//! Rules:
//! 1. Nothing here is called on the hot path (per request); workers read their CPU time once,
//!    at the end.
//! 2. The SIGINT handler only stores to an atomic (async-signal-safe); the coordinator polls it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Install a SIGINT (and SIGTERM) handler that makes [`interrupted`] return true. A second
/// Ctrl-C still ends the run the same way: the report of what was measured is always written.
pub fn install_interrupt_handler() {
    // SAFETY: the handler only performs an atomic store, which is async-signal-safe; the
    // sigaction struct is fully initialised before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// True once Ctrl-C (SIGINT) or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

/// User and system CPU time of the calling thread.
pub fn thread_cpu_time() -> (Duration, Duration) {
    rusage(libc::RUSAGE_THREAD)
}

/// User and system CPU time of the whole process.
pub fn process_cpu_time() -> (Duration, Duration) {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut ru) != 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Peak resident set size of the process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: as above.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0;
        }
        ru.ru_maxrss as u64 * 1024
    }
}

/// True when stderr is a terminal (the live progress line is drawn only then).
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// The logical CPUs this process may run on, in OS numbering. Call before pinning any thread:
/// afterwards the calling thread's own mask would be reported (core_affinity_rs#3).
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Pin the calling thread to one CPU. Returns false when the OS refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limit_is_raised_to_at_least_the_old_soft_limit() {
        let mut before: libc::rlimit = unsafe { std::mem::zeroed() };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) };
        let now = raise_fd_limit();
        // An unprivileged process may always raise its soft limit to the hard one.
        assert_eq!(now, before.rlim_max);
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let (u0, s0) = thread_cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (u1, s1) = thread_cpu_time();
        assert!(u1 + s1 > u0 + s0);
    }

    #[test]
    fn allowed_cpus_is_not_empty_and_rss_is_known() {
        assert!(!allowed_cpus().is_empty());
        assert!(peak_rss_bytes() > 0);
    }
}
