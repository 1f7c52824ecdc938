//! `[invoicing]`: the settings e-invoices need beyond the directory's party
//! data (spec 5.2, 5.5): the standard VAT rate of each seller country,
//! payment terms and means, the unit code of line quantities. Validated
//! here, once.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use super::ConfigError;
use crate::model::Unit;

/// Validated `[invoicing]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invoicing {
    /// Standard VAT rate (percent) per country code.
    pub vat_rates: BTreeMap<String, Decimal>,
    /// Days from the issue date to the due date.
    pub payment_days: u32,
    /// IBAN for sellers without their own, without spaces.
    pub iban: Option<String>,
    /// IBAN per seller id, without spaces.
    pub seller_ibans: BTreeMap<String, String>,
    /// UN/ECE Recommendation 20 unit code of the line quantities.
    pub unit_code: String,
}

impl Invoicing {
    /// The IBAN payments to `seller` go to.
    pub fn iban_of(&self, seller: &str) -> Option<&str> {
        self.seller_ibans.get(seller).or(self.iban.as_ref()).map(String::as_str)
    }
}

/// Whether `iban` (no spaces) has the shape of an IBAN: a country code, two
/// check digits, 11 to 30 upper-case letters or digits, and ISO 7064
/// mod 97-10 giving 1.
pub fn valid_iban(iban: &str) -> bool {
    let b = iban.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b[4..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        || !crate::country::is_country(&iban[..2])
    {
        return false;
    }
    let mut rem = 0u32;
    for &c in b[4..].iter().chain(&b[..4]) {
        rem = match c.is_ascii_digit() {
            true => (rem * 10 + u32::from(c - b'0')) % 97,
            false => (rem * 100 + u32::from(c - b'A') + 10) % 97,
        };
    }
    rem == 1
}

/// The validated settings of a raw `[invoicing]` section.
pub(super) fn invoicing_settings(
    vat_rates: BTreeMap<String, String>,
    payment_days: Option<u32>,
    iban: Option<String>,
    seller_ibans: BTreeMap<String, String>,
    unit_code: Option<String>,
    unit: Unit,
) -> Result<Invoicing, ConfigError> {
    let invalid = |setting, reason| ConfigError::Invalid { setting, reason };
    let mut rates = BTreeMap::new();
    for (country, rate) in vat_rates {
        if !crate::country::is_country(&country) {
            return Err(invalid(
                "invoicing.vat_rates",
                format!("{country:?} is not an ISO 3166-1 alpha-2 country code"),
            ));
        }
        let plain = !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit() || c == '.');
        let r = rate
            .parse::<Decimal>()
            .ok()
            .filter(|r| plain && *r > Decimal::ZERO && *r < Decimal::ONE_HUNDRED && r.scale() <= 4)
            .ok_or_else(|| {
                invalid(
                    "invoicing.vat_rates",
                    format!("{country} = {rate:?} is not a percentage above 0 and below 100"),
                )
            })?;
        rates.insert(country, r);
    }
    let check_iban = |setting, v: String| {
        let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        match valid_iban(&compact) {
            true => Ok(compact),
            false => Err(invalid(setting, format!("{v:?} is not a valid IBAN"))),
        }
    };
    let unit_code = match unit_code {
        Some(c) if (2..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) => c,
        Some(c) => return Err(invalid("invoicing.unit_code", format!("{c:?} is not a UN/ECE Recommendation 20 code"))),
        None => match unit {
            Unit::Tb => "E35".to_owned(),
            Unit::Tib => "C62".to_owned(),
        },
    };
    let payment_days = payment_days.unwrap_or(30);
    if payment_days > 366 {
        return Err(invalid("invoicing.payment_days", format!("{payment_days} is more than a year (366 days)")));
    }
    Ok(Invoicing {
        vat_rates: rates,
        payment_days,
        iban: iban.map(|v| check_iban("invoicing.iban", v)).transpose()?,
        seller_ibans: seller_ibans
            .into_iter()
            .map(|(k, v)| check_iban("invoicing.seller_ibans", v).map(|v| (k, v)))
            .collect::<Result<_, _>>()?,
        unit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(rates: &[(&str, &str)]) -> BTreeMap<String, String> {
        rates.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn ibans_are_checked_by_shape_and_mod_97() {
        assert!(valid_iban("DE89370400440532013000"));
        assert!(valid_iban("FR1420041010050500013M02606"));
        assert!(!valid_iban("DE89370400440532013001"), "check digits");
        assert!(!valid_iban("XX89370400440532013000"), "country");
        assert!(!valid_iban("DE8937"), "length");
        let own = rates(&[("dist-a", "FR14 2004 1010 0505 0001 3M02 606")]);
        let i = invoicing_settings(rates(&[]), None, Some("DE89 3704 0044 0532 0130 00".into()), own, None, Unit::Tb)
            .unwrap();
        assert_eq!(i.iban_of("ic"), Some("DE89370400440532013000"));
        assert_eq!(i.iban_of("dist-a"), Some("FR1420041010050500013M02606"));
        let e = invoicing_settings(rates(&[]), None, Some("DE00".into()), rates(&[]), None, Unit::Tb).unwrap_err();
        assert_eq!(e.to_string(), "invalid invoicing.iban: \"DE00\" is not a valid IBAN");
    }

    #[test]
    fn vat_rates_are_percentages_of_known_countries_and_the_unit_code_follows_the_unit() {
        let ok = |r, unit| invoicing_settings(r, None, None, rates(&[]), None, unit);
        let i = ok(rates(&[("DE", "19"), ("FR", "20.0")]), Unit::Tb).unwrap();
        assert_eq!(i.vat_rates["DE"], Decimal::new(19, 0));
        assert_eq!(i.unit_code, "E35");
        assert_eq!(i.payment_days, 30);
        assert_eq!(ok(rates(&[]), Unit::Tib).unwrap().unit_code, "C62");
        let e = invoicing_settings(rates(&[]), Some(400), None, rates(&[]), None, Unit::Tb).unwrap_err();
        assert_eq!(e.to_string(), "invalid invoicing.payment_days: 400 is more than a year (366 days)");
        for (c, r) in [("DE", "19%"), ("DE", "-1"), ("DE", "100"), ("De", "19"), ("XX", "19"), ("DE", "1e1")] {
            let e = ok(rates(&[(c, r)]), Unit::Tb).unwrap_err();
            assert!(e.to_string().starts_with("invalid invoicing.vat_rates: "), "{c} = {r}: {e}");
        }
    }
}
