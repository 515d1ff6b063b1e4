#!/bin/sh
# azd preprovision hook: the settings `azd up` cannot do without, checked before anything is
# deployed, each with a message that says what to set (instead of a template error mid-way).
problems=""
add() { problems="$problems
  - $1"; }

guid='[0-9a-fA-F]\{8\}-[0-9a-fA-F]\{4\}-[0-9a-fA-F]\{4\}-[0-9a-fA-F]\{4\}-[0-9a-fA-F]\{12\}'
workspace_id_shape="^/subscriptions/$guid/resourceGroups/[^/][^/]*/providers/Microsoft\.OperationalInsights/workspaces/[^/][^/]*\$"

if [ -z "${AZURE_LOCATION:-}" ]; then
  add "AZURE_LOCATION is not set: azd env set AZURE_LOCATION <region> (one with Flex Consumption: az functionapp list-flexconsumption-locations)"
fi
if [ -z "${LOG_ANALYTICS_WORKSPACE_RESOURCE_ID:-}" ]; then
  add "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID is not set: azd env set LOG_ANALYTICS_WORKSPACE_RESOURCE_ID \"\$(az monitor log-analytics workspace show -g <workspace-rg> -n <workspace-name> --query id -o tsv)\""
elif ! printf '%s' "$LOG_ANALYTICS_WORKSPACE_RESOURCE_ID" | grep -qi "$workspace_id_shape"; then
  add "LOG_ANALYTICS_WORKSPACE_RESOURCE_ID is not a workspace resource id: expected /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.OperationalInsights/workspaces/<name> (az monitor log-analytics workspace show ... --query id -o tsv)"
fi
if [ -z "${TEAMS_WEBHOOK_URL:-}" ]; then
  add "TEAMS_WEBHOOK_URL is not set: azd env set TEAMS_WEBHOOK_URL '<Teams Workflows webhook URL>' (docs/deploy.md, step 2), or none to keep alerts in the alert history only"
elif [ "$TEAMS_WEBHOOK_URL" != "none" ] && [ "${TEAMS_WEBHOOK_URL#https://}" = "$TEAMS_WEBHOOK_URL" ]; then
  add "TEAMS_WEBHOOK_URL does not start with https://: set the whole URL of the Teams workflow, in single quotes (it contains & and %)"
fi
if [ -z "${BREAK_GLASS_ACCOUNTS:-}" ]; then
  add "BREAK_GLASS_ACCOUNTS is not set: azd env set BREAK_GLASS_ACCOUNTS \"<object id>,<object id>\" (az ad user show --id <upn> --query id -o tsv), or none to watch none"
fi

if [ -n "$problems" ]; then
  echo "azd up cannot start; set these first (azd env set NAME value):$problems" >&2
  exit 1
fi
