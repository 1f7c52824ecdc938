"""The table, the targets and the chart of one `scripts/bench` run.

Usage: python -m bench_lib.report --run-dir .bench/runs/<ts> [--chart FILE.svg]

Reads RUN_DIR/meta.json (machine, workloads, records), RUN_DIR/results.tsv
(one row per workload, layout, tool and repeat: a tool measured more than once
counts with its median wall time, its largest peak and the log of its median
run) and the checks (RUN_DIR/<workload>/
<layout>/check.json, RUN_DIR/<workload>/outputs.json), prints the table and
the targets, writes RUN_DIR/table.tsv (the table, one row per workload and
layout), RUN_DIR/table.md (the printed table in Markdown) and the chart (grouped bars of wall seconds, log scale, with the two
scan floors marked). Exit status 1 when a run failed or a check did not
match (targets missed do not change it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

NAMES = {"hourly": "W-hourly", "hourly10x": "10x W-hourly", "daily": "W-daily", "csv": "W-daily CSV"}
TOOLS = ("capbill", "capbill-base", "duckdb", "polars", "duckdb-scan", "parquet-scan")
# Targets of issue 16 (wall-time ratios are capbill / DuckDB's metering query).
HOURLY_DAYS_VS_DUCKDB = 0.25
HOURLY_DAYS_VS_SCAN = 3.0
HOURLY_OTHER_VS_DUCKDB = 0.3
PEAK_MIB = 1024
LINEAR_TOLERANCE = 0.15
BASELINE_TOLERANCE = 0.10
# Target of issue 17: FOCUS and the statements cost under 10 % of a W-hourly
# run and add at most 100 MiB to memory.
NEW_OUTPUTS_SHARE = 0.10
NEW_OUTPUTS_MIB = 100


def load(run: Path):
    meta = json.loads((run / "meta.json").read_text())
    runs: dict[tuple[str, str, str], list[dict]] = {}
    with (run / "results.tsv").open() as f:
        for r in csv.DictReader(f, delimiter="\t"):
            runs.setdefault((r["workload"], r["layout"], r["tool"]), []).append(r)
    return meta, {key: combine(rs) for key, rs in runs.items()}


def combine(runs: list[dict]) -> dict:
    """One row for a tool's repeats: the first run with a note (failed, killed,
    skipped) if any, else the median run (the lower middle one of an even
    count) with the median wall time and the largest peak of them all.
    `walls` lists every run's wall time, in order."""
    walls = [r.get("wall_s") or "-" for r in runs]
    noted = next((r for r in runs if r.get("note")), None)
    if noted is not None:
        return noted | {"walls": walls}
    by_wall = sorted(runs, key=lambda r: float(r["wall_s"]))
    middle = by_wall[(len(by_wall) - 1) // 2]
    peaks = [int(float(r["peak_rss_mib"])) for r in runs if r.get("peak_rss_mib")]
    return middle | {
        "wall_s": f"{statistics.median(float(r['wall_s']) for r in runs):.2f}",
        "peak_rss_mib": str(max(peaks)) if peaks else "",
        "walls": walls,
    }


def num(r) -> float | None:
    """Wall seconds of a finished run, else None."""
    if not r or r.get("note") or not r.get("wall_s"):
        return None
    return float(r["wall_s"])


def mib(r) -> int | None:
    if not r or not r.get("peak_rss_mib"):
        return None
    return int(float(r["peak_rss_mib"]))


def cell_s(r) -> str:
    if r is None:
        return "-"
    if r.get("note"):
        note = r["note"]
        return "skipped" if note.startswith("skipped") else ("killed" if note.startswith("killed") else "failed")
    return f"{float(r['wall_s']):.2f}"


def cell_mib(r) -> str:
    if r is None or r.get("note", "").startswith("skipped"):
        return "-"
    m = mib(r)
    return f"{m:,}" if m is not None else "-"


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def fmt_ratio(x) -> str:
    return f"{x:.2f}" if x is not None else "-"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--chart", type=Path, help="default: RUN_DIR/bench.svg")
    args = ap.parse_args(argv)
    run = args.run_dir
    meta, rows = load(run)
    small = meta.get("small", False)
    groups = [(w, l) for w in meta["workloads"] for l in meta["layouts"][w]]
    get = lambda w, l, t: rows.get((w, l, t))  # noqa: E731
    status = 0
    if any(r.get("note") and not r["note"].startswith("skipped") for r in rows.values()):
        status = 1

    # --- the table --------------------------------------------------------------
    print(f"\ncapbill benchmark, month {meta['month']}{' (--small: 1/50 size)' if small else ''}, "
          f"{meta['cores']} cores, {meta['ram_gib']} GiB RAM, {meta['capbill_version']}"
          f"{', baseline ' + meta['baseline_version'] if meta.get('baseline_version') else ''}")
    head = ["workload", "layout", "records", "capbill s", "MiB", "DuckDB s", "MiB", "polars s", "MiB",
            "DuckDB scan s", "pq scan s", "cb/DuckDB", "cb/DuckDB scan", "cb/pq scan", "checks", "targets"]
    has_base = any(t == "capbill-base" for (_, _, t) in rows)
    if has_base:
        head[5:5] = ["base s", "MiB"]
    table, tsv = [], []
    target_lines, checks_lines = [], []
    per_m = {}
    for w, l in groups:
        cb, dk, pl_, ds, ps = (get(w, l, t) for t in ("capbill", "duckdb", "polars", "duckdb-scan", "parquet-scan"))
        base = get(w, l, "capbill-base")
        records = meta["records"].get(w)
        cb_s, dk_s, ds_s, ps_s = num(cb), num(dk), num(ds), num(ps)
        r_dk, r_ds, r_ps = ratio(cb_s, dk_s), ratio(cb_s, ds_s), ratio(cb_s, ps_s)
        if cb_s is not None and records:
            per_m[(w, l)] = cb_s / (records / 1e6)

        # Checks: byte-days vs the references, outputs identical across layouts.
        check = read_json(run / w / l / "check.json")
        outputs = read_json(run / w / "outputs.json")
        if check is None:
            bd = "n/a"
        elif check.get("ok"):
            bd = "match"
        else:
            bd, status = "MISMATCH", 1
        checks = f"byte-days {bd}"
        if len(meta["layouts"][w]) > 1:
            if outputs is None:
                same = "n/a"
            elif l in outputs.get("differences", {}) or l in outputs.get("errors", {}):
                same, status = "DIFFER", 1
            elif outputs.get("layouts") and l == outputs["layouts"][0]:
                same = "reference"
            else:
                same = "same" if l in outputs.get("layouts", []) else "n/a"
            checks += f", outputs {same}"
        repeats = read_json(run / w / l / "repeats.json")
        if repeats is not None:
            if repeats.get("ok"):
                checks += ", repeats same"
            else:
                checks, status = checks + ", repeats DIFFER", 1

        # Targets.
        goals = []
        peak = mib(cb)
        if w in ("hourly", "hourly10x") and not small:
            if w == "hourly" and l == "days":
                goals.append((f"<= {HOURLY_DAYS_VS_DUCKDB} x DuckDB", r_dk, r_dk is not None and r_dk <= HOURLY_DAYS_VS_DUCKDB))
                goals.append((f"<= {HOURLY_DAYS_VS_SCAN:g} x DuckDB scan", r_ds, r_ds is not None and r_ds <= HOURLY_DAYS_VS_SCAN))
            elif w == "hourly":
                goals.append((f"<= {HOURLY_OTHER_VS_DUCKDB} x DuckDB", r_dk, r_dk is not None and r_dk <= HOURLY_OTHER_VS_DUCKDB))
            goals.append((f"peak <= {PEAK_MIB} MiB", peak, peak is not None and peak <= PEAK_MIB and cb_s is not None))
        if w == "daily" and not small:
            b = num(base)
            if b is not None:
                rb = ratio(cb_s, b)
                goals.append((f"<= {1 + BASELINE_TOLERANCE:.2f} x baseline", rb, rb is not None and rb <= 1 + BASELINE_TOLERANCE))
        # A goal whose figure was not measured (a tool not run, or failed) is n/a.
        word = lambda g: "n/a" if g[1] is None else ("met" if g[2] else "NOT met")  # noqa: E731
        words = [word(g) for g in goals]
        met = "-" if not goals else ("NO" if "NOT met" in words else ("yes" if all(x == "met" for x in words) else "n/a"))
        for g in goals:
            val = g[1]
            shown = "-" if val is None else (f"{val:,}" if isinstance(val, int) else f"{val:.2f}")
            target_lines.append(f"  {NAMES.get(w, w):<13} {l:<6} {g[0]:<24} {shown:>8}  {word(g)}")

        line = [NAMES.get(w, w), l, f"{records / 1e6:.1f} M" if records else "-", cell_s(cb), cell_mib(cb),
                cell_s(dk), cell_mib(dk), cell_s(pl_), cell_mib(pl_), cell_s(ds), cell_s(ps),
                fmt_ratio(r_dk), fmt_ratio(r_ds), fmt_ratio(r_ps), checks, met]
        if has_base:
            line[5:5] = [cell_s(base), cell_mib(base)]
        table.append(line)
        tsv.append(dict(zip(["workload", "layout", "records"], [w, l, records or ""])) | {
            "capbill_s": cb_s, "capbill_mib": peak, "capbill_base_s": num(base), "capbill_base_mib": mib(base),
            "duckdb_s": dk_s, "duckdb_mib": mib(dk), "polars_s": num(pl_), "polars_mib": mib(pl_),
            "duckdb_scan_s": ds_s, "parquet_scan_s": ps_s, "capbill_vs_duckdb": r_dk,
            "capbill_vs_duckdb_scan": r_ds, "capbill_vs_parquet_scan": r_ps, "byte_days": bd, "target_met": met,
            "notes": "; ".join(f"{t}: {get(w, l, t)['note']}" for t in TOOLS if get(w, l, t) and get(w, l, t).get("note")),
        })

    # The same table in Markdown, for bench/README.md.
    with (run / "table.md").open("w") as f:
        f.write("| " + " | ".join(head) + " |\n")
        f.write("|" + "|".join("---:" if h.endswith(" s") or h in ("MiB", "records") or h.startswith("cb/")
                               else "---" for h in head) + "|\n")
        for line in table:
            f.write("| " + " | ".join(str(x) for x in line) + " |\n")

    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    right = {i for i, h in enumerate(head) if h.endswith(" s") or h in ("MiB", "records") or h.startswith("cb/")}
    fmt = lambda row: "  ".join(str(x).rjust(wd) if i in right else str(x).ljust(wd)  # noqa: E731
                                for i, (x, wd) in enumerate(zip(row, widths))).rstrip()
    print(fmt(head))
    for line in table:
        print(fmt(line))
    print("(wall seconds and peak RSS; DuckDB and polars: the metering query of spec 2, steps 1-4; DuckDB scan:\n"
          " DuckDB reads the four columns once (count, sum of bytes, lengths of ids and buckets, max time);\n"
          " pq scan: the parquet crate alone decodes the same columns (examples/parquet_scan.rs);\n"
          " cb/X: capbill wall / X wall. Per-run CPU and load: results.tsv)")
    repeated = {key: r["walls"] for key, r in rows.items() if len(r.get("walls", [])) > 1}
    if repeated:
        print(f"each tool run {max(len(v) for v in repeated.values())} times in turn: median wall, largest peak;"
              " every run's wall (s):")
        for (w, l, t), walls in repeated.items():
            print(f"  {NAMES.get(w, w):<13} {l:<6} {t:<13} {' / '.join(walls)}")
    notes = [f"  {NAMES.get(t['workload'], t['workload'])} {t['layout']}: {t['notes']}" for t in tsv if t["notes"]]
    if notes:
        print("notes:\n" + "\n".join(notes))

    print("\ntargets (issue 16; paired runs on this machine):")
    if small:
        print("  none with --small (the targets are for the full sizes)")
    # Linear scaling: capbill seconds per million records at 1x and at 10x.
    for l in meta["layouts"].get("hourly10x", []):
        one, ten = per_m.get(("hourly", l)), per_m.get(("hourly10x", l))
        if ten is not None:
            if one is not None:
                r = ten / one
                target_lines.append(f"  {'10x W-hourly':<13} {l:<6} {'s per M records vs 1x':<24} {r:>8.2f}  "
                                    f"{'met' if r <= 1 + LINEAR_TOLERANCE and not small else ('NOT met' if not small else 'for scale')}"
                                    f"  ({one:.4f} s/M at 1x, {ten:.4f} s/M at 10x; target <= {1 + LINEAR_TOLERANCE:.2f})")
            else:
                target_lines.append(f"  {'10x W-hourly':<13} {l:<6} {'s per M records':<24} {ten:>8.4f}  "
                                    "(no 1x run of this layout in this run: --workload hourly,hourly10x)")
    if "daily" in meta["workloads"] and not small and not has_base:
        d = next((t for t in tsv if t["workload"] == "daily"), None)
        if d:
            target_lines.append(f"  {'W-daily':<13} {'json':<6} {'no slower than before':<24} {'':>8}  "
                                f"n/a without --baseline (capbill {d['capbill_s'] or '-'} s; "
                                "see bench/README.md for earlier figures)")
    if target_lines:
        print("\n".join(target_lines))
    elif not small:
        print("  (none apply to these workloads)")

    # Issue 17: what FOCUS and the statements cost a W-hourly run.
    costs = []
    for w, l in groups:
        if w != "hourly" or small:
            continue
        cost = new_outputs(log_of(run, get(w, l, "capbill"), w, l))
        cb_s = num(get(w, l, "capbill"))
        if cost is None or not cb_s:
            continue
        seconds, rss_mib = cost
        share = seconds / cb_s
        missed = share >= NEW_OUTPUTS_SHARE or (rss_mib is not None and rss_mib > NEW_OUTPUTS_MIB)
        word = "NOT met" if missed else ("met" if rss_mib is not None else "n/a (no memory figure)")
        costs.append(f"  {'W-hourly':<13} {l:<6} {'FOCUS + statements':<24} {share:>7.1%}  {word}"
                     f"  ({seconds:.2f} of {cb_s:.2f} s; resident memory +{rss_mib if rss_mib is not None else '?'} MiB"
                     f" at most; targets < {NEW_OUTPUTS_SHARE:.0%}, <= {NEW_OUTPUTS_MIB} MiB)")
    if costs:
        print("\ntargets (issue 17; the new outputs' share of the run, from capbill's export log):")
        print("\n".join(costs))

    # capbill's stages, from its JSON log.
    print()
    for w, l in groups:
        stages = capbill_stages(log_of(run, get(w, l, "capbill"), w, l))
        if stages:
            print(f"  {NAMES.get(w, w)} {l} capbill stages (s): {stages}")

    with (run / "table.tsv").open("w") as f:
        keys = list(tsv[0]) if tsv else []
        f.write("\t".join(keys) + "\n")
        for t in tsv:
            f.write("\t".join("" if t[k] is None else (f"{t[k]:.4f}" if isinstance(t[k], float) else str(t[k]))
                              for k in keys) + "\n")

    chart = args.chart or run / "bench.svg"
    try:
        draw(meta, groups, get, chart)
        print(f"\nchart: {chart}")
    except ImportError as e:
        print(f"\nno chart ({e})")
    return status


def log_of(run: Path, row: dict | None, w: str, l: str) -> Path:
    """The log of the run a row stands for (results.tsv's `log`; older runs
    had none: their one capbill run's)."""
    if row and row.get("log"):
        return run / row["log"]
    return run / w / l / "capbill.stderr"


def capbill_stages(path: Path) -> str:
    stages = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and "stage" in e and "elapsed_ms" in e:
            stages.append(f"{e['stage']} {e['elapsed_ms'] / 1000:.1f}")
            parts = [f"{k[:-3]} {e[k] / 1000:.2f}" for k in ("focus_ms", "statements_ms") if k in e]
            if parts:
                stages.append("(of which " + ", ".join(parts) + ")")
    return ", ".join(stages)


def new_outputs(path: Path) -> tuple[float, int | None] | None:
    """Seconds FOCUS and the statements took (focus_ms + statements_ms of the
    export log line: encoding FOCUS, then the span from the first statement
    rendered to the last one written) and the most they added to resident
    memory (outputs_rss_mib, sampled), from capbill's JSON log."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("stage") == "export" and "statements_ms" in e:
            return (e.get("focus_ms", 0) + e["statements_ms"]) / 1000, e.get("outputs_rss_mib")
    return None


def draw(meta: dict, groups, get, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [("capbill", "capbill", "#1f6fb4"), ("duckdb", "DuckDB query", "#e8a33d"), ("polars", "polars query", "#7aa457")]
    if any(get(w, l, "capbill-base") for w, l in groups):
        bars.insert(1, ("capbill-base", "capbill (baseline)", "#9ec3e6"))
    floors = [("duckdb-scan", "floor: DuckDB scan of the 4 columns", "#7a2c2c", "--"),
              ("parquet-scan", "floor: parquet crate scan", "#333333", ":")]
    n = len(bars)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 * len(groups) + 2.5), 5.2), dpi=100)
    values = [num(get(w, l, t)) for w, l in groups for t, *_ in bars + floors]
    finite = [v for v in values if v]
    lo = min(finite) if finite else 0.1
    hi = max(finite) if finite else 10
    bottom = 10 ** math.floor(math.log10(max(lo, 0.01) / 1.5))
    for i, (t, label, color) in enumerate(bars):
        xs, ys = [], []
        for g, (w, l) in enumerate(groups):
            x = g - 0.4 + width * (i + 0.5)
            r = get(w, l, t)
            v = num(r)
            if v is not None:
                xs.append(x), ys.append(v)
                ax.text(x, v * 1.06, f"{v:.1f}" if v < 100 else f"{v:.0f}", ha="center", va="bottom", fontsize=7)
            elif r is not None:
                word = "skipped" if r.get("note", "").startswith("skipped") else "failed"
                ax.text(x, bottom * 1.15, word, ha="center", va="bottom", fontsize=7, rotation=90, color="#666666")
        ax.bar(xs, ys, width * 0.92, label=label, color=color, bottom=0)
    for t, label, color, style in floors:
        first = True
        for g, (w, l) in enumerate(groups):
            v = num(get(w, l, t))
            if v is not None:
                ax.hlines(v, g - 0.45, g + 0.45, colors=color, linestyles=style, linewidth=1.6,
                          label=label if first else None)
                first = False
    ax.set_yscale("log")
    ax.set_ylim(bottom, hi * 2.2)
    ax.set_xticks(range(len(groups)))
    recs = meta["records"]
    ax.set_xticklabels([f"{NAMES.get(w, w)}\n{l}" + (f"\n{recs[w] / 1e6:.{0 if recs[w] >= 1e7 else 1}f} M records"
                                                   if recs.get(w) else "")
                        for w, l in groups], fontsize=8)
    ax.set_ylabel("wall time, seconds (log scale; lower is better)")
    small = " (--small: 1/50 size)" if meta.get("small") else ""
    ax.set_title(f"capbill vs DuckDB and polars, billing month {meta['month']}{small}\n"
                 f"{meta['cores']} cores, {meta['ram_gib']} GiB RAM, {meta['date']}", fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.25)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("floor"))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, loc="upper left", ncol=2,
              framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    fig.savefig(path.with_suffix(".png"))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
