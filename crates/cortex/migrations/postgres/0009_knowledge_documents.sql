-- A source holds many documents (files, pages, an agent's inline documents): each ingestion adds
-- one, and ingesting the same name again replaces only that document's chunks. The source row
-- keeps the aggregates (status, chunk and document counts, last error), rewritten in every
-- transaction that changes one of its documents.
CREATE TABLE knowledge_documents (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    source_id    TEXT NOT NULL REFERENCES knowledge_sources(id) ON DELETE CASCADE,
    -- The file name, the page's URL, or `inline documents and FAQs`: the replacement key.
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    chunk_count  BIGINT NOT NULL DEFAULT 0,
    -- The size of the document as received; NULL for documents ingested before this table.
    bytes        BIGINT,
    error        TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX knowledge_documents_name ON knowledge_documents(company_id, source_id, name);
CREATE INDEX knowledge_documents_source ON knowledge_documents(company_id, source_id, created_at);

ALTER TABLE knowledge_chunks ADD COLUMN document_id TEXT;
CREATE INDEX knowledge_chunks_document ON knowledge_chunks(company_id, document_id);
ALTER TABLE knowledge_sources ADD COLUMN document_count BIGINT NOT NULL DEFAULT 0;

-- Every source ingested before becomes a source with one document, under the source's own id
-- and the name a new ingestion of the same content would give it (so it replaces it).
INSERT INTO knowledge_documents
    (id, company_id, source_id, name, kind, status, chunk_count, bytes, error, created_at, updated_at)
SELECT id, company_id, id,
       CASE WHEN kind = 'documents' THEN 'inline documents and FAQs' ELSE COALESCE(origin, name) END,
       kind, status, chunk_count, NULL, error, created_at, updated_at
FROM knowledge_sources WHERE status <> 'pending' OR chunk_count > 0;
UPDATE knowledge_chunks SET document_id = source_id;
UPDATE knowledge_sources SET document_count = 1 WHERE status <> 'pending' OR chunk_count > 0;
