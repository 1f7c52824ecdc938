# Sourced by scripts/gen-workload and scripts/bench: makes sure the benchmark
# virtual environment exists and holds what the Python parts need.
# Sets BENCH_PY to its interpreter. Reruns only check, they install nothing.

BENCH_ROOT="${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
BENCH_VENV="${BENCH_VENV:-$BENCH_ROOT/.venv-bench}"
BENCH_PY="$BENCH_VENV/bin/python"

bench_venv() {
    if [[ ! -x "$BENCH_PY" ]]; then
        echo "bench: creating $BENCH_VENV" >&2
        python3 -m venv "$BENCH_VENV"
    fi
    local missing=()
    local mod
    for mod in duckdb polars numpy pyarrow matplotlib; do
        "$BENCH_PY" -c "import $mod" 2>/dev/null || missing+=("$mod")
    done
    if ((${#missing[@]})); then
        echo "bench: pip install ${missing[*]} into $BENCH_VENV" >&2
        "$BENCH_PY" -m pip install --quiet "${missing[@]}"
    fi
}
