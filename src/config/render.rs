//! The effective configuration as JSON, in the file's own shape, for `validate`.

use serde_json::{json, Map, Value};

use super::{Config, FileSource, Filters, JournalSource, UnifiedLogSource};
use crate::secret::Secret;
use crate::sources::host_metrics::ProcessSelector;

pub(super) fn effective(c: &Config) -> Value {
    let a = &c.agent;
    let mut instance = Map::new();
    instance.insert("prefix".into(), json!(a.instance.prefix));
    if let Some(serial) = &a.instance.serial {
        instance.insert("serial".into(), json!(serial));
    }
    if let Some(command) = &a.instance.command {
        instance.insert("command".into(), json!(command));
        instance.insert(
            "command_timeout".into(),
            json!(a.instance.command_timeout.as_secs()),
        );
    }
    let mut agent = Map::new();
    agent.insert("instance".into(), Value::Object(instance));
    if let Some(auth) = &a.authentication {
        agent.insert(
            "authentication".into(),
            json!({
                "accountId": auth.account_id,
                "userPoolId": auth.user_pool_id,
                "identityPoolId": auth.identity_pool_id,
                "appClientId": auth.app_client_id,
                "password": Secret::REDACTED,
            }),
        );
    }
    if let Some(region) = &a.region {
        agent.insert("region".into(), json!(region));
    }
    agent.insert(
        "metrics_collection_interval".into(),
        json!(a.metrics_collection_interval.as_secs()),
    );
    agent.insert(
        "logs_collection_interval".into(),
        json!(a.logs_collection_interval.as_secs()),
    );
    agent.insert("logfile".into(), json!(a.logfile));
    agent.insert("debug".into(), json!(a.debug));
    agent.insert("syslog".into(), json!(a.syslog));
    agent.insert("omit_hostname".into(), json!(a.omit_hostname));
    agent.insert("state_dir".into(), json!(a.state_dir));
    agent.insert(
        "metrics_spool_max_mib".into(),
        json!(a.metrics_spool_max_bytes / (1024 * 1024)),
    );
    agent.insert(
        "clock_sync_timeout".into(),
        json!(a.clock_sync_timeout.as_secs()),
    );
    if let Some(arn) = &a.role_arn {
        agent.insert("credentials".into(), json!({ "role_arn": arn }));
    }
    if let Some(p) = &a.proxy {
        // The user is shown, the password never.
        let shown = match (&p.user, &p.password) {
            (Some(user), Some(_)) => {
                p.url
                    .replacen("://", &format!("://{user}:{}@", Secret::REDACTED), 1)
            }
            (Some(user), None) => p.url.replacen("://", &format!("://{user}@"), 1),
            _ => p.url.clone(),
        };
        agent.insert("proxy".into(), json!(shown));
        if let Some(rules) = &p.no_proxy {
            agent.insert("no_proxy".into(), json!(rules));
        }
    }

    let l = &c.logs;
    let mut logs = Map::new();
    logs.insert("log_group_name".into(), json!(l.log_group_name));
    if let Some(stream) = &l.log_stream_name {
        logs.insert("log_stream_name".into(), json!(stream));
    }
    if let Some(n) = l.concurrency {
        logs.insert("concurrency".into(), json!(n));
    }
    if let Some(url) = &l.endpoint_override {
        logs.insert("endpoint_override".into(), json!(url));
    }
    if let Some(arn) = &l.role_arn {
        logs.insert("credentials".into(), json!({ "role_arn": arn }));
    }
    logs.insert(
        "memory_budget_mib".into(),
        json!(l.memory_budget_bytes / (1024 * 1024)),
    );
    if let Some(days) = l.retention_in_days {
        logs.insert("retention_in_days".into(), json!(days));
    }
    if let Some(flush) = l.force_flush_interval {
        logs.insert("force_flush_interval".into(), json!(flush.as_secs()));
    }
    let mut collected = Map::new();
    if !l.files.is_empty() {
        collected.insert(
            "files".into(),
            json!({ "collect_list": l.files.iter().map(file).collect::<Vec<_>>() }),
        );
    }
    let journal = |j: &JournalSource| {
        // A `journald` entry takes its filters only in the agent's form.
        let mut m = match j.key {
            None => filters(&j.filters),
            Some(_) => filter_list(&j.filters),
        };
        if let Some(g) = &j.log_group_name {
            m.insert("log_group_name".into(), json!(g));
        }
        m.insert("log_stream_name".into(), json!(j.log_stream_name));
        if let Some(days) = j.retention_in_days {
            m.insert("retention_in_days".into(), json!(days));
        }
        if !j.units.is_empty() {
            m.insert("units".into(), json!(j.units));
        }
        if let Some(p) = &j.priority {
            m.insert("priority".into(), json!(p));
        }
        if !j.matches.is_empty() {
            let matches: Vec<Value> = j
                .matches
                .iter()
                .map(|g| Value::Object(g.iter().map(|(k, v)| (k.clone(), json!(v))).collect()))
                .collect();
            m.insert("matches".into(), json!(matches));
        }
        m
    };
    collected.insert(
        "journal".into(),
        match l.journals.iter().find(|j| j.key.is_none()) {
            None => json!(false),
            Some(j) => {
                let mut m = journal(j);
                m.insert("collect".into(), json!(true));
                Value::Object(m)
            }
        },
    );
    let journald: Vec<Value> = l
        .journals
        .iter()
        .filter(|j| j.key.is_some())
        .map(|j| Value::Object(journal(j)))
        .collect();
    if !journald.is_empty() {
        collected.insert("journald".into(), json!({ "collect_list": journald }));
    }
    let unified: Vec<Value> = l.unified_logs.iter().map(unified_log).collect();
    if !unified.is_empty() {
        let mut m = Map::new();
        if l.unified_logs.iter().all(|u| !u.collect) {
            m.insert("collect".into(), json!(false));
        }
        m.insert("collect_list".into(), json!(unified));
        collected.insert("unified_log".into(), Value::Object(m));
    }
    logs.insert("logs_collected".into(), Value::Object(collected));
    if let Some(e) = &l.emf {
        let mut m = Map::new();
        // One transport is named by its scheme; an address alone is both.
        let address = match e.listen.as_slice() {
            [one] => one.to_string(),
            all => all
                .first()
                .map(|l| l.address.to_string())
                .unwrap_or_default(),
        };
        m.insert("service_address".into(), json!(address));
        if let Some(g) = &e.log_group_name {
            m.insert("log_group_name".into(), json!(g));
        }
        if let Some(st) = &e.log_stream_name {
            m.insert("log_stream_name".into(), json!(st));
        }
        if !e.log_group_names.is_empty() {
            let names: Vec<&str> = e.log_group_names.iter().map(|p| p.as_str()).collect();
            m.insert("log_group_names".into(), json!(names));
        }
        logs.insert("metrics_collected".into(), json!({ "emf": m }));
    }

    json!({
        "agent": agent,
        "metrics": metrics(c),
        "logs": logs,
    })
}

fn metrics(c: &Config) -> Value {
    let m = &c.metrics;
    let mut out = Map::new();
    out.insert("namespace".into(), json!(m.namespace));
    if let Some(f) = m.force_flush_interval {
        out.insert("force_flush_interval".into(), json!(f.as_secs()));
    }
    if let Some(url) = &m.endpoint_override {
        out.insert("endpoint_override".into(), json!(url));
    }
    if let Some(arn) = &m.role_arn {
        out.insert("credentials".into(), json!({ "role_arn": arn }));
    }
    let Some(collected) = &m.collected else {
        return Value::Object(out);
    };
    let mut sections = Map::new();
    for s in &collected.sections {
        let mut v = Map::new();
        let measurements: Vec<Value> = s
            .measurements
            .iter()
            .map(|m| {
                // procstat takes measurements by name only, each with its own unit.
                if s.section == "procstat" {
                    json!(m.field)
                } else {
                    json!({"name": m.field, "rename": m.name, "unit": m.unit.as_str()})
                }
            })
            .collect();
        v.insert("measurement".into(), json!(measurements));
        v.insert(
            "metrics_collection_interval".into(),
            json!(s.interval.as_secs()),
        );
        if !s.append_dimensions.is_empty() {
            v.insert("append_dimensions".into(), pairs(&s.append_dimensions));
        }
        if !s.drop_original_metrics.is_empty() {
            v.insert(
                "drop_original_metrics".into(),
                json!(s.drop_original_metrics),
            );
        }
        if let Some(r) = &s.resources {
            v.insert("resources".into(), json!(r));
        }
        match s.section {
            "cpu" => {
                v.insert("totalcpu".into(), json!(s.totalcpu));
            }
            "disk" => {
                v.insert(
                    "ignore_file_system_types".into(),
                    json!(s.ignore_file_system_types),
                );
                v.insert("drop_device".into(), json!(s.drop_device));
            }
            _ => {}
        }
        if let Some((selector, text)) = &s.process {
            let key = match selector {
                ProcessSelector::PidFile(_) => "pid_file",
                ProcessSelector::Exe(_) => "exe",
                ProcessSelector::Pattern(_) => "pattern",
            };
            v.insert(key.into(), json!(text));
        }
        if s.section == "procstat" {
            let list = sections
                .entry("procstat")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(Value::Object(v));
            }
        } else {
            sections.insert(s.section.into(), Value::Object(v));
        }
    }
    if let Some(st) = &collected.statsd {
        sections.insert(
            "statsd".into(),
            json!({
                "service_address": st.listen.to_string(),
                "metrics_collection_interval": st.collection_interval.as_secs(),
                "metrics_aggregation_interval": st.aggregation_interval.map_or(0, |a| a.as_secs()),
                "allowed_pending_messages": st.allowed_pending_messages,
                "metric_separator": st.metric_separator,
            }),
        );
    }
    out.insert("metrics_collected".into(), Value::Object(sections));
    if !collected.append_dimensions.is_empty() {
        out.insert(
            "append_dimensions".into(),
            pairs(&collected.append_dimensions),
        );
    }
    if !collected.aggregation_dimensions.is_empty() {
        out.insert(
            "aggregation_dimensions".into(),
            json!(collected.aggregation_dimensions),
        );
    }
    Value::Object(out)
}

fn pairs(p: &[(String, String)]) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn file(f: &FileSource) -> Value {
    let mut m = filters(&f.filters);
    m.insert("file_path".into(), json!(f.file_path));
    if let Some(g) = &f.log_group_name {
        m.insert("log_group_name".into(), json!(g));
    }
    if let Some(s) = &f.log_stream_name {
        m.insert("log_stream_name".into(), json!(s));
    }
    m.insert("encoding".into(), json!(f.encoding.name()));
    if let Some(class) = &f.log_group_class {
        m.insert("log_group_class".into(), json!(class));
    }
    if let Some(start) = &f.multi_line_start {
        use crate::sources::files::multiline::StartPattern;
        let p = match start {
            StartPattern::Regex(re) => re.as_str().to_owned(),
            StartPattern::Timestamp(_) => "{timestamp_format}".to_owned(),
        };
        m.insert("multi_line_start_pattern".into(), json!(p));
    }
    if let Some(re) = &f.blacklist {
        m.insert("blacklist".into(), json!(re.as_str()));
    }
    if let Some(t) = &f.timestamp {
        m.insert("timestamp_format".into(), json!(t.format()));
        m.insert(
            "timezone".into(),
            json!(if t.utc() { "UTC" } else { "Local" }),
        );
        m.insert("trim_timestamp".into(), json!(f.trim_timestamp));
    }
    if let Some(days) = f.retention_in_days {
        m.insert("retention_in_days".into(), json!(days));
    }
    m.insert("from_beginning".into(), json!(f.from_beginning));
    if f.emf {
        m.insert("emf".into(), json!(true));
    }
    if f.auto_removal {
        m.insert("auto_removal".into(), json!(true));
    }
    Value::Object(m)
}

fn unified_log(u: &UnifiedLogSource) -> Value {
    let mut m = filter_list(&u.filters);
    if let Some(p) = &u.predicate {
        m.insert("predicate".into(), json!(p));
    }
    m.insert("level".into(), json!(u.level));
    m.insert("log_group_name".into(), json!(u.log_group_name));
    m.insert("log_stream_name".into(), json!(u.log_stream_name));
    if let Some(days) = u.retention_in_days {
        m.insert("retention_in_days".into(), json!(days));
    }
    Value::Object(m)
}

fn filters(f: &Filters) -> Map<String, Value> {
    let mut m = Map::new();
    if !f.include.is_empty() {
        m.insert(
            "include_patterns".into(),
            json!(f.include.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        );
    }
    if !f.exclude.is_empty() {
        m.insert(
            "exclude_patterns".into(),
            json!(f.exclude.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
        );
    }
    m
}

/// Filters as the agent writes them: `"filters": [{"type": "include", "expression": ...}]`.
fn filter_list(f: &Filters) -> Map<String, Value> {
    let list: Vec<Value> = (f.include.iter().map(|r| ("include", r)))
        .chain(f.exclude.iter().map(|r| ("exclude", r)))
        .map(|(kind, r)| json!({"type": kind, "expression": r.as_str()}))
        .collect();
    let mut m = Map::new();
    if !list.is_empty() {
        m.insert("filters".into(), Value::Array(list));
    }
    m
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn effective_config_is_valid_config_and_hides_the_password() {
        let text = r#"{"agent": {"region": "us-east-1", "instance": {"prefix": "rpi", "serial": "abc"},
            "authentication": {"accountId": "123456789012", "userPoolId": "us-east-1_Ab1",
            "identityPoolId": "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "appClientId": "abc123",
            "password": "TopSecret!1"}},
            "logs": {"retention_in_days": 30, "logs_collected": {"journal": true,
            "files": {"collect_list": [{"file_path": "/var/log/syslog", "exclude_patterns": ["CRON"]}]}}}}"#;
        let c = crate::config::parse(Path::new("/p.json"), text).unwrap();
        let out = c.effective_json();
        let printed = out.to_string();
        assert!(!printed.contains("TopSecret"), "{printed}");
        assert_eq!(out["agent"]["authentication"]["password"], "<redacted>");
        assert_eq!(out["agent"]["metrics_collection_interval"], 300);
        assert_eq!(
            out["logs"]["logs_collected"]["journal"]["log_stream_name"],
            "journal"
        );
        // What validate prints parses again into the same settings (bar the password).
        let again = crate::config::parse(Path::new("/p.json"), &printed).unwrap();
        assert_eq!(again.effective_json(), out);
    }

    #[test]
    fn procstat_measurements_and_journald_filters_are_shown_in_the_form_they_are_taken() {
        // Found by the config fuzz target: validate showed procstat measurements as objects
        // and a journald entry's filters as include/exclude_patterns, which neither takes.
        let text = r#"{"metrics": {"metrics_collected": {"procstat": [
                {"pattern": "sshd", "measurement": ["cpu_usage", "memory_rss"]}]}},
            "logs": {"logs_collected": {"journald": {"collect_list": [
                {"log_group_name": "g", "log_stream_name": "s", "units": ["ssh"],
                 "filters": [{"type": "exclude", "expression": "DEBUG"},
                             {"type": "include", "expression": "(?i)fail"}]}]}}}}"#;
        let c = crate::config::parse(Path::new("/p.json"), text).unwrap();
        let out = c.effective_json();
        let procstat = &out["metrics"]["metrics_collected"]["procstat"][0];
        assert_eq!(
            procstat["measurement"],
            serde_json::json!(["cpu_usage", "memory_rss"])
        );
        let entry = &out["logs"]["logs_collected"]["journald"]["collect_list"][0];
        assert_eq!(
            entry["filters"],
            serde_json::json!([{"type": "include", "expression": "(?i)fail"},
                               {"type": "exclude", "expression": "DEBUG"}])
        );
        let again = crate::config::parse(Path::new("/p.json"), &out.to_string()).unwrap();
        assert_eq!(again.effective_json(), out);
    }
}
