//! `logs.logs_collected.journald`, the CloudWatch Agent's form: a `collect_list` of journal
//! readers, each with its own units, priority, matches, filters and destination, and its own
//! position in the state file (keyed by its log group and stream).

use serde_json::Value;

use super::check::{filters, Checker, Section};
use super::JournalSource;

const JOURNALD_KEYS: &[&str] = &["collect_list"];
const ENTRY_KEYS: &[&str] = &[
    "units",
    "priority",
    "matches",
    "filters",
    "log_group_name",
    "log_stream_name",
    "retention_in_days",
];
/// The journal's priorities, by name and number.
pub(super) const PRIORITIES: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "0", "1", "2", "3", "4",
    "5", "6", "7",
];
/// The agent reads entries of this priority and more urgent unless an entry says otherwise.
const DEFAULT_PRIORITY: &str = "info";
/// A reader's stream when neither it nor `logs.log_stream_name` names one.
const DEFAULT_STREAM: &str = "{instance_id}";

/// A priority name or number, checked.
pub(super) fn priority(c: &mut Checker, s: &Section) -> Option<String> {
    let p = c.string(s, "priority")?;
    if PRIORITIES.contains(&p.as_str()) {
        Some(p)
    } else {
        c.problem(
            &s.at("priority"),
            format!(
                "{p:?} is not a journal priority; use one of {}",
                PRIORITIES[..8].join(", ")
            ),
        );
        None
    }
}

/// One entry of a reader section's `collect_list` (`journald`, `unified_log`): the entry, its
/// path, and its log group and stream.
pub(super) struct Reader<'v> {
    pub(super) entry: Section<'v>,
    pub(super) at: String,
    pub(super) group: String,
    pub(super) stream: String,
}

/// A reader section in the agent's form: an object (keys `keys`) with a required
/// `collect_list` of objects (keys `entry_keys`), each with a required `log_group_name` and a
/// `log_stream_name` (default `default_stream`, else `{instance_id}`). Returns the section and
/// its entries; None when it is absent or not an object. `what` names the readers in messages.
pub(super) fn readers<'v>(
    c: &mut Checker,
    parent: &Section<'v>,
    key: &str,
    keys: &[&str],
    entry_keys: &[&str],
    what: &str,
    default_stream: Option<&str>,
) -> Option<(Section<'v>, Vec<Reader<'v>>)> {
    let v = parent.get(key)?;
    let path = parent.at(key);
    let map = c.object(&path, v, keys)?;
    let s = Section::new(&path, map);
    let mut out = Vec::new();
    let Some(list) = s.get("collect_list") else {
        c.problem(
            &s.at("collect_list"),
            format!("is required: a list of {what}"),
        );
        return Some((s, out));
    };
    let list_path = s.at("collect_list");
    let Some(items) = list.as_array() else {
        c.wrong_type(&list_path, "an array of objects", list);
        return Some((s, out));
    };
    for (i, item) in items.iter().enumerate() {
        let at = format!("{list_path}[{i}]");
        let Some(map) = c.object(&at, item, entry_keys) else {
            continue;
        };
        let entry = Section::new(&at, map);
        let Some(group) = c.group_template(&entry, "log_group_name") else {
            if entry.get("log_group_name").is_none() {
                c.problem(&entry.at("log_group_name"), "is required");
            }
            continue;
        };
        let stream = c
            .stream_template(&entry, "log_stream_name")
            .unwrap_or_else(|| default_stream.unwrap_or(DEFAULT_STREAM).to_owned());
        out.push(Reader {
            entry,
            at,
            group,
            stream,
        });
    }
    Some((s, out))
}

/// Checks `journald` (at `parent`'s key `journald`); `default_stream` is `logs.log_stream_name`.
pub(super) fn check_journald(
    c: &mut Checker,
    parent: &Section,
    default_stream: Option<&str>,
) -> Vec<(JournalSource, String)> {
    let Some((_, readers)) = readers(
        c,
        parent,
        "journald",
        JOURNALD_KEYS,
        ENTRY_KEYS,
        "journal readers",
        default_stream,
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for Reader {
        entry: e,
        at,
        group,
        stream,
    } in readers
    {
        let matches = matches(c, &e);
        out.push((
            JournalSource {
                key: Some(format!("{group}/{stream}").into()),
                log_group_name: Some(group),
                log_stream_name: stream,
                retention_in_days: c.retention(&e, "retention_in_days"),
                filters: filters(c, &e),
                units: c.strings(&e, "units"),
                priority: priority(c, &e).or_else(|| Some(DEFAULT_PRIORITY.into())),
                matches,
            },
            at,
        ));
    }
    out
}

/// `matches`: objects of journal field → value; the fields of one object must all match, and
/// an entry matching any object is read (journalctl's `FIELD=VALUE`, and `+` between objects).
fn matches(c: &mut Checker, s: &Section) -> Vec<Vec<(String, String)>> {
    let Some(v) = s.get("matches") else {
        return Vec::new();
    };
    let path = s.at("matches");
    let Some(items) = v.as_array() else {
        c.wrong_type(&path, "an array of objects of journal fields and values", v);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(map) = item.as_object() else {
            c.wrong_type(&at, "an object of journal fields and values", item);
            continue;
        };
        let mut group = Vec::new();
        for (field, value) in map {
            let valid = !field.is_empty()
                && field
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            match (valid, value) {
                (true, Value::String(v)) => group.push((field.clone(), v.clone())),
                (false, _) => c.problem(
                    &format!("{at}.{field}"),
                    "is not a journal field name (upper-case letters, digits and _, such as _SYSTEMD_UNIT)",
                ),
                (true, other) => c.wrong_type(&format!("{at}.{field}"), "a string", other),
            }
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}
