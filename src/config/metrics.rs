//! The `metrics` section: the namespace, and the CloudWatch Agent's `metrics_collected` with
//! its top-level keys. Every agent key is implemented, warned about (meaningless here) or
//! refused (it would lose data the user asked for); none is passed over in silence.

use std::time::Duration;

use serde_json::Value;

use super::check::{Checker, Section};
use super::names;
use super::{Collected, Metrics, DEFAULT_NAMESPACE, MAX_INTERVAL_SECS};
use crate::metric::Unit;
use crate::sources::host_metrics::{self, ProcessSelector, SectionConfig, Selected};

/// The agent's namespace when a config collects its sections and names none.
pub const AGENT_NAMESPACE: &str = "CWAgent";
/// The agent's collection interval when neither the section nor `agent` sets one.
pub const AGENT_INTERVAL: Duration = Duration::from_secs(60);
/// The agent's default for how long metrics may wait before they are sent.
pub const AGENT_FORCE_FLUSH: Duration = Duration::from_secs(60);
/// The agent's limit for collection and flush intervals: two days.
const AGENT_MAX_INTERVAL_SECS: u64 = 172_800;
/// The one placeholder that means something off EC2: this publisher's instance id.
pub const INSTANCE_ID_PLACEHOLDER: &str = "${aws:InstanceId}";
/// PutMetricData takes at most 30 dimensions per metric.
const MAX_DIMENSIONS: usize = 30;

pub(super) const METRICS_KEYS: &[&str] = &[
    "namespace",
    "metrics_collected",
    "append_dimensions",
    "aggregation_dimensions",
    "force_flush_interval",
    "credentials",
    "endpoint_override",
    "metrics_destinations",
];

/// Sections for EC2 instances or hardware this publisher does not read: a warning each.
const LEFT_OUT: &[(&str, &str)] = &[
    ("ethtool", "reads EC2 network allowance counters (ENA)"),
    ("nvidia_gpu", "reads NVIDIA GPUs through nvidia-smi"),
    ("efa", "reads EC2 Elastic Fabric Adapters"),
];
/// Sections that receive data from elsewhere: ignoring them would lose it, so they are refused.
const NOT_SUPPORTED: &[(&str, &str)] = &[
    ("collectd", "collectd metrics sent to the agent's port"),
    ("jmx", "Java (JMX) metrics"),
    ("otlp", "OpenTelemetry metrics sent to the agent"),
    ("prometheus", "Prometheus scrapes"),
    ("dpdk", "DPDK telemetry"),
    ("win_services", "Windows services"),
];

const COMMON_KEYS: &[&str] = &[
    "measurement",
    "metrics_collection_interval",
    "append_dimensions",
    "drop_original_metrics",
];

fn section_keys(section: &host_metrics::Section) -> Vec<&'static str> {
    let mut keys = COMMON_KEYS.to_vec();
    keys.extend_from_slice(section.options);
    keys
}

/// Checks the `metrics` section. `agent_interval` is `agent.metrics_collection_interval`
/// when the file sets it.
pub(super) fn check_metrics(
    c: &mut Checker,
    s: &Section,
    agent_interval: Option<Duration>,
    omit_hostname: bool,
) -> Metrics {
    let collected_given = s.get("metrics_collected").is_some();
    let namespace = c.string(s, "namespace").unwrap_or_else(|| {
        if collected_given {
            AGENT_NAMESPACE.into()
        } else {
            DEFAULT_NAMESPACE.into()
        }
    });
    if let Err(e) = names::check_namespace(&namespace) {
        c.problem(&s.at("namespace"), e);
    }
    let role_arn = super::check::role_arn(c, s);
    let endpoint_override = c.string(s, "endpoint_override");
    if let Some(url) = &endpoint_override {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            c.problem(
                &s.at("endpoint_override"),
                format!(
                    "{url:?} must be a URL such as \"https://monitoring.us-east-1.amazonaws.com\""
                ),
            );
        }
    }
    if let Some(d) = s.get("metrics_destinations") {
        let path = s.at("metrics_destinations");
        match d.as_object() {
            Some(m) => {
                for key in m.keys().filter(|k| *k != "cloudwatch") {
                    c.problem(
                        &format!("{path}.{key}"),
                        "is not supported: metrics go to CloudWatch only",
                    );
                }
            }
            None => c.wrong_type(&path, "an object", d),
        }
    }
    let append_dimensions = dimensions(c, s, "append_dimensions");
    let aggregation_dimensions = aggregation(c, s);
    let force_flush_interval = c.interval(s, "force_flush_interval", AGENT_MAX_INTERVAL_SECS);
    if !collected_given {
        for key in ["append_dimensions", "aggregation_dimensions"] {
            if s.get(key).is_some() {
                c.problem(
                    &s.at(key),
                    "applies to metrics_collected, which this config does not have (the original 13 metrics always carry InstanceId and Hostname)",
                );
            }
        }
    }
    let collected = collected_given.then(|| {
        let interval = agent_interval.unwrap_or(AGENT_INTERVAL);
        let (sections, statsd) = collected_sections(c, s, interval);
        Collected {
            sections,
            statsd,
            // As the agent: with EC2 dimensions appended, no `host` dimension.
            host_dimension: !omit_hostname && s.get("append_dimensions").is_none(),
            append_dimensions,
            aggregation_dimensions,
        }
    });
    Metrics {
        namespace,
        endpoint_override,
        role_arn,
        force_flush_interval: force_flush_interval.or(collected_given.then_some(AGENT_FORCE_FLUSH)),
        collected,
    }
}

/// The host's sections, and the StatsD listener.
fn collected_sections(
    c: &mut Checker,
    s: &Section,
    interval: Duration,
) -> (Vec<SectionConfig>, Option<super::Statsd>) {
    let path = s.at("metrics_collected");
    let Some(value) = s.get("metrics_collected") else {
        return (Vec::new(), None);
    };
    let Some(map) = value.as_object() else {
        c.wrong_type(&path, "an object", value);
        return (Vec::new(), None);
    };
    let mut statsd = None;
    if map.is_empty() {
        c.problem(
            &path,
            "must name at least one section, such as \"cpu\" or \"mem\"",
        );
    }
    let problems_before = c.problem_count();
    let mut out = Vec::new();
    for (key, v) in map {
        let at = format!("{path}.{key}");
        if key == "statsd" {
            statsd = super::statsd::check_statsd(c, &at, v);
            continue;
        }
        if let Some((_, what)) = LEFT_OUT.iter().find(|(k, _)| k == key) {
            c.warning(
                &at,
                format!("left out: it {what}, which this publisher does not"),
            );
            continue;
        }
        if let Some((_, what)) = NOT_SUPPORTED.iter().find(|(k, _)| k == key) {
            c.problem(
                &at,
                format!(
                    "is not supported: the publisher does not receive {what}, and would lose them"
                ),
            );
            continue;
        }
        let Some(section) = host_metrics::section(key) else {
            let known: Vec<&str> = host_metrics::SECTIONS.iter().map(|s| s.key).collect();
            c.problem(
                &at,
                format!(
                    "unknown section (known here: {}; Windows performance counters are not supported)",
                    known.join(", ")
                ),
            );
            continue;
        };
        if !section.supported {
            c.warning(&at, "not measured on this operating system; left out");
            continue;
        }
        if key == "procstat" {
            match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        out.extend(one_section(
                            c,
                            section,
                            &format!("{at}[{i}]"),
                            item,
                            interval,
                        ));
                    }
                }
                None => c.wrong_type(&at, "an array of objects", v),
            }
        } else {
            out.extend(one_section(c, section, &at, v, interval));
        }
    }
    // Sections all left out (or an empty procstat list) would leave nothing to measure, and an
    // effective config that `validate` could only print as an empty `metrics_collected`.
    if out.is_empty() && statsd.is_none() && !map.is_empty() && c.problem_count() == problems_before
    {
        c.problem(
            &path,
            "measures nothing here: name at least one section measured on this system, such as \"cpu\" or \"mem\" (or one process under \"procstat\")",
        );
    }
    (out, statsd)
}

fn one_section(
    c: &mut Checker,
    section: &'static host_metrics::Section,
    path: &str,
    v: &Value,
    default_interval: Duration,
) -> Option<SectionConfig> {
    let keys = section_keys(section);
    let map = c.object(path, v, &keys)?;
    let s = Section::new(path, map);
    let interval = c
        .interval(
            &s,
            "metrics_collection_interval",
            AGENT_MAX_INTERVAL_SECS.min(MAX_INTERVAL_SECS),
        )
        .unwrap_or(default_interval);
    let measurements = measurements(c, section, &s);
    let append_dimensions = dimensions(c, &s, "append_dimensions");
    let drop_original_metrics = c
        .strings(&s, "drop_original_metrics")
        .into_iter()
        .map(|name| {
            let field = name
                .strip_prefix(&format!("{}_", section.prefix))
                .unwrap_or(&name);
            measurements
                .iter()
                .find(|m| m.field == field || m.name == name)
                .map_or(name.clone(), |m| m.name.clone())
        })
        .collect();
    let resources = s.get("resources").map(|_| c.strings(&s, "resources"));
    if section.key == "cpu" {
        if let Some(r) = &resources {
            if r.iter().any(|x| x != "*") {
                c.problem(
                    &s.at("resources"),
                    "for cpu, the only resource is \"*\" (every CPU)",
                );
            }
        }
    }
    let totalcpu = c.bool(&s, "totalcpu").unwrap_or(true);
    if section.key == "cpu" && !totalcpu && resources.is_none() {
        c.warning(path, "with totalcpu false and no resources, nothing is collected (as with the agent); give \"resources\": [\"*\"] for each CPU");
    }
    if c.bool(&s, "report_deltas") == Some(false) {
        c.warning(&s.at("report_deltas"), "counters are always sent as the growth since the previous sample, as the current agent sends them");
    }
    let process = if section.key == "procstat" {
        process_selector(c, &s)
    } else {
        None
    };
    Some(SectionConfig {
        section: section.key,
        path: path.to_owned(),
        measurements,
        interval,
        append_dimensions,
        drop_original_metrics,
        resources,
        totalcpu,
        ignore_file_system_types: c.strings(&s, "ignore_file_system_types"),
        drop_device: c.bool(&s, "drop_device").unwrap_or(false),
        process,
    })
}

fn measurements(
    c: &mut Checker,
    section: &'static host_metrics::Section,
    s: &Section,
) -> Vec<Selected> {
    let path = s.at("measurement");
    let Some(v) = s.get("measurement") else {
        if section.key == "summary" {
            // All of them, as without metrics_collected.
            return section
                .fields
                .iter()
                .map(|f| Selected {
                    field: f.name,
                    name: section.published_name(f.name),
                    unit: f.unit,
                })
                .collect();
        }
        c.problem(
            &path,
            "is required: the measurements to collect, such as [\"used_percent\"]",
        );
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        c.wrong_type(&path, "an array", v);
        return Vec::new();
    };
    let mut out: Vec<Selected> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let (name, rename, unit) = match item {
            Value::String(n) => (n.clone(), None, None),
            Value::Object(_) if section.key != "procstat" => {
                let Some(map) = c.object(&at, item, &["name", "rename", "unit"]) else {
                    continue;
                };
                let m = Section::new(&at, map);
                let Some(name) = c.string(&m, "name") else {
                    c.problem(&m.at("name"), "is required");
                    continue;
                };
                let rename = c.string(&m, "rename");
                if let Some(r) = &rename {
                    if r.is_empty() || r.len() > 255 {
                        c.problem(&m.at("rename"), "must be 1 to 255 characters");
                    }
                }
                let unit = c.string(&m, "unit").and_then(|u| match Unit::parse(&u) {
                    Some(unit) => Some(unit),
                    None => {
                        let all: Vec<&str> = Unit::ALL.iter().map(|u| u.as_str()).collect();
                        c.problem(
                            &m.at("unit"),
                            format!("{u:?} is not a CloudWatch unit ({})", all.join(", ")),
                        );
                        None
                    }
                });
                (name, rename, unit)
            }
            _ => {
                c.wrong_type(
                    &at,
                    if section.key == "procstat" {
                        "a string"
                    } else {
                        "a string or an object with name, rename and unit"
                    },
                    item,
                );
                continue;
            }
        };
        let field_name = if section.prefix.is_empty() {
            name.trim()
        } else {
            name.trim()
                .strip_prefix(&format!("{}_", section.prefix))
                .unwrap_or(name.trim())
        };
        match section.field(field_name) {
            Some(f) => {
                let published = rename.unwrap_or_else(|| section.published_name(f.name));
                if out.iter().any(|m| m.field == f.name) {
                    continue;
                }
                out.push(Selected {
                    field: f.name,
                    name: published,
                    unit: unit.unwrap_or(f.unit),
                });
            }
            None if section.not_collected.contains(&field_name) => {
                c.warning(&at, format!("{name:?} is a measurement the agent knows, but this publisher does not collect it"));
            }
            None => {
                let known: Vec<&str> = section.fields.iter().map(|f| f.name).collect();
                c.problem(
                    &at,
                    format!(
                        "{name:?} is not a {} measurement (known: {})",
                        section.key,
                        known.join(", ")
                    ),
                );
            }
        }
    }
    if out.is_empty() && !items.is_empty() {
        c.warning(&path, "nothing here is collected");
    }
    out
}

/// `append_dimensions`: name → text, where `${aws:InstanceId}` is this publisher's instance id
/// and the other `${aws:...}` placeholders (EC2 only) are warned about and left out.
/// Fixed pairs are kept as they are, also in the global one (which the agent would ignore).
fn dimensions(c: &mut Checker, s: &Section, key: &str) -> Vec<(String, String)> {
    let Some(v) = s.get(key) else {
        return Vec::new();
    };
    let path = s.at(key);
    let Some(map) = v.as_object() else {
        c.wrong_type(&path, "an object of dimension names and values", v);
        return Vec::new();
    };
    if map.len() > MAX_DIMENSIONS {
        c.problem(
            &path,
            format!(
                "has {} dimensions; CloudWatch takes at most {MAX_DIMENSIONS}",
                map.len()
            ),
        );
    }
    let mut out = Vec::new();
    for (name, value) in map {
        let at = format!("{path}.{name}");
        let Some(text) = value.as_str() else {
            c.wrong_type(&at, "a string", value);
            continue;
        };
        if name.is_empty() || name.len() > 255 || text.is_empty() || text.len() > 1024 {
            c.problem(
                &at,
                "dimension names must be 1 to 255 characters and values 1 to 1024",
            );
            continue;
        }
        if text.contains("${aws:") && text != INSTANCE_ID_PLACEHOLDER {
            c.warning(&at, format!("{text} exists only on EC2; this dimension is left out (only {INSTANCE_ID_PLACEHOLDER}, this publisher's instance id, has a meaning here)"));
            continue;
        }
        out.push((name.clone(), text.to_owned()));
    }
    out
}

fn aggregation(c: &mut Checker, s: &Section) -> Vec<Vec<String>> {
    let Some(v) = s.get("aggregation_dimensions") else {
        return Vec::new();
    };
    let path = s.at("aggregation_dimensions");
    let Some(items) = v.as_array() else {
        c.wrong_type(&path, "an array of arrays of dimension names", v);
        return Vec::new();
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(names) = item.as_array() else {
            c.wrong_type(&at, "an array of dimension names", item);
            continue;
        };
        let mut set: Vec<String> = Vec::new();
        for (j, n) in names.iter().enumerate() {
            match n.as_str() {
                Some(n) => set.push(n.to_owned()),
                None => c.wrong_type(&format!("{at}[{j}]"), "a dimension name", n),
            }
        }
        set.sort();
        set.dedup();
        if set.len() > MAX_DIMENSIONS {
            c.problem(&at, format!("has more than {MAX_DIMENSIONS} dimensions"));
        }
        if !out.contains(&set) {
            out.push(set);
        }
    }
    out
}

fn process_selector(c: &mut Checker, s: &Section) -> Option<(ProcessSelector, String)> {
    // The agent's order when several are given: pid_file, then exe, then pattern.
    if let Some(p) = c.string(s, "pid_file") {
        if !p.starts_with('/') {
            c.problem(&s.at("pid_file"), format!("{p:?} must be an absolute path"));
            return None;
        }
        return Some((ProcessSelector::PidFile(p.clone().into()), p));
    }
    for key in ["exe", "pattern"] {
        if let Some(v) = s.get(key) {
            let re = c.regex(&s.at(key), v)?;
            let text = re.as_str().to_owned();
            let selector = if key == "exe" {
                ProcessSelector::Exe(re)
            } else {
                ProcessSelector::Pattern(re)
            };
            return Some((selector, text));
        }
    }
    c.problem(
        &s.path,
        "needs one of exe, pattern or pid_file to say which processes",
    );
    None
}
