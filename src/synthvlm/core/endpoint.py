"""OpenAI-compatible chat endpoints: the client the LLM judge and VQAScore share, and their answer cache.

Retries are ours: a timeout, a dropped connection, 429 and 5xx are retried with doubling backoff, any other
refusal is final, so the openai client's own retries are off. The API key is read from an environment
variable whose *name* is configured; its value is passed to the client only, never logged or stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class EndpointError(RuntimeError):
    """An endpoint failed after every retry, refused a request, or answered without what was asked for;
    answers received before stay cached for the rerun."""


class ResponseCache:
    """Persistent answers: key -> answer text, committed one by one (SQLite, safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(*parts: str) -> str:
        """Cache key of one question: sha256 of its parts as a JSON list (the judge: backend model, template
        hash, caption)."""
        return hashlib.sha256(json.dumps(list(parts)).encode("utf-8")).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached answers among these keys."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk).fetchall()
            )
        return found

    def put(self, key: str, answer: str) -> None:
        """Store one answer durably before anything else happens."""
        self._db.execute("INSERT OR REPLACE INTO answers (key, answer) VALUES (?, ?)", (key, answer))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class ChatEndpoint:
    """Chat completions on one model of an OpenAI-compatible server (vLLM, TGI, llama.cpp, hosted APIs)."""

    def __init__(
        self,
        model: str,
        *,
        label: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
    ) -> None:
        self.model = model
        self.label = label
        """What the endpoint serves, as errors name it ("judge", "VQAScore")."""
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._client: Any = None

    @property
    def where(self) -> str:
        """The endpoint and model, for error messages."""
        return f"{self.base_url or 'the default OpenAI endpoint'} (model {self.model!r})"

    def client(self) -> Any:
        """The openai client, made on first use (so a worker that never asks needs no key)."""
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ImportError(
                    f"the OpenAI-compatible {self.label} needs openai: pip install 'synthvlm[curate]'"
                ) from None
            key = os.environ.get(self.api_key_env)
            if not key:
                raise EndpointError(
                    f"environment variable {self.api_key_env} is not set; set it to the endpoint's API key "
                    "(any non-empty value for a server without authentication)"
                )
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=key, timeout=self.timeout, max_retries=0
            )
        return self._client

    def create(self, **request: Any) -> Any:
        """One chat completion of `request` (the model is added), retried on transient failures."""
        import openai

        client = self.client()
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return client.chat.completions.create(model=self.model, **request)
            except (
                openai.APITimeoutError,
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as exc:
                last = exc
            except openai.APIStatusError as exc:  # 4xx other than 429: retrying cannot help
                raise EndpointError(
                    f"{self.label} endpoint refused the request: HTTP {exc.status_code} from {self.where}"
                ) from None
        raise EndpointError(
            f"{self.label} endpoint failed {self.max_retries + 1} times ({type(last).__name__} from "
            f"{self.where}); rerun to resume: answers received so far are cached"
        )

    def map(self, ask: Callable[[T], R], items: Sequence[T], on_result: Callable[[int, R], None]) -> None:
        """`ask` every item, `concurrency` at a time; `on_result(index, result)` runs in the caller's thread
        as each arrives (any order). The first failure cancels what has not started and is raised."""
        self.client()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(ask, item): i for i, item in enumerate(items)}
            try:
                for future in as_completed(futures):
                    on_result(futures[future], future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
