//! Failpoints for crash tests: named places where a test can freeze the run.
//!
//! When `CAPBILL_FAILPOINT` names a place (`ingest`, `after-numbers` once a
//! final revision took its invoice numbers, `export:N` after the N-th
//! output file, `before-latest`), the process prints
//! `failpoint NAME reached` on stderr when it gets there and then sleeps,
//! so that the test can kill it at exactly that moment. Unset, every call
//! is a cheap comparison. `panic-NAME` panics at NAME instead (the
//! unwind guard's test). With `CAPBILL_FAILPOINT_RESUME` set to a path, the
//! run waits there only until that file exists, then goes on (a test
//! changes the world meanwhile, e.g. takes the lock over). It is a testing
//! aid, never set in production.

use std::sync::OnceLock;

/// Stops here forever if `CAPBILL_FAILPOINT` names this place.
pub fn reached(name: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("CAPBILL_FAILPOINT").ok().filter(|s| !s.is_empty()));
    let Some(target) = target.as_deref() else { return };
    if target.strip_prefix("panic-") == Some(name) {
        panic!("failpoint {name} panics");
    }
    if target == name {
        eprintln!("failpoint {name} reached");
        let resume = std::env::var_os("CAPBILL_FAILPOINT_RESUME").map(std::path::PathBuf::from);
        loop {
            match &resume {
                Some(path) if path.exists() => return,
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                None => std::thread::sleep(std::time::Duration::from_secs(3600)),
            }
        }
    }
}
