"""Keras 3's optimizers as torch optimizers (the schedules are in `fashion_lab.keras.schedules`).

The names are Keras' and so are the update rules, which differ from torch's classes of the same name:
- Adam adds ε to the *uncorrected* √v (torch: to the bias-corrected √v̂);
- RMSprop puts ε *inside* the square root (torch: outside);
- SGD's momentum holds lr-scaled steps (torch's holds gradients; the two part once the learning rate changes);
- `weight_decay` is decoupled in every optimizer (`w -= w·wd·lr` before the update), AdamW's default is 0.004.
Every optimizer takes Keras' `clipnorm`, `clipvalue`, `global_clipnorm` and `gradient_accumulation_steps`.
tests/keras/test_optim.py checks them against real Keras (its fixture: scripts/make_keras_fixture.py).

>>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
>>> opt = SGD([w], lr=0.1, clipvalue=0.5)
>>> w.grad = torch.tensor([3.0, -0.2])
>>> _ = opt.step()
>>> w.detach().tolist()  # the gradient 3.0 was clipped to 0.5
[0.949999988079071, -1.9800000190734863]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as _adam

from fashion_lab.errors import ConfigError, Rule, check, check_rules

# Every optimizer argument's allowed values, checked here only: by each class below, and by
# `fashion_lab.keras.optim.check_optimizer` before a model has weights to optimize
RANGES: dict[str, Rule] = {
    "lr": (lambda v: v > 0, "a positive number"),
    "epsilon": (lambda v: v > 0, "a positive number"),
    "beta_1": (lambda v: 0 <= v < 1, "0 <= {name} < 1"),
    "beta_2": (lambda v: 0 <= v < 1, "0 <= {name} < 1"),
    "rho": (lambda v: 0 <= v < 1, "0 <= {name} < 1"),
    "momentum": (lambda v: 0 <= v < 1, "0 <= {name} < 1"),
    "weight_decay": (lambda v: v is None or v >= 0, "{name} >= 0"),
    "clipnorm": (lambda v: v is None or v > 0, "a positive number, or None (off)"),
    "clipvalue": (lambda v: v is None or v > 0, "a positive number, or None (off)"),
    "global_clipnorm": (lambda v: v is None or v > 0, "a positive number, or None (off)"),
    "gradient_accumulation_steps": (
        lambda v: v is None or (isinstance(v, int) and v >= 1),
        "an integer >= 1, or None (off)",
    ),
}


class KerasOptimizer(torch.optim.Optimizer):
    """Keras' `BaseOptimizer.apply`: accumulate → clip → decoupled weight decay → the update rule → count.

    A subclass implements `_update(group, params, grads, lr, t)`, with t = Keras' `iterations + 1` (updates, not
    accumulation calls). The counts live in the param group, so `state_dict()` carries them for an exact resume.
    One param group is Keras' variable list: `global_clipnorm` takes the norm over the group.
    """

    def __init__(
        self,
        params: Iterable,
        defaults: dict[str, Any],
        weight_decay: float | None,
        clipnorm: float | None,
        clipvalue: float | None,
        global_clipnorm: float | None,
        gradient_accumulation_steps: int | None,
    ) -> None:
        check_clipping(clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps)
        check_rules(RANGES, weight_decay=weight_decay)
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.accumulation = gradient_accumulation_steps or 1
        super().__init__(params, {**defaults, "weight_decay": weight_decay or 0.0, "calls": 0})

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            calls = group["calls"]  # Keras' `_iterations`: every call, accumulating or not
            group["calls"] = calls + 1
            if self.accumulation > 1:
                # Keras: add to the accumulators; every N-th call update with their mean and reset them
                (sums,) = self._state(params, "accumulator")
                if (calls + 1) % self.accumulation:
                    torch._foreach_add_(sums, grads)
                    continue
                grads = torch._foreach_div(torch._foreach_add(sums, grads), self.accumulation)
                torch._foreach_zero_(sums)
            grads = self._clip(grads)
            lr = float(group["lr"])
            if group["weight_decay"]:  # Keras: w - w·wd·lr, with the scheduled lr, before the update
                torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
            self._update(group, params, grads, lr, calls // self.accumulation + 1)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if any("calls" not in group for group in state_dict["param_groups"]):
            raise ConfigError(
                "this optimizer state was saved by another optimizer (e.g. torch's Adam, before fashion_lab's Keras "
                "optimizers), so it cannot continue exactly. Fix: start a new run, or load only the weights."
            )
        super().load_state_dict(state_dict)

    def _clip(self, grads: list[Tensor]) -> list[Tensor]:
        """Keras' `_clip_gradients`: g·c / max(‖g‖, c) per variable, or over all of them, or clip each value."""
        if self.clipnorm:
            norms = torch._foreach_norm(grads)
            return torch._foreach_mul(grads, [self.clipnorm / n.clamp(min=self.clipnorm) for n in norms])
        if self.global_clipnorm:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            return torch._foreach_mul(grads, self.global_clipnorm / norm.clamp(min=self.global_clipnorm))
        if self.clipvalue:
            return [g.clamp(-self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _state(self, params: list[Tensor], *names: str) -> list[list[Tensor]]:
        """Each named zero-initialised slot (Keras' optimizer variables), one list per name."""
        for p in params:
            state = self.state[p]
            for name in names:
                if name not in state:
                    state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return [[self.state[p][name] for p in params] for name in names]

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor], lr: float, t: int) -> None:
        raise NotImplementedError


class Adam(KerasOptimizer):
    """Keras Adam: w -= lr·√(1-β2^t)/(1-β1^t) · m / (√v + ε). Defaults as Keras (lr 1e-3, ε 1e-7)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
    ) -> None:
        check_rules(RANGES, lr=lr, epsilon=epsilon, beta_1=beta_1, beta_2=beta_2)
        defaults = {"lr": lr, "betas": (beta_1, beta_2), "eps": epsilon}
        args = (weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps)
        super().__init__(params, defaults, *args)

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor], lr: float, t: int) -> None:
        beta1, beta2 = group["betas"]
        m, v = self._state(params, "exp_avg", "exp_avg_sq")
        for p in params:
            if "step" not in self.state[p]:
                self.state[p]["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        steps = [self.state[p]["step"] for p in params]
        # torch's kernel computes lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε'); with ε' = ε/√(1-β2^t) that is exactly
        # Keras' lr·√(1-β2^t)/(1-β1^t) · m / (√v + ε). So torch's fused Adam (one kernel per step) stays usable.
        eps = group["eps"] / math.sqrt(1.0 - beta2**t)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
        _adam(
            params, grads, m, v, [], steps, fused=fused or None, amsgrad=False,
            beta1=beta1, beta2=beta2, lr=lr, weight_decay=0.0, eps=eps, maximize=False,
        )  # fmt: skip


class AdamW(Adam):
    """Keras AdamW: Adam with decoupled weight decay, Keras' default 0.004 (torch's AdamW: 0.01)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float | None = 0.004, **kwargs: Any) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay, **kwargs)


class RMSprop(KerasOptimizer):
    """Keras RMSprop: v = ρv + (1-ρ)g²; w -= lr·g/√(v + ε), ε inside the root (torch adds it outside)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
    ) -> None:
        check_rules(RANGES, lr=lr, epsilon=epsilon, rho=rho, momentum=momentum)
        defaults = {"lr": lr, "rho": rho, "momentum": momentum, "eps": epsilon, "centered": centered}
        args = (weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps)
        super().__init__(params, defaults, *args)

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor], lr: float, t: int) -> None:
        rho, momentum = group["rho"], group["momentum"]
        (v,) = self._state(params, "velocity")
        torch._foreach_mul_(v, rho)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - rho)
        if group["centered"]:  # Keras: denominator = v - ḡ² + ε, ḡ a moving average of g
            (g_avg,) = self._state(params, "average_gradient")
            torch._foreach_lerp_(g_avg, grads, 1.0 - rho)
            denominator = torch._foreach_sub(v, torch._foreach_mul(g_avg, g_avg))
        else:
            denominator = torch._foreach_add(v, 0.0)
        torch._foreach_add_(denominator, group["eps"])
        torch._foreach_sqrt_(denominator)
        increment = torch._foreach_div(torch._foreach_mul(grads, lr), denominator)
        if momentum:  # Keras: m = momentum·m + increment; w -= m
            (m,) = self._state(params, "momentum")
            torch._foreach_mul_(m, momentum)
            torch._foreach_add_(m, increment)
            increment = m
        torch._foreach_sub_(params, increment)


class SGD(KerasOptimizer):
    """Keras SGD: m = momentum·m - lr·g; w += m (Nesterov: w += momentum·m - lr·g). Keras' default lr 0.01."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
    ) -> None:
        check_rules(RANGES, lr=lr, momentum=momentum)
        check_nesterov(nesterov, momentum)
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov}
        args = (weight_decay, clipnorm, clipvalue, global_clipnorm, gradient_accumulation_steps)
        super().__init__(params, defaults, *args)

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor], lr: float, t: int) -> None:
        momentum = group["momentum"]
        if not momentum:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        (m,) = self._state(params, "momentum")
        torch._foreach_mul_(m, momentum)
        torch._foreach_add_(m, grads, alpha=-lr)
        if group["nesterov"]:
            torch._foreach_add_(params, torch._foreach_add(torch._foreach_mul(m, momentum), grads, alpha=-lr))
        else:
            torch._foreach_add_(params, m)


def check_nesterov(nesterov: bool, momentum: float) -> None:
    """Keras' SGD rule: Nesterov momentum needs a momentum."""
    check([("nesterov", nesterov, not nesterov or momentum > 0, "nesterov=True only with momentum > 0")])


def check_clipping(
    clipnorm: float | None,
    clipvalue: float | None,
    global_clipnorm: float | None,
    gradient_accumulation_steps: int | None,
) -> None:
    """Keras' rules: positive values, and at most one of the three clipping options."""
    check_rules(
        RANGES,
        clipnorm=clipnorm,
        clipvalue=clipvalue,
        global_clipnorm=global_clipnorm,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    given = [name for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm",
             global_clipnorm)) if value is not None]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} are both set; Keras allows one clipping option at a time.")


OPTIMIZERS: dict[str, type[KerasOptimizer]] = {"adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "sgd": SGD}
