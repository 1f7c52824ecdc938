//! Criterion micro-benchmarks of the hot stages: metering one day (last
//! wins, snapshots, daily values, then the month's windows and fill) and a
//! whole month day by day, on synthetic frames built in memory.
//!
//! `cargo bench --bench stages` (or `scripts/bench --micro`).

use bytes::Bytes;
use capbill::directory::{Directory, parse_tables};
use capbill::meter::{self, DayMeter, MeterOptions};
use capbill::model::{BillingMonth, DailyMethod, Interner, Unit, col};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use polars::prelude::*;

const US_PER_DAY: i64 = 86_400_000_000;

fn month() -> BillingMonth {
    "2026-10".parse().unwrap()
}

/// A directory of `accounts` storage accounts under one pay-per-use customer chain.
fn directory(accounts: usize) -> Directory {
    let mut sa = String::from("storage_account_id,company_name,owner_id,created_on,deleted_on\n");
    for i in 0..accounts {
        sa.push_str(&format!("sa-{i:07},Company,c{},,\n", i % 100));
    }
    let mut ents =
        String::from("entity_id,name,kind,partner_type,parent_id\nic,V,vendor,,\np,P,channel_partner,msp,ic\n");
    let mut ks = String::from(
        "contract_id,seller_id,buyer_id,model,reserved_tb,unit_price,overage_price,minimum_tb,currency,start_date,end_date\n\
         K,ic,p,pay_per_use,,7.99,,,EUR,2026-01-01,\n",
    );
    for c in 0..100 {
        ents.push_str(&format!("c{c},C{c},customer,,p\n"));
        ks.push_str(&format!("K{c},p,c{c},pay_per_use,,9.90,,,EUR,2026-01-01,\n"));
    }
    let t = |n: &str, s: String| (n.to_owned(), Bytes::from(s));
    parse_tables(
        t("entities.csv", ents),
        t("storage_accounts.csv", sa),
        t("contracts.csv", ks),
        t("deals.csv", "deal_id,partner_id,customer_id,volume_tb,special_price,status,valid_from,valid_to\n".into()),
    )
    .unwrap()
}

/// Account ids as ingestion interns them: the directory's first.
fn ids(dir: &Directory) -> Interner {
    Interner::seeded(dir.accounts.iter().map(|a| a.id.as_str()))
}

/// One day of records: every account (ids 0..accounts, as in [`directory`]),
/// 2 buckets, 24 hourly snapshots, in the order of an hourly export.
fn day(accounts: usize, day_index: i32) -> DataFrame {
    let first = month().first_day() + day_index;
    let n = accounts * 2 * 24;
    let mut account = Vec::with_capacity(n);
    let mut bucket = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut bytes = Vec::with_capacity(n);
    for h in 0..24i64 {
        for a in 0..accounts {
            for b in [0u32, 1] {
                account.push(a as u32);
                bucket.push(b);
                ts.push(i64::from(first) * US_PER_DAY + h * 3_600_000_000);
                bytes.push(1_000_000_000u64 + (a as u64) * 1_000 + h as u64);
            }
        }
    }
    DataFrame::new(
        n,
        vec![
            Column::new(col::ACCOUNT_ID.into(), account),
            Column::new(col::BUCKET.into(), bucket),
            Column::new(col::TS.into(), ts),
            Column::new(col::DAY.into(), vec![first; n]),
            Column::new(col::BYTES.into(), bytes),
            Column::new(col::OBJECT.into(), vec![day_index as u32; n]),
            Column::new(col::ROW.into(), (1..=n as u32).collect::<Vec<_>>()),
        ],
    )
    .unwrap()
}

fn opts() -> MeterOptions {
    MeterOptions { month: month(), unit: Unit::Tb, daily_method: DailyMethod::Mean }
}

fn bench_meter(c: &mut Criterion) {
    let mut g = c.benchmark_group("meter");
    g.sample_size(10);
    for accounts in [1_000usize, 10_000] {
        let records = day(accounts, 0);
        g.throughput(Throughput::Elements(records.height() as u64));
        let dir = directory(accounts);
        // The days set apart per owner, as the pipeline asks before metering.
        let set_apart = capbill::rate::uncontracted_days(&dir, month());
        g.bench_with_input(BenchmarkId::new("one_day", accounts), &records, |b, records| {
            b.iter(|| meter::meter(records.clone(), &dir, ids(&dir), &set_apart, opts()).unwrap())
        });
        let days: Vec<DataFrame> = (0..31).map(|d| day(accounts / 10, d)).collect();
        g.throughput(Throughput::Elements(days.iter().map(DataFrame::height).sum::<usize>() as u64));
        g.bench_with_input(BenchmarkId::new("month", accounts / 10), &days, |b, days| {
            b.iter(|| {
                let mut m = DayMeter::new(opts());
                for (i, d) in days.iter().enumerate() {
                    m.push(d.clone(), month().first_day() + i as i32).unwrap();
                }
                m.finish(&dir, ids(&dir), &set_apart).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_meter);
criterion_main!(benches);
