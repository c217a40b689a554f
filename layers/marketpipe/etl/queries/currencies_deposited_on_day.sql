-- Unique currencies with at least one completed deposit on a UTC day.
-- param: day date  the UTC day, YYYY-MM-DD
SELECT DISTINCT t.currency_code
FROM fact_transaction AS t
WHERE t.dt = ?
  AND t.transaction_type = 'deposit'
  AND t.tx_status = 'complete'
ORDER BY t.currency_code
