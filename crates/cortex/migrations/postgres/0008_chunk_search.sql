-- Keyword search over chunks through a GIN full-text index instead of LIKE over every row.
-- The `simple` configuration: no stemming, no stop words, every language alike. Its parser
-- keeps `SKU-1234` whole and also as `sku`, `1234`, so a code is found as a phrase.
ALTER TABLE knowledge_chunks
    ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED;
CREATE INDEX knowledge_chunks_tsv ON knowledge_chunks USING GIN (content_tsv);
