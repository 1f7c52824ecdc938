//! The partner directory: its four tables loaded, validated and indexed.
//!
//! Owns spec 1.1: entities, storage accounts, contracts and deals, read from
//! CSV or Parquet, checked all at once (every problem is reported with its
//! table, row, column and value, not only the first), and turned into a
//! [`Directory`] with the chain lookups rating needs: parents, children,
//! subtrees and the contract in force on a day. Nothing here looks at usage.
//!
//! This file holds the domain types and their lookups; the work of getting
//! there is split by job:
//! - `fetch`: the four table files read from a [`Store`] and hashed
//!   ([`DirectoryFiles`]);
//! - `table`: the table/column validation framework (typed accessors that
//!   record every [`Problem`] with its place);
//! - `checks`: each table's rows read into domain types and the cross-table
//!   checks ([`parse_tables`]);
//! - `party`: the optional party columns of `entities` (spec 5.1), the
//!   ISO 3166-1 country codes, EU member states and VAT prefixes.

mod checks;
mod fetch;
mod mapping;
mod party;
mod table;

pub use checks::parse_tables;
pub use fetch::DirectoryFiles;
pub use mapping::Mappings;
pub use party::{PARTY_COLUMNS, Party};
pub use table::Problem;

// Hash maps with polars' fast hasher: the directory of a large vendor has
// millions of ids, and SipHash was a tenth of loading it.
use polars::prelude::PlHashMap as HashMap;

use polars::prelude::PolarsError;
use rust_decimal::Decimal;
use thiserror::Error;

use crate::model::Day;
use crate::money::Currency;
use crate::storage::{ObjectMeta, StorageError, Store};

/// Why the directory could not be loaded.
#[derive(Debug, Error)]
pub enum DirectoryError {
    /// The directory could not be read from storage.
    #[error("cannot read the partner directory")]
    Storage(#[from] StorageError),
    /// The directory's location does not exist (a local folder): the setting is wrong.
    #[error("the partner directory {location} does not exist: check --directory (or `directory` under [locations])")]
    MissingLocation {
        /// The folder.
        location: String,
    },
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
    /// Party data for invoice documents (spec 5.1); empty without the columns.
    pub party: Party,
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

    /// Loads and validates the four tables under `store`.
    pub async fn load(store: &Store) -> Result<Directory, DirectoryError> {
        DirectoryFiles::fetch(store).await?.parse()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::NaiveDate;

    use crate::model::day_of;

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

    /// The problems `parse` reports, as their messages; panics if it reports none.
    pub(super) fn problems(e: &str, a: &str, k: &str, d: &str) -> Vec<String> {
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
}
