/* steer.bpf.c — the relay's XDP programs.
 *
 * steer_public runs on the public interface: packets from clients to a VIP are steered to
 * the transceiver socket that owns their session, by learned flow or, for the first STUN
 * Binding Request, by the server ufrag in its USERNAME. steer_internal runs on the
 * internal interface: packets from a registered session socket are NATed to come from the
 * VIP and establish the client's flow. Both leave through one `out:` that counts the
 * reason. Maps: steer_maps.h; types: steer_shared.h.
 */
#include <uapi/linux/bpf.h>
#include "steer_maps.h"
#include "parse.h"
#include "stun.h"
#include "rewrite.h"

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

static __always_inline int backend_down(__u32 id)
{
	struct steer_backend *b = steer_backends.lookup(&id);

	return b && b->state == STEER_BACKEND_DOWN;
}

static __always_inline __u32 config_ifindex(int public_side)
{
	__u32 zero = 0;
	struct steer_config *cfg = steer_config.lookup(&zero);

	if (!cfg)
		return 0;
	return public_side ? cfg->public_ifindex : cfg->internal_ifindex;
}

/* First packet of a client with no flow: route a Binding Request by its ufrag. */
static __always_inline int steer_new_client(struct xdp_md *ctx, struct steer_pkt *pkt,
					    __u32 *reason)
{
	struct steer_ufrag ufrag = {};
	struct steer_scratch *sc;
	struct steer_session *s;
	__u32 zero = 0;
	__u8 *first;

	first = pkt->data + payload_off(pkt);
	if (!pkt->payload_len || (void *)(first + 1) > pkt->data_end) {
		*reason = STEER_R_DROP_UNCLASSIFIED;
		return XDP_DROP;
	}
	if (RFC7983_IS_DTLS(*first)) {
		*reason = STEER_R_DROP_DTLS_NO_FLOW;
		return XDP_DROP;
	}
	if (RFC7983_IS_RTP(*first)) {
		*reason = STEER_R_DROP_RTP_NO_FLOW;
		return XDP_DROP;
	}
	if (!RFC7983_IS_STUN(*first)) {
		*reason = STEER_R_DROP_UNCLASSIFIED;
		return XDP_DROP;
	}
	sc = steer_scratch.lookup(&zero);
	if (!sc) {
		*reason = STEER_R_DROP_STUN_MALFORMED;
		return XDP_DROP;
	}
	*reason = stun_server_ufrag(ctx, pkt, sc, &ufrag);
	if (*reason)
		return XDP_DROP;
	s = steer_sessions.lookup(&ufrag);
	if (!s) {
		*reason = STEER_R_DROP_STUN_UNKNOWN_UFRAG;
		return XDP_DROP;
	}
	if (s->sock.family != pkt->family) {
		*reason = STEER_R_DROP_FAMILY_MISMATCH;
		return XDP_DROP;
	}
	if (backend_down(s->backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	/* no state: XDP cannot verify MESSAGE-INTEGRITY, the transceiver's answer will */
	rewrite_endpoint(pkt, STEER_DST, &s->sock);
	*reason = STEER_R_FWD_STUN;
	return forward(ctx, pkt, reason);
}

/* UDP to a non-VIP destination from a client: drop it if the kernel would route it to
 * the internal side, so nothing ever crosses un-NATed; otherwise leave it to the kernel. */
static __always_inline int guard_public(struct xdp_md *ctx, struct steer_pkt *pkt,
					__u32 *reason)
{
	struct bpf_fib_lookup fib;
	long rc = fib_route(ctx, pkt, &fib);
	__u32 internal = config_ifindex(0);

	if (fib_has_egress(rc) && internal && fib.ifindex == internal) {
		*reason = STEER_R_DROP_CROSS_UNNATED;
		return XDP_DROP;
	}
	*reason = STEER_R_PASS_NOT_STEERED;
	return XDP_PASS;
}

int steer_public(struct xdp_md *ctx)
{
	struct steer_pkt pkt = {};
	struct bpf_fib_lookup fib;
	struct steer_flow_key fk;
	struct steer_flow *flow;
	__u32 reason = STEER_R_UNUSED_0;
	__u64 now;
	long rc;
	int action;

	action = parse_packet(ctx, &pkt, &reason);
	if (action != STEER_CONTINUE)
		goto out;

	pkt_addr(&pkt, STEER_SRC, &fk.client);
	pkt_addr(&pkt, STEER_DST, &fk.vip);
	flow = steer_flows.lookup(&fk);
	if (flow) {
		if (backend_down(flow->backend_id)) {
			reason = STEER_R_DROP_BACKEND_DOWN;
			action = XDP_DROP;
			goto out;
		}
		now = bpf_ktime_get_coarse_ns();
		if (STEER_WRITES) {
			flow->last_seen_ns = now;
			flow->packets++;
			flow->bytes += pkt.len;
		}
		rewrite_endpoint(&pkt, STEER_DST, &flow->sock);
		if (nexthop_fresh(&flow->nh, now)) {
			rc = nexthop_load(&flow->nh, &fib);
		} else {
			rc = fib_route(ctx, &pkt, &fib);
			if (STEER_WRITES)
				nexthop_store(&flow->nh, &fib, rc, now);
		}
		reason = STEER_R_FWD_FLOW;
		action = fib_send(ctx, &pkt, &fib, rc, &reason);
		goto out;
	}
	if (!steer_vips.lookup(&fk.vip)) {
		action = guard_public(ctx, &pkt, &reason);
		goto out;
	}
	action = steer_new_client(ctx, &pkt, &reason);
out:
	count(reason, pkt.len);
	return action;
}

/* A transceiver's packet on its way to the public side: NAT its source to the VIP and
 * (re)establish the flow that the client's DTLS/SRTP/RTCP will follow. UDP that is not
 * headed for the public side is none of the relay's business; UDP that is, but not from a
 * session socket, would leave with a transceiver's address, so it is dropped. */
int steer_internal(struct xdp_md *ctx)
{
	struct steer_pkt pkt = {};
	struct bpf_fib_lookup fib;
	struct steer_rflow_key rk;
	struct steer_flow_key fk;
	struct steer_rflow *rf;
	struct steer_session *s;
	struct steer_flow *flow;
	__u32 reason = STEER_R_UNUSED_0, backend_id, public_if;
	__u64 now;
	long rc;
	int action;

	action = parse_packet(ctx, &pkt, &reason);
	if (action != STEER_CONTINUE)
		goto out;

	pkt_addr(&pkt, STEER_SRC, &rk.sock);
	pkt_addr(&pkt, STEER_DST, &rk.client);
	now = bpf_ktime_get_coarse_ns();
	rf = steer_rflows.lookup(&rk);
	if (rf && nexthop_fresh(&rf->nh, now)) {
		/* an established return flow, routed out of the public side within the TTL */
		rc = nexthop_load(&rf->nh, &fib);
		fk.vip = rf->vip;
		backend_id = rf->backend_id;
	} else {
		/* the route does not depend on the source we are about to rewrite */
		rc = fib_route(ctx, &pkt, &fib);
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
			struct steer_rflow nrf = { .vip = s->vip, .backend_id = s->backend_id };

			nexthop_store(&nrf.nh, &fib, rc, now);
			if (STEER_WRITES)
				steer_rflows.update(&rk, &nrf);
			fk.vip = s->vip;
			backend_id = s->backend_id;
		}
	}
	if (backend_down(backend_id)) {
		reason = STEER_R_DROP_BACKEND_DOWN;
		action = XDP_DROP;
		goto out;
	}

	fk.client = rk.client;
	flow = steer_flows.lookup(&fk);
	if (flow) {
		/* a client address belongs to the session that answered it first, until that
		 * session ends (the daemon purges its flows) or the flow expires */
		if (STEER_WRITES && addr_eq(&flow->sock, &rk.sock)) {
			flow->last_seen_ns = now;
			flow->rpackets++;
			flow->rbytes += pkt.len;
		}
	} else {
		struct steer_flow nf = {
			.sock = rk.sock,
			.backend_id = backend_id,
			.created_ns = now,
			.last_seen_ns = now,
			.rpackets = 1,
			.rbytes = pkt.len,
		};

		if (STEER_WRITES)
			steer_flows.update(&fk, &nf);
	}
	rewrite_endpoint(&pkt, STEER_SRC, &fk.vip);
	reason = STEER_R_FWD_RETURN;
	action = fib_send(ctx, &pkt, &fib, rc, &reason);
out:
	count(reason, pkt.len);
	return action;
}
