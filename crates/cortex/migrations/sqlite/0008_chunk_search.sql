-- Keyword search over chunks through SQLite's full-text index (FTS5, BM25 ranking) instead of
-- LIKE over every row. External content: the index holds only the terms; rows are read from
-- knowledge_chunks by rowid. Triggers keep it in step with every insert, delete (also the
-- cascades of a source or company delete) and update. unicode61 splits `SKU-1234` into `sku`,
-- `1234`; a code is searched as that phrase. Cortex never runs VACUUM (which may renumber the
-- rowids of a table without an INTEGER PRIMARY KEY); after one, rebuild:
--   INSERT INTO knowledge_chunks_fts(knowledge_chunks_fts) VALUES ('rebuild');
CREATE VIRTUAL TABLE knowledge_chunks_fts USING fts5(
    content,
    content = 'knowledge_chunks',
    content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER knowledge_chunks_fts_insert AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (rowid, content) VALUES (new.rowid, new.content);
END;

CREATE TRIGGER knowledge_chunks_fts_delete AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, content)
    VALUES ('delete', old.rowid, old.content);
END;

CREATE TRIGGER knowledge_chunks_fts_update AFTER UPDATE OF content ON knowledge_chunks BEGIN
    INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts, rowid, content)
    VALUES ('delete', old.rowid, old.content);
    INSERT INTO knowledge_chunks_fts (rowid, content) VALUES (new.rowid, new.content);
END;

INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts) VALUES ('rebuild');
