"""Compile a model for a device name (CPU, GPU, GPU.1, NPU...) with the settings speculation needs."""

from __future__ import annotations

import dataclasses
import os

import openvino as ov

from edgespec.errors import EdgespecError
from edgespec.npu import NPUConfig, compile_npu, should_emulate

KNOWN_DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")


def cpu_config(exact: bool = False) -> dict:
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if exact:
        # On CPUs with bf16/VNNI, OpenVINO's defaults (bf16 math, int8 dynamic quantization of activations
        # in groups of 32) run a k-token call through other kernels than a 1-token call: a 5-token verify then
        # picked another argmax than 1-token decoding on 2.5-12.5% of positions of SmolLM2 (f32 + no dynamic
        # quantization: 0%, max logit difference 1.5e-4). The default KV cache (u8 there, f16 on AVX2-only CPUs)
        # breaks it too: tokens verified together attend to each other's unrounded keys and values, tokens fed
        # one by one to rounded ones (u8: 8 of 950 argmaxes flipped; f32: 0, and no slower there).
        config["INFERENCE_PRECISION_HINT"] = "f32"
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "0"
        config["KV_CACHE_PRECISION"] = "f32"
    return config


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


def is_npu(device: str) -> bool:
    return device.split(".")[0].split(":")[0].upper() == "NPU"


def compile_model(core: ov.Core, model: ov.Model | str, device: str, exact: bool = False,
                  extra: dict | None = None, npu: NPUConfig | None = None,
                  generation_tokens: int | None = None) -> ov.CompiledModel:
    """Compile for `device`. NPU goes through NPUW (emulated on the CPU when there is no NPU; see
    edgespec.npu): `npu` sets its static shapes, `generation_tokens` the tokens one call may feed after
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
