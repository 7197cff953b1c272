"""Binary little-endian PLY point clouds with arbitrary per-vertex fields (numpy structured arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldstereo.errors import InputError
from worldstereo.io.atomic import atomic_path

_PLY_TYPES = {
    "f4": "float", "f8": "double", "u1": "uchar", "i1": "char",
    "u2": "ushort", "i2": "short", "u4": "uint", "i4": "int",
}
_NP_TYPES = {
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
    "char": "i1", "int8": "i1", "ushort": "u2", "uint16": "u2", "short": "i2", "int16": "i2",
    "uint": "u4", "uint32": "u4", "int": "i4", "int32": "i4",
}


def write_ply(path: str | Path, fields: dict[str, np.ndarray]) -> None:
    """Write vertices with the given named columns (each [N]) atomically, in the given order."""
    names = list(fields)
    n = len(next(iter(fields.values()))) if fields else 0
    dtype = [(k, np.asarray(fields[k]).dtype.str.replace(">", "<").replace("=", "<")) for k in names]
    arr = np.empty(n, dtype=dtype)
    for k in names:
        arr[k] = fields[k]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    for k, t in dtype:
        header.append(f"property {_PLY_TYPES[t.lstrip('<|')]} {k}")
    header.append("end_header")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(arr.data)  # the buffer itself, no bytes copy (caches hold millions of points)


def read_ply(path: str | Path) -> np.ndarray:
    """Read the vertex element of a binary little-endian PLY into a structured array."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.readline().strip() != b"ply":
                raise InputError(path, "not a PLY file")
            fmt, n, props, in_vertex = None, 0, [], False
            while True:
                line = f.readline()
                if not line:
                    raise InputError(path, "PLY header has no end_header")
                tok = line.decode("ascii", "replace").split()
                if not tok:
                    continue
                if tok[0] == "format":
                    fmt = tok[1]
                elif tok[0] == "element":
                    in_vertex = tok[1] == "vertex"
                    if in_vertex:
                        n = int(tok[2])
                elif tok[0] == "property" and in_vertex:
                    if tok[1] == "list":
                        raise InputError(path, "list properties on vertices are not supported")
                    props.append((tok[2], "<" + _NP_TYPES[tok[1]]))
                elif tok[0] == "end_header":
                    break
            if fmt != "binary_little_endian":
                raise InputError(path, f"PLY format {fmt!r} not supported (binary_little_endian only)")
            data = np.fromfile(f, dtype=props, count=n)  # read straight into the array, no copy
            if len(data) != n:
                raise ValueError(f"{n} vertices declared, {len(data)} present")
    except FileNotFoundError:
        raise InputError(path, "file not found")
    except (ValueError, KeyError) as e:
        raise InputError(path, f"malformed PLY ({e})")
    return data
