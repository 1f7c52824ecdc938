//! The single-pass reductions of one metering day: from a day's records
//! (account and bucket ids, timestamps, bytes) to one daily value per
//! account, without a group-by.
//!
//! The one-snapshot kernel handles a day of one bucket and one timestamp
//! (a daily export), the running kernel records whose timestamps do not go
//! back within an account (as exports are written), the listing kernel any
//! order; all give up on what only the general polars path (in `reduce`)
//! can do (repeated keys, sums above 64 bits). State is indexed by
//! account id and reused from day to day. [`RunningDay`] runs the running
//! kernel over a day handed over frame by frame, for days too large to
//! hold until they close.

use polars::prelude::*;

use crate::model::{DailyMethod, col};
use crate::money;

/// Why a single-pass kernel gave up on a day.
pub(super) enum Bail {
    /// An account's timestamps are not in order, it has more buckets than
    /// the running kernel tracks, or its closed snapshots total more than
    /// 2^64 bytes: the listing kernel can do the day.
    Order,
    /// A repeated (account, bucket, timestamp) key or an overflow: only the
    /// polars path can.
    General,
}

/// The running state of one account in one day for records whose
/// timestamps arrive in order: the open snapshot, and the sum, maximum and
/// count of the closed ones. Small, flat and one cache line each, so that a
/// day's pass over hundreds of thousands of accounts moves as little memory
/// as it can (a pass over 500,000 accounts is bound by memory, not by the
/// arithmetic).
#[derive(Default, Clone, Copy)]
#[repr(C, align(64))]
struct Running {
    /// The day ([`SinglePass::generation`]) the state belongs to; older state is stale.
    generation: u32,
    /// Closed snapshots: how many.
    closed: u32,
    /// Bucket ids seen (the bit index of `bits`): the first `nbuckets` of `buckets`.
    buckets: [u32; RUNNING_BUCKETS],
    nbuckets: u8,
    /// The buckets the open snapshot has, one bit each.
    bits: u8,
    /// The open snapshot: its timestamp and sum.
    ts: i64,
    sum: u64,
    /// Closed snapshots: their total (a total above 2^64 bytes is left to
    /// the listing kernel, which sums in 128 bits) and their largest.
    total: u64,
    max: u64,
}

const _: () = assert!(size_of::<Running>() == 64);

/// Buckets per account and day the running kernel tracks.
pub(super) const RUNNING_BUCKETS: usize = 4;

/// Snapshots of one account in one day, for records in any order. The
/// vectors are reused from day to day.
#[derive(Default)]
struct AccountDay {
    /// The day ([`SinglePass::generation`]) the state belongs to; older state is stale.
    generation: u32,
    /// Bucket ids seen (the bit index of `Snapshot::buckets`).
    buckets: Vec<u32>,
    /// One entry per distinct timestamp.
    snapshots: Vec<Snapshot>,
    /// Index of the snapshot the previous record went to (records mostly
    /// arrive in runs of one timestamp).
    last: usize,
    /// Latest timestamp seen: a later one is a new snapshot, found without a search.
    latest: i64,
}

struct Snapshot {
    ts: i64,
    sum: u64,
    /// Buckets seen at this timestamp, one bit each.
    buckets: u64,
}

/// Most buckets or snapshots per account and day the listing kernel
/// handles; beyond them, the polars path meters the day.
const MAX_BUCKETS: usize = 64;
const MAX_SNAPSHOTS: usize = 256;

/// One chunk of a day's records: account ids, bucket ids, timestamps, bytes.
type Columns<'a> = (&'a [u32], Values<'a, u32>, Values<'a, i64>, &'a [u64]);

/// A column of one chunk as the kernels read it: a value per record, or one
/// value for all of them. Ingest keeps a column that repeats one value in an
/// object (the bucket of an account-level export, the timestamp of a daily
/// one) as a polars scalar column; reading it as such spares writing out the
/// value for every record of the day.
#[derive(Clone, Copy)]
pub(super) enum Values<'a, T> {
    Each(&'a [T]),
    Same(T),
}

impl<T: Copy> Values<'_, T> {
    #[inline(always)]
    fn at(self, i: usize) -> T {
        match self {
            Values::Each(v) => v[i],
            Values::Same(v) => v,
        }
    }
}

/// The chunks of `ca` (without nulls) as slices of the lengths `lens`: its
/// own chunks if they have those lengths, else slices of a contiguous copy
/// kept in `held`.
fn aligned<'a, T: PolarsNumericType>(
    ca: &'a ChunkedArray<T>,
    lens: &[usize],
    held: &'a mut Option<ChunkedArray<T>>,
) -> Vec<&'a [T::Native]> {
    if ca.chunks().iter().map(|c| c.len()).eq(lens.iter().copied()) {
        return ca.downcast_iter().map(|c| c.values().as_slice()).collect();
    }
    let all = held.insert(ca.rechunk().into_owned()).cont_slice().expect("one chunk without nulls");
    let mut from = 0;
    lens.iter()
        .map(|&n| {
            from += n;
            &all[from - n..from]
        })
        .collect()
}

/// The column `c` of a frame cut like its account column (chunks of the
/// lengths `lens`): one repeated value if it is a scalar column, else its
/// values. `None` if it has a null.
fn values<'a, T>(
    c: &'a Column,
    lens: &[usize],
    held: &'a mut Option<ChunkedArray<T>>,
) -> PolarsResult<Option<Vec<Values<'a, T::Native>>>>
where
    T: PolarsNumericType,
{
    if let Some(s) = c.as_scalar_column() {
        return Ok(s.scalar().value().extract::<T::Native>().map(|v| vec![Values::Same(v); lens.len()]));
    }
    let ca: &ChunkedArray<T> = c.as_materialized_series().unpack::<T>()?;
    if ca.null_count() > 0 {
        return Ok(None);
    }
    Ok(Some(aligned(ca, lens, held).into_iter().map(Values::Each).collect()))
}

/// Copies of columns chunked unlike their frame's account column.
type Held = (Option<UInt32Chunked>, Option<Int64Chunked>, Option<UInt64Chunked>);

/// The chunks of one frame of a day's records, `None` if a value is null.
/// Columns chunked like the account column are not copied; a scalar bucket
/// or timestamp column is read as its one value. (Account and bytes columns
/// are never scalar as ingest builds them; if one were, it is written out.)
fn frame_chunks<'a>(df: &'a DataFrame, held: &'a mut Held) -> PolarsResult<Option<Vec<Columns<'a>>>> {
    let (account, bytes) = (df.column(col::ACCOUNT_ID)?.u32()?, df.column(col::BYTES)?.u64()?);
    if account.null_count() + bytes.null_count() > 0 {
        return Ok(None);
    }
    let lens: Vec<usize> = account.chunks().iter().map(|c| c.len()).collect();
    let (held_bucket, held_ts, held_bytes) = held;
    let (Some(buckets), Some(times)) =
        (values(df.column(col::BUCKET)?, &lens, held_bucket)?, values(df.column(col::TS)?, &lens, held_ts)?)
    else {
        return Ok(None);
    };
    let bytes = aligned(bytes, &lens, held_bytes);
    Ok(Some(
        account
            .downcast_iter()
            .map(|a| a.values().as_slice())
            .zip(buckets)
            .zip(times)
            .zip(bytes)
            .map(|(((a, b), t), v)| (a, b, t, v))
            .collect(),
    ))
}

/// The single-pass day reductions: per-account state indexed by account id.
#[derive(Default)]
pub(super) struct SinglePass {
    running: Vec<Running>,
    listed: Vec<AccountDay>,
    /// The generation in which each account last had a record (the one-snapshot kernel).
    seen: Vec<u32>,
    /// Accounts with records in the current day, in order of appearance.
    touched: Vec<u32>,
    generation: u32,
}

impl SinglePass {
    /// The daily values of one day (its records in `frames`, one per object)
    /// in a single pass over the records, or `None` when the day needs the
    /// general path: some (account, bucket, timestamp) occurs twice (last
    /// wins applies), or an account has more than [`MAX_BUCKETS`] buckets or
    /// [`MAX_SNAPSHOTS`] snapshots that day, or a snapshot's sum does not fit
    /// in 64 bits.
    ///
    /// This is the hot loop of a large month: a group-by over (account,
    /// timestamp) in polars costs several times more, because it hashes every
    /// record's key into a table of about a million groups, where here each
    /// record indexes its account's state by id. Days of one bucket and one
    /// timestamp (daily exports) take the one-snapshot kernel, days whose
    /// records come in time order per account (as exports are written) the
    /// running kernel, the others the listing one. The result is the frame the
    /// polars path produces, up to row order; property tests hold them equal.
    ///
    /// The frames are read as they are, not stacked: stacking would write
    /// out every scalar column.
    pub(super) fn reduce(&mut self, frames: &[DataFrame], method: DailyMethod) -> PolarsResult<Option<DataFrame>> {
        let Some(first) = frames.iter().find(|f| f.height() > 0) else { return Ok(None) };
        let Some(day) = first.column(col::DAY)?.get(0)?.extract::<i32>() else { return Ok(None) };
        let mut held: Vec<Held> = frames.iter().map(|_| Held::default()).collect();
        let mut chunks: Vec<Columns> = Vec::new();
        let mut accounts = 0;
        for (df, held) in frames.iter().zip(held.iter_mut()) {
            let Some(of_frame) = frame_chunks(df, held)? else { return Ok(None) };
            accounts = accounts.max(df.column(col::ACCOUNT_ID)?.u32()?.max().map_or(0, |m| m as usize + 1));
            chunks.extend(of_frame);
        }
        let values =
            match self.one_snapshot(&chunks, accounts).unwrap_or_else(|| self.running(&chunks, accounts, method)) {
                Ok(values) => values,
                Err(Bail::Order) => match self.listed(&chunks, accounts, method) {
                    Ok(values) => values,
                    Err(_) => return Ok(None),
                },
                Err(Bail::General) => return Ok(None),
            };
        daily_frame(day, self.touched.clone(), values).map(Some)
    }

    /// Starts a day: fresh generation, no account touched.
    fn start(&mut self) -> u32 {
        self.generation += 1;
        self.touched.clear();
        self.generation
    }

    /// The one-snapshot kernel, for a day whose records all carry one
    /// bucket and one timestamp (a daily export without buckets): each
    /// account's daily value is the bytes of its one record, by either
    /// method. An account with a second record repeats a key, which only
    /// the general path handles. `None` if the records are not of that
    /// kind. Its state is one generation per account, not a [`Running`].
    pub(super) fn one_snapshot(&mut self, chunks: &[Columns], accounts: usize) -> Option<Result<Vec<i128>, Bail>> {
        let &(_, Values::Same(bucket), Values::Same(ts), _) = chunks.first()? else { return None };
        if !chunks
            .iter()
            .all(|&(_, b, t, _)| matches!((b, t), (Values::Same(b), Values::Same(t)) if b == bucket && t == ts))
        {
            return None;
        }
        if accounts > self.seen.len() {
            self.seen.resize(accounts, 0);
        }
        let generation = self.start();
        let mut values = Vec::with_capacity(chunks.iter().map(|c| c.0.len()).sum());
        for &(account, _, _, bytes) in chunks {
            for (&a, &v) in account.iter().zip(bytes) {
                let seen = &mut self.seen[a as usize];
                if *seen == generation {
                    return Some(Err(Bail::General)); // a repeated key: last wins applies
                }
                *seen = generation;
                self.touched.push(a);
                values.push(i128::from(v));
            }
        }
        Some(Ok(values))
    }

    /// The running kernel: one flat state per account, for records whose
    /// timestamps do not go back within an account.
    pub(super) fn running(
        &mut self,
        chunks: &[Columns],
        accounts: usize,
        method: DailyMethod,
    ) -> Result<Vec<i128>, Bail> {
        if accounts > self.running.len() {
            self.running.resize(accounts, Running::default());
        }
        let generation = self.start();
        run(&mut self.running, &mut self.touched, generation, chunks)?;
        running_values(&self.running, &self.touched, method)
    }

    /// The listing kernel: every distinct timestamp of an account kept, for
    /// records in any order.
    pub(super) fn listed(
        &mut self,
        chunks: &[Columns],
        accounts: usize,
        method: DailyMethod,
    ) -> Result<Vec<i128>, Bail> {
        if accounts > self.listed.len() {
            self.listed.resize_with(accounts, AccountDay::default);
        }
        let generation = self.start();
        for &(account, bucket, ts, bytes) in chunks {
            for i in 0..account.len() {
                let (a, b, t, v) = (account[i], bucket.at(i), ts.at(i), bytes[i]);
                let acc = &mut self.listed[a as usize];
                if acc.generation != generation {
                    acc.generation = generation;
                    acc.buckets.clear();
                    acc.snapshots.clear();
                    acc.last = 0;
                    acc.latest = i64::MIN;
                    self.touched.push(a);
                }
                let bit = match acc.buckets.iter().position(|x| *x == b) {
                    Some(p) => p,
                    None if acc.buckets.len() < MAX_BUCKETS => {
                        acc.buckets.push(b);
                        acc.buckets.len() - 1
                    }
                    None => return Err(Bail::General),
                };
                let known = if acc.snapshots.is_empty() || t > acc.latest {
                    None
                } else if acc.snapshots[acc.last].ts == t {
                    Some(acc.last)
                } else {
                    acc.snapshots.iter().position(|s| s.ts == t)
                };
                let slot = match known {
                    Some(p) => p,
                    None if acc.snapshots.len() < MAX_SNAPSHOTS => {
                        acc.snapshots.push(Snapshot { ts: t, sum: 0, buckets: 0 });
                        acc.latest = acc.latest.max(t);
                        acc.snapshots.len() - 1
                    }
                    None => return Err(Bail::General),
                };
                acc.last = slot;
                let snap = &mut acc.snapshots[slot];
                if snap.buckets & (1 << bit) != 0 {
                    return Err(Bail::General); // a repeated key: last wins needs the general path
                }
                snap.buckets |= 1 << bit;
                // Overflow of 64 bits (exabytes in one snapshot): the general path sums in 128.
                snap.sum = snap.sum.checked_add(v).ok_or(Bail::General)?;
            }
        }
        self.touched
            .iter()
            .map(|&a| {
                let d = &self.listed[a as usize];
                let sums = d.snapshots.iter().map(|s| i128::from(s.sum));
                match method {
                    DailyMethod::Mean => {
                        money::div_half_away(sums.sum(), d.snapshots.len() as i128).map_err(|_| Bail::General)
                    }
                    DailyMethod::Max => Ok(sums.max().unwrap_or(0)),
                }
            })
            .collect()
    }
}

/// The running kernel's pass over chunks of one day: each record updates
/// its account's state of `generation` (a state of another generation is
/// stale and starts afresh, and its account is added to `touched`).
/// `states` holds a state for every account id of the chunks.
fn run(states: &mut [Running], touched: &mut Vec<u32>, generation: u32, chunks: &[Columns]) -> Result<(), Bail> {
    for &(account, bucket, ts, bytes) in chunks {
        for i in 0..account.len() {
            let (a, b, t, v) = (account[i], bucket.at(i), ts.at(i), bytes[i]);
            let r = &mut states[a as usize];
            if r.generation != generation {
                *r = Running { generation, ts: t, ..Running::default() };
                touched.push(a);
            }
            let n = r.nbuckets as usize;
            let bit = match r.buckets[..n].iter().position(|x| *x == b) {
                Some(p) => p,
                None if n < RUNNING_BUCKETS => {
                    r.buckets[n] = b;
                    r.nbuckets += 1;
                    n
                }
                None => return Err(Bail::Order),
            };
            if t == r.ts {
                if r.bits & (1 << bit) != 0 {
                    return Err(Bail::General); // a repeated key: last wins applies
                }
                r.bits |= 1 << bit;
                r.sum = r.sum.checked_add(v).ok_or(Bail::General)?;
            } else if t > r.ts {
                r.total = r.total.checked_add(r.sum).ok_or(Bail::Order)?;
                r.max = r.max.max(r.sum);
                r.closed += 1;
                (r.ts, r.sum, r.bits) = (t, v, 1 << bit);
            } else {
                return Err(Bail::Order);
            }
        }
    }
    Ok(())
}

/// The daily values of the `touched` accounts' running states, in that
/// order. A mean that does not fit (never for real sizes) takes the
/// general path.
fn running_values(states: &[Running], touched: &[u32], method: DailyMethod) -> Result<Vec<i128>, Bail> {
    touched
        .iter()
        .map(|&a| {
            let r = &states[a as usize];
            match method {
                DailyMethod::Mean => {
                    let total = i128::from(r.total) + i128::from(r.sum);
                    money::div_half_away(total, i128::from(r.closed) + 1).map_err(|_| Bail::General)
                }
                DailyMethod::Max => Ok(i128::from(r.max.max(r.sum))),
            }
        })
        .collect()
}

/// The frame of one day's daily values: `touched` accounts and their values.
fn daily_frame(day: i32, touched: Vec<u32>, values: Vec<i128>) -> PolarsResult<DataFrame> {
    let n = touched.len();
    DataFrame::new(
        n,
        vec![
            Series::from_vec(col::ACCOUNT_ID.into(), touched).into_column(),
            Column::new_scalar(col::DAY.into(), Scalar::from(day), n),
            Int128Chunked::from_vec(col::VALUE.into(), values).into_series().into_column(),
        ],
    )
}

/// The running kernel over a day whose records are handed over frame by
/// frame as they are read, instead of held until the day closes: a day too
/// large for memory is reduced as it streams in. The result is the one
/// [`SinglePass::reduce`] gives for the same frames in the same order
/// (property tests hold them equal). When the records are not of the
/// running kernel's kind (an account's timestamps go back, a key repeats,
/// more than [`RUNNING_BUCKETS`] buckets, a null), the frames already taken
/// are gone: the day's records must be read again and reduced the usual way.
pub(super) struct RunningDay {
    states: Vec<Running>,
    touched: Vec<u32>,
}

impl RunningDay {
    /// A day without records yet.
    pub(super) fn new() -> Self {
        RunningDay { states: Vec::new(), touched: Vec::new() }
    }

    /// Takes one frame of the day's records (the columns of
    /// [`crate::ingest::record_columns`]), after those taken before;
    /// `Ok(false)` when the records are not of the running kernel's kind.
    pub(super) fn feed(&mut self, frame: &DataFrame) -> PolarsResult<bool> {
        let mut held = Held::default();
        let Some(chunks) = frame_chunks(frame, &mut held)? else { return Ok(false) };
        let accounts = frame.column(col::ACCOUNT_ID)?.u32()?.max().map_or(0, |m| m as usize + 1);
        if accounts > self.states.len() {
            self.states.resize(accounts, Running::default());
        }
        Ok(run(&mut self.states, &mut self.touched, 1, &chunks).is_ok())
    }

    /// Bytes of state held: one [`Running`] per account id up to the
    /// largest seen, and the accounts touched.
    pub(super) fn bytes(&self) -> u64 {
        (self.states.capacity() * size_of::<Running>() + self.touched.capacity() * size_of::<u32>()) as u64
    }

    /// The day's daily values, as [`SinglePass::reduce`] makes them; `None`
    /// if a mean does not fit (the general path's case).
    pub(super) fn finish(self, day: i32, method: DailyMethod) -> PolarsResult<Option<DataFrame>> {
        match running_values(&self.states, &self.touched, method) {
            Ok(values) => daily_frame(day, self.touched, values).map(Some),
            Err(_) => Ok(None),
        }
    }
}
