// Phone voice agent: Function App (webhook) + Container App (session host) + Table Storage,
// Key Vault, Application Insights, one user-assigned identity. Deployed with `azd up`.
// Plain Bicep on purpose (no resourceInput<> or spreads): the offline tests parse it with tree-sitter.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names and tags derive from it')
param environmentName string

// Realtime SIP is served in these regions, which also offer Flex Consumption; keep the apps next
// to the Azure OpenAI resource so the control socket stays in-region.
@allowed([
  'swedencentral'
  'eastus2'
])
param location string

@description('Object id of the deploying principal: it may write Key Vault secrets in the postprovision hook')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('azure: an Azure OpenAI resource (openAiEndpoint). openai: api.openai.com with an API key (USE_OPENAI_KEY=true: the postprovision hook stores it in Key Vault).')
@allowed([
  'azure'
  'openai'
])
param realtimeDialect string = 'azure'

@description('Existing Azure OpenAI endpoint, e.g. https://<resource>.openai.azure.com (a trailing / is ignored); empty with realtimeDialect=openai')
param openAiEndpoint string = ''

@description('Name of the existing Azure OpenAI resource (for the role assignment); empty to skip it')
param openAiResourceName string = ''

@description('Resource group of the Azure OpenAI resource; defaults to this deployment\'s group')
param openAiResourceGroup string = ''

@description('Realtime deployment name (REALTIME_MODEL)')
param realtimeModel string = 'gpt-realtime'

param realtimeVoice string = 'marin'

@description('SIP URI or tel: number for human hand-off (SIP_TARGET_URI); empty means none')
param sipTargetUri string = ''

@description('Set by azd: true once the session host exists, so re-provisioning keeps its image')
param sessionHostExists bool = false

@minValue(1)
param sessionHostMinReplicas int = 2

@minValue(1)
param sessionHostMaxReplicas int = 10

@description('Calls one replica takes (MAX_CALLS_PER_REPLICA); also the scale rule target')
param maxCallsPerReplica int = 200

@description('Optional chat deployment that writes call summaries (SUMMARY_MODEL); empty = offline summary')
param summaryModel string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
  }
}

module vault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
  }
}

module registry 'app/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: 'cr${resourceToken}'
    location: location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: vault.outputs.name
    registryName: registry.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
  }
}

module openAiRbac 'app/openai-rbac.bicep' = if (!empty(openAiResourceName)) {
  name: 'openai-rbac'
  scope: resourceGroup(empty(openAiResourceGroup) ? rg.name : openAiResourceGroup)
  params: {
    openAiResourceName: openAiResourceName
    identityPrincipalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
  }
}

// A trailing slash in the endpoint would give `//openai/...` URLs, which the service refuses.
var endpoint = endsWith(openAiEndpoint, '/') ? substring(openAiEndpoint, 0, length(openAiEndpoint) - 1) : openAiEndpoint
var openAiBase = realtimeDialect == 'openai' ? 'https://api.openai.com' : '${endpoint}/openai'
var realtimeWsBase = realtimeDialect == 'openai'
  ? 'wss://api.openai.com/v1/realtime'
  : '${replace(endpoint, 'https://', 'wss://')}/openai/v1/realtime'

module sessionHost 'app/session-host.bicep' = {
  name: 'session-host'
  scope: rg
  dependsOn: [
    rbac
  ]
  params: {
    environmentName: 'cae-${resourceToken}'
    appName: 'ca-host-${resourceToken}'
    location: location
    tags: tags
    exists: sessionHostExists
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    registryServer: registry.outputs.loginServer
    logAnalyticsName: monitoring.outputs.logAnalyticsName
    appInsightsConnectionString: monitoring.outputs.connectionString
    appInsightsAppId: monitoring.outputs.appId
    keyVaultUri: vault.outputs.uri
    tableEndpoint: storage.outputs.tableEndpoint
    openAiBase: openAiBase
    realtimeWsBase: realtimeWsBase
    realtimeDialect: realtimeDialect
    realtimeModel: realtimeModel
    realtimeVoice: realtimeVoice
    sipTargetUri: sipTargetUri
    minReplicas: sessionHostMinReplicas
    maxReplicas: sessionHostMaxReplicas
    maxCallsPerReplica: maxCallsPerReplica
    summaryModel: summaryModel
  }
}

module webhook 'app/function.bicep' = {
  name: 'function'
  scope: rg
  dependsOn: [
    rbac
  ]
  params: {
    planName: 'plan-${resourceToken}'
    appName: 'func-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultUri: vault.outputs.uri
    tableEndpoint: storage.outputs.tableEndpoint
    sessionHostUrl: sessionHost.outputs.url
    openAiBase: openAiBase
    realtimeWsBase: realtimeWsBase
    realtimeDialect: realtimeDialect
    realtimeModel: realtimeModel
    realtimeVoice: realtimeVoice
  }
}

// Outputs are named as the settings the apps and the hooks read: one vocabulary from infra to code.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = vault.outputs.uri
output AZURE_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output SESSION_HOST_URL string = sessionHost.outputs.url
output WEBHOOK_URL string = '${webhook.outputs.url}/openai/webhook'
output OPENAI_BASE string = openAiBase
output REALTIME_DIALECT string = realtimeDialect
output REALTIME_WS_BASE string = realtimeWsBase
output REALTIME_MODEL string = realtimeModel
output SERVICE_WEBHOOK_NAME string = webhook.outputs.name
output SERVICE_SESSION_HOST_NAME string = sessionHost.outputs.name
