/* vmc-session-agent.c — a stand-in for the X11 session agent (spice-vdagent) that talks
 * udscs to spice-vdagentd's -S socket, so the real daemon opens its port without X.
 *
 * udscs frames: four native-endian u32 {type, arg1, arg2, size} + size bytes.
 * It reports one 1024x768 screen (the daemon then opens the virtio port), answers
 * FILE_XFER_START with CAN_SEND_DATA, writes FILE_XFER_DATA to --dir and answers
 * SUCCESS when `size` bytes arrived; answers a client clipboard GRAB with a REQUEST
 * for UTF8_TEXT, and a client REQUEST with the text it grabbed with.
 *
 * stdin commands (one per line):
 *   grab TEXT     grab the clipboard from the guest side, offering UTF8_TEXT
 *   quit          exit 0
 * stdout events (one per line, machine-readable):
 *   connected | version V | client-disconnected | disconnected
 *   file-start ID NAME SIZE | file-progress ID BYTES | file-stalled ID BYTES
 *   file-done NAME SIZE | file-status ID STATUS | file-error ID MESSAGE
 *   clipboard-grab SEL TYPE... | clipboard-request SEL TYPE | clipboard-data SEL TYPE TEXT
 *   clipboard-release SEL
 */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <spice/vd_agent.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* udscs message numbers of spice-vdagent 0.22 (vdagentd-proto.h order). */
enum {
    UD_GUEST_XORG_RESOLUTION,
    UD_MONITORS_CONFIG,
    UD_CLIPBOARD_GRAB,
    UD_CLIPBOARD_REQUEST,
    UD_CLIPBOARD_DATA,
    UD_CLIPBOARD_RELEASE,
    UD_VERSION,
    UD_AUDIO_VOLUME_SYNC,
    UD_FILE_XFER_START,
    UD_FILE_XFER_STATUS,
    UD_FILE_XFER_DATA,
    UD_FILE_XFER_DISABLE,
    UD_CLIENT_DISCONNECTED,
    UD_GRAPHICS_DEVICE_INFO,
};

#define UD_HEADER_SIZE 16u
#define UD_MAX_MESSAGE (16u * 1024u * 1024u)

typedef struct {
    guint32 id;
    char *name;
    guint64 size;
    guint64 got;
    int fd;
    gboolean progress_told;
} Xfer;

typedef struct {
    GMainLoop *loop;
    int sock;
    guint sock_watch;
    GByteArray *in;
    char *dir;
    GHashTable *xfers; /* id -> Xfer */
    char *grab_text;
    guint64 progress_at;
    guint64 stall_after;
    gboolean stalled;
    int exit_code;
} Agent;

static void out(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void out(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static gboolean write_all(int fd, const guint8 *buf, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            struct timeval tv = { 0, 1000 };

            select(0, NULL, NULL, NULL, &tv);
            continue;
        }
        if (n <= 0) {
            return FALSE;
        }
        buf += n;
        len -= (gsize) n;
    }
    return TRUE;
}

static void send_msg(Agent *a, guint32 type, guint32 arg1, guint32 arg2, const void *data,
                     guint32 size)
{
    guint32 hdr[4] = { type, arg1, arg2, size };

    if (!write_all(a->sock, (const guint8 *) hdr, sizeof(hdr)) ||
        (size > 0 && !write_all(a->sock, data, size))) {
        out("disconnected");
        g_main_loop_quit(a->loop);
    }
}

static void xfer_free(gpointer p)
{
    Xfer *x = p;

    if (x->fd >= 0) {
        close(x->fd);
    }
    g_free(x->name);
    g_free(x);
}

static guint32 rd32(const guint8 *p)
{
    guint32 v;

    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}

static guint64 rd64(const guint8 *p)
{
    guint64 v;

    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

static void on_file_start(Agent *a, const guint8 *data, guint32 size)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autofree char *name = NULL;
    g_autofree char *base = NULL;
    g_autofree char *path = NULL;
    guint64 fsize;
    guint32 id;
    Xfer *x;

    if (size < 5) {
        out("file-error 0 short FILE_XFER_START");
        return;
    }
    id = rd32(data);
    if (!g_key_file_load_from_data(kf, (const char *) data + 4, size - 4, G_KEY_FILE_NONE,
                                   NULL)) {
        out("file-error %u bad keyfile", id);
        send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_ERROR, NULL, 0);
        return;
    }
    name = g_key_file_get_string(kf, "vdagent-file-xfer", "name", NULL);
    fsize = g_key_file_get_uint64(kf, "vdagent-file-xfer", "size", NULL);
    base = name != NULL ? g_path_get_basename(name) : NULL;
    if (base == NULL || base[0] == '.' || strchr(base, '/') != NULL) {
        out("file-error %u bad name", id);
        send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_ERROR, NULL, 0);
        return;
    }
    path = g_build_filename(a->dir, base, NULL);
    x = g_new0(Xfer, 1);
    x->id = id;
    x->name = g_strdup(base);
    x->size = fsize;
    x->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (x->fd < 0) {
        out("file-error %u %s", id, g_strerror(errno));
        send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_ERROR, NULL, 0);
        xfer_free(x);
        return;
    }
    g_hash_table_replace(a->xfers, GUINT_TO_POINTER(id), x);
    out("file-start %u %s %" G_GUINT64_FORMAT, id, base, fsize);
    send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA, NULL, 0);
}

static void on_file_data(Agent *a, const guint8 *data, guint32 size)
{
    guint32 id;
    guint64 n;
    Xfer *x;

    if (size < 12) {
        out("file-error 0 short FILE_XFER_DATA");
        return;
    }
    id = rd32(data);
    n = rd64(data + 4);
    x = g_hash_table_lookup(a->xfers, GUINT_TO_POINTER(id));
    if (x == NULL) {
        out("file-error %u data for an unknown transfer", id);
        return;
    }
    if (n != size - 12u || n > x->size - x->got) {
        out("file-error %u bad data size %" G_GUINT64_FORMAT, id, n);
        send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_ERROR, NULL, 0);
        g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
        return;
    }
    if (!write_all(x->fd, data + 12, (gsize) n)) {
        out("file-error %u write failed", id);
        send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_ERROR, NULL, 0);
        g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
        return;
    }
    x->got += n;
    if (a->progress_at > 0 && !x->progress_told && x->got >= a->progress_at) {
        x->progress_told = TRUE;
        out("file-progress %u %" G_GUINT64_FORMAT, id, x->got);
    }
    if (a->stall_after > 0 && x->got >= a->stall_after && x->got < x->size) {
        /* Stop reading: the transfer can never complete from here. */
        out("file-stalled %u %" G_GUINT64_FORMAT, id, x->got);
        a->stalled = TRUE;
        return;
    }
    if (x->got == x->size) {
        out("file-done %s %" G_GUINT64_FORMAT, x->name, x->size);
        send_msg(a, UD_FILE_XFER_STATUS, id, VD_AGENT_FILE_XFER_STATUS_SUCCESS, NULL, 0);
        g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
    }
}

static void on_message(Agent *a, guint32 type, guint32 arg1, guint32 arg2, const guint8 *data,
                       guint32 size)
{
    switch (type) {
    case UD_VERSION: {
        g_autofree char *v = g_strndup((const char *) data, size);

        out("version %s", v);
        break;
    }
    case UD_CLIENT_DISCONNECTED:
        out("client-disconnected");
        g_hash_table_remove_all(a->xfers);
        break;
    case UD_FILE_XFER_START:
        on_file_start(a, data, size);
        break;
    case UD_FILE_XFER_DATA:
        on_file_data(a, data, size);
        break;
    case UD_FILE_XFER_STATUS:
        if (size >= 8) {
            guint32 id = rd32(data);

            out("file-status %u %u", id, rd32(data + 4));
            g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
        }
        break;
    case UD_CLIPBOARD_GRAB: {
        g_autoptr(GString) s = g_string_new(NULL);
        gboolean has_text = FALSE;

        g_string_append_printf(s, "clipboard-grab %u", arg1);
        for (guint32 off = 0; off + 4 <= size; off += 4) {
            guint32 t;

            memcpy(&t, data + off, 4);
            g_string_append_printf(s, " %u", t);
            has_text |= t == VD_AGENT_CLIPBOARD_UTF8_TEXT;
        }
        out("%s", s->str);
        if (has_text) {
            send_msg(a, UD_CLIPBOARD_REQUEST, arg1, VD_AGENT_CLIPBOARD_UTF8_TEXT, NULL, 0);
        }
        break;
    }
    case UD_CLIPBOARD_REQUEST:
        out("clipboard-request %u %u", arg1, arg2);
        if (a->grab_text != NULL && arg2 == VD_AGENT_CLIPBOARD_UTF8_TEXT) {
            send_msg(a, UD_CLIPBOARD_DATA, arg1, arg2, a->grab_text,
                     (guint32) strlen(a->grab_text));
        } else {
            send_msg(a, UD_CLIPBOARD_DATA, arg1, VD_AGENT_CLIPBOARD_NONE, NULL, 0);
        }
        break;
    case UD_CLIPBOARD_DATA: {
        g_autofree char *text = g_strndup((const char *) data, size);
        g_autofree char *esc = g_strescape(text, NULL);

        out("clipboard-data %u %u %s", arg1, arg2, esc);
        break;
    }
    case UD_CLIPBOARD_RELEASE:
        out("clipboard-release %u", arg1);
        break;
    default:
        break; /* monitors config, volume sync, device info: nothing to do */
    }
}

static gboolean parse_input(Agent *a)
{
    while (!a->stalled && a->in->len >= UD_HEADER_SIZE) {
        guint32 h[4];

        memcpy(h, a->in->data, sizeof(h));
        if (h[3] > UD_MAX_MESSAGE) {
            out("disconnected message too large");
            return FALSE;
        }
        if (a->in->len - UD_HEADER_SIZE < h[3]) {
            break;
        }
        on_message(a, h[0], h[1], h[2], a->in->data + UD_HEADER_SIZE, h[3]);
        g_byte_array_remove_range(a->in, 0, UD_HEADER_SIZE + h[3]);
    }
    return TRUE;
}

static gboolean on_sock(gint fd, GIOCondition cond, gpointer user_data)
{
    Agent *a = user_data;
    guint8 buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        out("disconnected");
        a->sock_watch = 0;
        g_main_loop_quit(a->loop);
        return G_SOURCE_REMOVE;
    }
    g_byte_array_append(a->in, buf, (guint) n);
    if (!parse_input(a)) {
        a->exit_code = 1;
        a->sock_watch = 0;
        g_main_loop_quit(a->loop);
        return G_SOURCE_REMOVE;
    }
    if (a->stalled) {
        a->sock_watch = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_stdin(GIOChannel *ch, GIOCondition cond, gpointer user_data)
{
    Agent *a = user_data;
    g_autofree char *line = NULL;
    gsize term = 0;
    GIOStatus st = g_io_channel_read_line(ch, &line, NULL, &term, NULL);

    if (st == G_IO_STATUS_AGAIN) {
        return G_SOURCE_CONTINUE;
    }
    if (st != G_IO_STATUS_NORMAL) {
        return G_SOURCE_REMOVE; /* stdin closed: keep running until the daemon goes */
    }
    line[term] = '\0';
    if (g_str_has_prefix(line, "grab ")) {
        guint32 types[1] = { VD_AGENT_CLIPBOARD_UTF8_TEXT };

        g_free(a->grab_text);
        a->grab_text = g_strdup(line + 5);
        send_msg(a, UD_CLIPBOARD_GRAB, VD_AGENT_CLIPBOARD_SELECTION_CLIPBOARD, 0, types,
                 sizeof(types));
        out("grabbed");
    } else if (strcmp(line, "quit") == 0) {
        g_main_loop_quit(a->loop);
    }
    return G_SOURCE_CONTINUE;
}

int main(int argc, char **argv)
{
    g_autofree char *socket_path = NULL;
    g_autofree char *dir = NULL;
    gint64 progress_at = 0;
    gint64 stall_after = 0;
    int width = 1024;
    int height = 768;
    GOptionEntry entries[] = {
        { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "spice-vdagentd -S socket",
          "PATH" },
        { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where received files go", "DIR" },
        { "progress-at", 0, 0, G_OPTION_ARG_INT64, &progress_at,
          "print file-progress once a transfer has this many bytes", "N" },
        { "stall-after", 0, 0, G_OPTION_ARG_INT64, &stall_after,
          "stop reading once a transfer has this many bytes", "N" },
        { NULL },
    };
    g_autoptr(GOptionContext) opt = g_option_context_new("- session agent stand-in");
    g_autoptr(GError) error = NULL;
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    gint32 screen[5];
    Agent a = { 0 };
    GIOChannel *in;

    g_option_context_add_main_entries(opt, entries, NULL);
    if (!g_option_context_parse(opt, &argc, &argv, &error) || socket_path == NULL ||
        dir == NULL || progress_at < 0 || stall_after < 0) {
        g_printerr("%s\n", error != NULL ? error->message : "need --socket and --dir");
        return 64;
    }
    if (strlen(socket_path) >= sizeof(sun.sun_path)) {
        g_printerr("socket path too long\n");
        return 64;
    }
    memcpy(sun.sun_path, socket_path, strlen(socket_path) + 1);
    a.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (a.sock < 0 || connect(a.sock, (struct sockaddr *) &sun, sizeof(sun)) != 0) {
        g_printerr("connect %s: %s\n", socket_path, g_strerror(errno));
        return 2;
    }
    a.loop = g_main_loop_new(NULL, FALSE);
    a.in = g_byte_array_new();
    a.dir = dir;
    a.progress_at = (guint64) progress_at;
    a.stall_after = (guint64) stall_after;
    a.xfers = g_hash_table_new_full(NULL, NULL, NULL, xfer_free);
    g_mkdir_with_parents(dir, 0755);

    screen[0] = width;
    screen[1] = height;
    screen[2] = 0;
    screen[3] = 0;
    screen[4] = 0;
    send_msg(&a, UD_GUEST_XORG_RESOLUTION, (guint32) width, (guint32) height, screen,
             sizeof(screen));
    out("connected");

    a.sock_watch = g_unix_fd_add(a.sock, G_IO_IN | G_IO_HUP | G_IO_ERR, on_sock, &a);
    in = g_io_channel_unix_new(STDIN_FILENO);
    g_io_add_watch(in, G_IO_IN | G_IO_HUP | G_IO_ERR, on_stdin, &a);
    g_io_channel_unref(in);

    g_main_loop_run(a.loop);

    if (a.sock_watch != 0) {
        g_source_remove(a.sock_watch);
    }
    close(a.sock);
    g_hash_table_destroy(a.xfers);
    g_byte_array_unref(a.in);
    g_main_loop_unref(a.loop);
    g_free(a.grab_text);
    return a.exit_code;
}
