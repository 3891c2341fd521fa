// Cognitive Services OpenAI User on the existing Azure OpenAI resource, so the apps can use
// managed identity for call control and the control socket instead of an API key.
param openAiResourceName string
param identityPrincipalId string

var openAiUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

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
