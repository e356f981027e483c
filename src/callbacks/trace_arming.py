"""How the trace-reading callbacks pick and hold their steps: which optimizer steps they log (``due``), arming the
module's trace for those steps (``TraceArmingCallback``: the monitoring contract's ``trace_requested`` on our models,
forward hooks on any other), and holding what they computed from a step (``PendingSteps``) until ``flush_scalars``
finishes the held steps of every callback together."""

from __future__ import annotations

import time
import weakref
from typing import Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from src.callbacks.recurrent_hooks import HookTrace
from src.callbacks.tensorboard_output import flush_scalars
from src.models.recurrent_trace import RecurrentTrace, is_traceable
from src.utils.errors import UserInputError

FLUSH_SECONDS = 10.0  # the longest a logged step's scalars wait (TensorBoard's own writer flushes every 120 s)
MAX_PENDING_STEPS = 64  # logged steps whose statistics a callback holds to compute them together


class PendingSteps:
    """The logged steps a callback holds, as the small tensors it computed from them on the device, until
    ``flush_scalars`` finishes them together: at each epoch end, or at the end of a training batch after which
    one callback's are ``full`` (not sooner: then every callback has added that step, and its scalars share
    one event).

    Why: finishing a step (copying its figures to the host, turning sums into statistics, curves into
    summaries, building the TensorBoard values) is a few dozen small operations. Done right after backward, on a
    CPU whose caches the training step has just filled with other things, each costs several times what it costs
    in a loop over many steps, and on a GPU each copy to the host is a sync that stalls the step. Held, they cost
    one copy and one warm loop per flush.
    """

    def __init__(self) -> None:
        self.items: list = []
        self._since = 0.0

    def add(self, item) -> None:
        if not self.items:
            self._since = time.monotonic()
        self.items.append(item)

    def full(self) -> bool:
        return bool(self.items) and (len(self.items) >= MAX_PENDING_STEPS
                                     or time.monotonic() - self._since > FLUSH_SECONDS)

    def take(self) -> list:
        items, self.items = self.items, []
        return items


def pad_stack(tensors: Sequence[Tensor], dtype: torch.dtype = torch.float32) -> Tensor:
    """K tensors of one rank and different sizes (``[B_k, T_k, ...]``) -> ``[K, max B, max T, ...]`` of ``dtype``,
    zero-padded at the end of every dimension, on the first tensor's device."""
    if len(tensors) == 1:
        return tensors[0].to(dtype)[None]
    shape = [max(sizes) for sizes in zip(*(t.shape for t in tensors))]
    stacked = tensors[0].new_zeros((len(tensors), *shape), dtype=dtype)
    for k, t in enumerate(tensors):
        stacked[(k, *(slice(0, n) for n in t.shape))] = t
    return stacked




# One hook tracer per module, shared by the callbacks that log the same step (hooks attached once, one trace).
_HOOKS: "weakref.WeakKeyDictionary[pl.LightningModule, HookTrace]" = weakref.WeakKeyDictionary()


def hook_trace(pl_module: "pl.LightningModule") -> HookTrace:
    tracer = _HOOKS.get(pl_module)
    if tracer is None:
        tracer = _HOOKS[pl_module] = HookTrace(pl_module)
    return tracer


def can_trace(pl_module: "pl.LightningModule", callback: object, warned: bool) -> bool:
    """True when the module implements the monitoring contract (src/models/recurrent_trace.py) or holds an
    ``nn.RNN/LSTM/GRU`` that hooks can watch; otherwise warn (only if not ``warned`` yet) and return False, so the
    callback stays silent and training goes on."""
    if is_traceable(pl_module) or hook_trace(pl_module).modules:
        return True
    if not warned:
        rank_zero_warn(f"{type(callback).__name__}: {type(pl_module).__name__} holds no nn.RNN, nn.LSTM or nn.GRU and "
                       "does not implement the monitoring contract of src/models/recurrent_trace.py (trace_requested, "
                       "last_trace, trace); this callback logs nothing for it")
    return False


def arm_trace(pl_module: "pl.LightningModule") -> None:
    """Have the next training step keep its trace: the contract's flag, or forward hooks for this step."""
    if is_traceable(pl_module):
        pl_module.trace_requested = True
    else:
        hook_trace(pl_module).attach()


def step_trace(pl_module: "pl.LightningModule") -> Optional[RecurrentTrace]:
    """The armed step's trace, after its forward (and backward) pass; None if there is none."""
    if is_traceable(pl_module):
        return getattr(pl_module, "last_trace", None)
    tracer = _HOOKS.get(pl_module)
    return tracer.trace() if tracer is not None and tracer.attached else None


def release_trace(pl_module: "pl.LightningModule") -> None:
    """Drop the step's trace (and the input gradient it holds); remove the hooks."""
    if getattr(pl_module, "trace_requested", False) or getattr(pl_module, "last_trace", None) is not None:
        pl_module.trace_requested = False
        pl_module.last_trace = None
    tracer = _HOOKS.get(pl_module)
    if tracer is not None and tracer.attached:
        tracer.detach()
        tracer.clear()


def due(trainer: "pl.Trainer", every_n_steps: int, last_step: Optional[int]) -> bool:
    """A callback logs at optimizer steps 0, n, 2n, ... once each (several accumulated batches share a step),
    and on rank zero only."""
    step = trainer.global_step
    return trainer.is_global_zero and step % every_n_steps == 0 and step != last_step


def check_every_n_steps(every_n_steps: int) -> int:
    if every_n_steps < 1:
        raise UserInputError(f"every_n_steps={every_n_steps} must be >= 1 (e.g. 25)")
    return every_n_steps


class TraceArmingCallback(pl.Callback):
    """Base of the callbacks that read a module's ``RecurrentTrace``: on the training steps they log (``due``), it
    arms the trace (``arm_trace``) and marks itself armed; the subclass reads it (``step_trace``) after backward
    when ``disarm(trainer)`` is True, and the trace is dropped when the batch ends.

    A subclass sets ``every_n_steps``, calls ``super().__init__()``, and adds what it reads from a step to
    ``self._pending``, which is finished (``compute_pending``) when ``flush_scalars`` runs.
    """

    every_n_steps: int

    def __init__(self) -> None:
        self._armed = False
        self._traced_batch = False  # this batch was armed by this callback: its trace is released at the batch end
        self._last_step: Optional[int] = None
        self._unsupported_warned = False
        self._pending = PendingSteps()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not due(trainer, self.every_n_steps, self._last_step):
            return
        if not can_trace(pl_module, self, self._unsupported_warned):
            self._unsupported_warned = True
            return
        arm_trace(pl_module)
        self._armed = self._traced_batch = True

    def disarm(self, trainer: "pl.Trainer") -> bool:
        """Called after backward: True (once) when this step was armed, and the step is noted as logged."""
        if not self._armed:
            return False
        self._armed = False
        self._last_step = trainer.global_step
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Drop the trace (and the input gradient it holds) once every callback had its look after backward. Only on
        # the batches this callback armed: the others cost a flag test.
        if self._traced_batch:
            release_trace(pl_module)
            self._armed = self._traced_batch = False
        if self._pending.full():
            flush_scalars(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        release_trace(pl_module)
