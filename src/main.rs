use std::process::ExitCode;

use clap::Parser;

use amazon_cloudwatch_publisher::{app, cli::Args, logging};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
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
            return ExitCode::from(app::EX_SOFTWARE);
        }
    };
    match runtime.block_on(app::run(args)) {
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
