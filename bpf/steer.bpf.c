/* steer.bpf.c — the relay's XDP programs.
 *
 * steer_public runs on the public interface: a client's STUN Binding Request is steered by
 * the server ufrag in its USERNAME (flow or no flow), a client's answer to a transceiver's
 * own check by its transaction id, everything else by the learned flow. steer_internal
 * runs on the internal interface: packets from a registered session socket are NATed to
 * come from the VIP. Flows and paths follow the return-routability rules below: a
 * session's answer to a check the relay saw makes a tentative flow; only the client's
 * answer to the session's own check proves its address and moves anything. Nothing else
 * crosses between the sides in either direction. Both leave through one `out:` that
 * counts the reason. Maps: steer_maps.h; types: steer_shared.h.
 */
#include <uapi/linux/bpf.h>
#include "steer_maps.h"
#include "parse.h"
#include "stun.h"
#include "rewrite.h"
#include "seal.h"
#include "source.h"

/* `steerctl explain` compiles with -DSTEER_EXPLAIN: the same program against the same
 * pinned maps, with every map write compiled out (counters go to a private map), so
 * asking changes nothing. */
#ifdef STEER_EXPLAIN
#define STEER_WRITES 0
#else
#define STEER_WRITES 1
#endif

/* RFC 7983 demultiplexing by the first payload byte. */
#define RFC7983_IS_STUN(b) ((b) <= 3)
#define RFC7983_IS_DTLS(b) ((b) >= 20 && (b) <= 63)
#define RFC7983_IS_RTP(b) ((b) >= 128 && (b) <= 191)

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* What a transceiver's UDP payload is, as far as flows and budgets are concerned. */
enum steer_kind { KIND_OTHER = 0, KIND_SUCCESS = 1, KIND_REQUEST = 2 };

static __always_inline void count(__u32 reason, __u32 bytes)
{
#ifdef STEER_EXPLAIN
	struct steer_counter *c = steer_explain_stats.lookup(&reason);
#else
	struct steer_counter *c = steer_stats.lookup(&reason);
#endif

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* bpf_ktime_get_coarse_ns(), read at most once per jiffy per CPU (see steer_clock). */
static __always_inline __u64 coarse_now(void)
{
#ifdef STEER_EXPLAIN
	return bpf_ktime_get_coarse_ns();
#else
	__u32 zero = 0;
	struct steer_clock *c = steer_clock.lookup(&zero);
	__u64 j = bpf_jiffies64();

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j) {
		c->ns = bpf_ktime_get_coarse_ns();
		c->jiffies = j;
	}
	return c->ns;
#endif
}

static __always_inline int backend_down(__u32 id)
{
	struct steer_backend *b = steer_backends.lookup(&id);

	return b && b->state == STEER_BACKEND_DOWN;
}

/* The per-session flow cap in force: the daemon's setting, within the ring's size. */
static __always_inline __u32 config_flow_cap(void)
{
	__u32 zero = 0;
	struct steer_config *cfg = steer_config.lookup(&zero);

	if (!cfg || !cfg->session_flow_cap || cfg->session_flow_cap > STEER_SESSION_FLOW_CAP)
		return STEER_SESSION_FLOW_CAP;
	return cfg->session_flow_cap;
}

static __always_inline __u32 config_ifindex(int public_side)
{
	__u32 zero = 0;
	struct steer_config *cfg = steer_config.lookup(&zero);

	if (!cfg)
		return 0;
	return public_side ? cfg->public_ifindex : cfg->internal_ifindex;
}

/* The first payload byte, or 0xff (unclassifiable) when there is none. */
static __always_inline __u32 first_byte(struct steer_pkt *pkt)
{
	__u8 *first = pkt->data + payload_off(pkt);

	if (!pkt->payload_len || (void *)(first + 1) > pkt->data_end)
		return 0xff;
	return *first;
}

/* A packet steer does not translate, headed for `other_side`: dropped if the kernel would
 * route it there (nothing crosses un-NATed, in any protocol), else left to the kernel with
 * the reason it already has. */
static __always_inline int guard_cross(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 other_side,
				 __u32 *reason)
{
	struct bpf_fib_lookup fib;
	long rc;

	if (!other_side || dst_link_scoped(pkt))
		return XDP_PASS;
	rc = fib_egress(ctx, pkt, &fib);
	if (!fib_has_egress(rc) || fib.ifindex != other_side)
		return XDP_PASS;
	if (pkt->frag)
		*reason = STEER_R_DROP_CROSS_FRAGMENT;
	else if (pkt->l4 == IPPROTO_ICMP || pkt->l4 == IPPROTO_ICMPV6)
		*reason = STEER_R_DROP_CROSS_ICMP;
	else if (pkt->payload_off)
		*reason = STEER_R_DROP_CROSS_UNNATED; /* well-formed UDP */
	else
		*reason = STEER_R_DROP_CROSS_OTHER;
	return XDP_DROP;
}

/* Steer a client's packet to a session socket: backend state, IP options, rewrite, route. */
static __always_inline int steer_to(struct xdp_md *ctx, struct steer_pkt *pkt,
				    const struct steer_addr *sock, __u32 backend_id,
				    __u32 ok_reason, __u32 *reason)
{
	if (backend_down(backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	rewrite_endpoint(pkt, STEER_DST, sock);
	*reason = ok_reason;
	return forward(ctx, pkt, reason);
}

/* Who may be a client (source.h): a packet whose source no client can have is dropped
 * before it creates anything or reaches a session without a flow. */

/* 1 if the longest prefix of steer_src_prefixes that holds `a` denies it. */
static __always_inline int src_denied(const struct steer_addr *a)
{
	struct steer_src_prefix k = {};
	struct steer_src_rule *r;

	k.prefixlen = 8 + 128;
	k.family = a->family;
	__builtin_memcpy(k.ip, a->ip, sizeof(k.ip));
	r = steer_src_prefixes.lookup(&k);
	return r && r->deny;
}

/* XDP_DROP with the reason if the packet's source `src` cannot be a client, else
 * STEER_CONTINUE. */
static __always_inline int src_check(struct xdp_md *ctx, struct steer_pkt *pkt,
				     const struct steer_addr *src, __u32 *reason)
{
	if (src_martian(src) || src_denied(src)) {
		*reason = STEER_R_DROP_SRC_BOGON;
		return XDP_DROP;
	}
	if (src_not_outside(ctx, pkt, config_ifindex(0))) {
		*reason = STEER_R_DROP_SRC_INTERNAL;
		return XDP_DROP;
	}
	return STEER_CONTINUE;
}

/* Budgets (GCRA: `tat` is the theoretical arrival time of the next packet; one is allowed
 * while tat is at most a burst ahead of now). Concurrent CPUs may over-admit by a few
 * packets (no lock). */
static __always_inline int gcra_take(__u64 *tat, __u64 now, __u64 interval, __u64 burst)
{
	__u64 t = *tat > now ? *tat : now;

	if (t - now > burst)
		return 0;
	if (STEER_WRITES)
		*tat = t + interval;
	return 1;
}

/* One packet from the relay-wide budget for returns without a proven flow. */
static __always_inline int budget_take(__u64 now)
{
	__u32 zero = 0;
	struct steer_budget *b = steer_budget.lookup(&zero);

	if (!b)
		return 1;
	return gcra_take(&b->tat, now, STEER_NOFLOW_INTERVAL_NS, STEER_NOFLOW_BURST_NS);
}

/* A session socket's own budgets, created with full bursts when first needed (NULL in
 * the explain build when there are none yet: a fresh socket would be allowed). */
static __always_inline struct steer_sock_budget *sock_budget(struct steer_addr *sock)
{
	struct steer_sock_budget fresh = {}, *b = steer_sock_budgets.lookup(sock);

	if (b || !STEER_WRITES)
		return b;
	steer_sock_budgets.insert(sock, &fresh);
	return steer_sock_budgets.lookup(sock);
}

/* Whether a Binding Request to `sock` from an address without its proven flow may pass. */
static __always_inline int check_budget_take(struct steer_addr *sock, __u64 now)
{
	struct steer_sock_budget *b = sock_budget(sock);

	return !b || gcra_take(&b->check_tat, now, STEER_CHECK_INTERVAL_NS, STEER_CHECK_BURST_NS);
}

/* Learning flows: the per-session ring and cap, shared by both sides. */

/* The socket's ring of learned clients, created empty with its first flow. */
static __always_inline struct steer_sock_flows *sock_ring(struct steer_addr *sock,
							  const struct steer_addr *vip)
{
	struct steer_sock_flows *ring = steer_sockflows.lookup(sock);
	__u32 zero = 0;

	if (ring || !STEER_WRITES)
		return ring;
	ring = steer_zero_ring.lookup(&zero);
	if (!ring)
		return 0;
	steer_sockflows.update(sock, ring);
	ring = steer_sockflows.lookup(sock);
	if (ring)
		ring->vip = *vip;
	return ring;
}

/* Write the flow the caller prepared in t->flow for `fk` (the client rk->client, the
 * socket rk->sock), creating or re-pointing it; the socket's ring of clients takes it, and
 * a socket at its cap first loses its own oldest flow. Returns the reason: learned, or
 * learned with an eviction. */
static __always_inline __u32 learn_flow(struct steer_tmp *t, struct steer_flow_key *fk,
					struct steer_rflow_key *rk)
{
	struct steer_sock_flows *ring = sock_ring(&rk->sock, &fk->vip);
	struct steer_flow *of;
	__u32 reason = STEER_R_FWD_RETURN_LEARNED;
	__u32 slot, old, cap = config_flow_cap();
	__u64 idx;

	if (ring) {
		if (STEER_WRITES)
			idx = __sync_fetch_and_add(&ring->next, 1);
		else
			idx = ring->next;
		/* the ring keeps the last STEER_SESSION_FLOW_CAP clients; the oldest of the
		 * last `cap` was learned `cap` slots ago */
		slot = idx % STEER_SESSION_FLOW_CAP;
		old = (idx - cap) % STEER_SESSION_FLOW_CAP;
		if (slot >= STEER_SESSION_FLOW_CAP || old >= STEER_SESSION_FLOW_CAP)
			return reason; /* cannot happen; for the verifier */
		if (idx >= cap) {
			t->old.client = ring->client[old];
			t->old.vip = ring->vip;
			of = steer_flows.lookup(&t->old);
			if (of && addr_eq(&of->sock, &rk->sock) &&
			    !addr_eq(&t->old.client, &fk->client)) {
				reason = STEER_R_FWD_RETURN_EVICTED;
				t->rold.sock = rk->sock;
				t->rold.client = t->old.client;
				if (STEER_WRITES) {
					steer_flows.delete(&t->old);
					steer_rflows.delete(&t->rold);
				}
			}
		}
		if (STEER_WRITES)
			ring->client[slot] = fk->client;
	}
	if (STEER_WRITES)
		steer_flows.update(fk, &t->flow);
	return reason;
}

/* Mobility: a session's return traffic follows its client to a new address.
 *
 * When a client's NAT rebinds or the client changes networks, its packets arrive from a
 * new address. Once the client has proven it receives there (it answered a check of the
 * session's, "Return-routability" below), the new address is the socket's *current path*
 * (steer_paths) and the return flows to the socket's other addresses of that family are
 * marked STEER_RFLOW_STALE. An unmodified transceiver (aioice, controlled) keeps sending
 * to the pair it nominated, i.e. to the old address; every packet to a stale address
 * except a Binding Success Response goes to the current path instead (counted
 * FWD_RETURN_MOVED). A proof at an old address makes it current again. Nothing but a
 * proof moves a path. docs/architecture.md has the state machine; steer_testkit/replay/model.py
 * mirrors it. (Here, not in a header: bcc rewrites map calls only in the main file.)
 */

/* rk->client (VIP `vip`) is proven to receive rk->sock's packets: it is the socket's
 * current path; the previous one, if another address of the same family, is stale. */
static __always_inline void path_proven(struct steer_rflow_key *rk, const struct steer_addr *vip,
					__u64 now)
{
	struct steer_rflow_key old __attribute__((aligned(8)));
	struct steer_path *p = steer_paths.lookup(&rk->sock);
	struct steer_rflow *rf = steer_rflows.lookup(rk);
	struct steer_path np = {};
	struct steer_rflow *orf;

	if (rf)
		rf->flags &= ~(STEER_RFLOW_STALE | STEER_RFLOW_ASKED);
	if (p && !addr_eq(&p->client, &rk->client)) {
		if (p->client.family == rk->client.family) {
			old.sock = rk->sock;
			old.client = p->client;
			orf = steer_rflows.lookup(&old);
			if (orf)
				orf->flags |= STEER_RFLOW_STALE;
		}
	} else if (p) {
		p->authed_ns = now;
		return;
	}
	np.client = rk->client;
	np.vip = *vip;
	np.authed_ns = now;
	steer_paths.update(&rk->sock, &np);
}

/* Return-routability: what moves a flow or a path.
 *
 * UDP sources are spoofable, and MESSAGE-INTEGRITY on a client's check proves only that
 * the sender holds *a* session's credentials (anyone can open a session), never that it
 * receives at the address it wrote. So:
 * - a client's Binding Request creates nothing but a note, `steer_asked`: "address X sent
 *   session socket S this transaction";
 * - the session's Binding Success Response to X for a noted transaction makes X's flow a
 *   *tentative* one to S (STEER_FLOW_TENTATIVE), if X has no flow of another live session:
 *   it carries X's packets up, nothing more (the socket's packets to X stay budgeted);
 * - the client's Binding Success Response to a check S itself sent to X (`steer_pending`:
 *   its transaction id went only to X, so only a receiver there can echo it) *proves* X:
 *   the flow becomes S's current one, created or re-pointed away from whatever held it,
 *   and S's return path moves to X (steer_paths, "Mobility" below). The proof is used
 *   once (the pending entry goes), so an answer replayed later moves nothing.
 * Everything else — error responses, data, a Success nobody asked for — moves nothing.
 * docs/architecture.md has the state machine and the threat model; steer_testkit/replay/model.py
 * mirrors it. (Here, not in a header: bcc rewrites map calls only in the main file.)
 */

/* 1 if the packet's flow `fk` is the current (proven) flow of `sock`. */
static __always_inline int proven_flow(struct steer_flow_key *fk,
				       const struct steer_addr *sock)
{
	struct steer_flow *f = steer_flows.lookup(fk);

	return f && addr_eq(&f->sock, sock) && !(f->flags & STEER_FLOW_TENTATIVE);
}

/* A client's Binding Request routed to `sock`: note it, so the session's answer can make a
 * tentative flow; and if the socket's return flow to this address is stale, let the
 * socket's next check go there (STEER_RFLOW_ASKED, "Mobility"). */
static __always_inline void asked_note(const struct steer_flow_key *fk, const __u8 *txid,
				       const struct steer_addr *sock, __u32 backend_id)
{
	struct steer_rflow *rf;
	struct steer_tmp *t;
	__u32 zero = 0;

	if (!STEER_WRITES)
		return;
	t = steer_tmp.lookup(&zero);
	if (!t)
		return;
	t->pk.client = fk->client;
	__builtin_memcpy(t->pk.txid, txid, sizeof(t->pk.txid));
	__builtin_memset(&t->p, 0, sizeof(t->p));
	t->p.sock = *sock;
	t->p.vip = fk->vip;
	t->p.backend_id = backend_id;
	steer_asked.update(&t->pk, &t->p);
	t->rk.sock = *sock;
	t->rk.client = fk->client;
	rf = steer_rflows.lookup(&t->rk);
	if (rf && (rf->flags & STEER_RFLOW_STALE))
		rf->flags |= STEER_RFLOW_ASKED;
}

/* Tell the daemon that fk's flow became sock's proven one (steer_learned; a full ring is
 * counted in steer_learn_lost, and the daemon's repair walk finds the flow instead). */
static __always_inline void learn_emit(const struct steer_flow_key *fk,
				       const struct steer_addr *sock, __u32 backend_id,
				       __u64 created_ns, __u32 kind)
{
	struct steer_learn_event *e;
	__u64 *lost;
	__u32 zero = 0;

	if (!STEER_WRITES)
		return;
	e = steer_learned.ringbuf_reserve(sizeof(*e));
	if (!e) {
		lost = steer_learn_lost.lookup(&zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return;
	}
	e->key = *fk;
	e->sock = *sock;
	e->backend_id = backend_id;
	e->kind = kind;
	e->pad = 0;
	e->created_ns = created_ns;
	steer_learned.ringbuf_submit(e, 0);
}

/* The client at fk->client answered check `pk` of session socket p->sock with a Success:
 * it receives there. Make the flow the socket's current one and move the socket's path. */
static __always_inline __u32 prove(struct steer_tmp *t, struct steer_flow_key *fk,
				   const struct steer_pending *p)
{
	__u32 reason = STEER_R_FWD_STUN_PROVEN;
	struct steer_flow *flow = steer_flows.lookup(fk);
	__u64 now = coarse_now();

	t->rk.sock = p->sock;
	t->rk.client = fk->client;
	/* the answer itself is routed by its transaction id, as a check is by its ufrag: it
	 * is not one of the flow's packets */
	if (flow && addr_eq(&flow->sock, &p->sock)) {
		if (flow->flags & STEER_FLOW_TENTATIVE) {
			flow->flags &= ~STEER_FLOW_TENTATIVE;
			flow->created_ns = now; /* as far as sharing it goes, a new flow */
			learn_emit(fk, &p->sock, flow->backend_id, now, STEER_LEARN_PROVEN);
		}
		flow->last_seen_ns = now;
	} else {
		__builtin_memset(&t->flow, 0, sizeof(t->flow));
		t->flow.sock = p->sock;
		t->flow.backend_id = p->backend_id;
		t->flow.created_ns = now;
		t->flow.last_seen_ns = now;
		t->fk = *fk;
		if (learn_flow(t, &t->fk, &t->rk) == STEER_R_FWD_RETURN_EVICTED)
			reason = STEER_R_FWD_STUN_PROVEN_EVICTED;
		learn_emit(&t->fk, &p->sock, p->backend_id, now,
			   flow ? STEER_LEARN_REPOINTED : STEER_LEARN_NEW);
	}
	path_proven(&t->rk, &fk->vip, now);
	steer_pending.delete(&t->pk);
	return reason;
}

/* STUN from clients. */

/* Whether a sealed ufrag, CID or transaction id may name `port` (steerctl daemon
 * --sealed-ports; by default 1024-65535: never a privileged port). */
static __always_inline int seal_port_ok(__u16 port)
{
	__u32 zero = 0;
	struct steer_config *cfg = steer_config.lookup(&zero);

	if (!cfg || !cfg->seal_port_hi)
		return port >= 1024;
	return port >= cfg->seal_port_lo && port <= cfg->seal_port_hi;
}

/* The fleet key `kid` of steer_seal_keys, if valid, derived for `backend` (seal.h). */
static __always_inline int seal_key_for(__u32 kid, __u32 backend, __u64 *b0, __u64 *b1)
{
	struct steer_seal_key *k = steer_seal_keys.lookup(&kid);

	if (!k || !k->valid)
		return -1;
	seal_backend_key(k->k0, k->k1, backend, b0, b1);
	return 0;
}

/* The one router for every seal (steer_shared.h STEER_SEAL_*): the socket and backend the
 * sealed `word` names, if its port is in the sealed range, its key id is valid, `mac`
 * holds under that key's derivation for its backend, and the backend has an address of the
 * packet's family: 0, or the reason it fails. A ufrag's and a CID's MAC is over the word
 * (`client` NULL); a sealed transaction id's tag over its 48 bits and the client's address.
 * What a failure means is each caller's: a ufrag keeps the reason, a CID and an answer
 * do not (dtls_cid, sealed_answer). */
static __always_inline __u32 seal_route(const struct steer_pkt *pkt, __u64 word, __u64 mac,
					const struct steer_addr *client, struct steer_addr *sock,
					__u32 *backend_id)
{
	struct steer_backend *b;
	__u64 b0, b1, want;

	if (!seal_port_ok(seal_port(word)))
		return STEER_R_DROP_SEAL_PORT;
	*backend_id = seal_backend(word);
	if (seal_key_for(seal_key_id(word), *backend_id, &b0, &b1))
		return STEER_R_DROP_SEAL_STALE_KEY;
	if (client)
		want = txid_tag(b0, b1, word >> STEER_SEAL_TXID_SHIFT, client);
	else
		want = siphash24_u64(b0, b1, word);
	if (want != mac)
		return STEER_R_DROP_SEAL_BAD_MAC;
	b = steer_backends.lookup(backend_id);
	if (!b || !b->addr.family)
		return STEER_R_DROP_SEAL_NO_BACKEND;
	if (b->addr.family != pkt->family)
		return STEER_R_DROP_FAMILY_MISMATCH;
	*sock = b->addr;
	sock->port = htons(seal_port(word));
	return 0;
}

/* A client's Binding Request: routed by its ufrag (registered, or sealed with a valid key),
 * whatever flow its address has. Creates no state but the note for the answer; a check
 * from an address without the session's proven flow comes out of the session's budget. */
static __always_inline int stun_request(struct xdp_md *ctx, struct steer_pkt *pkt,
					struct steer_flow_key *fk,
					const struct steer_stun_hdr *h, __u32 *reason)
{
	struct steer_ufrag ufrag __attribute__((aligned(8))) = {}; /* seal_decode() */
	struct steer_session *s;
	struct steer_addr sock;
	__u64 word, mac;
	__u32 backend_id, ok = STEER_R_FWD_STUN;

	*reason = stun_server_ufrag(ctx, pkt, h, &ufrag);
	if (*reason)
		return XDP_DROP;
	s = steer_sessions.lookup(&ufrag);
	if (s) {
		if (s->sock.family != pkt->family) {
			*reason = STEER_R_DROP_FAMILY_MISMATCH;
			return XDP_DROP;
		}
		sock = s->sock;
		backend_id = s->backend_id;
	} else {
		*reason = STEER_R_DROP_STUN_UNKNOWN_UFRAG;
		if (seal_decode(&ufrag, &word, &mac))
			return XDP_DROP;
		*reason = seal_route(pkt, word, mac, 0, &sock, &backend_id);
		if (*reason)
			return XDP_DROP;
		ok = STEER_R_FWD_STUN_SEALED;
	}
	if (!proven_flow(fk, &sock) && !check_budget_take(&sock, coarse_now())) {
		*reason = STEER_R_DROP_CHECK_BUDGET;
		return XDP_DROP;
	}
	asked_note(fk, h->txid, &sock, backend_id);
	return steer_to(ctx, pkt, &sock, backend_id, ok, reason);
}

/* A client's answer to a check whose transaction id is sealed (seal.h txid_tag): into *p
 * the socket it names, if seal_route takes its tag for this client address and a live
 * session of that backend, on this VIP, owns the socket; 0, or -1 (whatever failed: an
 * answer no seal vouches for is just not an answer). What lets any relay of a fleet check
 * a proof, whichever relay the check left through. */
static __always_inline int sealed_answer(const struct steer_pkt *pkt,
					 const struct steer_flow_key *fk,
					 const struct steer_stun_hdr *h, struct steer_pending *p)
{
	struct steer_session *s;
	__u64 word = 0, tag = 0;
	__u32 backend_id;
	int i;

#pragma unroll
	for (i = 0; i < 6; i++) {
		word = (word << 8) | h->txid[i];
		tag = (tag << 8) | h->txid[6 + i];
	}
	if (seal_route(pkt, word << STEER_SEAL_TXID_SHIFT, tag, &fk->client, &p->sock,
		       &backend_id))
		return -1;
	s = steer_socks.lookup(&p->sock);
	if (!s || s->backend_id != backend_id || !addr_eq(&s->vip, &fk->vip))
		return -1;
	p->vip = fk->vip;
	p->backend_id = backend_id;
	return 0;
}

/* A client's Binding response: to the session socket whose check it answers, if a live
 * session socket sent one with this transaction id to this address from this VIP (the
 * relay remembered it, or its id is sealed). A Success proves the address (see
 * "Return-routability"). */
static __always_inline int stun_answer(struct xdp_md *ctx, struct steer_pkt *pkt,
				       struct steer_flow_key *fk,
				       const struct steer_stun_hdr *h, __u32 *reason)
{
	struct steer_pending *p;
	struct steer_tmp *t;
	__u32 zero = 0, ok = STEER_R_FWD_STUN_ANSWER;

	t = steer_tmp.lookup(&zero);
	if (!t)
		return STEER_CONTINUE;
	t->pk.client = fk->client;
	__builtin_memcpy(t->pk.txid, h->txid, sizeof(t->pk.txid));
	p = steer_pending.lookup(&t->pk);
	if (p && addr_eq(&p->vip, &fk->vip) && steer_socks.lookup(&p->sock))
		t->p = *p;
	else if (sealed_answer(pkt, fk, h, &t->p))
		return STEER_CONTINUE;
	if (h->type == htons(STUN_BINDING_SUCCESS)) {
		ok = STEER_R_FWD_STUN_PROVEN;
		if (STEER_WRITES)
			ok = prove(t, fk, &t->p);
	}
	return steer_to(ctx, pkt, &t->p.sock, t->p.backend_id, ok, reason);
}

/* STUN to a VIP. Binding Requests and answers to a transceiver's checks are decided here;
 * anything else continues to the flow lookup, with *stun_reason what it gets if the
 * address has no flow. */
static __always_inline int steer_stun(struct xdp_md *ctx, struct steer_pkt *pkt,
				      struct steer_flow_key *fk, __u32 *reason,
				      __u32 *stun_reason)
{
	struct steer_stun_hdr h;
	__u16 type;

	if (stun_header(ctx, pkt, &h)) {
		*stun_reason = STEER_R_DROP_STUN_MALFORMED;
		return STEER_CONTINUE;
	}
	*stun_reason = STEER_R_DROP_STUN_NOT_REQUEST;
	type = ntohs(h.type);
	if (type == STUN_BINDING_REQUEST)
		return stun_request(ctx, pkt, fk, &h, reason);
	if (type == STUN_BINDING_SUCCESS || type == STUN_BINDING_ERROR)
		return stun_answer(ctx, pkt, fk, &h, reason);
	return STEER_CONTINUE;
}

/* Connection hints: SRTP/SRTCP. The relay learns the SSRCs a client sends on a proven
 * flow ("Return-routability"), never from a packet that arrived on no flow or on a
 * tentative one, at most STEER_SESSION_SSRC_CAP
 * per session socket (its own oldest goes first), first come first served between live
 * sessions. RTP/RTCP from an address with no flow whose SSRC a live session owns goes to
 * that session's socket (fwd_rtp_hint), creating nothing: the SRTP authentication tag is
 * the transceiver's to check, as a ufrag's MESSAGE-INTEGRITY is. steer_testkit/replay/model.py
 * mirrors this. */

/* 0 and *ssrc (as on the wire) for RTP (RFC 3550: SSRC at byte 8) or RTCP (payload type
 * 192..223 in byte 1: the sender's SSRC at byte 4); -1 if too short. */
static __always_inline int rtp_ssrc(struct xdp_md *ctx, const struct steer_pkt *pkt, __u32 *ssrc)
{
	__u8 h[8];
	__u32 off = 4;

	if (pkt->payload_len < 8 || bpf_xdp_load_bytes(ctx, pkt->payload_off, h, sizeof(h)))
		return -1;
	if (h[1] < 192 || h[1] > 223) {
		if (pkt->payload_len < 12)
			return -1;
		off = 8;
	}
	return bpf_xdp_load_bytes(ctx, pkt->payload_off + off, ssrc, sizeof(*ssrc)) ? -1 : 0;
}

/* Whether a flow's n-th client packet is looked at for its SSRC (steer_shared.h). */
static __always_inline int ssrc_sampled(__u64 n)
{
	__u64 every = n < STEER_SSRC_YOUNG ? STEER_SSRC_SAMPLE : STEER_SSRC_SAMPLE_OLD;

	return (n & (every - 1)) == 1;
}

/* A client's RTP/RTCP on its proven flow: remember its SSRC for the flow's socket. */
static __always_inline void ssrc_learn(struct xdp_md *ctx, const struct steer_pkt *pkt,
				       const struct steer_flow *flow)
{
	struct steer_ssrc_owner owner = {}, *o;
	struct steer_ssrc_ring zero = {}, *ring;
	__u32 ssrc, old, slot;

	if (rtp_ssrc(ctx, pkt, &ssrc))
		return;
	o = steer_ssrcs.lookup(&ssrc);
	if (o && (addr_eq(&o->sock, &flow->sock) || steer_socks.lookup(&o->sock)))
		return; /* known here, or a live session's: the first owner keeps it */
	owner.sock = flow->sock;
	owner.backend_id = flow->backend_id;
	ring = steer_ssrc_rings.lookup(&owner.sock);
	if (!ring) {
		steer_ssrc_rings.update(&owner.sock, &zero);
		ring = steer_ssrc_rings.lookup(&owner.sock);
		if (!ring)
			return;
	}
	slot = ring->next & (STEER_SESSION_SSRC_CAP - 1);
	if (ring->next >= STEER_SESSION_SSRC_CAP) {
		old = ring->ssrc[slot];
		o = steer_ssrcs.lookup(&old);
		if (o && addr_eq(&o->sock, &owner.sock))
			steer_ssrcs.delete(&old);
	}
	ring->ssrc[slot] = ssrc;
	ring->next++;
	steer_ssrcs.update(&ssrc, &owner);
}

/* RTP/RTCP to a VIP from an address with no flow: to the live session that owns its
 * SSRC, or STEER_CONTINUE. */
static __always_inline int ssrc_hint(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 *reason)
{
	struct steer_ssrc_owner *o;
	struct steer_session *s;
	struct steer_config *cfg;
	struct steer_addr sock;
	__u32 ssrc, zero = 0;

	cfg = steer_config.lookup(&zero);
	if ((cfg && (cfg->flags & STEER_CONFIG_NO_HINTS)) || rtp_ssrc(ctx, pkt, &ssrc))
		return STEER_CONTINUE;
	o = steer_ssrcs.lookup(&ssrc);
	if (!o)
		return STEER_CONTINUE;
	sock = o->sock;
	s = steer_socks.lookup(&sock);
	if (!s || sock.family != pkt->family)
		return STEER_CONTINUE;
	return steer_to(ctx, pkt, &sock, s->backend_id, STEER_R_FWD_RTP_HINT, reason);
}

/* Connection hints: DTLS connection IDs (steer_shared.h STEER_CID_*). A tls12_cid record
 * (content type 25) with no flow, from any address: to the socket its CID names if the
 * check bits hold under a valid key (seal_route, as a sealed ufrag) and a live session
 * there registered the CID's nonce (STEER_SESSION_CID), else dropped with a reason: a CID
 * outlives neither its session nor its port. Creates nothing; the record's own MAC is the
 * transceiver's to check. */
static __always_inline int dtls_cid(struct xdp_md *ctx, struct steer_pkt *pkt, __u32 *reason)
{
	struct steer_session *s;
	struct steer_addr sock;
	__u8 h[STEER_CID_HDR_LEN];
	__u64 word = 0, mac = 0;
	__u32 backend_id, len;
	int i;

	*reason = STEER_R_DROP_DTLS_CID_MALFORMED;
	if (pkt->payload_len < STEER_CID_HDR_LEN ||
	    bpf_xdp_load_bytes(ctx, pkt->payload_off, h, sizeof(h)))
		return XDP_DROP;
	len = ((__u32)h[STEER_CID_HDR_LEN - 2] << 8) | h[STEER_CID_HDR_LEN - 1];
	if (STEER_CID_HDR_LEN + len > pkt->payload_len)
		return XDP_DROP;
#pragma unroll
	for (i = 0; i < 8; i++) {
		word = (word << 8) | h[STEER_CID_OFF + i];
		mac = (mac << 8) | h[STEER_CID_OFF + 8 + i];
	}
	/* every seal failure of a CID is one reason: the CID counters say what the hint path
	 * drops (docs/architecture.md); the SEAL_* reasons stay the first checks' */
	*reason = STEER_R_DROP_DTLS_CID_FORGED;
	if (seal_route(pkt, word, mac, 0, &sock, &backend_id))
		return XDP_DROP;
	s = steer_socks.lookup(&sock);
	if (!s || s->backend_id != backend_id || !(s->flags & STEER_SESSION_CID) ||
	    s->cid_nonce != seal_nonce(word)) {
		*reason = STEER_R_DROP_DTLS_CID_DEAD;
		return XDP_DROP;
	}
	return steer_to(ctx, pkt, &sock, backend_id, STEER_R_FWD_DTLS_CID, reason);
}

/* No flow, to a VIP: what the first byte says it is decides the drop reason. */
static __always_inline __u32 no_flow_reason(__u32 b, __u32 stun_reason)
{
	if (RFC7983_IS_STUN(b))
		return stun_reason;
	if (RFC7983_IS_DTLS(b))
		return STEER_R_DROP_DTLS_NO_FLOW;
	if (RFC7983_IS_RTP(b))
		return STEER_R_DROP_RTP_NO_FLOW;
	return STEER_R_DROP_UNCLASSIFIED;
}

/* A client's packet on an established flow (IP options already refused): counters,
 * connection hints, the rewrite, and the next hop remembered in the flow (a FIB lookup
 * once it is stale). */
static __always_inline int flow_forward(struct xdp_md *ctx, struct steer_pkt *pkt,
					struct steer_flow *flow, __u32 b, __u32 *reason)
{
	struct bpf_fib_lookup fib;
	__u64 now;
	long rc;

	if (backend_down(flow->backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	now = coarse_now();
	if (STEER_WRITES) {
		flow->last_seen_ns = now;
		flow->packets++;
		flow->bytes += pkt->len;
	}
	if (STEER_WRITES && RFC7983_IS_RTP(b) && !(flow->flags & STEER_FLOW_TENTATIVE) &&
	    ssrc_sampled(flow->packets))
		ssrc_learn(ctx, pkt, flow); /* connection hints, from proven flows only */
	rewrite_endpoint(pkt, STEER_DST, &flow->sock);
	*reason = STEER_R_FWD_FLOW;
	if (nexthop_fresh(&flow->nh, now)) /* straight from the flow entry */
		return send_to(ctx, pkt, flow->nh.ifindex, flow->nh.dmac, flow->nh.smac, reason);
	rc = fib_route(ctx, pkt, &fib);
	if (STEER_WRITES)
		nexthop_store(&flow->nh, &fib, rc, now);
	return fib_send(ctx, pkt, &fib, rc, reason);
}

int steer_public(struct xdp_md *ctx)
{
	struct steer_pkt pkt = {};
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_flow *flow;
	__u32 reason = STEER_R_UNUSED_0, stun_reason = STEER_R_DROP_UNCLASSIFIED, b;
	int action;

	if (parse_plain_v4(ctx, &pkt)) {
		/* the common case, all IPv4 for the compiler: this copy of flow_forward has no
		 * IPv6 or VLAN branches */
		pkt_addr(&pkt, STEER_SRC, &fk.client);
		pkt_addr(&pkt, STEER_DST, &fk.vip);
		b = first_byte(&pkt);
		if (RFC7983_IS_STUN(b))
			goto stun;
		flow = steer_flows.lookup(&fk);
		if (flow) {
			action = flow_forward(ctx, &pkt, flow, b, &reason);
			goto out;
		}
		goto no_flow;
	}
	action = parse_packet(ctx, &pkt, &reason);
	if (action != STEER_CONTINUE) {
		if (pkt.family)
			action = guard_cross(ctx, &pkt, config_ifindex(0), &reason);
		goto out;
	}

	pkt_addr(&pkt, STEER_SRC, &fk.client);
	pkt_addr(&pkt, STEER_DST, &fk.vip);
	b = first_byte(&pkt);
stun:
	if (RFC7983_IS_STUN(b) && steer_vips.lookup(&fk.vip)) {
		if (pkt.opts) {
			reason = STEER_R_DROP_IP_OPTIONS;
			action = XDP_DROP;
			goto out;
		}
		action = src_check(ctx, &pkt, &fk.client, &reason);
		if (action != STEER_CONTINUE)
			goto out;
		action = steer_stun(ctx, &pkt, &fk, &reason, &stun_reason);
		if (action != STEER_CONTINUE)
			goto out;
	}
	flow = steer_flows.lookup(&fk);
	if (flow) {
		if (pkt.opts) {
			reason = STEER_R_DROP_IP_OPTIONS;
			action = XDP_DROP;
		} else {
			action = flow_forward(ctx, &pkt, flow, b, &reason);
		}
		goto out;
	}
no_flow:
	if (!steer_vips.lookup(&fk.vip)) {
		reason = STEER_R_PASS_NOT_STEERED;
		action = guard_cross(ctx, &pkt, config_ifindex(0), &reason);
		goto out;
	}
	/* STUN to a VIP had its source checked on the way in (the stun: block): one check,
	 * one FIB lookup, per packet */
	if (!pkt.opts && !RFC7983_IS_STUN(b)) {
		action = src_check(ctx, &pkt, &fk.client, &reason);
		if (action != STEER_CONTINUE)
			goto out;
	}
	if (!pkt.opts && RFC7983_IS_RTP(b)) {
		action = ssrc_hint(ctx, &pkt, &reason); /* connection hints */
		if (action != STEER_CONTINUE)
			goto out;
	}
	if (!pkt.opts && b == 25) {
		action = dtls_cid(ctx, &pkt, &reason); /* connection hints: DTLS CIDs */
		goto out;
	}
	reason = pkt.opts ? STEER_R_DROP_IP_OPTIONS : no_flow_reason(b, stun_reason);
	action = XDP_DROP;
out:
	count(reason, pkt.len);
	return action;
}

/* Transceivers' packets (steer_internal). */

/* STUN class of a transceiver's payload: a Binding Success Response or Request with a
 * well-formed header (its transaction id in *h), or anything else. */
static __always_inline int stun_kind(struct xdp_md *ctx, struct steer_pkt *pkt,
				     struct steer_stun_hdr *h)
{
	if (!RFC7983_IS_STUN(first_byte(pkt)) || stun_header(ctx, pkt, h))
		return KIND_OTHER;
	if (h->type == htons(STUN_BINDING_SUCCESS))
		return KIND_SUCCESS;
	if (h->type == htons(STUN_BINDING_REQUEST))
		return KIND_REQUEST;
	return KIND_OTHER;
}

/* A packet from rk->sock to rk->client, whose return flow `rf` is stale: if the socket's
 * current path is another address of the same family and the packet is neither a Binding
 * Success Response nor the one check that a client back at this address asked for
 * (STEER_RFLOW_ASKED, used up here), rewrite its destination to the current path and
 * return 1 (rk->client is then the current address); else 0. */
static __always_inline int path_follow(struct xdp_md *ctx, struct steer_pkt *pkt,
				       struct steer_rflow_key *rk, struct steer_rflow *rf,
				       int kind, __u64 now)
{
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_path *p = steer_paths.lookup(&rk->sock);
	struct steer_flow *f;

	if (!p || kind == KIND_SUCCESS || p->client.family != pkt->family ||
	    addr_eq(&p->client, &rk->client))
		return 0;
	if (kind == KIND_REQUEST && (rf->flags & STEER_RFLOW_ASKED)) {
		if (STEER_WRITES)
			rf->flags &= ~STEER_RFLOW_ASKED;
		return 0;
	}
	/* the transceiver still uses the old address: keep its flow from idling out, so
	 * the stale mark lives as long as the transceiver's use of it */
	fk.client = rk->client;
	fk.vip = rf->vip;
	f = steer_flows.lookup(&fk);
	if (f && STEER_WRITES)
		f->last_seen_ns = now;
	rewrite_endpoint(pkt, STEER_DST, &p->client);
	rk->client = p->client;
	return 1;
}

/* Where a return packet leaves from and as what. */
struct steer_route {
	struct bpf_fib_lookup fib;
	long rc;                        /* BPF_FIB_LKUP_RET_NOT_FWDED unless looked up */
	const struct steer_nexthop *nh; /* the return flow's, when fresh */
	struct steer_addr vip;
	__u32 backend_id;
};

/* 1 if `flow` is the proven flow of `sock` (the return's free path): the packet is counted
 * on it and refreshes it. Both return paths ask here. */
static __always_inline int return_on_flow(struct steer_flow *flow, const struct steer_addr *sock,
					  __u32 len, __u64 now)
{
	if (!flow || !addr_eq(&flow->sock, sock) || (flow->flags & STEER_FLOW_TENTATIVE))
		return 0;
	if (STEER_WRITES) {
		flow->last_seen_ns = now;
		flow->rpackets++;
		flow->rbytes += len;
	}
	return 1;
}

/* The end of every forwarded return: the source NATed to the VIP, out by the remembered
 * next hop when there is one, else by the FIB's answer. */
static __always_inline int return_send(struct xdp_md *ctx, struct steer_pkt *pkt,
				       const struct steer_addr *vip, const struct steer_route *rt,
				       __u32 *reason)
{
	rewrite_endpoint(pkt, STEER_SRC, vip);
	if (rt->nh)
		return send_to(ctx, pkt, rt->nh->ifindex, rt->nh->dmac, rt->nh->smac, reason);
	return fib_send(ctx, pkt, &rt->fib, rt->rc, reason);
}

/* The common return: a plain IPv4 packet that is not STUN, on a return flow `rf` that is
 * current (not stale) with a fresh next hop. Inlined only under parse_plain_v4, so the
 * compiler builds this copy for IPv4 alone (flow_forward's twin). The same verdicts as the
 * general path (return_general); STEER_CONTINUE hands a packet whose client flow is not
 * this socket's proven one to it. */
static __always_inline int return_forward(struct xdp_md *ctx, struct steer_pkt *pkt,
					  struct steer_rflow_key *rk, struct steer_rflow *rf,
					  __u64 now, __u32 *reason)
{
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_route rt;

	if (backend_down(rf->backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	fk.client = rk->client;
	fk.vip = rf->vip;
	if (!return_on_flow(steer_flows.lookup(&fk), &rk->sock, pkt->len, now))
		return STEER_CONTINUE;
	rt.nh = &rf->nh;
	rt.rc = BPF_FIB_LKUP_RET_NOT_FWDED; /* not read: the next hop is fresh */
	*reason = STEER_R_FWD_RETURN;
	return return_send(ctx, pkt, &fk.vip, &rt, reason);
}

/* A session's Binding Success Response to rk->client, which has no proven flow of the
 * session: a tentative flow if that address sent this session the check it answers
 * (steer_asked) and holds no flow of another live session. Returns the reason. */
static __always_inline __u32 answer_learn(struct steer_tmp *t, struct steer_flow_key *fk,
					  struct steer_rflow_key *rk, struct steer_flow *flow,
					  const struct steer_stun_hdr *h, __u32 backend_id,
					  __u64 now, __u32 len)
{
	struct steer_pending *a;

	t->pk.client = rk->client;
	__builtin_memcpy(t->pk.txid, h->txid, sizeof(t->pk.txid));
	a = steer_asked.lookup(&t->pk);
	if (!a || !addr_eq(&a->sock, &rk->sock) || !addr_eq(&a->vip, &fk->vip))
		return STEER_R_FWD_RETURN_UNASKED;
	if (flow && (addr_eq(&flow->sock, &rk->sock) || steer_socks.lookup(&flow->sock)))
		return STEER_R_FWD_RETURN_NO_FLOW; /* its own tentative flow, or a live session's */
	__builtin_memset(&t->flow, 0, sizeof(t->flow));
	t->flow.sock = rk->sock;
	t->flow.backend_id = backend_id;
	t->flow.flags = STEER_FLOW_TENTATIVE;
	t->flow.created_ns = now;
	t->flow.last_seen_ns = now;
	t->flow.rpackets = 1;
	t->flow.rbytes = len;
	return learn_flow(t, fk, rk);
}

/* A packet from rk->sock to an address without its proven flow: 0 if the socket's own
 * budget allows it and, unless it is one of the socket's own checks (the proofs that
 * return-routability needs must not starve), the relay-wide one too; else the reason. */
static __always_inline __u32 return_budget(struct steer_addr *sock, int kind, __u64 now)
{
	struct steer_sock_budget *b = sock_budget(sock);

	if (b && !gcra_take(&b->return_tat, now, STEER_SNOFLOW_INTERVAL_NS, STEER_SNOFLOW_BURST_NS))
		return STEER_R_DROP_SESSION_BUDGET;
	if (kind != KIND_REQUEST && !budget_take(now))
		return STEER_R_DROP_NO_FLOW_BUDGET;
	return 0;
}

/* What a packet from rk->sock to fk->client (from VIP fk->vip) is: on the socket's proven
 * flow (refreshed), or budgeted — a Success then perhaps making a tentative flow. */
static __always_inline __u32 return_classify(struct steer_pkt *pkt, struct steer_flow_key *fk,
					     struct steer_rflow_key *rk,
					     const struct steer_stun_hdr *h, int kind,
					     __u32 backend_id, __u64 now)
{
	struct steer_flow *flow = steer_flows.lookup(fk);
	struct steer_tmp *t;
	__u32 zero = 0, r;

	if (return_on_flow(flow, &rk->sock, pkt->len, now))
		return STEER_R_FWD_RETURN;
	r = return_budget(&rk->sock, kind, now);
	if (r)
		return r;
	if (kind != KIND_SUCCESS)
		return STEER_R_FWD_RETURN_NO_FLOW;
	t = steer_tmp.lookup(&zero);
	if (!t)
		return STEER_R_FWD_RETURN_NO_FLOW;
	return answer_learn(t, fk, rk, flow, h, backend_id, now, pkt->len);
}

/* Route a packet from rk->sock to rk->client: by its return flow `rf` (whose next hop, when
 * fresh, saves the lookup) or by the FIB and the socket's session. STEER_CONTINUE with *rt
 * filled, or the verdict and its reason: UDP not headed out of the public side is none of
 * the relay's business; headed out but not from a session socket, it is dropped. */
static __always_inline int return_route(struct xdp_md *ctx, struct steer_pkt *pkt,
					struct steer_rflow_key *rk, struct steer_rflow *rf,
					__u64 now, struct steer_route *rt, __u32 *reason)
{
	struct steer_session *s;
	__u32 public_if;

	rt->nh = 0;
	rt->rc = BPF_FIB_LKUP_RET_NOT_FWDED;
	if (rf && nexthop_fresh(&rf->nh, now)) {
		rt->nh = &rf->nh;
		rt->vip = rf->vip;
		rt->backend_id = rf->backend_id;
		return STEER_CONTINUE;
	}
	/* the route does not depend on the source we are about to rewrite; its size does not
	 * matter either: a rewritten packet too big for the route is dropped */
	rt->rc = fib_egress(ctx, pkt, &rt->fib);
	public_if = config_ifindex(1);
	if (!fib_has_egress(rt->rc)) {
		*reason = STEER_R_PASS_FIB_FAILED;
		return XDP_PASS;
	}
	if (!public_if || rt->fib.ifindex != public_if) {
		*reason = STEER_R_PASS_NOT_STEERED;
		return XDP_PASS;
	}
	if (rf) {
		rt->vip = rf->vip;
		rt->backend_id = rf->backend_id;
		if (STEER_WRITES)
			nexthop_store(&rf->nh, &rt->fib, rt->rc, now);
		return STEER_CONTINUE;
	}
	s = steer_socks.lookup(&rk->sock);
	if (!s) {
		*reason = STEER_R_DROP_CROSS_UNNATED;
		return XDP_DROP;
	}
	if (s->vip.family != pkt->family) {
		*reason = STEER_R_DROP_FAMILY_MISMATCH;
		return XDP_DROP;
	}
	rt->vip = s->vip;
	rt->backend_id = s->backend_id;
	return STEER_CONTINUE;
}

/* What a return leaves behind: the return flow of a socket that now holds the client's
 * flow (tentative or proven), and the socket's own checks, so the client's answers find
 * their way back (and can prove the address). */
static __always_inline void return_remember(struct steer_rflow_key *rk,
					    const struct steer_rflow *rf,
					    const struct steer_route *rt,
					    const struct steer_stun_hdr *h, int kind, __u32 reason,
					    __u64 now)
{
	struct steer_tmp *t;
	__u32 zero = 0;
	int flowed = reason == STEER_R_FWD_RETURN || reason == STEER_R_FWD_RETURN_LEARNED ||
		     reason == STEER_R_FWD_RETURN_EVICTED;

	if (!STEER_WRITES || (!(flowed && !rf) && kind != KIND_REQUEST))
		return;
	t = steer_tmp.lookup(&zero);
	if (!t)
		return;
	if (flowed && !rf) {
		__builtin_memset(&t->rflow, 0, sizeof(t->rflow));
		t->rflow.vip = rt->vip;
		t->rflow.backend_id = rt->backend_id;
		nexthop_store(&t->rflow.nh, &rt->fib, rt->rc, now);
		steer_rflows.update(rk, &t->rflow);
	}
	if (kind == KIND_REQUEST) {
		t->pk.client = rk->client;
		__builtin_memcpy(t->pk.txid, h->txid, sizeof(t->pk.txid));
		__builtin_memset(&t->p, 0, sizeof(t->p));
		t->p.sock = rk->sock;
		t->p.vip = rt->vip;
		t->p.backend_id = rt->backend_id;
		steer_pending.update(&t->pk, &t->p);
	}
}

/* A transceiver's packet, parsed: its return flow key (socket, client), the time, and the
 * return flow if there is one. */
static __always_inline struct steer_rflow *return_lookup(struct steer_pkt *pkt,
							 struct steer_rflow_key *rk, __u64 *now)
{
	pkt_addr(pkt, STEER_SRC, &rk->sock);
	pkt_addr(pkt, STEER_DST, &rk->client);
	*now = coarse_now();
	return steer_rflows.lookup(rk);
}

/* What a return on its way out to rk->client (from VIP rt->vip) is and leaves behind
 * ("Return-routability"): free on the socket's proven flow; else budgeted, a Success
 * perhaps making a tentative flow; a Binding Request remembered. The reason; a budget
 * drop when over. */
static __always_inline __u32 return_account(struct xdp_md *ctx, struct steer_pkt *pkt,
					    struct steer_rflow_key *rk,
					    const struct steer_rflow *rf,
					    const struct steer_route *rt, __u64 now)
{
	struct steer_flow_key fk __attribute__((aligned(8)));
	struct steer_stun_hdr h;
	__u32 reason;
	int kind;

	fk.client = rk->client;
	fk.vip = rt->vip;
	kind = stun_kind(ctx, pkt, &h);
	reason = return_classify(pkt, &fk, rk, &h, kind, rt->backend_id, now);
	if (reason != STEER_R_DROP_SESSION_BUDGET && reason != STEER_R_DROP_NO_FLOW_BUDGET)
		return_remember(rk, rf, rt, &h, kind, reason, now);
	return reason;
}

/* Any return the fast path did not take: follow a client that moved ("Mobility"), route,
 * refuse what may not leave, account for it, NAT and send. */
static __always_inline int return_general(struct xdp_md *ctx, struct steer_pkt *pkt,
					  struct steer_rflow_key *rk, struct steer_rflow *rf,
					  __u64 now, __u32 *reason)
{
	struct steer_stun_hdr h;
	struct steer_route rt;
	int action, moved;

	/* the client moved since: to its current address */
	moved = rf && (rf->flags & STEER_RFLOW_STALE) &&
		path_follow(ctx, pkt, rk, rf, stun_kind(ctx, pkt, &h), now);
	if (moved)
		rf = steer_rflows.lookup(rk);
	action = return_route(ctx, pkt, rk, rf, now, &rt, reason);
	if (action != STEER_CONTINUE)
		return action;
	if (backend_down(rt.backend_id)) {
		*reason = STEER_R_DROP_BACKEND_DOWN;
		return XDP_DROP;
	}
	if (pkt->opts) {
		*reason = STEER_R_DROP_IP_OPTIONS;
		return XDP_DROP;
	}
	*reason = return_account(ctx, pkt, rk, rf, &rt, now);
	if (*reason == STEER_R_DROP_SESSION_BUDGET || *reason == STEER_R_DROP_NO_FLOW_BUDGET)
		return XDP_DROP;
	if (moved && *reason == STEER_R_FWD_RETURN)
		*reason = STEER_R_FWD_RETURN_MOVED;
	return return_send(ctx, pkt, &rt.vip, &rt, reason);
}

/* A transceiver's packet on its way to the public side: NAT its source to the VIP. What
 * it may learn and what it costs follow "Return-routability": on the socket's proven flow
 * it is free; to any other address it comes out of the session's budget (and, but for
 * the session's own checks, the relay's), and a Binding Success Response to an address
 * that checked this session may make a tentative flow. A Binding Request is remembered
 * so the client's answer finds its way back. Packets to a stale address go to the
 * current path ("Mobility"). Anything headed out that is not from a session socket or not
 * UDP would leave with a transceiver's address, so it is dropped. A plain IPv4 packet on
 * a current return flow takes return_forward; the rest, and what it hands back,
 * return_general. */
int steer_internal(struct xdp_md *ctx)
{
	struct steer_pkt pkt = {};
	struct steer_rflow_key rk __attribute__((aligned(8)));
	struct steer_rflow *rf = 0;
	__u32 reason = STEER_R_UNUSED_0;
	__u64 now = 0;
	int action;

	if (parse_plain_v4(ctx, &pkt)) {
		/* this branch is IPv4 for the compiler: its return_forward has no IPv6 code */
		rf = return_lookup(&pkt, &rk, &now);
		action = STEER_CONTINUE;
		if (rf && !(rf->flags & STEER_RFLOW_STALE) && nexthop_fresh(&rf->nh, now) &&
		    !RFC7983_IS_STUN(first_byte(&pkt)))
			action = return_forward(ctx, &pkt, &rk, rf, now, &reason);
	} else {
		action = parse_packet(ctx, &pkt, &reason);
		if (action == STEER_CONTINUE)
			rf = return_lookup(&pkt, &rk, &now);
		else if (pkt.family)
			action = guard_cross(ctx, &pkt, config_ifindex(1), &reason);
	}
	if (action == STEER_CONTINUE)
		action = return_general(ctx, &pkt, &rk, rf, now, &reason);
	count(reason, pkt.len);
	return action;
}
