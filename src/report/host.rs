//! Facts about the machine a run measured from, recorded next to the numbers so a result can be
//! judged and reproduced: CPUs online and allowed, the clocksource (a non-TSC clocksource can make
//! every timestamp a real syscall), kernel release, architecture and OS.
//!
//! Read once, outside the measured window. Every probe is best effort: a fact that cannot be read
//! becomes `None` (or falls back to a documented value); collecting never fails and never panics.

use std::path::Path;

/// Where Linux exposes the clocksource that backs `clock_gettime`.
const CLOCKSOURCE_PATH: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

/// The machine a run measured from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// Logical CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`).
    pub cpus_online: usize,
    /// CPUs this process may run on (`sched_getaffinity` of the process's main thread; cpusets
    /// are reflected, CPU quotas are not). Falls back to `cpus_online` where unavailable.
    pub cpus_allowed: usize,
    /// Current clocksource, e.g. "tsc", "kvm-clock", "hpet" (Linux only).
    pub clocksource: Option<String>,
    /// Kernel release (`uname -r`).
    pub kernel: Option<String>,
    /// CPU architecture the binary was built for, e.g. "x86_64".
    pub arch: &'static str,
    /// Operating system the binary was built for, e.g. "linux".
    pub os: &'static str,
}

impl HostFacts {
    /// Probe the running host. Call it from the main thread (any thread works, but the affinity
    /// is read for the process's main thread, so pinning workers first does not shrink it).
    pub fn collect() -> HostFacts {
        let cpus_online = cpus_online();
        HostFacts {
            cpus_online,
            cpus_allowed: cpus_allowed().unwrap_or(cpus_online),
            clocksource: read_trimmed(Path::new(CLOCKSOURCE_PATH)),
            kernel: kernel_release(),
            arch: std::env::consts::ARCH,
            os: std::env::consts::OS,
        }
    }
}

/// Online CPUs; `available_parallelism` (then 1) when sysconf cannot say.
fn cpus_online() -> usize {
    // SAFETY: sysconf takes an integer name and has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// CPUs in the main thread's affinity mask; `None` when it cannot be read (e.g. more than
/// `CPU_SETSIZE` CPUs, where the fixed-size `cpu_set_t` is too small).
#[cfg(target_os = "linux")]
fn cpus_allowed() -> Option<usize> {
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is valid; sched_getaffinity
    // writes at most `size_of::<cpu_set_t>()` bytes into it. getpid() names the main thread, so a
    // worker that already pinned itself does not report a one-CPU mask (core_affinity_rs#3).
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(
            libc::getpid(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &mut set,
        ) != 0
        {
            return None;
        }
        libc::CPU_COUNT(&set)
    };
    usize::try_from(count).ok().filter(|&n| n > 0)
}

#[cfg(not(target_os = "linux"))]
fn cpus_allowed() -> Option<usize> {
    None
}

/// `uname -r`.
fn kernel_release() -> Option<String> {
    // SAFETY: utsname is plain C char arrays; all-zero is valid and uname fills it in.
    let u = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        u
    };
    // Copy up to the NUL without trusting that one exists (no CStr::from_ptr).
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    non_empty(String::from_utf8_lossy(&bytes).trim())
}

/// A small sysfs file's first line, trimmed; `None` if missing, unreadable or empty.
fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    non_empty(s.lines().next().unwrap_or("").trim())
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_reads_this_machine() {
        let h = HostFacts::collect();
        assert!(h.cpus_online >= 1);
        assert!(h.cpus_allowed >= 1);
        assert_eq!(h.arch, std::env::consts::ARCH);
        assert_eq!(h.os, std::env::consts::OS);
        if cfg!(target_os = "linux") {
            let k = h.kernel.expect("uname works on Linux");
            assert!(k.chars().next().is_some_and(|c| c.is_ascii_digit()), "{k}");
            if Path::new(CLOCKSOURCE_PATH).exists() {
                let cs = h.clocksource.expect("readable clocksource");
                assert!(!cs.contains('\n') && !cs.is_empty());
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn allowed_matches_std_affinity_view() {
        // available_parallelism = min(affinity, cgroup quota), so it can never exceed the mask.
        let allowed = cpus_allowed().expect("sched_getaffinity works");
        let par = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(par <= allowed, "parallelism {par} > allowed {allowed}");
    }

    #[test]
    fn missing_file_is_none() {
        assert_eq!(read_trimmed(Path::new("/nonexistent/connbench/x")), None);
    }
}
