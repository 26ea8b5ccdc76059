"""`resolve_device`: auto picks CUDA when present; a device this machine cannot use is a one-line error."""

from __future__ import annotations

import pytest
import torch

from synthvlm.core.devices import resolve_device
from synthvlm.core.errors import UserError


def test_auto_and_cpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_unknown_device_name():
    with pytest.raises(UserError, match=r"^unknown device 'gpu': Expected one of .*device string: gpu$"):
        resolve_device("gpu")


def test_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(UserError) as info:
        resolve_device("cuda")
    assert str(info.value) == (
        "device 'cuda' requested, but this torch has no CUDA support here; use device: auto or cpu"
    )
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(UserError, match="^device 'cuda:0' requested, but no CUDA GPU is visible here; "):
        resolve_device("cuda:0")


def test_cuda_index_past_the_visible_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cuda") == "cuda"
    with pytest.raises(UserError) as info:
        resolve_device("cuda:2")
    assert str(info.value) == "device 'cuda:2' requested, but only 2 CUDA GPU(s) are visible here"
