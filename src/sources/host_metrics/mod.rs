//! The host's own numbers. Without `metrics_collected` in the config, the 13 metrics the
//! publisher has always sent ([`original`]); with it, the CloudWatch Agent's sections, one
//! collector per file, each listed once in [`SECTIONS`] with the measurements it knows.
//!
//! Collectors read /proc and /sys under [`Host`]'s roots (the machine's own unless
//! `CLOUDWATCH_PUBLISHER_HOST_ROOT` names another tree, as tests and containers do). Reading is
//! blocking work, done on a blocking thread.

pub mod cpu;
pub mod disk;
pub mod diskio;
mod diskstats;
// Read on macOS; elsewhere only its tests use it.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod iokit;
pub mod mem;
pub mod net;
pub mod netstat;
mod original;
pub mod processes;
pub mod procstat;
pub mod summary;
pub mod swap;
pub mod system;
pub mod temperature;
pub mod throttling;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use regex::Regex;

use crate::metric::Unit;

pub use original::{HostMetrics, HostMetricsError, METRIC_NAMES};

/// Names a directory holding `proc/` and `sys/` (and the mount points) to read instead of the
/// machine's own `/`.
pub const ROOT_ENV: &str = "CLOUDWATCH_PUBLISHER_HOST_ROOT";

/// How a measurement's value behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A reading at the time of the sample.
    Gauge,
    /// The growth of a counter since the previous sample (the agent's diskio and net).
    Delta,
    /// A share (percent) over the time since the previous sample.
    OverInterval,
    /// A counter since boot (or since the process started), sent as it is.
    Total,
}

/// A measurement a section knows.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub unit: Unit,
    pub kind: Kind,
}

pub const fn field(name: &'static str, unit: Unit, kind: Kind) -> Field {
    Field { name, unit, kind }
}

/// A `metrics_collected` section: its key, what it measures, and how to start it.
pub struct Section {
    pub key: &'static str,
    /// Published names are `<prefix>_<field>`.
    pub prefix: &'static str,
    pub fields: &'static [Field],
    /// The agent accepts these, but nothing here measures them (so asking gives a warning).
    pub not_collected: &'static [&'static str],
    /// Keys of the section besides `measurement`, `metrics_collection_interval`,
    /// `append_dimensions` and `drop_original_metrics`.
    pub options: &'static [&'static str],
    /// Dimensions each series carries besides `host` (for the README and `validate`).
    pub dimensions: &'static str,
    /// Whether it measures anything on this operating system.
    pub supported: bool,
    /// The fields measured on macOS (through sysinfo), for the README's table.
    pub macos: &'static [&'static str],
    pub new: fn(&SectionConfig) -> Box<dyn Collector>,
}

/// Every section, in the order the README's table lists them.
pub const SECTIONS: &[&Section] = &[
    &summary::SECTION,
    &cpu::SECTION,
    &mem::SECTION,
    &swap::SECTION,
    &disk::SECTION,
    &diskio::SECTION,
    &net::SECTION,
    &netstat::SECTION,
    &processes::SECTION,
    &procstat::SECTION,
    &system::SECTION,
    &temperature::SECTION,
    &throttling::SECTION,
];

pub fn section(key: &str) -> Option<&'static Section> {
    SECTIONS.iter().copied().find(|s| s.key == key)
}

impl Section {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The name the agent publishes a field under: `<prefix>_<field>` (the summary's have no
    /// prefix; procstat's `pid_count` is `procstat_lookup_pid_count`).
    pub fn published_name(&self, field: &str) -> String {
        if self.key == "procstat" && field == "pid_count" {
            procstat::PID_COUNT_NAME.to_owned()
        } else if self.prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{}_{field}", self.prefix)
        }
    }
}

/// A measurement chosen in the config: the field, and the name and unit it is published
/// under.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub field: &'static str,
    pub name: String,
    pub unit: Unit,
}

/// Which processes a `procstat` entry watches.
#[derive(Debug, Clone)]
pub enum ProcessSelector {
    /// The process whose pid this file holds.
    PidFile(PathBuf),
    /// Processes whose name matches.
    Exe(Regex),
    /// Processes whose command line matches.
    Pattern(Regex),
}

/// One checked `metrics_collected` section.
#[derive(Debug, Clone)]
pub struct SectionConfig {
    pub section: &'static str,
    /// Where it is in the config, for messages: `metrics.metrics_collected.procstat[1]`.
    pub path: String,
    pub measurements: Vec<Selected>,
    pub interval: Duration,
    pub append_dimensions: Vec<(String, String)>,
    /// Published names sent only in the `aggregation_dimensions` roll-ups.
    pub drop_original_metrics: Vec<String>,
    /// Mount points, devices or interfaces; `None` for all (or the section's default).
    pub resources: Option<Vec<String>>,
    /// cpu: one series for all CPUs together.
    pub totalcpu: bool,
    /// disk: file system types left out.
    pub ignore_file_system_types: Vec<String>,
    /// disk: no `device` dimension.
    pub drop_device: bool,
    /// procstat: which processes, and the config's text for it (a dimension's value).
    pub process: Option<(ProcessSelector, String)>,
}

impl SectionConfig {
    /// A section with every field it knows and nothing else set (tests, examples).
    pub fn all(key: &str, interval: Duration) -> SectionConfig {
        let s = section(key).expect("a known section");
        SectionConfig {
            section: s.key,
            path: format!("metrics.metrics_collected.{key}"),
            measurements: s
                .fields
                .iter()
                .map(|f| Selected {
                    field: f.name,
                    name: s.published_name(f.name),
                    unit: f.unit,
                })
                .collect(),
            interval,
            append_dimensions: Vec::new(),
            drop_original_metrics: Vec::new(),
            resources: None,
            totalcpu: true,
            ignore_file_system_types: Vec::new(),
            drop_device: false,
            process: None,
        }
    }

    pub fn wants(&self, field: &str) -> bool {
        self.measurements.iter().any(|m| m.field == field)
    }
}

/// One series of a reading: its dimensions (besides `host` and the configured ones) and a
/// value per field. A value that needs an earlier reading (a rate, a delta) is NaN in the
/// first one: not sent, but counted by `validate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub dimensions: Vec<(String, String)>,
    pub values: Vec<(&'static str, f64)>,
}

impl Series {
    pub fn new(dimensions: Vec<(String, String)>) -> Series {
        Series {
            dimensions,
            values: Vec::new(),
        }
    }

    pub fn dim(mut self, name: &str, value: impl Into<String>) -> Series {
        self.dimensions.push((name.to_owned(), value.into()));
        self
    }

    /// Adds `field` if the section asked for it.
    pub fn put(&mut self, config: &SectionConfig, field: &'static str, value: f64) {
        if config.wants(field) {
            self.values.push((field, value));
        }
    }
}

/// Reads one section's numbers.
pub trait Collector: Send {
    /// Takes a reading and appends its series to `out`.
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>);
}

/// Where the machine's /proc, /sys and mount points are, and which problems were reported.
#[derive(Debug)]
pub struct Host {
    pub root: PathBuf,
    pub proc: PathBuf,
    pub sys: PathBuf,
    warned: Mutex<HashSet<String>>,
}

impl Host {
    pub fn at(root: &Path) -> Host {
        Host {
            root: root.to_owned(),
            proc: root.join("proc"),
            sys: root.join("sys"),
            warned: Mutex::default(),
        }
    }

    /// The machine's own, or the tree `CLOUDWATCH_PUBLISHER_HOST_ROOT` names.
    pub fn from_env() -> Host {
        let root = std::env::var_os(ROOT_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/"), PathBuf::from);
        Host::at(&root)
    }

    /// Whether /proc and /sys are there to read (Linux); elsewhere the sections that can read
    /// through sysinfo do.
    pub fn has_proc(&self) -> bool {
        cfg!(target_os = "linux")
    }

    /// A path on the host: `/proc/stat` → `<root>/proc/stat`.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// Reads a file under /proc (`rel` like "stat" or "net/dev"); a failure is warned about
    /// once, under `section`, and gives None.
    pub fn read_proc(&self, section: &str, rel: &str) -> Option<String> {
        let path = self.proc.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                self.warn_once(
                    section,
                    &format!("{}", path.display()),
                    &format!("cannot read {}: {e}", path.display()),
                );
                None
            }
        }
    }

    /// Logs a warning the first time `what` goes wrong for `section`; the rest of the round
    /// is still sent.
    pub fn warn_once(&self, section: &str, what: &str, message: &str) {
        let key = format!("{section}\u{0}{what}");
        let first = self
            .warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        if first {
            tracing::warn!(
                section,
                "Cannot collect every metric: {message}; the others are still sent."
            );
        }
    }

    /// Clock ticks per second of /proc's CPU times.
    pub fn ticks_per_second(&self) -> f64 {
        // SAFETY: sysconf only reads a value.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as f64
        } else {
            100.0
        }
    }
}

/// The growth of a counter, or NaN without an earlier reading or when it went backwards (a
/// reset, a device made anew).
pub fn growth(now: u64, before: Option<u64>) -> f64 {
    match before {
        Some(b) if now >= b => (now - b) as f64,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- The table below is made from src/sources/host_metrics; UPDATE_README=1 cargo test --lib readme rewrites it. -->\n";
    const END: &str = "<!-- end of the metrics table -->\n";

    fn kind(k: Kind) -> &'static str {
        match k {
            Kind::Gauge => "reading",
            Kind::Delta => "growth since the previous sample (use Sum)",
            Kind::OverInterval => "over the time since the previous sample",
            Kind::Total => "total since boot (or since the process started)",
        }
    }

    /// The README's table of every measurement, as the sections define them.
    fn table() -> String {
        let mut out = String::from(
            "| section | metric | unit | value | dimensions besides `host` | Linux | macOS |\n|---|---|---|---|---|---|---|\n",
        );
        for s in SECTIONS {
            for f in s.fields {
                let linux = match s.key {
                    "throttling" => "Raspberry Pi",
                    _ => "yes",
                };
                let macos = if s.macos.contains(&f.name) {
                    "yes"
                } else {
                    "no"
                };
                let dims = if s.dimensions.is_empty() {
                    "—".to_owned()
                } else {
                    s.dimensions.to_owned()
                };
                out.push_str(&format!(
                    "| `{}` | `{}` | {} | {} | {} | {} | {} |\n",
                    s.key,
                    s.published_name(f.name),
                    f.unit.as_str(),
                    kind(f.kind),
                    dims,
                    linux,
                    macos
                ));
            }
        }
        out
    }

    #[test]
    fn readme_table_lists_every_measurement_as_the_sections_define_it() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md lacks the metrics table's markers:\n{BEGIN}{END}");
        };
        let current = &readme[a + BEGIN.len()..b];
        let want = table();
        if current != want {
            if std::env::var_os("UPDATE_README").is_some() {
                let text = format!("{}{BEGIN}{want}{}", &readme[..a], &readme[b..]);
                std::fs::write(path, text).unwrap();
            } else {
                panic!("README.md's metrics table is out of date; run UPDATE_README=1 cargo test --lib readme");
            }
        }
    }
}
