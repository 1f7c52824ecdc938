//! What people read: the summary of a billing run, and the read-only views
//! of published revisions for operators (`status`, `diff`, `validate`,
//! `statement`).
//!
//! Renders text for a terminal and CSV for spreadsheets; reads manifests
//! and invoice lines through [`crate::manifest`] and [`crate::revision`],
//! and writes nothing.

use std::fmt::Write as _;

use polars::prelude::*;
use rust_decimal::Decimal;

use crate::config::{Config, ConfigError};
use crate::error::Error;
use crate::export::ExportError;
use crate::formats::{self, decimal_column};
use crate::manifest;
use crate::model::BillingMonth;
use crate::money::AMOUNT_SCALE;
use crate::pipeline::{Outcome, RunReport};
use crate::revision::{self, InvoiceTotals, LineChange};
use crate::storage::Store;

/// Output format of `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// Tables for a terminal.
    Text,
    /// CSV on stdout (one level, see --level).
    Csv,
}

/// Which differences `diff --format csv` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffLevel {
    /// Per invoice line.
    Lines,
    /// Per invoice (seller, buyer, currency).
    Invoices,
}

/// What one `capbill collect` wrote, for people.
pub fn collected(c: &crate::collect::Collected) -> String {
    let mut out = format!(
        "collected {} of {} ({} bytes) from {} at {}\nwrote {}\n",
        counted(c.buckets, "bucket"),
        counted(c.accounts, "storage account"),
        c.total_bytes,
        c.source.as_str(),
        c.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        c.location,
    );
    if c.gone > 0 {
        out.push_str(&format!(
            "{} of the previous snapshot no longer reported: written with 0 bytes\n",
            counted(c.gone, "bucket")
        ));
    }
    if let Some(u) = c.unfinished_bytes {
        out.push_str(&format!("unfinished multipart uploads: {u} bytes (not billed)\n"));
    }
    if !c.unattributed.is_empty() {
        out.push_str(&format!(
            "{} not attributed to a storage account (billed as unknown_storage_account until mapped):\n",
            counted(c.unattributed.len(), "bucket")
        ));
        for u in &c.unattributed {
            out.push_str(&format!("  {} ({} bytes): {}\n", u.bucket, u.bytes, u.reason));
        }
    }
    out
}

/// A short summary of what a billing invocation did, for people.
pub fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Published(r) => published(r),
        Outcome::Unchanged { month, manifest } => format!(
            "capbill: {month} unchanged: inputs and configuration match revision {} ({}); nothing published\n",
            manifest.revision,
            manifest.status.as_str()
        ),
        Outcome::Adopted { month, manifest } => format!(
            "capbill: {month}: completed the publication of revision {} ({}), interrupted before latest.json\n",
            manifest.revision,
            manifest.status.as_str()
        ),
    }
}

/// The summary of a published revision.
fn published(r: &RunReport) -> String {
    let m = &r.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "capbill: billed {} as revision {} ({})", m.billing_month, m.revision, m.status.as_str());
    if let Some(reason) = &m.reason {
        let _ = writeln!(s, "  reprocessed by {}: {reason}", m.requested_by);
    }
    if let Some((prev, n)) = r.corrections {
        let _ = writeln!(s, "  corrections against final revision {prev}: {n} lines (corrections.csv)");
    }
    let _ = write!(
        s,
        "  {} on {}, {} metered, {} read",
        counted(m.counts.invoice_lines, "invoice line"),
        counted(m.counts.invoices, "invoice"),
        counted(m.counts.accounts, "storage account"),
        counted(m.usage.objects.len(), "usage object")
    );
    // Shown when not zero: objects of other months left unread, and records
    // read but not billed because they fall outside the month.
    if m.usage.pruned_objects > 0 {
        let _ = write!(s, " ({} pruned)", m.usage.pruned_objects);
    }
    if m.usage.records_outside_month > 0 {
        let _ = write!(s, ", {} records outside the month", m.usage.records_outside_month);
    }
    s.push('\n');
    if r.spilled_bytes > 0 {
        let _ = writeln!(
            s,
            "  {} MiB of usage records spilled to local disk while their days were open (memory_budget_mib)",
            r.spilled_bytes.div_ceil(1 << 20)
        );
    }
    if r.days_read_again > 0 {
        let _ = writeln!(
            s,
            "  {} of usage read again: too large to hold, and their records repeated or not in time order per account (memory_budget_mib)",
            counted(r.days_read_again, "day")
        );
    }
    let _ = writeln!(s, "  totals per seller:");
    for t in &r.totals.per_seller {
        let _ = writeln!(s, "    {:<24} {:>14} {}", t.seller_id, t.total, t.currency);
    }
    for t in &m.totals {
        let _ = writeln!(s, "    {:<24} {:>14} {}", "(all sellers)", t.total, t.currency);
    }
    if m.counts.findings.is_empty() {
        let _ = writeln!(s, "  findings: none");
    } else {
        let _ = writeln!(s, "  findings:");
        for (kind, n) in &m.counts.findings {
            let _ = writeln!(s, "    {kind:<28} {n}");
        }
    }
    if !m.documents.is_empty() {
        use crate::manifest::DocumentKind;
        let credit_notes = m.documents.iter().filter(|d| d.kind == DocumentKind::CreditNote).count();
        let invoices = m.documents.len() - credit_notes;
        let _ = writeln!(
            s,
            "  e-invoices: {}, {} (einvoices/)",
            counted(invoices, "invoice"),
            counted(credit_notes, "credit note")
        );
    }
    let _ = writeln!(s, "  outputs: {}", r.location);
    s
}

/// The revisions of one month (or of every month with outputs).
pub async fn status(config: &Config, month: Option<BillingMonth>) -> Result<String, Error> {
    let out = Store::open(&config.out, &config.s3).await?;
    let months = match month {
        Some(m) => vec![m],
        None => manifest::months(&out).await?,
    };
    let mut s = String::new();
    if months.is_empty() {
        let _ = writeln!(s, "no billing month has outputs under {}", config.out);
    }
    for m in months {
        let manifests = manifest::history(&out, m).await?;
        let latest = manifest::read_latest(&out, m).await?;
        match &latest {
            Some(l) => {
                let _ = writeln!(s, "{m}: latest revision {} ({})", l.revision, l.status.as_str());
            }
            None => {
                let _ = writeln!(s, "{m}: no complete revision");
            }
        }
        let _ = writeln!(
            s,
            "  {:>3}  {:<11}  {:<20}  {:>16}  {:<24}  reason",
            "rev", "status", "generated_at", "total", "requested_by"
        );
        let latest_rev = latest.as_ref().map_or(0, |l| l.revision);
        for man in manifests {
            let unpublished = if man.revision > latest_rev { " (unpublished)" } else { "" };
            let total = man.totals.iter().map(|t| format!("{} {}", t.total, t.currency)).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                s,
                "  {:>3}  {:<11}  {:<20}  {:>16}  {:<24}  {}{unpublished}",
                man.revision,
                man.status.as_str(),
                man.generated_at,
                total,
                man.requested_by,
                man.reason.as_deref().unwrap_or("")
            );
        }
    }
    Ok(s)
}

fn invalid(reason: String) -> Error {
    Error::Config(ConfigError::Invalid { setting: "revision", reason })
}

/// Where the statement of `seller` to `buyer` is in a revision of `month`
/// (the latest without `revision`), as the output store describes it; with
/// `output`, the statement is copied there (after its checksum is checked
/// against the manifest) and that path is named instead.
pub async fn statement(
    config: &Config,
    month: BillingMonth,
    seller: &str,
    buyer: &str,
    revision: Option<u32>,
    output: Option<&std::path::Path>,
) -> Result<String, Error> {
    use crate::export::statements::{FOLDER, statement_file};
    use crate::manifest::NotPublished;
    use crate::storage::decode_key_segment;
    let out = Store::open(&config.out, &config.s3).await?;
    let revisions = manifest::complete_revisions(&out, month).await?;
    let Some(&last) = revisions.last() else {
        return Err(NotPublished::Month { month, location: config.out.to_string() }.into());
    };
    let revision = match revision {
        Some(r) if revisions.contains(&r) => r,
        Some(r) => {
            let available = listing(revisions.iter().map(u32::to_string).collect());
            return Err(NotPublished::Revision { month, revision: r, available }.into());
        }
        None => manifest::read_latest(&out, month).await?.map_or(last, |l| l.revision),
    };
    let man = manifest::read_manifest(&out, month, revision).await?;
    // The (seller, buyer) segments of every statement the manifest lists,
    // compared as segments: a long id's is shortened and cannot be decoded.
    let listed: Vec<(&str, &str)> = man
        .outputs
        .iter()
        .filter_map(|o| o.file.strip_prefix(FOLDER)?.strip_prefix('/')?.strip_suffix(".html")?.split_once('/'))
        .collect();
    let shown = |segment: &str| decode_key_segment(segment).unwrap_or_else(|| segment.to_owned());
    let file = statement_file(seller, buyer);
    let (seller_segment, buyer_segment) = file
        .strip_prefix(FOLDER)
        .and_then(|f| f.strip_prefix('/')?.strip_suffix(".html")?.split_once('/'))
        .expect("a statement file is statements/<seller>/<buyer>.html");
    if !listed.iter().any(|(s, _)| *s == seller_segment) {
        let available = listing(listed.iter().map(|(s, _)| shown(s)).collect());
        return Err(NotPublished::Seller { seller: seller.to_owned(), month, revision, available }.into());
    }
    if !listed.contains(&(seller_segment, buyer_segment)) {
        let available = listing(listed.iter().filter(|(s, _)| *s == seller_segment).map(|(_, b)| shown(b)).collect());
        let (seller, buyer) = (seller.to_owned(), buyer.to_owned());
        return Err(NotPublished::Buyer { buyer, seller, month, revision, available }.into());
    }
    let key = format!("{}/{file}", manifest::revision_prefix(month, revision));
    let Some(path) = output else {
        return Ok(format!("{}\n", out.describe(&key)));
    };
    let data = out.get(&key).await?;
    let expected = man.outputs.iter().find(|o| o.file == file).map(|o| o.sha256.as_str());
    if expected != Some(manifest::sha256_hex(&data).as_str()) {
        return Err(invalid(format!("{} does not match the checksum its manifest lists", out.describe(&key))));
    }
    // Written beside the path and moved onto it: a reader never sees half a
    // page, and a symbolic link there is replaced, not followed (it could
    // point into a published revision, whose files are never rewritten).
    let folder = folder_of(path);
    let cannot = |why: String| {
        Error::Config(ConfigError::Invalid {
            setting: "output",
            reason: format!("cannot write {}: {why}", path.display()),
        })
    };
    if !folder.is_dir() {
        return Err(cannot(format!("the folder {} does not exist", folder.display())));
    }
    // The temporary file's name is this function's business, not the message's.
    let io = |e: std::io::Error| cannot(std::io::Error::from(e.kind()).to_string());
    let mut tmp = tempfile::Builder::new().prefix(".capbill-statement-").tempfile_in(folder).map_err(io)?;
    std::io::Write::write_all(&mut tmp, &data).map_err(io)?;
    // Readable like any page capbill publishes (a temporary file is 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(format!("{}\n", path.display()))
}

/// Names for a message: sorted, without repeats, at most 20 of them.
fn listing(mut names: Vec<String>) -> String {
    names.sort();
    names.dedup();
    let n = names.len();
    match n {
        0 => "none".to_owned(),
        1..=20 => names.join(", "),
        _ => format!("{}, ... ({n} in all)", names[..20].join(", ")),
    }
}

/// Differences between two revisions of a month.
pub async fn diff(
    config: &Config,
    month: BillingMonth,
    from: Option<u32>,
    to: Option<u32>,
    format: DiffFormat,
    level: DiffLevel,
) -> Result<String, Error> {
    let out = Store::open(&config.out, &config.s3).await?;
    let revisions = manifest::complete_revisions(&out, month).await?;
    let Some(&last) = revisions.last() else {
        return Err(invalid(format!("billing month {month} has no complete revision under {}", config.out)));
    };
    let to = to.unwrap_or(last);
    let from = match from {
        Some(f) => f,
        None => *revisions
            .iter()
            .rev()
            .find(|&&r| r < to)
            .ok_or_else(|| invalid(format!("revision {to} of {month} has no earlier revision to compare with")))?,
    };
    for r in [from, to] {
        if !revisions.contains(&r) {
            return Err(invalid(format!("billing month {month} has no complete revision {r} (it has {revisions:?})")));
        }
    }
    let before = revision::read_lines(&out, month, from).await?;
    let after = revision::read_lines(&out, month, to).await?;
    let lines = revision::line_changes(&before, &after);
    let invoices = revision::invoice_changes(&before, &after);
    let enc = |source| Error::Export(ExportError::Encode { table: "diff", source });
    match (format, level) {
        (DiffFormat::Csv, DiffLevel::Lines) => {
            let mut df = revision::corrections_frame(month, to, from, &lines).map_err(enc)?;
            Ok(String::from_utf8(formats::write_csv(&mut df).map_err(enc)?).expect("CSV is UTF-8"))
        }
        (DiffFormat::Csv, DiffLevel::Invoices) => {
            let mut df = invoices_frame(&invoices).map_err(enc)?;
            Ok(String::from_utf8(formats::write_csv(&mut df).map_err(enc)?).expect("CSV is UTF-8"))
        }
        (DiffFormat::Text, _) => Ok(text(month, from, to, &invoices, &lines)),
    }
}

fn invoices_frame(invoices: &InvoiceTotals) -> PolarsResult<DataFrame> {
    let keys: Vec<_> = invoices.keys().collect();
    let vals: Vec<_> = invoices.values().collect();
    DataFrame::new(
        keys.len(),
        vec![
            Column::new("seller_id".into(), keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>()),
            Column::new("buyer_id".into(), keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>()),
            Column::new("currency".into(), keys.iter().map(|k| k.2.as_str()).collect::<Vec<_>>()),
            decimal_column("total_before", vals.iter().map(|v| Some(v.0)), AMOUNT_SCALE)?,
            decimal_column("total_after", vals.iter().map(|v| Some(v.1)), AMOUNT_SCALE)?,
            decimal_column("total_delta", vals.iter().map(|v| Some(v.1 - v.0)), AMOUNT_SCALE)?,
        ],
    )
}

fn signed(d: Decimal) -> String {
    if d.is_sign_positive() && !d.is_zero() { format!("+{d}") } else { d.to_string() }
}

fn text(month: BillingMonth, from: u32, to: u32, invoices: &InvoiceTotals, lines: &[LineChange]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{month}: revision {from} → revision {to}");
    if lines.is_empty() {
        let _ = writeln!(s, "  no differences");
        return s;
    }
    let _ = writeln!(s, "\ninvoices ({} changed)", invoices.len());
    let _ = writeln!(
        s,
        "  {:<16} {:<16} {:<4} {:>14} {:>14} {:>14}",
        "seller", "buyer", "cur", "before", "after", "change"
    );
    for ((seller, buyer, cur), (b, a)) in invoices {
        let _ = writeln!(s, "  {seller:<16} {buyer:<16} {cur:<4} {b:>14} {a:>14} {:>14}", signed(*a - *b));
    }
    let _ = writeln!(s, "\nlines ({} changed)", lines.len());
    let _ = writeln!(
        s,
        "  {:<12} {:<12} {:<12} {:<14} {:<9} {:>14} {:>14} {:>12} {:>12}",
        "seller", "buyer", "customer", "contract", "charge", "qty before", "qty after", "amount", "change"
    );
    for c in lines {
        let (seller, buyer, customer, contract, charge) = &c.key;
        let _ = writeln!(
            s,
            "  {seller:<12} {buyer:<12} {customer:<12} {contract:<14} {charge:<9} {:>14} {:>14} {:>12} {:>12}",
            c.quantity_before,
            c.quantity_after,
            c.amount_after,
            signed(c.amount_delta())
        );
    }
    s
}

/// `capbill validate --einvoices`: the documents of the month's latest revision re-checked.
pub async fn validate_einvoices(config: &Config, month: BillingMonth) -> Result<String, Error> {
    let store = Store::open(&config.out, &config.s3).await?;
    let c = crate::einvoice::check(&store, month).await?;
    Ok(format!(
        "e-invoices of {} revision {}: {} documents match the manifest and the invoices table; {} invoices carry a number\n",
        c.month, c.revision, c.documents, c.numbered_invoices
    ))
}

/// `capbill validate`: the directory's problems, or its findings that need no usage.
pub async fn validate(config: &Config, month: BillingMonth) -> Result<String, Error> {
    let store = Store::open(&config.directory, &config.s3).await?;
    let dir = crate::directory::Directory::load(&store).await?;
    let findings = crate::rate::directory_findings(&dir, crate::rate::RateOptions { month, unit: config.rules.unit })?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "partner directory {} is valid: {} entities, {} storage accounts, {} contracts, {} deals",
        config.directory,
        dir.entities.len(),
        dir.accounts.len(),
        dir.contracts.len(),
        dir.deals.len()
    );
    if findings.is_empty() {
        let _ = writeln!(s, "no findings for {month}");
    } else {
        let _ = writeln!(s, "findings for {month} ({}):", findings.len());
        for f in findings {
            let _ = writeln!(s, "  {} {}: {}", f.kind.as_str(), f.subject_id, f.detail);
        }
    }
    Ok(s)
}
/// The folder a file at `path` goes into: its parent, or `.` for a bare
/// file name (whose parent is empty).
pub(crate) fn folder_of(path: &std::path::Path) -> &std::path::Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    }
}

/// `n noun`, the noun in the plural unless `n` is 1 ("1 usage object", "4 usage objects").
fn counted(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_in_the_singular_for_one() {
        assert_eq!(super::counted(1, "usage object"), "1 usage object");
        assert_eq!(super::counted(0, "invoice"), "0 invoices");
        assert_eq!(super::counted(4, "invoice line"), "4 invoice lines");
    }
}
