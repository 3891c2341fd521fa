"""Agent profiles through real HTTP, sockets and Azurite: two numbers get two different agents in
one run, an edit reaches another replica within seconds and never changes a live call, and every
invalid profile is refused naming the field."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from callplane.settings import Settings
from session_host import keys
from tests.stack import Stack, run_stack, second_replica

SALES = {
    "instructions": "You are Sam from the sales line. The caller {caller_number} dialled {called_number}.",
    "greeting": "Say hello from the sales line.",
    "voice": "cedar",
    "tools": ["lookup_order"],
    "turnDetection": {"type": "semantic_vad", "eagerness": "low"},
    "noiseReduction": "far_field",
}
SUPPORT = {
    "instructions": "You are Kim from support. Ticket {x_ticket}.",
    "voice": "coral",
    "tools": ["check_inventory", "handoff_human"],
    "turnDetection": {"type": "server_vad", "threshold": 0.7, "silenceDurationMs": 700},
    "transferTargets": {"default": "tel:+18005550999"},
}


async def put(stack: Stack, path: str, body: Any, url: str | None = None) -> tuple[int, Any]:
    async with stack.http.put(f"{url or stack.host_url}{path}", json=body) as resp:
        return resp.status, await resp.json()


async def test_two_numbers_two_agents(conn: str) -> None:
    async with run_stack(conn, time_scale=40) as stack:
        assert (await put(stack, "/api/profiles/sales", SALES))[0] == 201
        status, doc = await put(stack, "/api/profiles/support", SUPPORT)
        assert status == 201 and doc["version"] == 1 and doc["updatedBy"]
        assert (await put(stack, "/api/routes/%2B18005550100", {"profile": "sales"}))[0] == 201
        assert (await put(stack, "/api/routes/%2B18005550200", {"profile": "support"}))[0] == 201
        await stack.webhook_has_profile("sales", 1, "+18005550100")
        await stack.webhook_has_profile("support", 1, "+18005550200")

        sales_id = await stack.place("lookup_order", caller="+14255550111", called="+18005550100")
        support_id = await stack.place("check_inventory", caller="+14255550222", called="+18005550200")
        other_id = await stack.place("greeting_only", called="+18005550300")
        for call_id in (sales_id, support_id, other_id):
            await stack.wait_ended(call_id, timeout=60)
        sales = stack.sim.calls[sales_id].accept_body or {}
        support = stack.sim.calls[support_id].accept_body or {}
        default = stack.sim.calls[other_id].accept_body or {}
        assert sales["instructions"].startswith(
            "You are Sam from the sales line. The caller +14255550111 dialled +18005550100"
        )
        assert sales["audio"]["output"]["voice"] == "cedar" and support["audio"]["output"]["voice"] == "coral"
        assert [t["name"] for t in sales["tools"]] == ["lookup_order"]
        assert [t["name"] for t in support["tools"]] == ["check_inventory", "handoff_human"]
        assert sales["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
        assert sales["audio"]["input"]["turn_detection"]["eagerness"] == "low"
        assert sales["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
        assert support["audio"]["input"]["turn_detection"]["threshold"] == 0.7
        assert "Contoso" in default["instructions"] and len(default["tools"]) > 5, "unrouted: today's agent"
        # The greeting the session asked for came from the profile too.
        assert stack.sim.calls[sales_id].response_instructions[0] == "Say hello from the sales line."
        assert "Alex from Contoso" in stack.sim.calls[support_id].response_instructions[0], "support keeps the default"
        for call_id, name in ((sales_id, "sales"), (support_id, "support")):
            call = await stack.wait_call(call_id)
            assert call["profile"] == name and call["profileVersion"] == 1
            assert call["status"] == "completed"
        assert (await stack.wait_call(other_id))["profile"] == "default"
        dry = await stack.api("/api/routes/%2B18005550200/dry-run?header=X-Ticket:T-42")
        assert dry["profile"] == "support" and dry["accept"]["instructions"] == "You are Kim from support. Ticket T-42."


async def test_an_edit_reaches_another_replica_and_never_changes_a_live_call(conn: str) -> None:
    async with run_stack(conn, time_scale=2) as stack:
        await put(stack, "/api/profiles/sales", SALES)
        await put(stack, "/api/routes/%2B18005550100", {"profile": "sales"})
        async with second_replica(stack) as (_, other_url):
            await stack.webhook_has_profile("sales", 1, "+18005550100")
            live = await stack.place("standard", called="+18005550100")
            await stack.wait_call(live, final=False)
            started = time.monotonic()
            status, doc = await put(stack, "/api/profiles/sales", {**SALES, "voice": "sage"})
            assert status == 200 and doc["version"] == 2
            # The other replica's admin API reads the store's generation on each request: at once.
            async with stack.http.get(f"{other_url}/api/profiles") as resp:
                listed = {p["name"]: p["version"] for p in (await resp.json())["profiles"]}
            assert listed["sales"] == 2, listed
            # The webhook app, which picks the agent for new calls, follows within about a second.
            await stack.webhook_has_profile("sales", 2, "+18005550100")
            assert time.monotonic() - started < 5
            versions = await stack.api("/api/profiles/sales/versions")
            assert [v["version"] for v in versions["versions"]] == [2, 1]
            call = await stack.wait_call(live, timeout=90)
            assert call["profileVersion"] == 1, "a live call keeps the version it started with"
            sim_call = stack.sim.calls[live]
            assert sim_call.session["audio"]["output"]["voice"] == "cedar"
            assert (await stack.api("/api/profiles/sales?version=1"))["voice"] == "cedar"


async def test_invalid_profiles_and_routes_name_the_field(conn: str) -> None:
    async with run_stack(conn) as stack:
        cases: list[tuple[dict[str, Any], str]] = [
            ({**SALES, "voice": "robot"}, "voice"),
            ({**SALES, "tools": ["lookup_order", "teleport"]}, "tools"),
            ({**SALES, "instructions": "Hi {customer_name}"}, "instructions"),
            ({**SALES, "turnDetection": {"type": "semantic_vad", "threshold": 0.4}}, "turnDetection"),
            (
                {**SALES, "turnDetection": {"type": "server_vad", "silenceDurationMs": 10}},
                "turnDetection.silenceDurationMs",
            ),
            ({**SALES, "transferTargets": {"default": "http://x"}}, "transferTargets"),
            ({**SALES, "toolTimeouts": {"lookup_order": 600}}, "toolTimeouts"),
            ({**SALES, "colour": "blue"}, "colour"),
            ({"voice": "cedar"}, "instructions"),
        ]
        for body, field in cases:
            status, doc = await put(stack, "/api/profiles/sales", body)
            assert status == 400 and doc["field"] == field, (field, doc)
        assert (await put(stack, "/api/profiles/Bad_Name", SALES))[1]["field"] == "name"
        status, doc = await put(stack, "/api/routes/%2B18005550100", {"profile": "nobody"})
        assert status == 400 and doc["field"] == "profile"
        status, doc = await put(stack, "/api/routes/not-a-number", {"profile": "default"})
        assert status == 400 and doc["field"] == "number"
        await stack.api("/api/profiles/sales", status=404)
        assert (await stack.api("/api/profiles"))["profiles"][0]["builtIn"] is True
        await put(stack, "/api/profiles/sales", SALES)
        await put(stack, "/api/routes/%2B18005550100", {"profile": "sales"})
        async with stack.http.delete(f"{stack.host_url}/api/profiles/sales") as resp:
            assert resp.status == 409, "a routed profile is not deleted"
        async with stack.http.delete(f"{stack.host_url}/api/routes/%2B18005550100") as resp:
            assert resp.status == 204
        async with stack.http.delete(f"{stack.host_url}/api/profiles/sales") as resp:
            assert resp.status == 204


async def test_each_call_of_an_agent_gets_its_own_variables_in_its_session(conn: str) -> None:
    """session.update is encoded once per agent version and variables: two callers of the same
    line still hear instructions with their own numbers, and a caller of another line its agent."""
    async with run_stack(conn, time_scale=40) as stack:
        await put(stack, "/api/profiles/sales", SALES)
        await put(stack, "/api/routes/%2B18005550100", {"profile": "sales"})
        await stack.webhook_has_profile("sales", 1, "+18005550100")
        callers = ["+14255550111", "+14255550222", "+14255550111"]
        ids = [await stack.place("greeting_only", caller=c, called="+18005550100") for c in callers]
        other = await stack.place("greeting_only", called="+18005550300")
        for call_id in [*ids, other]:
            await stack.wait_ended(call_id, timeout=60)
        for call_id, caller in zip(ids, callers, strict=True):
            sim_call = stack.sim.calls[call_id]
            assert sim_call.session["instructions"].startswith(f"You are Sam from the sales line. The caller {caller}")
            assert sim_call.session["audio"]["output"]["voice"] == "cedar"
        assert "Contoso" in stack.sim.calls[other].session["instructions"]
        assert len(stack.host_app[keys.OPTIONS].encoded_updates) == 3, "two callers of sales, one default"


async def test_an_idle_webhook_app_reads_nothing_and_the_next_call_gets_the_latest_profile(conn: str) -> None:
    """No polling: an idle webhook app asks the store nothing; the first call after a quiet second
    waits for one look at the store, so a profile published just before it is the one it gets."""
    from function_app import runtime

    async with run_stack(conn, time_scale=40) as stack:
        deps = runtime._holder.deps
        assert deps is not None and deps.profiles is not None
        table = deps.profiles.table
        before = table.requests
        await asyncio.sleep(2.5)
        assert table.requests == before, "the idle webhook app read the profiles table"
        assert (await put(stack, "/api/profiles/sales", SALES))[0] == 201
        assert (await put(stack, "/api/routes/%2B18005550100", {"profile": "sales"}))[0] == 201
        call_id = await stack.place("greeting_only", caller="+14255550111", called="+18005550100")
        await stack.wait_ended(call_id, timeout=30)
        accept = stack.sim.calls[call_id].accept_body or {}
        assert accept["instructions"].startswith("You are Sam from the sales line."), accept.get("instructions")
        assert (await stack.wait_call(call_id))["profile"] == "sales"


async def test_a_failing_store_keeps_no_caller_waiting_for_profiles(store_settings: Settings) -> None:
    """A call waits for a look at the store only while the store answers: once a look failed,
    calls are routed at once with the profiles last read, and the store is asked again behind them."""
    from callplane.store.profile_store import ProfileCache
    from callplane.store.tables import open_tables
    from tests.stack import dead_store

    dead = dead_store(store_settings.storage_connection_string)
    tables = open_tables(store_settings.model_copy(update={"storage_connection_string": dead}))
    cache = ProfileCache(tables.profiles, interval_s=0.05)
    try:
        started = time.monotonic()
        assert await cache.current(wait_s=0.3) is False
        assert time.monotonic() - started < 1.0, "the first caller waited past its bound"
        for _ in range(100):
            if not cache.healthy:
                break
            await asyncio.sleep(0.05)
        assert not cache.healthy, "the failed look was not noticed"
        await asyncio.sleep(0.06)
        started = time.monotonic()
        assert await cache.current(wait_s=0.3) is False  # a new look starts; nobody waits for it
        assert time.monotonic() - started < 0.1
        assert cache.profiles == {} and cache.default().name == "default"
    finally:
        await cache.close()
        await tables.close()
