//! Works out this machine's instance id, `prefix-serial`, which names it in CloudWatch
//! (the `InstanceId` dimension, the default log group) and in Cognito (the user name).

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::config::{self, check_instance_id, Config, InstanceSpec};
use crate::error::AppError;

/// The serial used when the config says nothing; fine for trying things out, not for a fleet.
pub const PLACEHOLDER_SERIAL: &str = "000000000000";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("agent.instance.command `{command}` could not be started: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("agent.instance.command `{command}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("agent.instance.command `{command}` printed nothing{}", stderr_suffix(.stderr))]
    Empty { command: String, stderr: String },
    #[error("agent.instance.command `{command}` did not finish within {} s", .timeout.as_secs())]
    Timeout { command: String, timeout: Duration },
    #[error("instance id {id:?} {reason}")]
    Invalid { id: String, reason: String },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr: {stderr}")
    }
}

/// How the id was found, so the caller can warn about the placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Serial,
    Command,
    Placeholder,
}

/// Resolves the id: `serial` if given, else the trimmed, lowercased output of `command` run
/// through `sh -c` (as `run_as`, a uid and gid, when given), else the placeholder serial.
pub async fn resolve(
    spec: &InstanceSpec,
    run_as: Option<(u32, u32)>,
) -> Result<(InstanceId, Origin), InstanceError> {
    let (serial, origin) = match (&spec.serial, &spec.command) {
        (Some(serial), _) => (serial.clone(), Origin::Serial),
        (None, Some(command)) => (
            run_command(command, spec.command_timeout, run_as).await?,
            Origin::Command,
        ),
        (None, None) => (PLACEHOLDER_SERIAL.to_owned(), Origin::Placeholder),
    };
    let id = format!("{}-{}", spec.prefix, serial);
    check_instance_id(&id).map_err(|reason| InstanceError::Invalid {
        id: id.clone(),
        reason,
    })?;
    Ok((InstanceId(id), origin))
}

async fn run_command(
    command: &str,
    timeout: Duration,
    run_as: Option<(u32, u32)>,
) -> Result<String, InstanceError> {
    let mut sh = tokio::process::Command::new("/bin/sh");
    if let Some((uid, gid)) = run_as {
        // As root, the standard library also drops the supplementary groups.
        sh.uid(uid).gid(gid);
    }
    let mut child = sh
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| InstanceError::Spawn {
            command: command.into(),
            source,
        })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let run = async {
        // Output beyond 64 KiB cannot be a serial number; cap what we keep.
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = (&mut stdout).take(64 * 1024);
        let mut stderr = (&mut stderr).take(64 * 1024);
        let (r1, r2, status) = tokio::join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait()
        );
        r1.and(r2).and(status.map(|s| (s, out, err)))
    };
    let (status, out, err) = match tokio::time::timeout(timeout, run).await {
        Err(_) => {
            return Err(InstanceError::Timeout {
                command: command.into(),
                timeout,
            })
        }
        Ok(Err(source)) => {
            return Err(InstanceError::Spawn {
                command: command.into(),
                source,
            })
        }
        Ok(Ok(done)) => done,
    };
    let stderr = String::from_utf8_lossy(&err).trim().to_owned();
    if !status.success() {
        return Err(InstanceError::Failed {
            command: command.into(),
            status: status.to_string(),
            stderr,
        });
    }
    let serial = String::from_utf8_lossy(&out).trim().to_lowercase();
    if serial.is_empty() {
        return Err(InstanceError::Empty {
            command: command.into(),
            stderr,
        });
    }
    Ok(serial)
}

/// This machine's instance id for `config`, checked against the names built from it; warns
/// when it is only a placeholder.
pub async fn resolve_for(config: &Config) -> Result<InstanceId, AppError> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&config.source)
        .ok()
        .map(|m| (m.uid(), m.gid()));
    resolve_for_owned(config, owner).await
}

/// [`resolve_for`], with the owner (uid, gid) of the file the config was read from, as the
/// caller found it: run as root, `agent.instance.command` runs as that owner when it is another
/// user. The service user may edit its config, so what it put there is run with its rights,
/// as the publisher itself runs it, and never as root.
pub async fn resolve_for_owned(
    config: &Config,
    owner: Option<(u32, u32)>,
) -> Result<InstanceId, AppError> {
    // SAFETY: geteuid cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    let run_as = owner.filter(|&(uid, _)| as_root && uid != 0);
    let (id, origin) = resolve(&config.agent.instance, run_as)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(serial: Option<&str>, command: Option<&str>) -> InstanceSpec {
        InstanceSpec {
            prefix: "rpi".into(),
            serial: serial.map(Into::into),
            command: command.map(Into::into),
            command_timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn serial_wins_over_command() {
        let (id, origin) = resolve(&spec(Some("abc"), Some("exit 1")), None)
            .await
            .unwrap();
        assert_eq!((id.as_str(), origin), ("rpi-abc", Origin::Serial));
    }

    #[tokio::test]
    async fn command_output_is_trimmed_and_lowercased() {
        let (id, origin) = resolve(&spec(None, Some("printf '  C02V41P2HV2F \\n'")), None)
            .await
            .unwrap();
        assert_eq!((id.as_str(), origin), ("rpi-c02v41p2hv2f", Origin::Command));
    }

    #[tokio::test]
    async fn placeholder_when_nothing_is_given() {
        let (id, origin) = resolve(&spec(None, None), None).await.unwrap();
        assert_eq!(
            (id.as_str(), origin),
            ("rpi-000000000000", Origin::Placeholder)
        );
    }

    #[tokio::test]
    async fn failing_empty_and_hanging_commands_are_errors() {
        let e = resolve(&spec(None, Some("echo no serial here >&2; exit 3")), None)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`echo no serial here >&2; exit 3` failed")
                && text.contains("stderr: no serial here"),
            "{text}"
        );
        let e = resolve(&spec(None, Some("true")), None).await.unwrap_err();
        assert!(matches!(e, InstanceError::Empty { .. }), "{e}");
        let mut slow = spec(None, Some("sleep 30"));
        slow.command_timeout = Duration::from_millis(200);
        let e = resolve(&slow, None).await.unwrap_err();
        assert!(e.to_string().contains("did not finish within"), "{e}");
    }

    #[tokio::test]
    async fn ids_that_cognito_would_refuse_are_errors() {
        let e = resolve(&spec(None, Some("echo 'two words'")), None)
            .await
            .unwrap_err();
        assert!(matches!(e, InstanceError::Invalid { .. }), "{e}");
    }
}
