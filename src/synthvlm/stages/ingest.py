"""Ingest: read caption files of any supported format into the pool, one stable id per caption."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from synthvlm.core import fsio, schema
from synthvlm.core.errors import UserError
from synthvlm.core.ids import IdAssigner
from synthvlm.core.needs import Inputs, Need, Refusal
from synthvlm.core.progress import report_rows
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.readers import BadRecord, Record, UnreadableFileError, detect_format, expand_inputs, read
from synthvlm.stages.caption import CaptionStage

if TYPE_CHECKING:
    from synthvlm.config import RunConfig


class IngestStage(Stage):
    """Streams every input once; shard i holds input records [i*shard_rows, (i+1)*shard_rows)."""

    name = "ingest"
    sequential_phases = frozenset({"read"})
    unit = "captions"

    @property
    def upstream(self) -> tuple[str, ...]:  # type: ignore[override]
        """The caption stage, when the run captions images: ingest then reads its shards too."""
        return (CaptionStage.name,) if CaptionStage.enabled(self.config) else ()

    def _inputs(self) -> list[str]:
        cfg = self.config.ingest
        patterns = [*cfg.inputs, *([CaptionStage.output_glob(self.run_dir)] if self.upstream else [])]
        if not patterns:
            raise UserError("no input files: pass caption files to `synthvlm ingest` or set ingest.inputs")
        try:
            return expand_inputs(patterns)
        except UnreadableFileError as exc:
            raise UserError(str(exc)) from None

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        if config.ingest.inputs or config.caption.inputs:  # a captioned run also reads the caption shards
            return [Inputs("ingest.inputs", tuple(config.ingest.inputs))]
        fix = "list caption files in ingest.inputs, or pass them to `synthvlm ingest`"
        return [Refusal("ingest.inputs is empty", fix)]

    def settings(self) -> dict[str, Any]:
        # A content digest, so an input edited in place (same size or not) is noticed on resume.
        files = [{"path": p, "bytes": os.path.getsize(p), "sha256": _sha256(p)} for p in self._inputs()]
        # `limit` is left out when unset, so runs made before it existed keep their fingerprint.
        exclude = {"inputs", *(("limit",) if self.config.ingest.limit is None else ())}
        return {**self.config.ingest.model_dump(exclude=exclude), "files": files}

    def phases(self) -> list[str]:
        return ["read"]

    def _stream(self) -> Iterator[Record | BadRecord]:
        cfg = self.config.ingest
        files = self._inputs()
        formats: dict[str, str | UnreadableFileError] = {}
        for path in files:  # fail before writing anything when a file's format is unknown
            try:
                formats[path] = detect_format(path) if cfg.format == "auto" else cfg.format
            except UnreadableFileError as exc:
                if not cfg.skip_bad_files:
                    raise UserError(str(exc)) from None
                formats[path] = exc
        for path in files:
            fmt = formats[path]
            if isinstance(fmt, UnreadableFileError):
                yield BadRecord(source_file=path, source_index=0, reason="unreadable_file", detail=str(fmt))
                continue
            try:
                yield from read(path, fmt=fmt, max_caption_chars=cfg.max_caption_chars)
            except UnreadableFileError as exc:
                if not cfg.skip_bad_files:
                    raise UserError(str(exc)) from None
                yield BadRecord(source_file=path, source_index=0, reason="unreadable_file", detail=str(exc))
            except ValueError as exc:
                raise UserError(str(exc)) from None

    def run_sequential(self, phase: str, done: set[int]) -> Iterator[tuple[Task, TaskStats | None]]:
        size = self.config.ingest.shard_rows
        ids = IdAssigner()
        chunk: list[Record | BadRecord] = []
        index = 0
        for record in _counted(itertools.islice(self._stream(), self.config.ingest.limit)):
            chunk.append(record)
            if len(chunk) == size:
                yield self._flush(index, chunk, ids, write=index not in done)
                chunk, index = [], index + 1
        if chunk:
            yield self._flush(index, chunk, ids, write=index not in done)

    def _flush(
        self, index: int, chunk: list[Record | BadRecord], ids: IdAssigner, *, write: bool
    ) -> tuple[Task, TaskStats | None]:
        task = Task("read", index)
        before = ids.duplicates
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for rec in chunk:
            if isinstance(rec, Record):
                rid = ids.assign(source_id=rec.source_id, caption=rec.caption)
                rows.append(
                    {
                        "id": rid,
                        "caption": rec.caption,
                        "source_file": rec.source_file,
                        "source_index": rec.source_index,
                        "source_id": rec.source_id,
                        "image_ref": rec.image_ref,
                    }
                )
            else:
                rejected.append(
                    {
                        "caption": rec.caption,
                        "reason": rec.reason,
                        "detail": rec.detail,
                        "source_file": rec.source_file,
                        "source_index": rec.source_index,
                        "id": rec.source_id,
                    }
                )
        if not write:
            return task, None
        fsio.write_table(self.layout.shard(index), pa.Table.from_pylist(rows, schema=schema.CAPTION))
        self.write_rejected(task, rejected)
        dropped = Counter(r["reason"] for r in rejected)
        return task, TaskStats(
            len(chunk), len(rows), dict(dropped), {"duplicate_ids": ids.duplicates - before}
        )


REPORT_EVERY = 100
"""Records read between two reports to the progress: live, at a cost no reader notices."""


def _counted(records: Iterable[Record | BadRecord]) -> Iterator[Record | BadRecord]:
    """The records, counted into the progress as they are read."""
    n = 0
    for n, record in enumerate(records, 1):
        if n % REPORT_EVERY == 0:
            report_rows(REPORT_EVERY)
        yield record
    report_rows(n % REPORT_EVERY)


def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
