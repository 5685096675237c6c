/* steer_shared.h — every type the XDP program and the Python control plane share.
 *
 * This file is the single definition of the map layouts: the XDP program includes it, and
 * Python reads bcc's generated ctypes for the same structs (never a second copy). Python
 * mirrors only the enums, and a unit test parses this header to check the mirror.
 * Addresses are stored in network byte order: IPv4 in the first 4 bytes of `ip`, the rest
 * zero. Reason codes are never renumbered; a retired code stays as STEER_R_UNUSED_<n>.
 */
#ifndef STEER_SHARED_H
#define STEER_SHARED_H

#define STEER_UFRAG_MIN 4
#define STEER_UFRAG_MAX 32

enum steer_family {
	STEER_FAMILY_NONE = 0,
	STEER_FAMILY_V4 = 4,
	STEER_FAMILY_V6 = 6,
};

/* One UDP endpoint: a VIP, a client, or a transceiver socket. 20 bytes. */
struct steer_addr {
	__u8 ip[16];
	__be16 port;
	__u8 family;  /* enum steer_family */
	__u8 pad;
};

/* steer_vips value. */
struct steer_vip {
	__u32 flags;
	__u32 pad;
};

/* steer_sessions key: the server ufrag, zero-padded. */
struct steer_ufrag {
	char s[STEER_UFRAG_MAX];
};

/* steer_sessions value; steer_socks value (keyed by `sock`) carries the same struct. */
struct steer_session {
	struct steer_ufrag ufrag;
	struct steer_addr sock;    /* the transceiver socket that owns the session */
	struct steer_addr vip;     /* where the session's packets appear to come from */
	__u32 backend_id;
	__u32 flags;               /* STEER_SESSION_* */
	__u32 cid_nonce;           /* with STEER_SESSION_CID: the nonce its routing CIDs carry */
	__u32 pad;
};

/* steer_session.flags: installed from another relay of the fleet, not registered here
 * (pyctl/daemon/fleet). The data plane ignores it; a restarted daemon leaves such a
 * session to the fleet sync instead of adopting it as its own. */
#define STEER_SESSION_FOREIGN 1
/* steer_session.flags: the session was registered with a sealed ufrag; `cid_nonce` is that
 * ufrag's nonce (kept across ICE restarts), and a routing CID reaches the session's socket
 * only if it carries the same nonce: a CID of an ended session, or of an earlier session on
 * a reused port, routes nothing (steer.bpf.c dtls_cid). */
#define STEER_SESSION_CID 2

enum steer_backend_state {
	STEER_BACKEND_UNSET = 0,   /* array slot never written: treated as active */
	STEER_BACKEND_ACTIVE = 1,
	STEER_BACKEND_DRAINING = 2, /* no new sessions (daemon policy); packets flow */
	STEER_BACKEND_DOWN = 3,     /* every packet to or from it is dropped */
};

/* steer_backends value, indexed by backend id (0 .. STEER_MAX_BACKENDS-1). */
struct steer_backend {
	struct steer_addr addr;
	__u32 state;  /* enum steer_backend_state */
	__u32 pad;
};

/* A next hop remembered from bpf_fib_lookup, so an established flow skips the lookup (the
 * largest cost of the hot path) until the entry is STEER_NEXTHOP_TTL_NS old. 24 bytes. */
struct steer_nexthop {
	__u64 checked_ns;   /* 0: never looked up */
	__u32 ifindex;
	__u8 dmac[6];
	__u8 smac[6];
};

/* steer_flows key: exactly the (source, destination) of a client's packet to a VIP. */
struct steer_flow_key {
	struct steer_addr client;
	struct steer_addr vip;
};

struct steer_flow {
	struct steer_addr sock;
	__u32 backend_id;
	__u32 flags;        /* STEER_FLOW_*; the data plane writes 0 when it learns a flow */
	__u64 created_ns;   /* bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC, jiffy resolution */
	__u64 last_seen_ns;
	__u64 packets;      /* client -> transceiver */
	__u64 bytes;
	__u64 rpackets;     /* transceiver -> client */
	__u64 rbytes;
	struct steer_nexthop nh;  /* towards the transceiver */
};

/* steer_flow.flags: a copy of a flow another relay of the fleet learned, installed by the
 * daemon (pyctl/daemon/fleet/flows.py). Routed like any flow; the daemon neither publishes
 * it again nor idles it out (it goes with its session). */
#define STEER_FLOW_FLEET 1
/* steer_flow.flags: tentative. The session answered a check the relay saw this address
 * send it, but nothing has shown that the client *receives* there (UDP sources are
 * spoofable): the flow carries the client's packets up, and nothing else. The socket's
 * packets to it stay budgeted, its SSRCs are not learned, it never displaces another live
 * session's flow, and it moves no path. The client's Binding Success Response to a check
 * the session itself sent there clears it (steer.bpf.c, "Return-routability"). */
#define STEER_FLOW_TENTATIVE 2

/* What a steer_learned event says happened to a flow (never renumbered). */
enum steer_learn_kind {
	STEER_LEARN_NEW = 1,        /* a proof created the flow */
	STEER_LEARN_REPOINTED = 2,  /* a proof moved it from another socket */
	STEER_LEARN_PROVEN = 3,     /* a proof made the socket's tentative flow current */
};

/* One steer_learned ring buffer record: a flow became a socket's proven one (what the
 * fleet shares, pyctl/daemon/fleet/flows.py). Written only where a proof lands, so a few
 * per session, never per media packet. 80 bytes (88 in the ring, with its header). */
struct steer_learn_event {
	struct steer_flow_key key;
	struct steer_addr sock;
	__u32 backend_id;
	__u32 kind;         /* enum steer_learn_kind */
	__u32 pad;
	__u64 created_ns;   /* the flow's created_ns as written */
};

/* steer_rflows key: exactly the (source, destination) of a transceiver's packet. */
struct steer_rflow_key {
	struct steer_addr sock;
	struct steer_addr client;
};

struct steer_rflow {
	struct steer_addr vip;
	__u32 backend_id;
	__u32 flags;              /* STEER_RFLOW_* */
	struct steer_nexthop nh;  /* towards the client */
};

/* steer_rflow.flags: the client has since proven another address (NAT rebinding, a
 * network change): the socket's packets to this one go to its current path (steer_paths)
 * instead. Set and cleared only by proofs of return-routability. */
#define STEER_RFLOW_STALE 1
/* steer_rflow.flags: the client checked the socket from this stale address since: the
 * socket's next Binding Request to it goes there, not to the current path, so that a
 * client back at an old address can prove it again. Set by a client's check, used once. */
#define STEER_RFLOW_ASKED 2

/* steer_paths value, keyed by session socket: the client address most recently proven to
 * receive there (it answered a check the socket sent it), the VIP that client used, and
 * when. steer.bpf.c ("Mobility"). */
struct steer_path {
	struct steer_addr client;
	struct steer_addr vip;
	__u64 authed_ns;
};

/* SRTP/SRTCP connection hints: the SSRCs a client sent on an authenticated flow, so its
 * RTP/RTCP from an address with no flow (a NAT rebinding) still reaches its session.
 * steer_ssrcs: SSRC (as on the wire) -> owner; steer_ssrc_rings: socket -> the last
 * STEER_SESSION_SSRC_CAP SSRCs it learned (the per-session bound; a power of 2). One
 * flow packet in STEER_SSRC_SAMPLE is looked at (STEER_SSRC_SAMPLE_OLD once the flow is
 * old). steer.bpf.c, "Connection hints". */
#ifndef STEER_SESSION_SSRC_CAP
#define STEER_SESSION_SSRC_CAP 8
#endif
#define STEER_SSRC_SAMPLE 16
/* Once a flow has carried STEER_SSRC_YOUNG packets, one in STEER_SSRC_SAMPLE_OLD is looked
 * at: its SSRCs are known by then, and each look costs the established path a packet read
 * and a map lookup. Powers of 2. */
#define STEER_SSRC_YOUNG 1024
#define STEER_SSRC_SAMPLE_OLD 1024
/* steer_config.flags: connection hints not used (learning goes on); bench/mobility.py
 * compares with and without. */
#define STEER_CONFIG_NO_HINTS 1

struct steer_ssrc_owner {
	struct steer_addr sock;
	__u32 backend_id;
	__u32 pad;
};

struct steer_ssrc_ring {
	__u32 next;
	__u32 ssrc[STEER_SESSION_SSRC_CAP];
};

/* The sealed word: 64 bits that route a first packet with no per-session state, the same
 * for a sealed ufrag (seal.h), a routing CID (below) and a sealed transaction id (its top
 * 48 bits: the nonce is 16 bits there). Most significant first:
 * backend:12 | port:16 | key id:4 | nonce:32. Its layout lives here and nowhere else in C;
 * steer_common/seal_layout.py is the Python side (tests/unit/test_seal_layout.py parses
 * these defines). */
#define STEER_SEAL_BACKEND_SHIFT 52
#define STEER_SEAL_BACKEND_MASK 0xfff
#define STEER_SEAL_PORT_SHIFT 36
#define STEER_SEAL_PORT_MASK 0xffff
#define STEER_SEAL_KEY_ID_SHIFT 32
#define STEER_SEAL_KEY_ID_MASK 0xf
#define STEER_SEAL_NONCE_SHIFT 0
#define STEER_SEAL_NONCE_MASK 0xffffffff
/* a sealed transaction id's 48-bit word is the sealed word shifted right by this */
#define STEER_SEAL_TXID_SHIFT 16

#define STEER_SEAL_FIELD(word, f) (((word) >> STEER_SEAL_##f##_SHIFT) & STEER_SEAL_##f##_MASK)

static __always_inline __u32 seal_backend(__u64 word)
{
	return STEER_SEAL_FIELD(word, BACKEND);
}

static __always_inline __u16 seal_port(__u64 word)
{
	return STEER_SEAL_FIELD(word, PORT);
}

static __always_inline __u32 seal_key_id(__u64 word)
{
	return STEER_SEAL_FIELD(word, KEY_ID);
}

static __always_inline __u32 seal_nonce(__u64 word)
{
	return STEER_SEAL_FIELD(word, NONCE);
}

/* DTLS connection IDs as routing hints (RFC 9146 tls12_cid records, content type 25). The
 * transceiver's DTLS server chooses the CID its clients must send: STEER_CID_LEN bytes,
 * the same 128 bits as a sealed ufrag (seal.h) in binary, big-endian: the sealed word,
 * then SipHash-2-4(steer_seal_keys[key id], word as 8 little-endian bytes). The relay
 * routes such a record from any client address to port `port` of backend `backend`'s
 * address, with no per-session state; the record header: type 25, version 2, epoch 2,
 * sequence 6, CID STEER_CID_LEN, length 2. */
#define STEER_CID_LEN 16
#define STEER_CID_OFF 11   /* after type, version, epoch, sequence number */
#define STEER_CID_HDR_LEN (STEER_CID_OFF + STEER_CID_LEN + 2)

/* steer_pending key: a Binding Request a session socket sent to a client (its transaction
 * id), so the client's answer reaches that socket even when the client has no flow, and a
 * Success answer proves the client receives there. Made only from what a transceiver sent,
 * never from what a client sent. The same key and value type serve steer_asked: a Binding
 * Request a client sent to a session socket, which the relay routed (what lets the
 * session's answer make a tentative flow). 32 bytes. */
struct steer_pending_key {
	struct steer_addr client;
	__u8 txid[12];
};

struct steer_pending {
	struct steer_addr sock;
	struct steer_addr vip;     /* the answer must come back to the VIP the check left from */
	__u32 backend_id;
	__u32 pad;
};

/* The most flows one session socket may hold; when it has this many, learning another one
 * evicts the socket's own oldest. A -D cflag (BuildOptions.session_flow_ring) that sizes
 * the ring; steer_config.session_flow_cap lowers it at run time. */
#ifndef STEER_SESSION_FLOW_CAP
#define STEER_SESSION_FLOW_CAP 64
#endif

/* steer_sockflows value: the clients a session socket was given flows for, a ring in
 * learning order. slot = next % STEER_SESSION_FLOW_CAP; once next reaches the cap, the slot
 * about to be reused holds the socket's oldest flow. */
struct steer_sock_flows {
	__u64 next;
	struct steer_addr vip;
	__u32 pad;
	struct steer_addr client[STEER_SESSION_FLOW_CAP];
};

/* steer_budget[0]: the relay-wide budget for return packets to clients without a proven
 * flow of their socket (the amplification path), as GCRA: `tat` is the theoretical
 * arrival time of the next packet; one is allowed while tat is at most a burst ahead of
 * now. */
struct steer_budget {
	__u64 tat;
};

/* steer_sock_budgets value, keyed by session socket: its own two GCRA budgets, so one
 * session's floods spend only its own. `check_tat`: Binding Requests to it from addresses
 * without its proven flow (public side); `return_tat`: its packets to addresses without
 * its proven flow (internal side). */
struct steer_sock_budget {
	__u64 check_tat;
	__u64 return_tat;
};

/* steer_src_prefixes key (an LPM trie): a source prefix. `prefixlen` counts the family
 * byte too (8 + the address bits), so IPv4 and IPv6 prefixes live in one trie. */
struct steer_src_prefix {
	__u32 prefixlen;
	__u8 family;     /* enum steer_family */
	__u8 ip[16];
	__u8 pad[3];
};

/* steer_src_prefixes value: the longest matching prefix decides. */
struct steer_src_rule {
	__u32 deny;      /* 1: no client can have this source; 0: allowed (an exception) */
	__u32 pad;
};

/* steer_seal_keys value, indexed by key id (0-15): a fleet's SipHash-2-4 key sealed ufrags
 * may name; each backend's key is derived from it (seal.h seal_backend_key). `valid` 0:
 * the id is unused or retired, its ufrags are dropped. */
struct steer_seal_key {
	__u64 k0;      /* key bytes 0-7, little-endian */
	__u64 k1;      /* key bytes 8-15 */
	__u32 valid;
	__u32 pad;
};

/* steer_stats value, per CPU, indexed by enum steer_reason. */
struct steer_counter {
	__u64 packets;
	__u64 bytes;
};

/* steer_config[0]: written by the loader when it attaches. */
struct steer_config {
	__u32 public_ifindex;
	__u32 internal_ifindex;
	__u32 flags;              /* STEER_CONFIG_* */
	__u32 session_flow_cap;  /* 1..STEER_SESSION_FLOW_CAP (steerctl daemon --session-flow-cap);
				  * 0: STEER_SESSION_FLOW_CAP */
	__u16 seal_port_lo;      /* the ports a sealed ufrag, CID or transaction id may name */
	__u16 seal_port_hi;      /* (steerctl daemon --sealed-ports); hi 0: 1024-65535 */
	__u32 pad;
};

/* Why a packet got its verdict. Values are part of the metrics API: never renumber. */
enum steer_reason {
	STEER_R_UNUSED_0 = 0,
	STEER_R_PASS_NOT_IP = 1,            /* not IPv4/IPv6, or not UDP */
	STEER_R_PASS_MALFORMED = 2,         /* truncated or inconsistent L2/L3/L4 headers */
	STEER_R_PASS_FRAGMENT = 3,          /* IP fragment: never steered */
	STEER_R_PASS_NOT_STEERED = 4,       /* UDP not to a VIP / not from a session socket */
	STEER_R_FWD_FLOW = 5,               /* client packet on an established flow */
	STEER_R_FWD_STUN = 6,               /* Binding Request routed by its ufrag */
	STEER_R_FWD_RETURN = 7,             /* transceiver packet NATed back to the client */
	STEER_R_DROP_STUN_UNKNOWN_UFRAG = 8,
	STEER_R_DROP_STUN_MALFORMED = 9,    /* header, length, attribute or USERNAME lies */
	STEER_R_DROP_STUN_NOT_REQUEST = 10, /* valid STUN but not a Binding Request */
	STEER_R_DROP_DTLS_NO_FLOW = 11,
	STEER_R_DROP_RTP_NO_FLOW = 12,
	STEER_R_DROP_UNCLASSIFIED = 13,     /* empty payload or first byte outside RFC 7983 */
	STEER_R_DROP_BACKEND_DOWN = 14,
	STEER_R_DROP_FAMILY_MISMATCH = 15,  /* session socket and packet are different families */
	STEER_R_PASS_FIB_FAILED = 16,       /* rewritten, but no route/neighbour: kernel forwards */
	STEER_R_DROP_CROSS_UNNATED = 17,    /* UDP the kernel would route across the sides raw */
	STEER_R_FWD_STUN_ANSWER = 18,       /* a client's error answer to a transceiver's own check */
	STEER_R_DROP_CROSS_FRAGMENT = 19,   /* an IP fragment the kernel would route across */
	STEER_R_DROP_CROSS_ICMP = 20,       /* ICMP/ICMPv6 the kernel would route across raw */
	STEER_R_DROP_CROSS_OTHER = 21,      /* TCP, other protocols, malformed UDP, across */
	STEER_R_DROP_TTL_EXCEEDED = 22,     /* TTL / hop limit <= 1: a router does not forward */
	STEER_R_DROP_IP_OPTIONS = 23,       /* IPv4 options on a packet the relay would steer */
	STEER_R_DROP_NO_FLOW_BUDGET = 24,   /* return without a proven flow, over the relay's budget */
	STEER_R_FWD_RETURN_LEARNED = 25,    /* a Success to an address that checked this session:
					     * tentative flow created or re-pointed */
	STEER_R_FWD_RETURN_EVICTED = 26,    /* the same, and the session's oldest flow went (cap) */
	STEER_R_FWD_RETURN_NO_FLOW = 27,    /* return without a proven flow, within budget */
	STEER_R_FWD_RETURN_MOVED = 28,      /* to a client's stale address: sent to its current one */
	STEER_R_FWD_STUN_SEALED = 29,       /* Binding Request routed by its sealed ufrag (seal.h) */
	STEER_R_DROP_SEAL_BAD_MAC = 30,     /* sealed ufrag whose MAC does not check out: forged */
	STEER_R_DROP_SEAL_STALE_KEY = 31,   /* sealed ufrag naming a key id not (or no longer) valid */
	STEER_R_DROP_SEAL_NO_BACKEND = 32,  /* sealed ufrag of a backend with no address here */
	STEER_R_FWD_RTP_HINT = 33,          /* RTP/RTCP with no flow, to the session owning its SSRC */
	STEER_R_FWD_DTLS_CID = 34,          /* DTLS record with a valid routing CID, any address */
	STEER_R_DROP_DTLS_CID_MALFORMED = 35, /* CID record truncated or its length field lies */
	STEER_R_DROP_DTLS_CID_FORGED = 36,  /* CID whose check bits, key id or backend fail */
	STEER_R_FWD_STUN_PROVEN = 37,       /* a client's Success answer to a session's own check:
					     * its address proven (flow made current, path moved) */
	STEER_R_DROP_SRC_BOGON = 38,        /* source no client can have (martian, denied prefix) */
	STEER_R_DROP_SRC_INTERNAL = 39,     /* source routed back inside, local, or unroutable */
	STEER_R_DROP_CHECK_BUDGET = 40,     /* a session's checks from unproven addresses, over budget */
	STEER_R_DROP_SESSION_BUDGET = 41,   /* a session's returns to unproven addresses, over budget */
	STEER_R_DROP_DTLS_CID_DEAD = 42,    /* valid CID, but no live session of its nonce there */
	STEER_R_FWD_RETURN_UNASKED = 43,    /* a Success to an address the relay saw send no such
					     * check to this session: moves nothing, budgeted */
	STEER_R_FWD_STUN_PROVEN_EVICTED = 44, /* proven, and the session's oldest flow went (cap) */
	STEER_R_DROP_SEAL_PORT = 45,        /* sealed ufrag naming a port outside the sealed range */
	STEER_R__MAX = 46,
};

#endif /* STEER_SHARED_H */
