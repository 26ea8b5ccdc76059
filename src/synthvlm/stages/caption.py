"""Caption: real images in, model captions out as Parquet shards that ingest reads like any caption file.

An optional source stage (not in the pipeline's order): `synthvlm caption` runs it and adds its shards to
`ingest.inputs`. Inputs are image folders (sorted, recursive), WebDataset tar shards and Parquet files
with an image-bytes column. Each output row keeps its image as a file path, so the alignment filters can
score the caption against it: folder images are referenced where they are, images held in tars or Parquet
are written to `RUN/caption/images/part-<i>/` first. An image that is missing or that Pillow cannot decode
becomes a rejected row with the reason and where it came from.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthvlm.config import RunConfig
from synthvlm.core import fsio, layout, schema
from synthvlm.core.errors import UserError
from synthvlm.core.needs import RECIPE_FIX, Exists, Model, Need
from synthvlm.core.progress import report_rows
from synthvlm.core.stage import Stage, Task, TaskStats
from synthvlm.core.webdataset import sample_key

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""Image files a folder input contributes (case-insensitive); also the image members of a tar sample."""

_PARQUET_IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "image_bytes")
_PARQUET_ID_COLUMNS = ("id", "key", "__key__")
_EXTENSION = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def _tar_items(path: str) -> list[tuple[Any, ...]]:
    """One item per WebDataset sample key, in tar order: its first image member's offset and size, if any."""
    samples: dict[str, tuple[str | None, int, int]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = sample_key(member.name)
            current = samples.setdefault(key, (None, 0, 0))
            if current[0] is None and os.path.splitext(member.name)[1].lower() in IMAGE_EXTENSIONS:
                samples[key] = (member.name, member.offset_data, member.size)
    return [("tar", path, key, pos, *entry) for pos, (key, entry) in enumerate(samples.items())]


def _parquet_items(path: str) -> list[tuple[Any, ...]]:
    """One item per row: its row group and position there, and its id (the id column or file stem + row)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    column = next((c for c in _PARQUET_IMAGE_COLUMNS if c in names), None)
    if column is None:
        raise UserError(
            f"{path}: no image column; expected one of {', '.join(_PARQUET_IMAGE_COLUMNS)} "
            f"(columns: {', '.join(names)[:200]})"
        )
    id_column = next((c for c in _PARQUET_ID_COLUMNS if c in names), None)
    items: list[tuple[Any, ...]] = []
    row = 0
    for group in range(pf.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        ids = pf.read_row_group(group, columns=[id_column]).column(0).to_pylist() if id_column else [None] * n
        for pos, raw in enumerate(ids):
            rid = f"{Path(path).stem}-{row}" if raw is None or raw == "" else str(raw)
            items.append(("parquet", path, rid, row, column, group, pos))
            row += 1
    return items


def list_items(inputs: list[str]) -> list[tuple[Any, ...]]:
    """Every image of the inputs, in order, as JSON-able tuples `(kind, source, id, index, ...)`."""
    items: list[tuple[Any, ...]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise UserError(f"{raw}: no {'/'.join(IMAGE_EXTENSIONS)} image in this folder")
            items += [
                ("file", str(p.resolve()), p.relative_to(path).with_suffix("").as_posix(), i)
                for i, p in enumerate(files)
            ]
        elif not path.is_file():
            raise UserError(f"{raw}: no such file or folder")
        elif path.suffix.lower() == ".tar":
            try:
                items += _tar_items(raw)
            except tarfile.TarError as exc:
                raise UserError(f"{raw}: not a readable tar file ({exc})") from None
        elif path.suffix.lower() == ".parquet":
            items += _parquet_items(raw)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            items.append(("file", str(path.resolve()), path.stem, 0))
        else:
            raise UserError(
                f"{raw}: not an image folder, .tar (WebDataset) or .parquet file, "
                f"nor a {'/'.join(IMAGE_EXTENSIONS)} image"
            )
    return items


def _decode(data: bytes) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or ""
        return img.convert("RGB"), _EXTENSION.get(fmt, fmt.lower() or "img")


class CaptionStage(Stage):
    """Captions every input image once; shard i holds images [i*shard_rows, (i+1)*shard_rows)."""

    name = "caption"
    unit = "images"
    uses_model = True

    def __init__(self, run_dir: str | fsio.RunPath, config: RunConfig) -> None:
        super().__init__(run_dir, config)
        if not fsio.is_local(self.run_dir):
            # Its rows point at image files by local path, for the alignment filters to open.
            raise UserError(f"{self.run_dir}: the caption stage needs a local run directory, not a URL")

    @classmethod
    def needs(cls, config: RunConfig) -> list[Need]:
        cfg = config.caption
        return [
            *(Exists(f"caption.inputs: {raw}", raw, "any", RECIPE_FIX) for raw in cfg.inputs),
            Model("caption.model", cfg.model, "transformers", alternative="tiny-blip-caption"),
        ]

    @classmethod
    def enabled(cls, config: RunConfig) -> bool:
        return bool(config.caption.inputs)

    def _items(self) -> list[tuple[Any, ...]]:
        if not hasattr(self, "_listed"):
            if not self.config.caption.inputs:
                raise UserError("no images: pass image folders, .tar or .parquet files to `synthvlm caption`")
            self._listed = list_items(self.config.caption.inputs)
        return self._listed

    def settings(self) -> dict[str, Any]:
        sources = sorted({item[1] for item in self._items()})
        files = [{"path": p, "bytes": os.path.getsize(p)} for p in sources]
        return {**self.config.caption.model_dump(exclude={"inputs"}), "files": files}

    def phases(self) -> list[str]:
        return ["caption"]

    def tasks(self, phase: str) -> list[Task]:
        items, size = self._items(), self.config.caption.shard_rows
        return [
            Task(phase, i, tuple(items[start : start + size]))
            for i, start in enumerate(range(0, len(items), size))
        ]

    def _load(self, item: tuple[Any, ...], task: Task, slot: int) -> tuple[Any, str] | tuple[str, str]:
        """(RGB image, reference written in the output) or (reason, detail)."""
        from PIL import Image

        kind, source = item[0], item[1]
        if kind == "file":
            try:
                data = Path(source).read_bytes()
            except FileNotFoundError:
                return ("missing_image", source)
            ref_file = None
        elif kind == "tar":
            member, offset, size = item[4], item[5], item[6]
            if member is None:
                return ("missing_image", f"{source}: sample {item[2]!r} has no image member")
            with open(source, "rb") as fh:
                fh.seek(offset)
                data = fh.read(size)
            ref_file = f"{source}:{member}"
        else:
            import pyarrow.parquet as pq

            column, group, pos = item[4], item[5], item[6]
            value = pq.ParquetFile(source).read_row_group(group, columns=[column]).column(0)[pos].as_py()
            data = value.get("bytes") if isinstance(value, dict) else value
            if not data:
                return ("missing_image", f"{source}: row {item[3]} has no image bytes")
            ref_file = f"{source}:row {item[3]}"
        try:
            image, ext = _decode(data)
        except (OSError, Image.DecompressionBombError, ValueError):
            return ("unreadable_image", ref_file or source)
        if ref_file is None:
            return image, source
        path = self.layout.extracted_images(task.index) / f"{slot:05d}.{ext}"
        fsio.write_bytes(path, data)
        return image, str(path.resolve())

    def run_task(self, task: Task) -> TaskStats:
        from synthvlm.caption.captioner import get_captioner
        from synthvlm.core.devices import resolve_device

        cfg = self.config.caption
        kept: list[tuple[str, str]] = []  # (id, image reference)
        images: list[Any] = []
        rejected: list[dict[str, Any]] = []
        for slot, item in enumerate(task.payload):
            loaded = self._load(item, task, slot)
            if isinstance(loaded[0], str):
                rejected.append(
                    {
                        "id": item[2],
                        "reason": loaded[0],
                        "detail": loaded[1],
                        "source_file": item[1],
                        "source_index": item[3],
                    }
                )
            else:
                images.append(loaded[0])
                kept.append((item[2], loaded[1]))
        captions: list[str] = []
        if images:
            captioner = get_captioner(
                cfg.model,
                models_dir=self.models_dir,
                device=resolve_device(cfg.device),
                batch_size=cfg.batch_size,
                max_new_tokens=cfg.max_new_tokens,
                prompt=cfg.prompt,
            )
            captions = captioner.captions(images)
        table = pa.Table.from_pylist(
            [
                {"id": rid, "caption": caption, "image": ref}
                for (rid, ref), caption in zip(kept, captions, strict=True)
            ],
            schema=schema.CAPTIONED,
        )
        fsio.write_table(self.layout.shard(task.index), table)
        self.write_rejected(task, rejected)
        report_rows(len(task.payload))
        return TaskStats(len(task.payload), len(kept), dict(Counter(r["reason"] for r in rejected)))

    @staticmethod
    def output_glob(run_dir: fsio.RunPath) -> str:
        """The glob of this stage's output shards in a run, as ingest reads them."""
        return layout.shard_glob(layout.StageDir(run_dir, CaptionStage.name).root.resolve() / "data")
