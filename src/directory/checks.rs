//! The partner directory's rules: each table's rows read into the domain
//! types through the `table` accessors, then the checks that span rows and
//! tables (unknown references, one vendor, no parent cycles, a seller is the
//! buyer's parent, no overlapping contracts of a buyer), and the indexed
//! [`Directory`] built once nothing is wrong.
//!
//! Checks work on bytes already fetched: they never touch storage, and they
//! report problems through `Problems` rather than stopping at the first.

use polars::prelude::{PlHashMap as HashMap, PlHashSet as HashSet};

use bytes::Bytes;
use rust_decimal::Decimal;

use super::party::{PARTY_COLUMNS, PartyCols};
use super::table::{Problems, Table, fmt_day};
use super::{
    Contract, Deal, DealStatus, Directory, DirectoryError, Entity, EntityIdx, EntityKind, Model, Problem,
    StorageAccount,
};
use crate::money::Currency;

/// Parses and validates the four tables (file name and content each).
pub fn parse_tables(
    entities: (String, Bytes),
    accounts: (String, Bytes),
    contracts: (String, Bytes),
    deals: (String, Bytes),
) -> Result<Directory, DirectoryError> {
    let mut p = Problems::default();
    let entities = Table::read(entities)?;
    let accounts = Table::read(accounts)?;
    let contracts = Table::read(contracts)?;
    let deals = Table::read(deals)?;
    for (t, cols) in [
        (&entities, &["entity_id", "name", "kind", "partner_type", "parent_id"][..]),
        (&accounts, &["storage_account_id", "company_name", "owner_id", "created_on", "deleted_on"][..]),
        (
            &contracts,
            &[
                "contract_id",
                "seller_id",
                "buyer_id",
                "model",
                "reserved_tb",
                "unit_price",
                "overage_price",
                "minimum_tb",
                "currency",
                "start_date",
                "end_date",
            ][..],
        ),
        (
            &deals,
            &["deal_id", "partner_id", "customer_id", "volume_tb", "special_price", "status", "valid_from", "valid_to"]
                [..],
        ),
    ] {
        t.check_columns(cols, &mut p);
    }
    // The optional party columns (spec 5.1) are checked where present.
    let present: Vec<_> = PARTY_COLUMNS.into_iter().filter(|c| entities.has(c)).collect();
    entities.check_columns(&present, &mut p);
    if !p.0.is_empty() {
        return Err(DirectoryError::Invalid(p.0));
    }

    let (ents, parent_ids) = read_entities(&entities, &mut p);
    let mut entity_index = HashMap::default();
    for (i, e) in ents.iter().enumerate() {
        entity_index.entry(e.id.clone()).or_insert(i);
    }
    let mut ents = ents;
    resolve_parents(&entities, &mut ents, &parent_ids, &entity_index, &mut p);
    let vendor = find_vendor(&entities, &ents, &mut p);
    if let Some(v) = vendor {
        check_cycles(&entities, &ents, v, &mut p);
    }
    let accts = read_accounts(&accounts, &entity_index, &mut p);
    let ks = read_contracts(&contracts, &ents, &entity_index, &mut p);
    let ds = read_deals(&deals, &ents, &entity_index, &mut p);

    let contracts_by_buyer = contracts_by_buyer(&contracts, &ks, ents.len(), &mut p);
    if !p.0.is_empty() {
        return Err(DirectoryError::Invalid(p.0));
    }
    let vendor = vendor.expect("no problems means one vendor");
    let mut children = vec![Vec::new(); ents.len()];
    let mut id_rank = vec![0; ents.len()];
    let mut by_id: Vec<EntityIdx> = (0..ents.len()).collect();
    by_id.sort_by(|&a, &b| ents[a].id.cmp(&ents[b].id));
    for (rank, e) in by_id.into_iter().enumerate() {
        id_rank[e] = rank as u32;
        if let Some(parent) = ents[e].parent {
            children[parent].push(e);
        }
    }
    Ok(Directory {
        entities: ents,
        accounts: accts,
        contracts: ks,
        deals: ds,
        vendor,
        children,
        contracts_by_buyer,
        id_rank,
        entity_index,
        hash: String::new(),
        sources: Vec::new(),
    })
}

/// Each buyer's contracts (indexes into `ks`) by start date, then id; two
/// that overlap are a problem on the later one's `start_date`.
fn contracts_by_buyer(t: &Table, ks: &[Contract], entities: usize, p: &mut Problems) -> Vec<Vec<usize>> {
    let mut contracts_by_buyer = vec![Vec::new(); entities];
    for (i, k) in ks.iter().enumerate() {
        contracts_by_buyer[k.buyer].push(i);
    }
    for list in &mut contracts_by_buyer {
        list.sort_by(|&a, &b| (ks[a].start, &ks[a].id).cmp(&(ks[b].start, &ks[b].id)));
        for w in list.windows(2) {
            let (a, b) = (&ks[w[0]], &ks[w[1]]);
            if a.end.is_none_or(|e| e > b.start) {
                p.row(
                    t,
                    t.col("contract_id").row_of(&b.id),
                    "start_date",
                    Some(fmt_day(b.start)),
                    format!("contract {} overlaps contract {} of the same buyer", b.id, a.id),
                );
            }
        }
    }
    contracts_by_buyer
}

fn read_entities(t: &Table, p: &mut Problems) -> (Vec<Entity>, Vec<Option<String>>) {
    let [id_col, name_col, kind_col, partner_type_col, parent_col] =
        t.cols(["entity_id", "name", "kind", "partner_type", "parent_id"]);
    let party_cols = PartyCols::new(PARTY_COLUMNS.map(|c| t.opt_col(c)));
    let mut seen = HashSet::default();
    let mut out = Vec::with_capacity(t.height());
    let mut parents = Vec::with_capacity(t.height());
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let name = name_col.required(r, p);
        let kind = kind_col.parsed(r, true, p, |s| match s {
            "vendor" => Ok(EntityKind::Vendor),
            "distributor" => Ok(EntityKind::Distributor),
            "channel_partner" => Ok(EntityKind::ChannelPartner),
            "customer" => Ok(EntityKind::Customer),
            _ => Err("kind must be vendor, distributor, channel_partner or customer".to_owned()),
        });
        let partner_type = partner_type_col.parsed(r, false, p, |s| match s {
            "msp" | "var" => Ok(s.to_owned()),
            _ => Err("partner_type must be msp, var or empty".to_owned()),
        });
        if partner_type.is_some() && kind.is_some_and(|k| k != EntityKind::ChannelPartner) {
            p.row(
                t,
                Some(r),
                "partner_type",
                partner_type.clone(),
                "only channel partners have a partner_type".to_owned(),
            );
        }
        let party = party_cols.read(r, p);
        if let Some(id) = id {
            // An entity with a bad kind or name is kept (the problem is
            // reported) so that references to it do not cascade into more.
            let kind = kind.unwrap_or(EntityKind::Customer);
            let name = name.unwrap_or_default().to_owned();
            out.push(Entity { id: id.to_owned(), name, kind, partner_type, parent: None, party });
            parents.push(parent_col.get(r).map(str::to_owned));
        } else {
            // Keep row numbers aligned with entity positions for later checks.
            out.push(Entity {
                id: String::new(),
                name: String::new(),
                kind: EntityKind::Customer,
                partner_type: None,
                parent: None,
                party: Default::default(),
            });
            parents.push(None);
        }
    }
    (out, parents)
}

fn resolve_parents(
    t: &Table,
    ents: &mut [Entity],
    parent_ids: &[Option<String>],
    index: &HashMap<String, EntityIdx>,
    p: &mut Problems,
) {
    for (r, parent) in parent_ids.iter().enumerate() {
        if ents[r].id.is_empty() {
            continue;
        }
        match (ents[r].kind, parent) {
            (EntityKind::Vendor, Some(pid)) => {
                p.row(t, Some(r), "parent_id", Some(pid.clone()), "the vendor has no parent".to_owned())
            }
            (EntityKind::Vendor, None) => {}
            (_, None) => p.row(t, Some(r), "parent_id", None, "only the vendor may have no parent".to_owned()),
            (_, Some(pid)) => match index.get(pid) {
                Some(&i) => ents[r].parent = Some(i),
                None => p.row(t, Some(r), "parent_id", Some(pid.clone()), "unknown parent".to_owned()),
            },
        }
    }
}

fn find_vendor(t: &Table, ents: &[Entity], p: &mut Problems) -> Option<EntityIdx> {
    let vendors: Vec<_> =
        (0..ents.len()).filter(|&i| !ents[i].id.is_empty() && ents[i].kind == EntityKind::Vendor).collect();
    match vendors.as_slice() {
        [v] => Some(*v),
        [] => {
            p.0.push(Problem {
                table: t.name.clone(),
                row: None,
                column: Some("kind"),
                value: None,
                message: "no entity of kind vendor: exactly one is required".to_owned(),
            });
            None
        }
        [_, rest @ ..] => {
            for &r in rest {
                p.row(t, Some(r), "kind", Some("vendor".to_owned()), "more than one vendor".to_owned());
            }
            None
        }
    }
}

fn check_cycles(t: &Table, ents: &[Entity], vendor: EntityIdx, p: &mut Problems) {
    // Walk up from every entity; memoise those known to reach the vendor.
    // An entity whose walk comes back to itself is on a cycle and is reported.
    // `walked[e]` is one more than the start of the last walk that passed e.
    let mut reaches = vec![false; ents.len()];
    reaches[vendor] = true;
    let mut walked = vec![0; ents.len()];
    let mut path = Vec::new();
    for start in 0..ents.len() {
        if ents[start].id.is_empty() {
            continue;
        }
        path.clear();
        let mut cur = start;
        loop {
            if reaches[cur] {
                path.iter().for_each(|&c| reaches[c] = true);
                break;
            }
            if std::mem::replace(&mut walked[cur], start + 1) == start + 1 {
                if cur == start {
                    p.row(
                        t,
                        Some(start),
                        "parent_id",
                        ents[start].parent.map(|x| ents[x].id.clone()),
                        "parent chain forms a cycle and never reaches the vendor".to_owned(),
                    );
                }
                break;
            }
            path.push(cur);
            match ents[cur].parent {
                Some(next) => cur = next,
                None => break, // missing parent: reported already
            }
        }
    }
}

fn read_accounts(t: &Table, index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Vec<StorageAccount> {
    let [id_col, company_col, owner_col, created_col, deleted_col] =
        t.cols(["storage_account_id", "company_name", "owner_id", "created_on", "deleted_on"]);
    let mut seen = HashSet::with_capacity_and_hasher(t.height(), Default::default());
    let mut out = Vec::with_capacity(t.height());
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let company_name = company_col.get(r).unwrap_or_default();
        let owner = owner_col.entity_ref(r, index, p);
        let created_on = created_col.date(r, false, p);
        let deleted_on = deleted_col.date(r, false, p);
        if let (Some(c), Some(d)) = (created_on, deleted_on)
            && d <= c
        {
            p.row(t, Some(r), "deleted_on", Some(fmt_day(d)), "deleted_on must be after created_on".to_owned());
        }
        if let (Some(id), Some(owner)) = (id, owner) {
            out.push(StorageAccount {
                id: id.to_owned(),
                company_name: company_name.to_owned(),
                owner,
                created_on,
                deleted_on,
            });
        }
    }
    out
}

fn read_contracts(t: &Table, ents: &[Entity], index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Vec<Contract> {
    let [id_col, seller_col, buyer_col, model_col] = t.cols(["contract_id", "seller_id", "buyer_id", "model"]);
    let [reserved_col, unit_price_col, overage_col, minimum_col] =
        t.cols(["reserved_tb", "unit_price", "overage_price", "minimum_tb"]);
    let [currency_col, start_col, end_col] = t.cols(["currency", "start_date", "end_date"]);
    let mut seen = HashSet::with_capacity_and_hasher(t.height(), Default::default());
    let mut out = Vec::with_capacity(t.height());
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let seller = seller_col.entity_ref(r, index, p);
        let buyer = buyer_col.entity_ref(r, index, p);
        if let (Some(s), Some(b)) = (seller, buyer)
            && ents[b].parent != Some(s)
        {
            p.row(
                t,
                Some(r),
                "seller_id",
                Some(ents[s].id.clone()),
                format!("seller is not the parent of buyer {}", ents[b].id),
            );
        }
        let reserved = model_col.parsed(r, true, p, |s| match s {
            "reserved" => Ok(true),
            "pay_per_use" => Ok(false),
            _ => Err("model must be pay_per_use or reserved".to_owned()),
        });
        let reserved_tb = reserved_col.decimal(r, reserved == Some(true), p);
        let unit_price = unit_price_col.decimal(r, true, p);
        let overage_price = overage_col.decimal(r, false, p);
        let minimum_tb = minimum_col.decimal(r, false, p);
        if reserved == Some(false) {
            for (col, v) in [("reserved_tb", &reserved_tb), ("overage_price", &overage_price)] {
                if let Some(v) = v {
                    p.row(t, Some(r), col, Some(v.to_string()), "applies to reserved contracts only".to_owned());
                }
            }
        }
        if reserved == Some(true)
            && let Some(v) = minimum_tb
        {
            p.row(t, Some(r), "minimum_tb", Some(v.to_string()), "applies to pay_per_use contracts only".to_owned());
        }
        let currency = currency_col.parsed(r, true, p, |s| {
            Currency::parse(s).ok_or_else(|| "not an ISO 4217 currency code (three upper-case letters)".to_owned())
        });
        let start = start_col.date(r, true, p);
        let end = end_col.date(r, false, p);
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            p.row(t, Some(r), "end_date", Some(fmt_day(e)), "end_date must be after start_date".to_owned());
        }
        let (Some(id), Some(seller), Some(buyer), Some(reserved), Some(unit_price), Some(currency), Some(start)) =
            (id, seller, buyer, reserved, unit_price, currency, start)
        else {
            continue;
        };
        let model = if reserved {
            let Some(reserved_tb) = reserved_tb else {
                continue;
            };
            Model::Reserved { reserved_tb, overage_price: overage_price.unwrap_or(unit_price) }
        } else {
            Model::PayPerUse { minimum_tb: minimum_tb.unwrap_or(Decimal::ONE) }
        };
        out.push(Contract { id: id.to_owned(), seller, buyer, model, unit_price, currency, start, end });
    }
    out
}

fn read_deals(t: &Table, ents: &[Entity], index: &HashMap<String, EntityIdx>, p: &mut Problems) -> Vec<Deal> {
    let [id_col, partner_col, customer_col, volume_col] = t.cols(["deal_id", "partner_id", "customer_id", "volume_tb"]);
    let [special_col, status_col, from_col, to_col] = t.cols(["special_price", "status", "valid_from", "valid_to"]);
    let mut seen = HashSet::default();
    let mut out = Vec::new();
    for r in 0..t.height() {
        let id = id_col.unique_id(r, &mut seen, p);
        let partner = partner_col.entity_ref(r, index, p);
        if let Some(pi) = partner
            && ents[pi].kind != EntityKind::ChannelPartner
        {
            p.row(
                t,
                Some(r),
                "partner_id",
                Some(ents[pi].id.clone()),
                "deals are registered by channel partners".to_owned(),
            );
        }
        let customer = customer_col.entity_ref(r, index, p);
        let volume_tb = volume_col.decimal(r, true, p);
        let special_price = special_col.decimal(r, false, p);
        let status = status_col.parsed(r, true, p, |s| match s {
            "registered" => Ok(DealStatus::Registered),
            "approved" => Ok(DealStatus::Approved),
            "rejected" => Ok(DealStatus::Rejected),
            _ => Err("status must be registered, approved or rejected".to_owned()),
        });
        let valid_from = from_col.date(r, true, p);
        let valid_to = to_col.date(r, false, p);
        if let (Some(f), Some(to)) = (valid_from, valid_to)
            && to <= f
        {
            p.row(t, Some(r), "valid_to", Some(fmt_day(to)), "valid_to must be after valid_from".to_owned());
        }
        if let (Some(id), Some(partner), Some(customer), Some(volume_tb), Some(status), Some(valid_from)) =
            (id, partner, customer, volume_tb, status, valid_from)
        {
            let id = id.to_owned();
            out.push(Deal { id, partner, customer, volume_tb, special_price, status, valid_from, valid_to });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ACCOUNTS, CONTRACTS, DEALS, ENTITIES, problems};

    #[test]
    fn unknown_parent_and_owner_are_named() {
        let e = ENTITIES.replace("c,Customer,customer,,p", "c,Customer,customer,,nobody");
        let a = ACCOUNTS.replace(",c,", ",ghost,");
        let ps = problems(&e, &a, CONTRACTS, DEALS);
        assert!(ps.contains(&"entities.csv row 4, column parent_id = \"nobody\": unknown parent".to_owned()), "{ps:?}");
        assert!(
            ps.contains(&"storage_accounts.csv row 1, column owner_id = \"ghost\": unknown entity".to_owned()),
            "{ps:?}"
        );
    }

    #[test]
    fn cycles_are_reported() {
        let e = format!("{ENTITIES}x,X,channel_partner,msp,y\ny,Y,channel_partner,msp,x\n");
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(ps.iter().filter(|p| p.contains("cycle")).count(), 2, "{ps:?}");
        assert!(ps[0].starts_with("entities.csv row 5, column parent_id = \"y\""), "{ps:?}");
    }

    #[test]
    fn more_than_one_vendor() {
        let e = format!("{ENTITIES}ic2,Other,vendor,,\n");
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(ps, ["entities.csv row 5, column kind = \"vendor\": more than one vendor"]);
    }

    #[test]
    fn seller_must_be_parent_of_buyer() {
        let k = CONTRACTS.replace("K3,p,c", "K3,d,c");
        let ps = problems(ENTITIES, ACCOUNTS, &k, DEALS);
        assert_eq!(ps, ["contracts.csv row 3, column seller_id = \"d\": seller is not the parent of buyer c"]);
    }

    #[test]
    fn overlapping_contracts_of_one_buyer() {
        let k = format!("{CONTRACTS}K4,p,c,pay_per_use,,8.00,,,EUR,2026-06-01,2026-07-01\n");
        let ps = problems(ENTITIES, ACCOUNTS, &k, DEALS);
        assert_eq!(
            ps,
            [
                "contracts.csv row 4, column start_date = \"2026-06-01\": contract K4 overlaps contract K3 of the same buyer"
            ]
        );
    }

    #[test]
    fn reserved_needs_reserved_tb() {
        let k = CONTRACTS.replace("reserved,50,", "reserved,,");
        let ps = problems(ENTITIES, ACCOUNTS, &k, DEALS);
        assert_eq!(ps, ["contracts.csv row 1, column reserved_tb: required value is empty"]);
    }
}
