//! Shared vocabulary of the pipeline: billing months and days, units,
//! invoice lines, findings and the column names every stage agrees on.
//!
//! Stages exchange these types (and polars frames whose columns are named by
//! [`col`]); nothing here does I/O or billing arithmetic.

use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

/// A UTC calendar day, counted in days since 1970-01-01 (the polars `Date` encoding).
pub type Day = i32;

/// Converts a calendar date to its [`Day`] number.
pub fn day_of(date: NaiveDate) -> Day {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as Day
}

/// A plain `YYYY-MM-DD` date, parsed without chrono's format machinery
/// (directories have a few dates per row, usage exports one per record);
/// `None` for anything else, which callers then give to `%Y-%m-%d`.
pub fn iso_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// Converts a [`Day`] number back to a calendar date.
pub fn date_of(day: Day) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(i64::from(day))
}

/// A billing month such as `2026-10`: the UTC calendar days it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BillingMonth {
    year: i32,
    month: u32,
}

impl BillingMonth {
    /// The month `year-month`, if it exists.
    pub fn new(year: i32, month: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| BillingMonth { year, month })
    }

    /// The month a date falls in.
    pub fn containing(date: NaiveDate) -> Self {
        BillingMonth { year: date.year(), month: date.month() }
    }

    /// The calendar year.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The month of the year, 1 to 12.
    pub fn month(&self) -> u32 {
        self.month
    }

    /// The first calendar day of the month.
    pub fn first_date(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("validated month")
    }

    /// The first day of the month as a [`Day`].
    pub fn first_day(&self) -> Day {
        day_of(self.first_date())
    }

    /// The first day after the month (exclusive end).
    pub fn end_day(&self) -> Day {
        self.next().first_day()
    }

    /// D: the number of calendar days.
    pub fn days(&self) -> u32 {
        (self.end_day() - self.first_day()) as u32
    }

    /// The following month.
    pub fn next(&self) -> Self {
        if self.month == 12 {
            BillingMonth { year: self.year + 1, month: 1 }
        } else {
            BillingMonth { year: self.year, month: self.month + 1 }
        }
    }

    /// The preceding month.
    pub fn previous(&self) -> Self {
        if self.month == 1 {
            BillingMonth { year: self.year - 1, month: 12 }
        } else {
            BillingMonth { year: self.year, month: self.month - 1 }
        }
    }
}

impl fmt::Display for BillingMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A text that is not a billing month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid billing month {text:?}: expected YYYY-MM")]
pub struct MonthParseError {
    /// The text given.
    pub text: String,
}

impl FromStr for BillingMonth {
    type Err = MonthParseError;

    fn from_str(s: &str) -> Result<Self, MonthParseError> {
        let bad = || MonthParseError { text: s.to_owned() };
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4) || !digits(m, 2) {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        BillingMonth::new(year, month).ok_or_else(bad)
    }
}

/// The capacity unit quantities are expressed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// 10^12 bytes.
    #[default]
    #[serde(alias = "TB")]
    Tb,
    /// 2^40 bytes.
    #[serde(alias = "TiB")]
    Tib,
}

impl Unit {
    /// Bytes in one unit.
    pub fn bytes(self) -> u64 {
        match self {
            Unit::Tb => 1_000_000_000_000,
            Unit::Tib => 1 << 40,
        }
    }

    /// The `unit` column value of invoice lines.
    pub fn line_unit(self) -> &'static str {
        match self {
            Unit::Tb => "TB-month",
            Unit::Tib => "TiB-month",
        }
    }

    /// The unit of a capacity (`reserved_tb`): `TB` or `TiB`.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Tb => "TB",
            Unit::Tib => "TiB",
        }
    }
}

/// How a day's snapshots become the daily value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DailyMethod {
    /// Mean of the day's snapshots, rounded half away from zero to whole bytes.
    #[default]
    Mean,
    /// Largest snapshot of the day.
    Max,
}

/// The kind of an invoice line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Charge {
    /// Pay-per-use top-up to the minimum.
    Minimum,
    /// Reserved-capacity usage above the allowance.
    Overage,
    /// Reserved capacity, prorated by days.
    Reserved,
    /// Pay-per-use used capacity.
    Usage,
}

impl Charge {
    /// The `charge` column value. Variants are declared in this order so that
    /// sorting by the enum sorts by the column text.
    pub fn as_str(self) -> &'static str {
        match self {
            Charge::Minimum => "minimum",
            Charge::Overage => "overage",
            Charge::Reserved => "reserved",
            Charge::Usage => "usage",
        }
    }
}

/// One invoice line on one edge of the partner chain. Its names and ids are
/// borrowed from the directory it was rated on: a large month has millions
/// of them, and none is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine<'d> {
    /// Who invoices.
    pub seller_id: &'d str,
    /// Seller's display name.
    pub seller_name: &'d str,
    /// Who is invoiced.
    pub buyer_id: &'d str,
    /// Buyer's display name.
    pub buyer_name: &'d str,
    /// End customer for usage/minimum, the buyer for reserved/overage.
    pub customer_id: &'d str,
    /// Customer's display name.
    pub customer_name: &'d str,
    /// Contract the line is billed under.
    pub contract_id: &'d str,
    /// Kind of charge.
    pub charge: Charge,
    /// TB-months (or TiB-months), 6 decimals.
    pub quantity: Decimal,
    /// Price per unit-month.
    pub unit_price: Decimal,
    /// `quantity × unit_price`, rounded to cents.
    pub amount: Decimal,
    /// Contract currency.
    pub currency: Currency,
    /// |A| or |C|: days the line covers.
    pub days: u32,
    /// Deal whose special price applies, if any.
    pub deal_id: Option<&'d str>,
}

impl InvoiceLine<'_> {
    /// The output order: seller, buyer, customer, contract, charge.
    pub fn sort_key(&self) -> (&str, &str, &str, &str, Charge) {
        (self.seller_id, self.buyer_id, self.customer_id, self.contract_id, self.charge)
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Two records of one (account, bucket, timestamp) with different bytes.
    ConflictingSamples,
    /// An end customer above 100 TB with no approved deal.
    DealRegistrationMissing,
    /// An invoice whose parties lack the data its tax category needs: no e-invoice (spec 5.1).
    EinvoiceDataMissing,
    /// Children allocated more reserved capacity than their parent holds.
    AllocationExceedsReserved,
    /// Days of an account's window without data, filled from neighbours.
    GapFilled,
    /// An account whose window holds days but which has no snapshot in the month.
    NoUsageData,
    /// A usage record that could not be read and was skipped (`--skip-bad-records`).
    SkippedRecord,
    /// An object under the usage location whose format is not recognised.
    SkippedObject,
    /// Records of other months in an object that the runs of those months
    /// do not read (its folder names another month): billed in no month.
    UnreadRecords,
    /// The month's total in a currency fell sharply against the previous month.
    TotalDropped,
    /// Byte-days on days some edge of the owner's chain has no contract.
    UncontractedUsage,
    /// Usage of an account the directory does not know.
    UnknownStorageAccount,
}

impl FindingKind {
    /// The `kind` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ConflictingSamples => "conflicting_samples",
            FindingKind::DealRegistrationMissing => "deal_registration_missing",
            FindingKind::EinvoiceDataMissing => "einvoice_data_missing",
            FindingKind::AllocationExceedsReserved => "allocation_exceeds_reserved",
            FindingKind::GapFilled => "gap_filled",
            FindingKind::NoUsageData => "no_usage_data",
            FindingKind::SkippedRecord => "skipped_record",
            FindingKind::SkippedObject => "skipped_object",
            FindingKind::UnreadRecords => "unread_records",
            FindingKind::TotalDropped => "total_dropped",
            FindingKind::UncontractedUsage => "uncontracted_usage",
            FindingKind::UnknownStorageAccount => "unknown_storage_account",
        }
    }
}

/// Something reported about a run: never silently dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is about.
    pub kind: FindingKind,
    /// The customer, entity, storage account or object it names.
    pub subject_id: String,
    /// A sentence for people.
    pub detail: String,
    /// Byte-days involved, where the finding involves usage.
    pub byte_days: Option<i128>,
    /// TB-months involved (round6), where the finding involves usage.
    pub tb_months: Option<Decimal>,
}

impl Finding {
    /// A finding without usage figures.
    pub fn new(kind: FindingKind, subject_id: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding { kind, subject_id: subject_id.into(), detail: detail.into(), byte_days: None, tb_months: None }
    }

    /// Adds usage figures.
    pub fn with_usage(mut self, byte_days: Option<i128>, tb_months: Option<Decimal>) -> Self {
        self.byte_days = byte_days;
        self.tb_months = tb_months;
        self
    }

    /// The output order: kind, subject, detail.
    pub fn sort_key(&self) -> (&str, &str, &str) {
        (self.kind.as_str(), &self.subject_id, &self.detail)
    }
}

/// Column names of the frames that flow between stages.
pub mod col {
    /// Storage account id.
    pub const ACCOUNT: &str = "storage_account_id";
    /// Storage account as its [`super::Interner`] id (`UInt32`): how records
    /// and metering frames name accounts.
    pub const ACCOUNT_ID: &str = "account_idx";
    /// Bucket name as its [`super::Interner`] id (`UInt32`; the name "" when
    /// the source does not report buckets).
    pub const BUCKET: &str = "bucket_idx";
    /// Observation instant, microseconds since the epoch, UTC.
    pub const TS: &str = "ts_us";
    /// UTC day of the observation ([`super::Day`]).
    pub const DAY: &str = "day";
    /// Bytes stored.
    pub const BYTES: &str = "bytes";
    /// Position of the source object in key order (last wins).
    pub const OBJECT: &str = "object_seq";
    /// Position of the record inside its object.
    pub const ROW: &str = "row_seq";
    /// Daily value of an account (whole bytes).
    pub const VALUE: &str = "value";
    /// Whether the day had a snapshot.
    pub const OBSERVED: &str = "observed";
    /// Whether the day was filled from a neighbour.
    pub const FILLED: &str = "filled";
    /// Owning entity.
    pub const OWNER: &str = "owner_id";
    /// Owning entity as its index in the directory (`UInt32`).
    pub const OWNER_IDX: &str = "owner_idx";
}

/// Dense `u32` ids for names (storage account ids, bucket names), in the
/// order they were first seen.
///
/// Records carry ids instead of strings from ingestion on: metering then
/// indexes arrays and joins on integers, and a string is hashed once per
/// distinct value in a Parquet dictionary (or once per text record) instead
/// of once per group-by.
///
/// Names are kept one after the other in one string, and the hash table
/// holds only ids: interning a new name appends it, with no allocation of
/// its own (a large month interns millions).
#[derive(Debug, Default, Clone)]
pub struct Interner {
    /// Ids, found by the hash of their name.
    table: hashbrown::HashTable<u32>,
    hasher: polars::prelude::PlRandomState,
    /// Every name, in id order, one after the other.
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<usize>,
}

impl Interner {
    /// An interner whose first ids are `names`, in order (repeats keep their first id).
    pub fn seeded<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut i = Interner::default();
        for n in names {
            i.id(n);
        }
        i
    }

    /// An interner without names that hashes names as this one does, so
    /// that a name hashed once ([`Self::hash`]) can be looked up in both.
    pub fn empty_like(&self) -> Self {
        Interner { hasher: self.hasher.clone(), ..Interner::default() }
    }

    /// The hash of `name`, for [`Self::get_hashed`] and [`Self::id_hashed`]
    /// (of this interner, or of one made by [`Self::empty_like`]).
    pub fn hash(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The id of `name`, assigning the next one if it is new.
    pub fn id(&mut self, name: &str) -> u32 {
        self.id_hashed(self.hash(name), name)
    }

    /// [`Self::id`] of a name whose [`Self::hash`] is `hash`.
    pub fn id_hashed(&mut self, hash: u64, name: &str) -> u32 {
        if let Some(id) = self.get_hashed(hash, name) {
            return id;
        }
        let id = u32::try_from(self.ends.len()).expect("fewer than 2^32 distinct names");
        self.text.push_str(name);
        self.ends.push(self.text.len());
        let Interner { table, hasher, text, ends } = self;
        table.insert_unique(hash, id, |&id| hasher.hash_one(name_in(text, ends, id)));
        id
    }

    /// The id of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.get_hashed(self.hash(name), name)
    }

    /// [`Self::get`] of a name whose [`Self::hash`] is `hash`.
    pub fn get_hashed(&self, hash: u64, name: &str) -> Option<u32> {
        self.table.find(hash, |&id| self.name(id) == name).copied()
    }

    /// The name of `id`.
    pub fn name(&self, id: u32) -> &str {
        name_in(&self.text, &self.ends, id)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no name has an id.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every name, in id order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        (0..self.ends.len() as u32).map(|id| self.name(id))
    }
}

/// Name `id` of an [`Interner`]'s `text`, which ends at `ends[id]`.
fn name_in<'a>(text: &'a str, ends: &[usize], id: u32) -> &'a str {
    let id = id as usize;
    let start = if id == 0 { 0 } else { ends[id - 1] };
    &text[start..ends[id]]
}

/// What the directory knows about an entity as an invoice party (spec 5.1;
/// read and checked by `directory::party`). A manifest records it as each
/// e-invoice showed it ([`crate::manifest::DocumentParty`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Party {
    /// Registered name (`name` when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_name: Option<String>,
    /// Street and number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 code, upper case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// VAT identifier, starting with the country's VAT prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
    /// Electronic address (scheme `EM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_keep_their_first_id() {
        let mut i = Interner::seeded(["sa-2", "sa-1", "sa-2"]);
        assert_eq!((i.len(), i.get("sa-2"), i.get("sa-1"), i.get("sa-3")), (2, Some(0), Some(1), None));
        assert_eq!(i.id("sa-3"), 2);
        assert_eq!(i.id("sa-1"), 1);
        assert_eq!((i.name(2), i.names().collect::<Vec<_>>()), ("sa-3", vec!["sa-2", "sa-1", "sa-3"]));
    }

    #[test]
    fn names_keep_their_ids_as_the_table_grows() {
        let names: Vec<String> = (0..20_000).map(|n| format!("sa-{:x}", n * 7919)).collect();
        let mut i = Interner::default();
        let ids: Vec<u32> = names.iter().map(|n| i.id(n)).collect();
        assert_eq!(ids, (0..20_000).collect::<Vec<u32>>());
        assert!(names.iter().zip(&ids).all(|(n, &id)| i.get(n) == Some(id) && i.name(id) == n));
        assert_eq!((i.id(""), i.name(20_000), i.get("sa-nope")), (20_000, "", None));
    }

    #[test]
    fn months_know_their_days() {
        let m: BillingMonth = "2026-10".parse().unwrap();
        assert_eq!(m.days(), 31);
        assert_eq!(m.to_string(), "2026-10");
        assert_eq!("2028-02".parse::<BillingMonth>().unwrap().days(), 29);
        assert_eq!("2026-12".parse::<BillingMonth>().unwrap().next().to_string(), "2027-01");
        assert_eq!("2027-01".parse::<BillingMonth>().unwrap().previous().to_string(), "2026-12");
        assert!("2026-13".parse::<BillingMonth>().is_err());
        assert!("+202-10".parse::<BillingMonth>().is_err());
        assert_eq!(
            "2026-1x".parse::<BillingMonth>().unwrap_err().to_string(),
            "invalid billing month \"2026-1x\": expected YYYY-MM"
        );
        assert!("2026-1".parse::<BillingMonth>().is_err());
        assert_eq!(date_of(m.first_day()), m.first_date());
    }

    #[test]
    fn units_name_their_lines() {
        assert_eq!((Unit::Tb.bytes(), Unit::Tb.line_unit()), (1_000_000_000_000, "TB-month"));
        assert_eq!((Unit::Tib.bytes(), Unit::Tib.line_unit()), (1 << 40, "TiB-month"));
    }

    #[test]
    fn charges_sort_like_their_names() {
        let mut v = [Charge::Usage, Charge::Reserved, Charge::Overage, Charge::Minimum];
        v.sort();
        let names: Vec<_> = v.iter().map(|c| c.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
