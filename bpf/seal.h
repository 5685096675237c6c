/* seal.h — sealed ufrags: decode one, and SipHash-2-4 of its 64-bit word.
 *
 * A sealed ufrag is 26 base32hex characters ("0-9a-v", first one 0-7) holding 128 bits:
 * the sealed word (steer_shared.h STEER_SEAL_*: backend, port, key id, nonce), then
 * mac = SipHash-2-4(key, word as 8 little-endian bytes). steer_common/seal.py is the
 * reference (and mints them for tests); steer_common/ufrag.py mints them in production;
 * steer_testkit/replay/model.py mirrors this file.
 * Map lookups stay in steer.bpf.c (bcc rewrites them only in the main file): here only
 * arithmetic, branch-free, eight characters at a time.
 */
#ifndef STEER_SEAL_H
#define STEER_SEAL_H

#include "steer_shared.h"

#define SEAL_LEN 26

#define SIP_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3)                                                   \
	do {                                                                        \
		v0 += v1; v1 = SIP_ROTL(v1, 13); v1 ^= v0; v0 = SIP_ROTL(v0, 32);   \
		v2 += v3; v3 = SIP_ROTL(v3, 16); v3 ^= v2;                          \
		v0 += v3; v3 = SIP_ROTL(v3, 21); v3 ^= v0;                          \
		v2 += v1; v1 = SIP_ROTL(v1, 17); v1 ^= v2; v2 = SIP_ROTL(v2, 32);   \
	} while (0)

/* SipHash-2-4's last block (the message length in its top byte) and finalization. */
static __always_inline __u64 siphash24_finish(__u64 v0, __u64 v1, __u64 v2, __u64 v3, __u64 b)
{
	v3 ^= b;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* SipHash-2-4 of one 8-byte message whose little-endian value is `m`. */
static __always_inline __u64 siphash24_u64(__u64 k0, __u64 k1, __u64 m)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;

	v3 ^= m;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	v0 ^= m;
	return siphash24_finish(v0, v1, v2, v3, 8ULL << 56);
}

/* SipHash-2-4 of one 32-byte message whose four little-endian 8-byte blocks are m[0..3]. */
static __always_inline __u64 siphash24_32(__u64 k0, __u64 k1, const __u64 *m)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		v3 ^= m[i];
		SIP_ROUND(v0, v1, v2, v3);
		SIP_ROUND(v0, v1, v2, v3);
		v0 ^= m[i];
	}
	return siphash24_finish(v0, v1, v2, v3, 32ULL << 56);
}

/* The key backend `backend` seals with, derived from the fleet key (k0, k1): SipHash-2-4
 * of STEER_KDF_DOMAIN | backend << 1 | half, for each half (steer_common/seal.py
 * backend_key). A transceiver holds only its backend's, so it mints for no one else. */
#define STEER_KDF_DOMAIN (0x7374656572ULL << 24) /* "steer" */
static __always_inline void seal_backend_key(__u64 k0, __u64 k1, __u32 backend, __u64 *b0,
					     __u64 *b1)
{
	__u64 m = STEER_KDF_DOMAIN | ((__u64)(backend & STEER_SEAL_BACKEND_MASK) << 1);

	*b0 = siphash24_u64(k0, k1, m);
	*b1 = siphash24_u64(k0, k1, m | 1);
}

/* Sealed transaction ids: a transceiver with a sealing key makes its own checks' ids
 * verifiable by any relay with the key, so that the client's answer proves its address on
 * whichever relay it reaches (a fleet's return path may leave through another relay than
 * the one the client's packets arrive on, which then holds no steer_pending entry). 96
 * bits: word (48, big-endian) = the sealed word >> STEER_SEAL_TXID_SHIFT, then the top
 * 48 bits of SipHash-2-4(backend key, word as 8 little-endian bytes || the client's
 * steer_addr (20 bytes) || 4 zero bytes). steer_common/seal.py seal_txid() is the reference. */
static __always_inline __u64 txid_tag(__u64 k0, __u64 k1, __u64 word48,
				      const struct steer_addr *client)
{
	__u64 m[4] = {};

	m[0] = word48;
	__builtin_memcpy(&m[1], client, sizeof(*client));
	return siphash24_32(k0, k1, m) >> 16;
}

#define SEAL_REP(b) (0x0101010101010101ULL * (b))
#define SEAL_HIGH SEAL_REP(0x80)

/* Per byte of x (each below 0x80): 0x80 where the byte is >= lo, else 0. */
#define SEAL_GE(x, lo) (((x) + SEAL_REP(0x80 - (lo))) & SEAL_HIGH)
/* ... where the byte is > hi. */
#define SEAL_GT(x, hi) (((x) + SEAL_REP(0x7f - (hi))) & SEAL_HIGH)

/* Eight characters (little-endian in x) checked against "0-9a-v" where `care` has 0x80,
 * and turned into their 5-bit values in place; returns 0x80s where a byte is invalid. */
static __always_inline __u64 seal_chars(__u64 *x, __u64 care)
{
	__u64 v = *x, digit, letter, bad;

	bad = v & SEAL_HIGH; /* non-ASCII; the sums below would carry across bytes */
	digit = SEAL_GE(v, '0') & ~SEAL_GT(v, '9');
	letter = SEAL_GE(v, 'a') & ~SEAL_GT(v, 'v');
	bad |= ~(digit | letter) & care;
	*x = v - SEAL_REP('0') - (letter >> 7) * ('a' - '0' - 10);
	return bad;
}

/* Eight 5-bit values, the first in the lowest byte, packed into 40 bits, first highest. */
static __always_inline __u64 seal_pack(__u64 x)
{
	x = __builtin_bswap64(x);
	x = ((x & 0x1f001f001f001f00ULL) >> 3) | (x & 0x001f001f001f001fULL);
	x = ((x & 0x03ff000003ff0000ULL) >> 6) | (x & 0x000003ff000003ffULL);
	return ((x & 0x000fffff00000000ULL) >> 12) | (x & 0x00000000000fffffULL);
}

/* 0 and *word, *mac filled if `u` is shaped like a sealed ufrag (exactly SEAL_LEN
 * characters of "0-9a-v", the first 0-7), else -1. Nothing is verified here. Straight
 * line, eight characters at a time (no loop: the verifier walks this once per path, and
 * many parser paths reach it). `u` must be 8-byte aligned. */
static __always_inline int seal_decode(const struct steer_ufrag *u, __u64 *word, __u64 *mac)
{
	const __u64 *w = (const __u64 *)u->s;
	__u64 x0 = w[0], x1 = w[1], x2 = w[2], x3 = w[3], c0, c1, c2, c3, bad;

	if ((__u8)u->s[0] > '7' || u->s[SEAL_LEN] != 0)
		return -1;
	bad = seal_chars(&x0, SEAL_HIGH) | seal_chars(&x1, SEAL_HIGH) |
	      seal_chars(&x2, SEAL_HIGH) | seal_chars(&x3, 0x8080);
	if (bad)
		return -1;
	c0 = seal_pack(x0);
	c1 = seal_pack(x1);
	c2 = seal_pack(x2);
	c3 = ((x3 & 0x1f) << 5) | ((x3 >> 8) & 0x1f);
	/* the 130 bits: c0 << 90 | c1 << 50 | c2 << 10 | c3, top two zero ('0'-'7' first) */
	*word = (c0 << 26) | (c1 >> 14);
	*mac = (c1 << 50) | (c2 << 10) | c3;
	return 0;
}

#endif /* STEER_SEAL_H */
