"""Secret redaction in the core's write path (contract section 6: redactSecrets)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opendev_snapshot.core import SnapshotStore, new_record
from opendev_snapshot.core.redact import redact

GH = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    + base64.urlsafe_b64encode(json.dumps({"sub": "1234567890", "name": "A"}).encode()).decode().rstrip("=")
    + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n-----END RSA PRIVATE KEY-----"


@pytest.mark.parametrize(
    "text,expected",
    [
        (KEY + "\nafter", "[REDACTED:private-key]\nafter"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9u", "[REDACTED:private-key]"),
        ("id AKIAIOSFODNN7EXAMPLE ok", "id [REDACTED:aws-access-key-id] ok"),
        (f"remote: {GH} used", "remote: [REDACTED:github-token] used"),
        ("GH_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "GH_TOKEN=[REDACTED:github-token]"),
        ("glpat-abcdefghij1234567890 in use", "[REDACTED:gitlab-token] in use"),
        ("xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx", "[REDACTED:slack-token]"),
        ("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX", "[REDACTED:slack-webhook]"),
        ("key=sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", "key=[REDACTED:openai-key]"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789-ABCDEFG", "[REDACTED:anthropic-key]"),
        (f"cookie: s={JWT}; Path=/", "cookie: s=[REDACTED:jwt]; Path=/"),
        ("git clone https://bot:s3cr3t-P4ss@git.example.com/o/r.git", "git clone https://bot:[REDACTED:url-password]@git.example.com/o/r.git"),
        ('curl -H "Authorization: Bearer abcdef0123456789"', 'curl -H "Authorization: Bearer [REDACTED:auth-header]"'),
        ("DB_PASSWORD=correct-horse", "DB_PASSWORD=[REDACTED:password]"),
        ("export API_TOKEN=abc123def456", "export API_TOKEN=[REDACTED:token]"),
        ("DJANGO_SECRET_KEY='x!y@z#'", "DJANGO_SECRET_KEY='[REDACTED:secret]'"),
        ('{"user": "admin", "password": "hunter2"}', '{"user": "admin", "password": "[REDACTED:password]"}'),
        ("mysql -u root --password hunter22 -e 'select 1'", "mysql -u root --password [REDACTED:password] -e 'select 1'"),
        ("password: hunter2", "password: [REDACTED:password]"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = [REDACTED:secret]"),
        ("cut at the end: ghp_abc123def", "cut at the end: [REDACTED:github-token]"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else v,
)
def test_secrets_are_replaced_by_their_kind(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "commit 23bd786bd9b0bd2844ff3b6bfbe87f66f36cb129\nindex 0000000..0de45fb 100644",
        "sha256:3f6e7a3d7aed6af7feb3fadfef1f45810f926f7cf6dc0b7b2e9b2b1f4d1c3a9e",
        f"id {uuid.UUID(int=12345678901234567890)} blob {base64.b64encode(bytes(range(90))).decode()}",
        '{"usage": {"input_tokens": 1234, "max_tokens": 4096}, "token_type": null, "password_length": 12}',
        "tests/test_auth.py::test_token_refresh PASSED [ 50%]\nToken: expired; password: required",
        "def login(user, password: str, token: Optional[str] = None):\n    return auth(password=password, token=token)",
        "    token = self._token\n    secret = os.environ['APP_SECRET']\n    api_key = settings.API_KEY",
        "tokenizer = AutoTokenizer.from_pretrained(name)",
        "parser.add_argument('--password', help='the password')",
        "secret=${SECRET} password=<your password> token=*** api_key=[REDACTED:api-key]",
        "the sk-learn docs; ghp is a prefix; AKIA alone",
    ],
    ids=["git", "digest", "uuid-base64", "json-usage", "test-log", "signature", "code", "tokenizer", "argparse",
         "placeholders", "near-misses"],
)
def test_tool_output_without_secrets_is_left_alone(text):
    assert redact(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:=_-/@ \n\"'PASSWORDpasswordtokenTOKENsk-ghp_AKIA0123456789xyz")), max_size=120))
def test_redaction_is_idempotent_and_never_crashes(text):
    once = redact(text)
    assert redact(once) == once


def tool(preview: str, call_id: str = "c") -> dict:
    return {"tool_name": "bash", "call_id": call_id, "output_preview": preview, "success": True}


def test_every_write_path_redacts(store, snapshot_dir):
    record = new_record("s", "/p")
    record["last_tool_results"] = [tool(f"echo {GH}")]
    out = store.save(record)
    assert record["last_tool_results"][0]["output_preview"] == f"echo {GH}"  # the caller's record is not touched
    raw = (snapshot_dir / "s_session_snapshot.json").read_text()
    assert GH not in raw and "[REDACTED:github-token]" in raw and out["session_id"] == "s"
    store.record_tool_result("s", tool("PGPASSWORD=s3cret-value psql", "c2"))
    store.update("s", lambda r: r["last_tool_results"].append(tool(JWT, "c3")))
    previews = [t["output_preview"] for t in store.load("s")["last_tool_results"]]
    assert previews == ["echo [REDACTED:github-token]", "PGPASSWORD=[REDACTED:password] psql", "[REDACTED:jwt]"]


def test_a_token_split_by_the_preview_cut_is_still_redacted(store):
    store.save(new_record("s", "/p"))
    text = "x" * 29 + " " + GH  # the cut at 40 characters falls inside the token
    store.record_tool_result("s", tool(text), preview_chars=40)
    (entry,) = store.load("s")["last_tool_results"]
    assert "ghp_" not in entry["output_preview"] and entry["output_preview"].startswith("x" * 29 + " [REDACTED")
    assert len(entry["output_preview"]) <= 40


def test_redaction_can_be_turned_off_and_files_of_others_are_read_as_they_are(snapshot_dir):
    plain = SnapshotStore(snapshot_dir, redact_secrets=False)
    record = new_record("s", "/p")
    record["last_tool_results"] = [tool(f"echo {GH}")]
    plain.save(record)
    assert SnapshotStore(snapshot_dir).load("s")["last_tool_results"][0]["output_preview"] == f"echo {GH}"
