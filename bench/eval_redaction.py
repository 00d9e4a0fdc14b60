#!/usr/bin/env python3
"""Secret redaction: our pattern set against detect-secrets, on tool output.

Two corpora of 500-character previews (what a snapshot stores):

- *clean*: realistic tool output with no secret in it: unified diffs of
  this repository's own source, pytest and npm logs, JSON API answers,
  base64 blobs, sha1/sha256 hashes, UUIDs, stack traces, code that
  *handles* secrets (``password=password``, ``token = self._token``,
  ``max_tokens``). Every preview a redactor changes is a false positive.
- *secret*: the same kind of output with one planted secret each, of every
  kind the contract names. Every preview left with the secret in it is a
  miss.

Speed is the cost per preview (median of several passes, each preview
seen once per pass: no memoisation helps either side).

detect-secrets is not a dependency of the project: install it beside to
compare (``pip install detect-secrets``); without it only ours is measured.

Usage: python bench/eval_redaction.py [--out FILE]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from opendev_snapshot.core import redact as redact_module  # noqa: E402

PREVIEW = 500
CORPUS_REVISION = "23bd786"  # the store split, before the redaction work


def _diffs(rng: random.Random) -> list:
    try:
        text = subprocess.run(
            # a pinned revision: later ones hold this project's own redaction tests, full of planted secrets
            ["git", "-C", str(ROOT), "log", "-p", "-n", "40", CORPUS_REVISION, "--", "server", "tests"],
            capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    chunks = [text[i : i + PREVIEW] for i in range(0, min(len(text), 400 * PREVIEW), PREVIEW)]
    return chunks or ["diff --git a/x b/x\n+    token = self._token\n"]


def _logs(rng: random.Random) -> list:
    out = []
    for i in range(150):
        lines = []
        for _ in range(8):
            name = rng.choice(["test_token_refresh", "test_password_reset", "test_secret_rotation", "test_api_key_header", "test_list"])
            lines.append(f"tests/unit/test_auth.py::{name}[case{rng.randrange(99)}] {rng.choice(['PASSED', 'FAILED', 'SKIPPED'])} [{rng.randrange(100):3d}%]")
        lines.append(f"E   AssertionError: assert {rng.randrange(10**6)} == {rng.randrange(10**6)}")
        lines.append(f"npm WARN deprecated request@2.88.2: request has been deprecated, integrity sha512-{base64.b64encode(rng.randbytes(48)).decode()}")
        lines.append("Token: expired; password: required; secret: hidden")
        out.append("\n".join(lines)[:PREVIEW])
    return out


def _json(rng: random.Random) -> list:
    out = []
    for _ in range(150):
        doc = {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "sha": rng.randbytes(20).hex(),
            "digest": "sha256:" + rng.randbytes(32).hex(),
            "usage": {"input_tokens": rng.randrange(9999), "output_tokens": rng.randrange(9999), "max_tokens": 4096},
            "token_type": "bearer" if rng.random() < 0.5 else None,
            "password_length": 12,
            "blob": base64.b64encode(rng.randbytes(90)).decode(),
            "url": f"https://example.com/api/v1/items/{rng.randrange(10**6)}?page=2",
        }
        out.append(json.dumps(doc)[:PREVIEW])
    return out


def _code(rng: random.Random) -> list:
    snippets = [
        "def login(user, password: str, token: Optional[str] = None):\n    return auth(user, password=password, token=token)\n",
        "    token = self._token\n    secret = os.environ['APP_SECRET']\n    api_key = settings.API_KEY\n",
        "parser.add_argument('--password', help='the password')\nparser.add_argument('--token', default=None)\n",
        "tokenizer = AutoTokenizer.from_pretrained(name)\nids = tokenizer(text)['input_ids']\n",
        'password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())\nif not password: raise ValueError("password is required")\n',
        "  File \"/usr/lib/python3.11/site-packages/requests/auth.py\", line 96, in __call__\n    r.headers['Authorization'] = _basic_auth_str(self.username, self.password)\n",
        "secret_name: my-app-tls\nsecretRef: {name: db}\npasswordFile: /run/secrets/db\n",
    ]
    return [(rng.choice(snippets) * 4)[:PREVIEW] for _ in range(150)]


def clean_corpus(seed: int = 1) -> list:
    rng = random.Random(seed)
    return _diffs(rng) + _logs(rng) + _json(rng) + _code(rng)


def _token(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def planted(rng: random.Random) -> list:
    """(kind, secret text, context) of every kind the contract names."""
    b64 = lambda n: base64.urlsafe_b64encode(rng.randbytes(n)).decode().rstrip("=")  # noqa: E731
    key_body = "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(6))
    return [
        ("private key", f"-----BEGIN RSA PRIVATE KEY-----\n{key_body}\n-----END RSA PRIVATE KEY-----", "{}"),
        ("openssh key", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key_body}\n-----END OPENSSH PRIVATE KEY-----", "cat ~/.ssh/id_ed25519\n{}"),
        ("aws key id", "AKIA" + _token(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), "aws configure list\naccess_key_id {}\n"),
        ("aws secret", _token(rng, ALNUM + "/+", 40), "aws_secret_access_key = {}"),
        ("github", "ghp_" + _token(rng, ALNUM, 36), "remote: {} used"),
        ("github pat", "github_pat_" + _token(rng, ALNUM + "_", 82), "GH_TOKEN={}"),
        ("gitlab", "glpat-" + _token(rng, ALNUM + "-_", 20), "curl --header 'PRIVATE-TOKEN: {}' https://gitlab.com/api/v4/projects"),
        ("slack", "xoxb-" + "-".join(_token(rng, "0123456789", 12) for _ in range(2)) + "-" + _token(rng, ALNUM, 24), "SLACK_BOT={}"),
        ("openai", "sk-proj-" + _token(rng, ALNUM + "-_", 120), "openai.api_key set to {}"),
        ("anthropic", "sk-ant-api03-" + _token(rng, ALNUM + "-_", 93) + "AA", "using key {} for requests"),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(json.dumps({"sub": str(rng.randrange(10**9)), "iat": rng.randrange(10**10)}).encode()).decode().rstrip("=") + "." + b64(32), "cookie: session={}; Path=/"),
        ("url credentials", "s3cr3t-P4ss", "git clone https://deploy:{}@git.example.com/org/repo.git"),
        ("password=", _token(rng, ALNUM, 14), "mysql -u root --password={} -e 'show databases'"),
        ("secret=", _token(rng, ALNUM, 24), "DJANGO_SECRET={}"),
        ("token=", _token(rng, ALNUM, 32), "export API_TOKEN={}"),
        ("json password", _token(rng, ALNUM, 12), '{{"user": "admin", "password": "{}"}}'),
    ]


def secret_corpus(seed: int = 2) -> list:
    rng = random.Random(seed)
    filler = clean_corpus(seed)
    out = []
    for _ in range(10):
        for kind, secret, context in planted(rng):
            around = rng.choice(filler)[: rng.randrange(0, 200)]
            out.append((kind, secret, (around + "\n" + context.format(secret))[:PREVIEW * 2]))
    return out


# ------------------------------------------------------------- redactors
def ours(text: str) -> str:
    return redact_module._redact(text)  # unmemoised


def detect_secrets_redactor():
    """detect-secrets as its own scanner runs (``SecretsCollection.scan_file``:
    plugins with their entropy limits, and its filters), each reported
    ``secret_value`` replaced in the preview."""
    try:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        return None
    import tempfile

    ctx = default_settings()
    ctx.__enter__()
    path = Path(tempfile.mkdtemp(prefix="odsredact-")) / "preview.txt"

    def run(text: str, _keep=ctx) -> str:  # _keep: the settings last as long as run
        path.write_text(text)
        found = SecretsCollection()
        found.scan_file(str(path))
        for secret in found[str(path)]:
            if secret.secret_value:
                text = text.replace(secret.secret_value, f"[REDACTED:{secret.type}]")
        return text

    return run


def evaluate(name: str, fn, clean: list, secrets: list, passes: int) -> dict:
    fps = [t for t in clean if fn(t) != t]
    missed = [(k, t) for k, s, t in secrets if s in fn(t)]
    texts = clean + [t for _k, _s, t in secrets]
    per_preview = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for text in texts:
            fn(text)
        per_preview.append((time.perf_counter() - t0) / len(texts))
    return {
        "name": name,
        "false_positive_previews": len(fps),
        "clean": len(clean),
        "missed": len(missed),
        "secrets": len(secrets),
        "missed_kinds": sorted({k for k, _t in missed}),
        "us_per_preview": statistics.median(per_preview) * 1e6,
        "fp_examples": [t[:160] for t in fps[:3]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    clean, secrets = clean_corpus(), secret_corpus()
    rows = [evaluate("ours (core/redact.py)", ours, clean, secrets, args.passes)]
    ds = detect_secrets_redactor()
    if ds is not None:
        from importlib.metadata import version

        rows.append(evaluate(f"detect-secrets {version('detect-secrets')}", ds, clean, secrets, max(1, args.passes // 2)))
    lines = [
        f"Clean previews: {len(clean)}; previews with a planted secret: {len(secrets)}",
        "",
        "| redactor | false positives (clean previews changed) | secrets missed | µs per preview |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['false_positive_previews']} / {r['clean']} | {r['missed']} / {r['secrets']}"
            f"{' (' + ', '.join(r['missed_kinds']) + ')' if r['missed_kinds'] else ''} | {r['us_per_preview']:.0f} |"
        )
    for r in rows:
        for example in r["fp_examples"]:
            lines.append(f"\n{r['name']} false positive: {example!r}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
