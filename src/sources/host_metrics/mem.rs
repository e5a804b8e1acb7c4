//! `mem`: memory from /proc/meminfo, as the agent (Telegraf's mem input) gives it; without
//! /proc (macOS), total, free, available and used from sysinfo.

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
    supported: true,
    macos: &[
        "available",
        "available_percent",
        "free",
        "total",
        "used",
        "used_percent",
    ],
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

/// Percent of `total`, or NaN without a total.
fn percent(v: u64, total: u64) -> f64 {
    if total > 0 {
        100.0 * v as f64 / total as f64
    } else {
        f64::NAN
    }
}

/// Through sysinfo: total, free, available and used (total − available).
pub fn collect_portable(c: &SectionConfig, host: &Host, out: &mut Vec<Series>) {
    let Some(system) = memory(c, host) else {
        return;
    };
    let (total, available) = (system.total_memory(), system.available_memory());
    let used = total.saturating_sub(available);
    let mut s = Series::new(Vec::new());
    s.put(c, "total", total as f64);
    s.put(c, "free", system.free_memory() as f64);
    s.put(c, "available", available as f64);
    s.put(c, "used", used as f64);
    s.put(c, "used_percent", percent(used, total));
    s.put(c, "available_percent", percent(available, total));
    out.push(s);
}

/// sysinfo's memory and swap figures, read now; a failure is warned about once.
pub fn memory(c: &SectionConfig, host: &Host) -> Option<sysinfo::System> {
    match sysinfo::System::new() {
        Ok(mut s) => {
            s.refresh_memory();
            Some(s)
        }
        Err(e) => {
            host.warn_once(c.section, "sysinfo", &e.to_string());
            None
        }
    }
}

impl Collector for Mem {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        if !host.has_proc() {
            return collect_portable(&self.0, host, out);
        }
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
        let percent = |v: u64| percent(v, total);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sysinfo_and_proc_agree_on_the_total() {
        let host = Host::at(std::path::Path::new("/"));
        let config = SectionConfig::all("mem", Duration::from_secs(60));
        let (mut portable, mut proc) = (Vec::new(), Vec::new());
        collect_portable(&config, &host, &mut portable);
        Mem(config).collect(&host, &mut proc);
        let get = |s: &[Series], f: &str| s[0].values.iter().find(|v| v.0 == f).unwrap().1;
        assert_eq!(get(&portable, "total"), get(&proc, "total"));
    }
}
