import re

from slack_bolt.async_app import AsyncApp

from bot.blocks.actions import GATE_REJECT_REASON, GATE_WAIVE_REASON, ROLLBACK_REASON
from handlers.views.reject_reason import reject_submitted
from handlers.views.rollback_reason import rollback_submitted
from handlers.views.unknown import unknown_submitted
from handlers.views.waive_reason import waive_submitted


def register(app: AsyncApp) -> None:
    app.view(GATE_REJECT_REASON)(reject_submitted)
    app.view(ROLLBACK_REASON)(rollback_submitted)
    app.view(GATE_WAIVE_REASON)(waive_submitted)
    # Last: only what no listener above takes.
    app.view(re.compile(".*"))(unknown_submitted)
