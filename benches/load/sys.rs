//! Clocks, CPU pinning, resource limits and `/proc` readings.

use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM; every loop checks it and winds down cleanly.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM stop the run (children are still killed and files removed).
pub fn install_stop_handler() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Whether a stop was requested.
pub fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; these clock ids always exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in ns.
#[inline]
pub fn mono_ns() -> u64 {
    clock(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in ns (the clock of SO_TIMESTAMPNS).
#[inline]
pub fn real_ns() -> u64 {
    clock(libc::CLOCK_REALTIME)
}

/// CPU time of this whole process in ns.
pub fn process_cpu_ns() -> u64 {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns`.
pub fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; a signal interruption just returns early, which the
    // caller tolerates (it re-reads the clock).
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Asks for exact timer wake-ups (the default 50 µs slack would blur pacing).
pub fn set_min_timer_slack() {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Pins the calling thread (pid 0) or process `pid` to one CPU.
pub fn pin_to_cpu(pid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How the engine and the generator are scheduled against other work on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// SCHED_FIFO at this priority: nothing in the normal class delays a wake-up.
    Fifo(i32),
    /// SCHED_OTHER at this nice value.
    Nice(i32),
    /// Leave it alone.
    Normal,
}

/// Applies `p` to the calling thread (threads it creates later inherit it).
/// Only raw syscalls, so it is safe between fork and exec.
pub fn set_priority(p: Priority) -> io::Result<()> {
    // SAFETY: plain syscalls with a valid sched_param.
    let rc = unsafe {
        match p {
            Priority::Fifo(prio) => {
                let param = libc::sched_param {
                    sched_priority: prio,
                };
                libc::sched_setscheduler(0, libc::SCHED_FIFO, &param)
            }
            Priority::Nice(n) => libc::setpriority(libc::PRIO_PROCESS, 0, n),
            Priority::Normal => 0,
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}

/// Clock ticks per second of `/proc/*/stat` and `/proc/stat`.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// On-CPU ns of all threads of `pid` (sum of the first field of each task's schedstat).
pub fn task_cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Voluntary context switches of all threads of `pid` (each is a sleep, so about one
/// wake-up each).
pub fn task_wakeups(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// utime + stime of `pid` (all threads, including exited ones) in clock ticks.
pub fn stat_ticks(pid: u32) -> u64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// A `/proc/<pid>/status` field in KiB (e.g. "VmRSS").
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    s.lines()
        .find_map(|l| {
            let v = l.strip_prefix(field)?.strip_prefix(':')?;
            v.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// One CPU's counters from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreTicks {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// Time the hypervisor ran something else on this vCPU.
    pub steal: u64,
    /// idle + iowait.
    pub idle: u64,
}

/// Reads `cpu<N>` from `/proc/stat`.
pub fn core_ticks(cpu: usize) -> CoreTicks {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return CoreTicks::default();
    };
    let name = format!("cpu{cpu}");
    for l in s.lines() {
        let mut it = l.split_whitespace();
        if it.next() != Some(name.as_str()) {
            continue;
        }
        let v: Vec<u64> = it.map(|x| x.parse().unwrap_or(0)).collect();
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        return CoreTicks {
            busy: g(0) + g(1) + g(2) + g(5) + g(6),
            idle: g(3) + g(4),
            steal: g(7),
        };
    }
    CoreTicks::default()
}

/// Selected UDP counters from `/proc/net/snmp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpCounters {
    /// Datagrams to a port nobody listens on (or a connected socket's foreign source).
    pub no_ports: u64,
    /// All receive errors.
    pub in_errors: u64,
    /// Datagrams dropped because a receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Sends that failed for lack of send buffer.
    pub sndbuf_errors: u64,
}

/// Reads the `Udp:` lines of `/proc/net/snmp`.
pub fn udp_counters() -> UdpCounters {
    let Ok(s) = fs::read_to_string("/proc/net/snmp") else {
        return UdpCounters::default();
    };
    let mut lines = s.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return UdpCounters::default();
    };
    let get = |key: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    UdpCounters {
        no_ports: get("NoPorts"),
        in_errors: get("InErrors"),
        rcvbuf_errors: get("RcvbufErrors"),
        sndbuf_errors: get("SndbufErrors"),
    }
}

impl UdpCounters {
    /// Counter increases since `earlier`.
    pub fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            no_ports: self.no_ports.saturating_sub(earlier.no_ports),
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

/// Sum of the per-socket `drops` column of `/proc/net/udp` for 127.0.0.1 sockets whose
/// local port satisfies `wanted`.
pub fn socket_drops(wanted: impl Fn(u16) -> bool) -> u64 {
    let Ok(s) = fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.split(':').nth(1)?, 16).ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            wanted(port).then_some(drops)
        })
        .sum()
}

/// Raises RLIMIT_NOFILE (soft and, if allowed, hard) to at least `want`, within
/// fs.nr_open; returns the new soft limit. Children inherit it.
pub fn raise_fd_hard_limit(want: u64) -> u64 {
    let current = raise_fd_limit();
    if current >= want {
        return current;
    }
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = want.min(nr_open);
    let r = libc::rlimit {
        rlim_cur: target,
        rlim_max: target,
    };
    // SAFETY: setrlimit with a valid struct; failure (no CAP_SYS_RESOURCE) leaves
    // the limits as they were.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    raise_fd_limit()
}
