//! Failpoints for crash tests: named places where a test can freeze the run.
//!
//! When `CAPBILL_FAILPOINT` names a place (`ingest`, `export:N` after the
//! N-th output file, `before-latest`), the process prints
//! `failpoint NAME reached` on stderr when it gets there and then sleeps,
//! so that the test can kill it at exactly that moment. Unset, every call
//! is a cheap comparison. It is a testing aid, never set in production.

use std::sync::OnceLock;

/// Stops here forever if `CAPBILL_FAILPOINT` names this place.
pub fn reached(name: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("CAPBILL_FAILPOINT").ok().filter(|s| !s.is_empty()));
    if target.as_deref() == Some(name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
