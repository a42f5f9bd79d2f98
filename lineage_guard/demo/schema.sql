-- lineage_guard demo schema: FAKE data only (see lineage_guard/demo/data.py).
-- The demo writes only into its own schema, lineage_guard_demo, which it creates with a marker
-- comment and refuses to touch when the schema exists without it (lineage_guard.demo.data.seed).
-- Names are unqualified: the seed creates them in lineage_guard_demo, and a plan puts them in the
-- policy's search_path (the demo policy's is lineage_guard_demo; examples/policy.yaml's is public).
-- Plan queries offline with: lineage-guard plan --schema-file lineage_guard/demo/schema.sql ...
-- Keys are added after the bulk load (lineage_guard.demo.data.KEYS_SQL).
CREATE TABLE customers (
    id          integer,
    full_name   text,
    email       text,
    phone       text,
    ssn         text,
    birth_date  date,
    zip         text,
    plan        text,
    created_at  timestamptz
);

CREATE TABLE orders (
    id           integer,
    customer_id  integer,
    amount       numeric(10, 2),
    card_number  text,
    created_at   timestamptz
);

CREATE TABLE patients (
    id           integer,
    mrn          text,
    full_name    text,
    email        text,
    phone        text,
    birth_date   date,
    zip          text,
    diagnosis    text,
    notes        text,
    admitted_at  timestamptz
);
