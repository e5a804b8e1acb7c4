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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
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
