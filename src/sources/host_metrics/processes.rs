//! `processes`: processes by state and threads, from /proc/[pid]/stat, as Telegraf's processes
//! input counts them on Linux (`wait` exists only on FreeBSD and is never sent here).

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "processes",
    prefix: "processes",
    fields: &[
        field("blocked", Unit::Count, Kind::Gauge),
        field("dead", Unit::Count, Kind::Gauge),
        field("idle", Unit::Count, Kind::Gauge),
        field("paging", Unit::Count, Kind::Gauge),
        field("running", Unit::Count, Kind::Gauge),
        field("sleeping", Unit::Count, Kind::Gauge),
        field("stopped", Unit::Count, Kind::Gauge),
        field("total", Unit::Count, Kind::Gauge),
        field("total_threads", Unit::Count, Kind::Gauge),
        field("zombies", Unit::Count, Kind::Gauge),
    ],
    not_collected: &["wait"],
    options: &[],
    dimensions: "",
    supported: cfg!(target_os = "linux"),
    macos: &[],
    new: |c| Box::new(Processes(c.clone())),
};

/// The state letter and thread count of a /proc/[pid]/stat line.
pub fn state_and_threads(stat: &str) -> Option<(char, u64)> {
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let threads = f.get(17)?.parse().ok()?;
    Some((state, threads))
}

pub struct Processes(SectionConfig);

impl Collector for Processes {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let dir = match std::fs::read_dir(&host.proc) {
            Ok(d) => d,
            Err(e) => {
                host.warn_once(
                    "processes",
                    "proc",
                    &format!("cannot list {}: {e}", host.proc.display()),
                );
                return;
            }
        };
        let (mut counts, mut total, mut threads) = ([0u64; 8], 0u64, 0u64);
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // A process that ended meanwhile is simply not counted.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((state, n)) = state_and_threads(&stat) else {
                continue;
            };
            total += 1;
            threads += n;
            let i = match state {
                'D' => 0,
                'X' | 'x' => 1,
                'I' => 2,
                'W' => 3,
                'R' => 4,
                'S' => 5,
                'T' | 't' => 6,
                'Z' => 7,
                _ => continue,
            };
            counts[i] += 1;
        }
        let c = &self.0;
        let mut s = Series::new(Vec::new());
        for (i, f) in [
            "blocked", "dead", "idle", "paging", "running", "sleeping", "stopped", "zombies",
        ]
        .iter()
        .enumerate()
        {
            s.put(c, f, counts[i] as f64);
        }
        s.put(c, "total", total as f64);
        s.put(c, "total_threads", threads as f64);
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_names() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 100 1000 50 18446744073709551615";
        assert_eq!(state_and_threads(line), Some(('S', 7)));
        assert_eq!(state_and_threads("garbage"), None);
    }
}
