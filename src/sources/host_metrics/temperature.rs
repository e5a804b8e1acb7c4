//! `temperature` (not in the agent): every thermal zone (/sys/class/thermal) and hwmon
//! temperature sensor (/sys/class/hwmon) in degrees Celsius, one series per sensor. On a
//! Raspberry Pi that is the SoC (`cpu-thermal`). An hwmon device that only mirrors a thermal
//! zone (same name, `_` for `-`) is left out, so no sensor is counted twice.

use std::path::Path;

use super::{field, Collector, Host, Kind, Section, SectionConfig, Series};
use crate::metric::Unit;

pub const SECTION: Section = Section {
    key: "temperature",
    prefix: "temperature",
    fields: &[field("celsius", Unit::None, Kind::Gauge)],
    not_collected: &[],
    options: &[],
    dimensions: "sensor (a thermal zone's type, or hwmon name/label)",
    supported: cfg!(target_os = "linux"),
    macos: &[],
    new: |c| Box::new(Temperature(c.clone())),
};

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Entries of `dir` whose names start with `prefix`, sorted by the number after it.
fn numbered(dir: &Path, prefix: &str) -> Vec<(u64, std::path::PathBuf, String)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix(prefix)?;
            let digits: String = n.chars().take_while(|c| c.is_ascii_digit()).collect();
            Some((digits.parse().ok()?, e.path(), name))
        })
        .collect();
    out.sort();
    out
}

/// (sensor, °C) for every sensor under `sys`; unreadable ones are reported through `host`.
pub fn sensors(host: &Host) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let mut zone_types = Vec::new();
    for (_, path, name) in numbered(&host.sys.join("class/thermal"), "thermal_zone") {
        let kind = read_trimmed(&path.join("type")).unwrap_or_else(|| name.clone());
        zone_types.push(kind.replace('-', "_"));
        match std::fs::read_to_string(path.join("temp")) {
            Ok(t) => match t.trim().parse::<f64>() {
                Ok(milli) => {
                    let sensor = if out.iter().any(|(s, _)| *s == kind) {
                        format!("{kind}/{name}")
                    } else {
                        kind
                    };
                    out.push((sensor, milli / 1000.0));
                }
                Err(_) => host.warn_once(
                    "temperature",
                    &name,
                    &format!("{} holds no temperature", path.join("temp").display()),
                ),
            },
            Err(e) => host.warn_once(
                "temperature",
                &name,
                &format!("cannot read {}: {e}", path.join("temp").display()),
            ),
        }
    }
    for (_, path, dir_name) in numbered(&host.sys.join("class/hwmon"), "hwmon") {
        let name = read_trimmed(&path.join("name")).unwrap_or(dir_name);
        if zone_types.contains(&name.replace('-', "_")) {
            continue;
        }
        let inputs: Vec<_> = numbered(&path, "temp")
            .into_iter()
            .filter(|(_, _, f)| f.ends_with("_input"))
            .collect();
        for (n, input, _) in &inputs {
            let label = read_trimmed(&path.join(format!("temp{n}_label")));
            let sensor = match (label, inputs.len()) {
                (Some(l), _) => format!("{name}/{l}"),
                (None, 1) => name.clone(),
                (None, _) => format!("{name}/temp{n}"),
            };
            match read_trimmed(input).and_then(|t| t.parse::<f64>().ok()) {
                Some(milli) => out.push((sensor, milli / 1000.0)),
                None => host.warn_once(
                    "temperature",
                    &sensor,
                    &format!("cannot read {}", input.display()),
                ),
            }
        }
    }
    out
}

pub struct Temperature(SectionConfig);

impl Collector for Temperature {
    fn collect(&mut self, host: &Host, out: &mut Vec<Series>) {
        let found = sensors(host);
        if found.is_empty() {
            host.warn_once("temperature", "none", "this machine shows no temperature sensor in /sys/class/thermal or /sys/class/hwmon");
        }
        for (sensor, celsius) in found {
            let mut s = Series::new(Vec::new()).dim("sensor", sensor);
            s.put(&self.0, "celsius", celsius);
            out.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pi_4s_soc_once_and_an_unreadable_sensor_warned_about_once() {
        let pi = Host::at(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hosts/pi4"),
        );
        assert_eq!(sensors(&pi), [("cpu-thermal".to_owned(), 48.312)]);

        let dir = tempfile::tempdir().unwrap();
        let zones = dir.path().join("sys/class/thermal");
        for (n, kind, temp) in [
            (0, "cpu-thermal", Some("51000")),
            (1, "gpu-thermal", None),
            (2, "cpu-thermal", Some("-2500")),
        ] {
            let z = zones.join(format!("thermal_zone{n}"));
            std::fs::create_dir_all(&z).unwrap();
            std::fs::write(z.join("type"), format!("{kind}\n")).unwrap();
            if let Some(t) = temp {
                std::fs::write(z.join("temp"), t).unwrap();
            }
        }
        let hw = dir.path().join("sys/class/hwmon/hwmon3");
        std::fs::create_dir_all(&hw).unwrap();
        std::fs::write(hw.join("name"), "nvme\n").unwrap();
        std::fs::write(hw.join("temp1_input"), "38850\n").unwrap();
        std::fs::write(hw.join("temp1_label"), "Composite\n").unwrap();
        std::fs::write(hw.join("temp2_input"), "41850\n").unwrap();
        let host = Host::at(dir.path());
        let mut config = SectionConfig::all("temperature", std::time::Duration::from_secs(60));
        config.measurements.truncate(1);
        let mut t = (SECTION.new)(&config);
        for _ in 0..2 {
            let mut out = Vec::new();
            t.collect(&host, &mut out);
            let got: Vec<(String, f64)> = out
                .iter()
                .map(|s| (s.dimensions[0].1.clone(), s.values[0].1))
                .collect();
            assert_eq!(
                got,
                [
                    ("cpu-thermal".to_owned(), 51.0),
                    ("cpu-thermal/thermal_zone2".to_owned(), -2.5),
                    ("nvme/Composite".to_owned(), 38.85),
                    ("nvme/temp2".to_owned(), 41.85),
                ]
            );
        }
        assert_eq!(
            host.warned.lock().unwrap().len(),
            1,
            "the zone without a reading, once"
        );
    }
}
