//! The worked example of October 2026 against `expected/`, to the cent.

use crate::util::*;

#[test]
fn example_month_matches_expected_line_for_line() {
    let out = tempfile::tempdir().unwrap();
    let ex = example();
    let o = run_month(&ex.join("directory"), &ex.join("usage"), out.path(), &[]);
    assert!(o.status.success(), "capbill failed: {}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("13 invoice lines"), "{summary}");
    let rev = latest_revision(out.path());

    for table in ["invoice_lines", "invoices"] {
        let (header, expected) = read_csv(&ex.join(format!("expected/{table}.csv")));
        let got = project(&rev.join(format!("{table}.csv")), &header);
        assert_eq!(got.len(), expected.len(), "{table}: row count");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "{table} row {}: columns {header:?}", i + 1);
        }
    }

    // Findings: kind and subject exactly, and the worked example's `amount`
    // against the one column it means for each kind: TB-months for a missing
    // deal registration, byte-days for usage that is not billed (spec 2.5,
    // 3.3). A finding without an amount has neither.
    let (_, expected) = read_csv(&ex.join("expected/findings.csv"));
    let got = project(&rev.join("findings.csv"), &["kind", "subject_id", "byte_days", "tb_months"].map(String::from));
    let keys = |rows: &[Vec<String>]| {
        let mut k: Vec<_> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&got), keys(&expected), "findings: kind and subject");
    for e in &expected {
        let g = got.iter().find(|g| g[0] == e[0] && g[1] == e[1]).expect("matched above");
        let (byte_days, tb_months) = (&g[2], &g[3]);
        match (e[0].as_str(), e[3].as_str()) {
            (_, "") => assert!(byte_days.is_empty() && tb_months.is_empty(), "finding {} {}: {g:?}", e[0], e[1]),
            ("deal_registration_missing", amount) => assert_eq!(tb_months, amount, "finding {} {}", e[0], e[1]),
            (_, amount) => assert_eq!(byte_days, amount, "finding {} {}", e[0], e[1]),
        }
    }
}

#[test]
fn same_inputs_give_byte_identical_invoice_lines() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ex = example();
    for out in [&a, &b] {
        let o = run_month(&ex.join("directory"), &ex.join("usage"), out.path(), &[]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for file in ["invoice_lines.parquet", "invoice_lines.csv", "invoices.csv", "findings.csv", "account_usage.parquet"]
    {
        let x = std::fs::read(latest_revision(a.path()).join(file)).unwrap();
        let y = std::fs::read(latest_revision(b.path()).join(file)).unwrap();
        assert!(x == y, "{file} differs between two runs on the same inputs");
    }
}

#[test]
fn outputs_are_typed_and_the_manifest_describes_them() {
    let out = tempfile::tempdir().unwrap();
    let ex = example();
    let o = run_month(&ex.join("directory"), &ex.join("usage"), out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());

    let df = capbill::formats::read_parquet(std::fs::read(rev.join("invoice_lines.parquet")).unwrap().into()).unwrap();
    let dtype = |c: &str| df.column(c).unwrap().dtype().to_string();
    assert_eq!(dtype("quantity"), "decimal[38,6]");
    assert_eq!(dtype("amount"), "decimal[38,2]");
    assert_eq!(dtype("unit_price"), "decimal[38,2]");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["billing_month"], "2026-10");
    assert_eq!(manifest["usage"]["objects"].as_array().unwrap().len(), 4);
    assert_eq!(manifest["directory"]["objects"].as_array().unwrap().len(), 4);
    assert_eq!(manifest["totals"][0]["currency"], "EUR");
    assert_eq!(manifest["totals"][0]["total"], "2888.30");
    let outputs = manifest["outputs"].as_array().unwrap();
    // Four tables and the FOCUS export, each as Parquet and CSV, then the
    // statements (tests/it/statements.rs).
    let tables = outputs.iter().filter(|f| !f["file"].as_str().unwrap().starts_with("statements/")).count();
    assert_eq!(tables, 10);
    assert!(outputs.iter().any(|f| f["file"] == "focus.parquet") && outputs.iter().any(|f| f["file"] == "focus.csv"));
    for f in outputs {
        let data = std::fs::read(rev.join(f["file"].as_str().unwrap())).unwrap();
        use sha2::Digest;
        assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(&data)), "{}", f["file"]);
    }
    let lines = outputs.iter().find(|f| f["file"] == "invoice_lines.csv").unwrap();
    assert_eq!(lines["rows"], 13);

    // CSV decimals keep their full scale.
    let csv = std::fs::read_to_string(rev.join("invoice_lines.csv")).unwrap();
    assert!(csv.contains(",20.000000,TB-month,7.00,140.00,EUR,31,"), "{csv}");
}

#[test]
fn default_config_bills_the_bundled_example() {
    let out = tempfile::tempdir().unwrap();
    let o = capbill(&["run", "--month", "2026-10", "--out", out.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    assert_eq!(project(&rev.join("invoices.csv"), &["total".to_owned()]).len(), 7);
}

/// Splits the hourly export into one object per day (`dt=YYYY-MM-DD`), as
/// large sources write it, which makes capbill meter day by day as a stream.
fn split_hourly_by_day(usage: &std::path::Path) {
    let src = usage.join("hourly/2026-10/part-0000.csv");
    let text = std::fs::read_to_string(&src).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut days: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for l in lines {
        days.entry(l[..10].to_owned()).or_default().push(l);
    }
    std::fs::remove_file(&src).unwrap();
    for (day, rows) in days {
        let dir = usage.join(format!("hourly/dt={day}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-0.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    }
}

/// Bills a copy of the example whose usage `reshape` rewrote, checks that
/// its outputs equal the example's byte for byte, and returns its revision.
fn bills_like_the_example(reshape: fn(&std::path::Path), what: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let ex = example_copy();
    reshape(&ex.path().join("usage"));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), a.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_month(&example().join("directory"), &example().join("usage"), b.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in ["invoice_lines.csv", "account_usage.csv", "findings.csv"] {
        let x = std::fs::read(latest_revision(a.path()).join(file)).unwrap();
        let y = std::fs::read(latest_revision(b.path()).join(file)).unwrap();
        assert!(x == y, "{file} differs when {what}");
    }
    let rev = latest_revision(a.path());
    (a, rev)
}

#[test]
fn day_partitioned_objects_bill_exactly_like_one_object() {
    let (_out, rev) = bills_like_the_example(split_hourly_by_day, "the hourly export is split by day");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["usage"]["objects"].as_array().unwrap().len(), 3 + 31);
}

#[test]
fn a_record_outside_its_day_folder_is_malformed() {
    let ex = example_copy();
    split_hourly_by_day(&ex.path().join("usage"));
    let f = ex.path().join("usage/hourly/dt=2026-10-05/part-0.csv");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replacen("2026-10-05T06:00:00Z", "2026-10-09T06:00:00Z", 1)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("usage object hourly/dt=2026-10-05/part-0.csv row 3, field timestamp: a record of 2026-10-09 in an object under the folder of 2026-10-05"),
        "{}",
        stderr(&o)
    );
}

/// Rewrites the hourly CSV export as Parquet with typed columns (a UTC
/// timestamp in milliseconds, Int64 bytes), split into one object per day.
fn hourly_as_parquet(usage: &std::path::Path) {
    use polars::prelude::*;
    let src = usage.join("hourly/2026-10/part-0000.csv");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::remove_file(&src).unwrap();
    let mut days: std::collections::BTreeMap<String, Vec<(i64, String, String, i64)>> = Default::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let ts = chrono::DateTime::parse_from_rfc3339(f[0]).unwrap().timestamp_millis();
        days.entry(f[0][..10].to_owned()).or_default().push((
            ts,
            f[1].to_owned(),
            f[2].to_owned(),
            f[3].parse().unwrap(),
        ));
    }
    for (day, rows) in days {
        let ts = Series::new("timestamp".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .cast(&DataType::Datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC)))
            .unwrap();
        let mut df = DataFrame::new(
            rows.len(),
            vec![
                Column::new("storage_account_id".into(), rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>()),
                Column::new("bucket".into(), rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>()),
                ts.into_column(),
                Column::new("bytes".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
            ],
        )
        .unwrap();
        let dir = usage.join(format!("hourly/dt={day}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("part-0.parquet"), capbill::formats::write_parquet(&mut df).unwrap()).unwrap();
    }
}

#[test]
fn parquet_usage_bills_exactly_like_csv() {
    bills_like_the_example(hourly_as_parquet, "the hourly export is Parquet");
}
