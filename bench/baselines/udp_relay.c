/* udp_relay.c — the userspace relay a user would write in C: steer's job in a process.
 *
 * One worker per core (fork), all bound to the VIP with SO_REUSEPORT, so the kernel
 * spreads clients over workers by 4-tuple hash and each worker owns its clients. A worker
 * reads batches with recvmmsg and writes them with sendmmsg. A client with no flow must
 * open with a STUN Binding Request: the ufrag before ':' in USERNAME picks the backend
 * (--backend UFRAG=IP:PORT); the worker then opens a connected socket to it (the flow's
 * upstream) and remembers client <-> upstream in memory. Whatever the backend sends on
 * an upstream goes back to its client from the VIP socket (return-path NAT).
 *
 * --gro (userspace_c_gro): the strongest form of the same relay. UDP_GRO on every socket,
 * so the kernel hands over runs of a flow's datagrams as one buffer (with their segment
 * size), which leaves again as one send with UDP_SEGMENT; worker i pinned to core i.
 *
 * usage: udp_relay [--gro] VIP_IP VIP_PORT WORKERS UFRAG=IP:PORT...   (prints "ready")
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define BATCH 64
#define MTU 2048
#define GRO_BUF 65536 /* a coalesced run of datagrams */
#define MAX_FLOWS 65536 /* open-addressed, power of two */
#define MAX_FDS 65536
#define MAX_BACKENDS 64
#define SOCK_BUF (4 << 20) /* what an operator would set: bursts wait instead of dropping */

struct backend {
	char ufrag[33];
	struct sockaddr_in addr;
};

struct flow {
	uint32_t ip; /* 0: empty slot */
	uint16_t port;
	int up_fd;
};

static struct backend backends[MAX_BACKENDS];
static int n_backends;
static struct flow flows[MAX_FLOWS];
static struct sockaddr_in fd_client[MAX_FDS]; /* upstream fd -> its client */

static struct mmsghdr msgs[BATCH], out[BATCH];
static struct iovec iov[BATCH], oiov[BATCH];
static struct sockaddr_in names[BATCH];
static char *bufs; /* BATCH buffers of bufsz */
static size_t bufsz = MTU;
static int gro;
/* per message: the segment size UDP_GRO reports on receive, UDP_SEGMENT asks on send */
static char ctrl[BATCH][CMSG_SPACE(sizeof(int))], octrl[BATCH][CMSG_SPACE(sizeof(uint16_t))];
#define BUF(i) (bufs + (size_t)(i) * bufsz)

/* The segment size of received message i (0: one datagram). */
static int gso_size(int i)
{
	struct msghdr *h = &msgs[i].msg_hdr;
	struct cmsghdr *cm;

	for (cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm))
		if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO)
			return *(int *)CMSG_DATA(cm);
	return 0;
}

/* Out message k carries received message i: as one send of its segments under --gro. */
static void out_msg(int k, int i, void *name, socklen_t namelen)
{
	int seg = gro ? gso_size(i) : 0;

	oiov[k].iov_base = BUF(i);
	oiov[k].iov_len = msgs[i].msg_len;
	out[k].msg_hdr = (struct msghdr){ .msg_name = name, .msg_namelen = namelen,
					  .msg_iov = &oiov[k], .msg_iovlen = 1 };
	if (seg && (int)msgs[i].msg_len > seg) {
		struct cmsghdr *cm;

		out[k].msg_hdr.msg_control = octrl[k];
		out[k].msg_hdr.msg_controllen = sizeof(octrl[k]);
		cm = CMSG_FIRSTHDR(&out[k].msg_hdr);
		cm->cmsg_level = SOL_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		*(uint16_t *)CMSG_DATA(cm) = (uint16_t)seg;
	}
}

static void rearm(void)
{
	for (int i = 0; i < BATCH; i++) { /* recvmmsg shrinks them to what it wrote */
		msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
		if (gro)
			msgs[i].msg_hdr.msg_controllen = sizeof(ctrl[i]);
	}
}

static void big_buffers(int fd)
{
	int size = SOCK_BUF;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
	if (gro) {
		int one = 1;

		setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
	}
}

static struct flow *flow_slot(uint32_t ip, uint16_t port)
{
	uint32_t h = (ip * 2654435761u) ^ (port * 40503u);

	for (uint32_t i = 0; i < MAX_FLOWS; i++) {
		struct flow *f = &flows[(h + i) & (MAX_FLOWS - 1)];

		if (!f->ip || (f->ip == ip && f->port == port))
			return f;
	}
	return NULL;
}

/* The server ufrag of a Binding Request, or NULL; *len gets its length. */
static const char *stun_ufrag(const uint8_t *p, size_t n, size_t *len)
{
	size_t end, off;

	if (n < 20 || p[0] > 3 || ((p[0] << 8) | p[1]) != 0x0001)
		return NULL;
	if (p[4] != 0x21 || p[5] != 0x12 || p[6] != 0xa4 || p[7] != 0x42)
		return NULL;
	end = 20 + ((p[2] << 8) | p[3]);
	if (end > n)
		return NULL;
	for (off = 20; off + 4 <= end;) {
		size_t type = (p[off] << 8) | p[off + 1], alen = (p[off + 2] << 8) | p[off + 3];

		if (off + 4 + alen > end)
			return NULL;
		if (type == 0x0006) {
			const char *v = (const char *)p + off + 4, *colon = memchr(v, ':', alen);

			if (!colon || colon == v)
				return NULL;
			*len = colon - v;
			return v;
		}
		off += 4 + ((alen + 3) & ~3u);
	}
	return NULL;
}

static int new_upstream(int ep, const uint8_t *p, size_t n, const struct sockaddr_in *client)
{
	struct epoll_event ev = { .events = EPOLLIN };
	size_t ulen;
	const char *u = stun_ufrag(p, n, &ulen);
	int fd;

	if (!u)
		return -1; /* not a Binding Request: no flow, dropped */
	for (int i = 0; i < n_backends; i++) {
		if (strlen(backends[i].ufrag) != ulen || memcmp(backends[i].ufrag, u, ulen))
			continue;
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		if (fd < 0 || fd >= MAX_FDS ||
		    connect(fd, (struct sockaddr *)&backends[i].addr, sizeof(backends[i].addr))) {
			if (fd >= 0)
				close(fd);
			return -1;
		}
		big_buffers(fd);
		fd_client[fd] = *client;
		ev.data.fd = fd;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		return fd;
	}
	return -1; /* unknown ufrag */
}

static void send_batch(int fd, struct mmsghdr *m, int n)
{
	int done = 0, r;

	while (done < n) {
		r = sendmmsg(fd, m + done, n - done, MSG_DONTWAIT);
		if (r <= 0)
			return; /* full socket buffer: the rest is lost, as a real relay loses it */
		done += r;
	}
}

/* Client -> backend: each message goes to its flow's upstream; runs of the same
 * upstream leave in one sendmmsg. */
static void from_clients(int ep, int vip_fd)
{
	int n, i, k = 0, cur = -1;

	n = recvmmsg(vip_fd, msgs, BATCH, MSG_DONTWAIT, NULL);
	for (i = 0; i < n; i++) {
		struct sockaddr_in *c = &names[i];
		struct flow *f = flow_slot(c->sin_addr.s_addr, c->sin_port);
		int fd;

		if (!f)
			continue;
		if (!f->ip) {
			fd = new_upstream(ep, (uint8_t *)BUF(i), msgs[i].msg_len, c);
			if (fd < 0)
				continue;
			f->ip = c->sin_addr.s_addr;
			f->port = c->sin_port;
			f->up_fd = fd;
		}
		if (f->up_fd != cur && k) {
			send_batch(cur, out, k);
			k = 0;
		}
		cur = f->up_fd;
		out_msg(k, i, NULL, 0);
		k++;
	}
	if (k)
		send_batch(cur, out, k);
}

/* Backend -> client: from the VIP socket, to the client that owns this upstream. */
static void from_backend(int vip_fd, int up_fd)
{
	int n = recvmmsg(up_fd, msgs, BATCH, MSG_DONTWAIT, NULL);

	for (int i = 0; i < n; i++)
		out_msg(i, i, &fd_client[up_fd], sizeof(struct sockaddr_in));
	if (n > 0)
		send_batch(vip_fd, out, n);
}

static int worker(const struct sockaddr_in *vip, int ready_fd, int index)
{
	struct epoll_event ev = { .events = EPOLLIN }, evs[64];
	int one = 1, vip_fd, ep, n;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (gro) {
		cpu_set_t cpus;

		CPU_ZERO(&cpus);
		CPU_SET(index % sysconf(_SC_NPROCESSORS_ONLN), &cpus);
		sched_setaffinity(0, sizeof(cpus), &cpus);
		bufsz = GRO_BUF;
	}
	bufs = malloc(BATCH * bufsz);
	if (!bufs)
		return 1;
	vip_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	setsockopt(vip_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	big_buffers(vip_fd);
	if (bind(vip_fd, (const struct sockaddr *)vip, sizeof(*vip))) {
		perror("bind");
		return 1;
	}
	if (write(ready_fd, "r", 1) != 1)
		return 1;
	close(ready_fd);
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ .iov_base = BUF(i), .iov_len = bufsz };
		msgs[i].msg_hdr = (struct msghdr){ .msg_name = &names[i],
						   .msg_namelen = sizeof(names[i]),
						   .msg_iov = &iov[i], .msg_iovlen = 1 };
		if (gro)
			msgs[i].msg_hdr.msg_control = ctrl[i];
	}
	rearm();
	ep = epoll_create1(0);
	ev.data.fd = vip_fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, vip_fd, &ev);
	for (;;) {
		n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == vip_fd)
				from_clients(ep, vip_fd);
			else
				from_backend(vip_fd, evs[i].data.fd);
		}
		rearm();
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in vip = { .sin_family = AF_INET };
	int workers;

	if (argc > 1 && !strcmp(argv[1], "--gro")) {
		gro = 1;
		argv++;
		argc--;
	}
	if (argc < 5) {
		fprintf(stderr, "usage: %s [--gro] VIP_IP VIP_PORT WORKERS UFRAG=IP:PORT...\n",
			argv[0]);
		return 2;
	}
	inet_pton(AF_INET, argv[1], &vip.sin_addr);
	vip.sin_port = htons(atoi(argv[2]));
	workers = atoi(argv[3]);
	for (int i = 4; i < argc && n_backends < MAX_BACKENDS; i++) {
		struct backend *b = &backends[n_backends++];
		char *eq = strchr(argv[i], '='), *colon = eq ? strrchr(eq, ':') : NULL;

		if (!eq || !colon || eq - argv[i] > 32) {
			fprintf(stderr, "bad backend %s\n", argv[i]);
			return 2;
		}
		memcpy(b->ufrag, argv[i], eq - argv[i]);
		*colon = 0;
		b->addr.sin_family = AF_INET;
		inet_pton(AF_INET, eq + 1, &b->addr.sin_addr);
		b->addr.sin_port = htons(atoi(colon + 1));
	}
	int ready[2];
	char c;

	if (pipe(ready))
		return 1;
	for (int i = 0; i < workers; i++)
		if (fork() == 0)
			return worker(&vip, ready[1], i);
	close(ready[1]);
	for (int i = 0; i < workers; i++) /* one byte from each worker once it is bound */
		if (read(ready[0], &c, 1) != 1)
			return 1;
	printf("ready\n");
	fflush(stdout);
	while (wait(NULL) > 0)
		;
	return 0;
}
