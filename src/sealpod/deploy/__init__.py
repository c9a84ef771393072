"""Package data: the sample application, Kubernetes manifests and example configs."""
