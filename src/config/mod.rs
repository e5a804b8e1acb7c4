//! The publisher's configuration: what the JSON file says, checked into the types the program
//! runs on. [`load`] reads and checks a file and reports every problem at once.

mod check;
mod emf;
mod journald;
mod listen;
mod metrics;
mod names;
mod render;
mod statsd;
mod unified_log;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;

use crate::secret::Secret;
use crate::sources::host_metrics::SectionConfig;

pub use listen::{Listen, Transport};
pub use metrics::INSTANCE_ID_PLACEHOLDER;
pub use names::{
    check_instance_id, check_log_group, check_log_stream, check_region, LOG_STREAM_MAX_CHARS,
    RETENTION_DAYS,
};

pub const DEFAULT_CONFIG_PATH: &str =
    "/opt/aws/amazon-cloudwatch-publisher/etc/amazon-cloudwatch-publisher.json";
pub const DEFAULT_LOGFILE: &str =
    "/opt/aws/amazon-cloudwatch-publisher/logs/amazon-cloudwatch-publisher.log";
pub const DEFAULT_STATE_DIR: &str = "/opt/aws/amazon-cloudwatch-publisher/state";
pub const DEFAULT_NAMESPACE: &str = "System/Default";
pub const DEFAULT_LOG_GROUP: &str = "/system/default/{instance_id}";
pub const DEFAULT_INSTANCE_PREFIX: &str = "sys";
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_LOGS_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_INSTANCE_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SPOOL_MAX_MIB: u64 = 32;
/// How long samples and events wait for the system clock to be synchronized before they go
/// out with its time as it is.
pub const DEFAULT_CLOCK_SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// Intervals above a day are a mistake (seconds taken for milliseconds, say), not a wish.
pub const MAX_INTERVAL_SECS: u64 = 86_400;

/// The checked configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, for messages.
    pub source: PathBuf,
    /// Things in the file that are left out, each naming its key: logged at start.
    pub warnings: Vec<Problem>,
    pub agent: Agent,
    pub metrics: Metrics,
    pub logs: Logs,
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub instance: InstanceSpec,
    pub authentication: Option<Authentication>,
    pub region: Option<String>,
    pub metrics_collection_interval: Duration,
    pub logs_collection_interval: Duration,
    pub logfile: PathBuf,
    pub debug: bool,
    /// Also log to the system log.
    pub syslog: bool,
    /// No `host` dimension on the agent's metrics.
    pub omit_hostname: bool,
    pub state_dir: PathBuf,
    /// Largest size of the metrics spool on disk, in bytes.
    pub metrics_spool_max_bytes: u64,
    /// `agent.credentials.role_arn`: the role metrics and logs are sent as, unless their own
    /// section names another.
    pub role_arn: Option<String>,
    /// `agent.proxy`: every AWS call goes through it (instead of what the environment says).
    pub proxy: Option<Proxy>,
    /// `agent.clock_sync_timeout`: how long data waits for the clock to be synchronized (zero:
    /// not at all).
    pub clock_sync_timeout: Duration,
}

/// An HTTP(S) proxy, from `agent.proxy` (`http://user:password@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `scheme://host:port`, without credentials: safe to show.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Hosts reached directly, in NO_PROXY's form (`localhost,.internal,10.0.0.0/8`).
    pub no_proxy: Option<String>,
}

impl Proxy {
    /// Reads a proxy URL; its user and password, if any, are kept apart from it.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let bad = |why: &str| {
            Err(format!(
                "{why}; expected a URL such as \"http://proxy.example.com:3128\" or \"http://user:password@proxy:3128\""
            ))
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad("has no scheme");
        };
        if scheme != "http" && scheme != "https" {
            return bad("must start with http:// or https://");
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, host) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return bad("has no host, or a path after it");
        }
        if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
            if port.parse::<u16>().is_err() {
                return bad("has a port that is not a number");
            }
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (Some(user.to_owned()), Some(Secret::new(pw))),
                None => (Some(u.to_owned()), None),
            },
        };
        Ok(Proxy {
            url: format!("{scheme}://{host}"),
            user,
            password,
            no_proxy: None,
        })
    }
}

/// How the instance id is formed: `prefix-serial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub prefix: String,
    pub serial: Option<String>,
    pub command: Option<String>,
    pub command_timeout: Duration,
}

/// Cognito sign-in for this device.
#[derive(Debug, Clone)]
pub struct Authentication {
    pub account_id: String,
    pub user_pool_id: String,
    pub identity_pool_id: String,
    pub app_client_id: String,
    pub password: Secret,
}

impl Authentication {
    /// The region a user pool lives in is the part of its id before the underscore.
    pub fn user_pool_region(&self) -> &str {
        self.user_pool_id.split('_').next().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub namespace: String,
    /// CloudWatch's endpoint, instead of the region's (a VPC or FIPS endpoint).
    pub endpoint_override: Option<String>,
    /// A role assumed (with STS) on top of the publisher's credentials to send metrics.
    pub role_arn: Option<String>,
    /// How long metrics may wait to be sent together; `None`: each round at once.
    pub force_flush_interval: Option<Duration>,
    /// The CloudWatch Agent's sections; `None`: the original 13 metrics.
    pub collected: Option<Collected>,
}

/// `metrics.metrics_collected` and the keys that go with it.
#[derive(Debug, Clone)]
pub struct Collected {
    pub sections: Vec<SectionConfig>,
    /// Whether every metric carries `host` (not with `agent.omit_hostname`, nor, as with the
    /// agent, when `append_dimensions` is given).
    pub host_dimension: bool,
    /// Dimensions of every metric; a value may be `${aws:InstanceId}`.
    pub append_dimensions: Vec<(String, String)>,
    /// Each set: the metrics are sent again with only these dimensions.
    pub aggregation_dimensions: Vec<Vec<String>>,
    /// `statsd`: metrics received from the machine's own programs.
    pub statsd: Option<Statsd>,
}

/// `metrics_collected.statsd`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statsd {
    pub listen: Listen,
    /// How often what was received is summed up into one value per metric.
    pub collection_interval: Duration,
    /// How long one data point covers (the collections in it become one statistic set);
    /// `None` (the agent's 0): each collection is a data point.
    pub aggregation_interval: Option<Duration>,
    /// Sizes the UDP receive buffer (see the README).
    pub allowed_pending_messages: usize,
    /// What the dots of a metric's name become (the agent's `_` unless set).
    pub metric_separator: String,
}

#[derive(Debug, Clone)]
pub struct Logs {
    /// Template; may contain `{instance_id}` and `{hostname}`.
    pub log_group_name: String,
    /// Stream of entries that name none (files: else their file's name).
    pub log_stream_name: Option<String>,
    /// PutLogEvents requests in flight over all sources; `None`: the publisher's default.
    pub concurrency: Option<usize>,
    /// CloudWatch Logs' URL instead of the region's.
    pub endpoint_override: Option<String>,
    /// A role assumed (with STS) on top of the publisher's credentials to send logs.
    pub role_arn: Option<String>,
    /// Bytes of log lines read and not yet delivered, over all files.
    pub memory_budget_bytes: u32,
    pub retention_in_days: Option<u32>,
    pub force_flush_interval: Option<Duration>,
    pub files: Vec<FileSource>,
    /// `logs_collected.journal`, then each `logs_collected.journald` entry.
    pub journals: Vec<JournalSource>,
    /// `logs_collected.unified_log`'s entries (macOS), read unless `collect` is false.
    pub unified_logs: Vec<UnifiedLogSource>,
    /// `metrics_collected.emf`: embedded metric format documents received on a local port.
    pub emf: Option<Emf>,
}

/// `logs.metrics_collected.emf`.
#[derive(Debug, Clone, PartialEq)]
pub struct Emf {
    pub listen: Vec<Listen>,
    /// Where a document that names no log group goes (a template); else `logs.log_group_name`.
    pub log_group_name: Option<String>,
    /// The stream of a document that names none (a template); else `logs.log_stream_name`,
    /// else the instance id.
    pub log_stream_name: Option<String>,
    /// The log groups a document may name besides the default ones (globs); a document that
    /// names another goes to the default destination.
    pub log_group_names: Vec<glob::Pattern>,
}

#[derive(Debug, Clone)]
pub struct FileSource {
    pub file_path: String,
    pub log_group_name: Option<String>,
    pub log_stream_name: Option<String>,
    pub retention_in_days: Option<u32>,
    pub filters: Filters,
    pub from_beginning: bool,
    /// Where a line's own time is, and in which zone; without it, the time it was read.
    pub timestamp: Option<crate::sources::files::timestamp::TimestampFormat>,
    /// Leave the time found out of the event's text.
    pub trim_timestamp: bool,
    /// How the file's bytes are text.
    pub encoding: crate::sources::files::Encoding,
    /// `INFREQUENT_ACCESS` for a group created so; `None`: CloudWatch's standard class.
    pub log_group_class: Option<String>,
    /// Files of a pattern whose base name matches this are not followed.
    pub blacklist: Option<Regex>,
    /// `multi_line_start_pattern`: lines are put together into events.
    /// Remove a rotated file once every line of it is delivered (never the active file).
    pub auto_removal: bool,
    /// Each line is an embedded metric format document: sent so that CloudWatch extracts its
    /// metrics, stamped with its `_aws.Timestamp`, and checked (an invalid one is said once).
    pub emf: bool,
    pub multi_line_start: Option<crate::sources::files::multiline::StartPattern>,
}

#[derive(Debug, Clone)]
pub struct JournalSource {
    /// Which position in the state file is this reader's: `None` for `journal`, the log group
    /// and stream for a `journald` entry.
    pub key: crate::sources::JournalKey,
    /// The log group; `None`: `logs.log_group_name`.
    pub log_group_name: Option<String>,
    pub log_stream_name: String,
    pub retention_in_days: Option<u32>,
    pub filters: Filters,
    pub units: Vec<String>,
    pub priority: Option<String>,
    /// Each a set of journal FIELD=VALUE matches that must all hold; any set will do.
    pub matches: Vec<Vec<(String, String)>>,
}

/// One reader of macOS's unified log (`log stream`).
#[derive(Debug, Clone)]
pub struct UnifiedLogSource {
    /// Its position's key in the state file: its log group and stream, as written.
    pub key: std::sync::Arc<str>,
    pub log_group_name: String,
    pub log_stream_name: String,
    pub retention_in_days: Option<u32>,
    pub filters: Filters,
    /// Passed to `log` as it is.
    pub predicate: Option<String>,
    /// `default`, `info` or `debug`.
    pub level: String,
    /// False: kept in the config (`"collect": false`), not read.
    pub collect: bool,
}

/// Line filters: a line is kept when it matches every include pattern (or there are none) and
/// no exclude pattern.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
}

impl Filters {
    pub fn keeps(&self, line: &str) -> bool {
        self.include.iter().all(|r| r.is_match(line))
            && !self.exclude.iter().any(|r| r.is_match(line))
    }
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path such as `logs.retention_in_days`; empty for the file as a whole.
    pub path: String,
    pub message: String,
}

/// Why a config could not be used. Displays one line per problem, each naming the file.
#[derive(Debug)]
pub enum ConfigError {
    Missing {
        path: PathBuf,
    },
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { path } => write!(
                f,
                "{}: config file not found. Create it (examples are in the configs/ folder of the \
                 project, e.g. configs/linux.json), or give the path of an existing one: \
                 amazon-cloudwatch-publisher validate PATH",
                path.display()
            ),
            ConfigError::Read { path, source } => {
                write!(f, "{}: cannot read: {source}", path.display())
            }
            ConfigError::Syntax {
                path,
                line,
                column,
                message,
            } => {
                write!(
                    f,
                    "{}:{line}:{column}: invalid JSON: {message}",
                    path.display()
                )
            }
            ConfigError::Invalid { path, problems } => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    let message = one_line(&p.message);
                    if p.path.is_empty() {
                        write!(f, "{}: {message}", path.display())?;
                    } else {
                        write!(f, "{}: {}: {message}", path.display(), one_line(&p.path))?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// `text` with line breaks and other control characters escaped (`\n`): a problem quoting a
/// key, a placeholder or a token from the file still takes one line.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing {
                path: path.to_owned(),
            })
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(path, &text)
}

/// Checks config text; `path` is only used in messages and as [`Config::source`].
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    check::check(path, &value).map_err(|problems| ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

/// serde_json appends " at line L column C"; we print the position in front instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl Config {
    /// The effective configuration as JSON, every default filled in and secrets redacted.
    pub fn effective_json(&self) -> serde_json::Value {
        render::effective(self)
    }
}
