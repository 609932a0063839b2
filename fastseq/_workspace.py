"""Scratch arrays a layer reuses from call to call instead of allocating them every time.

Only internal buffers live here (what forward saves for backward, backward's scratch). Arrays
returned to the caller are always new, so a result never changes under the caller's feet.
"""

import numpy as np


class Workspace:
    """One array per name, reallocated only when the requested shape or dtype changes."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype):
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype)
        return array
