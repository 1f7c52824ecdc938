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
    /// Check a partner directory export without billing: everything a run
    /// validates, plus the findings that need no usage.
    Validate(ValidateArgs),
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

    /// Only the directory matters (validate).
    fn load_for_directory(&self) -> Result<Config, ConfigError> {
        let mut args = self.clone();
        args.usage.get_or_insert_with(|| ".".to_owned());
        args.out.get_or_insert_with(|| ".".to_owned());
        args.load()
    }
}

/// Flags of `capbill run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Billing month, YYYY-MM (UTC). Without it: the nightly job.
    #[arg(long, value_parser = parse_month)]
    pub month: Option<BillingMonth>,
    /// Write a machine-readable run summary (JSON) here, also when the run fails.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
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
    /// Write a machine-readable run summary (JSON) here, also when the run fails.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
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

/// Flags of `capbill validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Month whose contracts the allocation and deal checks look at (default: the current month).
    #[arg(long, value_parser = parse_month)]
    pub month: Option<BillingMonth>,
    /// Locations (only --directory is read).
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
        Command::Run(args) => with_summary("run", args.summary_json.as_deref(), || {
            let config = args.config.load()?;
            let now = now()?;
            match args.month {
                Some(month) => {
                    let req = Request { month, mode: Mode::Run, now, requested_by: requested_by() };
                    let outcome = rt.block_on(pipeline::bill_month(&config, &req))?;
                    Ok((vec![outcome], None))
                }
                None => Ok(rt.block_on(pipeline::nightly(&config, now, &requested_by()))),
            }
        }),
        Command::Reprocess(args) => with_summary("reprocess", args.summary_json.as_deref(), || {
            let config = args.config.load()?;
            let mode = Mode::Reprocess { reason: args.reason.clone() };
            let req = Request { month: args.month, mode, now: now()?, requested_by: requested_by() };
            Ok((vec![rt.block_on(pipeline::bill_month(&config, &req))?], None))
        }),
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
        Command::Validate(args) => {
            let config = args.config.load_for_directory()?;
            let month = match args.month {
                Some(m) => m,
                None => BillingMonth::containing(now()?.date_naive()),
            };
            print!("{}", rt.block_on(report::validate(&config, month))?);
            Ok(())
        }
    }
}

/// Runs a billing command, prints each month's summary, and writes the JSON
/// summary (when asked) whatever the outcome.
fn with_summary(
    command: &'static str,
    path: Option<&std::path::Path>,
    f: impl FnOnce() -> Result<(Vec<pipeline::Outcome>, Option<Error>), Error>,
) -> Result<(), Error> {
    let started = Utc::now();
    let t = std::time::Instant::now();
    let (outcomes, error) = match f() {
        Ok(r) => r,
        Err(e) => (Vec::new(), Some(e)),
    };
    for o in &outcomes {
        print!("{}", o.summary());
    }
    if let Some(path) = path {
        let summary = crate::summary::RunSummary {
            status: if error.is_none() { "success" } else { "failed" },
            exit_code: error.as_ref().map_or(crate::error::exit::SUCCESS, Error::exit_code),
            command,
            started_at: started,
            finished_at: Utc::now(),
            duration_ms: t.elapsed().as_millis() as u64,
            months: outcomes.iter().map(Into::into).collect(),
            error: error.as_ref().map(|e| crate::error::chain(e)),
        };
        if let Err(e) = summary.write(path) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the run summary");
        }
        // Also as one log line, for collectors that do not read files.
        tracing::info!(summary = %serde_json::to_string(&summary).expect("summary serialises"), "run summary");
    }
    error.map_or(Ok(()), Err)
}
