"""Temperature scaling: one softmax temperature per rank, fitted by NLL on validation logits."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["TEMPERATURE_RANGE", "fit_temperature", "negative_log_likelihood"]

TEMPERATURE_RANGE = (0.05, 20.0)  # separable data would push T to 0: keep it sane


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / temperature)`` at the targets (NaN without rows)."""
    if len(targets) == 0:
        return float("nan")
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return float(F.cross_entropy(x, torch.as_tensor(targets, dtype=torch.long)))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, max_iter: int = 200) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)``.

    LBFGS on ``log T`` (so ``T`` stays positive), in float64; the result is
    clipped to :data:`TEMPERATURE_RANGE`. With no rows it is 1.0.
    """
    if len(targets) == 0:
        return 1.0
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    low, high = (float(np.log(v)) for v in TEMPERATURE_RANGE)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x / log_t.clamp(low, high).exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.exp(np.clip(log_t.item(), low, high)))
