//! Command-line interface: clap types and the dispatch of subcommands.
//!
//! Flags control one invocation (month, log format, reason); the config file
//! describes the billing run. Every location flag overrides the config.
//! `CAPBILL_NOW` (RFC 3339) replaces the clock, for tests and for replaying
//! a night.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError, Overrides};
use crate::error::Error;
use crate::model::{BillingMonth, DailyMethod, Unit};
use crate::pipeline::{self, Mode, Request};
use crate::report;

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
    /// Bill a month (or, without --month, the nightly job: the previous month
    /// until it is final, then the current month to date).
    Run(RunArgs),
    /// Re-bill a final month whose inputs changed: a new final revision with corrections.
    Reprocess(ReprocessArgs),
    /// Differences between two revisions of a month, per invoice and per line.
    Diff(DiffArgs),
    /// Revisions of a month, or of every month, with status, time, totals and reason.
    Status(StatusArgs),
}

/// Where the run reads and writes, and its billing settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
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

impl ConfigArgs {
    fn load(&self) -> Result<Config, ConfigError> {
        let overrides = Overrides {
            directory: self.directory.clone(),
            usage: self.usage.clone(),
            out: self.out.clone(),
            unit: self.unit,
            daily_method: self.daily_method,
            skip_bad_records: self.skip_bad_records,
        };
        Config::load(self.config.as_deref(), &overrides)
    }

    /// Only the output location matters (diff, status): the inputs may be absent.
    fn load_for_reading(&self) -> Result<Config, ConfigError> {
        let mut args = self.clone();
        args.directory.get_or_insert_with(|| ".".to_owned());
        args.usage.get_or_insert_with(|| ".".to_owned());
        args.load()
    }
}

/// Flags of `capbill run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Billing month, YYYY-MM (UTC). Without it: the nightly job.
    #[arg(long, value_parser = parse_month)]
    pub month: Option<BillingMonth>,
    /// Locations and settings.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of `capbill reprocess`.
#[derive(Debug, clap::Args)]
pub struct ReprocessArgs {
    /// Billing month, YYYY-MM.
    #[arg(long, value_parser = parse_month)]
    pub month: BillingMonth,
    /// Why the month is reprocessed (recorded in the manifest).
    #[arg(long)]
    pub reason: String,
    /// Locations and settings.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Output format of `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Tables for a terminal.
    Text,
    /// CSV on stdout (one level, see --level).
    Csv,
}

/// Which differences `diff --format csv` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffLevel {
    /// Per invoice line.
    Lines,
    /// Per invoice (seller, buyer, currency).
    Invoices,
}

/// Flags of `capbill diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Billing month, YYYY-MM.
    #[arg(long, value_parser = parse_month)]
    pub month: BillingMonth,
    /// Older revision (default: the one before --to).
    #[arg(long)]
    pub from: Option<u32>,
    /// Newer revision (default: the latest).
    #[arg(long)]
    pub to: Option<u32>,
    /// Text tables or CSV.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Lines or invoices (CSV only; text shows both).
    #[arg(long, value_enum, default_value_t = DiffLevel::Lines)]
    pub level: DiffLevel,
    /// Locations.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of `capbill status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Billing month, YYYY-MM (default: every month with outputs).
    #[arg(long, value_parser = parse_month)]
    pub month: Option<BillingMonth>,
    /// Locations.
    #[command(flatten)]
    pub config: ConfigArgs,
}

fn parse_month(s: &str) -> Result<BillingMonth, String> {
    s.parse()
}

/// The clock: `CAPBILL_NOW` if set (RFC 3339), else the system time.
pub fn now() -> Result<DateTime<Utc>, ConfigError> {
    match std::env::var("CAPBILL_NOW") {
        Ok(s) if !s.is_empty() => DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| ConfigError::Invalid { setting: "CAPBILL_NOW", reason: format!("{s:?}: {e}") }),
        _ => Ok(Utc::now()),
    }
}

/// `user@host` of this invocation.
pub fn requested_by() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_owned());
    format!("{user}@{}", crate::revision::lock::host_name())
}

/// Runs the parsed command; prints its result on stdout.
pub fn execute(cli: Cli) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime starts");
    match cli.command {
        Command::Run(args) => {
            let config = args.config.load()?;
            let now = now()?;
            match args.month {
                Some(month) => {
                    let req = Request { month, mode: Mode::Run, now, requested_by: requested_by() };
                    print!("{}", rt.block_on(pipeline::bill_month(&config, &req))?.summary());
                    Ok(())
                }
                None => {
                    let (outcomes, error) = rt.block_on(pipeline::nightly(&config, now, &requested_by()));
                    for o in &outcomes {
                        print!("{}", o.summary());
                    }
                    error.map_or(Ok(()), Err)
                }
            }
        }
        Command::Reprocess(args) => {
            let config = args.config.load()?;
            let mode = Mode::Reprocess { reason: args.reason };
            let req = Request { month: args.month, mode, now: now()?, requested_by: requested_by() };
            print!("{}", rt.block_on(pipeline::bill_month(&config, &req))?.summary());
            Ok(())
        }
        Command::Diff(args) => {
            let config = args.config.load_for_reading()?;
            let text = rt.block_on(report::diff(&config, args.month, args.from, args.to, args.format, args.level))?;
            print!("{text}");
            Ok(())
        }
        Command::Status(args) => {
            let config = args.config.load_for_reading()?;
            print!("{}", rt.block_on(report::status(&config, args.month))?);
            Ok(())
        }
    }
}
