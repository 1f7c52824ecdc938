//! Usage records: from every object under the usage location to one typed frame.
//!
//! Owns spec 1.2: which objects are read (recursively, in key order, pruned
//! to the billing month by their key), how each encoding (CSV, JSON Lines,
//! Parquet, the partner API export) becomes records, and what happens to a
//! malformed record (the run stops naming object, row and field, or with
//! `--skip-bad-records` the record becomes a finding). The result has the
//! columns of [`record_columns`]: account and bucket as interned ids,
//! timestamp, day, bytes and the object/row positions that "last wins"
//! needs. Metering is not here.
//!
//! The work is split by job: [`plan`] lists the location and decides what
//! is read, `row_groups` splits Parquet objects into pieces by their
//! footer, `fetch` reads and parses the objects within the memory budget
//! and hands them on in streaming order, `names` turns the names parsers
//! read into the run's ids (snapshots of the run's interners, and the last
//! Parquet dictionary mapped to them), `sink` holds one object's records
//! (bad-record policy, day admission, columnar builders), and the readers
//! of each encoding (`text`, `parquet`, `partner_api`) turn bytes into
//! records for the sink. This module holds what they share: options,
//! errors and what is handed on. It must not decide anything about
//! metering, and the readers must not know about fetching; they see the
//! run's names only through the sink's `names::PieceNames`.

mod fetch;
mod names;
mod parquet;
mod partner_api;
mod plan;
mod prune;
mod row_groups;
mod sink;
mod text;

use polars::prelude::{DataFrame, PolarsError};
use thiserror::Error;

use crate::model::{BillingMonth, Day, Finding, col};
use crate::storage::{ObjectMeta, StorageError};

pub use fetch::{ParsedObject, ingest, parse_object, reread};
pub use plan::{Plan, plan};
pub use prune::key_may_hold;

/// Why usage could not be read.
#[derive(Debug, Error)]
pub enum IngestError {
    /// Storage failure.
    #[error("cannot read usage records")]
    Storage(#[from] StorageError),
    /// The usage location does not exist (a local folder): the setting is wrong.
    #[error("the usage location {location} does not exist: check --usage (or `usage` under [locations])")]
    MissingLocation {
        /// The folder.
        location: String,
    },
    /// One record is malformed.
    #[error("usage object {object} row {row}, field {field}: {reason}")]
    Record {
        /// Object key.
        object: String,
        /// 1-based record number in the object (row 1 is the first after a header).
        row: usize,
        /// Field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// One line of a JSON Lines object is not a JSON object.
    #[error("usage object {object} row {row}, field (record): not a JSON object")]
    Json {
        /// Object key.
        object: String,
        /// 1-based line number.
        row: usize,
        /// The parser's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The object's columns or structure are not a usage layout.
    #[error("usage object {object}: {reason}")]
    Layout {
        /// Object key.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// The object cannot be parsed as its format at all.
    #[error("usage object {object} cannot be parsed")]
    Unparsable {
        /// Object key.
        object: String,
        /// Parser error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Building the frame failed (a bug).
    #[error("building the usage frame failed")]
    Frame(#[from] PolarsError),
}

impl IngestError {
    /// The storage failure behind this error, if that is what it is.
    pub fn storage(&self) -> Option<&StorageError> {
        match self {
            IngestError::Storage(e) => Some(e),
            _ => None,
        }
    }
}

/// What ingestion read, besides the records it handed on.
#[derive(Debug)]
pub struct Ingested {
    /// Objects read, in key order.
    pub objects: Vec<ObjectMeta>,
    /// Skipped records and objects.
    pub findings: Vec<Finding>,
    /// Objects not read because their key says they cannot hold records of the month.
    pub pruned: usize,
    /// Records of the month handed on.
    pub records: usize,
    /// Records read that fall outside the month.
    pub outside_month: u64,
}

/// The records of one object, handed on as soon as it is parsed.
#[derive(Debug)]
pub struct Batch {
    /// Records of the month, the columns of [`record_columns`]: frames in
    /// day order, each holding records of one day (a day may have several).
    pub days: Vec<DataFrame>,
    /// Object key.
    pub object: String,
    /// Days before this one will not receive records from any object still to
    /// come: they can be metered and their raw records dropped.
    pub complete_before: Day,
}

/// Settings of ingestion.
#[derive(Debug, Clone, Copy)]
pub struct IngestOptions {
    /// The billing month.
    pub month: BillingMonth,
    /// Turn malformed records into findings instead of stopping.
    pub skip_bad_records: bool,
    /// Objects fetched at once.
    pub concurrency: usize,
    /// Bytes of memory the run aims to stay within (`memory_budget_mib`):
    /// up to half of it for objects fetched and being parsed, a thirty-second per
    /// piece of a large Parquet object (metering takes a quarter for the
    /// records of open days).
    pub memory_budget: u64,
}

impl IngestOptions {
    /// Bytes of objects fetched and whose records are not yet handed on,
    /// unless one object alone is larger: two of the largest piece per
    /// parser (one being parsed, one waiting), at least an eighth of the budget (for many small
    /// objects fetched at once) and at most half of it. At the default,
    /// two partner API exports of 250 MB, one for each parser of a 2-core
    /// machine; 128 MiB of Parquet pieces of 32 MiB. Reading ahead is for
    /// waiting on S3, not for keeping objects that parsers cannot take yet.
    pub(crate) fn fetch_ahead(&self, largest_piece: u64, parsers: usize) -> u64 {
        largest_piece.saturating_mul(2 * parsers as u64).clamp(self.memory_budget / 8, self.memory_budget / 2)
    }

    /// Bytes of a Parquet object read at once when it is read in pieces.
    pub(crate) fn piece_bytes(&self) -> u64 {
        (self.memory_budget / 32).max(1 << 20)
    }
}

/// The columns of a record frame, in order: account and bucket ids
/// (`UInt32`), timestamp (µs, `Int64`), day (`Int32`), bytes (`UInt64`),
/// object and row positions (`UInt32`).
pub fn record_columns() -> [&'static str; 7] {
    [col::ACCOUNT_ID, col::BUCKET, col::TS, col::DAY, col::BYTES, col::OBJECT, col::ROW]
}
