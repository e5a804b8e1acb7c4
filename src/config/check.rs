//! Walks the parsed JSON and turns it into [`Config`], collecting every problem on the way
//! instead of stopping at the first one. No I/O happens here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde_json::{Map, Value};

use super::names::{self, GROUP_PLACEHOLDERS, STREAM_PLACEHOLDERS};
use super::*;
use crate::sources::files::multiline::StartPattern;
use crate::sources::files::timestamp::TimestampFormat;
use crate::sources::files::Encoding;

const TOP_KEYS: &[&str] = &["agent", "metrics", "logs"];
const AGENT_KEYS: &[&str] = &[
    "instance",
    "authentication",
    "region",
    "metrics_collection_interval",
    "logs_collection_interval",
    "logfile",
    "debug",
    "syslog",
    "omit_hostname",
    "state_dir",
    "metrics_spool_max_mib",
    "proxy",
    "no_proxy",
    "clock_sync_timeout",
    // The CloudWatch Agent's, each either refused or warned about below.
    "credentials",
    "run_as_user",
    "aws_sdk_log_level",
    "usage_data",
    "quiet",
    "internal",
    "user_agent",
    "use_dualstack_endpoint",
    "service.name",
    "deployment.environment",
];
/// The agent's keys that change nothing here, and why.
const AGENT_KEYS_WITHOUT_EFFECT: &[(&str, &str)] = &[
    (
        "run_as_user",
        "the service runs as the user its package or unit gives it",
    ),
    (
        "aws_sdk_log_level",
        "agent.debug logs the requests' outcomes",
    ),
    ("usage_data", "the publisher sends no usage data"),
    ("quiet", "agent.debug chooses how much is logged"),
    (
        "internal",
        "the publisher does not publish metrics about itself",
    ),
    ("user_agent", "the AWS SDK's user agent is used"),
    (
        "use_dualstack_endpoint",
        "endpoints are the SDK's (set AWS_USE_DUALSTACK_ENDPOINT)",
    ),
    (
        "service.name",
        "Application Signals attributes are not sent",
    ),
    (
        "deployment.environment",
        "Application Signals attributes are not sent",
    ),
];
const INSTANCE_KEYS: &[&str] = &["prefix", "serial", "command", "command_timeout"];
const AUTH_KEYS: &[&str] = &[
    "accountId",
    "userPoolId",
    "identityPoolId",
    "appClientId",
    "password",
];
const LOGS_KEYS: &[&str] = &[
    "log_group_name",
    "log_stream_name",
    "retention_in_days",
    "force_flush_interval",
    "logs_collected",
    "concurrency",
    "endpoint_override",
    "credentials",
    "metrics_collected",
    "memory_budget_mib",
];
const COLLECTED_KEYS: &[&str] = &[
    "files",
    "journal",
    "journald",
    "unified_log",
    "windows_events",
];
const FILES_KEYS: &[&str] = &["collect_list"];
const FILE_KEYS: &[&str] = &[
    "file_path",
    "log_group_name",
    "log_stream_name",
    "retention_in_days",
    "include_patterns",
    "exclude_patterns",
    "filters",
    "from_beginning",
    "timestamp_format",
    "timezone",
    "trim_timestamp",
    "encoding",
    "log_group_class",
    "multi_line_start_pattern",
    "blacklist",
    "auto_removal",
    "emf",
    "publish_multi_logs",
    "backpressure_mode",
];
const JOURNAL_KEYS: &[&str] = &[
    "collect",
    "log_stream_name",
    "include_patterns",
    "exclude_patterns",
    "units",
    "priority",
];
const FILTER_KEYS: &[&str] = &["type", "expression"];

pub(super) fn check(path: &Path, root: &Value) -> Result<Config, Vec<Problem>> {
    let mut c = Checker::default();
    let empty = Map::new();
    let top = c.object("", root, TOP_KEYS).unwrap_or(&empty);
    let agent = section(&mut c, top, "agent", AGENT_KEYS);
    let agent = check_agent(&mut c, &agent);
    let agent_interval = agent_section_interval(top);
    let metrics = section(&mut c, top, "metrics", super::metrics::METRICS_KEYS);
    let mut metrics =
        super::metrics::check_metrics(&mut c, &metrics, agent_interval, agent.omit_hostname);
    let logs = section(&mut c, top, "logs", LOGS_KEYS);
    let mut logs = check_logs(&mut c, &logs);
    // A section without a role of its own takes the agent's, as with the agent.
    if metrics.role_arn.is_none() {
        metrics.role_arn.clone_from(&agent.role_arn);
    }
    if logs.role_arn.is_none() {
        logs.role_arn.clone_from(&agent.role_arn);
    }
    if c.problems.is_empty() {
        Ok(Config {
            source: path.to_owned(),
            warnings: c.warnings,
            agent,
            metrics,
            logs,
        })
    } else {
        Err(c.problems)
    }
}

/// `agent.metrics_collection_interval` as the file gives it (checked with the agent section).
fn agent_section_interval(top: &Map<String, Value>) -> Option<Duration> {
    top.get("agent")?
        .get("metrics_collection_interval")?
        .as_u64()
        .filter(|n| (1..=MAX_INTERVAL_SECS).contains(n))
        .map(Duration::from_secs)
}

/// An object found at `path`, or an empty one when absent or of the wrong type.
pub(super) struct Section<'v> {
    pub(super) path: String,
    map: Option<&'v Map<String, Value>>,
}

impl<'v> Section<'v> {
    pub(super) fn new(path: &str, map: &'v Map<String, Value>) -> Section<'v> {
        Section {
            path: path.to_owned(),
            map: Some(map),
        }
    }
    pub(super) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }
    pub(super) fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

fn section<'v>(
    c: &mut Checker,
    parent: &'v Map<String, Value>,
    key: &str,
    known: &[&str],
) -> Section<'v> {
    sub(
        c,
        &Section {
            path: String::new(),
            map: Some(parent),
        },
        key,
        known,
    )
}

fn sub<'v>(c: &mut Checker, parent: &Section<'v>, key: &str, known: &[&str]) -> Section<'v> {
    let path = parent.at(key);
    let map = parent.get(key).and_then(|v| c.object(&path, v, known));
    Section { path, map }
}

/// A section's `credentials`: the role to assume (the agent's one key there), checked.
pub(super) fn role_arn(c: &mut Checker, s: &Section) -> Option<String> {
    let creds = sub(c, s, "credentials", &["role_arn"]);
    let arn = c.string(&creds, "role_arn")?;
    match names::check_role_arn(&arn) {
        Ok(()) => Some(arn),
        Err(e) => {
            c.problem(&creds.at("role_arn"), e);
            None
        }
    }
}

fn check_agent(c: &mut Checker, s: &Section) -> Agent {
    let inst = sub(c, s, "instance", INSTANCE_KEYS);
    let prefix = c
        .string(&inst, "prefix")
        .unwrap_or_else(|| DEFAULT_INSTANCE_PREFIX.into());
    if inst.get("prefix").is_some() {
        if let Err(e) = names::check_instance_id(&prefix) {
            c.problem(&inst.at("prefix"), e);
        }
    }
    let serial = c.string(&inst, "serial");
    if let Some(serial) = &serial {
        if let Err(e) = names::check_instance_id(serial) {
            c.problem(&inst.at("serial"), e);
        }
    }
    let command = c.string(&inst, "command");
    if command.as_deref().is_some_and(|cmd| cmd.trim().is_empty()) {
        c.problem(&inst.at("command"), "must not be empty");
    }
    let command_timeout = c
        .interval(&inst, "command_timeout", 300)
        .unwrap_or(DEFAULT_INSTANCE_COMMAND_TIMEOUT);
    let instance = InstanceSpec {
        prefix,
        serial,
        command,
        command_timeout,
    };

    let authentication = s.get("authentication").and_then(|_| {
        let a = sub(c, s, "authentication", AUTH_KEYS);
        a.map?;
        let mut field = |key: &str| -> Option<String> {
            let v = c.string(&a, key);
            if a.get(key).is_none() {
                c.problem(&a.at(key), "is required when authentication is given");
            } else if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                c.problem(&a.at(key), "must not be empty");
                return None;
            }
            v
        };
        let (account_id, user_pool_id, identity_pool_id, app_client_id, password) = (
            field("accountId"),
            field("userPoolId"),
            field("identityPoolId"),
            field("appClientId"),
            field("password"),
        );
        if let Some(id) = &account_id {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                c.problem(&a.at("accountId"), format!("{id:?} is not a 12-digit AWS account id"));
            }
        }
        if let Some(id) = &user_pool_id {
            let ok = id.split_once('_').is_some_and(|(region, rest)| {
                names::check_region(region).is_ok() && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !ok {
                c.problem(&a.at("userPoolId"), format!("{id:?} is not a user pool id such as \"us-east-1_AbCdEf123\""));
            }
        }
        if let Some(id) = &identity_pool_id {
            let ok = id.split_once(':').is_some_and(|(region, rest)| {
                names::check_region(region).is_ok() && rest.len() == 36 && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            });
            if !ok {
                c.problem(
                    &a.at("identityPoolId"),
                    format!("{id:?} is not an identity pool id such as \"us-east-1:00000000-0000-0000-0000-000000000000\""),
                );
            }
        }
        if let Some(id) = &app_client_id {
            if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                c.problem(&a.at("appClientId"), format!("{id:?} is not an app client id (letters and digits)"));
            }
        }
        Some(Authentication {
            account_id: account_id?,
            user_pool_id: user_pool_id?,
            identity_pool_id: identity_pool_id?,
            app_client_id: app_client_id?,
            password: Secret::new(password?),
        })
    });

    let region = c.string(s, "region");
    if let Some(r) = &region {
        if let Err(e) = names::check_region(r) {
            c.problem(&s.at("region"), e);
        }
    }
    let metrics_collection_interval = c
        .interval(s, "metrics_collection_interval", MAX_INTERVAL_SECS)
        .unwrap_or(DEFAULT_METRICS_INTERVAL);
    let logs_collection_interval = c
        .interval(s, "logs_collection_interval", MAX_INTERVAL_SECS)
        .unwrap_or(DEFAULT_LOGS_INTERVAL);
    let logfile = c
        .abs_path(s, "logfile")
        .unwrap_or_else(|| DEFAULT_LOGFILE.into());
    let state_dir = c
        .abs_path(s, "state_dir")
        .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
    let debug = c.bool(s, "debug").unwrap_or(false);
    let syslog = c.bool(s, "syslog").unwrap_or(false);
    let omit_hostname = c.bool(s, "omit_hostname").unwrap_or(false);
    let role_arn = role_arn(c, s);
    let proxy = c
        .string(s, "proxy")
        .and_then(|url| match Proxy::parse(&url) {
            Ok(p) => Some(p),
            Err(e) => {
                c.problem(&s.at("proxy"), e);
                None
            }
        });
    let no_proxy = c.string(s, "no_proxy");
    let proxy = match (proxy, no_proxy) {
        (Some(p), no_proxy) => Some(Proxy { no_proxy, ..p }),
        (None, Some(_)) => {
            c.warning(
                &s.at("no_proxy"),
                "has no effect without agent.proxy (the NO_PROXY variable goes with HTTPS_PROXY)",
            );
            None
        }
        (None, None) => None,
    };
    for (key, why) in AGENT_KEYS_WITHOUT_EFFECT {
        if s.get(key).is_some() {
            c.warning(&s.at(key), format!("has no effect here: {why}"));
        }
    }
    let spool_mib = c
        .integer(s, "metrics_spool_max_mib", 1, 1 << 20)
        .unwrap_or(DEFAULT_SPOOL_MAX_MIB);
    // 0: never wait for the clock.
    let clock_sync_timeout = c
        .integer(s, "clock_sync_timeout", 0, MAX_INTERVAL_SECS)
        .map_or(DEFAULT_CLOCK_SYNC_TIMEOUT, Duration::from_secs);
    Agent {
        instance,
        authentication,
        region,
        metrics_collection_interval,
        logs_collection_interval,
        logfile,
        debug,
        syslog,
        omit_hostname,
        state_dir,
        metrics_spool_max_bytes: spool_mib * 1024 * 1024,
        role_arn,
        proxy,
        clock_sync_timeout,
    }
}

fn check_logs(c: &mut Checker, s: &Section) -> Logs {
    let log_group_name = c
        .group_template(s, "log_group_name")
        .unwrap_or_else(|| DEFAULT_LOG_GROUP.into());
    let retention_in_days = c.retention(s, "retention_in_days");
    let force_flush_interval = c.interval(s, "force_flush_interval", MAX_INTERVAL_SECS);
    let default_stream = c.stream_template(s, "log_stream_name");
    let concurrency = c.integer(s, "concurrency", 1, 64).map(|n| n as usize);
    let endpoint_override = c.string(s, "endpoint_override");
    if let Some(url) = &endpoint_override {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            c.problem(
                &s.at("endpoint_override"),
                format!("{url:?} must be a URL such as \"https://logs.us-east-1.amazonaws.com\""),
            );
        }
    }
    let role_arn = role_arn(c, s);
    let memory_budget_bytes = c
        .integer(s, "memory_budget_mib", 2, 4095)
        .map(|mib| mib as u32)
        .unwrap_or(crate::sinks::cloudwatch_logs::budget::DEFAULT_MIB)
        * 1024
        * 1024;
    let emf = s.get("metrics_collected").and_then(|v| {
        let path = s.at("metrics_collected");
        let map = c.object(&path, v, &["emf"])?;
        let v = map.get("emf")?;
        super::emf::check_emf(c, &format!("{path}.emf"), v)
    });
    let collected = sub(c, s, "logs_collected", COLLECTED_KEYS);
    if collected.get("windows_events").is_some() {
        c.problem(
            &collected.at("windows_events"),
            "is not supported: there are no Windows event logs here",
        );
    }
    let files_section = sub(c, &collected, "files", FILES_KEYS);
    let mut files = Vec::new();
    let mut file_paths = Vec::new();
    if let Some(list) = files_section.get("collect_list") {
        let list_path = files_section.at("collect_list");
        match list.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{list_path}[{i}]");
                    let map = c.object(&path, item, FILE_KEYS);
                    if map.is_some() {
                        if let Some(f) = check_file(
                            c,
                            &Section {
                                path: path.clone(),
                                map,
                            },
                        ) {
                            files.push(f);
                            file_paths.push(path);
                        }
                    }
                }
            }
            None => c.wrong_type(&list_path, "an array of objects", list),
        }
    }
    let journal = collected.get("journal").and_then(|v| {
        let path = collected.at("journal");
        let legacy = |log_stream_name, filters, units, priority| JournalSource {
            key: None,
            log_group_name: None,
            log_stream_name,
            retention_in_days: None,
            filters,
            units,
            priority,
            matches: Vec::new(),
        };
        match v {
            Value::Bool(false) => None,
            Value::Bool(true) => Some(legacy(
                "journal".into(),
                Filters::default(),
                Vec::new(),
                None,
            )),
            Value::Object(_) => {
                let j = sub(c, &collected, "journal", JOURNAL_KEYS);
                let collect = c.bool(&j, "collect").unwrap_or(true);
                let log_stream_name = c
                    .stream_template(&j, "log_stream_name")
                    .unwrap_or_else(|| "journal".into());
                let filters = Filters {
                    include: c.regexes(&j, "include_patterns"),
                    exclude: c.regexes(&j, "exclude_patterns"),
                };
                let units = c.strings(&j, "units");
                let priority = super::journald::priority(c, &j);
                collect.then(|| legacy(log_stream_name, filters, units, priority))
            }
            other => {
                c.wrong_type(&path, "true, false or an object", other);
                None
            }
        }
    });
    let mut journal_paths = Vec::new();
    let mut journals = Vec::new();
    if let Some(j) = journal {
        journals.push(j);
        journal_paths.push(collected.at("journal"));
    }
    for (j, at) in super::journald::check_journald(c, &collected, default_stream.as_deref()) {
        journals.push(j);
        journal_paths.push(at);
    }
    let mut unified_logs = Vec::new();
    let mut unified_paths = Vec::new();
    for (u, at) in super::unified_log::check_unified_log(c, &collected, default_stream.as_deref()) {
        unified_logs.push(u);
        unified_paths.push(at);
    }
    let logs = Logs {
        log_group_name,
        log_stream_name: default_stream,
        concurrency,
        endpoint_override,
        role_arn,
        memory_budget_bytes,
        retention_in_days,
        force_flush_interval,
        files,
        journals,
        unified_logs,
        emf,
    };
    check_destinations(c, &logs, &file_paths, &journal_paths, &unified_paths);
    logs
}

/// Two sources must not write to one stream, and one group cannot have two retentions.
/// Templates are compared as written: `{instance_id}` and `{hostname}` are the same for all.
fn check_destinations(
    c: &mut Checker,
    logs: &Logs,
    file_paths: &[String],
    journal_paths: &[String],
    unified_paths: &[String],
) {
    // (group template, stream name or template, config path for messages)
    let mut seen: Vec<(String, String, String)> = Vec::new();
    let mut retention: Vec<(String, u32, String)> = Vec::new();
    let mut sources: Vec<(String, String, String, Option<u32>)> = Vec::new();
    for (f, at) in logs.files.iter().zip(file_paths) {
        let group = f
            .log_group_name
            .clone()
            .unwrap_or_else(|| logs.log_group_name.clone());
        let mut stream = f
            .log_stream_name
            .clone()
            .or_else(|| logs.log_stream_name.clone())
            .unwrap_or_else(|| "{file_name}".into());
        if stream.contains("{file_name}") {
            if f.file_path.contains(['*', '?', '[']) {
                // Which names a pattern yields is known only when files appear.
                continue;
            }
            let base = Path::new(&f.file_path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            stream = stream.replace("{file_name}", &base);
        }
        sources.push((
            group,
            stream,
            format!("{at}.file_path"),
            f.retention_in_days.or(logs.retention_in_days),
        ));
    }
    for (j, at) in logs.journals.iter().zip(journal_paths) {
        sources.push((
            j.log_group_name
                .clone()
                .unwrap_or_else(|| logs.log_group_name.clone()),
            j.log_stream_name.clone(),
            at.to_owned(),
            j.retention_in_days.or(logs.retention_in_days),
        ));
    }
    for (u, at) in logs.unified_logs.iter().zip(unified_paths) {
        sources.push((
            u.log_group_name.clone(),
            u.log_stream_name.clone(),
            at.to_owned(),
            u.retention_in_days.or(logs.retention_in_days),
        ));
    }
    for (group, stream, at, days) in sources {
        if let Some((_, _, first)) = seen.iter().find(|(g, s, _)| *g == group && *s == stream) {
            c.problem(
                &at,
                format!(
                    "writes to log stream {stream:?} in group {group:?}, as {first} does; give one of them another log_stream_name"
                ),
            );
        } else {
            seen.push((group.clone(), stream, at.clone()));
        }
        if let Some(days) = days {
            match retention.iter().find(|(g, _, _)| *g == group) {
                Some((_, d, first)) if *d != days => c.problem(
                    &at,
                    format!("sets retention_in_days {days} for log group {group:?}, but {first} sets {d}; a group has one retention"),
                ),
                Some(_) => {}
                None => retention.push((group, days, at)),
            }
        }
    }
}

/// `include_patterns`, `exclude_patterns` and the agent's `filters` of an entry, together.
pub(super) fn filters(c: &mut Checker, s: &Section) -> Filters {
    let mut filters = Filters {
        include: c.regexes(s, "include_patterns"),
        exclude: c.regexes(s, "exclude_patterns"),
    };
    if let Some(v) = s.get("filters") {
        let path = s.at("filters");
        match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let fpath = format!("{path}[{i}]");
                    let f = Section {
                        map: c.object(&fpath, item, FILTER_KEYS),
                        path: fpath,
                    };
                    if f.map.is_none() {
                        continue;
                    }
                    let kind = c.string(&f, "type");
                    let re = match f.get("expression") {
                        Some(e) => c.regex(&f.at("expression"), e),
                        None => {
                            c.problem(&f.at("expression"), "is required");
                            None
                        }
                    };
                    match (kind.as_deref(), re) {
                        (Some("include"), Some(re)) => filters.include.push(re),
                        (Some("exclude"), Some(re)) => filters.exclude.push(re),
                        (Some("include" | "exclude"), None) => {}
                        (Some(other), _) => c.problem(
                            &f.at("type"),
                            format!("{other:?} is neither \"include\" nor \"exclude\""),
                        ),
                        (None, _) if f.get("type").is_none() => {
                            c.problem(&f.at("type"), "is required (\"include\" or \"exclude\")")
                        }
                        (None, _) => {}
                    }
                }
            }
            None => c.wrong_type(&path, "an array of {\"type\", \"expression\"} objects", v),
        }
    }
    filters
}

fn check_file(c: &mut Checker, s: &Section) -> Option<FileSource> {
    let file_path = c.string(s, "file_path");
    match &file_path {
        None if s.get("file_path").is_none() => c.problem(&s.at("file_path"), "is required"),
        Some(p) if !Path::new(p).is_absolute() => c.problem(
            &s.at("file_path"),
            format!("{p:?} must be an absolute path"),
        ),
        _ => {}
    }
    let log_group_name = c.group_template(s, "log_group_name");
    let log_stream_name = c.stream_template(s, "log_stream_name");
    let retention_in_days = c.retention(s, "retention_in_days");
    let filters = filters(c, s);
    let from_beginning = c.bool(s, "from_beginning").unwrap_or(false);
    let utc = match c.string(s, "timezone").as_deref() {
        None | Some("Local" | "LOCAL" | "local") => false,
        Some("UTC" | "utc") => true,
        Some(other) => {
            c.problem(
                &s.at("timezone"),
                format!("{other:?} is not \"Local\" or \"UTC\""),
            );
            false
        }
    };
    let timestamp = c.string(s, "timestamp_format").and_then(|f| {
        TimestampFormat::new(&f, utc)
            .map_err(|e| c.problem(&s.at("timestamp_format"), e))
            .ok()
    });
    let trim_timestamp = c.bool(s, "trim_timestamp").unwrap_or(false);
    let multi_line_start = match s.get("multi_line_start_pattern") {
        None => None,
        Some(Value::String(p)) if p == "{timestamp_format}" => match &timestamp {
            Some(t) => Some(StartPattern::Timestamp(t.clone())),
            None => {
                if s.get("timestamp_format").is_none() {
                    c.problem(
                        &s.at("multi_line_start_pattern"),
                        "\"{timestamp_format}\" needs the entry's timestamp_format",
                    );
                }
                None
            }
        },
        Some(v) => c
            .regex(&s.at("multi_line_start_pattern"), v)
            .map(StartPattern::Regex),
    };
    let log_group_class = c.string(s, "log_group_class").and_then(|class| {
        match class.to_ascii_uppercase().as_str() {
            "STANDARD" => None,
            "INFREQUENT_ACCESS" => Some("INFREQUENT_ACCESS".to_owned()),
            _ => {
                c.problem(
                    &s.at("log_group_class"),
                    format!("{class:?} is not STANDARD or INFREQUENT_ACCESS"),
                );
                None
            }
        }
    });
    let blacklist = s
        .get("blacklist")
        .and_then(|v| c.regex(&s.at("blacklist"), v));
    let auto_removal = c.bool(s, "auto_removal").unwrap_or(false);
    let emf = c.bool(s, "emf").unwrap_or(false);
    if emf && (multi_line_start.is_some() || s.get("timestamp_format").is_some()) {
        c.problem(
            &s.at("emf"),
            "an embedded metric format document is one line with its own timestamp: leave out multi_line_start_pattern and timestamp_format",
        );
    }
    if c.bool(s, "publish_multi_logs") == Some(false) {
        c.warning(&s.at("publish_multi_logs"), "every file the pattern matches is followed, not only the newest (more than the agent sends, nothing less)");
    }
    if s.get("backpressure_mode").is_some() {
        c.warning(
            &s.at("backpressure_mode"),
            "has no effect here: a file is the buffer while CloudWatch is slow, and stays open",
        );
    }
    let encoding = match c.string(s, "encoding") {
        None => Encoding::Utf8,
        Some(name) => Encoding::from_name(&name).unwrap_or_else(|| {
            c.problem(
                &s.at("encoding"),
                format!("{name:?} is not an encoding this publisher knows (such as utf-8, utf-16le, utf-16be, latin1, windows-1252, gbk, shift_jis, euc-kr, big5, koi8-r)"),
            );
            Encoding::Utf8
        }),
    };
    if s.get("timestamp_format").is_none() {
        for key in ["timezone", "trim_timestamp"] {
            if s.get(key).is_some() {
                c.warning(&s.at(key), "has no effect without timestamp_format");
            }
        }
    }
    Some(FileSource {
        file_path: file_path?,
        log_group_name,
        log_stream_name,
        retention_in_days,
        filters,
        from_beginning,
        timestamp,
        trim_timestamp,
        encoding,
        log_group_class,
        blacklist,
        auto_removal,
        emf,
        multi_line_start,
    })
}

#[derive(Default)]
pub(super) struct Checker {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Checker {
    pub(super) fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Something in the file that is left out without losing data the user asked for.
    /// How many problems were found so far.
    pub(super) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    pub(super) fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn wrong_type(&mut self, path: &str, expected: &str, found: &Value) {
        self.problem(path, format!("must be {expected}, not {}", describe(found)));
    }

    /// An object whose keys are all known; unknown keys are reported with the closest known key.
    pub(super) fn object<'v>(
        &mut self,
        path: &str,
        v: &'v Value,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(map) = v.as_object() else {
            self.wrong_type(if path.is_empty() { "" } else { path }, "an object", v);
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = closest(key, known)
                    .map(|k| format!("; did you mean \"{k}\"?"))
                    .unwrap_or_default();
                self.problem(
                    &join(path, key),
                    format!("unknown key{hint} (known here: {})", known.join(", ")),
                );
            }
        }
        Some(map)
    }

    pub(super) fn string(&mut self, s: &Section, key: &str) -> Option<String> {
        let v = s.get(key)?;
        match v.as_str() {
            Some(text) => Some(text.to_owned()),
            None => {
                self.wrong_type(&s.at(key), "a string", v);
                None
            }
        }
    }

    pub(super) fn strings(&mut self, s: &Section, key: &str) -> Vec<String> {
        let Some(v) = s.get(key) else {
            return Vec::new();
        };
        let path = s.at(key);
        let Some(items) = v.as_array() else {
            self.wrong_type(&path, "an array of strings", v);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(text) => out.push(text.to_owned()),
                None => self.wrong_type(&format!("{path}[{i}]"), "a string", item),
            }
        }
        out
    }

    pub(super) fn bool(&mut self, s: &Section, key: &str) -> Option<bool> {
        let v = s.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.wrong_type(&s.at(key), "true or false", v);
                None
            }
        }
    }

    pub(super) fn integer(&mut self, s: &Section, key: &str, min: u64, max: u64) -> Option<u64> {
        let v = s.get(key)?;
        let path = s.at(key);
        match v.as_i64() {
            Some(n) if n < min as i64 => {
                self.problem(&path, format!("{n} is too small; the least is {min}"))
            }
            Some(n) if n as u64 > max => {
                self.problem(&path, format!("{n} is too large; the most is {max}"))
            }
            Some(n) => return Some(n as u64),
            None if v.is_number() => self.problem(&path, format!("{v} is not a whole number")),
            None => self.wrong_type(&path, "a whole number", v),
        }
        None
    }

    /// A whole number of seconds, 1 to `max`.
    pub(super) fn interval(&mut self, s: &Section, key: &str, max: u64) -> Option<Duration> {
        self.integer(s, key, 1, max).map(Duration::from_secs)
    }

    fn abs_path(&mut self, s: &Section, key: &str) -> Option<PathBuf> {
        let p = self.string(s, key)?;
        if p.is_empty() || !Path::new(&p).is_absolute() {
            self.problem(&s.at(key), format!("{p:?} must be an absolute path"));
            return None;
        }
        Some(p.into())
    }

    pub(super) fn retention(&mut self, s: &Section, key: &str) -> Option<u32> {
        let v = s.get(key)?;
        let path = s.at(key);
        if v.as_i64() == Some(-1) {
            // The agent's way of saying "keep forever": no retention is set.
            return None;
        }
        match v.as_u64() {
            Some(n) if RETENTION_DAYS.contains(&(n as u32)) && n <= u32::MAX as u64 => {
                Some(n as u32)
            }
            _ => {
                let list: Vec<String> = RETENTION_DAYS.iter().map(u32::to_string).collect();
                self.problem(
                    &path,
                    format!(
                        "{v} is not one of {}, or -1 (keep forever)",
                        list.join(", ")
                    ),
                );
                None
            }
        }
    }

    pub(super) fn group_template(&mut self, s: &Section, key: &str) -> Option<String> {
        let t = self.string(s, key)?;
        match names::check_template(&t, GROUP_PLACEHOLDERS, names::check_log_group) {
            Ok(()) => Some(t),
            Err(e) => {
                self.problem(
                    &s.at(key),
                    format!("{t:?} is not a valid log group name: {e}"),
                );
                None
            }
        }
    }

    pub(super) fn stream_template(&mut self, s: &Section, key: &str) -> Option<String> {
        let t = self.string(s, key)?;
        match names::check_template(&t, STREAM_PLACEHOLDERS, names::check_log_stream) {
            Ok(()) => Some(t),
            Err(e) => {
                self.problem(
                    &s.at(key),
                    format!("{t:?} is not a valid log stream name: {e}"),
                );
                None
            }
        }
    }

    pub(super) fn regex(&mut self, path: &str, v: &Value) -> Option<Regex> {
        let Some(pattern) = v.as_str() else {
            self.wrong_type(path, "a regular expression string", v);
            return None;
        };
        match Regex::new(pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                let detail = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.problem(
                    path,
                    format!("{pattern:?} is not a valid regular expression: {detail}"),
                );
                None
            }
        }
    }

    fn regexes(&mut self, s: &Section, key: &str) -> Vec<Regex> {
        let Some(v) = s.get(key) else {
            return Vec::new();
        };
        let path = s.at(key);
        let Some(items) = v.as_array() else {
            self.wrong_type(&path, "an array of regular expressions", v);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.regex(&format!("{path}[{i}]"), item))
            .collect()
    }
}

fn join(path: &str, key: &str) -> String {
    // A key with a line break (or another control character) is shown quoted and escaped, so
    // that each problem keeps to a line of its own.
    let key = if key.chars().any(char::is_control) {
        format!("{key:?}")
    } else {
        key.to_owned()
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The known key most like `key`, if any is close enough to be a likely typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, &k.to_lowercase()), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(json: &str) -> Vec<String> {
        match crate::config::parse(Path::new("/etc/p.json"), json) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    fn ok(json: &str) -> Config {
        crate::config::parse(Path::new("/etc/p.json"), json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn statsd_and_emf_take_the_agents_keys_and_listen_on_loopback_unless_told() {
        let c = ok(r#"{"metrics": {"metrics_collected": {"statsd": {}}},
            "logs": {"metrics_collected": {"emf": {"log_group_names": ["shop-*", "audit"]}}}}"#);
        let st = c
            .metrics
            .collected
            .as_ref()
            .unwrap()
            .statsd
            .clone()
            .unwrap();
        assert_eq!(st.listen.to_string(), "udp://127.0.0.1:8125");
        assert_eq!(st.collection_interval.as_secs(), 10);
        assert_eq!(st.aggregation_interval.map(|a| a.as_secs()), Some(60));
        assert_eq!(
            (st.allowed_pending_messages, st.metric_separator.as_str()),
            (10_000, "_")
        );
        let emf = c.logs.emf.clone().unwrap();
        let listen: Vec<String> = emf.listen.iter().map(|l| l.to_string()).collect();
        assert_eq!(listen, ["tcp://127.0.0.1:25888", "udp://127.0.0.1:25888"]);
        assert!(emf.log_group_names[0].matches("shop-metrics"));
        assert!(!emf.log_group_names[1].matches("audit-2"));
        // The effective config reads back the same.
        let again = ok(&crate::config::render::effective(&c).to_string());
        assert_eq!(again.metrics.collected.unwrap().statsd.unwrap(), st);
        assert_eq!(again.logs.emf.unwrap(), emf);

        let c = ok(r#"{"metrics": {"metrics_collected": {"statsd": {
            "service_address": "tcp://0.0.0.0:9125", "metrics_aggregation_interval": 0}}}}"#);
        let st = c
            .metrics
            .collected
            .as_ref()
            .unwrap()
            .statsd
            .clone()
            .unwrap();
        assert_eq!(st.listen.to_string(), "tcp://0.0.0.0:9125");
        assert_eq!(st.aggregation_interval, None);
        assert!(c
            .warnings
            .iter()
            .any(|w| w.message.contains("listens beyond this machine")));
    }

    #[test]
    fn bad_statsd_and_emf_settings_name_their_key() {
        let p = problems(
            r#"{"metrics": {"metrics_collected": {"statsd": {
            "service_address": "8125", "metrics_collection_interval": 30,
            "metrics_aggregation_interval": 10, "metric_separator": "|"}}},
            "logs": {"metrics_collected": {"emf": {"service_address": "http://:1",
                "log_group_names": ["a[", 7]}, "x": {}}}}"#,
        );
        for want in [
            "metrics.metrics_collected.statsd.service_address: \"8125\" is not an address",
            "metrics.metrics_collected.statsd.metrics_aggregation_interval: 10 s is shorter",
            "metrics.metrics_collected.statsd.metric_separator:",
            "logs.metrics_collected.emf.service_address: \"http://:1\" is not an address",
            "logs.metrics_collected.emf.log_group_names[0]: \"a[\" is not a log group name pattern",
            "logs.metrics_collected.emf.log_group_names[1]:",
            "logs.metrics_collected.x: unknown key",
        ] {
            assert!(p.iter().any(|m| m.starts_with(want)), "{want} in {p:#?}");
        }
    }

    #[test]
    fn unified_log_readers_as_the_journald_form_has_them() {
        let c = ok(
            r#"{"logs": {"log_stream_name": "{hostname}", "logs_collected": {"unified_log": {"collect_list": [
            {"log_group_name": "g", "predicate": "subsystem == 'a'", "level": "debug",
             "filters": [{"type": "exclude", "expression": "x"}], "retention_in_days": 7},
            {"log_group_name": "g", "log_stream_name": "errors"}]}}}}"#,
        );
        let u = &c.logs.unified_logs;
        assert_eq!(u.len(), 2);
        assert_eq!(&*u[0].key, "g/{hostname}");
        assert_eq!(u[0].predicate.as_deref(), Some("subsystem == 'a'"));
        assert_eq!(
            (u[0].level.as_str(), u[0].retention_in_days),
            ("debug", Some(7))
        );
        assert!(!u[0].filters.keeps("x marks"));
        assert_eq!(
            (u[1].level.as_str(), u[1].log_stream_name.as_str()),
            ("default", "errors")
        );
        assert!(u.iter().all(|u| u.collect));
        let off = ok(
            r#"{"logs": {"logs_collected": {"unified_log": {"collect": false, "collect_list": [{"log_group_name": "g"}]}}}}"#,
        );
        assert!(!off.logs.unified_logs[0].collect);

        let p = problems(
            r#"{"logs": {"logs_collected": {"unified_log": {"collect_list": [
                {"predicate": "x"},
                {"log_group_name": "g", "level": "verbose"},
                {"log_group_name": "g", "predicate": " "},
                {"log_group_name": "g", "log_stream_name": "s", "since": 1}]}}}}"#,
        );
        let want = [
            "unified_log.collect_list[0].log_group_name: is required",
            "unified_log.collect_list[1].level: \"verbose\" is not a level of the unified log; use one of default, info, debug",
            "unified_log.collect_list[2].predicate: must be a predicate",
            "unified_log.collect_list[3].since: unknown key",
        ];
        for w in want {
            assert!(p.iter().any(|p| p.contains(w)), "{w} not in {p:?}");
        }
        assert!(
            problems(r#"{"logs": {"logs_collected": {"unified_log": {}}}}"#)[0]
                .contains("unified_log.collect_list: is required")
        );
        // Two readers to one stream, as for any two sources.
        let p = problems(
            r#"{"logs": {"logs_collected": {"unified_log": {"collect_list": [
                {"log_group_name": "g", "log_stream_name": "s"}, {"log_group_name": "g", "log_stream_name": "s"}]}}}}"#,
        );
        assert!(p[0].contains("writes to log stream"), "{p:?}");
    }

    #[test]
    fn metrics_collected_that_measures_nothing_here_is_refused() {
        // Found by the config fuzz target: an empty procstat list was accepted, and the
        // effective config then showed an empty `metrics_collected`, which is refused.
        for json in [
            r#"{"metrics": {"metrics_collected": {"procstat": []}}}"#,
            r#"{"metrics": {"metrics_collected": {"nvidia_gpu": {}, "ethtool": {}}}}"#,
        ] {
            let p = problems(json);
            assert_eq!(p.len(), 1, "{json}: {p:?}");
            assert!(
                p[0].starts_with("metrics.metrics_collected: measures nothing here"),
                "{p:?}"
            );
        }
        // One section measured is enough; the left-out one is only a warning.
        let c = ok(
            r#"{"metrics": {"metrics_collected": {"procstat": [], "mem": {"measurement": ["used_percent"]}}}}"#,
        );
        assert_eq!(c.metrics.collected.unwrap().sections.len(), 1);
        // A wrong procstat item is named on its own, without a second problem about the whole.
        let p = problems(r#"{"metrics": {"metrics_collected": {"procstat": [{"exe": 5}]}}}"#);
        assert!(p.iter().all(|p| !p.contains("measures nothing")), "{p:?}");
    }

    #[test]
    fn a_key_with_a_line_break_is_one_line_of_the_message() {
        // Found by the config fuzz target: the key was printed as it is, over two lines.
        let err = crate::config::parse(
            Path::new("/etc/p.json"),
            r#"{"agent": {"inst\nce": 1, "region": "x\ny"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err.lines().count(), 2, "{err}");
        assert!(err.contains(r#"agent."inst\nce": unknown key"#), "{err}");
    }

    #[test]
    fn a_problem_quoting_a_line_break_from_the_file_is_one_line() {
        // Found by the config fuzz target: a placeholder or format token with a line break in
        // it was quoted as it is, over two lines.
        let err = crate::config::parse(
            Path::new("/etc/p.json"),
            r#"{"logs": {"logs_collected": {"files": {"collect_list": [
                {"file_path": "/a.log", "log_stream_name": "{insta\nce}"},
                {"file_path": "/b.log", "timestamp_format": "%H %\n"}]}}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err.lines().count(), 2, "{err}");
        assert!(err.contains(r"placeholder {insta\nce}"), "{err}");
    }

    #[test]
    fn empty_object_gives_the_original_defaults() {
        let c = ok("{}");
        assert_eq!(
            c.agent.metrics_collection_interval,
            Duration::from_secs(300)
        );
        assert_eq!(c.agent.logs_collection_interval, Duration::from_secs(10));
        assert_eq!(c.metrics.namespace, "System/Default");
        assert_eq!(c.logs.log_group_name, "/system/default/{instance_id}");
        assert_eq!(c.agent.logfile, Path::new(DEFAULT_LOGFILE));
        assert_eq!(c.agent.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert_eq!(c.agent.instance.prefix, "sys");
        assert!(c.agent.authentication.is_none());
        assert!(c.logs.journals.is_empty() && c.logs.files.is_empty());
    }

    #[test]
    fn a_proxy_url_keeps_its_password_apart() {
        let c = ok(
            r#"{"agent": {"proxy": "http://me:p%40ss:w@proxy.lan:3128/", "no_proxy": "localhost"}}"#,
        );
        let p = c.agent.proxy.unwrap();
        assert_eq!(p.url, "http://proxy.lan:3128");
        assert_eq!(p.user.as_deref(), Some("me"));
        assert_eq!(p.password.as_ref().map(|s| s.expose()), Some("p%40ss:w"));
        assert_eq!(p.no_proxy.as_deref(), Some("localhost"));
        assert!(!format!("{p:?}").contains("p%40ss"));
        assert_eq!(
            ok(r#"{"agent": {"proxy": "https://[::1]:8443"}}"#)
                .agent
                .proxy
                .unwrap()
                .url,
            "https://[::1]:8443"
        );
        for bad in [
            "proxy.lan:3128",
            "socks5://u:Secr3t@proxy.lan:1080",
            "http://u:Secr3t@proxy.lan:port",
            "http://u:Secr3t@proxy.lan:3128/path",
            "http://",
        ] {
            let p = problems(&format!(r#"{{"agent": {{"proxy": "{bad}"}}}}"#));
            assert!(
                p.iter().any(|p| p.starts_with("agent.proxy")),
                "{bad}: {p:?}"
            );
            assert!(!p.iter().any(|p| p.contains("Secr3t")), "{p:?}");
        }
    }

    #[test]
    fn a_section_without_a_role_takes_the_agents() {
        let c = ok(
            r#"{"agent": {"credentials": {"role_arn": "arn:aws:iam::111122223333:role/A"}},
                       "logs": {"credentials": {"role_arn": "arn:aws-cn:iam::444455556666:role/path/B"}}}"#,
        );
        assert_eq!(
            c.metrics.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/A")
        );
        assert_eq!(
            c.logs.role_arn.as_deref(),
            Some("arn:aws-cn:iam::444455556666:role/path/B")
        );
        assert!(ok("{}").metrics.role_arn.is_none());
        for bad in [
            "arn:aws:iam::1111:role/A",
            "arn:aws:iam::111122223333:user/A",
            "arn:aws:s3:::111122223333:role/A",
            "arn:aws:iam::111122223333:role/",
        ] {
            let p = problems(&format!(
                r#"{{"metrics": {{"credentials": {{"role_arn": "{bad}"}}}}}}"#
            ));
            assert!(
                p.iter()
                    .any(|p| p.starts_with("metrics.credentials.role_arn")),
                "{bad}: {p:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = problems(
            r#"{"agent": {"metrics_colection_interval": 5, "logs_collection_interval": 0, "debug": "yes"},
                "metrics": {"namespace": "AWS/Mine"},
                "logs": {"retention_in_days": 8, "log_group_name": "bad name",
                         "logs_collected": {"files": {"collect_list": [
                            {"file_path": "/var/log/syslog", "include_patterns": ["("]},
                            {"exclude_patterns": "x"}]}}}}"#,
        );
        let joined = p.join("\n");
        assert!(joined.contains("agent.metrics_colection_interval: unknown key; did you mean \"metrics_collection_interval\"?"), "{joined}");
        assert!(
            joined.contains("agent.logs_collection_interval: 0 is too small"),
            "{joined}"
        );
        assert!(
            joined.contains("agent.debug: must be true or false, not the string \"yes\""),
            "{joined}"
        );
        assert!(joined.contains("metrics.namespace:"), "{joined}");
        assert!(
            joined.contains("logs.retention_in_days: 8 is not one of 1, 3, 5"),
            "{joined}"
        );
        assert!(
            joined.contains("logs.log_group_name: \"bad name\" is not a valid log group name"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "collect_list[0].include_patterns[0]: \"(\" is not a valid regular expression"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("collect_list[1].file_path: is required"),
            "{joined}"
        );
        assert!(
            joined.contains("collect_list[1].exclude_patterns: must be an array"),
            "{joined}"
        );
        assert_eq!(p.len(), 9, "{joined}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e =
            crate::config::parse(Path::new("/etc/p.json"), "{\n  \"agent\": {,}\n}").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/etc/p.json:2:"), "{text}");
        assert!(text.contains("invalid JSON"), "{text}");
    }

    #[test]
    fn intervals_have_bounds() {
        assert_eq!(
            problems(r#"{"agent": {"metrics_collection_interval": 86400}}"#),
            Vec::<String>::new()
        );
        assert!(
            problems(r#"{"agent": {"metrics_collection_interval": 86401}}"#)[0]
                .contains("too large")
        );
        assert!(
            problems(r#"{"agent": {"metrics_collection_interval": -5}}"#)[0].contains("too small")
        );
        assert!(
            problems(r#"{"agent": {"metrics_collection_interval": 1.5}}"#)[0]
                .contains("not a whole number")
        );
    }

    #[test]
    fn authentication_needs_all_five_keys() {
        let p = problems(
            r#"{"agent": {"authentication": {"accountId": "123", "userPoolId": "nope", "password": ""}}}"#,
        );
        let joined = p.join("\n");
        assert!(
            joined.contains("agent.authentication.accountId: \"123\" is not a 12-digit"),
            "{joined}"
        );
        assert!(
            joined.contains("agent.authentication.userPoolId: \"nope\""),
            "{joined}"
        );
        assert!(
            joined.contains("agent.authentication.identityPoolId: is required"),
            "{joined}"
        );
        assert!(
            joined.contains("agent.authentication.appClientId: is required"),
            "{joined}"
        );
        assert!(
            joined.contains("agent.authentication.password: must not be empty"),
            "{joined}"
        );
    }

    #[test]
    fn full_authentication_parses_and_keeps_password_secret() {
        let c = ok(
            r#"{"agent": {"region": "eu-west-1", "authentication": {"accountId": "123456789012",
            "userPoolId": "eu-west-1_AbC123", "identityPoolId": "eu-west-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "appClientId": "a1b2c3d4e5", "password": "p\"a$s\\w"}}}"#,
        );
        let auth = c.agent.authentication.as_ref().unwrap();
        assert_eq!(auth.password.expose(), "p\"a$s\\w");
        assert_eq!(auth.user_pool_region(), "eu-west-1");
        assert!(!format!("{c:?}").contains("a$s"));
    }

    #[test]
    fn journal_forms() {
        let j = &ok(r#"{"logs": {"logs_collected": {"journal": true}}}"#)
            .logs
            .journals;
        assert!(j.len() == 1 && j[0].key.is_none());
        assert!(ok(r#"{"logs": {"logs_collected": {"journal": false}}}"#)
            .logs
            .journals
            .is_empty());
        let j = ok(
            r#"{"logs": {"logs_collected": {"journal": {"collect": true, "exclude_patterns": ["sshd"], "priority": "info"}}}}"#,
        );
        let j = &j.logs.journals[0];
        assert!(!j.filters.keeps("sshd[1]: hello") && j.filters.keeps("kernel: hi"));
        assert!(
            problems(r#"{"logs": {"logs_collected": {"journal": "yes"}}}"#)[0]
                .contains("must be true, false or an object")
        );
        assert!(
            problems(r#"{"logs": {"logs_collected": {"journal": {"priority": "loud"}}}}"#)[0]
                .contains("not a journal priority")
        );
    }

    #[test]
    fn journald_collect_lists_as_the_agent_writes_them() {
        let c = ok(r#"{"logs": {"log_stream_name": "box", "logs_collected": {
            "journal": true,
            "journald": {"collect_list": [
                {"log_group_name": "system-logs", "units": ["systemd", "sshd"], "retention_in_days": 7,
                 "filters": [{"type": "exclude", "expression": ".*debug.*"}]},
                {"log_group_name": "journald-root", "log_stream_name": "root",
                 "matches": [{"_UID": "0"}, {"_TRANSPORT": "kernel"}], "priority": "err"}
            ]}}}}"#);
        let j = &c.logs.journals;
        assert_eq!(j.len(), 3);
        assert!(j[0].key.is_none(), "journal: true keeps its own position");
        assert_eq!(j[1].key.as_deref(), Some("system-logs/box"));
        assert_eq!(
            j[1].log_stream_name, "box",
            "logs.log_stream_name is the default"
        );
        assert_eq!(
            j[1].priority.as_deref(),
            Some("info"),
            "the agent's default"
        );
        assert!(!j[1].filters.keeps("a debug line"));
        assert_eq!(j[2].matches.len(), 2);
        assert_eq!(j[2].retention_in_days, None);
        let p = problems(
            r#"{"logs": {"logs_collected": {"journald": {"collect_list": [
            {"units": ["a"]}, {"log_group_name": "g", "matches": [{"lower": "x"}], "mode": "native"}]}}}}"#,
        );
        let p = p.join("\n");
        assert!(
            p.contains("journald.collect_list[0].log_group_name: is required"),
            "{p}"
        );
        assert!(
            p.contains("journald.collect_list[1].matches[0].lower: is not a journal field name"),
            "{p}"
        );
        assert!(
            p.contains("journald.collect_list[1].mode: unknown key"),
            "{p}"
        );
        let p = problems(
            r#"{"logs": {"logs_collected": {"journald": {"collect_list": [
            {"log_group_name": "g", "log_stream_name": "s"}, {"log_group_name": "g", "log_stream_name": "s"}]}}}}"#,
        );
        assert!(
            p[0].contains("writes to log stream \"s\" in group \"g\""),
            "{p:?}"
        );
    }

    #[test]
    fn agent_style_filters_join_the_patterns() {
        let c = ok(
            r#"{"logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "/var/log/a.log",
            "include_patterns": ["ERROR|WARN"],
            "filters": [{"type": "exclude", "expression": "healthcheck"}]}]}}}}"#,
        );
        let f = &c.logs.files[0].filters;
        assert!(f.keeps("ERROR boom"));
        assert!(!f.keeps("ERROR healthcheck failed"));
        assert!(!f.keeps("INFO fine"));
        let p = problems(
            r#"{"logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "/a",
            "filters": [{"type": "maybe", "expression": "x"}, {"type": "include"}]}]}}}}"#,
        );
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn relative_paths_are_refused() {
        let p = problems(
            r#"{"agent": {"logfile": "publisher.log", "state_dir": ""},
            "logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "var/log/x"}]}}}}"#,
        );
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn two_sources_cannot_share_a_stream_or_a_group_two_retentions() {
        let p = problems(
            r#"{"logs": {"retention_in_days": 30, "logs_collected": {
                "files": {"collect_list": [
                    {"file_path": "/var/log/a/app.log"},
                    {"file_path": "/var/log/b/app.log"},
                    {"file_path": "/var/log/c.log", "log_stream_name": "journal"},
                    {"file_path": "/var/log/d.log", "retention_in_days": 7},
                    {"file_path": "/var/log/e/*.log"},
                    {"file_path": "/var/log/f/*.log"}]},
                "journal": true}}}"#,
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(p[0].starts_with(
            "logs.logs_collected.files.collect_list[1].file_path: writes to log stream \"app.log\""
        ));
        assert!(p[0].contains("collect_list[0].file_path does"));
        assert!(p[1].contains("collect_list[3].file_path: sets retention_in_days 7"));
        assert!(p[2].starts_with("logs.logs_collected.journal: writes to log stream \"journal\""));
        ok(r#"{"logs": {"logs_collected": {"files": {"collect_list": [
                {"file_path": "/a/app.log"}, {"file_path": "/b/app.log", "log_group_name": "other"}]}}}}"#);
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert!(problems("[]")[0].contains("must be an object, not an array"));
        assert!(problems(r#"{"agent": 5}"#)[0].starts_with("agent: must be an object"));
        assert!(problems(r#"{"agnet": {}}"#)[0].contains("did you mean \"agent\"?"));
    }
}
