/*
 * libFuzzer target: untrusted aggregator replies through the parsers output.c
 * feeds them to: HELO, PONG, and a stream of acks (several per read).
 */
#include "fwd_forward.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[FWD_FORWARD_ACK_MAX + 1];
    size_t off = 0, used, idlen;
    struct fwd_helo helo;
    struct fwd_pong pong;

    if (fwd_forward_parse_helo(data, size, &used, &helo) == 1 &&
        (used > size || helo.nonce_len > sizeof(helo.nonce)))
        abort();
    if (fwd_forward_parse_pong(data, size, &used, &pong) == 1 &&
        (used > size || strlen(pong.digest) > 128))
        abort();

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
