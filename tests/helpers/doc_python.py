"""Run a document's ``python`` blocks in a fresh interpreter, as a reader pasting them
into one session would: every earlier block of the same document first, then the
block under test, statement by statement.

For the block under test each top-level statement's printed output is kept,
followed by the ``repr`` of its value when it is an expression (as the
interactive interpreter shows it), so ``# -> TEXT`` comments can be checked.
``python -m helpers.doc_python JOB.json`` is the child's side.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers.doc_blocks import Block
from helpers.paths import REPO


def run_blocks(
    earlier: list[Block], block: Block, cwd: Path, call_tests: bool = False,
    pythonpath: tuple[str, ...] = (),
) -> tuple[int, list[dict], str]:  # fmt: skip
    """Run ``earlier`` then ``block`` in a new interpreter in ``cwd``: its exit code, the
    statements of ``block`` (``start``, ``end`` lines and ``output``) and its stderr."""
    job = cwd / f".doc-python-{os.getpid()}.json"
    result = job.with_suffix(".out.json")
    blocks = [{"doc": b.doc, "line": b.line, "code": "\n".join(b.lines)} for b in earlier]
    blocks.append({"doc": block.doc, "line": block.line, "code": "\n".join(block.lines)})
    job.write_text(json.dumps({"blocks": blocks, "call_tests": call_tests, "result": str(result)}))
    paths = [*(str(cwd / p) for p in pythonpath), str(REPO / "tests")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "helpers.doc_python", str(job)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        statements = json.loads(result.read_text()) if result.is_file() else []
    finally:
        job.unlink(missing_ok=True)
        result.unlink(missing_ok=True)
    return done.returncode, statements, done.stdout + done.stderr


def _run_job(path: str) -> None:
    job = json.loads(Path(path).read_text())
    *earlier, tested = job["blocks"]
    if job["call_tests"]:
        _call_tests(job["blocks"])
        statements = []
    else:
        namespace: dict = {"__name__": "__main__"}
        for block in earlier:
            exec(compile(_parsed(block), block["doc"], "exec"), namespace)
        statements = [_statement(node, tested["doc"], namespace) for node in _parsed(tested).body]
    Path(job["result"]).write_text(json.dumps(statements))


def _statement(node: ast.stmt, doc: str, namespace: dict) -> dict:
    """Run one statement: what it printed, then the repr of its value if an expression."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), doc, "eval"), namespace)
            if value is not None:
                print(repr(value))
        else:
            exec(compile(ast.Module(body=[node], type_ignores=[]), doc, "exec"), namespace)
    return {"start": node.lineno, "end": node.end_lineno, "output": output.getvalue()}


def _call_tests(blocks: list[dict]) -> None:
    """Import the blocks as one test module (classes in it can then be imported by name,
    as a plugin's can) and call its ``test_*`` functions as pytest would (``tmp_path``:
    a new empty folder)."""
    name = f"doc_blocks_{os.getpid()}"
    source = Path(f"{name}.py")
    source.write_text("\n\n".join(block["code"] for block in blocks) + "\n")
    try:
        module = importlib.import_module(name)
        for test_name, test in vars(module).items():
            if test_name.startswith("test_") and callable(test):
                with tempfile.TemporaryDirectory() as tmp:
                    wanted = inspect.signature(test).parameters
                    test(**({"tmp_path": Path(tmp)} if "tmp_path" in wanted else {}))
    finally:
        source.unlink()


def _parsed(block: dict) -> ast.Module:
    tree = ast.parse(block["code"], block["doc"])
    ast.increment_lineno(tree, block["line"] - 1)  # line numbers of the document
    return tree


if __name__ == "__main__":
    _run_job(sys.argv[1])
