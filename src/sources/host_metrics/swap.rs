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
        if !host.has_proc() {
            return mem::collect_portable(&self.0, host, out);
        }
        let Some(text) = host.read_proc("swap", "meminfo") else {
            return;
        };
        let m = mem::parse(&text);
        let total = m.get("SwapTotal").copied().unwrap_or(0);
        let free = m.get("SwapFree").copied().unwrap_or(0);
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
