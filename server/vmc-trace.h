/* vmc-trace.h — the JSON Lines trace format (docs/trace-format.md): one event per line.
 *
 * A line is one flat JSON object whose keys appear in a fixed order with no spaces;
 * that spelling is canonical: decoding a line written by vmc_trace_event_append() and
 * encoding the result again gives the identical bytes. The decoder is a strict
 * hand-written parser (exact 64-bit integers, strict base64) that accepts any
 * spacing and key order, ignores unknown keys and reports errors with a column;
 * VmcTraceReader adds the file name and line number.
 *
 * Used by the recorder (vmc-record.c, `vmcmux-server --record`), and by vmcmux-client's
 * record, replay and decode subcommands and the regression tests.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define VMC_TRACE_FORMAT_NAME "vmcmux-trace"
#define VMC_TRACE_VERSION 1u
/* The recorder keeps at most this many payload bytes per message ("truncated" beyond). */
#define VMC_TRACE_MAX_PAYLOAD (16u * 1024u * 1024u)
/* The reader refuses longer lines (base64 of the max payload plus keys fits easily). */
#define VMC_TRACE_MAX_LINE (32u * 1024u * 1024u)

#define VMC_TRACE_ERROR (vmc_trace_error_quark())
GQuark vmc_trace_error_quark(void);

typedef enum {
    VMC_TRACE_ERROR_SYNTAX,    /* not a JSON object of the accepted shape */
    VMC_TRACE_ERROR_INVALID,   /* valid JSON, but a field is missing, mistyped or out of range */
    VMC_TRACE_ERROR_TRUNCATED, /* the file ends in the middle of a line */
    VMC_TRACE_ERROR_VERSION,   /* a trace header with an unknown format or version */
} VmcTraceError;

/* Same order and values as VmcMuxDirection (server/vmc-mux.h). */
typedef enum {
    VMC_TRACE_DIR_CLIENT_AGENT,
    VMC_TRACE_DIR_AGENT_CLIENT,
    VMC_TRACE_DIR_SERVER_AGENT,
    VMC_TRACE_DIR_AGENT_SERVER,
} VmcTraceDir;

typedef enum {
    VMC_TRACE_EV_TRACE,             /* "trace": header line: version, source, detail */
    VMC_TRACE_EV_MSG,               /* "msg": one whole agent message */
    VMC_TRACE_EV_RAW,               /* "raw": bytes that are not a valid agent message */
    VMC_TRACE_EV_AGENT_CONNECT,     /* "agent-connect" */
    VMC_TRACE_EV_AGENT_DISCONNECT,  /* "agent-disconnect" */
    VMC_TRACE_EV_CLIENT_CONNECT,    /* "client-connect": client */
    VMC_TRACE_EV_CLIENT_DISCONNECT, /* "client-disconnect": client */
    VMC_TRACE_EV_TOKENS,            /* "tokens": dir, client, what, tokens */
} VmcTraceEventType;

/* Which optional keys an event carries (bit per key, in canonical key order). */
enum {
    VMC_TRACE_HAS_DIR = 1u << 0,
    VMC_TRACE_HAS_CLIENT = 1u << 1,
    VMC_TRACE_HAS_PORT = 1u << 2,
    VMC_TRACE_HAS_TYPE = 1u << 3,
    VMC_TRACE_HAS_NAME = 1u << 4,
    VMC_TRACE_HAS_PROTOCOL = 1u << 5,
    VMC_TRACE_HAS_OPAQUE = 1u << 6,
    VMC_TRACE_HAS_SIZE = 1u << 7,
    VMC_TRACE_HAS_TRUNCATED = 1u << 8,
    VMC_TRACE_HAS_PARTIAL = 1u << 9,
    VMC_TRACE_HAS_WHAT = 1u << 10,
    VMC_TRACE_HAS_TOKENS = 1u << 11,
    VMC_TRACE_HAS_VERSION = 1u << 12,
    VMC_TRACE_HAS_SOURCE = 1u << 13,
    VMC_TRACE_HAS_DETAIL = 1u << 14,
    VMC_TRACE_HAS_DATA = 1u << 15,
};

/* One decoded line. Strings and data are owned (vmc_trace_event_clear frees them). */
typedef struct {
    guint64 time_us;          /* "time_us": µs since the start of the trace */
    VmcTraceEventType event;  /* "event" */
    guint32 present;          /* VMC_TRACE_HAS_* */
    VmcTraceDir dir;          /* "dir" */
    guint32 client;           /* "client": client id, 0 = every client (broadcast) */
    guint32 port;             /* "port": VDI port, 1 client, 2 server */
    guint32 type;             /* "type": VDAgentMessage.type */
    char *name;               /* "name": type name, informational */
    guint32 protocol;         /* "protocol": only written when it is not 1 */
    guint64 opaque;           /* "opaque" */
    guint32 size;             /* "size": VDAgentMessage.size from the header */
    gboolean truncated;       /* "truncated": payload cut at VMC_TRACE_MAX_PAYLOAD */
    gboolean partial;         /* "partial": the stream ended before the message did */
    char *what;               /* "what": AGENT_START, AGENT_TOKEN, AGENT_CONNECTED_TOKENS, ... */
    guint32 tokens;           /* "tokens" */
    guint32 version;          /* "version": trace header */
    char *source;             /* "source": trace header: who wrote it */
    char *detail;             /* "detail": peer address, reason, ... */
    GBytes *data;             /* "data": payload (base64 on the line); NULL = absent */
} VmcTraceEvent;

void vmc_trace_event_init(VmcTraceEvent *ev);
void vmc_trace_event_clear(VmcTraceEvent *ev); /* frees the owned fields, re-inits */
/* Deep copy into *dst (initialised by this call). */
void vmc_trace_event_copy(VmcTraceEvent *dst, const VmcTraceEvent *src);

/* Convenience constructors: fill *ev (initialised by the call) with the canonical
 * set of keys for that event. Borrowed inputs are copied. */
void vmc_trace_event_set_msg(VmcTraceEvent *ev, guint64 time_us, VmcTraceDir dir, guint32 client,
                             guint32 port, guint32 protocol, guint32 type, guint64 opaque,
                             guint32 size, const guint8 *payload, gsize len);
void vmc_trace_event_set_simple(VmcTraceEvent *ev, guint64 time_us, VmcTraceEventType event,
                                gboolean with_client, guint32 client, const char *detail);

const char *vmc_trace_dir_to_string(VmcTraceDir dir);
gboolean vmc_trace_dir_from_string(const char *s, VmcTraceDir *out);
const char *vmc_trace_event_type_to_string(VmcTraceEventType event);
gboolean vmc_trace_event_type_from_string(const char *s, VmcTraceEventType *out);

/* Payload bytes of a msg/raw event (never NULL; *len 0 when there is no data). */
const guint8 *vmc_trace_event_payload(const VmcTraceEvent *ev, gsize *len);

/* Appends the canonical line (no newline) to `out`. */
void vmc_trace_event_append(const VmcTraceEvent *ev, GString *out);
/* (transfer full) the canonical line without newline. */
char *vmc_trace_event_to_line(const VmcTraceEvent *ev);

/* Parses one line (without its newline; `len` bytes, need not be NUL-terminated).
 * On success fills *out (initialised by the call) and returns TRUE. On failure sets
 * a VMC_TRACE_ERROR whose message starts with "column N: " and leaves *out cleared.
 * Checks the keys each event type requires and their ranges. */
gboolean vmc_trace_event_parse(const char *line, gsize len, VmcTraceEvent *out, GError **error);

/* ---- files ---- */

typedef struct _VmcTraceReader VmcTraceReader;

/* Opens `path` ("-" = stdin). */
VmcTraceReader *vmc_trace_reader_new(const char *path, GError **error);
/* Reads from a caller-owned stream (kept referenced); `name` is used in messages. */
VmcTraceReader *vmc_trace_reader_new_from_stream(GInputStream *stream, const char *name);
void vmc_trace_reader_free(VmcTraceReader *r); /* NULL-safe */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcTraceReader, vmc_trace_reader_free)

/* Next event. TRUE: *out filled. FALSE with no error: end of the trace. FALSE with
 * *error: "NAME:LINE: column C: what went wrong" (VMC_TRACE_ERROR or G_IO_ERROR).
 * Blank lines are skipped. A header ("trace") is only accepted as the first event. */
gboolean vmc_trace_reader_next(VmcTraceReader *r, VmcTraceEvent *out, GError **error);
/* Line number of the event last returned (or of the error). */
guint64 vmc_trace_reader_line(const VmcTraceReader *r);
/* The raw text of the line last returned (borrowed, valid until the next call). */
const char *vmc_trace_reader_line_text(const VmcTraceReader *r, gsize *len);

/* Reads a whole trace. (transfer full) GPtrArray of VmcTraceEvent* (freed with the array). */
GPtrArray *vmc_trace_load(const char *path, GError **error);

typedef struct _VmcTraceWriter VmcTraceWriter;

/* Creates/truncates `path` ("-" = stdout) and writes the header line
 * {"time_us":0,"event":"trace","version":1,"source":SOURCE,...}. The clock starts now. */
VmcTraceWriter *vmc_trace_writer_new(const char *path, const char *source, GError **error);
void vmc_trace_writer_free(VmcTraceWriter *w); /* NULL-safe; flushes and closes */
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmcTraceWriter, vmc_trace_writer_free)
/* µs since the writer was created (monotonic clock). */
guint64 vmc_trace_writer_now(VmcTraceWriter *w);
/* Writes one line and flushes it. Once a write fails, the writer stays failed and
 * later calls return FALSE without writing; the first error is reported. */
gboolean vmc_trace_writer_write(VmcTraceWriter *w, const VmcTraceEvent *ev, GError **error);
/* Writes an already encoded line (no newline) as is. */
gboolean vmc_trace_writer_write_line(VmcTraceWriter *w, const char *line, gsize len,
                                     GError **error);

G_END_DECLS
