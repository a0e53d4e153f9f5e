"""Compile a model for a device name (CPU, GPU, GPU.1, NPU...) with the settings speculation needs."""

from __future__ import annotations

import dataclasses
import os

import openvino as ov

from edgespec.runtime.errors import EdgespecError
from edgespec.runtime.hardware import cpu_flags
from edgespec.runtime.npu import NPUConfig, compile_npu, should_emulate

KNOWN_DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")


def cpu_config(exact: bool = False) -> dict:
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if exact:
        # Kernels that do not depend on how many tokens a call feeds, so a k-token verify picks the same argmax
        # as k one-token steps (what each default breaks, measured: docs/exactness.md).
        config["INFERENCE_PRECISION_HINT"] = "f32"
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
        config["KV_CACHE_PRECISION"] = "f32"
    return config


def prefill_config() -> dict:
    """A CPU target's prefill compile: f32 math with dynamic int8 quantization of activations (VNNI/AMX int8 kernels:
    a 900-token SmolLM2 prompt in 0.69 s against 1.29 s exact, on an AVX-512 VNNI EPYC), writing the exact decode
    model's f32 KV cache (bf16 math would need a bf16 cache). Greedy speculative output still equals target-only
    output: both read a prompt fed to an empty cache through this prefill (PagedLM.prefill), and every other call
    runs the exact kernels."""
    return {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": "f32",
            "KV_CACHE_PRECISION": "f32"}


def fast_prefill_differs() -> bool:
    """Whether the CPU has int8 dot-product instructions, where dynamic quantization makes prefill about 2x faster;
    without them (AVX2 only) it changes nothing (docs/exactness.md). EDGESPEC_FAST_PREFILL=0 keeps prompts on the
    exact kernels too (one compiled copy of the target, not two)."""
    if os.environ.get("EDGESPEC_FAST_PREFILL", "1") == "0":
        return False
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_flags()))


def device_config(device: str, exact: bool = False) -> dict:
    """The properties compile_model passes for a CPU, GPU or other non-NPU device (before `extra`)."""
    base = device.split(".")[0].split(":")[0].upper()
    if base == "CPU":
        return cpu_config(exact)
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if base == "GPU" and exact:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


def check_device(core: ov.Core, device: str) -> None:
    base = device.split(".")[0].split(":")[0].upper()
    if base not in KNOWN_DEVICES:
        raise EdgespecError(f"unknown device {device!r} (choose from CPU, GPU, NPU; this machine has "
                            f"{', '.join(core.available_devices)})")
    if base == "CPU":
        return
    if base == "NPU":
        should_emulate(core)  # raises when no NPU is present and EDGESPEC_NPU_EMULATE=0 forbids emulating it
        return
    if base == "GPU" and not any(d.startswith("GPU") for d in core.available_devices):
        raise EdgespecError(f"device {device} is not present on this machine "
                            f"(available: {', '.join(core.available_devices)})")


def is_cpu(device: str) -> bool:
    return device.split(".")[0].split(":")[0].upper() == "CPU"


def is_npu(device: str) -> bool:
    return device.split(".")[0].split(":")[0].upper() == "NPU"


def compile_model(core: ov.Core, model: ov.Model | str, device: str, exact: bool = False,
                  extra: dict | None = None, npu: NPUConfig | None = None,
                  generation_tokens: int | None = None) -> ov.CompiledModel:
    """Compile for `device`. NPU goes through NPUW (emulated on the CPU when there is no NPU; see
    edgespec.runtime.npu): `npu` sets its static shapes, `generation_tokens` the tokens one call may feed after
    the prefill (default npu.max_generation_tokens); `exact` does not apply there (NPUW keeps an f16 KV cache)."""
    if is_npu(device):
        npu = npu or NPUConfig()
        cache_dir = os.environ.get("EDGESPEC_CACHE_DIR")
        if cache_dir and "CACHE_DIR" not in npu.properties:
            extra = {"CACHE_DIR": cache_dir} | (extra or {})
        if extra:
            npu = dataclasses.replace(npu, properties=npu.properties | extra)
        if isinstance(model, str):
            model = core.read_model(model)
        return compile_npu(core, model, npu, generation_tokens or npu.max_generation_tokens)
    check_device(core, device)
    base = device.split(".")[0].upper()
    config = device_config(device, exact) | (extra or {})
    cache_dir = os.environ.get("EDGESPEC_CACHE_DIR")
    if cache_dir and base != "CPU":
        config["CACHE_DIR"] = cache_dir
    try:
        return core.compile_model(model, device, config)
    except RuntimeError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise EdgespecError(f"could not compile for {device}: {lines[-1] if lines else exc}") from None
