"""Bots: accounts that post with a token instead of a password.

A bot token is a sign-in of a bot account that lasts until revoked (``signin.SignIns``);
the database keeps only its digest. A bot sends it as ``auth.token`` on Socket.IO or as
``Authorization: Bearer`` to ``POST /api/rooms/{room}/messages``; on a private server it
also passes the access gate, so a bot needs no second secret.
"""

from __future__ import annotations

#: What every bot token starts with: how one is told from the access token, and found by
#: secret scanners in code and logs.
BOT_PREFIX = "chatapp-bot-"
#: A bot token does not expire: it lasts until revoked.
BOT_TOKEN_YEARS = 100


def is_bot_token(token: object) -> bool:
    return isinstance(token, str) and token.startswith(BOT_PREFIX) and len(token) <= 100
