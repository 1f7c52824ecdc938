//! What a statement page looks up about its customers and its buyer,
//! found once for all pages: each directory account's `account_usage` row
//! and metering id, the accounts each entity owns in id order, each
//! account owner's daily usage, and the findings of each entity and
//! account. A customer is shown on its own statement and again on every
//! reseller's above it, so none of this is computed per page.

use std::collections::{HashMap, HashSet};

use polars::prelude::*;

use super::read::{read_accounts, read_findings};
use super::{Account, Customer, FindingRow, StatementInputs, party};
use crate::directory::{Directory, EntityIdx};

/// What a page looks up about customers and buyers: the directory's
/// accounts and findings per entity, each found once for every page (a
/// customer's accounts, daily usage and findings are shown on its own
/// statement and again on every reseller's above it).
pub(super) struct Lookup<'a> {
    directory: &'a Directory,
    /// The directory's storage accounts, in its order.
    accounts: Vec<DirAccount<'a>>,
    /// Rows of the directory's accounts, per owning entity, in id order.
    owned: Vec<Vec<usize>>,
    /// Each directory account's place in id order (so that accounts are
    /// put in id order by comparing numbers, not their ids).
    rank: Vec<u32>,
    /// Each account-owning entity's daily usage.
    daily: OwnerDaily,
    /// The findings of each subject, in the table's order.
    findings: Vec<Vec<FindingRow<'a>>>,
    /// The place in `findings` of each entity's id and of each account's
    /// id (`None`: no finding names it).
    entity_findings: Vec<Option<u32>>,
    account_findings: Vec<Option<u32>>,
}

/// A storage account of the directory, as the statements find it.
#[derive(Debug, Clone)]
pub(super) struct DirAccount<'a> {
    /// Its `account_usage` row, if it has one.
    pub(super) usage: Option<Account<'a>>,
    /// Its id in `daily_usage`, if metering saw it.
    pub(super) daily: Option<u32>,
}

impl<'a> Lookup<'a> {
    pub(super) fn new(inputs: &StatementInputs<'a>) -> PolarsResult<Self> {
        let dir = inputs.directory;
        let accounts = read_accounts(inputs)?;
        let mut by_id: Vec<usize> = (0..dir.accounts.len()).collect();
        by_id.sort_by(|&a, &b| dir.accounts[a].id.cmp(&dir.accounts[b].id));
        let mut rank = vec![0u32; by_id.len()];
        let mut owned: Vec<Vec<usize>> = vec![Vec::new(); dir.entities.len()];
        for (place, &a) in by_id.iter().enumerate() {
            rank[a] = place as u32;
            owned[dir.accounts[a].owner].push(a);
        }
        let daily = OwnerDaily::new(inputs, &owned, &accounts);
        let (subjects, findings): (HashMap<&str, u32>, Vec<Vec<FindingRow>>) = read_findings(&inputs.tables.findings)?
            .into_iter()
            .enumerate()
            .map(|(i, (subject, rows))| ((subject, i as u32), rows))
            .unzip();
        let entity_findings = dir.entities.iter().map(|e| subjects.get(e.id.as_str()).copied()).collect();
        let account_findings = dir.accounts.iter().map(|a| subjects.get(a.id.as_str()).copied()).collect();
        Ok(Lookup { directory: dir, accounts, owned, rank, daily, findings, entity_findings, account_findings })
    }

    /// A customer's storage accounts (those it owns, or when it owns none,
    /// those beneath it: a reseller billed for its own reservation) and
    /// their daily usage.
    pub(super) fn customer<'s>(&'s self, id: &'a str) -> Customer<'s> {
        let dir = self.directory;
        let (mut rows, mut beneath): (Vec<usize>, bool) = (Vec::new(), false);
        let mut daily = vec![None; self.daily.days];
        if let Some(e) = dir.entity(id) {
            rows.clone_from(&self.owned[e]);
            if rows.is_empty() {
                beneath = true;
                for s in dir.subtree(e) {
                    rows.extend_from_slice(&self.owned[s]);
                    self.daily.add_into(s, &mut daily);
                }
                rows.sort_unstable_by_key(|&a| self.rank[a]);
            } else {
                self.daily.add_into(e, &mut daily);
            }
        }
        let accounts = rows.iter().filter_map(|&a| self.accounts[a].usage.as_ref()).collect();
        Customer { party: party(dir, id), beneath, accounts, daily }
    }

    /// The findings whose subject is the buyer, an entity beneath it, or a
    /// storage account one of them owns; sorted by kind, subject and detail.
    pub(super) fn concerning(&self, buyer: Option<EntityIdx>) -> Vec<FindingRow<'a>> {
        let Some(buyer) = buyer else { return Vec::new() };
        // A subject once, should an entity and an account have the same id.
        let mut seen = HashSet::new();
        let mut out: Vec<FindingRow> = Vec::new();
        for e in self.directory.subtree(buyer) {
            let accounts = self.owned[e].iter().map(|&a| self.account_findings[a]);
            for subject in std::iter::once(self.entity_findings[e]).chain(accounts).flatten() {
                if seen.insert(subject) {
                    out.extend_from_slice(&self.findings[subject as usize]);
                }
            }
        }
        // Stable: a subject's findings of the same kind and detail stay in the table's order.
        out.sort_by_key(|f| (f.kind, f.subject_id, f.detail));
        out
    }
}

/// Each account-owning entity's daily usage: the sum of its accounts' daily
/// values per day of the month, added up once for all pages.
struct OwnerDaily {
    days: usize,
    /// Each entity's row in `sums` (`NO_ROW`: it owns no account).
    row: Vec<u32>,
    /// One row of `days` sums per account-owning entity, [`OwnerDaily::NONE`]
    /// where none of its accounts has a value (daily values are not negative).
    sums: Vec<i128>,
}

impl OwnerDaily {
    const NONE: i128 = i128::MIN;
    const NO_ROW: u32 = u32::MAX;

    fn new(inputs: &StatementInputs<'_>, owned: &[Vec<usize>], accounts: &[DirAccount<'_>]) -> Self {
        let (usage, days) = (inputs.daily_usage, inputs.daily_usage.days());
        let mut rows = 0;
        let row: Vec<u32> = owned
            .iter()
            .map(|o| {
                if o.is_empty() {
                    return Self::NO_ROW;
                }
                rows += 1;
                rows - 1
            })
            .collect();
        let mut sums = vec![Self::NONE; rows as usize * days];
        // Day by day: the daily values are stored day-major.
        for day in 0..days {
            for (a, account) in inputs.directory.accounts.iter().enumerate() {
                let Some(v) = accounts[a].daily.and_then(|id| usage.get(id, day)) else { continue };
                let sum = &mut sums[row[account.owner] as usize * days + day];
                *sum = if *sum == Self::NONE { v } else { sum.saturating_add(v) };
            }
        }
        OwnerDaily { days, row, sums }
    }

    /// Adds entity `e`'s daily sums into `daily` (a day none of its accounts
    /// has stays as it was).
    fn add_into(&self, e: EntityIdx, daily: &mut [Option<i128>]) {
        let row = self.row[e];
        if row == Self::NO_ROW {
            return;
        }
        let sums = &self.sums[row as usize * self.days..][..self.days];
        for (day, &v) in daily.iter_mut().zip(sums) {
            if v != Self::NONE {
                *day = Some(day.unwrap_or(0).saturating_add(v));
            }
        }
    }
}
