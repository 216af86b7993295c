"""The `tingyu` command: run the platform locally, manage images, simulate fleets."""
