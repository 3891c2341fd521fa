param name string
param location string
param tags object

// RBAC mode: the identity reads secrets with Key Vault Secrets User; no access policies.
// Secrets (webhook signing secret, hand-off secret, admin token, optional OpenAI key) are written
// by the postprovision hook: generated there, never typed by a person, never Bicep outputs.
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
