"""Security invariants of infra/, asserted on the pycep-parser AST (no Azure needed).

What a reviewer would otherwise check by hand: no keys anywhere, storage locked to Entra ID,
HTTPS/TLS 1.2 only, secrets only through Key Vault references, the exact role assignments and
their scopes, nothing at subscription scope but the optional Activity Log export.
"""

from __future__ import annotations

import json
import re

import pytest

from .bicep_ast import (
    FORBIDDEN_ROLE_IDS,
    INFRA,
    REPO,
    ROLE_NAMES,
    accessor_chain,
    bicep_files,
    body,
    decorator_types,
    get,
    interpolated,
    only,
    resolve_variable,
    resources_of_type,
    secure_params,
    template,
    text,
    walk,
)

MAIN = "main.bicep"
STORAGE = "modules/storage.bicep"
KEYVAULT = "modules/keyvault.bicep"
FUNCTIONAPP = "modules/functionapp.bicep"
MONITORING = "modules/monitoring.bicep"
RBAC = "modules/rbac.bicep"
WORKSPACE_READER = "modules/workspace-reader.bicep"
WATCHDOG = "modules/watchdog.bicep"
WATCHDOG_READER = "modules/watchdog-reader.bicep"
TENANT = "tenant/main.bicep"


def rel(path) -> str:
    return path.relative_to(INFRA).as_posix()


# --------------------------------------------------------------------------------------------
# No keys, no connection strings, nothing broad
# --------------------------------------------------------------------------------------------

KEY_PATTERNS = re.compile(
    r"list(Keys|AccountSas|ServiceSas|ConnectionStrings|Secrets|Credentials?)\s*\("
    r"|AccountKey=|SharedAccessSignature|DefaultEndpointsProtocol|InstrumentationKey=",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_no_keys_sas_or_connection_strings(path) -> None:
    offenders = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if KEY_PATTERNS.search(line)
    ]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_no_list_functions_in_ast(path) -> None:
    """listKeys()/listSecrets()/... as a free function (list_keys) or as `res.listKeys()`."""
    calls = set()
    for node in walk(template(rel(path))):
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("function"), dict):
            calls.add(node["function"]["type"].replace("_", ""))
        operator = node.get("operator")
        if isinstance(operator, dict) and operator.get("type") == "function_accessor":
            calls.add(operator["operands"]["func_name"])
    assert not {c for c in calls if c.lower().startswith("list")}, calls


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_no_broad_roles(path) -> None:
    found = {name for guid, name in FORBIDDEN_ROLE_IDS.items() if guid in path.read_text().lower()}
    assert not found, f"{rel(path)} mentions {sorted(found)}"


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


def test_storage_accepts_entra_id_only_over_tls12_https() -> None:
    props = body(only(resources_of_type(STORAGE, "Microsoft.Storage/storageAccounts")))["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowCrossTenantReplication"] is False


def test_storage_is_declared_once_and_only_in_its_module() -> None:
    owners = [
        rel(p)
        for p in bicep_files()
        for res in template(rel(p)).get("resources", {}).values()
        if res["type"] == "Microsoft.Storage/storageAccounts" and not res["existing"]
    ]
    assert owners == [STORAGE]


def test_blob_containers_are_private() -> None:
    containers = resources_of_type(STORAGE, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert set(containers) == {"deploymentContainer", "hostContainers"}
    for res in containers.values():
        assert body(res)["properties"]["publicAccess"] == "None"
    host = template(STORAGE)["variables"]["hostContainerNames"]["value"]
    assert host == ["azure-webjobs-hosts", "azure-webjobs-secrets"]


# --------------------------------------------------------------------------------------------
# Key Vault and secrets
# --------------------------------------------------------------------------------------------


def test_key_vault_uses_rbac_and_soft_delete() -> None:
    props = body(only(resources_of_type(KEYVAULT, "Microsoft.KeyVault/vaults")))["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert "accessPolicies" not in props
    assert props["enabledForTemplateDeployment"] is False


def test_secret_values_come_only_from_the_secure_object() -> None:
    assert secure_params(KEYVAULT) == {"webhookUrls"}
    assert template(KEYVAULT)["parameters"]["webhookUrls"]["type"] == "object"
    secret = body(only(resources_of_type(KEYVAULT, "Microsoft.KeyVault/vaults/secrets")))
    assert accessor_chain(secret["properties"]["value"])[0] == "webhookUrls"
    assert secret["properties"]["contentType"]


def test_main_secure_params_flow_only_into_key_vault() -> None:
    """A @secure() param may be read in two places only: the Key Vault module's secure object,
    and `!empty(x)` to decide whether a webhook slot is used. Never an output, setting or var."""
    main = text(MAIN)
    secure = secure_params(MAIN)
    assert secure == {"teamsWebhookUrl", *(f"teamsWebhookUrl{i}" for i in range(2, 6))}
    allowed = re.compile(
        r"^\s*(@secure|param \w+ string|'teams-webhook-url(-\d)?': \w+$|enabled: !empty\(\w+\)$)"
    )
    for name in secure:
        uses = [line for line in main.splitlines() if re.search(rf"\b{name}\b", line)]
        bad = [line.strip() for line in uses if not allowed.match(line) and "@description" not in line]
        assert not bad, f"{name} used outside Key Vault: {bad}"
    kv_params = body(template(MAIN)["modules"]["keyVault"])["params"]
    assert set(kv_params["webhookUrls"].values()) == secure


SECRET_LIKE_NAME = re.compile(
    r"password|connection_?string|(access|account|primary|secondary|instrumentation|shared)_?key|sas|token|secret_?value|webhook_?url",
    re.IGNORECASE,
)


@pytest.mark.parametrize("path", bicep_files(), ids=rel)
def test_outputs_never_expose_secrets(path) -> None:
    relative = rel(path)
    secure = secure_params(relative)
    for name, output in template(relative).get("outputs", {}).items():
        leaves = {leaf for leaf in walk(output) if isinstance(leaf, str)}
        assert not leaves & secure, f"{relative}: output {name} reads a secure parameter"
        # App Insights connection string is not a credential once local auth is disabled
        # (asserted in test_app_insights_accepts_entra_tokens_only).
        if (relative, name) != (MONITORING, "appInsightsConnectionString"):
            assert not SECRET_LIKE_NAME.search(name), f"{relative}: output {name} looks like a secret"


def test_main_outputs() -> None:
    outputs = template(MAIN)["outputs"]
    assert set(outputs) == {
        "AZURE_LOCATION",
        "AZURE_RESOURCE_GROUP",
        "FUNCTION_APP_NAME",
        "HISTORY_PAGE_URL",
        "MANAGED_IDENTITY_PRINCIPAL_ID",
        "KEY_VAULT_NAME",
        "WATCHDOG_RULE_NAME",
    }
    assert accessor_chain(outputs["WATCHDOG_RULE_NAME"]["value"]) == ["watchdog", "outputs", "ruleName"]
    history = template(FUNCTIONAPP)["outputs"]["historyPageUrl"]["value"]
    assert history == "https://${site.properties.defaultHostName}/api/alerts"


# --------------------------------------------------------------------------------------------
# Function app
# --------------------------------------------------------------------------------------------


def site_body() -> dict:
    return body(only(resources_of_type(FUNCTIONAPP, "Microsoft.Web/sites")))


def test_function_app_is_flex_python_311_with_user_assigned_identity() -> None:
    plan = body(only(resources_of_type(FUNCTIONAPP, "Microsoft.Web/serverfarms")))
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = site_body()
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["keyVaultReferenceIdentity"] == "identityResourceId"
    assert get(props, "functionAppConfig.runtime") == {"name": "python", "version": "3.11"}
    deployment = get(props, "functionAppConfig.deployment.storage")
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityResourceId",
    }


def test_function_app_transport_and_publishing_hardening() -> None:
    config = site_body()["properties"]["siteConfig"]
    assert config["minTlsVersion"] == "1.2"
    assert config["scmMinTlsVersion"] == "1.2"
    assert config["ftpsState"] == "Disabled"
    assert config["remoteDebuggingEnabled"] is False
    policies = resources_of_type(FUNCTIONAPP, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


EXPECTED_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "LOG_ANALYTICS_WORKSPACE_ID",
    "LOG_ANALYTICS_ENDPOINT",
    "LOG_ANALYTICS_AUDIENCE",
    "STATE_TABLE_ENDPOINT",
    "STATE_TABLE_PREFIX",
    "TEAMS_WEBHOOK_URL",
    "TEAMS_WEBHOOK_MIN_SEVERITY",
    "TEAMS_ALLOWED_HOSTS",
    "BREAK_GLASS_ACCOUNTS",
    "MONITOR_SCHEDULE",
    "HISTORY_BASE_URL",
    "HISTORY_AUTH",
    "WAIVER_MAX_DAYS",
    "WAIVER_REMINDER_DAYS",
    "DISABLED_DETECTIONS",
    "BREAK_GLASS_DRILL_DAYS",
    "BREAK_GLASS_GROUPS",
    "SOURCE_SILENCE_HOURS",
    "SOURCE_SILENT_FAILED_TICKS",
    "AZURE_PORTAL_URL",
}
OPTIONAL_SETTINGS = {f"TEAMS_WEBHOOK_{kind}_{i}" for kind in ("URL", "MIN_SEVERITY") for i in range(2, 6)}
FORBIDDEN_SETTINGS = {
    "AzureWebJobsStorage",  # connection string with a key
    "AzureWebJobsStorage__accountName",  # public-cloud only; service URIs work in every cloud
    "FUNCTIONS_WORKER_RUNTIME",  # Flex: functionAppConfig.runtime
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "APPINSIGHTS_INSTRUMENTATIONKEY",
}


def app_settings() -> tuple[dict, set[str]]:
    """(base settings, optional setting names)."""
    variables = template(FUNCTIONAPP)["variables"]
    optional = {
        key
        for node in walk(variables["extraWebhookSettings"]["value"])
        if isinstance(node, dict)
        for key in node
        if key.startswith("TEAMS_WEBHOOK_")
    }
    return variables["baseSettings"]["value"], optional


def test_app_settings_are_exactly_the_documented_ones() -> None:
    base, optional = app_settings()
    assert set(base) == EXPECTED_SETTINGS
    assert optional == OPTIONAL_SETTINGS
    assert not (set(base) | optional) & FORBIDDEN_SETTINGS
    resource = body(only(resources_of_type(FUNCTIONAPP, "Microsoft.Web/sites/config")))
    assert resource["name"] == "appsettings"
    union = resource["properties"]["function"]
    assert union["type"] == "union"
    assert list(union["parameters"].values()) == ["baseSettings", "extraWebhookSettings"]


def test_identity_based_runtime_settings() -> None:
    base, _ = app_settings()
    assert base["AzureWebJobsStorage__credential"] == "managedidentity"
    assert base["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert base["AZURE_CLIENT_ID"] == "identityClientId"
    assert (
        base["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    )
    for service in ("blob", "queue", "table"):
        # environment().suffixes.storage keeps sovereign clouds working.
        assert (
            base[f"AzureWebJobsStorage__{service}ServiceUri"]
            == f"https://${{storageAccountName}}.{service}.${{storageSuffix}}"
        )
    assert base["STATE_TABLE_ENDPOINT"] == "https://${storageAccountName}.table.${storageSuffix}"
    suffix = template(FUNCTIONAPP)["variables"]["storageSuffix"]["value"]["operator"]["operands"]
    assert suffix["operand_1"] == {"function": {"type": "environment"}}
    assert accessor_chain(suffix["operand_2"]) == ["suffixes", "storage"]


def test_webhook_urls_are_key_vault_references() -> None:
    refs = template(FUNCTIONAPP)["variables"]["webhookRefs"]["value"]
    assert refs["config"] == "@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${webhook.secretName}/)"
    base, _ = app_settings()
    assert accessor_chain(base["TEAMS_WEBHOOK_URL"]) == ["webhookRefs", ("index", 0)]
    extra = template(FUNCTIONAPP)["variables"]["extraWebhookSettings"]["value"]
    for node in walk(extra):
        if isinstance(node, dict):
            for key, value in node.items():
                if key.startswith("TEAMS_WEBHOOK_URL_"):
                    assert accessor_chain(value)[0] == "webhookRefs", key
    # No secure parameter reaches the function app module at all.
    assert not secure_params(FUNCTIONAPP)


def test_function_app_waits_for_its_roles() -> None:
    # Both the roles in its own resource group and, when assigned, Log Analytics Reader.
    assert template(MAIN)["modules"]["functionApp"]["config"]["dependsOn"] == ["rbac", "workspaceReader"]


def test_function_app_carries_the_azd_service_tag() -> None:
    tags = json.dumps(site_body()["tags"])
    assert '\'azd-service-name\'": "api"' in tags
    assert re.search(r"^\s{2}api:\s*$", (REPO / "azure.yaml").read_text(), re.MULTILINE)


# --------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------


def test_app_insights_accepts_entra_tokens_only() -> None:
    ai = body(only(resources_of_type(MONITORING, "Microsoft.Insights/components")))
    assert ai["properties"]["DisableLocalAuth"] is True
    workspace = body(only(resources_of_type(MONITORING, "Microsoft.OperationalInsights/workspaces")))
    assert workspace["properties"]["features"]["disableLocalAuth"] is True


# --------------------------------------------------------------------------------------------
# Watchdog: the alert outside the app (what its query counts: test_watchdog_query.py)
# --------------------------------------------------------------------------------------------

# Window lengths, in minutes, that a log search alert accepts (the service lists them when it
# rejects another; the ARM schema only says "duration").
ALERT_WINDOW_MINUTES = {5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880}
EMPTY_EMAIL = {"function": {"type": "empty", "parameters": {"item_to_test": "email"}}}


def watchdog_rule() -> dict:
    return body(only(resources_of_type(WATCHDOG, "Microsoft.Insights/scheduledQueryRules")))


def int_bounds(param: dict) -> tuple[int, int]:
    decorators = {d["type"]: d.get("argument") for d in param["decorators"]}
    return decorators["min_value"], decorators["max_value"]


def watchdog_window(schedule_minutes: int) -> int:
    """windowMinutes of watchdog.bicep for one schedule period, computed from its AST, which
    must read `first(filter(CHOICES, m => m >= FACTOR * scheduleMinutes))`."""
    first = template(WATCHDOG)["variables"]["windowMinutes"]["value"]["function"]
    assert first["type"] == "first"
    chosen = first["parameters"]["arg_1"]["function"]
    assert chosen["type"] == "filter"
    lam = chosen["parameters"]["expression"]
    assert lam["type"] == "lambda_expression"
    compare = lam["detail"]["expression"]["operator"]
    assert compare["type"] == "greater_than_or_equals"
    assert compare["operands"]["operand_1"] == lam["detail"]["var_1"]
    product = compare["operands"]["operand_2"]["operator"]
    assert product["type"] == "multiply"
    assert product["operands"]["operand_2"] == "scheduleMinutes"
    factor = product["operands"]["operand_1"]
    fits = [m for m in chosen["parameters"]["input_array"] if m >= factor * schedule_minutes]
    assert fits, f"no window for a {schedule_minutes}-minute schedule (Bicep: first([]) is null)"
    return fits[0]


def test_watchdog_is_wired_to_the_app_telemetry() -> None:
    module = template(MAIN)["modules"]["watchdog"]
    assert module["detail"]["path"] == WATCHDOG
    config = body(module)
    assert config["scope"] == "rg"
    params = config["params"]
    assert accessor_chain(params["logAnalyticsName"]) == ["monitoring", "outputs", "logAnalyticsName"]
    output = template(MONITORING)["outputs"]["logAnalyticsName"]["value"]
    assert accessor_chain(output) == ["logAnalytics", "name"]
    workspace = template(MONITORING)["resources"]["logAnalytics"]
    assert workspace["type"] == "Microsoft.OperationalInsights/workspaces"
    assert params["scheduleMinutes"] == "monitorScheduleMinutes"
    assert params["email"] == "watchdogEmail"


def test_watchdog_rule_queries_the_telemetry_workspace() -> None:
    resource = only(resources_of_type(WATCHDOG, "Microsoft.Insights/scheduledQueryRules"))
    assert resource["api_version"] == "2023-12-01"  # the current stable version
    rule = body(resource)
    assert rule["kind"] == "LogAlert"
    (scope,) = rule["properties"]["scopes"]
    assert accessor_chain(scope) == ["workspace", "id"]
    workspace = template(WATCHDOG)["resources"]["workspace"]
    assert workspace["existing"] is True
    assert workspace["type"] == "Microsoft.OperationalInsights/workspaces"
    assert body(workspace)["name"] == "logAnalyticsName"
    assert rule["properties"]["criteria"]["allOf"][0]["query"] == "successfulTicks"


def test_watchdog_rule_fires_on_fewer_than_one_successful_tick() -> None:
    props = watchdog_rule()["properties"]
    (criterion,) = props["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count",
        "LessThan",
        1,
    )
    # Without dimensions or a measure column an empty result counts as 0 and fires; with a
    # dimension, no rows would be no series at all, and silence would never alert.
    assert not {"dimensions", "metricMeasureColumn", "resourceIdColumn"} & set(criterion)
    assert criterion["failingPeriods"] == {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1}
    assert props["enabled"] is True
    assert props["severity"] == 1
    # Stateful: resolves itself once ticks succeed again. Muting actions is invalid with it, and
    # an override would query another range than the window.
    assert props["autoMitigate"] is True
    assert not {"muteActionsDuration", "overrideQueryTimeRange"} & set(props)


def test_watchdog_window_is_three_schedule_periods() -> None:
    low, high = int_bounds(template(WATCHDOG)["parameters"]["scheduleMinutes"])
    assert (low, high) == int_bounds(template(MAIN)["parameters"]["monitorScheduleMinutes"]) == (1, 15)
    for period in range(low, high + 1):
        window = watchdog_window(period)
        assert window in ALERT_WINDOW_MINUTES, period
        assert window >= 3 * period, period
        # the shortest accepted window that holds three periods
        assert not [m for m in ALERT_WINDOW_MINUTES if 3 * period <= m < window], period
    assert [watchdog_window(p) for p in (5, 10, 15)] == [15, 30, 45]

    props = watchdog_rule()["properties"]
    assert interpolated(props["windowSize"]) == ["windowMinutes"]
    assert props["windowSize"] == "PT${windowMinutes}M"
    assert props["evaluationFrequency"] == "PT${evaluationMinutes}M"
    evaluation = template(WATCHDOG)["variables"]["evaluationMinutes"]["value"]
    # An accepted frequency, never longer than the shortest window.
    assert evaluation == 5 <= watchdog_window(low)


def test_schedule_minutes_default_matches_the_default_schedule() -> None:
    params = template(MAIN)["parameters"]
    seconds, minutes, *_ = params["monitorSchedule"]["default"].split()
    assert (seconds, minutes) == ("0", f"*/{params['monitorScheduleMinutes']['default']}")
    assert azd_substituted()["monitorScheduleMinutes"]["value"] == params["monitorScheduleMinutes"]["default"]


def test_watchdog_rule_queries_as_its_own_identity_with_read_access() -> None:
    # App Insights and its workspace take no keys; a rule without an identity would run with the
    # rights of whoever last edited it.
    assert watchdog_rule()["identity"] == {"type": "SystemAssigned"}
    module = template(WATCHDOG)["modules"]["ruleReader"]
    assert module["detail"]["path"] == "watchdog-reader.bicep"
    params = body(module)["params"]
    assert accessor_chain(params["principalId"]) == ["rule", "identity", "principalId"]
    assert accessor_chain(params["workspaceName"]) == ["workspace", "name"]
    workspace = template(WATCHDOG_READER)["resources"]["workspace"]
    assert workspace["existing"] is True
    assert body(workspace)["name"] == "workspaceName"
    # Role, scope and name: test_role_assignment_role_scope_and_name.


def test_watchdog_emails_the_given_address_or_nobody() -> None:
    ((name, resource),) = resources_of_type(WATCHDOG, "Microsoft.Insights/actionGroups").items()
    condition = resource["config"]["condition"]["operator"]
    assert condition == {"type": "not", "operands": {"bool_value": EMPTY_EMAIL}}
    group = body(resource)
    assert group["location"] == "Global"
    assert group["properties"]["enabled"] is True
    assert len(group["properties"]["groupShortName"]) <= 12  # the service's limit
    (receiver,) = group["properties"]["emailReceivers"]
    assert receiver["emailAddress"] == "email"
    assert receiver["useCommonAlertSchema"] is True

    choice = watchdog_rule()["properties"]["actions"]["actionGroups"]["operator"]
    assert choice["type"] == "conditional"
    assert choice["operands"]["condition"] == EMPTY_EMAIL
    assert choice["operands"]["true_value"] == []
    (group_id,) = choice["operands"]["false_value"]
    assert accessor_chain(group_id) == [name, "id"]

    param = template(MAIN)["parameters"]["watchdogEmail"]
    assert (param["type"], param["default"]) == ("string", "")
    assert "watchdogEmail" not in secure_params(MAIN)  # an address, not a secret: it shows in azd's .env


# --------------------------------------------------------------------------------------------
# Role assignments: the exact set, each on the narrowest scope, deterministic names
# --------------------------------------------------------------------------------------------

# (file, resource symbol) -> (role, scope symbol, scope resource type)
EXPECTED_ROLE_ASSIGNMENTS = {
    (WORKSPACE_READER, "logAnalyticsReader"): (
        "Log Analytics Reader",
        "workspace",
        "Microsoft.OperationalInsights/workspaces",
    ),
    (RBAC, "hostBlobOwner"): (
        "Storage Blob Data Owner",
        "hostContainers",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
    ),
    (RBAC, "deploymentBlobContributor"): (
        "Storage Blob Data Contributor",
        "deploymentContainer",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
    ),
    (RBAC, "hostQueues"): (
        "Storage Queue Data Contributor",
        "storage",
        "Microsoft.Storage/storageAccounts",
    ),
    (RBAC, "stateTables"): (
        "Storage Table Data Contributor",
        "storage",
        "Microsoft.Storage/storageAccounts",
    ),
    (RBAC, "secretsUser"): (
        "Key Vault Secrets User",
        "webhookSecrets",
        "Microsoft.KeyVault/vaults/secrets",
    ),
    (RBAC, "metricsPublisher"): (
        "Monitoring Metrics Publisher",
        "appInsights",
        "Microsoft.Insights/components",
    ),
    # The watchdog alert rule's own identity, not the app's (test_watchdog_rule_identity_reads_...).
    (WATCHDOG_READER, "ruleReader"): (
        "Reader",
        "workspace",
        "Microsoft.OperationalInsights/workspaces",
    ),
}


def all_role_assignments() -> dict[tuple[str, str], dict]:
    return {
        (rel(p), name): res
        for p in bicep_files()
        for name, res in resources_of_type(rel(p), "Microsoft.Authorization/roleAssignments").items()
    }


def role_of(relative: str, assignment: dict) -> str:
    role_def = assignment["properties"]["roleDefinitionId"]["function"]
    assert role_def["type"] == "subscription_resource_id"
    assert role_def["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    node = role_def["parameters"]["resource_name_1"]
    guid = node if isinstance(node, str) and node in ROLE_NAMES else resolve_variable(relative, node)
    assert guid in ROLE_NAMES, f"unknown role definition {guid}"
    return ROLE_NAMES[guid]


def test_exactly_the_expected_role_assignments_exist() -> None:
    assert set(all_role_assignments()) == set(EXPECTED_ROLE_ASSIGNMENTS)


@pytest.mark.parametrize("key", sorted(EXPECTED_ROLE_ASSIGNMENTS), ids=lambda k: f"{k[0]}:{k[1]}")
def test_role_assignment_role_scope_and_name(key) -> None:
    relative, _symbol = key
    role, scope_symbol, scope_type = EXPECTED_ROLE_ASSIGNMENTS[key]
    resource = all_role_assignments()[key]
    assignment = body(resource)

    assert role_of(relative, assignment) == role

    # Scope: the named resource (or the loop's i-th one), of the expected type.
    scope_chain = accessor_chain(assignment["scope"])
    assert scope_chain[0] == scope_symbol
    scope_resource = template(relative)["resources"][scope_symbol]
    assert scope_resource["type"] == scope_type

    # Deterministic name: guid(<scope>.id, principalId, <role id>).
    name = assignment["name"]["function"]
    assert name["type"] == "guid"
    args = list(name["parameters"].values())
    assert accessor_chain(args[0]) == [*scope_chain, "id"]
    assert args[1] == "principalId"
    assert (
        role_of(
            relative,
            {
                "properties": {
                    "roleDefinitionId": {
                        "function": {
                            "type": "subscription_resource_id",
                            "parameters": {
                                "resource_type": "Microsoft.Authorization/roleDefinitions",
                                "resource_name_1": args[2],
                            },
                        }
                    }
                }
            },
        )
        == role
    )

    # Always the module's principalId parameter (the app's identity; in watchdog-reader.bicep the
    # watchdog rule's), typed so ARM does not wait for Entra replication.
    assert assignment["properties"]["principalId"] == "principalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"


def test_the_host_holds_a_queue_role_for_the_queue_uri_it_is_given() -> None:
    # AzureWebJobsStorage__queueServiceUri is set, as in Microsoft's Flex Consumption template:
    # the identity holds the queue role that template grants, at the account (queues are named at
    # run time). Blob Data Owner stays on the two host containers (docs/deploy.md says why).
    base, _ = app_settings()
    assert "AzureWebJobsStorage__queueServiceUri" in base
    assert ("Storage Queue Data Contributor", "storage", "Microsoft.Storage/storageAccounts") in (
        EXPECTED_ROLE_ASSIGNMENTS.values()
    )


def test_workspace_reader_runs_in_the_workspace_resource_group() -> None:
    module = template(MAIN)["modules"]["workspaceReader"]
    assert module["config"]["condition"] == "assignWorkspaceReader"
    scope = body(module)["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert "workspaceSubscriptionId" in json.dumps(scope)
    assert "workspaceResourceGroup" in json.dumps(scope)
    assert template(WORKSPACE_READER)["resources"]["workspace"]["existing"] is True


def test_the_workspace_customer_id_is_read_without_a_deployment_there() -> None:
    """With assignWorkspaceReader=false nothing is deployed into the workspace's resource group,
    and the app still gets the workspace (customer) id: read from the existing workspace."""
    main = template(MAIN)
    workspace = main["resources"]["workspace"]
    assert workspace["existing"] is True
    assert workspace["type"] == "Microsoft.OperationalInsights/workspaces"
    scope = json.dumps(workspace["config"]["scope"])
    assert "workspaceSubscriptionId" in scope
    assert "workspaceResourceGroup" in scope
    params = body(main["modules"]["functionApp"])["params"]
    assert accessor_chain(params["workspaceCustomerId"]) == ["workspace", "properties", "customerId"]
    assert main["parameters"]["assignWorkspaceReader"]["default"] is True
    assert azd_substituted()["assignWorkspaceReader"]["value"] is True
    assert azd_substituted({"ASSIGN_WORKSPACE_READER": "false"})["assignWorkspaceReader"]["value"] is False


# --------------------------------------------------------------------------------------------
# Subscription scope: the resource group and the optional Activity Log export, nothing else
# --------------------------------------------------------------------------------------------


def test_main_is_subscription_scoped_with_only_rg_and_optional_diagnostic_setting() -> None:
    main = template(MAIN)
    assert main["globals"]["scope"]["value"] == "subscription"
    types = {name: res["type"] for name, res in main["resources"].items() if not res.get("existing")}
    assert types == {
        "rg": "Microsoft.Resources/resourceGroups",
        "activityLogExport": "Microsoft.Insights/diagnosticSettings",
        # optional, asserted in test_optional_mfa_audit_policy_assignments_only_audit
        "mfaAuditWrites": "Microsoft.Authorization/policyAssignments",
        "mfaAuditDeletes": "Microsoft.Authorization/policyAssignments",
    }
    export = main["resources"]["activityLogExport"]["config"]
    assert export["condition"] == "enableActivityLogExport"
    assert export["config"]["properties"]["workspaceId"] == "logAnalyticsWorkspaceResourceId"
    assert "Administrative" in main["parameters"]["activityLogCategories"]["default"]


MFA_POLICY_DEFINITIONS = {
    "mfaAuditWrites": "4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b",  # create/update
    "mfaAuditDeletes": "db4a9d17-db75-4f46-9fcb-9f9526604417",  # delete
}


def test_optional_mfa_audit_policy_assignments_only_audit() -> None:
    """The built-in MFA policies, assigned only when asked (off by default), in audit mode: no
    parameters (the definitions' default effect is Audit / AuditAction), enforcement Default (so
    the audit events are logged), no identity (audit needs none), at this subscription."""
    main = template(MAIN)
    param = main["parameters"]["assignMfaAuditPolicies"]
    assert (param["type"], param["default"]) == ("bool", False)
    definitions = main["variables"]["mfaPolicyDefinitions"]["value"]
    for name, definition in MFA_POLICY_DEFINITIONS.items():
        resource = main["resources"][name]
        assert resource["config"]["condition"] == "assignMfaAuditPolicies", name
        config = resource["config"]["config"]
        assert not {"identity", "scope"} & set(config), name
        props = config["properties"]
        assert props["enforcementMode"] == "Default", name
        assert not {"parameters", "overrides"} & set(props), f"{name}: must keep the audit effect"
        reference = props["policyDefinitionId"]["function"]
        assert reference["type"] == "tenant_resource_id"
        assert reference["parameters"]["resource_type"] == "Microsoft.Authorization/policyDefinitions"
        key = reference["parameters"]["resource_name_1"]["operator"]["operands"]
        assert key["operand_1"] == "mfaPolicyDefinitions"
        assert definitions[key["operand_2"]] == definition, name
    assert azd_substituted()["assignMfaAuditPolicies"]["value"] is False


def test_every_module_in_main_is_scoped_to_a_resource_group() -> None:
    for name, module in template(MAIN)["modules"].items():
        scope = body(module)["scope"]
        assert scope == "rg" or scope["function"]["type"] == "resource_group", name


def test_registry_modules_are_pinned_avm_versions() -> None:
    for path in bicep_files():
        for name, module in template(rel(path)).get("modules", {}).items():
            if module["type"] == "local":
                continue
            detail = module["detail"]
            assert detail["path"].startswith("avm/res/"), f"{name}: not an Azure Verified Module"
            assert re.fullmatch(r"\d+\.\d+\.\d+", detail["tag"]), f"{name}: unpinned version {detail['tag']}"
            assert body(module)["params"].get("enableTelemetry") is False, name


def test_sovereign_cloud_query_endpoints() -> None:
    table = template(MAIN)["variables"]["logAnalyticsEndpointByCloud"]["value"]
    assert table == {
        "AzureCloud": "https://api.loganalytics.io",
        "AzureUSGovernment": "https://api.loganalytics.us",
        "AzureChinaCloud": "https://api.loganalytics.azure.cn",
    }


# --------------------------------------------------------------------------------------------
# Tenant template (Entra diagnostic setting)
# --------------------------------------------------------------------------------------------


def test_tenant_template_exports_sign_in_and_audit_logs() -> None:
    tenant = template(TENANT)
    assert tenant["globals"]["scope"]["value"] == "tenant"
    setting = only(resources_of_type(TENANT, "microsoft.aadiam/diagnosticSettings"))
    assert body(setting)["properties"]["workspaceId"] == "workspaceResourceId"
    categories = set(tenant["parameters"]["categories"]["default"])
    assert {
        "SignInLogs",
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
        "ManagedIdentitySignInLogs",
        "AuditLogs",
    } <= categories


# --------------------------------------------------------------------------------------------
# azd parameter file
# --------------------------------------------------------------------------------------------

AZD_VAR = re.compile(r"\$\{(\w+)(?:=([^}]*))?\}")


def azd_substituted(env: dict[str, str] | None = None) -> dict:
    """main.parameters.json as azd would see it after `${VAR}` / `${VAR=default}` substitution."""
    env = env or {}
    raw = (INFRA / "main.parameters.json").read_text()
    return json.loads(AZD_VAR.sub(lambda m: env.get(m.group(1), m.group(2) or ""), raw))["parameters"]


def test_parameter_file_maps_every_required_parameter() -> None:
    declared = template(MAIN)["parameters"]
    mapped = azd_substituted({"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "swedencentral"})
    assert set(mapped) <= set(declared), set(mapped) - set(declared)
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required <= set(mapped), required - set(mapped)


def test_parameter_file_defaults_match_bicep_defaults() -> None:
    declared = template(MAIN)["parameters"]
    mapped = azd_substituted()
    for name, value in mapped.items():
        default = declared[name].get("default")
        if default is not None:
            assert value["value"] == default, (
                f"{name}: parameters file {value['value']!r} != bicep {default!r}"
            )


def test_secure_parameters_come_from_the_environment_only() -> None:
    raw = json.loads(AZD_VAR.sub("0", (INFRA / "main.parameters.json").read_text()))["parameters"]
    text_raw = (INFRA / "main.parameters.json").read_text()
    for name in secure_params(MAIN):
        assert name in raw
        match = re.search(rf'"{name}":\s*{{\s*"value":\s*"(\$\{{\w+=?\}})"', text_raw)
        assert match, f"{name} must be exactly an azd environment reference with no default"


def test_decorators_of_secure_params() -> None:
    for name in secure_params(MAIN):
        param = template(MAIN)["parameters"][name]
        assert param["type"] == "string"
        assert param.get("default") in (None, ""), name
    assert "min_length" in decorator_types(template(MAIN)["parameters"]["teamsWebhookUrl"])


def test_break_glass_accounts_and_the_webhook_must_be_given_even_if_none() -> None:
    # The app refuses an empty BREAK_GLASS_ACCOUNTS or TEAMS_WEBHOOK_URL (`none` opts out):
    # a deployment must not reach it with one left empty by omission.
    raw = (INFRA / "main.parameters.json").read_text()
    for param, variable in (
        ("breakGlassAccounts", "BREAK_GLASS_ACCOUNTS"),
        ("teamsWebhookUrl", "TEAMS_WEBHOOK_URL"),
    ):
        declared = template(MAIN)["parameters"][param]
        assert declared.get("default") is None, param
        assert "min_length" in decorator_types(declared), param
        assert f'"value": "${{{variable}}}"' in raw, f"{param}: no default in main.parameters.json"
    base, _ = app_settings()
    assert base["BREAK_GLASS_ACCOUNTS"] == "breakGlassAccounts"


def test_history_base_url_uses_the_site_host_name() -> None:
    base, _ = app_settings()
    assert interpolated(base["HISTORY_BASE_URL"]) == ["site.properties.defaultHostName"]
