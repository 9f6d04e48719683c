/*
 * libFuzzer target: a journal's entries as a crash (or a damaged disk) may
 * leave them. Counting whole entries must stay inside the input, allocate
 * nothing however large the headers claim, and count the same entries again
 * when given exactly the bytes it said they take.
 */
#include "fwd_forward.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t used, again;
    uint32_t n = fwd_forward_whole_entries(data, size, &used);

    if (used > size || (n == 0) != (used == 0))
        abort();
    if (fwd_forward_whole_entries(data, used, &again) != n || again != used)
        abort();
    return 0;
}
