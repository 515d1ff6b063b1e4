// Every role the app identity holds inside its own resource group, each on the narrowest scope
// Azure RBAC offers. (Log Analytics Reader on the customer's workspace: workspace-reader.bicep.)
// Names are guid(scope, principal, role): re-deploying is idempotent, and a recreated identity
// (new principal id) gets new assignments instead of a conflict.

param principalId string
param storageAccountName string
param deploymentContainerName string
param hostContainerNames array
param keyVaultName string
param webhookSecretNames array
param appInsightsName string

// Built-in role definition ids (identical in every Azure cloud).
var roles = {
  // Functions host storage: Microsoft documents this role as the host's minimum (leases,
  // timer schedule status, function keys). Scoped to the two host containers only.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Flex Consumption deployment package: read/write/delete blobs of one container.
  // Owner's extras (ACLs, ownership, tags, immutability) are not needed there.
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // Functions host queues (AzureWebJobsStorage__queueServiceUri), as Microsoft's Flex Consumption
  // template grants it. The timer and HTTP triggers do not use queues today; without the role a
  // host feature that does would fail with 403 instead of working.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Monitor state tables and the host's diagnostic-event tables (table names are created at
  // run time, so this is the one account-level data role).
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Read secret values; granted per secret, not on the vault.
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // Entra-authenticated telemetry ingestion (App Insights local auth is disabled).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deploymentContainerName
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [for containerName in hostContainerNames: {
  parent: blobService
  name: containerName
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource webhookSecrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [for secretName in webhookSecretNames: {
  parent: vault
  name: secretName
}]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (containerName, i) in hostContainerNames: {
  name: guid(hostContainers[i].id, principalId, roles.storageBlobDataOwner)
  scope: hostContainers[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: Functions host storage (${containerName})'
  }
}]

resource deploymentBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, principalId, roles.storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: Flex Consumption deployment package'
  }
}

resource hostQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: Functions host queues'
  }
}

resource stateTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: state tables'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (secretName, i) in webhookSecretNames: {
  name: guid(webhookSecrets[i].id, principalId, roles.keyVaultSecretsUser)
  scope: webhookSecrets[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: read ${secretName}'
  }
}]

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'mfa-monitor: telemetry ingestion'
  }
}
