//! `system` (not in the agent; as Telegraf's system input): load averages, CPUs and uptime,
//! from /proc/loadavg, /proc/stat and /proc/uptime.

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "system",
    prefix: "system",
    fields: &[
        field("load1", Unit::None, Kind::Gauge),
        field("load5", Unit::None, Kind::Gauge),
        field("load15", Unit::None, Kind::Gauge),
        field("n_cpus", Unit::Count, Kind::Gauge),
        field("uptime", Unit::Seconds, Kind::Gauge),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "",
    supported: cfg!(target_os = "linux"),
    new: |c| Box::new(System(c.clone())),
};

pub struct System(SectionConfig);

impl Collector for System {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let c = &self.0;
        let mut s = Series::new(Vec::new());
        if let Some(text) = host.read_proc("system", "loadavg") {
            let f: Vec<f64> = text
                .split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [a, b, d] = f[..] {
                s.put(c, "load1", a);
                s.put(c, "load5", b);
                s.put(c, "load15", d);
            }
        }
        if c.wants("n_cpus") {
            if let Some(text) = host.read_proc("system", "stat") {
                let n = super::cpu::parse(&text)
                    .iter()
                    .filter(|(name, _)| name != "cpu-total")
                    .count();
                s.put(c, "n_cpus", n as f64);
            }
        }
        if let Some(text) = host.read_proc("system", "uptime") {
            if let Some(up) = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                s.put(c, "uptime", up.floor());
            }
        }
        if !s.values.is_empty() {
            out.push(s);
        }
    }
}
