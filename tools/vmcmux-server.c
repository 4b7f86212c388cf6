/* vmcmux-server — the SPICE agent-channel daemon.
 *
 *   vmcmux-server --guest unix:/run/vmcmux/guest.sock --password-file pw.txt
 *
 * Runs in the foreground until SIGINT or SIGTERM (then exits 0). Lifecycle events
 * (clients and the agent coming and going) are logged as messages; -v adds the
 * protocol detail (debug). Bad options or a busy address: one line on stderr, exit 1.
 *
 * Authentication must be chosen explicitly: --password PW, --password-file FILE or
 * --disable-ticketing. Without any of them the daemon refuses to start, so a server
 * reachable by others is never left open by accident (and never left unusable: a
 * SPICE server with ticketing on and no password refuses every client).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "server/vmc-options.h"
#include "server/vmc-runtime.h"
#ifdef VMC_HAVE_BRIDGE
#include "server/vmc-bridge.h"
#endif

#define AGENT_WINDOW_MAX 65536u /* x 2 KiB in flight per client: 128 MiB */
#define MAX_CLIENTS_MAX 1024u

typedef struct {
    char **listen;
    char *guest;
    char *password;
    char *password_file;
    gboolean disable_ticketing;
    char *backend;
    gint64 agent_window;
    gboolean no_copy_paste;
    gboolean no_file_xfer;
    gint64 max_clients;
    char *record;
    char *name;
    char *uuid;
    gboolean verbose;
} Args;

static void
args_clear(Args *a)
{
    g_clear_pointer(&a->listen, g_strfreev);
    g_clear_pointer(&a->guest, g_free);
    if (a->password != NULL)
        memset(a->password, 0, strlen(a->password));
    g_clear_pointer(&a->password, g_free);
    g_clear_pointer(&a->password_file, g_free);
    g_clear_pointer(&a->backend, g_free);
    g_clear_pointer(&a->record, g_free);
    g_clear_pointer(&a->name, g_free);
    g_clear_pointer(&a->uuid, g_free);
}

static void
options_clear(VmcServerOptions *o)
{
    g_clear_pointer(&o->listen, g_ptr_array_unref);
    g_clear_pointer(&o->guest, g_free);
    if (o->password != NULL)
        memset(o->password, 0, strlen(o->password));
    g_clear_pointer(&o->password, g_free);
    g_clear_pointer(&o->record_path, g_free);
    g_clear_pointer(&o->name, g_free);
}

static gboolean
parse_uuid(const char *s, guint8 out[16])
{
    guint n = 0;

    if (!g_uuid_string_is_valid(s))
        return FALSE;
    for (const char *p = s; *p && n < 32; p++) {
        if (*p == '-')
            continue;
        if (n % 2 == 0)
            out[n / 2] = (guint8)(g_ascii_xdigit_value(*p) << 4);
        else
            out[n / 2] |= (guint8)g_ascii_xdigit_value(*p);
        n++;
    }
    return n == 32;
}

static char *
read_password_file(const char *path, GError **error)
{
    char *text = NULL;
    gsize len = 0;

    if (!g_file_get_contents(path, &text, &len, error))
        return NULL;
    /* one trailing newline (as `echo pw > file` writes it) is not part of the password */
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if (len > 0 && text[len - 1] == '\r')
        text[--len] = '\0';
    if (strlen(text) != len) {
        memset(text, 0, len);
        g_free(text);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s contains a NUL byte", path);
        return NULL;
    }
    return text;
}

/* Validates the arguments into `o`. */
static gboolean
build_options(Args *a, VmcServerOptions *o, GError **error)
{
    memset(o, 0, sizeof(*o));
    o->copy_paste = !a->no_copy_paste;
    o->file_xfer = !a->no_file_xfer;
    o->verbose = a->verbose ? 1 : 0;

    if (a->backend == NULL || g_str_equal(a->backend, "native")) {
        o->backend = VMC_BACKEND_NATIVE;
    } else if (g_str_equal(a->backend, "spice-server")) {
        o->backend = VMC_BACKEND_SPICE_SERVER;
    } else {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--backend must be native or spice-server, not '%s'", a->backend);
        return FALSE;
    }

    o->listen = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; a->listen != NULL && a->listen[i] != NULL; i++)
        g_ptr_array_add(o->listen, g_strdup(a->listen[i]));
    if (o->listen->len == 0)
        g_ptr_array_add(o->listen, g_strdup("127.0.0.1:5930"));

    if (a->guest != NULL && g_str_equal(a->guest, "push")) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--guest push is for VMMs embedding libvmcmux; use unix:PATH, "
                    "connect:PATH, pty, dev:PATH or fd:N");
        return FALSE;
    }
    o->guest = g_strdup(a->guest);

    if ((a->password != NULL) + (a->password_file != NULL) + !!a->disable_ticketing != 1) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    (a->password == NULL && a->password_file == NULL && !a->disable_ticketing)
                        ? "choose how clients authenticate: --password PW, --password-file "
                          "FILE or --disable-ticketing"
                        : "use only one of --password, --password-file and "
                          "--disable-ticketing");
        return FALSE;
    }
    o->disable_ticketing = a->disable_ticketing;
    if (a->password != NULL) {
        o->password = g_strdup(a->password);
    } else if (a->password_file != NULL) {
        o->password = read_password_file(a->password_file, error);
        if (o->password == NULL)
            return FALSE;
    }
    if (o->password != NULL && (o->password[0] == '\0' || strlen(o->password) > 60)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "the password must be 1 to 60 bytes long (a SPICE ticket limit)");
        return FALSE;
    }

    if (a->agent_window < 0 || a->agent_window > AGENT_WINDOW_MAX) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--agent-window must be 1 to %u", AGENT_WINDOW_MAX);
        return FALSE;
    }
    o->agent_window = (guint32)a->agent_window; /* 0: the backend's default */
    if (a->max_clients < 1 || a->max_clients > MAX_CLIENTS_MAX) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--max-clients must be 1 to %u", MAX_CLIENTS_MAX);
        return FALSE;
    }
    o->max_clients = (guint)a->max_clients;
    o->record_path = g_strdup(a->record);
    o->name = g_strdup(a->name);
    if (a->uuid != NULL) {
        if (!parse_uuid(a->uuid, o->uuid)) {
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "--uuid '%s' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                        a->uuid);
            return FALSE;
        }
        o->have_uuid = TRUE;
    }
    return TRUE;
}

static void
on_event(VmcServer *server, VmcServerEvent event, guint32 client_id, const char *detail,
         gpointer user_data)
{
    switch (event) {
    case VMC_SERVER_EVENT_CLIENT_CONNECTED:
        g_message("client %u connected from %s (%u connected)", client_id, detail,
                  vmc_server_get_n_clients(server));
        break;
    case VMC_SERVER_EVENT_CLIENT_DISCONNECTED:
        g_message("client %u disconnected: %s", client_id, detail);
        break;
    case VMC_SERVER_EVENT_CLIENT_REFUSED:
        g_message("connection refused: %s", detail);
        break;
    case VMC_SERVER_EVENT_AGENT_CONNECTED:
        g_message("agent connected on %s", detail);
        break;
    case VMC_SERVER_EVENT_AGENT_DISCONNECTED:
        g_message("agent disconnected: %s", detail);
        break;
    }
}

static gboolean
on_signal(gpointer user_data)
{
    g_main_loop_quit(user_data);
    return G_SOURCE_CONTINUE;
}

static int
run_native(const VmcServerOptions *o, GMainLoop *loop)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmcServer) server = vmc_server_new_from_options(o, NULL, &error);
    g_auto(GStrv) addrs = NULL;

    if (server == NULL || !vmc_server_start(server, &error)) {
        g_printerr("vmcmux-server: %s\n", error->message);
        return 1;
    }
    vmc_server_set_event_func(server, on_event, NULL);
    addrs = vmc_server_dup_listen_addresses(server);
    for (guint i = 0; addrs[i] != NULL; i++)
        g_message("listening on %s", addrs[i]);
    if (vmc_server_get_guest_description(server) != NULL)
        g_message("guest port %s", vmc_server_get_guest_description(server));
    else
        g_message("no --guest given: no agent can connect");
    if (o->disable_ticketing)
        g_message("ticketing disabled: any client may connect");
    g_main_loop_run(loop);
    g_message("shutting down");
    return 0;
}

static int
run_spice_server(const VmcServerOptions *o, GMainLoop *loop)
{
#ifdef VMC_HAVE_BRIDGE
    g_autoptr(GError) error = NULL;
    VmcSpiceHost *host = vmc_spice_host_new(o, NULL, &error);

    if (host == NULL) {
        g_printerr("vmcmux-server: %s\n", error->message);
        return 1;
    }
    g_message("listening on %s (libspice-server backend)", vmc_spice_host_describe(host));
    g_message("guest port %s", vmc_guest_port_describe(vmc_spice_host_get_guest_port(host)));
    g_main_loop_run(loop);
    g_message("shutting down");
    vmc_spice_host_free(host);
    return 0;
#else
    g_printerr("vmcmux-server: --backend spice-server is not available: this build has no "
               "libspice-server bridge (install libspice-server-dev and rebuild)\n");
    return 1;
#endif
}

int
main(int argc, char **argv)
{
    Args a = {.max_clients = 1};
    GOptionEntry entries[] = {
        {"listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &a.listen,
         "Where SPICE clients connect: HOST:PORT or unix:PATH (repeatable; default "
         "127.0.0.1:5930)",
         "ADDR"},
        {"guest", 'g', 0, G_OPTION_ARG_STRING, &a.guest,
         "The guest agent port: unix:PATH (listen; QEMU -chardev socket,path=PATH and "
         "spice-vdagentd connect), connect:PATH, pty, dev:PATH or fd:N",
         "SPEC"},
        {"password", 'p', 0, G_OPTION_ARG_STRING, &a.password,
         "Ticket password clients must give (visible in ps: prefer --password-file)", "PW"},
        {"password-file", 0, 0, G_OPTION_ARG_FILENAME, &a.password_file,
         "Read the password from FILE (one trailing newline is ignored)", "FILE"},
        {"disable-ticketing", 0, 0, G_OPTION_ARG_NONE, &a.disable_ticketing,
         "Let any client connect without a password", NULL},
        {"backend", 0, 0, G_OPTION_ARG_STRING, &a.backend,
         "native (default) or spice-server (libspice-server, for comparison)", "NAME"},
        {"agent-window", 0, 0, G_OPTION_ARG_INT64, &a.agent_window,
         "Client->agent tokens granted per client (native default 512; the reference "
         "server grants 10)",
         "N"},
        {"no-copy-paste", 0, 0, G_OPTION_ARG_NONE, &a.no_copy_paste,
         "Block clipboard messages both ways", NULL},
        {"no-file-xfer", 0, 0, G_OPTION_ARG_NONE, &a.no_file_xfer,
         "Refuse file transfers from clients", NULL},
        {"max-clients", 0, 0, G_OPTION_ARG_INT64, &a.max_clients,
         "1 (default): a new client replaces the old one; N > 1: up to N share the agent",
         "N"},
        {"record", 0, 0, G_OPTION_ARG_FILENAME, &a.record,
         "Write a JSON Lines trace of all agent traffic to FILE (- for stdout)", "FILE"},
        {"name", 0, 0, G_OPTION_ARG_STRING, &a.name, "VM name sent to clients", "NAME"},
        {"uuid", 0, 0, G_OPTION_ARG_STRING, &a.uuid, "VM UUID sent to clients", "UUID"},
        {"verbose", 'v', 0, G_OPTION_ARG_NONE, &a.verbose, "Log protocol detail (debug)",
         NULL},
        {NULL},
    };
    g_autoptr(GOptionContext) octx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GMainLoop) loop = NULL;
    VmcServerOptions opts;
    guint sigint, sigterm;
    gboolean ok;
    int ret;

    setlocale(LC_ALL, "");
    octx = g_option_context_new("- the SPICE agent-channel server");
    g_option_context_set_summary(
        octx, "Serves the SPICE main channel and carries the VM's spice-vdagent traffic\n"
              "(clipboard, file transfer, monitors) between SPICE clients and the guest.\n"
              "Authentication is required: --password, --password-file or "
              "--disable-ticketing.");
    g_option_context_set_description(
        octx, "Examples:\n"
              "  vmcmux-server --guest unix:/tmp/vmcmux/guest.sock --password-file pw.txt\n"
              "  remote-viewer spice://127.0.0.1:5930\n"
              "QEMU side:\n"
              "  -chardev socket,id=vdagent,path=/tmp/vmcmux/guest.sock\n"
              "  -device virtserialport,chardev=vdagent,name=com.redhat.spice.0\n");
    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &error)) {
        g_printerr("vmcmux-server: %s (see --help)\n", error->message);
        args_clear(&a);
        return 1;
    }
    if (argc > 1) {
        g_printerr("vmcmux-server: unexpected argument '%s' (see --help)\n", argv[1]);
        args_clear(&a);
        return 1;
    }
    ok = build_options(&a, &opts, &error);
    if (a.verbose)
        g_log_set_debug_enabled(TRUE);
    args_clear(&a);
    if (!ok) {
        g_printerr("vmcmux-server: %s\n", error->message);
        options_clear(&opts);
        return 1;
    }

    /* a client closing early must not kill us (libspice-server needs this too) */
    signal(SIGPIPE, SIG_IGN);
    loop = g_main_loop_new(NULL, FALSE);
    sigint = g_unix_signal_add(SIGINT, on_signal, loop);
    sigterm = g_unix_signal_add(SIGTERM, on_signal, loop);

    if (opts.backend == VMC_BACKEND_SPICE_SERVER)
        ret = run_spice_server(&opts, loop);
    else
        ret = run_native(&opts, loop);

    g_source_remove(sigint);
    g_source_remove(sigterm);
    options_clear(&opts);
    return ret;
}
