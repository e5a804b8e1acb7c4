//! `procstat`: processes chosen by `exe` (a regex on the process name), `pattern` (a regex on
//! the command line) or `pid_file`, as the agent's procstat gives them: one series per
//! matching process (the same dimensions for each: CloudWatch aggregates them), and
//! `pid_count` as `procstat_lookup_pid_count`. Counters are sent as they are (since the
//! process started); `cpu_usage` is percent of one CPU since the previous sample.

use std::collections::HashMap;
use std::time::Instant;

use super::{field, Collector, Host, Kind, ProcessSelector, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "procstat",
    prefix: "procstat",
    fields: &[
        field("pid_count", Unit::Count, Kind::Gauge),
        field("cpu_usage", Unit::Percent, Kind::OverInterval),
        field("cpu_time", Unit::None, Kind::Total),
        field("cpu_time_user", Unit::None, Kind::Total),
        field("cpu_time_system", Unit::None, Kind::Total),
        field("memory_rss", Unit::Bytes, Kind::Gauge),
        field("memory_vms", Unit::Bytes, Kind::Gauge),
        field("memory_data", Unit::Bytes, Kind::Gauge),
        field("memory_stack", Unit::Bytes, Kind::Gauge),
        field("memory_locked", Unit::Bytes, Kind::Gauge),
        field("memory_swap", Unit::Bytes, Kind::Gauge),
        field("num_threads", Unit::None, Kind::Gauge),
        field("num_fds", Unit::None, Kind::Gauge),
        field("pid", Unit::None, Kind::Gauge),
        field("read_bytes", Unit::Bytes, Kind::Total),
        field("write_bytes", Unit::Bytes, Kind::Total),
        field("read_count", Unit::None, Kind::Total),
        field("write_count", Unit::None, Kind::Total),
        field("voluntary_context_switches", Unit::None, Kind::Total),
        field("involuntary_context_switches", Unit::None, Kind::Total),
    ],
    not_collected: &[
        "cpu_time_guest",
        "cpu_time_guest_nice",
        "cpu_time_idle",
        "cpu_time_iowait",
        "cpu_time_irq",
        "cpu_time_nice",
        "cpu_time_soft_irq",
        "cpu_time_steal",
        "cpu_time_stolen",
        "nice_priority",
        "realtime_priority",
        "signals_pending",
        "rlimit_cpu_time_hard",
        "rlimit_cpu_time_soft",
        "rlimit_file_locks_hard",
        "rlimit_file_locks_soft",
        "rlimit_memory_data_hard",
        "rlimit_memory_data_soft",
        "rlimit_memory_locked_hard",
        "rlimit_memory_locked_soft",
        "rlimit_memory_rss_hard",
        "rlimit_memory_rss_soft",
        "rlimit_memory_stack_hard",
        "rlimit_memory_stack_soft",
        "rlimit_memory_vms_hard",
        "rlimit_memory_vms_soft",
        "rlimit_nice_priority_hard",
        "rlimit_nice_priority_soft",
        "rlimit_num_fds_hard",
        "rlimit_num_fds_soft",
        "rlimit_realtime_priority_hard",
        "rlimit_realtime_priority_soft",
        "rlimit_signals_pending_hard",
        "rlimit_signals_pending_soft",
    ],
    options: &["exe", "pattern", "pid_file"],
    dimensions: "process_name, and exe, pattern or pidfile (the config's text); pid_count: pid_finder and exe, pattern or pid_file",
    supported: cfg!(target_os = "linux"),
    macos: &[],
    new: |c| {
        Box::new(Procstat {
            config: c.clone(),
            previous: HashMap::new(),
        })
    },
};

/// The published name of `pid_count`, from the agent's separate `procstat_lookup` measurement.
pub const PID_COUNT_NAME: &str = "procstat_lookup_pid_count";

pub struct Procstat {
    config: SectionConfig,
    /// CPU ticks of each process at the previous sample, and when.
    previous: HashMap<u32, (u64, Instant)>,
}

fn read(host: &Host, pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(host.proc.join(pid.to_string()).join(file)).ok()
}

/// The processes `selector` names now.
fn find(host: &Host, selector: &ProcessSelector) -> Vec<u32> {
    if let ProcessSelector::PidFile(path) = selector {
        let pid = std::fs::read_to_string(host.path(&path.to_string_lossy()))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        return pid
            .filter(|p| host.proc.join(p.to_string()).exists())
            .into_iter()
            .collect();
    }
    let Ok(dir) = std::fs::read_dir(&host.proc) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| match selector {
            ProcessSelector::Exe(re) => {
                read(host, pid, "comm").is_some_and(|n| re.is_match(n.trim_end_matches('\n')))
            }
            ProcessSelector::Pattern(re) => read(host, pid, "cmdline").is_some_and(|c| {
                let line = c.trim_end_matches('\0').replace('\0', " ");
                !line.is_empty() && re.is_match(&line)
            }),
            ProcessSelector::PidFile(_) => false,
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// A `Name: value kB` field of /proc/[pid]/status, in bytes (or as a number without a unit).
fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))?;
    let mut f = line[name.len() + 1..].split_whitespace();
    let n: u64 = f.next()?.parse().ok()?;
    Some(if f.next() == Some("kB") { n * 1024 } else { n })
}

impl Collector for Procstat {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let c = &self.config;
        let Some((selector, text)) = &c.process else {
            return;
        };
        let (tag, lookup_tag) = match selector {
            ProcessSelector::PidFile(_) => ("pidfile", "pid_file"),
            ProcessSelector::Exe(_) => ("exe", "exe"),
            ProcessSelector::Pattern(_) => ("pattern", "pattern"),
        };
        let pids = find(host, selector);
        if c.wants("pid_count") {
            let mut s = Series::new(Vec::new())
                .dim("pid_finder", "native")
                .dim(lookup_tag, text.clone());
            s.values.push(("pid_count", pids.len() as f64));
            out.push(s);
        }
        let hz = host.ticks_per_second();
        // SAFETY: sysconf only reads a value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as f64;
        let mut seen = HashMap::new();
        for pid in pids {
            // A process that ended meanwhile is left out.
            let Some(stat) = read(host, pid, "stat") else {
                continue;
            };
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let name = stat
                .find('(')
                .map(|open| stat[open + 1..close].to_owned())
                .unwrap_or_default();
            let (utime, stime) = (num(11).unwrap_or(0), num(12).unwrap_or(0));
            let now = Instant::now();
            let usage = match self.previous.get(&pid) {
                Some((ticks, at)) => {
                    let secs = now.duration_since(*at).as_secs_f64();
                    let used = (utime + stime).saturating_sub(*ticks) as f64 / hz;
                    if secs > 0.0 {
                        100.0 * used / secs
                    } else {
                        f64::NAN
                    }
                }
                None => f64::NAN,
            };
            seen.insert(pid, (utime + stime, now));
            let mut s = Series::new(Vec::new())
                .dim("process_name", name)
                .dim(tag, text.clone());
            s.put(c, "pid", f64::from(pid));
            s.put(c, "cpu_usage", usage);
            s.put(c, "cpu_time", (utime + stime) as f64 / hz);
            s.put(c, "cpu_time_user", utime as f64 / hz);
            s.put(c, "cpu_time_system", stime as f64 / hz);
            s.put(c, "num_threads", num(17).map_or(f64::NAN, |n| n as f64));
            if let Some(statm) = read(host, pid, "statm") {
                let m: Vec<f64> = statm
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                if m.len() >= 6 {
                    s.put(c, "memory_vms", m[0] * page);
                    s.put(c, "memory_rss", m[1] * page);
                    s.put(c, "memory_data", m[5] * page);
                }
            }
            if let Some(status) = read(host, pid, "status") {
                let get = |n: &str| status_field(&status, n).map_or(f64::NAN, |v| v as f64);
                s.put(c, "memory_stack", get("VmStk"));
                s.put(c, "memory_locked", get("VmLck"));
                s.put(c, "memory_swap", get("VmSwap"));
                s.put(
                    c,
                    "voluntary_context_switches",
                    get("voluntary_ctxt_switches"),
                );
                s.put(
                    c,
                    "involuntary_context_switches",
                    get("nonvoluntary_ctxt_switches"),
                );
            }
            if c.wants("num_fds") {
                match std::fs::read_dir(host.proc.join(pid.to_string()).join("fd")) {
                    Ok(d) => s.put(c, "num_fds", d.count() as f64),
                    Err(e) => host.warn_once("procstat", "fd", &format!("cannot count the open files of process {pid}: {e} (run as the process's user or root)")),
                }
            }
            if ["read_bytes", "write_bytes", "read_count", "write_count"]
                .iter()
                .any(|f| c.wants(f))
            {
                match read(host, pid, "io") {
                    Some(io) => {
                        let get = |n: &str| status_field(&io, n).map_or(f64::NAN, |v| v as f64);
                        s.put(c, "read_bytes", get("read_bytes"));
                        s.put(c, "write_bytes", get("write_bytes"));
                        s.put(c, "read_count", get("syscr"));
                        s.put(c, "write_count", get("syscw"));
                    }
                    None => host.warn_once("procstat", "io", &format!("cannot read the I/O counters of process {pid} (run as the process's user or root)")),
                }
            }
            out.push(s);
        }
        self.previous = seen;
    }
}
