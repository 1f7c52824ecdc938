"""Runs bench/reference_duckdb.sql over a workload and prints its totals.

Usage: python bench/reference_duckdb.py --workload DIR --format hourly-parquet|daily-json|daily-csv
                                        [--layout days|flat|month] [--accounts-out FILE.parquet]
                                        [--threads N] [--memory-limit 14GB] [--temp-dir DIR]
                                        [--max-temp-size 10GB] [--scan-only]

DIR holds directory/ and usage/ as scripts/gen-workload writes them. Prints
one JSON object: total_byte_days (every account, known or not),
known_byte_days (accounts the directory knows), observed_byte_days (only
days with snapshots, i.e. without gap fill), accounts, unknown_accounts,
filled_days, seconds. --accounts-out writes the per-account byte-days
(DECIMAL(38,0)) for the per-account comparison of scripts/bench.

--layout picks the files of an hourly-parquet workload (scripts/gen-workload
--layouts): days reads DIR/usage/hourly/dt=*/*.parquet, flat DIR/flat/*.parquet
and month DIR/month/*.parquet. --scan-only runs the `scan` section instead of
the metering: count the records, sum bytes, lengths of the ids and buckets,
max of the timestamps (every column decoded once, nothing else).
"""

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

import duckdb

MONTH_START = dt.date(2026, 10, 1)
MONTH_END = dt.date(2026, 11, 1)
US_PER_DAY = 86_400_000_000
SQL = Path(__file__).with_name("reference_duckdb.sql")


def sections(text: str) -> dict:
    """`-- @section NAME [FORMAT]` blocks of the SQL file."""
    out, key = {}, None
    for line in text.splitlines():
        m = re.match(r"--\s*@section\s+(.+?)\s*$", line)
        if m:
            key = m.group(1)
            out[key] = []
        elif key is not None:
            out[key].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def sql_path(p: Path) -> str:
    return str(p.resolve()).replace("'", "''")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", required=True, type=Path)
    ap.add_argument("--format", required=True, choices=["hourly-parquet", "daily-json", "daily-csv"])
    ap.add_argument("--accounts-out", type=Path)
    ap.add_argument("--layout", choices=["days", "flat", "month"], default="days")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 14GB (past it, DuckDB spills)")
    ap.add_argument("--temp-dir", type=Path, help="DuckDB temp_directory, where it spills")
    ap.add_argument("--max-temp-size", help="DuckDB max_temp_directory_size, e.g. 10GB (past it, the query fails)")
    ap.add_argument("--scan-only", action="store_true",
                    help="only parse the inputs once (count the records, sum their bytes): the floor any "
                         "metering of these files has to pay")
    args = ap.parse_args()

    t0 = time.monotonic()
    epoch = dt.date(1970, 1, 1)
    first_day, end_day = (MONTH_START - epoch).days, (MONTH_END - epoch).days
    parquet = {"days": args.workload / "usage" / "hourly" / "dt=*" / "*.parquet",
               "flat": args.workload / "flat" / "*.parquet",
               "month": args.workload / "month" / "*.parquet"}[args.layout]
    subst = {
        "usage": sql_path(args.workload / "usage"),
        "parquet": sql_path(parquet.parent) + "/" + parquet.name,
        "directory": sql_path(args.workload / "directory"),
        "first_day": str(first_day),
        "end_day": str(end_day),
        "start_us": str(first_day * US_PER_DAY),
        "end_us": str(end_day * US_PER_DAY),
    }
    sec = sections(SQL.read_text())

    def render(name: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: subst[m.group(1)], sec[name])

    con = duckdb.connect()
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    if args.memory_limit:
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
    if args.temp_dir:
        args.temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = '{sql_path(args.temp_dir)}'")
    if args.max_temp_size:
        con.execute(f"SET max_temp_directory_size = '{args.max_temp_size}'")
    con.execute("SET preserve_insertion_order = false")
    if args.scan_only:
        con.execute(render(f"records {args.format}"))
        n, total, id_chars, bucket_chars, max_ts = con.execute(render("scan")).fetchone()
        print(json.dumps({"tool": "duckdb-scan", "duckdb": duckdb.__version__, "layout": args.layout,
                          "records": int(n), "bytes": int(total or 0), "id_chars": int(id_chars or 0),
                          "bucket_chars": int(bucket_chars or 0), "max_ts_us": max_ts,
                          "seconds": round(time.monotonic() - t0, 2)}))
        return 0
    for name in (f"records {args.format}", "accounts", "meter"):
        con.execute(render(name))
    row = con.execute(render("totals")).fetchone()
    cols = ["total_byte_days", "known_byte_days", "observed_byte_days", "accounts", "unknown_accounts",
            "filled_days"]
    result = {"tool": "duckdb", "duckdb": duckdb.__version__, "layout": args.layout, **{c: int(v) for c, v in zip(cols, row)}}
    if args.accounts_out:
        con.execute(
            "COPY (SELECT storage_account_id, known, byte_days::DECIMAL(38,0) AS byte_days, "
            "observed_days, filled_days FROM account_usage ORDER BY storage_account_id) "
            f"TO '{sql_path(args.accounts_out)}' (FORMAT parquet)")
    result["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
