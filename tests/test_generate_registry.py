"""The generator registry: backends by name, built lazily, one-line error for an unknown name."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worldstereo.errors import InputError
from worldstereo.generate.registry import FACTORIES, make_generator

ROOT = Path(__file__).resolve().parents[1]


def test_geometric_backend_gets_its_config():
    from worldstereo.generate.geometric import GeometricConfig, GeometricGenerator

    cfg = GeometricConfig(inpaint_radius=7)
    gen = make_generator("geometric", cfg)
    assert isinstance(gen, GeometricGenerator) and gen.name == "geometric" and gen.cfg is cfg
    assert make_generator("geometric").cfg == GeometricConfig()  # None: the backend's defaults


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError) as e:
        make_generator("wan-14b", None)
    assert str(e.value) == ("unknown generator backend 'wan-14b' (known: geometric, worldstereo-camera, "
                            "worldstereo-memory, worldstereo-memory-dmd)")
    assert sorted(FACTORIES) == ["geometric", "worldstereo-camera", "worldstereo-memory", "worldstereo-memory-dmd"]


def test_worldstereo_backends_are_built_from_their_config_without_loading_weights(tmp_path):
    from worldstereo.generate.worldstereo.generator import WorldStereoGenerator, WorldStereoGeneratorConfig

    for name in ("worldstereo-camera", "worldstereo-memory", "worldstereo-memory-dmd"):
        cfg = WorldStereoGeneratorConfig(name, tmp_path / "missing", tmp_path / "also-missing", device="cpu")
        gen = make_generator(name, cfg)  # folders are read on the first generate, not here
        assert isinstance(gen, WorldStereoGenerator) and gen.name == name and gen.cfg is cfg


def test_registry_import_loads_no_backend():
    code = ("import sys, worldstereo.generate.registry; "
            "print(sorted(m for m in ('torch', 'cv2', 'diffusers', 'worldstereo.generate.geometric', "
            "'worldstereo.generate.worldstereo.generator') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"
