/* randgen.bpf.c — the live-frames generator over many flows (bench/relay_scale.py).
 *
 * bench_gen (probes.bpf.c) sends one frame: every packet hits one hot flow entry. This
 * one writes the template headers back (the kernel recycles a live frame's page without
 * restoring it, and a relay rewrites in place), puts a random one of rgen_conf.n
 * consecutive client addresses from rgen_conf.base (port rgen_conf.port) in the source,
 * fixes the IPv4 checksum, clears the UDP one (none, as IPv4 allows) and sends the frame
 * (XDP_TX: out of the device the test run names).
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

#include "ipcsum.h"

#define RGEN_HDR_LEN 64
struct rgen_hdr {
	__u8 b[RGEN_HDR_LEN];
};
struct rgen_conf {
	__u32 n;     /* clients to pick from (>= 1) */
	__u32 base;  /* first client address, host order */
	__u16 port;  /* client port, network order */
	__u16 pad;
};
BPF_ARRAY(rgen_hdr, struct rgen_hdr, 1);
BPF_ARRAY(rgen_conf, struct rgen_conf, 1);

int rgen_src(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(ip + 1);
	struct rgen_hdr *h;
	struct rgen_conf *cf;
	__u32 zero = 0;

	h = rgen_hdr.lookup(&zero);
	cf = rgen_conf.lookup(&zero);
	if (!h || !cf || !cf->n || data + RGEN_HDR_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, h->b, RGEN_HDR_LEN);
	ip->saddr = htonl(cf->base + bpf_get_prandom_u32() % cf->n);
	udp->source = cf->port;
	udp->check = 0;
	ipv4_csum_fill(ip);
	return XDP_TX;
}
