"""synthvlm: build SynthVLM-style synthetic image-caption datasets for VLM pretraining."""

import logging as _logging

__version__ = "0.1.0"


def _drop_pil_fallback_notice(record: _logging.LogRecord) -> bool:
    # synthvlm picks the PIL image processors on purpose (scores must not depend on whether torchvision is
    # installed); transformers' notice that `<Model>ImageProcessor` fell back to them, printed when
    # diffusers imports those names, would tell every user to install torchvision for nothing.
    return "requires torchvision (not installed); falling back to" not in record.getMessage()


_logging.getLogger("transformers.utils.import_utils").addFilter(_drop_pil_fallback_notice)
