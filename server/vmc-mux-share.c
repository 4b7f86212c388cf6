/* vmc-mux-share.c — the shared-agent rules (max_clients > 1): N clients look like
 * one well-behaved client to the agent, the agent looks like a private agent to
 * each client. The rules and why are in docs/sharing.md; this file says how.
 *
 * What the mux keeps for it:
 *   - the agent session: which clients "joined" (their caps arrived), what the
 *     agent was told about "the client's" caps, the clipboard layout fixed for the
 *     session (selection byte, grab serial), the smallest MAX_CLIPBOARD;
 *   - per selection: the owning client, the serial the agent's next GRAB carries,
 *     the clipboard requests waiting for the agent's answer;
 *   - per client: the serial its next agent GRAB must carry (spice-gtk accepts an
 *     agent GRAB only with exactly its own counter), its file transfers under
 *     mux-wide ids, its last guest-wide settings (replayed when it becomes the
 *     primary client).
 */
#include "server/vmc-mux-private.h"

#include <string.h>

/* caps bits that change the layout of clipboard messages, or whether the agent
 * talks clipboard at all: fixed for an agent session */
#define LAYOUT_BITS                                                                     \
    ((1u << VD_AGENT_CAP_CLIPBOARD) | (1u << VD_AGENT_CAP_CLIPBOARD_BY_DEMAND) |        \
     (1u << VD_AGENT_CAP_CLIPBOARD_SELECTION) | (1u << VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL))

enum {
    SET_MONITORS,
    SET_DISPLAY,
    SET_VOLUME_PLAYBACK,
    SET_VOLUME_RECORD,
};

/* ------------------------------------------------------------------------- */
/* small helpers */

static gboolean
live(const Client *c)
{
    return c && !c->left;
}

static gboolean
told_has(VmcMux *mux, guint cap)
{
    /* spice-vdagentd lays clipboard messages out with the client caps it was told */
    return vmc_caps_test(mux->share.told, mux->share.ntold, cap);
}

/* Offset of what follows the selection prefix in a clipboard payload. */
static gsize
sel_prefix(VmcMux *mux)
{
    return told_has(mux, VD_AGENT_CAP_CLIPBOARD_SELECTION) ? 4 : 0;
}

static guint
sel_index(guint8 sel)
{
    return MIN((guint)sel, NSEL - 1);
}

static void
queue_u32_pair(VmcMux *mux, guint32 port, guint32 type, guint32 a, guint32 b)
{
    guint8 payload[8];

    vmc_put_u32le(payload, a);
    vmc_put_u32le(payload + 4, b);
    vmc_mux_core_queue_message(mux, port, type, payload, sizeof(payload));
}

/* A clipboard message with just a selection (RELEASE) or a selection and a type
 * (CLIPBOARD with no data, i.e. "none"), in the layout the agent uses. */
static void
queue_clip_message(VmcMux *mux, guint32 port, guint32 type, guint sel, gboolean with_type)
{
    guint8 payload[8] = { (guint8)sel, 0, 0, 0, 0, 0, 0, 0 };
    gsize off = sel_prefix(mux);

    vmc_mux_core_queue_message(mux, port, type, payload + (4 - off), off + (with_type ? 4 : 0));
}

/* The same for one client, in the layout it uses (the session's). */
static void
inject_clip_message(VmcMux *mux, Client *c, guint32 type, guint sel, gboolean with_type)
{
    guint8 payload[8] = { (guint8)sel, 0, 0, 0, 0, 0, 0, 0 };
    gsize off = sel_prefix(mux);
    g_autoptr(GBytes) msg =
        vmc_mux_core_agent_msg_new(type, payload + (4 - off), off + (with_type ? 4 : 0));

    vmc_mux_core_inject(mux, c, msg);
}

/* The oldest started client: its guest-wide settings are the ones the agent has. */
static Client *
primary_client(VmcMux *mux)
{
    Client *best = NULL;

    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (live(c) && c->started && (!best || c->start_seq < best->start_seq))
            best = c;
    }
    return best;
}

/* ------------------------------------------------------------------------- */
/* file transfers: per-client ids <-> mux-wide ids */

static Xfer *
xfer_new(VmcMux *mux, Client *c, guint32 client_xfer_id)
{
    Xfer *x = g_new0(Xfer, 1);

    do {
        mux->next_xfer_id++;
        if (mux->next_xfer_id == 0)
            mux->next_xfer_id = 1;
    } while (g_hash_table_contains(mux->xfers, GUINT_TO_POINTER(mux->next_xfer_id)));
    x->agent_id = mux->next_xfer_id;
    x->client_id = c->id;
    x->client_xfer_id = client_xfer_id;
    g_hash_table_insert(mux->xfers, GUINT_TO_POINTER(x->agent_id), x);
    g_hash_table_replace(c->xfers, GUINT_TO_POINTER(client_xfer_id), x);
    return x;
}

static void
xfer_remove(VmcMux *mux, Xfer *x)
{
    Client *c = vmc_mux_core_lookup(mux, x->client_id);

    if (c && g_hash_table_lookup(c->xfers, GUINT_TO_POINTER(x->client_xfer_id)) == x)
        g_hash_table_remove(c->xfers, GUINT_TO_POINTER(x->client_xfer_id));
    if (c && c->msg_xfer == x)
        c->msg_xfer = NULL;
    g_hash_table_remove(mux->xfers, GUINT_TO_POINTER(x->agent_id)); /* frees x */
}

void
vmc_mux_share_xfer_clear(VmcMux *mux)
{
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        g_hash_table_remove_all(c->xfers);
        c->msg_xfer = NULL;
    }
    g_hash_table_remove_all(mux->xfers);
}

/* The agent forgot every transfer: each remaining client is told its transfers
 * failed, with its own ids. */
static void
xfers_fail_all(VmcMux *mux)
{
    GHashTableIter it;
    gpointer value;

    g_hash_table_iter_init(&it, mux->xfers);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        Xfer *x = value;
        Client *c = vmc_mux_core_lookup(mux, x->client_id);

        if (live(c)) {
            guint8 payload[8];
            g_autoptr(GBytes) msg = NULL;

            vmc_put_u32le(payload, x->client_xfer_id);
            vmc_put_u32le(payload + 4, VD_AGENT_FILE_XFER_STATUS_ERROR);
            msg = vmc_mux_core_agent_msg_new(VD_AGENT_FILE_XFER_STATUS, payload,
                                             sizeof(payload));
            vmc_mux_core_inject(mux, c, msg);
        }
    }
    vmc_mux_share_xfer_clear(mux);
}

/* ------------------------------------------------------------------------- */
/* lifecycle */

static void
sel_forget(ShareSel *s)
{
    s->owner = 0;
    s->nreq = 0;
}

void
vmc_mux_share_client_init(Client *c)
{
    c->xfers = g_hash_table_new(g_direct_hash, g_direct_equal);
}

static void
client_share_reset(Client *c)
{
    c->msg_xfer = NULL;
    c->msg_serial_set = FALSE;
    c->capturing = FALSE;
    g_clear_pointer(&c->capture, g_byte_array_unref);
    c->joined = FALSE;
    c->nccaps = 0;
    c->clip_off = FALSE;
    memset(c->serial, 0, sizeof(c->serial));
    memset(c->guest_offer, 0, sizeof(c->guest_offer));
    c->has_max_clipboard = FALSE;
    for (guint i = 0; i < SHARE_NSETTINGS; i++)
        g_clear_pointer(&c->setting[i], g_bytes_unref);
}

void
vmc_mux_share_client_clear(Client *c)
{
    client_share_reset(c);
    g_clear_pointer(&c->xfers, g_hash_table_unref);
}

/* A new agent instance (or none): everything the mux knew about it goes. The
 * clients' serials restart at 0 as spice-gtk's do on AGENT_DISCONNECTED. */
void
vmc_mux_share_reset(VmcMux *mux)
{
    vmc_mux_share_xfer_clear(mux);
    memset(&mux->share, 0, sizeof(mux->share));
    for (guint i = 0; i < mux->clients->len; i++)
        client_share_reset(g_ptr_array_index(mux->clients, i));
}

void
vmc_mux_share_agent_forgot(VmcMux *mux)
{
    /* spice-vdagentd on CLIENT_DISCONNECTED: transfers gone, the session agent
     * drops the client's clipboard; caps and grab serials are kept */
    for (guint s = 0; s < NSEL; s++)
        sel_forget(&mux->share.sel[s]);
    mux->share.nreply = 0;
    mux->share.active = FALSE;
    xfers_fail_all(mux);
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        c->joined = FALSE;
        memset(c->guest_offer, 0, sizeof(c->guest_offer));
    }
}

/* The agent resets its per-client state (a caps request reaches it): transfers
 * gone, the client's clipboard dropped; its grab serials restart at 0 when it
 * reads the request (vmc_mux_share_piece_out). */
static void
agent_client_reset(VmcMux *mux)
{
    for (guint s = 0; s < NSEL; s++)
        sel_forget(&mux->share.sel[s]);
    xfers_fail_all(mux);
}

/* ------------------------------------------------------------------------- */
/* capabilities */

/* The agent's caps word 0 as client `c` should see it: the policy applied, and
 * the clipboard layout bits limited to the session's (none for a client that
 * cannot use that layout). */
static guint32
view_word0(VmcMux *mux, const Client *c, guint32 w)
{
    if (!mux->cfg.copy_paste)
        w &= ~((1u << VD_AGENT_CAP_CLIPBOARD) | (1u << VD_AGENT_CAP_CLIPBOARD_BY_DEMAND) |
               (1u << VD_AGENT_CAP_CLIPBOARD_SELECTION));
    if (!mux->cfg.file_xfer)
        w |= 1u << VD_AGENT_CAP_FILE_XFER_DISABLED;
    if (c->clip_off)
        w &= ~LAYOUT_BITS;
    else if (mux->share.active)
        w &= ~(LAYOUT_BITS & ~mux->share.layout);
    return w;
}

/* ANNOUNCE_CAPABILITIES(request=0) from the cached agent caps, as `c` sees them. */
static GBytes *
caps_answer_new(VmcMux *mux, const Client *c)
{
    guint8 payload[4 + 4 * CAPS_MAX_WORDS];
    gsize n = MAX(mux->agent_ncaps, (gsize)1);

    vmc_put_u32le(payload, 0);
    for (gsize i = 0; i < n; i++) {
        guint32 w = i < mux->agent_ncaps ? mux->agent_caps[i] : 0;

        vmc_put_u32le(payload + 4 + 4 * i, i == 0 ? view_word0(mux, c, w) : w);
    }
    return vmc_mux_core_agent_msg_new(VD_AGENT_ANNOUNCE_CAPABILITIES, payload, 4 + 4 * n);
}

static void
announce_told(VmcMux *mux)
{
    guint8 payload[4 + 4 * CAPS_MAX_WORDS];
    gsize n = MAX(mux->share.ntold, (gsize)1);

    vmc_put_u32le(payload, 0); /* request = 0: stored without a reset */
    for (gsize i = 0; i < n; i++)
        vmc_put_u32le(payload + 4 + 4 * i, i < mux->share.ntold ? mux->share.told[i] : 0);
    vmc_mux_core_queue_message(mux, VMC_PORT_CLIENT, VD_AGENT_ANNOUNCE_CAPABILITIES, payload,
                               4 + 4 * n);
}

/* What the agent is told about "the client": the caps every joined client has,
 * with the clipboard layout bits of the session. Re-announced when it changes. */
static void
told_update(VmcMux *mux)
{
    guint32 w[CAPS_MAX_WORDS];
    gsize n = 0;
    gboolean any = FALSE;

    for (gsize i = 0; i < CAPS_MAX_WORDS; i++)
        w[i] = G_MAXUINT32;
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (!live(c) || !c->joined)
            continue;
        any = TRUE;
        n = MAX(n, c->nccaps);
        for (gsize k = 0; k < CAPS_MAX_WORDS; k++)
            w[k] &= k < c->nccaps ? c->ccaps[k] : 0;
    }
    if (!any) {
        mux->share.active = FALSE;
        return;
    }
    n = MAX(n, (gsize)1);
    w[0] = (w[0] & ~LAYOUT_BITS) | mux->share.layout;
    if (n == mux->share.ntold && memcmp(w, mux->share.told, n * sizeof(guint32)) == 0)
        return;
    memcpy(mux->share.told, w, n * sizeof(guint32));
    mux->share.ntold = n;
    announce_told(mux);
}

static gboolean
another_joined(VmcMux *mux, const Client *me)
{
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (c != me && live(c) && c->joined)
            return TRUE;
    }
    return FALSE;
}

/* A client's whole ANNOUNCE_CAPABILITIES (payload). */
static void
client_caps(VmcMux *mux, Client *c, const guint8 *msg, gsize len)
{
    const guint8 *words;
    gsize nwords;
    guint32 request;

    if (vmc_agent_caps_decode(msg + VMC_AGENT_HEADER_SIZE, len - VMC_AGENT_HEADER_SIZE,
                              &request, &words, &nwords) != VMC_DECODE_OK)
        return;
    c->nccaps = MIN(nwords, (gsize)CAPS_MAX_WORDS);
    for (gsize i = 0; i < c->nccaps; i++)
        c->ccaps[i] = vmc_get_u32le(words + 4 * i);
    c->joined = TRUE;

    if (!another_joined(mux, c)) {
        /* alone in the agent's session: it is "the client", its caps go through
         * verbatim, in its own place among its messages */
        vmc_mux_core_stage(mux, c, msg, len);
        mux->share.active = TRUE;
        mux->share.ntold = MAX(c->nccaps, (gsize)1);
        memset(mux->share.told, 0, sizeof(mux->share.told));
        memcpy(mux->share.told, c->ccaps, c->nccaps * sizeof(guint32));
        mux->share.layout = (c->nccaps > 0 ? c->ccaps[0] : 0) & LAYOUT_BITS;
        c->clip_off = FALSE;
        if (request)
            agent_client_reset(mux);
        return;
    }

    /* joining a session: spice-vdagentd would take a request as a new client and
     * reset every transfer; the agent's cached caps answer instead, and the agent
     * only hears about it when the caps all clients share change */
    c->clip_off = ((c->nccaps > 0 ? c->ccaps[0] : 0) & mux->share.layout) != mux->share.layout;
    if (c->clip_off)
        g_debug("mux: client %u lacks the session's clipboard caps: no clipboard for it",
                c->id);
    if (request && mux->have_agent_caps) {
        g_autoptr(GBytes) answer = caps_answer_new(mux, c);

        vmc_mux_core_inject(mux, c, answer);
    }
    told_update(mux);
}

/* ------------------------------------------------------------------------- */
/* guest-wide settings */

/* MAX_CLIPBOARD: the agent keeps one value and applies it to whatever it sends;
 * the smallest any client asked for (a negative value means no limit). */
static void
max_clipboard_update(VmcMux *mux)
{
    gboolean any = FALSE;
    gint64 best = G_MAXINT64;
    gint32 v;

    for (guint i = 0; i < mux->clients->len; i++) {
        Client *c = g_ptr_array_index(mux->clients, i);

        if (!live(c) || !c->has_max_clipboard)
            continue;
        any = TRUE;
        if (c->max_clipboard >= 0)
            best = MIN(best, (gint64)c->max_clipboard);
    }
    if (!any)
        return;
    v = best == G_MAXINT64 ? -1 : (gint32)best;
    if (mux->share.max_clipboard_told && mux->share.max_clipboard == v)
        return;
    mux->share.max_clipboard_told = TRUE;
    mux->share.max_clipboard = v;
    {
        guint8 payload[4];

        vmc_put_u32le(payload, (guint32)v);
        vmc_mux_core_queue_message(mux, VMC_PORT_CLIENT, VD_AGENT_MAX_CLIPBOARD, payload,
                                   sizeof(payload));
    }
}

static void
reply_push(VmcMux *mux, guint32 client_id, guint32 type)
{
    Share *sh = &mux->share;

    if (sh->nreply == SHARE_REPLY_MAX) {
        memmove(sh->reply, sh->reply + 1, (SHARE_REPLY_MAX - 1) * sizeof(ShareReply));
        sh->nreply--;
    }
    sh->reply[sh->nreply].client_id = client_id;
    sh->reply[sh->nreply].type = type;
    sh->nreply++;
}

static gint
setting_slot(const GByteArray *m)
{
    switch (vmc_get_u32le(m->data + 4)) {
    case VD_AGENT_MONITORS_CONFIG:
        return SET_MONITORS;
    case VD_AGENT_DISPLAY_CONFIG:
        return SET_DISPLAY;
    case VD_AGENT_AUDIO_VOLUME_SYNC:
        if (m->len <= VMC_AGENT_HEADER_SIZE)
            return -1;
        return m->data[VMC_AGENT_HEADER_SIZE] ? SET_VOLUME_PLAYBACK : SET_VOLUME_RECORD;
    default:
        return -1;
    }
}

/* The new primary's last settings go to the agent, which still has the old
 * primary's. */
static void
replay_settings(VmcMux *mux, Client *p)
{
    for (guint i = 0; i < SHARE_NSETTINGS; i++) {
        gsize len = 0;
        const guint8 *m;
        guint32 type;

        if (!p->setting[i])
            continue;
        m = g_bytes_get_data(p->setting[i], &len);
        type = vmc_get_u32le(m + 4);
        vmc_mux_core_queue_message(mux, VMC_PORT_CLIENT, type, m + VMC_AGENT_HEADER_SIZE,
                                   len - VMC_AGENT_HEADER_SIZE);
        if (type != VD_AGENT_AUDIO_VOLUME_SYNC)
            reply_push(mux, 0, type);
    }
}

/* ------------------------------------------------------------------------- */
/* client -> agent */

static void
capture_begin(Client *c)
{
    if (VMC_AGENT_HEADER_SIZE + (gsize)c->tracker.header.size > SHARE_CAPTURE_MAX)
        return; /* not kept: handled as "content unknown" */
    c->capturing = TRUE;
    if (c->capture)
        g_byte_array_set_size(c->capture, 0);
    else
        c->capture = g_byte_array_sized_new(64);
}

static void
release_guest_offers(VmcMux *mux, Client *grabber, guint sel)
{
    for (guint i = 0; i < mux->clients->len; i++) {
        Client *o = g_ptr_array_index(mux->clients, i);

        if (o == grabber || !live(o) || !o->guest_offer[sel])
            continue;
        /* the guest's data it was offered is gone: the guest now holds the
         * grabber's clipboard, which is not relayed to other clients */
        o->guest_offer[sel] = FALSE;
        inject_clip_message(mux, o, VD_AGENT_CLIPBOARD_RELEASE, sel, FALSE);
    }
}

static gboolean
classify_clipboard(VmcMux *mux, Client *c, const guint8 *body, gsize len)
{
    guint32 type = c->tracker.header.type;
    gsize off = sel_prefix(mux);
    gsize need = VMC_AGENT_HEADER_SIZE + off;
    ShareSel *s;
    guint sel = 0;

    if (c->clip_off) {
        c->disp = DISP_DROP;
        return TRUE;
    }
    if (type == VD_AGENT_CLIPBOARD_GRAB && told_has(mux, VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL))
        need += 4;
    if (type == VD_AGENT_CLIPBOARD_REQUEST)
        need += 4;
    if (len < need || c->tracker.header.size < need - VMC_AGENT_HEADER_SIZE) {
        /* spice-gtk always sends these fields in the first AGENT_DATA */
        g_debug("mux: client %u: clipboard message %u without its selection/serial/type in "
                "the first AGENT_DATA, dropped",
                c->id, type);
        c->disp = DISP_DROP;
        return TRUE;
    }
    if (off)
        sel = sel_index(body[VMC_AGENT_HEADER_SIZE]);
    s = &mux->share.sel[sel];

    switch (type) {
    case VD_AGENT_CLIPBOARD_GRAB:
        if (told_has(mux, VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL)) {
            guint32 serial = vmc_get_u32le(body + VMC_AGENT_HEADER_SIZE + off);
            guint32 mine = c->serial[sel];

            if (serial == mine) {
                c->serial[sel] = serial + 1;
            } else if (serial == mine - 1) {
                /* crossed our last agent GRAB to it, which it will discard: its
                 * grab wins, as spice-vdagentd lets a client's grab win */
            } else if ((gint32)(serial - mine) > 0) {
                c->serial[sel] = serial + 1; /* ahead of our count: it knows best */
            } else {
                /* it grabbed before seeing agent grabs that it will accept: the
                 * guest won, as with a private agent */
                c->disp = DISP_DROP;
                return TRUE;
            }
            /* the agent's serial is set when it goes out (vmc_mux_share_piece_out):
             * it may never go (its client leaves first) */
            c->msg_serial_set = TRUE;
        }
        s->owner = c->id;
        c->guest_offer[sel] = FALSE;
        release_guest_offers(mux, c, sel);
        break;
    case VD_AGENT_CLIPBOARD_RELEASE:
        if (s->owner != c->id)
            c->disp = DISP_DROP; /* stale: someone else grabbed since */
        else
            s->owner = 0;
        break;
    case VD_AGENT_CLIPBOARD_REQUEST:
        if (s->nreq == SHARE_REQ_MAX) {
            c->disp = DISP_DROP;
            inject_clip_message(mux, c, VD_AGENT_CLIPBOARD, sel, TRUE); /* "none" */
            break;
        }
        s->req[s->nreq].client_id = c->id;
        s->req[s->nreq].type = vmc_get_u32le(body + VMC_AGENT_HEADER_SIZE + off);
        s->nreq++;
        break;
    default:
        /* CLIPBOARD data answers a request the agent sent to the owner of the
         * time; it goes through even if someone grabbed since */
        break;
    }
    return TRUE;
}

static gboolean
classify_xfer(VmcMux *mux, Client *c, const guint8 *body, gsize len, const char **what)
{
    guint32 type = c->tracker.header.type;
    guint32 id;

    if (len < VMC_AGENT_HEADER_SIZE + 4) {
        *what = "FILE_XFER message without its id in the first AGENT_DATA";
        return FALSE;
    }
    id = vmc_get_u32le(body + VMC_AGENT_HEADER_SIZE);
    if (type == VD_AGENT_FILE_XFER_START) {
        if (g_hash_table_size(c->xfers) >= XFER_MAX_PER_CLIENT ||
            g_hash_table_contains(c->xfers, GUINT_TO_POINTER(id))) {
            c->disp = DISP_ANSWER;
            c->answer = ANSWER_XFER_STATUS;
            c->answer_status = VD_AGENT_FILE_XFER_STATUS_ERROR;
            return TRUE;
        }
        c->msg_xfer = xfer_new(mux, c, id);
    } else {
        c->msg_xfer = g_hash_table_lookup(c->xfers, GUINT_TO_POINTER(id));
        if (!c->msg_xfer)
            c->disp = DISP_DROP; /* unknown or finished transfer */
    }
    return TRUE;
}

gboolean
vmc_mux_share_classify(VmcMux *mux, Client *c, const guint8 *body, gsize len, const char **what)
{
    guint32 type = c->tracker.header.type;

    switch (type) {
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
    case VD_AGENT_MAX_CLIPBOARD:
        /* decided once the whole message is in (vmc_mux_share_msg_end) */
        c->disp = DISP_DROP;
        capture_begin(c);
        return TRUE;
    case VD_AGENT_MONITORS_CONFIG:
    case VD_AGENT_DISPLAY_CONFIG:
    case VD_AGENT_AUDIO_VOLUME_SYNC: {
        Client *p = primary_client(mux);

        capture_begin(c);
        if (p != c)
            c->disp = DISP_DROP; /* kept, replayed if it becomes the primary */
        else if (type != VD_AGENT_AUDIO_VOLUME_SYNC)
            reply_push(mux, c->id, type);
        return TRUE;
    }
    case VD_AGENT_CLIPBOARD:
    case VD_AGENT_CLIPBOARD_GRAB:
    case VD_AGENT_CLIPBOARD_REQUEST:
    case VD_AGENT_CLIPBOARD_RELEASE:
        return classify_clipboard(mux, c, body, len);
    case VD_AGENT_FILE_XFER_START:
    case VD_AGENT_FILE_XFER_STATUS:
    case VD_AGENT_FILE_XFER_DATA:
        return classify_xfer(mux, c, body, len, what);
    default:
        return TRUE;
    }
}

void
vmc_mux_share_rewrite_unit(VmcMux *mux, Client *c, Piece *p)
{
    guint8 *msg = p->data + VMC_CHUNK_HEADER_SIZE;
    gsize len = p->len - VMC_CHUNK_HEADER_SIZE;

    if (c->msg_xfer && len >= VMC_AGENT_HEADER_SIZE + 4)
        vmc_put_u32le(msg + VMC_AGENT_HEADER_SIZE, c->msg_xfer->agent_id);
    if (c->msg_serial_set)
        p->flags |= PIECE_SERIAL;
}

void
vmc_mux_share_piece_out(VmcMux *mux, Piece *p)
{
    guint8 *msg = p->data + VMC_CHUNK_HEADER_SIZE;
    gsize len = p->len - VMC_CHUNK_HEADER_SIZE;

    if (p->flags & PIECE_SERIAL) {
        /* the agent's counter as of this point of its input: what it takes */
        gsize off = sel_prefix(mux);
        guint sel = off ? sel_index(msg[VMC_AGENT_HEADER_SIZE]) : 0;

        if (len >= VMC_AGENT_HEADER_SIZE + off + 4)
            vmc_put_u32le(msg + VMC_AGENT_HEADER_SIZE + off, mux->share.sel[sel].agent_serial++);
    } else if (p->msg_type == VD_AGENT_ANNOUNCE_CAPABILITIES && p->client_id != 0 &&
               len >= VMC_AGENT_HEADER_SIZE + 4 && vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE)) {
        /* a request: spice-vdagentd resets its grab serials when it reads it, and
         * answers; what it grabs before that answer carries its old count */
        for (guint s = 0; s < NSEL; s++)
            mux->share.sel[s].agent_serial = 0;
        mux->share.reset_pending = TRUE;
    }
}

void
vmc_mux_share_msg_end(VmcMux *mux, Client *c)
{
    GByteArray *m = c->capture;
    gint slot;

    if (c->msg_xfer && c->msg_type == VD_AGENT_FILE_XFER_STATUS)
        xfer_remove(mux, c->msg_xfer); /* the client ended it */
    if (!c->capturing)
        return;
    g_assert(m && m->len >= VMC_AGENT_HEADER_SIZE);
    switch (c->msg_type) {
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
        client_caps(mux, c, m->data, m->len);
        return;
    case VD_AGENT_MAX_CLIPBOARD:
        if (m->len >= VMC_AGENT_HEADER_SIZE + 4) {
            c->has_max_clipboard = TRUE;
            c->max_clipboard = (gint32)vmc_get_u32le(m->data + VMC_AGENT_HEADER_SIZE);
            max_clipboard_update(mux);
        }
        return;
    default:
        break;
    }
    slot = setting_slot(m);
    if (slot < 0)
        return;
    g_clear_pointer(&c->setting[slot], g_bytes_unref);
    c->setting[slot] = g_bytes_new(m->data, m->len);
    if (c->disp == DISP_DROP && c->msg_type == VD_AGENT_MONITORS_CONFIG) {
        /* every agent answers MONITORS_CONFIG; a private one would have */
        guint8 reply[8];
        g_autoptr(GBytes) msg = NULL;

        vmc_put_u32le(reply, VD_AGENT_MONITORS_CONFIG);
        vmc_put_u32le(reply + 4, VD_AGENT_SUCCESS);
        msg = vmc_mux_core_agent_msg_new(VD_AGENT_REPLY, reply, sizeof(reply));
        vmc_mux_core_inject(mux, c, msg);
    }
}

/* ------------------------------------------------------------------------- */
/* agent -> clients */

static void
route_one(Route *route, Client *c)
{
    if (live(c) && c->started) {
        route->kind = ROUTE_ONE;
        route->to = c->id;
    } else {
        route->kind = ROUTE_NONE;
    }
}

static void
route_clipboard(VmcMux *mux, guint8 *msg, gsize n, const VmcAgentHeader *h, Route *route)
{
    gsize off = sel_prefix(mux);
    guint sel = 0;
    ShareSel *s;

    if (n < VMC_AGENT_HEADER_SIZE + off || h->size < off) {
        route->kind = ROUTE_NONE; /* malformed */
        return;
    }
    if (off)
        sel = sel_index(msg[VMC_AGENT_HEADER_SIZE]);
    s = &mux->share.sel[sel];

    switch (h->type) {
    case VD_AGENT_CLIPBOARD_GRAB:
        if (told_has(mux, VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL)) {
            guint32 serial;

            if (n < VMC_AGENT_HEADER_SIZE + off + 4 || h->size < off + 4) {
                route->kind = ROUTE_NONE;
                return;
            }
            serial = vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE + off);
            if (mux->share.reset_pending) {
                /* made before it read a caps request that resets its count */
                g_debug("mux: agent grab %u from before its reset, dropped", serial);
                route->kind = ROUTE_NONE;
                return;
            }
            if (serial != s->agent_serial && (gint32)(serial - s->agent_serial) < 0) {
                /* it crossed a client grab the mux already passed on, which the
                 * agent takes as the winner ("client grab wins") */
                g_debug("mux: agent grab %u lost to a client grab (next %u)", serial,
                        s->agent_serial);
                route->kind = ROUTE_NONE;
                return;
            }
            s->agent_serial = serial + 1;
            route->per_client = TRUE; /* each client's own serial */
        } else {
            for (guint i = 0; i < mux->clients->len; i++) {
                Client *c = g_ptr_array_index(mux->clients, i);

                if (live(c) && c->started && !c->clip_off)
                    c->guest_offer[sel] = TRUE;
            }
        }
        s->owner = 0;
        route->kind = ROUTE_CLIP;
        return;
    case VD_AGENT_CLIPBOARD_RELEASE:
        for (guint i = 0; i < mux->clients->len; i++)
            ((Client *)g_ptr_array_index(mux->clients, i))->guest_offer[sel] = FALSE;
        route->kind = ROUTE_CLIP;
        return;
    case VD_AGENT_CLIPBOARD_REQUEST: {
        Client *owner = vmc_mux_core_lookup(mux, s->owner);

        if (live(owner) && owner->started && !owner->clip_off) {
            route_one(route, owner);
            return;
        }
        /* nobody owns it any more: the agent gets "none" rather than a wait */
        route->kind = ROUTE_NONE;
        queue_clip_message(mux, VMC_PORT_CLIENT, VD_AGENT_CLIPBOARD, sel, TRUE);
        return;
    }
    case VD_AGENT_CLIPBOARD: {
        guint32 type = 0;
        guint k = 0;
        Client *to;

        if (s->nreq == 0) {
            route->kind = ROUTE_NONE; /* nobody asked */
            return;
        }
        if (n >= VMC_AGENT_HEADER_SIZE + off + 4 && h->size >= off + 4)
            type = vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE + off);
        /* the oldest request for that type, else the oldest request */
        while (k < s->nreq && s->req[k].type != type)
            k++;
        if (k == s->nreq)
            k = 0;
        to = vmc_mux_core_lookup(mux, s->req[k].client_id);
        memmove(s->req + k, s->req + k + 1, (s->nreq - k - 1) * sizeof(ShareRequest));
        s->nreq--;
        route_one(route, to);
        return;
    }
    default:
        return;
    }
}

void
vmc_mux_share_agent_route(VmcMux *mux, guint8 *msg, gsize n, const VmcAgentHeader *h,
                          Route *route)
{
    switch (h->type) {
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
        mux->share.reset_pending = FALSE; /* it answered (or asks itself) */
        if (n >= VMC_AGENT_HEADER_SIZE + 4 && h->size >= 4 &&
            vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE) != 0 && mux->share.active) {
            /* a (re)started agent asks: it has no client state, tell it what it
             * should know */
            agent_client_reset(mux);
            for (guint s = 0; s < NSEL; s++)
                mux->share.sel[s].agent_serial = 0;
            announce_told(mux);
        }
        route->per_client = TRUE;
        return;
    case VD_AGENT_CLIPBOARD:
    case VD_AGENT_CLIPBOARD_GRAB:
    case VD_AGENT_CLIPBOARD_REQUEST:
    case VD_AGENT_CLIPBOARD_RELEASE:
        route_clipboard(mux, msg, n, h, route);
        return;
    case VD_AGENT_FILE_XFER_STATUS: {
        Xfer *x;

        if (h->size < 8 || n < VMC_AGENT_HEADER_SIZE + 8) {
            route->kind = ROUTE_NONE;
            return;
        }
        x = g_hash_table_lookup(mux->xfers,
                                GUINT_TO_POINTER(vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE)));
        if (!x) {
            route->kind = ROUTE_NONE; /* its client left, or not ours */
            return;
        }
        route_one(route, vmc_mux_core_lookup(mux, x->client_id));
        vmc_put_u32le(msg + VMC_AGENT_HEADER_SIZE, x->client_xfer_id);
        if (vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE + 4) !=
            VD_AGENT_FILE_XFER_STATUS_CAN_SEND_DATA)
            xfer_remove(mux, x);
        return;
    }
    case VD_AGENT_REPLY: {
        Share *sh = &mux->share;
        guint32 type;
        guint k = 0;

        if (h->size < 8 || n < VMC_AGENT_HEADER_SIZE + 8)
            return;
        type = vmc_get_u32le(msg + VMC_AGENT_HEADER_SIZE);
        while (k < sh->nreply && sh->reply[k].type != type)
            k++;
        if (k == sh->nreply)
            return; /* not one the mux routed: everybody */
        route_one(route, vmc_mux_core_lookup(mux, sh->reply[k].client_id));
        memmove(sh->reply + k, sh->reply + k + 1, (sh->nreply - k - 1) * sizeof(ShareReply));
        sh->nreply--;
        return;
    }
    default:
        return;
    }
}

GBytes *
vmc_mux_share_agent_piece(VmcMux *mux, Client *c, const guint8 *msg, gsize n)
{
    guint8 *d = g_memdup2(msg, n);
    guint32 type = vmc_get_u32le(msg + 4);

    if (type == VD_AGENT_ANNOUNCE_CAPABILITIES) {
        /* the mux answers the agent's requests itself: none reaches a client */
        if (n >= VMC_AGENT_HEADER_SIZE + 4)
            vmc_put_u32le(d + VMC_AGENT_HEADER_SIZE, 0);
        if (n >= VMC_AGENT_HEADER_SIZE + 8 && mux->agent_ncaps > 0)
            vmc_put_u32le(d + VMC_AGENT_HEADER_SIZE + 4, view_word0(mux, c, mux->agent_caps[0]));
    } else if (type == VD_AGENT_CLIPBOARD_GRAB) {
        gsize off = sel_prefix(mux);
        guint sel = off ? sel_index(msg[VMC_AGENT_HEADER_SIZE]) : 0;

        /* exactly the serial this client's counter expects */
        vmc_put_u32le(d + VMC_AGENT_HEADER_SIZE + off, c->serial[sel]);
        c->serial[sel]++;
        c->guest_offer[sel] = TRUE;
    }
    return g_bytes_new_take(d, n);
}

/* ------------------------------------------------------------------------- */
/* a client leaves, others stay */

gboolean
vmc_mux_share_client_leave(VmcMux *mux, Client *c, gboolean held_port)
{
    Client *primary = primary_client(mux);
    gboolean was_primary = c->started && (!primary || c->start_seq < primary->start_seq);
    GHashTableIter it;
    gpointer value;

    if (held_port) {
        guint64 left = mux->port_msg_total - mux->port_msg_sent;
        const guint8 *head = mux->port_msg_head;

        g_assert(mux->port_msg_sent < mux->port_msg_total);
        if (left > SHARE_FILLER_MAX)
            return FALSE;
        /* Before the filler completes its message, on port 2 (reassembled apart
         * and acted on at once): the agent forgets the transfer whose data this
         * was, so the zeros are ignored ("unknown transfer"), and the clipboard
         * whose data this was is released, so no paste takes the zeros. */
        if (mux->port_msg_type == VD_AGENT_FILE_XFER_DATA &&
            mux->port_msg_head_len >= VMC_AGENT_HEADER_SIZE + 4) {
            guint32 agent_id = vmc_get_u32le(head + VMC_AGENT_HEADER_SIZE);
            Xfer *x = g_hash_table_lookup(mux->xfers, GUINT_TO_POINTER(agent_id));

            if (x && x->client_id == c->id) {
                queue_u32_pair(mux, VMC_PORT_SERVER, VD_AGENT_FILE_XFER_STATUS, agent_id,
                               VD_AGENT_FILE_XFER_STATUS_CANCELLED);
                xfer_remove(mux, x);
            }
        } else if (mux->port_msg_type == VD_AGENT_CLIPBOARD) {
            gsize off = sel_prefix(mux);
            guint sel = off && mux->port_msg_head_len > VMC_AGENT_HEADER_SIZE
                            ? sel_index(head[VMC_AGENT_HEADER_SIZE])
                            : 0;

            if (mux->share.sel[sel].owner == c->id) {
                mux->share.sel[sel].owner = 0;
                queue_clip_message(mux, VMC_PORT_SERVER, VD_AGENT_CLIPBOARD_RELEASE, sel,
                                   FALSE);
            }
        }
        g_debug("mux: client %u left mid-message (type %u): %" G_GUINT64_FORMAT
                " filler bytes complete it",
                c->id, mux->port_msg_type, left);
        mux->filler_left = left;
        mux->port_owner = FILLER_OWNER;
    }

    /* what it held in the agent, undone on its behalf (port 1, after any filler) */
    for (guint s = 0; s < NSEL; s++) {
        ShareSel *ss = &mux->share.sel[s];

        for (guint k = 0; k < ss->nreq; k++)
            if (ss->req[k].client_id == c->id)
                ss->req[k].client_id = 0;
        if (ss->owner == c->id) {
            ss->owner = 0;
            queue_clip_message(mux, VMC_PORT_CLIENT, VD_AGENT_CLIPBOARD_RELEASE, s, FALSE);
        }
    }
    for (guint k = 0; k < mux->share.nreply; k++)
        if (mux->share.reply[k].client_id == c->id)
            mux->share.reply[k].client_id = 0;
    g_hash_table_iter_init(&it, c->xfers);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        Xfer *x = value;

        queue_u32_pair(mux, VMC_PORT_CLIENT, VD_AGENT_FILE_XFER_STATUS, x->agent_id,
                       VD_AGENT_FILE_XFER_STATUS_CANCELLED);
        g_hash_table_iter_remove(&it);
        g_hash_table_remove(mux->xfers, GUINT_TO_POINTER(x->agent_id));
    }
    c->msg_xfer = NULL;

    /* what the agent is told about "the client" follows the clients that remain */
    if (c->joined) {
        c->joined = FALSE;
        told_update(mux);
    }
    c->has_max_clipboard = FALSE;
    max_clipboard_update(mux);
    if (was_primary && primary)
        replay_settings(mux, primary);
    return TRUE;
}
