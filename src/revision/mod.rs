//! Revisions of a billing month: the month's status, whether its inputs
//! changed, what a run must do about it, and corrections between revisions.
//!
//! A month is `provisional` until its grace period after month end has
//! passed, then `final`. Finance issues invoices from a final revision; a
//! later final revision never edits it but carries `corrections`: per line
//! key, the difference from the previous final revision. This module owns
//! those rules: [`status_at`], the [`Fingerprint`] of a run's inputs, the
//! [`decide`] function that turns a month's history into a [`Decision`],
//! the month [`lock`], and the line differences of [`corrections`]. It
//! reads published revisions through [`crate::manifest`] and never writes
//! one: publishing is `export`'s job.

pub mod corrections;
pub mod lock;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use polars::prelude::PolarsError;
use thiserror::Error;

use crate::manifest::{InputObject, Manifest, ManifestError, MonthStatus};
use crate::model::{BillingMonth, date_of};
use crate::storage::StorageError;

pub use corrections::{
    InvoiceTotals, LineChange, LineKey, LineValues, corrections_frame, invoice_changes, line_changes, lines_by_key,
    read_lines,
};

/// Why a published revision could not be read back.
#[derive(Debug, Error)]
pub enum RevisionError {
    /// Its manifest or `latest.json`.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Storage failed.
    #[error("cannot read a published revision")]
    Storage(#[from] StorageError),
    /// Its invoice lines are not the table capbill writes.
    #[error("{location} is not a valid invoice_lines table")]
    Lines {
        /// Where.
        location: String,
        /// Cause.
        #[source]
        source: PolarsError,
    },
}

impl RevisionError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            RevisionError::Manifest(e) => e.storage(),
            RevisionError::Storage(e) => Some(e),
            RevisionError::Lines { .. } => None,
        }
    }
}

/// The status of `month` at `now` with `grace_days` after its end.
pub fn status_at(month: BillingMonth, now: DateTime<Utc>, grace_days: u32) -> MonthStatus {
    let final_from = date_of(month.end_day() + grace_days as i32).and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    if now >= final_from { MonthStatus::Final } else { MonthStatus::Provisional }
}

/// What a billing invocation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A normal run: refuses to change a final month.
    Run,
    /// An explicit reprocess of a month, with the operator's reason.
    Reprocess {
        /// Why (goes into the manifest).
        reason: String,
    },
}

impl Mode {
    /// The command name (`run`, `reprocess`), for locks and messages.
    pub fn command(&self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Reprocess { .. } => "reprocess",
        }
    }

    /// The operator's reason, for a reprocess.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Mode::Run => None,
            Mode::Reprocess { reason } => Some(reason),
        }
    }
}

/// Everything a revision was made from; equal fingerprints bill the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// SHA-256 of the directory tables.
    pub directory_hash: String,
    /// Usage objects read (key, size, ETag), in key order.
    pub usage: Vec<InputObject>,
    /// Hash of the billing settings.
    pub config_hash: String,
    /// The billing settings the manifest lists (`unit`, `daily_method`,
    /// `skip_bad_records`), to name which one changed.
    pub settings: serde_json::Value,
    /// Billing rules version.
    pub rules_version: String,
}

impl Fingerprint {
    /// The fingerprint recorded in a manifest.
    pub fn of(m: &Manifest) -> Fingerprint {
        Fingerprint {
            directory_hash: m.directory.hash.clone(),
            usage: m.usage.objects.clone(),
            config_hash: m.config_hash.clone(),
            settings: m.settings.clone(),
            rules_version: m.rules_version.clone(),
        }
    }

    /// What differs from `before`, for people (empty when nothing does).
    pub fn changes_since(&self, before: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        if self.directory_hash != before.directory_hash {
            out.push("the partner directory changed".to_owned());
        }
        if self.usage != before.usage {
            let old: BTreeMap<_, _> = before.usage.iter().map(|o| (&o.key, o)).collect();
            let new: BTreeMap<_, _> = self.usage.iter().map(|o| (&o.key, o)).collect();
            let added: Vec<&str> = new.keys().filter(|k| !old.contains_key(*k)).map(|k| k.as_str()).collect();
            let removed: Vec<&str> = old.keys().filter(|k| !new.contains_key(*k)).map(|k| k.as_str()).collect();
            let changed: Vec<&str> =
                new.iter().filter(|(k, o)| old.get(*k).is_some_and(|p| p != *o)).map(|(k, _)| k.as_str()).collect();
            // The objects themselves, the first few of each kind.
            let name = |what: &str, keys: &[&str]| match keys.len() {
                0 => None,
                n if n <= 3 => Some(format!("{what} {}", keys.join(", "))),
                n => Some(format!("{what} {} and {} more", keys[..3].join(", "), n - 3)),
            };
            let named: Vec<String> = [name("added", &added), name("changed", &changed), name("removed", &removed)]
                .into_iter()
                .flatten()
                .collect();
            out.push(format!(
                "usage objects changed ({} added, {} changed, {} removed: {})",
                added.len(),
                changed.len(),
                removed.len(),
                named.join("; ")
            ));
        }
        if self.config_hash != before.config_hash {
            // The settings the manifest lists, named with their values; the
            // hash also covers `[invoicing]`, which the manifest does not list.
            let named: Vec<String> = self
                .settings
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| before.settings.get(k.as_str()).is_some_and(|was| was != *v))
                .map(|(k, v)| format!("{k} {} → {v}", before.settings[k.as_str()]))
                .collect();
            out.push(if named.is_empty() {
                "the billing configuration changed ([invoicing]: VAT rates, IBANs, payment days or unit code)"
                    .to_owned()
            } else {
                format!("the billing configuration changed ({})", named.join(", "))
            });
        }
        if self.rules_version != before.rules_version {
            out.push(format!("the rules version changed ({} → {})", before.rules_version, self.rules_version));
        }
        out
    }
}

/// What a run must do with a month, decided before anything is billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'h> {
    /// A run killed between its manifest and `latest.json` left a complete,
    /// unpublished revision: point `latest.json` at it, then decide again
    /// from it (it is what this run would bill when that says `Unchanged`).
    Adopt(&'h Manifest),
    /// Inputs, configuration and status match the latest revision: nothing to publish.
    Unchanged {
        /// The latest revision.
        revision: u32,
        /// Its status.
        status: MonthStatus,
    },
    /// The month is final and its inputs changed, but no reprocess was asked for.
    Refuse {
        /// The latest (final) revision.
        revision: u32,
        /// What changed, for people.
        changes: Vec<String>,
    },
    /// Bill the month and publish a new revision.
    Bill(NewRevision),
}

/// The revision a billing run publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRevision {
    /// Its number: one more than the newest complete revision.
    pub revision: u32,
    /// Its status: the clock's, never below the latest revision's.
    pub status: MonthStatus,
    /// The revision `latest.json` names now, if any.
    pub previous: Option<u32>,
    /// The earlier final revision this final one corrects, if any.
    pub corrects: Option<u32>,
}

/// Decides what a run does with a month from its `history` (every complete
/// revision, ascending), the revision `latest.json` names (`latest`), the
/// run's `fingerprint`, the status the clock gives (`clock`) and the `mode`.
pub fn decide<'h>(
    history: &'h [Manifest],
    latest: Option<u32>,
    fingerprint: &Fingerprint,
    clock: MonthStatus,
    mode: &Mode,
) -> Decision<'h> {
    let latest = latest.and_then(|l| history.iter().find(|m| m.revision == l));
    // A run killed between its manifest and latest.json left a complete
    // revision newer than the one latest.json names. A final one took its
    // document numbers and wrote its documents, so it is published first,
    // whatever this run's inputs: as if that run had ended. This run then
    // decides from it (unchanged, refused, or a revision on top of it that
    // corrects it), so that no correction ever names a revision finance
    // was never given.
    if let Some(newest) = history.last()
        && latest.is_none_or(|l| l.revision < newest.revision)
    {
        return Decision::Adopt(newest);
    }
    let mut status = clock;
    if let Some(l) = latest {
        let changes = fingerprint.changes_since(&Fingerprint::of(l));
        status = status.max(l.status);
        if changes.is_empty() && l.status == status {
            return Decision::Unchanged { revision: l.revision, status };
        }
        if l.status == MonthStatus::Final && *mode == Mode::Run {
            return Decision::Refuse { revision: l.revision, changes };
        }
    }
    // The final revision corrected is the one readers follow: status never
    // goes down, so a final latest is the newest final revision published.
    let issued_final = latest.filter(|l| l.status == MonthStatus::Final).map(|l| l.revision);
    Decision::Bill(NewRevision {
        revision: history.last().map_or(1, |m| m.revision + 1),
        status,
        previous: latest.map(|l| l.revision),
        corrects: issued_final.filter(|_| status == MonthStatus::Final),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Counts, DirectoryInput, UsageInput};

    fn month() -> BillingMonth {
        "2026-10".parse().unwrap()
    }

    #[test]
    fn status_turns_final_after_the_grace_period() {
        let m = month();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(status_at(m, at("2026-10-31T23:59:59Z"), 3), MonthStatus::Provisional);
        assert_eq!(status_at(m, at("2026-11-03T23:59:59Z"), 3), MonthStatus::Provisional);
        assert_eq!(status_at(m, at("2026-11-04T00:00:00Z"), 3), MonthStatus::Final);
        assert_eq!(status_at(m, at("2026-11-01T00:00:00Z"), 0), MonthStatus::Final);
    }

    fn fingerprint(directory_hash: &str) -> Fingerprint {
        Fingerprint {
            directory_hash: directory_hash.to_owned(),
            usage: vec![InputObject { key: "a.csv".into(), size: 3, etag: "e".into() }],
            config_hash: "c".into(),
            settings: serde_json::json!({ "unit": "tb", "daily_method": "mean", "skip_bad_records": false }),
            rules_version: "1".into(),
        }
    }

    /// A revision made from the inputs of `fingerprint(dir)`.
    fn revision(revision: u32, status: MonthStatus, dir: &str) -> Manifest {
        let f = fingerprint(dir);
        Manifest {
            billing_month: "2026-10".into(),
            revision,
            status,
            generated_at: "2026-11-01T00:00:00Z".into(),
            requested_by: "t@h".into(),
            reason: None,
            previous_revision: None,
            corrects_revision: None,
            capbill_version: "0".into(),
            rules_version: f.rules_version,
            config_hash: f.config_hash,
            settings: f.settings,
            directory: DirectoryInput { location: "d".into(), hash: f.directory_hash, objects: Vec::new() },
            usage: UsageInput { location: "u".into(), objects: f.usage, pruned_objects: 0, records_outside_month: 0 },
            outputs: Vec::new(),
            totals: Vec::new(),
            counts: Counts { invoice_lines: 0, invoices: 0, accounts: 0, findings: Default::default() },
            documents: Vec::new(),
        }
    }

    #[test]
    fn a_changed_configuration_names_the_setting_or_invoicing() {
        let before = fingerprint("d");
        let mut now = fingerprint("d");
        now.config_hash = "c2".into();
        now.settings["skip_bad_records"] = serde_json::json!(true);
        assert_eq!(now.changes_since(&before), ["the billing configuration changed (skip_bad_records false → true)"]);
        now.settings = before.settings.clone();
        let changes = now.changes_since(&before);
        assert_eq!(changes.len(), 1);
        assert!(changes[0].starts_with("the billing configuration changed ([invoicing]"), "{changes:?}");
    }

    use MonthStatus::{Final, Provisional};

    #[test]
    fn a_first_run_bills_revision_one() {
        let d = decide(&[], None, &fingerprint("a"), Provisional, &Mode::Run);
        let new = NewRevision { revision: 1, status: Provisional, previous: None, corrects: None };
        assert_eq!(d, Decision::Bill(new));
    }

    #[test]
    fn same_inputs_and_status_are_unchanged_and_a_new_status_bills_again() {
        let h = [revision(1, Provisional, "a")];
        let d = decide(&h, Some(1), &fingerprint("a"), Provisional, &Mode::Run);
        assert_eq!(d, Decision::Unchanged { revision: 1, status: Provisional });
        // The grace period is over: the same inputs are published as final.
        let d = decide(&h, Some(1), &fingerprint("a"), Final, &Mode::Run);
        assert_eq!(d, Decision::Bill(NewRevision { revision: 2, status: Final, previous: Some(1), corrects: None }));
    }

    #[test]
    fn a_final_month_refuses_changes_unless_reprocessed() {
        let h = [revision(1, Provisional, "a"), revision(2, Final, "a")];
        let d = decide(&h, Some(2), &fingerprint("b"), Final, &Mode::Run);
        assert_eq!(d, Decision::Refuse { revision: 2, changes: vec!["the partner directory changed".to_owned()] });
        // A final month stays final even if the clock were to say otherwise.
        let reprocess = Mode::Reprocess { reason: "late export".into() };
        let d = decide(&h, Some(2), &fingerprint("b"), Provisional, &reprocess);
        let new = NewRevision { revision: 3, status: Final, previous: Some(2), corrects: Some(2) };
        assert_eq!(d, Decision::Bill(new));
    }

    #[test]
    fn an_unpublished_complete_revision_is_adopted_first_and_decided_from() {
        let h = [revision(1, Provisional, "a"), revision(2, Provisional, "b")];
        // latest.json still names 1: revision 2 is published first, whatever the inputs.
        for f in ["b", "c"] {
            assert_eq!(decide(&h, Some(1), &fingerprint(f), Provisional, &Mode::Run), Decision::Adopt(&h[1]));
        }
        // Then, from it: the same inputs are unchanged, others bill revision 3 on top of it.
        let d = decide(&h, Some(2), &fingerprint("b"), Provisional, &Mode::Run);
        assert_eq!(d, Decision::Unchanged { revision: 2, status: Provisional });
        let d = decide(&h, Some(2), &fingerprint("c"), Provisional, &Mode::Run);
        let new = NewRevision { revision: 3, status: Provisional, previous: Some(2), corrects: None };
        assert_eq!(d, Decision::Bill(new));
        // No latest.json at all (killed before the first one was written).
        assert_eq!(decide(&h[..1], None, &fingerprint("a"), Provisional, &Mode::Run), Decision::Adopt(&h[0]));
    }

    #[test]
    fn a_final_revision_left_unpublished_is_what_later_changes_correct() {
        // Revision 2 (final, its documents written) was left without latest.json.
        let h = [revision(1, Provisional, "a"), revision(2, Final, "a")];
        assert_eq!(decide(&h, Some(1), &fingerprint("b"), Final, &Mode::Run), Decision::Adopt(&h[1]));
        // Published, it is final: changed inputs need a reprocess, which corrects it.
        let d = decide(&h, Some(2), &fingerprint("b"), Final, &Mode::Run);
        assert_eq!(d, Decision::Refuse { revision: 2, changes: vec!["the partner directory changed".to_owned()] });
        let reprocess = Mode::Reprocess { reason: "late export".into() };
        let d = decide(&h, Some(2), &fingerprint("b"), Final, &reprocess);
        assert_eq!(d, Decision::Bill(NewRevision { revision: 3, status: Final, previous: Some(2), corrects: Some(2) }));
    }
}
