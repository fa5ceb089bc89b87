//! Processes of a power-cut trial: children that die with the harness ([`P`]) and
//! one-shot system commands ([`cmd`]).

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::last_error_line;

/// Generous upper bounds (loaded CI machines); passing one fails the trial loudly.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(180);
pub(super) const RUN_TIMEOUT: Duration = Duration::from_secs(300);
pub(super) const POLL: Duration = Duration::from_millis(3);

pub(super) fn cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(super) fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .chain([PathBuf::from("/sbin"), PathBuf::from("/usr/sbin")])
                .any(|d| d.join(program).is_file())
        })
        .unwrap_or(false)
}

pub(super) struct P {
    name: String,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
}

impl P {
    pub(super) fn spawn(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<P, String> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening log {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut c = Command::new(exe);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("TRIBUTARY_FAILPOINTS")
            .env_remove(tributary::testing::failpoint::DIR_VAR);
        crate::common::apply_trial_seams(&mut c);
        for (k, v) in env {
            c.env(k, v);
        }
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        // Children die with the harness, so a killed harness leaves no writer or
        // compactor holding the filesystem (the wrapper's trap then unmounts it).
        unsafe {
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = c.spawn().map_err(|e| format!("starting {name} ({}): {e}", exe.display()))?;
        Ok(P { name: name.to_string(), child: Some(child), status: None, log: log.to_path_buf() })
    }

    /// Non-blocking: the exit status once it ended.
    pub(super) fn poll(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                self.status = Some(st);
                self.child = None;
            }
        }
        self.status
    }

    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.status = Some(st);
            }
        }
    }

    /// Wait for the end (up to `timeout`, then SIGKILL and an error).
    pub(super) fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.poll() {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("{} did not end within {}s (killed)", self.name, timeout.as_secs()));
            }
            std::thread::sleep(POLL);
        }
    }

    pub(super) fn describe(&self, st: ExitStatus) -> String {
        match st.signal() {
            Some(sig) => format!("{} killed by signal {sig}", self.name),
            None => format!(
                "{} exited {}: {}",
                self.name,
                st.code().unwrap_or(-1),
                last_error_line(&self.log).unwrap_or_else(|| "(no error line in its log)".into())
            ),
        }
    }

    /// Run to completion; Err unless it exits 0.
    pub(super) fn run(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<(), String> {
        let mut p = P::spawn(name, exe, args, env, log)?;
        let st = p.wait(RUN_TIMEOUT)?;
        if st.success() {
            Ok(())
        } else {
            Err(p.describe(st))
        }
    }
}

impl Drop for P {
    fn drop(&mut self) {
        self.kill();
    }
}
