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
//! frame (export must not read revisions itself). `read` reads those
//! tables, `lookup` finds once what pages look up about customers and
//! buyers, this module puts each statement together and renders pages on
//! every core (`render_in_chunks`), `html` renders a page, `chart` draws
//! a daily usage chart; nothing here rates, rounds amounts or decides what
//! is billed.
//!
//! What a statement shows borrows its text from those frames and from the
//! directory, which outlive the pages: ids, names, currencies and the other
//! string values are `&str` into their columns, read once and never copied.
//!
//! File names: every id is one path segment ([`crate::storage::key_segment`]:
//! percent-encoded byte by byte except `A-Z a-z 0-9 _ -`, and a long id
//! shortened with a hash): `dp 1/ä.` is `dp%201%2F%C3%A4%2E`. No segment
//! can be `.`/`..`, hold a slash or differ from another id's only by case
//! of a letter it does not have. A link to such a file encodes its
//! `%` once more (`%2520`), since a browser decodes a link before it looks
//! for the file.

mod chart;
mod html;
mod lookup;
mod read;

use std::collections::HashSet;

use polars::prelude::*;
use rust_decimal::Decimal;

use super::{Encoded, ExportError, Tables};
use crate::directory::{Directory, EntityKind};
use crate::manifest::MonthStatus;
use crate::meter::DailyUsage;
use crate::model::{BillingMonth, Interner, Unit};
use crate::storage::key_segment;
use lookup::Lookup;
use read::{ByPair, by_pair, read_corrections, read_invoices};

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
    format!("{FOLDER}/{}/{}.html", key_segment(seller_id), key_segment(buyer_id))
}

/// A party of an invoice: the directory's entity, or only its id when the
/// directory does not have it.
#[derive(Debug, Clone, Copy)]
struct Party<'a> {
    id: &'a str,
    name: &'a str,
    kind: &'static str,
}

/// One invoice line as the statement shows it (its text borrowed from `invoice_lines`).
#[derive(Debug, Clone)]
struct Line<'a> {
    customer_id: &'a str,
    customer_name: &'a str,
    contract_id: &'a str,
    charge: &'a str,
    quantity: Decimal,
    unit: &'a str,
    unit_price: Decimal,
    amount: Decimal,
    days: u32,
    deal_id: Option<&'a str>,
}

/// One correction line of the invoice (its text borrowed from `corrections`).
#[derive(Debug, Clone)]
struct Correction<'a> {
    customer_id: &'a str,
    contract_id: &'a str,
    charge: &'a str,
    quantity_before: Decimal,
    quantity_after: Decimal,
    amount_before: Decimal,
    amount_after: Decimal,
    amount: Decimal,
}

/// One invoice (one currency) of a statement.
#[derive(Debug, Clone)]
struct Invoice<'a> {
    currency: &'a str,
    /// The e-invoice number of a final revision's document, if it has one.
    number: Option<&'a str>,
    /// The `invoices` table's total (zero for an invoice only corrections name).
    total: Decimal,
    lines: Vec<Line<'a>>,
    corrections: Vec<Correction<'a>>,
}

/// A storage account row of `account_usage` (its text borrowed from the table).
#[derive(Debug, Clone)]
struct Account<'a> {
    id: &'a str,
    company: &'a str,
    byte_days: Decimal,
    tb_months: Decimal,
    observed_days: u32,
    filled_days: u32,
}

/// A customer of a statement: its lines' subtotal, its accounts and its daily usage.
#[derive(Debug, Clone)]
struct Customer<'a> {
    party: Party<'a>,
    /// Whether its accounts are those beneath it (it owns none itself).
    beneath: bool,
    accounts: Vec<&'a Account<'a>>,
    /// Sum of its accounts' daily values per day of the month (`None`: no account day).
    daily: Vec<Option<i128>>,
}

/// A finding row (its text borrowed from `findings`).
#[derive(Debug, Clone, Copy)]
struct FindingRow<'a> {
    kind: &'a str,
    subject_id: &'a str,
    detail: &'a str,
    byte_days: Option<Decimal>,
    tb_months: Option<Decimal>,
}

/// Everything one statement page shows.
#[derive(Debug, Clone)]
struct Statement<'a> {
    seller: Party<'a>,
    buyer: Party<'a>,
    reseller: bool,
    invoices: Vec<Invoice<'a>>,
    customers: Vec<Customer<'a>>,
    findings: Vec<FindingRow<'a>>,
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
/// The tables are read here, so that a failure stops publishing before
/// any statement is written (the pipeline calls this only once the files
/// before the statements are with the writers, see
/// [`super::deferred`]); pages are rendered only when the returned
/// iterator reaches them (the index first, then the pages in seller and
/// buyer order, a chunk at a time on every core: `render_in_chunks`), so
/// that publishing holds a few hundred pages in memory, not all of them.
pub fn statements<'a>(inputs: StatementInputs<'a>) -> Result<impl Iterator<Item = Encoded> + 'a, ExportError> {
    let prepared = Prepared::new(&inputs).map_err(|source| ExportError::Encode { table: "statements", source })?;
    Ok(prepared.files(inputs))
}

/// What the pages are rendered from, read from the tables once; its text
/// borrows theirs.
struct Prepared<'a> {
    invoices: ByPair<'a>,
    lookup: Lookup<'a>,
    ctx: Context,
}

impl<'a> Prepared<'a> {
    fn new(inputs: &StatementInputs<'a>) -> PolarsResult<Self> {
        let mut invoices = read_invoices(inputs)?;
        let mut corrects = None;
        if let Some(c) = inputs.corrections {
            // A reprocess that changed no line has an empty corrections frame.
            corrects = if c.height() > 0 { c.column("corrects_revision")?.u32()?.get(0) } else { None };
            for (key, corrections) in read_corrections(c)? {
                let invoice = invoices.entry(key).or_insert_with(|| Invoice {
                    currency: key.2,
                    number: None,
                    // Written as every total is, with its cents ("0.00").
                    total: Decimal::new(0, crate::money::AMOUNT_SCALE),
                    lines: Vec::new(),
                    corrections: Vec::new(),
                });
                invoice.corrections = corrections;
            }
        }
        let invoices = by_pair(invoices);
        let lookup = Lookup::new(inputs)?;
        let (month, revision, status, unit) = (inputs.month, inputs.revision, inputs.status, inputs.unit);
        Ok(Prepared { invoices, lookup, ctx: Context { month, revision, status, unit, corrects } })
    }

    /// The index, then each statement, rendered when its chunk's turn comes.
    fn files(self, inputs: StatementInputs<'a>) -> impl Iterator<Item = Encoded> + 'a {
        let dir = inputs.directory;
        let index: Vec<html::IndexEntry> = self
            .invoices
            .iter()
            .map(|&((seller, buyer), ref invoices)| html::IndexEntry {
                seller: party(dir, seller),
                buyer: party(dir, buyer),
                href: format!("{}/{}.html", href_segment(seller), href_segment(buyer)),
                totals: invoices.iter().map(|i| (i.currency, i.total)).collect(),
                corrected: invoices.iter().any(|i| !i.corrections.is_empty()),
            })
            .collect();
        let index_page = html::index_page(&self.ctx, &index);
        let index = Encoded::new(format!("{FOLDER}/index.html"), index.len(), index_page.into_bytes());
        let Prepared { invoices, lookup, ctx } = self;
        let page = move |((seller_id, buyer_id), invoices): ((&'a str, &'a str), Vec<Invoice<'a>>)| {
            let mut seen = HashSet::new();
            let customer_ids: Vec<&str> =
                invoices.iter().flat_map(|i| &i.lines).map(|l| l.customer_id).filter(|c| seen.insert(*c)).collect();
            let customers = customer_ids.iter().map(|&c| lookup.customer(c)).collect();
            let statement = Statement {
                seller: party(dir, seller_id),
                buyer: party(dir, buyer_id),
                reseller: dir.entity(buyer_id).is_some_and(|b| dir.entities[b].kind != EntityKind::Customer),
                findings: lookup.concerning(dir.entity(buyer_id)),
                customers,
                invoices,
            };
            let page = html::statement_page(&ctx, &statement);
            Encoded::new(statement_file(seller_id, buyer_id), 1, page.into_bytes())
        };
        std::iter::once(index).chain(render_in_chunks(invoices, page))
    }
}

/// Pages rendered per chunk and thread: a chunk of the 12,757 W-hourly
/// statements is about 1 MB of pages and 1 ms of work on each thread.
const CHUNK_PER_THREAD: usize = 64;

/// `render` of each item, in order, a chunk at a time, each chunk on every
/// core: the chunk's items are taken one by one by this thread and the
/// others (so that a large page does not leave a thread idle), and the
/// chunk is handed out once all of it is rendered. Rendering is most of a
/// statement's cost and is pure, so the pages are the same bytes on any
/// number of threads; publishing asks for the next chunk while the writers
/// write the last one.
fn render_in_chunks<T: Send, R: Send>(items: Vec<T>, render: impl Fn(T) -> R + Sync) -> impl Iterator<Item = R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = CHUNK_PER_THREAD * threads;
    let mut items = items.into_iter();
    std::iter::from_fn(move || {
        let chunk: Vec<std::sync::Mutex<Option<T>>> =
            items.by_ref().take(chunk).map(|t| std::sync::Mutex::new(Some(t))).collect();
        if chunk.is_empty() {
            return None;
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = chunk.get(i) else { return done };
                let item = slot.lock().unwrap_or_else(|e| e.into_inner()).take().expect("each item is taken once");
                done.push((i, render(item)));
            }
        };
        let mut rendered: Vec<(usize, R)> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.min(chunk.len())).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for h in helpers {
                all.extend(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            }
            all
        });
        rendered.sort_unstable_by_key(|(i, _)| *i);
        Some(rendered.into_iter().map(|(_, r)| r))
    })
    .flatten()
}

/// A segment of [`key_segment`] as it goes into a link: its `%` encoded once more.
fn href_segment(id: &str) -> String {
    key_segment(id).replace('%', "%25")
}

/// The party of an id: the directory's, or the id alone when the directory does not have it.
fn party<'a>(dir: &'a Directory, id: &'a str) -> Party<'a> {
    match dir.entity(id) {
        Some(e) => {
            let e = &dir.entities[e];
            let kind = match e.kind {
                EntityKind::Vendor => "vendor",
                EntityKind::Distributor => "distributor",
                EntityKind::ChannelPartner => "channel partner",
                EntityKind::Customer => "customer",
            };
            Party { id: &e.id, name: &e.name, kind }
        }
        None => Party { id, name: id, kind: "" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_rendered_on_every_core_come_out_in_order_each_once() {
        for n in [0, 1, 63, 64, 65, 1000] {
            let items: Vec<u64> = (0..n).collect();
            // Uneven work, so that threads finish items out of order.
            let render = |i: u64| (0..(i % 7) * 2000).fold(i, |h, k| h.wrapping_mul(31).wrapping_add(k)) ^ i << 40;
            let expected: Vec<u64> = items.iter().map(|&i| render(i)).collect();
            assert_eq!(render_in_chunks(items, render).collect::<Vec<_>>(), expected, "{n} items");
        }
    }

    #[test]
    fn a_panic_while_rendering_a_chunk_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            render_in_chunks((0..300).collect(), |i: u32| if i == 250 { panic!("page {i}") } else { i }).count()
        });
        assert!(caught.is_err());
    }

    #[test]
    fn statement_files_and_links_encode_each_id_as_one_segment() {
        assert_eq!(statement_file("ic", "a b"), "statements/ic/a%20b.html");
        assert_eq!(statement_file("dp/1", ".."), "statements/dp%2F1/%2E%2E.html");
        assert_eq!(href_segment("a b"), "a%2520b");
    }
}
