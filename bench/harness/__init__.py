"""What the benchmark's parts share, below all of them: no module here imports a part,
`bench.run` or `bench.__main__`; besides each other, only the lab plumbing (config,
topology, relays, verify, traffic, livegen, latency, xdp_cost, xdp_progs, turn, build,
cpus, profile). tests/unit/test_layers.py holds bench to that.

progress.py  Progress: the run's timestamped progress lines
stats.py     medians, spreads over rounds, ratios, rotation of the relay order, CPU per packet
machine.py   the machine's facts and which data plane (commit, bpf/ digest) was measured
fmt.py       the relays' labels and the number formatting the table and the docs share
parts.py     a part's results file: save() and newest()
measured.py  Measured, everything taken over the rounds, and the run's record built from it
standing.py  Bench, the relays standing on their namespaces with the runners that time them
             (rounds, latency turns, XDP costs, profile), and standing(), its lifetime
"""
