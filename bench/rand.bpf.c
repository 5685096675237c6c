/* rand.bpf.c — random access for BPF_PROG_TEST_RUN timings (xdp_ns_per_packet_random_1m).
 *
 * A test run repeats one frame, so the program under test would hit one hot map entry
 * every time. rand_src / rand_dst first write the template headers back (the program under
 * test rewrites them), put a random one of rand_conf.n consecutive IPv4 addresses from
 * rand_conf.base in the source / destination (rand_both: both, the same offset, for the
 * return path whose key is socket + client), fix the IPv4 checksum, and tail-call the
 * program in rand_target[0]. The same prologue in front of bench_pass is the harness
 * overhead subtracted from every random-access figure.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

#include "ipcsum.h"

#define RAND_HDR_LEN 64
struct rand_hdr {
	__u8 b[RAND_HDR_LEN];
};
struct rand_conf {
	__u32 n;         /* addresses to pick from (>= 1) */
	__u32 src_base;  /* host order */
	__u32 dst_base;
	__u32 pad;
};
BPF_ARRAY(rand_tmpl, struct rand_hdr, 1);
BPF_ARRAY(rand_conf, struct rand_conf, 1);
BPF_PROG_ARRAY(rand_target, 1);

static __always_inline int randomize(struct xdp_md *ctx, int src, int dst)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct rand_hdr *h;
	struct rand_conf *cf;
	__u32 zero = 0, r;

	h = rand_tmpl.lookup(&zero);
	cf = rand_conf.lookup(&zero);
	if (!h || !cf || !cf->n || data + RAND_HDR_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, h->b, RAND_HDR_LEN);
	r = bpf_get_prandom_u32() % cf->n;
	if (src)
		ip->saddr = htonl(cf->src_base + r);
	if (dst)
		ip->daddr = htonl(cf->dst_base + r);
	ipv4_csum_fill(ip);
	rand_target.call(ctx, 0);
	return XDP_ABORTED;
}

int rand_src(struct xdp_md *ctx)
{
	return randomize(ctx, 1, 0);
}

int rand_both(struct xdp_md *ctx)
{
	return randomize(ctx, 1, 1);
}
