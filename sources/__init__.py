"""Sources: adapters that turn ACD and call-log exports into canonical events, and the traffic simulator."""

from . import amazon_connect, anonymous_bank, asterisk

# format name → reader(lines, file name, site id, caller hasher) → Iterator[Converted]
FORMATS = {
    "asterisk-queue-log": asterisk.read_pipe,
    "asterisk-queue-log-table": asterisk.read_table,
    "asterisk-queue-log-realtime": asterisk.read_realtime,
    "amazon-connect-ctr": amazon_connect.read_ctr,
    "amazon-connect-agent-events": amazon_connect.read_agent_events,
    "anonymous-bank": anonymous_bank.read,
}

# Exports of finished calls (a row or record per call, not in event-time order) are sorted by event
# time before processing, as a live feed would deliver them; the logs above stream as they are.
BATCH_FORMATS = {"amazon-connect-ctr", "anonymous-bank"}

# Formats whose times are the source's local clock: read in the site's time zone (`ingest --timezone`).
LOCAL_TIME_FORMATS = {"asterisk-queue-log-realtime"}

# Formats whose lines open with an epoch and a "|" (queue_log): an unreadable line keeps it in clear when it
# can be one (``CallerHasher.scrub``); in every other format a line's opening number is scrubbed too.
EPOCH_LINE_FORMATS = {"asterisk-queue-log"}
