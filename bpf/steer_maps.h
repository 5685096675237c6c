/* steer_maps.h — every BPF map of the relay, one comment each: key -> value, who writes it.
 *
 * All maps are pinned under STEER_PIN_DIR (a -D cflag set by the loader, e.g.
 * /sys/fs/bpf/steer/<instance>). bcc reuses a map that is already pinned there, which is
 * how a restarted daemon adopts the state of the one before it. Capacities are -D cflags
 * too, so tests and production compile the same source with the same switches.
 */
#ifndef STEER_MAPS_H
#define STEER_MAPS_H

#include "steer_shared.h"

#ifndef STEER_PIN_DIR
#error "STEER_PIN_DIR must be set by the loader (-DSTEER_PIN_DIR=\"/sys/fs/bpf/steer/NAME\")"
#endif
#ifndef STEER_MAX_VIPS
#define STEER_MAX_VIPS 64
#endif
#ifndef STEER_MAX_SESSIONS
#define STEER_MAX_SESSIONS 1048576
#endif
#ifndef STEER_MAX_FLOWS
#define STEER_MAX_FLOWS 1048576
#endif
/* Transceiver Binding Requests whose answers are awaited; LRU, so the oldest go first. */
#ifndef STEER_MAX_PENDING
#define STEER_MAX_PENDING 65536
#endif
/* The per-relay budget for return packets to clients without a flow (the amplification
 * path): STEER_NOFLOW_PPS packets per second, bursts of STEER_NOFLOW_BURST. */
#ifndef STEER_NOFLOW_PPS
#define STEER_NOFLOW_PPS 20000
#endif
#ifndef STEER_NOFLOW_BURST
#define STEER_NOFLOW_BURST 2000
#endif
#define STEER_NOFLOW_INTERVAL_NS (1000000000ULL / STEER_NOFLOW_PPS)
#define STEER_NOFLOW_BURST_NS (STEER_NOFLOW_BURST * STEER_NOFLOW_INTERVAL_NS)
#ifndef STEER_MAX_BACKENDS
#define STEER_MAX_BACKENDS 4096
#endif
/* Per-session budgets (steer_sock_budgets), so that one session's floods spend only its
 * own: Binding Requests from addresses without the session's proven flow, and the
 * session's packets to such addresses, each STEER_SESSION_*_PPS with bursts of
 * STEER_SESSION_*_BURST. */
#ifndef STEER_SESSION_CHECK_PPS
#define STEER_SESSION_CHECK_PPS 50
#endif
#ifndef STEER_SESSION_CHECK_BURST
#define STEER_SESSION_CHECK_BURST 100
#endif
#ifndef STEER_SESSION_NOFLOW_PPS
#define STEER_SESSION_NOFLOW_PPS 100
#endif
#ifndef STEER_SESSION_NOFLOW_BURST
#define STEER_SESSION_NOFLOW_BURST 200
#endif
#define STEER_CHECK_INTERVAL_NS (1000000000ULL / STEER_SESSION_CHECK_PPS)
#define STEER_CHECK_BURST_NS (STEER_SESSION_CHECK_BURST * STEER_CHECK_INTERVAL_NS)
#define STEER_SNOFLOW_INTERVAL_NS (1000000000ULL / STEER_SESSION_NOFLOW_PPS)
#define STEER_SNOFLOW_BURST_NS (STEER_SESSION_NOFLOW_BURST * STEER_SNOFLOW_INTERVAL_NS)
/* Sessions whose budgets are remembered (LRU: one forgotten starts with a full burst). */
#ifndef STEER_MAX_SOCK_BUDGETS
#define STEER_MAX_SOCK_BUDGETS 65536
#endif
/* The learn ring's size in pages (a power of two): 256 (1 MiB) holds 11,915 events of 88
 * bytes with their headers, seconds of learning at any rate a relay sees. */
#ifndef STEER_LEARN_RING_PAGES
#define STEER_LEARN_RING_PAGES 256
#endif
#ifndef STEER_MAX_SRC_PREFIXES
#define STEER_MAX_SRC_PREFIXES 1024
#endif

/* VIP ip:port -> flags. Daemon. A packet to anything else on the public side passes. */
BPF_TABLE_PINNED("hash", struct steer_addr, struct steer_vip, steer_vips,
		 STEER_MAX_VIPS, STEER_PIN_DIR "/steer_vips", BPF_F_NO_PREALLOC);

/* server ufrag -> session (transceiver socket, VIP, backend). Daemon. */
BPF_TABLE_PINNED("hash", struct steer_ufrag, struct steer_session, steer_sessions,
		 STEER_MAX_SESSIONS, STEER_PIN_DIR "/steer_sessions", BPF_F_NO_PREALLOC);

/* transceiver socket -> the same session. Daemon. Lets a transceiver send first. */
BPF_TABLE_PINNED("hash", struct steer_addr, struct steer_session, steer_socks,
		 STEER_MAX_SESSIONS, STEER_PIN_DIR "/steer_socks", BPF_F_NO_PREALLOC);

/* backend id -> address and state. Daemon. */
BPF_TABLE_PINNED("array", __u32, struct steer_backend, steer_backends,
		 STEER_MAX_BACKENDS, STEER_PIN_DIR "/steer_backends");

/* client ip:port + VIP ip:port -> transceiver socket, timestamps, counters. XDP: created
 * tentative by a session socket's Binding Success Response to a check the relay saw
 * (steer_asked), made current by the client's Success answer to the session's own check
 * (steer_pending), refreshed both ways; the daemon expires idle ones and purges a
 * session's. */
BPF_TABLE_PINNED("lru_hash", struct steer_flow_key, struct steer_flow, steer_flows,
		 STEER_MAX_FLOWS, STEER_PIN_DIR "/steer_flows");

/* transceiver socket + client ip:port -> VIP the client used, cached next hop. XDP, with
 * the flow; the daemon purges them before flows. */
BPF_TABLE_PINNED("lru_hash", struct steer_rflow_key, struct steer_rflow, steer_rflows,
		 STEER_MAX_FLOWS, STEER_PIN_DIR "/steer_rflows");

/* session socket -> the clients it holds flows for (the per-session cap). XDP creates it
 * with the socket's first flow; the daemon deletes it when the session ends. */
BPF_TABLE_PINNED("hash", struct steer_addr, struct steer_sock_flows, steer_sockflows,
		 STEER_MAX_SESSIONS, STEER_PIN_DIR "/steer_sockflows", BPF_F_NO_PREALLOC);

/* client ip:port + transaction id -> the session socket whose Binding Request it answers.
 * XDP (return path). */
BPF_TABLE_PINNED("lru_hash", struct steer_pending_key, struct steer_pending, steer_pending,
		 STEER_MAX_PENDING, STEER_PIN_DIR "/steer_pending");

/* client ip:port + transaction id -> the session socket a client's Binding Request was
 * routed to (and the VIP it came to). XDP (public side); LRU. */
BPF_TABLE_PINNED("lru_hash", struct steer_pending_key, struct steer_pending, steer_asked,
		 STEER_MAX_PENDING, STEER_PIN_DIR "/steer_asked");

/* [0] -> the no-flow return budget. XDP. */
BPF_TABLE_PINNED("array", __u32, struct steer_budget, steer_budget, 1,
		 STEER_PIN_DIR "/steer_budget");

/* session socket -> its own check and return budgets. XDP; LRU. */
BPF_TABLE_PINNED("lru_hash", struct steer_addr, struct steer_sock_budget, steer_sock_budgets,
		 STEER_MAX_SOCK_BUDGETS, STEER_PIN_DIR "/steer_sock_budgets");

/* source prefix -> deny or allow (longest match): sources no client can have. Daemon
 * (the RFC 6890 defaults, the VIPs' addresses, the operator's exceptions). */
BPF_TABLE_PINNED("lpm_trie", struct steer_src_prefix, struct steer_src_rule,
		 steer_src_prefixes, STEER_MAX_SRC_PREFIXES, STEER_PIN_DIR "/steer_src_prefixes",
		 BPF_F_NO_PREALLOC);

/* enum steer_reason -> packets, bytes; per CPU. XDP. */
BPF_TABLE_PINNED("percpu_array", __u32, struct steer_counter, steer_stats,
		 STEER_R__MAX, STEER_PIN_DIR "/steer_stats");

/* [0] -> interface indexes. Loader. */
BPF_TABLE_PINNED("array", __u32, struct steer_config, steer_config, 1,
		 STEER_PIN_DIR "/steer_config");

#ifdef STEER_EXPLAIN
/* enum steer_reason -> packets, bytes; per CPU. The explain build counts here, in a map of
 * its own, instead of in the pinned steer_stats: that is how it reports the reason. */
BPF_PERCPU_ARRAY(steer_explain_stats, struct steer_counter, STEER_R__MAX);
#endif

/* [0] -> an all-zero steer_sock_flows, the initial value of a new socket's ring (too big
 * for the stack). Never written. */
BPF_ARRAY(steer_zero_ring, struct steer_sock_flows, 1);

/* [0] -> room for the keys and values the rare paths (learning a flow, remembering a
 * check) build, which would not fit in the 512-byte stack beside the rest; per CPU. */
struct steer_tmp {
	struct steer_flow flow;
	struct steer_rflow rflow;
	struct steer_flow_key old;
	struct steer_rflow_key rold;
	struct steer_pending_key pk;
	struct steer_pending p;
	struct steer_flow_key fk;   /* a proof's flow key and socket + client (public side) */
	struct steer_rflow_key rk;
};
BPF_PERCPU_ARRAY(steer_tmp, struct steer_tmp, 1);

/* [0] -> the coarse clock as last read on this CPU, and the jiffy it was read in. The
 * per-packet paths read jiffies (an inlined load) and call the clock helper only when the
 * jiffy has moved: the same CLOCK_MONOTONIC value at jiffy resolution, without a helper
 * call per packet. Per CPU, not pinned: a fresh program starts with an empty one. */
struct steer_clock {
	__u64 jiffies;
	__u64 ns;
};
BPF_PERCPU_ARRAY(steer_clock, struct steer_clock, 1);

/* session socket -> its current path: the client address last proven to receive there
 * (steer.bpf.c, "Mobility"). XDP; the daemon deletes it when the session ends. */
BPF_TABLE_PINNED("hash", struct steer_addr, struct steer_path, steer_paths,
		 STEER_MAX_SESSIONS, STEER_PIN_DIR "/steer_paths", BPF_F_NO_PREALLOC);

/* key id (0-15) -> a SipHash key sealed ufrags may name (seal.h). Daemon (steerctl key). */
BPF_TABLE_PINNED("array", __u32, struct steer_seal_key, steer_seal_keys, 16,
		 STEER_PIN_DIR "/steer_seal_keys");

/* SSRC -> the session socket whose authenticated flow carried it (connection hints). XDP
 * (a sample of flow packets); LRU; the daemon deletes a session's with it. */
BPF_TABLE_PINNED("lru_hash", __u32, struct steer_ssrc_owner, steer_ssrcs,
		 STEER_MAX_FLOWS, STEER_PIN_DIR "/steer_ssrcs");

/* session socket -> the SSRCs it learned, a ring (the per-session bound). XDP; daemon. */
BPF_TABLE_PINNED("hash", struct steer_addr, struct steer_ssrc_ring, steer_ssrc_rings,
		 STEER_MAX_SESSIONS, STEER_PIN_DIR "/steer_ssrc_rings", BPF_F_NO_PREALLOC);

/* A ring buffer of struct steer_learn_event: the flows proofs made current (steer.bpf.c,
 * prove()). XDP writes; the daemon reads (pyctl/dataplane/learnring.py). Pinned like the
 * rest: events written while no daemon reads wait for the next one, and what does not fit
 * is counted in steer_learn_lost. bcc has no pinned form of BPF_RINGBUF_OUTPUT; this is
 * that macro with the pinned section, and the event as the table's leaf, so Python gets
 * bcc's generated type for it. */
struct steer_learned_table_t {
	int key;
	struct steer_learn_event leaf;
	int (*ringbuf_output)(void *, u64, u64);
	void *(*ringbuf_reserve)(u64);
	void (*ringbuf_discard)(void *, u64);
	void (*ringbuf_submit)(void *, u64);
	u32 max_entries;
};
__attribute__((section("maps/ringbuf:" STEER_PIN_DIR "/steer_learned")))
struct steer_learned_table_t steer_learned = {
	.max_entries = STEER_LEARN_RING_PAGES * 4096,
};

/* [0] -> learn events the ring had no room for. XDP (atomic add; rare path). */
BPF_TABLE_PINNED("array", __u32, __u64, steer_learn_lost, 1, STEER_PIN_DIR "/steer_learn_lost");

#endif /* STEER_MAPS_H */
