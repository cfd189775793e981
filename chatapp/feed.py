"""Per-room message delivery in this process: each message once, in id order, no gaps.

Messages reach a process in any order (from its own handlers and, in a cluster, from
Redis), and a connection can join while messages are in flight. The feed keeps, for each
room with local members, the id last delivered here; it delivers the next id at once,
holds later ones until the gap is filled (from Redis or, after a short grace, from the
store, which commits ids in order before anything is broadcast), and drops repeats.

A joining connection is *pending*: whatever the room delivers meanwhile is buffered for
it. When its history query returns, :meth:`RoomFeed.complete_join` merges history and
buffer up to the room's delivered id, and makes it live in the same synchronous step,
so nothing falls between the welcome and the first live message, and nothing is sent twice.
A connection whose ``since`` is beyond what this process has delivered (it saw those
messages through another process, whose fan-out here lags) waits, joined but not yet live,
until the room here reaches its ``since``.

Changes to sent messages (a deletion, for now) travel the same way in an order of their
own: each has the room's next change number (``rev``), and the feed delivers them once, in
``rev`` order, filling gaps from the store (``MessageStore.changes``). A change carries the
message's whole new state, so a repeat or a stale one is harmless: clients keep the state
with the highest ``rev``. A change to a message not yet delivered here waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from .metrics import Metrics
from .paging import newest_within
from .sessions import Sessions
from .store import Message, MessageStore, Page

log = logging.getLogger(__name__)

#: The Socket.IO event that carries a room message to its members.
MESSAGE_EVENT = "message"
#: The Socket.IO event that carries a message's new state after a change.
CHANGED_EVENT = "changed"

#: How long a gap may stay open before it is filled from the store: long enough for a
#: message still travelling through Redis to arrive by itself.
GAP_GRACE = 0.25
FILL_BATCH = 500


@dataclass
class _Room:
    last: int | None = None  # id last delivered to live members; None until one is live
    live: dict[str, str] = field(default_factory=dict)  # sid -> engine.io sid
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Joined members that already have messages this process has not delivered yet (they
    # saw them through another process): sid -> (engine.io sid, the id they have up to).
    ahead: dict[str, tuple[str, int]] = field(default_factory=dict)
    held: dict[int, dict[str, Any]] = field(default_factory=dict)  # arrived ahead of a gap
    filler: asyncio.Task[None] | None = None
    catch_up: asyncio.Task[None] | None = None
    # The same for changes, by rev: the newest delivered, the buffers of joining members,
    # and those that arrived ahead of a gap.
    rev: int | None = None
    pending_changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    held_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    change_filler: asyncio.Task[None] | None = None
    # Changes delivered before their message was: message id -> its newest state.
    early: dict[int, dict[str, Any]] = field(default_factory=dict)


class RoomFeed:
    def __init__(
        self, store: MessageStore, sessions: Sessions[Any], metrics: Metrics | None = None
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._metrics = metrics if metrics is not None else Metrics()
        self._rooms: dict[str, _Room] = {}

    @property
    def rooms(self) -> int:
        """The rooms with someone in them on this process."""
        return len(self._rooms)

    # -- joining and leaving ------------------------------------------------------------

    def begin_join(self, sid: str, room: str) -> None:
        """Start buffering the room's messages for ``sid``; call before reading history."""
        st = self._rooms.get(room)
        if st is None:
            st = self._rooms[room] = _Room()
        st.pending[sid] = []
        st.pending_changes[sid] = []

    def complete_join(
        self,
        sid: str,
        room: str,
        page: Page,
        head: int,
        since: int | None,
        limit: int,
        rev: int = 0,
    ) -> tuple[list[dict[str, Any]], bool, list[dict[str, Any]]] | None:
        """Make ``sid`` live; return the history its welcome must carry, ``has_more``, and
        the changes to send right after the welcome.

        ``page`` is the history read after :meth:`begin_join`; ``head`` the room's newest
        id at that read; ``rev`` the room's newest change number, read before ``page``
        (so the page shows every change up to it). The caller must send the welcome
        before its next ``await``. Returns None if ``sid`` left meanwhile.
        """
        st = self._rooms.get(room)
        if st is None or sid not in st.pending:
            return None
        merged = {m.id: m.to_dict() for m in page.messages}
        for msg in st.pending.pop(sid):
            merged.setdefault(msg["id"], msg)
        changes = st.pending_changes.pop(sid, [])
        if st.last is None:
            # The first live member here: the room's stream continues from what it has.
            st.last = head
            while st.last + 1 in merged:
                st.last += 1
            for msg_id, msg in merged.items():
                if msg_id > st.last:
                    st.held[msg_id] = msg
            if st.held:
                self._schedule_fill(room, st)
            changes = self._start_changes(room, st, rev, changes)
        upto = st.last
        ids = sorted(i for i in merged if i <= upto and (since is None or i > since))
        history, cut = newest_within([merged[i] for i in ids[-limit:]])
        has_more = page.has_more or len(ids) > limit or cut
        eio_sid = self._sessions.eio_sid(sid)
        if eio_sid is not None:
            # A client reconnecting with a ``since`` beyond what this process delivered
            # has those messages already: it goes live once the room reaches its since.
            floor = min(since, head) if since is not None else upto
            if floor > upto:
                st.ahead[sid] = (eio_sid, floor)
            else:
                st.live[sid] = eio_sid
        return history, has_more, changes

    def _start_changes(
        self, room: str, st: _Room, rev: int, buffered: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Start the room's order of changes at ``rev`` (the first live member's page
        shows every change up to it); return the buffered changes that follow on from it,
        for that member, and hold the rest until the gap before them is filled."""
        st.rev = rev
        follow: list[dict[str, Any]] = []
        for change in sorted(buffered, key=lambda c: int(c["rev"])):
            if change["rev"] <= st.rev:
                continue
            if change["rev"] > st.rev + 1:
                st.held_changes[change["rev"]] = change
                continue
            st.rev = change["rev"]
            assert st.last is not None
            if change["id"] > st.last:
                st.early[change["id"]] = change
            else:
                follow.append(change)
        if st.held_changes:
            self._schedule_change_fill(room, st)
        return follow

    def leave(self, sid: str, room: str) -> None:
        st = self._rooms.get(room)
        if st is None:
            return
        st.live.pop(sid, None)
        st.pending.pop(sid, None)
        st.pending_changes.pop(sid, None)
        st.ahead.pop(sid, None)
        if not st.live and not st.pending and not st.ahead:
            for task in (st.filler, st.catch_up, st.change_filler):
                if task is not None:
                    task.cancel()
            del self._rooms[room]

    # -- delivery -----------------------------------------------------------------------

    def receive(self, room: str, msg: dict[str, Any]) -> None:
        """Take one committed message of ``room`` (from this process or another) for
        delivery."""
        msg_id = msg.get("id")
        if not isinstance(msg_id, int):
            log.warning("ignoring a malformed message from the fan-out: %.200r", msg)
            return
        st = self._rooms.get(room)
        if st is None:
            return  # nobody here is in that room
        if st.last is None:
            for buffer in st.pending.values():
                buffer.append(msg)
            return
        if msg_id <= st.last:
            return  # already delivered (a repeat from a gap fill or a retry)
        if msg_id > st.last + 1:
            st.held[msg_id] = msg
            self._schedule_fill(room, st)
            return
        self._deliver(st, msg)
        while st.last + 1 in st.held:
            self._deliver(st, st.held.pop(st.last + 1))

    def _deliver(self, st: _Room, msg: dict[str, Any]) -> None:
        pkt = self._sessions.packet(MESSAGE_EVENT, msg)
        for eio_sid in st.live.values():
            self._sessions.put(eio_sid, pkt)
        self._metrics.deliveries.inc(len(st.live))
        for buffer in st.pending.values():
            buffer.append(msg)
        st.last = msg["id"]
        if st.ahead:
            self._promote(st)
        if st.early:
            change = st.early.pop(msg["id"], None)
            if change is not None and change["rev"] > msg.get("rev", 0):
                self._send_change(st, change)

    # -- changes --------------------------------------------------------------------------

    def receive_change(self, room: str, change: dict[str, Any]) -> None:
        """Take one committed change of ``room`` (a message's new state, with its
        ``rev``), from this process or another, for delivery."""
        rev, msg_id = change.get("rev"), change.get("id")
        if not isinstance(rev, int) or not isinstance(msg_id, int):
            log.warning("ignoring a malformed change from the fan-out: %.200r", change)
            return
        st = self._rooms.get(room)
        if st is None:
            return
        if st.rev is None:
            for buffer in st.pending_changes.values():
                buffer.append(change)
            return
        if rev <= st.rev:
            return
        st.held_changes[rev] = change
        if rev > st.rev + 1:
            self._schedule_change_fill(room, st)
            return
        self._deliver_held_changes(st)

    def _deliver_held_changes(self, st: _Room) -> None:
        assert st.rev is not None
        while st.rev + 1 in st.held_changes:
            self._deliver_change(st, st.held_changes.pop(st.rev + 1))

    def _deliver_change(self, st: _Room, change: dict[str, Any]) -> None:
        st.rev = change["rev"]
        for buffer in st.pending_changes.values():
            buffer.append(change)
        assert st.last is not None
        if change["id"] > st.last:
            # Its message has not been delivered here yet: sent after it.
            earlier = st.early.get(change["id"])
            if earlier is None or earlier["rev"] < change["rev"]:
                st.early[change["id"]] = change
            return
        self._send_change(st, change)

    def _send_change(self, st: _Room, change: dict[str, Any]) -> None:
        pkt = self._sessions.packet(CHANGED_EVENT, change)
        for eio_sid in st.live.values():
            self._sessions.put(eio_sid, pkt)
        # Members ahead of the room here have their messages, and need changes to them.
        for eio_sid, _ in st.ahead.values():
            self._sessions.put(eio_sid, pkt)

    def _schedule_change_fill(self, room: str, st: _Room) -> None:
        if st.change_filler is None or st.change_filler.done():
            st.change_filler = asyncio.create_task(
                self._fill_changes(room, st), name=f"feed-fill-changes-{room}"
            )

    async def _fill_changes(self, room: str, st: _Room) -> None:
        await asyncio.sleep(GAP_GRACE)
        while st.held_changes and self._rooms.get(room) is st and st.rev is not None:
            for rev in [r for r in st.held_changes if r <= st.rev]:
                del st.held_changes[rev]  # overtaken while the store was read
            if not st.held_changes:
                break
            start = st.rev
            upto = min(min(st.held_changes) - 1, start + FILL_BATCH)
            if upto > start:
                try:
                    missing = await self._store.changes(room, start, upto, FILL_BATCH)
                except Exception:
                    log.exception("room %s: could not fill changes after rev %d", room, start)
                    await asyncio.sleep(1.0)
                    continue
                self._fill_changes_from(st, start, upto, missing)
            self._deliver_held_changes(st)

    def _fill_changes_from(self, st: _Room, start: int, upto: int, found: list[Message]) -> None:
        """Deliver the changes the store has in ``(start, upto]``; a number it does not
        have was overtaken by a later change of the same message, which comes in turn."""
        if st.rev != start:
            return  # the gap closed by itself meanwhile
        for m in found:
            if m.rev > st.rev:
                self._deliver_change(st, m.to_dict())
        st.rev = max(st.rev, upto)
        for rev in [r for r in st.held_changes if r <= st.rev]:
            del st.held_changes[rev]

    @staticmethod
    def _promote(st: _Room) -> None:
        """Make live the members who were ahead of the room and no longer are."""
        assert st.last is not None
        for sid, (eio_sid, floor) in list(st.ahead.items()):
            if floor <= st.last:
                del st.ahead[sid]
                st.live[sid] = eio_sid

    def resync(self) -> None:
        """Deliver what the store has beyond each room's last delivered id.

        For after this process could not hear the other processes for a while: a message
        published meanwhile is not in any gap this process can see until the next one
        arrives, so each room with local members is compared with the store once.
        """
        for room, st in self._rooms.items():
            if st.last is not None and (st.catch_up is None or st.catch_up.done()):
                st.catch_up = asyncio.create_task(
                    self._catch_up(room, st), name=f"feed-catch-up-{room}"
                )

    async def _catch_up(self, room: str, st: _Room) -> None:
        try:
            head = await self._store.last_id(room)
            while self._rooms.get(room) is st and st.last is not None and st.last < head:
                start = st.last
                for m in await self._store.range(room, start, min(head, start + FILL_BATCH)):
                    self.receive(room, m.to_dict())
                if st.last == start:
                    break  # the gap filler owns whatever is missing now
            rev = await self._store.last_rev(room)
            while self._rooms.get(room) is st and st.rev is not None and st.rev < rev:
                start = st.rev
                upto = min(rev, start + FILL_BATCH)
                self._fill_changes_from(
                    st, start, upto, await self._store.changes(room, start, upto, FILL_BATCH)
                )
                self._deliver_held_changes(st)
                if st.rev == start:
                    break
        except Exception as exc:
            # The next message in the room or a client's reconnect catches up instead.
            log.warning("room %s: could not catch up from the store: %s", room, exc)
            return
        log.debug("room %s: caught up to id %s from the store", room, st.last)

    def _schedule_fill(self, room: str, st: _Room) -> None:
        if st.filler is None or st.filler.done():
            st.filler = asyncio.create_task(self._fill(room, st), name=f"feed-fill-{room}")

    async def _fill(self, room: str, st: _Room) -> None:
        await asyncio.sleep(GAP_GRACE)
        while st.held and self._rooms.get(room) is st and st.last is not None:
            start, upto = st.last, min(min(st.held) - 1, st.last + FILL_BATCH)
            if upto <= start:
                # The gap closed by itself; deliver what became contiguous.
                self.receive(room, st.held.pop(min(st.held)))
                continue
            try:
                missing = await self._store.range(room, start, upto)
            except Exception:
                log.exception("could not fill a gap in room %s after id %d; retrying", room, start)
                await asyncio.sleep(1.0)
                continue
            if not missing and st.last == start:
                log.error(
                    "room %s: ids %d-%d are not in the store; skipping the gap",
                    room,
                    start + 1,
                    upto,
                )
                st.last = upto
                self._promote(st)
            for m in missing:
                self.receive(room, m.to_dict())
            if st.held and min(st.held) == st.last + 1:
                self.receive(room, st.held.pop(st.last + 1))
            log.info("room %s: filled %d missing message(s) from the store", room, len(missing))
