"""Points an unchanged discord.py bot at a Guildhall server.

discord.py connects to hard-coded Discord URLs. Python imports a module named `sitecustomize`
from PYTHONPATH at start-up, before the bot's own code runs, so putting this directory on
PYTHONPATH redirects every bot started from that environment without touching its code:

    PYTHONPATH=examples/discord \
    DISCORD_API_BASE=https://chat.example.org/api/v10 \
    DISCORD_GATEWAY_URL=wss://chat.example.org/discord/gateway \
    python3 my_bot.py

Both variables are needed: discord.py sends REST requests to `Route.BASE` and connects its
gateway to `DiscordWebSocket.DEFAULT_GATEWAY` (it asks `/gateway/bot` only when sharding).
Without them nothing is changed.
"""

import os


def _redirect() -> None:
    api_base = os.environ.get("DISCORD_API_BASE")
    gateway_url = os.environ.get("DISCORD_GATEWAY_URL")
    if not api_base and not gateway_url:
        return
    try:
        import discord.gateway
        import discord.http
        import yarl
    except ImportError:
        return
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


_redirect()
