/* nhfresh.bpf.c — mark the cached next hops of N prefilled steer flows as checked now
 * (bench/relay_scale.py). Writing a million flows from user space takes about the next-hop
 * cache's lifetime (1 s); run with BPF_PROG_TEST_RUN repeat=N, this does it in place in
 * tens of milliseconds: run i looks up the flow of client nh_conf.base + i (the key
 * template's other bytes as they are) and stores bpf_ktime_get_coarse_ns() in its
 * nh.checked_ns. nh_hits counts the flows found. Built with the pinned map's key and
 * value sizes, its path and nh's offset (-D FLOW_KEY_SIZE, FLOW_VAL_SIZE, FLOWS_PIN,
 * FLOWS_MAX, NH_OFF).
 */
#include <uapi/linux/bpf.h>

struct fkey {
	__u8 b[FLOW_KEY_SIZE];
};
struct fval {
	__u8 b[FLOW_VAL_SIZE];
};
struct nh_conf {
	__u32 n;
	__u32 base; /* host order */
	__u32 next; /* the index the next run takes */
	__u32 pad;
};
BPF_TABLE_PINNED("hash", struct fkey, struct fval, steer_flows, FLOWS_MAX, FLOWS_PIN);
BPF_ARRAY(nh_tmpl, struct fkey, 1);
BPF_ARRAY(nh_conf, struct nh_conf, 1);
BPF_ARRAY(nh_hits, __u64, 1);

int nh_fresh(struct xdp_md *ctx)
{
	struct nh_conf *cf;
	struct fkey *t, k;
	struct fval *v;
	__u64 *hits;
	__u32 zero = 0, ip;

	cf = nh_conf.lookup(&zero);
	t = nh_tmpl.lookup(&zero);
	if (!cf || !t || !cf->n)
		return XDP_ABORTED;
	__builtin_memcpy(&k, t, sizeof(k));
	ip = htonl(cf->base + cf->next);
	__builtin_memcpy(k.b, &ip, 4);
	cf->next = cf->next + 1 < cf->n ? cf->next + 1 : 0;
	v = steer_flows.lookup(&k);
	if (!v)
		return XDP_PASS;
	*(__u64 *)(v->b + NH_OFF) = bpf_ktime_get_coarse_ns();
	hits = nh_hits.lookup(&zero);
	if (hits)
		(*hits)++;
	return XDP_PASS;
}
