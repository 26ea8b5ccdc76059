"""`loading_model`: a model that cannot load becomes one line naming it, with the reason and its cause."""

from __future__ import annotations

import pytest

from synthvlm.core.errors import UserError, loading_model


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
