//! Statements: one HTML page per invoice pair and an index per revision,
//! listed in the manifest, tying out to the `invoices` table, showing
//! corrections of a reprocessed month, self-contained, safe for any id, and
//! rendered by headless Chromium (PDF, PNG, DOM); and `capbill statement`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use capbill::export::statements::statement_file;
use capbill::storage::{decode_key_segment, key_segment};
use rust_decimal::Decimal;

use crate::util::*;

const AFTER: &str = "2026-11-05T02:30:00Z";

/// Every tag of `html` (from `<` to `>`) that contains `needle`.
pub fn tags_with<'a>(html: &'a str, needle: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = html[from..].find(needle) {
        let at = from + i;
        let start = html[..at].rfind('<').unwrap_or(0);
        let end = at + html[at..].find('>').unwrap_or(html.len() - at);
        out.push(&html[start..=end.min(html.len() - 1)]);
        from = end.max(at + needle.len());
    }
    out
}

/// The value of attribute `name` in `tag`.
pub fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let v = &tag[i..i + tag[i..].find('"')?];
    Some(
        v.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"),
    )
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The invoices of a revision: (seller, buyer) → currency → total.
pub fn invoices(rev: &Path) -> BTreeMap<(String, String), BTreeMap<String, Decimal>> {
    let cols = ["seller_id", "buyer_id", "currency", "total"].map(String::from);
    let mut out: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
    for r in project(&rev.join("invoices.csv"), &cols) {
        out.entry((r[0].clone(), r[1].clone())).or_default().insert(r[2].clone(), dec(&r[3]));
    }
    out
}

/// Checks that a statement's page (or its rendered DOM) shows each
/// invoice's total, and that its lines add up to it.
pub fn assert_totals(html: &str, what: &str, totals: &BTreeMap<String, Decimal>) {
    for (cur, total) in totals {
        let tags = tags_with(html, &format!("id=\"total-{cur}\""));
        assert_eq!(tags.len(), 1, "{what}: one total in {cur}");
        assert_eq!(attr(tags[0], "data-total").map(|t| dec(&t)), Some(*total), "{what}: total in {cur}");
    }
    let shown: Vec<_> = tags_with(html, "class=\"n invoice-total\"");
    assert_eq!(shown.len(), totals.len(), "{what}: no other invoice on the page");
    let lines: Decimal = tags_with(html, "class=\"line\"").iter().map(|t| dec(&attr(t, "data-amount").unwrap())).sum();
    assert_eq!(lines, totals.values().copied().sum::<Decimal>(), "{what}: lines add up to the totals");
}

/// Nothing on the page is fetched from elsewhere: no link to a network
/// address, no script, no external image, font or style sheet.
pub fn assert_self_contained(html: &str, what: &str) {
    let lower = html.to_lowercase();
    for bad in ["http:", "https:", "//", "<script", " src=", "@import", "url(", "<link", "<img", "<iframe", "<object"] {
        let hits: Vec<_> =
            lower.match_indices(bad).map(|(i, _)| &html[i.saturating_sub(40)..(i + 40).min(html.len())]).collect();
        assert!(hits.is_empty(), "{what} references something external ({bad}): {hits:?}");
    }
}

fn run_example(out: &Path, now: &str) -> PathBuf {
    let ex = example();
    let o = capbill_env(&month_args(&ex.join("directory"), &ex.join("usage"), out), &[("CAPBILL_NOW", now.to_owned())]);
    assert!(o.status.success(), "{}", stderr(&o));
    latest_revision(out)
}

#[test]
fn every_invoice_has_a_statement_in_the_manifest_whose_totals_are_the_invoices() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rev = run_example(a.path(), AFTER);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    let listed: BTreeMap<String, String> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["file"].as_str().unwrap().to_owned(), o["sha256"].as_str().unwrap().to_owned()))
        .collect();
    let invoices = invoices(&rev);
    assert_eq!(invoices.len(), 7);
    let index = std::fs::read_to_string(rev.join("statements/index.html")).unwrap();
    assert!(listed.contains_key("statements/index.html"));
    assert_self_contained(&index, "index");
    let rev_b = run_example(b.path(), AFTER);
    for ((seller, buyer), totals) in &invoices {
        let file = statement_file(seller, buyer);
        let data = std::fs::read(rev.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let sha = capbill::manifest::sha256_hex(&data);
        assert_eq!(listed.get(&file), Some(&sha), "{file} is listed in the manifest with its checksum");
        assert_eq!(std::fs::read(rev_b.join(&file)).unwrap(), data, "{file} is byte-identical in a second run");
        let html = String::from_utf8(data).unwrap();
        assert_totals(&html, &file, totals);
        assert_self_contained(&html, &file);
        assert!(html.contains("<svg class=\"chart\""), "{file} has a chart");
        assert!(html.contains("id=\"status\">final<"), "{file} shows the status");
        let href = file.strip_prefix("statements/").unwrap().replace('%', "%25");
        assert!(index.contains(&format!("href=\"{href}\"")), "the index links {file}");
    }
    // Six of the seven are statements, the index the seventh file under statements/.
    assert_eq!(listed.keys().filter(|f| f.starts_with("statements/")).count(), invoices.len() + 1);

    // A reseller's statement breaks its invoice down per customer and storage account.
    let msp = std::fs::read_to_string(rev.join(statement_file("ic", "msp-b"))).unwrap();
    assert!(msp.contains("Breakdown per customer"));
    for (customer, account) in [("cust-w", "sa-w1"), ("cust-z", "sa-z1"), ("msp-b", "sa-m1")] {
        let section = &msp[msp.find(&format!("data-customer=\"{customer}\"")).unwrap()..];
        let section = &section[..section.find("</section>").unwrap()];
        assert!(section.contains(&format!(">{account}<")), "{customer}: {account}");
        assert!(section.contains("<svg class=\"chart\""), "{customer}: chart");
    }
    // The findings that concern msp-b (beneath it: cust-w and its account sa-w1), not others'.
    assert!(msp.contains(">deal_registration_missing<") && msp.contains(">conflicting_samples<"));
    assert!(!msp.contains(">sa-x1<") && !msp.contains(">gap_filled<"));
    // The vendor's invoice to the distributor: its reservation, with the usage beneath it.
    let dist = std::fs::read_to_string(rev.join(statement_file("ic", "dist-a"))).unwrap();
    assert!(dist.contains(">gap_filled<") && dist.contains(">sa-y2<"), "usage and findings beneath dist-a");
}

#[test]
fn ids_with_spaces_slashes_markup_and_unicode_are_escaped_and_encoded_reversibly() {
    let inputs = example_copy();
    let (seller, buyer) = ("dp/1 <a>", "cust x&'/ä.. y");
    rename(inputs.path(), "dp-1", seller);
    rename(inputs.path(), "cust-x", buyer);
    rename(inputs.path(), "Xylo Logistics", "Xylo <b>&amp; \u{2603}");
    let (_out, rev) = bill_copy(inputs.path());
    let file = statement_file(seller, buyer);
    assert_eq!(file, "statements/dp%2F1%20%3Ca%3E/cust%20x%26%27%2F%C3%A4%2E%2E%20y.html");
    let segments: Vec<_> =
        file.trim_end_matches(".html").split('/').skip(1).map(|s| decode_key_segment(s).unwrap()).collect();
    assert_eq!(segments, [seller, buyer]);
    assert_eq!(key_segment(buyer), file.split('/').nth(2).unwrap().trim_end_matches(".html"));
    let html = std::fs::read_to_string(rev.join(&file)).unwrap();
    assert!(html.contains("Xylo &lt;b&gt;&amp;amp; \u{2603}"), "names are escaped");
    assert!(html.contains("cust x&amp;&#39;/ä.. y") && html.contains("dp/1 &lt;a&gt;"), "ids are escaped");
    assert!(!html.contains("<b>") && !html.contains("<a>"), "no markup from the inputs");
    let index = std::fs::read_to_string(rev.join("statements/index.html")).unwrap();
    assert!(
        index.contains("href=\"dp%252F1%2520%253Ca%253E/cust%2520x%2526%2527%252F%25C3%25A4%252E%252E%2520y.html\"")
    );
    assert_totals(&html, &file, &invoices(&rev)[&(seller.to_owned(), buyer.to_owned())]);
}

/// The example billed final, `file` edited (`from` → `to`), then reprocessed:
/// the inputs and output folders and revisions 1 and 2.
fn reprocessed(file: &str, from: &str, to: &str) -> (tempfile::TempDir, tempfile::TempDir, PathBuf, PathBuf) {
    let inputs = example_copy();
    let out = tempfile::tempdir().unwrap();
    let run = |cmd: &str, extra: &[&str]| -> Output {
        let mut v: Vec<String> = vec![cmd.to_owned()];
        v.extend(extra.iter().map(|s| s.to_string()));
        for (flag, path) in [
            ("--directory", inputs.path().join("directory")),
            ("--usage", inputs.path().join("usage")),
            ("--out", out.path().into()),
        ] {
            v.extend([flag.to_owned(), path.to_str().unwrap().to_owned()]);
        }
        let a: Vec<&str> = v.iter().map(String::as_str).collect();
        capbill_env(&a, &[("CAPBILL_NOW", AFTER.to_owned())])
    };
    assert!(run("run", &["--month", "2026-10"]).status.success());
    let path = inputs.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file}: {from}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let o = run("reprocess", &["--month", "2026-10", "--reason", "late export"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let month = out.path().join("billing_month=2026-10");
    let (rev1, rev2) = (month.join("revision=1"), month.join("revision=2"));
    (inputs, out, rev1, rev2)
}

/// Every statement of revision 2 (one per invoice, and one per invoice that
/// only corrections name) shows its correction lines, the total issued in
/// revision 1, the change and the total now, which tie out.
fn assert_corrections_shown(rev1: &Path, rev2: &Path) -> usize {
    let (before, mut after) = (invoices(rev1), invoices(rev2));
    let corrections =
        project(&rev2.join("corrections.csv"), &["seller_id", "buyer_id", "currency", "amount"].map(String::from));
    assert!(!corrections.is_empty());
    for c in &corrections {
        after.entry((c[0].clone(), c[1].clone())).or_default().entry(c[2].clone()).or_insert(Decimal::ZERO);
    }
    for ((seller, buyer), totals) in &after {
        let file = statement_file(seller, buyer);
        let html = std::fs::read_to_string(rev2.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_totals(&html, &file, totals);
        let mine: Vec<_> = corrections.iter().filter(|c| (&c[0], &c[1]) == (seller, buyer)).collect();
        let rows = tags_with(&html, "class=\"correction\"");
        assert_eq!(rows.len(), mine.len(), "{file}: one row per correction line");
        if mine.is_empty() {
            assert!(!html.contains("Corrections against"), "{file}");
            continue;
        }
        assert!(html.contains("Corrections against revision 1"), "{file}");
        for (cur, total) in totals {
            let change: Decimal = mine.iter().filter(|c| &c[2] == cur).map(|c| dec(&c[3])).sum();
            let shown = |class: &str| {
                let tags = tags_with(&html, &format!("class=\"n {class}\" data-currency=\"{cur}\""));
                dec(&attr(tags[0], "data-total").unwrap())
            };
            let issued = before.get(&(seller.clone(), buyer.clone())).and_then(|t| t.get(cur)).copied();
            assert_eq!(shown("correction-total"), change, "{file}: the change");
            assert_eq!(shown("issued-total"), issued.unwrap_or(Decimal::ZERO), "{file}: issued total");
            assert_eq!(shown("issued-total") + change, *total, "{file}: issued + change = now");
        }
    }
    after.len()
}

#[test]
fn a_reprocessed_month_shows_the_corrections_against_the_issued_revision() {
    let (_inputs, _out, rev1, rev2) =
        reprocessed("usage/daily/2026-10/sa-x1.csv", "2026-10-20,sa-x1,400019000000", "2026-10-20,sa-x1,900019000000");
    assert_eq!(assert_corrections_shown(&rev1, &rev2), 7);
    let corrected = std::fs::read_to_string(rev2.join(statement_file("dp-1", "cust-x"))).unwrap();
    assert_eq!(tags_with(&corrected, "class=\"correction\"").len(), 2, "cust-x's usage and minimum lines");
    // The first revision's statements stay as they were issued: no corrections.
    let issued = std::fs::read_to_string(rev1.join(statement_file("dp-1", "cust-x"))).unwrap();
    assert!(!issued.contains("class=\"correction\""));
}

#[test]
fn an_invoice_a_reprocess_removed_keeps_a_statement_of_its_corrections() {
    // sa-z1 was cust-w's all along: cust-z has no usage and no invoice left.
    let (_inputs, _out, rev1, rev2) =
        reprocessed("directory/storage_accounts.csv", "sa-z1,Zephyr Clinics,cust-z,", "sa-z1,Zephyr Clinics,cust-w,");
    assert!(invoices(&rev1).contains_key(&("msp-b".to_owned(), "cust-z".to_owned())));
    assert!(!invoices(&rev2).contains_key(&("msp-b".to_owned(), "cust-z".to_owned())));
    assert_eq!(assert_corrections_shown(&rev1, &rev2), 7, "six invoices and the one removed");
    let gone = std::fs::read_to_string(rev2.join(statement_file("msp-b", "cust-z"))).unwrap();
    assert!(gone.contains("No lines in this revision."));
    // Its usage heading says why it is empty rather than stand alone.
    assert!(gone.contains("<h2>Usage</h2><p>No usage is billed on this statement in this revision.</p>"), "{gone}");
}

#[test]
fn a_contract_whose_currency_changed_corrects_the_invoice_it_left_and_the_one_it_joined() {
    // cust-z's contract is billed in USD from the reprocess on: its line
    // leaves the EUR invoice (which is then empty) and joins a USD one.
    let (_inputs, _out, rev1, rev2) = reprocessed(
        "directory/contracts.csv",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,12.00,,1,EUR,",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,12.00,,1,USD,",
    );
    let pair = ("msp-b".to_owned(), "cust-z".to_owned());
    let (before, after) = (&invoices(&rev1)[&pair], &invoices(&rev2)[&pair]);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["EUR"]);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["USD"]);
    // Per invoice (seller, buyer, currency) the corrections sum to the change of its total.
    let corrections =
        project(&rev2.join("corrections.csv"), &["seller_id", "buyer_id", "currency", "amount"].map(String::from));
    let mine: Vec<_> = corrections.iter().filter(|c| (&c[0], &c[1]) == (&pair.0, &pair.1)).collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    for cur in ["EUR", "USD"] {
        let change: Decimal = mine.iter().filter(|c| c[2] == cur).map(|c| dec(&c[3])).sum();
        let total = |t: &BTreeMap<String, Decimal>| t.get(cur).copied().unwrap_or(Decimal::ZERO);
        assert_eq!(change, total(after) - total(before), "{cur}");
    }
    // The statement shows both: the EUR invoice cancelled, the USD one new.
    assert_corrections_shown(&rev1, &rev2);
    let html = std::fs::read_to_string(rev2.join(statement_file(&pair.0, &pair.1))).unwrap();
    let eur = tags_with(&html, "id=\"total-EUR\"");
    assert_eq!(attr(eur[0], "data-total").as_deref(), Some("0.00"), "an emptied invoice's total has its cents");
}

#[test]
fn ids_too_long_for_a_file_name_get_a_shortened_one_the_statement_command_finds() {
    // 251 bytes of id, and 28 CJK characters that encode to 252: longer than
    // a file system's 255-byte name once `.html` is added.
    let inputs = example_copy();
    let (long, cjk) = ("w".repeat(251), "日".repeat(28));
    rename(inputs.path(), "cust-w", &long);
    rename(inputs.path(), "cust-x", &cjk);
    let (out, rev) = bill_copy(inputs.path());
    let index = std::fs::read_to_string(rev.join("statements/index.html")).unwrap();
    let invoices = invoices(&rev);
    for (seller, buyer) in [("msp-b", long.as_str()), ("dp-1", cjk.as_str())] {
        let file = statement_file(seller, buyer);
        let name = file.rsplit('/').next().unwrap();
        assert!(name.len() <= 255 && name.contains('~'), "{name}");
        let html = std::fs::read_to_string(rev.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_totals(&html, &file, &invoices[&(seller.to_owned(), buyer.to_owned())]);
        let href = file.strip_prefix("statements/").unwrap().replace('%', "%25");
        assert!(index.contains(&format!("href=\"{href}\"")), "the index links {file}");
        let args = ["statement", "--out", out.path().to_str().unwrap(), "--month", "2026-10", "--seller", seller];
        let o = capbill(&[&args[..], &["--buyer", buyer]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), rev.join(&file).to_str().unwrap());
    }
    // A long id that is not a buyer there is still told apart.
    let other = format!("{}x", "w".repeat(251));
    let args = ["statement", "--out", out.path().to_str().unwrap(), "--month", "2026-10", "--seller", "msp-b"];
    let o = capbill(&[&args[..], &["--buyer", other.as_str()]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn the_statement_command_names_a_statement_copies_it_and_says_what_is_missing() {
    let out = tempfile::tempdir().unwrap();
    let rev = run_example(out.path(), AFTER);
    let root = out.path().to_str().unwrap();
    let cmd = |extra: &[&str]| {
        let mut args = vec!["statement", "--out", root];
        args.extend_from_slice(extra);
        capbill(&args)
    };
    let o = cmd(&["--month", "2026-10", "--seller", "ic", "--buyer", "msp-b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let file = rev.join(statement_file("ic", "msp-b"));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), file.to_str().unwrap());

    let copy = out.path().join("copy.html");
    let o = cmd(&[
        "--month",
        "2026-10",
        "--seller",
        "ic",
        "--buyer",
        "msp-b",
        "--revision",
        "1",
        "--output",
        copy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&file).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable like the published page, not a temporary file's 0600");
    }

    let fails = |extra: &[&str], expected: &str| {
        let o = cmd(extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{extra:?}: {}", stderr(&o));
    };
    fails(
        &["--month", "2026-10", "--seller", "ic", "--buyer", "cust-x"],
        "no statement for buyer cust-x of seller ic in 2026-10 revision 1; statements there: dist-a, msp-b",
    );
    fails(
        &["--month", "2026-10", "--seller", "nobody", "--buyer", "msp-b"],
        "no statement of seller nobody in 2026-10 revision 1; sellers there: dist-a, dp-1, ic, msp-b",
    );
    fails(
        &["--month", "2026-10", "--seller", "ic", "--buyer", "msp-b", "--revision", "3"],
        "billing month 2026-10 has no revision 3; revisions there: 1",
    );
    fails(
        &["--month", "2026-09", "--seller", "ic", "--buyer", "msp-b"],
        "billing month 2026-09 has no published revision under",
    );
    let nowhere = out.path().join("no such folder/copy.html");
    let nowhere = nowhere.to_str().unwrap();
    fails(
        &["--month", "2026-10", "--seller", "ic", "--buyer", "msp-b", "--output", nowhere],
        &format!("cannot write {nowhere}: the folder {} does not exist", out.path().join("no such folder").display()),
    );

    // `--output` a symbolic link into the revision: the link is replaced,
    // the published file it pointed at is left as it was.
    #[cfg(unix)]
    {
        let manifest = rev.join("manifest.json");
        let before = std::fs::read(&manifest).unwrap();
        let link = out.path().join("link.html");
        std::os::unix::fs::symlink(&manifest, &link).unwrap();
        let o = cmd(&["--month", "2026-10", "--seller", "ic", "--buyer", "msp-b", "--output", link.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read(&manifest).unwrap(), before, "the revision's manifest is untouched");
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(std::fs::read(&link).unwrap(), std::fs::read(&file).unwrap());
        let strays: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".capbill-statement-"))
            .collect();
        assert!(strays.is_empty(), "no temporary file is left: {strays:?}");
    }
}

/// The browser: `CAPBILL_CHROMIUM` (set by scripts/test), else `chromium` on PATH.
fn chromium() -> String {
    let browser = std::env::var("CAPBILL_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let probe = std::process::Command::new(&browser).arg("--version").output();
    match probe {
        Ok(o) if o.status.success() => browser,
        other => panic!(
            "headless Chromium is needed to render the statements but `{browser} --version` failed ({other:?}): \
             install it (`apt-get install -y chromium`; scripts/test does) or set CAPBILL_CHROMIUM to its path"
        ),
    }
}

/// Runs headless Chromium on `page` with `args`; returns its standard output.
fn render(browser: &str, page: &Path, args: &[String]) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-pdf-header-footer",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(format!("file://{}", page.display()))
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{browser} does not start: {e}"));
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("{browser} took more than 120 s on {}", page.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{browser} {args:?} on {}: {}", page.display(), String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// The text of a PDF, laid out as printed: `CAPBILL_PDFTOTEXT` (set by
/// scripts/test), else `pdftotext` on PATH.
fn pdf_text(pdf: &Path) -> String {
    let tool = std::env::var("CAPBILL_PDFTOTEXT").unwrap_or_else(|_| "pdftotext".to_owned());
    let o = std::process::Command::new(&tool)
        .args(["-layout", pdf.to_str().unwrap(), "-"])
        .output()
        .unwrap_or_else(|e| panic!("{tool} does not start ({e}): install poppler-utils (scripts/test does)"));
    assert!(o.status.success(), "{tool}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// An amount as a page shows it: thousands separated by commas (`1,260.34`).
fn shown_amount(amount: Decimal) -> String {
    let text = format!("{:.2}", amount.abs());
    let (int, frac) = text.split_once('.').unwrap();
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}.{frac}", if amount.is_sign_negative() { "-" } else { "" })
}

#[test]
fn a_printed_statement_wraps_long_ids_and_names_instead_of_cutting_off_the_amounts() {
    // A 71-character contract id and a 300-character name without a space:
    // before, the table ran past the A4 page and the amounts were cut off.
    let browser = chromium();
    let inputs = example_copy();
    let contract = format!("K-{}", "0123456789".repeat(7)[..69].to_owned());
    let name = "Z".repeat(300);
    rename(inputs.path(), "K-MSPB-Z", &contract);
    rename(inputs.path(), "Zephyr Clinics", &name);
    let (_out, rev) = bill_copy(inputs.path());
    let invoices = invoices(&rev);
    let shots = tempfile::tempdir().unwrap();
    for (seller, buyer) in [("msp-b", "cust-z"), ("ic", "msp-b")] {
        let file = statement_file(seller, buyer);
        let pdf = shots.path().join(format!("{buyer}.pdf"));
        render(&browser, &rev.join(&file), &[format!("--print-to-pdf={}", pdf.display())]);
        let text = pdf_text(&pdf);
        for (cur, total) in &invoices[&(seller.to_owned(), buyer.to_owned())] {
            let shown = format!("{} {cur}", shown_amount(*total));
            assert!(text.contains(&shown), "{file}: the printed page lacks its total {shown}:\n{text}");
            // The total is printed once, not again at the foot of every page.
            assert_eq!(text.matches("Total (").count(), 1, "{file}:\n{text}");
        }
        for header in ["Unit price", "Amount", "Deal"] {
            assert!(text.contains(header), "{file}: column {header} is cut off:\n{text}");
        }
    }
}

/// Width and height of a PNG image, from its header.
fn png_size(data: &[u8]) -> (u32, u32) {
    assert!(data.starts_with(b"\x89PNG\r\n\x1a\n") && &data[12..16] == b"IHDR", "not a PNG image");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&data[16..20]), be(&data[20..24]))
}

#[test]
fn statements_render_in_headless_chromium_to_pdf_and_png_with_the_invoice_totals() {
    let browser = chromium();
    let out = tempfile::tempdir().unwrap();
    let rev = run_example(out.path(), AFTER);
    let shots = tempfile::tempdir().unwrap();
    let invoices = invoices(&rev);
    for (i, ((seller, buyer), totals)) in invoices.iter().enumerate() {
        let file = statement_file(seller, buyer);
        let page = rev.join(&file);
        // The DOM as the browser built it: the chart is there and the totals
        // read from it are the invoices'.
        let dom = String::from_utf8(render(&browser, &page, &["--dump-dom".to_owned()])).unwrap();
        assert!(dom.contains("<svg class=\"chart\""), "{file}: no chart in the rendered DOM");
        assert!(dom.contains("class=\"bars\" d=\"M"), "{file}: the chart has no bar");
        assert_totals(&dom, &format!("{file} (rendered)"), totals);
        let (pdf, png) = (shots.path().join(format!("{i}.pdf")), shots.path().join(format!("{i}.png")));
        render(&browser, &page, &[format!("--print-to-pdf={}", pdf.display())]);
        render(&browser, &page, &["--window-size=1000,1400".to_owned(), format!("--screenshot={}", png.display())]);
        let pdf = std::fs::read(&pdf).unwrap();
        assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 10_000, "{file}: PDF of {} bytes", pdf.len());
        // Every page is A4 (595 × 842 points), as the page's @page asks.
        let text = String::from_utf8_lossy(&pdf);
        let boxes: Vec<(f64, f64)> = text
            .match_indices("/MediaBox [0 0 ")
            .map(|(i, m)| {
                let rest = &text[i + m.len()..];
                let mut wh = rest[..rest.find(']').unwrap()].split_whitespace().map(|v| v.parse::<f64>().unwrap());
                (wh.next().unwrap(), wh.next().unwrap())
            })
            .collect();
        assert!(!boxes.is_empty(), "{file}: no page in the PDF");
        assert!(
            boxes.iter().all(|(w, h)| (w - 595.3).abs() < 2.0 && (h - 841.9).abs() < 2.0),
            "{file}: pages are not A4: {boxes:?}"
        );
        let png = std::fs::read(&png).unwrap();
        assert_eq!(png_size(&png), (1000, 1400), "{file}: screenshot size");
        // A blank page compresses to a few KB; text, tables and a chart do not.
        assert!(png.len() > 30_000, "{file}: a screenshot of {} bytes is (nearly) blank", png.len());
    }
    let index =
        String::from_utf8(render(&browser, &rev.join("statements/index.html"), &["--dump-dom".to_owned()])).unwrap();
    assert_eq!(index.matches("<a href=").count(), invoices.len(), "the index links every statement");
}
