/* source.h — who can be a client: the source checks the public side makes before a packet
 * may create anything or reach a session without a flow.
 *
 * UDP sources are free to forge, so the relay cannot tell who sent a packet; it can tell
 * that some sources are nobody on the internet. src_martian() knows the ones no network
 * carries (unspecified, loopback, link-local, multicast, reserved); fib_reverse() asks
 * the kernel where a reply to the source would go, so that a source behind the relay's
 * internal side, one of its own addresses, or one it has no route back to is refused
 * whatever the configuration. The configurable prefixes (RFC 6890's special ranges, the
 * VIPs, an operator's exceptions) are an LPM map, looked up in steer.bpf.c (bcc rewrites
 * map calls only in the main file). steer_testkit/replay/model.py mirrors this file.
 */
#ifndef STEER_SOURCE_H
#define STEER_SOURCE_H

#include "rewrite.h"

/* 1 if no network can carry `a` as a source. */
static __always_inline int src_martian(const struct steer_addr *a)
{
	__u8 b0 = a->ip[0], b1 = a->ip[1];

	if (a->family == STEER_FAMILY_V4)
		/* 0/8, 127/8, 169.254/16, 224/4 multicast, 240/4 reserved and broadcast */
		return b0 == 0 || b0 == 127 || (b0 == 169 && b1 == 254) || b0 >= 224;
	/* ::/8 (unspecified, loopback, v4-mapped, v4-compatible) but 64:ff9b::/16 (NAT64),
	 * fe80::/10 link-local, ff00::/8 multicast */
	return (b0 == 0 && b1 != 0x64) || b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80);
}

/* Where a reply to the packet's source would be routed: the reverse path. */
static __always_inline long fib_reverse(struct xdp_md *ctx, struct steer_pkt *pkt,
					struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = ctx->ingress_ifindex;
	fib->l4_protocol = pkt->l4;
	if (pkt->family == STEER_FAMILY_V4) {
		fib->family = AF_INET;
		fib->ipv4_src = pkt->ip4->daddr;
		fib->ipv4_dst = pkt->ip4->saddr;
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, &pkt->ip6->daddr, 16);
		__builtin_memcpy(fib->ipv6_dst, &pkt->ip6->saddr, 16);
	}
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* 1 if the reverse path says the source is not out there: a reply would leave through
 * `internal_if`, stay on the relay (one of its addresses), or find no route. */
static __always_inline int src_not_outside(struct xdp_md *ctx, struct steer_pkt *pkt,
					   __u32 internal_if)
{
	struct bpf_fib_lookup fib;
	long rc = fib_reverse(ctx, pkt, &fib);

	if (fib_has_egress(rc))
		return internal_if && fib.ifindex == internal_if;
	return rc == BPF_FIB_LKUP_RET_NOT_FWDED || rc == BPF_FIB_LKUP_RET_BLACKHOLE ||
	       rc == BPF_FIB_LKUP_RET_UNREACHABLE || rc == BPF_FIB_LKUP_RET_PROHIBIT;
}

#endif /* STEER_SOURCE_H */
