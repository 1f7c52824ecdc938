//! capbill turns per-storage-account usage of an S3-compatible cloud into
//! invoice lines for every edge of its partner channel. The billing rules
//! are `billing-spec.md`.
//!
//! The stages, in the order data flows through them, one module each:
//!
//! 1. [`config`]: the TOML file and this invocation's flags → a validated [`config::Config`];
//! 2. [`directory`]: the partner directory's four tables → a validated [`directory::Directory`];
//! 3. [`ingest`]: usage objects → record frames, one day at a time;
//! 4. [`meter`]: records → daily values → byte-days per account and per owner;
//! 5. [`rate`]: byte-days and contracts → invoice lines on every edge, and findings;
//! 6. [`export`]: lines, usage and findings → the files of a revision, its manifest, `latest.json`.
//!
//! Beside `ingest`, [`collect`] is the hourly job before billing: it reads
//! every bucket's size from the storage system (Garage's admin API, a
//! Prometheus gauge, or an S3 listing) and writes it as usage records.
//!
//! After export, [`einvoice`] turns the invoices of a final revision into
//! EN 16931 documents (UBL 2.1) with VAT, numbers and credit notes.
//!
//! [`pipeline`] calls them in that order for one month; [`revision`] decides
//! whether a month is billed again (and locks it), [`alerts`] adds the
//! findings monitoring pages on, [`report`] and [`summary`] say what
//! happened, and [`cli`] is the command line. Beneath every stage:
//! [`storage`] moves bytes (local or S3) and [`formats`] encodes tables
//! (CSV, Parquet), [`manifest`] is what a published revision is, [`model`]
//! the shared vocabulary, [`country`] the country tables, and [`money`] the
//! one place that rounds.
//!
//! Imports only go down this list (`tests/it/layers.rs` checks it): a
//! module never imports one that comes after it in `LAYERS` there.

#![deny(missing_docs)]

pub mod alerts;
pub mod cli;
pub mod collect;
pub mod config;
pub mod country;
pub mod directory;
pub mod einvoice;
pub mod error;
pub mod export;
pub mod failpoint;
pub mod formats;
pub mod ingest;
pub mod logging;
pub mod manifest;
pub mod memory;
pub mod meter;
pub mod model;
pub mod money;
pub mod pipeline;
pub mod rate;
pub mod report;
pub mod revision;
pub mod storage;
pub mod summary;
