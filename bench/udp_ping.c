/* udp_ping.c — UDP ping-pong for the latency measurement, in C so the tool adds microseconds
 * the same way for every relay instead of a Python interpreter's jitter.
 *
 *   udp_ping echo IP PORT                      echo every datagram to its sender
 *   udp_ping ping SRC_IP SRC_PORT DST_IP DST_PORT COUNT RATE TIMEOUT_US
 *       one ping at a time at RATE per second (paced, never more than one in flight);
 *       prints one round-trip time in ns per line, -1 for a ping with no answer in time.
 * The payload is RTP-shaped (first byte 0x80) and carries the ping's sequence number.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 172

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int bound_socket(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, fd = socket(AF_INET, SOCK_DGRAM, 0);

	inet_pton(AF_INET, ip, &a.sin_addr);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a))) {
		perror("bind");
		exit(1);
	}
	return fd;
}

static void __attribute__((noreturn)) echo(const char *ip, int port)
{
	struct sockaddr_in from;
	socklen_t flen;
	char buf[2048];
	int fd = bound_socket(ip, port);
	ssize_t n;

	printf("ready\n");
	fflush(stdout);
	for (;;) {
		flen = sizeof(from);
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		if (n > 0)
			sendto(fd, buf, n, 0, (struct sockaddr *)&from, flen);
	}
}

static int ping(char **argv)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
	long count = atol(argv[4]), rate = atol(argv[5]), timeout_us = atol(argv[6]);
	unsigned char buf[2048] = { 0x80, 111 };
	int fd = bound_socket(argv[0], atoi(argv[1]));
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t start, sent, deadline, gap = 1000000000ull / rate;
	uint32_t seq, got;
	ssize_t n;

	inet_pton(AF_INET, argv[2], &dst.sin_addr);
	start = now_ns();
	for (long i = 0; i < count; i++) {
		struct timespec slot = { .tv_sec = (start + i * gap) / 1000000000ull,
					 .tv_nsec = (start + i * gap) % 1000000000ull };

		/* sleep, not spin: a spinning pinger would take a core from the relay; the
		 * wake-up latency is outside the timed interval */
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &slot, NULL);
		seq = (uint32_t)i;
		memcpy(buf + 12, &seq, 4);
		sent = now_ns();
		sendto(fd, buf, PAYLOAD, 0, (struct sockaddr *)&dst, sizeof(dst));
		deadline = sent + timeout_us * 1000ull;
		for (;;) {
			uint64_t t = now_ns();
			int left_ms = t >= deadline ? 0 : (int)((deadline - t) / 1000000) + 1;

			if (t >= deadline || poll(&p, 1, left_ms) <= 0) {
				printf("-1\n");
				break;
			}
			n = recv(fd, buf + 1024, 1024, 0);
			memcpy(&got, buf + 1024 + 12, 4);
			if (n == PAYLOAD && got == seq) {
				printf("%llu\n", (unsigned long long)(now_ns() - sent));
				break;
			} /* else a late answer to an earlier ping: keep waiting for this one */
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "echo"))
		echo(argv[2], atoi(argv[3]));
	if (argc == 9 && !strcmp(argv[1], "ping"))
		return ping(argv + 2);
	fprintf(stderr, "usage: %s echo IP PORT | ping SRC_IP SRC_PORT DST_IP DST_PORT COUNT "
			"RATE TIMEOUT_US\n", argv[0]);
	return 2;
}
