#!/usr/bin/env bash
# Set up a virtual environment with the test extra and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
#   OPENDEV_PYGLS=latest bash scripts/test.sh ARGS   # the same, in .venv-pygls-latest with the
#                                                    # newest pygls 2.x instead of the pinned minor
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
if [ "${OPENDEV_PYGLS:-}" = "latest" ]; then
  VENV=.venv-pygls-latest
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
if [ "${OPENDEV_PYGLS:-}" = "latest" ]; then
  # Past our pin on purpose: a pygls release that breaks a correction in
  # server/rpc.py shows here before users see it (pip warns about the pin).
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade 'pygls>=2,<3' 'lsprotocol' 2>&1 \
    | grep -v "requires pygls\|requires lsprotocol\|dependency resolver" || true
  echo "scripts/test.sh: pygls $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pygls"))')" >&2
fi
if [ "${OPENDEV_PYGLS:-}" != "latest" ] && [ -f client-config/vscode/package-lock.json ] && command -v npm >/dev/null; then
  # The VS Code extension: dependencies, then the .vsix with the server bundled
  # (scripts/bundle_server.py fills bundled/, vsce compiles and packages);
  # tests/e2e/test_editor_vscode.py inspects and runs this very file.
  # (Not for the pygls-latest run: it runs the server's tests only.)
  target=$("$VENV/bin/python" client-config/vscode/scripts/bundle_server.py --print-target)
  (cd client-config/vscode && npm ci --silent --no-audit --no-fund \
    && "../../$VENV/bin/python" scripts/bundle_server.py --target "$target" \
    && npx --no-install vsce package --allow-missing-repository --target "$target" --out "opendev-snapshot-$target.vsix" >/dev/null)
  export OPENDEV_TEST_VSIX="$PWD/client-config/vscode/opendev-snapshot-$target.vsix"
fi
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; that is a broken suite, not a pass" >&2
  exit 1
fi
exit "$rc"
