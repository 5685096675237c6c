/* steer.bpf.c — the relay's XDP programs.
 *
 * steer_public runs on the public interface: a client's STUN Binding Request is steered by
 * the server ufrag in its USERNAME (flow or no flow), a client's answer to a transceiver's
 * own check by its transaction id, everything else by the learned flow. steer_internal
 * runs on the internal interface: packets from a registered session socket are NATed to
 * come from the VIP; only a Binding Success Response (the transceiver checked
 * MESSAGE-INTEGRITY) creates or re-points the client's flow. Nothing else crosses between
 * the sides in either direction. Both leave through one `out:` that counts the reason.
 * Maps: steer_maps.h; types: steer_shared.h.
 */
#include <uapi/linux/bpf.h>
#include "steer_maps.h"
#include "parse.h"
#include "stun.h"
#include "rewrite.h"
#include "seal.h"

/* `steerctl explain` compiles with -DSTEER_EXPLAIN: the same program against the same
 * pinned maps, with every map write compiled out (counters go to a private map), so
 * asking changes nothing. */
#ifdef STEER_EXPLAIN
#define STEER_WRITES 0
#else
#define STEER_WRITES 1
#endif

/* RFC 7983 demultiplexing by the first payload byte. */
#define RFC7983_IS_STUN(b) ((b) <= 3)
#define RFC7983_IS_DTLS(b) ((b) >= 20 && (b) <= 63)
#define RFC7983_IS_RTP(b) ((b) >= 128 && (b) <= 191)

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* What a transceiver's UDP payload is, as far as flows are concerned. */
enum steer_kind { KIND_OTHER = 0, KIND_SUCCESS = 1, KIND_REQUEST = 2 };

static __always_inline void count(__u32 reason, __u32 bytes)
{
#ifdef STEER_EXPLAIN
	struct steer_counter *c = steer_explain_stats.lookup(&reason);
#else
	struct steer_counter *c = steer_stats.lookup(&reason);
#endif

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* bpf_ktime_get_coarse_ns(), read at most once per jiffy per CPU (see steer_clock). */
static __always_inline __u64 coarse_now(void)
{
#ifdef STEER_EXPLAIN
	return bpf_ktime_get_coarse_ns();
#else
	__u32 zero = 0;
	struct steer_clock *c = steer_clock.lookup(&zero);
	__u64 j = bpf_jiffies64();

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j) {
		c->ns = bpf_ktime_get_coarse_ns();
		c->jiffies = j;
	}
	return c->ns;
#endif
}

static __always_inline int backend_down(__u32 id)
{
	struct steer_backend *b = steer_backends.lookup(&id);

	return b && b->state == STEER_BACKEND_DOWN;
}

/* The per-session flow cap in force: the daemon's setting, within the ring's size. */
static __always_inline __u32 config_flow_cap(void)
{
	__u32 zero = 0;
	struct steer_config *cfg = steer_config.lookup(&zero);

	if (!cfg || !cfg->session_flow_cap || cfg->session_flow_cap > STEER_SESSION_FLOW_CAP)
		return STEER_SESSION_FLOW_CAP;
	return cfg->session_flow_cap;
}

static __always_inline __u32 config_ifindex(int public_side)
{
	__u32 zero = 0;
	struct steer_config *cfg = steer_config.lookup(&zero);

	if (!cfg)
		return 0;
	return public_side ? cfg->public_ifindex : cfg->internal_ifindex;
}

/* The first payload byte, or 0xff (unclassifiable) when there is none. */
static __always_inline __u32 first_byte(struct steer_pkt *pkt)
{
	__u8 *first = pkt->data + payload_off(pkt);

	if (!pkt->payload_len || (void *)(first + 1) > pkt->data_end)
		return 0xff;
	return *first;
}

/* A packet steer does not translate, headed for `other_side`: dropped if the kernel would
 * route it there (nothing crosses un-NATed, in any protocol), else left to the kernel with
 * the reason it already has. */
static __always_inline int guard_cross(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 other_side,
				 __u32 *reason)
{
	struct bpf_fib_lookup fib;
	long rc;

	if (!other_side || dst_link_scoped(pkt))
		return XDP_PASS;
	rc = fib_egress(ctx, pkt, &fib);
	if (!fib_has_egress(rc) || fib.ifindex != other_side)
		return XDP_PASS;
	if (pkt->frag)
		*reason = STEER_R_DROP_CROSS_FRAGMENT;
	else if (pkt->l4 == IPPROTO_ICMP || pkt->l4 == IPPROTO_ICMPV6)
		*reason = STEER_R_DROP_CROSS_ICMP;
	else if (pkt->payload_off)
		*reason = STEER_R_DROP_CROSS_UNNATED; /* well-formed UDP */
	else
		*reason = STEER_R_DROP_CROSS_OTHER;
	return XDP_DROP;
}

/* Steer a client's packet to a session socket: backend state, IP options, rewrite, route. */
static __always_inline int steer_to(struct xdp_md *ctx, struct steer_pkt *pkt,
				    const struct steer_addr *sock, __u32 backend_id,
				    __u32 ok_reason, __u32 *reason)
{
	if (backend_down(backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	rewrite_endpoint(pkt, STEER_DST, sock);
	*reason = ok_reason;
	return forward(ctx, pkt, reason);
}

/* A Binding Request whose ufrag no session here registered: routed by the ufrag alone if
 * it is sealed (seal.h) with a valid key, to port `port` of backend `backend`'s address.
 * Creates no state, like any client STUN. Forged or stale: dropped at one SipHash. */
static __always_inline int stun_sealed(struct xdp_md *ctx, struct steer_pkt *pkt,
				       const struct steer_ufrag *ufrag, __u32 *reason)
{
	struct steer_seal_key *k;
	struct steer_backend *b;
	struct steer_addr sock;
	__u64 word, mac;
	__u32 kid, backend_id;

	*reason = STEER_R_DROP_STUN_UNKNOWN_UFRAG;
	if (seal_decode(ufrag, &word, &mac))
		return XDP_DROP;
	kid = (word >> 32) & 0xf;
	k = steer_seal_keys.lookup(&kid);
	if (!k || !k->valid) {
		*reason = STEER_R_DROP_SEAL_STALE_KEY;
		return XDP_DROP;
	}
	if (siphash24_u64(k->k0, k->k1, word) != mac) {
		*reason = STEER_R_DROP_SEAL_BAD_MAC;
		return XDP_DROP;
	}
	backend_id = word >> 52;
	b = steer_backends.lookup(&backend_id);
	if (!b || !b->addr.family) {
		*reason = STEER_R_DROP_SEAL_NO_BACKEND;
		return XDP_DROP;
	}
	if (b->addr.family != pkt->family) {
		*reason = STEER_R_DROP_FAMILY_MISMATCH;
		return XDP_DROP;
	}
	sock = b->addr;
	sock.port = htons((word >> 36) & 0xffff);
	return steer_to(ctx, pkt, &sock, backend_id, STEER_R_FWD_STUN_SEALED, reason);
}

/* A client's Binding Request: routed by its ufrag, whatever flow its address has. */
static __always_inline int stun_request(struct xdp_md *ctx, struct steer_pkt *pkt,
					const struct steer_stun_hdr *h, __u32 *reason)
{
	struct steer_ufrag ufrag __attribute__((aligned(8))) = {}; /* seal_decode() */
	struct steer_session *s;

	*reason = stun_server_ufrag(ctx, pkt, h, &ufrag);
	if (*reason)
		return XDP_DROP;
	s = steer_sessions.lookup(&ufrag);
	if (!s)
		return stun_sealed(ctx, pkt, &ufrag, reason);
	if (s->sock.family != pkt->family) {
		*reason = STEER_R_DROP_FAMILY_MISMATCH;
		return XDP_DROP;
	}
	/* no state: XDP cannot verify MESSAGE-INTEGRITY, the transceiver's answer will */
	return steer_to(ctx, pkt, &s->sock, s->backend_id, STEER_R_FWD_STUN, reason);
}

/* A client's Binding response: to the session socket whose check it answers, if a live
 * session socket sent one with this transaction id to this address from this VIP. */
static __always_inline int stun_answer(struct xdp_md *ctx, struct steer_pkt *pkt,
				       const struct steer_flow_key *fk,
				       const struct steer_stun_hdr *h, __u32 *reason)
{
	struct steer_pending_key pk = { .client = fk->client };
	struct steer_pending *p;

	__builtin_memcpy(pk.txid, h->txid, sizeof(pk.txid));
	p = steer_pending.lookup(&pk);
	if (!p || !addr_eq(&p->vip, &fk->vip) || !steer_socks.lookup(&p->sock))
		return STEER_CONTINUE;
	return steer_to(ctx, pkt, &p->sock, p->backend_id, STEER_R_FWD_STUN_ANSWER, reason);
}

/* STUN to a VIP. Binding Requests and answers to a transceiver's checks are decided here;
 * anything else continues to the flow lookup, with *stun_reason what it gets if the
 * address has no flow. */
static __always_inline int steer_stun(struct xdp_md *ctx, struct steer_pkt *pkt,
				      const struct steer_flow_key *fk, __u32 *reason,
				      __u32 *stun_reason)
{
	struct steer_stun_hdr h;
	__u16 type;

	if (stun_header(ctx, pkt, &h)) {
		*stun_reason = STEER_R_DROP_STUN_MALFORMED;
		return STEER_CONTINUE;
	}
	*stun_reason = STEER_R_DROP_STUN_NOT_REQUEST;
	type = ntohs(h.type);
	if (type == STUN_BINDING_REQUEST)
		return stun_request(ctx, pkt, &h, reason);
	if (type == STUN_BINDING_SUCCESS || type == STUN_BINDING_ERROR)
		return stun_answer(ctx, pkt, fk, &h, reason);
	return STEER_CONTINUE;
}

/* Connection hints: SRTP/SRTCP. The relay learns the SSRCs a client sends on an
 * authenticated flow (a flow exists only after the transceiver's Binding Success
 * Response), never from a packet that arrived on no flow, at most STEER_SESSION_SSRC_CAP
 * per session socket (its own oldest goes first), first come first served between live
 * sessions. RTP/RTCP from an address with no flow whose SSRC a live session owns goes to
 * that session's socket (fwd_rtp_hint), creating nothing: the SRTP authentication tag is
 * the transceiver's to check, as a ufrag's MESSAGE-INTEGRITY is. tests/bpf/model.py
 * mirrors this. */

/* 0 and *ssrc (as on the wire) for RTP (RFC 3550: SSRC at byte 8) or RTCP (payload type
 * 192..223 in byte 1: the sender's SSRC at byte 4); -1 if too short. */
static __always_inline int rtp_ssrc(struct xdp_md *ctx, const struct steer_pkt *pkt, __u32 *ssrc)
{
	__u8 h[8];
	__u32 off = 4;

	if (pkt->payload_len < 8 || bpf_xdp_load_bytes(ctx, pkt->payload_off, h, sizeof(h)))
		return -1;
	if (h[1] < 192 || h[1] > 223) {
		if (pkt->payload_len < 12)
			return -1;
		off = 8;
	}
	return bpf_xdp_load_bytes(ctx, pkt->payload_off + off, ssrc, sizeof(*ssrc)) ? -1 : 0;
}

/* Whether a flow's n-th client packet is looked at for its SSRC (steer_shared.h). */
static __always_inline int ssrc_sampled(__u64 n)
{
	__u64 every = n < STEER_SSRC_YOUNG ? STEER_SSRC_SAMPLE : STEER_SSRC_SAMPLE_OLD;

	return (n & (every - 1)) == 1;
}

/* A client's RTP/RTCP on its authenticated flow: remember its SSRC for the flow's socket. */
static __always_inline void ssrc_learn(struct xdp_md *ctx, const struct steer_pkt *pkt,
				       const struct steer_flow *flow)
{
	struct steer_ssrc_owner owner = {}, *o;
	struct steer_ssrc_ring zero = {}, *ring;
	__u32 ssrc, old, slot;

	if (rtp_ssrc(ctx, pkt, &ssrc))
		return;
	o = steer_ssrcs.lookup(&ssrc);
	if (o && (addr_eq(&o->sock, &flow->sock) || steer_socks.lookup(&o->sock)))
		return; /* known here, or a live session's: the first owner keeps it */
	owner.sock = flow->sock;
	owner.backend_id = flow->backend_id;
	ring = steer_ssrc_rings.lookup(&owner.sock);
	if (!ring) {
		steer_ssrc_rings.update(&owner.sock, &zero);
		ring = steer_ssrc_rings.lookup(&owner.sock);
		if (!ring)
			return;
	}
	slot = ring->next & (STEER_SESSION_SSRC_CAP - 1);
	if (ring->next >= STEER_SESSION_SSRC_CAP) {
		old = ring->ssrc[slot];
		o = steer_ssrcs.lookup(&old);
		if (o && addr_eq(&o->sock, &owner.sock))
			steer_ssrcs.delete(&old);
	}
	ring->ssrc[slot] = ssrc;
	ring->next++;
	steer_ssrcs.update(&ssrc, &owner);
}

/* RTP/RTCP to a VIP from an address with no flow: to the live session that owns its
 * SSRC, or STEER_CONTINUE. */
static __always_inline int ssrc_hint(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 *reason)
{
	struct steer_ssrc_owner *o;
	struct steer_session *s;
	struct steer_config *cfg;
	struct steer_addr sock;
	__u32 ssrc, zero = 0;

	cfg = steer_config.lookup(&zero);
	if ((cfg && (cfg->flags & STEER_CONFIG_NO_HINTS)) || rtp_ssrc(ctx, pkt, &ssrc))
		return STEER_CONTINUE;
	o = steer_ssrcs.lookup(&ssrc);
	if (!o)
		return STEER_CONTINUE;
	sock = o->sock;
	s = steer_socks.lookup(&sock);
	if (!s || sock.family != pkt->family)
		return STEER_CONTINUE;
	return steer_to(ctx, pkt, &sock, s->backend_id, STEER_R_FWD_RTP_HINT, reason);
}

/* Connection hints: DTLS connection IDs (steer_shared.h STEER_CID_*). A tls12_cid record
 * (content type 25) with no flow, from any address: to the socket its CID names if the
 * check bits hold under a valid key, else dropped with a reason. Creates nothing; the
 * record's own MAC is the transceiver's to check. */
static __always_inline int dtls_cid(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 *reason)
{
	struct steer_seal_key *k;
	struct steer_backend *b;
	struct steer_addr sock;
	__u8 h[STEER_CID_HDR_LEN];
	__u64 word = 0, mac = 0;
	__u32 kid, backend_id, len;
	int i;

	*reason = STEER_R_DROP_DTLS_CID_MALFORMED;
	if (pkt->payload_len < STEER_CID_HDR_LEN ||
	    bpf_xdp_load_bytes(ctx, pkt->payload_off, h, sizeof(h)))
		return XDP_DROP;
	len = ((__u32)h[STEER_CID_HDR_LEN - 2] << 8) | h[STEER_CID_HDR_LEN - 1];
	if (STEER_CID_HDR_LEN + len > pkt->payload_len)
		return XDP_DROP;
#pragma unroll
	for (i = 0; i < 8; i++) {
		word = (word << 8) | h[STEER_CID_OFF + i];
		mac = (mac << 8) | h[STEER_CID_OFF + 8 + i];
	}
	*reason = STEER_R_DROP_DTLS_CID_FORGED;
	kid = (word >> 32) & 0xf;
	k = steer_seal_keys.lookup(&kid);
	if (!k || !k->valid || siphash24_u64(k->k0, k->k1, word) != mac)
		return XDP_DROP;
	backend_id = word >> 52;
	b = steer_backends.lookup(&backend_id);
	if (!b || b->addr.family != pkt->family)
		return XDP_DROP;
	sock = b->addr;
	sock.port = htons((word >> 36) & 0xffff);
	return steer_to(ctx, pkt, &sock, backend_id, STEER_R_FWD_DTLS_CID, reason);
}

/* No flow, to a VIP: what the first byte says it is decides the drop reason. */
static __always_inline __u32 no_flow_reason(__u32 b, __u32 stun_reason)
{
	if (RFC7983_IS_STUN(b))
		return stun_reason;
	if (RFC7983_IS_DTLS(b))
		return STEER_R_DROP_DTLS_NO_FLOW;
	if (RFC7983_IS_RTP(b))
		return STEER_R_DROP_RTP_NO_FLOW;
	return STEER_R_DROP_UNCLASSIFIED;
}

/* A client's packet on an established flow (IP options already refused): counters,
 * connection hints, the rewrite, and the next hop remembered in the flow (a FIB lookup
 * once it is stale). */
static __always_inline int flow_forward(struct xdp_md *ctx, struct steer_pkt *pkt,
					struct steer_flow *flow, __u32 b, __u32 *reason)
{
	struct bpf_fib_lookup fib;
	__u64 now;
	long rc;

	if (backend_down(flow->backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	now = coarse_now();
	if (STEER_WRITES) {
		flow->last_seen_ns = now;
		flow->packets++;
		flow->bytes += pkt->len;
	}
	if (STEER_WRITES && RFC7983_IS_RTP(b) && ssrc_sampled(flow->packets))
		ssrc_learn(ctx, pkt, flow); /* connection hints */
	rewrite_endpoint(pkt, STEER_DST, &flow->sock);
	*reason = STEER_R_FWD_FLOW;
	if (nexthop_fresh(&flow->nh, now)) /* straight from the flow entry */
		return send_to(ctx, pkt, flow->nh.ifindex, flow->nh.dmac, flow->nh.smac, reason);
	rc = fib_route(ctx, pkt, &fib);
	if (STEER_WRITES)
		nexthop_store(&flow->nh, &fib, rc, now);
	return fib_send(ctx, pkt, &fib, rc, reason);
}

int steer_public(struct xdp_md *ctx)
{
	struct steer_pkt pkt = {};
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_flow *flow;
	__u32 reason = STEER_R_UNUSED_0, stun_reason = STEER_R_DROP_UNCLASSIFIED, b;
	int action;

	if (parse_plain_v4(ctx, &pkt)) {
		/* the common case, all IPv4 for the compiler: this copy of flow_forward has no
		 * IPv6 or VLAN branches */
		pkt_addr(&pkt, STEER_SRC, &fk.client);
		pkt_addr(&pkt, STEER_DST, &fk.vip);
		b = first_byte(&pkt);
		if (RFC7983_IS_STUN(b))
			goto stun;
		flow = steer_flows.lookup(&fk);
		if (flow) {
			action = flow_forward(ctx, &pkt, flow, b, &reason);
			goto out;
		}
		goto no_flow;
	}
	action = parse_packet(ctx, &pkt, &reason);
	if (action != STEER_CONTINUE) {
		if (pkt.family)
			action = guard_cross(ctx, &pkt, config_ifindex(0), &reason);
		goto out;
	}

	pkt_addr(&pkt, STEER_SRC, &fk.client);
	pkt_addr(&pkt, STEER_DST, &fk.vip);
	b = first_byte(&pkt);
stun:
	if (RFC7983_IS_STUN(b) && steer_vips.lookup(&fk.vip)) {
		if (pkt.opts) {
			reason = STEER_R_DROP_IP_OPTIONS;
			action = XDP_DROP;
			goto out;
		}
		action = steer_stun(ctx, &pkt, &fk, &reason, &stun_reason);
		if (action != STEER_CONTINUE)
			goto out;
	}
	flow = steer_flows.lookup(&fk);
	if (flow) {
		if (pkt.opts) {
			reason = STEER_R_DROP_IP_OPTIONS;
			action = XDP_DROP;
		} else {
			action = flow_forward(ctx, &pkt, flow, b, &reason);
		}
		goto out;
	}
no_flow:
	if (!steer_vips.lookup(&fk.vip)) {
		reason = STEER_R_PASS_NOT_STEERED;
		action = guard_cross(ctx, &pkt, config_ifindex(0), &reason);
		goto out;
	}
	if (!pkt.opts && RFC7983_IS_RTP(b)) {
		action = ssrc_hint(ctx, &pkt, &reason); /* connection hints */
		if (action != STEER_CONTINUE)
			goto out;
	}
	if (!pkt.opts && b == 25) {
		action = dtls_cid(ctx, &pkt, &reason); /* connection hints: DTLS CIDs */
		goto out;
	}
	reason = pkt.opts ? STEER_R_DROP_IP_OPTIONS : no_flow_reason(b, stun_reason);
	action = XDP_DROP;
out:
	count(reason, pkt.len);
	return action;
}

/* STUN class of a transceiver's payload: a Binding Success Response or Request with a
 * well-formed header (its transaction id in *h), or anything else. */
static __always_inline int stun_kind(struct xdp_md *ctx, struct steer_pkt *pkt,
				     struct steer_stun_hdr *h)
{
	if (!RFC7983_IS_STUN(first_byte(pkt)) || stun_header(ctx, pkt, h))
		return KIND_OTHER;
	if (h->type == htons(STUN_BINDING_SUCCESS))
		return KIND_SUCCESS;
	if (h->type == htons(STUN_BINDING_REQUEST))
		return KIND_REQUEST;
	return KIND_OTHER;
}

/* One packet from the relay-wide budget for returns to clients without a flow (GCRA). */
static __always_inline int budget_take(__u64 now)
{
	__u32 zero = 0;
	struct steer_budget *b = steer_budget.lookup(&zero);
	__u64 tat;

	if (!b)
		return 1;
	tat = b->tat > now ? b->tat : now;
	if (tat - now > STEER_NOFLOW_BURST_NS)
		return 0;
	if (STEER_WRITES)
		b->tat = tat + STEER_NOFLOW_INTERVAL_NS;
	return 1;
}

/* The socket's ring of learned clients, created empty with its first flow. */
static __always_inline struct steer_sock_flows *sock_ring(struct steer_addr *sock,
							  const struct steer_addr *vip)
{
	struct steer_sock_flows *ring = steer_sockflows.lookup(sock);
	__u32 zero = 0;

	if (ring || !STEER_WRITES)
		return ring;
	ring = steer_zero_ring.lookup(&zero);
	if (!ring)
		return 0;
	steer_sockflows.update(sock, ring);
	ring = steer_sockflows.lookup(sock);
	if (ring)
		ring->vip = *vip;
	return ring;
}

/* A Binding Success Response from `rk->sock` to the client: create or re-point the
 * client's flow to it. A socket at its cap first loses its own oldest flow. Returns the
 * reason: learned, or learned with an eviction. */
static __always_inline __u32 learn_flow(struct steer_tmp *t, struct steer_flow_key *fk,
					struct steer_rflow_key *rk, __u32 backend_id,
					__u64 now, __u32 len)
{
	struct steer_sock_flows *ring = sock_ring(&rk->sock, &fk->vip);
	struct steer_flow *of;
	__u32 reason = STEER_R_FWD_RETURN_LEARNED;
	__u32 slot, old, cap = config_flow_cap();
	__u64 idx;

	if (ring) {
		if (STEER_WRITES)
			idx = __sync_fetch_and_add(&ring->next, 1);
		else
			idx = ring->next;
		/* the ring keeps the last STEER_SESSION_FLOW_CAP clients; the oldest of the
		 * last `cap` was learned `cap` slots ago */
		slot = idx % STEER_SESSION_FLOW_CAP;
		old = (idx - cap) % STEER_SESSION_FLOW_CAP;
		if (slot >= STEER_SESSION_FLOW_CAP || old >= STEER_SESSION_FLOW_CAP)
			return reason; /* cannot happen; for the verifier */
		if (idx >= cap) {
			t->old.client = ring->client[old];
			t->old.vip = ring->vip;
			of = steer_flows.lookup(&t->old);
			if (of && addr_eq(&of->sock, &rk->sock) &&
			    !addr_eq(&t->old.client, &fk->client)) {
				reason = STEER_R_FWD_RETURN_EVICTED;
				t->rold.sock = rk->sock;
				t->rold.client = t->old.client;
				if (STEER_WRITES) {
					steer_flows.delete(&t->old);
					steer_rflows.delete(&t->rold);
				}
			}
		}
		if (STEER_WRITES)
			ring->client[slot] = fk->client;
	}
	if (STEER_WRITES) {
		__builtin_memset(&t->flow, 0, sizeof(t->flow));
		t->flow.sock = rk->sock;
		t->flow.backend_id = backend_id;
		t->flow.created_ns = now;
		t->flow.last_seen_ns = now;
		t->flow.rpackets = 1;
		t->flow.rbytes = len;
		steer_flows.update(fk, &t->flow);
	}
	return reason;
}

/* Mobility: a session's return traffic follows its client to a new address.
 *
 * When a client's NAT rebinds or the client changes networks, the client's next check
 * arrives from a new address; the transceiver answers it with a Binding Success Response
 * (it checked MESSAGE-INTEGRITY), which makes the new address the socket's *current path*
 * (steer_paths) and marks the return flows to the socket's other addresses of that family
 * STEER_RFLOW_STALE. An unmodified transceiver (aioice, controlled) keeps sending to the
 * pair it nominated, i.e. to the old address; every packet to a stale address except a
 * Binding Success Response goes to the current path instead (counted FWD_RETURN_MOVED).
 * A Binding Success Response to an old address makes it current again (the client checked
 * from there, so it is alive). Nothing but a Binding Success Response moves a path.
 * docs/architecture.md has the state machine; tests/bpf/model.py mirrors it. (Here, not in
 * a header: bcc rewrites map calls only in the main file.)
 */

/* A Binding Success Response from rk->sock to rk->client (VIP `vip`): that address is the
 * socket's current path; the previous one, if another address of the same family, is
 * stale. `rf`: the return flow to rk->client, if there is one. */
static __always_inline void path_authenticated(struct steer_rflow_key *rk,
					       const struct steer_addr *vip,
					       struct steer_rflow *rf, __u64 now)
{
	struct steer_rflow_key old __attribute__((aligned(8)));
	struct steer_path *p = steer_paths.lookup(&rk->sock);
	struct steer_path np = {};
	struct steer_rflow *orf;

	if (rf)
		rf->flags &= ~STEER_RFLOW_STALE;
	if (p && !addr_eq(&p->client, &rk->client)) {
		if (p->client.family == rk->client.family) {
			old.sock = rk->sock;
			old.client = p->client;
			orf = steer_rflows.lookup(&old);
			if (orf)
				orf->flags |= STEER_RFLOW_STALE;
		}
	} else if (p) {
		p->authed_ns = now;
		return;
	}
	np.client = rk->client;
	np.vip = *vip;
	np.authed_ns = now;
	steer_paths.update(&rk->sock, &np);
}

/* A packet from rk->sock to rk->client, whose return flow `rf` is stale: if
 * the socket's current path is another address of the same family and the packet is not
 * a Binding Success Response, rewrite its destination to the current path and return 1
 * (rk->client is then the current address); else 0. */
static __always_inline int path_follow(struct xdp_md *ctx, struct steer_pkt *pkt,
				       struct steer_rflow_key *rk, const struct steer_rflow *rf,
				       int success, __u64 now)
{
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_path *p = steer_paths.lookup(&rk->sock);
	struct steer_flow *f;

	if (!p || success || p->client.family != pkt->family || addr_eq(&p->client, &rk->client))
		return 0;
	/* the transceiver still uses the old address: keep its flow from idling out, so
	 * the stale mark lives as long as the transceiver's use of it */
	fk.client = rk->client;
	fk.vip = rf->vip;
	f = steer_flows.lookup(&fk);
	if (f && STEER_WRITES)
		f->last_seen_ns = now;
	rewrite_endpoint(pkt, STEER_DST, &p->client);
	rk->client = p->client;
	return 1;
}

/* The common return: a plain IPv4 packet that is not STUN, on a return flow `rf` that is
 * current (not stale) with a fresh next hop. Inlined only under parse_plain_v4, so the
 * compiler builds this copy for IPv4 alone (flow_forward's twin). The same verdicts as the
 * general path below; STEER_CONTINUE hands a packet whose client flow is not this
 * socket's to it. */
static __always_inline int return_forward(struct xdp_md *ctx, struct steer_pkt *pkt,
					  struct steer_rflow_key *rk, struct steer_rflow *rf,
					  __u64 now, __u32 *reason)
{
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_flow *flow;

	if (backend_down(rf->backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	fk.client = rk->client;
	fk.vip = rf->vip;
	flow = steer_flows.lookup(&fk);
	if (!flow || !addr_eq(&flow->sock, &rk->sock))
		return STEER_CONTINUE;
	if (STEER_WRITES) {
		flow->last_seen_ns = now;
		flow->rpackets++;
		flow->rbytes += pkt->len;
	}
	rewrite_endpoint(pkt, STEER_SRC, &fk.vip);
	*reason = STEER_R_FWD_RETURN;
	return send_to(ctx, pkt, rf->nh.ifindex, rf->nh.dmac, rf->nh.smac, reason);
}

/* A transceiver's packet on its way to the public side: NAT its source to the VIP. A
 * Binding Success Response also creates or re-points the client's flow; a Binding Request
 * is remembered so the client's answer finds its way back. Packets to a client without a
 * flow of this socket come out of a relay-wide budget. UDP that is not headed for the
 * public side is none of the relay's business; anything else that is, but not from a
 * session socket or not UDP, would leave with a transceiver's address, so it is dropped. */
int steer_internal(struct xdp_md *ctx)
{
	struct steer_pkt pkt = {};
	struct bpf_fib_lookup fib;
	struct steer_rflow_key rk __attribute__((aligned(8)));
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_stun_hdr h;
	const struct steer_nexthop *nh = 0; /* the return flow's, when fresh */
	struct steer_rflow *rf;
	struct steer_session *s;
	struct steer_flow *flow;
	struct steer_tmp *t;
	__u32 reason = STEER_R_UNUSED_0, backend_id, public_if, zero = 0;
	__u64 now;
	long rc = BPF_FIB_LKUP_RET_NOT_FWDED; /* set where a route is looked up */
	int action, kind, moved;

	if (parse_plain_v4(ctx, &pkt)) {
		pkt_addr(&pkt, STEER_SRC, &rk.sock);
		pkt_addr(&pkt, STEER_DST, &rk.client);
		now = coarse_now();
		rf = steer_rflows.lookup(&rk);
		if (rf && !(rf->flags & STEER_RFLOW_STALE) && nexthop_fresh(&rf->nh, now) &&
		    !RFC7983_IS_STUN(first_byte(&pkt))) {
			action = return_forward(ctx, &pkt, &rk, rf, now, &reason);
			if (action != STEER_CONTINUE)
				goto out;
		}
		goto looked_up;
	}
	action = parse_packet(ctx, &pkt, &reason);
	if (action != STEER_CONTINUE) {
		if (pkt.family)
			action = guard_cross(ctx, &pkt, config_ifindex(1), &reason);
		goto out;
	}

	pkt_addr(&pkt, STEER_SRC, &rk.sock);
	pkt_addr(&pkt, STEER_DST, &rk.client);
	now = coarse_now();
	rf = steer_rflows.lookup(&rk);
looked_up:
	/* the client moved since: to its current address (steer.bpf.c, "Mobility") */
	moved = rf && (rf->flags & STEER_RFLOW_STALE) &&
		path_follow(ctx, &pkt, &rk, rf, stun_kind(ctx, &pkt, &h) == KIND_SUCCESS, now);
	if (moved)
		rf = steer_rflows.lookup(&rk);
	if (rf && nexthop_fresh(&rf->nh, now)) {
		/* an established return flow, routed out of the public side within the TTL */
		nh = &rf->nh;
		fk.vip = rf->vip;
		backend_id = rf->backend_id;
	} else {
		/* the route does not depend on the source we are about to rewrite; its size
		 * does not matter either: a rewritten packet too big for the route is dropped */
		rc = fib_egress(ctx, &pkt, &fib);
		public_if = config_ifindex(1);
		if (!fib_has_egress(rc)) {
			reason = STEER_R_PASS_FIB_FAILED;
			action = XDP_PASS;
			goto out;
		}
		if (!public_if || fib.ifindex != public_if) {
			reason = STEER_R_PASS_NOT_STEERED;
			action = XDP_PASS;
			goto out;
		}
		if (rf) {
			fk.vip = rf->vip;
			backend_id = rf->backend_id;
			if (STEER_WRITES)
				nexthop_store(&rf->nh, &fib, rc, now);
		} else {
			s = steer_socks.lookup(&rk.sock);
			if (!s) {
				reason = STEER_R_DROP_CROSS_UNNATED;
				action = XDP_DROP;
				goto out;
			}
			if (s->vip.family != pkt.family) {
				reason = STEER_R_DROP_FAMILY_MISMATCH;
				action = XDP_DROP;
				goto out;
			}
			fk.vip = s->vip;
			backend_id = s->backend_id;
		}
	}
	if (backend_down(backend_id)) {
		reason = STEER_R_DROP_BACKEND_DOWN;
		action = XDP_DROP;
		goto out;
	}
	if (pkt.opts) {
		reason = STEER_R_DROP_IP_OPTIONS;
		action = XDP_DROP;
		goto out;
	}

	fk.client = rk.client;
	kind = stun_kind(ctx, &pkt, &h);
	if (kind == KIND_SUCCESS && STEER_WRITES)
		path_authenticated(&rk, &fk.vip, rf, now);
	flow = steer_flows.lookup(&fk);
	if (flow && addr_eq(&flow->sock, &rk.sock)) {
		reason = STEER_R_FWD_RETURN;
		if (STEER_WRITES) {
			flow->last_seen_ns = now;
			flow->rpackets++;
			flow->rbytes += pkt.len;
		}
	} else if (kind == KIND_SUCCESS) {
		/* the transceiver checked MESSAGE-INTEGRITY: the client is who it says */
		reason = STEER_R_FWD_RETURN_LEARNED;
		t = steer_tmp.lookup(&zero);
		if (t)
			reason = learn_flow(t, &fk, &rk, backend_id, now, pkt.len);
	} else {
		if (!budget_take(now)) {
			reason = STEER_R_DROP_NO_FLOW_BUDGET;
			action = XDP_DROP;
			goto out;
		}
		reason = STEER_R_FWD_RETURN_NO_FLOW;
	}
	if (moved && reason == STEER_R_FWD_RETURN)
		reason = STEER_R_FWD_RETURN_MOVED;
	if (!rf && reason != STEER_R_FWD_RETURN_NO_FLOW && STEER_WRITES) {
		/* the socket has this client's flow now: remember the way back */
		t = steer_tmp.lookup(&zero);
		if (t) {
			__builtin_memset(&t->rflow, 0, sizeof(t->rflow));
			t->rflow.vip = fk.vip;
			t->rflow.backend_id = backend_id;
			nexthop_store(&t->rflow.nh, &fib, rc, now);
			steer_rflows.update(&rk, &t->rflow);
		}
	}
	if (kind == KIND_REQUEST && STEER_WRITES) {
		t = steer_tmp.lookup(&zero);
		if (t) {
			__builtin_memset(&t->pk, 0, sizeof(t->pk));
			t->pk.client = rk.client;
			__builtin_memcpy(t->pk.txid, h.txid, sizeof(t->pk.txid));
			__builtin_memset(&t->p, 0, sizeof(t->p));
			t->p.sock = rk.sock;
			t->p.vip = fk.vip;
			t->p.backend_id = backend_id;
			steer_pending.update(&t->pk, &t->p);
		}
	}
	rewrite_endpoint(&pkt, STEER_SRC, &fk.vip);
	if (nh)
		action = send_to(ctx, &pkt, nh->ifindex, nh->dmac, nh->smac, &reason);
	else
		action = fib_send(ctx, &pkt, &fib, rc, &reason);
out:
	count(reason, pkt.len);
	return action;
}
