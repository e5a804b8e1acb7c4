//! `throttling` (not in the agent), on a Raspberry Pi: the firmware's `get_throttled` flags,
//! each now and since boot, as 0 or 1: under-voltage (a weak power supply), ARM frequency
//! capped, throttled, soft temperature limit. Read from sysfs
//! (`/sys/devices/platform/soc/soc:firmware/get_throttled`, hexadecimal), or from
//! `vcgencmd get_throttled` where sysfs lacks it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "throttling",
    prefix: "throttling",
    fields: &[
        field("under_voltage", Unit::None, Kind::Gauge),
        field("frequency_capped", Unit::None, Kind::Gauge),
        field("throttled", Unit::None, Kind::Gauge),
        field("soft_temperature_limit", Unit::None, Kind::Gauge),
        field("under_voltage_since_boot", Unit::None, Kind::Gauge),
        field("frequency_capped_since_boot", Unit::None, Kind::Gauge),
        field("throttled_since_boot", Unit::None, Kind::Gauge),
        field("soft_temperature_limit_since_boot", Unit::None, Kind::Gauge),
    ],
    not_collected: &[],
    options: &[],
    dimensions: "",
    supported: cfg!(target_os = "linux"),
    macos: &[],
    new: |c| {
        Box::new(Throttling {
            config: c.clone(),
            sysfs: None,
        })
    },
};

/// The flags in bit order: bit n is "now", bit n + 16 "since boot".
const FLAGS: [&str; 4] = [
    "under_voltage",
    "frequency_capped",
    "throttled",
    "soft_temperature_limit",
];

/// Names `vcgencmd` to run instead of the one on PATH (tests use a stand-in).
pub const VCGENCMD_ENV: &str = "CLOUDWATCH_PUBLISHER_VCGENCMD";

/// The value of sysfs's `get_throttled` ("50005") or of vcgencmd's output
/// ("throttled=0x50005").
pub fn parse(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("throttled=").unwrap_or(t);
    let t = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

pub struct Throttling {
    config: SectionConfig,
    sysfs: Option<PathBuf>,
}

impl Throttling {
    fn find_sysfs(host: &Host) -> Option<PathBuf> {
        let usual = host
            .sys
            .join("devices/platform/soc/soc:firmware/get_throttled");
        if usual.exists() {
            return Some(usual);
        }
        // Other boards and kernels name the bus `soc@<address>`.
        for bus in std::fs::read_dir(host.sys.join("devices/platform"))
            .ok()?
            .flatten()
        {
            for dev in std::fs::read_dir(bus.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let p = dev.path().join("get_throttled");
                if dev.file_name().to_string_lossy().ends_with(":firmware") && p.exists() {
                    return Some(p);
                }
            }
        }
        None
    }

    fn vcgencmd() -> Option<String> {
        let program = std::env::var_os(VCGENCMD_ENV).unwrap_or_else(|| "vcgencmd".into());
        let mut child = Command::new(program)
            .arg("get_throttled")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take()?, &mut text).ok()?;
        Some(text)
    }

    fn read(&mut self, host: &Host) -> Option<u32> {
        if self.sysfs.is_none() {
            self.sysfs = Self::find_sysfs(host);
        }
        if let Some(p) = &self.sysfs {
            match std::fs::read_to_string(p) {
                Ok(t) => return parse(&t),
                Err(e) => {
                    host.warn_once(
                        "throttling",
                        "sysfs",
                        &format!("cannot read {}: {e}", p.display()),
                    );
                }
            }
        }
        Self::vcgencmd().as_deref().and_then(parse)
    }
}

impl Collector for Throttling {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let Some(v) = self.read(host) else {
            host.warn_once(
                "throttling",
                "none",
                "no Raspberry Pi firmware flags here (no get_throttled in /sys, no vcgencmd)",
            );
            return;
        };
        let mut s = Series::new(Vec::new());
        for (bit, name) in FLAGS.iter().enumerate() {
            s.put(&self.config, name, f64::from((v >> bit) & 1));
        }
        for (bit, name) in [
            "under_voltage_since_boot",
            "frequency_capped_since_boot",
            "throttled_since_boot",
            "soft_temperature_limit_since_boot",
        ]
        .iter()
        .enumerate()
        {
            s.put(&self.config, name, f64::from((v >> (bit + 16)) & 1));
        }
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_flags() {
        assert_eq!(parse("50005\n"), Some(0x50005));
        assert_eq!(parse("throttled=0x50005\n"), Some(0x50005));
        assert_eq!(parse("throttled=0x0"), Some(0));
        assert_eq!(parse("error"), None);
    }

    #[test]
    fn without_sysfs_vcgencmd_is_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("vcgencmd");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x20002\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Only this test sets it.
        std::env::set_var(VCGENCMD_ENV, &script);
        let host = Host::at(dir.path());
        let config = SectionConfig::all("throttling", std::time::Duration::from_secs(60));
        let mut t = (SECTION.new)(&config);
        let mut out = Vec::new();
        t.collect(&host, &mut out);
        let on: Vec<&str> = out[0]
            .values
            .iter()
            .filter(|v| v.1 == 1.0)
            .map(|v| v.0)
            .collect();
        assert_eq!(on, ["frequency_capped", "frequency_capped_since_boot"]);
    }
}
