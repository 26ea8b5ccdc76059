"""`loading_model`: a model that cannot load becomes one line naming it, with the reason and its cause.
`writing`: a full disk or an exceeded quota becomes one line naming the file being written."""

from __future__ import annotations

import errno

import pytest

from synthvlm.core.errors import UserError, loading_model, writing


def test_os_error_and_its_cause_become_one_line():
    with pytest.raises(UserError) as info:
        with loading_model("org/model"):
            try:
                raise ConnectionError("offline mode is enabled.\nUnset HF_HUB_OFFLINE.")
            except ConnectionError as cause:
                raise OSError(
                    "Cannot load model org/model: not cached.\n Please check out the root cause in the "
                    "stacktrace above."
                ) from cause
    assert str(info.value) == (
        "cannot load model 'org/model': not cached. (cause: offline mode is enabled. Unset HF_HUB_OFFLINE.)"
    )


def test_a_folder_without_a_model_is_one_line(tmp_path):
    from synthvlm.steps.perplexity import PerplexityScorer

    with pytest.raises(UserError, match=f"^cannot load model '{tmp_path}': ") as info:
        PerplexityScorer(str(tmp_path))._load()
    assert "\n" not in str(info.value)


def test_other_errors_pass_through():
    with pytest.raises(KeyError):
        with loading_model("org/model"):
            raise KeyError("a bug, not a missing model")


def test_a_damaged_weights_file_is_one_line(tmp_path):
    from safetensors.torch import load_file

    damaged = tmp_path / "model.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError) as info:
        with loading_model("org/model"):
            load_file(str(damaged))
    reason = "Error while deserializing header: header too large"
    assert str(info.value) == f"cannot load model 'org/model': {reason}"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "the disk is full (No space left on device)"),
        (errno.EDQUOT, "the disk quota is exceeded (Disk quota exceeded)"),
    ],
)
def test_no_space_names_the_file_being_written(code, reason):
    # pyarrow's and Python's write errors carry no file name; the message must still name the file
    with pytest.raises(UserError) as info:
        with writing("/runs/r1/generate/images/part-00002.tar"):
            raise OSError(code, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(info.value) == (
        f"cannot write /runs/r1/generate/images/part-00002.tar: {reason}; free space there and rerun the "
        "command: committed shards are kept"
    )


def test_other_os_errors_while_writing_pass_through():
    with pytest.raises(PermissionError):
        with writing("/runs/r1/ingest/data/part-00000.parquet"):
            raise PermissionError(errno.EACCES, "Permission denied", "/runs/r1/ingest/data")
