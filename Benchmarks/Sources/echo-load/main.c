/*
 * echo-load: closed-loop TCP echo load generator (C, epoll; no libuv, no Swift).
 *
 * Echo mode (default):
 *   echo-load --host H --port N --conns C --size S --seconds T [--warmup W]
 *             [--trips N] [--server-pid PID] [--alloc-signal]
 *   Opens C connections; each is a closed loop: send S bytes, wait until all S
 *   bytes have come back (and match), repeat. After W seconds of warm-up the
 *   counters are reset and the measured window of T seconds starts. With
 *   --trips N the run instead stops after N round trips in total (no warm-up
 *   unless given). With --server-pid, the server's utime+stime (from
 *   /proc/PID/stat) is read at the start and end of the measured window; with
 *   --alloc-signal, SIGUSR2 is sent to the server at the start and end of the
 *   window (for the malloc counter, tools/malloccount.c).
 *
 * Idle mode:
 *   echo-load --host H --port N --idle C [--inflight K]
 *   Opens C idle connections (at most K connects in flight, default 256), prints one JSON line once all are established (or
 *   failed), then holds them until SIGTERM/SIGINT or EOF on stdin; then closes
 *   them and exits 0.
 *
 * Churn mode:
 *   echo-load --host H --port N --churn T [--conns K] [--size S] [--warmup W] [--trips N]
 *   K concurrent loops of: connect, one echo of S bytes, close. Reports
 *   connections/s over T seconds (with --trips N: after exactly N connections).
 *
 * A/B mode:
 *   echo-load --host H --port A --port-b B --pid PA --pid-b PB [--conns C] [--size S]
 *             [--slices N] [--slice-ms M] [--warmup W]
 *   Keeps C connections open to each of two servers and drives one at a time,
 *   alternating A, B, A, B, ... for N slices each (default 40) of M ms (default
 *   100): in a slice the driven server's connections run the closed loop; at
 *   its end no new trip starts and the trips in flight finish; the slice's
 *   round trips and the server's CPU time over it (its process CPU clock,
 *   clock_getcpuclockid: every thread, nanoseconds) are recorded. The first W
 *   seconds (default 1) run slices that are not counted. Both servers are
 *   measured within a fraction of a second of each other, again and again,
 *   so the machine's drifts (other tenants, frequency) fall on both alike.
 *   Output: per server the round trips, CPU and CPU per round trip over all
 *   counted slices, "ratio" (B's CPU per round trip over A's, all slices) and
 *   "pair_ratio_median" (the median over consecutive A,B slice pairs).
 *
 * Output: one JSON line on stdout. Latencies are per round trip, from the first
 * byte written to the last byte read, in microseconds (1 us buckets up to 1 s).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define HIST_MAX 1000000 /* 1 us buckets up to 1 s; the last bucket holds everything slower */

enum { ST_CONNECTING, ST_SENDING, ST_RECEIVING, ST_IDLE, ST_CLOSED };

typedef struct conn {
    int fd;
    int state;
    size_t sent, recvd;
    uint64_t t0;
    unsigned char *rbuf;
    int want_out; /* EPOLLOUT currently registered */
} conn_t;

static const char *opt_host = "127.0.0.1";
static int opt_port = -1;
static int opt_conns = 1;
static size_t opt_size = 1024;
static double opt_seconds = 5;
static double opt_warmup = -1; /* -1: default (1 s in timed mode, 0 with --trips) */
static long long opt_trips = 0;
static int opt_idle = 0;
static double opt_churn = 0;
static int opt_server_pid = 0;
static int opt_alloc_signal = 0;
static int opt_inflight = 256;
static int opt_port_b = -1;
static int opt_pid_a = 0, opt_pid_b = 0;
static int opt_slices = 40;
static double opt_slice_ms = 100;

static struct sockaddr_storage addr;
static socklen_t addrlen;
static int epfd;
static unsigned char *sbuf;
static uint32_t *hist;
static volatile sig_atomic_t stop_flag;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "echo-load: %s: %s\n", msg, strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr,
            "usage: echo-load --host H --port N [--conns C] [--size S] [--seconds T] [--warmup W]\n"
            "                 [--trips N] [--server-pid PID] [--alloc-signal]\n"
            "       echo-load --host H --port N --idle C [--inflight K]\n"
            "       echo-load --host H --port N --churn T [--conns K] [--size S] [--warmup W]\n"
            "       echo-load --host H --port A --port-b B --pid PA --pid-b PB [--conns C] [--size S]\n"
            "                 [--slices N] [--slice-ms M] [--warmup W]\n");
    exit(2);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* utime+stime of a process in microseconds, or -1. */
static long long proc_cpu_us(int pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2; /* now at field 3 (state) */
    unsigned long long utime = 0, stime = 0;
    /* fields 3..13 skipped, 14 utime, 15 stime */
    if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (long long)((utime + stime) * 1000000ull / (unsigned long long)hz);
}

/* Busy time of all CPUs together (from the first line of /proc/stat), in microseconds. */
static long long system_busy_us(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8) return -1;
    /* user nice system idle iowait irq softirq steal (guest time is already in user) */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    long hz = sysconf(_SC_CLK_TCK);
    return (long long)(busy * 1000000ull / (unsigned long long)hz);
}

static long long self_cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
           (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
}

static void on_stop_signal(int sig) { (void)sig; stop_flag = 1; }

static void ep_set(conn_t *c, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl mod");
    c->want_out = want_out;
}

static int make_socket(void) {
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Start a non-blocking connect; registers the fd with epoll. Returns 0 or -errno. */
static int start_connect(conn_t *c) {
    c->fd = make_socket();
    c->sent = c->recvd = 0;
    c->want_out = 1;
    int r = connect(c->fd, (struct sockaddr *)&addr, addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(c->fd);
        c->fd = -1;
        c->state = ST_CLOSED;
        return -e;
    }
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl add");
    return 0;
}

/* Called on EPOLLOUT while connecting. Returns 0 when connected, -errno on failure. */
static int finish_connect(conn_t *c) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) return -err;
    return 0;
}

static void close_conn(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_CLOSED;
}

/* Write as much of the request as possible. Returns -1 on error. */
static int pump_send(conn_t *c) {
    while (c->sent < opt_size) {
        ssize_t n = send(c->fd, sbuf + c->sent, opt_size - c->sent, MSG_NOSIGNAL);
        if (n > 0) { c->sent += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) ep_set(c, 1);
            return 0;
        }
        return -1;
    }
    if (c->want_out) ep_set(c, 0);
    return 0;
}

static void begin_trip(conn_t *c) {
    c->sent = c->recvd = 0;
    c->state = ST_SENDING;
    c->t0 = now_ns();
}

/* Read what has arrived. Returns 1 when the trip completed, 0 if more is needed, -1 on error/EOF. */
static int pump_recv(conn_t *c) {
    for (;;) {
        size_t want = opt_size - c->recvd;
        if (want == 0) return 1;
        ssize_t n = recv(c->fd, c->rbuf + c->recvd, want, 0);
        if (n > 0) {
            if (memcmp(c->rbuf + c->recvd, sbuf + c->recvd, (size_t)n) != 0) return -1;
            c->recvd += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return c->recvd == opt_size;
        return -1; /* EOF or error */
    }
}

static double pct(const uint32_t *h, unsigned long long total, double q) {
    if (total == 0) return 0;
    unsigned long long target = (unsigned long long)(q * (double)total);
    if (target >= total) target = total - 1;
    unsigned long long acc = 0;
    for (int i = 0; i < HIST_MAX; i++) {
        acc += h[i];
        if (acc > target) return i;
    }
    return HIST_MAX;
}

/* Opens opt_conns connections (non-blocking, all in flight at once) to the
 * address in `addr`; each that is established is left ST_IDLE. Returns how
 * many are; failures are added to *errors. */
static int connect_all(conn_t *conns, unsigned long long *errors) {
    int alive = 0, pending = 0;
    for (int i = 0; i < opt_conns; i++) {
        conns[i].rbuf = malloc(opt_size);
        if (start_connect(&conns[i]) < 0) (*errors)++;
        else pending++;
    }
    struct epoll_event evs[512];
    uint64_t deadline = now_ns() + 30ull * 1000000000ull;
    while (pending > 0 && now_ns() < deadline) {
        int n = epoll_wait(epfd, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->state != ST_CONNECTING) continue;
            pending--;
            if (finish_connect(c) < 0) { (*errors)++; close_conn(c); continue; }
            c->state = ST_IDLE;
            ep_set(c, 0);
            alive++;
        }
    }
    return alive;
}

/* Starts a connection's next round trip. Returns -1 if it failed (the
 * connection is closed then), else 0. */
static int next_trip(conn_t *c) {
    begin_trip(c);
    if (pump_send(c) < 0) { close_conn(c); return -1; }
    return 0;
}

/* One epoll event of a connection in the closed loop. Returns -1 if the
 * connection failed (it is closed then), 1 if its round trip completed (it is
 * ST_IDLE then: next_trip starts the next one), 0 otherwise. */
static int echo_event(conn_t *c, uint32_t events) {
    if (events & EPOLLERR) { close_conn(c); return -1; }
    if ((events & EPOLLOUT) && c->sent < opt_size && pump_send(c) < 0) { close_conn(c); return -1; }
    if (!(events & (EPOLLIN | EPOLLHUP))) return 0;
    if (c->state != ST_SENDING) { close_conn(c); return -1; } /* data or EOF while idle: not an echo */
    int r = pump_recv(c);
    if (r < 0 || (r == 1 && c->sent < opt_size)) { close_conn(c); return -1; }
    if (r == 1) c->state = ST_IDLE;
    return r;
}

/* ---------------------------------------------------------------- echo mode */
static int run_echo(void) {
    conn_t *conns = calloc((size_t)opt_conns, sizeof *conns);
    int alive = 0;
    unsigned long long errors = 0;
    alive = connect_all(conns, &errors);
    struct epoll_event evs[512];
    if (alive == 0) {
        printf("{\"mode\":\"echo\",\"conns\":%d,\"size\":%zu,\"round_trips\":0,\"errors\":%llu,\"error\":\"no connection\"}\n",
               opt_conns, opt_size, errors);
        return 1;
    }

    double warm = opt_warmup >= 0 ? opt_warmup : (opt_trips > 0 ? 0 : 1.0);
    uint64_t t_start = now_ns();
    uint64_t t_measure = t_start + (uint64_t)(warm * 1e9);
    uint64_t t_end = opt_trips > 0 ? UINT64_MAX : t_measure + (uint64_t)(opt_seconds * 1e9);
    int measuring = 0;
    unsigned long long trips = 0, hist_n = 0;
    long long srv_cpu0 = -1, srv_cpu1 = -1, self_cpu0 = 0, self_cpu1 = 0, sys0 = -1, sys1 = -1;
    uint64_t win0 = 0, win1 = 0;

    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        if (c->state != ST_IDLE) continue;
        if (next_trip(c) < 0) { errors++; alive--; }
    }

    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure) {
            measuring = 1;
            trips = 0;
            memset(hist, 0, HIST_MAX * sizeof *hist);
            hist_n = 0;
            if (opt_alloc_signal && opt_server_pid) kill(opt_server_pid, SIGUSR2);
            if (opt_server_pid) srv_cpu0 = proc_cpu_us(opt_server_pid);
            self_cpu0 = self_cpu_us();
            sys0 = system_busy_us();
            win0 = now_ns();
        }
        if (measuring && (now >= t_end || (opt_trips > 0 && (long long)trips >= opt_trips))) break;
        if (alive == 0 || stop_flag) break;
        int n = epoll_wait(epfd, evs, 512, 5);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->state == ST_CLOSED) continue;
            int r = echo_event(c, evs[k].events);
            if (r < 0) { errors++; alive--; continue; }
            if (r == 1) {
                uint64_t lat_us = (now_ns() - c->t0) / 1000;
                if (lat_us >= HIST_MAX) lat_us = HIST_MAX - 1;
                hist[lat_us]++;
                hist_n++;
                trips++;
                if (opt_trips > 0 && measuring && (long long)trips >= opt_trips) continue;
                if (next_trip(c) < 0) { errors++; alive--; continue; }
            }
        }
    }
    win1 = now_ns();
    if (opt_server_pid) srv_cpu1 = proc_cpu_us(opt_server_pid);
    if (opt_alloc_signal && opt_server_pid) kill(opt_server_pid, SIGUSR2);
    self_cpu1 = self_cpu_us();
    sys1 = system_busy_us();
    if (!measuring) { win0 = win1; trips = 0; }

    double secs = (double)(win1 - win0) / 1e9;
    double rps = secs > 0 ? (double)trips / secs : 0;
    double mean = 0;
    { unsigned long long s = 0; for (int i = 0; i < HIST_MAX; i++) s += (unsigned long long)hist[i] * (unsigned long long)i;
      mean = hist_n ? (double)s / (double)hist_n : 0; }
    long long srv_cpu = (srv_cpu0 >= 0 && srv_cpu1 >= 0) ? srv_cpu1 - srv_cpu0 : -1;
    long long self_cpu = self_cpu1 - self_cpu0;
    /* CPU used by everything else on the machine during the window (noise indicator). */
    double other = (sys0 >= 0 && sys1 >= 0 && srv_cpu >= 0 && secs > 0)
        ? (double)(sys1 - sys0 - srv_cpu - self_cpu) / 1e6 / secs : -1;
    if (other < 0 && other > -0.15) other = 0; /* clock-tick rounding of the three readings */
    printf("{\"mode\":\"echo\",\"conns\":%d,\"size\":%zu,\"seconds\":%.6f,\"round_trips\":%llu,"
           "\"rt_per_s\":%.1f,\"mb_per_s\":%.3f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,\"mean_us\":%.1f,"
           "\"errors\":%llu,\"alive\":%d,\"server_cpu_us\":%lld,\"server_cpu_us_per_rt\":%.3f,"
           "\"loadgen_cpu_us\":%lld,\"loadgen_cpu_frac\":%.3f,\"other_cpu_frac\":%.3f}\n",
           opt_conns, opt_size, secs, trips, rps, rps * (double)opt_size / 1e6,
           pct(hist, hist_n, 0.50), pct(hist, hist_n, 0.99), pct(hist, hist_n, 0.999), mean,
           errors, alive, srv_cpu, (srv_cpu >= 0 && trips) ? (double)srv_cpu / (double)trips : -1.0,
           self_cpu, secs > 0 ? (double)self_cpu / 1e6 / secs : 0, other);
    fflush(stdout);
    for (int i = 0; i < opt_conns; i++) close_conn(&conns[i]);
    return trips > 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- A/B mode */
static void set_port(int port) {
    if (addr.ss_family == AF_INET6) ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)port);
    else ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)port);
}

static long long clock_ns(clockid_t clk) {
    struct timespec ts;
    if (clock_gettime(clk, &ts) < 0) return -1;
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One slice: drives set s's connections in the closed loop until `slice_ns`
 * have passed, then lets the trips in flight finish. Adds the completed round
 * trips to *trips. Returns 0, or -1 if a connection failed or the server hung
 * (10 s without finishing). */
static int run_slice(conn_t *conns[2], int s, int alive[2], unsigned long long *errors,
                     uint64_t slice_ns, unsigned long long *trips) {
    uint64_t end = now_ns() + slice_ns, give_up = end + 10ull * 1000000000ull;
    int busy = 0, failed = 0;
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[s][i];
        if (c->state != ST_IDLE) continue;
        if (next_trip(c) < 0) { (*errors)++; alive[s]--; failed = 1; } else busy++;
    }
    struct epoll_event evs[512];
    while (busy > 0 && !stop_flag) {
        uint64_t now = now_ns();
        if (now > give_up) return -1;
        int n = epoll_wait(epfd, evs, 512, 5);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        int open = now_ns() < end;
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->state == ST_CLOSED) continue;
            int other = c < conns[s] || c >= conns[s] + opt_conns;
            int r = echo_event(c, evs[k].events);  /* the other set is idle: any event there is a failure */
            if (r < 0) { (*errors)++; alive[other ? 1 - s : s]--; failed = 1; if (!other) busy--; continue; }
            if (r != 1) continue;
            (*trips)++;
            if (!open) { busy--; continue; }
            if (next_trip(c) < 0) { (*errors)++; alive[s]--; failed = 1; busy--; }
        }
    }
    return failed || stop_flag ? -1 : 0;
}

static int run_ab(void) {
    int ports[2] = {opt_port, opt_port_b}, pids[2] = {opt_pid_a, opt_pid_b};
    clockid_t clk[2];
    for (int s = 0; s < 2; s++)
        if (pids[s] <= 0 || clock_getcpuclockid(pids[s], &clk[s]) != 0 || clock_ns(clk[s]) < 0) {
            fprintf(stderr, "echo-load: --pid/--pid-b: no CPU clock for process %d\n", pids[s]);
            return 2;
        }
    conn_t *conns[2];
    int alive[2];
    unsigned long long errors = 0;
    for (int s = 0; s < 2; s++) {
        set_port(ports[s]);
        conns[s] = calloc((size_t)opt_conns, sizeof *conns[s]);
        alive[s] = connect_all(conns[s], &errors);
    }
    const char *failure = NULL;
    if (alive[0] < opt_conns || alive[1] < opt_conns) failure = "not every connection was established";
    double warm = opt_warmup >= 0 ? opt_warmup : 1.0;
    int warm_slices = 2 * (int)(warm * 1000.0 / opt_slice_ms / 2.0 + 0.5);
    uint64_t slice_ns = (uint64_t)(opt_slice_ms * 1e6);
    unsigned long long trips[2] = {0, 0};
    long long cpu[2] = {0, 0};
    double *pairs = calloc((size_t)opt_slices, sizeof *pairs);
    int npairs = 0;
    double a_per_rt = -1;
    for (int i = 0; !failure && i < warm_slices + 2 * opt_slices; i++) {
        int s = i % 2;
        unsigned long long n = 0;
        long long c0 = clock_ns(clk[s]);
        if (run_slice(conns, s, alive, &errors, slice_ns, &n) < 0) { failure = "a connection failed"; break; }
        long long c1 = clock_ns(clk[s]);
        if (c0 < 0 || c1 < 0) { failure = "a server's CPU clock could not be read (exited?)"; break; }
        if (i < warm_slices) continue;
        trips[s] += n;
        cpu[s] += c1 - c0;
        double per_rt = n ? (double)(c1 - c0) / (double)n : -1;
        if (s == 0) a_per_rt = per_rt;
        else if (a_per_rt > 0 && per_rt > 0) pairs[npairs++] = per_rt / a_per_rt;
    }
    qsort(pairs, (size_t)npairs, sizeof *pairs, cmp_double);
    double median = npairs == 0 ? -1 : (npairs % 2 ? pairs[npairs / 2] : (pairs[npairs / 2 - 1] + pairs[npairs / 2]) / 2);
    double per_rt[2];
    for (int s = 0; s < 2; s++) per_rt[s] = trips[s] ? (double)cpu[s] / 1e3 / (double)trips[s] : -1;
    printf("{\"mode\":\"ab\",\"conns\":%d,\"size\":%zu,\"slices\":%d,\"slice_ms\":%.1f,"
           "\"a\":{\"round_trips\":%llu,\"cpu_us\":%.1f,\"cpu_us_per_rt\":%.4f},"
           "\"b\":{\"round_trips\":%llu,\"cpu_us\":%.1f,\"cpu_us_per_rt\":%.4f},"
           "\"ratio\":%.4f,\"pair_ratio_median\":%.4f,\"pairs\":%d,\"errors\":%llu",
           opt_conns, opt_size, opt_slices, opt_slice_ms,
           trips[0], (double)cpu[0] / 1e3, per_rt[0], trips[1], (double)cpu[1] / 1e3, per_rt[1],
           per_rt[0] > 0 && per_rt[1] > 0 ? per_rt[1] / per_rt[0] : -1.0, median, npairs, errors);
    if (failure) printf(",\"error\":\"%s\"", failure);
    printf("}\n");
    fflush(stdout);
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < opt_conns; i++) close_conn(&conns[s][i]);
    return failure ? 1 : 0;
}

/* ---------------------------------------------------------------- idle mode */
static int run_idle(void) {
    const int max_inflight = opt_inflight;
    conn_t *conns = calloc((size_t)opt_idle, sizeof *conns);
    int next = 0, inflight = 0, established = 0, retries_left = 3 * opt_idle;
    unsigned long long errors = 0;
    struct epoll_event evs[512];
    uint64_t t0 = now_ns(), deadline = t0 + 120ull * 1000000000ull;
    while ((next < opt_idle || inflight > 0) && now_ns() < deadline && !stop_flag) {
        while (next < opt_idle && inflight < max_inflight) {
            if (start_connect(&conns[next]) < 0) {
                if (retries_left-- > 0) { usleep(1000); break; }
                errors++; next++;
                continue;
            }
            next++; inflight++;
        }
        int n = epoll_wait(epfd, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->state != ST_CONNECTING) continue;
            inflight--;
            if (finish_connect(c) < 0) {
                close_conn(c);
                if (retries_left-- > 0) { if (start_connect(c) == 0) inflight++; else errors++; }
                else errors++;
                continue;
            }
            c->state = ST_IDLE;
            /* Keep it registered for EPOLLIN only, to notice a server-side close. */
            ep_set(c, 0);
            established++;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("{\"mode\":\"idle\",\"requested\":%d,\"established\":%d,\"errors\":%llu,\"connect_seconds\":%.3f}\n",
           opt_idle, established, errors, secs);
    fflush(stdout);
    /* Hold until SIGTERM/SIGINT or EOF on stdin; count server-side closes. */
    int closed_by_server = 0;
    while (!stop_flag) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int r = poll(&p, 1, 200);
        if (r > 0) {
            char b[256];
            ssize_t m = read(0, b, sizeof b);
            if (m <= 0) break;
        }
        int n = epoll_wait(epfd, evs, 512, 0);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            char b[256];
            ssize_t m = recv(c->fd, b, sizeof b, 0);
            if (m == 0 || (m < 0 && errno != EAGAIN)) { close_conn(c); closed_by_server++; }
        }
    }
    for (int i = 0; i < opt_idle; i++) close_conn(&conns[i]);
    fprintf(stderr, "echo-load: idle: released %d connections (%d closed by server)\n", established, closed_by_server);
    return 0;
}

/* ---------------------------------------------------------------- churn mode */
static int run_churn(void) {
    conn_t *conns = calloc((size_t)opt_conns, sizeof *conns);
    unsigned long long done = 0, errors = 0, connect_errors = 0;
    struct epoll_event evs[512];
    double warm = opt_warmup >= 0 ? opt_warmup : (opt_trips > 0 ? 0 : 0.5);
    uint64_t t_start = now_ns();
    uint64_t t_measure = t_start + (uint64_t)(warm * 1e9);
    /* With --trips N: stop after N connections instead of after T seconds. */
    uint64_t t_end = opt_trips > 0 ? UINT64_MAX : t_measure + (uint64_t)(opt_churn * 1e9);
    int measuring = 0;
    uint64_t win0 = 0;
    long long srv0 = -1, srv1 = -1, self0 = 0, sys0 = -1, sys1 = -1;
    unsigned long long started = 0;
#define CAN_START() (opt_trips <= 0 || (long long)started < opt_trips)
    for (int i = 0; i < opt_conns; i++) {
        conns[i].rbuf = malloc(opt_size);
        conns[i].fd = -1;
        conns[i].state = ST_CLOSED;
        if (!CAN_START()) continue;
        started++;
        if (start_connect(&conns[i]) < 0) connect_errors++;
    }
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure) {
            measuring = 1; win0 = now;
            if (opt_trips <= 0) { done = 0; errors = 0; connect_errors = 0; }
            if (opt_alloc_signal && opt_server_pid) kill(opt_server_pid, SIGUSR2);
            if (opt_server_pid) srv0 = proc_cpu_us(opt_server_pid);
            self0 = self_cpu_us();
            sys0 = system_busy_us();
        }
        if (now >= t_end || stop_flag) break;
        if (opt_trips > 0 && !CAN_START() && done + errors + connect_errors >= started) break;
        /* (Re)start idle slots (after a completed or failed connection). */
        for (int i = 0; i < opt_conns; i++)
            if (conns[i].state == ST_CLOSED && conns[i].fd < 0 && CAN_START()) {
                started++;
                if (start_connect(&conns[i]) < 0) connect_errors++;
            }
        int n = epoll_wait(epfd, evs, 512, 5);
        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->state == ST_CLOSED) continue;
            if (c->state == ST_CONNECTING) {
                if (finish_connect(c) < 0) { connect_errors++; close_conn(c); continue; }
                begin_trip(c);
                ep_set(c, 0);
                if (pump_send(c) < 0) { errors++; close_conn(c); }
                continue;
            }
            if ((evs[k].events & EPOLLOUT) && c->sent < opt_size) {
                if (pump_send(c) < 0) { errors++; close_conn(c); continue; }
            }
            if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                int r = pump_recv(c);
                if (r < 0) { errors++; close_conn(c); continue; }
                if (r == 1) {
                    done++;
                    close_conn(c);
                    if (CAN_START()) {
                        started++;
                        if (start_connect(c) < 0) connect_errors++;
                    }
                }
            }
        }
    }
    double secs = (double)(now_ns() - win0) / 1e9;
    if (opt_server_pid) srv1 = proc_cpu_us(opt_server_pid);
    if (opt_alloc_signal && opt_server_pid) kill(opt_server_pid, SIGUSR2);
    long long self_cpu = self_cpu_us() - self0;
    sys1 = system_busy_us();
    long long srv = (srv0 >= 0 && srv1 >= 0) ? srv1 - srv0 : -1;
    double other = (sys0 >= 0 && sys1 >= 0 && srv >= 0 && secs > 0)
        ? (double)(sys1 - sys0 - srv - self_cpu) / 1e6 / secs : -1;
    if (other < 0 && other > -0.15) other = 0; /* clock-tick rounding of the three readings */
    printf("{\"mode\":\"churn\",\"conns\":%d,\"size\":%zu,\"seconds\":%.6f,\"connections\":%llu,"
           "\"conn_per_s\":%.1f,\"errors\":%llu,\"connect_errors\":%llu,\"server_cpu_us\":%lld,"
           "\"server_cpu_us_per_conn\":%.3f,\"loadgen_cpu_frac\":%.3f,\"other_cpu_frac\":%.3f}\n",
           opt_conns, opt_size, secs, done, secs > 0 ? done / secs : 0, errors, connect_errors, srv,
           (srv >= 0 && done) ? (double)srv / (double)done : -1.0, secs > 0 ? self_cpu / 1e6 / secs : 0, other);
    fflush(stdout);
    for (int i = 0; i < opt_conns; i++) close_conn(&conns[i]);
    return done > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) usage(); i++; } while (0)
        if (!strcmp(a, "--host")) { NEEDV(); opt_host = v; }
        else if (!strcmp(a, "--port")) { NEEDV(); opt_port = atoi(v); }
        else if (!strcmp(a, "--conns")) { NEEDV(); opt_conns = atoi(v); }
        else if (!strcmp(a, "--size")) { NEEDV(); opt_size = (size_t)atol(v); }
        else if (!strcmp(a, "--seconds")) { NEEDV(); opt_seconds = atof(v); }
        else if (!strcmp(a, "--warmup")) { NEEDV(); opt_warmup = atof(v); }
        else if (!strcmp(a, "--trips")) { NEEDV(); opt_trips = atoll(v); }
        else if (!strcmp(a, "--idle")) { NEEDV(); opt_idle = atoi(v); }
        else if (!strcmp(a, "--churn")) { NEEDV(); opt_churn = atof(v); }
        else if (!strcmp(a, "--server-pid")) { NEEDV(); opt_server_pid = atoi(v); }
        else if (!strcmp(a, "--alloc-signal")) { opt_alloc_signal = 1; }
        else if (!strcmp(a, "--inflight")) { NEEDV(); opt_inflight = atoi(v); }
        else if (!strcmp(a, "--port-b")) { NEEDV(); opt_port_b = atoi(v); }
        else if (!strcmp(a, "--pid")) { NEEDV(); opt_pid_a = atoi(v); }
        else if (!strcmp(a, "--pid-b")) { NEEDV(); opt_pid_b = atoi(v); }
        else if (!strcmp(a, "--slices")) { NEEDV(); opt_slices = atoi(v); }
        else if (!strcmp(a, "--slice-ms")) { NEEDV(); opt_slice_ms = atof(v); }
        else usage();
    }
    if (opt_port <= 0 || opt_conns <= 0 || opt_size == 0) usage();

    memset(&addr, 0, sizeof addr);
    if (strchr(opt_host, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)opt_port);
        if (inet_pton(AF_INET6, opt_host, &a6->sin6_addr) != 1) usage();
        addrlen = sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)opt_port);
        if (inet_pton(AF_INET, opt_host, &a4->sin_addr) != 1) usage();
        addrlen = sizeof *a4;
    }

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    sbuf = malloc(opt_size);
    for (size_t i = 0; i < opt_size; i++) sbuf[i] = (unsigned char)(i * 131u + 7u);
    hist = calloc(HIST_MAX, sizeof *hist);

    if (opt_idle > 0) return run_idle();
    if (opt_churn > 0) return run_churn();
    if (opt_port_b > 0) return run_ab();
    return run_echo();
}
