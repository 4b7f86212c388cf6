/* vmc-replay.c — replay one side of a trace and check the answers (see vmc-replay.h).
 *
 * The trace becomes a list of steps in trace order: messages we send ("mine") and
 * messages we expect from the peer ("theirs", kept in one FIFO per stream: the
 * client sees agent->client; the agent sees client->agent on port 1 and
 * server->agent on port 2). A send step waits until every expected message that
 * precedes it in the trace has arrived and matched — the pacing is by answers, and
 * by the server's tokens inside the client library — and, with --realtime, also for
 * the recorded gap. Each received message must equal the head of its stream's FIFO
 * (type, opaque, size, protocol and payload; a truncated or partial expectation
 * compares the kept prefix). The first mismatch, or an answer that does not come
 * within the timeout, ends the replay with both messages printed.
 */
#include "tools/client/vmc-replay.h"

#include <string.h>
#include <spice/vd_agent.h>

#include "server/vmc-trace.h"
#include "tools/client/vmc-describe.h"
#include "tools/client/vmc-io.h"

enum { STREAM_A = 0, STREAM_B = 1, N_STREAMS = 2 };

typedef enum { STEP_SEND, STEP_EXPECT, STEP_TOKEN } StepKind;

typedef struct {
    StepKind kind;
    guint stream;        /* STEP_EXPECT: which FIFO; STEP_SEND (agent): port index */
    guint64 line;        /* trace line */
    guint expects_before;/* expected messages preceding this step in the trace */
    VmcTraceEvent ev;
} Step;

typedef struct {
    const VmcReplayOptions *opt;
    GPtrArray *steps;            /* Step* */
    GQueue expect[N_STREAMS];    /* Step* not yet received */
    guint expect_total;
    guint matched;
    guint sent;
    guint next;                  /* next step index to look at for sending */
    guint32 grant;
    gboolean have_grant;
    GMainContext *ctx;
    VmcClientConn *cc;
    VmcAgentConn *ac;
    gboolean finished;
    int status;                  /* 0 ok, 1 divergence */
    gint64 last_progress;
    gint64 anchor_us;            /* realtime: when the first send happened */
    guint64 anchor_trace;
    VmcDescribeCtx dctx;
    GError *error;
} Replay;

void
vmc_replay_options_init(VmcReplayOptions *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->role = VMC_REPLAY_AS_CLIENT;
    opt->timeout_ms = 10000;
    opt->out = stdout;
    opt->err = stderr;
}

static void
step_free(gpointer p)
{
    Step *s = p;
    if (!s)
        return;
    vmc_trace_event_clear(&s->ev);
    g_free(s);
}

static gboolean
ignored(const Replay *r, guint32 type)
{
    if (!r->opt->ignore_types)
        return FALSE;
    for (guint i = 0; i < r->opt->ignore_types->len; i++) {
        if (g_array_index(r->opt->ignore_types, guint32, i) == type)
            return TRUE;
    }
    return FALSE;
}

static const char *
stream_name(const Replay *r, guint stream)
{
    if (r->opt->role == VMC_REPLAY_AS_CLIENT)
        return "agent-client";
    return stream == STREAM_A ? "client-agent" : "server-agent";
}

/* ---- building the plan ---- */

static gboolean
load_plan(Replay *r, GError **error)
{
    const VmcReplayOptions *opt = r->opt;
    g_autoptr(VmcTraceReader) reader = vmc_trace_reader_new(opt->trace_path, error);
    g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func(step_free);
    guint32 client = opt->client_id;
    gboolean client_given = client != 0;
    gboolean have_broadcast = FALSE;

    if (!reader)
        return FALSE;
    for (;;) {
        Step *s = g_new0(Step, 1);
        GError *local = NULL;
        if (!vmc_trace_reader_next(reader, &s->ev, &local)) {
            g_free(s);
            if (local) {
                g_propagate_error(error, local);
                return FALSE;
            }
            break;
        }
        s->line = vmc_trace_reader_line(reader);
        const VmcTraceEvent *ev = &s->ev;
        if (!client && ev->event == VMC_TRACE_EV_CLIENT_CONNECT)
            client = ev->client;
        if (!client && ev->event == VMC_TRACE_EV_MSG && ev->dir == VMC_TRACE_DIR_CLIENT_AGENT)
            client = ev->client;
        if (ev->event == VMC_TRACE_EV_MSG && ev->dir == VMC_TRACE_DIR_AGENT_CLIENT &&
            ev->client == 0)
            have_broadcast = TRUE;
        g_ptr_array_add(all, s);
    }

    /* Client role: what the client saw starts at its AGENT_START and ends at its
     * disconnect (agent data before AGENT_START is never delivered). */
    gboolean started = TRUE;
    gboolean start_on_connect = FALSE;
    for (guint i = 0; i < all->len; i++) {
        const Step *s = all->pdata[i];
        if (s->ev.event == VMC_TRACE_EV_TOKENS && s->ev.client == client &&
            s->ev.dir == VMC_TRACE_DIR_CLIENT_AGENT && g_strcmp0(s->ev.what, "AGENT_START") == 0) {
            started = FALSE;
            start_on_connect = FALSE;
            break;
        }
        if (s->ev.event == VMC_TRACE_EV_CLIENT_CONNECT && s->ev.client == client) {
            /* without token events: the client saw what came after it connected */
            started = FALSE;
            start_on_connect = TRUE;
        }
    }
    gboolean gone = FALSE;
    guint expects = 0;
    for (guint i = 0; i < all->len; i++) {
        Step *s = all->pdata[i];
        const VmcTraceEvent *ev = &s->ev;
        gboolean keep = FALSE;

        if (ev->event == VMC_TRACE_EV_TOKENS && ev->client == client &&
            ev->dir == VMC_TRACE_DIR_CLIENT_AGENT && ev->what) {
            if (strcmp(ev->what, "AGENT_START") == 0) {
                if (!r->have_grant) {
                    r->grant = ev->tokens;
                    r->have_grant = TRUE;
                }
                started = TRUE;
            } else if (strcmp(ev->what, "AGENT_TOKEN") == 0 &&
                       opt->role == VMC_REPLAY_AS_CLIENT && !gone) {
                s->kind = STEP_TOKEN;
                keep = TRUE;
            }
        }
        if (ev->event == VMC_TRACE_EV_CLIENT_DISCONNECT && ev->client == client)
            gone = TRUE;
        if (ev->event == VMC_TRACE_EV_CLIENT_CONNECT && ev->client == client && start_on_connect)
            started = TRUE;
        if (ev->event == VMC_TRACE_EV_MSG && !ignored(r, ev->type)) {
            if (opt->role == VMC_REPLAY_AS_CLIENT) {
                if (ev->dir == VMC_TRACE_DIR_CLIENT_AGENT && ev->client == client && !gone) {
                    s->kind = STEP_SEND;
                    keep = TRUE;
                } else if (ev->dir == VMC_TRACE_DIR_AGENT_CLIENT && started && !gone &&
                           (ev->client == client || ev->client == 0)) {
                    s->kind = STEP_EXPECT;
                    s->stream = STREAM_A;
                    keep = TRUE;
                }
            } else {
                if (ev->dir == VMC_TRACE_DIR_AGENT_CLIENT &&
                    (ev->client == 0 || (!have_broadcast && ev->client == client))) {
                    s->kind = STEP_SEND;
                    keep = TRUE;
                } else if (ev->dir == VMC_TRACE_DIR_AGENT_SERVER) {
                    s->kind = STEP_SEND;
                    keep = TRUE;
                } else if (ev->dir == VMC_TRACE_DIR_CLIENT_AGENT &&
                           (!client_given || ev->client == client)) {
                    s->kind = STEP_EXPECT;
                    s->stream = STREAM_A;
                    keep = TRUE;
                } else if (ev->dir == VMC_TRACE_DIR_SERVER_AGENT) {
                    s->kind = STEP_EXPECT;
                    s->stream = STREAM_B;
                    keep = TRUE;
                }
            }
        }
        if (!keep)
            continue;
        s->expects_before = expects;
        if (s->kind == STEP_EXPECT) {
            expects++;
            g_queue_push_tail(&r->expect[s->stream], s);
        }
        all->pdata[i] = NULL;
        g_ptr_array_add(r->steps, s);
    }
    r->expect_total = expects;
    if (r->steps->len == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: nothing to replay as %s (no agent messages for client %u)",
                    opt->trace_path, opt->role == VMC_REPLAY_AS_CLIENT ? "client" : "agent",
                    client);
        return FALSE;
    }
    return TRUE;
}

/* ---- reporting ---- */

static char *
describe_expected(Replay *r, const Step *s)
{
    gsize len;
    const guint8 *p = vmc_trace_event_payload(&s->ev, &len);
    return vmc_describe_agent_message(&r->dctx, s->ev.type, s->ev.opaque, s->ev.size, p, len);
}

static void
diverge(Replay *r, guint stream, const Step *want, const VmcAgentHeader *h, const guint8 *p,
        gsize len, const char *why)
{
    FILE *out = r->opt->out;

    fprintf(out, "replay: DIVERGENCE on %s message %u", stream_name(r, stream), r->matched + 1);
    if (want)
        fprintf(out, " (trace line %" G_GUINT64_FORMAT ")", want->line);
    fprintf(out, ": %s\n", why);
    if (want) {
        g_autofree char *d = describe_expected(r, want);
        fprintf(out, "  expected: %s\n", d);
    } else {
        fprintf(out, "  expected: nothing more\n");
    }
    if (h) {
        g_autofree char *d = vmc_describe_agent_message(&r->dctx, h->type, h->opaque, h->size, p,
                                                        len);
        fprintf(out, "  received: %s%s\n", h->protocol != 1 ? "protocol!=1 " : "", d);
    } else {
        fprintf(out, "  received: nothing within %u ms\n", r->opt->timeout_ms);
    }
    fflush(out);
    r->status = 1;
    r->finished = TRUE;
}

/* ---- matching ---- */

static void
received(Replay *r, guint stream, const VmcAgentHeader *h, const guint8 *p, gsize len,
         gboolean truncated)
{
    if (r->finished)
        return;
    if (ignored(r, h->type))
        return;
    gboolean from_agent = r->opt->role == VMC_REPLAY_AS_CLIENT;
    vmc_describe_ctx_observe(&r->dctx, from_agent, h->type, p, len);
    Step *want = g_queue_pop_head(&r->expect[stream]);
    if (!want) {
        diverge(r, stream, NULL, h, p, len, "an unexpected message");
        return;
    }
    gsize wlen;
    const guint8 *wp = vmc_trace_event_payload(&want->ev, &wlen);
    gboolean cut = want->ev.truncated || want->ev.partial;
    const char *why = NULL;
    g_autofree char *buf = NULL;

    if (h->type != want->ev.type)
        why = "different type";
    else if (h->protocol != want->ev.protocol)
        why = "different protocol";
    else if (h->size != want->ev.size)
        why = "different size";
    else if (h->opaque != want->ev.opaque)
        why = "different opaque";
    else if (!cut && (len != wlen || truncated))
        why = "different payload length";
    else {
        gsize n = MIN(len, wlen);
        for (gsize i = 0; i < n; i++) {
            if (p[i] != wp[i]) {
                why = buf = g_strdup_printf("payloads differ from byte %" G_GSIZE_FORMAT, i);
                break;
            }
        }
        if (!why && cut && len < wlen)
            why = "payload shorter than recorded";
    }
    if (why) {
        diverge(r, stream, want, h, p, len, why);
        return;
    }
    r->matched++;
    r->last_progress = g_get_monotonic_time();
    if (r->opt->verbose) {
        g_autofree char *d = describe_expected(r, want);
        fprintf(r->opt->out, "replay: matched %s line %" G_GUINT64_FORMAT ": %s\n",
                stream_name(r, stream), want->line, d);
    }
}

/* ---- sending ---- */

static gboolean
peer_ready(Replay *r)
{
    if (r->cc) {
        VmcClient *c = vmc_client_conn_get_client(r->cc);
        return vmc_client_get_state(c) == VMC_CLIENT_STATE_CONNECTED &&
               vmc_client_agent_started(c);
    }
    return r->ac && vmc_agent_conn_is_open(r->ac);
}

static void
send_step(Replay *r, Step *s)
{
    gsize len;
    const guint8 *p = vmc_trace_event_payload(&s->ev, &len);
    g_autofree guint8 *padded = NULL;

    if (s->kind == STEP_TOKEN) {
        vmc_client_send_agent_token(vmc_client_conn_get_client(r->cc), s->ev.tokens);
        return;
    }
    if (s->ev.truncated && len < s->ev.size) {
        /* the recorder kept only a prefix: send zeros for the rest */
        padded = g_malloc0(s->ev.size);
        memcpy(padded, p, len);
        p = padded;
        len = s->ev.size;
    }
    gboolean from_agent = r->opt->role == VMC_REPLAY_AS_AGENT;
    vmc_describe_ctx_observe(&r->dctx, from_agent, s->ev.type, p, len);
    if (r->cc) {
        vmc_client_send_agent_message_full(vmc_client_conn_get_client(r->cc), s->ev.protocol,
                                           s->ev.type, s->ev.opaque, s->ev.size, p, len, 0);
    } else {
        VmcAgentPeer *peer = vmc_agent_conn_get_peer(r->ac);
        vmc_agent_peer_send_full(peer, s->ev.port ? s->ev.port : 1, s->ev.protocol, s->ev.type,
                                 s->ev.opaque, s->ev.size, p, len, VMC_CHUNK_MAX_PAYLOAD);
    }
    r->sent++;
    r->last_progress = g_get_monotonic_time();
    if (r->opt->verbose) {
        g_autofree char *d = describe_expected(r, s);
        fprintf(r->opt->out, "replay: sent line %" G_GUINT64_FORMAT ": %s\n", s->line, d);
    }
}

/* Sends every step that is due. Returns TRUE when the plan is complete. */
static void
pump(Replay *r)
{
    if (r->finished || !peer_ready(r))
        return;
    while (r->next < r->steps->len) {
        Step *s = r->steps->pdata[r->next];
        if (s->kind == STEP_EXPECT) {
            r->next++;
            continue;
        }
        if (r->matched < s->expects_before)
            return;
        if (r->opt->realtime) {
            gint64 now = g_get_monotonic_time();
            if (r->anchor_us == 0) {
                r->anchor_us = now;
                r->anchor_trace = s->ev.time_us;
            }
            guint64 due = s->ev.time_us > r->anchor_trace ? s->ev.time_us - r->anchor_trace : 0;
            if ((guint64)(now - r->anchor_us) < due)
                return;
        }
        send_step(r, s);
        r->next++;
    }
    if (r->next >= r->steps->len && r->matched == r->expect_total)
        r->finished = TRUE;
}

/* ---- peers ---- */

static void
on_client_event(VmcClientConn *cc, const VmcClientEvent *ev, gpointer user_data)
{
    Replay *r = user_data;

    switch (ev->type) {
    case VMC_CLIENT_EV_AGENT_MESSAGE: {
        gsize len;
        const guint8 *p = g_bytes_get_data(ev->body, &len);
        received(r, STREAM_A, &ev->agent, p, len, ev->truncated);
        break;
    }
    case VMC_CLIENT_EV_LINK_FAILED:
    case VMC_CLIENT_EV_PROTOCOL_ERROR:
        if (!r->error)
            g_set_error(&r->error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", ev->detail);
        break;
    default:
        break;
    }
    pump(r);
}

static void
on_agent_event(VmcAgentConn *ac, const VmcAgentPeerEvent *ev, gpointer user_data)
{
    Replay *r = user_data;

    if (ev->type == VMC_AGENT_PEER_EV_MESSAGE) {
        gsize len;
        const guint8 *p = g_bytes_get_data(ev->body, &len);
        received(r, ev->port == 2 ? STREAM_B : STREAM_A, &ev->header, p, len, ev->truncated);
    } else if (ev->type == VMC_AGENT_PEER_EV_VIOLATION) {
        fprintf(r->opt->out, "replay: framing violation from the server: %s\n", ev->detail);
    }
    pump(r);
}

static void
on_agent_state(VmcAgentConn *ac, gboolean open, gpointer user_data)
{
    Replay *r = user_data;
    if (open)
        r->last_progress = g_get_monotonic_time();
}

static gboolean
replay_done(gpointer user_data)
{
    Replay *r = user_data;
    if (r->finished || r->error)
        return TRUE;
    if (r->cc && vmc_client_conn_is_closed(r->cc))
        return TRUE;
    return FALSE;
}

int
vmc_replay_run(const VmcReplayOptions *opt, GError **error)
{
    Replay r = {0};
    int ret = 2;

    r.opt = opt;
    r.steps = g_ptr_array_new_with_free_func(step_free);
    for (guint i = 0; i < N_STREAMS; i++)
        g_queue_init(&r.expect[i]);
    vmc_describe_ctx_init(&r.dctx);
    if (!load_plan(&r, error))
        goto out;

    r.ctx = g_main_context_new();
    if (opt->role == VMC_REPLAY_AS_CLIENT) {
        VmcClientConfig cfg;
        vmc_client_config_init(&cfg);
        cfg.password = opt->password;
        cfg.agent_grant = r.have_grant ? r.grant : VMC_AGENT_TOKENS_UNLIMITED;
        if (!opt->connect) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "replay --as client needs --connect");
            goto out;
        }
        r.cc = vmc_client_conn_new(opt->connect, &cfg, r.ctx, opt->timeout_ms, error);
        if (!r.cc)
            goto out;
        if (!vmc_client_conn_wait_linked(r.cc, opt->timeout_ms, error))
            goto out;
        vmc_client_conn_set_event_func(r.cc, on_client_event, &r);
    } else {
        if (!opt->guest) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "replay --as agent needs --guest");
            goto out;
        }
        r.ac = vmc_agent_conn_new(opt->guest, r.ctx, opt->timeout_ms, error);
        if (!r.ac)
            goto out;
        vmc_agent_conn_set_event_func(r.ac, on_agent_event, &r);
        vmc_agent_conn_set_state_func(r.ac, on_agent_state, &r);
    }
    fprintf(opt->out, "replay: %u steps as %s (%u to receive)\n", r.steps->len,
            opt->role == VMC_REPLAY_AS_CLIENT ? "client" : "agent", r.expect_total);
    fflush(opt->out);

    r.last_progress = g_get_monotonic_time();
    gboolean ready_written = FALSE;
    while (!replay_done(&r)) {
        pump(&r);
        if (!ready_written && opt->ready_file && peer_ready(&r)) {
            /* after the immediate sends went out */
            if (r.ac && vmc_agent_conn_get_io(r.ac))
                vmc_io_conn_flush_now(vmc_agent_conn_get_io(r.ac));
            if (r.cc)
                vmc_io_conn_flush_now(vmc_client_conn_get_io(r.cc));
            g_file_set_contents(opt->ready_file, "ready\n", -1, NULL);
            ready_written = TRUE;
        }
        if (replay_done(&r))
            break;
        vmc_io_wait(r.ctx, replay_done, &r, 50);
        if (r.ac && !vmc_agent_conn_is_open(r.ac) && vmc_agent_conn_opens(r.ac) > 0 &&
            !r.finished) {
            g_set_error(&r.error, G_IO_ERROR, G_IO_ERROR_CLOSED,
                        "the server closed the guest port");
        }
        if (!r.finished && !r.error &&
            g_get_monotonic_time() - r.last_progress > (gint64)opt->timeout_ms * 1000) {
            /* waiting for an answer that does not come */
            Step *want = NULL;
            guint stream = STREAM_A;
            for (guint i = 0; i < N_STREAMS && !want; i++) {
                want = g_queue_peek_head(&r.expect[i]);
                stream = i;
            }
            if (want) {
                diverge(&r, stream, want, NULL, NULL, 0, "missing answer");
            } else {
                g_set_error(&r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                            "no progress for %u ms (the peer is not ready?)", opt->timeout_ms);
            }
        }
    }
    /* let the last messages leave */
    if (r.cc)
        vmc_io_conn_flush_now(vmc_client_conn_get_io(r.cc));
    if (r.ac && vmc_agent_conn_get_io(r.ac))
        vmc_io_conn_flush_now(vmc_agent_conn_get_io(r.ac));

    if (r.status == 1) {
        ret = 1;
    } else if (r.finished) {
        fprintf(opt->out, "replay: OK: %u messages sent, %u received and matched\n", r.sent,
                r.matched);
        ret = 0;
    } else if (r.error) {
        g_propagate_error(error, g_steal_pointer(&r.error));
        ret = 2;
    } else {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED,
                    "the server closed the connection after %u of %u expected messages",
                    r.matched, r.expect_total);
        ret = 1;
    }
out:
    g_clear_error(&r.error);
    vmc_client_conn_free(r.cc);
    vmc_agent_conn_free(r.ac);
    for (guint i = 0; i < N_STREAMS; i++)
        g_queue_clear(&r.expect[i]);
    g_ptr_array_unref(r.steps);
    if (r.ctx) {
        while (g_main_context_iteration(r.ctx, FALSE))
            ;
        g_main_context_unref(r.ctx);
    }
    return ret;
}
