"""Secret redaction of tool-result previews: ``redact(text) -> str``.

Likely secrets become ``[REDACTED:<kind>]`` before a preview reaches disk
(``SnapshotStore(redact_secrets=True)``, the default). The set is a
documented list of patterns, each a format a provider publishes or a
shape a credential has in text, chosen for few false positives on what
tool output is made of (diffs, test logs, JSON, base64 blobs, hashes,
UUIDs): no entropy guessing. ``bench/eval_redaction.py`` compares it with
detect-secrets on such output (see ``bench/README.md``).

Kinds:

- ``private-key``: a PEM/OpenSSH/PGP private key block, to its END line
  or, in a cut preview, to the end of the text;
- ``aws-access-key-id``, ``github-token``, ``gitlab-token``,
  ``slack-token``, ``slack-webhook``, ``openai-key``, ``anthropic-key``,
  ``stripe-key``, ``google-api-key``, ``npm-token``, ``pypi-token``,
  ``huggingface-token``: provider tokens by their published prefixes (a
  token cut short at the end of a preview still matches);
- ``jwt``: ``eyJ...`` header, payload and signature;
- ``url-password``: the password in ``scheme://user:password@host`` (the
  user and host stay);
- ``auth-header``: the credential after ``Authorization: Bearer|Basic|Token``;
- ``password``, ``secret``, ``token``, ``api-key``, ``access-key``,
  ``private-key``, ``credential``: the value of an assignment whose name
  ends in one of those (``DB_PASSWORD=...``, ``"client_secret": "..."``,
  ``--api-key ...``, ``token: ...``). Values that are code or placeholders
  are left alone: calls, attribute paths, ``$VARS``, ``${...}``, ``<...>``,
  ``***``, numbers, ``None``/``null``/``true``, type names. After a bare
  ``:`` (YAML, headers, prose) an unquoted value must look like a secret
  (6+ characters with a digit, a symbol or inner capitals), so
  ``Token: expired`` stays readable.

Redacting is idempotent, and cheap: two regular-expression passes per
preview, results memoised (autosave re-saves the same previews).
"""

from __future__ import annotations

import re
from functools import lru_cache

_PREFIXED = [
    # (kind, literals one of which every token contains, regular expression)
    ("anthropic-key", ("sk-ant-",), r"sk-ant-(?:(?:api|admin|sid)[0-9]{2}-[A-Za-z0-9_-]{16,}|[A-Za-z0-9_-]{24,})"),
    ("openai-key", ("sk-",), r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|sk-[A-Za-z0-9]{40,}"),
    ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), r"(?:(?:ghp|gho|ghu|ghs|ghr)_|github_pat_)[A-Za-z0-9_]{30,}"),
    ("gitlab-token", tuple(f"gl{p}-" for p in ("pat", "dt", "rt", "ptt", "cbt", "imt", "ft", "oas", "soat", "agent")), r"gl(?:pat|dt|rt|ptt|cbt|imt|ft|oas|soat|agent)-[A-Za-z0-9_-]{20,}"),
    ("slack-token", ("xox", "xapp-"), r"(?:xox[abposre]-|xapp-[0-9]-)[A-Za-z0-9-]{10,}"),
    ("aws-access-key-id", ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA", "ASCA"),
     r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}"),
    ("stripe-key", ("_live_", "_test_", "whsec_"), r"(?:(?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]{16,}"),
    ("google-api-key", ("AIza",), r"AIza[0-9A-Za-z_-]{35}"),
    ("npm-token", ("npm_",), r"npm_[A-Za-z0-9]{36}"),
    ("pypi-token", ("pypi-AgE",), r"pypi-AgE[A-Za-z0-9_-]{40,}"),
    ("huggingface-token", ("hf_",), r"hf_[A-Za-z0-9]{30,}"),
]
# A preview is cut at ``previewChars``: a token cut short at the very end
# still counts when its prefix is distinctive (not ``sk-`` or ``AIza``).
_CUT = re.compile(r"(?:sk-ant-|sk-(?:proj|svcacct|admin)-|gh[pousr]_|github_pat_|glpat-|xox[abposre]-|AKIA|ASIA|npm_|pypi-AgE|hf_)[A-Za-z0-9_-]{4,}\Z")
_KEY_KINDS = [
    ("password", re.compile(r"(?i)pass(?:word|wd|phrase)?|pwd")),
    ("private-key", re.compile(r"(?i)private[_-]?key")),
    ("secret", re.compile(r"(?i)secret")),
    ("api-key", re.compile(r"(?i)api[_-]?key")),
    ("access-key", re.compile(r"(?i)access[_-]?key")),
    ("token", re.compile(r"(?i)token")),
    ("credential", re.compile(r"(?i)credential")),
]
_VALUE = r"\"(?:[^\"\\\n]|\\.){1,400}\"|'[^'\n]{1,400}'|[^\s'\",;)}\]]{1,400}"

# Pass 1: formats recognisable on their own. Each runs only when one of its
# literals is in the text (a substring test costs next to nothing), so a
# preview with no candidate costs a few substring tests.
_DETECTORS = [
    (kind, literals, False, re.compile(rf"(?:{pattern})(?![A-Za-z0-9_-])"), 0) for kind, literals, pattern in _PREFIXED
] + [
    ("private-key", ("PRIVATE KEY",), False, re.compile(
        r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|.*\Z)",
        re.DOTALL), 0),
    ("jwt", ("eyJ",), False, re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), 0),
    ("slack-webhook", ("hooks.slack.com",), False, re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}"), 0),
    ("url-password", ("://",), False, re.compile(r"://[^\s:/@'\"<>]{1,100}:([^\s/@'\"<>]{1,200})(?=@)"), 1),
    ("auth-header", ("authorization",), True, re.compile(
        r"(?i:authorization['\"]?\s*[:=]\s*['\"]?(?:bearer|basic|token|digest)\s+)([A-Za-z0-9._~+/=:-]{6,})"), 1),
]
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_STANDALONE = {kind for kind, _l, _p in _PREFIXED} | {"jwt"}  # not inside a longer word

# Pass 2: assignments, found by their key word in the lower-cased text,
# then read backwards (the name) and forwards (separator and value).
_KEYWORD = re.compile(r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_AFTER = re.compile(
    r"(?:[_-]?(?i:key|value|str|string))?(?![A-Za-z0-9_])['\"]?"
    r"(?P<sep>\s*(?::=|=>|=|:)\s*|[ \t]+)"
    rf"(?P<val>{_VALUE})"
)

_PLACEHOLDER = re.compile(
    r"""(?ix)(?:
        none|null|nil|undefined|true|false|yes|no|str|string|bytes|int|bool|optional|any|secretstr|required|hidden
      | \**|x+|\.+|-+|_+|\#+|<[^>]*>|\$\{[^}]*\}|\{\{.*\}\}|%\(?\w*\)?s|\{[^}]*\}|\[redacted[^\]]*\]?|redacted
    )\Z"""
)
_CODE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+\Z|[$%@&*<]|.*[(\[{]|-?[0-9][0-9_.,]*\Z")
_SECRETLIKE = re.compile(r".*(?:[0-9]|[^A-Za-z0-9]|.[A-Z])")


def _value_is_secret(name: str, sep: str, value: str) -> bool:
    quoted = len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]
    inner = value[1:-1] if quoted else value
    if not inner.strip() or _PLACEHOLDER.match(inner):
        return False
    if quoted:
        return True
    if _CODE.match(inner):
        return False  # a call, an attribute path, $VAR, a number...
    lowered = name.lower().strip("-'\"").replace("-", "_")
    if inner.lower().replace("-", "_") == lowered:
        return False  # password=password: a keyword argument passed on
    if inner.isidentifier() and any(w in inner.lower() for w in ("pass", "secret", "token", "key", "cred")):
        return False  # token=new_token: a variable
    if sep.strip() == ":":
        return len(inner) >= 6 and bool(_SECRETLIKE.match(inner))
    return True


def _key_kind(name: str) -> str:
    return next((kind for kind, pattern in _KEY_KINDS if pattern.search(name)), "secret")


def _token_spans(text: str, lowered: str) -> list:
    spans = []
    for kind, literals, folded, pattern, group in _DETECTORS:
        haystack = lowered if folded else text
        if not any(literal in haystack for literal in literals):
            continue
        for match in pattern.finditer(text):
            start = match.start(group)
            if kind in _STANDALONE and start and (text[start - 1] in _WORD or text[start - 1] == "-" and kind == "jwt"):
                continue  # inside a longer word: not a token
            spans.append((start, match.end(group), f"[REDACTED:{kind}]"))
    cut = _CUT.search(text)
    if cut is not None and not (cut.start() and text[cut.start() - 1] in _WORD):
        kind = next((k for k, lits, _p in _PREFIXED if cut.group().startswith(lits)), "token")
        spans.append((cut.start(), cut.end(), f"[REDACTED:{kind}]"))
    return spans


def _assignment_spans(text: str, lowered: str, taken: list) -> list:
    spans = []
    for kw in _KEYWORD.finditer(lowered):
        start = kw.start()
        while start and text[start - 1] in _NAME_CHARS:
            start -= 1
        if start and text[start - 1].isalnum():
            continue
        after = _AFTER.match(text, kw.end())
        if after is None:
            continue
        name, sep, value = text[start : after.start("sep")], after.group("sep"), after.group("val")
        if not sep.strip() and not name.startswith("-"):
            continue  # "the password is": only flags take a space
        vstart, vend = after.span("val")
        if any(s < vend and vstart < e for s, e, _r in taken):
            continue  # a provider token inside names its kind better
        if not _value_is_secret(name, sep, value):
            continue
        quote = 1 if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0] else 0
        spans.append((vstart + quote, vend - quote, f"[REDACTED:{_key_kind(name)}]"))
    return spans


def _redact(text: str) -> str:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    taken = _token_spans(text, lowered)
    taken += _assignment_spans(text, lowered, taken)
    if not taken:
        return text
    taken.sort()
    out, pos = [], 0
    for start, end, replacement in taken:
        if start < pos:
            continue  # overlaps one already replaced
        out += (text[pos:start], replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` with likely secrets replaced by ``[REDACTED:<kind>]``."""
    if len(text) < 8:
        return text
    return _redact_short(text) if len(text) <= 4096 else _redact(text)


@lru_cache(maxsize=512)
def _redact_short(text: str) -> str:
    return _redact(text)
