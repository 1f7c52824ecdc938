//! Operating capbill: `validate`, the JSON run summary, the drop alert,
//! logs in both formats, and secrets that never reach any output.

use crate::s3_server::S3Server;
use crate::util::*;

fn ex_args(out: &std::path::Path) -> Vec<String> {
    let ex = example();
    vec![
        "--directory".into(),
        ex.join("directory").to_str().unwrap().into(),
        "--usage".into(),
        ex.join("usage").to_str().unwrap().into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ]
}

fn run(args: &[String], env: &[(&str, String)]) -> std::process::Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    capbill_env(&a, env)
}

#[test]
fn locations_that_cannot_work_exit_2_before_anything_is_billed_and_reading_commands_still_work() {
    let tmp = tempfile::tempdir().unwrap();
    let usage = tmp.path().join("usage");
    copy_tree(&example().join("usage"), &usage);
    let directory = example().join("directory");
    let args = |usage: &std::path::Path, out: &std::path::Path| {
        vec![
            "run".to_owned(),
            "--month".into(),
            "2026-10".into(),
            "--directory".into(),
            directory.to_str().unwrap().into(),
            "--usage".into(),
            usage.to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let refused = |args: Vec<String>, says: &str| {
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    };
    refused(args(&usage, &usage.join("out")), "is inside the usage location");
    refused(args(&usage.join("daily/2026-10/sa-x1.csv"), &tmp.path().join("o")), "sa-x1.csv is a file");
    refused(args(&usage, std::path::Path::new("S3://bucket/x")), "starts with the scheme \"S3\"");
    assert!(!usage.join("out").exists() && !tmp.path().join("o").exists(), "nothing is billed");
    // Commands that read one location fill the others in: not refused.
    let out = tmp.path().join("out");
    assert!(run(&args(&usage, &out), &[]).status.success());
    let o = run(&["status".into(), "--out".into(), out.to_str().unwrap().into()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["validate".into(), "--directory".into(), directory.to_str().unwrap().into()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_log_level_that_cannot_be_parsed_is_said_and_info_is_used() {
    let dir = example().join("directory");
    let args = ["validate".to_owned(), "--directory".into(), dir.to_str().unwrap().into()];
    let o = run(&args, &[("CAPBILL_LOG", "nonsense===".to_owned())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ignored the log level CAPBILL_LOG=") && err.contains("nonsense==="), "{err}");
}

#[test]
fn validate_checks_a_directory_without_billing() {
    let ex = example_copy();
    let dir = ex.path().join("directory");
    let o = capbill(&["validate", "--directory", dir.to_str().unwrap(), "--month", "2026-10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("is valid: 8 entities, 6 storage accounts, 8 contracts, 2 deals"), "{out}");
    assert!(out.contains("no findings for 2026-10"), "{out}");

    // dp-1 allocates 60 TB under dist-a's 50 TB reservation.
    let contracts = dir.join("contracts.csv");
    let text = std::fs::read_to_string(&contracts)
        .unwrap()
        .replace("K-DISTA-DP1,dist-a,dp-1,reserved,20,", "K-DISTA-DP1,dist-a,dp-1,reserved,60,");
    std::fs::write(&contracts, text).unwrap();
    let o = capbill(&["validate", "--directory", dir.to_str().unwrap(), "--month", "2026-10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "allocation_exceeds_reserved dist-a: on 2026-10-01: children hold 60 TB reserved, above the 50 TB"
        ),
        "{out}"
    );

    // An invalid export is refused with its place.
    let text = std::fs::read_to_string(&contracts)
        .unwrap()
        .replace("K-IC-MSPB,ic,msp-b,pay_per_use", "K-IC-MSPB,ic,msp-b,flat_rate");
    std::fs::write(&contracts, text).unwrap();
    let o = capbill(&["validate", "--directory", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("contracts.csv row 6, column model = \"flat_rate\""), "{}", stderr(&o));
}

#[test]
fn the_run_summary_is_written_for_success_and_for_failure() {
    let out = tempfile::tempdir().unwrap();
    let summary = out.path().join("summary.json");
    let mut args = vec![
        "run".to_owned(),
        "--month".into(),
        "2026-10".into(),
        "--summary-json".into(),
        summary.to_str().unwrap().into(),
    ];
    args.extend(ex_args(&out.path().join("o")));
    let o = run(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["status"], "success");
    assert_eq!(s["exit_code"], 0);
    let m = &s["months"][0];
    assert_eq!(m["month"], "2026-10");
    assert_eq!(m["outcome"], "published");
    assert_eq!(m["status"], "final");
    assert_eq!(m["revision"], 1);
    for stage in ["directory", "ingest", "meter", "rate", "export"] {
        assert!(m["stage_ms"][stage].is_u64(), "stage {stage} missing: {m}");
    }
    assert_eq!(m["records_read"], 530);
    assert_eq!(m["objects_read"], 4);
    assert_eq!(m["totals"][0]["total"], "2888.30");
    assert_eq!(m["counts"]["invoice_lines"], 13);
    assert_eq!(m["counts"]["findings"]["gap_filled"], 1);

    // Run again: nothing changed, and the summary still carries the latest
    // revision's counts and totals, which alerts read every night.
    let o = run(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let m = &s["months"][0];
    assert_eq!((m["outcome"].as_str(), m["revision"].as_u64()), (Some("unchanged"), Some(1)));
    assert_eq!(m["totals"][0]["total"], "2888.30");
    assert_eq!(m["counts"]["findings"]["gap_filled"], 1);

    // A failing run still writes it.
    let mut bad = args.clone();
    let i = bad.iter().position(|a| a == "--directory").unwrap();
    bad[i + 1] = "/nonexistent/directory".into();
    let o = run(&bad, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["status"], "failed");
    assert_eq!(s["exit_code"], 2);
    // With JSON logs the failure is an ERROR event too (what alerts select),
    // besides the one text line.
    let mut json = bad.clone();
    json.extend(["--log-format".to_owned(), "json".to_owned()]);
    let o = run(&json, &[]);
    let events: Vec<serde_json::Value> = stderr(&o).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let failed = events.iter().find(|e| e["level"] == "ERROR" && e["message"] == "run failed");
    let failed = failed.unwrap_or_else(|| panic!("no ERROR event: {}", stderr(&o)));
    assert_eq!(failed["exit_code"], 2);
    assert!(failed["error"].as_str().unwrap().contains("/nonexistent/directory"), "{failed}");
    assert!(s["error"].as_str().unwrap().contains("/nonexistent/directory"), "{s}");

    // A summary that cannot be written (its folder is missing, or it names a
    // folder) stops the run before it bills: alerts would read last night's.
    for unwritable in [out.path().join("missing/summary.json"), out.path().to_path_buf()] {
        let mut args = args.clone();
        let i = args.iter().position(|a| a == "--summary-json").unwrap();
        args[i + 1] = unwritable.to_str().unwrap().into();
        let i = args.iter().position(|a| a == "--out").unwrap();
        args[i + 1] = out.path().join("elsewhere").to_str().unwrap().into();
        let o = run(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--summary-json"), "{}", stderr(&o));
        assert!(!out.path().join("elsewhere").exists(), "nothing is billed");
    }
}

#[test]
fn a_total_that_drops_sharply_against_the_previous_month_is_a_finding() {
    let out = tempfile::tempdir().unwrap();
    for month in ["2026-10", "2026-11"] {
        let mut args = vec!["run".to_owned(), "--month".into(), month.into()];
        args.extend(ex_args(out.path()));
        let o = run(&args, &[("CAPBILL_NOW", "2026-12-10T00:00:00Z".into())]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let nov = out.path().join("billing_month=2026-11/revision=1/findings.csv");
    let rows = project(&nov, &["kind", "subject_id", "detail"].map(String::from));
    let drop = rows.iter().find(|r| r[0] == "total_dropped").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(drop[1], "EUR");
    assert!(drop[2].contains("below 0.5 of the 2888.30 billed in 2026-10 (revision 1)"), "{drop:?}");
    let oct = out.path().join("billing_month=2026-10/revision=1/findings.csv");
    assert!(project(&oct, &["kind".to_owned()]).iter().all(|r| r[0] != "total_dropped"));
}

#[test]
fn logs_are_json_lines_or_text_with_one_event_per_stage() {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_owned(), "--month".into(), "2026-10".into(), "--log-format".into(), "json".into()];
    args.extend(ex_args(out.path()));
    let o = run(&args, &[("CAPBILL_LOG", "info".into())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    for stage in ["directory", "ingest", "meter", "rate", "export"] {
        let e = events.iter().find(|e| e["stage"] == stage).unwrap_or_else(|| panic!("no {stage} event"));
        assert!(e["elapsed_ms"].is_u64(), "{e}");
        assert_eq!(e["level"], "INFO");
    }
    let ingest = events.iter().find(|e| e["stage"] == "ingest").unwrap();
    assert_eq!(ingest["objects"], 4);
    assert_eq!(ingest["bytes_read"], 36536);
    assert_eq!(ingest["records"], 530);
    let meter = events.iter().find(|e| e["stage"] == "meter").unwrap();
    assert_eq!(meter["rows_in"], 530);

    let text_out = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_owned(), "--month".into(), "2026-10".into(), "--log-format".into(), "text".into()];
    args.extend(ex_args(text_out.path()));
    let o = run(&args, &[("CAPBILL_LOG", "info".into())]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(err.contains("stage=\"meter\"") || err.contains("stage=meter"), "{err}");
    assert!(err.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()), "{err}");
}

#[test]
fn secrets_from_environment_and_config_never_appear_in_any_output() {
    let server = S3Server::start(&["billing", "usage-bucket"]);
    server.upload_tree("billing", "partner-directory", &example().join("directory"));
    server.upload_tree("usage-bucket", "exports", &example().join("usage"));
    let work = tempfile::tempdir().unwrap();
    let secret = crate::s3_server::SECRET_KEY;

    let config = work.path().join("capbill.toml");
    std::fs::write(
        &config,
        format!(
            "[locations]\ndirectory = \"s3://billing/partner-directory\"\nusage = \"s3://usage-bucket/exports\"\nout = \"s3://billing/out\"\n\
             [s3]\naccess_key_id = \"{}\"\nsecret_access_key = \"{secret}\"\n",
            crate::s3_server::ACCESS_KEY
        ),
    )
    .unwrap();
    let cases: [(&str, Vec<(&str, String)>); 2] = [
        // Keys in the config file only.
        ("config", vec![("AWS_ACCESS_KEY_ID", String::new()), ("AWS_SECRET_ACCESS_KEY", String::new())]),
        // Keys in CAPBILL_S3_* and AWS_* variables (the config's are overridden).
        (
            "environment",
            vec![
                ("CAPBILL_S3_ACCESS_KEY_ID", crate::s3_server::ACCESS_KEY.to_owned()),
                ("CAPBILL_S3_SECRET_ACCESS_KEY", secret.to_owned()),
            ],
        ),
    ];
    for (i, (case, extra)) in cases.into_iter().enumerate() {
        let summary = work.path().join(format!("summary-{i}.json"));
        let month = ["2026-10", "2026-09"][i];
        let mut env = server.env();
        env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
        env.extend(extra);
        env.push(("CAPBILL_LOG", "trace".to_owned()));
        let o = capbill_env(
            &[
                "run",
                "--month",
                month,
                "--config",
                config.to_str().unwrap(),
                "--summary-json",
                summary.to_str().unwrap(),
            ],
            &env,
        );
        assert!(
            o.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr).lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
        let logs = stderr(&o);
        assert!(logs.lines().count() > 50, "{case}: trace logging is on");
        let manifest = std::fs::read_to_string(
            server.bucket("billing").join(format!("out/billing_month={month}/revision=1/manifest.json")),
        )
        .unwrap();
        for (what, text) in [
            ("stderr", logs),
            ("stdout", String::from_utf8_lossy(&o.stdout).into_owned()),
            ("summary", std::fs::read_to_string(&summary).unwrap()),
            ("manifest", manifest),
        ] {
            assert!(!text.contains(secret), "{case}: the secret key appears in {what}");
        }
    }
    // A failing run with a wrong secret does not print the wrong secret either.
    let mut env = server.env();
    env.push(("CAPBILL_S3_SECRET_ACCESS_KEY", "wrong-but-still-secret-value".to_owned()));
    env.push(("CAPBILL_LOG", "debug".to_owned()));
    let o = capbill_env(&["run", "--month", "2026-08", "--config", config.to_str().unwrap()], &env);
    assert_eq!(o.status.code(), Some(3));
    assert!(!stderr(&o).contains("wrong-but-still-secret-value"));
}
