//! Streaming by day: [`DayMeter`] keeps each day's records only until the
//! day is complete and hands complete days to the metering thread, where a
//! [`DayReducer`] reduces them. When the records in memory (of open days,
//! and of closed days not yet reduced) outgrow their share of memory, the
//! earliest days among them are streamed: their records go to the metering
//! thread as they are read, to be reduced on the fly, and a streamed day
//! that cannot be reduced so is listed in [`Reduced::reread`] for the
//! caller to read again. Days that cannot be streamed (their state would
//! not fit, or the meter reduces re-read days) go to local disk (`spill`)
//! until they close; a day read back from disk is reduced one range of
//! account ids at a time when it is larger than a quarter of that share;
//! [`split_by_day`] cuts records of any days into one frame per day. This
//! module moves days around: it must not reduce records itself nor look at
//! their values beyond their day and account.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
/// handed to it still count against the share of open days until reduced,
/// and so do the running states of streamed days.
#[derive(Debug)]
pub struct DayMeter {
    open: BTreeMap<Day, Vec<DataFrame>>,
    /// Records in memory, in bytes, above which the earliest are streamed or spilled.
    spill_above: u64,
    spill: Spill,
    /// Whether days too large to hold may be streamed (else they are spilled).
    streaming: bool,
    /// Open days whose records go to the worker as they come.
    streamed: BTreeSet<Day>,
    /// Whether a streamed day has closed: days are as large as that here,
    /// and a new day is streamed from its first records (while states fit).
    eager: bool,
    /// The only days metered, if not all (the days read again).
    only: Option<BTreeSet<Day>>,
    /// Bytes of records handed to the worker, not yet reduced.
    in_flight: Arc<AtomicU64>,
    /// Bytes of the worker's running states of streamed days.
    stream_bytes: Arc<AtomicU64>,
    /// Streamed days that could not be reduced so: at
    /// [`STREAMED_DAYS_READ_AGAIN`] of them the run's records are taken not
    /// to be of that kind, and no further day is streamed.
    bailed: Arc<AtomicUsize>,
    work: Option<std::sync::mpsc::SyncSender<Work>>,
    worker: Option<std::thread::JoinHandle<Result<DayReducer, MeterError>>>,
}

/// Streamed days read again after which no further day is streamed: one
/// such day is usually one object delivered twice (its day is read again,
/// the others stream on); several say that the month's records are not in
/// time order per account, and reading every day twice would cost more
/// than spilling them.
const STREAMED_DAYS_READ_AGAIN: usize = 3;

/// What the metering thread is handed: records of a streamed day, or a
/// complete day.
enum Work {
    Feed { day: Day, frames: Vec<DataFrame>, bytes: u64 },
    Close(Closed),
}

impl Work {
    /// Bytes of records it holds, counted as held until the worker is done.
    fn bytes(&self) -> u64 {
        match self {
            Work::Feed { bytes, .. } => *bytes,
            Work::Close(day) => day.bytes,
        }
    }
}

/// A complete day on its way to be reduced: its latest records, in memory,
/// and the earlier ones, on disk, if any, or fed to its running state.
struct Closed {
    day: Day,
    memory: Vec<DataFrame>,
    spilled: Option<SpilledDay>,
    /// Whether its earlier records were streamed (then none is on disk).
    streamed: bool,
    /// Bytes of `memory`.
    bytes: u64,
    /// About the most bytes of records read back and reduced at once.
    read_back: u64,
}

impl DayMeter {
    /// An empty meter for the month.
    pub fn new(opts: MeterOptions) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Work>(1);
        let in_flight = Arc::new(AtomicU64::new(0));
        let stream_bytes = Arc::new(AtomicU64::new(0));
        let bailed = Arc::new(AtomicUsize::new(0));
        let (reduced, states, bails) = (Arc::clone(&in_flight), Arc::clone(&stream_bytes), Arc::clone(&bailed));
        let worker = std::thread::Builder::new()
            .name("capbill-meter".into())
            .spawn(move || {
                let mut reducer = DayReducer::new(opts);
                for work in rx {
                    let bytes = work.bytes();
                    match work {
                        Work::Feed { day, frames, .. } => reducer.feed(day, frames)?,
                        Work::Close(day) => reduce_closed(&mut reducer, day)?,
                    }
                    states.store(reducer.stream_bytes(), Ordering::Relaxed);
                    bails.store(reducer.reread().len(), Ordering::Relaxed);
                    reduced.fetch_sub(bytes, Ordering::Relaxed);
                }
                Ok(reducer)
            })
            .expect("the metering thread starts");
        DayMeter {
            open: BTreeMap::new(),
            spill_above: u64::MAX,
            spill: Spill::default(),
            streaming: true,
            streamed: BTreeSet::new(),
            eager: false,
            only: None,
            in_flight,
            stream_bytes,
            bailed,
            work: Some(tx),
            worker: Some(worker),
        }
    }

    /// Streams or spills records whenever those in memory (of open days,
    /// and of days the worker has not reduced yet, with the running states
    /// of streamed days) exceed `bytes`, the earliest open days first, the
    /// latest one's too, until those in memory are down to half of `bytes`.
    ///
    /// A day is streamed while the running states of streamed days take
    /// less than half of `bytes`: its records are reduced as they are read,
    /// from then on. Once a streamed day has closed, days are that large in
    /// this month: a new day is streamed from its first records. One that
    /// cannot be (see [`Reduced::reread`]) must be read again; after
    /// [`STREAMED_DAYS_READ_AGAIN`] of them no day is streamed. Otherwise
    /// its earliest records are spilled to local disk and read back when it
    /// closes, one range of account ids at a time if it is larger than a
    /// quarter of `bytes`. Without a limit, open days
    /// stay in memory however large they grow.
    pub fn spill_above(mut self, bytes: u64) -> Self {
        self.spill_above = bytes;
        self
    }

    /// Never streams: days too large to hold are spilled. For the meter of
    /// the days read again, which must not be left unreduced a second time.
    pub fn without_streaming(mut self) -> Self {
        self.streaming = false;
        self
    }

    /// Meters only `days`: records of other days are dropped (they were
    /// metered on the first read).
    pub fn only_days(mut self, days: BTreeSet<Day>) -> Self {
        self.only = Some(days);
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
        let streamed = self.streamed.remove(&day);
        self.eager |= streamed;
        Closed { day, memory, spilled: self.spill.take(day), streamed, bytes, read_back: self.spill_above / 4 }
    }

    /// Streams or spills the earliest records in memory if those there
    /// exceed the limit, down to half of it. A day is streamed whole (every
    /// record of it in memory, and every later one) and never spilled, so
    /// records of a day on disk always came before those still in memory.
    fn spill_if_over(&mut self) -> Result<(), MeterError> {
        let open: u64 = self.open.values().flatten().map(frame_bytes).sum();
        let mut held = open + self.in_flight.load(Ordering::Relaxed) + self.stream_bytes.load(Ordering::Relaxed);
        if held <= self.spill_above {
            return Ok(());
        }
        let target = self.spill_above / 2;
        let days: Vec<Day> = self.open.keys().copied().collect();
        for day in days {
            if held <= target {
                break;
            }
            if self.may_stream(day) {
                let frames = self.open.remove(&day).expect("listed");
                self.streamed.insert(day);
                held -= self.feed(day, frames)?.min(held);
                continue;
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

    /// Whether an open day can start streaming: streaming is on, fewer
    /// than [`STREAMED_DAYS_READ_AGAIN`] streamed days had to be read
    /// again, none of the day's records is on disk, and the running states
    /// of streamed days leave room for one more (as large as those there
    /// are) within half the limit.
    fn may_stream(&self, day: Day) -> bool {
        let bailed = self.bailed.load(Ordering::Relaxed) >= STREAMED_DAYS_READ_AGAIN;
        if !self.streaming || bailed || self.spill.has(day) {
            return false;
        }
        let states = self.stream_bytes.load(Ordering::Relaxed);
        let one = if self.streamed.is_empty() { 0 } else { states / self.streamed.len() as u64 };
        states + one <= self.spill_above / 2
    }

    /// Hands a complete day to the worker; if it has stopped, its error.
    fn close(&mut self, day: Closed) -> Result<(), MeterError> {
        self.send(Work::Close(day))
    }

    /// Hands records of a streamed day to the worker; their bytes.
    fn feed(&mut self, day: Day, frames: Vec<DataFrame>) -> Result<u64, MeterError> {
        let bytes = frames.iter().map(frame_bytes).sum();
        self.send(Work::Feed { day, frames, bytes })?;
        Ok(bytes)
    }

    /// Hands work to the worker, counting its records as held until it is
    /// done; if the worker has stopped, its error.
    fn send(&mut self, work: Work) -> Result<(), MeterError> {
        self.in_flight.fetch_add(work.bytes(), Ordering::Relaxed);
        let sent = self.work.as_ref().expect("open until finish").send(work);
        if sent.is_err() {
            self.work = None;
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
        let mut fed: BTreeMap<Day, Vec<DataFrame>> = BTreeMap::new();
        for records in days.into_iter().filter(|r| r.height() > 0) {
            // The first value, read without spelling out a scalar column.
            let day = records.column(col::DAY)?.get(0)?.extract::<Day>().expect("a day");
            if self.only.as_ref().is_some_and(|only| !only.contains(&day)) {
                continue;
            }
            let stream_new = self.eager && !self.open.contains_key(&day) && self.may_stream(day);
            if stream_new || self.streamed.contains(&day) {
                self.streamed.insert(day);
                fed.entry(day).or_default().push(records);
            } else {
                self.open.entry(day).or_default().push(records);
            }
        }
        for (day, frames) in fed {
            self.feed(day, frames)?;
        }
        if complete_before == Day::MAX {
            // The last records: what is still open is reduced by `finish`,
            // several days at once.
            return self.spill_if_over();
        }
        let mut done: Vec<Day> = self.open.range(..complete_before).map(|(d, _)| *d).collect();
        done.extend(self.spill.days().filter(|&d| d < complete_before));
        done.extend(self.streamed.range(..complete_before));
        done.sort_unstable();
        done.dedup();
        for d in done {
            let day = self.take_day(d);
            self.close(day)?;
        }
        self.spill_if_over()
    }

    /// Reduces the days still open; what it returns needs the days listed
    /// in [`Reduced::reread`], if any, before the month step.
    pub fn reduce(mut self) -> Result<Reduced, MeterError> {
        self.work = None; // ends the worker's loop
        let mut reducer = match self.worker.take().expect("worker").join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(r) => r?,
        };
        for d in self.streamed.iter().copied().collect::<Vec<_>>() {
            let day = self.take_day(d);
            reduce_closed(&mut reducer, day)?;
        }
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
        Ok(Reduced { reducer, spilled_bytes: self.spill.written })
    }

    /// Meters the remaining days and everything that needs the whole month,
    /// as [`Reduced::finish`], for a meter that does not stream (no limit,
    /// or [`Self::without_streaming`]).
    ///
    /// # Panics
    /// If a streamed day must be read again.
    pub fn finish(self, dir: &Directory, accounts: Interner, set_apart: &[u32]) -> Result<Metered, MeterError> {
        self.reduce()?.finish(dir, accounts, set_apart)
    }
}

/// Every day of a month reduced to daily values, but for those listed in
/// [`Self::reread`].
pub struct Reduced {
    reducer: DayReducer,
    spilled_bytes: u64,
}

impl Reduced {
    /// Streamed days whose records were not in time order per account (or
    /// repeated a key): the running kernel could not reduce them, and their
    /// records are gone. Read them again into a meter that does not stream
    /// ([`DayMeter::without_streaming`], [`DayMeter::only_days`]) and hand
    /// its result to [`Self::add_reread`].
    pub fn reread(&self) -> &BTreeSet<Day> {
        self.reducer.reread()
    }

    /// Adds the days read again, reduced by a meter of those days only.
    ///
    /// # Panics
    /// If `days` itself lists days to read again.
    pub fn add_reread(&mut self, days: Reduced) {
        assert!(days.reread().is_empty(), "the days read again are not streamed");
        self.reducer.clear_reread();
        self.reducer.absorb(days.reducer);
        self.spilled_bytes += days.spilled_bytes;
    }

    /// Meters everything that needs the whole month: windows, gap fill,
    /// byte-days, findings. `accounts` names the records' account ids (the
    /// directory's accounts are added if missing).
    ///
    /// `set_apart` holds one mask per directory entity: bit `day - first`
    /// (`first` the month's first day) marks a day whose byte-days of the
    /// entity's accounts are also tallied apart, per account, into
    /// [`Metered::uncontracted`]. Metering does not know why a day is set
    /// apart; the caller decides (the pipeline passes the uncontracted days).
    ///
    /// # Panics
    /// If `set_apart` does not hold one mask per entity of `dir`, or a day
    /// is still to be read again.
    pub fn finish(self, dir: &Directory, accounts: Interner, set_apart: &[u32]) -> Result<Metered, MeterError> {
        assert_eq!(set_apart.len(), dir.entities.len(), "one set-apart mask per entity");
        assert!(self.reread().is_empty(), "every streamed day the running kernel could not take is read again");
        let (daily, conflicts, opts) = self.reducer.into_days()?;
        let mut metered = finish_month(daily, conflicts, dir, accounts, set_apart, opts)?;
        metered.spilled_bytes = self.spilled_bytes;
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
    let Closed { day, memory, spilled, streamed, bytes, read_back } = day;
    if streamed {
        return reducer.close_streamed(day, memory);
    }
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

    /// Hourly records of `accounts` accounts, two buckets, over `days`
    /// days: in time order per account, or with each account's hours
    /// reversed on odd days.
    fn hourly(accounts: usize, days: i32, reversed_odd_days: bool) -> Vec<Rec> {
        const NAMES: [&str; 3] = ["sa", "sb", "ghost"];
        let mut recs = Vec::new();
        for day in 0..days {
            for h in 0..24 {
                let hour = if reversed_odd_days && day % 2 == 1 { 23 - h } else { h };
                for a in NAMES.iter().take(accounts) {
                    for b in ["x", "y"] {
                        let row = recs.len() as u32;
                        recs.push((*a, b, day, hour, 1000 + (day as u64) * 7 + hour as u64, 0, row));
                    }
                }
            }
        }
        recs
    }

    #[test]
    fn days_over_the_budget_are_reduced_as_they_stream_or_read_again() {
        let d = dir("sa,C,c,,\nsb,C,c,2026-10-05,2026-10-20\n");
        for reversed in [false, true] {
            let recs = hourly(3, 6, reversed);
            let all = meter_recs(&recs, &d, DailyMethod::Mean);
            // One chunk per day (about 5 KB), each day complete once the next
            // begins; a budget of 2,000 bytes streams every day from its
            // first records (the running states of 3 accounts fit in half of
            // it), until a streamed day has to be read again.
            let push = |meter: &mut DayMeter, ids: &mut Interner| {
                for day in 0..6 {
                    let of_day: Vec<Rec> = recs.iter().filter(|r| r.2 == day).copied().collect();
                    meter.push(frame(&of_day, ids), month().first_day() + day).unwrap();
                }
            };
            let mut ids = Interner::default();
            let mut meter = DayMeter::new(opts(DailyMethod::Mean)).spill_above(2000);
            push(&mut meter, &mut ids);
            let mut reduced = meter.reduce().unwrap();
            let reread: Vec<Day> = reduced.reread().iter().copied().collect();
            if reversed {
                // The first odd day is read again, and maybe a later odd day
                // that started streaming before the first was found out.
                assert!(reread.contains(&(month().first_day() + 1)), "{reread:?}");
                assert!(reread.iter().all(|d| (d - month().first_day()) % 2 == 1), "{reread:?}");
                let mut again =
                    DayMeter::new(opts(DailyMethod::Mean)).without_streaming().only_days(reduced.reread().clone());
                push(&mut again, &mut ids);
                reduced.add_reread(again.reduce().unwrap());
            } else {
                assert!(reread.is_empty(), "{reread:?}");
            }
            let m = reduced.finish(&d, ids, &set_apart(&d)).unwrap();
            if !reversed {
                assert_eq!(m.spilled_bytes, 0, "every day streamed");
            }
            assert!(all.account_usage.equals_missing(&m.account_usage), "reversed: {reversed}");
            assert!(
                all.daily_usage
                    .frame(&all.accounts)
                    .unwrap()
                    .equals_missing(&m.daily_usage.frame(&m.accounts).unwrap())
            );
        }
    }

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
            // Streamed as is; without streaming, with every record spilled
            // to disk after each chunk (a budget of nothing), read back
            // whole, or one account id at a time (ranges of one id); and
            // with a budget of a few records, so that closed days are partly
            // on disk and partly in memory, read back in runs of ranges of
            // two ids. With streaming and those budgets, days are reduced as
            // their records come instead, and those the running kernel
            // cannot take (timestamps out of order, repeated keys) are read
            // again, every chunk pushed once more, into a meter of those days.
            let stream = |meter: DayMeter| {
                let push_all = |meter: &mut DayMeter, ids: &mut Interner| {
                    for (i, chunk) in chunks.iter().enumerate() {
                        // Days before the next chunk's first day are complete.
                        let complete_before = chunks.get(i + 1).map_or(i32::MAX, |next| month().first_day() + next[0].2);
                        meter.push(frame(chunk, ids), complete_before).unwrap();
                    }
                };
                let mut meter = meter;
                let mut ids = Interner::default(); // not seeded: finish adds the directory's accounts
                push_all(&mut meter, &mut ids);
                let mut reduced = meter.reduce().unwrap();
                let reread = reduced.reread().len();
                if reread > 0 {
                    let mut again = DayMeter::new(opts(DailyMethod::Mean)).spill_above(400).without_streaming().only_days(reduced.reread().clone());
                    push_all(&mut again, &mut ids);
                    reduced.add_reread(again.reduce().unwrap());
                }
                (reduced.finish(&d, ids, &set_apart(&d)).unwrap(), reread)
            };
            let meter = || DayMeter::new(opts(DailyMethod::Mean));
            let (streamed, _) = stream(meter());
            let (spilled, _) = stream(meter().spill_above(0).without_streaming());
            let (by_account, _) = stream(meter().spill_above(0).spill_ranges(0).without_streaming());
            let (partly, _) = stream(meter().spill_above(400).spill_ranges(1).without_streaming());
            let (on_the_fly, _) = stream(meter().spill_above(0));
            let (some_on_the_fly, _) = stream(meter().spill_above(400).spill_ranges(1));
            // The same daily values, whatever ids the accounts got.
            let daily = |m: &Metered| m.daily_usage.frame(&m.accounts).unwrap();
            for m in [&streamed, &spilled, &by_account, &partly, &on_the_fly, &some_on_the_fly] {
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
