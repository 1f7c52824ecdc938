//! E-invoices (spec 5): every invoice of a final revision as an EN 16931
//! document in UBL 2.1, with its VAT, its number, and the credit notes of a
//! reprocess.
//!
//! Owns what the documents say and when they are issued; the lines are
//! rating's (read from the revision's `invoice_lines` frame), the party
//! data the directory's, the settings `[invoicing]`'s. The pieces:
//! - `tax`: the tax category of an invoice and its VAT, once per invoice;
//! - `numbers`: the per-seller sequences, taken with create-only writes;
//! - `issue`: which documents a final revision issues (credit notes and
//!   replacements of a reprocess) and the documents as revision files;
//! - `check`: `capbill validate --einvoices`, the documents of a revision
//!   against its manifest and `invoices` table;
//! - `ubl`: the UBL 2.1 Invoice and CreditNote text;
//! - this file: lines grouped into invoices ([`Draft`]s) and the
//!   `einvoice_data_missing` findings of those that cannot be documented.
//!
//! The revision's files are written by `export` like every other output
//! (the pipeline appends the documents as `Encoded` files).

mod check;
mod issue;
mod numbers;
mod tax;
mod ubl;

use std::collections::{BTreeMap, BTreeSet};

use polars::prelude::{DataFrame, PolarsError, PolarsResult, StringChunked};
use rust_decimal::Decimal;
use thiserror::Error;

use crate::config::Invoicing;
use crate::directory::{Directory, Party};
use crate::formats;
use crate::model::{Finding, FindingKind};
use crate::money::{self, MoneyError};
use crate::storage::StorageError;

pub use check::{Checked, check};
pub use issue::{Issuance, Issue, Previous, document_file, documents, issuance, read_previous};
pub use numbers::{NUMBERS_PREFIX, Wanted, format_number, take};
pub use tax::{Category, Missing, category};
pub use ubl::{CUSTOMIZATION_ID, item_name};

/// An e-invoicing failure.
#[derive(Debug, Error)]
pub enum EinvoiceError {
    /// A seller issues a domestic invoice in a country without a configured rate.
    #[error("no VAT rate for {country} under [invoicing.vat_rates]: seller {seller} issues domestic invoices there")]
    NoVatRate {
        /// Seller id.
        seller: String,
        /// Its country.
        country: String,
    },
    /// An amount out of range (a bug: the directory's bounds prevent it).
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// Reading lines or invoices from a frame failed (a bug).
    #[error("cannot read the invoice lines of {what}")]
    Frame {
        /// Which revision's.
        what: String,
        /// Cause.
        #[source]
        source: PolarsError,
    },
    /// A document names an entity the directory does not have (a bug: such
    /// invoices get a finding, not a document).
    #[error("e-invoice party {0} is not in the directory")]
    Unknown(String),
    /// `capbill validate --einvoices` found documents that do not match their revision.
    #[error("the e-invoices of billing month {month} (revision {revision}) do not match it:\n  {}", .problems.join("\n  "))]
    Invalid {
        /// The month.
        month: crate::model::BillingMonth,
        /// The revision checked.
        revision: u32,
        /// Every problem, naming the file.
        problems: Vec<String>,
    },
    /// Taking an invoice number or reading a published document failed.
    #[error("e-invoice storage")]
    Storage(#[from] StorageError),
}

impl EinvoiceError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            EinvoiceError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

pub use crate::storage::key_segment;

/// An invoice: seller id, buyer id, currency.
pub type InvoiceKey = (String, String, String);

/// One line of a document, as the `invoice_lines` table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocLine {
    /// End customer (or the buyer for reserved capacity).
    pub customer_id: String,
    /// Its name.
    pub customer_name: String,
    /// Contract.
    pub contract_id: String,
    /// `reserved`, `overage`, `usage` or `minimum`.
    pub charge: String,
    /// Quantity in unit-months.
    pub quantity: Decimal,
    /// `TB-month` or `TiB-month`.
    pub unit: String,
    /// Price per unit-month.
    pub unit_price: Decimal,
    /// Net amount.
    pub amount: Decimal,
}

impl DocLine {
    /// What the line bills: all of it but the customer's name, which is
    /// party data (a renamed customer bills the same).
    fn billed(&self) -> (&str, &str, &str, Decimal, &str, Decimal, Decimal) {
        (&self.customer_id, &self.contract_id, &self.charge, self.quantity, &self.unit, self.unit_price, self.amount)
    }
}

/// Whether two invoices' lines bill the same (spec 5.4 "whose lines
/// changed"): a rename of a party alone issues nothing, as the README says.
pub fn same_billing(a: Option<&Vec<DocLine>>, b: Option<&Vec<DocLine>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.billed() == y.billed()),
        (None, None) => true,
        _ => false,
    }
}

/// The lines of an `invoice_lines` frame grouped by invoice, in table order.
pub fn lines_by_invoice(df: &DataFrame) -> PolarsResult<BTreeMap<InvoiceKey, Vec<DocLine>>> {
    let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
    let [seller, buyer, currency, customer, customer_name, contract, charge, unit] =
        ["seller_id", "buyer_id", "currency", "customer_id", "customer_name", "contract_id", "charge", "unit"].map(s);
    let (seller, buyer, currency, customer, customer_name, contract, charge, unit) =
        (seller?, buyer?, currency?, customer?, customer_name?, contract?, charge?, unit?);
    let (q, p, a) =
        (formats::decimals(df, "quantity")?, formats::decimals(df, "unit_price")?, formats::decimals(df, "amount")?);
    let get = |c: &StringChunked, i| c.get(i).unwrap_or_default().to_owned();
    let mut out: BTreeMap<InvoiceKey, Vec<DocLine>> = BTreeMap::new();
    for i in 0..df.height() {
        out.entry((get(&seller, i), get(&buyer, i), get(&currency, i))).or_default().push(DocLine {
            customer_id: get(&customer, i),
            customer_name: get(&customer_name, i),
            contract_id: get(&contract, i),
            charge: get(&charge, i),
            quantity: q[i],
            unit: get(&unit, i),
            unit_price: p[i],
            amount: a[i],
        });
    }
    Ok(out)
}

/// An invoice that can be documented: its lines, tax category and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Seller, buyer, currency.
    pub key: InvoiceKey,
    /// Its lines.
    pub lines: Vec<DocLine>,
    /// Its tax category.
    pub category: Category,
    /// Sum of the line amounts.
    pub net: Decimal,
    /// VAT of the category on `net`, rounded once.
    pub vat: Decimal,
    /// `net + vat`.
    pub gross: Decimal,
}

impl Draft {
    /// The document of `lines` in `category`: their net, its VAT rounded
    /// once, and the gross.
    pub fn taxed(key: InvoiceKey, lines: Vec<DocLine>, category: Category) -> Result<Draft, EinvoiceError> {
        let net = money::sum_amounts(lines.iter().map(|l| l.amount))?;
        let vat = category.vat(net)?;
        let gross = money::sum_amounts([net, vat])?;
        Ok(Draft { key, lines, category, net, vat, gross })
    }
}

/// The invoices of a revision that can be documented, and a finding per
/// entity whose missing data keeps others from it.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    /// Documentable invoices by key.
    pub drafts: BTreeMap<InvoiceKey, Draft>,
    /// `einvoice_data_missing`, one per entity.
    pub findings: Vec<Finding>,
}

/// The party of entity `id`, if the directory has it.
pub fn party<'d>(directory: &'d Directory, id: &str) -> Option<&'d Party> {
    directory.entity(id).map(|e| &directory.entities[e].party)
}

/// Taxes every invoice of `invoices`; those whose parties lack data become findings.
pub fn plan(
    directory: &Directory,
    invoices: &BTreeMap<InvoiceKey, Vec<DocLine>>,
    settings: &Invoicing,
) -> Result<Planned, EinvoiceError> {
    plan_documents(directory, invoices, settings, "invoice")
}

/// [`plan`] for documents called `noun` in the findings (`credit note`).
pub(crate) fn plan_documents(
    directory: &Directory,
    invoices: &BTreeMap<InvoiceKey, Vec<DocLine>>,
    settings: &Invoicing,
    noun: &str,
) -> Result<Planned, EinvoiceError> {
    let empty = Party::default();
    let mut missing: BTreeMap<&str, (BTreeSet<&'static str>, usize)> = BTreeMap::new();
    let mut drafts = BTreeMap::new();
    for (key, lines) in invoices {
        let seller = party(directory, &key.0).unwrap_or(&empty);
        let buyer = party(directory, &key.1).unwrap_or(&empty);
        match category(&key.0, seller, buyer, &settings.vat_rates)? {
            Ok(category) => {
                drafts.insert(key.clone(), Draft::taxed(key.clone(), lines.clone(), category)?);
            }
            Err(m) => {
                for (id, cols) in [(&key.0, m.seller), (&key.1, m.buyer)] {
                    if !cols.is_empty() {
                        let e = missing.entry(id.as_str()).or_default();
                        e.0.extend(cols);
                        e.1 += 1;
                    }
                }
            }
        }
    }
    let findings = missing
        .into_iter()
        .map(|(id, (cols, n))| {
            let cols: Vec<_> = cols.into_iter().collect();
            let s = if n == 1 { "" } else { "s" };
            let detail = format!("missing {}: no e-invoice for {n} {noun}{s}", cols.join(", "));
            Finding::new(FindingKind::EinvoiceDataMissing, id, detail)
        })
        .collect();
    Ok(Planned { drafts, findings })
}
