/* breakdown.bpf.c — what each step on steer's established-flow path costs on its own.
 *
 * Each probe parses Ethernet/IPv4/UDP the way bare_xdp.bpf.c does, does one thing steer
 * does per packet, and returns XDP_PASS without touching the frame (so a test run with a
 * large repeat times the same path every time). probe_parse alone is the reference the
 * others are measured against. Written from scratch, not from bpf/, so that it measures
 * the kernel's helpers and maps rather than any one version of steer.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

#ifndef AF_INET
#define AF_INET 2
#endif

struct probe_addr { /* the shape of struct steer_addr: 20 bytes */
	__u8 ip[16];
	__be16 port;
	__u8 family;
	__u8 pad;
};
struct probe_flow_key {
	struct probe_addr client, vip;
};
struct probe_flow {
	__u8 b[80];
};
struct probe_counter {
	__u64 packets, bytes;
};

BPF_TABLE("lru_hash", struct probe_flow_key, struct probe_flow, probe_flows, 1024);
BPF_ARRAY(probe_backends, struct probe_flow, 4096);
BPF_PERCPU_ARRAY(probe_stats, struct probe_counter, 18);

static __always_inline struct udphdr *parse(struct xdp_md *ctx, struct iphdr **ipp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > data_end || eth->h_proto != htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP)
		return NULL;
	*ipp = ip;
	return udp;
}

int probe_parse(struct xdp_md *ctx)
{
	struct iphdr *ip;

	parse(ctx, &ip);
	return XDP_PASS;
}

int probe_flow_lookup(struct xdp_md *ctx)
{
	struct probe_flow_key k;
	struct probe_flow v = {};
	struct udphdr *udp;
	struct iphdr *ip;

	udp = parse(ctx, &ip);
	if (!udp)
		return XDP_PASS;
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.client.ip, &ip->saddr, 4);
	k.client.port = udp->source;
	k.client.family = 4;
	__builtin_memcpy(k.vip.ip, &ip->daddr, 4);
	k.vip.port = udp->dest;
	k.vip.family = 4;
	if (!probe_flows.lookup(&k))
		probe_flows.update(&k, &v); /* the first run inserts; the rest hit */
	return XDP_PASS;
}

int probe_array_lookup(struct xdp_md *ctx)
{
	struct iphdr *ip;
	__u32 id = 1;
	struct probe_flow *b;

	if (!parse(ctx, &ip))
		return XDP_PASS;
	b = probe_backends.lookup(&id);
	return b && b->b[0] == 3 ? XDP_DROP : XDP_PASS;
}

int probe_ktime(struct xdp_md *ctx)
{
	struct iphdr *ip;
	__u32 zero = 0;
	struct probe_counter *c;

	if (!parse(ctx, &ip))
		return XDP_PASS;
	c = probe_stats.lookup(&zero);
	if (c)
		c->bytes = bpf_ktime_get_ns(); /* kept, so the call stays */
	return XDP_PASS;
}

int probe_ktime_coarse(struct xdp_md *ctx)
{
	struct iphdr *ip;
	__u32 zero = 0;
	struct probe_counter *c;

	if (!parse(ctx, &ip))
		return XDP_PASS;
	c = probe_stats.lookup(&zero);
	if (c)
		c->bytes = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

int probe_count(struct xdp_md *ctx)
{
	struct iphdr *ip;
	__u32 reason = 5;
	struct probe_counter *c;

	if (!parse(ctx, &ip))
		return XDP_PASS;
	c = probe_stats.lookup(&reason);
	if (c) {
		c->packets++;
		c->bytes += 202; /* the benchmark frame */
	}
	return XDP_PASS;
}

int probe_fib_lookup(struct xdp_md *ctx)
{
	struct bpf_fib_lookup fib;
	struct udphdr *udp;
	struct iphdr *ip;

	udp = parse(ctx, &ip);
	if (!udp)
		return XDP_PASS;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.ifindex = ctx->ingress_ifindex;
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = udp->source;
	fib.dport = FIB_DPORT;
	fib.tos = ip->tos;
	fib.tot_len = ntohs(ip->tot_len);
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = FIB_DST; /* where steer routes after the rewrite: the transceiver */
	return bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) == BPF_FIB_LKUP_RET_SUCCESS ? XDP_PASS
										    : XDP_DROP;
}
