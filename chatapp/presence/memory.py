"""Presence kept in this process's memory: the one-process default."""

from __future__ import annotations

from collections import defaultdict

from .base import ChangeCallback


class MemoryPresence:
    def __init__(self) -> None:
        # room -> name -> connection ids
        self._rooms: defaultdict[str, dict[str, set[str]]] = defaultdict(dict)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._rooms.clear()

    def on_change(self, callback: ChangeCallback) -> None:
        pass  # one process: every change goes through its own handlers

    async def join(self, room: str, conn_id: str, name: str) -> bool:
        conns = self._rooms[room].setdefault(name, set())
        conns.add(conn_id)
        return len(conns) == 1

    async def leave(self, room: str, conn_id: str, name: str) -> bool:
        names = self._rooms.get(room)
        if names is None or name not in names:
            return False
        conns = names[name]
        conns.discard(conn_id)
        if conns:
            return False
        del names[name]
        if not names:
            del self._rooms[room]
        return True

    async def users(self, room: str) -> list[str]:
        return list(self._rooms.get(room, ()))

    async def counts(self) -> dict[str, int]:
        return {room: len(names) for room, names in self._rooms.items()}
