"""Reference metering of one month in Python polars (lazy): spec 2, steps 1-4.

Usage: python bench/reference_polars.py --workload DIR --format hourly-parquet|daily-json|daily-csv
                                        [--layout days|flat|month] [--accounts-out FILE.parquet]

The same computation as bench/reference_duckdb.sql, and the same JSON
result on stdout: total_byte_days (every account, known or not),
known_byte_days, observed_byte_days (days with snapshots only, no gap fill),
accounts, unknown_accounts, filled_days, seconds. --layout picks the files of
an hourly-parquet workload, as in bench/reference_duckdb.py.

1. snapshots: sum of bytes over buckets per (account, timestamp), Int128;
2. daily value: mean of the day's snapshots, half away from zero, i.e.
   floor((2s + n) / 2n) for non-negative sums;
3. window days of known accounts without a snapshot: forward fill, then
   backward fill within the month; days with snapshots always count;
4. byte-days: exact Int128 sums.
Not modelled: "last wins" between duplicate records (the generated
workloads have none) and the `max` daily method.
"""

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import polars as pl

MONTH_START = dt.date(2026, 10, 1)
MONTH_END = dt.date(2026, 11, 1)
EPOCH = dt.date(1970, 1, 1)
US_PER_DAY = 86_400_000_000
FIRST_DAY = (MONTH_START - EPOCH).days
END_DAY = (MONTH_END - EPOCH).days


PARQUET_GLOBS = {"days": "usage/hourly/dt=*/*.parquet", "flat": "flat/*.parquet", "month": "month/*.parquet"}


def records(fmt: str, workload: Path, layout: str = "days") -> pl.LazyFrame:
    """account, ts_us (Int64 microseconds since the epoch), bytes."""
    usage = workload / "usage"
    if fmt == "hourly-parquet":
        return pl.scan_parquet(workload / PARQUET_GLOBS[layout], hive_partitioning=False).select(
            pl.col("storage_account_id").alias("account"),
            pl.col("timestamp").dt.epoch("us").alias("ts_us"),
            pl.col("bytes"),
        )
    if fmt == "daily-csv":
        lf = pl.scan_csv(usage / "daily" / "*" / "*.csv",
                         schema={"date": pl.Date, "storage_account_id": pl.String, "bytes": pl.UInt64})
        return lf.select(
            pl.col("storage_account_id").alias("account"),
            (pl.col("date").cast(pl.Int64) * US_PER_DAY).alias("ts_us"),
            pl.col("bytes"),
        )
    # daily-json: the partner API export, a JSON array per file (polars has no lazy
    # reader for JSON arrays, so each file is read eagerly, then exploded).
    schema = {
        "client_id": pl.String,
        "name": pl.String,
        "allocated_capacity": pl.Int64,
        "daily_usage": pl.List(pl.Struct({"date": pl.String, "usage": pl.UInt64,
                                          "allocated_capacity": pl.Int64})),
    }
    frames = []
    for path in sorted((usage / "partner-api").glob("*/*.json")):
        df = pl.read_json(path, schema=schema).select("client_id", "daily_usage")
        df = df.explode("daily_usage").unnest("daily_usage").drop_nulls("date")
        frames.append(df.select(
            pl.col("client_id").alias("account"),
            (pl.col("date").str.to_date("%Y-%m-%d").cast(pl.Int64) * US_PER_DAY).alias("ts_us"),
            pl.col("usage").alias("bytes"),
        ))
    return pl.concat(frames).lazy()


def meter(rec: pl.LazyFrame, directory: Path) -> pl.LazyFrame:
    # 1. Snapshots.
    snapshots = (
        rec.filter((pl.col("ts_us") >= FIRST_DAY * US_PER_DAY) & (pl.col("ts_us") < END_DAY * US_PER_DAY))
        .group_by("account", "ts_us")
        .agg(pl.col("bytes").cast(pl.Int128).sum().alias("snapshot"))
    )
    # 2. Daily values.
    daily = (
        snapshots.group_by("account", (pl.col("ts_us") // US_PER_DAY).cast(pl.Int32).alias("day"))
        .agg(pl.col("snapshot").sum().alias("s"), pl.len().cast(pl.Int128).alias("n"))
        .select("account", "day", ((2 * pl.col("s") + pl.col("n")) // (2 * pl.col("n"))).alias("value"))
    )
    # 3. Windows of known accounts within the month.
    accounts = pl.scan_csv(directory / "storage_accounts.csv", infer_schema=False).select(
        pl.col("storage_account_id").alias("account"),
        pl.col("created_on").str.to_date("%Y-%m-%d").cast(pl.Int32).alias("created"),
        pl.col("deleted_on").str.to_date("%Y-%m-%d").cast(pl.Int32).alias("deleted"),
    )
    grid = accounts.select(
        "account",
        pl.int_ranges(
            pl.max_horizontal(pl.col("created").fill_null(FIRST_DAY), pl.lit(FIRST_DAY)),
            pl.min_horizontal(pl.col("deleted").fill_null(END_DAY), pl.lit(END_DAY)),
            dtype=pl.Int32,
        ).alias("day"),
    ).explode("day").drop_nulls("day")
    days = (
        daily.join(grid, on=["account", "day"], how="full", coalesce=True)
        .sort("account", "day")
        .with_columns(pl.col("value").forward_fill().backward_fill().over("account").alias("filled"))
    )
    # 4. Byte-days per account.
    known = accounts.select("account", pl.lit(True).alias("known"))
    return (
        days.group_by("account")
        .agg(
            pl.col("filled").fill_null(0).sum().alias("byte_days"),
            pl.col("value").fill_null(0).sum().alias("observed_byte_days"),
            pl.col("value").is_not_null().sum().alias("observed_days"),
            (pl.col("value").is_null() & pl.col("filled").is_not_null()).sum().alias("filled_days"),
        )
        .join(known, on="account", how="left")
        .with_columns(pl.col("known").fill_null(False))
        .rename({"account": "storage_account_id"})
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", required=True, type=Path)
    ap.add_argument("--format", required=True, choices=["hourly-parquet", "daily-json", "daily-csv"])
    ap.add_argument("--layout", choices=sorted(PARQUET_GLOBS), default="days")
    ap.add_argument("--accounts-out", type=Path)
    args = ap.parse_args()

    t0 = time.monotonic()
    usage = meter(records(args.format, args.workload, args.layout), args.workload / "directory").collect()
    totals = usage.select(
        pl.col("byte_days").sum().alias("total_byte_days"),
        pl.col("byte_days").filter(pl.col("known")).sum().alias("known_byte_days"),
        pl.col("observed_byte_days").sum().alias("observed_byte_days"),
        pl.len().alias("accounts"),
        (~pl.col("known")).sum().alias("unknown_accounts"),
        pl.col("filled_days").sum().alias("filled_days"),
    ).row(0, named=True)
    result = {"tool": "polars", "polars": pl.__version__, "layout": args.layout, **{k: int(v or 0) for k, v in totals.items()}}
    if args.accounts_out:
        usage.sort("storage_account_id").select(
            "storage_account_id", "known", pl.col("byte_days").cast(pl.Decimal(38, 0)), "observed_days",
            "filled_days",
        ).write_parquet(args.accounts_out)
    result["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
