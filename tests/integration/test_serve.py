"""`python -m pipeline.serve`: the API's answers to good and bad requests, the page in a real browser,
and a bounded load test against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from fastapi.testclient import TestClient
from tinydata import REPO

from pipeline.config import DecodeConfig, ServeLimits
from pipeline.decoding.translate import load_model
from pipeline.serving.app import build_app


@pytest.fixture(scope="module")
def client(trained):
    restored = load_model(str(trained["ckpt"]), "cpu", 1)
    limits = ServeLimits(max_body_bytes=4096, max_sentences=4, max_input_tokens=40, max_beam_size=5, timeout_s=30)
    with TestClient(build_app(restored, DecodeConfig(max_len=30), False, limits, 5.0, 64)) as c:
        yield c


def test_a_sentence_comes_back_with_pieces_words_weights_and_score(client):
    r = client.post("/translate", json={"text": "ein Hund läuft .", "decode": "beam", "beam_size": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decode"] == "beam" and body["beam_size"] == 3
    (t,) = body["translations"]
    assert t["src_words"] == ["ein", "Hund", "läuft", "."] and t["src_pieces"][-1] == "</s>"
    assert len(t["weights"]) == len(t["tgt_pieces"]) and all(len(row) == len(t["src_pieces"]) for row in t["weights"])
    assert all(abs(sum(row) - 1) < 1e-3 for row in t["weights"]) and t["log_prob"] <= 0
    many = client.post("/translate", json={"text": ["ein Hund .", "zwei Männer ."]}).json()["translations"]
    assert [m["src"] for m in many] == ["ein Hund .", "zwei Männer ."]


def test_health_info_and_the_page(client):
    assert client.get("/health").json()["status"] == "ok"
    about = client.get("/info").json()
    assert about["model"]["name"] == "bahdanau" and about["data"]["src_lang"] == "de" and about["has_attention"]
    assert about["limits"]["max_sentences"] == 4 and about["run"]["step"] == 8
    page = client.get("/").text
    assert "buildCard" in page and '<script type="application/json" id="about">' in page


BAD = [
    ("not json", b"{text: 1", 400, "not JSON"),
    ("not utf-8", b'{"text": "\xff\xfe"}', 400, "not valid UTF-8"),
    ("wrong type", {"text": 5}, 422, "text"),
    ("list of wrong types", {"text": ["a", 3]}, 422, "text"),
    ("empty text", {"text": "   "}, 422, "text: the text is empty"),
    ("empty list", {"text": []}, 422, "non-empty list"),
    ("unknown decode", {"text": "ein Hund", "decode": "sampling"}, 422, "decode"),
    ("unknown field", {"text": "ein Hund", "temperature": 2}, 422, "temperature"),
    ("beam too wide", {"text": "ein Hund", "decode": "beam", "beam_size": 50}, 422, "max_beam_size=5"),
    ("beam of zero", {"text": "ein Hund", "decode": "beam", "beam_size": 0}, 422, "beam_size"),
    ("line break", {"text": "ein\nHund"}, 422, "without line breaks"),
    ("too many sentences", {"text": ["a"] * 5}, 413, "max_sentences=4"),
    ("too many pieces", {"text": "Hund " * 60}, 413, "max_input_tokens=40"),
    ("huge body", {"text": "x" * 10_000}, 413, "max_body_bytes=4096"),
]


@pytest.mark.parametrize(("name", "body", "status", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_with_one_line_and_the_server_goes_on(client, name, body, status, words):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/translate", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error and "\n" not in error
    assert client.post("/translate", json={"text": "ein Hund"}).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.serve", f"checkpoint={trained['ckpt']}", f"port={port}", "threads=1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read()[-2000:])
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_the_page_draws_one_cell_per_source_and_target_piece_in_chromium(server, tmp_path):
    from clirun import render_in_chromium_url

    sentence = "zwei Hunde spielen im Schnee ."
    req = urllib.request.Request(
        server + "/translate",
        data=json.dumps({"text": sentence}).encode(),
        headers={"Content-Type": "application/json"},
    )
    t = json.load(urllib.request.urlopen(req, timeout=30))["translations"][0]
    dom, log = render_in_chromium_url(f"{server}/?{urllib.parse.urlencode({'text': sentence})}", tmp_path)
    assert 'data-viewer="ready"' in dom, log[-2000:]
    assert f'data-cells="{len(t["src_pieces"]) * len(t["tgt_pieces"])}"' in dom
    assert dom.count('class="cell"') == len(t["src_pieces"]) * len(t["tgt_pieces"])


@pytest.mark.slow
def test_a_bounded_load_test_fails_no_request_and_batches_them(server):
    proc = subprocess.run(
        [sys.executable, "scripts/load_test.py", server, "--requests", "200", "--concurrency", "32", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.splitlines()[-1])
    assert figures["failed"] == 0 and figures["requests"] == 200
    assert figures["speedup_vs_sequential"] >= 3.0, figures
