"""Run capbill on a scenario folder and compare with ref.py.

python3 compare.py SCENARIO_DIR MONTH [--unit tb|tib] [--daily-method mean|max]
SCENARIO_DIR holds directory/ and usage/. Prints differences; exit 1 if any.
"""
import csv
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref import reference  # noqa

# The binary under test (tests/it/reference.rs sets it to the one cargo built).
BIN = os.environ.get("CAPBILL_BIN", "capbill")


def run_capbill(scn, month, unit, method):
    scn = os.path.abspath(scn)
    out = os.path.join(scn, "out")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [BIN, "run", "--month", month, "--directory", os.path.join(scn, "directory"),
           "--usage", os.path.join(scn, "usage"), "--out", out, "--unit", unit, "--daily-method", method,
           "--log-format", "json"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=scn)
    return p, os.path.join(out, "billing_month=%s" % month, "revision=1")


def rd(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def capbill_results(rev):
    lines = rd(os.path.join(rev, "invoice_lines.csv"))
    invs = rd(os.path.join(rev, "invoices.csv"))
    au = rd(os.path.join(rev, "account_usage.csv"))
    fs = rd(os.path.join(rev, "findings.csv"))
    return lines, invs, au, fs


def fmt_ok(s, scale):
    return re.fullmatch(r"-?\d+\.\d{%d}" % scale, s) is not None


def compare(scn, month, unit="tb", method="mean", verbose=True):
    diffs = []
    p, rev = run_capbill(scn, month, unit, method)
    try:
        ref = reference(os.path.join(scn, "directory"), os.path.join(scn, "usage"), month, unit, method)
    except Exception as e:  # our bug
        import traceback; traceback.print_exc()
        return ["REF-ERROR %r" % e], p
    if p.returncode != 0:
        return ["CAPBILL exit %d: %s" % (p.returncode, p.stderr[-2000:])], p
    lines, invs, au, fs = capbill_results(rev)
    # ---- lines (order and content)
    cl = []
    for l in lines:
        if not fmt_ok(l["quantity"], 6):
            diffs.append("format quantity %s" % l["quantity"])
        if not fmt_ok(l["amount"], 2):
            diffs.append("format amount %s" % l["amount"])
        cl.append((l["seller_id"], l["buyer_id"], l["customer_id"], l["contract_id"], l["charge"],
                   Decimal(l["quantity"]), Decimal(l["unit_price"]), Decimal(l["amount"]), l["currency"],
                   int(l["days"]), l["deal_id"]))
    rl = [(l["seller_id"], l["buyer_id"], l["customer_id"], l["contract_id"], l["charge"], l["quantity"],
           l["unit_price"], l["amount"], l["currency"], l["days"], l["deal_id"]) for l in ref["lines"]]
    ck = {x[:5]: x for x in cl}
    rk = {x[:5]: x for x in rl}
    for k in sorted(set(ck) | set(rk)):
        a, b = ck.get(k), rk.get(k)
        if a is None:
            diffs.append("LINE missing in capbill: %s" % (b,))
        elif b is None:
            diffs.append("LINE extra in capbill: %s" % (a,))
        elif a != b:
            diffs.append("LINE differs %s\n   capbill %s\n   ref     %s" % (k, a[5:], b[5:]))
    if not diffs and [x[:5] for x in cl] != [x[:5] for x in rl]:
        diffs.append("LINE ORDER differs")
    # ---- invoices
    ci = {(i["seller_id"], i["buyer_id"], i["currency"]): (Decimal(i["total"]), int(i["lines"])) for i in invs}
    for k in sorted(set(ci) | set(ref["invoices"])):
        if ci.get(k) != ref["invoices"].get(k):
            diffs.append("INVOICE %s capbill %s ref %s" % (k, ci.get(k), ref["invoices"].get(k)))
    # ---- account usage
    ca = {r["storage_account_id"]: (r["owner_id"], int(r["byte_days"]), Decimal(r["tb_months"]),
                                    int(r["observed_days"]), int(r["filled_days"])) for r in au}
    for k in sorted(set(ca) | set(ref["usage"])):
        if ca.get(k) != ref["usage"].get(k):
            diffs.append("USAGE %s capbill %s ref %s" % (k, ca.get(k), ref["usage"].get(k)))
    # ---- findings
    cf = {}
    for f in fs:
        key = (f["kind"], f["subject_id"])
        if key in cf:
            diffs.append("FINDING duplicate %s" % (key,))
        bd = int(f["byte_days"]) if f["byte_days"] else None
        tb = Decimal(f["tb_months"]) if f["tb_months"] else None
        extra = None
        m = re.match(r"(\d+) days filled", f["detail"])
        if f["kind"] == "gap_filled" and m:
            extra = int(m.group(1))
        m = re.match(r"(\d+) conflicting", f["detail"])
        if f["kind"] == "conflicting_samples" and m:
            extra = int(m.group(1))
        m = re.match(r"(\d+) days of usage", f["detail"])
        if f["kind"] == "uncontracted_usage" and m:
            extra = int(m.group(1))
        cf[key] = (bd, tb, extra, f["detail"])
    for k in sorted(set(cf) | set(ref["findings"])):
        if k[0] in ("skipped_object", "total_dropped"):
            continue
        a, b = cf.get(k), ref["findings"].get(k)
        if a is None:
            diffs.append("FINDING missing in capbill: %s %s" % (k, b))
        elif b is None:
            diffs.append("FINDING extra in capbill: %s %s" % (k, a))
        else:
            if a[0] != b[0] or a[1] != b[1] or (k[0] != "allocation_exceeds_reserved" and a[2] != b[2]):
                diffs.append("FINDING differs %s capbill %s ref %s" % (k, a, b))
    if verbose:
        for d in diffs:
            print(d)
    return diffs, p


if __name__ == "__main__":
    args = sys.argv[1:]
    unit, method = "tb", "mean"
    if "--unit" in args:
        i = args.index("--unit"); unit = args[i + 1]; del args[i:i + 2]
    if "--daily-method" in args:
        i = args.index("--daily-method"); method = args[i + 1]; del args[i:i + 2]
    d, _ = compare(args[0], args[1], unit, method)
    print("OK" if not d else "%d differences" % len(d))
    sys.exit(1 if d else 0)
