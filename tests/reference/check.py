"""Differential check of capbill against ref.py on random months.

python3 check.py FIRST_SEED COUNT CASES_DIR   (CAPBILL_BIN names the binary)

Each seed makes one scenario (gen.py: a partner tree, contracts, deals,
accounts and usage objects in several layouts), bills it with capbill and
with the reference, and compares every line, invoice, account and finding.
A scenario that differs is kept under CASES_DIR/sSEED with the differences
printed; the exit code is 1 if any differs.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen import gen  # noqa: E402
from compare import compare  # noqa: E402

first, count, base = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bad = 0
for seed in range(first, first + count):
    d = os.path.join(base, "s%d" % seed)
    month, unit, method = gen(seed, d)
    diffs, _ = compare(d, month, unit, method, verbose=False)
    if diffs:
        bad += 1
        print("seed %d (%s %s %s): %d differences, kept in %s" % (seed, month, unit, method, len(diffs), d))
        for x in diffs[:10]:
            print("   ", x.replace("\n", "\n    "))
    else:
        shutil.rmtree(d)
print("scenarios %d, with differences %d" % (count, bad))
sys.exit(1 if bad else 0)
