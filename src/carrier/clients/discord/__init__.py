"""The Discord client: a discord.py bot whose cogs convert Discord events for the engine.

    bot = build_bot(settings, store)      # carrier.clients.discord.bot
    await bot.start(token)

or ``await run_discord(settings, store)`` (what ``carrier run`` calls).
"""
