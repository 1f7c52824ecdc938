//! Month pruning by object key: which objects can hold records of a month.
//!
//! Only the folder part of a key is looked at (file names of re-issued
//! exports carry their issue date, not the usage month). Recognised folder
//! names, the last one deciding:
//! `2026-10`, `2026-10-05`, `dt=2026-10-05`, `date=2026-10-05`,
//! `day=2026-10-05`, `month=2026-10`, and the pair `year=2026` + `month=10`.
//! A key without any of them is always read.
//!
//! A folder that names a day (`dt=2026-10-05`, `2026-10-05`,
//! `year=2026/month=10/day=05`) also tells ingestion which day the object
//! holds, so days can be metered as a stream (see `ingest`).
//!
//! Keys only: nothing here lists, fetches or reads an object.

use crate::model::{BillingMonth, Day, date_of};

/// The date a key's folders name, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDate {
    /// A month (`2026-10`, `month=2026-10`, `year=2026/month=10`).
    Month(BillingMonth),
    /// A day (`dt=2026-10-05`, `2026-10-05`, `year=2026/month=10/day=05`).
    Day(Day),
}

impl KeyDate {
    /// The month of the date.
    pub fn month(self) -> BillingMonth {
        match self {
            KeyDate::Month(m) => m,
            KeyDate::Day(d) => BillingMonth::containing(date_of(d)),
        }
    }
}

/// The date named by the folders of `key` (the last recognised one decides).
pub fn key_date(key: &str) -> Option<KeyDate> {
    let mut folders: Vec<&str> = key.split('/').collect();
    folders.pop();
    let mut found: Option<KeyDate> = None;
    let mut year: Option<i32> = None;
    let mut ym: Option<BillingMonth> = None;
    for seg in folders {
        let (name, value) = seg.split_once('=').unwrap_or(("", seg));
        match name {
            "year" => year = value.parse().ok(),
            "month" if value.len() <= 2 => {
                ym = year.zip(value.parse().ok()).and_then(|(y, m)| BillingMonth::new(y, m));
                found = ym.map(KeyDate::Month).or(found);
            }
            "day" if value.len() <= 2 => {
                let day = ym.zip(value.parse::<u32>().ok()).and_then(|(m, d)| {
                    chrono::NaiveDate::from_ymd_opt(m.year(), m.month(), d).map(crate::model::day_of)
                });
                found = day.map(KeyDate::Day).or(found);
            }
            "" | "dt" | "date" | "day" | "month" => found = date_of_segment(value).or(found),
            _ => {}
        }
    }
    found
}

/// Whether the object at `key` may hold records of `month`.
pub fn key_may_hold(key: &str, month: BillingMonth) -> bool {
    key_date(key).is_none_or(|d| d.month() == month)
}

/// `YYYY-MM` or `YYYY-MM-DD`.
fn date_of_segment(s: &str) -> Option<KeyDate> {
    let m = month_of(s)?;
    if s.len() == 10 {
        let d = chrono::NaiveDate::from_ymd_opt(m.year(), m.month(), s[8..10].parse().ok()?)?;
        Some(KeyDate::Day(crate::model::day_of(d)))
    } else {
        Some(KeyDate::Month(m))
    }
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
    fn day_folders_name_their_day() {
        let day = |s: &str| crate::model::day_of(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
        assert_eq!(key_date("hourly/dt=2026-10-05/part-0.parquet"), Some(KeyDate::Day(day("2026-10-05"))));
        assert_eq!(key_date("2026-10-31/x.csv"), Some(KeyDate::Day(day("2026-10-31"))));
        assert_eq!(key_date("year=2026/month=10/day=07/x.parquet"), Some(KeyDate::Day(day("2026-10-07"))));
        assert_eq!(key_date("daily/2026-10/x.csv"), Some(KeyDate::Month("2026-10".parse().unwrap())));
        assert_eq!(key_date("x.csv"), None);
        assert_eq!(key_date("dt=2026-02-30/x.csv"), None);
    }

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
