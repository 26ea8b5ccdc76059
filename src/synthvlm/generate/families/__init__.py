"""Generator families: one file per text-to-image family behind one contract (`base.Family`), one registry.

Adding a family is its file here, its entry in `FAMILIES`, its tiny builtin (`models/builtin/`), its presets
(`generate/presets.py`) and its test file.
"""

from __future__ import annotations

from synthvlm.generate.families.base import GUIDANCE_MEANING, TRUNCATION_NOTICE, Family
from synthvlm.generate.families.flux1 import Flux1
from synthvlm.generate.families.flux2 import Flux2
from synthvlm.generate.families.pixart import PixArtSigma
from synthvlm.generate.families.qwen_image import QwenImage
from synthvlm.generate.families.sana import Sana
from synthvlm.generate.families.sana_sprint import SanaSprint
from synthvlm.generate.families.sd3 import Sd3
from synthvlm.generate.families.sdxl import Sdxl
from synthvlm.generate.families.z_image import ZImage

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Sdxl(),
        Sd3(),
        Flux1(),
        Flux2(),
        Sana(),
        SanaSprint(),
        PixArtSigma(),
        QwenImage(),
        ZImage(),
    )
}
"""Every generator family by name."""


def family_of_pipeline(class_name: str) -> Family | None:
    """The family whose pipelines include `class_name` (a `model_index.json` `_class_name`), if any."""
    return next((f for f in FAMILIES.values() if class_name in f.pipelines), None)


def family_of_builtin(name: str) -> Family | None:
    """The family a `builtin:` pipeline name stands in for, if any."""
    return next((f for f in FAMILIES.values() if f.tiny == name), None)


__all__ = [
    "FAMILIES",
    "GUIDANCE_MEANING",
    "TRUNCATION_NOTICE",
    "Family",
    "family_of_builtin",
    "family_of_pipeline",
]
