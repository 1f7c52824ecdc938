//! One reading of an account id and of a byte count in every usage
//! encoding: the same three records (an id with surrounding spaces, an id
//! that is only spaces, bytes given as a string) written as CSV, JSON Lines,
//! the partner API's JSON and Parquet (dictionary-encoded and plain) give
//! the same accounts, the same byte-days, the same malformed-record error
//! and, with `--skip-bad-records`, the same `skipped_record` finding.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::file::properties::WriterProperties;

use crate::util::*;

/// The three records: (account id, date, bytes as text).
const RECORDS: [(&str, &str, &str); 3] =
    [(" sa-x1 ", "2026-10-02", "12"), ("   ", "2026-10-02", "5"), ("sa-x1", "2026-10-03", "40")];

/// A Parquet object of the records, every column text.
fn parquet(dictionary: bool) -> Vec<u8> {
    let column = |f: fn(&(&'static str, &'static str, &'static str)) -> &'static str| -> ArrayRef {
        Arc::new(StringArray::from(RECORDS.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = RecordBatch::try_from_iter([
        ("storage_account_id", column(|r| r.0)),
        ("date", column(|r| r.1)),
        ("bytes", column(|r| r.2)),
    ])
    .unwrap();
    let props = WriterProperties::builder().set_dictionary_enabled(dictionary).build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

/// Each encoding: its object's name, its content, and the field its error names.
fn encodings() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let csv: String = RECORDS.iter().map(|(a, d, b)| format!("{a},{d},{b}\n")).collect();
    // JSON Lines and the partner API: the first byte count as a number, the others as strings.
    let json_bytes = |i: usize, b: &str| if i == 0 { b.to_owned() } else { format!("\"{b}\"") };
    let jsonl: String = RECORDS
        .iter()
        .enumerate()
        .map(|(i, (a, d, b))| {
            format!("{{\"storage_account_id\": \"{a}\", \"date\": \"{d}\", \"bytes\": {}}}\n", json_bytes(i, b))
        })
        .collect();
    let clients: Vec<String> = RECORDS
        .iter()
        .enumerate()
        .map(|(i, (a, d, b))| {
            format!(
                "{{\"client_id\": \"{a}\", \"daily_usage\": [{{\"date\": \"{d}\", \"usage\": {}}}]}}",
                json_bytes(i, b)
            )
        })
        .collect();
    let text = vec![
        ("usage.csv", format!("storage_account_id,date,bytes\n{csv}").into_bytes(), "storage_account_id"),
        ("usage.jsonl", jsonl.into_bytes(), "storage_account_id"),
        ("usage.json", format!("[{}]", clients.join(",\n")).into_bytes(), "client_id (client [1], daily_usage[0])"),
    ];
    // The same texts as Windows tools write them: with a UTF-8 byte order mark.
    let names = ["bom-usage.csv", "bom-usage.jsonl", "bom-usage.json"];
    let bom =
        text.iter().zip(names).map(|((_, data, field), name)| (name, [&b"\xEF\xBB\xBF"[..], data].concat(), *field));
    let mut all: Vec<_> = bom.collect();
    all.splice(0..0, text);
    all.extend([
        ("dictionary.parquet", parquet(true), "storage_account_id"),
        ("plain.parquet", parquet(false), "storage_account_id"),
    ]);
    all
}

/// What a run billed: its account usage rows and its findings other than the skipped record.
type Billed = (Vec<Vec<String>>, Vec<Vec<String>>);

/// Runs October with the example's directory and one usage object.
fn run(name: &str, data: &[u8], extra: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("usage")).unwrap();
    std::fs::write(dir.path().join("usage").join(name), data).unwrap();
    let o = run_month(&example().join("directory"), &dir.path().join("usage"), &dir.path().join("out"), extra);
    (dir, o)
}

#[test]
fn every_encoding_reads_ids_and_bytes_the_same() {
    let mut billed: Vec<(&str, Billed)> = Vec::new();
    for (name, data, field) in encodings() {
        // The id that is only spaces stops the run, naming row 2 and the id's field.
        let (_dir, o) = run(name, &data, &[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(&format!("usage object {name} row 2, field {field}: missing")), "{name}: {err}");

        // Skipped instead: one finding for row 2, and both records of sa-x1 billed.
        let (dir, o) = run(name, &data, &["--skip-bad-records"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let rev = latest_revision(&dir.path().join("out"));
        let findings = read_csv(&rev.join("findings.csv")).1;
        let skipped: Vec<&Vec<String>> = findings.iter().filter(|f| f[0] == "skipped_record").collect();
        assert_eq!(skipped.len(), 1, "{name}: {findings:?}");
        assert_eq!(skipped[0][1], name);
        assert_eq!(skipped[0][2], format!("row 2, field {field}: missing; record skipped"), "{name}");
        let usage = project(
            &rev.join("account_usage.csv"),
            &["storage_account_id", "byte_days", "observed_days", "filled_days"].map(String::from),
        );
        // sa-x1 is observed on October 2 (12 bytes, " sa-x1 " trimmed) and 3 (40 bytes, given as a string):
        // October 1 is filled back with 12, October 4..31 forward with 40.
        let x1 = usage.iter().find(|r| r[0] == "sa-x1").unwrap();
        assert_eq!(x1[1..], [(12 * 2 + 40 * 29).to_string(), "2".into(), "29".into()], "{name}");
        // The other findings, without the skipped record's object name.
        let others: Vec<Vec<String>> = findings.iter().filter(|f| f[0] != "skipped_record").cloned().collect();
        assert!(!others.iter().any(|f| f[1].trim().is_empty() || f[1] != f[1].trim()), "{name}: {others:?}");
        billed.push((name, (usage, others)));
    }
    let (first, (usage, others)) = &billed[0];
    for (name, (u, f)) in &billed[1..] {
        assert_eq!(u, usage, "account usage of {name} and {first}");
        assert_eq!(f, others, "findings of {name} and {first}");
    }
}
