"""Compares capbill's byte-days with the reference queries' byte-days.

Usage: python -m bench_lib.check_totals --capbill-out OUT --month 2026-10
           --reference duckdb=RESULT.json [--reference polars=RESULT.json ...]
           [--accounts duckdb=ACCOUNTS.parquet]

capbill side: OUT/billing_month=M/latest.json names revision N; the byte-days
are the `byte_days` column (DECIMAL(38,0)) of
OUT/billing_month=M/revision=N/account_usage.parquet. That table has one row
per account with a window day or a snapshot in M, accounts unknown to the
directory included (with an empty owner_id).

Two totals are compared, exactly (Python integers):
  all    every row of account_usage  <->  the reference's total_byte_days
  known  rows with an owner_id        <->  the reference's known_byte_days
Both sides include the gap fill of spec 2 step 3; the references' totals
without it (observed_byte_days) are printed for information.

--accounts additionally compares byte_days account by account with that
reference and lists the first differences. Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from bench_lib import conclude


def capbill_usage(out: Path, month: str) -> tuple[pl.DataFrame, int]:
    root = out / f"billing_month={month}"
    latest = json.loads((root / "latest.json").read_text())
    rev = int(latest["revision"])
    df = pl.read_parquet(root / f"revision={rev}" / "account_usage.parquet")
    df = df.with_columns(
        pl.col("byte_days").cast(pl.Int128),
        (pl.col("owner_id").is_not_null() & (pl.col("owner_id") != "")).alias("known"),
    )
    return df, rev


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capbill-out", required=True, type=Path)
    ap.add_argument("--month", default="2026-10")
    ap.add_argument("--reference", action="append", default=[], help="NAME=result.json")
    ap.add_argument("--accounts", help="NAME=accounts.parquet for a per-account comparison")
    ap.add_argument("--json-out", type=Path, help="write the comparison as JSON here")
    args = ap.parse_args(argv)

    ok = True
    cb, rev = capbill_usage(args.capbill_out, args.month)
    cb_all = int(cb["byte_days"].sum() or 0)
    cb_known = int(cb.filter("known")["byte_days"].sum() or 0)
    report = {"capbill": {"revision": rev, "accounts": cb.height, "unknown_accounts": int((~cb["known"]).sum()),
                          "total_byte_days": cb_all, "known_byte_days": cb_known}, "references": {}}
    print(f"byte-days, capbill revision {rev} ({cb.height:,} accounts, "
          f"{report['capbill']['unknown_accounts']} unknown to the directory):")
    print(f"  {'source':<10} {'all accounts':>28} {'known accounts':>28} {'observed only (no fill)':>28}  result")
    print(f"  {'capbill':<10} {cb_all:>28,} {cb_known:>28,} {'':>28}")
    for spec in args.reference:
        name, path = spec.split("=", 1)
        try:
            ref = json.loads(Path(path).read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as e:
            print(f"  {name:<10} no result ({e})")
            ok = False
            continue
        same = ref["total_byte_days"] == cb_all and ref["known_byte_days"] == cb_known
        ok &= same
        report["references"][name] = {**ref, "matches_capbill": same}
        print(f"  {name:<10} {ref['total_byte_days']:>28,} {ref['known_byte_days']:>28,} "
              f"{ref['observed_byte_days']:>28,}  {'MATCH' if same else 'MISMATCH'}")
        if not same:
            print(f"    difference (capbill - {name}): all {cb_all - ref['total_byte_days']:,}, "
                  f"known {cb_known - ref['known_byte_days']:,}")

    if args.accounts:
        name, path = args.accounts.split("=", 1)
        ref = pl.read_parquet(path).select(
            "storage_account_id", pl.col("byte_days").cast(pl.Int128).alias("ref_byte_days"))
        joined = cb.select("storage_account_id", "byte_days").join(
            ref, on="storage_account_id", how="full", coalesce=True)
        diff = joined.filter(pl.col("byte_days").ne_missing(pl.col("ref_byte_days"))).sort("storage_account_id")
        report["per_account"] = {"reference": name, "accounts_compared": joined.height,
                                 "accounts_differing": diff.height}
        if diff.height:
            ok = False
            print(f"  per account vs {name}: {diff.height:,} of {joined.height:,} accounts differ, first ones:")
            with pl.Config(tbl_rows=10, fmt_str_lengths=40):
                print(diff.head(10))
        else:
            print(f"  per account vs {name}: all {joined.height:,} accounts identical")

    return conclude(report, ok, args.json_out, "BYTE-DAYS MISMATCH between capbill and the reference queries")


if __name__ == "__main__":
    sys.exit(main())
