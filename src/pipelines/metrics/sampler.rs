//! What the metrics pipeline samples and when: the original 13 metrics every interval, or each
//! of the agent's sections on its own interval, labelled into records ready to publish.

use std::time::{Duration, Instant};

use crate::config::{self, Collected};
use crate::metric::{now_ms, MetricRecord};
use crate::sources::host_metrics::{self, Collector, HostMetrics, SectionConfig, Series};

use super::labels::{AgentLabels, Labels};

/// A section, its collector and when it is due next.
pub struct Scheduled {
    config: SectionConfig,
    collector: Box<dyn Collector>,
    next: Instant,
}

pub enum Sampler {
    /// The 13 metrics the publisher has always sent, as one record a round.
    Original {
        metrics: Box<HostMetrics>,
        labels: Labels,
        interval: Duration,
        next: Instant,
    },
    /// The agent's `metrics_collected` sections.
    Agent {
        host: host_metrics::Host,
        sections: Vec<Scheduled>,
        // Boxed: the variants stay close in size on every platform (a Mutex is larger on macOS).
        labels: Box<AgentLabels>,
    },
}

impl Sampler {
    /// The original metrics, first sampled at `first`.
    pub fn original(
        metrics: HostMetrics,
        labels: Labels,
        interval: Duration,
        first: Instant,
    ) -> Sampler {
        Sampler::Original {
            metrics: Box::new(metrics),
            labels,
            interval,
            next: first,
        }
    }

    /// The agent's sections, each taking its baseline reading now (blocking) and first sampled
    /// at `first`.
    pub fn agent(
        collected: &Collected,
        host: host_metrics::Host,
        labels: AgentLabels,
        first: Instant,
    ) -> Sampler {
        let sections = collected
            .sections
            .iter()
            .map(|config| {
                let section = host_metrics::section(config.section).expect("checked section");
                let mut collector = (section.new)(config);
                collector.collect(&host, &mut Vec::new());
                Scheduled {
                    config: config.clone(),
                    collector,
                    next: first,
                }
            })
            .collect();
        Sampler::Agent {
            host,
            sections,
            labels: Box::new(labels),
        }
    }

    /// When the next sample is due.
    pub fn next_due(&self) -> Instant {
        match self {
            Sampler::Original { next, .. } => *next,
            Sampler::Agent { sections, .. } => sections
                .iter()
                .map(|s| s.next)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        }
    }

    /// Samples what is due at `now` (blocking) and returns it labelled.
    pub fn sample_due(&mut self, now: Instant) -> Vec<MetricRecord> {
        match self {
            Sampler::Original {
                metrics,
                labels,
                interval,
                next,
            } => {
                if now < *next {
                    return Vec::new();
                }
                *next = later(*next, *interval, now);
                let sample = metrics.sample();
                vec![MetricRecord {
                    namespace: labels.namespace.clone(),
                    dimensions: labels.dimensions.clone(),
                    timestamp_ms: sample.timestamp_ms,
                    storage_resolution: labels.storage_resolution,
                    values: sample.values,
                    unsynced: None,
                }]
            }
            Sampler::Agent {
                host,
                sections,
                labels,
            } => {
                let mut records = Vec::new();
                let mut series = Vec::new();
                for s in sections.iter_mut().filter(|s| s.next <= now) {
                    s.next = later(s.next, s.config.interval, now);
                    series.clear();
                    s.collector.collect(host, &mut series);
                    records.extend(labels.records(&s.config, &series, now_ms(), false));
                }
                records
            }
        }
    }
}

/// The next time after `due`, `interval` on; after a stall, an interval from `now`.
fn later(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next < now {
        now + interval
    } else {
        next
    }
}

/// What a config publishes on this machine, for `validate`: the distinct metrics (name and
/// dimensions) and how many values a month that makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub metrics: usize,
    pub datums_per_month: f64,
    pub requests_per_month: f64,
}

/// Hours in a month, as AWS prices by the month.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Takes one reading of every section (blocking) and counts what it would publish.
pub fn preview(
    config: &config::Config,
    labels: &AgentLabels,
    host: &host_metrics::Host,
) -> Option<Preview> {
    let collected = config.metrics.collected.as_ref()?;
    let month = HOURS_PER_MONTH * 3600.0;
    let mut names = std::collections::BTreeSet::new();
    let mut datums_per_month = 0.0;
    let mut shortest = f64::MAX;
    for c in &collected.sections {
        let section = host_metrics::section(c.section).expect("checked section");
        let mut collector = (section.new)(c);
        let mut series: Vec<Series> = Vec::new();
        collector.collect(host, &mut series);
        if series.is_empty() {
            // A collector whose first reading is only a baseline (the summary).
            collector.collect(host, &mut series);
        }
        let records = labels.records(c, &series, now_ms(), true);
        let interval = c.interval.as_secs_f64();
        shortest = shortest.min(interval);
        for r in &records {
            datums_per_month += r.values.len() as f64 * month / interval;
            for v in &r.values {
                names.insert((v.name.clone(), r.dimensions.clone()));
            }
        }
    }
    let flush = config
        .metrics
        .force_flush_interval
        .map_or(shortest, |f| f.as_secs_f64().max(shortest));
    let requests_per_month = if names.is_empty() {
        0.0
    } else {
        (month / flush)
            .max(datums_per_month / crate::sinks::cloudwatch_metrics::MAX_DATUMS_PER_REQUEST as f64)
    };
    Some(Preview {
        metrics: names.len(),
        datums_per_month,
        requests_per_month,
    })
}
