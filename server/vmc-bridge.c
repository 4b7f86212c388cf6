/* vmc-bridge.c — libspice-server as a vmcmux backend: the "vdagent" char device on a
 * guest-port backend (VmcSpiceBridge) and a libspice-server host on a GMainContext
 * (VmcSpiceHost). See vmc-bridge.h and docs/hosting-libspice-server.md. */
#include "server/vmc-bridge.h"

#include <gio/gunixsocketaddress.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocol/vmc-agent.h"
#include "protocol/vmc-chunk.h"

/* libspice-server asks for small amounts (8-byte headers, <= 2048-byte pieces); serve
 * them from a larger buffer so one recv() feeds many of its reads. Read interest is on
 * exactly while that buffer is empty; a READABLE event turns it off and wakes
 * libspice-server, which reads until the port is empty or it has no room. */
#define BRIDGE_READ_BUF (64u * 1024u)
#define SPICE_TICKET_MAX 60u
#define SPICE_AGENT_WINDOW 10u /* REDS_AGENT_WINDOW_SIZE, fixed in libspice-server */

/* ------------------------------------------------------------------------------------
 * The traffic tap: turns the guest-side chunk stream back into agent-message spans.
 * ------------------------------------------------------------------------------------ */

typedef struct {
    VmcChunkDecoder chunks;
    VmcAgentTracker msgs[2]; /* port 1, port 2 */
    gboolean broken;         /* framing lost: stop reporting until the next reset */
} TapStream;

static void tap_stream_reset(TapStream *s)
{
    vmc_chunk_decoder_init(&s->chunks);
    vmc_agent_tracker_init(&s->msgs[0]);
    vmc_agent_tracker_init(&s->msgs[1]);
    s->broken = FALSE;
}

typedef enum {
    BRIDGE_DETACHED, /* no char device registered */
    BRIDGE_ATTACHED, /* registered: libspice-server talks to the guest port */
    BRIDGE_REMOVING, /* inside our own spice_server_remove_interface() */
} BridgeState;

struct _VmcSpiceBridge {
    SpiceCharDeviceInstance sin; /* handed to libspice-server; the callbacks get it back */
    SpiceServer *server;
    VmcGuestPort *port;
    BridgeState state;
    gboolean port_gone; /* a read or write found the agent connection closed */

    guint8 *rbuf;
    gsize rpos;
    gsize rlen;

    VmcMuxTapFunc tap;
    gpointer tap_data;
    VmcRecorder *rec;
    guint32 client_id;
    TapStream to_guest;
    TapStream from_guest;
};

static VmcSpiceBridge *bridge_from_sin(SpiceCharDeviceInstance *sin)
{
    return (VmcSpiceBridge *) ((guint8 *) sin - G_STRUCT_OFFSET(VmcSpiceBridge, sin));
}

static void tap_piece(VmcSpiceBridge *b, TapStream *s, gboolean to_guest,
                      const VmcChunkPiece *piece)
{
    VmcAgentTracker *t = &s->msgs[piece->port == VMC_PORT_SERVER ? 1 : 0];
    VmcMuxDirection dir;
    guint32 client_id = 0;
    const guint8 *p = piece->data;
    gsize left = piece->len;

    if (piece->port == VMC_PORT_CLIENT) {
        dir = to_guest ? VMC_MUX_DIR_CLIENT_AGENT : VMC_MUX_DIR_AGENT_CLIENT;
        client_id = to_guest ? b->client_id : 0;
    } else {
        dir = to_guest ? VMC_MUX_DIR_SERVER_AGENT : VMC_MUX_DIR_AGENT_SERVER;
    }

    while (left > 0) {
        gsize span = 0;
        guint flags = 0;
        VmcDecodeResult r = vmc_agent_tracker_advance(t, p, left, &span, &flags);

        if (r != VMC_DECODE_OK) {
            if (r != VMC_DECODE_NEED_MORE) {
                g_debug("bridge tap: agent framing lost on port %u (%d)", piece->port, r);
                s->broken = TRUE;
            }
            return;
        }
        g_assert(span > 0 && span <= left);
        b->tap(b->tap_data, dir, client_id, piece->port, p, span, flags);
        p += span;
        left -= span;
    }
}

static void tap_bytes(VmcSpiceBridge *b, gboolean to_guest, const guint8 *buf, gsize len)
{
    TapStream *s = to_guest ? &b->to_guest : &b->from_guest;

    if (b->tap == NULL) {
        return;
    }
    while (len > 0 && !s->broken) {
        VmcChunkPiece piece;
        gsize consumed = 0;
        VmcDecodeResult r = vmc_chunk_decoder_next(&s->chunks, buf, len, 0, &piece, &consumed);

        if (r == VMC_DECODE_NEED_MORE) {
            return;
        }
        if (r != VMC_DECODE_OK) {
            g_debug("bridge tap: chunk framing lost (%d)", r);
            s->broken = TRUE;
            return;
        }
        g_assert(consumed <= len);
        if (piece.len > 0) {
            tap_piece(b, s, to_guest, &piece);
        }
        buf += consumed;
        len -= consumed;
    }
}

/* ------------------------------------------------------------------------------------
 * SpiceCharDeviceInterface
 * ------------------------------------------------------------------------------------ */

static void bridge_reset_io(VmcSpiceBridge *b)
{
    b->port_gone = FALSE;
    b->rpos = 0;
    b->rlen = 0;
    tap_stream_reset(&b->to_guest);
    tap_stream_reset(&b->from_guest);
}

static void bridge_record(VmcSpiceBridge *b, VmcRecordEvent event, const char *detail)
{
    if (b->rec != NULL) {
        vmc_recorder_event(b->rec, event, 0, detail);
    }
}

static void sif_state(SpiceCharDeviceInstance *sin, int connected)
{
    VmcSpiceBridge *b = bridge_from_sin(sin);

    if (connected || b->state != BRIDGE_ATTACHED) {
        return; /* attach, or the echo of our own remove_interface() */
    }
    /* libspice-server detached the agent by itself: the guest broke the framing. It has
     * already forgotten the device, so remove_interface() must not be called for it
     * (it would trip "char_device == reds->vdagent"). Drop the guest connection, as
     * the native backend does; a listening port takes the agent's reconnect. */
    g_debug("bridge: libspice-server dropped the agent after a guest protocol error");
    b->state = BRIDGE_DETACHED;
    bridge_reset_io(b);
    vmc_guest_port_want_read(b->port, FALSE);
    vmc_guest_port_want_write(b->port, FALSE);
    bridge_record(b, VMC_RECORD_AGENT_DISCONNECTED, "guest protocol error");
    vmc_guest_port_drop(b->port);
}

static int sif_write(SpiceCharDeviceInstance *sin, const uint8_t *buf, int len)
{
    VmcSpiceBridge *b = bridge_from_sin(sin);
    GOutputVector vec;
    gssize n;

    if (b->state != BRIDGE_ATTACHED || b->port_gone || len <= 0) {
        return 0;
    }
    vec.buffer = buf;
    vec.size = (gsize) len;
    n = vmc_guest_port_writev(b->port, &vec, 1);
    if (n <= 0) {
        /* Full: libspice-server keeps the rest and waits for
         * spice_server_char_device_wakeup() (NOTIFY_WRITABLE). Closed: detached after
         * the wakeup that got us here, or on the port's CLOSED event. */
        if (n == 0) {
            vmc_guest_port_want_write(b->port, TRUE);
        } else {
            b->port_gone = TRUE;
        }
        return 0;
    }
    g_assert((gsize) n <= vec.size);
    tap_bytes(b, TRUE, buf, (gsize) n);
    return (int) n;
}

static int sif_read(SpiceCharDeviceInstance *sin, uint8_t *buf, int len)
{
    VmcSpiceBridge *b = bridge_from_sin(sin);
    gsize take;

    if (b->state != BRIDGE_ATTACHED || b->port_gone || len <= 0) {
        return 0;
    }
    if (b->rpos == b->rlen) {
        gssize n = vmc_guest_port_read(b->port, b->rbuf, BRIDGE_READ_BUF);

        b->rpos = 0;
        b->rlen = 0;
        if (n <= 0) {
            /* Nothing now: ask for READABLE, which becomes a wakeup. Closed: detached
             * after the wakeup that got us here, or on the port's CLOSED event. */
            if (n == 0) {
                vmc_guest_port_want_read(b->port, TRUE);
            } else {
                b->port_gone = TRUE;
            }
            return 0;
        }
        g_assert((gsize) n <= BRIDGE_READ_BUF);
        b->rlen = (gsize) n;
    }
    take = MIN((gsize) len, b->rlen - b->rpos);
    memcpy(buf, b->rbuf + b->rpos, take);
    b->rpos += take;
    tap_bytes(b, FALSE, buf, take);
    if (b->rpos == b->rlen) {
        /* Drained: libspice-server may not come back by itself. After a short read of a
         * chunk header it ends its pass without asking again, so whatever arrives next
         * must wake it. (While our buffer holds bytes it does come back: when a client
         * token or a read buffer frees up.) */
        vmc_guest_port_want_read(b->port, TRUE);
    }
    return (int) take;
}

static const SpiceCharDeviceInterface bridge_sif = {
    .base = {
        .type = SPICE_INTERFACE_CHAR_DEVICE,
        .description = "vmcmux guest port",
        .major_version = SPICE_INTERFACE_CHAR_DEVICE_MAJOR,
        .minor_version = SPICE_INTERFACE_CHAR_DEVICE_MINOR,
    },
    .state = sif_state,
    .write = sif_write,
    .read = sif_read,
    .flags = SPICE_CHAR_DEVICE_NOTIFY_WRITABLE,
};

/* ------------------------------------------------------------------------------------
 * Guest-port events
 * ------------------------------------------------------------------------------------ */

static void bridge_detach(VmcSpiceBridge *b, const char *reason);

static void bridge_attach(VmcSpiceBridge *b)
{
    if (b->state != BRIDGE_DETACHED) {
        return;
    }
    bridge_reset_io(b);
    /* add_interface() may already read from the device (a client is connected), and
     * what it reads may already be a protocol error: record first, keep order. */
    b->state = BRIDGE_ATTACHED;
    bridge_record(b, VMC_RECORD_AGENT_CONNECTED, vmc_guest_port_describe(b->port));
    if (spice_server_add_interface(b->server, &b->sin.base) != 0) {
        g_debug("bridge: libspice-server refused the vdagent char device");
        b->state = BRIDGE_DETACHED;
        bridge_record(b, VMC_RECORD_AGENT_DISCONNECTED, "refused by libspice-server");
        return;
    }
    if (b->state == BRIDGE_ATTACHED && b->port_gone) {
        bridge_detach(b, "port closed");
    } else if (b->state == BRIDGE_ATTACHED) {
        vmc_guest_port_want_read(b->port, TRUE);
    }
}

static void bridge_detach(VmcSpiceBridge *b, const char *reason)
{
    if (b->state != BRIDGE_ATTACHED) {
        return; /* never attached, or libspice-server already let go */
    }
    b->state = BRIDGE_REMOVING;
    spice_server_remove_interface(&b->sin.base);
    b->state = BRIDGE_DETACHED;
    bridge_reset_io(b);
    vmc_guest_port_want_read(b->port, FALSE);
    vmc_guest_port_want_write(b->port, FALSE);
    bridge_record(b, VMC_RECORD_AGENT_DISCONNECTED, reason);
}

/* Wakes libspice-server; if it found the agent connection closed meanwhile, detaches
 * now rather than when the port's CLOSED event comes round: a client linking in
 * between would be told the agent is there. Never re-enters libspice-server from inside
 * its own read/write callbacks. */
static void bridge_wakeup(VmcSpiceBridge *b)
{
    if (b->state != BRIDGE_ATTACHED) {
        return;
    }
    spice_server_char_device_wakeup(&b->sin);
    if (b->state == BRIDGE_ATTACHED && b->port_gone) {
        bridge_detach(b, "port closed");
    }
}

static void on_port_event(VmcGuestPort *port, VmcGuestEvent event, gpointer user_data)
{
    VmcSpiceBridge *b = user_data;

    switch (event) {
    case VMC_GUEST_EVENT_OPENED:
        bridge_attach(b);
        break;
    case VMC_GUEST_EVENT_CLOSED:
        bridge_detach(b, "port closed");
        break;
    case VMC_GUEST_EVENT_READABLE:
        vmc_guest_port_want_read(port, FALSE);
        bridge_wakeup(b);
        break;
    case VMC_GUEST_EVENT_WRITABLE:
        vmc_guest_port_want_write(port, FALSE);
        bridge_wakeup(b);
        break;
    }
}

static void ignore_sigpipe_if_default(void)
{
    struct sigaction old;

    if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL) {
        signal(SIGPIPE, SIG_IGN);
    }
}

/**
 * vmc_spice_bridge_new:
 * @server: (transfer none): a libspice-server instance, initialised
 * @port: (transfer none): the guest port; must outlive the bridge
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the bridge, or %NULL with @error set
 */
VmcSpiceBridge *vmc_spice_bridge_new(SpiceServer *server, VmcGuestPort *port, GError **error)
{
    VmcSpiceBridge *b;

    g_return_val_if_fail(server != NULL, NULL);
    g_return_val_if_fail(port != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    ignore_sigpipe_if_default();

    b = g_new0(VmcSpiceBridge, 1);
    b->sin.base.sif = &bridge_sif.base;
    b->sin.subtype = "vdagent";
    b->server = server;
    b->port = port;
    b->state = BRIDGE_DETACHED;
    b->rbuf = g_malloc(BRIDGE_READ_BUF);
    b->client_id = 1;
    bridge_reset_io(b);

    vmc_guest_port_set_event_func(port, on_port_event, b);
    if (vmc_guest_port_is_open(port)) {
        bridge_attach(b);
    }
    return b;
}

void vmc_spice_bridge_free(VmcSpiceBridge *bridge)
{
    if (bridge == NULL) {
        return;
    }
    bridge_detach(bridge, "bridge closed");
    vmc_guest_port_set_event_func(bridge->port, NULL, NULL);
    vmc_guest_port_want_read(bridge->port, FALSE);
    vmc_guest_port_want_write(bridge->port, FALSE);
    g_free(bridge->rbuf);
    g_free(bridge);
}

gboolean vmc_spice_bridge_is_attached(VmcSpiceBridge *bridge)
{
    g_return_val_if_fail(bridge != NULL, FALSE);
    return bridge->state == BRIDGE_ATTACHED;
}

void vmc_spice_bridge_set_tap_func(VmcSpiceBridge *bridge, VmcMuxTapFunc func,
                                   gpointer user_data)
{
    g_return_if_fail(bridge != NULL);
    bridge->tap = func;
    bridge->tap_data = user_data;
    bridge->rec = NULL;
    /* Start at the next chunk boundary we can be sure of: the next attach. A stream
     * already mid-chunk would be mis-framed. */
    bridge->to_guest.broken = bridge->state == BRIDGE_ATTACHED;
    bridge->from_guest.broken = bridge->state == BRIDGE_ATTACHED;
}

void vmc_spice_bridge_set_recorder(VmcSpiceBridge *bridge, VmcRecorder *rec)
{
    g_return_if_fail(bridge != NULL);
    vmc_spice_bridge_set_tap_func(bridge, rec != NULL ? vmc_recorder_tap : NULL, rec);
    bridge->rec = rec;
}

void vmc_spice_bridge_set_client_id(VmcSpiceBridge *bridge, guint32 client_id)
{
    g_return_if_fail(bridge != NULL);
    bridge->client_id = client_id;
}

/* ------------------------------------------------------------------------------------
 * SpiceCoreInterface on a GMainContext.
 *
 * The callbacks carry no context pointer, hence the one static host. Timers keep their
 * own deadline and compute the poll timeout in prepare() (g_source_set_ready_time()
 * wakes the context on every call, and libspice-server re-arms timers per message).
 * Watches own their GPollFD and change its events in place (g_source_modify_unix_fd()
 * also costs a wakeup, and libspice-server flips write interest per message); only the
 * rare transitions to and from "no events" add or remove the poll record.
 * ------------------------------------------------------------------------------------ */

struct _VmcSpiceHost {
    GMainContext *ctx;
    SpiceServer *server;
    SpiceCoreInterface core;
    GSocket *listener;
    char *unix_path; /* unlinked on free */
    char *describe;
    VmcGuestPort *port;
    VmcSpiceBridge *bridge;
    VmcRecorder *rec;
    guint32 next_client_id;
    guint32 client_id;        /* current main-channel client, 0: none */
    int client_connection_id; /* its SPICE connection id */
};

static VmcSpiceHost *the_host;

struct SpiceTimer {
    GSource source;
    SpiceTimerFunc func;
    void *opaque;
    gint64 deadline; /* monotonic µs, -1: not armed */
};

static gboolean timer_prepare(GSource *source, gint *timeout)
{
    SpiceTimer *t = (SpiceTimer *) source;
    gint64 now;

    if (t->deadline < 0) {
        *timeout = -1;
        return FALSE;
    }
    now = g_source_get_time(source);
    if (now >= t->deadline) {
        *timeout = 0;
        return TRUE;
    }
    /* Round up so the timer never fires early. */
    *timeout = (gint) MIN((t->deadline - now + 999) / 1000, (gint64) G_MAXINT);
    return FALSE;
}

static gboolean timer_check(GSource *source)
{
    SpiceTimer *t = (SpiceTimer *) source;

    return t->deadline >= 0 && g_source_get_time(source) >= t->deadline;
}

static gboolean timer_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    SpiceTimer *t = (SpiceTimer *) source;

    t->deadline = -1; /* one-shot; func may re-arm */
    t->func(t->opaque);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs timer_funcs = {
    .prepare = timer_prepare,
    .check = timer_check,
    .dispatch = timer_dispatch,
};

static SpiceTimer *core_timer_add(SpiceTimerFunc func, void *opaque)
{
    SpiceTimer *t;

    g_return_val_if_fail(the_host != NULL, NULL);
    t = (SpiceTimer *) g_source_new(&timer_funcs, sizeof(SpiceTimer));
    t->func = func;
    t->opaque = opaque;
    t->deadline = -1;
    g_source_set_name(&t->source, "spice-timer");
    g_source_attach(&t->source, the_host->ctx);
    return t;
}

static void core_timer_start(SpiceTimer *t, uint32_t ms)
{
    /* From another thread the context would need a wakeup; libspice-server calls this
     * only from the thread that runs it (no QXL worker here). */
    t->deadline = g_get_monotonic_time() + (gint64) ms * 1000;
}

static void core_timer_cancel(SpiceTimer *t)
{
    t->deadline = -1;
}

static void core_timer_remove(SpiceTimer *t)
{
    g_source_destroy(&t->source);
    g_source_unref(&t->source);
}

struct SpiceWatch {
    GSource source;
    GPollFD pfd;
    gboolean polled; /* pfd is registered with the source */
    int mask;        /* SPICE_WATCH_EVENT_* */
    SpiceWatchFunc func;
    void *opaque;
};

static gushort watch_events(int mask)
{
    gushort ev = 0;

    if (mask & SPICE_WATCH_EVENT_READ) {
        ev |= G_IO_IN;
    }
    if (mask & SPICE_WATCH_EVENT_WRITE) {
        ev |= G_IO_OUT;
    }
    return ev;
}

static gboolean watch_check(GSource *source)
{
    SpiceWatch *w = (SpiceWatch *) source;

    return w->polled && (w->pfd.revents & (w->pfd.events | G_IO_HUP | G_IO_ERR | G_IO_NVAL));
}

static gboolean watch_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    SpiceWatch *w = (SpiceWatch *) source;
    gushort rev = w->pfd.revents;
    int ev = 0;

    w->pfd.revents = 0;
    if ((w->mask & SPICE_WATCH_EVENT_READ) && (rev & (G_IO_IN | G_IO_HUP | G_IO_ERR))) {
        ev |= SPICE_WATCH_EVENT_READ;
    }
    if ((w->mask & SPICE_WATCH_EVENT_WRITE) && (rev & (G_IO_OUT | G_IO_HUP | G_IO_ERR))) {
        ev |= SPICE_WATCH_EVENT_WRITE;
    }
    if (ev != 0) {
        /* May remove this watch: GLib holds a reference for the dispatch. */
        w->func(w->pfd.fd, ev, w->opaque);
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs watch_funcs = {
    .check = watch_check,
    .dispatch = watch_dispatch,
};

static void core_watch_update_mask(SpiceWatch *w, int mask)
{
    gushort events = watch_events(mask);

    w->mask = mask;
    w->pfd.events = events;
    if (events != 0 && !w->polled) {
        g_source_add_poll(&w->source, &w->pfd);
        w->polled = TRUE;
    } else if (events == 0 && w->polled) {
        /* A hung-up fd would otherwise wake poll() forever with nothing asked for. */
        g_source_remove_poll(&w->source, &w->pfd);
        w->polled = FALSE;
        w->pfd.revents = 0;
    }
}

static SpiceWatch *core_watch_add(int fd, int event_mask, SpiceWatchFunc func, void *opaque)
{
    SpiceWatch *w;

    g_return_val_if_fail(the_host != NULL, NULL);
    w = (SpiceWatch *) g_source_new(&watch_funcs, sizeof(SpiceWatch));
    w->pfd.fd = fd;
    w->func = func;
    w->opaque = opaque;
    g_source_set_name(&w->source, "spice-watch");
    core_watch_update_mask(w, event_mask);
    g_source_attach(&w->source, the_host->ctx);
    return w;
}

static void core_watch_remove(SpiceWatch *w)
{
    g_source_destroy(&w->source);
    g_source_unref(&w->source);
}

static char *peer_address(const SpiceChannelEventInfo *info)
{
    g_autoptr(GSocketAddress) addr = NULL;

    if (!(info->flags & SPICE_CHANNEL_EVENT_FLAG_ADDR_EXT) || info->plen_ext == 0) {
        return NULL;
    }
    addr = g_socket_address_new_from_native((gpointer) &info->paddr_ext, info->plen_ext);
    if (addr != NULL && G_IS_INET_SOCKET_ADDRESS(addr)) {
        GInetSocketAddress *ia = G_INET_SOCKET_ADDRESS(addr);
        g_autofree char *host = g_inet_address_to_string(g_inet_socket_address_get_address(ia));

        return g_strdup_printf(strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host,
                               g_inet_socket_address_get_port(ia));
    }
    return addr != NULL && G_IS_UNIX_SOCKET_ADDRESS(addr) ? g_strdup("unix") : NULL;
}

static void core_channel_event(int event, SpiceChannelEventInfo *info)
{
    VmcSpiceHost *h = the_host;

    if (h == NULL || info == NULL || info->type != SPICE_CHANNEL_MAIN) {
        return;
    }
    if (event == SPICE_CHANNEL_EVENT_INITIALIZED) {
        if (h->client_id != 0 && h->rec != NULL) {
            vmc_recorder_event(h->rec, VMC_RECORD_CLIENT_DISCONNECTED, h->client_id,
                               "replaced");
        }
        h->client_id = ++h->next_client_id;
        h->client_connection_id = info->connection_id;
        if (h->bridge != NULL) {
            vmc_spice_bridge_set_client_id(h->bridge, h->client_id);
        }
        if (h->rec != NULL) {
            g_autofree char *peer = peer_address(info);

            vmc_recorder_event(h->rec, VMC_RECORD_CLIENT_CONNECTED, h->client_id, peer);
        }
        g_debug("spice host: client %u connected", h->client_id);
    } else if (event == SPICE_CHANNEL_EVENT_DISCONNECTED && h->client_id != 0 &&
               info->connection_id == h->client_connection_id) {
        g_debug("spice host: client %u disconnected", h->client_id);
        if (h->rec != NULL) {
            vmc_recorder_event(h->rec, VMC_RECORD_CLIENT_DISCONNECTED, h->client_id, NULL);
        }
        h->client_id = 0;
    }
}

/* ------------------------------------------------------------------------------------
 * Listen address. We bind the socket ourselves and hand it over
 * (spice_server_set_listen_socket_fd), so a busy address is a clear error from us
 * instead of a libspice-server warning.
 * ------------------------------------------------------------------------------------ */

static GSocket *listen_unix(const char *path, GError **error)
{
    g_autoptr(GSocket) sock = NULL;
    g_autoptr(GSocketAddress) addr = NULL;
    struct stat st;

    if (path[0] == '\0') {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "empty UNIX socket path");
        return NULL;
    }
    sock = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                        error);
    if (sock == NULL) {
        return NULL;
    }
    addr = g_unix_socket_address_new(path);
    /* A socket file nobody listens on any more is stale: replace it. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        g_autoptr(GSocket) probe = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM,
                                                G_SOCKET_PROTOCOL_DEFAULT, NULL);

        if (probe != NULL && !g_socket_connect(probe, addr, NULL, NULL)) {
            unlink(path);
        }
    }
    if (!g_socket_bind(sock, addr, FALSE, error) || !g_socket_listen(sock, error)) {
        g_prefix_error(error, "cannot listen on unix:%s: ", path);
        return NULL;
    }
    return g_steal_pointer(&sock);
}

static GSocket *listen_tcp(const char *spec, char **describe, GError **error)
{
    g_autoptr(GSocketConnectable) conn = NULL;
    g_autoptr(GSocketAddressEnumerator) en = NULL;
    g_autoptr(GError) local = NULL;
    GSocketAddress *addr;

    conn = g_network_address_parse(spec, 0, &local);
    if (conn == NULL || strrchr(spec, ':') == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "bad listen address '%s' (want HOST:PORT or unix:PATH)", spec);
        return NULL;
    }
    en = g_socket_connectable_enumerate(conn);
    while ((addr = g_socket_address_enumerator_next(en, NULL, &local)) != NULL) {
        g_autoptr(GSocketAddress) owned = addr;
        g_autoptr(GSocket) sock = NULL;
        g_autoptr(GSocketAddress) bound = NULL;

        sock = g_socket_new(g_socket_address_get_family(addr), G_SOCKET_TYPE_STREAM,
                            G_SOCKET_PROTOCOL_TCP, &local);
        if (sock == NULL) {
            continue;
        }
        g_clear_error(&local);
        if (!g_socket_bind(sock, addr, TRUE, &local) || !g_socket_listen(sock, &local)) {
            continue;
        }
        bound = g_socket_get_local_address(sock, NULL);
        if (bound != NULL && G_IS_INET_SOCKET_ADDRESS(bound)) {
            GInetSocketAddress *ia = G_INET_SOCKET_ADDRESS(bound);
            g_autofree char *host =
                g_inet_address_to_string(g_inet_socket_address_get_address(ia));
            guint16 port = g_inet_socket_address_get_port(ia);

            *describe = strchr(host, ':') != NULL ? g_strdup_printf("[%s]:%u", host, port)
                                                  : g_strdup_printf("%s:%u", host, port);
        } else {
            *describe = g_strdup(spec);
        }
        return g_steal_pointer(&sock);
    }
    g_set_error(error, G_IO_ERROR, local != NULL ? local->code : G_IO_ERROR_FAILED,
                "cannot listen on %s: %s", spec,
                local != NULL ? local->message : "no usable address");
    return NULL;
}

static gboolean host_listen(VmcSpiceHost *h, const VmcServerOptions *opts, GError **error)
{
    const char *spec = "127.0.0.1:5930";

    if (opts->listen != NULL && opts->listen->len > 1) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "--backend spice-server supports one --listen address "
                    "(libspice-server listens on one), %u given", opts->listen->len);
        return FALSE;
    }
    if (opts->listen != NULL && opts->listen->len == 1) {
        spec = g_ptr_array_index(opts->listen, 0);
    }
    if (g_str_has_prefix(spec, "unix:")) {
        h->listener = listen_unix(spec + 5, error);
        if (h->listener == NULL) {
            return FALSE;
        }
        h->unix_path = g_strdup(spec + 5);
        h->describe = g_strdup(spec);
    } else {
        h->listener = listen_tcp(spec, &h->describe, error);
        if (h->listener == NULL) {
            return FALSE;
        }
    }
    G_GNUC_BEGIN_IGNORE_DEPRECATIONS
    int r = spice_server_set_listen_socket_fd(h->server, g_socket_get_fd(h->listener));
    G_GNUC_END_IGNORE_DEPRECATIONS
    if (r != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "libspice-server refused the listening socket");
        return FALSE;
    }
    return TRUE;
}

static gboolean host_check_options(const VmcServerOptions *opts, GError **error)
{
    if (opts->max_clients > 1) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "--max-clients %u is not supported by --backend spice-server "
                    "(libspice-server serves one client; a new one replaces the old)",
                    opts->max_clients);
        return FALSE;
    }
    if (opts->agent_window != 0 && opts->agent_window != SPICE_AGENT_WINDOW) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "--agent-window %u is not supported by --backend spice-server "
                    "(libspice-server always grants %u)",
                    opts->agent_window, SPICE_AGENT_WINDOW);
        return FALSE;
    }
    if (!opts->disable_ticketing && opts->password == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "no password: give --password, --password-file or --disable-ticketing");
        return FALSE;
    }
    if (!opts->disable_ticketing && strlen(opts->password) > SPICE_TICKET_MAX) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "--backend spice-server: passwords are limited to %u bytes",
                    SPICE_TICKET_MAX);
        return FALSE;
    }
    if (opts->guest == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "no --guest port given");
        return FALSE;
    }
    return TRUE;
}

/**
 * vmc_spice_host_new:
 * @opts: (transfer none): daemon options
 * @ctx: (nullable) (transfer none): the context to run on
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the running host, or %NULL with @error set
 */
VmcSpiceHost *vmc_spice_host_new(const VmcServerOptions *opts, GMainContext *ctx,
                                 GError **error)
{
    g_autoptr(VmcSpiceHost) h = NULL;

    g_return_val_if_fail(opts != NULL, NULL);
    g_return_val_if_fail(error == NULL || *error == NULL, NULL);

    if (the_host != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "only one libspice-server host per process");
        return NULL;
    }
    if (!host_check_options(opts, error)) {
        return NULL;
    }
    signal(SIGPIPE, SIG_IGN);

    h = g_new0(VmcSpiceHost, 1);
    h->ctx = ctx != NULL ? g_main_context_ref(ctx) : g_main_context_ref(g_main_context_default());
    the_host = h;

    h->core.base.type = SPICE_INTERFACE_CORE;
    h->core.base.description = "vmcmux GLib core";
    h->core.base.major_version = SPICE_INTERFACE_CORE_MAJOR;
    h->core.base.minor_version = SPICE_INTERFACE_CORE_MINOR;
    h->core.timer_add = core_timer_add;
    h->core.timer_start = core_timer_start;
    h->core.timer_cancel = core_timer_cancel;
    h->core.timer_remove = core_timer_remove;
    h->core.watch_add = core_watch_add;
    h->core.watch_update_mask = core_watch_update_mask;
    h->core.watch_remove = core_watch_remove;
    h->core.channel_event = core_channel_event;

    if (opts->record_path != NULL) {
        h->rec = vmc_recorder_new(opts->record_path, error);
        if (h->rec == NULL) {
            return NULL;
        }
    }

    h->server = spice_server_new();
    if (!host_listen(h, opts, error)) {
        return NULL;
    }
    if (opts->disable_ticketing) {
        spice_server_set_noauth(h->server);
    } else if (spice_server_set_ticket(h->server, opts->password, 0, 0, 0) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "libspice-server refused the password");
        return NULL;
    }
    if (opts->name != NULL) {
        spice_server_set_name(h->server, opts->name);
    }
    if (opts->have_uuid) {
        spice_server_set_uuid(h->server, opts->uuid);
    }
    spice_server_set_agent_copypaste(h->server, opts->copy_paste);
    spice_server_set_agent_file_xfer(h->server, opts->file_xfer);

    if (spice_server_init(h->server, &h->core) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "libspice-server failed to start");
        return NULL;
    }

    h->port = vmc_guest_port_new(opts->guest, h->ctx, error);
    if (h->port == NULL) {
        return NULL;
    }
    h->bridge = vmc_spice_bridge_new(h->server, h->port, error);
    if (h->bridge == NULL) {
        return NULL;
    }
    if (h->rec != NULL) {
        vmc_spice_bridge_set_recorder(h->bridge, h->rec);
    }
    if (!vmc_guest_port_start(h->port, error)) {
        return NULL;
    }
    return g_steal_pointer(&h);
}

void vmc_spice_host_free(VmcSpiceHost *host)
{
    if (host == NULL) {
        return;
    }
    vmc_spice_bridge_free(host->bridge);
    vmc_guest_port_free(host->port);
    if (host->server != NULL) {
        spice_server_destroy(host->server);
    }
    if (host->listener != NULL) {
        g_socket_close(host->listener, NULL);
        g_object_unref(host->listener);
    }
    if (host->unix_path != NULL) {
        unlink(host->unix_path);
    }
    vmc_recorder_free(host->rec);
    g_free(host->unix_path);
    g_free(host->describe);
    g_main_context_unref(host->ctx);
    if (the_host == host) {
        the_host = NULL;
    }
    g_free(host);
}

const char *vmc_spice_host_describe(VmcSpiceHost *host)
{
    g_return_val_if_fail(host != NULL, NULL);
    return host->describe;
}

VmcGuestPort *vmc_spice_host_get_guest_port(VmcSpiceHost *host)
{
    g_return_val_if_fail(host != NULL, NULL);
    return host->port;
}

VmcSpiceBridge *vmc_spice_host_get_bridge(VmcSpiceHost *host)
{
    g_return_val_if_fail(host != NULL, NULL);
    return host->bridge;
}

SpiceServer *vmc_spice_host_get_server(VmcSpiceHost *host)
{
    g_return_val_if_fail(host != NULL, NULL);
    return host->server;
}
