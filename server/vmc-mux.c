/* vmc-mux.c — the multiplexer core: one guest agent port, N client sessions.
 *
 * Sans-I/O. The rules and defaults are documented in docs/mux.md; the comments
 * here say how they are implemented.
 *
 * Data paths:
 *
 *   guest bytes -> VmcChunkDecoder -> per-port VmcAgentTracker
 *       port 1: cut into pieces of <= 2048 bytes that never span two messages;
 *               each piece is one GBytes shared by the client queues of the
 *               message's recipients (held back per client while its send budget
 *               is 0).
 *       port 2: whole messages up to 64 KiB go to the server-message callback.
 *
 *   client AGENT_DATA -> per-client VmcAgentTracker (unit rules) -> disposition of
 *       the message (forward, drop, answer locally) -> the client's staging queue
 *       of ready-made chunks -> the scheduler moves whole messages, round robin
 *       between clients, into the guest output while it is under its limit.
 *       A token goes back to the client when its chunk has been written
 *       (vmc_mux_guest_output_advance) or when the unit was dropped.
 *
 * With max_clients > 1 the shared-agent rules of vmc-mux-share.c decide the
 * disposition and routing of messages (docs/sharing.md); this file calls them at
 * a client message's start and end, at an agent message's first piece, and when
 * a client leaves. The state both files use is in vmc-mux-private.h.
 */
#include "server/vmc-mux-private.h"

#include <string.h>
#include <spice/enums.h>

G_DEFINE_QUARK(vmc-mux-error-quark, vmc_mux_error)

/* ------------------------------------------------------------------------- */
/* constants */

#define DEFAULT_AGENT_WINDOW 512u                 /* x 2 KiB = 1 MiB in flight per client */
#define DEFAULT_CLIENT_OUT_LIMIT (1024u * 1024u)  /* bytes queued towards one client */
#define DEFAULT_GUEST_OUT_LIMIT (256u * 1024u)    /* bytes queued towards the guest */
#define DEFAULT_STALL_TIMEOUT_US (30 * G_USEC_PER_SEC)

#define MIN_CLIENT_OUT_LIMIT (4u * VMC_CHUNK_MAX_PAYLOAD)
#define MIN_GUEST_OUT_LIMIT (2u * (VMC_CHUNK_HEADER_SIZE + VMC_CHUNK_MAX_PAYLOAD))
#define MAX_TOKEN_BATCH 32u

#define SERVER_MSG_MAX (64u * 1024u)  /* port-2 messages handed to the callback */

/* ------------------------------------------------------------------------- */
/* small helpers */

static gboolean
multi_client(VmcMux *mux)
{
    return mux->cfg.max_clients > 1;
}

static guint32
sat_add32(guint32 a, guint32 b)
{
    return a > G_MAXUINT32 - b ? G_MAXUINT32 : a + b;
}

static void
notify(VmcMux *mux, guint32 client_id)
{
    if (mux->notify)
        mux->notify(mux->notify_data, client_id);
}

static void
tap(VmcMux *mux, VmcMuxDirection dir, guint32 client_id, guint32 port, const guint8 *data,
    gsize len, guint flags)
{
    if (mux->tap)
        mux->tap(mux->tap_data, dir, client_id, port, data, len, flags);
}

static Client *
client_lookup(VmcMux *mux, guint32 id)
{
    return id ? g_hash_table_lookup(mux->by_id, GUINT_TO_POINTER(id)) : NULL;
}

Client *
vmc_mux_core_lookup(VmcMux *mux, guint32 id)
{
    return client_lookup(mux, id);
}

static gboolean
is_clipboard_type(guint32 type)
{
    return type == VD_AGENT_CLIPBOARD || type == VD_AGENT_CLIPBOARD_GRAB ||
           type == VD_AGENT_CLIPBOARD_REQUEST || type == VD_AGENT_CLIPBOARD_RELEASE;
}

static gboolean
is_file_xfer_type(guint32 type)
{
    return type == VD_AGENT_FILE_XFER_START || type == VD_AGENT_FILE_XFER_STATUS ||
           type == VD_AGENT_FILE_XFER_DATA;
}

/* Header + payload of one agent message, as a new GBytes. */
GBytes *
vmc_mux_core_agent_msg_new(guint32 type, const guint8 *payload, gsize len)
{
    VmcAgentHeader h = { VMC_AGENT_PROTOCOL, type, 0, (guint32)len };
    guint8 *buf;

    g_assert(len <= G_MAXUINT32 - VMC_AGENT_HEADER_SIZE);
    buf = g_malloc(VMC_AGENT_HEADER_SIZE + len);
    vmc_agent_header_encode(&h, buf);
    if (len > 0)
        memcpy(buf + VMC_AGENT_HEADER_SIZE, payload, len);
    return g_bytes_new_take(buf, VMC_AGENT_HEADER_SIZE + len);
}

/* ------------------------------------------------------------------------- */
/* piece queues (towards the guest) */

static Piece *
piece_new(guint32 port, const guint8 *payload, gsize len)
{
    Piece *p;

    g_assert(len <= VMC_CHUNK_MAX_PAYLOAD);
    p = g_malloc(sizeof(Piece) + VMC_CHUNK_HEADER_SIZE + len);
    p->next = NULL;
    p->client_id = 0;
    p->msg_type = 0;
    p->flags = 0;
    p->len = VMC_CHUNK_HEADER_SIZE + len;
    vmc_chunk_header_encode(port, (guint32)len, p->data);
    if (len > 0)
        memcpy(p->data + VMC_CHUNK_HEADER_SIZE, payload, len);
    return p;
}

static void
pq_push(PieceQueue *q, Piece *p)
{
    p->next = NULL;
    if (q->tail)
        q->tail->next = p;
    else
        q->head = p;
    q->tail = p;
    q->bytes += p->len;
    q->count++;
    if (p->flags & PIECE_END)
        q->ends++;
}

static Piece *
pq_pop(PieceQueue *q)
{
    Piece *p = q->head;

    if (!p)
        return NULL;
    q->head = p->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= p->len;
    q->count--;
    if (p->flags & PIECE_END)
        q->ends--;
    p->next = NULL;
    return p;
}

/* ------------------------------------------------------------------------- */
/* client output queues */

static void
om_free(OutMsg *m)
{
    if (m->bytes)
        g_bytes_unref(m->bytes);
    g_free(m);
}

static void
oq_push(OutQueue *q, OutMsg *m)
{
    m->next = NULL;
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->bytes += m->len;
    q->count++;
}

static OutMsg *
oq_pop(OutQueue *q)
{
    OutMsg *m = q->head;

    if (!m)
        return NULL;
    q->head = m->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= m->len;
    q->count--;
    m->next = NULL;
    return m;
}

static void
oq_clear(OutQueue *q)
{
    OutMsg *m;

    while ((m = oq_pop(q)))
        om_free(m);
}

static gsize
client_queued(const Client *c)
{
    return c->out.bytes + c->held.bytes + c->inject.bytes;
}

static void
client_note_queued(Client *c)
{
    c->stats.queued_bytes = client_queued(c);
    c->stats.queued_peak = MAX(c->stats.queued_peak, c->stats.queued_bytes);
}

static void client_cut_off(VmcMux *mux, Client *c, VmcMuxError code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

/* Appends to the visible queue and wakes the runtime when it was empty. */
static void
client_out_push(VmcMux *mux, Client *c, OutMsg *m)
{
    gboolean was_empty = c->out.head == NULL;

    oq_push(&c->out, m);
    client_note_queued(c);
    if (was_empty)
        notify(mux, c->id);
}

/* Hard bound on what a client that does not read may pile up: twice the soft
 * limit (guest input is already paused at the soft limit), and a count bound for
 * the small control messages. */
static gboolean
client_over_hard_limit(VmcMux *mux, Client *c)
{
    gsize max_items = 2 * (mux->cfg.client_out_limit / VMC_CHUNK_MAX_PAYLOAD) + 1024;

    return client_queued(c) > 2 * mux->cfg.client_out_limit ||
           c->out.count + c->held.count + c->inject.count > max_items;
}

static void
client_queue_ctl(VmcMux *mux, Client *c, guint16 type, const guint8 *body, gsize len)
{
    OutMsg *m;

    g_assert(len <= sizeof(m->small));
    if (c->left)
        return;
    m = g_new0(OutMsg, 1);
    m->type = type;
    m->len = len;
    if (len > 0)
        memcpy(m->small, body, len);
    client_out_push(mux, c, m);
    if (client_over_hard_limit(mux, c))
        client_cut_off(mux, c, VMC_MUX_ERROR_TOO_LARGE,
                       "client %u does not read its queue (%" G_GSIZE_FORMAT " bytes)", c->id,
                       client_queued(c));
}

static void
client_queue_u32(VmcMux *mux, Client *c, guint16 type, guint32 value)
{
    guint8 body[4];

    vmc_put_u32le(body, value);
    client_queue_ctl(mux, c, type, body, sizeof(body));
}

/* AGENT_TOKEN, merged into a queued one the runtime has not seen yet. */
static void
client_queue_token(VmcMux *mux, Client *c, guint32 n)
{
    OutMsg *tail = c->out.tail;

    if (c->left || n == 0)
        return;
    c->stats.tokens_granted += n;
    if (tail && tail->type == SPICE_MSG_MAIN_AGENT_TOKEN && !tail->peeked) {
        vmc_put_u32le(tail->small, sat_add32(vmc_get_u32le(tail->small), n));
        return;
    }
    client_queue_u32(mux, c, SPICE_MSG_MAIN_AGENT_TOKEN, n);
}

static gboolean
budget_take(Client *c)
{
    if (c->budget == G_MAXUINT32)
        return TRUE;
    if (c->budget == 0)
        return FALSE;
    c->budget--;
    return TRUE;
}

/* Moves AGENT_DATA that waited for budget into the visible queue. */
static void
client_release_held(VmcMux *mux, Client *c)
{
    while (c->held.head && budget_take(c))
        client_out_push(mux, c, oq_pop(&c->held));
}

/* One AGENT_DATA body towards a client, within its budget. */
static void
client_queue_data(VmcMux *mux, Client *c, GBytes *bytes, gboolean msg_end)
{
    OutMsg *m;

    if (c->left)
        return;
    m = g_new0(OutMsg, 1);
    m->type = SPICE_MSG_MAIN_AGENT_DATA;
    m->bytes = g_bytes_ref(bytes);
    m->len = g_bytes_get_size(bytes);
    m->msg_end = msg_end;
    if (!c->held.head && budget_take(c)) {
        client_out_push(mux, c, m);
    } else {
        oq_push(&c->held, m);
        client_note_queued(c);
    }
    if (client_over_hard_limit(mux, c))
        client_cut_off(mux, c, VMC_MUX_ERROR_TOO_LARGE,
                       "client %u does not read its queue (%" G_GSIZE_FORMAT " bytes)", c->id,
                       client_queued(c));
}

/* Queues the mux-made messages that waited for the client's stream to reach a
 * message boundary. */
static void
client_flush_inject(VmcMux *mux, Client *c)
{
    OutMsg *m;

    while (!c->left && !c->rx_in_message && (m = oq_pop(&c->inject))) {
        client_queue_data(mux, c, m->bytes, TRUE);
        om_free(m);
    }
    if (!c->left)
        client_note_queued(c);
}

/* A whole agent message made by the mux, for one client: goes in between the
 * agent's messages, never inside one. */
static void
client_inject(VmcMux *mux, Client *c, GBytes *msg)
{
    OutMsg *m;

    if (c->left)
        return;
    m = g_new0(OutMsg, 1);
    m->type = SPICE_MSG_MAIN_AGENT_DATA;
    m->bytes = g_bytes_ref(msg);
    m->len = g_bytes_get_size(msg);
    m->msg_end = TRUE;
    oq_push(&c->inject, m);
    client_flush_inject(mux, c);
}

void
vmc_mux_core_inject(VmcMux *mux, Client *c, GBytes *msg)
{
    client_inject(mux, c, msg);
}

/* ------------------------------------------------------------------------- */
/* client -> agent tokens */

static void
client_maybe_return_tokens(VmcMux *mux, Client *c)
{
    if (c->left || c->unreturned == 0)
        return;
    /* Small batches, and everything as soon as nothing of this client is in flight:
     * a client that spent its whole window is never left waiting. */
    if (c->unreturned >= mux->token_batch || c->in_flight == 0) {
        client_queue_token(mux, c, c->unreturned);
        c->unreturned = 0;
    }
}

/* A charged unit was written to the guest or dropped. */
static void
client_release_token(VmcMux *mux, Client *c)
{
    if (!c || c->left)
        return;
    g_assert(c->in_flight > 0);
    c->in_flight--;
    c->unreturned++;
    client_maybe_return_tokens(mux, c);
}

static guint32
client_tokens_used(const Client *c)
{
    return c->in_flight + c->unreturned;
}

/* ------------------------------------------------------------------------- */
/* guest output */

static gsize
gout_pending(VmcMux *mux)
{
    return mux->gout.bytes - mux->gout_off;
}

static void
gout_push(VmcMux *mux, Piece *p)
{
    gboolean was_empty = mux->gout.head == NULL;

    pq_push(&mux->gout, p);
    mux->gstats.queued_bytes = gout_pending(mux);
    mux->gstats.queued_peak = MAX(mux->gstats.queued_peak, mux->gstats.queued_bytes);
    if (was_empty)
        notify(mux, 0);
}

/* A piece leaves the mux without being written (agent gone, client gone). */
static void
piece_discard(VmcMux *mux, Piece *p, gboolean return_token)
{
    if (return_token && (p->flags & PIECE_CHARGED))
        client_release_token(mux, client_lookup(mux, p->client_id));
    g_free(p);
}

static void
gout_clear(VmcMux *mux)
{
    Piece *p;

    while ((p = pq_pop(&mux->gout)))
        piece_discard(mux, p, TRUE);
    while ((p = pq_pop(&mux->srv_pending)))
        piece_discard(mux, p, FALSE);
    mux->gout_off = 0;
    mux->gstats.queued_bytes = 0;
}

/* ------------------------------------------------------------------------- */
/* scheduler */

/* Whether the client has a message that may start on the port. With a shared agent
 * a message starts only once it is whole (or once `whole_units` of it are staged, so
 * a bigger one cannot deadlock on the client's window): a slow or stalled sender
 * then never holds the port mid-message for messages of up to 33 AGENT_DATA
 * (spice-gtk's 64 KiB FILE_XFER_DATA), and a client that dies mid-message leaves
 * nothing half-written. */
static gboolean
client_ready(VmcMux *mux, Client *c)
{
    if (c->left || !c->staged.head)
        return FALSE;
    if (!multi_client(mux))
        return TRUE;
    return c->staged.ends > 0 || c->staged.count >= mux->whole_units;
}

static Client *
pick_next_client(VmcMux *mux)
{
    guint n = mux->clients->len;

    for (guint i = 0; i < n; i++) {
        guint idx = (mux->rr_next + i) % n;
        Client *c = g_ptr_array_index(mux->clients, idx);

        if (client_ready(mux, c)) {
            mux->rr_next = (idx + 1) % n;
            return c;
        }
    }
    return NULL;
}

/* Moves one whole mux-made message from srv_pending into the guest output. */
static void
move_server_message(VmcMux *mux)
{
    Piece *p;

    do {
        p = pq_pop(&mux->srv_pending);
        g_assert(p);
        gout_push(mux, p);
    } while (!(p->flags & PIECE_END));
}

/* Remembers where the client message that holds the port stands, for a filler. */
static void
track_port_message(VmcMux *mux, const Piece *p)
{
    const guint8 *payload = p->data + VMC_CHUNK_HEADER_SIZE;
    gsize n = p->len - VMC_CHUNK_HEADER_SIZE;

    if (p->flags & PIECE_START) {
        /* a client unit that starts a message holds its whole header */
        g_assert(n >= VMC_AGENT_HEADER_SIZE);
        mux->port_msg_type = vmc_get_u32le(payload + 4);
        mux->port_msg_total = VMC_AGENT_HEADER_SIZE + (guint64)vmc_get_u32le(payload + 16);
        mux->port_msg_sent = 0;
        mux->port_msg_head_len = MIN(n, sizeof(mux->port_msg_head));
        memcpy(mux->port_msg_head, payload, mux->port_msg_head_len);
    }
    mux->port_msg_sent += n;
}

/* The next chunk of zeros that completes a departed client's message. */
static Piece *
filler_piece(VmcMux *mux)
{
    gsize n = (gsize)MIN(mux->filler_left, (guint64)VMC_CHUNK_MAX_PAYLOAD);
    Piece *p = g_malloc0(sizeof(Piece) + VMC_CHUNK_HEADER_SIZE + n);

    p->len = VMC_CHUNK_HEADER_SIZE + n;
    vmc_chunk_header_encode(VMC_PORT_CLIENT, (guint32)n, p->data);
    mux->filler_left -= n;
    if (mux->filler_left == 0) {
        p->flags |= PIECE_END;
        mux->port_owner = 0;
    }
    return p;
}

/* Fills the guest output from the staging queues: whole messages, round robin
 * between clients, switching only at message boundaries. */
static void
pump(VmcMux *mux)
{
    if (!mux->guest_connected)
        return;
    for (;;) {
        Client *c;
        Piece *p;

        if (gout_pending(mux) >= mux->cfg.guest_out_limit)
            break;
        if (mux->port_owner == 0 && mux->srv_pending.head) {
            move_server_message(mux);
            continue;
        }
        if (mux->port_owner == FILLER_OWNER) {
            gout_push(mux, filler_piece(mux));
            continue;
        }
        if (mux->port_owner == 0) {
            c = pick_next_client(mux);
            if (!c)
                break;
            g_assert(c->staged.head->flags & PIECE_START);
            mux->port_owner = c->id;
        } else {
            c = client_lookup(mux, mux->port_owner);
            g_assert(c && !c->left);
            if (!c->staged.head)
                break; /* the owner has not sent the rest yet */
        }
        p = pq_pop(&c->staged);
        if ((p->flags & PIECE_START) && multi_client(mux))
            vmc_mux_share_piece_out(mux, p);
        track_port_message(mux, p);
        if (c->stall_kind == STALL_HOLD)
            c->stall_since = -1; /* progress */
        if (p->flags & PIECE_END)
            mux->port_owner = 0;
        gout_push(mux, p);
    }
}

/* ------------------------------------------------------------------------- */
/* server messages to the agent */

static gboolean
is_coalesced_type(guint32 type)
{
    return type == VD_AGENT_MOUSE_STATE || type == VD_AGENT_GRAPHICS_DEVICE_INFO;
}

/* Replaces a queued, not yet started single-chunk message of the same type. */
static gboolean
coalesce_server_chunk(VmcMux *mux, Piece *np)
{
    Piece *prev = NULL;

    for (Piece *p = mux->gout.head; p; prev = p, p = p->next) {
        if (p->client_id != 0 || p->msg_type != np->msg_type ||
            (p->flags & (PIECE_START | PIECE_END)) != (PIECE_START | PIECE_END) ||
            (p == mux->gout.head && mux->gout_off > 0) ||
            vmc_get_u32le(p->data) != VMC_PORT_SERVER)
            continue;
        if (p->len == np->len) {
            memcpy(p->data, np->data, np->len);
            g_free(np);
            return TRUE;
        }
        /* different size: unlink the old one, the new one goes to the tail */
        if (prev)
            prev->next = p->next;
        else
            mux->gout.head = p->next;
        if (mux->gout.tail == p)
            mux->gout.tail = prev;
        mux->gout.bytes -= p->len;
        mux->gout.count--;
        if (p->flags & PIECE_END)
            mux->gout.ends--;
        g_free(p);
        return FALSE;
    }
    return FALSE;
}

/* Queues one mux-made agent message on `port`. Single-chunk port-2 messages go
 * out at the next chunk boundary, even inside a client's port-1 message (agents
 * reassemble each port separately); anything longer, anything on port 1, and a
 * CLIENT_DISCONNECTED the mux does not mean as a reset (it makes the agent drop
 * its half-built port-1 message) waits for a port-1 message boundary and then
 * goes out whole. */
static void
queue_mux_message(VmcMux *mux, guint32 port, guint32 type, const guint8 *payload, gsize len,
                  gboolean reset)
{
    VmcAgentHeader h = { VMC_AGENT_PROTOCOL, type, 0, (guint32)len };
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    gsize total = VMC_AGENT_HEADER_SIZE + len;
    gsize off = 0;
    PieceQueue tmp = { NULL, NULL, 0, 0, 0 };
    guint8 *msg;

    g_assert(len <= SERVER_SEND_MAX);
    vmc_agent_header_encode(&h, hdr);
    msg = g_malloc(total);
    memcpy(msg, hdr, sizeof(hdr));
    if (len > 0)
        memcpy(msg + VMC_AGENT_HEADER_SIZE, payload, len);
    tap(mux, port == VMC_PORT_SERVER ? VMC_MUX_DIR_SERVER_AGENT : VMC_MUX_DIR_CLIENT_AGENT, 0,
        port, msg, total, VMC_AGENT_SPAN_START | VMC_AGENT_SPAN_END);

    while (off < total) {
        gsize n = MIN(total - off, (gsize)VMC_CHUNK_MAX_PAYLOAD);
        Piece *p = piece_new(port, msg + off, n);

        p->msg_type = type;
        if (off == 0)
            p->flags |= PIECE_START;
        off += n;
        if (off == total)
            p->flags |= PIECE_END;
        pq_push(&tmp, p);
    }
    g_free(msg);

    if (port == VMC_PORT_SERVER && tmp.head == tmp.tail &&
        (type != VD_AGENT_CLIENT_DISCONNECTED || reset || mux->port_owner == 0)) {
        Piece *p = tmp.head;

        if (is_coalesced_type(type) && coalesce_server_chunk(mux, p))
            return;
        gout_push(mux, p);
        return;
    }
    while (tmp.head)
        pq_push(&mux->srv_pending, pq_pop(&tmp));
}

static void
send_client_disconnected(VmcMux *mux)
{
    queue_mux_message(mux, VMC_PORT_SERVER, VD_AGENT_CLIENT_DISCONNECTED, NULL, 0, TRUE);
}

void
vmc_mux_core_queue_message(VmcMux *mux, guint32 port, guint32 type, const guint8 *payload,
                           gsize len)
{
    queue_mux_message(mux, port, type, payload, len, FALSE);
}

/* ------------------------------------------------------------------------- */
/* staging (client -> guest) */

/* A whole message of the client's own, already paid for: cut into chunks at the
 * tail of its staging queue, so it keeps its place among the client's messages. */
void
vmc_mux_core_stage(VmcMux *mux, Client *c, const guint8 *msg, gsize len)
{
    gsize off = 0;

    g_assert(len >= VMC_AGENT_HEADER_SIZE);
    while (off < len) {
        gsize n = MIN(len - off, (gsize)VMC_CHUNK_MAX_PAYLOAD);
        Piece *p = piece_new(VMC_PORT_CLIENT, msg + off, n);

        p->client_id = c->id;
        p->msg_type = vmc_get_u32le(msg + 4);
        if (off == 0)
            p->flags |= PIECE_START;
        off += n;
        if (off == len)
            p->flags |= PIECE_END;
        pq_push(&c->staged, p);
    }
    c->stats.discarded -= MIN(c->stats.discarded, (guint64)len);
}

/* ------------------------------------------------------------------------- */
/* leaving clients */

static gsize
active_clients(VmcMux *mux)
{
    gsize n = 0;

    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (!c->left)
            n++;
    }
    return n;
}

/* Everything that happens when a client goes, whether removed by the runtime or
 * cut off by the mux. Done once. */
static void
client_leave(VmcMux *mux, Client *c)
{
    gboolean held_port;
    Piece *p;

    if (c->left)
        return;
    c->left = TRUE;
    held_port = mux->port_owner == c->id;
    if (held_port)
        mux->port_owner = 0;
    while ((p = pq_pop(&c->staged)))
        g_free(p);
    oq_clear(&c->out);
    oq_clear(&c->held);
    oq_clear(&c->inject);
    client_note_queued(c);
    c->stats.queued_bytes = 0;
    c->stall_since = -1;
    c->stall_kind = STALL_NONE;

    if (!mux->guest_connected)
        return;

    /* Shared agent, others stay: the mux completes a half-written message with
     * filler and undoes the leaver's transfers and clipboard ownership on its
     * behalf, so the agent's state for the others stays (docs/sharing.md). */
    if (multi_client(mux) && active_clients(mux) > 0 &&
        vmc_mux_share_client_leave(mux, c, held_port))
        return;

    /* CLIENT_DISCONNECTED when the last client goes (as the reference does), and
     * (single client) when the leaver had begun a message on port 1 that will never
     * end: the agent then drops its half-built message (spice-vdagentd resets its
     * port-1 reassembly on it) so the port stays in sync. */
    if (held_port || active_clients(mux) == 0) {
        if (mux->port_owner == FILLER_OWNER) {
            /* the agent drops its half-built message on the reset: no more filler */
            mux->port_owner = 0;
            mux->filler_left = 0;
        }
        send_client_disconnected(mux);
        if (multi_client(mux))
            vmc_mux_share_agent_forgot(mux);
    }
}

static void
client_cut_off(VmcMux *mux, Client *c, VmcMuxError code, const char *fmt, ...)
{
    va_list ap;
    gchar *msg;

    if (c->left)
        return;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_debug("mux: %s", msg);
    c->error = g_error_new_literal(VMC_MUX_ERROR, code, msg);
    g_free(msg);
    client_leave(mux, c);
    notify(mux, c->id);
}

/* ------------------------------------------------------------------------- */
/* agent lifecycle */

static void
guest_rx_reset(VmcMux *mux)
{
    vmc_chunk_decoder_init(&mux->dec);
    for (guint i = 0; i < 2; i++) {
        vmc_agent_tracker_init(&mux->rx_track[i]);
        mux->rx_msg_off[i] = 0;
        mux->rx_in_msg[i] = FALSE;
    }
    mux->rx_piece_len = 0;
    mux->rx_piece_first = FALSE;
    mux->rx_drop = FALSE;
    mux->rx_recipients = 0;
    if (mux->srv_msg) {
        g_byte_array_unref(mux->srv_msg);
        mux->srv_msg = NULL;
    }
    mux->srv_skip = FALSE;
}

static void
agent_state_reset(VmcMux *mux)
{
    mux->have_agent_caps = FALSE;
    mux->agent_ncaps = 0;
    mux->filler_left = 0;
    vmc_mux_share_reset(mux);
}

static void
guest_gone(VmcMux *mux)
{
    mux->guest_connected = FALSE;
    gout_clear(mux); /* returns the tokens of charged chunks */
    mux->port_owner = 0;
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);
        Piece *p;

        if (c->left)
            continue;
        while ((p = pq_pop(&c->staged)))
            piece_discard(mux, p, TRUE);
        /* the rest of a half-sent message is dropped, even after a new AGENT_START */
        if (c->tracker.in_message) {
            c->disp = DISP_DROP;
            c->answer = ANSWER_NONE;
        }
        c->started = FALSE;
        c->rx_in_message = FALSE;
        oq_clear(&c->held);
        oq_clear(&c->inject);
        /* all tokens back before AGENT_DISCONNECTED: a client without
         * AGENT_CONNECTED_TOKENS never has its count reset */
        if (c->unreturned > 0) {
            client_queue_token(mux, c, c->unreturned);
            c->unreturned = 0;
        }
        g_assert(c->in_flight == 0);
        client_queue_u32(mux, c, SPICE_MSG_MAIN_AGENT_DISCONNECTED, 0);
        client_note_queued(c);
    }
    guest_rx_reset(mux);
    agent_state_reset(mux);
}

/* ------------------------------------------------------------------------- */
/* stalls and flow */

static gboolean
others_wait_for_port(VmcMux *mux, Client *owner)
{
    if (mux->srv_pending.head)
        return TRUE;
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (c != owner && client_ready(mux, c))
            return TRUE;
    }
    return FALSE;
}

static gboolean
another_client_starved(VmcMux *mux, Client *slow)
{
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (c != slow && !c->left && c->started && !c->over_limit)
            return TRUE;
    }
    return FALSE;
}

static void
update_limits(VmcMux *mux)
{
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);
        gsize q = client_queued(c);

        /* hysteresis: full at the limit, free again below half of it */
        if (c->left || !c->started)
            c->over_limit = FALSE;
        else if (q >= mux->cfg.client_out_limit)
            c->over_limit = TRUE;
        else if (q < mux->cfg.client_out_limit / 2)
            c->over_limit = FALSE;
    }
}

static void
update_stalls(VmcMux *mux)
{
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);
        StallKind kind = STALL_NONE;

        if (c->left)
            continue;
        if (mux->port_owner == c->id && !c->staged.head &&
            gout_pending(mux) < mux->cfg.guest_out_limit && others_wait_for_port(mux, c))
            kind = STALL_HOLD;
        else if (c->over_limit && another_client_starved(mux, c))
            kind = STALL_SLOW;
        if (kind == STALL_NONE) {
            c->stall_since = -1;
        } else if (c->stall_since < 0 || c->stall_kind != kind) {
            c->stall_since = mux->now;
        }
        c->stall_kind = kind;
    }
}

static gboolean
compute_wants_input(VmcMux *mux)
{
    if (!mux->guest_connected || mux->guest_failed)
        return FALSE;
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (!c->left && c->started && client_queued(c) >= mux->cfg.client_out_limit)
            return FALSE;
    }
    return TRUE;
}

/* End of every public call that changes state. */
static void
finish(VmcMux *mux)
{
    gboolean wants;

    pump(mux);
    update_limits(mux);
    update_stalls(mux);
    mux->gstats.queued_bytes = gout_pending(mux);
    wants = compute_wants_input(mux);
    if (wants && !mux->last_wants_input) {
        mux->last_wants_input = TRUE;
        notify(mux, 0);
    }
    mux->last_wants_input = wants;
}

/* ------------------------------------------------------------------------- */
/* config, life */

/**
 * vmc_mux_config_init:
 * @cfg: (out caller-allocates): the configuration to fill
 *
 * Fills the defaults documented in docs/mux.md.
 */
void
vmc_mux_config_init(VmcMuxConfig *cfg)
{
    g_return_if_fail(cfg != NULL);

    memset(cfg, 0, sizeof(*cfg));
    cfg->agent_window = DEFAULT_AGENT_WINDOW;
    cfg->copy_paste = TRUE;
    cfg->file_xfer = TRUE;
    cfg->max_clients = 1;
    cfg->client_out_limit = DEFAULT_CLIENT_OUT_LIMIT;
    cfg->guest_out_limit = DEFAULT_GUEST_OUT_LIMIT;
    cfg->stall_timeout_us = DEFAULT_STALL_TIMEOUT_US;
}

static void
client_free(gpointer data)
{
    Client *c = data;
    Piece *p;

    while ((p = pq_pop(&c->staged)))
        g_free(p);
    oq_clear(&c->out);
    oq_clear(&c->held);
    oq_clear(&c->inject);
    vmc_mux_share_client_clear(c);
    g_clear_error(&c->error);
    g_free(c);
}

/**
 * vmc_mux_new:
 * @cfg: (nullable): configuration, copied; %NULL for the defaults
 *
 * Out-of-range values are clamped: agent_window to 1.., the limits to a few
 * pieces at least, max_clients to 1...
 *
 * Returns: (transfer full): a new multiplexer, the agent not connected
 */
VmcMux *
vmc_mux_new(const VmcMuxConfig *cfg)
{
    VmcMux *mux = g_new0(VmcMux, 1);

    if (cfg)
        mux->cfg = *cfg;
    else
        vmc_mux_config_init(&mux->cfg);
    mux->cfg.agent_window = MAX(mux->cfg.agent_window, 1u);
    mux->cfg.max_clients = MAX(mux->cfg.max_clients, 1u);
    mux->cfg.client_out_limit = MAX(mux->cfg.client_out_limit, (gsize)MIN_CLIENT_OUT_LIMIT);
    mux->cfg.guest_out_limit = MAX(mux->cfg.guest_out_limit, (gsize)MIN_GUEST_OUT_LIMIT);
    mux->token_batch = CLAMP(mux->cfg.agent_window / 8, 1u, MAX_TOKEN_BATCH);
    mux->whole_units = MIN(SHARE_WHOLE_UNITS, MAX(mux->cfg.agent_window / 2, 1u));

    mux->clients = g_ptr_array_new_with_free_func(client_free);
    mux->by_id = g_hash_table_new(g_direct_hash, g_direct_equal);
    mux->xfers = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    mux->next_id = 1;
    guest_rx_reset(mux);
    return mux;
}

/**
 * vmc_mux_free:
 * @mux: (nullable) (transfer full): the multiplexer
 */
void
vmc_mux_free(VmcMux *mux)
{
    if (!mux)
        return;
    gout_clear(mux);
    g_hash_table_unref(mux->by_id);
    g_ptr_array_unref(mux->clients);
    g_hash_table_unref(mux->xfers);
    if (mux->srv_msg)
        g_byte_array_unref(mux->srv_msg);
    g_free(mux);
}

/**
 * vmc_mux_set_copy_paste:
 * @mux: the multiplexer
 * @enabled: %FALSE to drop clipboard messages both ways and hide the clipboard caps
 *
 * Applies to messages that start after the call.
 */
void
vmc_mux_set_copy_paste(VmcMux *mux, gboolean enabled)
{
    g_return_if_fail(mux != NULL);
    mux->cfg.copy_paste = !!enabled;
}

/**
 * vmc_mux_set_file_xfer:
 * @mux: the multiplexer
 * @enabled: %FALSE to announce FILE_XFER_DISABLED and answer FILE_XFER_START locally
 */
void
vmc_mux_set_file_xfer(VmcMux *mux, gboolean enabled)
{
    g_return_if_fail(mux != NULL);
    mux->cfg.file_xfer = !!enabled;
}

/**
 * vmc_mux_get_agent_window:
 * @mux: the multiplexer
 *
 * Returns: the client->agent tokens each client is granted (INIT.agent_tokens)
 */
guint32
vmc_mux_get_agent_window(VmcMux *mux)
{
    g_return_val_if_fail(mux != NULL, 0);
    return mux->cfg.agent_window;
}

/**
 * vmc_mux_set_notify_func:
 * @mux: the multiplexer
 * @func: (scope notified) (nullable): called when a queue becomes non-empty, the
 *   guest may be read again, or a peer was cut off
 * @user_data: its data
 */
void
vmc_mux_set_notify_func(VmcMux *mux, VmcMuxNotifyFunc func, gpointer user_data)
{
    g_return_if_fail(mux != NULL);
    mux->notify = func;
    mux->notify_data = user_data;
}

/**
 * vmc_mux_set_server_message_func:
 * @mux: the multiplexer
 * @func: (scope notified) (nullable): receives whole port-2 messages of the agent;
 *   it may call vmc_mux_send_server_message() and nothing else of the mux
 * @user_data: its data
 */
void
vmc_mux_set_server_message_func(VmcMux *mux, VmcMuxServerMessageFunc func, gpointer user_data)
{
    g_return_if_fail(mux != NULL);
    mux->server_msg = func;
    mux->server_msg_data = user_data;
}

/**
 * vmc_mux_set_tap_func:
 * @mux: the multiplexer
 * @func: (scope notified) (nullable): sees agent traffic as it comes in (client
 *   units, agent pieces before filtering, mux-made messages)
 * @user_data: its data
 */
void
vmc_mux_set_tap_func(VmcMux *mux, VmcMuxTapFunc func, gpointer user_data)
{
    g_return_if_fail(mux != NULL);
    mux->tap = func;
    mux->tap_data = user_data;
}

/* ------------------------------------------------------------------------- */
/* time */

/**
 * vmc_mux_tick:
 * @mux: the multiplexer
 * @now_us: monotonic time in µs
 *
 * Cuts off clients that stalled for the configured timeout (STALLED).
 */
void
vmc_mux_tick(VmcMux *mux, gint64 now_us)
{
    g_return_if_fail(mux != NULL);

    mux->now = now_us;
    if (mux->cfg.stall_timeout_us <= 0)
        return;
    update_limits(mux);
    update_stalls(mux);
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (c->left || c->stall_since < 0 || now_us - c->stall_since < mux->cfg.stall_timeout_us)
            continue;
        if (c->stall_kind == STALL_HOLD)
            client_cut_off(mux, c, VMC_MUX_ERROR_STALLED,
                           "client %u held the agent port mid-message for too long", c->id);
        else
            client_cut_off(mux, c, VMC_MUX_ERROR_STALLED,
                           "client %u did not read agent data for too long", c->id);
    }
    finish(mux);
}

/**
 * vmc_mux_next_deadline:
 * @mux: the multiplexer
 *
 * Returns: the time at which vmc_mux_tick() has work, or -1
 */
gint64
vmc_mux_next_deadline(VmcMux *mux)
{
    gint64 next = -1;

    g_return_val_if_fail(mux != NULL, -1);
    if (mux->cfg.stall_timeout_us <= 0)
        return -1;
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);
        gint64 t;

        if (c->left || c->stall_since < 0)
            continue;
        t = c->stall_since + mux->cfg.stall_timeout_us;
        if (next < 0 || t < next)
            next = t;
    }
    return next;
}

/* ------------------------------------------------------------------------- */
/* guest input: port 1 (agent -> clients) */

/* The agent's ANNOUNCE_CAPABILITIES, first piece: cache it and apply the policy. */
static void
agent_caps_seen(VmcMux *mux, guint8 *msg, gsize n, const VmcAgentHeader *h)
{
    gsize avail = MIN(n, (gsize)VMC_AGENT_HEADER_SIZE + h->size) - VMC_AGENT_HEADER_SIZE;
    const guint8 *words;
    gsize nwords;
    guint32 request;

    if (vmc_agent_caps_decode(msg + VMC_AGENT_HEADER_SIZE, avail, &request, &words, &nwords) !=
        VMC_DECODE_OK)
        return;
    mux->have_agent_caps = TRUE;
    mux->agent_ncaps = MIN(nwords, (gsize)CAPS_MAX_WORDS);
    for (gsize i = 0; i < mux->agent_ncaps; i++)
        mux->agent_caps[i] = vmc_get_u32le(words + 4 * i);
    if (nwords > 0) {
        /* only ever bytes of a real header's message: this is its first piece */
        guint8 *w0 = msg + VMC_AGENT_HEADER_SIZE + 4;
        guint32 w = vmc_get_u32le(w0);

        if (!mux->cfg.copy_paste)
            w &= ~((1u << VD_AGENT_CAP_CLIPBOARD) | (1u << VD_AGENT_CAP_CLIPBOARD_BY_DEMAND) |
                   (1u << VD_AGENT_CAP_CLIPBOARD_SELECTION));
        if (!mux->cfg.file_xfer)
            w |= 1u << VD_AGENT_CAP_FILE_XFER_DISABLED;
        vmc_put_u32le(w0, w);
    }
}

/* Decides who gets the agent message whose first piece is `msg`. */
static void
agent_msg_route(VmcMux *mux, guint8 *msg, gsize n, const VmcAgentHeader *h, Route *route)
{
    guint32 type = h->type;

    route->kind = ROUTE_ALL;
    route->to = 0;
    route->per_client = FALSE;
    if ((!mux->cfg.copy_paste && is_clipboard_type(type)) ||
        (!mux->cfg.file_xfer && is_file_xfer_type(type))) {
        route->kind = ROUTE_NONE;
        return;
    }
    if (type == VD_AGENT_ANNOUNCE_CAPABILITIES)
        agent_caps_seen(mux, msg, n, h);
    if (multi_client(mux))
        vmc_mux_share_agent_route(mux, msg, n, h, route);
}

static gboolean
route_accepts(const Route *route, const Client *c)
{
    switch (route->kind) {
    case ROUTE_ALL:
        return TRUE;
    case ROUTE_ONE:
        return route->to == c->id;
    case ROUTE_CLIP:
        return !c->clip_off;
    case ROUTE_NONE:
        break;
    }
    return FALSE;
}

/* One piece (<= 2048 bytes, one message) of port-1 data is complete. */
static void
emit_agent_piece(VmcMux *mux, gboolean first, gboolean last)
{
    gsize n = mux->rx_piece_len;
    guint8 *data = g_memdup2(mux->rx_piece, n);
    GBytes *bytes;
    guint flags = (first ? VMC_AGENT_SPAN_START : 0) | (last ? VMC_AGENT_SPAN_END : 0);
    Route route = { ROUTE_ALL, 0, FALSE };

    mux->rx_piece_len = 0;
    tap(mux, VMC_MUX_DIR_AGENT_CLIENT, 0, VMC_PORT_CLIENT, data, n, flags);

    if (first) {
        agent_msg_route(mux, data, n, &mux->rx_track[0].header, &route);
        mux->rx_drop = route.kind == ROUTE_NONE;
        mux->rx_recipients = 0;
        for (guint i = 0; i < mux->clients->len; i++) {
            Client *c = g_ptr_array_index(mux->clients, i);

            /* a client that starts mid-message waits for the next one */
            c->rx_in_message = !c->left && c->started && route_accepts(&route, c);
            if (c->rx_in_message)
                mux->rx_recipients++;
        }
    }

    if (mux->rx_drop || mux->rx_recipients == 0) {
        mux->gstats.discarded += n;
        g_free(data);
    } else if (route.per_client) {
        /* first piece, rewritten for each recipient (caps view, grab serial) */
        for (guint i = 0; i < mux->clients->len; i++) {
            Client *c = g_ptr_array_index(mux->clients, i);
            g_autoptr(GBytes) own = NULL;

            if (!c->rx_in_message || c->left)
                continue;
            own = vmc_mux_share_agent_piece(mux, c, data, n);
            if (own)
                client_queue_data(mux, c, own, last);
            else
                c->rx_in_message = FALSE;
        }
        g_free(data);
    } else {
        bytes = g_bytes_new_take(data, n);
        for (guint i = 0; i < mux->clients->len; i++) {
            Client *c = g_ptr_array_index(mux->clients, i);

            if (c->rx_in_message && !c->left)
                client_queue_data(mux, c, bytes, last);
        }
        g_bytes_unref(bytes);
    }

    if (last) {
        mux->gstats.messages_in++;
        for (guint i = 0; i < mux->clients->len; i++) {
            Client *c = g_ptr_array_index(mux->clients, i);

            if (c->rx_in_message) {
                c->rx_in_message = FALSE;
                client_flush_inject(mux, c);
            }
        }
    }
}

static VmcDecodeResult
guest_port_data(VmcMux *mux, guint port_idx, const guint8 *data, gsize len)
{
    VmcAgentTracker *t = &mux->rx_track[port_idx];

    while (len > 0) {
        gsize span = 0;
        guint flags = 0;
        VmcDecodeResult r = vmc_agent_tracker_advance(t, data, len, &span, &flags);

        if (r != VMC_DECODE_OK)
            return r;
        g_assert(span > 0 && span <= len);
        if (flags & VMC_AGENT_SPAN_START) {
            mux->rx_in_msg[port_idx] = TRUE;
            mux->rx_msg_off[port_idx] = 0;
        }
        mux->rx_msg_off[port_idx] += span;

        if (port_idx == 0) {
            gsize off = 0;

            if (flags & VMC_AGENT_SPAN_START) {
                mux->rx_piece_len = 0;
                mux->rx_piece_first = TRUE;
            }
            while (off < span) {
                gsize n = MIN(span - off, (gsize)VMC_CHUNK_MAX_PAYLOAD - mux->rx_piece_len);
                gboolean last;

                memcpy(mux->rx_piece + mux->rx_piece_len, data + off, n);
                mux->rx_piece_len += n;
                off += n;
                last = (flags & VMC_AGENT_SPAN_END) && off == span;
                if (mux->rx_piece_len == VMC_CHUNK_MAX_PAYLOAD || last) {
                    gboolean first = mux->rx_piece_first;

                    mux->rx_piece_first = FALSE;
                    emit_agent_piece(mux, first, last);
                }
            }
        } else {
            tap(mux, VMC_MUX_DIR_AGENT_SERVER, 0, VMC_PORT_SERVER, data, span,
                flags & (VMC_AGENT_SPAN_START | VMC_AGENT_SPAN_END));
            if (flags & VMC_AGENT_SPAN_START) {
                if (mux->srv_msg)
                    g_byte_array_set_size(mux->srv_msg, 0);
                else
                    mux->srv_msg = g_byte_array_new();
                mux->srv_skip = FALSE;
            }
            if (!mux->srv_skip) {
                if (span > (gsize)VMC_AGENT_HEADER_SIZE + SERVER_MSG_MAX - mux->srv_msg->len) {
                    mux->srv_skip = TRUE;
                    mux->gstats.discarded += mux->srv_msg->len;
                    g_byte_array_set_size(mux->srv_msg, 0);
                } else {
                    g_byte_array_append(mux->srv_msg, data, (guint)span);
                }
            }
            if (mux->srv_skip)
                mux->gstats.discarded += span;
            if (flags & VMC_AGENT_SPAN_END) {
                mux->gstats.messages_in++;
                if (!mux->srv_skip && mux->server_msg) {
                    VmcAgentHeader h = t->header;
                    GByteArray *m = g_steal_pointer(&mux->srv_msg);

                    mux->server_msg(mux->server_msg_data, &h, m->data + VMC_AGENT_HEADER_SIZE,
                                    m->len - VMC_AGENT_HEADER_SIZE);
                    g_byte_array_unref(m);
                }
            }
        }
        if (flags & VMC_AGENT_SPAN_END)
            mux->rx_in_msg[port_idx] = FALSE;
        data += span;
        len -= span;
    }
    return VMC_DECODE_OK;
}

static void
guest_fail(VmcMux *mux, VmcDecodeResult r, GError **error)
{
    g_debug("mux: agent protocol error (%s), treating the agent as gone",
            vmc_decode_result_to_string(r));
    g_set_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_PROTOCOL, "agent protocol error: %s",
                vmc_decode_result_to_string(r));
    guest_gone(mux);
    mux->guest_failed = TRUE;
}

/**
 * vmc_mux_feed_guest:
 * @mux: the multiplexer
 * @buf: (array length=len) (transfer none): bytes read from the port
 * @len: their number
 * @error: return location for a #GError
 *
 * Returns: %FALSE on an agent protocol error (see vmc-mux.h)
 */
gboolean
vmc_mux_feed_guest(VmcMux *mux, const guint8 *buf, gsize len, GError **error)
{
    gsize off = 0;

    g_return_val_if_fail(mux != NULL, FALSE);
    g_return_val_if_fail(buf != NULL || len == 0, FALSE);

    if (!mux->guest_connected) {
        mux->gstats.discarded += len;
        return TRUE;
    }
    while (off < len) {
        VmcChunkPiece piece;
        gsize consumed = 0;
        VmcDecodeResult r =
            vmc_chunk_decoder_next(&mux->dec, buf + off, len - off, 0, &piece, &consumed);
        guint idx;

        off += consumed;
        if (r == VMC_DECODE_NEED_MORE)
            break;
        if (r != VMC_DECODE_OK) {
            guest_fail(mux, r, error);
            finish(mux);
            return FALSE;
        }
        g_assert(consumed > 0);
        idx = piece.port == VMC_PORT_CLIENT ? 0 : 1;
        mux->gstats.bytes_in += piece.len;
        if (piece.len > 0) {
            r = guest_port_data(mux, idx, piece.data, piece.len);
            if (r != VMC_DECODE_OK) {
                guest_fail(mux, r, error);
                finish(mux);
                return FALSE;
            }
        }
        /* like the reference, a message header never spans two chunks */
        if (piece.chunk_end && mux->rx_in_msg[idx] &&
            mux->rx_msg_off[idx] < VMC_AGENT_HEADER_SIZE) {
            guest_fail(mux, VMC_DECODE_ERR_BOUNDARY, error);
            finish(mux);
            return FALSE;
        }
    }
    finish(mux);
    return TRUE;
}

/**
 * vmc_mux_guest_wants_input:
 * @mux: the multiplexer
 *
 * Returns: %FALSE while a started client's queue is at its limit (or the agent is
 *   not connected); the notify function is called with 0 when it turns %TRUE
 */
gboolean
vmc_mux_guest_wants_input(VmcMux *mux)
{
    g_return_val_if_fail(mux != NULL, FALSE);
    return compute_wants_input(mux);
}

/* ------------------------------------------------------------------------- */
/* guest output API */

/**
 * vmc_mux_guest_output_vec:
 * @mux: the multiplexer
 * @vec: (out caller-allocates) (array length=max): vectors to fill
 * @max: room in @vec
 *
 * Returns: the number of vectors filled; they point into the mux (transfer none)
 */
guint
vmc_mux_guest_output_vec(VmcMux *mux, GOutputVector *vec, guint max)
{
    guint n = 0;
    gsize off;

    g_return_val_if_fail(mux != NULL, 0);
    g_return_val_if_fail(vec != NULL || max == 0, 0);

    off = mux->gout_off;
    for (Piece *p = mux->gout.head; p && n < max; p = p->next) {
        vec[n].buffer = p->data + off;
        vec[n].size = p->len - off;
        n++;
        off = 0;
    }
    return n;
}

/**
 * vmc_mux_guest_output_size:
 * @mux: the multiplexer
 *
 * Returns: bytes waiting to be written to the guest
 */
gsize
vmc_mux_guest_output_size(VmcMux *mux)
{
    g_return_val_if_fail(mux != NULL, 0);
    return gout_pending(mux);
}

/**
 * vmc_mux_guest_output_advance:
 * @mux: the multiplexer
 * @written: bytes of the output that reached the guest (<= the output size)
 *
 * Whole chunks written return their tokens to their clients.
 */
void
vmc_mux_guest_output_advance(VmcMux *mux, gsize written)
{
    g_return_if_fail(mux != NULL);
    g_return_if_fail(written <= gout_pending(mux));

    while (written > 0) {
        Piece *p = mux->gout.head;
        gsize n = MIN(p->len - mux->gout_off, written);

        mux->gout_off += n;
        written -= n;
        if (mux->gout_off < p->len)
            break;
        pq_pop(&mux->gout);
        mux->gout_off = 0;
        mux->gstats.bytes_out += p->len - VMC_CHUNK_HEADER_SIZE;
        if (p->flags & PIECE_END)
            mux->gstats.messages_out++;
        if (p->flags & PIECE_CHARGED)
            client_release_token(mux, client_lookup(mux, p->client_id));
        g_free(p);
    }
    finish(mux);
}

/**
 * vmc_mux_send_server_message:
 * @mux: the multiplexer
 * @type: VD_AGENT_* message type
 * @payload: (array length=len) (transfer none) (nullable): its payload
 * @len: payload size, at most 64 KiB
 * @error: return location for a #GError
 *
 * Queues a message on port 2. MOUSE_STATE and GRAPHICS_DEVICE_INFO replace a
 * queued one of their type that has not started to go out (coalescing).
 *
 * Returns: %FALSE (CLOSED) when no agent is connected, (TOO_LARGE) above 64 KiB
 */
gboolean
vmc_mux_send_server_message(VmcMux *mux, guint32 type, const guint8 *payload, gsize len,
                            GError **error)
{
    g_return_val_if_fail(mux != NULL, FALSE);
    g_return_val_if_fail(payload != NULL || len == 0, FALSE);

    if (!mux->guest_connected) {
        g_set_error_literal(error, VMC_MUX_ERROR, VMC_MUX_ERROR_CLOSED, "agent not connected");
        return FALSE;
    }
    if (len > SERVER_SEND_MAX) {
        g_set_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_TOO_LARGE,
                    "server message of %" G_GSIZE_FORMAT " bytes", len);
        return FALSE;
    }
    queue_mux_message(mux, VMC_PORT_SERVER, type, payload, len, FALSE);
    finish(mux);
    return TRUE;
}

/**
 * vmc_mux_agent_has_cap:
 * @mux: the multiplexer
 * @cap: a VD_AGENT_CAP_* bit number
 *
 * Returns: whether the connected agent announced @cap (before the policy
 *   rewrite); %FALSE until it announced anything
 */
gboolean
vmc_mux_agent_has_cap(VmcMux *mux, guint cap)
{
    g_return_val_if_fail(mux != NULL, FALSE);

    if (!mux->guest_connected || !mux->have_agent_caps)
        return FALSE;
    return vmc_caps_test(mux->agent_caps, mux->agent_ncaps, cap);
}

/* ------------------------------------------------------------------------- */
/* agent lifecycle API */

/**
 * vmc_mux_guest_connected:
 * @mux: the multiplexer
 *
 * Every client gets AGENT_CONNECTED_TOKENS(window), or AGENT_CONNECTED without
 * that capability. A second call without a disconnect in between does nothing.
 */
void
vmc_mux_guest_connected(VmcMux *mux)
{
    g_return_if_fail(mux != NULL);

    if (mux->guest_connected)
        return;
    mux->guest_connected = TRUE;
    mux->guest_failed = FALSE;
    guest_rx_reset(mux);
    agent_state_reset(mux);
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (c->left)
            continue;
        if (c->caps & VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS) {
            /* the client sets its count to the window when it reads this; what it
             * sent before its answering AGENT_START is forgiven */
            client_queue_u32(mux, c, SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS,
                             mux->cfg.agent_window);
            c->stats.tokens_granted += mux->cfg.agent_window;
            g_assert(c->in_flight == 0);
            c->unreturned = 0;
            c->resets_pending = sat_add32(c->resets_pending, 1);
            c->forgiven = 0;
        } else {
            client_queue_ctl(mux, c, SPICE_MSG_MAIN_AGENT_CONNECTED, NULL, 0);
        }
    }
    finish(mux);
}

/**
 * vmc_mux_guest_disconnected:
 * @mux: the multiplexer
 *
 * See vmc-mux.h. Also the way to reset after a guest protocol error.
 */
void
vmc_mux_guest_disconnected(VmcMux *mux)
{
    g_return_if_fail(mux != NULL);

    mux->guest_failed = FALSE;
    if (!mux->guest_connected)
        return;
    guest_gone(mux);
    finish(mux);
}

/**
 * vmc_mux_guest_is_connected:
 * @mux: the multiplexer
 *
 * Returns: whether an agent is connected (and has not broken the protocol)
 */
gboolean
vmc_mux_guest_is_connected(VmcMux *mux)
{
    g_return_val_if_fail(mux != NULL, FALSE);
    return mux->guest_connected;
}

/* ------------------------------------------------------------------------- */
/* clients */

/**
 * vmc_mux_client_add:
 * @mux: the multiplexer
 * @caps: VMC_MUX_CLIENT_CAP_* bits
 *
 * The client's INIT carries agent_connected = vmc_mux_guest_is_connected() and
 * agent_tokens = vmc_mux_get_agent_window(); call this when sending it.
 *
 * Returns: the new client's id (never 0)
 */
guint32
vmc_mux_client_add(VmcMux *mux, guint caps)
{
    Client *c;

    g_return_val_if_fail(mux != NULL, 0);

    c = g_new0(Client, 1);
    do {
        c->id = mux->next_id++;
        if (mux->next_id == 0)
            mux->next_id = 1;
    } while (c->id == 0 || c->id == FILLER_OWNER ||
             g_hash_table_contains(mux->by_id, GUINT_TO_POINTER(c->id)));
    c->caps = caps;
    vmc_agent_tracker_init(&c->tracker);
    c->stall_since = -1;
    vmc_mux_share_client_init(c);
    c->stats.tokens_granted = mux->cfg.agent_window;
    g_ptr_array_add(mux->clients, c);
    g_hash_table_insert(mux->by_id, GUINT_TO_POINTER(c->id), c);
    finish(mux);
    return c->id;
}

/**
 * vmc_mux_client_remove:
 * @mux: the multiplexer
 * @client_id: a client id; unknown ids are ignored
 */
void
vmc_mux_client_remove(VmcMux *mux, guint32 client_id)
{
    Client *c;
    guint idx;

    g_return_if_fail(mux != NULL);

    c = client_lookup(mux, client_id);
    if (!c)
        return;
    client_leave(mux, c);
    g_hash_table_remove(mux->by_id, GUINT_TO_POINTER(client_id));
    if (g_ptr_array_find(mux->clients, c, &idx)) {
        if (idx < mux->rr_next)
            mux->rr_next--;
        g_ptr_array_remove_index(mux->clients, idx); /* frees c */
        if (mux->rr_next >= mux->clients->len)
            mux->rr_next = 0;
    }
    finish(mux);
}

static Client *
client_get_live(VmcMux *mux, guint32 client_id, GError **error)
{
    Client *c = client_lookup(mux, client_id);

    if (!c) {
        g_set_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_CLOSED, "no client %u", client_id);
        return NULL;
    }
    if (c->left) {
        if (c->error)
            g_set_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_CLOSED, "client %u was cut off: %s",
                        client_id, c->error->message);
        else
            g_set_error(error, VMC_MUX_ERROR, VMC_MUX_ERROR_CLOSED, "client %u is gone",
                        client_id);
        return NULL;
    }
    return c;
}

/* A protocol error of a client: it is cut off, the call fails with `code`. */
static gboolean
client_fail(VmcMux *mux, Client *c, GError **error, VmcMuxError code, const char *what)
{
    client_cut_off(mux, c, code, "client %u: %s", c->id, what);
    if (error)
        *error = g_error_copy(c->error);
    finish(mux);
    return FALSE;
}

/**
 * vmc_mux_client_agent_start:
 * @mux: the multiplexer
 * @client_id: the client
 * @num_tokens: AGENT_DATA the client allows (0xFFFFFFFF: unlimited)
 * @error: return location for a #GError
 *
 * Sets (not adds) the client's send budget and starts agent traffic for it.
 * Ignored while no agent is connected, as in the reference.
 *
 * Returns: %FALSE (CLOSED) for an unknown or cut-off client
 */
gboolean
vmc_mux_client_agent_start(VmcMux *mux, guint32 client_id, guint32 num_tokens, GError **error)
{
    Client *c;

    g_return_val_if_fail(mux != NULL, FALSE);

    c = client_get_live(mux, client_id, error);
    if (!c)
        return FALSE;
    if (c->resets_pending > 0) {
        /* the client set its count to the window just before sending this */
        c->resets_pending--;
        c->forgiven = 0;
    }
    if (mux->guest_connected) {
        if (!c->started)
            c->start_seq = ++mux->start_counter;
        c->started = TRUE;
        c->budget = num_tokens;
        client_release_held(mux, c);
    }
    finish(mux);
    return TRUE;
}

/**
 * vmc_mux_client_agent_token:
 * @mux: the multiplexer
 * @client_id: the client
 * @num_tokens: more AGENT_DATA the client allows
 * @error: return location for a #GError
 *
 * Adds to the send budget (saturating; an unlimited budget stays unlimited).
 * Accepted at any time (the reference aborts on one before AGENT_START).
 *
 * Returns: %FALSE (CLOSED) for an unknown or cut-off client
 */
gboolean
vmc_mux_client_agent_token(VmcMux *mux, guint32 client_id, guint32 num_tokens, GError **error)
{
    Client *c;

    g_return_val_if_fail(mux != NULL, FALSE);

    c = client_get_live(mux, client_id, error);
    if (!c)
        return FALSE;
    if (c->budget != G_MAXUINT32)
        c->budget = MIN(sat_add32(c->budget, num_tokens), G_MAXUINT32 - 1);
    client_release_held(mux, c);
    finish(mux);
    return TRUE;
}

/* Validates the header of a message that starts in this unit; the size rules
 * are checked for every variant the negotiated caps allow (selection byte, grab
 * serial), since the agent and the client each decide with what they were told. */
static gboolean
check_size_rules(const VmcAgentHeader *h)
{
    static const guint variants[] = {
        0,
        VMC_AGENT_CHECK_SELECTION,
        VMC_AGENT_CHECK_GRAB_SERIAL,
        VMC_AGENT_CHECK_SELECTION | VMC_AGENT_CHECK_GRAB_SERIAL,
    };

    for (guint i = 0; i < G_N_ELEMENTS(variants); i++) {
        VmcDecodeResult r = vmc_agent_msg_check_size(h->type, h->size, variants[i]);

        if (r == VMC_DECODE_OK || r == VMC_DECODE_ERR_TYPE)
            return TRUE;
    }
    return FALSE;
}

static GBytes *
xfer_status_msg_new(guint32 id, guint32 status)
{
    guint8 payload[8];

    vmc_put_u32le(payload, id);
    vmc_put_u32le(payload + 4, status);
    return vmc_mux_core_agent_msg_new(VD_AGENT_FILE_XFER_STATUS, payload, sizeof(payload));
}

/* What happens to the client message that starts with `body` (the whole header
 * is in it). Returns FALSE on a protocol error (message set in *what). */
static gboolean
client_msg_classify(VmcMux *mux, Client *c, const guint8 *body, gsize len, const char **what)
{
    guint32 type = c->tracker.header.type;

    c->disp = DISP_FORWARD;
    c->answer = ANSWER_NONE;
    c->answered = FALSE;
    c->msg_xfer = NULL;
    c->msg_serial_set = FALSE;
    c->capturing = FALSE;

    if (!mux->guest_connected || !c->started) {
        c->disp = DISP_DROP;
        return TRUE;
    }
    if (type == VD_AGENT_CLIENT_DISCONNECTED) {
        c->disp = DISP_DROP; /* only the server says that; it resets every client */
        return TRUE;
    }
    if (!mux->cfg.copy_paste && is_clipboard_type(type)) {
        c->disp = DISP_DROP;
        return TRUE;
    }
    if (!mux->cfg.file_xfer && is_file_xfer_type(type)) {
        c->disp = DISP_DROP;
        if (type == VD_AGENT_FILE_XFER_START) {
            c->disp = DISP_ANSWER;
            c->answer = ANSWER_XFER_STATUS;
            c->answer_status = VD_AGENT_FILE_XFER_STATUS_DISABLED;
        }
        return TRUE;
    }
    if (!multi_client(mux))
        return TRUE;
    return vmc_mux_share_classify(mux, c, body, len, what);
}

/* Sends the local answer of a DISP_ANSWER message once its bytes are known. */
static void
client_msg_answer(VmcMux *mux, Client *c)
{
    g_autoptr(GBytes) msg = NULL;

    if (c->answered || c->answer != ANSWER_XFER_STATUS ||
        c->msg_off < VMC_AGENT_HEADER_SIZE + 4)
        return;
    msg = xfer_status_msg_new(vmc_get_u32le(c->msg_head + VMC_AGENT_HEADER_SIZE),
                              c->answer_status);
    c->answered = TRUE;
    client_inject(mux, c, msg);
}

/**
 * vmc_mux_client_agent_data:
 * @mux: the multiplexer
 * @client_id: the client
 * @body: (array length=len) (transfer none): the AGENT_DATA body
 * @len: its size
 * @error: return location for a #GError
 *
 * Costs one token (see docs/mux.md for the forgiven units around an agent
 * reconnect). The unit must follow the framing rules of vmc_agent_tracker_unit()
 * and, at a message start, the size rules of its type.
 *
 * Returns: %FALSE when the client broke its grant (FLOW_CONTROL) or the framing
 *   (PROTOCOL) and was cut off, or is unknown or already cut off (CLOSED)
 */
gboolean
vmc_mux_client_agent_data(VmcMux *mux, guint32 client_id, const guint8 *body, gsize len,
                          GError **error)
{
    Client *c;
    gboolean charged = FALSE;
    guint flags = 0;
    VmcDecodeResult r;
    guint64 off;

    g_return_val_if_fail(mux != NULL, FALSE);
    g_return_val_if_fail(body != NULL || len == 0, FALSE);

    c = client_get_live(mux, client_id, error);
    if (!c)
        return FALSE;
    c->stats.bytes_in += len;

    if (c->resets_pending > 0) {
        /* spent from the count AGENT_CONNECTED_TOKENS resets: never returned */
        if (c->forgiven >= mux->cfg.agent_window)
            return client_fail(mux, c, error, VMC_MUX_ERROR_FLOW_CONTROL,
                               "more AGENT_DATA than its tokens");
        c->forgiven++;
    } else {
        if (client_tokens_used(c) >= mux->cfg.agent_window)
            return client_fail(mux, c, error, VMC_MUX_ERROR_FLOW_CONTROL,
                               "more AGENT_DATA than its tokens");
        charged = TRUE;
    }

    r = vmc_agent_tracker_unit(&c->tracker, body, len, &flags);
    if (r != VMC_DECODE_OK) {
        g_autofree gchar *what = g_strdup_printf("bad AGENT_DATA (%" G_GSIZE_FORMAT " bytes): %s",
                                                 len, vmc_decode_result_to_string(r));

        return client_fail(mux, c, error, VMC_MUX_ERROR_PROTOCOL, what);
    }
    if (charged)
        c->in_flight++;
    tap(mux, VMC_MUX_DIR_CLIENT_AGENT, c->id, VMC_PORT_CLIENT, body, len,
        flags & (VMC_AGENT_SPAN_START | VMC_AGENT_SPAN_END));

    if (flags & VMC_AGENT_SPAN_START) {
        const char *what = NULL;

        c->msg_off = 0;
        c->msg_type = c->tracker.header.type;
        if (!check_size_rules(&c->tracker.header)) {
            g_autofree gchar *m = g_strdup_printf("agent message type %u with bad size %u",
                                                  c->tracker.header.type,
                                                  c->tracker.header.size);

            return client_fail(mux, c, error, VMC_MUX_ERROR_PROTOCOL, m);
        }
        if (!client_msg_classify(mux, c, body, len, &what))
            return client_fail(mux, c, error, VMC_MUX_ERROR_PROTOCOL, what);
        if (c->left) {
            /* cut off by an answer it did not read (hard limit) */
            finish(mux);
            return TRUE;
        }
    }
    off = c->msg_off;
    if (off < sizeof(c->msg_head))
        memcpy(c->msg_head + off, body, MIN(len, sizeof(c->msg_head) - (gsize)off));
    c->msg_off += len;

    if (c->capturing)
        g_byte_array_append(c->capture, body, (guint)len);

    if (c->disp == DISP_FORWARD) {
        Piece *p = piece_new(VMC_PORT_CLIENT, body, len);

        p->client_id = c->id;
        p->msg_type = c->msg_type;
        if (flags & VMC_AGENT_SPAN_START)
            p->flags |= PIECE_START;
        if (flags & VMC_AGENT_SPAN_END)
            p->flags |= PIECE_END;
        if (charged)
            p->flags |= PIECE_CHARGED;
        /* shared agent: the mux-wide transfer id, the agent-side grab serial */
        if ((flags & VMC_AGENT_SPAN_START) && multi_client(mux))
            vmc_mux_share_rewrite_unit(mux, c, p);
        pq_push(&c->staged, p);
    } else {
        c->stats.discarded += len;
        if (charged)
            client_release_token(mux, c);
        if (c->disp == DISP_ANSWER)
            client_msg_answer(mux, c);
    }

    if ((flags & VMC_AGENT_SPAN_END) && !c->left) {
        c->stats.messages_in++;
        if (multi_client(mux))
            vmc_mux_share_msg_end(mux, c);
        c->msg_xfer = NULL;
        c->msg_serial_set = FALSE;
        c->capturing = FALSE;
    }
    finish(mux);
    return TRUE;
}

/**
 * vmc_mux_client_peek:
 * @mux: the multiplexer
 * @client_id: the client
 * @msg: (out caller-allocates): the next message; its data is borrowed
 *
 * Returns: %TRUE if there is a message
 */
gboolean
vmc_mux_client_peek(VmcMux *mux, guint32 client_id, VmcMuxMsg *msg)
{
    Client *c;
    OutMsg *m;

    g_return_val_if_fail(mux != NULL, FALSE);
    g_return_val_if_fail(msg != NULL, FALSE);

    c = client_lookup(mux, client_id);
    if (!c || !c->out.head)
        return FALSE;
    m = c->out.head;
    m->peeked = TRUE;
    msg->type = m->type;
    msg->data = m->bytes ? g_bytes_get_data(m->bytes, NULL) : m->small;
    msg->len = m->len;
    return TRUE;
}

/**
 * vmc_mux_client_pop:
 * @mux: the multiplexer
 * @client_id: the client
 *
 * Drops the message vmc_mux_client_peek() returned.
 */
void
vmc_mux_client_pop(VmcMux *mux, guint32 client_id)
{
    Client *c;
    OutMsg *m;

    g_return_if_fail(mux != NULL);

    c = client_lookup(mux, client_id);
    if (!c || !c->out.head)
        return;
    m = oq_pop(&c->out);
    if (m->type == SPICE_MSG_MAIN_AGENT_DATA) {
        c->stats.bytes_out += m->len;
        if (m->msg_end)
            c->stats.messages_out++;
    }
    om_free(m);
    client_note_queued(c);
    finish(mux);
}

/**
 * vmc_mux_client_failed:
 * @mux: the multiplexer
 * @client_id: the client
 * @error: return location for a #GError
 *
 * Returns: %TRUE (and @error set) if the mux cut this client off (stall, bound,
 *   protocol or flow-control error)
 */
gboolean
vmc_mux_client_failed(VmcMux *mux, guint32 client_id, GError **error)
{
    Client *c;

    g_return_val_if_fail(mux != NULL, FALSE);

    c = client_lookup(mux, client_id);
    if (!c || !c->error)
        return FALSE;
    if (error)
        *error = g_error_copy(c->error);
    return TRUE;
}

/* ------------------------------------------------------------------------- */
/* observation */

/**
 * vmc_mux_client_get_stats:
 * @mux: the multiplexer
 * @client_id: the client
 * @out: (out caller-allocates): its counters, written on success only
 *
 * Returns: %FALSE for an unknown client
 */
gboolean
vmc_mux_client_get_stats(VmcMux *mux, guint32 client_id, VmcMuxStats *out)
{
    Client *c;

    g_return_val_if_fail(mux != NULL, FALSE);
    g_return_val_if_fail(out != NULL, FALSE);

    c = client_lookup(mux, client_id);
    if (!c)
        return FALSE;
    *out = c->stats;
    out->tokens_in_use = client_tokens_used(c);
    out->send_budget = c->budget;
    out->queued_bytes = client_queued(c);
    return TRUE;
}

/**
 * vmc_mux_guest_get_stats:
 * @mux: the multiplexer
 * @out: (out caller-allocates): the guest's counters
 */
void
vmc_mux_guest_get_stats(VmcMux *mux, VmcMuxStats *out)
{
    g_return_if_fail(mux != NULL);
    g_return_if_fail(out != NULL);

    *out = mux->gstats;
    out->queued_bytes = gout_pending(mux);
}
