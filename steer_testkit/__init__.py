"""The test kit: what tests/ and bench/ share, and nothing either of them owns. Neither
the product packages (steer_common, pyctl, transceiver) nor this kit import tests or bench,
and no test module imports another test module or another directory's conftest.py
(tests/unit/test_layers.py keeps it so). Fixtures stay in the conftest.py files; they
build on what is here.

- replay: BPF_PROG_TEST_RUN packet replay (namespace, frames, harness, cases, model, seeds)
- stun: the STUN message builder (steer_common.stun, under the name the tests use)
- certs: self-signed certificates
- daemon: a real `steerctl daemon` on a lab network, raw HTTP to its API, its pinned maps,
  the API and CLI calls the tests share
- redis_server: a redis-server with a client and readers of the daemon's mirror
- traffic: UDP sockets in the lab's namespaces and the ICE exchange that makes a flow
- labs: the lab brought up and down around a block (running), the NAT lab, its counters
- browser: headless Chromium in a namespace, driven over the DevTools protocol
- live: the data plane live on the lab's veths (live_relay), sockets and sniffers there
- packets: reading what a sniffer saw
- transceiver: the transceiver tests' fake control API, WHIP server and aiortc peer
- controller: the Controller's API over any Routes, without a daemon
- vagrant: the roles the VM lab's Vagrantfile provisions
"""
