"""Inspect GGUF files and rewrite their tensor types, in numpy (no torch).

OpenVINO GenAI's GGUF reader takes only some tensor types (F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K and
F32 vectors) and keeps quantized weights in their GGUF block layout. Rewriting a file with every
matrix dequantized to F16 (or re-quantized to Q8_0) lets GenAI read files it would reject (Q5_0...)
and gives an ov.Model with plain float weights that NNCF can compress to INT4/INT8.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgespec.runtime.errors import EdgespecError

# What GenAI 2026.4's reader was seen to accept (matrices); vectors may be F32.
GENAI_MATRIX_TYPES = {"F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"}
GENAI_ARCHITECTURES = {"llama", "qwen2", "qwen3"}
# Writer-owned keys: the writer sets these itself.
_SKIP_KEYS = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    architecture: str
    context_length: int
    tensor_types: dict[str, int]          # type name -> number of tensors
    matrix_types: frozenset[str]               # types of tensors with 2+ dimensions
    eos_token_id: int | None
    chat_template: str | None
    tokens: tuple[str, ...] = ()
    add_bos: bool = False

    @property
    def genai_readable(self) -> bool:
        return self.architecture in GENAI_ARCHITECTURES and self.matrix_types <= GENAI_MATRIX_TYPES


def open_gguf(path: Path):
    """A gguf-py reader over `path`; EdgespecError (one line) for a missing, foreign or damaged file."""
    import gguf

    path = Path(path)

    if not path.is_file():
        raise EdgespecError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise EdgespecError(f"{path} is not a GGUF file (no GGUF magic)")
    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/IndexError/struct errors on damaged files
        raise EdgespecError(f"{path.name} is corrupted or truncated ({exc.__class__.__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    try:
        return field.contents()
    except Exception:
        return default


def llama_settings(reader) -> dict:
    """A llama/qwen2 GGUF's shape and settings from its header: what a draft made from it, or for it, needs."""
    arch = str(reader.fields["general.architecture"].contents())

    def meta(key: str):
        return reader.fields[f"{arch}.{key}"].contents()

    embedding = next(t for t in reader.tensors if t.name == "token_embd.weight")
    return {"arch": arch, "vocab": int(embedding.shape[-1]),  # gguf-py lists dimensions innermost first
            "hidden": int(meta("embedding_length")), "layers": int(meta("block_count")),
            "heads": int(meta("attention.head_count")), "kv_heads": int(meta("attention.head_count_kv")),
            "ffn": int(meta("feed_forward_length")), "context": int(meta("context_length")),
            "rope_theta": float(meta("rope.freq_base")), "rms_eps": float(meta("attention.layer_norm_rms_epsilon"))}


def read_gguf_info(path: str | Path) -> GgufInfo:
    """Header facts of a GGUF file; EdgespecError if it is not one or its tensor data is cut short.

    Parsing a header with a 150k-token vocabulary takes seconds in gguf-py, so results are cached by
    (path, size, mtime).
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise EdgespecError(f"GGUF file not found: {path}")
    stat = path.stat()
    return _read_gguf_info(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _read_gguf_info(path: Path, size: int, mtime_ns: int) -> GgufInfo:
    reader = open_gguf(path)
    end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size or not reader.tensors:
        raise EdgespecError(f"{path.name} is truncated: its tensors need {end} bytes, the file has {size}")
    arch = str(_field(reader, "general.architecture", "unknown"))
    types: dict[str, int] = {}
    matrix_types = set()
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        if len(t.shape) >= 2:
            matrix_types.add(t.tensor_type.name)
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    return GgufInfo(path=path, architecture=arch, context_length=int(_field(reader, f"{arch}.context_length", 2048)),
                    tensor_types=types, matrix_types=frozenset(matrix_types), eos_token_id=None if eos is None else int(eos),
                    chat_template=_field(reader, "tokenizer.chat_template"),
                    tokens=tuple(_field(reader, "tokenizer.ggml.tokens", ())),
                    add_bos=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)))


def _plan(shape: list[int], n: int, to: str):
    """(byte shape, numpy dtype, byte count, raw GGML type) of one matrix stored as `to`."""
    import gguf

    if to == "F16":
        return shape, np.float16, n * 2, None
    qtype = gguf.GGMLQuantizationType[to]
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if shape[-1] % block:
        return shape, np.float16, n * 2, None  # rows not made of whole blocks: F16 instead
    return shape[:-1] + [shape[-1] // block * type_size], np.uint8, n // block * type_size, qtype


def _out_tensor(tensor, raw) -> np.ndarray:
    """The bytes to write for one reader tensor (F32 vectors; matrices as F16 or `raw`)."""
    import gguf

    if len(tensor.shape) < 2:
        # Vectors (norms, biases) stay F32: small, and GenAI reads them that way.
        return np.ascontiguousarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
    if raw is not None and tensor.tensor_type == raw:
        return np.ascontiguousarray(tensor.data)
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    if raw is None:
        return values.astype(np.float16)
    return gguf.quants.quantize(values.astype(np.float32, copy=False), raw)


def rewrite_gguf(src: str | Path, dst: str | Path, to: str = "F16", console: Console | None = None) -> Path:
    """Copy `src` to `dst` with every matrix stored as `to` ("F16", "Q8_0", or any type gguf-py can
    quantize, such as "Q5_0"), metadata unchanged.

    Tensors are converted and written one at a time, so memory stays near one tensor's size.
    """
    import gguf

    if to != "F16" and to not in gguf.GGMLQuantizationType.__members__:
        raise ValueError(to)
    src, dst = Path(src), Path(dst)
    info = read_gguf_info(src)
    reader = open_gguf(src)
    writer = gguf.GGUFWriter(str(dst), info.architecture, use_temp_file=False)
    # The writer added general.architecture already; copy the rest as typed in the source.
    for key, field in reader.fields.items():
        if key in _SKIP_KEYS or key == "general.architecture":
            continue
        value = field.contents()
        if key == "general.file_type":
            value = int(gguf.LlamaFileType[f"MOSTLY_{to}"])
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
    # First pass: tensor infos (shapes and byte sizes) without holding any data.
    plans = []
    for t in reader.tensors:
        n = int(t.n_elements)
        shape = [int(d) for d in reversed(t.shape)]  # GGUF lists dims innermost first
        if len(t.shape) < 2:
            dtype, nbytes, raw = np.float32, n * 4, None
        else:
            shape, dtype, nbytes, raw = _plan(shape, n, to)
        writer.add_tensor_info(t.name, shape, np.dtype(dtype), nbytes, raw_dtype=raw)
        plans.append((t, nbytes, raw))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    console = console or Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{src.name} -> {to}", total=len(plans))
        for t, nbytes, raw in plans:
            array = _out_tensor(t, raw)
            if array.nbytes != nbytes:
                raise EdgespecError(f"{src.name}: tensor {t.name} came out as {array.nbytes} bytes, "
                                    f"expected {nbytes}")
            writer.write_tensor_data(array)
            progress.advance(task)
    writer.close()
    return dst
