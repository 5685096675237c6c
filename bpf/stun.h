/* stun.h — finds the server's ICE ufrag in a client's STUN Binding Request (RFC 8489).
 *
 * Checks the header (Binding Request, magic cookie, length a multiple of 4 and within the
 * datagram), walks at most STEER_STUN_MAX_ATTRS attributes honouring their padding, and
 * takes the part of USERNAME before ':' (the receiver's, i.e. our, ufrag; RFC 8445 7.2.2).
 * MESSAGE-INTEGRITY cannot be checked here, which is why a STUN hit never creates state.
 *
 * The message is copied into a per-CPU scratch buffer first: offsets into it do not depend
 * on how many VLAN tags or extension headers came before, so the verifier walks this code
 * once per header layout instead of once per layout and per offset. After the attribute
 * walk the code is branch-free for the same reason.
 * pyctl/model.py mirrors this file step for step; change both together.
 */
#ifndef STEER_STUN_H
#define STEER_STUN_H

#include "parse.h"
#include "steer_maps.h"

#ifndef STEER_STUN_MAX_ATTRS
#define STEER_STUN_MAX_ATTRS 32
#endif

#define STUN_HDR_LEN 20
#define STUN_MAGIC_COOKIE 0x2112A442
#define STUN_BINDING_REQUEST 0x0001
#define STUN_ATTR_USERNAME 0x0006

static __always_inline __u32 load_be16(const __u8 *p)
{
	return ((__u32)p[0] << 8) | p[1];
}

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

/* Fills *ufrag (zero-padded) from the Binding Request in pkt's payload, using the scratch
 * buffer `sc` (map access stays in steer.bpf.c: bcc rewrites map calls only there).
 * Returns 0, or the drop reason. */
static __always_inline __u32 stun_server_ufrag(struct xdp_md *ctx, struct steer_pkt *pkt,
					       struct steer_scratch *sc,
					       struct steer_ufrag *ufrag)
{
	__u32 msg_end, off, alen = 0, uoff = 0, colon, found, hit, keep, nul;
	__u8 *m = sc->b, *a, *v;
	int i;

	if (pkt->payload_len < STUN_HDR_LEN)
		return STEER_R_DROP_STUN_MALFORMED;
	if (bpf_xdp_load_bytes(ctx, pkt->payload_off, m, STUN_HDR_LEN))
		return STEER_R_DROP_STUN_MALFORMED;
	msg_end = STUN_HDR_LEN + load_be16(m + 2);
	if (*(__be32 *)(m + 4) != htonl(STUN_MAGIC_COOKIE) || (msg_end & 3) ||
	    msg_end > pkt->payload_len || msg_end > STEER_STUN_MAX_LEN)
		return STEER_R_DROP_STUN_MALFORMED;
	if (load_be16(m) != STUN_BINDING_REQUEST)
		return STEER_R_DROP_STUN_NOT_REQUEST;
	if (msg_end == STUN_HDR_LEN)
		return STEER_R_DROP_STUN_MALFORMED; /* no attributes, so no USERNAME */
	if (bpf_xdp_load_bytes(ctx, pkt->payload_off + STUN_HDR_LEN, m + STUN_HDR_LEN,
			       msg_end - STUN_HDR_LEN))
		return STEER_R_DROP_STUN_MALFORMED;

	off = STUN_HDR_LEN;
	for (i = 0; i < STEER_STUN_MAX_ATTRS; i++) {
		if (off + 4 > msg_end || off > STEER_STUN_MAX_LEN)
			return STEER_R_DROP_STUN_MALFORMED; /* no USERNAME */
		a = m + verifier_bound(off, STEER_SCRATCH_MASK);
		alen = load_be16(a + 2);
		if (off + 4 + alen > msg_end)
			return STEER_R_DROP_STUN_MALFORMED; /* attribute runs past the message */
		if (load_be16(a) == STUN_ATTR_USERNAME) {
			uoff = off + 4;
			break;
		}
		off += 4 + ((alen + 3) & ~3U);
	}
	if (!uoff || uoff > STEER_STUN_MAX_LEN)
		return STEER_R_DROP_STUN_MALFORMED; /* attribute limit reached */
	/* Each loop exit above knows its own exact uoff, and the verifier would check the
	 * rest once per exit. A round trip through map memory, which it does not track,
	 * turns both values back into plain bounded numbers: one state for all exits. */
	sc->uoff = uoff;
	sc->alen = alen;
	uoff = verifier_bound(*(volatile __u32 *)&sc->uoff, STEER_SCRATCH_MASK);
	alen = *(volatile __u32 *)&sc->alen & 0xffff;

	/* USERNAME = "<server ufrag>:<client ufrag>". The scratch buffer has room for the
	 * whole window past any uoff; bytes past alen are stale and masked out. */
	v = m + verifier_bound(uoff, STEER_SCRATCH_MASK);
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
