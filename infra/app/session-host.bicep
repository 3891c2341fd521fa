param environmentName string
param appName string
param location string
param tags object
param exists bool
param identityId string
param identityClientId string
param registryServer string
param logAnalyticsName string
param appInsightsConnectionString string
@description('Application Insights application ID (the component\'s AppId), which the KEDA scaler queries')
param appInsightsAppId string
param keyVaultUri string
param tableEndpoint string
param openAiBase string
param realtimeWsBase string
@allowed([
  'azure'
  'openai'
])
param realtimeDialect string
param realtimeModel string
param realtimeVoice string
param sipTargetUri string
param minReplicas int
param maxReplicas int
param maxCallsPerReplica int
param summaryModel string = ''

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource env 'Microsoft.App/managedEnvironments@2025-01-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
    zoneRedundant: false
  }
}

module fetchImage 'fetch-image.bicep' = {
  name: '${appName}-image'
  params: {
    exists: exists
    name: appName
  }
}

var placeholder = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
// Until azd deploys our image the app runs the placeholder, which listens on 80, not 8000.
var port = empty(fetchImage.outputs.image) ? 80 : 8000
var livenessPath = empty(fetchImage.outputs.image) ? '/' : '/healthz'
var readinessPath = empty(fetchImage.outputs.image) ? '/' : '/readyz'

resource app 'Microsoft.App/containerApps@2025-01-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'session_host'
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: env.id
    configuration: {
      // Single revision: a new revision takes traffic once ready; the old one's replicas get
      // SIGTERM and hand their live calls over (terminationGracePeriodSeconds below).
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: port
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        {
          server: registryServer
          identity: identityId
        }
      ]
      // No secrets here: the app reads handoff-secret, admin-token and openai-api-key from Key Vault
      // at start-up (KEY_VAULT_URI), retrying while the hook writes them and roles propagate. A
      // Key Vault reference here would fail the app's creation on a first `azd up`, before the hook ran.
    }
    template: {
      terminationGracePeriodSeconds: 600
      containers: [
        {
          name: 'session-host'
          image: empty(fetchImage.outputs.image) ? placeholder : fetchImage.outputs.image
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: [
            { name: 'PORT', value: '8000' }
            { name: 'AZURE_CLIENT_ID', value: identityClientId }
            { name: 'STORAGE_TABLE_ENDPOINT', value: tableEndpoint }
            { name: 'OPENAI_BASE', value: openAiBase }
            { name: 'REALTIME_WS_BASE', value: realtimeWsBase }
            { name: 'REALTIME_DIALECT', value: realtimeDialect }
            { name: 'REALTIME_MODEL', value: realtimeModel }
            { name: 'REALTIME_VOICE', value: realtimeVoice }
            { name: 'SIP_TARGET_URI', value: sipTargetUri }
            { name: 'MAX_CALLS_PER_REPLICA', value: string(maxCallsPerReplica) }
            { name: 'SUMMARY_MODEL', value: summaryModel }
            { name: 'SHUTDOWN_GRACE_SECONDS', value: '570' }
            { name: 'LOG_FORMAT', value: 'json' }
            { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
            { name: 'KEY_VAULT_URI', value: keyVaultUri }
          ]
          probes: [
            {
              type: 'Liveness'
              httpGet: {
                path: livenessPath
                port: port
              }
              periodSeconds: 10
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: readinessPath
                port: port
              }
              periodSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        // Calls are held WebSockets that this app opens outward: the HTTP-concurrency rule never
        // sees them (it counts inbound requests). Scale on the calls themselves instead: every
        // replica publishes its live-call gauge (voice.active_calls) to Application Insights each
        // minute, and KEDA's azure-app-insights scaler sums it, one replica per 70% of capacity.
        // This cannot be exercised without Azure; see docs/deploy.md.
        rules: [
          {
            name: 'live-calls'
            custom: {
              type: 'azure-app-insights'
              // KEDA authenticates with the app's user-assigned identity (Monitoring Reader on the
              // component, rbac.bicep); `identity` on a custom rule exists from API 2024-10-02-preview / GA 2025-01-01.
              identity: identityId
              metadata: {
                metricId: 'customMetrics/voice.active_calls'
                metricAggregationTimespan: '0:1'
                metricAggregationType: 'sum'
                targetValue: string(maxCallsPerReplica * 7 / 10)
                applicationInsightsId: appInsightsAppId
                tenantId: tenant().tenantId
              }
            }
          }
        ]
      }
    }
  }
}

output name string = app.name
output url string = 'https://${app.properties.configuration.ingress.fqdn}'
