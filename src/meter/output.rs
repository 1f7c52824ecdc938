//! The per-account outputs: the frame of each account's totals in the
//! order of the accounts' names ([`per_account_frame`]), the
//! `account_usage` output and the per-account findings built from it
//! ([`account_outputs`]), and the findings of conflicting records
//! ([`conflict_findings`]). This module formats what the tally added up: it
//! must not add up usage itself.

use polars::prelude::*;

use super::COUNT;
use super::tally::AccountTotals;
use crate::directory::{Directory, StorageAccount};
use crate::model::{BillingMonth, Finding, FindingKind, Interner, Unit, col};
use crate::money;

const COMPANY: &str = "company_name";

/// Per account present in `totals`, in the order of the accounts' names:
/// name, owner and company (for accounts the directory lists, `listed`
/// giving the row of each id), byte-days, observed and filled days. Ids are
/// mostly interned in name order (as exports list accounts), which the sort
/// finds in one pass.
pub(super) fn per_account_frame(
    totals: &[AccountTotals],
    accounts: &Interner,
    listed: &[Option<u32>],
    dir: &Directory,
) -> PolarsResult<DataFrame> {
    let mut present: Vec<u32> = (0..totals.len() as u32).filter(|&id| totals[id as usize].present).collect();
    present.sort_unstable_by(|&a, &b| accounts.name(a).cmp(accounts.name(b)));
    let total = |f: fn(&AccountTotals) -> u32| present.iter().map(|&id| f(&totals[id as usize])).collect::<Vec<_>>();
    let of_directory: Vec<Option<&StorageAccount>> =
        present.iter().map(|&id| listed[id as usize].map(|row| &dir.accounts[row as usize])).collect();
    DataFrame::new(
        present.len(),
        vec![
            Column::new(col::ACCOUNT.into(), present.iter().map(|&id| accounts.name(id)).collect::<Vec<_>>()),
            Column::new(
                col::OWNER.into(),
                of_directory.iter().map(|a| a.map(|a| dir.entities[a.owner].id.as_str())).collect::<Vec<_>>(),
            ),
            Column::new(
                COMPANY.into(),
                of_directory.iter().map(|a| a.map(|a| a.company_name.as_str())).collect::<Vec<_>>(),
            ),
            Int128Chunked::from_iter_values(
                "byte_days".into(),
                present.iter().map(|&id| totals[id as usize].byte_days),
            )
            .into_column(),
            Column::new("observed_days".into(), total(|t| t.observed_days)),
            Column::new("filled_days".into(), total(|t| t.filled_days)),
        ],
    )
}

/// Builds `account_usage` and the per-account findings.
pub(super) fn account_outputs(
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
        let q = money::tb_months(bd, month.days(), unit.bytes())
            .map_err(|e| PolarsError::ComputeError(format!("account {id}: {e}").into()))?;
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
    let mut out = per_account.select([col::ACCOUNT, col::OWNER, COMPANY, "byte_days"])?;
    out.with_column(tb.into_series().into_column())?;
    out.with_column(per_account.column("observed_days")?.clone())?;
    out.with_column(per_account.column("filled_days")?.clone())?;
    Ok((out, findings))
}

/// One finding per account with conflicting records, in account order.
pub(super) fn conflict_findings(conflicts: &DataFrame, accounts: &Interner) -> PolarsResult<Vec<Finding>> {
    let conflicts = with_names(conflicts.clone(), accounts)?.sort([col::ACCOUNT], SortMultipleOptions::default())?;
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

/// `df` with the names of its account ids in a `storage_account_id` column.
fn with_names(mut df: DataFrame, accounts: &Interner) -> PolarsResult<DataFrame> {
    let names: Vec<&str> =
        df.column(col::ACCOUNT_ID)?.u32()?.iter().map(|id| id.map_or("", |id| accounts.name(id))).collect();
    df.with_column(Column::new(col::ACCOUNT.into(), names))?;
    Ok(df)
}
