/* test-interop.c — vmcmux-server between the real peers.
 *
 * Per case it starts, in a fresh temporary directory:
 *   vmcmux-server --backend B --guest unix:DIR/guest.sock --listen 127.0.0.1:PORT --password PW
 *   spice-vdagentd -x -X -f -u DIR/uinput -s DIR/guest.sock -S DIR/vdagentd.sock
 *   vmc-session-agent --socket DIR/vdagentd.sock --dir DIR/recv   (the X11 agent's stand-in)
 *   vmc-gtk-client --host 127.0.0.1 --port PORT --password PW STEPS  (spice-gtk), as needed
 * and waits on their machine-readable output lines, with bounded timeouts, never fixed
 * sleeps. Every process is ended and reaped by the case; the server must exit 0 on
 * SIGTERM (clean shutdown, no leak under ASan).
 *
 * Environment: VMC_SERVER (vmcmux-server; unset: the cases skip), VMC_GTK_CLIENT,
 * VMC_SESSION_AGENT (the helpers, from meson), VMC_VDAGENTD (default: spice-vdagentd
 * from PATH or /usr/sbin), VMC_INTEROP_BACKEND (native, spice-server or "all",
 * default all), VMC_INTEROP_KEEP=1 keeps the temporary directories.
 */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <signal.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef HAVE_JSON_GLIB
#include <json-glib/json-glib.h>
#endif

#define PASSWORD "s3cret-vmc"
#define WAIT_MS 60000       /* one condition; generous for ASan builds */
#define BIG_SIZE (64u * 1024u * 1024u)
#define SMALL_SIZE (1024u * 1024u + 12345u)
#define STALL_AT (4u * 1024u * 1024u)

static const char *server_path;
static const char *client_path;
static const char *agent_path;
static char *vdagentd_path;

/* ---- processes with line-oriented stdout ---- */

typedef struct {
    char *name;
    GSubprocess *proc;
    GDataInputStream *out;
    GOutputStream *in;
    GPtrArray *lines; /* char*, everything read so far */
    guint cursor;     /* next line wait_line() looks at */
    gboolean eof;
    gboolean exited;
    int status;       /* raw wait status */
    char *err_path;
    GCancellable *cancel;
} Proc;

typedef struct {
    const char *backend;
    gboolean record; /* run the server with --record DIR/trace.jsonl */
} CaseData;

typedef struct {
    const char *backend;
    gboolean record;
    char *trace;
    GMainContext *ctx;
    char *dir;
    char *guest_sock;
    char *vd_sock;
    char *recv_dir;
    guint16 port;
    GPtrArray *procs; /* Proc*, in start order */
    Proc *server;
    Proc *vdagentd;
    Proc *agent;
} Fixture;

static void proc_read_next(Proc *p);

static void on_line(GObject *src, GAsyncResult *res, gpointer user_data)
{
    Proc *p = user_data;
    g_autoptr(GError) error = NULL;
    char *line = g_data_input_stream_read_line_finish_utf8(G_DATA_INPUT_STREAM(src), res, NULL,
                                                           &error);

    if (line == NULL) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
            p->eof = TRUE;
        }
        return;
    }
    if (g_test_verbose()) {
        g_printerr("[%s] %s\n", p->name, line);
    }
    g_ptr_array_add(p->lines, line);
    proc_read_next(p);
}

static void proc_read_next(Proc *p)
{
    g_data_input_stream_read_line_async(p->out, G_PRIORITY_DEFAULT, p->cancel, on_line, p);
}

static void on_proc_exit(GObject *src, GAsyncResult *res, gpointer user_data)
{
    Proc *p = user_data;

    g_subprocess_wait_finish(G_SUBPROCESS(src), res, NULL);
    if (g_subprocess_get_if_exited(G_SUBPROCESS(src)) ||
        g_subprocess_get_if_signaled(G_SUBPROCESS(src))) {
        p->exited = TRUE;
        p->status = g_subprocess_get_status(G_SUBPROCESS(src));
    }
}

static void proc_free(Proc *p)
{
    g_cancellable_cancel(p->cancel);
    g_clear_object(&p->out);
    g_clear_object(&p->proc);
    g_clear_object(&p->cancel);
    g_ptr_array_unref(p->lines);
    g_free(p->err_path);
    g_free(p->name);
    g_free(p);
}

static void dump_proc(Proc *p)
{
    g_autofree char *err = NULL;

    g_printerr("---- %s: stdout\n", p->name);
    for (guint i = 0; i < p->lines->len; i++) {
        g_printerr("%s\n", (char *) g_ptr_array_index(p->lines, i));
    }
    if (g_file_get_contents(p->err_path, &err, NULL, NULL) && err[0] != '\0') {
        gsize len = strlen(err);
        const char *tail = len > 6000 ? err + len - 6000 : err;

        g_printerr("---- %s: stderr (tail)\n%s\n", p->name, tail);
    }
}

static void dump_all(Fixture *fx)
{
    for (guint i = 0; i < fx->procs->len; i++) {
        dump_proc(g_ptr_array_index(fx->procs, i));
    }
}

/* Iterates the fixture's context until cond(p, data) holds or `ms` pass. */
typedef gboolean (*CondFunc)(Fixture *fx, gpointer data);

static gboolean on_deadline(gpointer user_data)
{
    *(gboolean *) user_data = TRUE;
    return G_SOURCE_REMOVE;
}

static gboolean wait_for(Fixture *fx, CondFunc cond, gpointer data, guint ms)
{
    gboolean expired = FALSE;
    GSource *t = g_timeout_source_new(ms);
    gboolean ok;

    g_source_set_callback(t, on_deadline, &expired, NULL);
    g_source_attach(t, fx->ctx);
    while (!(ok = cond(fx, data)) && !expired) {
        g_main_context_iteration(fx->ctx, TRUE);
    }
    g_source_destroy(t);
    g_source_unref(t);
    return ok;
}

/* A condition that needs polling (a file appearing, a port accepting). */
static gboolean on_poll_tick(gpointer user_data)
{
    return G_SOURCE_CONTINUE; /* only wakes the loop so the condition is re-checked */
}

static gboolean wait_polled(Fixture *fx, CondFunc cond, gpointer data, guint ms)
{
    GSource *tick = g_timeout_source_new(10);
    gboolean ok;

    g_source_set_callback(tick, on_poll_tick, NULL, NULL);
    g_source_attach(tick, fx->ctx);
    ok = wait_for(fx, cond, data, ms);
    g_source_destroy(tick);
    g_source_unref(tick);
    return ok;
}

typedef struct {
    Proc *p;
    const char *prefix;
    const char *found;
} LineWait;

static gboolean cond_line(Fixture *fx, gpointer data)
{
    LineWait *w = data;

    for (guint i = w->p->cursor; i < w->p->lines->len; i++) {
        const char *l = g_ptr_array_index(w->p->lines, i);

        if (g_str_has_prefix(l, w->prefix)) {
            w->p->cursor = i + 1;
            w->found = l;
            return TRUE;
        }
    }
    /* Give up early when the process is gone and everything was read. */
    return w->p->exited && w->p->eof;
}

/* Waits for the next line starting with `prefix`; fails the case with every log
 * dumped otherwise. Returns the line (owned by the Proc). */
static const char *wait_line(Fixture *fx, Proc *p, const char *prefix)
{
    LineWait w = { p, prefix, NULL };

    wait_for(fx, cond_line, &w, WAIT_MS);
    if (w.found == NULL) {
        dump_all(fx);
        g_error("%s: no line '%s...' (exited=%d)", p->name, prefix, p->exited);
    }
    return w.found;
}

static gboolean proc_has_line(Proc *p, const char *prefix);

typedef struct {
    Proc *p;
    const char *prefix;
} SeenWait;

static gboolean cond_seen(Fixture *fx, gpointer data)
{
    SeenWait *w = data;

    return proc_has_line(w->p, w->prefix) || (w->p->exited && w->p->eof);
}

/* Waits until some line (earlier ones included) starts with `prefix`; the cursor of
 * wait_line() does not move. */
static void wait_seen(Fixture *fx, Proc *p, const char *prefix)
{
    SeenWait w = { p, prefix };

    wait_for(fx, cond_seen, &w, WAIT_MS);
    if (!proc_has_line(p, prefix)) {
        dump_all(fx);
        g_error("%s: no line '%s...' (exited=%d)", p->name, prefix, p->exited);
    }
}

static gboolean proc_has_line(Proc *p, const char *prefix)
{
    for (guint i = 0; i < p->lines->len; i++) {
        if (g_str_has_prefix(g_ptr_array_index(p->lines, i), prefix)) {
            return TRUE;
        }
    }
    return FALSE;
}

static gboolean cond_exited(Fixture *fx, gpointer data)
{
    Proc *p = data;

    return p->exited && p->eof;
}

/* Waits for exit; returns the exit code, or 128 + signal. */
static int wait_exit(Fixture *fx, Proc *p)
{
    if (!wait_for(fx, cond_exited, p, WAIT_MS)) {
        dump_all(fx);
        g_error("%s did not exit", p->name);
    }
    if (WIFEXITED(p->status)) {
        return WEXITSTATUS(p->status);
    }
    return 128 + WTERMSIG(p->status);
}

/* In the child: die with the test. A failed assertion aborts the driver without
 * teardown; its peers must not outlive it. */
static void child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static Proc *proc_start(Fixture *fx, const char *name, gboolean want_stdin,
                        const char *const *env_set, const char *const *argv)
{
    g_autoptr(GSubprocessLauncher) l = NULL;
    g_autoptr(GError) error = NULL;
    Proc *p = g_new0(Proc, 1);

    p->name = g_strdup(name);
    p->lines = g_ptr_array_new_with_free_func(g_free);
    p->cancel = g_cancellable_new();
    p->err_path = g_strdup_printf("%s/%s.%u.err", fx->dir, name, fx->procs->len);
    l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                  (want_stdin ? G_SUBPROCESS_FLAGS_STDIN_PIPE
                                              : G_SUBPROCESS_FLAGS_NONE));
    g_subprocess_launcher_set_stderr_file_path(l, p->err_path);
    g_subprocess_launcher_set_child_setup(l, child_setup, NULL, NULL);
    for (guint i = 0; env_set != NULL && env_set[i] != NULL; i += 2) {
        if (env_set[i + 1] != NULL) {
            g_subprocess_launcher_setenv(l, env_set[i], env_set[i + 1], TRUE);
        } else {
            g_subprocess_launcher_unsetenv(l, env_set[i]);
        }
    }
    p->proc = g_subprocess_launcher_spawnv(l, argv, &error);
    g_assert_no_error(error);
    p->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p->proc));
    p->in = want_stdin ? g_subprocess_get_stdin_pipe(p->proc) : NULL;
    g_ptr_array_add(fx->procs, p);
    proc_read_next(p);
    g_subprocess_wait_async(p->proc, NULL, on_proc_exit, p);
    return p;
}

static void proc_send(Proc *p, const char *line)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *l = g_strconcat(line, "\n", NULL);

    g_assert_nonnull(p->in);
    g_output_stream_write_all(p->in, l, strlen(l), NULL, NULL, &error);
    g_assert_no_error(error);
    g_output_stream_flush(p->in, NULL, NULL);
}

static void proc_kill(Fixture *fx, Proc *p, int sig)
{
    if (!p->exited) {
        g_subprocess_send_signal(p->proc, sig);
    }
}

/* ---- fixture ---- */

static guint16 free_port(void)
{
    g_autoptr(GSocket) s = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                        G_SOCKET_PROTOCOL_TCP, NULL);
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) a = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;

    g_assert_true(g_socket_bind(s, a, TRUE, NULL));
    bound = g_socket_get_local_address(s, NULL);
    return g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
}

static gboolean cond_path(Fixture *fx, gpointer data)
{
    return g_file_test(data, G_FILE_TEST_EXISTS);
}

static gboolean cond_server_up(Fixture *fx, gpointer data)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int fd;
    gboolean ok;

    if (fx->server->exited || !g_file_test(fx->guest_sock, G_FILE_TEST_EXISTS)) {
        return fx->server->exited;
    }
    sa.sin_port = htons(fx->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ok = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

static const char *const *server_env(Fixture *fx)
{
    /* libspice-server logs peer trouble (a client reset, a token violation) with
     * g_warning: fatal-warnings would turn interop noise into aborts there. Our own
     * code keeps peer errors at g_debug, so the native backend keeps them fatal. */
    static const char *const spice_env[] = { "G_DEBUG", "", NULL };

    return strcmp(fx->backend, "spice-server") == 0 ? spice_env : NULL;
}

static void start_agent(Fixture *fx, const char *extra_opt, const char *extra_val)
{
    const char *argv[] = { agent_path, "--socket", fx->vd_sock, "--dir", fx->recv_dir,
                           extra_opt, extra_val, NULL };

    fx->agent = proc_start(fx, "agent", TRUE, NULL, argv);
    wait_line(fx, fx->agent, "connected");
}

static void fixture_setup(Fixture *fx, gconstpointer data)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *guest_spec = NULL;
    g_autofree char *listen = NULL;
    g_autofree char *uinput = NULL;

    const CaseData *cd = data;

    fx->backend = cd->backend;
    fx->record = cd->record;
    if (server_path == NULL) {
        g_test_skip("VMC_SERVER not set (vmcmux-server not built)");
        return;
    }
    if (vdagentd_path == NULL) {
        g_test_skip("spice-vdagentd not installed");
        return;
    }
    fx->ctx = g_main_context_new();
    g_main_context_push_thread_default(fx->ctx);
    fx->procs = g_ptr_array_new_with_free_func((GDestroyNotify) proc_free);
    fx->dir = g_dir_make_tmp("vmc-interop-XXXXXX", &error);
    g_assert_no_error(error);
    fx->guest_sock = g_build_filename(fx->dir, "guest.sock", NULL);
    fx->vd_sock = g_build_filename(fx->dir, "vdagentd.sock", NULL);
    fx->recv_dir = g_build_filename(fx->dir, "recv", NULL);
    uinput = g_build_filename(fx->dir, "uinput", NULL);
    g_assert_true(g_file_set_contents(uinput, "", 0, NULL));
    fx->port = free_port();

    guest_spec = g_strdup_printf("unix:%s", fx->guest_sock);
    listen = g_strdup_printf("127.0.0.1:%u", fx->port);
    fx->trace = g_build_filename(fx->dir, "trace.jsonl", NULL);
    {
        const char *argv[] = { server_path, "--backend", fx->backend, "--guest", guest_spec,
                               "--listen", listen, "--password", PASSWORD,
                               fx->record ? "--record" : NULL, fx->trace, NULL };

        fx->server = proc_start(fx, "server", FALSE, server_env(fx), argv);
    }
    if (!wait_polled(fx, cond_server_up, NULL, WAIT_MS) || fx->server->exited) {
        dump_all(fx);
        g_error("vmcmux-server did not come up");
    }
    {
        const char *argv[] = { vdagentd_path, "-x", "-X", "-f", "-u", uinput, "-s",
                               fx->guest_sock, "-S", fx->vd_sock, NULL };

        /* It logs a harmless CRITICAL on FILE_XFER_START with -X (no session info). */
        const char *env[] = { "G_DEBUG", "", NULL };

        fx->vdagentd = proc_start(fx, "vdagentd", FALSE, env, argv);
    }
    if (!wait_polled(fx, cond_path, fx->vd_sock, WAIT_MS)) {
        dump_all(fx);
        g_error("spice-vdagentd did not create %s", fx->vd_sock);
    }
}

static gboolean cond_all_exited(Fixture *fx, gpointer data)
{
    for (guint i = 0; i < fx->procs->len; i++) {
        Proc *p = g_ptr_array_index(fx->procs, i);

        if (!p->exited || !p->eof) {
            return FALSE;
        }
    }
    return TRUE;
}

/* Stops the server with SIGTERM and checks it exits 0 (no sanitizer report). */
static void stop_server(Fixture *fx)
{
    int code;

    proc_kill(fx, fx->server, SIGTERM);
    code = wait_exit(fx, fx->server);
    if (code != 0) {
        dump_all(fx);
        g_error("vmcmux-server exited with %d after SIGTERM", code);
    }
}

static void fixture_teardown(Fixture *fx, gconstpointer data)
{
    if (fx->ctx == NULL) {
        return;
    }
    /* Peers first (the agent chain, then any client), then the server. */
    for (guint i = fx->procs->len; i > 0; i--) {
        Proc *p = g_ptr_array_index(fx->procs, i - 1);

        if (p != fx->server) {
            proc_kill(fx, p, SIGKILL);
        }
    }
    if (!fx->server->exited) {
        proc_kill(fx, fx->server, SIGTERM);
    }
    if (!wait_for(fx, cond_all_exited, NULL, WAIT_MS)) {
        for (guint i = 0; i < fx->procs->len; i++) {
            proc_kill(fx, g_ptr_array_index(fx->procs, i), SIGKILL);
        }
        wait_for(fx, cond_all_exited, NULL, WAIT_MS);
    }
    g_ptr_array_unref(fx->procs);
    /* Let cancelled reads finish before the context goes. */
    while (g_main_context_iteration(fx->ctx, FALSE)) {
    }
    if (g_getenv("VMC_INTEROP_KEEP") == NULL) {
        g_autoptr(GFile) d = g_file_new_for_path(fx->dir);
        g_autoptr(GFileEnumerator) en = g_file_enumerate_children(d, "standard::name",
                                                                  G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS,
                                                                  NULL, NULL);
        GFileInfo *info;

        while (en != NULL && (info = g_file_enumerator_next_file(en, NULL, NULL)) != NULL) {
            g_autofree char *p = g_build_filename(fx->dir, g_file_info_get_name(info), NULL);

            if (g_file_test(p, G_FILE_TEST_IS_DIR)) {
                g_autoptr(GDir) sub = g_dir_open(p, 0, NULL);
                const char *n;

                while (sub != NULL && (n = g_dir_read_name(sub)) != NULL) {
                    g_autofree char *q = g_build_filename(p, n, NULL);

                    g_unlink(q);
                }
                g_rmdir(p);
            } else {
                g_unlink(p);
            }
            g_object_unref(info);
        }
        g_rmdir(fx->dir);
    } else {
        g_test_message("kept %s", fx->dir);
    }
    g_main_context_pop_thread_default(fx->ctx);
    g_main_context_unref(fx->ctx);
    g_free(fx->dir);
    g_free(fx->guest_sock);
    g_free(fx->vd_sock);
    g_free(fx->recv_dir);
    g_free(fx->trace);
}

/* ---- helpers for the cases ---- */

static char *make_file(Fixture *fx, const char *name, gsize size, guint32 seed)
{
    char *path = g_build_filename(fx->dir, name, NULL);
    g_autofree guint32 *buf = g_new(guint32, size / 4 + 1);
    GRand *r = g_rand_new_with_seed(seed);

    for (gsize i = 0; i < size / 4 + 1; i++) {
        buf[i] = g_rand_int(r);
    }
    g_rand_free(r);
    g_assert_true(g_file_set_contents(path, (const char *) buf, (gssize) size, NULL));
    return path;
}

static void assert_same_file(const char *a, const char *b)
{
    g_autofree char *da = NULL;
    g_autofree char *db = NULL;
    gsize la = 0;
    gsize lb = 0;

    g_assert_true(g_file_get_contents(a, &da, &la, NULL));
    if (!g_file_get_contents(b, &db, &lb, NULL)) {
        g_error("received file %s missing", b);
    }
    g_assert_cmpuint(la, ==, lb);
    g_assert_true(memcmp(da, db, la) == 0);
}

static Proc *start_client(Fixture *fx, const char *password, const char *const *steps)
{
    g_autofree char *port = g_strdup_printf("%u", fx->port);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *asan = NULL;
    const char *cur = g_getenv("ASAN_OPTIONS");
    /* GLib abandons its old quark block when spice-gtk and GStreamer register more
     * than 2048 quarks; with fast unwinding LSan cannot attribute it, so leak
     * checking is off for this third-party-heavy helper (the server keeps it). */
    const char *env[] = { "ASAN_OPTIONS", NULL, "G_DEBUG", "", NULL };

    asan = g_strdup_printf("%s%sdetect_leaks=0", cur != NULL ? cur : "",
                           cur != NULL && cur[0] != '\0' ? ":" : "");
    env[1] = asan;
    g_ptr_array_add(argv, (gpointer) client_path);
    g_ptr_array_add(argv, (gpointer) "--host");
    g_ptr_array_add(argv, (gpointer) "127.0.0.1");
    g_ptr_array_add(argv, (gpointer) "--port");
    g_ptr_array_add(argv, port);
    g_ptr_array_add(argv, (gpointer) "--password");
    g_ptr_array_add(argv, (gpointer) password);
    g_ptr_array_add(argv, (gpointer) "--timeout");
    g_ptr_array_add(argv, (gpointer) "120");
    for (guint i = 0; steps[i] != NULL; i++) {
        g_ptr_array_add(argv, (gpointer) steps[i]);
    }
    g_ptr_array_add(argv, NULL);
    return proc_start(fx, "client", TRUE, env, (const char *const *) argv->pdata);
}

static void expect_exit(Fixture *fx, Proc *p, int want)
{
    int code = wait_exit(fx, p);

    if (code != want) {
        dump_all(fx);
        g_error("%s exited with %d, expected %d", p->name, code, want);
    }
}

/* spice-gtk criticals while the scenario runs mean the server fed it something it
 * could not take (its teardown after "done" is not the server's business). */
static void assert_no_client_criticals(Fixture *fx, Proc *client)
{
    for (guint i = 0; i < client->lines->len; i++) {
        const char *l = g_ptr_array_index(client->lines, i);

        if (strcmp(l, "done") == 0) {
            break;
        }
        if (g_str_has_prefix(l, "log critical")) {
            dump_all(fx);
            g_error("spice-gtk logged: %s", l);
        }
    }
}

static double parse_mbps(const char *line)
{
    g_auto(GStrv) f = g_strsplit(line, " ", -1);

    g_assert_cmpuint(g_strv_length(f), ==, 4);
    return g_ascii_strtod(f[3], NULL);
}

/* ---- cases ---- */

/* spice-gtk connects with a password, waits for the agent's caps, copies 64 MiB with
 * spice_main_channel_file_copy_async; it arrives bit-exact on the guest side. */
static void test_copy_big(Fixture *fx, gconstpointer data)
{
    g_autofree char *big = NULL;
    g_autofree char *got = NULL;
    g_autofree char *want_done = g_strdup_printf("file-done big.bin %u", BIG_SIZE);
    const char *done;
    Proc *client;

    if (fx->ctx == NULL) {
        return;
    }
    big = make_file(fx, "big.bin", BIG_SIZE, 64);
    start_agent(fx, NULL, NULL);
    {
        const char *steps[] = { "copy", big, NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, client, "agent-ready");
    done = wait_line(fx, client, "copy-done");
    wait_line(fx, fx->agent, want_done);
    expect_exit(fx, client, 0);
    got = g_build_filename(fx->recv_dir, "big.bin", NULL);
    assert_same_file(big, got);
    assert_no_client_criticals(fx, client);
    g_test_message("64 MiB spice-gtk file copy through %s backend: %.1f MB/s", fx->backend,
                   parse_mbps(done));
    stop_server(fx);
}

/* spice-gtk and the real daemon exchange capabilities through the server, and a
 * file transfer completes with FILE_XFER_STATUS success. */
static void test_caps_and_xfer(Fixture *fx, gconstpointer data)
{
    g_autofree char *small = NULL;
    g_autofree char *got = NULL;
    g_autofree char *want_done = g_strdup_printf("file-done small.bin %u", SMALL_SIZE);
    const char *caps;
    Proc *client;

    if (fx->ctx == NULL) {
        return;
    }
    small = make_file(fx, "small.bin", SMALL_SIZE, 7);
    start_agent(fx, NULL, NULL);
    {
        const char *steps[] = { "caps", "+", "copy", small, NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    caps = wait_line(fx, client, "agent-caps");
    /* spice-vdagentd 0.22's word, unchanged (copy-paste and file transfer allowed):
     * the client saw the daemon's own ANNOUNCE_CAPABILITIES. */
    g_assert_true(g_str_has_prefix(caps, "agent-caps 0x00038de7"));
    wait_line(fx, client, "copy-done");
    wait_line(fx, fx->agent, "file-start");
    wait_line(fx, fx->agent, want_done);
    expect_exit(fx, client, 0);
    got = g_build_filename(fx->recv_dir, "small.bin", NULL);
    assert_same_file(small, got);
    /* The daemon tells its session agent CLIENT_DISCONNECTED only for a client whose
     * caps (request=1) it received; it learns of the disconnect from the server's
     * VD_AGENT_CLIENT_DISCONNECTED on port 2. Both are shown by this line. */
    wait_line(fx, fx->agent, "client-disconnected");
    assert_no_client_criticals(fx, client);
    stop_server(fx);
}

/* Clipboard grab -> request -> data, client to guest and guest to client. */
static void test_clipboard(Fixture *fx, gconstpointer data)
{
    const char *text_c = "from the client: caf\xc3\xa9 \xe2\x9c\x93";
    /* one line: the stand-in's stdin protocol is line based */
    const char *text_g = "from the guest: \xc3\xa9t\xc3\xa9 \"quoted\"";
    g_autofree char *esc_c = g_strescape(text_c, NULL);
    g_autofree char *esc_g = g_strescape(text_g, NULL);
    g_autofree char *want_c = g_strdup_printf("clipboard-data 0 1 %s", esc_c);
    g_autofree char *want_g = g_strdup_printf("clipboard-data 0 1 %s", esc_g);
    g_autofree char *grab_cmd = g_strdup_printf("grab %s", text_g);
    const char *line;
    Proc *client;

    if (fx->ctx == NULL) {
        return;
    }
    start_agent(fx, NULL, NULL);

    /* client -> guest */
    {
        const char *steps[] = { "clipboard-grab", text_c, "+", "wait-stdin", NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, fx->agent, "clipboard-grab 0 1");   /* GRAB reached the session */
    wait_line(fx, client, "clipboard-request 0 1");   /* its REQUEST reached the client */
    line = wait_line(fx, fx->agent, "clipboard-data 0 1");
    g_assert_cmpstr(line, ==, want_c);
    proc_send(client, "next");
    expect_exit(fx, client, 0);
    assert_no_client_criticals(fx, client);

    /* guest -> client */
    {
        const char *steps[] = { "clipboard-wait", NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, client, "agent-ready");
    proc_send(fx->agent, grab_cmd);
    wait_line(fx, client, "clipboard-grab 0 1");
    wait_line(fx, fx->agent, "clipboard-request 0 1");
    line = wait_line(fx, client, "clipboard-data 0 1");
    g_assert_cmpstr(line, ==, want_g);
    expect_exit(fx, client, 0);
    assert_no_client_criticals(fx, client);
    stop_server(fx);
}

/* A wrong password is refused; the server stays up and the right one works. */
static void test_wrong_password(Fixture *fx, gconstpointer data)
{
    Proc *client;
    const char *steps[] = { "caps", NULL };

    if (fx->ctx == NULL) {
        return;
    }
    start_agent(fx, NULL, NULL);
    client = start_client(fx, "not-the-password", steps);
    expect_exit(fx, client, 3);
    g_assert_true(proc_has_line(client, "auth-failed"));
    g_assert_false(proc_has_line(client, "agent-ready"));
    g_assert_false(fx->server->exited);

    client = start_client(fx, PASSWORD, steps);
    wait_line(fx, client, "agent-caps");
    expect_exit(fx, client, 0);
    stop_server(fx);
}

/* The agent restarts in the middle of a transfer: the client is told, that transfer
 * fails cleanly, the next one (same client) works and arrives bit-exact. */
static void test_agent_restart(Fixture *fx, gconstpointer data)
{
    g_autofree char *big = NULL;
    g_autofree char *small = NULL;
    g_autofree char *got = NULL;
    g_autofree char *stall = g_strdup_printf("%u", STALL_AT);
    g_autofree char *want_done = g_strdup_printf("file-done small.bin %u", SMALL_SIZE);
    Proc *client;
    Proc *old_agent;

    if (fx->ctx == NULL) {
        return;
    }
    big = make_file(fx, "big.bin", BIG_SIZE / 2, 11);
    small = make_file(fx, "small.bin", SMALL_SIZE, 12);
    start_agent(fx, "--stall-after", stall);
    {
        /* spice-vdagentd fails the transfer itself (STATUS) when its session agent
         * goes, then closes the port: wait for the latter before the next copy. */
        const char *steps[] = { "copy-fail", big, "+", "wait-agent-gone", "+", "copy", small,
                                NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, client, "agent-ready");
    wait_line(fx, fx->agent, "file-stalled");
    /* The session agent dies: spice-vdagentd closes the port. */
    old_agent = fx->agent;
    proc_kill(fx, old_agent, SIGKILL);
    /* spice-gtk fails the task and drops agent-connected in one handler; the two lines
     * come in either order. */
    wait_line(fx, client, "copy-failed");
    wait_seen(fx, client, "agent-disconnected");
    wait_exit(fx, old_agent);

    /* A new session agent: the daemon reopens the port, the same client continues. */
    start_agent(fx, NULL, NULL);
    wait_line(fx, client, "agent-ready");
    wait_line(fx, client, "copy-done");
    wait_line(fx, fx->agent, want_done);
    expect_exit(fx, client, 0);
    got = g_build_filename(fx->recv_dir, "small.bin", NULL);
    assert_same_file(small, got);
    g_assert_false(fx->vdagentd->exited);
    stop_server(fx);
}

/* A client disconnects in the middle of a message: the agent gets CLIENT_DISCONNECTED
 * (port 2) and drops its partial state; the next client works. */
static void test_client_disconnect(Fixture *fx, gconstpointer data)
{
    g_autofree char *big = NULL;
    g_autofree char *small = NULL;
    g_autofree char *got = NULL;
    g_autofree char *at = g_strdup_printf("%u", STALL_AT);
    g_autofree char *want_done = g_strdup_printf("file-done small.bin %u", SMALL_SIZE);
    Proc *client;

    if (fx->ctx == NULL) {
        return;
    }
    big = make_file(fx, "big.bin", BIG_SIZE, 21);
    small = make_file(fx, "small.bin", SMALL_SIZE, 22);
    start_agent(fx, "--progress-at", at);
    {
        const char *steps[] = { "copy", big, NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, fx->agent, "file-progress");
    proc_kill(fx, client, SIGKILL);
    wait_exit(fx, client);
    wait_line(fx, fx->agent, "client-disconnected");
    g_assert_false(proc_has_line(fx->agent, "file-done big.bin"));

    {
        const char *steps[] = { "copy", small, NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, client, "copy-done");
    wait_line(fx, fx->agent, want_done);
    expect_exit(fx, client, 0);
    got = g_build_filename(fx->recv_dir, "small.bin", NULL);
    assert_same_file(small, got);
    g_assert_false(fx->vdagentd->exited);
    assert_no_client_criticals(fx, client);
    stop_server(fx);
}

/* A guest that breaks the chunk framing is dropped (its connection closes), the server
 * stays up without tripping libspice-server's remove_interface assertion, and the real
 * daemon connecting afterwards works. */
static void test_guest_protocol_error(Fixture *fx, gconstpointer data)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct timeval tv = { WAIT_MS / 1000, 0 };
    /* chunk {port 7, size 20} + a well-formed agent header: only the port is wrong */
    static const guint8 bad[] = { 7, 0, 0, 0, 20, 0, 0, 0,
                                  1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    g_autofree char *small = NULL;
    g_autofree char *got = NULL;
    g_autofree char *err = NULL;
    g_autofree char *want_done = g_strdup_printf("file-done small.bin %u", SMALL_SIZE);
    guint8 buf[256];
    ssize_t n;
    int fd;
    Proc *client;

    if (fx->ctx == NULL) {
        return;
    }
    small = make_file(fx, "small.bin", SMALL_SIZE, 31);
    g_assert_cmpuint(strlen(fx->guest_sock), <, sizeof(sun.sun_path));
    memcpy(sun.sun_path, fx->guest_sock, strlen(fx->guest_sock) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(connect(fd, (struct sockaddr *) &sun, sizeof(sun)), ==, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), ==, 0);
    g_assert_cmpint(write(fd, bad, sizeof(bad)), ==, (ssize_t) sizeof(bad));
    /* The server answers nothing and closes: EOF (or a reset), never a timeout. */
    do {
        n = read(fd, buf, sizeof(buf));
    } while (n > 0 || (n < 0 && errno == EINTR));
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        dump_all(fx);
        g_error("the server kept a guest that sent chunk port 7");
    }
    close(fd);
    g_assert_false(fx->server->exited);

    start_agent(fx, NULL, NULL);
    {
        const char *steps[] = { "copy", small, NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, client, "copy-done");
    wait_line(fx, fx->agent, want_done);
    expect_exit(fx, client, 0);
    got = g_build_filename(fx->recv_dir, "small.bin", NULL);
    assert_same_file(small, got);
    stop_server(fx);
    g_assert_true(g_file_get_contents(fx->server->err_path, &err, NULL, NULL));
    if (strstr(err, "CRITICAL") != NULL) {
        dump_all(fx);
        g_error("the server logged a critical");
    }
}

#ifdef HAVE_JSON_GLIB
typedef struct {
    char *event;
    char *dir;
    gint64 client;
    gint64 port;
    char *name;
    GBytes *data;
} TraceLine;

static void trace_line_free(gpointer p)
{
    TraceLine *t = p;

    g_free(t->event);
    g_free(t->dir);
    g_free(t->name);
    if (t->data != NULL) {
        g_bytes_unref(t->data);
    }
    g_free(t);
}

static GPtrArray *read_trace(const char *path)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    GPtrArray *out = g_ptr_array_new_with_free_func(trace_line_free);

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        JsonObject *o;
        TraceLine *t;

        if (lines[i][0] == '\0') {
            continue;
        }
        json_parser_load_from_data(parser, lines[i], -1, &error);
        g_assert_no_error(error);
        o = json_node_get_object(json_parser_get_root(parser));
        t = g_new0(TraceLine, 1);
        t->event = g_strdup(json_object_get_string_member_with_default(o, "event", ""));
        t->dir = g_strdup(json_object_get_string_member_with_default(o, "dir", ""));
        t->client = json_object_get_int_member_with_default(o, "client", -1);
        t->port = json_object_get_int_member_with_default(o, "port", -1);
        t->name = g_strdup(json_object_get_string_member_with_default(o, "name", ""));
        if (json_object_has_member(o, "data")) {
            gsize len = 0;
            guchar *d = g_base64_decode(json_object_get_string_member(o, "data"), &len);

            t->data = g_bytes_new_take(d, len);
        }
        g_ptr_array_add(out, t);
    }
    return out;
}

/* Index of the first line from `from` matching; -1 if none. */
static gint find_trace(GPtrArray *tr, guint from, const char *event, const char *dir,
                       gint64 client, gint64 port, const char *name)
{
    for (guint i = from; i < tr->len; i++) {
        TraceLine *t = g_ptr_array_index(tr, i);

        if (strcmp(t->event, event) == 0 && (dir == NULL || strcmp(t->dir, dir) == 0) &&
            (client < 0 || t->client == client) && (port < 0 || t->port == port) &&
            (name == NULL || strcmp(t->name, name) == 0)) {
            return (gint) i;
        }
    }
    return -1;
}

/* --record: the trace holds the caps exchange, the whole transfer as whole agent
 * messages (file bytes recoverable from FILE_XFER_DATA) and the lifecycle. */
static void test_record(Fixture *fx, gconstpointer data)
{
    g_autofree char *small = NULL;
    g_autofree char *want = NULL;
    g_autofree char *want_done = g_strdup_printf("file-done small.bin %u", SMALL_SIZE);
    g_autoptr(GPtrArray) tr = NULL;
    g_autoptr(GByteArray) file = g_byte_array_new();
    gsize want_len = 0;
    gint i;
    Proc *client;

    if (fx->ctx == NULL) {
        return;
    }
    small = make_file(fx, "small.bin", SMALL_SIZE, 41);
    start_agent(fx, NULL, NULL);
    {
        const char *steps[] = { "copy", small, NULL };

        client = start_client(fx, PASSWORD, steps);
    }
    wait_line(fx, client, "copy-done");
    wait_line(fx, fx->agent, want_done);
    expect_exit(fx, client, 0);
    wait_line(fx, fx->agent, "client-disconnected");
    stop_server(fx);

    tr = read_trace(fx->trace);
    g_assert_cmpuint(tr->len, >, 0);
    g_assert_cmpstr(((TraceLine *) g_ptr_array_index(tr, 0))->event, ==, "trace");
    g_assert_cmpint(find_trace(tr, 0, "agent-connect", NULL, -1, -1, NULL), >, 0);
    i = find_trace(tr, 0, "client-connect", NULL, 1, -1, NULL);
    g_assert_cmpint(i, >, 0);
    g_assert_cmpint(find_trace(tr, (guint) i, "msg", "client-agent", 1, 1,
                               "ANNOUNCE_CAPABILITIES"), >, 0);
    g_assert_cmpint(find_trace(tr, (guint) i, "msg", "agent-client", -1, 1,
                               "ANNOUNCE_CAPABILITIES"), >, 0);
    i = find_trace(tr, (guint) i, "msg", "client-agent", 1, 1, "FILE_XFER_START");
    g_assert_cmpint(i, >, 0);
    for (guint k = (guint) i; k < tr->len; k++) {
        TraceLine *t = g_ptr_array_index(tr, k);
        gsize len = 0;
        const guint8 *d;

        if (strcmp(t->event, "msg") != 0 || strcmp(t->name, "FILE_XFER_DATA") != 0) {
            continue;
        }
        g_assert_cmpstr(t->dir, ==, "client-agent");
        d = g_bytes_get_data(t->data, &len);
        g_assert_cmpuint(len, >=, 12);
        g_byte_array_append(file, d + 12, (guint) (len - 12));
    }
    g_assert_true(g_file_get_contents(small, &want, &want_len, NULL));
    g_assert_cmpuint(file->len, ==, want_len);
    g_assert_true(memcmp(file->data, want, want_len) == 0);
    i = find_trace(tr, (guint) i, "msg", "agent-client", -1, 1, "FILE_XFER_STATUS");
    g_assert_cmpint(i, >, 0);
    /* libspice-server tells the agent before it reports the channel gone: either order. */
    g_assert_cmpint(find_trace(tr, (guint) i, "client-disconnect", NULL, 1, -1, NULL), >, 0);
    g_assert_cmpint(find_trace(tr, (guint) i, "msg", "server-agent", 0, 2,
                               "CLIENT_DISCONNECTED"), >, 0);
}
#endif

static char *find_vdagentd(void)
{
    const char *env = g_getenv("VMC_VDAGENTD");
    char *p;

    if (env != NULL) {
        return g_strdup(env);
    }
    p = g_find_program_in_path("spice-vdagentd");
    if (p == NULL && g_file_test("/usr/sbin/spice-vdagentd", G_FILE_TEST_IS_EXECUTABLE)) {
        p = g_strdup("/usr/sbin/spice-vdagentd");
    }
    return p;
}

int main(int argc, char **argv)
{
    static const char *const backends[] = { "native", "spice-server" };
    const char *want = g_getenv("VMC_INTEROP_BACKEND");
    static const struct {
        const char *name;
        void (*func)(Fixture *, gconstpointer);
        gboolean record;
    } cases[] = {
        { "copy-64m", test_copy_big, FALSE },
        { "caps-and-xfer", test_caps_and_xfer, FALSE },
        { "clipboard", test_clipboard, FALSE },
        { "wrong-password", test_wrong_password, FALSE },
        { "agent-restart", test_agent_restart, FALSE },
        { "client-disconnect", test_client_disconnect, FALSE },
        { "guest-protocol-error", test_guest_protocol_error, FALSE },
#ifdef HAVE_JSON_GLIB
        { "record", test_record, TRUE },
#endif
    };
    g_autoptr(GPtrArray) datas = g_ptr_array_new_with_free_func(g_free);
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_test_summary("vmcmux-server between spice-gtk and spice-vdagentd, per backend");

    server_path = g_getenv("VMC_SERVER");
    if (server_path != NULL && server_path[0] == '\0') {
        server_path = NULL;
    }
    client_path = g_getenv("VMC_GTK_CLIENT");
    agent_path = g_getenv("VMC_SESSION_AGENT");
    g_assert_nonnull(client_path);
    g_assert_nonnull(agent_path);
    vdagentd_path = find_vdagentd();

    for (guint b = 0; b < G_N_ELEMENTS(backends); b++) {
        if (want != NULL && strcmp(want, "all") != 0 && strcmp(want, backends[b]) != 0) {
            continue;
        }
        for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
            g_autofree char *path = g_strdup_printf("/interop/%s/%s", backends[b], cases[i].name);
            CaseData *cd = g_new0(CaseData, 1);

            cd->backend = backends[b];
            cd->record = cases[i].record;
            g_ptr_array_add(datas, cd);
            g_test_add(path, Fixture, cd, fixture_setup, cases[i].func, fixture_teardown);
        }
    }
    ret = g_test_run();
    g_free(vdagentd_path);
    return ret;
}
