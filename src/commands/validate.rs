//! `validate`: checks a config as the daemon would, prints it with every default filled in
//! (secrets redacted), and says what its metrics would cost on this machine.

use std::path::Path;

use crate::config;
use crate::error::AppError;
use crate::pipelines::metrics::{preview, AgentLabels, Preview, HOURS_PER_MONTH};
use crate::sources::host_metrics::{Host, METRIC_NAMES};

/// CloudWatch's published first-tier price of one custom metric for a month, in US dollars
/// (the first 10,000 metrics; us-east-1, CloudWatch pricing page, as of 2026).
pub const PRICE_PER_METRIC_MONTH: f64 = 0.30;
/// And of 1,000 API requests (PutMetricData among them).
pub const PRICE_PER_1000_REQUESTS: f64 = 0.01;

pub async fn run(path: &Path) -> Result<(), AppError> {
    let config = config::load(path)?;
    // Warnings (such as a placeholder instance id) go to stderr; validate writes no files.
    crate::logging::init(None, false, true).map_err(AppError::Io)?;
    for w in &config.warnings {
        tracing::warn!("{}: {}: {}", path.display(), w.path, w.message);
    }
    let id = crate::instance::resolve_for(&config).await?;
    let text =
        serde_json::to_string_pretty(&config.effective_json()).expect("JSON values serialize");
    println!("{text}");
    let estimate = {
        let (config, id) = (config.clone(), id.to_string());
        tokio::task::spawn_blocking(move || estimate(&config, &id))
            .await
            .expect("sampling does not panic")
    };
    eprintln!("{}: valid; instance id {id}", path.display());
    eprintln!("{}", cost_line(&estimate));
    Ok(())
}

/// What the metrics of `config` make on this machine (blocking: takes a reading).
fn estimate(config: &config::Config, id: &str) -> Preview {
    let host_name = sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into());
    if let Some(labels) = AgentLabels::for_config(config, id, host_name) {
        if let Some(p) = preview(config, &labels, &Host::from_env()) {
            return p;
        }
    }
    // The original metrics: one record of at most 13 a round, sent at once.
    let interval = config.agent.metrics_collection_interval.as_secs_f64();
    let rounds = HOURS_PER_MONTH * 3600.0 / interval;
    Preview {
        metrics: METRIC_NAMES.len(),
        datums_per_month: METRIC_NAMES.len() as f64 * rounds,
        requests_per_month: rounds,
    }
}

/// The monthly cost of `p` per device and per 100 devices.
pub fn cost_line(p: &Preview) -> String {
    let per_device = p.metrics as f64 * PRICE_PER_METRIC_MONTH
        + p.requests_per_month / 1000.0 * PRICE_PER_1000_REQUESTS;
    format!(
        "metrics: {} distinct metrics (name and dimensions) on this machine, about {} values \
         in {} PutMetricData requests a month: about ${per_device:.2} a month per device, \
         ${:.2} per 100 devices (at ${PRICE_PER_METRIC_MONTH:.2} per metric and \
         ${PRICE_PER_1000_REQUESTS:.2} per 1,000 requests, CloudWatch's first-tier prices; free \
         tier not counted)",
        p.metrics,
        thousands(p.datums_per_month),
        thousands(p.requests_per_month),
        per_device * 100.0
    )
}

/// A whole number with thousands separators: 183960.0 → "183,960".
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_of_the_original_metrics_every_five_minutes() {
        let p = Preview {
            metrics: 13,
            datums_per_month: 13.0 * 8760.0,
            requests_per_month: 8760.0,
        };
        let line = cost_line(&p);
        // 13 × $0.30 + 8.76 × $0.01
        assert!(line.contains("13 distinct metrics"), "{line}");
        assert!(
            line.contains("about 113,880 values in 8,760 PutMetricData"),
            "{line}"
        );
        assert!(
            line.contains("about $3.99 a month per device, $398.76 per 100 devices"),
            "{line}"
        );
    }
}
