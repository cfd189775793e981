"""Search on a large history: seed a database with N messages (default a million, in 100
rooms, words drawn from a Zipf-like vocabulary as in chat), then time ``store.search``
for typical searches: a common word, a rare one, two words, a phrase, with a sender or a
room filter, and the deep pages.

    .venv/bin/python benchmarks/search.py [--messages 1000000] [--db path|postgresql://...]

It prints one line per search (median and p95 milliseconds over ``--repeat`` runs, and
how many results the first page had) and a JSON summary at the end. Query times are what
the store takes, without HTTP; the search API adds its usual request cost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatapp.search import parse_query
from chatapp.store import Message, open_store

ROOMS = 100
#: A chat's words: a few very common, many rare (rank r has weight 1/r).
COMMON = [
    "the",
    "to",
    "a",
    "i",
    "and",
    "is",
    "it",
    "you",
    "that",
    "of",
    "in",
    "for",
    "on",
    "this",
    "we",
    "be",
    "have",
    "with",
    "not",
    "are",
    "just",
    "can",
    "do",
    "so",
    "but",
    "at",
    "was",
    "what",
    "if",
    "no",
    "ok",
    "yes",
    "will",
    "like",
    "get",
    "me",
    "my",
    "now",
    "know",
    "think",
    "need",
    "there",
    "deploy",
    "build",
    "test",
    "fix",
    "review",
    "merge",
    "release",
    "lunch",
    "meeting",
    "today",
    "tomorrow",
    "please",
    "thanks",
]
NAMES = ["ann", "bob", "cy", "dee", "eve", "fay", "gus", "hal", "ivy", "jo"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    rare = {"".join(rng.choice(letters) for _ in range(rng.randint(4, 10))) for _ in range(size)}
    return COMMON + sorted(rare)


_WORDS = vocabulary(50_000, random.Random(0))
_CUMULATIVE = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(_WORDS))))


def texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words, cumulative = _WORDS, _CUMULATIVE
    out = []
    for _ in range(count):
        n = max(1, int(rng.expovariate(1 / 10)))
        out.append(" ".join(rng.choices(words, cum_weights=cumulative, k=min(n, 60))))
    return out


async def seed(db: str, count: int) -> float:
    store = open_store(db)
    await store.open()
    started = time.perf_counter()
    try:
        per_room = count // ROOMS
        now = int(time.time() * 1000) - count * 1000
        for r in range(ROOMS):
            room = f"room-{r:03d}"
            if await store.last_id(room):
                continue
            body = texts(per_room, seed=r)
            await store.restore(
                room,
                [
                    Message(
                        i + 1,
                        room,
                        NAMES[i % len(NAMES)],
                        text,
                        now + (r * per_room + i) * 1000 // ROOMS,
                        f"g:{NAMES[i % len(NAMES)]}",
                    )
                    for i, text in enumerate(body)
                ],
            )
            if r % 10 == 9:
                print(f"  seeded {(r + 1) * per_room} messages", file=sys.stderr, flush=True)
        seeded = time.perf_counter()
        while await store.index():  # what a running server does every second
            pass
        print(f"indexed for search in {time.perf_counter() - seeded:.1f} s", flush=True)
    finally:
        await store.close()
    return time.perf_counter() - started


SEARCHES = [
    ("a common word", "deploy", None),
    ("two common words", "deploy review", None),
    ("a phrase (two common words)", None, None),  # filled in from the data
    ("a rare word", None, None),  # filled in from the data
    ("a common word from one sender", "deploy from:ann", None),
    ("a common word in one room", "deploy in:room-007", None),
    ("a common word, page 10", "deploy", 180),
]


async def measure(db: str, repeat: int) -> list[dict[str, object]]:
    store = open_store(db)
    await store.open()
    sample = [t.split() for t in texts(200, seed=7)]
    rare = next(w for words in sample for w in words if w not in COMMON)
    pair = next(ws[:2] for ws in sample if len(ws) > 1 and ws[0] in COMMON and ws[1] in COMMON)
    filled = {"a rare word": rare, "a phrase (two common words)": f'"{pair[0]} {pair[1]}"'}
    results = []
    try:
        for label, q, offset in SEARCHES:
            q = q or filled[label]
            query = parse_query(q)
            times, found = [], 0
            for i in range(repeat + 1):
                started = time.perf_counter()
                page = await store.search(query, None, 21, offset or 0)
                if i:  # the first run warms the cache
                    times.append((time.perf_counter() - started) * 1000)
                found = len(page)
            times.sort()
            row = {
                "search": label,
                "q": q,
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
                "results": found,
            }
            print(
                f"{label:32} {row['q']!s:24} median {row['median_ms']:8.2f} ms  "
                f"p95 {row['p95_ms']:8.2f} ms  ({found} on the page)",
                flush=True,
            )
            results.append(row)
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--db", help="a SQLite path or postgresql:// URL (default: a temp file)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    db = args.db or os.path.join(tempfile.mkdtemp(prefix="chatapp-search-"), "chat.db")
    print(f"seeding {args.messages} messages into {db}", file=sys.stderr)
    seconds = asyncio.run(seed(db, args.messages))
    size = Path(db).stat().st_size if not db.startswith("postgres") else None
    print(f"seeded in {seconds:.1f} s" + (f", {size / 1e6:.0f} MB" if size else ""))
    rows = asyncio.run(measure(db, args.repeat))
    summary = {"messages": args.messages, "db": db, "seed_s": round(seconds, 1), "searches": rows}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
