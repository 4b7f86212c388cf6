/* vmc-gtk-client.c — a headless spice-gtk (libspice-client-glib) client for the interop
 * tests. It connects, waits for the agent's capabilities, then runs scenario steps
 * given on the command line, separated by "+":
 *
 *   caps                   print the agent's capabilities
 *   copy FILE...           spice_main_channel_file_copy_async; must succeed (MB/s printed)
 *   copy-fail FILE...      the same, but the copy must fail
 *   clipboard-grab TEXT    grab the clipboard (UTF8_TEXT), answer the agent's request
 *                          with TEXT; done once the data was handed to spice-gtk
 *   clipboard-wait         wait for the agent to grab, request UTF8_TEXT, print it
 *   wait-stdin             wait for a line (or EOF) on stdin
 *   wait-agent-gone        wait until the agent is not connected (done at once if so)
 *
 * Every step except wait-stdin and wait-agent-gone first waits until the agent is connected and its
 * capabilities have arrived. Machine-readable lines on stdout:
 *   agent-ready CAPS       caps received (hex word 0), after every (re)connect
 *   agent-disconnected
 *   agent-caps HEX NAME... the caps step
 *   copy-done BYTES SECONDS MBPS / copy-failed MESSAGE
 *   clipboard-request SEL TYPE / clipboard-sent SEL TYPE LEN
 *   clipboard-grab SEL TYPE... / clipboard-data SEL TYPE TEXT(escaped)
 *   log LEVEL MESSAGE      a warning or critical logged by spice-gtk
 *   done
 *
 * Exit: 0 every step met its expectation; 1 a step did not; 2 connection failed or
 * lost; 3 authentication refused; 4 overall timeout; 64 usage.
 */
#include <errno.h>
#include <glib-unix.h>
#include <glib.h>
#include <spice-client.h>
#include <spice/vd_agent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum {
    EXIT_OK = 0,
    EXIT_STEP_FAILED = 1,
    EXIT_CONNECTION = 2,
    EXIT_AUTH = 3,
    EXIT_TIMEOUT = 4,
    EXIT_USAGE = 64,
};

typedef struct {
    GMainLoop *loop;
    SpiceSession *session;
    SpiceMainChannel *main;
    int exit_code;
    gboolean finished;

    char **steps;      /* remaining argv, "+"-separated */
    guint step_at;     /* index of the current step's verb */
    gboolean step_running;
    gboolean agent_ready;

    /* copy */
    GCancellable *cancel;
    gint64 copy_start;
    guint64 copy_bytes;
    gboolean copy_expect_ok;

    /* clipboard */
    char *clip_text;
    gboolean clip_waiting_grab;
    gboolean clip_waiting_data;
    guint32 clip_sel;

    guint live_channels;
    guint opened_channels; /* channels that reached OPENED (or failed) */

    gboolean waiting_agent_gone;

    /* stdin */
    gboolean waiting_stdin;
    guint stdin_watch;
} Client;

static Client *the_client;

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

/* Quits once no channel is still linking: spice-gtk does not like a session torn down
 * under a channel in the middle of its link. */
static void maybe_quit(Client *c)
{
    if (c->finished && (c->opened_channels >= c->live_channels || c->exit_code != EXIT_OK)) {
        g_main_loop_quit(c->loop);
    }
}

static void finish(Client *c, int code)
{
    if (c->finished) {
        return;
    }
    c->finished = TRUE;
    c->exit_code = code;
    if (code == EXIT_OK) {
        out("done");
    }
    maybe_quit(c);
}

/* ---- capabilities ---- */

static guint32 agent_caps_word(SpiceMainChannel *m, guint word)
{
    guint32 v = 0;

    for (guint bit = 0; bit < 32; bit++) {
        if (spice_main_channel_agent_test_capability(m, word * 32 + bit)) {
            v |= 1u << bit;
        }
    }
    return v;
}

static gboolean agent_is_ready(Client *c)
{
    gboolean connected = FALSE;

    if (c->main == NULL) {
        return FALSE;
    }
    g_object_get(c->main, "agent-connected", &connected, NULL);
    return connected && (agent_caps_word(c->main, 0) != 0 || agent_caps_word(c->main, 1) != 0);
}

static const char *cap_names[] = {
    "MOUSE_STATE", "MONITORS_CONFIG", "REPLY", "CLIPBOARD", "DISPLAY_CONFIG",
    "CLIPBOARD_BY_DEMAND", "CLIPBOARD_SELECTION", "SPARSE_MONITORS_CONFIG",
    "GUEST_LINEEND_LF", "GUEST_LINEEND_CRLF", "MAX_CLIPBOARD", "AUDIO_VOLUME_SYNC",
    "MONITORS_CONFIG_POSITION", "FILE_XFER_DISABLED", "FILE_XFER_DETAILED_ERRORS",
    "GRAPHICS_DEVICE_INFO", "CLIPBOARD_NO_RELEASE_ON_REGRAB", "CLIPBOARD_GRAB_SERIAL",
};

static void print_caps(Client *c)
{
    g_autoptr(GString) s = g_string_new(NULL);
    guint32 w0 = agent_caps_word(c->main, 0);

    g_string_append_printf(s, "agent-caps 0x%08x", w0);
    for (guint bit = 0; bit < 32; bit++) {
        if (w0 & (1u << bit)) {
            g_string_append_printf(s, " %s",
                                   bit < G_N_ELEMENTS(cap_names) ? cap_names[bit] : "?");
        }
    }
    out("%s", s->str);
}

/* ---- steps ---- */

static void run_next_step(Client *c);

static guint step_argc(Client *c)
{
    guint n = 0;

    while (c->steps[c->step_at + 1 + n] != NULL && strcmp(c->steps[c->step_at + 1 + n], "+") != 0) {
        n++;
    }
    return n;
}

static void step_done(Client *c, gboolean ok)
{
    c->step_running = FALSE;
    if (!ok) {
        finish(c, EXIT_STEP_FAILED);
        return;
    }
    c->step_at += 1 + step_argc(c);
    if (c->steps[c->step_at] != NULL) {
        c->step_at++; /* the "+" */
    }
    run_next_step(c);
}

static void copy_done(GObject *source, GAsyncResult *res, gpointer user_data)
{
    Client *c = user_data;
    g_autoptr(GError) error = NULL;
    gboolean ok = spice_main_channel_file_copy_finish(SPICE_MAIN_CHANNEL(source), res, &error);

    if (c->finished) {
        return;
    }
    if (ok) {
        double secs = (double) (g_get_monotonic_time() - c->copy_start) / 1e6;

        out("copy-done %" G_GUINT64_FORMAT " %.3f %.1f", c->copy_bytes, secs,
            secs > 0 ? (double) c->copy_bytes / secs / 1e6 : 0.0);
    } else {
        out("copy-failed %s", error != NULL ? error->message : "?");
    }
    step_done(c, ok == c->copy_expect_ok);
}

static void start_copy(Client *c, gboolean expect_ok)
{
    guint n = step_argc(c);
    g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_object_unref);
    g_autofree GFile **list = NULL;

    c->copy_bytes = 0;
    for (guint i = 0; i < n; i++) {
        const char *path = c->steps[c->step_at + 1 + i];
        GFile *f = g_file_new_for_path(path);
        g_autoptr(GFileInfo) info = g_file_query_info(f, G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                                      G_FILE_QUERY_INFO_NONE, NULL, NULL);

        if (info != NULL) {
            c->copy_bytes += (guint64) g_file_info_get_size(info);
        }
        g_ptr_array_add(files, f);
    }
    if (n == 0) {
        g_printerr("copy: no files\n");
        finish(c, EXIT_USAGE);
        return;
    }
    list = g_new0(GFile *, files->len + 1);
    memcpy(list, files->pdata, files->len * sizeof(GFile *));
    c->copy_expect_ok = expect_ok;
    c->copy_start = g_get_monotonic_time();
    spice_main_channel_file_copy_async(c->main, list, G_FILE_COPY_NONE,
                                       c->cancel, NULL, NULL, copy_done, c);
}

static gboolean on_stdin(gint fd, GIOCondition cond, gpointer user_data)
{
    Client *c = user_data;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));

    if (n < 0 && errno == EINTR) {
        return G_SOURCE_CONTINUE;
    }
    if (!c->waiting_stdin) {
        if (n == 0) {
            c->stdin_watch = 0;
            return G_SOURCE_REMOVE;
        }
        return G_SOURCE_CONTINUE;
    }
    /* A line or EOF both release the step; anything after the first is ignored. */
    c->waiting_stdin = FALSE;
    c->stdin_watch = 0;
    step_done(c, TRUE);
    return G_SOURCE_REMOVE;
}

static void run_next_step(Client *c)
{
    const char *verb;

    if (c->finished || c->step_running) {
        return;
    }
    verb = c->steps[c->step_at];
    if (verb == NULL) {
        finish(c, EXIT_OK);
        return;
    }
    if (strcmp(verb, "wait-stdin") == 0) {
        c->step_running = TRUE;
        c->waiting_stdin = TRUE;
        c->stdin_watch = g_unix_fd_add(STDIN_FILENO, G_IO_IN | G_IO_HUP, on_stdin, c);
        return;
    }
    if (strcmp(verb, "wait-agent-gone") == 0) {
        gboolean connected = FALSE;

        c->step_running = TRUE;
        if (c->main != NULL) {
            g_object_get(c->main, "agent-connected", &connected, NULL);
        }
        if (!connected) {
            step_done(c, TRUE);
        } else {
            c->waiting_agent_gone = TRUE;
        }
        return;
    }
    /* The live state, not the last notification: spice-gtk fails a copy while it
     * handles AGENT_DISCONNECTED, before agent-connected is notified. */
    if (!agent_is_ready(c)) {
        return; /* resumed from on_agent_update */
    }
    c->step_running = TRUE;
    if (strcmp(verb, "caps") == 0) {
        print_caps(c);
        step_done(c, TRUE);
    } else if (strcmp(verb, "copy") == 0) {
        start_copy(c, TRUE);
    } else if (strcmp(verb, "copy-fail") == 0) {
        start_copy(c, FALSE);
    } else if (strcmp(verb, "clipboard-grab") == 0) {
        guint32 types[] = { VD_AGENT_CLIPBOARD_UTF8_TEXT };

        if (step_argc(c) != 1) {
            finish(c, EXIT_USAGE);
            return;
        }
        g_free(c->clip_text);
        c->clip_text = g_strdup(c->steps[c->step_at + 1]);
        spice_main_channel_clipboard_selection_grab(c->main,
                                                    VD_AGENT_CLIPBOARD_SELECTION_CLIPBOARD,
                                                    types, G_N_ELEMENTS(types));
        /* done in on_clipboard_request */
    } else if (strcmp(verb, "clipboard-wait") == 0) {
        c->clip_waiting_grab = TRUE;
    } else {
        g_printerr("unknown step '%s'\n", verb);
        finish(c, EXIT_USAGE);
    }
}

/* ---- spice-gtk signals ---- */

static void on_agent_update(SpiceChannel *channel, gpointer user_data)
{
    Client *c = user_data;
    gboolean ready = agent_is_ready(c);

    if (ready && !c->agent_ready) {
        out("agent-ready 0x%08x", agent_caps_word(c->main, 0));
    }
    c->agent_ready = ready;
    run_next_step(c);
}

static void on_agent_connected(GObject *obj, GParamSpec *pspec, gpointer user_data)
{
    Client *c = user_data;
    gboolean connected = FALSE;

    g_object_get(obj, "agent-connected", &connected, NULL);
    if (!connected && c->agent_ready) {
        c->agent_ready = FALSE;
        out("agent-disconnected");
    }
    if (!connected && c->waiting_agent_gone) {
        c->waiting_agent_gone = FALSE;
        step_done(c, TRUE);
    }
    on_agent_update(SPICE_CHANNEL(obj), c);
}

static gboolean on_clipboard_grab(SpiceMainChannel *m, guint selection, gpointer types,
                                  guint ntypes, gpointer user_data)
{
    Client *c = user_data;
    const guint32 *t = types;
    g_autoptr(GString) s = g_string_new(NULL);
    gboolean has_text = FALSE;

    g_string_append_printf(s, "clipboard-grab %u", selection);
    for (guint i = 0; i < ntypes; i++) {
        g_string_append_printf(s, " %u", t[i]);
        has_text |= t[i] == VD_AGENT_CLIPBOARD_UTF8_TEXT;
    }
    out("%s", s->str);
    if (c->clip_waiting_grab && has_text) {
        c->clip_waiting_grab = FALSE;
        c->clip_waiting_data = TRUE;
        c->clip_sel = selection;
        spice_main_channel_clipboard_selection_request(m, selection,
                                                       VD_AGENT_CLIPBOARD_UTF8_TEXT);
    }
    return TRUE;
}

static void on_clipboard_data(SpiceMainChannel *m, guint selection, guint type, gpointer data,
                              guint size, gpointer user_data)
{
    Client *c = user_data;
    g_autofree char *text = g_strndup(data, size);
    g_autofree char *esc = g_strescape(text, NULL);

    out("clipboard-data %u %u %s", selection, type, esc);
    if (c->clip_waiting_data && selection == c->clip_sel) {
        c->clip_waiting_data = FALSE;
        step_done(c, type == VD_AGENT_CLIPBOARD_UTF8_TEXT);
    }
}

static gboolean on_clipboard_request(SpiceMainChannel *m, guint selection, guint type,
                                     gpointer user_data)
{
    Client *c = user_data;

    out("clipboard-request %u %u", selection, type);
    if (c->clip_text == NULL || type != VD_AGENT_CLIPBOARD_UTF8_TEXT) {
        return FALSE;
    }
    spice_main_channel_clipboard_selection_notify(m, selection, type,
                                                  (const guchar *) c->clip_text,
                                                  strlen(c->clip_text));
    out("clipboard-sent %u %u %zu", selection, type, strlen(c->clip_text));
    if (c->step_running && strcmp(c->steps[c->step_at], "clipboard-grab") == 0) {
        step_done(c, TRUE);
    }
    return TRUE;
}

static void on_channel_event(SpiceChannel *channel, SpiceChannelEvent event, gpointer user_data)
{
    Client *c = user_data;

    if (event != SPICE_CHANNEL_NONE && !g_object_get_data(G_OBJECT(channel), "vmc-opened")) {
        g_object_set_data(G_OBJECT(channel), "vmc-opened", GINT_TO_POINTER(1));
        c->opened_channels++;
        maybe_quit(c);
    }
    switch (event) {
    case SPICE_CHANNEL_OPENED:
        if (SPICE_IS_MAIN_CHANNEL(channel)) {
            out("connected");
        }
        break;
    case SPICE_CHANNEL_ERROR_AUTH:
        out("auth-failed");
        finish(c, EXIT_AUTH);
        break;
    case SPICE_CHANNEL_CLOSED:
    case SPICE_CHANNEL_ERROR_CONNECT:
    case SPICE_CHANNEL_ERROR_TLS:
    case SPICE_CHANNEL_ERROR_LINK:
    case SPICE_CHANNEL_ERROR_IO:
        if (SPICE_IS_MAIN_CHANNEL(channel)) {
            const GError *err = spice_channel_get_error(channel);

            out("connection-lost %d %s", event, err != NULL ? err->message : "");
            finish(c, EXIT_CONNECTION);
        }
        break;
    default:
        break;
    }
}

static void on_channel_new(SpiceSession *session, SpiceChannel *channel, gpointer user_data)
{
    Client *c = user_data;

    c->live_channels++;
    g_signal_connect(channel, "channel-event", G_CALLBACK(on_channel_event), c);
    if (SPICE_IS_MAIN_CHANNEL(channel)) {
        c->main = SPICE_MAIN_CHANNEL(channel);
        g_signal_connect(channel, "main-agent-update", G_CALLBACK(on_agent_update), c);
        g_signal_connect(channel, "notify::agent-connected", G_CALLBACK(on_agent_connected), c);
        g_signal_connect(channel, "main-clipboard-selection-grab",
                         G_CALLBACK(on_clipboard_grab), c);
        g_signal_connect(channel, "main-clipboard-selection", G_CALLBACK(on_clipboard_data), c);
        g_signal_connect(channel, "main-clipboard-selection-request",
                         G_CALLBACK(on_clipboard_request), c);
    }
    spice_channel_connect(channel);
}

static void on_channel_destroy(SpiceSession *session, SpiceChannel *channel, gpointer user_data)
{
    Client *c = user_data;

    if (SPICE_CHANNEL(c->main) == channel) {
        c->main = NULL;
    }
    if (c->live_channels > 0) {
        c->live_channels--;
        if (g_object_get_data(G_OBJECT(channel), "vmc-opened") && c->opened_channels > 0) {
            c->opened_channels--;
        }
    }
}

static gboolean on_shutdown_deadline(gpointer user_data)
{
    *(gboolean *) user_data = TRUE;
    return G_SOURCE_REMOVE;
}

static gboolean on_timeout(gpointer user_data)
{
    Client *c = user_data;

    out("timeout");
    finish(c, EXIT_TIMEOUT);
    return G_SOURCE_REMOVE;
}

/* Warnings from spice-gtk are reported as lines (the driver decides), never fatal. */
static void log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message,
                        gpointer user_data)
{
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) {
        g_autofree char *esc = g_strescape(message, NULL);

        out("log %s %s: %s",
            (level & G_LOG_LEVEL_CRITICAL) ? "critical"
                : (level & G_LOG_LEVEL_WARNING) ? "warning" : "error",
            domain != NULL ? domain : "-", esc);
        return;
    }
    g_log_default_handler(domain, level, message, user_data);
}

int main(int argc, char **argv)
{
    g_autofree char *host = NULL;
    g_autofree char *port = NULL;
    g_autofree char *unix_path = NULL;
    g_autofree char *password = NULL;
    int timeout = 60;
    GOptionEntry entries[] = {
        { "host", 0, 0, G_OPTION_ARG_STRING, &host, "server host", "HOST" },
        { "port", 0, 0, G_OPTION_ARG_STRING, &port, "server port", "PORT" },
        { "unix", 0, 0, G_OPTION_ARG_FILENAME, &unix_path, "server UNIX socket", "PATH" },
        { "password", 0, 0, G_OPTION_ARG_STRING, &password, "ticket", "PW" },
        { "timeout", 0, 0, G_OPTION_ARG_INT, &timeout, "overall timeout (s)", "S" },
        { NULL },
    };
    g_autoptr(GOptionContext) opt = g_option_context_new("STEP [ARGS] [+ STEP [ARGS]]...");
    g_autoptr(GError) error = NULL;
    Client c = { 0 };
    guint timer;

    g_option_context_add_main_entries(opt, entries, NULL);
    if (!g_option_context_parse(opt, &argc, &argv, &error) || argc < 2 ||
        (host == NULL && unix_path == NULL) || timeout <= 0) {
        g_printerr("%s\n", error != NULL ? error->message : "usage: see --help");
        return EXIT_USAGE;
    }
    /* spice-gtk's own warnings must not abort us (G_DEBUG=fatal-warnings is for the
     * code under test); they are printed as "log" lines instead. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_log_set_default_handler(log_handler, NULL);

    the_client = &c;
    c.steps = argv + 1;
    c.loop = g_main_loop_new(NULL, FALSE);
    c.cancel = g_cancellable_new();
    c.session = spice_session_new();
    g_object_set(c.session, "enable-audio", FALSE, "enable-usbredir", FALSE,
                 "enable-smartcard", FALSE, NULL);
    if (unix_path != NULL) {
        g_object_set(c.session, "unix-path", unix_path, NULL);
    } else {
        g_object_set(c.session, "host", host, "port", port != NULL ? port : "5930", NULL);
    }
    if (password != NULL) {
        g_object_set(c.session, "password", password, NULL);
    }
    g_signal_connect(c.session, "channel-new", G_CALLBACK(on_channel_new), &c);
    g_signal_connect(c.session, "channel-destroy", G_CALLBACK(on_channel_destroy), &c);
    timer = g_timeout_add_seconds((guint) timeout, on_timeout, &c);

    if (!spice_session_connect(c.session)) {
        out("connection-lost 0 cannot start");
        return EXIT_CONNECTION;
    }
    g_main_loop_run(c.loop);

    g_source_remove(timer);
    if (c.stdin_watch != 0) {
        g_source_remove(c.stdin_watch);
    }
    g_cancellable_cancel(c.cancel);
    spice_session_disconnect(c.session);
    /* Let the channels go and their coroutines unwind before the session does: the
     * session must outlive them. Bounded. */
    {
        gboolean expired = FALSE;
        guint t = g_timeout_add(3000, on_shutdown_deadline, &expired);

        while (c.live_channels > 0 && !expired) {
            g_main_context_iteration(NULL, TRUE);
        }
        if (!expired) {
            g_source_remove(t);
        }
    }
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    g_object_unref(c.session);
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    g_object_unref(c.cancel);
    g_main_loop_unref(c.loop);
    g_free(c.clip_text);
    return c.exit_code;
}
