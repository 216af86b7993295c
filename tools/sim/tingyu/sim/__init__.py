"""The fleet simulator: SIMULATED machines that run the real agent code over a simulated engine.

Nothing here touches a real container engine. Every machine it runs says it is simulated: its
heartbeats and node record carry `simulated=True`, its facts name a simulated OS and kernel, and
every log line and failure text says so.
"""
