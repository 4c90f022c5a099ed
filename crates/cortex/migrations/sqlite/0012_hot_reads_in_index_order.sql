-- Two reads of every chat come from their index in the order they ask for, instead of
-- through a sort:
-- * stage 02 reads a customer's newest facts (`ORDER BY created_at DESC, id DESC LIMIT 200`):
--   an index ending at created_at left the tie to a sort of every fact of the customer, vector
--   blobs included, before the limit;
-- * the cache's exact path reads the newest entry of one normalised question
--   (`ORDER BY created_at DESC LIMIT 1`), sorted with its answer and vector.
DROP INDEX memory_facts_customer;
CREATE INDEX memory_facts_customer ON memory_facts(company_id, customer_id, created_at, id);
DROP INDEX cache_entries_agent;
CREATE INDEX cache_entries_agent ON cache_entries(company_id, agent_id, normalized, created_at);
