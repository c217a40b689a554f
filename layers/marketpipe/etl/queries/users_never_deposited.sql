-- Users who never made a completed deposit, over everything loaded (failed and pending attempts do not count).
SELECT u.user_id
FROM dim_user AS u
WHERE NOT EXISTS (
    SELECT 1
    FROM fact_transaction AS t
    WHERE t.user_id = u.user_id
      AND t.transaction_type = 'deposit'
      AND t.tx_status = 'complete'
)
ORDER BY u.user_id
