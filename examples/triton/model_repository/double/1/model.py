"""Triton Python-backend model ``double``: y = 2x, a few milliseconds of work per batch."""

import time

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend


class TritonPythonModel:
    def execute(self, requests):  # type: ignore[no-untyped-def]
        time.sleep(0.005)
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            y = pb_utils.Tensor("y", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return responses
