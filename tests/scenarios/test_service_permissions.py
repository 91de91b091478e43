"""Per-service permissions (issue 18): `requesters` may start a service's releases and
`deployers` may deploy it to the last environment. Anyone else is refused at once, told what,
of which service and who may, and the refusal is audited; nothing is tagged or queued. Another
service without the keys is anyone's, as before."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bot.domain.config import Config
from tests.helpers.config import make_config
from tests.helpers.messages import release_message, wait_for_gates
from tests.helpers.repos import GitRemote, messy_remote


def web_and_api(tmp_path: Path, git_remote: GitRemote, **web_keys: Any) -> tuple[Config, Config]:
    """web (releasing `git_remote`, in #web-releases) with `web_keys` set, and api (a
    repository of its own, in #api-releases) with neither key: anyone's."""
    for folder in ("api", "web-log", "api-log"):
        (tmp_path / folder).mkdir()
    api_remote = messy_remote(tmp_path / "api")
    api_remote.commit("api: a change of its own")
    api_remote.push()
    web = make_config(git_remote, tmp_path / "web-log")
    api = make_config(api_remote, tmp_path / "api-log")
    web = dataclasses.replace(
        web,
        service="web",
        slack=dataclasses.replace(web.slack, channel="#web-releases"),
        **web_keys,
    )
    api = dataclasses.replace(
        api, service="api", slack=dataclasses.replace(api.slack, channel="#api-releases")
    )
    return web, api


async def refusals(services: Any, action: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await services.store.audit_entries()
        if e["action"] == action and e["outcome"] == "refused"
    ]


async def test_only_requesters_start_a_services_releases(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    web, api = web_and_api(tmp_path, git_remote, requesters=("S0WEBTEAM",))
    bot = await start_bot([web, api])
    bot.slack.usergroups["S0WEBTEAM"] = ["U0ALICE"]
    web_services, api_services = bot.bot.fleet.services
    tags_before = git_remote.remote_tags()

    # bob is not in the web team: refused, privately and clearly, and nothing is started.
    ack = await bot.command("rc web", user="U0BOB", user_name="bob")
    assert ack["text"] == "Only <!subteam^S0WEBTEAM> may start releases of web."
    assert ack.get("response_type") == "ephemeral"
    ack = await bot.command("hotfix web --description urgent", user="U0BOB", user_name="bob")
    assert "Only <!subteam^S0WEBTEAM> may start releases of web" in ack["text"]
    (rc_refusal,) = await refusals(web_services, "rc.create")
    assert rc_refusal["user_id"] == "U0BOB" and "S0WEBTEAM" in rc_refusal["reason"]
    (hotfix_refusal,) = await refusals(web_services, "hotfix.create")
    assert hotfix_refusal["user_id"] == "U0BOB"
    assert git_remote.remote_tags() == tags_before
    assert await web_services.store.releases_in_flight() == []

    # The same command from bob for api, which names no requesters: started as always.
    ack = await bot.command("rc api", user="U0BOB", user_name="bob")
    assert "Follow along in #api-releases" in bot.slack.text_of(ack)
    await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    assert await refusals(api_services, "rc.create") == []

    # alice, in the web team through its user group, starts web's release.
    ack = await bot.command("rc web", user="U0ALICE", user_name="alice")
    assert "Follow along in #web-releases" in bot.slack.text_of(ack)

    async def web_release() -> Any:
        return await web_services.store.get_release("0.15.0-rc.1")

    await bot.slack.wait_for(lambda: "v0.15.0-rc.1" in git_remote.remote_tags(), timeout=30)
    release = await web_release()
    assert release is not None and release.requester == "U0ALICE"


async def test_only_deployers_promote_a_services_release(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    web, api = web_and_api(tmp_path, git_remote, deployers=("S0RELMGR", "U0CAROL"))
    bot = await start_bot([web, api])
    bot.slack.usergroups["S0RELMGR"] = ["U0DAVE"]
    web_services = bot.bot.fleet.services[0]

    # alice may start the release (no requesters), bob approves it: ready for production.
    await bot.command("rc", user="U0ALICE", user_name="alice", channel="#web-releases")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )

    # alice is no deployer: her /release final is refused, the candidate stays as it was.
    ack = await bot.command("final", user="U0ALICE", user_name="alice", channel="#web-releases")
    text = bot.slack.text_of(ack)
    assert (
        "Only <!subteam^S0RELMGR> and <@U0CAROL> may deploy to production of web." in text
        and "`v0.15.0-rc.1` was not promoted" in text
    ), text
    (refusal,) = await refusals(web_services, "release.promote")
    assert refusal["user_id"] == "U0ALICE" and refusal["release"] == "0.15.0-rc.1"
    assert refusal["environment"] == "production"
    assert "v0.15.0" not in git_remote.remote_tags()
    release = await web_services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.phase == "active"

    # dave, a release manager through the group, promotes it.
    ack = await bot.command("final", user="U0DAVE", user_name="dave", channel="#web-releases")
    assert "Promoting `v0.15.0-rc.1`" in bot.slack.text_of(ack)
    await bot.slack.wait_for(lambda: "v0.15.0" in git_remote.remote_tags(), timeout=30)


async def test_only_deployers_retry_a_failed_deploy_to_production(
    start_bot, git_remote: GitRemote, tmp_path: Path
):
    failing = tmp_path / "production-fails"
    failing.write_text("yes")
    web, api = web_and_api(tmp_path, git_remote, deployers=("S0RELMGR",))
    staging, production = web.environments
    production = dataclasses.replace(
        production, deploy_command=f"test ! -e {failing} && {production.deploy_command}"
    )
    web = dataclasses.replace(web, environments=(staging, production))
    bot = await start_bot([web, api])
    bot.slack.usergroups["S0RELMGR"] = ["U0DAVE"]
    web_services = bot.bot.fleet.services[0]
    await bot.command("rc", user="U0ALICE", user_name="alice", channel="#web-releases")
    message = await wait_for_gates(bot.slack, "v0.15.0-rc.1")
    await bot.click(message, "gate_approve", gate="qa")
    await bot.slack.wait_for(
        lambda: (
            "Ready for production" in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        )
    )
    await bot.command("final", user="U0DAVE", user_name="dave", channel="#web-releases")
    failed = await bot.slack.wait_for(
        lambda: (
            (m := release_message(bot.slack, "v0.15.0-rc.1")) is not None
            and "Retry deploy to production" in bot.slack.text_of(m)
            and m
        ),
        timeout=30,
    )
    failing.unlink()

    # alice may retry deploys elsewhere, not to production: refused, audited, not queued.
    before = len(bot.slack.calls_to("response_url"))
    await bot.click(failed, "deploy_retry", user="U0ALICE", user_name="alice")
    answers = await bot.slack.wait_for(
        lambda: bot.slack.calls_to("response_url")[before:], timeout=20
    )
    text = bot.slack.text_of(answers[0].params)
    assert "Only <!subteam^S0RELMGR> may deploy to production of web." in text, text
    assert "I did not retry the deploy of `v0.15.0`" in text
    (refusal,) = await refusals(web_services, "deploy.retry")
    assert refusal["user_id"] == "U0ALICE" and refusal["environment"] == "production"
    release = await web_services.store.get_release("0.15.0-rc.1")
    assert release is not None and release.deploys["production"].status == "failed"

    # dave, a release manager, retries it: it deploys.
    await bot.click(failed, "deploy_retry", user="U0DAVE", user_name="dave")
    await bot.slack.wait_for(
        lambda: (
            "production* — deploy succeeded"
            in bot.slack.text_of(release_message(bot.slack, "v0.15.0-rc.1"))
        ),
        timeout=30,
    )
