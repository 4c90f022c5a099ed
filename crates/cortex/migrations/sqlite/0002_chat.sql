-- The chat pipeline: agents, conversation turns, usage metering, customer memory, answer cache.
CREATE TABLE agents (
    id                    TEXT PRIMARY KEY,
    company_id            TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    -- The whole configuration as JSON (personality, dialect, prompt, FAQs, scenarios, links, settings).
    config                TEXT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
CREATE INDEX agents_company ON agents(company_id, created_at);

CREATE TABLE conversation_messages (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    agent_id         TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    customer_id      TEXT NOT NULL,
    role             TEXT NOT NULL,
    content          TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX conversation_messages_conv ON conversation_messages(company_id, conversation_id, created_at);

CREATE TABLE usage_events (
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    agent_id         TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    model_used       TEXT NOT NULL,
    model            TEXT NOT NULL,
    input_tokens     BIGINT NOT NULL,
    output_tokens    BIGINT NOT NULL,
    cost_usd         DOUBLE PRECISION NOT NULL,
    cached           BIGINT NOT NULL,
    tool_rounds      BIGINT NOT NULL,
    latency_ms       BIGINT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX usage_events_company ON usage_events(company_id, created_at);

CREATE TABLE memory_facts (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    customer_id  TEXT NOT NULL,
    agent_id     TEXT,
    fact         TEXT NOT NULL,
    category     TEXT NOT NULL,
    confidence   DOUBLE PRECISION NOT NULL,
    source       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX memory_facts_customer ON memory_facts(company_id, customer_id, created_at);

CREATE TABLE cache_entries (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    agent_id     TEXT NOT NULL,
    question     TEXT NOT NULL,
    normalized   TEXT NOT NULL,
    answer       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX cache_entries_agent ON cache_entries(company_id, agent_id, normalized);
