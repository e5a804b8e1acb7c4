//! `mem`: memory from /proc/meminfo, as the agent (Telegraf's mem input) gives it.

use std::collections::HashMap;

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "mem",
    prefix: "mem",
    fields: &[
        field("active", Unit::Bytes, Kind::Gauge),
        field("available", Unit::Bytes, Kind::Gauge),
        field("available_percent", Unit::Percent, Kind::Gauge),
        field("buffered", Unit::Bytes, Kind::Gauge),
        field("cached", Unit::Bytes, Kind::Gauge),
        field("free", Unit::Bytes, Kind::Gauge),
        field("inactive", Unit::Bytes, Kind::Gauge),
        field("total", Unit::Bytes, Kind::Gauge),
        field("used", Unit::Bytes, Kind::Gauge),
        field("used_percent", Unit::Percent, Kind::Gauge),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "",
    supported: cfg!(target_os = "linux"),
    new: |c| Box::new(Mem(c.clone())),
};

/// /proc/meminfo's values in bytes, by name.
pub fn parse(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let mut f = rest.split_whitespace();
            let n: u64 = f.next()?.parse().ok()?;
            let bytes = match f.next() {
                Some("kB") => n * 1024,
                _ => n,
            };
            Some((name.trim(), bytes))
        })
        .collect()
}

pub struct Mem(SectionConfig);

impl Collector for Mem {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let Some(text) = host.read_proc("mem", "meminfo") else {
            return;
        };
        let m = parse(&text);
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        let total = get("MemTotal");
        let free = get("MemFree");
        let buffers = get("Buffers");
        // As Telegraf (gopsutil) counts it: reclaimable slab is cache too.
        let cached = get("Cached") + get("SReclaimable");
        let available = m
            .get("MemAvailable")
            .copied()
            .unwrap_or(free + buffers + cached);
        let used = total.saturating_sub(free + buffers + cached);
        let percent = |v: u64| {
            if total > 0 {
                100.0 * v as f64 / total as f64
            } else {
                f64::NAN
            }
        };
        let c = &self.0;
        let mut s = Series::new(Vec::new());
        s.put(c, "total", total as f64);
        s.put(c, "free", free as f64);
        s.put(c, "buffered", buffers as f64);
        s.put(c, "cached", cached as f64);
        s.put(c, "available", available as f64);
        s.put(c, "used", used as f64);
        s.put(c, "active", get("Active") as f64);
        s.put(c, "inactive", get("Inactive") as f64);
        s.put(c, "used_percent", percent(used));
        s.put(c, "available_percent", percent(available));
        out.push(s);
    }
}
