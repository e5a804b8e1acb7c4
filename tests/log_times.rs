//! Log events carry the time written in the line (`timestamp_format`, `timezone`,
//! `trim_timestamp`), also when they are sent hours later, after an outage.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use amazon_cloudwatch_publisher::sources::files::timestamp::civil_from_days;
use serde_json::{json, Value};
use support::*;

const GROUP: &str = "test-times";

/// `ms` as `YYYY-MM-DD HH:MM:SS.mmm`, `offset_s` east of UTC.
fn format(ms: i64, offset_s: i64) -> String {
    let local = ms + offset_s * 1000;
    let secs = local.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        local.rem_euclid(1000)
    )
}

fn config(file: &Path, entry: Value) -> Value {
    let mut e = json!({"file_path": file, "from_beginning": true});
    for (k, v) in entry.as_object().unwrap() {
        e[k] = v.clone();
    }
    json!({
        "agent": {"instance": {"prefix": "test", "serial": "times"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1, "debug": true},
        "logs": {"log_group_name": GROUP, "logs_collected": {"files": {"collect_list": [e]}}}
    })
}

fn spawn(s: &Setup, url: &str, tz: Option<&str>) -> Child {
    let mut cmd = publisher(Some(url));
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(tz) = tz {
        cmd.env("TZ", tz);
    }
    cmd.spawn().unwrap()
}

#[test]
fn lines_written_during_an_outage_arrive_with_their_own_times() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    std::fs::write(&file, "").unwrap();
    let s = Setup::new(config(
        &file,
        json!({"timestamp_format": "%Y-%m-%d %H:%M:%S.%f", "timezone": "UTC"}),
    ));
    // Nothing listens yet: CloudWatch is away.
    let mut p = spawn(&s, &format!("http://127.0.0.1:{port}"), None);
    let now = now_ms();
    let hours_ago = |h: i64| now - h * 3_600_000 + 123;
    let lines = vec![
        format!("{} ERROR three hours ago", format(hours_ago(3), 0)),
        "    at a continuation line without a time".to_owned(),
        format!("{} WARN two hours ago", format(hours_ago(2), 0)),
        format!(
            "{} far too old to be stored",
            format(now - 20 * 86_400_000, 0)
        ),
        format!("{} INFO one hour ago", format(hours_ago(1), 0)),
    ];
    append_lines(&file, &lines);
    std::thread::sleep(Duration::from_secs(3));
    let moto = Moto::start_on(port);
    let events = |m: &Moto| m.log_events(GROUP).remove("app.log").unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while events(&moto).len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            events(&moto),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, &s);
    let got = events(&moto);
    let want = vec![
        (hours_ago(3), lines[0].clone()),
        (hours_ago(3), lines[1].clone()),
        (hours_ago(2), lines[2].clone()),
        (hours_ago(1), lines[4].clone()),
    ];
    assert_eq!(
        got, want,
        "each event at the time its line gives; the continuation at its line's"
    );
    let log = s.log();
    assert!(
        log.contains("outside its time window") && log.contains("too_old=1"),
        "{log}"
    );
}

#[test]
fn local_time_and_trimmed_timestamps() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("local.log");
    std::fs::write(&file, "").unwrap();
    let s = Setup::new(config(
        &file,
        json!({"timestamp_format": "%Y-%m-%d %H:%M:%S.%f", "timezone": "Local", "trim_timestamp": true,
               "exclude_patterns": ["^DEBUG"]}),
    ));
    // This process's local time is three hours ahead of UTC.
    let mut p = spawn(&s, &moto.url(), Some("<+03>-3"));
    let at = now_ms() - 600_000;
    let lines = vec![
        format!("{} INFO written in local time", format(at, 3 * 3600)),
        format!(
            "{} DEBUG left out: filters see the text without its time",
            format(at, 3 * 3600)
        ),
        format!("[{}] bracketed", format(at + 1000, 3 * 3600)),
    ];
    append_lines(&file, &lines);
    let got = moto.wait_for_messages(GROUP, "local.log", Duration::from_secs(30), |m| {
        m.len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, &s);
    assert_eq!(got, ["INFO written in local time", "[] bracketed"]);
    let times: Vec<i64> = moto.log_events(GROUP)["local.log"]
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(times, [at, at + 1000]);
}

#[test]
fn a_bad_timestamp_format_or_timezone_is_a_config_error() {
    let s = Setup::new(config(
        Path::new("/var/log/x.log"),
        json!({"timestamp_format": "%Y-%Q", "timezone": "Mars"}),
    ));
    let mut cmd = publisher(None);
    cmd.arg("validate").arg(s.config());
    let out = run(cmd, Duration::from_secs(30));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("logs.logs_collected.files.collect_list[0].timestamp_format: %Q"),
        "{stderr}"
    );
    assert!(
        stderr.contains("logs.logs_collected.files.collect_list[0].timezone: \"Mars\""),
        "{stderr}"
    );
}

#[test]
fn the_agents_timestamp_format_without_a_year_first() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.log");
    std::fs::write(&file, "").unwrap();
    let text = read(&repo().join("tests/data/agent-configs/agentrepo_no_skip_log_timestamp.json"))
        .replace(
            "/tmp/not-amazon-cloudwatch-agent.log",
            file.to_str().unwrap(),
        );
    let mut c: Value = serde_json::from_str(&text).unwrap();
    c["agent"] = json!({"instance": {"prefix": "test", "serial": "agentts"}, "metrics_collection_interval": 3600,
                        "logs_collection_interval": 1});
    c["logs"]["logs_collected"]["files"]["collect_list"][0]["timezone"] = json!("UTC");
    let s = Setup::new(c);
    let mut p = spawn(&s, &moto.url(), None);
    std::thread::sleep(Duration::from_secs(2));
    // "%H:%M:%S %y %b %d": 09:08:07 on the day two days ago.
    let at = (now_ms() / 86_400_000 - 2) * 86_400_000 + (9 * 3600 + 8 * 60 + 7) * 1000;
    let (y, m, d) = civil_from_days(at / 86_400_000);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m as usize - 1];
    append_lines(
        &file,
        &[format!("09:08:07 {:02} {month} {d} agent started", y % 100)],
    );
    moto.wait_for_messages(
        "amazon-cloudwatch-agent.log",
        "agent.log",
        Duration::from_secs(30),
        |m| !m.is_empty(),
    );
    stop_gracefully(&mut p, &s);
    let events = &moto.log_events("amazon-cloudwatch-agent.log")["agent.log"];
    assert_eq!(events[0].0, at);
}
