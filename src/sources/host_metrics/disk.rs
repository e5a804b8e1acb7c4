//! `disk`: space and inodes per mounted file system, from /proc/self/mountinfo and statvfs, as
//! the agent (Telegraf's disk input) gives them. File systems with no size (proc, sysfs,
//! cgroup, ...) are left out, as Telegraf does (by their type too, so a tree standing in for
//! the host behaves the same); so are bind mounts of part of a file system already reported,
//! unless `resources` names them. RAM-backed ones (tmpfs, devtmpfs) are reported, as the agent
//! does: leave them out with `ignore_file_system_types`. Without /proc (macOS), the mounts come
//! from sysinfo, and the figures from statvfs as on Linux.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "disk",
    prefix: "disk",
    fields: &[
        field("free", Unit::Bytes, Kind::Gauge),
        field("total", Unit::Bytes, Kind::Gauge),
        field("used", Unit::Bytes, Kind::Gauge),
        field("used_percent", Unit::Percent, Kind::Gauge),
        field("inodes_free", Unit::Count, Kind::Gauge),
        field("inodes_total", Unit::Count, Kind::Gauge),
        field("inodes_used", Unit::Count, Kind::Gauge),
    ],
    not_collected: &[],
    options: &["resources", "ignore_file_system_types", "drop_device"],
    dimensions: "path (mount point), device (without /dev/; not with drop_device), fstype",
    supported: true,
    macos: &[
        "free",
        "total",
        "used",
        "used_percent",
        "inodes_free",
        "inodes_total",
        "inodes_used",
    ],
    new: |c| Box::new(Disk(c.clone())),
};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The part of the file system mounted here ("/" unless a bind mount of a folder).
    pub root: String,
    pub path: String,
    pub fstype: String,
    pub device: String,
}

/// mountinfo's escapes (`\040` for a space, ...) undone.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = f.iter().position(|&x| x == "-") else {
            continue;
        };
        if f.len() < 5 || f.len() < sep + 3 {
            continue;
        }
        let m = Mount {
            root: unescape(f[3]),
            path: unescape(f[4]),
            fstype: f[sep + 1].to_owned(),
            device: unescape(f[sep + 2]),
        };
        // A later mount over the same path hides the earlier one.
        mounts.retain(|o| o.path != m.path);
        mounts.push(m);
    }
    mounts
}

/// statvfs figures: (total, free for users, used, inodes total, inodes free).
pub fn statvfs(path: &Path) -> std::io::Result<(u64, u64, u64, u64, u64)> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a zeroed statvfs is a valid output buffer, and `c` is a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = s.f_frsize as u64;
    let total = s.f_blocks as u64 * frsize;
    let free = s.f_bavail as u64 * frsize;
    let used = (s.f_blocks as u64).saturating_sub(s.f_bfree as u64) * frsize;
    Ok((total, free, used, s.f_files as u64, s.f_ffree as u64))
}

/// Kernel file systems that hold no data (statvfs gives them no size).
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "securityfs",
    "pstore",
    "bpf",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "mqueue",
    "binfmt_misc",
    "autofs",
    "rpc_pipefs",
    "nsfs",
    "efivarfs",
    "hugetlbfs",
];

pub struct Disk(SectionConfig);

/// The mounted file systems as sysinfo lists them (without /proc).
pub fn portable_mounts() -> Vec<Mount> {
    let Ok(disks) = sysinfo::Disks::new_with_refreshed_list() else {
        return Vec::new();
    };
    disks
        .iter()
        .map(|d| Mount {
            root: "/".into(),
            path: d.mount_point().to_string_lossy().into_owned(),
            fstype: d.file_system().to_string_lossy().into_owned(),
            device: d.name().to_string_lossy().into_owned(),
        })
        .collect()
}

impl Collector for Disk {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let mounts = if host.has_proc() {
            let Some(text) = host.read_proc("disk", "self/mountinfo") else {
                return;
            };
            parse_mountinfo(&text)
        } else {
            portable_mounts()
        };
        let c = &self.0;
        let listed = |path: &str| {
            c.resources
                .as_ref()
                .is_some_and(|r| r.iter().any(|p| p == path))
        };
        let all = c
            .resources
            .as_ref()
            .is_none_or(|r| r.iter().any(|p| p == "*"));
        for m in mounts {
            if !(all || listed(&m.path))
                || c.ignore_file_system_types.contains(&m.fstype)
                || PSEUDO.contains(&m.fstype.as_str())
            {
                continue;
            }
            if m.root != "/" && !listed(&m.path) {
                continue;
            }
            let (total, free, used, inodes, inodes_free) = match statvfs(&host.path(&m.path)) {
                Ok(v) => v,
                Err(e) => {
                    host.warn_once(
                        "disk",
                        &m.path,
                        &format!("cannot read the size of {}: {e}", m.path),
                    );
                    continue;
                }
            };
            if total == 0 {
                continue;
            }
            let mut s = Series::new(Vec::new())
                .dim("path", m.path.clone())
                .dim("fstype", m.fstype.clone());
            if !c.drop_device {
                let device = m.device.strip_prefix("/dev/").unwrap_or(&m.device);
                s = s.dim("device", device);
            }
            s.put(c, "total", total as f64);
            s.put(c, "free", free as f64);
            s.put(c, "used", used as f64);
            let percent = if used + free > 0 {
                100.0 * used as f64 / (used + free) as f64
            } else {
                f64::NAN
            };
            s.put(c, "used_percent", percent);
            s.put(c, "inodes_total", inodes as f64);
            s.put(c, "inodes_free", inodes_free as f64);
            s.put(c, "inodes_used", inodes.saturating_sub(inodes_free) as f64);
            out.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_with_optional_fields_escapes_and_stacked_mounts() {
        let text = "\
22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
23 22 0:5 / /proc rw,nosuid shared:12 - proc proc rw
24 22 179:1 / /boot/firm\\040ware rw,noatime shared:2 master:3 - vfat /dev/mmcblk0p1 rw
25 22 179:2 /srv/data /data rw - ext4 /dev/mmcblk0p2 rw
26 22 0:30 / /data rw - tmpfs tmpfs rw
bad line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[2].path, "/boot/firm ware");
        assert_eq!(m[2].fstype, "vfat");
        assert_eq!(m[2].device, "/dev/mmcblk0p1");
        assert_eq!(
            m[3].fstype, "tmpfs",
            "the later mount over /data hides the bind mount"
        );
    }

    fn names(out: &[Series]) -> Vec<String> {
        out.iter()
            .map(|s| {
                s.dimensions
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn pseudo_bind_ignored_and_vanished_file_systems() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        for p in ["boot/firmware", "mnt/usb", "srv/data", "run", "snap/core/1"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        let info = "\
22 1 179:2 / / ro,noatime shared:1 - ext4 /dev/mmcblk0p2 ro
23 22 0:22 / /proc rw shared:12 - proc proc rw
24 22 179:1 / /boot/firmware rw shared:2 - vfat /dev/mmcblk0p1 rw
25 22 179:2 /srv/data /srv/data rw - ext4 /dev/mmcblk0p2 rw
26 22 0:30 / /run rw - tmpfs tmpfs rw
27 22 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro
28 22 8:1 / /mnt/usb rw - exfat /dev/sda1 rw
";
        std::fs::write(root.join("proc/self/mountinfo"), info).unwrap();
        let host = Host::at(root);
        let mut config = SectionConfig::all("disk", std::time::Duration::from_secs(60));
        config.ignore_file_system_types = vec!["tmpfs".into()];
        let mut disk = (SECTION.new)(&config);
        let mut out = Vec::new();
        disk.collect(&host, &mut out);
        assert_eq!(
            names(&out),
            [
                "path=/,fstype=ext4,device=mmcblk0p2",
                "path=/boot/firmware,fstype=vfat,device=mmcblk0p1",
                "path=/snap/core/1,fstype=squashfs,device=loop0",
                "path=/mnt/usb,fstype=exfat,device=sda1",
            ],
            "read-only ones too; not proc, not the bind mount, not the ignored tmpfs"
        );
        let get = |s: &Series, f: &str| s.values.iter().find(|v| v.0 == f).unwrap().1;
        let root_stats = statvfs(root).unwrap();
        assert_eq!(get(&out[0], "total"), root_stats.0 as f64);
        let used = get(&out[0], "used");
        let free = get(&out[0], "free");
        assert!((get(&out[0], "used_percent") - 100.0 * used / (used + free)).abs() < 1e-9);

        // The USB disk's folder is gone but still in mountinfo: one warning, the rest is sent;
        // the bind mount is reported once named; drop_device removes the device.
        std::fs::remove_dir_all(root.join("mnt/usb")).unwrap();
        config.resources = Some(vec!["/".into(), "/srv/data".into(), "/mnt/usb".into()]);
        config.drop_device = true;
        let mut disk = (SECTION.new)(&config);
        out.clear();
        disk.collect(&host, &mut out);
        disk.collect(&host, &mut Vec::new());
        assert_eq!(
            names(&out),
            ["path=/,fstype=ext4", "path=/srv/data,fstype=ext4"]
        );
        assert_eq!(host.warned.lock().unwrap().len(), 1);
    }

    #[test]
    fn sysinfo_lists_the_root_file_system_too() {
        let mounts = portable_mounts();
        assert!(mounts.iter().any(|m| m.path == "/"), "{mounts:?}");
    }
}
