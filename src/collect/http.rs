//! GET requests to a collection source (Garage's admin API, a metrics
//! endpoint): bearer token, timeout, and retries of transport failures,
//! 429 and 5xx answers with a growing pause. The token goes into the
//! `Authorization` header only; errors carry the URL, never the header.

use std::time::Duration;

use bytes::Bytes;

use super::CollectError;
use crate::config::CollectSettings;
use crate::storage::s3::Secret;

/// Characters of an error answer's body quoted in the message.
const BODY_QUOTE: usize = 300;

/// A client for one source.
pub(super) struct Http {
    client: reqwest::Client,
    token: Option<Secret>,
    attempts: u32,
}

impl Http {
    /// A client with the source's timeout, token and attempts.
    pub(super) fn new(s: &CollectSettings, source: &'static str) -> Result<Http, CollectError> {
        let client = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("capbill/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CollectError::Setting { kind: source, reason: format!("cannot build an HTTP client: {e}") })?;
        Ok(Http { client, token: s.token.clone(), attempts: s.max_attempts.max(1) })
    }

    /// The body of a successful GET of `url`.
    pub(super) async fn get(&self, url: &reqwest::Url) -> Result<Bytes, CollectError> {
        let shown = url.as_str().to_owned();
        let mut attempt = 1;
        loop {
            let mut req = self.client.get(url.clone());
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            let last = attempt >= self.attempts;
            let retry = match req.send().await {
                Err(source) if last => {
                    return Err(CollectError::Unreachable { url: shown, attempts: attempt, source });
                }
                Err(e) => crate::logging::chain(&e),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if resp.status().is_success() {
                        match resp.bytes().await {
                            Ok(b) => return Ok(b),
                            Err(source) if last => {
                                return Err(CollectError::Unreachable { url: shown, attempts: attempt, source });
                            }
                            Err(e) => format!("reading the body: {}", crate::logging::chain(&e)),
                        }
                    } else if status == 401 || status == 403 {
                        return Err(CollectError::Refused { url: shown, status });
                    } else if (status >= 500 || status == 429) && !last {
                        format!("HTTP {status}")
                    } else {
                        let body = resp.text().await.unwrap_or_default();
                        // One line: an HTML error page's lines and indents collapsed.
                        let body: String =
                            body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(BODY_QUOTE).collect();
                        return Err(CollectError::Status { url: shown, status, body });
                    }
                }
            };
            let pause = Duration::from_millis(200 * 2u64.pow(attempt.min(6)));
            tracing::warn!(url = %shown, attempt, reason = %retry, pause_ms = pause.as_millis() as u64, "retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// `endpoint` joined with `path`, as a URL; a bad endpoint is a setting error.
pub(super) fn url(source: &'static str, endpoint: &str, path: &str) -> Result<reqwest::Url, CollectError> {
    let text = format!("{}{path}", endpoint.trim_end_matches('/'));
    reqwest::Url::parse(&text).map_err(|e| CollectError::Setting {
        kind: source,
        reason: format!("endpoint {endpoint:?} is not a URL such as http://127.0.0.1:3903 ({e})"),
    })
}

/// The source's `endpoint` setting; its absence is a setting error that
/// shows what one looks like.
pub(super) fn endpoint<'a>(
    s: &'a CollectSettings,
    source: &'static str,
    what: &str,
    example: &str,
) -> Result<&'a str, CollectError> {
    s.endpoint.as_deref().ok_or_else(|| CollectError::Setting {
        kind: source,
        reason: format!("no {what}: set `endpoint` under [collect] or CAPBILL_COLLECT_ENDPOINT (e.g. {example})"),
    })
}
