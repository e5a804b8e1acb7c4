//! The CloudWatch Agent's own configs (tests/data/agent-configs, copied from its repository and
//! documentation) through the real binary to moto: what arrives has the names, units and
//! dimensions the README's table gives, the values agree with readings the test takes itself,
//! and a Raspberry Pi 4 and a Pi Zero 2 (tests/data/hosts) give their temperature and
//! throttling flags.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// A row of the README's metrics table.
#[derive(Debug, Clone)]
struct Row {
    section: String,
    unit: String,
}

/// The README's table of every measurement, by published name.
fn readme_table() -> BTreeMap<String, Row> {
    let readme = read(&repo().join("README.md"));
    let mut rows = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 9 || !cells[1].starts_with('`') || !cells[2].starts_with('`') {
            continue;
        }
        let tick = |s: &str| s.trim_matches('`').to_owned();
        rows.insert(
            tick(cells[2]),
            Row {
                section: tick(cells[1]),
                unit: cells[3].to_owned(),
            },
        );
    }
    assert!(rows.len() > 100, "the README's metrics table was not found");
    rows
}

/// The dimension names a section's series carry besides host and the configured ones.
fn section_dimensions(section: &str) -> &'static [&'static str] {
    match section {
        "cpu" => &["cpu"],
        "disk" => &["path", "device", "fstype"],
        "diskio" => &["name"],
        "net" => &["interface"],
        "procstat" => &[
            "process_name",
            "exe",
            "pattern",
            "pidfile",
            "pid_file",
            "pid_finder",
        ],
        "temperature" => &["sensor"],
        "summary" => &["InstanceId", "Hostname"],
        _ => &[],
    }
}

/// An agent config made runnable here: its `logs` section left out (file keys such as
/// `timezone` belong to the logs work), the publisher's own instance, and the agent's logfile
/// path left to the test.
fn runnable(name: &str) -> Value {
    let mut c: Value =
        serde_json::from_str(&read(&repo().join("tests/data/agent-configs").join(name))).unwrap();
    c.as_object_mut().unwrap().remove("logs");
    let agent = c
        .as_object_mut()
        .unwrap()
        .entry("agent")
        .or_insert_with(|| json!({}));
    agent["instance"] = json!({"prefix": "test", "serial": "agent"});
    // The test's own log and state (Setup puts them in its directory).
    let agent = agent.as_object_mut().unwrap();
    agent.remove("logfile");
    agent.remove("state_dir");
    c
}

/// Runs `--once` on `config` against moto; returns the datums that arrived and the log.
fn publish_once(moto: &Moto, config: &Value, env: &[(&str, &Path)]) -> (Vec<Datum>, String) {
    let s = Setup::new(config.clone());
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg("--once").arg(s.config());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(cmd, Duration::from_secs(60));
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{}", s.log());
    (moto.metrics(), s.log())
}

/// The (renamed) published names, units and section a config asks for.
fn asked(config: &Value, table: &BTreeMap<String, Row>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let collected = config["metrics"]["metrics_collected"].as_object().unwrap();
    for (section, v) in collected {
        let entries: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for e in entries {
            if section == "cpu" && e["totalcpu"] == json!(false) && e.get("resources").is_none() {
                continue; // nothing is collected, as with the agent (a warning says so)
            }
            for m in e["measurement"].as_array().into_iter().flatten() {
                let (name, rename, unit) = match m {
                    Value::String(n) => (n.clone(), None, None),
                    o => (
                        o["name"].as_str().unwrap().to_owned(),
                        o["rename"].as_str().map(str::to_owned),
                        o["unit"].as_str().map(str::to_owned),
                    ),
                };
                let field = name
                    .strip_prefix(&format!("{section}_"))
                    .unwrap_or(&name)
                    .to_owned();
                let published = if section == "procstat" && field == "pid_count" {
                    "procstat_lookup_pid_count".to_owned()
                } else {
                    format!("{section}_{field}")
                };
                let Some(row) = table.get(&published) else {
                    continue; // not collected here (a warning says so)
                };
                out.push((
                    rename.unwrap_or(published),
                    unit.unwrap_or_else(|| row.unit.clone()),
                    row.section.clone(),
                ));
            }
        }
    }
    out
}

/// Processes for the procstat examples to find: named `agent` and `plugin` (their `exe`), one
/// whose command line holds `amazon-cloudwatch-agent` (a `pattern`), and two with pid files.
/// Killed on drop.
struct Processes {
    dir: tempfile::TempDir,
    children: Vec<std::process::Child>,
}

impl Processes {
    fn start() -> Processes {
        let dir = tempfile::tempdir().unwrap();
        let sleep = PathBuf::from("/bin/sleep");
        let mut children = Vec::new();
        for name in ["agent", "plugin"] {
            let copy = dir.path().join(name);
            // Copied by `cp`, not here: a copy open for writing in this process would be
            // inherited by a child another test forks meanwhile, and executing it would then
            // fail with "text file busy".
            let copied = std::process::Command::new("cp")
                .arg(&sleep)
                .arg(&copy)
                .status()
                .unwrap();
            assert!(copied.success());
            children.push(std::process::Command::new(copy).arg("120").spawn().unwrap());
        }
        children.push(
            std::process::Command::new("sh")
                .args(["-c", "sleep 120", "amazon-cloudwatch-agent"])
                .spawn()
                .unwrap(),
        );
        for n in 1..=2 {
            let child = std::process::Command::new(&sleep)
                .arg("120")
                .spawn()
                .unwrap();
            std::fs::write(
                dir.path().join(format!("example{n}.pid")),
                format!("{}\n", child.id()),
            )
            .unwrap();
            children.push(child);
        }
        Processes { dir, children }
    }

    /// The examples' `/var/run/exampleN.pid` → this test's pid files.
    fn point_pid_files(&self, config: &mut Value) {
        let Some(list) = config
            .pointer_mut("/metrics/metrics_collected/procstat")
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for e in list {
            if let Some(p) = e["pid_file"].as_str() {
                let name = Path::new(p).file_name().unwrap().to_owned();
                e["pid_file"] = json!(self.dir.path().join(name));
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn pasted_agent_configs_publish_the_agents_names_units_and_dimensions() {
    let table = readme_table();
    let host = hostname();
    let procs = Processes::start();
    for name in [
        "agentrepo_basic_config_linux.json",
        "agentrepo_standard_config_linux.json",
        "agentrepo_advanced_config_linux.json",
        "agentrepo_delta_config_linux.json",
        "awsdocs_complete_linux_example_with_aggregation_dimensions.json",
        "awsdocs_basic_system_metrics_configuration.json",
        "awsdocs_procstat_exe_example.json",
        "awsdocs_procstat_pid_file_example.json",
        "agentrepo_procstat_memory_swap_config.json",
    ] {
        let moto = Moto::start();
        let mut config = runnable(name);
        procs.point_pid_files(&mut config);
        let (datums, log) = publish_once(&moto, &config, &[]);
        assert!(!datums.is_empty(), "{name}: nothing arrived\n{log}");
        let namespace = config["metrics"]["namespace"].as_str().unwrap_or("CWAgent");
        let asked = asked(&config, &table);
        let append = config["metrics"]["append_dimensions"].as_object();
        let aggregation = config["metrics"]["aggregation_dimensions"].as_array();
        // Every section's own append_dimensions.
        let section_append: BTreeSet<String> = config["metrics"]["metrics_collected"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|v| match v {
                Value::Array(items) => items.clone(),
                o => vec![o.clone()],
            })
            .flat_map(|v| {
                v["append_dimensions"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        let mut seen = BTreeSet::new();
        for d in &datums {
            assert_eq!(d.namespace, namespace, "{name}: {d:?}");
            let (published, unit, section) = asked
                .iter()
                .find(|a| a.0 == d.name)
                .unwrap_or_else(|| panic!("{name}: {} was not asked for: {d:?}", d.name));
            assert_eq!(d.unit.as_deref(), Some(unit.as_str()), "{name}: {d:?}");
            seen.insert(published.clone());
            for (k, v) in &d.dimensions {
                assert!(
                    !v.contains("${"),
                    "{name}: a placeholder was sent as text: {d:?}"
                );
                let known = k == "host"
                    || section_dimensions(section).contains(&k.as_str())
                    || append.is_some_and(|a| a.contains_key(k))
                    || section_append.contains(k);
                assert!(known, "{name}: unexpected dimension {k}: {d:?}");
            }
            let rolled_up = aggregation.is_some_and(|sets| {
                sets.iter().any(|set| {
                    let set: BTreeSet<&str> = set
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap())
                        .collect();
                    set == d.dimensions.keys().map(String::as_str).collect()
                })
            });
            if append.is_some() {
                // As the agent: with append_dimensions, no host; the instance id is ours.
                assert!(!d.dimensions.contains_key("host"), "{name}: {d:?}");
                if !rolled_up {
                    assert_eq!(
                        d.dimensions.get("InstanceId").map(String::as_str),
                        Some("test-agent"),
                        "{name}: {d:?}"
                    );
                }
            } else if !rolled_up {
                assert_eq!(d.dimensions.get("host"), Some(&host), "{name}: {d:?}");
            }
        }
        // Everything asked for that this machine has arrived (processes that do not run here
        // still give their pid_count).
        for (published, _, section) in &asked {
            let net_here = section == "net"; // eth0 may not exist here
            assert!(
                seen.contains(published) || net_here,
                "{name}: {published} did not arrive: {seen:?}\n{log}"
            );
        }
        if name.contains("advanced") {
            assert!(log.contains("ethtool") && log.contains("left out"), "{log}");
        }
    }
}

/// /proc/stat's times of each CPU (`cpu0`, ...): user (less guest) and idle, in seconds.
fn cpu_seconds() -> HashMap<String, (f64, f64)> {
    // SAFETY: sysconf only reads a value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    read(Path::new("/proc/stat"))
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<f64>().unwrap();
            (f[0].to_owned(), ((n(1) - n(9)) / hz, n(4) / hz))
        })
        .collect()
}

fn meminfo(key: &str) -> f64 {
    read(Path::new("/proc/meminfo"))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap()
        * 1024.0
}

/// statvfs of `path`: (total, free for users, used) in bytes.
fn statvfs(path: &str) -> (f64, f64, f64) {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: a zeroed statvfs is a valid buffer and `c` a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    let f = s.f_frsize as f64;
    (
        s.f_blocks as f64 * f,
        s.f_bavail as f64 * f,
        (s.f_blocks - s.f_bfree) as f64 * f,
    )
}

fn one<'d>(datums: &'d [Datum], name: &str, dims: &[(&str, &str)]) -> &'d Datum {
    let found: Vec<&Datum> = datums
        .iter()
        .filter(|d| {
            d.name == name
                && dims
                    .iter()
                    .all(|(k, v)| d.dimensions.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {dims:?}: {found:?}");
    found[0]
}

#[test]
fn values_agree_with_the_machines_own_readings() {
    let moto = Moto::start();
    let config = json!({
        "agent": {"instance": {"prefix": "test", "serial": "values"}},
        "metrics": {"metrics_collected": {
            "cpu": {"resources": ["*"], "totalcpu": false,
                    "measurement": ["time_user", "time_idle", "usage_user", "usage_system", "usage_idle",
                                    "usage_nice", "usage_iowait", "usage_irq", "usage_softirq", "usage_steal"]},
            "mem": {"measurement": ["total", "available", "used_percent"]},
            "disk": {"resources": ["/"], "measurement": ["total", "free", "used", "used_percent"]},
            "system": {"measurement": ["n_cpus", "uptime"]}
        }}
    });
    let before = cpu_seconds();
    let (datums, log) = publish_once(&moto, &config, &[]);
    let after = cpu_seconds();
    assert_eq!(before.len(), after.len());
    for (cpu, (user0, idle0)) in &before {
        let (user1, idle1) = after[cpu];
        let user = one(&datums, "cpu_time_user", &[("cpu", cpu)]).value;
        let idle = one(&datums, "cpu_time_idle", &[("cpu", cpu)]).value;
        assert!(
            (*user0..=user1).contains(&user),
            "{cpu}: {user0} <= {user} <= {user1}"
        );
        assert!(
            (*idle0..=idle1).contains(&idle),
            "{cpu}: {idle0} <= {idle} <= {idle1}"
        );
        let shares: f64 = [
            "usage_user",
            "usage_system",
            "usage_idle",
            "usage_nice",
            "usage_iowait",
            "usage_irq",
            "usage_softirq",
            "usage_steal",
        ]
        .iter()
        .map(|m| one(&datums, &format!("cpu_{m}"), &[("cpu", cpu)]).value)
        .sum();
        assert!(
            (shares - 100.0).abs() < 0.5,
            "{cpu}: the shares add up to {shares}"
        );
    }
    assert!(
        datums
            .iter()
            .all(|d| d.dimensions.get("cpu").is_none_or(|c| c != "cpu-total")),
        "totalcpu false"
    );
    assert_eq!(one(&datums, "mem_total", &[]).value, meminfo("MemTotal"));
    let available = one(&datums, "mem_available", &[]).value;
    assert!(
        (available / meminfo("MemAvailable") - 1.0).abs() < 0.2,
        "{available}"
    );
    let (total, free, used) = statvfs("/");
    let disk = |m: &str| one(&datums, m, &[("path", "/")]).value;
    assert_eq!(disk("disk_total"), total);
    assert!(
        (disk("disk_free") - free).abs() < 0.01 * total,
        "{} {free}",
        disk("disk_free")
    );
    assert!((disk("disk_used") - used).abs() < 0.01 * total);
    let percent = disk("disk_used_percent");
    assert!(
        (percent - 100.0 * used / (used + free)).abs() < 1.0,
        "{percent}"
    );
    assert_eq!(
        one(&datums, "system_n_cpus", &[]).value,
        before.len() as f64
    );
    assert!(one(&datums, "system_uptime", &[]).value > 0.0, "{log}");
}

fn validate(s: &Setup) -> std::process::Output {
    let mut cmd = publisher(None);
    cmd.arg("validate").arg(s.config());
    run(cmd, Duration::from_secs(30))
}

fn pi_config() -> Value {
    let mut c: Value =
        serde_json::from_str(&read(&repo().join("configs/raspberry-pi.json"))).unwrap();
    let o = c.as_object_mut().unwrap();
    o.remove("logs");
    let agent = o.get_mut("agent").unwrap().as_object_mut().unwrap();
    agent.remove("authentication");
    agent.remove("region");
    agent.insert(
        "instance".into(),
        json!({"prefix": "rpi", "serial": "00000000c0ffee00"}),
    );
    let collected = c["metrics"]["metrics_collected"].as_object_mut().unwrap();
    collected.insert(
        "net".into(),
        json!({"measurement": ["bytes_recv", "bytes_sent"]}),
    );
    collected.insert(
        "diskio".into(),
        json!({"measurement": ["reads", "iops_in_progress"]}),
    );
    collected.insert(
        "netstat".into(),
        json!({"measurement": ["tcp_listen", "tcp_established", "udp_socket"]}),
    );
    collected.insert("mem".into(), json!({"measurement": ["used_percent"]}));
    c
}

fn host_tree(name: &str) -> PathBuf {
    repo().join("tests/data/hosts").join(name)
}

#[test]
fn a_raspberry_pi_4_gives_its_temperature_throttling_and_sd_card() {
    let moto = Moto::start();
    let root = host_tree("pi4");
    let (datums, log) = publish_once(
        &moto,
        &pi_config(),
        &[("CLOUDWATCH_PUBLISHER_HOST_ROOT", &root)],
    );
    let id = [("InstanceId", "rpi-00000000c0ffee00")];
    assert!(datums.iter().all(|d| d.namespace == "System/RaspberryPi"));
    assert!(
        datums.iter().all(|d| !d.dimensions.contains_key("host")),
        "append_dimensions removes host, as in the agent"
    );
    // The SoC once, though hwmon shows it too.
    let temps: Vec<&Datum> = datums
        .iter()
        .filter(|d| d.name == "temperature_celsius")
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert_eq!(temps[0].value, 48.312);
    assert_eq!(
        temps[0].dimensions.get("sensor").map(String::as_str),
        Some("cpu-thermal")
    );
    assert_eq!(temps[0].unit.as_deref(), Some("None"));
    // get_throttled 0x50005: under-voltage and throttled, now and since boot.
    for (m, v) in [
        ("under_voltage", 1.0),
        ("under_voltage_since_boot", 1.0),
        ("throttled", 1.0),
        ("throttled_since_boot", 1.0),
        ("frequency_capped", 0.0),
        ("soft_temperature_limit", 0.0),
    ] {
        assert_eq!(
            one(&datums, &format!("throttling_{m}"), &id).value,
            v,
            "{m}"
        );
    }
    let disk = one(
        &datums,
        "disk_used_percent",
        &[("path", "/"), ("fstype", "ext4")],
    );
    assert!(!disk.dimensions.contains_key("device"), "drop_device");
    assert_eq!(
        datums
            .iter()
            .filter(|d| d.name == "disk_used_percent")
            .count(),
        1,
        "only / was asked for"
    );
    // eth0 is up; wlan0 is down and lo is loopback.
    let nets: BTreeSet<&str> = datums
        .iter()
        .filter(|d| d.name == "net_bytes_recv")
        .map(|d| d.dimensions["interface"].as_str())
        .collect();
    assert_eq!(nets, BTreeSet::from(["eth0"]));
    let disks: BTreeSet<&str> = datums
        .iter()
        .filter(|d| d.name == "diskio_iops_in_progress")
        .map(|d| d.dimensions["name"].as_str())
        .collect();
    assert_eq!(
        disks,
        BTreeSet::from(["loop0", "mmcblk0", "mmcblk0p1", "mmcblk0p2", "ram0"])
    );
    assert_eq!(one(&datums, "netstat_tcp_listen", &id).value, 1.0);
    assert_eq!(one(&datums, "netstat_tcp_established", &id).value, 1.0);
    assert_eq!(one(&datums, "netstat_udp_socket", &id).value, 1.0);
    let used = (3_884_308.0 - 2_901_236.0 - 49_116.0 - 593_560.0 - 35_220.0) / 3_884_308.0 * 100.0;
    assert!((one(&datums, "mem_used_percent", &id).value - used).abs() < 1e-9);
    // The original 13 beside them, as before.
    let summary = one(
        &datums,
        "CPUCount",
        &[("InstanceId", "rpi-00000000c0ffee00")],
    );
    assert_eq!(
        summary.dimensions.len(),
        2,
        "InstanceId and Hostname: {summary:?}"
    );
    assert_eq!(summary.unit.as_deref(), Some("Count"));
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn a_pi_zero_2_with_a_good_supply_and_a_missing_proc_file() {
    let moto = Moto::start();
    let root = host_tree("pizero2");
    let (datums, log) = publish_once(
        &moto,
        &pi_config(),
        &[("CLOUDWATCH_PUBLISHER_HOST_ROOT", &root)],
    );
    assert_eq!(one(&datums, "temperature_celsius", &[]).value, 41.856);
    for m in [
        "under_voltage",
        "under_voltage_since_boot",
        "throttled",
        "throttled_since_boot",
    ] {
        assert_eq!(
            one(&datums, &format!("throttling_{m}"), &[]).value,
            0.0,
            "{m}"
        );
    }
    // No /proc/net/tcp here: one warning naming it, and the rest of the round is sent.
    assert!(!datums.iter().any(|d| d.name.starts_with("netstat_")));
    assert_eq!(log.matches("net/tcp").count(), 1, "{log}");
    let nets: BTreeSet<&str> = datums
        .iter()
        .filter(|d| d.name == "net_bytes_recv")
        .map(|d| d.dimensions["interface"].as_str())
        .collect();
    assert_eq!(nets, BTreeSet::from(["wlan0"]));
}

#[test]
fn sections_that_would_lose_data_are_refused_and_ec2_only_ones_named() {
    let (name, key) = (
        "awsdocs_collectd_example.json",
        "metrics.metrics_collected.collectd: is not supported",
    );
    let s = Setup::new(runnable(name));
    let out = validate(&s);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{name}: {stderr}");
    assert!(stderr.contains(key), "{name}: {stderr}");
    // The agent's StatsD example is taken as it is (received on 127.0.0.1).
    let s = Setup::new(runnable("awsdocs_statsd_example.json"));
    let out = validate(&s);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("udp://127.0.0.1:8125"), "{stdout}");
    // "unit": "unit" is not a CloudWatch unit: named, with the key.
    let s = Setup::new(runnable("agentrepo_validLinuxMetrics.json"));
    let out = validate(&s);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(
            "metrics.metrics_collected.cpu.measurement[0].unit: \"unit\" is not a CloudWatch unit"
        ),
        "{stderr}"
    );

    // EC2-only parts: a warning each, the rest valid, and validate says what it costs.
    let s = Setup::new(runnable("agentrepo_advanced_config_linux.json"));
    let out = validate(&s);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for key in [
        "metrics.metrics_collected.ethtool",
        "metrics.append_dimensions.ImageId",
        "metrics.append_dimensions.InstanceType",
        "metrics.append_dimensions.AutoScalingGroupName",
        "agent.aws_sdk_log_level",
    ] {
        assert_eq!(stderr.matches(key).count(), 1, "{key}: {stderr}");
    }
    assert!(
        !stderr.contains("metrics.append_dimensions.InstanceId"),
        "{stderr}"
    );
    let cost = stderr
        .lines()
        .find(|l| l.starts_with("metrics: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        cost.contains("distinct metrics") && cost.contains("per 100 devices"),
        "{cost}"
    );
}
