"""Per-caption perplexity under a Hugging Face causal LM, batched, so fluent captions can be told from noise.

Perplexity is `exp(mean negative log-likelihood)` of the caption's tokens, each predicted from the ones
before it. The tokenizer's BOS token (when it has one) is put in front so the first word is predicted
too; captions are cut at `max_tokens` tokens. Batches are right-padded and masked, so a caption's value
does not depend on its batch neighbours beyond float rounding; the batch layout is fixed by pool order
and `batch_size` (both in the stage fingerprint), so results are reproducible. `PerplexityStep` is the
curate step: it picks the backend (a causal LM, or KenLM as Data-Juicer computes it) and drops captions
above `max_perplexity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synthvlm.config import CurateConfig, PerplexityConfig
from synthvlm.core import fsio, layout
from synthvlm.core.devices import resolve_device
from synthvlm.core.errors import UserError, loading_model
from synthvlm.core.needs import Exists, Extra, Model, Need, Refusal
from synthvlm.models import registry
from synthvlm.steps.base import OPERATIONAL, CurateStep, Decision, Drop


class PerplexityScorer:
    """Perplexity of each caption under a causal LM; the model loads on first use (once per worker)."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        max_tokens: int = 128,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2, got {max_tokens}.")
        self.model = model
        self.revision = revision
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            with loading_model(self.model):
                tokenizer = AutoTokenizer.from_pretrained(self.model, revision=self.revision)
                model = AutoModelForCausalLM.from_pretrained(self.model, revision=self.revision)
            self._loaded = (model.to(self.device).eval(), tokenizer)
        return self._loaded

    def _ids(self, caption: str) -> list[int]:
        _, tokenizer = self._load()
        ids = tokenizer(caption, add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id, *ids]
        return ids[: self.max_tokens]

    def perplexities(self, captions: Sequence[str]) -> np.ndarray:
        """float64 perplexity per caption; NaN for a caption with no token to predict (empty text, no BOS)."""
        import torch

        model, tokenizer = self._load()
        out = np.full(len(captions), np.nan)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        for start in range(0, len(captions), self.batch_size):
            batch = [self._ids(c) for c in captions[start : start + self.batch_size]]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                mask[row, : len(ids)] = 1
            with torch.inference_mode():
                logits = model(
                    input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()
            target = input_ids[:, 1:]
            token_lp = logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).double()
            valid = mask[:, 1:].double()
            counts = valid.sum(dim=1)
            nll = -(token_lp * valid).sum(dim=1)
            for row in range(len(batch)):
                if counts[row] > 0:
                    out[start + row] = math.exp(float(nll[row] / counts[row]))
        return out


class KenlmScorer:
    """Data-Juicer's perplexity: a KenLM model (.arpa/.bin) over SentencePiece pieces joined by spaces.

    `10 ** (-sum(log10 scores) / (words + 1))` per line of the caption, as Data-Juicer's `perplexity_filter`
    computes it (the paper: English Wikipedia KenLM + SentencePiece, keep <= 5500).
    """

    def __init__(self, model: str, *, tokenizer: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            try:
                import kenlm
                import sentencepiece
            except ImportError:
                raise ImportError(
                    "KenLM perplexity needs kenlm and sentencepiece: pip install 'synthvlm[kenlm]'"
                ) from None
            self._loaded = (
                kenlm.Model(self.model),
                sentencepiece.SentencePieceProcessor(model_file=self.tokenizer),
            )
        return self._loaded

    def perplexities(self, captions: Sequence[str]) -> np.ndarray:
        """float64 perplexity per caption."""
        model, sp = self._load()
        out = np.empty(len(captions), dtype=np.float64)
        for i, caption in enumerate(captions):
            text = " ".join(sp.encode(caption, out_type=str))
            log_score, length = 0.0, 0
            for line in text.splitlines():
                log_score += model.score(line)
                length += len(line.split()) + 1
            out[i] = 10.0 ** (-log_score / length) if length else math.nan
        return out


@dataclass(frozen=True, kw_only=True)
class PerplexityStep(CurateStep):
    """Drops captions above `max_perplexity` under the configured backend (a causal LM, or KenLM)."""

    name = "perplexity"
    folder = "perplexity"

    config: PerplexityConfig
    models_dir: Path
    """Where `builtin:` models are built (the run's)."""

    @classmethod
    def needs(cls, config: CurateConfig) -> list[Need]:
        ppl = config.perplexity
        if ppl is None:
            return []
        field = "curate.perplexity"
        if ppl.backend == "transformers":
            return [Model(f"{field}.model", ppl.model, "transformers", ppl.revision, "tiny-lm")]
        out: list[Need] = [
            Extra(f"{field} backend kenlm", ("kenlm", "sentencepiece"), "pip install 'synthvlm[kenlm]'"),
            Exists(
                f"{field}.model {ppl.model}", ppl.model, "file", "point it at the KenLM .arpa or .bin file"
            ),
        ]
        if ppl.tokenizer is None:
            out.append(
                Refusal(
                    f"{field}: the kenlm backend needs `tokenizer`",
                    "set curate.perplexity.tokenizer to the SentencePiece .model file",
                )
            )
        else:
            fix = "point it at the SentencePiece .model file"
            out.append(Exists(f"{field}.tokenizer {ppl.tokenizer}", ppl.tokenizer, "file", fix))
        return out

    @classmethod
    def from_config(cls, config: CurateConfig, *, run_dir: fsio.RunPath) -> PerplexityStep | None:
        if config.perplexity is None:
            return None
        return cls(config=config.perplexity, models_dir=layout.models_dir(run_dir))

    def settings(self) -> dict[str, Any]:
        return {"perplexity": self.config.model_dump(exclude=OPERATIONAL)}

    def scorer(self) -> PerplexityScorer | KenlmScorer:
        """This worker's scorer for the config, loaded once."""
        cfg = self.config
        if cfg.backend == "kenlm":
            if cfg.tokenizer is None:
                raise UserError(
                    "curate.perplexity: the kenlm backend needs `tokenizer` (a SentencePiece .model)"
                )
            return registry.cached(
                "perplexity",
                ("kenlm", cfg.model, cfg.tokenizer),
                lambda: KenlmScorer(cfg.model, tokenizer=cfg.tokenizer),
            )
        model = registry.location(cfg.model, models_dir=self.models_dir)
        return registry.cached(
            "perplexity",
            ("perplexity", model, cfg.revision, cfg.device, cfg.batch_size, cfg.max_tokens),
            lambda: PerplexityScorer(
                model,
                revision=cfg.revision,
                device=resolve_device(cfg.device),
                batch_size=cfg.batch_size,
                max_tokens=cfg.max_tokens,
            ),
        )

    def decide(self, table: pa.Table, plan: pa.Table | None = None) -> Decision:
        values = self.scorer().perplexities(table.column("caption").to_pylist())
        keep = [bool(v <= self.config.max_perplexity) for v in values]  # NaN (nothing to predict) is dropped
        drops = [
            Drop(i, "perplexity", value=float(v))
            for i, (k, v) in enumerate(zip(keep, values, strict=True))
            if not k
        ]
        return Decision(keep, drops)
