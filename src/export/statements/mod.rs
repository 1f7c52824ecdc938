//! Statements (issue 17): one self-contained HTML page per invoice pair
//! (seller, buyer), `statements/<seller>/<buyer>.html`, and an index page
//! per revision, `statements/index.html`, published with the revision's
//! other files.
//!
//! This module gathers what a statement shows from the revision's own
//! tables (so that a statement can never disagree with `invoices`): the
//! lines and totals of each invoice, the storage accounts of each customer
//! (`account_usage`), the findings that concern the buyer, each customer's
//! daily usage (metering's [`DailyUsage`]) and, in a reprocessed final
//! month, the corrections the pipeline hands over as the `corrections`
//! frame (export must not read revisions itself). `html` renders a page,
//! `chart` draws a daily usage chart; nothing here rates, rounds amounts or
//! decides what is billed.
//!
//! File names: every id is one path segment, percent-encoded byte by byte
//! (UTF-8) except `A-Z a-z 0-9 _ -`, with upper-case hex ([`encode_segment`],
//! reversed by [`decode_segment`]): `dp 1/ä.` is `dp%201%2F%C3%A4%2E`. No
//! segment can be `.`/`..`, hold a slash or differ from another id's only
//! by case of a letter it does not have. A link to such a file encodes its
//! `%` once more (`%2520`), since a browser decodes a link before it looks
//! for the file.

mod chart;
mod html;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polars::prelude::*;
use rust_decimal::Decimal;

use super::{Encoded, ExportError, Tables};
use crate::directory::{Directory, EntityIdx, EntityKind};
use crate::formats;
use crate::manifest::MonthStatus;
use crate::meter::DailyUsage;
use crate::model::{BillingMonth, Interner, Unit};

/// The folder of the statements within a revision.
pub const FOLDER: &str = "statements";

/// What the statements of a revision are made of.
#[derive(Debug, Clone, Copy)]
pub struct StatementInputs<'a> {
    /// The month.
    pub month: BillingMonth,
    /// The revision being published.
    pub revision: u32,
    /// Its status.
    pub status: MonthStatus,
    /// Capacity unit of the lines.
    pub unit: Unit,
    /// The partner directory (names, kinds, the tree, account owners).
    pub directory: &'a Directory,
    /// The revision's tables.
    pub tables: &'a Tables,
    /// Each account's daily values, by account id.
    pub daily_usage: &'a DailyUsage,
    /// Names of the account ids of `daily_usage`.
    pub accounts: &'a Interner,
    /// The revision's `corrections` frame, when it corrects an earlier final revision.
    pub corrections: Option<&'a DataFrame>,
}

/// The key of a statement file within the revision: `statements/<seller>/<buyer>.html`.
pub fn statement_file(seller_id: &str, buyer_id: &str) -> String {
    format!("{FOLDER}/{}/{}.html", encode_segment(seller_id), encode_segment(buyer_id))
}

/// An id as one path segment: every byte but `A-Z a-z 0-9 _ -` as `%XX`.
pub fn encode_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The id a segment of [`encode_segment`] stands for (`None` if it is not one).
pub fn decode_segment(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A party of an invoice.
#[derive(Debug, Clone)]
struct Party {
    id: String,
    name: String,
    kind: &'static str,
}

/// One invoice line as the statement shows it.
#[derive(Debug, Clone)]
struct Line {
    customer_id: String,
    customer_name: String,
    contract_id: String,
    charge: String,
    quantity: Decimal,
    unit: String,
    unit_price: Decimal,
    amount: Decimal,
    days: u32,
    deal_id: Option<String>,
}

/// One correction line of the invoice.
#[derive(Debug, Clone)]
struct Correction {
    customer_id: String,
    contract_id: String,
    charge: String,
    quantity_before: Decimal,
    quantity_after: Decimal,
    amount_before: Decimal,
    amount_after: Decimal,
    amount: Decimal,
}

/// One invoice (one currency) of a statement.
#[derive(Debug, Clone)]
struct Invoice {
    currency: String,
    /// The e-invoice number of a final revision's document, if it has one.
    number: Option<String>,
    /// The `invoices` table's total (zero for an invoice only corrections name).
    total: Decimal,
    lines: Vec<Line>,
    corrections: Vec<Correction>,
}

/// A storage account row of `account_usage`.
#[derive(Debug, Clone)]
struct Account {
    id: String,
    company: String,
    byte_days: Decimal,
    tb_months: Decimal,
    observed_days: u32,
    filled_days: u32,
}

/// A customer of a statement: its lines' subtotal, its accounts and its daily usage.
#[derive(Debug, Clone)]
struct Customer<'a> {
    party: Party,
    /// Whether its accounts are those beneath it (it owns none itself).
    beneath: bool,
    accounts: Vec<&'a Account>,
    /// Sum of its accounts' daily values per day of the month (`None`: no account day).
    daily: Vec<Option<i128>>,
}

/// A finding row.
#[derive(Debug, Clone)]
struct FindingRow {
    kind: String,
    subject_id: String,
    detail: String,
    byte_days: Option<Decimal>,
    tb_months: Option<Decimal>,
}

/// Everything one statement page shows.
#[derive(Debug, Clone)]
struct Statement<'a> {
    seller: Party,
    buyer: Party,
    reseller: bool,
    invoices: Vec<Invoice>,
    customers: Vec<Customer<'a>>,
    findings: Vec<FindingRow>,
}

/// The page's frame: month, revision, status, unit, corrected revision.
#[derive(Debug, Clone, Copy)]
struct Context {
    month: BillingMonth,
    revision: u32,
    status: MonthStatus,
    unit: Unit,
    corrects: Option<u32>,
}

/// The statements of a revision and their index, as files of the revision.
///
/// The tables are read here, so that a failure stops the run before
/// anything is written; each page is rendered only when the returned
/// iterator reaches it (the index first, then the pages in seller and buyer
/// order), so that publishing holds a few pages in memory, not all of them.
pub fn statements<'a>(inputs: StatementInputs<'a>) -> Result<impl Iterator<Item = Encoded> + 'a, ExportError> {
    let prepared = Prepared::new(&inputs).map_err(|source| ExportError::Encode { table: "statements", source })?;
    Ok(prepared.files(inputs))
}

/// What the pages are rendered from, read from the tables once.
struct Prepared<'a> {
    invoices: ByPair,
    /// The directory's storage accounts: their `account_usage` row and their
    /// daily values, looked up once (a customer's accounts are shown on its
    /// own statement and again on every reseller's above it).
    accounts: Vec<DirAccount>,
    findings: HashMap<&'a str, Vec<FindingRow>>,
    /// Rows of the directory's accounts, per owning entity, in id order.
    owned: Vec<Vec<usize>>,
    ctx: Context,
}

/// A storage account of the directory, as the statements find it.
#[derive(Debug, Clone)]
struct DirAccount {
    /// Its `account_usage` row, if it has one.
    usage: Option<Account>,
    /// Its id in `daily_usage`, if metering saw it.
    daily: Option<u32>,
}

impl<'a> Prepared<'a> {
    fn new(inputs: &StatementInputs<'a>) -> PolarsResult<Self> {
        let dir = inputs.directory;
        let mut invoices = read_invoices(inputs)?;
        let mut corrects = None;
        if let Some(c) = inputs.corrections {
            // A reprocess that changed no line has an empty corrections frame.
            corrects = if c.height() > 0 { c.column("corrects_revision")?.u32()?.get(0) } else { None };
            for (key, corrections) in read_corrections(c)? {
                let (seller, buyer, currency) = key;
                let invoice =
                    invoices.entry((seller, buyer)).or_default().entry(currency.clone()).or_insert_with(|| Invoice {
                        currency,
                        number: None,
                        total: Decimal::ZERO,
                        lines: Vec::new(),
                        corrections: Vec::new(),
                    });
                invoice.corrections = corrections;
            }
        }
        let tables: &'a Tables = inputs.tables;
        let mut usage = read_accounts(&tables.account_usage)?;
        let accounts = dir
            .accounts
            .iter()
            .map(|a| DirAccount { usage: usage.remove(a.id.as_str()), daily: inputs.accounts.get(&a.id) })
            .collect();
        let findings = read_findings(&tables.findings)?;
        let mut owned: Vec<Vec<usize>> = vec![Vec::new(); dir.entities.len()];
        for (i, a) in dir.accounts.iter().enumerate() {
            owned[a.owner].push(i);
        }
        for rows in &mut owned {
            rows.sort_unstable_by(|&a, &b| dir.accounts[a].id.cmp(&dir.accounts[b].id));
        }
        let (month, revision, status, unit) = (inputs.month, inputs.revision, inputs.status, inputs.unit);
        Ok(Prepared { invoices, accounts, findings, owned, ctx: Context { month, revision, status, unit, corrects } })
    }

    /// The index, then each statement, rendered when it is its turn.
    fn files(self, inputs: StatementInputs<'a>) -> impl Iterator<Item = Encoded> + 'a {
        let dir = inputs.directory;
        let index: Vec<html::IndexEntry> = self
            .invoices
            .iter()
            .map(|((seller, buyer), by_currency)| html::IndexEntry {
                seller: party(dir, seller),
                buyer: party(dir, buyer),
                href: format!("{}/{}.html", href_segment(seller), href_segment(buyer)),
                totals: by_currency.values().map(|i| (i.currency.clone(), i.total)).collect(),
                corrected: by_currency.values().any(|i| !i.corrections.is_empty()),
            })
            .collect();
        let index_page = html::index_page(&self.ctx, &index);
        let index = Encoded::new(format!("{FOLDER}/index.html"), index.len(), index_page.into_bytes());
        let Prepared { invoices, accounts, findings, owned, ctx } = self;
        let page = move |((seller_id, buyer_id), by_currency): ((String, String), BTreeMap<String, Invoice>)| {
            let invoices: Vec<Invoice> = by_currency.into_values().collect();
            let mut seen = std::collections::HashSet::new();
            let customer_ids: Vec<&str> = invoices
                .iter()
                .flat_map(|i| &i.lines)
                .map(|l| l.customer_id.as_str())
                .filter(|c| seen.insert(*c))
                .collect();
            let customers = customer_ids
                .iter()
                .map(|c| customer(&inputs, &owned, &accounts, dir.entity(c), party(dir, c)))
                .collect();
            let statement = Statement {
                seller: party(dir, &seller_id),
                buyer: party(dir, &buyer_id),
                reseller: dir.entity(&buyer_id).is_some_and(|b| dir.entities[b].kind != EntityKind::Customer),
                findings: concerning(dir, &owned, &findings, dir.entity(&buyer_id)),
                customers,
                invoices,
            };
            let page = html::statement_page(&ctx, &statement);
            Encoded::new(statement_file(&seller_id, &buyer_id), 1, page.into_bytes())
        };
        std::iter::once(index).chain(invoices.into_iter().map(page))
    }
}

/// A segment of [`encode_segment`] as it goes into a link: its `%` encoded once more.
fn href_segment(id: &str) -> String {
    encode_segment(id).replace('%', "%25")
}

fn party(dir: &Directory, id: &str) -> Party {
    match dir.entity(id) {
        Some(e) => {
            let e = &dir.entities[e];
            let kind = match e.kind {
                EntityKind::Vendor => "vendor",
                EntityKind::Distributor => "distributor",
                EntityKind::ChannelPartner => "channel partner",
                EntityKind::Customer => "customer",
            };
            Party { id: e.id.clone(), name: e.name.clone(), kind }
        }
        None => Party { id: id.to_owned(), name: id.to_owned(), kind: "" },
    }
}

/// A customer's storage accounts (those it owns, or when it owns none,
/// those beneath it: a reseller billed for its own reservation) and their
/// daily usage.
fn customer<'a>(
    inputs: &StatementInputs<'_>,
    owned: &[Vec<usize>],
    accounts: &'a [DirAccount],
    entity: Option<EntityIdx>,
    party: Party,
) -> Customer<'a> {
    let dir = inputs.directory;
    let (mut rows, mut beneath): (Vec<usize>, bool) = (Vec::new(), false);
    if let Some(e) = entity {
        rows.clone_from(&owned[e]);
        if rows.is_empty() {
            beneath = true;
            rows = dir.subtree(e).into_iter().flat_map(|s| &owned[s]).copied().collect();
            rows.sort_unstable_by(|&a, &b| dir.accounts[a].id.cmp(&dir.accounts[b].id));
        }
    }
    // Day by day: the daily values are stored day-major, and a customer's
    // accounts mostly have nearby ids, so this reads a few cache lines a
    // day instead of one per account and day.
    let ids: Vec<u32> = rows.iter().filter_map(|&a| accounts[a].daily).collect();
    let daily = (0..inputs.daily_usage.days())
        .map(|d| {
            ids.iter()
                .filter_map(|&id| inputs.daily_usage.get(id, d))
                .fold(None, |sum: Option<i128>, v| Some(sum.unwrap_or(0).saturating_add(v)))
        })
        .collect();
    let accounts = rows.iter().filter_map(|&a| accounts[a].usage.as_ref()).collect();
    Customer { party, beneath, accounts, daily }
}

/// The findings whose subject is the buyer, an entity beneath it, or a
/// storage account one of them owns; in the findings' order.
fn concerning(
    dir: &Directory,
    owned: &[Vec<usize>],
    findings: &HashMap<&str, Vec<FindingRow>>,
    buyer: Option<EntityIdx>,
) -> Vec<FindingRow> {
    let Some(buyer) = buyer else { return Vec::new() };
    let mut subjects = BTreeSet::new();
    for e in dir.subtree(buyer) {
        subjects.insert(dir.entities[e].id.as_str());
        subjects.extend(owned[e].iter().map(|&a| dir.accounts[a].id.as_str()));
    }
    let mut out: Vec<FindingRow> = subjects.into_iter().filter_map(|s| findings.get(s)).flatten().cloned().collect();
    out.sort_by(|a, b| (&a.kind, &a.subject_id, &a.detail).cmp(&(&b.kind, &b.subject_id, &b.detail)));
    out
}

type ByPair = BTreeMap<(String, String), BTreeMap<String, Invoice>>;

fn text(df: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(df.column(name)?.str()?.iter().map(|v| v.map(str::to_owned)).collect())
}

fn texts(df: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    Ok(text(df, name)?.into_iter().map(Option::unwrap_or_default).collect())
}

/// The invoices of the `invoices` table with their lines, by (seller, buyer) and currency.
fn read_invoices(inputs: &StatementInputs<'_>) -> PolarsResult<ByPair> {
    let inv = &inputs.tables.invoices;
    let (sellers, buyers, currencies) = (texts(inv, "seller_id")?, texts(inv, "buyer_id")?, texts(inv, "currency")?);
    let totals = formats::decimals(inv, "total")?;
    let numbers = text(inv, "invoice_number")?;
    let mut out: ByPair = BTreeMap::new();
    for i in 0..inv.height() {
        let invoice = Invoice {
            currency: currencies[i].clone(),
            number: numbers[i].clone().filter(|n| !n.is_empty()),
            total: totals[i],
            lines: Vec::new(),
            corrections: Vec::new(),
        };
        out.entry((sellers[i].clone(), buyers[i].clone())).or_default().insert(currencies[i].clone(), invoice);
    }
    let l = &inputs.tables.invoice_lines;
    let (sellers, buyers, currencies) = (texts(l, "seller_id")?, texts(l, "buyer_id")?, texts(l, "currency")?);
    let (customers, names, contracts) =
        (texts(l, "customer_id")?, texts(l, "customer_name")?, texts(l, "contract_id")?);
    let (charges, units, deals) = (texts(l, "charge")?, texts(l, "unit")?, text(l, "deal_id")?);
    let (quantities, prices, amounts) =
        (formats::decimals(l, "quantity")?, formats::decimals(l, "unit_price")?, formats::decimals(l, "amount")?);
    let days: Vec<u32> = l.column("days")?.u32()?.iter().map(Option::unwrap_or_default).collect();
    for i in 0..l.height() {
        let invoice = out
            .get_mut(&(sellers[i].clone(), buyers[i].clone()))
            .and_then(|c| c.get_mut(&currencies[i]))
            .ok_or_else(|| PolarsError::ComputeError("an invoice line without its invoice".into()))?;
        invoice.lines.push(Line {
            customer_id: customers[i].clone(),
            customer_name: names[i].clone(),
            contract_id: contracts[i].clone(),
            charge: charges[i].clone(),
            quantity: quantities[i],
            unit: units[i].clone(),
            unit_price: prices[i],
            amount: amounts[i],
            days: days[i],
            deal_id: deals[i].clone(),
        });
    }
    Ok(out)
}

type CorrectionsByInvoice = BTreeMap<(String, String, String), Vec<Correction>>;

fn read_corrections(c: &DataFrame) -> PolarsResult<CorrectionsByInvoice> {
    let (sellers, buyers, currencies) = (texts(c, "seller_id")?, texts(c, "buyer_id")?, texts(c, "currency")?);
    let (customers, contracts, charges) = (texts(c, "customer_id")?, texts(c, "contract_id")?, texts(c, "charge")?);
    let dec = |n| formats::decimals(c, n);
    let (qb, qa, ab, aa, a) =
        (dec("quantity_before")?, dec("quantity_after")?, dec("amount_before")?, dec("amount_after")?, dec("amount")?);
    let mut out: CorrectionsByInvoice = BTreeMap::new();
    for i in 0..c.height() {
        out.entry((sellers[i].clone(), buyers[i].clone(), currencies[i].clone())).or_default().push(Correction {
            customer_id: customers[i].clone(),
            contract_id: contracts[i].clone(),
            charge: charges[i].clone(),
            quantity_before: qb[i],
            quantity_after: qa[i],
            amount_before: ab[i],
            amount_after: aa[i],
            amount: a[i],
        });
    }
    Ok(out)
}

fn read_accounts(au: &DataFrame) -> PolarsResult<HashMap<&str, Account>> {
    let ids = au.column("storage_account_id")?.str()?;
    let companies = text(au, "company_name")?;
    let (byte_days, tb) = (formats::decimals(au, "byte_days")?, formats::decimals(au, "tb_months")?);
    let observed = au.column("observed_days")?.u32()?;
    let filled = au.column("filled_days")?.u32()?;
    let mut out = HashMap::with_capacity(au.height());
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id else { continue };
        out.insert(
            id,
            Account {
                id: id.to_owned(),
                company: companies[i].clone().unwrap_or_default(),
                byte_days: byte_days[i],
                tb_months: tb[i],
                observed_days: observed.get(i).unwrap_or(0),
                filled_days: filled.get(i).unwrap_or(0),
            },
        );
    }
    Ok(out)
}

fn read_findings(f: &DataFrame) -> PolarsResult<HashMap<&str, Vec<FindingRow>>> {
    let subjects = f.column("subject_id")?.str()?;
    let (kinds, details) = (texts(f, "kind")?, texts(f, "detail")?);
    let nulls = |n: &str| -> PolarsResult<Vec<Option<Decimal>>> {
        let c = f.column(n)?;
        let values = formats::decimals(f, n)?;
        Ok(values.into_iter().zip(c.is_not_null().iter()).map(|(v, ok)| ok.unwrap_or(false).then_some(v)).collect())
    };
    let (byte_days, tb) = (nulls("byte_days")?, nulls("tb_months")?);
    let mut out: HashMap<&str, Vec<FindingRow>> = HashMap::new();
    for (i, s) in subjects.iter().enumerate() {
        let s = s.unwrap_or_default();
        out.entry(s).or_default().push(FindingRow {
            kind: kinds[i].clone(),
            subject_id: s.to_owned(),
            detail: details[i].clone(),
            byte_days: byte_days[i],
            tb_months: tb[i],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_safe_and_reversible() {
        for id in ["dp-1", "a b", "x/y", ".", "..", "<&\"'>", "ä€", "a%20b", "under_score"] {
            let s = encode_segment(id);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)), "{s}");
            assert!(s != "." && s != ".." && !s.contains('/'), "{s}");
            assert_eq!(decode_segment(&s).as_deref(), Some(id));
        }
        assert_eq!(encode_segment("dp 1/ä."), "dp%201%2F%C3%A4%2E");
        assert_eq!(statement_file("ic", "a b"), "statements/ic/a%20b.html");
        assert_eq!(href_segment("a b"), "a%2520b");
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%4"), None);
    }
}
