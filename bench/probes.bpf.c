/* probes.bpf.c — the benchmark's measuring points, not relays.
 *
 * bench_sink counts UDP to TARGET_IP:TARGET_PORT (a -D cflag, network byte order) and,
 * while bench_mode[0] is 1, drops it: on fabric/int-br (where the relay's internal link
 * enters the fabric) it counts what a relay delivered without the transceiver's socket
 * path becoming the limit; on the relay's public veth, in drop mode, it is the "relay that
 * does nothing" CPU baseline.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

#include "ipcsum.h"

BPF_PERCPU_ARRAY(bench_count, __u64, 1);
BPF_ARRAY(bench_mode, __u32, 1);

int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 zero = 0;
	__u32 *mode;
	__u64 *n;

	if ((void *)(udp + 1) > data_end || eth->h_proto != htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || ip->daddr != TARGET_IP || udp->dest != TARGET_PORT)
		return XDP_PASS;
	n = bench_count.lookup(&zero);
	if (n)
		(*n)++;
	mode = bench_mode.lookup(&zero);
	return mode && *mode ? XDP_DROP : XDP_PASS;
}

/* Does nothing: BPF_PROG_TEST_RUN's own cost per run, subtracted from the others. */
int bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* The live-frames generator: BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the
 * client's veth sends every run's frame out of it (XDP_TX becomes a redirect to the
 * ingress device), ~10x cheaper per packet than trafgen, so the relay becomes the limit.
 * The kernel recycles the frame's page without restoring its contents, and a relay
 * rewrites headers in place: so the generator writes the original headers back first. */
#define GEN_HDR_LEN 64
struct gen_hdr {
	__u8 b[GEN_HDR_LEN];
};
BPF_ARRAY(bench_gen_hdr, struct gen_hdr, 1);

int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct gen_hdr *hdr;
	__u32 zero = 0;

	hdr = bench_gen_hdr.lookup(&zero);
	if (!hdr || data + GEN_HDR_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, hdr->b, GEN_HDR_LEN);
	return XDP_TX;
}

/* The flood generator: bench_gen's frame, each time from a random source address in
 * 198.18.0.0/15 (RFC 2544's benchmarking range) and a random port, with the IPv4 header
 * checksum recomputed. The frame's UDP checksum is 0 (none, as IPv4 allows). */
int bench_gen_flood(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct udphdr *udp = (void *)(ip + 1);
	struct gen_hdr *hdr;
	__u32 zero = 0, r;

	hdr = bench_gen_hdr.lookup(&zero);
	if (!hdr || data + GEN_HDR_LEN > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, hdr->b, GEN_HDR_LEN);
	r = bpf_get_prandom_u32();
	ip->saddr = htonl(0xC6120000 | (r & 0x1FFFF));
	udp->source = htons(1024 + (r >> 17) % 60000);
	ipv4_csum_fill(ip);
	return XDP_TX;
}
