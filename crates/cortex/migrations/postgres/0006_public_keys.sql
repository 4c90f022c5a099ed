-- Public widget keys (pk_…): bound to one agent and a list of allowed origins. They are public
-- by design (embedded in web pages), so the key itself is stored and shown.
CREATE TABLE public_keys (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    agent_id         TEXT NOT NULL,
    name             TEXT NOT NULL,
    key              TEXT NOT NULL UNIQUE,
    allowed_origins  TEXT NOT NULL,
    revoked_at       TEXT,
    created_at       TEXT NOT NULL
);
CREATE INDEX public_keys_company ON public_keys(company_id, created_at);
