"""Packet replay through BPF_PROG_TEST_RUN: the replay namespace (env), frame builders
(frames), the harness that runs frames through the attached programs (harness), the case
table (cases), the Python reference model of the XDP programs (model) and the seed frames
and map state the differential test and the fuzzer share (seeds). The tests in tests/bpf
and the benchmark's fuzzer (bench/fuzz.py) both use them."""
