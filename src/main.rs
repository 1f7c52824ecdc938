//! The `capbill` binary: parse flags, start logging, run, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = capbill::cli::Cli::parse();
    capbill::logging::init(cli.log_format);
    match capbill::cli::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", capbill::error::chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
