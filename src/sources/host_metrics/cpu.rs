//! `cpu`: time spent in each state, from /proc/stat, as the agent (Telegraf's cpu input) gives
//! it: `usage_*` as percent of the time since the previous sample, `time_*` as seconds since
//! boot; per CPU (`resources: ["*"]`) and for all together (`totalcpu`, the default). Without
//! /proc (macOS), sysinfo gives the busy share only: `usage_active` and `usage_idle`.

use std::collections::HashMap;

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "cpu",
    prefix: "cpu",
    fields: &[
        field("usage_active", Unit::Percent, Kind::OverInterval),
        field("usage_idle", Unit::Percent, Kind::OverInterval),
        field("usage_nice", Unit::Percent, Kind::OverInterval),
        field("usage_guest", Unit::Percent, Kind::OverInterval),
        field("usage_guest_nice", Unit::Percent, Kind::OverInterval),
        field("usage_iowait", Unit::Percent, Kind::OverInterval),
        field("usage_irq", Unit::Percent, Kind::OverInterval),
        field("usage_softirq", Unit::Percent, Kind::OverInterval),
        field("usage_steal", Unit::Percent, Kind::OverInterval),
        field("usage_system", Unit::Percent, Kind::OverInterval),
        field("usage_user", Unit::Percent, Kind::OverInterval),
        field("time_active", Unit::None, Kind::Total),
        field("time_guest", Unit::None, Kind::Total),
        field("time_guest_nice", Unit::None, Kind::Total),
        field("time_idle", Unit::None, Kind::Total),
        field("time_iowait", Unit::None, Kind::Total),
        field("time_irq", Unit::None, Kind::Total),
        field("time_nice", Unit::None, Kind::Total),
        field("time_softirq", Unit::None, Kind::Total),
        field("time_steal", Unit::None, Kind::Total),
        field("time_system", Unit::None, Kind::Total),
        field("time_user", Unit::None, Kind::Total),
    ],
    not_collected: &[],
    options: &["resources", "totalcpu"],
    dimensions: "cpu (cpu-total, cpu0, cpu1, ...)",
    supported: true,
    macos: &["usage_active", "usage_idle"],
    new: |c| {
        Box::new(Cpu {
            config: c.clone(),
            previous: HashMap::new(),
            system: None,
        })
    },
};

/// Ticks in each state, in /proc/stat's order.
pub type Ticks = [u64; 10];

pub struct Cpu {
    config: SectionConfig,
    previous: HashMap<String, Ticks>,
    /// Without /proc: sysinfo's view, kept between readings.
    system: Option<sysinfo::System>,
}

impl Cpu {
    /// Through sysinfo: each CPU's busy share since the previous reading.
    fn collect_portable(&mut self, host: &Host, out: &mut Vec<Series>) {
        let first = self.system.is_none();
        let system = match &mut self.system {
            Some(s) => s,
            None => match sysinfo::System::new() {
                Ok(s) => self.system.insert(s),
                Err(e) => {
                    host.warn_once("cpu", "sysinfo", &e.to_string());
                    return;
                }
            },
        };
        system.refresh_cpu_usage();
        let c = &self.config;
        let percpu = c
            .resources
            .as_ref()
            .is_some_and(|r| r.iter().any(|r| r == "*"));
        let mut shares = Vec::new();
        if c.totalcpu {
            shares.push(("cpu-total".to_owned(), system.global_cpu_usage()));
        }
        if percpu {
            for (i, cpu) in system.cpus().iter().enumerate() {
                shares.push((format!("cpu{i}"), cpu.usage()));
            }
        }
        for (name, busy) in shares {
            let busy = if first {
                f64::NAN
            } else {
                f64::from(busy).clamp(0.0, 100.0)
            };
            let mut s = Series::new(Vec::new()).dim("cpu", name);
            s.put(c, "usage_active", busy);
            s.put(c, "usage_idle", 100.0 - busy);
            out.push(s);
        }
    }
}

/// The `cpu` lines of /proc/stat: ("cpu-total" or "cpuN", ticks).
pub fn parse(text: &str) -> Vec<(String, Ticks)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next().filter(|n| n.starts_with("cpu")) else {
            continue;
        };
        let mut ticks = [0u64; 10];
        for t in ticks.iter_mut() {
            // Older kernels have fewer columns; the missing ones are zero.
            *t = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        let name = if name == "cpu" { "cpu-total" } else { name };
        out.push((name.to_owned(), ticks));
    }
    out
}

/// All the time the CPU(s) spent (guest time is already inside user and nice).
fn total(t: &Ticks) -> u64 {
    t[..8].iter().sum()
}

impl Collector for Cpu {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        if !host.has_proc() {
            return self.collect_portable(host, out);
        }
        let Some(text) = host.read_proc("cpu", "stat") else {
            return;
        };
        let hz = host.ticks_per_second();
        let percpu = self
            .config
            .resources
            .as_ref()
            .is_some_and(|r| r.iter().any(|r| r == "*"));
        let mut seen = HashMap::new();
        for (name, t) in parse(&text) {
            let wanted = if name == "cpu-total" {
                self.config.totalcpu
            } else {
                percpu
            };
            if !wanted {
                continue;
            }
            let c = &self.config;
            let mut s = Series::new(Vec::new()).dim("cpu", name.clone());
            let before = self.previous.get(&name);
            let d = |i: usize| before.map_or(f64::NAN, |b| t[i].saturating_sub(b[i]) as f64);
            let span = before.map_or(f64::NAN, |b| total(&t).saturating_sub(total(b)) as f64);
            let share = |ticks: f64| {
                if span > 0.0 {
                    (100.0 * ticks / span).clamp(0.0, 100.0)
                } else {
                    f64::NAN
                }
            };
            s.put(c, "usage_user", share(d(0) - d(8)));
            s.put(c, "usage_nice", share(d(1) - d(9)));
            s.put(c, "usage_system", share(d(2)));
            s.put(c, "usage_idle", share(d(3)));
            s.put(c, "usage_iowait", share(d(4)));
            s.put(c, "usage_irq", share(d(5)));
            s.put(c, "usage_softirq", share(d(6)));
            s.put(c, "usage_steal", share(d(7)));
            s.put(c, "usage_guest", share(d(8)));
            s.put(c, "usage_guest_nice", share(d(9)));
            s.put(c, "usage_active", share(span - d(3)));
            let secs = |ticks: u64| ticks as f64 / hz;
            s.put(c, "time_user", secs(t[0].saturating_sub(t[8])));
            s.put(c, "time_nice", secs(t[1].saturating_sub(t[9])));
            s.put(c, "time_system", secs(t[2]));
            s.put(c, "time_idle", secs(t[3]));
            s.put(c, "time_iowait", secs(t[4]));
            s.put(c, "time_irq", secs(t[5]));
            s.put(c, "time_softirq", secs(t[6]));
            s.put(c, "time_steal", secs(t[7]));
            s.put(c, "time_guest", secs(t[8]));
            s.put(c, "time_guest_nice", secs(t[9]));
            s.put(c, "time_active", secs(total(&t).saturating_sub(t[3])));
            out.push(s);
            seen.insert(name, t);
        }
        self.previous = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn shares_of_the_time_between_two_readings() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::at(dir.path());
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        let stat = |user: u64, idle: u64| {
            format!("cpu  {user} 0 100 {idle} 0 0 0 0 0 0\ncpu0 {user} 0 100 {idle} 0 0 0 0 0 0\nintr 1 2 3\n")
        };
        std::fs::write(dir.path().join("proc/stat"), stat(100, 800)).unwrap();
        let mut config = SectionConfig::all("cpu", Duration::from_secs(60));
        config.resources = Some(vec!["*".into()]);
        let mut cpu = (SECTION.new)(&config);
        let mut out = Vec::new();
        cpu.collect(&host, &mut out);
        assert_eq!(out.len(), 2, "cpu-total and cpu0");
        let get = |s: &Series, f: &str| s.values.iter().find(|v| v.0 == f).unwrap().1;
        assert!(
            get(&out[0], "usage_idle").is_nan(),
            "no share without an earlier reading"
        );
        assert_eq!(get(&out[0], "time_user"), 1.0);
        std::fs::write(dir.path().join("proc/stat"), stat(130, 870)).unwrap();
        out.clear();
        cpu.collect(&host, &mut out);
        assert_eq!(
            out[0].dimensions,
            [("cpu".to_owned(), "cpu-total".to_owned())]
        );
        assert_eq!(out[1].dimensions, [("cpu".to_owned(), "cpu0".to_owned())]);
        assert_eq!(get(&out[0], "usage_user"), 30.0);
        assert_eq!(get(&out[0], "usage_idle"), 70.0);
        assert_eq!(get(&out[0], "usage_active"), 30.0);
        assert_eq!(get(&out[0], "usage_system"), 0.0);
        assert_eq!(get(&out[0], "time_idle"), 8.7);
    }

    #[test]
    fn without_proc_the_busy_share_from_sysinfo() {
        let mut config = SectionConfig::all("cpu", Duration::from_secs(60));
        config.resources = Some(vec!["*".into()]);
        let mut cpu = Cpu {
            config,
            previous: HashMap::new(),
            system: None,
        };
        let host = Host::at(std::path::Path::new("/"));
        let mut out = Vec::new();
        cpu.collect_portable(&host, &mut out);
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL * 2);
        out.clear();
        cpu.collect_portable(&host, &mut out);
        let n = std::thread::available_parallelism().unwrap().get();
        assert_eq!(out.len(), n + 1, "cpu-total and each CPU: {out:?}");
        for s in &out {
            let busy = s.values.iter().find(|v| v.0 == "usage_active").unwrap().1;
            let idle = s.values.iter().find(|v| v.0 == "usage_idle").unwrap().1;
            assert!(
                (0.0..=100.0).contains(&busy) && (busy + idle - 100.0).abs() < 1e-9,
                "{s:?}"
            );
        }
    }
}
