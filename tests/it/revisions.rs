//! Reprocessing a month: revisions, status, no-op runs, corrections, diff,
//! status, the nightly command, locks and crash safety.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use crate::util::*;

/// During October's grace period (provisional) and after it (final).
const GRACE: &str = "2026-11-02T02:30:00Z";
const AFTER: &str = "2026-11-05T02:30:00Z";

/// A writable example and an output folder.
struct Month {
    inputs: tempfile::TempDir,
    out: tempfile::TempDir,
}

impl Month {
    fn new() -> Month {
        Month { inputs: example_copy(), out: tempfile::tempdir().unwrap() }
    }

    fn args<'a>(&'a self, cmd: &'a str, extra: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = vec![cmd.to_owned()];
        v.extend(extra.iter().map(|s| s.to_string()));
        for (flag, path) in [
            ("--directory", self.inputs.path().join("directory")),
            ("--usage", self.inputs.path().join("usage")),
            ("--out", self.out.path().to_path_buf()),
        ] {
            v.push(flag.to_owned());
            v.push(path.to_str().unwrap().to_owned());
        }
        v
    }

    fn cmd(&self, now: &str, cmd: &str, extra: &[&str]) -> Output {
        let args = self.args(cmd, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        capbill_env(&args, &[("CAPBILL_NOW", now.to_owned())])
    }

    fn run(&self, now: &str) -> Output {
        self.cmd(now, "run", &["--month", "2026-10"])
    }

    fn month_dir(&self) -> PathBuf {
        self.out.path().join("billing_month=2026-10")
    }

    fn revision(&self, n: u32) -> PathBuf {
        self.month_dir().join(format!("revision={n}"))
    }

    fn latest(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.month_dir().join("latest.json")).unwrap()).unwrap()
    }

    fn manifest(&self, n: u32) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.revision(n).join("manifest.json")).unwrap()).unwrap()
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        crate::util::edit(self.inputs.path(), file, from, to);
    }
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

type Key = (String, String, String, String, String);

/// `(seller, buyer, customer, contract, charge)` → (quantity, amount) of a revision's lines.
fn lines(rev: &Path) -> BTreeMap<Key, (i64, i64)> {
    project(
        &rev.join("invoice_lines.csv"),
        &s(&["seller_id", "buyer_id", "customer_id", "contract_id", "charge", "quantity", "amount"]),
    )
    .into_iter()
    .map(|r| ((r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()), (micro(&r[5]), cents(&r[6]))))
    .collect()
}

/// Parses a decimal with 6 places as micro-units (exact, for comparisons).
fn micro(s: &str) -> i64 {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let neg = i.starts_with('-');
    let v = i.trim_start_matches('-').parse::<i64>().unwrap() * 1_000_000 + format!("{f:0<6}").parse::<i64>().unwrap();
    if neg { -v } else { v }
}

/// Parses an amount with 2 places as cents.
fn cents(s: &str) -> i64 {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let neg = i.starts_with('-');
    let v = i.trim_start_matches('-').parse::<i64>().unwrap() * 100 + format!("{f:0<2}").parse::<i64>().unwrap();
    if neg { -v } else { v }
}

/// Checks that the corrections of revision `new` equal new minus old line by
/// line and sum to the change of each invoice total.
fn assert_corrections(m: &Month, old: u32, new: u32) -> usize {
    let (before, after) = (lines(&m.revision(old)), lines(&m.revision(new)));
    let mut expected = BTreeMap::new();
    for k in before.keys().chain(after.keys()) {
        let (qb, ab) = before.get(k).copied().unwrap_or((0, 0));
        let (qa, aa) = after.get(k).copied().unwrap_or((0, 0));
        if (qb, ab) != (qa, aa) {
            expected.insert(k.clone(), (qa - qb, aa - ab));
        }
    }
    let got: BTreeMap<Key, (i64, i64)> = project(
        &m.revision(new).join("corrections.csv"),
        &s(&[
            "seller_id",
            "buyer_id",
            "customer_id",
            "contract_id",
            "charge",
            "quantity",
            "amount",
            "corrects_revision",
        ]),
    )
    .into_iter()
    .map(|r| {
        assert_eq!(r[7], old.to_string());
        ((r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()), (micro(&r[5]), cents(&r[6])))
    })
    .collect();
    assert_eq!(got, expected, "corrections are not new minus old");

    let totals = |rev: &Path| -> BTreeMap<(String, String), i64> {
        project(&rev.join("invoices.csv"), &s(&["seller_id", "buyer_id", "total"]))
            .into_iter()
            .map(|r| ((r[0].clone(), r[1].clone()), cents(&r[2])))
            .collect()
    };
    let (tb, ta) = (totals(&m.revision(old)), totals(&m.revision(new)));
    let mut per_invoice: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (k, (_, a)) in &got {
        *per_invoice.entry((k.0.clone(), k.1.clone())).or_default() += a;
    }
    for (inv, delta) in &per_invoice {
        let change = ta.get(inv).copied().unwrap_or(0) - tb.get(inv).copied().unwrap_or(0);
        assert_eq!(*delta, change, "corrections of invoice {inv:?} do not sum to its change");
    }
    got.len()
}

#[test]
fn a_rerun_on_unchanged_inputs_publishes_nothing() {
    let m = Month::new();
    ok(&m.run(GRACE));
    let out = ok(&m.run(GRACE));
    assert!(out.contains("unchanged") && out.contains("nothing published"), "{out}");
    assert!(!m.revision(2).exists());
    assert_eq!(m.latest()["revision"], 1);
    assert_eq!(m.latest()["status"], "provisional");
}

#[test]
fn a_provisional_month_becomes_final_after_its_grace_period() {
    let m = Month::new();
    ok(&m.run(GRACE));
    assert_eq!(m.manifest(1)["status"], "provisional");
    // Provisional revisions follow each other freely.
    m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-05,sa-x1,400004000000", "2026-10-05,sa-x1,500004000000");
    ok(&m.run(GRACE));
    assert_eq!(m.manifest(2)["status"], "provisional");
    // The grace period has passed: the same inputs are published once more, as final.
    ok(&m.run(AFTER));
    assert_eq!(m.latest()["revision"], 3);
    assert_eq!(m.latest()["status"], "final");
    assert!(!m.revision(3).join("corrections.csv").exists(), "the first final revision corrects nothing");
    assert_eq!(
        std::fs::read(m.revision(2).join("invoice_lines.csv")).unwrap(),
        std::fs::read(m.revision(3).join("invoice_lines.csv")).unwrap()
    );
    assert!(ok(&m.run(AFTER)).contains("unchanged"));
}

#[test]
fn a_changed_final_month_is_refused_until_reprocessed_with_a_reason() {
    let m = Month::new();
    ok(&m.run(AFTER));
    let latest_before = std::fs::read(m.month_dir().join("latest.json")).unwrap();
    // A corrected usage export for sa-x1.
    m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-20,sa-x1,400019000000", "2026-10-20,sa-x1,900019000000");
    let o = m.run(AFTER);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("capbill reprocess --month 2026-10"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("usage objects changed (0 added, 1 changed, 0 removed: changed daily/2026-10/sa-x1.csv)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(m.month_dir().join("latest.json")).unwrap(), latest_before);
    assert!(!m.revision(2).exists());
    // A directory that no longer validates is said as such (exit 2), not
    // as a change to reprocess, which could not bill it either.
    let contracts = m.inputs.path().join("directory/contracts.csv");
    let good = std::fs::read_to_string(&contracts).unwrap();
    std::fs::write(&contracts, good.replacen("pay_per_use", "flat_rate", 1)).unwrap();
    let o = m.run(AFTER);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("contracts.csv row"), "{}", stderr(&o));
    std::fs::write(&contracts, good).unwrap();

    let out = ok(&m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "late export from region 2"]));
    assert!(out.contains("revision 2 (final)"), "{out}");
    let man = m.manifest(2);
    assert_eq!(man["reason"], "late export from region 2");
    assert_eq!(man["previous_revision"], 1);
    assert_eq!(man["corrects_revision"], 1);
    assert!(man["requested_by"].as_str().unwrap().contains('@'));
    assert_eq!(assert_corrections(&m, 1, 2), 2, "cust-x's usage and minimum lines change, nothing else");
    // sa-x1 gains 0.5 TB on one day: byte-days 12,400,459·10^6 → 12,900,459·10^6, /(31·10^12):
    // usage 0.400015 → 0.416144 (amount 3.96 → 0.416144 × 9.90 = 4.1198256 → 4.12),
    // minimum 1 − usage: 0.599985 → 0.583856 (5.94 → 5.7801744 → 5.78).
    let c = project(&m.revision(2).join("corrections.csv"), &s(&["contract_id", "charge", "quantity", "amount"]));
    assert_eq!(c, [s(&["K-DP1-X", "minimum", "-0.016129", "-0.16"]), s(&["K-DP1-X", "usage", "0.016129", "0.16"])]);
}

#[test]
fn a_run_where_no_user_name_is_set_records_its_user_id() {
    // systemd services and containers often set neither USER nor LOGNAME.
    let m = Month::new();
    let args = m.args("run", &["--month", "2026-10"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = command(&args, &[("CAPBILL_NOW", AFTER.to_owned())])
        .env("USER", " ")
        .env_remove("LOGNAME")
        .output()
        .expect("capbill starts");
    ok(&o);
    let by = m.manifest(1)["requested_by"].as_str().unwrap().to_owned();
    let uid = by.strip_prefix("uid-").and_then(|rest| rest.split_once('@')).map(|(n, _)| n.parse::<u32>());
    assert!(matches!(uid, Some(Ok(_))), "{by}");
}

#[test]
fn a_changed_price_is_corrected_line_by_line() {
    let m = Month::new();
    ok(&m.run(AFTER));
    m.edit(
        "directory/contracts.csv",
        "K-MSPB-W,msp-b,cust-w,pay_per_use,,10.50",
        "K-MSPB-W,msp-b,cust-w,pay_per_use,,10.25",
    );
    assert_eq!(m.run(AFTER).status.code(), Some(5));
    ok(&m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "price agreed in October"]));
    assert_eq!(assert_corrections(&m, 1, 2), 1);
    let c = project(&m.revision(2).join("corrections.csv"), &s(&["contract_id", "quantity", "amount"]));
    assert_eq!(c, [s(&["K-MSPB-W", "0.000000", "-30.01"])]);
}

#[test]
fn a_final_month_is_corrected_only_in_the_unit_it_was_issued_in() {
    let m = Month::new();
    ok(&m.run(AFTER));
    // Corrections subtract quantities: TiB-months less TB-months mean nothing.
    let o = m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "bill in TiB", "--unit", "tib"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("unit") && err.contains("revision 1 of 2026-10 was issued in \"tb\""), "{err}");
    assert!(!m.revision(2).exists(), "nothing is published");
    // In its own unit the reprocess goes through.
    m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-20,sa-x1,400019000000", "2026-10-20,sa-x1,900019000000");
    ok(&m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "late export", "--unit", "tb"]));
    assert_eq!(m.manifest(2)["corrects_revision"], 1);
}

#[test]
fn an_account_moved_to_another_customer_moves_its_lines() {
    let m = Month::new();
    ok(&m.run(AFTER));
    m.edit("directory/storage_accounts.csv", "sa-x1,Xylo Logistics,cust-x,,", "sa-x1,Xylo Logistics,cust-y,,");
    ok(&m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "sa-x1 belongs to Yarrow"]));
    let n = assert_corrections(&m, 1, 2);
    let c = project(&m.revision(2).join("corrections.csv"), &s(&["customer_id", "contract_id", "charge", "amount"]));
    // cust-x's lines disappear with negated values.
    assert!(c.contains(&s(&["cust-x", "K-DP1-X", "usage", "-3.96"])), "{c:?}");
    assert!(c.contains(&s(&["cust-x", "K-DP1-X", "minimum", "-5.94"])), "{c:?}");
    // cust-x's two lines go; cust-y's pay-per-use usage (Oct 1–15) and reserved
    // overage (Oct 16–31) grow; its reserved line and every line above dp-1
    // (the subtree is unchanged) stay.
    assert_eq!(n, 4, "{c:?}");
    let keys: Vec<_> = c.iter().map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str())).collect();
    assert_eq!(
        keys,
        [
            ("cust-x", "K-DP1-X", "minimum"),
            ("cust-x", "K-DP1-X", "usage"),
            ("cust-y", "K-DP1-Y-PPU", "usage"),
            ("cust-y", "K-DP1-Y-RES", "overage"),
        ]
    );

    // diff shows the same, per invoice and per line, as text and as CSV.
    let text = ok(&m.cmd(AFTER, "diff", &["--month", "2026-10"]));
    assert!(text.contains("revision 1 → revision 2"), "{text}");
    assert!(text.contains("dp-1") && text.contains("cust-x") && text.contains("-9.90"), "{text}");
    let csv = ok(&m.cmd(AFTER, "diff", &["--month", "2026-10", "--from", "1", "--to", "2", "--format", "csv"]));
    assert_eq!(csv.as_bytes(), std::fs::read(m.revision(2).join("corrections.csv")).unwrap());
    let inv = ok(&m.cmd(AFTER, "diff", &["--month", "2026-10", "--format", "csv", "--level", "invoices"]));
    assert!(inv.starts_with("seller_id,buyer_id,currency,total_before,total_after,total_delta\n"), "{inv}");
    assert!(inv.contains("dp-1,cust-x,EUR,9.90,0.00,-9.90"), "{inv}");

    let status = ok(&m.cmd(AFTER, "status", &["--month", "2026-10"]));
    assert!(status.contains("latest revision 2 (final)"), "{status}");
    assert!(status.contains("sa-x1 belongs to Yarrow"), "{status}");
}

#[test]
fn the_nightly_command_finalises_the_previous_month_and_bills_the_current_one() {
    let m = Month::new();
    let nightly = |now: &str| ok(&m.cmd(now, "run", &[]));
    let out = nightly(GRACE);
    assert!(out.contains("billed 2026-10 as revision 1 (provisional)"), "{out}");
    assert!(out.contains("billed 2026-11 as revision 1 (provisional)"), "{out}");
    let out = nightly(AFTER);
    assert!(out.contains("billed 2026-10 as revision 2 (final)"), "{out}");
    assert!(out.contains("2026-11 unchanged"), "{out}");
    // Once final, the previous month is left alone, even when its inputs change.
    m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-20,sa-x1,400019000000", "2026-10-20,sa-x1,900019000000");
    let out = nightly("2026-11-06T02:30:00Z");
    assert!(!out.contains("2026-10"), "{out}");
    assert_eq!(m.latest()["revision"], 2);
    // A month that fails is named in the error, with the error's exit code.
    m.edit("directory/contracts.csv", "pay_per_use", "flat_rate");
    let o = m.cmd("2026-11-06T02:30:00Z", "run", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("error: billing 2026-11: "), "{}", stderr(&o));
}

fn spawn_at_failpoint(args: &[String], env: &[(&str, String)], failpoint: &str) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = env.to_vec();
    env.push(("CAPBILL_FAILPOINT", failpoint.to_owned()));
    let mut child = command(&args, &env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if line.contains(&format!("failpoint {failpoint} reached")) {
            return child;
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    panic!("capbill ended ({status}) before failpoint {failpoint}: {}", seen.join("\n"));
}

#[test]
fn two_concurrent_runs_on_local_outputs_exactly_one_proceeds() {
    let m = Month::new();
    let mut first =
        spawn_at_failpoint(&m.args("run", &["--month", "2026-10"]), &[("CAPBILL_NOW", GRACE.into())], "ingest");
    let second = m.run(GRACE);
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    assert!(stderr(&second).contains(&format!("pid {}", first.id())), "{}", stderr(&second));
    first.kill().unwrap();
    first.wait().unwrap();
    // The killed holder's lock is stale (its process is gone): the next run proceeds.
    ok(&m.run(GRACE));
    assert_eq!(m.latest()["revision"], 1);
}

#[test]
fn two_concurrent_runs_on_s3_outputs_exactly_one_proceeds() {
    let server = crate::s3::example_server();
    let args = s(&crate::s3::RUN_ARGS);
    let mut first = spawn_at_failpoint(&args, &server.env(), "ingest");
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = capbill_env(&argv, &server.env());
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    assert!(stderr(&second).contains("is locked by"), "{}", stderr(&second));
    // Times to the second, as people read them ("since 2026-11-05 02:30:00 UTC until …").
    let err = stderr(&second);
    let since = &err[err.find(" since ").expect("since") + 7..];
    assert_eq!(since.get(19..30), Some(" UTC until "), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    let third = capbill_env(&argv, &server.env());
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(server.bucket("billing").join("out/billing_month=2026-10/latest.json").exists());
}

#[test]
fn an_expired_lock_of_another_host_is_taken_over() {
    let m = Month::new();
    let lock = m.month_dir().join("_lock/3.json");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    // Expiry is the wall clock's, whatever CAPBILL_NOW says.
    std::fs::write(&lock, lock_body("old", -2, -1)).unwrap();
    ok(&m.run(GRACE));
    assert!(!lock.exists(), "the superseded stale lock is cleaned up");
    assert!(!m.month_dir().join("_lock").exists(), "the run released its own lock");
    // A live lock of another host is respected.
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, lock_body("other", -1, 1)).unwrap();
    // A clock set far past the lock's expiry does not make it stale.
    for now in [GRACE, "2099-01-01T00:00:00Z"] {
        let o = m.cmd(now, "reprocess", &["--month", "2026-10", "--reason", "x"]);
        assert_eq!(o.status.code(), Some(4), "{now}: {}", stderr(&o));
        assert!(stderr(&o).contains("locked by other on host elsewhere"), "{}", stderr(&o));
        assert!(lock.exists(), "a run never deletes a lock it does not hold");
    }
}

/// A lock object of another host, taken and expiring `from` and `to` hours from now (wall clock).
fn lock_body(owner: &str, from: i64, to: i64) -> String {
    let at = |h: i64| (chrono::Utc::now() + chrono::Duration::hours(h)).to_rfc3339();
    serde_json::json!({
        "owner": owner, "host": "elsewhere", "pid": 1, "command": "run",
        "acquired_at": at(from), "expires_at": at(to),
    })
    .to_string()
}

#[test]
fn lock_expiry_ignores_capbill_now() {
    let m = Month::new();
    // Held by a run whose clock says October; the wall clock is later.
    let mut first =
        spawn_at_failpoint(&m.args("run", &["--month", "2026-10"]), &[("CAPBILL_NOW", GRACE.into())], "ingest");
    let second = m.run("2099-01-01T00:00:00Z");
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));
    assert!(stderr(&second).contains("is locked by"), "{}", stderr(&second));
}

/// Starts a run that waits at `failpoint` until the file `resume` exists,
/// lets `meanwhile` act, resumes it and returns its exit code and the rest of its stderr.
fn pause_and_resume(m: &Month, now: &str, failpoint: &str, meanwhile: impl FnOnce()) -> (Option<i32>, String) {
    let resume = m.out.path().join("resume");
    let args = m.args("run", &["--month", "2026-10"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [
        ("CAPBILL_NOW", now.to_owned()),
        ("CAPBILL_FAILPOINT", failpoint.to_owned()),
        ("CAPBILL_FAILPOINT_RESUME", resume.to_str().unwrap().to_owned()),
    ];
    let mut child = command(&args, &env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let reached = lines.by_ref().map(Result::unwrap).any(|l| l.contains(&format!("failpoint {failpoint} reached")));
    assert!(reached, "capbill ended before failpoint {failpoint}");
    meanwhile();
    std::fs::write(&resume, b"").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    std::fs::remove_file(&resume).unwrap();
    (status.code(), rest.join("\n"))
}

#[test]
fn a_run_that_lost_its_lock_publishes_nothing_more() {
    for failpoint in ["ingest", "before-latest"] {
        let m = Month::new();
        ok(&m.run(GRACE));
        let latest = std::fs::read(m.month_dir().join("latest.json")).unwrap();
        // After the grace period the month bills again (final); while that
        // run waits, another run takes the (expired) lock over.
        let taken = m.month_dir().join("_lock/99.json");
        let (code, err) = pause_and_resume(&m, AFTER, failpoint, || {
            std::fs::write(&taken, lock_body("usurper", 0, 1)).unwrap();
        });
        assert_eq!(code, Some(4), "{failpoint}: {err}");
        assert!(err.contains("lost its lock") && err.contains("usurper"), "{failpoint}: {err}");
        // The failpoint is passed again for each usage object; otherwise one
        // text line (and JSON log events).
        let text = err.lines().filter(|l| !l.starts_with("failpoint ") && !l.starts_with('{')).count();
        assert_eq!(text, 1, "{failpoint}: {err}");
        assert_eq!(
            std::fs::read(m.month_dir().join("latest.json")).unwrap(),
            latest,
            "{failpoint}: latest.json changed"
        );
        let manifest = m.revision(2).join("manifest.json");
        match failpoint {
            "ingest" => assert!(!m.revision(2).exists(), "{failpoint}: revision 2 was written"),
            _ => assert!(manifest.exists(), "the revision was complete before the lock was lost"),
        }
        assert!(taken.exists(), "the new holder's lock stays");
        let locks: Vec<_> =
            std::fs::read_dir(m.month_dir().join("_lock")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(locks, ["99.json"], "{failpoint}: the run deleted its own generation only");
    }
}

#[test]
fn a_panicking_run_releases_its_lock_and_prints_one_line() {
    let m = Month::new();
    let args = m.args("run", &["--month", "2026-10"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("CAPBILL_NOW", GRACE.to_owned()), ("CAPBILL_FAILPOINT", "panic-after-ingest".to_owned())];
    let o = capbill_env(&args, &env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // One text line; besides it only JSON log events (the failure among them).
    let text: Vec<&str> = err.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err()).collect();
    assert_eq!(
        text,
        ["error: internal error: failpoint after-ingest panics; this is a bug, please report it with the log"]
    );
    assert!(err.lines().any(|l| l.contains("\"message\":\"run failed\"") && l.contains("\"exit_code\":1")), "{err}");
    assert!(!m.month_dir().join("_lock").exists(), "the lock is left behind");
    assert!(!m.month_dir().join("revision=1").exists());
    // The backtrace is in the debug log.
    let debug: Vec<(&str, String)> = env.iter().cloned().chain([("CAPBILL_LOG", "capbill=debug".to_owned())]).collect();
    let o = capbill_env(&args, &debug);
    assert!(stderr(&o).contains("backtrace"), "{}", stderr(&o));
    // And the month is free for the next run.
    ok(&m.run(GRACE));
}

#[test]
fn a_run_killed_at_any_point_leaves_latest_on_a_complete_revision() {
    for failpoint in ["ingest", "export:3", "export:8", "before-latest"] {
        let m = Month::new();
        ok(&m.run(GRACE));
        let latest_before = std::fs::read(m.month_dir().join("latest.json")).unwrap();
        m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-05,sa-x1,400004000000", "2026-10-05,sa-x1,600004000000");
        let mut child =
            spawn_at_failpoint(&m.args("run", &["--month", "2026-10"]), &[("CAPBILL_NOW", GRACE.into())], failpoint);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            std::fs::read(m.month_dir().join("latest.json")).unwrap(),
            latest_before,
            "{failpoint}: latest.json changed"
        );
        // Readers ignore the partial revision; status lists only complete ones.
        let status = ok(&m.cmd(GRACE, "status", &["--month", "2026-10"]));
        assert!(status.contains("latest revision 1 (provisional)"), "{failpoint}: {status}");
        // The rerun completes (reusing the partial revision's number).
        ok(&m.run(GRACE));
        assert_eq!(m.latest()["revision"], 2, "{failpoint}");
        let man = m.manifest(2);
        for f in man["outputs"].as_array().unwrap() {
            use sha2::Digest;
            let data = std::fs::read(m.revision(2).join(f["file"].as_str().unwrap())).unwrap();
            assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(&data)), "{failpoint}: {}", f["file"]);
        }
        let tmp: Vec<_> = std::fs::read_dir(m.revision(2))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".capbill-tmp"))
            .collect();
        assert!(tmp.is_empty(), "{failpoint}: temporary files left behind");
    }
}

#[test]
fn a_run_killed_before_latest_is_completed_by_the_next_run() {
    let m = Month::new();
    ok(&m.run(GRACE));
    m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-05,sa-x1,400004000000", "2026-10-05,sa-x1,600004000000");
    let mut child =
        spawn_at_failpoint(&m.args("run", &["--month", "2026-10"]), &[("CAPBILL_NOW", GRACE.into())], "before-latest");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(m.latest()["revision"], 1);
    let status = ok(&m.cmd(GRACE, "status", &["--month", "2026-10"]));
    assert!(status.contains("(unpublished)"), "{status}");
    let out = ok(&m.run(GRACE));
    assert!(out.contains("completed the publication of revision 2"), "{out}");
    assert_eq!(m.latest()["revision"], 2);
    assert!(!m.revision(3).exists());
}

#[test]
fn a_final_revision_left_unpublished_is_published_and_corrected_not_skipped() {
    // The first final run is killed after its manifest, before latest.json:
    // revision 2 is complete (its documents would be written) but unpublished.
    let m = Month::new();
    ok(&m.run(GRACE));
    let mut child =
        spawn_at_failpoint(&m.args("run", &["--month", "2026-10"]), &[("CAPBILL_NOW", AFTER.into())], "before-latest");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(m.latest()["revision"], 1);
    assert_eq!(m.manifest(2)["status"], "final");
    // Late usage arrives. A plain run publishes revision 2 as that run would
    // have, and then refuses to change a final month without a reprocess.
    m.edit("usage/daily/2026-10/sa-x1.csv", "2026-10-20,sa-x1,400019000000", "2026-10-20,sa-x1,900019000000");
    let o = m.run(AFTER);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("revision 2"), "{}", stderr(&o));
    assert_eq!(m.latest()["revision"], 2, "the complete revision is published, not skipped");
    assert!(!m.revision(3).exists());
    // The reprocess corrects revision 2, the one now issued.
    ok(&m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "late export"]));
    let man = m.manifest(3);
    assert_eq!((man["previous_revision"].clone(), man["corrects_revision"].clone()), (2.into(), 2.into()));
    assert_eq!(assert_corrections(&m, 2, 3), 2);
}

#[test]
fn an_object_changed_after_it_was_listed_is_not_billed_silently() {
    // The run lists the usage, then pauses before reading it; meanwhile an
    // export is rewritten (ten times the bytes). The manifest would name the
    // listed version: billing the new one silently would disagree with it.
    let m = Month::new();
    let file = m.inputs.path().join("usage/daily/2026-10/sa-x1.csv");
    let (code, log) = pause_and_resume(&m, GRACE, "planned", || {
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace(",400019000000", ",4000190000000")).unwrap();
    });
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("sa-x1.csv changed after it was listed"), "{log}");
    assert!(!m.month_dir().join("latest.json").exists(), "nothing is published");
    // Run again: the new version is listed, read and recorded.
    ok(&m.run(GRACE));
    let objects = m.manifest(1)["usage"]["objects"].clone();
    let listed = objects.as_array().unwrap().iter().find(|o| o["key"] == "daily/2026-10/sa-x1.csv").unwrap().clone();
    assert_eq!(listed["size"], std::fs::metadata(&file).unwrap().len());
}

#[test]
fn a_month_that_has_not_begun_and_a_blank_reason_are_refused() {
    let m = Month::new();
    // A reprocess re-bills a billed month: a first revision is a plain run's.
    let o = m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "first bill"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("2026-10 has never been billed: `capbill run --month 2026-10`"), "{}", stderr(&o));
    assert!(!m.month_dir().join("revision=1").exists(), "nothing is published");
    // October 2026 billed on September 30: nothing used yet.
    let o = m.run("2026-09-30T23:00:00Z");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("2026-10 has not begun"), "{}", stderr(&o));
    assert!(!m.month_dir().exists(), "nothing is published");
    // On its first day it is billed (provisional).
    ok(&m.run("2026-10-01T00:00:00Z"));
    let o = m.cmd(AFTER, "reprocess", &["--month", "2026-10", "--reason", "   "]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("give a reason"), "{}", stderr(&o));
}

#[test]
fn a_run_asked_to_stop_releases_its_lock_and_says_so_in_its_summary() {
    // A drained node or a deleted pod sends SIGTERM: the next try runs on
    // another host, which cannot tell this process dead and would wait the
    // lock's expiry out. So the run releases its lock as it stops.
    let m = Month::new();
    let summary = m.out.path().join("summary.json");
    let mut args = m.args("run", &["--month", "2026-10"]);
    args.extend(["--summary-json".to_owned(), summary.to_str().unwrap().to_owned()]);
    let never = m.out.path().join("never");
    let env = [("CAPBILL_NOW", GRACE.to_owned()), ("CAPBILL_FAILPOINT_RESUME", never.to_str().unwrap().to_owned())];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = env.to_vec();
    env.push(("CAPBILL_FAILPOINT", "planned".to_owned()));
    let mut child = command(&args, &env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Read its log to the failpoint, and keep reading after it (a closed
    // pipe would end the process otherwise).
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.by_ref().map(Result::unwrap).any(|l| l.contains("failpoint planned reached")));
    let rest = std::thread::spawn(move || lines.map(Result::unwrap).collect::<Vec<_>>().join("\n"));
    let lock_dir = m.month_dir().join("_lock");
    assert_eq!(std::fs::read_dir(&lock_dir).unwrap().count(), 1, "the run holds the lock");
    let sent = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let log = rest.join().unwrap();
    assert_eq!(status.code(), Some(143), "{log}");
    let held: Vec<_> = std::fs::read_dir(&lock_dir).map(|d| d.filter_map(Result::ok).collect()).unwrap_or_default();
    assert!(held.is_empty(), "the lock is released: {held:?}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!((s["status"].as_str(), s["exit_code"].as_u64()), (Some("failed"), Some(143)));
    assert!(s["error"].as_str().unwrap().contains("stopped by SIGTERM"), "{s}");
    // The next run goes ahead at once.
    ok(&m.run(GRACE));
    assert_eq!(m.latest()["revision"], 1);
}

#[test]
fn status_before_the_first_run_says_there_is_no_month_yet() {
    // A fresh deployment: the output folder is made by the first run.
    let m = Month::new();
    let out = m.out.path().join("not made yet");
    let o = capbill(&["status", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no billing month has outputs under"));
}
