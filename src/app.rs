//! The daemon: config → instance id → credentials → pipelines → shutdown.

/// After SIGTERM, in-flight requests get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// However a stop goes (clients that keep sending, CloudWatch answering slowly, a hung
/// mount), the process ends this long after it was asked to: within systemd's stop timeout
/// (`TimeoutStopSec=30`) and launchd's (`ExitTimeOut` 30), with the positions saved.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checkpoint::Checkpoints;
use crate::config::{self, Config};
use crate::error::AppError;
use crate::pipelines::logs::{LogsPipeline, Shutdown, EMF_BUDGET_SHARE};
use crate::pipelines::metrics::{
    storage_resolution, AgentLabels, Labels, MetricsPipeline, Sampler, WARMUP,
};
use crate::service::{Health, Notifier, Status};
use crate::sinks::cloudwatch_logs::budget::Budget;
use crate::sinks::cloudwatch_logs::{CloudWatchLogs, LogsSink, Stats};
use crate::sinks::cloudwatch_metrics::{MetricsSink, Spool};
use crate::sources::host_metrics::{Host, HostMetrics};
use crate::sources::statsd::{self, StatsdSource};
use crate::status::{LogStatus, MetricsStatus, StatusFile};

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

/// The metrics part of the status file.
fn metrics_status(namespace: &str, status: &Status, spool_dir: &Path) -> MetricsStatus {
    let ok = status
        .metrics_ok_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let (mut requests, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(spool_dir).into_iter().flatten().flatten() {
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                requests += 1;
                bytes += meta.len();
            }
        }
    }
    MetricsStatus {
        namespace: namespace.to_owned(),
        last_accepted_ms: (ok > 0).then_some(ok as i64),
        error: Status::get(&status.metrics_error),
        spooled_requests: requests,
        spooled_bytes: bytes,
    }
}

/// Each log stream's part of the status file; a file's distance from its end is read now.
fn logs_status(stats: &Stats, checkpoints: &Checkpoints) -> Vec<LogStatus> {
    let streams = stats
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    streams
        .into_values()
        .map(|s| LogStatus {
            behind_bytes: s.file.as_deref().and_then(|f| {
                let len = std::fs::metadata(f).ok()?.len();
                Some(len.saturating_sub(checkpoints.file_offset(f).unwrap_or(0)))
            }),
            source: s.source,
            group: s.group,
            stream: s.stream,
            events: s.events,
            newest_event_ms: s.newest_event_ms,
            delivered_ms: s.delivered_ms,
            error: s.error,
            error_ms: s.error_ms,
            parked_until_ms: s.parked_until_ms,
        })
        .collect()
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

/// How often metrics are sampled, for the status line: the shortest section interval.
fn metrics_interval(config: &Config) -> Duration {
    match &config.metrics.collected {
        Some(c) => c
            .sections
            .iter()
            .map(|s| s.interval)
            .min()
            .unwrap_or(config.agent.metrics_collection_interval),
        None => config.agent.metrics_collection_interval,
    }
}

/// What the metrics pipeline samples: the agent's sections, or the original 13 metrics.
/// Blocking (takes the first readings).
fn make_sampler(config: &Config, id: &str, host_name: String) -> Result<Sampler, AppError> {
    let first = std::time::Instant::now() + WARMUP;
    if let (Some(collected), Some(labels)) = (
        &config.metrics.collected,
        AgentLabels::for_config(config, id, host_name.clone()),
    ) {
        return Ok(Sampler::agent(collected, Host::from_env(), labels, first));
    }
    let interval = config.agent.metrics_collection_interval;
    let labels = Labels {
        namespace: config.metrics.namespace.clone(),
        dimensions: vec![
            ("InstanceId".into(), id.to_owned()),
            ("Hostname".into(), host_name),
        ],
        storage_resolution: storage_resolution(interval),
    };
    Ok(Sampler::original(
        HostMetrics::new()?,
        labels,
        interval,
        first,
    ))
}

/// Binds the StatsD socket (a port in use is an error at start, not a silent loss).
fn start_statsd(
    config: &Config,
    st: &crate::config::Statsd,
    id: &str,
    host_name: &str,
) -> Result<(StatsdSource, statsd::Bound), AppError> {
    let socket = statsd::Bound::bind(st.listen, st.allowed_pending_messages).map_err(|e| {
        AppError::Listen {
            what: "StatsD",
            listen: st.listen.to_string(),
            source: e,
        }
    })?;
    let dimensions = AgentLabels::for_config(config, id, host_name.to_owned())
        .map(|l| l.common_dimensions())
        .unwrap_or_default();
    let asked = st.allowed_pending_messages * statsd::BYTES_PER_MESSAGE;
    if let Some(got) = socket.receive_buffer().filter(|&got| got < asked) {
        tracing::warn!(
            receive_buffer = got,
            asked,
            "The kernel gave the StatsD socket a smaller receive buffer than allowed_pending_messages asks for (net.core.rmem_max caps it); raise that sysctl if datagrams are dropped."
        );
    }
    let point = st.aggregation_interval.unwrap_or(st.collection_interval);
    tracing::info!(
        listen = %st.listen,
        receive_buffer = socket.receive_buffer().unwrap_or_default(),
        collection_s = st.collection_interval.as_secs(),
        aggregation_s = st.aggregation_interval.map_or(0, |a| a.as_secs()),
        "Receiving StatsD metrics."
    );
    Ok((
        StatsdSource {
            config: st.clone(),
            publish: statsd::Publish {
                namespace: config.metrics.namespace.clone(),
                dimensions,
                storage_resolution: storage_resolution(point),
            },
        },
        socket,
    ))
}

/// Runs the publisher until SIGTERM (or, with `once`, for one round).
pub async fn daemon(
    path: &Path,
    once: bool,
    dry_run: bool,
    detached: bool,
) -> Result<(), AppError> {
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
    if !once && !dry_run {
        crate::clock::get().wait(agent.clock_sync_timeout);
    }
    for w in &config.warnings {
        tracing::warn!(config = %path.display(), key = %w.path, "{}", w.message);
    }
    let id = crate::instance::resolve_for(&config).await?;
    if agent.authentication.is_some() {
        warn_if_others_can_read(path);
    }

    let (sink, logs_sink, region, credentials) = if dry_run {
        (
            MetricsSink::Stdout,
            LogsSink::Stdout(Arc::new(Stats::default())),
            String::new(),
            String::new(),
        )
    } else {
        let sdk = crate::aws::sdk_config(
            agent.region.as_deref(),
            agent.authentication.as_ref(),
            &id,
            agent.proxy.as_ref(),
        )
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
        if let Some(proxy) = crate::aws::proxy_in_use(agent.proxy.as_ref()) {
            tracing::info!(%proxy, "AWS calls go through a proxy.");
        }
        // Each section acts as its role, if it names one; one provider serves a role both share.
        let mut roles: Vec<(&str, aws_config::SdkConfig)> = Vec::new();
        for arn in [&config.metrics.role_arn, &config.logs.role_arn]
            .into_iter()
            .flatten()
        {
            if !roles.iter().any(|(a, _)| a == arn) {
                tracing::info!(role_arn = %arn, "Assuming a role to publish.");
                roles.push((arn, crate::aws::assume_role(&sdk, arn, &id).await));
            }
        }
        let acting = |role: &Option<String>| match role {
            Some(arn) => {
                &roles
                    .iter()
                    .find(|(a, _)| a == arn)
                    .expect("assumed above")
                    .1
            }
            None => &sdk,
        };
        let metrics_sdk = acting(&config.metrics.role_arn);
        let logs_sdk = acting(&config.logs.role_arn);
        (
            MetricsSink::CloudWatch(aws_sdk_cloudwatch::Client::from_conf(
                match &config.metrics.endpoint_override {
                    Some(url) => aws_sdk_cloudwatch::config::Builder::from(metrics_sdk)
                        .endpoint_url(url)
                        .build(),
                    None => aws_sdk_cloudwatch::config::Builder::from(metrics_sdk).build(),
                },
            )),
            LogsSink::CloudWatch(Arc::new(CloudWatchLogs::with_concurrency(
                aws_sdk_cloudwatchlogs::Client::from_conf(match &config.logs.endpoint_override {
                    Some(url) => aws_sdk_cloudwatchlogs::config::Builder::from(logs_sdk)
                        .endpoint_url(url)
                        .build(),
                    None => aws_sdk_cloudwatchlogs::config::Builder::from(logs_sdk).build(),
                }),
                config
                    .logs
                    .concurrency
                    .unwrap_or(crate::sinks::cloudwatch_logs::REQUESTS_IN_FLIGHT),
            ))),
            region.to_string(),
            how.to_owned(),
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
    let interval = metrics_interval(&config);
    let sampler = {
        let (config, id, host_name) = (config.clone(), id.to_string(), hostname());
        tokio::task::spawn_blocking(move || make_sampler(&config, &id, host_name))
            .await
            .expect("sampler setup does not panic")?
    };
    let health = Arc::new(Health::default());
    let status = Arc::new(Status::default());
    let statsd = match config
        .metrics
        .collected
        .as_ref()
        .and_then(|c| c.statsd.as_ref())
    {
        Some(st) if !once => Some(start_statsd(&config, st, &id.to_string(), &hostname())?),
        Some(_) => {
            tracing::info!("StatsD is not received with --once.");
            None
        }
        None => None,
    };
    let (statsd_tx, statsd_rx) = match statsd.is_some() {
        true => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    // Fired SHUTDOWN_GRACE after a stop: requests still in flight then end (log lines stay on
    // disk behind their positions, metrics go to the spool).
    let abort = CancellationToken::new();
    let shutdown = CancellationToken::new();
    // The backstop: past the deadline, what is delivered is saved and the process ends; the
    // rest is on disk behind the saved positions (or in the spool).
    tokio::spawn({
        let (stop, checkpoints) = (shutdown.clone(), Arc::clone(&checkpoints));
        async move {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_DEADLINE).await;
            tracing::error!(
                deadline_s = SHUTDOWN_DEADLINE.as_secs(),
                "Stopping took longer than it may; ending now. What was not delivered stays on disk behind the saved positions."
            );
            let save = tokio::task::spawn_blocking(move || checkpoints.save());
            let _ = tokio::time::timeout(Duration::from_secs(5), save).await;
            std::process::exit(1);
        }
    });
    let pipeline = MetricsPipeline {
        inbound: statsd_rx,
        heartbeat: health.register("metrics"),
        status: Arc::clone(&status),
        sampler: Arc::new(Mutex::new(sampler)),
        force_flush_interval: config.metrics.force_flush_interval,
        sink,
        spool,
        once,
        abort: abort.clone(),
        spool_failing: false,
        spool_dropping: false,
    };

    let signals = crate::signal::spawn(shutdown.clone()).map_err(AppError::Io)?;
    let tracker = TaskTracker::new();

    // Logs: after SIGTERM readers stop and what they read is still delivered, for at most
    // SHUTDOWN_GRACE; then delivery stops too and the saved positions stay before the rest.
    tokio::spawn({
        let (stop, abort) = (shutdown.clone(), abort.clone());
        async move {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            abort.cancel();
        }
    });
    let logs_tracker = TaskTracker::new();
    // The embedded metric format's buffers have a share of the memory budget of their own, so
    // local senders can never take the room of the files and the journal.
    let emf_share = if config.logs.emf.is_some() && !once {
        config.logs.memory_budget_bytes / EMF_BUDGET_SHARE
    } else {
        0
    };
    let logs = LogsPipeline {
        config: Arc::new(config.clone()),
        instance_id: id.to_string(),
        hostname: hostname(),
        sink: logs_sink.clone(),
        checkpoints: Arc::clone(&checkpoints),
        once,
        health: Arc::clone(&health),
        budget: Budget::new(config.logs.memory_budget_bytes - emf_share),
        emf_budget: Budget::new(emf_share),
        emf: match &config.logs.emf {
            Some(e) if !once => Some(crate::sources::emf::EmfReceiver::bind(&e.listen).map_err(
                |(listen, source)| AppError::Listen {
                    what: "embedded metric format documents",
                    listen: listen.to_string(),
                    source,
                },
            )?),
            Some(_) => {
                tracing::info!("Embedded metric format documents are not received with --once.");
                None
            }
            None => None,
        },
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

    if let (Some((source, socket)), Some(tx)) = (statsd, statsd_tx) {
        tracker.spawn(source.run(socket, tx, shutdown.child_token()));
    }
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
    if !once {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(crate::memory::STARTUP_CODE_AFTER) => {}
                _ = stop.cancelled() => return,
            }
            let bytes = crate::memory::drop_startup_code();
            tracing::debug!(
                bytes,
                "Unmapped the code start-up ran; what runs again is mapped back."
            );
        });
    }
    let status_writer = (!once && !dry_run).then(|| {
        let place = crate::status::place(&config.agent.state_dir);
        let snapshot = {
            let started_ms = crate::clock::wall_ms();
            let (id, namespace) = (id.to_string(), config.metrics.namespace.clone());
            let (status, logs_sink, checkpoints) = (
                Arc::clone(&status),
                logs_sink.clone(),
                Arc::clone(&checkpoints),
            );
            let spool_dir = config.agent.state_dir.join("metrics-spool");
            let summary = summary.clone();
            move || StatusFile {
                started_ms,
                instance_id: id.clone(),
                region: region.clone(),
                credentials: credentials.clone(),
                line: summary(),
                metrics: metrics_status(&namespace, &status, &spool_dir),
                logs: logs_status(logs_sink.stats(), &checkpoints),
                ..StatusFile::new()
            }
        };
        tokio::spawn(crate::status::run_writer(place, snapshot, shutdown.clone()))
    });
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
    if let Some(writer) = status_writer {
        // Its last round may wait on a file of a mount that hangs: not for long.
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
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
