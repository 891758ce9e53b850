"""The LightningCLI behind moths-fit, moths-validate, moths-test and moths-predict.

Each command parses a YAML config (``--config``) plus dotted overrides, builds
the data module, the model and the trainer, and runs one Lightning entry
point. Everything a run writes goes to its run directory
(``--trainer.default_root_dir``, default ``runs/<timestamp>``, made new for each
run; ``moths-fit`` writes only into a new or empty folder or one it made).

Every command accepts the ``config.yaml`` a run saved. Given ``--ckpt_path``
(evaluation, prediction, resume), the model is built on the checkpoint's own
label hierarchy, data species it has no class for count as ``Other``, and a
``pretrained`` backbone downloads nothing: the checkpoint has the weights.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from moths_framework import plugins
from moths_framework.cli.list_overrides import expand_index_overrides
from moths_framework.data.datamodule import MothsDataModule, TransformError
from moths_framework.data.sources import DataSourceError
from moths_framework.finetuning import UnfreezePolicy
from moths_framework.hierarchy import HierarchyError, LabelHierarchy
from moths_framework.model.backbone import BackboneError
from moths_framework.model.checkpoint import (
    CheckpointError,
    check_model_fits,
    checkpoint_hierarchy,
    read_checkpoint,
)
from moths_framework.model.lightning import MothsClassifier
from moths_framework.model.trust import (
    TRUST_FLAG,
    TRUST_HELP,
    lightning_load_options,
    trusting_checkpoints,
)
from moths_framework.model.tuning import tune
from moths_framework.model.warm_start import WarmStartError
from moths_framework.output_folders import OutputFolderError, claim_run_folder, create_run_folder
from moths_framework.zoo.transport import INSECURE_FLAG, INSECURE_HELP, allowing_insecure_http

__all__ = ["USER_ERRORS", "MothsCLI", "run_command", "run_fit"]

log = logging.getLogger(__name__)

# Errors a user causes: printed as one line, exit code 2, no traceback.
USER_ERRORS = (
    BackboneError,
    CheckpointError,
    DataSourceError,
    HierarchyError,
    plugins.PluginError,
    FileNotFoundError,
    OutputFolderError,
    TransformError,
    WarmStartError,
)

# Lightning starts DDP ranks > 0 as copies of this command; they take the run folder
# their parent made from here rather than making one of their own.
RUN_DIR_ENV = "MOTHS_RUN_DIR"


def _config_error(command: str, err: Exception) -> str:
    """One readable message for a config jsonargparse rejected."""
    noise = ("Expected a path but", "Does not validate against any", "Subtypes:", "Errors:")
    lines = [line.strip(" -") for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    message = " ".join(lines[:3])
    for group in plugins.GROUPS:  # the hint on a bad class_path under a plugin's key
        if f'"{group.yaml_key}"' in lines[0]:
            available = plugins.available(group.name).values()
            names = [info.value.rpartition(":")[2] for info in available]
            message += f"\n  installed {group.name.replace('_', ' ')}: {', '.join(sorted(names))}"
    return f"{message}\n  (moths-{command} --help lists every option)"


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
        self.checkpoint: dict[str, Any] | None = None
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
                "epilog": f"{TRUST_FLAG}: {TRUST_HELP}. {INSECURE_FLAG}: {INSECURE_HELP}.",
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
        elif self.command == "predict":
            raise CheckpointError("moths-predict needs a trained model: --ckpt_path RUN/best.ckpt")
        self._set_run_dir()

    def instantiate_classes(self) -> None:
        if self.checkpoint is None:
            super().instantiate_classes()
            return
        # The checkpoint supplies the weights: a pretrained backbone must not download them.
        backbone_args = self.config.model.backbone.get("init_args")
        pretrained = backbone_args.get("pretrained") if backbone_args is not None else None
        if pretrained:
            backbone_args.pretrained = False
        try:
            super().instantiate_classes()
        finally:
            if pretrained:
                backbone_args.pretrained = pretrained  # config.yaml keeps what the user wrote
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


def _run_entry_point(cli: MothsCLI) -> None:
    entry_point = getattr(cli.trainer, cli.command)
    ckpt_path, load = cli.config.get("ckpt_path"), lightning_load_options(entry_point)
    entry_point(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, **load)


def _no_adverts(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def _trust_flags(args: list[str] | None) -> tuple[list[str] | None, bool, bool]:
    """``args`` less ``--trust-checkpoint`` and ``--allow-insecure-http``, and whether each
    was given. They are taken from the command line only: no config file can trust for you."""
    given = list(sys.argv[1:] if args is None else args)
    trust, insecure = TRUST_FLAG in given, INSECURE_FLAG in given
    if not (trust or insecure):
        return args, False, False
    # LightningCLI warns when args are passed beside sys.argv; these are sys.argv's own.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
    return [a for a in given if a not in (TRUST_FLAG, INSECURE_FLAG)], trust, insecure


def run_command(
    command: str, args: list[str] | None = None, run: Callable[[MothsCLI], None] | None = None
) -> int:
    """Parse, build and run one command; returns the exit code.

    Args:
        command: ``fit``, ``validate``, ``test`` or ``predict`` (names the program).
        args: command-line arguments; default ``sys.argv[1:]``. ``--trust-checkpoint``
            and ``--allow-insecure-http`` among them apply to the whole command.
        run: what to do with the built CLI; default: the Lightning entry point of
            that name with ``--ckpt_path``.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Lightning advertises its cloud services on every run; our output stays about the run.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_adverts)
    # The run directory holds config.yaml before the first checkpoint; that is expected.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Lightning 2.6 on torch 2.14 warns about its own use of a torch internal.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Evaluating a checkpoint needs none of the callbacks that wrote it.
    warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks")
    args, trust, insecure = _trust_flags(args)
    try:
        plugins.load_all()
        with trusting_checkpoints(trust), allowing_insecure_http(insecure):
            cli = MothsCLI(command, args)
            (run or _run_entry_point)(cli)
    except USER_ERRORS as err:
        print(f"moths-{command}: error: {err}", file=sys.stderr)
        return 2
    except ArgumentError as err:
        print(f"moths-{command}: error: {_config_error(command, err)}", file=sys.stderr)
        return 2
    except ValueError as err:  # jsonargparse wraps what a link raises (the hierarchy's)
        cause = err.__cause__
        if not isinstance(cause, USER_ERRORS):
            raise
        print(f"moths-{command}: error: {cause}", file=sys.stderr)
        return 2
    return 0
