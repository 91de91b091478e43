"""`releasebot check-config --online`: what the config asks of GitHub, asked of GitHub.

Offline, check-config knows the file is well formed. Online it asks the repository's GitHub,
with the bot's own credentials, what can be known before a deploy: the token sees the
repository and reads its commit statuses and checks; each workflow an environment dispatches
exists, is active, takes `workflow_dispatch` with the inputs given and shows the correlation
id in its run-name; a GitHub App's installation has the permissions deploys need. GitHub has
no dry run of a dispatch, so a fine-grained token's right to dispatch shows only at the first
deploy; that is said, not guessed."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from bot.adapters.github import GitHubClient, GitHubConfig, GitHubError, GitHubUnavailable
from bot.domain.config import Config, GitHubDeployConfig
from bot.domain.github_deploys import workflow_problems

# What deploys through GitHub need of a GitHub App's installation (GitHub's permission names).
_LEVELS = {"read": 1, "write": 2, "admin": 3}


@dataclass
class OnlineReport:
    """What was checked (`ok`), what is wrong, each with the config key or variable at
    fault (`problems`), and what cannot be checked before a deploy (`notes`)."""

    ok: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _needed_permissions(config: Config) -> dict[str, str]:
    needed = {"metadata": "read"}
    if any(g.check == "github" for g in config.gates):
        needed |= {"statuses": "read", "checks": "read"}
    deploys = [e.deploy for e in config.environments if e.deploy is not None]
    if any(d.github_workflow for d in deploys):
        needed["actions"] = "write"
    if any(d.github_deployment for d in deploys) or config.github.record_deployments:
        needed["deployments"] = "write"
    return needed


async def check_online(config: Config, github: GitHubConfig | None) -> OnlineReport:
    report = OnlineReport()
    repository = config.github.repository
    if not repository:
        report.notes.append("no [github] repository: nothing to check on GitHub")
        return report
    if github is None:
        report.problems.append(
            (
                "GITHUB_TOKEN",
                f"not set (nor a GitHub App): [github] repository = {repository!r} needs one",
            )
        )
        return report
    owner, name = config.github.owner_and_name
    async with GitHubClient(github) as client:
        try:
            await _check(client, config, owner, name, report)
        except GitHubUnavailable as exc:
            report.problems.append(("GITHUB_API_URL", f"GitHub could not be asked: {exc}"))
    return report


async def _check(
    client: GitHubClient, config: Config, owner: str, name: str, report: OnlineReport
) -> None:
    repository = config.github.repository
    try:
        access = await client.access(owner, name)
    except GitHubError as exc:
        report.problems.append(
            (
                "github.repository",
                f"{repository}: GitHub answered {exc.status} ({exc.message}); "
                "no such repository, or the credentials cannot see it",
            )
        )
        return
    report.ok.append(f"the {access.kind} sees {repository}")
    try:
        await client.commit_checks(owner, name, config.repository.branch)
    except GitHubError as exc:
        report.problems.append(
            (
                "github.repository",
                f"the commit statuses and checks of {repository}@"
                f"{config.repository.branch} cannot be read: {exc.message} ({exc.status})",
            )
        )
    else:
        report.ok.append(f"reads the commit statuses and checks of {config.repository.branch}")
    for index, env in enumerate(config.environments):
        if env.deploy is None or not env.deploy.github_workflow:
            continue
        await _check_workflow(client, owner, name, index, env.deploy, report)
    needed = _needed_permissions(config)
    if access.kind == "app":
        lacking = [
            f"{perm}: {level}"
            for perm, level in needed.items()
            if _LEVELS.get(access.permissions.get(perm, ""), 0) < _LEVELS[level]
        ]
        if lacking:
            report.problems.append(
                (
                    "GITHUB_APP_ID",
                    f"the app's installation on {repository} lacks {', '.join(lacking)}",
                )
            )
        else:
            report.ok.append(
                "the app's installation has " + ", ".join(f"{p}: {lv}" for p, lv in needed.items())
            )
    elif access.scopes is not None:
        if "actions" in needed or "deployments" in needed:
            if not {"repo", "public_repo"} & set(access.scopes):
                report.problems.append(
                    (
                        "GITHUB_TOKEN",
                        "the classic token has no `repo` scope: it cannot dispatch "
                        "workflows or write Deployments",
                    )
                )
            else:
                report.ok.append("the classic token has the `repo` scope")
    else:
        report.notes.append(
            "a fine-grained token's permissions cannot be read back: it needs "
            + ", ".join(f"{p}: {lv}" for p, lv in needed.items())
            + " (GitHub has no dry run of a dispatch; the first deploy shows it)"
        )


async def _check_workflow(
    client: GitHubClient,
    owner: str,
    name: str,
    index: int,
    deploy: GitHubDeployConfig,
    report: OnlineReport,
) -> None:
    key = f"environments[{index}].deploy.github_workflow"
    try:
        found = await client.workflow(owner, name, deploy.github_workflow)
    except GitHubError as exc:
        report.problems.append(
            (
                key,
                f"no workflow {deploy.github_workflow} in {owner}/{name} "
                f"(GitHub answered {exc.status})",
            )
        )
        return
    if found.state != "active":
        report.problems.append((key, f"{found.path} is {found.state.replace('_', ' ')}: enable it"))
    try:
        text = await client.file_text(owner, name, found.path)
    except GitHubError as exc:
        report.problems.append(
            (
                key,
                f"{found.path} could not be read ({exc.status}: {exc.message}); the "
                "credentials need contents: read to check it",
            )
        )
        return
    if text is None:
        report.problems.append((key, f"{found.path} could not be read"))
        return
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        report.problems.append((key, f"{found.path} is not valid YAML: {exc}"))
        return
    if not isinstance(parsed, dict):
        report.problems.append((key, f"{found.path} holds no workflow"))
        return
    wrong = workflow_problems(parsed, (n for n, _ in deploy.inputs), deploy.correlation_input)
    for problem in wrong:
        report.problems.append((key, f"{found.path}: {problem}"))
    if not wrong and found.state == "active":
        report.ok.append(f"{found.path} takes workflow_dispatch with the inputs given")
