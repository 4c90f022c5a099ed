-- Actions: webhooks an agent's model may call as tools (or run after a response).
CREATE TABLE actions (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    -- The whole definition as JSON (URL, method, headers, schemas, auth type, rate limit, trigger).
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX actions_company_name ON actions(company_id, name);
