//! The manifest of a revision and the `latest.json` pointer.
//!
//! A manifest says what a revision was made from (directory and usage
//! objects with size and ETag, the configuration hash, program and rules
//! versions) and what it holds (every output file with rows and SHA-256, the
//! totals per currency), so a later run can tell whether anything changed.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::revision::MonthStatus;
use crate::storage::ObjectMeta;

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
