"""Pieces shared by the benchmark's checks and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def conclude(report: dict, ok: bool, json_out: Path | None, failure: str) -> int:
    """Records the verdict in `report`, writes it to `json_out` if given, and
    returns a check's exit status: 0, or 1 after printing `failure` to stderr."""
    report["ok"] = ok
    if json_out:
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    if not ok:
        print(failure, file=sys.stderr)
        return 1
    return 0
