//! Month pruning by object key: which objects can hold records of a month.
//!
//! Only the folder part of a key is looked at (file names of re-issued
//! exports carry their issue date, not the usage month). Recognised folder
//! names, the last one deciding:
//! `2026-10`, `2026-10-05`, `dt=2026-10-05`, `date=2026-10-05`,
//! `day=2026-10-05`, `month=2026-10`, and the pair `year=2026` + `month=10`.
//! A key without any of them is always read.

use crate::model::BillingMonth;

/// Whether the object at `key` may hold records of `month`.
pub fn key_may_hold(key: &str, month: BillingMonth) -> bool {
    let mut folders: Vec<&str> = key.split('/').collect();
    folders.pop();
    let mut found: Option<BillingMonth> = None;
    let mut year: Option<i32> = None;
    for seg in folders {
        let (name, value) = seg.split_once('=').unwrap_or(("", seg));
        match name {
            "year" => year = value.parse().ok(),
            "month" if value.len() <= 2 => {
                if let (Some(y), Ok(m)) = (year, value.parse()) {
                    found = BillingMonth::new(y, m).or(found);
                }
            }
            "" | "dt" | "date" | "day" | "month" => found = month_of(value).or(found),
            _ => {}
        }
    }
    found.is_none_or(|m| m == month)
}

/// `YYYY-MM` or `YYYY-MM-DD` → the month.
fn month_of(s: &str) -> Option<BillingMonth> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        7 | 10 if digits(0..4) && b[4] == b'-' && digits(5..7) => {
            if b.len() == 10 && !(b[7] == b'-' && digits(8..10)) {
                return None;
            }
            BillingMonth::new(s[0..4].parse().ok()?, s[5..7].parse().ok()?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_documented_layouts() {
        let oct: BillingMonth = "2026-10".parse().unwrap();
        for key in [
            "daily/2026-10/sa-x1.csv",
            "hourly/dt=2026-10-05/part-0.parquet",
            "year=2026/month=10/x.parquet",
            "year=2026/month=10/day=31/x.parquet",
            "2026-10-31/x.csv",
            "month=2026-10/x.csv",
            "no-date/x.csv",
            "x.csv",
            "partner-api/2026-10/export-2026-11-01T02-00Z.json",
        ] {
            assert!(key_may_hold(key, oct), "{key}");
        }
        for key in [
            "daily/2026-09/sa-x1.csv",
            "hourly/dt=2026-11-01/part-0.parquet",
            "year=2026/month=9/x.parquet",
            "year=2025/month=10/x.parquet",
            "2026-10/dt=2026-11-01/x.parquet",
        ] {
            assert!(!key_may_hold(key, oct), "{key}");
        }
    }
}
