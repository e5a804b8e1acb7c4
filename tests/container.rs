//! The package under a real systemd: Debian booted with systemd-nspawn from a debootstrap'd root
//! (built once, then kept under target/test-roots), the .deb installed inside with apt, and the
//! service watched as systemd runs it: readiness, the sandbox, the service user's access to
//! /var/log and the journal, the watchdog, and an unconfigured install that stays stopped.
//!
//! Needs root, debootstrap and systemd-nspawn (package systemd-container, at the host's systemd
//! version): `scripts/test` installs them. The root's packages come from the mirror in this
//! machine's own apt sources.

mod support;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::deb::*;
use support::*;

const UNIT: &str = "amazon-cloudwatch-publisher.service";
/// What the root needs besides minbase; part of the cache key.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,adduser,debconf,ca-certificates";

fn os_release(key: &str) -> Option<String> {
    read(Path::new("/etc/os-release")).lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_owned())
    })
}

/// The Debian mirror this machine's apt uses for `suite`: from deb822 `.sources` files, else
/// from one-line `sources.list` entries.
fn mirror(suite: &str) -> String {
    let mut texts = vec![];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            if entry.path().extension().is_some_and(|e| e == "sources") {
                texts.push(read(&entry.path()));
            }
        }
    }
    for text in &texts {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                })
            };
            let deb = field("Types").is_some_and(|t| t.iter().any(|t| t == "deb"));
            let suites = field("Suites").unwrap_or_default();
            if deb && suites.iter().any(|s| s == suite) {
                if let Some(uri) = field("URIs").and_then(|u| u.into_iter().next()) {
                    return uri;
                }
            }
        }
    }
    for line in read(Path::new("/etc/apt/sources.list")).lines() {
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .collect();
        if words.len() >= 3 && words[0] == "deb" && words[2] == suite {
            return words[1].to_owned();
        }
    }
    panic!("no apt source for {suite} in /etc/apt: the container root is built from the mirror this machine's apt uses")
}

/// Holds an exclusive lock on a file while alive (other test processes wait); the lock goes
/// with the file descriptor.
struct Lock(#[allow(dead_code)] File);

impl Lock {
    fn take(path: &Path) -> Lock {
        let file = File::create(path).unwrap();
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        Lock(file)
    }
}

/// The cached Debian root for this machine's release: built with debootstrap the first time,
/// reused while its package list is the same.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        need_root();
        let suite = os_release("VERSION_CODENAME").expect("VERSION_CODENAME in /etc/os-release");
        let cache = Path::new(BIN)
            .ancestors()
            .nth(2)
            .unwrap()
            .join("test-roots");
        std::fs::create_dir_all(&cache).unwrap();
        let _lock = Lock::take(&cache.join(".lock"));
        let root = cache.join(&suite);
        let stamp = root.join(".test-root");
        let key = format!("{suite} minbase {INCLUDE}\n");
        if read(&stamp) == key {
            return root;
        }
        need("debootstrap");
        let partial = cache.join(format!("{suite}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_dir_all(&root);
        let url = mirror(&suite);
        let (ok, text) = sh(Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={INCLUDE}"), &suite])
            .arg(&partial)
            .arg(&url));
        assert!(ok, "debootstrap {suite} from {url} failed: {text}");
        std::fs::write(partial.join(".test-root"), &key).unwrap();
        std::fs::rename(&partial, &root).unwrap();
        root
    })
}

/// A throwaway copy of the root booted under systemd-nspawn, sharing this machine's network
/// (so moto on 127.0.0.1 is reachable). Dropping it kills the container and deletes the copy.
struct Container {
    nspawn: Child,
    /// The container's systemd, as this machine sees it.
    init: u32,
    console: tempfile::NamedTempFile,
}

fn parent_of(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether the process is PID 1 of its own PID namespace (nspawn's short-lived helper is not).
fn is_container_init(pid: &str) -> bool {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            ids.split_whitespace().count() > 1 && ids.split_whitespace().last() == Some("1")
        })
}

impl Container {
    fn boot() -> Container {
        need("systemd-nspawn");
        let console = tempfile::NamedTempFile::new().unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(root())
            .args([
                "--ephemeral",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                // nspawn's own filter refuses the clock calls to a container without
                // CAP_SYS_TIME, reads too; allowed, a read still needs no capability and a
                // write still needs the capability the container does not have.
                "--system-call-filter=adjtimex clock_adjtime",
                "--boot",
            ])
            .stdin(Stdio::null())
            .stdout(console.reopen().unwrap())
            .stderr(console.reopen().unwrap())
            .process_group(0)
            .spawn()
            .expect("start systemd-nspawn");
        let mut c = Container {
            init: 0,
            nspawn,
            console,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.init == 0 {
            let child = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let name = e.file_name().into_string().ok()?;
                (parent_of(&name)? == c.nspawn.id() && is_container_init(&name))
                    .then(|| name.parse().ok())?
            });
            if let Some(pid) = child {
                c.init = pid;
            } else {
                if let Ok(Some(status)) = c.nspawn.try_wait() {
                    panic!("systemd-nspawn exited ({status}): {}", c.console());
                }
                assert!(Instant::now() < deadline, "no container: {}", c.console());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // "offline", or no bus, until the container's systemd is up enough to answer.
        let mut state = String::new();
        while Instant::now() < deadline {
            state = c.run("timeout 90 systemctl is-system-running --wait").1;
            if matches!(state.trim(), "running" | "degraded") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            matches!(state.trim(), "running" | "degraded"),
            "the container did not finish booting: {state}\n{}",
            c.console()
        );
        c
    }

    fn console(&self) -> String {
        read(self.console.path())
    }

    /// Runs a shell command inside the container, as root, with a clean environment.
    fn run(&self, script: &str) -> (bool, String) {
        sh(Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a"])
            .args([
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(["sh", "-c", script]))
    }

    /// Like `run`, failing the test when the command fails.
    fn ok(&self, script: &str) -> String {
        let (ok, text) = self.run(script);
        if !ok {
            let journal = self
                .run(&format!("journalctl --no-pager -u {UNIT} | tail -n 60"))
                .1;
            panic!(
                "in the container, `{script}` failed: {text}\nThe service's journal:\n{journal}"
            );
        }
        text
    }

    /// A path inside the container, as seen from here.
    fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.init))
    }

    fn write(&self, inside: &str, content: impl AsRef<[u8]>) {
        let path = self.path(inside);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// `systemctl show` properties of the service.
    fn show(&self, props: &str) -> String {
        self.ok(&format!("systemctl show -p {props} {UNIT}"))
    }

    fn prop(&self, name: &str) -> String {
        self.show(name)
            .trim()
            .strip_prefix(&format!("{name}="))
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until `pred` holds for the given properties; returns them.
    fn wait_for(&self, props: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let shown = self.show(props);
            if pred(&shown) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "the service did not get there within {timeout:?}: {shown}\n{}",
                self.run(&format!("journalctl --no-pager -u {UNIT} | tail -n 40"))
                    .1
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Installs the package with apt, as a user would; returns apt's output.
    fn install(&self, deb: &Path) -> String {
        std::fs::copy(deb, self.path("/tmp/publisher.deb")).unwrap();
        self.ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/publisher.deb 2>&1")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Killing the container's init ends every process in it; nspawn then removes the copy.
        if self.init != 0 {
            unsafe { libc::kill(self.init as i32, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn deb() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DEB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let deb = build(dir.path());
        (dir, deb)
    })
    .1
}

/// The service's environment points the AWS SDK at moto on this machine.
fn point_at(c: &Container, moto: &Moto) {
    c.write(
        &format!("/etc/systemd/system/{UNIT}.d/endpoint.conf"),
        format!(
            "[Service]\nEnvironment=AWS_ENDPOINT_URL={} AWS_ACCESS_KEY_ID=testing \
             AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true\n",
            moto.url()
        ),
    );
}

/// Preseeds answers. The instance identity stands in for a Pi's CPU serial, which this machine
/// does not have.
fn answers(c: &Container, serial: &str, region: Option<&str>) {
    let command = format!("echo {serial}");
    let mut answers = vec![
        ("instance_prefix", "string", "pi"),
        ("serial_command", "string", &command),
    ];
    if let Some(region) = region {
        answers.push(("region", "string", region));
    }
    c.write("/tmp/preseed", preseed(&answers));
    c.ok("debconf-set-selections /tmp/preseed");
}

#[test]
fn a_configured_install_runs_sandboxed_as_its_user_ships_logs_and_the_watchdog_restarts_it() {
    let moto = Moto::start();
    let c = Container::boot();
    point_at(&c, &moto);
    // A log file only root and the adm group may read, as under /var/log.
    c.ok("install -m 0640 -g adm /dev/null /var/log/app.log && echo 'before the start' >> /var/log/app.log");
    answers(&c, "00000000C0FFEE01", Some("us-east-1"));
    let out = c.install(deb());
    assert!(out.contains("pi-00000000c0ffee01"), "{out}");

    // Type=notify: active only once READY=1 came, with a status line.
    let shown = c.wait_for(
        "ActiveState,SubState,StatusText,User",
        Duration::from_secs(30),
        |s| s.contains("ActiveState=active") && s.contains("SubState=running"),
    );
    assert!(shown.contains("User=cwpublisher"), "{shown}");
    let status = c.prop("StatusText");
    assert!(!status.is_empty(), "no STATUS= line: {shown}");

    let pid = c.prop("MainPID");
    let proc_status = c.ok(&format!("cat /proc/{pid}/status"));
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let uid = c.ok("id -u cwpublisher").trim().to_owned();
    assert_eq!(field("Uid:"), vec![uid.as_str(); 4], "{proc_status}");
    assert_eq!(field("NoNewPrivs:"), ["1"], "{proc_status}");
    assert_eq!(field("Seccomp:"), ["2"], "{proc_status}");
    assert_eq!(field("CapEff:"), ["0000000000000000"], "{proc_status}");
    let groups = field("Groups:");
    for group in ["adm", "systemd-journal"] {
        let gid = c.ok(&format!("getent group {group} | cut -d: -f3"));
        assert!(
            groups.contains(&gid.trim().to_owned()),
            "{group}: {proc_status}"
        );
    }
    // The file system is read-only to it but for logs/ and state/.
    let mounts = c.ok(&format!("cat /proc/{pid}/mountinfo"));
    let options = |point: &str| {
        mounts
            .lines()
            .rfind(|l| l.split_whitespace().nth(4) == Some(point))
            .map(|l| l.split_whitespace().nth(5).unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("{point} is not a mount point of the service: {mounts}"))
    };
    assert!(options("/").starts_with("ro"), "{mounts}");
    for dir in ["logs", "state"] {
        let point = format!("/opt/aws/amazon-cloudwatch-publisher/{dir}");
        assert!(options(&point).starts_with("rw"), "{point}: {mounts}");
    }
    // The sandbox systemd applied, rated on the running unit.
    let rating = c.ok(&format!("systemd-analyze security --no-pager {UNIT}"));
    let score: f64 = rating
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {rating}"));
    assert!(score <= 2.0, "{rating}");

    // Ship /var/log/app.log and the journal: a hand edit to the config, then a restart.
    let config_path = c.path(CONFIG);
    let mut config: Value = serde_json::from_str(&read(&config_path)).unwrap();
    // This machine's clock may not be synchronized (no NTP here): wait for it briefly.
    config["agent"]["clock_sync_timeout"] = json!(3);
    config["logs"] = json!({
        "log_group_name": "pi-logs",
        "force_flush_interval": 1,
        "logs_collected": {
            "files": {"collect_list": [
                {"file_path": "/var/log/app.log", "log_stream_name": "app"}
            ]},
            "journal": {"collect": true, "log_stream_name": "journal"}
        }
    });
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let (restarted, text) = c.run(&format!("systemctl restart {UNIT}"));
    if !restarted {
        // systemd in a container now and then fails to move the new process into the unit's
        // cgroup while the old one is still being torn down (status 219/CGROUP, before the
        // publisher runs); a second restart shows whether the unit itself is at fault.
        let journal = c
            .run(&format!("journalctl --no-pager -u {UNIT} | tail -n 5"))
            .1;
        assert!(
            journal.contains("219/CGROUP"),
            "{text}
{journal}"
        );
        std::thread::sleep(Duration::from_secs(2));
        c.ok(&format!("systemctl restart {UNIT}"));
    }
    c.ok("echo 'read through the adm group' >> /var/log/app.log");
    c.ok("echo 'read through the systemd-journal group' | systemd-cat -t pi-test");
    moto.wait_for_messages("pi-logs", "app", Duration::from_secs(60), |m| {
        m.iter().any(|l| l == "read through the adm group")
    });
    moto.wait_for_messages("pi-logs", "journal", Duration::from_secs(60), |m| {
        m.iter()
            .any(|l| l == "read through the systemd-journal group")
    });
    moto.wait_for_metrics(Duration::from_secs(60), |m| {
        m.iter()
            .any(|d| d.dimensions.values().any(|v| v == "pi-00000000c0ffee01"))
    });
    // The sandbox lets it ask the kernel whether the clock is synchronized.
    let journal = c.ok(&format!("journalctl --no-pager -u {UNIT}"));
    assert!(
        journal.contains("The system clock is synchronized")
            || journal.contains("The system clock is still not synchronized"),
        "{journal}"
    );
    assert!(!journal.contains("Cannot tell whether"), "{journal}");

    // `status`, run by an operator in the adm group (no root, no access to the config): the
    // status file is in the runtime directory, in memory, and says what the service manager
    // was told.
    c.ok("useradd --no-create-home --groups adm watcher");
    let link = c.ok("readlink /opt/aws/amazon-cloudwatch-publisher/state/status.json");
    assert_eq!(link.trim(), "/run/amazon-cloudwatch-publisher/status.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = c.run(
            "runuser -u watcher -- /opt/aws/amazon-cloudwatch-publisher/bin/amazon-cloudwatch-publisher status --json",
        );
        let json = out.lines().find(|l| l.starts_with('{')).unwrap_or("{}");
        let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
        let shown = c.prop("StatusText");
        if ok
            && v["running"] == true
            && v["instance_id"] == "pi-00000000c0ffee01"
            && v["line"].as_str() == Some(shown.trim())
            && v["logs"].as_array().is_some_and(|l| l.len() == 2)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status as a member of adm: {out}\nStatusText={shown}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let (ok, out) =
        c.run("runuser -u watcher -- /opt/aws/amazon-cloudwatch-publisher/bin/amazon-cloudwatch-publisher status");
    assert!(ok && out.contains("running (pid"), "{out}");

    // A frozen process stops sending WATCHDOG=1: systemd kills it and starts it again.
    let before = c.prop("MainPID");
    c.ok(&format!("kill -STOP {before}"));
    let shown = c.wait_for(
        "NRestarts,ActiveState,SubState,MainPID",
        Duration::from_secs(120),
        |s| s.contains("NRestarts=1") && s.contains("SubState=running"),
    );
    assert!(!shown.contains(&format!("MainPID={before}\n")), "{shown}");
    let journal = c.ok(&format!("journalctl --no-pager -u {UNIT}"));
    assert!(journal.contains("Watchdog timeout"), "{journal}");

    // Remove stops and disables it; purge takes the rest.
    c.ok("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q amazon-cloudwatch-publisher");
    let (running, _) = c.run(&format!("systemctl is-active --quiet {UNIT}"));
    assert!(!running, "still running after remove");
    let (enabled, text) = c.run(&format!("systemctl is-enabled {UNIT}"));
    assert!(!enabled, "still enabled after remove: {text}");
    c.ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q amazon-cloudwatch-publisher");
    let (gone, _) = c.run("test ! -e /opt/aws/amazon-cloudwatch-publisher && ! id cwpublisher");
    assert!(gone, "purge left files or the user");
}

#[test]
fn an_unconfigured_install_stays_stopped_without_a_restart_loop_until_configured() {
    let moto = Moto::start();
    let c = Container::boot();
    point_at(&c, &moto);
    // No region given: nothing to publish to.
    answers(&c, "00000000C0FFEE02", None);
    let out = c.install(deb());
    assert!(
        out.contains("the config is not usable yet, so the service is not started")
            && out.contains("agent.region")
            && out.contains("dpkg-reconfigure amazon-cloudwatch-publisher"),
        "{out}"
    );
    let shown = c.show("ActiveState,UnitFileState");
    assert!(
        shown.contains("ActiveState=inactive") && shown.contains("UnitFileState=enabled"),
        "{shown}"
    );

    // Started anyway (as at boot), it exits 78 and is not restarted.
    let (started, _) = c.run(&format!("systemctl start {UNIT}"));
    assert!(!started);
    std::thread::sleep(Duration::from_secs(25));
    let shown = c.show("ActiveState,ExecMainStatus,NRestarts");
    assert!(
        shown.contains("ActiveState=failed")
            && shown.contains("ExecMainStatus=78")
            && shown.contains("NRestarts=0"),
        "{shown}"
    );
    let journal = c.ok(&format!("journalctl --no-pager -u {UNIT}"));
    assert!(journal.contains("agent.region"), "{journal}");

    // Configuring it starts it.
    answers(&c, "00000000C0FFEE02", Some("eu-west-1"));
    let out = c.ok("dpkg-reconfigure -f noninteractive amazon-cloudwatch-publisher 2>&1");
    assert!(out.contains("instance id is pi-00000000c0ffee02"), "{out}");
    c.wait_for("ActiveState,SubState", Duration::from_secs(30), |s| {
        s.contains("ActiveState=active") && s.contains("SubState=running")
    });
}
