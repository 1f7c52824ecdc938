//! The partner directory: its four tables loaded, validated and indexed.
//!
//! Owns spec 1.1: entities, storage accounts, contracts and deals, read from
//! CSV or Parquet, checked all at once (every problem is reported with its
//! table, row, column and value, not only the first), and turned into a
//! [`Directory`] with the chain lookups rating needs: parents, children,
//! subtrees and the contract in force on a day. Nothing here looks at usage.

// Hash maps with polars' fast hasher: the directory of a large vendor has
// millions of ids, and SipHash was a tenth of loading it.
use polars::prelude::{PlHashMap as HashMap, PlHashSet as HashSet};
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::NaiveDate;
use polars::prelude::{DataFrame, PolarsError, StringChunked};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::formats::{self, Format};
use crate::model::{Day, day_of};
use crate::money::Currency;
use crate::storage::{ObjectMeta, StorageError, Store};

/// One problem found in the directory, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File the problem is in (`entities.csv`).
    pub table: String,
    /// 1-based data row (row 1 is the first row after the header), if the problem is in a row.
    pub row: Option<usize>,
    /// Column, if the problem is in a value.
    pub column: Option<&'static str>,
    /// The offending value, if any.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        if let Some(r) = self.row {
            write!(f, " row {r}")?;
        }
        if let Some(c) = self.column {
            write!(f, ", column {c}")?;
        }
        if let Some(v) = &self.value {
            write!(f, " = {v:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why the directory could not be loaded.
#[derive(Debug, Error)]
pub enum DirectoryError {
    /// The directory could not be read from storage.
    #[error("cannot read the partner directory")]
    Storage(#[from] StorageError),
    /// A table file is missing.
    #[error("partner directory {location}: no {table}.csv or {table}.parquet")]
    MissingTable {
        /// Directory location.
        location: String,
        /// Table name.
        table: &'static str,
    },
    /// A table file could not be parsed at all.
    #[error("partner directory table {table} cannot be parsed")]
    Unreadable {
        /// File name.
        table: String,
        /// Parser error.
        #[source]
        source: PolarsError,
    },
    /// Validation found problems.
    #[error("partner directory is invalid ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<Problem>),
}

impl DirectoryError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            DirectoryError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

/// What an entity is in the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// The root: the storage vendor.
    Vendor,
    /// A distributor.
    Distributor,
    /// An MSP or VAR.
    ChannelPartner,
    /// A customer.
    Customer,
}

/// Index of an entity in [`Directory::entities`].
pub type EntityIdx = usize;

/// A company in the partner chain.
#[derive(Debug, Clone)]
pub struct Entity {
    /// `entity_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Channel role.
    pub kind: EntityKind,
    /// `msp` or `var` for channel partners.
    pub partner_type: Option<String>,
    /// Who bills this entity (none for the vendor).
    pub parent: Option<EntityIdx>,
}

/// A storage account and its owner.
#[derive(Debug, Clone)]
pub struct StorageAccount {
    /// `storage_account_id`.
    pub id: String,
    /// The account's Company name attribute.
    pub company_name: String,
    /// Entity billed for it.
    pub owner: EntityIdx,
    /// First day it exists.
    pub created_on: Option<Day>,
    /// First day it no longer exists.
    pub deleted_on: Option<Day>,
}

/// The commercial model of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// Billed on used capacity with a monthly minimum.
    PayPerUse {
        /// Minimum TB for a whole month (default 1).
        minimum_tb: Decimal,
    },
    /// Reserved capacity, with overage above it.
    Reserved {
        /// Reserved capacity in TB.
        reserved_tb: Decimal,
        /// Price of a TB-month above the reservation (default `unit_price`).
        overage_price: Decimal,
    },
}

/// A contract between a seller and the buyer it bills.
#[derive(Debug, Clone)]
pub struct Contract {
    /// `contract_id`.
    pub id: String,
    /// The buyer's parent.
    pub seller: EntityIdx,
    /// Who is billed.
    pub buyer: EntityIdx,
    /// Model and its parameters.
    pub model: Model,
    /// Price of 1 TB for a whole month.
    pub unit_price: Decimal,
    /// Currency of every amount.
    pub currency: Currency,
    /// First day in force.
    pub start: Day,
    /// First day no longer in force.
    pub end: Option<Day>,
}

impl Contract {
    /// The days of `[from, to)` on which the contract is in force, as an interval.
    pub fn days_within(&self, from: Day, to: Day) -> Option<(Day, Day)> {
        let a = self.start.max(from);
        let b = self.end.map_or(to, |e| e.min(to));
        (a < b).then_some((a, b))
    }
}

/// Status of a deal registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealStatus {
    /// Registered, not yet approved.
    Registered,
    /// Approved by the vendor: the only status that counts.
    Approved,
    /// Rejected.
    Rejected,
}

/// A deal registration.
#[derive(Debug, Clone)]
pub struct Deal {
    /// `deal_id`.
    pub id: String,
    /// Channel partner that registered it.
    pub partner: EntityIdx,
    /// End customer it is for.
    pub customer: EntityIdx,
    /// Registered volume.
    pub volume_tb: Decimal,
    /// Vendor price per TB-month, if granted.
    pub special_price: Option<Decimal>,
    /// Registration status.
    pub status: DealStatus,
    /// First valid day.
    pub valid_from: Day,
    /// First day no longer valid.
    pub valid_to: Option<Day>,
}

impl Deal {
    /// Whether the deal is valid on `day`.
    pub fn valid_on(&self, day: Day) -> bool {
        self.valid_from <= day && self.valid_to.is_none_or(|t| day < t)
    }
}

/// The validated partner directory.
#[derive(Debug, Clone)]
pub struct Directory {
    /// Every entity.
    pub entities: Vec<Entity>,
    /// Every storage account.
    pub accounts: Vec<StorageAccount>,
    /// Every contract.
    pub contracts: Vec<Contract>,
    /// Every deal.
    pub deals: Vec<Deal>,
    /// The vendor (root of the chain).
    pub vendor: EntityIdx,
    /// Children of each entity, in id order.
    pub children: Vec<Vec<EntityIdx>>,
    /// Contracts of each buyer, by start date.
    pub contracts_by_buyer: Vec<Vec<usize>>,
    /// Each entity's place in id order: ids compared as integers.
    pub id_rank: Vec<u32>,
    entity_index: HashMap<String, EntityIdx>,
    /// SHA-256 over the table files.
    pub hash: String,
    /// The table files read.
    pub sources: Vec<ObjectMeta>,
}

impl Directory {
    /// The entity with this id.
    pub fn entity(&self, id: &str) -> Option<EntityIdx> {
        self.entity_index.get(id).copied()
    }

    /// The contract of `buyer` in force on `day`, if any.
    pub fn contract_on(&self, buyer: EntityIdx, day: Day) -> Option<&Contract> {
        self.contracts_by_buyer[buyer]
            .iter()
            .map(|&k| &self.contracts[k])
            .find(|k| k.start <= day && k.end.is_none_or(|e| day < e))
    }

    /// `e` and every entity below it.
    pub fn subtree(&self, e: EntityIdx) -> Vec<EntityIdx> {
        let mut out = vec![e];
        let mut i = 0;
        while i < out.len() {
            out.extend_from_slice(&self.children[out[i]]);
            i += 1;
        }
        out
    }

    /// Entities from `e` up to (not including) the vendor: each is the buyer of one edge.
    pub fn buyers_up_to_vendor(&self, e: EntityIdx) -> Vec<EntityIdx> {
        let mut out = Vec::new();
        let mut cur = e;
        while cur != self.vendor {
            out.push(cur);
            cur = self.entities[cur].parent.expect("validated: every non-vendor has a parent");
        }
        out
    }

    /// For each entity, the days of `[first, end)` (at most 32, bit
    /// `day - first`) on which usage it owns is not billed on every edge up
    /// to the vendor: the days on which it or a buyer above it has no
    /// contract in force, and every day for the vendor's own usage (spec 3.3,
    /// `uncontracted_usage`).
    pub fn uncontracted_days(&self, first: Day, end: Day) -> Vec<u32> {
        debug_assert!((0..=32).contains(&(end - first)), "a month of days");
        // Bits of the days before `day`.
        let before = |day: Day| match (day.clamp(first, end) - first) as u32 {
            32 => u32::MAX,
            n => (1 << n) - 1,
        };
        let month = before(end);
        let mut gaps = vec![0u32; self.entities.len()];
        // Parents before children: each inherits the gaps of the edges above it.
        for e in self.subtree(self.vendor) {
            let Some(parent) = self.entities[e].parent else { continue };
            let covered = self.contracts_by_buyer[e]
                .iter()
                .map(|&k| &self.contracts[k])
                .fold(0, |m, k| m | (k.end.map_or(month, before) & !before(k.start)));
            gaps[e] = gaps[parent] | (month & !covered);
        }
        gaps[self.vendor] = month;
        gaps
    }

    /// Loads and validates the four tables under `store`.
    pub async fn load(store: &Store) -> Result<Directory, DirectoryError> {
        DirectoryFiles::fetch(store).await?.parse()
    }
}

/// The four table files of a directory as read, before they are parsed:
/// enough to fingerprint a run, which can then parse them while it reads
/// usage.
#[derive(Debug)]
pub struct DirectoryFiles {
    tables: [(String, Bytes); 4],
    /// SHA-256 over the table files (key, length and content of each).
    pub hash: String,
    /// The table files read.
    pub sources: Vec<ObjectMeta>,
}

impl DirectoryFiles {
    /// Reads the four tables under `store` (one CSV or Parquet file each).
    pub async fn fetch(store: &Store) -> Result<DirectoryFiles, DirectoryError> {
        let listing = store.list("").await?;
        let mut raw = Vec::new();
        let mut sources = Vec::new();
        let mut hasher = Sha256::new();
        for table in TABLES {
            let found: Vec<_> = listing
                .iter()
                .filter(|o| {
                    o.key.rsplit_once('.').is_some_and(|(stem, ext)| stem == table && matches!(ext, "csv" | "parquet"))
                })
                .collect();
            let meta = match found.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(DirectoryError::MissingTable { location: store.describe(""), table });
                }
                [..] => {
                    return Err(DirectoryError::Invalid(vec![Problem {
                        table: table.to_owned(),
                        row: None,
                        column: None,
                        value: None,
                        message: "both a CSV and a Parquet file exist; keep one".to_owned(),
                    }]));
                }
            };
            let data = store.get(&meta.key).await?;
            hasher.update(meta.key.as_bytes());
            hasher.update((data.len() as u64).to_le_bytes());
            hasher.update(&data);
            raw.push((meta.key.clone(), data));
            sources.push(meta);
        }
        let tables = raw.try_into().expect("one file per table");
        Ok(DirectoryFiles { tables, hash: hex::encode(hasher.finalize()), sources })
    }

    /// Parses and validates the tables.
    pub fn parse(self) -> Result<Directory, DirectoryError> {
        let [entities, accounts, contracts, deals] = self.tables;
        let mut dir = parse_tables(entities, accounts, contracts, deals)?;
        dir.hash = self.hash;
        dir.sources = self.sources;
        Ok(dir)
    }
}

const TABLES: [&str; 4] = ["entities", "storage_accounts", "contracts", "deals"];

/// Parses and validates the four tables (file name and content each).
pub fn parse_tables(
    entities: (String, Bytes),
    accounts: (String, Bytes),
    contracts: (String, Bytes),
    deals: (String, Bytes),
) -> Result<Directory, DirectoryError> {
    let mut p = Problems::default();
    let entities = Table::read(entities)?;
    let accounts = Table::read(accounts)?;
    let contracts = Table::read(contracts)?;
    let deals = Table::read(deals)?;
    for (t, cols) in [
        (&entities, &["entity_id", "name", "kind", "partner_type", "parent_id"][..]),
        (&accounts, &["storage_account_id", "company_name", "owner_id", "created_on", "deleted_on"][..]),
        (
            &contracts,
            &[
                "contract_id",
                "seller_id",
                "buyer_id",
                "model",
                "reserved_tb",
                "unit_price",
                "overage_price",
                "minimum_tb",
                "currency",
                "start_date",
                "end_date",
            ][..],
        ),
        (
            &deals,
            &["deal_id", "partner_id", "customer_id", "volume_tb", "special_price", "status", "valid_from", "valid_to"]
                [..],
        ),
    ] {
        t.check_columns(cols, &mut p);
    }
    if !p.0.is_empty() {
        return Err(DirectoryError::Invalid(p.0));
    }

    let (ents, parent_ids) = read_entities(&entities, &mut p);
    let mut entity_index = HashMap::default();
    for (i, e) in ents.iter().enumerate() {
        entity_index.entry(e.id.clone()).or_insert(i);
    }
    let mut ents = ents;
    resolve_parents(&entities, &mut ents, &parent_ids, &entity_index, &mut p);
    let vendor = find_vendor(&entities, &ents, &mut p);
    if let Some(v) = vendor {
        check_cycles(&entities, &ents, v, &mut p);
    }
    let accts = read_accounts(&accounts, &entity_index, &mut p);
    let ks = read_contracts(&contracts, &ents, &entity_index, &mut p);
    let ds = read_deals(&deals, &ents, &entity_index, &mut p);

    let mut contracts_by_buyer = vec![Vec::new(); ents.len()];
    for (i, k) in ks.iter().enumerate() {
        contracts_by_buyer[k.buyer].push(i);
    }
    for list in &mut contracts_by_buyer {
        list.sort_by_key(|&k| (ks[k].start, ks[k].id.clone()));
        for w in list.windows(2) {
            let (a, b) = (&ks[w[0]], &ks[w[1]]);
            if a.end.is_none_or(|e| e > b.start) {
                p.row(
                    &contracts,
                    contracts.col("contract_id").row_of(&b.id),
                    "start_date",
                    Some(fmt_day(b.start)),
                    format!("contract {} overlaps contract {} of the same buyer", b.id, a.id),
                );
            }
        }
    }
    if !p.0.is_empty() {
        return Err(DirectoryError::Invalid(p.0));
    }
    let vendor = vendor.expect("no problems means one vendor");
    let mut children = vec![Vec::new(); ents.len()];
    let mut id_rank = vec![0; ents.len()];
    let mut by_id: Vec<EntityIdx> = (0..ents.len()).collect();
    by_id.sort_by(|&a, &b| ents[a].id.cmp(&ents[b].id));
    for (rank, e) in by_id.into_iter().enumerate() {
        id_rank[e] = rank as u32;
        if let Some(parent) = ents[e].parent {
            children[parent].push(e);
        }
    }
    Ok(Directory {
        entities: ents,
        accounts: accts,
        contracts: ks,
        deals: ds,
        vendor,
        children,
        contracts_by_buyer,
        id_rank,
        entity_index,
        hash: String::new(),
        sources: Vec::new(),
    })
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn row(&mut self, t: &Table, row: Option<usize>, column: &'static str, value: Option<String>, message: String) {
        self.0.push(Problem { table: t.name.clone(), row: row.map(|r| r + 1), column: Some(column), value, message });
    }
}

/// A table as text columns, with typed accessors that record problems.
struct Table {
    name: String,
    df: DataFrame,
}

impl Table {
    fn read((name, data): (String, Bytes)) -> Result<Table, DirectoryError> {
        let parquet = Format::of_key(&name) == Some(Format::Parquet);
        let df = if parquet { formats::read_parquet_text(data.clone()) } else { formats::read_csv_text(data.clone()) };
        let df = df.map_err(|source| match formats::ragged_csv_row(&data).filter(|_| !parquet) {
            Some((row, fields, expected)) => DirectoryError::Invalid(vec![Problem {
                table: name.clone(),
                row: Some(row),
                column: None,
                value: None,
                message: format!("{fields} fields, the header has {expected}"),
            }]),
            None => DirectoryError::Unreadable { table: name.clone(), source },
        })?;
        // Rows are read one by one: one chunk per column makes that O(1).
        let mut df = df;
        df.rechunk_mut_par();
        Ok(Table { name, df })
    }

    fn check_columns(&self, cols: &[&'static str], p: &mut Problems) {
        for c in cols {
            if self.df.column(c).is_err() {
                p.0.push(Problem {
                    table: self.name.clone(),
                    row: None,
                    column: Some(c),
                    value: None,
                    message: "missing column".to_owned(),
                });
            }
        }
    }

    fn height(&self) -> usize {
        self.df.height()
    }

    /// A column checked by [`Table::check_columns`], to be read by row.
    fn col(&self, name: &'static str) -> Col<'_> {
        let values = self.df.column(name).expect("columns checked").str().expect("text columns");
        Col { table: self, name, values }
    }

    /// Several columns at once, in the order named.
    fn cols<const N: usize>(&self, names: [&'static str; N]) -> [Col<'_>; N] {
        names.map(|n| self.col(n))
    }
}

/// One text column of a [`Table`], read by row, with typed accessors that
/// record a problem under the table, row and column.
///
/// The column is looked up once, and it is one chunk (the table is
/// rechunked when read), so a cell costs an index, not a name lookup.
#[derive(Clone, Copy)]
struct Col<'a> {
    table: &'a Table,
    name: &'static str,
    values: &'a StringChunked,
}

impl<'a> Col<'a> {
    /// The trimmed value, `None` when null or empty.
    fn get(self, row: usize) -> Option<&'a str> {
        self.values.get(row).map(str::trim).filter(|s| !s.is_empty())
    }

    /// The first row holding `value`.
    fn row_of(self, value: &str) -> Option<usize> {
        (0..self.values.len()).find(|&r| self.get(r) == Some(value))
    }

    fn required(self, row: usize, p: &mut Problems) -> Option<&'a str> {
        let v = self.get(row);
        if v.is_none() {
            p.row(self.table, Some(row), self.name, None, "required value is empty".to_owned());
        }
        v
    }

    fn parsed<T>(
        self,
        row: usize,
        required: bool,
        p: &mut Problems,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.get(row) {
            None if required => {
                p.row(self.table, Some(row), self.name, None, "required value is empty".to_owned());
                None
            }
            None => None,
            Some(s) => match parse(s) {
                Ok(v) => Some(v),
                Err(msg) => {
                    p.row(self.table, Some(row), self.name, Some(s.to_owned()), msg);
                    None
                }
            },
        }
    }

    fn date(self, row: usize, required: bool, p: &mut Problems) -> Option<Day> {
        self.parsed(row, required, p, |s| {
            crate::model::iso_date(s)
                .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .map(day_of)
                .ok_or_else(|| "not a date (YYYY-MM-DD)".to_owned())
        })
    }

    fn decimal(self, row: usize, required: bool, p: &mut Problems) -> Option<Decimal> {
        self.parsed(row, required, p, parse_decimal)
    }

    fn entity_ref(self, row: usize, index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Option<EntityIdx> {
        let id = self.required(row, p)?;
        let found = index.get(id).copied();
        if found.is_none() {
            p.row(self.table, Some(row), self.name, Some(id.to_owned()), "unknown entity".to_owned());
        }
        found
    }

    fn unique_id(self, row: usize, seen: &mut HashSet<&'a str>, p: &mut Problems) -> Option<&'a str> {
        let id = self.required(row, p)?;
        if !seen.insert(id) {
            p.row(self.table, Some(row), self.name, Some(id.to_owned()), "duplicate id".to_owned());
        }
        Some(id)
    }
}

/// A non-negative plain decimal (`12`, `6.50`); no exponent, no sign games.
fn parse_decimal(s: &str) -> Result<Decimal, String> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') && s.matches('.').count() <= 1;
    if s.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    if !ok {
        return Err("not a decimal number".to_owned());
    }
    Decimal::from_str(s).map_err(|e| format!("not a decimal number ({e})"))
}

fn fmt_day(d: Day) -> String {
    crate::model::date_of(d).to_string()
}

fn read_entities(t: &Table, p: &mut Problems) -> (Vec<Entity>, Vec<Option<String>>) {
    let [id_col, name_col, kind_col, partner_type_col, parent_col] =
        t.cols(["entity_id", "name", "kind", "partner_type", "parent_id"]);
    let mut seen = HashSet::default();
    let mut out = Vec::with_capacity(t.height());
    let mut parents = Vec::with_capacity(t.height());
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let name = name_col.required(r, p);
        let kind = kind_col.parsed(r, true, p, |s| match s {
            "vendor" => Ok(EntityKind::Vendor),
            "distributor" => Ok(EntityKind::Distributor),
            "channel_partner" => Ok(EntityKind::ChannelPartner),
            "customer" => Ok(EntityKind::Customer),
            _ => Err("kind must be vendor, distributor, channel_partner or customer".to_owned()),
        });
        let partner_type = partner_type_col.parsed(r, false, p, |s| match s {
            "msp" | "var" => Ok(s.to_owned()),
            _ => Err("partner_type must be msp, var or empty".to_owned()),
        });
        if partner_type.is_some() && kind.is_some_and(|k| k != EntityKind::ChannelPartner) {
            p.row(
                t,
                Some(r),
                "partner_type",
                partner_type.clone(),
                "only channel partners have a partner_type".to_owned(),
            );
        }
        if let Some(id) = id {
            // An entity with a bad kind or name is kept (the problem is
            // reported) so that references to it do not cascade into more.
            let kind = kind.unwrap_or(EntityKind::Customer);
            let name = name.unwrap_or_default().to_owned();
            out.push(Entity { id: id.to_owned(), name, kind, partner_type, parent: None });
            parents.push(parent_col.get(r).map(str::to_owned));
        } else {
            // Keep row numbers aligned with entity positions for later checks.
            out.push(Entity {
                id: String::new(),
                name: String::new(),
                kind: EntityKind::Customer,
                partner_type: None,
                parent: None,
            });
            parents.push(None);
        }
    }
    (out, parents)
}

fn resolve_parents(
    t: &Table,
    ents: &mut [Entity],
    parent_ids: &[Option<String>],
    index: &HashMap<String, EntityIdx>,
    p: &mut Problems,
) {
    for (r, parent) in parent_ids.iter().enumerate() {
        if ents[r].id.is_empty() {
            continue;
        }
        match (ents[r].kind, parent) {
            (EntityKind::Vendor, Some(pid)) => {
                p.row(t, Some(r), "parent_id", Some(pid.clone()), "the vendor has no parent".to_owned())
            }
            (EntityKind::Vendor, None) => {}
            (_, None) => p.row(t, Some(r), "parent_id", None, "only the vendor may have no parent".to_owned()),
            (_, Some(pid)) => match index.get(pid) {
                Some(&i) => ents[r].parent = Some(i),
                None => p.row(t, Some(r), "parent_id", Some(pid.clone()), "unknown parent".to_owned()),
            },
        }
    }
}

fn find_vendor(t: &Table, ents: &[Entity], p: &mut Problems) -> Option<EntityIdx> {
    let vendors: Vec<_> =
        (0..ents.len()).filter(|&i| !ents[i].id.is_empty() && ents[i].kind == EntityKind::Vendor).collect();
    match vendors.as_slice() {
        [v] => Some(*v),
        [] => {
            p.0.push(Problem {
                table: t.name.clone(),
                row: None,
                column: Some("kind"),
                value: None,
                message: "no entity of kind vendor: exactly one is required".to_owned(),
            });
            None
        }
        [_, rest @ ..] => {
            for &r in rest {
                p.row(t, Some(r), "kind", Some("vendor".to_owned()), "more than one vendor".to_owned());
            }
            None
        }
    }
}

fn check_cycles(t: &Table, ents: &[Entity], vendor: EntityIdx, p: &mut Problems) {
    // Walk up from every entity; memoise those known to reach the vendor.
    // An entity whose walk comes back to itself is on a cycle and is reported.
    // `walked[e]` is one more than the start of the last walk that passed e.
    let mut reaches = vec![false; ents.len()];
    reaches[vendor] = true;
    let mut walked = vec![0; ents.len()];
    let mut path = Vec::new();
    for start in 0..ents.len() {
        if ents[start].id.is_empty() {
            continue;
        }
        path.clear();
        let mut cur = start;
        loop {
            if reaches[cur] {
                path.iter().for_each(|&c| reaches[c] = true);
                break;
            }
            if std::mem::replace(&mut walked[cur], start + 1) == start + 1 {
                if cur == start {
                    p.row(
                        t,
                        Some(start),
                        "parent_id",
                        ents[start].parent.map(|x| ents[x].id.clone()),
                        "parent chain forms a cycle and never reaches the vendor".to_owned(),
                    );
                }
                break;
            }
            path.push(cur);
            match ents[cur].parent {
                Some(next) => cur = next,
                None => break, // missing parent: reported already
            }
        }
    }
}

fn read_accounts(t: &Table, index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Vec<StorageAccount> {
    let [id_col, company_col, owner_col, created_col, deleted_col] =
        t.cols(["storage_account_id", "company_name", "owner_id", "created_on", "deleted_on"]);
    let mut seen = HashSet::with_capacity_and_hasher(t.height(), Default::default());
    let mut out = Vec::with_capacity(t.height());
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let company_name = company_col.get(r).unwrap_or_default();
        let owner = owner_col.entity_ref(r, index, p);
        let created_on = created_col.date(r, false, p);
        let deleted_on = deleted_col.date(r, false, p);
        if let (Some(c), Some(d)) = (created_on, deleted_on)
            && d <= c
        {
            p.row(t, Some(r), "deleted_on", Some(fmt_day(d)), "deleted_on must be after created_on".to_owned());
        }
        if let (Some(id), Some(owner)) = (id, owner) {
            out.push(StorageAccount {
                id: id.to_owned(),
                company_name: company_name.to_owned(),
                owner,
                created_on,
                deleted_on,
            });
        }
    }
    out
}

fn read_contracts(t: &Table, ents: &[Entity], index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Vec<Contract> {
    let [id_col, seller_col, buyer_col, model_col] = t.cols(["contract_id", "seller_id", "buyer_id", "model"]);
    let [reserved_col, unit_price_col, overage_col, minimum_col] =
        t.cols(["reserved_tb", "unit_price", "overage_price", "minimum_tb"]);
    let [currency_col, start_col, end_col] = t.cols(["currency", "start_date", "end_date"]);
    let mut seen = HashSet::with_capacity_and_hasher(t.height(), Default::default());
    let mut out = Vec::with_capacity(t.height());
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let seller = seller_col.entity_ref(r, index, p);
        let buyer = buyer_col.entity_ref(r, index, p);
        if let (Some(s), Some(b)) = (seller, buyer)
            && ents[b].parent != Some(s)
        {
            p.row(
                t,
                Some(r),
                "seller_id",
                Some(ents[s].id.clone()),
                format!("seller is not the parent of buyer {}", ents[b].id),
            );
        }
        let reserved = model_col.parsed(r, true, p, |s| match s {
            "reserved" => Ok(true),
            "pay_per_use" => Ok(false),
            _ => Err("model must be pay_per_use or reserved".to_owned()),
        });
        let reserved_tb = reserved_col.decimal(r, reserved == Some(true), p);
        let unit_price = unit_price_col.decimal(r, true, p);
        let overage_price = overage_col.decimal(r, false, p);
        let minimum_tb = minimum_col.decimal(r, false, p);
        if reserved == Some(false) {
            for (col, v) in [("reserved_tb", &reserved_tb), ("overage_price", &overage_price)] {
                if let Some(v) = v {
                    p.row(t, Some(r), col, Some(v.to_string()), "applies to reserved contracts only".to_owned());
                }
            }
        }
        if reserved == Some(true)
            && let Some(v) = minimum_tb
        {
            p.row(t, Some(r), "minimum_tb", Some(v.to_string()), "applies to pay_per_use contracts only".to_owned());
        }
        let currency = currency_col.parsed(r, true, p, |s| {
            Currency::parse(s).ok_or_else(|| "not an ISO 4217 currency code (three upper-case letters)".to_owned())
        });
        let start = start_col.date(r, true, p);
        let end = end_col.date(r, false, p);
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            p.row(t, Some(r), "end_date", Some(fmt_day(e)), "end_date must be after start_date".to_owned());
        }
        let (Some(id), Some(seller), Some(buyer), Some(reserved), Some(unit_price), Some(currency), Some(start)) =
            (id, seller, buyer, reserved, unit_price, currency, start)
        else {
            continue;
        };
        let model = if reserved {
            let Some(reserved_tb) = reserved_tb else {
                continue;
            };
            Model::Reserved { reserved_tb, overage_price: overage_price.unwrap_or(unit_price) }
        } else {
            Model::PayPerUse { minimum_tb: minimum_tb.unwrap_or(Decimal::ONE) }
        };
        out.push(Contract { id: id.to_owned(), seller, buyer, model, unit_price, currency, start, end });
    }
    out
}

fn read_deals(t: &Table, ents: &[Entity], index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Vec<Deal> {
    let [id_col, partner_col, customer_col, volume_col] = t.cols(["deal_id", "partner_id", "customer_id", "volume_tb"]);
    let [special_col, status_col, from_col, to_col] = t.cols(["special_price", "status", "valid_from", "valid_to"]);
    let mut seen = HashSet::default();
    let mut out = Vec::new();
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let partner = partner_col.entity_ref(r, index, p);
        if let Some(pi) = partner
            && ents[pi].kind != EntityKind::ChannelPartner
        {
            p.row(
                t,
                Some(r),
                "partner_id",
                Some(ents[pi].id.clone()),
                "deals are registered by channel partners".to_owned(),
            );
        }
        let customer = customer_col.entity_ref(r, index, p);
        let volume_tb = volume_col.decimal(r, true, p);
        let special_price = special_col.decimal(r, false, p);
        let status = status_col.parsed(r, true, p, |s| match s {
            "registered" => Ok(DealStatus::Registered),
            "approved" => Ok(DealStatus::Approved),
            "rejected" => Ok(DealStatus::Rejected),
            _ => Err("status must be registered, approved or rejected".to_owned()),
        });
        let valid_from = from_col.date(r, true, p);
        let valid_to = to_col.date(r, false, p);
        if let (Some(f), Some(to)) = (valid_from, valid_to)
            && to <= f
        {
            p.row(t, Some(r), "valid_to", Some(fmt_day(to)), "valid_to must be after valid_from".to_owned());
        }
        if let (Some(id), Some(partner), Some(customer), Some(volume_tb), Some(status), Some(valid_from)) =
            (id, partner, customer, volume_tb, status, valid_from)
        {
            let id = id.to_owned();
            out.push(Deal { id, partner, customer, volume_tb, special_price, status, valid_from, valid_to });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const ENTITIES: &str = "entity_id,name,kind,partner_type,parent_id\n\
        ic,Vendor,vendor,,\n\
        d,Dist,distributor,,ic\n\
        p,Partner,channel_partner,var,d\n\
        c,Customer,customer,,p\n";
    pub(crate) const ACCOUNTS: &str =
        "storage_account_id,company_name,owner_id,created_on,deleted_on\nsa,Customer,c,,\n";
    pub(crate) const CONTRACTS: &str = "contract_id,seller_id,buyer_id,model,reserved_tb,unit_price,overage_price,minimum_tb,currency,start_date,end_date\n\
        K1,ic,d,reserved,50,6.00,7.50,,EUR,2026-01-01,\n\
        K2,d,p,pay_per_use,,7.00,,,EUR,2026-01-01,\n\
        K3,p,c,pay_per_use,,9.90,,,EUR,2026-01-01,\n";
    pub(crate) const DEALS: &str =
        "deal_id,partner_id,customer_id,volume_tb,special_price,status,valid_from,valid_to\n";

    pub(crate) fn parse(e: &str, a: &str, k: &str, d: &str) -> Result<Directory, DirectoryError> {
        let t = |n: &str, s: &str| (n.to_owned(), Bytes::from(s.to_owned()));
        parse_tables(t("entities.csv", e), t("storage_accounts.csv", a), t("contracts.csv", k), t("deals.csv", d))
    }

    fn problems(e: &str, a: &str, k: &str, d: &str) -> Vec<String> {
        match parse(e, a, k, d) {
            Err(DirectoryError::Invalid(ps)) => ps.iter().map(ToString::to_string).collect(),
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    #[test]
    fn valid_directory_builds_the_chain() {
        let d = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let c = d.entity("c").unwrap();
        let names: Vec<_> = d.buyers_up_to_vendor(c).iter().map(|&e| d.entities[e].id.as_str()).collect();
        assert_eq!(names, ["c", "p", "d"]);
        assert_eq!(d.subtree(d.entity("d").unwrap()).len(), 3);
        assert_eq!(d.contract_on(c, day_of(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap())).unwrap().id, "K3");
    }

    #[test]
    fn unknown_parent_and_owner_are_named() {
        let e = ENTITIES.replace("c,Customer,customer,,p", "c,Customer,customer,,nobody");
        let a = ACCOUNTS.replace(",c,", ",ghost,");
        let ps = problems(&e, &a, CONTRACTS, DEALS);
        assert!(ps.contains(&"entities.csv row 4, column parent_id = \"nobody\": unknown parent".to_owned()), "{ps:?}");
        assert!(
            ps.contains(&"storage_accounts.csv row 1, column owner_id = \"ghost\": unknown entity".to_owned()),
            "{ps:?}"
        );
    }

    #[test]
    fn cycles_are_reported() {
        let e = format!("{ENTITIES}x,X,channel_partner,msp,y\ny,Y,channel_partner,msp,x\n");
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(ps.iter().filter(|p| p.contains("cycle")).count(), 2, "{ps:?}");
        assert!(ps[0].starts_with("entities.csv row 5, column parent_id = \"y\""), "{ps:?}");
    }

    #[test]
    fn more_than_one_vendor() {
        let e = format!("{ENTITIES}ic2,Other,vendor,,\n");
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(ps, ["entities.csv row 5, column kind = \"vendor\": more than one vendor"]);
    }

    #[test]
    fn seller_must_be_parent_of_buyer() {
        let k = CONTRACTS.replace("K3,p,c", "K3,d,c");
        let ps = problems(ENTITIES, ACCOUNTS, &k, DEALS);
        assert_eq!(ps, ["contracts.csv row 3, column seller_id = \"d\": seller is not the parent of buyer c"]);
    }

    #[test]
    fn overlapping_contracts_of_one_buyer() {
        let k = format!("{CONTRACTS}K4,p,c,pay_per_use,,8.00,,,EUR,2026-06-01,2026-07-01\n");
        let ps = problems(ENTITIES, ACCOUNTS, &k, DEALS);
        assert_eq!(
            ps,
            [
                "contracts.csv row 4, column start_date = \"2026-06-01\": contract K4 overlaps contract K3 of the same buyer"
            ]
        );
    }

    #[test]
    fn reserved_needs_reserved_tb() {
        let k = CONTRACTS.replace("reserved,50,", "reserved,,");
        let ps = problems(ENTITIES, ACCOUNTS, &k, DEALS);
        assert_eq!(ps, ["contracts.csv row 1, column reserved_tb: required value is empty"]);
    }

    #[test]
    fn bad_enum_date_and_decimal_all_at_once() {
        let k = CONTRACTS
            .replace("K2,d,p,pay_per_use", "K2,d,p,pay_as_you_go")
            .replace("9.90,,,EUR,2026-01-01", "9.90,90,,EUR,2026-13-01");
        let e = ENTITIES.replace("var", "reseller");
        let ps = problems(&e, ACCOUNTS, &k, DEALS);
        assert!(
            ps.contains(
                &"entities.csv row 3, column partner_type = \"reseller\": partner_type must be msp, var or empty"
                    .to_owned()
            ),
            "{ps:?}"
        );
        assert!(
            ps.contains(
                &"contracts.csv row 2, column model = \"pay_as_you_go\": model must be pay_per_use or reserved"
                    .to_owned()
            ),
            "{ps:?}"
        );
        assert!(
            ps.contains(&"contracts.csv row 3, column start_date = \"2026-13-01\": not a date (YYYY-MM-DD)".to_owned()),
            "{ps:?}"
        );
        assert!(
            ps.contains(
                &"contracts.csv row 3, column overage_price = \"90\": applies to reserved contracts only".to_owned()
            ),
            "{ps:?}"
        );
        let k2 = CONTRACTS.replace("6.00,7.50", "6,00,7.50");
        let ps2 = problems(ENTITIES, ACCOUNTS, &k2, DEALS);
        assert_eq!(ps2, ["contracts.csv row 1: 12 fields, the header has 11"]);
        let k3 = CONTRACTS.replace("6.00,7.50", "six,7.50");
        let ps3 = problems(ENTITIES, ACCOUNTS, &k3, DEALS);
        assert_eq!(ps3, ["contracts.csv row 1, column unit_price = \"six\": not a decimal number"]);
    }

    #[test]
    fn missing_columns_and_duplicates() {
        let e = ENTITIES.replace("parent_id", "parent");
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(ps, ["entities.csv, column parent_id: missing column"]);
        let a = format!("{ACCOUNTS}sa,Again,c,,\n");
        let ps = problems(ENTITIES, &a, CONTRACTS, DEALS);
        assert_eq!(ps, ["storage_accounts.csv row 2, column storage_account_id = \"sa\": duplicate id"]);
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
        let month: crate::model::BillingMonth = "2026-10".parse().unwrap();
        let days = dir.uncontracted_days(month.first_day(), month.end_day());
        let bits = |from: u32, to: u32| (from..to).fold(0u32, |m, d| m | 1 << d);
        let of = |e: &str| days[dir.entity(e).unwrap()];
        assert_eq!(of("ic"), bits(0, 31), "the vendor's own usage is billed on no edge");
        assert_eq!(of("d"), 0);
        assert_eq!(of("p"), bits(0, 10));
        assert_eq!(of("c"), bits(0, 10) | bits(20, 31));
    }
}
