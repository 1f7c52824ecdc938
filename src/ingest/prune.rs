//! Month pruning by object key: which objects can hold records of a month.
//!
//! Only the folder part of a key is looked at (file names of re-issued
//! exports carry their issue date, not the usage month). Recognised folder
//! names, the last one deciding:
//! `2026-10`, `2026-10-05`, `dt=2026-10-05`, `date=2026-10-05`,
//! `day=2026-10-05`, `month=2026-10`, and the pair `year=2026` + `month=10`.
//! A key without any of them is always read, and so is a key whose date is
//! only in its file name (`usage/dt=2026-10-01.parquet`,
//! `usage-2026-10-31.csv`): file names are never looked at.
//!
//! What a folder may hold decides what is pruned ([`key_may_hold`]):
//! - a day folder D (`dt=2026-10-05`, `2026-10-05`,
//!   `year=2026/month=10/day=05`) holds records of D−1, D and D+1 (records
//!   at midnight, a nightly export written after midnight); the sink
//!   enforces it. It is read for a month when any of the three days is in
//!   it: October reads `dt=2026-09-30/` and `dt=2026-11-01/`, not
//!   `dt=2026-11-02/`. Its day also lets ingestion meter days as a stream.
//! - a month folder (`2026-10`, `month=2026-10`, `year=2026/month=10`) is
//!   read for its own month only. A record of another month inside it is
//!   read but counted as outside the month; a record of October in
//!   November's folder is never read.
//!
//! Keys only: nothing here lists, fetches or reads an object.

use crate::model::{BillingMonth, Day};

/// The date a key's folders name, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDate {
    /// A month (`2026-10`, `month=2026-10`, `year=2026/month=10`).
    Month(BillingMonth),
    /// A day (`dt=2026-10-05`, `2026-10-05`, `year=2026/month=10/day=05`).
    Day(Day),
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

/// Whether the object at `key` may hold records of `month`: a day folder
/// D when D−1, D or D+1 is in the month, a month folder when it names the
/// month, a key without a folder date always.
pub fn key_may_hold(key: &str, month: BillingMonth) -> bool {
    match key_date(key) {
        None => true,
        Some(KeyDate::Month(m)) => m == month,
        Some(KeyDate::Day(d)) => d + 1 >= month.first_day() && d - 1 < month.end_day(),
    }
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
            "usage/dt=2026-10-01.parquet",
            "usage-2026-10-31.csv",
            "usage/dt=2026-12-01.parquet",
            "hourly/dt=2026-09-30/part-0.parquet",
            "hourly/dt=2026-11-01/part-0.parquet",
            "2026-10/dt=2026-11-01/x.parquet",
        ] {
            assert!(key_may_hold(key, oct), "{key}");
        }
        for key in [
            "daily/2026-09/sa-x1.csv",
            "daily/2026-11/sa-x1.csv",
            "hourly/dt=2026-09-29/part-0.parquet",
            "hourly/dt=2026-11-02/part-0.parquet",
            "year=2026/month=9/x.parquet",
            "year=2025/month=10/x.parquet",
            "2026-10/dt=2026-11-02/x.parquet",
        ] {
            assert!(!key_may_hold(key, oct), "{key}");
        }
    }

    /// Which months read the key: the months `key_may_hold` says yes for,
    /// among the 48 months of 2024–2027.
    fn months_reading(key: &str) -> Vec<String> {
        (2024..=2027)
            .flat_map(|y| (1..=12).map(move |m| BillingMonth::new(y, m).unwrap()))
            .filter(|m| key_may_hold(key, *m))
            .map(|m| m.to_string())
            .collect()
    }

    #[test]
    fn a_day_folder_is_read_by_the_months_of_the_day_before_and_after() {
        // Month edges: the first and last day of a month are read by both months.
        assert_eq!(months_reading("dt=2026-10-01/x.csv"), ["2026-09", "2026-10"]);
        assert_eq!(months_reading("dt=2026-10-31/x.csv"), ["2026-10", "2026-11"]);
        assert_eq!(months_reading("dt=2026-10-02/x.csv"), ["2026-10"]);
        assert_eq!(months_reading("dt=2026-10-30/x.csv"), ["2026-10"]);
        // Across years.
        assert_eq!(months_reading("dt=2027-01-01/x.csv"), ["2026-12", "2027-01"]);
        assert_eq!(months_reading("2026-12-31/x.csv"), ["2026-12", "2027-01"]);
        assert_eq!(months_reading("year=2027/month=01/day=01/x.parquet"), ["2026-12", "2027-01"]);
        assert_eq!(months_reading("year=2026/month=12/day=31/x.parquet"), ["2026-12", "2027-01"]);
        // February of a leap year: the 29th is its last day, the 28th is not.
        assert_eq!(months_reading("date=2024-02-29/x.csv"), ["2024-02", "2024-03"]);
        assert_eq!(months_reading("day=2024-02-28/x.csv"), ["2024-02"]);
        assert_eq!(months_reading("year=2024/month=2/day=29/x.csv"), ["2024-02", "2024-03"]);
        assert_eq!(months_reading("year=2024/month=03/day=01/x.csv"), ["2024-02", "2024-03"]);
        // Not a leap year: the 28th is the last day, and the 29th is no date.
        assert_eq!(months_reading("dt=2026-02-28/x.csv"), ["2026-02", "2026-03"]);
        assert_eq!(key_date("dt=2026-02-29/x.csv"), None);
        assert_eq!(key_date("year=2026/month=02/day=29/x.csv"), Some(KeyDate::Month("2026-02".parse().unwrap())));
    }

    #[test]
    fn a_month_folder_is_read_by_its_month_only() {
        assert_eq!(months_reading("daily/2026-10/x.csv"), ["2026-10"]);
        assert_eq!(months_reading("month=2026-12/x.csv"), ["2026-12"]);
        assert_eq!(months_reading("year=2027/month=1/x.parquet"), ["2027-01"]);
        assert_eq!(months_reading("year=2024/month=02/x.parquet"), ["2024-02"]);
    }

    #[test]
    fn dates_in_file_names_never_prune() {
        for key in ["usage/dt=2026-10-01.parquet", "usage-2026-10-31.csv", "partner-api/export-2026-11-01T02-00Z.json"]
        {
            assert_eq!(key_date(key), None, "{key}");
            assert_eq!(months_reading(key).len(), 48, "{key}");
        }
    }
}
