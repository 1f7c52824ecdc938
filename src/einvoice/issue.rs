//! Which documents a final revision issues (spec 5.4), in publish order,
//! and the documents themselves as files of the revision.
//!
//! The first final revision of a month issues an invoice for every
//! invoice that can be documented. A reprocess compares each invoice with
//! the final revision it corrects: an issued invoice whose lines are the
//! same keeps its number and gets nothing new; one whose lines changed gets
//! a credit note cancelling it in full, then a new invoice; one that
//! disappeared gets only its credit note; one never issued (new, or its
//! parties lacked data before) gets its invoice.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::tax::Category;
use super::ubl::{self, Header};
use super::{DocLine, Draft, EinvoiceError, InvoiceKey, Planned, lines_by_invoice, plan_documents};
use crate::config::Invoicing;
use crate::directory::Directory;
use crate::export::Encoded;
use crate::formats;
use crate::manifest::{Document, DocumentKind, DocumentParties, DocumentParty, revision_prefix};
use crate::model::{BillingMonth, Finding};
use crate::storage::Store;

/// What the corrected final revision issued: its invoice numbers and lines.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// Invoice number of each invoice that had a document.
    pub numbers: BTreeMap<InvoiceKey, String>,
    /// Lines of every invoice.
    pub lines: BTreeMap<InvoiceKey, Vec<DocLine>>,
    /// The VAT category each invoice number was issued with, from the
    /// manifests of the month's revisions.
    pub categories: BTreeMap<String, Category>,
    /// The parties each invoice number names, where its manifest recorded them.
    pub parties: BTreeMap<String, DocumentParties>,
}

impl Previous {
    /// How invoice `key` was issued, when its manifest says all of it: the
    /// VAT category and the parties a credit note cancels it with.
    fn issued(&self, key: &InvoiceKey) -> Option<(Category, &DocumentParties)> {
        let number = self.numbers.get(key)?;
        Some((*self.categories.get(number)?, self.parties.get(number)?))
    }
}

/// Reads what revision `revision` of `month` issued. A revision published
/// before e-invoices existed has no `invoice_number` column: nothing issued.
/// `history` (the month's revisions) gives the VAT category each invoice
/// number was issued with, in whichever revision issued it.
pub async fn read_previous(
    store: &Store,
    month: BillingMonth,
    revision: u32,
    history: &[crate::manifest::Manifest],
) -> Result<Previous, EinvoiceError> {
    let prefix = revision_prefix(month, revision);
    let frame = |what: String| move |source| EinvoiceError::Frame { what: what.clone(), source };
    let key = format!("{prefix}/invoice_lines.parquet");
    let lines = formats::read_parquet(store.get(&key).await?)
        .and_then(|df| lines_by_invoice(&df))
        .map_err(frame(store.describe(&key)))?;
    let key = format!("{prefix}/invoices.parquet");
    let numbers = formats::read_parquet(store.get(&key).await?)
        .and_then(|df| crate::export::invoice_numbers(&df))
        .map_err(frame(store.describe(&key)))?;
    let invoices = || history.iter().flat_map(|m| &m.documents).filter(|d| d.kind == DocumentKind::Invoice);
    let categories = invoices()
        .filter_map(|d| Some((d.number.clone(), Category::from_code(d.vat_category.as_deref()?, d.vat_rate)?)))
        .collect();
    let parties = invoices().filter_map(|d| Some((d.number.clone(), d.parties.clone()?))).collect();
    Ok(Previous { numbers, lines, categories, parties })
}

/// One document to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// What it bills (or credits).
    pub draft: Draft,
    /// The number a credit note cancels.
    pub credits: Option<String>,
    /// The parties of the invoice a credit note cancels, as that invoice
    /// named them (none: the directory's, for invoices issued before
    /// manifests recorded them).
    pub parties: Option<DocumentParties>,
}

/// What a final revision issues.
#[derive(Debug, Clone, Default)]
pub struct Issuance {
    /// Documents in publish order: by seller, buyer, currency; a credit note before its replacement.
    pub issues: Vec<Issue>,
    /// Invoices that keep the number issued before.
    pub carried: BTreeMap<InvoiceKey, String>,
    /// `einvoice_data_missing` of credit notes that cannot be issued.
    pub findings: Vec<Finding>,
}

/// The documents of a final revision: `current` are its invoices' lines,
/// `planned` their drafts, `previous` what the corrected final revision issued.
pub fn issuance(
    directory: &Directory,
    settings: &Invoicing,
    current: &BTreeMap<InvoiceKey, Vec<DocLine>>,
    planned: &Planned,
    previous: Option<&Previous>,
) -> Result<Issuance, EinvoiceError> {
    let none = Previous::default();
    let previous = previous.unwrap_or(&none);
    // Issued invoices that changed or disappeared are credited in full, with their old lines.
    let credited: BTreeMap<InvoiceKey, Vec<DocLine>> = previous
        .numbers
        .keys()
        .filter(|k| !super::same_billing(current.get(*k), previous.lines.get(*k)))
        .map(|k| (k.clone(), previous.lines.get(k).cloned().unwrap_or_default()))
        .collect();
    // A credit note cancels the issued invoice in full (spec 5.4): with the
    // VAT category and rate and the parties it was issued with, whatever
    // the rates or the directory say now, so that no change of a party's
    // data (a buyer that lost its VAT id or left the directory) can keep
    // an issued invoice from being cancelled. An invoice whose manifest
    // predates that record is cancelled with the directory's parties.
    let unrecorded: BTreeMap<InvoiceKey, Vec<DocLine>> =
        credited.iter().filter(|(k, _)| previous.issued(k).is_none()).map(|(k, l)| (k.clone(), l.clone())).collect();
    let mut credits = plan_documents(directory, &unrecorded, settings, "credit note")?;
    for (key, draft) in &mut credits.drafts {
        if let Some(&category) = previous.numbers.get(key).and_then(|n| previous.categories.get(n)) {
            *draft = Draft::taxed(key.clone(), std::mem::take(&mut draft.lines), category)?;
        }
    }
    for (key, lines) in &credited {
        if let Some((category, _)) = previous.issued(key) {
            credits.drafts.insert(key.clone(), Draft::taxed(key.clone(), lines.clone(), category)?);
        }
    }
    let mut out = Issuance { findings: credits.findings, ..Default::default() };
    let keys: BTreeSet<&InvoiceKey> = current.keys().chain(previous.numbers.keys()).collect();
    for key in keys {
        let issued = previous.numbers.get(key);
        if let Some(number) = issued
            && !credited.contains_key(key)
        {
            out.carried.insert(key.clone(), number.clone());
            continue;
        }
        if let (Some(number), Some(draft)) = (issued, credits.drafts.get(key)) {
            out.issues.push(Issue {
                kind: DocumentKind::CreditNote,
                draft: draft.clone(),
                credits: Some(number.clone()),
                parties: previous.issued(key).map(|(_, parties)| parties.clone()),
            });
        }
        if let Some(draft) = planned.drafts.get(key) {
            out.issues.push(Issue { kind: DocumentKind::Invoice, draft: draft.clone(), credits: None, parties: None });
        }
    }
    Ok(out)
}

/// The file of a document within its revision.
pub fn document_file(seller: &str, number: &str) -> String {
    format!("einvoices/{}/{}.xml", super::key_segment(seller), super::key_segment(number))
}

/// The documents of `issues` numbered `numbers` (in the same order), as
/// revision files and manifest entries.
pub fn documents(
    directory: &Directory,
    settings: &Invoicing,
    month: BillingMonth,
    issue_date: NaiveDate,
    issues: &[Issue],
    numbers: &[String],
) -> Result<(Vec<Encoded>, Vec<Document>), EinvoiceError> {
    let mut files = Vec::with_capacity(issues.len());
    let mut docs = Vec::with_capacity(issues.len());
    for (issue, number) in issues.iter().zip(numbers) {
        let d = &issue.draft;
        let entity = |id: &str| {
            directory
                .entity(id)
                .map(|e| {
                    let e = &directory.entities[e];
                    DocumentParty { id: e.id.clone(), name: e.name.clone(), party: e.party.clone() }
                })
                .ok_or_else(|| EinvoiceError::Unknown(id.to_owned()))
        };
        let parties = match &issue.parties {
            Some(recorded) => recorded.clone(),
            None => DocumentParties { seller: entity(&d.key.0)?, buyer: entity(&d.key.1)? },
        };
        let header = Header {
            kind: issue.kind,
            number,
            credits: issue.credits.as_deref(),
            issue_date,
            month,
            seller: &parties.seller,
            buyer: &parties.buyer,
            settings,
        };
        let xml = ubl::document(&header, d);
        let file = document_file(&d.key.0, number);
        files.push(Encoded::new(file.clone(), d.lines.len(), xml.into_bytes()));
        docs.push(Document {
            number: number.clone(),
            kind: issue.kind,
            seller_id: d.key.0.clone(),
            buyer_id: d.key.1.clone(),
            currency: d.key.2.clone(),
            credits: issue.credits.clone(),
            file,
            net: d.net,
            vat: d.vat,
            gross: d.gross,
            vat_category: Some(d.category.code().to_owned()),
            vat_rate: d.category.rate(),
            parties: Some(parties),
        });
    }
    Ok((files, docs))
}
