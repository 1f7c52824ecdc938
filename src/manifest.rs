//! What a published revision is: its place in the output layout (spec
//! 4.1), its `manifest.json`, the month's `latest.json`, and reading them
//! back.
//!
//! A manifest says what a revision was made from (directory and usage
//! objects with size and ETag, the configuration hash, program and rules
//! versions) and what it holds (every output file with rows and SHA-256, the
//! totals per currency), so a later run can tell whether anything changed.
//!
//! This is the vocabulary that `export` (which writes revisions) and
//! `revision` (which decides from their history) share, so that neither
//! needs the other. It decides nothing and writes nothing.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::model::BillingMonth;
use crate::storage::{ObjectMeta, StorageError, Store};

/// Why a published document could not be read back.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// Reading or listing the output location failed.
    #[error("cannot read published revisions")]
    Storage(#[from] StorageError),
    /// A manifest or `latest.json` is not what capbill writes.
    #[error("{location} is not a valid capbill document")]
    Corrupt {
        /// Where.
        location: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

impl ManifestError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            ManifestError::Storage(e) => Some(e),
            ManifestError::Corrupt { .. } => None,
        }
    }
}

/// Something asked for by name that the output location does not hold
/// (`capbill statement`): each names what is missing and what is there.
#[derive(Debug, Error)]
pub enum NotPublished {
    /// No complete revision of the month.
    #[error("billing month {month} has no published revision under {location}")]
    Month {
        /// The month.
        month: BillingMonth,
        /// The output location.
        location: String,
    },
    /// The revision asked for is not one of the month's complete revisions.
    #[error("billing month {month} has no revision {revision}; revisions there: {available}")]
    Revision {
        /// The month.
        month: BillingMonth,
        /// The revision asked for.
        revision: u32,
        /// The complete revisions.
        available: String,
    },
    /// No statement of that seller.
    #[error("no statement of seller {seller} in {month} revision {revision}; sellers there: {available}")]
    Seller {
        /// The seller asked for.
        seller: String,
        /// The month.
        month: BillingMonth,
        /// The revision.
        revision: u32,
        /// The sellers with statements.
        available: String,
    },
    /// No statement of that seller for that buyer.
    #[error(
        "no statement for buyer {buyer} of seller {seller} in {month} revision {revision}; statements there: {available}"
    )]
    Buyer {
        /// The buyer asked for.
        buyer: String,
        /// The seller.
        seller: String,
        /// The month.
        month: BillingMonth,
        /// The revision.
        revision: u32,
        /// The seller's buyers with statements.
        available: String,
    },
}

/// The SHA-256 of a file's content, lower-case hex: what a manifest lists
/// for each output and what readers check against it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Where a month stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonthStatus {
    /// Within the month or its grace period: revisions follow each other freely.
    Provisional,
    /// Grace period over: invoices are issued from it, changes need a reprocess.
    Final,
}

impl MonthStatus {
    /// `provisional` or `final`.
    pub fn as_str(self) -> &'static str {
        match self {
            MonthStatus::Provisional => "provisional",
            MonthStatus::Final => "final",
        }
    }
}

/// One input object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputObject {
    /// Key relative to the input location.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag (S3) or size-and-mtime tag (local).
    pub etag: String,
}

impl From<&ObjectMeta> for InputObject {
    fn from(o: &ObjectMeta) -> Self {
        InputObject { key: o.key.clone(), size: o.size, etag: o.etag.clone() }
    }
}

/// The partner directory a revision was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryInput {
    /// Where it was read.
    pub location: String,
    /// SHA-256 over the four tables.
    pub hash: String,
    /// The table files.
    pub objects: Vec<InputObject>,
}

/// The usage objects a revision was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInput {
    /// Where they were read.
    pub location: String,
    /// Every object read, in key order.
    pub objects: Vec<InputObject>,
    /// Objects not read because their key names another month.
    pub pruned_objects: usize,
    /// Records read that belong to other months.
    pub records_outside_month: u64,
}

/// One output file of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// File name inside the revision folder.
    pub file: String,
    /// Data rows.
    pub rows: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content.
    pub sha256: String,
}

/// Total billed in one currency (sum of every invoice line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of line amounts.
    pub total: Decimal,
}

/// Row counts of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Invoice lines.
    pub invoice_lines: usize,
    /// Invoices.
    pub invoices: usize,
    /// Storage accounts metered.
    pub accounts: usize,
    /// Findings per kind.
    pub findings: BTreeMap<String, usize>,
}

/// `manifest.json` of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `YYYY-MM`.
    pub billing_month: String,
    /// Revision number, from 1.
    pub revision: u32,
    /// `provisional` or `final`.
    pub status: MonthStatus,
    /// When the run started (RFC 3339, UTC).
    pub generated_at: String,
    /// Who or what asked for it (`user@host`).
    pub requested_by: String,
    /// The operator's reason, for a reprocess.
    pub reason: Option<String>,
    /// The latest complete revision before this one.
    pub previous_revision: Option<u32>,
    /// The final revision this one corrects (its `corrections` files), if any.
    pub corrects_revision: Option<u32>,
    /// capbill version.
    pub capbill_version: String,
    /// Version of the billing rules.
    pub rules_version: String,
    /// Hash of the billing settings.
    pub config_hash: String,
    /// The billing settings themselves.
    pub settings: serde_json::Value,
    /// Directory read.
    pub directory: DirectoryInput,
    /// Usage read.
    pub usage: UsageInput,
    /// Files of the revision (filled in when published).
    pub outputs: Vec<OutputFile>,
    /// Totals per currency.
    pub totals: Vec<CurrencyTotal>,
    /// Row counts.
    pub counts: Counts,
    /// The e-invoices and credit notes of the revision (spec 5), in publish order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<Document>,
}

/// What an e-invoice document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// UBL Invoice, type code 380.
    Invoice,
    /// UBL CreditNote, type code 381, cancelling an issued invoice in full.
    CreditNote,
}

/// One e-invoice document of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Its number (`<seller>-<YYYY>-<n>`).
    pub number: String,
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// Seller id.
    pub seller_id: String,
    /// Buyer id.
    pub buyer_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The number of the invoice a credit note cancels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<String>,
    /// File within the revision (`einvoices/<seller>/<number>.xml`).
    pub file: String,
    /// Sum of the line amounts.
    pub net: Decimal,
    /// VAT.
    pub vat: Decimal,
    /// Net plus VAT.
    pub gross: Decimal,
    /// The VAT category it was issued with (UNCL 5305: `S`, `AE`, `O`), so
    /// that a credit note can cancel it with the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_category: Option<String>,
    /// The rate of that category in percent (none for `O`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_rate: Option<Decimal>,
    /// The seller and the buyer as the document names them, so that a
    /// credit note cancels it with the same parties whatever the directory
    /// says by then (none in revisions written before capbill recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parties: Option<DocumentParties>,
}

/// The two parties of a document, as it names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentParties {
    /// Who issues it.
    pub seller: DocumentParty,
    /// Who receives it.
    pub buyer: DocumentParty,
}

/// A party of a document: the entity's id, name and party data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentParty {
    /// `entity_id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// Party data (spec 5.1).
    #[serde(flatten)]
    pub party: crate::model::Party,
}

/// `latest.json`: the newest complete revision of a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// `YYYY-MM`.
    pub billing_month: String,
    /// Revision number.
    pub revision: u32,
    /// `provisional` or `final`.
    pub status: MonthStatus,
    /// Manifest key relative to the month folder.
    pub manifest: String,
    /// When the revision was generated.
    pub generated_at: String,
    /// Totals per currency.
    pub totals: Vec<CurrencyTotal>,
}

impl Latest {
    /// The pointer to a published manifest.
    pub fn of(m: &Manifest) -> Latest {
        Latest {
            billing_month: m.billing_month.clone(),
            revision: m.revision,
            status: m.status,
            manifest: format!("revision={}/manifest.json", m.revision),
            generated_at: m.generated_at.clone(),
            totals: m.totals.clone(),
        }
    }
}

/// Prefix of a month's outputs.
pub fn month_prefix(month: BillingMonth) -> String {
    format!("billing_month={month}")
}

/// The key of `latest.json` for a month.
pub fn latest_key(month: BillingMonth) -> String {
    format!("{}/latest.json", month_prefix(month))
}

/// The folder key of a revision.
pub fn revision_prefix(month: BillingMonth, revision: u32) -> String {
    format!("{}/revision={revision}", month_prefix(month))
}

/// Revisions of a month that are complete (have a manifest), ascending.
pub async fn complete_revisions(store: &Store, month: BillingMonth) -> Result<Vec<u32>, ManifestError> {
    let prefix = month_prefix(month);
    let mut revs: Vec<u32> = store
        .list(&prefix)
        .await?
        .iter()
        .filter_map(|o| {
            let rest = o.key.strip_prefix(&prefix)?.strip_prefix("/revision=")?;
            let (n, file) = rest.split_once('/')?;
            (file == "manifest.json").then(|| n.parse().ok()).flatten()
        })
        .collect();
    revs.sort_unstable();
    Ok(revs)
}

/// Reads `latest.json` of a month, if any.
pub async fn read_latest(store: &Store, month: BillingMonth) -> Result<Option<Latest>, ManifestError> {
    let key = latest_key(month);
    match store.get_opt(&key).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| ManifestError::Corrupt { location: store.describe(&key), source }),
    }
}

/// Reads the manifest of a revision.
pub async fn read_manifest(store: &Store, month: BillingMonth, revision: u32) -> Result<Manifest, ManifestError> {
    let key = format!("{}/manifest.json", revision_prefix(month, revision));
    let data = store.get(&key).await?;
    serde_json::from_slice(&data).map_err(|source| ManifestError::Corrupt { location: store.describe(&key), source })
}

/// Every complete revision's manifest of a month, ascending: its history.
pub async fn history(store: &Store, month: BillingMonth) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for r in complete_revisions(store, month).await? {
        out.push(read_manifest(store, month, r).await?);
    }
    Ok(out)
}

/// Months with outputs under the output root, ascending.
pub async fn months(store: &Store) -> Result<Vec<BillingMonth>, ManifestError> {
    // An output folder not made yet (before the first run) holds no month.
    let mut months: Vec<BillingMonth> = store
        .list_or_empty("")
        .await?
        .iter()
        .filter_map(|o| o.key.split('/').next()?.strip_prefix("billing_month=")?.parse().ok())
        .collect();
    months.sort();
    months.dedup();
    Ok(months)
}
