"""Check an export folder (local or an fsspec URL): every record points to a decodable image, counts match
the manifest, and the dataset card's data_files name files that are there."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable

import yaml
from PIL import Image

from synthvlm.core import fsio
from synthvlm.core.layout import ExportDir
from synthvlm.core.webdataset import iter_samples
from synthvlm.readers.base import trainer_token

LLAVA_JSON = ExportDir.LLAVA_JSON
MANIFEST = ExportDir.MANIFEST
CARD = ExportDir.CARD


def _decode(data: bytes) -> str | None:
    """None if the bytes are a complete decodable image, else why not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:  # Pillow raises many types for corrupt data
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _llava(folder: fsio.RunPath) -> tuple[int, list[str]]:
    problems: list[str] = []
    try:
        entries = json.loads(ExportDir.llava_json(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return 0, [f"{LLAVA_JSON}: cannot read ({exc})"]
    if not isinstance(entries, list):
        return 0, [f"{LLAVA_JSON}: holds a JSON {type(entries).__name__}, not a list of records"]
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"{LLAVA_JSON}[{i}]: a JSON {type(entry).__name__}, not a record")
            continue
        where = f"{LLAVA_JSON}[{i}] id={entry.get('id')!r}"
        if str(entry.get("id")) in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(str(entry.get("id")))
        turns = entry.get("conversations")
        if not _is_llava_conversation(turns):
            problems.append(f"{where}: conversations are not a human turn with one <image>, then a caption")
        elif (token := trainer_token(str(turns[1]["value"]))) is not None:
            problems.append(f"{where}: caption contains {token}, which LLaVA turns into image tokens")
        name = entry.get("image")
        image = ExportDir.llava_images(folder) / str(name)
        if not name:
            problems.append(f"{where}: no image field")
        elif not image.is_file():
            problems.append(f"{where}: image {image.name} does not exist")
        elif (err := _decode(image.read_bytes())) is not None:
            problems.append(f"{where}: image {image.name} does not decode ({err})")
    referenced = {str(e.get("image")) for e in entries if isinstance(e, dict)}
    root = ExportDir.llava_images(folder)
    files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    extra = sorted(name for name in files if name not in referenced)
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        problems.append(f"images/: {len(extra)} image(s) no record points to ({shown})")
    return len(entries), problems


def _is_llava_conversation(turns: object) -> bool:
    """A human turn holding exactly one <image> (LLaVA's rule for a one-image sample), then a non-empty gpt
    turn."""
    return (
        isinstance(turns, list)
        and len(turns) == 2
        and all(isinstance(t, dict) for t in turns)
        and turns[0].get("from") == "human"
        and str(turns[0].get("value", "")).count("<image>") == 1
        and turns[1].get("from") == "gpt"
        and bool(turns[1].get("value"))
    )


def _webdataset(folder: fsio.RunPath) -> tuple[int, list[str]]:
    problems: list[str] = []
    count = 0
    seen: set[str] = set()
    for shard in sorted(folder.glob("*.tar")):
        try:
            with shard.open("rb") as fh, tarfile.open(fileobj=fh) as tar:
                samples = list(iter_samples(tar))
        except (OSError, tarfile.TarError) as exc:
            problems.append(f"{shard.name}: unreadable tar ({exc})")
            continue
        for key, parts in samples:
            count += 1
            if key in seen:
                problems.append(f"{shard.name}/{key}: duplicate key")
            seen.add(key)
            if set(parts) != {"jpg", "txt", "json"}:
                problems.append(f"{shard.name}/{key}: has {sorted(parts)}, expected jpg, txt, json")
            elif (err := _decode(parts["jpg"])) is not None:
                problems.append(f"{shard.name}/{key}.jpg does not decode ({err})")
            elif (token := trainer_token(parts["txt"].decode("utf-8", "replace"))) is not None:
                problems.append(f"{shard.name}/{key}.txt: caption contains {token}")
    return count, problems


def _parquet(folder: fsio.RunPath) -> tuple[int, list[str]]:
    return _parquet_rows(sorted(folder.glob("*.parquet")))


def _hf(folder: fsio.RunPath) -> tuple[int, list[str]]:
    return _parquet_rows(ExportDir.hf_shards(folder))


def _parquet_rows(parts: list[fsio.RunPath]) -> tuple[int, list[str]]:
    """Rows of Parquet export shards: unique keys, decodable image bytes, captions without image tokens."""
    problems: list[str] = []
    count = 0
    seen: set[str] = set()
    for part in parts:
        try:
            table = fsio.read_table(part, columns=["key", "caption", "image"])
        except Exception as exc:  # pyarrow raises several types for corrupt files
            problems.append(f"{part.name}: unreadable Parquet ({exc})")
            continue
        for row in table.to_pylist():
            count += 1
            if row["key"] in seen:
                problems.append(f"{part.name}/{row['key']}: duplicate key")
            seen.add(row["key"])
            data = (row["image"] or {}).get("bytes")
            if not data:
                problems.append(f"{part.name}/{row['key']}: no image bytes")
            elif (err := _decode(data)) is not None:
                problems.append(f"{part.name}/{row['key']}: image does not decode ({err})")
            if (token := trainer_token(str(row["caption"]))) is not None:
                problems.append(f"{part.name}/{row['key']}: caption contains {token}")
    return count, problems


CHECKS: dict[str, Callable[[fsio.RunPath], tuple[int, list[str]]]] = {
    "llava": _llava,
    "webdataset": _webdataset,
    "parquet": _parquet,
    "hf": _hf,
}


def _card(folder: fsio.RunPath) -> list[str]:
    """Problems of a dataset card: its YAML header parses and every data_files pattern of its configs
    matches a file of the folder (what `datasets.load_dataset(folder)` and the hub will read)."""
    try:
        text = ExportDir.card(folder).read_text(encoding="utf-8")
    except OSError as exc:
        return [f"{CARD}: cannot read ({exc}); the hub and datasets.load_dataset read the dataset card"]
    lines = text.splitlines()
    if not lines or lines[0] != "---" or "---" not in lines[1:]:
        return [f"{CARD}: no YAML header between '---' lines"]
    try:
        header = yaml.safe_load("\n".join(lines[1 : lines.index("---", 1)]))
    except yaml.YAMLError as exc:
        return [f"{CARD}: the YAML header does not parse ({str(exc).splitlines()[0]})"]
    configs = header.get("configs") if isinstance(header, dict) else None
    if not isinstance(configs, list) or not configs:
        return [f"{CARD}: no `configs` in the YAML header, so datasets.load_dataset would guess the files"]
    problems = []
    for config in configs:
        name = config.get("config_name") if isinstance(config, dict) else None
        patterns = _data_file_patterns(config.get("data_files") if isinstance(config, dict) else None)
        if not name or not patterns:
            problems.append(f"{CARD}: config {config!r} needs a config_name and data_files")
        for pattern in patterns:
            if not any(folder.glob(pattern)):
                problems.append(f"{CARD}: config {name!r}: data_files {pattern!r} match no file of {folder}")
    return problems


def _data_file_patterns(data_files: object) -> list[str]:
    """The patterns of a config's data_files in any of the forms `datasets` takes: a string, a list of
    strings, or a list of {split, path} with path a string or a list of them."""
    if isinstance(data_files, str):
        data_files = [data_files]
    patterns = []
    for item in data_files if isinstance(data_files, list) else []:
        path = item.get("path") if isinstance(item, dict) else item
        patterns += [str(p) for p in (path if isinstance(path, list) else [path]) if p]
    return patterns


def validate_export(folder: str | fsio.RunPath) -> list[str]:
    """All problems found in an export folder (empty when it is valid)."""
    folder = fsio.run_path(folder)
    try:
        manifest = json.loads(ExportDir.manifest(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"{folder}: no readable {MANIFEST}; is this a synthvlm export folder?"]
    if not isinstance(manifest, dict) or not isinstance(manifest.get("records"), int):
        expected = '{"format": ..., "records": N}'
        return [f"{ExportDir.manifest(folder)}: not a synthvlm manifest (expected {expected})"]
    fmt = manifest.get("format")
    if fmt not in CHECKS:
        return [f"{ExportDir.manifest(folder)}: unknown format {fmt!r}; valid: {sorted(CHECKS)}"]
    count, problems = CHECKS[fmt](folder)
    if count != manifest["records"]:
        problems.append(f"{folder}: {count} records found, the selection has {manifest['records']}")
    # The card is what makes an hf folder a hub dataset; exports made before cards existed have none.
    if fmt == "hf" or ExportDir.card(folder).exists():
        problems += _card(folder)
    return problems


def format_folders(folder: str) -> list[str]:
    """The format folders to check for a path: itself when it holds a manifest, else each sub-folder that
    does (an export folder such as `demo-out/export`), else itself (so its missing manifest is reported)."""
    path = fsio.run_path(folder)
    if ExportDir.manifest(path).exists() or not path.is_dir():
        return [folder]
    subs = sorted(sub.name for sub in path.iterdir() if ExportDir.manifest(sub).exists())
    found = [f"{folder.rstrip('/')}/{name}" for name in subs]
    return found or [folder]
