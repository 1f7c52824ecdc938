//! The usage that metering hands on: [`Metered`], with each entity's daily
//! usage ([`EntityUsage`], [`EntityDays`]), each account's daily value
//! ([`DailyUsage`]) and the byte-days set apart per account
//! ([`Uncontracted`]). Rating and export read these types; this
//! module only holds them and must not compute usage, nor know prices or
//! contracts.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::directory::EntityIdx;
use crate::model::{Day, Finding, Interner, col};

/// Daily usage of every entity's own storage accounts (known accounts
/// only): a table of entity × day of the month, entity-major, so that one
/// entity's days are one slice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityUsage {
    days: usize,
    /// Sum of the accounts' daily values, at `entity * days + day`.
    bytes: Vec<i128>,
    /// Whether any account was active (in its window or with a snapshot) that day.
    active: Vec<bool>,
    /// Whether the entity has any active day.
    any: Vec<bool>,
}

impl EntityUsage {
    /// No usage for `entities` entities over `days` days.
    pub fn new(entities: usize, days: usize) -> Self {
        EntityUsage {
            days,
            bytes: vec![0; entities * days],
            active: vec![false; entities * days],
            any: vec![false; entities],
        }
    }

    /// Adds `bytes` to `entity` on day index `day`, which becomes active.
    pub fn add(&mut self, entity: EntityIdx, day: usize, bytes: i128) {
        self.bytes[entity * self.days + day] += bytes;
        self.active[entity * self.days + day] = true;
        self.any[entity] = true;
    }

    /// The table from day-major sums (`day * entities + entity`): a blocked
    /// transpose, which stays in cache where entity by entity would not.
    pub(super) fn from_day_major(entities: usize, days: usize, bytes: &[i128], active: &[bool]) -> Self {
        let mut out = EntityUsage::new(entities, days);
        const BLOCK: usize = 256;
        for lo in (0..entities).step_by(BLOCK) {
            let hi = (lo + BLOCK).min(entities);
            for d in 0..days {
                for e in lo..hi {
                    let (from, to) = (d * entities + e, e * days + d);
                    out.bytes[to] = bytes[from];
                    out.active[to] = active[from];
                    out.any[e] |= active[from];
                }
            }
        }
        out
    }

    /// The days of `entity`, if it has any active day.
    pub fn get(&self, entity: EntityIdx) -> Option<EntityDays<'_>> {
        self.any.get(entity).copied().unwrap_or(false).then(|| {
            let days = entity * self.days..(entity + 1) * self.days;
            EntityDays { bytes: &self.bytes[days.clone()], active: &self.active[days] }
        })
    }

    /// Entities with any active day, in index order.
    pub fn entities(&self) -> impl Iterator<Item = EntityIdx> + '_ {
        self.any.iter().enumerate().filter(|(_, a)| **a).map(|(e, _)| e)
    }
}

/// Daily usage of one entity's own storage accounts.
#[derive(Debug, Clone, Copy)]
pub struct EntityDays<'a> {
    /// Sum of the accounts' daily values, per day of the month.
    pub bytes: &'a [i128],
    /// Whether any account was active (in its window or with a snapshot) that day.
    pub active: &'a [bool],
}

impl<'a> EntityDays<'a> {
    /// Byte-days over the days `[from, to)` (month-relative indices) that are active.
    pub fn byte_days(&self, from: usize, to: usize) -> i128 {
        self.bytes[from..to].iter().sum()
    }

    /// Active days within `[from, to)`.
    pub fn active_days(&self, from: usize, to: usize) -> impl Iterator<Item = usize> + 'a {
        let active = self.active;
        (from..to).filter(move |&d| active[d])
    }
}

/// Each storage account's daily value (its byte-days of that day: the
/// day's mean or maximum bytes, spec 2.2) on every account day that counts
/// (observed, filled or in its window), by account id: one integer column
/// per day of the month, day-major (`day * accounts + id`), so that the
/// tally's runs of days each fill their own columns.
///
/// 8 bytes per account and day (12 MB for 50,000 accounts over 31 days):
/// a value is a `u64`, with [`DailyUsage::NONE`] for "no account day";
/// the rare values of `u64::MAX - 1` and above (sums over buckets beyond
/// 2^64) are kept exactly in a side table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DailyUsage {
    /// The first day of the month.
    first: Day,
    days: usize,
    accounts: usize,
    /// `NONE`, `WIDE` (look in `wide`) or the value.
    values: Vec<u64>,
    /// Values that do not fit below `WIDE`, by (account id, day index).
    wide: BTreeMap<(u32, u32), i128>,
}

impl DailyUsage {
    /// Marks an account day that does not count.
    pub const NONE: u64 = u64::MAX;
    /// Marks a value kept in the side table.
    const WIDE: u64 = u64::MAX - 1;

    /// No account day for `accounts` ids over `days` days from `first`.
    pub fn new(first: Day, days: usize, accounts: usize) -> Self {
        DailyUsage { first, days, accounts, values: vec![Self::NONE; days * accounts], wide: BTreeMap::new() }
    }

    /// The day-major cells (`day * accounts + id`), for the tally to fill
    /// with [`DailyUsage::store`].
    pub(super) fn cells(&mut self) -> &mut [u64] {
        &mut self.values
    }

    /// Keeps values of the side table found by a tally.
    pub(super) fn merge_wide(&mut self, wide: Vec<(u32, u32, i128)>) {
        self.wide.extend(wide.into_iter().map(|(id, day, v)| ((id, day), v)));
    }

    /// Writes `value` into a day-major cell, or marks it wide (returns
    /// `false`: the caller keeps it in the side table).
    pub(super) fn store(cell: &mut u64, value: i128) -> bool {
        match u64::try_from(value) {
            Ok(v) if v < Self::WIDE => {
                *cell = v;
                true
            }
            _ => {
                *cell = Self::WIDE;
                false
            }
        }
    }

    /// Days of the month.
    pub fn days(&self) -> usize {
        self.days
    }

    /// The daily value of account `id` on day index `day` (0 = the first of
    /// the month), or `None` when that account day does not count.
    pub fn get(&self, id: u32, day: usize) -> Option<i128> {
        if id as usize >= self.accounts || day >= self.days {
            return None;
        }
        match self.values[day * self.accounts + id as usize] {
            Self::NONE => None,
            Self::WIDE => self.wide.get(&(id, day as u32)).copied(),
            v => Some(i128::from(v)),
        }
    }

    /// The `daily_usage` frame: `storage_account_id`, `day` (a date) and
    /// `byte_days` (`Int128`), one row per account day that counts, by
    /// account name then day. For tests and tools: a run does not publish it.
    pub fn frame(&self, accounts: &Interner) -> PolarsResult<DataFrame> {
        let mut ids: Vec<u32> = (0..self.accounts as u32).collect();
        ids.sort_unstable_by(|&a, &b| accounts.name(a).cmp(accounts.name(b)));
        let (mut names, mut days, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for id in ids {
            for d in 0..self.days {
                if let Some(v) = self.get(id, d) {
                    names.push(accounts.name(id));
                    days.push(self.first + d as Day);
                    values.push(v);
                }
            }
        }
        let n = names.len();
        DataFrame::new(
            n,
            vec![
                Column::new(col::ACCOUNT.into(), names),
                Column::new(col::DAY.into(), days).cast(&DataType::Date)?,
                Int128Chunked::from_vec("byte_days".into(), values).into_column(),
            ],
        )
    }
}

/// What metering hands to rating and export.
#[derive(Debug)]
pub struct Metered {
    /// How many (account, day) rows count: observed, filled or in a window.
    pub account_days: usize,
    /// Names of the account ids.
    pub accounts: Interner,
    /// The `account_usage` output, sorted by account.
    pub account_usage: DataFrame,
    /// Daily usage per owning entity (end customers), known accounts only.
    pub entity_days: EntityUsage,
    /// Each account's daily values, by account id (names in `accounts`).
    pub daily_usage: DailyUsage,
    /// Usage of known accounts on the days set apart for their owner (the
    /// `set_apart` masks metering was given), by account id. The name is
    /// rating's: the pipeline sets apart each owner's uncontracted days.
    pub uncontracted: Vec<Uncontracted>,
    /// `gap_filled`, `no_usage_data`, `unknown_storage_account`, `conflicting_samples`.
    pub findings: Vec<Finding>,
    /// Bytes of raw records written to local disk while their days were
    /// open (see [`super::DayMeter::spill_above`]); 0 when they fitted.
    pub spilled_bytes: u64,
}

/// A storage account's usage on the days set apart for its owner: those
/// whose bit is set in the owner's mask given to [`super::DayMeter::finish`].
/// Metering only tallies them; what the days mean is the caller's rule (the
/// pipeline passes the days on which the owner's usage is not billed on
/// every edge, which rating reports as `uncontracted_usage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncontracted {
    /// The account id.
    pub account: u32,
    /// Its owner.
    pub owner: EntityIdx,
    /// Byte-days on those days.
    pub byte_days: i128,
    /// Account days among them.
    pub days: u32,
}
