//! Command-line interface: clap types and the dispatch of subcommands.
//!
//! Flags control one invocation (month, log format, reason); the config file
//! describes the billing run. Every location flag overrides the config, and
//! so do the `CAPBILL_S3_*` variables (clap reads them, as `--s3-*` flags).
//! `CAPBILL_NOW` (RFC 3339) replaces the clock, for tests and for replaying
//! a night. The CLI maps its own enums onto the library's; nothing below
//! it knows clap types, except the presentation enums of `logging` and
//! `report`.

use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{CollectOverrides, Config, ConfigError, MetricPreset, Overrides, S3Overrides, SourceKind};
use crate::error::Error;
use crate::logging::LogFormat;
use crate::model::{BillingMonth, DailyMethod, Unit};
use crate::pipeline::{self, Request};
use crate::report::{self, DiffFormat, DiffLevel};
use crate::revision::Mode;
use crate::storage::s3::{ChecksumMode, Secret};

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
    /// The clock (RFC 3339) instead of the system time: a testing aid, for
    /// replaying a night; never set it in production.
    #[arg(long, env = "CAPBILL_NOW", global = true, hide = true, value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
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
    /// Where the statement of a seller's invoice to a buyer is, or a copy of it.
    Statement(StatementArgs),
    /// Take one snapshot of every bucket's stored bytes from the storage
    /// system and write it as usage records (the hourly job).
    Collect(CollectArgs),
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
    pub unit: Option<UnitArg>,
    /// Daily value of an account: mean or max of the day's snapshots (overrides the config).
    #[arg(long, value_enum)]
    pub daily_method: Option<DailyMethodArg>,
    /// Skip malformed usage records, reporting each as a finding, instead of stopping.
    #[arg(long)]
    pub skip_bad_records: bool,
    /// Memory the run aims to stay within, in MiB (overrides `[operations] memory_budget_mib`).
    #[arg(long, env = "CAPBILL_MEMORY_BUDGET_MIB", value_name = "MIB",
          value_parser = setting::<u64>("CAPBILL_MEMORY_BUDGET_MIB"))]
    pub memory_budget_mib: Option<u64>,
    /// S3 connection settings of this invocation.
    #[command(flatten)]
    pub s3: S3Args,
}

/// `--unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnitArg {
    /// 10^12 bytes.
    Tb,
    /// 2^40 bytes.
    Tib,
}

impl From<UnitArg> for Unit {
    fn from(u: UnitArg) -> Unit {
        match u {
            UnitArg::Tb => Unit::Tb,
            UnitArg::Tib => Unit::Tib,
        }
    }
}

/// `--daily-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DailyMethodArg {
    /// Mean of the day's snapshots.
    Mean,
    /// Largest snapshot of the day.
    Max,
}

impl From<DailyMethodArg> for DailyMethod {
    fn from(m: DailyMethodArg) -> DailyMethod {
        match m {
            DailyMethodArg::Mean => DailyMethod::Mean,
            DailyMethodArg::Max => DailyMethod::Max,
        }
    }
}

/// S3 connection settings of one invocation. Each is usually set as its
/// environment variable (a Kubernetes deployment sets them so); each
/// overrides the config file's `[s3]` value.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "S3 connection (usually set in the environment)")]
pub struct S3Args {
    /// Endpoint URL of an S3-compatible service.
    #[arg(long = "s3-endpoint-url", env = "CAPBILL_S3_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Region name.
    #[arg(long = "s3-region", env = "CAPBILL_S3_REGION", value_name = "REGION")]
    pub region: Option<String>,
    /// Path-style addressing (`true` for most non-AWS servers).
    #[arg(long = "s3-force-path-style", env = "CAPBILL_S3_FORCE_PATH_STYLE", value_name = "BOOL",
          value_parser = setting::<bool>("CAPBILL_S3_FORCE_PATH_STYLE"))]
    pub force_path_style: Option<bool>,
    /// Request checksums: `when_supported` or `when_required`.
    #[arg(long = "s3-checksum", env = "CAPBILL_S3_CHECKSUM", value_name = "MODE",
          value_parser = setting::<ChecksumMode>("CAPBILL_S3_CHECKSUM"))]
    pub checksum: Option<ChecksumMode>,
    /// Attempts per request, the first included.
    #[arg(long = "s3-max-attempts", env = "CAPBILL_S3_MAX_ATTEMPTS", value_name = "N",
          value_parser = setting::<u32>("CAPBILL_S3_MAX_ATTEMPTS"))]
    pub max_attempts: Option<u32>,
    /// Connect timeout in seconds.
    #[arg(long = "s3-connect-timeout-secs", env = "CAPBILL_S3_CONNECT_TIMEOUT_SECS", value_name = "SECS",
          value_parser = setting::<u64>("CAPBILL_S3_CONNECT_TIMEOUT_SECS"))]
    pub connect_timeout_secs: Option<u64>,
    /// Timeout of one operation, retries included, in seconds.
    #[arg(long = "s3-operation-timeout-secs", env = "CAPBILL_S3_OPERATION_TIMEOUT_SECS", value_name = "SECS",
          value_parser = setting::<u64>("CAPBILL_S3_OPERATION_TIMEOUT_SECS"))]
    pub operation_timeout_secs: Option<u64>,
    /// Objects fetched at once.
    #[arg(long = "s3-concurrency", env = "CAPBILL_S3_CONCURRENCY", value_name = "N",
          value_parser = setting::<usize>("CAPBILL_S3_CONCURRENCY"))]
    pub concurrency: Option<usize>,
    /// Profile of the shared AWS config files.
    #[arg(long = "s3-profile", env = "CAPBILL_S3_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Static access key id (prefer the standard credential chain).
    #[arg(long = "s3-access-key-id", env = "CAPBILL_S3_ACCESS_KEY_ID", value_name = "ID")]
    pub access_key_id: Option<String>,
    /// Static secret access key: set it in the environment only, never as a flag.
    #[arg(long = "s3-secret-access-key", env = "CAPBILL_S3_SECRET_ACCESS_KEY", hide = true, hide_env_values = true,
          value_parser = |s: &str| Ok::<_, String>(Secret::new(s)))]
    pub secret_access_key: Option<Secret>,
}

impl From<&S3Args> for S3Overrides {
    fn from(a: &S3Args) -> S3Overrides {
        S3Overrides {
            endpoint_url: a.endpoint_url.clone(),
            region: a.region.clone(),
            force_path_style: a.force_path_style,
            checksum: a.checksum,
            max_attempts: a.max_attempts,
            connect_timeout_secs: a.connect_timeout_secs,
            operation_timeout_secs: a.operation_timeout_secs,
            concurrency: a.concurrency,
            profile: a.profile.clone(),
            access_key_id: a.access_key_id.clone(),
            secret_access_key: a.secret_access_key.clone(),
        }
    }
}

/// A parser for a setting that names its environment variable when a value
/// does not parse (clap names only the flag).
fn setting<T>(variable: &'static str) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    move |s: &str| s.parse().map_err(|e| format!("{e} (set by {variable} or its flag)"))
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, ConfigError> {
        let overrides = Overrides {
            directory: self.directory.clone(),
            usage: self.usage.clone(),
            out: self.out.clone(),
            unit: self.unit.map(Into::into),
            daily_method: self.daily_method.map(Into::into),
            skip_bad_records: self.skip_bad_records,
            memory_budget_mib: self.memory_budget_mib,
            s3: S3Overrides::from(&self.s3),
            collect: CollectOverrides::default(),
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

    /// Every location matters, and the output must not lie inside the usage (run, reprocess).
    fn load_for_billing(&self) -> Result<Config, ConfigError> {
        let config = self.load()?;
        config.check_output_outside_usage()?;
        Ok(config)
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
    #[arg(long, value_parser = BillingMonth::from_str)]
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
    #[arg(long, value_parser = BillingMonth::from_str)]
    pub month: BillingMonth,
    /// Why the month is reprocessed (recorded in the manifest).
    #[arg(long, value_parser = non_blank)]
    pub reason: String,
    /// Write a machine-readable run summary (JSON) here, also when the run fails.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Locations and settings.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of `capbill diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Billing month, YYYY-MM.
    #[arg(long, value_parser = BillingMonth::from_str)]
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
    #[arg(long, value_parser = BillingMonth::from_str)]
    pub month: Option<BillingMonth>,
    /// Locations.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of `capbill validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Month whose contracts the allocation and deal checks look at (default: the current month).
    #[arg(long, value_parser = BillingMonth::from_str)]
    pub month: Option<BillingMonth>,
    /// Re-check the e-invoices of the month's latest revision instead (needs --month; reads --out).
    #[arg(long, requires = "month")]
    pub einvoices: bool,
    /// Locations (only --directory is read; --out with --einvoices).
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of `capbill statement`.
#[derive(Debug, clap::Args)]
pub struct StatementArgs {
    /// Billing month, YYYY-MM.
    #[arg(long, value_parser = BillingMonth::from_str)]
    pub month: BillingMonth,
    /// The seller's entity id.
    #[arg(long)]
    pub seller: String,
    /// The buyer's entity id.
    #[arg(long)]
    pub buyer: String,
    /// Revision (default: the latest).
    #[arg(long)]
    pub revision: Option<u32>,
    /// Copy the statement to this local file instead of printing where it is.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Locations.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Flags of `capbill collect`; each setting of `[collect]` can also come
/// from its `CAPBILL_COLLECT_*` variable, so a CronJob needs no config edits.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Config file (default: config/capbill.toml if it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Usage location the snapshot is written under: local folder or s3://bucket/prefix.
    #[arg(long)]
    pub usage: Option<String>,
    /// Partner directory, for its optional `access_keys` and `buckets` tables.
    #[arg(long)]
    pub directory: Option<String>,
    /// Where bucket sizes come from: garage, prometheus or s3-list.
    #[arg(long, env = "CAPBILL_COLLECT_SOURCE", value_name = "KIND",
          value_parser = setting::<SourceKind>("CAPBILL_COLLECT_SOURCE"))]
    pub source: Option<SourceKind>,
    /// Garage admin API URL, metrics URL, or S3 endpoint for s3-list.
    #[arg(long, env = "CAPBILL_COLLECT_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Bearer token of the source (Garage's admin token): set it in the environment only.
    #[arg(long, env = "CAPBILL_COLLECT_TOKEN", hide = true, hide_env_values = true,
          value_parser = |s: &str| Ok::<_, String>(Secret::new(s)))]
    pub token: Option<Secret>,
    /// Folder under the usage location that snapshots go to (default `collected`).
    #[arg(long, env = "CAPBILL_COLLECT_PREFIX", value_name = "FOLDER")]
    pub prefix: Option<String>,
    /// prometheus: metric names of a known server, `seaweedfs` or `minio`.
    #[arg(long, env = "CAPBILL_COLLECT_PRESET", value_name = "PRESET",
          value_parser = setting::<MetricPreset>("CAPBILL_COLLECT_PRESET"))]
    pub preset: Option<MetricPreset>,
    /// prometheus: the per-bucket size gauge (overrides the preset).
    #[arg(long, env = "CAPBILL_COLLECT_METRIC", value_name = "NAME")]
    pub metric: Option<String>,
    /// prometheus: the label naming the bucket (overrides the preset).
    #[arg(long, env = "CAPBILL_COLLECT_BUCKET_LABEL", value_name = "LABEL")]
    pub bucket_label: Option<String>,
    /// garage: buckets per page of ListBucketsInfo.
    #[arg(long, env = "CAPBILL_COLLECT_PAGE_SIZE", value_name = "N",
          value_parser = setting::<usize>("CAPBILL_COLLECT_PAGE_SIZE"))]
    pub page_size: Option<usize>,
    /// s3-list: buckets listed at once.
    #[arg(id = "collect_concurrency", long = "concurrency", env = "CAPBILL_COLLECT_CONCURRENCY", value_name = "N",
          value_parser = setting::<usize>("CAPBILL_COLLECT_CONCURRENCY"))]
    pub concurrency: Option<usize>,
    /// Attempts per HTTP request to the source, the first included.
    #[arg(id = "collect_max_attempts", long = "max-attempts", env = "CAPBILL_COLLECT_MAX_ATTEMPTS", value_name = "N",
          value_parser = setting::<u32>("CAPBILL_COLLECT_MAX_ATTEMPTS"))]
    pub max_attempts: Option<u32>,
    /// Timeout of one HTTP request to the source, in seconds.
    #[arg(long, env = "CAPBILL_COLLECT_TIMEOUT_SECS", value_name = "SECS",
          value_parser = setting::<u64>("CAPBILL_COLLECT_TIMEOUT_SECS"))]
    pub timeout_secs: Option<u64>,
    /// Write a machine-readable collect summary (JSON) here, also when it fails.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// S3 connection settings (for s3:// locations and the s3-list source).
    #[command(flatten)]
    pub s3: S3Args,
}

impl CollectArgs {
    fn load(&self) -> Result<Config, ConfigError> {
        let overrides = Overrides {
            directory: self.directory.clone(),
            usage: self.usage.clone(),
            // Collection writes no outputs.
            out: Some(".".to_owned()),
            s3: S3Overrides::from(&self.s3),
            collect: CollectOverrides {
                source: self.source,
                endpoint: self.endpoint.clone(),
                token: self.token.clone(),
                prefix: self.prefix.clone(),
                preset: self.preset,
                metric: self.metric.clone(),
                bucket_label: self.bucket_label.clone(),
                page_size: self.page_size,
                concurrency: self.concurrency,
                max_attempts: self.max_attempts,
                timeout_secs: self.timeout_secs,
            },
            ..Overrides::default()
        };
        Config::load(self.config.as_deref(), &overrides)
    }
}

/// Parses the `CAPBILL_NOW` clock (RFC 3339).
fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}: CAPBILL_NOW must be an RFC 3339 time such as 2026-11-02T03:00:00Z"))
}

/// A text with something in it (a reprocess's reason goes into its manifest).
fn non_blank(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("give a reason that says why (it is recorded in the manifest)".to_owned()),
        t => Ok(t.to_owned()),
    }
}

/// `user@host` of this invocation: `$USER`, else `$LOGNAME`, else (a
/// service or a container sets neither) the process's user id as `uid-N`,
/// so that a manifest never records a reprocess by nobody.
pub fn requested_by() -> String {
    let named = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let user = named("USER").or_else(|| named("LOGNAME")).unwrap_or_else(process_uid);
    format!("{user}@{}", crate::revision::lock::host_name())
}

/// `uid-N` of this process (the owner of `/proc/self`), or `unknown`.
fn process_uid() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return format!("uid-{}", m.uid());
        }
    }
    "unknown".to_owned()
}

/// Runs the parsed command; prints its result on stdout.
pub fn execute(cli: Cli) -> Result<(), Error> {
    // Blocking threads (usage parsers, encoders) end soon after their last
    // task: the allocator hands back what a thread freed only when that
    // thread runs again, or ends, so idle parsers would keep what ingest
    // freed resident through metering and export (300-400 MB at 10 x W-hourly).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_millis(100))
        .build()
        .expect("tokio runtime starts");
    let now = cli.now.unwrap_or_else(Utc::now);
    match cli.command {
        Command::Run(args) => with_summary("run", args.summary_json.as_deref(), || {
            let config = args.config.load_for_billing()?;
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
            let config = args.config.load_for_billing()?;
            let mode = Mode::Reprocess { reason: args.reason.clone() };
            let req = Request { month: args.month, mode, now, requested_by: requested_by() };
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
        Command::Validate(args) if args.einvoices => {
            let config = args.config.load_for_reading()?;
            let month = args.month.expect("clap requires --month with --einvoices");
            print!("{}", rt.block_on(report::validate_einvoices(&config, month))?);
            Ok(())
        }
        Command::Validate(args) => {
            let config = args.config.load_for_directory()?;
            let month = match args.month {
                Some(m) => m,
                None => BillingMonth::containing(now.date_naive()),
            };
            print!("{}", rt.block_on(report::validate(&config, month))?);
            Ok(())
        }
        Command::Statement(args) => {
            let config = args.config.load_for_reading()?;
            let (month, revision, output) = (args.month, args.revision, args.output.as_deref());
            print!("{}", rt.block_on(report::statement(&config, month, &args.seller, &args.buyer, revision, output))?);
            Ok(())
        }
        Command::Collect(args) => {
            let started = Utc::now();
            let result = args
                .load()
                .map_err(Error::from)
                .and_then(|config| rt.block_on(crate::collect::collect(&config, now)).map_err(Error::from));
            if let Ok(c) = &result {
                print!("{}", report::collected(c));
            }
            if let Some(path) = &args.summary_json {
                let summary = crate::summary::CollectSummary::new(started, result.as_ref());
                if let Err(e) = summary.write(path) {
                    tracing::error!(path = %path.display(), error = %e, "cannot write the collect summary");
                }
                tracing::info!(summary = %serde_json::to_string(&summary).expect("summary serialises"), "collect summary");
            }
            result.map(|_| ())
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
    // Alerts read the summary: a run that cannot write it must not bill and
    // leave last night's file in its place.
    if let Some(path) = path {
        summary_writable(path)?;
    }
    let (outcomes, error) = match f() {
        Ok(r) => r,
        Err(e) => (Vec::new(), Some(e)),
    };
    for o in &outcomes {
        print!("{}", report::outcome(o));
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

/// Whether the run summary can be written at `path`: a file (or nothing
/// yet) in a folder this process can create files in.
fn summary_writable(path: &std::path::Path) -> Result<(), Error> {
    let invalid = |reason: String| crate::config::ConfigError::Invalid { setting: "--summary-json", reason };
    if path.is_dir() {
        return Err(invalid(format!("{} is a folder: give the path of a file", path.display())).into());
    }
    let folder = report::folder_of(path);
    tempfile::Builder::new()
        .prefix(".capbill-summary-probe")
        .tempfile_in(folder)
        .map(drop)
        .map_err(|e| invalid(format!("cannot write into {}: {e}", folder.display())).into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap checks ids, flags and env names only when a command is built:
        // a clash would panic at the first invocation of that subcommand.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
