from slack_bolt.async_app import AsyncApp

from handlers.commands.flag import flag_command
from handlers.commands.release import release_command


def register(app: AsyncApp) -> None:
    app.command("/release")(release_command)
    app.command("/flag")(flag_command)
