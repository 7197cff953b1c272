"""WorldStereo 2.0 diffusion backend: the released weights on diffusers' Wan classes (imported lazily).

Importing this package reads no weights and imports no diffusers: `config` and `conditioning`
need only torch; `model`, `loader` and `sampling` import diffusers when they are imported.
"""

from worldstereo.generate.worldstereo.config import VARIANTS, Variant

__all__ = ["VARIANTS", "Variant"]
