//! The 13 metrics the publisher has always sent when the config has no `metrics_collected`:
//! CPU, memory, disk I/O and network. Counters become per-second rates over the real time
//! between two samples.
//!
//! Reading the counters is blocking work (it reads /proc); [`HostMetrics::sample`] is called
//! from a blocking thread.

use super::diskstats;

use std::collections::HashMap;
use std::time::Instant;

use sysinfo::{Networks, System};

use crate::metric::{now_ms, Measurement, Sample, Unit};

pub const METRIC_NAMES: [&str; 13] = [
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
];

#[derive(Debug, thiserror::Error)]
#[error("cannot read the host's counters: {0}")]
pub struct HostMetricsError(String);

/// Network counters of one interface.
#[derive(Debug, Clone, Copy, Default)]
struct NetCounters {
    bytes_in: u64,
    bytes_out: u64,
    packets_in: u64,
    packets_out: u64,
}

struct Counters {
    at: Instant,
    disks: Option<HashMap<String, diskstats::DiskCounters>>,
    nets: HashMap<String, NetCounters>,
}

/// The host-metrics source. Keeps the previous counters to turn them into rates.
pub struct HostMetrics {
    system: System,
    networks: Networks,
    previous: Counters,
}

impl HostMetrics {
    /// Takes the baseline the first sample's rates are measured from.
    pub fn new() -> Result<Self, HostMetricsError> {
        let mut system = System::new().map_err(|e| HostMetricsError(e.to_string()))?;
        let mut networks =
            Networks::new_with_refreshed_list().map_err(|e| HostMetricsError(e.to_string()))?;
        system.refresh_cpu_usage();
        let previous = read_counters(&mut networks);
        Ok(Self {
            system,
            networks,
            previous,
        })
    }

    /// Reads every metric. CPU utilisation and the rates cover the time since the previous
    /// call (or since [`HostMetrics::new`]).
    pub fn sample(&mut self) -> Sample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let current = read_counters(&mut self.networks);
        let timestamp_ms = now_ms();
        let secs = current.at.duration_since(self.previous.at).as_secs_f64();

        let mut values = Vec::with_capacity(METRIC_NAMES.len());
        let mut push = |name: &str, unit: Unit, value: f64| {
            if value.is_finite() {
                values.push(Measurement::single(name, unit, value));
            }
        };
        push(
            "CPUUtilization",
            Unit::Percent,
            f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
        );
        push("CPUCount", Unit::Count, self.system.cpus().len() as f64);
        let total = self.system.total_memory() as f64;
        let available = self.system.available_memory() as f64;
        let used = (total - available).max(0.0);
        if total > 0.0 {
            push("MemoryUtilization", Unit::Percent, used / total * 100.0);
        }
        push("MemoryUsed", Unit::Bytes, used);
        push("MemoryAvailable", Unit::Bytes, available);

        if secs > 0.0 {
            if let (Some(now), Some(before)) = (&current.disks, &self.previous.disks) {
                let d = deltas(now, before, |c| {
                    [c.read_bytes, c.write_bytes, c.read_ops, c.write_ops]
                });
                push("DiskReadBytes", Unit::BytesPerSecond, d[0] as f64 / secs);
                push("DiskWriteBytes", Unit::BytesPerSecond, d[1] as f64 / secs);
                push("DiskReadOps", Unit::CountPerSecond, d[2] as f64 / secs);
                push("DiskWriteOps", Unit::CountPerSecond, d[3] as f64 / secs);
            }
            let n = deltas(&current.nets, &self.previous.nets, |c| {
                [c.bytes_in, c.bytes_out, c.packets_in, c.packets_out]
            });
            push("NetworkIn", Unit::BytesPerSecond, n[0] as f64 / secs);
            push("NetworkOut", Unit::BytesPerSecond, n[1] as f64 / secs);
            push("NetworkPacketsIn", Unit::CountPerSecond, n[2] as f64 / secs);
            push(
                "NetworkPacketsOut",
                Unit::CountPerSecond,
                n[3] as f64 / secs,
            );
        }
        self.previous = current;
        Sample {
            timestamp_ms,
            values,
        }
    }
}

fn read_counters(networks: &mut Networks) -> Counters {
    networks.refresh(true);
    let nets = networks
        .iter()
        .map(|(name, d)| (name.to_string_lossy().into_owned(), d))
        .filter(|(name, data)| !is_loopback(name, data))
        .map(|(name, d)| {
            let c = NetCounters {
                bytes_in: d.total_received(),
                bytes_out: d.total_transmitted(),
                packets_in: d.total_packets_received(),
                packets_out: d.total_packets_transmitted(),
            };
            (name, c)
        })
        .collect();
    Counters {
        at: Instant::now(),
        disks: diskstats::read(),
        nets,
    }
}

/// Loopback traffic never leaves the machine; it is not network I/O.
fn is_loopback(name: &str, data: &sysinfo::NetworkData) -> bool {
    let named =
        name == "lo" || (name.starts_with("lo") && name[2..].bytes().all(|b| b.is_ascii_digit()));
    let addresses = data.ip_networks();
    named || (!addresses.is_empty() && addresses.iter().all(|n| n.addr.is_loopback()))
}

/// Sums the growth of each counter over the devices present both times. A counter that went
/// backwards (device re-created, counter reset) contributes nothing rather than a bogus spike.
fn deltas<C>(
    now: &HashMap<String, C>,
    before: &HashMap<String, C>,
    fields: impl Fn(&C) -> [u64; 4],
) -> [u64; 4] {
    let mut sum = [0u64; 4];
    for (name, c) in now {
        if let Some(b) = before.get(name) {
            let (a, b) = (fields(c), fields(b));
            for i in 0..4 {
                sum[i] += a[i].saturating_sub(b[i]);
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_skip_new_devices_and_resets() {
        let before = HashMap::from([
            ("eth0".to_string(), [100, 10, 5, 1]),
            ("wlan0".to_string(), [50, 50, 50, 50]),
        ]);
        let now = HashMap::from([
            ("eth0".to_string(), [300, 15, 9, 1]),
            ("wlan0".to_string(), [10, 60, 50, 50]),
            ("usb0".to_string(), [999, 999, 999, 999]),
        ]);
        assert_eq!(deltas(&now, &before, |c| *c), [200, 15, 4, 0]);
    }

    #[test]
    fn samples_this_host_with_all_thirteen_metrics_on_linux() {
        let mut h = HostMetrics::new().unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL * 2);
        let s = h.sample();
        let names: Vec<&str> = s.values.iter().map(|m| m.name.as_str()).collect();
        if cfg!(target_os = "linux") {
            assert_eq!(names, METRIC_NAMES.to_vec());
        }
        let get = |n: &str| s.values.iter().find(|m| m.name == n).unwrap();
        assert!(get("CPUCount").value >= 1.0);
        assert!((0.0..=100.0).contains(&get("CPUUtilization").value));
        assert!(get("MemoryAvailable").value > 0.0);
        assert_eq!(get("NetworkIn").unit, Unit::BytesPerSecond);
        assert!(s
            .values
            .iter()
            .all(|m| m.value >= 0.0 && m.value.is_finite()));
        assert!((now_ms() - s.timestamp_ms).abs() < 5_000);
    }
}
