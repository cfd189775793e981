"""Presence shared by several processes in Redis, with heartbeat expiry of dead processes.

Keys, all under ``<prefix>:presence:``:

* ``conns:<room>``  hash ``<process>/<sid>`` -> name: every connection in the room;
* ``names:<room>``  hash name -> number of its connections (tabs merged across processes);
* ``rooms``         set of rooms with anyone online, for the room list's head counts;
* ``proc:<process>`` hash sid -> room: one process's connections, to remove them at once;
* ``alive:<process>`` a key the process renews every ``ttl / 4``; it expires after ``ttl``;
* ``procs``         set of processes that registered connections.

Every change runs as one Lua script, so "this name just came online / finally left" is
decided once cluster-wide, by whoever made the change. Each process's loop renews its own
key and reaps processes whose key expired (killed, frozen, or cut off from Redis), and the
caller of the reap announces the names that left. A process whose key had expired, or
whose updates failed while Redis was unreachable, re-registers exactly its connections.

While Redis is unreachable, answers come from this process's own connections, and the
outage is logged once, as is the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from .. import redisconn
from ..settings import redacted
from ..tasks import cancel_and_wait
from .base import ChangeCallback

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Redis connections presence uses at most; more joins and leaves at once wait their turn.
CONNECTIONS = 32

# Shared by the scripts: remove one connection, return its name if that name is now gone.
_LEAVE_FN = """
local function leave(p, proc, sid, room)
  local conns = p .. ':presence:conns:' .. room
  local field = proc .. '/' .. sid
  local name = redis.call('HGET', conns, field)
  redis.call('HDEL', p .. ':presence:proc:' .. proc, sid)
  if not name then return false end
  redis.call('HDEL', conns, field)
  local names = p .. ':presence:names:' .. room
  if redis.call('HINCRBY', names, name, -1) > 0 then return false end
  redis.call('HDEL', names, name)
  if redis.call('HLEN', names) == 0 then redis.call('SREM', p .. ':presence:rooms', room) end
  return name
end
local function join(p, proc, sid, room, name)
  local conns = p .. ':presence:conns:' .. room
  if redis.call('HSETNX', conns, proc .. '/' .. sid, name) == 0 then return 0 end
  redis.call('HSET', p .. ':presence:proc:' .. proc, sid, room)
  redis.call('SADD', p .. ':presence:rooms', room)
  if redis.call('HINCRBY', p .. ':presence:names:' .. room, name, 1) == 1 then return 1 end
  return 0
end
"""

# ARGV: prefix, process, sid, room, name -> 1 if the name just came online.
_JOIN = _LEAVE_FN + "return join(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"

# ARGV: prefix, process, sid, room -> 1 if the connection's name finally left.
_LEAVE = _LEAVE_FN + "if leave(ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 1 end return 0"

# ARGV: prefix, process, ttl ms, expected number of connections -> 1 if nothing needs
# re-registering (the key was alive and the count matches), 0 if the count differs, -1 if
# the key was gone (Redis lost its data, or the process was reaped).
_HEARTBEAT = """
local p, proc = ARGV[1], ARGV[2]
local alive = p .. ':presence:alive:' .. proc
local existed = redis.call('EXISTS', alive)
redis.call('SET', alive, '1', 'PX', ARGV[3])
redis.call('SADD', p .. ':presence:procs', proc)
if existed == 0 then return -1 end
if redis.call('HLEN', p .. ':presence:proc:' .. proc) == tonumber(ARGV[4]) then return 1 end
return 0
"""

# ARGV: prefix, process, ttl ms, then sid, room, name for each connection of the process.
# Makes Redis hold exactly those; returns {'joined'|'left', room, name, ...}.
_RESYNC = (
    _LEAVE_FN
    + """
local p, proc = ARGV[1], ARGV[2]
redis.call('SET', p .. ':presence:alive:' .. proc, '1', 'PX', ARGV[3])
redis.call('SADD', p .. ':presence:procs', proc)
local want = {}
for i = 4, #ARGV, 3 do want[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]} end
local events = {}
local have = redis.call('HGETALL', p .. ':presence:proc:' .. proc)
for i = 1, #have, 2 do
  local sid, room = have[i], have[i + 1]
  local w = want[sid]
  local stored = redis.call('HGET', p .. ':presence:conns:' .. room, proc .. '/' .. sid)
  if not w or w[1] ~= room or w[2] ~= stored then
    local gone = leave(p, proc, sid, room)
    if gone then
      table.insert(events, 'left'); table.insert(events, room); table.insert(events, gone)
    end
  end
end
for i = 4, #ARGV, 3 do
  if join(p, proc, ARGV[i], ARGV[i + 1], ARGV[i + 2]) == 1 then
    table.insert(events, 'joined'); table.insert(events, ARGV[i + 1])
    table.insert(events, ARGV[i + 2])
  end
end
return events
"""
)

# ARGV: prefix, process, 1 to reap only if its key expired -> {room, name, ...} of the
# names that left with it.
_REAP = (
    _LEAVE_FN
    + """
local p, proc = ARGV[1], ARGV[2]
local alive = p .. ':presence:alive:' .. proc
if ARGV[3] == '1' and redis.call('EXISTS', alive) == 1 then return {} end
local pc = p .. ':presence:proc:' .. proc
local have = redis.call('HGETALL', pc)
local gone = {}
for i = 1, #have, 2 do
  local name = leave(p, proc, have[i], have[i + 1])
  if name then table.insert(gone, have[i + 1]); table.insert(gone, name) end
end
redis.call('DEL', pc, alive)
redis.call('SREM', p .. ':presence:procs', proc)
return gone
"""
)


class _Gate:
    """Updates run concurrently; a resync runs alone, so that it never undoes an update
    that reached Redis while the resync's snapshot of this process was in flight."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._active = 0

    @contextlib.asynccontextmanager
    async def update(self) -> AsyncIterator[None]:
        await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def alone(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPresence:
    """Presence in Redis for a cluster of chatapp processes sharing ``prefix``."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ttl = ttl
        self.process = uuid.uuid4().hex[:16]
        self._redis = redisconn.connect(url, max_connections=CONNECTIONS)
        self._join = self._redis.register_script(_JOIN)
        self._leave = self._redis.register_script(_LEAVE)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._resync = self._redis.register_script(_RESYNC)
        self._reap = self._redis.register_script(_REAP)
        self._local: dict[str, tuple[str, str]] = {}  # sid -> (room, name)
        self._callback: ChangeCallback | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gate = _Gate()
        self._dirty = True  # Redis may not hold exactly our connections
        self._down = False

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, "presence", *parts))

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._beat()
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
        self._loop_task = asyncio.create_task(self._run(), name="presence-heartbeat")
        log.info(
            "presence in Redis %s under %s (process %s, expiry %gs)",
            redacted(self.url),
            self._key(),
            self.process,
            self.ttl,
        )

    async def close(self) -> None:
        await cancel_and_wait(self._loop_task)
        for task in list(self._tasks):
            task.cancel()
        self._local.clear()
        try:
            # Leave nothing behind for the others' janitors to announce.
            await self._reap(args=[self.prefix, self.process, "0"])
        except (RedisError, OSError) as exc:
            log.warning("presence: could not remove this process's entries from Redis: %s", exc)
        await self._redis.aclose()

    def on_change(self, callback: ChangeCallback) -> None:
        self._callback = callback

    # -- the interface ------------------------------------------------------------------

    async def join(self, room: str, conn_id: str, name: str) -> bool:
        async with self._gate.update():
            was_here = any(r == room and n == name for r, n in self._local.values())
            self._local[conn_id] = (room, name)
            new = await self._call(
                lambda: self._join(args=[self.prefix, self.process, conn_id, room, name]),
                None,
            )
        return bool(new) if new is not None else not was_here

    async def leave(self, room: str, conn_id: str, name: str) -> bool:
        async with self._gate.update():
            self._local.pop(conn_id, None)
            gone = await self._call(
                lambda: self._leave(args=[self.prefix, self.process, conn_id, room]), None
            )
        if gone is not None:
            return bool(gone)
        return not any(r == room and n == name for r, n in self._local.values())

    async def users(self, room: str) -> list[str]:
        names = await self._call(lambda: self._redis.hkeys(self._key("names", room)), None)
        if names is None:
            return list({n for r, n in self._local.values() if r == room})
        return [_text(n) for n in names]

    async def counts(self) -> dict[str, int]:
        async def counts() -> dict[str, int]:
            rooms = [_text(r) for r in await self._redis.smembers(self._key("rooms"))]
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.hlen(self._key("names", room))
                sizes = await pipe.execute()
            return {room: int(n) for room, n in zip(rooms, sizes, strict=True) if n}

        found = await self._call(counts, None)
        if found is not None:
            return found
        local: dict[str, set[str]] = {}
        for room, name in self._local.values():
            local.setdefault(room, set()).add(name)
        return {room: len(names) for room, names in local.items()}

    # -- keeping Redis right ------------------------------------------------------------

    async def _call(self, op: Callable[[], Awaitable[T]], fallback: T) -> T:
        try:
            result = await op()
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return fallback
        return result

    def _unreachable(self, exc: BaseException) -> None:
        self._dirty = True
        if not self._down:
            self._down = True
            log.warning(
                "presence: Redis is unreachable (%s); showing this process's users only "
                "until it is back",
                exc,
            )

    async def _run(self) -> None:
        interval = self.ttl / 4
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
                await self._reap_dead()
            except (RedisError, OSError) as exc:
                self._unreachable(exc)
            except Exception:
                log.exception("presence heartbeat failed")

    async def _beat(self) -> None:
        ttl_ms = str(int(self.ttl * 1000))
        beat = 0
        if not self._dirty:
            beat = await self._heartbeat(
                args=[self.prefix, self.process, ttl_ms, str(len(self._local))]
            )
        if beat == 1:
            return
        async with self._gate.alone():
            self._dirty = False
            local = dict(self._local)
            args = [self.prefix, self.process, ttl_ms]
            for sid, (room, name) in local.items():
                args += [sid, room, name]
            events = [_text(e) for e in await self._resync(args=args)]
        if self._down:
            self._down = False
            log.info("presence: Redis is reachable again; %d connection(s) registered", len(local))
        elif beat == -1:
            # No call failed, so nothing else says so: Redis restarted in between (or this
            # process stalled past the expiry and was reaped).
            log.info(
                "presence: Redis had lost this process's entries; %d connection(s) registered",
                len(local),
            )
        # Only the lists are refreshed, without "joined"/"left" notices: after a Redis
        # restart every name is re-registered, though nobody came or went.
        for room in sorted({events[i + 1] for i in range(0, len(events), 3)}):
            self._announce(room, None, None)

    async def _reap_dead(self) -> None:
        procs = [_text(p) for p in await self._redis.smembers(self._key("procs"))]
        others = [p for p in procs if p != self.process]
        if not others:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for proc in others:
                pipe.exists(self._key("alive", proc))
            alive = await pipe.execute()
        for proc, is_alive in zip(others, alive, strict=True):
            if is_alive:
                continue
            # Atomic and re-checked in Redis: of several janitors, one announces.
            gone = [_text(v) for v in await self._reap(args=[self.prefix, proc, "1"])]
            if gone:
                log.info(
                    "presence: process %s stopped answering; %d name(s) left with it",
                    proc,
                    len(gone) // 2,
                )
            for i in range(0, len(gone), 2):
                self._announce(gone[i], None, gone[i + 1])

    def _announce(self, room: str, joined: str | None, left: str | None) -> None:
        if self._callback is None:
            return
        task = asyncio.create_task(self._callback(room, joined, left))
        self._tasks.add(task)
        task.add_done_callback(self._announced)

    def _announced(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("presence: could not announce a change: %s", task.exception())
