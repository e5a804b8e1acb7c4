//! AWS calls through an HTTP proxy (tinyproxy, started by the test on 127.0.0.1): with
//! `agent.proxy`, or with `HTTP_PROXY`/`HTTPS_PROXY`, every call of the publisher (Cognito, STS,
//! CloudWatch, CloudWatch Logs) goes through it, which moto's harness sees by the proxy's
//! `Via` header; `NO_PROXY` is honoured; the proxy's password is never printed; a proxy that
//! refuses is named in the error.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "S3cretProxyPw";
const DEVICE_PASSWORD: &str = "Dev1ce-Pass-word";

struct Tinyproxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// A proxy on a free port of 127.0.0.1 that wants `PROXY_USER`'s password.
    fn start() -> Tinyproxy {
        deb::need("tinyproxy");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogLevel Info\nMaxClients 100\n\
                 LogFile \"{}\"\nAllow 127.0.0.1\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\n",
                dir.path().join("tinyproxy.log").display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Tinyproxy {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, password: &str) -> String {
        format!("http://{PROXY_USER}:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many more calls of each kind moto's harness saw than in `before`.
fn calls_since(moto: &Moto, before: &HashMap<String, u64>) -> HashMap<String, u64> {
    moto.calls()
        .into_iter()
        .map(|(k, v)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, v - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A config that shows all kinds of calls: Cognito sign-in, a role (STS), metrics and logs.
fn device_config(ids: &Value, app_log: &PathBuf, agent_extra: Value) -> Setup {
    let mut auth = ids.clone();
    auth["password"] = json!(DEVICE_PASSWORD);
    let mut agent = json!({
        "instance": {"prefix": "rpi", "serial": "proxied"},
        "region": "us-east-1",
        "authentication": auth,
        "credentials": {"role_arn": "arn:aws:iam::111122223333:role/Publisher"},
        "debug": true
    });
    for (k, v) in agent_extra.as_object().unwrap() {
        agent[k] = v.clone();
    }
    Setup::new(json!({
        "agent": agent,
        "logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": app_log, "from_beginning": true, "log_group_name": "app"}]}}}
    }))
}

fn device(moto: &Moto) -> Command {
    let mut cmd = publisher(Some(&moto.url()));
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    cmd
}

#[test]
fn with_agent_proxy_every_call_goes_through_it_and_its_password_is_never_shown() {
    let moto = Moto::start();
    let proxy = Tinyproxy::start();
    let ids = moto.cognito_setup(&["rpi-proxied"], DEVICE_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let app_log = dir.path().join("app.log");
    append_lines(&app_log, &["through the proxy"]);
    let s = device_config(&ids, &app_log, json!({"proxy": proxy.url(PROXY_PASSWORD)}));
    let before = moto.calls();
    let mut cmd = device(&moto);
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(90));
    let (stdout, stderr) = text(&out);
    let log = s.log();
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{log}");
    let calls = calls_since(&moto, &before);
    for op in [
        "InitiateAuth",
        "GetId",
        "GetCredentialsForIdentity",
        "AssumeRole",
        "PutMetricData",
        "PutLogEvents",
    ] {
        assert!(calls.contains_key(op), "no {op}: {calls:?}");
    }
    assert_eq!(
        calls.get("_direct"),
        None,
        "calls around the proxy: {calls:?}"
    );
    assert!(calls.get("_proxied").is_some_and(|n| *n >= 6), "{calls:?}");
    assert_eq!(
        moto.messages("app", "app.log"),
        ["through the proxy"],
        "the log line arrived"
    );
    let shown = format!("http://127.0.0.1:{}", proxy.port);
    assert!(log.contains(&shown), "the log names the proxy: {log}");
    for text in [&stdout, &stderr, &log] {
        assert!(
            !text.contains(PROXY_PASSWORD) && !text.contains(DEVICE_PASSWORD),
            "a password was printed: {text}"
        );
    }
    // `validate` shows the proxy without its password.
    let mut cmd = device(&moto);
    cmd.arg("validate").arg(s.config());
    let out = run(cmd, Duration::from_secs(30));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("{PROXY_USER}:<redacted>@127.0.0.1")),
        "{stdout}"
    );
    assert!(!stdout.contains(PROXY_PASSWORD), "{stdout}");
}

#[test]
fn the_environments_proxy_is_used_and_no_proxy_is_honoured() {
    let moto = Moto::start();
    let proxy = Tinyproxy::start();
    let dir = tempfile::tempdir().unwrap();
    let app_log = dir.path().join("app.log");
    append_lines(&app_log, &["one"]);
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "envproxy"}},
        "logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": app_log, "from_beginning": true, "log_group_name": "app"}]}}}
    }));
    let once = |env: &[(&str, String)]| {
        let before = moto.calls();
        let mut cmd = publisher(Some(&moto.url()));
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            cmd.env_remove(var).env_remove(var.to_lowercase());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg("--once").arg(s.config());
        let out = run(cmd, Duration::from_secs(60));
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}\n{}", s.log());
        calls_since(&moto, &before)
    };
    // Lowercase, as curl and most tools read it; moto's endpoint is plain http.
    let calls = once(&[("http_proxy", proxy.url(PROXY_PASSWORD))]);
    assert_eq!(calls.get("_direct"), None, "{calls:?}");
    assert!(calls.contains_key("PutMetricData") && calls.contains_key("_proxied"));
    assert!(
        s.log().contains(&format!(
            "http://127.0.0.1:{} (from http_proxy)",
            proxy.port
        )),
        "{}",
        s.log()
    );
    assert!(!s.log().contains(PROXY_PASSWORD), "{}", s.log());
    // NO_PROXY names the endpoint's host: straight there.
    let calls = once(&[
        ("HTTP_PROXY", proxy.url(PROXY_PASSWORD)),
        ("NO_PROXY", "localhost,127.0.0.1".to_owned()),
    ]);
    assert_eq!(calls.get("_proxied"), None, "{calls:?}");
    assert!(calls.contains_key("PutMetricData"), "{calls:?}");
}

#[test]
fn a_proxy_that_refuses_is_named() {
    let moto = Moto::start();
    let proxy = Tinyproxy::start();
    let nobody = free_port();
    for (url, shown) in [
        // Wrong password: the proxy answers 407.
        (
            proxy.url("wrong-password"),
            format!("127.0.0.1:{}", proxy.port),
        ),
        // Nothing listens there.
        (
            format!("http://127.0.0.1:{nobody}"),
            format!("127.0.0.1:{nobody}"),
        ),
    ] {
        let s = Setup::new(json!({
            "agent": {"instance": {"prefix": "test", "serial": "refused"}, "proxy": url}
        }));
        let mut cmd = publisher(Some(&moto.url()));
        cmd.arg("--once").arg(s.config());
        let out = run(cmd, Duration::from_secs(90));
        let log = s.log();
        let warning = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains("proxy"))
            .unwrap_or_else(|| panic!("no warning names the proxy: {log}"));
        assert!(warning.contains(&shown), "{warning}");
        // The proxy is what failed, not CloudWatch: the endpoint is not what the line names.
        assert!(
            !warning.contains(&format!(":{}", moto.port)),
            "the endpoint is named: {warning}"
        );
        assert!(!log.contains("wrong-password"), "{log}");
        let _ = out;
    }
}
