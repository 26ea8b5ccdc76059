"""LLM judge: a loopback OpenAI-compatible server (slow, 500s, garbage), the cache, a local tiny model."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from synthvlm.config import RunConfig
from synthvlm.core.errors import UserError
from synthvlm.pipeline import run, status
from synthvlm.steps.judge import (
    Judge,
    JudgeError,
    OpenAIBackend,
    ResponseCache,
    TransformersBackend,
    default_template,
    parse_verdict,
    template_hash,
)

pytest.importorskip("openai")

KEY = "sk-test-not-a-real-key-123"


class FakeServer:
    """Chat completions on 127.0.0.1: the answer depends on words in the caption; requests are counted."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.auth: set[str] = set()
        self.models: set[str] = set()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                caption = prompt.split('Caption: "', 1)[1].split('"\n', 1)[0]
                with server.lock:
                    server.requests[caption] += 1
                    n = server.requests[caption]
                    server.auth.add(self.headers.get("Authorization", ""))
                    server.models.add(body["model"])
                if "slow" in caption and n == 1:
                    time.sleep(1.5)  # past the client's timeout: the retry must succeed
                if ("flaky" in caption and n <= 2) or "down" in caption:
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b'{"error": "boom"}')
                    return
                if "garbage" in caption:
                    answer = "Maybe, it depends."
                elif "bad" in caption:
                    answer = " No."
                else:
                    answer = "Yes"
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": answer},
                        }
                    ],
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    srv = FakeServer()
    yield srv
    srv.close()


def _backend(server: FakeServer, **kw) -> OpenAIBackend:
    args = {
        "base_url": server.url,
        "api_key_env": "JUDGE_TEST_KEY",
        "concurrency": 4,
        "timeout": 0.5,
        "max_retries": 3,
        "backoff": 0.01,
        **kw,
    }
    return OpenAIBackend("judge-model", **args)


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("Yes", True),
        ("yes.", True),
        (" YES! ", True),
        ('"Yes"', True),
        ("**No**", False),
        ("No.\n", False),
        ("no", False),
        ("Yes, it is.", None),
        ("Yeah", None),
        ("", None),
        ("No no", None),
        ("Yes.\nNo.", None),
        ("Maybe", None),
        ("yes..", None),
    ],
)
def test_parse_is_strict(answer, verdict):
    assert parse_verdict(answer) is verdict


def test_http_backend_retries_caches_and_never_asks_twice(server, tmp_path):
    caps = [
        "a dog on grass",
        "slow: a cat",
        "flaky: a boat",
        "garbage: a tree",
        "bad: asdf qwer",
        "a dog on grass",
    ]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    verdicts = Judge(_backend(server), template=default_template(), cache=cache).judge(caps)
    assert [v.verdict for v in verdicts] == [True, True, True, None, False, True]
    assert [v.answer for v in verdicts] == ["Yes", "Yes", "Yes", "Maybe, it depends.", " No.", "Yes"]
    assert not any(v.cached for v in verdicts)
    # The duplicate was asked once, the slow one twice (first timed out), the flaky one 3 times (two 500s).
    assert server.requests == {
        "a dog on grass": 1,
        "slow: a cat": 2,
        "flaky: a boat": 3,
        "garbage: a tree": 1,
        "bad: asdf qwer": 1,
    }
    assert server.auth == {f"Bearer {KEY}"} and server.models == {"judge-model"}
    assert len(cache) == 5
    cache.close()

    before = sum(server.requests.values())
    cache = ResponseCache(tmp_path / "cache.sqlite")  # a new process: answers come from disk
    again = Judge(_backend(server), template=default_template(), cache=cache).judge(caps)
    assert sum(server.requests.values()) == before
    assert [v.verdict for v in again] == [v.verdict for v in verdicts] and all(v.cached for v in again)
    # Another template is another question.
    Judge(_backend(server), template='Good? {caption}\nCaption: "{caption}"\n', cache=cache).judge(caps[:1])
    assert server.requests["a dog on grass"] == 2
    assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()


def test_http_backend_gives_up_after_retries_keeping_answers(server, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    judge = Judge(_backend(server, concurrency=1), template=default_template(), cache=cache)
    with pytest.raises(JudgeError, match="failed 4 times .*InternalServerError.*cached"):
        judge.judge(["a fine caption", "down: never answers"])
    assert server.requests["down: never answers"] == 4
    assert len(cache) == 1  # the answered question is not lost


def test_missing_key_is_a_sentence(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_JUDGE_KEY")
    with pytest.raises(JudgeError, match="NO_SUCH_JUDGE_KEY is not set"):
        backend.ask(["x"], lambda i, a: None)


def _steered_lm(tmp_path: Path, word: str) -> str:
    """The tiny LM made to always predict one token: ln_f ignores the input, its bias points at that token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthvlm.models.registry import location

    base = location("builtin:tiny-lm", models_dir=tmp_path / "models")
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    (token,) = tok(word, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[token] = 0.0
        model.transformer.wte.weight[token, 0] = 10.0
    out = tmp_path / f"steered-{word}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_local_backend_with_tiny_model(tmp_path):
    yes = _steered_lm(tmp_path, "Yes")
    cache = ResponseCache(tmp_path / "cache.sqlite")
    caps = ["a dog", "a cat on a mat", "x"]
    verdicts = Judge(
        TransformersBackend(yes, max_new_tokens=1, batch_size=2), template=default_template(), cache=cache
    ).judge(caps)
    assert [(v.answer, v.verdict) for v in verdicts] == [("Yes", True)] * 3
    # Three tokens of "Yes" is not a Yes/No answer: recorded as unparseable, never guessed.
    longer = Judge(
        TransformersBackend(yes, name="yes-3", max_new_tokens=3), template=default_template(), cache=cache
    )
    assert [(v.answer, v.verdict) for v in longer.judge(caps[:1])] == [("YesYesYes", None)]


def test_stage_judge_reasons_cache_and_no_key_on_disk(server, tmp_path):
    pool = [
        "A dog runs on the grass.",
        "bad: qwer asdf zxcv.",
        "garbage: a tree in a field.",
        "slow: a cat sleeps.",
    ]
    (tmp_path / "pool.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "caption": c}) + "\n" for i, c in enumerate(pool))
    )
    judge = {
        "model": "judge-model",
        "base_url": server.url,
        "api_key_env": "JUDGE_TEST_KEY",
        "timeout": 0.5,
        "backoff": 0.01,
    }
    config = RunConfig.model_validate(
        {"ingest": {"inputs": [str(tmp_path / "pool.jsonl")]}, "curate": {"recipe": "none", "judge": judge}}
    )
    run(tmp_path / "run", config, stages=["ingest", "curate"], progress=False)
    curate = tmp_path / "run" / "curate"
    assert pq.read_table(curate / "data" / "part-00000.parquet").column("id").to_pylist() == ["p0", "p3"]
    rows = pq.read_table(curate / "rejected" / "judge-00000.parquet").to_pylist()
    assert [(r["id"], r["reason"], r["detail"]) for r in rows] == [
        ("p1", "judge_no", " No."),
        ("p2", "judge_unparseable", "Maybe, it depends."),
    ]
    assert status(tmp_path / "run")["stages"]["curate"]["dropped"] == {"judge_no": 1, "judge_unparseable": 1}
    fingerprint = json.loads((curate / "fingerprint.json").read_text())["settings"]["judge"]
    assert (
        fingerprint["template_sha256"] == template_hash(default_template())
        and "api_key_env" not in fingerprint
    )
    asked = sum(server.requests.values())
    run(tmp_path / "run", config, stages=["curate"], recompute_from="curate", progress=False)
    assert sum(server.requests.values()) == asked  # recomputing the stage costs no request
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_stage_endpoint_failure_is_a_user_error(server, tmp_path):
    (tmp_path / "pool.jsonl").write_text(json.dumps({"caption": "down: x"}) + "\n")
    judge = {
        "model": "m",
        "base_url": server.url,
        "api_key_env": "JUDGE_TEST_KEY",
        "max_retries": 1,
        "backoff": 0.01,
    }
    config = RunConfig.model_validate(
        {"ingest": {"inputs": [str(tmp_path / "pool.jsonl")]}, "curate": {"recipe": "none", "judge": judge}}
    )
    with pytest.raises(UserError, match="curate.judge: judge endpoint failed 2 times"):
        run(tmp_path / "run", config, stages=["ingest", "curate"], progress=False)
