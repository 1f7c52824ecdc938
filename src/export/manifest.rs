//! Building the manifest of a revision from what it was made from (the
//! [`Provenance`] a run gathered) and what it holds (its tables, findings
//! and totals). The types are [`crate::manifest`]'s; the output files are
//! filled in by [`super::publish`] as they are written. Nothing here reads
//! storage or decides the revision number or status (that is `revision`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Tables;
use crate::config::{RULES_VERSION, Rules};
use crate::manifest::{Counts, DirectoryInput, Manifest, MonthStatus, UsageInput};
use crate::model::{BillingMonth, Finding};

/// What a revision was made from, why and by whom.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// The month.
    pub month: BillingMonth,
    /// The revision's number.
    pub revision: u32,
    /// Its status.
    pub status: MonthStatus,
    /// When the run started.
    pub generated_at: DateTime<Utc>,
    /// `user@host` of whoever asked.
    pub requested_by: &'a str,
    /// The operator's reason, for a reprocess.
    pub reason: Option<&'a str>,
    /// The revision `latest.json` named before this one.
    pub previous_revision: Option<u32>,
    /// The earlier final revision this one corrects.
    pub corrects_revision: Option<u32>,
    /// Hash of the billing settings and rules version.
    pub config_hash: &'a str,
    /// The billing settings.
    pub rules: &'a Rules,
    /// The directory read.
    pub directory: DirectoryInput,
    /// The usage read.
    pub usage: UsageInput,
}

/// The manifest of a revision, without its output files yet.
pub fn manifest(p: Provenance<'_>, tables: &Tables, findings: &[Finding]) -> Manifest {
    let mut by_kind = BTreeMap::new();
    for f in findings {
        *by_kind.entry(f.kind.as_str().to_owned()).or_insert(0) += 1;
    }
    Manifest {
        billing_month: p.month.to_string(),
        revision: p.revision,
        status: p.status,
        generated_at: p.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        requested_by: p.requested_by.to_owned(),
        reason: p.reason.map(str::to_owned),
        previous_revision: p.previous_revision,
        corrects_revision: p.corrects_revision,
        capbill_version: env!("CARGO_PKG_VERSION").to_owned(),
        rules_version: RULES_VERSION.to_owned(),
        config_hash: p.config_hash.to_owned(),
        settings: p.rules.settings(),
        directory: p.directory,
        usage: p.usage,
        outputs: Vec::new(),
        totals: tables.totals.per_currency.clone(),
        counts: Counts {
            invoice_lines: tables.invoice_lines.height(),
            invoices: tables.invoices.height(),
            accounts: tables.account_usage.height(),
            findings: by_kind,
        },
        documents: Vec::new(),
    }
}
