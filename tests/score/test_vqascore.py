"""VQAScore: the transformers backend against a step-by-step computation on the tiny llava-hf model, and
the endpoint backend against a loopback OpenAI-compatible server returning logprobs."""

from __future__ import annotations

import base64
import io
import json
import math
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from synthvlm.config import VQA_TEMPLATE, VqaScoreConfig
from synthvlm.core import layout
from synthvlm.core.errors import UserError
from synthvlm.models.builtin.llava import build_tiny_llava_hf
from synthvlm.score.pairs import scorer_class
from synthvlm.score.vqascore import VqaScorer, answer_probability

CAPTIONS = ["a cat", "the photo of a dog", "red bus on the road", "sky", "a b c", "Yes", "cat the cat"]
KEY = "sk-test-not-a-real-key-456"


@pytest.fixture(scope="module")
def tiny_llava_hf(tmp_path_factory):
    return build_tiny_llava_hf(tmp_path_factory.mktemp("models") / "tiny-llava-hf")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (36 + 3 * i, 44, 3), dtype=np.uint8))
        for i in range(len(CAPTIONS))
    ]


def _scorer(tmp_path, **config) -> VqaScorer:
    return VqaScorer(
        VqaScoreConfig.model_validate(config),
        run_dir=tmp_path / "run",
        models_dir=tmp_path / "models",
        device="cpu",
        batch_size=64,
        workers=2,
    )


def _step_by_step(path, images, captions) -> np.ndarray:
    """One pair at a time, no padding: the chat template tokenized by the processor, the last logits."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).eval()
    yes = processor.tokenizer.convert_tokens_to_ids("Yes")
    assert yes != processor.tokenizer.unk_token_id
    out = []
    with torch.no_grad():
        for image, caption in zip(images, captions, strict=True):
            question = VQA_TEMPLATE.format(caption=caption)
            turn = [{"type": "image", "image": image}, {"type": "text", "text": question}]
            inputs = processor.apply_chat_template(
                [{"role": "user", "content": turn}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
            text = processor.tokenizer.decode(inputs["input_ids"][0])
            assert text.startswith("<s>USER: <image>") and text.endswith(f"{question} ASSISTANT:")
            out.append(float(model(**inputs).logits[0, -1].softmax(-1)[yes]))
    return np.array(out)


def test_registered_under_its_name():
    assert scorer_class("vqascore") is VqaScorer


def test_transformers_equals_step_by_step_in_any_batch_layout(tiny_llava_hf, images, tmp_path):
    want = _step_by_step(tiny_llava_hf, images, CAPTIONS)
    got = {
        size: _scorer(tmp_path, model=str(tiny_llava_hf), batch_size=size).score(images, CAPTIONS)["vqascore"]
        for size in (1, 3, 32)
    }
    for scores in got.values():
        assert scores.dtype == np.float64 and scores.shape == (len(CAPTIONS),)
        # measured: 1.4e-8 at batch size 1, 7.0e-7 in padded batches (left padding shifts the rotary
        # positions, which changes rounding only)
        assert np.abs(scores - want).max() < 1e-5
    assert np.abs(got[1] - got[3]).max() < 5e-6 and np.abs(got[1] - got[32]).max() < 5e-6
    # The tiny model's probabilities differ between pairs by far more than the tolerance.
    assert want.max() - want.min() > 1e-2 and len(set(np.round(want, 4))) == len(CAPTIONS)

    order = [6, 2, 0, 5, 1, 4, 3]
    reordered = _scorer(tmp_path, model=str(tiny_llava_hf), batch_size=3).score(
        [images[i] for i in order], [CAPTIONS[i] for i in order]
    )["vqascore"]
    assert np.abs(reordered - want[order]).max() < 1e-5


def test_builtin_model_scores_depend_on_the_image(tiny_llava_hf, images, tmp_path):
    # The registry's build of the same model is the same model.
    captions = ["a cat"] * len(images)
    scores = _scorer(tmp_path, model="builtin:tiny-llava-hf").score(images, captions)["vqascore"]
    assert np.abs(scores - _step_by_step(tiny_llava_hf, images, captions)).max() < 1e-5
    assert len(set(np.round(scores, 4))) == len(images)


def test_answer_probability_sums_stripped_matches():
    alternatives = [("Yes", -0.5), ("No", -1.0), (" Yes", -2.0), ("yes", -3.0), ("Yes.", -4.0)]
    assert answer_probability(alternatives, "Yes") == math.exp(-0.5) + math.exp(-2.0)
    assert answer_probability(alternatives, "No") == math.exp(-1.0)
    assert answer_probability([("No", -0.1), ("Maybe", -3.0)], "Yes") == 0.0


# The first-token alternatives the server returns, by a word in the caption.
LOGPROBS = {
    "dog": [("Yes", -0.5), ("No", -1.25), (" Yes", -2.0)],
    "cat": [("No", -0.125), ("Maybe", -2.5)],
    "boat": [(" Yes", -0.75), ("\nNo", -1.0)],
}


class LogprobServer:
    """Chat completions with first-token logprobs on 127.0.0.1; requests and their bodies are recorded."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.auth: set[str] = set()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                caption = body["messages"][0]["content"][1]["text"].split('"')[1]
                with server.lock:
                    server.requests[caption] += 1
                    n = server.requests[caption]
                    server.bodies.append(body)
                    server.auth.add(self.headers.get("Authorization", ""))
                if ("flaky" in caption and n == 1) or "down" in caption:
                    return self._send(500, {"error": "boom"})
                if "notjson" in caption:
                    return self._send(200, None)
                if "nologprobs" in caption:
                    content, logprobs = "Yes", None
                elif "garbage" in caption:
                    content, logprobs = "Yes", {"content": [{"token": "Yes", "logprob": "high"}]}
                else:
                    word = next(w for w in LOGPROBS if w in caption)
                    top = [{"token": t, "logprob": lp, "bytes": None} for t, lp in LOGPROBS[word]]
                    content, logprobs = top[0]["token"], {"content": [{**top[0], "top_logprobs": top}]}
                choice = {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": content},
                    "logprobs": logprobs,
                }
                reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"]}
                self._send(200, {**reply, "choices": [choice]})

            def _send(self, status: int, reply: dict | None) -> None:
                data = b"<html>proxy error</html>" if reply is None else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    pytest.importorskip("openai")
    monkeypatch.setenv("VQA_TEST_KEY", KEY)
    srv = LogprobServer()
    yield srv
    srv.close()


def _endpoint_scorer(tmp_path, server: LogprobServer, **config) -> VqaScorer:
    args = {
        "backend": "openai",
        "model": "vqa-model",
        "base_url": server.url,
        "api_key_env": "VQA_TEST_KEY",
        "concurrency": 3,
        "max_retries": 2,
        "backoff": 0.01,
        "top_logprobs": 5,
        **config,
    }
    return _scorer(tmp_path, **args)


def test_endpoint_scores_from_logprobs_retries_and_caches(server, images, tmp_path):
    captions = ["a dog", "a cat", "a boat", "flaky: a dog", "a dog"]
    pairs = [images[0], images[1], images[2], images[3], images[4]]
    got = _endpoint_scorer(tmp_path, server).score(pairs, captions)["vqascore"]
    assert got.dtype == np.float64
    assert got.tolist() == [
        math.exp(-0.5) + math.exp(-2.0),
        0.0,
        math.exp(-0.75),
        math.exp(-0.5) + math.exp(-2.0),
        math.exp(-0.5) + math.exp(-2.0),
    ]
    # One request per pair; the flaky one twice (a 500, then the answer).
    assert server.requests == {"a dog": 2, "a cat": 1, "a boat": 1, "flaky: a dog": 2}
    assert server.auth == {f"Bearer {KEY}"}
    (body,) = [b for b in server.bodies if '"a boat"' in b["messages"][0]["content"][1]["text"]]
    assert {k: body[k] for k in ("model", "max_tokens", "logprobs", "top_logprobs", "temperature")} == {
        "model": "vqa-model",
        "max_tokens": 1,
        "logprobs": True,
        "top_logprobs": 5,
        "temperature": 0,
    }
    picture, question = body["messages"][0]["content"]
    assert question == {"type": "text", "text": VQA_TEMPLATE.format(caption="a boat")}
    url = picture["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "PNG" and np.array_equal(np.asarray(sent), np.asarray(pairs[2]))

    # A rerun (a new scorer, as in a new process) pays nothing, wherever the same model is served.
    asked = sum(server.requests.values())
    elsewhere = LogprobServer()
    try:
        again = _endpoint_scorer(tmp_path, elsewhere).score(pairs, captions)["vqascore"]
    finally:
        elsewhere.close()
    assert again.tolist() == got.tolist()
    assert sum(server.requests.values()) == asked and not elsewhere.requests
    assert layout.vqascore_cache(tmp_path / "run").is_file()
    assert KEY.encode() not in layout.vqascore_cache(tmp_path / "run").read_bytes()
    # Another answer is read from the cached alternatives; another template is another question.
    no = _endpoint_scorer(tmp_path, server, answer="No").score(pairs[:3], captions[:3])["vqascore"]
    assert no.tolist() == [math.exp(-1.25), math.exp(-0.125), math.exp(-1.0)]
    assert sum(server.requests.values()) == asked
    _endpoint_scorer(tmp_path, server, template="Is this {caption}?").score(pairs[:1], ['"a dog"'])
    assert server.requests["a dog"] == 3


@pytest.mark.parametrize("caption", ["nologprobs: a dog", "garbage: a dog", "notjson: a dog"])
def test_endpoint_without_logprobs_is_a_clear_error(server, images, tmp_path, caption):
    with pytest.raises(
        UserError, match="VQAScore endpoint http://127.0.0.1:.*'vqa-model'.*top_logprobs"
    ) as err:
        _endpoint_scorer(tmp_path, server).score(images[:1], [caption])
    assert str(err.value).startswith("score.scorers.vqascore: ")
    assert server.requests[caption] == 1  # a well-formed reply without logprobs is not retried
    assert _cached(tmp_path) == 0


def test_endpoint_failure_after_retries_keeps_the_answers(server, images, tmp_path):
    scorer = _endpoint_scorer(tmp_path, server, concurrency=1)
    with pytest.raises(UserError, match="VQAScore endpoint failed 3 times .*InternalServerError.*cached"):
        scorer.score(images[:2], ["a dog", "down: a dog"])
    assert server.requests["down: a dog"] == 3
    assert _cached(tmp_path) == 1


def test_endpoint_without_key_is_a_sentence(images, tmp_path, monkeypatch):
    pytest.importorskip("openai")
    monkeypatch.delenv("NO_SUCH_VQA_KEY", raising=False)
    scorer = _scorer(
        tmp_path, backend="openai", model="m", base_url="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_VQA_KEY"
    )
    with pytest.raises(UserError, match="NO_SUCH_VQA_KEY is not set"):
        scorer.score(images[:1], ["a dog"])


def _cached(tmp_path) -> int:
    from synthvlm.core.endpoint import ResponseCache

    cache = ResponseCache(layout.vqascore_cache(tmp_path / "run"))
    try:
        return len(cache)
    finally:
        cache.close()
