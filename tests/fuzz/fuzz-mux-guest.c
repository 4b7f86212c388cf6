/* fuzz-mux-guest.c — the mux's guest input: the input's data bytes are the
 * guest port stream, fed in the splits the script chooses, with client, token,
 * lifecycle and time events in between (see fuzz-mux-util.h). */
#include "fuzz-mux-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run(FZ_GUEST, data, size);
    return 0;
}
