param logAnalyticsName string
param appInsightsName string
param location string
param tags object

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Telemetry is sent with Entra auth (Monitoring Metrics Publisher), never an ingestion key alone.
    DisableLocalAuth: true
  }
}

output logAnalyticsName string = logs.name
output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
output appId string = appInsights.properties.AppId
