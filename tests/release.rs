//! The release artifacts' sources, checked without the tools that use them (pkgbuild and
//! launchd exist only on macOS, and GitHub runs the workflows): the macOS LaunchDaemon read with
//! Python's plistlib, the macOS package's first config with the real `validate`, shellcheck on
//! the package scripts and scripts/cross-build, and actionlint on .github/workflows. Needs
//! python3, shellcheck and actionlint: `scripts/test` installs them (actionlint into .venv).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::deb::{need, sh, CONFIG};
use support::{publisher, repo, run, text};

const LABEL: &str = "com.amazonaws.amazon-cloudwatch-publisher";
const BASE: &str = "/opt/aws/amazon-cloudwatch-publisher";

/// The keys the LaunchDaemon may use. launchd ignores keys it does not know, so a misspelt one
/// would be lost without a word.
const LAUNCHD_KEYS: &[&str] = &[
    "Label",
    "ProgramArguments",
    "UserName",
    "GroupName",
    "RunAtLoad",
    "KeepAlive",
    "ThrottleInterval",
    "ExitTimeOut",
    "ProcessType",
    "Umask",
    "WorkingDirectory",
    "StandardOutPath",
    "StandardErrorPath",
    "EnvironmentVariables",
];

/// A file of the repository as Python reads it, printed as JSON by `script` (given the path).
fn python_json(file: &str, script: &str) -> Value {
    need("python3");
    let (ok, out) = sh(Command::new("python3")
        .args(["-c", script])
        .arg(repo().join(file)));
    assert!(ok, "python3 cannot read {file}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn the_launch_daemon_runs_the_installed_binary_as_the_service_user() {
    let plist = python_json(
        &format!("macos/{LABEL}.plist"),
        "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
    );
    for key in plist.as_object().expect("the plist is a dictionary").keys() {
        assert!(LAUNCHD_KEYS.contains(&key.as_str()), "unexpected key {key}");
    }
    assert_eq!(plist["Label"], LABEL);
    assert_eq!(
        plist["ProgramArguments"],
        json!([format!("{BASE}/bin/amazon-cloudwatch-publisher"), CONFIG])
    );
    assert_eq!(plist["RunAtLoad"], true);
    assert!(
        plist["KeepAlive"] == true || plist["KeepAlive"].is_object(),
        "KeepAlive: {}",
        plist["KeepAlive"]
    );
    // <integer>, not <real> or <string>: launchd ignores a value of the wrong type.
    let throttle = plist["ThrottleInterval"].as_u64();
    assert!(
        throttle.is_some_and(|s| (10..=300).contains(&s)),
        "ThrottleInterval: {}",
        plist["ThrottleInterval"]
    );
    assert_eq!(plist["UserName"], "_cwpublisher", "never root");
    assert_eq!(plist["GroupName"], "_cwpublisher", "never wheel");
    assert!(
        matches!(
            plist["ProcessType"].as_str(),
            Some("Background" | "Adaptive")
        ),
        "ProcessType: {}",
        plist["ProcessType"]
    );
    for (key, dir) in [
        ("WorkingDirectory", format!("{BASE}/state")),
        ("StandardOutPath", format!("{BASE}/logs/")),
        ("StandardErrorPath", format!("{BASE}/logs/")),
    ] {
        let path = plist[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is a string"));
        assert!(
            path.starts_with(&dir) && !path.contains(".."),
            "{key}: {path} is not under {dir}"
        );
    }
}

#[test]
fn the_installer_distribution_declares_the_package_and_both_architectures() {
    let dist = python_json(
        "macos/distribution.xml",
        "import json, sys, xml.etree.ElementTree as E
root = E.parse(sys.argv[1]).getroot()
print(json.dumps({'root': root.tag, 'archs': root.find('options').get('hostArchitectures'),
    'refs': sorted({r.get('id') for r in root.iter('pkg-ref')}),
    'file': [r.text for r in root.iter('pkg-ref') if r.text]}))",
    );
    assert_eq!(dist["root"], "installer-gui-script");
    assert_eq!(dist["archs"], "x86_64,arm64");
    assert_eq!(dist["refs"], json!([LABEL]));
    // The component package macos/build-pkg writes.
    assert_eq!(
        dist["file"],
        json!(["amazon-cloudwatch-publisher-component.pkg"])
    );
}

#[test]
fn the_macos_packages_first_config_lacks_only_a_region() {
    let dir = tempfile::tempdir().unwrap();
    let validate = |config: &Value| {
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut cmd = publisher(None);
        cmd.arg("validate").arg(&path);
        let out = run(cmd, Duration::from_secs(30));
        (out.status.code(), text(&out).1)
    };
    let mut config: Value =
        serde_json::from_str(&support::read(&repo().join("macos/default-config.json"))).unwrap();
    let (code, stderr) = validate(&config);
    assert_eq!(code, Some(78), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("config.json: "))
        .collect();
    assert!(
        problems.len() == 1 && problems[0].contains("agent.region: \"\""),
        "{stderr}"
    );

    // Given a region, it validates; a stand-in serial, as system_profiler is macOS's own.
    config["agent"]["region"] = json!("us-east-1");
    config["agent"]["instance"]["serial"] = json!("c02test");
    let (code, stderr) = validate(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("valid; instance id osx-c02test"),
        "{stderr}"
    );
}

#[test]
fn the_package_scripts_and_cross_build_pass_shellcheck() {
    need("shellcheck");
    let scripts = [
        "macos/scripts/preinstall",
        "macos/scripts/postinstall",
        "macos/uninstall.sh",
        "macos/build-pkg",
        "scripts/cross-build",
        "scripts/check-darwin",
        "scripts/check-deb-libc",
        "scripts/python-venv",
        "scripts/fuzz",
        "scripts/test",
        "scripts/bench",
    ];
    for script in scripts {
        let mode = std::fs::metadata(repo().join(script))
            .unwrap()
            .permissions()
            .mode();
        // pkgbuild leaves out install scripts that are not executable.
        assert_eq!(mode & 0o111, 0o111, "{script} is not executable");
    }
    let (ok, out) = sh(Command::new("shellcheck").current_dir(repo()).args(scripts));
    assert!(ok, "shellcheck: {out}");
}

#[test]
fn the_workflows_pass_actionlint_and_their_scripts_shellcheck() {
    // actionlint runs shellcheck on `run:` blocks only when it finds it on PATH.
    need("shellcheck");
    let venv = repo().join(".venv/bin/actionlint");
    let on_path = Command::new("sh")
        .args(["-c", "command -v actionlint"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        venv.exists() || on_path,
        "actionlint is missing: run scripts/test, which installs it into .venv from \
         tests/support/requirements.txt, or put actionlint on PATH"
    );
    let actionlint = if venv.exists() {
        venv
    } else {
        PathBuf::from("actionlint")
    };
    let mut workflows: Vec<PathBuf> = std::fs::read_dir(repo().join(".github/workflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    workflows.sort();
    assert!(
        workflows.len() >= 2,
        "CI and release workflows: {workflows:?}"
    );
    let (ok, out) = sh(Command::new(&actionlint)
        .current_dir(repo())
        .args(&workflows));
    assert!(ok, "actionlint: {out}");
}
