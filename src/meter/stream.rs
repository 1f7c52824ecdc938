//! Streaming by day: [`DayMeter`] keeps each day's records only until the
//! day is complete and hands complete days to the metering thread, where a
//! [`DayReducer`] reduces them; when the records in memory (of open days,
//! and of closed days not yet reduced) outgrow their share of memory, it
//! moves the earliest of them to local disk (`spill`) until they close; a
//! day read back from disk is reduced one range of account ids at a time
//! when it is larger than a quarter of that share; [`split_by_day`] cuts
//! records of any days into one frame per day. This module moves days
//! around: it must not reduce records itself nor look at their values
//! beyond their day and account.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use polars::prelude::*;

use super::month::finish_month;
use super::reduce::DayReducer;
use super::spill::{Spill, SpilledDay, split_by_range};
use super::{MeterError, MeterOptions, Metered};
use crate::directory::Directory;
use crate::model::{Day, Interner, col};

/// Streaming metering: raw records are kept per day only until the day is
/// complete, then reduced to one daily value per account (spec 2.1–2.2), so
/// memory holds the open days' records, not the month's.
///
/// Complete days are reduced on a worker thread while ingestion parses the
/// next objects; the channel to it holds one day, so a slow reduction holds
/// ingestion back instead of piling days up in memory. The records of days
/// handed to it still count against the share of open days until reduced.
#[derive(Debug)]
pub struct DayMeter {
    open: BTreeMap<Day, Vec<DataFrame>>,
    /// Records in memory, in bytes, above which they are spilled.
    spill_above: u64,
    spill: Spill,
    /// Bytes of records of closed days handed to the worker, not yet reduced.
    in_flight: Arc<AtomicU64>,
    days: Option<std::sync::mpsc::SyncSender<Closed>>,
    worker: Option<std::thread::JoinHandle<Result<DayReducer, MeterError>>>,
}

/// A complete day on its way to be reduced: its latest records, in memory,
/// and the earlier ones, on disk, if any.
struct Closed {
    memory: Vec<DataFrame>,
    spilled: Option<SpilledDay>,
    /// Bytes of `memory`.
    bytes: u64,
    /// About the most bytes of records read back and reduced at once.
    read_back: u64,
}

impl DayMeter {
    /// An empty meter for the month.
    pub fn new(opts: MeterOptions) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Closed>(1);
        let in_flight = Arc::new(AtomicU64::new(0));
        let reduced = Arc::clone(&in_flight);
        let worker = std::thread::Builder::new()
            .name("capbill-meter".into())
            .spawn(move || {
                let mut reducer = DayReducer::new(opts);
                for day in rx {
                    let bytes = day.bytes;
                    reduce_closed(&mut reducer, day)?;
                    reduced.fetch_sub(bytes, Ordering::Relaxed);
                }
                Ok(reducer)
            })
            .expect("the metering thread starts");
        DayMeter {
            open: BTreeMap::new(),
            spill_above: u64::MAX,
            spill: Spill::default(),
            in_flight,
            days: Some(tx),
            worker: Some(worker),
        }
    }

    /// Spills records to local disk whenever those in memory (of open days,
    /// and of closed days the worker has not reduced yet) exceed `bytes`:
    /// the earliest records of the earliest open days go first, the latest
    /// open day's too, until those in memory are down to half of `bytes`.
    /// A spilled day is read back when it closes, one range of account ids
    /// at a time if it is larger than a quarter of `bytes`. Without it,
    /// open days stay in memory however large they grow.
    pub fn spill_above(mut self, bytes: u64) -> Self {
        self.spill_above = bytes;
        self
    }

    /// Ranges of `1 << bits` account ids for spilled days (tests use small ones).
    #[cfg(test)]
    fn spill_ranges(mut self, bits: u32) -> Self {
        self.spill = Spill::with_range_bits(bits);
        self
    }

    /// An open day's records, taken out: those on disk came first.
    fn take_day(&mut self, day: Day) -> Closed {
        let memory = self.open.remove(&day).unwrap_or_default();
        let bytes = memory.iter().map(frame_bytes).sum();
        Closed { memory, spilled: self.spill.take(day), bytes, read_back: self.spill_above / 4 }
    }

    /// Spills the earliest records in memory if those there exceed the
    /// limit, down to half of it. Records of a day on disk always came
    /// before those of the day still in memory.
    fn spill_if_over(&mut self) -> Result<(), MeterError> {
        let open: u64 = self.open.values().flatten().map(frame_bytes).sum();
        let mut held = open + self.in_flight.load(Ordering::Relaxed);
        if held <= self.spill_above {
            return Ok(());
        }
        let target = self.spill_above / 2;
        let days: Vec<Day> = self.open.keys().copied().collect();
        for day in days {
            if held <= target {
                break;
            }
            let frames = self.open.get_mut(&day).expect("listed");
            let mut n = 0;
            while n < frames.len() && held > target {
                held -= frame_bytes(&frames[n]).min(held);
                n += 1;
            }
            let earliest: Vec<DataFrame> = frames.drain(..n).collect();
            if frames.is_empty() {
                self.open.remove(&day);
            }
            self.spill.write(day, earliest)?;
        }
        Ok(())
    }

    /// Hands a complete day to the worker; if it has stopped, its error.
    fn close(&mut self, day: Closed) -> Result<(), MeterError> {
        self.in_flight.fetch_add(day.bytes, Ordering::Relaxed);
        let sent = self.days.as_ref().expect("open until finish").send(day);
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
            let day = self.take_day(d);
            self.close(day)?;
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
                let day = self.take_day(d);
                reduce_closed(&mut reducer, day)?;
            }
        }
        let (daily, conflicts, opts) = reducer.into_days()?;
        let mut metered = finish_month(daily, conflicts, dir, accounts, set_apart, opts)?;
        metered.spilled_bytes = self.spill.written;
        Ok(metered)
    }
}

/// Bytes a record frame holds: a scalar column is one value (polars'
/// `estimated_size` would spell it out, and keep it spelled out).
fn frame_bytes(frame: &DataFrame) -> u64 {
    let column = |c: &Column| match c.as_scalar_column() {
        Some(_) => 16,
        None => c.as_materialized_series().estimated_size(),
    };
    frame.columns().iter().map(column).sum::<usize>() as u64
}

/// Reduces a closed day. One with records on disk is read back whole if it
/// is small, else one run of ranges of account ids at a time (each run
/// about `read_back` bytes): the records of one account are all in one
/// range, those on disk before those in memory, in the order they came, so
/// each run reduces its accounts exactly as the whole day would.
fn reduce_closed(reducer: &mut DayReducer, day: Closed) -> Result<(), MeterError> {
    let Closed { memory, spilled, bytes, read_back } = day;
    let Some(mut spilled) = spilled else {
        return reducer.close(memory);
    };
    if spilled.bytes() + bytes <= read_back {
        let mut frames = Vec::new();
        for (range, _) in spilled.ranges().collect::<Vec<_>>() {
            frames.extend(spilled.take(range)?);
        }
        frames.extend(memory);
        return reducer.close(frames);
    }
    let mut in_memory: BTreeMap<u32, (Vec<DataFrame>, u64)> = BTreeMap::new();
    for frame in memory {
        for (range, part) in split_by_range(&frame, spilled.bits())? {
            let (parts, n) = in_memory.entry(range).or_default();
            *n += frame_bytes(&part);
            parts.push(part);
        }
    }
    let on_disk: BTreeMap<u32, u64> = spilled.ranges().collect();
    let ranges: BTreeSet<u32> = on_disk.keys().chain(in_memory.keys()).copied().collect();
    let (mut run, mut run_bytes) = (Vec::new(), 0);
    for range in ranges {
        let (parts, n) = in_memory.remove(&range).unwrap_or_default();
        let size = on_disk.get(&range).copied().unwrap_or(0) + n;
        if !run.is_empty() && run_bytes + size > read_back {
            reducer.close(std::mem::take(&mut run))?;
            run_bytes = 0;
        }
        run.extend(spilled.take(range)?);
        run.extend(parts);
        run_bytes += size;
    }
    if !run.is_empty() {
        reducer.close(run)?;
    }
    Ok(())
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
            // Streamed as is; with every record spilled to disk after each
            // chunk (a budget of nothing), read back whole, or one account
            // id at a time (ranges of one id); and with a budget of a few
            // records, so that closed days are partly on disk and partly
            // in memory, read back in runs of ranges of two ids.
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
            let meter = || DayMeter::new(opts(DailyMethod::Mean));
            let streamed = stream(meter());
            let spilled = stream(meter().spill_above(0));
            let by_account = stream(meter().spill_above(0).spill_ranges(0));
            let partly = stream(meter().spill_above(400).spill_ranges(1));
            // The same daily values, whatever ids the accounts got.
            let daily = |m: &Metered| m.daily_usage.frame(&m.accounts).unwrap();
            for m in [&streamed, &spilled, &by_account, &partly] {
                prop_assert!(all.account_usage.equals_missing(&m.account_usage));
                prop_assert_eq!(kinds(&all), kinds(m));
                prop_assert!(daily(&all).equals_missing(&daily(m)));
            }
            prop_assert_eq!(streamed.spilled_bytes, 0);
            // Without a budget every record goes to disk, the latest day's too.
            prop_assert!(spilled.spilled_bytes > 0 && by_account.spilled_bytes > 0);
        }
    }
}
