"""Stream image-caption samples from a synthvlm export (LLaVA JSON, WebDataset, Parquet) or any LLaVA JSON.

Images stay on disk until a sample is used: a LLaVA source holds only the JSON records (as LLaVA's own
trainer does), WebDataset and Parquet sources read one tar member / one record batch at a time.
"""

from __future__ import annotations

import io
import json
import math
import random
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from synthvlm.core.layout import ExportDir
from synthvlm.core.webdataset import iter_samples

IMAGE_PLACEHOLDER = "<image>"
PARQUET_BATCH_ROWS = 64


@dataclass(frozen=True)
class Sample:
    """One image-caption pair; `image` is a file path (read when used) or the encoded bytes."""

    id: str
    caption: str
    image: Path | bytes

    def load_image(self) -> Image.Image:
        """Decode the image as RGB, the only mode CLIP image processors take."""
        data = self.image if isinstance(self.image, bytes) else self.image.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")


class SampleSource(Protocol):
    """A re-iterable stream of samples whose length is known without reading images."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Sample]: ...


@dataclass(frozen=True)
class DataSpec:
    """One training input: an export folder or a LLaVA JSON, its image folder, and how much of it to use."""

    path: Path
    image_folder: Path | None = None
    ratio: float = 1.0

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        """`PATH[,images=DIR][,ratio=R]`, the command line's form of a data spec."""
        path, *options = text.split(",")
        kwargs: dict[str, Any] = {}
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or key not in ("images", "ratio"):
                raise ValueError(f"bad data option {option!r} in {text!r}: use PATH[,images=DIR][,ratio=R]")
            if key == "images":
                kwargs["image_folder"] = Path(value)
            else:
                kwargs["ratio"] = float(value)
        return cls(Path(path), **kwargs)


def llava_caption(record: dict[str, Any]) -> str:
    """The gpt turn of a one-exchange LLaVA record: what stage-1 (the `plain` template) trains on."""
    conv = record.get("conversations")
    if (
        not isinstance(conv, list)
        or len(conv) != 2
        or conv[0].get("from") != "human"
        or IMAGE_PLACEHOLDER not in conv[0].get("value", "")
        or conv[1].get("from") != "gpt"
        or not isinstance(conv[1].get("value"), str)
        or "image" not in record
    ):
        raise ValueError(
            f"LLaVA record {record.get('id')!r} is not a pretraining pair: it needs an `image` and exactly "
            "one human turn containing <image> followed by one gpt turn"
        )
    return conv[1]["value"]


class LlavaSource:
    """Records of a LLaVA JSON in a given order; each image file is read only when its sample is used."""

    def __init__(
        self, json_path: Path, *, image_folder: Path | None = None, order: Sequence[int] | None = None
    ):
        self.json_path = Path(json_path)
        self.image_folder = (
            Path(image_folder) if image_folder is not None else self.json_path.parent / "images"
        )
        if not self.image_folder.is_dir():
            raise ValueError(
                f"image folder {self.image_folder} of {self.json_path} does not exist: pass images=DIR"
            )
        records = json.loads(self.json_path.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise ValueError(f"{self.json_path} is not a LLaVA data file: expected a JSON list of records")
        # Keep only what training needs, validated up front, so a bad record fails before step 0.
        self.records = [
            (str(r.get("id", i)), llava_caption(r), str(r["image"])) for i, r in enumerate(records)
        ]
        self.order = list(range(len(self.records))) if order is None else list(order)

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[Sample]:
        for i in self.order:
            yield self.sample(i)

    def sample(self, index: int) -> Sample:
        """Record `index` of the JSON (not of `order`)."""
        rid, caption, image = self.records[index]
        return Sample(rid, caption, self.image_folder / image)


def _manifest_records(folder: Path) -> int:
    return int(json.loads(ExportDir.manifest(folder).read_text(encoding="utf-8"))["records"])


class WebDatasetSource:
    """Samples of WebDataset shards (`<key>.jpg` + `<key>.txt`), read member by member."""

    def __init__(self, shards: Sequence[Path], *, records: int):
        if not shards:
            raise ValueError("no WebDataset shards given")
        self.shards = [Path(s) for s in shards]
        self.records = records

    @classmethod
    def from_folder(cls, folder: Path) -> WebDatasetSource:
        """An export's `webdataset/` folder; its manifest gives the record count."""
        return cls(ExportDir.webdataset_shards(Path(folder)), records=_manifest_records(Path(folder)))

    def __len__(self) -> int:
        return self.records

    def __iter__(self) -> Iterator[Sample]:
        for shard in self.shards:
            yield from _iter_tar_samples(shard)


def _iter_tar_samples(shard: Path) -> Iterator[Sample]:
    with tarfile.open(shard, "r|") as tar:
        for key, parts in iter_samples(tar):
            yield _tar_sample(shard, key, parts)


def _tar_sample(shard: Path, key: str, parts: dict[str, bytes]) -> Sample:
    image = next((parts[e] for e in ("jpg", "jpeg", "png", "webp") if e in parts), None)
    if image is None or "txt" not in parts:
        raise ValueError(f"{shard}: sample {key!r} lacks an image or a .txt caption (has {sorted(parts)})")
    # A key may carry a folder prefix inside the tar; the sample id is its base name.
    return Sample(key.rsplit("/", 1)[-1], parts["txt"].decode("utf-8"), image)


class ParquetSource:
    """Rows of Parquet files with `key`, `caption`, an `image` struct {bytes, path}; read batch by batch."""

    def __init__(self, files: Sequence[Path]):
        import pyarrow.parquet as pq

        if not files:
            raise ValueError("no Parquet files given")
        self.files = [Path(f) for f in files]
        self.records = sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    @classmethod
    def from_folder(cls, folder: Path) -> ParquetSource:
        """An export's `parquet/` folder."""
        return cls(sorted(Path(folder).glob("*.parquet")))

    def __len__(self) -> int:
        return self.records

    def __iter__(self) -> Iterator[Sample]:
        import pyarrow.parquet as pq

        for path in self.files:
            pf = pq.ParquetFile(path)
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=["key", "caption", "image"]):
                for row in batch.to_pylist():
                    yield Sample(row["key"], row["caption"], row["image"]["bytes"])


def open_source(spec: DataSpec) -> SampleSource:
    """A LLaVA JSON file, or an export folder whose manifest names its layout (llava, webdataset, parquet)."""
    path = spec.path
    if path.is_file():
        return LlavaSource(path, image_folder=spec.image_folder)
    manifest = ExportDir.manifest(path)
    if not manifest.is_file():
        raise ValueError(
            f"{path} is neither a LLaVA JSON file nor a synthvlm export folder (no manifest.json)"
        )
    fmt = json.loads(manifest.read_text(encoding="utf-8"))["format"]
    if fmt == "llava":
        images = spec.image_folder or ExportDir.llava_images(path)
        return LlavaSource(ExportDir.llava_json(path), image_folder=images)
    if spec.image_folder is not None:
        raise ValueError(f"{path}: images= applies to LLaVA JSON only; {fmt} exports carry their images")
    openers = {"webdataset": WebDatasetSource.from_folder, "parquet": ParquetSource.from_folder}
    if fmt not in openers:
        raise ValueError(f"{manifest}: unknown export format {fmt!r}; expected llava, webdataset or parquet")
    return openers[fmt](path)


def mixture_counts(sizes: Sequence[int], ratios: Sequence[float]) -> list[int]:
    """Samples drawn from each source: ratio x size, rounded half up (ratio 2 = every record twice)."""
    if any(r <= 0 for r in ratios):
        raise ValueError(f"mixing ratios must be positive, got {list(ratios)}")
    return [math.floor(r * n + 0.5) for n, r in zip(sizes, ratios, strict=True)]


class Mixture:
    """LLaVA sources mixed by ratio into one seeded shuffled order, reshuffled per epoch as LLaVA does."""

    def __init__(self, sources: Sequence[LlavaSource], ratios: Sequence[float], *, seed: int, epoch: int = 0):
        self.sources = list(sources)
        self.counts = mixture_counts([len(s.records) for s in self.sources], ratios)
        rng = random.Random(f"{seed}:{epoch}")
        picks: list[tuple[int, int]] = []
        for si, (source, count) in enumerate(zip(self.sources, self.counts, strict=True)):
            n = len(source.records)
            full, rest = divmod(count, n)
            # Whole copies first, then a seeded subset without replacement for the remainder.
            indices = list(range(n)) * full + sorted(rng.sample(range(n), rest))
            picks.extend((si, i) for i in indices)
        rng.shuffle(picks)
        self.picks = picks

    def __len__(self) -> int:
        return len(self.picks)

    def __iter__(self) -> Iterator[Sample]:
        for si, i in self.picks:
            yield self.sources[si].sample(i)


def open_training_data(specs: Sequence[DataSpec], *, seed: int, epoch: int = 0) -> SampleSource:
    """LLaVA inputs become a shuffled `Mixture`; a WebDataset or Parquet export streams alone in its order."""
    if not specs:
        raise ValueError("no training data given")
    sources = [open_source(s) for s in specs]
    if all(isinstance(s, LlavaSource) for s in sources):
        return Mixture(sources, [s.ratio for s in specs], seed=seed, epoch=epoch)  # type: ignore[arg-type]
    if len(specs) > 1 or specs[0].ratio != 1.0:
        raise ValueError("mixing and ratios need LLaVA JSON inputs; pass the export's llava/ folder instead")
    return sources[0]
