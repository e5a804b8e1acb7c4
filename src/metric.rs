//! The metric event that flows from the host-metrics source to the CloudWatch sink and the
//! spool: one sample of the host, with the namespace and dimensions it is published under.

use serde::{Deserialize, Serialize};

/// CloudWatch's standard units (`StandardUnit`), as PutMetricData names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Seconds,
    Microseconds,
    Milliseconds,
    Bytes,
    Kilobytes,
    Megabytes,
    Gigabytes,
    Terabytes,
    Bits,
    Kilobits,
    Megabits,
    Gigabits,
    Terabits,
    Percent,
    Count,
    #[serde(rename = "Bytes/Second")]
    BytesPerSecond,
    #[serde(rename = "Kilobytes/Second")]
    KilobytesPerSecond,
    #[serde(rename = "Megabytes/Second")]
    MegabytesPerSecond,
    #[serde(rename = "Gigabytes/Second")]
    GigabytesPerSecond,
    #[serde(rename = "Terabytes/Second")]
    TerabytesPerSecond,
    #[serde(rename = "Bits/Second")]
    BitsPerSecond,
    #[serde(rename = "Kilobits/Second")]
    KilobitsPerSecond,
    #[serde(rename = "Megabits/Second")]
    MegabitsPerSecond,
    #[serde(rename = "Gigabits/Second")]
    GigabitsPerSecond,
    #[serde(rename = "Terabits/Second")]
    TerabitsPerSecond,
    #[serde(rename = "Count/Second")]
    CountPerSecond,
    None,
}

impl Unit {
    pub const ALL: [Unit; 27] = [
        Unit::Seconds,
        Unit::Microseconds,
        Unit::Milliseconds,
        Unit::Bytes,
        Unit::Kilobytes,
        Unit::Megabytes,
        Unit::Gigabytes,
        Unit::Terabytes,
        Unit::Bits,
        Unit::Kilobits,
        Unit::Megabits,
        Unit::Gigabits,
        Unit::Terabits,
        Unit::Percent,
        Unit::Count,
        Unit::BytesPerSecond,
        Unit::KilobytesPerSecond,
        Unit::MegabytesPerSecond,
        Unit::GigabytesPerSecond,
        Unit::TerabytesPerSecond,
        Unit::BitsPerSecond,
        Unit::KilobitsPerSecond,
        Unit::MegabitsPerSecond,
        Unit::GigabitsPerSecond,
        Unit::TerabitsPerSecond,
        Unit::CountPerSecond,
        Unit::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Microseconds => "Microseconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::Kilobytes => "Kilobytes",
            Unit::Megabytes => "Megabytes",
            Unit::Gigabytes => "Gigabytes",
            Unit::Terabytes => "Terabytes",
            Unit::Bits => "Bits",
            Unit::Kilobits => "Kilobits",
            Unit::Megabits => "Megabits",
            Unit::Gigabits => "Gigabits",
            Unit::Terabits => "Terabits",
            Unit::Percent => "Percent",
            Unit::Count => "Count",
            Unit::BytesPerSecond => "Bytes/Second",
            Unit::KilobytesPerSecond => "Kilobytes/Second",
            Unit::MegabytesPerSecond => "Megabytes/Second",
            Unit::GigabytesPerSecond => "Gigabytes/Second",
            Unit::TerabytesPerSecond => "Terabytes/Second",
            Unit::BitsPerSecond => "Bits/Second",
            Unit::KilobitsPerSecond => "Kilobits/Second",
            Unit::MegabitsPerSecond => "Megabits/Second",
            Unit::GigabitsPerSecond => "Gigabits/Second",
            Unit::TerabitsPerSecond => "Terabits/Second",
            Unit::CountPerSecond => "Count/Second",
            Unit::None => "None",
        }
    }

    /// The unit CloudWatch calls `name` (as PutMetricData spells it).
    pub fn parse(name: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.as_str() == name)
    }
}

/// One named value of a sample: a single value, or many summarized (StatsD's rounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub unit: Unit,
    /// The value; with a summary, the sum of what it summarizes.
    pub value: f64,
    /// Many values, sent as a statistic set or as values and their counts instead of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

impl Measurement {
    /// Why CloudWatch would refuse this measurement's numbers, if it would.
    pub fn refused_value(&self) -> Option<String> {
        let bad = |what: &str, v: f64| {
            (!accepted_value(v)).then(|| format!("{what} {v} is outside what CloudWatch takes"))
        };
        match &self.summary {
            None => bad("the value", self.value),
            Some(Summary::Statistics {
                count,
                sum,
                min,
                max,
            }) => bad("the sample count", *count)
                .or_else(|| bad("the sum", *sum))
                .or_else(|| bad("the minimum", *min))
                .or_else(|| bad("the maximum", *max)),
            Some(Summary::Distribution { values, counts }) => values
                .iter()
                .find_map(|v| bad("a value", *v))
                .or_else(|| counts.iter().find_map(|c| bad("a count", *c))),
        }
    }

    /// A single value.
    pub fn single(name: impl Into<String>, unit: Unit, value: f64) -> Measurement {
        Measurement {
            name: name.into(),
            unit,
            value,
            summary: None,
        }
    }
}

/// Values summarized before they are sent, as PutMetricData takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Summary {
    /// `StatisticValues`: how many, their sum, least and greatest.
    Statistics {
        count: f64,
        sum: f64,
        min: f64,
        max: f64,
    },
    /// `Values` and `Counts`: each distinct value with how often it came, so CloudWatch can
    /// compute percentiles. At most [`MAX_DISTINCT_VALUES`] of them.
    Distribution { values: Vec<f64>, counts: Vec<f64> },
}

/// CloudWatch takes no value further from 0 than 2^360...
pub const MAX_VALUE: f64 = 2.348_542_582_773_833_2e108;
/// ...and none but 0 closer to it than 2^-260: the CloudWatch Agent's bound, narrower than
/// the 2^-360 CloudWatch documents, so what the agent would send is sent.
pub const MIN_VALUE: f64 = 5.397_605_346_934_028e-79;

/// Whether CloudWatch takes `v` as a metric value: no NaN, no infinity, within its range.
pub fn accepted_value(v: f64) -> bool {
    v == 0.0 || (MIN_VALUE..=MAX_VALUE).contains(&v.abs())
}

/// PutMetricData takes at most 150 distinct values in one datum's `Values`.
pub const MAX_DISTINCT_VALUES: usize = 150;

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
    /// Stamped while the system clock was not synchronized: restamped once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsynced: Option<crate::clock::Unsynced>,
}

impl MetricRecord {
    pub fn datum_count(&self) -> usize {
        self.values.len()
    }

    /// Puts a time stamped on an unsynchronized clock right, once the clock is synchronized
    /// (see [`crate::clock`]).
    pub fn restamp(&mut self, now: &crate::clock::Reading) {
        if let Some(shift) = self.unsynced.as_ref().and_then(|u| u.shift(now)) {
            self.timestamp_ms += shift;
            self.unsynced = None;
        }
    }
}

/// Milliseconds since the Unix epoch, now, by the wall clock (see [`crate::clock`]).
pub fn now_ms() -> i64 {
    crate::clock::wall_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cloudwatch_takes() {
        assert_eq!(MAX_VALUE, 2f64.powi(360));
        assert_eq!(MIN_VALUE, 2f64.powi(-260));
        for v in [
            0.0, -0.0, 1.0, -1e100, MAX_VALUE, -MAX_VALUE, MIN_VALUE, 1e-70,
        ] {
            assert!(accepted_value(v), "{v}");
        }
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e200,
            -1e109,
            1e-200,
            -1e-80,
            f64::MIN_POSITIVE,
        ] {
            assert!(!accepted_value(v), "{v}");
        }
        let stats = Measurement {
            summary: Some(Summary::Statistics {
                count: 2.0,
                sum: f64::INFINITY,
                min: 1.0,
                max: 1.0,
            }),
            ..Measurement::single("m", Unit::Count, 0.0)
        };
        assert!(stats.refused_value().unwrap().contains("sum"));
        assert_eq!(
            Measurement::single("m", Unit::Count, 3.0).refused_value(),
            None
        );
    }
}
