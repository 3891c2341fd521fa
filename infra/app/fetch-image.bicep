// azd's "exists" pattern: re-provisioning keeps the image azd deployed instead of resetting the
// app to the placeholder.
param exists bool
param name string

resource existingApp 'Microsoft.App/containerApps@2024-03-01' existing = if (exists) {
  name: name
}

output image string = exists ? existingApp.properties.template.containers[0].image : ''
