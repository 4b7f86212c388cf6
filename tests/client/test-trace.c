/* test-trace.c — the JSON Lines trace codec, reader/writer and recorder. */
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>

#include "protocol/vmc-agent.h"
#include "server/vmc-record.h"
#include "server/vmc-trace.h"

/* ---- canonical lines round-trip byte-exactly ---- */

static const char *const canonical_lines[] = {
    "{\"time_us\":0,\"event\":\"trace\",\"version\":1,\"source\":\"vmcmux-server\","
    "\"detail\":\"2026-11-25T13:00:00Z\"}",
    "{\"time_us\":12,\"event\":\"agent-connect\"}",
    "{\"time_us\":13,\"event\":\"agent-connect\",\"detail\":\"unix:/tmp/x.sock\"}",
    "{\"time_us\":20,\"event\":\"client-connect\",\"client\":1,\"detail\":\"127.0.0.1:40000\"}",
    "{\"time_us\":21,\"event\":\"tokens\",\"dir\":\"client-agent\",\"client\":1,"
    "\"what\":\"AGENT_START\",\"tokens\":4294967295}",
    "{\"time_us\":22,\"event\":\"msg\",\"dir\":\"client-agent\",\"client\":1,\"port\":1,\"type\":6,"
    "\"name\":\"ANNOUNCE_CAPABILITIES\",\"opaque\":0,\"size\":8,\"data\":\"AQAAAOeNAwA=\"}",
    "{\"time_us\":23,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":0,\"port\":1,"
    "\"type\":99,\"opaque\":18446744073709551615,\"size\":0,\"data\":\"\"}",
    "{\"time_us\":24,\"event\":\"msg\",\"dir\":\"server-agent\",\"client\":0,\"port\":2,"
    "\"type\":13,\"name\":\"CLIENT_DISCONNECTED\",\"opaque\":0,\"size\":0,\"data\":\"\"}",
    "{\"time_us\":25,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":0,\"port\":1,"
    "\"type\":4,\"name\":\"CLIPBOARD\",\"opaque\":7,\"size\":5000,\"partial\":true,"
    "\"data\":\"AQID\"}",
    "{\"time_us\":26,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":0,\"port\":1,"
    "\"type\":4,\"protocol\":2,\"opaque\":7,\"size\":1,\"truncated\":true,\"data\":\"\"}",
    "{\"time_us\":27,\"event\":\"raw\",\"dir\":\"agent-server\",\"client\":0,\"port\":2,"
    "\"detail\":\"agent message protocol is not 1\",\"data\":\"AgAAAA==\"}",
    "{\"time_us\":28,\"event\":\"client-disconnect\",\"client\":1,"
    "\"detail\":\"quote \\\" backslash \\\\ nl \\n tab \\t cr \\r bs \\b ff \\f ctl \\u0001 "
    "utf8 \xc3\xa9\xe2\x82\xac slash /\"}",
    "{\"time_us\":18446744073709551615,\"event\":\"agent-disconnect\"}",
    "{\"time_us\":30,\"event\":\"tokens\",\"dir\":\"agent-client\",\"client\":4294967295,"
    "\"what\":\"AGENT_TOKEN\",\"tokens\":0}",
};

static void
test_canonical_roundtrip(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(canonical_lines); i++) {
        const char *line = canonical_lines[i];
        VmcTraceEvent ev;
        g_autoptr(GError) error = NULL;

        g_test_message("line %u: %s", i, line);
        g_assert_true(vmc_trace_event_parse(line, strlen(line), &ev, &error));
        g_assert_no_error(error);
        g_autofree char *again = vmc_trace_event_to_line(&ev);
        g_assert_cmpstr(again, ==, line);
        vmc_trace_event_clear(&ev);
    }
}

/* Non-canonical spellings parse and re-encode canonically. */
static void
test_noncanonical(void)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {" { \"event\" : \"agent-connect\" , \"time_us\" : 5 } ",
         "{\"time_us\":5,\"event\":\"agent-connect\"}"},
        {"{\"time_us\":5,\"event\":\"agent-connect\",\"future\":{\"a\":[1,2.5,-3e4,null,true]}}",
         "{\"time_us\":5,\"event\":\"agent-connect\"}"},
        {"{\"time_us\":5,\"event\":\"agent-connect\",\"detail\":\"\\u0041\\/\\ud83d\\ude00\"}",
         "{\"time_us\":5,\"event\":\"agent-connect\",\"detail\":\"A/\xf0\x9f\x98\x80\"}"},
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        VmcTraceEvent ev;
        g_autoptr(GError) error = NULL;
        g_assert_true(vmc_trace_event_parse(cases[i].in, strlen(cases[i].in), &ev, &error));
        g_autofree char *out = vmc_trace_event_to_line(&ev);
        g_assert_cmpstr(out, ==, cases[i].out);
        vmc_trace_event_clear(&ev);
    }
}

static void
assert_events_equal(const VmcTraceEvent *a, const VmcTraceEvent *b)
{
    gsize la, lb;
    const guint8 *pa = vmc_trace_event_payload(a, &la);
    const guint8 *pb = vmc_trace_event_payload(b, &lb);

    g_assert_cmpuint(a->time_us, ==, b->time_us);
    g_assert_cmpint(a->event, ==, b->event);
    g_assert_cmphex(a->present, ==, b->present);
    g_assert_cmpint(a->dir, ==, b->dir);
    g_assert_cmpuint(a->client, ==, b->client);
    g_assert_cmpuint(a->port, ==, b->port);
    g_assert_cmpuint(a->type, ==, b->type);
    g_assert_cmpuint(a->protocol, ==, b->protocol);
    g_assert_cmpuint(a->opaque, ==, b->opaque);
    g_assert_cmpuint(a->size, ==, b->size);
    g_assert_cmpstr(a->name, ==, b->name);
    g_assert_cmpstr(a->what, ==, b->what);
    g_assert_cmpstr(a->detail, ==, b->detail);
    g_assert_cmpmem(pa, la, pb, lb);
}

/* Random events: encode, parse, encode again. */
static void
test_random_roundtrip(void)
{
    for (guint i = 0; i < 500; i++) {
        VmcTraceEvent ev, back;
        g_autoptr(GError) error = NULL;
        gsize len = (gsize)g_test_rand_int_range(0, i % 50 == 0 ? 70000 : 300);
        g_autofree guint8 *payload = g_malloc(len + 1);

        for (gsize j = 0; j < len; j++)
            payload[j] = (guint8)g_test_rand_int_range(0, 256);
        guint kind = (guint)g_test_rand_int_range(0, 4);
        guint64 t = ((guint64)g_test_rand_int() << 32) | (guint32)g_test_rand_int();
        if (kind == 0) {
            guint32 type = (guint32)g_test_rand_int_range(0, 30);
            guint64 opaque = ((guint64)g_test_rand_int() << 32) | (guint32)g_test_rand_int();
            vmc_trace_event_set_msg(&ev, t, (VmcTraceDir)g_test_rand_int_range(0, 4),
                                    (guint32)g_test_rand_int(), (guint32)g_test_rand_int_range(1, 3),
                                    g_test_rand_bit() ? 1 : (guint32)g_test_rand_int(), type,
                                    opaque, (guint32)len, payload, len);
        } else if (kind == 1) {
            char detail[40];
            for (guint j = 0; j < sizeof(detail) - 1; j++)
                detail[j] = (char)g_test_rand_int_range(1, 128);
            detail[sizeof(detail) - 1] = 0;
            vmc_trace_event_set_simple(&ev, t, VMC_TRACE_EV_CLIENT_CONNECT, TRUE,
                                       (guint32)g_test_rand_int(), detail);
        } else if (kind == 2) {
            vmc_trace_event_set_simple(&ev, t, VMC_TRACE_EV_TOKENS, TRUE,
                                       (guint32)g_test_rand_int(), NULL);
            ev.dir = (VmcTraceDir)g_test_rand_int_range(0, 2);
            ev.what = g_strdup("AGENT_TOKEN");
            ev.tokens = (guint32)g_test_rand_int();
            ev.present |= VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_WHAT | VMC_TRACE_HAS_TOKENS;
        } else {
            vmc_trace_event_set_simple(&ev, t, VMC_TRACE_EV_RAW, FALSE, 0, NULL);
            ev.dir = VMC_TRACE_DIR_AGENT_CLIENT;
            ev.data = g_bytes_new(payload, len);
            ev.present |= VMC_TRACE_HAS_DIR | VMC_TRACE_HAS_DATA;
        }
        g_autofree char *line = vmc_trace_event_to_line(&ev);
        g_assert_true(vmc_trace_event_parse(line, strlen(line), &back, &error));
        g_assert_no_error(error);
        assert_events_equal(&ev, &back);
        g_autofree char *again = vmc_trace_event_to_line(&back);
        g_assert_cmpstr(line, ==, again);
        vmc_trace_event_clear(&ev);
        vmc_trace_event_clear(&back);
    }
}

/* ---- bad lines ---- */

static const struct {
    const char *line;
    VmcTraceError code;
    const char *message; /* substring of the error message */
} bad_lines[] = {
    {"", VMC_TRACE_ERROR_TRUNCATED, "column 1: unexpected end of line"},
    {"[1]", VMC_TRACE_ERROR_SYNTAX, "column 1: expected '{'"},
    {"{\"time_us\":1,\"event\":\"agent-connect\"", VMC_TRACE_ERROR_TRUNCATED, "column 37:"},
    {"{\"time_us\":1,\"event\":\"agent-connect\"}x", VMC_TRACE_ERROR_SYNTAX,
     "column 38: unexpected text"},
    {"{\"time_us\":1 \"event\":\"agent-connect\"}", VMC_TRACE_ERROR_SYNTAX,
     "column 14: expected ',' or '}'"},
    {"{\"time_us\" 1}", VMC_TRACE_ERROR_SYNTAX, "column 12: expected ':'"},
    {"{\"time_us\":-1,\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_INVALID, "negative"},
    {"{\"time_us\":1.5,\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_INVALID, "not an integer"},
    {"{\"time_us\":01,\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_SYNTAX, "leading zero"},
    {"{\"time_us\":18446744073709551616,\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_INVALID,
     "64 bits"},
    {"{\"time_us\":\"1\",\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_INVALID,
     "\"time_us\" must be a non-negative integer"},
    {"{\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_INVALID, "missing \"time_us\""},
    {"{\"time_us\":1}", VMC_TRACE_ERROR_INVALID, "missing \"event\""},
    {"{\"time_us\":1,\"event\":\"boom\"}", VMC_TRACE_ERROR_INVALID, "unknown event \"boom\""},
    {"{\"time_us\":1,\"time_us\":2,\"event\":\"agent-connect\"}", VMC_TRACE_ERROR_INVALID,
     "column 14: duplicate key \"time_us\""},
    {"{\"time_us\":1,\"event\":\"client-connect\"}", VMC_TRACE_ERROR_INVALID,
     "client-connect event without \"client\""},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"up\",\"client\":1,\"port\":1,\"type\":1,"
     "\"opaque\":0,\"size\":0,\"data\":\"\"}", VMC_TRACE_ERROR_INVALID, "unknown direction"},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":1,"
     "\"type\":1,\"opaque\":0,\"size\":3,\"data\":\"AQI=\"}", VMC_TRACE_ERROR_INVALID,
     "data holds 2 bytes but size is 3"},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":1,"
     "\"type\":1,\"opaque\":0,\"size\":2,\"partial\":true,\"data\":\"AQI=\"}",
     VMC_TRACE_ERROR_INVALID, "marked truncated/partial"},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":1,"
     "\"type\":1,\"opaque\":0,\"size\":2,\"data\":\"AQI\"}", VMC_TRACE_ERROR_INVALID,
     "not a multiple of 4"},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":1,"
     "\"type\":1,\"opaque\":0,\"size\":2,\"data\":\"AQ*=\"}", VMC_TRACE_ERROR_INVALID,
     "bad base64 character at data offset 2"},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":1,"
     "\"type\":1,\"opaque\":0,\"size\":1,\"data\":\"QR==\"}", VMC_TRACE_ERROR_INVALID,
     "non-canonical base64"},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":1,"
     "\"type\":1,\"opaque\":0,\"size\":1}", VMC_TRACE_ERROR_INVALID,
     "msg event without \"data\""},
    {"{\"time_us\":1,\"event\":\"msg\",\"dir\":\"agent-client\",\"client\":1,\"port\":4294967296,"
     "\"type\":1,\"opaque\":0,\"size\":0,\"data\":\"\"}", VMC_TRACE_ERROR_INVALID,
     "\"port\" is out of range"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"detail\":\"a\\qb\"}", VMC_TRACE_ERROR_SYNTAX,
     "bad escape"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"detail\":\"a\\ud800b\"}",
     VMC_TRACE_ERROR_SYNTAX, "unpaired surrogate"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"detail\":\"a\\u0000b\"}",
     VMC_TRACE_ERROR_INVALID, "NUL"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"detail\":\"a\tb\"}", VMC_TRACE_ERROR_SYNTAX,
     "control character"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"detail\":\"\xff\"}", VMC_TRACE_ERROR_INVALID,
     "UTF-8"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"detail\":\"abc", VMC_TRACE_ERROR_TRUNCATED,
     "unterminated string"},
    {"{\"time_us\":0,\"event\":\"trace\",\"version\":2}", VMC_TRACE_ERROR_VERSION,
     "version 2 is not supported"},
    {"{\"time_us\":0,\"event\":\"trace\"}", VMC_TRACE_ERROR_INVALID, "without \"version\""},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", VMC_TRACE_ERROR_INVALID, "nested too deeply"},
    {"{\"time_us\":1,\"event\":\"agent-connect\",\"partial\":1}", VMC_TRACE_ERROR_INVALID,
     "must be true or false"},
};

static void
test_bad_lines(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(bad_lines); i++) {
        VmcTraceEvent ev;
        g_autoptr(GError) error = NULL;
        const char *line = bad_lines[i].line;

        g_autofree char *shown = g_strescape(line, NULL);
        g_test_message("bad line %u: %s", i, shown);
        g_assert_false(vmc_trace_event_parse(line, strlen(line), &ev, &error));
        g_assert_error(error, VMC_TRACE_ERROR, (gint)bad_lines[i].code);
        if (!strstr(error->message, bad_lines[i].message))
            g_error("line %u: message \"%s\" lacks \"%s\"", i, error->message,
                    bad_lines[i].message);
        g_assert_true(g_str_has_prefix(error->message, "column "));
        /* *out is left cleared */
        g_assert_null(ev.data);
        g_assert_null(ev.detail);
    }
}

/* Every prefix of a valid line fails cleanly (and never reads past the given length). */
static void
test_prefixes(void)
{
    const char *line = canonical_lines[5];
    gsize n = strlen(line);

    for (gsize k = 0; k < n; k++) {
        VmcTraceEvent ev;
        g_autoptr(GError) error = NULL;
        g_autofree char *copy = g_memdup2(line, k);
        g_assert_false(vmc_trace_event_parse(copy, k, &ev, &error));
        g_assert_nonnull(error);
    }
}

/* ---- files ---- */

static char *
write_temp(const char *contents, gssize len)
{
    g_autoptr(GError) error = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("vmc-trace-XXXXXX.jsonl", &path, &error);
    g_assert_no_error(error);
    close(fd);
    g_assert_true(g_file_set_contents(path, contents, len, &error));
    return path;
}

static void
expect_file_error(const char *contents, gssize len, VmcTraceError code, guint line,
                  const char *needle)
{
    g_autofree char *path = write_temp(contents, len);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) events = vmc_trace_load(path, &error);

    g_assert_null(events);
    g_assert_error(error, VMC_TRACE_ERROR, (gint)code);
    g_autofree char *prefix = g_strdup_printf("%s:%u: ", path, line);
    g_test_message("%s", error->message);
    g_assert_true(g_str_has_prefix(error->message, prefix));
    g_assert_nonnull(strstr(error->message, needle));
    g_unlink(path);
}

static void
test_file_errors(void)
{
    GString *good = g_string_new(NULL);
    for (guint i = 0; i < 5; i++)
        g_string_append_printf(good, "%s\n", canonical_lines[i]);

    /* corrupt line 4 */
    g_autoptr(GString) corrupt = g_string_new(NULL);
    g_string_append_printf(corrupt, "%s\n%s\n\n%s\n", canonical_lines[0], canonical_lines[1],
                           "{\"time_us\":3,\"event\":\"agent-connect\",}");
    expect_file_error(corrupt->str, -1, VMC_TRACE_ERROR_SYNTAX, 4, "column 38: expected a key");

    /* binary garbage on line 2 */
    expect_file_error("{\"time_us\":0,\"event\":\"agent-connect\"}\n\x01\x02\x03\n", -1,
                      VMC_TRACE_ERROR_SYNTAX, 2, "column 1: expected '{'");

    /* truncated: the file ends inside line 6 */
    g_autoptr(GString) cut = g_string_new(good->str);
    g_string_append_len(cut, canonical_lines[5], 40);
    expect_file_error(cut->str, -1, VMC_TRACE_ERROR_TRUNCATED, 6, "truncated trace");

    /* a header that is not first */
    g_autoptr(GString) late = g_string_new(NULL);
    g_string_append_printf(late, "%s\n%s\n", canonical_lines[1], canonical_lines[0]);
    expect_file_error(late->str, -1, VMC_TRACE_ERROR_INVALID, 2, "only allowed on the first");

    /* unknown version in the header */
    expect_file_error("{\"time_us\":0,\"event\":\"trace\",\"version\":9}\n", -1,
                      VMC_TRACE_ERROR_VERSION, 1, "version 9");

    /* a missing file */
    g_autoptr(GError) error = NULL;
    g_assert_null(vmc_trace_load("/nonexistent/trace.jsonl", &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);

    /* a good file without a final newline, with CRLF and blank lines, loads */
    g_autoptr(GString) ok = g_string_new(NULL);
    g_string_append_printf(ok, "%s\r\n\n  \n%s", canonical_lines[0], canonical_lines[1]);
    g_autofree char *path = write_temp(ok->str, -1);
    g_clear_error(&error);
    g_autoptr(GPtrArray) events = vmc_trace_load(path, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(events->len, ==, 2);
    g_unlink(path);
    g_string_free(good, TRUE);
}

static void
test_writer_reader(void)
{
    g_autofree char *path = write_temp("", 0);
    g_autoptr(GError) error = NULL;
    VmcTraceWriter *w = vmc_trace_writer_new(path, "test", &error);
    g_assert_no_error(error);

    for (guint i = 1; i < G_N_ELEMENTS(canonical_lines); i++) {
        g_assert_true(vmc_trace_writer_write_line(w, canonical_lines[i],
                                                  strlen(canonical_lines[i]), &error));
    }
    vmc_trace_writer_free(w);

    g_autoptr(VmcTraceReader) r = vmc_trace_reader_new(path, &error);
    g_assert_no_error(error);
    VmcTraceEvent ev;
    g_assert_true(vmc_trace_reader_next(r, &ev, &error));
    g_assert_cmpint(ev.event, ==, VMC_TRACE_EV_TRACE);
    g_assert_cmpstr(ev.source, ==, "test");
    vmc_trace_event_clear(&ev);
    for (guint i = 1; i < G_N_ELEMENTS(canonical_lines); i++) {
        g_assert_true(vmc_trace_reader_next(r, &ev, &error));
        g_assert_cmpuint(vmc_trace_reader_line(r), ==, i + 1);
        gsize len;
        const char *text = vmc_trace_reader_line_text(r, &len);
        g_assert_cmpmem(text, len, canonical_lines[i], strlen(canonical_lines[i]));
        g_autofree char *again = vmc_trace_event_to_line(&ev);
        g_assert_cmpstr(again, ==, canonical_lines[i]);
        vmc_trace_event_clear(&ev);
    }
    g_assert_false(vmc_trace_reader_next(r, &ev, &error));
    g_assert_no_error(error);

    /* writing to an unwritable place fails with a clear error */
    g_assert_null(vmc_trace_writer_new("/nonexistent/dir/t.jsonl", NULL, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_unlink(path);
}

/* ---- recorder ---- */

static GByteArray *
make_message(guint32 protocol, guint32 type, guint64 opaque, gsize size, guint8 fill)
{
    GByteArray *b = g_byte_array_new();
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    VmcAgentHeader h = {protocol, type, opaque, (guint32)size};
    vmc_agent_header_encode(&h, hdr);
    g_byte_array_append(b, hdr, sizeof(hdr));
    for (gsize i = 0; i < size; i++) {
        guint8 v = (guint8)(fill + i);
        g_byte_array_append(b, &v, 1);
    }
    return b;
}

static GPtrArray *
record_and_load(void (*script)(VmcRecorder *rec))
{
    g_autofree char *path = write_temp("", 0);
    g_autoptr(GError) error = NULL;
    VmcRecorder *rec = vmc_recorder_new(path, &error);
    g_assert_no_error(error);
    script(rec);
    vmc_recorder_free(rec);
    GPtrArray *events = vmc_trace_load(path, &error);
    g_assert_no_error(error);
    /* every line of the file is canonical */
    g_autofree char *contents = NULL;
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(contents, "\n", -1);
    for (guint i = 0; lines[i] && lines[i][0]; i++) {
        VmcTraceEvent ev;
        g_assert_true(vmc_trace_event_parse(lines[i], strlen(lines[i]), &ev, NULL));
        g_autofree char *again = vmc_trace_event_to_line(&ev);
        g_assert_cmpstr(again, ==, lines[i]);
        vmc_trace_event_clear(&ev);
    }
    g_unlink(path);
    return events;
}

static void
script_split(VmcRecorder *rec)
{
    g_autoptr(GByteArray) a = make_message(1, VD_AGENT_CLIPBOARD, 42, 5000, 7);
    g_autoptr(GByteArray) b = make_message(1, VD_AGENT_ANNOUNCE_CAPABILITIES, 0, 8, 1);

    vmc_recorder_event(rec, VMC_RECORD_AGENT_CONNECTED, 0, "unix:/x");
    vmc_recorder_event(rec, VMC_RECORD_CLIENT_CONNECTED, 3, "127.0.0.1:1");
    vmc_recorder_tokens(rec, VMC_MUX_DIR_CLIENT_AGENT, 3, "AGENT_START", 10);
    /* message a in 2048-byte pieces, b byte by byte (no span flags at all) */
    for (guint off = 0; off < a->len; off += 2048) {
        guint n = MIN(2048u, a->len - off);
        vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, a->data + off, n,
                         (off == 0 ? VMC_AGENT_SPAN_START : 0) |
                             (off + n == a->len ? VMC_AGENT_SPAN_END : 0));
    }
    for (guint i = 0; i < b->len; i++)
        vmc_recorder_tap(rec, VMC_MUX_DIR_CLIENT_AGENT, 3, 1, b->data + i, 1, 0);
    /* two messages in one tap call */
    g_autoptr(GByteArray) two = make_message(1, 99, 1, 3, 0);
    g_autoptr(GByteArray) c = make_message(1, 98, 2, 0, 0);
    g_byte_array_append(two, c->data, c->len);
    vmc_recorder_tap(rec, VMC_MUX_DIR_SERVER_AGENT, 0, 2, two->data, two->len, 0);
    vmc_recorder_event(rec, VMC_RECORD_CLIENT_DISCONNECTED, 3, NULL);
}

static void
test_recorder_split(void)
{
    g_autoptr(GPtrArray) ev = record_and_load(script_split);
    g_autoptr(GByteArray) a = make_message(1, VD_AGENT_CLIPBOARD, 42, 5000, 7);

    g_assert_cmpuint(ev->len, ==, 9);
    VmcTraceEvent *e = ev->pdata[0];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_TRACE);
    e = ev->pdata[1];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_AGENT_CONNECT);
    g_assert_cmpstr(e->detail, ==, "unix:/x");
    e = ev->pdata[2];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_CLIENT_CONNECT);
    g_assert_cmpuint(e->client, ==, 3);
    e = ev->pdata[3];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_TOKENS);
    g_assert_cmpstr(e->what, ==, "AGENT_START");
    g_assert_cmpuint(e->tokens, ==, 10);
    e = ev->pdata[4];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_MSG);
    g_assert_cmpint(e->dir, ==, VMC_TRACE_DIR_AGENT_CLIENT);
    g_assert_cmpuint(e->type, ==, VD_AGENT_CLIPBOARD);
    g_assert_cmpstr(e->name, ==, "CLIPBOARD");
    g_assert_cmpuint(e->opaque, ==, 42);
    g_assert_cmpuint(e->size, ==, 5000);
    gsize len;
    const guint8 *p = vmc_trace_event_payload(e, &len);
    g_assert_cmpmem(p, len, a->data + 20, 5000);
    e = ev->pdata[5];
    g_assert_cmpint(e->dir, ==, VMC_TRACE_DIR_CLIENT_AGENT);
    g_assert_cmpuint(e->client, ==, 3);
    g_assert_cmpuint(e->type, ==, VD_AGENT_ANNOUNCE_CAPABILITIES);
    e = ev->pdata[6];
    g_assert_cmpuint(e->type, ==, 99);
    g_assert_null(e->name);
    g_assert_cmpuint(e->size, ==, 3);
    g_assert_cmpuint(e->port, ==, 2);
    e = ev->pdata[7];
    g_assert_cmpuint(e->type, ==, 98);
    g_assert_cmpuint(e->size, ==, 0);
    e = ev->pdata[8];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_CLIENT_DISCONNECT);
}

static void
script_partial(VmcRecorder *rec)
{
    g_autoptr(GByteArray) a = make_message(1, VD_AGENT_FILE_XFER_DATA, 0, 3000, 0);
    g_autoptr(GByteArray) b = make_message(1, VD_AGENT_CLIPBOARD_GRAB, 0, 4, 0);
    g_autoptr(GByteArray) bad = make_message(2, 1, 0, 4, 0);

    /* client 1 abandons a half-sent message and starts another */
    vmc_recorder_tap(rec, VMC_MUX_DIR_CLIENT_AGENT, 1, 1, a->data, 2048, VMC_AGENT_SPAN_START);
    vmc_recorder_tap(rec, VMC_MUX_DIR_CLIENT_AGENT, 1, 1, b->data, b->len,
                     VMC_AGENT_SPAN_START | VMC_AGENT_SPAN_END);
    /* client 2 disconnects mid-message, and mid-header */
    vmc_recorder_tap(rec, VMC_MUX_DIR_CLIENT_AGENT, 2, 1, a->data, 100, VMC_AGENT_SPAN_START);
    vmc_recorder_event(rec, VMC_RECORD_CLIENT_DISCONNECTED, 2, "gone");
    vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, bad->data, bad->len,
                     VMC_AGENT_SPAN_START);
    vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, a->data, 5, 0);
    /* the agent goes away in the middle of a header */
    vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_SERVER, 0, 2, a->data, 7, VMC_AGENT_SPAN_START);
    vmc_recorder_event(rec, VMC_RECORD_AGENT_DISCONNECTED, 0, NULL);
    /* left open when the recorder is freed */
    vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, a->data, 30, VMC_AGENT_SPAN_START);
}

static void
test_recorder_partial(void)
{
    g_autoptr(GPtrArray) ev = record_and_load(script_partial);
    VmcTraceEvent *e;
    gsize len;

    g_assert_cmpuint(ev->len, ==, 10);
    e = ev->pdata[1]; /* client 1's abandoned message */
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_MSG);
    g_assert_true(e->partial);
    g_assert_cmpuint(e->size, ==, 3000);
    vmc_trace_event_payload(e, &len);
    g_assert_cmpuint(len, ==, 2048 - 20);
    e = ev->pdata[2];
    g_assert_cmpuint(e->type, ==, VD_AGENT_CLIPBOARD_GRAB);
    g_assert_false(e->present & VMC_TRACE_HAS_PARTIAL);
    e = ev->pdata[3]; /* client 2, flushed on disconnect */
    g_assert_true(e->partial);
    g_assert_cmpuint(e->client, ==, 2);
    vmc_trace_event_payload(e, &len);
    g_assert_cmpuint(len, ==, 80);
    e = ev->pdata[4];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_CLIENT_DISCONNECT);
    g_assert_cmpstr(e->detail, ==, "gone");
    e = ev->pdata[5]; /* protocol 2 */
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_RAW);
    vmc_trace_event_payload(e, &len);
    g_assert_cmpuint(len, ==, 24);
    e = ev->pdata[6]; /* raw continues until the next start */
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_RAW);
    vmc_trace_event_payload(e, &len);
    g_assert_cmpuint(len, ==, 5);
    e = ev->pdata[7]; /* the 7 header bytes */
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_RAW);
    g_assert_cmpstr(e->detail, ==, "incomplete message header");
    g_assert_cmpint(e->dir, ==, VMC_TRACE_DIR_AGENT_SERVER);
    e = ev->pdata[8];
    g_assert_cmpint(e->event, ==, VMC_TRACE_EV_AGENT_DISCONNECT);
    e = ev->pdata[9];
    g_assert_true(e->partial);
    vmc_trace_event_payload(e, &len);
    g_assert_cmpuint(len, ==, 10);
}

static void
script_big(VmcRecorder *rec)
{
    gsize size = (gsize)VMC_TRACE_MAX_PAYLOAD + 5000;
    guint8 hdr[VMC_AGENT_HEADER_SIZE];
    VmcAgentHeader h = {1, VD_AGENT_CLIPBOARD, 0, (guint32)size};
    g_autofree guint8 *piece = g_malloc(65536);

    vmc_agent_header_encode(&h, hdr);
    vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, hdr, sizeof(hdr), VMC_AGENT_SPAN_START);
    for (gsize off = 0; off < size; off += 65536) {
        gsize n = MIN((gsize)65536, size - off);
        for (gsize i = 0; i < n; i++)
            piece[i] = (guint8)((off + i) * 7);
        vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, piece, n, 0);
    }
    g_autoptr(GByteArray) next = make_message(1, 99, 0, 1, 0);
    vmc_recorder_tap(rec, VMC_MUX_DIR_AGENT_CLIENT, 0, 1, next->data, next->len, 0);
}

static void
test_recorder_bound(void)
{
    g_autoptr(GPtrArray) ev = record_and_load(script_big);
    gsize len;

    g_assert_cmpuint(ev->len, ==, 3);
    VmcTraceEvent *e = ev->pdata[1];
    g_assert_true(e->truncated);
    g_assert_cmpuint(e->size, ==, VMC_TRACE_MAX_PAYLOAD + 5000);
    const guint8 *p = vmc_trace_event_payload(e, &len);
    g_assert_cmpuint(len, ==, VMC_TRACE_MAX_PAYLOAD);
    g_assert_cmpuint(p[len - 1], ==, (guint8)((len - 1) * 7));
    e = ev->pdata[2];
    g_assert_cmpuint(e->type, ==, 99);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_summary("Trace format codec (round-trips, errors), files and the recorder");
    g_test_add_func("/client/trace/roundtrip/canonical", test_canonical_roundtrip);
    g_test_add_func("/client/trace/roundtrip/noncanonical", test_noncanonical);
    g_test_add_func("/client/trace/roundtrip/random", test_random_roundtrip);
    g_test_add_func("/client/trace/parse/bad-lines", test_bad_lines);
    g_test_add_func("/client/trace/parse/prefixes", test_prefixes);
    g_test_add_func("/client/trace/file/errors", test_file_errors);
    g_test_add_func("/client/trace/file/writer-reader", test_writer_reader);
    g_test_add_func("/client/trace/recorder/split", test_recorder_split);
    g_test_add_func("/client/trace/recorder/partial", test_recorder_partial);
    g_test_add_func("/client/trace/recorder/bound", test_recorder_bound);
    return g_test_run();
}
