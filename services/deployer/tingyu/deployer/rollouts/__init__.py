"""Canary rollouts: a consumer that records what to roll out, and a leader loop that does it in batches."""

from tingyu.deployer.rollouts.consumer import RolloutCommands
from tingyu.deployer.rollouts.loop import RolloutLoop

__all__ = ["RolloutCommands", "RolloutLoop"]
