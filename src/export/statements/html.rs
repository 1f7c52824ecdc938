//! HTML of the statements: a statement page and the index page, each one
//! self-contained file (inline CSS and SVG, no script, no font, image or
//! style sheet from elsewhere) laid out for the screen and for A4 paper.
//! Every id, name and text from the inputs goes through [`escape`]; money
//! and quantities are printed from their exact decimals, with a thousands
//! separator, and their plain value in `data-*` attributes for machines.

use std::fmt::Write;

use rust_decimal::Decimal;

use super::chart::daily_chart;
use super::{Context, Customer, Invoice, Party, Statement};
use crate::manifest::MonthStatus;

/// One statement as the index lists it.
#[derive(Debug, Clone)]
pub(super) struct IndexEntry {
    pub(super) seller: Party,
    pub(super) buyer: Party,
    /// Relative link from the index.
    pub(super) href: String,
    /// Total per currency.
    pub(super) totals: Vec<(String, Decimal)>,
    /// Whether the statement shows corrections.
    pub(super) corrected: bool,
}

pub(super) use crate::formats::escape_markup as escape;

/// A decimal as people read it: its exact digits, thousands separated by commas.
pub(super) fn number(d: &Decimal) -> String {
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
tbody td{border-bottom:1px solid #eaeef2}td.id{white-space:nowrap}td.n,th.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}\
tfoot td,tfoot th{border-top:1.5px solid #57606a;font-weight:600}tr.total td,tr.total th{font-size:11pt}\
.sub{color:#57606a;font-size:8.5pt}.neg{color:#a40e26}\
svg.chart{width:100%;height:auto;max-width:170mm;display:block}\
svg .bars{fill:#0969da}svg .grid{stroke:#d0d7de;stroke-width:1}\
svg text{font-size:10px;fill:#57606a}svg .ylabel{text-anchor:end}svg .xlabel{text-anchor:middle}\
.customer{break-inside:avoid;page-break-inside:avoid}\
footer{margin-top:8mm;color:#57606a;font-size:8.5pt;border-top:1px solid #d0d7de;padding-top:2mm}\
a{color:#0969da}\
@media print{body{padding:0;max-width:none}a{color:inherit;text-decoration:none}.noprint{display:none}\
tr{break-inside:avoid;page-break-inside:avoid}thead{display:table-header-group}\
h2,h3{break-after:avoid;page-break-after:avoid}}";

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
}

fn status_badge(status: MonthStatus) -> String {
    format!("<span class=\"status {0}\" id=\"status\">{0}</span>", status.as_str())
}

fn party_html(role: &str, p: &Party) -> String {
    format!(
        "<div class=\"party\" id=\"{role}\" data-id=\"{id}\"><div class=\"role\">{role}</div>\
         <div class=\"name\">{name}</div><div class=\"id\">{id}</div><div class=\"sub\">{kind}</div></div>",
        id = escape(&p.id),
        name = escape(&p.name),
        kind = escape(p.kind),
    )
}

/// The page of one statement.
pub(super) fn statement_page(ctx: &Context, s: &Statement) -> String {
    let mut out = String::with_capacity(8192);
    head(&mut out, &format!("Statement {} · {} → {}", ctx.month, s.seller.name, s.buyer.name));
    let _ = write!(
        out,
        "<header><h1>Statement</h1><p class=\"meta\">Billing month <strong id=\"month\">{}</strong> · \
         revision <strong id=\"revision\">{}</strong> · {}</p>",
        ctx.month,
        ctx.revision,
        status_badge(ctx.status)
    );
    if ctx.status == MonthStatus::Provisional {
        out.push_str(
            "<p class=\"note\">Provisional: the month is still open or in its grace period; \
             amounts may change until the final revision.</p>",
        );
    }
    let _ = write!(
        out,
        "<div class=\"parties\">{}{}</div></header>",
        party_html("from", &s.seller),
        party_html("to", &s.buyer)
    );
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
                subtotals.entry(l.customer_id.as_str()).or_insert_with(|| vec![(0, Decimal::ZERO); s.invoices.len()]);
            per_invoice[i].0 += 1;
            per_invoice[i].1 += l.amount;
        }
    }
    for c in &s.customers {
        customer_html(&mut out, ctx, s, c, subtotals.get(c.party.id.as_str()).map_or(&[][..], Vec::as_slice));
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

fn invoice_html(out: &mut String, ctx: &Context, inv: &Invoice) {
    let cur = escape(&inv.currency);
    let _ = write!(out, "<section class=\"invoice\" data-currency=\"{cur}\"><h2>Invoice in {cur}</h2>");
    if let Some(n) = &inv.number {
        let n = escape(n);
        let _ =
            write!(out, "<p class=\"sub\">E-invoice <span class=\"invoice-number\" data-number=\"{n}\">{n}</span></p>");
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
            let _ = write!(
                out,
                "<tr class=\"line\" data-amount=\"{amount}\"><td>{cname}<div class=\"id\">{cid}</div></td>\
                 <td class=\"id\">{contract}</td><td>{charge}</td><td class=\"n\">{days}</td>\
                 <td class=\"n\">{q} <span class=\"sub\">{unit}</span></td><td class=\"n\">{price}</td>\
                 <td class=\"n\">{a}</td><td class=\"id\">{deal}</td></tr>",
                amount = l.amount,
                cname = escape(&l.customer_name),
                cid = escape(&l.customer_id),
                contract = escape(&l.contract_id),
                charge = escape(&l.charge),
                days = l.days,
                q = number(&l.quantity),
                unit = escape(&l.unit),
                price = number(&l.unit_price),
                a = number(&l.amount),
                deal = escape(l.deal_id.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</tbody>");
    }
    if inv.lines.is_empty() {
        out.push_str("<table class=\"lines\">");
    }
    let _ = write!(
        out,
        "<tfoot><tr class=\"total\"><th colspan=\"6\">Total ({n} lines)</th>\
         <td class=\"n invoice-total\" id=\"total-{cur}\" data-currency=\"{cur}\" data-total=\"{t}\">{tn} {cur}</td>\
         <td></td></tr></tfoot></table>",
        n = inv.lines.len(),
        t = inv.total,
        tn = number(&inv.total),
    );
    if !inv.corrections.is_empty() {
        corrections_html(out, ctx, inv);
    }
    out.push_str("</section>");
}

fn corrections_html(out: &mut String, ctx: &Context, inv: &Invoice) {
    let cur = escape(&inv.currency);
    let against = ctx.corrects.map_or_else(String::new, |r| format!(" against revision {r}"));
    let change: Decimal = inv.corrections.iter().map(|c| c.amount).sum();
    let issued = inv.total - change;
    let _ = write!(
        out,
        "<h3 class=\"corrections\">Corrections{against}</h3><p class=\"sub\">This revision corrects the final \
         revision{against} that was issued: each line below is the change of one invoice line (new minus issued); \
         a line that disappeared is negated, a new line appears whole.</p>\
         <table class=\"corrections\" data-corrects=\"{}\"><thead><tr><th>Customer</th><th>Contract</th>\
         <th>Charge</th><th class=\"n\">Quantity issued</th><th class=\"n\">Quantity now</th>\
         <th class=\"n\">Amount issued</th><th class=\"n\">Amount now</th><th class=\"n\">Change</th></tr></thead><tbody>",
        ctx.corrects.map_or_else(String::new, |r| r.to_string())
    );
    for c in &inv.corrections {
        let _ = write!(
            out,
            "<tr class=\"correction\" data-amount=\"{a}\"><td class=\"id\">{cust}</td><td class=\"id\">{k}</td>\
             <td>{charge}</td><td class=\"n\">{qb}</td><td class=\"n\">{qa}</td><td class=\"n\">{ab}</td>\
             <td class=\"n\">{aa}</td><td class=\"n{neg}\">{an}</td></tr>",
            a = c.amount,
            cust = escape(&c.customer_id),
            k = escape(&c.contract_id),
            charge = escape(&c.charge),
            qb = number(&c.quantity_before),
            qa = number(&c.quantity_after),
            ab = number(&c.amount_before),
            aa = number(&c.amount_after),
            an = number(&c.amount),
            neg = if c.amount.is_sign_negative() { " neg" } else { "" },
        );
    }
    let _ = write!(
        out,
        "</tbody><tfoot><tr><th colspan=\"7\">Total issued</th>\
         <td class=\"n issued-total\" data-currency=\"{cur}\" data-total=\"{issued}\">{issued_n} {cur}</td></tr>\
         <tr><th colspan=\"7\">Change</th><td class=\"n correction-total\" data-currency=\"{cur}\" \
         data-total=\"{change}\">{change_n} {cur}</td></tr><tr class=\"total\"><th colspan=\"7\">Total now</th>\
         <td class=\"n\">{total_n} {cur}</td></tr></tfoot></table>",
        issued_n = number(&issued),
        change_n = number(&change),
        total_n = number(&inv.total),
    );
}

/// A customer's section; `subtotals` holds its lines' count and sum per invoice of `s`.
fn customer_html(out: &mut String, ctx: &Context, s: &Statement, c: &Customer, subtotals: &[(usize, Decimal)]) {
    let _ = write!(
        out,
        "<section class=\"customer\" data-customer=\"{id}\"><h3>{name} <span class=\"id\">{id}</span></h3>",
        id = escape(&c.party.id),
        name = escape(&c.party.name),
    );
    for (inv, &(n, sub)) in s.invoices.iter().zip(subtotals) {
        if n == 0 {
            continue;
        }
        let _ = write!(
            out,
            "<p>{n} line{s} for <span class=\"subtotal\" data-currency=\"{cur}\" data-subtotal=\"{sub}\">{sn} {cur}</span></p>",
            s = if n == 1 { "" } else { "s" },
            cur = escape(&inv.currency),
            sn = number(&sub),
        );
    }
    if c.beneath {
        out.push_str(
            "<p class=\"sub\">It owns no storage account: the usage shown is that of every account beneath it.</p>",
        );
    }
    out.push_str(&daily_chart(&c.daily, ctx.month, ctx.unit, &c.party.name));
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
            let _ = write!(
                out,
                "<tr><td class=\"id\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&a.id),
                escape(&a.company),
                number(&a.byte_days),
                number(&a.tb_months),
                a.observed_days,
                a.filled_days
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn findings_html(out: &mut String, ctx: &Context, s: &Statement) {
    out.push_str("<h2>Findings</h2>");
    if s.findings.is_empty() {
        let _ = write!(out, "<p>No finding concerns {} or anyone beneath it.</p>", escape(&s.buyer.name));
        return;
    }
    let _ = write!(
        out,
        "<table class=\"findings\"><thead><tr><th>Kind</th><th>Subject</th><th>Detail</th>\
         <th class=\"n\">Byte-days</th><th class=\"n\">{}s</th></tr></thead><tbody>",
        ctx.unit.line_unit()
    );
    for f in &s.findings {
        let opt = |d: &Option<Decimal>| d.as_ref().map_or_else(String::new, number);
        let _ = write!(
            out,
            "<tr class=\"finding\"><td>{}</td><td class=\"id\">{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape(&f.kind),
            escape(&f.subject_id),
            escape(&f.detail),
            opt(&f.byte_days),
            opt(&f.tb_months)
        );
    }
    out.push_str("</tbody></table>");
}

/// The index of a revision's statements.
pub(super) fn index_page(ctx: &Context, entries: &[IndexEntry]) -> String {
    let mut out = String::with_capacity(1024 + entries.len() * 400);
    head(&mut out, &format!("Statements {} revision {}", ctx.month, ctx.revision));
    let _ = write!(
        out,
        "<header><h1>Statements</h1><p class=\"meta\">Billing month <strong id=\"month\">{}</strong> · \
         revision <strong id=\"revision\">{}</strong> · {} · {} statements</p></header>\
         <table class=\"index\"><thead><tr><th>Seller</th><th>Buyer</th><th class=\"n\">Total</th><th></th>\
         </tr></thead><tbody>",
        ctx.month,
        ctx.revision,
        status_badge(ctx.status),
        entries.len()
    );
    for e in entries {
        let totals: Vec<String> = e
            .totals
            .iter()
            .map(|(cur, t)| {
                let cur = escape(cur);
                format!("<span data-currency=\"{cur}\" data-total=\"{t}\">{} {cur}</span>", number(t))
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}<div class=\"id\">{}</div></td><td><a href=\"{}\">{}</a><div class=\"id\">{}</div></td>\
             <td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&e.seller.name),
            escape(&e.seller.id),
            escape(&e.href),
            escape(&e.buyer.name),
            escape(&e.buyer.id),
            totals.join("<br>"),
            if e.corrected { "corrected" } else { "" }
        );
    }
    out.push_str("</tbody></table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn text_is_escaped_and_numbers_keep_their_digits() {
        assert_eq!(escape("a<b>&\"c'/ü"), "a&lt;b&gt;&amp;&quot;c&#39;/ü");
        let n = |s: &str| number(&Decimal::from_str(s).unwrap());
        assert_eq!(n("1260.34"), "1,260.34");
        assert_eq!(n("-1234567.000001"), "-1,234,567.000001");
        assert_eq!(n("999.10"), "999.10");
        assert_eq!(n("0"), "0");
        assert_eq!(n("100000"), "100,000");
    }
}
