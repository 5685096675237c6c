/* bare_xdp.bpf.c — the least an XDP relay can do for one flow: the floor for steer.
 *
 * Everything is a -D constant (addresses and ports in network byte order, MACs as byte
 * initialisers, interface indexes): no map lookup, no FIB lookup, no STUN parsing, no
 * counters. bare_public rewrites CLIENT->VIP to CLIENT->TRX and redirects to the
 * internal interface; bare_internal rewrites TRX->CLIENT to VIP->CLIENT and redirects
 * to the public one. Checksums are updated incrementally (RFC 1624), as steer does.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

static __always_inline __u16 bare_csum_replace(__u16 check, __u32 from32, __u32 to32, __u16 from16,
					   __u16 to16)
{
	__u64 s = (__u16)~check;

	s += (__u16)~(from32 & 0xffff) + (__u16)~(from32 >> 16) + (__u16)~from16;
	s += (to32 & 0xffff) + (to32 >> 16) + to16;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~(__u16)s;
}

static __always_inline int relay(struct xdp_md *ctx, __be32 match_src, __be16 match_sport,
				 __be32 match_dst, __be16 match_dport, int rewrite_dst,
				 __be32 to_ip, __be16 to_port, __u32 out_ifindex)
{
	const unsigned char int_src[ETH_ALEN] = INT_MAC, int_dst[ETH_ALEN] = TRX_MAC;
	const unsigned char pub_src[ETH_ALEN] = PUB_MAC, pub_dst[ETH_ALEN] = CLIENT_MAC;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__be32 *addr;
	__be16 *port;
	__u16 c;

	/* match_src 0: any source (floor_xdp.bpf.c, which has looked the flow up already) */
	if ((void *)(udp + 1) > data_end || eth->h_proto != htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || (match_src && ip->saddr != match_src) ||
	    ip->daddr != match_dst || (match_src && udp->source != match_sport) ||
	    udp->dest != match_dport)
		return XDP_PASS;
	addr = rewrite_dst ? &ip->daddr : &ip->saddr;
	port = rewrite_dst ? &udp->dest : &udp->source;
	ip->check = bare_csum_replace(ip->check, *addr, to_ip, 0, 0);
	if (udp->check) {
		c = bare_csum_replace(udp->check, *addr, to_ip, *port, to_port);
		udp->check = c ? c : 0xffff;
	}
	*addr = to_ip;
	*port = to_port;
	__builtin_memcpy(eth->h_source, rewrite_dst ? int_src : pub_src, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, rewrite_dst ? int_dst : pub_dst, ETH_ALEN);
	return bpf_redirect(out_ifindex, 0);
}

int bare_public(struct xdp_md *ctx)
{
	return relay(ctx, CLIENT_IP, CLIENT_PORT, VIP_IP, VIP_PORT, 1, TRX_IP, TRX_PORT,
		     INT_IFINDEX);
}

int bare_internal(struct xdp_md *ctx)
{
	return relay(ctx, TRX_IP, TRX_PORT, CLIENT_IP, CLIENT_PORT, 0, VIP_IP, VIP_PORT,
		     PUB_IFINDEX);
}
