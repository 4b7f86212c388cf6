/* vmcmux-client — a debug and test client for SPICE agent channels.
 *
 * It speaks to either end of any SPICE server (vmcmux-server, libspice-server,
 * QEMU -spice): as a SPICE client on the main channel (--connect) or as the guest
 * agent on the port (--guest). Subcommands: info, monitor, send, agent, record,
 * replay, decode, bench. Every subcommand has --help.
 *
 * Exit status: 0 success; 1 the operation failed (a transfer was refused, a replay
 * diverged, ...); 2 bad usage or input, or the peer could not be reached.
 */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <spice/vd_agent.h>

#include "server/vmc-record.h"
#include "server/vmc-trace.h"
#include "tools/client/vmc-describe.h"
#include "tools/client/vmc-io.h"
#include "tools/client/vmc-replay.h"

#define DEFAULT_CONNECT "127.0.0.1:5930"
#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* ---- common options ---- */

static char *opt_connect;
static char *opt_password;
static char *opt_password_file;
static char *opt_guest;
static gint opt_timeout = 5000;
static gboolean opt_verbose;
static gboolean opt_json;

static GOptionEntry client_entries[] = {
    {"connect", 'c', 0, G_OPTION_ARG_STRING, &opt_connect,
     "SPICE server to connect to (default " DEFAULT_CONNECT ")", "HOST:PORT|unix:PATH"},
    {"password", 'p', 0, G_OPTION_ARG_STRING, &opt_password, "Ticket password", "PW"},
    {"password-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_password_file,
     "Read the password from FILE (first line)", "FILE"},
    {NULL}};

static GOptionEntry common_entries[] = {
    {"timeout", 't', 0, G_OPTION_ARG_INT, &opt_timeout,
     "Longest wait for the peer, in milliseconds (default 5000)", "MS"},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Debug output on stderr", NULL},
    {NULL}};

static void G_GNUC_PRINTF(1, 2) G_GNUC_NORETURN
die_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vmcmux-client: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    _exit(EXIT_USAGE);
}

/* Ends the process at once: no cleanup of what the caller still holds. */
static void G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN
fail_msg(int code, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "vmcmux-client: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    _exit(code);
}

static GOptionContext *
make_context(const char *params, const char *summary, const char *description)
{
    GOptionContext *ctx = g_option_context_new(params);
    g_option_context_set_summary(ctx, summary);
    if (description)
        g_option_context_set_description(ctx, description);
    return ctx;
}

static void
parse_or_die(GOptionContext *ctx, int *argc, char ***argv)
{
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(ctx, argc, argv, &error))
        die_usage("%s (see --help)", error->message);
    if (opt_timeout <= 0)
        die_usage("--timeout must be a positive number of milliseconds");
    if (opt_verbose)
        g_log_set_debug_enabled(TRUE);
}

static char *
read_password(void)
{
    if (opt_password && opt_password_file)
        die_usage("give --password or --password-file, not both");
    if (opt_password_file) {
        g_autofree char *text = NULL;
        g_autoptr(GError) error = NULL;
        if (!g_file_get_contents(opt_password_file, &text, NULL, &error))
            die_usage("--password-file: %s", error->message);
        char *nl = strpbrk(text, "\r\n");
        if (nl)
            *nl = 0;
        return g_strdup(text);
    }
    if (opt_password && strlen(opt_password) > 60)
        die_usage("--password: longer than 60 characters (SPICE tickets are limited to 60)");
    return g_strdup(opt_password ? opt_password : "");
}

static guint64
parse_u64_or_die(const char *what, const char *s, guint64 max)
{
    guint64 v;
    g_autoptr(GError) error = NULL;
    int base = g_str_has_prefix(s, "0x") || g_str_has_prefix(s, "0X") ? 16 : 10;
    const char *digits = base == 16 ? s + 2 : s;
    if (!g_ascii_string_to_unsigned(digits, base, 0, max, &v, &error))
        die_usage("%s \"%s\": %s", what, s, error->message);
    return v;
}

static GByteArray *
parse_hex_or_die(const char *what, const char *hex)
{
    GByteArray *b = g_byte_array_new();
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        if (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t' || *p == '|')
            continue;
        int v = g_ascii_xdigit_value(*p);
        if (v < 0)
            die_usage("%s: '%c' is not a hex digit", what, *p);
        if (hi < 0) {
            hi = v;
        } else {
            guint8 byte = (guint8)(hi << 4 | v);
            g_byte_array_append(b, &byte, 1);
            hi = -1;
        }
    }
    if (hi >= 0)
        die_usage("%s: odd number of hex digits", what);
    return b;
}

static gboolean stop_requested;

static gboolean
on_signal(gpointer user_data)
{
    stop_requested = TRUE;
    g_main_context_wakeup(user_data);
    return G_SOURCE_CONTINUE;
}

static void
install_signals(GMainContext *ctx)
{
    int sigs[] = {SIGINT, SIGTERM};
    for (guint i = 0; i < G_N_ELEMENTS(sigs); i++) {
        GSource *s = g_unix_signal_source_new(sigs[i]);
        g_source_set_callback(s, on_signal, ctx, NULL);
        g_source_attach(s, ctx);
        g_source_unref(s);
    }
}

static gdouble
now_s(void)
{
    return (gdouble)g_get_monotonic_time() / 1e6;
}

static const char *const common_cap_names[] = {"PROTOCOL_AUTH_SELECTION", "AUTH_SPICE",
                                               "AUTH_SASL", "MINI_HEADER"};
static const char *const main_cap_names[] = {"SEMI_SEAMLESS_MIGRATE", "NAME_AND_UUID",
                                             "AGENT_CONNECTED_TOKENS", "SEAMLESS_MIGRATE"};

static char *
cap_list(guint32 word, const char *const *names, guint n)
{
    GString *s = g_string_new(NULL);
    for (guint b = 0; b < 32; b++) {
        if (!(word >> b & 1))
            continue;
        if (s->len)
            g_string_append_c(s, ',');
        if (b < n)
            g_string_append(s, names[b]);
        else
            g_string_append_printf(s, "bit%u", b);
    }
    return g_string_free(s, FALSE);
}

/* Connects as a SPICE client and waits for the link to finish. */
static VmcClientConn *
client_connect_or_die(GMainContext *ctx, VmcClientConfig *cfg)
{
    g_autoptr(GError) error = NULL;
    const char *target = opt_connect ? opt_connect : DEFAULT_CONNECT;
    VmcClientConn *cc = vmc_client_conn_new(target, cfg, ctx, (guint)opt_timeout, &error);
    if (!cc)
        fail_msg(EXIT_USAGE, "cannot connect to %s: %s", target, error->message);
    if (!vmc_client_conn_wait_linked(cc, (guint)opt_timeout, &error))
        fail_msg(EXIT_USAGE, "%s: link failed: %s", target, error->message);
    return cc;
}

static gboolean
cond_agent_connected(gpointer user_data)
{
    VmcClientConn *cc = user_data;
    return vmc_client_conn_is_closed(cc) ||
           vmc_client_agent_started(vmc_client_conn_get_client(cc));
}

static gboolean
cond_agent_caps(gpointer user_data)
{
    VmcClientConn *cc = user_data;
    VmcClient *c = vmc_client_conn_get_client(cc);
    return vmc_client_conn_is_closed(cc) || !vmc_client_agent_connected(c) ||
           vmc_client_agent_caps_received(c);
}

static gboolean
cond_have_init(gpointer user_data)
{
    VmcClientConn *cc = user_data;
    VmcMainInit init;
    return vmc_client_conn_is_closed(cc) ||
           vmc_client_get_init(vmc_client_conn_get_client(cc), &init);
}

static gboolean
cond_output_flushed(gpointer user_data)
{
    VmcClientConn *cc = user_data;
    VmcClient *c = vmc_client_conn_get_client(cc);
    return vmc_client_conn_is_closed(cc) ||
           (vmc_client_agent_pending(c) == 0 &&
            vmc_io_conn_output_pending(vmc_client_conn_get_io(cc)) == 0);
}

/* Waits for an agent that announced its capabilities; dies with a clear message. */
static void
wait_agent_or_die(VmcClientConn *cc, guint32 caps)
{
    GMainContext *ctx = vmc_client_conn_get_context(cc);
    VmcClient *c = vmc_client_conn_get_client(cc);

    if (!vmc_io_wait(ctx, cond_agent_connected, cc, (guint)opt_timeout) ||
        vmc_client_conn_is_closed(cc))
        fail_msg(EXIT_FAILED, "no agent: the server reports no guest agent connected "
                 "(waited %d ms)", opt_timeout);
    vmc_client_announce_caps(c, TRUE, caps);
    if (!vmc_io_wait(ctx, cond_agent_caps, cc, (guint)opt_timeout) ||
        !vmc_client_agent_caps_received(c))
        fail_msg(EXIT_FAILED, "the agent did not announce its capabilities within %d ms",
                 opt_timeout);
}

/* ================================================================================ */
/* decode */

static int
cmd_decode(int argc, char **argv)
{
    gboolean stats = FALSE;
    GOptionEntry entries[] = {
        {"json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
         "Print each event as its canonical JSON line (validates; for jq)", NULL},
        {"stats", 's', 0, G_OPTION_ARG_NONE, &stats, "Print message counts at the end", NULL},
        {NULL}};
    g_autoptr(GOptionContext) octx = make_context(
        "TRACE", "Pretty-print a trace (docs/trace-format.md); \"-\" reads stdin.",
        "Errors name the line and column; a corrupt trace exits with status 2.");
    g_option_context_add_main_entries(octx, entries, NULL);
    parse_or_die(octx, &argc, &argv);
    if (argc != 2)
        die_usage("decode needs exactly one TRACE argument (see --help)");

    g_autoptr(GError) error = NULL;
    g_autoptr(VmcTraceReader) r = vmc_trace_reader_new(argv[1], &error);
    if (!r)
        fail_msg(EXIT_USAGE, "%s", error->message);
    VmcDescribeCtx dctx;
    vmc_describe_ctx_init(&dctx);
    g_autoptr(GHashTable) counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    guint64 events = 0;
    for (;;) {
        VmcTraceEvent ev;
        if (!vmc_trace_reader_next(r, &ev, &error)) {
            if (error) {
                fflush(stdout);
                fail_msg(EXIT_USAGE, "%s", error->message);
            }
            break;
        }
        events++;
        if (opt_json) {
            g_autofree char *line = vmc_trace_event_to_line(&ev);
            puts(line);
        } else {
            g_autofree char *line = vmc_describe_trace_event(&dctx, &ev);
            puts(line);
        }
        if (stats && ev.event == VMC_TRACE_EV_MSG) {
            const char *name = ev.name ? ev.name : "UNKNOWN";
            char *key = g_strdup_printf("%s %s(%u)", vmc_trace_dir_to_string(ev.dir), name,
                                        ev.type);
            guint n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, key));
            g_hash_table_replace(counts, key, GUINT_TO_POINTER(n + 1));
        }
        vmc_trace_event_clear(&ev);
    }
    if (stats) {
        g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(counts),
                                            (GCompareFunc)g_strcmp0);
        fprintf(opt_json ? stderr : stdout, "-- %" G_GUINT64_FORMAT " events\n", events);
        for (GList *l = keys; l; l = l->next)
            fprintf(opt_json ? stderr : stdout, "%8u  %s\n",
                    GPOINTER_TO_UINT(g_hash_table_lookup(counts, l->data)),
                    (const char *)l->data);
    }
    return 0;
}

/* ================================================================================ */
/* info */

static gboolean
cond_channels(gpointer user_data)
{
    gboolean *got = user_data;
    return *got;
}

typedef struct {
    gboolean got_list;
    GArray *channels; /* VmcChannelId */
    GMainContext *ctx;
} InfoState;

static void
info_event(VmcClientConn *cc, const VmcClientEvent *ev, gpointer user_data)
{
    InfoState *st = user_data;
    if (ev->type == VMC_CLIENT_EV_MESSAGE && ev->msg_type == SPICE_MSG_MAIN_CHANNELS_LIST) {
        gsize len;
        const guint8 *p = g_bytes_get_data(ev->body, &len);
        VmcChannelId ids[64];
        guint32 n = 0;
        if (vmc_main_channels_list_decode(p, len, ids, G_N_ELEMENTS(ids), &n) == VMC_DECODE_OK)
            g_array_append_vals(st->channels, ids, MIN(n, G_N_ELEMENTS(ids)));
        st->got_list = TRUE;
    }
}

static int
cmd_info(int argc, char **argv)
{
    g_autoptr(GOptionContext) octx = make_context(
        "", "Connect as a SPICE client and show the link, INIT and agent state.",
        "Works with any SPICE server (vmcmux-server, libspice-server, QEMU -spice).");
    GOptionEntry entries[] = {
        {"json", 'j', 0, G_OPTION_ARG_NONE, &opt_json, "Print one JSON object", NULL},
        {NULL}};
    g_option_context_add_main_entries(octx, client_entries, NULL);
    g_option_context_add_main_entries(octx, common_entries, NULL);
    g_option_context_add_main_entries(octx, entries, NULL);
    parse_or_die(octx, &argc, &argv);
    if (argc != 1)
        die_usage("info takes no arguments (see --help)");

    g_autofree char *password = read_password();
    g_autoptr(GMainContext) ctx = g_main_context_new();
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.password = password;
    g_autoptr(VmcClientConn) cc = client_connect_or_die(ctx, &cfg);
    VmcClient *c = vmc_client_conn_get_client(cc);
    InfoState st = {FALSE, g_array_new(FALSE, FALSE, sizeof(VmcChannelId)), ctx};
    vmc_client_conn_set_event_func(cc, info_event, &st);

    /* INIT first; then ATTACH_CHANNELS (NAME/UUID arrive before the list) */
    VmcMainInit init;
    vmc_io_wait(ctx, cond_have_init, cc, (guint)opt_timeout);
    if (!vmc_client_get_init(c, &init))
        fail_msg(EXIT_FAILED, "no INIT from the server within %d ms", opt_timeout);
    vmc_client_send_message(c, SPICE_MSGC_MAIN_ATTACH_CHANNELS, NULL, 0);
    vmc_io_wait(ctx, cond_channels, &st.got_list, (guint)opt_timeout);

    gboolean have_caps = FALSE;
    if (vmc_client_agent_connected(c)) {
        vmc_io_wait(ctx, cond_agent_connected, cc, (guint)opt_timeout);
        vmc_client_announce_caps(c, TRUE, VMC_CLIENT_DEFAULT_AGENT_CAPS);
        have_caps = vmc_io_wait(ctx, cond_agent_caps, cc, (guint)opt_timeout) &&
                    vmc_client_agent_caps_received(c);
    }

    const VmcLinkReply *lr = vmc_client_get_link_reply(c);
    guint32 common = lr->num_common_caps ? lr->common_caps[0] : 0;
    guint32 mainc = lr->num_channel_caps ? lr->channel_caps[0] : 0;
    g_autofree char *common_s = cap_list(common, common_cap_names, 4);
    g_autofree char *main_s = cap_list(mainc, main_cap_names, 4);
    guint32 acaps[8];
    gsize nacaps = vmc_client_get_agent_caps(c, acaps, G_N_ELEMENTS(acaps));
    g_autofree char *acaps_s = vmc_describe_caps(acaps, nacaps);
    const guint8 *uuid = vmc_client_get_uuid(c);
    g_autofree char *uuid_s = NULL;
    if (uuid)
        uuid_s = g_strdup_printf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                                 "%02x%02x%02x%02x%02x%02x", uuid[0], uuid[1], uuid[2], uuid[3],
                                 uuid[4], uuid[5], uuid[6], uuid[7], uuid[8], uuid[9], uuid[10],
                                 uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
    const char *target = opt_connect ? opt_connect : DEFAULT_CONNECT;

    if (opt_json) {
        g_autoptr(GString) j = g_string_new("{");
        g_string_append_printf(j, "\"server\":\"%s\",\"common_caps\":%u,\"main_caps\":%u,"
                               "\"mini_header\":%s,", target, common, mainc,
                               vmc_client_uses_mini_header(c) ? "true" : "false");
        g_string_append_printf(j, "\"init\":{\"session_id\":%u,\"display_channels_hint\":%u,"
                               "\"supported_mouse_modes\":%u,\"current_mouse_mode\":%u,"
                               "\"agent_connected\":%u,\"agent_tokens\":%u,"
                               "\"multi_media_time\":%u,\"ram_hint\":%u},", init.session_id,
                               init.display_channels_hint, init.supported_mouse_modes,
                               init.current_mouse_mode, init.agent_connected, init.agent_tokens,
                               init.multi_media_time, init.ram_hint);
        if (vmc_client_get_name(c)) {
            g_autofree char *n = g_strescape(vmc_client_get_name(c), NULL);
            g_string_append_printf(j, "\"name\":\"%s\",", n);
        }
        if (uuid_s)
            g_string_append_printf(j, "\"uuid\":\"%s\",", uuid_s);
        g_string_append(j, "\"channels\":[");
        for (guint i = 0; i < st.channels->len; i++) {
            VmcChannelId *id = &g_array_index(st.channels, VmcChannelId, i);
            g_string_append_printf(j, "%s[%u,%u]", i ? "," : "", id->type, id->id);
        }
        g_string_append_printf(j, "],\"agent_connected\":%s,\"server_tokens\":%u",
                               vmc_client_agent_connected(c) ? "true" : "false",
                               vmc_client_get_server_tokens(c));
        if (have_caps)
            g_string_append_printf(j, ",\"agent_caps\":%u", nacaps ? acaps[0] : 0);
        g_string_append(j, "}");
        puts(j->str);
    } else {
        printf("server:      %s\n", target);
        printf("link:        ok; common caps 0x%08x [%s]; main caps 0x%08x [%s]; %s headers\n",
               common, common_s, mainc, main_s, vmc_client_uses_mini_header(c) ? "mini" : "full");
        printf("INIT:        session_id=%u display_channels_hint=%u mouse_modes=%u current=%u\n",
               init.session_id, init.display_channels_hint, init.supported_mouse_modes,
               init.current_mouse_mode);
        printf("             agent_connected=%u agent_tokens=%u multi_media_time=%u "
               "ram_hint=%u\n", init.agent_connected, init.agent_tokens, init.multi_media_time,
               init.ram_hint);
        if (vmc_client_get_name(c))
            printf("name:        %s\n", vmc_client_get_name(c));
        if (uuid_s)
            printf("uuid:        %s\n", uuid_s);
        printf("channels:   ");
        if (!st.got_list)
            printf(" (no CHANNELS_LIST within %d ms)", opt_timeout);
        for (guint i = 0; i < st.channels->len; i++) {
            VmcChannelId *id = &g_array_index(st.channels, VmcChannelId, i);
            printf(" %s:%u", vmc_channel_type_name(id->type), id->id);
        }
        printf("\n");
        if (!vmc_client_agent_connected(c)) {
            printf("agent:       not connected\n");
        } else {
            printf("agent:       connected; %u client->agent tokens\n",
                   vmc_client_get_server_tokens(c));
            if (have_caps)
                printf("agent caps:  0x%08x [%s]\n", nacaps ? acaps[0] : 0, acaps_s);
            else
                printf("agent caps:  (no ANNOUNCE_CAPABILITIES within %d ms)\n", opt_timeout);
        }
    }
    g_array_unref(st.channels);
    return 0;
}

/* ================================================================================ */
/* monitor and record: watch the agent traffic from either end */

typedef struct {
    GMainContext *ctx;
    VmcClientConn *cc;
    VmcAgentConn *ac;
    VmcRecorder *rec;
    gboolean quiet;       /* record -o FILE: no readable output */
    gboolean show_main;
    gboolean announce;
    guint32 caps;
    guint32 grant;
    guint64 count;
    guint64 max_count;
    gdouble t0;
    gboolean done;
    gboolean port_closed;
    VmcDescribeCtx dctx;
} Watch;

/* One line of a live log: seconds since t0, an optional direction column, the text. */
static void G_GNUC_PRINTF(4, 0)
timed_vprint(gdouble t0, gboolean quiet, const char *dir, const char *fmt, va_list ap)
{
    if (quiet)
        return;
    printf("%9.3f  ", now_s() - t0);
    if (dir)
        printf("%-13s ", dir);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
}

static void G_GNUC_PRINTF(3, 4)
watch_print(Watch *w, const char *dir, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    timed_vprint(w->t0, w->quiet, dir, fmt, ap);
    va_end(ap);
}

/* Taps one whole agent message (header + payload) into the recorder. */
static void
tap_message(VmcRecorder *rec, VmcMuxDirection dir, guint32 client, guint32 port,
            const VmcAgentHeader *h, const guint8 *payload, gsize len)
{
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    if (!rec)
        return;
    vmc_agent_header_encode(h, hdr);
    vmc_recorder_tap(rec, dir, client, port, hdr, sizeof(hdr), VMC_AGENT_SPAN_START);
    if (len > 0)
        vmc_recorder_tap(rec, dir, client, port, payload, len, VMC_AGENT_SPAN_END);
}

static void
watch_count(Watch *w)
{
    w->count++;
    if (w->max_count && w->count >= w->max_count)
        w->done = TRUE;
}

static void
watch_client_announce(Watch *w, VmcClient *c, gboolean request)
{
    guint8 payload[8];
    VmcAgentHeader h = {1, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, 8};
    vmc_put_u32le(payload, request ? 1 : 0);
    vmc_put_u32le(payload + 4, w->caps);
    vmc_client_announce_caps(c, request, w->caps);
    vmc_describe_ctx_observe(&w->dctx, FALSE, h.type, payload, 8);
    tap_message(w->rec, VMC_MUX_DIR_CLIENT_AGENT, 1, 1, &h, payload, 8);
    g_autofree char *d = vmc_describe_agent_message(&w->dctx, h.type, 0, 8, payload, 8);
    watch_print(w, "client>agent", "%s", d);
}

static void
watch_client_event(VmcClientConn *cc, const VmcClientEvent *ev, gpointer user_data)
{
    Watch *w = user_data;
    VmcClient *c = vmc_client_conn_get_client(cc);

    switch (ev->type) {
    case VMC_CLIENT_EV_MESSAGE: {
        gsize len;
        const guint8 *p = g_bytes_get_data(ev->body, &len);
        gboolean agent_msg = ev->msg_type == SPICE_MSG_MAIN_AGENT_TOKEN ||
                             ev->msg_type == SPICE_MSG_MAIN_AGENT_CONNECTED ||
                             ev->msg_type == SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS ||
                             ev->msg_type == SPICE_MSG_MAIN_AGENT_DISCONNECTED ||
                             ev->msg_type == SPICE_MSG_MAIN_INIT;
        if (w->show_main || agent_msg) {
            g_autofree char *d = vmc_describe_main_message(TRUE, ev->msg_type, p, len);
            watch_print(w, "server>client", "%s", d);
        }
        if (ev->msg_type == SPICE_MSG_MAIN_INIT) {
            VmcMainInit init;
            if (vmc_client_get_init(c, &init))
                vmc_recorder_tokens(w->rec, VMC_MUX_DIR_AGENT_CLIENT, 1, "INIT",
                                    init.agent_tokens);
        } else if (ev->msg_type == SPICE_MSG_MAIN_AGENT_TOKEN && len >= 4) {
            vmc_recorder_tokens(w->rec, VMC_MUX_DIR_AGENT_CLIENT, 1, "AGENT_TOKEN",
                                vmc_get_u32le(p));
        } else if (ev->msg_type == SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS && len >= 4) {
            vmc_recorder_tokens(w->rec, VMC_MUX_DIR_AGENT_CLIENT, 1, "AGENT_CONNECTED_TOKENS",
                                vmc_get_u32le(p));
        }
        break;
    }
    case VMC_CLIENT_EV_AGENT_CONNECTED:
        vmc_recorder_event(w->rec, VMC_RECORD_AGENT_CONNECTED, 0, NULL);
        vmc_recorder_tokens(w->rec, VMC_MUX_DIR_CLIENT_AGENT, 1, "AGENT_START", w->grant);
        watch_print(w, "client>server", "AGENT_START(106) %u", w->grant);
        if (w->announce)
            watch_client_announce(w, c, TRUE);
        break;
    case VMC_CLIENT_EV_AGENT_DISCONNECTED:
        vmc_recorder_event(w->rec, VMC_RECORD_AGENT_DISCONNECTED, 0, NULL);
        break;
    case VMC_CLIENT_EV_AGENT_MESSAGE: {
        gsize len;
        const guint8 *p = g_bytes_get_data(ev->body, &len);
        vmc_describe_ctx_observe(&w->dctx, TRUE, ev->agent.type, p, len);
        tap_message(w->rec, VMC_MUX_DIR_AGENT_CLIENT, 1, 1, &ev->agent, p, len);
        g_autofree char *d = vmc_describe_agent_message(&w->dctx, ev->agent.type,
                                                        ev->agent.opaque, ev->agent.size, p, len);
        watch_print(w, "agent>client", "%s%s", d, ev->truncated ? " [truncated]" : "");
        /* answer a caps request like a real client does */
        if (w->announce && ev->agent.type == VD_AGENT_ANNOUNCE_CAPABILITIES && len >= 4 &&
            vmc_get_u32le(p) != 0)
            watch_client_announce(w, c, FALSE);
        watch_count(w);
        break;
    }
    case VMC_CLIENT_EV_PROTOCOL_ERROR:
        watch_print(w, "!!", "%s", ev->detail);
        break;
    default:
        break;
    }
}

static void
watch_agent_send(Watch *w, guint32 port, guint32 type, const guint8 *payload, gsize len)
{
    VmcAgentHeader h = {1, type, 0, (guint32)len};
    vmc_agent_peer_send(vmc_agent_conn_get_peer(w->ac), port, type, 0, payload, len);
    vmc_describe_ctx_observe(&w->dctx, TRUE, type, payload, len);
    tap_message(w->rec, port == 2 ? VMC_MUX_DIR_AGENT_SERVER : VMC_MUX_DIR_AGENT_CLIENT, 0, port,
                &h, payload, len);
    g_autofree char *d = vmc_describe_agent_message(&w->dctx, type, 0, (guint32)len, payload, len);
    watch_print(w, port == 2 ? "agent>server" : "agent>client", "%s", d);
}

static void
watch_agent_caps(Watch *w, gboolean request)
{
    guint8 payload[8];
    vmc_put_u32le(payload, request ? 1 : 0);
    vmc_put_u32le(payload + 4, w->caps);
    watch_agent_send(w, 1, VD_AGENT_ANNOUNCE_CAPABILITIES, payload, 8);
}

static void
watch_agent_event(VmcAgentConn *ac, const VmcAgentPeerEvent *ev, gpointer user_data)
{
    Watch *w = user_data;

    if (ev->type == VMC_AGENT_PEER_EV_VIOLATION) {
        watch_print(w, "!!", "framing violation: %s", ev->detail);
        return;
    }
    if (ev->type != VMC_AGENT_PEER_EV_MESSAGE)
        return;
    gsize len;
    const guint8 *p = g_bytes_get_data(ev->body, &len);
    vmc_describe_ctx_observe(&w->dctx, FALSE, ev->header.type, p, len);
    tap_message(w->rec, ev->port == 2 ? VMC_MUX_DIR_SERVER_AGENT : VMC_MUX_DIR_CLIENT_AGENT, 0,
                ev->port, &ev->header, p, len);
    g_autofree char *d = vmc_describe_agent_message(&w->dctx, ev->header.type, ev->header.opaque,
                                                    ev->header.size, p, len);
    watch_print(w, ev->port == 2 ? "server>agent" : "client>agent", "%s", d);
    if (w->announce && ev->port == 1 && ev->header.type == VD_AGENT_ANNOUNCE_CAPABILITIES &&
        len >= 4 && vmc_get_u32le(p) != 0)
        watch_agent_caps(w, FALSE);
    watch_count(w);
}

static void
watch_agent_state(VmcAgentConn *ac, gboolean open, gpointer user_data)
{
    Watch *w = user_data;
    if (open) {
        vmc_recorder_event(w->rec, VMC_RECORD_AGENT_CONNECTED, 0, NULL);
        watch_print(w, "port", "open");
        if (w->announce)
            watch_agent_caps(w, TRUE);
    } else {
        vmc_recorder_event(w->rec, VMC_RECORD_AGENT_DISCONNECTED, 0, NULL);
        watch_print(w, "port", "closed");
        w->port_closed = TRUE;
    }
}

static gboolean
watch_done(gpointer user_data)
{
    Watch *w = user_data;
    if (w->done || stop_requested)
        return TRUE;
    if (w->cc && vmc_client_conn_is_closed(w->cc))
        return TRUE;
    return FALSE;
}

static int
run_watch(gboolean record, int argc, char **argv)
{
    g_autofree char *output = NULL;
    gboolean no_announce = FALSE, show_main = FALSE;
    g_autofree char *caps_s = NULL;
    g_autofree char *grant_s = NULL;
    gint count = 0, duration = 0;
    GOptionEntry entries[] = {
        {"guest", 'g', 0, G_OPTION_ARG_STRING, &opt_guest,
         "Act as the guest agent on the server's --guest port instead of as a client",
         "unix:PATH|connect:PATH"},
        {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Trace file to write (\"-\": stdout)",
         "TRACE"},
        {"json", 'j', 0, G_OPTION_ARG_NONE, &opt_json,
         "Print trace-format JSON lines instead of text", NULL},
        {"no-announce", 0, 0, G_OPTION_ARG_NONE, &no_announce,
         "Do not announce capabilities (stay silent)", NULL},
        {"caps", 0, 0, G_OPTION_ARG_STRING, &caps_s,
         "Capability word to announce (client default 0x00035077, agent 0x00038de7)", "HEX"},
        {"grant", 0, 0, G_OPTION_ARG_STRING, &grant_s,
         "AGENT_START tokens to grant (default 4294967295 = unlimited)", "N"},
        {"main", 0, 0, G_OPTION_ARG_NONE, &show_main, "Also show every main-channel message",
         NULL},
        {"count", 'n', 0, G_OPTION_ARG_INT, &count, "Stop after N agent messages", "N"},
        {"duration", 'd', 0, G_OPTION_ARG_INT, &duration, "Stop after MS milliseconds", "MS"},
        {NULL}};
    g_autoptr(GOptionContext) octx =
        record ? make_context("-o TRACE",
                              "Record the agent traffic seen from one end into a trace file.",
                              "As a client (--connect) it records agent>client and its own "
                              "client>agent messages; as the agent (--guest) client>agent, "
                              "server>agent and its own. vmcmux-server --record FILE writes "
                              "the same format from inside the server.")
               : make_context("",
                              "Show every agent message passing one end, decoded.",
                              "As a client (--connect) or as the guest agent (--guest). It "
                              "announces capabilities and answers a capability request, so "
                              "the other side starts talking; --no-announce keeps it silent.");
    g_option_context_add_main_entries(octx, client_entries, NULL);
    g_option_context_add_main_entries(octx, entries, NULL);
    g_option_context_add_main_entries(octx, common_entries, NULL);
    parse_or_die(octx, &argc, &argv);
    if (argc != 1)
        die_usage("unexpected argument \"%s\" (see --help)", argv[1]);
    if (record && !output)
        die_usage("record needs -o TRACE");
    if (opt_guest && (opt_connect || opt_password))
        die_usage("give --connect (client) or --guest (agent), not both");
    if (count < 0 || duration < 0)
        die_usage("--count and --duration must not be negative");

    Watch w = {0};
    w.ctx = g_main_context_new();
    w.announce = !no_announce;
    w.caps = opt_guest ? VMC_AGENT_PEER_DEFAULT_CAPS : VMC_CLIENT_DEFAULT_AGENT_CAPS;
    if (caps_s)
        w.caps = (guint32)parse_u64_or_die("--caps", caps_s, G_MAXUINT32);
    w.grant = grant_s ? (guint32)parse_u64_or_die("--grant", grant_s, G_MAXUINT32)
                      : VMC_AGENT_TOKENS_UNLIMITED;
    w.show_main = show_main;
    w.max_count = (guint64)count;
    w.t0 = now_s();
    vmc_describe_ctx_init(&w.dctx);
    if (!output && opt_json)
        output = g_strdup("-");
    if (output) {
        g_autoptr(GError) error = NULL;
        g_set_prgname("vmcmux-client");
        w.rec = vmc_recorder_new(output, &error);
        if (!w.rec)
            fail_msg(EXIT_USAGE, "%s", error->message);
        /* stdout carries the trace; a recording to a file prints text only with -v */
        w.quiet = strcmp(output, "-") == 0 || (record && !opt_verbose);
    }
    install_signals(w.ctx);

    if (opt_guest) {
        g_autoptr(GError) error = NULL;
        w.ac = vmc_agent_conn_new(opt_guest, w.ctx, (guint)opt_timeout, &error);
        if (!w.ac)
            fail_msg(EXIT_USAGE, "%s", error->message);
        vmc_agent_conn_set_state_func(w.ac, watch_agent_state, &w);
        vmc_agent_conn_set_event_func(w.ac, watch_agent_event, &w);
        if (vmc_agent_conn_is_open(w.ac))
            watch_agent_state(w.ac, TRUE, &w);
    } else {
        g_autofree char *password = read_password();
        VmcClientConfig cfg;
        vmc_client_config_init(&cfg);
        cfg.password = password;
        cfg.agent_grant = w.grant;
        cfg.token_refill = w.grant != VMC_AGENT_TOKENS_UNLIMITED ? MAX(1u, w.grant / 2) : 0;
        w.cc = client_connect_or_die(w.ctx, &cfg);
        vmc_recorder_event(w.rec, VMC_RECORD_CLIENT_CONNECTED, 1,
                           opt_connect ? opt_connect : DEFAULT_CONNECT);
        vmc_client_conn_set_event_func(w.cc, watch_client_event, &w);
    }

    gint64 end = duration ? g_get_monotonic_time() + (gint64)duration * 1000 : 0;
    while (!watch_done(&w)) {
        guint slice = 1000;
        if (end) {
            gint64 left = end - g_get_monotonic_time();
            if (left <= 0)
                break;
            slice = (guint)MIN(left / 1000 + 1, 1000);
        }
        vmc_io_wait(w.ctx, watch_done, &w, slice);
        if (w.ac && w.port_closed && !vmc_agent_conn_is_open(w.ac) &&
            g_str_has_prefix(opt_guest, "unix:"))
            break; /* we connected to the server: it dropped us */
    }
    int ret = 0;
    if (w.cc && vmc_client_conn_is_closed(w.cc) && !w.done) {
        fprintf(stderr, "vmcmux-client: the server closed the connection\n");
        ret = EXIT_FAILED;
    }
    if (w.cc)
        vmc_recorder_event(w.rec, VMC_RECORD_CLIENT_DISCONNECTED, 1, NULL);
    vmc_recorder_free(w.rec);
    vmc_client_conn_free(w.cc);
    vmc_agent_conn_free(w.ac);
    g_main_context_unref(w.ctx);
    return ret;
}

static int
cmd_monitor(int argc, char **argv)
{
    return run_watch(FALSE, argc, argv);
}

static int
cmd_record(int argc, char **argv)
{
    return run_watch(TRUE, argc, argv);
}

/* ================================================================================ */
/* send */

typedef struct {
    VmcClientConn *cc;
    GMainContext *ctx;
    guint32 xfer_id;
    gboolean have_status;
    guint32 status;
    gboolean got_request;
    guint32 request_type;
    gboolean got_reply;
    guint32 reply_type;
    guint32 reply_error;
    gboolean got_clipboard;
    GBytes *clipboard;
    gboolean agent_gone;
    guint32 threshold; /* agent bytes we keep queued at most */
} SendState;

static void
send_event(VmcClientConn *cc, const VmcClientEvent *ev, gpointer user_data)
{
    SendState *st = user_data;

    if (ev->type == VMC_CLIENT_EV_AGENT_DISCONNECTED) {
        st->agent_gone = TRUE;
        return;
    }
    if (ev->type != VMC_CLIENT_EV_AGENT_MESSAGE)
        return;
    gsize len;
    const guint8 *p = g_bytes_get_data(ev->body, &len);
    VmcClient *c = vmc_client_conn_get_client(cc);
    gsize off = vmc_client_agent_has_cap(c, VD_AGENT_CAP_CLIPBOARD_SELECTION) ? 4 : 0;
    if (opt_verbose) {
        VmcDescribeCtx d;
        vmc_describe_ctx_init(&d);
        g_autofree char *s = vmc_describe_agent_message(&d, ev->agent.type, ev->agent.opaque,
                                                        ev->agent.size, p, len);
        fprintf(stderr, "agent> %s\n", s);
    }
    switch (ev->agent.type) {
    case VD_AGENT_FILE_XFER_STATUS:
        if (len >= 8 && vmc_get_u32le(p) == st->xfer_id) {
            st->have_status = TRUE;
            st->status = vmc_get_u32le(p + 4);
        }
        break;
    case VD_AGENT_CLIPBOARD_REQUEST:
        if (len >= off + 4) {
            st->got_request = TRUE;
            st->request_type = vmc_get_u32le(p + off);
        }
        break;
    case VD_AGENT_CLIPBOARD:
        if (len >= off + 4) {
            st->got_clipboard = TRUE;
            if (st->clipboard)
                g_bytes_unref(st->clipboard);
            st->clipboard = g_bytes_new(p + off, len - off);
        }
        break;
    case VD_AGENT_REPLY:
        if (len >= 8) {
            st->got_reply = TRUE;
            st->reply_type = vmc_get_u32le(p);
            st->reply_error = vmc_get_u32le(p + 4);
        }
        break;
    default:
        break;
    }
}

static gboolean
cond_send_status(gpointer user_data)
{
    SendState *st = user_data;
    return st->have_status || st->agent_gone || vmc_client_conn_is_closed(st->cc) ||
           stop_requested;
}

static gboolean
cond_send_room(gpointer user_data)
{
    SendState *st = user_data;
    return cond_send_status(st) ||
           vmc_client_agent_pending(vmc_client_conn_get_client(st->cc)) < st->threshold;
}

static gboolean
cond_send_request(gpointer user_data)
{
    SendState *st = user_data;
    return st->got_request || st->agent_gone || vmc_client_conn_is_closed(st->cc);
}

static gboolean
cond_send_reply(gpointer user_data)
{
    SendState *st = user_data;
    return st->got_reply || st->agent_gone || vmc_client_conn_is_closed(st->cc);
}

static gboolean
cond_send_clipboard(gpointer user_data)
{
    SendState *st = user_data;
    return st->got_clipboard || st->agent_gone || vmc_client_conn_is_closed(st->cc);
}

static void
check_agent_alive(SendState *st)
{
    if (vmc_client_conn_is_closed(st->cc))
        fail_msg(EXIT_FAILED, "the server closed the connection");
    if (st->agent_gone)
        fail_msg(EXIT_FAILED, "the agent disconnected");
}

static void
progress_line(const char *name, guint64 done, guint64 total, gdouble t0, gboolean final)
{
    gdouble dt = now_s() - t0;
    gdouble rate = dt > 0 ? (gdouble)done / dt : 0;
    g_autofree char *d = vmc_io_format_size(done);
    g_autofree char *t = vmc_io_format_size(total);
    g_autofree char *r = vmc_io_format_size((guint64)rate);
    char eta[32] = "--:--";
    if (rate > 0 && total >= done) {
        guint64 left = (guint64)((gdouble)(total - done) / rate);
        g_snprintf(eta, sizeof(eta), "%" G_GUINT64_FORMAT ":%02" G_GUINT64_FORMAT, left / 60,
                   left % 60);
    }
    fprintf(stderr, "\r%s: %s / %s  %s/s  ETA %s   %s", name, d, t, r, eta, final ? "\n" : "");
    fflush(stderr);
}

static const char *
status_name(guint32 s)
{
    const char *n = vmc_file_xfer_status_name(s);
    return n ? n : "UNKNOWN";
}

static int
send_file(SendState *st, const char *path, guint32 id, gboolean progress)
{
    VmcClient *c = vmc_client_conn_get_client(st->cc);
    g_autoptr(GError) error = NULL;
    g_autoptr(GFile) file = g_file_new_for_commandline_arg(path);
    g_autoptr(GFileInfo) info = g_file_query_info(file, G_FILE_ATTRIBUTE_STANDARD_SIZE ","
                                                  G_FILE_ATTRIBUTE_STANDARD_TYPE,
                                                  G_FILE_QUERY_INFO_NONE, NULL, &error);
    if (!info)
        fail_msg(EXIT_USAGE, "--file %s: %s", path, error->message);
    if (g_file_info_get_file_type(info) != G_FILE_TYPE_REGULAR)
        fail_msg(EXIT_USAGE, "--file %s: not a regular file", path);
    g_autoptr(GFileInputStream) in = g_file_read(file, NULL, &error);
    if (!in)
        fail_msg(EXIT_USAGE, "--file %s: %s", path, error->message);
    guint64 size = (guint64)g_file_info_get_size(info);
    g_autofree char *base = g_path_get_basename(path);

    if (vmc_client_agent_has_cap(c, VD_AGENT_CAP_FILE_XFER_DISABLED))
        fail_msg(EXIT_FAILED, "file transfer is disabled (the agent announced "
                 "FILE_XFER_DISABLED)");

    /* FILE_XFER_START: u32 id + key file text + NUL */
    g_autofree char *text = g_strdup_printf("[vdagent-file-xfer]\nname=%s\nsize=%" G_GUINT64_FORMAT
                                            "\n", base, size);
    gsize tlen = strlen(text) + 1;
    g_autofree guint8 *start = g_malloc(4 + tlen);
    vmc_put_u32le(start, id);
    memcpy(start + 4, text, tlen);
    st->xfer_id = id;
    st->have_status = FALSE;
    vmc_client_send_agent_message(c, VD_AGENT_FILE_XFER_START, 0, start, 4 + tlen);
    if (!vmc_io_wait(st->ctx, cond_send_status, st, (guint)opt_timeout))
        fail_msg(EXIT_FAILED, "%s: no FILE_XFER_STATUS from the agent within %d ms", base,
                 opt_timeout);
    check_agent_alive(st);
    if (stop_requested)
        return EXIT_FAILED;
    if (st->status != VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA) {
        fprintf(stderr, "vmcmux-client: %s: the agent refused the transfer: %s(%u)\n", base,
                status_name(st->status), st->status);
        return EXIT_FAILED;
    }
    st->have_status = FALSE;

    enum { PIECE = 64 * 1024 };
    g_autofree guint8 *buf = g_malloc(12 + PIECE);
    guint64 queued = 0;
    gboolean sent_empty = FALSE;
    gdouble t0 = now_s(), last_print = 0;
    gint64 last_progress = g_get_monotonic_time();
    st->threshold = 4 * (12 + PIECE);
    do {
        while (vmc_client_agent_pending(c) < st->threshold &&
               (queued < size || (size == 0 && !sent_empty))) {
            gssize n = g_input_stream_read(G_INPUT_STREAM(in), buf + 12, PIECE, NULL, &error);
            if (n < 0)
                fail_msg(EXIT_FAILED, "%s: read error: %s", path, error->message);
            if (n == 0 && size != 0) {
                fail_msg(EXIT_FAILED, "%s: the file shrank while being sent (%" G_GUINT64_FORMAT
                         " of %" G_GUINT64_FORMAT " bytes)", path, queued, size);
            }
            vmc_put_u32le(buf, id);
            vmc_put_u64le(buf + 4, (guint64)n);
            vmc_client_send_agent_message(c, VD_AGENT_FILE_XFER_DATA, 0, buf, 12 + (gsize)n);
            queued += (guint64)n;
            last_progress = g_get_monotonic_time();
            if (size == 0) {
                sent_empty = TRUE;
                break;
            }
        }
        if (queued >= size && vmc_client_agent_pending(c) == 0)
            break;
        gsize before = vmc_client_agent_pending(c);
        /* everything read: wait for the queue to drain; else for room for more */
        st->threshold = queued >= size && (size > 0 || sent_empty) ? 1 : 4 * (12 + PIECE);
        vmc_io_wait(st->ctx, cond_send_room, st, 200);
        if (vmc_client_agent_pending(c) != before)
            last_progress = g_get_monotonic_time();
        check_agent_alive(st);
        if (stop_requested || st->have_status)
            break;
        if (g_get_monotonic_time() - last_progress > (gint64)opt_timeout * 1000)
            fail_msg(EXIT_FAILED, "%s: stalled: no progress for %d ms (%u server tokens, "
                     "%zu bytes queued)", base, opt_timeout, vmc_client_get_server_tokens(c),
                     vmc_client_agent_pending(c));
        if (progress && now_s() - last_print > 0.2) {
            guint64 pend = vmc_client_agent_pending(c);
            progress_line(base, queued > pend ? queued - pend : 0, size, t0, FALSE);
            last_print = now_s();
        }
    } while (TRUE);

    if (stop_requested) {
        guint8 cancel[8];
        vmc_put_u32le(cancel, id);
        vmc_put_u32le(cancel + 4, VD_AGENT_FILE_XFER_STATUS_CANCELLED);
        vmc_client_agent_drop_queue(c);
        vmc_client_send_agent_message(c, VD_AGENT_FILE_XFER_STATUS, 0, cancel, sizeof(cancel));
        vmc_io_wait(st->ctx, cond_output_flushed, st->cc, 1000);
        fprintf(stderr, "\nvmcmux-client: %s: cancelled\n", base);
        return EXIT_FAILED;
    }
    if (!st->have_status &&
        !vmc_io_wait(st->ctx, cond_send_status, st, (guint)opt_timeout))
        fail_msg(EXIT_FAILED, "%s: all data sent but no final status within %d ms", base,
                 opt_timeout);
    check_agent_alive(st);
    if (progress)
        progress_line(base, size, size, t0, TRUE);
    if (st->status != VD_AGENT_FILE_XFER_STATUS_SUCCESS) {
        fprintf(stderr, "vmcmux-client: %s: transfer failed: %s(%u)\n", base,
                status_name(st->status), st->status);
        return EXIT_FAILED;
    }
    gdouble dt = now_s() - t0;
    g_autofree char *sz = vmc_io_format_size(size);
    g_autofree char *rate = vmc_io_format_size(dt > 0 ? (guint64)((gdouble)size / dt) : 0);
    printf("sent %s: %s in %.2f s (%s/s)\n", base, sz, dt, rate);
    return 0;
}

static guint32
clip_type_from_name(const char *s)
{
    static const char *const names[] = {"none", "text", "png", "bmp", "tiff", "jpg"};
    for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
        if (g_ascii_strcasecmp(s, names[i]) == 0)
            return i;
    }
    if (g_ascii_strcasecmp(s, "utf8_text") == 0)
        return VD_AGENT_CLIPBOARD_UTF8_TEXT;
    return (guint32)parse_u64_or_die("clipboard type", s, G_MAXUINT32);
}

/* Clipboard message prefix: selection (+3 pad) when both sides have the cap. */
static void
clip_prefix_append(VmcClient *c, GByteArray *b, guint selection)
{
    if (vmc_client_agent_has_cap(c, VD_AGENT_CAP_CLIPBOARD_SELECTION)) {
        guint8 sel[4] = {(guint8)selection, 0, 0, 0};
        g_byte_array_append(b, sel, 4);
    }
}

static void
append_u32(GByteArray *b, guint32 v)
{
    guint8 w[4];
    vmc_put_u32le(w, v);
    g_byte_array_append(b, w, 4);
}

static int
cmd_send(int argc, char **argv)
{
    g_auto(GStrv) files = NULL;
    g_autofree char *clipboard = NULL, *grab = NULL, *request = NULL, *monitors = NULL;
    g_autofree char *type_s = NULL, *hex = NULL, *raw_hex = NULL, *opaque_s = NULL;
    g_autofree char *grant_s = NULL;
    gboolean release = FALSE, no_wait = FALSE, no_progress = FALSE;
    gint selection = 0;
    GOptionEntry entries[] = {
        {"file", 'f', 0, G_OPTION_ARG_FILENAME_ARRAY, &files,
         "Send a file through FILE_XFER (repeatable)", "PATH"},
        {"clipboard", 0, 0, G_OPTION_ARG_STRING, &clipboard,
         "Grab the clipboard with UTF8_TEXT and serve TEXT when the agent asks", "TEXT"},
        {"clipboard-grab", 0, 0, G_OPTION_ARG_STRING, &grab,
         "Only grab the clipboard with these types (text,png,bmp,tiff,jpg or numbers)",
         "TYPE,..."},
        {"clipboard-request", 0, 0, G_OPTION_ARG_STRING, &request,
         "Ask the agent for its clipboard in TYPE and print what comes back", "TYPE"},
        {"clipboard-release", 0, 0, G_OPTION_ARG_NONE, &release, "Release the clipboard", NULL},
        {"selection", 0, 0, G_OPTION_ARG_INT, &selection,
         "Clipboard selection: 0 clipboard, 1 primary, 2 secondary", "N"},
        {"no-wait", 0, 0, G_OPTION_ARG_NONE, &no_wait,
         "--clipboard: send the data right after the grab, without waiting for a request",
         NULL},
        {"monitors", 0, 0, G_OPTION_ARG_STRING, &monitors,
         "Send MONITORS_CONFIG, e.g. 1024x768 or 1920x1080,1280x1024+1920+0", "WxH[+X+Y],..."},
        {"type", 0, 0, G_OPTION_ARG_STRING, &type_s,
         "Send one agent message of this type (with --hex)", "N"},
        {"hex", 0, 0, G_OPTION_ARG_STRING, &hex, "Payload for --type, in hex", "BYTES"},
        {"opaque", 0, 0, G_OPTION_ARG_STRING, &opaque_s, "opaque field for --type", "N"},
        {"raw-hex", 0, 0, G_OPTION_ARG_STRING, &raw_hex,
         "Send one AGENT_DATA body exactly as given (no framing)", "BYTES"},
        {"grant", 0, 0, G_OPTION_ARG_STRING, &grant_s,
         "AGENT_START tokens to grant (default unlimited)", "N"},
        {"no-progress", 0, 0, G_OPTION_ARG_NONE, &no_progress,
         "No progress line (it is shown on a terminal by default)", NULL},
        {NULL}};
    g_autoptr(GOptionContext) octx = make_context(
        "ACTION", "Send agent messages as a SPICE client: a file, clipboard, monitors "
        "config or any message.",
        "Waits for a connected agent and its capabilities first. Respects the server's "
        "tokens.\nExit status 1 when the agent refuses or fails the operation.");
    g_option_context_add_main_entries(octx, client_entries, NULL);
    g_option_context_add_main_entries(octx, entries, NULL);
    g_option_context_add_main_entries(octx, common_entries, NULL);
    parse_or_die(octx, &argc, &argv);
    if (argc != 1)
        die_usage("unexpected argument \"%s\" (see --help)", argv[1]);
    int actions = (files ? 1 : 0) + (clipboard ? 1 : 0) + (grab ? 1 : 0) + (request ? 1 : 0) +
                  (release ? 1 : 0) + (monitors ? 1 : 0) + (type_s ? 1 : 0) + (raw_hex ? 1 : 0);
    if (actions != 1)
        die_usage("send needs exactly one of --file, --clipboard, --clipboard-grab, "
                  "--clipboard-request, --clipboard-release, --monitors, --type, --raw-hex");
    if (hex && !type_s)
        die_usage("--hex goes with --type");
    if (selection < 0 || selection > 255)
        die_usage("--selection must be 0..255");

    /* validate everything before connecting */
    g_autoptr(GByteArray) payload = NULL;
    guint32 type = 0;
    guint64 opaque = opaque_s ? parse_u64_or_die("--opaque", opaque_s, G_MAXUINT64) : 0;
    if (type_s) {
        type = (guint32)parse_u64_or_die("--type", type_s, G_MAXUINT32);
        payload = hex ? parse_hex_or_die("--hex", hex) : g_byte_array_new();
    }
    if (raw_hex) {
        payload = parse_hex_or_die("--raw-hex", raw_hex);
        if (payload->len == 0)
            die_usage("--raw-hex: empty body");
    }
    g_autoptr(GArray) mons = g_array_new(FALSE, TRUE, sizeof(guint32) * 4);
    if (monitors) {
        g_auto(GStrv) parts = g_strsplit(monitors, ",", -1);
        for (guint i = 0; parts[i]; i++) {
            guint w = 0, h = 0;
            gint x = 0, y = 0;
            char tail;
            int n = sscanf(parts[i], "%ux%u%d%d%c", &w, &h, &x, &y, &tail);
            if ((n != 2 && n != 4) || w == 0 || h == 0)
                die_usage("--monitors: \"%s\" is not WxH or WxH+X+Y", parts[i]);
            guint32 m[4] = {w, h, (guint32)x, (guint32)y};
            g_array_append_vals(mons, m, 1);
        }
        if (mons->len == 0)
            die_usage("--monitors: no monitor given");
    }
    guint32 grant = grant_s ? (guint32)parse_u64_or_die("--grant", grant_s, G_MAXUINT32)
                            : VMC_AGENT_TOKENS_UNLIMITED;
    if (files) {
        for (guint i = 0; files[i]; i++) {
            if (g_access(files[i], R_OK) != 0)
                die_usage("--file %s: %s", files[i], g_strerror(errno));
        }
    }

    g_autofree char *password = read_password();
    g_autoptr(GMainContext) ctx = g_main_context_new();
    install_signals(ctx);
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.password = password;
    cfg.agent_grant = grant;
    cfg.token_refill = grant != VMC_AGENT_TOKENS_UNLIMITED ? MAX(1u, grant / 2) : 0;
    g_autoptr(VmcClientConn) cc = client_connect_or_die(ctx, &cfg);
    VmcClient *c = vmc_client_conn_get_client(cc);
    SendState st = {0};
    st.cc = cc;
    st.ctx = ctx;
    vmc_client_conn_set_event_func(cc, send_event, &st);
    wait_agent_or_die(cc, VMC_CLIENT_DEFAULT_AGENT_CAPS);

    int ret = 0;
    gboolean progress = !no_progress && isatty(2);
    if (files) {
        for (guint i = 0; files[i] && ret == 0; i++)
            ret = send_file(&st, files[i], i + 1, progress);
    } else if (clipboard || grab) {
        g_autoptr(GByteArray) b = g_byte_array_new();
        clip_prefix_append(c, b, (guint)selection);
        if (vmc_client_agent_has_cap(c, VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL))
            append_u32(b, 0);
        if (clipboard) {
            append_u32(b, VD_AGENT_CLIPBOARD_UTF8_TEXT);
        } else {
            g_auto(GStrv) types = g_strsplit(grab, ",", -1);
            for (guint i = 0; types[i]; i++)
                append_u32(b, clip_type_from_name(types[i]));
        }
        vmc_client_send_agent_message(c, VD_AGENT_CLIPBOARD_GRAB, 0, b->data, b->len);
        if (clipboard) {
            if (!no_wait) {
                if (!vmc_io_wait(ctx, cond_send_request, &st, (guint)opt_timeout))
                    fail_msg(EXIT_FAILED, "the agent did not request the clipboard within %d ms",
                             opt_timeout);
                check_agent_alive(&st);
            }
            g_autoptr(GByteArray) d = g_byte_array_new();
            clip_prefix_append(c, d, (guint)selection);
            append_u32(d, VD_AGENT_CLIPBOARD_UTF8_TEXT);
            g_byte_array_append(d, (const guint8 *)clipboard, (guint)strlen(clipboard));
            vmc_client_send_agent_message(c, VD_AGENT_CLIPBOARD, 0, d->data, d->len);
            printf("clipboard: sent %zu bytes of text\n", strlen(clipboard));
        } else {
            printf("clipboard: grabbed\n");
        }
    } else if (request) {
        g_autoptr(GByteArray) b = g_byte_array_new();
        clip_prefix_append(c, b, (guint)selection);
        append_u32(b, clip_type_from_name(request));
        vmc_client_send_agent_message(c, VD_AGENT_CLIPBOARD_REQUEST, 0, b->data, b->len);
        if (!vmc_io_wait(ctx, cond_send_clipboard, &st, (guint)opt_timeout))
            fail_msg(EXIT_FAILED, "no CLIPBOARD answer from the agent within %d ms",
                     opt_timeout);
        check_agent_alive(&st);
        gsize len;
        const guint8 *p = g_bytes_get_data(st.clipboard, &len);
        guint32 t = vmc_get_u32le(p);
        if (t == VD_AGENT_CLIPBOARD_UTF8_TEXT) {
            fwrite(p + 4, 1, len - 4, stdout);
            printf("\n");
        } else {
            printf("clipboard: type %u, %zu bytes\n", t, len - 4);
        }
    } else if (release) {
        g_autoptr(GByteArray) b = g_byte_array_new();
        clip_prefix_append(c, b, (guint)selection);
        vmc_client_send_agent_message(c, VD_AGENT_CLIPBOARD_RELEASE, 0, b->data, b->len);
    } else if (monitors) {
        g_autoptr(GByteArray) b = g_byte_array_new();
        append_u32(b, mons->len);
        append_u32(b, VD_AGENT_CONFIG_MONITORS_FLAG_USE_POS);
        for (guint i = 0; i < mons->len; i++) {
            guint32 *m = &g_array_index(mons, guint32, i * 4);
            append_u32(b, m[1]);  /* height */
            append_u32(b, m[0]);  /* width */
            append_u32(b, 32);    /* depth */
            append_u32(b, m[2]);  /* x */
            append_u32(b, m[3]);  /* y */
        }
        vmc_client_send_agent_message(c, VD_AGENT_MONITORS_CONFIG, 0, b->data, b->len);
        if (!vmc_io_wait(ctx, cond_send_reply, &st, (guint)opt_timeout))
            fail_msg(EXIT_FAILED, "no REPLY to MONITORS_CONFIG within %d ms", opt_timeout);
        check_agent_alive(&st);
        printf("monitors: agent replied %s\n",
               st.reply_error == VD_AGENT_SUCCESS ? "SUCCESS" : "ERROR");
        if (st.reply_error != VD_AGENT_SUCCESS)
            ret = EXIT_FAILED;
    } else if (type_s) {
        vmc_client_send_agent_message(c, type, opaque, payload->data, payload->len);
    } else if (raw_hex) {
        vmc_client_send_agent_data(c, payload->data, payload->len);
    }
    if (!vmc_io_wait(ctx, cond_output_flushed, cc, (guint)opt_timeout))
        fail_msg(EXIT_FAILED, "could not send everything within %d ms (no tokens from the "
                 "server?)", opt_timeout);
    if (vmc_client_conn_is_closed(cc))
        fail_msg(EXIT_FAILED, "the server closed the connection");
    if (st.clipboard)
        g_bytes_unref(st.clipboard);
    return ret;
}

/* ================================================================================ */
/* agent: a scripted guest agent */

typedef struct {
    guint32 id;
    char *path;
    int fd;
    guint64 size;
    guint64 received;
} Xfer;

typedef struct {
    GMainContext *ctx;
    VmcAgentConn *ac;
    guint32 caps;
    guint32 client_caps;
    gboolean have_client_caps;
    char *save_dir;
    char *clipboard;
    gboolean echo;
    gboolean fetch;
    gboolean announce;
    gboolean quiet;
    gboolean no_file_xfer;
    GHashTable *xfers; /* id -> Xfer */
    guint64 count;
    guint64 max_count;
    guint64 violations;
    guint64 files_done;
    gboolean closed;
    gdouble t0;
    VmcDescribeCtx dctx;
    char *ready_file; /* created once the port is open and our caps are on the wire */
} Agent;

static void
xfer_free(gpointer p)
{
    Xfer *x = p;
    if (x->fd >= 0) {
        close(x->fd);
        if (x->received < x->size || x->size == G_MAXUINT64)
            g_unlink(x->path);
    }
    g_free(x->path);
    g_free(x);
}

static void G_GNUC_PRINTF(2, 3)
agent_print(Agent *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    timed_vprint(a->t0, a->quiet, NULL, fmt, ap);
    va_end(ap);
}

static void
agent_send(Agent *a, guint32 port, guint32 type, guint64 opaque, const guint8 *p, gsize len)
{
    vmc_agent_peer_send(vmc_agent_conn_get_peer(a->ac), port, type, opaque, p, len);
    vmc_describe_ctx_observe(&a->dctx, TRUE, type, p, len);
    if (!a->quiet) {
        g_autofree char *d = vmc_describe_agent_message(&a->dctx, type, opaque, (guint32)len, p,
                                                        len);
        agent_print(a, "%-13s %s", port == 2 ? "agent>server" : "agent>client", d);
    }
}

static void
agent_caps(Agent *a, gboolean request)
{
    guint8 p[8];
    vmc_put_u32le(p, request ? 1 : 0);
    vmc_put_u32le(p + 4, a->caps);
    agent_send(a, 1, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, p, 8);
}

static void
agent_status(Agent *a, guint32 id, guint32 status)
{
    guint8 p[8];
    vmc_put_u32le(p, id);
    vmc_put_u32le(p + 4, status);
    agent_send(a, 1, VD_AGENT_FILE_XFER_STATUS, 0, p, 8);
}

static gboolean
agent_sel(Agent *a)
{
    return (a->caps >> VD_AGENT_CAP_CLIPBOARD_SELECTION & 1) && a->have_client_caps &&
           (a->client_caps >> VD_AGENT_CAP_CLIPBOARD_SELECTION & 1);
}

static gboolean
agent_serial(Agent *a)
{
    return (a->caps >> VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL & 1) && a->have_client_caps &&
           (a->client_caps >> VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL & 1);
}

static char *
unique_path(const char *dir, const char *name)
{
    char *path = g_build_filename(dir, name, NULL);
    for (guint i = 1; g_file_test(path, G_FILE_TEST_EXISTS) && i < 1000; i++) {
        g_free(path);
        g_autofree char *alt = g_strdup_printf("%s (%u)", name, i);
        path = g_build_filename(dir, alt, NULL);
    }
    return path;
}

static void
agent_file_start(Agent *a, const guint8 *p, gsize len)
{
    if (len < 5) {
        agent_print(a, "!! FILE_XFER_START of %zu bytes", len);
        return;
    }
    guint32 id = vmc_get_u32le(p);
    if (a->no_file_xfer) {
        agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_DISABLED);
        return;
    }
    g_autofree char *text = g_strndup((const char *)p + 4, len - 4);
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(GError) error = NULL;
    if (!g_key_file_load_from_data(kf, text, -1, G_KEY_FILE_NONE, &error)) {
        agent_print(a, "!! file %u: bad FILE_XFER_START text: %s", id, error->message);
        agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_ERROR);
        return;
    }
    g_autofree char *name = g_key_file_get_string(kf, "vdagent-file-xfer", "name", NULL);
    guint64 size = g_key_file_get_uint64(kf, "vdagent-file-xfer", "size", &error);
    if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || error) {
        agent_print(a, "!! file %u: refused (name \"%s\")", id, name ? name : "");
        agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_ERROR);
        return;
    }
    if (g_hash_table_contains(a->xfers, GUINT_TO_POINTER(id))) {
        agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_ERROR);
        return;
    }
    Xfer *x = g_new0(Xfer, 1);
    x->id = id;
    x->size = size;
    x->fd = -1;
    if (a->save_dir) {
        x->path = unique_path(a->save_dir, name);
        x->fd = g_open(x->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (x->fd < 0) {
            int e = errno;
            agent_print(a, "!! file %u: %s: %s", id, x->path, g_strerror(e));
            agent_status(a, id, e == ENOSPC ? VD_AGENT_FILE_XFER_STATUS_NOT_ENOUGH_SPACE
                                            : VD_AGENT_FILE_XFER_STATUS_ERROR);
            xfer_free(x);
            return;
        }
    }
    g_hash_table_insert(a->xfers, GUINT_TO_POINTER(id), x);
    agent_print(a, "file %u: receiving \"%s\" (%" G_GUINT64_FORMAT " bytes)%s%s", id, name, size,
                x->path ? " into " : "", x->path ? x->path : "");
    agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA);
    if (size == 0 && x->fd >= 0) {
        /* spice-gtk still sends one empty DATA; finish when it comes */
    }
}

static void
agent_file_data(Agent *a, const guint8 *p, gsize len)
{
    if (len < 12)
        return;
    guint32 id = vmc_get_u32le(p);
    guint64 n = vmc_get_u64le(p + 4);
    Xfer *x = g_hash_table_lookup(a->xfers, GUINT_TO_POINTER(id));
    if (!x) {
        agent_print(a, "!! FILE_XFER_DATA for unknown transfer %u", id);
        return;
    }
    if (n != len - 12 || n > x->size - x->received) {
        agent_print(a, "!! file %u: DATA of %" G_GUINT64_FORMAT " bytes does not fit", id, n);
        agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_ERROR);
        g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
        return;
    }
    if (x->fd >= 0) {
        gsize off = 0;
        while (off < n) {
            gssize w = write(x->fd, p + 12 + off, (gsize)n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = errno;
                agent_print(a, "!! file %u: write: %s", id, g_strerror(e));
                agent_status(a, id, e == ENOSPC ? VD_AGENT_FILE_XFER_STATUS_NOT_ENOUGH_SPACE
                                                : VD_AGENT_FILE_XFER_STATUS_ERROR);
                g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
                return;
            }
            off += (gsize)w;
        }
    }
    x->received += n;
    if (x->received == x->size) {
        if (x->fd >= 0 && close(x->fd) != 0) {
            x->fd = -1;
            agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_ERROR);
            g_unlink(x->path);
            g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
            return;
        }
        x->fd = -1;
        agent_print(a, "file %u: complete, %" G_GUINT64_FORMAT " bytes", id, x->size);
        agent_status(a, id, VD_AGENT_FILE_XFER_STATUS_SUCCESS);
        a->files_done++;
        g_hash_table_remove(a->xfers, GUINT_TO_POINTER(id));
    }
}

static void
agent_message(Agent *a, guint32 port, const VmcAgentHeader *h, const guint8 *p, gsize len)
{
    gsize sel = agent_sel(a) ? 4 : 0;

    if (a->echo && port == 1 && h->type != VD_AGENT_ANNOUNCE_CAPABILITIES) {
        agent_send(a, 1, h->type, h->opaque, p, len);
        return;
    }
    switch (h->type) {
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
        if (len >= 8) {
            a->client_caps = vmc_get_u32le(p + 4);
            a->have_client_caps = TRUE;
        }
        if (len >= 4 && vmc_get_u32le(p) != 0)
            agent_caps(a, FALSE);
        break;
    case VD_AGENT_CLIENT_DISCONNECTED:
        g_hash_table_remove_all(a->xfers);
        a->have_client_caps = FALSE;
        break;
    case VD_AGENT_FILE_XFER_START:
        agent_file_start(a, p, len);
        break;
    case VD_AGENT_FILE_XFER_DATA:
        agent_file_data(a, p, len);
        break;
    case VD_AGENT_FILE_XFER_STATUS:
        if (len >= 4 && g_hash_table_remove(a->xfers, GUINT_TO_POINTER(vmc_get_u32le(p))))
            agent_print(a, "file %u: aborted by the client", vmc_get_u32le(p));
        break;
    case VD_AGENT_CLIPBOARD_GRAB:
        if (a->fetch) {
            gsize off = sel + (agent_serial(a) ? 4 : 0);
            guint32 want = VD_AGENT_CLIPBOARD_NONE;
            for (gsize i = off; i + 4 <= len; i += 4) {
                guint32 t = vmc_get_u32le(p + i);
                if (want == VD_AGENT_CLIPBOARD_NONE || t == VD_AGENT_CLIPBOARD_UTF8_TEXT)
                    want = t;
            }
            if (want != VD_AGENT_CLIPBOARD_NONE) {
                guint8 req[8] = {0};
                if (sel)
                    req[0] = len > 0 ? p[0] : 0;
                vmc_put_u32le(req + sel, want);
                agent_send(a, 1, VD_AGENT_CLIPBOARD_REQUEST, 0, req, sel + 4);
            }
        }
        break;
    case VD_AGENT_CLIPBOARD_REQUEST:
        if (len >= sel + 4) {
            guint32 t = vmc_get_u32le(p + sel);
            g_autoptr(GByteArray) b = g_byte_array_new();
            if (sel)
                g_byte_array_append(b, p, 4);
            gboolean have = a->clipboard && t == VD_AGENT_CLIPBOARD_UTF8_TEXT;
            append_u32(b, have ? t : VD_AGENT_CLIPBOARD_NONE);
            if (have)
                g_byte_array_append(b, (const guint8 *)a->clipboard, (guint)strlen(a->clipboard));
            agent_send(a, 1, VD_AGENT_CLIPBOARD, 0, b->data, b->len);
        }
        break;
    case VD_AGENT_MONITORS_CONFIG:
    case VD_AGENT_DISPLAY_CONFIG: {
        guint8 r[8];
        vmc_put_u32le(r, h->type);
        vmc_put_u32le(r + 4, VD_AGENT_SUCCESS);
        /* the reply goes back on the port the request came in on */
        agent_send(a, port, VD_AGENT_REPLY, 0, r, 8);
        break;
    }
    default:
        break;
    }
}

static void
agent_event(VmcAgentConn *ac, const VmcAgentPeerEvent *ev, gpointer user_data)
{
    Agent *a = user_data;

    if (ev->type == VMC_AGENT_PEER_EV_VIOLATION) {
        a->violations++;
        agent_print(a, "!! framing violation: %s", ev->detail);
        return;
    }
    if (ev->type != VMC_AGENT_PEER_EV_MESSAGE)
        return;
    gsize len;
    const guint8 *p = g_bytes_get_data(ev->body, &len);
    vmc_describe_ctx_observe(&a->dctx, FALSE, ev->header.type, p, len);
    if (!a->quiet) {
        g_autofree char *d = vmc_describe_agent_message(&a->dctx, ev->header.type,
                                                        ev->header.opaque, ev->header.size, p,
                                                        len);
        agent_print(a, "%-13s %s", ev->port == 2 ? "server>agent" : "client>agent", d);
    }
    if (ev->header.protocol == 1 && !ev->truncated)
        agent_message(a, ev->port, &ev->header, p, len);
    a->count++;
}

static void
agent_state(VmcAgentConn *ac, gboolean open, gpointer user_data)
{
    Agent *a = user_data;
    if (open) {
        agent_print(a, "port open");
        a->have_client_caps = FALSE;
        g_hash_table_remove_all(a->xfers);
        if (a->announce)
            agent_caps(a, TRUE);
        if (a->ready_file) {
            if (vmc_agent_conn_get_io(a->ac))
                vmc_io_conn_flush_now(vmc_agent_conn_get_io(a->ac));
            g_file_set_contents(a->ready_file, "ready\n", -1, NULL);
        }
    } else {
        agent_print(a, "port closed");
        g_hash_table_remove_all(a->xfers);
        a->closed = TRUE;
    }
}

static gboolean
agent_done(gpointer user_data)
{
    Agent *a = user_data;
    return stop_requested || a->closed || (a->max_count && a->count >= a->max_count);
}

static int
cmd_agent(int argc, char **argv)
{
    g_autofree char *caps_s = NULL, *save_dir = NULL, *clipboard = NULL, *ready_file = NULL;
    gboolean echo = FALSE, no_announce = FALSE, no_fetch = FALSE, quiet = FALSE;
    gboolean once = FALSE, strict = FALSE, no_file_xfer = FALSE;
    gint max_chunk = VMC_CHUNK_MAX_PAYLOAD, count = 0, duration = 0;
    GOptionEntry entries[] = {
        {"guest", 'g', 0, G_OPTION_ARG_STRING, &opt_guest,
         "The server's guest port, spelled as for vmcmux-server --guest: unix:PATH (the "
         "server listens; we connect) or connect:PATH (the server connects; we listen)",
         "SPEC"},
        {"caps", 0, 0, G_OPTION_ARG_STRING, &caps_s,
         "Capability word to announce (default 0x00038de7, spice-vdagentd's)", "HEX"},
        {"save-dir", 's', 0, G_OPTION_ARG_FILENAME, &save_dir,
         "Save received files here (without it, file data is counted and dropped)", "DIR"},
        {"no-file-xfer", 0, 0, G_OPTION_ARG_NONE, &no_file_xfer,
         "Answer every FILE_XFER_START with DISABLED", NULL},
        {"clipboard", 0, 0, G_OPTION_ARG_STRING, &clipboard,
         "Guest clipboard text served on CLIPBOARD_REQUEST", "TEXT"},
        {"no-fetch", 0, 0, G_OPTION_ARG_NONE, &no_fetch,
         "Do not request the client's clipboard when it grabs", NULL},
        {"echo", 'e', 0, G_OPTION_ARG_NONE, &echo,
         "Send every client message (except capabilities) back unchanged", NULL},
        {"max-chunk", 0, 0, G_OPTION_ARG_INT, &max_chunk,
         "Largest chunk we write (default 2048; 0 = one chunk per message, like "
         "spice-vdagentd)", "N"},
        {"no-announce", 0, 0, G_OPTION_ARG_NONE, &no_announce,
         "Do not announce capabilities when the port opens", NULL},
        {"once", 0, 0, G_OPTION_ARG_NONE, &once, "Exit when the first connection closes", NULL},
        {"count", 'n', 0, G_OPTION_ARG_INT, &count, "Exit after N received messages", "N"},
        {"duration", 'd', 0, G_OPTION_ARG_INT, &duration, "Exit after MS milliseconds", "MS"},
        {"strict", 0, 0, G_OPTION_ARG_NONE, &strict,
         "Exit with status 1 if the server broke a framing rule", NULL},
        {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Print nothing per message", NULL},
        {"ready-file", 0, 0, G_OPTION_ARG_FILENAME, &ready_file,
         "Create FILE once the port is open and the capabilities are sent (for scripts)",
         "FILE"},
        {NULL}};
    g_autoptr(GOptionContext) octx = make_context(
        "--guest SPEC", "Act as the guest agent on the port: capabilities, file transfers, "
        "clipboard, monitor replies.",
        "Checks the server's chunk framing as spice-vdagentd does (chunks <= 2048 bytes, ports "
        "1 and 2, one message per chunk) and reports violations.");
    g_option_context_add_main_entries(octx, entries, NULL);
    g_option_context_add_main_entries(octx, common_entries, NULL);
    parse_or_die(octx, &argc, &argv);
    if (argc != 1)
        die_usage("unexpected argument \"%s\" (see --help)", argv[1]);
    if (!opt_guest)
        die_usage("agent needs --guest unix:PATH or --guest connect:PATH");
    if (max_chunk < 0 || count < 0 || duration < 0)
        die_usage("--max-chunk, --count and --duration must not be negative");
    if (max_chunk > 0 && max_chunk < 8)
        die_usage("--max-chunk must be 0 or at least 8");
    if (save_dir && !g_file_test(save_dir, G_FILE_TEST_IS_DIR))
        die_usage("--save-dir %s: not a directory", save_dir);

    Agent a = {0};
    a.ctx = g_main_context_new();
    a.caps = caps_s ? (guint32)parse_u64_or_die("--caps", caps_s, G_MAXUINT32)
                    : VMC_AGENT_PEER_DEFAULT_CAPS;
    a.save_dir = save_dir;
    a.clipboard = clipboard;
    a.echo = echo;
    a.fetch = !no_fetch;
    a.announce = !no_announce;
    a.quiet = quiet;
    a.no_file_xfer = no_file_xfer;
    a.ready_file = ready_file;
    a.max_count = (guint64)count;
    a.xfers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, xfer_free);
    a.t0 = now_s();
    vmc_describe_ctx_init(&a.dctx);
    install_signals(a.ctx);

    g_autoptr(GError) error = NULL;
    a.ac = vmc_agent_conn_new(opt_guest, a.ctx, (guint)opt_timeout, &error);
    if (!a.ac)
        fail_msg(EXIT_USAGE, "%s", error->message);
    vmc_agent_peer_set_max_chunk(vmc_agent_conn_get_peer(a.ac), (gsize)max_chunk);
    vmc_agent_conn_set_event_func(a.ac, agent_event, &a);
    vmc_agent_conn_set_state_func(a.ac, agent_state, &a);
    if (vmc_agent_conn_is_open(a.ac))
        agent_state(a.ac, TRUE, &a);

    gboolean connecting = g_str_has_prefix(opt_guest, "unix:");
    gint64 end = duration ? g_get_monotonic_time() + (gint64)duration * 1000 : 0;
    int ret = 0;
    for (;;) {
        guint slice = 1000;
        if (end) {
            gint64 left = end - g_get_monotonic_time();
            if (left <= 0)
                break;
            slice = (guint)MIN(left / 1000 + 1, 1000);
        }
        vmc_io_wait(a.ctx, agent_done, &a, slice);
        if (stop_requested || (a.max_count && a.count >= a.max_count))
            break;
        if (a.closed) {
            a.closed = FALSE;
            if (once)
                break;
            if (connecting) {
                /* like spice-vdagentd: connect again; give up when the server is gone */
                if (!vmc_agent_conn_reconnect(a.ac, (guint)opt_timeout, &error)) {
                    fprintf(stderr, "vmcmux-client: agent: the server went away: %s\n",
                            error->message);
                    ret = EXIT_FAILED;
                    break;
                }
            }
        }
    }
    /* let queued answers leave */
    if (vmc_agent_conn_get_io(a.ac))
        vmc_io_conn_flush_now(vmc_agent_conn_get_io(a.ac));
    if (strict && a.violations > 0) {
        fprintf(stderr, "vmcmux-client: agent: %" G_GUINT64_FORMAT " framing violations\n",
                a.violations);
        ret = EXIT_FAILED;
    }
    g_hash_table_unref(a.xfers);
    vmc_agent_conn_free(a.ac);
    g_main_context_unref(a.ctx);
    return ret;
}

/* ================================================================================ */
/* replay */

static int
cmd_replay(int argc, char **argv)
{
    g_autofree char *as = NULL, *ignore = NULL, *ready_file = NULL;
    gint client = 0;
    gboolean realtime = FALSE;
    gint timeout = 10000;
    GOptionEntry entries[] = {
        {"as", 'a', 0, G_OPTION_ARG_STRING, &as, "Which side of the trace to play", "client|agent"},
        {"guest", 'g', 0, G_OPTION_ARG_STRING, &opt_guest,
         "--as agent: the server's guest port (as for vmcmux-server --guest)", "SPEC"},
        {"client", 0, 0, G_OPTION_ARG_INT, &client,
         "Which client of the trace (default: the first)", "ID"},
        {"ignore-type", 0, 0, G_OPTION_ARG_STRING, &ignore,
         "Leave these agent message types out of the comparison", "N,..."},
        {"realtime", 0, 0, G_OPTION_ARG_NONE, &realtime,
         "Also keep the recorded time between sent messages", NULL},
        {"timeout", 't', 0, G_OPTION_ARG_INT, &timeout,
         "Longest wait for one expected answer (default 10000)", "MS"},
        {"ready-file", 0, 0, G_OPTION_ARG_FILENAME, &ready_file,
         "Create FILE once connected and the first messages are out (for scripts)", "FILE"},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "Print every step", NULL},
        {NULL}};
    g_autoptr(GOptionContext) octx = make_context(
        "TRACE --as client|agent",
        "Replay one side of a trace against a live peer and check the other side's answers.",
        "Sending is paced by the answers (each message waits for the messages that preceded "
        "it in the trace) and by the server's tokens. The first difference prints both "
        "messages and exits with status 1.");
    g_option_context_add_main_entries(octx, client_entries, NULL);
    g_option_context_add_main_entries(octx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(octx, &argc, &argv, &error))
        die_usage("%s (see --help)", error->message);
    if (opt_verbose)
        g_log_set_debug_enabled(TRUE);
    if (argc != 2)
        die_usage("replay needs exactly one TRACE argument (see --help)");
    if (!as || (strcmp(as, "client") != 0 && strcmp(as, "agent") != 0))
        die_usage("replay needs --as client or --as agent");
    if (timeout <= 0 || client < 0)
        die_usage("--timeout must be positive and --client not negative");

    VmcReplayOptions opt;
    vmc_replay_options_init(&opt);
    opt.trace_path = argv[1];
    opt.role = strcmp(as, "client") == 0 ? VMC_REPLAY_AS_CLIENT : VMC_REPLAY_AS_AGENT;
    if (opt.role == VMC_REPLAY_AS_CLIENT && opt_guest)
        die_usage("--as client takes --connect, not --guest");
    if (opt.role == VMC_REPLAY_AS_AGENT && !opt_guest)
        die_usage("--as agent needs --guest SPEC");
    g_autofree char *password = read_password();
    opt.connect = opt_connect ? opt_connect : DEFAULT_CONNECT;
    opt.password = password;
    opt.guest = opt_guest;
    opt.client_id = (guint32)client;
    opt.timeout_ms = (guint)timeout;
    opt.realtime = realtime;
    opt.verbose = opt_verbose;
    opt.ready_file = ready_file;
    g_autoptr(GArray) types = g_array_new(FALSE, FALSE, sizeof(guint32));
    if (ignore) {
        g_auto(GStrv) parts = g_strsplit(ignore, ",", -1);
        for (guint i = 0; parts[i]; i++) {
            guint32 t = (guint32)parse_u64_or_die("--ignore-type", parts[i], G_MAXUINT32);
            g_array_append_val(types, t);
        }
        opt.ignore_types = types;
    }
    int ret = vmc_replay_run(&opt, &error);
    if (ret == 2)
        fail_msg(EXIT_USAGE, "replay: %s", error ? error->message : "failed");
    if (ret != 0 && error)
        fprintf(stderr, "vmcmux-client: replay: %s\n", error->message);
    return ret;
}

/* ================================================================================ */
/* bench: both ends in one process */

typedef struct {
    VmcClientConn *cc;
    VmcAgentConn *ac;
    guint64 received;
    guint64 messages;
} Bench;

static void
bench_client_event(VmcClientConn *cc, const VmcClientEvent *ev, gpointer user_data)
{
    Bench *b = user_data;
    if (ev->type == VMC_CLIENT_EV_AGENT_MESSAGE && ev->agent.type == 99) {
        b->received += g_bytes_get_size(ev->body);
        b->messages++;
    }
}

static void
bench_agent_event(VmcAgentConn *ac, const VmcAgentPeerEvent *ev, gpointer user_data)
{
    Bench *b = user_data;
    if (ev->type == VMC_AGENT_PEER_EV_MESSAGE && ev->header.type == 99) {
        b->received += g_bytes_get_size(ev->body);
        b->messages++;
    } else if (ev->type == VMC_AGENT_PEER_EV_MESSAGE &&
               ev->header.type == VD_AGENT_ANNOUNCE_CAPABILITIES) {
        gsize len;
        const guint8 *p = g_bytes_get_data(ev->body, &len);
        if (len >= 4 && vmc_get_u32le(p)) {
            VmcAgentPeer *peer = vmc_agent_conn_get_peer(ac);
            vmc_agent_peer_announce_caps(peer, FALSE, VMC_AGENT_PEER_DEFAULT_CAPS);
        }
    }
}

static gboolean
bench_started(gpointer user_data)
{
    Bench *b = user_data;
    return vmc_client_conn_is_closed(b->cc) ||
           (vmc_client_agent_started(vmc_client_conn_get_client(b->cc)) &&
            vmc_agent_conn_is_open(b->ac));
}

static int
cmd_bench(int argc, char **argv)
{
    gint mib = 64, msg_size = 65536;
    g_autofree char *direction = NULL;
    GOptionEntry entries[] = {
        {"guest", 'g', 0, G_OPTION_ARG_STRING, &opt_guest,
         "The server's guest port (as for vmcmux-server --guest)", "SPEC"},
        {"mib", 'm', 0, G_OPTION_ARG_INT, &mib, "MiB to move (default 64)", "N"},
        {"message-size", 0, 0, G_OPTION_ARG_INT, &msg_size,
         "Agent message payload size (default 65536)", "BYTES"},
        {"direction", 0, 0, G_OPTION_ARG_STRING, &direction,
         "up: client to agent (default); down: agent to client", "up|down"},
        {NULL}};
    g_autoptr(GOptionContext) octx = make_context(
        "--guest SPEC", "Measure agent-channel throughput: this process is both the client "
        "and the guest agent.", NULL);
    g_option_context_add_main_entries(octx, client_entries, NULL);
    g_option_context_add_main_entries(octx, entries, NULL);
    g_option_context_add_main_entries(octx, common_entries, NULL);
    parse_or_die(octx, &argc, &argv);
    if (argc != 1)
        die_usage("unexpected argument \"%s\" (see --help)", argv[1]);
    if (!opt_guest)
        die_usage("bench needs --guest SPEC (and --connect)");
    if (mib <= 0 || msg_size <= 0 || msg_size > 16 * 1024 * 1024)
        die_usage("--mib must be positive and --message-size 1..16777216");
    gboolean up = !direction || strcmp(direction, "up") == 0;
    if (direction && !up && strcmp(direction, "down") != 0)
        die_usage("--direction must be up or down");

    g_autoptr(GMainContext) ctx = g_main_context_new();
    install_signals(ctx);
    Bench b = {0};
    g_autoptr(GError) error = NULL;
    b.ac = vmc_agent_conn_new(opt_guest, ctx, (guint)opt_timeout, &error);
    if (!b.ac)
        fail_msg(EXIT_USAGE, "%s", error->message);
    vmc_agent_conn_set_event_func(b.ac, bench_agent_event, &b);
    g_autofree char *password = read_password();
    VmcClientConfig cfg;
    vmc_client_config_init(&cfg);
    cfg.password = password;
    b.cc = client_connect_or_die(ctx, &cfg);
    vmc_client_conn_set_event_func(b.cc, bench_client_event, &b);
    if (!vmc_io_wait(ctx, bench_started, &b, (guint)opt_timeout) ||
        vmc_client_conn_is_closed(b.cc))
        fail_msg(EXIT_FAILED, "the agent path did not come up within %d ms", opt_timeout);
    VmcClient *c = vmc_client_conn_get_client(b.cc);
    vmc_client_announce_caps(c, TRUE, VMC_CLIENT_DEFAULT_AGENT_CAPS);

    guint64 target = (guint64)mib * 1024 * 1024;
    g_autofree guint8 *payload = g_malloc((gsize)msg_size);
    for (gint i = 0; i < msg_size; i++)
        payload[i] = (guint8)i;
    guint64 queued = 0;
    gdouble t0 = now_s();
    gint64 last = g_get_monotonic_time();
    guint64 last_received = 0;
    while (b.received < target && !stop_requested && !vmc_client_conn_is_closed(b.cc)) {
        gsize pending;
        if (up) {
            pending = vmc_client_agent_pending(c);
        } else {
            vmc_agent_peer_output(vmc_agent_conn_get_peer(b.ac), &pending);
        }
        while (queued < target && pending < 4u * (gsize)msg_size) {
            gsize n = (gsize)MIN((guint64)msg_size, target - queued);
            if (up)
                vmc_client_send_agent_message(c, 99, 0, payload, n);
            else
                vmc_agent_peer_send(vmc_agent_conn_get_peer(b.ac), 1, 99, 0, payload, n);
            queued += n;
            pending += n;
        }
        vmc_io_wait(ctx, NULL, NULL, 5);
        if (b.received != last_received) {
            last_received = b.received;
            last = g_get_monotonic_time();
        } else if (g_get_monotonic_time() - last > (gint64)opt_timeout * 1000) {
            fail_msg(EXIT_FAILED, "stalled after %" G_GUINT64_FORMAT " bytes", b.received);
        }
    }
    gdouble dt = now_s() - t0;
    if (b.received < target)
        fail_msg(EXIT_FAILED, "interrupted after %" G_GUINT64_FORMAT " bytes", b.received);
    printf("bench %s: %d MiB in %.3f s = %.1f MiB/s, %.0f messages/s (%d-byte messages)\n",
           up ? "client->agent" : "agent->client", mib, dt, (gdouble)mib / dt,
           (gdouble)b.messages / dt, msg_size);
    vmc_client_conn_free(b.cc);
    vmc_agent_conn_free(b.ac);
    return 0;
}

/* ================================================================================ */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"info", cmd_info, "show link caps, INIT and agent state of a SPICE server"},
    {"monitor", cmd_monitor, "show every agent message at one end, decoded (--json)"},
    {"send", cmd_send, "send a file, clipboard, monitors config or any agent message"},
    {"agent", cmd_agent, "act as the guest agent on the server's guest port"},
    {"record", cmd_record, "record agent traffic seen from one end into a trace"},
    {"replay", cmd_replay, "replay one side of a trace and check the answers"},
    {"decode", cmd_decode, "pretty-print a trace (--json for jq)"},
    {"bench", cmd_bench, "measure agent-channel throughput (client and agent in one process)"},
};

static void
usage(FILE *f)
{
    fprintf(f, "Usage: vmcmux-client COMMAND [OPTIONS]\n\n"
               "A debug and test client for SPICE agent channels: a SPICE client of any SPICE\n"
               "server (--connect HOST:PORT|unix:PATH --password PW) or the guest agent on its\n"
               "port (--guest unix:PATH|connect:PATH).\n\nCommands:\n");
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n\"vmcmux-client COMMAND --help\" shows each command's options.\n");
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    g_set_prgname("vmcmux-client");
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (guint i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            g_autofree char *prg = g_strdup_printf("vmcmux-client %s", commands[i].name);
            g_set_prgname(prg);
            argv[1] = prg;
            int ret = commands[i].run(argc - 1, argv + 1);
            g_clear_pointer(&opt_connect, g_free);
            g_clear_pointer(&opt_password, g_free);
            g_clear_pointer(&opt_password_file, g_free);
            g_clear_pointer(&opt_guest, g_free);
            return ret;
        }
    }
    fprintf(stderr, "vmcmux-client: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
