/* parse.h — bounds-checked parsers from the Ethernet header down to the UDP payload.
 *
 * Shaped for the verifier (after xdp-tools' parsing_helpers.h): every step checks its
 * bounds against data_end before it reads, and every variable-length walk (VLAN tags,
 * IPv6 extension headers) is a counted loop with an overridable maximum. The result is a
 * struct steer_pkt with pointers to each header, or a pass reason for the caller to count.
 */
#ifndef STEER_PARSE_H
#define STEER_PARSE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/in.h>
#include "steer_shared.h"

#ifndef STEER_MAX_VLAN
#define STEER_MAX_VLAN 2
#endif
#ifndef STEER_MAX_IPV6_EXT
#define STEER_MAX_IPV6_EXT 4
#endif

/* Headers (Ethernet + VLAN + IP + extensions + UDP) longer than this count as malformed:
 * it keeps payload offsets provable for the verifier, and real ones are < 200 bytes. */
#define STEER_MAX_PAYLOAD_OFF 1024
#define STEER_PAYLOAD_OFF_MASK 0x7ff /* >= the maximum: a no-op the verifier can see */

/* Helpers return an XDP action, or this to say "keep going". */
#define STEER_CONTINUE (-1)

struct steer_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct steer_ip6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct steer_pkt {
	void *data;
	void *data_end;
	struct ethhdr *eth;
	struct iphdr *ip4;     /* set when family is V4; branch on family, not on NULL:
				* the verifier does not know a packet pointer is non-NULL */
	struct ipv6hdr *ip6;
	struct udphdr *udp;
	__u32 payload_off;     /* UDP payload, from data */
	__u32 payload_len;     /* from the UDP length field, never past data_end */
	__u32 len;             /* frame length, for the byte counters */
	__u32 vlan_bytes;      /* 4 per VLAN tag: stripped from what the relay forwards */
	__be16 l3_proto;       /* the ethertype inside the tags */
	__u8 family;           /* enum steer_family: set as soon as the fixed IP header is
				* there, so a packet that is not steerable UDP can still be
				* routed (and stopped from crossing) */
	__u8 l4;               /* IP protocol / last IPv6 next header seen */
	__u8 frag;             /* an IPv4 fragment or an IPv6 fragment header */
	__u8 opts;             /* IPv4 header with options */
};

static __always_inline int is_vlan(__be16 proto)
{
	return proto == htons(ETH_P_8021Q) || proto == htons(ETH_P_8021AD);
}

/* IPv4 from `pos`; sets pkt->ip4 and returns the UDP header position, or NULL + reason. */
static __always_inline void *parse_ipv4(struct steer_pkt *pkt, void *pos, __u32 *reason)
{
	struct iphdr *ip = pos;
	__u32 hlen, tot;

	if ((void *)(ip + 1) > pkt->data_end || ip->version != 4)
		goto malformed;
	pkt->ip4 = ip;
	pkt->family = STEER_FAMILY_V4;
	pkt->l4 = ip->protocol;
	pkt->frag = !!(ip->frag_off & htons(0x3fff)); /* MF or a fragment offset */
	pkt->opts = ip->ihl != 5;
	if (ip->ihl < 5)
		goto malformed;
	hlen = ip->ihl * 4;
	if (pos + hlen > pkt->data_end)
		goto malformed;
	if (ip->protocol != IPPROTO_UDP) {
		*reason = STEER_R_PASS_NOT_IP;
		return NULL;
	}
	if (pkt->frag) {
		*reason = STEER_R_PASS_FRAGMENT;
		return NULL;
	}
	tot = ntohs(ip->tot_len);
	if (tot < hlen + sizeof(struct udphdr) || pos + tot > pkt->data_end)
		goto malformed;
	return pos + hlen;
malformed:
	*reason = STEER_R_PASS_MALFORMED;
	return NULL;
}

/* IPv6 from `pos`, walking up to STEER_MAX_IPV6_EXT hop-by-hop/routing/destination
 * option headers; a fragment header anywhere ends the walk. */
static __always_inline void *parse_ipv6(struct steer_pkt *pkt, void *pos, __u32 *reason)
{
	struct ipv6hdr *ip6 = pos;
	struct steer_ip6_ext *ext;
	__u8 next;
	int i;

	if ((void *)(ip6 + 1) > pkt->data_end || ip6->version != 6)
		goto malformed;
	pkt->ip6 = ip6;
	pkt->family = STEER_FAMILY_V6;
	next = ip6->nexthdr;
	pkt->l4 = next;
	if ((void *)(ip6 + 1) + ntohs(ip6->payload_len) > pkt->data_end)
		goto malformed;
	pos = ip6 + 1;
	for (i = 0; i < STEER_MAX_IPV6_EXT; i++) {
		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS)
			break;
		ext = pos;
		if ((void *)(ext + 1) > pkt->data_end)
			goto malformed;
		next = ext->nexthdr;
		pkt->l4 = next;
		pos += (ext->hdrlen + 1) * 8;
	}
	if (next == IPPROTO_FRAGMENT) {
		pkt->frag = 1;
		*reason = STEER_R_PASS_FRAGMENT;
		return NULL;
	}
	if (next != IPPROTO_UDP) {
		*reason = STEER_R_PASS_NOT_IP;
		return NULL;
	}
	return pos;
malformed:
	*reason = STEER_R_PASS_MALFORMED;
	return NULL;
}

/* Ethernet (up to STEER_MAX_VLAN 802.1Q/802.1ad tags), IPv4 or IPv6, UDP. Returns
 * STEER_CONTINUE with pkt filled in, or XDP_PASS with *reason set (and pkt->family set
 * when the packet has a routable IP header). */
static __always_inline int parse_packet(struct xdp_md *ctx, struct steer_pkt *pkt,
					__u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct steer_vlan_hdr *vh;
	struct udphdr *udp;
	void *pos, *l3;
	__be16 proto;
	__u32 ulen, total, used;
	int i;

	pkt->data = data;
	pkt->data_end = data_end;
	pkt->len = data_end - data;
	pkt->eth = data;
	if ((void *)(pkt->eth + 1) > data_end)
		goto malformed;
	proto = pkt->eth->h_proto;
	pos = pkt->eth + 1;
	for (i = 0; i < STEER_MAX_VLAN; i++) {
		if (!is_vlan(proto))
			break;
		vh = pos;
		if ((void *)(vh + 1) > data_end)
			goto malformed;
		proto = vh->proto;
		pos = vh + 1;
		pkt->vlan_bytes += sizeof(*vh);
	}
	pkt->l3_proto = proto;
	l3 = pos;
	if (proto == htons(ETH_P_IP))
		pos = parse_ipv4(pkt, pos, reason);
	else if (proto == htons(ETH_P_IPV6))
		pos = parse_ipv6(pkt, pos, reason);
	else {
		*reason = STEER_R_PASS_NOT_IP;
		return XDP_PASS;
	}
	if (!pos)
		return XDP_PASS;

	udp = pos;
	if ((void *)(udp + 1) > data_end)
		goto malformed;
	ulen = ntohs(udp->len);
	/* the datagram must fit in what the IP header says it carries */
	if (pkt->family == STEER_FAMILY_V4) {
		total = ntohs(pkt->ip4->tot_len);
		used = pos - l3;
	} else {
		total = ntohs(pkt->ip6->payload_len);
		used = pos - l3 - sizeof(struct ipv6hdr);
	}
	if (used > total || ulen < sizeof(*udp) || ulen > total - used)
		goto malformed;
	pkt->udp = udp;
	pkt->payload_off = (void *)(udp + 1) - data;
	if (pkt->payload_off > STEER_MAX_PAYLOAD_OFF)
		goto malformed;
	pkt->payload_len = ulen - sizeof(*udp);
	return STEER_CONTINUE;
malformed:
	*reason = STEER_R_PASS_MALFORMED;
	return XDP_PASS;
}

/* The common case in few instructions: untagged IPv4 without options or fragmentation
 * carrying UDP whose lengths agree. Fills pkt exactly as parse_packet would and returns
 * 1; returns 0 (pkt untouched) for anything else, which parse_packet then classifies. */
static __always_inline int parse_plain_v4(struct xdp_md *ctx, struct steer_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 tot, ulen;

	if ((void *)(udp + 1) > data_end || eth->h_proto != htons(ETH_P_IP) ||
	    *(__u8 *)ip != 0x45 || ip->protocol != IPPROTO_UDP || (ip->frag_off & htons(0x3fff)))
		return 0;
	tot = ntohs(ip->tot_len);
	ulen = ntohs(udp->len);
	if (tot < sizeof(*ip) + sizeof(*udp) || (void *)ip + tot > data_end ||
	    ulen < sizeof(*udp) || ulen > tot - sizeof(*ip))
		return 0;
	pkt->data = data;
	pkt->data_end = data_end;
	pkt->len = data_end - data;
	pkt->eth = eth;
	pkt->ip4 = ip;
	pkt->udp = udp;
	pkt->l3_proto = htons(ETH_P_IP);
	pkt->family = STEER_FAMILY_V4;
	pkt->l4 = IPPROTO_UDP;
	pkt->payload_off = sizeof(*eth) + sizeof(*ip) + sizeof(*udp);
	pkt->payload_len = ulen - sizeof(*udp);
	return 1;
}

/* `x & mask` where the caller has already checked x <= mask: a no-op for the program, a
 * bound for the verifier. The empty asm hides x from clang, which would otherwise drop
 * the mask as redundant and hand the verifier an offset it cannot bound. */
static __always_inline __u32 verifier_bound(__u32 x, __u32 mask)
{
	asm volatile("" : "+r"(x));
	return x & mask;
}

/* The payload's offset from data, in a form the verifier can bound. */
static __always_inline __u32 payload_off(const struct steer_pkt *pkt)
{
	return verifier_bound(pkt->payload_off, STEER_PAYLOAD_OFF_MASK);
}

#endif /* STEER_PARSE_H */
