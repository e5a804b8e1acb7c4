//! How samples become records: the namespace, names, units and dimensions they are published
//! under, and for the agent's sections the `aggregation_dimensions` roll-ups.

use std::time::Duration;

use crate::config::INSTANCE_ID_PLACEHOLDER;
use crate::metric::{Measurement, MetricRecord};
use crate::sources::host_metrics::{SectionConfig, Series};

/// Below this interval metrics are sent at high resolution (StorageResolution 1), as the agent
/// does.
pub const HIGH_RESOLUTION_BELOW: Duration = Duration::from_secs(60);
/// PutMetricData takes at most 30 dimensions per metric.
const MAX_DIMENSIONS: usize = 30;

/// What every record of the original metrics is published under.
#[derive(Debug, Clone)]
pub struct Labels {
    pub namespace: String,
    pub dimensions: Vec<(String, String)>,
    /// 1 below a 60 s interval (high resolution), else 60.
    pub storage_resolution: i32,
}

pub fn storage_resolution(interval: Duration) -> i32 {
    if interval < HIGH_RESOLUTION_BELOW {
        1
    } else {
        60
    }
}

/// What the agent's sections are published under.
#[derive(Debug, Clone)]
pub struct AgentLabels {
    pub namespace: String,
    /// The `host` dimension's value, when metrics carry one.
    pub host: Option<String>,
    /// This machine's name (the summary's `Hostname` dimension).
    pub hostname: String,
    /// `metrics.append_dimensions`.
    pub append_dimensions: Vec<(String, String)>,
    pub aggregation_dimensions: Vec<Vec<String>>,
    /// What `${aws:InstanceId}` stands for.
    pub instance_id: String,
}

impl AgentLabels {
    /// The labels of `config`'s `metrics_collected`, for this instance and host; `None`
    /// without it.
    pub fn for_config(
        config: &crate::config::Config,
        id: &str,
        host_name: String,
    ) -> Option<AgentLabels> {
        let c = config.metrics.collected.as_ref()?;
        Some(AgentLabels {
            namespace: config.metrics.namespace.clone(),
            host: c.host_dimension.then(|| host_name.clone()),
            hostname: host_name,
            append_dimensions: c.append_dimensions.clone(),
            aggregation_dimensions: c.aggregation_dimensions.clone(),
            instance_id: id.to_owned(),
        })
    }

    /// What every metric carries whatever its source (StatsD's too): `host` first, then
    /// `metrics.append_dimensions` by name.
    pub fn common_dimensions(&self) -> Vec<(String, String)> {
        let mut dims: Vec<(String, String)> = self
            .append_dimensions
            .iter()
            .filter(|(k, v)| !v.is_empty() && k != "host")
            .map(|(k, v)| (k.clone(), self.resolve(v)))
            .collect();
        dims.sort();
        if let Some(h) = &self.host {
            dims.insert(0, ("host".into(), h.clone()));
        }
        dims
    }

    fn resolve(&self, value: &str) -> String {
        value.replace(INSTANCE_ID_PLACEHOLDER, &self.instance_id)
    }

    /// One series' dimensions, in the agent's order: `host` first, then the rest by name.
    fn dimensions(&self, config: &SectionConfig, series: &Series) -> Vec<(String, String)> {
        let mut dims: Vec<(String, String)> = Vec::new();
        let extra = series
            .dimensions
            .iter()
            .cloned()
            .chain(
                config
                    .append_dimensions
                    .iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v))),
            )
            .chain(
                self.append_dimensions
                    .iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v))),
            );
        for (k, v) in extra {
            if !v.is_empty() && !dims.iter().any(|d| d.0 == k) && k != "host" {
                dims.push((k, v));
            }
        }
        dims.sort();
        if let Some(h) = &self.host {
            dims.insert(0, ("host".into(), h.clone()));
        }
        dims.truncate(MAX_DIMENSIONS);
        dims
    }

    /// A section's series as records: one with all dimensions (without the metrics in
    /// `drop_original_metrics`), and one per aggregation set that has fewer dimensions and all
    /// of them present, with just those. Values that need an earlier reading are left out,
    /// unless `keep_unknown` (to count what will be published).
    pub fn records(
        &self,
        config: &SectionConfig,
        series: &[Series],
        timestamp_ms: i64,
        keep_unknown: bool,
    ) -> Vec<MetricRecord> {
        let resolution = storage_resolution(config.interval);
        let mut out = Vec::new();
        for s in series {
            let values: Vec<Measurement> = s
                .values
                .iter()
                .filter(|(_, v)| keep_unknown || v.is_finite())
                .filter_map(|(field, value)| {
                    let m = config.measurements.iter().find(|m| m.field == *field)?;
                    Some(Measurement::single(m.name.clone(), m.unit, *value))
                })
                .collect();
            if values.is_empty() {
                continue;
            }
            if config.section == "summary" {
                // Exactly as without metrics_collected.
                let dims = vec![
                    ("InstanceId".to_owned(), self.instance_id.clone()),
                    ("Hostname".to_owned(), self.hostname.clone()),
                ];
                out.push(MetricRecord {
                    namespace: self.namespace.clone(),
                    dimensions: dims,
                    timestamp_ms,
                    storage_resolution: resolution,
                    values,
                    unsynced: None,
                });
                continue;
            }
            let dims = self.dimensions(config, s);
            let record =
                |dimensions: Vec<(String, String)>, values: Vec<Measurement>| MetricRecord {
                    namespace: self.namespace.clone(),
                    dimensions,
                    timestamp_ms,
                    storage_resolution: resolution,
                    values,
                    unsynced: None,
                };
            let originals: Vec<Measurement> = values
                .iter()
                .filter(|m| !config.drop_original_metrics.contains(&m.name))
                .cloned()
                .collect();
            if !originals.is_empty() {
                out.push(record(dims.clone(), originals));
            }
            for set in &self.aggregation_dimensions {
                if set.len() >= dims.len() {
                    continue;
                }
                let rolled: Option<Vec<(String, String)>> = set
                    .iter()
                    .map(|k| dims.iter().find(|d| &d.0 == k).cloned())
                    .collect();
                if let Some(rolled) = rolled {
                    out.push(record(rolled, values.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::host_metrics::SectionConfig;

    fn labels(host: bool, aggregation: Vec<Vec<String>>) -> AgentLabels {
        AgentLabels {
            namespace: "CWAgent".into(),
            host: host.then(|| "pi".to_owned()),
            hostname: "pi".into(),
            append_dimensions: vec![("InstanceId".into(), INSTANCE_ID_PLACEHOLDER.into())],
            aggregation_dimensions: aggregation,
            instance_id: "rpi-1".into(),
        }
    }

    #[test]
    fn dimensions_in_the_agents_order_and_roll_ups_as_the_agent_sends_them() {
        let mut config = SectionConfig::all("cpu", Duration::from_secs(10));
        config
            .measurements
            .retain(|m| m.field == "usage_idle" || m.field == "usage_user");
        config.append_dimensions = vec![("Zone".into(), "shelf".into())];
        config.drop_original_metrics = vec!["cpu_usage_user".into()];
        let series = vec![
            Series {
                dimensions: vec![("cpu".into(), "cpu0".into())],
                values: vec![("usage_idle", 90.0), ("usage_user", 5.0)],
            },
            Series {
                dimensions: vec![("cpu".into(), "cpu1".into())],
                values: vec![("usage_idle", f64::NAN), ("usage_user", f64::NAN)],
            },
        ];
        let l = labels(
            true,
            vec![vec!["InstanceId".into()], vec![], vec!["Nope".into()]],
        );
        let r = l.records(&config, &series, 1000, false);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(
            r[0].dimensions,
            [
                ("host".into(), "pi".into()),
                ("InstanceId".into(), "rpi-1".into()),
                ("Zone".into(), "shelf".into()),
                ("cpu".into(), "cpu0".into())
            ]
        );
        assert_eq!(r[0].storage_resolution, 1);
        let names: Vec<&str> = r[0].values.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cpu_usage_idle"], "cpu_usage_user only in roll-ups");
        assert_eq!(r[1].dimensions, [("InstanceId".into(), "rpi-1".into())]);
        assert_eq!(r[1].values.len(), 2);
        assert!(r[2].dimensions.is_empty(), "[] rolls up to no dimensions");
        // The second CPU has no values yet: nothing, unless counting what will be sent.
        assert_eq!(l.records(&config, &series, 1000, true).len(), 6);
    }
}
