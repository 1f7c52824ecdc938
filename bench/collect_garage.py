"""The collect benchmark: `capbill collect` of N buckets from a one-node
Garage, against the server's own time for the same listing.

Starts Garage with scripts/garage-local (free ports, a temporary folder),
creates K access keys named after storage accounts and N buckets, each owned
by one of them, then measures, best of --repeat:

  server   fetching every page of GET /v2/ListBucketsInfo (the listing that
           capbill does) over one keep-alive connection: the floor, what
           Garage itself needs to answer;
  capbill  the whole `capbill collect` (listing, attribution, Parquet,
           create-only write), under /usr/bin/time -v for its peak RSS.

Then checks that the last snapshot holds N rows whose bytes add up to what
the server reports. Prints one table; exit status 1 when a check fails.
"""

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Admin:
    """The admin API over one keep-alive connection."""

    def __init__(self, endpoint: str, token: str):
        host, port = endpoint.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body=None):
        self.conn.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise SystemExit(f"{method} {path}: HTTP {r.status}: {data[:300]!r}")
        return json.loads(data) if data else None


def list_all(admin: Admin, page: int):
    buckets, offset = [], None
    while True:
        q = f"/v2/ListBucketsInfo?limit={page}" + (f"&offset={offset}" if offset else "")
        got = admin.call("GET", q)
        new = [b for b in got if b["id"] != offset]
        buckets += new
        if len(got) < page or not new:
            return buckets
        offset = new[-1]["id"]


def measure(cmd, env, log: Path):
    t = log.with_suffix(".time")
    start = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(["/usr/bin/time", "-v", "-o", str(t), *cmd], env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t.read_text()).group(1)) // 1024
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return wall, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capbill", required=True)
    ap.add_argument("--buckets", type=int, default=10_000)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", required=True, help="folder for logs and results")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="capbill-bench-garage-") as tmp:
        tmp = Path(tmp)
        env = dict(os.environ)
        ports = {"GARAGE_S3_PORT": free_port(), "GARAGE_RPC_PORT": free_port(), "GARAGE_ADMIN_PORT": free_port()}
        env.update({k: str(v) for k, v in ports.items()})
        subprocess.check_call([str(ROOT / "scripts/garage-local"), "start", str(tmp / "garage")], env=env,
                              stdout=sys.stderr)
        try:
            settings = dict(re.findall(r"export (\w+)=(\S+)", (tmp / "garage/env").read_text()))
            admin = Admin(settings["CAPBILL_COLLECT_ENDPOINT"], settings["CAPBILL_COLLECT_TOKEN"])
            t0 = time.perf_counter()
            keys = [admin.call("POST", "/v2/CreateKey", {"name": f"sa-bench-{a:04d}"})["accessKeyId"]
                    for a in range(args.accounts)]
            for i in range(args.buckets):
                alias = f"bench-{i:06d}"
                admin.call("POST", "/v2/CreateBucket", {
                    "globalAlias": alias,
                    "localAlias": {"accessKeyId": keys[i % len(keys)], "alias": alias,
                                   "allow": {"owner": True, "read": True, "write": True}},
                })
                if (i + 1) % 2000 == 0:
                    print(f"  {i + 1} buckets created", file=sys.stderr)
            print(f"created {args.accounts} keys and {args.buckets} buckets in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)

            server = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                listed = list_all(admin, args.page_size)
                server.append(time.perf_counter() - t0)
            assert len(listed) == args.buckets, f"the server listed {len(listed)} buckets"
            server_bytes = sum(b["bytes"] for b in listed)

            (tmp / "directory").mkdir()
            cenv = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CAPBILL_"))}
            cenv.update(settings)
            cenv["CAPBILL_LOG"] = "warn"
            runs = []
            for r in range(args.repeat):
                usage = tmp / f"usage-{r}"
                cfg = tmp / "capbill.toml"
                cfg.write_text(f"[locations]\n[collect]\npage_size = {args.page_size}\n")
                runs.append(measure([args.capbill, "collect", "--config", str(cfg), "--usage", str(usage),
                                     "--directory", str(tmp / "directory"), "--log-format", "json"],
                                    cenv, out / f"capbill-collect-{r}.log"))
            snapshots = sorted(usage.rglob("*.parquet"))
            import polars as pl  # the bench venv has it
            df = pl.read_parquet(snapshots[-1])
            ok = len(snapshots) == 1 and df.height == args.buckets and int(df["bytes"].sum()) == server_bytes
        finally:
            subprocess.call([str(ROOT / "scripts/garage-local"), "stop", str(tmp / "garage")])

    wall = min(w for w, _ in runs)
    rss = max(m for _, m in runs)
    fast = min(server)
    lines = [
        f"collect benchmark: {args.buckets} buckets of {args.accounts} accounts on one Garage node, "
        f"pages of {args.page_size}, best of {args.repeat}",
        f"{'what':<44} {'wall s':>8} {'peak RSS MiB':>13}",
        f"{'server: every page of ListBucketsInfo':<44} {fast:>8.2f} {'-':>13}",
        f"{'capbill collect (list, attribute, write)':<44} {wall:>8.2f} {rss:>13}",
        f"capbill / server: {wall / fast:.2f}; snapshot rows and bytes match the server: {'yes' if ok else 'NO'}",
    ]
    (out / "collect-summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
