"""`validate_export` on hand-made LLaVA folders: each kind of damage is reported, none crashes."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from synthvlm.validate import validate_export


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def _entry(key: str) -> dict:
    return {
        "id": key,
        "image": f"{key}.jpg",
        "conversations": [{"from": "human", "value": "Describe.\n<image>"}, {"from": "gpt", "value": "a"}],
    }


def _llava(folder: Path, entries: object, images: list[str], records: object = 2) -> Path:
    (folder / "images").mkdir(parents=True)
    for name in images:
        (folder / "images" / name).write_bytes(_jpeg())
    (folder / "synthvlm_pretrain.json").write_text(json.dumps(entries))
    (folder / "manifest.json").write_text(json.dumps({"format": "llava", "records": records}))
    return folder


def test_valid_folder_has_no_problems(tmp_path):
    assert validate_export(_llava(tmp_path, [_entry("a"), _entry("b")], ["a.jpg", "b.jpg"])) == []


def test_extra_image_and_duplicate_id_are_reported(tmp_path):
    folder = _llava(tmp_path, [_entry("a"), _entry("a")], ["a.jpg", "old.jpg"])
    assert validate_export(folder) == [
        "synthvlm_pretrain.json[1] id='a': duplicate id",
        "images/: 1 image(s) no record points to (old.jpg)",
    ]


def test_malformed_json_is_reported_not_raised(tmp_path):
    folder = _llava(tmp_path / "a", [_entry("a"), 7, {"id": "b", "conversations": "x"}], ["a.jpg"], 3)
    assert validate_export(folder) == [
        "synthvlm_pretrain.json[1]: a JSON int, not a record",
        "synthvlm_pretrain.json[2] id='b': "
        "conversations are not a human turn with one <image>, then a caption",
        "synthvlm_pretrain.json[2] id='b': no image field",
    ]
    folder = _llava(tmp_path / "b", {"a": _entry("a")}, ["a.jpg"])
    assert validate_export(folder) == [
        "synthvlm_pretrain.json: holds a JSON dict, not a list of records",
        f"{folder}: 0 records found, the selection has 2",
    ]
    folder = _llava(tmp_path / "c", [_entry("a")], ["a.jpg"])
    (folder / "manifest.json").write_text("[1, 2]")
    assert validate_export(folder) == [
        f'{folder / "manifest.json"}: not a synthvlm manifest (expected {{"format": ..., "records": N}})'
    ]


def test_image_tokens_in_captions_and_a_second_image_token_are_reported(tmp_path):
    two = _entry("b")
    two["conversations"][0]["value"] = "<image>\nDescribe.\n<image>"
    token = _entry("c")
    token["conversations"][1]["value"] = "a dog <image> on grass"
    nested = {**_entry("d"), "image": "00000/d.jpg"}
    folder = _llava(tmp_path, [_entry("a"), two, token, nested], ["a.jpg", "b.jpg", "c.jpg"], 4)
    (folder / "images" / "00000").mkdir()
    (folder / "images" / "00000" / "d.jpg").write_bytes(_jpeg())
    assert validate_export(folder) == [
        "synthvlm_pretrain.json[1] id='b': "
        "conversations are not a human turn with one <image>, then a caption",
        "synthvlm_pretrain.json[2] id='c': caption contains <image>, which LLaVA turns into image tokens",
    ]
