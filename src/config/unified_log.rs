//! `logs.logs_collected.unified_log`: macOS's unified log, in the form of the agent's `journald`
//! section: a `collect_list` of readers, each with its own predicate, level, filters and
//! destination, and its own position in the state file (keyed by its log group and stream).
//! `"collect": false` keeps the list in the file without reading it.

use super::check::{filters, Checker, Section};
use super::UnifiedLogSource;

const UNIFIED_LOG_KEYS: &[&str] = &["collect", "collect_list"];
const ENTRY_KEYS: &[&str] = &[
    "predicate",
    "level",
    "filters",
    "log_group_name",
    "log_stream_name",
    "retention_in_days",
];
/// `log stream --level`: what is read besides errors and faults.
pub(super) const LEVELS: &[&str] = &["default", "info", "debug"];
/// An entry's stream when neither it nor `logs.log_stream_name` names one.
const DEFAULT_STREAM: &str = "{instance_id}";
/// A predicate longer than this is surely not one (the command line has its limits too).
const MAX_PREDICATE: usize = 4096;

/// Checks `unified_log` (at `parent`'s key `unified_log`); `default_stream` is
/// `logs.log_stream_name`. Returns the readers with their config paths; none when `collect`
/// is false.
pub(super) fn check_unified_log(
    c: &mut Checker,
    parent: &Section,
    default_stream: Option<&str>,
) -> Vec<(UnifiedLogSource, String)> {
    let Some(v) = parent.get("unified_log") else {
        return Vec::new();
    };
    let path = parent.at("unified_log");
    let Some(map) = c.object(&path, v, UNIFIED_LOG_KEYS) else {
        return Vec::new();
    };
    let s = Section::new(&path, map);
    let collect = c.bool(&s, "collect").unwrap_or(true);
    let Some(list) = s.get("collect_list") else {
        c.problem(
            &s.at("collect_list"),
            "is required: a list of unified log readers",
        );
        return Vec::new();
    };
    let list_path = s.at("collect_list");
    let Some(items) = list.as_array() else {
        c.wrong_type(&list_path, "an array of objects", list);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{list_path}[{i}]");
        let Some(map) = c.object(&at, item, ENTRY_KEYS) else {
            continue;
        };
        let e = Section::new(&at, map);
        let Some(group) = c.group_template(&e, "log_group_name") else {
            if e.get("log_group_name").is_none() {
                c.problem(&e.at("log_group_name"), "is required");
            }
            continue;
        };
        let stream = c
            .stream_template(&e, "log_stream_name")
            .unwrap_or_else(|| default_stream.unwrap_or(DEFAULT_STREAM).to_owned());
        let predicate = c.string(&e, "predicate");
        if let Some(p) = &predicate {
            if p.trim().is_empty() || p.len() > MAX_PREDICATE || p.contains('\0') {
                c.problem(
                    &e.at("predicate"),
                    format!("must be a predicate of `log stream` (such as \"subsystem == 'com.apple.xpc'\"), of up to {MAX_PREDICATE} bytes"),
                );
            }
        }
        let level = match c.string(&e, "level") {
            None => LEVELS[0].to_owned(),
            Some(l) if LEVELS.contains(&l.as_str()) => l,
            Some(l) => {
                c.problem(
                    &e.at("level"),
                    format!(
                        "{l:?} is not a level of the unified log; use one of {}",
                        LEVELS.join(", ")
                    ),
                );
                continue;
            }
        };
        out.push((
            UnifiedLogSource {
                key: format!("{group}/{stream}").into(),
                log_group_name: group,
                log_stream_name: stream,
                retention_in_days: c.retention(&e, "retention_in_days"),
                filters: filters(c, &e),
                predicate,
                level,
                collect,
            },
            at,
        ));
    }
    out
}
