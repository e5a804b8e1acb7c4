//! `net`: traffic per network interface from /proc/net/dev. As the agent sends them, the
//! figures are the growth since the previous sample (use the Sum statistic), not rates. By
//! default every interface that is up, except loopback; `resources` names interfaces (`*` and
//! `?` allowed), which are then read whether up or not. Without /proc (macOS), from sysinfo:
//! no drop counts there, and every interface but loopback.

use std::collections::HashMap;

use super::{field, growth, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "net",
    prefix: "net",
    fields: &[
        field("bytes_sent", Unit::Bytes, Kind::Delta),
        field("bytes_recv", Unit::Bytes, Kind::Delta),
        field("packets_sent", Unit::Count, Kind::Delta),
        field("packets_recv", Unit::Count, Kind::Delta),
        field("err_in", Unit::Count, Kind::Delta),
        field("err_out", Unit::Count, Kind::Delta),
        field("drop_in", Unit::Count, Kind::Delta),
        field("drop_out", Unit::Count, Kind::Delta),
    ],
    not_collected: &[],
    options: &["resources", "report_deltas"],
    dimensions: "interface",
    supported: true,
    macos: &[
        "bytes_sent",
        "bytes_recv",
        "packets_sent",
        "packets_recv",
        "err_in",
        "err_out",
    ],
    new: |c| {
        Box::new(Net {
            config: c.clone(),
            previous: HashMap::new(),
            networks: None,
        })
    },
};

/// bytes, packets, errors, drops received; then the same sent.
pub type Counters = [u64; 8];

pub fn parse(text: &str) -> Vec<(String, Counters)> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 12 {
                return None;
            }
            Some((
                name.trim().to_owned(),
                [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]],
            ))
        })
        .collect()
}

/// Whether `name` matches `pattern` (`*` any run of characters, `?` one).
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

pub struct Net {
    config: SectionConfig,
    previous: HashMap<String, Counters>,
    /// Without /proc: sysinfo's interfaces, kept between readings.
    networks: Option<sysinfo::Networks>,
}

impl Net {
    fn wanted(&self, host: &Host, name: &str) -> bool {
        match &self.config.resources {
            Some(r) if !r.iter().any(|p| p == "*") => r.iter().any(|p| glob(p, name)),
            _ => {
                // Up (IFF_UP) and not loopback (IFF_LOOPBACK), as the interface's flags say.
                let flags =
                    std::fs::read_to_string(host.sys.join("class/net").join(name).join("flags"))
                        .ok()
                        .and_then(|f| {
                            u64::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok()
                        });
                match flags {
                    Some(f) => f & 0x1 != 0 && f & 0x8 == 0,
                    None => name != "lo",
                }
            }
        }
    }
}

impl Net {
    /// Every interface's counters through sysinfo, in /proc/net/dev's order (drops unknown).
    fn portable(&mut self, host: &Host) -> Vec<(String, Counters)> {
        let networks = match &mut self.networks {
            Some(n) => n,
            None => match sysinfo::Networks::new_with_refreshed_list() {
                Ok(n) => self.networks.insert(n),
                Err(e) => {
                    host.warn_once("net", "sysinfo", &e.to_string());
                    return Vec::new();
                }
            },
        };
        networks.refresh(true);
        networks
            .iter()
            .map(|(name, d)| {
                (
                    name.to_string_lossy().into_owned(),
                    [
                        d.total_received(),
                        d.total_packets_received(),
                        d.total_errors_on_received(),
                        u64::MAX,
                        d.total_transmitted(),
                        d.total_packets_transmitted(),
                        d.total_errors_on_transmitted(),
                        u64::MAX,
                    ],
                )
            })
            .collect()
    }
}

impl Collector for Net {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let counters = if host.has_proc() {
            let Some(text) = host.read_proc("net", "net/dev") else {
                return;
            };
            parse(&text)
        } else {
            self.portable(host)
        };
        let mut seen = HashMap::new();
        for (name, now) in counters {
            let wanted = if host.has_proc() {
                self.wanted(host, &name)
            } else {
                match &self.config.resources {
                    Some(r) if !r.iter().any(|p| p == "*") => r.iter().any(|p| glob(p, &name)),
                    _ => !name.starts_with("lo"),
                }
            };
            if !wanted {
                continue;
            }
            let c = &self.config;
            let before = self.previous.get(&name).copied();
            let d = |i: usize| {
                if now[i] == u64::MAX {
                    f64::NAN
                } else {
                    growth(now[i], before.map(|b| b[i]))
                }
            };
            let mut s = Series::new(Vec::new()).dim("interface", name.clone());
            s.put(c, "bytes_recv", d(0));
            s.put(c, "packets_recv", d(1));
            s.put(c, "err_in", d(2));
            s.put(c, "drop_in", d(3));
            s.put(c, "bytes_sent", d(4));
            s.put(c, "packets_sent", d(5));
            s.put(c, "err_out", d(6));
            s.put(c, "drop_out", d(7));
            out.push(s);
            seen.insert(name, now);
        }
        self.previous = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_dev_and_globs() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      50    1    2    0     0          0         0     7000      70    3    4    0     0       0          0
";
        let p = parse(text);
        assert_eq!(p[1], ("eth0".to_owned(), [5000, 50, 1, 2, 7000, 70, 3, 4]));
        assert!(glob("eth*", "eth0") && glob("wlan?", "wlan0") && !glob("eth*", "wlan0"));
    }

    #[test]
    fn sysinfo_gives_the_same_interfaces_as_proc() {
        let host = Host::at(std::path::Path::new("/"));
        let config = SectionConfig::all("net", std::time::Duration::from_secs(60));
        let mut net = Net {
            config,
            previous: HashMap::new(),
            networks: None,
        };
        let mut from_sysinfo: Vec<String> = net.portable(&host).into_iter().map(|c| c.0).collect();
        let mut from_proc: Vec<String> = parse(&std::fs::read_to_string("/proc/net/dev").unwrap())
            .into_iter()
            .map(|c| c.0)
            .collect();
        from_sysinfo.sort();
        from_proc.sort();
        assert_eq!(from_sysinfo, from_proc);
    }
}
