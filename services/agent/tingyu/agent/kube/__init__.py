"""The Kubernetes runtime (`TINGYU_RUNTIME=kubernetes`): one process is the agent of every Node."""
