"""The kernel side: building and loading the XDP program, the pinned maps and their walks,
BPF_PROG_TEST_RUN, `steerctl explain`, and the namespaces the program runs in."""
