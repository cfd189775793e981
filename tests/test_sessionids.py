"""Session ids: unpredictable, unique, in engine.io's shape, and never shared by processes."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import engineio

from chatapp.keys import sessions_key
from chatapp.sessionids import BATCH, RANDOM_BYTES, SessionIds

from .test_fast_paths import chat, running

#: python-engineio's own ids: 15 bytes in URL-safe base64.
SHAPE = re.compile(r"[A-Za-z0-9_-]{20}")


def test_ids_have_engineios_shape() -> None:
    theirs = engineio.AsyncServer().generate_id()
    ours = SessionIds().next()
    assert SHAPE.fullmatch(theirs)
    assert SHAPE.fullmatch(ours)


def test_ids_are_unique_across_many_batches() -> None:
    ids = SessionIds()
    made = [ids.next() for _ in range(BATCH * 5 + 7)]
    assert len(set(made)) == len(made)
    # The random part too: the sequence number alone would make them unique.
    assert len({i[:16] for i in made}) == len(made)


def test_a_forked_process_draws_ids_of_its_own() -> None:
    ids = SessionIds()
    ids.next()  # the parent has a pool, most of it unused
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next ids and leave at once
        os.close(read)
        os.write(write, " ".join(ids.next() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [ids.next() for _ in range(10)]
    assert len(child) == 10
    assert not {i[:16] for i in child} & {i[:16] for i in parent}


async def test_the_server_hands_out_these_ids(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        client = await chat(server.url)
        ids = server.app[sessions_key].sio.eio.generate_id.__self__
        assert isinstance(ids, SessionIds)
        # Both of the connection's ids (engine.io's and Socket.IO's) came from its pool.
        for sid in (client.sio.eio.sid, client.sio.get_sid()):
            assert base64.urlsafe_b64decode(sid)[:RANDOM_BYTES] in ids._pool
        await client.close()
