/* share-util.h — process plumbing for the shared-session cases (test-share.c) and
 * the multi-client benchmark (bench-share.c): vmcmux-server --max-clients N, the
 * real spice-vdagentd, the session-agent stand-in and any number of spice-gtk
 * clients, each a child with line-oriented stdout that the driver waits on with
 * bounded timeouts on a private GMainContext. Header-only (static), one per driver.
 *
 * Environment: VMC_SERVER (unset or empty: skip), VMC_GTK_CLIENT, VMC_SESSION_AGENT,
 * VMC_VDAGENTD (default: spice-vdagentd from PATH or /usr/sbin), VMC_INTEROP_KEEP=1
 * keeps the temporary directories.
 */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SU_UNUSED G_GNUC_UNUSED
#define SU_WAIT_MS 60000 /* one condition; generous for sanitizer builds */

typedef struct {
    char *name;
    GSubprocess *proc;
    GDataInputStream *out;
    GOutputStream *in;
    GPtrArray *lines; /* char*, everything read so far */
    guint cursor;     /* next line su_wait_line() looks at */
    gboolean eof;
    gboolean exited;
    int status;
    char *err_path;
    GCancellable *cancel;
} SuProc;

typedef struct {
    const char *server_path;
    const char *client_path;
    const char *agent_path;
    char *vdagentd_path;
    GMainContext *ctx;
    char *dir;
    char *guest_sock;
    char *vd_sock;
    char *recv_dir;
    guint16 port;
    GPtrArray *procs; /* SuProc*, in start order */
    SuProc *server;
    SuProc *vdagentd;
    SuProc *agent;
    gboolean skipped;
} SuFix;

static void su_read_next(SuProc *p);

static void
su_on_line(GObject *src, GAsyncResult *res, gpointer user_data)
{
    SuProc *p = user_data;
    g_autoptr(GError) error = NULL;
    char *line = g_data_input_stream_read_line_finish_utf8(G_DATA_INPUT_STREAM(src), res, NULL,
                                                           &error);

    if (line == NULL) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            p->eof = TRUE;
        return;
    }
    if (g_test_verbose())
        g_printerr("[%s] %s\n", p->name, line);
    g_ptr_array_add(p->lines, line);
    su_read_next(p);
}

static void
su_read_next(SuProc *p)
{
    g_data_input_stream_read_line_async(p->out, G_PRIORITY_DEFAULT, p->cancel, su_on_line, p);
}

static void
su_on_exit(GObject *src, GAsyncResult *res, gpointer user_data)
{
    SuProc *p = user_data;

    g_subprocess_wait_finish(G_SUBPROCESS(src), res, NULL);
    if (g_subprocess_get_if_exited(G_SUBPROCESS(src)) ||
        g_subprocess_get_if_signaled(G_SUBPROCESS(src))) {
        p->exited = TRUE;
        p->status = g_subprocess_get_status(G_SUBPROCESS(src));
    }
}

static void
su_proc_free(SuProc *p)
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

static void
su_dump(SuFix *fx)
{
    for (guint i = 0; i < fx->procs->len; i++) {
        SuProc *p = g_ptr_array_index(fx->procs, i);
        g_autofree char *err = NULL;

        g_printerr("---- %s: stdout\n", p->name);
        for (guint k = 0; k < p->lines->len; k++)
            g_printerr("%s\n", (char *)g_ptr_array_index(p->lines, k));
        if (g_file_get_contents(p->err_path, &err, NULL, NULL) && err[0] != '\0') {
            gsize len = strlen(err);

            g_printerr("---- %s: stderr (tail)\n%s\n", p->name,
                       len > 6000 ? err + len - 6000 : err);
        }
    }
}

typedef gboolean (*SuCond)(SuFix *fx, gpointer data);

static gboolean
su_on_deadline(gpointer user_data)
{
    *(gboolean *)user_data = TRUE;
    return G_SOURCE_REMOVE;
}

static gboolean
su_wait_for(SuFix *fx, SuCond cond, gpointer data, guint ms)
{
    gboolean expired = FALSE;
    GSource *t = g_timeout_source_new(ms);
    gboolean ok;

    g_source_set_callback(t, su_on_deadline, &expired, NULL);
    g_source_attach(t, fx->ctx);
    while (!(ok = cond(fx, data)) && !expired)
        g_main_context_iteration(fx->ctx, TRUE);
    g_source_destroy(t);
    g_source_unref(t);
    return ok;
}

static gboolean
su_on_tick(gpointer user_data)
{
    return G_SOURCE_CONTINUE; /* wakes the loop so a polled condition is re-checked */
}

static gboolean
su_wait_polled(SuFix *fx, SuCond cond, gpointer data, guint ms)
{
    GSource *tick = g_timeout_source_new(10);
    gboolean ok;

    g_source_set_callback(tick, su_on_tick, NULL, NULL);
    g_source_attach(tick, fx->ctx);
    ok = su_wait_for(fx, cond, data, ms);
    g_source_destroy(tick);
    g_source_unref(tick);
    return ok;
}

typedef struct {
    SuProc *p;
    const char *prefix;
    const char *found;
} SuLineWait;

static gboolean
su_cond_line(SuFix *fx, gpointer data)
{
    SuLineWait *w = data;

    for (guint i = w->p->cursor; i < w->p->lines->len; i++) {
        const char *l = g_ptr_array_index(w->p->lines, i);

        if (g_str_has_prefix(l, w->prefix)) {
            w->p->cursor = i + 1;
            w->found = l;
            return TRUE;
        }
    }
    return w->p->exited && w->p->eof;
}

/* The next line of `p` starting with `prefix` (the cursor moves past it); fails
 * the case with every log dumped when it does not come. */
static SU_UNUSED const char *
su_wait_line(SuFix *fx, SuProc *p, const char *prefix)
{
    SuLineWait w = { p, prefix, NULL };

    su_wait_for(fx, su_cond_line, &w, SU_WAIT_MS);
    if (w.found == NULL) {
        su_dump(fx);
        g_error("%s: no line '%s...' (exited=%d)", p->name, prefix, p->exited);
    }
    return w.found;
}

typedef struct {
    SuProc *p;
    const char *prefix;
} SuSeenWait;

static gboolean
su_cond_seen(SuFix *fx, gpointer data)
{
    SuSeenWait *w = data;

    for (guint i = 0; i < w->p->lines->len; i++)
        if (g_str_has_prefix(g_ptr_array_index(w->p->lines, i), w->prefix))
            return TRUE;
    return w->p->exited && w->p->eof;
}

/* Waits until any line of `p`, earlier ones included, starts with `prefix`; the
 * cursor of su_wait_line() does not move. */
static SU_UNUSED void
su_wait_seen(SuFix *fx, SuProc *p, const char *prefix)
{
    SuSeenWait w = { p, prefix };

    su_wait_for(fx, su_cond_seen, &w, SU_WAIT_MS);
    for (guint i = 0; i < p->lines->len; i++)
        if (g_str_has_prefix(g_ptr_array_index(p->lines, i), prefix))
            return;
    su_dump(fx);
    g_error("%s: no line '%s...' (exited=%d)", p->name, prefix, p->exited);
}

static SU_UNUSED guint
su_count_lines(SuProc *p, const char *prefix)
{
    guint n = 0;

    for (guint i = 0; i < p->lines->len; i++)
        n += g_str_has_prefix(g_ptr_array_index(p->lines, i), prefix);
    return n;
}

typedef struct {
    SuProc *p;
    const char *prefix;
    guint n;
} SuCountWait;

static gboolean
su_cond_count(SuFix *fx, gpointer data)
{
    SuCountWait *w = data;

    return su_count_lines(w->p, w->prefix) >= w->n || (w->p->exited && w->p->eof);
}

/* Waits until `n` lines of `p` (earlier ones included) start with `prefix`. */
static SU_UNUSED void
su_wait_count(SuFix *fx, SuProc *p, const char *prefix, guint n)
{
    SuCountWait w = { p, prefix, n };

    su_wait_for(fx, su_cond_count, &w, SU_WAIT_MS);
    if (su_count_lines(p, prefix) < n) {
        su_dump(fx);
        g_error("%s: fewer than %u lines '%s...' (exited=%d)", p->name, n, prefix, p->exited);
    }
}

/* Index of the first line with `prefix`, or -1. */
static SU_UNUSED gint
su_line_index(SuProc *p, const char *prefix)
{
    for (guint i = 0; i < p->lines->len; i++)
        if (g_str_has_prefix(g_ptr_array_index(p->lines, i), prefix))
            return (gint)i;
    return -1;
}

static gboolean
su_cond_exited(SuFix *fx, gpointer data)
{
    SuProc *p = data;

    return p->exited && p->eof;
}

/* Exit code, or 128 + signal. */
static SU_UNUSED int
su_wait_exit(SuFix *fx, SuProc *p)
{
    if (!su_wait_for(fx, su_cond_exited, p, SU_WAIT_MS)) {
        su_dump(fx);
        g_error("%s did not exit", p->name);
    }
    if (WIFEXITED(p->status))
        return WEXITSTATUS(p->status);
    return 128 + WTERMSIG(p->status);
}

static SU_UNUSED void
su_expect_exit(SuFix *fx, SuProc *p, int want)
{
    int code = su_wait_exit(fx, p);

    if (code != want) {
        su_dump(fx);
        g_error("%s exited with %d, expected %d", p->name, code, want);
    }
}

/* In the child: die with the driver (a failed assertion skips the teardown). */
static void
su_child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static SuProc *
su_start(SuFix *fx, const char *name, gboolean want_stdin, const char *const *env_set,
         const char *const *argv)
{
    g_autoptr(GSubprocessLauncher) l = NULL;
    g_autoptr(GError) error = NULL;
    SuProc *p = g_new0(SuProc, 1);

    p->name = g_strdup(name);
    p->lines = g_ptr_array_new_with_free_func(g_free);
    p->cancel = g_cancellable_new();
    p->err_path = g_strdup_printf("%s/%s.%u.err", fx->dir, name, fx->procs->len);
    l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                  (want_stdin ? G_SUBPROCESS_FLAGS_STDIN_PIPE
                                              : G_SUBPROCESS_FLAGS_NONE));
    g_subprocess_launcher_set_stderr_file_path(l, p->err_path);
    g_subprocess_launcher_set_child_setup(l, su_child_setup, NULL, NULL);
    for (guint i = 0; env_set != NULL && env_set[i] != NULL; i += 2) {
        if (env_set[i + 1] != NULL)
            g_subprocess_launcher_setenv(l, env_set[i], env_set[i + 1], TRUE);
        else
            g_subprocess_launcher_unsetenv(l, env_set[i]);
    }
    p->proc = g_subprocess_launcher_spawnv(l, argv, &error);
    g_assert_no_error(error);
    p->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p->proc));
    p->in = want_stdin ? g_subprocess_get_stdin_pipe(p->proc) : NULL;
    g_ptr_array_add(fx->procs, p);
    su_read_next(p);
    g_subprocess_wait_async(p->proc, NULL, su_on_exit, p);
    return p;
}

static SU_UNUSED void
su_send(SuProc *p, const char *line)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *l = g_strconcat(line, "\n", NULL);

    g_assert_nonnull(p->in);
    g_output_stream_write_all(p->in, l, strlen(l), NULL, NULL, &error);
    g_assert_no_error(error);
    g_output_stream_flush(p->in, NULL, NULL);
}

static SU_UNUSED void
su_kill(SuProc *p, int sig)
{
    if (!p->exited)
        g_subprocess_send_signal(p->proc, sig);
}

static guint16
su_free_port(void)
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

static gboolean
su_cond_path(SuFix *fx, gpointer data)
{
    return g_file_test(data, G_FILE_TEST_EXISTS);
}

static gboolean
su_cond_server_up(SuFix *fx, gpointer data)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    int fd;
    gboolean ok;

    if (fx->server->exited || !g_file_test(fx->guest_sock, G_FILE_TEST_EXISTS))
        return fx->server->exited;
    sa.sin_port = htons(fx->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static char *
su_find_vdagentd(void)
{
    const char *env = g_getenv("VMC_VDAGENTD");
    char *p;

    if (env != NULL)
        return g_strdup(env);
    p = g_find_program_in_path("spice-vdagentd");
    if (p == NULL && g_file_test("/usr/sbin/spice-vdagentd", G_FILE_TEST_IS_EXECUTABLE))
        p = g_strdup("/usr/sbin/spice-vdagentd");
    return p;
}

/* Starts the server (native backend, no password, up to max_clients) and the
 * daemon; FALSE (fx->skipped) when a program is missing. */
static SU_UNUSED gboolean
su_setup(SuFix *fx, guint max_clients, const char *agent_window)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *guest_spec = NULL;
    g_autofree char *listen = NULL;
    g_autofree char *uinput = NULL;
    g_autofree char *maxc = g_strdup_printf("%u", max_clients);

    memset(fx, 0, sizeof(*fx));
    fx->server_path = g_getenv("VMC_SERVER");
    fx->client_path = g_getenv("VMC_GTK_CLIENT");
    fx->agent_path = g_getenv("VMC_SESSION_AGENT");
    fx->vdagentd_path = su_find_vdagentd();
    if (fx->server_path == NULL || fx->server_path[0] == '\0' || fx->client_path == NULL ||
        fx->agent_path == NULL || fx->vdagentd_path == NULL) {
        fx->skipped = TRUE;
        return FALSE;
    }
    fx->ctx = g_main_context_new();
    g_main_context_push_thread_default(fx->ctx);
    fx->procs = g_ptr_array_new_with_free_func((GDestroyNotify)su_proc_free);
    fx->dir = g_dir_make_tmp("vmc-share-XXXXXX", &error);
    g_assert_no_error(error);
    fx->guest_sock = g_build_filename(fx->dir, "guest.sock", NULL);
    fx->vd_sock = g_build_filename(fx->dir, "vdagentd.sock", NULL);
    fx->recv_dir = g_build_filename(fx->dir, "recv", NULL);
    uinput = g_build_filename(fx->dir, "uinput", NULL);
    g_assert_true(g_file_set_contents(uinput, "", 0, NULL));
    fx->port = su_free_port();
    guest_spec = g_strdup_printf("unix:%s", fx->guest_sock);
    listen = g_strdup_printf("127.0.0.1:%u", fx->port);
    {
        const char *argv[] = { fx->server_path, "--backend", "native", "--guest", guest_spec,
                               "--listen", listen, "--disable-ticketing", "--max-clients",
                               maxc, agent_window ? "--agent-window" : NULL, agent_window,
                               NULL };

        fx->server = su_start(fx, "server", FALSE, NULL, argv);
    }
    if (!su_wait_polled(fx, su_cond_server_up, NULL, SU_WAIT_MS) || fx->server->exited) {
        su_dump(fx);
        g_error("vmcmux-server did not come up");
    }
    {
        const char *argv[] = { fx->vdagentd_path, "-x", "-X", "-f", "-u", uinput, "-s",
                               fx->guest_sock, "-S", fx->vd_sock, NULL };
        /* it logs a harmless CRITICAL on FILE_XFER_START with -X (no session info) */
        const char *env[] = { "G_DEBUG", "", NULL };

        fx->vdagentd = su_start(fx, "vdagentd", FALSE, env, argv);
    }
    if (!su_wait_polled(fx, su_cond_path, fx->vd_sock, SU_WAIT_MS)) {
        su_dump(fx);
        g_error("spice-vdagentd did not create %s", fx->vd_sock);
    }
    return TRUE;
}

static SU_UNUSED void
su_start_agent(SuFix *fx, const char *opt, const char *val)
{
    const char *argv[] = { fx->agent_path, "--socket", fx->vd_sock, "--dir", fx->recv_dir, opt,
                           val, NULL };

    fx->agent = su_start(fx, "agent", TRUE, NULL, argv);
    su_wait_line(fx, fx->agent, "connected");
}

/* A spice-gtk client running `steps` (vmc-gtk-client syntax). */
static SU_UNUSED SuProc *
su_start_client(SuFix *fx, const char *name, const char *const *steps)
{
    g_autofree char *port = g_strdup_printf("%u", fx->port);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *asan = NULL;
    const char *cur = g_getenv("ASAN_OPTIONS");
    /* as in test-interop.c: GLib's abandoned quark block defeats LSan here */
    const char *env[] = { "ASAN_OPTIONS", NULL, "G_DEBUG", "", NULL };

    asan = g_strdup_printf("%s%sdetect_leaks=0", cur != NULL ? cur : "",
                           cur != NULL && cur[0] != '\0' ? ":" : "");
    env[1] = asan;
    g_ptr_array_add(argv, (gpointer)fx->client_path);
    g_ptr_array_add(argv, (gpointer) "--host");
    g_ptr_array_add(argv, (gpointer) "127.0.0.1");
    g_ptr_array_add(argv, (gpointer) "--port");
    g_ptr_array_add(argv, port);
    g_ptr_array_add(argv, (gpointer) "--timeout");
    g_ptr_array_add(argv, (gpointer) "120");
    for (guint i = 0; steps[i] != NULL; i++)
        g_ptr_array_add(argv, (gpointer)steps[i]);
    g_ptr_array_add(argv, NULL);
    return su_start(fx, name, TRUE, env, (const char *const *)argv->pdata);
}

#define SU_BLOCK (1024u * 1024u)

/* A file of `size` pseudo-random bytes, written in blocks. */
static SU_UNUSED char *
su_make_file(SuFix *fx, const char *name, gsize size, guint32 seed)
{
    char *path = g_build_filename(fx->dir, name, NULL);
    g_autofree guint32 *buf = g_new(guint32, SU_BLOCK / 4);
    GRand *r = g_rand_new_with_seed(seed);
    FILE *f = fopen(path, "wb");
    gsize done = 0;

    g_assert_nonnull(f);
    while (done < size) {
        gsize n = MIN((gsize)SU_BLOCK, size - done);

        for (gsize i = 0; i < (n + 3) / 4; i++)
            buf[i] = g_rand_int(r);
        g_assert_cmpuint(fwrite(buf, 1, n, f), ==, n);
        done += n;
    }
    g_assert_cmpint(fclose(f), ==, 0);
    g_rand_free(r);
    return path;
}

/* The guest-side copy of `sent` is bit-exact (compared block by block). */
static SU_UNUSED void
su_assert_received(SuFix *fx, const char *sent, const char *name)
{
    g_autofree char *got = g_build_filename(fx->recv_dir, name, NULL);
    g_autofree guint8 *ba = g_malloc(SU_BLOCK);
    g_autofree guint8 *bb = g_malloc(SU_BLOCK);
    FILE *fa = fopen(sent, "rb");
    FILE *fb = fopen(got, "rb");
    guint64 off = 0;
    gboolean same = fa != NULL && fb != NULL;

    while (same) {
        gsize na = fread(ba, 1, SU_BLOCK, fa);
        gsize nb = fread(bb, 1, SU_BLOCK, fb);

        same = na == nb && memcmp(ba, bb, na) == 0;
        off += MIN(na, nb);
        if (na == 0 || nb == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    if (!same) {
        su_dump(fx);
        g_error("%s: the guest's copy is missing or differs (at byte %" G_GUINT64_FORMAT ")", name,
                off);
    }
}

/* spice-gtk criticals while the scenario ran (its teardown after "done" aside). */
static SU_UNUSED void
su_assert_no_criticals(SuFix *fx, SuProc *client)
{
    for (guint i = 0; i < client->lines->len; i++) {
        const char *l = g_ptr_array_index(client->lines, i);

        if (strcmp(l, "done") == 0)
            break;
        if (g_str_has_prefix(l, "log critical")) {
            su_dump(fx);
            g_error("%s: spice-gtk logged: %s", client->name, l);
        }
    }
}

/* The server exits 0 on SIGTERM (under ASan: no leak). */
static SU_UNUSED void
su_stop_server(SuFix *fx)
{
    int code;

    su_kill(fx->server, SIGTERM);
    code = su_wait_exit(fx, fx->server);
    if (code != 0) {
        su_dump(fx);
        g_error("vmcmux-server exited with %d after SIGTERM", code);
    }
}

static gboolean
su_cond_all_exited(SuFix *fx, gpointer data)
{
    for (guint i = 0; i < fx->procs->len; i++) {
        SuProc *p = g_ptr_array_index(fx->procs, i);

        if (!p->exited || !p->eof)
            return FALSE;
    }
    return TRUE;
}

static void
su_rm_tree(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, n, NULL);

        if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK))
            su_rm_tree(p);
        else
            g_unlink(p);
    }
    g_rmdir(dir);
}

static SU_UNUSED void
su_teardown(SuFix *fx)
{
    if (fx->ctx == NULL) {
        g_free(fx->vdagentd_path);
        return;
    }
    /* peers first, then the server */
    for (guint i = fx->procs->len; i > 0; i--) {
        SuProc *p = g_ptr_array_index(fx->procs, i - 1);

        if (p != fx->server)
            su_kill(p, SIGKILL);
    }
    if (!fx->server->exited)
        su_kill(fx->server, SIGTERM);
    if (!su_wait_for(fx, su_cond_all_exited, NULL, SU_WAIT_MS)) {
        for (guint i = 0; i < fx->procs->len; i++)
            su_kill(g_ptr_array_index(fx->procs, i), SIGKILL);
        su_wait_for(fx, su_cond_all_exited, NULL, SU_WAIT_MS);
    }
    g_ptr_array_unref(fx->procs);
    while (g_main_context_iteration(fx->ctx, FALSE))
        ;
    if (g_getenv("VMC_INTEROP_KEEP") == NULL)
        su_rm_tree(fx->dir);
    else
        g_test_message("kept %s", fx->dir);
    g_main_context_pop_thread_default(fx->ctx);
    g_main_context_unref(fx->ctx);
    g_free(fx->dir);
    g_free(fx->guest_sock);
    g_free(fx->vd_sock);
    g_free(fx->recv_dir);
    g_free(fx->vdagentd_path);
}
