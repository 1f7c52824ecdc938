"""Checks that capbill wrote the same outputs for every layout of one month.

Usage: python -m bench_lib.check_outputs --month 2026-10 --out days=OUT1 --out flat=OUT2 ...
           [--json-out FILE]

Each OUT is a `capbill run --out` folder. The revision that
OUT/billing_month=M/latest.json names is compared, file by file (SHA-256),
with the first OUT's: the invoice lines, invoices, account usage, findings
and FOCUS tables (CSV and Parquet) and the statements. manifest.json is left
out, since it holds the run's time and the usage objects' keys, which differ by
layout by design; so is latest.json, which holds the run's time.

Prints the SHA-256 of invoice_lines.csv and account_usage.csv per layout and
the files that differ. Exit status 1 when any file differs, is missing or
is extra, or when an OUT has no revision.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from bench_lib import conclude

SKIPPED = {"manifest.json"}
SHOWN = ("invoice_lines.csv", "account_usage.csv")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def outputs(out: Path, month: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every output file of the latest revision."""
    root = out / f"billing_month={month}"
    rev = int(json.loads((root / "latest.json").read_text())["revision"])
    folder = root / f"revision={rev}"
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in SKIPPED}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--month", default="2026-10")
    ap.add_argument("--out", action="append", default=[], help="LAYOUT=capbill-out folder")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)

    hashes: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for spec in args.out:
        name, path = spec.split("=", 1)
        try:
            hashes[name] = outputs(Path(path), args.month)
        except (OSError, ValueError, KeyError) as e:
            errors[name] = str(e)
    names = list(hashes)
    report: dict = {"layouts": names, "errors": errors, "differences": {}, "files": 0, "sha256": {}}
    ok = not errors
    if names:
        first = hashes[names[0]]
        report["files"] = len(first)
        for name in names:
            report["sha256"][name] = {f: hashes[name].get(f) for f in SHOWN}
            if name == names[0]:
                continue
            other = hashes[name]
            diff = sorted(f for f in set(first) | set(other) if first.get(f) != other.get(f))
            if diff:
                ok = False
                report["differences"][name] = diff
    print(f"capbill outputs across layouts ({', '.join(names) or 'none'}): "
          f"{report['files']} files compared (all but manifest.json)")
    for name in names:
        shown = "  ".join(f"{f} {(report['sha256'][name][f] or 'missing')[:16]}" for f in SHOWN)
        diff = report["differences"].get(name)
        verdict = "reference" if name == names[0] else ("IDENTICAL" if not diff else f"{len(diff)} files DIFFER")
        print(f"  {name:<6} {shown}  {verdict}")
        for f in (diff or [])[:10]:
            print(f"      differs: {f}")
    for name, e in errors.items():
        print(f"  {name:<6} no outputs ({e})")
    return conclude(report, ok, args.json_out, "OUTPUTS DIFFER between layouts")


if __name__ == "__main__":
    sys.exit(main())
