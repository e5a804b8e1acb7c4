//! Publishes metric records with PutMetricData, or prints the requests for `--dry-run`.

mod request;
mod retry;
mod spool;

use std::io::Write;

pub use request::{batches, Batch, MAX_DATUMS_PER_REQUEST};
pub use retry::Disposition;
pub use spool::{Spool, SpoolError};

/// Where metric requests go.
#[derive(Debug, Clone)]
pub enum MetricsSink {
    CloudWatch(aws_sdk_cloudwatch::Client),
    /// `--dry-run`: one JSON object per request on standard output.
    Stdout,
}

/// A request CloudWatch did not accept.
#[derive(Debug, thiserror::Error)]
#[error("PutMetricData failed: {message}")]
pub struct SendError {
    pub disposition: Disposition,
    pub message: String,
}

impl MetricsSink {
    pub async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        match self {
            MetricsSink::Stdout => {
                let line = batch.to_json().to_string();
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .map_err(|e| SendError {
                        disposition: Disposition::Retry,
                        message: format!("cannot write to standard output: {e}"),
                    })
            }
            MetricsSink::CloudWatch(client) => client
                .put_metric_data()
                .namespace(&batch.namespace)
                .set_metric_data(Some(batch.to_datums()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| SendError {
                    disposition: retry::classify(&e),
                    message: crate::aws::describe(&e),
                }),
        }
    }
}
