//! `netstat`: TCP connections by state and UDP sockets, counted from /proc/net/{tcp,tcp6,udp,
//! udp6} (the agent's figures, without walking every process's file descriptors).

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "netstat",
    prefix: "netstat",
    fields: &[
        field("tcp_close", Unit::Count, Kind::Gauge),
        field("tcp_close_wait", Unit::Count, Kind::Gauge),
        field("tcp_closing", Unit::Count, Kind::Gauge),
        field("tcp_established", Unit::Count, Kind::Gauge),
        field("tcp_fin_wait1", Unit::Count, Kind::Gauge),
        field("tcp_fin_wait2", Unit::Count, Kind::Gauge),
        field("tcp_last_ack", Unit::Count, Kind::Gauge),
        field("tcp_listen", Unit::Count, Kind::Gauge),
        field("tcp_none", Unit::Count, Kind::Gauge),
        field("tcp_syn_sent", Unit::Count, Kind::Gauge),
        field("tcp_syn_recv", Unit::Count, Kind::Gauge),
        field("tcp_time_wait", Unit::Count, Kind::Gauge),
        field("udp_socket", Unit::Count, Kind::Gauge),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "",
    supported: cfg!(target_os = "linux"),
    new: |c| Box::new(Netstat(c.clone())),
};

/// The kernel's TCP states (include/net/tcp_states.h), by number.
const STATES: [&str; 12] = [
    "tcp_none",
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
];

/// Connections per state in /proc/net/tcp text (index as in [`STATES`]).
pub fn count_tcp(text: &str, counts: &mut [u64; 12]) {
    for line in text.lines().skip(1) {
        let state = line
            .split_whitespace()
            .nth(3)
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .filter(|&s| s < STATES.len())
            .unwrap_or(0);
        counts[state] += 1;
    }
}

pub struct Netstat(SectionConfig);

impl Collector for Netstat {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let mut tcp = [0u64; 12];
        let mut udp = 0u64;
        let mut any = false;
        for file in ["net/tcp", "net/tcp6"] {
            // IPv6 may be off; only a missing /proc/net/tcp is worth a warning.
            let text = if file == "net/tcp" {
                host.read_proc("netstat", file)
            } else {
                std::fs::read_to_string(host.proc.join(file)).ok()
            };
            if let Some(t) = text {
                any = true;
                count_tcp(&t, &mut tcp);
            }
        }
        for file in ["net/udp", "net/udp6"] {
            if let Ok(t) = std::fs::read_to_string(host.proc.join(file)) {
                udp += t.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64;
            }
        }
        if !any {
            return;
        }
        let mut s = Series::new(Vec::new());
        for (i, name) in STATES.iter().enumerate() {
            s.put(&self.0, name, tcp[i] as f64);
        }
        s.put(&self.0, "udp_socket", udp as f64);
        out.push(s);
    }
}
