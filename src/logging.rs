//! Logging setup: tracing to stderr, text on a terminal or JSON lines.
//!
//! The level comes from `CAPBILL_LOG` (or `RUST_LOG`), `info` by default.
//! Progress bars for long reads and writes live here too: they are terminal
//! output, not part of any stage; so does [`resident_bytes`], which the
//! export log uses to report what its outputs add to memory.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; whether it writes JSON lines.
pub fn init(format: LogFormat) -> bool {
    // A level that cannot be parsed falls back to `info`, and says so once
    // the subscriber is up (an unset variable is no problem).
    let mut unusable = None;
    let mut from = |var: &'static str| match std::env::var(var) {
        Ok(text) => EnvFilter::try_new(&text).map_err(|e| unusable = Some(format!("{var}={text:?}: {e}"))).ok(),
        Err(_) => None,
    };
    let filter = from("CAPBILL_LOG").or_else(|| from("RUST_LOG")).unwrap_or_else(|| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if json { builder.json().flatten_event(true).try_init() } else { builder.compact().try_init() };
    // A subscriber may already be installed (tests); keep it.
    let _ = result;
    if let Some(why) = unusable {
        tracing::warn!("ignored the log level {why}; logging at info");
    }
    json
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress_bar(len: u64, message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// A progress counter on stderr for work of unknown length (pages of a listing).
pub fn spinner(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template("{msg} {pos} ({elapsed})").expect("valid template"));
    bar.set_message(message);
    bar
}

/// The error and its causes, joined with `: ` for one readable line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
