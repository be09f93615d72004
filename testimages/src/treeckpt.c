/*
 * treeckpt: a process tree to checkpoint at any point. The parent starts
 * two children that block reading a pipe, and a thread that blocks on a
 * condition variable; it shares a pipe, an anonymous MAP_SHARED page and
 * its heap (copy-on-write) with the children, then wakes everyone up and
 * collects what they report. The output is the same on Linux and under
 * emuckpt, and the same whether or not the run was checkpointed and
 * restored in between (`--checkpoint-at syscall:N` anywhere).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;

static void *waiter(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	while (!go)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	return (void *)42;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	int in[2], out[2];
	if (pipe(in) || pipe(out))
		return 1;
	volatile int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *heap = malloc(100);
	strcpy(heap, "parent's heap");
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			close(in[1]);
			close(out[0]);
			char c;
			if (read(in[0], &c, 1) != 1)
				_exit(9);
			strcpy(heap, "child's copy"); /* copy on write */
			__sync_fetch_and_add(shared, 10 + i);
			char msg[64];
			int n = snprintf(msg, sizeof msg, "child %d got %c, heap %s\n", i, c, heap);
			write(out[1], msg, n);
			_exit(20 + i);
		}
	}
	close(in[0]);
	close(out[1]);
	pthread_t th;
	pthread_create(&th, NULL, waiter, NULL);
	struct timespec ts = {0, 5 * 1000 * 1000};
	nanosleep(&ts, NULL); /* everyone is blocked now */
	printf("started\n");
	pthread_mutex_lock(&mu);
	go = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	void *ret;
	pthread_join(th, &ret);
	printf("thread returned %ld\n", (long)ret);
	for (int i = 0; i < 2; i++) {
		write(in[1], "A" + 0, 1);
		char line[64];
		int n = 0;
		while (n < (int)sizeof line - 1 && read(out[0], line + n, 1) == 1 && line[n] != '\n')
			n++;
		line[n] = 0;
		printf("%s\n", line);
	}
	for (int i = 0; i < 2; i++) {
		int st;
		waitpid(kids[i], &st, 0);
		printf("child %d exit %d\n", i, WEXITSTATUS(st));
	}
	printf("shared %d, heap %s\n", *shared, heap);
	return 0;
}
