//! `provision` against moto's Cognito: users for exactly the new devices in systems.txt, files
//! a device can use as they are, a second run that does nothing, a dry run that changes
//! nothing, problems in systems.txt named by line, and throttling retried. The pools are made
//! by API calls (moto's CloudFormation has no Cognito resources).

#![cfg(feature = "provision")]

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const EXISTING_PASSWORD: &str = "Existing-Device-Passw0rd-that-is-long-enough!";

struct Fleet {
    moto: Moto,
    ids: Value,
    dir: tempfile::TempDir,
    /// Calls the setup made, not counted as provision's.
    setup_calls: HashMap<String, u64>,
}

impl Fleet {
    fn new(existing: &[&str], unfinished: &[&str]) -> Fleet {
        let moto = Moto::start();
        let ids = moto.cognito_setup_with(existing, unfinished, EXISTING_PASSWORD, true);
        Fleet {
            setup_calls: moto.calls(),
            moto,
            ids,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// AWS calls since the setup. The test's own listings of users count too: take this
    /// before those.
    fn calls(&self) -> HashMap<String, u64> {
        let mut calls = self.moto.calls();
        for (op, n) in &self.setup_calls {
            if let Some(c) = calls.get_mut(op) {
                *c -= n;
            }
        }
        calls.retain(|_, n| *n > 0);
        calls
    }

    fn pool(&self) -> &str {
        self.ids["userPoolId"].as_str().unwrap()
    }

    fn out_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("provisioned")
    }

    fn systems(&self, text: &str) -> std::path::PathBuf {
        let path = self.dir.path().join("systems.txt");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs provision with the ids on the command line, as the operator's AWS identity.
    fn provision(&self, systems: &Path, extra: &[&str]) -> Output {
        let mut cmd = publisher(Some(&self.moto.url()));
        cmd.arg("provision")
            .args(["--user-pool-id", self.pool()])
            .args([
                "--identity-pool-id",
                self.ids["identityPoolId"].as_str().unwrap(),
            ])
            .args(["--app-client-id", self.ids["appClientId"].as_str().unwrap()])
            .args(["--account-id", self.ids["accountId"].as_str().unwrap()])
            .arg("--systems")
            .arg(systems)
            .arg("--out-dir")
            .arg(self.out_dir())
            .args(extra);
        run(cmd, Duration::from_secs(120))
    }

    fn users(&self) -> Vec<(String, String)> {
        self.moto.cognito_users(self.pool()).into_iter().collect()
    }

    /// Which of these (id, password) sign in, as a device does (USER_PASSWORD_AUTH).
    fn signs_in(&self, who: &[(&str, &str)]) -> Vec<bool> {
        let script = r#"
import json, sys, boto3
url, client, who = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
idp = boto3.client("cognito-idp", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
out = []
for user, password in who:
    try:
        idp.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=client,
                          AuthParameters={"USERNAME": user, "PASSWORD": password})
        out.append(True)
    except idp.exceptions.NotAuthorizedException:
        out.append(False)
print(json.dumps(out))
"#;
        let out = Command::new(python())
            .args(["-c", script, &self.moto.url()])
            .arg(self.ids["appClientId"].as_str().unwrap())
            .arg(serde_json::to_string(who).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The password in a device's config file.
    fn file_password(&self, id: &str) -> String {
        let config: Value =
            serde_json::from_str(&read(&self.out_dir().join(format!("{id}.json")))).unwrap();
        config["agent"]["authentication"]["password"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The id → password table provision printed.
fn table(stdout: &str) -> Vec<(String, String)> {
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("instance id"), "{stdout}");
    lines
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap().to_owned(),
                words.next().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn new_devices_get_users_and_files_that_let_them_publish_and_a_second_run_does_nothing() {
    let fleet = Fleet::new(&["rpi-existing01"], &["rpi-halfmade01"]);
    let systems = fleet.systems(
        "# the fleet\n\nrpi-existing01\nrpi-new00001   # hall\nrpi-new00002\nrpi-halfmade01\n",
    );
    // The outputs file `cdk deploy --outputs-file` writes.
    let outputs = fleet.dir.path().join("outputs.json");
    std::fs::write(
        &outputs,
        json!({"PublisherBackend": {
            "Region": "us-east-1",
            "AccountId": fleet.ids["accountId"],
            "UserPoolId": fleet.ids["userPoolId"],
            "IdentityPoolId": fleet.ids["identityPoolId"],
            "AppClientId": fleet.ids["appClientId"],
        }})
        .to_string(),
    )
    .unwrap();
    let mut cmd = publisher(Some(&fleet.moto.url()));
    cmd.arg("provision")
        .arg("--outputs")
        .arg(&outputs)
        .arg("--systems")
        .arg(&systems)
        .arg("--out-dir")
        .arg(fleet.out_dir());
    let out = run(cmd, Duration::from_secs(120));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    let printed = table(&stdout);
    let ids: Vec<&str> = printed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["rpi-new00001", "rpi-new00002", "rpi-halfmade01"]);
    for (_, password) in &printed {
        assert!(password.len() >= 40, "{password}");
    }
    assert_ne!(printed[0].1, printed[1].1);
    assert!(
        stderr.contains("Created 3 user(s); 1 device(s) had one already"),
        "{stderr}"
    );
    // Everyone is confirmed, with a permanent password; the one existing before is untouched.
    let users = fleet.users();
    assert_eq!(
        users,
        [
            ("rpi-existing01", "CONFIRMED"),
            ("rpi-halfmade01", "CONFIRMED"),
            ("rpi-new00001", "CONFIRMED"),
            ("rpi-new00002", "CONFIRMED")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );

    assert_eq!(mode(&fleet.out_dir()), 0o700);
    for (id, password) in &printed {
        let config_path = fleet.out_dir().join(format!("{id}.json"));
        let preseed_path = fleet.out_dir().join(format!("{id}.preseed"));
        assert_eq!(mode(&config_path), 0o600);
        assert_eq!(mode(&preseed_path), 0o600);
        let config: Value = serde_json::from_str(&read(&config_path)).unwrap();
        assert_eq!(
            config["agent"]["authentication"]["password"],
            password.as_str()
        );
        let preseed = read(&preseed_path);
        assert!(
            preseed.contains(&format!(
                "amazon-cloudwatch-publisher amazon-cloudwatch-publisher/password password {password}\n"
            )),
            "{preseed}"
        );
        assert!(preseed.contains(&format!(
            "amazon-cloudwatch-publisher/user_pool_id string {}\n",
            fleet.pool()
        )));
    }

    // The whole fleet path: a new device's config, as written, signs in and publishes.
    let mut config: Value =
        serde_json::from_str(&read(&fleet.out_dir().join("rpi-new00001.json"))).unwrap();
    config["agent"]["debug"] = json!(true);
    let device = Setup::new(config);
    let mut cmd = publisher(Some(&fleet.moto.url()));
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .arg("--once")
        .arg(device.config());
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", device.log());
    let metrics = fleet.moto.metrics();
    assert!(
        metrics
            .iter()
            .any(|d| d.dimensions.get("InstanceId").map(String::as_str) == Some("rpi-new00001")),
        "{metrics:?}"
    );
    assert_eq!(fleet.calls().get("InitiateAuth"), Some(&1));

    // Again: nothing to create, nothing printed.
    let out = fleet.provision(&systems, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("All 4 device(s) in") && stderr.contains("nothing to do"),
        "{stderr}"
    );
    let calls = fleet.calls();
    assert_eq!(calls.get("AdminCreateUser"), Some(&2), "{calls:?}");
    assert_eq!(calls.get("AdminSetUserPassword"), Some(&3), "{calls:?}");
    assert_eq!(fleet.users().len(), 4);
}

#[test]
fn problems_in_systems_txt_are_named_by_line_and_nothing_is_created() {
    let fleet = Fleet::new(&[], &[]);
    let systems = fleet.systems("rpi-ok0001\nrpi-ok0002\nrpi-ok0001\nrpi bad\nnodash\n");
    let out = fleet.provision(&systems, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(65), "{stdout}\n{stderr}");
    let name = systems.display().to_string();
    for want in [
        format!("{name}:3: \"rpi-ok0001\" is listed already on line 1"),
        format!("{name}:4: \"rpi bad\" contains ' '"),
        format!("{name}:5: \"nodash\" is not an instance id"),
    ] {
        assert!(stderr.contains(&want), "{want} in {stderr}");
    }
    assert_eq!(fleet.calls().get("ListUsers"), None);
    assert!(fleet.users().is_empty());
    assert!(!fleet.out_dir().exists());
}

#[test]
fn a_dry_run_says_what_it_would_do_and_changes_nothing() {
    let fleet = Fleet::new(&["rpi-existing01"], &["rpi-halfmade01"]);
    let systems = fleet.systems("rpi-existing01\nrpi-new00001\nrpi-halfmade01\n");
    let out = fleet.provision(&systems, &["--dry-run"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("would create rpi-new00001"), "{stdout}");
    assert!(
        stdout.contains("would set a new password for rpi-halfmade01"),
        "{stdout}"
    );
    assert!(!stdout.contains("rpi-existing01"), "{stdout}");
    assert!(
        stderr.contains("Nothing was created or written"),
        "{stderr}"
    );
    assert_eq!(
        fleet.users(),
        [
            ("rpi-existing01", "CONFIRMED"),
            ("rpi-halfmade01", "FORCE_CHANGE_PASSWORD")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(!fleet.out_dir().exists());
    let calls = fleet.calls();
    assert_eq!(calls.get("AdminCreateUser"), None, "{calls:?}");
    assert_eq!(calls.get("AdminSetUserPassword"), None, "{calls:?}");
}

#[test]
fn throttled_calls_are_retried_with_backoff() {
    let fleet = Fleet::new(&[], &[]);
    let systems = fleet.systems("rpi-new00001\nrpi-new00002\n");
    fleet
        .moto
        .fail_next("ListUsers", 2, 400, "TooManyRequestsException");
    fleet
        .moto
        .fail_next("AdminCreateUser", 3, 400, "TooManyRequestsException");
    fleet
        .moto
        .fail_next("AdminSetUserPassword", 2, 400, "TooManyRequestsException");
    let out = fleet.provision(&systems, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(table(&stdout).len(), 2);
    assert_eq!(fleet.users().len(), 2);
    let calls = fleet.calls();
    assert_eq!(calls.get("AdminCreateUser.failed"), Some(&3), "{calls:?}");
    assert_eq!(calls.get("AdminCreateUser"), Some(&5), "{calls:?}");
    assert_eq!(calls.get("ListUsers.failed"), Some(&2), "{calls:?}");
    assert_eq!(
        calls.get("AdminSetUserPassword.failed"),
        Some(&2),
        "{calls:?}"
    );
}

#[test]
fn provision_needs_the_backend_named_one_way() {
    // Neither --outputs nor --user-pool-id, or --user-pool-id without the other ids.
    let out = run(
        {
            let mut c = Command::new(BIN);
            c.args(["provision", "--systems", "x"]);
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(64));
    let out = run(
        {
            let mut c = Command::new(BIN);
            c.args(["provision", "--user-pool-id", "us-east-1_AbC"]);
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(64));
    let (_, stderr) = text(&out);
    assert!(stderr.contains("--identity-pool-id"), "{stderr}");
}

#[test]
fn every_page_of_users_is_read_before_deciding_who_is_new() {
    // More users than one ListUsers page holds (60).
    let existing: Vec<String> = (0..75).map(|i| format!("rpi-{i:08x}")).collect();
    let refs: Vec<&str> = existing.iter().map(String::as_str).collect();
    let fleet = Fleet::new(&refs, &[]);
    let mut list = existing.join("\n");
    list.push_str("\nrpi-newdevice\n");
    let systems = fleet.systems(&list);
    let out = fleet.provision(&systems, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let printed = table(&stdout);
    assert_eq!(printed.len(), 1, "{stdout}");
    assert_eq!(printed[0].0, "rpi-newdevice");
    let calls = fleet.calls();
    assert!(calls.get("ListUsers") >= Some(&2), "{calls:?}");
    assert_eq!(calls.get("AdminCreateUser"), Some(&1), "{calls:?}");
    assert_eq!(fleet.users().len(), 76);
}

/// A fleet of a thousand: created concurrently, paced, with throttled calls retried, each
/// device once, and progress shown as lines when not on a terminal.
#[test]
fn a_thousand_devices_are_created_concurrently_each_once_through_throttling() {
    let fleet = Fleet::new(&[], &[]);
    let ids: Vec<String> = (0..1000).map(|n| format!("rpi-{n:016x}")).collect();
    let systems = fleet.systems(&(ids.join("\n") + "\n"));
    // As Cognito answers: some tens of milliseconds a call, and throttling now and then.
    fleet.moto.delay("AdminCreateUser", 0.02);
    fleet.moto.delay("AdminSetUserPassword", 0.02);
    fleet
        .moto
        .fail_next("AdminCreateUser", 20, 400, "TooManyRequestsException");
    fleet
        .moto
        .fail_next("AdminSetUserPassword", 20, 400, "TooManyRequestsException");
    let started = std::time::Instant::now();
    let out = fleet.provision(&systems, &["--concurrency", "16", "--rate", "100"]);
    let took = started.elapsed();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    eprintln!("1,000 devices at --concurrency 16 --rate 100 took {took:?}");
    let printed = table(&stdout);
    assert_eq!(printed.len(), 1000);
    let printed_ids: Vec<&str> = printed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(printed_ids, ids, "in the order of systems.txt");
    let passwords: std::collections::HashSet<&str> =
        printed.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(passwords.len(), 1000);
    let users = fleet.users();
    assert_eq!(users.len(), 1000);
    assert!(users.iter().all(|(_, status)| status == "CONFIRMED"));
    let calls = fleet.calls();
    assert_eq!(calls.get("AdminCreateUser.failed"), Some(&20), "{calls:?}");
    assert_eq!(calls.get("AdminCreateUser"), Some(&1020), "{calls:?}");
    assert_eq!(calls.get("AdminSetUserPassword"), Some(&1020), "{calls:?}");
    // Not a terminal: a line at every tenth.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.ends_with("devices provisioned"))
        .collect();
    assert_eq!(lines.len(), 10, "{stderr}");
    assert_eq!(lines[9], "1000/1000 devices provisioned");
    // At 100 calls a second of each kind, a thousand take ten seconds at least.
    assert!(took >= Duration::from_secs(9), "{took:?}");
    let sample: Vec<(&str, &str)> = printed
        .iter()
        .step_by(250)
        .map(|(id, p)| (id.as_str(), p.as_str()))
        .collect();
    assert!(fleet.signs_in(&sample).iter().all(|ok| *ok));
}

/// Killed in the middle, run again: every device ends with one user whose password is the one
/// in its files, none made twice.
#[test]
fn an_interrupted_run_is_finished_by_the_next_without_losing_a_password() {
    let fleet = Fleet::new(&[], &[]);
    let ids: Vec<String> = (0..60).map(|n| format!("rpi-{n:016x}")).collect();
    let systems = fleet.systems(&(ids.join("\n") + "\n"));
    fleet.moto.delay("AdminSetUserPassword", 0.1);
    let mut cmd = publisher(Some(&fleet.moto.url()));
    cmd.arg("provision")
        .args(["--user-pool-id", fleet.pool()])
        .args([
            "--identity-pool-id",
            fleet.ids["identityPoolId"].as_str().unwrap(),
        ])
        .args([
            "--app-client-id",
            fleet.ids["appClientId"].as_str().unwrap(),
        ])
        .args(["--account-id", fleet.ids["accountId"].as_str().unwrap()])
        .arg("--systems")
        .arg(&systems)
        .arg("--out-dir")
        .arg(fleet.out_dir())
        .args(["--rate", "10", "--concurrency", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_until("some users to be created", Duration::from_secs(30), || {
        fleet.users().len() >= 10
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = fleet.users();
    assert!(
        before.len() < 60,
        "stopped before the end: {}",
        before.len()
    );
    fleet.moto.delay("AdminSetUserPassword", 0.0);

    let out = fleet.provision(&systems, &["--rate", "200"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let users = fleet.users();
    assert_eq!(users.len(), 60);
    assert!(users.iter().all(|(_, s)| s == "CONFIRMED"), "{users:?}");
    let creates = fleet.calls().get("AdminCreateUser").copied().unwrap_or(0);
    assert_eq!(creates, 60, "each user created once");
    // Each device's files hold the password it signs in with.
    let who: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), fleet.file_password(id)))
        .collect();
    let who: Vec<(&str, &str)> = who.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert!(fleet.signs_in(&who).iter().all(|ok| *ok));
}

#[test]
fn rotation_gives_new_passwords_and_the_old_ones_stop_working() {
    let fleet = Fleet::new(&[], &[]);
    let systems = fleet.systems("rpi-aaaa\nrpi-bbbb\nrpi-cccc\n");
    let out = fleet.provision(&systems, &[]);
    assert_eq!(out.status.code(), Some(0));
    let first: Vec<(String, String)> = table(&text(&out).0);

    let out = fleet.provision(&systems, &["--rotate", "rpi-bbbb"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rotated = table(&stdout);
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0].0, "rpi-bbbb");
    assert_ne!(rotated[0].1, first[1].1);
    assert_eq!(fleet.file_password("rpi-bbbb"), rotated[0].1);
    let preseed = read(&fleet.out_dir().join("rpi-bbbb.preseed"));
    assert!(
        preseed.contains(&rotated[0].1) && !preseed.contains(&first[1].1),
        "{preseed}"
    );
    assert!(
        stderr.contains("their old passwords no longer work") && stderr.contains(": rpi-bbbb."),
        "{stderr}"
    );
    assert_eq!(
        fleet.signs_in(&[
            ("rpi-bbbb", &first[1].1),
            ("rpi-bbbb", &rotated[0].1),
            ("rpi-aaaa", &first[0].1)
        ]),
        [false, true, true]
    );

    let out = fleet.provision(&systems, &["--rotate-all"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let all = table(&stdout);
    assert_eq!(all.len(), 3);
    assert_eq!(
        fleet.signs_in(&[("rpi-aaaa", &first[0].1), ("rpi-aaaa", &all[0].1)]),
        [false, true]
    );
    assert_eq!(fleet.users().len(), 3);

    // Cognito refuses the new password: the files are written first, so the old password
    // still works, nothing is shown as rotated, and running the same again finishes it.
    fleet
        .moto
        .fail_next("AdminSetUserPassword", 1, 400, "InvalidPasswordException");
    let out = fleet.provision(&systems, &["--rotate", "rpi-cccc"]);
    let (stdout, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("its old password still works: run provision --rotate rpi-cccc again"),
        "{stderr}"
    );
    assert_eq!(fleet.signs_in(&[("rpi-cccc", &all[2].1)]), [true]);
    let out = fleet.provision(&systems, &["--rotate", "rpi-cccc"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let again = table(&stdout);
    assert_eq!(fleet.file_password("rpi-cccc"), again[0].1);
    assert_eq!(
        fleet.signs_in(&[("rpi-cccc", &all[2].1), ("rpi-cccc", &again[0].1)]),
        [false, true]
    );

    // A device not in systems.txt, or without a user: named, nothing done.
    let out = fleet.provision(&systems, &["--rotate", "rpi-zzzz"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("--rotate rpi-zzzz: not a device in"),
        "{stderr}"
    );
    let more = fleet.systems("rpi-aaaa\nrpi-bbbb\nrpi-cccc\nrpi-dddd\n");
    let out = fleet.provision(&more, &["--rotate", "rpi-dddd"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains("it has no user with a password yet"),
        "{stderr}"
    );
}
