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

/* Copy `len` bytes (even, a constant) as 16-bit words. Packet headers and addresses are
 * 2-byte aligned, and clang copies a u8 array it cannot prove aligned (struct ethhdr is
 * packed) byte by byte: half the loads and stores on every forwarded packet. */
static __always_inline void copy_words(void *to, const void *from, int len)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i += 2) {
		if (i >= len)
			break;
		*(__u16 *)(to + i) = *(const __u16 *)(from + i);
	}
}

static __always_inline void pkt_addr(struct steer_pkt *pkt, int end, struct steer_addr *a)
{
	__builtin_memset(a, 0, sizeof(*a));
	if (pkt->family == STEER_FAMILY_V4)
		copy_words(a->ip, pkt_ip(pkt, end), 4);
	else
		copy_words(a->ip, pkt_ip(pkt, end), 16);
	a->port = end == STEER_DST ? pkt->udp->dest : pkt->udp->source;
	a->family = pkt->family;
}

/* In 32-bit words: a steer_addr inside a key may sit at a 4-byte offset (the VIP in
 * steer_flow_key), and the verifier refuses misaligned 8-byte stack reads. */
static __always_inline int addr_eq(const struct steer_addr *a, const struct steer_addr *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
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
		copy_words(ip, to->ip, 4);
	} else {
		steer_csum_diff_bytes(&d, ip, to->ip, 16);
		copy_words(ip, to->ip, 16);
	}
	steer_csum_diff16(&d, *port, to->port);
	*port = to->port;
	/* IPv4 UDP checksum 0 means "none" and stays so; IPv6 always has one */
	if (pkt->family == STEER_FAMILY_V6 || pkt->udp->check) {
		ucheck = steer_csum_apply(pkt->udp->check, &d);
		pkt->udp->check = ucheck ? ucheck : 0xffff;
	}
}

/* Lookup parameters for the packet as it is now. tot_len 0 skips the MTU check: a route
 * decision must know the egress interface even for a packet larger than its MTU. */
static __always_inline void fib_params(struct xdp_md *ctx, struct steer_pkt *pkt,
				       struct bpf_fib_lookup *fib, int with_len)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = ctx->ingress_ifindex;
	fib->l4_protocol = pkt->l4;
	if (pkt->payload_off) { /* set only once the UDP header parsed */
		fib->sport = pkt->udp->source;
		fib->dport = pkt->udp->dest;
	}
	if (pkt->family == STEER_FAMILY_V4) {
		fib->family = AF_INET;
		fib->tos = pkt->ip4->tos;
		fib->tot_len = with_len ? ntohs(pkt->ip4->tot_len) : 0;
		fib->ipv4_src = pkt->ip4->saddr;
		fib->ipv4_dst = pkt->ip4->daddr;
	} else {
		fib->family = AF_INET6;
		fib->flowinfo = *(__be32 *)pkt->ip6 & htonl(0x0fffffff);
		fib->tot_len = with_len ? ntohs(pkt->ip6->payload_len) : 0;
		__builtin_memcpy(fib->ipv6_src, &pkt->ip6->saddr, 16);
		__builtin_memcpy(fib->ipv6_dst, &pkt->ip6->daddr, 16);
	}
}

/* Route the packet as it is now. Also fills in the egress ifindex on NO_NEIGH. */
static __always_inline long fib_route(struct xdp_md *ctx, struct steer_pkt *pkt,
				      struct bpf_fib_lookup *fib)
{
	fib_params(ctx, pkt, fib, 1);
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* Where the packet's destination is routed, whatever its size. */
static __always_inline long fib_egress(struct xdp_md *ctx, struct steer_pkt *pkt,
				       struct bpf_fib_lookup *fib)
{
	fib_params(ctx, pkt, fib, 0);
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

static __always_inline int fib_has_egress(long rc)
{
	return rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH;
}

/* Multicast, limited broadcast and IPv6 link-local destinations are never forwarded by the
 * kernel (and neighbour discovery lives there): no route check for them. */
static __always_inline int dst_link_scoped(const struct steer_pkt *pkt)
{
	__u8 b0, b1;

	if (pkt->family == STEER_FAMILY_V4) {
		b0 = ((__u8 *)&pkt->ip4->daddr)[0];
		return (b0 & 0xf0) == 0xe0 || pkt->ip4->daddr == 0xffffffff;
	}
	b0 = pkt->ip6->daddr.in6_u.u6_addr8[0];
	b1 = pkt->ip6->daddr.in6_u.u6_addr8[1];
	return b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80);
}

/* A router's duty: TTL / hop limit down by one (IPv4 checksum fixed), or 0 when it is
 * already <= 1 and the packet must not be forwarded. */
static __always_inline int hop_down(struct steer_pkt *pkt)
{
	struct steer_csum_diff d = {};
	__u8 ttl;

	if (pkt->family == STEER_FAMILY_V4) {
		ttl = pkt->ip4->ttl;
		if (ttl <= 1)
			return 0;
		pkt->ip4->ttl = ttl - 1;
		/* ttl is the high byte of its checksum word (protocol, the low, is unchanged) */
		steer_csum_diff16(&d, htons((__u16)ttl << 8), htons((__u16)(ttl - 1) << 8));
		pkt->ip4->check = steer_csum_apply(pkt->ip4->check, &d);
		return 1;
	}
	if (pkt->ip6->hop_limit <= 1)
		return 0;
	pkt->ip6->hop_limit--;
	return 1;
}

/* Send the packet along a route looked up for its destination. A route without a
 * resolved neighbour leaves the (rewritten) packet to the kernel, which does its own TTL
 * and VLAN handling. What the relay sends itself leaves untagged: a tag names the link the
 * packet arrived on, and the FIB's egress is a plain interface. */
static __always_inline int send_to(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 ifindex,
				   const __u8 *dmac, const __u8 *smac, __u32 *reason)
{
	struct ethhdr *eth;
	__u32 vb = pkt->vlan_bytes;

	if (!hop_down(pkt)) {
		*reason = STEER_R_DROP_TTL_EXCEEDED;
		return XDP_DROP;
	}
	if (vb > 2 * sizeof(struct steer_vlan_hdr))
		return XDP_ABORTED; /* cannot happen: parse_packet counted at most two tags */
	eth = pkt->data + vb;
	if ((void *)(eth + 1) > pkt->data_end)
		return XDP_ABORTED;
	eth->h_proto = pkt->l3_proto;
	copy_words(eth->h_dest, dmac, ETH_ALEN);
	copy_words(eth->h_source, smac, ETH_ALEN);
	if (vb && bpf_xdp_adjust_head(ctx, vb))
		return XDP_ABORTED;
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	/* said as a constant: the verifier must not think it could be STEER_CONTINUE */
	return bpf_redirect(ifindex, 0) == XDP_REDIRECT ? XDP_REDIRECT : XDP_ABORTED;
}

static __always_inline int fib_send(struct xdp_md *ctx, struct steer_pkt *pkt,
				    const struct bpf_fib_lookup *fib, long rc, __u32 *reason)
{
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		*reason = STEER_R_PASS_FIB_FAILED;
		return XDP_PASS;
	}
	return send_to(ctx, pkt, fib->ifindex, fib->dmac, fib->smac, reason);
}

#ifndef STEER_NEXTHOP_TTL_NS
#define STEER_NEXTHOP_TTL_NS 1000000000ULL /* a changed neighbour is picked up within 1 s */
#endif

static __always_inline int nexthop_fresh(const struct steer_nexthop *nh, __u64 now)
{
	return nh->ifindex && now - nh->checked_ns < STEER_NEXTHOP_TTL_NS;
}

static __always_inline void nexthop_store(struct steer_nexthop *nh,
					  const struct bpf_fib_lookup *fib, long rc, __u64 now)
{
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return;
	nh->checked_ns = now;
	nh->ifindex = fib->ifindex;
	copy_words(nh->dmac, fib->dmac, ETH_ALEN);
	copy_words(nh->smac, fib->smac, ETH_ALEN);
}

/* Route the (already rewritten) packet and send it on. */
static __always_inline int forward(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 *reason)
{
	struct bpf_fib_lookup fib;
	long rc = fib_route(ctx, pkt, &fib);

	return fib_send(ctx, pkt, &fib, rc, reason);
}

#endif /* STEER_REWRITE_H */
