"""llama-cpp-python as the peer of a local comparison, its weights where agentkit keeps them.

On a llama.cpp build with AMX, llama-cpp-python moves the weights into llama.cpp's AMX buffers,
whose matrix product crashes the process on some machines; agentkit's local runtime keeps them
in plain CPU buffers there. The peer does the same, so that both compute with the same kernels.
`python -m benchmarks._plain_cpu ARGS` starts llama-cpp-python's server (`llama_cpp.server
ARGS`) that way.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def amx_build() -> bool:
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def plain_cpu_weights() -> Iterator[None]:
    """`llama_cpp.Llama` objects made inside load their weights without llama.cpp's extra
    buffer types on an AMX build (as `llama-server --no-repack` does)."""
    if not amx_build():
        yield
        return
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


if __name__ == "__main__":
    with plain_cpu_weights():  # the server loads its model as it starts
        sys.argv[0] = "llama_cpp.server"
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
