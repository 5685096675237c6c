"""`python -m bench`: steer against the relays a user would pick instead, in one run.

run.py        the run, orchestrated: the relays' rounds, the parts, the record, publishing
harness/      what the parts share, importing none of them: progress, statistics, machine
              facts, results files, the Bench standing on its namespaces and its runners
config.py     names, addresses, the flow under test, the full and smoke plans
topology.py   the namespaces (the lab's, `bench` prefix), XDP attach, cleanup
relays.py     the five relays behind one start()/stop() interface
verify.py     the forwarding check every relay passes before it is timed
traffic.py    trafgen load, delivered counts, CPU accounting
livegen.py    the live-frames (BPF_PROG_TEST_RUN) generator
latency.py    UDP ping-pong round trips (udp_ping.c)
xdp_cost.py   BPF_PROG_TEST_RUN ns/packet, program sizes, session-count scaling
xdp_progs.py  the benchmark's own XDP programs (probes, breakdown, bare relay)
report.py     ratios, aims, the stdout table, plots;  docs.py  docs/benchmarks.md
baselines/    the relays compared with: bare_xdp.bpf.c, udp_relay.c, udp_relay.py
"""
