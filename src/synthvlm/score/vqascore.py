"""VQAScore (Lin et al., arXiv 2404.01291; t2v_metrics): P(answer) of a vision-language model asked whether
the image shows the caption, read from its next-token distribution, never from sampled text.

The question is `template.format(caption=...)` (t2v_metrics' default: 'Does this figure show "{caption}"?
Please answer yes or no.'), put in the user turn after the image by the model's chat template, with the
assistant's turn opened. The score is the probability of the answer's first token at the next position:

- transformers: softmax of the last position's logits, taken at the id of the answer's first token as the
  tokenizer encodes it at the start of a reply (`▁Yes` for Llama's SentencePiece, `Yes` for Qwen). Rows are
  left-padded, so the last position is the next token of every row in a batch.
- openai: an OpenAI-compatible vision endpoint (vLLM, ...) asked for one token with `top_logprobs`
  alternatives at temperature 0; the score is the sum of exp(logprob) over the alternatives whose text,
  stripped of whitespace, equals the answer ("Yes" and " Yes" are one answer), 0.0 when none is among them.
  Endpoint answers are cached by (model, template, caption, image) so a rerun never pays twice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synthvlm.core import layout
from synthvlm.core.devices import scoring_dtype
from synthvlm.core.endpoint import ChatEndpoint, EndpointError, ResponseCache
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.needs import Endpoint, Extra, Model, Need
from synthvlm.score.pairs import PairScorer

if TYPE_CHECKING:
    from pathlib import Path

    from PIL import Image

    from synthvlm.config import VqaScoreConfig

COLUMN = "vqascore"


class VqaScorer(PairScorer):
    """P(answer | image, question about the caption), float64 in [0, 1]; one of two backends by config."""

    name = "vqascore"

    @classmethod
    def needs(cls, config: VqaScoreConfig, *, field: str) -> list[Need]:
        if config.backend == "openai":
            return [
                Extra(f"{field} backend openai", ("openai",), "pip install 'synthvlm[curate]'"),
                Endpoint(field, config.base_url, config.api_key_env, config.model),
            ]
        return [Model(f"{field}.model", config.model, "transformers", config.revision, "tiny-llava-hf")]

    config: VqaScoreConfig
    _backend: _LocalModel | _Endpoint | None = None  # made on the first batch, inside the worker

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(captions):
            raise ValueError(f"Got {len(images)} images but {len(captions)} captions; they must pair up.")
        if self._backend is None:
            if self.config.backend == "openai":
                self._backend = _Endpoint(self.config, cache=layout.vqascore_cache(self.run_dir))
            else:
                self._backend = _LocalModel(self.config, models_dir=self.models_dir, device=self.device)
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        try:
            return {COLUMN: self._backend.probabilities(rgb, captions, workers=self.workers)}
        except EndpointError as exc:
            raise UserError(f"score.scorers.vqascore: {exc}") from None


class _LocalModel:
    """An image-text-to-text model loaded with transformers (llava-hf, Qwen2.5-VL, ...), on first use."""

    def __init__(self, config: VqaScoreConfig, *, models_dir: Path, device: str) -> None:
        self.config = config
        self.models_dir = models_dir
        self.device = device
        self._loaded: tuple[Any, Any, int] | None = None

    def _load(self) -> tuple[Any, Any, int]:
        """Model, processor and the answer's token id, loaded once per scorer (and so per worker)."""
        if self._loaded is None:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            from synthvlm.models import registry

            location = registry.location(self.config.model, models_dir=self.models_dir)
            dtype = scoring_dtype(self.device)
            with loading_model(self.config.model):
                processor = AutoProcessor.from_pretrained(location, revision=self.config.revision)
                model = AutoModelForImageTextToText.from_pretrained(
                    location, revision=self.config.revision, dtype=dtype
                )
            ids = processor.tokenizer(self.config.answer, add_special_tokens=False)["input_ids"]
            if not ids:
                raise UserError(f"score.scorers.vqascore: answer {self.config.answer!r} encodes to no token")
            self._loaded = (model.to(self.device).eval(), processor, ids[0])
        return self._loaded

    def probabilities(
        self, images: Sequence[Image.Image], captions: Sequence[str], *, workers: int
    ) -> np.ndarray:
        """P(answer) per pair, in `config.batch_size` forward passes (`workers` is unused: the processor
        prepares a batch in one call)."""
        import torch

        model, processor, answer_id = self._load()
        size = self.config.batch_size
        out = np.empty(len(images), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(images), size):
                batch = range(start, min(start + size, len(images)))
                prompts = [
                    processor.apply_chat_template(
                        _conversation(self.config.template.format(caption=captions[i])),
                        add_generation_prompt=True,
                    )
                    for i in batch
                ]
                inputs = processor(
                    images=[images[i] for i in batch],
                    text=prompts,
                    padding=True,
                    padding_side="left",
                    return_tensors="pt",
                ).to(self.device, model.dtype)  # the dtype applies to floating tensors (pixels) only
                assert bool(inputs["attention_mask"][:, -1].all()), "rows must be left-padded"
                logits = model(**inputs, logits_to_keep=1).logits[:, -1]
                out[start : batch.stop] = logits.double().softmax(-1)[:, answer_id].cpu().numpy()
        return out


def _conversation(question: str) -> list[dict[str, Any]]:
    """The user turn: the image, then the question (the order of llava-hf's and Qwen's model cards)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


class _Endpoint:
    """One request per distinct pair to an OpenAI-compatible vision endpoint, answers cached on disk."""

    def __init__(self, config: VqaScoreConfig, *, cache: Path) -> None:
        self.config = config
        self.cache = cache
        self.endpoint = ChatEndpoint(
            config.model,
            label="VQAScore",
            base_url=config.base_url,
            api_key_env=config.api_key_env,
            concurrency=config.concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            backoff=config.backoff,
        )

    def probabilities(
        self, images: Sequence[Image.Image], captions: Sequence[str], *, workers: int
    ) -> np.ndarray:
        """P(answer) per pair; PNG encoding runs on `workers` threads, requests `concurrency` at a time."""
        from synthvlm.core.parallel import map_in_threads

        cfg = self.config
        pngs = map_in_threads(_png, images, workers)
        questions = [cfg.template.format(caption=c) for c in captions]
        # The endpoint's URL is not part of the key: the same model served elsewhere answers the same.
        keys = [
            ResponseCache.key(
                f"openai:{cfg.model}",
                hashlib.sha256(cfg.template.encode("utf-8")).hexdigest(),
                caption,
                hashlib.sha256(png).hexdigest(),
                str(cfg.top_logprobs),
            )
            for caption, png in zip(captions, pngs, strict=True)
        ]
        cache = ResponseCache(self.cache)
        try:
            answers = cache.get(keys)
            todo: dict[str, int] = {}  # each distinct uncached question once: key -> its first pair
            for i, key in enumerate(keys):
                if key not in answers and key not in todo:
                    todo[key] = i
            asked = list(todo)

            def store(j: int, alternatives: list[tuple[str, float]]) -> None:
                answers[asked[j]] = json.dumps(alternatives)
                cache.put(asked[j], answers[asked[j]])

            self.endpoint.map(lambda i: self._ask(pngs[i], questions[i]), list(todo.values()), store)
        finally:
            cache.close()
        return np.array([answer_probability(json.loads(answers[k]), cfg.answer) for k in keys], np.float64)

    def _ask(self, png: bytes, question: str) -> list[tuple[str, float]]:
        """The first token's alternatives as (text, logprob), most likely first."""
        url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
        try:
            reply = self.endpoint.create(
                messages=[{"role": "user", "content": content}],
                max_tokens=1,
                logprobs=True,
                top_logprobs=self.config.top_logprobs,
                temperature=0,
            )
        except json.JSONDecodeError:  # a 200 whose body is not JSON (a proxy's error page)
            reply = None
        try:
            top = reply.choices[0].logprobs.content[0].top_logprobs
            alternatives = [(t.token, float(t.logprob)) for t in top]
        except (AttributeError, IndexError, TypeError, ValueError):
            alternatives = []
        if not alternatives:
            raise EndpointError(
                f"VQAScore endpoint {self.endpoint.where} answered without the first token's alternatives "
                "(choices[0].logprobs.content[0].top_logprobs); it must support logprobs=True with "
                "top_logprobs, as vLLM does"
            )
        return alternatives


def answer_probability(alternatives: Sequence[tuple[str, float]], answer: str) -> float:
    """Sum of exp(logprob) over the alternatives that are `answer` once stripped of whitespace (0.0: none)."""
    return sum((math.exp(logprob) for token, logprob in alternatives if token.strip() == answer), 0.0)


def _png(image: Image.Image) -> bytes:
    """The PNG the endpoint is sent and the cache key hashes (fast compression: the bytes are only sent)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
