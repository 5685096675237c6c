/* floor_xdp.bpf.c — the floor for a relay that routes by flow: bare_xdp's rewrite and
 * redirect, plus one hash lookup keyed exactly as steer keys its flows (client ip:port +
 * VIP ip:port, 20 bytes each: 40). The value is where the packet goes. No FIB lookup, no
 * clock, no counters, no STUN: anything steer does beyond this is what steer adds over the
 * least a flow router must do. Compiled with bare_xdp's -D constants.
 */
#include "bare_xdp.bpf.c"

#ifndef FLOOR_FLOWS
#define FLOOR_FLOWS 1048576
#endif

struct floor_addr { /* the shape of struct steer_addr */
	__u8 ip[16];
	__be16 port;
	__u8 family;
	__u8 pad;
};
struct floor_key {
	struct floor_addr client, vip;
};
struct floor_to {
	__be32 ip;
	__be16 port;
	__u16 pad;
};
BPF_HASH(floor_flows, struct floor_key, struct floor_to, FLOOR_FLOWS);

int floor_public(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct floor_key k __attribute__((aligned(8)));
	struct floor_to *to;

	if ((void *)(udp + 1) > data_end || eth->h_proto != htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || ip->daddr != VIP_IP || udp->dest != VIP_PORT)
		return XDP_PASS;
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.client.ip, &ip->saddr, 4);
	k.client.port = udp->source;
	k.client.family = 4;
	__builtin_memcpy(k.vip.ip, &ip->daddr, 4);
	k.vip.port = udp->dest;
	k.vip.family = 4;
	to = floor_flows.lookup(&k);
	if (!to)
		return XDP_PASS;
	return relay(ctx, 0, 0, VIP_IP, VIP_PORT, 1, to->ip, to->port, INT_IFINDEX);
}

/* The way back as bare_internal (bcc loads only this file's own functions): the
 * benchmark's loads are one-way, client to transceiver. */
int floor_internal(struct xdp_md *ctx)
{
	return relay(ctx, TRX_IP, TRX_PORT, CLIENT_IP, CLIENT_PORT, 0, VIP_IP, VIP_PORT,
		     PUB_IFINDEX);
}
