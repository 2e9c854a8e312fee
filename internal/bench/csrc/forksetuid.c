// SPDX-License-Identifier: Apache-2.0
//
// The baseline of `netauth bench`, as in the netAuth paper: a Unix server that accepts a TCP
// connection, forks, changes to the user's uid, receives a request and sends a reply of the
// same size, and exits. Usage: forksetuid PORTFILE UID GID SIZE
// It listens on 127.0.0.1 on a free port, writes the port number to PORTFILE, and serves
// until killed. Run by root it drops the supplementary groups and changes to UID and GID;
// run by another user (who can only "change" to its own ids) it still makes the setgid and
// setuid calls, so each connection costs the same system calls.
// BenchmarkUBNS (internal/daemon) compiles it too.
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int readfull(int fd, char *buf, int n) {
	int got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0) return -1;
		got += r;
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: forksetuid PORTFILE UID GID SIZE\n");
		return 2;
	}
	uid_t uid = atoi(argv[2]);
	gid_t gid = atoi(argv[3]);
	int size = atoi(argv[4]);
	int root = getuid() == 0;
	signal(SIGCHLD, SIG_IGN); /* children are reaped automatically */
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0) {
		perror("bind/listen");
		return 1;
	}
	socklen_t len = sizeof a;
	getsockname(ls, (struct sockaddr *)&a, &len);
	FILE *pf = fopen(argv[1], "w");
	if (pf == NULL) {
		perror(argv[1]);
		return 1;
	}
	fprintf(pf, "%d\n", ntohs(a.sin_port));
	fclose(pf);
	char *buf = malloc(size);
	for (;;) {
		int c = accept(ls, NULL, NULL);
		if (c < 0) continue;
		pid_t pid = fork();
		if (pid == 0) {
			close(ls);
			if ((root && setgroups(0, NULL) < 0) || setgid(gid) < 0 || setuid(uid) < 0) _exit(1);
			setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			if (readfull(c, buf, size) == 0) {
				ssize_t w = write(c, buf, size);
				(void)w;
			}
			close(c);
			_exit(0);
		}
		close(c);
	}
}
