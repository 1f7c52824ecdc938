//! S3 locations end to end: real HTTP with SigV4 against an s3s-fs server
//! the tests start on 127.0.0.1.

use std::sync::atomic::Ordering;

use crate::s3_server::S3Server;
use crate::util::*;

const MONTH_LATEST: &str = "out/billing_month=2026-10/latest.json";

/// `capbill run` of October on the buckets of [`example_server`].
pub const RUN_ARGS: [&str; 9] = [
    "run",
    "--month",
    "2026-10",
    "--directory",
    "s3://billing/partner-directory",
    "--usage",
    "s3://usage-bucket/exports",
    "--out",
    "s3://billing/out",
];

fn run_s3(server: &S3Server, extra_env: &[(&str, String)]) -> std::process::Output {
    let mut env = server.env();
    env.extend(extra_env.iter().cloned());
    capbill_env(&RUN_ARGS, &env)
}

/// A server with the example's directory and usage in two buckets.
pub fn example_server() -> S3Server {
    let server = S3Server::start(&["billing", "usage-bucket"]);
    server.upload_tree("billing", "partner-directory", &example().join("directory"));
    server.upload_tree("usage-bucket", "exports", &example().join("usage"));
    server
}

fn local_run() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let o = run_month(&example().join("directory"), &example().join("usage"), out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

#[test]
fn example_from_a_bucket_bills_exactly_like_the_local_folder() {
    let server = example_server();
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let local = local_run();
    let local_rev = latest_revision(local.path());
    let bucket_rev = server.bucket("billing").join("out/billing_month=2026-10/revision=1");
    for file in ["invoice_lines.csv", "invoice_lines.parquet", "invoices.csv", "findings.csv", "account_usage.csv"] {
        let a = std::fs::read(local_rev.join(file)).unwrap();
        let b = std::fs::read(bucket_rev.join(file)).unwrap_or_else(|e| panic!("{file} not in the bucket: {e}"));
        assert!(a == b, "{file} differs between the local and the S3 run");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bucket_rev.join("manifest.json")).unwrap()).unwrap();
    let objects = manifest["usage"]["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 4);
    assert!(objects.iter().all(|o| o["etag"].as_str().is_some_and(|e| e.len() == 32)), "{objects:?}");
    // Each usage object is read as the version listed (`If-Match` its ETag),
    // so that what is billed is what the manifest records.
    let versions = server.faults.whole_version_gets.load(Ordering::SeqCst);
    assert_eq!(versions, 4, "whole-object GETs naming their version");
    assert_eq!(manifest["usage"]["location"], "s3://usage-bucket/exports");
    assert!(server.bucket("billing").join(MONTH_LATEST).exists());
}

#[test]
fn a_server_that_ignores_create_only_writes_is_refused_before_anything_is_written() {
    // Garage 2.5 ignores If-None-Match: * on PUT: there the month lock and
    // the revision files would not be create-only.
    let server = example_server();
    server.faults.ignore_if_none_match.store(true, Ordering::SeqCst);
    let o = run_s3(&server, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("ignores If-None-Match"), "{}", stderr(&o));
    let out = server.bucket("billing").join("out");
    let left: Vec<_> = walkdir::WalkDir::new(&out)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(left.is_empty(), "nothing is left under the output: {left:?}");
    // The same server honouring it: the run publishes.
    server.faults.ignore_if_none_match.store(false, Ordering::SeqCst);
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn checksum_mode_when_required_works_too() {
    let server = example_server();
    let o = run_s3(&server, &[("CAPBILL_S3_CHECKSUM", "when_required".to_owned())]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn more_than_a_thousand_objects_are_all_listed() {
    let server = S3Server::start(&["billing", "usage-bucket"]);
    server.upload_tree("billing", "partner-directory", &example().join("directory"));
    // 1,200 objects: one account-day each for sa-x1 (pay-per-use) and the rest for sa-ghost.
    let base = server.bucket("usage-bucket").join("exports/daily/2026-10");
    std::fs::create_dir_all(&base).unwrap();
    for i in 0..1200 {
        let day = i % 31 + 1;
        let (account, bytes) = if i < 31 { ("sa-x1", 1_000_000_000_000u64) } else { ("sa-ghost", 1) };
        std::fs::write(
            base.join(format!("part-{i:05}.csv")),
            format!("date,storage_account_id,bytes\n2026-10-{day:02},{account},{bytes}\n"),
        )
        .unwrap();
    }
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rev = server.bucket("billing").join("out/billing_month=2026-10/revision=1");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["usage"]["objects"].as_array().unwrap().len(), 1200);
    // sa-x1 at exactly 1 TB every day: usage 1.000000 TB-month, no minimum.
    let lines = project(&rev.join("invoice_lines.csv"), &["contract_id", "charge", "quantity"].map(String::from));
    assert!(lines.contains(&vec!["K-DP1-X".to_owned(), "usage".to_owned(), "1.000000".to_owned()]), "{lines:?}");
}

#[test]
fn objects_of_other_months_are_not_fetched() {
    let server = example_server();
    let usage = server.bucket("usage-bucket").join("exports");
    // Other months' objects, in every recognised layout; unreadable if fetched.
    for key in ["daily/2026-09/sa-x1.csv", "hourly/dt=2026-11-02/part-0.parquet", "year=2026/month=08/x.jsonl"] {
        let p = usage.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "this is not a usage file").unwrap();
    }
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.bucket("billing").join("out/billing_month=2026-10/revision=1/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["usage"]["pruned_objects"], 3);
    assert_eq!(manifest["usage"]["objects"].as_array().unwrap().len(), 4);
}

#[test]
fn a_wrong_secret_key_is_a_clear_infrastructure_error() {
    let server = example_server();
    let o = run_s3(&server, &[("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_owned())]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("s3://billing/"), "{err}");
    assert!(err.contains("secret key does not match"), "{err}");
    assert!(!err.contains("not-the-secret"), "the secret leaked into the message: {err}");
}

#[test]
fn a_missing_bucket_and_a_wrong_endpoint_are_named() {
    let server = example_server();
    let mut env = server.env();
    env.push(("CAPBILL_S3_MAX_ATTEMPTS", "1".to_owned()));
    let o = capbill_env(
        &[
            "run",
            "--month",
            "2026-10",
            "--directory",
            "s3://nope/dir",
            "--usage",
            "s3://nope/u",
            "--out",
            "s3://nope/o",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("bucket nope does not exist"), "{}", stderr(&o));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut env = server.env();
    env.push(("CAPBILL_S3_ENDPOINT_URL", format!("http://{closed}")));
    env.push(("CAPBILL_S3_MAX_ATTEMPTS", "1".to_owned()));
    let o = run_s3(&server, &env);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach the endpoint"), "{}", stderr(&o));

    // No credentials anywhere (the tests disable the EC2 metadata service):
    // said as such, not as an endpoint that cannot be reached.
    let env: Vec<_> = server
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"))
        .collect();
    let o = capbill_env(&RUN_ARGS, &env);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no S3 credentials could be loaded: set AWS_ACCESS_KEY_ID"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("cannot reach the endpoint"), "{}", stderr(&o));
}

#[test]
fn intermittent_server_errors_are_retried() {
    let server = example_server();
    server.faults.fail_every.store(3, Ordering::SeqCst);
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(server.faults.injected.load(Ordering::SeqCst) >= 5, "faults were injected");
    let local = local_run();
    let a = std::fs::read(latest_revision(local.path()).join("invoice_lines.csv")).unwrap();
    let b =
        std::fs::read(server.bucket("billing").join("out/billing_month=2026-10/revision=1/invoice_lines.csv")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_server_gone_during_upload_leaves_latest_unchanged_and_a_rerun_completes() {
    let server = example_server();
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let latest_path = server.bucket("billing").join(MONTH_LATEST);
    let before = std::fs::read(&latest_path).unwrap();

    // A late export arrives; the second run's server goes away after three uploads.
    std::fs::write(
        server.bucket("usage-bucket").join("exports/daily/2026-10/late.csv"),
        "date,storage_account_id,bytes\n2026-10-10,sa-x1,500000000000\n",
    )
    .unwrap();
    let puts = server.faults.puts.load(Ordering::SeqCst);
    server.faults.puts_allowed.store(puts + 3, Ordering::SeqCst);
    let o = run_s3(&server, &[("CAPBILL_S3_MAX_ATTEMPTS", "2".to_owned())]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(std::fs::read(&latest_path).unwrap(), before, "latest.json changed after a failed run");
    assert!(stderr(&o).contains("s3://billing/out/billing_month=2026-10/revision=2/"), "{}", stderr(&o));

    // Back again: the rerun completes revision 2.
    server.faults.puts_allowed.store(0, Ordering::SeqCst);
    server.faults.gone.store(false, Ordering::SeqCst);
    let o = run_s3(&server, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let latest: serde_json::Value = serde_json::from_slice(&std::fs::read(&latest_path).unwrap()).unwrap();
    assert_eq!(latest["revision"], 2);
}

#[test]
fn large_objects_go_up_in_parts_and_come_back_whole() {
    use capbill::storage::s3::{MULTIPART_THRESHOLD, PART_SIZE};
    use capbill::storage::{Location, Store};

    let server = S3Server::start(&["billing"]);
    let settings = server.settings();
    let size = MULTIPART_THRESHOLD + PART_SIZE + 12_345;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&Location::parse("s3://billing/big").unwrap(), &settings).await.unwrap();
        let before = server.faults.puts.load(Ordering::SeqCst);
        store.put("outputs/account_usage.parquet", bytes::Bytes::from(data.clone())).await.unwrap();
        let requests = server.faults.puts.load(Ordering::SeqCst) - before;
        // create + 4 parts (8 MiB each, the last one short) + complete.
        assert_eq!(requests, 1 + size.div_ceil(PART_SIZE) + 1, "not a multipart upload");
        let back = store.get("outputs/account_usage.parquet").await.unwrap();
        assert!(back == data, "the object came back different");
        let listed = store.list("outputs").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "outputs/account_usage.parquet");
        assert_eq!(listed[0].size, size as u64);
    });
}

#[test]
fn conditional_writes_on_s3_create_once_and_renew_only_an_unchanged_lock() {
    use bytes::Bytes;
    use capbill::revision::lock::MonthLock;
    use capbill::storage::s3::MULTIPART_THRESHOLD;
    use capbill::storage::{Location, Store};

    let server = S3Server::start(&["billing"]);
    let settings = server.settings();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&Location::parse("s3://billing/out").unwrap(), &settings).await.unwrap();
        // Create-only, small and multipart: the second write loses and changes nothing.
        let big = |b: u8| Bytes::from(vec![b; MULTIPART_THRESHOLD + 1]);
        for (key, first, second) in [
            ("m/revision=1/invoices.csv", Bytes::from_static(b"first"), Bytes::from_static(b"second")),
            ("m/revision=1/account_usage.parquet", big(1), big(2)),
        ] {
            assert!(store.put_if_absent(key, first.clone()).await.unwrap(), "{key}");
            assert!(!store.put_if_absent(key, second).await.unwrap(), "{key}: written twice");
            assert!(store.get(key).await.unwrap() == first, "{key}: the first write was replaced");
        }
        // If-Match: only the version that was read is replaced; a deleted object is not recreated.
        let key = "m/_lock/1.json";
        store.put(key, Bytes::from_static(b"a")).await.unwrap();
        let etag = store.etag(key).await.unwrap();
        assert!(store.put_if_match(key, Bytes::from_static(b"b"), &etag).await.unwrap());
        assert!(!store.put_if_match(key, Bytes::from_static(b"c"), &etag).await.unwrap(), "a stale ETag matched");
        assert_eq!(&store.get(key).await.unwrap()[..], b"b");
        let etag = store.etag(key).await.unwrap();
        store.delete(key).await.unwrap();
        assert!(!store.put_if_match(key, Bytes::from_static(b"d"), &etag).await.unwrap());
        assert!(store.get_opt(key).await.unwrap().is_none(), "a deleted object was recreated");

        // A month lock on S3 is renewed in place.
        let month = "2026-10".parse().unwrap();
        let mut lock = MonthLock::acquire(&store, month, "run", chrono::Duration::minutes(10)).await.unwrap();
        let lock_key = "billing_month=2026-10/_lock/1.json";
        let expiry = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["expires_at"].clone();
        let before = expiry(store.get(lock_key).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        lock.renew().await.unwrap();
        let after = expiry(store.get(lock_key).await.unwrap());
        let at = |v: &serde_json::Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert!(at(&after) > at(&before), "{before} -> {after}");
        lock.check().await.unwrap();
        lock.release().await.unwrap();
        assert!(store.get_opt(lock_key).await.unwrap().is_none());
    });
}

#[test]
fn a_month_in_one_large_parquet_object_is_read_in_ranges_and_bills_like_the_same_rows_in_csv() {
    // The example's hourly records plus 400,000 of an account the directory
    // does not know (bytes that do not compress), as one Parquet object of
    // row groups of 50,000 rows outside any dated folder. With the smallest
    // memory budget (64 MiB, pieces of 2 MiB) it is read as its footer and
    // several byte ranges, each sent with If-Match.
    let dir = example_copy();
    let usage = dir.path().join("usage");
    let (header, mut rows) = take_hourly(&usage);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..400_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (day, hour) = (1 + i % 31, (i / 31) % 24);
        rows.push(format!("2026-10-{day:02}T{hour:02}:00:00Z,sa-not-in-directory,b{},{}", i % 3, x >> 20));
    }
    rows.sort_by(|a, b| a[..20].cmp(&b[..20]));
    let parquet = typed_parquet(&header, &rows, 50_000);
    assert!(parquet.len() > 2 << 20, "more than one piece of 2 MiB: {} bytes", parquet.len());
    std::fs::write(usage.join("hourly/2026-10/part-0000.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let local = tempfile::tempdir().unwrap();
    let o = run_month(&example().join("directory"), &usage, local.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let server = S3Server::start(&["billing", "usage-bucket"]);
    server.upload_tree("billing", "partner-directory", &example().join("directory"));
    std::fs::remove_file(usage.join("hourly/2026-10/part-0000.csv")).unwrap();
    std::fs::write(usage.join("usage-2026-10.parquet"), &parquet).unwrap();
    server.upload_tree("usage-bucket", "exports", &usage);
    let o = run_s3(&server, &[("CAPBILL_MEMORY_BUDGET_MIB", "64".to_owned())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bucket_rev = server.bucket("billing").join("out/billing_month=2026-10/revision=1");
    let local_rev = latest_revision(local.path());
    for file in ["invoice_lines.csv", "invoices.csv", "findings.csv", "account_usage.csv"] {
        let a = std::fs::read_to_string(local_rev.join(file)).unwrap();
        let b = std::fs::read_to_string(bucket_rev.join(file)).unwrap();
        assert!(a == b, "{file} differs between the CSV and the Parquet read in ranges");
    }
    assert!(std::fs::read_to_string(bucket_rev.join("findings.csv")).unwrap().contains("sa-not-in-directory"));
    let served = server.faults.ranged_gets.load(Ordering::SeqCst);
    assert!(served >= 3, "the footer and at least two pieces read in ranges: {served} ranged GETs");
}
