param planName string
param appName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param appInsightsConnectionString string
param keyVaultUri string
param tableEndpoint string
param sessionHostUrl string
param openAiBase string
param realtimeWsBase string
@allowed([
  'azure'
  'openai'
])
param realtimeDialect string
param realtimeModel string
param realtimeVoice string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
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
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'webhook'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: 2048
        maximumInstanceCount: 100
        // A ringing caller never waits for a cold start: one instance is always warm.
        alwaysReady: [
          {
            name: 'http'
            instanceCount: 1
          }
        ]
        triggers: {
          http: {
            perInstanceConcurrency: 16
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

var baseSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AZURE_CLIENT_ID: identityClientId
  STORAGE_TABLE_ENDPOINT: tableEndpoint
  SESSION_HOST_URL: sessionHostUrl
  OPENAI_BASE: openAiBase
  REALTIME_WS_BASE: realtimeWsBase
  REALTIME_DIALECT: realtimeDialect
  REALTIME_MODEL: realtimeModel
  REALTIME_VOICE: realtimeVoice
  LOG_FORMAT: 'json'
  // Secrets (webhook-secret, handoff-secret, openai-api-key) are read by the app from this vault
  // at start-up with the identity above, retried while a role assignment propagates: no Key Vault
  // reference here, whose value App Service would resolve before the hook writes it and cache.
  KEY_VAULT_URI: keyVaultUri
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: baseSettings
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
