"""The one WebDataset sample reader: WebDataset's key rule and adjacent grouping."""

from __future__ import annotations

import io
import tarfile

from synthvlm.core.webdataset import add_member, iter_samples, sample_key


def test_key_is_the_name_up_to_the_first_dot_of_the_base_name():
    assert sample_key("a-1.jpg") == ("a-1", "jpg")
    assert sample_key("dir.v2/a.b.json") == ("dir.v2/a", "b.json")
    assert sample_key("noext") == ("noext", "")


def _tar(names: list[str]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            add_member(tar, name, name.encode())
    buf.seek(0)
    return tarfile.open(fileobj=buf)


def test_adjacent_members_form_a_sample_and_a_returning_key_is_a_new_one():
    tar = _tar(["x/a.jpg", "x/a.txt", "b.jpg", "b.meta.json", "x/a.json"])
    assert [(k, sorted(parts)) for k, parts in iter_samples(tar)] == [
        ("x/a", ["jpg", "txt"]),
        ("b", ["jpg", "meta.json"]),
        ("x/a", ["json"]),
    ]
    assert list(iter_samples(_tar([]))) == []
