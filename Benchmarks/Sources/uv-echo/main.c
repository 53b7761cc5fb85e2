/*
 * uv-echo: idiomatic libuv echo server in plain C -- the floor for the benchmarks.
 *
 *   uv-echo --port N [--host 127.0.0.1]
 *
 * One static 64 KiB read buffer (reused; the loop is single-threaded and each
 * read is consumed before the next callback), uv_try_write first, uv_write for
 * whatever did not go out with a malloc'ed copy of the remainder, uv_signal for
 * SIGINT/SIGTERM. Prints "listening on PORT" once listening (port 0 = ephemeral).
 */
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigint_h, sigterm_h;
static char read_buf[65536];

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} write_req_t;

static void on_close(uv_handle_t *h) { free(h); }

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h; (void)suggested;
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

static void write_cb(uv_write_t *req, int status) {
    write_req_t *wr = (write_req_t *)req;
    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, on_close);
    free(wr->buf.base);
    free(wr);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    if (nread < 0) {
        if (!uv_is_closing((uv_handle_t *)stream))
            uv_close((uv_handle_t *)stream, on_close);
        return;
    }
    if (nread == 0) return;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int n = 0;
    /* Only try the direct write when nothing is queued, to keep the byte order. */
    if (stream->write_queue_size == 0) {
        n = uv_try_write(stream, &out, 1);
        if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
        else if (n < 0) {
            if (!uv_is_closing((uv_handle_t *)stream))
                uv_close((uv_handle_t *)stream, on_close);
            return;
        }
    }
    if ((size_t)n < (size_t)nread) {
        size_t rest = (size_t)nread - (size_t)n;
        write_req_t *wr = malloc(sizeof *wr);
        wr->buf = uv_buf_init(malloc(rest), (unsigned)rest);
        memcpy(wr->buf.base, buf->base + n, rest);
        int r = uv_write(&wr->req, stream, &wr->buf, 1, write_cb);
        if (r < 0) {
            free(wr->buf.base);
            free(wr);
            if (!uv_is_closing((uv_handle_t *)stream))
                uv_close((uv_handle_t *)stream, on_close);
        }
    }
}

static void on_connection(uv_stream_t *srv, int status) {
    if (status < 0) return;
    uv_tcp_t *client = malloc(sizeof *client);
    uv_tcp_init(loop, client);
    if (uv_accept(srv, (uv_stream_t *)client) == 0) {
        uv_tcp_nodelay(client, 1);
        uv_read_start((uv_stream_t *)client, alloc_cb, read_cb);
    } else {
        uv_close((uv_handle_t *)client, on_close);
    }
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) {
        /* Client handles are malloc'ed; the server and signal handles are static. */
        if (h->type == UV_TCP && h != (uv_handle_t *)&server) uv_close(h, on_close);
        else uv_close(h, NULL);
    }
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)signum;
    uv_walk(h->loop, close_any, NULL);
}

static void usage(void) {
    fprintf(stderr, "usage: uv-echo --port N [--host 127.0.0.1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else usage();
    }
    if (port < 0) usage();

    loop = uv_default_loop();
    uv_tcp_init(loop, &server);

    struct sockaddr_storage addr;
    int r;
    if (strchr(host, ':')) r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else r = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (r) { fprintf(stderr, "uv-echo: bad address %s: %s\n", host, uv_strerror(r)); return 1; }
    if ((r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0))) {
        fprintf(stderr, "uv-echo: bind: %s\n", uv_strerror(r)); return 1;
    }
    if ((r = uv_listen((uv_stream_t *)&server, 4096, on_connection))) {
        fprintf(stderr, "uv-echo: listen: %s\n", uv_strerror(r)); return 1;
    }

    uv_signal_init(loop, &sigint_h);
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm_h);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);

    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    int real_port = bound.ss_family == AF_INET6
        ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    printf("listening on %d\n", real_port);
    fflush(stdout);

    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
