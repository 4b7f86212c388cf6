/* Runs a libFuzzer target over every file of a corpus directory (or over the files
 * given), so fuzz targets build and run as ordinary tests without libFuzzer. */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
run_file(const char *path)
{
    gchar *contents = NULL;
    gsize len = 0;
    GError *error = NULL;

    if (!g_file_get_contents(path, &contents, &len, &error)) {
        fprintf(stderr, "%s: %s\n", path, error->message);
        g_error_free(error);
        return 1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)contents, len);
    g_free(contents);
    return 0;
}

int
main(int argc, char **argv)
{
    guint ran = 0;
    int failed = 0;

    for (int i = 1; i < argc; i++) {
        GDir *dir = g_dir_open(argv[i], 0, NULL);

        if (!dir) {
            failed |= run_file(argv[i]);
            ran++;
            continue;
        }
        for (const char *name; (name = g_dir_read_name(dir));) {
            gchar *path = g_build_filename(argv[i], name, NULL);

            failed |= run_file(path);
            ran++;
            g_free(path);
        }
        g_dir_close(dir);
    }
    /* an empty input is always a valid case */
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0);
    printf("1..1\n%s 1 - %u corpus inputs\n", failed || ran == 0 ? "not ok" : "ok", ran);
    return failed || ran == 0;
}
