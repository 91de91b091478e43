import re

from slack_bolt.async_app import AsyncApp

from bot.blocks.health import ACK_ACTION
from bot.blocks.release import APPROVE_ACTION, REJECT_ACTION, ROLLBACK_ACTION
from bot.services.change_flags import APPROVE_ACTION as APPROVE_FLAG
from bot.services.roll_back import APPROVE_ROLLBACK
from handlers.actions.flag_buttons import approve_flag_clicked
from handlers.actions.gate_buttons import approve_clicked, reject_clicked
from handlers.actions.incident_buttons import acknowledge_clicked
from handlers.actions.rollback_buttons import approve_rollback_clicked, rollback_clicked
from handlers.actions.unknown import unknown_clicked


def register(app: AsyncApp) -> None:
    app.action(APPROVE_ACTION)(approve_clicked)
    app.action(REJECT_ACTION)(reject_clicked)
    app.action(ROLLBACK_ACTION)(rollback_clicked)
    app.action(APPROVE_ROLLBACK)(approve_rollback_clicked)
    app.action(ACK_ACTION)(acknowledge_clicked)
    app.action(APPROVE_FLAG)(approve_flag_clicked)
    # Last: Bolt runs the first listener that matches, so this only gets what no other does.
    app.action(re.compile(".*"))(unknown_clicked)
