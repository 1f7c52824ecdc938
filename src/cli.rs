//! Command-line interface: clap types and the dispatch of subcommands.
//!
//! Flags control one invocation (month, log format); the config file
//! describes the billing run. Every location flag overrides the config.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};
use crate::error::Error;
use crate::model::{BillingMonth, DailyMethod, Unit};
use crate::pipeline;

/// capbill: bills the storage usage of an S3-compatible cloud on every edge of its partner channel.
#[derive(Debug, Parser)]
#[command(name = "capbill", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: `auto` is text on a terminal and JSON lines otherwise.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bill a month and publish a new revision of its outputs.
    Run(RunArgs),
}

/// Flags of `capbill run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Billing month, YYYY-MM (UTC calendar month).
    #[arg(long, value_parser = parse_month)]
    pub month: BillingMonth,
    /// Config file (default: config/capbill.toml if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Partner directory: local folder or s3://bucket/prefix.
    #[arg(long)]
    pub directory: Option<String>,
    /// Usage records: local folder or s3://bucket/prefix, read recursively.
    #[arg(long)]
    pub usage: Option<String>,
    /// Output root: local folder or s3://bucket/prefix.
    #[arg(long)]
    pub out: Option<String>,
    /// Capacity unit (overrides the config).
    #[arg(long, value_enum)]
    pub unit: Option<Unit>,
    /// Daily value of an account: mean or max of the day's snapshots (overrides the config).
    #[arg(long, value_enum)]
    pub daily_method: Option<DailyMethod>,
    /// Skip malformed usage records, reporting each as a finding, instead of stopping.
    #[arg(long)]
    pub skip_bad_records: bool,
}

fn parse_month(s: &str) -> Result<BillingMonth, String> {
    s.parse()
}

/// Runs the parsed command; prints its summary on stdout.
pub fn execute(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run(args) => {
            let overrides = Overrides {
                directory: args.directory,
                usage: args.usage,
                out: args.out,
                unit: args.unit,
                daily_method: args.daily_method,
                skip_bad_records: args.skip_bad_records,
            };
            let config = Config::load(args.config.as_deref(), &overrides)?;
            let report = runtime().block_on(pipeline::run(&config, args.month))?;
            print!("{}", report.summary());
            Ok(())
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts")
}
