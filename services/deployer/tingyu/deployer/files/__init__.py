"""Files: copying a file out of a container, through the machine's agent."""

from tingyu.deployer.files.handler import Files

__all__ = ["Files"]
