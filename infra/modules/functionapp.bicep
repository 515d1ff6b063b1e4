// The monitor: a Python 3.11 Function App on the Flex Consumption plan running as the
// user-assigned identity. Host storage, the deployment package, Key Vault references and
// telemetry all authenticate with that identity; no setting holds a key or connection secret.

param location string
param tags object
param name string
param planName string
param identityResourceId string
param identityClientId string
param storageAccountName string
param deploymentContainerUrl string
param appInsightsConnectionString string
param keyVaultUri string

@description('Webhook slots: secretName, minSeverity, enabled (5 entries, no secret values).')
param webhooks array

param maximumInstanceCount int
param instanceMemoryMB int

param workspaceCustomerId string
param logAnalyticsEndpoint string
param logAnalyticsAudience string
param teamsAllowedHosts string
param breakGlassAccounts string
param monitorSchedule string
param stateTablePrefix string
param historyAuth string
param waiverMaxDays int
param waiverReminderDays int
param disabledDetections string
param breakGlassDrillDays int
param breakGlassGroups string
param sourceSilenceHours string
param sourceSilentFailedTicks int

var storageSuffix = environment().suffixes.storage

// Unversioned secret URIs: a new secret version is picked up without redeploying.
var webhookRefs = [for webhook in webhooks: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${webhook.secretName}/)']

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is region-limited; a tick lost to a zone outage is caught up by the ingestion-time watermark on the next one.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: On-call opens the history page from Teams cards in a browser; every HTTP route requires a function key (AuthLevel.FUNCTION).
  // checkov:skip=CKV_AZURE_17: Client certificates cannot be presented by the browsers that open the history page; HTTP routes require a function key.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero by design; the timer catches up missed ticks through the watermark.
  // checkov:skip=CKV_AZURE_213: No anonymous route exists to probe (all HTTP routes need a key); liveness is watched from outside the app by the watchdog alert rule (watchdog.bicep), which alerts when no tick succeeds.
  name: name
  location: location
  // azd finds the deployment target by this tag (service name in azure.yaml).
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references resolve with the user-assigned identity (default would be system-assigned).
    keyVaultReferenceIdentity: identityResourceId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      // Flex Consumption: runtime and version live here, not in FUNCTIONS_WORKER_RUNTIME.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No FTP or SCM basic-auth publishing credentials: azd deploys with an Entra token.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

var baseSettings = {
  // Functions host storage over Entra ID. Service URIs (not __accountName) so sovereign clouds work.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: 'https://${storageAccountName}.blob.${storageSuffix}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storageAccountName}.queue.${storageSuffix}'
  AzureWebJobsStorage__tableServiceUri: 'https://${storageAccountName}.table.${storageSuffix}'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // DefaultAzureCredential / ManagedIdentityCredential in the app pick this identity.
  AZURE_CLIENT_ID: identityClientId
  LOG_ANALYTICS_WORKSPACE_ID: workspaceCustomerId
  LOG_ANALYTICS_ENDPOINT: logAnalyticsEndpoint
  LOG_ANALYTICS_AUDIENCE: logAnalyticsAudience
  STATE_TABLE_ENDPOINT: 'https://${storageAccountName}.table.${storageSuffix}'
  STATE_TABLE_PREFIX: stateTablePrefix
  TEAMS_WEBHOOK_URL: webhookRefs[0]
  TEAMS_WEBHOOK_MIN_SEVERITY: webhooks[0].minSeverity
  TEAMS_ALLOWED_HOSTS: teamsAllowedHosts
  BREAK_GLASS_ACCOUNTS: breakGlassAccounts
  MONITOR_SCHEDULE: monitorSchedule
  HISTORY_BASE_URL: 'https://${site.properties.defaultHostName}'
  HISTORY_AUTH: historyAuth
  WAIVER_MAX_DAYS: string(waiverMaxDays)
  WAIVER_REMINDER_DAYS: string(waiverReminderDays)
  DISABLED_DETECTIONS: disabledDetections
  BREAK_GLASS_DRILL_DAYS: string(breakGlassDrillDays)
  BREAK_GLASS_GROUPS: breakGlassGroups
  SOURCE_SILENCE_HOURS: sourceSilenceHours
  SOURCE_SILENT_FAILED_TICKS: string(sourceSilentFailedTicks)
  // Portal links in cards must point at the cloud the resources live in.
  AZURE_PORTAL_URL: environment().portal
}

// Optional extra webhooks: a setting pair exists only when its URL was given.
var extraWebhookSettings = union(
  webhooks[1].enabled ? {
    TEAMS_WEBHOOK_URL_2: webhookRefs[1]
    TEAMS_WEBHOOK_MIN_SEVERITY_2: webhooks[1].minSeverity
  } : {},
  webhooks[2].enabled ? {
    TEAMS_WEBHOOK_URL_3: webhookRefs[2]
    TEAMS_WEBHOOK_MIN_SEVERITY_3: webhooks[2].minSeverity
  } : {},
  webhooks[3].enabled ? {
    TEAMS_WEBHOOK_URL_4: webhookRefs[3]
    TEAMS_WEBHOOK_MIN_SEVERITY_4: webhooks[3].minSeverity
  } : {},
  webhooks[4].enabled ? {
    TEAMS_WEBHOOK_URL_5: webhookRefs[4]
    TEAMS_WEBHOOK_MIN_SEVERITY_5: webhooks[4].minSeverity
  } : {}
)

// A separate config resource because HISTORY_BASE_URL needs the site's own host name.
// It replaces the whole app-settings set: this file is the single source of truth.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov applies its siteConfig ("web") checks to every Microsoft.Web/sites/config; this
  // resource is 'appsettings' (name/value pairs), so they cannot apply here:
  // checkov:skip=CKV_AZURE_13: False positive (appsettings, not siteConfig). HTTP routes use function keys.
  // checkov:skip=CKV_AZURE_63: False positive (appsettings, not siteConfig). Logs go to Application Insights.
  // checkov:skip=CKV_AZURE_65: False positive (appsettings, not siteConfig). Logs go to Application Insights.
  // checkov:skip=CKV_AZURE_66: False positive (appsettings, not siteConfig). Logs go to Application Insights.
  // checkov:skip=CKV_AZURE_80: False positive (appsettings, not siteConfig); the app is Python, not .NET.
  // checkov:skip=CKV_AZURE_88: False positive (appsettings, not siteConfig); Flex Consumption uses no Azure Files share.
  // checkov:skip=CKV_AZURE_222: False positive (appsettings, not siteConfig); see the site resource.
  parent: site
  name: 'appsettings'
  properties: union(baseSettings, extraWebhookSettings)
}

output name string = site.name
output historyPageUrl string = 'https://${site.properties.defaultHostName}/api/alerts'
