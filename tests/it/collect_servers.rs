//! `capbill collect` against real storage servers that the tests start
//! (`servers`): Garage's admin API, SeaweedFS's Prometheus gauge and its S3
//! API listed by s3-list; each snapshot then billed by `capbill run`. And the
//! README's walk-through, run as written.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::collect::{FIRST, OCTOBER_DAYS, SECOND, bill, collect, directory, files, snapshot_rows};
use crate::servers::{Garage, SeaweedFs, free_ports, garage_binary};
use crate::util::stderr;

/// Every file under `root` whose content holds `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    files(root)
        .into_iter()
        .filter(|f| std::fs::read(root.join(f)).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())))
        .collect()
}

/// The snapshot rows of a usage folder's only snapshot of `time`, as a map bucket → (account, bytes).
fn snapshot(usage: &Path, time: &str) -> BTreeMap<String, (String, u64)> {
    let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    let key = format!("collected/dt={}/snapshot-{}.parquet", t.format("%Y-%m-%d"), t.format("%Y-%m-%dT%H-%M-%SZ"));
    snapshot_rows(&usage.join(key)).0.into_iter().map(|(a, b, n)| (b, (a, n))).collect()
}

#[test]
fn garage_buckets_are_billed_to_their_owner_keys_accounts_exactly() {
    let mut g = Garage::start();
    let sa1 = g.create_key("sa-1");
    let sa1_again = g.create_key("sa-1");
    let sa2 = g.create_key("sa 2");
    let mapped = g.create_key("legacy key name");
    let bucket = |alias: &str, owners: &[&str]| {
        let id = g.create_bucket(alias);
        for k in owners {
            g.allow(&id, k, true, true, true);
        }
        id
    };
    let photos = bucket("photos", &[&sa1.id]);
    let shared = bucket("shared", &[&sa1.id, &sa1_again.id]);
    let contested = bucket("contested", &[&sa1.id, &sa2.id]);
    let legacy = bucket("legacy", &[&mapped.id]);
    let many: Vec<String> = (0..5).map(|i| bucket(&format!("sa2-b{i}"), &[&sa2.id])).collect();
    let unowned = bucket("unowned", &[]);

    g.put_objects(&sa1, "photos", &[("a.jpg", 1000), ("2026/b.jpg", 250_000)]);
    let upload_part = 1_048_576;
    g.open_multipart(&sa1, "photos", "big.tar", &[upload_part]);
    g.put_objects(&sa1_again, "shared", &[("s", 7)]);
    g.put_objects(&sa2, "contested", &[("c", 11)]);
    g.put_objects(&mapped, "legacy", &[("l", 4096)]);
    for (i, _) in many.iter().enumerate() {
        g.put_objects(&sa2, &format!("sa2-b{i}"), &[("o", 100 * (i + 1))]);
    }
    for (id, objects, bytes) in
        [(&photos, 2, 251_000), (&shared, 1, 7), (&contested, 1, 11), (&legacy, 1, 4096), (&unowned, 0, 0)]
    {
        g.wait_bucket_counters(id, objects, bytes);
    }
    for (i, id) in many.iter().enumerate() {
        g.wait_bucket_counters(id, 1, 100 * (i as i64 + 1));
    }

    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("capbill.toml");
    std::fs::write(&cfg, "[locations]\n[collect]\npage_size = 3\n").unwrap();
    let dir = directory(
        &["sa-1", "sa 2", "sa-3"],
        &[("access_keys.csv", &format!("access_key_id,storage_account_id\n{},sa-3\n", mapped.id))],
    );
    let usage = work.path().join("usage");
    let summary = work.path().join("summary.json");
    let mut env = g.collect_env();
    env.push(("CAPBILL_LOG", "debug".to_owned()));
    let mut printed = String::new();
    for now in [FIRST, SECOND] {
        let args = ["--config", cfg.to_str().unwrap(), "--summary-json", summary.to_str().unwrap()];
        let o = collect(&usage, dir.path(), now, &args, &env);
        assert!(o.status.success(), "{}\n{}", stderr(&o), g.log_tail());
        printed.push_str(&String::from_utf8_lossy(&o.stdout));
        printed.push_str(&stderr(&o));
    }

    let rows = snapshot(&usage, FIRST);
    let expected: BTreeMap<String, (String, u64)> = [
        ("photos", "sa-1", 251_000),
        ("shared", "sa-1", 7),
        ("contested", "unattributed:contested", 11),
        ("legacy", "sa-3", 4096),
        ("unowned", "unattributed:unowned", 0),
        ("sa2-b0", "sa 2", 100),
        ("sa2-b1", "sa 2", 200),
        ("sa2-b2", "sa 2", 300),
        ("sa2-b3", "sa 2", 400),
        ("sa2-b4", "sa 2", 500),
    ]
    .into_iter()
    .map(|(b, a, n)| (b.to_owned(), (a.to_owned(), n)))
    .collect();
    assert_eq!(rows, expected, "10 buckets over 4 pages of 3, each under its owner's account");
    assert_eq!(snapshot(&usage, SECOND), expected);

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["unfinished_upload_bytes"], upload_part.to_string(), "the open upload is reported, not billed");
    let unattributed: Vec<_> =
        json["unattributed"].as_array().unwrap().iter().map(|u| u["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        unattributed,
        ["owner keys of different storage accounts: sa 2, sa-1", "no access key has the owner permission"]
    );

    let (byte_days, findings) = bill(dir.path(), &usage);
    assert_eq!(byte_days.get("sa-1"), Some(&(251_007 * OCTOBER_DAYS)));
    assert_eq!(byte_days.get("sa 2"), Some(&(1500 * OCTOBER_DAYS)));
    assert_eq!(byte_days.get("sa-3"), Some(&(4096 * OCTOBER_DAYS)));
    assert!(
        findings.contains(&("unknown_storage_account".into(), "unattributed:contested".into(), "11".into())),
        "{findings:?}"
    );

    let token = &g.admin_token;
    assert!(!printed.contains(token.as_str()), "the admin token was printed or logged");
    assert_eq!(files_containing(work.path(), token), Vec::<String>::new(), "the admin token was written");
}

#[test]
fn seaweedfs_gauges_and_s3_listings_are_billed_as_the_server_reports_them() {
    let mut s = SeaweedFs::start();
    for b in ["photos", "logs", "orphan", "versioned"] {
        s.create_bucket(b);
    }
    s.put_objects("photos", &[("a", 1000), ("b", 20_000)]);
    s.put_objects("logs", &[("x", 5000)]);
    s.put_objects("orphan", &[("o", 10)]);
    // Two versions of one key and one deleted key: s3-list counts every stored version.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = s.s3_settings().client().await;
        c.put_bucket_versioning()
            .bucket("versioned")
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        for size in [100usize, 300] {
            c.put_object().bucket("versioned").key("k").body(vec![1u8; size].into()).send().await.unwrap();
        }
        c.put_object().bucket("versioned").key("gone").body(vec![2u8; 50].into()).send().await.unwrap();
        c.delete_object().bucket("versioned").key("gone").send().await.unwrap();
    });
    let photos = s.wait_bucket_metrics("photos", 2, 21_000);
    let logs = s.wait_bucket_metrics("logs", 1, 5000);
    s.wait_bucket_metrics("orphan", 1, 10);

    let dir = directory(&["sa-1", "sa 2"], &[("buckets.csv", "bucket,storage_account_id\nphotos,sa-1\nlogs,sa 2\n")]);
    let work = tempfile::tempdir().unwrap();
    let usage = work.path().join("usage");
    let o = collect(&usage, dir.path(), FIRST, &[], &s.collect_env());
    assert!(o.status.success(), "{}\n{}", stderr(&o), s.log_tail());
    let rows = snapshot(&usage, FIRST);
    // The gauge is the bucket's volume bytes: objects plus per-file overhead.
    let (p, l) = (rows["photos"].1, rows["logs"].1);
    assert_eq!((p as f64, l as f64), (photos.size_bytes, logs.size_bytes), "the gauge, read exactly");
    assert!(p >= 21_000 && l >= 5000, "{rows:?}");
    assert_eq!(rows["orphan"].0, "unattributed:orphan");
    let (byte_days, _) = bill(dir.path(), &usage);
    assert_eq!(byte_days.get("sa-1"), Some(&(u128::from(p) * OCTOBER_DAYS)));
    assert_eq!(byte_days.get("sa 2"), Some(&(u128::from(l) * OCTOBER_DAYS)));

    // s3-list on the same server: the objects' own bytes, every version included.
    let settings = s.s3_settings();
    let env = [
        ("CAPBILL_S3_ENDPOINT_URL", settings.endpoint_url.clone().unwrap()),
        ("CAPBILL_S3_REGION", settings.region.clone().unwrap_or_else(|| "us-east-1".to_owned())),
        ("CAPBILL_S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("CAPBILL_S3_CHECKSUM", "when_required".to_owned()),
        ("CAPBILL_S3_ACCESS_KEY_ID", settings.access_key_id.clone().unwrap()),
        ("CAPBILL_S3_SECRET_ACCESS_KEY", settings.secret_access_key.as_ref().unwrap().expose().to_owned()),
    ];
    let listed = work.path().join("listed");
    let o = collect(&listed, dir.path(), SECOND, &["--source", "s3-list"], &env);
    assert!(o.status.success(), "{}\n{}", stderr(&o), s.log_tail());
    let rows = snapshot(&listed, SECOND);
    let got: Vec<_> = rows.iter().map(|(b, (a, n))| (b.as_str(), a.as_str(), *n)).collect();
    assert_eq!(
        got,
        [
            ("logs", "sa 2", 5000),
            ("orphan", "unattributed:orphan", 10),
            ("photos", "sa-1", 21_000),
            ("versioned", "unattributed:versioned", 450),
        ]
    );
}

/// The README's walk-through, extracted and run as written (with a
/// temporary folder and free ports instead of the defaults).
#[test]
fn the_readme_walk_through_collects_from_garage_and_bills() {
    let readme = std::fs::read_to_string(crate::util::root().join("README.md")).unwrap();
    let start = readme.find("### Walk-through: collect from a local Garage").expect("the walk-through section");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];

    let demo = tempfile::tempdir().unwrap();
    let bin = demo.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_capbill"), bin.join("capbill")).unwrap();
    let ports = free_ports(3);
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", block]).current_dir(crate::util::root());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("CAPBILL_") || k.starts_with("GARAGE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
        .env("DEMO", demo.path().join("demo"))
        .env("CAPBILL_GARAGE", garage_binary())
        .env("GARAGE_S3_PORT", ports[0].to_string())
        .env("GARAGE_RPC_PORT", ports[1].to_string())
        .env("GARAGE_ADMIN_PORT", ports[2].to_string())
        .env("CAPBILL_LOG", "warn");
    let o = cmd.output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // Stop the server even when the block failed half-way.
    let _ = std::process::Command::new(crate::util::root().join("scripts/garage-local"))
        .args(["stop", demo.path().join("demo").to_str().unwrap()])
        .status();
    assert!(o.status.success(), "the walk-through failed:\n{out}\n{err}");
    assert_eq!(
        out.matches("collected 3 buckets of 2 storage accounts (6000000 bytes) from garage").count(),
        2,
        "{out}"
    );
    assert!(out.contains("nobodys-bucket (0 bytes): no access key has the owner permission"), "{out}");
    let now = chrono::Utc::now().date_naive();
    let month = capbill::model::BillingMonth::containing(now);
    let days = u128::from(month.days());
    for account in ["sa-x1", "sa-w1"] {
        let line = out.lines().find(|l| l.starts_with(&format!("{account},"))).unwrap_or_else(|| panic!("{out}"));
        let byte_days: u128 = line.split(',').nth(3).unwrap().parse().unwrap();
        assert_eq!(byte_days, 3_000_000 * days, "{line}");
    }
    assert!(out.lines().any(|l| l.starts_with("unattributed:nobodys-bucket,")), "{out}");
}
