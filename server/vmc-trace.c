/* vmc-trace.c — JSON Lines trace codec, reader and writer (see vmc-trace.h and
 * docs/trace-format.md). */
#include "server/vmc-trace.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <glib/gstdio.h>

#include "protocol/vmc-agent.h"

G_DEFINE_QUARK(vmc-trace-error-quark, vmc_trace_error)

/* ---- names ---- */

static const char *const dir_names[] = {
    [VMC_TRACE_DIR_CLIENT_AGENT] = "client-agent",
    [VMC_TRACE_DIR_AGENT_CLIENT] = "agent-client",
    [VMC_TRACE_DIR_SERVER_AGENT] = "server-agent",
    [VMC_TRACE_DIR_AGENT_SERVER] = "agent-server",
};

static const char *const event_names[] = {
    [VMC_TRACE_EV_TRACE] = "trace",
    [VMC_TRACE_EV_MSG] = "msg",
    [VMC_TRACE_EV_RAW] = "raw",
    [VMC_TRACE_EV_AGENT_CONNECT] = "agent-connect",
    [VMC_TRACE_EV_AGENT_DISCONNECT] = "agent-disconnect",
    [VMC_TRACE_EV_CLIENT_CONNECT] = "client-connect",
    [VMC_TRACE_EV_CLIENT_DISCONNECT] = "client-disconnect",
    [VMC_TRACE_EV_TOKENS] = "tokens",
};

const char *
vmc_trace_dir_to_string(VmcTraceDir dir)
{
    if ((guint)dir < G_N_ELEMENTS(dir_names))
        return dir_names[dir];
    return "?";
}

gboolean
vmc_trace_dir_from_string(const char *s, VmcTraceDir *out)
{
    for (guint i = 0; i < G_N_ELEMENTS(dir_names); i++) {
        if (g_strcmp0(s, dir_names[i]) == 0) {
            *out = (VmcTraceDir)i;
            return TRUE;
        }
    }
    return FALSE;
}

const char *
vmc_trace_event_type_to_string(VmcTraceEventType event)
{
    if ((guint)event < G_N_ELEMENTS(event_names))
        return event_names[event];
    return "?";
}

gboolean
vmc_trace_event_type_from_string(const char *s, VmcTraceEventType *out)
{
    for (guint i = 0; i < G_N_ELEMENTS(event_names); i++) {
        if (g_strcmp0(s, event_names[i]) == 0) {
            *out = (VmcTraceEventType)i;
            return TRUE;
        }
    }
    return FALSE;
}

/* ---- events ---- */

void
vmc_trace_event_init(VmcTraceEvent *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->protocol = 1;
}

void
vmc_trace_event_clear(VmcTraceEvent *ev)
{
    g_free(ev->name);
    g_free(ev->what);
    g_free(ev->source);
    g_free(ev->detail);
    if (ev->data)
        g_bytes_unref(ev->data);
    vmc_trace_event_init(ev);
}

void
vmc_trace_event_copy(VmcTraceEvent *dst, const VmcTraceEvent *src)
{
    *dst = *src;
    dst->name = g_strdup(src->name);
    dst->what = g_strdup(src->what);
    dst->source = g_strdup(src->source);
    dst->detail = g_strdup(src->detail);
    dst->data = src->data ? g_bytes_ref(src->data) : NULL;
}

void
vmc_trace_event_set_msg(VmcTraceEvent *ev, guint64 time_us, VmcTraceDir dir, guint32 client,
                        guint32 port, guint32 protocol, guint32 type, guint64 opaque, guint32 size,
                        const guint8 *payload, gsize len)
{
    const char *name = vmc_agent_msg_type_name(type);

    vmc_trace_event_init(ev);
    ev->time_us = time_us;
    ev->event = VMC_TRACE_EV_MSG;
    ev->present = VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_CLIENT | VMC_TRACE_HAS_PORT |
                  VMC_TRACE_HAS_TYPE | VMC_TRACE_HAS_OPAQUE | VMC_TRACE_HAS_SIZE |
                  VMC_TRACE_HAS_DATA;
    ev->dir = dir;
    ev->client = client;
    ev->port = port;
    ev->type = type;
    if (name) {
        ev->name = g_strdup(name);
        ev->present |= VMC_TRACE_HAS_NAME;
    }
    if (protocol != 1) {
        ev->protocol = protocol;
        ev->present |= VMC_TRACE_HAS_PROTOCOL;
    }
    ev->opaque = opaque;
    ev->size = size;
    ev->data = g_bytes_new(payload, len);
}

void
vmc_trace_event_set_simple(VmcTraceEvent *ev, guint64 time_us, VmcTraceEventType event,
                           gboolean with_client, guint32 client, const char *detail)
{
    vmc_trace_event_init(ev);
    ev->time_us = time_us;
    ev->event = event;
    if (with_client) {
        ev->client = client;
        ev->present |= VMC_TRACE_HAS_CLIENT;
    }
    if (detail) {
        ev->detail = g_strdup(detail);
        ev->present |= VMC_TRACE_HAS_DETAIL;
    }
}

const guint8 *
vmc_trace_event_payload(const VmcTraceEvent *ev, gsize *len)
{
    static const guint8 empty[1];

    if (!ev->data) {
        *len = 0;
        return empty;
    }
    const guint8 *p = g_bytes_get_data(ev->data, len);
    return p ? p : empty;
}

/* ---- encoding ---- */

static void
append_string(GString *out, const char *s)
{
    g_autofree char *valid = NULL;

    if (!g_utf8_validate(s, -1, NULL))
        s = valid = g_utf8_make_valid(s, -1);
    g_string_append_c(out, '"');
    for (const char *p = s; *p; p++) {
        guchar c = (guchar)*p;
        switch (c) {
        case '"':
            g_string_append(out, "\\\"");
            break;
        case '\\':
            g_string_append(out, "\\\\");
            break;
        case '\n':
            g_string_append(out, "\\n");
            break;
        case '\r':
            g_string_append(out, "\\r");
            break;
        case '\t':
            g_string_append(out, "\\t");
            break;
        case '\b':
            g_string_append(out, "\\b");
            break;
        case '\f':
            g_string_append(out, "\\f");
            break;
        default:
            if (c < 0x20)
                g_string_append_printf(out, "\\u%04x", c);
            else
                g_string_append_c(out, (char)c);
        }
    }
    g_string_append_c(out, '"');
}

static void
append_key(GString *out, const char *key)
{
    if (out->len > 0 && out->str[out->len - 1] != '{')
        g_string_append_c(out, ',');
    g_string_append_c(out, '"');
    g_string_append(out, key);
    g_string_append(out, "\":");
}

static void
append_u64(GString *out, const char *key, guint64 v)
{
    append_key(out, key);
    g_string_append_printf(out, "%" G_GUINT64_FORMAT, v);
}

static void
append_str(GString *out, const char *key, const char *v)
{
    append_key(out, key);
    append_string(out, v ? v : "");
}

static void
append_bool(GString *out, const char *key, gboolean v)
{
    append_key(out, key);
    g_string_append(out, v ? "true" : "false");
}

void
vmc_trace_event_append(const VmcTraceEvent *ev, GString *out)
{
    guint32 has = ev->present;

    /* append_key() adds the ',' unless the last byte is this '{' (a value never ends in '{'). */
    g_string_append_c(out, '{');
    append_u64(out, "time_us", ev->time_us);
    append_str(out, "event", vmc_trace_event_type_to_string(ev->event));
    if (has & VMC_TRACE_HAS_DIR)
        append_str(out, "dir", vmc_trace_dir_to_string(ev->dir));
    if (has & VMC_TRACE_HAS_CLIENT)
        append_u64(out, "client", ev->client);
    if (has & VMC_TRACE_HAS_PORT)
        append_u64(out, "port", ev->port);
    if (has & VMC_TRACE_HAS_TYPE)
        append_u64(out, "type", ev->type);
    if (has & VMC_TRACE_HAS_NAME)
        append_str(out, "name", ev->name);
    if (has & VMC_TRACE_HAS_PROTOCOL)
        append_u64(out, "protocol", ev->protocol);
    if (has & VMC_TRACE_HAS_OPAQUE)
        append_u64(out, "opaque", ev->opaque);
    if (has & VMC_TRACE_HAS_SIZE)
        append_u64(out, "size", ev->size);
    if (has & VMC_TRACE_HAS_TRUNCATED)
        append_bool(out, "truncated", ev->truncated);
    if (has & VMC_TRACE_HAS_PARTIAL)
        append_bool(out, "partial", ev->partial);
    if (has & VMC_TRACE_HAS_WHAT)
        append_str(out, "what", ev->what);
    if (has & VMC_TRACE_HAS_TOKENS)
        append_u64(out, "tokens", ev->tokens);
    if (has & VMC_TRACE_HAS_VERSION)
        append_u64(out, "version", ev->version);
    if (has & VMC_TRACE_HAS_SOURCE)
        append_str(out, "source", ev->source);
    if (has & VMC_TRACE_HAS_DETAIL)
        append_str(out, "detail", ev->detail);
    if (has & VMC_TRACE_HAS_DATA) {
        gsize len;
        const guint8 *p = vmc_trace_event_payload(ev, &len);
        append_key(out, "data");
        g_string_append_c(out, '"');
        if (len > 0) {
            g_autofree char *b64 = g_base64_encode(p, len);
            g_string_append(out, b64);
        }
        g_string_append_c(out, '"');
    }
    g_string_append_c(out, '}');
}

char *
vmc_trace_event_to_line(const VmcTraceEvent *ev)
{
    GString *s = g_string_sized_new(128);
    vmc_trace_event_append(ev, s);
    return g_string_free(s, FALSE);
}

/* ---- parsing ---- */

typedef struct {
    const char *buf;
    gsize len;
    gsize off;
    GError **error;
} Parser;

typedef enum {
    KEY_TIME_US,
    KEY_EVENT,
    KEY_DIR,
    KEY_CLIENT,
    KEY_PORT,
    KEY_TYPE,
    KEY_NAME,
    KEY_PROTOCOL,
    KEY_OPAQUE,
    KEY_SIZE,
    KEY_TRUNCATED,
    KEY_PARTIAL,
    KEY_WHAT,
    KEY_TOKENS,
    KEY_VERSION,
    KEY_SOURCE,
    KEY_DETAIL,
    KEY_DATA,
    KEY_UNKNOWN,
} Key;

typedef enum { KIND_U32, KIND_U64, KIND_STR, KIND_BOOL, KIND_B64 } Kind;

static const struct {
    const char *name;
    Kind kind;
    guint32 has; /* VMC_TRACE_HAS_* bit, 0 for the always-present keys */
} keys[] = {
    [KEY_TIME_US] = {"time_us", KIND_U64, 0},
    [KEY_EVENT] = {"event", KIND_STR, 0},
    [KEY_DIR] = {"dir", KIND_STR, VMC_TRACE_HAS_DIR},
    [KEY_CLIENT] = {"client", KIND_U32, VMC_TRACE_HAS_CLIENT},
    [KEY_PORT] = {"port", KIND_U32, VMC_TRACE_HAS_PORT},
    [KEY_TYPE] = {"type", KIND_U32, VMC_TRACE_HAS_TYPE},
    [KEY_NAME] = {"name", KIND_STR, VMC_TRACE_HAS_NAME},
    [KEY_PROTOCOL] = {"protocol", KIND_U32, VMC_TRACE_HAS_PROTOCOL},
    [KEY_OPAQUE] = {"opaque", KIND_U64, VMC_TRACE_HAS_OPAQUE},
    [KEY_SIZE] = {"size", KIND_U32, VMC_TRACE_HAS_SIZE},
    [KEY_TRUNCATED] = {"truncated", KIND_BOOL, VMC_TRACE_HAS_TRUNCATED},
    [KEY_PARTIAL] = {"partial", KIND_BOOL, VMC_TRACE_HAS_PARTIAL},
    [KEY_WHAT] = {"what", KIND_STR, VMC_TRACE_HAS_WHAT},
    [KEY_TOKENS] = {"tokens", KIND_U32, VMC_TRACE_HAS_TOKENS},
    [KEY_VERSION] = {"version", KIND_U32, VMC_TRACE_HAS_VERSION},
    [KEY_SOURCE] = {"source", KIND_STR, VMC_TRACE_HAS_SOURCE},
    [KEY_DETAIL] = {"detail", KIND_STR, VMC_TRACE_HAS_DETAIL},
    [KEY_DATA] = {"data", KIND_B64, VMC_TRACE_HAS_DATA},
};

G_GNUC_PRINTF(3, 4)
static gboolean
fail_at(Parser *p, gsize off, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;
    gint code = off >= p->len ? VMC_TRACE_ERROR_TRUNCATED : VMC_TRACE_ERROR_SYNTAX;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* A syntax error at the very end of the text means the line was cut short. */
    g_set_error(p->error, VMC_TRACE_ERROR, code, "column %" G_GSIZE_FORMAT ": %s", off + 1,
                msg);
    return FALSE;
}

G_GNUC_PRINTF(3, 4)
static gboolean
invalid_at(Parser *p, gsize off, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(p->error, VMC_TRACE_ERROR, VMC_TRACE_ERROR_INVALID,
                "column %" G_GSIZE_FORMAT ": %s", off + 1, msg);
    return FALSE;
}

static void
skip_ws(Parser *p)
{
    while (p->off < p->len) {
        char c = p->buf[p->off];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
            break;
        p->off++;
    }
}

static gboolean
at_end(const Parser *p)
{
    return p->off >= p->len;
}

static gboolean
expect_char(Parser *p, char c, const char *what)
{
    skip_ws(p);
    if (at_end(p))
        return fail_at(p, p->off, "unexpected end of line, expected %s", what);
    if (p->buf[p->off] != c)
        return fail_at(p, p->off, "expected %s", what);
    p->off++;
    return TRUE;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static gboolean
parse_hex4(Parser *p, guint32 *out)
{
    guint32 v = 0;

    if (p->len - p->off < 4)
        return fail_at(p, p->len, "unexpected end of line in \\u escape");
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->buf[p->off + (gsize)i]);
        if (h < 0)
            return fail_at(p, p->off + (gsize)i, "bad hex digit in \\u escape");
        v = (v << 4) | (guint32)h;
    }
    p->off += 4;
    *out = v;
    return TRUE;
}

/* Parses a JSON string at p->off (which must be '"'). `out` may be NULL to skip. */
static gboolean
parse_string(Parser *p, GString *out)
{
    gsize start = p->off;

    if (at_end(p) || p->buf[p->off] != '"')
        return fail_at(p, p->off, "expected a string");
    p->off++;
    for (;;) {
        if (at_end(p))
            return fail_at(p, p->off, "unterminated string (started at column %" G_GSIZE_FORMAT
                           ")", start + 1);
        guchar c = (guchar)p->buf[p->off];
        if (c == '"') {
            p->off++;
            break;
        }
        if (c < 0x20)
            return fail_at(p, p->off, "control character in string");
        if (c != '\\') {
            if (out)
                g_string_append_c(out, (char)c);
            p->off++;
            continue;
        }
        gsize esc = p->off;
        p->off++;
        if (at_end(p))
            return fail_at(p, p->off, "unterminated escape in string");
        char e = p->buf[p->off++];
        char simple = 0;
        switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': {
            guint32 cp;
            if (!parse_hex4(p, &cp))
                return FALSE;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                guint32 lo;
                if (p->len - p->off < 2 || p->buf[p->off] != '\\' || p->buf[p->off + 1] != 'u')
                    return fail_at(p, esc, "unpaired surrogate in \\u escape");
                p->off += 2;
                if (!parse_hex4(p, &lo))
                    return FALSE;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail_at(p, esc, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail_at(p, esc, "unpaired surrogate in \\u escape");
            }
            if (cp == 0)
                return invalid_at(p, esc, "NUL character in string");
            if (out)
                g_string_append_unichar(out, (gunichar)cp);
            continue;
        }
        default:
            return fail_at(p, esc, "bad escape '\\%c' in string", e);
        }
        if (out)
            g_string_append_c(out, simple);
    }
    if (out && !g_utf8_validate(out->str, (gssize)out->len, NULL))
        return invalid_at(p, start, "string is not valid UTF-8");
    return TRUE;
}

/* Parses a non-negative integer that fits in 64 bits. */
static gboolean
parse_u64(Parser *p, guint64 *out)
{
    gsize start = p->off;
    guint64 v = 0;

    if (at_end(p))
        return fail_at(p, p->off, "unexpected end of line, expected a number");
    if (p->buf[p->off] == '-')
        return invalid_at(p, p->off, "negative number where a non-negative integer is expected");
    if (!g_ascii_isdigit(p->buf[p->off]))
        return fail_at(p, p->off, "expected a number");
    if (p->buf[p->off] == '0' && p->off + 1 < p->len && g_ascii_isdigit(p->buf[p->off + 1]))
        return fail_at(p, p->off, "number with a leading zero");
    while (p->off < p->len && g_ascii_isdigit(p->buf[p->off])) {
        guint d = (guint)(p->buf[p->off] - '0');
        if (v > (G_MAXUINT64 - d) / 10)
            return invalid_at(p, start, "number does not fit in 64 bits");
        v = v * 10 + d;
        p->off++;
    }
    if (p->off < p->len &&
        (p->buf[p->off] == '.' || p->buf[p->off] == 'e' || p->buf[p->off] == 'E'))
        return invalid_at(p, start, "number is not an integer");
    *out = v;
    return TRUE;
}

static gboolean
parse_literal(Parser *p, const char *lit)
{
    gsize n = strlen(lit);

    if (p->len - p->off < n || memcmp(p->buf + p->off, lit, n) != 0)
        return fail_at(p, p->off, "expected a value");
    p->off += n;
    return TRUE;
}

/* Skips any JSON value (for unknown keys). */
static gboolean
skip_value(Parser *p, guint depth)
{
    skip_ws(p);
    if (at_end(p))
        return fail_at(p, p->off, "unexpected end of line, expected a value");
    if (depth > 32)
        return invalid_at(p, p->off, "values nested too deeply");
    char c = p->buf[p->off];
    if (c == '"')
        return parse_string(p, NULL);
    if (c == 't')
        return parse_literal(p, "true");
    if (c == 'f')
        return parse_literal(p, "false");
    if (c == 'n')
        return parse_literal(p, "null");
    if (c == '-' || g_ascii_isdigit(c)) {
        if (c == '-')
            p->off++;
        gsize digits = p->off;
        while (p->off < p->len && (g_ascii_isdigit(p->buf[p->off]) || p->buf[p->off] == '.' ||
                                   p->buf[p->off] == 'e' || p->buf[p->off] == 'E' ||
                                   p->buf[p->off] == '+' || p->buf[p->off] == '-'))
            p->off++;
        if (p->off == digits)
            return fail_at(p, p->off, "expected a number");
        return TRUE;
    }
    if (c == '[' || c == '{') {
        char close = c == '[' ? ']' : '}';
        p->off++;
        skip_ws(p);
        if (!at_end(p) && p->buf[p->off] == close) {
            p->off++;
            return TRUE;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(p);
                if (!parse_string(p, NULL))
                    return FALSE;
                if (!expect_char(p, ':', "':'"))
                    return FALSE;
            }
            if (!skip_value(p, depth + 1))
                return FALSE;
            skip_ws(p);
            if (at_end(p))
                return fail_at(p, p->off, "unexpected end of line inside a nested value");
            if (p->buf[p->off] == ',') {
                p->off++;
                continue;
            }
            if (p->buf[p->off] == close) {
                p->off++;
                return TRUE;
            }
            return fail_at(p, p->off, "expected ',' or '%c'", close);
        }
    }
    return fail_at(p, p->off, "expected a value");
}

static int
b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict, canonical base64: padded, standard alphabet, zero unused bits. */
static gboolean
decode_base64(Parser *p, gsize at, const GString *s, GBytes **out)
{
    gsize n = s->len;

    if (n % 4 != 0)
        return invalid_at(p, at, "base64 data length %" G_GSIZE_FORMAT " is not a multiple of 4",
                          n);
    GByteArray *bytes = g_byte_array_sized_new((guint)(n / 4 * 3));
    for (gsize i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s->str[i + (gsize)j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            v[j] = b64val(c);
            if (v[j] < 0 || pad > 0) {
                g_byte_array_unref(bytes);
                return invalid_at(p, at, "bad base64 character at data offset %" G_GSIZE_FORMAT,
                                  i + (gsize)j);
            }
        }
        guint32 w = ((guint32)v[0] << 18) | ((guint32)v[1] << 12) | ((guint32)v[2] << 6) |
                    (guint32)v[3];
        guint8 b[3] = {(guint8)(w >> 16), (guint8)(w >> 8), (guint8)w};
        if ((pad == 1 && (v[2] & 0x3)) || (pad == 2 && (v[1] & 0xf))) {
            g_byte_array_unref(bytes);
            return invalid_at(p, at, "non-canonical base64 padding bits");
        }
        g_byte_array_append(bytes, b, (guint)(3 - pad));
    }
    *out = g_byte_array_free_to_bytes(bytes);
    return TRUE;
}

static Key
lookup_key(const char *name)
{
    for (guint i = 0; i < KEY_UNKNOWN; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return (Key)i;
    }
    return KEY_UNKNOWN;
}

static gboolean
parse_value_for(Parser *p, Key key, VmcTraceEvent *ev, gboolean *event_seen)
{
    gsize at;

    skip_ws(p);
    at = p->off;
    if (at_end(p))
        return fail_at(p, p->off, "unexpected end of line, expected a value for \"%s\"",
                       keys[key].name);
    switch (keys[key].kind) {
    case KIND_U32:
    case KIND_U64: {
        guint64 v;
        if (p->buf[p->off] != '-' && !g_ascii_isdigit(p->buf[p->off])) {
            if (!skip_value(p, 0))
                return FALSE;
            return invalid_at(p, at, "\"%s\" must be a non-negative integer", keys[key].name);
        }
        if (!parse_u64(p, &v))
            return FALSE;
        if (keys[key].kind == KIND_U32 && v > G_MAXUINT32)
            return invalid_at(p, at, "\"%s\" is out of range (%" G_GUINT64_FORMAT
                              " > 4294967295)", keys[key].name, v);
        switch (key) {
        case KEY_TIME_US: ev->time_us = v; break;
        case KEY_CLIENT: ev->client = (guint32)v; break;
        case KEY_PORT: ev->port = (guint32)v; break;
        case KEY_TYPE: ev->type = (guint32)v; break;
        case KEY_PROTOCOL: ev->protocol = (guint32)v; break;
        case KEY_OPAQUE: ev->opaque = v; break;
        case KEY_SIZE: ev->size = (guint32)v; break;
        case KEY_TOKENS: ev->tokens = (guint32)v; break;
        case KEY_VERSION: ev->version = (guint32)v; break;
        default: g_assert_not_reached();
        }
        return TRUE;
    }
    case KIND_BOOL:
        if (p->buf[p->off] == 't') {
            if (!parse_literal(p, "true"))
                return FALSE;
            *(key == KEY_TRUNCATED ? &ev->truncated : &ev->partial) = TRUE;
        } else if (p->buf[p->off] == 'f') {
            if (!parse_literal(p, "false"))
                return FALSE;
            *(key == KEY_TRUNCATED ? &ev->truncated : &ev->partial) = FALSE;
        } else {
            if (!skip_value(p, 0))
                return FALSE;
            return invalid_at(p, at, "\"%s\" must be true or false", keys[key].name);
        }
        return TRUE;
    case KIND_STR:
    case KIND_B64: {
        if (p->buf[p->off] != '"') {
            if (!skip_value(p, 0))
                return FALSE;
            return invalid_at(p, at, "\"%s\" must be a string", keys[key].name);
        }
        g_autoptr(GString) s = g_string_new(NULL);
        if (!parse_string(p, s))
            return FALSE;
        switch (key) {
        case KEY_EVENT:
            if (!vmc_trace_event_type_from_string(s->str, &ev->event))
                return invalid_at(p, at, "unknown event \"%s\"", s->str);
            *event_seen = TRUE;
            break;
        case KEY_DIR:
            if (!vmc_trace_dir_from_string(s->str, &ev->dir))
                return invalid_at(p, at, "unknown direction \"%s\" (expected client-agent, "
                                  "agent-client, server-agent or agent-server)", s->str);
            break;
        case KEY_NAME: ev->name = g_strdup(s->str); break;
        case KEY_WHAT: ev->what = g_strdup(s->str); break;
        case KEY_SOURCE: ev->source = g_strdup(s->str); break;
        case KEY_DETAIL: ev->detail = g_strdup(s->str); break;
        case KEY_DATA: return decode_base64(p, at, s, &ev->data);
        default: g_assert_not_reached();
        }
        return TRUE;
    }
    }
    g_assert_not_reached();
}

static gboolean
check_required(Parser *p, const VmcTraceEvent *ev, guint32 need)
{
    for (guint i = 0; i < KEY_UNKNOWN; i++) {
        if (keys[i].has && (need & keys[i].has) && !(ev->present & keys[i].has))
            return invalid_at(p, 0, "%s event without \"%s\"",
                              vmc_trace_event_type_to_string(ev->event), keys[i].name);
    }
    return TRUE;
}

static gboolean
check_event(Parser *p, VmcTraceEvent *ev)
{
    switch (ev->event) {
    case VMC_TRACE_EV_TRACE:
        if (!check_required(p, ev, VMC_TRACE_HAS_VERSION))
            return FALSE;
        if (ev->version != VMC_TRACE_VERSION) {
            g_set_error(p->error, VMC_TRACE_ERROR, VMC_TRACE_ERROR_VERSION,
                        "column 1: trace format version %u is not supported (this reader "
                        "knows version %u)", ev->version, VMC_TRACE_VERSION);
            return FALSE;
        }
        return TRUE;
    case VMC_TRACE_EV_MSG: {
        if (!check_required(p, ev, VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_CLIENT | VMC_TRACE_HAS_PORT |
                                       VMC_TRACE_HAS_TYPE | VMC_TRACE_HAS_OPAQUE |
                                       VMC_TRACE_HAS_SIZE | VMC_TRACE_HAS_DATA))
            return FALSE;
        gsize len;
        vmc_trace_event_payload(ev, &len);
        gboolean cut = (ev->present & (VMC_TRACE_HAS_TRUNCATED | VMC_TRACE_HAS_PARTIAL)) &&
                       (ev->truncated || ev->partial);
        if (!cut && len != ev->size)
            return invalid_at(p, 0, "data holds %" G_GSIZE_FORMAT " bytes but size is %u "
                              "(and the message is not marked truncated or partial)", len,
                              ev->size);
        if (cut && len >= ev->size)
            return invalid_at(p, 0, "message marked truncated/partial but data holds all %u "
                              "bytes", ev->size);
        if (ev->truncated && len > VMC_TRACE_MAX_PAYLOAD)
            return invalid_at(p, 0, "truncated data is longer than the %u-byte bound",
                              VMC_TRACE_MAX_PAYLOAD);
        return TRUE;
    }
    case VMC_TRACE_EV_RAW:
        return check_required(p, ev, VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_DATA);
    case VMC_TRACE_EV_AGENT_CONNECT:
    case VMC_TRACE_EV_AGENT_DISCONNECT:
        return TRUE;
    case VMC_TRACE_EV_CLIENT_CONNECT:
    case VMC_TRACE_EV_CLIENT_DISCONNECT:
        return check_required(p, ev, VMC_TRACE_HAS_CLIENT);
    case VMC_TRACE_EV_TOKENS:
        return check_required(p, ev, VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_CLIENT |
                                         VMC_TRACE_HAS_WHAT | VMC_TRACE_HAS_TOKENS);
    }
    return invalid_at(p, 0, "unknown event");
}

gboolean
vmc_trace_event_parse(const char *line, gsize len, VmcTraceEvent *out, GError **error)
{
    Parser p = {line, len, 0, error};
    VmcTraceEvent ev;
    gboolean seen[KEY_UNKNOWN] = {FALSE};
    gboolean event_seen = FALSE;

    g_return_val_if_fail(line != NULL || len == 0, FALSE);
    vmc_trace_event_init(&ev);
    vmc_trace_event_init(out);

    if (!expect_char(&p, '{', "'{' at the start of the line"))
        goto fail;
    skip_ws(&p);
    if (!at_end(&p) && p.buf[p.off] == '}') {
        p.off++;
    } else {
        for (;;) {
            skip_ws(&p);
            gsize key_at = p.off;
            g_autoptr(GString) name = g_string_new(NULL);
            if (at_end(&p)) {
                fail_at(&p, p.off, "unexpected end of line, expected a key");
                goto fail;
            }
            if (p.buf[p.off] != '"') {
                fail_at(&p, p.off, "expected a key (a string)");
                goto fail;
            }
            if (!parse_string(&p, name))
                goto fail;
            if (!expect_char(&p, ':', "':' after a key"))
                goto fail;
            Key key = lookup_key(name->str);
            if (key == KEY_UNKNOWN) {
                if (!skip_value(&p, 0))
                    goto fail;
            } else {
                if (seen[key]) {
                    invalid_at(&p, key_at, "duplicate key \"%s\"", name->str);
                    goto fail;
                }
                seen[key] = TRUE;
                if (!parse_value_for(&p, key, &ev, &event_seen))
                    goto fail;
                ev.present |= keys[key].has;
            }
            skip_ws(&p);
            if (at_end(&p)) {
                fail_at(&p, p.off, "unexpected end of line, expected ',' or '}'");
                goto fail;
            }
            if (p.buf[p.off] == ',') {
                p.off++;
                continue;
            }
            if (p.buf[p.off] == '}') {
                p.off++;
                break;
            }
            fail_at(&p, p.off, "expected ',' or '}'");
            goto fail;
        }
    }
    skip_ws(&p);
    if (!at_end(&p)) {
        fail_at(&p, p.off, "unexpected text after the end of the object");
        goto fail;
    }
    if (!seen[KEY_TIME_US]) {
        invalid_at(&p, 0, "missing \"time_us\"");
        goto fail;
    }
    if (!event_seen) {
        invalid_at(&p, 0, "missing \"event\"");
        goto fail;
    }
    if (!check_event(&p, &ev))
        goto fail;
    *out = ev;
    return TRUE;

fail:
    vmc_trace_event_clear(&ev);
    return FALSE;
}

/* ---- reader ---- */

struct _VmcTraceReader {
    GInputStream *stream;
    char *name;
    GByteArray *buf;    /* unconsumed bytes */
    gsize scan;         /* bytes of buf already searched for '\n' */
    gboolean eof;
    guint64 line;
    guint64 events;
    GByteArray *current; /* text of the line last returned */
};

VmcTraceReader *
vmc_trace_reader_new_from_stream(GInputStream *stream, const char *name)
{
    VmcTraceReader *r = g_new0(VmcTraceReader, 1);
    r->stream = g_object_ref(stream);
    r->name = g_strdup(name);
    r->buf = g_byte_array_new();
    r->current = g_byte_array_new();
    return r;
}

VmcTraceReader *
vmc_trace_reader_new(const char *path, GError **error)
{
    g_autoptr(GInputStream) stream = NULL;

    g_return_val_if_fail(path != NULL, NULL);
    if (strcmp(path, "-") == 0) {
        stream = g_unix_input_stream_new(0, FALSE);
    } else {
        g_autoptr(GFile) file = g_file_new_for_commandline_arg(path);
        stream = G_INPUT_STREAM(g_file_read(file, NULL, error));
        if (!stream) {
            g_prefix_error(error, "%s: ", path);
            return NULL;
        }
    }
    return vmc_trace_reader_new_from_stream(stream, strcmp(path, "-") == 0 ? "<stdin>" : path);
}

void
vmc_trace_reader_free(VmcTraceReader *r)
{
    if (!r)
        return;
    g_object_unref(r->stream);
    g_free(r->name);
    g_byte_array_unref(r->buf);
    g_byte_array_unref(r->current);
    g_free(r);
}

guint64
vmc_trace_reader_line(const VmcTraceReader *r)
{
    return r->line;
}

const char *
vmc_trace_reader_line_text(const VmcTraceReader *r, gsize *len)
{
    if (len)
        *len = r->current->len;
    return (const char *)r->current->data;
}

/* Fills r->current with the next line (without newline). FALSE at EOF or on error. */
static gboolean
read_line(VmcTraceReader *r, gboolean *had_newline, GError **error)
{
    for (;;) {
        guint8 *nl = r->scan < r->buf->len
                         ? memchr(r->buf->data + r->scan, '\n', r->buf->len - r->scan)
                         : NULL;
        if (nl) {
            gsize n = (gsize)(nl - r->buf->data);
            g_byte_array_set_size(r->current, 0);
            g_byte_array_append(r->current, r->buf->data, (guint)n);
            g_byte_array_remove_range(r->buf, 0, (guint)(n + 1));
            r->scan = 0;
            r->line++;
            *had_newline = TRUE;
            return TRUE;
        }
        r->scan = r->buf->len;
        if (r->buf->len > VMC_TRACE_MAX_LINE) {
            g_set_error(error, VMC_TRACE_ERROR, VMC_TRACE_ERROR_INVALID,
                        "%s:%" G_GUINT64_FORMAT ": line longer than %u bytes", r->name,
                        r->line + 1, VMC_TRACE_MAX_LINE);
            return FALSE;
        }
        if (r->eof) {
            if (r->buf->len == 0)
                return FALSE;
            g_byte_array_set_size(r->current, 0);
            g_byte_array_append(r->current, r->buf->data, r->buf->len);
            g_byte_array_set_size(r->buf, 0);
            r->scan = 0;
            r->line++;
            *had_newline = FALSE;
            return TRUE;
        }
        guint8 tmp[65536];
        gssize n = g_input_stream_read(r->stream, tmp, sizeof(tmp), NULL, error);
        if (n < 0) {
            g_prefix_error(error, "%s:%" G_GUINT64_FORMAT ": ", r->name, r->line + 1);
            return FALSE;
        }
        if (n == 0)
            r->eof = TRUE;
        else
            g_byte_array_append(r->buf, tmp, (guint)n);
    }
}

static gboolean
blank(const guint8 *p, gsize n)
{
    for (gsize i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return FALSE;
    }
    return TRUE;
}

gboolean
vmc_trace_reader_next(VmcTraceReader *r, VmcTraceEvent *out, GError **error)
{
    for (;;) {
        gboolean had_newline = FALSE;
        g_autoptr(GError) local = NULL;

        if (!read_line(r, &had_newline, error))
            return FALSE;
        gsize n = r->current->len;
        if (n > 0 && r->current->data[n - 1] == '\r')
            n--;
        if (blank(r->current->data, n))
            continue;
        if (!vmc_trace_event_parse((const char *)r->current->data, n, out, &local)) {
            if (!had_newline) {
                g_set_error(error, VMC_TRACE_ERROR, VMC_TRACE_ERROR_TRUNCATED,
                            "%s:%" G_GUINT64_FORMAT ": truncated trace: the last line is "
                            "incomplete (%s)", r->name, r->line, local->message);
            } else {
                g_set_error(error, VMC_TRACE_ERROR,
                            local->domain == VMC_TRACE_ERROR ? local->code
                                                             : VMC_TRACE_ERROR_INVALID,
                            "%s:%" G_GUINT64_FORMAT ": %s", r->name, r->line, local->message);
            }
            return FALSE;
        }
        if (out->event == VMC_TRACE_EV_TRACE && r->events > 0) {
            vmc_trace_event_clear(out);
            g_set_error(error, VMC_TRACE_ERROR, VMC_TRACE_ERROR_INVALID,
                        "%s:%" G_GUINT64_FORMAT ": column 1: a \"trace\" header is only "
                        "allowed on the first line", r->name, r->line);
            return FALSE;
        }
        r->events++;
        return TRUE;
    }
}

static void
event_free(gpointer p)
{
    VmcTraceEvent *ev = p;
    vmc_trace_event_clear(ev);
    g_free(ev);
}

GPtrArray *
vmc_trace_load(const char *path, GError **error)
{
    g_autoptr(VmcTraceReader) r = vmc_trace_reader_new(path, error);
    if (!r)
        return NULL;
    g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func(event_free);
    for (;;) {
        VmcTraceEvent *ev = g_new(VmcTraceEvent, 1);
        GError *local = NULL;
        if (!vmc_trace_reader_next(r, ev, &local)) {
            g_free(ev);
            if (local) {
                g_propagate_error(error, local);
                return NULL;
            }
            break;
        }
        g_ptr_array_add(events, ev);
    }
    return g_steal_pointer(&events);
}

/* ---- writer ---- */

struct _VmcTraceWriter {
    FILE *fp;
    gboolean own_fp;
    char *name;
    gint64 start_us;
    GError *failed;
    GString *line;
};

VmcTraceWriter *
vmc_trace_writer_new(const char *path, const char *source, GError **error)
{
    FILE *fp;
    gboolean own = TRUE;

    g_return_val_if_fail(path != NULL, NULL);
    if (strcmp(path, "-") == 0) {
        fp = stdout;
        own = FALSE;
    } else {
        fp = g_fopen(path, "we");
        if (!fp) {
            int e = errno;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e), "%s: %s", path,
                        g_strerror(e));
            return NULL;
        }
    }
    VmcTraceWriter *w = g_new0(VmcTraceWriter, 1);
    w->fp = fp;
    w->own_fp = own;
    w->name = g_strdup(path);
    w->start_us = g_get_monotonic_time();
    w->line = g_string_sized_new(256);

    VmcTraceEvent hdr;
    vmc_trace_event_init(&hdr);
    hdr.event = VMC_TRACE_EV_TRACE;
    hdr.version = VMC_TRACE_VERSION;
    hdr.present = VMC_TRACE_HAS_VERSION;
    if (source) {
        hdr.source = g_strdup(source);
        hdr.present |= VMC_TRACE_HAS_SOURCE;
    }
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    hdr.detail = g_date_time_format_iso8601(now);
    hdr.present |= VMC_TRACE_HAS_DETAIL;
    gboolean ok = vmc_trace_writer_write(w, &hdr, error);
    vmc_trace_event_clear(&hdr);
    if (!ok) {
        vmc_trace_writer_free(w);
        return NULL;
    }
    return w;
}

void
vmc_trace_writer_free(VmcTraceWriter *w)
{
    if (!w)
        return;
    if (w->own_fp)
        fclose(w->fp);
    else
        fflush(w->fp);
    g_clear_error(&w->failed);
    g_string_free(w->line, TRUE);
    g_free(w->name);
    g_free(w);
}

guint64
vmc_trace_writer_now(VmcTraceWriter *w)
{
    gint64 now = g_get_monotonic_time();
    return now > w->start_us ? (guint64)(now - w->start_us) : 0;
}

gboolean
vmc_trace_writer_write_line(VmcTraceWriter *w, const char *line, gsize len, GError **error)
{
    if (w->failed) {
        if (error)
            *error = g_error_copy(w->failed);
        return FALSE;
    }
    if (fwrite(line, 1, len, w->fp) != len || fputc('\n', w->fp) == EOF ||
        fflush(w->fp) != 0) {
        int e = errno;
        g_set_error(&w->failed, G_IO_ERROR, g_io_error_from_errno(e), "%s: write failed: %s",
                    w->name, g_strerror(e));
        if (error)
            *error = g_error_copy(w->failed);
        return FALSE;
    }
    return TRUE;
}

gboolean
vmc_trace_writer_write(VmcTraceWriter *w, const VmcTraceEvent *ev, GError **error)
{
    g_string_truncate(w->line, 0);
    vmc_trace_event_append(ev, w->line);
    return vmc_trace_writer_write_line(w, w->line->str, w->line->len, error);
}
