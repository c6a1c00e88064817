"""Issue 24, items 1 and 6: no key in any file, message or log. A fake OpenAI-compatible
server repeats the request's key in every field it sends back (replies, reasons, malformed
replies, error bodies, headers); after a whole pre-label session every file written and
everything printed or logged is scanned for it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fake_llm_server import FakeLLM
from PIL import Image

from joyq_studio.cli import main
from joyq_studio.redact import RedactingFormatter, forget_secrets, remember_secret, scrub

pytest.importorskip("openai")

MODEL = "fake-vision"
KEY = "sk-proj-" + "Zq81" * 10  # what the user set
OTHER = "sk-live-" + "Xy7" * 8  # someone else's key a gateway leaks: credential-shaped
TOKEN = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4"  # a long run after "token"


class EchoingServer(FakeLLM):
    """Repeats the key of each request in every reply field; every 6th request is a 400 and
    every 9th a 500 whose bodies repeat it too; some replies are malformed and repeat it."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.n = 0

    def handle(self, h):
        with self.lock:
            self.n += 1
            n = self.n
        echoed = h.headers.get("Authorization", "")
        if n % 6 == 0 or n % 9 == 0:
            h.rfile.read(int(h.headers.get("Content-Length", 0)))
            status = 400 if n % 6 == 0 else 500
            return self.send(h, status, {"error": {"message": f"request with {echoed} refused"}})
        return super().handle(h)

    def verdict(self, first: bytes, second: bytes, prompt: str = "", model: str | None = None) -> str:
        with self.lock:
            n = self.n
        if n % 7 == 0:  # malformed, with the key in it
            return f"I cannot compare these. Your key is {self.key} and Authorization: Bearer {OTHER}"
        v = json.loads(super().verdict(first, second, prompt, model))
        v["reason"] = f"{v['reason'].rstrip('.')} (key {self.key}, token={TOKEN})."
        return json.dumps(v)

    def send(self, h, status, obj, headers=None):
        obj = {**obj, "echo": {"key": self.key, "other": OTHER}}
        if isinstance(obj.get("error"), dict):
            obj["error"] = {**obj["error"], "message": obj["error"]["message"] + f" [api_key={self.key}]"}
        super().send(h, status, obj, {**(headers or {}), "X-Echo-Key": str(self.key)})


@pytest.fixture
def folder(tmp_path) -> Path:
    f = tmp_path / "images"
    f.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        v = 30 + 8 * i
        pixels = np.clip(v + rng.integers(-2, 3, (24, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(f / f"im{i:02d}.png")
    return f


def _everything_written(roots: list[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


def test_no_key_reaches_any_file_message_or_log(folder, tmp_path, isolated_dirs, monkeypatch, capsys, caplog):
    caplog.set_level(logging.INFO)  # the app logs INFO and up (httpcore's DEBUG dumps headers as sent)
    forget_secrets()
    monkeypatch.setenv("JOYQ_LLM_API_KEY", KEY)
    fake = EchoingServer(model=MODEL, key=KEY, error_rate=0.1, position_bias=0.0, seed=3)
    url = fake.start()
    try:
        common = [str(folder), "--endpoint", url, "--model", MODEL, "--price-in", "0.15", "--price-out", "0.6"]
        from joyq_studio.store import Project

        with Project(folder) as p:  # a few clicks so the agreement check has something to compare with
            p.scan()
            hashes = [p.hash_of(f"im{i:02d}.png") for i in range(24)]
            p.add_comparisons([(hashes[i + 1], hashes[i], 1.0, "test", "click") for i in range(0, 22, 2)])
        codes = [
            main(["prelabel", "agreement", *common, "--pairs", "20", "--yes"]),
            main(["prelabel", "run", *common, "--pairs", "16", "--yes", "--trust", "0.75"]),
            main(["prelabel", "status", str(folder)]),
        ]
        monkeypatch.setenv("JOYQ_LLM_API_KEY", KEY[::-1])  # a refused key: the error path
        codes.append(main(["prelabel", "run", *common, "--pairs", "3", "--yes", "--trust", "0.75"]))
        assert fake.status[400] and fake.status[500] and fake.status[401]  # every kind of echo was sent
        assert any("Bearer " + KEY in h for h in fake.headers_seen)  # the key did go to the server
        captured = capsys.readouterr()
        texts = {"stdout": captured.out, "stderr": captured.err, "log": caplog.text}
        files = _everything_written([folder, isolated_dirs, tmp_path])
        with Project(folder) as p:
            stored = p.db.execute("SELECT count(*) FROM llm_answers WHERE reason LIKE '%***%'").fetchone()[0]
        assert stored > 0  # the echoed reasons were stored, scrubbed
        for secret in (KEY, KEY[::-1], OTHER, TOKEN):
            for name, text in texts.items():
                assert secret not in text, f"{secret[:10]}... in {name}"
            for path, data in files.items():
                assert secret.encode() not in data, f"{secret[:10]}... in {path}"
        assert codes[0] in (0, 1) and codes[1] in (0, 1) and codes[2] == 0 and codes[3] == 2  # 1: some calls failed
        assert "Traceback" not in captured.err
    finally:
        fake.stop()
        forget_secrets()


def test_scrub_blanks_keys_in_use_and_credential_shapes():
    forget_secrets()
    remember_secret("my-own-local-key-42")
    text = (
        "key my-own-local-key-42; Authorization: Bearer abcdEFGH12345678; sk-abcdefghijklmnop; "
        '"api_key": "0123456789abcdef0123456789abcdef"; token=QUJDREVGR0hJSktMTU5PUFFSU1RVVg==; '
        "a plain sentence about a keyboard token of 12 words."
    )
    out = scrub(text)
    for secret in ("my-own-local-key-42", "abcdEFGH12345678", "abcdefghijklmnop", "0123456789abcdef", "QUJDREVG"):
        assert secret not in out
    assert "a plain sentence about a keyboard token of 12 words." in out
    forget_secrets()


def test_log_lines_and_tracebacks_are_scrubbed():
    forget_secrets()
    remember_secret(KEY)
    record = logging.LogRecord("joyq_studio.ui", logging.ERROR, __file__, 1, "reply %s", (f"with {KEY}",), None)
    try:
        raise ValueError(f"server said {KEY}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = RedactingFormatter("%(message)s").format(record)
    assert KEY not in line and "server said ***" in line
    forget_secrets()


# -- item 6: the key goes to the OS keyring only; --trust is checked everywhere ---------------
class FakeKeyring:
    """Stands in for the ``keyring`` package (its three calls), backed by a dict."""

    def __init__(self, fail: bool = False):
        self.store: dict[tuple[str, str], str] = {}
        self.fail = fail

    def get_password(self, service, user):
        return self.store.get((service, user))

    def set_password(self, service, user, value):
        if self.fail:
            raise RuntimeError(f"backend locked while storing {value}")
        self.store[(service, user)] = value

    def delete_password(self, service, user):
        del self.store[(service, user)]


def test_the_key_is_saved_to_and_removed_from_the_keyring_only(tmp_path, isolated_dirs, monkeypatch, capsys):
    import io
    import sys

    from joyq_studio.prelabel.client import KEYRING_SERVICE, resolve_api_key

    fake = FakeKeyring()
    monkeypatch.setitem(sys.modules, "keyring", fake)
    monkeypatch.delenv("JOYQ_LLM_API_KEY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY + "\n"))
    assert main(["prelabel", "key", "save"]) == 0
    assert fake.store == {(KEYRING_SERVICE, "JOYQ_LLM_API_KEY"): KEY}
    assert resolve_api_key() == KEY  # the read path finds it
    out = capsys.readouterr()
    assert KEY not in out.out + out.err
    for path, data in _everything_written([isolated_dirs, tmp_path]).items():
        assert KEY.encode() not in data, path  # no settings file, no cache holds it
    assert main(["prelabel", "key", "remove"]) == 0 and fake.store == {}
    assert "removed the API key" in capsys.readouterr().out
    assert main(["prelabel", "key", "remove"]) == 0
    assert "nothing to remove" in capsys.readouterr().out
    # a failing backend: one sentence, without the key
    monkeypatch.setitem(sys.modules, "keyring", FakeKeyring(fail=True))
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY + "\n"))
    assert main(["prelabel", "key", "save"]) == 2
    err = capsys.readouterr().err
    assert "did not take the API key" in err and KEY not in err and "Traceback" not in err
    # no keyring package at all: says how to get one, or to use the environment variable
    monkeypatch.setitem(sys.modules, "keyring", None)
    monkeypatch.setattr(sys, "stdin", io.StringIO(KEY + "\n"))
    assert main(["prelabel", "key", "save"]) == 2
    err = capsys.readouterr().err
    assert "pip install keyring" in err and "JOYQ_LLM_API_KEY" in err and KEY not in err


@pytest.mark.parametrize("value", ["abc", "0", "-1", "0.2", "1.5", "nan", "inf", ""])
def test_trust_is_checked_in_one_sentence(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["prelabel", "run", str(tmp_path), "--endpoint", "http://x/v1", "--model", "m", "--trust", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--trust" in err and "0.5" in err and "invalid" not in err


def test_trust_rule_in_the_core():
    from joyq_studio.prelabel.run import PrelabelError, check_trust

    assert check_trust(0.5) == 0.5 and check_trust(1) == 1.0
    for bad in (float("nan"), float("inf"), 0.0, -0.3, 1.01, "x", None):
        with pytest.raises(PrelabelError):
            check_trust(bad)  # type: ignore[arg-type]
