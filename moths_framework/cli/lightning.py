"""The LightningCLI behind moths-fit, moths-validate, moths-test and moths-predict.

Each command parses a YAML config (``--config``) plus dotted overrides, builds
the data module, the model and the trainer, and runs one Lightning entry
point. Everything a run writes goes to its run directory
(``--trainer.default_root_dir``, default ``runs/<timestamp>``).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from moths_framework import plugins
from moths_framework.cli.list_overrides import expand_index_overrides
from moths_framework.data.datamodule import MothsDataModule
from moths_framework.data.sources import DataSourceError
from moths_framework.finetuning import UnfreezePolicy
from moths_framework.hierarchy import HierarchyError
from moths_framework.model.backbone import BackboneError
from moths_framework.model.checkpoint import CheckpointError
from moths_framework.model.lightning import MothsClassifier

__all__ = ["MothsCLI", "run_command"]

log = logging.getLogger(__name__)

# Errors a user causes: printed as one line, exit code 2, no traceback.
USER_ERRORS = (
    BackboneError,
    CheckpointError,
    DataSourceError,
    HierarchyError,
    plugins.PluginError,
    FileNotFoundError,
)


# Config keys that take a plugin, for the hint on a bad class_path.
_PLUGIN_KEYS = {
    "model.backbone": "backbones",
    "data.source": "data_sources",
    "data.hierarchy": "label_hierarchies",
    "unfreeze": "unfreeze_policies",
}


def _config_error(command: str, err: Exception) -> str:
    """One readable message for a config jsonargparse rejected."""
    noise = ("Expected a path but", "Does not validate against any", "Subtypes:", "Errors:")
    lines = [line.strip(" -") for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    message = " ".join(lines[:3])
    for key, group in _PLUGIN_KEYS.items():
        if f'"{key}"' in lines[0]:
            names = [info.value.rpartition(":")[2] for info in plugins.available(group).values()]
            message += f"\n  installed {group.replace('_', ' ')}: {', '.join(sorted(names))}"
    return f"{message}\n  (moths-{command} --help lists every option)"


def _hierarchy_of(data: MothsDataModule) -> Any:
    return data.hierarchy


class RunConfigSaver(SaveConfigCallback):
    """Writes the full resolved config to ``<run dir>/config.yaml``."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        if trainer.is_global_zero:
            root = Path(trainer.default_root_dir)
            root.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, root / "config.yaml", skip_none=False, overwrite=True, multifile=False
            )


class MothsCLI(LightningCLI):
    """LightningCLI with the moths wiring: plugins, hierarchy link, unfreeze policy, run dir."""

    def __init__(self, command: str, args: list[str] | None) -> None:
        self.command = command
        super().__init__(
            MothsClassifier,
            MothsDataModule,
            save_config_callback=RunConfigSaver if command == "fit" else None,
            seed_everything_default=42,
            run=False,
            args=args,
            auto_configure_optimizers=False,
            parser_kwargs={
                "prog": f"moths-{command}",
                "default_env": False,
                "exit_on_error": False,
            },
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(UnfreezePolicy, "unfreeze", subclass_mode=True)
        parser.set_defaults({"unfreeze": {"class_path": "FrozenBackbone"}})
        parser.link_arguments("data", "model.hierarchy", _hierarchy_of, apply_on="instantiate")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from (fit) or to evaluate",
        )
        if self.command == "fit":
            parser.add_argument(
                "--tune",
                type=bool,
                default=False,
                help="run the learning-rate finder and batch-size scaling first",
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        given = list(sys.argv[1:] if args is None else args)

        def resolve(parse_args: list[str], key: str) -> list[Any]:
            items = parser.parse_args(parse_args).get(key) or []
            return [i.as_dict() if isinstance(i, Namespace) else i for i in items]

        expanded = expand_index_overrides(given, resolve)
        super().parse_arguments(parser, args if expanded == given else expanded)

    def before_instantiate_classes(self) -> None:
        trainer = self.config.trainer
        if not trainer.get("default_root_dir"):
            ckpt = self.config.get("ckpt_path")
            if self.command != "fit" and ckpt:
                trainer.default_root_dir = str(Path(ckpt).parent)
            else:
                trainer.default_root_dir = f"runs/{time.strftime('%Y%m%d-%H%M%S')}"
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                # every logger writes inside the run directory
                init_args.save_dir = trainer.default_root_dir

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        if self.command == "fit":
            # first in the list, so it is trainer.checkpoint_callback
            callbacks = [self._best_and_last(config["default_root_dir"]), *callbacks]
        return super()._instantiate_trainer(config, callbacks)

    @staticmethod
    def _best_and_last(run_dir: str) -> ModelCheckpoint:
        """``best.ckpt`` (lowest val/loss) and ``last.ckpt`` in the run directory."""
        return ModelCheckpoint(
            dirpath=run_dir,
            filename="best",
            monitor="val/loss",
            mode="min",
            save_last=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )


def _tune(cli: MothsCLI) -> None:
    from lightning.pytorch.tuner import Tuner

    tuner = Tuner(cli.trainer)
    size = tuner.scale_batch_size(cli.model, datamodule=cli.datamodule, mode="power")
    finder = tuner.lr_find(cli.model, datamodule=cli.datamodule, attr_name="lr")
    print(f"tune: batch size {size}, learning rate {finder.suggestion() if finder else None}")


def _report_fit(cli: MothsCLI) -> None:
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    for name in sorted(metrics):
        print(f"  {name:<32}{metrics[name]:.4f}")
    best = cli.trainer.checkpoint_callback
    path = best.best_model_path if isinstance(best, ModelCheckpoint) else ""
    print(f"best checkpoint: {path}")


def run_command(command: str, args: list[str] | None = None) -> int:
    """Parse, build and run one Lightning entry point; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The run directory holds config.yaml before the first checkpoint; that is expected.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Lightning 2.6 on torch 2.14 warns about its own use of a torch internal.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    try:
        plugins.load_all()
        cli = MothsCLI(command, args)
        ckpt = cli.config.get("ckpt_path")
        if command == "fit":
            if cli.config.get("tune"):
                _tune(cli)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
            _report_fit(cli)
        else:
            getattr(cli.trainer, command)(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    except USER_ERRORS as err:
        print(f"moths-{command}: error: {err}", file=sys.stderr)
        return 2
    except ArgumentError as err:
        print(f"moths-{command}: error: {_config_error(command, err)}", file=sys.stderr)
        return 2
    return 0
