"""Containers: operators' commands become desired state; agents' reports complete their jobs."""

from tingyu.deployer.containers.handler import Commands, Dispatched, Reports, Transactions

__all__ = ["Commands", "Dispatched", "Reports", "Transactions"]
