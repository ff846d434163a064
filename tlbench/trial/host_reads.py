"""Counting the times code reads a tensor's value back to the host: on a GPU, each one waits for the card.

`HostReads` counts, while it is active, every op that must see a tensor's
values on the host (`.item()`, `bool()`/`int()`/`float()` of a tensor, `if
tensor`, data-dependent shapes such as `nonzero`) and every `.tolist()`,
`.numpy()` and `.cpu()`. It works on the CPU, where these cost nothing, so a
test and `bench` can prove a GPU step would not wait. Reads inside an
optimizer's `step` are not counted: torch keeps Adam's step counter on the
host (non-capturable optimizers), so on a card they read host memory, not the
device's.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

# Ops whose result depends on tensor values the host must see (the data-dependent-shape ones too).
READ_OPS = {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "masked_select", "unique_consecutive", "_unique2", "unique_dim"}
READ_METHODS = ("tolist", "numpy", "cpu")


class HostReads(TorchDispatchMode):
    """`with HostReads() as reads: ...; reads.count`, and `reads.where` names what read."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.where, self._in_optimizer = 0, [], 0
        self._patched: dict[str, object] = {}
        self._hooks: list = []

    def _read(self, what: str) -> None:
        if not self._in_optimizer:
            self.count += 1
            self.where.append(what)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in READ_OPS:
            self._read(str(func))
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> HostReads:
        for name in READ_METHODS:
            original = getattr(torch.Tensor, name)
            self._patched[name] = original

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                self._read(f"Tensor.{_name}")
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)
        self._hooks = [
            register_optimizer_step_pre_hook(lambda *_: self._enter_optimizer(1)),
            register_optimizer_step_post_hook(lambda *_: self._enter_optimizer(-1)),
        ]
        return super().__enter__()

    def _enter_optimizer(self, delta: int) -> None:
        self._in_optimizer += delta

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        for name, original in self._patched.items():
            setattr(torch.Tensor, name, original)
        for hook in self._hooks:
            hook.remove()
