// Key Vault in RBAC mode holding the Teams Workflows webhook URLs (each URL carries a `sig=`
// signature, so it is a credential). The app reads them through Key Vault references; the
// values never appear in app settings, outputs or deployment history.

param location string
param tags object
param name string
param purgeProtection bool
param diagnosticsWorkspaceId string

@description('Webhook slots: secretName, minSeverity, enabled (no secret values).')
param webhooks array

@secure()
@description('Secret values keyed by secret name.')
param webhookUrls object

var enabledWebhooks = filter(webhooks, w => w.enabled)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Key Vault references of an app without VNet integration resolve over the public endpoint (App Service is not a trusted service for them); access is Entra ID + RBAC, per secret.
  // checkov:skip=CKV_AZURE_189: Same as CKV_AZURE_109.
  // checkov:skip=CKV_AZURE_110: Purge protection is the keyVaultPurgeProtection parameter; off by default because it blocks `azd down --purge` and reserves the vault name, and the only content is a webhook URL that Teams can re-issue.
  // checkov:skip=CKV_AZURE_42: Soft delete is on (7 days); purge protection is the parameter above (CKV_AZURE_110).
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC instead of access policies: the app gets Key Vault Secrets User on its secrets only.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    // ARM rejects `false` here: omit the property unless purge protection is wanted.
    enablePurgeProtection: purgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Key Vault references of an app without VNet integration resolve over the public
      // endpoint; App Service is not a "trusted service" for this (see docs/deploy.md).
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for webhook in enabledWebhooks: {
  // checkov:skip=CKV_AZURE_41: A Workflows webhook URL has no expiry of its own; an expiry date would stop alerting silently when it passes. Rotate by re-running azd up with a new URL.
  parent: vault
  name: webhook.secretName
  properties: {
    value: webhookUrls[webhook.secretName]
    contentType: 'text/uri-list'
    attributes: {
      enabled: true
    }
  }
}]

// Who read a webhook secret, and when.
resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit'
  scope: vault
  properties: {
    workspaceId: diagnosticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
// https://<vault>.vault.azure.net/ (suffix follows the cloud).
output uri string = vault.properties.vaultUri
output secretNames array = [for webhook in enabledWebhooks: webhook.secretName]
