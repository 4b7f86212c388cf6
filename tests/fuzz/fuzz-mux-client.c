/* fuzz-mux-client.c — the mux's client input: the input's data bytes are
 * AGENT_DATA bodies of the clients the script chooses, in the sizes it chooses,
 * with guest, token, lifecycle and time events in between (see
 * fuzz-mux-util.h). */
#include "fuzz-mux-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_run(FZ_CLIENT, data, size);
    return 0;
}
