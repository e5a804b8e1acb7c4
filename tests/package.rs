//! The Debian package: built with cargo-deb (from the binary the tests already built), linted,
//! its maintainer scripts checked, its unit rated, and installed on this machine with preseeded
//! answers, upgraded and purged. Needs root, cargo-deb, lintian and shellcheck: `scripts/test`
//! installs them.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use support::deb::*;
use support::*;

/// The release workflow's packages are built for other architectures, where cargo-deb's `$auto`
/// finds no C library: its `release` variant names libc6 itself, and scripts/check-deb-libc
/// (which the workflow runs on every .deb) holds each package's libc6 against the glibc
/// symbol versions its binary uses.
#[test]
fn every_package_must_declare_the_c_library_its_binary_needs() {
    let dir = tempfile::tempdir().unwrap();
    let check = |deb: &Path| -> (bool, String) {
        sh(Command::new(repo().join("scripts/check-deb-libc")).arg(deb))
    };
    let needed = |text: &str| -> String {
        text.split("needs glibc ")
            .nth(1)
            .and_then(|r| r.split([',', ' ', '\n']).next())
            .unwrap_or_default()
            .to_owned()
    };

    // The package the tests build: $auto reads this machine's libc6.
    let deb = build(dir.path());
    let (ok, text) = check(&deb);
    assert!(ok, "{text}");
    let here = needed(&text);
    assert!(here.starts_with("2."), "{text}");

    // The release variant: the same package with libc6 (>= 2.31) named, as the zig-built
    // binaries need. The binary here is linked against this machine's newer glibc, so the
    // check must refuse it, naming both versions.
    need("cargo-deb");
    let release = dir.path().join("release.deb");
    let (ok, text) = sh(Command::new("cargo")
        .current_dir(repo())
        .args([
            "deb",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "--variant",
            "release",
            "-o",
        ])
        .arg(&release));
    assert!(ok, "cargo deb --variant release: {text}");
    let (_, fields) = sh(Command::new("dpkg-deb")
        .arg("-f")
        .arg(&release)
        .args(["Package", "Depends"]));
    assert!(
        fields.contains("Package: amazon-cloudwatch-publisher\n"),
        "{fields}"
    );
    assert!(fields.contains("libc6 (>= 2.31)"), "{fields}");
    for other in [
        "adduser",
        "ca-certificates",
        "debconf (>= 0.5) | debconf-2.0",
    ] {
        assert!(
            fields.contains(other),
            "{other} missing from the release package: {fields}"
        );
    }
    let (ok, text) = check(&release);
    assert!(
        !ok && text.contains(&format!(
            "needs glibc {here}, but Depends declares libc6 (>= 2.31)"
        )),
        "{text}"
    );

    // A package whose Depends lacks libc6 altogether is refused.
    let tree = dir.path().join("tree");
    assert!(sh(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&tree)).0);
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Depends:") {
                "Depends: adduser, ca-certificates".to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&control, text).unwrap();
    let bare = dir.path().join("bare.deb");
    let (ok, out) = sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&bare));
    assert!(ok, "{out}");
    let (ok, text) = check(&bare);
    assert!(!ok && text.contains("Depends lacks libc6"), "{text}");
}

#[test]
fn the_package_builds_lints_clean_and_its_scripts_and_unit_pass_their_checks() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    need("lintian");
    let (ok, text) = sh(Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(&deb));
    assert!(ok, "lintian: {text}");

    let (_, listing) = sh(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./opt/aws/amazon-cloudwatch-publisher/bin/amazon-cloudwatch-publisher",
        "./usr/lib/systemd/system/amazon-cloudwatch-publisher.service",
        "./usr/share/doc/amazon-cloudwatch-publisher/copyright",
        "./usr/share/man/man1/amazon-cloudwatch-publisher.1.gz",
        "./usr/share/doc/amazon-cloudwatch-publisher/changelog.Debian.gz",
        "./usr/share/lintian/overrides/amazon-cloudwatch-publisher",
    ] {
        assert!(listing.contains(path), "{path} missing from {listing}");
    }

    need("shellcheck");
    let debian = repo().join("debian");
    let (ok, text) = sh(Command::new("shellcheck")
        .args(["-s", "sh", "-e", "SC1091"])
        .arg(debian.join("config"))
        .arg(debian.join("postinst"))
        .arg(debian.join("postrm")));
    assert!(ok, "shellcheck: {text}");

    let (_, text) = sh(Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(debian.join("amazon-cloudwatch-publisher.service")));
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("amazon-cloudwatch-publisher.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(
        score <= 2.0,
        "systemd-analyze security rates the unit {score}: {text}"
    );
}

/// The machine's package state, one test at a time: taken with the package purged (answers
/// included), and purged again when dropped, so a failed test leaves the machine as it was.
struct Installed(#[allow(dead_code)] MutexGuard<'static, ()>);

static INSTALL: Mutex<()> = Mutex::new(());

fn purge() {
    let _ = Command::new("apt-get")
        .args(["purge", "-y", "-q", PACKAGE])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
}

impl Installed {
    fn take() -> Installed {
        need_root();
        let guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        purge();
        Installed(guard)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        purge();
    }
}

fn apt_install(deb: &Path, reinstall: bool) {
    let mut cmd = Command::new("apt-get");
    cmd.args(["install", "-y", "-q"]);
    if reinstall {
        cmd.arg("--reinstall");
    }
    let (ok, text) = sh(cmd.arg(deb).env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(ok, "apt-get install: {text}");
}

#[test]
fn a_preseeded_install_writes_the_config_for_the_service_user_and_purge_removes_everything() {
    let _installed = Installed::take();
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let password = r#"pa"ss\wo$rd 'x' `id`"#;
    let preseed = dir.path().join("preseed");
    let answers = [
        ("region", "string", "eu-west-1"),
        ("account_id", "string", "123456789012"),
        ("user_pool_id", "string", "eu-west-1_AbCdEf123"),
        (
            "identity_pool_id",
            "string",
            "eu-west-1:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        ),
        ("app_client_id", "string", "1example23456789"),
        ("password", "password", password),
        ("instance_prefix", "string", "rpi"),
        ("serial_command", "string", "echo 00000000ABCDEF01"),
        ("proxy", "string", "http://pu:Pr0xyPw@proxy.example:3128"),
    ];
    std::fs::write(&preseed, support::deb::preseed(&answers)).unwrap();
    let (ok, text) = sh(Command::new("debconf-set-selections").arg(&preseed));
    assert!(ok, "{text}");

    apt_install(&deb, false);
    let config: serde_json::Value = serde_json::from_str(&read(Path::new(CONFIG))).unwrap();
    let auth = &config["agent"]["authentication"];
    assert_eq!(auth["password"], password, "escaped right: {config}");
    assert_eq!(auth["accountId"], "123456789012");
    assert_eq!(config["agent"]["region"], "eu-west-1");
    assert_eq!(
        config["agent"]["proxy"],
        "http://pu:Pr0xyPw@proxy.example:3128"
    );
    let meta = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let (_, user) = sh(Command::new("id").arg("cwpublisher"));
    assert!(
        user.contains(&format!("uid={}(cwpublisher)", meta.uid())),
        "{user}"
    );
    assert!(
        user.contains("(adm)") && user.contains("(systemd-journal)"),
        "{user}"
    );
    let (_, passwd) = sh(Command::new("getent").args(["passwd", "cwpublisher"]));
    assert!(
        passwd.trim_end().ends_with(":/usr/sbin/nologin"),
        "{passwd}"
    );
    let (_, groups) = sh(Command::new("id").args(["-nG", "cwpublisher"]));
    assert!(!groups.split_whitespace().any(|g| g == "sudo"), "{groups}");
    // The secret is in the 0600 config only: not left in debconf's database.
    let (_, stored) = sh(Command::new("debconf-show").arg(PACKAGE));
    assert!(
        !stored.contains("wo$rd") && !stored.contains("Pr0xyPw"),
        "{stored}"
    );
    assert!(!read(Path::new("/var/cache/debconf/config.dat")).contains("Pr0xyPw"));
    assert!(!read(Path::new("/var/cache/debconf/passwords.dat")).contains("wo$rd"));
    let (ok, text) = sh(Command::new(
        "/opt/aws/amazon-cloudwatch-publisher/bin/amazon-cloudwatch-publisher",
    )
    .args(["validate", CONFIG]));
    assert!(
        ok && text.contains("instance id rpi-00000000abcdef01"),
        "{text}"
    );
    assert!(
        !text.contains("wo$rd") && !text.contains("Pr0xyPw"),
        "validate redacts the passwords"
    );

    // An upgrade keeps the answers, the password and edits made by hand, also those the
    // questions do not cover.
    let edited = read(Path::new(CONFIG))
        .replace("eu-west-1\"", "eu-central-1\"")
        .replace("\"agent\": {", "\"agent\": {\"debug\": true, ");
    std::fs::write(CONFIG, &edited).unwrap();
    apt_install(&deb, true);
    assert_eq!(read(Path::new(CONFIG)), edited);

    // dpkg-reconfigure writes the config from the answers again, starting from the file's own
    // values; with no new password given, the old one stays.
    let (ok, text) = sh(Command::new("dpkg-reconfigure").args(["-f", "noninteractive", PACKAGE]));
    assert!(ok, "{text}");
    let config: serde_json::Value = serde_json::from_str(&read(Path::new(CONFIG))).unwrap();
    assert_eq!(config["agent"]["region"], "eu-central-1");
    assert_eq!(config["agent"]["authentication"]["password"], password);
    assert_eq!(
        config["agent"]["proxy"], "http://pu:Pr0xyPw@proxy.example:3128",
        "the proxy is kept too"
    );
    assert!(!read(Path::new("/var/cache/debconf/passwords.dat")).contains("wo$rd"));

    let (ok, text) = sh(Command::new("apt-get")
        .args(["purge", "-y", "-q", PACKAGE])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(ok, "{text}");
    assert!(!Path::new("/opt/aws/amazon-cloudwatch-publisher").exists());
    let (known, _) = sh(Command::new("id").arg("cwpublisher"));
    assert!(!known, "the service user is removed on purge");
    let (_, stored) = sh(Command::new("debconf-show").arg(PACKAGE));
    assert!(stored.trim().is_empty(), "answers purged: {stored}");
}

/// Files any user can read (the file readable by others, every directory above it searchable
/// by others) under `dir`, down to `depth` levels, that contain `secret`.
fn world_readable_with(dir: &Path, depth: u32, secret: &[u8], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let mode = meta.permissions().mode();
        let path = entry.path();
        if meta.is_dir() {
            if mode & 0o001 != 0 && depth > 1 {
                world_readable_with(&path, depth - 1, secret, found);
            }
        } else if meta.is_file() && mode & 0o004 != 0 && meta.len() <= 16 << 20 {
            if let Ok(bytes) = std::fs::read(&path) {
                if memchr::memmem::find(&bytes, secret).is_some() {
                    found.push(path);
                }
            }
        }
    }
}

#[test]
fn an_interactive_install_asks_every_question_and_never_shows_the_password() {
    let _installed = Installed::take();
    let dir = tempfile::tempdir().unwrap();
    let deb = build(dir.path());
    let password = r#"Int3ractive"Pass\word$HOME"#;
    // The answers go in through a terminal, as a person types them.
    let (ok, out, seen) = answer_on_a_terminal(
        "env DEBIAN_FRONTEND=readline DEBIAN_PRIORITY=medium apt-get install -y $env(DEB)",
        &[("DEB", deb.as_os_str())],
        "00000000DEADBEEF",
        password,
    );
    assert!(ok, "the interactive install failed: {out}\n{seen}");
    for prompt in [
        "AWS region to publish to:",
        "AWS account id",
        "Cognito user pool id:",
        "Cognito identity pool id:",
        "Cognito app client id:",
        "Password of this device's Cognito user:",
        "Instance id prefix:",
        "Command that prints this machine's serial:",
        // Enter at the prefix took the default.
        "instance id is rpi-00000000deadbeef",
    ] {
        assert!(seen.contains(prompt), "{prompt:?} not shown: {seen}");
    }
    assert!(
        !seen.contains("Int3ractive"),
        "the password was echoed: {seen}"
    );

    let config: serde_json::Value = serde_json::from_str(&read(Path::new(CONFIG))).unwrap();
    assert_eq!(config["agent"]["authentication"]["password"], password);
    assert_eq!(config["agent"]["region"], "eu-west-1");
    assert_eq!(
        std::fs::metadata(CONFIG).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut found = vec![];
    // Where installing writes, and temporary files (not the build trees that may sit deeper
    // in /tmp).
    for (root, depth) in [
        ("/etc", 64),
        ("/var", 64),
        ("/opt/aws", 64),
        ("/run", 64),
        ("/root", 64),
        ("/home", 64),
        ("/tmp", 2),
    ] {
        world_readable_with(Path::new(root), depth, b"Int3ractive", &mut found);
    }
    assert!(
        found.is_empty(),
        "the password is in world-readable files: {found:?}"
    );
    let stored = read(Path::new("/var/cache/debconf/passwords.dat"));
    assert!(
        !stored.contains("Int3ractive"),
        "left in debconf's password store"
    );
}
