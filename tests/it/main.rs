//! Integration tests: the `capbill` binary on checked-in fixtures.

mod bad_input;
mod example;
mod util;
