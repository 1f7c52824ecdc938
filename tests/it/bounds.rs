//! No panic reachable from the directory's numbers: every decimal column is
//! bounded at validation (below 10^9, at most 6 decimals), a contract at the
//! bounds is rated exactly, and a Parquet float column for a price or
//! quantity is refused instead of being cast to text.

use std::path::Path;

use crate::util::*;

const K: &str = "directory/contracts.csv";
const D: &str = "directory/deals.csv";

/// The largest value every decimal column accepts.
const AT_BOUND: &str = "999999999.999999";

/// Each decimal column: file, text of the example to replace, the same
/// text with `{v}` where the column's value goes, table and row.
const COLUMNS: [(&str, &str, &str, &str, usize, &str); 6] = [
    (K, "K-IC-DISTA,ic,dist-a,reserved,50,", "K-IC-DISTA,ic,dist-a,reserved,{v},", "contracts.csv", 1, "reserved_tb"),
    (
        K,
        "K-IC-DISTA,ic,dist-a,reserved,50,6.00,",
        "K-IC-DISTA,ic,dist-a,reserved,50,{v},",
        "contracts.csv",
        1,
        "unit_price",
    ),
    (
        K,
        "K-IC-DISTA,ic,dist-a,reserved,50,6.00,7.50,",
        "K-IC-DISTA,ic,dist-a,reserved,50,6.00,{v},",
        "contracts.csv",
        1,
        "overage_price",
    ),
    (
        K,
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,12.00,,1,",
        "K-MSPB-Z,msp-b,cust-z,pay_per_use,,12.00,,{v},",
        "contracts.csv",
        7,
        "minimum_tb",
    ),
    (D, "DR-1001,msp-b,cust-z,150,", "DR-1001,msp-b,cust-z,{v},", "deals.csv", 1, "volume_tb"),
    (D, "DR-1001,msp-b,cust-z,150,6.50,", "DR-1001,msp-b,cust-z,150,{v},", "deals.csv", 1, "special_price"),
];

/// `capbill validate` of the example with `column` set to `value`.
fn validate_with(column: usize, value: &str) -> std::process::Output {
    let (file, from, to, ..) = COLUMNS[column];
    let ex = example_copy();
    edit(ex.path(), file, from, &to.replace("{v}", value));
    let dir = ex.path().join("directory");
    capbill(&["validate", "--directory", dir.to_str().unwrap(), "--month", "2026-10"])
}

#[test]
fn every_decimal_column_at_its_bound_is_valid_and_above_it_refused_with_its_place() {
    for (i, &(_, _, _, table, row, column)) in COLUMNS.iter().enumerate() {
        for valid in [AT_BOUND, "000999999999.999999", "1.500000000"] {
            let o = validate_with(i, valid);
            assert!(o.status.success(), "{column} = {valid} is valid: {}", stderr(&o));
        }
        for (value, message) in [
            ("1000000000", "must be below 1000000000"),
            ("1000000000.000001", "must be below 1000000000"),
            ("99999999999999999999999999", "must be below 1000000000"),
            ("999999999999999999999999999999999999999999", "must be below 1000000000"),
            ("0.0000001", "must have at most 6 decimal places"),
            ("1.0000005", "must have at most 6 decimal places"),
        ] {
            let o = validate_with(i, value);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{column} = {value}: {err}");
            let expected = format!("{table} row {row}, column {column} = \"{value}\": {message}");
            assert!(err.contains(&expected), "{column} = {value}: expected {expected:?} in:\n{err}");
        }
    }
}

#[test]
fn a_reserved_tb_beyond_the_bound_is_refused_with_the_other_problems_not_a_panic() {
    const HUGE: &str = "K-IC-DISTA,ic,dist-a,reserved,99999999999999999999999999,";
    const PROBLEM: &str =
        "contracts.csv row 1, column reserved_tb = \"99999999999999999999999999\": must be below 1000000000";
    // Alone (the case of issue 14, which panicked in rating), then with another problem.
    for also in [None, Some((D, ",approved,", ",accepted,", "deals.csv row 1, column status = \"accepted\""))] {
        let ex = example_copy();
        edit(ex.path(), K, "K-IC-DISTA,ic,dist-a,reserved,50,", HUGE);
        let mut expected = vec![PROBLEM];
        if let Some((file, from, to, problem)) = also {
            edit(ex.path(), file, from, to);
            expected.push(problem);
        }
        let out = tempfile::tempdir().unwrap();
        let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        for e in expected {
            assert!(err.contains(e), "stderr should contain {e:?}:\n{err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing is published");
    }
}

#[test]
fn a_contract_at_the_bounds_is_rated_exactly_for_the_whole_month() {
    let ex = example_copy();
    let line = format!("K-IC-DISTA,ic,dist-a,reserved,{AT_BOUND},{AT_BOUND},{AT_BOUND},");
    edit(ex.path(), K, "K-IC-DISTA,ic,dist-a,reserved,50,6.00,7.50,", &line);
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    let cols = ["contract_id", "charge", "quantity", "unit_price", "amount", "days"].map(String::from);
    let lines = project(&rev.join("invoice_lines.csv"), &cols);
    let reserved: Vec<_> = lines.iter().filter(|l| l[0] == "K-IC-DISTA").collect();
    // (10^9 − 10^−6)² = 10^18 − 2·10^3 + 10^−12: 999999999999998000.00 to the cent.
    assert_eq!(
        reserved,
        [&["K-IC-DISTA", "reserved", AT_BOUND, AT_BOUND, "999999999999998000.00", "31"].map(String::from)]
    );
}

/// Rewrites `directory/contracts.csv` as `contracts.parquet`, every column
/// text but `unit_price`, which `typed` turns into its stored column.
fn contracts_as_parquet(root: &Path, typed: impl Fn(polars::prelude::Column) -> polars::prelude::Column) {
    use polars::prelude::*;
    let csv = root.join(K);
    let df = capbill::formats::read_csv_text(bytes::Bytes::from(std::fs::read(&csv).unwrap())).unwrap();
    let cols: Vec<Column> =
        df.columns().iter().map(|c| if c.name() == "unit_price" { typed(c.clone()) } else { c.clone() }).collect();
    let mut df = DataFrame::new(df.height(), cols).unwrap();
    std::fs::remove_file(&csv).unwrap();
    std::fs::write(root.join("directory/contracts.parquet"), capbill::formats::write_parquet(&mut df).unwrap())
        .unwrap();
}

#[test]
fn a_parquet_directory_bills_like_csv_and_a_float_price_column_is_refused() {
    use polars::prelude::DataType;
    let expected = {
        let out = tempfile::tempdir().unwrap();
        let ex = example();
        let o = run_month(&ex.join("directory"), &ex.join("usage"), out.path(), &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(latest_revision(out.path()).join("invoice_lines.csv")).unwrap()
    };
    // Text and decimal columns are read exactly.
    for (what, dtype) in [("text", None), ("decimal", Some(DataType::Decimal(38, 2)))] {
        let ex = example_copy();
        contracts_as_parquet(ex.path(), |c| dtype.as_ref().map_or(c.clone(), |t| c.cast(t).unwrap()));
        let out = tempfile::tempdir().unwrap();
        let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let got = std::fs::read(latest_revision(out.path()).join("invoice_lines.csv")).unwrap();
        assert!(got == expected, "{what} unit_price in Parquet bills like CSV");
    }
    // A float column cannot hold a price exactly: refused, naming table and column.
    for dtype in [DataType::Float64, DataType::Float32] {
        let ex = example_copy();
        contracts_as_parquet(ex.path(), |c| c.cast(&dtype).unwrap());
        let out = tempfile::tempdir().unwrap();
        let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{dtype}: {err}");
        let expected = format!(
            "contracts.parquet, column unit_price: floating-point column ({dtype}): \
             store prices and quantities as decimal, integer or text columns"
        );
        assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing is published");
    }
}
