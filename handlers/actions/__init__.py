import re

from slack_bolt.async_app import AsyncApp

from bot.blocks.actions import (
    DEPLOY_RETRY,
    FLAG_APPROVE,
    FLAG_CANCEL,
    FREEZE_APPROVE,
    FREEZE_REJECT,
    GATE_APPROVE,
    GATE_REJECT,
    GATE_RERUN,
    GATE_WAIVE,
    GATE_WAIVE_APPROVE,
    INCIDENT_ACK,
    INCIDENT_GROUP_ACK,
    OVERRIDE_APPROVE,
    ROLLBACK_APPROVE,
    ROLLBACK_CANCEL,
    ROLLBACK_START,
)
from handlers.actions.deploy_buttons import retry_clicked
from handlers.actions.flag_buttons import approve_flag_clicked, cancel_flag_clicked
from handlers.actions.freeze_buttons import approve_freeze_clicked, reject_freeze_clicked
from handlers.actions.gate_buttons import (
    approve_clicked,
    approve_waiver_clicked,
    reject_clicked,
    rerun_clicked,
    waive_clicked,
)
from handlers.actions.incident_buttons import acknowledge_all_clicked, acknowledge_clicked
from handlers.actions.override_buttons import approve_override_clicked
from handlers.actions.rollback_buttons import (
    approve_rollback_clicked,
    cancel_rollback_clicked,
    rollback_clicked,
)
from handlers.actions.unknown import unknown_clicked


def register(app: AsyncApp) -> None:
    app.action(GATE_APPROVE)(approve_clicked)
    app.action(GATE_REJECT)(reject_clicked)
    app.action(GATE_RERUN)(rerun_clicked)
    app.action(GATE_WAIVE)(waive_clicked)
    app.action(GATE_WAIVE_APPROVE)(approve_waiver_clicked)
    app.action(ROLLBACK_START)(rollback_clicked)
    app.action(ROLLBACK_APPROVE)(approve_rollback_clicked)
    app.action(ROLLBACK_CANCEL)(cancel_rollback_clicked)
    app.action(INCIDENT_ACK)(acknowledge_clicked)
    app.action(INCIDENT_GROUP_ACK)(acknowledge_all_clicked)
    app.action(FLAG_APPROVE)(approve_flag_clicked)
    app.action(FLAG_CANCEL)(cancel_flag_clicked)
    app.action(DEPLOY_RETRY)(retry_clicked)
    app.action(OVERRIDE_APPROVE)(approve_override_clicked)
    app.action(FREEZE_APPROVE)(approve_freeze_clicked)
    app.action(FREEZE_REJECT)(reject_freeze_clicked)
    # Last: Bolt runs the first listener that matches, so this only gets what no other does.
    app.action(re.compile(".*"))(unknown_clicked)
