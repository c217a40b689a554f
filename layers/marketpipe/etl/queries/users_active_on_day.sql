-- Users active on a day: at least one deposit or withdrawal (any status) on that UTC day.
-- param: day date  the UTC day, YYYY-MM-DD
SELECT a.user_id, a.deposit_count, a.withdrawal_count
FROM fact_daily_user_activity AS a
WHERE a.dt = ?
  AND a.is_active
ORDER BY a.user_id
