-- Rendered by Jinja like any .sql template of SQLExecuteQueryOperator.
SELECT city, count(*) AS n, min(id) AS first_id
FROM patients
WHERE id <= %(last)s AND '{{ dag.dag_id }}' LIKE 'lg_dropin_%%'
GROUP BY city
ORDER BY first_id
