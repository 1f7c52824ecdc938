//! The `capbill` binary: parse flags, start logging, run, map the error to an exit code.
//!
//! A panic prints no backtrace for the operator: the panic hook logs the
//! message and the backtrace at debug level, and the panic ends as one
//! `error: internal error: ...` line and exit code 1.

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
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::debug!(panic = %info, %backtrace, "panic");
    }));
    let result = std::panic::catch_unwind(|| capbill::cli::execute(cli))
        .unwrap_or_else(|panic| Err(capbill::error::Error::from_panic(&*panic)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", capbill::error::chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
