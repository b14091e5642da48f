"""An ordinary discord.py bot. Nothing in it knows about Guildhall: `sitecustomize.py` beside
it (on PYTHONPATH) points discord.py at the server.

    DISCORD_TOKEN=...        the bot's token
    BOT_SHARDED=1            run as an AutoShardedBot (asks /gateway/bot for its shards)

Commands: `!ping` answers "pong", reacts to its answer and edits it to "pong!"; `!cleanup`
deletes that answer; a member who joins is welcomed in the guild's first text channel.
"""

import os

import discord
from discord.ext import commands

intents = discord.Intents.default()
intents.message_content = True
intents.members = True

Bot = commands.AutoShardedBot if os.environ.get("BOT_SHARDED") == "1" else commands.Bot
bot = Bot(command_prefix="!", intents=intents)
last_answer: dict[int, discord.Message] = {}


@bot.event
async def on_ready() -> None:
    print(f"ready {bot.user.name} guilds={len(bot.guilds)} shards={bot.shard_count}", flush=True)


@bot.event
async def on_message(message: discord.Message) -> None:
    await bot.process_commands(message)


@bot.event
async def on_member_join(member: discord.Member) -> None:
    channel = member.guild.text_channels[0]
    await channel.send(f"welcome {member.name}")


@bot.command()
async def ping(ctx: commands.Context) -> None:
    answer = await ctx.send("pong")
    await answer.add_reaction("\N{THUMBS UP SIGN}")
    answer = await answer.edit(content="pong!")
    last_answer[ctx.channel.id] = answer


@bot.command()
async def cleanup(ctx: commands.Context) -> None:
    answer = last_answer.pop(ctx.channel.id, None)
    if answer is not None:
        await answer.delete()
    await ctx.send("cleaned up")


bot.run(os.environ["DISCORD_TOKEN"])
