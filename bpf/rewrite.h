/* rewrite.h — address translation and forwarding of a parsed packet.
 *
 * Reads a packet's endpoints into struct steer_addr, replaces one endpoint (the
 * destination on the way in, the source on the way out) with checksums fixed
 * incrementally, and forwards through bpf_fib_lookup: XDP_TX back out of the ingress
 * interface, bpf_redirect to another one. A route whose neighbour is not resolved yet
 * leaves the rewritten packet to the kernel, which forwards it and resolves the neighbour
 * for the packets after it.
 */
#ifndef STEER_REWRITE_H
#define STEER_REWRITE_H

#include <linux/bpf.h>
#include <linux/socket.h>
#include "csum.h"
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

enum steer_end { STEER_SRC = 0, STEER_DST = 1 };

static __always_inline __u8 *pkt_ip(struct steer_pkt *pkt, int end)
{
	if (pkt->family == STEER_FAMILY_V4)
		return end == STEER_DST ? (__u8 *)&pkt->ip4->daddr : (__u8 *)&pkt->ip4->saddr;
	return end == STEER_DST ? (__u8 *)&pkt->ip6->daddr : (__u8 *)&pkt->ip6->saddr;
}

static __always_inline void pkt_addr(struct steer_pkt *pkt, int end, struct steer_addr *a)
{
	__builtin_memset(a, 0, sizeof(*a));
	if (pkt->family == STEER_FAMILY_V4)
		__builtin_memcpy(a->ip, pkt_ip(pkt, end), 4);
	else
		__builtin_memcpy(a->ip, pkt_ip(pkt, end), 16);
	a->port = end == STEER_DST ? pkt->udp->dest : pkt->udp->source;
	a->family = pkt->family;
}

static __always_inline int addr_eq(const struct steer_addr *a, const struct steer_addr *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && *(const __u32 *)&x[2] == *(const __u32 *)&y[2];
}

/* Replace the packet's source or destination with `to` (same family, checked by caller). */
static __always_inline void rewrite_endpoint(struct steer_pkt *pkt, int end,
					     const struct steer_addr *to)
{
	struct steer_csum_diff d = {};
	__u8 *ip = pkt_ip(pkt, end);
	__be16 *port = end == STEER_DST ? &pkt->udp->dest : &pkt->udp->source;
	__u16 ucheck;

	if (pkt->family == STEER_FAMILY_V4) {
		steer_csum_diff_bytes(&d, ip, to->ip, 4);
		pkt->ip4->check = steer_csum_apply(pkt->ip4->check, &d);
		__builtin_memcpy(ip, to->ip, 4);
	} else {
		steer_csum_diff_bytes(&d, ip, to->ip, 16);
		__builtin_memcpy(ip, to->ip, 16);
	}
	steer_csum_diff16(&d, *port, to->port);
	*port = to->port;
	/* IPv4 UDP checksum 0 means "none" and stays so; IPv6 always has one */
	if (pkt->family == STEER_FAMILY_V6 || pkt->udp->check) {
		ucheck = steer_csum_apply(pkt->udp->check, &d);
		pkt->udp->check = ucheck ? ucheck : 0xffff;
	}
}

static __always_inline void fib_params(struct xdp_md *ctx, struct steer_pkt *pkt,
				       struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = ctx->ingress_ifindex;
	fib->l4_protocol = IPPROTO_UDP;
	fib->sport = pkt->udp->source;
	fib->dport = pkt->udp->dest;
	if (pkt->family == STEER_FAMILY_V4) {
		fib->family = AF_INET;
		fib->tos = pkt->ip4->tos;
		fib->tot_len = ntohs(pkt->ip4->tot_len);
		fib->ipv4_src = pkt->ip4->saddr;
		fib->ipv4_dst = pkt->ip4->daddr;
	} else {
		fib->family = AF_INET6;
		fib->flowinfo = *(__be32 *)pkt->ip6 & htonl(0x0fffffff);
		fib->tot_len = ntohs(pkt->ip6->payload_len);
		__builtin_memcpy(fib->ipv6_src, &pkt->ip6->saddr, 16);
		__builtin_memcpy(fib->ipv6_dst, &pkt->ip6->daddr, 16);
	}
}

/* Route the packet as it is now. Also fills in the egress ifindex on NO_NEIGH. */
static __always_inline long fib_route(struct xdp_md *ctx, struct steer_pkt *pkt,
				      struct bpf_fib_lookup *fib)
{
	fib_params(ctx, pkt, fib);
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

static __always_inline int fib_has_egress(long rc)
{
	return rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH;
}

/* Send the packet along a route looked up for its destination. A route without a
 * resolved neighbour leaves the (rewritten) packet to the kernel. */
static __always_inline int fib_send(struct xdp_md *ctx, struct steer_pkt *pkt,
				    struct bpf_fib_lookup *fib, long rc, __u32 *reason)
{
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		*reason = STEER_R_PASS_FIB_FAILED;
		return XDP_PASS;
	}
	__builtin_memcpy(pkt->eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(pkt->eth->h_source, fib->smac, ETH_ALEN);
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

#ifndef STEER_NEXTHOP_TTL_NS
#define STEER_NEXTHOP_TTL_NS 1000000000ULL /* a changed neighbour is picked up within 1 s */
#endif

static __always_inline int nexthop_fresh(const struct steer_nexthop *nh, __u64 now)
{
	return nh->ifindex && now - nh->checked_ns < STEER_NEXTHOP_TTL_NS;
}

/* A cached next hop, in the form fib_send() takes. */
static __always_inline long nexthop_load(const struct steer_nexthop *nh,
					 struct bpf_fib_lookup *fib)
{
	fib->ifindex = nh->ifindex;
	__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
	__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
	return BPF_FIB_LKUP_RET_SUCCESS;
}

static __always_inline void nexthop_store(struct steer_nexthop *nh,
					  const struct bpf_fib_lookup *fib, long rc, __u64 now)
{
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return;
	nh->checked_ns = now;
	nh->ifindex = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
}

/* Route the (already rewritten) packet and send it on. */
static __always_inline int forward(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 *reason)
{
	struct bpf_fib_lookup fib;
	long rc = fib_route(ctx, pkt, &fib);

	return fib_send(ctx, pkt, &fib, rc, reason);
}

#endif /* STEER_REWRITE_H */
