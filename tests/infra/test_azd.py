"""azure.yaml and the azd hooks in infra/hooks/: the azd version, the checks before `azd up`,
and what `azd down` removes outside the resource group. The hooks run here with a recording
stand-in for the Azure CLI on PATH, the way azd runs them (sh, the azd environment exported)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .bicep_ast import INFRA, REPO

HOOKS = INFRA / "hooks"
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg-logs"
    "/providers/Microsoft.OperationalInsights/workspaces/law-central"
)
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000b2"


def azd_minimum() -> tuple[int, ...]:
    found = re.search(r'^\s+azd:\s*">=\s*([\d.]+)"', (REPO / "azure.yaml").read_text(), re.MULTILINE)
    assert found, 'azure.yaml must state requiredVersions.azd as ">= x.y.z"'
    return tuple(int(part) for part in found.group(1).split("."))


def test_azd_is_new_enough_to_honour_funcignore() -> None:
    # Before 1.18.0 azd packaged Flex Consumption apps without reading .funcignore, so
    # test_package.py (which applies .funcignore itself) would pass while tests/ shipped.
    assert azd_minimum() >= (1, 18, 0)


def test_the_guide_names_the_same_azd_version() -> None:
    version = ".".join(str(part) for part in azd_minimum())
    assert f"`azd` {version} or later" in (REPO / "docs" / "deploy.md").read_text()


def test_azure_yaml_runs_the_hooks_that_exist() -> None:
    text = (REPO / "azure.yaml").read_text()
    hooks = dict(re.findall(r"^  (\w+):\n    shell: sh\n    run: (\S+)$", text, re.MULTILINE))
    assert set(hooks) == {"preprovision", "predown", "postdeploy"}
    for script in hooks.values():
        assert (REPO / script).is_file(), script
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"


def run_hook(name: str, env: dict[str, str], tmp_path: Path, az_exit: int = 0) -> tuple[int, str, list[str]]:
    """Run infra/hooks/<name>.sh; `az` records each call and exits with az_exit for `show`."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "az.log"
    (bindir / "az").write_text(
        f'#!/bin/sh\necho "$*" >> "{log}"\ncase "$*" in *" show "*) exit {az_exit};; esac\nexit 0\n'
    )
    (bindir / "az").chmod(0o755)
    result = subprocess.run(
        ["sh", str(HOOKS / f"{name}.sh")],
        env={"PATH": f"{bindir}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result.returncode, result.stderr, calls


COMPLETE = {
    "AZURE_LOCATION": "swedencentral",
    "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID": WORKSPACE,
    "TEAMS_WEBHOOK_URL": "https://x.environment.api.powerplatform.com/workflows/1?sig=abc&sp=%2F",
    "BREAK_GLASS_ACCOUNTS": "00000000-0000-0000-0000-0000000000c3",
}


def test_preprovision_accepts_complete_settings(tmp_path: Path) -> None:
    assert run_hook("preprovision", COMPLETE, tmp_path)[:2] == (0, "")


def test_preprovision_accepts_the_explicit_nones(tmp_path: Path) -> None:
    env = {**COMPLETE, "TEAMS_WEBHOOK_URL": "none", "BREAK_GLASS_ACCOUNTS": "none"}
    assert run_hook("preprovision", env, tmp_path)[:2] == (0, "")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("LOG_ANALYTICS_WORKSPACE_RESOURCE_ID", None, "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID is not set"),
        ("LOG_ANALYTICS_WORKSPACE_RESOURCE_ID", "law-central", "is not a workspace resource id"),
        ("LOG_ANALYTICS_WORKSPACE_RESOURCE_ID", WORKSPACE.replace("workspaces", "clusters"),
         "is not a workspace resource id"),
        ("LOG_ANALYTICS_WORKSPACE_RESOURCE_ID", f"{WORKSPACE}/tables/SigninLogs",
         "is not a workspace resource id"),
        ("TEAMS_WEBHOOK_URL", None, "TEAMS_WEBHOOK_URL is not set"),
        ("TEAMS_WEBHOOK_URL", "x.environment.api.powerplatform.com/workflows/1", "does not start with https://"),
        ("BREAK_GLASS_ACCOUNTS", None, "BREAK_GLASS_ACCOUNTS is not set"),
        ("AZURE_LOCATION", None, "AZURE_LOCATION is not set"),
    ],
)  # fmt: skip
def test_preprovision_refuses_with_a_message(tmp_path: Path, name: str, value: str | None, says: str) -> None:
    env = {k: v for k, v in COMPLETE.items() if k != name}
    if value is not None:
        env[name] = value
    code, stderr, _ = run_hook("preprovision", env, tmp_path)
    assert code == 1
    assert says in stderr
    assert stderr.count("\n  - ") == 1  # one line, for the one bad setting


def test_preprovision_lists_every_missing_setting_at_once(tmp_path: Path) -> None:
    code, stderr, _ = run_hook("preprovision", {}, tmp_path)
    assert code == 1
    assert stderr.count("\n  - ") == 4


DEPLOYED = {
    "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    "MANAGED_IDENTITY_PRINCIPAL_ID": "00000000-0000-0000-0000-0000000000d4",
    "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID": WORKSPACE,
}


def test_predown_removes_everything_outside_the_resource_group(tmp_path: Path) -> None:
    code, stderr, calls = run_hook("predown", DEPLOYED, tmp_path)
    assert (code, stderr) == (0, "")
    deletes = [c for c in calls if " delete " in f" {c} "]
    assert deletes == [
        "role assignment delete --assignee 00000000-0000-0000-0000-0000000000d4 --role Log Analytics Reader "
        f"--scope {WORKSPACE}",
        "monitor diagnostic-settings subscription delete --name mfa-monitor-activity-log "
        f"--subscription {SUBSCRIPTION} --yes",
        "policy assignment delete --name mfa-monitor-audit-user-writes "
        f"--scope /subscriptions/{SUBSCRIPTION}",
        "policy assignment delete --name mfa-monitor-audit-user-deletes "
        f"--scope /subscriptions/{SUBSCRIPTION}",
    ]


def test_predown_removes_only_what_is_there(tmp_path: Path) -> None:
    env = {**DEPLOYED, "ASSIGN_WORKSPACE_READER": "false"}
    code, _, calls = run_hook("predown", env, tmp_path, az_exit=3)  # `show`: not found
    assert code == 0
    assert [c for c in calls if " delete " in f" {c} "] == []
    assert len(calls) == 3  # it looked for the export and both assignments


def test_predown_names_the_subscription_it_needs(tmp_path: Path) -> None:
    code, stderr, calls = run_hook("predown", {}, tmp_path)
    assert code != 0
    assert "AZURE_SUBSCRIPTION_ID is not set" in stderr
    assert calls == []


def test_postdeploy_checks_the_app_identity_and_runs_doctor_with_the_app_settings(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    held = tmp_path / "held"  # role assignments `az role assignment list` finds, one per line
    held.write_text("Log Analytics Reader\n")
    (bindir / "az").write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  "role assignment list"*) for r in "Log Analytics Reader" "Storage Table Data Contributor"; do\n'
        f'      case "$*" in *"--role $r "*) grep -c "^$r\\$" "{held}";; esac; done;;\n'
        '  "functionapp config appsettings list"*)\n'
        "    printf 'STATE_TABLE_ENDPOINT\\thttps://stabc.table.core.windows.net\\n'\n"
        "    printf 'AZURE_CLIENT_ID\\t00000000-0000-0000-0000-0000000000c1\\n'\n"
        "    printf 'TEAMS_WEBHOOK_URL\\t@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/t/)\\n';;\n"
        '  "storage account show"*) echo /subscriptions/s/resourceGroups/rg/providers/'
        "Microsoft.Storage/storageAccounts/stabc;;\n"
        "esac\n"
    )
    python = bindir / "fake-python"  # records how doctor was started
    python.write_text(
        f'#!/bin/sh\n[ "$1" = -c ] && exit 0\necho "$* | $STATE_TABLE_ENDPOINT | ${{AZURE_CLIENT_ID:-unset}}'
        f' | $TEAMS_WEBHOOK_URL" > "{tmp_path}/doctor"\n'
    )
    for tool in (bindir / "az", python):
        tool.chmod(0o755)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "PYTHON": str(python),
        "AZURE_RESOURCE_GROUP": "rg-mfamon",
        "FUNCTION_APP_NAME": "func-abc",
        "MANAGED_IDENTITY_PRINCIPAL_ID": "00000000-0000-0000-0000-0000000000d4",
        "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID": WORKSPACE,
    }

    def postdeploy() -> subprocess.CompletedProcess[str]:
        script = str(HOOKS / "postdeploy.sh")
        return subprocess.run(["sh", script], env=env, capture_output=True, text=True, check=False)

    result = postdeploy()
    assert result.returncode == 1  # no table role yet
    assert result.stdout.splitlines() == [
        "PASS  app identity: holds Log Analytics Reader on the workspace",
        "FAIL  app identity: no Storage Table Data Contributor on the storage account stabc -> fix: "
        "azd provision (infra/modules/rbac.bicep assigns it)",
    ]
    # Doctor ran as the caller (no app identity id), with the app's settings, writing nothing.
    assert (tmp_path / "doctor").read_text() == (
        "-m monitors doctor --no-state-write | https://stabc.table.core.windows.net | unset | "
        "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/t/)\n"
    )
    held.write_text("Log Analytics Reader\nStorage Table Data Contributor\n")
    assert postdeploy().returncode == 0
    # azd hands its environment to the hook: the webhook URL set with azd env set is used, so
    # --send-test-card can post from here.
    env["TEAMS_WEBHOOK_URL"] = "https://x.environment.api.powerplatform.com/workflows/1?sig=abc"
    assert postdeploy().returncode == 0
    assert (
        (tmp_path / "doctor")
        .read_text()
        .endswith("| https://x.environment.api.powerplatform.com/workflows/1?sig=abc\n")
    )
