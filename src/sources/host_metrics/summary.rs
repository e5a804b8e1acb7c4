//! `summary` (not in the agent): the 13 metrics the publisher sends when a config has no
//! `metrics_collected` (CPUUtilization, MemoryUtilization, ... with the dimensions InstanceId and
//! Hostname), so a config that adds the agent's sections keeps them, and the dashboards and
//! alarms built on them.

use super::{field, Collector, Host, HostMetrics, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "summary",
    prefix: "",
    fields: &[
        field("CPUUtilization", Unit::Percent, Kind::OverInterval),
        field("CPUCount", Unit::Count, Kind::Gauge),
        field("MemoryUtilization", Unit::Percent, Kind::Gauge),
        field("MemoryUsed", Unit::Bytes, Kind::Gauge),
        field("MemoryAvailable", Unit::Bytes, Kind::Gauge),
        field("DiskReadBytes", Unit::BytesPerSecond, Kind::OverInterval),
        field("DiskWriteBytes", Unit::BytesPerSecond, Kind::OverInterval),
        field("DiskReadOps", Unit::CountPerSecond, Kind::OverInterval),
        field("DiskWriteOps", Unit::CountPerSecond, Kind::OverInterval),
        field("NetworkIn", Unit::BytesPerSecond, Kind::OverInterval),
        field("NetworkOut", Unit::BytesPerSecond, Kind::OverInterval),
        field("NetworkPacketsIn", Unit::CountPerSecond, Kind::OverInterval),
        field(
            "NetworkPacketsOut",
            Unit::CountPerSecond,
            Kind::OverInterval,
        ),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "InstanceId and Hostname only (as without metrics_collected)",
    supported: true,
    macos: &[
        "CPUUtilization",
        "CPUCount",
        "MemoryUtilization",
        "MemoryUsed",
        "MemoryAvailable",
        "DiskReadBytes",
        "DiskWriteBytes",
        "DiskReadOps",
        "DiskWriteOps",
        "NetworkIn",
        "NetworkOut",
        "NetworkPacketsIn",
        "NetworkPacketsOut",
    ],
    new: |c| {
        Box::new(Summary {
            config: c.clone(),
            metrics: None,
        })
    },
};

pub struct Summary {
    config: SectionConfig,
    metrics: Option<HostMetrics>,
}

impl Collector for Summary {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let Some(metrics) = &mut self.metrics else {
            // The first reading is the baseline the rates are measured from.
            match HostMetrics::new() {
                Ok(m) => self.metrics = Some(m),
                Err(e) => host.warn_once("summary", "setup", &e.to_string()),
            }
            return;
        };
        let sample = metrics.sample();
        let mut s = Series::new(Vec::new());
        for m in sample.values {
            if let Some(f) = SECTION.fields.iter().find(|f| f.name == m.name) {
                s.put(&self.config, f.name, m.value);
            }
        }
        out.push(s);
    }
}
