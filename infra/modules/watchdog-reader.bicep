// Lets the watchdog rule's identity (watchdog.bicep) query the app's telemetry workspace.
//
// Microsoft documents that a log search alert identity needs a reader role on every workspace
// its query reads. Reader (`*/read`) is the narrowest built-in one that can: it includes the
// workspace's query permission (workspaces/query/*/read), and unlike Log Analytics Reader it
// cannot open support cases. It is scoped to this one workspace, which holds only the app's
// telemetry and the storage and Key Vault audit logs.

param workspaceName string
param principalId string

var readerRoleId = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource ruleReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, readerRoleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', readerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: watchdog alert rule reads the app telemetry'
  }
}
