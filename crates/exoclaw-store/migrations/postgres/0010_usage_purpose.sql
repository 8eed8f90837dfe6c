-- exoclaw store, schema version 10 (PostgreSQL): what each metered model call was for.
--
-- Memory's own model calls (archival summaries, fact extraction) are metered like a turn's and
-- recorded in the same ledger, marked 'summary' or 'facts'; an answer (a turn's call, a /v1
-- request) leaves it NULL, as every record before this version does.

ALTER TABLE usage ADD COLUMN purpose TEXT;
