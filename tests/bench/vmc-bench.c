/* vmc-bench.c — vmcmux-server against libspice-server, side by side, in one run.
 *
 * For each backend (`--backend native` and `--backend spice-server` of the same
 * vmcmux-server binary) the bench spawns the server as a child with a private socket
 * directory and a free loopback TCP port, and plays both ends itself: the SPICE client
 * over TCP (libvmc-client's sans-I/O VmcClient) and the guest agent on the UNIX guest
 * socket (VmcAgentPeer). Everything runs on one poll() loop in one thread.
 *
 * Figures, each measured for both backends one after the other (the order alternates
 * between rounds), over R rounds:
 *   - client->agent and agent->client bulk (64 KiB FILE_XFER_DATA messages), MB/s at
 *     the receiving end, byte count and a stream checksum verified;
 *   - server CPU per MiB for both bulk runs, and peak RSS (VmHWM) after them;
 *   - 64-byte echo round trips client->agent->client, p50 and p99;
 *   - link + ticket + INIT with a password;
 *   - client->agent bulk through a relay that holds every read for 5 ms each way;
 *   - the no-protocol limit: the same bytes through a trivial relay process
 *     (TCP in, UNIX socket out, and back), as the physical reference;
 *   - native only (libspice-server takes one client): peak RSS with 1 and with N (100)
 *     clients of one server (--max-clients N), each with AGENT_START and one message
 *     each way, and the time the N links take back to back.
 * The table gives median (min-max) per backend, the median of the per-round ratios,
 * and the targets of docs/performance.md.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <spice/protocol.h>
#include <spice/vd_agent.h>

#include "tools/client/vmc-agent-peer.h"
#include "tools/client/vmc-client.h"

#define BENCH_PASSWORD "bench-secret"
#define BENCH_TYPE VD_AGENT_FILE_XFER_DATA
#define MSG_PAYLOAD 65536u
#define ECHO_PAYLOAD 64u
#define POOL_SIZE (1024u * 1024u)
#define READ_BUF (256u * 1024u)
#define SEND_AHEAD (1024u * 1024u)   /* bytes a sender keeps queued ahead */
#define RELAY_MAX_HELD (64u * 1024u * 1024u)
#define MANY_TYPE 0x7E57u            /* an agent message type nobody interprets: forwarded */
#define MANY_PAYLOAD 64u
#define MANY_ECHO G_GUINT64_CONSTANT(0x8000000000000000) /* opaque bit: the agent echoes it */
#define NS_PER_S G_GINT64_CONSTANT(1000000000)
#define NS_PER_MS G_GINT64_CONSTANT(1000000)

/* ------------------------------------------------------------------------------ */
/* options */

static int opt_rounds = 3;
static int opt_mib = 64;
static char *opt_backend;
static char *opt_server;
static gboolean opt_quick;
static int opt_echo = 2000;
static int opt_links = 20;
static int opt_agent_window;
static int opt_agent_chunk;
static int opt_delay_ms = 5;
static gboolean opt_markdown;
static gboolean opt_verbose;
static int opt_timeout = 120;
static char *opt_only;
static int opt_clients = 100;

enum {
    ONLY_LINK = 1 << 0,
    ONLY_C2A = 1 << 1,
    ONLY_A2C = 1 << 2,
    ONLY_ECHO = 1 << 3,
    ONLY_DELAY = 1 << 4,
    ONLY_LIMIT = 1 << 5,
    ONLY_MANY = 1 << 6,
    ONLY_ALL = (1 << 7) - 1,
};
static guint only = ONLY_ALL;

static GOptionEntry entries[] = {
    {"rounds", 'r', 0, G_OPTION_ARG_INT, &opt_rounds, "Rounds (default 3)", "R"},
    {"mib", 'm', 0, G_OPTION_ARG_INT, &opt_mib, "MiB per bulk run (default 64)", "N"},
    {"backend", 'b', 0, G_OPTION_ARG_STRING, &opt_backend,
     "Measure one backend only: native or spice-server", "NAME"},
    {"server", 's', 0, G_OPTION_ARG_FILENAME, &opt_server,
     "vmcmux-server to run (default: the one built beside the bench)", "PATH"},
    {"quick", 'q', 0, G_OPTION_ARG_NONE, &opt_quick,
     "1 round, 8 MiB, 300 echoes, 5 links, 10 clients", NULL},
    {"echo", 0, 0, G_OPTION_ARG_INT, &opt_echo, "Echo round trips per run (default 2000)", "N"},
    {"links", 0, 0, G_OPTION_ARG_INT, &opt_links, "Links per run (default 20)", "N"},
    {"agent-window", 0, 0, G_OPTION_ARG_INT, &opt_agent_window,
     "Pass --agent-window N to the native backend (default: its own default)", "N"},
    {"agent-chunk", 0, 0, G_OPTION_ARG_INT, &opt_agent_chunk,
     "Agent->client chunk size (default 0: one chunk per message, as spice-vdagentd)", "N"},
    {"delay-ms", 0, 0, G_OPTION_ARG_INT, &opt_delay_ms,
     "One-way delay of the delaying relay (default 5)", "MS"},
    {"markdown", 0, 0, G_OPTION_ARG_NONE, &opt_markdown, "Print the table as Markdown", NULL},
    {"timeout", 0, 0, G_OPTION_ARG_INT, &opt_timeout,
     "Seconds allowed for one measurement (default 120)", "S"},
    {"only", 0, 0, G_OPTION_ARG_STRING, &opt_only,
     "Run only these parts (for profiling): link,c2a,a2c,echo,delay,limit,many", "LIST"},
    {"clients", 0, 0, G_OPTION_ARG_INT, &opt_clients,
     "Clients of the native many-clients figure (default 100)", "N"},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Progress on stderr", NULL},
    {NULL}};

static void note(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static void
note(const char *fmt, ...)
{
    va_list ap;

    if (!opt_verbose)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static guint64
self_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (guint64)ts.tv_sec * (guint64)NS_PER_S + (guint64)ts.tv_nsec;
}

static gint64
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (gint64)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ------------------------------------------------------------------------------ */
/* a stream checksum: the same value whatever the read sizes were. Four lanes (word i
 * goes to lane i % 4) so the multiplications do not wait for each other: the bench's
 * own CPU per byte should be as small as possible, in every run alike. */

typedef struct {
    guint64 h[4];
    guint64 bytes;
    guint lane;      /* lane of the next whole word */
    guint8 part[8];
    guint npart;
} Sum;

static void
sum_init(Sum *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 4; i++)
        s->h[i] = G_GUINT64_CONSTANT(0xcbf29ce484222325) + (guint64)i;
}

static inline guint64
mix(guint64 h, guint64 w)
{
    return (h ^ w) * G_GUINT64_CONSTANT(0x100000001b3);
}

static inline void
sum_word(Sum *s, const guint8 *p)
{
    guint64 w;

    memcpy(&w, p, 8);
    s->h[s->lane] = mix(s->h[s->lane], w);
    s->lane = (s->lane + 1) & 3;
}

static void
sum_feed(Sum *s, const guint8 *p, gsize n)
{
    s->bytes += n;
    if (s->npart > 0) {
        gsize take = MIN(n, (gsize)(8u - s->npart));
        memcpy(s->part + s->npart, p, take);
        s->npart += (guint)take;
        p += take;
        n -= take;
        if (s->npart < 8)
            return;
        sum_word(s, s->part);
        s->npart = 0;
    }
    while (n >= 8 && s->lane != 0) {
        sum_word(s, p);
        p += 8;
        n -= 8;
    }
    if (n >= 32) {
        guint64 h0 = s->h[0], h1 = s->h[1], h2 = s->h[2], h3 = s->h[3];
        for (; n >= 32; p += 32, n -= 32) {
            guint64 w[4];
            memcpy(w, p, 32);
            h0 = mix(h0, w[0]);
            h1 = mix(h1, w[1]);
            h2 = mix(h2, w[2]);
            h3 = mix(h3, w[3]);
        }
        s->h[0] = h0;
        s->h[1] = h1;
        s->h[2] = h2;
        s->h[3] = h3;
    }
    while (n >= 8) {
        sum_word(s, p);
        p += 8;
        n -= 8;
    }
    memcpy(s->part, p, n);
    s->npart = (guint)n;
}

static guint64
sum_value(const Sum *s)
{
    guint64 h = mix(mix(mix(s->h[0], s->h[1]), s->h[2]), s->h[3]);
    guint8 last[8] = {0};

    if (s->npart > 0) {
        guint64 w;
        memcpy(last, s->part, s->npart);
        memcpy(&w, last, 8);
        h = mix(h, w);
    }
    return mix(h, s->bytes);
}

/* Pseudo-random payload bytes, fixed seed: messages differ, runs repeat. */
static guint8 *pool;

static void
pool_init(void)
{
    GRand *r = g_rand_new_with_seed(0x5eed);

    pool = g_malloc(POOL_SIZE + MSG_PAYLOAD);
    for (gsize i = 0; i < POOL_SIZE + MSG_PAYLOAD; i += 4) {
        guint32 v = g_rand_int(r);
        memcpy(pool + i, &v, 4);
    }
    g_rand_free(r);
}

static const guint8 *
pool_at(guint64 index)
{
    return pool + ((index * 7919u) % (POOL_SIZE / 8u)) * 8u;
}

/* ------------------------------------------------------------------------------ */
/* sockets */

static int
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void
loopback(struct sockaddr_in *sa, guint16 port)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Blocking connect (loopback completes at once), then non-blocking. -1 on error. */
static int
tcp_connect(guint16 port)
{
    struct sockaddr_in sa;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    loopback(&sa, port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_nonblock(fd);
    return fd;
}

static int
tcp_listen(guint16 *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    loopback(&sa, 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port nobody listens on right now, for the server to bind. */
static guint16
free_tcp_port(void)
{
    guint16 port = 0;
    int fd = tcp_listen(&port);

    if (fd >= 0)
        close(fd);
    return port;
}

static gboolean
unix_address(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return FALSE;
    strcpy(sa->sun_path, path);
    return TRUE;
}

static int
unix_connect(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    if (!unix_address(path, &sa))
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    set_nonblock(fd);
    return fd;
}

static int
unix_listen(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    if (!unix_address(path, &sa))
        return -1;
    unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Accepts one connection, waiting at most timeout_ms. */
static int
accept_one(int lfd, int timeout_ms)
{
    struct pollfd pfd = {lfd, POLLIN, 0};
    int fd;

    if (poll(&pfd, 1, timeout_ms) <= 0)
        return -1;
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        set_nonblock(fd);
    return fd;
}

/* ------------------------------------------------------------------------------ */
/* the poll loop: pumps move bytes between sockets and sans-I/O objects */

typedef struct _Pump Pump;
/* Bytes read; len 0: the peer closed or the socket failed. */
typedef void (*PumpReadFunc)(Pump *p, const guint8 *buf, gsize len);
/* Output to send now (len 0: none); *due_ns: when held output becomes sendable (-1). */
typedef const guint8 *(*PumpPeekFunc)(Pump *p, gsize *len, gint64 *due_ns);
typedef void (*PumpConsumeFunc)(Pump *p, gsize n);

struct _Pump {
    int fd;
    gboolean dead;
    gboolean paused;
    PumpReadFunc on_read;
    PumpPeekFunc peek;
    PumpConsumeFunc consume;
    gpointer data;
};

#define MAX_PUMPS 1100
static Pump *pumps[MAX_PUMPS];
static guint n_pumps;
static guint8 *read_buf;
typedef void (*FeedFunc)(gpointer data);
static FeedFunc loop_feed;
static gpointer loop_feed_data;

static void
pump_add(Pump *p, int fd, gpointer data, PumpReadFunc rd, PumpPeekFunc peek,
         PumpConsumeFunc consume)
{
    g_assert(n_pumps < MAX_PUMPS);
    p->fd = fd;
    p->dead = FALSE;
    p->paused = FALSE;
    p->data = data;
    p->on_read = rd;
    p->peek = peek;
    p->consume = consume;
    pumps[n_pumps++] = p;
}

/* Unregisters and closes. Never from inside a pump callback. */
static void
pump_remove(Pump *p)
{
    for (guint i = 0; i < n_pumps; i++) {
        if (pumps[i] == p) {
            pumps[i] = pumps[--n_pumps];
            break;
        }
    }
    if (p->fd >= 0) {
        shutdown(p->fd, SHUT_RDWR);
        close(p->fd);
    }
    p->fd = -1;
    p->dead = TRUE;
}

static void
pump_die(Pump *p)
{
    if (p->dead)
        return;
    p->dead = TRUE;
    p->on_read(p, NULL, 0);
}

/* Sends what the pump has ready; returns its next due time (-1: none). */
static gint64
pump_flush(Pump *p, gboolean *want_out)
{
    *want_out = FALSE;
    while (!p->dead && p->peek) {
        gsize len = 0;
        gint64 due = -1;
        const guint8 *b = p->peek(p, &len, &due);
        if (len == 0)
            return due;
        gssize n = send(p->fd, b, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                *want_out = TRUE;
                return -1;
            }
            if (errno == EINTR)
                continue;
            pump_die(p);
            return -1;
        }
        p->consume(p, (gsize)n);
    }
    return -1;
}

static void
pump_read(Pump *p)
{
    for (int i = 0; i < 4 && !p->dead && !p->paused; i++) {
        gssize n = recv(p->fd, read_buf, READ_BUF, MSG_DONTWAIT);
        if (n > 0) {
            p->on_read(p, read_buf, (gsize)n);
            if ((gsize)n < READ_BUF)
                return;
        } else if (n == 0) {
            pump_die(p);
        } else if (errno == EINTR) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                pump_die(p);
            return;
        }
    }
}

typedef gboolean (*CondFunc)(gpointer data);

/* Runs the pumps until cond(data) (TRUE) or timeout_ns passes (FALSE). cond NULL:
 * just run for timeout_ns. */
static gboolean
loop_run(CondFunc cond, gpointer data, gint64 timeout_ns)
{
    gint64 deadline = now_ns() + timeout_ns;
    struct pollfd pfd[MAX_PUMPS];
    Pump *polled[MAX_PUMPS];

    for (;;) {
        gint64 next = deadline;
        guint n = 0;

        if (loop_feed)
            loop_feed(loop_feed_data);
        for (guint i = 0; i < n_pumps; i++) {
            gboolean want_out;
            gint64 due = pump_flush(pumps[i], &want_out);
            if (due >= 0 && due < next)
                next = due;
            if (pumps[i]->dead)
                continue;
            short ev = (short)((pumps[i]->paused ? 0 : POLLIN) | (want_out ? POLLOUT : 0));
            if (ev == 0)
                continue;
            pfd[n].fd = pumps[i]->fd;
            pfd[n].events = ev;
            pfd[n].revents = 0;
            polled[n++] = pumps[i];
        }
        if (cond && cond(data))
            return TRUE;
        gint64 now = now_ns();
        if (now >= deadline)
            return FALSE;
        gint64 wait = next > now ? next - now : 0;
        struct timespec ts = {(time_t)(wait / NS_PER_S), (long)(wait % NS_PER_S)};
        int r = ppoll(pfd, n, &ts, NULL);
        if (r < 0 && errno != EINTR)
            g_error("ppoll: %s", g_strerror(errno));
        for (guint i = 0; r > 0 && i < n; i++) {
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                pump_read(polled[i]);
        }
    }
}

/* ------------------------------------------------------------------------------ */
/* /proc: CPU time and peak RSS of the server under test */

/* CPU ns: the tasks' schedstat run time (ns precision) when readable, else
 * utime+stime from stat (clock ticks). */
static guint64
proc_cpu_ns(pid_t pid)
{
    g_autofree char *task_dir = g_strdup_printf("/proc/%d/task", (int)pid);
    GDir *dir = g_dir_open(task_dir, 0, NULL);
    guint64 total = 0;
    gboolean any = FALSE;

    if (dir) {
        const char *name;
        while ((name = g_dir_read_name(dir))) {
            g_autofree char *path = g_strdup_printf("%s/%s/schedstat", task_dir, name);
            g_autofree char *text = NULL;
            if (g_file_get_contents(path, &text, NULL, NULL)) {
                total += g_ascii_strtoull(text, NULL, 10);
                any = TRUE;
            }
        }
        g_dir_close(dir);
    }
    if (any)
        return total;

    g_autofree char *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    const char *p = strrchr(text, ')');
    if (!p)
        return 0;
    g_auto(GStrv) f = g_strsplit(p + 2, " ", 0);
    if (g_strv_length(f) < 13)
        return 0;
    /* after "pid (comm) ": state is field 3, utime 14 and stime 15 */
    guint64 ticks = g_ascii_strtoull(f[11], NULL, 10) + g_ascii_strtoull(f[12], NULL, 10);
    return ticks * (guint64)(NS_PER_S / sysconf(_SC_CLK_TCK));
}

static guint64
proc_status_kb(pid_t pid, const char *key)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree char *text = NULL;
    gsize klen = strlen(key);

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            return g_ascii_strtoull(line + klen + 1, NULL, 10);
        line = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* figures */

enum {
    FIG_C2A,
    FIG_A2C,
    FIG_C2A_CPU,
    FIG_A2C_CPU,
    FIG_RSS,
    FIG_ECHO_P50,
    FIG_ECHO_P99,
    FIG_ECHO_CPU,
    FIG_LINK,
    FIG_LINK_BURST,
    FIG_DELAY,
    FIG_C2A_SELF,
    FIG_A2C_SELF,
    N_FIGS
};

typedef struct {
    const char *label;
    const char *unit;
    int fmt_decimals;
    double target;      /* ratio native/reference to reach */
    gboolean higher;    /* the target is a floor (TRUE) or a ceiling */
    const char *target_text;
} FigureDef;

static const FigureDef figs[N_FIGS] = {
    [FIG_C2A] = {"client->agent bulk", "MB/s", 1, 3.0, TRUE, ">= 3x (or >= 80% of limit)"},
    [FIG_A2C] = {"agent->client bulk", "MB/s", 1, 3.0, TRUE, ">= 3x (or >= 80% of limit)"},
    [FIG_C2A_CPU] = {"server CPU, client->agent", "ms/MiB", 2, 1.0 / 3.0, FALSE, "<= 0.33x"},
    [FIG_A2C_CPU] = {"server CPU, agent->client", "ms/MiB", 2, 1.0 / 3.0, FALSE, "<= 0.33x"},
    [FIG_RSS] = {"server peak RSS (VmHWM)", "MB", 1, 1.0, FALSE, "<= 1x"},
    [FIG_ECHO_P50] = {"echo 64 B round trip p50", "us", 0, 0.7, FALSE, "<= 0.7x"},
    [FIG_ECHO_P99] = {"echo 64 B round trip p99", "us", 0, 0.7, FALSE, "<= 0.7x"},
    [FIG_ECHO_CPU] = {"server CPU per echo round trip", "us", 1, 0, FALSE, NULL},
    [FIG_LINK] = {"link + ticket + INIT", "ms", 2, 0.2, FALSE, "<= 0.2x"},
    /* the same links back to back, without waiting for the server to go idle */
    [FIG_LINK_BURST] = {"link + ticket + INIT, back to back", "ms", 2, 0, FALSE, NULL},
    [FIG_DELAY] = {"client->agent, +10 ms RTT", "MB/s", 2, 20.0, TRUE, ">= 20x"},
    /* the bench's own CPU (client + agent): when it nears 1 s per second, the
     * throughput figure is the bench's, not the server's */
    [FIG_C2A_SELF] = {"bench CPU, client->agent", "ms/MiB", 2, 0, TRUE, NULL},
    [FIG_A2C_SELF] = {"bench CPU, agent->client", "ms/MiB", 2, 0, TRUE, NULL},
};

enum { LIM_C2A, LIM_A2C, LIM_CPU, LIM_SELF, LIM_ECHO_P50, LIM_ECHO_P99, N_LIMS };
static const char *const lim_labels[N_LIMS] = {
    "no-protocol relay TCP->UNIX", "no-protocol relay UNIX->TCP", "relay CPU, TCP->UNIX",
    "bench CPU, TCP->UNIX", "no-protocol echo p50", "no-protocol echo p99"};
static const char *const lim_units[N_LIMS] = {"MB/s", "MB/s", "ms/MiB", "ms/MiB", "us", "us"};
static const int lim_decimals[N_LIMS] = {1, 1, 2, 2, 0, 0};

static GArray *lim_values[N_LIMS];

/* native only: one server with --max-clients N */
enum { MANY_RSS1, MANY_RSSN, MANY_PER_CLIENT, MANY_LINKS, MANY_ECHO_MAX, N_MANYS };
static const char *const many_labels[N_MANYS] = {
    "peak RSS, 1 client of N max", "peak RSS, N clients", "peak RSS per added client",
    "N - 1 links back to back", "echo max meanwhile (1st client)"};
static const char *const many_units[N_MANYS] = {"MB", "MB", "KB", "ms", "ms"};
static const int many_decimals[N_MANYS] = {1, 1, 1, 0, 2};
static GArray *many_values[N_MANYS];

/* ------------------------------------------------------------------------------ */
/* one backend: the server process, its agent and its client */

typedef enum {
    MODE_IDLE,
    MODE_WARM,  /* probes until one comes back */
    MODE_C2A,
    MODE_A2C,
    MODE_ECHO,
} Mode;

typedef struct {
    Mode mode;
    guint64 tag;        /* opaque of this phase's messages; others are ignored */
    guint64 total;      /* payload bytes to move */
    guint64 queued;     /* payload bytes handed to the sender */
    guint64 msgs_queued;
    guint64 received;
    Sum tx, rx;
    gboolean done;
    gboolean failed;
    char *why;
    /* echo / warm */
    guint echo_n;
    guint echo_i;
    gint64 echo_t0;
    gint64 next_probe;
    GArray *rtt_ns;
} Phase;

typedef struct {
    GQueue held;        /* Held*: bytes read from the other side, with their due time */
    gsize held_bytes;
    gsize head_off;
} RelayDir;

typedef struct _Backend Backend;

typedef struct {
    Backend *b;
    int lfd;
    guint16 port;
    Pump front;         /* the client's side */
    Pump back;          /* the server's side */
    RelayDir to_back, to_front;
    gint64 delay_ns;
} Relay;

struct _Backend {
    const char *name;
    const char *backend;  /* --backend, when not `name` */
    gboolean available;
    char *why_unavailable;
    pid_t pid;
    guint16 port;
    char *guest_path;
    char *log_path;
    gboolean running;

    VmcAgentPeer *agent;
    Pump agent_pump;
    gboolean agent_open;
    VmcClient *client;
    Pump client_pump;
    gboolean client_open;
    Relay *relay;

    Phase ph;
    guint max_clients;  /* > 1: --max-clients (the many-clients server) */
    guint many_rx;      /* MANY_TYPE messages the agent received */
    guint64 violations;
    GArray *values[N_FIGS];   /* per round; NAN when not measured */
};

static Backend backends[2] = {
    {.name = "native"},
    {.name = "spice-server"},
};
static char *tmp_dir;
static guint64 next_tag = 0x6265000000000000ull;
static gboolean data_error;

static void phase_fail(Backend *b, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void
phase_fail(Backend *b, const char *fmt, ...)
{
    va_list ap;

    if (b->ph.failed)
        return;
    b->ph.failed = TRUE;
    va_start(ap, fmt);
    b->ph.why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    note("[%s] %s", b->name, b->ph.why);
}

static void
phase_reset(Backend *b, Mode mode, guint64 total)
{
    Phase *ph = &b->ph;

    g_free(ph->why);
    if (ph->rtt_ns)
        g_array_unref(ph->rtt_ns);
    memset(ph, 0, sizeof(*ph));
    ph->mode = mode;
    ph->tag = ++next_tag;
    ph->total = total;
    sum_init(&ph->tx);
    sum_init(&ph->rx);
    ph->rtt_ns = g_array_new(FALSE, FALSE, sizeof(gint64));
}

static gboolean
phase_finished(gpointer data)
{
    Backend *b = data;
    return b->ph.done || b->ph.failed;
}

/* ---- the bulk payload ---- */

static guint8 scratch[MSG_PAYLOAD];
#define N_MSGS 16u
static guint8 *msgs; /* N_MSGS full-size payloads, made once: no copy per message */

/* A FILE_XFER_DATA body: id 1, size, then pool data from `src`. */
static void
fill_payload(guint8 *p, const guint8 *src, gsize len)
{
    memcpy(p, src, len);
    if (len >= 12) {
        guint64 size = len - 12;
        p[0] = 1; p[1] = 0; p[2] = 0; p[3] = 0;   /* xfer id 1 */
        for (int i = 0; i < 8; i++)
            p[4 + i] = (guint8)(size >> (8 * i));
    }
}

static void
msgs_init(void)
{
    msgs = g_malloc((gsize)N_MSGS * MSG_PAYLOAD);
    for (guint i = 0; i < N_MSGS; i++)
        fill_payload(msgs + (gsize)i * MSG_PAYLOAD, pool_at(i), MSG_PAYLOAD);
}

/* Payload `index` of a bulk run of `total` bytes (borrowed until the next call). */
static const guint8 *
payload_at(guint64 index, guint64 total, gsize *len_out)
{
    gsize len = (gsize)MIN((guint64)MSG_PAYLOAD, total - index * MSG_PAYLOAD);

    *len_out = len;
    if (len == MSG_PAYLOAD)
        return msgs + (gsize)(index % N_MSGS) * MSG_PAYLOAD;
    fill_payload(scratch, pool_at(index), len);
    return scratch;
}

/* The checksum the receiver must reach, computed before the run (the sender does no
 * per-byte work of its own but the protocol's). */
static void
expect_sum(Phase *ph)
{
    guint64 n = (ph->total + MSG_PAYLOAD - 1) / MSG_PAYLOAD;

    for (guint64 i = 0; i < n; i++) {
        gsize len;
        const guint8 *p = payload_at(i, ph->total, &len);
        sum_feed(&ph->tx, p, len);
    }
}

/* The next bulk message's payload (borrowed until the next call). */
static const guint8 *
make_payload(Phase *ph, gsize *len_out)
{
    const guint8 *p = payload_at(ph->msgs_queued, ph->total, len_out);

    ph->queued += *len_out;
    ph->msgs_queued++;
    return p;
}

static void
bulk_received(Backend *b, GBytes *body)
{
    Phase *ph = &b->ph;
    gsize len;
    const guint8 *d = g_bytes_get_data(body, &len);

    sum_feed(&ph->rx, d, len);
    ph->received += len;
    if (ph->received > ph->total) {
        phase_fail(b, "received %" G_GUINT64_FORMAT " bytes, more than the %" G_GUINT64_FORMAT
                   " sent", ph->received, ph->total);
        data_error = TRUE;
    } else if (ph->received == ph->total) {
        if (sum_value(&ph->rx) != sum_value(&ph->tx)) {
            phase_fail(b, "checksum mismatch after %" G_GUINT64_FORMAT " bytes", ph->received);
            data_error = TRUE;
        } else {
            ph->done = TRUE;
        }
    }
}

static void
send_probe(Backend *b)
{
    Phase *ph = &b->ph;
    guint8 payload[ECHO_PAYLOAD];

    memcpy(payload, pool_at(ph->echo_i + 12345), sizeof(payload));
    for (int i = 0; i < 4; i++)
        payload[i] = (guint8)(ph->echo_i >> (8 * i));
    ph->echo_t0 = now_ns();
    vmc_client_send_agent_message(b->client, BENCH_TYPE, ph->tag, payload, sizeof(payload));
}

static void
probe_returned(Backend *b, GBytes *body)
{
    Phase *ph = &b->ph;
    gsize len;
    const guint8 *d = g_bytes_get_data(body, &len);

    if (ph->mode == MODE_WARM) {
        ph->done = TRUE;
        return;
    }
    guint32 seq = len >= 4 ? (guint32)d[0] | (guint32)d[1] << 8 | (guint32)d[2] << 16 |
                                 (guint32)d[3] << 24
                           : G_MAXUINT32;
    if (len != ECHO_PAYLOAD || seq != ph->echo_i) {
        phase_fail(b, "echo %u came back as %u (%zu bytes)", ph->echo_i, seq, (size_t)len);
        data_error = TRUE;
        return;
    }
    gint64 rtt = now_ns() - ph->echo_t0;
    g_array_append_val(ph->rtt_ns, rtt);
    if (++ph->echo_i >= ph->echo_n)
        ph->done = TRUE;
    else
        send_probe(b);
}

/* Keeps the senders of the current phase fed; called every loop iteration. */
static void
phase_feed(gpointer data)
{
    Backend *b = data;
    Phase *ph = &b->ph;

    if (ph->done || ph->failed)
        return;
    switch (ph->mode) {
    case MODE_C2A:
        while (ph->queued < ph->total && b->client) {
            gsize out_len;
            vmc_client_output(b->client, &out_len);
            if (vmc_client_agent_pending(b->client) + out_len >= SEND_AHEAD)
                break;
            gsize len;
            const guint8 *p = make_payload(ph, &len);
            vmc_client_send_agent_message(b->client, BENCH_TYPE, ph->tag, p, len);
        }
        break;
    case MODE_A2C:
        while (ph->queued < ph->total && b->agent) {
            gsize out_len;
            vmc_agent_peer_output(b->agent, &out_len);
            if (out_len >= SEND_AHEAD)
                break;
            gsize len;
            const guint8 *p = make_payload(ph, &len);
            vmc_agent_peer_send(b->agent, VMC_PORT_CLIENT, BENCH_TYPE, ph->tag, p, len);
        }
        break;
    case MODE_WARM:
        if (b->client && vmc_client_agent_started(b->client) && now_ns() >= ph->next_probe) {
            send_probe(b);
            ph->echo_i++;
            ph->next_probe = now_ns() + 200 * NS_PER_MS;
        }
        break;
    default:
        break;
    }
}

/* ---- the client side ---- */

static void
client_events(Backend *b)
{
    VmcClientEvent ev;

    while (vmc_client_next_event(b->client, &ev)) {
        switch (ev.type) {
        case VMC_CLIENT_EV_AGENT_MESSAGE:
            if (ev.agent.type != BENCH_TYPE || ev.agent.opaque != b->ph.tag || b->ph.done)
                break;
            if (ev.truncated) {
                phase_fail(b, "agent message truncated by the client");
                break;
            }
            if (b->ph.mode == MODE_A2C)
                bulk_received(b, ev.body);
            else if (b->ph.mode == MODE_ECHO || b->ph.mode == MODE_WARM)
                probe_returned(b, ev.body);
            break;
        case VMC_CLIENT_EV_LINK_FAILED:
            phase_fail(b, "link failed (code %u)", ev.code);
            break;
        case VMC_CLIENT_EV_PROTOCOL_ERROR:
            phase_fail(b, "client: server protocol error: %s", ev.detail ? ev.detail : "?");
            data_error = TRUE;
            break;
        case VMC_CLIENT_EV_AGENT_DISCONNECTED:
            phase_fail(b, "agent disconnected (error %u)", ev.code);
            break;
        default:
            break;
        }
        vmc_client_event_clear(&ev);
    }
}

static void
client_read(Pump *p, const guint8 *buf, gsize len)
{
    Backend *b = p->data;

    if (len == 0) {
        vmc_client_feed_eof(b->client);
        b->client_open = FALSE;
        phase_fail(b, "the client connection closed%s%s",
                   vmc_client_get_last_error(b->client) ? ": " : "",
                   vmc_client_get_last_error(b->client) ? vmc_client_get_last_error(b->client)
                                                        : "");
    } else {
        vmc_client_feed(b->client, buf, len);
    }
    client_events(b);
}

static const guint8 *
client_peek(Pump *p, gsize *len, gint64 *due)
{
    Backend *b = p->data;
    return vmc_client_output(b->client, len);
}

static void
client_consume(Pump *p, gsize n)
{
    Backend *b = p->data;
    vmc_client_output_consume(b->client, n);
}

static void
client_close(Backend *b)
{
    if (b->client_open || b->client_pump.fd >= 0)
        pump_remove(&b->client_pump);
    b->client_open = FALSE;
    g_clear_pointer(&b->client, vmc_client_free);
}

/* Starts a client on fd (connected to the server or to a relay). */
static void
client_open(Backend *b, int fd)
{
    VmcClientConfig cfg;

    vmc_client_config_init(&cfg);
    cfg.password = BENCH_PASSWORD;
    cfg.agent_grant = VMC_AGENT_TOKENS_UNLIMITED;
    cfg.auto_agent_start = TRUE;
    cfg.auto_pong = TRUE;
    cfg.max_agent_message = 1024 * 1024;
    cfg.agent_data_messages = FALSE; /* only whole agent messages: no copy per AGENT_DATA */
    b->client = vmc_client_new(&cfg);
    pump_add(&b->client_pump, fd, b, client_read, client_peek, client_consume);
    b->client_open = TRUE;
}

static gboolean
client_has_init(gpointer data)
{
    Backend *b = data;
    VmcMainInit init;
    return b->ph.failed || (b->client && vmc_client_get_init(b->client, &init));
}

/* ---- the agent side ---- */

static void
agent_events(Backend *b)
{
    VmcAgentPeerEvent ev;

    while (vmc_agent_peer_next_event(b->agent, &ev)) {
        if (ev.type == VMC_AGENT_PEER_EV_VIOLATION) {
            b->violations++;
            note("[%s] agent saw a framing violation: %s", b->name, ev.detail);
        } else if (ev.type == VMC_AGENT_PEER_EV_MESSAGE && ev.port == VMC_PORT_CLIENT &&
                   ev.header.type == MANY_TYPE) {
            if (ev.header.opaque & MANY_ECHO) {
                gsize len;
                const guint8 *d = g_bytes_get_data(ev.body, &len);
                vmc_agent_peer_send(b->agent, VMC_PORT_CLIENT, MANY_TYPE, ev.header.opaque, d,
                                    len);
            } else {
                b->many_rx++;
            }
        } else if (ev.type == VMC_AGENT_PEER_EV_MESSAGE && ev.port == VMC_PORT_CLIENT &&
                   ev.header.type == BENCH_TYPE && ev.header.opaque == b->ph.tag &&
                   !b->ph.done) {
            if (ev.truncated) {
                phase_fail(b, "agent message truncated by the agent peer");
            } else if (b->ph.mode == MODE_C2A) {
                bulk_received(b, ev.body);
            } else if (b->ph.mode == MODE_ECHO || b->ph.mode == MODE_WARM) {
                gsize len;
                const guint8 *d = g_bytes_get_data(ev.body, &len);
                vmc_agent_peer_send(b->agent, VMC_PORT_CLIENT, BENCH_TYPE, ev.header.opaque, d,
                                    len);
            }
        }
        vmc_agent_peer_event_clear(&ev);
    }
}

static void
agent_read(Pump *p, const guint8 *buf, gsize len)
{
    Backend *b = p->data;

    if (len == 0) {
        b->agent_open = FALSE;
        phase_fail(b, "the server closed the guest port");
        return;
    }
    vmc_agent_peer_feed(b->agent, buf, len);
    agent_events(b);
}

static const guint8 *
agent_peek(Pump *p, gsize *len, gint64 *due)
{
    Backend *b = p->data;
    return vmc_agent_peer_output(b->agent, len);
}

static void
agent_consume(Pump *p, gsize n)
{
    Backend *b = p->data;
    vmc_agent_peer_output_consume(b->agent, n);
}

/* ---- the delaying relay ---- */

typedef struct {
    gint64 due;
    GBytes *bytes;
} Held;

static void
relay_dir_clear(RelayDir *d)
{
    Held *h;
    while ((h = g_queue_pop_head(&d->held))) {
        g_bytes_unref(h->bytes);
        g_free(h);
    }
    d->held_bytes = 0;
    d->head_off = 0;
}

static void
relay_hold(Relay *r, RelayDir *d, Pump *reader, const guint8 *buf, gsize len)
{
    Held *h = g_new(Held, 1);

    h->due = now_ns() + r->delay_ns;
    h->bytes = g_bytes_new(buf, len);
    g_queue_push_tail(&d->held, h);
    d->held_bytes += len;
    if (d->held_bytes > RELAY_MAX_HELD)
        reader->paused = TRUE;
}

static const guint8 *
relay_dir_peek(RelayDir *d, gsize *len, gint64 *due)
{
    Held *h = g_queue_peek_head(&d->held);
    gsize blen;
    const guint8 *data;

    *len = 0;
    if (!h)
        return NULL;
    if (h->due > now_ns()) {
        *due = h->due;
        return NULL;
    }
    data = g_bytes_get_data(h->bytes, &blen);
    *len = blen - d->head_off;
    return data + d->head_off;
}

static void
relay_dir_consume(RelayDir *d, Pump *reader, gsize n)
{
    Held *h = g_queue_peek_head(&d->held);
    gsize blen = g_bytes_get_size(h->bytes);

    d->head_off += n;
    d->held_bytes -= n;
    if (d->head_off == blen) {
        g_queue_pop_head(&d->held);
        g_bytes_unref(h->bytes);
        g_free(h);
        d->head_off = 0;
    }
    if (reader->paused && d->held_bytes <= RELAY_MAX_HELD / 2)
        reader->paused = FALSE;
}

static void
relay_front_read(Pump *p, const guint8 *buf, gsize len)
{
    Relay *r = p->data;
    if (len == 0)
        phase_fail(r->b, "relay: the client side closed");
    else
        relay_hold(r, &r->to_back, p, buf, len);
}

static void
relay_back_read(Pump *p, const guint8 *buf, gsize len)
{
    Relay *r = p->data;
    if (len == 0)
        phase_fail(r->b, "relay: the server side closed");
    else
        relay_hold(r, &r->to_front, p, buf, len);
}

static const guint8 *
relay_front_peek(Pump *p, gsize *len, gint64 *due)
{
    Relay *r = p->data;
    return relay_dir_peek(&r->to_front, len, due);
}

static const guint8 *
relay_back_peek(Pump *p, gsize *len, gint64 *due)
{
    Relay *r = p->data;
    return relay_dir_peek(&r->to_back, len, due);
}

static void
relay_front_consume(Pump *p, gsize n)
{
    Relay *r = p->data;
    relay_dir_consume(&r->to_front, &r->back, n);
}

static void
relay_back_consume(Pump *p, gsize n)
{
    Relay *r = p->data;
    relay_dir_consume(&r->to_back, &r->front, n);
}

static void
relay_free(Relay *r)
{
    if (!r)
        return;
    if (r->front.fd >= 0)
        pump_remove(&r->front);
    if (r->back.fd >= 0)
        pump_remove(&r->back);
    if (r->lfd >= 0)
        close(r->lfd);
    relay_dir_clear(&r->to_back);
    relay_dir_clear(&r->to_front);
    g_free(r);
}

/* A client connected through a relay that delays every read by delay_ns. */
static int
relay_open(Backend *b, gint64 delay_ns)
{
    Relay *r = g_new0(Relay, 1);
    int cfd, afd, sfd;

    r->b = b;
    r->delay_ns = delay_ns;
    r->front.fd = r->back.fd = -1;
    g_queue_init(&r->to_back.held);
    g_queue_init(&r->to_front.held);
    r->lfd = tcp_listen(&r->port);
    if (r->lfd < 0) {
        relay_free(r);
        return -1;
    }
    cfd = tcp_connect(r->port);
    afd = cfd >= 0 ? accept_one(r->lfd, 1000) : -1;
    sfd = afd >= 0 ? tcp_connect(b->port) : -1;
    if (sfd < 0) {
        if (cfd >= 0)
            close(cfd);
        if (afd >= 0)
            close(afd);
        relay_free(r);
        return -1;
    }
    int one = 1;
    setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pump_add(&r->front, afd, r, relay_front_read, relay_front_peek, relay_front_consume);
    pump_add(&r->back, sfd, r, relay_back_read, relay_back_peek, relay_back_consume);
    b->relay = r;
    return cfd;
}

/* ---- the server process ---- */

static void
server_stop(Backend *b)
{
    client_close(b);
    g_clear_pointer(&b->relay, relay_free);
    if (b->agent_pump.fd >= 0 && (b->agent_open || !b->agent_pump.dead))
        pump_remove(&b->agent_pump);
    b->agent_pump.fd = -1;
    b->agent_open = FALSE;
    g_clear_pointer(&b->agent, vmc_agent_peer_free);
    if (b->pid > 0) {
        int status;
        kill(b->pid, SIGTERM);
        for (int i = 0; i < 200; i++) {
            if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
                b->pid = 0;
                break;
            }
            g_usleep(10000);
        }
        if (b->pid > 0) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &status, 0);
            b->pid = 0;
        }
    }
    b->running = FALSE;
}

static char *
log_tail(const char *path)
{
    g_autofree char *text = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &text, &len, NULL) || len == 0)
        return g_strdup("(no output)");
    const char *start = len > 600 ? text + len - 600 : text;
    return g_strstrip(g_strdup(start));
}

/* Spawns the server and connects the agent to its guest socket. On failure the
 * backend is left stopped with a reason. */
static gboolean
server_start(Backend *b, char **why)
{
    g_autofree char *listen = NULL;
    g_autofree char *guest = NULL;
    g_autofree char *window = NULL;
    g_autofree char *maxc = NULL;
    GPtrArray *argv = g_ptr_array_new();
    int status;

    b->port = free_tcp_port();
    g_free(b->guest_path);
    g_free(b->log_path);
    b->guest_path = g_strdup_printf("%s/guest-%s.sock", tmp_dir, b->name);
    b->log_path = g_strdup_printf("%s/server-%s.log", tmp_dir, b->name);
    unlink(b->guest_path);
    listen = g_strdup_printf("127.0.0.1:%u", b->port);
    guest = g_strdup_printf("unix:%s", b->guest_path);

    g_ptr_array_add(argv, opt_server);
    g_ptr_array_add(argv, "--listen");
    g_ptr_array_add(argv, listen);
    g_ptr_array_add(argv, "--guest");
    g_ptr_array_add(argv, guest);
    g_ptr_array_add(argv, "--password");
    g_ptr_array_add(argv, BENCH_PASSWORD);
    g_ptr_array_add(argv, "--backend");
    g_ptr_array_add(argv, (char *)(b->backend ? b->backend : b->name));
    if (b->max_clients > 1) {
        maxc = g_strdup_printf("%u", b->max_clients);
        g_ptr_array_add(argv, "--max-clients");
        g_ptr_array_add(argv, maxc);
    }
    if (opt_agent_window > 0 && strcmp(b->backend ? b->backend : b->name, "native") == 0) {
        window = g_strdup_printf("%d", opt_agent_window);
        g_ptr_array_add(argv, "--agent-window");
        g_ptr_array_add(argv, window);
    }
    g_ptr_array_add(argv, NULL);

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        *why = g_strdup_printf("fork: %s", g_strerror(errno));
        g_ptr_array_free(argv, TRUE);
        return FALSE;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int fd = open(b->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        execv(opt_server, (char **)argv->pdata);
        _exit(127);
    }
    g_ptr_array_free(argv, TRUE);
    b->pid = pid;
    b->running = TRUE;

    /* the server is up once its guest socket accepts */
    gint64 deadline = now_ns() + 10 * NS_PER_S;
    int fd = -1;
    while (fd < 0) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            g_autofree char *tail = log_tail(b->log_path);
            b->pid = 0;
            b->running = FALSE;
            *why = g_strdup_printf("the server exited (status %d): %s",
                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1, tail);
            return FALSE;
        }
        fd = unix_connect(b->guest_path);
        if (fd < 0) {
            if (now_ns() > deadline) {
                *why = g_strdup("the guest socket did not appear within 10 s");
                server_stop(b);
                return FALSE;
            }
            g_usleep(5000);
        }
    }
    b->agent = vmc_agent_peer_new();
    vmc_agent_peer_set_max_chunk(b->agent, (gsize)opt_agent_chunk);
    vmc_agent_peer_set_max_message(b->agent, 1024 * 1024);
    pump_add(&b->agent_pump, fd, b, agent_read, agent_peek, agent_consume);
    b->agent_open = TRUE;
    /* as spice-vdagentd does when it opens the port */
    vmc_agent_peer_announce_caps(b->agent, FALSE, VMC_AGENT_PEER_DEFAULT_CAPS);
    return TRUE;
}

/* Connects to the server's TCP port, retrying while it is not listening yet. */
static int
server_connect(Backend *b)
{
    gint64 deadline = now_ns() + 5 * NS_PER_S;

    for (;;) {
        int fd = tcp_connect(b->port);
        if (fd >= 0 || errno != ECONNREFUSED || now_ns() > deadline)
            return fd;
        g_usleep(2000);
    }
}

/* Runs the loop until the server's CPU use stops (background work after a link,
 * such as key generation, must not count in the next figure). */
static void
settle(Backend *b)
{
    gint64 deadline = now_ns() + 3 * NS_PER_S;

    while (b->pid > 0 && now_ns() < deadline) {
        guint64 c0 = proc_cpu_ns(b->pid);
        loop_run(NULL, NULL, 20 * NS_PER_MS);
        if (proc_cpu_ns(b->pid) - c0 < 500000)
            return;
    }
}

/* ------------------------------------------------------------------------------ */
/* the measurements */

static gint64
timeout_ns(void)
{
    return (gint64)opt_timeout * NS_PER_S;
}

static void
record(Backend *b, int fig, guint round, double v)
{
    g_array_index(b->values[fig], double, round) = v;
}

static const char *
phase_error(Backend *b)
{
    return b->ph.why ? b->ph.why : "timed out";
}

static int
cmp_double(gconstpointer a, gconstpointer b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int
cmp_i64(gconstpointer a, gconstpointer b)
{
    gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;
    return x < y ? -1 : x > y;
}

static double
median_of(GArray *a)
{
    g_autoptr(GArray) s = g_array_new(FALSE, FALSE, sizeof(double));

    for (guint i = 0; i < a->len; i++) {
        double v = g_array_index(a, double, i);
        if (!isnan(v))
            g_array_append_val(s, v);
    }
    if (s->len == 0)
        return NAN;
    g_array_sort(s, cmp_double);
    if (s->len % 2)
        return g_array_index(s, double, s->len / 2);
    return (g_array_index(s, double, s->len / 2 - 1) + g_array_index(s, double, s->len / 2)) / 2;
}

/* Each link starts with the server idle: work it does after a link (a key generated
 * for the next one) is not charged to the next. */
static gboolean
link_times(Backend *b, GArray *t, gboolean idle_first)
{
    for (int i = 0; i < opt_links; i++) {
        if (idle_first)
            settle(b);
        phase_reset(b, MODE_IDLE, 0);
        gint64 t0 = now_ns();
        int fd = server_connect(b);
        if (fd < 0) {
            g_printerr("[%s] link: connect: %s\n", b->name, g_strerror(errno));
            return FALSE;
        }
        client_open(b, fd);
        gboolean ok = loop_run(client_has_init, b, 10 * NS_PER_S) && !b->ph.failed;
        gint64 t1 = now_ns();
        client_close(b);
        if (!ok) {
            g_printerr("[%s] link: %s\n", b->name, phase_error(b));
            return FALSE;
        }
        double ms = (double)(t1 - t0) / 1e6;
        g_array_append_val(t, ms);
    }
    return TRUE;
}

/* Link + ticket + INIT, median of opt_links connections. */
static void
run_link(Backend *b, guint round)
{
    g_autoptr(GArray) t = g_array_new(FALSE, FALSE, sizeof(double));

    if (link_times(b, t, TRUE))
        record(b, FIG_LINK, round, median_of(t));
    g_array_set_size(t, 0);
    settle(b);
    if (link_times(b, t, FALSE))
        record(b, FIG_LINK_BURST, round, median_of(t));
    settle(b);
}

/* The main client: connected, agent started, one probe answered. */
static gboolean
connect_main(Backend *b, int fd)
{
    client_open(b, fd);
    phase_reset(b, MODE_WARM, 0);
    loop_feed = phase_feed;
    loop_feed_data = b;
    gboolean ok = loop_run(phase_finished, b, 15 * NS_PER_S) && !b->ph.failed;
    loop_feed = NULL;
    if (!ok) {
        g_printerr("[%s] no agent path: %s\n", b->name, phase_error(b));
        client_close(b);
    }
    return ok;
}

/* One bulk run; returns MB/s or NAN, and the server CPU ns used. */
static double
bulk(Backend *b, Mode mode, guint64 total, double *cpu_ms_per_mib, double *self_ms_per_mib)
{
    phase_reset(b, mode, total);
    expect_sum(&b->ph);
    guint64 s0 = self_cpu_ns();
    guint64 c0 = proc_cpu_ns(b->pid);
    gint64 t0 = now_ns();
    loop_feed = phase_feed;
    loop_feed_data = b;
    gboolean ok = loop_run(phase_finished, b, timeout_ns()) && !b->ph.failed;
    loop_feed = NULL;
    gint64 t1 = now_ns();
    guint64 c1 = proc_cpu_ns(b->pid);
    guint64 s1 = self_cpu_ns();
    if (!ok) {
        g_printerr("[%s] %s bulk: %s after %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                   " bytes\n", b->name, mode == MODE_C2A ? "client->agent" : "agent->client",
                   phase_error(b), b->ph.received, total);
        return NAN;
    }
    if (cpu_ms_per_mib)
        *cpu_ms_per_mib = (double)(c1 - c0) / 1e6 / ((double)total / (1024.0 * 1024.0));
    if (self_ms_per_mib)
        *self_ms_per_mib = (double)(s1 - s0) / 1e6 / ((double)total / (1024.0 * 1024.0));
    return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

static void
run_bulk(Backend *b, Mode mode, guint round)
{
    double cpu = NAN, self = NAN;
    double mbs;

    if (!b->client_open)
        return;
    settle(b);
    mbs = bulk(b, mode, (guint64)opt_mib * 1024 * 1024, &cpu, &self);
    note("[%s] %s: %.1f MB/s, server %.2f ms CPU/MiB, bench %.2f ms CPU/MiB", b->name,
         mode == MODE_C2A ? "client->agent" : "agent->client", mbs, cpu, self);
    if (!isnan(mbs))
        record(b, mode == MODE_C2A ? FIG_C2A_SELF : FIG_A2C_SELF, round, self);
    record(b, mode == MODE_C2A ? FIG_C2A : FIG_A2C, round, mbs);
    if (!isnan(mbs))
        record(b, mode == MODE_C2A ? FIG_C2A_CPU : FIG_A2C_CPU, round, cpu);
    if (isnan(mbs))
        client_close(b);
}

static void
run_rss(Backend *b, guint round)
{
    guint64 kb = b->pid > 0 ? proc_status_kb(b->pid, "VmHWM") : 0;
    if (kb > 0)
        record(b, FIG_RSS, round, (double)kb / 1000.0);
}

static void
run_echo(Backend *b, guint round)
{
    if (!b->client_open)
        return;
    settle(b);
    phase_reset(b, MODE_ECHO, 0);
    b->ph.echo_n = (guint)opt_echo;
    guint64 c0 = proc_cpu_ns(b->pid);
    send_probe(b);
    gboolean ok = loop_run(phase_finished, b, timeout_ns()) && !b->ph.failed;
    guint64 c1 = proc_cpu_ns(b->pid);
    if (!ok) {
        g_printerr("[%s] echo: %s after %u round trips\n", b->name, phase_error(b),
                   b->ph.echo_i);
        client_close(b);
        return;
    }
    GArray *r = b->ph.rtt_ns;
    g_array_sort(r, cmp_i64);
    guint n = r->len;
    guint i50 = n / 2;
    guint i99 = (guint)ceil(n * 0.99) - 1;
    record(b, FIG_ECHO_P50, round, (double)g_array_index(r, gint64, i50) / 1e3);
    record(b, FIG_ECHO_P99, round, (double)g_array_index(r, gint64, MIN(i99, n - 1)) / 1e3);
    record(b, FIG_ECHO_CPU, round, (double)(c1 - c0) / 1e3 / n);
}

static void
run_delay(Backend *b, guint round)
{
    guint64 total = (guint64)opt_mib * 1024 * 1024 / (strcmp(b->name, "native") == 0 ? 8 : 64);

    total = MAX(total, 128u * 1024u);
    client_close(b);
    settle(b);
    int fd = relay_open(b, (gint64)opt_delay_ms * NS_PER_MS);
    if (fd < 0) {
        g_printerr("[%s] delay relay: %s\n", b->name, g_strerror(errno));
        return;
    }
    if (connect_main(b, fd)) {
        double mbs = bulk(b, MODE_C2A, total, NULL, NULL);
        note("[%s] client->agent +%d ms RTT: %.2f MB/s (%" G_GUINT64_FORMAT " bytes)", b->name,
             2 * opt_delay_ms, mbs, total);
        record(b, FIG_DELAY, round, mbs);
    }
    client_close(b);
    g_clear_pointer(&b->relay, relay_free);
}

/* ------------------------------------------------------------------------------ */
/* the no-protocol limit: TCP -> relay process -> UNIX socket, and back */

typedef struct {
    int src, dst;
    guint8 *buf;
    gsize len, off;
    gboolean eof;
} Dir;

static gboolean
dir_step(Dir *d, gboolean readable, gboolean writable)
{
    if (readable && d->len == 0 && !d->eof) {
        gssize n = read(d->src, d->buf, READ_BUF);
        if (n > 0) {
            d->len = (gsize)n;
            d->off = 0;
            writable = TRUE;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            d->eof = TRUE;
            shutdown(d->dst, SHUT_WR);
        }
    }
    if (writable && d->off < d->len) {
        gssize n = send(d->dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
        if (n > 0) {
            d->off += (gsize)n;
            if (d->off == d->len)
                d->len = d->off = 0;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return FALSE;
        }
    }
    return TRUE;
}

/* The relay process: plain read()/send() with 256 KiB buffers, nothing else. */
static void G_GNUC_NORETURN
limit_relay_child(int lfd, const char *unix_path)
{
    int a = accept_one(lfd, 10000);
    int u = unix_connect(unix_path);
    Dir d[2] = {{a, u, g_malloc(READ_BUF), 0, 0, FALSE}, {u, a, g_malloc(READ_BUF), 0, 0, FALSE}};

    if (a < 0 || u < 0)
        _exit(1);
    while (!(d[0].eof && d[1].eof && d[0].len == 0 && d[1].len == 0)) {
        struct pollfd p[2] = {{a, 0, 0}, {u, 0, 0}};
        for (int i = 0; i < 2; i++) {
            short *in = &p[i].events, *out = &p[1 - i].events;
            if (d[i].len == 0 && !d[i].eof)
                *in |= POLLIN;
            if (d[i].off < d[i].len)
                *out |= POLLOUT;
        }
        if (poll(p, 2, 30000) <= 0)
            _exit(2);
        for (int i = 0; i < 2; i++) {
            gboolean rd = (p[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
            gboolean wr = (p[1 - i].revents & (POLLOUT | POLLERR)) != 0;
            if (!dir_step(&d[i], rd, wr))
                _exit(3);
        }
    }
    _exit(0);
}

typedef struct {
    Pump src, dst;
    guint64 total, sent, received;
    Sum tx, rx;
    gboolean failed;
} Raw;

static const guint8 *
raw_peek(Pump *p, gsize *len, gint64 *due)
{
    Raw *r = p->data;
    guint64 left = r->total - r->sent;

    /* at most the rest of one 64 KiB pool slice */
    *len = (gsize)MIN(left, (guint64)(MSG_PAYLOAD - r->sent % MSG_PAYLOAD));
    return pool_at(r->sent / MSG_PAYLOAD) + r->sent % MSG_PAYLOAD;
}

static void
raw_consume(Pump *p, gsize n)
{
    Raw *r = p->data;
    r->sent += n;
}

static void
raw_read(Pump *p, const guint8 *buf, gsize len)
{
    Raw *r = p->data;

    if (len == 0) {
        r->failed = TRUE;
        return;
    }
    sum_feed(&r->rx, buf, len);
    r->received += len;
}

static const guint8 *
raw_peek_none(Pump *p, gsize *len, gint64 *due)
{
    *len = 0;
    return NULL;
}

static void
raw_consume_none(Pump *p, gsize n)
{
}

static void
raw_read_none(Pump *p, const guint8 *buf, gsize len)
{
    Raw *r = p->data;
    if (len == 0)
        r->failed = TRUE;
}

static gboolean
raw_done(gpointer data)
{
    Raw *r = data;
    return r->failed || r->received >= r->total;
}

static double
raw_run(int src_fd, int dst_fd, guint64 total, pid_t relay, double *cpu_ms_per_mib,
        double *self_ms_per_mib)
{
    Raw r = {0};

    r.total = total;
    sum_init(&r.tx);
    sum_init(&r.rx);
    /* the expected checksum, before the run (as for the protocol runs) */
    for (guint64 off = 0; off < total; off += MSG_PAYLOAD)
        sum_feed(&r.tx, pool_at(off / MSG_PAYLOAD), (gsize)MIN((guint64)MSG_PAYLOAD, total - off));
    pump_add(&r.src, src_fd, &r, raw_read_none, raw_peek, raw_consume);
    pump_add(&r.dst, dst_fd, &r, raw_read, raw_peek_none, raw_consume_none);
    guint64 s0 = self_cpu_ns();
    guint64 c0 = proc_cpu_ns(relay);
    gint64 t0 = now_ns();
    gboolean ok = loop_run(raw_done, &r, timeout_ns()) && !r.failed;
    gint64 t1 = now_ns();
    guint64 c1 = proc_cpu_ns(relay);
    guint64 s1 = self_cpu_ns();
    /* unregister without closing: the fds serve the other direction too */
    r.src.fd = r.dst.fd = -1;
    pump_remove(&r.src);
    pump_remove(&r.dst);
    if (!ok || r.received != total || sum_value(&r.rx) != sum_value(&r.tx)) {
        g_printerr("no-protocol relay: %s\n", ok ? "checksum mismatch" : "failed");
        return NAN;
    }
    if (cpu_ms_per_mib)
        *cpu_ms_per_mib = (double)(c1 - c0) / 1e6 / ((double)total / (1024.0 * 1024.0));
    if (self_ms_per_mib)
        *self_ms_per_mib = (double)(s1 - s0) / 1e6 / ((double)total / (1024.0 * 1024.0));
    return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* Waits until fd is readable and reads exactly len bytes. */
static gboolean
read_exact(int fd, guint8 *buf, gsize len)
{
    gsize got = 0;

    while (got < len) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 10000) <= 0)
            return FALSE;
        gssize n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return FALSE;
        if (n > 0)
            got += (gsize)n;
    }
    return TRUE;
}

/* The echo floor: 64 bytes TCP -> relay -> UNIX, answered UNIX -> relay -> TCP. */
static gboolean
raw_echo(int tcp, int unx, guint n, double *p50_us, double *p99_us)
{
    g_autoptr(GArray) rtt = g_array_new(FALSE, FALSE, sizeof(gint64));
    guint8 msg[ECHO_PAYLOAD], got[ECHO_PAYLOAD];

    for (guint i = 0; i < n; i++) {
        memcpy(msg, pool_at(i), sizeof(msg));
        gint64 t0 = now_ns();
        if (send(tcp, msg, sizeof(msg), MSG_NOSIGNAL) != (gssize)sizeof(msg) ||
            !read_exact(unx, got, sizeof(got)) ||
            send(unx, got, sizeof(got), MSG_NOSIGNAL) != (gssize)sizeof(got) ||
            !read_exact(tcp, got, sizeof(got)) || memcmp(got, msg, sizeof(msg)) != 0)
            return FALSE;
        gint64 dt = now_ns() - t0;
        g_array_append_val(rtt, dt);
    }
    g_array_sort(rtt, cmp_i64);
    *p50_us = (double)g_array_index(rtt, gint64, n / 2) / 1e3;
    *p99_us = (double)g_array_index(rtt, gint64, MIN((guint)ceil(n * 0.99) - 1, n - 1)) / 1e3;
    return TRUE;
}

static void
run_limit(guint round)
{
    g_autofree char *path = g_strdup_printf("%s/limit.sock", tmp_dir);
    guint16 port;
    int lfd = tcp_listen(&port);
    int ufd = unix_listen(path);
    guint64 total = (guint64)opt_mib * 1024 * 1024;
    double cpu = NAN;

    if (lfd < 0 || ufd < 0) {
        g_printerr("no-protocol relay: listen: %s\n", g_strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        limit_relay_child(lfd, path);
    }
    if (pid < 0)
        goto out;
    close(lfd);
    lfd = -1;
    int tcp = tcp_connect(port);
    int unx = accept_one(ufd, 10000);
    if (tcp >= 0 && unx >= 0) {
        double self = NAN, p50, p99;
        double mbs = raw_run(tcp, unx, total, pid, &cpu, &self);
        g_array_index(lim_values[LIM_C2A], double, round) = mbs;
        g_array_index(lim_values[LIM_CPU], double, round) = cpu;
        g_array_index(lim_values[LIM_SELF], double, round) = self;
        mbs = raw_run(unx, tcp, total, pid, NULL, NULL);
        g_array_index(lim_values[LIM_A2C], double, round) = mbs;
        if (raw_echo(tcp, unx, (guint)opt_echo, &p50, &p99)) {
            g_array_index(lim_values[LIM_ECHO_P50], double, round) = p50;
            g_array_index(lim_values[LIM_ECHO_P99], double, round) = p99;
        } else {
            g_printerr("no-protocol echo failed\n");
        }
        note("no-protocol relay: %.1f / %.1f MB/s",
             g_array_index(lim_values[LIM_C2A], double, round), mbs);
    }
    if (tcp >= 0)
        close(tcp);
    if (unx >= 0)
        close(unx);
    int status;
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
out:
    if (lfd >= 0)
        close(lfd);
    if (ufd >= 0)
        close(ufd);
    unlink(path);
}

/* ------------------------------------------------------------------------------ */
/* many clients (native only): peak RSS with 1 and with N clients */

typedef struct {
    Backend *b;
    VmcClient *client;
    Pump pump;
    gboolean open;
    guint got;       /* MANY_TYPE messages received */
    gboolean failed;
    /* the first client's echo probes while the others link */
    gboolean probing;
    gboolean probe_out;
    gint64 probe_t0;
    gint64 probe_next;  /* probes are 2 ms apart, not to load the server themselves */
    gint64 probe_max;
    guint probes;
} ManyClient;

static void
many_events(ManyClient *m)
{
    VmcClientEvent ev;

    while (vmc_client_next_event(m->client, &ev)) {
        switch (ev.type) {
        case VMC_CLIENT_EV_AGENT_MESSAGE:
            if (ev.agent.type != MANY_TYPE)
                break;
            if (!(ev.agent.opaque & MANY_ECHO)) {
                m->got++;
            } else if (m->probing && m->probe_out && ev.agent.opaque == (MANY_ECHO | m->probes)) {
                gint64 t = now_ns();
                m->probe_max = MAX(m->probe_max, t - m->probe_t0);
                m->probe_out = FALSE;
                m->probe_next = t + 2 * NS_PER_MS;
            }
            break;
        case VMC_CLIENT_EV_LINK_FAILED:
        case VMC_CLIENT_EV_PROTOCOL_ERROR:
        case VMC_CLIENT_EV_AGENT_DISCONNECTED:
            if (!m->failed)
                note("[many] a client failed: %s", ev.detail ? ev.detail : "?");
            m->failed = TRUE;
            break;
        default:
            break;
        }
        vmc_client_event_clear(&ev);
    }
}

static void
many_read(Pump *p, const guint8 *buf, gsize len)
{
    ManyClient *m = p->data;

    if (len == 0) {
        vmc_client_feed_eof(m->client);
        if (!m->failed)
            note("[many] a client connection closed: %s",
                 vmc_client_get_last_error(m->client) ? vmc_client_get_last_error(m->client)
                                                      : "?");
        m->failed = TRUE;
        m->open = FALSE;
        return;
    }
    vmc_client_feed(m->client, buf, len);
    many_events(m);
}

static const guint8 *
many_peek(Pump *p, gsize *len, gint64 *due)
{
    ManyClient *m = p->data;

    if (m->probing && !m->probe_out)
        *due = m->probe_next; /* wakes the loop for the next probe */
    return vmc_client_output(m->client, len);
}

static void
many_consume(Pump *p, gsize n)
{
    ManyClient *m = p->data;
    vmc_client_output_consume(m->client, n);
}

typedef struct {
    ManyClient *cl;
    guint from, to;  /* clients [from, to) */
    guint want;      /* MANY_TYPE messages each must have (0: just started) */
    guint agent_want;
    Backend *b;
} ManyCond;

static gboolean
many_ready(gpointer data)
{
    ManyCond *c = data;

    if (c->b->ph.failed || c->b->many_rx < c->agent_want)
        return c->b->ph.failed;
    for (guint i = c->from; i < c->to; i++) {
        ManyClient *m = &c->cl[i];
        if (m->failed)
            return TRUE;
        if (!vmc_client_agent_started(m->client) || m->got < c->want)
            return FALSE;
    }
    return TRUE;
}

static gboolean
many_failed(ManyCond *c)
{
    if (c->b->ph.failed)
        return TRUE;
    for (guint i = c->from; i < c->to; i++) {
        if (c->cl[i].failed)
            return TRUE;
    }
    return FALSE;
}

/* Keeps one echo probe in flight from the probing client. */
static void
many_feed(gpointer data)
{
    ManyClient *m = data;
    guint8 payload[MANY_PAYLOAD] = {0};

    if (!m->probing || m->probe_out || m->failed || now_ns() < m->probe_next)
        return;
    m->probes++;
    m->probe_out = TRUE;
    m->probe_t0 = now_ns();
    vmc_client_send_agent_message(m->client, MANY_TYPE, MANY_ECHO | m->probes, payload,
                                  sizeof(payload));
}

/* Opens clients [from, to) and waits until each has started the agent. */
static gboolean
many_connect(Backend *b, ManyClient *cl, guint from, guint to)
{
    ManyCond c = {cl, from, to, 0, 0, b};

    for (guint i = from; i < to; i++) {
        ManyClient *m = &cl[i];
        VmcClientConfig cfg;
        int fd = server_connect(b);

        if (fd < 0) {
            g_printerr("[many] connect: %s\n", g_strerror(errno));
            return FALSE;
        }
        vmc_client_config_init(&cfg);
        cfg.password = BENCH_PASSWORD;
        cfg.agent_data_messages = FALSE;
        m->b = b;
        m->client = vmc_client_new(&cfg);
        pump_add(&m->pump, fd, m, many_read, many_peek, many_consume);
        m->open = TRUE;
    }
    return loop_run(many_ready, &c, timeout_ns()) && !many_failed(&c);
}

/* Each client in [from, to) sends one message to the agent; then the agent sends one,
 * which every client in [0, to) must receive. */
static gboolean
many_exchange(Backend *b, ManyClient *cl, guint from, guint to)
{
    guint8 payload[MANY_PAYLOAD];
    ManyCond c = {cl, 0, to, 0, b->many_rx + (to - from), b};

    memcpy(payload, pool_at(7), sizeof(payload));
    for (guint i = from; i < to; i++)
        vmc_client_send_agent_message(cl[i].client, MANY_TYPE, i, payload, sizeof(payload));
    if (!loop_run(many_ready, &c, timeout_ns()) || many_failed(&c))
        return FALSE;
    for (guint i = 0; i < to; i++)
        cl[i].got = 0;
    vmc_agent_peer_send(b->agent, VMC_PORT_CLIENT, MANY_TYPE, 0, payload, sizeof(payload));
    c.want = 1;
    return loop_run(many_ready, &c, timeout_ns()) && !many_failed(&c);
}

static void
run_many(guint round)
{
    static Backend mb = {.name = "many", .backend = "native"};
    guint n = (guint)opt_clients;
    ManyClient *cl = g_new0(ManyClient, n);
    g_autofree char *why = NULL;
    guint64 kb1, kbn;
    gint64 t0, t1;

    mb.agent_pump.fd = mb.client_pump.fd = -1;
    mb.max_clients = n;
    mb.many_rx = 0;
    phase_reset(&mb, MODE_IDLE, 0);
    if (!server_start(&mb, &why)) {
        g_printerr("[many] cannot run: %s\n", why);
        g_free(cl);
        return;
    }
    /* one client, one message each way */
    if (!many_connect(&mb, cl, 0, 1) || !many_exchange(&mb, cl, 0, 1)) {
        g_printerr("[many] the first client did not get through\n");
        goto out;
    }
    settle(&mb);
    kb1 = proc_status_kb(mb.pid, "VmHWM");
    /* the other n - 1, linked back to back, while the first one echoes: how long the
     * server's loop stalls meanwhile (key generation, link work) */
    cl[0].probing = TRUE;
    loop_feed = many_feed;
    loop_feed_data = &cl[0];
    t0 = now_ns();
    gboolean linked = many_connect(&mb, cl, 1, n);
    t1 = now_ns();
    loop_feed = NULL;
    cl[0].probing = FALSE;
    if (!linked) {
        g_printerr("[many] not all %u clients linked\n", n);
        goto out;
    }
    if (!many_exchange(&mb, cl, 1, n)) {
        guint short_of = 0;
        for (guint i = 0; i < n; i++)
            short_of += cl[i].got < 1;
        g_printerr("[many] the message exchange with %u clients failed: the agent got %u of %u "
                   "messages, %u clients lack the agent's\n", n, mb.many_rx, n, short_of);
        goto out;
    }
    settle(&mb);
    kbn = proc_status_kb(mb.pid, "VmHWM");
    note("[many] VmHWM %" G_GUINT64_FORMAT " kB with 1 client, %" G_GUINT64_FORMAT
         " kB with %u (VmRSS now %" G_GUINT64_FORMAT " kB); %u links in %.0f ms, %u echoes "
         "meanwhile, max %.2f ms", kb1, kbn, n, proc_status_kb(mb.pid, "VmRSS"), n - 1,
         (double)(t1 - t0) / 1e6, cl[0].probes, (double)cl[0].probe_max / 1e6);
    g_array_index(many_values[MANY_RSS1], double, round) = (double)kb1 / 1000.0;
    g_array_index(many_values[MANY_RSSN], double, round) = (double)kbn / 1000.0;
    if (n > 1)
        g_array_index(many_values[MANY_PER_CLIENT], double, round) =
            ((double)kbn - (double)kb1) * 1.024 / (n - 1); /* kB (1024) -> KB (1000) */
    g_array_index(many_values[MANY_LINKS], double, round) = (double)(t1 - t0) / 1e6;
    if (cl[0].probes > 1)
        g_array_index(many_values[MANY_ECHO_MAX], double, round) = (double)cl[0].probe_max / 1e6;
out:
    for (guint i = 0; i < n; i++) {
        if (cl[i].client) {
            pump_remove(&cl[i].pump);
            vmc_client_free(cl[i].client);
        }
    }
    g_free(cl);
    server_stop(&mb);
}

/* ------------------------------------------------------------------------------ */
/* the table */

typedef struct {
    double med, min, max;
    guint n;
} Stat;

static Stat
stat_of(GArray *a)
{
    Stat s = {NAN, NAN, NAN, 0};

    for (guint i = 0; i < a->len; i++) {
        double v = g_array_index(a, double, i);
        if (isnan(v))
            continue;
        if (s.n == 0 || v < s.min)
            s.min = v;
        if (s.n == 0 || v > s.max)
            s.max = v;
        s.n++;
    }
    s.med = median_of(a);
    return s;
}

static char *
fmt_stat(Stat s, int decimals)
{
    if (s.n == 0)
        return g_strdup("-");
    if (s.n == 1)
        return g_strdup_printf("%.*f", decimals, s.med);
    return g_strdup_printf("%.*f (%.*f-%.*f)", decimals, s.med, decimals, s.min, decimals,
                           s.max);
}

static void
print_row(const char *c0, const char *c1, const char *c2, const char *c3, const char *c4)
{
    if (opt_markdown)
        printf("| %s | %s | %s | %s | %s |\n", c0, c1, c2, c3, c4);
    else
        printf("%-38s %-24s %-24s %-20s %s\n", c0, c1, c2, c3, c4);
}

static gboolean
print_table(Backend *nat, Backend *ref)
{
    Stat lim[N_LIMS];
    gboolean all_met = TRUE;

    for (int i = 0; i < N_LIMS; i++)
        lim[i] = stat_of(lim_values[i]);

    printf("\n");
    print_row("figure", "native median (min-max)", "spice-server median (min-max)",
              "ratio (per-round)", "target");
    if (opt_markdown)
        printf("|---|---|---|---|---|\n");
    for (int f = 0; f < N_FIGS; f++) {
        g_autofree char *label = g_strdup_printf("%s, %s", figs[f].label, figs[f].unit);
        g_autofree char *a = nat->available ? fmt_stat(stat_of(nat->values[f]),
                                                       figs[f].fmt_decimals)
                                            : g_strdup("n/a");
        g_autofree char *b = ref->available ? fmt_stat(stat_of(ref->values[f]),
                                                       figs[f].fmt_decimals)
                                            : g_strdup("n/a");
        g_autofree char *ratio = NULL;
        g_autofree char *target = NULL;
        g_autoptr(GArray) ratios = g_array_new(FALSE, FALSE, sizeof(double));

        if (nat->available && ref->available) {
            for (guint r = 0; r < nat->values[f]->len; r++) {
                double x = g_array_index(nat->values[f], double, r);
                double y = g_array_index(ref->values[f], double, r);
                double q = (isnan(x) || isnan(y) || y == 0) ? NAN : x / y;
                g_array_append_val(ratios, q);
            }
        }
        Stat rs = stat_of(ratios);
        if (!figs[f].target_text) {
            ratio = rs.n == 0 ? g_strdup("-") : g_strdup_printf("%.2fx", rs.med);
            target = g_strdup(f == FIG_C2A_SELF || f == FIG_A2C_SELF ? "(the bench itself)"
                                                                     : "(information)");
        } else if (rs.n == 0) {
            ratio = g_strdup("-");
            target = g_strdup(figs[f].target_text);
        } else {
            gboolean met = figs[f].higher ? rs.med >= figs[f].target : rs.med <= figs[f].target;
            if ((f == FIG_C2A || f == FIG_A2C) && !met) {
                Stat n = stat_of(nat->values[f]);
                Stat l = lim[f == FIG_C2A ? LIM_C2A : LIM_A2C];
                met = n.n > 0 && l.n > 0 && n.med >= 0.8 * l.med;
            }
            all_met = all_met && met;
            ratio = rs.n == 1 ? g_strdup_printf("%.2fx", rs.med)
                              : g_strdup_printf("%.2fx (%.2f-%.2f)", rs.med, rs.min, rs.max);
            target = g_strdup_printf("%s %s", figs[f].target_text, met ? "met" : "MISSED");
        }
        print_row(label, a, b, ratio, target);
    }
    for (int i = 0; i < N_LIMS; i++) {
        g_autofree char *label = g_strdup_printf("%s, %s", lim_labels[i], lim_units[i]);
        g_autofree char *v = fmt_stat(lim[i], lim_decimals[i]);
        g_autofree char *share = NULL;
        if ((i == LIM_C2A || i == LIM_A2C) && nat->available) {
            Stat n = stat_of(nat->values[i == LIM_C2A ? FIG_C2A : FIG_A2C]);
            if (n.n > 0 && lim[i].n > 0)
                share = g_strdup_printf("native = %.0f%% of it", 100.0 * n.med / lim[i].med);
        }
        print_row(label, v, "", "", share ? share : "(physical reference)");
    }
    for (int i = 0; i < N_MANYS; i++) {
        Stat st = stat_of(many_values[i]);
        g_autofree char *label = g_strdup_printf("%s, %s", many_labels[i], many_units[i]);
        g_autofree char *v = NULL;
        g_autofree char *what = NULL;

        if (st.n == 0)
            continue;
        v = fmt_stat(st, many_decimals[i]);
        what = g_strdup_printf("native, N = %d", opt_clients);
        print_row(label, v, "n/a (one client)", "", what);
    }
    return all_met;
}

/* ------------------------------------------------------------------------------ */

static char *
default_server(void)
{
    const char *root = g_getenv("VMC_BUILD_ROOT");
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *dir = NULL;
    char *p;

    if (root) {
        p = g_build_filename(root, "tools", "vmcmux-server", NULL);
        if (g_file_test(p, G_FILE_TEST_IS_EXECUTABLE))
            return p;
        g_free(p);
    }
    if (!self)
        return NULL;
    dir = g_path_get_dirname(self);
    p = g_build_filename(dir, "..", "..", "tools", "vmcmux-server", NULL);
    if (g_file_test(p, G_FILE_TEST_IS_EXECUTABLE))
        return p;
    g_free(p);
    return NULL;
}

static void
remove_tmp_dir(void)
{
    GDir *d;
    const char *name;

    if (!tmp_dir)
        return;
    d = g_dir_open(tmp_dir, 0, NULL);
    if (d) {
        while ((name = g_dir_read_name(d))) {
            g_autofree char *p = g_build_filename(tmp_dir, name, NULL);
            g_unlink(p);
        }
        g_dir_close(d);
    }
    g_rmdir(tmp_dir);
}

static void
on_signal(int sig)
{
    for (int i = 0; i < 2; i++) {
        if (backends[i].pid > 0)
            kill(backends[i].pid, SIGTERM);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new("- vmcmux against libspice-server");
    g_autoptr(GError) error = NULL;
    Backend *order[2];
    guint n_active = 0;
    gboolean all_met;

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_description(ctx,
        "Spawns vmcmux-server --backend native and --backend spice-server, measures both\n"
        "interleaved, and prints medians, ratios and the targets of docs/performance.md.\n"
        "Exit status: 0, 1 on a data or protocol error, 77 when no backend could run.");
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        g_printerr("%s\n", error->message);
        return 2;
    }
    if (opt_quick) {
        opt_rounds = 1;
        opt_mib = 8;
        opt_echo = 300;
        opt_links = 5;
        opt_clients = 10;
    }
    if (opt_rounds < 1 || opt_mib < 1 || opt_echo < 1 || opt_links < 1 || opt_delay_ms < 0 ||
        opt_clients < 1 || opt_clients > 1000 ||
        opt_agent_chunk < 0 || opt_timeout < 1) {
        g_printerr("bad option value\n");
        return 2;
    }
    if (opt_backend && strcmp(opt_backend, "native") != 0 &&
        strcmp(opt_backend, "spice-server") != 0) {
        g_printerr("--backend: native or spice-server\n");
        return 2;
    }
    if (opt_only) {
        static const char *const names[] = {"link",  "c2a",   "a2c", "echo",
                                            "delay", "limit", "many"};
        g_auto(GStrv) parts = g_strsplit(opt_only, ",", 0);
        only = 0;
        for (guint i = 0; parts[i]; i++) {
            guint k;
            for (k = 0; k < G_N_ELEMENTS(names); k++) {
                if (strcmp(parts[i], names[k]) == 0)
                    break;
            }
            if (k == G_N_ELEMENTS(names)) {
                g_printerr("--only: unknown part \"%s\"\n", parts[i]);
                return 2;
            }
            only |= 1u << k;
        }
    }
    if (!opt_server)
        opt_server = default_server();
    if (!opt_server || !g_file_test(opt_server, G_FILE_TEST_IS_EXECUTABLE)) {
        g_printerr("no vmcmux-server found (give --server PATH)\n");
        return 77;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    pool_init();
    msgs_init();
    read_buf = g_malloc(READ_BUF);
    tmp_dir = g_dir_make_tmp("vmc-bench-XXXXXX", &error);
    if (!tmp_dir) {
        g_printerr("%s\n", error->message);
        return 1;
    }

    for (int i = 0; i < 2; i++) {
        Backend *b = &backends[i];
        b->agent_pump.fd = b->client_pump.fd = -1;
        b->available = !opt_backend || strcmp(opt_backend, b->name) == 0;
        for (int f = 0; f < N_FIGS; f++) {
            b->values[f] = g_array_new(FALSE, FALSE, sizeof(double));
            for (int r = 0; r < opt_rounds; r++) {
                double nan = NAN;
                g_array_append_val(b->values[f], nan);
            }
        }
    }
    for (int i = 0; i < N_LIMS; i++) {
        lim_values[i] = g_array_new(FALSE, FALSE, sizeof(double));
        for (int r = 0; r < opt_rounds; r++) {
            double nan = NAN;
            g_array_append_val(lim_values[i], nan);
        }
    }
    for (int i = 0; i < N_MANYS; i++) {
        many_values[i] = g_array_new(FALSE, FALSE, sizeof(double));
        for (int r = 0; r < opt_rounds; r++) {
            double nan = NAN;
            g_array_append_val(many_values[i], nan);
        }
    }

    printf("vmc-bench: %s, %d round(s), %d MiB bulk, %d echoes, %d links, +%d ms RTT relay\n",
           opt_server, opt_rounds, opt_mib, opt_echo, opt_links, 2 * opt_delay_ms);
    fflush(stdout);

    for (guint round = 0; round < (guint)opt_rounds; round++) {
        /* A B in even rounds, B A in odd ones */
        n_active = 0;
        for (int k = 0; k < 2; k++) {
            Backend *b = &backends[round % 2 ? 1 - k : k];
            g_autofree char *why = NULL;
            if (!b->available)
                continue;
            if (!server_start(b, &why)) {
                g_printerr("[%s] cannot run: %s\n", b->name, why);
                if (round == 0) {
                    b->available = FALSE;
                    b->why_unavailable = g_steal_pointer(&why);
                }
                continue;
            }
            order[n_active++] = b;
        }
        if (n_active == 0)
            break;
        note("round %u: %s%s%s", round + 1, order[0]->name, n_active > 1 ? " then " : "",
             n_active > 1 ? order[1]->name : "");

        for (guint k = 0; k < n_active && (only & ONLY_LINK); k++)
            run_link(order[k], round);
        for (guint k = 0; k < n_active && (only & (ONLY_C2A | ONLY_A2C | ONLY_ECHO)); k++) {
            int fd = server_connect(order[k]);
            if (fd < 0)
                g_printerr("[%s] connect: %s\n", order[k]->name, g_strerror(errno));
            else
                connect_main(order[k], fd);
        }
        for (guint k = 0; k < n_active && (only & ONLY_C2A); k++)
            run_bulk(order[k], MODE_C2A, round);
        for (guint k = 0; k < n_active && (only & ONLY_A2C); k++)
            run_bulk(order[k], MODE_A2C, round);
        for (guint k = 0; k < n_active; k++)
            run_rss(order[k], round);
        for (guint k = 0; k < n_active && (only & ONLY_ECHO); k++)
            run_echo(order[k], round);
        for (guint k = 0; k < n_active && (only & ONLY_DELAY); k++)
            run_delay(order[k], round);
        for (guint k = 0; k < n_active; k++)
            server_stop(order[k]);
        if (only & ONLY_LIMIT)
            run_limit(round);
        if ((only & ONLY_MANY) && backends[0].available)
            run_many(round);
    }

    Backend *nat = &backends[0], *ref = &backends[1];
    for (int i = 0; i < 2; i++) {
        if (backends[i].why_unavailable)
            printf("%s backend not measured: %s\n", backends[i].name,
                   backends[i].why_unavailable);
        if (backends[i].violations > 0)
            printf("%s backend: the agent saw %" G_GUINT64_FORMAT " framing violations\n",
                   backends[i].name, backends[i].violations);
    }
    all_met = print_table(nat, ref);
    if (nat->available && ref->available)
        printf("\nall targets %s\n", all_met ? "met" : "not met (see MISSED)");
    remove_tmp_dir();
    if (data_error || nat->violations > 0 || ref->violations > 0)
        return 1;
    return nat->available || ref->available ? 0 : 77;
}
