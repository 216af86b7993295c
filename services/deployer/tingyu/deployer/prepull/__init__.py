"""Image pre-pull: a consumer that has machines fetch an image ahead of a rollout."""

from tingyu.deployer.prepull.handler import Prepulls

__all__ = ["Prepulls"]
