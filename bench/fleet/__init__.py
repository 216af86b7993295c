"""Fleet benchmark: a SIMULATED fleet ramped to 10k/50k/100k machines against the real platform.

    .venv/bin/python -m bench.fleet --nodes 10000,50000,100000 --containers 10

See `__main__.py` for what is measured and the baselines each figure is printed beside.
"""
