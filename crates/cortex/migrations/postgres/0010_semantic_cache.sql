-- The answer cache by meaning: each entry keeps the embedding of its question, made by the
-- server's default embedding model (`model_id`; entries of another model are never compared),
-- as bytes (`vector`) and as a pgvector value searched through the HNSW indexes below, which
-- every node shares. `last_used_at` orders the least recently used for the per-agent bound;
-- `expires_at` is swept in the background.
ALTER TABLE cache_entries ADD COLUMN vec_id BIGINT;
ALTER TABLE cache_entries ADD COLUMN model_id TEXT;
ALTER TABLE cache_entries ADD COLUMN dimension BIGINT;
ALTER TABLE cache_entries ADD COLUMN vector BYTEA;
ALTER TABLE cache_entries ADD COLUMN embedding vector;
ALTER TABLE cache_entries ADD COLUMN last_used_at TEXT;
UPDATE cache_entries SET last_used_at = created_at;
CREATE INDEX cache_entries_expiry ON cache_entries(expires_at);
CREATE INDEX cache_entries_lru ON cache_entries(company_id, agent_id, last_used_at);
CREATE INDEX cache_entries_vec ON cache_entries(company_id, agent_id, vec_id);
CREATE INDEX cache_entries_hnsw_384 ON cache_entries
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimension = 384;
CREATE INDEX cache_entries_hnsw_768 ON cache_entries
    USING hnsw ((embedding::vector(768)) vector_cosine_ops) WHERE dimension = 768;
CREATE INDEX cache_entries_hnsw_1024 ON cache_entries
    USING hnsw ((embedding::vector(1024)) vector_cosine_ops) WHERE dimension = 1024;
CREATE INDEX cache_entries_hnsw_1536 ON cache_entries
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dimension = 1536;
