"""Which fast implementation replaces which reference module, chosen once when a model is built.

Every speed-up of this package registers a :class:`FastImpl`: the model component it
replaces (``encoder``, ``decoder``, ``criterion``: attributes of
:class:`pipeline.model.seq2seq.Seq2Seq`; or ``search``, the searches' choice of the best next
tokens), the devices and parameter dtypes it supports, a ``covers`` check of the reference
module (the exact built-in classes it was written for: a user's subclass or attention is never
covered), and ``build``, which makes the fast module from the reference one.  A fast module
*adopts* the reference's parameters (:func:`adopt`): same tensors, same state-dict keys, so a
checkpoint trained one way loads the other way.

``model.impl`` picks, per component (:func:`accelerate`):

* ``reference``: nothing is replaced; the model of pipeline/model/ trains and decodes as written.
* ``auto``: the first registered implementation that covers the component on this device, else
  the reference; one line says which (:meth:`Implementations.summary`).
* ``fast``: as ``auto``, but fail with one line when the decoder is not covered.  The decoder is
  the module whose reference is a Python loop over steps trained through autograd; the other
  references are torch's own fused ops (``nn.GRU``, ``F.cross_entropy``), so where no fast twin
  covers them on a device (on CUDA the encoder runs cuDNN) ``fast`` keeps them.

``model.fast_exclude=[name, ...]`` leaves named implementations out (benchmarks switch one lever
at a time with it).  Tests prove each registered implementation equal to the reference
(tests/unit/fast/test_equivalence.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.model.config import Impl
from pipeline.model.seq2seq import Seq2Seq

COMPONENTS = ("encoder", "decoder", "criterion", "search")


@dataclass(frozen=True)
class FastImpl:
    """A registered speed-up of the reference class ``replaces`` (exactly that class: a user's
    subclass may compute something else).  ``covers(module)`` returns None when it covers that
    module's configuration (its attention, its RNN type...), else the reason it does not."""

    name: str
    component: str
    replaces: type
    summary: str
    devices: tuple[str, ...]
    covers: Callable[[nn.Module], str | None]
    build: Callable[[nn.Module, torch.device], Any]
    dtypes: tuple[torch.dtype, ...] = (torch.float32,)  # of the parameters; fp32 or bf16 autocast compute


REGISTRY: list[FastImpl] = []


def register(impl: FastImpl) -> FastImpl:
    """Add ``impl`` to the registry (each name once; the first registered for a component is tried first)."""
    if impl.component not in COMPONENTS:
        raise ValueError(f"unknown component {impl.component!r}; one of {COMPONENTS}")
    if any(r.name == impl.name for r in REGISTRY):
        raise ValueError(f"a fast implementation named {impl.name!r} is registered already")
    REGISTRY.append(impl)
    return impl


def adopt(cls: type[nn.Module], reference: nn.Module) -> nn.Module:
    """An instance of ``cls`` (a subclass of ``reference``'s class) holding ``reference``'s parameters,
    buffers, submodules and settings: the same tensors, so state dicts and optimizers see no change."""
    if not isinstance(reference, cls.__mro__[1]):
        raise TypeError(f"{cls.__name__} adopts a {cls.__mro__[1].__name__}, not a {type(reference).__name__}")
    module = cls.__new__(cls)
    module.__dict__.update({k: dict(v) if isinstance(v, dict) else v for k, v in reference.__dict__.items()})
    return module


@dataclass
class Selection:
    """What one component runs: a fast implementation, or the reference (and why)."""

    component: str
    chosen: FastImpl | None
    reason: str = ""

    def describe(self) -> str:
        if self.chosen is not None:
            return f"{self.component} {self.chosen.name}"
        return f"{self.component} reference ({self.reason})" if self.reason else f"{self.component} reference"


@dataclass
class Implementations:
    """The model with its chosen modules, and the searches' top-k function (None: the reference's)."""

    model: Seq2Seq
    impl: Impl
    selections: list[Selection] = field(default_factory=list)
    top_log_probs: Callable | None = None

    def names(self) -> dict[str, str]:
        """Component -> the name of its fast implementation, or ``reference``."""
        return {s.component: s.chosen.name if s.chosen else "reference" for s in self.selections}

    def summary(self) -> str:
        """One line: which implementation each component runs."""
        return f"model.impl={self.impl.value}: " + ", ".join(s.describe() for s in self.selections)


def _component(model: Seq2Seq, component: str) -> nn.Module:
    return model if component == "search" else getattr(model, component)


def _why_not(impl: FastImpl, module: nn.Module, device: torch.device) -> str | None:
    if device.type not in impl.devices:
        return f"{impl.name}: {device.type} (it runs on {'/'.join(impl.devices)})"
    dtypes = {p.dtype for p in module.parameters()}
    if not dtypes <= set(impl.dtypes):
        return f"{impl.name}: parameters in {sorted(map(str, dtypes))}"
    reason = impl.covers(module)
    return None if reason is None else f"{impl.name}: {reason}"


def select(model: Seq2Seq, impl: Impl, device: torch.device, exclude: Sequence[str] = ()) -> list[Selection]:
    """Per component, the implementation ``impl`` picks on ``device`` (nothing is built or changed)."""
    impl = Impl(impl)
    unknown = sorted(set(exclude) - {r.name for r in REGISTRY})
    if unknown:
        known = ", ".join(r.name for r in REGISTRY)
        raise UserError(f"model.fast_exclude names {unknown}, which are not registered; registered: {known}")
    selections = []
    for component in COMPONENTS:
        if impl == Impl.reference:
            selections.append(Selection(component, None))
            continue
        module = _component(model, component)
        reasons = []
        chosen = None
        candidates = [r for r in REGISTRY if r.component == component and type(module) is r.replaces]
        if not candidates:
            cls = type(module)
            reasons.append(f"none registered for {cls.__module__}.{cls.__qualname__}")
        for candidate in candidates:
            reason = (
                "excluded by model.fast_exclude" if candidate.name in exclude else _why_not(candidate, module, device)
            )
            if reason is None:
                chosen = candidate
                break
            reasons.append(reason)
        selections.append(Selection(component, chosen, "; ".join(reasons)))
    if impl == Impl.fast:
        decoder = next(s for s in selections if s.component == "decoder")
        if decoder.chosen is None:
            raise UserError(
                f"model.impl=fast: no fast implementation covers this decoder ({decoder.reason}); "
                "use model.impl=auto (fast where covered) or model.impl=reference"
            )
    return selections


def accelerate(model: Seq2Seq, impl: Impl, device: torch.device, exclude: Sequence[str] = ()) -> Implementations:
    """Replace ``model``'s components by the fast implementations ``impl`` picks (see the module docstring).

    Call it once, after the parameters are on ``device`` and before an optimizer or DDP wraps them;
    the parameters stay the same tensors.
    """
    selections = select(model, impl, device, exclude)
    top_log_probs = None
    for s in selections:
        if s.chosen is None:
            continue
        reference = _component(model, s.component)
        built = s.chosen.build(reference, device)
        if isinstance(built, nn.Module):
            built.train(reference.training)  # submodules it made (its dropout) start in the reference's mode
        if built is None:  # it needed the C++ kernels, which could not be built (warned once)
            s.chosen, s.reason = None, f"{s.chosen.name}: the C++ kernels could not be built"
        elif s.component == "search":
            top_log_probs = built
        else:
            setattr(model, s.component, built)
    return Implementations(model, Impl(impl), selections, top_log_probs)
