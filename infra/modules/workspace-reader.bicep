// Deployed into the resource group of the EXISTING Log Analytics workspace (any subscription
// of the tenant): grants the app identity query access to that one workspace. Skipped with
// assignWorkspaceReader=false (docs/deploy.md: the same assignment with az).

param workspaceName string
param principalId string

// Log Analytics Reader: query the workspace; no shared keys, no writes.
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource logAnalyticsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, logAnalyticsReaderRoleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: query sign-in and Activity Log tables'
  }
}
