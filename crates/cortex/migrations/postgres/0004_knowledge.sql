-- Knowledge base: sources, and their chunks with the vector that embeds each one.
-- `vector` (little-endian f32 bytes) is the portable copy read by both backends; `embedding` is
-- the same vector as a pgvector value, searched with the HNSW indexes below.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE knowledge_sources (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    embedding_model  TEXT,
    model_id         TEXT,
    dimension        BIGINT,
    chunk_count      BIGINT NOT NULL DEFAULT 0,
    error            TEXT,
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
    vec_id        BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    content       TEXT NOT NULL,
    heading_path  TEXT NOT NULL,
    page          BIGINT,
    locator       TEXT,
    token_count   BIGINT NOT NULL,
    model_id      TEXT NOT NULL,
    dimension     BIGINT NOT NULL,
    vector        BYTEA NOT NULL,
    -- No typmod: the dimension depends on the model. HNSW needs a fixed dimension, so there is
    -- one partial expression index per common dimension; searches use the same expression.
    embedding     vector NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX knowledge_chunks_source ON knowledge_chunks(company_id, source_id, seq);
CREATE UNIQUE INDEX knowledge_chunks_vec ON knowledge_chunks(company_id, source_id, vec_id);
CREATE INDEX knowledge_chunks_hnsw_384 ON knowledge_chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dimension = 384;
CREATE INDEX knowledge_chunks_hnsw_768 ON knowledge_chunks
    USING hnsw ((embedding::vector(768)) vector_cosine_ops) WHERE dimension = 768;
CREATE INDEX knowledge_chunks_hnsw_1024 ON knowledge_chunks
    USING hnsw ((embedding::vector(1024)) vector_cosine_ops) WHERE dimension = 1024;
CREATE INDEX knowledge_chunks_hnsw_1536 ON knowledge_chunks
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dimension = 1536;
