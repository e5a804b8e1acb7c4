//! `configure`: the Debian package's questions, for machines without debconf (macOS, other
//! systems). Asks on the terminal (the password without echo), or takes the answers from a
//! file in debconf-set-selections form (what `provision` writes as `<id>.preseed`), shows the
//! instance id, and writes the config, mode 0600, only if it validates. Other settings in an
//! existing config (a `logs` section, say) are kept.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::config;
use crate::error::AppError;

const PACKAGE: &str = "amazon-cloudwatch-publisher";

/// The instance id's defaults: the machine's serial, as the example configs read it.
#[cfg(target_os = "macos")]
const DEFAULT_PREFIX: &str = "osx";
#[cfg(target_os = "macos")]
const DEFAULT_SERIAL_COMMAND: &str =
    "system_profiler SPHardwareDataType | awk '/Serial Number/ {print $4}'";
#[cfg(not(target_os = "macos"))]
const DEFAULT_PREFIX: &str = "rpi";
#[cfg(not(target_os = "macos"))]
const DEFAULT_SERIAL_COMMAND: &str = "awk '/^Serial/ {print $3}' /proc/cpuinfo";

/// The questions, by their debconf names, with their config keys under `agent`.
const QUESTIONS: &[(&str, &str, &str)] = &[
    (
        "region",
        "AWS region to publish to (for example us-east-1)",
        "region",
    ),
    (
        "account_id",
        "AWS account id (empty: use the default AWS credentials)",
        "authentication.accountId",
    ),
    (
        "user_pool_id",
        "Cognito user pool id",
        "authentication.userPoolId",
    ),
    (
        "identity_pool_id",
        "Cognito identity pool id",
        "authentication.identityPoolId",
    ),
    (
        "app_client_id",
        "Cognito app client id",
        "authentication.appClientId",
    ),
    (
        "password",
        "Password of this device's Cognito user",
        "authentication.password",
    ),
    ("instance_prefix", "Instance id prefix", "instance.prefix"),
    (
        "serial_command",
        "Command that prints this machine's serial",
        "instance.command",
    ),
    (
        "proxy",
        "HTTP(S) proxy for AWS calls, e.g. http://user:password@proxy:3128 (empty: none; none: remove it)",
        "proxy",
    ),
];

fn config_error(path: &Path, message: String) -> AppError {
    AppError::Setting {
        path: path.to_owned(),
        message,
    }
}

/// Reads answers in debconf-set-selections form: `<package> <package>/<question> <type> <value>`.
pub fn read_answers(path: &Path) -> Result<HashMap<String, String>, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e.to_string()))?;
    let mut answers = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.splitn(4, [' ', '\t']);
        let (_owner, question, _kind) = (words.next(), words.next(), words.next());
        let value = words.next().unwrap_or("").trim_end_matches(['\r', '\n']);
        let name = question
            .and_then(|q| q.strip_prefix(PACKAGE))
            .and_then(|q| q.strip_prefix('/'))
            .filter(|q| QUESTIONS.iter().any(|(n, _, _)| n == q));
        match name {
            Some(name) => {
                answers.insert(name.to_owned(), value.to_owned());
            }
            None => {
                return Err(config_error(
                    path,
                    format!(
                        "line {}: not an answer to one of the questions ({})",
                        i + 1,
                        QUESTIONS.iter().map(|q| q.0).collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        }
    }
    Ok(answers)
}

/// Where a question's value lives in the config: `agent` then the dotted key.
fn slot<'a>(root: &'a Value, key: &str) -> Option<&'a str> {
    key.split('.')
        .try_fold(root.get("agent")?, |v, k| v.get(k))?
        .as_str()
}

/// The terminal's echo, off while a password is typed; back on when dropped.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn new() -> NoEcho {
        // SAFETY: termios calls on standard input with a valid, zeroed struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return NoEcho(None);
            }
            NoEcho(Some(saved))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
        }
    }
}

/// Asks one question on standard error, reads the answer from standard input. An empty
/// answer takes `default`. None at the end of input.
/// With `secret`, what is typed is not echoed; with `hide_default`, the default is not shown.
fn ask(prompt: &str, default: &str, secret: bool, hide_default: bool) -> Option<String> {
    let mut err = std::io::stderr();
    let shown = if (secret || hide_default) && !default.is_empty() {
        " [keep the current one]".to_owned()
    } else if default.is_empty() {
        String::new()
    } else {
        format!(" [{default}]")
    };
    // Echo goes off before the prompt shows, so nothing typed early is echoed.
    let _echo = (secret && std::io::stdin().is_terminal()).then(NoEcho::new);
    // One write: standard error is unbuffered, and a prompt written in pieces lets whoever
    // answers (a person or a script) reply before the default has shown.
    let _ = err.write_all(format!("{prompt}{shown}: ").as_bytes());
    let _ = err.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            let answer = line.trim_end_matches(['\r', '\n']).trim();
            Some(if answer.is_empty() {
                default.to_owned()
            } else {
                answer.to_owned()
            })
        }
    }
}

pub async fn run(path: &Path, answers_file: Option<&PathBuf>) -> Result<(), AppError> {
    crate::logging::init(None, false, true).map_err(AppError::Io)?;
    // The text and its owner (uid, gid) from one open file, so that the owner is the one of
    // the text whose command may be run.
    let read = std::fs::File::open(path).and_then(|mut f| {
        let meta = f.metadata()?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text)?;
        Ok((text, (meta.uid(), meta.gid())))
    });
    let (existing, owner): (Option<Value>, Option<(u32, u32)>) = match read {
        Ok((text, owner)) => (
            Some(serde_json::from_str(&text).map_err(|e| {
                config_error(
                    path,
                    format!("the existing config is not JSON ({e}); fix or move it first"),
                )
            })?),
            Some(owner),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(config_error(path, e.to_string())),
    };
    let given = match answers_file {
        Some(f) => read_answers(f)?,
        None => HashMap::new(),
    };
    let interactive = given.is_empty() || std::io::stdin().is_terminal();
    let root = existing.clone().unwrap_or_else(|| json!({}));
    let mut answers: HashMap<&str, String> = HashMap::new();
    for &(name, prompt, key) in QUESTIONS {
        let current = slot(&root, key)
            .map(str::to_owned)
            .unwrap_or_else(|| match name {
                "instance_prefix" => DEFAULT_PREFIX.into(),
                "serial_command" => DEFAULT_SERIAL_COMMAND.into(),
                _ => String::new(),
            });
        let cognito = !matches!(
            name,
            "region" | "account_id" | "instance_prefix" | "serial_command" | "proxy"
        );
        let account = answers.get("account_id").map(String::as_str).unwrap_or("");
        if cognito && account.is_empty() {
            continue;
        }
        let answer =
            match given.get(name) {
                Some(v) if !(name == "password" && v.is_empty()) => v.clone(),
                // A proxy URL may hold a password: its current value is not shown either.
                _ if interactive => match ask(
                    prompt,
                    &current,
                    name == "password",
                    name == "proxy" && current.contains('@'),
                ) {
                    Some(a) => a,
                    None => return Err(config_error(
                        path,
                        "the answers ended before every question was asked; nothing was written"
                            .into(),
                    )),
                },
                _ => current,
            };
        answers.insert(name, answer);
    }

    // The answers over whatever else the existing config has.
    let mut root = root;
    let Some(top) = root.as_object_mut() else {
        return Err(config_error(
            path,
            "the existing config is not a JSON object".into(),
        ));
    };
    let agent = top.entry("agent").or_insert_with(|| json!({}));
    let Some(agent) = agent.as_object_mut() else {
        return Err(config_error(path, "agent: is not an object".into()));
    };
    agent.insert("region".into(), json!(answers["region"]));
    let instance = agent.entry("instance").or_insert_with(|| json!({}));
    if let Some(instance) = instance.as_object_mut() {
        instance.insert("prefix".into(), json!(answers["instance_prefix"]));
        instance.insert("command".into(), json!(answers["serial_command"]));
        instance.remove("serial");
    }
    if answers["account_id"].is_empty() {
        agent.remove("authentication");
    } else {
        let mut auth = Map::new();
        for (name, _, key) in QUESTIONS {
            if let Some(field) = key.strip_prefix("authentication.") {
                auth.insert(
                    field.into(),
                    json!(answers.get(name).cloned().unwrap_or_default()),
                );
            }
        }
        agent.insert("authentication".into(), Value::Object(auth));
    }
    match answers.get("proxy").map(|p| p.trim()) {
        None | Some("") | Some("none") => {
            agent.remove("proxy");
        }
        Some(url) => {
            agent.insert("proxy".into(), json!(url));
        }
    }
    let mut text = serde_json::to_string_pretty(&root).expect("JSON values serialize");
    text.push('\n');

    // Checked before it replaces anything: the config, then the instance id it gives.
    let config = match config::parse(path, &text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{}: not written, as these answers give a config that does not validate; run configure again:",
                path.display()
            );
            return Err(AppError::Config(e));
        }
    };
    // Its serial command may be the existing config's, which (on macOS) the service user owns
    // and may edit: it runs as that owner, not as root.
    let id = crate::instance::resolve_for_owned(&config, owner).await?;
    eprintln!("This machine's instance id is {id}; it must match its line in systems.txt.");

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| config_error(path, e.to_string()))?;
    }
    // The new file keeps the old one's owner (the service user, when run with sudo), so the
    // publisher can still read it.
    crate::durable::write_private(path, text.as_bytes(), owner)
        .map_err(|e| config_error(path, format!("cannot write it: {e}")))?;
    eprintln!(
        "Wrote {} (mode 0600); the passwords are kept only there.",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_files_are_read_in_debconf_form_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.preseed");
        std::fs::write(
            &path,
            "# comment\namazon-cloudwatch-publisher amazon-cloudwatch-publisher/region string eu-west-1\n\
             amazon-cloudwatch-publisher amazon-cloudwatch-publisher/password password a b#c\n",
        )
        .unwrap();
        let a = read_answers(&path).unwrap();
        assert_eq!(a["region"], "eu-west-1");
        assert_eq!(a["password"], "a b#c");
        std::fs::write(
            &path,
            "amazon-cloudwatch-publisher amazon-cloudwatch-publisher/colour string red\n",
        )
        .unwrap();
        let e = read_answers(&path).unwrap_err().to_string();
        assert!(e.contains("line 1: not an answer"), "{e}");
    }
}
