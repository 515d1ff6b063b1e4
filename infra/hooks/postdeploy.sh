#!/bin/sh
# azd postdeploy hook: `python -m monitors doctor` with the settings the deployed app runs with.
# It runs here as you (your az sign-in), not as the app: so the app identity's roles on the
# workspace and the state tables are checked as role assignments, and doctor checks the rest.
# Webhook settings are Key Vault references only the app resolves: where the azd environment
# holds the URL (azd env set TEAMS_WEBHOOK_URL ...), doctor uses it, so --send-test-card posts. Webhook
# settings are Key Vault references only the app resolves: doctor says so instead of posting.
# Run it again any time: sh infra/hooks/postdeploy.sh (with the azd environment: azd env get-values).
set -u
cd "$(dirname "$0")/../.." || exit 1
: "${AZURE_RESOURCE_GROUP:?not set: run from azd, or export the values of azd env get-values}"
: "${FUNCTION_APP_NAME:?not set: run from azd, or export the values of azd env get-values}"
python="${PYTHON:-python3}"

if ! "$python" -c "import azure.identity, azure.monitor.query, azure.data.tables, requests" 2>/dev/null; then
  echo "postdeploy: doctor not run: $python lacks the app's packages. Install them (python3.11 -m venv .venv &&" \
    ".venv/bin/pip install -r requirements.txt), then: PYTHON=.venv/bin/python sh infra/hooks/postdeploy.sh" >&2
  exit 1
fi

status=0
# has_role <role> <scope> <what>: one PASS/FAIL line, in doctor's format.
has_role() {
  held=$(az role assignment list --assignee "${MANAGED_IDENTITY_PRINCIPAL_ID:-}" --scope "$2" --role "$1" \
    --query "length(@)" -o tsv 2>/dev/null)
  if [ "${held:-0}" -gt 0 ] 2>/dev/null; then
    echo "PASS  app identity: holds $1 on $3"
  else
    echo "FAIL  app identity: no $1 on $3 -> fix: $4"
    status=1
  fi
}
has_role "Log Analytics Reader" "${LOG_ANALYTICS_WORKSPACE_RESOURCE_ID:-}" "the workspace" \
  "the az role assignment create of docs/deploy.md, prerequisites"

settings=$(mktemp) || exit 1
trap 'rm -f "$settings"' EXIT
az functionapp config appsettings list -g "$AZURE_RESOURCE_GROUP" -n "$FUNCTION_APP_NAME" \
  --query "[].[name, value]" -o tsv > "$settings" || { echo "postdeploy: could not read the app settings" >&2; exit 1; }
tab=$(printf '\t')
while IFS="$tab" read -r name value; do
  case "$name" in
    *[!A-Za-z0-9_]* | "") continue ;;
    # Your az sign-in stands in for the app's identity here.
    AZURE_CLIENT_ID | AzureWebJobsStorage__*) continue ;;
  esac
  case "$value" in
    # A webhook URL in Key Vault: the azd environment holds the URL itself (azd env set), keep it.
    @Microsoft.KeyVault\(*) eval "known=\${$name:-}"; [ -n "$known" ] && continue ;;
  esac
  export "$name=$value"
done < "$settings"

# The state tables take writes from the app's identity only: check its role, not yours.
account=${STATE_TABLE_ENDPOINT#https://}
account=${account%%.*}
has_role "Storage Table Data Contributor" "$(az storage account show -n "$account" --query id -o tsv 2>/dev/null)" \
  "the storage account $account" "azd provision (infra/modules/rbac.bicep assigns it)"

# What the watchdog rule was deployed with (main.parameters.json's default when unset): doctor
# compares it with the schedule.
export MONITOR_SCHEDULE_MINUTES="${MONITOR_SCHEDULE_MINUTES:-5}"
"$python" -m monitors doctor --no-state-write "$@" || status=1
exit $status
