"""The deployment package, built the way `azd deploy` / `func azure functionapp publish` build it.

Flex Consumption runs a remote build of requirements.txt, then the Python worker imports
function_app.py and indexes its functions (v2 model). This test does the same offline:
1. copy the repo minus what .funcignore excludes (gitignore semantics, like both tools);
2. pip-install the package's requirements.txt into a fresh venv (nothing from the dev venv);
3. import function_app there and list app.get_functions(): with an empty environment, with a
   setting App Service could not resolve (the contract: settings are read when a function
   runs, never at import, so a bad one cannot unindex the functions) and with exactly the app
   settings infra/ deploys (dummy values), which must pass monitors/settings.py's validation.
   With the bad setting, the timer function and the history page run too: the tick fails
   naming the setting, the page answers 503 saying why.
A runtime dependency missing from requirements.txt, a test or dev file shipped by mistake, or a
trigger that does not match infra/ (schedule setting, history route, auth level) fails here
instead of in production.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pathspec
import pytest

from .bicep_ast import REPO, template

# Printed as JSON by the probe that runs inside the fresh venv.
PROBE = r"""
import importlib, json, pathlib, pkgutil, sys, traceback
import function_app
app = function_app.app
out = []
for fn in app.get_functions():
    out.append({"name": fn.get_function_name(), "bindings": json.loads(fn.get_function_json())["bindings"]})
# Triggers import most code lazily: import every shipped module so that a dependency missing
# from requirements.txt fails here even if only a code path inside a function needs it.
errors = {}
for init in sorted(pathlib.Path(".").glob("*/__init__.py")):
    package = init.parent.name
    for module in pkgutil.walk_packages([package], prefix=package + "."):
        if module.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except Exception:
            errors[module.name] = traceback.format_exc(limit=3)
# Import does not validate settings (a bad one must not unindex the functions): check them here.
import os
from monitors.settings import SettingsError, load_settings
try:
    load_settings(os.environ)
    problems = []
except SettingsError as error:
    problems = error.problems
print("PROBE:" + json.dumps({"python": sys.version.split()[0], "functions": out, "import_errors": errors,
                             "settings_problems": problems}))
"""

# With a bad setting in the environment: what the worker indexes, what one tick does (as the
# worker calls the timer function) and what the history page answers, HTML and JSON.
BROKEN_PROBE = r"""
import json, logging
import azure.functions as func
from azure.functions.timer import TimerRequest
import function_app

records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append({"level": record.levelname, "message": record.getMessage()})
logging.getLogger().addHandler(Keep())
functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
try:
    functions["monitor_tick"](TimerRequest(past_due=False))
    tick = None
except Exception as error:
    tick = {"type": type(error).__name__, "message": str(error)}
pages = {}
for kind, accept in (("html", "text/html"), ("json", "application/json")):
    request = func.HttpRequest("GET", "https://func-example.azurewebsites.net/api/alerts",
                               headers={"accept": accept}, body=b"")
    response = functions["alert_history"](request)
    pages[kind] = {"status": response.status_code, "body": response.get_body().decode()}
print("PROBE:" + json.dumps({"functions": sorted(functions), "tick": tick, "logs": records, "pages": pages}))
"""

# Must never ship: tests, local tooling, local secrets, VCS and caches.
NEVER_SHIPPED = [
    ".git",
    ".venv",
    ".venv-checkov",
    "tests",
    "devstack",
    "local.settings.json",
    ".azure",
    "node_modules",
]


# Dummy values of the app settings infra/modules/functionapp.bicep deploys (Key Vault
# references resolved, as the platform does before the worker starts).
DEPLOYED_SETTINGS = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-0000000000c1",
    "AzureWebJobsStorage__blobServiceUri": "https://stexample.blob.core.windows.net",
    "AzureWebJobsStorage__queueServiceUri": "https://stexample.queue.core.windows.net",
    "AzureWebJobsStorage__tableServiceUri": "https://stexample.table.core.windows.net",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": (
        "ClientId=00000000-0000-0000-0000-0000000000c1;Authorization=AAD"
    ),
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-0000000000c1",
    "LOG_ANALYTICS_WORKSPACE_ID": "00000000-0000-0000-0000-0000000000a1",
    "LOG_ANALYTICS_ENDPOINT": "https://api.loganalytics.io",
    "LOG_ANALYTICS_AUDIENCE": "https://api.loganalytics.io",
    "STATE_TABLE_ENDPOINT": "https://stexample.table.core.windows.net",
    "STATE_TABLE_PREFIX": "mfamon",
    "TEAMS_WEBHOOK_URL": "https://example.environment.api.powerplatform.com/powerautomate/x?sig=dummy",
    "TEAMS_WEBHOOK_MIN_SEVERITY": "low",
    "TEAMS_ALLOWED_HOSTS": "*.environment.api.powerplatform.com,*.logic.azure.com",
    "BREAK_GLASS_ACCOUNTS": "00000000-0000-0000-0000-0000000000b1",
    "MONITOR_SCHEDULE": "0 */5 * * * *",
    "HISTORY_BASE_URL": "https://func-example.azurewebsites.net",
    "HISTORY_AUTH": "function-key",
    "WAIVER_MAX_DAYS": "180",
    "WAIVER_REMINDER_DAYS": "7",
    "DISABLED_DETECTIONS": "",
    "BREAK_GLASS_DRILL_DAYS": "90",
    "BREAK_GLASS_GROUPS": "none",
    "SOURCE_SILENCE_HOURS": "SigninLogs=2,AADNonInteractiveUserSignInLogs=2,AzureActivity=6,AuditLogs=24",
    "SOURCE_SILENT_FAILED_TICKS": "3",
    "AZURE_PORTAL_URL": "https://portal.azure.com",
}


# Every function function_app.py defines: the timer and the history routes.
FUNCTIONS = ["alert_detail", "alert_history", "alert_status", "monitor_tick", "waiver_audit"]
# What App Service leaves in a setting whose Key Vault reference it cannot resolve (the
# identity's role not there yet, a deleted secret): the reference's own text.
UNRESOLVED_REFERENCE = (
    "@Microsoft.KeyVault(SecretUri=https://kv-example.vault.azure.net/secrets/teams-webhook-url/)"
)


def funcignore() -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((REPO / ".funcignore").read_text().splitlines())


def build_package(source: pathlib.Path, dest: pathlib.Path) -> list[str]:
    """Copy `source` to `dest` minus .funcignore matches; return the shipped paths."""
    spec = funcignore()
    shipped: list[str] = []
    for root, dirs, files in os.walk(source):
        rel_root = pathlib.Path(root).relative_to(source)
        # Prune ignored directories (a "dir/" pattern only matches directories).
        dirs[:] = sorted(d for d in dirs if not spec.match_file(f"{(rel_root / d).as_posix()}/"))
        for name in sorted(files):
            rel = (rel_root / name).as_posix()
            if spec.match_file(rel):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pathlib.Path(root) / name, target)
            shipped.append(rel)
    return shipped


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The package directory, its file list and a fresh venv with its requirements."""
    missing = [
        f
        for f in ("function_app.py", ".funcignore", "host.json", "requirements.txt")
        if not (REPO / f).is_file()
    ]
    if missing:
        pytest.fail(f"cannot build the deployment package: {', '.join(missing)} missing at the repo root")

    runtime = template("modules/functionapp.bicep")["resources"]["site"]["config"]["properties"][
        "functionAppConfig"
    ]["runtime"]
    if f"{sys.version_info.major}.{sys.version_info.minor}" != runtime["version"]:
        found = sys.version.split()[0]
        pytest.fail(
            f"run this test with Python {runtime['version']} (the Flex runtime in infra/), not {found}"
        )

    base = tmp_path_factory.mktemp("package")
    app_dir, venv_dir = base / "app", base / "venv"
    shipped = build_package(REPO, app_dir)

    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
    python = venv_dir / "bin" / "python"
    pip = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, f"pip install -r requirements.txt failed:\n{pip.stdout}\n{pip.stderr}"
    return {"shipped": shipped, "app_dir": app_dir, "python": python, "home": base}


def probe(package: dict, settings: dict[str, str], script: str = PROBE) -> dict:
    """Import function_app in the clean venv with only `settings` (plus PATH) in the environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(package["home"]), "LANG": "C.UTF-8"}
    env.update(settings)
    result = subprocess.run(
        [str(package["python"]), "-I", "-c", f"import sys; sys.path.insert(0, '.'); exec({script!r})"],
        cwd=package["app_dir"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"importing function_app failed in a clean venv:\n{result.stderr[-4000:]}"
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE:"))
    return json.loads(line[len("PROBE:") :])


@pytest.fixture(scope="module")
def deployed(package: dict) -> dict:
    """function_app as the Functions worker sees it in Azure: with infra/'s app settings."""
    return probe(package, DEPLOYED_SETTINGS)


@pytest.fixture(scope="module")
def unresolved(package: dict) -> dict:
    """The deployed settings, but TEAMS_WEBHOOK_URL is a Key Vault reference App Service could not resolve."""
    return probe(package, {**DEPLOYED_SETTINGS, "TEAMS_WEBHOOK_URL": UNRESOLVED_REFERENCE}, BROKEN_PROBE)


def triggers(package: dict, kind: str) -> list[dict]:
    return [
        {"function": fn["name"], **binding}
        for fn in package["functions"]
        for binding in fn["bindings"]
        if binding.get("type") == kind
    ]


def test_package_contains_the_app_and_nothing_local(package: dict) -> None:
    shipped = package["shipped"]
    for required in ("function_app.py", "host.json", "requirements.txt"):
        assert required in shipped
    leaked = sorted({p for p in shipped for top in NEVER_SHIPPED if p == top or p.startswith(f"{top}/")})
    assert not leaked, f".funcignore lets these ship: {leaked[:20]}"
    assert not [p for p in shipped if "__pycache__/" in p or p.endswith(".pyc")]


@pytest.mark.parametrize("path", NEVER_SHIPPED)
def test_funcignore_excludes_local_files_even_when_absent(path: str) -> None:
    # .azure/<env>/.env holds azd's copy of TEAMS_WEBHOOK_URL: it must never ship, even though
    # it only exists on a deployer's machine (so the test above cannot see it in CI).
    assert funcignore().match_file(f"{path}/x") or funcignore().match_file(path), (
        f".funcignore does not exclude {path}"
    )


def test_settings_infra_deploys_match_the_dummy_set() -> None:
    base = template("modules/functionapp.bicep")["variables"]["baseSettings"]["value"]
    assert set(base) == set(DEPLOYED_SETTINGS), (
        "update DEPLOYED_SETTINGS with infra/modules/functionapp.bicep"
    )


def test_every_function_is_indexed_without_any_setting(package: dict) -> None:
    # Settings are read when a function runs: an app with none at all still has its functions.
    assert sorted(fn["name"] for fn in probe(package, {})["functions"]) == FUNCTIONS


def test_every_function_is_indexed_with_an_unresolved_key_vault_reference(unresolved: dict) -> None:
    # The app is its own only alert channel: unindexed, nothing would say that nothing runs.
    assert unresolved["functions"] == FUNCTIONS


def test_a_tick_with_a_bad_setting_fails_naming_it(unresolved: dict) -> None:
    # The invocation fails (the platform records it; a watchdog rule counts failures) ...
    assert unresolved["tick"] is not None, "the timer function returned normally with a bad setting"
    assert unresolved["tick"]["type"] == "SettingsError"
    assert "TEAMS_WEBHOOK_URL is an unresolved Key Vault reference" in unresolved["tick"]["message"]
    # ... and an ERROR line names the setting and the fix.
    errors = [r["message"] for r in unresolved["logs"] if r["level"] == "ERROR"]
    assert any("TEAMS_WEBHOOK_URL is an unresolved Key Vault reference" in m and "Key Vault Secrets User" in m
               for m in errors), errors  # fmt: skip
    assert "kv-example" not in json.dumps(unresolved), "the setting's value was echoed"


def test_the_history_page_says_why_with_a_bad_setting(unresolved: dict) -> None:
    html, api = unresolved["pages"]["html"], unresolved["pages"]["json"]
    assert (html["status"], api["status"]) == (503, 503)
    assert "TEAMS_WEBHOOK_URL is an unresolved Key Vault reference" in html["body"]
    payload = json.loads(api["body"])
    assert any(
        p.startswith("TEAMS_WEBHOOK_URL is an unresolved Key Vault reference") for p in payload["problems"]
    )
    assert "alerts" not in payload


def test_functions_are_indexed_with_the_deployed_settings(deployed: dict) -> None:
    assert deployed["python"].startswith("3.11.")
    assert sorted(fn["name"] for fn in deployed["functions"]) == FUNCTIONS
    # The settings infra/ wires are the ones monitors/settings.py needs, and valid.
    assert deployed["settings_problems"] == []


def test_every_shipped_module_imports_with_requirements_txt_only(deployed: dict) -> None:
    errors = deployed["import_errors"]
    assert not errors, "\n\n".join(f"{name}:\n{trace}" for name, trace in errors.items())


def test_timer_trigger_reads_the_schedule_app_setting(deployed: dict) -> None:
    timers = triggers(deployed, "timerTrigger")
    assert timers, f"no timer trigger among {[f['name'] for f in deployed['functions']]}"
    for timer in timers:
        # infra/ sets MONITOR_SCHEDULE; a hard-coded schedule would silently ignore it.
        assert timer["schedule"] == "%MONITOR_SCHEDULE%", timer
        assert not timer.get("runOnStartup"), f"{timer['function']}: runOnStartup fires on every cold start"


def test_http_triggers_require_a_key_and_serve_the_history_page(deployed: dict) -> None:
    http = triggers(deployed, "httpTrigger")
    assert http, "no HTTP trigger"
    # The checkov skips for public network access rely on this (infra/modules/functionapp.bicep).
    anonymous = [t["function"] for t in http if str(t.get("authLevel", "")).lower() == "anonymous"]
    assert not anonymous, f"anonymous HTTP routes: {anonymous}"
    # HISTORY_PAGE_URL (infra output) is https://<host>/api/alerts.
    assert "alerts" in {t.get("route") or t["function"] for t in http}
