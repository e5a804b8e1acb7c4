//! Building the Debian package for the package and container tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use super::repo;

pub const PACKAGE: &str = "amazon-cloudwatch-publisher";
pub const CONFIG: &str =
    "/opt/aws/amazon-cloudwatch-publisher/etc/amazon-cloudwatch-publisher.json";

/// One package build at a time (cargo-deb's work directory is shared).
static BUILD: Mutex<()> = Mutex::new(());

/// Fails, saying how to set up, when `tool` is not on PATH.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: run scripts/test, which installs what the package tests need \
         (cargo-deb, lintian, shellcheck, expect, debootstrap, systemd-container)"
    );
}

pub fn need_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "installing the package needs root: run scripts/test as root (CI does)"
    );
}

/// Runs a command; whether it succeeded, and its standard output and error together.
pub fn sh(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Builds the .deb in `dir` from the debug binary `cargo test` built (no second build of the
/// SDK); returns its path.
pub fn build(dir: &Path) -> PathBuf {
    need("cargo-deb");
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let deb = dir.join(format!("{PACKAGE}_test_amd64.deb"));
    let (ok, text) = sh(Command::new("cargo")
        .current_dir(repo())
        .args(["deb", "--profile", "dev", "--no-build", "--fast", "-o"])
        .arg(&deb));
    assert!(ok, "cargo deb failed: {text}");
    deb
}

/// debconf-set-selections lines for the package's questions.
pub fn preseed(answers: &[(&str, &str, &str)]) -> String {
    answers
        .iter()
        .map(|(q, t, v)| format!("{PACKAGE} {PACKAGE}/{q} {t} {v}\n"))
        .collect()
}
