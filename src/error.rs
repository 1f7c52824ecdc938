//! The top-level error of a run and the one mapping from error kinds to exit codes.
//!
//! Each stage owns its own `thiserror` enum; this module wraps them and
//! decides what the process exit code says. `main` prints the error chain
//! and exits with [`Error::exit_code`]. Exit codes are decided here and
//! nowhere else; no stage knows them.

use thiserror::Error;

use crate::model::BillingMonth;
use crate::revision::lock::LockError;
use crate::{collect, config, directory, einvoice, export, ingest, manifest, meter, rate, revision, storage};

/// Process exit codes, documented in the README.
pub mod exit {
    /// The run succeeded (including "nothing changed").
    pub const SUCCESS: u8 = 0;
    /// A bug or an unexpected internal failure.
    pub const INTERNAL: u8 = 1;
    /// Invalid input or configuration: nothing was published, a retry will not help.
    pub const INVALID_INPUT: u8 = 2;
    /// Storage or network failure: retrying later may help.
    pub const INFRASTRUCTURE: u8 = 3;
    /// Another run holds the month's lock, took it over during this run,
    /// or wrote the same revision: nothing more was published.
    pub const LOCK_HELD: u8 = 4;
    /// A final month's inputs changed and no reprocess was asked for.
    pub const REPROCESS_REFUSED: u8 = 5;
}

/// Everything that can stop a run.
#[derive(Debug, Error)]
pub enum Error {
    /// Configuration or flags.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Partner directory.
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
    /// Usage records.
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// Collecting usage from the storage system.
    #[error(transparent)]
    Collect(#[from] collect::CollectError),
    /// Metering.
    #[error(transparent)]
    Meter(#[from] meter::MeterError),
    /// Rating: an overflow that the directory's bounds should have made impossible.
    #[error(transparent)]
    Rate(#[from] rate::RateError),
    /// Writing outputs.
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// Reading published revisions back.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// Reading a published revision's lines back.
    #[error(transparent)]
    Revision(#[from] revision::RevisionError),
    /// E-invoices: a missing VAT rate, or storing numbers and documents.
    #[error(transparent)]
    Einvoice(#[from] einvoice::EinvoiceError),
    /// A month, revision or statement asked for by name is not published.
    #[error(transparent)]
    NotPublished(#[from] manifest::NotPublished),
    /// Storage outside any stage.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The month's lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The process was asked to stop (SIGTERM from a scheduler or a node
    /// drain, SIGINT from a terminal) before the run ended.
    #[error(
        "stopped by {} before the run ended: nothing more was published and the month lock is released; running again is safe",
        if *.signal == 2 { "SIGINT" } else { "SIGTERM" }
    )]
    Terminated {
        /// The signal's number (15 or 2).
        signal: u8,
    },
    /// A panic: a bug. The message is the panic's; the backtrace is in the debug log.
    #[error("internal error: {message}; this is a bug, please report it with the log")]
    Internal {
        /// The panic message.
        message: String,
    },
    /// A final month would change without an explicit reprocess.
    #[error(
        "billing month {month} is final (revision {revision}) and its inputs changed: {}; nothing was published. \
         If the change is intended, run `capbill reprocess --month {month} --reason \"...\"` to issue revision {} with corrections",
        .changes.join("; "), .revision + 1
    )]
    ReprocessRefused {
        /// The month.
        month: BillingMonth,
        /// Its latest final revision.
        revision: u32,
        /// What changed.
        changes: Vec<String>,
    },
    /// A month of the nightly job (which bills two) failed: the error, named
    /// with its month. Its exit code is the error's.
    #[error("billing {month}")]
    Month {
        /// The month that failed.
        month: BillingMonth,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::INVALID_INPUT,
            Error::Directory(e) => e.storage().map_or(exit::INVALID_INPUT, |_| exit::INFRASTRUCTURE),
            Error::Ingest(ingest::IngestError::Frame(_)) => exit::INTERNAL,
            Error::Ingest(e) => e.storage().map_or(exit::INVALID_INPUT, |_| exit::INFRASTRUCTURE),
            Error::Collect(collect::CollectError::Encode(_)) => exit::INTERNAL,
            Error::Collect(e) if e.retry_may_help() => exit::INFRASTRUCTURE,
            Error::Collect(_) => exit::INVALID_INPUT,
            Error::Meter(meter::MeterError::Spill { .. }) => exit::INFRASTRUCTURE,
            Error::Meter(_) => exit::INTERNAL,
            // Validated input cannot overflow rating (see the directory's
            // bounds): reaching this is a bug, not input to fix.
            Error::Rate(_) => exit::INTERNAL,
            Error::Export(export::ExportError::Exists { .. }) => exit::LOCK_HELD,
            Error::Export(e) => e.storage().map_or(exit::INTERNAL, |_| exit::INFRASTRUCTURE),
            // A published document that capbill cannot read back was not
            // written by it, or was damaged: not the operator's input.
            Error::Manifest(e) => e.storage().map_or(exit::INTERNAL, |_| exit::INFRASTRUCTURE),
            Error::Revision(e) => e.storage().map_or(exit::INTERNAL, |_| exit::INFRASTRUCTURE),
            Error::Einvoice(einvoice::EinvoiceError::NoVatRate { .. } | einvoice::EinvoiceError::Invalid { .. }) => {
                exit::INVALID_INPUT
            }
            Error::Einvoice(e) => e.storage().map_or(exit::INTERNAL, |_| exit::INFRASTRUCTURE),
            Error::NotPublished(_) => exit::INVALID_INPUT,
            // Retrying cannot help: the output needs another server.
            Error::Storage(storage::StorageError::NoConditionalWrites { .. }) => exit::INVALID_INPUT,
            Error::Storage(_) => exit::INFRASTRUCTURE,
            Error::Lock(LockError::Held { .. } | LockError::Lost { .. }) => exit::LOCK_HELD,
            Error::Lock(LockError::Storage { .. }) => exit::INFRASTRUCTURE,
            Error::Lock(LockError::Corrupt { .. }) => exit::INVALID_INPUT,
            Error::ReprocessRefused { .. } => exit::REPROCESS_REFUSED,
            Error::Month { source, .. } => source.exit_code(),
            Error::Internal { .. } => exit::INTERNAL,
            // As a shell reports a process a signal ended: 128 + the signal.
            Error::Terminated { signal } => 128 + signal,
        }
    }

    /// The error a caught panic becomes, from its payload.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Error {
        let message = match crate::formats::panic_message(payload) {
            "" => "a panic without a message".to_owned(),
            m => m.to_owned(),
        };
        Error::Internal { message }
    }
}

pub use crate::logging::chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflow_in_rating_is_an_internal_error() {
        let e = Error::from(crate::rate::RateError::Entity {
            entity: "dp-1".to_owned(),
            what: "TB-months",
            source: crate::money::MoneyError::Overflow { what: "quantity" },
        });
        assert_eq!(e.exit_code(), exit::INTERNAL);
        assert_eq!(chain(&e), "rating the TB-months of dp-1 failed: quantity is out of range for exact arithmetic");
    }
}
