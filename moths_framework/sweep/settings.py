"""The optim config: a normal fit config (or ``base:``) plus a ``sweep:`` section.

```yaml
base: configs/default.yaml          # optional: the fit config this one starts from
trainer: {max_epochs: 20}           # optional: fit keys on top of base
sweep:
  metric: val/species/f1_macro
  direction: maximize
  sampler: tpe                      # tpe | random | grid
  pruner: median                    # median | hyperband | none, or {name: median, <options>}
  n_trials: 50
  timeout: null                     # seconds
  space:
    model.optimizer.init_args.lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
    data.batch_size: {type: categorical, choices: [16, 32, 64]}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml

__all__ = ["ParamSpec", "SweepConfigError", "SweepSettings", "load_sweep_config"]

_SWEEP_KEYS = {"metric", "direction", "sampler", "pruner", "seed", "n_trials", "timeout", "space"}
_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


class SweepConfigError(ValueError):
    """The optim config is malformed; the message names the key and what to do."""


@dataclass(frozen=True)
class ParamSpec:
    """One searched value: a dotted LightningCLI key and its distribution.

    ``key`` is the name ``moths-fit`` takes on the command line, list indices
    included (``model.loss_weights.0``, ``data.train_transforms.0.init_args.scale.0``).
    """

    key: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value for this key (sampled, or fixed if the trial was enqueued)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """Every value of this key, for the grid sampler."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise SweepConfigError(
            f"sweep.space.{self.key}: the grid sampler needs categorical or linear int values; "
            "list them as {type: categorical, choices: [...]}"
        )


@dataclass(frozen=True)
class SweepSettings:
    """The ``sweep:`` section, validated."""

    space: dict[str, ParamSpec]
    metric: str = "val/species/f1_macro"
    direction: Literal["maximize", "minimize"] = "maximize"
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    seed: int | None = None
    n_trials: int | None = None
    timeout: float | None = None


def _param_spec(key: str, raw: Any) -> ParamSpec:
    where = f"sweep.space.{key}"
    if not isinstance(raw, dict) or raw.get("type") not in _SPEC_KEYS:
        raise SweepConfigError(
            f"{where}: give a mapping with type float, int or categorical, e.g. "
            "{type: float, low: 1.0e-4, high: 1.0e-2, log: true}"
        )
    unknown = set(raw) - _SPEC_KEYS[raw["type"]]
    if unknown:
        raise SweepConfigError(
            f"{where}: unknown option(s) {sorted(unknown)} for type {raw['type']}; "
            f"allowed: {sorted(_SPEC_KEYS[raw['type']])}"
        )
    if raw["type"] == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SweepConfigError(f"{where}: categorical needs a non-empty list: choices: [...]")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise SweepConfigError(
                f"{where}: choices must be numbers, strings, booleans or null, got {bad[0]!r}; "
                "search a list item by its index instead (e.g. scale.0)"
            )
        return ParamSpec(key, "categorical", choices=tuple(choices))
    low, high = raw.get("low"), raw.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise SweepConfigError(f"{where}: {raw['type']} needs numbers low and high")
    if low > high or (raw.get("log") and low <= 0):
        raise SweepConfigError(f"{where}: needs low <= high (and low > 0 with log: true)")
    return ParamSpec(key, raw["type"], low, high, bool(raw.get("log", False)), raw.get("step"), ())


def _pruner(raw: Any) -> dict[str, Any]:
    spec = {"name": raw} if isinstance(raw, str) or raw is None else dict(raw)
    spec["name"] = str(spec.get("name") or "none").lower()
    if spec["name"] not in ("median", "hyperband", "none"):
        raise SweepConfigError(
            f"sweep.pruner: {spec['name']!r} is not a pruner; use median, hyperband or none"
        )
    return spec


def _settings(raw: Any) -> SweepSettings:
    if not isinstance(raw, dict):
        raise SweepConfigError("the optim config needs a sweep: section (see configs/optim.yaml)")
    unknown = set(raw) - _SWEEP_KEYS
    if unknown:
        raise SweepConfigError(
            f"sweep: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SWEEP_KEYS)}"
        )
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise SweepConfigError("sweep.space: give at least one key to search")
    metric = str(raw.get("metric") or SweepSettings.metric)
    direction = raw.get("direction") or ("minimize" if metric.endswith("loss") else "maximize")
    if direction not in ("maximize", "minimize"):
        raise SweepConfigError(f"sweep.direction: {direction!r}; use maximize or minimize")
    sampler = str(raw.get("sampler") or "tpe").lower()
    if sampler not in ("tpe", "random", "grid"):
        raise SweepConfigError(f"sweep.sampler: {sampler!r}; use tpe, random or grid")
    return SweepSettings(
        space={key: _param_spec(key, spec) for key, spec in space.items()},
        metric=metric,
        direction=direction,
        sampler=sampler,
        pruner=_pruner(raw.get("pruner", "median")),
        seed=raw.get("seed"),
        n_trials=raw.get("n_trials"),
        timeout=raw.get("timeout"),
    )


def _base_path(base: str, config_path: Path) -> Path:
    """``base:`` relative to the current directory (like the configs' other paths),
    else to the optim config's own directory."""
    for candidate in (Path(base), config_path.parent / base):
        if candidate.is_file():
            return candidate
    raise SweepConfigError(
        f"base: {base} not found (looked relative to the current directory and to {config_path})"
    )


def load_sweep_config(path: str | Path) -> tuple[SweepSettings, Path | None, dict[str, Any]]:
    """Read an optim config.

    Returns:
        the sweep settings, the base fit config file (or None), and the fit keys
        given in the optim config itself (applied on top of the base).

    Raises:
        SweepConfigError: a missing file, bad YAML, or a malformed ``sweep:`` section.
    """
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"{path}: no such optim config")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{path}: expected a mapping with a sweep: section")
    settings = _settings(raw.pop("sweep", None))
    base = raw.pop("base", None)
    return settings, _base_path(str(base), path) if base else None, raw
