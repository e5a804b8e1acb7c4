//! `system` (not in the agent; as Telegraf's system input): load averages, CPUs and uptime,
//! from /proc/loadavg, /proc/stat and /proc/uptime (without /proc, from sysinfo).

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
    supported: true,
    macos: &["load1", "load5", "load15", "n_cpus", "uptime"],
    new: |c| Box::new(System(c.clone())),
};

pub struct System(SectionConfig);

/// Through sysinfo: load averages, CPUs and uptime.
fn collect_portable(c: &SectionConfig, out: &mut Vec<Series>) {
    let mut s = Series::new(Vec::new());
    if let Ok(l) = sysinfo::System::load_average() {
        s.put(c, "load1", l.one);
        s.put(c, "load5", l.five);
        s.put(c, "load15", l.fifteen);
    }
    if let Ok(n) = std::thread::available_parallelism() {
        s.put(c, "n_cpus", n.get() as f64);
    }
    if let Ok(up) = sysinfo::System::uptime() {
        s.put(c, "uptime", up as f64);
    }
    out.push(s);
}

impl Collector for System {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let c = &self.0;
        if !host.has_proc() {
            return collect_portable(c, out);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sysinfo_and_proc_agree() {
        let config = SectionConfig::all("system", Duration::from_secs(60));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        collect_portable(&config, &mut a);
        System(config).collect(&Host::at(std::path::Path::new("/")), &mut b);
        let get = |s: &[Series], f: &str| s[0].values.iter().find(|v| v.0 == f).unwrap().1;
        assert_eq!(get(&a, "n_cpus"), get(&b, "n_cpus"));
        assert!((get(&a, "uptime") - get(&b, "uptime")).abs() <= 2.0);
        assert!((get(&a, "load15") - get(&b, "load15")).abs() < 0.5);
    }
}
