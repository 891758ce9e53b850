"""The docs test's in-process runner (tests/helpers/in_process.py)."""

from __future__ import annotations

import logging

from helpers import in_process


class _Script:
    def __init__(self, main) -> None:
        self.main = main

    def load(self):
        return self.main


def test_a_handler_a_command_adds_outlives_the_command(monkeypatch):
    """A library first imported during a command (huggingface_hub, imported by timm when a
    model is built) adds a StreamHandler on the command's output: the next command runs."""
    logger = logging.getLogger("tests.made-during-a-command")

    def first(args):
        logger.addHandler(logging.StreamHandler())
        logger.warning("first says")
        return 0

    def second(args):
        logger.warning("second says")
        return 0

    scripts = {"first": first, "second": second}
    monkeypatch.setattr(in_process, "entry_points", lambda group, name: [_Script(scripts[name])])
    try:
        assert in_process.run_console_script("first", []) == (0, "first says\n")
        assert in_process.run_console_script("second", []) == (0, "second says\n")
    finally:
        logger.handlers.clear()
