/* under_load.bpf.c — the counter of bench/under_load.py, on fabric/int-br in place of
 * bench_sink: counts and drops the live-frames generators' frames (UDP to
 * TARGET_IP:TARGET_PORT with a PAYLOAD_LEN-byte payload whose RTP sequence number is
 * MARK_SEQ + slot), one count per slot, so that two generators' flows are counted apart
 * even when they share a 5-tuple, and what a relay rewrites (addresses, ports, the IP id
 * a socket-based relay sets anew) does not matter. Everything else passes: the pings
 * of the latency measurement and the verification's packets reach the transceiver.
 */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

BPF_PERCPU_ARRAY(load_count, __u64, SLOTS);

int load_count_drop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *rtp = (void *)(udp + 1);
	__u32 slot;
	__u64 *n;

	if ((void *)(rtp + 4) > data_end || eth->h_proto != htons(ETH_P_IP) || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || ip->daddr != TARGET_IP || udp->dest != TARGET_PORT ||
	    udp->len != htons(sizeof(*udp) + PAYLOAD_LEN))
		return XDP_PASS;
	slot = (((__u32)rtp[2] << 8) | rtp[3]) - MARK_SEQ;
	if (slot >= SLOTS)
		return XDP_PASS;
	n = load_count.lookup(&slot);
	if (n)
		(*n)++;
	return XDP_DROP;
}
