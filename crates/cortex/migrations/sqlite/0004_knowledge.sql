-- Knowledge base: sources, and their chunks with the vector that embeds each one.
-- The vector is stored as little-endian f32 bytes so that the embedded index (a file under the
-- data dir) can always be rebuilt from these rows.
CREATE TABLE knowledge_sources (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    -- The configured name that embedded the chunks, the embedder's model id and dimension.
    embedding_model  TEXT,
    model_id         TEXT,
    dimension        BIGINT,
    chunk_count      BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
    -- What was ingested last: a file name, a URL, or the agent whose documents these are.
    origin           TEXT,
    agent_id         TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX knowledge_sources_company ON knowledge_sources(company_id, created_at);
CREATE INDEX knowledge_sources_agent ON knowledge_sources(company_id, agent_id);

CREATE TABLE knowledge_chunks (
    id            TEXT PRIMARY KEY,
    company_id    TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    source_id     TEXT NOT NULL REFERENCES knowledge_sources(id) ON DELETE CASCADE,
    -- The chunk's id in vector indexes (u64 there, non-negative BIGINT here).
    vec_id        BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    content       TEXT NOT NULL,
    heading_path  TEXT NOT NULL,
    page          BIGINT,
    locator       TEXT,
    token_count   BIGINT NOT NULL,
    model_id      TEXT NOT NULL,
    dimension     BIGINT NOT NULL,
    vector        BLOB NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX knowledge_chunks_source ON knowledge_chunks(company_id, source_id, seq);
CREATE UNIQUE INDEX knowledge_chunks_vec ON knowledge_chunks(company_id, source_id, vec_id);
