//! Usage layouts at the month's edges: which objects a month reads (day
//! folders of the day before and after, dates in file names, objects that
//! span months), that every record of the month is billed, and that the
//! records of other months read with them are counted in the manifest, the
//! summary JSON and the text summary.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::*;

/// Writes a CSV object under the usage folder.
fn write_csv(usage: &Path, key: &str, header: &str, rows: &[String]) {
    let p = usage.join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
}

/// Rows whose timestamp starts with `prefix` (a day, or a day and an hour).
fn rows_at(rows: &[String], prefix: &str) -> Vec<String> {
    rows.iter().filter(|r| r.starts_with(prefix)).cloned().collect()
}

/// The hourly rows of each day in that day's own folder (`hourly/dt=D/`),
/// except the rows starting with one of `except`.
fn own_day_folders(usage: &Path, header: &str, rows: &[String], except: &[&str]) {
    let mut days: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for r in rows.iter().filter(|r| !except.iter().any(|e| r.starts_with(e))) {
        days.entry(&r[..10]).or_default().push(r.clone());
    }
    for (day, rows) in days {
        write_csv(usage, &format!("hourly/dt={day}/part-0.csv"), header, &rows);
    }
}

/// A billed month: its output folder, the revision, the manifest, the
/// summary JSON and standard output.
struct Billed {
    _out: tempfile::TempDir,
    rev: PathBuf,
    manifest: serde_json::Value,
    summary: serde_json::Value,
    stdout: String,
}

/// Bills October with the example's directory and `usage`; it must succeed.
fn bill(usage: &Path) -> Billed {
    bill_with(usage, &[])
}

/// [`bill`] with more flags.
fn bill_with(usage: &Path, flags: &[&str]) -> Billed {
    let out = tempfile::tempdir().unwrap();
    let summary = out.path().join("summary.json");
    let mut args = vec!["--summary-json", summary.to_str().unwrap()];
    args.extend(flags);
    let o: Output = run_month(&example().join("directory"), usage, &out.path().join("o"), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(&out.path().join("o"));
    let json = |p: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    Billed {
        manifest: json(&rev.join("manifest.json")),
        summary: json(&summary)["months"][0].clone(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        rev,
        _out: out,
    }
}

/// The billing outputs of two runs are byte-identical.
fn assert_same_bills(a: &Billed, b: &Billed, what: &str) {
    for file in ["account_usage.csv", "invoice_lines.csv", "invoices.csv", "findings.csv"] {
        let x = std::fs::read_to_string(a.rev.join(file)).unwrap();
        let y = std::fs::read_to_string(b.rev.join(file)).unwrap();
        assert!(x == y, "{file} differs when {what}:\n{x}\n---\n{y}");
    }
}

/// The usage keys a run read, from its manifest.
fn keys_read(b: &Billed) -> Vec<String> {
    b.manifest["usage"]["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_owned()).collect()
}

/// The count in the manifest and in the summary JSON, which must agree.
fn count(b: &Billed, manifest_field: &str, summary_field: &str) -> u64 {
    let m = b.manifest["usage"][manifest_field].as_u64().unwrap_or_else(|| panic!("manifest has no {manifest_field}"));
    let s = b.summary[summary_field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary JSON has no {summary_field}: {}", b.summary));
    assert_eq!(m, s, "{manifest_field} in the manifest, {summary_field} in the summary JSON");
    m
}

#[test]
fn records_of_the_month_in_the_day_folders_before_and_after_are_billed() {
    // The same hourly records, each day in its own folder...
    let own = example_copy();
    let usage = own.path().join("usage");
    let (header, rows) = take_hourly(&usage);
    own_day_folders(&usage, &header, &rows, &[]);
    let own = bill(&usage);

    // ...and as nightly exports written after midnight: the last rows of
    // Oct 31 land in Nov 1's folder with 3 records of Nov 1, and the first
    // rows of Oct 1 in Sep 30's folder with 2 records of Sep 30. Oct 1 and
    // Oct 31 each have records in two folders, so a day closed too early
    // (before every folder that may hold it is read) would be metered twice.
    let edge = example_copy();
    let usage = edge.path().join("usage");
    let (header, rows) = take_hourly(&usage);
    own_day_folders(&usage, &header, &rows, &["2026-10-01T00", "2026-10-01T06", "2026-10-31T12", "2026-10-31T18"]);
    let mut sep30 =
        rows_at(&rows, "2026-10-01T18").iter().map(|r| r.replacen("2026-10-01", "2026-09-30", 1)).collect::<Vec<_>>();
    assert_eq!(sep30.len(), 2);
    sep30.extend(rows_at(&rows, "2026-10-01T00"));
    sep30.extend(rows_at(&rows, "2026-10-01T06"));
    write_csv(&usage, "hourly/dt=2026-09-30/part-0.csv", &header, &sep30);
    let mut nov1 = rows_at(&rows, "2026-10-31T12");
    nov1.extend(rows_at(&rows, "2026-10-31T18"));
    let next_day =
        rows_at(&rows, "2026-10-31T00").iter().map(|r| r.replacen("2026-10-31", "2026-11-01", 1)).collect::<Vec<_>>();
    assert_eq!(next_day.len(), 3);
    nov1.extend(next_day);
    write_csv(&usage, "hourly/dt=2026-11-01/part-0.csv", &header, &nov1);
    let edge = bill(&usage);

    assert_same_bills(&own, &edge, "the month's first and last records sit in the neighbouring days' folders");
    let plain = bill(&example().join("usage"));
    assert_same_bills(&plain, &own, "the hourly export is split by day");

    for key in ["hourly/dt=2026-09-30/part-0.csv", "hourly/dt=2026-11-01/part-0.csv"] {
        assert!(keys_read(&edge).iter().any(|k| k == key), "{key} not read: {:?}", keys_read(&edge));
    }
    assert_eq!(count(&edge, "records_outside_month", "records_outside_month"), 5);
    assert_eq!(count(&edge, "pruned_objects", "pruned_objects"), 0);
    assert!(edge.stdout.contains("usage objects read, 5 records outside the month\n"), "{}", edge.stdout);
    assert_eq!(count(&own, "records_outside_month", "records_outside_month"), 0);
    assert!(own.stdout.contains("usage objects read\n"), "{}", own.stdout);
    // Sep 30 and Nov 1 are read by their own months' runs too: no finding.
    assert!(unread_records(&edge).is_empty(), "{:?}", unread_records(&edge));
}

/// The `unread_records` findings of a run: (subject, detail).
fn unread_records(b: &Billed) -> Vec<(String, String)> {
    project(&b.rev.join("findings.csv"), &["kind", "subject_id", "detail"].map(String::from))
        .into_iter()
        .filter(|f| f[0] == "unread_records")
        .map(|f| (f[1].clone(), f[2].clone()))
        .collect()
}

#[test]
fn records_of_a_month_whose_run_will_not_read_their_object_are_a_finding() {
    // An October month folder holding a record written after midnight of
    // Nov 1, and one of Oct 30 filed in November's folder: November's run
    // never reads October's folder, October's never November's. Each is
    // billed in no month, so the run that does read it says so.
    let dir = example_copy();
    let usage = dir.path().join("usage");
    let header = "date,storage_account_id,bytes".to_owned();
    write_csv(&usage, "daily/2026-10/after-midnight.csv", &header, &["2026-11-01,sa-x1,400019000000".to_owned()]);
    write_csv(&usage, "daily/2026-11/late.csv", &header, &["2026-10-30,sa-x1,400019000000".to_owned()]);
    let b = bill(&usage);
    assert_eq!(
        unread_records(&b),
        [(
            "daily/2026-10/after-midnight.csv".to_owned(),
            "1 record from 2026-11-01 to 2026-11-01 fall outside 2026-10, and the run of 2026-11 does not read this object (its folder names another month): they are billed in no month; move the object under its month's folder and reprocess that month".to_owned()
        )],
        "October's run does not read November's folder, so it cannot tell of late.csv"
    );
    assert_eq!(b.summary["counts"]["findings"]["unread_records"], 1);
}

#[test]
fn day_folders_two_days_away_and_other_months_folders_are_pruned() {
    let dir = example_copy();
    let usage = dir.path().join("usage");
    // Unreadable if fetched: a run that read any of them would fail.
    let other = ["hourly/dt=2026-11-02/part-0.csv", "hourly/dt=2026-09-29/part-0.csv", "daily/2026-11/sa-x1.csv"];
    for key in other {
        let p = usage.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "this is not a usage file").unwrap();
    }
    let b = bill(&usage);
    let plain = bill(&example().join("usage"));
    assert_same_bills(&plain, &b, "objects of other days are added");
    assert_eq!(count(&b, "pruned_objects", "pruned_objects"), 3);
    assert_eq!(keys_read(&b), keys_read(&plain));
    assert!(b.stdout.contains("4 usage objects read (3 pruned)\n"), "{}", b.stdout);
}

/// The hourly rows of Oct 1 as a Parquet object with text columns.
fn parquet_of(header: &str, rows: &[String]) -> Vec<u8> {
    use polars::prelude::*;
    let names: Vec<&str> = header.split(',').collect();
    let fields: Vec<Vec<&str>> = rows.iter().map(|r| r.split(',').collect()).collect();
    let columns = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if *name == "bytes" {
                Column::new((*name).into(), fields.iter().map(|f| f[i].parse::<i64>().unwrap()).collect::<Vec<_>>())
            } else {
                Column::new((*name).into(), fields.iter().map(|f| f[i]).collect::<Vec<_>>())
            }
        })
        .collect();
    let mut df = DataFrame::new(rows.len(), columns).unwrap();
    capbill::formats::write_parquet(&mut df).unwrap()
}

#[test]
fn objects_with_dates_only_in_their_file_names_are_read() {
    let dir = example_copy();
    let usage = dir.path().join("usage");
    let (header, rows) = take_hourly(&usage);
    let (first, last, after) =
        (rows_at(&rows, "2026-10-01"), rows_at(&rows, "2026-10-31T0"), rows_at(&rows, "2026-10-31T1"));
    let rest: Vec<String> =
        rows.iter().filter(|r| !r.starts_with("2026-10-01") && !r.starts_with("2026-10-31")).cloned().collect();
    write_csv(&usage, "hourly/2026-10/part-0000.csv", &header, &rest);
    std::fs::create_dir_all(usage.join("usage")).unwrap();
    std::fs::write(usage.join("usage/dt=2026-10-01.parquet"), parquet_of(&header, &first)).unwrap();
    write_csv(&usage, "usage-2026-10-31.csv", &header, &last);
    // An export written after midnight, named by its issue date.
    write_csv(&usage, "export-2026-11-01T02-00Z.csv", &header, &after);
    let b = bill(&usage);
    assert_same_bills(&bill(&example().join("usage")), &b, "the first and last days' records are in dated file names");
    for key in ["usage/dt=2026-10-01.parquet", "usage-2026-10-31.csv", "export-2026-11-01T02-00Z.csv"] {
        assert!(keys_read(&b).iter().any(|k| k == key), "{key} not read: {:?}", keys_read(&b));
    }
    assert_eq!(count(&b, "records_outside_month", "records_outside_month"), 0);
}

#[test]
fn an_object_spanning_two_months_bills_the_month_and_counts_the_rest() {
    let dir = example_copy();
    let usage = dir.path().join("usage");
    // sa-x1's daily export moved out of its month folder into a folder
    // without a date, together with 3 days of November and 2 of September.
    let src = usage.join("daily/2026-10/sa-x1.csv");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::remove_file(&src).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = lines.remove(0);
    assert_eq!(header, "date,storage_account_id,bytes");
    let mut rows = vec!["2026-09-29,sa-x1,900000000000".to_owned(), "2026-09-30,sa-x1,900000000000".to_owned()];
    rows.extend(lines);
    rows.extend(["2026-11-01", "2026-11-02", "2026-11-03"].map(|d| format!("{d},sa-x1,900000000000")));
    write_csv(&usage, "exports/sa-x1.csv", &header, &rows);
    // A month folder holds its month: a record of Nov 1 in October's folder
    // is read, and counted outside the month; November's run will not read
    // it, so it is a finding too (the undated export's are November's).
    write_csv(&usage, "partner-api/2026-10/late.csv", &header, &["2026-11-01,sa-w1,900000000000".to_owned()]);
    let b = bill(&usage);
    let plain = bill(&example().join("usage"));
    let without_unread = |b: &Billed| {
        let text = std::fs::read_to_string(b.rev.join("findings.csv")).unwrap();
        text.lines().filter(|l| !l.starts_with("unread_records,")).map(|l| format!("{l}\n")).collect::<String>()
    };
    assert_eq!(without_unread(&b), std::fs::read_to_string(plain.rev.join("findings.csv")).unwrap());
    let unread: Vec<String> = unread_records(&b).into_iter().map(|(subject, _)| subject).collect();
    assert_eq!(unread, ["partner-api/2026-10/late.csv"]);
    for file in ["account_usage.csv", "invoice_lines.csv", "invoices.csv"] {
        let (x, y) = (std::fs::read(plain.rev.join(file)).unwrap(), std::fs::read(b.rev.join(file)).unwrap());
        assert!(x == y, "{file} differs when an object also holds other months");
    }
    assert_eq!(count(&b, "records_outside_month", "records_outside_month"), 6);
    assert!(b.stdout.contains("usage objects read, 6 records outside the month\n"), "{}", b.stdout);
}

#[test]
fn a_record_two_days_from_its_day_folder_is_malformed_at_the_month_edge() {
    // Nov 1's folder is read for October: it may hold Oct 31, not Oct 30.
    let dir = example_copy();
    let usage = dir.path().join("usage");
    let row = "2026-10-30T23:00:00Z,sa-y1,media-raw,9010000000000".to_owned();
    write_csv(&usage, "hourly/dt=2026-11-01/part-0.csv", "timestamp,storage_account_id,bucket,bytes", &[row]);
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&example().join("directory"), &usage, out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "usage object hourly/dt=2026-11-01/part-0.csv row 1, field timestamp: a record of 2026-10-30 in an object \
             under the folder of 2026-11-01: a day folder holds that day's records and those of the day before and after"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_record_of_a_date_column_outside_its_day_folder_names_the_date_field() {
    let dir = example_copy();
    let usage = dir.path().join("usage");
    write_csv(
        &usage,
        "daily/dt=2026-10-10/part-0.csv",
        "date,storage_account_id,bytes",
        &["2026-10-20,sa-y1,5".to_owned()],
    );
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&example().join("directory"), &usage, out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("usage object daily/dt=2026-10-10/part-0.csv row 1, field date: a record of 2026-10-20"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_month_in_one_parquet_file_of_many_row_groups_bills_like_the_month_in_one_csv() {
    // The hourly export as one Parquet file outside any dated folder, in
    // row groups of 7 rows: read in pieces of row groups, streamed by the
    // days their statistics give. A repeated record in a later row group
    // (last wins, a conflict) must come out as it does from one CSV.
    let csv = example_copy();
    let usage = csv.path().join("usage");
    let (header, mut rows) = take_hourly(&usage);
    let f: Vec<&str> = rows[3].split(',').collect();
    let late = format!("{},{},{},{}", f[0], f[1], f[2], f[3].parse::<u64>().unwrap() + 1);
    rows.push(late);
    write_csv(&usage, "hourly/2026-10/part-0000.csv", &header, &rows);
    let in_csv = bill(&usage);

    let pq = example_copy();
    let usage = pq.path().join("usage");
    take_hourly(&usage);
    std::fs::create_dir_all(usage.join("exports")).unwrap();
    std::fs::write(usage.join("exports/usage-2026-10.parquet"), typed_parquet(&header, &rows, 7)).unwrap();
    let in_parquet = bill(&usage);
    assert_same_bills(&in_csv, &in_parquet, "the month is one Parquet file of many row groups");
    let findings = std::fs::read_to_string(in_parquet.rev.join("findings.csv")).unwrap();
    assert!(findings.contains("conflicting_samples"), "{findings}");
    assert!(keys_read(&in_parquet).iter().any(|k| k == "exports/usage-2026-10.parquet"));
}

#[test]
fn a_bad_record_in_a_later_row_group_is_named_by_its_row_in_the_file() {
    let dir = example_copy();
    let usage = dir.path().join("usage");
    let (header, mut rows) = take_hourly(&usage);
    // Row 40 of the file (the 6th row group of 7 rows) has no bytes.
    let f: Vec<String> = rows[39].split(',').map(str::to_owned).collect();
    rows[39] = format!("{},{},{},null", f[0], f[1], f[2]);
    std::fs::write(usage.join("usage-2026-10.parquet"), typed_parquet(&header, &rows, 7)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&example().join("directory"), &usage, out.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("usage object usage-2026-10.parquet row 40, field bytes: missing"), "{}", stderr(&o));
}

#[test]
fn a_month_of_flat_csv_files_over_the_memory_budget_is_spilled_and_bills_the_same() {
    // The hourly export as one CSV per day, named by the day but in one
    // folder (nothing tells ingestion their days, so every day stays open
    // until the last file), plus 24,000 records a day of an account the
    // directory does not know: about 20 MiB of open records, more than a
    // quarter of the smallest budget (64 MiB).
    let dir = example_copy();
    let usage = dir.path().join("usage");
    let (header, rows) = take_hourly(&usage);
    for day in 1..=31 {
        let date = format!("2026-10-{day:02}");
        let mut of_day = rows_at(&rows, &date);
        of_day
            .extend((0..24_000).map(|i| format!("{date}T{:02}:00:00Z,sa-not-in-directory,b{},{}", i % 24, i / 24, i)));
        write_csv(&usage, &format!("flat/usage-{date}.csv"), &header, &of_day);
    }
    let spilled = |b: &Billed| b.summary["spilled_bytes"].as_u64().expect("spilled_bytes in the summary");
    let roomy = bill(&usage);
    assert_eq!(spilled(&roomy), 0, "1 GiB holds the month");
    let tight = bill_with(&usage, &["--memory-budget-mib", "64"]);
    assert_same_bills(&roomy, &tight, "open days are spilled to disk");
    // The 744,000 records (about 28 bytes each in memory, 18 on disk: the
    // day and the object are written once per file) beyond the 16 MiB
    // share went to disk: whenever those in memory pass it, the earliest go
    // until 8 MiB are left.
    assert!(spilled(&tight) > 4 << 20, "spilled {} bytes", spilled(&tight));
    assert!(tight.stdout.contains("MiB of usage records spilled to local disk"), "{}", tight.stdout);
    // The unknown account's thousand buckets a day are more than the
    // running kernel tracks: the first day streamed to it when the share
    // was full could not be reduced on the fly, and was read again.
    let again = tight.summary["days_read_again"].as_u64().expect("days_read_again in the summary");
    assert!(again >= 1, "{}", tight.summary);
    assert_eq!(roomy.summary["days_read_again"], 0);
    assert!(tight.stdout.contains("of usage read again: too large to hold"), "{}", tight.stdout);
}

#[test]
fn days_over_the_memory_budget_in_time_order_are_metered_as_they_stream() {
    // The same shape of month (one CSV per day in one folder, every day
    // open until the last file, about 20 MiB of records against a share of
    // 16 MiB), but each day's extra records are 1,000 accounts the
    // directory does not know, one bucket each, hour after hour as an
    // export writes them: the days streamed when the share is full are
    // reduced as their records come, nothing is spilled or read again, and
    // the month bills as with room to spare. (The example's other sources
    // are left out: its two partner API exports repeat records, which the
    // running kernel leaves to the general path.)
    let dir = example_copy();
    let usage = dir.path().join("usage");
    for source in ["partner-api", "daily"] {
        std::fs::remove_dir_all(usage.join(source)).unwrap();
    }
    let (header, rows) = take_hourly(&usage);
    for day in 1..=31 {
        let date = format!("2026-10-{day:02}");
        let mut of_day = rows_at(&rows, &date);
        of_day.extend((0..24_000).map(|i| format!("{date}T{:02}:00:00Z,sa unknown {},b,{}", i / 1000, i % 1000, i)));
        write_csv(&usage, &format!("flat/usage-{date}.csv"), &header, &of_day);
    }
    let count = |b: &Billed, key: &str| b.summary[key].as_u64().unwrap_or_else(|| panic!("{key} in {}", b.summary));
    let roomy = bill(&usage);
    let tight = bill_with(&usage, &["--memory-budget-mib", "64"]);
    assert_same_bills(&roomy, &tight, "open days are streamed");
    for b in [&roomy, &tight] {
        assert_eq!((count(b, "spilled_bytes"), count(b, "days_read_again")), (0, 0), "{}", b.stdout);
    }
    let findings = std::fs::read_to_string(tight.rev.join("findings.csv")).unwrap();
    assert!(findings.contains("sa unknown 999"), "the streamed records are metered: {findings}");
}
