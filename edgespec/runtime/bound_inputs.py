"""A model's call inputs written into tensors bound to its infer request, not handed to start_async/infer.

Handing numpy arrays to the request goes through the Python binding's data dispatcher, which wraps each array in a
new tensor and sets it on the request: 0.3-0.5 ms a call for the paged-attention model's ten inputs, a fifth of a
SmolLM2 draft call on a 2-core CPU (docs/performance.md Q11). A bound tensor is set again only where an input's
shape changes.
"""

from __future__ import annotations

import numpy as np
import openvino as ov

POOLED = 256  # inputs of up to this many values keep a tensor per shape for reuse (a prompt's ids are not kept)


class BoundInputs:
    def __init__(self):
        self.pool: dict[tuple, ov.Tensor] = {}  # tensors by input name and shape
        self.bound: dict[int, dict[str, ov.Tensor]] = {}  # per request (by id): the tensor each input is set to

    def feed(self, request: ov.InferRequest, inputs: dict[str, np.ndarray]) -> None:
        """Write `inputs` into the tensors `request` reads them from."""
        bound = self.bound.setdefault(id(request), {})
        for name, array in inputs.items():
            array = np.asarray(array)
            tensor = bound.get(name)
            if tensor is None or tensor.data.shape != array.shape or tensor.data.dtype != array.dtype:
                tensor = self.pool.get((name, array.shape, array.dtype.str))
                if tensor is None:
                    tensor = ov.Tensor(np.array(array))
                    if array.size <= POOLED:
                        self.pool[name, array.shape, array.dtype.str] = tensor
                request.set_tensor(name, tensor)
                bound[name] = tensor
            np.copyto(tensor.data, array)

    def forget(self) -> None:
        """The requests' tensors were set by someone else: bind again at the next call."""
        self.bound.clear()
