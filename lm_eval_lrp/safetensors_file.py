"""A safetensors file of float32 tensors, written here: the header and the raw bytes, nothing else.

``safetensors.torch.save_file`` spends most of its time per file on checks and conversions that a few small float32
tensors do not need (about 0.2 ms a file; the harness writes one file per batch of records). The format is simple
(https://github.com/huggingface/safetensors#format): 8 bytes little-endian, the length of a JSON header; the header
(``__metadata__`` first, then each tensor's dtype, shape and byte range, tensors in name order), padded with spaces
to a multiple of 8; then the tensors' bytes, little-endian, in that order. :func:`save_float32` writes the bytes
``save_file`` writes, except that it orders the metadata by key where ``save_file`` leaves several metadata entries
in hash order (tested: the same header and bytes, byte for byte with one metadata entry); on a big-endian machine it
calls ``save_file``.
"""

from __future__ import annotations

import json
import struct
import sys

import torch
from safetensors.torch import save_file


def save_float32(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (converted to contiguous float32 on the CPU) to the safetensors file ``path``."""
    tensors = {k: t.detach().to("cpu", torch.float32).contiguous() for k, t in tensors.items()}
    if sys.byteorder != "little":
        save_file(tensors, path, metadata=metadata)
        return
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs, offset = [], 0
    for key in sorted(tensors):  # save_file's order: by dtype (one here), then by name
        blob = tensors[key].numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(tensors[key].shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
