//! The documents themselves (spec 5.5): a UBL 2.1 Invoice (type code 380)
//! or CreditNote (381) of the EN 16931 core (`urn:cen.eu:en16931:2017`),
//! written as text with every value escaped. Elements follow the order of
//! the UBL 2.1 schemas; amounts have 2 decimals and equal capbill's
//! invoice to the cent.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{Category, DocLine, Draft};
use crate::config::Invoicing;
use crate::manifest::{DocumentKind, DocumentParty};
use crate::model::BillingMonth;

/// The EN 16931 core specification (BT-24).
pub const CUSTOMIZATION_ID: &str = "urn:cen.eu:en16931:2017";

/// Everything a document says besides its invoice.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    /// Invoice or credit note.
    pub kind: DocumentKind,
    /// Its number.
    pub number: &'a str,
    /// For a credit note: the number of the invoice it cancels.
    pub credits: Option<&'a str>,
    /// The publish date.
    pub issue_date: NaiveDate,
    /// The billing month (the invoice period).
    pub month: BillingMonth,
    /// Seller.
    pub seller: &'a DocumentParty,
    /// Buyer.
    pub buyer: &'a DocumentParty,
    /// `[invoicing]`.
    pub settings: &'a Invoicing,
}

/// A tiny XML writer: elements with attributes and escaped text, indented.
struct Xml {
    out: String,
    open: Vec<&'static str>,
}

use crate::formats::escape_markup as escape;

impl Xml {
    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    fn start(&mut self, tag: &'static str, attrs: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(tag);
        for (k, v) in attrs {
            self.out.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
    }

    fn open(&mut self, tag: &'static str, attrs: &[(&str, &str)]) {
        self.indent();
        self.start(tag, attrs);
        self.out.push_str(">\n");
        self.open.push(tag);
    }

    fn close(&mut self) {
        let tag = self.open.pop().unwrap_or_default();
        self.indent();
        self.out.push_str(&format!("</{tag}>\n"));
    }

    fn leaf(&mut self, tag: &'static str, attrs: &[(&str, &str)], text: &str) {
        self.indent();
        self.start(tag, attrs);
        self.out.push_str(&format!(">{}</{tag}>\n", escape(text)));
    }

    fn text(&mut self, tag: &'static str, text: &str) {
        self.leaf(tag, &[], text);
    }

    fn amount(&mut self, tag: &'static str, currency: &str, value: Decimal) {
        self.leaf(tag, &[("currencyID", currency)], &crate::money::with_scale(value, 2).to_string());
    }
}

/// What a line bills, for people: the charge, the unit, the customer and the contract.
pub fn item_name(l: &DocLine) -> String {
    let what = match l.charge.as_str() {
        "reserved" => "Reserved storage capacity",
        "overage" => "Storage used above reserved capacity",
        "usage" => "Storage used (pay-per-use)",
        "minimum" => "Minimum storage top-up (pay-per-use)",
        other => other,
    };
    format!("{what}, {}: {} ({}), contract {}", l.unit, l.customer_name, l.customer_id, l.contract_id)
}

/// The UBL document of `draft` as XML text.
pub fn document(h: &Header<'_>, draft: &Draft) -> String {
    let invoice = h.kind == DocumentKind::Invoice;
    let currency = draft.key.2.as_str();
    let cat = draft.category;
    let mut x = Xml { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), open: Vec::new() };
    let (root, ns) = match invoice {
        true => ("Invoice", "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"),
        false => ("CreditNote", "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"),
    };
    x.open(
        root,
        &[
            ("xmlns", ns),
            ("xmlns:cac", "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"),
            ("xmlns:cbc", "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"),
        ],
    );
    x.text("cbc:CustomizationID", CUSTOMIZATION_ID);
    x.text("cbc:ID", h.number);
    x.text("cbc:IssueDate", &h.issue_date.to_string());
    let due = h.issue_date + chrono::Days::new(u64::from(h.settings.payment_days));
    if invoice {
        x.text("cbc:DueDate", &due.to_string());
        x.text("cbc:InvoiceTypeCode", "380");
    } else {
        x.text("cbc:CreditNoteTypeCode", "381");
    }
    let note = match h.credits {
        Some(n) => format!("Cancels invoice {n} of billing month {} in full.", h.month),
        None => format!("Cloud storage, billing month {}.", h.month),
    };
    x.text("cbc:Note", &note);
    x.text("cbc:DocumentCurrencyCode", currency);
    x.open("cac:InvoicePeriod", &[]);
    x.text("cbc:StartDate", &h.month.first_date().to_string());
    let last = h.month.next().first_date().pred_opt().unwrap_or(h.month.first_date());
    x.text("cbc:EndDate", &last.to_string());
    x.close();
    if let Some(n) = h.credits {
        x.open("cac:BillingReference", &[]);
        x.open("cac:InvoiceDocumentReference", &[]);
        x.text("cbc:ID", n);
        x.close();
        x.close();
    }
    x.open("cac:AccountingSupplierParty", &[]);
    party(&mut x, h.seller, cat);
    x.close();
    x.open("cac:AccountingCustomerParty", &[]);
    party(&mut x, h.buyer, cat);
    x.close();
    let iban = h.settings.iban_of(&h.seller.id);
    if invoice && let Some(iban) = iban {
        x.open("cac:PaymentMeans", &[]);
        // 58: SEPA credit transfer (euro); 30: credit transfer.
        x.leaf("cbc:PaymentMeansCode", &[], if currency == "EUR" { "58" } else { "30" });
        x.text("cbc:PaymentID", h.number);
        x.open("cac:PayeeFinancialAccount", &[]);
        x.text("cbc:ID", iban);
        x.close();
        x.close();
    }
    x.open("cac:PaymentTerms", &[]);
    let terms = match (invoice, h.credits) {
        (true, _) => format!("Payable within {} days, by {due}.", h.settings.payment_days),
        (false, Some(n)) => format!("Credited against invoice {n}."),
        (false, None) => "Credit.".to_owned(),
    };
    x.text("cbc:Note", &terms);
    x.close();
    x.open("cac:TaxTotal", &[]);
    x.amount("cbc:TaxAmount", currency, draft.vat);
    x.open("cac:TaxSubtotal", &[]);
    x.amount("cbc:TaxableAmount", currency, draft.net);
    x.amount("cbc:TaxAmount", currency, draft.vat);
    x.open("cac:TaxCategory", &[]);
    tax_category(&mut x, cat, true);
    x.close();
    x.close();
    x.close();
    x.open("cac:LegalMonetaryTotal", &[]);
    x.amount("cbc:LineExtensionAmount", currency, draft.net);
    x.amount("cbc:TaxExclusiveAmount", currency, draft.net);
    x.amount("cbc:TaxInclusiveAmount", currency, draft.gross);
    x.amount("cbc:PayableAmount", currency, draft.gross);
    x.close();
    for (i, l) in draft.lines.iter().enumerate() {
        let (line, qty) = match invoice {
            true => ("cac:InvoiceLine", "cbc:InvoicedQuantity"),
            false => ("cac:CreditNoteLine", "cbc:CreditedQuantity"),
        };
        x.open(line, &[]);
        x.text("cbc:ID", &(i + 1).to_string());
        x.leaf(qty, &[("unitCode", &h.settings.unit_code)], &l.quantity.to_string());
        x.amount("cbc:LineExtensionAmount", currency, l.amount);
        x.open("cac:Item", &[]);
        x.text("cbc:Name", &item_name(l));
        x.open("cac:ClassifiedTaxCategory", &[]);
        tax_category(&mut x, cat, false);
        x.close();
        x.close();
        x.open("cac:Price", &[]);
        x.leaf("cbc:PriceAmount", &[("currencyID", currency)], &l.unit_price.to_string());
        x.close();
        x.close();
    }
    x.close();
    x.out
}

fn tax_category(x: &mut Xml, cat: Category, breakdown: bool) {
    x.text("cbc:ID", cat.code());
    if let Some(r) = cat.rate() {
        x.text("cbc:Percent", &r.normalize().to_string());
    }
    if breakdown && let Some((code, reason)) = cat.exemption() {
        x.text("cbc:TaxExemptionReasonCode", code);
        x.text("cbc:TaxExemptionReason", reason);
    }
    x.open("cac:TaxScheme", &[]);
    x.text("cbc:ID", "VAT");
    x.close();
}

fn party(x: &mut Xml, e: &DocumentParty, cat: Category) {
    let p = &e.party;
    x.open("cac:Party", &[]);
    if let Some(email) = &p.email {
        x.leaf("cbc:EndpointID", &[("schemeID", "EM")], email);
    }
    x.open("cac:PartyIdentification", &[]);
    x.text("cbc:ID", &e.id);
    x.close();
    x.open("cac:PartyName", &[]);
    x.text("cbc:Name", &e.name);
    x.close();
    x.open("cac:PostalAddress", &[]);
    for (tag, v) in [("cbc:StreetName", &p.street), ("cbc:CityName", &p.city), ("cbc:PostalZone", &p.postal_code)] {
        if let Some(v) = v {
            x.text(tag, v);
        }
    }
    x.open("cac:Country", &[]);
    x.text("cbc:IdentificationCode", p.country.as_deref().unwrap_or_default());
    x.close();
    x.close();
    if cat.shows_vat_ids()
        && let Some(vat) = &p.vat_id
    {
        x.open("cac:PartyTaxScheme", &[]);
        x.text("cbc:CompanyID", vat);
        x.open("cac:TaxScheme", &[]);
        x.text("cbc:ID", "VAT");
        x.close();
        x.close();
    }
    x.open("cac:PartyLegalEntity", &[]);
    x.text("cbc:RegistrationName", p.legal_name.as_deref().unwrap_or(&e.name));
    x.close();
    x.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        assert_eq!(
            escape("Walden Archiv GmbH & Co. KG <1> \"a\" 'b'"),
            "Walden Archiv GmbH &amp; Co. KG &lt;1&gt; &quot;a&quot; &#39;b&#39;"
        );
        assert_eq!(escape("a\u{1}b"), "a b");
    }
}
