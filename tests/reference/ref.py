"""Independent reference implementation of billing-spec.md sections 2 and 3.

reference(directory_dir, usage_dir, month, unit='tb', method='mean') -> dict with
  lines:     list of dicts (seller_id, buyer_id, customer_id, contract_id, charge,
             quantity, unit_price, amount, currency, days, deal_id)
  invoices:  {(seller, buyer, currency): (total, nlines)}
  usage:     {account: (owner, byte_days, tb_months, observed, filled)}
  findings:  {(kind, subject): (byte_days or None, tb_months or None, extra)}
"""
import csv
import datetime as dt
import json
import os
import re
from decimal import Decimal, ROUND_HALF_UP
from fractions import Fraction
from collections import defaultdict

Q6 = Decimal("0.000001")
Q2 = Decimal("0.01")


def half_away_int(fr):
    """round a non-negative/any Fraction half away from zero to an integer"""
    if fr < 0:
        return -half_away_int(-fr)
    n, d = fr.numerator, fr.denominator
    q, r = divmod(n, d)
    if 2 * r >= d:
        q += 1
    return q


def round6(fr):
    fr = Fraction(fr)
    return Decimal(half_away_int(fr * 10**6)) / Decimal(10**6)


def round2(dec):
    return Decimal(dec).quantize(Q2, rounding=ROUND_HALF_UP)


def parse_date(s):
    return dt.date.fromisoformat(s)


TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})?$")


def parse_time(s):
    """-> (utc datetime at microsecond precision as integer micros since epoch)"""
    s = s.strip()
    m = TS_RE.match(s)
    if not m:
        if re.match(r"^\d{4}-\d{2}-\d{2}$", s):
            d = dt.date.fromisoformat(s)
            return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp()) * 10**6
        raise ValueError("bad timestamp %r" % s)
    y, mo, da, h, mi, se, frac, zone = m.groups()
    base = dt.datetime(int(y), int(mo), int(da), int(h), int(mi), int(se), tzinfo=dt.timezone.utc)
    micros = int(base.timestamp()) * 10**6
    if frac:
        f = frac[1:]
        micros += int((f + "000000")[:6])  # truncate beyond microseconds (capbill keeps micro)
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        off = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60 * 10**6
        micros -= sign * off
    return micros


def micros_to_date(us):
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)).date()


def read_table(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def month_days(month):
    y, m = map(int, month.split("-"))
    first = dt.date(y, m, 1)
    nxt = dt.date(y + (m == 12), 1 if m == 12 else m + 1, 1)
    return first, nxt, (nxt - first).days


def list_usage(usage_dir):
    keys = []
    for root, dirs, files in os.walk(usage_dir):
        for fn in files:
            p = os.path.join(root, fn)
            k = os.path.relpath(p, usage_dir).replace(os.sep, "/")
            keys.append(k)
    keys.sort(key=lambda k: k.encode("utf-8"))
    return keys


def read_usage_object(path):
    """yields dict(account, time_us, bytes, bucket)"""
    out = []
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            r = csv.DictReader(f)
            for row in r:
                if all((v or "").strip() == "" for v in row.values()):
                    continue
                t = row.get("timestamp") if "timestamp" in row else row.get("date")
                out.append(dict(account=row["storage_account_id"].strip(), t=parse_time(t),
                                bytes=int(row["bytes"].strip()), bucket=row.get("bucket") or ""))
    elif path.endswith(".jsonl") or path.endswith(".ndjson"):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                o = json.loads(line)
                t = o.get("timestamp") if "timestamp" in o else o.get("date")
                out.append(dict(account=str(o["storage_account_id"]).strip(), t=parse_time(t),
                                bytes=int(o["bytes"]), bucket=o.get("bucket") or ""))
    elif path.endswith(".parquet"):
        import pyarrow.parquet as pq
        t = pq.read_table(path)
        cols = t.column_names
        tcol = "timestamp" if "timestamp" in cols else "date"
        acc = t.column("storage_account_id").to_pylist()
        tv = t.column(tcol)
        import pyarrow as pa
        if pa.types.is_timestamp(tv.type):
            tv = tv.cast(pa.timestamp("us", tz=tv.type.tz)).cast(pa.int64()).to_pylist()
        elif pa.types.is_date(tv.type):
            tv = [int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp()) * 10**6
                  for d in tv.to_pylist()]
        else:
            tv = [parse_time(x) for x in tv.to_pylist()]
        by = t.column("bytes").to_pylist()
        bk = t.column("bucket").to_pylist() if "bucket" in cols else [""] * len(acc)
        for a, tt, b, k in zip(acc, tv, by, bk):
            out.append(dict(account=str(a).strip(), t=tt, bytes=int(b), bucket=k or ""))
    elif path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            arr = json.load(f)
        for client in arr:
            for e in client["daily_usage"]:
                out.append(dict(account=str(client["client_id"]).strip(), t=parse_time(e["date"]),
                                bytes=int(e["usage"]), bucket=""))
    return out


def reference(directory, usage_dir, month, unit="tb", method="mean"):
    UNIT = 10**12 if unit == "tb" else 2**40
    first, end, D = month_days(month)
    days = [first + dt.timedelta(i) for i in range(D)]
    idx = {d: i for i, d in enumerate(days)}

    ents = read_table(os.path.join(directory, "entities.csv"))
    accts = read_table(os.path.join(directory, "storage_accounts.csv"))
    contracts = read_table(os.path.join(directory, "contracts.csv"))
    deals = read_table(os.path.join(directory, "deals.csv"))

    E = {e["entity_id"]: e for e in ents}
    parent = {e["entity_id"]: (e["parent_id"] or None) for e in ents}
    vendor = [e["entity_id"] for e in ents if e["kind"] == "vendor"][0]
    children = defaultdict(list)
    for e, p in parent.items():
        if p:
            children[p].append(e)

    def subtree(e):
        out = [e]
        for c in children[e]:
            out += subtree(c)
        return out

    A = {a["storage_account_id"]: a for a in accts}

    # ---------------- metering ----------------
    # (account, bucket, time) -> list of values in order (object key order, then row order)
    recs = defaultdict(list)
    for k in list_usage(usage_dir):
        for r in read_usage_object(os.path.join(usage_dir, k)):
            recs[(r["account"], r["bucket"], r["t"])].append(r["bytes"])
    conflicts = defaultdict(int)
    snap = defaultdict(int)  # (account, time) -> sum
    for (a, b, t), vals in recs.items():
        day = micros_to_date(t)
        if day not in idx:
            continue
        if len(set(vals)) > 1:
            conflicts[a] += 1
        snap[(a, t)] += vals[-1]
    per_day = defaultdict(list)  # (account, dayidx) -> snapshot values
    for (a, t), v in snap.items():
        per_day[(a, idx[micros_to_date(t)])].append(v)
    obs = defaultdict(dict)  # account -> {dayidx: value}
    for (a, i), vals in per_day.items():
        if method == "mean":
            v = half_away_int(Fraction(sum(vals), len(vals)))
        else:
            v = max(vals)
        obs[a][i] = v

    u = {}  # account -> {dayidx: value} for counting days
    usage = {}
    findings = {}
    all_accounts = set(A) | set(obs)
    for a in sorted(all_accounts):
        o = obs.get(a, {})
        if a in A:
            acc = A[a]
            ws = parse_date(acc["created_on"]) if acc["created_on"] else first
            we = parse_date(acc["deleted_on"]) if acc["deleted_on"] else end
            window = [i for i, d in enumerate(days) if ws <= d < we]
        else:
            window = []
        vals = dict(o)
        filled = 0
        if window and not o:
            for i in window:
                vals[i] = 0
            findings[("no_usage_data", a)] = (None, None, None)
        else:
            obs_days = sorted(o)
            for i in window:
                if i in o:
                    continue
                earlier = [j for j in obs_days if j < i]
                later = [j for j in obs_days if j > i]
                vals[i] = o[earlier[-1]] if earlier else o[later[0]]
                filled += 1
        if not vals:
            continue
        u[a] = vals
        bd = sum(vals.values())
        usage[a] = (A[a]["owner_id"] if a in A else "", bd, round6(Fraction(bd, D * UNIT)), len(o), filled)
        if filled:
            findings[("gap_filled", a)] = (None, None, filled)
        if a not in A:
            findings[("unknown_storage_account", a)] = (bd, round6(Fraction(bd, D * UNIT)), None)
    for a, n in conflicts.items():
        findings[("conflicting_samples", a)] = (None, None, n)

    # per-entity daily sums and active days (known accounts only)
    ebytes = defaultdict(lambda: [0] * D)
    eactive = defaultdict(lambda: [False] * D)
    owned = defaultdict(list)
    for a, acc in A.items():
        owned[acc["owner_id"]].append(a)
        for i, v in u.get(a, {}).items():
            ebytes[acc["owner_id"]][i] += v
            eactive[acc["owner_id"]][i] = True

    # ---------------- contracts ----------------
    K = []
    for k in contracts:
        k = dict(k)
        k["start"] = parse_date(k["start_date"])
        k["end"] = parse_date(k["end_date"]) if k["end_date"] else None
        k["days"] = [i for i, d in enumerate(days) if k["start"] <= d and (k["end"] is None or d < k["end"])]
        K.append(k)

    def contract_on(buyer, i):
        for k in K:
            if k["buyer_id"] == buyer and i in k["days"]:
                return k
        return None

    def deal_valid(deal, d):
        return parse_date(deal["valid_from"]) <= d and (not deal["valid_to"] or d < parse_date(deal["valid_to"]))

    lines = []

    def line(k, cust, charge, qty, price, ndays, deal_id=""):
        price = Decimal(price)
        lines.append(dict(seller_id=k["seller_id"], buyer_id=k["buyer_id"], customer_id=cust,
                          contract_id=k["contract_id"], charge=charge, quantity=qty, unit_price=price,
                          amount=round2(qty * price), currency=k["currency"], days=ndays, deal_id=deal_id))

    for k in K:
        Ad = k["days"]
        if not Ad:
            continue
        b = k["buyer_id"]
        if k["model"] == "reserved":
            rtb = Fraction(Decimal(k["reserved_tb"]))
            allowance = round6(rtb * len(Ad) / D)
            line(k, b, "reserved", allowance, k["unit_price"], len(Ad))
            bd = sum(ebytes[e][i] for e in subtree(b) for i in Ad)
            used = round6(Fraction(bd, D * UNIT))
            if used - allowance > 0:
                line(k, b, "overage", used - allowance, k["overage_price"] or k["unit_price"], len(Ad))
        else:
            mtb = Fraction(Decimal(k["minimum_tb"])) if k["minimum_tb"] != "" else Fraction(1)
            for c in sorted(subtree(b)):
                if not owned.get(c):
                    continue
                C = [i for i in Ad if eactive[c][i]]
                if not C:
                    continue
                U = round6(Fraction(sum(ebytes[c][i] for i in C), D * UNIT))
                price, deal_id = k["unit_price"], ""
                if k["seller_id"] == vendor:
                    cands = [dl for dl in deals if dl["customer_id"] == c and dl["status"] == "approved"
                             and dl["special_price"] != "" and deal_valid(dl, days[C[0]])]
                    if cands:
                        cands.sort(key=lambda dl: (-parse_date(dl["valid_from"]).toordinal(), dl["deal_id"]))
                        price, deal_id = cands[0]["special_price"], cands[0]["deal_id"]
                line(k, c, "usage", U, price, len(C), deal_id)
                mq = round6(mtb * len(C) / D) - U
                if mq > 0:
                    line(k, c, "minimum", mq, price, len(C), deal_id)

    lines.sort(key=lambda l: (l["seller_id"], l["buyer_id"], l["customer_id"], l["contract_id"], l["charge"]))
    invoices = defaultdict(lambda: [Decimal("0.00"), 0])
    for l in lines:
        inv = invoices[(l["seller_id"], l["buyer_id"], l["currency"])]
        inv[0] += l["amount"]
        inv[1] += 1
    invoices = {k: tuple(v) for k, v in invoices.items()}

    # ---------------- findings of 3.3 ----------------
    # deal_registration_missing
    for c in sorted(owned):
        bd = sum(ebytes[c])
        used = round6(Fraction(bd, D * UNIT))
        res = [Decimal(k["reserved_tb"]) for k in K if k["buyer_id"] == c and k["model"] == "reserved" and k["days"]]
        if used > 100 or any(r > 100 for r in res):
            has = any(dl["customer_id"] == c and dl["status"] == "approved" and any(deal_valid(dl, d) for d in days)
                      for dl in deals)
            if not has:
                findings[("deal_registration_missing", c)] = (bd, used, None)
    # allocation_exceeds_reserved (spec text; vendor's children never checked: README decision)
    for e in E:
        if e == vendor or not children[e]:
            continue
        for i in range(D):
            ch = [contract_on(c, i) for c in children[e]]
            ch = [k for k in ch if k is not None and k["model"] == "reserved"]
            if not ch:
                continue
            alloc = sum(Decimal(k["reserved_tb"]) for k in ch)
            own = contract_on(e, i)
            if own is None or own["model"] == "pay_per_use" or alloc > Decimal(own["reserved_tb"]):
                findings[("allocation_exceeds_reserved", e)] = (None, None, days[i])
                break
    # uncontracted_usage
    for a in sorted(A):
        if a not in u:
            continue
        o = A[a]["owner_id"]
        chain = []
        x = o
        while parent.get(x):
            chain.append(x)
            x = parent[x]
        unc = set()
        for i in range(D):
            if o == vendor or any(contract_on(b, i) is None for b in chain):
                unc.add(i)
        cd = [i for i in u[a] if i in unc]
        if cd:
            bd = sum(u[a][i] for i in cd)
            findings[("uncontracted_usage", a)] = (bd, round6(Fraction(bd, D * UNIT)), len(cd))
    return dict(lines=lines, invoices=invoices, usage=usage, findings=findings)
