//! The month step: from the daily values of every day to what metering
//! hands on. [`finish_month`] applies the account windows, tallies the
//! account days in runs of days on all cores ([`Tally`]), has the accounts
//! not observed on exactly their window's days filled ([`fill_gaps`]), and
//! builds the outputs. It orchestrates: the reductions, the fill, the tally
//! and the output frames live in their own modules. Which days are set
//! apart per owner is the caller's (`set_apart`); this module must not
//! decide it, nor know prices or contracts.

use polars::prelude::*;

use super::fill::{WIN_END, WIN_START, accounts_frame, fill_gaps};
use super::output::{account_outputs, conflict_findings, per_account_frame};
use super::tally::{Owners, Tally, complete_mask};
use super::{DailyUsage, EntityUsage, MeterError, MeterOptions, Metered, Uncontracted};
use crate::directory::{Directory, EntityIdx};
use crate::model::{Day, Interner, col};

/// The month step: `daily` holds the daily values of the days (frames of
/// account id, day, value), each (account, day) at most once; `conflicts`
/// the conflicting keys per account; `set_apart` one mask of days per
/// entity, as in [`super::DayMeter::finish`].
pub(super) fn finish_month(
    daily: Vec<DataFrame>,
    conflicts: Option<DataFrame>,
    dir: &Directory,
    mut accounts: Interner,
    set_apart: &[u32],
    opts: MeterOptions,
) -> Result<Metered, MeterError> {
    let t = std::time::Instant::now();
    let month = opts.month;
    let first = month.first_day();
    let end = month.end_day();

    // 4. Windows of known accounts within the month, while another thread
    // counts each account's days and their range, in one pass by id. The
    // ids of the records are all interned already: the directory's
    // accounts without records come after them.
    let recorded = accounts.len();
    let (known, seen) = std::thread::scope(|scope| {
        let seen = scope.spawn(|| {
            let mut seen: Vec<(u32, Day, Day)> = vec![(0, Day::MAX, Day::MIN); recorded];
            for df in &daily {
                let ids = df.column(col::ACCOUNT_ID)?.u32()?.into_no_null_iter();
                for (id, day) in ids.zip(df.column(col::DAY)?.i32()?.into_no_null_iter()) {
                    let s = &mut seen[id as usize];
                    *s = (s.0 + 1, s.1.min(day), s.2.max(day));
                }
            }
            PolarsResult::Ok(seen)
        });
        let known = accounts_frame(dir, &mut accounts, first, end);
        (known, seen.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    let (known, mut seen) = (known?, seen?);
    seen.resize(accounts.len(), (0, Day::MAX, Day::MIN));
    let mut window: Vec<Option<(Day, Day)>> = vec![None; accounts.len()];
    let mut owner_of: Vec<Option<u32>> = vec![None; accounts.len()];
    // The directory's account of each id (the rows of `known` are in directory order).
    let mut listed: Vec<Option<u32>> = vec![None; accounts.len()];
    {
        let ids = known.column(col::ACCOUNT_ID)?.u32()?.into_no_null_iter();
        let owners = known.column(col::OWNER_IDX)?.u32()?.into_no_null_iter();
        let starts = known.column(WIN_START)?.i32()?.into_no_null_iter();
        let ends = known.column(WIN_END)?.i32()?.into_no_null_iter();
        for ((((row, id), owner), start), end) in (0..).zip(ids).zip(owners).zip(starts).zip(ends) {
            window[id as usize] = Some((start, end));
            owner_of[id as usize] = Some(owner);
            listed[id as usize] = Some(row);
        }
    }

    // Accounts observed on exactly the days of their window (most of them)
    // need no fill: their daily values are their account days. Only the
    // others go through the join with the window's days and the fill.
    let complete: Vec<bool> = seen
        .iter()
        .zip(&window)
        .map(|(&(n, lo, hi), w)| w.is_some_and(|(start, end)| n as i32 == end - start && lo >= start && hi < end))
        .collect();
    drop(seen);

    // 5. The days, one run of days per thread: the rows of complete accounts
    // are tallied (see [`Tally`]), the others put aside to be filled. Entity
    // sums are kept day-major in flat arrays, so that each run adds to its
    // own rows of them.
    let days = month.days() as usize;
    let entities = dir.entities.len();
    let mut entity_bytes = vec![0; days * entities];
    let mut entity_active = vec![false; days * entities];
    let n = accounts.len();
    let mut daily_usage = DailyUsage::new(first, days, n);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, days);
    let per_run = days.div_ceil(threads);
    let mut runs: Vec<Vec<DataFrame>> = (0..days.div_ceil(per_run)).map(|_| Vec::new()).collect();
    // A frame holds one day as the reducers make them; one that spans runs
    // (none does) is tallied after the runs, on all the days.
    let mut spanning = Vec::new();
    for df in daily {
        let day = df.column(col::DAY)?.i32()?;
        let run = |d: Option<Day>| d.and_then(|d| usize::try_from(d - first).ok()).map(|i| i / per_run);
        match (run(day.min()), run(day.max())) {
            (Some(a), Some(b)) if a == b && a < runs.len() => runs[a].push(df),
            _ => spanning.push(df),
        }
    }
    let owners = Owners { of: &owner_of, set_apart, month_first: first };
    let complete = &complete;
    let ran = std::thread::scope(|scope| {
        let jobs: Vec<_> = runs
            .into_iter()
            .zip(entity_bytes.chunks_mut(per_run * entities).zip(entity_active.chunks_mut(per_run * entities)))
            .zip(daily_usage.cells().chunks_mut(per_run * n.max(1)))
            .enumerate()
            .map(|(r, ((frames, (entity_bytes, entity_active)), values))| {
                scope.spawn(move || {
                    let run_first = first + (r * per_run) as Day;
                    let mut tally = Tally::new(owners, run_first, entities, n, entity_bytes, entity_active, values);
                    let mut rest = Vec::new();
                    tally.add_days(frames, complete, &mut rest)?;
                    PolarsResult::Ok((rest, tally.totals, tally.rows, tally.wide))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect::<Vec<_>>()
    });
    let mut wide = Vec::new();
    let mut tally = Tally::new(owners, first, entities, n, &mut entity_bytes, &mut entity_active, daily_usage.cells());
    let mut rest = Vec::new();
    for run in ran {
        let (r, totals, rows, w) = run?;
        rest.extend(r);
        tally.totals.iter_mut().zip(totals).for_each(|(t, u)| t.merge(u));
        tally.rows += rows;
        wide.extend(w);
    }
    tally.add_days(spanning, complete, &mut rest)?;
    let incomplete = known.filter(&!complete_mask(&known, complete)?)?;
    let filled = fill_gaps(rest, incomplete, first)?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "account days filled");
    tally.add(&filled, Some((filled.column(col::OBSERVED)?.bool()?, filled.column(col::FILLED)?.bool()?)))?;
    wide.append(&mut tally.wide);
    let (totals, account_days) = (tally.totals, tally.rows);
    daily_usage.merge_wide(wide);
    let entity_days = EntityUsage::from_day_major(entities, days, &entity_bytes, &entity_active);
    drop((entity_bytes, entity_active));
    let set_apart_usage = (0..totals.len())
        .filter(|&id| totals[id].set_apart_days > 0)
        .map(|id| Uncontracted {
            account: id as u32,
            owner: owner_of[id].expect("set-apart days are an owner's") as EntityIdx,
            byte_days: totals[id].set_apart_byte_days,
            days: totals[id].set_apart_days,
        })
        .collect();

    // Per account: the account_usage output and the account findings, in
    // the order of the accounts' names.
    let per_account = per_account_frame(&totals, &accounts, &listed, dir)?;
    let (account_usage, mut findings) = account_outputs(&per_account, month, opts.unit)?;
    tracing::debug!(elapsed_ms = t.elapsed().as_millis() as u64, "account usage built");
    if let Some(c) = &conflicts {
        findings.extend(conflict_findings(c, &accounts)?);
    }
    Ok(Metered {
        account_days,
        accounts,
        account_usage,
        entity_days,
        daily_usage,
        uncontracted: set_apart_usage,
        findings,
        spilled_bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use crate::meter::tests::{dir, frame, kinds, meter_recs, opts, usage};
    use crate::meter::{Uncontracted, meter};
    use crate::model::{DailyMethod, FindingKind, Interner};

    #[test]
    fn snapshot_days_outside_the_window_count_and_empty_windows_are_reported() {
        // Created on Oct 10, but a snapshot on Oct 8: that day counts too.
        let recs = [("sa", "", 7, 0, 50, 0, 1), ("sa", "", 9, 0, 70, 0, 2), ("ghost", "", 0, 0, 9, 0, 3)];
        let d = dir("sa,C,c,2026-10-10,2026-10-12\nidle,C,c,,\n");
        let m = meter_recs(&recs, &d, DailyMethod::Mean);
        // Oct 8 (50), Oct 10 (70), Oct 11 filled (70).
        assert_eq!(usage(&m, "sa"), (50 + 70 + 70, 2, 1));
        assert_eq!(usage(&m, "idle"), (0, 0, 0));
        let k = kinds(&m);
        assert!(k.iter().any(|f| f.0 == FindingKind::NoUsageData && f.1 == "idle"), "{k:?}");
        let ghost = m.findings.iter().find(|f| f.kind == FindingKind::UnknownStorageAccount).unwrap();
        assert_eq!((ghost.subject_id.as_str(), ghost.byte_days), ("ghost", Some(9)));
        // Rating sees the owner's active days: Oct 8, 10, 11 for sa (idle counts 0 on all days).
        let c = d.entity("c").unwrap();
        let active: Vec<usize> = m.entity_days.get(c).unwrap().active_days(0, 31).collect();
        assert_eq!(active.len(), 31);
        assert_eq!(m.entity_days.get(c).unwrap().byte_days(0, 31), 190);
    }

    #[test]
    fn only_the_days_asked_for_are_tallied_apart() {
        // sa observed on days 0 (7 bytes) and 3 (9 bytes), filled on the
        // others; gh has no owner the directory knows.
        let recs = [("sa", "", 0, 0, 7, 0, 1), ("sa", "", 3, 0, 9, 0, 2), ("gh", "", 1, 0, 5, 0, 3)];
        let d = dir("sa,C,c,,\n");
        let c = d.entity("c").unwrap();
        let run = |set_apart: &[u32]| {
            let mut ids = Interner::seeded(d.accounts.iter().map(|a| a.id.as_str()));
            let records = frame(&recs, &mut ids);
            meter(records, &d, ids, set_apart, opts(DailyMethod::Mean)).unwrap()
        };
        let none = run(&vec![0; d.entities.len()]);
        assert!(none.uncontracted.is_empty());
        // Days 1 (filled) and 3 (observed) of c, and every day of the other
        // entities, which own no account with usage.
        let mut set_apart = vec![u32::MAX; d.entities.len()];
        set_apart[c] = 1 << 1 | 1 << 3;
        let some = run(&set_apart);
        let sa = some.accounts.get("sa").unwrap();
        assert_eq!(some.uncontracted, [Uncontracted { account: sa, owner: c, byte_days: 7 + 9, days: 2 }]);
        // The rest of metering does not depend on the masks.
        assert!(none.account_usage.equals_missing(&some.account_usage));
        assert_eq!(kinds(&none), kinds(&some));
        assert_eq!(none.entity_days, some.entity_days);
    }

    #[test]
    fn daily_usage_holds_each_counted_account_day_and_adds_up_to_account_usage() {
        // sa: Oct 8 (50), Oct 10 (70), Oct 11 filled (70); idle: every day 0;
        // wide: two buckets of 2^64 - 1 bytes on Oct 1 and one byte on Oct 2,
        // in its window of Oct 1-2.
        let recs = [
            ("sa", "", 7, 0, 50, 0, 1),
            ("sa", "", 9, 0, 70, 0, 2),
            ("wide", "a", 0, 0, u64::MAX, 0, 3),
            ("wide", "b", 0, 0, u64::MAX, 0, 4),
            ("wide", "a", 1, 0, 1, 0, 5),
        ];
        let d = dir("sa,C,c,2026-10-10,2026-10-12\nidle,C,c,,\nwide,C,c,,2026-10-03\n");
        let m = meter_recs(&recs, &d, DailyMethod::Mean);
        let du = &m.daily_usage;
        let days = |name: &str| -> Vec<Option<i128>> {
            let id = m.accounts.get(name).unwrap();
            (0..31).map(|day| du.get(id, day)).collect()
        };
        let mut sa = vec![None; 31];
        (sa[7], sa[9], sa[10]) = (Some(50), Some(70), Some(70));
        assert_eq!(days("sa"), sa);
        assert_eq!(days("idle"), vec![Some(0); 31]);
        let mut wide = vec![None; 31];
        (wide[0], wide[1]) = (Some(2 * i128::from(u64::MAX)), Some(1));
        assert_eq!(days("wide"), wide);
        // The frame: one row per counted account day, and per account the
        // byte-days of account_usage.
        let frame = du.frame(&m.accounts).unwrap();
        assert_eq!(frame.height(), 3 + 31 + 2);
        for name in ["sa", "idle", "wide"] {
            let sum: i128 = days(name).into_iter().flatten().sum();
            assert_eq!(sum, usage(&m, name).0, "{name}");
        }
        let first = frame.column("day").unwrap().cast(&polars::prelude::DataType::Int32).unwrap();
        assert_eq!(
            first.i32().unwrap().get(0),
            Some(crate::model::day_of(chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap()))
        );
    }
}
