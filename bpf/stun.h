/* stun.h — reads STUN (RFC 8489) headers and the server's ICE ufrag in a Binding Request.
 *
 * stun_header() checks the fixed header (magic cookie, length a multiple of 4 and within
 * the datagram) and returns the type and transaction id. stun_server_ufrag() walks at most
 * STEER_STUN_MAX_ATTRS attribute headers honouring their padding, reading each 4-byte
 * header with bpf_xdp_load_bytes (nothing else of the message is copied, so a message of
 * any size up to the MTU costs only its attribute count), then copies at most 33 bytes of
 * USERNAME and takes the part before ':' (the receiver's, i.e. our, ufrag; RFC 8445 7.2.2).
 * MESSAGE-INTEGRITY cannot be checked here, which is why a client's STUN never creates
 * state. After the attribute walk the code is branch-free, so the verifier walks it once.
 * steer_testkit/replay/model.py mirrors this file step for step; change both together.
 */
#ifndef STEER_STUN_H
#define STEER_STUN_H

#include "parse.h"

#ifndef STEER_STUN_MAX_ATTRS
#define STEER_STUN_MAX_ATTRS 64
#endif

#define STUN_HDR_LEN 20
#define STUN_MAGIC_COOKIE 0x2112A442
#define STUN_BINDING_REQUEST 0x0001
#define STUN_BINDING_SUCCESS 0x0101
#define STUN_BINDING_ERROR 0x0111
#define STUN_ATTR_USERNAME 0x0006

struct steer_stun_hdr {
	__be16 type;
	__be16 len;
	__be32 cookie;
	__u8 txid[12];
};

/* 1 if the byte is zero, else 0, without a branch. */
static __always_inline __u32 is_zero8(__u32 b)
{
	return ((b & 0xff) - 1) >> 31;
}

/* 1 if a < b (both below 2^31), else 0, without a branch. */
static __always_inline __u32 lt_u32(__u32 a, __u32 b)
{
	return (a - b) >> 31;
}

/* 0 and *h filled if the payload starts with a well-formed STUN header, else -1. */
static __always_inline int stun_header(struct xdp_md *ctx, const struct steer_pkt *pkt,
				       struct steer_stun_hdr *h)
{
	__u32 len;

	if (pkt->payload_len < STUN_HDR_LEN)
		return -1;
	if (bpf_xdp_load_bytes(ctx, pkt->payload_off, h, STUN_HDR_LEN))
		return -1;
	len = ntohs(h->len);
	if (h->cookie != htonl(STUN_MAGIC_COOKIE) || (len & 3) ||
	    STUN_HDR_LEN + len > pkt->payload_len)
		return -1;
	return 0;
}

/* Fills *ufrag (zero-padded) from the Binding Request with header `h` in pkt's payload.
 * Returns 0, or the drop reason. */
static __always_inline __u32 stun_server_ufrag(struct xdp_md *ctx, const struct steer_pkt *pkt,
					       const struct steer_stun_hdr *h,
					       struct steer_ufrag *ufrag)
{
	__u32 msg_end = STUN_HDR_LEN + ntohs(h->len), off = STUN_HDR_LEN, alen = 0, uoff = 0;
	__u32 n, colon, found, hit, keep, nul;
	__u8 v[STEER_UFRAG_MAX + 4] = {};
	__be16 ah[2];
	int i;

	for (i = 0; i < STEER_STUN_MAX_ATTRS; i++) {
		if (off + 4 > msg_end)
			return STEER_R_DROP_STUN_MALFORMED; /* no USERNAME */
		if (bpf_xdp_load_bytes(ctx, pkt->payload_off + off, ah, sizeof(ah)))
			return STEER_R_DROP_STUN_MALFORMED;
		alen = ntohs(ah[1]);
		if (off + 4 + alen > msg_end)
			return STEER_R_DROP_STUN_MALFORMED; /* attribute runs past the message */
		if (ah[0] == htons(STUN_ATTR_USERNAME)) {
			uoff = off + 4;
			break;
		}
		off += 4 + ((alen + 3) & ~3U);
	}
	if (!uoff || !alen)
		return STEER_R_DROP_STUN_MALFORMED; /* attribute limit reached, or empty */
	/* USERNAME = "<server ufrag>:<client ufrag>": its first 33 bytes decide */
	n = verifier_bound(alen > STEER_UFRAG_MAX + 1 ? STEER_UFRAG_MAX + 1 : alen, 0x3f);
	if (n < 1 || n > STEER_UFRAG_MAX + 1) /* said again, for the verifier */
		return STEER_R_DROP_STUN_MALFORMED;
	if (bpf_xdp_load_bytes(ctx, pkt->payload_off + uoff, v, n))
		return STEER_R_DROP_STUN_MALFORMED;
	found = 0;
	colon = 0;
#pragma clang loop unroll(disable)
	for (i = 0; i < STEER_UFRAG_MAX + 1; i++) {
		hit = is_zero8(v[i] ^ ':') & lt_u32(i, alen) & (found ^ 1);
		colon += hit * i;
		found |= hit;
	}
	if (!found || colon < STEER_UFRAG_MIN || colon > STEER_UFRAG_MAX)
		return STEER_R_DROP_STUN_MALFORMED; /* no colon, or ufrag too short or long */
	nul = 0;
#pragma clang loop unroll(disable)
	for (i = 0; i < STEER_UFRAG_MAX; i++) {
		keep = lt_u32(i, colon);
		nul |= keep & is_zero8(v[i]);
		ufrag->s[i] = v[i] & (__u8)(0 - keep);
	}
	if (nul)
		return STEER_R_DROP_STUN_MALFORMED; /* NUL inside the ufrag */
	return 0;
}

#endif /* STEER_STUN_H */
