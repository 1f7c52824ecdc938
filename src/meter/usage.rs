//! The usage that metering hands on: [`Metered`], with each entity's daily
//! usage ([`EntityUsage`], [`EntityDays`]) and the byte-days set apart per
//! account ([`Uncontracted`]). Rating and export read these types; this
//! module only holds them and must not compute usage, nor know prices or
//! contracts.

use polars::prelude::*;

use crate::directory::EntityIdx;
use crate::model::{Finding, Interner};

/// Daily usage of every entity's own storage accounts (known accounts
/// only): a table of entity × day of the month, entity-major, so that one
/// entity's days are one slice.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Usage of known accounts on the days set apart for their owner (the
    /// `set_apart` masks metering was given), by account id. The name is
    /// rating's: the pipeline sets apart each owner's uncontracted days.
    pub uncontracted: Vec<Uncontracted>,
    /// `gap_filled`, `no_usage_data`, `unknown_storage_account`, `conflicting_samples`.
    pub findings: Vec<Finding>,
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
