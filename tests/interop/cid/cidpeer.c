/* cidpeer: a DTLS 1.2 client and server with RFC 9146 connection IDs (mbedTLS built with
 * MBEDTLS_SSL_DTLS_CONNECTION_ID, scripts/cidpeer.sh), for steer's CID routing tests.
 *
 * As a WebRTC device would, the client first sends a STUN Binding Request carrying the
 * server's ufrag, signed with its password (the relay routes it by ufrag); the server
 * checks MESSAGE-INTEGRITY and answers with a Binding Success Response (from which the
 * relay learns the client's flow). Then the DTLS handshake, each side choosing the CID it
 * receives: the server's is steer's routing CID (steer_common/cid.py, given as hex). The
 * client then sends numbered messages that the server echoes. The server's socket is not
 * connected: when an authenticated record arrives from a new address, replies go there
 * (RFC 9146 §6). Both print one JSON object per event on stdout.
 *
 *   cidpeer server BIND_IP PORT UFRAG PWD CID_HEX SECONDS
 *   cidpeer client VIP PORT UFRAG PWD CID_HEX COUNT INTERVAL_MS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mbedtls/certs.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/md.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/pk.h"
#include "mbedtls/ssl.h"
#include "mbedtls/timing.h"
#include "mbedtls/x509_crt.h"

#define STUN_COOKIE 0x2112A442u
#define ATTR_USERNAME 0x0006
#define ATTR_INTEGRITY 0x0008
#define ATTR_XOR_MAPPED 0x0020

struct peer {
	int fd;
	int server;
	struct sockaddr_in to;   /* where records go */
	struct sockaddr_in from; /* where the last datagram came from */
	const char *ufrag, *pwd;
	int stun_answered;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *addr_str(const struct sockaddr_in *a)
{
	static char buf[2][64];
	static int i;
	char ip[INET_ADDRSTRLEN];

	i ^= 1;
	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
	snprintf(buf[i], sizeof(buf[i]), "%s:%u", ip, ntohs(a->sin_port));
	return buf[i];
}

static int same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
	return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

static void put16(unsigned char *p, unsigned v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* Append MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message with its length
 * covering the attribute. Returns the new length. */
static size_t add_integrity(unsigned char *m, size_t len, const char *pwd)
{
	put16(m + 2, len - 20 + 24);
	mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1), (const unsigned char *)pwd,
			strlen(pwd), m, len, m + len + 4);
	put16(m + len, ATTR_INTEGRITY);
	put16(m + len + 2, 20);
	return len + 24;
}

/* Does the message's MESSAGE-INTEGRITY check out under `pwd`? *user: its USERNAME. */
static int check_integrity(unsigned char *m, size_t len, const char *pwd, char *user,
			   size_t user_size)
{
	unsigned char mac[20], saved[2];
	size_t pos = 20;
	int ok = 0;

	user[0] = 0;
	while (pos + 4 <= len) {
		unsigned type = get16(m + pos), alen = get16(m + pos + 2);
		if (pos + 4 + alen > len)
			return 0;
		if (type == ATTR_USERNAME && alen < user_size) {
			memcpy(user, m + pos + 4, alen);
			user[alen] = 0;
		}
		if (type == ATTR_INTEGRITY && alen == 20) {
			memcpy(saved, m + 2, 2);
			put16(m + 2, pos - 20 + 24);
			mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1),
					(const unsigned char *)pwd, strlen(pwd), m, pos, mac);
			memcpy(m + 2, saved, 2);
			ok = !memcmp(mac, m + pos + 4, 20);
			break;
		}
		pos += 4 + ((alen + 3) & ~3u);
	}
	return ok;
}

/* The server's STUN: answer a Binding Request for our ufrag signed with our password. */
static void stun_server(struct peer *p, unsigned char *m, size_t len)
{
	unsigned char r[64];
	char user[128];
	size_t ulen = strlen(p->ufrag);
	uint32_t xaddr;

	if (len < 20 || get16(m) != 0x0001 || !check_integrity(m, len, p->pwd, user, sizeof(user)) ||
	    strncmp(user, p->ufrag, ulen) || user[ulen] != ':') {
		printf("{\"event\": \"stun_refused\", \"from\": \"%s\"}\n", addr_str(&p->from));
		return;
	}
	memset(r, 0, sizeof(r));
	put16(r, 0x0101);
	memcpy(r + 4, m + 4, 16); /* cookie and transaction id */
	put16(r + 20, ATTR_XOR_MAPPED);
	put16(r + 22, 8);
	r[25] = 1;
	put16(r + 26, ntohs(p->from.sin_port) ^ (STUN_COOKIE >> 16));
	xaddr = p->from.sin_addr.s_addr ^ htonl(STUN_COOKIE);
	memcpy(r + 28, &xaddr, 4);
	len = add_integrity(r, 32, p->pwd);
	sendto(p->fd, r, len, 0, (struct sockaddr *)&p->from, sizeof(p->from));
	printf("{\"event\": \"stun\", \"from\": \"%s\"}\n", addr_str(&p->from));
	fflush(stdout);
}

/* mbedTLS's transport: one datagram per call; the server answers STUN on the way. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct peer *p = ctx;
	ssize_t n = sendto(p->fd, buf, len, 0, (struct sockaddr *)&p->to, sizeof(p->to));
	return n < 0 ? MBEDTLS_ERR_NET_SEND_FAILED : (int)n;
}

static int bio_recv_timeout(void *ctx, unsigned char *buf, size_t len, uint32_t timeout_ms)
{
	struct peer *p = ctx;
	struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
	socklen_t alen;
	ssize_t n;

	for (;;) {
		int rc = poll(&pfd, 1, timeout_ms ? (int)timeout_ms : -1);
		if (rc == 0)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		if (rc < 0)
			return errno == EINTR ? MBEDTLS_ERR_SSL_WANT_READ : MBEDTLS_ERR_NET_RECV_FAILED;
		alen = sizeof(p->from);
		n = recvfrom(p->fd, buf, len, 0, (struct sockaddr *)&p->from, &alen);
		if (n < 0)
			return MBEDTLS_ERR_NET_RECV_FAILED;
		if (n > 0 && buf[0] <= 3) { /* STUN (RFC 7983) */
			if (p->server)
				stun_server(p, buf, n);
			else
				p->stun_answered = 1;
			continue;
		}
		if (p->server && !p->to.sin_port)
			p->to = p->from; /* the handshake's first flight */
		return (int)n;
	}
}

/* The client's first packet: a Binding Request routed by the server's ufrag; wait for its
 * answer, so the relay has learned our flow before DTLS starts. */
static int stun_client(struct peer *p, mbedtls_ctr_drbg_context *drbg)
{
	unsigned char m[256], buf[1500];
	char user[128];
	size_t ulen;
	int tries;

	snprintf(user, sizeof(user), "%s:cidpeer", p->ufrag);
	ulen = strlen(user);
	memset(m, 0, sizeof(m));
	put16(m, 0x0001);
	m[4] = 0x21, m[5] = 0x12, m[6] = 0xA4, m[7] = 0x42;
	mbedtls_ctr_drbg_random(drbg, m + 8, 12);
	put16(m + 20, ATTR_USERNAME);
	put16(m + 22, ulen);
	memcpy(m + 24, user, ulen);
	ulen = add_integrity(m, 24 + ((ulen + 3) & ~3u), p->pwd);
	for (tries = 0; tries < 10 && !p->stun_answered; tries++) {
		sendto(p->fd, m, ulen, 0, (struct sockaddr *)&p->to, sizeof(p->to));
		if (bio_recv_timeout(p, buf, sizeof(buf), 500) >= 0)
			continue; /* DTLS before the answer: not expected, ignored */
	}
	return p->stun_answered ? 0 : -1;
}

static int hexval(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex) / 2, i;
	unsigned v;

	if (n > max || strlen(hex) % 2)
		return -1;
	for (i = 0; i < n; i++) {
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = v;
	}
	return (int)n;
}

static void hexstr(const unsigned char *b, size_t n, char *out)
{
	size_t i;
	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = 0;
}

static int fail(const char *what, int rc)
{
	char err[128];
	mbedtls_strerror(rc, err, sizeof(err));
	printf("{\"event\": \"error\", \"what\": \"%s\", \"rc\": %d, \"error\": \"%s\"}\n", what, rc,
	       err);
	return 1;
}

int main(int argc, char **argv)
{
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_config conf;
	mbedtls_ssl_context ssl;
	mbedtls_x509_crt crt, ca;
	mbedtls_pk_context key;
	mbedtls_timing_delay_context timer;
	unsigned char cid[MBEDTLS_SSL_CID_IN_LEN_MAX], peer_cid[MBEDTLS_SSL_CID_OUT_LEN_MAX];
	unsigned char buf[1500];
	char hex[2 * MBEDTLS_SSL_CID_OUT_LEN_MAX + 1], hex2[2 * MBEDTLS_SSL_CID_IN_LEN_MAX + 1];
	struct peer p = {0};
	size_t peer_cid_len = 0;
	int cid_len, enabled = 0, rc, server;
	long records = 0, bytes = 0, moves = 0, since_move = 0;

	if (argc < 8 || (strcmp(argv[1], "server") && strcmp(argv[1], "client")) ||
	    (!strcmp(argv[1], "client") && argc < 9)) {
		fprintf(stderr, "usage: cidpeer server BIND_IP PORT UFRAG PWD CID_HEX SECONDS\n"
				"       cidpeer client VIP PORT UFRAG PWD CID_HEX COUNT INTERVAL_MS\n");
		return 2;
	}
	server = p.server = !strcmp(argv[1], "server");
	p.ufrag = argv[4];
	p.pwd = argv[5];
	cid_len = hexval(argv[6], cid, sizeof(cid));
	if (cid_len < 0)
		return fprintf(stderr, "bad CID %s\n", argv[6]), 2;

	p.fd = socket(AF_INET, SOCK_DGRAM, 0);
	{
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
		inet_pton(AF_INET, argv[2], &a.sin_addr);
		if (server && bind(p.fd, (struct sockaddr *)&a, sizeof(a)))
			return perror("bind"), 1;
		if (server) { /* bound: a client may start now */
			printf("{\"event\": \"listening\"}\n");
			fflush(stdout);
		} else {
			p.to = a;
		}
	}

	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_ssl_config_init(&conf);
	mbedtls_ssl_init(&ssl);
	mbedtls_x509_crt_init(&crt);
	mbedtls_x509_crt_init(&ca);
	mbedtls_pk_init(&key);
	if ((rc = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0)))
		return fail("seed", rc);
	if ((rc = mbedtls_ssl_config_defaults(&conf, server ? MBEDTLS_SSL_IS_SERVER
							    : MBEDTLS_SSL_IS_CLIENT,
					       MBEDTLS_SSL_TRANSPORT_DATAGRAM,
					       MBEDTLS_SSL_PRESET_DEFAULT)))
		return fail("config", rc);
	mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
	mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_read_timeout(&conf, server ? 200 : 20); /* the client paces its sends */
	if (server) {
		rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)mbedtls_test_srv_crt,
					    mbedtls_test_srv_crt_len);
		rc = rc ? rc
			: mbedtls_pk_parse_key(&key, (const unsigned char *)mbedtls_test_srv_key,
					       mbedtls_test_srv_key_len, NULL, 0);
		rc = rc ? rc : mbedtls_ssl_conf_own_cert(&conf, &crt, &key);
		if (rc)
			return fail("cert", rc);
		mbedtls_ssl_conf_dtls_cookies(&conf, NULL, NULL, NULL); /* the STUN check did that */
	} else {
		if ((rc = mbedtls_x509_crt_parse(&ca, (const unsigned char *)mbedtls_test_cas_pem,
						 mbedtls_test_cas_pem_len)))
			return fail("ca", rc);
		mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
		mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	}
	if ((rc = mbedtls_ssl_conf_cid(&conf, cid_len, MBEDTLS_SSL_UNEXPECTED_CID_IGNORE)))
		return fail("conf_cid", rc);
	if ((rc = mbedtls_ssl_setup(&ssl, &conf)))
		return fail("setup", rc);
	if (!server && (rc = mbedtls_ssl_set_hostname(&ssl, "localhost")))
		return fail("hostname", rc);
	if ((rc = mbedtls_ssl_set_cid(&ssl, MBEDTLS_SSL_CID_ENABLED, cid, cid_len)))
		return fail("set_cid", rc);
	mbedtls_ssl_set_bio(&ssl, &p, bio_send, NULL, bio_recv_timeout);
	mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);

	if (!server && stun_client(&p, &drbg))
		return fail("stun: no answer", 0);
	if (!server) {
		printf("{\"event\": \"stun_ok\"}\n");
		fflush(stdout);
	}
	if (server) { /* wait for a ClientHello as long as the run lasts */
		double end = now_s() + atof(argv[7]);
		while ((rc = mbedtls_ssl_handshake(&ssl)) == MBEDTLS_ERR_SSL_TIMEOUT ||
		       rc == MBEDTLS_ERR_SSL_WANT_READ) {
			if (now_s() > end)
				break;
		}
	} else {
		rc = mbedtls_ssl_handshake(&ssl);
	}
	if (rc)
		return fail("handshake", rc);
	mbedtls_ssl_get_peer_cid(&ssl, &enabled, peer_cid, &peer_cid_len);
	hexstr(peer_cid, peer_cid_len, hex);
	hexstr(cid, cid_len, hex2);
	printf("{\"event\": \"handshake\", \"cid_enabled\": %d, \"cid_in\": \"%s\", "
	       "\"cid_out\": \"%s\", \"peer\": \"%s\", \"ciphersuite\": \"%s\"}\n",
	       enabled == MBEDTLS_SSL_CID_ENABLED, hex2, hex, addr_str(&p.to),
	       mbedtls_ssl_get_ciphersuite(&ssl));
	fflush(stdout);

	if (server) {
		double end = now_s() + atof(argv[7]);
		while (now_s() < end) {
			rc = mbedtls_ssl_read(&ssl, buf, sizeof(buf));
			if (rc == MBEDTLS_ERR_SSL_TIMEOUT || rc == MBEDTLS_ERR_SSL_WANT_READ)
				continue;
			if (rc <= 0)
				break; /* closed by the peer, or fatal */
			/* an authenticated record: its source is where the client is now */
			if (!same_addr(&p.from, &p.to)) {
				printf("{\"event\": \"moved\", \"from\": \"%s\", \"to\": \"%s\"}\n",
				       addr_str(&p.to), addr_str(&p.from));
				fflush(stdout);
				p.to = p.from;
				moves++;
				since_move = 0;
			}
			records++;
			since_move++;
			bytes += rc;
			mbedtls_ssl_write(&ssl, buf, rc);
		}
		printf("{\"event\": \"done\", \"records\": %ld, \"bytes\": %ld, \"moves\": %ld, "
		       "\"records_since_move\": %ld}\n",
		       records, bytes, moves, since_move);
	} else {
		long count = atol(argv[7]), sent = 0, echoed = 0, bsent = 0, becho = 0;
		double interval = atof(argv[8]) / 1000.0, next = now_s();
		while (sent < count || now_s() < next + 1.0) {
			if (sent < count && now_s() >= next) {
				int n = snprintf((char *)buf, sizeof(buf), "cid message %ld", sent);
				if (mbedtls_ssl_write(&ssl, buf, n) == n)
					bsent += n;
				sent++;
				next += interval;
			}
			rc = mbedtls_ssl_read(&ssl, buf, sizeof(buf) - 1);
			if (rc > 0) {
				echoed++;
				becho += rc;
				printf("{\"event\": \"echo\", \"n\": %ld}\n", echoed);
				fflush(stdout);
			} else if (rc != MBEDTLS_ERR_SSL_TIMEOUT && rc != MBEDTLS_ERR_SSL_WANT_READ) {
				return fail("read", rc);
			}
		}
		mbedtls_ssl_close_notify(&ssl);
		printf("{\"event\": \"done\", \"sent\": %ld, \"echoed\": %ld, \"bytes_sent\": %ld, "
		       "\"bytes_echoed\": %ld}\n",
		       sent, echoed, bsent, becho);
	}
	fflush(stdout);
	return 0;
}
