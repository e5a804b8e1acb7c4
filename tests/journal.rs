//! The journal to moto's CloudWatch Logs through a stand-in journalctl
//! (tests/support/journalctl.py) that reads its entries from a fixture file.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const GROUP: &str = "test-journal";
/// Boot ids, 32 hex digits as journald writes them.
const B0: &str = "0123456789abcdef0123456789abcdb0";
const B1: &str = "0123456789abcdef0123456789abcdb1";

struct Journal {
    dir: tempfile::TempDir,
}

impl Journal {
    fn new() -> Journal {
        let j = Journal {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(j.fixture(), "").unwrap();
        j
    }

    fn fixture(&self) -> PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    fn args_log(&self) -> PathBuf {
        self.dir.path().join("args.jsonl")
    }

    /// Appends entries as journalctl would print them.
    fn append(&self, entries: &[Value]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.fixture())
            .unwrap();
        for e in entries {
            writeln!(f, "{e}").unwrap();
        }
    }

    /// The arguments of every journalctl run so far that read entries to ship (with
    /// `--no-tail`), leaving out the runs that only look up the newest entry's boot and that
    /// boot's first entry.
    fn invocations(&self) -> Vec<Vec<String>> {
        self.all_invocations()
            .into_iter()
            .filter(|args| args.contains(&"--no-tail".to_owned()))
            .collect()
    }

    fn all_invocations(&self) -> Vec<Vec<String>> {
        read(&self.args_log())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn spawn(&self, s: &Setup, moto: &Moto, extra_env: &[(&str, &str)]) -> Child {
        let mut cmd = publisher(Some(&moto.url()));
        cmd.arg(s.config())
            .env(
                "CLOUDWATCH_PUBLISHER_JOURNALCTL",
                repo().join("tests/support/journalctl.py"),
            )
            .env("JOURNAL_FIXTURE", self.fixture())
            .env("JOURNAL_FIXTURE_ARGS_LOG", self.args_log())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }
}

/// One entry; `n` also makes the cursor and a timestamp `n` seconds after `base_us`.
fn entry(boot: &str, n: u64, base_us: i64, message: Value, extra: Value) -> Value {
    let mut e = json!({
        "__CURSOR": format!("s=fixture;i={n:x};b={boot}"),
        "__REALTIME_TIMESTAMP": (base_us + n as i64 * 1_000_000).to_string(),
        "_BOOT_ID": boot,
        "MESSAGE": message,
        "PRIORITY": "6",
        "_SYSTEMD_UNIT": "app.service",
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn config(journal: Value) -> Value {
    json!({
        "agent": {"instance": {"prefix": "test", "serial": "journal"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1, "debug": true},
        "logs": {"log_group_name": GROUP, "logs_collected": {"journal": journal}}
    })
}

fn stop(child: &mut Child, s: &Setup) {
    signal(child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", s.log());
}

/// `n` entries of boot B0 from another unit than app.service.
fn other_units(n: u64, base: i64) -> Vec<Value> {
    (0..n)
        .map(|n| {
            entry(
                B0,
                n,
                base,
                json!(format!("other {n}")),
                json!({"_SYSTEMD_UNIT": "other.service"}),
            )
        })
        .collect()
}

/// The journal of app.service only, into the stream `journal`.
fn app_only() -> Value {
    config(json!({"collect": true, "log_stream_name": "journal", "units": ["app.service"]}))
}

fn saved_cursor(s: &Setup) -> Option<String> {
    let state: Value =
        serde_json::from_str(&read(&s.dir.path().join("state/logs-state.json"))).ok()?;
    state["journal_cursor"].as_str().map(str::to_owned)
}

#[test]
fn this_boot_first_then_after_the_saved_cursor_each_entry_once() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 600_000) * 1000;
    let old_boot: Vec<Value> = (0..3)
        .map(|n| entry(B0, n, base, json!(format!("old boot {n}")), json!({})))
        .collect();
    let current = vec![
        entry(B1, 10, base, json!("started"), json!({})),
        // Not valid UTF-8: journalctl prints the bytes.
        entry(B1, 11, base, json!([104, 105, 32, 255]), json!({})),
        entry(B1, 12, base, json!(""), json!({})),
        entry(B1, 13, base, json!("  indented\n"), json!({})),
        // Twenty days old: CloudWatch refuses it; counted and logged, not retried.
        entry(
            B1,
            14,
            base - 20 * 86_400 * 1_000_000,
            json!("far too old"),
            json!({}),
        ),
        entry(B1, 15, base, json!("after the old one"), json!({})),
    ];
    j.append(&old_boot);
    j.append(&current);
    let s = Setup::new(config(json!(true)));
    let mut p = j.spawn(&s, &moto, &[]);
    let want = ["started", "hi \u{FFFD}", "  indented", "after the old one"];
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| {
        m.len() >= want.len()
    });
    assert_eq!(got, want, "this boot only, never the one before");
    let events = &moto.log_events(GROUP)["journal"];
    assert_eq!(
        events[0].0,
        (base + 10_000_000) / 1000,
        "event time is the entry's"
    );

    let running: Vec<Value> = (20..23)
        .map(|n| entry(B1, n, base, json!(format!("while running {n}")), json!({})))
        .collect();
    j.append(&running);
    moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| m.len() >= 7);
    stop(&mut p, &s);
    assert_eq!(
        saved_cursor(&s),
        Some(format!("s=fixture;i=16;b={B1}")),
        "{}",
        s.log()
    );

    let stopped: Vec<Value> = (30..33)
        .map(|n| entry(B1, n, base, json!(format!("while stopped {n}")), json!({})))
        .collect();
    j.append(&stopped);
    let mut p = j.spawn(&s, &moto, &[]);
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| m.len() >= 10);
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);

    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.extend((20..23).map(|n| format!("while running {n}")));
    want.extend((30..33).map(|n| format!("while stopped {n}")));
    assert_eq!(moto.messages(GROUP, "journal"), want);
    assert_eq!(got.len(), 10);

    // This boot is the newest entry's, asked of the journal, not journalctl's own idea of it
    // (which a sandboxed service in a container gets wrong).
    let probes = j.all_invocations();
    assert_eq!(
        probes[0],
        ["--output=json", "--lines=1", "--quiet"],
        "{probes:?}"
    );
    // Then that boot's first entry, where reading begins (saved before anything is
    // delivered, so a restart begins there too).
    assert_eq!(
        probes[1],
        ["--output=json", "--quiet", &format!("--boot={B1}")],
        "{probes:?}"
    );
    let calls = j.invocations();
    assert!(calls[0].contains(&format!("--boot={B1}")), "{calls:?}");
    assert!(calls[0].contains(&"--follow".to_owned()), "{calls:?}");
    assert!(
        calls[0].contains(&format!("--cursor=s=fixture;i=a;b={B1}")),
        "{calls:?}"
    );
    assert!(!calls[0].iter().any(|a| a.starts_with("--after-cursor")));
    // After the restart: a catch-up run over every boot from the saved cursor, then following
    // this boot from where that ended.
    let resumed = calls
        .iter()
        .position(|c| c.contains(&format!("--after-cursor=s=fixture;i=16;b={B1}")))
        .unwrap_or_else(|| panic!("restarted after the saved cursor: {calls:?}"));
    assert!(
        !calls[resumed].contains(&"--follow".to_owned())
            && !calls[resumed].iter().any(|a| a.starts_with("--boot")),
        "{calls:?}"
    );
    let follow = &calls[resumed + 1];
    assert!(
        follow.contains(&"--follow".to_owned())
            && follow.iter().any(|a| a.starts_with("--after-cursor="))
            && follow.contains(&format!("--boot={B1}")),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.contains(&"--output=json".to_owned())),
        "{calls:?}"
    );
    let log = s.log();
    assert!(
        log.contains("outside its time window") && log.contains("too_old=1"),
        "{log}"
    );
}

#[test]
fn a_dying_journalctl_is_restarted_after_the_last_entry_it_gave() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 60_000) * 1000;
    let entries: Vec<Value> = (0..7)
        .map(|n| entry(B1, n, base, json!(format!("entry {n}")), json!({})))
        .collect();
    j.append(&entries);
    let s = Setup::new(config(json!(true)));
    let mut p = j.spawn(&s, &moto, &[("JOURNAL_FIXTURE_EXIT_AFTER", "2")]);
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(60), |m| m.len() >= 7);
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    let want: Vec<String> = (0..7).map(|n| format!("entry {n}")).collect();
    assert_eq!(moto.messages(GROUP, "journal"), want);
    assert_eq!(got.len(), 7);
    let calls = j.invocations();
    assert!(calls.len() >= 4, "{calls:?}");
    assert!(
        calls[1].contains(&format!("--after-cursor=s=fixture;i=1;b={B1}")),
        "{calls:?}"
    );
    assert!(
        s.log().contains("journalctl ended; starting it again"),
        "{}",
        s.log()
    );
}

#[test]
fn entries_written_while_stopped_arrive_though_the_first_run_shipped_none() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 600_000) * 1000;
    let app = |boot: &str, n: u64, text: &str| {
        entry(boot, n, base, json!(format!("{text} {n}")), json!({}))
    };
    // This boot has only another unit's entries so far: the first run ships none, and so has
    // no cursor of an entry it delivered.
    j.append(&other_units(3, base));
    let s = Setup::new(app_only());
    let sock = NotifySocket::bind();
    let notify = [("NOTIFY_SOCKET", sock.path.to_str().unwrap())];
    let mut p = j.spawn(&s, &moto, &notify);
    sock.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(saved_cursor(&s), None, "nothing was delivered");

    // While it is stopped: the app logs at the end of this boot, the machine reboots, and the
    // app logs again in the next boot before the publisher starts.
    let mut want: Vec<Value> = (10..13).map(|n| app(B0, n, "before the reboot")).collect();
    want.extend((20..23).map(|n| app(B1, n, "after the reboot")));
    j.append(&want);
    let mut p = j.spawn(&s, &moto, &notify);
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| m.len() >= 6);
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    let want: Vec<String> = want
        .iter()
        .map(|e| e["MESSAGE"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got.len(), 6);
    assert_eq!(moto.messages(GROUP, "journal"), want, "{}", s.log());
}

#[test]
fn a_saved_cursor_gone_from_the_journal_is_replaced_by_this_boots_start_which_is_kept() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 600_000) * 1000;
    j.append(&other_units(2, base));
    let s = Setup::new(app_only());
    // A cursor of entries since vacuumed (or of a volatile journal before a reboot).
    let state = s.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("logs-state.json"),
        json!({"version": 1, "files": [], "journal_cursor": "s=vacuumed;i=99"}).to_string(),
    )
    .unwrap();
    let mut p = j.spawn(&s, &moto, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !s.log().contains("not in the journal any more") {
        assert!(std::time::Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    let saved: Value = serde_json::from_str(&read(&state.join("logs-state.json"))).unwrap();
    assert_eq!(saved["journal_cursor"], Value::Null, "{saved}");
    assert_eq!(
        saved["journal_start"],
        json!(format!("s=fixture;i=0;b={B0}")),
        "where reading began again is kept: {saved}"
    );

    let mut want: Vec<Value> = (10..12)
        .map(|n| {
            entry(
                B0,
                n,
                base,
                json!(format!("before the reboot {n}")),
                json!({}),
            )
        })
        .collect();
    want.extend((20..22).map(|n| {
        entry(
            B1,
            n,
            base,
            json!(format!("after the reboot {n}")),
            json!({}),
        )
    }));
    j.append(&want);
    let mut p = j.spawn(&s, &moto, &[]);
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| m.len() >= 4);
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(got.len(), 4);
    let want: Vec<String> = want
        .iter()
        .map(|e| e["MESSAGE"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(moto.messages(GROUP, "journal"), want, "{}", s.log());
}

#[test]
fn units_priority_and_patterns_choose_what_is_shipped() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 60_000) * 1000;
    j.append(&[
        entry(
            B1,
            0,
            base,
            json!("ssh warning"),
            json!({"_SYSTEMD_UNIT": "ssh.service", "PRIORITY": "4"}),
        ),
        entry(
            B1,
            1,
            base,
            json!("ssh info"),
            json!({"_SYSTEMD_UNIT": "ssh.service", "PRIORITY": "6"}),
        ),
        entry(
            B1,
            2,
            base,
            json!("cron error"),
            json!({"_SYSTEMD_UNIT": "cron.service", "PRIORITY": "3"}),
        ),
        entry(
            B1,
            3,
            base,
            json!("ssh noise error"),
            json!({"_SYSTEMD_UNIT": "ssh.service", "PRIORITY": "3"}),
        ),
        entry(
            B1,
            4,
            base,
            json!("ssh crit"),
            json!({"_SYSTEMD_UNIT": "ssh.service", "PRIORITY": "2"}),
        ),
    ]);
    let s = Setup::new(config(json!({
        "collect": true, "log_stream_name": "{instance_id}-journal", "units": ["ssh.service"],
        "priority": "warning", "exclude_patterns": ["noise"]
    })));
    let mut p = j.spawn(&s, &moto, &[]);
    moto.wait_for_messages(
        GROUP,
        "test-journal-journal",
        Duration::from_secs(30),
        |m| m.len() >= 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(
        moto.messages(GROUP, "test-journal-journal"),
        ["ssh warning", "ssh crit"]
    );
    let calls = j.invocations();
    assert!(
        calls[0].contains(&"--unit=ssh.service".to_owned()),
        "{calls:?}"
    );
    assert!(
        calls[0].contains(&"--priority=warning".to_owned()),
        "{calls:?}"
    );
    // The cursor moved past the filtered entries too.
    assert_eq!(saved_cursor(&s), Some(format!("s=fixture;i=4;b={B1}")));
}

#[test]
fn without_journalctl_it_says_so_once_and_ships_the_files() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    std::fs::write(&file, "").unwrap();
    let mut c = config(json!(true));
    c["logs"]["logs_collected"]["files"] =
        json!({"collect_list": [{"file_path": file, "from_beginning": true}]});
    let s = Setup::new(c);
    let mut p = publisher(Some(&moto.url()))
        .arg(s.config())
        .env(
            "CLOUDWATCH_PUBLISHER_JOURNALCTL",
            Path::new("/nonexistent/journalctl"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(&file, "still shipped\n").unwrap();
    moto.wait_for_messages(GROUP, "app.log", Duration::from_secs(30), |m| !m.is_empty());
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(
        s.log().matches("There is no journalctl").count(),
        1,
        "{}",
        s.log()
    );
}

#[test]
fn journald_collect_lists_each_read_on_their_own_with_their_own_positions() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 600_000) * 1000;
    let unit = |u: &str| json!({"_SYSTEMD_UNIT": u});
    let first: Vec<Value> = vec![
        entry(B1, 0, base, json!("ssh: accepted"), unit("ssh.service")),
        entry(B1, 1, base, json!("nginx: started"), unit("nginx.service")),
        entry(
            B1,
            2,
            base,
            json!("kernel: usb 1-1"),
            json!({"_TRANSPORT": "kernel", "_SYSTEMD_UNIT": "x"}),
        ),
        entry(B1, 3, base, json!("ssh: debug noise"), unit("ssh.service")),
        entry(
            B1,
            4,
            base,
            json!("root job"),
            json!({"_UID": "0", "_SYSTEMD_UNIT": "cron.service"}),
        ),
    ];
    j.append(&first);
    // The agent's own journald example, two readers into two groups, and a legacy journal too.
    let mut c = config(json!(true));
    c["logs"]["logs_collected"]["journald"] = json!({"collect_list": [
        {"log_group_name": "system-logs", "log_stream_name": "{instance_id}", "retention_in_days": 7,
         "units": ["ssh"], "filters": [{"type": "exclude", "expression": ".*debug.*"}]},
        {"log_group_name": "root-and-kernel", "log_stream_name": "journald",
         "matches": [{"_UID": "0"}, {"_TRANSPORT": "kernel"}]}
    ]});
    let s = Setup::new(c);
    let mut p = j.spawn(&s, &moto, &[]);
    let ssh = moto.wait_for_messages(
        "system-logs",
        "test-journal",
        Duration::from_secs(30),
        |m| !m.is_empty(),
    );
    let rk = moto.wait_for_messages(
        "root-and-kernel",
        "journald",
        Duration::from_secs(30),
        |m| m.len() >= 2,
    );
    let all = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| m.len() >= 5);
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(ssh, ["ssh: accepted"]);
    assert_eq!(rk, ["kernel: usb 1-1", "root job"]);
    assert_eq!(all.len(), 5, "journal: true still reads everything");
    assert_eq!(moto.log_groups()["system-logs"].0, Some(7));
    let calls = j.invocations();
    assert!(
        calls
            .iter()
            .any(|c| c.contains(&"--unit=ssh".to_owned())
                && c.contains(&"--priority=info".to_owned())),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.ends_with(&[
            "_UID=0".to_owned(),
            "+".to_owned(),
            "_TRANSPORT=kernel".to_owned()
        ])),
        "{calls:?}"
    );

    // Each reader has its own position; after a restart each goes on from it.
    let state: Value =
        serde_json::from_str(&read(&s.dir.path().join("state/logs-state.json"))).unwrap();
    assert_eq!(
        state["journald"]["system-logs/{instance_id}"]["cursor"],
        json!(format!("s=fixture;i=3;b={B1}")),
        "{state}"
    );
    assert_eq!(
        state["journald"]["root-and-kernel/journald"]["cursor"],
        json!(format!("s=fixture;i=4;b={B1}")),
        "{state}"
    );
    assert_eq!(
        state["journal_cursor"],
        json!(format!("s=fixture;i=4;b={B1}"))
    );
    j.append(&[
        entry(B1, 5, base, json!("ssh: closed"), unit("ssh.service")),
        entry(B1, 6, base, json!("root again"), json!({"_UID": "0"})),
    ]);
    let mut p = j.spawn(&s, &moto, &[]);
    moto.wait_for_messages(
        "root-and-kernel",
        "journald",
        Duration::from_secs(30),
        |m| m.len() >= 3,
    );
    moto.wait_for_messages(
        "system-logs",
        "test-journal",
        Duration::from_secs(30),
        |m| m.len() >= 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(
        moto.messages("system-logs", "test-journal"),
        ["ssh: accepted", "ssh: closed"]
    );
    assert_eq!(
        moto.messages("root-and-kernel", "journald"),
        ["kernel: usb 1-1", "root job", "root again"]
    );
}

#[test]
fn the_agents_own_journald_config_three_readers_into_three_groups() {
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 600_000) * 1000;
    let unit = |u: &str| json!({"_SYSTEMD_UNIT": u});
    j.append(&[
        entry(
            B1,
            0,
            base,
            json!("sshd: accepted key"),
            unit("sshd.service"),
        ),
        entry(
            B1,
            1,
            base,
            json!("systemd: a debug detail"),
            unit("systemd.service"),
        ),
        entry(
            B1,
            2,
            base,
            json!("nginx: WARN slow upstream"),
            unit("nginx.service"),
        ),
        entry(B1, 3, base, json!("nginx: 200 OK"), unit("nginx.service")),
        entry(
            B1,
            4,
            base,
            json!("auditd: Authentication failed for bob"),
            unit("auditd.service"),
        ),
        entry(
            B1,
            5,
            base,
            json!("fail2ban: Connection closed"),
            unit("fail2ban.service"),
        ),
        // The sample's expression is "Authentication*failed": an n repeated, no space after.
        entry(
            B1,
            6,
            base,
            json!("auditd: Authenticationfailed for eve"),
            unit("auditd.service"),
        ),
    ]);
    let mut c: Value = serde_json::from_str(&read(
        &repo().join("tests/data/agent-configs/agentrepo_validLogJournaldWithFilters.json"),
    ))
    .unwrap();
    c["agent"] = json!({"instance": {"prefix": "test", "serial": "agentjournal"}, "metrics_collection_interval": 3600,
                        "logs_collection_interval": 1});
    let s = Setup::new(c);
    let mut p = j.spawn(&s, &moto, &[]);
    let id = "test-agentjournal";
    let system = moto.wait_for_messages("system-logs", id, Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    let app = moto.wait_for_messages(
        "application-logs",
        &format!("{id}-app"),
        Duration::from_secs(30),
        |m| !m.is_empty(),
    );
    let security = moto.wait_for_messages(
        "security-logs",
        &format!("{id}-security"),
        Duration::from_secs(30),
        |m| !m.is_empty(),
    );
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(system, ["sshd: accepted key"], "the debug line is excluded");
    assert_eq!(
        app,
        ["nginx: WARN slow upstream"],
        "only ERROR and WARN are included"
    );
    assert_eq!(
        security,
        ["auditd: Authenticationfailed for eve"],
        "as the sample's regex says"
    );
    let groups = moto.log_groups();
    assert_eq!(
        (
            groups["system-logs"].0,
            groups["application-logs"].0,
            groups["security-logs"].0
        ),
        (Some(7), Some(30), Some(90))
    );
}

/// Entries printed so far by every journalctl run (taken by the pipe, read or not).
fn shown(prefix: &Path) -> u64 {
    let dir = prefix.parent().unwrap();
    let name = prefix.file_name().unwrap().to_str().unwrap().to_owned() + ".";
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&name) && !n.ends_with(".tmp")
        })
        .map(|e| read(&e.path()).trim().parse::<u64>().unwrap_or(0))
        .sum()
}

#[test]
fn journal_readers_share_the_memory_budget_and_lose_nothing_while_it_is_spent() {
    let moto = Moto::start();
    let j = Journal::new();
    // 3,000 entries for each of two readers, about 1 KiB each: 6 MiB, three times the budget.
    let per_reader = 3000u64;
    let base = (now_ms() - 2 * 3600 * 1000) * 1000;
    let body = "x".repeat(1000);
    let message = |n: u64| format!("{n:05} {body}");
    let entries: Vec<Value> = (0..2 * per_reader)
        .map(|n| {
            let unit = if n % 2 == 0 { "a.service" } else { "b.service" };
            entry(
                B1,
                n,
                base,
                json!(message(n)),
                json!({"_SYSTEMD_UNIT": unit}),
            )
        })
        .collect();
    j.append(&entries);
    let mut c = config(json!(false));
    c["logs"]["memory_budget_mib"] = json!(2);
    c["logs"]["logs_collected"]["journald"] = json!({"collect_list": [
        {"log_group_name": "budget-a", "log_stream_name": "s", "units": ["a"]},
        {"log_group_name": "budget-b", "log_stream_name": "s", "units": ["b"]}
    ]});
    let s = Setup::new(c);
    // CloudWatch is down: what the readers take stays in memory until it is back.
    moto.fail_next(
        "PutLogEvents",
        1_000_000,
        503,
        "ServiceUnavailableException",
    );
    let prefix = j.dir.path().join("shown");
    let mut p = j.spawn(
        &s,
        &moto,
        &[("JOURNAL_FIXTURE_SHOWN", prefix.to_str().unwrap())],
    );
    // Until the readers stop taking entries: the budget is spent.
    let mut last = (0, std::time::Instant::now());
    wait_until(
        "the journal readers to stop reading",
        Duration::from_secs(60),
        || {
            let n = shown(&prefix);
            if n != last.0 {
                last = (n, std::time::Instant::now());
            }
            n > 0 && last.1.elapsed() > Duration::from_secs(3)
        },
    );
    let taken = shown(&prefix);
    // 2 MiB holds about 2,030 of these events (1,006 bytes and 26 of overhead each); beyond
    // that only each reader's pipe and read buffer (64 KiB each, about 50 entries) hold more.
    // Without the budget each reader would hold three batches of 1 MiB: all 6,000.
    assert!(
        (1500..=2300).contains(&taken),
        "{taken} entries were taken from journalctl while nothing could be delivered"
    );
    assert!(moto.messages("budget-a", "s").is_empty());

    // Back: every entry arrives, once, in order, for each reader.
    moto.fail_next("PutLogEvents", 0, 503, "ServiceUnavailableException");
    for (group, first) in [("budget-a", 0), ("budget-b", 1)] {
        let got = moto.wait_for_messages(group, "s", Duration::from_secs(120), |m| {
            m.len() >= per_reader as usize
        });
        let want: Vec<String> = (0..per_reader).map(|k| message(2 * k + first)).collect();
        assert!(
            got == want,
            "{group}: {} messages, not the {per_reader} in order",
            got.len()
        );
    }
    stop(&mut p, &s);
}

#[test]
fn a_message_that_is_not_utf8_costs_about_its_size_in_memory() {
    // journalctl prints a message that is not valid UTF-8 as a list of numbers, one per byte:
    // 3 MiB of text with one bad byte is an entry of 12 MiB of JSON. Held as a generic value
    // first, each number took 32 bytes, about 100 MiB for this one message.
    const SIZE: usize = 3 << 20;
    let moto = Moto::start();
    let j = Journal::new();
    let base = (now_ms() - 60_000) * 1000;
    let mut bytes: Vec<u8> = (0..SIZE).map(|i| b'a' + (i % 26) as u8).collect();
    bytes.push(0xFF);
    j.append(&[
        entry(B0, 1, base, json!(bytes), json!({})),
        entry(B0, 2, base, json!("after it"), json!({})),
    ]);
    let s = Setup::new(app_only());
    let mut p = j.spawn(&s, &moto, &[]);
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(60), |m| {
        m.last().is_some_and(|m| m == "after it")
    });
    let peak_mib = peak_rss_kib(&p) / 1024;
    stop(&mut p, &s);
    let mut want = String::from_utf8_lossy(&bytes).into_owned();
    want.push_str("after it");
    assert_eq!(
        got.concat(),
        want,
        "the message in pieces, then the next one"
    );
    assert!(
        peak_mib < 64,
        "a 3 MiB message (12 MiB of JSON) took the publisher to {peak_mib} MiB"
    );
}

#[test]
fn a_journal_group_the_role_may_not_write_is_parked_then_delivered_from_the_cursor() {
    let moto = Moto::start();
    moto.deny_log_groups(GROUP);
    let j = Journal::new();
    let base = (now_ms() - 60_000) * 1000;
    let first: Vec<Value> = (0..5)
        .map(|n| entry(B0, n, base, json!(format!("refused {n}")), json!({})))
        .collect();
    j.append(&first);
    let s = Setup::new(app_only());
    let mut p = j.spawn(&s, &moto, &[]);
    wait_until(
        "the journal's group is parked",
        Duration::from_secs(30),
        || s.log().contains("it is parked"),
    );
    // Written while parked; the reader is gone until the next try.
    let later: Vec<Value> = (5..8)
        .map(|n| entry(B0, n, base, json!(format!("refused {n}")), json!({})))
        .collect();
    j.append(&later);
    moto.deny_log_groups("");
    let want: Vec<String> = (0..8).map(|n| format!("refused {n}")).collect();
    let got = moto.wait_for_messages(GROUP, "journal", Duration::from_secs(60), |m| {
        m.len() >= want.len()
    });
    stop(&mut p, &s);
    assert_eq!(got, want, "each once, in order");
    assert_eq!(s.log().matches("it is parked").count(), 1, "said once");
}
