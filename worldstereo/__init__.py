"""worldstereo: one photo → a consistent 3D world (generate, keep consistent, reconstruct)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 2  # 2: stage records with run ids and consumed inputs; cache/step_*.ply
