"""Every button's action_id and every form's callback_id, in one place: a new button gets its
id here, its rendering in bot/blocks, its listener in handlers/actions (or handlers/views).

The strings are in messages already posted: a click on a message the previous release of the
bot posted must still reach its listener, so an id is added, never renamed."""

from __future__ import annotations

# Buttons (block_actions)
GATE_APPROVE = "gate_approve"
GATE_REJECT = "gate_reject"
ROLLBACK_START = "rollback_start"  # on the release message and on incident alerts
ROLLBACK_APPROVE = "rollback_approve"
ROLLBACK_CANCEL = "rollback_cancel"  # on a rollback request that waits for approvals
INCIDENT_ACK = "incident_ack"
INCIDENT_GROUP_ACK = "incident_group_ack"  # on a summary of many incidents
FLAG_APPROVE = "flag_approve"
FLAG_CANCEL = "flag_cancel"  # on a flag change request that waits for approvals
DEPLOY_RETRY = "deploy_retry"  # on the release message, under a failed or blocked deploy
GATE_RERUN = "gate_rerun"  # on the release message, under a failed automatic gate
GATE_WAIVE = "gate_waive"  # the same; opens the waiver's reason form
OVERRIDE_APPROVE = "override_approve"  # an EMERGENCY override of a closed last environment
GATE_WAIVE_APPROVE = "gate_waive_approve"  # under a gate whose waiver waits for approvals
FREEZE_APPROVE = "freeze_approve"  # on a freeze request ([freeze] required above 0)
FREEZE_REJECT = "freeze_reject"  # the same; ends the request

# Forms (view_submission)
GATE_REJECT_REASON = "gate_reject_reason"
ROLLBACK_REASON = "rollback_reason"
GATE_WAIVE_REASON = "gate_waive_reason"
