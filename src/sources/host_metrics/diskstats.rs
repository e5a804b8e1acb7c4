//! Disk I/O counters of whole disks for the original 13 metrics: from Linux's `/proc/diskstats`
//! (partitions would count the same I/O twice; loop and RAM devices are not storage), or from
//! IOKit's block storage drivers on macOS.

use std::collections::HashMap;

/// Cumulative counters of one disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub read_ops: u64,
    pub read_bytes: u64,
    pub write_ops: u64,
    pub write_bytes: u64,
}

/// /proc/diskstats always counts 512-byte sectors, whatever the device's own sector size.
#[cfg_attr(target_os = "macos", allow(dead_code))]
const SECTOR_BYTES: u64 = 512;

/// Parses diskstats text, keeping devices for which `is_whole_disk` says yes.
#[cfg_attr(target_os = "macos", allow(dead_code))]
pub fn parse(text: &str, is_whole_disk: impl Fn(&str) -> bool) -> HashMap<String, DiskCounters> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let name = f[2];
        if name.starts_with("loop") || name.starts_with("ram") || !is_whole_disk(name) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().ok();
        if let (Some(r), Some(rs), Some(w), Some(ws)) = (n(3), n(5), n(7), n(9)) {
            out.insert(
                name.to_owned(),
                DiskCounters {
                    read_ops: r,
                    read_bytes: rs * SECTOR_BYTES,
                    write_ops: w,
                    write_bytes: ws * SECTOR_BYTES,
                },
            );
        }
    }
    out
}

/// Reads the machine's counters from IOKit; `None` where it cannot be asked.
#[cfg(target_os = "macos")]
pub fn read() -> Option<HashMap<String, DiskCounters>> {
    let disks = super::iokit::read()?;
    Some(
        disks
            .into_iter()
            .map(|(name, s)| {
                let c = DiskCounters {
                    read_ops: s.read_ops,
                    read_bytes: s.read_bytes,
                    write_ops: s.write_ops,
                    write_bytes: s.write_bytes,
                };
                (name, c)
            })
            .collect(),
    )
}

/// Reads the machine's counters; `None` where there is no /proc/diskstats.
#[cfg(not(target_os = "macos"))]
pub fn read() -> Option<HashMap<String, DiskCounters>> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    // A whole disk has a directory in /sys/block; a partition does not.
    Some(parse(&text, |name| {
        std::path::Path::new("/sys/block")
            .join(name.replace('/', "!"))
            .exists()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_disks_in_bytes() {
        let text = "\
 179       0 mmcblk0 1000 10 20000 500 300 40 6000 900 0 1200 1400 0 0 0 0
 179       1 mmcblk0p1 90 0 1800 40 2 0 8 1 0 50 41 0 0 0 0
   7       0 loop0 12 0 24 1 0 0 0 0 0 4 1 0 0 0 0
   8       0 sda 5 0 8 1 7 0 16 2 0 3 3
garbage line
";
        let disks = parse(text, |name| !name.ends_with("p1"));
        assert_eq!(disks.len(), 2, "{disks:?}");
        assert_eq!(
            disks["mmcblk0"],
            DiskCounters {
                read_ops: 1000,
                read_bytes: 20000 * 512,
                write_ops: 300,
                write_bytes: 6000 * 512
            }
        );
        assert_eq!(disks["sda"].write_bytes, 16 * 512);
    }

    #[test]
    fn reads_this_machine() {
        if cfg!(target_os = "linux") {
            assert!(read().is_some(), "/proc/diskstats should exist on Linux");
        }
    }
}
