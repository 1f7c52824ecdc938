//! HTML of the statements: a statement page and the index page, each one
//! self-contained file (inline CSS and SVG, no script, no font, image or
//! style sheet from elsewhere) laid out for the screen and for A4 paper.
//! Every id, name and text from the inputs goes through [`escape_into`];
//! money and quantities are printed from their exact decimals, with a
//! thousands separator ([`number_into`]), and their plain value in `data-*`
//! attributes for machines.
//!
//! A page is written straight into its one `String`, piece by piece: text
//! through [`escape_into`], numbers through [`number_into`] or `write!`,
//! never through a temporary string.

use std::fmt::Write;

use rust_decimal::Decimal;

use super::chart::daily_chart;
use super::{Context, Customer, Invoice, Party, Statement};
use crate::manifest::MonthStatus;

/// One statement as the index lists it.
#[derive(Debug, Clone)]
pub(super) struct IndexEntry<'a> {
    pub(super) seller: Party<'a>,
    pub(super) buyer: Party<'a>,
    /// Relative link from the index.
    pub(super) href: String,
    /// Total per currency.
    pub(super) totals: Vec<(&'a str, Decimal)>,
    /// Whether the statement shows corrections.
    pub(super) corrected: bool,
}

pub(super) use crate::formats::escape_markup_into as escape_into;

/// Appends a decimal as people read it: its exact digits as `Decimal`'s
/// `Display` prints them (a `-` for a negative sign, every digit of the
/// scale, a `0` before the point of a fraction), the whole part's
/// thousands separated by commas: `-1234567.000001` is `-1,234,567.000001`.
///
/// The digits come from the mantissa and scale, on the stack.
fn number_into(out: &mut String, d: &Decimal) {
    // The mantissa is below 2^96, so it has at most 29 digits, and the scale
    // is at most 28: 30 digits hold it with the one whole digit. The buffer
    // is filled from its end and starts as zeros, the padding of the scale.
    let mut digits = [b'0'; 32];
    let mut start = digits.len();
    let mut m = d.mantissa().unsigned_abs();
    // Blocks of 19 digits while it does not fit a u64 (a u128 division is slow).
    const BLOCK: u128 = 10_000_000_000_000_000_000;
    while m > u128::from(u64::MAX) {
        let mut block = (m % BLOCK) as u64;
        m /= BLOCK;
        for _ in 0..19 {
            start -= 1;
            digits[start] = b'0' + (block % 10) as u8;
            block /= 10;
        }
    }
    let mut m = m as u64;
    while m > 0 {
        start -= 1;
        digits[start] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    let scale = d.scale() as usize;
    let digits = &digits[start.min(digits.len() - scale - 1)..];
    let (whole, frac) = digits.split_at(digits.len() - scale);
    // Sign, whole digits with their commas, point and fraction: 64 bytes hold them.
    let mut text = [0u8; 64];
    let mut n = 0;
    let mut put = |b: u8| {
        text[n] = b;
        n += 1;
    };
    if d.is_sign_negative() {
        put(b'-');
    }
    for (i, &b) in whole.iter().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            put(b',');
        }
        put(b);
    }
    if !frac.is_empty() {
        put(b'.');
        frac.iter().for_each(|&b| put(b));
    }
    out.push_str(std::str::from_utf8(&text[..n]).expect("digits, commas, a point and a sign are ASCII"));
}

const STYLE: &str = "\
@page{size:A4;margin:14mm 12mm}\
*{box-sizing:border-box}\
body{font:10pt/1.4 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#1b1f24;\
margin:0 auto;max-width:190mm;padding:10mm 8mm;background:#fff}\
h1{font-size:18pt;margin:0 0 2mm}h2{font-size:13pt;margin:7mm 0 2mm;border-bottom:1px solid #c9d1d9;padding-bottom:1mm}\
h3{font-size:11pt;margin:5mm 0 1.5mm}\
.meta{color:#57606a;margin:0 0 4mm}.status{font-weight:600;padding:0 2mm;border-radius:2mm}\
.status.final{background:#dafbe1;color:#116329}.status.provisional{background:#fff8c5;color:#7d4e00}\
.note{background:#fff8c5;border-left:3px solid #d4a72c;padding:2mm 3mm;margin:3mm 0}\
.parties{display:flex;gap:8mm}.party{flex:1;border:1px solid #d0d7de;border-radius:2mm;padding:3mm}\
.party .role{color:#57606a;font-size:8.5pt;text-transform:uppercase;letter-spacing:.05em}\
.party .name{font-size:12pt;font-weight:600}.id,code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:9pt}\
table{border-collapse:collapse;width:100%;margin:1mm 0 3mm}th,td{padding:1.2mm 1.5mm;text-align:left;vertical-align:top}\
thead th{border-bottom:1.5px solid #57606a;font-size:8.5pt;color:#57606a;font-weight:600}\
tbody td{border-bottom:1px solid #eaeef2}td.id{white-space:nowrap}td.id.long{white-space:normal}\
td:first-child,td:nth-child(2),.party,h3,p{overflow-wrap:anywhere}td.n,th.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
tfoot td,tfoot th{border-top:1.5px solid #57606a;font-weight:600}tr.total td,tr.total th{font-size:11pt}\
.sub{color:#57606a;font-size:8.5pt}.neg{color:#a40e26}\
svg.chart{width:100%;height:auto;max-width:170mm;display:block}\
svg .bars{fill:#0969da}svg .grid{stroke:#d0d7de;stroke-width:1}\
svg text{font-size:10px;fill:#57606a}svg .ylabel{text-anchor:end}svg .xlabel{text-anchor:middle}\
.customer{break-inside:avoid;page-break-inside:avoid}\
footer{margin-top:8mm;color:#57606a;font-size:8.5pt;border-top:1px solid #d0d7de;padding-top:2mm}\
a{color:#0969da}\
@media print{body{padding:0;max-width:none}a{color:inherit;text-decoration:none}.noprint{display:none}\
tr{break-inside:avoid;page-break-inside:avoid}thead{display:table-header-group}tfoot{display:table-row-group}\
h2,h3{break-after:avoid;page-break-after:avoid}}";

/// Ids longer than this many characters may wrap in a table cell; shorter
/// ones stay on one line (`K-IC-MSPB`, not `K-IC-` and `MSPB`).
const LONG_ID: usize = 24;

/// A table cell with an id, up to its closing tag: kept on one line unless
/// it is long, which wraps anywhere rather than push the amounts off an A4 page.
fn id_cell(out: &mut String, id: &str) {
    let long = id.len() > LONG_ID && id.chars().nth(LONG_ID).is_some();
    out.push_str(if long { "<td class=\"id long\">" } else { "<td class=\"id\">" });
    escape_into(out, id);
}

/// The start of a page up to its `<body>`, with the title that `title` writes (escaped).
fn head(out: &mut String, title: impl FnOnce(&mut String)) {
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
    );
    title(out);
    out.push_str("</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>");
}

/// The month's status as a badge.
fn status_badge(out: &mut String, status: MonthStatus) {
    let _ = write!(out, "<span class=\"status {0}\" id=\"status\">{0}</span>", status.as_str());
}

/// A party's box; `role` is markup-safe (`from` or `to`).
fn party_html(out: &mut String, role: &str, p: &Party) {
    let _ = write!(out, "<div class=\"party\" id=\"{role}\" data-id=\"");
    escape_into(out, p.id);
    let _ = write!(out, "\"><div class=\"role\">{role}</div><div class=\"name\">");
    escape_into(out, p.name);
    out.push_str("</div><div class=\"id\">");
    escape_into(out, p.id);
    out.push_str("</div><div class=\"sub\">");
    escape_into(out, p.kind);
    out.push_str("</div></div>");
}

/// The page of one statement.
pub(super) fn statement_page(ctx: &Context, s: &Statement) -> String {
    let mut out = String::with_capacity(8192);
    // The month is digits and a dash: nothing in it to escape.
    head(&mut out, |out| {
        let _ = write!(out, "Statement {} · ", ctx.month);
        escape_into(out, s.seller.name);
        out.push_str(" → ");
        escape_into(out, s.buyer.name);
    });
    let _ = write!(
        out,
        "<header><h1>Statement</h1><p class=\"meta\">Billing month <strong id=\"month\">{}</strong> · \
         revision <strong id=\"revision\">{}</strong> · ",
        ctx.month, ctx.revision,
    );
    status_badge(&mut out, ctx.status);
    out.push_str("</p>");
    if ctx.status == MonthStatus::Provisional {
        out.push_str(
            "<p class=\"note\">Provisional: the month is still open or in its grace period; \
             amounts may change until the final revision.</p>",
        );
    }
    out.push_str("<div class=\"parties\">");
    party_html(&mut out, "from", &s.seller);
    party_html(&mut out, "to", &s.buyer);
    out.push_str("</div></header>");
    for invoice in &s.invoices {
        invoice_html(&mut out, ctx, invoice);
    }
    if s.reseller {
        out.push_str("<h2>Breakdown per customer</h2>");
    } else {
        out.push_str("<h2>Usage</h2>");
    }
    // Each customer's lines and their sum, per invoice, in one pass.
    let mut subtotals: std::collections::HashMap<&str, Vec<(usize, Decimal)>> = std::collections::HashMap::new();
    for (i, inv) in s.invoices.iter().enumerate() {
        for l in &inv.lines {
            let per_invoice =
                subtotals.entry(l.customer_id).or_insert_with(|| vec![(0, Decimal::ZERO); s.invoices.len()]);
            per_invoice[i].0 += 1;
            per_invoice[i].1 += l.amount;
        }
    }
    for c in &s.customers {
        customer_html(&mut out, ctx, s, c, subtotals.get(c.party.id).map_or(&[][..], Vec::as_slice));
    }
    if s.customers.is_empty() {
        out.push_str("<p>No usage is billed on this statement in this revision.</p>");
    }
    findings_html(&mut out, ctx, s);
    let _ = writeln!(
        out,
        "<footer>Made by capbill from revision {} of {}: the lines and totals are those of its \
         <code>invoice_lines</code> and <code>invoices</code> tables, usage that of <code>account_usage</code>. \
         <a class=\"noprint\" href=\"../index.html\">All statements of this revision</a></footer></body></html>",
        ctx.revision, ctx.month
    );
    out
}

/// An amount with its currency: `1,260.34 EUR`.
fn amount_html(out: &mut String, amount: &Decimal, currency: &str) {
    number_into(out, amount);
    out.push(' ');
    escape_into(out, currency);
}

fn invoice_html(out: &mut String, ctx: &Context, inv: &Invoice) {
    let cur = inv.currency;
    out.push_str("<section class=\"invoice\" data-currency=\"");
    escape_into(out, cur);
    out.push_str("\"><h2>Invoice in ");
    escape_into(out, cur);
    out.push_str("</h2>");
    if let Some(n) = inv.number {
        out.push_str("<p class=\"sub\">E-invoice <span class=\"invoice-number\" data-number=\"");
        escape_into(out, n);
        out.push_str("\">");
        escape_into(out, n);
        out.push_str("</span></p>");
    }
    if inv.lines.is_empty() {
        out.push_str("<p>No lines in this revision.</p>");
    } else {
        out.push_str(
            "<table class=\"lines\"><thead><tr><th>Customer</th><th>Contract</th><th>Charge</th>\
             <th class=\"n\">Days</th><th class=\"n\">Quantity</th><th class=\"n\">Unit price</th>\
             <th class=\"n\">Amount</th><th>Deal</th></tr></thead><tbody>",
        );
        for l in &inv.lines {
            let _ = write!(out, "<tr class=\"line\" data-amount=\"{}\"><td>", l.amount);
            escape_into(out, l.customer_name);
            out.push_str("<div class=\"id\">");
            escape_into(out, l.customer_id);
            out.push_str("</div></td>");
            id_cell(out, l.contract_id);
            out.push_str("</td><td>");
            escape_into(out, l.charge);
            let _ = write!(out, "</td><td class=\"n\">{}</td><td class=\"n\">", l.days);
            number_into(out, &l.quantity);
            out.push_str(" <span class=\"sub\">");
            escape_into(out, l.unit);
            out.push_str("</span></td><td class=\"n\">");
            number_into(out, &l.unit_price);
            out.push_str("</td><td class=\"n\">");
            number_into(out, &l.amount);
            out.push_str("</td>");
            id_cell(out, l.deal_id.unwrap_or(""));
            out.push_str("</td></tr>");
        }
        out.push_str("</tbody>");
    }
    if inv.lines.is_empty() {
        out.push_str("<table class=\"lines\">");
    }
    let n = inv.lines.len();
    let _ = write!(
        out,
        "<tfoot><tr class=\"total\"><th colspan=\"6\">Total ({n} line{})</th>\
         <td class=\"n invoice-total\" id=\"total-",
        if n == 1 { "" } else { "s" }
    );
    escape_into(out, cur);
    out.push_str("\" data-currency=\"");
    escape_into(out, cur);
    let _ = write!(out, "\" data-total=\"{}\">", inv.total);
    amount_html(out, &inv.total, cur);
    out.push_str("</td><td></td></tr></tfoot></table>");
    if !inv.corrections.is_empty() {
        corrections_html(out, ctx, inv);
    }
    out.push_str("</section>");
}

fn corrections_html(out: &mut String, ctx: &Context, inv: &Invoice) {
    let cur = inv.currency;
    let against = |out: &mut String| {
        if let Some(r) = ctx.corrects {
            let _ = write!(out, " against revision {r}");
        }
    };
    let change: Decimal = inv.corrections.iter().map(|c| c.amount).sum();
    let issued = inv.total - change;
    out.push_str("<h3 class=\"corrections\">Corrections");
    against(out);
    out.push_str("</h3><p class=\"sub\">This revision corrects the final revision");
    against(out);
    out.push_str(
        " that was issued: each line below is the change of one invoice line (new minus issued); \
         a line that disappeared is negated, a new line appears whole.</p>\
         <table class=\"corrections\" data-corrects=\"",
    );
    if let Some(r) = ctx.corrects {
        let _ = write!(out, "{r}");
    }
    out.push_str(
        "\"><thead><tr><th>Customer</th><th>Contract</th>\
         <th>Charge</th><th class=\"n\">Quantity issued</th><th class=\"n\">Quantity now</th>\
         <th class=\"n\">Amount issued</th><th class=\"n\">Amount now</th><th class=\"n\">Change</th></tr></thead><tbody>",
    );
    for c in &inv.corrections {
        let _ = write!(out, "<tr class=\"correction\" data-amount=\"{}\">", c.amount);
        id_cell(out, c.customer_id);
        out.push_str("</td>");
        id_cell(out, c.contract_id);
        out.push_str("</td><td>");
        escape_into(out, c.charge);
        out.push_str("</td><td class=\"n\">");
        number_into(out, &c.quantity_before);
        out.push_str("</td><td class=\"n\">");
        number_into(out, &c.quantity_after);
        out.push_str("</td><td class=\"n\">");
        number_into(out, &c.amount_before);
        out.push_str("</td><td class=\"n\">");
        number_into(out, &c.amount_after);
        out.push_str(if c.amount.is_sign_negative() { "</td><td class=\"n neg\">" } else { "</td><td class=\"n\">" });
        number_into(out, &c.amount);
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody><tfoot><tr><th colspan=\"7\">Total issued</th><td class=\"n issued-total\" data-currency=\"");
    escape_into(out, cur);
    let _ = write!(out, "\" data-total=\"{issued}\">");
    amount_html(out, &issued, cur);
    out.push_str("</td></tr><tr><th colspan=\"7\">Change</th><td class=\"n correction-total\" data-currency=\"");
    escape_into(out, cur);
    let _ = write!(out, "\" data-total=\"{change}\">");
    amount_html(out, &change, cur);
    out.push_str("</td></tr><tr class=\"total\"><th colspan=\"7\">Total now</th><td class=\"n\">");
    amount_html(out, &inv.total, cur);
    out.push_str("</td></tr></tfoot></table>");
}

/// A customer's section; `subtotals` holds its lines' count and sum per invoice of `s`.
fn customer_html(out: &mut String, ctx: &Context, s: &Statement, c: &Customer, subtotals: &[(usize, Decimal)]) {
    out.push_str("<section class=\"customer\" data-customer=\"");
    escape_into(out, c.party.id);
    out.push_str("\"><h3>");
    escape_into(out, c.party.name);
    out.push_str(" <span class=\"id\">");
    escape_into(out, c.party.id);
    out.push_str("</span></h3>");
    for (inv, &(n, sub)) in s.invoices.iter().zip(subtotals) {
        if n == 0 {
            continue;
        }
        let _ =
            write!(out, "<p>{n} line{} for <span class=\"subtotal\" data-currency=\"", if n == 1 { "" } else { "s" });
        escape_into(out, inv.currency);
        let _ = write!(out, "\" data-subtotal=\"{sub}\">");
        amount_html(out, &sub, inv.currency);
        out.push_str("</span></p>");
    }
    if c.beneath {
        out.push_str(
            "<p class=\"sub\">It owns no storage account: the usage shown is that of every account beneath it.</p>",
        );
    }
    daily_chart(out, &c.daily, ctx.month, ctx.unit, c.party.name);
    if c.accounts.is_empty() {
        out.push_str("<p class=\"sub\">No storage account with usage in this month.</p>");
    } else {
        out.push_str(
            "<table class=\"accounts\"><thead><tr><th>Storage account</th><th>Company</th>\
             <th class=\"n\">Byte-days</th><th class=\"n\">",
        );
        out.push_str(ctx.unit.line_unit());
        out.push_str("s</th><th class=\"n\">Days observed</th><th class=\"n\">Days filled</th></tr></thead><tbody>");
        for a in &c.accounts {
            out.push_str("<tr>");
            id_cell(out, a.id);
            out.push_str("</td><td>");
            escape_into(out, a.company);
            out.push_str("</td><td class=\"n\">");
            number_into(out, &a.byte_days);
            out.push_str("</td><td class=\"n\">");
            number_into(out, &a.tb_months);
            let _ =
                write!(out, "</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>", a.observed_days, a.filled_days);
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn findings_html(out: &mut String, ctx: &Context, s: &Statement) {
    out.push_str("<h2>Findings</h2>");
    if s.findings.is_empty() {
        out.push_str("<p>No finding concerns ");
        escape_into(out, s.buyer.name);
        out.push_str(" or anyone beneath it.</p>");
        return;
    }
    out.push_str(
        "<table class=\"findings\"><thead><tr><th>Kind</th><th>Subject</th><th>Detail</th>\
         <th class=\"n\">Byte-days</th><th class=\"n\">",
    );
    out.push_str(ctx.unit.line_unit());
    out.push_str("s</th></tr></thead><tbody>");
    for f in &s.findings {
        out.push_str("<tr class=\"finding\"><td>");
        escape_into(out, f.kind);
        out.push_str("</td>");
        id_cell(out, f.subject_id);
        out.push_str("</td><td>");
        escape_into(out, f.detail);
        out.push_str("</td><td class=\"n\">");
        if let Some(d) = &f.byte_days {
            number_into(out, d);
        }
        out.push_str("</td><td class=\"n\">");
        if let Some(d) = &f.tb_months {
            number_into(out, d);
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
}

/// The index of a revision's statements.
pub(super) fn index_page(ctx: &Context, entries: &[IndexEntry]) -> String {
    let mut out = String::with_capacity(1024 + entries.len() * 400);
    // Month and revision are digits and a dash: nothing in them to escape.
    head(&mut out, |out| {
        let _ = write!(out, "Statements {} revision {}", ctx.month, ctx.revision);
    });
    let _ = write!(
        out,
        "<header><h1>Statements</h1><p class=\"meta\">Billing month <strong id=\"month\">{}</strong> · \
         revision <strong id=\"revision\">{}</strong> · ",
        ctx.month, ctx.revision,
    );
    status_badge(&mut out, ctx.status);
    let _ = write!(
        out,
        " · {} statements</p></header>\
         <table class=\"index\"><thead><tr><th>Seller</th><th>Buyer</th><th class=\"n\">Total</th><th></th>\
         </tr></thead><tbody>",
        entries.len()
    );
    for e in entries {
        out.push_str("<tr><td>");
        escape_into(&mut out, e.seller.name);
        out.push_str("<div class=\"id\">");
        escape_into(&mut out, e.seller.id);
        out.push_str("</div></td><td><a href=\"");
        escape_into(&mut out, &e.href);
        out.push_str("\">");
        escape_into(&mut out, e.buyer.name);
        out.push_str("</a><div class=\"id\">");
        escape_into(&mut out, e.buyer.id);
        out.push_str("</div></td><td class=\"n\">");
        // One total per currency, a line each.
        for (i, (cur, t)) in e.totals.iter().enumerate() {
            if i > 0 {
                out.push_str("<br>");
            }
            out.push_str("<span data-currency=\"");
            escape_into(&mut out, cur);
            let _ = write!(out, "\" data-total=\"{t}\">");
            amount_html(&mut out, t, cur);
            out.push_str("</span>");
        }
        out.push_str("</td><td>");
        if e.corrected {
            out.push_str("corrected");
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// [`number_into`] into a new string.
    fn number(d: &Decimal) -> String {
        let mut out = String::new();
        number_into(&mut out, d);
        out
    }

    /// The thousands separators put into `Decimal`'s own text, as `number`
    /// did before it wrote its digits itself.
    fn number_by_text(d: &Decimal) -> String {
        let s = d.to_string();
        let (sign, s) = s.strip_prefix('-').map_or(("", s.as_str()), |r| ("-", r));
        let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
        let mut out = String::from(sign);
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if let Some(f) = frac {
            out.push('.');
            out.push_str(f);
        }
        out
    }

    #[test]
    fn text_is_escaped_and_numbers_keep_their_digits() {
        let escape = crate::formats::escape_markup;
        assert_eq!(escape("a<b>&\"c'/ü"), "a&lt;b&gt;&amp;&quot;c&#39;/ü");
        let n = |s: &str| number(&Decimal::from_str(s).unwrap());
        assert_eq!(n("1260.34"), "1,260.34");
        assert_eq!(n("-1234567.000001"), "-1,234,567.000001");
        assert_eq!(n("999.10"), "999.10");
        assert_eq!(n("0"), "0");
        assert_eq!(n("100000"), "100,000");
        let mut out = String::from("x ");
        number_into(&mut out, &Decimal::from_str("-0.50").unwrap());
        assert_eq!(out, "x -0.50", "appended");
    }

    #[test]
    fn numbers_are_the_decimals_own_digits_with_separators() {
        let mut values: Vec<Decimal> =
            vec![Decimal::ZERO, Decimal::ONE, Decimal::NEGATIVE_ONE, Decimal::MAX, Decimal::MIN];
        for s in [
            "0.00",
            "-0.5",
            "0.000001",
            "12",
            "123",
            "1234",
            "-12345",
            "123456",
            "1234567.1",
            "999999.999",
            "1000000",
            "-1000.000",
            "0.0000000000000000000000000001",
            "79228162514264337593543950335",
            "-7922816251426433759354395033.5",
            "18446744073709551615",
            "18446744073709551616",
            "10000000000000000000",
            "9999999999999999999",
            "-99999999999999999999.99",
        ] {
            values.push(Decimal::from_str(s).unwrap());
        }
        for scale in 0..=28 {
            // Zeros with every scale, of either sign (a negative zero prints its sign).
            let mut zero = Decimal::new(0, scale);
            values.push(zero);
            zero.set_sign_negative(true);
            values.push(zero);
            values.push(Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, scale % 2 == 0, scale));
            values.push(Decimal::from_parts(1, 0, 0, true, scale));
            values.push(Decimal::from_i128_with_scale(10i128.pow(scale), scale));
        }
        for d in &values {
            assert_eq!(number(d), number_by_text(d), "{d} (scale {})", d.scale());
        }
        let mut negative_zero = Decimal::new(0, 2);
        negative_zero.set_sign_negative(true);
        assert_eq!((negative_zero.to_string().as_str(), number(&negative_zero).as_str()), ("-0.00", "-0.00"));
        assert_eq!(number(&Decimal::MAX), "79,228,162,514,264,337,593,543,950,335");
    }

    proptest::proptest! {
        #[test]
        fn numbers_match_the_decimals_text_for_any_mantissa_and_scale(
            lo: u32, mid: u32, hi: u32, negative: bool, scale in 0u32..=28, small in -100_000_000i64..100_000_000,
        ) {
            let wide = Decimal::from_parts(lo, mid, hi, negative, scale);
            proptest::prop_assert_eq!(number(&wide), number_by_text(&wide));
            let narrow = Decimal::new(small, scale);
            proptest::prop_assert_eq!(number(&narrow), number_by_text(&narrow));
        }
    }
}
