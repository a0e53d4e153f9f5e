"""Weight compression of an OpenVINO IR with NNCF (works on ov.Model, no torch needed)."""

from __future__ import annotations

import os
from pathlib import Path

from edgespec.runtime.errors import EdgespecError

WEIGHT_FORMATS = ("int4", "int8", "fp16", "keep")
INT4_GROUP_SIZE = 128


def check_weight_format(value: str, what: str = "weights") -> str:
    value = (value or "").lower()
    if value not in WEIGHT_FORMATS:
        raise EdgespecError(f"unknown {what} format {value!r} (choose from {', '.join(WEIGHT_FORMATS)})")
    return value


def require_nncf():
    try:
        import nncf
    except ImportError:
        raise EdgespecError("INT4/INT8 weight compression needs NNCF: pip install 'edgespec[export]' "
                            "(or pip install nncf)") from None
    return nncf


def compress_model(model, weights: str, group_size: int = INT4_GROUP_SIZE):
    """Return `model` with its weights compressed: int4 = INT4 symmetric, `group_size` weights per scale
    (embeddings and the output layer fall back to INT8 as NNCF does by default); int8 = INT8 asymmetric per
    channel."""
    nncf = require_nncf()
    if weights == "int4":
        # ADJUST: layers whose width is not a multiple of 128 (SmolLM2's 576) take the nearest group
        # size that divides it instead of failing the whole export.
        advanced = nncf.AdvancedCompressionParameters(group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST)
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=group_size,
                                     ratio=1.0, advanced_parameters=advanced)
    if weights == "int8":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    raise ValueError(weights)


def has_nncf() -> bool:
    try:
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


def compress_ir(model_dir: str | Path, weights: str, builtin_int8: bool | None = None,
                group_size: int = INT4_GROUP_SIZE) -> str:
    """Compress openvino_model.xml/.bin in `model_dir` in place (int4/int8); fp16/keep leave it as it is.

    int8 goes through NNCF when it is installed, else through edgespec.export.int8 (the same
    asymmetric per-channel scheme, measured equal in speed and quality); `builtin_int8` forces either.
    Returns the engine used: "nncf", "builtin" or "none".
    """
    import openvino as ov

    if weights in ("fp16", "keep"):
        return "none"
    if builtin_int8 is None:
        builtin_int8 = weights == "int8" and not has_nncf()
    if weights != "int8" or not builtin_int8:
        require_nncf()
    model_dir = Path(model_dir)
    xml = model_dir / "openvino_model.xml"
    model = ov.Core().read_model(xml)
    # Block-quantized weights (GenAI's Q8_0 reading, or an earlier compression) become plain f16 first,
    # so that every matrix is compressed as asked.
    from .ir_weights import fold_weights_to_f16

    fold_weights_to_f16(model)
    if builtin_int8:
        from .int8 import compress_int8

        compress_int8(model)
    else:
        model = compress_model(model, weights, group_size)
    # Save beside, then swap: the source .bin is memory-mapped while we write.
    tmp_xml = model_dir / "openvino_model.compressed.xml"
    ov.save_model(model, tmp_xml, compress_to_fp16=False)
    del model
    os.replace(tmp_xml, xml)
    os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
    return "builtin" if builtin_int8 else "nncf"
