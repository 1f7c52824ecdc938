"""Random scenario generator: python3 gen.py SEED OUTDIR -> prints 'MONTH UNIT METHOD'."""
import csv
import datetime as dt
import json
import os
import random
import shutil
import sys

MONTHS = ["2026-10", "2026-11", "2026-02", "2024-02", "2026-09", "2026-06"]
U64 = 2**64 - 1
try:
    import pyarrow  # noqa
    PARQUET = True
except ImportError:
    PARQUET = False


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref import month_days as month_bounds  # noqa: E402  (first day, next month's first day, days)


def price(r):
    return r.choice(["6.00", "7.50", "9.90", "0.50", "12.345", "8.1234", "10", "0.01", "5.55", "3.3333", "7.99", "0", "0.000001",
                     "%d.%02d" % (r.randint(0, 20), r.randint(0, 99))])


def gen(seed, out):
    r = random.Random(seed)
    month = r.choice(MONTHS)
    unit = r.choice(["tb", "tb", "tb", "tib"])
    method = r.choice(["mean", "mean", "max"])
    first, end, D = month_bounds(month)
    day = lambda i: first + dt.timedelta(i)  # noqa

    def rdate(lo=-40, hi=None):
        hi = D + 10 if hi is None else hi
        return day(r.randint(lo, hi))

    ents = [("ic", "Vendor Cloud", "vendor", "", "")]
    customers, partners = [], []
    for i in range(r.randint(0, 2)):
        d = "dist-%d" % i
        ents.append((d, "Dist %d" % i, "distributor", "", "ic"))
        for j in range(r.randint(0, 2)):
            p = "dp-%d%d" % (i, j)
            ents.append((p, "Partner %d%d" % (i, j), "channel_partner", r.choice(["var", "msp"]), d))
            partners.append(p)
            for k in range(r.randint(0, 2)):
                c = "cust-%d%d%d" % (i, j, k)
                ents.append((c, "Cust, %d%d%d" % (i, j, k), "customer", "", p))
                customers.append(c)
        if r.random() < 0.4:
            c = "cust-d%d" % i
            ents.append((c, "DCust %d" % i, "customer", "", d))
            customers.append(c)
    for i in range(r.randint(0, 2) if len(ents) > 1 else r.randint(1, 2)):
        p = "cp-%d" % i
        ents.append((p, "Channel %d" % i, "channel_partner", r.choice(["msp", "var"]), "ic"))
        partners.append(p)
        for k in range(r.randint(0, 3)):
            c = "cust-c%d%d" % (i, k)
            ents.append((c, "CCust %d%d" % (i, k), "customer", "", p))
            customers.append(c)
    if r.random() < 0.2:
        ents.append(("cust-v", "Direct", "customer", "", "ic"))
        customers.append("cust-v")
    if partners and r.random() < 0.2:
        p = r.choice(partners)
        ents.append(("sub-" + p, "Sub " + p, "channel_partner", "msp", p))
        partners.append("sub-" + p)
        ents.append(("cust-s" + p, "SubCust", "customer", "", "sub-" + p))
        customers.append("cust-s" + p)
    if customers and r.random() < 0.1:
        c = r.choice(customers)
        ents.append(("kid-" + c, "Kid", "customer", "", c))
        customers.append("kid-" + c)

    # accounts
    accounts = []
    for e in ents:
        eid, kind = e[0], e[2]
        n = 0
        if kind == "customer":
            n = r.choice([1, 1, 1, 2, 2, 3, 0])
        elif kind == "channel_partner":
            n = 1 if r.random() < 0.3 else 0
        elif kind == "distributor":
            n = 1 if r.random() < 0.15 else 0
        else:
            n = 1 if r.random() < 0.08 else 0
        for j in range(n):
            created = deleted = ""
            x = r.random()
            if x < 0.15:
                created = rdate(-5, D - 1).isoformat()
            elif x < 0.25:
                deleted = rdate(1, D + 3).isoformat()
            elif x < 0.32:
                c = r.randint(-3, D - 2)
                created = day(c).isoformat()
                deleted = day(r.randint(c + 1, D + 2)).isoformat()
            elif x < 0.35:
                deleted = rdate(-20, 0).isoformat()  # gone before month
            elif x < 0.38:
                created = day(D + r.randint(0, 5)).isoformat()  # after month
            accounts.append(("sa-%s-%d" % (eid, j), "Co %s" % eid, eid, created, deleted))

    # contracts
    contracts = []
    kn = 0
    parent = {e[0]: e[4] for e in ents}
    for e in ents:
        eid, kind = e[0], e[2]
        if kind == "vendor":
            continue
        x = r.random()
        segs = []
        before = day(-r.randint(1, 400))
        if x < 0.55:
            segs = [(before, r.choice(["", "", day(D + r.randint(0, 30)).isoformat()]))]
        elif x < 0.7:
            s = day(r.randint(1, D - 1))
            segs = [(before, s.isoformat()), (s, "")]
        elif x < 0.8:
            s1 = r.randint(1, D - 2)
            s2 = r.randint(s1 + 1, D - 1)
            segs = [(before, day(s1).isoformat()), (day(s2), "")]
        elif x < 0.87:
            segs = [(day(r.randint(0, D - 1)), "")]
        elif x < 0.93:
            segs = [(before, day(r.randint(1, D - 1)).isoformat())]
        elif x < 0.96:
            s1 = r.randint(0, D - 3)
            s2 = r.randint(s1 + 1, D - 1)
            segs = [(day(s1), day(s2).isoformat())]
        # else: no contract
        if r.random() < 0.15:  # an extra contract wholly outside the month
            if not segs or segs[0][0] >= day(-60):
                segs.insert(0, (day(-90), day(-60).isoformat()))
            elif segs[-1][1] != "" and segs[-1][1] <= day(D).isoformat():
                segs.append((day(D + 5), ""))
        for start, endd in segs:
            kn += 1
            if kind == "distributor":
                model = r.choice(["reserved", "reserved", "pay_per_use"])
            else:
                model = r.choice(["reserved", "pay_per_use", "pay_per_use"])
            cur = "EUR" if r.random() < 0.85 else "USD"
            if model == "reserved":
                rtb = r.choice(["0", "0.5", "1", "10", "20.123457", "50", "100", "100.000001", "150", "2.000001",
                                "0.000001", str(r.randint(1, 300))])
                ov = r.choice(["", price(r)])
                row = ("K%03d" % kn, parent[eid], eid, model, rtb, price(r), ov, "", cur, start.isoformat(), endd)
            else:
                mn = r.choice(["", "", "0", "0.5", "1", "2.345678", "0.000001", "3", "250"])
                row = ("K%03d" % kn, parent[eid], eid, model, "", price(r), "", mn, cur, start.isoformat(), endd)
            contracts.append(row)

    # deals
    deals = []
    if partners:
        owners = sorted({a[2] for a in accounts}) or customers
        for i in range(r.randint(0, 8)):
            if not owners:
                break
            c = r.choice(owners)
            vf = rdate(-60, D + 3) if r.random() < 0.6 else r.choice([first, day(3), day(-10)])
            vt = r.choice(["", (vf + dt.timedelta(r.randint(1, 60))).isoformat()])
            deals.append(("DR-%02d" % r.randint(0, 99), r.choice(partners), c, str(r.choice([50, 150, 200])),
                          r.choice(["", "4.50", "6.5", "3.123", "0", "0.005"]),
                          r.choice(["approved", "approved", "registered", "rejected"]), vf.isoformat(), vt))
        # unique deal ids
        seen = set()
        deals = [d for d in deals if not (d[0] in seen or seen.add(d[0]))]

    # usage records: (account, bucket, instant(datetime utc), bytes, is_date)
    recs = []
    ids = [a[0] for a in accounts] + ["ghost-%d" % i for i in range(r.choice([0, 0, 1, 2]))]
    for a in ids:
        pat = r.random()
        if pat < 0.12:
            continue
        mag = r.choice(["small", "tb", "tb", "big", "huge", "half"])
        buckets = r.choice([[""], ["b1"], ["b1", "b2"], ["media", "logs", ""]])
        if pat < 0.5:
            dset = list(range(D))
        else:
            dset = sorted(r.sample(range(-2, D + 2), r.randint(1, min(D, 8))))
        use_dates = r.random() < 0.25
        jitter = r.random() < 0.2
        for i in dset:
            nsnap = 1 if use_dates else r.choice([1, 1, 2, 3])
            hours = r.sample(range(24), nsnap)
            for h in hours:
                inst = dt.datetime.combine(day(i), dt.time(0 if use_dates else h, 0 if use_dates else r.choice([0, 0, 30])))
                for b in (buckets if not use_dates else [""]):
                    if jitter and not use_dates:
                        inst = inst.replace(second=r.randint(0, 59))
                    if mag == "small":
                        v = r.randint(0, 10**9)
                    elif mag == "tb":
                        v = r.randint(10**11, 3 * 10**13)
                    elif mag == "big":
                        v = r.randint(10**14, 6 * 10**14)
                    elif mag == "huge":
                        v = U64 - r.randint(0, 10**6)
                    else:
                        v = r.randint(0, 20) * 10**6 + 500000 + r.choice([0, 0, 1])
                        if unit == "tib":
                            v = r.randint(1, 2**41)
                    recs.append([a, b, inst, v, use_dates])
    # duplicates
    for rec in list(recs):
        if r.random() < 0.06:
            v = rec[3] if r.random() < 0.5 else max(0, rec[3] - r.randint(1, 1000))
            recs.append([rec[0], rec[1], rec[2], v, rec[4]])
    r.shuffle(recs)

    # objects
    cand = ["a.csv", "a/x.csv", "a-b/y.csv", "b/z.jsonl", "b.jsonl", "c/d/e.csv", "A.csv", "a.b/w.csv", "z-api.json",
            "zz/dates.csv", "a/dates.csv"]
    if PARQUET:
        cand += ["p/part-0.parquet", "p/part-1.parquet", "q.parquet", "pd/dates.parquet"]
    objs = r.sample(cand, r.randint(2, 5))
    ts_objs = [o for o in objs if (o.endswith(".csv") or o.endswith(".parquet") or o.endswith(".jsonl"))
               and "dates" not in o] or ["a.csv"]
    dt_objs = [o for o in objs if "dates" in o or o.endswith(".json")] or ["zz/dates.csv"]
    content = {}
    layout = r.choice(["flat", "flat", "day", "month", "mixed"])
    y, mth = month.split("-")
    for rec in recs:
        o = r.choice(dt_objs if rec[4] else ts_objs)
        if o.endswith(".json") and rec[1] != "":
            o = "zz/dates.csv"
        if not rec[4] and (layout == "day" or (layout == "mixed" and r.random() < 0.5)):
            # a day folder within one day of the record's UTC day (README: D-1, D, D+1)
            dd = rec[2].date() + dt.timedelta(r.choice([0, 0, 0, -1, 1]) if rec[2].hour in (0, 23) else 0)
            if rec[2].hour == 0 and dd > rec[2].date():
                dd = rec[2].date()
            if rec[2].hour == 23 and dd < rec[2].date():
                dd = rec[2].date()
            style = r.choice(["dt=%s/part-%d.csv", "%s/h%d.jsonl", "date=%s/p%d.csv"] +
                             (["dt=%s/s%d.parquet"] if PARQUET else []))
            o = style % (dd.isoformat(), r.randint(0, 1))
        elif not rec[4] and (layout == "month" or (layout == "mixed" and r.random() < 0.3)):
            if rec[2].strftime("%Y-%m") != month:
                continue  # such a record would be in another month's folder, never read for M
            o = r.choice(["%s/m%d.csv", "month=%s/m%d.jsonl"] + (["%s/m%d.parquet"] if PARQUET else [])) % (
                month, r.randint(0, 2))
        content.setdefault(o, []).append(rec)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "directory"))
    os.makedirs(os.path.join(out, "usage"))

    def wcsv(name, header, rows):
        with open(os.path.join(out, "directory", name), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)

    wcsv("entities.csv", ["entity_id", "name", "kind", "partner_type", "parent_id"], ents)
    wcsv("storage_accounts.csv", ["storage_account_id", "company_name", "owner_id", "created_on", "deleted_on"], accounts)
    wcsv("contracts.csv", ["contract_id", "seller_id", "buyer_id", "model", "reserved_tb", "unit_price", "overage_price",
                           "minimum_tb", "currency", "start_date", "end_date"], contracts)
    wcsv("deals.csv", ["deal_id", "partner_id", "customer_id", "volume_tb", "special_price", "status", "valid_from",
                       "valid_to"], deals)

    def fmt_ts(inst):
        x = r.random()
        if x < 0.45:
            return inst.strftime("%Y-%m-%dT%H:%M:%SZ")
        if x < 0.6:
            return inst.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if x < 0.75:
            return (inst + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
        if x < 0.85:
            return (inst - dt.timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S-05:30")
        return inst.strftime("%Y-%m-%dT%H:%M:%S")

    for o, rs in content.items():
        p = os.path.join(out, "usage", o)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if o.endswith(".parquet"):
            import pyarrow as pa
            import pyarrow.parquet as pq
            is_date = "dates" in o
            unit_ = r.choice(["s", "ms", "us", "ns"])
            tz = r.choice([None, "UTC", "+02:00"])
            accs = [rec[0] for rec in rs]
            if is_date:
                tarr = pa.array([rec[2].date() for rec in rs], pa.date32())
            else:
                tarr = pa.array([rec[2].replace(tzinfo=dt.timezone.utc) if tz else rec[2] for rec in rs],
                                pa.timestamp(unit_, tz=tz))
            big = any(rec[3] >= 2**63 for rec in rs)
            btype = "u64" if big else r.choice(["u64", "i64", "str"])
            if btype == "str":
                barr = pa.array([str(rec[3]) for rec in rs], pa.string())
            else:
                barr = pa.array([rec[3] for rec in rs], pa.uint64() if btype == "u64" else pa.int64())
            cols = {"storage_account_id": pa.array(accs, pa.string()).dictionary_encode() if r.random() < 0.5
                    else pa.array(accs, pa.string()),
                    ("date" if is_date else "timestamp"): tarr, "bytes": barr}
            if any(rec[1] != "" for rec in rs) or r.random() < 0.3:
                cols["bucket"] = pa.array([rec[1] for rec in rs], pa.string())
            pq.write_table(pa.table(cols), p, row_group_size=r.choice([2, 5, 17, 1000]),
                           write_statistics=r.random() < 0.9)
        elif o.endswith(".json"):
            by = {}
            for rec in rs:
                by.setdefault(rec[0], []).append({"date": rec[2].date().isoformat(), "usage": rec[3],
                                                  "allocated_capacity": 0})
            arr = [{"client_id": a, "name": a, "allocated_capacity": 0, "daily_usage": v} for a, v in by.items()]
            with open(p, "w") as f:
                json.dump(arr, f)
        elif o.endswith(".jsonl"):
            with open(p, "w") as f:
                for rec in rs:
                    obj = {"storage_account_id": rec[0], "timestamp": fmt_ts(rec[2]),
                           "bytes": rec[3] if r.random() < 0.7 else str(rec[3])}
                    if rec[1] != "":
                        obj["bucket"] = rec[1]
                    f.write(json.dumps(obj) + "\n")
        else:
            is_date = "dates" in o
            has_bucket = any(rec[1] != "" for rec in rs) or r.random() < 0.3
            with open(p, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["storage_account_id", "date" if is_date else "timestamp", "bytes"] +
                           (["bucket"] if has_bucket else []))
                for rec in rs:
                    t = rec[2].date().isoformat() if is_date else fmt_ts(rec[2])
                    w.writerow([rec[0], t, rec[3]] + ([rec[1]] if has_bucket else []))
    return month, unit, method


if __name__ == "__main__":
    print(*gen(int(sys.argv[1]), sys.argv[2]))
