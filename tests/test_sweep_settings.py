"""moths-sweep without training: optim config, overrides, storage, report, CLI errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from helpers.paths import REPO

from moths_framework.cli.sweep import main as sweep
from moths_framework.sweep import SweepConfigError, load_study, load_sweep_config, write_report
from moths_framework.sweep.objective import TrialRun, override_args
from moths_framework.sweep.report import _short_names, ranked_trials
from moths_framework.sweep.settings import SweepSettings
from moths_framework.sweep.study import make_sampler, open_storage, open_study
from moths_framework.train.overrides import expand_index_overrides


def write_optim(tmp_path: Path, sweep: dict, **fit) -> Path:
    path = tmp_path / "optim.yaml"
    path.write_text(yaml.safe_dump({"base": str(REPO / "configs" / "dev.yaml"), **fit,
                                    "sweep": sweep}))  # fmt: skip
    return path


LR = {"model.optimizer.init_args.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def test_the_shipped_optim_configs_parse():
    for name in ("optim.yaml", "optim-dev.yaml"):
        settings, base, fit = load_sweep_config(REPO / "configs" / name)
        assert base is not None and base.is_file()
        assert settings.metric == "val/species/f1_macro" and settings.direction == "maximize"
        keys = set(settings.space)
        for knob in ("model.optimizer.init_args.lr", "data.batch_size", "model.backbone_lr_ratio",
                     "unfreeze.init_args.epoch_start", "unfreeze.init_args.epoch_duration",
                     "unfreeze.init_args.final_fraction", "model.loss_weights.0",
                     "data.weighted_sampling_fraction",
                     "data.train_transforms.0.init_args.scale.0"):  # fmt: skip
            assert knob in keys, (name, knob)


def test_base_fit_keys_and_defaults(tmp_path):
    path = write_optim(tmp_path, {"metric": "val/loss", "space": LR}, trainer={"max_epochs": 2})
    settings, base, fit = load_sweep_config(path)
    assert base == REPO / "configs" / "dev.yaml"
    assert fit == {"trainer": {"max_epochs": 2}}
    assert settings.direction == "minimize"  # a loss is minimised unless told otherwise
    assert settings.sampler == "tpe" and settings.pruner == {"name": "median"}


@pytest.mark.parametrize(
    ("sweep_section", "message"),
    [
        ({"space": {}}, "at least one key"),
        ({"space": {"data.batch_size": [8, 16]}}, "sweep.space.data.batch_size"),
        ({"space": {"x": {"type": "float", "low": 1, "high": 2, "base": 3}}}, "unknown option"),
        ({"space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}}, "low > 0"),
        ({"space": {"x": {"type": "categorical", "choices": [[0.3, 1.0]]}}}, "by its index"),
        ({"space": LR, "sampler": "cmaes"}, "sweep.sampler"),
        ({"space": LR, "pruner": "asha"}, "sweep.pruner"),
        ({"space": LR, "n_trial": 3}, "unknown key"),
    ],
)
def test_malformed_sweep_sections_name_the_key(tmp_path, sweep_section, message):
    with pytest.raises(SweepConfigError, match=message):
        load_sweep_config(write_optim(tmp_path, sweep_section))


def test_missing_base_is_one_clear_error(tmp_path):
    path = tmp_path / "optim.yaml"
    path.write_text(yaml.safe_dump({"base": "nowhere.yaml", "sweep": {"space": LR}}))
    with pytest.raises(SweepConfigError, match="base: nowhere.yaml not found"):
        load_sweep_config(path)


def test_grid_sampler_needs_discrete_values(tmp_path):
    space = {"data.batch_size": {"type": "int", "low": 8, "high": 24, "step": 8}, **LR}
    settings, _, _ = load_sweep_config(write_optim(tmp_path, {"sampler": "grid", "space": space}))
    with pytest.raises(SweepConfigError, match="model.optimizer.init_args.lr: the grid sampler"):
        make_sampler(settings)
    assert settings.space["data.batch_size"].grid_values() == [8, 16, 24]


def test_override_values_read_back_as_the_same_yaml():
    values = {"a.lr": 1e-05, "a.n": 16, "a.name": "true", "a.on": True, "a.x": None}
    args = override_args(values)
    assert args == ["--a.lr=1.0e-05", "--a.n=16", "--a.name='true'", "--a.on=true", "--a.x=null"]
    assert [yaml.safe_load(a.partition("=")[2]) for a in args] == list(values.values())


def test_an_index_inside_a_list_item_overrides_one_value():
    crop = {"class_path": "RandomResizedCrop", "init_args": {"size": 64, "scale": (0.5, 1.0)}}
    transforms = [crop]
    args = ["--data.train_transforms.0.init_args.scale.0=0.3"]
    expanded = expand_index_overrides(args, lambda _args, _key: [dict(t) for t in transforms])
    assert expanded == [
        '--data.train_transforms=[{"class_path": "RandomResizedCrop", '
        '"init_args": {"size": 64, "scale": [0.3, 1.0]}}]'
    ]


def test_short_parameter_names_are_unique_suffixes():
    keys = ["model.optimizer.init_args.lr", "model.loss_weights.0", "data.a.init_args.scale.0",
            "data.b.init_args.scale.0"]  # fmt: skip
    assert _short_names(keys) == {
        "model.optimizer.init_args.lr": "lr",
        "model.loss_weights.0": "loss_weights.0",
        "data.a.init_args.scale.0": "a.init_args.scale.0",
        "data.b.init_args.scale.0": "b.init_args.scale.0",
    }


def test_bad_storage_is_one_clear_error():
    with pytest.raises(SweepConfigError, match="journal file path ending in .log"):
        open_storage("study.db")
    with pytest.raises(SweepConfigError, match="storage nosuchdialect://"):
        open_storage("nosuchdialect://host/db")


def test_workers_racing_to_create_a_fresh_database_retry(tmp_path, monkeypatch):
    """On a fresh SQLite file the worker that loses the schema-creation race gets an
    IntegrityError (alembic_version); it retries instead of dying."""
    from sqlalchemy.exc import IntegrityError

    from moths_framework.sweep import study as study_module

    real, calls = study_module.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE"))
        return real(*args, **kwargs)

    monkeypatch.setattr(study_module, "RDBStorage", racing)
    monkeypatch.setattr(study_module.time, "sleep", lambda _s: None)
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    assert len(calls) == 2 and isinstance(storage, real)


def test_report_from_a_journal_storage(tmp_path):
    """Report with no fit run: the table ranks best first, failures show their error,
    importance is skipped gracefully with a single complete trial."""
    settings, _, _ = load_sweep_config(write_optim(tmp_path, {"space": LR}))
    study = open_study(open_storage(str(tmp_path / "journal.log")), "s", settings)
    for lr, state in [(1e-3, "complete"), (3e-3, "fail"), (2e-3, "running")]:
        study.enqueue_trial({"model.optimizer.init_args.lr": lr})
        trial = study.ask()
        assert trial.suggest_float("model.optimizer.init_args.lr", 1e-4, 1e-2, log=True) == lr
        trial.set_user_attr("config", yaml.safe_dump({"trainer": {"default_root_dir": "x"}}))
        if state == "complete":
            study.tell(trial, 0.5)
        elif state == "fail":
            trial.set_user_attr("error", "ValueError: Invalid learning rate: -1.0")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    text = write_report(study, tmp_path)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["trial", "state", "val/species/f1_macro"]
    assert lines[1].split()[:3] == ["0", "complete", "0.5000"]
    assert lines[2].split()[:2] == ["2", "running"] and lines[3].split()[:2] == ["1", "fail"]
    assert "Invalid learning rate" in lines[3]
    assert "importance.png: skipped, needs 2 complete trial(s), has 1" in text
    assert (tmp_path / "history.png").stat().st_size > 0
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["trainer"]["default_root_dir"] is None  # a rerun gets its own run directory
    assert [t.number for t in ranked_trials(study)] == [0, 2, 1]

    # another machine: no sweep directory, only the storage; the study is named as the dir
    elsewhere = tmp_path / "elsewhere" / "s"
    assert sweep(["--report", str(elsewhere), "--storage", str(tmp_path / "journal.log")]) == 0
    assert (elsewhere / "best.yaml").is_file()


def test_report_of_a_missing_sweep_is_exit_2(tmp_path, capsys):
    assert sweep(["--report", str(tmp_path / "none")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_report_finds_the_study_from_sweep_json(tmp_path):
    (tmp_path / "sweep.json").write_text('{"study": "s", "storage": "postgresql://u:***@h/db"}')
    with pytest.raises(SweepConfigError, match="give --storage URL again"):
        load_study(tmp_path)


def _finished_fit(metrics: dict) -> SimpleNamespace:
    return SimpleNamespace(trainer=SimpleNamespace(callback_metrics=metrics,
                                                   checkpoint_callback=None))  # fmt: skip


def test_a_nan_or_missing_metric_fails_the_trial(tmp_path):
    settings, _, _ = load_sweep_config(write_optim(tmp_path, {"space": LR}))
    run = TrialRun(settings, tmp_path, [])
    with pytest.raises(FloatingPointError, match="val/species/f1_macro is NaN"):
        run._value(_finished_fit({"val/species/f1_macro": torch.tensor(float("nan"))}))
    with pytest.raises(ValueError, match="not logged; logged: val/loss"):
        run._value(_finished_fit({"val/loss": torch.tensor(1.0)}))
    assert run._value(_finished_fit({"val/species/f1_macro": torch.tensor(0.5)})) == 0.5


def test_a_bad_storage_stops_before_anything_is_written(tmp_path, capsys):
    config = write_optim(tmp_path, {"space": LR})
    args = ["--config", str(config), "--dir", str(tmp_path / "sweep"), "--storage", "study.db"]
    assert sweep(args) == 2
    assert "journal file path ending in .log" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_seeded_workers_on_one_study_do_not_repeat_each_other(tmp_path, sampler):
    settings, _, _ = load_sweep_config(
        write_optim(tmp_path, {"sampler": sampler, "seed": 7, "space": LR})
    )
    storage = optuna.storages.InMemoryStorage()

    def worker() -> optuna.Study:
        return optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(settings))

    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    a, b = worker(), worker()  # two processes' samplers, same seed, same study
    for _ in range(3):
        for study in (a, b):
            study.optimize(lambda t: t.suggest_float("x", 1e-4, 1e-2, log=True), n_trials=1)
    values = [t.params["x"] for t in a.trials]
    assert len(set(values)) == 6  # the old per-process seeding drew each value twice
    alone = optuna.create_study(sampler=make_sampler(settings), direction="maximize")
    alone.optimize(lambda t: t.suggest_float("x", 1e-4, 1e-2, log=True), n_trials=6)
    assert [t.params["x"] for t in alone.trials] == values  # a seed still repeats a sweep


def test_report_of_an_unknown_study_names_the_studies_there(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="optim-dev", storage=storage)
    assert sweep(["--report", str(tmp_path / "elsewhere"), "--storage", storage]) == 2
    err = capsys.readouterr().err
    assert "no study 'elsewhere'" in err and "studies there: optim-dev" in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://moths@db/s?password=secret", "postgresql://moths@db/s?password=***"),
        (
            "postgresql://u:pw@db/s?sslmode=require&PassWord=s%26x&sslpassword=k",
            "postgresql://u:***@db/s?sslmode=require&PassWord=***&sslpassword=***",
        ),
        (
            "mysql+mysqldb://db/s?passwd=secret&charset=utf8",
            "mysql+mysqldb://db/s?passwd=***&charset=utf8",
        ),
        ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
        ("runs/journal.log", "runs/journal.log"),
    ],
)
def test_printable_storage_hides_passwords_in_the_query_too(url, shown):
    from moths_framework.sweep.study import printable_storage

    assert printable_storage(url) == shown


def test_a_query_password_is_neither_printed_nor_stored(tmp_path, monkeypatch, capsys):
    from moths_framework.sweep import prepare_sweep
    from moths_framework.sweep import run as run_module

    config = write_optim(tmp_path, {"space": LR})
    url = "postgresql://moths@db.example.org/s?password=secret"
    # No driver here: the error names the storage, without its password.
    assert sweep(["--config", str(config), "--dir", str(tmp_path / "x"), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "db.example.org/s?password=***" in err and "secret" not in err
    monkeypatch.setattr(run_module, "open_storage", lambda _url: optuna.storages.InMemoryStorage())
    prepare_sweep(config, storage=url, sweep_dir=tmp_path / "sweep")
    assert "secret" not in (tmp_path / "sweep" / "sweep.json").read_text()
    with pytest.raises(SweepConfigError, match="give --storage URL again"):
        load_study(tmp_path / "sweep")


def test_a_trial_never_shares_a_run_folder(tmp_path, monkeypatch):
    """trial-0 left by an earlier study in the same --dir: the trial gets trial-0-2."""
    taken = tmp_path / "trial-0"
    taken.mkdir()
    (taken / "best.ckpt").write_bytes(b"an earlier study's model")
    run_dirs = []

    def fit(self, trial, args):
        run_dirs.append(args[args.index("--trainer.default_root_dir") + 1])
        return 0.5

    monkeypatch.setattr(TrialRun, "_fit", fit)
    study = optuna.create_study(direction="maximize")
    study.optimize(TrialRun(SweepSettings(space={}), tmp_path, []), n_trials=2)
    assert run_dirs == [str(tmp_path / "trial-0-2"), str(tmp_path / "trial-1")]
    assert study.trials[0].user_attrs["run_dir"] == str((tmp_path / "trial-0-2").resolve())
    assert (taken / "best.ckpt").read_bytes() == b"an earlier study's model"


def test_the_report_does_not_overwrite_a_file_the_sweep_did_not_write(tmp_path, capsys):
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.set_user_attr("config", yaml.safe_dump({"trainer": {"default_root_dir": "x"}}))
    study.tell(trial, 0.5)
    (tmp_path / "best.yaml").write_text("my own best config\n")
    with pytest.raises(ValueError, match="moths-sweep did not write it"):
        write_report(study, tmp_path)
    assert (tmp_path / "best.yaml").read_text() == "my own best config\n"
    assert not (tmp_path / "trials.csv").exists()  # refused before writing anything
