"""Check an export folder (local or an fsspec URL): every record points to a decodable image and counts
match the manifest."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable

from PIL import Image

from synthvlm.core import fsio
from synthvlm.core.layout import ExportDir
from synthvlm.core.webdataset import iter_samples
from synthvlm.readers.base import trainer_token

LLAVA_JSON = ExportDir.LLAVA_JSON
MANIFEST = ExportDir.MANIFEST


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
    problems: list[str] = []
    count = 0
    seen: set[str] = set()
    for part in sorted(folder.glob("*.parquet")):
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
}


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
