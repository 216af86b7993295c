"""Consumers of the deployer: commands, agents' reports, job deadlines."""
