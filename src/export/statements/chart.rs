//! The daily usage chart of a statement: one inline SVG per customer, a bar
//! per day of the month drawn from the sum of its accounts' daily values.
//! Coordinates are integers computed from the integer byte values (no
//! floating point); the one label with a quantity (the peak) goes through
//! `money`. It draws what it is given: it must not add up usage. It appends
//! to the page being written, without a string of its own.

use std::fmt::Write;

use super::html::escape_into;
use crate::model::{BillingMonth, Unit};
use crate::money;

const WIDTH: i128 = 680;
const HEIGHT: i128 = 180;
const LEFT: i128 = 76;
const TOP: i128 = 12;
const PLOT_W: i128 = 600;
const PLOT_H: i128 = 130;

/// Appends to `out` the chart of one customer's `daily` values (per day of
/// `month`, `None` for a day without any account day), labelled `who`.
pub(super) fn daily_chart(out: &mut String, daily: &[Option<i128>], month: BillingMonth, unit: Unit, who: &str) {
    let days = daily.len().max(1) as i128;
    let max = daily.iter().flatten().copied().max().unwrap_or(0).max(0);
    let unit_name = match unit {
        Unit::Tb => "TB",
        Unit::Tib => "TiB",
    };
    // The peak in the unit, or in bytes if it does not fit a decimal.
    let peak = money::ratio(max, i128::from(unit.bytes()), 3);
    let write_peak = |out: &mut String| {
        let _ = match peak {
            Ok(q) => write!(out, "{q}"),
            Err(_) => write!(out, "{max} B"),
        };
    };
    let used = daily.iter().filter(|v| v.is_some_and(|v| v > 0)).count();
    let bottom = TOP + PLOT_H;
    let slot = PLOT_W / days;
    let bar = (slot - 3).max(1);
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" data-days=\"{}\" data-peak-bytes=\"{max}\">\
         <title>Daily usage of ",
        daily.len(),
    );
    escape_into(out, who);
    let _ = write!(out, ", {month}: peak ");
    write_peak(out);
    let _ = write!(out, " {unit_name}, {used} days with usage</title>");
    // Grid lines and labels at the peak, half of it and zero.
    for (num, den) in [(1, 1), (1, 2), (0, 1)] {
        let y = bottom - PLOT_H * num / den;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{}\" class=\"ylabel\">",
            LEFT + PLOT_W,
            LEFT - 6,
            y + 4
        );
        match (num, den) {
            (0, _) => out.push('0'),
            (1, 1) => {
                write_peak(out);
                let _ = write!(out, " {unit_name}");
            }
            _ => {
                if let Ok(q) = money::ratio(max * num, i128::from(unit.bytes()) * den, 3) {
                    let _ = write!(out, "{q}");
                }
            }
        }
        out.push_str("</text>");
    }
    out.push_str("<path class=\"bars\" d=\"");
    // Coordinates are small: written as i64, which formats faster than i128.
    let (bottom_px, bar_px) = (bottom as i64, bar as i64);
    for (d, v) in daily.iter().enumerate() {
        let v = v.unwrap_or(0);
        if v <= 0 || max == 0 {
            continue;
        }
        let h = (v.saturating_mul(PLOT_H) / max).clamp(1, PLOT_H) as i64;
        let x = (LEFT + d as i128 * slot + 1) as i64;
        let _ = write!(out, "M{x} {bottom_px}v-{h}h{bar_px}v{h}z");
    }
    out.push_str("\"/>");
    // Day labels: the 1st, every 7th day after it, and the last.
    let last = daily.len();
    for day in (1..=last).filter(|&d| d % 7 == 1 || d == last) {
        if day != last && last - day < 3 {
            continue;
        }
        let x = LEFT + (day as i128 - 1) * slot + slot / 2;
        let _ = write!(out, "<text x=\"{x}\" y=\"{}\" class=\"xlabel\">{day}</text>", bottom + 16);
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" class=\"xlabel\">day of {month}</text></svg>",
        LEFT + PLOT_W / 2,
        bottom + 30
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_peak_with_integers() {
        let month: BillingMonth = "2026-10".parse().unwrap();
        let mut daily = vec![None; 31];
        daily[0] = Some(2_000_000_000_000);
        daily[1] = Some(1_000_000_000_000);
        daily[2] = Some(0);
        let chart = |daily: &[Option<i128>], unit, who| {
            let mut out = String::from("before");
            daily_chart(&mut out, daily, month, unit, who);
            out.strip_prefix("before").expect("appended").to_owned()
        };
        let svg = chart(&daily, Unit::Tb, "a <b>");
        // Slot 600 / 31 = 19: day 1 at x 77 full height, day 2 at x 96 half.
        assert!(svg.contains("M77 142v-130h16v130zM96 142v-65h16v65z\""), "{svg}");
        assert!(svg.contains(">2.000 TB</text>"), "the peak: {svg}");
        assert!(svg.contains("peak 2.000 TB, 2 days with usage"), "{svg}");
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains(">1.000</text>"), "half the peak: {svg}");
        let empty = chart(&[None; 30], Unit::Tib, "x");
        assert!(empty.contains("d=\"\"") && empty.contains("peak 0.000 TiB"), "{empty}");
    }
}
