"""The Slack app asks only for the scopes of the calls the bot makes (least privilege)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
# Each Web API method the bot may call, and the bot scope it needs (api.slack.com/methods).
SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "usergroups.users.list": "usergroups:read",
}
# Methods that need no scope, or only the one a manifest always has.
NO_SCOPE = {"auth.test", "apps.connections.open"}


def bot_scopes(manifest: str) -> set[str]:
    """The `oauth_config.scopes.bot` list of a manifest (plain YAML: the list under `bot:`)."""
    text = (ROOT / manifest).read_text()
    block = text.split("scopes:", 1)[1].split("bot:", 1)[1]
    scopes = set()
    for line in block.splitlines()[1:]:
        item = re.fullmatch(r"\s+- ([\w:.]+)\s*", line)
        if item is None:
            break
        scopes.add(item.group(1))
    return scopes


def methods_called() -> set[str]:
    """Web API methods named in the bot's code (the terminal demo's stand-in aside)."""
    found: set[str] = set()
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]:
        if "devtools" in path.parts:
            continue
        text = path.read_text()
        found |= set(
            re.findall(r'"((?:chat|users|usergroups|conversations|reactions)\.\w+)"', text)
        )
        found |= {
            name.replace("_", ".", 1).replace("users_list", "users.list")
            for name in re.findall(r"\.((?:chat|usergroups|users|conversations)_\w+)\(", text)
        }
    return found


def test_every_method_the_bot_calls_has_its_scope_and_no_scope_is_unused():
    called = methods_called()
    assert called, "no Web API call found: the scan is broken"
    unknown = called - set(SCOPE_OF) - NO_SCOPE
    assert not unknown, f"add these methods' scopes to SCOPE_OF and the manifests: {unknown}"
    needed = {"commands", "chat:write.public"} | {SCOPE_OF[m] for m in called if m in SCOPE_OF}
    readme = (ROOT / "README.md").read_text()
    for manifest in ("manifest.yml", "manifest.socket-mode.yml"):
        assert bot_scopes(manifest) == needed, manifest
    for scope in needed:
        assert f"| `{scope}` |" in readme, scope
