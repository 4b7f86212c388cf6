/* test-mux-random.c — seeded randomized model test of the multiplexer core
 * (suite 'mux-random'). Reproduce a failure with --seed=R02S... (g_test_rand).
 *
 * A model agent writes random messages (0 B .. 1 MiB) on ports 1 and 2, chunked the
 * ways real agents do (one chunk per message, <= 2048 or <= 1024 pieces, two small
 * messages in one chunk, port-2 chunks between the chunks of a port-1 message);
 * a model runtime feeds that stream to the mux in random splits while it wants
 * input and writes the guest output in random amounts; model clients (spice-gtk
 * rules: finite or unlimited grants, with or without AGENT_CONNECTED_TOKENS) send
 * random messages in random AGENT_DATA cuts within their token count, pop their
 * output in random amounts, join and leave; the agent disconnects and reconnects.
 *
 * Checked all along: every message that arrives (at the agent or at a client) is
 * bit-exact, whole, in order and was allowed to arrive; chunks and AGENT_DATA
 * bodies are <= 2048 bytes and never span two messages; no AGENT_DATA beyond a
 * client's grant; a client's token count never goes above the window and the mux
 * never accuses a well-behaved client; queues stay within their bounds.
 * At checkpoints everything is drained: every message that had to arrive did,
 * and every client has its whole window back.
 */
#include "mux-test-util.h"

#define MAX_CLIENTS 4
#define OPAQUE_PORT2 (G_GUINT64_CONSTANT(1) << 63)

typedef enum { ST_MUST, ST_MAYBE, ST_DEAD, ST_DELIVERED } MsgStatus;

typedef struct {
    guint64 start_off; /* stream offset of its first byte */
    guint64 end_off;   /* after its last byte */
    gsize len;         /* header + payload */
} AgentMsgPos;

/* What a client may receive from one agent instance it was started in. */
typedef struct {
    guint32 must_from;  /* first agent message it must get after its START */
    gint64 in_progress; /* the one it may or may not get, -1 none */
    gint64 last_rx_seq;
    GHashTable *received; /* agent seq -> 1 */
} StartInfo;

static void
start_info_free(gpointer p)
{
    StartInfo *si = p;

    g_hash_table_unref(si->received);
    g_free(si);
}

typedef struct {
    guint32 id; /* mux id, 0 = slot free */
    guint caps;
    gboolean unlimited;
    gint64 budget;      /* agent->client AGENT_DATA it still allows (finite) */
    gint64 count;       /* client->agent tokens, as spice-gtk counts them */
    gboolean mux_started;
    guint32 start_epoch;
    GHashTable *starts; /* epoch -> StartInfo: a stale AGENT_START (answering an
                         * older AGENT_CONNECTED_TOKENS) starts it in whatever
                         * agent instance is there, so several may be queued */
    guint32 last_rx_epoch;
    GQueue connected_epochs; /* agent instances of the queued AGENT_CONNECTED* */

    /* sending */
    GByteArray *cur;
    gsize cur_off;
    guint32 next_seq;

    /* receiving (spice-gtk reassembly) */
    GByteArray *rx;
} MClient;

typedef struct {
    /* scenario */
    const char *name;
    guint max_clients;
    guint target_msgs;
    gboolean finite_tokens;
    guint join_leave_weight;
    guint reconnect_weight;

    VmcMux *mux;
    VmcMuxConfig cfg;
    guint msgs; /* generated so far, both directions */

    /* model agent */
    gboolean connected;
    guint32 epoch;
    GByteArray *pending; /* stream bytes not fed yet */
    guint64 stream_total;
    guint64 fed;
    GArray *p1; /* AgentMsgPos of this epoch's port-1 messages, index = seq */
    GArray *p2; /* AgentMsgPos of port-2 messages */
    guint p2_delivered;
    /* what the agent receives */
    GByteArray *rxbuf; /* unparsed guest output */
    GByteArray *rx_msg[2];
    gsize rx_need[2];
    GHashTable *status; /* opaque -> MsgStatus */
    GHashTable *last_seq; /* client id -> last seq delivered (+1) */
    guint32 mouse_sent;
    guint32 mouse_seen;

    MClient cl[MAX_CLIENTS];
    guint64 checked_bytes;
} World;

static guint32
rnd(guint32 n)
{
    return n ? (guint32)g_test_rand_int_range(0, (gint32)n) : 0;
}

static gboolean
chance(guint percent)
{
    return rnd(100) < percent;
}

static gsize
rnd_size(void)
{
    guint r = rnd(1000);

    if (r < 650)
        return rnd(100);
    if (r < 900)
        return 100 + rnd(5000);
    if (r < 995)
        return 5000 + rnd(60000);
    return 64 * 1024 + rnd(1024 * 1024 - 64 * 1024 + 1);
}

static void
fill_payload(guint8 *p, gsize len, guint64 opaque)
{
    guint32 x = (guint32)(opaque ^ (opaque >> 29)) * 2654435761u + 12345u;

    for (gsize i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (guint8)x;
    }
}

static GByteArray *
make_msg(guint32 type, guint64 opaque, gsize len)
{
    GByteArray *a = g_byte_array_sized_new((guint)(VMC_AGENT_HEADER_SIZE + len));
    VmcAgentHeader h = { VMC_AGENT_PROTOCOL, type, opaque, (guint32)len };

    g_byte_array_set_size(a, (guint)(VMC_AGENT_HEADER_SIZE + len));
    vmc_agent_header_encode(&h, a->data);
    fill_payload(a->data + VMC_AGENT_HEADER_SIZE, len, opaque);
    return a;
}

static void
check_payload(const guint8 *msg, gsize len)
{
    VmcAgentHeader h;
    g_autofree guint8 *want = NULL;

    g_assert_cmpint(vmc_agent_header_decode(msg, len, &h, NULL), ==, VMC_DECODE_OK);
    g_assert_cmpuint(h.size, ==, len - VMC_AGENT_HEADER_SIZE);
    want = g_malloc(h.size + 1);
    fill_payload(want, h.size, h.opaque);
    g_assert_true(h.size == 0 || memcmp(want, msg + VMC_AGENT_HEADER_SIZE, h.size) == 0);
}

/* A message of a client that left in its middle: with a shared agent the mux
 * completes it with zeros (docs/sharing.md). Its prefix is exact, the rest zero. */
static void
check_payload_or_filler(const guint8 *msg, gsize len)
{
    VmcAgentHeader h;
    g_autofree guint8 *want = NULL;
    gsize k = 0;

    g_assert_cmpint(vmc_agent_header_decode(msg, len, &h, NULL), ==, VMC_DECODE_OK);
    g_assert_cmpuint(h.size, ==, len - VMC_AGENT_HEADER_SIZE);
    want = g_malloc(h.size + 1);
    fill_payload(want, h.size, h.opaque);
    while (k < h.size && msg[VMC_AGENT_HEADER_SIZE + k] == want[k])
        k++;
    for (; k < h.size; k++)
        g_assert_cmpuint(msg[VMC_AGENT_HEADER_SIZE + k], ==, 0);
}

static guint64
st_key(guint32 client, guint32 seq)
{
    return ((guint64)client << 32) | seq;
}

static MsgStatus
st_get(World *w, guint64 key)
{
    gpointer v;

    g_assert_true(g_hash_table_lookup_extended(w->status, &key, NULL, &v));
    return GPOINTER_TO_UINT(v);
}

static void
st_set(World *w, guint64 key, MsgStatus s)
{
    guint64 *k = g_new(guint64, 1);

    *k = key;
    g_hash_table_replace(w->status, k, GUINT_TO_POINTER(s));
}

/* ------------------------------------------------------------------------- */
/* the model agent: receiving */

static gboolean
client_present(World *w, guint32 id)
{
    for (guint i = 0; i < MAX_CLIENTS; i++)
        if (w->cl[i].id == id)
            return TRUE;
    return FALSE;
}

static void
agent_rx_reset(World *w)
{
    for (guint i = 0; i < 2; i++) {
        g_byte_array_set_size(w->rx_msg[i], 0);
        w->rx_need[i] = 0;
    }
    g_byte_array_set_size(w->rxbuf, 0);
}

static void
agent_got_message(World *w, guint32 port, const guint8 *m, gsize len)
{
    VmcAgentHeader h;

    vmc_agent_header_decode(m, len, &h, NULL);
    w->checked_bytes += len;
    if (port == 2) {
        if (h.type == VD_AGENT_CLIENT_DISCONNECTED) {
            g_assert_cmpuint(h.size, ==, 0);
            /* spice-vdagentd drops its half-built port-1 message */
            g_byte_array_set_size(w->rx_msg[0], 0);
            w->rx_need[0] = 0;
        } else {
            g_assert_cmpuint(h.type, ==, VD_AGENT_MOUSE_STATE);
            g_assert_cmpuint(h.size, ==, 13);
            /* coalesced: later states may replace earlier ones, never go back */
            g_assert_cmpuint(vmc_get_u32le(m + 20), >, w->mouse_seen);
            g_assert_cmpuint(vmc_get_u32le(m + 20), <=, w->mouse_sent);
            w->mouse_seen = vmc_get_u32le(m + 20);
        }
        return;
    }
    {
        guint32 client = (guint32)(h.opaque >> 32);
        guint32 seq = (guint32)h.opaque;
        guint64 key = st_key(client, seq);
        MsgStatus s = st_get(w, key);
        gpointer last;

        if (w->max_clients > 1 && !client_present(w, client))
            check_payload_or_filler(m, len);
        else
            check_payload(m, len);
        if (s != ST_MUST && s != ST_MAYBE)
            g_error("client %u message %u arrived at the agent with status %u", client, seq, s);
        st_set(w, key, ST_DELIVERED);
        last = g_hash_table_lookup(w->last_seq, GUINT_TO_POINTER(client));
        g_assert_cmpuint(GPOINTER_TO_UINT(last), <=, seq);
        g_hash_table_replace(w->last_seq, GUINT_TO_POINTER(client), GUINT_TO_POINTER(seq + 1));
    }
}

/* The agent reads bytes the mux wrote, like spice-vdagentd does. */
static void
agent_receive(World *w, const guint8 *data, gsize len)
{
    gsize off = 0;

    g_byte_array_append(w->rxbuf, data, (guint)len);
    for (;;) {
        guint32 port, size;
        guint idx;
        const guint8 *payload;

        if (w->rxbuf->len - off < 8)
            break;
        port = vmc_get_u32le(w->rxbuf->data + off);
        size = vmc_get_u32le(w->rxbuf->data + off + 4);
        g_assert_true(port == 1 || port == 2);
        g_assert_cmpuint(size, <=, 2048); /* never more to a guest */
        g_assert_cmpuint(size, >, 0);
        if (w->rxbuf->len - off - 8 < size)
            break;
        payload = w->rxbuf->data + off + 8;
        idx = port - 1;
        if (w->rx_msg[idx]->len == 0) {
            /* a chunk that starts a message holds its whole header */
            g_assert_cmpuint(size, >=, VMC_AGENT_HEADER_SIZE);
            w->rx_need[idx] = VMC_AGENT_HEADER_SIZE + vmc_get_u32le(payload + 16);
        }
        /* never bytes of two messages in one chunk ("lost sync?") */
        g_assert_cmpuint(w->rx_msg[idx]->len + size, <=, w->rx_need[idx]);
        g_byte_array_append(w->rx_msg[idx], payload, size);
        if (w->rx_msg[idx]->len == w->rx_need[idx]) {
            g_autoptr(GByteArray) m = w->rx_msg[idx];

            w->rx_msg[idx] = g_byte_array_new();
            w->rx_need[idx] = 0;
            agent_got_message(w, port, m->data, m->len);
        }
        off += 8 + size;
    }
    g_byte_array_remove_range(w->rxbuf, 0, (guint)off);
}

/* The runtime writes some of the guest output. */
static void
write_guest(World *w, gsize max)
{
    gsize done = 0;

    while (done < max) {
        GOutputVector vec[4];
        guint n = vmc_mux_guest_output_vec(w->mux, vec, G_N_ELEMENTS(vec));
        gsize total = 0;

        if (n == 0)
            break;
        for (guint i = 0; i < n && done + total < max; i++) {
            gsize take = MIN(vec[i].size, max - done - total);

            agent_receive(w, vec[i].buffer, take);
            total += take;
        }
        vmc_mux_guest_output_advance(w->mux, total);
        done += total;
    }
}

/* ------------------------------------------------------------------------- */
/* the model agent: sending */

static void
stream_append_chunk(World *w, guint32 port, const guint8 *data, gsize len)
{
    mt_append_chunk(w->pending, port, data, len);
    w->stream_total += 8 + len;
}

/* Appends one message in chunks; returns (via pos) where its bytes are. */
static void
stream_append_msg(World *w, guint32 port, const GByteArray *m, AgentMsgPos *pos,
                  gboolean allow_interleave)
{
    guint mode = rnd(10);
    gsize off = 0;

    pos->len = m->len;
    pos->start_off = w->stream_total + 8;
    if (mode < 5) {
        /* spice-vdagentd: one chunk, whatever the size */
        stream_append_chunk(w, port, m->data, m->len);
        pos->end_off = w->stream_total;
        return;
    }
    while (off < m->len) {
        gsize max = mode < 8 ? 2048 : 1024;
        gsize want = 1 + rnd((guint32)max);
        gsize n = MIN(m->len - off, want);

        if (off == 0)
            n = MAX(n, MIN((gsize)m->len, (gsize)VMC_AGENT_HEADER_SIZE));
        stream_append_chunk(w, port, m->data + off, n);
        off += n;
        if (off < m->len && allow_interleave && port == 1 && chance(10)) {
            /* a small port-2 message between two chunks of this one */
            guint64 op = OPAQUE_PORT2 | ((guint64)w->epoch << 32) | w->p2->len;
            g_autoptr(GByteArray) m2 = make_msg(200, op, rnd(60));
            AgentMsgPos p2;

            stream_append_msg(w, 2, m2, &p2, FALSE);
            g_array_append_val(w->p2, p2);
            w->msgs++;
        }
    }
    pos->end_off = w->stream_total;
}

static void
agent_send(World *w)
{
    if (chance(15)) {
        guint64 op = OPAQUE_PORT2 | ((guint64)w->epoch << 32) | w->p2->len;
        g_autoptr(GByteArray) m = make_msg(200, op, chance(90) ? rnd(200) : rnd_size());
        AgentMsgPos pos;

        stream_append_msg(w, 2, m, &pos, FALSE);
        g_array_append_val(w->p2, pos);
    } else if (chance(10)) {
        /* two small port-1 messages in one chunk (vmcmux splits them) */
        g_autoptr(GByteArray) both = g_byte_array_new();
        AgentMsgPos pos[2];

        for (guint i = 0; i < 2; i++) {
            guint64 op = ((guint64)w->epoch << 32) | w->p1->len;
            g_autoptr(GByteArray) m = make_msg(300, op, rnd(100));

            pos[i].len = m->len;
            pos[i].start_off = w->stream_total + 8 + both->len;
            g_byte_array_append(both, m->data, m->len);
            pos[i].end_off = w->stream_total + 8 + both->len;
            g_array_append_val(w->p1, pos[i]);
        }
        stream_append_chunk(w, 1, both->data, both->len);
        w->msgs++;
    } else {
        guint64 op = ((guint64)w->epoch << 32) | w->p1->len;
        g_autoptr(GByteArray) m = make_msg(300, op, rnd_size());
        AgentMsgPos pos;

        stream_append_msg(w, 1, m, &pos, TRUE);
        g_array_append_val(w->p1, pos);
    }
    w->msgs++;
}

static void
check_limits(World *w)
{
    g_assert_cmpuint(vmc_mux_guest_output_size(w->mux), <=, w->cfg.guest_out_limit + 64 * 1024);
    for (guint i = 0; i < MAX_CLIENTS; i++) {
        MClient *c = &w->cl[i];

        if (!c->id)
            continue;
        if (vmc_mux_client_failed(w->mux, c->id, NULL)) {
            GError *error = NULL;

            vmc_mux_client_failed(w->mux, c->id, &error);
            g_error("client %u cut off: %s", c->id, error->message);
        }
        g_assert_cmpuint(mt_stats(w->mux, c->id).queued_bytes, <=, 2 * w->cfg.client_out_limit);
        g_assert_cmpuint(mt_stats(w->mux, c->id).tokens_in_use, <=, w->cfg.agent_window);
    }
}

/* The runtime feeds some guest bytes, while the mux wants them. */
static void
feed_guest(World *w, gsize max)
{
    while (max > 0 && w->pending->len > 0 && vmc_mux_guest_wants_input(w->mux)) {
        gsize want = 1 + rnd(chance(20) ? 8 : 65536);
        gsize n = MIN(MIN(max, (gsize)w->pending->len), want);

        g_assert_true(mt_feed_guest(w->mux, w->pending->data, n));
        g_byte_array_remove_range(w->pending, 0, (guint)n);
        w->fed += n;
        max -= n;
    }
    while (w->p2_delivered < w->p2->len &&
           g_array_index(w->p2, AgentMsgPos, w->p2_delivered).end_off <= w->fed) {
        /* fully fed and not seen by the callback: only if it was over 64 KiB */
        if (g_array_index(w->p2, AgentMsgPos, w->p2_delivered).len <=
            VMC_AGENT_HEADER_SIZE + 64 * 1024)
            g_error("port-2 message %u not delivered", w->p2_delivered);
        w->p2_delivered++;
    }
}

static void
on_server_msg(gpointer user_data, const VmcAgentHeader *h, const guint8 *payload, gsize len)
{
    World *w = user_data;
    guint32 seq = (guint32)h->opaque;

    g_assert_cmpuint(h->type, ==, 200);
    g_assert_true(h->opaque & OPAQUE_PORT2);
    g_assert_cmpuint((guint32)((h->opaque & ~OPAQUE_PORT2) >> 32), ==, w->epoch);
    /* messages over 64 KiB are skipped; the others come in order */
    while (w->p2_delivered < seq) {
        g_assert_cmpuint(g_array_index(w->p2, AgentMsgPos, w->p2_delivered).len, >,
                         VMC_AGENT_HEADER_SIZE + 64 * 1024);
        w->p2_delivered++;
    }
    g_assert_cmpuint(seq, ==, w->p2_delivered);
    {
        g_autofree guint8 *want = g_malloc(len + 1);

        fill_payload(want, len, h->opaque);
        g_assert_true(len == 0 || memcmp(want, payload, len) == 0);
    }
    w->p2_delivered++;
    w->checked_bytes += len;
}

/* ------------------------------------------------------------------------- */
/* the model clients */

static void
client_start(World *w, MClient *c, gboolean stale)
{
    guint32 tokens;

    if (stale && w->connected) {
        /* it answers an AGENT_CONNECTED_TOKENS of an agent that is gone: the mux
         * starts it for the current one, whose pieces then queue behind later
         * AGENT_CONNECTED*; a finite budget replaced by the next AGENT_START
         * could already be spent on them, so this client goes unlimited */
        c->unlimited = TRUE;
    }
    if (c->mux_started && c->start_epoch == w->epoch) {
        /* a second AGENT_START for the same agent (it answered a stale
         * AGENT_CONNECTED_TOKENS): the mux keeps it a recipient; the budget it
         * replaces may already be spent on queued pieces, so go unlimited */
        c->unlimited = TRUE;
        mt_start(w->mux, c->id, 0xffffffffu);
        return;
    }
    tokens = c->unlimited ? 0xffffffffu : (guint32)(1 + rnd(40));
    mt_start(w->mux, c->id, tokens);
    if (w->connected) {
        guint32 in_progress = w->p1->len;
        StartInfo *si = g_new0(StartInfo, 1);

        c->budget = tokens;
        c->mux_started = TRUE;
        c->start_epoch = w->epoch;
        /* the first message whose first byte is not fed yet; one in progress
         * before it may or may not come */
        si->must_from = w->p1->len;
        si->in_progress = -1;
        si->last_rx_seq = -1;
        si->received = g_hash_table_new(g_direct_hash, g_direct_equal);
        for (guint32 k = w->p1->len; k > 0; k--) {
            AgentMsgPos *p = &g_array_index(w->p1, AgentMsgPos, k - 1);

            if (p->start_off >= w->fed) {
                si->must_from = k - 1;
                continue;
            }
            if (p->end_off > w->fed)
                in_progress = k - 1;
            break;
        }
        if (in_progress < w->p1->len)
            si->in_progress = in_progress;
        g_hash_table_replace(c->starts, GUINT_TO_POINTER(w->epoch), si);
    }
}

static void
client_rx_data(World *w, MClient *c, const guint8 *body, gsize len)
{
    g_assert_cmpuint(len, >, 0);
    g_assert_cmpuint(len, <=, 2048);
    if (!c->unlimited) {
        g_assert_cmpint(c->budget, >, 0);
        c->budget--;
    }
    if (c->rx->len == 0)
        g_assert_cmpuint(len, >=, VMC_AGENT_HEADER_SIZE);
    g_byte_array_append(c->rx, body, (guint)len);
    {
        gsize need = VMC_AGENT_HEADER_SIZE + vmc_get_u32le(c->rx->data + 16);
        VmcAgentHeader h;
        guint32 seq, epoch;
        StartInfo *si;

        /* an AGENT_DATA never spans two messages */
        g_assert_cmpuint(c->rx->len, <=, need);
        if (c->rx->len < need)
            return;
        check_payload(c->rx->data, c->rx->len);
        vmc_agent_header_decode(c->rx->data, c->rx->len, &h, NULL);
        g_assert_false(h.opaque & OPAQUE_PORT2);
        epoch = (guint32)(h.opaque >> 32);
        seq = (guint32)h.opaque;
        /* only from an agent instance it was started in, in order */
        si = g_hash_table_lookup(c->starts, GUINT_TO_POINTER(epoch));
        g_assert_nonnull(si);
        g_assert_cmpuint(epoch, >=, c->last_rx_epoch);
        c->last_rx_epoch = epoch;
        g_assert_cmpint((gint64)seq, >, si->last_rx_seq);
        g_assert_true(seq >= si->must_from || (gint64)seq == si->in_progress);
        si->last_rx_seq = seq;
        g_hash_table_add(si->received, GUINT_TO_POINTER(seq));
        w->checked_bytes += c->rx->len;
        g_byte_array_set_size(c->rx, 0);
    }
}

/* Pops up to `max` messages, acting on them like spice-gtk. */
static gboolean
client_pop(World *w, MClient *c, guint max)
{
    VmcMuxMsg m;
    gboolean any = FALSE;

    while (max-- > 0 && vmc_mux_client_peek(w->mux, c->id, &m)) {
        guint16 type = m.type;
        guint32 v = m.len >= 4 ? vmc_get_u32le(m.data) : 0;

        any = TRUE;
        if (type == SPICE_MSG_MAIN_AGENT_DATA)
            client_rx_data(w, c, m.data, m.len);
        vmc_mux_client_pop(w->mux, c->id);
        switch (type) {
        case SPICE_MSG_MAIN_AGENT_DATA:
            break;
        case SPICE_MSG_MAIN_AGENT_TOKEN:
            c->count += v;
            g_assert_cmpint(c->count, <=, (gint64)w->cfg.agent_window);
            break;
        case SPICE_MSG_MAIN_AGENT_DISCONNECTED:
            g_assert_cmpuint(v, ==, 0);
            g_byte_array_set_size(c->rx, 0); /* spice-gtk resets its reassembly */
            break;
        case SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS:
        case SPICE_MSG_MAIN_AGENT_CONNECTED: {
            guint32 e = GPOINTER_TO_UINT(g_queue_pop_head(&c->connected_epochs));

            g_assert_cmpuint(e, !=, 0);
            if (type == SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS) {
                g_assert_cmpuint(v, ==, w->cfg.agent_window);
                c->count = v;
            }
            g_byte_array_set_size(c->rx, 0);
            client_start(w, c, e != w->epoch);
            break;
        }
        default:
            g_error("unexpected message %u", type);
        }
    }
    if (!c->unlimited && c->budget < 8 && chance(50)) {
        guint32 more = 1 + rnd(64);

        g_assert_true(vmc_mux_client_agent_token(w->mux, c->id, more, NULL));
        c->budget += more;
    }
    return any;
}

/* Sends the next AGENT_DATA of the client's current message (starting one if
 * needed), if it has a token. */
static gboolean
client_send(World *w, MClient *c)
{
    gsize n, want;

    if (c->count <= 0)
        return FALSE;
    if (!c->cur) {
        guint64 key = st_key(c->id, c->next_seq);
        guint64 op = key;

        c->cur = make_msg(400 + rnd(5), op, rnd_size());
        c->cur_off = 0;
        c->next_seq++;
        st_set(w, key, w->connected && c->mux_started ? ST_MUST : ST_DEAD);
        w->msgs++;
    }
    want = chance(70) ? 2048 : 1 + rnd(2048);
    n = MIN((gsize)c->cur->len - c->cur_off, want);
    if (c->cur_off == 0)
        n = MAX(n, (gsize)VMC_AGENT_HEADER_SIZE);
    mt_data_ok(w->mux, c->id, c->cur->data + c->cur_off, n);
    c->count--;
    c->cur_off += n;
    if (c->cur_off == c->cur->len)
        g_clear_pointer(&c->cur, g_byte_array_unref);
    return TRUE;
}

static void
client_join(World *w)
{
    for (guint i = 0; i < w->max_clients; i++) {
        MClient *c = &w->cl[i];

        if (c->id)
            continue;
        memset(c, 0, sizeof(*c));
        c->caps = chance(80) ? VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS : 0;
        c->id = vmc_mux_client_add(w->mux, c->caps);
        c->unlimited = !w->finite_tokens || chance(50);
        c->count = w->cfg.agent_window; /* INIT.agent_tokens */
        c->rx = g_byte_array_new();
        c->starts = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, start_info_free);
        c->start_epoch = w->epoch;
        g_queue_init(&c->connected_epochs);
        if (w->connected) /* INIT.agent_connected = 1 */
            client_start(w, c, FALSE);
        return;
    }
}

static void
client_clear(MClient *c)
{
    g_clear_pointer(&c->cur, g_byte_array_unref);
    g_clear_pointer(&c->rx, g_byte_array_unref);
    g_clear_pointer(&c->starts, g_hash_table_unref);
    g_queue_clear(&c->connected_epochs);
    c->id = 0;
}

static void
client_leave(World *w, MClient *c)
{
    GHashTableIter it;
    gpointer k, v;

    /* whatever it sent may or may not still arrive */
    g_hash_table_iter_init(&it, w->status);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if ((guint32)(*(guint64 *)k >> 32) == c->id && GPOINTER_TO_UINT(v) == ST_MUST)
            g_hash_table_iter_replace(&it, GUINT_TO_POINTER(ST_MAYBE));
    }
    vmc_mux_client_remove(w->mux, c->id);
    client_clear(c);
}

/* ------------------------------------------------------------------------- */
/* agent lifecycle */

static void
agent_connect(World *w)
{
    w->connected = TRUE;
    w->epoch++;
    g_array_set_size(w->p1, 0);
    g_array_set_size(w->p2, 0);
    w->p2_delivered = 0;
    g_byte_array_set_size(w->pending, 0);
    w->stream_total = 0;
    w->fed = 0;
    w->mouse_sent = w->mouse_seen = 0;
    agent_rx_reset(w);
    vmc_mux_guest_connected(w->mux);
    for (guint i = 0; i < MAX_CLIENTS; i++)
        if (w->cl[i].id)
            g_queue_push_tail(&w->cl[i].connected_epochs, GUINT_TO_POINTER(w->epoch));
}

static void
agent_disconnect(World *w)
{
    GHashTableIter it;
    gpointer v;

    w->connected = FALSE;
    vmc_mux_guest_disconnected(w->mux);
    agent_rx_reset(w); /* the transport and the agent process are gone */
    /* nothing from before may reach the next agent */
    g_hash_table_iter_init(&it, w->status);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        if (GPOINTER_TO_UINT(v) == ST_MUST || GPOINTER_TO_UINT(v) == ST_MAYBE)
            g_hash_table_iter_replace(&it, GUINT_TO_POINTER(ST_DEAD));
    }
    for (guint i = 0; i < MAX_CLIENTS; i++)
        w->cl[i].mux_started = FALSE;
    g_byte_array_set_size(w->pending, 0);
}

/* ------------------------------------------------------------------------- */
/* checkpoint: drain everything and check completeness */

static void
drain(World *w)
{
    for (guint round = 0;; round++) {
        gboolean progress = FALSE;
        guint64 fed = w->fed;

        g_assert_cmpuint(round, <, 100000);
        feed_guest(w, G_MAXSIZE);
        progress |= w->fed != fed;
        if (vmc_mux_guest_output_size(w->mux) > 0) {
            write_guest(w, G_MAXSIZE);
            progress = TRUE;
        }
        for (guint i = 0; i < MAX_CLIENTS; i++) {
            MClient *c = &w->cl[i];

            if (!c->id)
                continue;
            progress |= client_pop(w, c, G_MAXUINT);
            if (!c->unlimited) {
                g_assert_true(vmc_mux_client_agent_token(w->mux, c->id, 1000, NULL));
                c->budget += 1000;
            }
            /* finish a half-sent message */
            while (c->cur && client_send(w, c))
                progress = TRUE;
        }
        if (!progress && w->pending->len == 0)
            break;
    }
}

static void
checkpoint(World *w)
{
    GHashTableIter it;
    gpointer k, v;

    drain(w);
    g_assert_cmpuint(vmc_mux_guest_output_size(w->mux), ==, 0);
    g_assert_cmpuint(w->rxbuf->len, ==, 0);
    g_hash_table_iter_init(&it, w->status);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        guint64 key = *(guint64 *)k;

        if (GPOINTER_TO_UINT(v) == ST_MUST)
            g_error("client %u message %u never reached the agent", (guint32)(key >> 32),
                    (guint32)key);
    }
    if (w->connected) {
        g_assert_cmpuint(w->p2_delivered, <=, w->p2->len);
        for (guint s = w->p2_delivered; s < w->p2->len; s++)
            g_assert_cmpuint(g_array_index(w->p2, AgentMsgPos, s).len, >,
                             VMC_AGENT_HEADER_SIZE + 64 * 1024);
        g_assert_cmpuint(w->mouse_seen, ==, w->mouse_sent);
    }
    for (guint i = 0; i < MAX_CLIENTS; i++) {
        MClient *c = &w->cl[i];
        VmcMuxStats s;
        StartInfo *si;

        if (!c->id)
            continue;
        s = mt_stats(w->mux, c->id);
        /* every token is back, nothing is queued */
        g_assert_cmpint(c->count, ==, (gint64)w->cfg.agent_window);
        g_assert_cmpuint(s.tokens_in_use, ==, 0);
        g_assert_cmpuint(s.queued_bytes, ==, 0);
        if (!c->mux_started || !w->connected)
            continue;
        si = g_hash_table_lookup(c->starts, GUINT_TO_POINTER(w->epoch));
        g_assert_nonnull(si);
        for (guint32 seq = si->must_from; seq < w->p1->len; seq++) {
            if (!g_hash_table_contains(si->received, GUINT_TO_POINTER(seq)))
                g_error("client %u did not get agent message %u (epoch %u)", c->id, seq,
                        w->epoch);
        }
    }
}

/* ------------------------------------------------------------------------- */

static void
step(World *w)
{
    guint r = rnd(100);
    MClient *c = &w->cl[rnd(w->max_clients)];

    if (r < 20) {
        if (w->connected)
            agent_send(w);
    } else if (r < 35) {
        feed_guest(w, chance(50) ? 1 + rnd(100) : 1 + rnd(200000));
    } else if (r < 55) {
        if (c->id)
            for (guint n = 1 + rnd(chance(50) ? 4 : 64); n > 0 && client_send(w, c); n--)
                ;
    } else if (r < 70) {
        write_guest(w, chance(30) ? 1 + rnd(100) : 1 + rnd(300000));
    } else if (r < 88) {
        if (c->id)
            client_pop(w, c, 1 + rnd(chance(50) ? 8 : 2000));
    } else if (r < 89) {
        if (w->connected) {
            guint8 s[13] = { 0 };

            vmc_put_u32le(s, ++w->mouse_sent);
            g_assert_true(vmc_mux_send_server_message(w->mux, VD_AGENT_MOUSE_STATE, s, 13, NULL));
        }
    } else if (r < 89 + w->join_leave_weight) {
        if (c->id && chance(50))
            client_leave(w, c);
        else
            client_join(w);
    } else if (r < 89 + w->join_leave_weight + w->reconnect_weight) {
        if (w->connected)
            agent_disconnect(w);
        else
            agent_connect(w);
    } else if (r < 99) {
        if (!w->connected)
            agent_connect(w);
    } else {
        if (chance(20))
            checkpoint(w);
    }
    check_limits(w);
}

typedef struct {
    const char *name;
    guint max_clients;
    guint target_msgs;
    gboolean finite_tokens;
    guint join_leave_weight;
    guint reconnect_weight;
} Scenario;

static void
run_scenario(gconstpointer data)
{
    const Scenario *sc = data;
    World w = { 0 };
    guint target = sc->target_msgs;
    const char *env = g_getenv("VMC_MUX_RANDOM_MSGS");

    if (env)
        target = (guint)g_ascii_strtoull(env, NULL, 10);
    if (g_test_slow())
        target *= 10;
    w.max_clients = sc->max_clients;
    w.finite_tokens = sc->finite_tokens;
    w.join_leave_weight = sc->join_leave_weight;
    w.reconnect_weight = sc->reconnect_weight;
    vmc_mux_config_init(&w.cfg);
    w.cfg.max_clients = sc->max_clients;
    w.mux = vmc_mux_new(&w.cfg);
    vmc_mux_set_server_message_func(w.mux, on_server_msg, &w);
    vmc_mux_tick(w.mux, 0);
    w.pending = g_byte_array_new();
    w.p1 = g_array_new(FALSE, FALSE, sizeof(AgentMsgPos));
    w.p2 = g_array_new(FALSE, FALSE, sizeof(AgentMsgPos));
    w.rxbuf = g_byte_array_new();
    w.rx_msg[0] = g_byte_array_new();
    w.rx_msg[1] = g_byte_array_new();
    w.status = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    w.last_seq = g_hash_table_new(g_direct_hash, g_direct_equal);

    client_join(&w);
    agent_connect(&w);
    while (w.msgs < target)
        step(&w);
    if (!w.connected)
        agent_connect(&w);
    checkpoint(&w);
    g_test_message("%s: %u messages, %" G_GUINT64_FORMAT " bytes checked", sc->name, w.msgs,
                   w.checked_bytes);

    for (guint i = 0; i < MAX_CLIENTS; i++)
        if (w.cl[i].id)
            client_clear(&w.cl[i]);
    vmc_mux_free(w.mux);
    g_byte_array_unref(w.pending);
    g_array_unref(w.p1);
    g_array_unref(w.p2);
    g_byte_array_unref(w.rxbuf);
    g_byte_array_unref(w.rx_msg[0]);
    g_byte_array_unref(w.rx_msg[1]);
    g_hash_table_unref(w.status);
    g_hash_table_unref(w.last_seq);
}

static const Scenario scenarios[] = {
    { "single-unlimited", 1, 5000, FALSE, 0, 1 },
    { "single-finite", 1, 5000, TRUE, 0, 1 },
    { "multi", 4, 5000, TRUE, 2, 1 },
    { "churn", 4, 5000, TRUE, 5, 3 },
};

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Seeded randomized model test of the multiplexer core; "
                   "VMC_MUX_RANDOM_MSGS=N changes the length, -m slow multiplies it by 10");

    for (guint i = 0; i < G_N_ELEMENTS(scenarios); i++) {
        g_autofree gchar *path = g_strdup_printf("/mux-random/%s", scenarios[i].name);

        g_test_add_data_func(path, &scenarios[i], run_scenario);
    }
    return g_test_run();
}
