"""Loading a GGUF model for the batching engine: its weights, and llama.cpp's log set aside."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp.llama import Llama

from agentkit.errors import ConfigurationError

__all__ = ["llama_silent", "load_weights"]


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _drop_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    pass


@contextmanager
def llama_silent() -> Iterator[None]:
    """llama.cpp's log set aside for a moment (the log is global: another thread's llama.cpp
    messages in that moment are dropped too)."""
    previous, data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(previous), ctypes.byref(data))
    llama_cpp.llama_log_set(_drop_log, None)
    try:
        yield
    finally:
        llama_cpp.llama_log_set(previous, data)


def load_weights(model_path: Path, llama: Llama) -> Any:
    """The model's weights, loaded with the parameters `llama` derived from its options.

    On a build with AMX, llama.cpp moves the weights it can into an AMX buffer, and its AMX
    matrix product crashes the process on some machines (a segmentation fault in
    `ggml_backend_amx_mul_mat`, reported upstream and not fixed). The weights then stay in
    plain CPU buffers: llama.cpp's other kernels compute the same model."""
    params = type(llama.model_params).from_buffer_copy(llama.model_params)
    params.vocab_only = False
    if b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info():
        params.use_extra_bufts = False
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), params)
    if not model:
        llama.close()
        raise ConfigurationError(f"llama.cpp could not load the model {model_path}")
    return model
