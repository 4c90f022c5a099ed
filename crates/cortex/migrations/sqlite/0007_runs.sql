-- Agent runs: projects, threads and their messages, runs, run events, files, credits.
-- NULL credits: the company is unmetered. Money is integer micro-USD.
ALTER TABLE companies ADD COLUMN credits_microusd BIGINT;
ALTER TABLE usage_events ADD COLUMN cost_microusd BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_events ADD COLUMN source TEXT NOT NULL DEFAULT 'chat';

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    sandbox_id  TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX projects_company ON projects(company_id, created_at);

CREATE TABLE threads (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX threads_company ON threads(company_id, created_at);
CREATE INDEX threads_project ON threads(project_id);

CREATE TABLE thread_messages (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL,
    thread_id   TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    run_id      TEXT,
    kind        TEXT NOT NULL,
    content     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX thread_messages_thread ON thread_messages(thread_id, created_at, id);

CREATE TABLE agent_runs (
    id                TEXT PRIMARY KEY,
    company_id        TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    thread_id         TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    project_id        TEXT NOT NULL,
    agent_id          TEXT,
    status            TEXT NOT NULL,
    model_name        TEXT,
    mode              TEXT,
    memory_enabled    BIGINT,
    error             TEXT,
    error_code        TEXT,
    node_id           TEXT NOT NULL,
    lease_until       TEXT NOT NULL,
    stop_requested    BIGINT NOT NULL DEFAULT 0,
    input_tokens      BIGINT NOT NULL DEFAULT 0,
    output_tokens     BIGINT NOT NULL DEFAULT 0,
    cost_microusd     BIGINT NOT NULL DEFAULT 0,
    started_at        TEXT NOT NULL,
    completed_at      TEXT
);
-- One running run per thread: a second start conflicts on this index.
CREATE UNIQUE INDEX agent_runs_one_running ON agent_runs(thread_id) WHERE status = 'running';
CREATE INDEX agent_runs_company_status ON agent_runs(company_id, status);
CREATE INDEX agent_runs_thread ON agent_runs(thread_id, started_at);
CREATE INDEX agent_runs_lease ON agent_runs(status, lease_until);

CREATE TABLE run_events (
    run_id      TEXT NOT NULL REFERENCES agent_runs(id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    company_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX run_events_created ON run_events(created_at);

CREATE TABLE project_files (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    run_id      TEXT,
    name        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    content     BLOB NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX project_files_project ON project_files(project_id, created_at);
