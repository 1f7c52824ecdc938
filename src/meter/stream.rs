//! Streaming by day: [`DayMeter`] keeps each day's records only until the
//! day is complete and hands complete days to the metering thread, where a
//! [`DayReducer`] reduces them; when the open days' records outgrow their
//! share of memory, it moves them to local disk (`spill`) until they close;
//! [`split_by_day`] cuts records of any days into one frame per day. This
//! module moves days around: it must not reduce records itself nor look at
//! their values beyond their day.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::month::finish_month;
use super::reduce::DayReducer;
use super::spill::Spill;
use super::{MeterError, MeterOptions, Metered};
use crate::directory::Directory;
use crate::model::{Day, Interner, col};

/// Streaming metering: raw records are kept per day only until the day is
/// complete, then reduced to one daily value per account (spec 2.1–2.2), so
/// memory holds the open days' records, not the month's.
///
/// Complete days are reduced on a worker thread while ingestion parses the
/// next objects; the channel to it holds one day, so a slow reduction holds
/// ingestion back instead of piling days up in memory.
#[derive(Debug)]
pub struct DayMeter {
    open: BTreeMap<Day, Vec<DataFrame>>,
    /// Open days' records in memory, in bytes, above which they are spilled.
    spill_above: u64,
    spill: Spill,
    days: Option<std::sync::mpsc::SyncSender<Vec<DataFrame>>>,
    worker: Option<std::thread::JoinHandle<Result<DayReducer, MeterError>>>,
}

impl DayMeter {
    /// An empty meter for the month.
    pub fn new(opts: MeterOptions) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<DataFrame>>(1);
        let worker = std::thread::Builder::new()
            .name("capbill-meter".into())
            .spawn(move || {
                let mut reducer = DayReducer::new(opts);
                for frames in rx {
                    reducer.close(frames)?;
                }
                Ok(reducer)
            })
            .expect("the metering thread starts");
        DayMeter {
            open: BTreeMap::new(),
            spill_above: u64::MAX,
            spill: Spill::default(),
            days: Some(tx),
            worker: Some(worker),
        }
    }

    /// Spills the records of open days to local disk whenever those in
    /// memory exceed `bytes`, keeping only the latest open day (the one
    /// being filled); a spilled day is read back whole when it closes.
    /// Without it, open days stay in memory however large they grow.
    pub fn spill_above(mut self, bytes: u64) -> Self {
        self.spill_above = bytes;
        self
    }

    /// The records of an open day, spilled ones first (they came first).
    fn take_day(&mut self, day: Day) -> Result<Vec<DataFrame>, MeterError> {
        let mut frames = self.spill.take(day)?;
        frames.extend(self.open.remove(&day).unwrap_or_default());
        Ok(frames)
    }

    /// Spills every open day but the latest if those in memory exceed the limit.
    fn spill_if_over(&mut self) -> Result<(), MeterError> {
        let held: usize = self.open.values().flatten().map(DataFrame::estimated_size).sum();
        if held as u64 <= self.spill_above {
            return Ok(());
        }
        let latest = self.open.keys().next_back().copied();
        let earlier: Vec<Day> = self.open.keys().copied().filter(|&d| Some(d) != latest).collect();
        for day in earlier {
            let frames = self.open.remove(&day).expect("listed");
            self.spill.write(day, frames)?;
        }
        Ok(())
    }

    /// Hands a complete day to the worker; if it has stopped, its error.
    fn close(&mut self, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        let sent = self.days.as_ref().expect("open until finish").send(frames);
        if sent.is_err() {
            self.days = None;
            return match self.worker.take().expect("worker").join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => unreachable!("the worker only stops early on an error"),
            };
        }
        Ok(())
    }

    /// Adds records (the columns of [`crate::ingest::record_columns`]) of
    /// any days; then meters every open day before `complete_before`, which
    /// no later records will touch.
    pub fn push(&mut self, records: DataFrame, complete_before: Day) -> Result<(), MeterError> {
        self.push_days(split_by_day(records)?, complete_before)
    }

    /// [`Self::push`] for records already split by day: each frame holds
    /// one day's records (as ingestion hands them on).
    pub fn push_days(&mut self, days: Vec<DataFrame>, complete_before: Day) -> Result<(), MeterError> {
        for records in days.into_iter().filter(|r| r.height() > 0) {
            // The first value, read without spelling out a scalar column.
            let day = records.column(col::DAY)?.get(0)?.extract::<Day>().expect("a day");
            self.open.entry(day).or_default().push(records);
        }
        if complete_before == Day::MAX {
            // The last records: what is still open is reduced by `finish`,
            // several days at once.
            return self.spill_if_over();
        }
        let mut done: Vec<Day> = self.open.range(..complete_before).map(|(d, _)| *d).collect();
        done.extend(self.spill.days().filter(|&d| d < complete_before && !self.open.contains_key(&d)));
        done.sort_unstable();
        for d in done {
            let frames = self.take_day(d)?;
            self.close(frames)?;
        }
        self.spill_if_over()
    }

    /// Meters the remaining days and everything that needs the whole month:
    /// windows, gap fill, byte-days, findings. `accounts` names the records'
    /// account ids (the directory's accounts are added if missing).
    ///
    /// `set_apart` holds one mask per directory entity: bit `day - first`
    /// (`first` the month's first day) marks a day whose byte-days of the
    /// entity's accounts are also tallied apart, per account, into
    /// [`Metered::uncontracted`]. Metering does not know why a day is set
    /// apart; the caller decides (the pipeline passes the uncontracted days).
    ///
    /// # Panics
    /// If `set_apart` does not hold one mask per entity of `dir`.
    pub fn finish(mut self, dir: &Directory, accounts: Interner, set_apart: &[u32]) -> Result<Metered, MeterError> {
        assert_eq!(set_apart.len(), dir.entities.len(), "one set-apart mask per entity");
        self.days = None; // ends the worker's loop
        let mut reducer = match self.worker.take().expect("worker").join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(r) => r?,
        };
        if self.spill.is_empty() {
            reducer.close_all(std::mem::take(&mut self.open).into_values().collect())?;
        } else {
            // One day in memory at a time.
            let mut rest: Vec<Day> = self.open.keys().copied().chain(self.spill.days()).collect();
            rest.sort_unstable();
            rest.dedup();
            for d in rest {
                let frames = self.take_day(d)?;
                reducer.close(frames)?;
            }
        }
        let (daily, conflicts, opts) = reducer.into_days()?;
        let mut metered = finish_month(daily, conflicts, dir, accounts, set_apart, opts)?;
        metered.spilled_bytes = self.spill.written;
        Ok(metered)
    }
}

/// Records of any days as one frame per day, in day order.
fn split_by_day(records: DataFrame) -> PolarsResult<Vec<DataFrame>> {
    if records.height() == 0 {
        return Ok(Vec::new());
    }
    let day = records.column(col::DAY)?.i32()?;
    let (lo, hi) = (day.min().unwrap_or_default(), day.max().unwrap_or_default());
    if lo == hi {
        return Ok(vec![records]);
    }
    // One pass for the rows of every day, then one gather per day.
    let mut rows: Vec<Vec<IdxSize>> = vec![Vec::new(); (hi - lo) as usize + 1];
    for (i, d) in day.into_no_null_iter().enumerate() {
        rows[(d - lo) as usize].push(i as IdxSize);
    }
    // Gathers from one chunk per column are far cheaper than from many.
    let mut records = records;
    records.rechunk_mut_par();
    rows.into_iter()
        .filter(|idx| !idx.is_empty())
        .map(|idx| records.take(&IdxCa::from_vec("idx".into(), idx)))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::meter::tests::{Rec, dir, frame, kinds, meter_recs, month, opts, set_apart};
    use crate::model::DailyMethod;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Metering day by day as a stream, closing days as soon as later
        /// chunks cannot touch them, equals metering the month at once.
        #[test]
        fn streaming_equals_all_at_once(
            recs in proptest::collection::vec((0usize..3, 0usize..2, 0i32..31, 0i64..3, 0u64..1_000_000, 0u32..3), 1..120),
            split in 1usize..5,
        ) {
            let accounts = ["sa", "sb", "ghost"];
            let buckets = ["x", "y"];
            let recs: Vec<Rec> = recs
                .iter()
                .enumerate()
                .map(|(i, &(a, b, d, h, v, o))| (accounts[a], buckets[b], d, h, v, o, i as u32))
                .collect();
            let d = dir("sa,C,c,,\nsb,C,c,2026-10-05,2026-10-20\n");
            let all = meter_recs(&recs, &d, DailyMethod::Mean);
            let mut by_day = recs.clone();
            by_day.sort_by_key(|r| r.2);
            let chunks: Vec<&[Rec]> = by_day.chunks(by_day.len().div_ceil(split)).collect();
            // Streamed as is, and with every open day but the latest spilled
            // to disk after each chunk (a budget of nothing).
            let stream = |meter: DayMeter| {
                let mut meter = meter;
                let mut ids = Interner::default(); // not seeded: finish adds the directory's accounts
                for (i, chunk) in chunks.iter().enumerate() {
                    // Days before the next chunk's first day are complete.
                    let complete_before = chunks.get(i + 1).map_or(i32::MAX, |next| month().first_day() + next[0].2);
                    meter.push(frame(chunk, &mut ids), complete_before).unwrap();
                }
                meter.finish(&d, ids, &set_apart(&d)).unwrap()
            };
            let streamed = stream(DayMeter::new(opts(DailyMethod::Mean)));
            let spilled = stream(DayMeter::new(opts(DailyMethod::Mean)).spill_above(0));
            // The same daily values, whatever ids the accounts got.
            let daily = |m: &Metered| m.daily_usage.frame(&m.accounts).unwrap();
            for m in [&streamed, &spilled] {
                prop_assert!(all.account_usage.equals_missing(&m.account_usage));
                prop_assert_eq!(kinds(&all), kinds(m));
                prop_assert!(daily(&all).equals_missing(&daily(m)));
            }
            prop_assert_eq!(streamed.spilled_bytes, 0);
            // The last chunk's days all stay open until `finish`: with two
            // or more, all but the latest were spilled.
            let last: std::collections::BTreeSet<i32> = chunks[chunks.len() - 1].iter().map(|r| r.2).collect();
            if last.len() > 1 {
                prop_assert!(spilled.spilled_bytes > 0);
            }
        }
    }
}
