/* AF_UNIX sockets: socketpair, stream servers on a path and on an
 * abstract name, datagrams, seqpacket, SCM_RIGHTS and SCM_CREDENTIALS,
 * shutdown with EPIPE and SIGPIPE, poll readiness, socket options and
 * errno cases. The output is the same natively and under emuckpt.
 *
 * usage: sockets DIR   (a writable directory for socket names)
 *        sockets rofs  (bind on the read-only root: EROFS under emuckpt)
 *        sockets inet  (socket(AF_INET): EAFNOSUPPORT under emuckpt)
 *        sockets ckpt  (checkpoint with a socket name left in /tmp)
 *        sockets ckptopen (checkpoint with sockets open) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emuckpt.h"

static const char *dir;

static const char *en(int e) {
	switch (e) {
	case 0: return "ok";
	case EAGAIN: return "EAGAIN";
	case EADDRINUSE: return "EADDRINUSE";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EBADF: return "EBADF";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case EINVAL: return "EINVAL";
	case EISCONN: return "EISCONN";
	case EMSGSIZE: return "EMSGSIZE";
	case ENOENT: return "ENOENT";
	case ENOTCONN: return "ENOTCONN";
	case ENOTSOCK: return "ENOTSOCK";
	case ENXIO: return "ENXIO";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EPERM: return "EPERM";
	case EPIPE: return "EPIPE";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	case EPROTOTYPE: return "EPROTOTYPE";
	case EROFS: return "EROFS";
	case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
	case ENOPROTOOPT: return "ENOPROTOOPT";
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "errno %d", e);
	return buf;
}

/* r prints a call's result as ok or its errno name. */
#define r(label, call) do { errno = 0; long _v = (long)(call); printf("%s: %s\n", label, _v < 0 ? en(errno) : "ok"); } while (0)

static socklen_t pathaddr(struct sockaddr_un *a, const char *name) {
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
	return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static socklen_t abstractaddr(struct sockaddr_un *a, const char *name) {
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	/* Abstract names are per network namespace: the pid keeps a native
	 * run's apart from others. */
	int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "emuckpt-%s-%d", name, (int)getpid());
	return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* name prints a socket name with the directory replaced by DIR. */
static void name(const char *label, struct sockaddr_un *a, socklen_t len) {
	size_t dl = strlen(dir);
	if (len <= offsetof(struct sockaddr_un, sun_path)) {
		printf("%s: unnamed (len %d)\n", label, (int)len);
	} else if (a->sun_path[0] == 0) {
		printf("%s: abstract (len %d)\n", label, (int)len);
	} else if (strncmp(a->sun_path, dir, dl) == 0) {
		printf("%s: DIR%s (len-dir %d)\n", label, a->sun_path + dl, (int)(len - dl));
	} else {
		printf("%s: %s\n", label, a->sun_path);
	}
}

static int sigpipes;
static void onpipe(int sig) { (void)sig; sigpipes++; }

static void pair_stream(void) {
	int sv[2];
	r("socketpair stream", socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	int type = 0;
	socklen_t l = sizeof type;
	getsockopt(sv[0], SOL_SOCKET, SO_TYPE, &type, &l);
	printf("SO_TYPE: %d (len %d)\n", type, (int)l);
	struct statfs sf;
	fstatfs(sv[0], &sf);
	printf("fstatfs: %#lx\n", (unsigned long)sf.f_type);
	struct stat sst;
	fstat(sv[0], &sst);
	printf("fstat: sock %d\n", S_ISSOCK(sst.st_mode));
	struct ucred uc;
	l = sizeof uc;
	r("SO_PEERCRED", getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &uc, &l));
	printf("peercred: pid %s uid %s len %d\n", uc.pid == getpid() ? "self" : "other", uc.uid == getuid() ? "self" : "other", (int)l);
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		char buf[64];
		ssize_t n = read(sv[1], buf, sizeof buf); /* blocks until the parent writes */
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] -= 32;
		write(sv[1], buf, n);
		l = sizeof uc;
		getsockopt(sv[1], SOL_SOCKET, SO_PEERCRED, &uc, &l);
		_exit(uc.pid == getppid() ? 0 : 1);
	}
	close(sv[1]);
	usleep(10000);
	write(sv[0], "hello", 5);
	char buf[64] = {0};
	ssize_t n = read(sv[0], buf, sizeof buf);
	printf("echo: %zd %.*s\n", n, (int)n, buf);
	n = read(sv[0], buf, sizeof buf);
	printf("read after child exit: %zd\n", n);
	int st;
	waitpid(pid, &st, 0);
	printf("child peercred: %d\n", WEXITSTATUS(st));
	close(sv[0]);
}

static void errnos(void) {
	r("socket type 7", socket(AF_UNIX, 7, 0));
	r("socket bad flags", socket(AF_UNIX, SOCK_STREAM | 0x100, 0));
	r("socket protocol 5", socket(AF_UNIX, SOCK_STREAM, 5));
	int fd = open("/dev/null", O_RDONLY);
	struct sockaddr_un a;
	socklen_t al = pathaddr(&a, "x");
	r("bind /dev/null", bind(fd, (struct sockaddr *)&a, al));
	r("listen /dev/null", listen(fd, 1));
	close(fd);
	r("bind bad fd", bind(99, (struct sockaddr *)&a, al));
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	r("listen unbound", listen(s, 1));
	r("accept unbound", accept(s, NULL, NULL));
	r("read unconnected", read(s, &a, 1));
	r("write unconnected", write(s, "x", 1));
	r("getpeername unconnected", getpeername(s, (struct sockaddr *)&a, &al));
	r("shutdown unconnected", shutdown(s, SHUT_RDWR));
	a.sun_family = AF_INET;
	r("bind AF_INET addr", bind(s, (struct sockaddr *)&a, al));
	r("bind short", bind(s, (struct sockaddr *)&a, 1));
	al = pathaddr(&a, "missing/x");
	r("bind missing dir", bind(s, (struct sockaddr *)&a, al));
	r("connect missing", connect(s, (struct sockaddr *)&a, al));
	int sv[2];
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	r("listen dgram", listen(sv[0], 1));
	r("accept dgram", accept(sv[0], NULL, NULL));
	r("shutdown 7", shutdown(sv[0], 7));
	int v = 0;
	socklen_t vl = sizeof v;
	r("getsockopt SO_ERROR", getsockopt(sv[0], SOL_SOCKET, SO_ERROR, &v, &vl));
	printf("SO_ERROR: %d\n", v);
	r("getsockopt 12345", getsockopt(sv[0], SOL_SOCKET, 12345, &v, &vl));
	v = 10000;
	r("setsockopt SO_SNDBUF", setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
	vl = sizeof v;
	getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &v, &vl);
	printf("SO_SNDBUF: %d\n", v);
	close(sv[0]);
	close(sv[1]);
	close(s);
}

static void server_path(void) {
	struct sockaddr_un a, b;
	socklen_t al = pathaddr(&a, "srv"), bl;
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	printf("cloexec: %d\n", fcntl(l, F_GETFD));
	r("bind srv", bind(l, (struct sockaddr *)&a, al));
	r("bind srv again", bind(l, (struct sockaddr *)&a, al));
	int l2 = socket(AF_UNIX, SOCK_STREAM, 0);
	r("bind srv in use", bind(l2, (struct sockaddr *)&a, al));
	r("connect not listening", connect(l2, (struct sockaddr *)&a, al));
	struct stat st;
	stat(a.sun_path, &st);
	printf("stat srv: sock %d mode %o\n", S_ISSOCK(st.st_mode), (unsigned)(st.st_mode & 0777 & ~022));
	r("open srv", open(a.sun_path, O_RDONLY));
	r("listen", listen(l, 4));
	bl = sizeof b;
	getsockname(l, (struct sockaddr *)&b, &bl);
	name("getsockname", &b, bl);
	int d = socket(AF_UNIX, SOCK_DGRAM, 0);
	r("connect dgram to stream", connect(d, (struct sockaddr *)&a, al));
	close(d);
	pid_t pid = fork();
	if (pid == 0) {
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		usleep(20000); /* the parent waits in accept */
		if (connect(c, (struct sockaddr *)&a, al) < 0) _exit(2);
		char buf[16];
		struct sockaddr_un p;
		socklen_t pl = sizeof p;
		getpeername(c, (struct sockaddr *)&p, &pl);
		write(c, "ping", 4);
		ssize_t n = read(c, buf, sizeof buf);
		_exit(n == 4 && memcmp(buf, "pong", 4) == 0 && pl == al ? 0 : 1);
	}
	bl = sizeof b;
	int c = accept4(l, (struct sockaddr *)&b, &bl, SOCK_CLOEXEC);
	printf("accept: %s cloexec %d\n", c >= 0 ? "ok" : en(errno), fcntl(c, F_GETFD));
	name("accepted from", &b, bl);
	bl = sizeof b;
	getsockname(c, (struct sockaddr *)&b, &bl);
	name("accepted name", &b, bl);
	char buf[16];
	ssize_t n = read(c, buf, sizeof buf);
	printf("server read: %.*s\n", (int)n, buf);
	write(c, "pong", 4);
	int stt;
	waitpid(pid, &stt, 0);
	printf("client: %d\n", WEXITSTATUS(stt));
	close(c);
	/* A full backlog: non-blocking connects beyond it are EAGAIN. */
	int got = 0, err = 0;
	int cs[16];
	for (int i = 0; i < 16; i++) {
		cs[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(cs[i], (struct sockaddr *)&a, al) == 0) got++;
		else if (!err) err = errno;
	}
	printf("backlog 4: %d connected, then %s\n", got, en(err));
	for (int i = 0; i < 16; i++) close(cs[i]);
	close(l);
	r("connect closed listener", connect(l2, (struct sockaddr *)&a, al));
	r("unlink srv", unlink(a.sun_path));
	r("connect unlinked", connect(l2, (struct sockaddr *)&a, al));
	close(l2);
	al = pathaddr(&a, "file");
	close(open(a.sun_path, O_CREAT | O_WRONLY, 0600));
	l2 = socket(AF_UNIX, SOCK_STREAM, 0);
	r("connect regular file", connect(l2, (struct sockaddr *)&a, al));
	close(l2);
	unlink(a.sun_path);
}

static void server_abstract(void) {
	struct sockaddr_un a, b;
	socklen_t al = abstractaddr(&a, "abs"), bl;
	int l = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	r("bind abstract", bind(l, (struct sockaddr *)&a, al));
	int l2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	r("bind abstract in use", bind(l2, (struct sockaddr *)&a, al));
	close(l2);
	r("listen abstract", listen(l, 1));
	bl = sizeof b;
	getsockname(l, (struct sockaddr *)&b, &bl);
	printf("abstract name same: %d\n", bl == al && memcmp(&a, &b, al) == 0);
	int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	r("connect abstract", connect(c, (struct sockaddr *)&a, al));
	r("connect again", connect(c, (struct sockaddr *)&a, al));
	int s = accept(l, NULL, NULL);
	send(c, "one", 3, 0);
	send(c, "two-two", 7, 0);
	char buf[16];
	ssize_t n = recv(s, buf, 2, 0);
	printf("seqpacket: %zd %.*s\n", n, (int)n, buf);
	struct iovec iov = {buf, sizeof buf};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	n = recvmsg(s, &m, 0);
	printf("seqpacket: %zd %.*s flags %#x\n", n, (int)n, buf, m.msg_flags);
	close(c);
	n = recv(s, buf, sizeof buf, 0);
	printf("seqpacket after close: %zd\n", n);
	close(s);
	close(l);
	/* Autobind: a bare family gets a five-digit abstract name. */
	int u = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un z = {.sun_family = AF_UNIX};
	r("autobind", bind(u, (struct sockaddr *)&z, sizeof(sa_family_t)));
	bl = sizeof b;
	getsockname(u, (struct sockaddr *)&b, &bl);
	printf("autobind: len %d abstract %d\n", (int)bl, b.sun_path[0] == 0);
	close(u);
}

static void datagrams(void) {
	struct sockaddr_un a1, a2, from;
	socklen_t l1 = pathaddr(&a1, "d1"), l2 = pathaddr(&a2, "d2"), fl;
	int s1 = socket(AF_UNIX, SOCK_DGRAM, 0), s2 = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	bind(s1, (struct sockaddr *)&a1, l1);
	bind(s2, (struct sockaddr *)&a2, l2);
	char buf[64];
	r("recv empty", recv(s2, buf, sizeof buf, 0));
	r("recv empty DONTWAIT", recv(s1, buf, sizeof buf, MSG_DONTWAIT));
	r("send unconnected", send(s1, "x", 1, 0));
	sendto(s1, "first", 5, 0, (struct sockaddr *)&a2, l2);
	sendto(s1, "second message", 14, 0, (struct sockaddr *)&a2, l2);
	int u = socket(AF_UNIX, SOCK_DGRAM, 0);
	sendto(u, "anon", 4, 0, (struct sockaddr *)&a2, l2);
	int q = 0;
	ioctl(s2, FIONREAD, &q);
	printf("FIONREAD: %d\n", q);
	fl = sizeof from;
	ssize_t n = recvfrom(s2, buf, sizeof buf, MSG_PEEK, (struct sockaddr *)&from, &fl);
	printf("peek: %zd %.*s\n", n, (int)n, buf);
	name("from", &from, fl);
	n = recvfrom(s2, buf, 3, MSG_TRUNC, NULL, NULL);
	printf("trunc: %zd %.3s\n", n, buf);
	struct iovec iov[2] = {{buf, 6}, {buf + 32, 4}};
	struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = iov, .msg_iovlen = 2};
	n = recvmsg(s2, &m, 0);
	printf("recvmsg: %zd %.6s|%.4s flags %#x\n", n, buf, buf + 32, m.msg_flags);
	name("from", &from, m.msg_namelen);
	fl = sizeof from;
	n = recvfrom(s2, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
	printf("anon: %zd %.*s fromlen %d\n", n, (int)n, buf, (int)fl);
	r("connect d1 to d2", connect(s1, (struct sockaddr *)&a2, l2));
	struct sockaddr_un p;
	socklen_t pl = sizeof p;
	getpeername(s1, (struct sockaddr *)&p, &pl);
	name("peer", &p, pl);
	r("send connected", send(s1, "c", 1, 0));
	r("third party to d1", sendto(u, "z", 1, 0, (struct sockaddr *)&a1, l1));
	close(s2);
	r("send to closed peer", send(s1, "c", 1, 0));
	r("send again", send(s1, "c", 1, 0));
	static char big[300000];
	r("send too big", sendto(u, big, sizeof big, 0, (struct sockaddr *)&a1, l1));
	close(u);
	close(s1);
	unlink(a1.sun_path);
	unlink(a2.sun_path);
	/* A dgram socketpair keeps boundaries. */
	int sv[2];
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	for (int i = 0; i < 20; i++) send(sv[0], "abcdefgh", 1 + i % 8, 0);
	int total = 0, msgs = 0;
	while ((n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) > 0) total += n, msgs++;
	printf("pair dgram: %d messages %d bytes\n", msgs, total);
	/* readv takes one datagram, however many buffers. */
	send(sv[0], "ab", 2, 0);
	send(sv[0], "cde", 3, 0);
	char x[2], y[4];
	struct iovec rv[2] = {{x, 1}, {y, 4}};
	n = readv(sv[1], rv, 2);
	printf("readv: %zd %.1s%.*s\n", n, x, (int)(n > 1 ? n - 1 : 0), y);
	n = readv(sv[1], rv, 2);
	printf("readv: %zd %.1s%.*s\n", n, x, (int)(n > 1 ? n - 1 : 0), y);
	close(sv[0]);
	close(sv[1]);
}

static int sendfds(int s, int *fds, int n, const char *data) {
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = {(void *)data, strlen(data)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = CMSG_SPACE(n * sizeof(int))};
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	return sendmsg(s, &m, 0);
}

static void rights(void) {
	int sv[2], p[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pipe(p);
	char path[200];
	snprintf(path, sizeof path, "%s/rights.txt", dir);
	int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	write(f, "0123456789", 10);
	lseek(f, 4, SEEK_SET);
	int fds[2] = {p[1], f};
	r("sendmsg SCM_RIGHTS", sendfds(sv[0], fds, 2, "F"));
	int bad[1] = {99};
	r("sendmsg bad fd", sendfds(sv[0], bad, 1, "B"));
	close(p[1]); /* in flight: the message holds the write end */
	send(sv[0], "tail", 4, 0);
	pid_t pid = fork();
	if (pid == 0) {
		char data[8], cbuf[CMSG_SPACE(4 * sizeof(int))];
		struct iovec iov = {data, sizeof data};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		ssize_t n = recvmsg(sv[1], &m, MSG_CMSG_CLOEXEC);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		if (n != 1 || !c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int))) _exit(1);
		int got[2];
		memcpy(got, CMSG_DATA(c), sizeof got);
		if (!(fcntl(got[0], F_GETFD) & FD_CLOEXEC) || !(m.msg_flags & MSG_CMSG_CLOEXEC)) _exit(2);
		char rest[4];
		read(got[1], rest, 3); /* the shared offset: from 4 */
		write(got[0], rest, 3);
		n = recv(sv[1], data, sizeof data, 0);
		write(got[0], data, n);
		_exit(0);
	}
	close(sv[1]);
	char buf[16];
	int st;
	waitpid(pid, &st, 0);
	printf("rights child: %d\n", WEXITSTATUS(st));
	ssize_t n = read(p[0], buf, sizeof buf);
	printf("through the passed pipe: %.*s\n", (int)n, buf);
	printf("file offset after the child: %ld\n", (long)lseek(f, 0, SEEK_CUR));
	n = read(p[0], buf, sizeof buf);
	printf("pipe end closed: %zd\n", n);
	/* A control buffer too small: MSG_CTRUNC, and the descriptors that
	 * do not fit are closed. */
	socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
	int three[3] = {f, f, f};
	sendfds(sv[0], three, 3, "T");
	char data[4], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {data, sizeof data};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	n = recvmsg(sv[1], &m, 0);
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	printf("ctrunc: %zd flags %#x cmsg_len %d\n", n, m.msg_flags, c ? (int)c->cmsg_len : -1);
	if (c) {
		int got;
		memcpy(&got, CMSG_DATA(c), sizeof got);
		close(got);
	}
	/* SCM_CREDENTIALS with SO_PASSCRED. */
	int one = 1;
	setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
	send(sv[0], "C", 1, 0);
	char cb2[CMSG_SPACE(sizeof(struct ucred))];
	m.msg_control = cb2;
	m.msg_controllen = sizeof cb2;
	n = recvmsg(sv[1], &m, 0);
	c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_type == SCM_CREDENTIALS) {
		struct ucred uc;
		memcpy(&uc, CMSG_DATA(c), sizeof uc);
		printf("credentials: pid %s uid %s\n", uc.pid == getpid() ? "self" : "other", uc.uid == getuid() ? "self" : "other");
	} else {
		printf("credentials: none\n");
	}
	close(sv[0]);
	close(sv[1]);
	close(f);
	close(p[0]);
	unlink(path);
}

static void shutdowns(void) {
	signal(SIGPIPE, onpipe);
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	struct pollfd pf = {sv[1], POLLIN | POLLOUT | POLLRDHUP, 0};
	poll(&pf, 1, 0);
	printf("poll idle: %#x\n", pf.revents);
	write(sv[0], "ab", 2);
	r("shutdown WR", shutdown(sv[0], SHUT_WR));
	poll(&pf, 1, 0);
	printf("poll after peer SHUT_WR: %#x\n", pf.revents);
	char buf[8];
	printf("read: %zd\n", read(sv[1], buf, sizeof buf));
	printf("read at end: %zd\n", read(sv[1], buf, sizeof buf));
	r("write after SHUT_WR", write(sv[0], "x", 1));
	printf("sigpipes: %d\n", sigpipes);
	r("send MSG_NOSIGNAL", send(sv[0], "x", 1, MSG_NOSIGNAL));
	printf("sigpipes: %d\n", sigpipes);
	r("write back", write(sv[1], "y", 1));
	printf("read back: %zd\n", read(sv[0], buf, sizeof buf));
	write(sv[0 + 1], "unread", 6);
	close(sv[0]); /* with data unread: the peer sees ECONNRESET once */
	pf.fd = sv[1];
	poll(&pf, 1, 0);
	printf("poll after peer close: %#x\n", pf.revents);
	r("read after reset", read(sv[1], buf, sizeof buf));
	printf("read then: %zd\n", read(sv[1], buf, sizeof buf));
	r("write to closed", write(sv[1], "x", 1));
	printf("sigpipes: %d\n", sigpipes);
	close(sv[1]);
	/* Filling a non-blocking stream socket. */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv);
	static char chunk[4096];
	long wrote = 0;
	ssize_t n;
	while ((n = write(sv[0], chunk, sizeof chunk)) > 0) wrote += n;
	printf("filled: %s, more than 64 KiB %d\n", en(errno), wrote > 65536);
	pf.fd = sv[0];
	pf.events = POLLOUT;
	poll(&pf, 1, 0);
	printf("poll full: %#x\n", pf.revents);
	long got = 0;
	while ((n = read(sv[1], chunk, sizeof chunk)) > 0) got += n;
	printf("drained: %d\n", got == wrote);
	poll(&pf, 1, 0);
	printf("poll drained: %#x\n", pf.revents);
	close(sv[0]);
	close(sv[1]);
	signal(SIGPIPE, SIG_DFL);
	/* The default action of SIGPIPE ends a writer. */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	close(sv[1]);
	pid_t pid = fork();
	if (pid == 0) {
		write(sv[0], "x", 1);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("writer: signaled %d sig %d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	close(sv[0]);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: sockets DIR|rofs|inet|ckpt|ckptopen\n");
		return 2;
	}
	if (strcmp(argv[1], "inet") == 0) {
		r("socket AF_INET", socket(AF_INET, SOCK_STREAM, 0));
		r("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, (int[2]){0}));
		return 0;
	}
	if (strcmp(argv[1], "ckpt") == 0) {
		/* A closed socket leaves its name: an image holds it, and the
		 * restored run finds nobody listening there. */
		struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = "/tmp/stale"};
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		r("bind /tmp/stale", bind(s, (struct sockaddr *)&a, sizeof a));
		close(s);
		long c = emuckpt_checkpoint();
		printf("checkpoint: %ld\n", c);
		struct stat st;
		r("stat /tmp/stale", stat(a.sun_path, &st));
		printf("socket: %d\n", S_ISSOCK(st.st_mode));
		s = socket(AF_UNIX, SOCK_STREAM, 0);
		r("connect /tmp/stale", connect(s, (struct sockaddr *)&a, sizeof a));
		return 0;
	}
	if (strcmp(argv[1], "ckptopen") == 0) {
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		long c = emuckpt_checkpoint();
		printf("checkpoint with sockets open: %ld\n", c);
		return 0;
	}
	if (strcmp(argv[1], "rofs") == 0) {
		struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = "/sock"};
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		r("bind on /", bind(s, (struct sockaddr *)&a, sizeof a));
		return 0;
	}
	dir = argv[1];
	pair_stream();
	errnos();
	server_path();
	server_abstract();
	datagrams();
	rights();
	shutdowns();
	printf("done\n");
	return 0;
}
