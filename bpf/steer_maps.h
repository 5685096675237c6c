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
/* The longest STUN message the classifier reads; longer ones count as malformed. A Binding
 * Request is a few hundred bytes. */
#ifndef STEER_STUN_MAX_LEN
#define STEER_STUN_MAX_LEN 1280
#endif
#ifndef STEER_MAX_BACKENDS
#define STEER_MAX_BACKENDS 4096
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

/* client ip:port + VIP ip:port -> transceiver socket, timestamps, counters. XDP (return
 * path creates, both directions refresh); the daemon expires idle ones. */
BPF_TABLE_PINNED("lru_hash", struct steer_flow_key, struct steer_flow, steer_flows,
		 STEER_MAX_FLOWS, STEER_PIN_DIR "/steer_flows");

/* transceiver socket + client ip:port -> VIP the client used. XDP and daemon. */
BPF_TABLE_PINNED("lru_hash", struct steer_rflow_key, struct steer_rflow, steer_rflows,
		 STEER_MAX_FLOWS, STEER_PIN_DIR "/steer_rflows");

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

/* [0] -> scratch copy of a STUN message being classified; per CPU. XDP. Not pinned: it
 * holds no state between packets. Offsets into it are masked with STEER_SCRATCH_MASK
 * (>= STEER_STUN_MAX_LEN) for the verifier; the tail leaves room for a ufrag window. */
#define STEER_SCRATCH_MASK 0x7ff
struct steer_scratch {
	__u32 uoff;  /* USERNAME value offset, see stun.h */
	__u32 alen;
	__u8 b[STEER_SCRATCH_MASK + 1 + 4 + STEER_UFRAG_MAX + 4];
};
BPF_PERCPU_ARRAY(steer_scratch, struct steer_scratch, 1);

#endif /* STEER_MAPS_H */
