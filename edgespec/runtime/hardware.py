"""What the bench ran on: CPU, memory, its measured bandwidth, library versions, model files."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path

import numpy as np

PACKAGES = ("edgespec", "openvino", "openvino-genai", "openvino-tokenizers", "numpy", "llama-cpp-python")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The SIMD extensions that matter for OpenVINO's CPU kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
    return [f for f in wanted if f in flags]


def total_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    commit = source_commit()
    if commit:
        out["edgespec commit"] = commit
    return out


def source_commit() -> str | None:
    """The git commit of an edgespec source checkout (editable install), '+dirty' if it has local changes."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if head and dirty else head or None


def measure_bandwidth(size_mb: int = 256, repeats: int = 5) -> dict:
    """Single-thread numpy memory bandwidth, best of `repeats`, in bytes/s.

    read: a sum over the buffer (reads it once). copy: np.copyto (reads and writes it once each,
    counted as 2x the buffer). The buffer is far larger than any cache so this is DRAM speed.
    """
    n = size_mb * 1024 * 1024 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    best_read = best_copy = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        src.sum()
        best_read = min(best_read, time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(dst, src)
        best_copy = min(best_copy, time.perf_counter() - t)
    nbytes = src.nbytes
    return {"buffer_bytes": nbytes, "read_bytes_per_s": nbytes / best_read,
            "copy_bytes_per_s": 2 * nbytes / best_copy, "method": "numpy single thread, best of %d" % repeats}


def machine_info() -> dict:
    return {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "memory_bytes": total_memory_bytes(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def model_files(folder: Path) -> dict:
    """Sizes of the files that make up one model. weight_bytes is the weight file; streamed_bytes is what a
    decode step reads of it: all of it but the tables it only gathers rows from (lookup_only_bytes)."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            files[path.name] = path.stat().st_size
    weight_bytes = files.get("openvino_model.bin", 0)
    xml = folder / "openvino_model.xml"
    lookup = lookup_only_bytes(xml) if xml.is_file() and weight_bytes else 0
    return {"dir": str(folder), "files": files, "weight_bytes": weight_bytes,
            "streamed_bytes": weight_bytes - lookup, "lookup_only_bytes": lookup}


_DECOMPRESSION = {"Convert", "Subtract", "Multiply", "Reshape"}


def lookup_only_bytes(xml: Path) -> int:
    """Bytes of weight tables that the model only gathers rows from: an input embedding that is not also
    the output head. A decode step reads one row of such a table per token, not the table, so counting it
    would make a draft with its own embedding (every FastDraft draft) look several times heavier than it is."""
    import openvino as ov

    total = 0
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        if op.get_type_name() != "Gather":
            continue
        chain, node = [], op.input_value(0).get_node()
        while node.get_type_name() in _DECOMPRESSION and node.get_input_size():  # INT8/INT4 weight decompression
            chain.append(node)
            node = node.input_value(0).get_node()
        # A table or decompressed copy that feeds anything else (a tied output head's MatMul) is streamed.
        if node.get_type_name() == "Constant" and all(len(n.output(0).get_target_inputs()) == 1
                                                      for n in [node, *chain]):
            total += node.get_byte_size()
    return total


def rss_bytes() -> int:
    """Current resident set size of this process (Linux), 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def peak_rss_bytes() -> int:
    """High-water resident set size of this process (Linux: VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
