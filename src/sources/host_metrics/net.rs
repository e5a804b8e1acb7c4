//! `net`: traffic per network interface from /proc/net/dev. As the agent sends them, the
//! figures are the growth since the previous sample (use the Sum statistic), not rates. By
//! default every interface that is up, except loopback; `resources` names interfaces (`*` and
//! `?` allowed), which are then read whether up or not.

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
    supported: cfg!(target_os = "linux"),
    new: |c| {
        Box::new(Net {
            config: c.clone(),
            previous: HashMap::new(),
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

impl Collector for Net {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let Some(text) = host.read_proc("net", "net/dev") else {
            return;
        };
        let mut seen = HashMap::new();
        for (name, now) in parse(&text) {
            if !self.wanted(host, &name) {
                continue;
            }
            let c = &self.config;
            let before = self.previous.get(&name).copied();
            let d = |i: usize| growth(now[i], before.map(|b| b[i]));
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
}
