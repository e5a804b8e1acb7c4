//! Log lines to the system log (facility daemon), for systems without a service manager that
//! collects standard error: with `agent.syslog`, and always when detached with `--daemon`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Names the socket to log to instead of the system's (`/dev/log`); tests listen on their own.
pub const SOCKET_ENV: &str = "CLOUDWATCH_PUBLISHER_SYSLOG_SOCKET";

type Logger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

pub struct SyslogLayer {
    logger: Mutex<Logger>,
}

impl SyslogLayer {
    pub fn connect() -> Result<Self, String> {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "amazon-cloudwatch-publisher".into(),
            pid: std::process::id(),
        };
        let logger = match std::env::var_os(SOCKET_ENV) {
            Some(path) => syslog::unix_custom(formatter, PathBuf::from(path)),
            None => syslog::unix(formatter),
        }
        .map_err(|e| format!("cannot connect to the system log: {e}"))?;
        Ok(SyslogLayer {
            logger: Mutex::new(logger),
        })
    }
}

/// The event's message, then its fields as `key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!("{}{}", line.message, line.fields);
        let mut logger = self.logger.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match *event.metadata().level() {
            Level::ERROR => logger.err(text),
            Level::WARN => logger.warning(text),
            Level::INFO => logger.info(text),
            _ => logger.debug(text),
        };
    }
}
