//! What StatsD lines add up to: per metric (its name, type and tags), each collection interval
//! one value, and each aggregation interval one data point.
//!
//! As the CloudWatch Agent does, within a collection interval a counter is the sum of its
//! increments (each scaled up by its sample rate), a gauge its last value, a set the number of
//! distinct members, and timers, histograms and distributions every value received. An
//! aggregation interval's collections become one data point: a statistic set (how many
//! collections, their sum, least and greatest) for counters, gauges and sets, and for timings
//! the values with their counts, so CloudWatch computes percentiles over all of them.
//!
//! Memory is bounded, as whatever local program sends is: per aggregation interval at most
//! [`MAX_SERIES`] metrics and [`MAX_BYTES`] of names, tags, set members and timing values
//! (new ones past either are refused); a metric keeps the tags CloudWatch's dimensions leave
//! room for; a set at most [`MAX_MEMBERS`] members a collection interval; a timing at most
//! [`MAX_DISTINCT`] distinct values (past that to three significant digits, then two, then
//! one); and at most [`MAX_GAUGES`] gauges' last values are kept across intervals. What is
//! refused or cut is counted, for the listener to tell of.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::parse::{Kind, Metric, Value};
use crate::metric::{
    accepted_value, Measurement, MetricRecord, Summary, Unit, MAX_DISTINCT_VALUES,
};

/// Metrics (name, type and tags) kept per aggregation interval.
pub const MAX_SERIES: usize = 10_000;
/// Distinct values of one timing kept exactly per aggregation interval.
pub const MAX_DISTINCT: usize = 10_000;
/// Distinct members of one set kept per collection interval.
pub const MAX_MEMBERS: usize = 10_000;
/// Bytes one aggregation interval's metrics may hold: names and tags, set members and
/// timings' values, with what keeping each costs (an estimate, on the high side). [`MAX_SERIES`] metrics with three short tags (about 700 bytes
/// each) fit, or 200,000 distinct timing values; past that is a flood of long names, tags or
/// values, not a host's metrics, and the publisher's memory matters more.
pub const MAX_BYTES: usize = 8 << 20;
/// Gauges whose last values are kept across aggregation intervals.
pub const MAX_GAUGES: usize = 10_000;
/// CloudWatch's limits.
const MAX_DIMENSIONS: usize = 30;
const MAX_NAME: usize = 255;
const MAX_DIMENSION_VALUE: usize = 1024;

/// What every record is published under.
#[derive(Debug, Clone)]
pub struct Publish {
    pub namespace: String,
    /// Dimensions of every metric (`host`, `metrics.append_dimensions`).
    pub dimensions: Vec<(String, String)>,
    /// 1 below a 60 s data point, else 60.
    pub storage_resolution: i32,
}

/// Why a line that parsed was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Too many metrics in this aggregation interval.
    TooManySeries,
    /// A new member of a set that has [`MAX_MEMBERS`] this collection interval.
    TooManyMembers,
    /// A new metric, set member or timing value past [`MAX_BYTES`] this interval.
    Full,
    /// Not something CloudWatch takes: the reason.
    Invalid(String),
}

#[derive(Debug)]
struct Series {
    name: String,
    kind: Kind,
    tags: Vec<(String, String)>,
    /// This collection's value.
    now: Now,
    /// The collections so far in this aggregation interval.
    window: Window,
}

#[derive(Debug)]
enum Now {
    Nothing,
    Number(f64),
    Members(HashSet<u64>),
}

#[derive(Debug)]
enum Window {
    Nothing,
    Stats {
        count: f64,
        sum: f64,
        min: f64,
        max: f64,
    },
    /// Value (its bits) → how often it came; values are kept to `digits` significant digits,
    /// or exactly.
    Values {
        counts: HashMap<u64, f64>,
        digits: Option<u32>,
    },
}

/// The metrics received in this aggregation interval.
#[derive(Debug)]
pub struct Aggregator {
    series: HashMap<u64, Vec<Series>>,
    len: usize,
    /// What `series` holds, as [`MAX_BYTES`] counts it.
    bytes: usize,
    /// Gauges' last values, kept across intervals so that `+N`/`-N` apply to them.
    gauges: HashMap<u64, Gauge>,
    /// Aggregation intervals ended so far.
    intervals: u64,
    separator: Option<String>,
    publish: Publish,
    /// Tags a metric may keep: CloudWatch's dimensions less `publish`'s and `metric_type`.
    tag_room: usize,
    trimmed: Trimmed,
}

/// A gauge's last value, and the aggregation interval it was set in.
#[derive(Debug, Clone, Copy)]
struct Gauge {
    value: f64,
    set: u64,
}

/// What was left out to stay within bounds while the values were kept, since last asked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trimmed {
    /// Values whose tags were cut to [`Aggregator::tag_room`].
    pub tags: u64,
    /// Timings kept to fewer than three significant digits, to stay within [`MAX_DISTINCT`].
    pub timings: u64,
    /// Gauges' last values forgotten, to keep [`MAX_GAUGES`].
    pub gauges: u64,
}

fn key(name: &str, kind: Kind, tags: &[(&str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    (name, kind, tags).hash(&mut h);
    h.finish()
}

fn same(s: &Series, name: &str, kind: Kind, tags: &[(&str, &str)]) -> bool {
    s.name == name
        && s.kind == kind
        && s.tags.len() == tags.len()
        && s.tags
            .iter()
            .zip(tags)
            .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
}

/// The value a tag without one gets: CloudWatch takes no empty dimension value, and this is
/// the agent's.
pub const TAG_WITHOUT_VALUE: &str = "<empty>";

impl Aggregator {
    /// `separator` replaces the dots of names (the agent's `metric_separator`); `None` keeps
    /// them. Every record is published as `publish` says.
    pub fn new(separator: Option<String>, publish: Publish) -> Aggregator {
        Aggregator {
            series: HashMap::new(),
            len: 0,
            bytes: 0,
            gauges: HashMap::new(),
            intervals: 0,
            separator,
            tag_room: MAX_DIMENSIONS.saturating_sub(publish.dimensions.len() + 1),
            publish,
            trimmed: Trimmed::default(),
        }
    }

    /// The most tags a metric keeps.
    pub fn tag_room(&self) -> usize {
        self.tag_room
    }

    /// What was left out since the last call.
    pub fn take_trimmed(&mut self) -> Trimmed {
        std::mem::take(&mut self.trimmed)
    }

    /// Bytes this interval's metrics hold, as [`MAX_BYTES`] counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Metrics in this aggregation interval.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes one parsed metric into this collection.
    pub fn add(&mut self, m: &Metric) -> Result<(), Refused> {
        // By name; of a name given twice, the last value (as the agent). A tag named as a
        // dimension of every metric would give way to it: it is left out and takes no room.
        let fixed = &self.publish.dimensions;
        let mut tags: Vec<(&str, &str)> = m
            .tags
            .iter()
            .rev()
            .filter(|(k, _)| !fixed.iter().any(|d| d.0 == *k))
            .map(|&(k, v)| (k, if v.is_empty() { TAG_WITHOUT_VALUE } else { v }))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(b.0));
        tags.dedup_by(|later, first| later.0 == first.0);
        // CloudWatch takes 30 dimensions: the tags past what is left keep no memory and make
        // no metric of their own; the first by name stay, as with the agent.
        let cut = tags.len() > self.tag_room;
        tags.truncate(self.tag_room);
        let k = key(m.name, m.kind, &tags);
        let known = self
            .series
            .get(&k)
            .and_then(|b| b.iter().position(|s| same(s, m.name, m.kind, &tags)));
        let index = match known {
            Some(i) => i,
            None => {
                // Checked before anything is kept: a refused metric leaves no trace, so a
                // flood of new names past the bound takes no memory.
                if self.len >= MAX_SERIES {
                    return Err(Refused::TooManySeries);
                }
                check_names(m.name, &tags)?;
                let cost = series_bytes(m.name, &tags);
                if self.bytes + cost > MAX_BYTES {
                    return Err(Refused::Full);
                }
                let bucket = self.series.entry(k).or_default();
                // Room for this one only: a bucket nearly always holds one series, and a
                // first push would make room for four.
                bucket.reserve_exact(1);
                bucket.push(Series {
                    name: m.name.to_owned(),
                    kind: m.kind,
                    tags: tags
                        .iter()
                        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    now: Now::Nothing,
                    window: Window::Nothing,
                });
                self.len += 1;
                self.bytes += cost;
                bucket.len() - 1
            }
        };
        if cut {
            self.trimmed.tags += 1;
        }
        let s = &mut self.series.get_mut(&k).expect("found or added above")[index];
        // A value scaled or summed past what CloudWatch takes is refused, and what was there
        // before it stays.
        let out_of_range = |what: &str, v: f64| {
            Refused::Invalid(format!(
                "the {what} would be {v:e}, outside what CloudWatch takes"
            ))
        };
        match (m.kind, m.value) {
            (Kind::Counter, Value::Number(n)) => {
                let add = n / m.sample_rate;
                let total = match s.now {
                    Now::Number(x) => x + add,
                    _ => add,
                };
                if !accepted_value(add) || !accepted_value(total) {
                    return Err(out_of_range("counter", total));
                }
                s.now = Now::Number(total);
            }
            (Kind::Gauge, Value::Number(n)) => {
                let set = self.intervals;
                self.gauges.insert(k, Gauge { value: n, set });
                s.now = Now::Number(n);
            }
            (Kind::Gauge, Value::Delta(d)) => {
                let g = self.gauges.entry(k).or_insert(Gauge { value: 0.0, set: 0 });
                if !accepted_value(g.value + d) {
                    return Err(out_of_range("gauge", g.value + d));
                }
                g.value += d;
                g.set = self.intervals;
                s.now = Now::Number(g.value);
            }
            (Kind::Set, v) => {
                let mut h = DefaultHasher::new();
                match v {
                    Value::Member(text) => text.hash(&mut h),
                    Value::Number(n) | Value::Delta(n) => n.to_bits().hash(&mut h),
                }
                let member = h.finish();
                match &mut s.now {
                    Now::Members(m) if m.contains(&member) => {}
                    // A set whose members are ids (a client per request) would grow without
                    // end; past the bound it counts no more members, and says so.
                    Now::Members(m) if m.len() >= MAX_MEMBERS => {
                        return Err(Refused::TooManyMembers)
                    }
                    _ if self.bytes + MEMBER_BYTES > MAX_BYTES => return Err(Refused::Full),
                    Now::Members(m) => {
                        m.insert(member);
                        self.bytes += MEMBER_BYTES;
                    }
                    now => {
                        *now = Now::Members(HashSet::from([member]));
                        self.bytes += MEMBER_BYTES;
                    }
                }
            }
            (Kind::Timer | Kind::Histogram | Kind::Distribution, Value::Number(n)) => {
                let times = 1.0 / m.sample_rate;
                if !accepted_value(times) {
                    return Err(out_of_range("count a sample rate makes", times));
                }
                if let Window::Nothing = s.window {
                    s.window = Window::Values {
                        counts: HashMap::new(),
                        digits: None,
                    };
                }
                if let Window::Values { counts, digits } = &mut s.window {
                    let mut bits = value_bits(n, *digits);
                    // A new value past the bound: every value to three significant digits,
                    // then two, then one. CloudWatch's values are about 3,400 to one digit
                    // (±1 to 9 times 10^-79 to 10^108), fewer than the bound, so a timing's
                    // memory is bounded and no value is dropped; only precision is lost, and
                    // below three digits that is said.
                    while counts.len() >= MAX_DISTINCT
                        && *digits != Some(1)
                        && !counts.contains_key(&bits)
                    {
                        let fewer = digits.map_or(3, |d| d - 1);
                        let before = counts.len();
                        for (old, c) in std::mem::take(counts) {
                            *counts
                                .entry(value_bits(f64::from_bits(old), Some(fewer)))
                                .or_default() += c;
                        }
                        *digits = Some(fewer);
                        self.bytes -= (before - counts.len()) * VALUE_BYTES;
                        if fewer < 3 {
                            self.trimmed.timings += 1;
                        }
                        bits = value_bits(n, *digits);
                    }
                    match counts.get_mut(&bits) {
                        Some(count) if !accepted_value(*count + times) => {
                            return Err(out_of_range("count of a value", *count + times));
                        }
                        Some(count) => *count += times,
                        None if self.bytes + VALUE_BYTES > MAX_BYTES => return Err(Refused::Full),
                        None => {
                            counts.insert(bits, times);
                            self.bytes += VALUE_BYTES;
                        }
                    }
                }
            }
            (kind, v) => {
                return Err(Refused::Invalid(format!(
                    "a {} takes no value {v:?}",
                    kind_name(kind)
                )))
            }
        }
        Ok(())
    }

    /// Ends a collection interval: each metric's value joins its aggregation interval.
    pub fn collect(&mut self) {
        for s in self.series.values_mut().flatten() {
            let value = match std::mem::replace(&mut s.now, Now::Nothing) {
                Now::Nothing => continue,
                Now::Number(n) => n,
                Now::Members(m) => {
                    self.bytes -= m.len() * MEMBER_BYTES;
                    m.len() as f64
                }
            };
            s.window = match s.window {
                Window::Stats { sum, .. } if !accepted_value(sum + value) => {
                    tracing::warn!(metric = %s.name, sum = %format!("{:e}", sum + value),
                        "Dropped a StatsD collection whose sum over the aggregation interval would be outside what CloudWatch takes.");
                    continue;
                }
                Window::Stats {
                    count,
                    sum,
                    min,
                    max,
                } => Window::Stats {
                    count: count + 1.0,
                    sum: sum + value,
                    min: min.min(value),
                    max: max.max(value),
                },
                _ => Window::Stats {
                    count: 1.0,
                    sum: value,
                    min: value,
                    max: value,
                },
            };
        }
    }

    /// Ends an aggregation interval that began at `timestamp_ms`: one record per metric that
    /// received something, and an empty aggregator. `single`: each collection is its own data
    /// point (no aggregation), so a lone value goes as a value, not a statistic set.
    pub fn take(&mut self, timestamp_ms: i64, single: bool) -> Vec<MetricRecord> {
        self.collect();
        let p = &self.publish;
        let mut out = Vec::with_capacity(self.len);
        for s in std::mem::take(&mut self.series).into_values().flatten() {
            let (unit, metric_type) = describe(s.kind);
            let name = match &self.separator {
                Some(sep) => s.name.replace('.', sep),
                None => s.name,
            };
            let values = match s.window {
                Window::Nothing => continue,
                Window::Stats { count, sum, .. } if single && count == 1.0 => {
                    vec![Measurement::single(name.clone(), unit, sum)]
                }
                Window::Stats {
                    count,
                    sum,
                    min,
                    max,
                } => vec![Measurement {
                    summary: Some(Summary::Statistics {
                        count,
                        sum,
                        min,
                        max,
                    }),
                    ..Measurement::single(name.clone(), unit, sum)
                }],
                Window::Values { counts, .. } => distribution(&name, unit, counts),
            };
            let mut dimensions = p.dimensions.clone();
            for (k, v) in s
                .tags
                .into_iter()
                .chain([("metric_type".into(), metric_type.into())])
            {
                if !dimensions.iter().any(|d| d.0 == k) {
                    dimensions.push((k, v));
                }
            }
            dimensions.truncate(MAX_DIMENSIONS);
            out.push(MetricRecord {
                namespace: p.namespace.clone(),
                dimensions,
                timestamp_ms,
                storage_resolution: p.storage_resolution,
                values,
                unsynced: None,
            });
        }
        self.len = 0;
        self.bytes = 0;
        self.forget_gauges();
        self.intervals += 1;
        // Records in a stable order: by name, then dimensions.
        out.sort_by(|a, b| {
            (&a.values[0].name, &a.dimensions).cmp(&(&b.values[0].name, &b.dimensions))
        });
        out
    }

    /// Forgets the gauges set least recently past [`MAX_GAUGES`]: gauges named by a changing
    /// tag would otherwise be kept for ever. An interval adds at most [`MAX_SERIES`], so
    /// between two ends there are at most the two together.
    fn forget_gauges(&mut self) {
        let Some(excess) = self.gauges.len().checked_sub(MAX_GAUGES).filter(|&n| n > 0) else {
            return;
        };
        let mut by_age: Vec<(u64, u64)> = self.gauges.iter().map(|(&k, g)| (g.set, k)).collect();
        by_age.select_nth_unstable(excess - 1);
        for (_, k) in &by_age[..excess] {
            self.gauges.remove(k);
        }
        self.trimmed.gauges += excess as u64;
    }
}

/// A timing's values and counts, in datums of at most 150 distinct values each.
fn distribution(name: &str, unit: Unit, counts: HashMap<u64, f64>) -> Vec<Measurement> {
    let mut pairs: Vec<(f64, f64)> = counts
        .into_iter()
        .map(|(bits, c)| (f64::from_bits(bits), c))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    pairs
        .chunks(MAX_DISTINCT_VALUES)
        .map(|chunk| {
            let sum = chunk.iter().map(|(v, c)| v * c).sum();
            Measurement {
                summary: Some(Summary::Distribution {
                    values: chunk.iter().map(|p| p.0).collect(),
                    counts: chunk.iter().map(|p| p.1).collect(),
                }),
                ..Measurement::single(name, unit, sum)
            }
        })
        .collect()
}

/// The unit and `metric_type` dimension of a kind of metric.
fn describe(kind: Kind) -> (Unit, &'static str) {
    match kind {
        Kind::Counter => (Unit::Count, "counter"),
        Kind::Gauge => (Unit::None, "gauge"),
        Kind::Timer => (Unit::Milliseconds, "timing"),
        Kind::Histogram => (Unit::None, "histogram"),
        Kind::Distribution => (Unit::None, "distribution"),
        Kind::Set => (Unit::Count, "set"),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    describe(kind).1
}

/// CloudWatch's rules for a metric name and dimensions.
fn check_names(name: &str, tags: &[(&str, &str)]) -> Result<(), Refused> {
    if name.len() > MAX_NAME {
        return Err(Refused::Invalid(format!(
            "the name is {} bytes long; CloudWatch takes at most {MAX_NAME}",
            name.len()
        )));
    }
    if let Some((k, _)) = tags
        .iter()
        .find(|(k, v)| k.len() > MAX_NAME || v.len() > MAX_DIMENSION_VALUE)
    {
        return Err(Refused::Invalid(format!(
            "tag {k:?} is longer than CloudWatch takes (names {MAX_NAME} bytes, values {MAX_DIMENSION_VALUE})"
        )));
    }
    Ok(())
}

/// About what one heap allocation costs beyond the bytes asked for: the allocator's header
/// and rounding.
const ALLOCATION: usize = 16;
/// A table's first allocation: four slots and a group of control bytes.
const FIRST_TABLE: usize = 128;

/// The most an entry of `entry` bytes takes in a table: one that has just doubled is 7/16
/// full, and each slot has a control byte.
const fn in_table(entry: usize) -> usize {
    (entry + 1) * 16 / 7 + 1
}

/// What a set member costs.
const MEMBER_BYTES: usize = in_table(std::mem::size_of::<u64>());
/// What a timing's distinct value costs.
const VALUE_BYTES: usize = in_table(std::mem::size_of::<(u64, f64)>());

/// What a metric costs before its values: its name and tags (each its own allocation), the
/// series, its entry in the interval's table, and the first allocation of a table of set
/// members or timing values.
fn series_bytes(name: &str, tags: &[(&str, &str)]) -> usize {
    let tag = std::mem::size_of::<(String, String)>() + 2 * ALLOCATION;
    std::mem::size_of::<Series>()
        + in_table(std::mem::size_of::<(u64, Vec<Series>)>())
        + FIRST_TABLE
        + 3 * ALLOCATION
        + name.len()
        + tags
            .iter()
            .map(|(k, v)| tag + k.len() + v.len())
            .sum::<usize>()
}

/// The key of a timing's value `v` kept to `digits` significant digits (`None`: exactly).
fn value_bits(v: f64, digits: Option<u32>) -> u64 {
    let v = digits.map_or(v, |d| round(v, d));
    // -0.0 and 0.0 are one value.
    (v + 0.0).to_bits()
}

/// `v` to `digits` significant digits; toward 0 where rounding up would take it past what
/// CloudWatch takes (2^360 is 2.3485...e108).
fn round(v: f64, digits: u32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(digits as i32 - 1 - v.abs().log10().floor() as i32);
    let rounded = (v * scale).round() / scale;
    if accepted_value(rounded) {
        rounded
    } else {
        (v * scale).trunc() / scale
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_line;
    use super::*;
    use crate::metric::MAX_VALUE;

    fn publish() -> Publish {
        Publish {
            namespace: "Own".into(),
            dimensions: vec![("host".into(), "pi".into())],
            storage_resolution: 60,
        }
    }

    fn feed(a: &mut Aggregator, lines: &[&str]) {
        for line in lines {
            let mut out = Vec::new();
            parse_line(line, &mut out).unwrap();
            for m in &out {
                a.add(m).unwrap();
            }
        }
    }

    /// The first metric of `line`, added.
    fn add(a: &mut Aggregator, line: &str) -> Result<(), Refused> {
        let mut out = Vec::new();
        parse_line(line, &mut out).unwrap();
        a.add(&out[0])
    }

    fn find<'r>(records: &'r [MetricRecord], name: &str) -> &'r MetricRecord {
        records
            .iter()
            .find(|r| r.values[0].name == name)
            .unwrap_or_else(|| panic!("no {name} in {records:?}"))
    }

    #[test]
    fn counters_sum_scaled_by_sample_rate_and_collections_become_a_statistic_set() {
        let mut a = Aggregator::new(None, publish());
        feed(&mut a, &["hits:1|c", "hits:2|c|@0.5", "hits:1|c:1|c"]);
        a.collect();
        feed(&mut a, &["hits:10|c"]);
        let r = a.take(60_000, false);
        let hits = find(&r, "hits");
        assert_eq!(
            hits.values[0].summary,
            Some(Summary::Statistics {
                count: 2.0,
                sum: 17.0,
                min: 7.0,
                max: 10.0
            })
        );
        assert_eq!(hits.values[0].unit, Unit::Count);
        assert_eq!(
            hits.dimensions,
            [
                ("host".into(), "pi".into()),
                ("metric_type".into(), "counter".into())
            ]
        );
        assert_eq!(hits.timestamp_ms, 60_000);
        assert!(a.is_empty());
        assert!(a.take(120_000, false).is_empty());
    }

    #[test]
    fn gauges_keep_their_value_for_deltas_and_a_lone_collection_is_a_value() {
        let mut a = Aggregator::new(None, publish());
        feed(&mut a, &["temp:20|g", "temp:+3|g", "temp:-1|g"]);
        let r = a.take(0, true);
        assert_eq!(
            find(&r, "temp").values,
            [Measurement::single("temp", Unit::None, 22.0)]
        );
        feed(&mut a, &["temp:+1|g"]);
        let r = a.take(0, true);
        assert_eq!(find(&r, "temp").values[0].value, 23.0);
    }

    #[test]
    fn at_most_max_gauges_are_kept_across_intervals_the_least_recently_set_forgotten() {
        let mut a = Aggregator::new(None, publish());
        for i in 0..MAX_GAUGES {
            feed(&mut a, &[&format!("g{i}:10|g")]);
        }
        a.take(0, true);
        feed(&mut a, &["g0:+1|g"]);
        for i in 0..10 {
            feed(&mut a, &[&format!("new{i}:5|g")]);
        }
        a.take(0, true);
        assert_eq!(a.gauges.len(), MAX_GAUGES);
        assert_eq!(a.take_trimmed().gauges, 10);
        // Those set last are kept.
        feed(&mut a, &["g0:+1|g", "new9:+1|g"]);
        let r = a.take(0, true);
        assert_eq!(find(&r, "g0").values[0].value, 12.0);
        assert_eq!(find(&r, "new9").values[0].value, 6.0);
    }

    #[test]
    fn timings_are_values_with_counts_and_tags_are_dimensions() {
        let mut a = Aggregator::new(None, publish());
        feed(
            &mut a,
            &[
                "db.query:12|ms|#table:users,primary",
                "db.query:12|ms|@0.25|#primary,table:users",
                "db.query:40|ms|#table:users,primary",
                "db.query:5|ms|#table:orders",
            ],
        );
        let r = a.take(0, false);
        assert_eq!(r.len(), 2);
        let users = r
            .iter()
            .find(|r| r.dimensions.iter().any(|d| d.1 == "users"))
            .unwrap();
        assert_eq!(
            users.values[0].summary,
            Some(Summary::Distribution {
                values: vec![12.0, 40.0],
                counts: vec![5.0, 1.0]
            })
        );
        assert_eq!(users.values[0].unit, Unit::Milliseconds);
        assert_eq!(
            users.dimensions,
            [
                ("host".into(), "pi".into()),
                ("primary".into(), "<empty>".into()),
                ("table".into(), "users".into()),
                ("metric_type".into(), "timing".into())
            ]
        );
    }

    #[test]
    fn many_distinct_timings_go_in_datums_of_150_and_are_rounded_past_the_cap() {
        let mut a = Aggregator::new(None, publish());
        for i in 0..400 {
            feed(&mut a, &[&format!("t:{i}|h")]);
        }
        let r = a.take(0, false);
        let t = find(&r, "t");
        assert_eq!(t.values.len(), 3);
        let total: f64 = t
            .values
            .iter()
            .map(|m| match &m.summary {
                Some(Summary::Distribution { values, counts }) => {
                    assert!(values.len() <= 150);
                    counts.iter().sum::<f64>()
                }
                _ => panic!("not a distribution"),
            })
            .sum();
        assert_eq!(total, 400.0);

        for i in 0..(MAX_DISTINCT + 5000) {
            feed(&mut a, &[&format!("t:{}|ms", 1.0 + i as f64 * 1e-4)]);
        }
        let r = a.take(0, false);
        let t = find(&r, "t");
        let distinct: usize = t
            .values
            .iter()
            .map(|m| match &m.summary {
                Some(Summary::Distribution { values, .. }) => values.len(),
                _ => 0,
            })
            .sum();
        assert!(distinct <= MAX_DISTINCT, "{distinct}");
    }

    #[test]
    fn a_timing_keeps_fewer_digits_rather_than_more_than_max_distinct_values() {
        let mut a = Aggregator::new(None, publish());
        // 67 decades of 900 values of three digits each, either sign: 12,060 of two
        // digits.
        let n = 60_000;
        for i in 0..n {
            let v = (100 + i % 900) as f64 * 10f64.powi(i / 900 - 40);
            feed(
                &mut a,
                &[&format!("spread:{v:e}|ms"), &format!("spread:-{v:e}|ms")],
            );
        }
        let r = a.take(0, false);
        let (mut distinct, mut total) = (0, 0.0);
        for m in &find(&r, "spread").values {
            let Some(Summary::Distribution { values, counts }) = &m.summary else {
                panic!("not a distribution: {m:?}");
            };
            distinct += values.len();
            total += counts.iter().sum::<f64>();
        }
        assert!(distinct <= MAX_DISTINCT, "{distinct}");
        // No value is lost.
        assert_eq!(total, 2.0 * n as f64);
        // To two digits, then one.
        assert_eq!(a.take_trimmed().timings, 2);
    }

    #[test]
    fn dots_become_the_separator_and_a_tag_given_twice_keeps_its_last_value() {
        let mut a = Aggregator::new(Some("_".into()), publish());
        feed(
            &mut a,
            &[
                "app.requests.ok:1|c|#route:a,route:b",
                "app.requests.ok:2|c",
            ],
        );
        let r = a.take(0, true);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.values[0].name == "app_requests_ok"));
        assert!(
            r.iter()
                .any(|r| r.dimensions.contains(&("route".into(), "b".into()))),
            "{r:?}"
        );
    }

    #[test]
    fn tags_past_what_cloudwatchs_dimensions_leave_room_for_are_cut_and_counted() {
        let mut p = publish();
        p.dimensions
            .extend((0..9).map(|i| (format!("fixed{i}"), "x".into())));
        let mut a = Aggregator::new(None, p);
        // 30 dimensions less host, the nine fixed ones and metric_type.
        assert_eq!(a.tag_room(), 19);
        let tags: Vec<String> = (0..40).map(|i| format!("t{i:02}:v")).collect();
        // A tag named as a dimension of every metric is replaced by it and takes no room.
        feed(&mut a, &[&format!("m:1|c|#host:other,{}", tags.join(","))]);
        // The same metric once cut: the same series.
        feed(&mut a, &[&format!("m:2|c|#{},t39:w", tags[..19].join(","))]);
        feed(&mut a, &["few:1|c|#t00:v"]);
        assert_eq!(
            a.take_trimmed(),
            Trimmed {
                tags: 2,
                ..Trimmed::default()
            }
        );
        assert_eq!(a.take_trimmed(), Trimmed::default());
        let r = a.take(0, true);
        assert_eq!(r.len(), 2, "{r:?}");
        let m = find(&r, "m");
        assert_eq!(m.values[0].value, 3.0);
        assert_eq!(m.dimensions.len(), 30);
        assert_eq!(m.dimensions[0], ("host".into(), "pi".into()));
        assert!(m.dimensions.contains(&("t18".into(), "v".into())));
        assert!(!m.dimensions.iter().any(|d| d.0 == "t19"));
        assert_eq!(m.dimensions[29], ("metric_type".into(), "counter".into()));
    }

    #[test]
    fn sets_count_distinct_members() {
        let mut a = Aggregator::new(None, publish());
        feed(&mut a, &["users:alice|s", "users:bob|s", "users:alice|s"]);
        let r = a.take(0, true);
        assert_eq!(find(&r, "users").values[0].value, 2.0);
    }

    #[test]
    fn a_set_keeps_at_most_max_members_a_collection_and_refuses_new_ones_past_it() {
        let mut a = Aggregator::new(None, publish());
        let mut refused = 0;
        for i in 0..MAX_MEMBERS + 10 {
            match add(&mut a, &format!("users:u{i}|s")) {
                Ok(()) => {}
                Err(Refused::TooManyMembers) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 10);
        // A member already counted is still taken.
        assert_eq!(add(&mut a, "users:u0|s"), Ok(()));
        a.collect();
        // The next collection counts anew.
        feed(&mut a, &["users:u0|s"]);
        let r = a.take(0, false);
        assert_eq!(
            find(&r, "users").values[0].summary,
            Some(Summary::Statistics {
                count: 2.0,
                sum: MAX_MEMBERS as f64 + 1.0,
                min: 1.0,
                max: MAX_MEMBERS as f64,
            })
        );
    }

    #[test]
    fn too_many_metrics_are_refused_and_names_cloudwatch_refuses_too() {
        let mut a = Aggregator::new(None, publish());
        for i in 0..MAX_SERIES {
            feed(&mut a, &[&format!("m{i}:1|c")]);
        }
        let mut out = Vec::new();
        parse_line("one.more:1|c", &mut out).unwrap();
        assert_eq!(a.add(&out[0]), Err(Refused::TooManySeries));
        // A known metric still counts.
        out.clear();
        parse_line("m0:1|c", &mut out).unwrap();
        assert_eq!(a.add(&out[0]), Ok(()));

        let long = format!("{}:1|c", "x".repeat(300));
        out.clear();
        parse_line(&long, &mut out).unwrap();
        assert!(matches!(
            Aggregator::new(None, publish()).add(&out[0]),
            Err(Refused::Invalid(_))
        ));
    }

    #[test]
    fn metrics_refused_leave_nothing_behind() {
        let mut a = Aggregator::new(None, publish());
        for i in 0..1000 {
            let long = format!("{}{i}:1|c", "x".repeat(300));
            assert!(matches!(add(&mut a, &long), Err(Refused::Invalid(_))));
        }
        for i in 0..MAX_SERIES {
            feed(&mut a, &[&format!("m{i}:1|c")]);
        }
        for i in 0..1000 {
            assert_eq!(
                add(&mut a, &format!("new{i}:1|c")),
                Err(Refused::TooManySeries)
            );
        }
        assert_eq!(a.series.len(), MAX_SERIES);
    }

    #[test]
    fn an_interval_holds_at_most_max_bytes_of_names_tags_members_and_values() {
        let mut a = Aggregator::new(None, publish());
        feed(&mut a, &["users:u0|s", "t:0|ms"]);
        // Metrics of long names and tags: far fewer than MAX_SERIES fill it.
        let tags: Vec<String> = (0..20)
            .map(|i| format!("{i:0>250}:{}", "v".repeat(1000)))
            .collect();
        let tags = tags.join(",");
        let (mut taken, mut refused) = (0, 0);
        for i in 0..1000 {
            match add(&mut a, &format!("{i:0>250}:1|c|#{tags}")) {
                Ok(()) => taken += 1,
                Err(Refused::Full) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(taken > 0 && refused > 0, "{taken} {refused}");
        assert!(a.bytes() <= MAX_BYTES, "{}", a.bytes());
        assert!(a.bytes() > taken * (250 + 20 * 1250), "{}", a.bytes());
        // A metric kept still counts.
        assert_eq!(add(&mut a, &format!("{:0>250}:1|c|#{tags}", 0)), Ok(()));
        // The room left: new set members and timing values are refused past it, and those
        // known still count.
        for what in ["users:u{}|s", "t:{}|ms"] {
            let mut i = 1;
            while add(&mut a, &what.replace("{}", &i.to_string())) == Ok(()) {
                i += 1;
                assert!(i < 100_000);
            }
            assert_eq!(
                add(&mut a, &what.replace("{}", &i.to_string())),
                Err(Refused::Full)
            );
            assert_eq!(add(&mut a, &what.replace("{}", "0")), Ok(()));
        }
        assert!(a.bytes() <= MAX_BYTES, "{}", a.bytes());
        // A collection's members are let go at its end, and the interval's all at its end.
        let before = a.bytes();
        a.collect();
        assert!(a.bytes() < before);
        a.take(0, false);
        assert_eq!(a.bytes(), 0);
    }

    #[test]
    fn a_value_summed_or_scaled_past_what_cloudwatch_takes_is_refused_and_the_rest_kept() {
        let mut a = Aggregator::new(None, publish());
        let mut refused = 0;
        for line in [
            "c:1e108|c",
            "c:1e108|c",
            "c:1e108|c",
            "scaled:1e100|c|@0.000000001",
            "g:1e108|g",
            "g:+1e108|g",
            "g:+1e108|g",
            "t:1|ms|@1e-300",
        ] {
            let mut out = Vec::new();
            parse_line(line, &mut out).unwrap();
            if matches!(a.add(&out[0]), Err(Refused::Invalid(_))) {
                refused += 1;
            }
        }
        assert_eq!(refused, 4);
        a.collect();
        // The next collection would make the interval's sum too large: it is left out.
        feed(&mut a, &["c:1e108|c"]);
        a.collect();
        let records = a.take(0, false);
        for r in &records {
            for m in &r.values {
                assert_eq!(m.refused_value(), None, "{m:?}");
            }
        }
        assert_eq!(
            find(&records, "c").values[0].summary,
            Some(Summary::Statistics {
                count: 1.0,
                sum: 2e108,
                min: 2e108,
                max: 2e108,
            })
        );
    }

    #[test]
    fn significant_digits() {
        assert_eq!(round(123_456.0, 3), 123_000.0);
        assert_eq!(round(0.012_345, 3), 0.0123);
        assert_eq!(round(-9.876, 3), -9.88);
        assert_eq!(round(-9.876, 2), -9.9);
        assert_eq!(round(-9.876, 1), -10.0);
        assert_eq!(round(0.0, 3), 0.0);
        // Rounded up, the greatest value CloudWatch takes would pass it.
        for digits in 1..=3 {
            assert!(accepted_value(round(MAX_VALUE, digits)));
            assert!(accepted_value(round(-MAX_VALUE, digits)));
        }
    }
}
