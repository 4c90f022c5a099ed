-- The answer cache by meaning: each entry keeps the embedding of its question, made by the
-- server's default embedding model (`model_id`; entries of another model are never compared),
-- under `vec_id` in the agent's in-memory index. `last_used_at` orders the least recently used
-- for the per-agent bound; `expires_at` is swept in the background.
ALTER TABLE cache_entries ADD COLUMN vec_id BIGINT;
ALTER TABLE cache_entries ADD COLUMN model_id TEXT;
ALTER TABLE cache_entries ADD COLUMN dimension BIGINT;
ALTER TABLE cache_entries ADD COLUMN vector BLOB;
ALTER TABLE cache_entries ADD COLUMN last_used_at TEXT;
UPDATE cache_entries SET last_used_at = created_at;
CREATE INDEX cache_entries_expiry ON cache_entries(expires_at);
CREATE INDEX cache_entries_lru ON cache_entries(company_id, agent_id, last_used_at);
CREATE INDEX cache_entries_vec ON cache_entries(company_id, agent_id, vec_id);
