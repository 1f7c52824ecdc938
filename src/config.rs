//! Configuration: the raw TOML file, flag overrides, and the validated
//! [`Config`] that is the only thing the pipeline accepts.
//!
//! The config file describes the billing run (locations, unit, daily method);
//! flags of one invocation override it. Relative local paths in the file are
//! resolved against the file's own folder, so `config/capbill.toml` works
//! from any working directory. Configuration never reads usage or the
//! directory, and no module after it reads `CAPBILL_*` settings itself.

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::model::{DailyMethod, Unit};
use crate::storage::Location;

mod collect;
mod invoicing;
mod s3;

use crate::storage::s3::S3Settings;
pub use collect::{CollectOverrides, CollectSettings, MetricPreset, SourceKind};
use collect::{RawCollect, collect_settings};
use invoicing::invoicing_settings;
pub use invoicing::{Invoicing, valid_iban};
pub use s3::S3Overrides;
use s3::{RawS3, s3_settings};

/// The config file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "config/capbill.toml";

/// Version of the billing rules this program implements. Bump it whenever a
/// change to the code changes what a run bills for the same inputs.
pub const RULES_VERSION: &str = "1";

/// A configuration problem.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// Config file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for capbill.
    #[error("invalid config file {path}")]
    Parse {
        /// Config file.
        path: PathBuf,
        /// Cause, with line and column.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A required setting is missing from both flags and file.
    #[error("no {setting} given: set `{setting}` under [locations] in the config file or pass --{setting}")]
    Missing {
        /// Setting name.
        setting: &'static str,
    },
    /// A setting has a value that cannot be used.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// Setting name.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The config file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Where inputs and outputs live.
    #[serde(default)]
    locations: RawLocations,
    /// Billing rules settings.
    #[serde(default)]
    billing: RawBilling,
    /// S3 connection settings.
    #[serde(default)]
    s3: RawS3,
    /// How runs are operated.
    #[serde(default)]
    operations: RawOperations,
    /// Checks that turn an unusual night into a finding.
    #[serde(default)]
    alerts: RawAlerts,
    /// Collection of usage from the storage system (`capbill collect`).
    #[serde(default)]
    collect: RawCollect,
    /// E-invoices of final revisions (spec 5); none without this section.
    invoicing: Option<RawInvoicing>,
}

/// `[invoicing]`: what e-invoices need beyond the directory's party data.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInvoicing {
    /// Standard VAT rate per seller country, as decimal strings (`DE = "19"`).
    #[serde(default)]
    vat_rates: std::collections::BTreeMap<String, String>,
    /// Days from the issue date to the due date (default 30).
    payment_days: Option<u32>,
    /// The IBAN payments go to, for every seller without its own.
    iban: Option<String>,
    /// IBAN per seller id, overriding `iban`.
    #[serde(default)]
    seller_ibans: std::collections::BTreeMap<String, String>,
    /// UN/ECE Recommendation 20 code of the billed unit (default `E35`,
    /// terabyte, for `unit = "tb"`; `C62`, one, for `unit = "tib"`).
    unit_code: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    /// Share (0 to 1) by which a currency's monthly total may fall against the
    /// previous month before a `total_dropped` finding is raised (default 0.5).
    total_drop_share: Option<Decimal>,
    /// Whether the drop check runs (default true).
    total_drop_check: Option<bool>,
}

/// `[operations]`: the month lifecycle and locking.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOperations {
    /// Days after month end before the month becomes final (default 3).
    grace_days: Option<u32>,
    /// Minutes a run's month lock counts before others may take it over; renewed every third of it while the run goes on (default 10).
    lock_ttl_minutes: Option<u32>,
    /// Memory a run aims to stay within, in MiB (default 1024): see README "Memory".
    memory_budget_mib: Option<u64>,
}

/// `[locations]`: each a local path or `s3://bucket/prefix`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocations {
    /// Partner directory tables.
    directory: Option<String>,
    /// Usage records (read recursively).
    usage: Option<String>,
    /// Output root (Hive-style `billing_month=…/revision=…`).
    out: Option<String>,
}

/// `[billing]`: settings that change what is billed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBilling {
    /// `tb` (10^12 bytes, default) or `tib` (2^40 bytes).
    #[serde(default)]
    unit: Unit,
    /// `mean` (default) or `max` of a day's snapshots.
    #[serde(default)]
    daily_method: DailyMethod,
    /// Skip malformed usage records (each becomes a finding) instead of stopping.
    #[serde(default)]
    skip_bad_records: bool,
}

/// What flags (and their environment variables) of one invocation override.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--directory`.
    pub directory: Option<String>,
    /// `--usage`.
    pub usage: Option<String>,
    /// `--out`.
    pub out: Option<String>,
    /// `--unit`.
    pub unit: Option<Unit>,
    /// `--daily-method`.
    pub daily_method: Option<DailyMethod>,
    /// `--skip-bad-records`.
    pub skip_bad_records: bool,
    /// `--memory-budget-mib` (or `CAPBILL_MEMORY_BUDGET_MIB`).
    pub memory_budget_mib: Option<u64>,
    /// `CAPBILL_S3_*` (or `--s3-*`).
    pub s3: S3Overrides,
    /// `CAPBILL_COLLECT_*` (or `--source`).
    pub collect: CollectOverrides,
}

/// Settings that decide what a run bills; their hash goes into the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rules {
    /// Capacity unit.
    pub unit: Unit,
    /// Daily value method.
    pub daily_method: DailyMethod,
    /// Whether malformed usage records are skipped (as findings).
    pub skip_bad_records: bool,
}

impl Rules {
    /// The settings as a manifest lists them (`settings`), and as a run
    /// compares them with the latest revision's to name what changed.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("settings serialise")
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Partner directory location.
    pub directory: Location,
    /// Usage records location.
    pub usage: Location,
    /// Output root.
    pub out: Location,
    /// Billing settings.
    pub rules: Rules,
    /// S3 connection settings.
    pub s3: S3Settings,
    /// Days after month end before a month is final.
    pub grace_days: u32,
    /// How long a month lock counts.
    pub lock_ttl: chrono::Duration,
    /// Bytes of memory a run aims to stay within.
    pub memory_budget: u64,
    /// The share a currency total may drop against the previous month before a finding.
    pub total_drop_share: Option<Decimal>,
    /// How `capbill collect` reads the storage system.
    pub collect: CollectSettings,
    /// E-invoicing settings; `None`: no documents, no invoice numbers.
    pub invoicing: Option<Invoicing>,
}

/// The memory budget of a run unless `memory_budget_mib` says otherwise: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// The smallest memory budget a run accepts, in MiB.
const MIN_MEMORY_BUDGET_MIB: u64 = 64;

impl Config {
    /// Reads `path` (or [`DEFAULT_CONFIG`] if it exists) and applies the
    /// overrides of this invocation (flags and `CAPBILL_S3_*` variables,
    /// which the CLI reads).
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (raw, base) = match path {
            Some(p) => (read(p)?, p.parent().map(Path::to_path_buf)),
            None if Path::new(DEFAULT_CONFIG).is_file() => {
                let p = Path::new(DEFAULT_CONFIG);
                (read(p)?, p.parent().map(Path::to_path_buf))
            }
            None => (RawConfig::default(), None),
        };
        let base = base.unwrap_or_default();
        let location = |setting: &'static str, flag: &Option<String>, file: &Option<String>| {
            // Flags are relative to the working directory, file values to the file.
            let (text, relative_to) = match (flag, file) {
                (Some(f), _) => (f, Path::new("")),
                (None, Some(f)) => (f, base.as_path()),
                (None, None) => return Err(ConfigError::Missing { setting }),
            };
            match Location::parse(text) {
                Ok(Location::Local(p)) if p.is_relative() => {
                    Ok(Location::Local(lexically_normal(&relative_to.join(p))))
                }
                Ok(Location::Local(p)) => Ok(Location::Local(lexically_normal(&p))),
                Ok(l) => Ok(l),
                Err(reason) => Err(ConfigError::Invalid { setting, reason }),
            }
        };
        let directory = location("directory", &overrides.directory, &raw.locations.directory)?;
        let usage = location("usage", &overrides.usage, &raw.locations.usage)?;
        let out = location("out", &overrides.out, &raw.locations.out)?;
        check_locations(&directory, &usage, &out)?;
        Ok(Config {
            directory,
            usage,
            out,
            rules: Rules {
                unit: overrides.unit.unwrap_or(raw.billing.unit),
                daily_method: overrides.daily_method.unwrap_or(raw.billing.daily_method),
                skip_bad_records: overrides.skip_bad_records || raw.billing.skip_bad_records,
            },
            invoicing: raw
                .invoicing
                .map(|i| {
                    invoicing_settings(
                        i.vat_rates,
                        i.payment_days,
                        i.iban,
                        i.seller_ibans,
                        i.unit_code,
                        overrides.unit.unwrap_or(raw.billing.unit),
                    )
                })
                .transpose()?,
            s3: s3_settings(raw.s3, &overrides.s3)?,
            collect: collect_settings(raw.collect, &overrides.collect)?,
            grace_days: raw.operations.grace_days.unwrap_or(3),
            lock_ttl: match raw.operations.lock_ttl_minutes.unwrap_or(10) {
                0 => {
                    return Err(ConfigError::Invalid {
                        setting: "operations.lock_ttl_minutes",
                        reason: "0 would let any other run take the lock over at once: give at least 1".to_owned(),
                    });
                }
                m => chrono::Duration::minutes(i64::from(m)),
            },
            memory_budget: match overrides.memory_budget_mib.or(raw.operations.memory_budget_mib) {
                None => DEFAULT_MEMORY_BUDGET,
                Some(mib) if (MIN_MEMORY_BUDGET_MIB..=1 << 30).contains(&mib) => mib << 20,
                Some(mib) => {
                    return Err(ConfigError::Invalid {
                        setting: "memory_budget_mib (--memory-budget-mib, CAPBILL_MEMORY_BUDGET_MIB)",
                        reason: format!("{mib} MiB: give at least {MIN_MEMORY_BUDGET_MIB}"),
                    });
                }
            },
            total_drop_share: match (raw.alerts.total_drop_check.unwrap_or(true), raw.alerts.total_drop_share) {
                (false, _) => None,
                (true, Some(s)) if s < Decimal::ZERO || s > Decimal::ONE => {
                    return Err(ConfigError::Invalid {
                        setting: "alerts.total_drop_share",
                        reason: format!("{s} is not between 0 and 1"),
                    });
                }
                (true, s) => Some(s.unwrap_or(Decimal::new(5, 1))),
            },
        })
    }

    /// SHA-256 of the settings that decide what is billed, and the rules version.
    pub fn hash(&self) -> String {
        let mut canonical = serde_json::json!({ "rules_version": RULES_VERSION, "rules": self.rules });
        // E-invoicing settings change the documents: they count once set
        // (a configuration without them keeps its earlier hash).
        if let Some(i) = &self.invoicing {
            canonical["invoicing"] = serde_json::to_value(i).unwrap_or_default();
        }
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// `path` with `.` segments dropped and each `..` folded into the folder
/// before it (`config/../out` → `out`), without touching the file system:
/// messages and summaries name the place as people would write it. A `..`
/// with no folder before it stays.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

/// Refuses locations that cannot work however often a run is retried: a
/// local directory or usage location that is a file (listing it would find
/// no table or no usage and bill nothing), and an output location that is
/// or lies below a file. Only the file system's metadata is looked at;
/// nothing is read.
fn check_locations(directory: &Location, usage: &Location, out: &Location) -> Result<(), ConfigError> {
    for (setting, location) in [("directory", directory), ("usage", usage)] {
        if let Location::Local(p) = location
            && p.is_file()
        {
            return Err(ConfigError::Invalid {
                setting,
                reason: format!("{} is a file: give the folder that holds it", p.display()),
            });
        }
    }
    if let Location::Local(p) = out
        && let Some(file) = p.ancestors().find(|a| !a.as_os_str().is_empty() && a.exists()).filter(|a| !a.is_dir())
    {
        return Err(ConfigError::Invalid {
            setting: "out",
            reason: format!("{} is a file, not a folder that revisions can be written into", file.display()),
        });
    }
    Ok(())
}

impl Config {
    /// Refuses, for a billing run, an output location inside the usage
    /// location: each run would read the revisions it wrote as usage.
    /// (Commands that read only some locations fill the others with
    /// placeholders, so this is not part of [`Config::load`].)
    pub fn check_output_outside_usage(&self) -> Result<(), ConfigError> {
        let (usage, out) = (&self.usage, &self.out);
        let inside = match (usage, out) {
            (Location::Local(u), Location::Local(o)) => {
                let absolute =
                    |p: &Path| std::path::absolute(p).map(|a| lexically_normal(&a)).unwrap_or_else(|_| p.to_owned());
                absolute(o).starts_with(absolute(u))
            }
            (Location::S3 { bucket: ub, prefix: up }, Location::S3 { bucket: ob, prefix: op }) => {
                ub == ob && (up.is_empty() || op == up || op.starts_with(&format!("{up}/")))
            }
            _ => false,
        };
        if inside {
            return Err(ConfigError::Invalid {
                setting: "out",
                reason: format!(
                    "{out} is inside the usage location {usage}: every run would read the revisions it wrote as usage; publish outside it"
                ),
            });
        }
        Ok(())
    }
}

/// Refuses a setting of 0 where 0 would make every request fail (no
/// attempt, no time for one): a setting to fix, not a failure to retry.
fn nonzero(setting: &'static str, value: Option<u64>) -> Result<(), ConfigError> {
    if value == Some(0) {
        return Err(ConfigError::Invalid {
            setting,
            reason: "0 leaves no request a chance: give at least 1".to_owned(),
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::s3::{ChecksumMode, Secret};

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn file_values_are_relative_to_the_file_and_flags_override() {
        let (dir, path) = write(
            "[locations]\ndirectory = \"dir\"\nusage = \"s3://b/usage/\"\nout = \"/abs/out\"\n[billing]\nunit = \"tib\"\n",
        );
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.directory, Location::Local(dir.path().join("dir")));
        assert_eq!(c.usage, Location::S3 { bucket: "b".into(), prefix: "usage".into() });
        assert_eq!(c.rules.unit, Unit::Tib);
        assert_eq!(c.rules.daily_method, DailyMethod::Mean);
        let o = Overrides { out: Some("here".into()), daily_method: Some(DailyMethod::Max), ..Default::default() };
        let c2 = Config::load(Some(&path), &o).unwrap();
        assert_eq!(c2.out, Location::Local(PathBuf::from("here")));
        assert_ne!(c.hash(), c2.hash());
    }

    #[test]
    fn s3_settings_come_from_file_then_the_invocation() {
        let (_d, path) = write(
            "[locations]\ndirectory = \"d\"\nusage = \"u\"\nout = \"o\"\n[s3]\nregion = \"eu-central-2\"\nmax_attempts = 3\nsecret_access_key = \"file-secret\"\n",
        );
        let s3 = S3Overrides {
            endpoint_url: Some("http://127.0.0.1:9000".to_owned()),
            force_path_style: Some(true),
            checksum: Some(ChecksumMode::WhenRequired),
            max_attempts: Some(7),
            ..Default::default()
        };
        let c = Config::load(Some(&path), &Overrides { s3, ..Default::default() }).unwrap();
        assert_eq!(c.s3.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.s3.region.as_deref(), Some("eu-central-2"));
        assert!(c.s3.force_path_style);
        assert_eq!(c.s3.checksum, ChecksumMode::WhenRequired);
        assert_eq!(c.s3.max_attempts, 7);
        assert_eq!(c.s3.secret_access_key.as_ref().map(Secret::expose), Some("file-secret"));
        assert!(!format!("{c:?}").contains("file-secret"), "secrets must not print");
        let file_only = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!((file_only.s3.max_attempts, file_only.s3.force_path_style), (3, false));
    }

    #[test]
    fn settings_of_zero_that_would_break_every_run_are_refused_by_name() {
        let locations = "[locations]\ndirectory = \"d\"\nusage = \"u\"\nout = \"o\"\n";
        for (section, expected) in [
            ("[operations]\nlock_ttl_minutes = 0\n", "operations.lock_ttl_minutes"),
            ("[s3]\nmax_attempts = 0\n", "s3.max_attempts"),
            ("[s3]\noperation_timeout_secs = 0\n", "s3.operation_timeout_secs"),
            ("[s3]\nconcurrency = 0\n", "s3.concurrency"),
            ("[collect]\npage_size = 0\n", "collect.page_size"),
            ("[collect]\npage_size = 10001\n", "collect.page_size"),
            ("[collect]\nconcurrency = 0\n", "collect.concurrency"),
            ("[collect]\nmax_attempts = 0\n", "collect.max_attempts"),
            ("[collect]\ntimeout_secs = 0\n", "collect.timeout_secs"),
            ("[operations]\nmemory_budget_mib = 10\n", "CAPBILL_MEMORY_BUDGET_MIB"),
        ] {
            let (_d, path) = write(&format!("{locations}{section}"));
            let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(expected), "{section}: {err}");
        }
    }

    #[test]
    fn locations_that_cannot_work_are_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("usage")).unwrap();
        std::fs::write(root.join("usage/export.csv"), "x").unwrap();
        std::fs::write(root.join("afile"), "x").unwrap();
        let load = |directory: &str, usage: &str, out: &str| {
            let at = |p: &str| if p.starts_with("s3://") { p.to_owned() } else { root.join(p).display().to_string() };
            let o = Overrides {
                directory: Some(at(directory)),
                usage: Some(at(usage)),
                out: Some(at(out)),
                ..Default::default()
            };
            Config::load(None, &o).and_then(|c| c.check_output_outside_usage()).map_err(|e| e.to_string())
        };
        assert_eq!(load("dir", "usage", "out"), Ok(()), "folders that do not exist yet are the stages' to report");
        assert_eq!(load("dir", "usage", "usage-out"), Ok(()), "a sibling whose name starts alike is not inside");
        for (case, says) in [
            (load("dir", "usage/export.csv", "out"), "invalid usage: "),
            (load("afile", "usage", "out"), "invalid directory: "),
            (load("dir", "usage", "afile"), "afile is a file"),
            (load("dir", "usage", "afile/below"), "afile is a file"),
            (load("dir", "usage", "usage/out"), "is inside the usage location"),
            (load("dir", "usage", "usage"), "is inside the usage location"),
            (load("dir", "s3://b/usage", "s3://b/usage/out"), "is inside the usage location"),
            (load("dir", "s3://b", "s3://b/out"), "is inside the usage location"),
        ] {
            let err = case.unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(load("dir", "s3://b/usage", "s3://b/usage-out"), Ok(()));
        assert_eq!(load("dir", "s3://b/usage", "s3://c/usage/out"), Ok(()));
    }

    #[test]
    fn local_locations_are_written_as_people_would() {
        let (dir, path) =
            write("[locations]\ndirectory = \"../fixtures/./d\"\nusage = \"u/../v\"\nout = \"/abs/x/../out\"\n");
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.directory, Location::Local(dir.path().parent().unwrap().join("fixtures/d")));
        assert_eq!(c.usage, Location::Local(dir.path().join("v")));
        assert_eq!(c.out, Location::Local(PathBuf::from("/abs/out")));
        assert_eq!(lexically_normal(Path::new("../../a/./b/..")), PathBuf::from("../../a"));
        assert_eq!(lexically_normal(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn unknown_keys_and_missing_locations_are_errors() {
        let (_d, path) = write("[billing]\nunits = \"tb\"\n");
        let e = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        let (_d, path) = write("[locations]\ndirectory = \"d\"\n");
        let e = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert_eq!(e.to_string(), "no usage given: set `usage` under [locations] in the config file or pass --usage");
    }
}
