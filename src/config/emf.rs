//! `logs.metrics_collected.emf`: the embedded metric format receiver, in the agent's form (TCP
//! and UDP on 127.0.0.1:25888 unless `service_address` names one), with where documents that
//! name no log group or stream go.

use serde_json::Value;

use super::check::{Checker, Section};
use super::listen::{self, Transport};
use super::Emf;

const EMF_KEYS: &[&str] = &[
    "service_address",
    "log_group_name",
    "log_stream_name",
    "log_group_names",
];
/// The agent's port.
pub const DEFAULT_ADDRESS: &str = ":25888";

/// Checks the `emf` section at `path`.
pub(super) fn check_emf(c: &mut Checker, path: &str, v: &Value) -> Option<Emf> {
    let map = c.object(path, v, EMF_KEYS)?;
    let s = Section::new(path, map);
    let listen = listen::check(c, &s, DEFAULT_ADDRESS, &[Transport::Tcp, Transport::Udp]);
    let mut log_group_names = Vec::new();
    for (i, text) in c.strings(&s, "log_group_names").into_iter().enumerate() {
        match glob::Pattern::new(&text) {
            Ok(p) => log_group_names.push(p),
            Err(e) => c.problem(
                &format!("{}[{i}]", s.at("log_group_names")),
                format!("{text:?} is not a log group name pattern: {e}"),
            ),
        }
    }
    Some(Emf {
        listen,
        log_group_name: c.group_template(&s, "log_group_name"),
        log_stream_name: c.stream_template(&s, "log_stream_name"),
        log_group_names,
    })
}
