//! E-invoices (issue 18, spec 5): party data, VAT categories and amounts,
//! invoice numbers, UBL documents and credit notes, checked against the
//! hand-computed `fixtures/october-2026-einvoice/expected` and, with the
//! official EN 16931 rules, by `tests/einvoice/validate.py`.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::*;

/// During October's grace period (provisional) and after it (final).
pub const GRACE: &str = "2026-11-02T02:30:00Z";

/// The e-invoice fixture.
pub fn fixture() -> PathBuf {
    root().join("fixtures/october-2026-einvoice")
}

/// A writable copy of the e-invoice example (directory, usage, config) and an output folder.
pub struct Month {
    pub inputs: tempfile::TempDir,
    pub out: tempfile::TempDir,
}

impl Month {
    pub fn new() -> Month {
        let inputs = tempfile::tempdir().unwrap();
        copy_tree(&fixture().join("directory"), &inputs.path().join("directory"));
        copy_tree(&example().join("usage"), &inputs.path().join("usage"));
        std::fs::copy(fixture().join("capbill.toml"), inputs.path().join("capbill.toml")).unwrap();
        Month { inputs, out: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.inputs.path().join(rel)
    }

    /// Replaces `from` with `to` in an input file (once at least).
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let p = self.path(rel);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }

    pub fn cmd(&self, now: &str, cmd: &str, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![cmd.to_owned()];
        args.extend(extra.iter().map(|s| s.to_string()));
        for (flag, path) in [
            ("--config", self.path("capbill.toml")),
            ("--directory", self.path("directory")),
            ("--usage", self.path("usage")),
            ("--out", self.out.path().to_path_buf()),
        ] {
            args.push(flag.to_owned());
            args.push(path.to_str().unwrap().to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        capbill_env(&args, &[("CAPBILL_NOW", now.to_owned())])
    }

    pub fn run(&self, now: &str) -> Output {
        self.cmd(now, "run", &["--month", "2026-10"])
    }

    pub fn latest(&self) -> PathBuf {
        latest_revision(self.out.path())
    }
}

/// Runs and asserts success.
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "capbill failed ({:?}): {}", o.status.code(), stderr(&o));
    o
}

/// The findings of a revision as (kind, subject, detail).
fn findings(rev: &Path) -> Vec<Vec<String>> {
    project(&rev.join("findings.csv"), &["kind", "subject_id", "detail"].map(String::from))
}

#[test]
fn parties_lacking_data_get_a_finding_naming_the_entity_and_the_missing_columns_and_the_run_goes_on() {
    let m = Month::new();
    // cust-x (CH) loses its country; cust-y (FR, domestic to dp-1) keeps
    // its invoice without a VAT id; msp-b (a seller) loses its VAT id.
    m.edit("directory/entities.csv", "8001,CH,CHE123456789", "8001,,");
    m.edit("directory/entities.csv", "69006,FR,FR08552081317", "69006,FR,");
    m.edit("directory/entities.csv", "80331,DE,DE811907980", "80331,DE,");
    ok(m.run(GRACE));
    let rev = m.latest();
    let got: Vec<_> = findings(&rev).into_iter().filter(|f| f[0] == "einvoice_data_missing").collect();
    assert_eq!(
        got,
        [
            ["einvoice_data_missing", "cust-x", "missing country: 1 invoice gets no e-invoice"],
            ["einvoice_data_missing", "msp-b", "missing vat_id: 2 invoices get no e-invoice"],
        ]
        .map(|r| r.map(String::from).to_vec())
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rev.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["counts"]["findings"]["einvoice_data_missing"], 2);
    // The rest of the run is the worked example's.
    let (header, expected) = read_csv(&example().join("expected/invoices.csv"));
    assert_eq!(project(&rev.join("invoices.csv"), &header), expected);
}

#[test]
fn a_domestic_invoice_without_a_rate_for_the_sellers_country_is_a_configuration_error() {
    let m = Month::new();
    m.edit("capbill.toml", "vat_rates = { DE = \"19\", FR = \"20\" }", "vat_rates = { DE = \"19\" }");
    let o = m.run(GRACE);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("no VAT rate for FR under [invoicing.vat_rates]: seller dist-a issues domestic invoices there"),
        "{}",
        stderr(&o)
    );
    assert!(!m.out.path().join("billing_month=2026-10/latest.json").exists(), "nothing published");
}

#[test]
fn bad_country_or_vat_id_exits_2_naming_table_row_and_column() {
    for (from, to, problem) in [
        (
            "20095,DE,DE349683436",
            "20095,Germany,DE349683436",
            "entities.csv row 1, column country = \"Germany\": not an ISO 3166-1 alpha-2 country code",
        ),
        (
            "75002,FR,FR40303265045",
            "75002,FR,DE40303265045",
            "entities.csv row 2, column vat_id = \"DE40303265045\": a VAT id of country FR is FR followed by",
        ),
    ] {
        let m = Month::new();
        m.edit("directory/entities.csv", from, to);
        let o = m.run(GRACE);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(problem), "{}", stderr(&o));
    }
}
