// Entry point for `azd up` (or `az deployment sub create`): deploys the monitor into its own
// resource group next to an existing Log Analytics workspace.
//
// Security posture (asserted by tests/infra and checkov):
// - one user-assigned managed identity for the app (the watchdog alert rule has a system-assigned
//   one of its own, to read the app's telemetry); no keys, connection strings or SAS anywhere;
// - storage with shared-key access disabled, Key Vault in RBAC mode, App Insights with local auth off;
// - every role assignment is scoped to a single resource (a container, a secret, the workspace)
//   and named with guid(scope, principal, role). Nothing is granted at subscription scope.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(40)
@description('azd environment name; used for the resource group name and the resource name token.')
param environmentName string

@minLength(1)
@description('Azure region for every resource. Flex Consumption must be available there.')
param location string

// infra/hooks/preprovision.sh checks its shape before azd provisions, with a message; this
// length check is what `az deployment sub create` users get instead of an index error in split().
@minLength(1)
@description('Resource id of the EXISTING Log Analytics workspace that receives the Entra sign-in logs and the Activity Log. It may live in another resource group or subscription of the same tenant.')
param logAnalyticsWorkspaceResourceId string

@description('Assign Log Analytics Reader on the workspace to the app identity. That needs a deployment in the workspace\'s resource group and the right to assign roles on the workspace; false skips it, and someone with that right runs the `az role assignment create` of docs/deploy.md instead.')
param assignWorkspaceReader bool = true

@minLength(1)
@description('Comma-separated object ids and/or UPNs of break-glass (emergency access) accounts. Object ids are preferred: UPNs can be renamed. Required: \'none\' watches no break-glass account (the history page then says so).')
param breakGlassAccounts string

@description('NCRONTAB schedule of the monitor tick (six fields, seconds first); it must tick every 1 to 15 minutes, all day.')
param monitorSchedule string = '0 */5 * * * *'

@minValue(1)
@maxValue(15)
@description('Minutes between two ticks of monitorSchedule (5 for the default). The watchdog alerts when no tick has succeeded for three of them.')
param monitorScheduleMinutes int = 5

@description('E-mail address the watchdog alerts when the monitor stops working. Empty = no e-mail: the watchdog alert still fires and shows in the portal (Monitor > Alerts), and nobody is told.')
param watchdogEmail string = ''

@description('Who the history page trusts: function-key, or easy-auth once App Service Authentication with Entra ID guards the app (docs/oncall.md).')
@allowed([
  'function-key'
  'easy-auth'
])
param historyAuth string = 'function-key'

@description('Longest a waiver may run, in days, before it must be approved again.')
@minValue(1)
@maxValue(365)
param waiverMaxDays int = 180

@description('Days before a waiver ends that Teams gets a reminder; 0 for none.')
@minValue(0)
@maxValue(60)
param waiverReminderDays int = 7

@description('Detection ids to switch off, comma-separated (break-glass-use, break-glass-account-changed and source-silent cannot be switched off).')
param disabledDetections string = ''

@description('Days a break-glass account may go without a successful interactive sign-in (the drill interval).')
@minValue(7)
@maxValue(365)
param breakGlassDrillDays int = 90

@description('Object ids of groups that exclude the break-glass accounts from Conditional Access, comma-separated, or none.')
param breakGlassGroups string = 'none'

@description('Hours each table may stay silent, e.g. SigninLogs=2,AzureActivity=6; 0 = not watched.')
param sourceSilenceHours string = 'SigninLogs=2,AADNonInteractiveUserSignInLogs=2,AzureActivity=6,AuditLogs=24'

@description('Ticks in a row with a failed workspace query before source-silent alerts.')
@minValue(1)
@maxValue(288)
param sourceSilentFailedTicks int = 3

@secure()
@minLength(1)
@description('Teams Workflows webhook URL (contains a signature: stored in Key Vault only). Required: \'none\' keeps alerts in the alert history only (the history page then says so).')
param teamsWebhookUrl string

@allowed([ 'low', 'medium', 'high', 'critical' ])
@description('Minimum severity posted to the first webhook.')
param teamsWebhookMinSeverity string = 'low'

@secure()
@description('Optional second webhook URL (empty = not used).')
param teamsWebhookUrl2 string = ''

@allowed([ 'low', 'medium', 'high', 'critical' ])
param teamsWebhookMinSeverity2 string = 'high'

@secure()
@description('Optional third webhook URL (empty = not used).')
param teamsWebhookUrl3 string = ''

@allowed([ 'low', 'medium', 'high', 'critical' ])
param teamsWebhookMinSeverity3 string = 'high'

@secure()
@description('Optional fourth webhook URL (empty = not used).')
param teamsWebhookUrl4 string = ''

@allowed([ 'low', 'medium', 'high', 'critical' ])
param teamsWebhookMinSeverity4 string = 'high'

@secure()
@description('Optional fifth webhook URL (empty = not used).')
param teamsWebhookUrl5 string = ''

@allowed([ 'low', 'medium', 'high', 'critical' ])
param teamsWebhookMinSeverity5 string = 'high'

@description('Comma-separated host patterns the app may post to (guards against a mistyped or planted webhook URL).')
param teamsAllowedHosts string = '*.environment.api.powerplatform.com,*.logic.azure.com'

@minLength(3)
@maxLength(20)
@description('Prefix of the state table names.')
param stateTablePrefix string = 'mfamon'

@description('Log Analytics query endpoint. Empty = the one of the cloud you deploy to (api.loganalytics.io, api.loganalytics.us, api.loganalytics.azure.cn).')
param logAnalyticsEndpoint string = ''

@description('Token audience for the Log Analytics query API. Empty = same as the endpoint.')
param logAnalyticsAudience string = ''

@description('Create a subscription diagnostic setting that sends the Activity Log of THIS subscription to the workspace. Turn off if one already exports these categories to the same workspace (Azure rejects a duplicate).')
param enableActivityLogExport bool = true

@description('Activity Log categories exported when enableActivityLogExport is true. Administrative holds ARM writes; Policy holds the MFA audit-policy events.')
param activityLogCategories array = [
  'Administrative'
  'Policy'
  'Security'
]

@description('Assign the two built-in "Users must authenticate with MFA to create or update / to delete resources" policies to THIS subscription in audit mode (their default effect). Each user write without MFA then logs a Policy event the policy-mfa-audit detection reads. Off by default: the deployer needs the right to assign policies, and an existing assignment of the same definitions does the same job.')
param assignMfaAuditPolicies bool = false

@allowed([ 'Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS' ])
@description('Replication of the state/runtime storage account. ZRS is better where the region supports it.')
param storageSkuName string = 'Standard_LRS'

@description('Enable Key Vault purge protection. It cannot be turned off again and keeps the vault name reserved after `azd down` for the retention period.')
param keyVaultPurgeProtection bool = false

@minValue(1)
@maxValue(1000)
@description('Flex Consumption scale-out cap; a low cap bounds the cost of abusive HTTP traffic.')
param maximumInstanceCount int = 40

@allowed([ 2048, 4096 ])
param instanceMemoryMB int = 2048

// ---------------------------------------------------------------------------------------------
// Names: deterministic per subscription + environment + region.
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  workload: 'mfa-monitor'
}
var names = {
  resourceGroup: 'rg-${environmentName}'
  identity: 'id-${resourceToken}'
  storage: 'st${resourceToken}'
  keyVault: 'kv-${resourceToken}'
  logAnalytics: 'log-${resourceToken}'
  appInsights: 'appi-${resourceToken}'
  plan: 'plan-${resourceToken}'
  functionApp: 'func-${resourceToken}'
  // Flex Consumption reads the code package from this container (identity-based).
  deploymentContainer: 'app-package-${resourceToken}'
  watchdogRule: 'watchdog-${resourceToken}'
  watchdogActionGroup: 'ag-watchdog-${resourceToken}'
}

// Resource id: /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.OperationalInsights/workspaces/{name}
var workspaceIdParts = split(logAnalyticsWorkspaceResourceId, '/')
var workspaceSubscriptionId = workspaceIdParts[2]
var workspaceResourceGroup = workspaceIdParts[4]
var workspaceName = last(workspaceIdParts)

// Sovereign clouds: pick the query endpoint of the cloud this deployment runs in unless overridden.
var logAnalyticsEndpointByCloud = {
  AzureCloud: 'https://api.loganalytics.io'
  AzureUSGovernment: 'https://api.loganalytics.us'
  AzureChinaCloud: 'https://api.loganalytics.azure.cn'
}
var cloudLogAnalyticsEndpoint = contains(logAnalyticsEndpointByCloud, environment().name) ? logAnalyticsEndpointByCloud[environment().name] : logAnalyticsEndpointByCloud.AzureCloud
var effectiveLogAnalyticsEndpoint = empty(logAnalyticsEndpoint) ? cloudLogAnalyticsEndpoint : logAnalyticsEndpoint
var effectiveLogAnalyticsAudience = empty(logAnalyticsAudience) ? effectiveLogAnalyticsEndpoint : logAnalyticsAudience

// Webhook slots without their secret values: only whether each is set leaves this file.
var webhooks = [
  {
    secretName: 'teams-webhook-url'
    minSeverity: teamsWebhookMinSeverity
    enabled: true
  }
  {
    secretName: 'teams-webhook-url-2'
    minSeverity: teamsWebhookMinSeverity2
    enabled: !empty(teamsWebhookUrl2)
  }
  {
    secretName: 'teams-webhook-url-3'
    minSeverity: teamsWebhookMinSeverity3
    enabled: !empty(teamsWebhookUrl3)
  }
  {
    secretName: 'teams-webhook-url-4'
    minSeverity: teamsWebhookMinSeverity4
    enabled: !empty(teamsWebhookUrl4)
  }
  {
    secretName: 'teams-webhook-url-5'
    minSeverity: teamsWebhookMinSeverity5
    enabled: !empty(teamsWebhookUrl5)
  }
]

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

// The single identity of the app: runtime storage, state tables, Key Vault references,
// App Insights ingestion and Log Analytics queries all use it.
module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
    enableTelemetry: false
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: names.storage
    skuName: storageSkuName
    deploymentContainerName: names.deploymentContainer
    diagnosticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: names.keyVault
    purgeProtection: keyVaultPurgeProtection
    webhooks: webhooks
    webhookUrls: {
      'teams-webhook-url': teamsWebhookUrl
      'teams-webhook-url-2': teamsWebhookUrl2
      'teams-webhook-url-3': teamsWebhookUrl3
      'teams-webhook-url-4': teamsWebhookUrl4
      'teams-webhook-url-5': teamsWebhookUrl5
    }
    diagnosticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

// The existing workspace: its customer id is the one the query API takes. Reading it needs only
// read access, not a deployment in its resource group.
resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
}

// Query access to the existing workspace, deployed into the workspace's own resource group.
module workspaceReader 'modules/workspace-reader.bicep' = if (assignWorkspaceReader) {
  name: 'workspace-reader-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroup)
  params: {
    workspaceName: workspaceName
    principalId: identity.outputs.principalId
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    hostContainerNames: storage.outputs.hostContainerNames
    keyVaultName: keyVault.outputs.name
    webhookSecretNames: keyVault.outputs.secretNames
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    tags: tags
    name: names.functionApp
    planName: names.plan
    identityResourceId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    keyVaultUri: keyVault.outputs.uri
    webhooks: webhooks
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    // Settings the monitor reads (monitors/settings.py).
    workspaceCustomerId: workspace.properties.customerId
    logAnalyticsEndpoint: effectiveLogAnalyticsEndpoint
    logAnalyticsAudience: effectiveLogAnalyticsAudience
    teamsAllowedHosts: teamsAllowedHosts
    breakGlassAccounts: breakGlassAccounts
    monitorSchedule: monitorSchedule
    stateTablePrefix: stateTablePrefix
    historyAuth: historyAuth
    waiverMaxDays: waiverMaxDays
    waiverReminderDays: waiverReminderDays
    disabledDetections: disabledDetections
    breakGlassDrillDays: breakGlassDrillDays
    breakGlassGroups: breakGlassGroups
    sourceSilenceHours: sourceSilenceHours
    sourceSilentFailedTicks: sourceSilentFailedTicks
  }
  // App settings hold Key Vault references and identity-based connections: create them only
  // once the identity holds its roles, so the first start does not cache a failed resolution.
  dependsOn: [
    rbac
    workspaceReader
  ]
}

// The alert outside the app: fires when no tick has succeeded for three schedule periods, read
// from the app's telemetry, so it works when the app itself is dead.
module watchdog 'modules/watchdog.bicep' = {
  name: 'watchdog'
  scope: rg
  params: {
    location: location
    tags: tags
    ruleName: names.watchdogRule
    actionGroupName: names.watchdogActionGroup
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    scheduleMinutes: monitorScheduleMinutes
    email: watchdogEmail
  }
}

// Optional: this subscription's Activity Log -> the workspace the monitor reads.
// With the optional MFA audit policy assignments below, the only subscription-scope resources
// besides the resource group.
resource activityLogExport 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (enableActivityLogExport) {
  name: 'mfa-monitor-activity-log'
  properties: {
    workspaceId: logAnalyticsWorkspaceResourceId
    logs: [for category in activityLogCategories: {
      category: category
      enabled: true
    }]
  }
}

// Optional: the built-in MFA policies in audit mode on this subscription (policy-mfa-audit).
// No parameters are passed: each definition's default effect is its audit one (Audit for
// create/update, AuditAction for delete), so the assignment never blocks a write. Switching to
// Deny/DenyAction is an explicit, separate decision (an override on the assignment).
var mfaPolicyDefinitions = {
  writes: '4e6c27d5-a6ee-49cf-b2b4-d8fe90fa2b8b'
  deletes: 'db4a9d17-db75-4f46-9fcb-9f9526604417'
}

resource mfaAuditWrites 'Microsoft.Authorization/policyAssignments@2024-04-01' = if (assignMfaAuditPolicies) {
  name: 'mfa-monitor-audit-user-writes'
  properties: {
    displayName: 'Audit user ARM create/update without MFA (mfa-monitor)'
    description: 'Logs an Activity Log audit event for each user create/update without MFA; read by the policy-mfa-audit detection.'
    policyDefinitionId: tenantResourceId('Microsoft.Authorization/policyDefinitions', mfaPolicyDefinitions.writes)
    enforcementMode: 'Default'
  }
}

resource mfaAuditDeletes 'Microsoft.Authorization/policyAssignments@2024-04-01' = if (assignMfaAuditPolicies) {
  name: 'mfa-monitor-audit-user-deletes'
  properties: {
    displayName: 'Audit user ARM delete without MFA (mfa-monitor)'
    description: 'Logs an Activity Log audit event for each user delete without MFA; read by the policy-mfa-audit detection.'
    policyDefinitionId: tenantResourceId('Microsoft.Authorization/policyDefinitions', mfaPolicyDefinitions.deletes)
    enforcementMode: 'Default'
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in .azure/<env>/.env): names and URLs only, never a secret.
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output HISTORY_PAGE_URL string = functionApp.outputs.historyPageUrl
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output KEY_VAULT_NAME string = keyVault.outputs.name
output WATCHDOG_RULE_NAME string = watchdog.outputs.ruleName
