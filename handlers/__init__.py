"""Slack listeners: parse, ack, hand off. One module per listener, one register() per kind."""

from slack_bolt.async_app import AsyncApp

from handlers import actions, commands, views


def register(app: AsyncApp) -> None:
    commands.register(app)
    actions.register(app)
    views.register(app)
