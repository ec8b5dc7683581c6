//! The engine under test as a child process: spawned pinned to its core, killed on drop.

use crate::sys;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A running engine child; dropping it kills the process and removes its files.
pub struct EngineProcess {
    /// The child (None once reaped).
    child: Option<Child>,
    /// Files to remove when the engine is gone (socket, log).
    cleanup: Vec<PathBuf>,
}

/// Adds CPU pinning, a scheduling priority and "die with the parent" to a command.
pub fn pin_and_tie(cmd: &mut Command, cpu: usize, priority: sys::Priority) {
    // SAFETY: the closure runs between fork and exec and only makes raw syscalls
    // (sched_setaffinity, sched_setscheduler/setpriority, prctl), which are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            sys::pin_to_cpu(0, cpu)?;
            sys::set_priority(priority)?;
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl EngineProcess {
    /// Wraps a spawned child.
    pub fn new(child: Child, cleanup: Vec<PathBuf>) -> Self {
        EngineProcess {
            child: Some(child),
            cleanup,
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The child itself, e.g. to take its stdio.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// `Some(description)` if the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Stops the child: SIGTERM, then SIGKILL after a grace period; returns how it ended.
    pub fn stop(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        let pid = child.id() as libc::pid_t;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(format!("had already exited: {status}"));
        }
        // SAFETY: `pid` is our own unreaped child, so it cannot be a recycled pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!("stopped on SIGTERM: {status}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        Some(format!("ignored SIGTERM for 2 s, killed: {status}"))
    }

    /// Keeps a file instead of deleting it at drop (e.g. a log worth reading).
    pub fn keep_file(&mut self, path: &PathBuf) {
        self.cleanup.retain(|p| p != path);
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.stop();
        for p in &self.cleanup {
            let _ = fs::remove_file(p);
        }
    }
}
