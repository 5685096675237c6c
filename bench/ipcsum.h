/* The IPv4 header checksum of a 20-byte header without options, recomputed by the bench's
 * generators after they rewrite an address (the caller has bounds-checked the header). */
static __always_inline void ipv4_csum_fill(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
	int i;

	ip->check = 0;
#pragma unroll
	for (i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
}
