//! Puts the pieces together: config → instance id → credentials → pipelines → shutdown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::cli::{Args, Command};
use crate::config::{self, Config, ConfigError};
use crate::instance::{self, InstanceError, InstanceId, Origin};
use crate::logs::{LogsPipeline, Shutdown};
use crate::pipeline::{Labels, MetricsPipeline};
use crate::service::{Health, Notifier, Status};
use crate::sinks::cloudwatch_logs::{CloudWatchLogs, LogsSink, Stats};
use crate::sinks::cloudwatch_metrics::{MetricsSink, Spool, SpoolError};
use crate::sources::host_metrics::HostMetrics;

/// sysexits.h codes, so a service manager can tell a bad config (don't restart) from trouble.
pub const EX_SOFTWARE: u8 = 70;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_CONFIG: u8 = 78;

/// After SIGTERM, in-flight requests get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{path}: {source}", path = .path.display())]
    Instance {
        path: PathBuf,
        source: InstanceError,
    },
    #[error("{path}: {message}", path = .path.display())]
    Setting { path: PathBuf, message: String },
    #[error("{0} (agent.state_dir must be a writable directory)")]
    Spool(#[from] SpoolError),
    #[error("{0} (agent.state_dir must be a writable directory)")]
    State(#[from] CheckpointError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    HostMetrics(#[from] crate::sources::host_metrics::HostMetricsError),
    #[error("not everything was accepted by CloudWatch; what was not is kept in the spool")]
    NotAccepted,
    #[cfg(feature = "provision")]
    #[error("{0}")]
    Provision(#[from] crate::provision::ProvisionError),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Instance { .. } | AppError::Setting { .. } => EX_CONFIG,
            AppError::Spool(_) | AppError::State(_) | AppError::Io(_) => EX_CANTCREAT,
            AppError::HostMetrics(_) => EX_SOFTWARE,
            AppError::NotAccepted => EX_TEMPFAIL,
            #[cfg(feature = "provision")]
            AppError::Provision(e) => e.exit_code(),
        }
    }
}

/// Runs what the command line asks for.
pub async fn run(args: Args) -> Result<(), AppError> {
    match args.command {
        Some(Command::Validate { config }) => validate(&config).await,
        #[cfg(feature = "configure")]
        Some(Command::Configure { config, answers }) => {
            crate::configure::run(&config, answers.as_ref()).await
        }
        #[cfg(feature = "provision")]
        Some(Command::Provision(args)) => {
            crate::logging::init(None, false, true).map_err(AppError::Io)?;
            Ok(crate::provision::run(&args).await?)
        }
        None => daemon(&args.config, args.once, args.dry_run, args.daemon).await,
    }
}

async fn validate(path: &Path) -> Result<(), AppError> {
    let config = config::load(path)?;
    // Warnings (such as a placeholder instance id) go to stderr; validate writes no files.
    crate::logging::init(None, false, true).map_err(AppError::Io)?;
    let id = resolve_instance(&config).await?;
    let text =
        serde_json::to_string_pretty(&config.effective_json()).expect("JSON values serialize");
    println!("{text}");
    eprintln!("{}: valid; instance id {id}", path.display());
    Ok(())
}

pub(crate) async fn resolve_instance(config: &Config) -> Result<InstanceId, AppError> {
    let (id, origin) = instance::resolve(&config.agent.instance)
        .await
        .map_err(|source| AppError::Instance {
            path: config.source.clone(),
            source,
        })?;
    if origin == Origin::Placeholder {
        tracing::warn!(
            instance_id = %id,
            "No agent.instance serial or command is configured; using a placeholder id that is fine for trying things out but not for production."
        );
    }
    // Names built from the id must still be valid CloudWatch names.
    let groups = std::iter::once((
        "logs.log_group_name".to_owned(),
        &config.logs.log_group_name,
    ))
    .chain(config.logs.files.iter().enumerate().filter_map(|(i, f)| {
        let key = format!("logs.logs_collected.files.collect_list[{i}].log_group_name");
        f.log_group_name.as_ref().map(|g| (key, g))
    }));
    for (key, template) in groups {
        let group = template
            .replace("{instance_id}", id.as_str())
            .replace("{hostname}", "x");
        if let Err(e) = config::check_log_group(&group) {
            return Err(AppError::Setting {
                path: config.source.clone(),
                message: format!("{key}: with instance id {id} it becomes {group:?}, which {e}"),
            });
        }
    }
    Ok(id)
}

/// One line for the service manager: what is published, and what is failing if anything.
fn status_line(
    id: &str,
    namespace: &str,
    interval: Duration,
    logs: bool,
    status: &Status,
    log_stats: &Stats,
) -> String {
    let mut line = format!("{id}: metrics to {namespace} every {}s", interval.as_secs());
    let ok = status
        .metrics_ok_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    match Status::get(&status.metrics_error) {
        Some(e) => line.push_str(&format!(" (not accepted: {e})")),
        None if ok > 0 => line.push_str(" (accepted)"),
        None => {}
    }
    if logs {
        line.push_str(&format!(
            "; {} log events delivered",
            Stats::get(&log_stats.delivered)
        ));
        if let Some(e) = log_stats
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            line.push_str(&format!(" (retrying: {e})"));
        }
    }
    // A status line is one line, and short.
    let mut line: String = line.replace('\n', " ").chars().take(400).collect();
    line.truncate(line.trim_end().len());
    line
}

/// A config holding a password should be readable by its owner only, as ssh insists for keys.
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                config = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "The config holds the Cognito password but other users can read it; restrict it with chmod 600."
            );
        }
    }
}

fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into())
}

async fn daemon(path: &Path, once: bool, dry_run: bool, detached: bool) -> Result<(), AppError> {
    let config = config::load(path)?;
    let agent = &config.agent;
    crate::logging::init_with_syslog(
        (!dry_run).then_some(agent.logfile.as_path()),
        agent.debug,
        dry_run,
        agent.syslog || detached,
    )
    .map_err(AppError::Io)?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), dry_run, once, "Starting.");
    let id = resolve_instance(&config).await?;
    if agent.authentication.is_some() {
        warn_if_others_can_read(path);
    }

    let (sink, logs_sink) = if dry_run {
        (
            MetricsSink::Stdout,
            LogsSink::Stdout(Arc::new(Stats::default())),
        )
    } else {
        let sdk =
            crate::aws::sdk_config(agent.region.as_deref(), agent.authentication.as_ref(), &id)
                .await;
        let Some(region) = sdk.region() else {
            return Err(AppError::Setting {
                path: config.source.clone(),
                message:
                    "no AWS region: set agent.region, or AWS_REGION, or a region in the AWS profile"
                        .into(),
            });
        };
        let how = if agent.authentication.is_some() {
            "Cognito user"
        } else {
            "default AWS credential chain"
        };
        tracing::info!(instance_id = %id, region = %region, credentials = how, "Publishing as this instance.");
        (
            MetricsSink::CloudWatch(aws_sdk_cloudwatch::Client::new(&sdk)),
            LogsSink::CloudWatch(Arc::new(CloudWatchLogs::new(
                aws_sdk_cloudwatchlogs::Client::new(&sdk),
            ))),
        )
    };
    let checkpoints = if dry_run {
        Checkpoints::in_memory()
    } else {
        let dir = agent.state_dir.clone();
        tokio::task::spawn_blocking(move || Checkpoints::load(&dir))
            .await
            .expect("loading log positions does not panic")?
    };
    let checkpoints = Arc::new(checkpoints);
    let spool = if dry_run {
        None
    } else {
        let dir = agent.state_dir.join("metrics-spool");
        let max = agent.metrics_spool_max_bytes;
        let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, max))
            .await
            .expect("spool open does not panic")?;
        if !spool.is_empty() {
            tracing::info!(
                requests = spool.len(),
                "Metrics from an earlier run are waiting in the spool."
            );
        }
        Some(spool)
    };
    let source = tokio::task::spawn_blocking(HostMetrics::new)
        .await
        .expect("sampler setup does not panic")?;
    let interval = agent.metrics_collection_interval;
    let health = Arc::new(Health::default());
    let status = Arc::new(Status::default());
    let pipeline = MetricsPipeline {
        heartbeat: health.register("metrics"),
        status: Arc::clone(&status),
        source: Arc::new(Mutex::new(source)),
        labels: Labels {
            namespace: config.metrics.namespace.clone(),
            dimensions: vec![
                ("InstanceId".into(), id.to_string()),
                ("Hostname".into(), hostname()),
            ],
            storage_resolution: if interval < Duration::from_secs(60) {
                1
            } else {
                60
            },
        },
        sink,
        spool,
        interval,
        once,
        shutdown_grace: SHUTDOWN_GRACE,
    };

    let shutdown = CancellationToken::new();
    let signals = crate::signal::spawn(shutdown.clone()).map_err(AppError::Io)?;
    let tracker = TaskTracker::new();

    // Logs: after SIGTERM readers stop and what they read is still delivered, for at most
    // SHUTDOWN_GRACE; then delivery stops too and the saved positions stay before the rest.
    let abort = CancellationToken::new();
    tokio::spawn({
        let (stop, abort) = (shutdown.clone(), abort.clone());
        async move {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            abort.cancel();
        }
    });
    let logs_tracker = TaskTracker::new();
    let logs = LogsPipeline {
        config: Arc::new(config.clone()),
        instance_id: id.to_string(),
        hostname: hostname(),
        sink: logs_sink.clone(),
        checkpoints: Arc::clone(&checkpoints),
        once,
        health: Arc::clone(&health),
    };
    let shipping_logs = logs
        .start(
            &logs_tracker,
            Shutdown {
                stop: shutdown.child_token(),
                abort: abort.clone(),
            },
        )
        .await;
    logs_tracker.close();
    let saver_stop = CancellationToken::new();
    let saver = tracker.spawn(Arc::clone(&checkpoints).run_saver(saver_stop.clone()));

    let metrics = tracker.spawn(pipeline.run(shutdown.child_token()));
    tracker.close();

    // Ready once the config is good and the pipelines run; credentials and network come later
    // and show in the status line.
    let notifier = Notifier::from_env();
    let summary = {
        let namespace = config.metrics.namespace.clone();
        let id = id.to_string();
        let (status, logs_sink) = (Arc::clone(&status), logs_sink.clone());
        move || {
            status_line(
                &id,
                &namespace,
                interval,
                shipping_logs,
                &status,
                logs_sink.stats(),
            )
        }
    };
    notifier.ready(&summary());
    let supervisor =
        tokio::spawn(notifier.supervise(Arc::clone(&health), summary, shutdown.clone()));
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            notifier.stopping();
        }
    });
    let report = metrics.await.expect("metrics pipeline does not panic");
    if once {
        // What is not delivered by then stays on disk for the next run.
        let abort = abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            abort.cancel();
        });
    }
    logs_tracker.wait().await;
    saver_stop.cancel();
    let _ = saver.await;
    shutdown.cancel();
    tracker.wait().await;
    let _ = signals.await;
    let _ = supervisor.await;
    let stats = logs_sink.stats();
    let undelivered = Stats::get(&stats.undelivered);
    tracing::info!(
        rounds = report.rounds,
        accepted = report.datums_accepted,
        dropped = report.datums_dropped,
        spooled_requests = report.segments_spooled,
        log_events = Stats::get(&stats.delivered),
        log_events_refused = Stats::get(&stats.refused),
        log_events_outside_window =
            Stats::get(&stats.too_old) + Stats::get(&stats.too_new) + Stats::get(&stats.expired),
        log_batches_left_on_disk = undelivered,
        logs = shipping_logs,
        "Stopped."
    );
    if once && !(report.last_round_accepted && report.segments_spooled == 0 && undelivered == 0) {
        return Err(AppError::NotAccepted);
    }
    Ok(())
}
