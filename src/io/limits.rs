//! Process limits: the file-descriptor ceiling decides how many legs fit.

/// File descriptors kept back for control connections, the ring, logs.
pub const RESERVED_FDS: u64 = 64;

/// The descriptor limit before and after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at start-up.
    pub before: u64,
    /// Soft limit now in force.
    pub now: u64,
}

impl NofileLimit {
    /// Legs the limit allows (two sockets each).
    pub fn leg_capacity(&self) -> u64 {
        self.now.saturating_sub(RESERVED_FDS) / 2
    }
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit.
pub fn raise_nofile() -> std::io::Result<NofileLimit> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = rl.rlim_cur;
    if rl.rlim_cur < rl.rlim_max {
        let want = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        rl.rlim_cur = rl.rlim_max;
    }
    Ok(NofileLimit {
        before,
        now: rl.rlim_cur,
    })
}
