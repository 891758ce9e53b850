"""``moths-worker``: an Antenna pull worker, answering tasks with ``/process``'s own code.

>>> from moths_framework.worker import AntennaClient, PullWorker, WorkerSettings
>>> worker = PullWorker(AntennaClient(root, token), models, ServeOptions(),
...                     WorkerSettings("my worker"))  # doctest: +SKIP
>>> await worker.run()  # doctest: +SKIP

Imports no torch.
"""

from moths_framework.worker.antenna_client import AntennaClient, AntennaError, AntennaRefused
from moths_framework.worker.backoff import Backoff
from moths_framework.worker.pull import PullWorker, WorkerFailed, WorkerSettings

__all__ = [
    "AntennaClient",
    "AntennaError",
    "AntennaRefused",
    "Backoff",
    "PullWorker",
    "WorkerFailed",
    "WorkerSettings",
]
