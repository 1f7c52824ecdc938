//! Bad input: every validation error and malformed-record kind stops the run
//! with exit code 2, a message naming the place, and nothing published.

use crate::util::*;

/// Runs the edited example and checks the refusal.
fn refused(case: &str, edits: &[(&str, &str, &str)], expected: &[&str]) {
    let ex = example_copy();
    for (file, from, to) in edits {
        edit(ex.path(), file, from, to);
    }
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{case}: exit code; stderr: {err}");
    for e in expected {
        assert!(err.contains(e), "{case}: stderr should contain {e:?}:\n{err}");
    }
    let published: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(published.is_empty(), "{case}: something was published");
}

const E: &str = "directory/entities.csv";
const A: &str = "directory/storage_accounts.csv";
const K: &str = "directory/contracts.csv";
const D: &str = "directory/deals.csv";

#[test]
fn directory_validation_errors_name_table_row_column_and_value() {
    refused(
        "unknown parent",
        &[(E, "cust-x,Xylo Logistics,customer,,dp-1", "cust-x,Xylo Logistics,customer,,dp-9")],
        &["entities.csv row 5, column parent_id = \"dp-9\": unknown parent"],
    );
    refused(
        "control character in an id",
        &[(A, "sa-x1,Xylo Logistics,cust-x", "sa-\u{1b}x1,Xylo Logistics,cust-x")],
        &[
            "storage_accounts.csv row 1, column storage_account_id = \"sa-\\u{1b}x1\": holds the control character U+001B; ids are printable text",
        ],
    );
    refused(
        "unknown owner",
        &[(A, "sa-x1,Xylo Logistics,cust-x", "sa-x1,Xylo Logistics,cust-q")],
        &["storage_accounts.csv row 1, column owner_id = \"cust-q\": unknown entity"],
    );
    refused(
        "cycle",
        &[(E, "dist-a,Alpha Distribution AG,distributor,,ic", "dist-a,Alpha Distribution AG,distributor,,dp-1")],
        &["entities.csv row 2, column parent_id = \"dp-1\": parent chain forms a cycle", "entities.csv row 3"],
    );
    refused(
        "two vendors",
        &[(E, "dist-a,Alpha Distribution AG,distributor,,ic", "dist-a,Alpha Distribution AG,vendor,,")],
        &["entities.csv row 2, column kind = \"vendor\": more than one vendor"],
    );
    refused(
        "seller not parent",
        &[(K, "K-DP1-X,dp-1,cust-x", "K-DP1-X,dist-a,cust-x")],
        &["contracts.csv row 3, column seller_id = \"dist-a\": seller is not the parent of buyer cust-x"],
    );
    refused(
        "overlap",
        &[(
            K,
            "K-DP1-Y-RES,dp-1,cust-y,reserved,10,9.00,11.00,,EUR,2026-10-16,",
            "K-DP1-Y-RES,dp-1,cust-y,reserved,10,9.00,11.00,,EUR,2026-10-15,",
        )],
        &[
            "contracts.csv row 5, column start_date = \"2026-10-15\": contract K-DP1-Y-RES overlaps contract K-DP1-Y-PPU",
        ],
    );
    refused(
        "missing reserved_tb",
        &[(K, "K-IC-DISTA,ic,dist-a,reserved,50,", "K-IC-DISTA,ic,dist-a,reserved,,")],
        &["contracts.csv row 1, column reserved_tb: required value is empty"],
    );
    refused(
        "bad enum",
        &[(K, "K-IC-MSPB,ic,msp-b,pay_per_use", "K-IC-MSPB,ic,msp-b,per_use")],
        &["contracts.csv row 6, column model = \"per_use\": model must be pay_per_use or reserved"],
    );
    refused(
        "bad date",
        &[(D, "2026-09-01,2027-09-01", "2026-09-31,2027-09-01")],
        &["deals.csv row 1, column valid_from = \"2026-09-31\": not a date (YYYY-MM-DD)"],
    );
    refused(
        "ragged row",
        &[(K, "K-MSPB-W,msp-b,cust-w,pay_per_use,,10.50", "K-MSPB-W,msp-b,cust-w,pay_per_use,,10,50")],
        &["contracts.csv row 8: 12 fields, the header has 11"],
    );
    refused(
        "bad decimal value",
        &[(K, "K-MSPB-W,msp-b,cust-w,pay_per_use,,10.50", "K-MSPB-W,msp-b,cust-w,pay_per_use,,1O.50")],
        &["contracts.csv row 8, column unit_price = \"1O.50\": not a decimal number"],
    );
    refused(
        "bad currency",
        &[(K, "7.99,,,EUR", "7.99,,,euro")],
        &["contracts.csv row 6, column currency = \"euro\": not an ISO 4217 currency code"],
    );
    refused(
        "all problems at once",
        &[
            (E, "cust-x,Xylo Logistics,customer,,dp-1", "cust-x,Xylo Logistics,client,,dp-1"),
            (D, ",approved,", ",accepted,"),
        ],
        &[
            "entities.csv row 5, column kind = \"client\"",
            "deals.csv row 1, column status = \"accepted\"",
            "2 problems",
        ],
    );
}

#[test]
fn missing_table_is_refused() {
    let ex = example_copy();
    std::fs::remove_file(ex.path().join(D)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no deals.csv or deals.parquet"), "{}", stderr(&o));
}

const DAILY: &str = "usage/daily/2026-10/sa-x1.csv";
const HOURLY: &str = "usage/hourly/2026-10/part-0000.csv";
const API: &str = "usage/partner-api/2026-10/export-2026-11-01T02-00Z.json";

#[test]
fn malformed_records_stop_the_run_naming_object_row_and_field() {
    refused(
        "unparsable bytes",
        &[(DAILY, "2026-10-03,sa-x1,400002000000", "2026-10-03,sa-x1,4OO002000000")],
        &[
            "usage object daily/2026-10/sa-x1.csv row 3, field bytes: \"4OO002000000\" is not an unsigned 64-bit integer",
        ],
    );
    refused(
        "negative bytes",
        &[(DAILY, "2026-10-03,sa-x1,400002000000", "2026-10-03,sa-x1,-400002000000")],
        &["usage object daily/2026-10/sa-x1.csv row 3, field bytes: \"-400002000000\" is negative"],
    );
    refused(
        "missing bytes",
        &[(HOURLY, "2026-10-01T06:00:00Z,sa-y1,media-raw,9010600000000", "2026-10-01T06:00:00Z,sa-y1,media-raw,")],
        &["usage object hourly/2026-10/part-0000.csv row 3, field bytes: missing"],
    );
    refused(
        "bad timestamp",
        &[(HOURLY, "2026-10-01T06:00:00Z,sa-y1,media-raw", "2026-10-01T25:00:00Z,sa-y1,media-raw")],
        &["usage object hourly/2026-10/part-0000.csv row 3, field timestamp"],
    );
    refused(
        "ragged usage row",
        &[(DAILY, "2026-10-03,sa-x1,400002000000", "2026-10-03,sa-x1,400002000000,x")],
        &["usage object daily/2026-10/sa-x1.csv row 3, field (row): 4 fields, the header has 3"],
    );
    refused(
        "short usage row",
        &[(DAILY, "2026-10-03,sa-x1,400002000000", "2026-10-03,400002000000")],
        &["usage object daily/2026-10/sa-x1.csv row 3, field (row): 2 fields, the header has 3"],
    );
    refused(
        "unknown layout",
        &[(DAILY, "date,storage_account_id,bytes", "day,storage_account_id,bytes")],
        &["usage object daily/2026-10/sa-x1.csv: unknown column layout [day, storage_account_id, bytes]"],
    );
    refused(
        "negative usage in API export",
        &[(API, "\"usage\": 2500000000000", "\"usage\": -2500000000000")],
        &[
            "usage object partner-api/2026-10/export-2026-11-01T02-00Z.json row 1, field usage (client sa-z1, daily_usage[0]): -2500000000000 is negative",
        ],
    );
    refused(
        "API export not JSON",
        &[(API, "[", "{[")],
        &["usage object partner-api/2026-10/export-2026-11-01T02-00Z.json"],
    );
}

#[test]
fn skip_bad_records_turns_each_into_a_finding() {
    let ex = example_copy();
    edit(ex.path(), DAILY, "2026-10-03,sa-x1,400002000000", "2026-10-03,sa-x1,-400002000000");
    edit(
        ex.path(),
        HOURLY,
        "2026-10-01T06:00:00Z,sa-y1,media-raw,9010600000000",
        "2026-10-01T06:00:00Z,sa-y1,media-raw,",
    );
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &["--skip-bad-records"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    let skipped: Vec<_> = project(&rev.join("findings.csv"), &["kind", "subject_id", "detail"].map(String::from))
        .into_iter()
        .filter(|r| r[0] == "skipped_record")
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!(skipped[0][1], "daily/2026-10/sa-x1.csv");
    assert!(skipped[0][2].starts_with("row 3, field bytes"), "{:?}", skipped[0]);
    assert_eq!(skipped[1][1], "hourly/2026-10/part-0000.csv");
    // The skipped day of sa-x1 is filled from its neighbour: 4 gap days now.
    let gaps = project(&rev.join("findings.csv"), &["kind", "subject_id", "detail"].map(String::from));
    assert!(gaps.iter().any(|r| r[0] == "gap_filled" && r[1] == "sa-x1" && r[2] == "4 days filled"), "{gaps:?}");
}

#[test]
fn a_usage_or_directory_folder_that_does_not_exist_is_a_setting_to_fix() {
    // Exit 2 (fix the input), not 3 (retry later): retrying cannot help.
    let ex = example();
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("no such folder");
    let o = run_month(&ex.join("directory"), &missing, out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the usage location") && stderr(&o).contains("does not exist: check --usage"),
        "{}",
        stderr(&o)
    );
    let o = run_month(&missing, &ex.join("usage"), out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist: check --directory"), "{}", stderr(&o));
    assert!(!out.path().join("billing_month=2026-10").exists(), "nothing is published");
}

#[test]
fn unknown_objects_become_findings() {
    let ex = example_copy();
    std::fs::write(ex.path().join("usage/notes.txt"), "not usage").unwrap();
    // A failed Spark job's partial output and its markers: an attempt at a
    // usage object under `_temporary/`, a `_SUCCESS` and a `.crc`.
    let daily = ex.path().join("usage/daily/2026-10/sa-x1.csv");
    let partial = ex.path().join("usage/_temporary/0/task_1/sa-x1.csv");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let text = std::fs::read_to_string(&daily).unwrap();
    assert!(text.contains("2026-10-03,sa-x1,400002000000"));
    // Partial and different: read, it would change sa-x1's usage.
    std::fs::write(&partial, text.replace("2026-10-03,sa-x1,400002000000", "2026-10-03,sa-x1,900002000000")).unwrap();
    std::fs::write(ex.path().join("usage/daily/2026-10/_SUCCESS"), "").unwrap();
    std::fs::write(ex.path().join("usage/daily/2026-10/.sa-x1.csv.crc"), "crc").unwrap();
    // Empty exports of every format: no records, and no failure.
    for empty in ["usage/daily/2026-10/empty.csv", "usage/empty.parquet", "usage/empty.jsonl", "usage/empty.json"] {
        std::fs::write(ex.path().join(empty), "").unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&ex.path().join("directory"), &ex.path().join("usage"), out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    let rows = project(&rev.join("findings.csv"), &["kind", "subject_id"].map(String::from));
    for key in [
        "notes.txt",
        "_temporary/0/task_1/sa-x1.csv",
        "daily/2026-10/_SUCCESS",
        "daily/2026-10/.sa-x1.csv.crc",
        "daily/2026-10/empty.csv",
        "empty.parquet",
        "empty.jsonl",
        "empty.json",
    ] {
        assert!(rows.contains(&vec!["skipped_object".to_owned(), key.to_owned()]), "{key}: {rows:?}");
    }
    // The partial copy is not read: sa-x1 is billed as in the example.
    let usage = |rev: &std::path::Path| {
        project(&rev.join("account_usage.csv"), &["storage_account_id", "byte_days"].map(String::from))
    };
    let plain = tempfile::tempdir().unwrap();
    assert!(run_month(&example().join("directory"), &example().join("usage"), plain.path(), &[]).status.success());
    assert_eq!(usage(&rev), usage(&latest_revision(plain.path())));
}

#[test]
fn settings_from_the_environment_that_do_not_parse_name_their_variable() {
    let ex = example();
    let out = tempfile::tempdir().unwrap();
    let (directory, usage) = (ex.join("directory"), ex.join("usage"));
    let args = month_args(&directory, &usage, out.path());
    for (var, value) in [
        ("CAPBILL_S3_FORCE_PATH_STYLE", "yes"),
        ("CAPBILL_S3_MAX_ATTEMPTS", "-1"),
        ("CAPBILL_S3_MAX_ATTEMPTS", "0"),
        ("CAPBILL_S3_OPERATION_TIMEOUT_SECS", "0"),
        ("CAPBILL_S3_CHECKSUM", "always"),
        ("CAPBILL_NOW", "yesterday"),
    ] {
        let o = capbill_env(&args, &[(var, value.to_owned())]);
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(var) && err.contains(value), "{var}={value}: {err}");
        assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "{var}: nothing is written");
    }
    // Set and valid, they are used: the clock decides the month's status.
    let o = capbill_env(&args, &[("CAPBILL_NOW", "2026-12-01T00:00:00Z".to_owned())]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(final)"), "{}", String::from_utf8_lossy(&o.stdout));
}
