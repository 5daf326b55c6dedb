-- Calls as stints (issue: calls as the field counts them). A call that visits several queues (a
-- transfer, an overflow after a timeout) keeps one record with one entry per queue stint: the queue,
-- when the call entered it, its wait there and how the stint ended (answered, caller_hangup, timeout,
-- callback, ...; empty while waiting).
ALTER TABLE call_records ADD COLUMN IF NOT EXISTS stint_queue_ids Array(String);
ALTER TABLE call_records ADD COLUMN IF NOT EXISTS stint_entered_ms Array(Int64);
ALTER TABLE call_records ADD COLUMN IF NOT EXISTS stint_wait_ms Array(UInt32);
ALTER TABLE call_records ADD COLUMN IF NOT EXISTS stint_outcomes Array(String);
-- Amazon Connect's transferred in, callbacks queued (an inbound contact that left its queue for a
-- callback: not abandoned) and callback contacts handled.
ALTER TABLE kpi_windows ADD COLUMN IF NOT EXISTS transferred_in UInt32 DEFAULT 0;
ALTER TABLE kpi_windows ADD COLUMN IF NOT EXISTS callbacks_queued UInt32 DEFAULT 0;
ALTER TABLE kpi_windows ADD COLUMN IF NOT EXISTS callbacks_handled UInt32 DEFAULT 0;
