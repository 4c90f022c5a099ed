-- Memory by meaning: each fact keeps the embedding of its text, made by the server's default
-- embedding model (model_id); recall compares it with the message's embedding of the same
-- model, and falls back to words for facts of another model or none.
ALTER TABLE memory_facts ADD COLUMN model_id TEXT;
ALTER TABLE memory_facts ADD COLUMN vector BYTEA;
