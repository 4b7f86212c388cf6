/* fuzz-mux-util.h — the harness behind fuzz-mux-guest and fuzz-mux-client.
 *
 * Input: byte 0 = configuration, byte 1 = initial send budgets, then a script of
 * events, each an op byte and its arguments; the "data" of the target's direction
 * (guest port bytes or client AGENT_DATA bodies) is taken from the input at the
 * sizes the ops choose, so the first bytes of each step choose the splits.
 *
 * Whatever the input, everything the mux emits is checked:
 * - towards the guest: chunks of 1..2048 bytes on ports 1 or 2, a chunk that
 *   starts a message holds its whole header with protocol 1, no chunk runs past
 *   its message end (per-port reassembly as spice-vdagentd does, port 1 reset by
 *   CLIENT_DISCONNECTED);
 * - towards each client: AGENT_DATA of 1..2048 bytes that never span two messages
 *   (reassembly as spice-gtk does, reset on AGENT_DISCONNECTED); token and
 *   control messages of the right size;
 * - queues within their bounds.
 */
#pragma once

#include <stdint.h>
#include <string.h>
#include <glib.h>
#include <spice/enums.h>
#include <spice/vd_agent.h>

#include "server/vmc-mux.h"
#include "protocol/vmc-chunk.h"

#define FZ_MAX_CLIENTS 4

typedef enum { FZ_GUEST, FZ_CLIENT } FzMode;

typedef struct {
    GByteArray *msg; /* message being reassembled */
    gsize need;
} FzAsm;

typedef struct {
    const guint8 *data;
    gsize len;
    gsize pos;
    VmcMux *mux;
    VmcMuxConfig cfg;
    gint64 now;
    guint32 ids[FZ_MAX_CLIENTS];
    FzAsm client_rx[FZ_MAX_CLIENTS];
    GByteArray *gbuf; /* guest output not yet parsed */
    FzAsm guest_rx[2];
} Fz;

static gboolean
fz_take(Fz *f, gsize n, const guint8 **out)
{
    if (f->len - f->pos < n)
        return FALSE;
    *out = f->data + f->pos;
    f->pos += n;
    return TRUE;
}

static guint
fz_byte(Fz *f)
{
    const guint8 *b;

    return fz_take(f, 1, &b) ? b[0] : 0;
}

static void
fz_asm_reset(FzAsm *a)
{
    g_byte_array_set_size(a->msg, 0);
    a->need = 0;
}

/* One unit (chunk payload or AGENT_DATA body) of a message stream: need = bytes
 * of the current message still to come, 0 between messages. */
static void
fz_unit(FzAsm *a, const guint8 *p, gsize n)
{
    g_assert(n >= 1 && n <= VMC_CHUNK_MAX_PAYLOAD);
    if (a->need == 0) {
        VmcAgentHeader h;

        g_assert(n >= VMC_AGENT_HEADER_SIZE);
        g_assert(vmc_agent_header_decode(p, n, &h, NULL) == VMC_DECODE_OK);
        g_assert(h.protocol == VMC_AGENT_PROTOCOL);
        a->need = VMC_AGENT_HEADER_SIZE + (gsize)h.size;
        g_byte_array_set_size(a->msg, 0);
        g_byte_array_append(a->msg, p, VMC_AGENT_HEADER_SIZE);
    }
    g_assert(n <= a->need);
    a->need -= n;
}

static void
fz_guest_bytes(Fz *f, const guint8 *p, gsize n)
{
    gsize off = 0;

    g_byte_array_append(f->gbuf, p, (guint)n);
    while (f->gbuf->len - off >= VMC_CHUNK_HEADER_SIZE) {
        guint32 port = vmc_get_u32le(f->gbuf->data + off);
        guint32 size = vmc_get_u32le(f->gbuf->data + off + 4);
        const guint8 *payload = f->gbuf->data + off + VMC_CHUNK_HEADER_SIZE;
        FzAsm *a;

        g_assert(port == VMC_PORT_CLIENT || port == VMC_PORT_SERVER);
        g_assert(size >= 1 && size <= VMC_CHUNK_MAX_PAYLOAD);
        if (f->gbuf->len - off - VMC_CHUNK_HEADER_SIZE < size)
            break;
        a = &f->guest_rx[port - 1];
        fz_unit(a, payload, size);
        if (port == VMC_PORT_SERVER && a->need == 0 &&
            vmc_get_u32le(a->msg->data + 4) == VD_AGENT_CLIENT_DISCONNECTED)
            fz_asm_reset(&f->guest_rx[0]);
        off += VMC_CHUNK_HEADER_SIZE + size;
    }
    g_byte_array_remove_range(f->gbuf, 0, (guint)off);
}

static void
fz_write_guest(Fz *f, gsize max)
{
    while (max > 0) {
        GOutputVector vec[4];
        guint n = vmc_mux_guest_output_vec(f->mux, vec, G_N_ELEMENTS(vec));
        gsize total = 0;

        if (n == 0)
            break;
        for (guint i = 0; i < n && total < max; i++) {
            gsize take = MIN(vec[i].size, max - total);

            fz_guest_bytes(f, vec[i].buffer, take);
            total += take;
        }
        vmc_mux_guest_output_advance(f->mux, total);
        max -= total;
    }
}

static void
fz_guest_reset(Fz *f)
{
    g_byte_array_set_size(f->gbuf, 0);
    fz_asm_reset(&f->guest_rx[0]);
    fz_asm_reset(&f->guest_rx[1]);
}

static void
fz_pop(Fz *f, guint k, guint max)
{
    VmcMuxMsg m;

    if (!f->ids[k])
        return;
    while (max-- > 0 && vmc_mux_client_peek(f->mux, f->ids[k], &m)) {
        switch (m.type) {
        case SPICE_MSG_MAIN_AGENT_DATA:
            fz_unit(&f->client_rx[k], m.data, m.len);
            break;
        case SPICE_MSG_MAIN_AGENT_DISCONNECTED:
            g_assert(m.len == 4);
            fz_asm_reset(&f->client_rx[k]);
            break;
        case SPICE_MSG_MAIN_AGENT_TOKEN:
        case SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS:
            g_assert(m.len == 4);
            g_assert(vmc_get_u32le(m.data) > 0);
            g_assert(vmc_get_u32le(m.data) <= f->cfg.agent_window ||
                     m.type == SPICE_MSG_MAIN_AGENT_TOKEN);
            /* spice-gtk keeps its reassembly across AGENT_TOKEN, which may come
             * between two AGENT_DATA of one message */
            if (m.type == SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS)
                fz_asm_reset(&f->client_rx[k]);
            break;
        case SPICE_MSG_MAIN_AGENT_CONNECTED:
            g_assert(m.len == 0);
            fz_asm_reset(&f->client_rx[k]);
            break;
        default:
            g_assert_not_reached();
        }
        vmc_mux_client_pop(f->mux, f->ids[k]);
    }
}

static void
fz_check(Fz *f)
{
    g_assert(vmc_mux_guest_output_size(f->mux) <= f->cfg.guest_out_limit + 128 * 1024);
    for (guint k = 0; k < FZ_MAX_CLIENTS; k++) {
        VmcMuxStats s;

        if (!f->ids[k])
            continue;
        g_assert(vmc_mux_client_get_stats(f->mux, f->ids[k], &s));
        g_assert(s.queued_bytes <= 2 * f->cfg.client_out_limit + 64 * 1024);
        g_assert(s.tokens_in_use <= f->cfg.agent_window);
    }
}

static void
fz_add_client(Fz *f, guint caps, guint budget)
{
    for (guint k = 0; k < FZ_MAX_CLIENTS; k++) {
        if (f->ids[k])
            continue;
        f->ids[k] = vmc_mux_client_add(f->mux, caps);
        fz_asm_reset(&f->client_rx[k]);
        if (vmc_mux_guest_is_connected(f->mux))
            vmc_mux_client_agent_start(f->mux, f->ids[k], budget, NULL);
        return;
    }
}

static void
fz_remove_client(Fz *f, guint k)
{
    if (!f->ids[k])
        return;
    vmc_mux_client_remove(f->mux, f->ids[k]);
    f->ids[k] = 0;
}

static guint32
fz_budget(guint b)
{
    return (b & 0x80) ? 0xffffffffu : (b & 0x7f);
}

static void
fz_run(FzMode mode, const guint8 *data, gsize size)
{
    Fz f = { 0 };
    guint conf, budgets;

    f.data = data;
    f.len = size;
    conf = fz_byte(&f);
    budgets = fz_byte(&f);
    vmc_mux_config_init(&f.cfg);
    f.cfg.copy_paste = !(conf & 1);
    f.cfg.file_xfer = !(conf & 2);
    f.cfg.max_clients = (conf & 4) ? 3 : 1;
    if (conf & 32) {
        f.cfg.client_out_limit = 16 * 1024;
        f.cfg.guest_out_limit = 8 * 1024;
    }
    if (conf & 64)
        f.cfg.agent_window = 4;
    f.cfg.stall_timeout_us = 10 * G_USEC_PER_SEC;
    f.mux = vmc_mux_new(&f.cfg);
    vmc_mux_get_agent_window(f.mux);
    f.cfg.agent_window = vmc_mux_get_agent_window(f.mux);
    f.gbuf = g_byte_array_new();
    for (guint i = 0; i < 2; i++)
        f.guest_rx[i].msg = g_byte_array_new();
    for (guint k = 0; k < FZ_MAX_CLIENTS; k++)
        f.client_rx[k].msg = g_byte_array_new();

    vmc_mux_tick(f.mux, 0);
    vmc_mux_guest_connected(f.mux);
    for (guint k = 0; k < 1 + ((conf >> 3) & 3) && k < FZ_MAX_CLIENTS; k++)
        fz_add_client(&f, (budgets >> k) & 1 ? VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS : 0,
                      (budgets >> (4 + k)) & 1 ? 0xffffffffu : 2);

    while (f.pos < f.len) {
        guint op = fz_byte(&f);
        guint k = (op >> 4) & 3;
        const guint8 *p;
        gsize n;

        switch (op & 15) {
        case 0: case 1: case 2: case 3: case 4: /* data in the target's direction */
        case 5:                                  /* ... or the other one */
            n = fz_byte(&f);
            if (op & 0x40)
                n = n * 16 + (op & 0x80 ? 15 : 0);
            n += 1;
            n = MIN(n, f.len - f.pos);
            if (!fz_take(&f, n, &p))
                break;
            if ((mode == FZ_GUEST) == ((op & 15) != 5)) {
                if (!vmc_mux_feed_guest(f.mux, p, n, NULL))
                    fz_guest_reset(&f);
            } else if (f.ids[k]) {
                vmc_mux_client_agent_data(f.mux, f.ids[k], p, n, NULL);
            }
            break;
        case 6:
            fz_write_guest(&f, (gsize)fz_byte(&f) * 64 + 1);
            break;
        case 7:
            fz_pop(&f, k, fz_byte(&f) + 1);
            break;
        case 8:
            if (f.ids[k])
                vmc_mux_client_agent_token(f.mux, f.ids[k], fz_budget(fz_byte(&f)), NULL);
            break;
        case 9:
            if (f.ids[k])
                vmc_mux_client_agent_start(f.mux, f.ids[k], fz_budget(fz_byte(&f)), NULL);
            break;
        case 10:
            fz_add_client(&f, op & 0x40 ? VMC_MUX_CLIENT_CAP_CONNECTED_TOKENS : 0,
                          fz_budget(fz_byte(&f)));
            break;
        case 11:
            fz_remove_client(&f, k);
            break;
        case 12:
            vmc_mux_guest_disconnected(f.mux);
            fz_guest_reset(&f);
            break;
        case 13:
            vmc_mux_guest_connected(f.mux);
            break;
        case 14:
            f.now += (gint64)fz_byte(&f) * G_USEC_PER_SEC / 8;
            vmc_mux_tick(f.mux, f.now);
            break;
        case 15: {
            guint8 payload[64] = { 0 };
            guint t = fz_byte(&f);
            gsize len = (op & 0x40) ? 13 : fz_byte(&f) * 17;

            payload[0] = (guint8)t;
            if (len <= sizeof(payload))
                vmc_mux_send_server_message(f.mux, (op & 0x80) ? VD_AGENT_MOUSE_STATE : t,
                                            payload, len, NULL);
            break;
        }
        }
        /* a cut-off client is closed by the runtime */
        for (guint i = 0; i < FZ_MAX_CLIENTS; i++)
            if (f.ids[i] && vmc_mux_client_failed(f.mux, f.ids[i], NULL))
                fz_remove_client(&f, i);
        fz_check(&f);
    }
    /* drain what is left through the checkers */
    fz_write_guest(&f, G_MAXSIZE);
    for (guint k = 0; k < FZ_MAX_CLIENTS; k++)
        fz_pop(&f, k, G_MAXUINT);
    fz_check(&f);

    vmc_mux_free(f.mux);
    g_byte_array_unref(f.gbuf);
    for (guint i = 0; i < 2; i++)
        g_byte_array_unref(f.guest_rx[i].msg);
    for (guint k = 0; k < FZ_MAX_CLIENTS; k++)
        g_byte_array_unref(f.client_rx[k].msg);
}
