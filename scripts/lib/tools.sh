# Sourced by scripts/test: the validators and the browser the tests of the
# finance outputs run, installed once and exported for the tests:
#
#   CAPBILL_FOCUS_VALIDATOR  the FinOps Foundation's focus-validator 2.2.1, in
#                            its own virtualenv $CAPBILL_TOOLS/focus-validator-2.2.1
#                            (it needs Python 3.12: the newest 3.12 of pyenv)
#   CAPBILL_CHROMIUM         headless Chromium, the Debian package
#   CAPBILL_PDFTOTEXT        pdftotext (Debian poppler-utils), to read the
#                            text of the PDFs Chromium prints
#
# Reruns only check what is installed; they touch no network.

tools_log() { printf 'scripts/test: %s\n' "$*" >&2; }

# focus-validator 2.2.1 requires numpy<2 but not a pyarrow that works with it
# (pyarrow 26 needs numpy 2): pyarrow is pinned.
FOCUS_VALIDATOR_REQUIREMENTS=("focus-validator==2.2.1" "pyarrow==21.0.0")

tools_install_focus_validator() {
    local venv="$CAPBILL_TOOLS/focus-validator-2.2.1"
    if ! "$venv/bin/python" - "${FOCUS_VALIDATOR_REQUIREMENTS[@]}" 2>/dev/null <<'PY'
import sys
from importlib import metadata
sys.exit(any(metadata.version(r.split("==")[0]) != r.split("==")[1] for r in sys.argv[1:]))
PY
    then
        local python312
        python312="$(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)"
        if [[ -z "$python312" ]]; then
            tools_log "no Python 3.12 under ~/.pyenv/versions/3.12*: focus-validator 2.2.1 needs it (pyenv install 3.12)"
            return 1
        fi
        tools_log "installing ${FOCUS_VALIDATOR_REQUIREMENTS[*]} into $venv with $python312"
        "$python312" -m venv --clear "$venv"
        "$venv/bin/pip" install --quiet "${FOCUS_VALIDATOR_REQUIREMENTS[@]}"
    fi
    export CAPBILL_FOCUS_VALIDATOR="$venv/bin/focus-validator"
}

# Sets the variable named $1 to the path of the first of the commands $3...
# found, else installs the Debian package $2 and takes its command $3.
tools_find_or_apt() {
    local var="$1" package="$2"
    shift 2
    if [[ -z "${!var:-}" ]]; then
        local found="" cmd
        for cmd in "$@"; do
            found="$(command -v "$cmd" || true)"
            [[ -n "$found" ]] && break
        done
        if [[ -z "$found" ]]; then
            tools_log "$1 not found, installing the Debian package $package"
            local sudo=""
            [[ "$(id -u)" -eq 0 ]] || sudo="sudo"
            $sudo apt-get install -y "$package" || { $sudo apt-get update && $sudo apt-get install -y "$package"; }
            found="$(command -v "$1")"
        fi
        printf -v "$var" '%s' "$found"
    fi
    export "${var?}"
}

tools_install_chromium() { tools_find_or_apt CAPBILL_CHROMIUM chromium chromium chromium-browser; }

tools_install_pdftotext() { tools_find_or_apt CAPBILL_PDFTOTEXT poppler-utils pdftotext; }

# Installs what is missing and exports the tools' paths.
tools_install() {
    export CAPBILL_TOOLS="${CAPBILL_TOOLS:-$HOME/.cache/capbill-tools}"
    mkdir -p "$CAPBILL_TOOLS"
    tools_install_focus_validator
    tools_install_chromium
    tools_install_pdftotext
}
