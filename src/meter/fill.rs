//! Gap fill (spec 2.3) and the windows it fills: [`accounts_frame`] gives
//! the known accounts' windows within the month, [`fill_gaps`] carries the
//! daily values of the accounts not observed on exactly their window's days
//! forward then backward over the window, on one (account, day) integer key
//! ([`day_key`]). This module must not add up byte-days nor build outputs.

use polars::prelude::*;

use crate::directory::Directory;
use crate::model::{Day, Interner, col};

/// The column of the (account, day) key of [`day_key`].
const KEY: &str = "account_day";
/// The first day of an account's window within the month, in [`accounts_frame`].
pub(super) const WIN_START: &str = "win_start";
/// The day after an account's window within the month, in [`accounts_frame`].
pub(super) const WIN_END: &str = "win_end";

/// Gap fill (spec 2.3) for the accounts not observed on exactly their
/// window's days: `daily` holds their daily values, `incomplete` their
/// windows (`known` rows). Returns account id, day, value (`Int128`, 0 where
/// nothing could be carried), and whether the day was observed or filled,
/// for every window day and every observed day.
pub(super) fn fill_gaps(daily: Vec<DataFrame>, incomplete: DataFrame, first: Day) -> PolarsResult<DataFrame> {
    let daily = if daily.is_empty() {
        DataFrame::new(
            0,
            vec![
                Column::new(col::ACCOUNT_ID.into(), Vec::<u32>::new()),
                Column::new(col::DAY.into(), Vec::<i32>::new()),
                Column::new(col::VALUE.into(), Vec::<i32>::new()).cast(&DataType::Int128)?,
            ],
        )?
        .lazy()
    } else {
        concat(daily.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?
    };
    let grid = incomplete
        .lazy()
        .filter(col(WIN_START).lt(col(WIN_END)))
        .select([
            col(col::ACCOUNT_ID),
            int_ranges(col(WIN_START), col(WIN_END), lit(1i64), DataType::Int32).alias(col::DAY),
        ])
        .explode(by_name([col::DAY], true, false), ExplodeOptions { empty_as_null: false, keep_nulls: false });

    // (account, day) as one UInt64 key, so that the join and the sort work
    // on one integer column instead of encoding two.
    let key = day_key(col(col::ACCOUNT_ID), first);

    // Window days and observed days, filled forward then backward per
    // account. The rows are sorted by (account, day), so a fill per account
    // is a fill over the whole column, kept where the value it carries comes
    // from the same account: no window over account groups.
    let source = when(col(col::VALUE).is_not_null()).then(col(col::ACCOUNT_ID)).otherwise(lit(Null {}));
    let fill = |e: Expr, s: FillNullStrategy| e.fill_null_with_strategy(s);
    let from_same_account = |s: FillNullStrategy| {
        when(fill(source.clone(), s).eq(col(col::ACCOUNT_ID))).then(fill(col(col::VALUE), s)).otherwise(lit(Null {}))
    };
    let filled_value = coalesce(&[
        col(col::VALUE),
        from_same_account(FillNullStrategy::Forward(None)),
        from_same_account(FillNullStrategy::Backward(None)),
    ]);
    daily
        .select([key.clone(), col(col::VALUE)])
        .join(
            grid.select([key]),
            [col(KEY)],
            [col(KEY)],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .sort([KEY], SortMultipleOptions::default())
        .with_columns([
            (col(KEY) / lit(KEY_SHIFT)).cast(DataType::UInt32).alias(col::ACCOUNT_ID),
            ((col(KEY) % lit(KEY_SHIFT)).cast(DataType::Int32) + lit(first)).alias(col::DAY),
        ])
        .with_columns([col(col::VALUE).is_not_null().alias(col::OBSERVED), filled_value.alias("filled_value")])
        .with_columns([
            col(col::OBSERVED).not().and(col("filled_value").is_not_null()).alias(col::FILLED),
            col("filled_value").fill_null(lit(0i128)).cast(DataType::Int128).alias(col::VALUE),
        ])
        .select([col(col::ACCOUNT_ID), col(col::DAY), col(col::VALUE), col(col::OBSERVED), col(col::FILLED)])
        .collect()
}

/// Known accounts, in directory order, with id, owner (entity index) and
/// window clipped to `[first, end)`.
pub(super) fn accounts_frame(
    dir: &Directory,
    accounts: &mut Interner,
    first: Day,
    end: Day,
) -> PolarsResult<DataFrame> {
    let n = dir.accounts.len();
    let mut ids = Vec::with_capacity(n);
    let mut owner_idx = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    for a in &dir.accounts {
        ids.push(accounts.id(&a.id));
        owner_idx.push(a.owner as u32);
        starts.push(a.created_on.map_or(first, |c| c.max(first)));
        ends.push(a.deleted_on.map_or(end, |d| d.min(end)));
    }
    DataFrame::new(
        n,
        vec![
            Column::new(col::ACCOUNT_ID.into(), ids),
            Column::new(col::OWNER_IDX.into(), owner_idx),
            Column::new(WIN_START.into(), starts),
            Column::new(WIN_END.into(), ends),
        ],
    )
}

/// `id` and the day as one `UInt64` key (an id and a day of the month in
/// one integer column): joins, sorts and group-bys on one integer column are
/// much faster than on two.
fn day_key(id: Expr, first: Day) -> Expr {
    (id.cast(DataType::UInt64) * lit(KEY_SHIFT) + (col(col::DAY) - lit(first)).cast(DataType::UInt64)).alias(KEY)
}

/// The factor of the id in a [`day_key`].
const KEY_SHIFT: u64 = 1 << 32;

#[cfg(test)]
mod tests {
    use crate::meter::tests::{dir, kinds, meter_recs, usage};
    use crate::model::{DailyMethod, FindingKind};

    #[test]
    fn gaps_fill_forward_then_backward_within_the_window() {
        // Observed on days 3 and 6 (indices 2 and 5) of a full-month window.
        let recs = [("sa", "", 2, 0, 100, 0, 1), ("sa", "", 5, 0, 200, 0, 2)];
        let d = dir("sa,C,c,,\n");
        let m = meter_recs(&recs, &d, DailyMethod::Mean);
        // Days 1-2 backward from day 3; days 4-5 forward from day 3; days 7-31 forward from day 6.
        assert_eq!(usage(&m, "sa"), (100 * 5 + 200 * 26, 2, 29));
        assert!(kinds(&m).contains(&(FindingKind::GapFilled, "sa".into(), "29 days filled".into())));
    }
}
