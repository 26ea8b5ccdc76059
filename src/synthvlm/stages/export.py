"""Export the selection in the layouts trainers load unchanged: LLaVA JSON, WebDataset, Parquet, and the
Parquet shards as a Hugging Face dataset repository (hf); every format folder gets a dataset card."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import defaultdict
from importlib import resources
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from PIL import Image

from synthvlm import card
from synthvlm.core import fsio, schema
from synthvlm.core.layout import ExportDir
from synthvlm.core.needs import Destination, Need
from synthvlm.core.progress import report_rows
from synthvlm.core.shards import read_range, row_counts
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.core.webdataset import add_member, encode, iter_tar, json_bytes

if TYPE_CHECKING:
    from synthvlm.config import RunConfig


def default_instructions() -> list[str]:
    """Our brief-description instructions for the human turn."""
    text = resources.files("synthvlm").joinpath("data/instructions.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def pick_instruction(key: str, instructions: list[str]) -> str:
    """Deterministic per id: the same key always gets the same instruction."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return instructions[h % len(instructions)]


class ExportStage(Stage):
    """One phase per format, tasks of `rows_per_shard` selected rows in rank order, then `finalize` (joined
    files, manifests, dataset cards)."""

    name = "export"
    upstream = ("select",)
    unit = "images"

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        if config.export.out is None:
            return []
        fix = "set export.out (or `synthvlm export --out`) to a folder you can write to"
        return [Destination("export.out", config.export.out, fix)]

    @property
    def out(self) -> fsio.RunPath:
        return fsio.run_path(self.config.export.out) if self.config.export.out else self.layout.root

    def settings(self) -> dict[str, Any]:
        return {**self.config.export.model_dump(), "out": fsio.absolute(self.out)}

    def external_outputs(self) -> list[fsio.RunPath]:
        if self.config.export.out is None:
            return []  # RUN/export is the stage's own directory
        return [self.out / fmt for fmt in self.config.export.formats]

    def phases(self) -> list[str]:
        return [*self.config.export.formats, "finalize"]

    def _selection(self) -> list[fsio.RunPath]:
        return self.upstream_dir("select").shards()

    def tasks(self, phase: str) -> list[Task]:
        total = sum(row_counts(self._selection()))
        if phase == "finalize":
            return [Task(phase, 0, (total,))]
        size = self.config.export.rows_per_shard
        return [Task(phase, i, (s, min(s + size, total))) for i, s in enumerate(range(0, total, size))]

    def _task_count(self, total: int) -> int:
        return -(-total // self.config.export.rows_per_shard)

    def run_task(self, task: Task) -> TaskStats:
        if task.phase == "finalize":
            return self._finalize(task)
        start, end = task.payload
        files = self._selection()
        counts = row_counts(files)
        rows = read_range(files, counts, start, end).to_pylist()
        images = self._images(rows)
        provenance = self._provenance(rows)
        if task.phase == "hf":  # the hub's shard names say how many shards there are
            path = ExportDir.hf_shard(self.out / "hf", task.index, self._task_count(sum(counts)))
            fsio.write_table(path, self._parquet_table(rows, images, provenance))
        elif task.phase == "parquet":
            path = ExportDir.parquet_shard(self.out / "parquet", task.index)
            fsio.write_table(path, self._parquet_table(rows, images, provenance))
        elif task.phase == "webdataset":
            self._webdataset(task, rows, images, provenance)
        else:
            self._llava(task, rows, images)
        report_rows(len(rows))
        return TaskStats(len(rows), len(rows))

    def _images(self, rows: list[dict[str, Any]]) -> dict[str, bytes]:
        """JPEG bytes per key: stored bytes as they are, re-encoded only to resize or convert."""
        cfg = self.config.export
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            wanted[row["image_shard"]].add(row["image_name"])
        out: dict[str, bytes] = {}
        for shard, names in sorted(wanted.items()):
            with fsio.local_copy(self.run_dir / shard) as local:
                blobs = list(iter_tar(local, names))
            for name, data in blobs:
                key = name.rsplit(".", 1)[0]
                if cfg.resize is None and name.endswith(".jpg"):
                    out[key] = data
                    continue
                image = Image.open(io.BytesIO(data)).convert("RGB")
                if cfg.resize is not None:
                    image = image.resize((cfg.resize, cfg.resize), Image.Resampling.BICUBIC)
                out[key] = encode(image, fmt="jpg", quality=cfg.jpeg_quality)
        missing = [r["key"] for r in rows if r["key"] not in out]
        if missing:
            raise RuntimeError(f"export: images missing from the generate shards: {missing[:5]}")
        return out

    def _llava(self, task: Task, rows: list[dict[str, Any]], images: dict[str, bytes]) -> None:
        instructions = self.config.export.instructions or default_instructions()
        folder = ExportDir.llava_images(self.out / "llava")
        entries = []
        for row in rows:
            name = ExportDir.llava_image(row["key"], row["rank"])
            fsio.write_bytes(folder / name, images[row["key"]])
            entries.append(
                {
                    "id": row["key"],
                    "image": name,
                    "conversations": [
                        {"from": "human", "value": f"{pick_instruction(row['key'], instructions)}\n<image>"},
                        {"from": "gpt", "value": row["caption"]},
                    ],
                }
            )
        fsio.write_json(self.layout.llava_part(task.index), entries)

    def _webdataset(
        self,
        task: Task,
        rows: list[dict[str, Any]],
        images: dict[str, bytes],
        provenance: dict[str, dict[str, Any]],
    ) -> None:
        path = ExportDir.webdataset_shard(self.out / "webdataset", task.index)
        fields = [k for k in self._export_schema().names if k not in ("caption", "image")]
        with fsio.atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for row in rows:
                add_member(tar, f"{row['key']}.jpg", images[row["key"]])
                add_member(tar, f"{row['key']}.txt", row["caption"].encode())
                meta = {**row, **provenance[row["key"]]}
                add_member(tar, f"{row['key']}.json", json_bytes({k: meta[k] for k in fields}))

    def _provenance(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each row's `schema.EXPORT_PROVENANCE`, by key, from the candidate tables of its image shards."""
        generate = self.upstream_dir("generate")
        single = self.config.generate.pool()[0].label
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            wanted[row["image_shard"]].add(row["key"])
        out: dict[str, dict[str, Any]] = {}
        for ref, keys in sorted(wanted.items()):
            columns = ["key", "seed", "model_id", "model_revision"]
            table = fsio.read_table(generate.shard_of_image_shard(ref))
            names = schema.generator_column(table, single).to_pylist()
            for name, row in zip(names, table.select(columns).to_pylist(), strict=True):
                if row["key"] in keys:
                    out[row["key"]] = {"generator": name, **{k: row[k] for k in columns[1:]}}
        return out

    def _export_schema(self) -> pa.Schema:
        return schema.export_parquet_schema(self.config.score.scorers.enabled())

    def _parquet_table(
        self, rows: list[dict[str, Any]], images: dict[str, bytes], provenance: dict[str, dict[str, Any]]
    ) -> pa.Table:
        """The Parquet export table of a task's rows: the parquet and hf formats write the same bytes."""
        export_schema = self._export_schema()
        records = [
            {
                **{k: row[k] for k in export_schema.names if k in row and k != "image"},
                **provenance[row["key"]],
                "image": {"bytes": images[row["key"]], "path": f"{row['key']}.jpg"},
            }
            for row in rows
        ]
        return pa.Table.from_pylist(records, schema=export_schema)

    def _finalize(self, task: Task) -> TaskStats:
        (total,) = task.payload
        formats = self.config.export.formats
        if "llava" in formats:
            entries: list[Any] = []
            for part in self.layout.llava_parts():
                entries.extend(fsio.read_json(part))
            # ASCII-safe: LLaVA opens the file with the locale's default encoding.
            text = json.dumps(entries, ensure_ascii=True, indent=1)
            fsio.write_bytes(ExportDir.llava_json(self.out / "llava"), text.encode())
        if "webdataset" in formats:
            size = self.config.export.rows_per_shard
            folder = self.out / "webdataset"
            sizes = {
                ExportDir.webdataset_shard(folder, i).name: min(size, total - start)
                for i, start in enumerate(range(0, total, size))
            }
            fsio.write_json(ExportDir.webdataset_sizes(folder), sizes)
        facts = card.run_facts(self.run_dir, self.config, records=total)
        for fmt in formats:
            fsio.write_json(ExportDir.manifest(self.out / fmt), {"format": fmt, "records": total})
            fsio.write_bytes(ExportDir.card(self.out / fmt), card.render_card(facts, fmt).encode())
        return TaskStats(total, total)
