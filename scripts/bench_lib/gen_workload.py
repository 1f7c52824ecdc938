"""Synthetic billing month (2026-10) for capbill benchmarks.

Writes a valid partner directory (spec 1.1) and the usage records of one
month in one of three layouts:

  hourly-parquet  DIR/usage/hourly/dt=2026-10-DD/part-0.parquet
                  storage_account_id, bucket, timestamp (timestamp[us, UTC]), bytes (int64);
                  zstd, dictionary-encoded columns, --row-groups row groups per file
                  (one dictionary per row group and column). --layouts adds the
                  same records in two more layouts, derived from the day files:
                    flat   DIR/flat/dt=2026-10-DD.parquet (the day files, hardlinked,
                           in one folder: no day folders)
                    month  DIR/month/usage-2026-10.parquet (one file: the day files'
                           row groups one after the other, day 1 first)
  daily-json      DIR/usage/partner-api/2026-10/export-NNN.json (partner API export)
  daily-csv       DIR/usage/daily/2026-10/part-NNN.csv (date,storage_account_id,bytes)

Everything is vectorised (numpy, pyarrow, polars) and deterministic for a
given set of arguments. DIR/workload.json is written last: it records the
arguments, the counts and the generation time, and marks the workload as
complete (scripts/bench regenerates a workload whose workload.json is
missing or was made with other arguments).

Deliberate irregularities, all within the rules of the spec:
  * ~2% of the accounts are created inside the month and ~2% deleted inside
    it (usage only inside their window);
  * ~0.5% of the accounts miss 1-3 days inside their window (gap fill);
  * 3 known accounts have no usage at all (no_usage_data);
  * 5 account ids unknown to the directory have usage every day;
  * ~5% of the customers switch contracts on 2026-10-16.
No (account, bucket, timestamp) occurs twice, so "last wins" never applies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

MONTH = "2026-10"
MONTH_START = dt.date(2026, 10, 1)
MONTH_DAYS = 31
EPOCH = dt.date(1970, 1, 1)
US_PER_DAY = 86_400_000_000
BUCKET_NAMES = ["backups", "media", "archive", "logs", "db-dumps", "vm-images", "shares", "scans"]
SWITCH_DATE = "2026-10-16"
N_UNKNOWN = 5
N_NODATA = 3
FORMATS = ("hourly-parquet", "daily-json", "daily-csv")


def day_str(d: int) -> str:
    """Month-relative day index (0 = 2026-10-01) as YYYY-MM-DD."""
    return (MONTH_START + dt.timedelta(days=int(d))).isoformat()


def bucket_name(b: int) -> str:
    base = BUCKET_NAMES[b % len(BUCKET_NAMES)]
    return base if b < len(BUCKET_NAMES) else f"{base}-{b // len(BUCKET_NAMES)}"


# --------------------------------------------------------------------------- directory


def build_directory(n_accounts: int, rng: np.random.Generator) -> dict:
    """The four directory tables plus the per-account arrays usage needs."""
    # Customers with 1 + Poisson(3) accounts each (mean 4), trimmed to N.
    est = n_accounts // 4 + 16
    while True:
        per_cust = 1 + rng.poisson(3, size=est)
        if per_cust.sum() >= n_accounts:
            break
        est *= 2
    cum = np.cumsum(per_cust)
    n_cust = int(np.searchsorted(cum, n_accounts) + 1)
    per_cust = per_cust[:n_cust].copy()
    per_cust[-1] -= int(cum[n_cust - 1] - n_accounts)
    assert per_cust.sum() == n_accounts and per_cust.min() >= 1

    n_part = max(3, math.ceil(n_cust / 50))
    n_dp = max(1, round(0.6 * n_part))  # distributor partners
    n_msp = n_part - n_dp  # MSPs directly under the vendor
    n_dist = max(1, min(10, 2 + n_part // 1000))

    ent_id, ent_name, ent_kind, ent_ptype, ent_parent = [], [], [], [], []

    def entity(i, n, k, t, p):
        ent_id.append(i), ent_name.append(n), ent_kind.append(k), ent_ptype.append(t), ent_parent.append(p)

    k_id, k_seller, k_buyer, k_model, k_res, k_price, k_over, k_min, k_start, k_end = ([] for _ in range(10))

    def contract(cid, seller, buyer, model, price, start, end=None, reserved_tb=None, overage=None, minimum=None):
        k_id.append(cid), k_seller.append(seller), k_buyer.append(buyer), k_model.append(model)
        k_res.append(reserved_tb), k_price.append(price), k_over.append(overage), k_min.append(minimum)
        k_start.append(start), k_end.append(end)

    entity("ic", "Impossible Cloud GmbH", "vendor", None, None)
    dists = [f"dist-{i + 1:02d}" for i in range(n_dist)]
    for i, d in enumerate(dists):
        entity(d, f"Distributor {i + 1:02d} AG", "distributor", None, "ic")

    partners = [f"dp-{i + 1:05d}" for i in range(n_dp)] + [f"msp-{i + 1:05d}" for i in range(n_msp)]
    dp_dist = rng.integers(0, n_dist, size=n_dp)
    dp_reserved = rng.random(n_dp) < 0.5
    dp_reserved[0] = True
    if n_dp > 1:
        dp_reserved[1] = False
    dp_ptype = np.where(rng.random(n_dp) < 0.5, "var", "msp")
    for i in range(n_dp):
        entity(partners[i], f"Partner {i + 1:05d} IT", "channel_partner", str(dp_ptype[i]), dists[dp_dist[i]])
    for i in range(n_msp):
        entity(partners[n_dp + i], f"Managed Services {i + 1:05d}", "channel_partner", "msp", "ic")

    # Customers: parent partner, contract models, switches.
    custs = [f"cust-{i + 1:06d}" for i in range(n_cust)]
    cust_names = [f"Customer {i + 1:06d}" for i in range(n_cust)]
    cust_part = rng.integers(0, n_part, size=n_cust)
    parent_reserved = np.zeros(n_cust, dtype=bool)
    is_dp = cust_part < n_dp
    parent_reserved[is_dp] = dp_reserved[cust_part[is_dp]]
    switch = rng.random(n_cust) < 0.05
    first_res = parent_reserved & (rng.random(n_cust) < 0.3)
    second_res = np.where(parent_reserved, ~first_res, False)
    res_tb = rng.integers(5, 201, size=(n_cust, 2))
    ppu_price = np.array(["9.90", "10.50", "12.00"])[rng.integers(0, 3, size=(n_cust, 2))]
    minimum = np.array([None, None, None, "1", "2.5"], dtype=object)[rng.integers(0, 5, size=(n_cust, 2))]
    starts = np.array(["2024-01-01", "2024-07-01", "2025-01-01", "2025-06-01", "2026-02-01", "2026-09-01"])
    cust_start = starts[rng.integers(0, len(starts), size=n_cust)]
    for i in range(n_cust):
        entity(custs[i], cust_names[i], "customer", None, partners[cust_part[i]])

    # Reserved capacity bought per partner: covers every reserved contract of its customers.
    part_alloc = np.zeros(n_part, dtype=np.int64)
    for i in range(n_cust):
        if first_res[i]:
            part_alloc[cust_part[i]] += res_tb[i, 0]
        if switch[i] and second_res[i]:
            part_alloc[cust_part[i]] += res_tb[i, 1]
    dp_res_tb = np.where(dp_reserved, (part_alloc[:n_dp] * 6) // 5 + 20, 0)
    dist_res_tb = np.zeros(n_dist, dtype=np.int64)
    for i in range(n_dp):
        if dp_reserved[i]:
            dist_res_tb[dp_dist[i]] += dp_res_tb[i]

    for i, d in enumerate(dists):
        contract(f"K-IC-{d}", "ic", d, "reserved", "6.00", "2026-01-01",
                 reserved_tb=str(int(dist_res_tb[i]) + 100), overage="7.50")
    for i in range(n_dp):
        p = partners[i]
        if dp_reserved[i]:
            contract(f"K-{dists[dp_dist[i]]}-{p}", dists[dp_dist[i]], p, "reserved", "7.00", "2026-01-01",
                     reserved_tb=str(int(dp_res_tb[i])), overage="8.50")
        else:
            contract(f"K-{dists[dp_dist[i]]}-{p}", dists[dp_dist[i]], p, "pay_per_use", "7.99", "2026-01-01")
    for i in range(n_msp):
        p = partners[n_dp + i]
        contract(f"K-IC-{p}", "ic", p, "pay_per_use", "7.99", "2025-06-01")
    for i in range(n_cust):
        c, p = custs[i], partners[cust_part[i]]
        models = [(first_res[i], cust_start[i], SWITCH_DATE if switch[i] else None, "A")]
        if switch[i]:
            models.append((second_res[i], SWITCH_DATE, None, "B"))
        for j, (res, start, end, tag) in enumerate(models):
            if res:
                contract(f"K-{c}-{tag}", p, c, "reserved", "9.00", start, end,
                         reserved_tb=str(int(res_tb[i, j])), overage="11.00")
            else:
                contract(f"K-{c}-{tag}", p, c, "pay_per_use", str(ppu_price[i, j]), start, end,
                         minimum=minimum[i, j])

    # A few deal registrations, registered by the customer's channel partner.
    n_deals = min(n_cust, max(3, n_cust // 1000))
    deal_cust = np.sort(rng.choice(n_cust, size=n_deals, replace=False))
    d_id, d_part, d_cust, d_vol, d_price, d_status, d_from, d_to = ([] for _ in range(8))
    for j, i in enumerate(deal_cust):
        approved = j % 3 != 2
        d_id.append(f"DR-{j + 1:05d}")
        d_part.append(partners[cust_part[i]])
        d_cust.append(custs[i])
        d_vol.append(str(int(rng.integers(100, 400))))
        d_price.append(("6.50" if j % 2 else "6.20") if approved else None)
        d_status.append("approved" if approved else "registered")
        d_from.append("2026-09-01")
        d_to.append("2027-09-01" if j % 2 else None)

    # Storage accounts: owner, company name, window.
    width = max(7, len(str(n_accounts)))
    acc_ids = np.array([f"sa-{i + 1:0{width}d}" for i in range(n_accounts)], dtype=object)
    acc_cust = np.repeat(np.arange(n_cust), per_cust)
    roll = rng.random(n_accounts)
    created_in = roll < 0.02
    deleted_in = (roll >= 0.02) & (roll < 0.04)
    win_start = np.zeros(n_accounts, dtype=np.int64)
    win_end = np.full(n_accounts, MONTH_DAYS, dtype=np.int64)
    win_start[created_in] = rng.integers(1, 29, size=int(created_in.sum()))
    win_end[deleted_in] = rng.integers(4, 31, size=int(deleted_in.sum()))
    past = np.array([None, None, "2023-03-01", "2024-11-15", "2025-08-01", "2026-09-20"], dtype=object)
    created_on = past[rng.integers(0, len(past), size=n_accounts)]
    created_on[created_in] = [day_str(d) for d in win_start[created_in]]
    deleted_on = np.full(n_accounts, None, dtype=object)
    deleted_on[deleted_in] = [day_str(d) for d in win_end[deleted_in]]

    tables = {
        "entities": pl.DataFrame(
            {"entity_id": ent_id, "name": ent_name, "kind": ent_kind, "partner_type": ent_ptype,
             "parent_id": ent_parent}, schema={c: pl.String for c in
                                               ["entity_id", "name", "kind", "partner_type", "parent_id"]}),
        "storage_accounts": pl.DataFrame(
            {"storage_account_id": acc_ids.tolist(),
             "company_name": [cust_names[i] for i in acc_cust],
             "owner_id": [custs[i] for i in acc_cust],
             "created_on": created_on.tolist(), "deleted_on": deleted_on.tolist()},
            schema={c: pl.String for c in
                    ["storage_account_id", "company_name", "owner_id", "created_on", "deleted_on"]}),
        "contracts": pl.DataFrame(
            {"contract_id": k_id, "seller_id": k_seller, "buyer_id": k_buyer, "model": k_model,
             "reserved_tb": k_res, "unit_price": k_price, "overage_price": k_over, "minimum_tb": k_min,
             "currency": ["EUR"] * len(k_id), "start_date": k_start, "end_date": k_end},
            schema={c: pl.String for c in
                    ["contract_id", "seller_id", "buyer_id", "model", "reserved_tb", "unit_price",
                     "overage_price", "minimum_tb", "currency", "start_date", "end_date"]}),
        "deals": pl.DataFrame(
            {"deal_id": d_id, "partner_id": d_part, "customer_id": d_cust, "volume_tb": d_vol,
             "special_price": d_price, "status": d_status, "valid_from": d_from, "valid_to": d_to},
            schema={c: pl.String for c in
                    ["deal_id", "partner_id", "customer_id", "volume_tb", "special_price", "status",
                     "valid_from", "valid_to"]}),
    }
    counts = {
        "distributors": n_dist, "distributor_partners": n_dp, "msps": n_msp, "customers": n_cust,
        "contracts": len(k_id), "customers_switching": int(switch.sum()), "deals": n_deals,
        "accounts_created_in_month": int(created_in.sum()), "accounts_deleted_in_month": int(deleted_in.sum()),
    }
    names = np.array(cust_names, dtype=object)[acc_cust]
    return {"tables": tables, "acc_ids": acc_ids, "acc_names": names, "win_start": win_start,
            "win_end": win_end, "counts": counts}


# --------------------------------------------------------------------------- usage presence and sizes


def presence(d: dict, days: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Boolean matrix [accounts + unknown, days]: does the account report on that day."""
    n = len(d["acc_ids"])
    day = np.arange(days)
    present = (day[None, :] >= d["win_start"][:, None]) & (day[None, :] < d["win_end"][:, None])
    # Gaps: ~0.5% of accounts miss 1..3 days of their window.
    n_gap = max(1, n // 200)
    gap_acc = rng.choice(n, size=min(n, n_gap), replace=False)
    n_gap_days = 0
    for a in gap_acc:
        k = int(rng.integers(1, 4))
        for g in rng.integers(0, days, size=k):
            if present[a, g]:
                present[a, g] = False
                n_gap_days += 1
    # Accounts with a window but no usage at all.
    nodata = rng.choice(n, size=min(n, N_NODATA), replace=False)
    present[nodata] = False
    unknown = np.ones((N_UNKNOWN, days), dtype=bool)
    info = {"gap_accounts": int(len(gap_acc)), "gap_days": n_gap_days, "no_data_accounts": int(len(nodata)),
            "unknown_accounts": N_UNKNOWN}
    return np.vstack([present, unknown]), info


def all_ids(d: dict) -> np.ndarray:
    unknown = np.array([f"sa-unknown-{i + 1}" for i in range(N_UNKNOWN)], dtype=object)
    return np.concatenate([d["acc_ids"], unknown])


def size_model(n: int, buckets: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per (account, bucket): base bytes (log-uniform 1e9..2e14) and daily relative growth (0..1%)."""
    base = 10.0 ** rng.uniform(9.0, math.log10(2e14), size=(n, buckets))
    growth = rng.uniform(0.0, 0.01, size=(n, buckets))
    return base, growth


# --------------------------------------------------------------------------- writers


# Dictionary pages up to this size: pyarrow's default (1 MiB) falls back to plain
# encoding past ~70,000 distinct ids per row group, and 10 x W-hourly has 500,000.
DICTIONARY_PAGE_LIMIT = 64 << 20
LAYOUTS = ("days", "flat", "month")


def parquet_options(rows: int, row_groups: int) -> dict:
    """pyarrow.parquet writer options of the hourly files (and of the month file's row groups)."""
    return {"compression": "zstd", "use_dictionary": True, "dictionary_pagesize_limit": DICTIONARY_PAGE_LIMIT,
            "row_group_size": max(1, math.ceil(rows / row_groups))}


def day_files(out: Path) -> list[Path]:
    return sorted((out / "usage" / "hourly").glob("dt=*/part-0.parquet"))


def layout_usage(out: Path, layout: str) -> Path:
    """The folder capbill's --usage names for a layout of an hourly workload."""
    return {"days": out / "usage", "flat": out / "flat", "month": out / "month"}[layout]


def derive_layouts(out: Path, layouts: list[str], stamp: str) -> None:
    """Adds the flat and month layouts of an hourly workload, from its day files.

    DIR/layout-NAME.json records the workload's stamp (its generation time in
    workload.json) the layout was made from: a layout without it, or with
    another stamp, is made again. (It is not in the layout's folder, which
    capbill reads whole.)
    """
    files = day_files(out)
    for layout in layouts:
        if layout == "days":
            continue
        folder = layout_usage(out, layout)
        marker = out / f"layout-{layout}.json"
        if marker.exists():
            try:
                if json.loads(marker.read_text()).get("stamp") == stamp:
                    continue
            except ValueError:
                pass
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        t0 = time.monotonic()
        if layout == "flat":
            for f in files:
                target = folder / f"{f.parent.name}.parquet"
                try:
                    os.link(f, target)
                except OSError:
                    shutil.copyfile(f, target)
        else:
            # One file: every day file's row groups, rewritten one by one with the same
            # rows, row-group sizes and writer options (a dictionary per row group).
            target = folder / f"usage-{MONTH}.parquet"
            writer = None
            for f in files:
                pf = pq.ParquetFile(f)
                size = pf.metadata.row_group(0).num_rows
                for g in range(pf.num_row_groups):
                    table = pf.read_row_group(g)
                    if writer is None:
                        opts = parquet_options(size, 1)
                        del opts["row_group_size"]
                        writer = pq.ParquetWriter(target, table.schema, **opts)
                    writer.write_table(table, row_group_size=size)
            if writer is not None:
                writer.close()
        (marker.with_suffix(".tmp")).write_text(json.dumps(
            {"layout": layout, "stamp": stamp, "seconds": round(time.monotonic() - t0, 1)}) + "\n")
        os.replace(marker.with_suffix(".tmp"), marker)
        print(f"gen-workload: layout {layout} in {folder} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)


def write_hourly(out: Path, d: dict, args, rng: np.random.Generator) -> dict:
    ids = all_ids(d)
    n = len(ids)
    present, info = presence(d, args.days, rng)
    base, growth = size_model(n, args.buckets, rng)
    id_arr = pa.array(ids.tolist(), type=pa.string())
    bucket_arr = pa.array([bucket_name(b) for b in range(args.buckets)], type=pa.string())
    S, B = args.snapshots_per_day, args.buckets
    step_us = US_PER_DAY // S
    rows = 0
    for day in range(args.days):
        drng = np.random.default_rng([args.seed, 1_000 + day])
        acc = np.flatnonzero(present[:, day])
        na = len(acc)
        snap = np.repeat(np.arange(S, dtype=np.int64), na * B)
        a_idx = np.tile(np.repeat(acc, B), S)
        b_idx = np.tile(np.arange(B), S * na)
        t_days = day + snap / S
        noise = 1.0 + drng.uniform(-5e-4, 5e-4, size=len(snap))
        val = base[a_idx, b_idx] * (1.0 + growth[a_idx, b_idx] * t_days) * noise
        bytes_ = np.rint(val).astype(np.int64)
        day_us = ((MONTH_START - EPOCH).days + day) * US_PER_DAY
        ts = day_us + snap * step_us
        table = pa.table({
            "storage_account_id": id_arr.take(pa.array(a_idx)),
            "bucket": bucket_arr.take(pa.array(b_idx)),
            "timestamp": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            "bytes": pa.array(bytes_, type=pa.int64()),
        })
        folder = out / "usage" / "hourly" / f"dt={day_str(day)}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet", **parquet_options(table.num_rows, args.row_groups))
        rows += table.num_rows
        print(f"  {folder.relative_to(out)}/part-0.parquet: {table.num_rows:,} rows", file=sys.stderr)
    info["records"] = rows
    return info


def daily_values(base, growth, present, rng) -> np.ndarray:
    """Per (account, day): the account's bytes that day (sum over its buckets), int64."""
    days = present.shape[1]
    t = np.arange(days)[None, :] + 0.5
    tot = np.zeros(present.shape)
    for b in range(base.shape[1]):
        tot += base[:, b:b + 1] * (1.0 + growth[:, b:b + 1] * t)
    tot *= 1.0 + rng.uniform(-5e-4, 5e-4, size=tot.shape)
    return np.rint(tot).astype(np.int64)


def write_daily(out: Path, d: dict, args, rng: np.random.Generator) -> dict:
    ids = all_ids(d)
    names = np.concatenate([d["acc_names"], np.array([f"Unknown client {i + 1}" for i in range(N_UNKNOWN)],
                                                     dtype=object)])
    n = len(ids)
    present, info = presence(d, args.days, rng)
    base, growth = size_model(n, args.buckets, rng)
    dates = np.array([day_str(x) for x in range(args.days)], dtype=object)
    per_file = args.clients_per_file
    json_fmt = args.format == "daily-json"
    folder = out / "usage" / ("partner-api" if json_fmt else "daily") / MONTH
    folder.mkdir(parents=True, exist_ok=True)
    rows = 0
    for f, lo in enumerate(range(0, n, per_file)):
        hi = min(n, lo + per_file)
        frng = np.random.default_rng([args.seed, 2_000 + f])
        vals = daily_values(base[lo:hi], growth[lo:hi], present[lo:hi], frng)
        pa_idx, pd_idx = np.nonzero(present[lo:hi])
        long = pl.DataFrame({
            "client_id": pl.Series(ids[lo:hi][pa_idx].tolist(), dtype=pl.String),
            "date": pl.Series(dates[pd_idx].tolist(), dtype=pl.String),
            "usage": pl.Series(vals[pa_idx, pd_idx], dtype=pl.Int64),
        })
        rows += long.height
        if json_fmt:
            agg = long.group_by("client_id", maintain_order=True).agg(
                pl.struct(pl.col("date"), pl.col("usage"), pl.lit(0, dtype=pl.Int64).alias("allocated_capacity"))
                .alias("daily_usage"))
            clients = pl.DataFrame({
                "client_id": pl.Series(ids[lo:hi].tolist(), dtype=pl.String),
                "name": pl.Series(names[lo:hi].tolist(), dtype=pl.String),
                "allocated_capacity": pl.Series(np.zeros(hi - lo, dtype=np.int64)),
            }).join(agg, on="client_id", how="left", maintain_order="left")
            dtype = clients.schema["daily_usage"]
            clients = clients.with_columns(pl.col("daily_usage").fill_null(pl.lit([], dtype=dtype)))
            path = folder / f"export-{f:03d}.json"
            clients.write_json(path)
        else:
            path = folder / f"part-{f:03d}.csv"
            long.select(pl.col("date"), pl.col("client_id").alias("storage_account_id"),
                        pl.col("usage").alias("bytes")).write_csv(path)
        print(f"  {path.relative_to(out)}: {hi - lo:,} accounts, {long.height:,} records", file=sys.stderr)
    info["records"] = rows
    return info


# --------------------------------------------------------------------------- main


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def params_of(args) -> dict:
    p = {"month": MONTH, "accounts": args.accounts, "buckets": args.buckets,
         "snapshots_per_day": args.snapshots_per_day, "days": args.days, "format": args.format, "seed": args.seed}
    if args.format != "hourly-parquet":
        p["clients_per_file"] = args.clients_per_file
    else:
        # The file shape: changing it regenerates the workload.
        p["parquet"] = {"row_groups_per_file": args.row_groups, "compression": "zstd", "dictionary": True,
                        "dictionary_pagesize_limit": DICTIONARY_PAGE_LIMIT}
    return p


def stamp_of(meta: dict) -> str:
    """Identifies one generation of a workload (derived layouts must come from it)."""
    return f"{meta.get('generated_at', '')}/{meta.get('generation_seconds', '')}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gen-workload", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="workload folder (directory/ and usage/ go here)")
    ap.add_argument("--accounts", type=int, default=50_000, help="storage accounts in the directory")
    ap.add_argument("--buckets", type=int, default=2, help="buckets per account")
    ap.add_argument("--snapshots-per-day", type=int, default=24, help="hourly-parquet: snapshots per day")
    ap.add_argument("--days", type=int, default=MONTH_DAYS, help="days of 2026-10 with usage (1..31)")
    ap.add_argument("--format", choices=FORMATS, default="hourly-parquet")
    ap.add_argument("--clients-per-file", type=int, default=100_000, help="daily formats: accounts per file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--row-groups", type=int, default=20, help="hourly-parquet: row groups per day file")
    ap.add_argument("--layouts", default="days",
                    help="hourly-parquet: comma-separated layouts to make, of days (always), flat, month")
    ap.add_argument("--force", action="store_true", help="regenerate even if an identical workload exists")
    args = ap.parse_args(argv)
    if not 1 <= args.days <= MONTH_DAYS:
        ap.error("--days must be within 1..31")
    if args.accounts < 10 or args.buckets < 1 or args.snapshots_per_day < 1 or args.clients_per_file < 1:
        ap.error("--accounts >= 10, --buckets >= 1, --snapshots-per-day >= 1, --clients-per-file >= 1")
    if args.row_groups < 1:
        ap.error("--row-groups >= 1")
    layouts = [x for x in args.layouts.split(",") if x]
    if any(x not in LAYOUTS for x in layouts):
        ap.error(f"--layouts: each of {', '.join(LAYOUTS)}")
    if args.format != "hourly-parquet" and set(layouts) - {"days"}:
        ap.error("--layouts flat and month are for --format hourly-parquet")

    out: Path = args.out
    marker = out / "workload.json"
    params = params_of(args)
    if marker.exists() and not args.force:
        try:
            old = json.loads(marker.read_text())
        except ValueError:
            old = {}
        if old.get("params") == params:
            print(f"gen-workload: {out} already holds this workload (use --force to regenerate)")
            if args.format == "hourly-parquet":
                derive_layouts(out, layouts, stamp_of(old))
            return 0
    if out.exists():
        for sub in ("directory", "usage", "flat", "month", "layout-flat.json", "layout-month.json", "workload.json"):
            p = out / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.monotonic()
    rng = np.random.default_rng(args.seed)
    d = build_directory(args.accounts, rng)
    (out / "directory").mkdir(parents=True, exist_ok=True)
    for name, df in d["tables"].items():
        df.write_csv(out / "directory" / f"{name}.csv")
    t_dir = time.monotonic() - t0
    urng = np.random.default_rng([args.seed, 7])
    if args.format == "hourly-parquet":
        info = write_hourly(out, d, args, urng)
    else:
        info = write_daily(out, d, args, urng)
    elapsed = time.monotonic() - t0
    sizes = {"directory_bytes": du(out / "directory"), "usage_bytes": du(out / "usage")}
    meta = {"params": params, "counts": {**d["counts"], **info}, "sizes": sizes,
            "generation_seconds": round(elapsed, 1), "directory_seconds": round(t_dir, 1)}
    meta["generated_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, marker)
    if args.format == "hourly-parquet":
        derive_layouts(out, layouts, stamp_of(meta))
    c = meta["counts"]
    print(f"gen-workload: {out}  format={args.format} accounts={args.accounts:,} (+{N_UNKNOWN} unknown) "
          f"customers={c['customers']:,} contracts={c['contracts']:,}")
    print(f"  usage records: {c['records']:,}   usage on disk: {human(sizes['usage_bytes'])}   "
          f"directory: {human(sizes['directory_bytes'])}")
    print(f"  generated in {elapsed:.1f} s (directory {t_dir:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
