-- A customer's kits are read by (tenant, entity_id) in kit order (the entity view, twice
-- per registration). With only (tenant, entity_id) indexed, SQLite's planner took the
-- (tenant, kit_no) primary key to avoid sorting and scanned every kit of the tenant: about
-- 680 µs at 3000 kits (`bench enroll`), growing with the bank's card count. With kit_no in
-- the index the lookup and the order come from one index.
DROP INDEX idx_kit_entity;
CREATE INDEX idx_kit_entity ON kit (tenant, entity_id, kit_no);
