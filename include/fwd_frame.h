/*
 * fwd_frame.h - split a byte stream into Docker log frames:
 * [uint32 big-endian length][protobuf LogEntry of exactly length bytes]
 * (moby daemon/logger/internal/logdriver/io.go). Pure: no file descriptors.
 */
#ifndef FWD_FRAME_H
#define FWD_FRAME_H

#include <stddef.h>
#include <stdint.h>

/*
 * Called once per complete frame with its payload (borrowed: valid during the
 * call only). Return 0 to go on, anything else to stop the split early.
 */
typedef int (*fwd_frame_cb)(void *ctx, const uint8_t *payload, size_t len);

/*
 * Walk p[0..len) and call cb for every complete frame. *consumed (zeroed
 * first) is set to the bytes that made up whole frames: the caller keeps the
 * rest for the next call. A length prefix above max is -EMSGSIZE (nothing is
 * allocated for it; *consumed points at the bad prefix). A callback that stops
 * the walk makes this return its value; *consumed then includes that frame.
 */
int fwd_frame_split(const uint8_t *p, size_t len, size_t max, fwd_frame_cb cb, void *ctx,
                    size_t *consumed) __attribute__((warn_unused_result));

/* The bytes every dockerd frame opens with: length, then 0a 06 "stdout" or "stderr". */
#define FWD_FRAME_SIG_LEN 12
/* The shortest LogEntry dockerd writes: its source field alone. */
#define FWD_FRAME_MIN_LEN 8

/*
 * Find where a frame can start in p[0..len): a length prefix from 8 to max
 * followed by the source field dockerd always writes first. Returns 1 with
 * *off at the candidate (its frame may not be complete yet; the caller checks
 * it decodes), or 0 when there is none, with *off the bytes that can be
 * dropped (the last few may still begin one).
 */
int fwd_frame_find_start(const uint8_t *p, size_t len, size_t max, size_t *off)
    __attribute__((warn_unused_result));

/* Write the 4-byte big-endian length prefix for a payload of len bytes. */
void fwd_frame_put_len(uint8_t out[4], uint32_t len);
/* Read the length prefix at p (4 bytes). */
uint32_t fwd_frame_get_len(const uint8_t *p);

#endif
