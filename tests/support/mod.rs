//! Shared by the integration tests: the publisher binary, moto's server behind the test
//! harness (tests/support/moto_harness.py), and configs in temporary directories.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod deb;

pub const BIN: &str = env!("CARGO_BIN_EXE_amazon-cloudwatch-publisher");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with moto installed: $PUBLISHER_TEST_PYTHON, else the project's .venv.
pub fn python() -> PathBuf {
    let p = std::env::var_os("PUBLISHER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import moto, cbor2, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import moto, cbor2 and boto3. Run `scripts/test` (it creates .venv with \
         tests/support/requirements.txt), or set PUBLISHER_TEST_PYTHON to a Python that has them.",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's server behind the harness, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on(0)
    }

    pub fn start_on(port: u16) -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new(python())
            .arg(repo().join("tests/support/moto_harness.py"))
            .args(["serve", "--port", &port.to_string(), "--port-file"])
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the moto harness");
        let mut moto = Moto { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                moto.port = text.trim().parse().unwrap();
                if moto.try_get("/moto-api/").is_some() {
                    return moto;
                }
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("the moto harness exited early ({status}); is port {port} taken?");
            }
            assert!(
                Instant::now() < deadline,
                "the moto harness did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn try_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.contains(" 200 ").then(|| body.to_owned())
    }

    fn get_json(&self, path: &str) -> Value {
        let body = self
            .try_get(path)
            .unwrap_or_else(|| panic!("GET {path} from the moto harness failed"));
        serde_json::from_str(&body).unwrap()
    }

    /// How often each AWS operation was called.
    pub fn calls(&self) -> HashMap<String, u64> {
        serde_json::from_value(self.get_json("/_harness/calls")).unwrap()
    }

    /// Makes the next `times` calls of `op` fail with `status` and error `code`.
    pub fn fail_next(&self, op: &str, times: u32, status: u16, code: &str) {
        self.get_json(&format!(
            "/_harness/fail?op={op}&times={times}&status={status}&code={code}"
        ));
    }

    /// Makes CloudWatch Logs answer AccessDeniedException for the log groups matching these
    /// glob patterns (comma-separated; empty ends it), as a role's policy would.
    pub fn deny_log_groups(&self, patterns: &str) {
        self.get_json(&format!("/_harness/deny-log-groups?pattern={patterns}"));
    }

    /// Makes CloudWatch refuse, as invalid, every PutMetricData request that holds a datum
    /// named `name` (an empty name ends it).
    pub fn refuse_metric(&self, name: &str) {
        self.get_json(&format!("/_harness/refuse-metric?name={name}"));
    }

    /// Makes InitiateAuth report id tokens that live `seconds`.
    pub fn token_lifetime(&self, seconds: u32) {
        self.get_json(&format!("/_harness/token-lifetime?seconds={seconds}"));
    }

    /// Every metric datum moto stored.
    pub fn metrics(&self) -> Vec<Datum> {
        serde_json::from_value(self.get_json("/_harness/metrics")).unwrap()
    }

    /// Waits until `pred` holds for the stored metrics.
    pub fn wait_for_metrics(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Datum]) -> bool,
    ) -> Vec<Datum> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if pred(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "metrics did not arrive as expected within {timeout:?}; moto has {} datums",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Delays every following call of `op` by `seconds` (0 ends it), as a slow service would.
    pub fn delay(&self, op: &str, seconds: f64) {
        self.get_json(&format!("/_harness/delay?op={op}&seconds={seconds}"));
    }

    /// Every log event moto stored in `group`: stream → (timestamp, message), in arrival order.
    pub fn log_events(&self, group: &str) -> BTreeMap<String, Vec<(i64, String)>> {
        let all = self.get_json(&format!("/_harness/log-events?group={}", encode(group)));
        let mut out = BTreeMap::new();
        if let Some(streams) = all.get(group).and_then(Value::as_object) {
            for (stream, events) in streams {
                let events = events
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| {
                        (
                            e["timestamp"].as_i64().unwrap(),
                            e["message"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                out.insert(stream.clone(), events);
            }
        }
        out
    }

    /// The messages in one stream, in arrival order.
    pub fn messages(&self, group: &str, stream: &str) -> Vec<String> {
        self.log_events(group)
            .remove(stream)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.1)
            .collect()
    }

    /// Waits until `pred` holds for the messages of one stream; returns them.
    pub fn wait_for_messages(
        &self,
        group: &str,
        stream: &str,
        timeout: Duration,
        pred: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.messages(group, stream);
            if pred(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "log events in {group} / {stream} did not arrive as expected within {timeout:?}; moto has {} there",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Log groups moto has: name → (retention in days, stream names).
    pub fn log_groups(&self) -> BTreeMap<String, (Option<u64>, Vec<String>)> {
        let all = self.get_json("/_harness/log-groups");
        all.as_object()
            .unwrap()
            .iter()
            .map(|(name, g)| {
                let streams = g["streams"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect();
                (name.clone(), (g["retentionInDays"].as_u64(), streams))
            })
            .collect()
    }

    /// The class each log group was created with (`None`: standard).
    pub fn log_group_classes(&self) -> BTreeMap<String, Option<String>> {
        let all = self.get_json("/_harness/log-groups");
        all.as_object()
            .unwrap()
            .iter()
            .map(|(name, g)| (name.clone(), g["logGroupClass"].as_str().map(str::to_owned)))
            .collect()
    }

    /// The account each log group was created in.
    pub fn log_group_accounts(&self) -> BTreeMap<String, String> {
        let all = self.get_json("/_harness/log-groups");
        all.as_object()
            .unwrap()
            .iter()
            .map(|(name, g)| (name.clone(), g["account"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// PutLogEvents requests the harness refused for breaking one of CloudWatch's limits.
    pub fn violations(&self) -> Vec<Value> {
        serde_json::from_value(self.get_json("/_harness/violations")).unwrap()
    }

    /// Summaries of the PutLogEvents requests passed on to moto: {group, stream, events, bytes, ...}.
    pub fn put_log_events(&self) -> Vec<Value> {
        serde_json::from_value(self.get_json("/_harness/put-log-events")).unwrap()
    }

    /// Creates a user pool, app client, identity pool and users with `password`.
    pub fn cognito_setup(&self, users: &[&str], password: &str) -> Value {
        self.cognito_setup_with(users, &[], password, false)
    }

    /// A user pool, app client and identity pool, by API calls; `users` get `password` as
    /// their permanent one, `unfinished` users only as a temporary one. `strict` gives the pool
    /// the infrastructure stack's password policy.
    pub fn cognito_setup_with(
        &self,
        users: &[&str],
        unfinished: &[&str],
        password: &str,
        strict: bool,
    ) -> Value {
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/support/moto_harness.py")).args([
            "cognito-setup",
            "--endpoint",
            &self.url(),
            "--password",
            password,
        ]);
        for u in users {
            cmd.args(["--username", u]);
        }
        for u in unfinished {
            cmd.args(["--unfinished", u]);
        }
        if strict {
            cmd.arg("--strict-policy");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "cognito-setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The user pool's users: name → status (CONFIRMED, FORCE_CHANGE_PASSWORD, ...).
    pub fn cognito_users(&self, pool: &str) -> BTreeMap<String, String> {
        let out = Command::new(python())
            .arg(repo().join("tests/support/moto_harness.py"))
            .args(["cognito-users", "--endpoint", &self.url(), "--pool", pool])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cognito-users failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Datum {
    /// The account moto stored it in (the assumed role's, when one was assumed).
    pub account: String,
    pub namespace: String,
    pub name: String,
    pub value: f64,
    /// A statistic set's numbers (`value` is then their sum).
    #[serde(default)]
    pub statistics: Option<Statistics>,
    pub unit: Option<String>,
    pub dimensions: HashMap<String, String>,
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Statistics {
    pub sample_count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A notify socket and the messages that reach it, each with when it came.
pub struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// Collects messages until `until` holds for the ones so far, or `timeout`.
    pub fn collect(
        &self,
        since: Instant,
        timeout: Duration,
        until: impl Fn(&[(Duration, String)]) -> bool,
    ) -> Vec<(Duration, String)> {
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline && !until(&out) {
            if let Ok(n) = self.socket.recv(&mut buf) {
                out.push((
                    since.elapsed(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        out
    }

    /// Waits for READY=1 (and fails after `timeout`).
    pub fn wait_ready(&self, timeout: Duration) {
        let got = self.collect(Instant::now(), timeout, |m| {
            m.iter()
                .any(|(_, text)| text.lines().any(|l| l == "READY=1"))
        });
        assert!(
            got.iter()
                .any(|(_, text)| text.lines().any(|l| l == "READY=1")),
            "no READY=1 within {timeout:?}: {got:?}"
        );
    }
}

/// A directory with a config file, log file and state directory for one publisher.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// Writes `config`, adding logfile and state_dir inside the temp dir unless given.
    pub fn new(mut config: Value) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let agent = config
            .as_object_mut()
            .unwrap()
            .entry("agent")
            .or_insert_with(|| serde_json::json!({}));
        let agent = agent.as_object_mut().unwrap();
        agent.entry("logfile").or_insert_with(|| {
            dir.path()
                .join("logs/publisher.log")
                .to_str()
                .unwrap()
                .into()
        });
        agent
            .entry("state_dir")
            .or_insert_with(|| dir.path().join("state").to_str().unwrap().into());
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        Setup { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/publisher.log")).unwrap_or_default()
    }

    /// Waits until the metrics spool holds at least `n` files.
    pub fn wait_for_spool_files(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.spool_files() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} rounds were spooled within {timeout:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn spool_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("state/metrics-spool"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// The publisher with a clean AWS environment pointed at `endpoint`.
pub fn publisher(endpoint: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let home = std::env::temp_dir().join("publisher-test-home-without-aws-files");
    cmd.env("HOME", home)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        // This machine's kernel may not call its clock synchronized (no NTP in a container):
        // the clock tests say otherwise where it matters (src/clock.rs).
        .env("CLOUDWATCH_PUBLISHER_TEST_CLOCK", "synchronized")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null());
    if let Some(url) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", url);
    }
    cmd
}

pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the publisher did not finish within {timeout:?}");
        }
    }
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Appends `lines` to `path` (made if missing), each ending in a newline.
pub fn append_lines(path: &Path, lines: &[impl AsRef<str>]) {
    let mut text = String::new();
    for l in lines {
        text.push_str(l.as_ref());
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// SIGTERM, and a clean exit within 30 s (the publisher's log shows when not).
pub fn stop_gracefully(child: &mut Child, s: &Setup) {
    signal(child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", s.log());
}

/// Starts `cmd` with a notify socket, as systemd would, and waits for READY.
pub fn start_ready(mut cmd: Command) -> (Child, NotifySocket) {
    let sock = NotifySocket::bind();
    let child = cmd
        .env("NOTIFY_SOCKET", &sock.path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sock.wait_ready(Duration::from_secs(30));
    (child, sock)
}

/// Waits until `cond` holds; fails saying `what` did not happen within `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn signal(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for a running child to exit; kills it and fails after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the publisher did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Answers the package's questions as a person would, on a terminal: expect runs `spawn` (a Tcl
/// command line; `$env(NAME)` reads `env`) on a pseudo-terminal and answers debconf's or
/// `configure`'s prompts (they are the same) with a region, Cognito ids, `password` (handed over
/// in the environment, not a file), the default prefix and `echo <serial>` as the serial
/// command. Returns whether it ended with status 0, expect's own output, and what the terminal
/// showed.
pub fn answer_on_a_terminal(
    spawn: &str,
    env: &[(&str, &std::ffi::OsStr)],
    serial: &str,
    password: &str,
) -> (bool, String, String) {
    deb::need("expect");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("answer.exp");
    let transcript = dir.path().join("transcript");
    std::fs::write(
        &script,
        format!(
            r#"set timeout 120
log_file -noappend $env(TRANSCRIPT)
spawn {spawn}
expect {{
  "AWS region to publish to" {{ send "eu-west-1\r"; exp_continue }}
  "AWS account id" {{ send "123456789012\r"; exp_continue }}
  "Cognito user pool id:" {{ send "eu-west-1_AbCdEf123\r"; exp_continue }}
  "Cognito identity pool id:" {{ send "eu-west-1:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\r"; exp_continue }}
  "Cognito app client id:" {{ send "1example23456789\r"; exp_continue }}
  "Password of this device's Cognito user:" {{ send -- "$env(PASSWORD)\r"; exp_continue }}
  "Instance id prefix*: " {{ send "\r"; exp_continue }}
  "Command that prints this machine's serial*: " {{ send "echo {serial}\r"; exp_continue }}
  "HTTP(S) proxy*: " {{ send "\r"; exp_continue }}
  timeout {{ puts "no prompt and no end within 120 s"; exit 1 }}
  eof
}}
lassign [wait] pid spawnid os_error status
exit $status
"#
        ),
    )
    .unwrap();
    let mut cmd = Command::new("expect");
    cmd.arg(&script)
        .env("TRANSCRIPT", &transcript)
        .env("PASSWORD", password);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (ok, out) = deb::sh(&mut cmd);
    (ok, out, read(&transcript))
}

/// Sends `text` to a UDP port on 127.0.0.1 with `nc -u`, as a shell script would.
pub fn nc_udp(port: u16, text: &str) {
    let mut child = Command::new("nc")
        .args(["-u", "-w1", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("nc runs (scripts/test installs netcat-openbsd)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Peak resident memory of a running process, from /proc.
pub fn peak_rss_kib(p: &Child) -> u64 {
    read(Path::new(&format!("/proc/{}/status", p.id())))
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
