//! E-invoices (issue 18, spec 5): party data, VAT categories and amounts,
//! invoice numbers, UBL documents and credit notes, checked against the
//! hand-computed `fixtures/october-2026-einvoice/expected` and, with the
//! official EN 16931 rules, by `tests/einvoice/validate.py`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::*;

/// During October's grace period (provisional) and after it (final).
pub const GRACE: &str = "2026-11-02T02:30:00Z";

/// The e-invoice fixture.
pub fn fixture() -> PathBuf {
    root().join("fixtures/october-2026-einvoice")
}

/// A writable copy of the e-invoice example (directory, usage, config) and an output folder.
pub struct Month {
    pub inputs: tempfile::TempDir,
    pub out: tempfile::TempDir,
}

impl Month {
    pub fn new() -> Month {
        let inputs = tempfile::tempdir().unwrap();
        copy_tree(&fixture().join("directory"), &inputs.path().join("directory"));
        copy_tree(&example().join("usage"), &inputs.path().join("usage"));
        std::fs::copy(fixture().join("capbill.toml"), inputs.path().join("capbill.toml")).unwrap();
        Month { inputs, out: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.inputs.path().join(rel)
    }

    /// Replaces `from` with `to` in an input file (once at least).
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.path(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }

    pub fn cmd(&self, now: &str, cmd: &str, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![cmd.to_owned()];
        args.extend(extra.iter().map(|s| s.to_string()));
        for (flag, path) in [
            ("--config", self.path("capbill.toml")),
            ("--directory", self.path("directory")),
            ("--usage", self.path("usage")),
            ("--out", self.out.path().to_path_buf()),
        ] {
            args.push(flag.to_owned());
            args.push(path.to_str().unwrap().to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        capbill_env(&args, &[("CAPBILL_NOW", now.to_owned())])
    }

    pub fn run(&self, now: &str) -> Output {
        self.cmd(now, "run", &["--month", "2026-10"])
    }

    pub fn latest(&self) -> PathBuf {
        latest_revision(self.out.path())
    }
}

/// Runs and asserts success.
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "capbill failed ({:?}): {}", o.status.code(), stderr(&o));
    o
}

/// The findings of a revision as (kind, subject, detail).
fn findings(rev: &Path) -> Vec<Vec<String>> {
    project(&rev.join("findings.csv"), &["kind", "subject_id", "detail"].map(String::from))
}

#[test]
fn parties_lacking_data_get_a_finding_naming_the_entity_and_the_missing_columns_and_the_run_goes_on() {
    let m = Month::new();
    // cust-x (CH) loses its country; cust-y (FR, domestic to dp-1) keeps
    // its invoice without a VAT id; msp-b (a seller) loses its VAT id.
    m.edit("directory/entities.csv", "8001,CH,CHE123456789", "8001,,");
    m.edit("directory/entities.csv", "69006,FR,FR08552081317", "69006,FR,");
    m.edit("directory/entities.csv", "80331,DE,DE811907980", "80331,DE,");
    ok(m.run(GRACE));
    let rev = m.latest();
    let got: Vec<_> = findings(&rev).into_iter().filter(|f| f[0] == "einvoice_data_missing").collect();
    assert_eq!(
        got,
        [
            ["einvoice_data_missing", "cust-x", "missing country: no e-invoice for 1 invoice"],
            ["einvoice_data_missing", "msp-b", "missing vat_id: no e-invoice for 2 invoices"],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["counts"]["findings"]["einvoice_data_missing"], 2);
    // The rest of the run is the worked example's.
    let (header, expected) = read_csv(&example().join("expected/invoices.csv"));
    assert_eq!(project(&rev.join("invoices.csv"), &header), expected);
}

#[test]
fn a_domestic_invoice_without_a_rate_for_the_sellers_country_is_a_configuration_error() {
    let m = Month::new();
    m.edit("capbill.toml", "vat_rates = { DE = \"19\", FR = \"20\" }", "vat_rates = { DE = \"19\" }");
    let o = m.run(GRACE);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("no VAT rate for FR under [invoicing.vat_rates]: seller dist-a issues domestic invoices there"),
        "{}",
        stderr(&o)
    );
    assert!(!m.out.path().join("billing_month=2026-10/latest.json").exists(), "nothing published");
}

#[test]
fn bad_country_or_vat_id_exits_2_naming_table_row_and_column() {
    for (from, to, problem) in [
        (
            "20095,DE,DE349683436",
            "20095,Germany,DE349683436",
            "entities.csv row 1, column country = \"Germany\": not an ISO 3166-1 alpha-2 country code",
        ),
        (
            "75002,FR,FR40303265045",
            "75002,FR,DE40303265045",
            "entities.csv row 2, column vat_id = \"DE40303265045\": a VAT id of country FR is FR followed by",
        ),
    ] {
        let m = Month::new();
        m.edit("directory/entities.csv", from, to);
        let o = m.run(GRACE);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(problem), "{}", stderr(&o));
    }
}

/// After the grace period: the month is final.
pub const AFTER: &str = "2026-11-05T02:30:00Z";
/// Later in November: a reprocess.
pub const LATER: &str = "2026-11-20T08:00:00Z";

/// The text of the first `<tag>` element (with any attributes) after `from` in `xml`.
pub fn elem<'a>(xml: &'a str, tag: &str, from: usize) -> Option<&'a str> {
    let start = from + xml[from..].find(&format!("<{tag}"))?;
    let open_end = start + xml[start..].find('>')? + 1;
    let close = open_end + xml[open_end..].find(&format!("</{tag}>"))?;
    Some(&xml[open_end..close])
}

fn manifest(rev: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap()
}

/// Every `.xml` file under `dir`, sorted.
pub fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(xml_files(&p));
            } else if p.extension().is_some_and(|x| x == "xml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The Python of the venv `scripts/test` installs factur-x and saxonche into.
fn einvoice_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CAPBILL_EINVOICE_PY") {
        return PathBuf::from(p);
    }
    let tools = std::env::var_os("CAPBILL_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/capbill-tools"));
    tools.join("einvoice-venv/bin/python")
}

/// Runs the official EN 16931 rules (UBL 2.1 schema and CEN schematron) on
/// every document of `dirs`; fails listing each fatal error.
pub fn assert_valid_en16931(dirs: &[&Path], expected_documents: usize) {
    let py = einvoice_python();
    assert!(
        py.exists(),
        "{} is missing: run scripts/test (it installs factur-x and saxonche into its venv), or set CAPBILL_EINVOICE_PY",
        py.display()
    );
    let files: Vec<PathBuf> = dirs.iter().flat_map(|d| xml_files(d)).collect();
    assert_eq!(files.len(), expected_documents, "{files:?}");
    let o = std::process::Command::new(&py)
        .arg(root().join("tests/einvoice/validate.py"))
        .args(&files)
        .output()
        .expect("python starts");
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "EN 16931 validation failed:\n{report}{}", String::from_utf8_lossy(&o.stderr));
    assert!(report.contains(&format!("checked {expected_documents} documents: 0 fatal problems")), "{report}");
}

/// Per seller, the `n` of every number in the manifests of `revs`: 1..=max, none twice.
fn assert_gap_free(revs: &[PathBuf]) {
    let mut by_seller: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for rev in revs {
        for d in manifest(rev)["documents"].as_array().unwrap() {
            let number = d["number"].as_str().unwrap();
            let seller = d["seller_id"].as_str().unwrap();
            let n = number.strip_prefix(&format!("{seller}-2026-")).unwrap().parse().unwrap();
            by_seller.entry(seller.to_owned()).or_default().push(n);
        }
    }
    for (seller, mut ns) in by_seller {
        ns.sort();
        let expected: Vec<u64> = (1..=ns.len() as u64).collect();
        assert_eq!(ns, expected, "numbers of {seller}: no gap, no repeat");
    }
}

#[test]
fn the_final_example_month_publishes_one_valid_einvoice_per_invoice() {
    let m = Month::new();
    // Provisional: no documents, no numbers.
    ok(m.run(GRACE));
    let rev1 = m.latest();
    assert!(!rev1.join("einvoices").exists());
    assert!(project(&rev1.join("invoices.csv"), &["invoice_number".to_owned()]).iter().all(|r| r[0].is_empty()));
    assert!(!m.out.path().join("invoice_numbers").exists(), "a provisional revision takes no number");
    assert!(manifest(&rev1).get("documents").is_none());

    // Final: one document per invoice, as computed by hand.
    ok(m.run(AFTER));
    let rev = m.latest();
    let (header, expected) = read_csv(&fixture().join("expected/documents.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let invoices = project(
        &rev.join("invoices.csv"),
        &["seller_id", "buyer_id", "currency", "total", "invoice_number"].map(String::from),
    );
    assert_eq!(invoices.len(), expected.len());
    let man = manifest(&rev);
    let docs = man["documents"].as_array().unwrap();
    assert_eq!(docs.len(), expected.len());
    for (e, inv) in expected.iter().zip(&invoices) {
        let number = &e[col("number")];
        assert_eq!(&inv[..3], &e[..3], "invoice order");
        assert_eq!(&inv[4], number, "invoices.invoice_number of {}->{}", e[0], e[1]);
        let file = format!("einvoices/{}/{number}.xml", e[0]);
        let xml = std::fs::read_to_string(rev.join(&file)).unwrap();
        assert_eq!(elem(&xml, "cbc:ID", 0), Some(number.as_str()));
        // Every FOCUS row of the invoice's lines names its e-invoice.
        let focus = project(
            &rev.join("focus.csv"),
            &["x_SellerId", "x_BuyerId", "BillingCurrency", "x_InvoiceNumber"].map(String::from),
        );
        let rows: Vec<_> = focus.iter().filter(|r| r[..3] == inv[..3]).collect();
        assert!(!rows.is_empty() && rows.iter().all(|r| &r[3] == number), "focus rows of {}->{}: {rows:?}", e[0], e[1]);
        // The statement of the invoice names its e-invoice.
        let statement = std::fs::read_to_string(rev.join(format!("statements/{}/{}.html", e[0], e[1]))).unwrap();
        assert!(statement.contains(&format!("data-number=\"{number}\"")), "statement {}->{}", e[0], e[1]);
        assert_eq!(elem(&xml, "cbc:CustomizationID", 0), Some("urn:cen.eu:en16931:2017"));
        assert_eq!(elem(&xml, "cbc:InvoiceTypeCode", 0), Some("380"));
        assert_eq!(elem(&xml, "cbc:IssueDate", 0), Some("2026-11-05"));
        assert_eq!(elem(&xml, "cbc:StartDate", 0), Some("2026-10-01"));
        assert_eq!(elem(&xml, "cbc:EndDate", 0), Some("2026-10-31"));
        // Totals: the invoices table's total to the cent, VAT as computed by hand.
        let totals = xml.find("<cac:LegalMonetaryTotal>").unwrap();
        assert_eq!(elem(&xml, "cbc:LineExtensionAmount", totals), Some(inv[3].as_str()), "{file}");
        assert_eq!(elem(&xml, "cbc:LineExtensionAmount", totals), Some(e[col("net")].as_str()), "{file}");
        assert_eq!(elem(&xml, "cbc:TaxInclusiveAmount", totals), Some(e[col("gross")].as_str()), "{file}");
        assert_eq!(elem(&xml, "cbc:PayableAmount", totals), Some(e[col("gross")].as_str()), "{file}");
        let tax = xml.find("<cac:TaxTotal>").unwrap();
        assert_eq!(elem(&xml, "cbc:TaxAmount", tax), Some(e[col("vat")].as_str()), "{file}");
        let category = xml.find("<cac:TaxCategory>").unwrap();
        assert_eq!(elem(&xml, "cbc:ID", category), Some(e[col("category")].as_str()), "{file}");
        let rate = e[col("rate")].as_str();
        assert_eq!(
            elem(&xml[category..], "cbc:Percent", 0).filter(|_| !rate.is_empty()),
            (!rate.is_empty()).then_some(rate)
        );
        match e[col("category")].as_str() {
            "AE" => assert!(xml.contains("<cbc:TaxExemptionReasonCode>VATEX-EU-AE</cbc:TaxExemptionReasonCode>")),
            "O" => {
                assert!(xml.contains("<cbc:TaxExemptionReasonCode>VATEX-EU-O</cbc:TaxExemptionReasonCode>"));
                assert!(!xml.contains("<cac:PartyTaxScheme>"), "BR-O-02: no VAT ids on an O invoice");
                assert!(!xml.contains("<cbc:Percent>"), "O has no rate");
            }
            _ => assert!(!xml.contains("TaxExemptionReason")),
        }
        // One document line per invoice line.
        assert_eq!(
            xml.matches("<cac:InvoiceLine>").count(),
            docs.iter()
                .find(|d| d["number"] == *number)
                .map(|_| {
                    project(&rev.join("invoice_lines.csv"), &["seller_id", "buyer_id"].map(String::from))
                        .iter()
                        .filter(|l| l[0] == e[0] && l[1] == e[1])
                        .count()
                })
                .unwrap()
        );
        // The manifest lists the document and its checksum.
        let out = man["outputs"].as_array().unwrap().iter().find(|o| o["file"] == file.as_str()).unwrap();
        use sha2::Digest;
        assert_eq!(out["sha256"], hex::encode(sha2::Sha256::digest(xml.as_bytes())));
    }
    // Escaping: `&`, `<` and `>` of the directory are text, not markup.
    let w = std::fs::read_to_string(rev.join("einvoices/msp-b/msp-b-2026-1.xml")).unwrap();
    assert!(w.contains("Walden Archiv GmbH &amp; Co. KG") && w.contains("Am Markt &lt;1&gt;"), "{w}");

    // An unchanged rerun publishes nothing and takes no number.
    let numbers_before =
        xml_files(m.out.path()).len() + std::fs::read_dir(m.out.path().join("invoice_numbers/ic")).unwrap().count();
    let o = ok(m.run(LATER));
    assert!(String::from_utf8_lossy(&o.stdout).contains("unchanged"), "{}", String::from_utf8_lossy(&o.stdout));
    let numbers_after =
        xml_files(m.out.path()).len() + std::fs::read_dir(m.out.path().join("invoice_numbers/ic")).unwrap().count();
    assert_eq!(numbers_before, numbers_after);

    assert_valid_en16931(&[&rev.join("einvoices")], expected.len());
}

#[test]
fn vat_is_rounded_once_per_invoice_where_rounding_per_line_would_differ_by_a_cent() {
    use rust_decimal::prelude::*;
    let m = Month::new();
    ok(m.run(AFTER));
    let rev = m.latest();
    // dp-1 -> cust-y: three lines at the French 20 %.
    let lines = project(&rev.join("invoice_lines.csv"), &["seller_id", "buyer_id", "amount"].map(String::from));
    let amounts: Vec<Decimal> =
        lines.iter().filter(|l| l[0] == "dp-1" && l[1] == "cust-y").map(|l| l[2].parse().unwrap()).collect();
    assert_eq!(amounts.len(), 3, "mixed lines: usage, overage, reserved");
    let rate = Decimal::new(20, 2);
    let round = |d: Decimal| d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let per_line: Decimal = amounts.iter().map(|a| round(a * rate)).sum();
    let once = round(amounts.iter().sum::<Decimal>() * rate);
    assert_ne!(per_line, once, "the fixture is a case where the two differ");
    let number = &project(&rev.join("invoices.csv"), &["buyer_id", "invoice_number"].map(String::from))
        .into_iter()
        .find(|r| r[0] == "cust-y")
        .unwrap()[1];
    let xml = std::fs::read_to_string(rev.join(format!("einvoices/dp-1/{number}.xml"))).unwrap();
    let tax = xml.find("<cac:TaxTotal>").unwrap();
    assert_eq!(elem(&xml, "cbc:TaxAmount", tax), Some(format!("{once:.2}").as_str()));
}

#[test]
fn a_reprocess_credits_changed_and_disappeared_invoices_and_reissues_changed_ones_without_gaps() {
    let m = Month::new();
    ok(m.run(AFTER));
    let rev1 = m.latest();
    let number_of = |rev: &Path, seller: &str, buyer: &str| {
        project(&rev.join("invoices.csv"), &["seller_id", "buyer_id", "invoice_number"].map(String::from))
            .into_iter()
            .find(|r| r[0] == seller && r[1] == buyer)
            .map(|r| r[2].clone())
    };
    let z1 = number_of(&rev1, "msp-b", "cust-z").unwrap();
    let w1 = number_of(&rev1, "msp-b", "cust-w").unwrap();
    let dp1 = number_of(&rev1, "dist-a", "dp-1").unwrap();
    // cust-z's price changes; dist-a's contract with dp-1 starts in November
    // (its October invoice disappears); the rest is unchanged.
    m.edit(
        "directory/contracts.csv",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,12.00",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,13.00",
    );
    m.edit(
        "directory/contracts.csv",
        "K-DISTA-DP1,dist-a,dp-1,reserved,20,7.00,8.50,,EUR,2026-01-01",
        "K-DISTA-DP1,dist-a,dp-1,reserved,20,7.00,8.50,,EUR,2026-11-01",
    );
    let o =
        ok(m.cmd(LATER, "reprocess", &["--month", "2026-10", "--reason", "price of cust-z, dp-1 starts in November"]));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("e-invoices: 1 invoice, 2 credit notes (einvoices/)"), "{summary}");
    let rev2 = m.latest();
    assert!(rev2.ends_with("revision=2"));
    let docs: Vec<(String, String, String, Option<String>)> = manifest(&rev2)["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["seller_id"].as_str().unwrap().to_owned(),
                d["buyer_id"].as_str().unwrap().to_owned(),
                d["credits"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let s = |v: &str| v.to_owned();
    assert_eq!(
        docs,
        [
            (s("credit_note"), s("dist-a"), s("dp-1"), Some(dp1.clone())),
            (s("credit_note"), s("msp-b"), s("cust-z"), Some(z1.clone())),
            (s("invoice"), s("msp-b"), s("cust-z"), None),
        ]
    );
    // The unchanged invoice keeps its number; the changed one has a new one; the gone one is gone.
    assert_eq!(number_of(&rev2, "msp-b", "cust-w"), Some(w1));
    let z2 = number_of(&rev2, "msp-b", "cust-z").unwrap();
    assert_ne!(z2, z1);
    assert_eq!(number_of(&rev2, "dist-a", "dp-1"), None);
    // The credit note repeats the issued invoice in full: its totals are the old document's.
    let credit = manifest(&rev2)["documents"][1]["number"].as_str().unwrap().to_owned();
    let old = std::fs::read_to_string(rev1.join(format!("einvoices/msp-b/{z1}.xml"))).unwrap();
    let cn = std::fs::read_to_string(rev2.join(format!("einvoices/msp-b/{credit}.xml"))).unwrap();
    assert_eq!(elem(&cn, "cbc:CreditNoteTypeCode", 0), Some("381"));
    let billing_ref = cn.find("<cac:BillingReference>").unwrap();
    assert_eq!(elem(&cn, "cbc:ID", billing_ref), Some(z1.as_str()));
    for tag in ["cbc:PayableAmount", "cbc:TaxInclusiveAmount", "cbc:LineExtensionAmount"] {
        let (a, b) = (old.find("<cac:LegalMonetaryTotal>").unwrap(), cn.find("<cac:LegalMonetaryTotal>").unwrap());
        assert_eq!(elem(&old, tag, a), elem(&cn, tag, b), "{tag}");
    }
    // The new invoice totals equal the new invoices table.
    let total = project(&rev2.join("invoices.csv"), &["buyer_id", "total"].map(String::from))
        .into_iter()
        .find(|r| r[0] == "cust-z")
        .unwrap()[1]
        .clone();
    let new = std::fs::read_to_string(rev2.join(format!("einvoices/msp-b/{z2}.xml"))).unwrap();
    assert_eq!(
        elem(&new, "cbc:LineExtensionAmount", new.find("<cac:LegalMonetaryTotal>").unwrap()),
        Some(total.as_str())
    );

    // Rerunning the reprocessed month changes nothing; numbers have no gap and no repeat.
    let o = ok(m.run(LATER));
    assert!(String::from_utf8_lossy(&o.stdout).contains("unchanged"));
    assert_gap_free(&[rev1.clone(), rev2.clone()]);
    assert_valid_en16931(&[&rev2.join("einvoices")], 3);
}

#[test]
fn a_credit_note_cancels_the_issued_invoice_with_the_vat_it_was_issued_with() {
    // Spec 5.4: the credit note cancels the issued document in full. Between
    // the final month and its reprocess Germany's rate changes (19 → 16) and
    // cust-z's price changes: msp-b's invoice to cust-z is credited with the
    // VAT it carried (19 %), and reissued at 16 %.
    let m = Month::new();
    ok(m.run(AFTER));
    let rev1 = m.latest();
    m.edit("capbill.toml", "vat_rates = { DE = \"19\"", "vat_rates = { DE = \"16\"");
    m.edit(
        "directory/contracts.csv",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,12.00",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,13.00",
    );
    ok(m.cmd(LATER, "reprocess", &["--month", "2026-10", "--reason", "price of cust-z; German VAT 16 %"]));
    let rev2 = m.latest();
    let doc = |rev: &Path, kind: &str, buyer: &str| {
        manifest(rev)["documents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind && d["seller_id"] == "msp-b" && d["buyer_id"] == buyer)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} of msp-b to {buyer}"))
    };
    let issued = doc(&rev1, "invoice", "cust-z");
    let credit = doc(&rev2, "credit_note", "cust-z");
    let reissued = doc(&rev2, "invoice", "cust-z");
    assert_eq!(credit["credits"], issued["number"]);
    for field in ["net", "vat", "gross", "vat_category", "vat_rate"] {
        assert_eq!(credit[field], issued[field], "{field}: the credit note cancels what was issued");
    }
    assert_eq!((issued["vat_category"].as_str(), issued["vat_rate"].as_str()), (Some("S"), Some("19")));
    assert_eq!(reissued["vat_rate"], "16", "the new invoice has the rate of now");
    // In the XML too: the credit note's VAT is the issued invoice's.
    let xml =
        |rev: &Path, d: &serde_json::Value| std::fs::read_to_string(rev.join(d["file"].as_str().unwrap())).unwrap();
    let (old, cn) = (xml(&rev1, &issued), xml(&rev2, &credit));
    let vat = |x: &str| elem(x, "cbc:TaxAmount", x.find("<cac:TaxTotal>").unwrap()).map(str::to_owned);
    assert_eq!(vat(&cn), vat(&old));
    assert_eq!(elem(&cn, "cbc:Percent", 0), Some("19"));
    assert_valid_en16931(&[&rev2.join("einvoices")], 2);
}

#[test]
fn a_credit_note_names_the_parties_the_invoice_was_issued_to_whatever_the_directory_says_now() {
    // dp-1 (FR) bills cust-y, moved to Germany with a VAT id: reverse charge
    // (AE). Before the reprocess cust-y moves to the US without a VAT id and
    // cust-x loses its country and VAT id, and both prices change. Both
    // issued invoices must still be cancelled (else their buyers pay twice),
    // each with the parties and category it was issued with (an AE credit
    // note without the buyer's VAT id breaks BR-AE-02); cust-x's new invoice
    // waits for its data.
    let m = Month::new();
    m.edit("directory/entities.csv", "69006,FR,FR08552081317", "69006,DE,DE129273399");
    ok(m.run(AFTER));
    let rev1 = m.latest();
    m.edit("directory/entities.csv", "69006,DE,DE129273399", "69006,US,");
    m.edit("directory/entities.csv", "8001,CH,CHE123456789", "8001,,");
    m.edit(
        "directory/contracts.csv",
        "K-DP1-Y-RES,dp-1,cust-y,reserved,10,9.00",
        "K-DP1-Y-RES,dp-1,cust-y,reserved,10,9.50",
    );
    m.edit("directory/contracts.csv", "K-DP1-X,dp-1,cust-x,pay_per_use,,9.90", "K-DP1-X,dp-1,cust-x,pay_per_use,,9.80");
    ok(m.cmd(LATER, "reprocess", &["--month", "2026-10", "--reason", "prices of cust-x and cust-y"]));
    let rev2 = m.latest();
    let docs = |rev: &Path| manifest(rev)["documents"].as_array().unwrap().clone();
    let issued = |buyer: &str| {
        docs(&rev1).into_iter().find(|d| d["buyer_id"] == buyer).unwrap_or_else(|| panic!("{buyer} was issued"))
    };
    let (x, y) = (issued("cust-x"), issued("cust-y"));
    assert_eq!(y["vat_category"], "AE");
    let now: Vec<(String, String, String)> = docs(&rev2)
        .iter()
        .map(|d| (d["kind"].as_str().unwrap().into(), d["buyer_id"].as_str().unwrap().into(), d["credits"].to_string()))
        .collect();
    assert_eq!(
        now,
        [
            ("credit_note".into(), "cust-x".into(), x["number"].to_string()),
            ("credit_note".into(), "cust-y".into(), y["number"].to_string()),
            ("invoice".into(), "cust-y".into(), "null".into()),
        ],
        "both issued invoices are cancelled; only cust-y's is reissued"
    );
    for d in docs(&rev2).iter().filter(|d| d["kind"] == "credit_note") {
        let was = if d["buyer_id"] == "cust-x" { &x } else { &y };
        for field in ["net", "vat", "gross", "vat_category", "vat_rate", "parties"] {
            assert_eq!(d[field], was[field], "{field} of the credit note to {}", d["buyer_id"]);
        }
    }
    let xml = |d: &serde_json::Value| std::fs::read_to_string(rev2.join(d["file"].as_str().unwrap())).unwrap();
    let credit_y = docs(&rev2).into_iter().find(|d| d["kind"] == "credit_note" && d["buyer_id"] == "cust-y").unwrap();
    assert!(xml(&credit_y).contains("DE129273399"), "the buyer's VAT id as issued");
    let finding = findings(&rev2).into_iter().find(|f| f[0] == "einvoice_data_missing" && f[1] == "cust-x");
    assert_eq!(finding.map(|f| f[2].clone()).as_deref(), Some("missing country: no e-invoice for 1 invoice"));
    assert_valid_en16931(&[&rev2.join("einvoices")], 3);
}

#[test]
fn a_renamed_customer_or_buyer_alone_issues_no_document() {
    // The names are party data: the lines bill the same, the corrections
    // are empty, so no credit note and no new invoice (README: a change of
    // party data alone issues nothing), and every invoice keeps its number.
    let m = Month::new();
    ok(m.run(AFTER));
    let rev1 = m.latest();
    m.edit("directory/entities.csv", "cust-z,Zephyr Clinics,", "cust-z,Zephyr Clinics Renamed & <Co>,");
    m.edit("directory/entities.csv", "msp-b,Bravo Managed Services,", "msp-b,Bravo MS,");
    ok(m.cmd(LATER, "reprocess", &["--month", "2026-10", "--reason", "new names"]));
    let rev2 = m.latest();
    assert_ne!(rev1, rev2);
    assert_eq!(manifest(&rev2)["documents"].as_array().map_or(0, Vec::len), 0, "{}", manifest(&rev2)["documents"]);
    assert!(xml_files(&rev2.join("einvoices")).is_empty());
    let numbers =
        |rev: &Path| project(&rev.join("invoices.csv"), &["seller_id", "buyer_id", "invoice_number"].map(String::from));
    assert_eq!(numbers(&rev2), numbers(&rev1));
    assert_eq!(std::fs::read_to_string(rev2.join("corrections.csv")).unwrap().lines().count(), 1, "header only");
}

#[test]
fn validate_einvoices_rechecks_the_documents_of_the_latest_revision() {
    let m = Month::new();
    ok(m.run(AFTER));
    let validate = || m.cmd(AFTER, "validate", &["--einvoices", "--month", "2026-10"]);
    let o = ok(validate());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(
            "e-invoices of 2026-10 revision 1: 7 documents match the manifest and the invoices table; 7 invoices carry a number"
        ),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let rev = m.latest();
    // A total changed after publishing: named, with the checksum.
    let f = rev.join("einvoices/ic/ic-2026-2.xml");
    let xml = std::fs::read_to_string(&f).unwrap();
    let payable = elem(&xml, "cbc:PayableAmount", 0).unwrap().to_owned();
    std::fs::write(&f, xml.replacen(&format!(">{payable}</cbc:PayableAmount>"), ">1.00</cbc:PayableAmount>", 1))
        .unwrap();
    // A document cut short: not well-formed.
    let g = rev.join("einvoices/dp-1/dp-1-2026-1.xml");
    let text = std::fs::read_to_string(&g).unwrap();
    std::fs::write(&g, &text[..text.len() / 2]).unwrap();
    let o = validate();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for expected in [
        "einvoices/ic/ic-2026-2.xml: its SHA-256 is not the manifest's",
        &format!("einvoices/ic/ic-2026-2.xml: amount payable 1.00 differs from the manifest's {payable}"),
        "einvoices/dp-1/dp-1-2026-1.xml: not well-formed XML",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    assert!(!err.contains("msp-b-2026-1"), "intact documents are not named: {err}");
}

#[test]
fn an_invoice_kept_from_its_document_by_missing_data_gets_it_in_the_reprocess_once_the_data_is_there() {
    let m = Month::new();
    m.edit("directory/entities.csv", "8001,CH,CHE123456789", "8001,,");
    ok(m.run(AFTER));
    let rev1 = m.latest();
    let numbers = |rev: &Path| project(&rev.join("invoices.csv"), &["buyer_id", "invoice_number"].map(String::from));
    let before = numbers(&rev1);
    assert!(before.iter().any(|r| r == &["cust-x", ""]), "{before:?}");
    assert_eq!(xml_files(&rev1.join("einvoices")).len(), 6);
    assert!(findings(&rev1).iter().any(|f| f[0] == "einvoice_data_missing" && f[1] == "cust-x"));

    m.edit("directory/entities.csv", "8001,,", "8001,CH,CHE123456789");
    ok(m.cmd(LATER, "reprocess", &["--month", "2026-10", "--reason", "cust-x's address"]));
    let rev2 = m.latest();
    let docs = manifest(&rev2)["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 1, "only the new invoice: {docs:?}");
    assert_eq!((docs[0]["kind"].as_str(), docs[0]["buyer_id"].as_str()), (Some("invoice"), Some("cust-x")));
    let after = numbers(&rev2);
    for (b, a) in before.iter().zip(&after) {
        if b[0] == "cust-x" {
            assert_eq!(Some(a[1].as_str()), docs[0]["number"].as_str());
        } else {
            assert_eq!(a, b, "an issued invoice keeps its number");
        }
    }
    assert_gap_free(&[rev1, rev2.clone()]);
    assert_valid_en16931(&[&rev2.join("einvoices")], 1);
}

#[test]
fn on_s3_the_documents_are_the_local_ones_and_numbers_are_taken_create_only_in_the_bucket() {
    use crate::s3_server::S3Server;
    let server = S3Server::start(&["billing", "usage-bucket"]);
    server.upload_tree("billing", "partner-directory", &fixture().join("directory"));
    server.upload_tree("usage-bucket", "exports", &example().join("usage"));
    let config = fixture().join("capbill.toml");
    let mut env = server.env();
    env.push(("CAPBILL_NOW", AFTER.to_owned()));
    let mut args = crate::s3::RUN_ARGS.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    ok(capbill_env(&args, &env));
    let local = Month::new();
    ok(local.run(AFTER));
    let bucket = server.bucket("billing").join("out");
    let bucket_rev = bucket.join("billing_month=2026-10/revision=1");
    let local_docs = xml_files(&local.latest().join("einvoices"));
    assert_eq!(local_docs.len(), 7);
    for f in &local_docs {
        let rel = f.strip_prefix(local.latest()).unwrap();
        let b =
            std::fs::read(bucket_rev.join(rel)).unwrap_or_else(|e| panic!("{} not in the bucket: {e}", rel.display()));
        assert!(std::fs::read(f).unwrap() == b, "{} differs between the local and the S3 run", rel.display());
    }
    for (seller, n) in [("ic", 2), ("dist-a", 1), ("dp-1", 2), ("msp-b", 2)] {
        for i in 1..=n {
            assert!(bucket.join(format!("invoice_numbers/{seller}/{i}.json")).exists(), "{seller} {i}");
        }
        assert!(!bucket.join(format!("invoice_numbers/{seller}/{}.json", n + 1)).exists());
    }
    let validate = [
        "validate",
        "--einvoices",
        "--month",
        "2026-10",
        "--config",
        config.to_str().unwrap(),
        "--out",
        "s3://billing/out",
    ];
    let o = ok(capbill_env(&validate, &env));
    assert!(String::from_utf8_lossy(&o.stdout).contains("7 documents match"), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_run_that_dies_after_taking_numbers_leaves_no_gap_its_rerun_reuses_them() {
    let m = Month::new();
    let mut args: Vec<String> = Vec::new();
    for (flag, path) in [
        ("--config", m.path("capbill.toml")),
        ("--directory", m.path("directory")),
        ("--usage", m.path("usage")),
        ("--out", m.out.path().to_path_buf()),
    ] {
        args.push(flag.to_owned());
        args.push(path.to_str().unwrap().to_owned());
    }
    let mut run = vec!["run", "--month", "2026-10"];
    run.extend(args.iter().map(String::as_str));
    let env = [("CAPBILL_NOW", AFTER.to_owned()), ("CAPBILL_FAILPOINT", "panic-after-numbers".to_owned())];
    let o = capbill_env(&run, &env);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let taken = |seller: &str| std::fs::read_dir(m.out.path().join("invoice_numbers").join(seller)).unwrap().count();
    assert_eq!(taken("ic"), 2, "the numbers were taken");
    assert!(!m.out.path().join("billing_month=2026-10/latest.json").exists(), "nothing published");

    ok(m.run(AFTER));
    let rev = m.latest();
    assert!(rev.ends_with("revision=1"));
    assert_eq!(taken("ic"), 2, "the rerun took no new number");
    let (_, expected) = read_csv(&fixture().join("expected/documents.csv"));
    let got = project(&rev.join("invoices.csv"), &["invoice_number".to_owned()]);
    assert_eq!(got, expected.iter().map(|e| vec![e[8].clone()]).collect::<Vec<_>>());
    assert_gap_free(&[rev]);
}
