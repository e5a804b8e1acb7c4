//! The metric event that flows from the host-metrics source to the CloudWatch sink and the
//! spool: one sample of the host, with the namespace and dimensions it is published under.

use serde::{Deserialize, Serialize};

/// CloudWatch's units for the values we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Percent,
    Count,
    Bytes,
    #[serde(rename = "Bytes/Second")]
    BytesPerSecond,
    #[serde(rename = "Count/Second")]
    CountPerSecond,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Percent => "Percent",
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::BytesPerSecond => "Bytes/Second",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

/// One named value of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub unit: Unit,
    pub value: f64,
}

/// What the host-metrics source produces: values taken at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, when the values were read.
    pub timestamp_ms: i64,
    pub values: Vec<Measurement>,
}

/// A sample ready to publish: what CloudWatch needs to store it, and what the spool keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub namespace: String,
    pub dimensions: Vec<(String, String)>,
    pub timestamp_ms: i64,
    /// 1 for high resolution (sub-minute intervals), 60 for standard.
    pub storage_resolution: i32,
    pub values: Vec<Measurement>,
}

impl MetricRecord {
    pub fn datum_count(&self) -> usize {
        self.values.len()
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
