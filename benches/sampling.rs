//! What one round of the agent's sections costs: every section with every measurement (per-CPU
//! as well as total CPU, every disk, device and interface, procstat on this process), sampled
//! in this process, reporting the thread CPU time per round.
//!
//! `cargo bench --bench sampling` runs BENCH_ROUNDS rounds (default 200); under `cargo test` it
//! runs three and checks that every section gave values.

use std::time::{Duration, Instant};

use amazon_cloudwatch_publisher::config;
use amazon_cloudwatch_publisher::pipelines::metrics::{AgentLabels, Sampler};
use amazon_cloudwatch_publisher::sources::host_metrics::{Host, SECTIONS};
use serde_json::{json, Map, Value};

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A config with every section and every measurement.
fn everything(pid_file: &std::path::Path) -> Value {
    let mut collected = Map::new();
    for s in SECTIONS {
        let names: Vec<&str> = s.fields.iter().map(|f| f.name).collect();
        let mut section = json!({"measurement": names, "metrics_collection_interval": 60});
        match s.key {
            "cpu" | "disk" | "diskio" | "net" => section["resources"] = json!(["*"]),
            _ => {}
        }
        if s.key == "procstat" {
            section["pid_file"] = json!(pid_file);
            section = json!([section]);
        }
        collected.insert(s.key.into(), section);
    }
    json!({"agent": {"instance": {"serial": "bench"}},
           "metrics": {"metrics_collected": collected, "append_dimensions": {"InstanceId": "${aws:InstanceId}"}}})
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds: u32 = if bench {
        std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200)
    } else {
        3
    };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bench.pid");
    std::fs::write(&pid_file, std::process::id().to_string()).unwrap();
    let text = everything(&pid_file).to_string();
    let config = config::parse(std::path::Path::new("bench.json"), &text).unwrap();
    let collected = config.metrics.collected.as_ref().unwrap();
    let labels = AgentLabels::for_config(&config, "bench-1", "bench".into()).unwrap();
    let start = Instant::now();
    let mut sampler = Sampler::agent(collected, Host::from_env(), labels, start);
    let (mut cpu, mut records, mut values) = (Duration::ZERO, 0, 0);
    let mut sections_seen = std::collections::BTreeSet::new();
    for i in 0..rounds {
        let now = start + Duration::from_secs(100 * (u64::from(i) + 1));
        let before = thread_cpu();
        let out = sampler.sample_due(now);
        cpu += thread_cpu() - before;
        records = out.len();
        values = out.iter().map(|r| r.values.len()).sum::<usize>();
        for r in &out {
            for v in &r.values {
                sections_seen.insert(v.name.split('_').next().unwrap_or_default().to_owned());
            }
        }
    }
    let per_round = cpu / rounds;
    // Each section alone, to see where the time goes.
    let mut by_section = Vec::new();
    for c in &collected.sections {
        let one = amazon_cloudwatch_publisher::config::Collected {
            sections: vec![c.clone()],
            ..collected.clone()
        };
        let labels = AgentLabels::for_config(&config, "bench-1", "bench".into()).unwrap();
        let mut s = Sampler::agent(&one, Host::from_env(), labels, start);
        let n = rounds.min(50);
        let before = thread_cpu();
        for i in 0..n {
            s.sample_due(start + Duration::from_secs(100 * (u64::from(i) + 1)));
        }
        by_section.push(format!(
            "{} {:.2} ms",
            c.section,
            (thread_cpu() - before).as_secs_f64() * 1000.0 / f64::from(n)
        ));
    }
    println!("each section alone: {}", by_section.join(", "));
    println!(
        "sampling every section: {:.2} ms of CPU per round (mean of {rounds}), {records} records, {values} values",
        per_round.as_secs_f64() * 1000.0
    );
    if !bench {
        for key in [
            "cpu",
            "mem",
            "swap",
            "disk",
            "diskio",
            "net",
            "netstat",
            "processes",
            "procstat",
            "system",
        ] {
            assert!(
                sections_seen.contains(key),
                "{key} gave no values: {sections_seen:?}"
            );
        }
    }
}
