"""Red-team cases: attacks of the corpus categories the other corpus tests did not spell, judged alike.

One line per case: `expect masked-positions category sql` (positions comma-separated, `-` for none).
Controls must be allowed clear; `mask` cases allowed with at least those positions masked (deny is
over-strict, not failure); `deny` cases denied. `test_leak_is_real` runs each former leak on the real
corpus database to show what it returned before the guard closed it.
"""

from __future__ import annotations

import pytest
from conftest import require
from test_corpus import ME, TALLY, judge, live, offline, policy  # noqa: F401 (fixtures)

from lineage_guard.planner import plan

CASES = r"""
deny - inference SELECT id FROM customers c WHERE (SELECT c.ssn = '975-45-1106')
deny - inference SELECT id FROM customers c WHERE (SELECT c.ssn > '975')
deny - inference SELECT id FROM customers c WHERE (SELECT c.ssn LIKE '9%')
deny - inference SELECT count(*) FROM customers c WHERE (SELECT c.ssn = '975-45-1106')
deny - inference SELECT id FROM customers c WHERE coalesce((SELECT c.ssn = '975-45-1106'), false)
deny - inference SELECT c.id, o.id AS len FROM customers c JOIN orders o ON o.id = length(c.email)
deny - inference SELECT c.id FROM customers c JOIN orders o ON o.id = ascii(c.ssn)
deny - inference SELECT c.id, o.id FROM customers c JOIN orders o ON o.amount::int = ascii(c.ssn)
deny - inference SELECT c.id, o.customer_id FROM customers c JOIN orders o ON c.zip::int - 99900 = o.customer_id
deny - inference SELECT c.id, o.id FROM customers c JOIN orders o ON substr(c.ssn, 1, 1) = substr(o.id::text, 1, 1)
deny - inference SELECT id FROM customers WHERE length(ssn) = id
deny - inference SELECT id FROM customers WHERE ascii(ssn) = id + 50
deny - inference SELECT id FROM customers WHERE ssn < plan
deny - inference SELECT id FROM customers WHERE ssn > id::text
deny - inference SELECT id FROM customers WHERE birth_date < created_at
deny - inference SELECT id FROM customers WHERE starts_with(email, plan)
deny - inference SELECT c.id FROM customers c WHERE c.ssn = (SELECT min(o.card_number) FROM orders o)
deny - inference SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.id = length(c.email))
deny - inference SELECT max(id) FROM customers WHERE ssn BETWEEN '975-45-1105' AND '975-45-1107'
deny - inference SELECT max(id), count(*) FROM customers WHERE ssn > '975-45-1105' AND ssn < '975-45-1107'
deny - inference SELECT string_agg(id::text, ',') FROM customers WHERE ssn LIKE '97%'
deny - inference SELECT sum(id) FROM customers WHERE ssn LIKE '975%'
deny - inference SELECT array_agg(id) FROM customers WHERE birth_date > '1999-01-01'
deny - inference SELECT max(x) FROM (SELECT id AS x FROM customers WHERE ssn LIKE '975%') s
deny - inference SELECT min(customer_id) FROM orders WHERE card_number LIKE '0000-79%'
deny - inference SELECT (SELECT max(id) FROM customers WHERE ssn LIKE '975%')
deny - inference SELECT count(*) FROM customers WHERE ssn LIKE '97%'
allow - control SELECT plan, count(*) FROM customers WHERE birth_date > '1999-01-01' GROUP BY plan
deny - inference SELECT max(o.amount) FROM orders o WHERE o.card_number LIKE '0000-79%'
deny - inference SELECT count(DISTINCT id) FROM customers WHERE zip LIKE '999%'
allow - control SELECT plan, array_agg(DISTINCT id) FROM customers GROUP BY plan
allow - control SELECT max(id) FROM customers
allow - control SELECT c1.id AS a, c2.id AS b FROM customers c1 JOIN customers c2 ON c1.zip = c2.zip AND c1.id < c2.id
allow - control SELECT o.id, c.plan FROM orders o JOIN customers c ON c.id = o.customer_id AND o.amount > 10
allow - control SELECT id FROM customers WHERE created_at < now() AND plan = 'pro'
allow - control SELECT c.id FROM customers c WHERE (SELECT c.plan = 'pro')
deny - catalog_leak SELECT 'customers'::regclass::oid
allow - control SELECT id FROM customers WHERE plan = $$x' OR ssn = '975-45-1106$$
allow - control SELECT id FROM customers WHERE plan = 'x'' OR ssn = ''975-45-1106'
allow - control SELECT id FROM customers WHERE plan = 'x' -- ' OR ssn = '975-45-1106
allow - control SELECT 1 /* nested /* comment */ still */ AS x
mask 1 function_transform SELECT id, overlay('xxxxxxxxxxx' placing ssn from 1) FROM customers
mask 1 function_transform SELECT id, translate('0123456789', ssn, 'abcdefghij') FROM customers
mask 1 function_transform SELECT id, encode(convert_to(ssn, 'UTF8'), 'base64') FROM customers
mask 1 function_transform SELECT id, format('%I', email) FROM customers
mask 1 function_transform SELECT id, format('%1$s', email) FROM customers
mask 1 function_transform SELECT id, concat_ws(ssn, 'a', 'b') FROM customers
mask 1 function_transform SELECT id, lpad('', ascii(ssn), '*') FROM customers
mask 1 function_transform SELECT id, rpad('a', 3, ssn) FROM customers
mask 1 function_transform SELECT id, array_length(array_fill(1, ARRAY[ascii(ssn)]), 1) FROM customers
mask 1 function_transform SELECT id, cardinality(string_to_array(ssn, NULL)) FROM customers
mask 1 function_transform SELECT id, (SELECT count(*) FROM regexp_matches(ssn, '9', 'g')) FROM customers
mask 1 function_transform SELECT id, (SELECT string_agg(x, '') FROM regexp_split_to_table(ssn, '') x) FROM customers
mask 1 function_transform SELECT id, (SELECT array_agg(g) FROM generate_series(1, ascii(ssn)) g) FROM customers
mask 1 function_transform SELECT id, replace('abc', 'b', ssn) FROM customers
mask 1 function_transform SELECT id, regexp_replace(ssn, '(.)(.*)', '\1') FROM customers
mask 1,2,3 function_transform SELECT id, quote_literal(ssn), quote_ident(ssn), quote_nullable(ssn) FROM customers
mask 1 function_transform SELECT id, to_hex(ascii(ssn)) FROM customers
mask 1 function_transform SELECT id, width_bucket(ascii(ssn), 0, 255, 255) FROM customers
mask 1 function_transform SELECT id, unistr(ssn) FROM customers
mask 1 function_transform SELECT id, normalize(full_name) FROM customers
mask 1 function_transform SELECT id, ssn collate "C" FROM customers
mask 1 function_transform SELECT id, pg_typeof(ssn) FROM customers
mask 1 function_transform SELECT c.id, array_position(ARRAY['975-45-1106'], c.ssn) FROM customers c
mask 1 case_probe SELECT c.id, CASE c.ssn WHEN '975-45-1106' THEN 1 END FROM customers c
mask 1 case_probe SELECT c.id, c.ssn < '5' FROM customers c
mask 1 case_probe SELECT c.id, s FROM customers c, LATERAL (SELECT substr(c.ssn, 1, 1) = '9' s) l
mask 1 case_probe SELECT c.id, (SELECT max(g) FROM generate_series(1, 100) g WHERE g < ascii(c.ssn)) FROM customers c
mask 1 case_probe SELECT c.id, (SELECT count(*) FROM customers c2 WHERE c2.ssn < c.ssn) FROM customers c
mask 0 aggregate SELECT sum(CASE WHEN ssn = '975-45-1106' THEN 1 ELSE 0 END) FROM customers
mask 0 aggregate SELECT count(nullif(ssn, '975-45-1106')) FROM customers
mask 1 aggregate SELECT id, sum(CASE WHEN ssn = '975-45-1106' THEN 1 ELSE 0 END) OVER () FROM customers
mask 0 aggregate SELECT min(id) FILTER (WHERE ssn < '5') FROM customers
mask 0 aggregate SELECT array_agg(id ORDER BY ssn) FROM customers
mask 0 aggregate SELECT string_agg(id::text, ',' ORDER BY ssn) FROM customers
mask 0 aggregate SELECT json_agg(id ORDER BY birth_date) FROM customers
mask 0 aggregate SELECT mode() WITHIN GROUP (ORDER BY zip) FROM customers
mask 0 aggregate SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ssn) FROM customers
mask 0 aggregate SELECT (array_agg(id ORDER BY ssn))[1] FROM customers
mask 1 aggregate SELECT id, string_agg(ssn, ',') OVER (PARTITION BY id) FROM customers
mask 0 aggregate SELECT first_value(id) OVER (ORDER BY ssn) FROM customers
mask 1 aggregate SELECT id, lag(id) OVER (PARTITION BY zip) FROM customers
mask 1 aggregate SELECT id, count(*) OVER (PARTITION BY ssn < '5') FROM customers
mask 1 json_unpivot SELECT id, xmlconcat(xmlelement(name a, ssn)) FROM customers
mask 1 json_unpivot SELECT id, xmlcomment(ssn) FROM customers
mask 1 json_unpivot SELECT id, jsonb_object(ARRAY['a'], ARRAY[ssn]) FROM customers
mask 1 json_unpivot SELECT id, jsonb_set('{}', '{a}', to_jsonb(ssn)) FROM customers
mask 1 json_unpivot SELECT id, jsonb_insert('[]', '{0}', to_jsonb(email)) FROM customers
mask 1 json_unpivot SELECT id, '{}'::jsonb || jsonb_build_object('s', ssn) FROM customers
mask 1 json_unpivot SELECT id, jsonb_build_object('s', ssn) -> 's' FROM customers
mask 1 json_unpivot SELECT id, jsonb_build_object('s', ssn) #>> '{s}' FROM customers
mask 1 json_unpivot SELECT id, (jsonb_build_object('s', ssn))['s'] FROM customers
mask 1 json_unpivot SELECT id, jsonb_pretty(to_jsonb(c)) FROM customers c
mask 1 json_unpivot SELECT id, to_jsonb(ROW(c.*)) FROM customers c
mask 1 json_unpivot SELECT id, jsonb_agg(c.*) OVER () FROM customers c
mask 1 json_unpivot SELECT id, (ROW(ssn, 1)).f1 FROM customers
mask 1 json_unpivot SELECT id, ARRAY[ssn, email]::text FROM customers
mask 1 json_unpivot SELECT id, array_to_json(ARRAY[ssn]) FROM customers
mask 1 json_unpivot SELECT id, array_replace(ARRAY['a'], 'a', ssn) FROM customers
mask 1 json_unpivot SELECT id, (string_to_array(ssn, '-'))[1] FROM customers
mask 1 cast SELECT id, ssn::bpchar FROM customers
mask 1 cast SELECT id, ssn::name FROM customers
mask 1 cast SELECT id, ssn::char(3) FROM customers
mask 1 cast SELECT id, ssn::"char" FROM customers
mask 1 cast SELECT id, ssn::bytea FROM customers
mask 1 cast SELECT id, to_char(birth_date, 'J') FROM customers
mask 1 cast SELECT id, birth_date - '2000-01-01' FROM customers
mask 1 cast SELECT id, EXTRACT(epoch FROM birth_date) FROM customers
deny - error_channel SELECT id, ssn::tsvector FROM customers
deny - error_channel SELECT id, ssn::json FROM customers
deny - error_channel SELECT id, ssn::xml FROM customers
mask 1 lateral SELECT c.id, x FROM customers c, LATERAL (VALUES (c.ssn)) v(x)
mask 1 lateral SELECT c.id, v.column1 FROM customers c, LATERAL (VALUES (c.ssn)) v
mask 0,1 lateral SELECT v.* FROM customers c, LATERAL (VALUES (c.ssn, c.email)) v
mask 1 lateral SELECT id, (SELECT x FROM (SELECT ssn) AS t(x)) FROM customers
mask 1,2,3,4,5,6 star_expansion SELECT * FROM (SELECT 1 AS id) a JOIN customers USING (id)
mask 1,2,3,4,5,6 star_expansion SELECT t.* FROM customers AS t(a, b, c)
mask 0 star_expansion SELECT t.c FROM customers AS t(a, b, c)
mask 0 star_expansion SELECT customers FROM customers
mask 1,2,3,4,5,6 star_expansion SELECT (customers).* FROM customers
mask 0 star_expansion SELECT (c.*).ssn FROM customers c
mask 1,2,3,4,5,6 star_expansion SELECT (c).* FROM customers c
mask 0 star_expansion SELECT ((c)).ssn FROM customers c
mask 1,2,3,4,5,6 star_expansion SELECT * FROM ONLY customers
mask 1,2,3,4,5,6 star_expansion SELECT * FROM customers *
mask 0 alias_laundering SELECT ssn FROM customers AS orders
mask 0 alias_laundering SELECT orders.ssn FROM customers AS orders
mask 0 alias_laundering SELECT x.amount FROM (SELECT customer_id, card_number AS amount FROM orders) x
mask 1 set_operation SELECT * FROM (VALUES (1, 'x')) v(id, ssn) UNION SELECT id, ssn FROM customers
mask 1 set_operation SELECT id, ssn FROM customers UNION ALL SELECT 1, 'x' ORDER BY 1 LIMIT 1
mask 0 identifier_tricks SELECT "public"."customers"."ssn" FROM "public"."customers"
mask 0 identifier_tricks SELECT U&"\0073\0073\006e" FROM customers
mask 0 identifier_tricks SELECT u&"\0073sn" FROM customers
mask 1 identifier_tricks SELECT id, "ssn" FROM"customers"
mask 1 multi_statement SELECT id, ssn FROM customers ; ;
deny - identifier_tricks SELECT id, "ѕsn" FROM customers
deny - identifier_tricks SELECT id FROM "сustomers"
deny - identifier_tricks SELECT id, ssn FROM "customers "
deny - identifier_tricks SELECT U&"s!0073n" UESCAPE '!' FROM customers
deny - comment_literal SELECT id FROM customers WHERE plan = E'x\\' OR ssn = '975-45-1106'
deny - comment_literal SELECT id FROM customers WHERE plan = U&'x\0027' OR ssn = '975-45-1106'
deny - catalog_leak SELECT * FROM PG_CATALOG.PG_AUTHID
deny - catalog_leak SELECT * FROM pg_catalog . pg_user
deny - catalog_leak SELECT * FROM pg_catalog.pg_statistic
deny - catalog_leak SELECT * FROM pg_statistic_ext_data
deny - catalog_leak SELECT * FROM pg_stats_ext
deny - catalog_leak SELECT * FROM pg_settings
deny - catalog_leak SELECT * FROM pg_hba_file_rules
deny - catalog_leak SELECT relname FROM pg_class
deny - catalog_leak SELECT * FROM pg_prepared_statements
deny - catalog_leak SELECT * FROM pg_locks
deny - catalog_leak SELECT * FROM pg_user_mappings
deny - catalog_leak SELECT * FROM INFORMATION_SCHEMA.COLUMNS
deny - catalog_leak SELECT * FROM pg_toast.pg_toast_2619
deny - catalog_leak SELECT * FROM pg_show_all_settings()
deny - catalog_leak SELECT pg_get_functiondef('lookup_email'::regproc)
deny - catalog_leak SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef
deny - catalog_leak SELECT pg_relation_filepath('customers')
deny - catalog_leak SELECT has_column_privilege('customers', 'ssn', 'select')
deny - catalog_leak SELECT col_description('customers'::regclass, 1)
deny - catalog_leak SELECT tableoid, ctid, xmin, xmax, cmin, cmax FROM customers
deny - catalog_leak SELECT ctid, id FROM customers
deny - session_state SELECT pg_catalog.current_setting('server_version')
deny - session_state SELECT "current_setting"('search_path')
deny - session_state SELECT CURRENT_SETTING('data_directory')
deny - session_state SELECT "set_config"('x.y', 'z', true)
deny - session_state SELECT Set_Config('x.y', 'z', true)
deny - session_state SELECT set_config('role', 'postgres', false)
deny - session_state SELECT inet_client_addr(), inet_client_port(), inet_server_port()
deny - session_state SELECT txid_current_if_assigned()
deny - session_state SELECT pg_current_xact_id_if_assigned()
deny - side_effect_function SELECT pg_ls_dir('.')
deny - side_effect_function SELECT pg_read_binary_file('/etc/passwd')
deny - side_effect_function SELECT lo_from_bytea(0, 'x')
deny - side_effect_function SELECT lo_get(1)
deny - side_effect_function SELECT lo_unlink(1)
deny - side_effect_function SELECT nextval('customers_id_seq'::regclass)
deny - side_effect_function SELECT lastval()
deny - side_effect_function SELECT pg_try_advisory_lock(1)
deny - side_effect_function SELECT pg_sleep_until(now() + interval '1 s')
deny - side_effect_function SELECT pg_create_restore_point('x')
deny - side_effect_function SELECT pg_logical_emit_message(true, 'x', 'y')
deny - side_effect_function SELECT pg_export_snapshot()
deny - side_effect_function SELECT dblink_exec('x', 'select 1')
deny - side_effect_function SELECT database_to_xml(true, false, '')
deny - side_effect_function SELECT setseed(0.5)
deny - side_effect_function SELECT pg_stat_reset()
deny - side_effect_function SELECT pg_log_backend_memory_contexts(1)
deny - procedural SELECT refresh_reporting()
deny - inference SELECT id FROM customers TABLESAMPLE BERNOULLI ((SELECT ascii(ssn) FROM customers LIMIT 1))
deny - inference SELECT id FROM customers TABLESAMPLE SYSTEM ((SELECT count(*) FROM customers WHERE ssn LIKE '9%'))
deny - inference SELECT c.id FROM customers c, unnest(string_to_array(c.ssn, '9')) u
deny - inference SELECT c.id FROM customers c, unnest(array_remove(ARRAY[c.ssn], '975-45-1106')) u
deny - inference SELECT c.id FROM customers c, LATERAL unnest(CASE WHEN c.ssn LIKE '9%' THEN ARRAY[1] END) g
deny - error_channel SELECT id FROM customers c WINDOW w AS (PARTITION BY ssn::int)
deny - error_channel SELECT id FROM customers c WINDOW w AS (ORDER BY id), w2 AS (PARTITION BY email::date)
deny - side_effect_function SELECT id FROM customers c WINDOW w AS (ORDER BY nextval('customers_id_seq'))
deny - side_effect_function SELECT id FROM customers c WINDOW w AS (PARTITION BY pg_read_file('/etc/hostname')::int)
deny - side_effect_function SELECT id FROM customers TABLESAMPLE BERNOULLI ((SELECT pg_backend_pid() % 100))
deny - side_effect_function SELECT id FROM customers GROUP BY id, pg_sleep(1)
deny - side_effect_function SELECT array_agg(id ORDER BY pg_sleep(1)) FROM customers
deny - side_effect_function SELECT id FROM customers c JOIN orders o ON pg_sleep(1) IS NULL
deny - side_effect_function SELECT id FROM customers OFFSET (SELECT 1 FROM pg_sleep(1))
deny - side_effect_function VALUES (pg_sleep(1))
deny - side_effect_function SELECT id, xmlelement(name x, pg_backend_pid()) FROM customers
deny - side_effect_function SELECT "pg_backend_pid"()
deny - side_effect_function SELECT id FROM customers, ROWS FROM (pg_sleep(0), generate_series(1, 2)) x
deny - side_effect_function SELECT * FROM customers NATURAL JOIN pg_sleep(0)
allow - control SELECT id FROM customers TABLESAMPLE SYSTEM (50)
allow - control SELECT id, count(*) OVER w FROM customers WINDOW w AS (PARTITION BY plan)
allow - control SELECT id FROM customers c WINDOW w AS (ORDER BY created_at)
mask 0 json_unpivot SELECT u FROM customers c, unnest(ARRAY[c.ssn]) u
mask 0 json_unpivot SELECT t.v FROM ROWS FROM (unnest(ARRAY(SELECT ssn FROM customers))) AS t(v)
mask 1 aggregate SELECT id, count(*) OVER w FROM customers WINDOW w AS (PARTITION BY zip)
deny - inference SELECT sum(1) FROM generate_series(1, 100) g WHERE g <= (SELECT length(email) FROM customers ORDER BY id LIMIT 1)
deny - inference WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < (SELECT ascii(ssn) FROM customers LIMIT 1)) SELECT count(*) FROM r
deny - inference SELECT count(*) FROM generate_series(1, 100) g WHERE g < (SELECT ascii(ssn) FROM customers WHERE id = 3)
deny - inference SELECT count(*) FROM orders o WHERE o.id < (SELECT length(email) FROM customers WHERE id = 3)
deny - inference SELECT count(*) FROM generate_series(1, 100) g WHERE EXISTS (SELECT 1 FROM customers WHERE id = 3 AND length(email) > g)
deny - inference SELECT count(*) FROM customers c JOIN generate_series(1, 100) g ON g < length(c.email) WHERE c.id = 3
deny - inference SELECT count(*) FROM customers WHERE id > 2 AND id < 4 AND ssn > '97'
deny - inference SELECT count(*) FROM customers WHERE id >= 3 AND id <= 3 AND ssn > '97'
deny - inference SELECT count(*) FROM orders WHERE customer_id < 4 AND customer_id > 2 AND card_number LIKE '0000-7%'
deny - inference SELECT c.id FROM customers c JOIN customer_export() e ON e.cid = length(e.handle)
deny - inference SELECT cid FROM customer_export() e WHERE (SELECT e.handle = '975-45-1106')
deny - inference SELECT id FROM customers WHERE lookup_email(id) LIKE 'stub%'
deny - inference SELECT id FROM v_customer_secure WHERE tax_ref = '975-45-1106'
deny - inference SELECT plan FROM mv_zip_plan ORDER BY zip
deny - inference SELECT count(*) FROM customers WHERE birth_date < '1960-01-01' AND created_at > '2024-01-01'
allow - control SELECT count(*) FROM orders WHERE customer_id < 4 AND amount > 10
allow - control SELECT sum(1) FROM generate_series(1, 100) g WHERE g <= (SELECT count(*) FROM orders)
allow - control SELECT g, count(*) FROM customers c JOIN generate_series(1, 100) g ON g < c.id GROUP BY g
mask 0 opaque_object SELECT b FROM customer_export() AS e(a, b)
mask 0,1 opaque_object SELECT * FROM public.customer_export() WITH ORDINALITY
mask 0 opaque_object SELECT Lookup_Email(1)
mask 0 opaque_object SELECT customer_export()
mask 0 identifier_tricks SELECT c.phone FROM otherdb.public.customers c
deny - inference SELECT id, dense_rank() OVER (ORDER BY ssn DESC) FROM customers
deny - inference SELECT id, row_number() OVER w FROM customers WINDOW w AS (ORDER BY birth_date)
deny - inference SELECT id FROM (SELECT id, rank() OVER (ORDER BY birth_date) FROM customers) s
deny - inference SELECT id, lag(id) OVER (ORDER BY ssn) FROM customers
deny - inference SELECT id, x FROM customers c, LATERAL (SELECT rank() OVER (ORDER BY c.zip)) l(x)
allow - control SELECT id, rank() OVER (ORDER BY created_at) FROM customers
mask 1 window SELECT id, rank() OVER (ORDER BY birth_date) AS r FROM customers ORDER BY id
mask 1 window SELECT id, percent_rank() OVER (ORDER BY zip) FROM customers ORDER BY created_at, id
mask 1 window SELECT id, count(*) OVER (PARTITION BY zip) FROM customers
deny - inference SELECT count(*) FROM (SELECT rank() OVER (ORDER BY ssn) FROM customers) s
deny - error_channel SELECT r.* FROM customers c, jsonb_populate_record(null::customers, jsonb_build_object('birth_date', c.ssn)) r
deny - error_channel SELECT (jsonb_populate_record(null::customers, jsonb_build_object('birth_date', c.ssn))).id FROM customers c
deny - error_channel SELECT r.birth_date FROM (SELECT ssn AS birth_date FROM customers) x, jsonb_populate_record(null::customers, to_jsonb(x)) r
deny - error_channel SELECT r.a FROM customers c, jsonb_to_record(jsonb_build_object('a', c.ssn)) AS r(a int)
deny - error_channel SELECT r.a FROM customers c, json_to_recordset(json_build_array(json_build_object('a', c.email))) AS r(a date)
deny - error_channel SELECT id, jsonb_path_query(jsonb_build_object('a', ssn), '$.a.datetime()') FROM customers
deny - error_channel SELECT id, jsonb_path_query(jsonb_build_object('a', ssn), '$.a.double()') FROM customers
deny - error_channel SELECT id, jsonb_path_exists(to_jsonb(c), '$.birth_date.datetime("YYYY")') FROM customers c
deny - error_channel SELECT id, jsonb_path_query(to_jsonb(c), plan::jsonpath) FROM customers c
deny - error_channel SELECT id, substr('x', 1, ascii(ssn) - 58) FROM customers WHERE id = 3
deny - error_channel SELECT id, split_part('a', 'b', ascii(ssn) - 57) FROM customers
deny - error_channel SELECT id, sqrt(ascii(ssn) - 58) FROM customers
deny - error_channel SELECT id, ln(ascii(ssn) - 57) FROM customers
deny - error_channel SELECT id, log(ascii(ssn) - 57) FROM customers
deny - error_channel SELECT id, power(ascii(ssn) - 57, -1) FROM customers
deny - error_channel SELECT id, generate_series(1, 2, ascii(ssn) - 57) FROM customers
deny - error_channel SELECT id, array_fill(1, ARRAY[ascii(ssn) - 58]) FROM customers
mask 0 json_unpivot SELECT r.ssn FROM customers c, jsonb_populate_record(null::customers, to_jsonb(c)) r
mask 0 json_unpivot SELECT jsonb_populate_record(null::customers, to_jsonb(c)) FROM customers c
mask 0 json_unpivot SELECT r.* FROM customers c, jsonb_to_record(to_jsonb(c)) AS r(ssn text)
mask 0 json_unpivot SELECT r.a FROM customers c, jsonb_to_recordset(jsonb_build_array(jsonb_build_object('a', c.ssn))) AS r(a text)
mask 1 json_unpivot SELECT id, jsonb_path_query(to_jsonb(c), '$.ssn') FROM customers c
mask 1 function_transform SELECT id, substr(ssn, 1, 3) FROM customers
mask 1 function_transform SELECT id, split_part(email, '@', 2) FROM customers
allow - control SELECT id, sqrt(amount) FROM orders
allow - control SELECT r.a FROM orders o, jsonb_to_record(jsonb_build_object('a', o.amount)) AS r(a numeric)
deny - group_by SELECT array_agg(id) FROM customers GROUP BY ssn LIKE '97%'
deny - group_by SELECT string_agg(id::text, ',') FROM customers GROUP BY left(ssn, 2)
deny - group_by SELECT ssn LIKE '97%' AS t, array_agg(id) FROM customers GROUP BY 1
deny - group_by SELECT max(customer_id) FROM orders GROUP BY card_number > '0000-5'
deny - inference SELECT count(*) FROM customers GROUP BY ssn LIKE '97%'
allow - control SELECT plan, array_agg(id) FROM customers GROUP BY plan, created_at > '2024-01-01'
mask 0 group_by SELECT ssn LIKE '97%', count(*) FROM customers GROUP BY 1
mask 0 group_by SELECT left(zip, 3), count(*) FROM customers GROUP BY left(zip, 3)
mask 1 group_by SELECT plan, count(*) FILTER (WHERE ssn LIKE '97%') FROM customers GROUP BY plan
mask 1 group_by SELECT plan, bool_or(ssn LIKE '97%') FROM customers GROUP BY plan
deny - set_operation SELECT 3 INTERSECT SELECT id FROM customers WHERE ssn LIKE '97%'
deny - set_operation SELECT 3 EXCEPT SELECT id FROM customers WHERE ssn LIKE '97%'
deny - locking_maintenance SELECT * FROM (SELECT * FROM customers FOR UPDATE) s
deny - locking_maintenance WITH x AS (SELECT * FROM customers FOR UPDATE) SELECT id FROM x
deny - locking_maintenance SELECT id FROM customers WHERE id IN (SELECT id FROM customers FOR KEY SHARE)
deny - explain explain analyze select 1
deny - explain EXPLAIN (COSTS OFF) SELECT id FROM customers WHERE ssn = '1'
deny - procedural DO LANGUAGE plpgsql $$ BEGIN END $$
deny - procedural do 'begin end'
deny - procedural CALL public.refresh_reporting()
deny - session_state set role none
deny - session_state SET SESSION ROLE postgres
deny - session_state SET CONSTRAINTS ALL DEFERRED
deny - ddl_dcl SECURITY LABEL FOR selinux ON TABLE customers IS 'x'
deny - ddl_dcl COMMENT ON TABLE customers IS 'x'
deny - ddl_dcl CREATE RULE r AS ON SELECT TO customers DO INSTEAD SELECT 1
deny - ddl_dcl CREATE EVENT TRIGGER t ON ddl_command_start EXECUTE FUNCTION f()
deny - ddl_dcl IMPORT FOREIGN SCHEMA x FROM SERVER y INTO z
deny - copy COPY customers (id) TO STDOUT
deny - copy COPY customers FROM STDIN
deny - parse_failure \copy (select 1) to 'x'
deny - parse_failure SELECT 1 \gexec
deny - multi_statement BEGIN; SELECT 1; COMMIT
deny - multi_statement SELECT $$a$$; SELECT 2
deny - dml_write INSERT INTO orders VALUES (DEFAULT) RETURNING *
deny - dml_write MERGE INTO orders USING (SELECT 1 AS id) s ON orders.id = s.id WHEN MATCHED THEN DELETE
deny - catalog_leak TABLE pg_authid
deny - dynamic_sql_string SELECT query_to_xml($$select 1$$, true, false, '')
deny - dynamic_sql_string SELECT * FROM ts_stat($q$select 'a'::tsvector$q$)
deny - dynamic_sql_string SELECT "query_to_xml"('select 1', true, false, '')
deny - dynamic_sql_string SELECT * FROM dblink('dbname=corpus', 'select ssn from customers') t(s text)
allow - control SELECT $a$ $$ ; $$ $a$
allow - control SELECT E'\'; DROP TABLE customers; --'
allow - control SELECT U&'d\0061t\+000061' AS x
allow - control SELECT 1 /* ; */ ; /* */
allow - control VALUES (1), (2) ORDER BY 1 LIMIT 1
allow - control TABLE v_customer_plans
mask 1,2,3,4,5,6 star_expansion TABLE customers
deny - inference SELECT id FROM customers JOIN (VALUES ('975-45-1106')) v(ssn) USING (ssn)
deny - inference SELECT id FROM customers NATURAL JOIN (VALUES ('975-45-1106')) v(ssn)
deny - inference SELECT id FROM customers NATURAL JOIN (SELECT '975-45-1106' AS ssn) v
deny - inference SELECT c.id FROM customers c JOIN (SELECT '975-45-1106'::text AS ssn) v USING (ssn)
deny - inference WITH v(ssn) AS (VALUES ('975-45-1106')) SELECT id FROM customers JOIN v USING (ssn)
deny - inference SELECT id FROM customers JOIN (SELECT generate_series(99900, 99999)::text AS zip) v USING (zip)
deny - inference SELECT count(*) FROM customers JOIN (VALUES ('975-45-1106')) v(ssn) USING (ssn)
allow - control SELECT o.id, c.plan FROM orders o JOIN customers c USING (id)
allow - control SELECT id, plan FROM customers JOIN (VALUES ('pro')) v(plan) USING (plan)
mask 5,6,7,8,9,10 star_expansion SELECT * FROM orders o JOIN customers c USING (id)
"""


def _parse():
    for n, line in enumerate(l for l in CASES.strip().splitlines() if l.strip()):
        expect, positions, category, sql = line.split(" ", 3)
        yield pytest.param(sql, expect, [int(p) for p in positions.split(",") if p != "-"], category,
                           id=f"{category}-{expect}-{n:03d}")


@pytest.mark.parametrize("catalog_kind", ["offline", "live"])
@pytest.mark.parametrize("sql, expect, positions, category", list(_parse()))
def test_redteam_case(request, policy, catalog_kind, sql, expect, positions, category):  # noqa: F811
    catalog = request.getfixturevalue(catalog_kind)
    decision = plan(sql, catalog=catalog, policy=policy, identity=ME, purpose="ai_training")
    verdict = judge(decision, expect, positions)
    TALLY[f"{catalog_kind}:redteam:{category}"][verdict] += 1
    masked = [c.position for c in decision.columns if c.masked]
    assert verdict != "fail", f"expected {expect} {positions}, got {decision.action} masked={masked} " \
                              f"reasons={list(decision.reasons)}"


# Former leaks, each with a reference query computing the same thing from the sensitive column:
# equal answers on the real database show the attack really returned (a function of) one person's value.
LEAKS = [
    ("SELECT id FROM customers JOIN (VALUES ('975-45-1106')) v(ssn) USING (ssn)",
     "SELECT id FROM customers WHERE ssn = '975-45-1106'"),
    ("SELECT array_agg(id ORDER BY id) FROM customers GROUP BY ssn LIKE '975%' HAVING bool_and(ssn LIKE '975%')",
     "SELECT array_agg(id ORDER BY id) FROM customers WHERE ssn LIKE '975%'"),
    ("SELECT r.a FROM customers c, jsonb_to_record(jsonb_build_object('a', c.ssn)) AS r(a int) WHERE c.id = 3",
     None),  # fails with the ssn in the error message
    ("SELECT id, dense_rank() OVER (ORDER BY ssn DESC) FROM customers",  # row order is ssn order
     "SELECT id, dense_rank() OVER (ORDER BY ssn DESC) FROM customers ORDER BY ssn DESC"),
    ("SELECT sum(1) FROM generate_series(1, 100) g WHERE g <= (SELECT length(email) FROM customers ORDER BY id LIMIT 1)",
     "SELECT length(email)::numeric FROM customers ORDER BY id LIMIT 1"),
    ("SELECT count(*) FROM customers WHERE id > 2 AND id < 4 AND ssn > '97'",
     "SELECT count(*) FROM customers WHERE id = 3 AND ssn > '97'"),
    ("SELECT count(*) FROM customers c, unnest(string_to_array(c.ssn, '9')) u WHERE c.id = 3",
     "SELECT array_length(string_to_array(ssn, '9'), 1) FROM customers WHERE id = 3"),
    ("SELECT c.id, o.id FROM customers c JOIN orders o ON o.id = length(c.email) ORDER BY 1",
     "SELECT id, length(email) FROM customers WHERE length(email) IN (SELECT id FROM orders) ORDER BY 1"),
    ("SELECT id FROM customers c WHERE (SELECT c.ssn = '975-45-1106')",
     "SELECT id FROM customers WHERE ssn = '975-45-1106'"),
    ("SELECT max(id) FROM customers WHERE ssn BETWEEN '975-45-1105' AND '975-45-1107'",
     "SELECT id FROM customers WHERE ssn = '975-45-1106'"),
    ("SELECT string_agg(id::text, ',' ORDER BY id) FROM customers WHERE ssn LIKE '975%'",
     "SELECT id::text FROM customers WHERE ssn = '975-45-1106'"),
]


@pytest.mark.parametrize("attack, reference", LEAKS)
def test_leak_is_real(corpus_url, live, policy, attack, reference):  # noqa: F811
    psycopg = require("psycopg", "postgres")
    with psycopg.connect(corpus_url) as conn:
        conn.read_only = True
        ssn = conn.execute("SELECT ssn FROM customers WHERE id = 3").fetchone()[0]
        if reference is None:  # an error channel: the message carries the value
            with pytest.raises(psycopg.Error) as err:
                conn.execute(attack)
            carried = ssn in str(err.value)  # a bare flag: a failure must not print the value
            assert carried, "the error message no longer carries the value"
        else:
            got = conn.execute(attack).fetchall()
            want = conn.execute(reference).fetchall()
            assert got and got == want and got[0][-1] is not None  # the attack answers with the sensitive fact
        conn.rollback()
    assert plan(attack, catalog=live, policy=policy, identity=ME, purpose="ai_training").action == "deny"
