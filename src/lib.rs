//! capbill turns per-storage-account usage of an S3-compatible cloud into
//! invoice lines for every edge of its partner channel.
//!
//! The pipeline runs one way, one module per stage:
//! [`config`] → [`directory`] → [`ingest`] → [`meter`] → [`rate`] → [`export`],
//! orchestrated by [`pipeline`]. [`storage`] moves bytes (local or S3) and
//! [`formats`] encodes tables (CSV, Parquet); [`money`] is the one place
//! that rounds. The billing rules are `billing-spec.md` (spec v1).

#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod directory;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod formats;
pub mod ingest;
pub mod logging;
pub mod meter;
pub mod model;
pub mod money;
pub mod pipeline;
pub mod rate;
pub mod report;
pub mod revision;
pub mod storage;
pub mod summary;
