"""Repair of binary FBX files written by Assimp < 5.3: add the NULL record that must close every
nested node list.

Binary FBX (7.x) is a tree of node records: end offset, property count, property bytes (uint64 from
version 7500 on, uint32 before), a name, the properties, then the children, and — when there are
children — a NULL record (25 zero bytes at 7500+, 13 before) that closes the list. Assimp 5.2.x
writes that record from a `const char[25]` of zeros converted to std::string, i.e. as an empty
string (fixed upstream in commit 2d372b3, first released in 5.3.0), so its own reader and Blender's
both reject the file ("FBX-Tokenize … block offset is out of range" / "failed to read nested block
sentinel"). `add_nested_sentinels` parses the tree and writes it back with the records and the
end offsets they shift; a file that already has them is returned unchanged.

    fixed = add_nested_sentinels(Path("x.fbx").read_bytes())
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = b"Kaydara FBX Binary  \x00\x1a\x00"
HEADER_LEN = 27  # magic (23 bytes) + uint32 version


@dataclass
class Node:
    name: bytes
    n_props: int
    props: bytes  # the property records as they were (they hold no offsets)
    children: list[Node] = field(default_factory=list)


def _layout(version: int) -> tuple[str, int]:
    """(struct format of end offset / property count / property bytes, NULL record length)."""
    return ("<QQQ", 25) if version >= 7500 else ("<III", 13)


def parse(data: bytes) -> tuple[int, list[Node], bytes]:
    """(version, top-level nodes, footer = the bytes after the top-level NULL record)."""
    if not data.startswith(HEADER):
        raise ValueError("not a binary FBX file")
    version = struct.unpack_from("<I", data, 23)[0]
    fmt, null_len = _layout(version)
    head = struct.calcsize(fmt)

    def node_list(off: int, end: int) -> tuple[list[Node], int]:
        """Nodes from off up to `end` or to a NULL record (consumed); returns them and the offset after."""
        out = []
        while off < end:
            end_off, n_props, plen = struct.unpack_from(fmt, data, off)
            if end_off == 0:  # NULL record
                return out, off + null_len
            if not off < end_off <= end:
                raise ValueError(f"node at {off:#x}: end offset {end_off:#x} outside its parent (…{end:#x})")
            name_len = data[off + head]
            name = data[off + head + 1:off + head + 1 + name_len]
            p0 = off + head + 1 + name_len
            children, _ = node_list(p0 + plen, end_off)
            out.append(Node(name, n_props, data[p0:p0 + plen], children))
            off = end_off
        return out, off

    top, after = node_list(HEADER_LEN, len(data))
    return version, top, data[after:]


def serialise(version: int, nodes: list[Node], footer: bytes) -> bytes:
    """The file with a NULL record closing every nested list and the top-level list."""
    fmt, null_len = _layout(version)
    out = bytearray(data_header(version))

    def put(node: Node) -> None:
        start = len(out)
        out.extend(struct.pack(fmt, 0, node.n_props, len(node.props)))
        out.append(len(node.name))
        out.extend(node.name)
        out.extend(node.props)
        for c in node.children:
            put(c)
        if node.children:
            out.extend(b"\0" * null_len)
        struct.pack_into(fmt, out, start, len(out), node.n_props, len(node.props))

    for n in nodes:
        put(n)
    out.extend(b"\0" * null_len)
    out.extend(footer)
    return bytes(out)


def data_header(version: int) -> bytes:
    return HEADER + struct.pack("<I", version)


def add_nested_sentinels(data: bytes) -> bytes:
    """The binary FBX `data` with every nested node list closed by its NULL record."""
    return serialise(*parse(data))
