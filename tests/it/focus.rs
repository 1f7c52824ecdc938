//! The FOCUS 1.2 export (`focus.parquet`, `focus.csv`): it ties out to the
//! invoices line by line and invoice by invoice, carries a reprocessed final
//! month's corrections, and passes the FinOps Foundation's validator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use bytes::Bytes;
use capbill::formats;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::util::*;

/// After October's grace period: runs publish final revisions.
const AFTER: &str = "2026-11-05T02:30:00Z";

/// What capbill supports of FOCUS's applicability criteria (README, "FOCUS export").
const CRITERIA: &str = "ACCOUNT_NAMING_SUPPORTED,SUB_ACCOUNT_SUPPORTED,USAGE_MEASUREMENT_SUPPORTED,\
                        UNIT_PRICING_SUPPORTED,NEGOTIATED_PRICING_SUPPORTED,PUBLIC_PRICE_LIST_SUPPORTED";

/// (seller, buyer, customer, contract, charge).
type Key = (String, String, String, String, String);

/// One FOCUS row as the tests read it back.
#[derive(Debug, Clone)]
struct FocusRow {
    key: Key,
    currency: String,
    correction: bool,
    billed: Decimal,
    quantity: Decimal,
    corrects: Option<u32>,
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The rows of a revision's `focus.parquet`.
fn focus_rows(rev: &Path) -> Vec<FocusRow> {
    let df = formats::read_parquet(Bytes::from(std::fs::read(rev.join("focus.parquet")).unwrap())).unwrap();
    let text = |n: &str| -> Vec<Option<String>> {
        let c = df.column(n).unwrap().str().unwrap().clone();
        (0..df.height()).map(|i| c.get(i).map(str::to_owned)).collect()
    };
    let (seller, buyer, customer, contract, charge, currency, class) = (
        text("x_SellerId"),
        text("BillingAccountId"),
        text("SubAccountId"),
        text("x_ContractId"),
        text("x_Charge"),
        text("BillingCurrency"),
        text("ChargeClass"),
    );
    let billed = formats::decimals(&df, "BilledCost").unwrap();
    let quantity = formats::decimals(&df, "PricingQuantity").unwrap();
    let corrects = df.column("x_CorrectsRevision").unwrap().u32().unwrap().clone();
    let corrects: Vec<Option<u32>> = (0..df.height()).map(|i| corrects.get(i)).collect();
    (0..df.height())
        .map(|i| FocusRow {
            key: (
                seller[i].clone().unwrap(),
                buyer[i].clone().unwrap(),
                customer[i].clone().unwrap(),
                contract[i].clone().unwrap(),
                charge[i].clone().unwrap(),
            ),
            currency: currency[i].clone().unwrap(),
            correction: match class[i].as_deref() {
                None => false,
                Some("Correction") => true,
                Some(other) => panic!("ChargeClass {other:?}"),
            },
            billed: billed[i],
            quantity: quantity[i],
            corrects: corrects[i],
        })
        .collect()
}

/// Key → (quantity, amount) of a table with the line key columns (`invoice_lines.csv`, `corrections.csv`).
fn keyed(path: &Path) -> BTreeMap<Key, (Decimal, Decimal)> {
    let cols: Vec<String> = ["seller_id", "buyer_id", "customer_id", "contract_id", "charge", "quantity", "amount"]
        .map(str::to_owned)
        .into();
    let rows = project(path, &cols);
    let n = rows.len();
    let map: BTreeMap<_, _> = rows
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()), (dec(&r[5]), dec(&r[6]))))
        .collect();
    assert_eq!(map.len(), n, "{}: duplicate line keys", path.display());
    map
}

/// (seller, buyer, currency) → total of a revision's `invoices.csv`.
fn invoice_totals(rev: &Path) -> BTreeMap<(String, String, String), Decimal> {
    let cols: Vec<String> = ["seller_id", "buyer_id", "currency", "total"].map(str::to_owned).into();
    project(&rev.join("invoices.csv"), &cols)
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone()), dec(&r[3])))
        .collect()
}

/// Every invoice line has exactly one FOCUS row (not a correction) with its
/// quantity and amount, and nothing else is a line; BilledCost summed per
/// (seller, buyer, currency) over those rows is the invoice total, to the cent.
fn assert_ties_out(rev: &Path, rows: &[FocusRow]) {
    let lines = keyed(&rev.join("invoice_lines.csv"));
    let mut seen: BTreeMap<&Key, usize> = BTreeMap::new();
    let mut totals: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.correction) {
        *seen.entry(&r.key).or_default() += 1;
        let (q, a) = lines.get(&r.key).unwrap_or_else(|| panic!("FOCUS row {:?} is no invoice line", r.key));
        assert_eq!((r.quantity, r.billed), (*q, *a), "FOCUS row of line {:?}", r.key);
        *totals.entry((r.key.0.clone(), r.key.1.clone(), r.currency.clone())).or_default() += r.billed;
    }
    for k in lines.keys() {
        assert_eq!(seen.get(k).copied().unwrap_or(0), 1, "invoice line {k:?} must have exactly one FOCUS row");
    }
    assert_eq!(totals, invoice_totals(rev), "BilledCost per (seller, buyer, currency) against invoices.csv");
}

/// The manifest lists both files with their row counts and checksums.
fn assert_listed(rev: &Path, rows: usize) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    for file in ["focus.parquet", "focus.csv"] {
        let entry = manifest["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["file"] == file)
            .unwrap_or_else(|| panic!("{file} is not in the manifest"));
        let data = std::fs::read(rev.join(file)).unwrap();
        assert_eq!(entry["sha256"], hex::encode(Sha256::digest(&data)), "{file}");
        assert_eq!(entry["rows"], rows, "{file}");
        assert_eq!(entry["bytes"], data.len(), "{file}");
    }
}

/// The example month, published once (final) into a temporary folder.
fn example_month(out: &Path) -> PathBuf {
    let (dir, usage) = (example().join("directory"), example().join("usage"));
    let args = month_args(&dir, &usage, out);
    let o = capbill_env(&args, &[("CAPBILL_NOW", AFTER.to_owned())]);
    assert!(o.status.success(), "{}", stderr(&o));
    latest_revision(out)
}

/// A copy of the example billed as a final October: the inputs, the
/// output, the directory and usage folders, and the environment (its clock).
fn final_example() -> (tempfile::TempDir, tempfile::TempDir, PathBuf, PathBuf, [(&'static str, String); 1]) {
    let inputs = example_copy();
    let out = tempfile::tempdir().unwrap();
    let (dir, usage) = (inputs.path().join("directory"), inputs.path().join("usage"));
    let env = [("CAPBILL_NOW", AFTER.to_owned())];
    let o = capbill_env(&month_args(&dir, &usage, out.path()), &env);
    assert!(o.status.success(), "{}", stderr(&o));
    (inputs, out, dir, usage, env)
}

/// A final October reprocessed after three changes: a higher reserved
/// capacity (a `Purchase` correction), a new price on the vendor's contract
/// with a deal line under it, and a corrected usage export (usage and
/// minimum lines move). Returns the inputs, the output and the two revisions.
fn corrected_month() -> (tempfile::TempDir, tempfile::TempDir, PathBuf, PathBuf) {
    let (inputs, out, dir, usage, env) = final_example();
    let edit = |file: &str, from: &str, to: &str| crate::util::edit(inputs.path(), file, from, to);
    edit("directory/contracts.csv", "K-DISTA-DP1,dist-a,dp-1,reserved,20,", "K-DISTA-DP1,dist-a,dp-1,reserved,22,");
    edit("directory/contracts.csv", "K-IC-MSPB,ic,msp-b,pay_per_use,,7.99,", "K-IC-MSPB,ic,msp-b,pay_per_use,,7.89,");
    edit("usage/daily/2026-10/sa-x1.csv", "2026-10-20,sa-x1,400019000000", "2026-10-20,sa-x1,900019000000");
    let mut args = month_args(&dir, &usage, out.path());
    args[0] = "reprocess";
    args.extend(["--reason", "corrected inputs"]);
    let o = capbill_env(&args, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let month = out.path().join("billing_month=2026-10");
    let (first, second) = (month.join("revision=1"), month.join("revision=2"));
    assert!(second.join("corrections.csv").exists(), "revision 2 corrects revision 1");
    (inputs, out, first, second)
}

#[test]
fn the_example_focus_export_has_one_row_per_line_and_ties_out_to_the_invoices() {
    let out = tempfile::tempdir().unwrap();
    let rev = example_month(out.path());
    let rows = focus_rows(&rev);
    assert!(rows.iter().all(|r| !r.correction && r.corrects.is_none()), "the first revision corrects nothing");
    assert_ties_out(&rev, &rows);
    assert_listed(&rev, rows.len());
    // The CSV holds the same rows.
    assert_eq!(read_csv(&rev.join("focus.csv")).1.len(), rows.len());

    // The same inputs give the same bytes.
    let again = tempfile::tempdir().unwrap();
    let rev2 = example_month(again.path());
    for file in ["focus.parquet", "focus.csv"] {
        assert_eq!(std::fs::read(rev.join(file)).unwrap(), std::fs::read(rev2.join(file)).unwrap(), "{file}");
    }
}

#[test]
fn the_example_focus_export_maps_charges_prices_and_periods() {
    let out = tempfile::tempdir().unwrap();
    let rev = example_month(out.path());
    let cols: Vec<String> = [
        "x_ContractId",
        "x_Charge",
        "SubAccountId",
        "ChargeCategory",
        "ChargeFrequency",
        "ListUnitPrice",
        "ContractedUnitPrice",
        "ConsumedQuantity",
        "PricingUnit",
        "ProviderName",
        "BillingAccountName",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "x_DealId",
    ]
    .map(str::to_owned)
    .into();
    let rows = project(&rev.join("focus.csv"), &cols);
    let lines = project(
        &rev.join("invoice_lines.csv"),
        &["contract_id", "charge", "customer_id", "unit_price", "quantity", "seller_name", "buyer_name", "deal_id"]
            .map(str::to_owned),
    );
    assert_eq!(rows.len(), lines.len());
    let contracts =
        project(&example().join("directory/contracts.csv"), &["contract_id", "unit_price"].map(str::to_owned));
    let contract_price = |id: &str| dec(&contracts.iter().find(|c| c[0] == id).unwrap()[1]);
    for (r, l) in rows.iter().zip(&lines) {
        assert_eq!((&r[0], &r[1], &r[2]), (&l[0], &l[1], &l[2]), "rows follow the invoice lines' order");
        let (category, frequency) =
            if l[1] == "reserved" { ("Purchase", "Recurring") } else { ("Usage", "Usage-Based") };
        assert_eq!((r[3].as_str(), r[4].as_str()), (category, frequency), "{l:?}");
        // The line's price is the contracted one; the list price is the
        // contract's own when a deal's special price replaced it.
        assert_eq!(dec(&r[6]), dec(&l[3]), "{l:?}");
        let list = if l[7].is_empty() { dec(&l[3]) } else { contract_price(&l[0]) };
        assert_eq!(dec(&r[5]), list, "{l:?}");
        let consumed = match l[1].as_str() {
            "reserved" => None,
            "minimum" => Some(Decimal::ZERO),
            _ => Some(dec(&l[4])),
        };
        assert_eq!(if r[7].is_empty() { None } else { Some(dec(&r[7])) }, consumed, "{l:?}");
        assert_eq!(r[8], "TB-Months");
        assert_eq!((&r[9], &r[10]), (&l[5], &l[6]));
        assert_eq!((r[11].as_str(), r[12].as_str()), ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"));
        assert_eq!(r[13], l[7]);
    }
    assert!(lines.iter().any(|l| !l[7].is_empty()), "the example has a deal line");
}

#[test]
fn a_reprocessed_final_month_carries_its_corrections_as_correction_rows() {
    let (_inputs, _out, first, second) = corrected_month();
    let rows = focus_rows(&second);
    // The revision's own lines tie out to its invoices.
    assert_ties_out(&second, &rows);
    assert_listed(&second, rows.len());
    // One Correction row per line of corrections.csv, with its delta.
    let corrections = keyed(&second.join("corrections.csv"));
    let got: BTreeMap<Key, (Decimal, Decimal)> =
        rows.iter().filter(|r| r.correction).map(|r| (r.key.clone(), (r.quantity, r.billed))).collect();
    assert_eq!(got.len(), rows.iter().filter(|r| r.correction).count(), "one row per correction");
    assert_eq!(got, corrections);
    assert!(rows.iter().filter(|r| r.correction).all(|r| r.corrects == Some(1)));
    assert!(got.keys().any(|k| k.4 == "reserved"), "a reserved (Purchase) line is corrected: {got:?}");
    // Per invoice, the correction rows add up to the change of its total.
    let (before, after) = (invoice_totals(&first), invoice_totals(&second));
    let mut per_invoice: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.correction) {
        *per_invoice.entry((r.key.0.clone(), r.key.1.clone(), r.currency.clone())).or_default() += r.billed;
    }
    for (inv, delta) in &per_invoice {
        let change = after.get(inv).copied().unwrap_or_default() - before.get(inv).copied().unwrap_or_default();
        assert_eq!(*delta, change, "corrections of invoice {inv:?}");
    }
    // Correction rows are charged in the corrected month.
    let cols: Vec<String> =
        ["ChargeClass", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory", "x_Charge"].map(str::to_owned).into();
    for r in project(&second.join("focus.csv"), &cols).iter().filter(|r| r[0] == "Correction") {
        assert_eq!((r[1].as_str(), r[2].as_str()), ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"));
        assert_eq!(r[3], if r[4] == "reserved" { "Purchase" } else { "Usage" });
    }
}

#[test]
fn a_month_billed_in_tib_prices_tib_months() {
    let out = tempfile::tempdir().unwrap();
    let ex = example();
    let o = run_month(&ex.join("directory"), &ex.join("usage"), out.path(), &["--unit", "tib"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    assert_ties_out(&rev, &focus_rows(&rev));
    let cols: Vec<String> = ["PricingUnit", "ConsumedUnit", "SkuId", "x_Charge"].map(str::to_owned).into();
    for r in project(&rev.join("focus.csv"), &cols) {
        assert_eq!(r[0], "TiB-Months");
        assert!(r[1] == "TiB-Months" || (r[1].is_empty() && r[3] == "reserved"), "{r:?}");
        assert_eq!(r[2], format!("{}-TiB-Months", r[3]));
    }
}

#[test]
fn ids_with_slashes_give_every_invoice_its_own_invoice_id() {
    // Joined by `/`, (x, y/z) and (x/y, z) read the same: x/y/z.
    let inputs = example_copy();
    for (from, to) in [("dist-a", "x"), ("dp-1", "y/z"), ("msp-b", "x/y"), ("cust-z", "z")] {
        rename(inputs.path(), from, to);
    }
    let (_out, rev) = bill_copy(inputs.path());
    let rows =
        project(&rev.join("focus.csv"), &["InvoiceId", "x_SellerId", "x_BuyerId", "BillingCurrency"].map(String::from));
    let mut invoice_of: BTreeMap<String, std::collections::BTreeSet<(String, String, String)>> = BTreeMap::new();
    for r in &rows {
        invoice_of.entry(r[0].clone()).or_default().insert((r[1].clone(), r[2].clone(), r[3].clone()));
    }
    for (id, invoices) in &invoice_of {
        assert_eq!(invoices.len(), 1, "{id} stands for {invoices:?}");
    }
    assert_eq!(invoice_of.len(), invoice_totals(&rev).len(), "one InvoiceId per invoice");
    assert!(invoice_of.contains_key("2026-10/x/y%2Fz/EUR/r1") && invoice_of.contains_key("2026-10/x%2Fy/z/EUR/r1"));
    assert_ties_out(&rev, &focus_rows(&rev));
}

#[test]
fn a_correction_for_a_customer_gone_from_the_directory_names_it_by_its_id() {
    let (_inputs, out, dir, usage, env) = final_example();
    // cust-x leaves: its contract and entity go, its storage account moves to cust-y.
    let edit = |file: &str, from: &str, to: &str| crate::util::edit(&dir, file, from, to);
    let drop_line = |file: &str, prefix: &str| {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.split_inclusive('\n').filter(|l| !l.starts_with(prefix)).collect();
        assert_eq!(kept.len() + 1, text.split_inclusive('\n').count(), "{file}: one line starts with {prefix:?}");
        std::fs::write(&path, kept.concat()).unwrap();
    };
    drop_line("contracts.csv", "K-DP1-X,");
    drop_line("entities.csv", "cust-x,");
    edit("storage_accounts.csv", "sa-x1,Xylo Logistics,cust-x,,", "sa-x1,Xylo Logistics,cust-y,,");
    let mut args = month_args(&dir, &usage, out.path());
    args[0] = "reprocess";
    args.extend(["--reason", "cust-x left"]);
    let o = capbill_env(&args, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    let cols: Vec<String> =
        ["ChargeClass", "SubAccountId", "SubAccountName", "BillingAccountName", "BilledCost"].map(str::to_owned).into();
    let gone: Vec<Vec<String>> =
        project(&rev.join("focus.csv"), &cols).into_iter().filter(|r| r[1] == "cust-x").collect();
    assert_eq!(gone.len(), 2, "cust-x's usage and minimum lines are corrected away: {gone:?}");
    for r in &gone {
        assert_eq!((r[0].as_str(), r[2].as_str(), r[3].as_str()), ("Correction", "cust-x", "cust-x"));
        assert!(r[4].starts_with('-'), "{r:?}");
    }
}

/// The validator: `CAPBILL_FOCUS_VALIDATOR` (set by scripts/test), else
/// where scripts/test installs it.
/// `text` (`-12.3400`) as an integer at `scale` decimals, exactly, however many digits.
fn mantissa_at(text: &str, scale: u32) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() as u32 <= scale, "{text} has more than {scale} decimals");
    let digits = format!("{int}{frac}{}", "0".repeat(scale as usize - frac.len()));
    digits.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn list_and_contracted_costs_are_exact_beyond_the_digits_of_a_decimal() {
    // The largest reservation and price the directory accepts: the cost
    // 10^8 × 999,999,999.999999 has 29 digits at 12 decimals, more than a
    // rust_decimal holds; it must be written whole, not rounded or mis-scaled.
    let inputs = example_copy();
    let contracts = inputs.path().join("directory/contracts.csv");
    let text = std::fs::read_to_string(&contracts).unwrap();
    let from = "K-IC-DISTA,ic,dist-a,reserved,50,6.00,7.50,";
    assert!(text.contains(from));
    std::fs::write(&contracts, text.replace(from, "K-IC-DISTA,ic,dist-a,reserved,100000000,999999999.999999,7.50,"))
        .unwrap();
    let (_out, rev) = bill_copy(inputs.path());
    let cols = [
        "x_ContractId",
        "x_Charge",
        "PricingQuantity",
        "ListUnitPrice",
        "ContractedUnitPrice",
        "ListCost",
        "ContractedCost",
        "BilledCost",
    ]
    .map(String::from);
    let rows = project(&rev.join("focus.csv"), &cols);
    let reserved: Vec<_> = rows.iter().filter(|r| r[0] == "K-IC-DISTA" && r[1] == "reserved").collect();
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0][5], "99999999999999900.000000000000", "10^8 × 999,999,999.999999");
    for r in &rows {
        let (quantity, price_scale) = (mantissa_at(&r[2], 6), r[3].split_once('.').map_or(0, |(_, f)| f.len() as u32));
        let cost_scale = 6 + price_scale;
        for (price, cost) in [(&r[3], &r[5]), (&r[4], &r[6])] {
            assert_eq!(mantissa_at(cost, cost_scale), quantity * mantissa_at(price, price_scale), "{r:?}");
        }
    }
    // The reservation's amount itself is rated as always, to the cent, and
    // the Parquet holds the same cost.
    let df = formats::read_parquet(Bytes::from(std::fs::read(rev.join("focus.parquet")).unwrap())).unwrap();
    let list = df.column("ListCost").unwrap().decimal().unwrap().clone();
    let at = rows.iter().position(|r| r[0] == "K-IC-DISTA" && r[1] == "reserved").unwrap();
    assert_eq!(list.physical().get(at), Some(99_999_999_999_999_900_000_000_000_000));
    assert_eq!(reserved[0][7], "99999999999999900.00");
}

fn validator() -> PathBuf {
    let path = std::env::var_os("CAPBILL_FOCUS_VALIDATOR").map(PathBuf::from).unwrap_or_else(|| {
        let tools = std::env::var_os("CAPBILL_TOOLS").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/capbill-tools")
        });
        tools.join("focus-validator-2.2.1/bin/focus-validator")
    });
    assert!(
        path.is_file(),
        "focus-validator not found at {} (CAPBILL_FOCUS_VALIDATOR): scripts/test installs focus-validator 2.2.1",
        path.display()
    );
    path
}

/// The folder holding the validator's package: it reads its currency codes
/// by a path relative to there, and its rule set lies there.
fn validator_site(validator: &Path) -> PathBuf {
    let python = validator.with_file_name("python");
    let o = Command::new(&python)
        .args(["-c", "import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

/// Rule id → the rules an `OR` composite of the validator's FOCUS 1.2 rule set is satisfied by.
fn or_composites(site: &Path) -> BTreeMap<String, Vec<String>> {
    let rules_dir = site.join("focus_validator/rules");
    let model = std::fs::read_dir(&rules_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("model-1.2"))
        .unwrap_or_else(|| panic!("no FOCUS 1.2 rule set in {}", rules_dir.display()));
    let model: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    model["ModelRules"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(id, rule)| {
            let req = &rule["ValidationCriteria"]["Requirement"];
            (req["CheckFunction"] == "OR").then(|| {
                let items = req["Items"].as_array().unwrap();
                let children =
                    items.iter().filter_map(|i| i["ModelRuleId"].as_str().map(str::to_owned)).collect::<Vec<_>>();
                (id.clone(), children)
            })
        })
        .filter(|(_, c)| !c.is_empty())
        .collect()
}

/// Outcome of every rule of a JUnit report: rule id → passed, failed or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

fn junit_outcomes(xml: &str) -> Vec<(String, Outcome, String)> {
    xml.split("<testcase ")
        .skip(1)
        .map(|case| {
            let case = case.split("</testcase>").next().unwrap_or(case);
            let name = case.split("name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
            let id = name.split(" :: ").next().unwrap_or(name).to_owned();
            let outcome = if case.contains("<failure") || case.contains("<error") {
                Outcome::Failed
            } else if case.contains("<skipped") {
                Outcome::Skipped
            } else {
                Outcome::Passed
            };
            let message = case.split("message=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
            (id, outcome, message.to_owned())
        })
        .collect()
}

/// What the validator said about one file.
struct Report {
    /// Every failed rule, with its message, but the branches of an `OR` rule that passed.
    failed: Vec<String>,
    /// Rules that passed.
    passed: Vec<String>,
}

/// Runs the validator offline on one file and reads its JUnit report.
fn validate(validator: &Path, site: &Path, ors: &BTreeMap<String, Vec<String>>, file: &Path) -> Report {
    let report = tempfile::NamedTempFile::new().unwrap();
    let o = Command::new(validator)
        .current_dir(site)
        .arg("--data-file")
        .arg(file)
        .args(["--validate-version", "1.2", "--block-download", "--applicability-criteria", CRITERIA])
        .args(["--output-type", "unittest", "--output-destination"])
        .arg(report.path())
        .output()
        .unwrap();
    let xml = std::fs::read_to_string(report.path()).unwrap_or_default();
    assert!(
        xml.contains("<testsuites"),
        "focus-validator wrote no JUnit report for {} (exit {:?}): {}",
        file.display(),
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    let outcomes = junit_outcomes(&xml);
    let passed: Vec<String> =
        outcomes.iter().filter(|(_, o, _)| *o == Outcome::Passed).map(|(id, _, _)| id.clone()).collect();
    let failed = outcomes
        .iter()
        .filter(|(_, o, _)| *o == Outcome::Failed)
        // FOCUS's "A or B" nullability rules (InvoiceId-C-003-C: null when
        // no invoice, else not null) report the branch that does not hold
        // as failed even when the rule itself passed.
        .filter(|(id, _, _)| !ors.iter().any(|(or, children)| children.contains(id) && passed.contains(or)))
        .map(|(id, _, message)| format!("{}: {id}: {message}", file.display()))
        .collect();
    Report { failed, passed }
}

#[test]
fn focus_validator_passes_on_the_example_and_on_a_corrected_month() {
    let validator = validator();
    let site = validator_site(&validator);
    let ors = or_composites(&site);
    assert!(ors.contains_key("InvoiceId-C-003-C"), "the rule set has changed: {:?}", ors.keys());
    let out = tempfile::tempdir().unwrap();
    let example = example_month(out.path());
    let (_inputs, _out, _first, corrected) = corrected_month();

    // A damaged copy of the example's export: no BilledCost, an unknown ChargeCategory.
    let damaged = out.path().join("damaged.parquet");
    let mut df = formats::read_parquet(Bytes::from(std::fs::read(example.join("focus.parquet")).unwrap())).unwrap();
    let n = df.height();
    df = df.drop("BilledCost").unwrap();
    df.with_column(polars::prelude::Column::new("ChargeCategory".into(), vec!["Bogus"; n])).unwrap();
    std::fs::write(&damaged, formats::write_parquet(&mut df).unwrap()).unwrap();

    let files: Vec<PathBuf> = [&example, &corrected]
        .iter()
        .flat_map(|rev| ["focus.parquet", "focus.csv"].map(|f| rev.join(f)))
        .chain([damaged])
        .collect();
    let mut reports: Vec<Report> = std::thread::scope(|scope| {
        let jobs: Vec<_> = files.iter().map(|f| scope.spawn(|| validate(&validator, &site, &ors, f))).collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    // The validator finds what is wrong with the damaged copy, and the
    // report is read: a failure would be seen.
    let damaged = reports.pop().unwrap();
    for rule in ["CostAndUsage-D-006-M", "ChargeCategory-C-003-M"] {
        assert!(damaged.failed.iter().any(|f| f.contains(&format!(": {rule}: "))), "{rule}: {:?}", damaged.failed);
    }
    for (file, report) in files.iter().zip(&reports) {
        assert!(report.passed.len() >= 150, "only {} rules passed on {}", report.passed.len(), file.display());
        // The mandatory columns and the rules this export depends on were checked.
        for rule in [
            "CostAndUsage-D-006-M",
            "CostAndUsage-D-026-M",
            "BilledCost-C-000-M",
            "ChargeCategory-C-000-M",
            "ChargeClass-C-000-M",
            "ConsumedQuantity-C-000-C",
            "ListCost-C-009-C",
            "ContractedUnitPrice-C-011-C",
            "SkuPriceId-C-000-C",
            "InvoiceId-C-003-C",
        ] {
            assert!(report.passed.iter().any(|p| p == rule), "{rule} did not pass on {}", file.display());
        }
    }
    let failed: Vec<&String> = reports.iter().flat_map(|r| &r.failed).collect();
    assert!(
        failed.is_empty(),
        "focus-validator 2.2.1 failed rules:\n  {}",
        failed.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn the_junit_reader_tells_failures_from_passes_and_skips() {
    let xml = r#"<testsuites><testsuite name="a"><testcase name="A-C-001-M :: Type" time="0" /></testsuite>
<testsuite><testcase name="B-C-002-M :: Format" time="0"><failure name="B" message="B must" type="AssertionError">Failed</failure></testcase></testsuite>
<testsuite><testcase name="C-C-003-M :: None" time="0"><error message="C broke" /></testcase></testsuite>
<testsuite><testcase name="D-C-004-M :: Type" time="0"><skipped message="n/a" /></testcase></testsuite></testsuites>"#;
    let got = junit_outcomes(xml);
    let summary: Vec<(&str, Outcome)> = got.iter().map(|(id, o, _)| (id.as_str(), *o)).collect();
    assert_eq!(
        summary,
        [
            ("A-C-001-M", Outcome::Passed),
            ("B-C-002-M", Outcome::Failed),
            ("C-C-003-M", Outcome::Failed),
            ("D-C-004-M", Outcome::Skipped)
        ]
    );
    assert_eq!(got[1].2, "B must");
}
