//! What the benches share: pinning to cores, the machine's calibration, a process's CPU time.
//! The benches read /proc and pin with sched_setaffinity, so they measure on Linux; elsewhere
//! they build (for the macOS lint) and say so when pinning.

#![allow(dead_code)] // each bench uses its part

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The publisher the benches run (the bench profile's build).
pub const BIN: &str = env!("CARGO_BIN_EXE_amazon-cloudwatch-publisher");

/// The publisher, to be started pinned to CPU 0 (the load comes from the other core).
pub fn pinned() -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(BIN);
    // SAFETY: pin only makes a system call, which is allowed between fork and exec.
    unsafe { command.pre_exec(|| pin(&[0])) };
    command
}

/// The publisher with `config` (written to `dir`/config.json) and `--dry-run`, pinned to CPU 0,
/// its standard output (the requests) and error (its log) piped.
pub fn dry_run(config: &serde_json::Value, dir: &Path) -> Child {
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    pinned()
        .arg("--dry-run")
        .arg(&config_path)
        .env("HOME", dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// User + system CPU seconds of a running process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a system setting.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Restricts the calling thread (and what it starts) to `cpus`.
#[cfg(target_os = "linux")]
pub fn pin(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restricts the calling thread to `cpus`: Linux only.
#[cfg(not(target_os = "linux"))]
pub fn pin(_cpus: &[usize]) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// This machine's speed today, measured beside every figure so that figures from different
/// days and machines can be compared: SHA-256 throughput of one core (CPU 0, where the
/// publisher runs) from `openssl speed`, in MB/s.
pub fn calibrate() -> f64 {
    let mut command = Command::new("openssl");
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: pin only makes a system call, which is allowed between fork and exec.
        unsafe { command.pre_exec(|| pin(&[0])) };
    }
    let out = command
        .args([
            "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3",
        ])
        .stderr(Stdio::null())
        .output()
        .expect("openssl speed is the calibration; install openssl (apt-get install openssl)");
    let text = String::from_utf8_lossy(&out.stdout);
    let kilobytes = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("sha256"))
        .and_then(|rest| rest.trim().strip_suffix('k'))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot read openssl speed's output: {text}"));
    kilobytes / 1000.0
}
