"""Generator backends by name: a table of factories that import their backend only when it is chosen.

    gen = make_generator("geometric", GeometricConfig())
    frames = gen.generate(request)

A new backend (e.g. a diffusion model loaded from a local folder) adds one factory to `FACTORIES`
that imports its module inside the factory, so `import worldstereo.generate.registry` never pulls
in torch-heavy or weight-loading code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from worldstereo.errors import InputError

if TYPE_CHECKING:
    from worldstereo.generate.base import Generator


def _geometric(cfg: Any) -> Generator:
    from worldstereo.generate.geometric import GeometricConfig, GeometricGenerator

    return GeometricGenerator(GeometricConfig() if cfg is None else cfg)


def _worldstereo(cfg: Any) -> Generator:
    from worldstereo.generate.worldstereo.generator import WorldStereoGenerator

    if cfg is None:
        raise InputError(None, "the WorldStereo backends need a config (weights and base model folders)")
    return WorldStereoGenerator(cfg)


FACTORIES: dict[str, Callable[[Any], Generator]] = {
    "geometric": _geometric,
    "worldstereo-camera": _worldstereo,
    "worldstereo-memory": _worldstereo,
    "worldstereo-memory-dmd": _worldstereo,
}
"""Backend name → factory(backend config or None for its defaults) → Generator."""


def make_generator(backend: str, cfg: Any = None) -> Generator:
    """The generator `backend`, built from its own config `cfg` (None: the backend's defaults)."""
    factory = FACTORIES.get(backend)
    if factory is None:
        raise InputError(None, f"unknown generator backend '{backend}' (known: {', '.join(sorted(FACTORIES))})")
    return factory(cfg)
