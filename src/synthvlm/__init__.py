"""synthvlm: build SynthVLM-style synthetic image-caption datasets for VLM pretraining."""

import importlib.abc as _abc
import importlib.machinery as _machinery
import logging as _logging
import sys as _sys
import types as _types
import typing as _typing

__version__ = "0.1.0"


def _drop_pil_fallback_notice(record: _logging.LogRecord) -> bool:
    # synthvlm picks the PIL image processors on purpose (scores must not depend on whether torchvision is
    # installed); transformers' notice that `<Model>ImageProcessor` fell back to them, printed when
    # diffusers imports those names, would tell every user to install torchvision for nothing.
    return "requires torchvision (not installed); falling back to" not in record.getMessage()


def _drop_sequence_length_notice(record: _logging.LogRecord) -> bool:
    # "Token indices sequence length is longer than ... (79 > 77)": the CLIP text encoders truncate on
    # purpose, and the score stage counts what they cut in `truncated_captions`.
    return not record.getMessage().startswith("Token indices sequence length is longer than")


_logging.getLogger("transformers.utils.import_utils").addFilter(_drop_pil_fallback_notice)
_logging.getLogger("transformers.tokenization_utils_base").addFilter(_drop_sequence_length_notice)

_SILENT_BARS = frozenset({"Loading weights", "Writing model shards", "Loading checkpoint shards"})
"""transformers' bars for reading and writing weights: printed to stderr at every model load, even with
-q, and saying nothing a user acts on. Download bars (huggingface_hub's) and every warning stay."""


def _quiet_weight_bars(logging_module: _types.ModuleType) -> None:
    """Wrap transformers' tqdm factory (`transformers.utils.logging.tqdm`, which its loaders call) so the
    weight bars are created disabled; every other bar is made as before."""
    factory = type(logging_module.tqdm)

    class _QuietTqdm(factory):
        def __call__(self, *args: _typing.Any, **kwargs: _typing.Any) -> _typing.Any:
            if kwargs.get("desc") in _SILENT_BARS:
                kwargs = {**kwargs, "disable": True}
            return super().__call__(*args, **kwargs)

    logging_module.tqdm = _QuietTqdm()


class _HookTransformersBars(_abc.MetaPathFinder):
    """Applies `_quiet_weight_bars` as soon as transformers' logging module is imported, before the loaders
    that call its tqdm are: importing it here would cost every command a second, and most load no model."""

    def find_spec(
        self, fullname: str, path: _typing.Sequence[str] | None, target: object = None
    ) -> _machinery.ModuleSpec | None:
        if fullname != "transformers.utils.logging":
            return None
        _sys.meta_path.remove(self)
        spec = _machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_hook(module: _types.ModuleType) -> None:
            exec_module(module)
            _quiet_weight_bars(module)

        loader.exec_module = exec_and_hook
        return spec


if "transformers.utils.logging" in _sys.modules:
    _quiet_weight_bars(_sys.modules["transformers.utils.logging"])
else:
    _sys.meta_path.insert(0, _HookTransformersBars())
