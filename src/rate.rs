//! Rating (spec 3): byte-days and contracts → invoice lines on every edge of
//! the partner chain, and the findings of spec 3.3.
//!
//! Works on the small, aggregated side of the data: per-entity daily byte
//! sums from metering, the directory's contracts and deals. Every quantity
//! and amount is a [`rust_decimal::Decimal`] produced by [`crate::money`];
//! nothing is rounded here directly. Rating owns contract coverage
//! ([`uncontracted_days`]): the pipeline hands those day masks to metering,
//! which adds up each account's byte-days on them, and rating turns the
//! sums into `uncontracted_usage` findings.
//!
//! Nothing here panics on input: sums of byte-days and of quantities are
//! checked, and every quantity and amount comes from a checked
//! [`crate::money`] function; an overflow is a [`RateError`] naming the
//! contract and customer (the lints below deny `unwrap`, `expect`, `panic`
//! and unchecked arithmetic). With the directory's bounds none can occur:
//! byte-days are `u64` bytes × 31 days summed over accounts, below 10^30
//! for any real count of accounts (`i128` holds 1.7·10^38, and turning
//! byte-days into TB-months needs `byte-days × 10^6` to fit).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::arithmetic_side_effects)]

use std::collections::HashMap;

use rust_decimal::Decimal;
use thiserror::Error;

use crate::directory::{Contract, DealStatus, Directory, EntityIdx, Model};
use crate::meter::{EntityUsage, Metered};
use crate::model::{BillingMonth, Charge, Day, Finding, FindingKind, InvoiceLine, Unit, date_of};
use crate::money::{self, MoneyError};

/// A quantity, amount or sum of rating that does not fit. The directory's
/// bounds make this unreachable for validated input: it is a bug.
#[derive(Debug, Error)]
pub enum RateError {
    /// An invoice line's quantity or amount.
    #[error("rating the {charge} line of contract {contract} for customer {customer} failed")]
    Line {
        /// The contract's id.
        contract: String,
        /// The customer's entity id.
        customer: String,
        /// The charge.
        charge: &'static str,
        /// What overflowed.
        #[source]
        source: MoneyError,
    },
    /// A sum or quantity of an entity, outside any line.
    #[error("rating the {what} of {entity} failed")]
    Entity {
        /// The entity's id.
        entity: String,
        /// What was computed.
        what: &'static str,
        /// What overflowed.
        #[source]
        source: MoneyError,
    },
}

/// `a + b` of byte-days, or an overflow.
fn add_bytes(a: i128, b: i128) -> Result<i128, MoneyError> {
    a.checked_add(b).ok_or(MoneyError::Overflow { what: "byte-days" })
}

/// The sum of byte-days, checked.
fn sum_bytes<'b>(values: impl IntoIterator<Item = &'b i128>) -> Result<i128, MoneyError> {
    values.into_iter().try_fold(0i128, |acc, &v| add_bytes(acc, v))
}

/// Settings of rating.
#[derive(Debug, Clone, Copy)]
pub struct RateOptions {
    /// The billing month.
    pub month: BillingMonth,
    /// Capacity unit.
    pub unit: Unit,
}

/// Invoice lines in output order, and rating findings.
#[derive(Debug)]
pub struct Rated<'d> {
    /// Sorted by seller, buyer, customer, contract, charge.
    pub lines: Vec<InvoiceLine<'d>>,
    /// `deal_registration_missing`, `allocation_exceeds_reserved`, `uncontracted_usage`.
    pub findings: Vec<Finding>,
}

/// Volume above which a deal must be registered (TB).
const DEAL_THRESHOLD_TB: Decimal = Decimal::from_parts(100, 0, 0, false, 0);

/// Rates the month. Its inputs were validated and metered before: a
/// [`RateError`] (an overflow) is a bug, not bad input.
pub fn rate<'d>(dir: &'d Directory, metered: &Metered, opts: RateOptions) -> Result<Rated<'d>, RateError> {
    let ctx = Ctx::new(dir, &metered.entity_days, opts)?;
    // The findings need no lines: they are worked out on a second thread.
    let (lines, findings) = std::thread::scope(|scope| {
        let findings = scope.spawn(|| {
            let mut findings = ctx.deal_findings()?;
            findings.extend(ctx.allocation_findings()?);
            findings.extend(ctx.uncontracted_findings(metered)?);
            Ok::<_, RateError>(findings)
        });
        let lines = ctx.lines();
        (lines, findings.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    Ok(Rated { lines: lines?, findings: findings? })
}

/// Bits of the days of a month before day offset `n` (`n <= 32`).
fn days_before(n: u32) -> u32 {
    1u32.checked_shl(n).map_or(u32::MAX, |bit| bit.wrapping_sub(1))
}

/// Contract coverage (spec 3.3, `uncontracted_usage`): for each entity, the
/// days of `month` (bit `day - first day`) on which usage it owns is not
/// billed on every edge up to the vendor: the days on which it or a buyer
/// above it has no contract in force, and every day for the vendor's own
/// usage. Metering tallies the byte-days of these days apart per account,
/// and [`rate`] turns them into findings.
pub fn uncontracted_days(dir: &Directory, month: BillingMonth) -> Vec<u32> {
    let (first, end) = (month.first_day(), month.end_day());
    // Bits of the days before `day` (a month has at most 31 days).
    let before = |day: Day| days_before(day.clamp(first, end).saturating_sub(first) as u32);
    let all = before(end);
    let mut gaps = vec![0u32; dir.entities.len()];
    // Parents before children: each inherits the gaps of the edges above it.
    for e in dir.subtree(dir.vendor) {
        let Some(parent) = dir.entities[e].parent else { continue };
        let covered = dir.contracts_by_buyer[e]
            .iter()
            .map(|&k| &dir.contracts[k])
            .fold(0, |m, k| m | (k.end.map_or(all, before) & !before(k.start)));
        gaps[e] = gaps[parent] | (all & !covered);
    }
    gaps[dir.vendor] = all;
    gaps
}

/// The findings of a month that need no usage: allocations exceeding
/// reserved capacity, and deals missing for reservations above 100 TB.
pub fn directory_findings(dir: &Directory, opts: RateOptions) -> Result<Vec<Finding>, RateError> {
    let no_usage = EntityUsage::new(dir.entities.len(), opts.month.days() as usize);
    let ctx = Ctx::new(dir, &no_usage, opts)?;
    let mut findings = ctx.allocation_findings()?;
    findings.extend(ctx.deal_findings()?);
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    Ok(findings)
}

/// What rating works from: `'a` is the directory's lifetime, which the
/// lines borrow their names from.
struct Ctx<'a, 'u> {
    dir: &'a Directory,
    days: &'u EntityUsage,
    /// Sum of the subtree's daily bytes, per entity and day.
    subtree_bytes: Vec<Vec<i128>>,
    first: Day,
    end: Day,
    d: u32,
    unit: Unit,
}

impl<'a, 'u> Ctx<'a, 'u> {
    fn new(dir: &'a Directory, days: &'u EntityUsage, opts: RateOptions) -> Result<Self, RateError> {
        let d = opts.month.days() as usize;
        let mut subtree_bytes: Vec<Vec<i128>> =
            (0..dir.entities.len()).map(|e| days.get(e).map_or_else(|| vec![0; d], |u| u.bytes.to_vec())).collect();
        // Children before parents: accumulate bottom-up.
        for e in post_order(dir) {
            if let Some(p) = dir.entities[e].parent {
                let child = std::mem::take(&mut subtree_bytes[e]);
                for (acc, v) in subtree_bytes[p].iter_mut().zip(&child) {
                    *acc = add_bytes(*acc, *v).map_err(|source| RateError::Entity {
                        entity: dir.entities[p].id.clone(),
                        what: "daily bytes of the subtree",
                        source,
                    })?;
                }
                subtree_bytes[e] = child;
            }
        }
        Ok(Ctx {
            dir,
            days,
            subtree_bytes,
            first: opts.month.first_day(),
            end: opts.month.end_day(),
            d: d as u32,
            unit: opts.unit,
        })
    }

    /// The subtree sums of `e`, per day.
    fn subtree(&self, e: EntityIdx) -> &[i128] {
        &self.subtree_bytes[e]
    }

    /// Every invoice line of the month, sorted by seller, buyer, customer,
    /// contract and charge.
    fn lines(&self) -> Result<Vec<InvoiceLine<'a>>, RateError> {
        // Lines are ordered by the ranks by id of their seller, buyer and
        // customer, integers instead of strings.
        let rank = &self.dir.id_rank;
        // Contracts in (seller, buyer, id) order: a contract's position then
        // orders the contracts of one edge by id, and the lines come out
        // nearly sorted (contracts of one edge interleave their customers).
        let mut contracts: Vec<&Contract> = self.dir.contracts.iter().collect();
        contracts.sort_by(|a, b| (rank[a.seller], rank[a.buyer], &a.id).cmp(&(rank[b.seller], rank[b.buyer], &b.id)));
        let contracts: Vec<(u32, &Contract)> = contracts.into_iter().enumerate().map(|(i, k)| (i as u32, k)).collect();
        // Contracts are independent: runs of them are rated on their own threads.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_run = contracts.len().div_ceil(threads).max(1);
        let runs: Vec<LineSink> = std::thread::scope(|scope| {
            let jobs: Vec<_> = contracts
                .chunks(per_run)
                .map(|run| {
                    scope.spawn(move || {
                        // Room for a usage and a minimum line per contract: a
                        // large month otherwise grows the vector of large
                        // structs several times over.
                        let mut out = LineSink::with_capacity(run.len().saturating_mul(2));
                        for &(position, k) in run {
                            self.rate_contract(k, position, rank, &mut out)?;
                        }
                        Ok::<_, RateError>(out)
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<_>, RateError>>()
        })?;
        let mut all = LineSink::with_capacity(runs.iter().map(|r| r.lines.len()).sum());
        for run in runs {
            all.lines.extend(run.lines);
            all.keys.extend(run.keys);
        }
        // Sorted by position, then put in place: a line is a large struct.
        let LineSink { mut lines, keys } = all;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        permute(&mut lines, order);
        debug_assert!(lines.windows(2).all(|w| w[0].sort_key() < w[1].sort_key()), "ranks order lines like their ids");
        Ok(lines)
    }

    fn quantity(&self, byte_days: i128) -> Result<Decimal, MoneyError> {
        money::tb_months(byte_days, self.d, self.unit.bytes())
    }

    /// The TB-months of `entity`'s byte-days, an error naming it if they do not fit.
    fn entity_quantity(&self, entity: EntityIdx, byte_days: i128) -> Result<Decimal, RateError> {
        self.quantity(byte_days).map_err(|source| RateError::Entity {
            entity: self.dir.entities[entity].id.clone(),
            what: "TB-months",
            source,
        })
    }

    /// The lines of contract `k`, the `position`th in (seller, buyer, id) order.
    fn rate_contract(
        &self,
        k: &'a Contract,
        position: u32,
        rank: &[u32],
        out: &mut LineSink<'a>,
    ) -> Result<(), RateError> {
        let Some((a0, a1)) = k.days_within(self.first, self.end) else {
            return Ok(());
        };
        // Within the month: offsets of at most 31 days.
        let (from, to) = (a0.saturating_sub(self.first) as usize, a1.saturating_sub(self.first) as usize);
        let n_a = to.saturating_sub(from) as u32;
        let seller = &self.dir.entities[k.seller];
        let buyer = &self.dir.entities[k.buyer];
        let error = |customer: EntityIdx, charge: Charge| {
            move |source| RateError::Line {
                contract: k.id.clone(),
                customer: self.dir.entities[customer].id.clone(),
                charge: charge.as_str(),
                source,
            }
        };
        let mut line = |customer: EntityIdx, charge, quantity, price, days, deal_id: Option<&'a str>| {
            let amount = money::amount(quantity, price).map_err(error(customer, charge))?;
            let c = &self.dir.entities[customer];
            out.keys.push((rank[k.seller], rank[k.buyer], rank[customer], position, charge));
            out.lines.push(InvoiceLine {
                seller_id: seller.id.as_str(),
                seller_name: seller.name.as_str(),
                buyer_id: buyer.id.as_str(),
                buyer_name: buyer.name.as_str(),
                customer_id: c.id.as_str(),
                customer_name: c.name.as_str(),
                contract_id: k.id.as_str(),
                charge,
                quantity,
                unit_price: price,
                amount,
                currency: k.currency,
                days,
                deal_id,
            });
            Ok::<_, RateError>(())
        };
        match &k.model {
            Model::Reserved { reserved_tb, overage_price } => {
                let allowance = money::prorate(*reserved_tb, n_a, self.d).map_err(error(k.buyer, Charge::Reserved))?;
                line(k.buyer, Charge::Reserved, allowance, k.unit_price, n_a, None)?;
                let over = sum_bytes(&self.subtree(k.buyer)[from..to])
                    .and_then(|byte_days| self.quantity(byte_days))
                    .and_then(|used| used.checked_sub(allowance).ok_or(MoneyError::Overflow { what: "overage" }))
                    .map_err(error(k.buyer, Charge::Overage))?;
                if over > Decimal::ZERO {
                    line(k.buyer, Charge::Overage, over, *overage_price, n_a, None)?;
                }
            }
            Model::PayPerUse { minimum_tb } => {
                let mut customers: Vec<(EntityIdx, _)> =
                    self.dir.subtree(k.buyer).into_iter().filter_map(|c| self.days.get(c).map(|u| (c, u))).collect();
                customers.sort_by(|&(a, _), &(b, _)| self.dir.entities[a].id.cmp(&self.dir.entities[b].id));
                for (c, usage) in customers {
                    let active: Vec<usize> = usage.active_days(from, to).collect();
                    let Some(&first_active) = active.first() else {
                        continue;
                    };
                    let n_c = active.len() as u32;
                    let u = sum_bytes(active.iter().map(|&i| &usage.bytes[i]))
                        .and_then(|byte_days| self.quantity(byte_days))
                        .map_err(error(c, Charge::Usage))?;
                    let (price, deal) = if k.seller == self.dir.vendor {
                        match self.special_price(c, self.first.saturating_add(first_active as Day)) {
                            Some((p, id)) => (p, Some(id)),
                            None => (k.unit_price, None),
                        }
                    } else {
                        (k.unit_price, None)
                    };
                    line(c, Charge::Usage, u, price, n_c, deal)?;
                    let top_up = money::prorate(*minimum_tb, n_c, self.d)
                        .and_then(|minimum| minimum.checked_sub(u).ok_or(MoneyError::Overflow { what: "top-up" }))
                        .map_err(error(c, Charge::Minimum))?;
                    if top_up > Decimal::ZERO {
                        line(c, Charge::Minimum, top_up, price, n_c, deal)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The special price of an approved deal for `customer` valid on `day`.
    /// Several candidates: the latest `valid_from` wins, then the smallest id.
    fn special_price(&self, customer: EntityIdx, day: Day) -> Option<(Decimal, &'a str)> {
        self.dir
            .deals
            .iter()
            .filter(|deal| deal.customer == customer && deal.status == DealStatus::Approved && deal.valid_on(day))
            .filter_map(|deal| deal.special_price.map(|p| (deal, p)))
            .min_by(|(a, _), (b, _)| b.valid_from.cmp(&a.valid_from).then_with(|| a.id.cmp(&b.id)))
            .map(|(deal, p)| (p, deal.id.as_str()))
    }

    fn deal_findings(&self) -> Result<Vec<Finding>, RateError> {
        let mut owns = vec![false; self.dir.entities.len()];
        for a in &self.dir.accounts {
            owns[a.owner] = true;
        }
        let mut end_customers: Vec<(&str, EntityIdx)> =
            (0..owns.len()).filter(|&e| owns[e]).map(|e| (self.dir.entities[e].id.as_str(), e)).collect();
        end_customers.sort_unstable();
        let mut out = Vec::new();
        for (id, c) in end_customers {
            let byte_days = self
                .days
                .get(c)
                .map_or(Ok(0), |u| sum_bytes(u.bytes))
                .map_err(|source| RateError::Entity { entity: id.to_owned(), what: "byte-days", source })?;
            let used = self.entity_quantity(c, byte_days)?;
            let reserved = self.dir.contracts_by_buyer[c]
                .iter()
                .map(|&i| &self.dir.contracts[i])
                .filter(|k| k.days_within(self.first, self.end).is_some())
                .filter_map(|k| match k.model {
                    Model::Reserved { reserved_tb, .. } => Some(reserved_tb),
                    Model::PayPerUse { .. } => None,
                })
                .max()
                .unwrap_or(Decimal::ZERO);
            if used <= DEAL_THRESHOLD_TB && reserved <= DEAL_THRESHOLD_TB {
                continue;
            }
            let has_deal = self.dir.deals.iter().any(|deal| {
                deal.customer == c
                    && deal.status == DealStatus::Approved
                    && deal.valid_from < self.end
                    && deal.valid_to.is_none_or(|t| t > self.first)
            });
            if !has_deal {
                // In the configured unit, as `used` and `reserved_tb` are.
                let detail = if used > DEAL_THRESHOLD_TB {
                    format!("{used} {} used", self.unit.line_unit())
                } else {
                    format!("{reserved} {} reserved", self.unit.symbol())
                };
                out.push(
                    Finding::new(FindingKind::DealRegistrationMissing, id, format!("{detail} and no approved deal"))
                        .with_usage(Some(byte_days), Some(used)),
                );
            }
        }
        Ok(out)
    }

    fn allocation_findings(&self) -> Result<Vec<Finding>, RateError> {
        let dir = self.dir;
        let mut out = Vec::new();
        for (e, entity) in dir.entities.iter().enumerate() {
            if e == dir.vendor || dir.children[e].is_empty() {
                continue;
            }
            for day in self.first..self.end {
                let mut reserved = dir.children[e]
                    .iter()
                    .filter_map(|&ch| dir.contract_on(ch, day))
                    .filter_map(|k| match k.model {
                        Model::Reserved { reserved_tb, .. } => Some(reserved_tb),
                        Model::PayPerUse { .. } => None,
                    })
                    .peekable();
                // A reserved contract of 0 TB is still one (spec 3.3: "a
                // child holds a reserved contract under a parent on
                // pay-per-use"; so under a parent with no contract at
                // all); a day with none has nothing to check.
                if reserved.peek().is_none() {
                    continue;
                }
                let allocated = reserved.try_fold(Decimal::ZERO, |acc, tb| acc.checked_add(tb)).ok_or_else(|| {
                    RateError::Entity {
                        entity: entity.id.clone(),
                        what: "reserved capacity allocated to the children",
                        source: MoneyError::Overflow { what: "sum" },
                    }
                })?;
                let tb = self.unit.symbol();
                let detail = match dir.contract_on(e, day).map(|k| &k.model) {
                    Some(Model::PayPerUse { .. }) => Some(format!(
                        "on {}: children hold {allocated} {tb} of reserved contracts under a pay-per-use contract",
                        date_of(day)
                    )),
                    Some(Model::Reserved { reserved_tb, .. }) if allocated > *reserved_tb => Some(format!(
                        "on {}: children hold {allocated} {tb} reserved, above the {reserved_tb} {tb} reserved by {}",
                        date_of(day),
                        entity.id
                    )),
                    None => Some(format!(
                        "on {}: children hold {allocated} {tb} reserved while {} has no contract",
                        date_of(day),
                        entity.id
                    )),
                    Some(_) => None,
                };
                if let Some(detail) = detail {
                    out.push(Finding::new(FindingKind::AllocationExceedsReserved, entity.id.clone(), detail));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One finding per account with usage on its owner's uncontracted days,
    /// in account order; the reason is the owner's first uncontracted day's.
    fn uncontracted_findings(&self, metered: &Metered) -> Result<Vec<Finding>, RateError> {
        let dir = self.dir;
        let mut reasons: HashMap<EntityIdx, String> = HashMap::new();
        let mut usage: Vec<(&str, &crate::meter::Uncontracted)> =
            metered.uncontracted.iter().map(|u| (metered.accounts.name(u.account), u)).collect();
        usage.sort_unstable_by_key(|&(name, _)| name);
        usage
            .into_iter()
            .map(|(name, u)| {
                let quantity = self.quantity(u.byte_days).map_err(|source| RateError::Entity {
                    entity: name.to_owned(),
                    what: "TB-months on uncontracted days",
                    source,
                })?;
                let reason = reasons.entry(u.owner).or_insert_with(|| self.uncontracted_reason(u.owner));
                Ok(Finding::new(
                    FindingKind::UncontractedUsage,
                    name,
                    format!(
                        "{} days of usage by {} on uncontracted days ({reason}); not billed on that edge",
                        u.days, dir.entities[u.owner].id
                    ),
                )
                .with_usage(Some(u.byte_days), Some(quantity)))
            })
            .collect()
    }

    /// Why usage of `owner` is not billed on every edge, as of its first
    /// uncontracted day.
    fn uncontracted_reason(&self, owner: EntityIdx) -> String {
        let dir = self.dir;
        if owner == dir.vendor {
            return "owned by the vendor: no edge to bill".to_owned();
        }
        let chain = dir.buyers_up_to_vendor(owner);
        (self.first..self.end)
            .find_map(|day| chain.iter().copied().find(|&b| dir.contract_on(b, day).is_none()))
            .and_then(|b| {
                // Every buyer below the vendor has a parent.
                let parent = dir.entities[b].parent?;
                Some(format!("no contract between {} and {}", dir.entities[parent].id, dir.entities[b].id))
            })
            .unwrap_or_default()
    }
}

/// Invoice lines with their place in the output: the ranks by id of
/// seller, buyer and customer, the contract's position, the charge.
struct LineSink<'d> {
    lines: Vec<InvoiceLine<'d>>,
    keys: Vec<(u32, u32, u32, u32, Charge)>,
}

impl LineSink<'_> {
    fn with_capacity(n: usize) -> Self {
        LineSink { lines: Vec::with_capacity(n), keys: Vec::with_capacity(n) }
    }
}

/// Puts `items[order[i]]` at position `i` for every `i` (`order` is a
/// permutation), in place: each cycle of the permutation is followed once,
/// so every item moves once and nothing is allocated.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    const DONE: usize = usize::MAX;
    for start in 0..items.len() {
        let mut at = start;
        while order[at] != DONE {
            let from = std::mem::replace(&mut order[at], DONE);
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// Entities ordered so that every child comes before its parent.
fn post_order(dir: &Directory) -> Vec<EntityIdx> {
    let mut order = dir.subtree(dir.vendor); // breadth-first: parents before children
    order.reverse();
    order
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::directory::tests::{ACCOUNTS, CONTRACTS, DEALS, ENTITIES, parse};
    use std::str::FromStr;

    fn month() -> BillingMonth {
        "2026-10".parse().unwrap()
    }

    fn metered_with(dir: &Directory, usage: &[(&str, &[(usize, i128)])]) -> Metered {
        let d = month().days() as usize;
        let mut entity_days = EntityUsage::new(dir.entities.len(), d);
        for (e, days) in usage {
            for &(i, b) in *days {
                entity_days.add(dir.entity(e).unwrap(), i, b);
            }
        }
        Metered {
            account_days: 0,
            accounts: Default::default(),
            account_usage: polars::prelude::DataFrame::empty(),
            entity_days,
            daily_usage: Default::default(),
            uncontracted: Vec::new(),
            findings: Vec::new(),
            spilled_bytes: 0,
        }
    }

    proptest::proptest! {
        /// Permuting in place puts each item where the order says.
        #[test]
        fn permute_puts_every_item_where_the_order_says(keys in proptest::collection::vec(0u32..50, 0..60)) {
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| keys[i]);
            let expected: Vec<(u32, usize)> = order.iter().map(|&i| (keys[i], i)).collect();
            let mut items: Vec<(u32, usize)> = keys.iter().copied().zip(0..).collect();
            permute(&mut items, order);
            proptest::prop_assert_eq!(items, expected);
        }
    }

    fn full_month(tb: i128) -> Vec<(usize, i128)> {
        (0..31).map(|i| (i, tb * 1_000_000_000_000)).collect()
    }

    fn rate_it<'d>(dir: &'d Directory, m: &Metered) -> Rated<'d> {
        rate(dir, m, RateOptions { month: month(), unit: Unit::Tb }).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// The contracts, with c switching from pay-per-use (K3, to Oct 16) to
    /// reserved capacity (K3R, from Oct 16) under p.
    fn switch_on_the_16th() -> String {
        CONTRACTS.replace(
            "K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,",
            "K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,2026-10-16",
        ) + "K3R,p,c,reserved,10,9.00,11.00,,EUR,2026-10-16,\n"
    }

    #[test]
    fn overage_only_above_the_allowance() {
        let dir = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let at = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(50))]));
        assert!(!at.lines.iter().any(|l| l.charge == Charge::Overage), "exactly the allowance is no overage");
        let above = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(51))]));
        let over: Vec<_> = above.lines.iter().filter(|l| l.charge == Charge::Overage).collect();
        assert_eq!(over.len(), 1);
        // used 51·31/31 = 51, allowance 50·31/31 = 50: 1 TB-month × 7.50 = 7.50.
        assert_eq!(over[0].quantity, dec("1.000000"));
        assert_eq!(over[0].unit_price, dec("7.50"));
        assert_eq!(over[0].amount, dec("7.50"));
    }

    #[test]
    fn minimum_tops_up_and_is_prorated_by_active_days() {
        let dir = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        // 0.4 TB on 10 active days: usage 10·0.4/31, minimum 10/31 − usage.
        let days: Vec<_> = (5..15).map(|i| (i, 400_000_000_000)).collect();
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &days)]));
        let k3: Vec<_> = r.lines.iter().filter(|l| l.contract_id == "K3").collect();
        assert_eq!(k3.len(), 2);
        // usage 10·0.4/31 = 4/31 = 0.1290322… → 0.129032; minimum 1·10/31 = 0.3225806… →
        // 0.322581, minus 0.129032 = 0.193549.
        assert_eq!((k3[0].charge, k3[0].quantity, k3[0].days), (Charge::Minimum, dec("0.193549"), 10));
        assert_eq!((k3[1].charge, k3[1].quantity, k3[1].days), (Charge::Usage, dec("0.129032"), 10));
        // 0.193549 × 9.90 = 1.9161351 → 1.92; 0.129032 × 9.90 = 1.2774168 → 1.28.
        assert_eq!((k3[0].amount, k3[1].amount), (dec("1.92"), dec("1.28")));
    }

    #[test]
    fn special_prices_apply_only_on_vendor_edges() {
        let e = ENTITIES.to_owned() + "m,MSP,channel_partner,msp,ic\nz,Z,customer,,m\n";
        let a = ACCOUNTS.to_owned() + "sz,Z,z,,\n";
        let k = CONTRACTS.to_owned()
            + "K4,ic,m,pay_per_use,,8.00,,,EUR,2026-01-01,\nK5,m,z,pay_per_use,,12.00,,,EUR,2026-01-01,\n";
        let deals = DEALS.to_owned()
            + "D1,m,z,150,6.50,approved,2026-10-10,\nD2,m,z,150,1.00,rejected,2026-01-01,\nD3,p,c,150,2.00,approved,2026-01-01,\n";
        let dir = parse(&e, &a, &k, &deals).unwrap();
        // z active from day index 9 (Oct 10): D1 valid on the first day of C.
        let z: Vec<_> = (9..31).map(|i| (i, 2_000_000_000_000)).collect();
        let r = rate_it(&dir, &metered_with(&dir, &[("z", &z), ("c", &full_month(1))]));
        let vendor_z = r.lines.iter().find(|l| l.contract_id == "K4" && l.charge == Charge::Usage).unwrap();
        assert_eq!((vendor_z.unit_price, vendor_z.deal_id), (dec("6.50"), Some("D1")));
        let msp_z = r.lines.iter().find(|l| l.contract_id == "K5").unwrap();
        assert_eq!((msp_z.unit_price, msp_z.deal_id), (dec("12.00"), None));
        // D3 is for c, but c's vendor edge (K1) is reserved: no per-customer price there.
        assert!(r.lines.iter().all(|l| l.deal_id != Some("D3")));
        // A small customer's minimum top-up on the vendor edge carries the deal price too.
        let small: Vec<_> = (9..31).map(|i| (i, 100_000_000_000)).collect();
        let r_small = rate_it(&dir, &metered_with(&dir, &[("z", &small)]));
        let min = r_small.lines.iter().find(|l| l.contract_id == "K4" && l.charge == Charge::Minimum).unwrap();
        assert_eq!((min.unit_price, min.deal_id), (dec("6.50"), Some("D1")));
        // Active from Oct 9 instead: D1 is not yet valid on the first day of C.
        let z: Vec<_> = (8..31).map(|i| (i, 2_000_000_000_000)).collect();
        let r = rate_it(&dir, &metered_with(&dir, &[("z", &z)]));
        let vendor_z = r.lines.iter().find(|l| l.contract_id == "K4" && l.charge == Charge::Usage).unwrap();
        assert_eq!((vendor_z.unit_price, vendor_z.deal_id), (dec("8.00"), None));
    }

    #[test]
    fn mid_month_switch_splits_the_days() {
        let k = switch_on_the_16th();
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(12))]));
        let usage = r.lines.iter().find(|l| l.contract_id == "K3").unwrap();
        assert_eq!(
            (usage.days, usage.quantity),
            // 15 days of 12 TB: 180/31 = 5.8064516… TB-months.
            (15, dec("5.806452"))
        );
        // 5.806452 × 9.90 = 57.4838748 → 57.48.
        assert_eq!(usage.amount, dec("57.48"));
        let res = r.lines.iter().find(|l| l.contract_id == "K3R" && l.charge == Charge::Reserved).unwrap();
        // 10·16/31 = 5.1612903… → 5.161290; × 9.00 = 46.45161 → 46.45.
        assert_eq!((res.days, res.quantity, res.amount), (16, dec("5.161290"), dec("46.45")));
        let over = r.lines.iter().find(|l| l.contract_id == "K3R" && l.charge == Charge::Overage).unwrap();
        // used 16·12/31 = 6.193548, allowance 5.161290.
        // 192/31 = 6.1935483… → 6.193548; 6.193548 − 5.161290 = 1.032258; × 11.00 = 11.354838 → 11.35.
        assert_eq!((over.quantity, over.amount), (dec("1.032258"), dec("11.35")));
        // p is pay-per-use under d while c holds a reserved contract: allocation finding for p.
        assert!(r.findings.iter().any(|f| f.kind == FindingKind::AllocationExceedsReserved && f.subject_id == "p"));
    }

    #[test]
    fn a_reserved_contract_of_0_tb_under_a_pay_per_use_parent_is_still_an_allocation_finding() {
        // Spec 3.3: "or a child holds a reserved contract under a parent on
        // pay-per-use", whatever its size.
        let k = switch_on_the_16th().replace("K3R,p,c,reserved,10,", "K3R,p,c,reserved,0,");
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(12))]));
        let found: Vec<_> =
            r.findings.iter().filter(|f| f.kind == FindingKind::AllocationExceedsReserved).map(|f| &f.detail).collect();
        assert_eq!(found, ["on 2026-10-16: children hold 0 TB of reserved contracts under a pay-per-use contract"]);
        // Under a parent with no contract that day, the same.
        let k = switch_on_the_16th().replace("K3R,p,c,reserved,10,", "K3R,p,c,reserved,0,").replace(
            "K2,d,p,pay_per_use,,7.00,,,EUR,2026-01-01,",
            "K2,d,p,pay_per_use,,7.00,,,EUR,2026-01-01,2026-10-16",
        );
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(12))]));
        let found: Vec<_> =
            r.findings.iter().filter(|f| f.kind == FindingKind::AllocationExceedsReserved).map(|f| &f.detail).collect();
        assert_eq!(found, ["on 2026-10-16: children hold 0 TB reserved while p has no contract"]);
        // Without any reserved contract below it, p has nothing to check.
        let dir = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(12))]));
        assert!(!r.findings.iter().any(|f| f.kind == FindingKind::AllocationExceedsReserved && f.subject_id == "p"));
    }

    #[test]
    fn uncontracted_days_are_not_billed_and_deals_above_100_tb_are_required() {
        let k = CONTRACTS
            .replace("K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,", "K3,p,c,pay_per_use,,9.90,,,EUR,2026-10-11,");
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(101))]));
        let usage = r.lines.iter().find(|l| l.contract_id == "K3").unwrap();
        // 21 contracted days of 101 TB: 2121/31 = 68.4193548… → 68.419355; × 9.90 = 677.3516145 → 677.35.
        assert_eq!((usage.days, usage.quantity, usage.amount), (21, dec("68.419355"), dec("677.35")));
        let deal = r.findings.iter().find(|f| f.kind == FindingKind::DealRegistrationMissing).unwrap();
        assert_eq!((deal.subject_id.as_str(), deal.tb_months), ("c", Some(dec("101.000000"))));
    }

    #[test]
    fn findings_name_quantities_in_the_configured_unit() {
        // c also holds a reserved contract under p's pay-per-use one: an allocation finding.
        let k = switch_on_the_16th();
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        // 111 TiB every day: 111 TiB-months, above 100 of the configured unit.
        let tib: Vec<(usize, i128)> = (0..31).map(|i| (i, 111 << 40)).collect();
        let m = metered_with(&dir, &[("c", &tib)]);
        for (unit, expected) in [(Unit::Tib, "111.000000 TiB-month used"), (Unit::Tb, "122.045791 TB-month used")] {
            let r = rate(&dir, &m, RateOptions { month: month(), unit }).unwrap();
            let deal = r.findings.iter().find(|f| f.kind == FindingKind::DealRegistrationMissing).unwrap();
            assert!(deal.detail.starts_with(expected), "{unit:?}: {}", deal.detail);
            let allocation = r.findings.iter().find(|f| f.kind == FindingKind::AllocationExceedsReserved).unwrap();
            assert!(allocation.detail.contains(&format!(" {} ", unit.symbol())), "{unit:?}: {}", allocation.detail);
        }
    }

    #[test]
    fn usage_on_uncontracted_days_is_a_finding_per_account_with_its_byte_days() {
        use crate::meter::{MeterOptions, meter, tests::frame};
        use crate::model::{DailyMethod, Interner};
        let k = CONTRACTS
            .replace("K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,", "K3,p,c,pay_per_use,,9.90,,,EUR,2026-10-11,");
        let a = ACCOUNTS.to_owned() + "sv,Vendor,ic,,\nsb,Customer,c,,2026-10-06\n";
        let dir = parse(ENTITIES, &a, &k, DEALS).unwrap();
        // sa: 1 TB on every day; sv (the vendor's): 2 bytes on day 0 only,
        // filled to the month; sb: 5 bytes on day 2, deleted on Oct 6.
        let mut recs: Vec<crate::meter::tests::Rec> =
            (0..31).map(|d| ("sa", "", d, 0, 1_000_000_000_000, 0, 1)).collect();
        recs.push(("sv", "", 0, 0, 2, 0, 1));
        recs.push(("sb", "", 2, 0, 5, 0, 1));
        let mut ids = Interner::seeded(dir.accounts.iter().map(|a| a.id.as_str()));
        let records = frame(&recs, &mut ids);
        let opts = MeterOptions { month: month(), unit: Unit::Tb, daily_method: DailyMethod::Mean };
        let m = meter(records, &dir, ids, &uncontracted_days(&dir, month()), opts).unwrap();
        let r = rate_it(&dir, &m);
        let found: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::UncontractedUsage)
            .map(|f| (f.subject_id.as_str(), f.detail.as_str(), f.byte_days))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "sa",
                    "10 days of usage by c on uncontracted days (no contract between p and c); not billed on that edge",
                    Some(10_000_000_000_000)
                ),
                (
                    "sb",
                    "5 days of usage by c on uncontracted days (no contract between p and c); not billed on that edge",
                    Some(25)
                ),
                (
                    "sv",
                    "31 days of usage by ic on uncontracted days (owned by the vendor: no edge to bill); not billed on that edge",
                    Some(62)
                ),
            ]
        );
        // The contracted days are billed: 21 of sa's and none of sb's.
        let usage = r.lines.iter().find(|l| l.contract_id == "K3").unwrap();
        assert_eq!(usage.days, 21);
    }

    #[test]
    fn a_contract_at_the_directory_bounds_is_rated_exactly() {
        let top = "999999999.999999";
        let k = CONTRACTS.replace("K1,ic,d,reserved,50,6.00,7.50,", &format!("K1,ic,d,reserved,{top},{top},{top},"));
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        // c stores 2·10^9 TB every day: 10^9 + 10^-6 TB-months above the allowance.
        let r = rate_it(&dir, &metered_with(&dir, &[("c", &full_month(2_000_000_000))]));
        let k1: Vec<_> = r
            .lines
            .iter()
            .filter(|l| l.contract_id == "K1")
            .map(|l| (l.charge, l.quantity.to_string(), l.amount.to_string()))
            .collect();
        assert_eq!(
            k1,
            [
                // (10^9 + 10^-6) × (10^9 − 10^-6) = 10^18 − 10^-12.
                (Charge::Overage, "1000000000.000001".to_owned(), "1000000000000000000.00".to_owned()),
                (Charge::Reserved, top.to_owned(), "999999999999998000.00".to_owned()),
            ]
        );
    }

    /// The error and its sources, joined with `: `.
    fn chain(e: &dyn std::error::Error) -> String {
        std::iter::successors(Some(e), |e| e.source()).map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
    }

    #[test]
    fn an_overflow_beyond_the_bounds_is_an_error_naming_contract_and_customer() {
        // Values the directory refuses, set directly: rating reports them, it does not panic.
        let mut dir = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let k1 = dir.contracts.iter().position(|k| k.id == "K1").unwrap();
        dir.contracts[k1].model = Model::Reserved { reserved_tb: Decimal::MAX, overage_price: Decimal::ONE };
        let m = metered_with(&dir, &[]);
        let err = rate(&dir, &m, RateOptions { month: month(), unit: Unit::Tb }).unwrap_err();
        assert_eq!(
            chain(&err),
            "rating the reserved line of contract K1 for customer d failed: quantity is out of range for exact arithmetic"
        );

        let mut dir = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let k3 = dir.contracts.iter().position(|k| k.id == "K3").unwrap();
        dir.contracts[k3].unit_price = Decimal::MAX;
        let r =
            rate(&dir, &metered_with(&dir, &[("c", &full_month(1))]), RateOptions { month: month(), unit: Unit::Tb });
        assert_eq!(
            chain(&r.unwrap_err()),
            "rating the usage line of contract K3 for customer c failed: amount is out of range for exact arithmetic"
        );
        // Byte-days whose sum over the subtree does not fit i128.
        let dir = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let huge: Vec<_> = (0..2).map(|i| (i, i128::MAX)).collect();
        let r = rate(
            &dir,
            &metered_with(&dir, &[("c", &huge), ("p", &huge)]),
            RateOptions { month: month(), unit: Unit::Tb },
        );
        assert_eq!(
            chain(&r.unwrap_err()),
            "rating the daily bytes of the subtree of p failed: byte-days is out of range for exact arithmetic"
        );
    }

    #[test]
    fn uncontracted_days_are_the_gaps_of_every_edge_up_to_the_vendor() {
        let k = CONTRACTS
            .replace("K2,d,p,pay_per_use,,7.00,,,EUR,2026-01-01,", "K2,d,p,pay_per_use,,7.00,,,EUR,2026-10-11,")
            .replace(
                "K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,",
                "K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,2026-10-21",
            );
        let dir = parse(ENTITIES, ACCOUNTS, &k, DEALS).unwrap();
        let days = uncontracted_days(&dir, month());
        let bits = |from: u32, to: u32| (from..to).fold(0u32, |m, d| m | 1 << d);
        let of = |e: &str| days[dir.entity(e).unwrap()];
        assert_eq!(of("ic"), bits(0, 31), "the vendor's own usage is billed on no edge");
        assert_eq!(of("d"), 0);
        assert_eq!(of("p"), bits(0, 10));
        assert_eq!(of("c"), bits(0, 10) | bits(20, 31));
    }
}
