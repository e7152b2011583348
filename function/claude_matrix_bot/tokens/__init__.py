"""OAuth tokens: where they live (a directory or a Kubernetes Secret) and how they are refreshed."""
