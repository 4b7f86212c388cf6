/* test-client-tools.c — vmcmux-client end to end: command-line errors, decode, and
 * live runs through vmcmux-server on each backend (file transfer bit-exact to the
 * agent side, record a session and replay it as client and as agent). */
#include <signal.h>
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#include "server/vmc-trace.h"
#include "vmc-test-harness.h"

typedef struct {
    int status;  /* exit status, or 128 + signal */
    char *out;
    char *err;
} Run;

static void
run_clear(Run *r)
{
    g_free(r->out);
    g_free(r->err);
}

static int
wait_status(GSubprocess *p)
{
    if (g_subprocess_get_if_exited(p))
        return g_subprocess_get_exit_status(p);
    if (g_subprocess_get_if_signaled(p))
        return 128 + g_subprocess_get_term_sig(p);
    return -1;
}

/* g_test_message line by line (each must start with "# " in TAP). */
static void
message_lines(const char *what, const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text ? text : "", "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (lines[i][0])
            g_test_message("%s: %.300s%s", what, lines[i], strlen(lines[i]) > 300 ? "..." : "");
    }
}

/* Runs vmcmux-client with `args` (NULL-terminated) to completion. */
static Run
client_run(const char *const *args)
{
    Run r = {0};
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;

    g_ptr_array_add(argv, (gpointer)vmc_test_client_binary());
    for (guint i = 0; args[i]; i++)
        g_ptr_array_add(argv, (gpointer)args[i]);
    g_ptr_array_add(argv, NULL);
    g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(
        G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
    g_subprocess_launcher_set_child_setup(launcher, vmc_test_child_setup, NULL, NULL);
    g_autoptr(GSubprocess) p = g_subprocess_launcher_spawnv(
        launcher, (const char *const *)argv->pdata, &error);
    g_assert_no_error(error);
    g_assert_true(g_subprocess_communicate_utf8(p, NULL, NULL, &r.out, &r.err, &error));
    g_assert_no_error(error);
    r.status = wait_status(p);
    g_test_message("vmcmux-client %s -> %d", args[0], r.status);
    message_lines("stdout", r.out);
    message_lines("stderr", r.err);
    return r;
}

static gboolean
have_client(void)
{
    if (!vmc_test_client_binary()) {
        g_test_skip("no vmcmux-client binary");
        return FALSE;
    }
    return TRUE;
}

static void
test_usage(void)
{
    if (!have_client())
        return;
    Run r = client_run((const char *const[]){"--help", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "Commands:"));
    run_clear(&r);
    static const char *const cmds[] = {"info", "monitor", "send", "agent", "record", "replay",
                                       "decode", "bench"};
    for (guint i = 0; i < G_N_ELEMENTS(cmds); i++) {
        r = client_run((const char *const[]){cmds[i], "--help", NULL});
        g_assert_cmpint(r.status, ==, 0);
        g_assert_nonnull(strstr(r.out, "Usage:"));
        run_clear(&r);
    }
    r = client_run((const char *const[]){"frobnicate", NULL});
    g_assert_cmpint(r.status, ==, 2);
    g_assert_nonnull(strstr(r.err, "unknown command \"frobnicate\""));
    run_clear(&r);
}

static void
test_bad_input(void)
{
    static const struct {
        const char *args[8];
        const char *message;
    } cases[] = {
        {{"send", "--connect", "localhost", "--type", "1", NULL}, "not HOST:PORT"},
        {{"send", "--connect", "127.0.0.1:99999", "--type", "1", NULL}, "bad port"},
        {{"send", "--type", "1", "--file", "/etc/hostname", NULL}, "exactly one of"},
        {{"send", NULL}, "exactly one of"},
        {{"send", "--file", "/nonexistent/file", NULL}, "/nonexistent/file"},
        {{"send", "--type", "1", "--hex", "0g", NULL}, "not a hex digit"},
        {{"send", "--type", "x1", NULL}, "--type \"x1\""},
        {{"send", "--monitors", "big", NULL}, "not WxH"},
        {{"send", "--type", "1", "--timeout", "0", NULL}, "--timeout"},
        {{"agent", NULL}, "needs --guest"},
        {{"agent", "--guest", "tcp:1", NULL}, "expected unix:PATH"},
        {{"replay", "t.jsonl", NULL}, "--as client or --as agent"},
        {{"decode", NULL}, "exactly one TRACE"},
        {{"decode", "/nonexistent/t.jsonl", NULL}, "/nonexistent/t.jsonl"},
        {{"record", "--duration", "10", NULL}, "needs -o TRACE"},
        {{"monitor", "--bogus", NULL}, "Unknown option"},
    };
    if (!have_client())
        return;
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        Run r = client_run(cases[i].args);
        g_assert_cmpint(r.status, ==, 2);
        if (!strstr(r.err, cases[i].message))
            g_error("case %u: stderr \"%s\" lacks \"%s\"", i, r.err, cases[i].message);
        run_clear(&r);
    }
    /* nothing listening: a clear connection error */
    g_autofree char *dir = g_dir_make_tmp("vmc-tool-XXXXXX", NULL);
    g_autofree char *spec = g_strdup_printf("unix:%s/none.sock", dir);
    Run r = client_run((const char *const[]){"info", "--connect", spec, NULL});
    g_assert_cmpint(r.status, ==, 2);
    g_assert_nonnull(strstr(r.err, "cannot connect"));
    run_clear(&r);
    g_rmdir(dir);
}

static const char trace_text[] =
    "{\"time_us\":0,\"event\":\"trace\",\"version\":1,\"source\":\"test\"}\n"
    "{\"time_us\":10,\"event\":\"agent-connect\"}\n"
    "{\"time_us\":20,\"event\":\"client-connect\",\"client\":1,\"detail\":\"x\"}\n"
    "{\"time_us\":30,\"event\":\"msg\",\"dir\":\"client-agent\",\"client\":1,\"port\":1,"
    "\"type\":6,\"name\":\"ANNOUNCE_CAPABILITIES\",\"opaque\":0,\"size\":8,"
    "\"data\":\"AQAAAHdQAwA=\"}\n"
    "{\"time_us\":40,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":0,\"port\":1,"
    "\"type\":6,\"name\":\"ANNOUNCE_CAPABILITIES\",\"opaque\":0,\"size\":8,"
    "\"data\":\"AAAAAOeNAwA=\"}\n"
    "{\"time_us\":50,\"event\":\"client-disconnect\",\"client\":1}\n";

static char *
write_file(const char *dir, const char *name, const char *contents, gssize len)
{
    char *path = g_build_filename(dir, name, NULL);
    g_assert_true(g_file_set_contents(path, contents, len, NULL));
    return path;
}

static void
test_decode(void)
{
    if (!have_client())
        return;
    g_autofree char *dir = g_dir_make_tmp("vmc-tool-XXXXXX", NULL);
    g_autofree char *good = write_file(dir, "good.jsonl", trace_text, -1);

    Run r = client_run((const char *const[]){"decode", good, NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "ANNOUNCE_CAPABILITIES(6)"));
    g_assert_nonnull(strstr(r.out, "caps=0x00038de7"));
    g_assert_nonnull(strstr(r.out, "client-connect c1 (x)"));
    run_clear(&r);

    /* --json passes canonical lines through byte for byte */
    r = client_run((const char *const[]){"decode", "--json", good, NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_cmpstr(r.out, ==, trace_text);
    run_clear(&r);

    /* a corrupt third line */
    g_autoptr(GString) bad = g_string_new(trace_text);
    char *third = strstr(bad->str, "{\"time_us\":20");
    third[5] = 'X';
    g_autofree char *corrupt = write_file(dir, "corrupt.jsonl", bad->str, -1);
    r = client_run((const char *const[]){"decode", corrupt, NULL});
    g_assert_cmpint(r.status, ==, 2);
    g_autofree char *want = g_strdup_printf("%s:3: column ", corrupt);
    g_assert_nonnull(strstr(r.err, want));
    /* the good lines before it were printed */
    g_assert_nonnull(strstr(r.out, "agent-connect"));
    run_clear(&r);

    /* a trace cut in the middle of its last line */
    g_autofree char *cut = write_file(dir, "cut.jsonl", trace_text, (gssize)strlen(trace_text) - 20);
    r = client_run((const char *const[]){"decode", cut, NULL});
    g_assert_cmpint(r.status, ==, 2);
    g_autofree char *want2 = g_strdup_printf("%s:6: truncated trace", cut);
    g_assert_nonnull(strstr(r.err, want2));
    run_clear(&r);

    /* replay refuses it with the same line-numbered error */
    r = client_run((const char *const[]){"replay", cut, "--as", "client", NULL});
    g_assert_cmpint(r.status, ==, 2);
    g_assert_nonnull(strstr(r.err, want2));
    run_clear(&r);

    g_unlink(good);
    g_unlink(corrupt);
    g_unlink(cut);
    g_rmdir(dir);
}

/* ---- live ---- */

typedef struct {
    GMainContext *ctx;
    VmcTestServer *srv;
    char *dir;
} Live;

static gboolean
live_start(Live *l, const char *backend, const char *const *extra)
{
    g_autoptr(GError) error = NULL;
    if (!vmc_test_client_binary() || !vmc_test_backend_available(backend)) {
        g_test_skip("needs vmcmux-client and vmcmux-server with this backend");
        return FALSE;
    }
    l->ctx = g_main_context_new();
    l->dir = g_dir_make_tmp("vmc-live-XXXXXX", NULL);
    l->srv = vmc_test_server_start(backend, FALSE, extra, l->ctx, &error);
    g_assert_no_error(error);
    return TRUE;
}

static void
live_stop_server(Live *l)
{
    vmc_test_server_free(l->srv);
    l->srv = NULL;
}

static void
remove_tree(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;
    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, name, NULL);
        if (g_file_test(p, G_FILE_TEST_IS_DIR))
            remove_tree(p);
        else
            g_unlink(p);
    }
    g_rmdir(dir);
}

static void
live_clear(Live *l)
{
    vmc_test_server_free(l->srv);
    if (l->dir && !g_getenv("VMC_TEST_KEEP"))
        remove_tree(l->dir);
    g_free(l->dir);
    if (l->ctx)
        g_main_context_unref(l->ctx);
}

/* Starts a long-running vmcmux-client (agent, replay) with output in a log file. */
static GSubprocess *
client_spawn(Live *l, const char *log_name, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    g_autofree char *log = g_build_filename(l->dir, log_name, NULL);

    g_ptr_array_add(argv, (gpointer)vmc_test_client_binary());
    for (guint i = 0; args[i]; i++)
        g_ptr_array_add(argv, (gpointer)args[i]);
    g_ptr_array_add(argv, NULL);
    g_autoptr(GSubprocessLauncher) launcher =
        g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDERR_MERGE);
    g_subprocess_launcher_set_stdout_file_path(launcher, log);
    g_subprocess_launcher_set_child_setup(launcher, vmc_test_child_setup, NULL, NULL);
    GSubprocess *p = g_subprocess_launcher_spawnv(launcher, (const char *const *)argv->pdata,
                                                  &error);
    g_assert_no_error(error);
    return p;
}

static char *
read_log(Live *l, const char *log_name)
{
    g_autofree char *log = g_build_filename(l->dir, log_name, NULL);
    char *text = NULL;
    if (!g_file_get_contents(log, &text, NULL, NULL))
        text = g_strdup("");
    return text;
}

static void
on_exited(GObject *source, GAsyncResult *res, gpointer user_data)
{
    g_subprocess_wait_finish(G_SUBPROCESS(source), res, NULL);
    *(gboolean *)user_data = TRUE;
}

static gboolean
cond_flag(gpointer user_data)
{
    return *(gboolean *)user_data;
}

/* Waits up to timeout_ms for `p` to end; kills it after that. TRUE if it ended. */
static gboolean
wait_exit(Live *l, GSubprocess *p, guint timeout_ms)
{
    gboolean done = FALSE;
    g_main_context_push_thread_default(l->ctx);
    g_subprocess_wait_async(p, NULL, on_exited, &done);
    g_main_context_pop_thread_default(l->ctx);
    gboolean ended = vmc_io_wait(l->ctx, cond_flag, &done, timeout_ms);
    if (!ended) {
        g_subprocess_force_exit(p);
        while (!done)
            g_main_context_iteration(l->ctx, TRUE);
    }
    return ended;
}

/* SIGTERM and wait (bounded); returns the exit status. */
static int
stop_process(Live *l, GSubprocess *p)
{
    g_subprocess_send_signal(p, SIGTERM);
    wait_exit(l, p, 10000);
    return wait_status(p);
}

static char *
random_file(Live *l, const char *name, gsize size)
{
    g_autofree guint8 *data = g_malloc(size + 1);
    for (gsize i = 0; i < size; i++)
        data[i] = (guint8)g_test_rand_int_range(0, 256);
    char *path = g_build_filename(l->dir, name, NULL);
    g_assert_true(g_file_set_contents(path, (const char *)data, (gssize)size, NULL));
    return path;
}

static void
assert_same_file(const char *a, const char *b)
{
    g_autofree char *da = NULL, *db = NULL;
    gsize la = 0, lb = 0;
    g_assert_true(g_file_get_contents(a, &da, &la, NULL));
    g_assert_true(g_file_get_contents(b, &db, &lb, NULL));
    g_assert_cmpmem(da, la, db, lb);
}

static void
test_file_transfer(gconstpointer data)
{
    const char *backend = data;
    Live l = {0};
    if (!live_start(&l, backend, NULL))
        return;
    g_autofree char *save = g_build_filename(l.dir, "save", NULL);
    g_mkdir(save, 0755);
    g_autofree char *big = random_file(&l, "big.bin", 3 * 1024 * 1024 + 77);
    g_autofree char *empty = random_file(&l, "empty.bin", 0);

    GSubprocess *agent = client_spawn(&l, "agent.log", (const char *const[]){
        "agent", "--guest", l.srv->guest, "--save-dir", save, "--strict", NULL});
    Run r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--file", big,
                                             "--file", empty, "--no-progress", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "sent big.bin"));
    run_clear(&r);
    g_autofree char *got_big = g_build_filename(save, "big.bin", NULL);
    g_autofree char *got_empty = g_build_filename(save, "empty.bin", NULL);
    assert_same_file(big, got_big);
    assert_same_file(empty, got_empty);

    /* clipboard both ways and a monitors config with its reply */
    r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--clipboard",
                                         "hello from the client", NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
    r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--monitors",
                                         "1024x768,800x600+1024+0", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "SUCCESS"));
    run_clear(&r);

    int st = stop_process(&l, agent);
    g_autofree char *log = read_log(&l, "agent.log");
    message_lines("agent", log);
    g_assert_nonnull(strstr(log, "CLIPBOARD(4)"));
    g_assert_nonnull(strstr(log, "\"hello from the client\""));
    g_assert_cmpint(st, ==, 0); /* --strict: no framing violation seen */
    g_object_unref(agent);
    g_assert_true(vmc_test_server_alive(l.srv));
    live_clear(&l);
}

static gboolean
file_exists(gpointer path)
{
    return g_file_test(path, G_FILE_TEST_EXISTS);
}

static void
test_record_replay(gconstpointer data)
{
    const char *backend = data;
    Live l = {0};
    g_autofree char *dir0 = g_dir_make_tmp("vmc-rec-XXXXXX", NULL);
    g_autofree char *trace = g_build_filename(dir0, "session.jsonl", NULL);
    const char *const rec_args[] = {"--record", trace, NULL};
    if (!live_start(&l, backend, rec_args)) {
        g_rmdir(dir0);
        return;
    }
    g_autofree char *save = g_build_filename(l.dir, "save", NULL);
    g_mkdir(save, 0755);
    g_autofree char *file = random_file(&l, "doc.bin", 200000);

    /* 1. record: an agent, a file transfer and a clipboard grab */
    GSubprocess *agent = client_spawn(&l, "agent.log", (const char *const[]){
        "agent", "--guest", l.srv->guest, "--save-dir", save, NULL});
    Run r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--file", file,
                                             NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
    r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--clipboard", "hi",
                                         NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
    stop_process(&l, agent);
    g_object_unref(agent);
    live_stop_server(&l);

    /* the trace is valid and canonical */
    r = client_run((const char *const[]){"decode", "--json", trace, NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(trace, &text, NULL, NULL));
    g_assert_cmpstr(r.out, ==, text);
    g_assert_nonnull(strstr(text, "\"name\":\"FILE_XFER_START\""));
    g_assert_nonnull(strstr(text, "\"name\":\"CLIPBOARD_REQUEST\""));
    run_clear(&r);

    /* 2. replay as the client against a fresh server and a live agent */
    g_autoptr(GError) error = NULL;
    l.srv = vmc_test_server_start(backend, FALSE, NULL, l.ctx, &error);
    g_assert_no_error(error);
    g_autofree char *save2 = g_build_filename(l.dir, "save2", NULL);
    g_mkdir(save2, 0755);
    /* the trace starts with the agent already there (its first caps request went to
     * no client): wait for the agent before the replayed client links */
    g_autofree char *agent_ready = g_build_filename(l.dir, "agent2.ready", NULL);
    agent = client_spawn(&l, "agent2.log", (const char *const[]){
        "agent", "--guest", l.srv->guest, "--save-dir", save2, "--ready-file", agent_ready,
        NULL});
    g_assert_true(vmc_io_wait(l.ctx, file_exists, agent_ready, VMC_TEST_TIMEOUT));
    r = client_run((const char *const[]){"replay", trace, "--as", "client", "--connect",
                                         l.srv->listen, NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "replay: OK"));
    run_clear(&r);
    g_autofree char *got = g_build_filename(save2, "doc.bin", NULL);
    assert_same_file(file, got);
    stop_process(&l, agent);
    g_object_unref(agent);
    live_stop_server(&l);

    /* 3. replay as the agent against a fresh server and the live client doing the same */
    l.srv = vmc_test_server_start(backend, FALSE, NULL, l.ctx, &error);
    g_assert_no_error(error);
    g_autofree char *ready = g_build_filename(l.dir, "ready", NULL);
    GSubprocess *ragent = client_spawn(&l, "ragent.log", (const char *const[]){
        "replay", trace, "--as", "agent", "--guest", l.srv->guest, "--ready-file", ready,
        NULL});
    g_assert_true(vmc_io_wait(l.ctx, file_exists, ready, VMC_TEST_TIMEOUT));
    r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--file", file,
                                         NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
    r = client_run((const char *const[]){"send", "--connect", l.srv->listen, "--clipboard", "hi",
                                         NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
    /* the agent replay ends by itself once every expected message matched */
    gboolean ended = wait_exit(&l, ragent, 10000);
    g_autofree char *rlog = read_log(&l, "ragent.log");
    message_lines("agent replay", rlog);
    g_assert_true(ended);
    g_assert_cmpint(wait_status(ragent), ==, 0);
    g_assert_nonnull(strstr(rlog, "replay: OK"));
    g_object_unref(ragent);

    /* 4. a divergence: the client replay against an agent that refuses files */
    live_stop_server(&l);
    l.srv = vmc_test_server_start(backend, FALSE, NULL, l.ctx, &error);
    g_assert_no_error(error);
    g_autofree char *agent3_ready = g_build_filename(l.dir, "agent3.ready", NULL);
    agent = client_spawn(&l, "agent3.log", (const char *const[]){
        "agent", "--guest", l.srv->guest, "--no-file-xfer", "--ready-file", agent3_ready, NULL});
    g_assert_true(vmc_io_wait(l.ctx, file_exists, agent3_ready, VMC_TEST_TIMEOUT));
    r = client_run((const char *const[]){"replay", trace, "--as", "client", "--connect",
                                         l.srv->listen, "--timeout", "3000", NULL});
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.out, "DIVERGENCE"));
    g_assert_nonnull(strstr(r.out, "expected: FILE_XFER_STATUS(11) size=8 id=1 "
                                   "result=CAN_SEND_DATA(0)"));
    g_assert_nonnull(strstr(r.out, "received: FILE_XFER_STATUS(11) size=8 id=1 "
                                   "result=DISABLED(7)"));
    run_clear(&r);
    stop_process(&l, agent);
    g_object_unref(agent);

    live_clear(&l);
    g_unlink(trace);
    g_rmdir(dir0);
}

static void
test_monitor_record(gconstpointer data)
{
    const char *backend = data;
    Live l = {0};
    if (!live_start(&l, backend, NULL))
        return;
    g_autofree char *trace = g_build_filename(l.dir, "client.jsonl", NULL);
    GSubprocess *agent = client_spawn(&l, "agent.log", (const char *const[]){
        "agent", "--guest", l.srv->guest, NULL});

    /* info: link, INIT and the agent's caps, as JSON */
    Run r = client_run((const char *const[]){"info", "--connect", l.srv->listen, "--json", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "\"agent_connected\":true"));
    g_assert_nonnull(strstr(r.out, "\"agent_caps\":232935")); /* 0x00038de7 */
    run_clear(&r);

    /* record from the client's end until the agent's caps reply arrived */
    r = client_run((const char *const[]){"record", "--connect", l.srv->listen, "-o", trace,
                                         "--count", "1", NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) events = vmc_trace_load(trace, &error);
    g_assert_no_error(error);
    guint to_agent = 0, from_agent = 0, starts = 0;
    for (guint i = 0; i < events->len; i++) {
        VmcTraceEvent *ev = events->pdata[i];
        if (ev->event == VMC_TRACE_EV_MSG && ev->type == 6) {
            if (ev->dir == VMC_TRACE_DIR_CLIENT_AGENT)
                to_agent++;
            else
                from_agent++;
        }
        if (ev->event == VMC_TRACE_EV_TOKENS && g_strcmp0(ev->what, "AGENT_START") == 0)
            starts++;
    }
    g_assert_cmpuint(to_agent, ==, 1);
    g_assert_cmpuint(from_agent, ==, 1);
    g_assert_cmpuint(starts, ==, 1);

    /* that client-side trace replays against the same server and agent */
    r = client_run((const char *const[]){"replay", trace, "--as", "client", "--connect",
                                         l.srv->listen, NULL});
    g_assert_cmpint(r.status, ==, 0);
    run_clear(&r);

    /* monitor --json prints trace lines */
    r = client_run((const char *const[]){"monitor", "--connect", l.srv->listen, "--json",
                                         "--count", "1", NULL});
    g_assert_cmpint(r.status, ==, 0);
    g_auto(GStrv) lines = g_strsplit(r.out, "\n", -1);
    guint parsed = 0;
    for (guint i = 0; lines[i] && lines[i][0]; i++) {
        VmcTraceEvent ev;
        g_assert_true(vmc_trace_event_parse(lines[i], strlen(lines[i]), &ev, NULL));
        parsed++;
        vmc_trace_event_clear(&ev);
    }
    g_assert_cmpuint(parsed, >=, 4);
    g_assert_nonnull(strstr(r.out, "\"name\":\"ANNOUNCE_CAPABILITIES\""));
    run_clear(&r);

    stop_process(&l, agent);
    g_object_unref(agent);
    live_clear(&l);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("vmcmux-client end to end: errors, decode, live transfers, record and "
                   "replay through vmcmux-server");
    g_test_add_func("/client/tool/usage", test_usage);
    g_test_add_func("/client/tool/bad-input", test_bad_input);
    g_test_add_func("/client/tool/decode", test_decode);
    static const char *const backends[] = {"native", "spice-server"};
    for (guint i = 0; i < G_N_ELEMENTS(backends); i++) {
        g_autofree char *p1 = g_strdup_printf("/client/tool/file-transfer/%s", backends[i]);
        g_autofree char *p2 = g_strdup_printf("/client/tool/record-replay/%s", backends[i]);
        g_test_add_data_func(p1, backends[i], test_file_transfer);
        g_test_add_data_func(p2, backends[i], test_record_replay);
        g_autofree char *p3 = g_strdup_printf("/client/tool/monitor-record/%s", backends[i]);
        g_test_add_data_func(p3, backends[i], test_monitor_record);
    }
    return g_test_run();
}
