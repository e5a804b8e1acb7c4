//! `status`: what the running publisher is doing, from the status file it keeps in its state
//! directory. Needs no more rights than reading that directory (the service user and the `adm`
//! group can), and not the config, which only its owner may read: the state directory is
//! taken from the config when it can be read, else the default one is used.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::config::DEFAULT_STATE_DIR;
use crate::error::AppError;
use crate::sources::files::timestamp::utc_text;
use crate::status::{self, StatusFile};

pub fn run(config: &Path, state_dir: Option<&Path>, as_json: bool) -> Result<(), AppError> {
    let dir = match state_dir {
        Some(d) => d.to_owned(),
        None => state_dir_of(config),
    };
    let path = status::path(&dir);
    let s = status::read(&path)?;
    let running = status::is_running(&s);
    let now = crate::clock::wall_ms();
    if as_json {
        let mut v = serde_json::to_value(&s).expect("a status serializes");
        v["running"] = json!(running);
        v["status_file"] = json!(path);
        println!("{v}");
    } else {
        print!("{}", render(&s, running, now));
    }
    if running {
        Ok(())
    } else {
        Err(AppError::NotRunning)
    }
}

/// `agent.state_dir` of the config, if the config can be read as JSON; the default otherwise
/// (an unreadable config is not an error here: the status file says what matters).
fn state_dir_of(config: &Path) -> PathBuf {
    std::fs::read(config)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["agent"]["state_dir"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// "2026-12-01 00:40:03 UTC (12 s ago)".
fn when(ms: i64, now: i64) -> String {
    format!("{} UTC ({})", utc_text(ms.div_euclid(1000)), ago(now - ms))
}

fn ago(ms: i64) -> String {
    if ms < 0 {
        return format!("in {}", span(-ms));
    }
    format!("{} ago", span(ms))
}

fn span(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// The status for a person.
fn render(s: &StatusFile, running: bool, now: i64) -> String {
    let mut out = String::new();
    let state = if running {
        format!("running (pid {})", s.pid)
    } else if s.state == "stopped" {
        "stopped".to_owned()
    } else {
        format!("not running (pid {} is gone without stopping)", s.pid)
    };
    let _ = writeln!(out, "amazon-cloudwatch-publisher: {state}");
    let _ = writeln!(out, "  started       {}", when(s.started_ms, now));
    let _ = writeln!(out, "  status as of  {}", when(s.written_ms, now));
    let _ = writeln!(out, "  instance id   {}", s.instance_id);
    let _ = writeln!(out, "  region        {}", s.region);
    let _ = writeln!(out, "  credentials   {}", s.credentials);
    let _ = writeln!(out, "  status line   {}", s.line);
    let m = &s.metrics;
    let accepted = m
        .last_accepted_ms
        .map_or_else(|| "not yet".to_owned(), |t| when(t, now));
    let _ = writeln!(out, "metrics to {}", m.namespace);
    let _ = writeln!(out, "  last accepted {accepted}");
    let _ = writeln!(
        out,
        "  spool         {} requests, {}",
        m.spooled_requests,
        bytes(m.spooled_bytes)
    );
    if let Some(e) = &m.error {
        let _ = writeln!(out, "  failing       {e}");
    }
    if s.logs.is_empty() {
        let _ = writeln!(out, "logs: none shipped");
    } else {
        let _ = writeln!(out, "logs");
    }
    for l in &s.logs {
        let _ = writeln!(out, "  {} -> {} / {}", l.source, l.group, l.stream);
        let mut facts = Vec::new();
        if let Some(b) = l.behind_bytes {
            facts.push(format!("behind by {}", bytes(b)));
        }
        facts.push(format!("{} events delivered", l.events));
        let _ = writeln!(out, "      {}", facts.join("; "));
        let newest = l
            .newest_event_ms
            .map_or_else(|| "none yet".to_owned(), |t| when(t, now));
        let _ = writeln!(out, "      newest event delivered: {newest}");
        if let (Some(e), Some(t)) = (&l.error, l.error_ms) {
            let _ = writeln!(out, "      last error {}: {e}", when(t, now));
        }
        if let Some(t) = l.parked_until_ms {
            let _ = writeln!(
                out,
                "      parked: CloudWatch refuses this destination; its lines wait on disk, tried again {}",
                when(t, now)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{LogStatus, MetricsStatus};

    #[test]
    fn a_person_reads_each_part() {
        let now = 1_796_040_000_000; // 2026-11-30 ...
        let s = StatusFile {
            started_ms: now - 3_600_000,
            written_ms: now - 2_000,
            instance_id: "rpi-1".into(),
            region: "eu-west-1".into(),
            credentials: "Cognito user".into(),
            line: "rpi-1: metrics to System/Pi every 60s (accepted)".into(),
            metrics: MetricsStatus {
                namespace: "System/Pi".into(),
                last_accepted_ms: Some(now - 30_000),
                error: None,
                spooled_requests: 2,
                spooled_bytes: 20_480,
            },
            logs: vec![LogStatus {
                source: "/var/log/syslog".into(),
                group: "g".into(),
                stream: "syslog".into(),
                behind_bytes: Some(0),
                events: 12,
                newest_event_ms: Some(now - 5_000),
                delivered_ms: Some(now - 4_000),
                error: Some("service unavailable".into()),
                error_ms: Some(now - 600_000),
                parked_until_ms: Some(now + 1_200_000),
            }],
            ..StatusFile::new()
        };
        let text = render(&s, true, now);
        for want in [
            &format!("running (pid {})", std::process::id()),
            "region        eu-west-1",
            "last accepted 2026-11-30",
            "(30 s ago)",
            "spool         2 requests, 20.0 KiB",
            "/var/log/syslog -> g / syslog",
            "behind by 0 B; 12 events delivered",
            "(5 s ago)",
            "last error 2026-11-30",
            "(10 min ago): service unavailable",
            "parked: CloudWatch refuses this destination",
            "(in 20 min)",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let stopped = StatusFile {
            state: "stopped".into(),
            ..s.clone()
        };
        assert!(render(&stopped, false, now).starts_with("amazon-cloudwatch-publisher: stopped"));
        assert!(render(&s, false, now).contains("is gone without stopping"));
    }
}
