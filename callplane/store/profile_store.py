"""Profiles and number routes in Table Storage, versioned, and the cache every replica reads.

`profiles` table:
- PK `profile`, RK `<name>`: the current version (profile JSON, version, who, when);
- PK `v:<name>`, RK `<version:06d>`: every version ever written (the history);
- PK `route`, RK `<E.164 number>`: which profile a called number gets;
- PK `meta`, RK `generation`: bumped by every change. A cache reads this one row when it is
  asked for profiles and its last look is more than a second old, and reloads profiles and
  routes only when the row moved. So a change reaches the next call routed a second later or
  more, routing reads nothing from the store while calls come in quicker than that, and an idle
  replica reads nothing at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from callplane.clock import now_ms
from callplane.handoff import SipHeader, e164
from callplane.profiles import DEFAULT, ChosenProfile, Profile, builtin_default, call_variables, called_number
from callplane.store.tables import TableOps

log = logging.getLogger("callplane.store.profiles")
PROFILE_PK, ROUTE_PK, META_PK, GENERATION_RK = "profile", "route", "meta", "generation"


@dataclass(slots=True)
class StoredProfile:
    name: str
    version: int
    profile: Profile
    who: str
    at: int

    def doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "updatedBy": self.who,
            "updatedAt": self.at,
            **self.profile.model_dump(mode="json"),
        }


def _stored(entity: Any) -> StoredProfile:
    return StoredProfile(
        name=str(entity["RowKey"]),
        version=int(entity["version"]),
        profile=Profile.model_validate_json(str(entity["profile"])),
        who=str(entity.get("who") or ""),
        at=int(str(entity.get("at") or 0)),
    )


async def _bump(table: TableOps) -> None:
    for _ in range(20):
        try:
            current = await table.get_entity(META_PK, GENERATION_RK)
        except ResourceNotFoundError:
            try:
                await table.create_entity({"PartitionKey": META_PK, "RowKey": GENERATION_RK, "generation": 1})
                return
            except ResourceExistsError:
                continue
        try:
            await table.update_entity(
                {"PartitionKey": META_PK, "RowKey": GENERATION_RK, "generation": int(current["generation"]) + 1},
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
            return
        except ResourceModifiedError:
            continue
    raise ResourceModifiedError("the profiles generation lost 20 races in a row")


async def put_profile(table: TableOps, name: str, profile: Profile, who: str) -> tuple[StoredProfile, bool]:
    """A new version of `name` (created: True when it did not exist). Concurrent writers each get
    their own version number (the current row is ETag-guarded)."""
    for _ in range(20):
        try:
            current = await table.get_entity(PROFILE_PK, name)
            version, etag = int(current["version"]) + 1, current.metadata["etag"]
        except ResourceNotFoundError:
            version, etag = 1, None
        stored = StoredProfile(name, version, profile, who, now_ms())
        row = {
            "PartitionKey": PROFILE_PK,
            "RowKey": name,
            "version": version,
            "profile": profile.model_dump_json(),
            "who": who,
            "at": str(stored.at),
        }
        try:
            if etag is None:
                await table.create_entity(row)
            else:
                await table.update_entity(
                    row, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError):
            continue
        await table.upsert_entity({**row, "PartitionKey": f"v:{name}", "RowKey": f"{version:06d}"})
        await _bump(table)
        return stored, version == 1
    raise ResourceModifiedError(f"profile {name}: 20 concurrent writers in a row")


async def get_profile(table: TableOps, name: str, version: int | None = None) -> StoredProfile | None:
    try:
        if version is None:
            return _stored(await table.get_entity(PROFILE_PK, name))
        entity = dict(await table.get_entity(f"v:{name}", f"{version:06d}"))
        entity["RowKey"] = name
        return _stored(entity)
    except ResourceNotFoundError:
        return None


async def history(table: TableOps, name: str) -> list[dict[str, Any]]:
    rows = await table.query(
        "PartitionKey eq @pk",
        {"pk": f"v:{name}"},
        select=["RowKey", "who", "at"],
        parse=lambda e: {
            "version": int(e["RowKey"]),
            "updatedBy": e.get("who"),
            "updatedAt": int(str(e.get("at") or 0)),
        },
    )
    return sorted(rows, key=lambda r: r["version"], reverse=True)


async def delete_profile(table: TableOps, name: str) -> bool:
    try:
        await table.get_entity(PROFILE_PK, name)
    except ResourceNotFoundError:
        return False
    await table.delete_entity(PROFILE_PK, name)  # the history stays: old calls name their version
    await _bump(table)
    return True


async def put_route(table: TableOps, number: str, profile: str, who: str) -> bool:
    """True when the route is new."""
    try:
        await table.get_entity(ROUTE_PK, number)
        created = False
    except ResourceNotFoundError:
        created = True
    await table.upsert_entity(
        {"PartitionKey": ROUTE_PK, "RowKey": number, "profile": profile, "who": who, "at": str(now_ms())}
    )
    await _bump(table)
    return created


async def delete_route(table: TableOps, number: str) -> bool:
    try:
        await table.get_entity(ROUTE_PK, number)
    except ResourceNotFoundError:
        return False
    await table.delete_entity(ROUTE_PK, number)
    await _bump(table)
    return True


@dataclass(slots=True)
class ProfileCache:
    """Profiles and routes as of the store's last generation, refreshed in the background."""

    table: TableOps
    default_voice: str = "marin"
    header: str = ""  # a SIP header that may name the profile (after the called number)
    generation: int = -1
    profiles: dict[str, StoredProfile] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    interval_s: float = 1.0
    looked_at: float = float("-inf")  # monotonic: when the store was last asked (`refresh`)
    healthy: bool = True  # the last look reached the store
    _looking: asyncio.Task[bool] | None = None

    async def refresh(self) -> bool:
        """Reload when the generation moved; True when it did."""
        self.looked_at = time.monotonic()  # a read at start-up counts: the first call need not repeat it
        try:
            generation = int((await self.table.get_entity(META_PK, GENERATION_RK))["generation"])
        except ResourceNotFoundError:
            generation = 0
        if generation == self.generation:
            return False
        profiles = await self.table.query("PartitionKey eq @pk", {"pk": PROFILE_PK}, parse=_stored)
        routes = await self.table.query(
            "PartitionKey eq @pk", {"pk": ROUTE_PK}, parse=lambda e: (str(e["RowKey"]), str(e["profile"]))
        )
        self.profiles = {p.name: p for p in profiles}
        self.routes = dict(routes)
        self.generation = generation
        return True

    async def current(self, wait_s: float = 0.5) -> bool:
        """Make the cache current for a call about to be routed; True when it changed meanwhile.

        Looks at the store only when the last look is older than `interval_s`, one look at a
        time (callers that arrive meanwhile wait for the same one), each caller waiting at most
        `wait_s`. While the store is failing nobody waits: the last profiles serve, and the
        store is asked again at most once per interval in the background. Nothing is read
        while no call comes in (a polling task would cost an idle worker a request a second)."""
        task = self._looking
        if task is None or task.done():
            if time.monotonic() - self.looked_at < self.interval_s:
                return False
            task = self._looking = asyncio.ensure_future(self._look())  # stamps `looked_at`
        if not self.healthy:
            return False
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        return bool(done) and task.result()

    async def _look(self) -> bool:
        try:
            changed = await self.refresh()
        except AzureError as exc:
            log.warning("profiles not refreshed: %s", type(exc).__name__)
            self.healthy = False
            return False
        except Exception:  # never fail a call for this: it gets the last profiles read
            log.exception("profiles not refreshed")
            self.healthy = False
            return False
        self.healthy = True
        return changed

    async def close(self) -> None:
        """Stop a look still under way (the worker is shutting down)."""
        if self._looking is not None:
            self._looking.cancel()
            await asyncio.gather(self._looking, return_exceptions=True)

    def default(self) -> StoredProfile:
        return self.profiles.get(DEFAULT) or StoredProfile(DEFAULT, 0, builtin_default(self.default_voice), "", 0)

    def choose(self, headers: list[SipHeader], caller: str | None) -> ChosenProfile:
        """By the called number's route, then the configured header, else the default."""
        called = called_number(headers)
        name = self.routes.get(called or "") if called else None
        if name is None and self.header:
            wanted = self.header.lower()
            name = next((h.value.strip() for h in headers if h.name.lower() == wanted), None)
        stored = self.profiles.get(name or "") or self.default()
        return ChosenProfile(
            name=stored.name,
            version=stored.version,
            profile=stored.profile,
            variables=call_variables(caller, called, headers),
        )


def route_key(number: str) -> str | None:
    """A route's key: the E.164 number, or None when `number` is not one."""
    normal = e164(number)
    digits = normal.removeprefix("+")
    return normal if normal.startswith("+") and digits.isdigit() and 6 <= len(digits) <= 15 else None
