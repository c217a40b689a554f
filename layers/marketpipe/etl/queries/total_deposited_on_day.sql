-- Total amount of completed deposits of one currency on a UTC day (0 when there were none).
-- param: currency currency  lower-case currency code, e.g. mxn
-- param: day date  the UTC day, YYYY-MM-DD
SELECT
    COUNT(*) AS deposit_count,
    COALESCE(SUM(t.amount), CAST(0 AS DECIMAL(38, 18))) AS total_amount
FROM fact_transaction AS t
WHERE t.currency_code = ?
  AND t.dt = ?
  AND t.transaction_type = 'deposit'
  AND t.tx_status = 'complete'
