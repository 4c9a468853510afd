"""Compiled networks (``torch.compile``) for the training step and every prediction, with eager
execution as the fallback.

:func:`compile_network` compiles a network in place (``nn.Module.compile``: the same module, its
parameters and ``state_dict`` unchanged, so checkpoints, ``DistributedDataParallel`` and the
window of :class:`~l2s_core.infer.Segmenter` see the network they always saw). Compilation
happens at the first call; if it fails there, one warning line is logged and the network runs
eagerly from then on. The option is the runs' ``compile`` setting: ``None`` (the default)
compiles on GPUs and not on the CPU, ``True`` and ``False`` force it (:func:`compile_wanted`).

Compilation changes the speed, not the function: the compiled network computes the same
logits up to floating-point rounding (fused kernels add in another order).
"""

from __future__ import annotations

__all__ = ["compile_network", "compile_wanted", "is_compiled"]

import logging
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_log = logging.getLogger(__name__)
#: Networks whose compilation failed: they stay eager.
_FAILED: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def compile_wanted(option: bool | None, device: str | torch.device) -> bool:
    """Whether a network running on ``device`` is compiled under the ``compile`` option
    (``None``: on CUDA devices only)."""
    return torch.device(device).type == "cuda" if option is None else bool(option)


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` runs compiled (``False`` too after a failed compilation fell back)."""
    return getattr(model, "_compiled_call_impl", None) is not None


def compile_network(model: nn.Module) -> nn.Module:
    """Compile ``model`` in place for its next calls (a no-op when it already is); returns it.

    Shapes are compiled as they come (``dynamic=None``: a second input shape gets a graph with
    dynamic sizes), so images smaller than the patch and a last, smaller window batch do not
    recompile without end. If compiling or running the compiled network raises, the call is
    repeated eagerly; if that succeeds, one warning names the compiler's error and the network
    stays eager; otherwise the eager error is raised (it was the input, not the compiler).
    """
    if is_compiled(model) or model in _FAILED:
        return model
    compiled: Callable[..., Any] = torch.compile(model._call_impl, dynamic=None)  # as nn.Module.compile does

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as compile_error:  # the compiler's or the input's: the eager call tells
            result = model._call_impl(*args, **kwargs)
            first_line = (str(compile_error).strip().splitlines() or [""])[0][:200]
            _log.warning(
                "torch.compile failed for %s (%s: %s); running it eagerly",
                type(model).__name__,
                type(compile_error).__name__,
                first_line,
            )
            model._compiled_call_impl = None
            _FAILED.add(model)
            return result

    model._compiled_call_impl = call
    return model
