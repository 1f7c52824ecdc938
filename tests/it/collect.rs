//! `capbill collect`: snapshots taken from real servers (the in-process S3
//! server here, Garage and SeaweedFS in `collect_servers`), then billed by
//! `capbill run`; and the faults of a source, served over real HTTP by a
//! small scripted server, each of which must write nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;

use crate::s3_server::{Loopback, S3Server};
use crate::util::{capbill_env, read_csv, stderr};

/// The collection time of the first snapshot (a day in October 2026).
pub const FIRST: &str = "2026-10-14T05:00:00Z";
/// The collection time of the second snapshot.
pub const SECOND: &str = "2026-10-14T06:00:00Z";

/// A partner directory with one customer owning `accounts`, on
/// pay-per-use, plus the optional mapping tables given as `(file, text)`.
pub fn directory(accounts: &[&str], mappings: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    w("entities.csv", "entity_id,name,kind,partner_type,parent_id\nic,Vendor,vendor,,\nc,Customer,customer,,ic\n");
    let mut sa = String::from("storage_account_id,company_name,owner_id,created_on,deleted_on\n");
    for a in accounts {
        sa.push_str(&format!("\"{a}\",Customer,c,,\n"));
    }
    w("storage_accounts.csv", &sa);
    w(
        "contracts.csv",
        "contract_id,seller_id,buyer_id,model,reserved_tb,unit_price,overage_price,minimum_tb,currency,start_date,end_date\n\
         K1,ic,c,pay_per_use,,10.00,,,EUR,2026-01-01,\n",
    );
    w("deals.csv", "deal_id,partner_id,customer_id,volume_tb,special_price,status,valid_from,valid_to\n");
    for (name, text) in mappings {
        w(name, text);
    }
    dir
}

/// Runs `capbill collect` at `now` into `usage` with `directory`, plus `args` and `env`.
pub fn collect(usage: &Path, directory: &Path, now: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut all = vec!["collect", "--usage", usage.to_str().unwrap(), "--directory", directory.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut env = env.to_vec();
    env.push(("CAPBILL_NOW", now.to_owned()));
    capbill_env(&all, &env)
}

/// Every file under `root`, relative, sorted.
pub fn files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The rows of a snapshot object: (account, bucket, bytes), and its timestamps (ms).
pub fn snapshot_rows(path: &Path) -> (Vec<(String, String, u64)>, Vec<i64>) {
    let df = capbill::formats::read_parquet(std::fs::read(path).unwrap().into()).unwrap();
    let col = |n: &str| df.column(n).unwrap().as_materialized_series().clone();
    let (a, b, bytes) = (col("storage_account_id"), col("bucket"), col("bytes"));
    let ts = col("timestamp");
    let ts = ts.to_physical_repr();
    let rows = (0..df.height())
        .map(|i| {
            (
                a.str().unwrap().get(i).unwrap().to_owned(),
                b.str().unwrap().get(i).unwrap().to_owned(),
                bytes.u64().unwrap().get(i).unwrap(),
            )
        })
        .collect();
    (rows, ts.i64().unwrap().into_no_null_iter().collect())
}

/// A finding as (kind, subject, byte_days).
pub type Finding = (String, String, String);

/// Bills October 2026 from `usage` and returns account_usage's byte_days by
/// account and the findings as (kind, subject, byte_days).
pub fn bill(directory: &Path, usage: &Path) -> (BTreeMap<String, u128>, Vec<Finding>) {
    let out = tempfile::tempdir().unwrap();
    let o = crate::util::run_month(directory, usage, out.path(), &[]);
    assert!(o.status.success(), "capbill run failed: {}", stderr(&o));
    let rev = crate::util::latest_revision(out.path());
    let (h, rows) = read_csv(&rev.join("account_usage.csv"));
    let (ia, ib) = (col(&h, "storage_account_id"), col(&h, "byte_days"));
    let usage = rows.iter().map(|r| (r[ia].clone(), r[ib].parse().unwrap())).collect();
    let (h, rows) = read_csv(&rev.join("findings.csv"));
    let (k, s, a) = (col(&h, "kind"), col(&h, "subject_id"), col(&h, "byte_days"));
    let findings = rows.iter().map(|r| (r[k].clone(), r[s].clone(), r[a].clone())).collect();
    (usage, findings)
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

/// Days of October 2026: a snapshot value held (filled) over the whole month.
pub const OCTOBER_DAYS: u128 = 31;

/// An HTTP server answering from a script: (path and query, Authorization header) → (status, body).
pub struct ScriptedHttp {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// The requests seen (path and query).
    pub seen: Arc<Mutex<Vec<String>>>,
    _server: Loopback,
}

impl ScriptedHttp {
    /// Starts a server that answers every request with `script`.
    pub fn start(script: impl Fn(&str, Option<&str>) -> (u16, String) + Send + Sync + 'static) -> ScriptedHttp {
        let script = Arc::new(script);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let server = Loopback::start(move |req: http::Request<Incoming>| {
            let pq = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
            log.lock().unwrap().push(pq.clone());
            let (status, body) = script(&pq, auth.as_deref());
            async move { http::Response::builder().status(status).body(body) }
        });
        ScriptedHttp { url: format!("http://{}", server.addr), seen, _server: server }
    }
}

/// A config file with a `[collect]` section (and nothing else needed).
fn config(dir: &Path, collect: &str) -> PathBuf {
    let path = dir.join("capbill.toml");
    std::fs::write(&path, format!("[locations]\n[collect]\n{collect}\n")).unwrap();
    path
}

/// The environment of a `collect` from a scripted Garage at `url`.
fn garage_env(url: &str) -> [(&'static str, String); 3] {
    [
        ("CAPBILL_COLLECT_SOURCE", "garage".to_owned()),
        ("CAPBILL_COLLECT_ENDPOINT", url.to_owned()),
        ("CAPBILL_COLLECT_TOKEN", "t".to_owned()),
    ]
}

/// Garage's `ListBucketsInfo` for buckets `b000`.. owned by keys named
/// `sa-<n % 3>`, paginated like Garage: `offset` names the first bucket
/// returned (inclusive).
fn garage_page(total: usize, pq: &str) -> String {
    let q: BTreeMap<&str, &str> =
        pq.split_once('?').map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).collect()).unwrap_or_default();
    let limit: usize = q.get("limit").map_or(1000, |l| l.parse().unwrap());
    let start = q.get("offset").map_or(0, |o| o.trim_start_matches("id").parse::<usize>().unwrap());
    let page: Vec<_> = (start..total.min(start + limit))
        .map(|i| {
            serde_json::json!({
                "id": format!("id{i:03}"), "globalAliases": [format!("b{i:03}")], "bytes": 1000 + i as i64,
                "objects": 1, "unfinishedMultipartUploadBytes": 0,
                "keys": [{"accessKeyId": format!("GK{}", i % 3), "name": format!("sa-{}", i % 3),
                          "permissions": {"owner": true, "read": true, "write": true}, "bucketLocalAliases": []}]
            })
        })
        .collect();
    serde_json::to_string(&page).unwrap()
}

#[test]
fn s3_list_sums_every_object_and_the_billing_run_bills_exactly_those_bytes() {
    let server = S3Server::start(&["photos", "backups-2", "orphan"]);
    let put = |bucket: &str, key: &str, size: usize| {
        let p = server.bucket(bucket).join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, vec![7u8; size]).unwrap();
    };
    put("photos", "a.jpg", 1_234_567);
    put("photos", "2026/b.jpg", 89);
    put("backups-2", "full.tar", 3_000_000);
    put("orphan", "x", 5);
    let dir =
        directory(&["sa-1", "sa 2"], &[("buckets.csv", "bucket,storage_account_id\nphotos,sa-1\nbackups-2,sa 2\n")]);
    let usage = tempfile::tempdir().unwrap();
    let mut env = server.env();
    env.retain(|(k, _)| *k != "CAPBILL_NOW");
    for now in [FIRST, SECOND] {
        let o = collect(usage.path(), dir.path(), now, &["--source", "s3-list"], &env);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("collected 3 buckets of 2 storage accounts (4234661 bytes) from s3-list"), "{text}");
        assert!(text.contains("orphan (5 bytes): not in the directory's buckets table"), "{text}");
    }
    assert_eq!(
        files(usage.path()),
        [
            "collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet",
            "collected/dt=2026-10-14/snapshot-2026-10-14T06-00-00Z.parquet"
        ]
    );
    let (rows, ts) = snapshot_rows(&usage.path().join("collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet"));
    assert_eq!(
        rows,
        [
            ("sa 2".to_owned(), "backups-2".to_owned(), 3_000_000),
            ("sa-1".to_owned(), "photos".to_owned(), 1_234_656),
            ("unattributed:orphan".to_owned(), "orphan".to_owned(), 5),
        ]
    );
    let first_ms = chrono::DateTime::parse_from_rfc3339(FIRST).unwrap().timestamp_millis();
    assert_eq!(ts, [first_ms; 3], "every row of a snapshot carries the collection time");

    let (byte_days, findings) = bill(dir.path(), usage.path());
    assert_eq!(byte_days.get("sa-1"), Some(&(1_234_656 * OCTOBER_DAYS)));
    assert_eq!(byte_days.get("sa 2"), Some(&(3_000_000 * OCTOBER_DAYS)));
    assert!(
        findings.contains(&("unknown_storage_account".into(), "unattributed:orphan".into(), "5".into())),
        "the unattributed bucket is billed to nobody and reported with its byte-days (one observed day): {findings:?}"
    );
}

#[test]
fn an_account_whose_last_bucket_was_deleted_is_billed_until_then_not_for_the_month() {
    // sa-2 owns b002 and b005. The day after the first snapshot both are
    // deleted: sa-2 is in no bucket of the second one. Billing fills a day
    // without a value from the last one seen, so without a record saying
    // "0 bytes now" sa-2 would be billed 2,007 bytes for the rest of October.
    let deleted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gone = deleted.clone();
    let src = ScriptedHttp::start(move |pq, _| {
        let page: Vec<serde_json::Value> = serde_json::from_str(&garage_page(7, pq)).unwrap();
        let kept: Vec<_> = page
            .into_iter()
            .filter(|b| !(gone.load(Ordering::SeqCst) && ["id002", "id005"].contains(&b["id"].as_str().unwrap())))
            .collect();
        (200, serde_json::to_string(&kept).unwrap())
    });
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), "");
    let dir = directory(&["sa-0", "sa-1", "sa-2"], &[]);
    let usage = work.path().join("usage");
    let env = garage_env(&src.url);
    let args = ["--config", cfg.to_str().unwrap()];
    assert!(collect(&usage, dir.path(), FIRST, &args, &env).status.success());
    deleted.store(true, Ordering::SeqCst);
    let next_day = "2026-10-15T05:00:00Z";
    let o = collect(&usage, dir.path(), next_day, &args, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let (rows, _) = snapshot_rows(&usage.join("collected/dt=2026-10-15/snapshot-2026-10-15T05-00-00Z.parquet"));
    for bucket in ["b002", "b005"] {
        assert!(rows.contains(&("sa-2".to_owned(), bucket.to_owned(), 0)), "{bucket} written with 0 bytes: {rows:?}");
    }
    // Said apart from the buckets the source reported.
    let text = String::from_utf8_lossy(&o.stdout);
    let reported = rows.len() - 2;
    assert!(text.contains(&format!("collected {reported} buckets of ")), "{text}");
    assert!(text.contains("2 buckets of the previous snapshot no longer reported: written with 0 bytes"), "{text}");
    // A third snapshot does not repeat what was already gone.
    let o = collect(&usage, dir.path(), "2026-10-15T06:00:00Z", &args, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let (rows, _) = snapshot_rows(&usage.join("collected/dt=2026-10-15/snapshot-2026-10-15T06-00-00Z.parquet"));
    assert!(!rows.iter().any(|(a, ..)| a == "sa-2"), "{rows:?}");
    // Billed: 2,007 bytes on Oct 1–14 (filled back from the 14th), 0 from the 15th.
    let (byte_days, _) = bill(dir.path(), &usage);
    assert_eq!(byte_days.get("sa-2"), Some(&(2_007 * 14)));
    assert_eq!(byte_days.get("sa-0"), Some(&((1000 + 1003 + 1006) * OCTOBER_DAYS)));
}

#[test]
fn garage_pages_of_any_size_bring_every_bucket() {
    // With a page of one, a page after the first held only the bucket
    // already seen: the listing stopped after one bucket, silently.
    let src = ScriptedHttp::start(|pq, _| (200, garage_page(7, pq)));
    let dir = directory(&["sa-0", "sa-1", "sa-2"], &[]);
    for page_size in [1, 2, 3, 6, 7, 8] {
        let work = tempfile::tempdir().unwrap();
        let cfg = config(work.path(), &format!("page_size = {page_size}"));
        let usage = work.path().join("usage");
        let env = [
            ("CAPBILL_COLLECT_SOURCE", "garage".to_owned()),
            ("CAPBILL_COLLECT_ENDPOINT", src.url.clone()),
            ("CAPBILL_COLLECT_TOKEN", "t".to_owned()),
        ];
        let o = collect(&usage, dir.path(), FIRST, &["--config", cfg.to_str().unwrap()], &env);
        assert!(o.status.success(), "page_size {page_size}: {}", stderr(&o));
        let key = "collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet";
        let (rows, _) = snapshot_rows(&usage.join(key));
        assert_eq!(rows.len(), 7, "page_size {page_size}: {rows:?}");
    }
}

#[test]
fn garage_pages_are_followed_from_the_last_bucket_seen_and_the_token_is_sent_but_never_written() {
    const TOKEN: &str = "s3cr3t-admin-token-do-not-log";
    let src = ScriptedHttp::start(|pq, auth| {
        if auth != Some(&format!("Bearer {TOKEN}")) {
            return (401, "{\"code\":\"Unauthorized\"}".to_owned());
        }
        (200, garage_page(7, pq))
    });
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), "page_size = 3");
    let dir = directory(&["sa-0", "sa-1", "sa-2"], &[]);
    let usage = work.path().join("usage");
    let summary = work.path().join("summary.json");
    let env = [
        ("CAPBILL_COLLECT_SOURCE", "garage".to_owned()),
        ("CAPBILL_COLLECT_ENDPOINT", src.url.clone()),
        ("CAPBILL_COLLECT_TOKEN", TOKEN.to_owned()),
        ("CAPBILL_LOG", "debug".to_owned()),
    ];
    let args = ["--config", cfg.to_str().unwrap(), "--summary-json", summary.to_str().unwrap(), "--log-format", "json"];
    let o = collect(&usage, dir.path(), FIRST, &args, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = src.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            // Each next page starts at the last bucket seen: one more is asked for.
            "/v2/ListBucketsInfo?limit=3",
            "/v2/ListBucketsInfo?limit=4&offset=id002",
            "/v2/ListBucketsInfo?limit=4&offset=id005",
            // A short page may be a server's own cap: the end is a page with nothing new.
            "/v2/ListBucketsInfo?limit=4&offset=id006",
        ]
    );
    let key = "collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet";
    let (rows, _) = snapshot_rows(&usage.join(key));
    let buckets: Vec<_> = rows.iter().map(|(a, b, n)| (a.as_str(), b.as_str(), *n)).collect();
    assert_eq!(buckets.len(), 7, "{buckets:?}");
    assert!(buckets.contains(&("sa-0", "b006", 1006)) && buckets.contains(&("sa-2", "b002", 1002)), "{buckets:?}");
    let summary_text = std::fs::read_to_string(&summary).unwrap();
    let json: serde_json::Value = serde_json::from_str(&summary_text).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["buckets"].as_u64(), json["accounts"].as_u64()),
        (Some("success"), Some(7), Some(3))
    );
    assert_eq!(json["total_bytes"], "7021");
    for (what, text) in [
        ("stdout", String::from_utf8_lossy(&o.stdout).into_owned()),
        ("stderr (debug JSON logs)", stderr(&o)),
        ("summary", summary_text),
        ("snapshot", String::from_utf8_lossy(&std::fs::read(usage.join(key)).unwrap()).into_owned()),
    ] {
        assert!(!text.contains(TOKEN), "the admin token appears in {what}");
    }
}

#[test]
fn a_garage_that_serves_fewer_buckets_a_page_than_asked_for_is_listed_to_the_end() {
    // A cap of the server's own (2 a page) below the page size asked for
    // (5): a short page is not the end of the listing.
    let src = ScriptedHttp::start(|pq, _| {
        let capped = pq.replace("limit=5", "limit=2").replace("limit=6", "limit=2");
        (200, garage_page(7, &capped))
    });
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path(), "page_size = 5");
    let dir = directory(&["sa-0", "sa-1", "sa-2"], &[]);
    let usage = work.path().join("usage");
    let env = garage_env(&src.url);
    let o = collect(&usage, dir.path(), FIRST, &["--config", cfg.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let (rows, _) = snapshot_rows(&usage.join("collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet"));
    assert_eq!(rows.len(), 7, "every bucket, not the first page's two: {rows:?}");
}

/// Each fault of a source: the exit code, a message naming it, and nothing written.
#[test]
fn faults_of_a_source_exit_with_a_clear_message_and_write_nothing() {
    let page2_fails = ScriptedHttp::start(|pq, _| {
        if pq.contains("offset") { (500, "internal error".to_owned()) } else { (200, garage_page(10, pq)) }
    });
    let refused = ScriptedHttp::start(|_, _| (403, "{\"code\":\"AccessDenied\"}".to_owned()));
    let html = ScriptedHttp::start(|_, _| (200, "<html><body>proxy error</body></html>".to_owned()));
    let not_json = ScriptedHttp::start(|_, _| (200, "[{\"id\": \"x\", \"bytes\": ".to_owned()));
    let no_metric = ScriptedHttp::start(|_, _| {
        (200, "# TYPE up gauge\nup 1\nminio_bucket_usage_total_bytes{bucket=\"a\"} 1\n".to_owned())
    });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cases: Vec<(&str, String, &str, u8, Vec<&str>)> = vec![
        ("garage", closed.clone(), "page_size = 4\nmax_attempts = 2", 3, vec!["cannot reach", &closed]),
        (
            "garage",
            page2_fails.url.clone(),
            "page_size = 4\nmax_attempts = 2",
            3,
            vec!["offset=id003", "HTTP 500", "internal error"],
        ),
        ("garage", refused.url.clone(), "", 2, vec!["refused the credentials (HTTP 403)", "CAPBILL_COLLECT_TOKEN"]),
        ("garage", not_json.url.clone(), "", 3, vec!["not a ListBucketsInfo answer"]),
        ("prometheus", html.url.clone(), "", 3, vec!["line 1: not a metric name", "proxy error"]),
        (
            "prometheus",
            no_metric.url.clone(),
            "",
            2,
            vec!["exports no metric SeaweedFS_s3_bucket_size_bytes", "minio_bucket_usage_total_bytes"],
        ),
    ];
    for (source, endpoint, settings, code, wanted) in cases {
        let work = tempfile::tempdir().unwrap();
        let cfg = config(work.path(), settings);
        let dir = directory(&["sa-0"], &[]);
        let usage = work.path().join("usage");
        let env = [
            ("CAPBILL_COLLECT_SOURCE", source.to_owned()),
            ("CAPBILL_COLLECT_ENDPOINT", endpoint.clone()),
            ("CAPBILL_COLLECT_TOKEN", "t".to_owned()),
        ];
        let summary = work.path().join("summary.json");
        let o = collect(
            &usage,
            dir.path(),
            FIRST,
            &["--config", cfg.to_str().unwrap(), "--summary-json", summary.to_str().unwrap()],
            &env,
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(i32::from(code)), "{source} at {endpoint}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{source} at {endpoint}: {w:?} not in {err}");
        }
        assert!(!usage.exists() || files(&usage).is_empty(), "{source}: wrote {:?}", files(&usage));
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        assert_eq!((json["status"].as_str(), json["exit_code"].as_u64()), (Some("failed"), Some(u64::from(code))));
    }
}

#[test]
fn missing_settings_and_a_bad_mapping_table_are_configuration_errors() {
    let work = tempfile::tempdir().unwrap();
    let usage = work.path().join("usage");
    let dir = directory(&["sa-1"], &[]);
    let o = collect(&usage, dir.path(), FIRST, &[], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no collection source"), "{}", stderr(&o));
    let o = collect(&usage, dir.path(), FIRST, &["--source", "garage"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("garage: no admin API endpoint"), "{}", stderr(&o));
    let o = capbill_env(&["collect", "--source", "minio"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected garage, prometheus or s3-list"), "{}", stderr(&o));
    let bad = directory(&["sa-1"], &[("buckets.csv", "bucket,storage_account_id\nb,sa-1\nb,sa-2\n")]);
    let src = ScriptedHttp::start(|_, _| (200, "# TYPE SeaweedFS_s3_bucket_size_bytes gauge\n".to_owned()));
    let o = collect(&usage, bad.path(), FIRST, &["--source", "prometheus", "--endpoint", &src.url], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("buckets.csv row 2, column bucket = \"b\": duplicate id"), "{}", stderr(&o));
    assert!(!usage.exists() || files(&usage).is_empty());
}

#[test]
fn two_collections_in_the_same_second_keep_both_snapshots() {
    let src = ScriptedHttp::start(|_, _| {
        (
            200,
            "# TYPE SeaweedFS_s3_bucket_size_bytes gauge\nSeaweedFS_s3_bucket_size_bytes{bucket=\"b\"} 10\n".to_owned(),
        )
    });
    let work = tempfile::tempdir().unwrap();
    let usage = work.path().join("usage");
    let dir = directory(&["sa-1"], &[("buckets.csv", "bucket,storage_account_id\nb,sa-1\n")]);
    for _ in 0..2 {
        let o = collect(&usage, dir.path(), FIRST, &["--source", "prometheus", "--endpoint", &src.url], &[]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        files(&usage),
        [
            "collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z-2.parquet",
            "collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet"
        ]
    );
    let (byte_days, findings) = bill(dir.path(), &usage);
    assert_eq!(byte_days.get("sa-1"), Some(&(10 * OCTOBER_DAYS)), "the same snapshot twice is one snapshot");
    assert!(!findings.iter().any(|f| f.0 == "conflicting_samples"), "{findings:?}");
}

#[test]
fn every_collect_setting_can_come_from_the_environment() {
    let src = ScriptedHttp::start(|_, auth| {
        assert_eq!(auth, None, "no token configured, none sent");
        (200, "# TYPE my_bucket_bytes gauge\nmy_bucket_bytes{name=\"b\",bucket=\"decoy\"} 1e3\n".to_owned())
    });
    let work = tempfile::tempdir().unwrap();
    let usage = work.path().join("usage");
    let dir = directory(&["sa-1"], &[("buckets.csv", "bucket,storage_account_id\nb,sa-1\n")]);
    let env = [
        ("CAPBILL_COLLECT_SOURCE", "prometheus".to_owned()),
        ("CAPBILL_COLLECT_ENDPOINT", src.url.clone()),
        ("CAPBILL_COLLECT_METRIC", "my_bucket_bytes".to_owned()),
        ("CAPBILL_COLLECT_BUCKET_LABEL", "name".to_owned()),
        ("CAPBILL_COLLECT_PREFIX", "hourly/usage".to_owned()),
        ("CAPBILL_COLLECT_MAX_ATTEMPTS", "1".to_owned()),
        ("CAPBILL_COLLECT_TIMEOUT_SECS", "5".to_owned()),
    ];
    let o = collect(&usage, dir.path(), FIRST, &[], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files(&usage), ["hourly/usage/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet"]);
    let (rows, _) = snapshot_rows(&usage.join(&files(&usage)[0]));
    assert_eq!(rows, [("sa-1".to_owned(), "b".to_owned(), 1000)]);

    for (var, value) in [("CAPBILL_COLLECT_PAGE_SIZE", "many"), ("CAPBILL_COLLECT_PRESET", "ceph")] {
        let mut env = env.to_vec();
        env.push((var, value.to_owned()));
        let o = collect(&usage, dir.path(), SECOND, &[], &env);
        assert_eq!(o.status.code(), Some(2), "{var}: {}", stderr(&o));
        assert!(stderr(&o).contains(var), "{var}: {}", stderr(&o));
    }
    let mut env = env.to_vec();
    env.push(("CAPBILL_COLLECT_PREFIX", "../outside".to_owned()));
    let o = collect(&usage, dir.path(), SECOND, &[], &env);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid collect.prefix"), "{}", stderr(&o));
    assert_eq!(files(&usage).len(), 1, "nothing more written");
}

#[test]
fn a_snapshot_written_to_an_s3_usage_location_is_billed_from_there() {
    let server = S3Server::start(&["usage"]);
    let src = ScriptedHttp::start(|_, _| {
        (
            200,
            "# TYPE SeaweedFS_s3_bucket_size_bytes gauge\nSeaweedFS_s3_bucket_size_bytes{bucket=\"b\"} 2500\n"
                .to_owned(),
        )
    });
    let dir = directory(&["sa-1"], &[("buckets.csv", "bucket,storage_account_id\nb,sa-1\n")]);
    let mut env = server.env();
    env.retain(|(k, _)| *k != "CAPBILL_NOW");
    env.push(("CAPBILL_S3_CHECKSUM", "when_required".to_owned()));
    let usage = Path::new("s3://usage/hourly");
    let o = collect(usage, dir.path(), FIRST, &["--source", "prometheus", "--endpoint", &src.url], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = "collected/dt=2026-10-14/snapshot-2026-10-14T05-00-00Z.parquet";
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("wrote s3://usage/hourly/{key}")), "{o:?}");
    let (rows, _) = snapshot_rows(&server.bucket("usage").join("hourly").join(key));
    assert_eq!(rows, [("sa-1".to_owned(), "b".to_owned(), 2500)]);

    let out = tempfile::tempdir().unwrap();
    let mut args = crate::util::month_args(dir.path(), usage, out.path());
    args.push("--log-format");
    args.push("json");
    let o = capbill_env(&args, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let (h, rows) = read_csv(&crate::util::latest_revision(out.path()).join("account_usage.csv"));
    let (ia, ib) = (col(&h, "storage_account_id"), col(&h, "byte_days"));
    let sa1 = rows.iter().find(|r| r[ia] == "sa-1").expect("sa-1 billed");
    assert_eq!(sa1[ib].parse::<u128>().unwrap(), 2500 * OCTOBER_DAYS);
}
