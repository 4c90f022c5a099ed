-- Connections: named credentials that actions use. The credentials are sealed (AES-256-GCM,
-- bound to the row's id) and never returned; `public` holds the non-secret parts for display.
CREATE TABLE connections (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    auth_type   TEXT NOT NULL,
    public      TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX connections_company_name ON connections(company_id, name);
