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

/// Whether `CAPBILL_FAILPOINT` names this place (panicking here if it says
/// `panic-` this place), and if so the resume file to wait for.
fn stops_at(name: &str) -> Option<Option<std::path::PathBuf>> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("CAPBILL_FAILPOINT").ok().filter(|s| !s.is_empty()));
    let target = target.as_deref()?;
    if target.strip_prefix("panic-") == Some(name) {
        panic!("failpoint {name} panics");
    }
    if target != name {
        return None;
    }
    eprintln!("failpoint {name} reached");
    Some(std::env::var_os("CAPBILL_FAILPOINT_RESUME").map(std::path::PathBuf::from))
}

/// Stops here forever if `CAPBILL_FAILPOINT` names this place.
pub fn reached(name: &str) {
    let Some(resume) = stops_at(name) else { return };
    loop {
        match &resume {
            Some(path) if path.exists() => return,
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            None => std::thread::sleep(std::time::Duration::from_secs(3600)),
        }
    }
}

/// [`reached`] for async code: waits without holding its thread, so the
/// run can still be stopped there (a signal's test).
pub async fn reached_async(name: &str) {
    let Some(resume) = stops_at(name) else { return };
    while resume.as_ref().is_none_or(|path| !path.exists()) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
