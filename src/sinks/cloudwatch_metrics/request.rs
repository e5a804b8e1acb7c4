//! Turns metric records into PutMetricData requests within CloudWatch's limits.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use aws_smithy_types::DateTime;
use serde_json::{json, Value};

use crate::metric::{MetricRecord, Summary};

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
                    let mut d = json!({
                        "MetricName": m.name,
                        "Dimensions": dims,
                        "Timestamp": DateTime::from_millis(r.timestamp_ms)
                            .fmt(aws_smithy_types::date_time::Format::DateTime)
                            .unwrap_or_default(),
                        "Unit": m.unit.as_str(),
                        "StorageResolution": r.storage_resolution,
                    });
                    match &m.summary {
                        None => d["Value"] = json!(m.value),
                        Some(Summary::Statistics {
                            count,
                            sum,
                            min,
                            max,
                        }) => {
                            d["StatisticValues"] = json!({"SampleCount": count, "Sum": sum,
                                "Minimum": min, "Maximum": max});
                        }
                        Some(Summary::Distribution { values, counts }) => {
                            d["Values"] = json!(values);
                            d["Counts"] = json!(counts);
                        }
                    }
                    d
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
                    let datum = MetricDatum::builder()
                        .metric_name(&m.name)
                        .set_dimensions(Some(dims.clone()))
                        .timestamp(DateTime::from_millis(r.timestamp_ms))
                        .unit(StandardUnit::from(m.unit.as_str()))
                        .storage_resolution(r.storage_resolution);
                    match &m.summary {
                        None => datum.value(m.value),
                        Some(Summary::Statistics {
                            count,
                            sum,
                            min,
                            max,
                        }) => datum.statistic_values(
                            StatisticSet::builder()
                                .sample_count(*count)
                                .sum(*sum)
                                .minimum(*min)
                                .maximum(*max)
                                .build(),
                        ),
                        Some(Summary::Distribution { values, counts }) => datum
                            .set_values(Some(values.clone()))
                            .set_counts(Some(counts.clone())),
                    }
                    .build()
                })
            })
            .collect()
    }
}

impl Batch {
    /// Splits the batch into two of about half its datums each (to find the one CloudWatch
    /// refuses); a record of several values is split between them if need be. A batch of one
    /// datum is not split: the second is empty.
    pub fn split(mut self) -> (Batch, Batch) {
        let half = self.datum_count() / 2;
        let mut second = Batch {
            namespace: self.namespace.clone(),
            records: Vec::new(),
        };
        if half == 0 {
            return (self, second);
        }
        let mut kept = 0;
        let mut at = self.records.len();
        for (i, r) in self.records.iter().enumerate() {
            if kept + r.datum_count() > half {
                at = i;
                break;
            }
            kept += r.datum_count();
        }
        second.records = self.records.split_off(at);
        if let Some(r) = second.records.first_mut() {
            let take = half - kept;
            if take > 0 {
                let mut part = r.clone();
                part.values = r.values.drain(..take).collect();
                self.records.push(part);
            }
        }
        (self, second)
    }

    /// The names of its datums, for messages about a refused one.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.records
            .iter()
            .flat_map(|r| r.values.iter().map(|m| m.name.as_str()))
    }
}

/// A generous estimate of one record's share of a request body.
fn estimated_bytes(r: &MetricRecord) -> usize {
    let dims: usize = r
        .dimensions
        .iter()
        .map(|(n, v)| n.len() + v.len() + 16)
        .sum();
    r.values
        .iter()
        .map(|m| {
            let values = match &m.summary {
                Some(Summary::Distribution { values, .. }) => values.len() * 48,
                _ => 0,
            };
            m.name.len() + dims + 64 + values
        })
        .sum()
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

    #[test]
    fn a_batch_splits_into_halves_of_its_datums_down_to_one() {
        let batch = Batch {
            namespace: "N".into(),
            records: vec![record("N", 1, 3), record("N", 2, 4)],
        };
        let (a, b) = batch.clone().split();
        assert_eq!((a.datum_count(), b.datum_count()), (3, 4));
        let (a1, a2) = a.split();
        assert_eq!((a1.datum_count(), a2.datum_count()), (1, 2));
        assert_eq!(a1.records[0].values[0].name, "M0");
        assert_eq!(a2.records[0].values[0].name, "M1");
        assert_eq!(a2.records[0].timestamp_ms, 1);
        let (one, none) = a1.split();
        assert_eq!((one.datum_count(), none.datum_count()), (1, 0));
        // Nothing lost, nothing twice, in order.
        let (x, y) = batch.clone().split();
        let names: Vec<String> = x
            .metric_names()
            .chain(y.metric_names())
            .map(String::from)
            .collect();
        let all: Vec<String> = batch.metric_names().map(String::from).collect();
        assert_eq!(names, all);
    }

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
                .map(|i| Measurement::single(format!("M{i}"), Unit::Count, i as f64))
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

    #[test]
    fn summaries_go_as_statistic_values_or_values_and_counts() {
        let mut r = record("Own", 1_700_000_000_000, 0);
        r.values = vec![
            Measurement {
                summary: Some(Summary::Statistics {
                    count: 3.0,
                    sum: 6.0,
                    min: 1.0,
                    max: 3.0,
                }),
                ..Measurement::single("hits", Unit::Count, 6.0)
            },
            Measurement {
                summary: Some(Summary::Distribution {
                    values: vec![1.5, 20.0],
                    counts: vec![3.0, 1.0],
                }),
                ..Measurement::single("latency", Unit::Milliseconds, 24.5)
            },
        ];
        let b = &batches([r])[0];
        let j = b.to_json();
        let (set, dist) = (&j["MetricData"][0], &j["MetricData"][1]);
        assert_eq!(
            set["StatisticValues"],
            json!({"SampleCount": 3.0, "Sum": 6.0, "Minimum": 1.0, "Maximum": 3.0})
        );
        assert!(set.get("Value").is_none());
        assert_eq!(dist["Values"], json!([1.5, 20.0]));
        assert_eq!(dist["Counts"], json!([3.0, 1.0]));
        assert!(dist.get("Value").is_none());
        let datums = b.to_datums();
        let stats = datums[0].statistic_values().expect("a statistic set");
        assert_eq!((stats.sample_count(), stats.sum()), (Some(3.0), Some(6.0)));
        assert_eq!(datums[0].value(), None);
        assert_eq!(
            (datums[1].values(), datums[1].counts()),
            (&[1.5, 20.0][..], &[3.0, 1.0][..])
        );
    }
}
