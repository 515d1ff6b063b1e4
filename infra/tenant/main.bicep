// Tenant-level Entra ID diagnostic setting: sends sign-in and audit logs to the monitor's workspace.
// A subscription deployment (infra/main.bicep) cannot create this; see docs/deploy.md, step 4.
//
//   az deployment tenant create --location <region> \
//     --template-file infra/tenant/main.bicep \
//     --parameters workspaceResourceId=<workspace resource id>
//
// Needs: an Entra role that manages diagnostic settings (Security Administrator or Global
// Administrator), rights to deploy at tenant scope, and write access to the workspace.
// Requires Microsoft Entra ID P1 or P2 to export sign-in logs.
targetScope = 'tenant'

@description('Resource id of the Log Analytics workspace the monitor reads.')
param workspaceResourceId string

@description('Name of the diagnostic setting (unique per tenant).')
param settingName string = 'mfa-monitor-signin-logs'

@description('Entra log categories to export. The monitor reads SignInLogs, NonInteractiveUserSignInLogs and AuditLogs (changes to the break-glass accounts); the workload sign-in categories tell workloads from users.')
param categories array = [
  'SignInLogs'
  'NonInteractiveUserSignInLogs'
  'ServicePrincipalSignInLogs'
  'ManagedIdentitySignInLogs'
  'AuditLogs'
]

resource entraDiagnostics 'microsoft.aadiam/diagnosticSettings@2017-04-01' = {
  name: settingName
  properties: {
    workspaceId: workspaceResourceId
    logs: [for category in categories: {
      category: category
      enabled: true
    }]
  }
}

output settingName string = entraDiagnostics.name
