//! Integration tests: the `capbill` binary on checked-in fixtures.

mod bad_input;
mod bounds;
mod collect;
mod collect_servers;
mod coverage;
mod einvoice;
mod encodings;
mod example;
mod focus;
mod hostile;
mod layers;
mod layouts;
mod operations;
mod reference;
mod revisions;
mod s3;
mod s3_server;
mod servers;
mod statements;
mod util;
