"""moths_framework.serve.limits: the byte budget; request bodies capped one by one and together."""

from __future__ import annotations

import asyncio
import json

import pytest

from moths_framework.serve.limits import BodyLimit, ByteBudget


def test_budget_waiters_are_served_in_order_and_may_leave_the_line() -> None:
    async def scenario() -> list[str]:
        budget, served = ByteBudget(100), []
        budget.try_acquire(90)

        async def wait(name: str, amount: int) -> None:
            await budget.acquire(amount)
            served.append(name)

        big = asyncio.create_task(wait("big", 60))
        await asyncio.sleep(0)
        small = asyncio.create_task(wait("small", 5))  # would fit, but waits its turn
        leaving = asyncio.create_task(wait("leaving", 30))
        await asyncio.sleep(0)
        assert served == [] and not budget.try_acquire(1)
        leaving.cancel()
        budget.release(90)
        await asyncio.gather(big, small, leaving, return_exceptions=True)
        assert (budget.held, budget.peak) == (65, 90)
        with pytest.raises(ValueError, match="never fit"):
            await budget.acquire(101)
        return served

    assert asyncio.run(scenario()) == ["big", "small"]


def _call(limit: BodyLimit, body: bytes, content_type: bytes = b"application/json") -> dict:
    """One request through the middleware: its status, detail and Retry-After."""
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent, seen = [], {}

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(scope: dict, receive, send) -> None:  # noqa: ANN001
        received = b""
        while True:
            message = await receive()
            received += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen["body"] = received
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    limit.app = app
    scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type)]}
    asyncio.run(limit(scope, receive, send))
    headers = dict(sent[0]["headers"])
    detail = json.loads(sent[1]["body"]).get("detail", "")
    return {"status": sent[0]["status"], "detail": detail, "retry": headers.get(b"retry-after"),
            "body": seen.get("body")}  # fmt: skip


def test_json_and_multipart_have_their_own_caps() -> None:
    limit = BodyLimit(None, max_multipart=10_000, max_json=3_000, budget=ByteBudget(50_000))
    assert _call(limit, b"x" * 2_500)["body"] == b"x" * 2_500  # replayed whole, in pieces
    too_large = _call(limit, b"x" * 3_500)
    assert too_large["status"] == 413 and "JSON request body over 3000 bytes" in too_large["detail"]
    upload = _call(limit, b"x" * 9_000, b"multipart/form-data; boundary=x")
    assert upload["status"] == 200
    assert _call(limit, b"x" * 11_000, b"multipart/form-data; boundary=x")["status"] == 413
    assert limit.budget.held == 0


def test_bodies_held_at_once_share_a_budget() -> None:
    budget = ByteBudget(10_000)
    limit = BodyLimit(None, max_multipart=8_000, max_json=8_000, budget=budget)
    budget.try_acquire(6_000)  # another request's body, still held
    busy = _call(limit, b"x" * 5_000)
    assert busy["status"] == 503 and busy["retry"] == b"1" and "retry" in busy["detail"]
    assert budget.held == 6_000  # what the refused body had taken was given back
    budget.release(6_000)
    assert _call(limit, b"x" * 5_000)["status"] == 200 and budget.held == 0
