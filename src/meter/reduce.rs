//! Closing days: [`DayReducer`] reduces each complete day's records to one
//! daily value per account (spec 2.1–2.2), with the single-pass kernels of
//! `day` where they apply and otherwise the general polars reduction
//! ([`DayReducer::reduce_day`]), which also deduplicates repeated keys (the
//! last record wins; differing values are conflicts). [`DayReducer::close_all`]
//! closes the days still open at the end, one run of days per core. Days
//! too large to hold are fed in as they stream ([`DayReducer::feed`]) to
//! the running kernel ([`RunningDay`]); a streamed day the kernel cannot
//! take is listed to be read again ([`DayReducer::reread`]). This module
//! must not apply account windows, fill gaps or add up byte-days: that is
//! the month step's.

use polars::prelude::*;

use std::collections::{BTreeMap, BTreeSet};

use super::day::{RunningDay, SinglePass};
use super::{COUNT, MeterError, MeterOptions};
use crate::model::{DailyMethod, Day, col};
use crate::money;

const SNAPSHOT: &str = "snapshot";
const VERSIONS: &str = "versions";
const SUM: &str = "sum";

/// Reduces complete days to daily values (on the metering thread).
pub(super) struct DayReducer {
    opts: MeterOptions,
    daily: Vec<DataFrame>,
    conflicts: Vec<DataFrame>,
    single_pass: SinglePass,
    /// Days being reduced as their records stream in.
    streams: BTreeMap<Day, RunningDay>,
    /// Streamed days the running kernel could not take: their records are gone.
    reread: BTreeSet<Day>,
}

impl DayReducer {
    /// A reducer with no day closed yet.
    pub(super) fn new(opts: MeterOptions) -> Self {
        DayReducer {
            opts,
            daily: Vec::new(),
            conflicts: Vec::new(),
            single_pass: SinglePass::default(),
            streams: BTreeMap::new(),
            reread: BTreeSet::new(),
        }
    }

    /// Feeds frames of a streamed day, in the order read, to its running
    /// kernel; if they are not of its kind, drops the day's state and lists
    /// the day to be read again.
    pub(super) fn feed(&mut self, day: Day, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        if self.reread.contains(&day) {
            return Ok(());
        }
        let stream = self.streams.entry(day).or_insert_with(RunningDay::new);
        for frame in &frames {
            if !stream.feed(frame)? {
                tracing::debug!(day = %crate::model::date_of(day), "a streamed day has repeated records or records not in time order per account: it will be read again");
                self.streams.remove(&day);
                self.reread.insert(day);
                break;
            }
        }
        Ok(())
    }

    /// Closes a streamed day: its last frames fed, its daily values kept,
    /// unless it is to be read again.
    pub(super) fn close_streamed(&mut self, day: Day, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        self.feed(day, frames)?;
        let Some(stream) = self.streams.remove(&day) else { return Ok(()) };
        match stream.finish(day, self.opts.daily_method)? {
            Some(daily) => self.daily.push(narrow(daily)?),
            None => {
                self.reread.insert(day);
            }
        }
        Ok(())
    }

    /// Bytes of the running states of streamed days not closed yet.
    pub(super) fn stream_bytes(&self) -> u64 {
        self.streams.values().map(RunningDay::bytes).sum()
    }

    /// Streamed days whose records must be read again: the running kernel
    /// could not take them, and their frames are gone.
    pub(super) fn reread(&self) -> &BTreeSet<Day> {
        &self.reread
    }

    /// Forgets the days to read again (they have been read again).
    pub(super) fn clear_reread(&mut self) {
        self.reread.clear();
    }

    /// One day: last wins per (account, bucket, timestamp), snapshots summed
    /// over buckets, daily value = mean (half away from zero) or max.
    pub(super) fn close(&mut self, frames: Vec<DataFrame>) -> Result<(), MeterError> {
        let t = std::time::Instant::now();
        let rows: usize = frames.iter().map(DataFrame::height).sum();
        let (daily, path) = match self.single_pass.reduce(&frames, self.opts.daily_method)? {
            Some(daily) => (daily, "single pass"),
            None => {
                let mut frames = frames.into_iter();
                let mut records = frames.next().expect("a day has records");
                for f in frames {
                    records.vstack_mut_owned(f)?;
                }
                (self.reduce_day(records.lazy())?, "general")
            }
        };
        tracing::debug!(rows, path, elapsed_ms = t.elapsed().as_millis() as u64, "metered a day");
        self.daily.push(narrow(daily)?);
        Ok(())
    }

    /// The days still open when ingestion ends (all of them, for objects
    /// that span the month), in day order: split into one contiguous run of
    /// days per core, each run reduced on its own thread, the results kept
    /// in day order.
    pub(super) fn close_all(&mut self, days: Vec<Vec<DataFrame>>) -> Result<(), MeterError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(days.len());
        if threads <= 1 {
            return days.into_iter().try_for_each(|frames| self.close(frames));
        }
        let per_thread = days.len().div_ceil(threads);
        let mut runs: Vec<Vec<Vec<DataFrame>>> = Vec::new();
        let mut days = days.into_iter().peekable();
        while days.peek().is_some() {
            runs.push(days.by_ref().take(per_thread).collect());
        }
        let opts = self.opts;
        let reduced: Vec<Result<DayReducer, MeterError>> = std::thread::scope(|scope| {
            let jobs: Vec<_> = runs
                .into_iter()
                .map(|run| {
                    scope.spawn(move || {
                        let mut r = DayReducer::new(opts);
                        run.into_iter().try_for_each(|frames| r.close(frames)).map(|()| r)
                    })
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        for r in reduced {
            self.absorb(r?);
        }
        Ok(())
    }

    /// Takes over the days `other` reduced (other days than this one's).
    pub(super) fn absorb(&mut self, other: DayReducer) {
        debug_assert!(other.streams.is_empty(), "streamed days are closed before they are handed over");
        self.daily.extend(other.daily);
        self.conflicts.extend(other.conflicts);
        self.reread.extend(other.reread);
    }

    /// The general path of one day, in polars: handles repeated keys (last
    /// wins, conflicts) and any number of buckets and snapshots.
    fn reduce_day(&mut self, records: LazyFrame) -> Result<DataFrame, MeterError> {
        let daily_value = match self.opts.daily_method {
            DailyMethod::Mean => money::mean_half_away_expr(col(SUM), col(COUNT).cast(DataType::Int128)),
            DailyMethod::Max => col(SNAPSHOT),
        };
        // Snapshots straight from the records are exact when no (account,
        // bucket, timestamp) occurs twice, i.e. when every snapshot has as
        // many records as distinct buckets; otherwise deduplicate first.
        let snapshots = records
            .clone()
            .group_by([col(col::ACCOUNT_ID), col(col::TS)])
            .agg([
                col(col::BYTES).cast(DataType::Int128).sum().alias(SNAPSHOT),
                len().alias(COUNT),
                col(col::BUCKET).n_unique().alias(VERSIONS),
                col(col::DAY).first().alias(col::DAY),
            ])
            .collect()?;
        let repeated = snapshots.column(COUNT)?.as_materialized_series().cast(&DataType::UInt32)?;
        let repeated = repeated.u32()?.iter().zip(snapshots.column(VERSIONS)?.u32()?.iter()).any(|(n, b)| n != b);
        let snapshots = if repeated { self.deduplicate(records)? } else { snapshots.lazy() };
        Ok(snapshots
            .group_by([col(col::ACCOUNT_ID), col(col::DAY)])
            .agg([col(SNAPSHOT).sum().alias(SUM), len().alias(COUNT), col(SNAPSHOT).max().alias(SNAPSHOT)])
            .select([col(col::ACCOUNT_ID), col(col::DAY), daily_value.alias(col::VALUE)])
            .collect()?)
    }

    /// Exact path for a day with repeated (account, bucket, timestamp) keys:
    /// the record of the object that sorts last wins (within an object, the
    /// later record); keys with differing values are counted as conflicts.
    fn deduplicate(&mut self, records: LazyFrame) -> Result<LazyFrame, MeterError> {
        let seq = (col(col::OBJECT).cast(DataType::UInt64) * lit(1u64 << 32)) + col(col::ROW).cast(DataType::UInt64);
        let deduped = records
            .group_by([col(col::ACCOUNT_ID), col(col::BUCKET), col(col::TS)])
            .agg([
                col(col::BYTES).get(seq.arg_max(), false).alias(col::BYTES),
                col(col::BYTES).n_unique().alias(VERSIONS),
                col(col::DAY).first().alias(col::DAY),
            ])
            .collect()?;
        let conflicts = deduped
            .clone()
            .lazy()
            .filter(col(VERSIONS).gt(lit(1u32)))
            .group_by([col(col::ACCOUNT_ID)])
            .agg([len().cast(DataType::UInt64).alias(COUNT)])
            .collect()?;
        if conflicts.height() > 0 {
            self.conflicts.push(conflicts);
        }
        Ok(deduped
            .lazy()
            .group_by([col(col::ACCOUNT_ID), col(col::TS)])
            .agg([col(col::BYTES).cast(DataType::Int128).sum().alias(SNAPSHOT), col(col::DAY).first().alias(col::DAY)]))
    }

    /// What the month step needs of the reduced days: their daily values
    /// (frames of account id, day, value: `UInt64`, or `Int128` for a day
    /// with a value that does not fit), the conflicting records per account
    /// if any, and the settings.
    pub(super) fn into_days(self) -> Result<(Vec<DataFrame>, Option<DataFrame>, MeterOptions), MeterError> {
        let conflicts = if self.conflicts.is_empty() {
            None
        } else {
            Some(
                concat(self.conflicts.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default())?
                    .group_by([col(col::ACCOUNT_ID)])
                    .agg([col(COUNT).sum()])
                    .collect()?,
            )
        };
        Ok((self.daily, conflicts, self.opts))
    }
}

/// Daily values as `UInt64` when they all fit (they do unless a day's
/// snapshots sum above 2^64 bytes): the month's values are held until the
/// month step, 12 bytes an account day instead of 20 (15 M account days
/// for 500,000 accounts).
fn narrow(daily: DataFrame) -> PolarsResult<DataFrame> {
    let values = daily.column(col::VALUE)?.i128()?;
    let fits = |v: Option<i128>| v.is_none_or(|v| u64::try_from(v).is_ok());
    if values.null_count() > 0 || !fits(values.min()) || !fits(values.max()) {
        return Ok(daily);
    }
    let narrow = values.cast(&DataType::UInt64)?.into_column();
    let mut daily = daily;
    daily.with_column(narrow)?;
    Ok(daily)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::meter::day::{Bail, RUNNING_BUCKETS, Values};
    use crate::meter::tests::{Rec, dir, frame, kinds, meter_recs, month, opts, usage};
    use crate::model::FindingKind;
    use crate::model::Interner;

    #[test]
    fn daily_mean_rounds_half_away_from_zero_and_max_takes_the_largest_snapshot() {
        // Day 0: snapshots 1 and 2 (mean 1.5 → 2). Day 1: 1, 1, 2 (1.33 → 1). Day 2: 1, 2, 2 (1.67 → 2).
        let recs = [
            ("sa", "", 0, 0, 1, 0, 1),
            ("sa", "", 0, 1, 2, 0, 2),
            ("sa", "", 1, 0, 1, 0, 3),
            ("sa", "", 1, 1, 1, 0, 4),
            ("sa", "", 1, 2, 2, 0, 5),
            ("sa", "", 2, 0, 1, 0, 6),
            ("sa", "", 2, 1, 2, 0, 7),
            ("sa", "", 2, 2, 2, 0, 8),
        ];
        let d = dir("sa,C,c,2026-10-01,2026-10-04\n");
        let mean = meter_recs(&recs, &d, DailyMethod::Mean);
        assert_eq!(usage(&mean, "sa"), (2 + 1 + 2, 3, 0));
        let max = meter_recs(&recs, &d, DailyMethod::Max);
        assert_eq!(usage(&max, "sa").0, 2 + 2 + 2);
    }

    #[test]
    fn snapshots_sum_buckets_and_the_last_record_wins() {
        let recs = [
            // Day 0, hour 0: buckets a + b = 10 + 5; object 1 re-issues a = 12 (wins over object 0).
            ("sa", "a", 0, 0, 10, 0, 1),
            ("sa", "b", 0, 0, 5, 0, 2),
            ("sa", "a", 0, 0, 12, 1, 1),
            // Within one object the later record wins: b at hour 1 is 7, not 6.
            ("sa", "b", 0, 1, 6, 1, 2),
            ("sa", "b", 0, 1, 7, 1, 3),
            ("sa", "a", 0, 1, 12, 1, 4),
            // The same value twice is no conflict.
            ("sa", "a", 1, 0, 3, 0, 3),
            ("sa", "a", 1, 0, 3, 1, 5),
        ];
        let d = dir("sa,C,c,2026-10-01,2026-10-03\n");
        let m = meter_recs(&recs, &d, DailyMethod::Mean);
        // Day 0: snapshots 17 and 19, mean 18. Day 1: 3.
        assert_eq!(usage(&m, "sa"), (18 + 3, 2, 0));
        assert!(kinds(&m).contains(&(FindingKind::ConflictingSamples, "sa".into(), "2 conflicting records".into())));
    }

    /// The daily values of one day's records by the single pass and by
    /// polars, sorted by account.
    fn both_paths(recs: &[Rec], method: DailyMethod) -> (Option<DataFrame>, DataFrame) {
        let sort = |df: DataFrame| df.sort([col::ACCOUNT_ID], SortMultipleOptions::default()).unwrap();
        let df = frame(recs, &mut Interner::default());
        let fast = SinglePass::default().reduce(std::slice::from_ref(&df), method).unwrap().map(sort);
        let general = sort(DayReducer::new(opts(method)).reduce_day(df.lazy()).unwrap());
        (fast, general)
    }

    /// `f` with its bucket, timestamp and day columns as scalar columns of
    /// their first value, as ingest keeps a column that repeats one value.
    fn with_scalar_columns(mut f: DataFrame) -> DataFrame {
        let n = f.height();
        for name in [col::BUCKET, col::TS, col::DAY] {
            let value = f.column(name).unwrap().get(0).unwrap().into_static();
            f.with_column(Column::new_scalar(name.into(), Scalar::new(value.dtype(), value), n)).unwrap();
        }
        f
    }

    /// Which kernel takes a day: the running one (`Ok`), the listing one
    /// (`Err(true)`) or none (`Err(false)`).
    fn kernel(recs: &[Rec]) -> Result<(), bool> {
        let mut ids = Interner::default();
        let df = frame(recs, &mut ids);
        let col = |n: &str| df.column(n).unwrap().as_materialized_series().rechunk();
        let (a, b, t, v) = (col(col::ACCOUNT_ID), col(col::BUCKET), col(col::TS), col(col::BYTES));
        let chunk = (
            a.u32().unwrap().cont_slice().unwrap(),
            Values::Each(b.u32().unwrap().cont_slice().unwrap()),
            Values::Each(t.i64().unwrap().cont_slice().unwrap()),
            v.u64().unwrap().cont_slice().unwrap(),
        );
        let mut sp = SinglePass::default();
        match sp.running(&[chunk], ids.len(), DailyMethod::Mean) {
            Ok(_) => Ok(()),
            Err(Bail::General) => Err(false),
            Err(Bail::Order) => Err(sp.listed(&[chunk], ids.len(), DailyMethod::Mean).is_ok()),
        }
    }

    #[test]
    fn the_single_pass_day_defers_repeated_keys_to_the_general_path() {
        let unique = [("sa", "a", 0, 0, 10, 0, 1), ("sa", "b", 0, 0, 5, 0, 2), ("sb", "a", 0, 1, 7, 0, 3)];
        let (fast, general) = both_paths(&unique, DailyMethod::Mean);
        assert!(fast.unwrap().equals(&general));
        assert_eq!(kernel(&unique), Ok(()));
        // Hour 1 before hour 0 of the same account: the listing kernel.
        let unordered = [("sa", "a", 0, 1, 10, 0, 1), ("sa", "a", 0, 0, 5, 0, 2)];
        let (fast, general) = both_paths(&unordered, DailyMethod::Mean);
        assert!(fast.unwrap().equals(&general));
        assert_eq!(kernel(&unordered), Err(true));
        let repeated = [("sa", "a", 0, 0, 10, 0, 1), ("sa", "a", 0, 0, 12, 1, 1)];
        assert!(both_paths(&repeated, DailyMethod::Mean).0.is_none());
        assert_eq!(kernel(&repeated), Err(false));
        // A snapshot above 64 bits is summed exactly by the general path.
        let huge = [("sa", "a", 0, 0, u64::MAX, 0, 1), ("sa", "b", 0, 0, u64::MAX, 0, 2)];
        let (fast, general) = both_paths(&huge, DailyMethod::Mean);
        assert!(fast.is_none());
        assert_eq!(general.column(col::VALUE).unwrap().i128().unwrap().get(0), Some(2 * i128::from(u64::MAX)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// On a day without repeated keys, the single pass equals the polars
        /// path, with records in key order (the listing kernel, mostly) and
        /// in time order (the running kernel, up to four buckets).
        #[test]
        fn single_pass_equals_polars(
            keys in proptest::collection::btree_map((0usize..4, 0usize..6, 0i64..5), 0u64..u64::MAX / 8, 1..60),
            max in proptest::bool::ANY,
        ) {
            let accounts = ["sa", "sb", "sc", "ghost"];
            let buckets = ["", "x", "y", "z", "w", "v"];
            let mut recs: Vec<Rec> = keys
                .iter()
                .enumerate()
                .map(|(i, (&(a, b, h), &v))| (accounts[a], buckets[b], 3, h, v, 0, i as u32))
                .collect();
            let method = if max { DailyMethod::Max } else { DailyMethod::Mean };
            let (fast, general) = both_paths(&recs, method);
            prop_assert!(fast.expect("no repeated keys").equals(&general));
            recs.sort_by_key(|r| r.3);
            let (fast, general) = both_paths(&recs, method);
            prop_assert!(fast.expect("no repeated keys").equals(&general));
            let few_buckets = keys.keys().all(|&(_, b, _)| b < RUNNING_BUCKETS);
            prop_assert!(!few_buckets || kernel(&recs).is_ok());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A day fed frame by frame to the running kernel as it streams in
        /// gives what the single pass gives for the frames held until the
        /// day closes, when the running kernel takes them; when it does not
        /// (hours out of order per account, a repeated key, more than four
        /// buckets), the streamed day gives up too.
        #[test]
        fn a_streamed_day_equals_the_held_day_or_gives_up(
            recs in proptest::collection::vec((0usize..4, 0usize..6, 0i64..4, 0u64..1_000_000), 1..80),
            cuts in proptest::collection::vec(0usize..80, 0..4),
            max in proptest::bool::ANY,
        ) {
            let accounts = ["sa", "sb", "sc", "ghost"];
            let buckets = ["", "x", "y", "z", "w", "v"];
            let recs: Vec<Rec> = recs
                .iter()
                .enumerate()
                .map(|(i, &(a, b, h, v))| (accounts[a], buckets[b], 3, h, v, 0, i as u32))
                .collect();
            let method = if max { DailyMethod::Max } else { DailyMethod::Mean };
            let mut ids = Interner::default();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(recs.len())).chain([0, recs.len()]).collect();
            cuts.sort_unstable();
            let frames: Vec<DataFrame> = cuts.windows(2).map(|w| frame(&recs[w[0]..w[1]], &mut ids)).collect();
            let mut stream = RunningDay::new();
            let mut taken = true;
            for f in &frames {
                taken = taken && stream.feed(f).unwrap();
            }
            let running = kernel(&recs).is_ok();
            prop_assert_eq!(taken, running);
            if running {
                let sort = |df: DataFrame| df.sort([col::ACCOUNT_ID], SortMultipleOptions::default()).unwrap();
                let day = month().first_day() + 3;
                let streamed = stream.finish(day, method).unwrap().expect("a mean that fits");
                let held = SinglePass::default().reduce(&frames, method).unwrap().expect("the running kernel takes it");
                prop_assert!(streamed.equals(&held), "in the order of appearance, as the single pass");
                prop_assert!(sort(streamed).equals(&sort(DayReducer::new(opts(method)).reduce_day(frame(&recs, &mut ids).lazy()).unwrap())));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A day as ingest hands it over: one frame per object, where an
        /// object with one bucket or one timestamp has it as a scalar
        /// column. The single pass reads the frames as they are and equals
        /// the polars path over the same records stacked.
        #[test]
        fn single_pass_reads_scalar_columns_as_their_value(
            objects in proptest::collection::btree_map(
                (0usize..3, 0i64..4),
                (proptest::collection::btree_map(0usize..5, 0u64..1_000_000, 1..5), proptest::bool::ANY),
                1..6,
            ),
            max in proptest::bool::ANY,
        ) {
            let accounts = ["sa", "sb", "sc", "sd", "se"];
            let buckets = ["", "x", "y"];
            let mut ids = Interner::default();
            let mut all = Vec::new();
            let mut frames = Vec::new();
            for (o, (&(b, h), (values, scalar))) in objects.iter().enumerate() {
                let recs: Vec<Rec> = values.iter().map(|(&a, &v)| (accounts[a], buckets[b], 3, h, v, o as u32, a as u32)).collect();
                let f = frame(&recs, &mut ids);
                frames.push(if *scalar { with_scalar_columns(f) } else { f });
                all.extend(recs);
            }
            let method = if max { DailyMethod::Max } else { DailyMethod::Mean };
            let sort = |df: DataFrame| df.sort([col::ACCOUNT_ID], SortMultipleOptions::default()).unwrap();
            let fast = SinglePass::default().reduce(&frames, method).unwrap().map(sort);
            let general = sort(DayReducer::new(opts(method)).reduce_day(frame(&all, &mut ids).lazy()).unwrap());
            prop_assert!(fast.expect("no repeated keys").equals(&general));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A day of a daily export read in several objects: every frame has
        /// the one bucket and the one timestamp as scalar columns, and the
        /// one-snapshot kernel takes it. It equals the polars path; an
        /// account in two objects repeats a key and is left to that path.
        #[test]
        fn one_snapshot_days_equal_polars_and_defer_repeated_accounts(
            objects in proptest::collection::vec(proptest::collection::btree_map(0usize..8, 0u64..u64::MAX / 2, 1..6), 1..5),
            max in proptest::bool::ANY,
        ) {
            let accounts = ["sa", "sb", "sc", "sd", "se", "sf", "sg", "sh"];
            let mut ids = Interner::default();
            let (mut all, mut frames) = (Vec::new(), Vec::new());
            for (o, values) in objects.iter().enumerate() {
                let recs: Vec<Rec> = values.iter().map(|(&a, &v)| (accounts[a], "", 3, 0, v, o as u32, a as u32)).collect();
                frames.push(with_scalar_columns(frame(&recs, &mut ids)));
                all.extend(recs);
            }
            let mut sp = SinglePass::default();
            let chunks: Vec<_> = frames.iter().map(|f| {
                let (a, b) = (f.column(col::ACCOUNT_ID).unwrap().u32().unwrap(), f.column(col::BYTES).unwrap().u64().unwrap());
                (a.cont_slice().unwrap(), Values::Same(0), Values::Same(0), b.cont_slice().unwrap())
            }).collect();
            prop_assert!(sp.one_snapshot(&chunks, ids.len()).is_some(), "the kernel takes a day of one bucket and timestamp");
            let method = if max { DailyMethod::Max } else { DailyMethod::Mean };
            let sort = |df: DataFrame| df.sort([col::ACCOUNT_ID], SortMultipleOptions::default()).unwrap();
            let fast = SinglePass::default().reduce(&frames, method).unwrap().map(sort);
            let repeated = all.len() > all.iter().map(|r| r.0).collect::<std::collections::BTreeSet<_>>().len();
            prop_assert_eq!(fast.is_none(), repeated);
            if let Some(fast) = fast {
                let general = sort(DayReducer::new(opts(method)).reduce_day(frame(&all, &mut ids).lazy()).unwrap());
                prop_assert!(fast.equals(&general));
            }
        }
    }
}
