//! The VAT of an invoice (spec 5.2): its tax category from the seller's
//! and buyer's party data, and its VAT amount, computed once per invoice
//! and category on the sum of the line amounts (rounded in `money`).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::EinvoiceError;
use crate::country::in_eu;
use crate::directory::Party;
use crate::money;

/// A tax category of UNCL 5305 as capbill issues them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `S`: seller and buyer in the same country, at its standard rate (percent).
    Standard(Decimal),
    /// `AE`: EU cross-border business-to-business, reverse charge, 0 %.
    ReverseCharge,
    /// `O`: buyer outside the EU, not subject to VAT.
    NotSubject,
}

impl Category {
    /// The UNCL 5305 code.
    pub fn code(self) -> &'static str {
        match self {
            Category::Standard(_) => "S",
            Category::ReverseCharge => "AE",
            Category::NotSubject => "O",
        }
    }

    /// The category a document was issued with, from its code and rate
    /// (as [`Category::code`] and [`Category::rate`] give them).
    pub fn from_code(code: &str, rate: Option<Decimal>) -> Option<Category> {
        match (code, rate) {
            ("S", Some(r)) => Some(Category::Standard(r)),
            ("AE", _) => Some(Category::ReverseCharge),
            ("O", _) => Some(Category::NotSubject),
            _ => None,
        }
    }

    /// The rate in percent (`None` for `O`, which has none).
    pub fn rate(self) -> Option<Decimal> {
        match self {
            Category::Standard(r) => Some(r),
            Category::ReverseCharge => Some(Decimal::ZERO),
            Category::NotSubject => None,
        }
    }

    /// The exemption reason code (VATEX) and text, for `AE` and `O`.
    pub fn exemption(self) -> Option<(&'static str, &'static str)> {
        match self {
            Category::Standard(_) => None,
            Category::ReverseCharge => Some(("VATEX-EU-AE", "Reverse charge")),
            Category::NotSubject => Some(("VATEX-EU-O", "Not subject to VAT")),
        }
    }

    /// Whether the seller's and buyer's VAT ids go on the document (not for
    /// `O`: EN 16931 BR-O-02 forbids them).
    pub fn shows_vat_ids(self) -> bool {
        !matches!(self, Category::NotSubject)
    }

    /// The VAT of a net amount (the sum of an invoice's line amounts), rounded once.
    pub fn vat(self, net: Decimal) -> Result<Decimal, EinvoiceError> {
        match self.rate() {
            Some(r) => Ok(money::vat_amount(net, r)?),
            None => Ok(money::with_scale(Decimal::ZERO, money::AMOUNT_SCALE)),
        }
    }
}

/// The party columns an invoice lacks, per side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    /// Columns the seller lacks.
    pub seller: Vec<&'static str>,
    /// Columns the buyer lacks.
    pub buyer: Vec<&'static str>,
}

/// The tax category of an invoice from `seller` (id `seller_id`) to `buyer`,
/// or what they lack for one. A domestic invoice of a country without a
/// configured rate is a configuration error.
pub fn category(
    seller_id: &str,
    seller: &Party,
    buyer: &Party,
    rates: &BTreeMap<String, Decimal>,
) -> Result<Result<Category, Missing>, EinvoiceError> {
    let mut missing = Missing::default();
    if seller.country.is_none() {
        missing.seller.push("country");
    }
    if seller.vat_id.is_none() {
        missing.seller.push("vat_id");
    }
    if buyer.country.is_none() {
        missing.buyer.push("country");
    }
    let (Some(s), Some(b)) = (&seller.country, &buyer.country) else {
        return Ok(Err(missing));
    };
    let category = if s == b {
        match rates.get(s) {
            Some(r) => Category::Standard(*r),
            None => return Err(EinvoiceError::NoVatRate { seller: seller_id.to_owned(), country: s.clone() }),
        }
    } else if !in_eu(b) {
        Category::NotSubject
    } else if buyer.vat_id.is_some() {
        Category::ReverseCharge
    } else {
        missing.buyer.push("vat_id");
        return Ok(Err(missing));
    };
    Ok(if missing.seller.is_empty() { Ok(category) } else { Err(missing) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(country: Option<&str>, vat_id: Option<&str>) -> Party {
        Party { country: country.map(Into::into), vat_id: vat_id.map(Into::into), ..Default::default() }
    }

    #[test]
    fn the_category_follows_the_countries_and_the_buyers_vat_id() {
        let rates: BTreeMap<_, _> = [("DE".to_owned(), Decimal::new(19, 0))].into();
        let de = party(Some("DE"), Some("DE123456789"));
        let cat = |b: &Party| category("ic", &de, b, &rates).unwrap();
        assert_eq!(cat(&party(Some("DE"), None)), Ok(Category::Standard(Decimal::new(19, 0))), "domestic");
        assert_eq!(cat(&party(Some("FR"), Some("FR12345678901"))), Ok(Category::ReverseCharge));
        assert_eq!(cat(&party(Some("CH"), None)), Ok(Category::NotSubject));
        assert_eq!(cat(&party(Some("US"), Some("US1234"))), Ok(Category::NotSubject));
        assert_eq!(cat(&party(Some("FR"), None)), Err(Missing { seller: vec![], buyer: vec!["vat_id"] }));
        assert_eq!(cat(&party(None, None)), Err(Missing { seller: vec![], buyer: vec!["country"] }));
        let bare = party(None, None);
        assert_eq!(
            category("ic", &bare, &party(Some("DE"), None), &rates).unwrap(),
            Err(Missing { seller: vec!["country", "vat_id"], buyer: vec![] })
        );
        let fr = party(Some("FR"), Some("FR12345678901"));
        let e = category("dist-a", &fr, &party(Some("FR"), None), &rates).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no VAT rate for FR under [invoicing.vat_rates]: seller dist-a issues domestic invoices there"
        );
    }

    #[test]
    fn vat_per_category() {
        let net = Decimal::new(150, 2);
        assert_eq!(Category::Standard(Decimal::new(19, 0)).vat(net).unwrap().to_string(), "0.29");
        assert_eq!(Category::ReverseCharge.vat(net).unwrap().to_string(), "0.00");
        assert_eq!(Category::NotSubject.vat(net).unwrap().to_string(), "0.00");
        assert_eq!(Category::NotSubject.rate(), None);
        assert!(!Category::NotSubject.shows_vat_ids());
    }
}
