//! `logs.logs_collected.unified_log`: macOS's unified log, in the form of the agent's `journald`
//! section: a `collect_list` of readers, each with its own predicate, level, filters and
//! destination, and its own position in the state file (keyed by its log group and stream).
//! `"collect": false` keeps the list in the file without reading it.

use super::check::{filters, Checker, Section};
use super::journald::{readers, Reader};
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
    let Some((s, readers)) = readers(
        c,
        parent,
        "unified_log",
        UNIFIED_LOG_KEYS,
        ENTRY_KEYS,
        "unified log readers",
        default_stream,
    ) else {
        return Vec::new();
    };
    let collect = c.bool(&s, "collect").unwrap_or(true);
    let mut out = Vec::new();
    for Reader {
        entry: e,
        at,
        group,
        stream,
    } in readers
    {
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
