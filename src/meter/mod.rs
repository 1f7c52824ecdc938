//! Metering (spec 2): usage records → snapshots → daily values → byte-days.
//!
//! Records stream in by day ([`DayMeter`], in `stream`); a metering thread
//! reduces each complete day to one value per account (`reduce`), with the
//! single-pass kernels of `day` or, for repeated keys (last wins,
//! conflicts) and unusual shapes, the general path in polars. The month
//! step (`month`) then applies the account windows with forward-then-backward
//! fill in polars (`fill`) and adds up the per-account and per-entity
//! byte-days that rating and the outputs need (`tally`), from which it
//! builds the `account_usage` output and the account findings (`output`);
//! `usage` holds the types rating reads. All arithmetic is exact: `u64`
//! bytes, `Int128` sums.
//!
//! Metering knows the directory for account windows and owners. It tallies
//! what it is asked to: the caller passes, per owner, the days whose
//! byte-days it sets apart per account ([`Metered::uncontracted`]); which
//! days those are (for the pipeline, the uncontracted ones) is rating's
//! rule, not metering's. It knows nothing about prices or contracts.

mod day;
mod fill;
mod month;
mod output;
mod reduce;
mod spill;
mod stream;
mod tally;
mod usage;

use polars::prelude::*;
use thiserror::Error;

use crate::directory::Directory;
use crate::model::{BillingMonth, DailyMethod, Day, Interner, Unit};

/// Column of a count: a day's snapshots per account in the general
/// reduction, and conflicting records per account (the reducer writes them,
/// the outputs read them).
const COUNT: &str = "count";

pub use stream::{DayMeter, Reduced};
pub use usage::{DailyUsage, EntityDays, EntityUsage, Metered, Uncontracted};

/// A metering failure: a bug (inputs were validated before), or the local
/// disk refusing the records of open days.
#[derive(Debug, Error)]
pub enum MeterError {
    /// A polars operation failed.
    #[error("metering failed in polars")]
    Polars(#[from] PolarsError),
    /// Records of open days could not be spilled to, or read back from, local disk.
    #[error("cannot spill usage records of open days to {}: set TMPDIR to a folder with room, or raise memory_budget_mib", path.display())]
    Spill {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
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

/// Meters a whole month's records at once (tests and small inputs);
/// `set_apart` as in [`DayMeter::finish`].
pub fn meter(
    records: DataFrame,
    dir: &Directory,
    accounts: Interner,
    set_apart: &[u32],
    opts: MeterOptions,
) -> Result<Metered, MeterError> {
    let mut m = DayMeter::new(opts);
    m.push(records, Day::MAX)?;
    m.finish(dir, accounts, set_apart)
}

/// Helpers the tests of metering (and of rating) share.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::directory::tests::{CONTRACTS, DEALS, ENTITIES, parse};
    use crate::model::{FindingKind, col};

    const US_PER_DAY: i64 = 86_400_000_000;

    pub(super) fn month() -> BillingMonth {
        "2026-10".parse().unwrap()
    }

    pub(super) fn opts(daily_method: DailyMethod) -> MeterOptions {
        MeterOptions { month: month(), unit: Unit::Tb, daily_method }
    }

    /// (account, bucket, day index, hour, bytes, object, row)
    pub(crate) type Rec = (&'static str, &'static str, i32, i64, u64, u32, u32);

    /// A record frame; accounts and buckets are interned into `ids`.
    pub(crate) fn frame(recs: &[Rec], ids: &mut Interner) -> DataFrame {
        let first = month().first_day();
        let n = recs.len();
        let day: Vec<i32> = recs.iter().map(|r| first + r.2).collect();
        DataFrame::new(
            n,
            vec![
                Column::new(col::ACCOUNT_ID.into(), recs.iter().map(|r| ids.id(r.0)).collect::<Vec<_>>()),
                Column::new(col::BUCKET.into(), recs.iter().map(|r| ids.id(r.1)).collect::<Vec<_>>()),
                Column::new(
                    col::TS.into(),
                    recs.iter().map(|r| i64::from(first + r.2) * US_PER_DAY + r.3 * 3_600_000_000).collect::<Vec<_>>(),
                ),
                Column::new(col::DAY.into(), day),
                Column::new(col::BYTES.into(), recs.iter().map(|r| r.4).collect::<Vec<_>>()),
                Column::new(col::OBJECT.into(), recs.iter().map(|r| r.5).collect::<Vec<_>>()),
                Column::new(col::ROW.into(), recs.iter().map(|r| r.6).collect::<Vec<_>>()),
            ],
        )
        .unwrap()
    }

    /// Meters `recs` as one month.
    pub(super) fn meter_recs(recs: &[Rec], d: &Directory, method: DailyMethod) -> Metered {
        let mut ids = Interner::seeded(d.accounts.iter().map(|a| a.id.as_str()));
        let df = frame(recs, &mut ids);
        meter(df, d, ids, &set_apart(d), opts(method)).unwrap()
    }

    /// The days set apart as the pipeline asks: each owner's uncontracted days.
    pub(super) fn set_apart(d: &Directory) -> Vec<u32> {
        crate::rate::uncontracted_days(d, month())
    }

    pub(super) fn dir(accounts: &str) -> Directory {
        let a = format!("storage_account_id,company_name,owner_id,created_on,deleted_on\n{accounts}");
        parse(ENTITIES, &a, CONTRACTS, DEALS).unwrap()
    }

    /// Byte-days, observed and filled days of one account.
    pub(super) fn usage(m: &Metered, account: &str) -> (i128, u32, u32) {
        let au = &m.account_usage;
        let ids = au.column(col::ACCOUNT).unwrap().str().unwrap();
        let i = (0..au.height()).find(|&i| ids.get(i) == Some(account)).expect("account metered");
        let bd = au.column("byte_days").unwrap().i128().unwrap().get(i).unwrap();
        let obs = au.column("observed_days").unwrap().u32().unwrap().get(i).unwrap();
        let fil = au.column("filled_days").unwrap().u32().unwrap().get(i).unwrap();
        (bd, obs, fil)
    }

    pub(super) fn kinds(m: &Metered) -> Vec<(FindingKind, String, String)> {
        m.findings.iter().map(|f| (f.kind, f.subject_id.clone(), f.detail.clone())).collect()
    }
}
