//! The `capbill` binary: parse flags, start logging, run, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for reuse: every usage object decodes into
/// buffers of the same sizes, which the system allocator would map and fault
/// in afresh each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
