//! `provision`: one Cognito user per device listed in systems.txt.
//!
//! Reads the device list, lists the pool's users (every page), and creates only the missing
//! ones, several at a time (`--concurrency`) and paced (`--rate` calls a second of each kind),
//! each with a random password made permanent only once the device's files are written: a run
//! stopped anywhere leaves at worst a user still waiting for its password, which the next run
//! gives a new one. Nobody is deleted. For each device it handled it writes a ready config and
//! the Debian package's answers, mode 0600, and prints the ids and passwords once. With
//! `--rotate ID…` or `--rotate-all` it gives existing devices new passwords instead.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::Region;
use aws_sdk_cognitoidentityprovider as idp;
use idp::types::{MessageActionType, UserStatusType};
use serde_json::json;

use crate::cli::ProvisionArgs;
use crate::config::{check_instance_id, check_region};

/// sysexits.h: bad input data (systems.txt, the outputs file) and an unavailable service.
pub const EX_DATAERR: u8 = 65;
pub const EX_UNAVAILABLE: u8 = 69;

/// Passwords are at least this long (the pool's policy may ask for more).
pub const PASSWORD_CHARS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Problems with an input file, each naming its line or key.
    #[error("{}", .0.join("\n"))]
    Input(Vec<String>),
    #[error("{0}")]
    Cognito(String),
    #[error("{path}: {source}", path = .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ProvisionError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ProvisionError::Input(_) => EX_DATAERR,
            ProvisionError::Cognito(_) => EX_UNAVAILABLE,
            ProvisionError::Write { .. } => crate::error::EX_CANTCREAT,
        }
    }
}

/// What the devices' configs need to know about the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub region: String,
    pub account_id: String,
    pub user_pool_id: String,
    pub identity_pool_id: String,
    pub app_client_id: String,
}

/// Reads the file `cdk deploy --outputs-file` writes: `{"<stack>": {"Region": ..., ...}}`.
/// The stack is the one object with a `UserPoolId`.
pub fn read_outputs(path: &Path) -> Result<Backend, ProvisionError> {
    let name = path.display();
    let input = |m: String| ProvisionError::Input(vec![format!("{name}: {m}")]);
    let text = std::fs::read_to_string(path).map_err(|e| input(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| input(format!("not JSON: {e}")))?;
    let stacks: Vec<_> = json
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.get("UserPoolId").is_some())
        .collect();
    let (stack, outputs) = match stacks.as_slice() {
        [one] => *one,
        [] => return Err(input("no stack in it has a UserPoolId output".into())),
        _ => {
            let names: Vec<_> = stacks.iter().map(|(k, _)| k.as_str()).collect();
            return Err(input(format!(
                "several stacks have a UserPoolId output ({}); give --user-pool-id and the \
                 other ids instead",
                names.join(", ")
            )));
        }
    };
    let mut problems = vec![];
    let mut get = |key: &str| match outputs.get(key).and_then(|v| v.as_str()) {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => {
            problems.push(format!("{name}: {stack}.{key} is missing or not a string"));
            String::new()
        }
    };
    let backend = Backend {
        region: get("Region"),
        account_id: get("AccountId"),
        user_pool_id: get("UserPoolId"),
        identity_pool_id: get("IdentityPoolId"),
        app_client_id: get("AppClientId"),
    };
    if problems.is_empty() {
        Ok(backend)
    } else {
        Err(ProvisionError::Input(problems))
    }
}

/// One device from systems.txt: its instance id and the line it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub line: usize,
    pub id: String,
}

/// Parses systems.txt: one instance id per line, `#` to the end of a line is a comment, blank
/// lines are skipped. Every duplicate and every id Cognito or the publisher would refuse is
/// reported with its line number.
pub fn parse_systems(text: &str, name: &str) -> Result<Vec<Device>, ProvisionError> {
    let mut devices = vec![];
    let mut problems = vec![];
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let id = raw.split('#').next().unwrap_or("").trim();
        if id.is_empty() {
            continue;
        }
        if let Err(e) = check_instance_id(id) {
            problems.push(format!("{name}:{line}: {id:?} {e}"));
            continue;
        }
        if split_id(id).is_none() {
            problems.push(format!(
                "{name}:{line}: {id:?} is not an instance id: prefix, a dash, then the serial \
                 (for example rpi-00000000abcdef01)"
            ));
            continue;
        }
        // Cognito user names are case-insensitive in pools made by the infrastructure stack.
        match seen.get(&id.to_lowercase()) {
            Some(first) => problems.push(format!(
                "{name}:{line}: {id:?} is listed already on line {first}"
            )),
            None => {
                seen.insert(id.to_lowercase(), line);
                devices.push(Device {
                    line,
                    id: id.to_owned(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(devices)
    } else {
        Err(ProvisionError::Input(problems))
    }
}

/// `prefix-serial` split at the first dash, both parts non-empty.
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('-')
        .filter(|(prefix, serial)| !prefix.is_empty() && !serial.is_empty())
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
/// Symbols Cognito accepts that need no quoting in JSON, shells or debconf answers.
const SYMBOLS: &[u8] = b"!#%*+,-.:=?@^_~";

/// A password from the operating system's CSPRNG, `len` characters drawn uniformly from
/// upper and lower case letters, digits and symbols, with at least one of each, so it meets
/// any Cognito password policy of that length.
pub fn generate_password(len: usize) -> String {
    let alphabet: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    let n = alphabet.len();
    // Bytes at or above the largest multiple of n are thrown away, so every character is
    // equally likely.
    let limit = 256 - 256 % n;
    loop {
        let mut out = Vec::with_capacity(len);
        let mut buf = [0u8; 64];
        while out.len() < len {
            getrandom::getrandom(&mut buf).expect("the operating system's random source");
            for &b in &buf {
                if (b as usize) < limit && out.len() < len {
                    out.push(alphabet[b as usize % n]);
                }
            }
        }
        let has = |class: &[u8]| out.iter().any(|c| class.contains(c));
        if has(UPPER) && has(LOWER) && has(DIGITS) && has(SYMBOLS) {
            return String::from_utf8(out).expect("ASCII");
        }
    }
}

/// A device's config: the publisher's defaults, signing in as its Cognito user.
pub fn device_config(backend: &Backend, id: &str, password: &str) -> String {
    let (prefix, serial) = split_id(id).expect("checked when systems.txt was read");
    let config = json!({
        "agent": {
            "region": backend.region,
            "instance": { "prefix": prefix, "serial": serial },
            "authentication": {
                "accountId": backend.account_id,
                "userPoolId": backend.user_pool_id,
                "identityPoolId": backend.identity_pool_id,
                "appClientId": backend.app_client_id,
                "password": password,
            },
            "metrics_collection_interval": 60
        },
        // The original metrics, and what fails a Pi in the field: a full SD card, heat, a weak
        // power supply (the same as the Debian package's config).
        "metrics": {
            "namespace": "System/Default",
            "metrics_collected": {
                "summary": {},
                "disk": { "resources": ["/"], "measurement": ["used_percent"], "drop_device": true },
                "temperature": { "measurement": ["celsius"] },
                "throttling": { "measurement": ["under_voltage", "under_voltage_since_boot", "throttled",
                    "throttled_since_boot", "frequency_capped", "soft_temperature_limit"] }
            },
            "append_dimensions": { "InstanceId": "${aws:InstanceId}" }
        }
    });
    let mut text = serde_json::to_string_pretty(&config).expect("JSON values serialize");
    text.push('\n');
    text
}

/// The Debian package's answers for a device (`debconf-set-selections` format).
pub fn device_preseed(backend: &Backend, id: &str, password: &str) -> String {
    let (prefix, serial) = split_id(id).expect("checked when systems.txt was read");
    let p = "amazon-cloudwatch-publisher";
    let mut out = String::new();
    for (question, kind, value) in [
        ("region", "string", backend.region.as_str()),
        ("account_id", "string", &backend.account_id),
        ("user_pool_id", "string", &backend.user_pool_id),
        ("identity_pool_id", "string", &backend.identity_pool_id),
        ("app_client_id", "string", &backend.app_client_id),
        ("password", "password", password),
        ("instance_prefix", "string", prefix),
        (
            "serial_command",
            "string",
            &format!("echo '{}'", serial.replace('\'', r"'\''")),
        ),
    ] {
        let _ = writeln!(out, "{p} {p}/{question} {kind} {value}");
    }
    out
}

/// Writes a file only its owner can read, replacing it whole.
fn write_private(path: &Path, text: &str) -> Result<(), ProvisionError> {
    crate::durable::write_private(path, text.as_bytes(), None).map_err(|source| {
        ProvisionError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

fn cognito_error(what: &str, e: &(dyn std::error::Error + 'static)) -> ProvisionError {
    ProvisionError::Cognito(format!("{what}: {}", crate::aws::describe(e)))
}

/// The pool's users: name (lower case) → whether it still waits for a first password.
async fn list_users(
    client: &idp::Client,
    pool: &str,
) -> Result<HashMap<String, bool>, ProvisionError> {
    let mut users = HashMap::new();
    let mut token = None;
    loop {
        let page = client
            .list_users()
            .user_pool_id(pool)
            .set_pagination_token(token)
            .limit(60)
            .attributes_to_get("sub")
            .send()
            .await
            .map_err(|e| cognito_error(&format!("listing the users of {pool}"), &e))?;
        for user in page.users() {
            if let Some(name) = user.username() {
                let unfinished = user.user_status() == Some(&UserStatusType::ForceChangePassword);
                users.insert(name.to_lowercase(), unfinished);
            }
        }
        token = page.pagination_token().map(str::to_owned);
        if token.is_none() {
            return Ok(users);
        }
    }
}

async fn min_password_length(client: &idp::Client, pool: &str) -> Result<usize, ProvisionError> {
    let out = client
        .describe_user_pool()
        .user_pool_id(pool)
        .send()
        .await
        .map_err(|e| cognito_error(&format!("reading the password policy of {pool}"), &e))?;
    let min = out
        .user_pool()
        .and_then(|p| p.policies())
        .and_then(|p| p.password_policy())
        .and_then(|p| p.minimum_length())
        .unwrap_or(0);
    Ok(PASSWORD_CHARS.max(usize::try_from(min).unwrap_or(0)))
}

/// Creates the user with `password` as its temporary password (no message sent). A user made
/// meanwhile by someone else is taken as made: the password set next takes over.
async fn create_user(
    client: &idp::Client,
    pool: &str,
    id: &str,
    password: &str,
) -> Result<(), ProvisionError> {
    let created = client
        .admin_create_user()
        .user_pool_id(pool)
        .username(id)
        .temporary_password(password)
        .message_action(MessageActionType::Suppress)
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_username_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(cognito_error(&format!("creating user {id}"), &e)),
    }
}

/// Makes `password` the user's permanent password.
async fn set_password(
    client: &idp::Client,
    pool: &str,
    id: &str,
    password: &str,
) -> Result<(), ProvisionError> {
    client
        .admin_set_user_password()
        .user_pool_id(pool)
        .username(id)
        .password(password)
        .permanent(true)
        .send()
        .await
        .map_err(|e| cognito_error(&format!("setting the password of {id}"), &e))?;
    Ok(())
}

pub async fn run(args: &ProvisionArgs) -> Result<(), ProvisionError> {
    let mut backend = match &args.outputs {
        Some(path) => read_outputs(path)?,
        None => {
            let pool = args.user_pool_id.clone().unwrap_or_default();
            Backend {
                region: pool.split('_').next().unwrap_or_default().to_owned(),
                account_id: args.account_id.clone().unwrap_or_default(),
                user_pool_id: pool,
                identity_pool_id: args.identity_pool_id.clone().unwrap_or_default(),
                app_client_id: args.app_client_id.clone().unwrap_or_default(),
            }
        }
    };
    if let Some(region) = &args.region {
        backend.region = region.clone();
    }
    let mut problems = vec![];
    if let Err(e) = check_region(&backend.region) {
        problems.push(format!("region: {e}"));
    }
    let pool_region = backend.user_pool_id.split_once('_').map(|(r, _)| r);
    if pool_region.is_none_or(|r| check_region(r).is_err()) {
        problems.push(format!(
            "user pool id {:?} is not one: region_id, such as us-east-1_AbCdEf123",
            backend.user_pool_id
        ));
    }
    if backend.account_id.len() != 12 || !backend.account_id.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!(
            "account id {:?} is not 12 digits",
            backend.account_id
        ));
    }
    if !problems.is_empty() {
        return Err(ProvisionError::Input(problems));
    }
    let systems_name = args.systems.display().to_string();
    let text = std::fs::read_to_string(&args.systems)
        .map_err(|e| ProvisionError::Input(vec![format!("{systems_name}: {e}")]))?;
    let devices = parse_systems(&text, &systems_name)?;
    if devices.is_empty() {
        eprintln!("{systems_name} lists no devices; nothing to do.");
        return Ok(());
    }

    // The pool's own region, whatever region the devices publish to. Throttled calls are
    // retried by the SDK (TooManyRequestsException is a throttling error) with backoff.
    let sdk = crate::aws::base_loader(pool_region.map(|r| Region::new(r.to_owned())), None)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(500)),
        )
        .load()
        .await;
    let client = idp::Client::new(&sdk);
    let pool = backend.user_pool_id.clone();
    let users = list_users(&client, &pool).await?;
    let listed: HashSet<String> = devices.iter().map(|d| d.id.to_lowercase()).collect();
    let others = users.keys().filter(|u| !listed.contains(*u)).count();
    if others > 0 {
        eprintln!(
            "{others} user(s) in {pool} are not in {systems_name}; they are left as they are."
        );
    }
    let rotating = args.rotate_all || !args.rotate.is_empty();
    let jobs = if rotating {
        rotations(args, &devices, &users, &systems_name)?
    } else {
        devices
            .iter()
            .filter_map(|d| match users.get(&d.id.to_lowercase()) {
                None => Some(Job::Create(d.clone())),
                Some(true) => Some(Job::Finish(d.clone())),
                Some(false) => None,
            })
            .collect()
    };
    let have = devices.len() - jobs.len();
    if jobs.is_empty() {
        eprintln!(
            "All {} device(s) in {systems_name} already have users in {pool}; nothing to do.",
            devices.len()
        );
        return Ok(());
    }
    if args.dry_run {
        for job in &jobs {
            let d = job.device();
            let (what, why) = match job {
                Job::Create(_) => ("would create", ""),
                Job::Finish(_) => ("would set a new password for", "its user never got one; "),
                Job::Rotate(_) => ("would give a new password to", ""),
            };
            println!("{what} {} ({why}{systems_name}:{})", d.id, d.line);
        }
        eprintln!(
            "Dry run: {} of {} device(s) would be handled. Nothing was created or written.",
            jobs.len(),
            devices.len()
        );
        return Ok(());
    }

    let length = min_password_length(&client, &pool).await?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out_dir)
        .map_err(|source| ProvisionError::Write {
            path: args.out_dir.clone(),
            source,
        })?;
    let work = Arc::new(Work {
        client,
        pool,
        backend,
        out_dir: args.out_dir.clone(),
        length,
        creating: Pace::new(args.rate),
        setting: Pace::new(args.rate),
        failed: AtomicBool::new(false),
    });
    let progress = Progress::new(jobs.len(), rotating);
    let permits = Arc::new(tokio::sync::Semaphore::new(usize::from(args.concurrency)));
    let mut running = tokio::task::JoinSet::new();
    for job in jobs {
        let (work, permits, progress) = (Arc::clone(&work), Arc::clone(&permits), progress.clone());
        running.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            // After a failure, what has not started is left for the next run.
            if work.failed.load(Ordering::Relaxed) {
                return None;
            }
            let result = work.run(&job).await;
            if result.is_err() {
                work.failed.store(true, Ordering::Relaxed);
            }
            progress.tick();
            Some((job, result))
        });
    }
    let mut done: Vec<(Device, String)> = vec![];
    let mut failures = vec![];
    while let Some(joined) = running.join_next().await {
        match joined.expect("a provisioning task does not panic") {
            Some((job, Ok(password))) => done.push((job.device().clone(), password)),
            Some((_, Err(e))) => failures.push(e),
            None => {}
        }
    }
    progress.finish();
    done.sort_by_key(|(d, _)| d.line);
    // The passwords are shown this once (and are in the files written).
    if !done.is_empty() {
        let width = done
            .iter()
            .map(|(d, _)| d.id.len())
            .max()
            .unwrap_or(0)
            .max(11);
        println!("{:width$}  password", "instance id");
        for (d, password) in &done {
            println!("{:width$}  {password}", d.id);
        }
        if rotating {
            eprintln!(
                "New passwords for {} device(s); their old passwords no longer work. Each of them \
                 must receive its new {}/<id>.json (or run configure --answers <id>.preseed) \
                 and restart the publisher; until then it cannot sign in: {}.",
                done.len(),
                args.out_dir.display(),
                done.iter()
                    .map(|(d, _)| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else {
            eprintln!(
                "Created {} user(s); {have} device(s) had one already. For each new device, {} holds \
                 <id>.json (its config, for /opt/aws/amazon-cloudwatch-publisher/etc/) and \
                 <id>.preseed (answers for the Debian package: debconf-set-selections). They hold \
                 the passwords: copy each to its device only, then delete them.",
                done.len(),
                args.out_dir.display()
            );
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            eprintln!("{n} devices failed; the first error follows. Run provision again to finish: it picks up where this run stopped.");
            Err(failures.remove(0))
        }
    }
}

/// The devices `--rotate` or `--rotate-all` names, each with a user that has a password.
fn rotations(
    args: &ProvisionArgs,
    devices: &[Device],
    users: &HashMap<String, bool>,
    systems_name: &str,
) -> Result<Vec<Job>, ProvisionError> {
    let mut problems = vec![];
    let mut jobs = vec![];
    let named: Vec<&Device> = if args.rotate_all {
        devices.iter().collect()
    } else {
        let mut named = vec![];
        for id in &args.rotate {
            match devices.iter().find(|d| d.id.eq_ignore_ascii_case(id)) {
                Some(d) => named.push(d),
                None => problems.push(format!("--rotate {id}: not a device in {systems_name}")),
            }
        }
        named
    };
    for d in named {
        match users.get(&d.id.to_lowercase()) {
            Some(false) => jobs.push(Job::Rotate(d.clone())),
            // --rotate-all passes over devices without a finished user.
            _ if args.rotate_all => {}
            _ => problems.push(format!(
                "--rotate {}: it has no user with a password yet; run provision without --rotate first",
                d.id
            )),
        }
    }
    if problems.is_empty() {
        Ok(jobs)
    } else {
        Err(ProvisionError::Input(problems))
    }
}

/// What to do for one device.
enum Job {
    /// Create its user.
    Create(Device),
    /// Its user was created by a run that stopped before the password was made permanent.
    Finish(Device),
    /// Give it a new password.
    Rotate(Device),
}

impl Job {
    fn device(&self) -> &Device {
        match self {
            Job::Create(d) | Job::Finish(d) | Job::Rotate(d) => d,
        }
    }
}

/// What every device's task shares.
struct Work {
    client: idp::Client,
    pool: String,
    backend: Backend,
    out_dir: PathBuf,
    length: usize,
    creating: Pace,
    setting: Pace,
    failed: AtomicBool,
}

impl Work {
    /// Does one job; returns the device's password.
    ///
    /// A new user is created with its password as a temporary one, the device's files are
    /// written, and only then is the password made permanent: a run stopped in between leaves
    /// a user waiting for a password, which the next run gives a new one (and new files), so
    /// no password is ever lost. A rotation too writes the files first: a run stopped before
    /// the password is set leaves the old one working (and files no device has been given
    /// yet, which the next `--rotate` rewrites).
    async fn run(&self, job: &Job) -> Result<String, ProvisionError> {
        let password = generate_password(self.length);
        let id = &job.device().id;
        match job {
            Job::Create(_) | Job::Finish(_) => {
                if let Job::Create(_) = job {
                    self.creating.wait().await;
                    create_user(&self.client, &self.pool, id, &password).await?;
                }
                self.write_files(id, &password)?;
                self.setting.wait().await;
                set_password(&self.client, &self.pool, id, &password).await?;
            }
            Job::Rotate(_) => {
                self.write_files(id, &password)?;
                self.setting.wait().await;
                set_password(&self.client, &self.pool, id, &password)
                    .await
                    .map_err(|e| {
                        ProvisionError::Cognito(format!(
                            "{e}; {id}'s files now hold a password that was not set, and its old \
                             password still works: run provision --rotate {id} again"
                        ))
                    })?;
            }
        }
        Ok(password)
    }

    fn write_files(&self, id: &str, password: &str) -> Result<(), ProvisionError> {
        let base = self.out_dir.join(id);
        write_private(
            &base.with_extension("json"),
            &device_config(&self.backend, id, password),
        )?;
        write_private(
            &base.with_extension("preseed"),
            &device_preseed(&self.backend, id, password),
        )
    }
}

/// At most `rate` calls a second, spaced evenly, for all tasks together.
struct Pace {
    every: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    fn new(rate: u16) -> Pace {
        Pace {
            every: Duration::from_secs(1) / u32::from(rate.max(1)),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.every;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// How far a run is: a bar on a terminal, else a line at every tenth and at the end.
#[derive(Clone)]
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    done: Arc<AtomicUsize>,
    total: usize,
    what: &'static str,
}

impl Progress {
    fn new(total: usize, rotating: bool) -> Progress {
        use std::io::IsTerminal;
        let what = if rotating { "rotated" } else { "provisioned" };
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} devices {msg} ({per_sec}, {eta} left)",
            ) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar
        });
        Progress {
            bar,
            done: Arc::new(AtomicUsize::new(0)),
            total,
            what,
        }
    }

    fn tick(&self) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => {
                let step = self.total.div_ceil(10).max(1);
                if n.is_multiple_of(step) || n == self.total {
                    eprintln!("{n}/{} devices {}", self.total, self.what);
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_txt_reports_duplicates_and_bad_ids_with_their_lines() {
        let text =
            "# the fleet\n\nrpi-0001\nrpi-0002  # kitchen\nrpi-0001\nbad id\nnodash\nRPI-0002\n";
        let e = parse_systems(text, "systems.txt").unwrap_err();
        let ProvisionError::Input(problems) = e else {
            panic!()
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("systems.txt:5: \"rpi-0001\" is listed already on line 3"));
        assert!(problems[1].starts_with("systems.txt:6: \"bad id\" contains ' '"));
        assert!(problems[2].starts_with("systems.txt:7: \"nodash\" is not an instance id"));
        assert!(problems[3].starts_with("systems.txt:8: \"RPI-0002\" is listed already on line 4"));
        let ok = parse_systems("rpi-0001\n  rpi-0002 # x\n", "s").unwrap();
        assert_eq!(
            ok,
            vec![
                Device {
                    line: 1,
                    id: "rpi-0001".into()
                },
                Device {
                    line: 2,
                    id: "rpi-0002".into()
                }
            ]
        );
    }

    #[test]
    fn passwords_are_long_mixed_and_different() {
        let a = generate_password(PASSWORD_CHARS);
        let b = generate_password(PASSWORD_CHARS);
        assert_eq!(a.len(), PASSWORD_CHARS);
        assert_ne!(a, b);
        for class in [UPPER, LOWER, DIGITS, SYMBOLS] {
            assert!(a.bytes().any(|c| class.contains(&c)), "{a}");
        }
        assert!(a.bytes().all(|c| [UPPER, LOWER, DIGITS, SYMBOLS]
            .iter()
            .any(|k| k.contains(&c))));
        assert_eq!(generate_password(99).len(), 99);
        // Uniform: over many characters every symbol of the alphabet turns up.
        let many: HashSet<u8> = (0..50)
            .flat_map(|_| generate_password(64).into_bytes())
            .collect();
        assert_eq!(
            many.len(),
            UPPER.len() + LOWER.len() + DIGITS.len() + SYMBOLS.len()
        );
    }

    #[test]
    fn the_outputs_file_gives_the_backend_or_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outputs.json");
        std::fs::write(
            &path,
            r#"{"Other": {"X": "y"}, "PublisherBackend": {"Region": "eu-west-1", "AccountId": "123456789012",
               "UserPoolId": "eu-west-1_AbC", "IdentityPoolId": "eu-west-1:abc", "AppClientId": "client"}}"#,
        )
        .unwrap();
        let b = read_outputs(&path).unwrap();
        assert_eq!(b.region, "eu-west-1");
        assert_eq!(b.app_client_id, "client");
        std::fs::write(
            &path,
            r#"{"S": {"UserPoolId": "eu-west-1_AbC", "Region": 3}}"#,
        )
        .unwrap();
        let ProvisionError::Input(problems) = read_outputs(&path).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].ends_with("S.Region is missing or not a string"));
    }

    #[test]
    fn device_files_reproduce_the_instance_id_and_hold_the_password() {
        let b = Backend {
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
            user_pool_id: "eu-west-1_AbC".into(),
            identity_pool_id: "eu-west-1:abc".into(),
            app_client_id: "client".into(),
        };
        let config: serde_json::Value =
            serde_json::from_str(&device_config(&b, "rpi-00000000abcdef01", "p#w")).unwrap();
        assert_eq!(config["agent"]["instance"]["prefix"], "rpi");
        assert_eq!(config["agent"]["instance"]["serial"], "00000000abcdef01");
        assert_eq!(config["agent"]["authentication"]["password"], "p#w");
        let preseed = device_preseed(&b, "mac-c02-xyz", "p#w");
        assert!(preseed.contains(
            "amazon-cloudwatch-publisher amazon-cloudwatch-publisher/password password p#w\n"
        ));
        assert!(preseed.contains("/instance_prefix string mac\n"));
        assert!(preseed.contains("/serial_command string echo 'c02-xyz'\n"));
        let quoted = device_preseed(&b, "rpi-a'b$(id)", "p");
        assert!(
            quoted.contains(r#"/serial_command string echo 'a'\''b$(id)'"#),
            "{quoted}"
        );
    }
}
