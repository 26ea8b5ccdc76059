"""LLM Yes/No caption judge: an OpenAI-compatible endpoint or a local transformers model, answers cached.

Every answer is stored in a SQLite cache, keyed by (backend and model, template hash, caption), the moment
it arrives, so a killed run never asks the same question twice and a finished run re-run asks nothing.
Answers are parsed strictly: after stripping whitespace, surrounding quotes/asterisks and one trailing
period or exclamation mark, the answer must be the single word yes or no (any case); anything else is
`unparseable` and is recorded as such, never guessed. The API key is read from an environment variable
whose *name* is configured; its value is passed to the client only, never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthvlm.config import CurateConfig, JudgeConfig
from synthvlm.core import fsio, layout
from synthvlm.core.devices import resolve_device
from synthvlm.core.endpoint import ChatEndpoint, EndpointError, ResponseCache
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.needs import RECIPE_FIX, Endpoint, Extra, Model, Need, Refusal
from synthvlm.models import registry
from synthvlm.steps.base import OPERATIONAL, CurateStep, Decision, Drop

_STRIP = " \t\r\n\"'`*"


def default_template() -> str:
    """The packaged prompt (`synthvlm/data/judge_prompt.txt`): descriptive, coherent, clear enough to draw."""
    return resources.files("synthvlm").joinpath("data/judge_prompt.txt").read_text(encoding="utf-8")


def load_template(path: str | None) -> str:
    """A template file's text (it must contain `{caption}`), or the default template when no path is given."""
    text = default_template() if path is None else Path(path).read_text(encoding="utf-8")
    if "{caption}" not in text:
        raise ValueError(f"judge template {path or '(default)'} has no {{caption}} placeholder")
    return text


def template_hash(template: str) -> str:
    """sha256 of the template text: part of every cache key, so editing the prompt asks again."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def render(template: str, caption: str) -> str:
    """The prompt for one caption (plain replacement: braces in captions or templates are left alone)."""
    return template.replace("{caption}", caption)


def parse_verdict(answer: str) -> bool | None:
    """True for yes, False for no, None for anything else (strict: one word, no guessing)."""
    text = answer.strip(_STRIP)
    if text[-1:] in (".", "!"):
        text = text[:-1].strip(_STRIP)
    word = text.casefold()
    if word == "yes":
        return True
    if word == "no":
        return False
    return None


JudgeError = EndpointError
"""A judge request failed after every retry; answers received so far stay cached for the rerun."""


class Backend(ABC):
    """Answers prompts; `ask` calls `on_answer(index, text)` as each answer arrives (any order)."""

    model_key: str

    @abstractmethod
    def ask(self, prompts: Sequence[str], on_answer: Callable[[int, str], None]) -> None:
        """Answer every prompt or raise JudgeError."""


class OpenAIBackend(Backend):
    """Chat completions on any OpenAI-compatible server (vLLM, TGI, llama.cpp, hosted APIs)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_new_tokens: int = 4,
    ) -> None:
        self.model = model
        self.model_key = f"openai:{model}"
        self.max_new_tokens = max_new_tokens
        self.endpoint = ChatEndpoint(
            model,
            label="judge",
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )

    def _ask_one(self, prompt: str) -> str:
        reply = self.endpoint.create(
            messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=self.max_new_tokens
        )
        return reply.choices[0].message.content or ""

    def ask(self, prompts: Sequence[str], on_answer: Callable[[int, str], None]) -> None:
        self.endpoint.map(self._ask_one, prompts, on_answer)


class TransformersBackend(Backend):
    """A local causal LM answering greedily (chat template when the tokenizer has one), in batches."""

    def __init__(
        self,
        model: str,
        *,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 8,
        max_new_tokens: int = 4,
    ) -> None:
        self.model = model
        self.model_key = f"transformers:{name or model}"
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            with loading_model(self.model):
                tokenizer = AutoTokenizer.from_pretrained(self.model, padding_side="left")
                model = AutoModelForCausalLM.from_pretrained(self.model)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = model.to(self.device).eval()
            self._loaded = (model, tokenizer)
        return self._loaded

    def _text(self, prompt: str) -> str:
        _, tokenizer = self._load()
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def ask(self, prompts: Sequence[str], on_answer: Callable[[int, str], None]) -> None:
        import torch

        model, tokenizer = self._load()
        for start in range(0, len(prompts), self.batch_size):
            texts = [self._text(p) for p in prompts[start : start + self.batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
                self.device
            )
            with torch.inference_mode():
                out = model.generate(
                    **enc,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for offset, answer in enumerate(answers):
                on_answer(start + offset, answer)


@dataclass(frozen=True)
class Verdict:
    """The judge's raw answer and its strict reading (None: unparseable)."""

    answer: str
    verdict: bool | None
    cached: bool


class Judge:
    """Asks a backend about captions it has not answered before; every answer goes through the cache."""

    def __init__(self, backend: Backend, *, template: str, cache: ResponseCache) -> None:
        self.backend = backend
        self.template = template
        self.template_digest = template_hash(template)
        self.cache = cache

    def judge(self, captions: Sequence[str]) -> list[Verdict]:
        """One verdict per caption, in order; only uncached, distinct captions reach the backend."""
        keys = [ResponseCache.key(self.backend.model_key, self.template_digest, c) for c in captions]
        answers = self.cache.get(keys)
        cached = set(answers)
        missing: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in answers and key not in missing:
                missing[key] = i
        todo = list(missing.items())

        def store(j: int, answer: str) -> None:
            key = todo[j][0]
            self.cache.put(key, answer)
            answers[key] = answer

        if todo:
            self.backend.ask([render(self.template, captions[i]) for _, i in todo], store)
        return [Verdict(answers[k], parse_verdict(answers[k]), k in cached) for k in keys]


@dataclass(frozen=True, kw_only=True)
class JudgeStep(CurateStep):
    """Keeps a caption only when the judge answers yes; no and unparseable answers are dropped as such."""

    name = "judge"
    folder = "judged"

    config: JudgeConfig
    models_dir: Path
    """Where `builtin:` models are built (the run's)."""
    cache: Path
    """The answer cache: outside the stage folder, so `--from curate` keeps the answers already paid for."""

    @classmethod
    def needs(cls, config: CurateConfig) -> list[Need]:
        judge = config.judge
        if judge is None:
            return []
        out: list[Need] = []
        if judge.template is not None:
            try:
                load_template(judge.template)
            except OSError as exc:
                fix = f"{RECIPE_FIX}, or drop it for the bundled Yes/No question"
                out.append(Refusal(f"curate.judge.template {judge.template}: {exc.strerror}", fix))
            except ValueError as exc:
                out.append(Refusal(str(exc), "put {caption} where the caption goes"))
        if judge.backend == "openai":
            out.append(Extra("curate.judge backend openai", ("openai",), "pip install 'synthvlm[curate]'"))
            out.append(Endpoint("curate.judge", judge.base_url, judge.api_key_env, judge.model))
        else:
            out.append(Model("curate.judge.model", judge.model, "transformers", alternative="tiny-lm"))
        return out

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> JudgeStep | None:
        if config.judge is None:
            return None
        return cls(
            config=config.judge, models_dir=layout.models_dir(run_dir), cache=layout.judge_cache(run_dir)
        )

    def settings(self) -> dict[str, Any]:
        out = self.config.model_dump(exclude=OPERATIONAL)
        out["template_sha256"] = template_hash(load_template(self.config.template))
        return {"judge": out}

    def backend(self) -> Backend:
        """This worker's client or local model for the config, built once."""
        cfg = self.config
        if cfg.backend == "openai":
            return registry.cached(
                "judge",
                ("openai", cfg),
                lambda: OpenAIBackend(
                    cfg.model,
                    base_url=cfg.base_url,
                    api_key_env=cfg.api_key_env,
                    concurrency=cfg.concurrency,
                    timeout=cfg.timeout,
                    max_retries=cfg.max_retries,
                    backoff=cfg.backoff,
                    max_new_tokens=cfg.max_new_tokens,
                ),
            )
        model = registry.location(cfg.model, models_dir=self.models_dir)
        # Keyed by the configured name, not this run's build path of a builtin model.
        return registry.cached(
            "judge",
            ("transformers", cfg, model),
            lambda: TransformersBackend(
                model,
                name=cfg.model,
                device=resolve_device(cfg.device),
                batch_size=cfg.batch_size,
                max_new_tokens=cfg.max_new_tokens,
            ),
        )

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        backend = self.backend()
        cache = ResponseCache(self.cache)
        try:
            verdicts = Judge(backend, template=load_template(self.config.template), cache=cache).judge(
                table.column("caption").to_pylist()
            )
        except JudgeError as exc:
            raise UserError(f"curate.judge: {exc}") from None
        finally:
            cache.close()
        keep = [v.verdict is True for v in verdicts]
        drops = [
            Drop(i, "judge_no" if v.verdict is False else "judge_unparseable", detail=v.answer)
            for i, v in enumerate(verdicts)
            if v.verdict is not True
        ]
        return Decision(keep, drops)
