//! Helpers shared by the integration tests: running the binary, copying
//! fixtures, reading CSV outputs as text tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::Bytes;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled example month.
pub fn example() -> PathBuf {
    root().join("fixtures/october-2026")
}

/// Runs `capbill` with `args` from the repository root.
pub fn capbill(args: &[&str]) -> Output {
    capbill_env(args, &[])
}

/// Runs `capbill` with `args` and extra environment variables. AWS settings
/// of the machine running the tests are removed so they cannot interfere.
pub fn capbill_env(args: &[&str], env: &[(&str, String)]) -> Output {
    command(args, env).output().expect("capbill starts")
}

/// The `capbill` command with `args` and `env`, not started yet.
pub fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capbill"));
    cmd.args(args).current_dir(root()).env("CAPBILL_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("CAPBILL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The arguments of `capbill run` for the example month with the given
/// directory, usage and output folders.
pub fn month_args<'a>(directory: &'a Path, usage: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "run",
        "--month",
        "2026-10",
        "--directory",
        directory.to_str().unwrap(),
        "--usage",
        usage.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
}

/// Runs the example month with the given directory, usage and output folders.
pub fn run_month(directory: &Path, usage: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = month_args(directory, usage, out);
    args.extend_from_slice(extra);
    capbill(&args)
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perm = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&target, perm).unwrap();
        }
    }
}

/// A writable copy of the example in a temporary folder.
pub fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&example(), dir.path());
    dir
}

/// Bills October from a copy of the example (`example_copy`, perhaps
/// edited) into a new folder; the run must succeed. The folder (kept while
/// it is held) and its latest revision.
pub fn bill_copy(inputs: &Path) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&inputs.join("directory"), &inputs.join("usage"), out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = latest_revision(out.path());
    (out, rev)
}

/// Replaces every occurrence of `from` in the directory tables of a copy
/// of the example (`example_copy`): an id or a name, renamed everywhere.
pub fn rename(inputs: &Path, from: &str, to: &str) {
    for t in ["entities", "storage_accounts", "contracts", "deals"] {
        let p = inputs.join(format!("directory/{t}.csv"));
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
}

/// A CSV file as a header and text rows (empty fields as "").
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let df = capbill::formats::read_csv_text(Bytes::from(data)).unwrap();
    let header: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let rows = (0..df.height())
        .map(|i| header.iter().map(|h| df.column(h).unwrap().str().unwrap().get(i).unwrap_or("").to_owned()).collect())
        .collect();
    (header, rows)
}

/// Rows of `path` projected on `columns`.
pub fn project(path: &Path, columns: &[String]) -> Vec<Vec<String>> {
    let (header, rows) = read_csv(path);
    let idx: Vec<usize> = columns
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap_or_else(|| panic!("{} has no column {c}", path.display())))
        .collect();
    rows.into_iter().map(|r| idx.iter().map(|&i| r[i].clone()).collect()).collect()
}

/// The revision folder `latest.json` points at.
pub fn latest_revision(out: &Path) -> PathBuf {
    latest_revision_of(out, "2026-10")
}

/// The revision folder `latest.json` of `month` (`YYYY-MM`) points at.
pub fn latest_revision_of(out: &Path, month: &str) -> PathBuf {
    let month = out.join(format!("billing_month={month}"));
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(month.join("latest.json")).expect("latest.json exists")).unwrap();
    month.join(format!("revision={}", latest["revision"]))
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Replaces the first `from` by `to` in `root/file` (which must contain it).
pub fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// The example's hourly export, removed from the copy: its header and rows.
pub fn take_hourly(usage: &Path) -> (String, Vec<String>) {
    let src = usage.join("hourly/2026-10/part-0000.csv");
    let text = std::fs::read_to_string(&src).unwrap();
    std::fs::remove_file(&src).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().unwrap();
    (header, lines.collect())
}

/// Hourly rows as a Parquet object with a typed timestamp column (UTC
/// microseconds, with the statistics every writer keeps) in row groups of
/// `group_rows` rows; a `bytes` field `null` is a missing value.
pub fn typed_parquet(header: &str, rows: &[String], group_rows: usize) -> Vec<u8> {
    use polars::prelude::*;
    assert_eq!(header, "timestamp,storage_account_id,bucket,bytes");
    let fields: Vec<Vec<&str>> = rows.iter().map(|r| r.split(',').collect()).collect();
    let us = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros();
    let ts = Column::new("timestamp".into(), fields.iter().map(|f| us(f[0])).collect::<Vec<_>>())
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap();
    let text = |i: usize, name: &str| Column::new(name.into(), fields.iter().map(|f| f[i]).collect::<Vec<_>>());
    let bytes = Column::new("bytes".into(), fields.iter().map(|f| f[3].parse::<i64>().ok()).collect::<Vec<_>>());
    let mut df = DataFrame::new(rows.len(), vec![ts, text(1, "storage_account_id"), text(2, "bucket"), bytes]).unwrap();
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).with_row_group_size(Some(group_rows)).finish(&mut df).unwrap();
    buf
}
