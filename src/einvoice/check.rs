//! `capbill validate --einvoices`: re-checks the documents of a month's
//! latest revision against what the revision says about them. Each
//! document listed in the manifest must be there with its checksum, be
//! well-formed XML of the right kind (Invoice 380 or CreditNote 381) and
//! carry its number, the number it cancels, and totals equal to the
//! manifest's and (for invoices) to the `invoices` table; every number in
//! the `invoices` table must name a document of this or an earlier
//! revision. The EN 16931 rules themselves are the official validator's
//! (`tests/einvoice/validate.py`).

use std::collections::{BTreeMap, BTreeSet};

use quick_xml::events::Event;
use rust_decimal::Decimal;

use super::EinvoiceError;
use crate::formats;
use crate::manifest::{self, Document, DocumentKind, revision_prefix};
use crate::model::BillingMonth;
use crate::storage::Store;

/// What `capbill validate --einvoices` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The month.
    pub month: BillingMonth,
    /// Its latest revision.
    pub revision: u32,
    /// Documents checked.
    pub documents: usize,
    /// Invoices of the `invoices` table that carry a number.
    pub numbered_invoices: usize,
}

/// The values of a document the check compares.
#[derive(Debug, Default)]
struct Read {
    root: String,
    type_code: String,
    number: String,
    credits: Option<String>,
    net: Option<Decimal>,
    vat: Option<Decimal>,
    gross: Option<Decimal>,
    lines_net: Decimal,
    lines: usize,
}

/// Reads a document, or says why it is not well-formed XML.
fn read(xml: &[u8]) -> Result<Read, String> {
    let mut r = quick_xml::Reader::from_reader(xml);
    r.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut out = Read::default();
    let mut buf = Vec::new();
    let dec = |s: &str| s.parse::<Decimal>().map_err(|e| format!("{s:?} is not an amount: {e}"));
    loop {
        match r.read_event_into(&mut buf) {
            Err(e) => return Err(format!("not well-formed XML at byte {}: {e}", r.error_position())),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if path.is_empty() {
                    out.root = name.clone();
                }
                if path.len() == 1 && (name == "InvoiceLine" || name == "CreditNoteLine") {
                    out.lines += 1;
                }
                path.push(name);
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let text = t.xml_content().map_err(|e| format!("bad text: {e}"))?.into_owned();
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                match p.as_slice() {
                    [_, "ID"] => out.number = text,
                    [_, "InvoiceTypeCode" | "CreditNoteTypeCode"] => out.type_code = text,
                    [_, "BillingReference", "InvoiceDocumentReference", "ID"] => out.credits = Some(text),
                    [_, "TaxTotal", "TaxAmount"] => out.vat = Some(dec(&text)?),
                    [_, "LegalMonetaryTotal", "LineExtensionAmount"] => out.net = Some(dec(&text)?),
                    [_, "LegalMonetaryTotal", "PayableAmount"] => out.gross = Some(dec(&text)?),
                    [_, "InvoiceLine" | "CreditNoteLine", "LineExtensionAmount"] => out.lines_net += dec(&text)?,
                    _ => {}
                }
            }
            Ok(_) => {}
        }
        buf.clear();
    }
    if !path.is_empty() || out.root.is_empty() {
        return Err("not well-formed XML: unclosed elements".to_owned());
    }
    Ok(out)
}

/// The problems of one document against its manifest entry and the invoices table.
fn check_document(
    d: &Document,
    xml: &[u8],
    invoices: &BTreeMap<(String, String, String), (Decimal, String)>,
) -> Vec<String> {
    let r = match read(xml) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let mut p = Vec::new();
    let (root, code) = match d.kind {
        DocumentKind::Invoice => ("Invoice", "380"),
        DocumentKind::CreditNote => ("CreditNote", "381"),
    };
    if r.root != root || r.type_code != code {
        p.push(format!("is a {} of type {:?}, the manifest says {root} {code}", r.root, r.type_code));
    }
    if r.number != d.number {
        p.push(format!("has number {:?}, the manifest says {}", r.number, d.number));
    }
    if r.credits != d.credits {
        p.push(format!("cancels {:?}, the manifest says {:?}", r.credits, d.credits));
    }
    for (what, got, want) in [("net total", r.net, d.net), ("VAT", r.vat, d.vat), ("amount payable", r.gross, d.gross)]
    {
        if got != Some(want) {
            p.push(format!(
                "{what} {} differs from the manifest's {want}",
                got.map_or("missing".into(), |g| g.to_string())
            ));
        }
    }
    if r.lines == 0 || r.lines_net != d.net {
        p.push(format!("its {} lines sum to {}, not its net total {}", r.lines, r.lines_net, d.net));
    }
    if d.kind == DocumentKind::Invoice {
        match invoices.get(&(d.seller_id.clone(), d.buyer_id.clone(), d.currency.clone())) {
            None => p.push("has no row in the invoices table".to_owned()),
            Some((total, number)) => {
                if *total != d.net {
                    p.push(format!("net total {} differs from the invoices table's total {total}", d.net));
                }
                if *number != d.number {
                    p.push(format!("the invoices table gives this invoice number {number:?}"));
                }
            }
        }
    }
    p
}

/// Checks the documents of the latest revision of `month`.
pub async fn check(store: &Store, month: BillingMonth) -> Result<Checked, EinvoiceError> {
    let invalid = |revision, problems| EinvoiceError::Invalid { month, revision, problems };
    let manifest_error = |e| match e {
        manifest::ManifestError::Storage(s) => EinvoiceError::Storage(s),
        manifest::ManifestError::Corrupt { location, source } => invalid(0, vec![format!("{location}: {source}")]),
    };
    let Some(latest) = manifest::read_latest(store, month).await.map_err(manifest_error)? else {
        return Err(invalid(0, vec![format!("billing month {month} has no published revision")]));
    };
    let history = manifest::history(store, month).await.map_err(manifest_error)?;
    let Some(m) = history.iter().find(|m| m.revision == latest.revision) else {
        return Err(invalid(latest.revision, vec!["latest.json names a revision without a manifest".to_owned()]));
    };
    let prefix = revision_prefix(month, m.revision);
    let key = format!("{prefix}/invoices.parquet");
    let frame = |source| EinvoiceError::Frame { what: store.describe(&key), source };
    let df = formats::read_parquet(store.get(&key).await?).map_err(frame)?;
    let mut invoices = BTreeMap::new();
    if df.column("invoice_number").is_ok() {
        let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
        let (seller, buyer, currency, number) = (
            s("seller_id").map_err(frame)?,
            s("buyer_id").map_err(frame)?,
            s("currency").map_err(frame)?,
            s("invoice_number").map_err(frame)?,
        );
        let totals = formats::decimals(&df, "total").map_err(frame)?;
        for (i, total) in totals.into_iter().enumerate() {
            let g = |c: &polars::prelude::StringChunked| c.get(i).unwrap_or_default().to_owned();
            invoices.insert((g(&seller), g(&buyer), g(&currency)), (total, g(&number)));
        }
    }
    let mut problems = Vec::new();
    let outputs: BTreeMap<&str, &str> = m.outputs.iter().map(|o| (o.file.as_str(), o.sha256.as_str())).collect();
    for d in &m.documents {
        let key = format!("{prefix}/{}", d.file);
        let Some(xml) = store.get_opt(&key).await? else {
            problems.push(format!("{}: missing", d.file));
            continue;
        };
        if outputs.get(d.file.as_str()) != Some(&manifest::sha256_hex(&xml).as_str()) {
            problems.push(format!("{}: its SHA-256 is not the manifest's", d.file));
        }
        problems.extend(check_document(d, &xml, &invoices).into_iter().map(|p| format!("{}: {p}", d.file)));
    }
    // Every number of the invoices table names a document issued so far.
    let issued: BTreeSet<&str> = history
        .iter()
        .filter(|h| h.revision <= m.revision)
        .flat_map(|h| h.documents.iter().filter(|d| d.kind == DocumentKind::Invoice).map(|d| d.number.as_str()))
        .collect();
    let mut numbered = 0;
    for ((seller, buyer, currency), (_, number)) in &invoices {
        if number.is_empty() {
            continue;
        }
        numbered += 1;
        if !issued.contains(number.as_str()) {
            problems
                .push(format!("invoices {seller} -> {buyer} ({currency}): number {number} names no issued invoice"));
        }
    }
    if !problems.is_empty() {
        return Err(invalid(m.revision, problems));
    }
    Ok(Checked { month, revision: m.revision, documents: m.documents.len(), numbered_invoices: numbered })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_documents_are_named() {
        assert!(read(b"<Invoice><a></b></Invoice>").unwrap_err().starts_with("not well-formed XML"));
        assert!(read(b"<Invoice><a>").is_err());
        let r = read(
            b"<Invoice xmlns:cbc=\"x\"><cbc:ID>n-1</cbc:ID><cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode></Invoice>",
        )
        .unwrap();
        assert_eq!((r.root.as_str(), r.number.as_str(), r.type_code.as_str()), ("Invoice", "n-1", "380"));
    }
}
