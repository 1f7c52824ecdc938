//! The table/column validation framework of the partner directory: a table
//! read as text columns, and typed accessors per column (required, enum,
//! date, decimal, entity reference, unique id) that record every [`Problem`]
//! with its table, row, column and value instead of stopping at the first.
//!
//! It knows no table's columns or rules (those are `checks`), and reads
//! each cell by index: a column is looked up by name once, never per cell.

use polars::prelude::{PlHashMap as HashMap, PlHashSet as HashSet};
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::NaiveDate;
use polars::prelude::{DataFrame, StringChunked};
use rust_decimal::Decimal;

use super::{DirectoryError, EntityIdx};
use crate::formats::{self, Format};
use crate::model::{Day, day_of};

/// One problem found in the directory, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File the problem is in (`entities.csv`).
    pub table: String,
    /// 1-based data row (row 1 is the first row after the header), if the problem is in a row.
    pub row: Option<usize>,
    /// Column, if the problem is in a value.
    pub column: Option<&'static str>,
    /// The offending value, if any.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        if let Some(r) = self.row {
            write!(f, " row {r}")?;
        }
        if let Some(c) = self.column {
            write!(f, ", column {c}")?;
        }
        if let Some(v) = &self.value {
            write!(f, " = {v:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The problems found so far, in the order found.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    /// Records a problem in 0-based data row `row` (reported 1-based) of `t`.
    pub(super) fn row(
        &mut self,
        t: &Table,
        row: Option<usize>,
        column: &'static str,
        value: Option<String>,
        message: String,
    ) {
        self.0.push(Problem { table: t.name.clone(), row: row.map(|r| r + 1), column: Some(column), value, message });
    }
}

/// A table as text columns, with typed accessors that record problems.
pub(super) struct Table {
    pub(super) name: String,
    df: DataFrame,
    /// Columns of a Parquet table stored as floating point, with their type.
    float_columns: Vec<(String, String)>,
}

impl Table {
    /// Reads a CSV or Parquet table (by its file name) as text columns; a
    /// ragged CSV row is a [`Problem`], any other parse failure unreadable.
    /// The float columns of a Parquet table are noted: reading one is a
    /// problem (see [`Table::check_columns`]).
    pub(super) fn read((name, data): (String, Bytes)) -> Result<Table, DirectoryError> {
        let parquet = Format::of_key(&name) == Some(Format::Parquet);
        let mut float_columns = Vec::new();
        let df = if parquet {
            formats::read_parquet(data.clone()).and_then(|df| {
                float_columns = df
                    .columns()
                    .iter()
                    .filter(|c| c.dtype().is_float())
                    .map(|c| (c.name().to_string(), c.dtype().to_string()))
                    .collect();
                formats::text_columns(&df)
            })
        } else {
            formats::read_csv_text(data.clone())
        };
        let df = df.map_err(|source| match formats::ragged_csv_row(&data).filter(|_| !parquet) {
            Some((row, fields, expected)) => DirectoryError::Invalid(vec![Problem {
                table: name.clone(),
                row: Some(row),
                column: None,
                value: None,
                message: format!("{fields} fields, the header has {expected}"),
            }]),
            None => DirectoryError::Unreadable { table: name.clone(), source },
        })?;
        // Rows are read one by one: one chunk per column makes that O(1).
        let mut df = df;
        df.rechunk_mut_par();
        Ok(Table { name, df, float_columns })
    }

    /// Records a problem for each of `cols` the table lacks, and for each
    /// stored as floating point in Parquet: a float cannot hold a price or
    /// a quantity exactly, and no column of the directory is a float, so
    /// any float column read is refused rather than cast to text.
    pub(super) fn check_columns(&self, cols: &[&'static str], p: &mut Problems) {
        for c in cols {
            let message = if self.df.column(c).is_err() {
                "missing column".to_owned()
            } else if let Some((_, dtype)) = self.float_columns.iter().find(|(name, _)| name == c) {
                format!(
                    "floating-point column ({dtype}): store prices and quantities as decimal, integer or text columns"
                )
            } else {
                continue;
            };
            p.0.push(Problem { table: self.name.clone(), row: None, column: Some(c), value: None, message });
        }
    }

    /// Number of data rows.
    pub(super) fn height(&self) -> usize {
        self.df.height()
    }

    /// A column checked by [`Table::check_columns`], to be read by row.
    pub(super) fn col(&self, name: &'static str) -> Col<'_> {
        let values = self.df.column(name).expect("columns checked").str().expect("text columns");
        Col { table: self, name, values }
    }

    /// A column the table may lack (an optional column), to be read by row.
    pub(super) fn opt_col(&self, name: &'static str) -> Option<Col<'_>> {
        let values = self.df.column(name).ok()?.str().ok()?;
        Some(Col { table: self, name, values })
    }

    /// Whether the table has column `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.df.column(name).is_ok()
    }

    /// Several columns at once, in the order named.
    pub(super) fn cols<const N: usize>(&self, names: [&'static str; N]) -> [Col<'_>; N] {
        names.map(|n| self.col(n))
    }
}

/// One text column of a [`Table`], read by row, with typed accessors that
/// record a problem under the table, row and column.
///
/// The column is looked up once, and it is one chunk (the table is
/// rechunked when read), so a cell costs an index, not a name lookup.
#[derive(Clone, Copy)]
pub(super) struct Col<'a> {
    table: &'a Table,
    name: &'static str,
    values: &'a StringChunked,
}

impl<'a> Col<'a> {
    /// The trimmed value, `None` when null or empty.
    pub(super) fn get(self, row: usize) -> Option<&'a str> {
        self.values.get(row).map(str::trim).filter(|s| !s.is_empty())
    }

    /// The first row holding `value`.
    pub(super) fn row_of(self, value: &str) -> Option<usize> {
        (0..self.values.len()).find(|&r| self.get(r) == Some(value))
    }

    /// The trimmed value; a problem when null or empty.
    pub(super) fn required(self, row: usize, p: &mut Problems) -> Option<&'a str> {
        let v = self.get(row);
        if v.is_none() {
            p.row(self.table, Some(row), self.name, None, "required value is empty".to_owned());
        }
        v
    }

    /// The value parsed by `parse`, whose error message becomes the problem;
    /// an empty value is a problem only when `required`.
    pub(super) fn parsed<T>(
        self,
        row: usize,
        required: bool,
        p: &mut Problems,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        match self.get(row) {
            None if required => {
                p.row(self.table, Some(row), self.name, None, "required value is empty".to_owned());
                None
            }
            None => None,
            Some(s) => match parse(s) {
                Ok(v) => Some(v),
                Err(msg) => {
                    p.row(self.table, Some(row), self.name, Some(s.to_owned()), msg);
                    None
                }
            },
        }
    }

    /// A `YYYY-MM-DD` date as a [`Day`].
    pub(super) fn date(self, row: usize, required: bool, p: &mut Problems) -> Option<Day> {
        self.parsed(row, required, p, |s| {
            crate::model::iso_date(s)
                .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .map(day_of)
                .ok_or_else(|| "not a date (YYYY-MM-DD)".to_owned())
        })
    }

    /// A plain non-negative decimal (see [`parse_decimal`]).
    pub(super) fn decimal(self, row: usize, required: bool, p: &mut Problems) -> Option<Decimal> {
        self.parsed(row, required, p, parse_decimal)
    }

    /// A required reference to an entity by id, resolved through `index`.
    pub(super) fn entity_ref(
        self,
        row: usize,
        index: &HashMap<String, EntityIdx>,
        p: &mut Problems,
    ) -> Option<EntityIdx> {
        let id = self.required(row, p)?;
        let found = index.get(id).copied();
        if found.is_none() {
            p.row(self.table, Some(row), self.name, Some(id.to_owned()), "unknown entity".to_owned());
        }
        found
    }

    /// A required id not seen before in this column (`seen` holds those seen).
    /// An id is printable text: a control character (a NUL, a tab, an escape)
    /// is a damaged export, and would name files and documents unreadably.
    pub(super) fn unique_id(self, row: usize, seen: &mut HashSet<&'a str>, p: &mut Problems) -> Option<&'a str> {
        let id = self.required(row, p)?;
        if let Some(c) = id.chars().find(|c| c.is_control()) {
            let reason = format!("holds the control character U+{:04X}; ids are printable text", u32::from(c));
            p.row(self.table, Some(row), self.name, Some(id.to_owned()), reason);
        }
        if !seen.insert(id) {
            p.row(self.table, Some(row), self.name, Some(id.to_owned()), "duplicate id".to_owned());
        }
        Some(id)
    }
}

/// Every decimal of the directory (quantities in TB and prices) is below
/// this, written with at most [`MAX_DECIMAL_PLACES`] decimals.
///
/// With both bounds a quantity or price has a mantissa below 10^15, so the
/// products and sums of rating (`reserved_tb × price`, prorating by days,
/// amounts of 10^18 at most per line) fit exactly in `rust_decimal`'s 96
/// bits and in `crate::money`'s `i128` arithmetic.
pub const DECIMAL_BOUND: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Digits of the integer part of a decimal below [`DECIMAL_BOUND`].
const MAX_INTEGER_DIGITS: usize = 9;
/// Decimal places a quantity or price may have (trailing zeros beyond them are dropped).
pub const MAX_DECIMAL_PLACES: u32 = 6;

/// A non-negative plain decimal (`12`, `6.50`); no exponent, no sign games.
/// Below [`DECIMAL_BOUND`], with at most [`MAX_DECIMAL_PLACES`] decimals
/// other than trailing zeros (`1.50000000` is `1.500000`).
pub(super) fn parse_decimal(s: &str) -> Result<Decimal, String> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') && s.matches('.').count() <= 1;
    if s.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    if !ok {
        return Err("not a decimal number".to_owned());
    }
    // Checked on the text, so that no value is too long for `Decimal` to parse.
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.trim_start_matches('0').len() > MAX_INTEGER_DIGITS {
        return Err(format!("must be below {DECIMAL_BOUND}"));
    }
    if frac.trim_end_matches('0').len() > MAX_DECIMAL_PLACES as usize {
        return Err(format!("must have at most {MAX_DECIMAL_PLACES} decimal places"));
    }
    let mut d = Decimal::from_str(s).map_err(|e| format!("not a decimal number ({e})"))?;
    if d.scale() > MAX_DECIMAL_PLACES {
        d.rescale(MAX_DECIMAL_PLACES); // only zeros are dropped: checked above
    }
    Ok(d)
}

/// A day as `YYYY-MM-DD`, for a problem's value.
pub(super) fn fmt_day(d: Day) -> String {
    crate::model::date_of(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ACCOUNTS, CONTRACTS, DEALS, ENTITIES, problems};
    use super::*;

    #[test]
    fn bad_enum_date_and_decimal_all_at_once() {
        let k = CONTRACTS
            .replace("K2,d,p,pay_per_use", "K2,d,p,pay_as_you_go")
            .replace("9.90,,,EUR,2026-01-01", "9.90,90,,EUR,2026-13-01");
        let e = ENTITIES.replace("var", "reseller");
        let ps = problems(&e, ACCOUNTS, &k, DEALS);
        assert!(
            ps.contains(
                &"entities.csv row 3, column partner_type = \"reseller\": partner_type must be msp, var or empty"
                    .to_owned()
            ),
            "{ps:?}"
        );
        assert!(
            ps.contains(
                &"contracts.csv row 2, column model = \"pay_as_you_go\": model must be pay_per_use or reserved"
                    .to_owned()
            ),
            "{ps:?}"
        );
        assert!(
            ps.contains(&"contracts.csv row 3, column start_date = \"2026-13-01\": not a date (YYYY-MM-DD)".to_owned()),
            "{ps:?}"
        );
        assert!(
            ps.contains(
                &"contracts.csv row 3, column overage_price = \"90\": applies to reserved contracts only".to_owned()
            ),
            "{ps:?}"
        );
        let k2 = CONTRACTS.replace("6.00,7.50", "6,00,7.50");
        let ps2 = problems(ENTITIES, ACCOUNTS, &k2, DEALS);
        assert_eq!(ps2, ["contracts.csv row 1: 12 fields, the header has 11"]);
        let k3 = CONTRACTS.replace("6.00,7.50", "six,7.50");
        let ps3 = problems(ENTITIES, ACCOUNTS, &k3, DEALS);
        assert_eq!(ps3, ["contracts.csv row 1, column unit_price = \"six\": not a decimal number"]);
    }

    #[test]
    fn missing_columns_and_duplicates() {
        let e = ENTITIES.replace("parent_id", "parent");
        let ps = problems(&e, ACCOUNTS, CONTRACTS, DEALS);
        assert_eq!(ps, ["entities.csv, column parent_id: missing column"]);
        let a = format!("{ACCOUNTS}sa,Again,c,,\n");
        let ps = problems(ENTITIES, &a, CONTRACTS, DEALS);
        assert_eq!(ps, ["storage_accounts.csv row 2, column storage_account_id = \"sa\": duplicate id"]);
    }

    #[test]
    fn decimals_are_plain_and_not_negative() {
        assert_eq!(parse_decimal("6.50"), Ok(Decimal::new(650, 2)));
        assert_eq!(parse_decimal("-1"), Err("must not be negative".to_owned()));
        assert_eq!(parse_decimal("1e3"), Err("not a decimal number".to_owned()));
        assert_eq!(parse_decimal("1.2.3"), Err("not a decimal number".to_owned()));
    }

    #[test]
    fn decimals_are_bounded() {
        assert_eq!(parse_decimal("999999999.999999"), Ok(Decimal::new(999_999_999_999_999, 6)));
        assert_eq!(parse_decimal("0000999999999"), Ok(Decimal::new(999_999_999, 0)));
        let below = Err("must be below 1000000000".to_owned());
        assert_eq!(parse_decimal("1000000000"), below);
        assert_eq!(parse_decimal("99999999999999999999999999"), below);
        assert_eq!(parse_decimal(&"9".repeat(60)), below, "too long for Decimal, still the bound's message");
        let places = Err("must have at most 6 decimal places".to_owned());
        assert_eq!(parse_decimal("0.0000001"), places);
        // Zeros beyond the sixth decimal are dropped, the scale kept at 6.
        assert_eq!(parse_decimal("1.50000000").map(|d| d.to_string()), Ok("1.500000".to_owned()));
        assert_eq!(parse_decimal("6.50").map(|d| d.to_string()), Ok("6.50".to_owned()), "the written scale is kept");
    }
}
