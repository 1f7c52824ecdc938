//! Party data of an entity (spec 5.1): the optional `entities` columns an
//! e-invoice needs (legal name, postal address, country, VAT id, e-mail).
//! Country codes and VAT prefixes are [`crate::country`]'s tables.
//!
//! A directory without these columns is valid: every entity then has an
//! empty [`Party`]. Values are checked where they are read (`checks`),
//! through the `table` accessors, so a bad country or VAT id names its
//! table, row and column like every other problem.

use super::table::{Col, Problems};
use crate::country::{is_country, vat_prefix};

/// The optional columns of `entities` that hold party data, in spec order.
pub const PARTY_COLUMNS: [&str; 7] = ["legal_name", "street", "city", "postal_code", "country", "vat_id", "email"];

pub use crate::model::Party;

/// The party columns the table has, read per row.
pub(super) struct PartyCols<'a>([Option<Col<'a>>; 7]);

impl<'a> PartyCols<'a> {
    /// The party columns among `cols` (each `None` when the table lacks it).
    pub(super) fn new(cols: [Option<Col<'a>>; 7]) -> Self {
        PartyCols(cols)
    }

    /// The party of data row `r`, every bad value recorded in `p`.
    pub(super) fn read(&self, r: usize, p: &mut Problems) -> Party {
        let text = |i: usize| self.0[i].and_then(|c| c.get(r)).map(str::to_owned);
        let country = self.0[4].and_then(|c| {
            c.parsed(r, false, p, |s| match is_country(s) {
                true => Ok(s.to_owned()),
                false => Err("not an ISO 3166-1 alpha-2 country code (upper case, e.g. DE)".to_owned()),
            })
        });
        let vat_id = self.0[5].and_then(|c| {
            c.parsed(r, false, p, |s| {
                let Some(country) = &country else {
                    return Err("a VAT id needs the entity's country".to_owned());
                };
                let prefix = vat_prefix(country);
                let rest = s.strip_prefix(prefix).unwrap_or_default();
                let shape = (2..=13).contains(&rest.len()) && rest.chars().all(|c| c.is_ascii_alphanumeric());
                match s.starts_with(prefix) && shape {
                    true => Ok(s.to_owned()),
                    false => {
                        Err(format!("a VAT id of country {country} is {prefix} followed by 2 to 13 letters or digits"))
                    }
                }
            })
        });
        let email = self.0[6].and_then(|c| {
            c.parsed(r, false, p, |s| {
                let ok = s.split_once('@').is_some_and(|(user, host)| {
                    !user.is_empty() && host.contains('.') && !host.contains('@') && !s.contains(char::is_whitespace)
                });
                if ok { Ok(s.to_owned()) } else { Err("not an e-mail address".to_owned()) }
            })
        });
        Party { legal_name: text(0), street: text(1), city: text(2), postal_code: text(3), country, vat_id, email }
    }
}

#[cfg(test)]
mod directory_tests {
    use super::super::tests::{ACCOUNTS, CONTRACTS, DEALS, ENTITIES, parse, problems};

    /// `ENTITIES` with the party columns, `extra` appended to each row in order.
    fn with_party(rows: &[&str]) -> String {
        let mut lines = ENTITIES.lines();
        let mut out = format!("{},legal_name,street,city,postal_code,country,vat_id,email\n", lines.next().unwrap());
        for (line, extra) in lines.zip(rows.iter().chain(std::iter::repeat(&",,,,,,"))) {
            out.push_str(&format!("{line},{extra}\n"));
        }
        out
    }

    #[test]
    fn party_columns_are_read_and_optional() {
        let d = parse(ENTITIES, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        assert!(d.entities.iter().all(|e| e.party == Default::default()), "no columns: empty parties");
        let e = with_party(&[
            "Vendor GmbH,Str. 1,Berlin,10115,DE,DE123456789,billing@vendor.example",
            ",,,,GR,EL123456789,",
        ]);
        let d = parse(&e, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        let p = &d.entities[0].party;
        assert_eq!(p.legal_name.as_deref(), Some("Vendor GmbH"));
        assert_eq!(p.country.as_deref(), Some("DE"));
        assert_eq!(p.vat_id.as_deref(), Some("DE123456789"));
        assert_eq!(p.email.as_deref(), Some("billing@vendor.example"));
        assert_eq!(d.entities[1].party.vat_id.as_deref(), Some("EL123456789"), "Greece uses EL");
        // Only some of the columns: still valid.
        let e = "entity_id,name,kind,partner_type,parent_id,country\n\
            ic,Vendor,vendor,,,DE\nd,Dist,distributor,,ic,FR\np,Partner,channel_partner,var,d,\nc,Customer,customer,,p,CH\n";
        let d = parse(e, ACCOUNTS, CONTRACTS, DEALS).unwrap();
        assert_eq!(d.entities[3].party.country.as_deref(), Some("CH"));
        assert_eq!(d.entities[3].party.vat_id, None);
    }

    #[test]
    fn bad_country_vat_id_and_email_name_table_row_and_column() {
        let e = with_party(&[",,,,de,,", ",,,,FR,DE123456789,", ",,,,GR,GR123456789,x@", ",,,,,DE123,"]);
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(
            ps,
            [
                "entities.csv row 1, column country = \"de\": not an ISO 3166-1 alpha-2 country code (upper case, e.g. DE)",
                "entities.csv row 2, column vat_id = \"DE123456789\": a VAT id of country FR is FR followed by 2 to 13 letters or digits",
                "entities.csv row 3, column vat_id = \"GR123456789\": a VAT id of country GR is EL followed by 2 to 13 letters or digits",
                "entities.csv row 3, column email = \"x@\": not an e-mail address",
                "entities.csv row 4, column vat_id = \"DE123\": a VAT id needs the entity's country",
            ]
        );
    }
}
