"""One preset mechanism for every stage script: `script.py [PRESET] --flags`, PRESET defaulting to the
first one; `--preset NAME` is accepted too. Flags given after the preset override its fields."""

from __future__ import annotations

import sys
from typing import Sequence, TypeVar

import tyro

T = TypeVar("T")


def parse_with_presets(presets: dict[str, tuple[str, T]], description: str, argv: Sequence[str] | None = None) -> T:
    """Parse a command line against named default configs {name: (one-line description, config)}."""
    args = list(sys.argv[1:] if argv is None else argv)
    for k, a in enumerate(args):  # `--preset NAME` / `--preset=NAME` → the subcommand form
        if a == "--preset" and k + 1 < len(args):
            args = [args[k + 1], *args[:k], *args[k + 2:]]
            break
        if a.startswith("--preset="):
            args = [a.split("=", 1)[1], *args[:k], *args[k + 1:]]
            break
    if not args or (args[0] not in presets and args[0] not in ("-h", "--help")):
        args = [next(iter(presets)), *args]
    cli_type = tyro.extras.subcommand_type_from_defaults({k: v[1] for k, v in presets.items()},
                                                          {k: v[0] for k, v in presets.items()})
    return tyro.cli(cli_type, args=args, description=description)
