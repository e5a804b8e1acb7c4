use std::process::ExitCode;

use clap::Parser;

use amazon_cloudwatch_publisher::{cli::Args, commands, error, logging};

/// Large buffers (log batches and request bodies, around 1 MiB) get their own mappings and go
/// back to the system when freed. glibc otherwise raises this threshold after the first free
/// and keeps such buffers in per-thread heaps, where they stay resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let mut args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    if args.daemon {
        // Say what is wrong with the config here, while someone is looking; then detach,
        // before any thread exists.
        if let Err(e) = amazon_cloudwatch_publisher::config::load(&args.config) {
            eprintln!("amazon-cloudwatch-publisher: {e}");
            return ExitCode::from(error::EX_CONFIG);
        }
        // The background process works in /, so relative paths are resolved now.
        if let Ok(p) = std::path::absolute(&args.config) {
            args.config = p;
        }
        if let Some(p) = args.pid_file.as_mut() {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
        let mut detach = daemonize::Daemonize::new().working_directory("/");
        if let Some(pid_file) = &args.pid_file {
            detach = detach.pid_file(pid_file);
        }
        if let Err(e) = detach.start() {
            eprintln!("amazon-cloudwatch-publisher: cannot run in the background: {e}");
            return ExitCode::from(error::EX_SOFTWARE);
        }
    }
    let pid_file = args.pid_file.clone();
    // One async thread is plenty for a few requests a minute and keeps memory down on a Pi;
    // sampling, file and spool work run on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("amazon-cloudwatch-publisher: cannot start the async runtime: {e}");
            return ExitCode::from(error::EX_SOFTWARE);
        }
    };
    let result = runtime.block_on(commands::run(args));
    // A blocking task still running (a write to a disk that hangs) does not keep the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Some(pid_file) = pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if logging::active() {
                tracing::error!("{e}");
            }
            if !logging::to_stderr() {
                eprintln!("amazon-cloudwatch-publisher: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
