//! The tally of account days: [`Tally`] adds up, in one pass over rows of
//! (account id, day, value), each account's byte-days, observed and filled
//! days and those on the days it is asked to set apart, and each owning
//! entity's daily sums; it keeps each account's daily value on the way
//! ([`DailyUsage`]). This module only adds up: it must not decide which
//! days are set apart (the caller's masks say), fill gaps or build outputs.

use polars::prelude::*;

use super::DailyUsage;
use crate::model::{Day, col};

/// What the passes over the account days add up: per account its
/// byte-days, observed and filled days, and those on the days set apart for
/// its owner ([`Owners::set_apart`]); per
/// owning entity and day the sum that rating needs, day-major
/// (`day * entities + entity`) so that a frame of one day adds to one
/// contiguous row, and a run of days to its own rows. Indexed by dense ids,
/// this costs a small fraction of the two polars group-bys it replaces (on a
/// month of a million accounts, 13 s of a 49 s run).
pub(super) struct Tally<'a> {
    owners: Owners<'a>,
    /// The day of the first row of the entity arrays.
    first: Day,
    entities: usize,
    /// What each account id's days add up to.
    pub(super) totals: Vec<AccountTotals>,
    /// Account days added.
    pub(super) rows: usize,
    entity_bytes: &'a mut [i128],
    entity_active: &'a mut [bool],
    /// Each account's daily value, day-major (`day * accounts + id`) from
    /// `first` on, as [`DailyUsage::store`] writes them.
    account_values: &'a mut [u64],
    /// Values too wide for `account_values`: (account id, day of the month, value).
    pub(super) wide: Vec<(u32, u32, i128)>,
}

/// What a [`Tally`] knows of the accounts' owners.
#[derive(Clone, Copy)]
pub(super) struct Owners<'a> {
    /// The owner (entity index) of each account id; `None` if unknown.
    pub(super) of: &'a [Option<u32>],
    /// Each entity's days whose byte-days are also tallied apart per
    /// account (bit `day - month_first`), as the caller asked.
    pub(super) set_apart: &'a [u32],
    /// The first day of the month (bit 0 of the set-apart days).
    pub(super) month_first: Day,
}

impl<'a> Tally<'a> {
    /// A tally of `accounts` account ids whose entity sums, from day
    /// `first` on, go to `entity_bytes` and `entity_active`, and whose
    /// daily values go to `account_values`.
    pub(super) fn new(
        owners: Owners<'a>,
        first: Day,
        entities: usize,
        accounts: usize,
        entity_bytes: &'a mut [i128],
        entity_active: &'a mut [bool],
        account_values: &'a mut [u64],
    ) -> Self {
        Tally {
            owners,
            first,
            entities,
            totals: vec![AccountTotals::default(); accounts],
            rows: 0,
            entity_bytes,
            entity_active,
            account_values,
            wide: Vec::new(),
        }
    }

    /// Adds the rows of a frame of account days, with their observed and
    /// filled flags (`None`: all observed).
    pub(super) fn add(
        &mut self,
        df: &DataFrame,
        flags: Option<(&BooleanChunked, &BooleanChunked)>,
    ) -> PolarsResult<()> {
        let rows = account_days(df)?;
        match flags {
            None => self.add_rows(rows.map(|(id, day, value)| (id, day, value, true, false))),
            Some((observed, filled)) => self.add_rows(
                rows.zip(observed.iter().zip(filled.iter()))
                    .map(|((id, day, value), (o, f))| (id, day, value, o == Some(true), f == Some(true))),
            ),
        }
        Ok(())
    }

    /// Adds the rows of `frames` (daily values, `UInt64` or `Int128`) of
    /// the accounts marked in `complete`; those of the others go to `rest`,
    /// to be filled, with `Int128` values.
    pub(super) fn add_days(
        &mut self,
        frames: Vec<DataFrame>,
        complete: &[bool],
        rest: &mut Vec<DataFrame>,
    ) -> PolarsResult<()> {
        for df in frames {
            let mut others = 0;
            let rows = account_days(&df)?
                .filter(|&(id, _, _)| {
                    let keep = complete[id as usize];
                    others += usize::from(!keep);
                    keep
                })
                .map(|(id, day, value)| (id, day, value, true, false));
            self.add_rows(rows);
            if others > 0 {
                let of_others =
                    df.select([col::ACCOUNT_ID, col::DAY, col::VALUE])?.filter(&!complete_mask(&df, complete)?)?;
                rest.push(wide_values(of_others)?);
            }
        }
        Ok(())
    }

    /// Adds rows of (account id, day, value, observed, filled).
    fn add_rows(&mut self, rows: impl Iterator<Item = (u32, Day, i128, bool, bool)>) {
        let Owners { of, set_apart, month_first } = self.owners;
        let accounts = self.totals.len();
        for (id, day, value, observed, filled) in rows {
            self.rows += 1;
            let t = &mut self.totals[id as usize];
            t.present = true;
            t.byte_days += value;
            t.observed_days += u32::from(observed);
            t.filled_days += u32::from(filled);
            let cell = &mut self.account_values[(day - self.first) as usize * accounts + id as usize];
            if !DailyUsage::store(cell, value) {
                self.wide.push((id, (day - month_first) as u32, value));
            }
            if let Some(o) = of[id as usize] {
                let slot = (day - self.first) as usize * self.entities + o as usize;
                self.entity_bytes[slot] += value;
                self.entity_active[slot] = true;
                if set_apart[o as usize] >> (day - month_first) & 1 == 1 {
                    t.set_apart_byte_days += value;
                    t.set_apart_days += 1;
                }
            }
        }
    }
}

/// A frame of daily values with `Int128` values: the reducers keep them as
/// `UInt64` while the month is read, when they fit.
fn wide_values(mut df: DataFrame) -> PolarsResult<DataFrame> {
    if df.column(col::VALUE)?.dtype() != &DataType::Int128 {
        let wide = df.column(col::VALUE)?.cast(&DataType::Int128)?;
        df.with_column(wide)?;
    }
    Ok(df)
}

/// The (account id, day, value) rows of a frame of account days, whose
/// values are `UInt64` or `Int128`.
fn account_days(df: &DataFrame) -> PolarsResult<impl Iterator<Item = (u32, Day, i128)> + '_> {
    let values = df.column(col::VALUE)?;
    let (narrow, wide) = match values.dtype() {
        DataType::UInt64 => (Some(values.u64()?), None),
        _ => (None, Some(values.i128()?)),
    };
    let values = narrow
        .into_iter()
        .flat_map(|v| v.into_no_null_iter().map(i128::from))
        .chain(wide.into_iter().flat_map(|v| v.into_no_null_iter()));
    Ok(df
        .column(col::ACCOUNT_ID)?
        .u32()?
        .into_no_null_iter()
        .zip(df.column(col::DAY)?.i32()?.into_no_null_iter())
        .zip(values)
        .map(|((id, day), value)| (id, day, value)))
}

/// Whether each row's account is marked in `complete`.
pub(super) fn complete_mask(df: &DataFrame, complete: &[bool]) -> PolarsResult<BooleanChunked> {
    let ids = df.column(col::ACCOUNT_ID)?.u32()?;
    Ok(ids.into_no_null_iter().map(|a| complete[a as usize]).collect())
}

/// What the account days add up to for one account.
#[derive(Default, Clone, Copy)]
pub(super) struct AccountTotals {
    /// Whether the account has any account day.
    pub(super) present: bool,
    /// Byte-days over all its account days.
    pub(super) byte_days: i128,
    /// Days with a daily value of its own.
    pub(super) observed_days: u32,
    /// Days whose value was carried from another day.
    pub(super) filled_days: u32,
    /// Byte-days on the days set apart for its owner.
    pub(super) set_apart_byte_days: i128,
    /// Account days among those.
    pub(super) set_apart_days: u32,
}

impl AccountTotals {
    /// Adds what another pass found for the same account.
    pub(super) fn merge(&mut self, other: AccountTotals) {
        self.present |= other.present;
        self.byte_days += other.byte_days;
        self.observed_days += other.observed_days;
        self.filled_days += other.filled_days;
        self.set_apart_byte_days += other.set_apart_byte_days;
        self.set_apart_days += other.set_apart_days;
    }
}
