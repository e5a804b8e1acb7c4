//! `diskio`: I/O per block device, from /proc/diskstats on Linux (disks and partitions) and from
//! IOKit's block storage drivers on macOS (whole disks; no queue figures, so no `io_time` or
//! `iops_in_progress` there). As the agent sends them, counters are the growth since the
//! previous sample (use the Sum statistic), not rates; `iops_in_progress` is a reading.

use std::collections::HashMap;

use super::{field, growth, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "diskio",
    prefix: "diskio",
    fields: &[
        field("reads", Unit::Count, Kind::Delta),
        field("writes", Unit::Count, Kind::Delta),
        field("read_bytes", Unit::Bytes, Kind::Delta),
        field("write_bytes", Unit::Bytes, Kind::Delta),
        field("read_time", Unit::Milliseconds, Kind::Delta),
        field("write_time", Unit::Milliseconds, Kind::Delta),
        field("io_time", Unit::Milliseconds, Kind::Delta),
        field("iops_in_progress", Unit::Count, Kind::Gauge),
    ],
    not_collected: &[],
    options: &["resources", "report_deltas"],
    dimensions: "name (device: sda, mmcblk0, mmcblk0p2, ...; disk0, ... on macOS)",
    supported: cfg!(any(target_os = "linux", target_os = "macos")),
    macos: &[
        "reads",
        "writes",
        "read_bytes",
        "write_bytes",
        "read_time",
        "write_time",
    ],
    new: |c| {
        Box::new(DiskIo {
            config: c.clone(),
            previous: HashMap::new(),
        })
    },
};

/// Counters of one device: reads, read bytes, read ms, writes, write bytes, write ms, in
/// progress, io ms.
pub type Counters = [u64; 8];

/// /proc/diskstats counts 512-byte sectors whatever the device's own sector size.
const SECTOR_BYTES: u64 = 512;

pub fn parse(text: &str) -> Vec<(String, Counters)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 13 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            Some((
                f[2].to_owned(),
                [
                    n(3)?,
                    n(5)? * SECTOR_BYTES,
                    n(6)?,
                    n(7)?,
                    n(9)? * SECTOR_BYTES,
                    n(10)?,
                    n(11)?,
                    n(12)?,
                ],
            ))
        })
        .collect()
}

/// Whether the system tells requests in progress and time busy (Linux does, macOS does not).
const QUEUE_KNOWN: bool = !cfg!(target_os = "macos");

/// Every device's counters.
#[cfg(not(target_os = "macos"))]
fn devices(host: &Host) -> Option<Vec<(String, Counters)>> {
    Some(parse(&host.read_proc("diskio", "diskstats")?))
}

/// Every whole disk's counters, times in milliseconds as on Linux.
#[cfg(target_os = "macos")]
fn devices(host: &Host) -> Option<Vec<(String, Counters)>> {
    let Some(disks) = super::iokit::read() else {
        host.warn_once("diskio", "iokit", "cannot read IOKit's disk statistics");
        return None;
    };
    let ms = |ns: u64| ns / 1_000_000;
    Some(
        disks
            .into_iter()
            .map(|(name, s)| {
                let c = [
                    s.read_ops,
                    s.read_bytes,
                    ms(s.read_time_ns),
                    s.write_ops,
                    s.write_bytes,
                    ms(s.write_time_ns),
                    0,
                    0,
                ];
                (name, c)
            })
            .collect(),
    )
}

pub struct DiskIo {
    config: SectionConfig,
    previous: HashMap<String, Counters>,
}

impl Collector for DiskIo {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let Some(devices) = devices(host) else {
            return;
        };
        let c = &self.config;
        let all = c
            .resources
            .as_ref()
            .is_none_or(|r| r.iter().any(|d| d == "*"));
        let mut seen = HashMap::new();
        for (name, now) in devices {
            if !all && !c.resources.as_ref().is_some_and(|r| r.contains(&name)) {
                continue;
            }
            let before = self.previous.get(&name).copied();
            let d = |i: usize| growth(now[i], before.map(|b| b[i]));
            let mut s = Series::new(Vec::new()).dim("name", name.clone());
            s.put(c, "reads", d(0));
            s.put(c, "read_bytes", d(1));
            s.put(c, "read_time", d(2));
            s.put(c, "writes", d(3));
            s.put(c, "write_bytes", d(4));
            s.put(c, "write_time", d(5));
            if QUEUE_KNOWN {
                s.put(c, "iops_in_progress", now[6] as f64);
                s.put(c, "io_time", d(7));
            }
            out.push(s);
            seen.insert(name, now);
        }
        self.previous = seen;
    }
}
