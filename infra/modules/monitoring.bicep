// Telemetry of the monitor itself: a small dedicated workspace behind Application Insights.
// The security workspace that holds the Entra/Activity logs is NOT used for this, so app
// telemetry never mixes with (or needs write access to) the customer's security data.
// Both resources accept Entra ID tokens only (no instrumentation-key or shared-key ingestion).

param location string
param tags object
param logAnalyticsName string
param appInsightsName string

@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    // Ingestion needs an Entra token from an identity holding Monitoring Metrics Publisher.
    DisableLocalAuth: true
  }
}

output logAnalyticsId string = logAnalytics.id
output logAnalyticsName string = logAnalytics.name
output appInsightsName string = appInsights.name
// Not a secret once local auth is disabled: the key inside only names the destination.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
