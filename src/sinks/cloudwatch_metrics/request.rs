//! Turns metric records into PutMetricData requests within CloudWatch's limits.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;
use serde_json::{json, Value};

use crate::metric::MetricRecord;

/// PutMetricData takes at most 1,000 datums per request.
pub const MAX_DATUMS_PER_REQUEST: usize = 1_000;
/// And at most 1 MB of payload; our datums are small, but the bound is enforced anyway.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;

/// One PutMetricData call's worth: one namespace, at most 1,000 datums.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub namespace: String,
    pub records: Vec<MetricRecord>,
}

impl Batch {
    pub fn datum_count(&self) -> usize {
        self.records.iter().map(MetricRecord::datum_count).sum()
    }

    /// The request as PutMetricData's input, with AWS's field names: what `--dry-run` prints.
    pub fn to_json(&self) -> Value {
        let data: Vec<Value> = self
            .records
            .iter()
            .flat_map(|r| {
                let dims: Vec<Value> = r
                    .dimensions
                    .iter()
                    .map(|(n, v)| json!({"Name": n, "Value": v}))
                    .collect();
                r.values.iter().map(move |m| {
                    json!({
                        "MetricName": m.name,
                        "Dimensions": dims,
                        "Timestamp": DateTime::from_millis(r.timestamp_ms)
                            .fmt(aws_smithy_types::date_time::Format::DateTime)
                            .unwrap_or_default(),
                        "Value": m.value,
                        "Unit": m.unit.as_str(),
                        "StorageResolution": r.storage_resolution,
                    })
                })
            })
            .collect();
        json!({"Namespace": self.namespace, "MetricData": data})
    }

    pub fn to_datums(&self) -> Vec<MetricDatum> {
        self.records
            .iter()
            .flat_map(|r| {
                let dims: Vec<Dimension> = r
                    .dimensions
                    .iter()
                    .map(|(n, v)| Dimension::builder().name(n).value(v).build())
                    .collect();
                r.values.iter().map(move |m| {
                    MetricDatum::builder()
                        .metric_name(&m.name)
                        .set_dimensions(Some(dims.clone()))
                        .timestamp(DateTime::from_millis(r.timestamp_ms))
                        .value(m.value)
                        .unit(StandardUnit::from(m.unit.as_str()))
                        .storage_resolution(r.storage_resolution)
                        .build()
                })
            })
            .collect()
    }
}

/// A generous estimate of one record's share of a request body.
fn estimated_bytes(r: &MetricRecord) -> usize {
    let dims: usize = r
        .dimensions
        .iter()
        .map(|(n, v)| n.len() + v.len() + 16)
        .sum();
    r.values.iter().map(|m| m.name.len() + dims + 64).sum()
}

/// Groups records into requests: same namespace only, in order, at most 1,000 datums and about
/// 1 MB each. A record is never split across requests.
pub fn batches(records: impl IntoIterator<Item = MetricRecord>) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let n = r.datum_count();
        let size = estimated_bytes(&r);
        let fits = out.last().is_some_and(|b| {
            b.namespace == r.namespace
                && b.datum_count() + n <= MAX_DATUMS_PER_REQUEST
                && bytes + size <= MAX_REQUEST_BYTES
        });
        if fits {
            bytes += size;
            out.last_mut().expect("checked above").records.push(r);
        } else {
            bytes = size;
            out.push(Batch {
                namespace: r.namespace.clone(),
                records: vec![r],
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Measurement, Unit};

    pub(crate) fn record(ns: &str, ts: i64, n: usize) -> MetricRecord {
        MetricRecord {
            namespace: ns.into(),
            dimensions: vec![
                ("InstanceId".into(), "rpi-1".into()),
                ("Hostname".into(), "pi".into()),
            ],
            timestamp_ms: ts,
            storage_resolution: 60,
            values: (0..n)
                .map(|i| Measurement {
                    name: format!("M{i}"),
                    unit: Unit::Count,
                    value: i as f64,
                })
                .collect(),
            unsynced: None,
        }
    }

    #[test]
    fn batches_respect_the_datum_limit_and_namespaces() {
        let mut records: Vec<MetricRecord> = (0..200).map(|i| record("A", i, 13)).collect();
        records.push(record("B", 999, 13));
        records.push(record("A", 1000, 13));
        let b = batches(records);
        assert!(b.iter().all(|b| b.datum_count() <= MAX_DATUMS_PER_REQUEST));
        assert_eq!(b.iter().map(Batch::datum_count).sum::<usize>(), 202 * 13);
        // 200 records of 13 datums: 76 per full request (988 datums).
        assert_eq!(b[0].records.len(), 76);
        assert_eq!(
            b.len(),
            5,
            "{:?}",
            b.iter()
                .map(|b| (&b.namespace, b.records.len()))
                .collect::<Vec<_>>()
        );
        assert_eq!(b[3].namespace, "B");
        // Order is kept.
        let ts: Vec<i64> = b
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.timestamp_ms))
            .collect();
        assert_eq!(ts, (0..200).chain([999, 1000]).collect::<Vec<_>>());
    }

    #[test]
    fn dry_run_shape_is_put_metric_data_input() {
        let b = &batches([record("System/Default", 1_700_000_000_000, 1)])[0];
        let j = b.to_json();
        assert_eq!(j["Namespace"], "System/Default");
        let d = &j["MetricData"][0];
        assert_eq!(d["MetricName"], "M0");
        assert_eq!(d["Unit"], "Count");
        assert_eq!(d["Timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(
            d["Dimensions"][0],
            json!({"Name": "InstanceId", "Value": "rpi-1"})
        );
        assert_eq!(b.to_datums().len(), 1);
    }
}
