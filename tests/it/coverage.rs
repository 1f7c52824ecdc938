//! End-to-end cases no other test covers, each on a small directory built in
//! a temporary folder, with expected values worked out by hand: JSON Lines
//! usage, TiB with the daily maximum, two currencies, a leap February,
//! timestamps with offsets across UTC midnight, the choice between approved
//! deals and a deal's `valid_to`, and `deal_registration_missing` raised by
//! `reserved_tb`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::*;

const TB: u64 = 1_000_000_000_000;
const TIB: u64 = 1 << 40;

const ENTITIES: &str = "entity_id,name,kind,partner_type,parent_id\n";
const ACCOUNTS: &str = "storage_account_id,company_name,owner_id,created_on,deleted_on\n";
const CONTRACTS: &str = "contract_id,seller_id,buyer_id,model,reserved_tb,unit_price,overage_price,minimum_tb,currency,start_date,end_date\n";
const DEALS: &str = "deal_id,partner_id,customer_id,volume_tb,special_price,status,valid_from,valid_to\n";

/// A directory and usage folder of its own, and an output folder.
struct Case {
    inputs: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Case {
    /// The four directory tables: each argument is the rows after the header.
    fn new(entities: &str, accounts: &str, contracts: &str, deals: &str) -> Case {
        let case = Case { inputs: tempfile::tempdir().unwrap(), out: tempfile::tempdir().unwrap() };
        case.write("directory/entities.csv", &(ENTITIES.to_owned() + entities));
        case.write("directory/storage_accounts.csv", &(ACCOUNTS.to_owned() + accounts));
        case.write("directory/contracts.csv", &(CONTRACTS.to_owned() + contracts));
        case.write("directory/deals.csv", &(DEALS.to_owned() + deals));
        case
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.inputs.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Bills `month` at `now`; returns the revision folder.
    fn bill(&self, month: &str, now: &str, extra: &[&str]) -> PathBuf {
        let o = self.run(month, now, extra);
        assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(&o));
        latest_revision_of(self.out.path(), month)
    }

    fn run(&self, month: &str, now: &str, extra: &[&str]) -> Output {
        let (dir, usage) = (self.inputs.path().join("directory"), self.inputs.path().join("usage"));
        let mut args = month_args(&dir, &usage, self.out.path());
        args[2] = month;
        args.extend_from_slice(extra);
        capbill_env(&args, &[("CAPBILL_NOW", now.to_owned())])
    }
}

/// A daily CSV (`date,storage_account_id,bytes`) for `account` on `days` of `month`.
fn daily(month: &str, account: &str, days: impl IntoIterator<Item = (u32, u64)>) -> String {
    let mut s = "date,storage_account_id,bytes\n".to_owned();
    for (d, b) in days {
        s += &format!("{month}-{d:02},{account},{b}\n");
    }
    s
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// `(contract, customer, charge, quantity, unit_price, amount, currency, days, deal)` of every line.
fn lines(rev: &Path) -> Vec<Vec<String>> {
    project(
        &rev.join("invoice_lines.csv"),
        &s(&[
            "contract_id",
            "customer_id",
            "charge",
            "quantity",
            "unit_price",
            "amount",
            "currency",
            "days",
            "deal_id",
        ]),
    )
}

fn manifest(rev: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap()
}

const OCT_NOW: &str = "2026-11-10T00:00:00Z";

#[test]
fn json_lines_usage_bills_exactly_like_csv() {
    let ex = example_copy();
    let src = ex.path().join("usage/hourly/2026-10/part-0000.csv");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::remove_file(&src).unwrap();
    let mut jsonl = String::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (ts, account, bucket, bytes) = (f[0], f[1], f[2], f[3].parse::<u64>().unwrap());
        jsonl += &serde_json::json!({"timestamp": ts, "storage_account_id": account, "bucket": bucket, "bytes": bytes})
            .to_string();
        jsonl.push('\n');
    }
    std::fs::write(ex.path().join("usage/hourly/2026-10/part-0000.jsonl"), jsonl).unwrap();

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), a.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_month(&example().join("directory"), &example().join("usage"), b.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in ["invoice_lines.csv", "invoices.csv", "account_usage.csv", "findings.csv"] {
        let x = std::fs::read(latest_revision(a.path()).join(file)).unwrap();
        let y = std::fs::read(latest_revision(b.path()).join(file)).unwrap();
        assert!(x == y, "{file} differs when the hourly export is JSON Lines");
    }
    let keys: Vec<String> = manifest(&latest_revision(a.path()))["usage"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(keys.contains(&"hourly/2026-10/part-0000.jsonl".to_owned()), "{keys:?}");
}

#[test]
fn tib_and_the_daily_maximum_bill_end_to_end() {
    let case = Case::new(
        "ic,Vendor,vendor,,\nc,C,customer,,ic\n",
        "sa-c,C,c,,\n",
        "K-C,ic,c,pay_per_use,,10.00,,,EUR,2026-01-01,\n",
        "",
    );
    // Every day two snapshots of 2 TiB and 4 TiB, except Oct 1: 1 TiB and 5 TiB.
    let mut csv = "timestamp,storage_account_id,bytes\n".to_owned();
    for d in 1..=31u64 {
        let (lo, hi) = if d == 1 { (1, 5) } else { (2, 4) };
        csv += &format!("2026-10-{d:02}T03:00:00Z,sa-c,{}\n2026-10-{d:02}T15:00:00Z,sa-c,{}\n", lo * TIB, hi * TIB);
    }
    case.write("usage/2026-10/snapshots.csv", &csv);
    let rev = case.bill("2026-10", OCT_NOW, &["--unit", "tib", "--daily-method", "max"]);
    // Maximum: 5 + 30 × 4 = 125 TiB-days; /31 = 4.0322580… → 4.032258 TiB-months,
    // × 10.00 = 40.32258 → 40.32 (the mean would give 3 TiB-months, TB 4.43).
    assert_eq!(lines(&rev), [s(&["K-C", "c", "usage", "4.032258", "10.00", "40.32", "EUR", "31", ""])]);
    let unit = project(&rev.join("invoice_lines.csv"), &s(&["unit"]));
    assert_eq!(unit, [s(&["TiB-month"])]);
    // 125 × 2^40 = 137438953472000 byte-days.
    let usage = project(&rev.join("account_usage.csv"), &s(&["storage_account_id", "byte_days", "tb_months"]));
    assert_eq!(usage, [s(&["sa-c", "137438953472000", "4.032258"])]);
    assert_eq!(manifest(&rev)["settings"]["unit"], "tib");
    assert_eq!(manifest(&rev)["settings"]["daily_method"], "max");
}

#[test]
fn two_currencies_make_separate_invoices_and_totals() {
    let ex = example_copy();
    let append = |file: &str, rows: &str| {
        let path = ex.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(path, text + rows).unwrap();
    };
    // cust-v under msp-b, billed in CHF by msp-b; msp-b is billed in EUR by ic.
    append("directory/entities.csv", "cust-v,Vaud Storage SA,customer,,msp-b\n");
    append("directory/storage_accounts.csv", "sa-v1,Vaud Storage SA,cust-v,,\n");
    append("directory/contracts.csv", "K-MSPB-V,msp-b,cust-v,pay_per_use,,11.00,,,CHF,2026-01-01,\n");
    std::fs::write(
        ex.path().join("usage/daily/2026-10/sa-v1.csv"),
        daily("2026-10", "sa-v1", (1..=31).map(|d| (d, 2 * TB))),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    // 2 TB × 31 days / 31 = 2.000000 TB-months: × 7.99 = 15.98 EUR on ic → msp-b,
    // × 11.00 = 22.00 CHF on msp-b → cust-v.
    let v: Vec<_> = lines(&rev).into_iter().filter(|l| l[1] == "cust-v").collect();
    assert_eq!(
        v,
        [
            s(&["K-IC-MSPB", "cust-v", "usage", "2.000000", "7.99", "15.98", "EUR", "31", ""]),
            s(&["K-MSPB-V", "cust-v", "usage", "2.000000", "11.00", "22.00", "CHF", "31", ""]),
        ]
    );
    let invoices = project(&rev.join("invoices.csv"), &s(&["seller_id", "buyer_id", "currency", "total", "lines"]));
    // ic → msp-b: 975.22 + 15.98 = 991.20 EUR in 5 lines; the example's other invoices unchanged.
    assert_eq!(
        invoices,
        [
            s(&["dist-a", "dp-1", "EUR", "140.00", "1"]),
            s(&["dp-1", "cust-x", "EUR", "9.90", "2"]),
            s(&["dp-1", "cust-y", "EUR", "182.52", "3"]),
            s(&["ic", "dist-a", "EUR", "300.00", "1"]),
            s(&["ic", "msp-b", "EUR", "991.20", "5"]),
            s(&["msp-b", "cust-v", "CHF", "22.00", "1"]),
            s(&["msp-b", "cust-w", "EUR", "1260.34", "1"]),
            s(&["msp-b", "cust-z", "EUR", "20.32", "1"]),
        ]
    );
    // Totals per currency: EUR 2888.30 + 15.98 = 2904.28, CHF 22.00.
    let totals: Vec<(String, String)> = manifest(&rev)["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["currency"].as_str().unwrap().to_owned(), t["total"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(totals, [("CHF".to_owned(), "22.00".to_owned()), ("EUR".to_owned(), "2904.28".to_owned())]);
}

#[test]
fn a_leap_february_has_29_days() {
    let case = Case::new(
        "ic,Vendor,vendor,,\nd,D,customer,,ic\nc,C,customer,,ic\n",
        "sa-d,D,d,2028-02-10,\nsa-c,C,c,,\n",
        "K-D,ic,d,reserved,10,6.00,7.00,,EUR,2028-02-10,\nK-C,ic,c,pay_per_use,,5.00,,,EUR,2027-01-01,\n",
        "",
    );
    // sa-d: 1 TB from Feb 10; sa-c: 1 TB on Feb 1–28 and 3 TB on Feb 29.
    case.write("usage/d.csv", &daily("2028-02", "sa-d", (10..=29).map(|d| (d, TB))));
    case.write("usage/c.csv", &daily("2028-02", "sa-c", (1..=29).map(|d| (d, if d == 29 { 3 * TB } else { TB }))));
    let rev = case.bill("2028-02", "2028-03-10T00:00:00Z", &[]);
    assert_eq!(
        lines(&rev),
        [
            // (28 × 1 + 3) / 29 = 31/29 = 1.0689655… → 1.068966; × 5.00 = 5.34483 → 5.34.
            // The minimum 1 × 29/29 = 1 is below the usage: no minimum line.
            s(&["K-C", "c", "usage", "1.068966", "5.00", "5.34", "EUR", "29", ""]),
            // Feb 10–29 = 20 days: 10 × 20/29 = 6.8965517… → 6.896552; × 6.00 = 41.379312 → 41.38.
            // Used 20 × 1/29 = 0.689655 is below the allowance: no overage.
            s(&["K-D", "d", "reserved", "6.896552", "6.00", "41.38", "EUR", "20", ""]),
        ]
    );
    // sa-c: 28 + 3 = 31 TB-days; sa-d: 20 days of 1 TB.
    let usage = project(&rev.join("account_usage.csv"), &s(&["storage_account_id", "byte_days", "observed_days"]));
    assert_eq!(usage, [s(&["sa-c", "31000000000000", "29"]), s(&["sa-d", "20000000000000", "20"])]);
}

#[test]
fn offsets_assign_records_to_their_utc_day() {
    let case = Case::new(
        "ic,Vendor,vendor,,\nc,C,customer,,ic\n",
        "sa-c,C,c,,\n",
        "K-C,ic,c,pay_per_use,,10.00,,,EUR,2026-01-01,\n",
        "",
    );
    // 23:30 at -02:00 on Oct 5 is 01:30 UTC on Oct 6; 00:30 at +02:00 on Oct 6 is 22:30 UTC on Oct 5.
    case.write(
        "usage/offsets.csv",
        &format!(
            "timestamp,storage_account_id,bytes\n2026-10-01T00:00:00Z,sa-c,{}\n2026-10-05T23:30:00-02:00,sa-c,{}\n2026-10-06T00:30:00+02:00,sa-c,{}\n",
            TB,
            10 * TB,
            4 * TB
        ),
    );
    let rev = case.bill("2026-10", OCT_NOW, &[]);
    // Oct 1: 1 TB, Oct 2–4 filled with 1; Oct 5: 4 TB; Oct 6: 10 TB, Oct 7–31 filled with 10:
    // 4 × 1 + 4 + 26 × 10 = 268 TB-days; /31 = 8.6451612… → 8.645161; × 10.00 = 86.45161 → 86.45.
    // (Read by their local dates, Oct 5 would be 10 and Oct 6 onwards 4: 118 TB-days.)
    assert_eq!(lines(&rev), [s(&["K-C", "c", "usage", "8.645161", "10.00", "86.45", "EUR", "31", ""])]);
    let usage = project(&rev.join("account_usage.csv"), &s(&["byte_days", "observed_days", "filled_days"]));
    assert_eq!(usage, [s(&["268000000000000", "3", "28"])]);
}

/// The vendor bills MSP m, which bills customer z; z stores 2 TB all month.
fn deal_case(deals: &str) -> Case {
    let case = Case::new(
        "ic,Vendor,vendor,,\nm,M,channel_partner,msp,ic\nz,Z,customer,,m\n",
        "sa-z,Z,z,,\n",
        "K-IC-M,ic,m,pay_per_use,,8.00,,,EUR,2026-01-01,\nK-M-Z,m,z,pay_per_use,,12.00,,,EUR,2026-01-01,\n",
        deals,
    );
    case.write("usage/z.csv", &daily("2026-10", "sa-z", (1..=31).map(|d| (d, 2 * TB))));
    case
}

#[test]
fn the_latest_valid_deal_wins_then_the_smallest_id_and_valid_to_is_exclusive() {
    // All approved for z, C starts on Oct 1. DR-0 starts after Oct 1; DR-1 has the latest
    // start but ends on Oct 1 (exclusive); DR-2 and DR-3 start together after DR-9.
    let deals = "DR-9,m,z,150,6.00,approved,2026-09-01,\n\
                 DR-3,m,z,150,4.00,approved,2026-09-15,\n\
                 DR-2,m,z,150,5.00,approved,2026-09-15,2027-01-01\n\
                 DR-1,m,z,150,1.00,approved,2026-09-20,2026-10-01\n\
                 DR-0,m,z,150,0.50,approved,2026-10-02,\n\
                 DR-8,m,z,150,0.10,registered,2026-09-30,\n";
    let case = deal_case(deals);
    let rev = case.bill("2026-10", OCT_NOW, &[]);
    // DR-2 wins: 2.000000 TB-months × 5.00 = 10.00 on the vendor edge; m's own price on m → z.
    assert_eq!(
        lines(&rev),
        [
            s(&["K-IC-M", "z", "usage", "2.000000", "5.00", "10.00", "EUR", "31", "DR-2"]),
            s(&["K-M-Z", "z", "usage", "2.000000", "12.00", "24.00", "EUR", "31", ""]),
        ]
    );
    // DR-1 ending one day later is valid on Oct 1: the latest start wins, 2 × 1.00 = 2.00.
    let later = deal_case(&deals.replace("2026-09-20,2026-10-01", "2026-09-20,2026-10-02"));
    let rev = later.bill("2026-10", OCT_NOW, &[]);
    assert_eq!(lines(&rev)[0], s(&["K-IC-M", "z", "usage", "2.000000", "1.00", "2.00", "EUR", "31", "DR-1"]));
}

#[test]
fn reserved_capacity_above_100_tb_without_a_deal_is_reported() {
    // r, q and t (under MSP m) each reserve capacity and store 1 TB all month: r 150 TB with
    // a deal that ended on Oct 1 (valid_to is exclusive: no day of M), q exactly 100 TB,
    // t 150 TB with a deal still valid on Oct 1.
    let case = Case::new(
        "ic,Vendor,vendor,,\nm,M,channel_partner,msp,ic\nr,R,customer,,m\nq,Q,customer,,m\nt,T,customer,,m\n",
        "sa-r,R,r,,\nsa-q,Q,q,,\nsa-t,T,t,,\n",
        "K-M,ic,m,pay_per_use,,4.00,,,EUR,2026-01-01,\n\
         K-R,m,r,reserved,150,5.00,6.00,,EUR,2026-10-20,\n\
         K-Q,m,q,reserved,100,5.00,6.00,,EUR,2026-01-01,\n\
         K-T,m,t,reserved,150,5.00,6.00,,EUR,2026-01-01,\n",
        "DR-1,m,r,150,4.00,approved,2026-09-01,2026-10-01\nDR-2,m,t,150,4.00,approved,2026-09-01,2026-10-02\n",
    );
    for a in ["sa-r", "sa-q", "sa-t"] {
        case.write(&format!("usage/{a}.csv"), &daily("2026-10", a, (1..=31).map(|d| (d, TB))));
    }
    let rev = case.bill("2026-10", OCT_NOW, &[]);
    let found = project(&rev.join("findings.csv"), &s(&["kind", "subject_id", "byte_days", "tb_months"]));
    let deal: Vec<_> = found.iter().filter(|f| f[0] == "deal_registration_missing").collect();
    // Only r: 150 TB reserved (from Oct 20) is above 100 with 1 TB used. The amount is r's
    // usage over the month: 31 × 10^12 byte-days, 1.000000 TB-month.
    assert_eq!(deal, [&s(&["deal_registration_missing", "r", "31000000000000", "1.000000"])]);
}
