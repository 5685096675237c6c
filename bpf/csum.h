/* csum.h — incremental Internet checksum updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
 *
 * A rewrite accumulates the difference of every 16-bit word it changes into one
 * struct steer_csum_diff, then applies it once to each checksum that covers those words.
 * The ones'-complement sum is byte-order independent, so words are used as loaded.
 */
#ifndef STEER_CSUM_H
#define STEER_CSUM_H

struct steer_csum_diff {
	__u64 sum;
};

static __always_inline void steer_csum_diff16(struct steer_csum_diff *d, __u16 from, __u16 to)
{
	d->sum += (__u16)~from;
	d->sum += to;
}

static __always_inline void steer_csum_diff_bytes(struct steer_csum_diff *d, const __u8 *from,
					    const __u8 *to, int len)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i += 2) {
		if (i >= len)
			break;
		steer_csum_diff16(d, *(const __u16 *)(from + i), *(const __u16 *)(to + i));
	}
}

static __always_inline __u16 steer_csum_fold(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* The new checksum for a field that held `check` before the change `d`. */
static __always_inline __u16 steer_csum_apply(__u16 check, const struct steer_csum_diff *d)
{
	return ~steer_csum_fold((__u16)~check + d->sum);
}

#endif /* STEER_CSUM_H */
