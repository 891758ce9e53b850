"""The Optuna study: storage, sampler, pruner; every worker of a sweep joins the same one.

Storage is any SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``,
``mysql://...``), or a file path ending in ``.log`` / ``.journal`` for Optuna's
journal storage (one append-only file; for several workers on a shared
filesystem without a database server). Both are what ``optuna-dashboard`` reads.
"""

from __future__ import annotations

import random
import re
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from sqlalchemy.exc import SQLAlchemyError

from moths_framework.sweep.seeding import SeedPerTrial
from moths_framework.sweep.settings import SweepConfigError, SweepSettings

__all__ = [
    "JOURNAL_SUFFIXES",
    "default_storage",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "printable_storage",
]

JOURNAL_SUFFIXES = (".log", ".journal")

# A worker that dies without a word (killed, machine lost) leaves its trial RUNNING;
# with a heartbeat, the next worker to start a trial marks it failed.
_HEARTBEAT_S = 60
_GRACE_S = 180
# Query parameters that carry a secret: password= (libpq, PyMySQL), passwd= (MySQLdb),
# sslpassword=, pwd= (ODBC), token=, secret=, api_key=; matched as parts of the name.
_SECRET_QUERY = re.compile(r"pass|pwd|secret|token|api_?key", re.IGNORECASE)


def default_storage(sweep_dir: Path) -> str:
    """``sqlite:///SWEEP_DIR/study.db`` (absolute, so any working directory reads it)."""
    return f"sqlite:///{(sweep_dir / 'study.db').resolve()}"


def printable_storage(url: str) -> str:
    """The storage URL with any password hidden (for printing and ``sweep.json``): the
    ``user:password@`` one and the value of a query parameter such as ``?password=``,
    both shown as ``***``. The rest of the query is kept as given."""
    if "://" not in url:
        return url  # a journal file path
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    base, mark, query = url.partition("?")
    try:
        base = make_url(base).render_as_string(hide_password=True)
    except ArgumentError:  # malformed: still never show what looks like user:password@
        base = re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", base)
    if not mark:
        return base
    return f"{base}?{'&'.join(map(_masked_parameter, query.split('&')))}"


def _masked_parameter(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    return f"{name}=***" if equals and _SECRET_QUERY.search(unquote_plus(name)) else parameter


def open_storage(url: str) -> BaseStorage:
    """A storage for a URL or journal file path; creates the schema if needed.

    Several workers starting at once race to create a fresh database's tables
    (on SQLite the loser gets an IntegrityError); a worker that loses retries.

    Raises:
        SweepConfigError: the URL is malformed or the database cannot be reached.
    """
    if "://" not in url:
        if not url.endswith(JOURNAL_SUFFIXES):
            raise SweepConfigError(
                f"--storage {url}: give a SQLAlchemy URL (sqlite:///study.db, "
                "postgresql://user@host/db) or a journal file path ending in .log"
            )
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=_HEARTBEAT_S, grace_period=_GRACE_S)
        except SQLAlchemyError as err:
            if attempt == 4:
                raise SweepConfigError(
                    f"storage {printable_storage(url)}: {type(err).__name__}: "
                    f"{str(err).splitlines()[0]}"
                ) from err
            time.sleep(0.5 + random.random())
        except (ValueError, ImportError) as err:  # bad URL, missing database driver
            raise SweepConfigError(f"storage {printable_storage(url)}: {err}") from err
    raise AssertionError("unreachable")


def make_sampler(settings: SweepSettings) -> optuna.samplers.BaseSampler:
    """TPE (default), random, or grid over every value of every key.

    With a ``seed``, TPE's and random's draws are seeded per trial by (seed, trial
    number) (see :class:`SeedPerTrial`), so workers sharing the study do not repeat
    each other; the grid sampler already skips the grid points any worker took.
    """

    def make(seed: int | None) -> optuna.samplers.BaseSampler:
        if settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if settings.sampler == "grid":
            grid = {key: spec.grid_values() for key, spec in settings.space.items()}
            return optuna.samplers.GridSampler(grid, seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    if settings.sampler == "grid" or settings.seed is None:
        return make(settings.seed)
    return SeedPerTrial(make, settings.seed)


def make_pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    """Median (default), Hyperband, or none; other keys of ``pruner:`` are its options."""
    options: dict[str, Any] = {k: v for k, v in settings.pruner.items() if k != "name"}
    name = settings.pruner["name"]
    cls = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }[name]
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise SweepConfigError(f"sweep.pruner: {name}: {err}") from err


def open_study(storage: BaseStorage, name: str, settings: SweepSettings) -> optuna.Study:
    """Create the study or join it (``load_if_exists``): every worker calls this.

    Raises:
        SweepConfigError: the existing study optimises in the other direction.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=settings.direction,
        sampler=make_sampler(settings),
        pruner=make_pruner(settings),
        load_if_exists=True,
    )
    if study.direction.name.lower() != settings.direction:
        raise SweepConfigError(
            f"study {name!r} exists and is to {study.direction.name.lower()}, the config says "
            f"{settings.direction}; use another --study name"
        )
    if "metric" not in study.user_attrs:
        study.set_user_attr("metric", settings.metric)
    return study
