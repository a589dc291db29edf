"""Reading ONNX files and their codedresnext.* metadata, with a GraphError for missing/corrupt files.

Every module that opens an .onnx goes through `load_onnx`, so a typo'd path or a truncated file
gives the same message everywhere instead of a protobuf DecodeError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import GraphError
from .keys import META_FORMAT, META_PREFIX


def load_onnx(path: str | os.PathLike, *, load_external_data: bool = False) -> Any:
    """onnx.ModelProto of `path`; GraphError if it does not exist or does not parse."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise GraphError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as e:  # onnx raises DecodeError and others for corrupt files
        raise GraphError(f"{path} is not a readable ONNX file ({e}); re-export it") from e


def read_metadata(model_or_path: Any, *, missing_ok: bool = False) -> dict[str, Any]:
    """Decode the codedresnext.* metadata of an onnx.ModelProto or file; GraphError if absent
    (missing_ok: {} for a graph another tool wrote)."""
    model = load_onnx(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    props = {p.key: p.value for p in model.metadata_props}
    if META_FORMAT not in props:
        if missing_ok:
            return {}
        raise GraphError(
            "this ONNX graph has no codedresnext metadata; export it with `codedresnext export` "
            "(the pruner needs the coding scheme stored there)"
        )
    out = {}
    for k, v in props.items():
        if k.startswith(META_PREFIX):
            try:
                out[k] = json.loads(v)
            except json.JSONDecodeError:
                out[k] = v
    return out


def has_metadata(model: Any) -> bool:
    return any(p.key == META_FORMAT for p in model.metadata_props)
