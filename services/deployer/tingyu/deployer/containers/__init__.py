"""Containers: operators' commands become desired state; agents' reports complete their jobs."""

from tingyu.deployer.containers.handler import Commands, Dispatched, Reports, Transactions
from tingyu.deployer.containers.listings import Listings

__all__ = ["Commands", "Dispatched", "Listings", "Reports", "Transactions"]
