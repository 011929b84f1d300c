/*
 * loopfloor: what this machine's loopback TCP costs for a fan-out, with no
 * WebSocket, NATS or lws in the way. It is the floor under the broadcast
 * figure of docs/BENCHMARKS.md.
 *
 *   loopfloor --conns N [--procs P] [--bytes B]
 *
 * P sender processes each accept N/P connections from P receiver processes
 * (the open-file cap is per process). Once every connection is up, each
 * sender writes one B-byte buffer to each of its sockets, one send() each,
 * as the pusher does for a broadcast; each receiver reads with epoll until
 * every one of its sockets delivered B bytes. Prints one JSON line: the time
 * from the start signal to the last byte read, and frames per second.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct shared {
    volatile int ready; /* receivers whose connections are all up */
    volatile int go;    /* senders may write */
    volatile double start_ms;
    volatile double last_ms[64];
    volatile long sent[64];
} shared_t;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void sender(shared_t *sh, int lfd, int idx, int n, int bytes)
{
    int *fds = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        fds[i] = accept(lfd, NULL, NULL);
        if (fds[i] < 0)
            die("accept");
        int one = 1;
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    char *buf = malloc((size_t)bytes);
    memset(buf, 'x', (size_t)bytes);
    while (!sh->go)
        usleep(100);
    long sent = 0;
    for (int i = 0; i < n; i++)
        if (send(fds[i], buf, (size_t)bytes, MSG_DONTWAIT | MSG_NOSIGNAL) == bytes)
            sent++;
    sh->sent[idx] = sent;
    sleep(2); /* keep the sockets open until the receivers are done */
    exit(0);
}

static void receiver(shared_t *sh, int port, int idx, int n, int bytes, int sources)
{
    int ep = epoll_create1(0);
    int *got = calloc((size_t)n + 1024, sizeof(int));
    int *fdidx = calloc(65536, sizeof(int));
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + 1u + (uint32_t)(i % sources));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
            die("bind");
        struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        dst.sin_addr.s_addr = htonl(0x7f000001u);
        if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0)
            die("connect");
        fdidx[fd] = i;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    __sync_fetch_and_add(&sh->ready, 1);
    int done = 0;
    char buf[4096];
    struct epoll_event evs[512];
    double last = 0;
    while (done < n) {
        int k = epoll_wait(ep, evs, 512, 5000);
        if (k <= 0)
            break;
        for (int j = 0; j < k; j++) {
            int fd = evs[j].data.fd;
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0)
                continue;
            int i = fdidx[fd];
            if (got[i] < bytes && (got[i] += (int)r) >= bytes) {
                done++;
                last = now_ms();
            }
        }
    }
    sh->last_ms[idx] = done == n ? last : -1;
    exit(0);
}

int main(int argc, char **argv)
{
    int conns = 10000, procs = 2, bytes = 120, sources = 50;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--procs"))
            procs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bytes"))
            bytes = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sources"))
            sources = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "loopfloor: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (procs < 1 || procs > 64 || conns < procs || bytes < 1 || bytes > 4096) {
        fprintf(stderr, "loopfloor: bad values\n");
        return 2;
    }
    shared_t *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap");
    memset(sh, 0, sizeof *sh);
    int per = conns / procs;
    pid_t pids[128];
    int np = 0;
    for (int p = 0; p < procs; p++) {
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(0x7f000001u);
        if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4096) != 0)
            die("listen");
        socklen_t al = sizeof a;
        getsockname(lfd, (struct sockaddr *)&a, &al);
        int port = ntohs(a.sin_port);
        if ((pids[np++] = fork()) == 0)
            sender(sh, lfd, p, per, bytes);
        close(lfd);
        if ((pids[np++] = fork()) == 0)
            receiver(sh, port, p, per, bytes, sources);
    }
    while (sh->ready < procs)
        usleep(1000);
    sleep(1);
    sh->start_ms = now_ms();
    sh->go = 1;
    for (int i = 0; i < np; i++)
        waitpid(pids[i], NULL, 0);
    double worst = 0;
    long sent = 0;
    for (int p = 0; p < procs; p++) {
        if (sh->last_ms[p] < 0) {
            fprintf(stderr, "loopfloor: receiver %d did not get every frame\n", p);
            return 1;
        }
        if (sh->last_ms[p] - sh->start_ms > worst)
            worst = sh->last_ms[p] - sh->start_ms;
        sent += sh->sent[p];
    }
    printf("{\"figure\":\"loopback_floor\",\"conns\":%d,\"procs\":%d,\"bytes\":%d,\"sent\":%ld,"
           "\"ms\":%.1f,\"frames_per_s\":%.0f}\n",
           per * procs, procs, bytes, sent, worst, per * procs / (worst / 1e3));
    return 0;
}
