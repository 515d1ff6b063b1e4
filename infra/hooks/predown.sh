#!/bin/sh
# azd predown hook: `azd down` deletes the resource group; this removes what the deployment
# created outside it, while the identity still exists:
# - Log Analytics Reader on the workspace (it lives in the workspace's resource group),
# - the subscription's Activity Log export mfa-monitor-activity-log,
# - the two MFA audit policy assignments (they would keep auditing after the monitor is gone).
# Each is removed only if it is there; a failed removal stops azd down, naming what is left.
set -u
subscription="/subscriptions/${AZURE_SUBSCRIPTION_ID:?AZURE_SUBSCRIPTION_ID is not set: run this from azd down}"

fail() { echo "predown: $1" >&2; exit 1; }

if [ -n "${MANAGED_IDENTITY_PRINCIPAL_ID:-}" ] && [ -n "${LOG_ANALYTICS_WORKSPACE_RESOURCE_ID:-}" ] \
  && [ "${ASSIGN_WORKSPACE_READER:-true}" = "true" ]; then
  echo "predown: removing Log Analytics Reader on the workspace from the app identity"
  az role assignment delete --assignee "$MANAGED_IDENTITY_PRINCIPAL_ID" \
    --role "Log Analytics Reader" --scope "$LOG_ANALYTICS_WORKSPACE_RESOURCE_ID" \
    || fail "could not remove the role assignment on $LOG_ANALYTICS_WORKSPACE_RESOURCE_ID; remove it by hand (docs/deploy.md, Tear down)"
fi

if az monitor diagnostic-settings subscription show --name mfa-monitor-activity-log \
  --subscription "$AZURE_SUBSCRIPTION_ID" >/dev/null 2>&1; then
  echo "predown: removing the Activity Log export mfa-monitor-activity-log"
  az monitor diagnostic-settings subscription delete --name mfa-monitor-activity-log \
    --subscription "$AZURE_SUBSCRIPTION_ID" --yes \
    || fail "could not remove the Activity Log export mfa-monitor-activity-log"
fi

for assignment in mfa-monitor-audit-user-writes mfa-monitor-audit-user-deletes; do
  if az policy assignment show --name "$assignment" --scope "$subscription" >/dev/null 2>&1; then
    echo "predown: removing the policy assignment $assignment"
    az policy assignment delete --name "$assignment" --scope "$subscription" \
      || fail "could not remove the policy assignment $assignment (Resource Policy Contributor or Owner needed)"
  fi
done
