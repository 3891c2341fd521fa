// On the existing Azure OpenAI resource: Cognitive Services OpenAI User for the apps' identity
// (call control and the control socket with an Entra token instead of an API key), and
// Cognitive Services OpenAI Contributor for the deployer, whose Entra token the postprovision
// hook uses to register the webhook endpoint when no API key is given.
param openAiResourceName string
param identityPrincipalId string
param deployerPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

var openAiUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
var openAiContributor = 'a001fd3d-188f-4b5d-821b-7da978bf7442'

resource openAi 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: openAiResourceName
}

resource user 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: openAi
  name: guid(openAi.id, identityPrincipalId, openAiUser)
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUser)
  }
}

resource deployer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  scope: openAi
  name: guid(openAi.id, deployerPrincipalId, openAiContributor)
  properties: {
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiContributor)
  }
}
