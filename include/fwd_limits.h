/*
 * fwd_limits.h - the daemon's hard caps and fixed timings in one place.
 *
 * Caps protect the daemon from untrusted sizes (FIFO frames, API bodies).
 * The log-opts' defaults and ranges are not here: each is in its option's
 * row of driver/config_table.c. Sizes are bytes, times milliseconds.
 */
#ifndef FWD_LIMITS_H
#define FWD_LIMITS_H

/* A FIFO frame longer than this is corruption (moby's own reader caps at 1e6). */
#define FWD_FRAME_MAX (1024u * 1024u)
/* A plugin API request body larger than this gets 413. */
#define FWD_API_BODY_MAX (1024u * 1024u)
/* The /metrics exposition (about 2 KiB per container, 4 KiB per destination). */
#define FWD_METRICS_MAX (64u * 1024u * 1024u)
/* The scrape listener: connections at once, and how long one may sit idle (s). */
#define FWD_SCRAPE_CONNECTIONS 16u
#define FWD_SCRAPE_TIMEOUT_S   10u
/* FWDLOG_HEALTH_WINDOW's default. */
#define FWD_HEALTH_WINDOW_MS 60000u
/* Bytes read from one FIFO per read() call. */
#define FWD_READ_CHUNK (256u * 1024u)
/* Bytes read from all FIFOs together in one loop turn (the sockets get their turn). */
#define FWD_READ_PER_TURN (1024u * 1024u)
/* read() calls on one FIFO per wakeup before yielding to the others (fairness). */
#define FWD_READS_PER_WAKEUP 4
/*
 * A wakeup that read less than this from a FIFO means a trickle: the FIFO is
 * looked at again FWD_COALESCE_MS later instead of at its next write (one
 * wakeup per millisecond instead of one per line; adds at most that latency).
 */
#define FWD_COALESCE_BYTES (64u * 1024u)
#define FWD_COALESCE_MS    1u
/* Pipe capacity requested with F_SETPIPE_SZ (best effort; Linux default 64 KiB). */
#define FWD_PIPE_SIZE (1024 * 1024)
/* Docker splits lines at 16 KiB (moby daemon/logger/copier.go defaultBufSize). */
#define FWD_DOCKER_CHUNK 16384u
/* Concurrent partial-line ids tracked per container before the oldest is flushed. */
#define FWD_PARTIAL_SLOTS 8
/* A partial_log_metadata id longer than this is treated as corruption (Docker's are 64 hex). */
#define FWD_PARTIAL_ID_MAX 128
/* max-record-size: a piece carries at least this much of its line, whatever the attributes take. */
#define FWD_RECORD_PIECE_MIN 4096u
/* How long a timed-out partial id is remembered so later chunks continue its ordinals. */
#define FWD_PARTIAL_TOMBSTONE_MS 60000u

/*
 * Each log-opt's default and range are in its row of the option table
 * (driver/config_table.c). What other modules need of them is here.
 */
#define FWD_DEFAULT_PORT 24224
/* With fluentd-request-ack and no fluentd-read-timeout: how long an ack may take. */
#define FWD_DEFAULT_ACK_TIMEOUT_MS 30000u
/* batch-size and max-record-size, at most (the spool's record cap too): Fluent Bit in_forward
 * closes a connection past 6,144,000 bytes per request. */
#define FWD_MAX_BATCH_SIZE (4u * 1024u * 1024u)
/* Paths built under the state directory, at most (the directory itself: 200 less). */
#define FWD_PATH_MAX 4096
/* A spool segment file is closed (and a new one begun) past this size. */
#define FWD_SPOOL_SEGMENT (4u * 1024u * 1024u)

/*
 * Syncs waiting for the sync thread, at most (fwd_syncer.h): past it a sealed
 * segment is closed without its fdatasync. 64 segments are 256 MiB not yet
 * synced: a disk that far behind is failing, and each one holds an fd.
 */
#define FWD_SYNC_QUEUE 64u

/* Connect attempts that take longer than this are abandoned. */
#define FWD_CONNECT_TIMEOUT_MS 10000u
/*
 * A batch is set aside (spool rejected/, counted, logged) once this many connections
 * failed while it was the oldest being sent: an aggregator that refuses it (too large
 * for its buffer, say) would otherwise get it again forever, ahead of everything else.
 */
#define FWD_MAX_SEND_ATTEMPTS 5
/* Idle seconds before TCP keepalive probes a silent aggregator connection. */
#define FWD_TCP_KEEPIDLE_S 60
/* Bytes written to one aggregator socket per wakeup (fairness). */
#define FWD_WRITE_PER_WAKEUP (4u * 1024u * 1024u)
/*
 * SIGTERM (dockerd SIGKILLs at 10 s): every bound below counts from the signal.
 * FIFOs are drained until FWD_SHUTDOWN_DRAIN_MS (a FIFO still being written is
 * left for the next start: its state stays), buffered records are sent until
 * FWD_SHUTDOWN_FLUSH_MS, then connections get FWD_SHUTDOWN_CLOSE_MS to close
 * gracefully (closer.c), and everything ends by FWD_SHUTDOWN_MS.
 */
#define FWD_SHUTDOWN_DRAIN_MS 3000u
#define FWD_SHUTDOWN_FLUSH_MS 8000u
#define FWD_SHUTDOWN_CLOSE_MS 800u
#define FWD_SHUTDOWN_MS       9000u

#endif
