//! `swap`: swap space from /proc/meminfo (without /proc, from sysinfo).

use super::{field, mem, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "swap",
    prefix: "swap",
    fields: &[
        field("free", Unit::Bytes, Kind::Gauge),
        field("used", Unit::Bytes, Kind::Gauge),
        field("used_percent", Unit::Percent, Kind::Gauge),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "",
    supported: true,
    macos: &["free", "used", "used_percent"],
    new: |c| Box::new(Swap(c.clone())),
};

pub struct Swap(SectionConfig);

impl Collector for Swap {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let (total, free) = if host.has_proc() {
            let Some(text) = host.read_proc("swap", "meminfo") else {
                return;
            };
            let m = mem::parse(&text);
            let get = |k: &str| m.get(k).copied().unwrap_or(0);
            (get("SwapTotal"), get("SwapFree"))
        } else {
            let Some(system) = mem::memory(&self.0, host) else {
                return;
            };
            (system.total_swap(), system.free_swap())
        };
        let used = total.saturating_sub(free);
        let c = &self.0;
        let mut s = Series::new(Vec::new());
        s.put(c, "free", free as f64);
        s.put(c, "used", used as f64);
        // No swap at all is 0 % used, as Telegraf reports it.
        let percent = if total > 0 {
            100.0 * used as f64 / total as f64
        } else {
            0.0
        };
        s.put(c, "used_percent", percent);
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sysinfo_and_proc_agree_on_the_swap() {
        let host = Host::at(std::path::Path::new("/"));
        let config = SectionConfig::all("swap", Duration::from_secs(60));
        let system = mem::memory(&config, &host).unwrap();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let proc = mem::parse(&meminfo);
        assert_eq!(system.total_swap(), proc["SwapTotal"]);
        let mut out = Vec::new();
        Swap(config).collect(&host, &mut out);
        let percent = out[0]
            .values
            .iter()
            .find(|v| v.0 == "used_percent")
            .unwrap()
            .1;
        assert!((0.0..=100.0).contains(&percent));
    }
}
