/*
 * libFuzzer target: untrusted aggregator replies through the ack parser, fed
 * as output.c feeds it (a stream of responses, possibly several per read).
 */
#include "fwd_forward.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[FWD_FORWARD_ACK_MAX + 1];
    size_t off = 0, used, idlen;

    while (off < size) {
        int r = fwd_forward_parse_ack(data + off, size - off, &used, id, &idlen);

        if (r <= 0)
            break;
        if (used == 0 || used > size - off || strlen(id) > FWD_FORWARD_ACK_MAX)
            abort();
        off += used;
    }
    return 0;
}
