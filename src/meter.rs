//! Metering (spec 2): usage records → snapshots → daily values → byte-days.
//!
//! Everything that aggregates records happens in polars lazy frames, in
//! exact integers (`Int128` sums of `u64` bytes): last-wins de-duplication
//! and conflict detection, snapshot sums over buckets, the daily mean (or
//! max), the account windows with forward-then-backward fill, and the
//! per-account and per-entity byte-days that rating and the outputs need.
//! Metering knows the directory only for account windows and owners; it
//! knows nothing about contracts or prices.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;
use thiserror::Error;

use crate::directory::{Directory, EntityIdx};
use crate::model::{BillingMonth, DailyMethod, Day, Finding, FindingKind, Unit, col};
use crate::money;

/// A metering failure (a bug: inputs were validated before).
#[derive(Debug, Error)]
pub enum MeterError {
    /// A polars operation failed.
    #[error("metering failed in polars")]
    Polars(#[from] PolarsError),
}

/// Daily usage of one entity's own storage accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityDays {
    /// Sum of the accounts' daily values, per day of the month.
    pub bytes: Vec<i128>,
    /// Whether any account was active (in its window or with a snapshot) that day.
    pub active: Vec<bool>,
}

impl EntityDays {
    /// Byte-days over the days `[from, to)` (month-relative indices) that are active.
    pub fn byte_days(&self, from: usize, to: usize) -> i128 {
        self.bytes[from..to].iter().sum()
    }

    /// Active days within `[from, to)`.
    pub fn active_days(&self, from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
        (from..to).filter(|&d| self.active[d])
    }
}

/// What metering hands to rating and export.
#[derive(Debug)]
pub struct Metered {
    /// One row per (account, day) that counts: account, owner (null if
    /// unknown), day, value (whole bytes, `Int128`).
    pub account_days: DataFrame,
    /// The `account_usage` output, sorted by account.
    pub account_usage: DataFrame,
    /// Daily usage per owning entity (end customers), known accounts only.
    pub entity_days: HashMap<EntityIdx, EntityDays>,
    /// `gap_filled`, `no_usage_data`, `unknown_storage_account`, `conflicting_samples`.
    pub findings: Vec<Finding>,
}

/// Settings of metering.
#[derive(Debug, Clone, Copy)]
pub struct MeterOptions {
    /// The billing month.
    pub month: BillingMonth,
    /// Capacity unit for TB-months.
    pub unit: Unit,
    /// Mean or max of a day's snapshots.
    pub daily_method: DailyMethod,
}

const SNAPSHOT: &str = "snapshot";
const VERSIONS: &str = "versions";
const SUM: &str = "sum";
const COUNT: &str = "count";
const IN_WINDOW: &str = "in_window";
const WIN_START: &str = "win_start";
const WIN_END: &str = "win_end";
const COMPANY: &str = "company_name";

/// Meters a whole month's records at once (tests and small inputs).
pub fn meter(records: DataFrame, dir: &Directory, opts: MeterOptions) -> Result<Metered, MeterError> {
    let mut m = DayMeter::new(opts);
    m.push(records, Day::MAX)?;
    m.finish(dir)
}

/// Streaming metering: raw records are kept per day only until the day is
/// complete, then reduced to one daily value per account (spec 2.1–2.2), so
/// memory holds the open days' records, not the month's.
#[derive(Debug)]
pub struct DayMeter {
    opts: MeterOptions,
    open: BTreeMap<Day, Vec<DataFrame>>,
    daily: Vec<DataFrame>,
    conflicts: Vec<DataFrame>,
}

impl DayMeter {
    /// An empty meter for the month.
    pub fn new(opts: MeterOptions) -> Self {
        DayMeter { opts, open: BTreeMap::new(), daily: Vec::new(), conflicts: Vec::new() }
    }

    /// Adds records (columns of [`col`]); then meters every open day before
    /// `complete_before`, which no later records will touch.
    pub fn push(&mut self, records: DataFrame, complete_before: Day) -> Result<(), MeterError> {
        if records.height() > 0 {
            let days = records.column(col::DAY)?.as_materialized_series().unique()?;
            let days = days.i32()?;
            if days.len() == 1 {
                let d = days.get(0).expect("records have a day");
                self.open.entry(d).or_default().push(records);
            } else {
                for d in days.iter().flatten() {
                    let part = records.clone().lazy().filter(col(col::DAY).eq(lit(d))).collect()?;
                    self.open.entry(d).or_default().push(part);
                }
            }
        }
        let done: Vec<Day> = self.open.range(..complete_before).map(|(d, _)| *d).collect();
        for d in done {
            let frames = self.open.remove(&d).expect("listed");
            self.close(frames)?;
        }
        Ok(())
    }

    /// One day: last wins per (account, bucket, timestamp), snapshots summed
    /// over buckets, daily value = mean (half away from zero) or max.
    fn close(&mut self, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        let records = if frames.len() == 1 {
            frames.into_iter().next().expect("one").lazy()
        } else {
            concat(frames.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?
        };
        let seq = (col(col::OBJECT).cast(DataType::UInt64) * lit(1u64 << 32)) + col(col::ROW).cast(DataType::UInt64);
        let deduped = records
            .group_by([col(col::ACCOUNT), col(col::BUCKET), col(col::TS)])
            .agg([
                col(col::BYTES).get(seq.arg_max(), false).alias(col::BYTES),
                col(col::BYTES).n_unique().alias(VERSIONS),
                col(col::DAY).first().alias(col::DAY),
            ])
            .collect()?;
        let conflicts = deduped
            .clone()
            .lazy()
            .filter(col(VERSIONS).gt(lit(1u32)))
            .group_by([col(col::ACCOUNT)])
            .agg([len().cast(DataType::UInt64).alias(COUNT)])
            .collect()?;
        if conflicts.height() > 0 {
            self.conflicts.push(conflicts);
        }
        let daily_value = match self.opts.daily_method {
            DailyMethod::Mean => money::mean_half_away_expr(col(SUM), col(COUNT).cast(DataType::Int128)),
            DailyMethod::Max => col(SNAPSHOT),
        };
        let daily = deduped
            .lazy()
            .group_by([col(col::ACCOUNT), col(col::TS)])
            .agg([col(col::BYTES).cast(DataType::Int128).sum().alias(SNAPSHOT), col(col::DAY).first().alias(col::DAY)])
            .group_by([col(col::ACCOUNT), col(col::DAY)])
            .agg([col(SNAPSHOT).sum().alias(SUM), len().alias(COUNT), col(SNAPSHOT).max().alias(SNAPSHOT)])
            .select([col(col::ACCOUNT), col(col::DAY), daily_value.alias(col::VALUE)])
            .collect()?;
        self.daily.push(daily);
        Ok(())
    }

    /// Meters the remaining days and everything that needs the whole month:
    /// windows, gap fill, byte-days, findings.
    pub fn finish(mut self, dir: &Directory) -> Result<Metered, MeterError> {
        let rest = std::mem::take(&mut self.open);
        for (_, frames) in rest {
            self.close(frames)?;
        }
        let daily = if self.daily.is_empty() {
            DataFrame::new(
                0,
                vec![
                    Column::new(col::ACCOUNT.into(), Vec::<String>::new()),
                    Column::new(col::DAY.into(), Vec::<i32>::new()),
                    Column::new(col::VALUE.into(), Vec::<i32>::new()).cast(&DataType::Int128)?,
                ],
            )?
            .lazy()
        } else {
            concat(self.daily.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?
        };
        let conflicts = if self.conflicts.is_empty() {
            None
        } else {
            Some(
                concat(self.conflicts.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?
                    .group_by([col(col::ACCOUNT)])
                    .agg([col(COUNT).sum()])
                    .sort([col::ACCOUNT], SortMultipleOptions::default())
                    .collect()?,
            )
        };
        finish_month(daily, conflicts, dir, self.opts)
    }
}

fn finish_month(
    daily: LazyFrame,
    conflicts: Option<DataFrame>,
    dir: &Directory,
    opts: MeterOptions,
) -> Result<Metered, MeterError> {
    let month = opts.month;
    let first = month.first_day();
    let end = month.end_day();

    // 4. Windows of known accounts within the month, one row per day.
    let accounts = accounts_frame(dir, first, end)?;
    let grid = accounts
        .clone()
        .lazy()
        .filter(col(WIN_START).lt(col(WIN_END)))
        .select([
            col(col::ACCOUNT),
            int_ranges(col(WIN_START), col(WIN_END), lit(1i64), DataType::Int32).alias(col::DAY),
        ])
        .explode(by_name([col::DAY], true, false), ExplodeOptions { empty_as_null: false, keep_nulls: false })
        .with_column(lit(true).alias(IN_WINDOW));

    // Window days and observed days, filled forward then backward per account.
    let filled_value = col(col::VALUE)
        .fill_null_with_strategy(FillNullStrategy::Forward(None))
        .fill_null_with_strategy(FillNullStrategy::Backward(None))
        .over([col(col::ACCOUNT)])?;
    let account_days = daily
        .join(
            grid,
            [col(col::ACCOUNT), col(col::DAY)],
            [col(col::ACCOUNT), col(col::DAY)],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .sort([col::ACCOUNT, col::DAY], SortMultipleOptions::default())
        .with_columns([col(col::VALUE).is_not_null().alias(col::OBSERVED), filled_value.alias("filled_value")])
        .with_columns([
            col(col::OBSERVED).not().and(col("filled_value").is_not_null()).alias(col::FILLED),
            col("filled_value").fill_null(lit(0i128)).cast(DataType::Int128).alias(col::VALUE),
        ])
        .join(
            accounts.clone().lazy().select([col(col::ACCOUNT), col(col::OWNER), col(COMPANY)]),
            [col(col::ACCOUNT)],
            [col(col::ACCOUNT)],
            JoinArgs::new(JoinType::Left),
        )
        .select([
            col(col::ACCOUNT),
            col(col::OWNER),
            col(COMPANY),
            col(col::DAY),
            col(col::VALUE),
            col(col::OBSERVED),
            col(col::FILLED),
        ])
        .collect()?;

    // Per account: the account_usage output and the account findings.
    let per_account = account_days
        .clone()
        .lazy()
        .group_by([col(col::ACCOUNT)])
        .agg([
            col(col::OWNER).first(),
            col(COMPANY).first(),
            col(col::VALUE).sum().alias("byte_days"),
            col(col::OBSERVED).cast(DataType::UInt32).sum().alias("observed_days"),
            col(col::FILLED).cast(DataType::UInt32).sum().alias("filled_days"),
        ])
        .sort([col::ACCOUNT], SortMultipleOptions::default())
        .collect()?;
    let (account_usage, mut findings) = account_outputs(&per_account, month, opts.unit)?;
    if let Some(c) = &conflicts {
        findings.extend(conflict_findings(c)?);
    }

    // Per owning entity and day: what rating needs.
    let owner_days = account_days
        .clone()
        .lazy()
        .filter(col(col::OWNER).is_not_null())
        .group_by([col(col::OWNER), col(col::DAY)])
        .agg([col(col::VALUE).sum()])
        .collect()?;
    let entity_days = collect_entity_days(&owner_days, dir, first, month.days() as usize)?;

    let account_days = account_days.select([col::ACCOUNT, col::OWNER, col::DAY, col::VALUE])?;
    Ok(Metered { account_days, account_usage, entity_days, findings })
}

/// Known accounts with owner, company and window clipped to `[first, end)`.
fn accounts_frame(dir: &Directory, first: Day, end: Day) -> PolarsResult<DataFrame> {
    let n = dir.accounts.len();
    let mut ids = Vec::with_capacity(n);
    let mut owners = Vec::with_capacity(n);
    let mut companies = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    for a in &dir.accounts {
        ids.push(a.id.as_str());
        owners.push(dir.entities[a.owner].id.as_str());
        companies.push(a.company_name.as_str());
        starts.push(a.created_on.map_or(first, |c| c.max(first)));
        ends.push(a.deleted_on.map_or(end, |d| d.min(end)));
    }
    DataFrame::new(
        n,
        vec![
            Column::new(col::ACCOUNT.into(), ids),
            Column::new(col::OWNER.into(), owners),
            Column::new(COMPANY.into(), companies),
            Column::new(WIN_START.into(), starts),
            Column::new(WIN_END.into(), ends),
        ],
    )
}

/// Builds `account_usage` and the per-account findings.
fn account_outputs(
    per_account: &DataFrame,
    month: BillingMonth,
    unit: Unit,
) -> PolarsResult<(DataFrame, Vec<Finding>)> {
    let ids = per_account.column(col::ACCOUNT)?.str()?;
    let owners = per_account.column(col::OWNER)?.str()?;
    let byte_days = per_account.column("byte_days")?.i128()?;
    let observed = per_account.column("observed_days")?.u32()?;
    let filled = per_account.column("filled_days")?.u32()?;
    let mut tb = Vec::with_capacity(per_account.height());
    let mut findings = Vec::new();
    for i in 0..per_account.height() {
        let id = ids.get(i).expect("account ids are not null");
        let bd = byte_days.get(i).unwrap_or(0);
        let q = money::tb_months(bd, month.days(), unit.bytes());
        tb.push(q.mantissa());
        let obs = observed.get(i).unwrap_or(0);
        let fil = filled.get(i).unwrap_or(0);
        if owners.get(i).is_none() {
            findings.push(
                Finding::new(
                    FindingKind::UnknownStorageAccount,
                    id,
                    "usage for an account the directory does not know",
                )
                .with_usage(Some(bd), Some(q)),
            );
        } else if obs == 0 {
            findings.push(Finding::new(
                FindingKind::NoUsageData,
                id,
                format!("no snapshot in {month} for an account that exists on some of its days; counted as 0"),
            ));
        } else if fil > 0 {
            findings.push(Finding::new(FindingKind::GapFilled, id, format!("{fil} days filled")));
        }
    }
    let tb = Int128Chunked::from_vec("tb_months".into(), tb).into_decimal(38, money::QUANTITY_SCALE as usize)?;
    let mut out = per_account.select(["storage_account_id", "owner_id", "company_name", "byte_days"])?;
    out.with_column(tb.into_series().into_column())?;
    out.with_column(per_account.column("observed_days")?.clone())?;
    out.with_column(per_account.column("filled_days")?.clone())?;
    Ok((out, findings))
}

fn conflict_findings(conflicts: &DataFrame) -> PolarsResult<Vec<Finding>> {
    let ids = conflicts.column(col::ACCOUNT)?.str()?;
    let counts = conflicts.column(COUNT)?.cast(&DataType::UInt64)?;
    let counts = counts.u64()?;
    Ok((0..conflicts.height())
        .map(|i| {
            Finding::new(
                FindingKind::ConflictingSamples,
                ids.get(i).unwrap_or_default(),
                format!("{} conflicting records", counts.get(i).unwrap_or(0)),
            )
        })
        .collect())
}

fn collect_entity_days(
    owner_days: &DataFrame,
    dir: &Directory,
    first: Day,
    days: usize,
) -> PolarsResult<HashMap<EntityIdx, EntityDays>> {
    let owners = owner_days.column(col::OWNER)?.str()?;
    let day = owner_days.column(col::DAY)?.i32()?;
    let value = owner_days.column(col::VALUE)?.i128()?;
    let mut out: HashMap<EntityIdx, EntityDays> = HashMap::new();
    for i in 0..owner_days.height() {
        let (Some(o), Some(d)) = (owners.get(i), day.get(i)) else {
            continue;
        };
        let e = dir.entity(o).expect("owners come from the directory");
        let slot = (d - first) as usize;
        let entry = out.entry(e).or_insert_with(|| EntityDays { bytes: vec![0; days], active: vec![false; days] });
        entry.bytes[slot] += value.get(i).unwrap_or(0);
        entry.active[slot] = true;
    }
    Ok(out)
}
