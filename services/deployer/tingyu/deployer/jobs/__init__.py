"""Jobs: timers that fail jobs whose machine did not converge, and the jobs of dead letters."""

from tingyu.deployer.jobs.handler import Deadlines, fail_job

__all__ = ["Deadlines", "fail_job"]
