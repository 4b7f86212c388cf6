/* vmc-describe.c — readable descriptions of messages and trace events. */
#include "tools/client/vmc-describe.h"

#include <string.h>
#include <spice/enums.h>
#include <spice/vd_agent.h>

#include "protocol/vmc-agent.h"
#include "protocol/vmc-main.h"
#include "protocol/vmc-wire.h"

void
vmc_describe_ctx_init(VmcDescribeCtx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
}

void
vmc_describe_ctx_observe(VmcDescribeCtx *ctx, gboolean from_agent, guint32 type,
                         const guint8 *payload, gsize len)
{
    if (type != VD_AGENT_ANNOUNCE_CAPABILITIES || len < 8)
        return;
    guint32 caps = vmc_get_u32le(payload + 4);
    if (from_agent) {
        ctx->agent_caps = caps;
        ctx->have_agent_caps = TRUE;
    } else {
        ctx->client_caps = caps;
        ctx->have_client_caps = TRUE;
    }
}

static gboolean
both_have(const VmcDescribeCtx *ctx, guint cap)
{
    /* Unknown caps: assume what spice-gtk and spice-vdagentd negotiate. */
    gboolean c = ctx->have_client_caps ? (ctx->client_caps >> cap) & 1 : TRUE;
    gboolean a = ctx->have_agent_caps ? (ctx->agent_caps >> cap) & 1 : TRUE;
    return c && a;
}

char *
vmc_describe_hex(const guint8 *data, gsize len, gsize max)
{
    GString *s = g_string_new(NULL);
    gsize n = MIN(len, max);
    for (gsize i = 0; i < n; i++)
        g_string_append_printf(s, i ? " %02x" : "%02x", data[i]);
    if (n < len)
        g_string_append(s, " ...");
    return g_string_free(s, FALSE);
}

char *
vmc_describe_caps(const guint32 *words, gsize nwords)
{
    GString *s = g_string_new(NULL);
    for (guint bit = 0; bit < nwords * 32; bit++) {
        if (!vmc_caps_test(words, nwords, bit))
            continue;
        const char *name = vmc_agent_cap_name(bit);
        if (s->len)
            g_string_append_c(s, ',');
        if (name)
            g_string_append(s, name);
        else
            g_string_append_printf(s, "bit%u", bit);
    }
    return g_string_free(s, FALSE);
}

static const char *
clip_type_name(guint32 t)
{
    static const char *const names[] = {"NONE", "UTF8_TEXT", "IMAGE_PNG", "IMAGE_BMP",
                                        "IMAGE_TIFF", "IMAGE_JPG", "FILE_LIST"};
    return t < G_N_ELEMENTS(names) ? names[t] : NULL;
}

static void
append_clip_type(GString *s, guint32 t)
{
    const char *n = clip_type_name(t);
    if (n)
        g_string_append(s, n);
    else
        g_string_append_printf(s, "%u", t);
}

static void
append_text(GString *s, const guint8 *p, gsize len, gsize max)
{
    gsize n = MIN(len, max);
    g_autofree char *raw = g_strndup((const char *)p, n);
    g_autofree char *valid = g_utf8_make_valid(raw, -1);
    g_autofree char *esc = g_strescape(valid, NULL);
    g_string_append_printf(s, "\"%s\"%s", esc, n < len ? "..." : "");
}

/* Clipboard messages start with u8 selection + 3 pad when both sides have the cap. */
static gsize
clip_prefix(const VmcDescribeCtx *ctx, GString *s, const guint8 *p, gsize len)
{
    if (!both_have(ctx, VD_AGENT_CAP_CLIPBOARD_SELECTION) || len < 4)
        return 0;
    g_string_append_printf(s, " sel=%u", p[0]);
    return 4;
}

char *
vmc_describe_agent_message(const VmcDescribeCtx *ctx, guint32 type, guint64 opaque, guint32 size,
                           const guint8 *payload, gsize len)
{
    GString *s = g_string_new(NULL);
    const char *name = vmc_agent_msg_type_name(type);
    const guint8 *p = payload;
    gsize off = 0;

    g_string_append_printf(s, "%s(%u) size=%u", name ? name : "UNKNOWN", type, size);
    if (opaque)
        g_string_append_printf(s, " opaque=%" G_GUINT64_FORMAT, opaque);
    if (len < size)
        g_string_append_printf(s, " (%" G_GSIZE_FORMAT " bytes kept)", len);

    switch (type) {
    case VD_AGENT_MOUSE_STATE:
        if (len >= 13)
            g_string_append_printf(s, " x=%u y=%u buttons=0x%x display=%u", vmc_get_u32le(p),
                                   vmc_get_u32le(p + 4), vmc_get_u32le(p + 8), p[12]);
        break;
    case VD_AGENT_MONITORS_CONFIG:
        if (len >= 8) {
            guint32 n = vmc_get_u32le(p), flags = vmc_get_u32le(p + 4);
            g_string_append_printf(s, " monitors=%u flags=0x%x", n, flags);
            for (guint32 i = 0; i < n && 8 + (gsize)(i + 1) * 20 <= len && i < 16; i++) {
                const guint8 *m = p + 8 + (gsize)i * 20;
                g_string_append_printf(s, " %ux%u+%d+%d", vmc_get_u32le(m + 4), vmc_get_u32le(m),
                                       (gint32)vmc_get_u32le(m + 12),
                                       (gint32)vmc_get_u32le(m + 16));
            }
        }
        break;
    case VD_AGENT_REPLY:
        if (len >= 8) {
            guint32 t = vmc_get_u32le(p), e = vmc_get_u32le(p + 4);
            const char *tn = vmc_agent_msg_type_name(t);
            g_string_append_printf(s, " to=%s error=%s", tn ? tn : "?",
                                   e == VD_AGENT_SUCCESS ? "SUCCESS"
                                   : e == VD_AGENT_ERROR ? "ERROR"
                                                         : "?");
        }
        break;
    case VD_AGENT_CLIPBOARD:
        off = clip_prefix(ctx, s, p, len);
        if (len >= off + 4) {
            guint32 t = vmc_get_u32le(p + off);
            g_string_append(s, " type=");
            append_clip_type(s, t);
            off += 4;
            g_string_append_printf(s, " data=%" G_GSIZE_FORMAT " bytes", (gsize)size - off);
            if (t == VD_AGENT_CLIPBOARD_UTF8_TEXT) {
                g_string_append_c(s, ' ');
                append_text(s, p + off, len - off, 60);
            }
        }
        break;
    case VD_AGENT_DISPLAY_CONFIG:
        if (len >= 8)
            g_string_append_printf(s, " flags=0x%x depth=%u", vmc_get_u32le(p),
                                   vmc_get_u32le(p + 4));
        break;
    case VD_AGENT_ANNOUNCE_CAPABILITIES:
        if (len >= 4) {
            guint32 words[8] = {0};
            gsize n = MIN((len - 4) / 4, G_N_ELEMENTS(words));
            for (gsize i = 0; i < n; i++)
                words[i] = vmc_get_u32le(p + 4 + 4 * i);
            g_autofree char *names = vmc_describe_caps(words, n);
            g_string_append_printf(s, " request=%u caps=0x%08x [%s]", vmc_get_u32le(p),
                                   n ? words[0] : 0, names);
        }
        break;
    case VD_AGENT_CLIPBOARD_GRAB:
        off = clip_prefix(ctx, s, p, len);
        if (both_have(ctx, VD_AGENT_CAP_CLIPBOARD_GRAB_SERIAL) && len >= off + 4) {
            g_string_append_printf(s, " serial=%u", vmc_get_u32le(p + off));
            off += 4;
        }
        g_string_append(s, " types=[");
        for (gsize i = off; i + 4 <= len && i < off + 64; i += 4) {
            if (i > off)
                g_string_append_c(s, ',');
            append_clip_type(s, vmc_get_u32le(p + i));
        }
        g_string_append_c(s, ']');
        break;
    case VD_AGENT_CLIPBOARD_REQUEST:
        off = clip_prefix(ctx, s, p, len);
        if (len >= off + 4) {
            g_string_append(s, " type=");
            append_clip_type(s, vmc_get_u32le(p + off));
        }
        break;
    case VD_AGENT_CLIPBOARD_RELEASE:
        clip_prefix(ctx, s, p, len);
        break;
    case VD_AGENT_FILE_XFER_START:
        if (len >= 4) {
            g_string_append_printf(s, " id=%u ", vmc_get_u32le(p));
            append_text(s, p + 4, len - 4, 120);
        }
        break;
    case VD_AGENT_FILE_XFER_STATUS:
        if (len >= 8) {
            guint32 r = vmc_get_u32le(p + 4);
            const char *rn = vmc_file_xfer_status_name(r);
            g_string_append_printf(s, " id=%u result=%s(%u)", vmc_get_u32le(p), rn ? rn : "?",
                                   r);
            if (len > 8) {
                g_autofree char *hex = vmc_describe_hex(p + 8, len - 8, 16);
                g_string_append_printf(s, " data=[%s]", hex);
            }
        }
        break;
    case VD_AGENT_FILE_XFER_DATA:
        if (len >= 12)
            g_string_append_printf(s, " id=%u bytes=%" G_GUINT64_FORMAT, vmc_get_u32le(p),
                                   vmc_get_u64le(p + 4));
        break;
    case VD_AGENT_MAX_CLIPBOARD:
        if (len >= 4)
            g_string_append_printf(s, " max=%d", (gint32)vmc_get_u32le(p));
        break;
    case VD_AGENT_AUDIO_VOLUME_SYNC:
        if (len >= 2) {
            g_string_append_printf(s, " %s channels=%u", p[0] ? "playback" : "record", p[1]);
            for (gsize i = 2; i + 2 <= len && i < 2 + 2 * 8; i += 2)
                g_string_append_printf(s, " %u", vmc_get_u16le(p + i));
        }
        break;
    case VD_AGENT_GRAPHICS_DEVICE_INFO:
        if (len >= 4)
            g_string_append_printf(s, " devices=%u", vmc_get_u32le(p));
        break;
    case VD_AGENT_CLIENT_DISCONNECTED:
        break;
    default:
        if (len > 0) {
            g_autofree char *hex = vmc_describe_hex(p, len, 24);
            g_string_append_printf(s, " [%s]", hex);
        }
        break;
    }
    return g_string_free(s, FALSE);
}

char *
vmc_describe_main_message(gboolean from_server, guint16 type, const guint8 *body, gsize len)
{
    GString *s = g_string_new(NULL);
    const char *name = from_server ? vmc_main_msg_name(type) : vmc_main_msgc_name(type);

    g_string_append_printf(s, "%s(%u)", name, type);
    if (from_server) {
        switch (type) {
        case SPICE_MSG_MAIN_AGENT_TOKEN:
        case SPICE_MSG_MAIN_AGENT_CONNECTED_TOKENS:
        case SPICE_MSG_MAIN_AGENT_DISCONNECTED:
            if (len >= 4)
                g_string_append_printf(s, " %u", vmc_get_u32le(body));
            break;
        case SPICE_MSG_MAIN_AGENT_DATA:
            g_string_append_printf(s, " %" G_GSIZE_FORMAT " bytes", len);
            break;
        case SPICE_MSG_MAIN_INIT: {
            VmcMainInit i;
            if (vmc_main_init_decode(body, len, &i) == VMC_DECODE_OK)
                g_string_append_printf(s, " session=%u agent_connected=%u agent_tokens=%u "
                                       "mouse=%u/%u", i.session_id, i.agent_connected,
                                       i.agent_tokens, i.supported_mouse_modes,
                                       i.current_mouse_mode);
            break;
        }
        case SPICE_MSG_PING:
            if (len >= 12)
                g_string_append_printf(s, " id=%u size=%" G_GSIZE_FORMAT, vmc_get_u32le(body),
                                       len);
            break;
        default:
            g_string_append_printf(s, " %" G_GSIZE_FORMAT " bytes", len);
        }
    } else {
        switch (type) {
        case SPICE_MSGC_MAIN_AGENT_START:
        case SPICE_MSGC_MAIN_AGENT_TOKEN:
            if (len >= 4)
                g_string_append_printf(s, " %u", vmc_get_u32le(body));
            break;
        default:
            g_string_append_printf(s, " %" G_GSIZE_FORMAT " bytes", len);
        }
    }
    return g_string_free(s, FALSE);
}

char *
vmc_describe_trace_event(VmcDescribeCtx *ctx, const VmcTraceEvent *ev)
{
    GString *s = g_string_new(NULL);
    gsize len;
    const guint8 *p = vmc_trace_event_payload(ev, &len);

    g_string_append_printf(s, "%4" G_GUINT64_FORMAT ".%06" G_GUINT64_FORMAT " ",
                           ev->time_us / 1000000, ev->time_us % 1000000);
    switch (ev->event) {
    case VMC_TRACE_EV_MSG: {
        gboolean from_agent = ev->dir == VMC_TRACE_DIR_AGENT_CLIENT ||
                              ev->dir == VMC_TRACE_DIR_AGENT_SERVER;
        vmc_describe_ctx_observe(ctx, from_agent, ev->type, p, len);
        g_autofree char *d = vmc_describe_agent_message(ctx, ev->type, ev->opaque, ev->size, p,
                                                        len);
        g_string_append_printf(s, "%-12s ", vmc_trace_dir_to_string(ev->dir));
        if (ev->client)
            g_string_append_printf(s, "c%u ", ev->client);
        if (ev->port != 1)
            g_string_append_printf(s, "port%u ", ev->port);
        if (ev->present & VMC_TRACE_HAS_PROTOCOL)
            g_string_append_printf(s, "protocol=%u ", ev->protocol);
        g_string_append(s, d);
        if (ev->truncated)
            g_string_append(s, " [truncated]");
        if (ev->partial)
            g_string_append(s, " [partial]");
        break;
    }
    case VMC_TRACE_EV_RAW: {
        g_autofree char *hex = vmc_describe_hex(p, len, 32);
        g_string_append_printf(s, "%-12s raw %" G_GSIZE_FORMAT " bytes [%s]",
                               vmc_trace_dir_to_string(ev->dir), len, hex);
        break;
    }
    case VMC_TRACE_EV_TOKENS:
        g_string_append_printf(s, "%-12s c%u %s %u", vmc_trace_dir_to_string(ev->dir), ev->client,
                               ev->what ? ev->what : "?", ev->tokens);
        break;
    case VMC_TRACE_EV_TRACE:
        g_string_append_printf(s, "trace version %u", ev->version);
        if (ev->source)
            g_string_append_printf(s, " from %s", ev->source);
        break;
    case VMC_TRACE_EV_CLIENT_CONNECT:
    case VMC_TRACE_EV_CLIENT_DISCONNECT:
        g_string_append_printf(s, "%s c%u", vmc_trace_event_type_to_string(ev->event),
                               ev->client);
        break;
    default:
        g_string_append(s, vmc_trace_event_type_to_string(ev->event));
        break;
    }
    if (ev->detail)
        g_string_append_printf(s, " (%s)", ev->detail);
    return g_string_free(s, FALSE);
}
