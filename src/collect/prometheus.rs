//! The `prometheus` source: a Prometheus text endpoint (exposition format
//! 0.0.4, or OpenMetrics text) that exports a per-bucket size gauge, such as
//! SeaweedFS' `SeaweedFS_s3_bucket_size_bytes{bucket=...}` or MinIO's
//! `minio_cluster_usage_buckets_total_bytes{bucket=...}`.
//!
//! The whole body is checked line by line: a line that is not a comment or
//! a well-formed sample is an error naming its line, so an HTML error page
//! or a cut-off answer never passes as an empty snapshot. Values of the
//! gauge are read exactly (`1.5e+12` is 1,500,000,000,000 bytes; no float
//! is involved) and must be whole, non-negative numbers of bytes. A bucket
//! reported by several series (one per server of a cluster, say) takes the
//! largest value: the series are copies of one gauge, never parts to add.
//! A metric the body neither declares (`# TYPE`) nor samples is a setting
//! error; a declared metric without samples is a cluster without buckets.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::http::{self, Http, url};
use super::{BucketUsage, CollectError};
use crate::config::CollectSettings;

const SOURCE: &str = "prometheus";

/// Every bucket the endpoint reports.
pub(super) async fn list(s: &CollectSettings) -> Result<Vec<BucketUsage>, CollectError> {
    let endpoint = http::endpoint(s, SOURCE, "metrics URL", "http://127.0.0.1:9327/metrics")?;
    let target = url(SOURCE, endpoint, "")?;
    let body = Http::new(s, SOURCE)?.get(&target).await?;
    let shown = target.as_str().to_owned();
    let text = std::str::from_utf8(&body)
        .map_err(|e| CollectError::Malformed { url: shown.clone(), reason: format!("not UTF-8 text: {e}") })?;
    match bucket_sizes(text, &s.metric, &s.bucket_label) {
        Ok(Some(sizes)) => Ok(sizes
            .into_iter()
            .map(|(bucket, bytes)| BucketUsage { bucket, bytes, unfinished_bytes: None, owners: None })
            .collect()),
        Ok(None) => Err(CollectError::NoMetric { url: shown, metric: s.metric.clone(), similar: similar(text) }),
        Err(reason) => Err(CollectError::Malformed { url: shown, reason }),
    }
}

/// Bucket sizes of `metric` by its `label`; `None` when the body neither
/// declares nor samples the metric.
pub(super) fn bucket_sizes(text: &str, metric: &str, label: &str) -> Result<Option<BTreeMap<String, u64>>, String> {
    let mut declared = false;
    let mut sizes = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if matches!(words.next(), Some("TYPE" | "HELP")) && words.next() == Some(metric) {
                declared = true;
            }
            continue;
        }
        let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: {}", quote(line)))?;
        if sample.name != metric {
            continue;
        }
        let bucket = sample
            .labels
            .iter()
            .find(|(k, _)| k == label)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("line {n}: a sample of {metric} without the label {label:?}"))?;
        let bytes = whole_bytes(sample.value).map_err(|e| format!("line {n}: bucket {bucket:?}: {e}"))?;
        let slot = sizes.entry(bucket).or_insert(0u64);
        *slot = (*slot).max(bytes);
    }
    Ok((declared || !sizes.is_empty()).then_some(sizes))
}

/// One sample line: name, labels, value (the timestamp is ignored).
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: &'a str,
}

fn parse_sample(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("not a metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    if let Some(ts) = fields.next() {
        ts.parse::<f64>().map_err(|_| format!("timestamp {ts:?} is not a number"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".to_owned());
    }
    let known = matches!(value, "NaN" | "+Inf" | "-Inf" | "Inf");
    if !known && value.parse::<f64>().is_err() {
        return Err(format!("value {value:?} is not a number"));
    }
    Ok(Sample { name, labels, value })
}

/// Parses `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("a label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("label name {key:?} is not valid"));
        }
        s = s[eq + 1..].trim_start().strip_prefix('"').ok_or("a label value not in double quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("a label value without its closing quote".to_owned()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => return Err(format!("unknown escape \\{c} in a label value")),
                    None => return Err("a label value without its closing quote".to_owned()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((key.to_owned(), value));
        s = s[end + 1..].trim_start();
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// A gauge value as a whole number of bytes, read exactly.
fn whole_bytes(v: &str) -> Result<u64, String> {
    let d = if v.contains(['e', 'E']) { Decimal::from_scientific(v) } else { Decimal::from_str(v) }
        .map_err(|_| format!("{v:?} is not a number of bytes"))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("{v} is negative"));
    }
    if !d.fract().is_zero() {
        return Err(format!("{v} is not a whole number of bytes"));
    }
    d.to_u64().ok_or_else(|| format!("{v} is beyond 2^64 bytes"))
}

/// Metric names of the body that look like bucket sizes, for the error of a missing metric.
fn similar(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| parse_sample(l.trim()).ok().map(|s| s.name.to_owned()))
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            n.contains("bucket") && (n.contains("byte") || n.contains("size"))
        })
        .collect();
    names.sort();
    names.dedup();
    names.truncate(5);
    names
}

fn quote(line: &str) -> String {
    let q: String = line.chars().take(120).collect();
    format!("{q:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "SeaweedFS_s3_bucket_size_bytes";

    #[test]
    fn sizes_are_read_exactly_from_plain_and_scientific_values() {
        let body = "# HELP SeaweedFS_s3_bucket_size_bytes Bucket size.\n# TYPE SeaweedFS_s3_bucket_size_bytes gauge\n\
            SeaweedFS_s3_bucket_size_bytes{bucket=\"photos\",collection=\"\"} 1.5e+12\n\
            SeaweedFS_s3_bucket_size_bytes{bucket=\"my \\\"odd\\\" bucket\"} 18446744073709551615 1700000000000\n\
            SeaweedFS_s3_bucket_size_bytes{bucket=\"photos\",instance=\"b\"} 1400000000000\n\
            other_metric{x=\"1\"} NaN\n";
        let got = bucket_sizes(body, M, "bucket").unwrap().unwrap();
        assert_eq!(got.get("photos"), Some(&1_500_000_000_000), "the largest copy of a bucket's gauge");
        assert_eq!(got.get("my \"odd\" bucket"), Some(&u64::MAX));
    }

    #[test]
    fn a_declared_metric_without_samples_is_empty_and_an_absent_one_is_none() {
        assert_eq!(
            bucket_sizes("# TYPE SeaweedFS_s3_bucket_size_bytes gauge\n", M, "bucket"),
            Ok(Some(BTreeMap::new()))
        );
        assert_eq!(bucket_sizes("up 1\n", M, "bucket"), Ok(None));
        assert_eq!(
            similar("minio_bucket_usage_total_bytes{bucket=\"a\"} 1\nup 1\n"),
            ["minio_bucket_usage_total_bytes"]
        );
    }

    #[test]
    fn malformed_lines_and_values_name_their_line() {
        for (body, want) in [
            ("<html><body>502 Bad Gateway</body></html>\n", "line 1: not a metric name"),
            ("up 1\nSeaweedFS_s3_bucket_size_bytes{bucket=\"a} 1\n", "line 2: a label value without its closing quote"),
            (
                "SeaweedFS_s3_bucket_size_bytes{bucket=\"a\"} 12.5\n",
                "line 1: bucket \"a\": 12.5 is not a whole number of bytes",
            ),
            ("SeaweedFS_s3_bucket_size_bytes{bucket=\"a\"} -3\n", "line 1: bucket \"a\": -3 is negative"),
            (
                "SeaweedFS_s3_bucket_size_bytes{bucket=\"a\"} NaN\n",
                "line 1: bucket \"a\": \"NaN\" is not a number of bytes",
            ),
            ("SeaweedFS_s3_bucket_size_bytes{bucket=\"a\"} 1e20\n", "line 1: bucket \"a\": 1e20 is beyond 2^64 bytes"),
            (
                "SeaweedFS_s3_bucket_size_bytes{name=\"a\"} 1\n",
                "line 1: a sample of SeaweedFS_s3_bucket_size_bytes without the label \"bucket\"",
            ),
            ("SeaweedFS_s3_bucket_size_bytes{bucket=\"a\"} one\n", "line 1: value \"one\" is not a number"),
        ] {
            let err = bucket_sizes(body, M, "bucket").unwrap_err();
            assert!(err.starts_with(want), "{body:?}: {err}");
        }
    }
}
