#!/usr/bin/env bash
# Set up a virtual environment with the test extra and run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
if [ -f client-config/vscode/package-lock.json ] && command -v npm >/dev/null; then
  # The VS Code extension: dependencies, then the .vsix with the server bundled
  # (scripts/bundle_server.py fills bundled/, vsce compiles and packages);
  # tests/e2e/test_editor_vscode.py inspects and runs this very file.
  target=$(.venv/bin/python client-config/vscode/scripts/bundle_server.py --print-target)
  (cd client-config/vscode && npm ci --silent --no-audit --no-fund \
    && ../../.venv/bin/python scripts/bundle_server.py --target "$target" \
    && npx --no-install vsce package --allow-missing-repository --target "$target" --out "opendev-snapshot-$target.vsix" >/dev/null)
  export OPENDEV_TEST_VSIX="$PWD/client-config/vscode/opendev-snapshot-$target.vsix"
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; that is a broken suite, not a pass" >&2
  exit 1
fi
exit "$rc"
