"""The optional model-written summary (SUMMARY_MODEL) over real HTTP to the simulator's
`/v1/chat/completions`, in both dialects, and the offline summary kept when the model fails."""

from __future__ import annotations

import asyncio

import pytest

from simulator.server import FAILING_MODEL
from tests.stack import run_stack


@pytest.mark.parametrize("dialect", ["azure", "openai"])
async def test_model_summary_replaces_the_offline_one(conn: str, dialect: str) -> None:
    async with run_stack(conn, dialect=dialect, SUMMARY_MODEL="gpt-4o-mini") as stack:
        call_id = await stack.place("lookup_order")
        await stack.wait_ended(call_id)
        for _ in range(50):  # the offline summary is stored first, the model's a flush later
            summary = (await stack.wait_call(call_id))["summary"]
            if summary.startswith("Model summary"):
                break
            await asyncio.sleep(0.1)
        turns = len((await stack.api(f"/api/calls/{call_id}/transcript"))["transcript"])
        assert summary == f"Model summary (gpt-4o-mini): the caller was helped over {turns + 1} transcript lines."


async def test_a_failing_model_keeps_the_offline_summary(conn: str) -> None:
    async with run_stack(conn, dialect="azure", SUMMARY_MODEL=FAILING_MODEL) as stack:
        call_id = await stack.place("lookup_order")
        await stack.wait_ended(call_id)
        call = await stack.wait_call(call_id)
        assert call["status"] == "completed"
        assert "Used lookup_order." in call["summary"] and not call["summary"].startswith("Model summary")
