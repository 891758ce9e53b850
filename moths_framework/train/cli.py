"""The LightningCLI behind moths-fit, moths-validate, moths-test, moths-predict and
moths-calibrate, and behind every moths-sweep trial.

Each command parses a YAML config (``--config``) plus dotted overrides, builds
the data module, the model and the trainer, and runs one Lightning entry
point. Everything a run writes goes to its run directory
(``--trainer.default_root_dir``, default ``runs/<timestamp>``, made new for each
run; ``moths-fit`` writes only into a new or empty folder or one it made).

Every command accepts the ``config.yaml`` a run saved. Given ``--ckpt_path``
(evaluation, prediction, resume), the model is built on the checkpoint's own
label hierarchy, data species it has no class for count as ``Other``, and the
backbone loads no weights (no ``pretrained`` download, no ``pretrained_file``):
the checkpoint has them.

A user's mistake raises here; :mod:`moths_framework.cli.lightning` turns it into
one line and an exit code.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from moths_framework.data.datamodule import MothsDataModule
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.detector_metadata import DETECTION
from moths_framework.model.backbone import WEIGHT_SOURCES
from moths_framework.model.checkpoint import (
    CHECKPOINT_KEY,
    CheckpointError,
    checkpoint_hierarchy,
    read_checkpoint,
)
from moths_framework.model.lightning import MothsClassifier
from moths_framework.model.rebuild import check_model_fits
from moths_framework.model.trust import TRUST_FLAG, TRUST_HELP, lightning_load_options
from moths_framework.output_folders import claim_run_folder, create_run_folder
from moths_framework.train.lr_batch_finder import tune
from moths_framework.train.overrides import expand_index_overrides
from moths_framework.train.unfreeze import UnfreezePolicy
from moths_framework.zoo.transport import INSECURE_FLAG, INSECURE_HELP

__all__ = ["RUN_DIR_ENV", "MothsCLI", "no_weight_sources", "run_entry_point", "run_fit"]

log = logging.getLogger(__name__)


# Lightning starts DDP ranks > 0 as copies of this command; they take the run folder
# their parent made from here rather than making one of their own.
RUN_DIR_ENV = "MOTHS_RUN_DIR"


def _add_predict_arguments(parser: LightningArgumentParser) -> None:
    parser.add_argument(
        "--split",
        type=Literal["train", "val", "test", "all"] | None,
        default=None,
        help="which images to predict; default: test for the source the model was "
        "trained on, all for any other source",
    )
    parser.add_argument(
        "--output",
        type=str | None,
        default=None,
        help="the prediction folder; default: RUN/predictions/<split>/ beside the checkpoint. "
        "An existing folder is replaced only if moths-predict wrote it and nothing else is in it",
    )
    parser.add_argument(
        "--images-by-prediction",
        type=bool,
        default=False,
        help="also link the images under <output>/images/<predicted species>/",
    )


@contextmanager
def no_weight_sources(init_args: Namespace | None, sources: dict[str, Any]) -> Iterator[None]:
    """Within: each of ``sources`` that ``init_args`` names (``pretrained``,
    ``pretrained_file``, ...) set to its value that loads nothing, for a checkpoint
    supplies the weights; after: back to what the user wrote, which config.yaml keeps."""
    given = {k: init_args[k] for k in sources if init_args is not None and k in init_args}
    for key in given:
        init_args[key] = sources[key]
    try:
        yield
    finally:
        for key, value in given.items():
            init_args[key] = value


def _epilog(command: str) -> str:
    """The end of ``--help``: the command-line-only flags, and whose options it lists."""
    epilog = f"{TRUST_FLAG}: {TRUST_HELP}. {INSECURE_FLAG}: {INSECURE_HELP}."
    if command == "calibrate":  # for classifiers only
        return epilog
    # train/task.py picks the CLI from the config before parsing, --help included.
    return (
        f"{epilog} These are the options of the model the config names: a classifier's, or "
        "a detector's when it names model.detector and data.instances (e.g. "
        f"moths-{command} --config configs/detector-dev.yaml --help)."
    )


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
    """LightningCLI with the moths wiring: plugins, hierarchy link, unfreeze policy, run dir.

    It builds a classifier; :class:`~moths_framework.train.detector_cli.DetectorCLI`
    is the same CLI for a detector (:func:`moths_framework.train.cli_for_task.build_cli` picks).
    """

    MODEL: type = MothsClassifier
    DATA: type = MothsDataModule
    #: What ``best.ckpt`` is best by: a logged metric and whether lower or higher is better.
    BEST_BY: tuple[str, Literal["min", "max"]] = ("val/loss", "min")

    def __init__(self, command: str, args: list[str] | None) -> None:
        self.command = command
        self.checkpoint: dict[str, Any] | None = None
        super().__init__(
            self.MODEL,
            self.DATA,
            save_config_callback=RunConfigSaver if command == "fit" else None,
            seed_everything_default=42,
            run=False,
            args=args,
            auto_configure_optimizers=False,
            parser_kwargs={
                "prog": f"moths-{command}",
                "epilog": _epilog(command),
                "default_env": False,
                "exit_on_error": False,
            },
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(UnfreezePolicy, "unfreeze", subclass_mode=True)
        parser.set_defaults({"unfreeze": {"class_path": "FrozenBackbone"}})
        parser.link_arguments(
            "data", "model.hierarchy", self._model_hierarchy, apply_on="instantiate"
        )
        self.add_run_arguments(parser)

    def add_run_arguments(self, parser: LightningArgumentParser) -> None:
        """The options of a run whatever its model: ``--ckpt_path``, ``--tune``, and
        moths-predict's ``--split``, ``--output`` and ``--images-by-prediction``."""
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="checkpoint to resume from (fit) or to evaluate",
        )
        # Every command accepts what moths-fit saves in config.yaml.
        parser.add_argument(
            "--tune",
            type=bool,
            default=False,
            help="moths-fit: run batch-size scaling and the learning-rate finder first; "
            "the other commands ignore it",
        )
        if self.command == "predict":
            _add_predict_arguments(parser)

    def _model_hierarchy(self, data: MothsDataModule) -> LabelHierarchy:
        """The model's classes: the checkpoint's when there is one, else built from the data."""
        if self.checkpoint is not None:
            data.use_hierarchy(checkpoint_hierarchy(self.checkpoint))
        return data.hierarchy

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        given = list(sys.argv[1:] if args is None else args)

        def resolve(parse_args: list[str], key: str) -> list[Any]:
            items = parser.parse_args(parse_args).get(key) or []
            return [i.as_dict() if isinstance(i, Namespace) else i for i in items]

        expanded = expand_index_overrides(given, resolve)
        super().parse_arguments(parser, args if expanded == given else expanded)

    def before_instantiate_classes(self) -> None:
        ckpt = self.config.get("ckpt_path")
        if ckpt:
            self.checkpoint = read_checkpoint(ckpt)
            if self.checkpoint[CHECKPOINT_KEY].get("task") == DETECTION:
                raise CheckpointError(
                    f"{ckpt} is a detector's checkpoint and the config a classifier's: "
                    "give the config of its run (RUN/config.yaml names model.detector)"
                )
        elif self.command == "predict":
            raise CheckpointError("moths-predict needs a trained model: --ckpt_path RUN/best.ckpt")
        self._set_run_dir()

    def instantiate_classes(self) -> None:
        if self.checkpoint is None:
            super().instantiate_classes()
            return
        # The checkpoint supplies the weights: the backbone must not download or read any.
        with no_weight_sources(self.config.model.backbone.get("init_args"), WEIGHT_SOURCES):
            super().instantiate_classes()
        check_model_fits(self.model, self.checkpoint, self.config.ckpt_path)

    def _set_run_dir(self) -> None:
        trainer = self.config.trainer
        if not trainer.get("default_root_dir"):
            ckpt = self.config.get("ckpt_path")
            if self.command != "fit" and ckpt:
                trainer.default_root_dir = str(Path(ckpt).parent)
            else:
                trainer.default_root_dir = _new_run_dir(f"moths-{self.command}")
        elif self.command == "fit" and not _is_later_rank():
            root = trainer.default_root_dir
            claim_run_folder(root, "moths-fit", "--trainer.default_root_dir")
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = getattr(logger, "init_args", None)
            if init_args is not None and "save_dir" in init_args:
                # every logger writes inside the run directory
                init_args.save_dir = trainer.default_root_dir

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if self.command == "fit" and "callbacks" not in kwargs:
            trainer = self.config_init.get("trainer") or {}
            given = trainer.get("callbacks") or []
            given = given if isinstance(given, list) else [given]
            # first in the list, so it is trainer.checkpoint_callback
            kwargs["callbacks"] = [self._best_and_last(trainer["default_root_dir"]), *given]
        return super().instantiate_trainer(**kwargs)

    def _best_and_last(self, run_dir: str) -> ModelCheckpoint:
        """``best.ckpt`` (best by :attr:`BEST_BY`) and ``last.ckpt`` in the run directory."""
        monitor, mode = self.BEST_BY
        return ModelCheckpoint(
            dirpath=run_dir,
            filename="best",
            monitor=monitor,
            mode=mode,
            save_last=True,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )


def _is_later_rank() -> bool:
    """Whether this process is a DDP rank other than the first (Lightning's own copies of
    the command and torchrun set these); only the first makes and claims the run folder."""
    ranks = ("LOCAL_RANK", "RANK", "NODE_RANK")
    return any(os.environ.get(name, "0") not in ("", "0") for name in ranks)


def _new_run_dir(command: str) -> str:
    """``runs/<time>``, made new for this run: ``-2``, ``-3`` ... when another run
    started in the same second, so two runs never share a folder."""
    if _is_later_rank():
        return os.environ.get(RUN_DIR_ENV) or f"runs/{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = str(create_run_folder(Path("runs") / time.strftime("%Y%m%d-%H%M%S"), command))
    os.environ[RUN_DIR_ENV] = run_dir  # inherited by the DDP ranks Lightning starts
    return run_dir


def _tune(cli: MothsCLI) -> None:
    """Tune, then record the result in the config that the run saves, so that running
    the saved config.yaml again reproduces the run without tuning."""
    result = tune(cli.trainer, cli.model, cli.datamodule)
    cli.config.data.batch_size = result.batch_size
    if result.lr is not None:
        cli.config.model.lr = result.lr
    cli.config.tune = False
    print(
        f"tune: batch size {result.batch_size} (searched with {result.fraction:.0%} of the "
        f"backbone trainable, the most the unfreeze policy reaches), learning rate {result.lr}"
    )


def run_fit(cli: MothsCLI) -> None:
    """``moths-fit``: optionally tune, train, print the validation metrics and best checkpoint."""
    if cli.config.get("tune"):
        _tune(cli)
    ckpt_path = cli.config.get("ckpt_path")
    load = lightning_load_options(cli.trainer.fit)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, **load)
    _report_fit(cli)


def _report_fit(cli: MothsCLI) -> None:
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    for name in sorted(metrics):
        print(f"  {name:<32}{metrics[name]:.4f}")
    best = cli.trainer.checkpoint_callback
    path = best.best_model_path if isinstance(best, ModelCheckpoint) else ""
    print(f"best checkpoint: {path}")


def run_entry_point(cli: MothsCLI) -> None:
    """The Lightning entry point named by the command, with ``--ckpt_path``."""
    entry_point = getattr(cli.trainer, cli.command)
    ckpt_path, load = cli.config.get("ckpt_path"), lightning_load_options(entry_point)
    entry_point(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, **load)
