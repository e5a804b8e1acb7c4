//! `metrics.metrics_collected.statsd`: the StatsD listener, with the agent's keys.

use std::time::Duration;

use serde_json::Value;

use super::check::{Checker, Section};
use super::listen::{self, Transport};
use super::Statsd;

const STATSD_KEYS: &[&str] = &[
    "service_address",
    "metrics_collection_interval",
    "metrics_aggregation_interval",
    "allowed_pending_messages",
    "metric_separator",
];
/// The agent's defaults.
pub const DEFAULT_ADDRESS: &str = ":8125";
pub const DEFAULT_COLLECTION: Duration = Duration::from_secs(10);
pub const DEFAULT_AGGREGATION: Duration = Duration::from_secs(60);
pub const DEFAULT_PENDING: usize = 10_000;
pub const DEFAULT_SEPARATOR: &str = "_";
/// The agent's limit for its intervals: two days.
const MAX_INTERVAL_SECS: u64 = 172_800;

/// Checks the `statsd` section at `path`.
pub(super) fn check_statsd(c: &mut Checker, path: &str, v: &Value) -> Option<Statsd> {
    let map = c.object(path, v, STATSD_KEYS)?;
    let s = Section::new(path, map);
    let listen = listen::check(c, &s, DEFAULT_ADDRESS, &[Transport::Udp]);
    let collection = c
        .interval(&s, "metrics_collection_interval", MAX_INTERVAL_SECS)
        .unwrap_or(DEFAULT_COLLECTION);
    let aggregation = match c.integer(&s, "metrics_aggregation_interval", 0, MAX_INTERVAL_SECS) {
        Some(0) => None,
        Some(n) => Some(Duration::from_secs(n)),
        None => Some(DEFAULT_AGGREGATION),
    };
    if let Some(a) = aggregation {
        if a < collection {
            c.problem(
                &s.at("metrics_aggregation_interval"),
                format!(
                    "{} s is shorter than metrics_collection_interval ({} s): a data point would cover less than one collection (0 turns aggregation off)",
                    a.as_secs(),
                    collection.as_secs()
                ),
            );
        }
    }
    let pending = c
        .integer(&s, "allowed_pending_messages", 1, 10_000_000)
        .map_or(DEFAULT_PENDING, |n| n as usize);
    let metric_separator = c
        .string(&s, "metric_separator")
        .unwrap_or_else(|| DEFAULT_SEPARATOR.to_owned());
    if metric_separator.is_empty()
        || metric_separator.len() > 8
        || metric_separator.contains([':', '|', '\n'])
    {
        c.problem(
            &s.at("metric_separator"),
            format!("{metric_separator:?} cannot join the parts of a metric name; use \"_\" or \".\" (no dots replaced)"),
        );
    }
    let listen = listen.into_iter().next()?;
    Some(Statsd {
        listen,
        collection_interval: collection,
        aggregation_interval: aggregation,
        allowed_pending_messages: pending,
        metric_separator,
    })
}
